/*
 * convert-coca.c - `vlm-convert import` of an OpenCLIP CoCa checkpoint:
 * its tensors, the config keys the weights do not tell and the tokenizer
 * into one CoCa model file (vlm-model(5)).
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
