/*
 * train/coca.c - training a CoCa model with the CLIP optimizer and
 * checkpoints: a parameter table (struct vlm_model, no config) over the
 * CoCa tensors, which move into one slab in file order so that AdamW
 * updates what the forward reads; one step = CoCaLoss and its gradient
 * (model/coca-grad.c), packed as the optimizer lays it out, then AdamW.
 * Validation: CoCaLoss over a pairs set in fixed batches.
 */
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* OpenCLIP's rule (main.py): no weight decay for 1-D tensors, norms,
 * biases, logit_scale. */
static int
decays(const char *name, int ndim)
{
	return ndim >= 2 && !strstr(name, "bn") && !strstr(name, "ln") &&
	    !strstr(name, "bias") && !strstr(name, "logit_scale");
}

int
vlm_coca_params(struct vlm_coca *c, struct vlm_model *m)
{
	int64_t n = 0;

	memset(m, 0, sizeof(*m));
	for (int i = 0; i < c->st.n; i++)
		n += vlm_tensor_numel(&c->st.tensors[i]);
	m->params = calloc(c->st.n > 0 ? (size_t)c->st.n : 1,
	    sizeof(*m->params));
	m->w = malloc((n ? n : 1) * sizeof(float));
	if (!m->params || !m->w) {
		vlm_model_release(m);
		return vlm_error("out of memory");
	}
	m->nparams = c->st.n;
	m->nfloats = n;
	m->logit_scale = -1;
	n = 0;
	for (int i = 0; i < c->st.n; i++) {
		struct vlm_tensor *t = &c->st.tensors[i];
		struct vlm_param *p = &m->params[i];
		snprintf(p->name, sizeof(p->name), "%s", c->st.names[i]);
		p->ndim = t->ndim > 4 ? 4 : t->ndim;
		for (int d = 0; d < p->ndim; d++)
			p->shape[d] = t->shape[d];
		p->off = n;
		p->n = vlm_tensor_numel(t);
		p->decay = decays(p->name, t->ndim);
		struct vlm_coca_lora *l = NULL; /* an adapted weight: its
		                                 * base, the data stays merged */
		for (int k = 0; k < c->nlora; k++)
			l = c->lora[k].w == i ? &c->lora[k] : l;
		memcpy(m->w + n, l ? l->base : t->data, p->n * sizeof(float));
		if (l)
			l->base = m->w + n;
		else
			t->data = m->w + n;
		if (strcmp(p->name, "logit_scale") == 0)
			m->logit_scale = n;
		n += p->n;
	}
	/* what the loader needs to know: image size, context, OpenAI's
	 * normalisation */
	m->cfg.image_size = c->S;
	m->cfg.context = c->T;
	memcpy(m->cfg.mean, vlm_openai_mean, sizeof(m->cfg.mean));
	memcpy(m->cfg.std, vlm_openai_std, sizeof(m->cfg.std));
	return 0;
}

int
vlm_coca_step(struct vlm_coca *c, struct vlm_model *m, struct vlm_optim *o,
    float **g, float *grad, const float *imgs, const int32_t *ids, int B,
    float w_caption, float w_clip, float lr, struct vlm_coca_loss *out)
{
	memset(g[c->st.n], 0, m->nfloats * sizeof(float));
	if (vlm_coca_grad(c, imgs, ids, B, w_caption, w_clip, g, out) < 0)
		return -1;
	for (int i = 0; i < m->nparams; i++)
		if (o->pack.off[i] >= 0)
			memcpy(grad + o->pack.off[i], g[i],
			    m->params[i].n * sizeof(float));
	vlm_optim_step(o, m, grad, lr);
	vlm_coca_lora_sync(c);
	return 0;
}

/* Non-pad labels (tokens 1..T-1) of n captions (n, T). */
static int
labels_of(const int32_t *ids, int n, int T)
{
	int k = 0;

	for (int i = 0; i < n * T; i++)
		k += i % T > 0 && ids[i] != 0;
	return k;
}

int
vlm_coca_val(const struct vlm_coca *c, const float *px, const int *image_id,
    const int32_t *ids, int n, int B, float w_caption, float w_clip,
    struct vlm_coca_loss *out)
{
	size_t S3 = 3 * (size_t)c->S * c->S;
	float *img = malloc((B > 0 ? B : 1) * S3 * sizeof(float));
	double con = 0, cap = 0;
	int64_t labels = 0;
	int rc = img ? 0 : vlm_error("out of memory");
	struct vlm_coca_loss l;

	if (rc == 0 && (n < 1 || B < 1))
		rc = vlm_error("no validation pairs");
	for (int i = 0; rc == 0 && i < n; i += B) {
		int b = n - i < B ? n - i : B;
		int k = labels_of(ids + (size_t)i * c->T, b, c->T);
		for (int j = 0; j < b; j++)
			memcpy(img + j * S3, px + image_id[i + j] * S3,
			    S3 * sizeof(float));
		rc = vlm_coca_loss(c, img, ids + (size_t)i * c->T, b,
		    w_caption, w_clip, &l);
		con += (double)l.contrastive * b;
		cap += (double)l.caption * k;
		labels += k;
	}
	if (rc == 0) {
		out->contrastive = (float)(con / n);
		out->caption = labels ? (float)(cap / labels) : 0;
		out->aux = 0;
		out->total = out->contrastive + out->caption;
	}
	free(img);
	return rc;
}
