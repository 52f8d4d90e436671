#!/bin/sh
# cli-bounds.sh - every size a config or model file can claim is bounded
# where it is read (vlm-model(5) lists the limits): absurd, negative and
# overflowing sizes end in one line of error naming the file or the key,
# exit 1, within 60 s and 2 GB of memory, and no output file. Files that
# crashed vlm (tests/bad/, from shared/bad-inputs) are kept as cases.
. tests/lib.sh

C=$BIN/vlm-convert
PY=/usr/bin/python3
TIME=/usr/bin/time
if ldd "$C" 2>/dev/null | grep -q libasan; then
	# ASan reserves terabytes of address space: bound the heap instead
	ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=2048
	export ASAN_OPTIONS
	VMEM=unlimited
else
	VMEM=2097152 # KiB
fi
[ -x "$TIME" ] || echo "# skipping the peak memory checks: no $TIME"

# refused NAME PATTERN CMD...: CMD (which may write $T/o) exits 1 within
# 60 s, its peak memory under 2 GB, with one line on stderr that matches
# the grep -E PATTERN, and leaves no $T/o behind.
refused() {
	name=$1; pat=$2; shift 2
	rm -f "$T/o" "$T/rss"
	if [ -x "$TIME" ]; then
		(ulimit -v $VMEM; exec "$TIME" -f %M -o "$T/rss" \
		    timeout 60 "$@") >"$T/out" 2>"$T/err"
	else
		(ulimit -v $VMEM; exec timeout 60 "$@") >"$T/out" 2>"$T/err"
	fi
	got=$?
	# under ASan a refused allocation also warns: not the program's line
	sed -i '/^==[0-9]*==WARNING: AddressSanitizer failed to allocate/d' \
	    "$T/err"
	if [ -s "$T/rss" ]; then # time's own line comes last when killed
		rss=$(tail -n 1 "$T/rss")
	else
		rss=0
	fi
	if [ "$got" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] &&
	    grep -Eq -- "$pat" "$T/err" && [ ! -e "$T/o" ] &&
	    [ "$rss" -lt 2097152 ] 2>/dev/null; then
		pass "$name"
	else
		fail "$name (exit $got, peak ${rss} KiB; want exit 1, one \
line matching '$pat', no output)"
		sed 's/^/#   /' "$T/err" | head -5
	fi
}

