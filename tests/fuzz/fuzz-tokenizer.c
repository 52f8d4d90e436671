/*
 * fuzz-tokenizer.c - loading a tokenizer from files, as vlm_bpe_load()
 * reads them: the first byte even, the rest is a merges file (plain or
 * gzipped: zlib reads both); odd, the rest is an HF vocab.json and,
 * after its first NUL byte, the merges.txt beside it. A tokenizer it
 * accepts encodes a caption and gives back merges text that builds
 * the same tokenizer again.
 */
#include "fuzz.h"

/* The merges text of bpe builds a tokenizer with the same merges text. */
static void
check_merges(const struct vlm_bpe *bpe)
{
	struct vlm_bpe again;
	char *a = vlm_bpe_merges_alloc(bpe), *b;

	if (!a)
		return;
	if (vlm_bpe_from_merges(&again, a) < 0) {
		fprintf(stderr, "merges text not read back: %s\n", vlm_errmsg());
		abort();
	}
	b = vlm_bpe_merges_alloc(&again);
	if (b && strcmp(a, b) != 0) {
		fprintf(stderr, "merges text round trip differs\n");
		abort();
	}
	if (again.nvocab != bpe->nvocab)
		abort();
	free(a);
	free(b);
	vlm_bpe_release(&again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vlm_bpe bpe;
	const uint8_t *nul;
	const char *path;
	int32_t ids[16];

	if (size < 1)
		return 0;
	if (data[0] % 2 == 0) {
		path = fuzz_file("bpe.txt.gz", data + 1, size - 1);
	} else {
		nul = memchr(data + 1, 0, size - 1);
		if (!nul)
			return 0;
		fuzz_file("merges.txt", nul + 1, size - (nul + 1 - data));
		path = fuzz_file("vocab.json", data + 1, nul - (data + 1));
	}
	if (vlm_bpe_load(&bpe, path) < 0)
		return 0;
	vlm_bpe_encode(&bpe, "a photo of a cat, &amp; a dog", ids, 16);
	check_merges(&bpe);
	vlm_bpe_release(&bpe);
	return 0;
}
