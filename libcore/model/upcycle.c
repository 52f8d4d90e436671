/*
 * upcycle.c - sparse upcycling (ALGORITHMS.md section 4): a dense model
 * becomes an MoE model whose every expert starts as a copy of the dense
 * MLP it replaces and whose routers start near zero (small normal
 * weights, seeded), so that training continues from the dense model's
 * function instead of from scratch.
 */
#include <string.h>

#include "model/model.h"

/* Copy the dense MLP of block d into every expert of MoE block o. */
static void
copy_experts(struct vlm_model *m, const struct vlm_block_off *o,
    const struct vlm_model *dense, const struct vlm_block_off *d, int D,
    int F)
{
	size_t FD = (size_t)F * D;

	for (int p = 0; p < o->moe; p++)
		for (int e = 0; e < m->cfg.moe.experts; e++) {
			memcpy(m->w + o->efc_w[p] + e * FD, dense->w + d->fc_w,
			    FD * sizeof(float));
			memcpy(m->w + o->efc_b[p] + (size_t)e * F,
			    dense->w + d->fc_b, F * sizeof(float));
			memcpy(m->w + o->eproj_w[p] + e * FD,
			    dense->w + d->proj_w, FD * sizeof(float));
			memcpy(m->w + o->eproj_b[p] + (size_t)e * D,
			    dense->w + d->proj_b, D * sizeof(float));
		}
}

/* Routers of MoE block o: N(0, std^2) from r (std 0: exactly zero). */
static void
init_routers(struct vlm_model *m, const struct vlm_block_off *o, int D,
    double std, struct vlm_rng *r)
{
	size_t n = (size_t)m->cfg.moe.experts * D;

	for (int p = 0; p < o->moe; p++)
		for (size_t i = 0; i < n; i++)
			m->w[o->router[p] + i] = std > 0 ?
			    (float)(std * vlm_rng_normal(r)) : 0.0f;
}

/* The blocks of one tower: experts from the dense MLPs, routers. */
static void
upcycle_tower(struct vlm_model *m, const struct vlm_tower_off *t,
    const struct vlm_model *dense, const struct vlm_tower_off *dt,
    const struct vlm_tower_config *tc, double std, struct vlm_rng *r)
{
	int D = tc->width, F = tc->width * tc->mlp_ratio;

	for (int l = 0; l < t->nblocks; l++) {
		if (!t->blocks[l].moe)
			continue;
		copy_experts(m, &t->blocks[l], dense, &dt->blocks[l], D, F);
		init_routers(m, &t->blocks[l], D, std, r);
	}
}

/* Every parameter of m that dense has under the same name and shape. */
static int
copy_shared(struct vlm_model *m, const struct vlm_model *dense)
{
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		const struct vlm_param *q = vlm_model_param(dense, p->name);
		if (strstr(p->name, ".moe."))
			continue;
		if (!q || q->n != p->n || q->ndim != p->ndim ||
		    memcmp(q->shape, p->shape, sizeof(p->shape)) != 0)
			return vlm_error("upcycle: the new config changes "
			    "parameter '%s' (only MoE settings may differ)",
			    p->name);
		memcpy(m->w + p->off, dense->w + q->off, p->n * sizeof(float));
	}
	return 0;
}

int
vlm_model_upcycle(struct vlm_model *m, const struct vlm_model *dense,
    const struct vlm_config *c, double router_std, uint64_t seed)
{
	struct vlm_rng r;

	if (dense->cfg.moe.experts != 0)
		return vlm_error("upcycle: the model is already sparse (%d "
		    "experts)", dense->cfg.moe.experts);
	if (c->moe.experts < 1)
		return vlm_error("upcycle: moe.experts must be at least 1");
	if (vlm_model_init(m, c) < 0)
		return -1;
	if (copy_shared(m, dense) < 0) {
		vlm_model_release(m);
		return -1;
	}
	vlm_rng_seed(&r, seed);
	if (c->family == VLM_TWO_TOWER)
		upcycle_tower(m, &m->vis, dense, &dense->vis, &c->vision,
		    router_std, &r);
	upcycle_tower(m, &m->txt, dense, &dense->txt, &c->text, router_std,
	    &r);
	if (dense->tokenizer && !(m->tokenizer = strdup(dense->tokenizer))) {
		vlm_model_release(m);
		return vlm_error("out of memory");
	}
	return 0;
}
