#!/bin/sh
# cli-caption.sh - vlm-convert import of the OpenCLIP CoCa fixture and
# vlm-caption on its test image: greedy and beam-search captions equal
# the texts OpenCLIP generated (manifest.json), the same on every run;
# images from arguments and from a list on stdin; bad images, models
# and usage refused with the documented status.
. tests/lib.sh

C=$BIN/vlm-caption
D=$FIX/openclip-coca-tiny
fails "no model" 2 "$C" /dev/null
fails "groups not dividing beams" 2 "$C" -m x -k 3 -g 2
fails "length 1" 2 "$C" -m x -l 1
have "the CoCa fixture checks" "$D/weights.openclip.safetensors" \
    "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" || { finish; exit; }

M=$T/coca.safetensors
ok "import the CoCa checkpoint" "$BIN/vlm-convert" import \
    -c "$D/open_clip_config.json" \
    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
    "$D/weights.openclip.safetensors" "$M"
# the texts OpenCLIP decoded (its decode keeps a trailing space)
ref() {
	/usr/bin/python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(m["generation"]["runs"][sys.argv[2]]["decoded"].rstrip(" "))' \
	    "$D/manifest.json" "$1"
}
I=$D/test_image.png
printf '%s\t%s\n' "$I" "$(ref gen_greedy.npy)" >"$T/greedy"
printf '%s\t%s\n' "$I" "$(ref gen_beam3.npy)" >"$T/beam3"
ok "greedy" "$C" -m "$M" -l 20 "$I"
check "greedy caption is OpenCLIP's" 'cmp -s "$T/out" "$T/greedy"'
ok "beam search, 3 beams" "$C" -m "$M" -l 20 -k 3 "$I"
check "beam caption is OpenCLIP's" 'cmp -s "$T/out" "$T/beam3"'
ok "again" "$C" -m "$M" -l 20 -k 3 "$I"
check "the same caption again" 'cmp -s "$T/out" "$T/beam3"'

# a list on stdin, a bad image among good ones
printf 'not an image' >"$T/bad.png"
printf '%s\n%s\n%s\n' "$I" "$T/bad.png" "$I" >"$T/list"
"$C" -m "$M" -l 20 <"$T/list" >"$T/out" 2>"$T/err"
rc=$?
check "bad image: exit 1" '[ $rc -eq 1 ]'
check "the two good ones captioned" \
    '[ "$(cat "$T/greedy" "$T/greedy")" = "$(cat "$T/out")" ]'
check "one warning naming the bad file" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q bad.png "$T/err"'

fails "a CLIP model is not CoCa" 1 "$C" -m \
    "$FIX/openclip-tiny/weights.openclip.safetensors" "$I"
check "the message says so" 'grep -q "not an OpenCLIP CoCa" "$T/err"'
fails "no tokenizer" 1 "$C" -m "$D/weights.openclip.safetensors" "$I"
check "the message says so" 'grep -q "no tokenizer" "$T/err"'
finish
