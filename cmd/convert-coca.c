/*
 * convert-coca.c - the CoCa side of vlm-convert: `import` of an OpenCLIP
 * CoCa checkpoint (its tensors, the config keys the weights do not tell
 * and the tokenizer into one CoCa model file, vlm-model(5)); `init
 * coca-tiny` (a fresh model; with -t its tokenizer, whose size is the
 * vocabulary); `upcycle` of a CoCa model's decoder into MoE blocks.
 */
#include <err.h>
#include <stdlib.h>

#include "cmd.h"
#include "base/base.h"
#include "text/text.h"
#include "model/coca.h"

int
convert_import_coca(const char *weights, const char *config, const char *tok,
    const char *out)
{
	struct vlm_coca c;
	struct vlm_bpe bpe;
	char *merges = NULL;
	int rc;

	if (vlm_coca_load(&c, weights, config) < 0) {
		warnx("%s", vlm_errmsg());
		return 1;
	}
	if (tok && vlm_bpe_load(&bpe, tok) == 0) {
		if (bpe.nvocab > c.V)
			vlm_error("'%s': %d tokens, the model's vocabulary "
			    "only %d", tok, bpe.nvocab, c.V);
		else if (!(merges = vlm_bpe_merges_alloc(&bpe)))
			vlm_error("out of memory");
		vlm_bpe_release(&bpe);
	}
	if (tok && !merges) {
		warnx("%s", vlm_errmsg());
		vlm_coca_release(&c);
		return 1;
	}
	rc = vlm_coca_save(&c, out, merges);
	if (rc < 0)
		warnx("%s", vlm_errmsg());
	free(merges);
	vlm_coca_release(&c);
	return rc < 0;
}

/* The merges text of tokenizer file tok (malloc'ed), or NULL. */
static char *
merges_of(const char *tok, int *nvocab)
{
	struct vlm_bpe bpe;
	char *m;

	if (vlm_bpe_load(&bpe, tok) < 0)
		return NULL;
	*nvocab = bpe.nvocab;
	if (!(m = vlm_bpe_merges_alloc(&bpe)))
		vlm_error("out of memory");
	vlm_bpe_release(&bpe);
	return m;
}

int
convert_init_coca(char **sets, int nset, unsigned long long seed,
    const char *tok, const char *out)
{
	struct vlm_coca_shape s;
	char *merges = NULL;
	int V = 0;

	vlm_coca_shape_preset(&s);
	if (tok && !(merges = merges_of(tok, &V)))
		errx(1, "%s", vlm_errmsg());
	if (V)
		s.V = V; /* SOT, EOT: the last two ids */
	for (int i = 0; i < nset; i++)
		if (vlm_coca_shape_set(&s, sets[i]) < 0)
			errx(1, "%s", vlm_errmsg());
	if (V && s.V != V)
		errx(1, "vocab %d: the tokenizer '%s' has %d tokens", s.V, tok,
		    V);
	if (vlm_coca_create(out, &s, seed, merges) < 0)
		errx(1, "%s", vlm_errmsg());
	free(merges);
	return 0;
}

int
convert_upcycle_coca(const char *in, const char *out, int E, int K,
    int every, double std, unsigned long long seed)
{
	struct vlm_coca c;

	if (vlm_coca_load(&c, in, NULL) < 0)
		errx(1, "%s", vlm_errmsg());
	if (vlm_coca_upcycle(&c, out, E, K, every ? every : 2, std, seed,
	    vlm_coca_merges(&c)) < 0)
		errx(1, "'%s': %s", in, vlm_errmsg());
	vlm_coca_release(&c);
	return 0;
}

int
convert_info_coca(const char *path)
{
	struct vlm_coca c;
	static const char *const part[] = { "image", "text",
		"caption (decoder, T - 1 tokens)" };

	if (vlm_coca_load(&c, path, NULL) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	printf("\nmodel: CoCa, embedding %d, image %d px / patch %d, context "
	    "%d, vocabulary %d%s\n", c.E, c.S, c.p, c.T, c.V,
	    vlm_coca_merges(&c) ? ", tokenizer inside" : "");
	if (c.Ed)
		printf("decoder experts: %d, top-%d\n", c.Ed, c.Kd);
	for (int i = 0; i < 3; i++)
		printf("forward GFLOPs per %s: %.6g\n", part[i],
		    vlm_coca_flops(&c, i) / 1e9);
	vlm_coca_release(&c);
	return 0;
}