# restamp IN OUT PYTHON: a copy of safetensors IN whose metadata dict m
# (and config dict c, its "vlm.config") PYTHON changes; tensors as they are.
restamp() {
	$PY - "$1" "$2" "$3" <<'EOF'
import json, struct, sys
src, dst, code = sys.argv[1:]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
m = h["__metadata__"]
c = json.loads(m["vlm.config"])
exec(code)
m["vlm.config"] = json.dumps(c)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(dst, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
}

# The files that crashed vlm: heap overflow from the image-token count.
B=tests/bad
refused "info: image_size 120816287 of a model file" \
    "imgsize-overflow.safetensors'.*'image_size'" \
    "$C" info "$B/imgsize-overflow.safetensors"
refused "embed: the same model file" \
    "imgsize-overflow.safetensors'.*'image_size'" \
    "$BIN/vlm-embed" -m "$B/imgsize-overflow.safetensors" -o "$T/o" \
    /dev/null
refused "init: the same sizes from a config file" \
    "ovf-init.json'.*'image_size'.*out of range" \
    "$C" init "$B/ovf-init.json" "$T/o"

# Overrides: each key's range, integers that would wrap in an int, and
# the checks across keys.
for kv in "vision.width=1000000000 vision.width" \
    "vision.width=4294967424 vision.width" \
    "vision.width=-128 vision.width" "text.layers=-2 text.layers" \
    "moe.experts=2000 moe.experts" "moe.experts=-1 moe.experts" \
    "patch_size=0 patch_size" "context=0 context" \
    "context=1000000 context" "vocab=100000000 vocab" \
    "vocab=0 vocab" "embed_dim=99999 embed_dim" \
    "vision.mlp_ratio=1000 vision.mlp_ratio" \
    "token_reduction.tokens=0 token_reduction.tokens" \
    "lora.rank=-1 lora.rank" "lora.rank=100000 lora.rank" \
    "moe.cf_eval=1e30 moe.cf_eval" "moe.cf_train=-1 moe.cf_train" \
    "moe.min_capacity=2147483648 moe.min_capacity" \
    "moe.every=0 moe.every" "image_std=[1,0,1] image_std" \
    "logit_scale_init=1e9 logit_scale_init"; do
	set -- $kv
	refused "init --set $1" "'$2': .* is out of range" \
	    "$C" init --set "$1" tiny-moe "$T/o"
done
# The ranges the code enforces are the ones vlm-model(5) lists: each
# key set past its documented maximum is refused, and the error names
# the documented range.
awk -F' Ta ' '/^\.Ss Limits/ { on = 1 } on && /^\.El/ { exit }
    on && /^\.It Li / { k = $1; sub(/^\.It Li /, "", k); gsub(/ , /, " ", k)
	gsub(/\\-/, "-", $2); split($2, r, " "); sub(/,$/, "", r[3])
	if (r[3] ~ /^-?[0-9.]+$/) { n = split(k, ks, " ")
		for (i = 1; i <= n; i++) print ks[i], r[1], r[3] } }' \
    man/vlm-model.5 >"$T/limits"
# every numeric key of config.c's table (TOWER() ones for both towers),
# but token_reduction.after, whose maximum is vision.layers - 1
{ sed -n 's/^	[IF]("\([a-z_.]*\)".*/\1/p; s/^	{ "\([a-z_]*\)", K_FLOAT3.*/\1/p' \
    libcore/model/config.c; for t in vision text; do
	for k in width layers heads mlp_ratio; do echo $t.$k; done; done; } |
    grep -v token_reduction.after | sort >"$T/keys"
cut -d' ' -f1 "$T/limits" | sort >"$T/listed"
check "vlm-model(5) lists the range of each of the $(wc -l <"$T/keys") \
numeric keys" "[ -s '$T/keys' ] && cmp -s '$T/keys' '$T/listed'"
while read -r key lo hi; do
	v=$(awk "BEGIN { printf \"%.0f\", 2 * $hi + 1 }")
	case $key in image_mean | image_std) v="[$v,$v,$v]" ;; esac
	"$C" init --set "$key=$v" tiny-moe "$T/o" >"$T/out" 2>"$T/err"
	got=$(sed -n 's/.*out of range (\(.*\) to \(.*\))$/\1 \2/p' "$T/err")
	if [ -n "$got" ] && [ ! -e "$T/o" ] && awk -v lo="$lo" -v hi="$hi" \
	    "BEGIN { split(\"$got\", g, \" \"); exit !(g[1] + 0 == lo + 0 &&
	    g[2] + 0 == hi + 0) }"; then
		pass "$key: $lo to $hi, as documented"
	else
		fail "$key=$v: want 'out of range ($lo to $hi)'"
		sed 's/^/#   /' "$T/err"
	fi
done <"$T/limits"
refused "heads that do not divide the width" \
    "vision.heads \(3\) do not divide vision.width \(128\)" \
    "$C" init --set vision.heads=3 tiny "$T/o"
refused "a patch that does not divide the image" \
    "patch_size \(5\) must divide image_size \(32\)" \
    "$C" init --set patch_size=5 tiny "$T/o"
refused "top_k above the experts" "moe.top_k \(9\) exceeds moe.experts" \
    "$C" init --set moe.top_k=9 tiny-moe "$T/o"
refused "token reduction after the last block" "token_reduction.after" \
    "$C" init --set token_reduction.after=4 --set vision.pool=gap tiny \
    "$T/o"
refused "a 4096 x 4096 patch grid" "16777216 patches, more than 16384" \
    "$C" init --set image_size=4096 --set patch_size=1 tiny "$T/o"
refused "a model past the parameter limit" \
    "more than 68719476736 parameters .*visual.conv1.weight" \
    "$C" init --set image_size=4096 --set patch_size=4096 \
    --set vision.width=16384 tiny "$T/o"
