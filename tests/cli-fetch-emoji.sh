#!/bin/sh
# cli-fetch-emoji.sh - the pair files and ImageFolder trees that
# examples/fetch-emoji.sh writes, from a small hand-made emoji.json in a
# cache whose packages count as unpacked: offline (npm is a stub that
# fails, so any fetch would fail the test).
. tests/lib.sh

if ! have "the fetch-emoji.sh checks (all)" /usr/bin/python3; then
	finish
	exit
fi
C=$T/cache
mkdir -p "$T/bin" "$C/google/img/google/64" "$C/twitter/img/twitter/64"
printf '#!/bin/sh\necho called >"%s/npm-called"\nexit 1\n' "$T" >"$T/bin/npm"
chmod +x "$T/bin/npm"
for f in 1f44b 1f44b-1f3fd 1f44b-1f3fb-1f3ff 1f600 1f3fc 1f1e8-1f1ee 0023; do
	echo png >"$C/google/img/google/64/$f.png"
done
echo png >"$C/twitter/img/twitter/64/1f600.png"
cat >"$C/google/emoji.json" <<'EOF'
[{"name": "GRINNING FACE", "image": "1f600.png", "sort_order": 2,
  "category": "Smileys & Emotion", "subcategory": "face-smiling",
  "has_img_google": true, "has_img_twitter": true},
 {"name": "WAVING HAND SIGN", "image": "1f44b.png", "sort_order": 1,
  "category": "People & Body", "subcategory": "hand-fingers-open",
  "has_img_google": true, "has_img_twitter": true,
  "skin_variations": {
   "1F3FD": {"image": "1f44b-1f3fd.png", "has_img_google": true},
   "1F3FC": {"image": "1f44b-1f3fc.png", "has_img_google": true},
   "1F3FB-1F3FF": {"image": "1f44b-1f3fb-1f3ff.png",
                   "has_img_google": true}}},
 {"name": "EMOJI MODIFIER FITZPATRICK TYPE-3", "image": "1f3fc.png",
  "sort_order": 3, "category": "Component", "subcategory": "skin-tone",
  "has_img_google": true},
 {"name": "C\u00f4te d\u2019Ivoire Flag", "image": "1f1e8-1f1ee.png",
  "sort_order": 4, "category": "Flags", "subcategory": "country-flag",
  "has_img_google": true},
 {"name": "HASH KEY", "image": "0023.png", "sort_order": 5,
  "category": "Symbols", "subcategory": "keycap", "has_img_google": false},
 {"name": "MISSING FILE", "image": "2049.png", "sort_order": 6,
  "category": "Symbols", "subcategory": "other", "has_img_google": true}]
EOF
cp "$C/google/emoji.json" "$C/twitter/emoji.json"
: >"$C/google/.complete"
: >"$C/twitter/.complete"

I=google/img/google/64
printf '%s\t%s\n' filepath title \
    $I/1f44b.png "waving hand sign" \
    $I/1f44b-1f3fb-1f3ff.png "waving hand sign, light skin tone, dark skin tone" \
    $I/1f44b-1f3fd.png "waving hand sign, medium skin tone" \
    $I/1f600.png "grinning face" \
    $I/1f3fc.png "emoji modifier fitzpatrick type-3" \
    $I/1f1e8-1f1ee.png "côte d’ivoire flag" >"$T/want.tsv"
printf '%s\t%s\n' filepath title \
    $I/1f44b.png "waving hand sign" \
    $I/1f600.png "grinning face" \
    $I/1f3fc.png "emoji modifier fitzpatrick type-3" \
    $I/1f1e8-1f1ee.png "côte d’ivoire flag" >"$T/want-base.tsv"

export PATH="$T/bin:$PATH"
ok "fetch-emoji on an unpacked cache" sh examples/fetch-emoji.sh "$C"
check "counts printed" "grep -q '^google: 6 pairs, 4 base pairs, 3 categories, 3 subcategories' $T/out"
check "twitter: its own images only" "grep -q '^twitter: 1 pairs, 1 base pairs, 1 categories, 1 subcategories' $T/out"
check "npm not called" "[ ! -e $T/npm-called ]"
check "pairs with skin tones" "cmp -s $T/want.tsv $C/google.tsv"
check "base pairs" "cmp -s $T/want-base.tsv $C/google-base.tsv"
check "category classes" "[ \"\$(ls $C/google-category | tr '\n' ' ')\" = 'classnames.txt flags people_body smileys_emotion ' ]"
check "category names in class order" "[ \"\$(tr '\n' '|' <$C/google-category/classnames.txt)\" = 'flags|people & body|smileys & emotion|' ]"
check "subcategory names" "[ \"\$(tr '\n' '|' <$C/google-subcategory/classnames.txt)\" = 'country flag|face smiling|hand fingers open|' ]"
check "links resolve to the images" "[ -L $C/google-category/people_body/1f44b.png ] && cmp -s $C/google-category/people_body/1f44b.png $C/$I/1f44b.png"
check "no skin variants in the trees" "[ \$(find $C/google-category -type l | wc -l) = 3 ]"
cp "$C/google.tsv" "$T/first.tsv"
ok "second run" sh examples/fetch-emoji.sh "$C"
check "idempotent" "cmp -s $T/first.tsv $C/google.tsv && [ \$(find $C/google-subcategory -type l | wc -l) = 3 ]"
check "no temporary files left" "[ -z \"\$(ls -A $C | grep '^\\.tmp')\" ]"
finish
