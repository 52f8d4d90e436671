#!/bin/sh
# cli-mmap.sh - model files are written to be mapped: every vlm-convert
# output that is a model starts its data section 64-byte aligned; a file
# written before alignment (data 8-byte aligned only) still embeds, to
# the same bytes as its aligned copy, and `vlm-convert cast --dtype f32`
# rewrites it aligned.
. tests/lib.sh

CV=$BIN/vlm-convert
E=$BIN/vlm-embed
PY=/usr/bin/python3

# aligned NAME FILE: (8 + header length) is a multiple of 64
aligned() {
	n=$(od -An -tu8 -N8 "$2" | tr -d ' ')
	check "$1: data starts at byte $((8 + n)), a multiple of 64" \
	    "[ -n '$n' ] && [ \$(((8 + $n) % 64)) -eq 0 ]"
}

SET="--set vision.layers=2 --set text.layers=2 --set vision.width=32
    --set text.width=32 --set vision.heads=2 --set text.heads=2
    --set embed_dim=16 --set image_size=32 --set vocab=600"
ok "init" "$CV" init --seed 1 $SET tiny "$T/a.safetensors"
aligned "init" "$T/a.safetensors"
ok "upcycle" "$CV" upcycle --experts 4 "$T/a.safetensors" "$T/u.safetensors"
aligned "upcycle" "$T/u.safetensors"
ok "set" "$CV" set "$T/u.safetensors" moe.top_k=2
aligned "set" "$T/u.safetensors"
ok "cast to f16" "$CV" cast --dtype f16 "$T/a.safetensors" "$T/h.safetensors"
aligned "cast to f16" "$T/h.safetensors"

# the same file as a writer padding the header to 8 bytes only made it
$PY tests/unalign.py "$T/a.safetensors" "$T/old.safetensors"
n=$(od -An -tu8 -N8 "$T/old.safetensors" | tr -d ' ')
check "the old-style file's data is not 64-byte aligned" \
    "[ \$(((8 + $n) % 64)) -ne 0 ] && [ \$(((8 + $n) % 8)) -eq 0 ]"
if have_py "the embeddings of both files" PIL; then
	$PY tests/mkshapes.py "$T/d" 4
	ok "embed with the aligned file" "$E" -m "$T/a.safetensors" \
	    --format jsonl "$T/d"
	mv "$T/out" "$T/new.jsonl"
	ok "embed with the old file" "$E" -m "$T/old.safetensors" \
	    --format jsonl "$T/d"
	check "the same embedding" "cmp -s '$T/out' '$T/new.jsonl'"
fi
ok "cast --dtype f32 rewrites the old file" "$CV" cast --dtype f32 \
    "$T/old.safetensors" "$T/re.safetensors"
aligned "cast --dtype f32" "$T/re.safetensors"
check "the same bytes as the aligned original" \
    "cmp -s '$T/re.safetensors' '$T/a.safetensors'"
finish
