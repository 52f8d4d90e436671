/*
 * model/coca-grad.c - gradients of OpenCLIP's CoCaLoss with respect to
 * every CoCa tensor. Per sample, each tower runs forward keeping only the
 * input of each block; the backward recomputes one block's internals from
 * its input (struct blk) and goes back through it. Order: all samples'
 * features first (the contrastive loss couples them), then per sample the
 * decoder, the text tower and the image tower backward.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/coca.h"

#define F(n) calloc((size_t)(n), sizeof(float))

/* The tensor (w) and its gradient (g) of a formatted name. */
struct tg {
	const float *w;
	float *g;
};

static struct tg
tg_at(const struct vlm_coca *c, float **grads, int i)
{
	return (struct tg){ c->st.tensors[i].data, grads[i] };
}
#define T(c, gr, ...) tg_at((c), (gr), vlm_coca_index((c), __VA_ARGS__))

/* One block's internals, recomputed from its input x (N,D), kv (M,D). */
struct blk {
	int N, M, D, H, F, cross;
	struct vlm_coca_moe *moe; /* an MoE FFN's saves, or NULL */
	float *ln1, *m1, *r1, *q, *kvl, *mk, *rk, *kv, *P, *a, *x1, *ln2, *m2,
	    *r2, *h, *g;
};

static void
blk_free(struct blk *b)
{
	free(b->ln1), free(b->m1), free(b->r1), free(b->q), free(b->kvl);
	free(b->mk), free(b->rk), free(b->kv), free(b->P), free(b->a);
	free(b->x1), free(b->ln2), free(b->m2), free(b->r2), free(b->h);
	free(b->g);
	if (b->moe)
		vlm_coca_moe_free(b->moe);
	free(b->moe);
}

/* Block pre forward from x (N,D) (kv (M,D) for a cross block) into b;
 * y (N,D) := its output. */
static void
blk_fwd(const struct vlm_coca *c, float **gr, const char *pre, struct blk *b,
    const float *x, const float *kvin, int N, int M, int D, int H,
    const float *mask, int causal, float *y)
{
	struct tg w1 = T(c, gr, "%s.ln_1.weight", pre), b1 = T(c, gr,
	    "%s.ln_1.bias", pre), win = T(c, gr, "%s.attn.in_proj_weight",
	    pre), bin = T(c, gr, "%s.attn.in_proj_bias", pre);
	int Tk = kvin ? M : N, moe = vlm_coca_moe_at(c, pre);

	*b = (struct blk){ .N = N, .M = M, .D = D, .H = H, .cross = !!kvin };
	char nm[160];
	snprintf(nm, sizeof(nm), moe ? "%s.mlp.experts.c_fc.weight" :
	    "%s.mlp.c_fc.weight", pre);
	int Fh = b->F = (int)vlm_st_get(&c->st, nm)->shape[moe ? 1 : 0];
	b->ln1 = F(N * D), b->m1 = F(N), b->r1 = F(N);
	b->q = F(N * 3 * D), b->P = F((size_t)H * N * Tk), b->a = F(N * D);
	b->x1 = F(N * D), b->ln2 = F(N * D), b->m2 = F(N), b->r2 = F(N);
	b->h = F((size_t)N * Fh), b->g = F((size_t)N * Fh);
	vlm_layernorm_fwd_cpu(b->ln1, b->m1, b->r1, x, w1.w, b1.w, N, D);
	if (!kvin) {
		vlm_linear_fwd_cpu(b->q, b->ln1, win.w, bin.w, N, D, 3 * D);
		vlm_xattention_fwd_cpu(b->a, b->P, b->q, 3 * D, b->q + D, 3 * D, b->q + 2 * D,
		    3 * D, mask, causal, N, N, D, H);
	} else {
		b->kvl = F(M * D), b->mk = F(M), b->rk = F(M);
		b->kv = F(M * 2 * D);
		vlm_layernorm_fwd_cpu(b->kvl, b->mk, b->rk, kvin,
		    T(c, gr, "%s.ln_1_kv.weight", pre).w,
		    T(c, gr, "%s.ln_1_kv.bias", pre).w, M, D);
		vlm_linear_fwd_cpu(b->q, b->ln1, win.w, bin.w, N, D, D);
		vlm_linear_fwd_cpu(b->kv, b->kvl, win.w + D * D, bin.w + D, M,
		    D, 2 * D);
		vlm_xattention_fwd_cpu(b->a, b->P, b->q, D, b->kv, 2 * D, b->kv + D, 2 * D,
		    NULL, 0, N, M, D, H);
	}
	vlm_linear_fwd_cpu(b->x1, b->a, T(c, gr, "%s.attn.out_proj.weight",
	    pre).w, T(c, gr, "%s.attn.out_proj.bias", pre).w, N, D, D);
	for (int i = 0; i < N * D; i++)
		b->x1[i] += x[i];
	vlm_layernorm_fwd_cpu(b->ln2, b->m2, b->r2, b->x1, T(c, gr,
	    "%s.ln_2.weight", pre).w, T(c, gr, "%s.ln_2.bias", pre).w, N, D);
	if (moe) {
		b->moe = calloc(1, sizeof(*b->moe));
		memcpy(y, b->x1, (size_t)N * D * sizeof(float));
		vlm_coca_moe_fwd(c, pre, b->ln2, N, y, b->moe);
		return;
	}
	struct tg fc = T(c, gr, "%s.mlp.c_fc.weight", pre);
	vlm_linear_fwd_cpu(b->h, b->ln2, fc.w, T(c, gr, "%s.mlp.c_fc.bias",
	    pre).w, N, D, Fh);
	if (c->quick)
		vlm_quickgelu_fwd_cpu(b->g, b->h, (int64_t)N * Fh);
	else
		vlm_gelu_fwd_cpu(b->g, b->h, (int64_t)N * Fh);
	vlm_linear_fwd_cpu(y, b->g, T(c, gr, "%s.mlp.c_proj.weight", pre).w,
	    T(c, gr, "%s.mlp.c_proj.bias", pre).w, N, Fh, D);
	for (int i = 0; i < N * D; i++)
		y[i] += b->x1[i];
}

