#!/bin/sh
# cli-train-verbose.sh - vlm-train -v: one plain line on stderr per
# metrics line, also when stderr is a file (as under `make demo | tee`),
# with the experts of a MoE model and the validation recall.
. tests/lib.sh
. tests/tiny-run.sh
# shellcheck disable=SC2086
ok "-v into a file" "$BIN/vlm-train" --data "$P" $SMALL -o "$T/a" \
    --steps 4 --log-every 2 --val-data "$P" --val-every 4 -v
cp "$T/err" "$T/log"
check "a line per metrics line" \
    '[ "$(grep -c "^step " "$T/log")" = "$(wc -l <"$T/a/metrics.jsonl")" ]'
check "two lines" '[ "$(grep -c "^step " "$T/log")" = 2 ]'
check "step, loss, experts" 'grep -q "^step 2/4  epoch 0  loss [0-9.]* (aux [0-9.]*).*experts used: image [0-9.]*, text [0-9.]*$" "$T/log"'
check "the validation recall at the end" \
    'tail -n 1 "$T/log" | grep -q "val R@1: text->image 0\.[0-9]*, image->text 0\.[0-9]*$"'
# shellcheck disable=SC2086
ok "without -v" "$BIN/vlm-train" --data "$P" $SMALL -o "$T/b" --steps 2 \
    --log-every 1
check "silent into a file" '[ ! -s "$T/err" ]'
finish
