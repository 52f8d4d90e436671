/*
 * bench-tokenize.c - CLIP tokenizer speed on one core: captions per second
 * over the 7496 strings of ../shared/fixtures/clip-bpe/clip-tokens.tsv,
 * once with a fresh tokenizer (every word new to the cache) and then
 * repeated (the steady state of a training run over the same captions).
 * A benchmark, not a test: it prints, it does not judge.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "vlm.h"

/* Column 1 of the fixture, JSON-decoded; returns how many. */
static int
read_texts(const char *path, char ***texts)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f)
		return -1;
	while (getline(&line, &cap, f) > 0) {
		json_t *s;
		line[strcspn(line, "\t")] = 0;
		if (!(s = json_loads(line, JSON_DECODE_ANY, NULL)))
			continue;
		*texts = realloc(*texts, (n + 1) * sizeof(**texts));
		(*texts)[n++] = strdup(json_string_value(s));
		json_decref(s);
	}
	free(line);
	fclose(f);
	return n;
}

int
main(void)
{
	const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared";
	char tsv[4096], gz[4096], **texts = NULL;
	struct vlm_bpe bpe;
	int32_t ids[VLM_BPE_CONTEXT];
	long tokens = 0;
	int n, reps = 40;
	double t0, t1, t2;

	snprintf(tsv, sizeof(tsv), "%s/fixtures/clip-bpe/clip-tokens.tsv",
	    shared);
	snprintf(gz, sizeof(gz), "%s/fixtures/clip-bpe/"
	    "bpe_simple_vocab_16e6.txt.gz", shared);
	if ((n = read_texts(tsv, &texts)) <= 0) {
		printf("skipping: fixture '%s' not found\n", tsv);
		return 0;
	}
	t0 = vlm_now();
	if (vlm_bpe_load(&bpe, gz) < 0) {
		fprintf(stderr, "%s\n", vlm_errmsg());
		return 1;
	}
	t1 = vlm_now();
	for (int i = 0; i < n; i++)
		tokens += vlm_bpe_encode(&bpe, texts[i], ids, VLM_BPE_CONTEXT);
	t2 = vlm_now();
	printf("load bpe_simple_vocab_16e6.txt.gz: %.3f s\n", t1 - t0);
	printf("first pass:  %.0f captions/s (%d captions, %.1f tokens "
	    "each)\n", n / (t2 - t1), n, (double)tokens / n);
	t1 = vlm_now();
	for (int r = 0; r < reps; r++)
		for (int i = 0; i < n; i++)
			vlm_bpe_encode(&bpe, texts[i], ids, VLM_BPE_CONTEXT);
	t2 = vlm_now();
	printf("repeated:    %.0f captions/s (%d x %d captions)\n",
	    (double)reps * n / (t2 - t1), reps, n);
	vlm_bpe_release(&bpe);
	for (int i = 0; i < n; i++)
		free(texts[i]);
	free(texts);
	return 0;
}
