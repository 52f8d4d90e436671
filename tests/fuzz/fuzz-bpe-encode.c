/*
 * fuzz-bpe-encode.c - tokenizing arbitrary bytes (vlm_bpe_encode: text
 * cleaning with HTML entities, UTF-8, the word splitter, the merges) with
 * a small tokenizer learnt once from fixed texts; the ids must be in
 * range and start with <start_of_text>, and decode.
 */
#include "fuzz.h"

static const char *const texts[] = {
	"a photo of a cat.", "a photo of a dog.", "the cat sat on the mat",
	"a drawing of an owl &amp; a bird", "Ünïcödé 文字 and emoji 😀",
	"it's 10:30, isn't it?", "a  photo\tof\na big red car", "3.14159",
};

static struct vlm_bpe bpe;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	int32_t ids[VLM_BPE_CONTEXT], *all;
	char *text, *s;
	int n, ctx;

	if (!ready && vlm_bpe_train(&bpe, texts, sizeof(texts) /
	    sizeof(*texts), 600) < 0) {
		fprintf(stderr, "fuzz: %s\n", vlm_errmsg());
		abort();
	}
	ready = 1;
	text = fuzz_str(data, size);
	n = vlm_bpe_encode(&bpe, text, ids, VLM_BPE_CONTEXT);
	if (n >= 0 && (n < 2 || n > VLM_BPE_CONTEXT || ids[0] != bpe.sot ||
	    ids[n - 1] != bpe.eot))
		abort();
	/* all the tokens: a context as long as the text can need */
	ctx = (int)size * 2 + 2;
	if ((all = malloc(ctx * sizeof(*all)))) {
		n = vlm_bpe_encode(&bpe, text, all, ctx);
		for (int i = 0; i < n; i++)
			if (all[i] < 0 || all[i] >= bpe.nvocab)
				abort();
		if (n >= 0 && (s = vlm_bpe_decode_alloc(&bpe, all, n)))
			free(s);
		free(all);
	}
	if ((s = vlm_bpe_clean_alloc(text)))
		free(s);
	free(text);
	return 0;
}
