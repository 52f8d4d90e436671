/*
 * model/coca-lora.c - LoRA adapters on a CoCa decoder (Uni-MoE's third
 * stage): a weight X (out, in), or an expert stack (E, out, in), with
 * tensors X.lora_a (r, in) / (E, r, in) and X.lora_b (out, r) /
 * (E, out, r) is read by the forward as X + s B A, s = lora_alpha / r
 * (the config key "lora_alpha", default r). At load the effective
 * weights go into one buffer and the tensor points there; the base
 * stays in the file (or the training slab) and is what a save writes.
 * The gradient of X is the effective weight's; A and B get theirs from
 * it: dA = s B^T dX, dB = s dX A^T.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/coca.h"

/* The targets: the decoder's attention projections and FFNs (experts
 * or dense), self and cross blocks alike. */
static int
is_target(const char *name)
{
	static const char *const ends[] = { ".attn.in_proj_weight",
		".attn.out_proj.weight", ".mlp.c_fc.weight",
		".mlp.c_proj.weight", ".mlp.experts.c_fc.weight",
		".mlp.experts.c_proj.weight" };
	size_t n = strlen(name);

	if (strncmp(name, "text_decoder.", 13) != 0)
		return 0;
	for (size_t i = 0; i < sizeof(ends) / sizeof(*ends); i++)
		if (n > strlen(ends[i]) && strcmp(name + n - strlen(ends[i]),
		    ends[i]) == 0)
			return 1;
	return 0;
}

/* eff := base + s B A for entry k. */
static void
merge(const struct vlm_coca *c, const struct vlm_coca_lora *l)
{
	const float *A = c->st.tensors[l->a].data, *B = c->st.tensors[l->b].data;
	float *eff = c->st.tensors[l->w].data;
	size_t oi = (size_t)l->out * l->in;

	memcpy(eff, l->base, l->nb * oi * sizeof(float));
	for (int e = 0; e < l->nb; e++)
		vlm_gemm_cpu(0, 0, l->out, l->in, l->r, c->lora_scale, B +
		    (size_t)e * l->out * l->r, l->r, A + (size_t)e * l->r *
		    l->in, l->in, 1, eff + e * oi, l->in);
}

void
vlm_coca_lora_sync(const struct vlm_coca *c)
{
	for (int k = 0; k < c->nlora; k++)
		merge(c, &c->lora[k]);
}

/* Entry for the adapters of tensor w, shapes checked. */
static int
entry(struct vlm_coca *c, int w, struct vlm_coca_lora *l)
{
	const struct vlm_tensor *t = &c->st.tensors[w], *a, *b;
	char nm[200];
	int three = t->ndim == 3;

	snprintf(nm, sizeof(nm), "%s.lora_a", c->st.names[w]);
	a = vlm_st_get(&c->st, nm);
	snprintf(nm, sizeof(nm), "%s.lora_b", c->st.names[w]);
	b = vlm_st_get(&c->st, nm);
	*l = (struct vlm_coca_lora){ .w = w, .nb = three ? (int)t->shape[0] :
		1, .out = (int)t->shape[three], .in = (int)t->shape[three + 1],
		.r = a && a->ndim == t->ndim ? (int)a->shape[three] : 0,
		.base = t->data };
	if (!a || !b || b->ndim != t->ndim || l->r < 1 || l->r > 4096 ||
	    a->shape[three + 1] != l->in || b->shape[three] != l->out ||
	    b->shape[three + 1] != l->r || (three && (a->shape[0] != l->nb ||
	    b->shape[0] != l->nb)))
		return vlm_error("'%s': LoRA adapters of '%s' missing or of "
		    "the wrong shape", c->st.path, c->st.names[w]);
	l->a = (int)(a - c->st.tensors);
	l->b = (int)(b - c->st.tensors);
	return 0;
}

int
vlm_coca_lora_load(struct vlm_coca *c, double alpha)
{
	size_t total = 0;
	int n = 0, r = 0;

	for (int i = 0; i < c->st.n; i++)
		n += strstr(c->st.names[i], ".lora_a") != NULL;
	if (n == 0)
		return 0;
	if (!(c->lora = calloc(n, sizeof(*c->lora))))
		return vlm_error("out of memory");
	for (int i = 0; i < c->st.n; i++) {
		char nm[200];
		if (!is_target(c->st.names[i]))
			continue;
		snprintf(nm, sizeof(nm), "%s.lora_a", c->st.names[i]);
		if (!vlm_st_get(&c->st, nm))
			continue;
		if (entry(c, i, &c->lora[c->nlora]) < 0)
			return -1;
		if (r && c->lora[c->nlora].r != r)
			return vlm_error("'%s': LoRA adapters of several ranks",
			    c->st.path);
		r = c->lora[c->nlora].r;
		total += vlm_tensor_numel(&c->st.tensors[i]);
		c->nlora++;
	}
	if (c->nlora != n)
		return vlm_error("'%s': LoRA adapters on a tensor that takes "
		    "none (the decoder's attention and FFN weights do)",
		    c->st.path);
	c->lora_rank = r;
	c->lora_scale = (float)((alpha > 0 ? alpha : r) / r);
	if (!(c->lora_eff = malloc(total * sizeof(float))))
		return vlm_error("out of memory");
	total = 0;
	for (int k = 0; k < c->nlora; k++) {
		struct vlm_tensor *t = &c->st.tensors[c->lora[k].w];
		t->data = c->lora_eff + total;
		total += vlm_tensor_numel(t);
	}
	vlm_coca_lora_sync(c);
	return 0;
}

