/*
 * backward.c - gradients of the contrastive + aux loss through the model
 * of forward.c, in reverse order. Every kernel backward accumulates, so
 * each scratch buffer is zeroed right before the kernel that fills it.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/run.h"

/* Index of the parameter holding slab float off (parameters lie in
 * slab order: vlm_run_freeze checks). */
static int
param_at(const struct vlm_model *m, int64_t off)
{
	int lo = 0, hi = m->nparams - 1;

	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (m->params[mid].off <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Does anyone read the gradient of the parameter at off (-1: none)? A
 * folded one (vlm_run_fold) is read by the fold. */
static int
wanted(const struct vlm_run *r, const struct vlm_model *m, int64_t off)
{
	int i;

	if (off < 0)
		return 0;
	i = param_at(m, off);
	return !r->nograd || !r->nograd[i] || (r->foff && r->foff[i] >= 0);
}

/* Where the gradient of the parameter at off goes (k floats into it),
 * or NULL: nobody reads it, the kernels skip it. A packed run
 * (vlm_run_pack) has it at its place in the packed slab. */
float *
vlm_run_grad(const struct vlm_run *r, const struct vlm_model *m, float *g,
    int64_t off, int64_t k)
{
	int i;

	if (!wanted(r, m, off))
		return NULL;
	i = param_at(m, off);
	if (r->foff && r->foff[i] >= 0) /* the block's fold scratch */
		return r->fbuf + r->foff[i] + (off - m->params[i].off) + k;
	if (!r->goff)
		return g + off + k;
	return g + (r->goff[i] + (off - m->params[i].off) + k);
}
#define G vlm_run_grad

/* n floats of the backend's memory x set to 0. */
static void
zero(const struct vlm_backend *be, float *x, size_t n)
{
	be->memset(x, 0, n * sizeof(float));
}

static void
act_bwd(const struct vlm_backend *be, const struct vlm_config *c, float *dx,
    const float *dy, const float *x, int64_t n)
{
	if (c->act == VLM_ACT_QUICKGELU)
		be->quickgelu_bwd(dx, dy, x, n);
	else
		be->gelu_bwd(dx, dy, x, n);
}

/* The aux terms' gradient into dz, each weighted as in the forward. */
static void
aux_bwd(const struct vlm_backend *be, const struct vlm_config *c,
    const struct moe_acts *ma, float *dz, float aux_w)
{
	int S = ma->S, E = c->moe.experts, K = c->moe.top_k;
	float coef[8], sigma = c->moe.noise / E;

	vlm_aux_coefs(c, ma, 1, coef);
	for (int i = 0; i < 8; i++)
		coef[i] *= aux_w;
	if (coef[0])
		be->aux_importance_bwd(dz, ma->p, coef[0], S, E);
	if (coef[1])
		be->aux_load_bwd(dz, ma->z, ma->eps, sigma, coef[1], S, E,
		    K);
	if (coef[2])
		be->aux_switch_bwd(dz, ma->g, ma->idx, coef[2], S, E, K);
	if (coef[3])
		be->aux_zloss_bwd(dz, ma->z, coef[3], S, E);
	for (int m = 0; m < 2; m++) {
		float tau = vlm_aux_entropy_tau(m ? c->aux.s_text :
		    c->aux.s_image, E);
		if (coef[4 + m])
			be->aux_entropy_local_bwd(dz, ma->z, ma->mod, m,
			    coef[4 + m], S, E);
		if (coef[6 + m])
			be->aux_entropy_global_bwd(dz, ma->z, ma->mod, m,
			    tau, coef[6 + m], S, E);
	}
}

/* Experts of one pool: d(out rows) -> d(ln2 rows), parameter grads. */
static void
moe_bwd(struct vlm_run *r, const struct vlm_model *m, struct moe_acts *ma,
    const struct vlm_block_off *o, int pool, const float *dout,
    float *dln2, float *g, int D, int F)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	int S = ma->S, E = c->moe.experts, K = c->moe.top_k, C = ma->C;
	const float *w = m->w;

	if (S == 0)
		return;
	be->rows_gather(r->dys, dout, ma->rows, S, D);
	zero(be, r->deout, (size_t)E * C * D);
	zero(be, r->dw, (size_t)S * K);
	be->moe_combine_bwd(r->deout, r->dw, r->dys, ma->eout, ma->idx,
	    ma->slot, ma->w, S, D, E, K, C);
	zero(be, r->deact, (size_t)E * C * F);
	zero(be, r->defc, (size_t)E * C * F);
	zero(be, r->dbuf, (size_t)E * C * D);
	if (r->ep) /* the experts on their ranks */
		vlm_ep_bwd(r, m, ma, o, pool, g, D, F);
	for (int e = 0; !r->ep && e < E; e++) {
		int n = ma->hfill[e];
		size_t bo = (size_t)e * C;
		if (!n)
			continue;
		be->linear_bwd(r->deact + bo * F, G(r, m, g, o->eproj_w[pool],
		    (size_t)e * D * F), G(r, m, g, o->eproj_b[pool],
		    (size_t)e * D),
		    r->deout + bo * D, ma->eact + bo * F, w + o->eproj_w[pool] +
		    (size_t)e * D * F, n, F, D);
		act_bwd(be, c, r->defc + bo * F, r->deact + bo * F,
		    ma->efc + bo * F, (int64_t)n * F);
		be->linear_bwd(r->dbuf + bo * D, G(r, m, g, o->efc_w[pool],
		    (size_t)e * F * D), G(r, m, g, o->efc_b[pool],
		    (size_t)e * F),
		    r->defc + bo * F, ma->buf + bo * D, w + o->efc_w[pool] +
		    (size_t)e * F * D, n, D, F);
	}
	zero(be, r->dxs, (size_t)S * D);
	be->moe_dispatch_bwd(r->dxs, r->dbuf, ma->idx, ma->slot, S, D, E, K,
	    C);
	zero(be, r->dz, (size_t)S * E);
	be->moe_route_bwd(r->dz, r->dw, ma->g, ma->idx, ma->keep, S, E, K,
	    c->moe.gate_norm == VLM_GATE_TOPK);
	if (r->grp) { /* the group's aux terms, for this rank's tokens */
		struct moe_acts v;
		aux_bwd(be, c, vlm_grp_view(r, ma, &v), vlm_grp_dz_in(r, ma,
		    r->dz), r->aux_w);
		vlm_grp_dz_out(r, ma, r->dz);
	} else {
		aux_bwd(be, c, ma, r->dz, r->aux_w);
	}
	be->router_bwd(r->dxs, G(r, m, g, o->router[pool], 0), r->dz, ma->xs,
	    w + o->router[pool], S, D, E);
	be->rows_scatter_add(dln2, r->dxs, ma->rows, S, D);
}

/* The MLP (dense or MoE) of block l: dout -> r->dln (d ln2). */
static void
mlp_bwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    int l, const float *dout, float *g)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_block_off *o = &st->blocks[l];
	size_t R = st->R, D = st->D, F = st->F;
	const float *w = m->w;

	zero(be, r->dln, R * D);
	if (o->moe) {
		for (int p = 0; p < st->pools; p++)
			moe_bwd(r, m, &st->moe[l * 2 + p], o, p, dout, r->dln,
			    g, D, F);
		return;
	}
	zero(be, r->dact, R * F);
	be->linear_bwd(r->dact, G(r, m, g, o->proj_w, 0),
	    G(r, m, g, o->proj_b, 0), dout, LAYER(st, act, l, R * F),
	    w + o->proj_w, R, F, D);
	zero(be, r->dfc, R * F);
	act_bwd(be, &m->cfg, r->dfc, r->dact, LAYER(st, fc, l, R * F), R * F);
	be->linear_bwd(r->dln, G(r, m, g, o->fc_w, 0), G(r, m, g, o->fc_b, 0),
	    r->dfc, LAYER(st, ln2, l, R * D), w + o->fc_w, R, D, F);
}

