/*
 * encoder.c - a model turned into an encoder: images or token ids in,
 * embeddings out, in batches over one preallocated run; and the model's
 * own tokenizer. What vlm-embed, vlm-eval and validation in vlm-train
 * share.
 */
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "model/model.h"
#include "kernels.h"

int
vlm_encoder_init(struct vlm_encoder *e, const struct vlm_model *m, int text,
    int batch)
{
	memset(e, 0, sizeof(*e));
	e->m = m, e->text = text, e->batch = batch > 0 ? batch : 32;
	e->rows = e->batch;
	e->r = vlm_run_new(m, text ? 0 : e->batch, text ? e->batch : 0, 0);
	return e->r ? 0 : -1;
}

/*
 * The run for n items: the rows of a dense model are independent, so a
 * short batch (one image, the end of a folder) runs on a run of n rounded
 * up to a power of two (few distinct sizes) instead of a whole padded
 * batch. MoE capacity couples a batch's rows: MoE models keep the full
 * batch, so their results do not depend on how the input was cut.
 */
static int
fit_run(struct vlm_encoder *e, int n)
{
	struct vlm_run *r;
	int rows = 1;

	if (e->m->cfg.moe.experts > 0)
		rows = e->batch;
	while (rows < n)
		rows *= 2;
	if (rows > e->batch)
		rows = e->batch;
	if (rows == e->rows)
		return 0;
	if (!(r = vlm_run_new(e->m, e->text ? 0 : rows, e->text ? rows : 0,
	    0)))
		return -1; /* e->r stays as it was */
	if (e->wb && vlm_run_set_bf16(r, e->m, e->wb) < 0) {
		vlm_run_free(r);
		return -1;
	}
	vlm_run_free(e->r);
	e->r = r;
	e->rows = rows;
	if (e->pack)
		vlm_run_set_wpack(r, &e->wk);
	return 0;
}

void
vlm_encoder_release(struct vlm_encoder *e)
{
	if (e->wb)
		vlm_run_backend(e->r)->free(e->wb);
	vlm_run_free(e->r);
	vlm_wpack_release(&e->wk);
	free(e->pad);
	memset(e, 0, sizeof(*e));
}

int
vlm_encoder_set_precision(struct vlm_encoder *e, enum vlm_precision p)
{
	const struct vlm_backend *be = vlm_run_backend(e->r);
	uint16_t *wb = NULL;

	if (p == VLM_PRECISION_BF16 &&
	    !(wb = vlm_model_bf16_alloc(e->m, be, e->text)))
		return -1;
	if (vlm_run_set_bf16(e->r, e->m, wb) < 0) {
		if (wb)
			be->free(wb);
		return -1;
	}
	if (e->wb)
		be->free(e->wb);
	e->wb = wb;
	e->pack = p == VLM_PRECISION_FP32;
	vlm_run_set_wpack(e->r, e->pack ? &e->wk : NULL);
	return 0;
}

/*
 * n items (n <= batch): pixels (n,3,S,S) or tokens (n,context) into out
 * (n, embed_dim), L2-normalised when unit. A short batch is padded to
 * the run's rows by repeating its last item.
 */
int
vlm_encode(struct vlm_encoder *e, const void *in, int n, float *out, int unit)
{
	const struct vlm_config *c = &e->m->cfg;
	size_t item = e->text ? c->context * sizeof(int32_t) :
	    3 * (size_t)c->image_size * c->image_size * sizeof(float);
	const void *src = in;
	int E = c->embed_dim;

	if (n <= 0 || n > e->batch)
		return vlm_error("encode: %d items for a batch of %d", n,
		    e->batch);
	if (fit_run(e, n) < 0)
		return -1;
	if (n < e->rows) {
		if (!e->pad && !(e->pad = malloc(item * e->batch)))
			return vlm_error("out of memory");
		memcpy(e->pad, in, item * n);
		for (int i = n; i < e->rows; i++)
			memcpy((char *)e->pad + item * i, (const char *)in +
			    item * (n - 1), item);
		src = e->pad;
	}
	if (vlm_forward(e->r, e->m, e->text ? NULL : src, e->text ? src :
	    NULL) < 0)
		return -1;
	memcpy(out, vlm_run_features(e->r, e->text, unit),
	    (size_t)n * E * sizeof(float));
	return 0;
}

int
vlm_model_tokenizer(const struct vlm_model *m, struct vlm_bpe *bpe)
{
	if (!m->tokenizer)
		return vlm_error("the model carries no tokenizer (import it "
		    "with -t, or train one)");
	if (vlm_bpe_from_merges(bpe, m->tokenizer) < 0)
		return -1;
	if (bpe->nvocab > m->cfg.vocab) { /* ids would index past the table */
		vlm_error("tokenizer has %d tokens, the model's vocabulary "
		    "only %d", bpe->nvocab, m->cfg.vocab);
		vlm_bpe_release(bpe);
		return -1;
	}
	return 0;
}

int
vlm_model_set_tokenizer(struct vlm_model *m, const struct vlm_bpe *bpe)
{
	char *merges = vlm_bpe_merges_alloc(bpe);

	if (!merges)
		return vlm_error("out of memory");
	free(m->tokenizer);
	m->tokenizer = merges;
	return 0;
}