/* dx (N,D) (and dkv (M,D) for a cross block) += through block pre; its
 * tensors' gradients accumulate. dy (N,D) is consumed. */
static void
blk_bwd(const struct vlm_coca *c, float **gr, const char *pre, struct blk *b,
    const float *x, const float *kvin, float *dy, float *dx, float *dkv)
{
	int N = b->N, M = b->M, D = b->D, Fh = b->F;
	struct tg w2 = T(c, gr, "%s.ln_2.weight", pre);
	struct tg b2 = T(c, gr, "%s.ln_2.bias", pre);
	struct tg wo = T(c, gr, "%s.attn.out_proj.weight", pre);
	struct tg bo = T(c, gr, "%s.attn.out_proj.bias", pre);
	struct tg win = T(c, gr, "%s.attn.in_proj_weight", pre);
	struct tg bin = T(c, gr, "%s.attn.in_proj_bias", pre);
	struct tg w1 = T(c, gr, "%s.ln_1.weight", pre);
	struct tg b1 = T(c, gr, "%s.ln_1.bias", pre);
	float *dln = F(N * D), *da = F(N * D), *dq = F(N * 3 * D);

	/* dy is dx1's residual part; the MLP adds to it */
	if (b->moe) {
		vlm_coca_moe_bwd(c, gr, pre, b->moe, b->ln2, dy, dln);
	} else {
		struct tg wp = T(c, gr, "%s.mlp.c_proj.weight", pre);
		struct tg bp = T(c, gr, "%s.mlp.c_proj.bias", pre);
		struct tg fc = T(c, gr, "%s.mlp.c_fc.weight", pre);
		struct tg bfc = T(c, gr, "%s.mlp.c_fc.bias", pre);
		float *dg = F((size_t)N * Fh), *dh = F((size_t)N * Fh);
		vlm_linear_bwd_cpu(dg, wp.g, bp.g, dy, b->g, wp.w, N, Fh, D);
		if (c->quick)
			vlm_quickgelu_bwd_cpu(dh, dg, b->h, (int64_t)N * Fh);
		else
			vlm_gelu_bwd_cpu(dh, dg, b->h, (int64_t)N * Fh);
		vlm_linear_bwd_cpu(dln, fc.g, bfc.g, dh, b->ln2, fc.w, N, D,
		    Fh);
		free(dg), free(dh);
	}
	vlm_layernorm_bwd_cpu(dy, w2.g, b2.g, dln, b->x1, w2.w, b->m2, b->r2,
	    N, D);
	vlm_linear_bwd_cpu(da, wo.g, bo.g, dy, b->a, wo.w, N, D, D);
	for (int i = 0; i < N * D; i++)
		dx[i] += dy[i];
	memset(dln, 0, (size_t)N * D * sizeof(float));
	if (!b->cross) {
		vlm_xattention_bwd_cpu(dq, dq + D, dq + 2 * D, da, b->P, b->q, b->q + D,
		    b->q + 2 * D, 3 * D, 3 * D, 3 * D, N, N, D, b->H);
		vlm_linear_bwd_cpu(dln, win.g, bin.g, dq, b->ln1, win.w, N, D,
		    3 * D);
	} else {
		float *dkvp = F(M * 2 * D), *dkl = F(M * D);
		struct tg wk = T(c, gr, "%s.ln_1_kv.weight", pre);
		struct tg bk = T(c, gr, "%s.ln_1_kv.bias", pre);
		vlm_xattention_bwd_cpu(dq, dkvp, dkvp + D, da, b->P, b->q, b->kv, b->kv + D,
		    D, 2 * D, 2 * D, N, M, D, b->H);
		vlm_linear_bwd_cpu(dln, win.g, bin.g, dq, b->ln1, win.w, N, D,
		    D);
		vlm_linear_bwd_cpu(dkl, win.g + D * D, bin.g + D, dkvp, b->kvl,
		    win.w + D * D, M, D, 2 * D);
		vlm_layernorm_bwd_cpu(dkv, wk.g, bk.g, dkl, kvin, wk.w, b->mk,
		    b->rk, M, D);
		free(dkvp), free(dkl);
	}
	vlm_layernorm_bwd_cpu(dx, w1.g, b1.g, dln, x, w1.w, b->m1, b->r1, N,
	    D);
	free(dln), free(da), free(dq);
}