/* Block l: dx = d x[l] from dout = d x[l+1]. */
static void
block_bwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    int l, const float *dout, float *dx, float *g)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_block_off *o = &st->blocks[l];
	size_t R = st->R, D = st->D;
	const float *w = m->w;
	const float *qkv = LAYER(st, qkv, l, R * 3 * D);
	const float *att = LAYER(st, att, l, st->att_n);

	be->copy(dx, dout, R * D * sizeof(float)); /* the MLP residual */
	mlp_bwd(r, m, st, l, dout, g);
	be->layernorm_bwd(dx, G(r, m, g, o->ln2_w, 0),
	    G(r, m, g, o->ln2_b, 0), r->dln, LAYER(st, mid, l, R * D),
	    w + o->ln2_w, LAYER(st, mean2, l, R), LAYER(st, rstd2, l, R), R,
	    D); /* dx is now d mid */
	zero(be, r->datty, R * D);
	be->linear_bwd(r->datty, G(r, m, g, o->out_w, 0),
	    G(r, m, g, o->out_b, 0), dx, LAYER(st, atty, l, R * D),
	    w + o->out_w, R, D, D);
	zero(be, r->dqkv, R * 3 * D);
	for (int i = 0; i < st->nseg; i++) {
		const struct seg *s = &st->seg[i];
		be->attention_bwd(r->dqkv + s->row0 * 3 * D, r->datt,
		    r->datty + s->row0 * D, qkv + s->row0 * 3 * D, att, s->B,
		    s->T, D, st->H);
		att += (size_t)s->B * st->H * s->T * s->T;
	}
	zero(be, r->dln, R * D);
	be->linear_bwd(r->dln, G(r, m, g, o->qkv_w, 0),
	    G(r, m, g, o->qkv_b, 0), r->dqkv, LAYER(st, ln1, l, R * D),
	    w + o->qkv_w, R, D, 3 * D);
	be->layernorm_bwd(dx, G(r, m, g, o->ln1_w, 0),
	    G(r, m, g, o->ln1_b, 0), r->dln,
	    st->x + l * R * D, w + o->ln1_w, LAYER(st, mean1, l, R),
	    LAYER(st, rstd1, l, R), R, D);
}

