/*
 * fuzz-safetensors.c - vlm_st_load() on arbitrary bytes: header length,
 * JSON header, dtypes, shapes, offsets, metadata; every tensor of a file
 * it accepts is read through and looked up by name.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_file("in.safetensors", data, size);
	struct vlm_st st;
	volatile unsigned sum = 0;
	char shape[128];
	float buf[64];

	if (vlm_st_load(&st, path) < 0)
		return 0;
	for (int i = 0; i < st.n; i++) {
		const struct vlm_tensor *t = &st.tensors[i];
		const unsigned char *b = t->data;
		size_t nb = vlm_tensor_nbytes(t);
		int64_t n = vlm_tensor_numel(t);

		if (vlm_st_get(&st, st.names[i]) != t)
			abort();
		for (size_t k = 0; k < nb; k++)
			sum += b[k];
		vlm_shape_str(t, shape, sizeof(shape));
		if (t->dtype == VLM_DTYPE_F16 || t->dtype == VLM_DTYPE_BF16 ||
		    t->dtype == VLM_DTYPE_F32)
			vlm_convert_floats(buf, VLM_DTYPE_F32, t->data, t->dtype,
			    n < 64 ? n : 64);
	}
	for (int i = 0; i < st.nmeta; i++)
		if (!vlm_st_meta(&st, st.meta_keys[i]))
			abort();
	vlm_st_numel(&st);
	vlm_st_release(&st);
	return 0;
}