/* Forward through a tower's L self-attention blocks fmt (%d: the layer)
 * from xs (N,D): the input of block l+1 into xs + (l+1)*N*D. */
static void
tower_fwd(const struct vlm_coca *c, float **gr, const char *fmt, int L,
    float *xs, int N, int D, int H, const float *mask, int causal)
{
	struct blk b;
	char pre[96];

	for (int l = 0; l < L; l++) {
		snprintf(pre, sizeof(pre), fmt, l);
		blk_fwd(c, gr, pre, &b, xs + (size_t)l * N * D, NULL, N, 0, D,
		    H, mask, causal, xs + (size_t)(l + 1) * N * D);
		blk_free(&b);
	}
}

/* Back through those blocks, whose inputs tower_fwd kept in xs: dy (N,D),
 * the gradient of the last one's output, becomes that of the first one's
 * input; dx (N,D) is scratch. */
static void
tower_bwd(const struct vlm_coca *c, float **gr, const char *fmt, int L,
    const float *xs, int N, int D, int H, const float *mask, int causal,
    float *dy, float *dx)
{
	struct blk b;
	char pre[96];

	for (int l = L - 1; l >= 0; l--) {
		const float *xl = xs + (size_t)l * N * D;
		snprintf(pre, sizeof(pre), fmt, l);
		blk_fwd(c, gr, pre, &b, xl, NULL, N, 0, D, H, mask, causal, dx);
		memset(dx, 0, (size_t)N * D * sizeof(float));
		blk_bwd(c, gr, pre, &b, xl, NULL, dy, dx, NULL);
		blk_free(&b);
		memcpy(dy, dx, (size_t)N * D * sizeof(float));
	}
}

