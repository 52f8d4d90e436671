/*
 * fuzz-npy.c - vlm_npy_read() on arbitrary bytes, record after record
 * as a stream holds them: magic, versions 1-3, the header dict, dtypes,
 * shapes, '<U' strings; and vlm_npy_load() of the bytes as one file.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fuzz_stream(data, size);
	struct vlm_npy r;
	struct vlm_tensor t;
	volatile size_t sum = 0;

	for (int i = 0; i < 64 && vlm_npy_read(f, "in.npy", &r) == 0; i++) {
		int64_t n = vlm_npy_numel(&r);
		for (int64_t k = 0; r.is_str && k < n; k++)
			sum += strlen(r.str[k]);
		if (!r.is_str && n > 0)
			sum += ((const unsigned char *)r.t.data)[
			    vlm_tensor_nbytes(&r.t) - 1];
		vlm_npy_release(&r);
	}
	fclose(f);
	if (vlm_npy_load(fuzz_file("in.npy", data, size), &t) == 0)
		free(t.data);
	return 0;
}
