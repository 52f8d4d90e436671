# tests/tiny-run.sh - sourced after tests/lib.sh by the vlm-train CLI
# tests: skips the test without PIL, else draws 48 shapes into $T/d and
# sets P, their pairs file, and SMALL, the options of a tiny-moe small
# enough to train a step in milliseconds.
if ! have_py "the training runs (all)" PIL; then
	finish; exit
fi
/usr/bin/python3 tests/mkshapes.py "$T/d" 48
P=$T/d/pairs.tsv
SMALL="-m tiny-moe --set vision.layers=2 --set text.layers=2
--set vision.width=32 --set text.width=32 --set vision.heads=2
--set text.heads=2 --set embed_dim=16 --set image_size=16
--set vocab=600 -b 8 --warmup 2 --seed 5"