refused "a model inside the limits but not the memory" \
    "out of memory for [0-9]+ parameters" \
    "$C" init --set text.width=16384 --set vocab=1048576 tiny "$T/o"
printf '{"vision": {"heads": 3}}\n' >"$T/heads.json"
refused "a config file's cross-key error names the file" \
    "heads.json': config: vision.heads" "$C" init "$T/heads.json" "$T/o"

# Routing settings changed in a model file: refused, the file unchanged.
ok "a tiny MoE model" "$C" init tiny-moe "$T/moe.safetensors"
cp "$T/moe.safetensors" "$T/moe.orig"
refused "set: top_k above the experts names the file" \
    "moe.safetensors': config: moe.top_k \(9\) exceeds moe.experts" \
    "$C" set "$T/moe.safetensors" moe.top_k=9
refused "set: a capacity factor of 1e9" \
    "'moe.cf_eval': 1e\+09 is out of range \(0 to 64\)" \
    "$C" set "$T/moe.safetensors" moe.cf_eval=1e9
check "the model file is unchanged" "cmp -s '$T/moe.safetensors' '$T/moe.orig'"

# Model files whose config claims more than their tensors hold.
ok "a tiny model" "$C" init tiny "$T/tiny.safetensors"
if $PY -c 'import json' 2>/dev/null; then
	restamp "$T/tiny.safetensors" "$T/wide.safetensors" \
	    'c["text"]["width"] = 16384'
	refused "info: a 50 GB config over a tiny model's tensors" \
	    "wide.safetensors': tensor 'token_embedding.weight' has shape" \
	    "$C" info "$T/wide.safetensors"
	restamp "$T/tiny.safetensors" "$T/k.safetensors" \
	    'c["moe"]["experts"] = 1; c["moe"]["top_k"] = 2'
	refused "info: top_k above the experts in a model file" \
	    "k.safetensors': config: moe.top_k \(2\) exceeds" \
	    "$C" info "$T/k.safetensors"
	restamp "$T/tiny.safetensors" "$T/big.safetensors" \
	    'c["vocab"] = 2**40'
	refused "embed: a vocabulary of 2^40 in a model file" \
	    "big.safetensors'.*'vocab'.*out of range" \
	    "$BIN/vlm-embed" -m "$T/big.safetensors" -o "$T/o" /dev/null
else
	echo "# skipping the model file cases: no $PY"
fi

# A tokenizer with more tokens than the model's vocabulary: its ids
# would index past the embedding table.
if have_fixtures && $PY -c 'import json' 2>/dev/null; then
	O=$FIX/openclip-tiny
	ok "import with its tokenizer" "$C" import -c \
	    "$O/open_clip_config.json" \
	    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
	    "$O/weights.openclip.safetensors" "$T/oc.safetensors"
	ok "a small-vocabulary model" "$C" init --set vocab=1000 tiny \
	    "$T/v.safetensors"
	restamp "$T/v.safetensors" "$T/vt.safetensors" "
m['tokenizer.merges'] = json.loads(open('$T/oc.safetensors', 'rb').read()[8:
    8 + struct.unpack('<Q', open('$T/oc.safetensors', 'rb').read(8))[0]]
    )['__metadata__']['tokenizer.merges']"
	printf '{"vision_cfg": {"head_width": 0}, "text_cfg": {"heads": %s}}' \
	    4294967297 >"$T/hw.json"
	refused "import: head_width 0 and heads past 2^32" \
	    "weights.openclip.safetensors'.*'vision.heads': 0 is out of range" \
	    "$C" import -c "$T/hw.json" "$O/weights.openclip.safetensors" \
	    "$T/o"
	echo 'a photo of a cat' >"$T/cap"
	refused "embed: a tokenizer larger than the vocabulary" \
	    "vt.safetensors'.*49408 tokens.*vocabulary only 1000" \
	    "$BIN/vlm-embed" -m "$T/vt.safetensors" -t -o "$T/o" "$T/cap"
fi
finish