/* Attention pooling backward: d pooled -> r->dlnf, parameter grads. */
static void
map_bwd(struct vlm_run *r, const struct vlm_model *m, int i, float *g,
    const float *dpooled)
{
	const struct vlm_backend *be = r->be;
	const struct tower_acts *t = &r->tw[i];
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	const float *w = m->w;
	int B = t->B, T = t->T, D = t->st->D;
	int H = i ? m->cfg.text.heads : m->cfg.vision.heads;
	size_t DD = (size_t)D * D, BTD = (size_t)B * T * D;

	zero(be, r->dmpatt, (size_t)B * D);
	be->linear_bwd(r->dmpatt, G(r, m, g, o->map_out_w, 0),
	    G(r, m, g, o->map_out_b, 0), dpooled, t->mpatt, w + o->map_out_w,
	    B, D, D);
	zero(be, r->dmq, D);
	zero(be, r->dmk, BTD);
	zero(be, r->dmv, BTD);
	be->pool_map_bwd(r->dmq, r->dmk, r->dmv, r->dmpatt, t->matt, t->mq,
	    t->mk, t->mv, t->len, B, T, D, H);
	be->linear_bwd(r->dlnf, G(r, m, g, o->map_in_w, DD),
	    G(r, m, g, o->map_in_b, D), r->dmk, t->lnf, w + o->map_in_w + DD,
	    B * T, D, D);
	be->linear_bwd(r->dlnf, G(r, m, g, o->map_in_w, 2 * DD),
	    G(r, m, g, o->map_in_b, 2 * D), r->dmv, t->lnf,
	    w + o->map_in_w + 2 * DD, B * T, D, D);
	be->linear_bwd(G(r, m, g, o->map_q, 0), G(r, m, g, o->map_in_w, 0),
	    G(r, m, g, o->map_in_b, 0), r->dmq, w + o->map_q, w + o->map_in_w,
	    1, D, D);
}