/* The image tower again, then back: dfeat (E), dembs (Q-1,E) in. */
static void
img_bwd(const struct vlm_coca *c, float **gr, const float *img,
    const float *dfeat, const float *dembs)
{
	int P = (c->S / c->p) * (c->S / c->p), N = P + 1, D = c->Dv, E = c->E;
	int Q = c->Q, pp = 3 * c->p * c->p, L = c->Lv;
	float *patch = F(P * pp), *x0 = F(N * D), *mp = F(N), *rp = F(N);
	float *xs = F((size_t)(L + 1) * N * D), *dx = F(N * D), *dy = F(N * D);
	float *xk = F(N * D), *mk = F(N), *rk = F(N), *qn = F(Q * E);
	float *mq = F(Q), *rq = F(Q), *q = F(Q * E), *k = F(N * E);
	float *v = F(N * E), *Pr = F((size_t)c->Hq * Q * N), *a = F(Q * E);
	float *pool = F(Q * E), *mo = F(Q), *ro = F(Q), *post = F(Q * E);
	float *dpost = F(Q * E), *dpool = F(Q * E), *da = F(Q * E);
	float *dq = F(Q * E), *dk = F(N * E), *dv = F(N * E);
	float *dqn = F(Q * E), *dxk = F(N * D);
#define V_(n) T(c, gr, "visual." n)
	struct tg conv = V_("conv1.weight"), cls = V_("class_embedding"),
	    pos = V_("positional_embedding"), lpw = V_("ln_pre.weight"),
	    lpb = V_("ln_pre.bias"), lkw = V_("attn_pool.ln_k.weight"),
	    lkb = V_("attn_pool.ln_k.bias"), lqw = V_("attn_pool.ln_q.weight"),
	    lqb = V_("attn_pool.ln_q.bias"), qry = V_("attn_pool.query"),
	    wq = V_("attn_pool.attn.q_proj_weight"),
	    wk = V_("attn_pool.attn.k_proj_weight"),
	    wv = V_("attn_pool.attn.v_proj_weight"),
	    bi = V_("attn_pool.attn.in_proj_bias"),
	    wo = V_("attn_pool.attn.out_proj.weight"),
	    bo = V_("attn_pool.attn.out_proj.bias"), low = V_("ln_post.weight"),
	    lob = V_("ln_post.bias"), proj = V_("proj");
#undef V_

	vlm_patchify_fwd_ref(patch, img, 1, 3, c->S, c->S, c->p);
	vlm_linear_fwd_cpu(dx, patch, conv.w, NULL, P, pp, D);
	vlm_cls_prepend_fwd_ref(x0, dx, cls.w, 1, P, D);
	vlm_posembed_fwd_ref(x0, x0, pos.w, 1, N, D);
	vlm_layernorm_fwd_cpu(xs, mp, rp, x0, lpw.w, lpb.w, N, D);
	tower_fwd(c, gr, "visual.transformer.resblocks.%d", L, xs, N, D, c->Hv,
	    NULL, 0);
	float *xL = xs + (size_t)L * N * D;
	vlm_layernorm_fwd_cpu(xk, mk, rk, xL, lkw.w, lkb.w, N, D);
	vlm_layernorm_fwd_cpu(qn, mq, rq, qry.w, lqw.w, lqb.w, Q, E);
	vlm_linear_fwd_cpu(q, qn, wq.w, bi.w, Q, E, E);
	vlm_linear_fwd_cpu(k, xk, wk.w, bi.w + E, N, D, E);
	vlm_linear_fwd_cpu(v, xk, wv.w, bi.w + 2 * E, N, D, E);
	vlm_xattention_fwd_cpu(a, Pr, q, E, k, E, v, E, NULL, 0, Q, N, E, c->Hq);
	vlm_linear_fwd_cpu(pool, a, wo.w, bo.w, Q, E, E);
	vlm_layernorm_fwd_cpu(post, mo, ro, pool, low.w, lob.w, Q, E);

	/* back: feature = post[0] @ proj, embs = post[1..] */
	vlm_gemm_cpu(0, 1, 1, E, E, 1, dfeat, E, proj.w, E, 0, dpost, E);
	vlm_gemm_cpu(1, 0, E, E, 1, 1, post, E, dfeat, E, 1, proj.g, E);
	memcpy(dpost + E, dembs, (size_t)(Q - 1) * E * sizeof(float));
	vlm_layernorm_bwd_cpu(dpool, low.g, lob.g, dpost, pool, low.w, mo, ro,
	    Q, E);
	vlm_linear_bwd_cpu(da, wo.g, bo.g, dpool, a, wo.w, Q, E, E);
	vlm_xattention_bwd_cpu(dq, dk, dv, da, Pr, q, k, v, E, E, E, Q, N, E, c->Hq);
	vlm_linear_bwd_cpu(dqn, wq.g, bi.g, dq, qn, wq.w, Q, E, E);
	vlm_linear_bwd_cpu(dxk, wk.g, bi.g + E, dk, xk, wk.w, N, D, E);
	vlm_linear_bwd_cpu(dxk, wv.g, bi.g + 2 * E, dv, xk, wv.w, N, D, E);
	vlm_layernorm_bwd_cpu(qry.g, lqw.g, lqb.g, dqn, qry.w, lqw.w, mq, rq,
	    Q, E);
	memset(dy, 0, (size_t)N * D * sizeof(float));
	vlm_layernorm_bwd_cpu(dy, lkw.g, lkb.g, dxk, xL, lkw.w, mk, rk, N, D);
	tower_bwd(c, gr, "visual.transformer.resblocks.%d", L, xs, N, D, c->Hv,
	    NULL, 0, dy, dx);
	memset(dx, 0, (size_t)N * D * sizeof(float));
	vlm_layernorm_bwd_cpu(dx, lpw.g, lpb.g, dy, x0, lpw.w, mp, rp, N, D);
	vlm_posembed_bwd_ref(NULL, pos.g, dx, 1, N, D);
	vlm_cls_prepend_bwd_ref(NULL, cls.g, dx, 1, P, D);
	vlm_linear_bwd_cpu(NULL, conv.g, NULL, dx + D, patch, conv.w, P, pp, D);
	free(patch), free(x0), free(mp), free(rp), free(xs), free(dx), free(dy);
	free(xk), free(mk), free(rk), free(qn), free(mq), free(rq), free(q);
	free(k), free(v), free(Pr), free(a), free(pool), free(mo), free(ro);
	free(post), free(dpost), free(dpool), free(da), free(dq), free(dk);
	free(dv), free(dqn), free(dxk);
}

