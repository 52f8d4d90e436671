#!/bin/sh
# examples/demo.sh - the main job end to end, run by `make demo`.
# For now: create a tiny sparse LIMoE model (one tower, 8 experts, top-1)
# and show what it is. Training and evaluation on the emoji data join
# when vlm-train and vlm-eval land.
set -e
BIN=${BIN:-bin}
out=${TMPDIR:-/tmp}/vlm-demo.$$
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
"$BIN/vlm-convert" --version
"$BIN/vlm-convert" init --seed 1 tiny-moe "$out/tiny-moe.safetensors"
"$BIN/vlm-convert" info "$out/tiny-moe.safetensors"