/* d unit features -> d stack output rows of modality i (into dtop). */
static void
head_bwd(struct vlm_run *r, const struct vlm_model *m, int i, float *dtop,
    float *g)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[i];
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	const struct vlm_tower_config *tc = i ? &c->text : &c->vision;
	int D = tc->width, B = t->B, T = t->T, E = c->embed_dim;
	const float *xl = STACK_TOP(t->st) + (size_t)t->row0 * D;
	float *dproj = G(r, m, g, o->proj, 0);

	zero(be, r->dfeat[i], (size_t)B * E);
	be->l2norm_bwd(r->dfeat[i], r->dunit[i], t->unit, t->norm, B, E);
	/* feat = pooled @ proj: dproj += pooled^T dfeat, dpooled =
	 * dfeat proj^T */
	if (dproj)
		be->gemm(1, 0, D, E, B, 1.0f, t->pooled, D, r->dfeat[i], E,
		    1.0f, dproj, E);
	be->gemm(0, 1, B, D, E, 1.0f, r->dfeat[i], E, m->w + o->proj, E,
	    0.0f, r->dpooled[i], D);
	zero(be, r->dlnf, (size_t)B * T * D);
	if (tc->pool == VLM_POOL_GAP)
		be->pool_mean_bwd(r->dlnf, r->dpooled[i], t->len, B, T, D);
	else if (tc->pool == VLM_POOL_MAP)
		map_bwd(r, m, i, g, r->dpooled[i]);
	else
		be->pool_token_bwd(r->dlnf, r->dpooled[i], t->pos, B, T, D);
	be->layernorm_bwd(dtop + (size_t)t->row0 * D,
	    G(r, m, g, o->ln_post_w, 0), G(r, m, g, o->ln_post_b, 0), r->dlnf,
	    xl, m->w + o->ln_post_w, t->meanf, t->rstdf, B * T, D);
}

/* d x[0] rows of modality i -> embedding parameter gradients. */
static void
embed_bwd(struct vlm_run *r, const struct vlm_model *m, int i,
    const float *dx0, float *g)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[i];
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	int D = i ? c->text.width : c->vision.width, B = t->B, T = t->Te;
	int p = c->patch_size, P = (c->image_size / p) * (c->image_size / p);
	const float *d = dx0 + (size_t)t->row0e * D;
	float *dpos = G(r, m, g, o->pos, 0), *dpatch;

	if (i == 1) {
		if (dpos)
			be->posembed_bwd(NULL, dpos, d, B, T, D);
		if (wanted(r, m, o->tok_emb))
			be->embed_bwd(G(r, m, g, o->tok_emb, 0), d, t->ids,
			    B * T, c->vocab, D);
		return;
	}
	zero(be, r->dlnf, (size_t)B * T * D); /* d xe */
	be->layernorm_bwd(r->dlnf, G(r, m, g, o->ln_pre_w, 0),
	    G(r, m, g, o->ln_pre_b, 0), d, t->xe, m->w + o->ln_pre_w, t->mean0,
	    t->rstd0, B * T, D);
	if (dpos)
		be->posembed_bwd(NULL, dpos, r->dlnf, B, T, D);
	if (!(dpatch = G(r, m, g, o->patch_w, 0))) {
		if (o->cls >= 0 && wanted(r, m, o->cls))
			be->cls_prepend_bwd(NULL, G(r, m, g, o->cls, 0),
			    r->dlnf, B, P, D);
		return; /* the pixels get no gradient */
	}
	zero(be, r->datty, (size_t)B * P * D); /* d patch embeddings */
	if (o->cls >= 0)
		be->cls_prepend_bwd(r->datty, G(r, m, g, o->cls, 0), r->dlnf,
		    B, P, D);
	else
		be->copy(r->datty, r->dlnf, (size_t)B * P * D *
		    sizeof(float));
	be->linear_bwd(NULL, dpatch, NULL, r->datty, t->patches,
	    m->w + o->patch_w, B * P, 3 * p * p, D);
}

/* The offsets of block o's parameters (-1: absent) into off; their
 * number. */