/* The text tower of ids (n) again, then back: dfeat (E), dtok (n,D). */
static void
txt_bwd(const struct vlm_coca *c, float **gr, const int32_t *ids, int n,
    const float *dfeat, const float *dtok)
{
	int N = n + 1, D = c->Dt, L = c->Lt;
	float *xs = F((size_t)(L + 1) * N * D), *mask = F(N * N);
	float *dx = F(N * D), *dy = F(N * D), *lnf = F(D), mf, rf, dl[D];
	struct tg emb = T(c, gr, "text.token_embedding.weight"),
	    cls = T(c, gr, "text.cls_emb"),
	    pos = T(c, gr, "text.positional_embedding"),
	    lw = T(c, gr, "text.ln_final.weight"),
	    lb = T(c, gr, "text.ln_final.bias"),
	    proj = T(c, gr, "text.text_projection");

	vlm_embed_fwd_ref(xs, ids, emb.w, n, c->V, D);
	memcpy(xs + (size_t)n * D, cls.w, D * sizeof(float));
	vlm_posembed_fwd_ref(xs, xs, pos.w, 1, N, D);
	for (int j = 1; j < N; j++)
		mask[(size_t)n * N + j] = ids[j - 1] ? 0 : -INFINITY;
	tower_fwd(c, gr, "text.transformer.resblocks.%d", L, xs, N, D, c->Ht,
	    mask, 1);
	float *xL = xs + (size_t)L * N * D;
	vlm_layernorm_fwd_cpu(lnf, &mf, &rf, xL + (size_t)n * D, lw.w, lb.w, 1,
	    D);
	vlm_gemm_cpu(0, 1, 1, D, c->E, 1, dfeat, c->E, proj.w, c->E, 0, dl, D);
	vlm_gemm_cpu(1, 0, D, c->E, 1, 1, lnf, D, dfeat, c->E, 1, proj.g,
	    c->E);
	memcpy(dy, dtok, (size_t)n * D * sizeof(float));
	vlm_layernorm_bwd_cpu(dy + (size_t)n * D, lw.g, lb.g, dl,
	    xL + (size_t)n * D, lw.w, &mf, &rf, 1, D);
	tower_bwd(c, gr, "text.transformer.resblocks.%d", L, xs, N, D, c->Ht,
	    mask, 1, dy, dx);
	vlm_posembed_bwd_ref(NULL, pos.g, dy, 1, N, D);
	for (int d = 0; d < D; d++)
		cls.g[d] += dy[(size_t)n * D + d];
	vlm_embed_bwd_ref(emb.g, dy, ids, n, c->V, D);
	free(xs), free(mask), free(dx), free(dy), free(lnf);
}

/* The decoder over tok (n,D) and embs (M,E) again, then back from dlg
 * (n,V): dembs (M,E) and dtok (n,D) += their gradients. */
