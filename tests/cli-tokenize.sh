#!/bin/sh
# cli-tokenize.sh - vlm-convert tokenize: OpenCLIP's ids for a sample of the
# clip-bpe fixture lines (those without JSON escapes), from the merges file
# and from a model file carrying the merges in its metadata; the context
# cut; usage and exit statuses; a bad tokenizer path fails with one line.
. tests/lib.sh
export LC_ALL=C
C=$BIN/vlm-convert
GZ=$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz
TSV=$FIX/clip-bpe/clip-tokens.tsv

ok "tokenize --help" $C tokenize --help
check "--help shows tokenize" 'grep -q "vlm-convert tokenize -m" "$T/out"'
fails "no -m" 2 $C tokenize
fails "bad option" 2 $C tokenize --bogus -m x
fails "bad context" 2 $C tokenize -c 0 -m x
fails "operand" 2 $C tokenize -m x y
fails "bad path" 1 $C tokenize -m "$T/nonexistent.txt.gz"
check "bad path: one line naming it" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q nonexistent.txt.gz "$T/err"'
printf 'x\n' >"$T/bad.txt"
fails "not a merges file" 1 $C tokenize -m "$T/bad.txt"
check "not a merges file: one line" '[ "$(wc -l <"$T/err")" -eq 1 ]'

# u64le N: N as 8 little-endian bytes
u64le() {
	n=$1 i=0
	while [ $i -lt 8 ]; do
		printf "\\$(printf %o $((n % 256)))"
		n=$((n / 256)) i=$((i + 1))
	done
}

if have "the checks against OpenCLIP's ids" "$GZ" "$TSV"; then
	# every 23rd line with no escapes in its JSON string
	awk -F '\t' 'index($1, "\\") == 0 && NR % 23 == 1' "$TSV" >"$T/sample"
	sed 's/^"//; s/"\t.*$//' "$T/sample" >"$T/in"
	cut -f 2 "$T/sample" >"$T/want"
	check "sample is large" '[ "$(wc -l <"$T/in")" -gt 250 ]'
	$C tokenize -m "$GZ" <"$T/in" >"$T/got" 2>"$T/err"
	check "fixture ids from the merges file" 'cmp -s "$T/got" "$T/want"'
	# the same merges carried by a model file's metadata
	{
		printf '{"__metadata__":{"tokenizer.merges":"'
		gzip -dc "$GZ" | head -n 48895 |
		    sed 's/\\/\\\\/g; s/"/\\"/g' | awk '{ printf "%s\\n", $0 }'
		printf '"},"x":{"dtype":"F32","shape":[1],'
		printf '"data_offsets":[0,4]}}'
	} >"$T/head.json"
	{ u64le "$(wc -c <"$T/head.json")"; cat "$T/head.json"
	  head -c 4 /dev/zero; } >"$T/model.safetensors"
	$C tokenize -m "$T/model.safetensors" <"$T/in" >"$T/got2" 2>"$T/err"
	check "fixture ids from a model file" 'cmp -s "$T/got2" "$T/want"'
	# a model file without a tokenizer
	h='{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
	{ u64le ${#h}; printf '%s' "$h"; head -c 4 /dev/zero; } \
	    >"$T/bare.safetensors"
	fails "model without tokenizer" 1 $C tokenize -m "$T/bare.safetensors"
	check "says so" 'grep -q tokenizer.merges "$T/err"'
	# the context cut keeps <end_of_text> last
	printf 'a photo of a cat on a mat\n\n' |
	    $C tokenize -c 5 -m "$GZ" >"$T/cut"
	check "context 5" '[ "$(sed -n 1p "$T/cut")" = "49406 320 1125 539 49407" ]'
	check "empty line" '[ "$(sed -n 2p "$T/cut")" = "49406 49407" ]'
fi
finish