static int
block_params(const struct vlm_block_off *o, int64_t off[22])
{
	const int64_t dense[] = { o->ln1_w, o->ln1_b, o->qkv_w, o->qkv_b,
		o->out_w, o->out_b, o->ln2_w, o->ln2_b, o->fc_w, o->fc_b,
		o->proj_w, o->proj_b };
	int n = 12;

	memcpy(off, dense, sizeof(dense));
	for (int p = 0; p < o->moe; p++) {
		const int64_t e[] = { o->router[p], o->efc_w[p], o->efc_b[p],
			o->eproj_w[p], o->eproj_b[p] };
		memcpy(off + n, e, sizeof(e));
		n += 5;
	}
	return n;
}

/* Block o's folded gradients, complete now, to the fold; then the
 * scratch back to zeros for the next block. */
static void
fold_block(struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_block_off *o)
{
	int64_t off[22], used = 0;
	int n = block_params(o, off);

	for (int j = 0; j < n; j++) {
		int i = off[j] >= 0 ? param_at(m, off[j]) : -1;
		used += i >= 0 && r->foff[i] >= 0 ? m->params[i].n : 0;
	}
	if (!used)
		return;
	if (r->hfbuf) /* a device's: the fold reads host memory */
		r->be->download(r->hfbuf, r->fbuf, used * sizeof(float));
	for (int j = 0; j < n; j++) {
		int i = off[j] >= 0 ? param_at(m, off[j]) : -1;
		if (i >= 0 && r->foff[i] >= 0)
			r->fold(r->fold_ctx, i, (r->hfbuf ? r->hfbuf :
			    r->fbuf) + r->foff[i]);
	}
	zero(r->be, r->fbuf, used);
}

/* Every block of a stack in reverse; returns d x[0] (one of two bufs). */
float *
vlm_stack_bwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    float *g)
{
	float *dout = r->dnext, *dx = r->dx, *tmp;

	for (int l = st->L - 1; l >= st->stop; l--) {
		block_bwd(r, m, st, l, dout, dx, g);
		if (r->foff)
			fold_block(r, m, &st->blocks[l]);
		tmp = dout, dout = dx, dx = tmp;
	}
	return dout;
}

/* d x[0] of st->next (r->dcut) -> d output rows of st (dtop). */
static void
cut_bwd(struct vlm_run *r, const struct vlm_model *m, const struct stack *st,
    float *dtop, float *g)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	const struct vlm_tower_off *o = &m->vis;
	const float *w = m->w, *top = STACK_TOP(st);
	size_t D = st->D;
	const int64_t tl[] = { o->tl_ln_w, o->tl_ln_b, o->tl_w1, o->tl_b1,
		o->tl_w2, o->tl_b2 };
	float *tg[6], *scratch = r->tlg;

	/* the kernel writes every parameter gradient: unwanted ones into
	 * scratch (packed) or back to 0 after (the rows below it wanted
	 * theirs) */
	for (int i = 0; i < 6; i++) {
		if (!(tg[i] = G(r, m, g, tl[i], 0)))
			tg[i] = r->goff ? scratch : g + tl[i];
		if (r->goff)
			scratch += m->params[param_at(m, tl[i])].n;
	}
	for (int i = 0; i < st->nseg; i++) {
		const struct seg *a = &st->seg[i], *b = &st->next->seg[i];
		const float *d0 = r->dcut + b->row0 * D;
		float *dt = dtop + a->row0 * D;
		if (a->mod) {
			be->add(dt, d0, (int64_t)a->B * a->T * D);
			continue;
		}
		be->token_learner_bwd(dt, tg[0], tg[1], tg[2], tg[3], tg[4],
		    tg[5], d0,
		    r->tw[0].tl_act, top + a->row0 * D, w + o->tl_ln_w,
		    w + o->tl_w1, w + o->tl_w2, a->B, a->T, D, c->tl.hidden,
		    b->T);
	}
	for (int i = 0; i < 6 && !r->goff; i++)
		if (!wanted(r, m, tl[i]))
			zero(be, g + tl[i], m->params[param_at(m, tl[i])].n);
}

/* Floats in the gradient slab: the packed length on a packed run. */
static int64_t
grad_floats(const struct vlm_run *r, const struct vlm_model *m)
{
	return r->goff ? r->gfloats : m->nfloats;
}

