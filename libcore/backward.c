/*
 * backward.c - gradients of the contrastive + aux loss through the model
 * of forward.c, in reverse order. Every kernel backward accumulates, so
 * each scratch buffer is zeroed right before the kernel that fills it.
 */
#include <string.h>

#include "kernels.h"
#include "run.h"


static void
zero(float *x, size_t n)
{
	memset(x, 0, n * sizeof(float));
}

static void
act_bwd(const struct vlm_config *c, float *dx, const float *dy,
    const float *x, int64_t n)
{
	if (c->act == VLM_ACT_QUICKGELU)
		vlm_quickgelu_bwd_cpu(dx, dy, x, n);
	else
		vlm_gelu_bwd_cpu(dx, dy, x, n);
}

/* The aux terms' gradient into dz, each weighted as in the forward. */
static void
aux_bwd(const struct vlm_config *c, const struct moe_acts *ma, float *dz)
{
	int S = ma->S, E = c->moe.experts, K = c->moe.top_k;
	float coef[8], sigma = c->moe.noise / E;

	vlm_aux_coefs(c, ma, 1, coef);
	if (coef[0])
		vlm_aux_importance_bwd_ref(dz, ma->p, coef[0], S, E);
	if (coef[1])
		vlm_aux_load_bwd_ref(dz, ma->z, ma->eps, sigma, coef[1], S, E,
		    K);
	if (coef[2])
		vlm_aux_switch_bwd_ref(dz, ma->g, ma->idx, coef[2], S, E, K);
	if (coef[3])
		vlm_aux_zloss_bwd_ref(dz, ma->z, coef[3], S, E);
	for (int m = 0; m < 2; m++) {
		float tau = vlm_aux_entropy_tau(m ? c->aux.s_text :
		    c->aux.s_image, E);
		if (coef[4 + m])
			vlm_aux_entropy_local_bwd_ref(dz, ma->z, ma->mod, m,
			    coef[4 + m], S, E);
		if (coef[6 + m])
			vlm_aux_entropy_global_bwd_ref(dz, ma->z, ma->mod, m,
			    tau, coef[6 + m], S, E);
	}
}

/* Experts of one pool: d(out rows) -> d(ln2 rows), parameter grads. */
static void
moe_bwd(struct vlm_run *r, const struct vlm_model *m, struct moe_acts *ma,
    const struct vlm_block_off *o, int pool, const float *dout,
    float *dln2, float *g, int D, int F)
{
	const struct vlm_config *c = &m->cfg;
	int S = ma->S, E = c->moe.experts, K = c->moe.top_k, C = ma->C;
	const float *w = m->w;

	if (S == 0)
		return;
	for (int s = 0; s < S; s++)
		memcpy(r->dys + (size_t)s * D, dout + (size_t)ma->rows[s] * D,
		    D * sizeof(float));
	zero(r->deout, (size_t)E * C * D);
	zero(r->dw, (size_t)S * K);
	vlm_moe_combine_bwd_cpu(r->deout, r->dw, r->dys, ma->eout, ma->idx,
	    ma->slot, ma->w, S, D, E, K, C);
	zero(r->deact, (size_t)E * C * F);
	zero(r->defc, (size_t)E * C * F);
	zero(r->dbuf, (size_t)E * C * D);
	for (int e = 0; e < E; e++) {
		int n = ma->fill[e];
		size_t bo = (size_t)e * C;
		if (!n)
			continue;
		vlm_linear_bwd_cpu(r->deact + bo * F, g + o->eproj_w[pool] +
		    (size_t)e * D * F, g + o->eproj_b[pool] + (size_t)e * D,
		    r->deout + bo * D, ma->eact + bo * F, w + o->eproj_w[pool] +
		    (size_t)e * D * F, n, F, D);
		act_bwd(c, r->defc + bo * F, r->deact + bo * F, ma->efc + bo * F,
		    (int64_t)n * F);
		vlm_linear_bwd_cpu(r->dbuf + bo * D, g + o->efc_w[pool] +
		    (size_t)e * F * D, g + o->efc_b[pool] + (size_t)e * F,
		    r->defc + bo * F, ma->buf + bo * D, w + o->efc_w[pool] +
		    (size_t)e * F * D, n, D, F);
	}
	zero(r->dxs, (size_t)S * D);
	vlm_moe_dispatch_bwd_cpu(r->dxs, r->dbuf, ma->idx, ma->slot, S, D, E,
	    K, C);
	zero(r->dz, (size_t)S * E);
	vlm_moe_route_bwd_ref(r->dz, r->dw, ma->g, ma->idx, ma->keep, S, E, K,
	    c->moe.gate_norm == VLM_GATE_TOPK);
	aux_bwd(c, ma, r->dz);
	vlm_router_bwd_cpu(r->dxs, g + o->router[pool], r->dz, ma->xs,
	    w + o->router[pool], S, D, E);
	for (int s = 0; s < S; s++) {
		float *dst = dln2 + (size_t)ma->rows[s] * D;
		for (int d = 0; d < D; d++)
			dst[d] += r->dxs[(size_t)s * D + d];
	}
}