void
vlm_coca_lora_grads(const struct vlm_coca *c, float **gr)
{
	for (int k = 0; k < c->nlora; k++) {
		const struct vlm_coca_lora *l = &c->lora[k];
		const float *A = c->st.tensors[l->a].data;
		const float *B = c->st.tensors[l->b].data;
		size_t oi = (size_t)l->out * l->in, ri = (size_t)l->r * l->in;
		size_t or = (size_t)l->out * l->r;
		for (int e = 0; e < l->nb; e++) {
			const float *G = gr[l->w] + e * oi;
			/* dA (r,in) += s B^T G;  dB (out,r) += s G A^T */
			vlm_gemm_cpu(1, 0, l->r, l->in, l->out, c->lora_scale,
			    B + e * or, l->r, G, l->in, 1, gr[l->a] + e * ri,
			    l->in);
			vlm_gemm_cpu(0, 1, l->out, l->r, l->in, c->lora_scale,
			    G, l->in, A + e * ri, l->in, 1, gr[l->b] + e * or,
			    l->r);
		}
	}
}

/* The tensors of c as a save writes them: base weights, not merged. */
const struct vlm_tensor *
vlm_coca_lora_base_alloc(const struct vlm_coca *c)
{
	struct vlm_tensor *t = malloc((c->st.n ? c->st.n : 1) * sizeof(*t));

	if (!t) {
		vlm_error("out of memory");
		return NULL;
	}
	memcpy(t, c->st.tensors, c->st.n * sizeof(*t));
	for (int k = 0; k < c->nlora; k++)
		t[c->lora[k].w].data = c->lora[k].base;
	return t;
}

int
vlm_coca_add_lora(const struct vlm_coca *c, const char *path, int r,
    double alpha, uint64_t seed, const char *merges)
{
	int n = 0, k = 0, rc;
	struct vlm_rng rng;
	struct vlm_coca hdr = *c;

	if (c->nlora)
		return vlm_error("'%s': the model has LoRA adapters already",
		    c->st.path);
	if (r < 1 || r > 4096)
		return vlm_error("LoRA rank %d (1 to 4096)", r);
	for (int i = 0; i < c->st.n; i++)
		n += 1 + 2 * is_target(c->st.names[i]);
	const char **names = calloc(n, sizeof(*names));
	char (*nm)[200] = calloc(n, sizeof(*nm));
	struct vlm_tensor *ts = calloc(n, sizeof(*ts));
	if (!names || !nm || !ts) {
		free(names), free(nm), free(ts);
		return vlm_error("out of memory");
	}
	vlm_rng_seed(&rng, seed);
	for (int i = 0; i < c->st.n; i++) {
		const struct vlm_tensor *t = &c->st.tensors[i];
		names[k] = c->st.names[i], ts[k++] = *t;
		if (!is_target(c->st.names[i]))
			continue;
		int three = t->ndim == 3, nb = three ? (int)t->shape[0] : 1;
		int out = (int)t->shape[three], in = (int)t->shape[three + 1];
		for (int ab = 0; ab < 2; ab++, k++) {
			/* A ~ N(0, 1/in) (kaiming-like), B = 0: unchanged */
			struct vlm_tensor *x = &ts[k];
			*x = (struct vlm_tensor){ .dtype = VLM_DTYPE_F32,
				.ndim = t->ndim };
			int64_t sh[3] = { nb, ab ? out : r, ab ? r : in };
			memcpy(x->shape, sh + !three, t->ndim * sizeof(int64_t));
			int64_t cnt = vlm_tensor_numel(x);
			float *d = calloc(cnt, sizeof(float));
			for (int64_t j = 0; d && !ab && j < cnt; j++)
				d[j] = (float)(vlm_rng_normal(&rng) / sqrt(in));
			x->data = d;
			snprintf(nm[k], sizeof(nm[k]), "%s.lora_%c",
			    c->st.names[i], ab ? 'b' : 'a');
			names[k] = nm[k];
		}
	}
	/* what is written: the base weights; alpha in the config */
	const struct vlm_tensor *base = vlm_coca_lora_base_alloc(c);
	for (int i = 0, j = 0; base && i < k; i++)
		if (j < c->st.n && names[i] == c->st.names[j])
			ts[i].data = base[j++].data;
	hdr.lora_alpha = alpha > 0 ? alpha : r;
	rc = base ? vlm_coca_write(path, names, ts, k, &hdr, merges) : -1;
	for (int i = 0; i < k; i++)
		if (names[i] == nm[i])
			free(ts[i].data);
	free((void *)base), free(names), free(nm), free(ts);
	return rc;
}

/* 1 for an adapter tensor's name (X.lora_a, X.lora_b). */
static int
is_adapter(const char *name)
{
	size_t n = strlen(name);

	return n > 7 && (strcmp(name + n - 7, ".lora_a") == 0 ||
	    strcmp(name + n - 7, ".lora_b") == 0);
}

int
vlm_coca_merge_lora(const struct vlm_coca *c, const char *path,
    const char *merges)
{
	const char **names = calloc(c->st.n ? c->st.n : 1, sizeof(*names));
	struct vlm_tensor *ts = calloc(c->st.n ? c->st.n : 1, sizeof(*ts));
	struct vlm_coca hdr = *c;
	int k = 0, rc;

	if (!names || !ts) {
		free(names), free(ts);
		return vlm_error("out of memory");
	}
	if (c->nlora == 0) {
		free(names), free(ts);
		return vlm_error("'%s': no LoRA adapters to merge", c->st.path);
	}
	/* the tensors hold the effective weights W + s B A already */
	for (int i = 0; i < c->st.n; i++)
		if (!is_adapter(c->st.names[i]))
			names[k] = c->st.names[i], ts[k++] = c->st.tensors[i];
	hdr.lora_alpha = 0;
	rc = vlm_coca_write(path, names, ts, k, &hdr, merges);
	free(names), free(ts);
	return rc;
}
