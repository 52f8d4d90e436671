/*
 * lora.c - low-rank adapters (LoRA, Hu et al. 2021) on the attention and
 * MLP / expert linears of the transformer blocks: Uni-MoE's last stage
 * fine-tunes them with every base weight frozen.
 *
 * An adapted weight W (OUT, IN) is used as W + s B A, s = alpha / r, with
 * A (r, IN) and B (OUT, r) the parameters "<W>.lora_A" and "<W>.lora_B";
 * stacked experts (E, OUT, IN) carry one pair per expert, A (E, r, IN)
 * and B (E, OUT, r). model.c appends the pairs after every base
 * parameter, so the base part of the slab is laid out exactly as the
 * plain model's. The forward and backward know nothing of adapters: they
 * run on a plain "view" whose slab holds the merged weights, and
 * vlm_lora_grad() turns the gradient with respect to the merged weights
 * into the adapters' (dA = s B^T dW, dB = s dW A^T).
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/model.h"

/* One adapter pair and the weight it adapts: E matrices (OUT, IN). */
struct pair {
	float *w, *a, *b;  /* into one slab: (E,OUT,IN) (E,r,IN) (E,OUT,r) */
	int E, OUT, IN, r;
	int wi;            /* W's parameter index */
};

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

int
vlm_lora_target(const struct vlm_config *c, const char *name)
{
	static const char *const attn[] = { ".attn.in_proj_weight",
		".attn.out_proj.weight", NULL };
	static const char *const mlp[] = { ".mlp.c_fc.weight",
		".mlp.c_proj.weight", ".experts.c_fc.weight",
		".experts.c_proj.weight", NULL };
	int t = c->lora.targets;

	if (!strstr(name, "resblocks."))
		return 0; /* not the pooling head's attention */
	for (int i = 0; attn[i] && t != VLM_LORA_MLP; i++)
		if (ends_with(name, attn[i]))
			return 1;
	for (int i = 0; mlp[i] && t != VLM_LORA_ATTN; i++)
		if (ends_with(name, mlp[i]))
			return 1;
	return 0;
}

float
vlm_lora_scale(const struct vlm_config *c)
{
	if (c->lora.rank <= 0)
		return 0;
	return c->lora.alpha > 0 ? c->lora.alpha / c->lora.rank : 1;
}

int
vlm_lora_first(const struct vlm_model *m)
{
	for (int i = 0; i < m->nparams; i++)
		if (ends_with(m->params[i].name, ".lora_A"))
			return i;
	return m->nparams;
}

/* The pair whose A is parameter i, pointing into slab x (m->w, grads). */
static void
pair_at(const struct vlm_model *m, int i, float *x, struct pair *p)
{
	const struct vlm_param *a = &m->params[i], *b = &m->params[i + 1];
	const struct vlm_param *w;
	char name[96];

	assert(i + 1 < m->nparams && ends_with(a->name, ".lora_A") &&
	    ends_with(b->name, ".lora_B"));
	snprintf(name, sizeof(name), "%.*s", (int)strlen(a->name) - 7,
	    a->name);
	w = vlm_model_param(m, name);
	assert(w && (w->ndim == 2 || w->ndim == 3));
	p->E = w->ndim == 3 ? w->shape[0] : 1;
	p->OUT = w->shape[w->ndim - 2];
	p->IN = w->shape[w->ndim - 1];
	p->r = m->cfg.lora.rank;
	assert(a->n == (int64_t)p->E * p->r * p->IN &&
	    b->n == (int64_t)p->E * p->OUT * p->r);
	p->wi = (int)(w - m->params);
	p->w = x + w->off;
	p->a = x + a->off;
	p->b = x + b->off;
}

void
vlm_lora_randomize(struct vlm_model *m, uint64_t seed)
{
	struct vlm_rng r;
	struct pair p;

	vlm_rng_seed2(&r, seed, 0x4c6f5241); /* "LoRA" */
	for (int i = vlm_lora_first(m); i + 1 < m->nparams; i += 2) {
		pair_at(m, i, m->w, &p);
		for (int64_t j = 0; j < (int64_t)p.E * p.r * p.IN; j++)
			p.a[j] = (float)(vlm_rng_normal(&r) / sqrt(p.IN));
		memset(p.b, 0, (size_t)p.E * p.OUT * p.r * sizeof(float));
	}
}

/* VLM_BACKEND's table when it has a gemm, else NULL (vlm_error). */
static const struct vlm_backend *
gemm_backend(void)
{
	static const enum vlm_op op = VLM_OP_gemm;
	const struct vlm_backend *be = vlm_backend_default();

	be = be ? vlm_backend_host(be) : NULL; /* the weights are the host's */
	return be && vlm_backend_check(be, &op, 1) == 0 ? be : NULL;
}

int
vlm_lora_merge_into(const struct vlm_model *m, float *w)
{
	int first = vlm_lora_first(m);
	int64_t nbase = first < m->nparams ? m->params[first].off : m->nfloats;
	float s = vlm_lora_scale(&m->cfg);
	const struct vlm_backend *be = gemm_backend();
	struct pair p;

	if (!be)
		return -1;
	if (w != m->w)
		be->copy(w, m->w, nbase * sizeof(float));
	for (int i = first; i + 1 < m->nparams; i += 2) {
		pair_at(m, i, m->w, &p);
		float *dst = w + (p.w - m->w);
		for (int e = 0; e < p.E; e++) /* W_e += s B_e A_e */
			be->gemm(0, 0, p.OUT, p.IN, p.r, s,
			    p.b + (int64_t)e * p.OUT * p.r, p.r,
			    p.a + (int64_t)e * p.r * p.IN, p.IN, 1,
			    dst + (int64_t)e * p.OUT * p.IN, p.IN);
	}
	return be->sync();
}