/*
 * Checks; then *m and *g become the weights and gradient the backend
 * computes on (on a device backend the run's copies, as vlm_forward
 * uploaded them; view holds the model's view), and the gradient is zeroed.
 */
static int
backward_start(struct vlm_run *r, const struct vlm_model **m, float **g,
    struct vlm_model *view)
{
	if (!r->train)
		return vlm_error("backward on a run made for inference");
	if (r->nograd && r->nparams != (*m)->nparams)
		return vlm_error("the run's frozen parameters are another "
		    "model's (%d parameters, not %d)", r->nparams,
		    (*m)->nparams);
	*m = vlm_run_weights(r, *m, view);
	*g = r->gdev ? r->gdev : *g;
	zero(r->be, *g, grad_floats(r, *m));
	return 0;
}

static int towers_bwd(struct vlm_run *r, const struct vlm_model *m,
    float *g, float *hg);

int
vlm_backward(struct vlm_run *r, const struct vlm_model *m, float *g)
{
	const struct vlm_backend *be = r->be;
	int B = r->tw[0].B;
	float theta = m->w[m->logit_scale], *hg = g;
	struct vlm_model view;

	if (backward_start(r, &m, &g, &view) < 0)
		return -1;
	zero(be, r->dunit[0], (size_t)B * m->cfg.embed_dim);
	zero(be, r->dunit[1], (size_t)r->tw[1].B * m->cfg.embed_dim);
	if (r->itc_w != 0) /* fusion: texts 0..B-1 */
		be->clip_loss_bwd(r->dunit[0], r->dunit[1],
		    G(r, m, g, m->logit_scale, 0), r->dlogits, r->logits,
		    r->lse2, r->tw[0].unit, r->tw[1].unit, theta,
		    r->itc_w, B, m->cfg.embed_dim);
	r->aux_w = 1;
	if (r->fus_n && vlm_fusion_bwd(r, m, g) < 0)
		return -1;
	return towers_bwd(r, m, g, hg);
}

int
vlm_backward_from(struct vlm_run *r, const struct vlm_model *m, float *g,
    const float *dimg, const float *dtxt, float aux_w)
{
	size_t n = (size_t)r->tw[0].B * m->cfg.embed_dim * sizeof(float);
	float *hg = g;
	struct vlm_model view;

	if (r->tw[0].B != r->tw[1].B)
		return vlm_error("backward from features needs as many "
		    "images as texts (%d and %d)", r->tw[0].B, r->tw[1].B);
	if (backward_start(r, &m, &g, &view) < 0)
		return -1;
	r->be->upload(r->dunit[0], dimg, n);
	r->be->upload(r->dunit[1], dtxt, n);
	r->aux_w = aux_w;
	return towers_bwd(r, m, g, hg);
}

/* d unit features (r->dunit) -> every wanted parameter's gradient (g,
 * the backend's; hg the caller's, downloaded into from a device). */
static int
towers_bwd(struct vlm_run *r, const struct vlm_model *m, float *g, float *hg)
{
	const struct vlm_backend *be = r->be;

	for (int s = r->nst - 1; s >= 0; s--) { /* stacks in reverse */
		struct stack *st = &r->st[s];
		float *dx0;
		zero(be, r->dnext, (size_t)st->R * st->D);
		for (int i = 0; i < 2; i++)
			if (r->tw[i].st == st && !r->tw[i].no_head)
				head_bwd(r, m, i, r->dnext, g);
		if (st->dtop && r->fus_n) /* from the fusion blocks */
			be->add(r->dnext, st->dtop, (int64_t)st->R * st->D);
		if (st->next && st->R && !st->next->no_dx0)
			cut_bwd(r, m, st, r->dnext, g);
		if (st->stop == st->L && st->no_dx0)
			continue; /* nothing here or below wants a gradient */
		dx0 = vlm_stack_bwd(r, m, st, g);
		if (st->no_dx0)
			continue;
		for (int i = 0; i < 2; i++)
			if (r->tw[i].st0 == st)
				embed_bwd(r, m, i, dx0, g);
		if (s > 0 && r->st[s - 1].next == st)
			be->copy(r->dcut, dx0, (size_t)st->R * st->D *
			    sizeof(float));
	}
	if (vlm_ep_check(r) < 0 || vlm_grp_check(r) < 0)
		return -1;
	if (r->gdev)
		be->download(hg, g, grad_floats(r, m) * sizeof(float));
	return be->sync();
}

