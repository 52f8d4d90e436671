#!/bin/sh
# fetch-emoji.sh [CACHE_DIR] - a small real image-text data set: the Google
# and Twitter emoji images (64x64 PNG) of the npm packages
# emoji-datasource-{google,twitter}@16.0.0 (MIT; images Apache-2.0 and
# CC-BY 4.0), turned into the inputs vlm-train and vlm-eval read.
#
# CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/vlm/emoji. The
# tarballs are fetched once with `npm pack`, checked against pinned
# SHA-256 sums and unpacked; once unpacked, nothing is fetched again, and
# rerunning rebuilds the outputs from the unpacked files (idempotent).
# Every output is written under a temporary name and renamed into place.
#
# Per STYLE (google, twitter) it writes into CACHE_DIR:
#   STYLE/                  the unpacked package (emoji.json, img/STYLE/64/)
#   STYLE.tsv               pairs: filepath<TAB>title, one row per image,
#                           skin-tone variants included ("father christmas,
#                           medium skin tone"); paths relative to the TSV
#   STYLE-base.tsv          the same without skin-tone variants
#   STYLE-category/         ImageFolder: one directory per category holding
#                           relative symlinks to the base images
#   STYLE-subcategory/      the same by subcategory
# Each ImageFolder root has classnames.txt: the readable class names, one a
# line, in the (byte-sorted) order of the class directories. The category
# "Component" (the five skin-tone swatches) is left out of the ImageFolder
# trees; the pair files keep it. Only images whose has_img_STYLE is true and
# whose file exists are used. Captions are the Unicode names lowercased.
#
# Needs: npm, tar, /usr/bin/python3 (its json module only) for the JSON step.
set -eu

VERSION=16.0.0
SUM_google=fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438
SUM_twitter=f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877
PY=/usr/bin/python3

die() { echo "fetch-emoji: $*" >&2; exit 1; }

CACHE=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm/emoji}
mkdir -p "$CACHE" || die "cannot create '$CACHE'"
CACHE=$(cd "$CACHE" && pwd)
TMP=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# fetch STYLE: the checked tarball into the cache, once
fetch() {
	tgz=$CACHE/emoji-datasource-$1-$VERSION.tgz
	eval want=\$SUM_$1
	if [ -f "$tgz" ] && echo "$want  $tgz" | sha256sum -c - >/dev/null 2>&1
	then
		return 0
	fi
	echo "fetch-emoji: npm pack emoji-datasource-$1@$VERSION" >&2
	(cd "$TMP" && npm pack --silent "emoji-datasource-$1@$VERSION" \
	    >/dev/null) || die "npm pack emoji-datasource-$1@$VERSION failed"
	got=$TMP/emoji-datasource-$1-$VERSION.tgz
	echo "$want  $got" | sha256sum -c - >/dev/null 2>&1 ||
	    die "'$got': SHA-256 differs from the pinned sum"
	mv "$got" "$tgz"
}

# unpack STYLE: the package into CACHE/STYLE (.complete marks it done)
unpack() {
	dir=$CACHE/$1
	mkdir "$TMP/$1"
	tar -xzf "$CACHE/emoji-datasource-$1-$VERSION.tgz" -C "$TMP/$1" \
	    --strip-components=1 || die "cannot unpack the $1 tarball"
	[ -f "$TMP/$1/emoji.json" ] || die "$1 tarball: no emoji.json"
	n=$(ls "$TMP/$1/img/$1/64" | wc -l)
	[ "$n" -gt 1000 ] || die "$1 tarball: only $n images in img/$1/64"
	: >"$TMP/$1/.complete"
	rm -rf "$dir"
	mv "$TMP/$1" "$dir"
}

# build STYLE: pair files and ImageFolder trees into TMP, printing counts
build() {
	"$PY" - "$CACHE" "$TMP" "$1" <<'EOF'
import json, os, re, sys

cache, tmp, style = sys.argv[1:4]
pkg = os.path.join(cache, style)
imgdir = os.path.join(style, "img", style, "64")   # relative to cache
tones = {"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone",
         "1F3FD": "medium skin tone", "1F3FE": "medium-dark skin tone",
         "1F3FF": "dark skin tone"}
with open(os.path.join(pkg, "emoji.json"), encoding="utf-8") as f:
    emoji = json.load(f)
emoji.sort(key=lambda e: e["sort_order"])
key = "has_img_" + style

def usable(e):
    return e.get(key) and os.path.isfile(os.path.join(cache, imgdir,
                                                      e["image"]))

def clean(s):
    return " ".join(s.replace("\t", " ").split())

def tone_names(k):
    names = []
    for t in k.split("-"):
        if tones[t] not in names:
            names.append(tones[t])
    return ", ".join(names)

base, pairs = [], []
for e in emoji:
    name = clean(e["name"].lower())
    if usable(e):
        base.append((e, os.path.join(imgdir, e["image"]), name))
        pairs.append((os.path.join(imgdir, e["image"]), name))
    for k, v in sorted((e.get("skin_variations") or {}).items()):
        if usable(v):
            pairs.append((os.path.join(imgdir, v["image"]),
                          name + ", " + tone_names(k)))

def write_tsv(name, rows):
    with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
        f.write("filepath\ttitle\n")
        for p, c in rows:
            f.write(p + "\t" + c + "\n")

write_tsv(style + ".tsv", pairs)
write_tsv(style + "-base.tsv", [(p, c) for _, p, c in base])

def safe(s):
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")

def tree(field):
    root = os.path.join(tmp, style + "-" + field)
    classes = {}
    for e, p, _ in base:
        if e["category"] == "Component":
            continue
        readable = e[field].lower().replace("-", " ")
        d = safe(e[field])
        if classes.setdefault(d, readable) != readable:
            sys.exit("fetch-emoji: class directory clash: " + d)
        os.makedirs(os.path.join(root, d), exist_ok=True)
        os.symlink(os.path.join("..", "..", p),
                   os.path.join(root, d, os.path.basename(p)))
    with open(os.path.join(root, "classnames.txt"), "w",
              encoding="utf-8") as f:
        for d in sorted(classes, key=lambda s: s.encode()):
            f.write(classes[d] + "\n")
    return len(classes)

ncat, nsub = tree("category"), tree("subcategory")
print("%s: %d pairs, %d base pairs, %d categories, %d subcategories"
      % (style, len(pairs), len(base), ncat, nsub))
EOF
}

# install NAME: move TMP/NAME over CACHE/NAME (a directory: old one aside)
install_out() {
	if [ -d "$TMP/$1" ]; then
		[ -e "$CACHE/$1" ] && mv "$CACHE/$1" "$TMP/$1.old"
		mv "$TMP/$1" "$CACHE/$1"
		rm -rf "$TMP/$1.old"
	else
		mv -f "$TMP/$1" "$CACHE/$1"
	fi
}

[ -x "$PY" ] || die "$PY not found"
for s in google twitter; do
	if [ ! -f "$CACHE/$s/.complete" ]; then
		fetch "$s"
		unpack "$s"
	fi
	build "$s"
	for o in "$s.tsv" "$s-base.tsv" "$s-category" "$s-subcategory"; do
		install_out "$o"
	done
done
echo "fetch-emoji: data in $CACHE" >&2