/* The pair adapting parameter w, or -1. */
static int
pair_of(const struct vlm_model *m, int w)
{
	char name[112];
	const struct vlm_param *a;

	snprintf(name, sizeof(name), "%s.lora_A", m->params[w].name);
	a = vlm_model_param(m, name);
	return a ? (int)(a - m->params) : -1;
}

int
vlm_lora_fold(const struct vlm_model *m, int w, const float *dw, float *ga,
    const struct vlm_pack *ap, float beta)
{
	float s = vlm_lora_scale(&m->cfg);
	const struct vlm_backend *be;
	int i = pair_of(m, w);
	int64_t oa, ob;
	struct pair p;

	if (i < 0)
		return vlm_error("'%s' has no LoRA adapters", m->params[w].name);
	if ((oa = vlm_pack_at(ap, m, i)) < 0)
		return 0; /* a frozen pair */
	if (!(be = gemm_backend()))
		return -1;
	ob = vlm_pack_at(ap, m, i + 1);
	pair_at(m, i, m->w, &p);
	for (int e = 0; e < p.E; e++) {
		int64_t ea = (int64_t)e * p.r * p.IN;
		int64_t eb = (int64_t)e * p.OUT * p.r;
		int64_t ew = (int64_t)e * p.OUT * p.IN;
		/* dA = s B^T dW (r,IN); dB = s dW A^T (OUT,r) */
		be->gemm(1, 0, p.r, p.IN, p.OUT, s, p.b + eb, p.r, dw + ew,
		    p.IN, beta, ga + oa + ea, p.IN);
		be->gemm(0, 1, p.OUT, p.r, p.IN, s, dw + ew, p.IN, p.a + ea,
		    p.IN, beta, ga + ob + eb, p.r);
	}
	return 0;
}

int
vlm_lora_grad(const struct vlm_model *m, float *grad)
{
	int first = vlm_lora_first(m);
	const struct vlm_backend *be;

	if (first == m->nparams)
		return 0;
	for (int i = first; i + 1 < m->nparams; i += 2) {
		struct pair p;
		pair_at(m, i, m->w, &p);
		if (vlm_lora_fold(m, p.wi, grad + m->params[p.wi].off, grad,
		    NULL, 0) < 0)
			return -1;
	}
	be = gemm_backend();
	be->memset(grad, 0, m->params[first].off * sizeof(float));
	return be->sync();
}

int
vlm_lora_merge(struct vlm_model *m)
{
	int first = vlm_lora_first(m);
	float *w;

	if (m->cfg.lora.rank <= 0)
		return 0;
	if (vlm_lora_merge_into(m, m->w) < 0)
		return -1;
	if (first < m->nparams)
		m->nfloats = m->params[first].off;
	m->nparams = first;
	m->cfg.lora.rank = 0;
	m->cfg.lora.alpha = 0;
	m->cfg.lora.targets = VLM_LORA_ALL;
	if (!m->file.base && (w = realloc(m->w, m->nfloats *
	    sizeof(float)))) /* shrink an owned slab */
		m->w = w;
	return 0;
}

/* Do the first n parameters of a and b have the same names and shapes? */
static int
same_table(const struct vlm_model *a, const struct vlm_model *b, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(a->params[i].name, b->params[i].name) != 0 ||
		    a->params[i].ndim != b->params[i].ndim ||
		    memcmp(a->params[i].shape, b->params[i].shape,
		    sizeof(a->params[i].shape)) != 0)
			return 0;
	return 1;
}

int
vlm_lora_add(struct vlm_model *m, const struct vlm_config *c, uint64_t seed)
{
	struct vlm_model a;

	if (m->cfg.lora.rank > 0)
		return vlm_error("the model has LoRA adapters already");
	if (c->lora.rank <= 0)
		return vlm_error("adding LoRA adapters needs lora.rank > 0");
	if (vlm_model_init(&a, c) < 0)
		return -1;
	if (vlm_lora_first(&a) != m->nparams || !same_table(&a, m,
	    m->nparams)) {
		vlm_model_release(&a);
		return vlm_error("the config would change the base parameters, "
		    "not only add LoRA adapters");
	}
	memcpy(a.w, m->w, m->nfloats * sizeof(float));
	vlm_lora_randomize(&a, seed);
	a.tokenizer = m->tokenizer;
	m->tokenizer = NULL;
	vlm_model_release(m);
	*m = a;
	return 0;
}

int
vlm_lora_view_init(struct vlm_model *view, const struct vlm_model *m)
{
	int first = vlm_lora_first(m);

	*view = *m;
	view->nparams = first;
	if (first < m->nparams)
		view->nfloats = m->params[first].off;
	view->cfg.lora.rank = 0;
	view->cfg.lora.alpha = 0;
	view->tokenizer = NULL;
	if (!(view->w = malloc(view->nfloats * sizeof(float)))) {
		memset(view, 0, sizeof(*view));
		return vlm_error("out of memory for %lld merged parameters",
		    (long long)m->nfloats);
	}
	if (vlm_lora_merge_into(m, view->w) < 0) {
		vlm_lora_view_release(view);
		return -1;
	}
	return 0;
}

void
vlm_lora_view_release(struct vlm_model *view)
{
	free(view->w);
	memset(view, 0, sizeof(*view));
}