/* Does any parameter at the n offsets (-1: absent) want a gradient? */
static int
any_wanted(const struct vlm_run *r, const struct vlm_model *m,
    const int64_t *off, int n)
{
	for (int i = 0; i < n; i++)
		if (wanted(r, m, off[i]))
			return 1;
	return 0;
}

static int
block_wanted(const struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_block_off *o)
{
	int64_t off[22];
	int n = block_params(o, off);

	return any_wanted(r, m, off, n);
}

/* Embeddings (part 0), head (1) or TokenLearner (2) of tower i. */
static int
tower_wanted(const struct vlm_run *r, const struct vlm_model *m, int i,
    int part)
{
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	const int64_t off[3][8] = {
		{ o->patch_w, o->cls, o->tok_emb, o->pos, o->ln_pre_w,
		  o->ln_pre_b, -1, -1 },
		{ o->ln_post_w, o->ln_post_b, o->proj, o->map_q, o->map_in_w,
		  o->map_in_b, o->map_out_w, o->map_out_b },
		{ o->tl_ln_w, o->tl_ln_b, o->tl_w1, o->tl_b1, o->tl_w2,
		  o->tl_b2, -1, -1 },
	};

	return any_wanted(r, m, off[part], 8);
}

/* Where each stack's backward may stop, in forward order: a stack
 * needs d x[0] when an embedding entering it, or anything before its
 * cut, wants a gradient; else it stops at its lowest wanted block. */
static void
plan_stops(struct vlm_run *r, const struct vlm_model *m)
{
	for (int i = 0; i < r->nst; i++) {
		struct stack *st = &r->st[i];
		struct stack *prev = i && r->st[i - 1].next == st ?
		    &r->st[i - 1] : NULL;
		int below = prev && (prev->stop < prev->L || !prev->no_dx0 ||
		    tower_wanted(r, m, 0, 2));
		for (int t = 0; t < 2; t++)
			below |= r->tw[t].B && r->tw[t].st0 == st &&
			    tower_wanted(r, m, t, 0);
		st->no_dx0 = !below;
		st->stop = 0;
		while (!below && st->stop < st->L &&
		    !block_wanted(r, m, &st->blocks[st->stop]))
			st->stop++;
	}
	for (int t = 0; t < 2; t++) {
		struct stack *st = r->tw[t].st;
		r->tw[t].no_head = !r->tw[t].B || !(tower_wanted(r, m, t, 1) ||
		    st->stop < st->L || !st->no_dx0 || (st->next &&
		    !st->next->no_dx0));
	}
}

int
vlm_run_freeze(struct vlm_run *r, const struct vlm_model *m,
    const uint8_t *nograd)
{
	free(r->nograd);
	r->nograd = NULL;
	free(r->goff);
	r->goff = NULL;
	free(r->foff);
	free(r->hfbuf);
	r->foff = NULL, r->hfbuf = NULL;
	if (r->fbuf)
		r->be->free(r->fbuf);
	r->fbuf = NULL;
	for (int i = 0; i < r->nst; i++)
		r->st[i].stop = r->st[i].no_dx0 = 0;
	r->tw[0].no_head = r->tw[1].no_head = 0;
	if (!nograd)
		return 0;
	for (int i = 1; i < m->nparams; i++)
		if (m->params[i].off < m->params[i - 1].off +
		    m->params[i - 1].n)
			return vlm_error("parameter '%s' out of slab order",
			    m->params[i].name);
	if (!(r->nograd = malloc(m->nparams ? m->nparams : 1)))
		return vlm_error("out of memory");
	memcpy(r->nograd, nograd, m->nparams);
	r->nparams = m->nparams;
	plan_stops(r, m);
	return 0;
}

