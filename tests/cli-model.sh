#!/bin/sh
# cli-model.sh - vlm-convert import, init and tokenize through model
# files: OpenCLIP and HF checkpoints import to the same parameters, the
# model file carries its tokenizer, bad configs are refused up front.
. tests/lib.sh

C=$BIN/vlm-convert
if have_fixtures "the OpenCLIP and HF imports"; then
	O=$FIX/openclip-tiny
	ok "import OpenCLIP names" "$C" import -c "$O/open_clip_config.json" \
	    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
	    "$O/weights.openclip.safetensors" "$T/oc.safetensors"
	ok "import HF names" "$C" import -c "$O/hf_config.json" \
	    "$O/weights.hf.safetensors" "$T/hf.safetensors"
	ok "info of the import" "$C" info "$T/hf.safetensors"
	check "3384897 parameters, as OpenCLIP counts" "grep -q 3384897 $T/out"
	check "the config travels in the file" "grep -q vlm.config $T/out"
	echo 'A photo of a CAT &amp; a dog.' >"$T/cap"
	"$C" tokenize -m "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
	    <"$T/cap" >"$T/ids.vocab" 2>"$T/err"
	ok "tokenize with the model's own tokenizer" sh -c \
	    "'$C' tokenize -m '$T/oc.safetensors' <'$T/cap' >'$T/ids.model'"
	check "same ids as the vocabulary file" \
	    "[ -s $T/ids.vocab ] && cmp -s $T/ids.vocab $T/ids.model"
	fails "import refuses pickles" 1 "$C" import "$T/weights.pt" "$T/x"
	check "pickle message names safetensors" "grep -q safetensors $T/err"
fi
ok "init tiny-moe" "$C" init --seed 3 tiny-moe "$T/moe.safetensors"
fails "a model written to /dev/full" 1 "$C" init tiny "/dev/full"
check "fails in place: /dev/full is still the device" "[ -c /dev/full ]"
ok "a model written to /dev/stdout" sh -c "'$C' init tiny /dev/stdout >'$T/so.safetensors'"
ok "and that output is a model" "$C" info "$T/so.safetensors"
ok "info of an MoE model" "$C" info "$T/moe.safetensors"
check "experts are stacked tensors" \
    "grep -q 'moe.experts.c_fc.weight' $T/out"
check "active parameters and FLOPs reported" \
    "grep -q 'active parameters per token' $T/out && grep -q 'GFLOPs per image' $T/out"
fails "import of a file that is no CLIP checkpoint" 1 "$C" import \
    "$T/moe.safetensors" "$T/y.safetensors"
check "missing tensor named" "grep -q 'missing tensor' $T/err"
ok "init b (ViT-B/32 CLIP)" "$C" init b "$T/b.safetensors"
ok "info b" "$C" info "$T/b.safetensors"
# OpenCLIP's ViT-B-32 has 151277313 parameters; section 5 of
# ALGORITHMS.md puts its image tower at 8.8 GFLOP per image
check "ViT-B/32: 151277313 parameters" "grep -q '^parameters: 151277313' $T/out"
check "ViT-B/32: 8.8 GFLOP per image" "grep -q 'GFLOPs per image: 8.8' $T/out"
rm -f "$T/b.safetensors"
ok "init with overrides" "$C" init --set moe.experts=4 --set moe.top_k=2 \
    tiny-moe "$T/moe4.safetensors"
fails "top_k above experts" 1 "$C" init --set moe.top_k=9 tiny-moe \
    "$T/bad.safetensors"
check "message names the keys" "grep -q 'top_k (9) exceeds' $T/err"
check "nothing written" "[ ! -e $T/bad.safetensors ]"
fails "topk gates with K = 1" 1 "$C" init --set moe.gate_norm=topk \
    tiny-moe "$T/bad.safetensors"
fails "heads not dividing width" 1 "$C" init --set vision.heads=3 tiny \
    "$T/bad.safetensors"
fails "unknown key" 1 "$C" init --set moe.expert=3 tiny "$T/bad.safetensors"
check "unknown key named" "grep -q 'moe.expert' $T/err"
fails "unknown preset" 1 "$C" init huge "$T/bad.safetensors"
printf '{"moe": {"experts": 4}, "family": "one-tower"}' >"$T/cfg.json"
ok "init from a config file" "$C" init "$T/cfg.json" "$T/cfgm.safetensors"
printf '{"moe": {"experts": 4,}}' >"$T/badcfg.json"
fails "bad config JSON" 1 "$C" init "$T/badcfg.json" "$T/bad.safetensors"
check "config file named" "grep -q badcfg.json $T/err"
ok "init with token reduction" "$C" init --set token_reduction.after=1 \
    --set vision.pool=gap tiny-moe "$T/tl.safetensors"
ok "info of it" "$C" info "$T/tl.safetensors"
check "TokenLearner parameters in the file" \
    "grep -q 'visual.token_learner.mlp.c_proj.weight .*\[8, 64\]' $T/out"
check "info says where the tokens are cut" \
    "grep -q 'after block 1, 16 -> 8 image tokens' $T/out"
fails "token reduction with a class token" 1 "$C" init \
    --set token_reduction.after=1 tiny-moe "$T/bad.safetensors"
check "message says why" "grep -q 'replaces the class token' $T/err"
fails "token reduction after a block that is not there" 1 "$C" init \
    --set token_reduction.after=4 --set vision.pool=gap tiny-moe \
    "$T/bad.safetensors"
check "no file left by any failure" "[ -z \"\$(ls $T | grep bad.safetensors)\" ]"
finish
