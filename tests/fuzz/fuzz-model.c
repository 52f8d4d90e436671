/*
 * fuzz-model.c - vlm_model_load() on arbitrary bytes: a safetensors file
 * whose metadata carries the config (vlm.config) and maybe a tokenizer,
 * and whose tensor table must match the config's parameters; a model it
 * accepts has its counts taken and its tokenizer built.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vlm_model m;
	struct vlm_bpe bpe;
	int32_t ids[8];

	if (vlm_model_load(&m, fuzz_file("in.safetensors", data, size)) < 0)
		return 0;
	vlm_model_active_params(&m);
	vlm_model_flops(&m, 0, 1);
	vlm_model_flops(&m, 1, 0);
	if (vlm_model_tokenizer(&m, &bpe) == 0) {
		vlm_bpe_encode(&bpe, "a photo of a cat.", ids, 8);
		vlm_bpe_release(&bpe);
	}
	vlm_model_release(&m);
	return 0;
}