/* Returns the sum over MoE blocks of their importance loss, whose
 * gradient, times aux_w, joins the routers'. */
static double
dec_bwd(const struct vlm_coca *c, float **gr, const float *embs,
    const float *tok, int n, const float *dlg, float *dembs, float *dtok,
    float aux_w)
{
	double aux = 0;
	int D = c->Dd, L = c->Ld, M = c->Q - 1;
	float *xs = F((size_t)(2 * L + 1) * n * D), *hid = F(n * D);
	float *mf = F(n), *rf = F(n), *dh = F(n * D), *dx = F(n * D);
	float *dy = F(n * D);
	struct blk b;
	char pre[96];
	struct tg lw = T(c, gr, "text_decoder.ln_final.weight"),
	    lb = T(c, gr, "text_decoder.ln_final.bias"),
	    proj = T(c, gr, "text_decoder.text_projection");

	memcpy(xs, tok, (size_t)n * D * sizeof(float));
	for (int s = 0; s < 2 * L; s++) {
		snprintf(pre, sizeof(pre), s % 2 ? "text_decoder.cross_attn.%d"
		    : "text_decoder.resblocks.%d", s / 2);
		blk_fwd(c, gr, pre, &b, xs + (size_t)s * n * D, s % 2 ? embs :
		    NULL, n, M, D, c->Hd, NULL, !(s % 2),
		    xs + (size_t)(s + 1) * n * D);
		blk_free(&b);
	}
	float *xL = xs + (size_t)2 * L * n * D;
	vlm_layernorm_fwd_cpu(hid, mf, rf, xL, lw.w, lb.w, n, D);
	vlm_gemm_cpu(0, 1, n, D, c->V, 1, dlg, c->V, proj.w, c->V, 0, dh, D);
	vlm_gemm_cpu(1, 0, D, c->V, n, 1, hid, D, dlg, c->V, 1, proj.g, c->V);
	vlm_layernorm_bwd_cpu(dy, lw.g, lb.g, dh, xL, lw.w, mf, rf, n, D);
	for (int s = 2 * L - 1; s >= 0; s--) {
		float *xl = xs + (size_t)s * n * D;
		snprintf(pre, sizeof(pre), s % 2 ? "text_decoder.cross_attn.%d"
		    : "text_decoder.resblocks.%d", s / 2);
		blk_fwd(c, gr, pre, &b, xl, s % 2 ? embs : NULL, n, M, D, c->Hd,
		    NULL, !(s % 2), dx);
		memset(dx, 0, (size_t)n * D * sizeof(float));
		if (b.moe) {
			b.moe->aux_w = aux_w;
			aux += b.moe->aux;
		}
		blk_bwd(c, gr, pre, &b, xl, s % 2 ? embs : NULL, dy, dx, dembs);
		blk_free(&b);
		memcpy(dy, dx, (size_t)n * D * sizeof(float));
	}
	for (int i = 0; i < n * D; i++)
		dtok[i] += dy[i];
	free(xs), free(hid), free(mf), free(rf), free(dh), free(dx), free(dy);
	return aux;
}

float **
vlm_coca_grads_new(const struct vlm_coca *c)
{
	float **g = calloc(c->st.n + 1, sizeof(*g));
	int64_t n = 0;

	for (int i = 0; i < c->st.n; i++)
		n += vlm_tensor_numel(&c->st.tensors[i]);
	if (!g || !(g[c->st.n] = F(n))) {
		free(g);
		vlm_error("out of memory");
		return NULL;
	}
	n = 0;
	for (int i = 0; i < c->st.n; i++) {
		g[i] = g[c->st.n] + n;
		n += vlm_tensor_numel(&c->st.tensors[i]);
	}
	return g;
}

void
vlm_coca_grads_free(const struct vlm_coca *c, float **g)
{
	if (g)
		free(g[c->st.n]);
	free(g);
}

/* Caption CE of one sample's logits lg (n,V) against ids[1..n]; lg
 * becomes w dCE/dlg (rows of pad labels zero). Returns the CE sum. */