/* The MLP (dense or MoE) of block l: dout -> r->dln (d ln2). */
static void
mlp_bwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    int l, const float *dout, float *g)
{
	const struct vlm_block_off *o = &st->blocks[l];
	size_t R = st->R, D = st->D, F = st->F;
	const float *w = m->w;

	zero(r->dln, R * D);
	if (o->moe) {
		for (int p = 0; p < st->pools; p++)
			moe_bwd(r, m, &st->moe[l * 2 + p], o, p, dout, r->dln,
			    g, D, F);
		return;
	}
	zero(r->dact, R * F);
	vlm_linear_bwd_cpu(r->dact, g + o->proj_w, g + o->proj_b, dout,
	    LAYER(st, act, l, R * F), w + o->proj_w, R, F, D);
	zero(r->dfc, R * F);
	act_bwd(&m->cfg, r->dfc, r->dact, LAYER(st, fc, l, R * F), R * F);
	vlm_linear_bwd_cpu(r->dln, g + o->fc_w, g + o->fc_b, r->dfc,
	    LAYER(st, ln2, l, R * D), w + o->fc_w, R, D, F);
}

/* Block l: dx = d x[l] from dout = d x[l+1]. */
static void
block_bwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    int l, const float *dout, float *dx, float *g)
{
	const struct vlm_block_off *o = &st->blocks[l];
	size_t R = st->R, D = st->D;
	const float *w = m->w;
	const float *qkv = LAYER(st, qkv, l, R * 3 * D);
	const float *att = LAYER(st, att, l, st->att_n);

	memcpy(dx, dout, R * D * sizeof(float)); /* residual of the MLP */
	mlp_bwd(r, m, st, l, dout, g);
	vlm_layernorm_bwd_cpu(dx, g + o->ln2_w, g + o->ln2_b, r->dln,
	    LAYER(st, mid, l, R * D), w + o->ln2_w, LAYER(st, mean2, l, R),
	    LAYER(st, rstd2, l, R), R, D); /* dx is now d mid */
	zero(r->datty, R * D);
	vlm_linear_bwd_cpu(r->datty, g + o->out_w, g + o->out_b, dx,
	    LAYER(st, atty, l, R * D), w + o->out_w, R, D, D);
	zero(r->dqkv, R * 3 * D);
	for (int i = 0; i < st->nseg; i++) {
		const struct seg *s = &st->seg[i];
		vlm_attention_bwd_cpu(r->dqkv + s->row0 * 3 * D,
		    r->datty + s->row0 * D, qkv + s->row0 * 3 * D, att, s->B,
		    s->T, D, st->H);
		att += (size_t)s->B * st->H * s->T * s->T;
	}
	zero(r->dln, R * D);
	vlm_linear_bwd_cpu(r->dln, g + o->qkv_w, g + o->qkv_b, r->dqkv,
	    LAYER(st, ln1, l, R * D), w + o->qkv_w, R, D, 3 * D);
	vlm_layernorm_bwd_cpu(dx, g + o->ln1_w, g + o->ln1_b, r->dln,
	    st->x + l * R * D, w + o->ln1_w, LAYER(st, mean1, l, R),
	    LAYER(st, rstd1, l, R), R, D);
}