/* Floats of the token learner's parameter gradients (0: none). */
static int64_t
tl_floats(const struct vlm_model *m)
{
	const struct vlm_tower_off *o = &m->vis;
	const int64_t tl[] = { o->tl_ln_w, o->tl_ln_b, o->tl_w1, o->tl_b1,
		o->tl_w2, o->tl_b2 };
	int64_t n = 0;

	for (int i = 0; i < 6; i++)
		n += tl[i] >= 0 ? m->params[param_at(m, tl[i])].n : 0;
	return n;
}

int
vlm_run_pack(struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_pack *p)
{
	uint8_t *nograd;
	int64_t ntl;
	int rc;

	if (!p)
		return vlm_run_freeze(r, m, NULL);
	if (p->nparams != m->nparams)
		return vlm_error("the pack is another model's (%d parameters, "
		    "not %d)", p->nparams, m->nparams);
	if (!(nograd = malloc(m->nparams ? m->nparams : 1)))
		return vlm_error("out of memory");
	for (int i = 0; i < m->nparams; i++)
		nograd[i] = p->off[i] < 0;
	rc = vlm_run_freeze(r, m, nograd);
	free(nograd);
	if (rc < 0)
		return -1;
	if (r->tlg)
		r->be->free(r->tlg);
	r->tlg = NULL;
	ntl = tl_floats(m);
	if (!(r->goff = malloc((m->nparams ? m->nparams : 1) *
	    sizeof(*r->goff))) || (ntl && !(r->tlg = r->be->alloc(ntl *
	    sizeof(float))))) {
		vlm_run_freeze(r, m, NULL);
		return vlm_error("out of memory");
	}
	memcpy(r->goff, p->off, m->nparams * sizeof(*r->goff));
	for (int i = 0; p->lo && i < m->nparams; i++) /* held from lo on */
		if (r->goff[i] >= 0)
			r->goff[i] -= p->lo[i];
	r->gfloats = p->n;
	return 0;
}

int
vlm_run_fold(struct vlm_run *r, const struct vlm_model *m,
    const uint8_t *fold, void (*fn)(void *ctx, int i, const float *dw),
    void *ctx)
{
	int64_t off[22], most = 0;

	if (r->fbuf)
		r->be->free(r->fbuf);
	free(r->foff);
	free(r->hfbuf);
	r->fbuf = r->hfbuf = NULL, r->foff = NULL;
	r->fold = fn, r->fold_ctx = ctx;
	if (!fold)
		goto plan;
	if (!(r->foff = malloc((m->nparams ? m->nparams : 1) *
	    sizeof(*r->foff))))
		return vlm_error("out of memory");
	for (int i = 0; i < m->nparams; i++)
		r->foff[i] = -1;
	for (int s = 0; s < r->nst; s++) /* each block's folded, packed */
		for (int l = 0; l < r->st[s].L; l++) {
			int n = block_params(&r->st[s].blocks[l], off);
			int64_t used = 0;
			for (int j = 0; j < n; j++) {
				int i = off[j] >= 0 ? param_at(m, off[j]) : -1;
				if (i < 0 || !fold[i] || r->foff[i] >= 0)
					continue;
				r->foff[i] = used;
				used += m->params[i].n;
			}
			most = used > most ? used : most;
		}
	for (int i = 0; i < m->nparams; i++)
		if (fold[i] && r->foff[i] < 0) {
			free(r->foff);
			r->foff = NULL;
			return vlm_error("cannot fold '%s': not a block's "
			    "parameter", m->params[i].name);
		}
	if (!(r->fbuf = r->be->alloc((most ? most : 1) * sizeof(float))) ||
	    (r->be->device && !(r->hfbuf = malloc((most ? most : 1) *
	    sizeof(float))))) {
		vlm_run_fold(r, m, NULL, NULL, NULL);
		return vlm_error("out of memory");
	}
plan:
	for (int i = 0; i < r->nst; i++)
		r->st[i].stop = r->st[i].no_dx0 = 0;
	r->tw[0].no_head = r->tw[1].no_head = 0;
	if (r->nograd || r->foff)
		plan_stops(r, m);
	return 0;
}