static double
caption_ce(float *lg, const int32_t *ids, int n, int V, float w)
{
	double sum = 0;

	for (int i = 0; i < n; i++) {
		float *z = lg + (size_t)i * V, mx = -INFINITY;
		double s = 0;
		int y = ids[i + 1];
		for (int v = 0; v < V; v++)
			mx = z[v] > mx ? z[v] : mx;
		for (int v = 0; v < V; v++)
			s += exp(z[v] - mx);
		if (y)
			sum += mx + log(s) - z[y];
		for (int v = 0; v < V; v++)
			z[v] = y ? w * (float)(exp(z[v] - mx) / s) -
			    (v == y ? w : 0) : 0;
	}
	return sum;
}

int
vlm_coca_grad(const struct vlm_coca *c, const float *imgs,
    const int32_t *ids, int B, float w_caption, float w_clip, float **gr,
    struct vlm_coca_loss *out)
{
	int E = c->E, Tn = c->T, n = Tn - 1, M = c->Q - 1, S3 = 3 * c->S * c->S;
	int labels = 0;
	float *ur = F(B * E), *vr = F(B * E), *u = F(B * E), *v = F(B * E);
	float *nu = F(B), *nv = F(B), *du = F(B * E), *dv = F(B * E);
	float *dur = F(B * E), *dvr = F(B * E), *lg = F(B * B), *lse = F(2 * B);
	float *dl = F(B * B), *embs = F((size_t)B * M * E);
	float *tok = F((size_t)B * Tn * c->Dt), *hid = F((size_t)n * c->Dd);
	float *lgt = F((size_t)n * c->V), *dembs = F((size_t)M * E);
	float *dtok = F((size_t)Tn * c->Dt);
	struct tg th;
	double cap = 0, aux = 0;
	int rc = 0;

	th = T(c, gr, "logit_scale");

	if (!ur || !vr || !u || !v || !nu || !nv || !du || !dv || !dur || !dvr
	    || !lg || !lse || !dl || !embs || !tok || !hid || !lgt || !dembs ||
	    !dtok)
		rc = vlm_error("out of memory");
	for (int b = 0; b < B && rc == 0; b++)
		if (vlm_coca_image(c, imgs + (size_t)b * S3, ur + b * E,
		    embs + (size_t)b * M * E) < 0 || vlm_coca_text(c, ids +
		    (size_t)b * Tn, Tn, vr + b * E, tok + (size_t)b * Tn * c->Dt)
		    < 0)
			rc = -1;
	for (int i = 0; i < B * Tn && rc == 0; i++)
		labels += i % Tn > 0 && ids[i] != 0;
	if (rc == 0) {
		vlm_l2norm_fwd_cpu(u, nu, ur, B, E);
		vlm_l2norm_fwd_cpu(v, nv, vr, B, E);
		out->contrastive = w_clip * vlm_clip_loss_fwd_cpu(lg, lse, u, v,
		    *th.w, B, E);
		vlm_clip_loss_bwd_cpu(du, dv, th.g, dl, lg, lse, u, v, *th.w,
		    w_clip, B, E);
		vlm_l2norm_bwd_cpu(dur, du, u, nu, B, E);
		vlm_l2norm_bwd_cpu(dvr, dv, v, nv, B, E);
	}
	for (int b = 0; b < B && rc == 0; b++) {
		const int32_t *t = ids + (size_t)b * Tn;
		float *eb = embs + (size_t)b * M * E;
		float *tb = tok + (size_t)b * Tn * c->Dt;
		vlm_coca_decode(c, eb, tb, n, hid, lgt);
		cap += caption_ce(lgt, t, n, c->V, labels ? w_caption / labels
		    : 0);
		memset(dembs, 0, (size_t)M * E * sizeof(float));
		memset(dtok, 0, (size_t)Tn * c->Dt * sizeof(float));
		aux += dec_bwd(c, gr, eb, tb, n, lgt, dembs, dtok,
		    c->aux_importance / B);
		txt_bwd(c, gr, t, Tn, dvr + b * E, dtok);
		img_bwd(c, gr, imgs + (size_t)b * S3, dur + b * E, dembs);
	}
	if (rc == 0) {
		out->caption = labels ? w_caption * cap / labels : 0;
		out->aux = (float)(c->aux_importance * aux / B);
		out->total = out->contrastive + out->caption + out->aux;
		vlm_coca_lora_grads(c, gr);
	}
	free(ur), free(vr), free(u), free(v), free(nu), free(nv), free(du);
	free(dv), free(dur), free(dvr), free(lg), free(lse), free(dl);
	free(embs), free(tok), free(hid), free(lgt), free(dembs), free(dtok);
	return rc;
}