/* Attention pooling backward: d pooled -> r->dlnf, parameter grads. */
static void
map_bwd(struct vlm_run *r, const struct tower_acts *t, const float *w,
    float *g, const struct vlm_tower_off *o, int B, int T, int D, int H,
    const float *dpooled)
{
	size_t DD = (size_t)D * D, BTD = (size_t)B * T * D;

	zero(r->dmpatt, (size_t)B * D);
	vlm_linear_bwd_cpu(r->dmpatt, g + o->map_out_w, g + o->map_out_b,
	    dpooled, t->mpatt, w + o->map_out_w, B, D, D);
	zero(r->dmq, D);
	zero(r->dmk, BTD);
	zero(r->dmv, BTD);
	vlm_pool_map_bwd_ref(r->dmq, r->dmk, r->dmv, r->dmpatt, t->matt, t->mq,
	    t->mk, t->mv, t->len, B, T, D, H);
	vlm_linear_bwd_cpu(r->dlnf, g + o->map_in_w + DD, g + o->map_in_b + D,
	    r->dmk, t->lnf, w + o->map_in_w + DD, B * T, D, D);
	vlm_linear_bwd_cpu(r->dlnf, g + o->map_in_w + 2 * DD,
	    g + o->map_in_b + 2 * D, r->dmv, t->lnf, w + o->map_in_w + 2 * DD,
	    B * T, D, D);
	vlm_linear_bwd_cpu(g + o->map_q, g + o->map_in_w, g + o->map_in_b,
	    r->dmq, w + o->map_q, w + o->map_in_w, 1, D, D);
}

/* d unit features -> d stack output rows of modality i (into dtop). */
static void
head_bwd(struct vlm_run *r, const struct vlm_model *m, int i, float *dtop,
    float *g)
{
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[i];
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	const struct vlm_tower_config *tc = i ? &c->text : &c->vision;
	int D = tc->width, B = t->B, T = t->T, E = c->embed_dim;
	const float *xl = STACK_TOP(t->st) + (size_t)t->row0 * D;

	zero(r->dfeat[i], (size_t)B * E);
	vlm_l2norm_bwd_cpu(r->dfeat[i], r->dunit[i], t->unit, t->norm, B, E);
	/* feat = pooled @ proj: dproj += pooled^T dfeat, dpooled = dfeat proj^T */
	vlm_gemm_cpu(1, 0, D, E, B, 1.0f, t->pooled, D, r->dfeat[i], E, 1.0f,
	    g + o->proj, E);
	vlm_gemm_cpu(0, 1, B, D, E, 1.0f, r->dfeat[i], E, m->w + o->proj, E,
	    0.0f, r->dpooled[i], D);
	zero(r->dlnf, (size_t)B * T * D);
	if (tc->pool == VLM_POOL_GAP)
		vlm_pool_mean_bwd_ref(r->dlnf, r->dpooled[i], t->len, B, T, D);
	else if (tc->pool == VLM_POOL_MAP)
		map_bwd(r, t, m->w, g, o, B, T, D, tc->heads, r->dpooled[i]);
	else
		vlm_pool_token_bwd_ref(r->dlnf, r->dpooled[i], t->pos, B, T, D);
	vlm_layernorm_bwd_cpu(dtop + (size_t)t->row0 * D, g + o->ln_post_w,
	    g + o->ln_post_b, r->dlnf, xl, m->w + o->ln_post_w, t->meanf,
	    t->rstdf, B * T, D);
}

