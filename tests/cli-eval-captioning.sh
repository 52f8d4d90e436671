#!/bin/sh
# cli-eval-captioning.sh - vlm-eval captioning: BLEU-1..4 and CIDEr-D
# equal those of tests/caption-ref.py (the pycocoevalcap formulas written
# independently in Python) on a small set with several references per
# image, punctuation and case; candidates matched by path suffix; a
# missing candidate, a stray one and a bad line warned about (exit 1),
# as are bad reference rows (the first 1000, then a count);
# unreadable files and usage refused.
. tests/lib.sh

E=$BIN/vlm-eval
mkdir -p "$T/d"
R=$T/d/refs.tsv
printf 'filepath\ttitle\n' >"$R"
printf '%s\t%s\n' \
    a.jpg 'A dog runs on the grass.' \
    a.jpg 'a brown dog running in a field' \
    a.jpg 'The dog is running, on green grass!' \
    b.jpg 'Two cats sleep on a red sofa.' \
    b.jpg 'two cats are sleeping' \
    c.jpg 'a man rides a bike down the street' \
    c.jpg 'A man (on a bicycle) rides down a busy street.' \
    d.jpg 'a plate of food on a table' >>"$R"
H=$T/hyp.tsv
printf '%s\t%s\n' \
    "$T/d/a.jpg" 'a dog running on the grass' \
    "$T/d/b.jpg" 'Two cats sleeping on a sofa.' \
    "$T/d/c.jpg" 'a man rides a bike down the busy street' \
    "$T/d/d.jpg" '' >"$H"

fails "no --hyp" 2 "$E" captioning --refs "$R"
fails "an operand" 2 "$E" captioning --refs "$R" --hyp "$H" x
fails "missing hypothesis file" 1 "$E" captioning --refs "$R" \
    --hyp "$T/none"
check "names the missing file" "grep -q \"'$T/none'\" '$T/err'"
ok "four images scored" "$E" captioning --refs "$R" --hyp "$H" --json
check "--json: one object of the five metrics and the count" \
    "grep -q '\"task\": \"captioning\".*\"Bleu_4\": .*\"CIDEr\": .*\"images\": 4}' '$T/out'"

# refs with the hypothesis file's paths, for the Python reference
awk -F'\t' -v d="$T/d/" 'NR == 1 { print; next } { print d $1 "\t" $2 }' \
    "$R" >"$T/refs-abs.tsv"
if have "the comparison with tests/caption-ref.py" /usr/bin/python3; then
	/usr/bin/python3 tests/caption-ref.py "$T/refs-abs.tsv" "$H" \
	    >"$T/want"
	"$E" captioning --refs "$R" --hyp "$H" | awk '/^(Bleu|CIDEr)/ {
	    print $1, $2 }' >"$T/got"
	check "equal to caption-ref.py to 6 decimals" \
	    "cmp -s '$T/want' '$T/got'"
	check "a non-trivial score" "grep -q '^CIDEr [1-9]' '$T/got'"
fi

sed '$d' "$H" >"$T/miss.tsv"
printf 'e.jpg\ta stray caption\nno tab here\n' >>"$T/miss.tsv"
fails "missing, stray and bad candidates" 1 "$E" captioning --refs "$R" \
    --hyp "$T/miss.tsv"
check "warns of the image without a caption" \
    "grep -q \"no caption for '$T/d/d.jpg'\" '$T/err'"
check "warns of the bad line" "grep -q 'miss.tsv.:5: not' '$T/err'"
check "warns of the stray caption" "grep -q '1 captions of images not' '$T/err'"
check "still scores the three" "grep -q '^images *3$' '$T/out'"
: >"$T/empty"
fails "empty hypothesis file" 1 "$E" captioning --refs "$R" --hyp "$T/empty"
check "one-line error" "[ \$(wc -l <'$T/err') = 1 ]"

# more bad rows than the pairs reader keeps messages of (1000): each kept
# one warned, then how many more
B=$T/d/bad-refs.tsv
{ cat "$R"; awk 'BEGIN { for (i = 0; i < 1003; i++) print "no tab" }'; } >"$B"
fails "refs with 1003 bad rows" 1 "$E" captioning --refs "$B" --hyp "$H"
check "warns 1000 of them" \
    "[ \$(grep -c 'bad-refs.tsv:[0-9]*: ' '$T/err') = 1000 ]"
check "and the 3 more" "grep -q \"'$B': 3 more bad rows\" '$T/err'"
check "still scores the four" "grep -q '^images *4$' '$T/out'"

# vlm-caption's output as it comes, on stdin: the CoCa fixture's greedy
# caption against OpenCLIP's greedy and beam captions as references
D=$FIX/openclip-coca-tiny
I=$D/test_image.png
have "the vlm-caption pipeline check" "$D/weights.openclip.safetensors" \
    "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" /usr/bin/python3 ||
    { finish; exit; }
M=$T/coca.safetensors
ok "import the CoCa checkpoint" "$BIN/vlm-convert" import \
    -c "$D/open_clip_config.json" \
    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
    "$D/weights.openclip.safetensors" "$M"
case $I in /*) P=$I ;; *) P=$(pwd)/$I ;; esac
/usr/bin/python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["generation"]["runs"]
print("filepath\ttitle")
for r in ("gen_greedy.npy", "gen_beam3.npy"):
    print("%s\t%s" % (sys.argv[2], m[r]["decoded"]))' "$D/manifest.json" \
    "$P" >"$T/coca-refs.tsv"
"$BIN/vlm-caption" -m "$M" -l 20 "$I" >"$T/cap"
"$E" captioning --refs "$T/coca-refs.tsv" --hyp - <"$T/cap" >"$T/out" \
    2>"$T/err"
check "scores vlm-caption's output from stdin" "[ \$? = 0 ] &&
    grep -q '^images *1$' '$T/out'"
check "its own reference among them: BLEU-1 is 1" \
    "grep -q '^Bleu_1 *1.000000$' '$T/out'"
cat "$T/cap" "$T/out" | sed 's/^/# /'
finish
