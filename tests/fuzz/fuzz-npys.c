/*
 * fuzz-npys.c - an embeddings stream (.npys) on arbitrary bytes: the
 * metadata record, id and vector batches, the end record; then the same
 * bytes through vlm_emb_load(), which also reads the packed form.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fuzz_stream(data, size);
	struct vlm_npys_reader r;
	struct vlm_emb e;
	volatile float sum = 0;
	int rc;

	if (vlm_npys_reader_init(&r, f, "in.npys") == 0) {
		while ((rc = vlm_npys_reader_next(&r)) > 0)
			for (int64_t i = 0; i < r.k; i++)
				sum += strlen(r.ids[i]) +
				    r.vec[i * r.dim + r.dim - 1];
		vlm_npys_reader_release(&r);
	}
	fclose(f);
	if (vlm_emb_load(&e, fuzz_file("in.npys", data, size)) == 0) {
		if (e.n > 0)
			sum += e.vec[e.n * e.dim - 1];
		vlm_emb_release(&e);
	}
	return 0;
}