/* d x[0] rows of modality i -> embedding parameter gradients. */
static void
embed_bwd(struct vlm_run *r, const struct vlm_model *m, int i,
    const float *dx0, float *g)
{
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[i];
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	int D = i ? c->text.width : c->vision.width, B = t->B, T = t->Te;
	int p = c->patch_size, P = (c->image_size / p) * (c->image_size / p);
	const float *d = dx0 + (size_t)t->row0e * D;

	if (i == 1) {
		vlm_posembed_bwd_ref(NULL, g + o->pos, d, B, T, D);
		vlm_embed_bwd_ref(g + o->tok_emb, d, t->ids, B * T, c->vocab,
		    D);
		return;
	}
	zero(r->dlnf, (size_t)B * T * D); /* d xe */
	vlm_layernorm_bwd_cpu(r->dlnf, g + o->ln_pre_w, g + o->ln_pre_b, d,
	    t->xe, m->w + o->ln_pre_w, t->mean0, t->rstd0, B * T, D);
	vlm_posembed_bwd_ref(NULL, g + o->pos, r->dlnf, B, T, D);
	zero(r->datty, (size_t)B * P * D); /* d patch embeddings */
	if (o->cls >= 0)
		vlm_cls_prepend_bwd_ref(r->datty, g + o->cls, r->dlnf, B, P, D);
	else
		memcpy(r->datty, r->dlnf, (size_t)B * P * D * sizeof(float));
	vlm_linear_bwd_cpu(NULL, g + o->patch_w, NULL, r->datty, t->patches,
	    m->w + o->patch_w, B * P, 3 * p * p, D);
}

/* Every block of a stack in reverse; returns d x[0] (one of two bufs). */
static float *
stack_bwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    float *g)
{
	float *dout = r->dnext, *dx = r->dx, *tmp;

	for (int l = st->L - 1; l >= 0; l--) {
		block_bwd(r, m, st, l, dout, dx, g);
		tmp = dout, dout = dx, dx = tmp;
	}
	return dout;
}

/* d x[0] of st->next (r->dcut) -> d output rows of st (dtop). */
static void
cut_bwd(struct vlm_run *r, const struct vlm_model *m, const struct stack *st,
    float *dtop, float *g)
{
	const struct vlm_config *c = &m->cfg;
	const struct vlm_tower_off *o = &m->vis;
	const float *w = m->w, *top = STACK_TOP(st);
	size_t D = st->D;

	for (int i = 0; i < st->nseg; i++) {
		const struct seg *a = &st->seg[i], *b = &st->next->seg[i];
		const float *d0 = r->dcut + b->row0 * D;
		float *dt = dtop + a->row0 * D;
		if (a->mod) {
			for (size_t k = 0; k < (size_t)a->B * a->T * D; k++)
				dt[k] += d0[k];
			continue;
		}
		vlm_token_learner_bwd_cpu(dt, g + o->tl_ln_w, g + o->tl_ln_b,
		    g + o->tl_w1, g + o->tl_b1, g + o->tl_w2, g + o->tl_b2, d0,
		    r->tw[0].tl_act, top + a->row0 * D, w + o->tl_ln_w,
		    w + o->tl_w1, w + o->tl_w2, a->B, a->T, D, c->tl.hidden,
		    b->T);
	}
}

int
vlm_backward(struct vlm_run *r, const struct vlm_model *m, float *g)
{
	int B = r->tw[0].B;

	if (!r->train)
		return vlm_error("backward on a run made for inference");
	zero(g, m->nfloats);
	zero(r->dunit[0], (size_t)B * m->cfg.embed_dim);
	zero(r->dunit[1], (size_t)B * m->cfg.embed_dim);
	vlm_clip_loss_bwd_cpu(r->dunit[0], r->dunit[1], g + m->logit_scale,
	    r->dlogits, r->logits, r->lse2, r->tw[0].unit, r->tw[1].unit,
	    m->w[m->logit_scale], 1.0f, B, m->cfg.embed_dim);
	for (int s = r->nst - 1; s >= 0; s--) { /* stacks in reverse */
		struct stack *st = &r->st[s];
		float *dx0;
		zero(r->dnext, (size_t)st->R * st->D);
		for (int i = 0; i < 2; i++)
			if (r->tw[i].st == st)
				head_bwd(r, m, i, r->dnext, g);
		if (st->next && st->R)
			cut_bwd(r, m, st, r->dnext, g);
		dx0 = stack_bwd(r, m, st, g);
		for (int i = 0; i < 2; i++)
			if (r->tw[i].st0 == st)
				embed_bwd(r, m, i, dx0, g);
		if (s > 0 && r->st[s - 1].next == st)
			memcpy(r->dcut, dx0, (size_t)st->R * st->D *
			    sizeof(float));
	}
	return 0;
}
