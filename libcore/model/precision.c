/*
 * precision.c - the bf16 copies of a model's linear weights, made once
 * per encoder for --precision bf16 (ALGORITHMS.md has no bf16 section:
 * kernels.h says what the bf16 linear layer computes). The copy is a
 * slab of nfloats bf16 numbers at the parameters' own offsets, so the
 * forward finds a weight's copy where it finds the weight; entries that
 * are not linear weights are never written, and allocated-but-untouched
 * pages cost no memory. vlm-embed then gives back the pages of the f32
 * weights it no longer reads (vlm_model_drop_f32).
 *
 * fp32 inference packs instead (vlm_wpack_get): each linear weight at its
 * first use, in the panels the CPU GEMM reads (it packed them on every
 * call), then the weight's pages of the model file are given back, so
 * that memory holds one copy of each weight, and only of those used.
 */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "kernels.h"

int
vlm_precision_parse(const char *s, enum vlm_precision *p)
{
	static const char *const names[] = { "fp32", "bf16" };

	for (int i = 0; i < 2; i++)
		if (strcmp(s, names[i]) == 0) {
			*p = (enum vlm_precision)i;
			return 0;
		}
	return vlm_error("unknown precision '%s' (there are fp32 and bf16)",
	    s);
}

/* What to do with each linear weight: cast it, or drop its f32 pages. */
struct visit {
	const struct vlm_model *m;
	const struct vlm_backend *be;
	uint16_t *wb;
	void (*fn)(struct visit *v, int64_t off, int64_t n);
};

/* wb[off..off+n) = bf16(w[off..off+n)). */
static void
cast(struct visit *v, int64_t off, int64_t n)
{
	v->be->bf16_from_f32(v->wb + off, v->m->w + off, n);
}

/* The whole pages inside w[off..off+n) given back. */
static void
drop(struct visit *v, int64_t off, int64_t n)
{
	vlm_pages_drop(v->m->w + off, (size_t)n * sizeof(float));
}

static void
each(struct visit *v, int64_t off, int64_t n)
{
	if (off >= 0)
		v->fn(v, off, n);
}

/* Every linear weight of one tower: blocks, patch embedding, pooling. */
static void
visit_tower(struct visit *v, int tower)
{
	const struct vlm_config *c = &v->m->cfg;
	const struct vlm_tower_config *tc = tower ? &c->text : &c->vision;
	const struct vlm_tower_off *t = tower ? &v->m->txt : &v->m->vis;
	int64_t D = tc->width, F = D * tc->mlp_ratio, E = c->moe.experts;
	int64_t p = c->patch_size;

	for (int l = 0; l < t->nblocks; l++) {
		const struct vlm_block_off *o = &t->blocks[l];
		each(v, o->qkv_w, 3 * D * D);
		each(v, o->out_w, D * D);
		if (!o->moe) {
			each(v, o->fc_w, F * D);
			each(v, o->proj_w, D * F);
		}
		for (int i = 0; i < o->moe; i++) {
			each(v, o->efc_w[i], E * F * D);
			each(v, o->eproj_w[i], E * D * F);
		}
	}
	if (!tower)
		each(v, t->patch_w, D * 3 * p * p);
	if (tc->pool == VLM_POOL_MAP) {
		each(v, t->map_in_w, 3 * D * D);
		each(v, t->map_out_w, D * D);
	}
}

uint16_t *
vlm_model_bf16_alloc(const struct vlm_model *m, const struct vlm_backend *be,
    int tower)
{
	uint16_t *wb;

	if (!be->bf16_from_f32 || !be->linear_fwd_bf16) {
		vlm_error("backend '%s' has no bf16 ops", be->name);
		return NULL;
	}
	if (!(wb = be->alloc((size_t)m->nfloats * sizeof(*wb)))) {
		vlm_error("out of memory for %lld MB of bf16 weights",
		    (long long)(m->nfloats * 2 >> 20));
		return NULL;
	}
	struct visit v = { m, be, wb, cast };
	for (int i = 0; i < 2; i++)
		if (tower < 0 || tower == i)
			visit_tower(&v, i);
	return wb;
}

void
vlm_model_drop_f32(struct vlm_model *m, int tower)
{
	struct visit v = { m, NULL, NULL, drop };

	for (int i = 0; i < 2; i++)
		if (tower < 0 || tower == i)
			visit_tower(&v, i);
}

/* Room for one more entry in k; -1 when out of memory. */
static int
wpack_grow(struct vlm_wpack *k)
{
	int cap = k->cap ? 2 * k->cap : 64;
	int64_t *off;
	float **wk;

	if (k->n < k->cap)
		return 0;
	if (!(off = realloc(k->off, cap * sizeof(*off))))
		return -1;
	k->off = off;
	if (!(wk = realloc(k->wk, cap * sizeof(*wk))))
		return -1;
	k->wk = wk, k->cap = cap;
	return 0;
}

const float *
vlm_wpack_get(struct vlm_wpack *k, const struct vlm_backend *be,
    const struct vlm_model *m, int64_t off, int IN, int OUT)
{
	size_t n, bytes, wbytes = (size_t)IN * OUT * sizeof(float);
	float *wk = NULL;

	for (int i = 0; i < k->n; i++)
		if (k->off[i] == off)
			return k->wk[i];
	if (!be->linear_pack || !(n = be->linear_packed_floats(IN, OUT)) ||
	    wpack_grow(k) < 0)
		return NULL;
	bytes = (n * sizeof(float) + 63) / 64 * 64;
	if ((k->copies || vlm_map_holds(&m->file, m->w + off, wbytes)) &&
	    (wk = aligned_alloc(64, bytes))) {
		be->linear_pack(wk, m->w + off, IN, OUT);
		vlm_map_drop(&m->file, m->w + off, wbytes);
	}
	k->off[k->n] = off, k->wk[k->n++] = wk;
	return wk;
}

void
vlm_wpack_release(struct vlm_wpack *k)
{
	for (int i = 0; i < k->n; i++)
		free(k->wk[i]);
	free(k->off), free(k->wk);
	memset(k, 0, sizeof(*k));
}
