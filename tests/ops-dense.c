/*
 * ops-dense.c - the dense transformer ops and the rows-and-sums ops
 * (tests/ops-common.h): their cases, run on every backend against ref
 * by tests/test-ops-*.c.
 */
#include "ops-common.h"

/* ---- dense ----------------------------------------------------------- */

static void
c_gemm(struct ctx *x, int k)
{
	int ta = k & 1, tb = k >> 1 & 1, M = 37, N = 11, K = 13;
	const float *A = in_f(x, M * K, 1), *B = in_f(x, K * N, 1);

	x->be->gemm(ta, tb, M, N, K, 0.7f, A, ta ? M : K, B, tb ? K : N, 0.3f,
	    OUT_F(x, M * N), N);
}

static const int lin[][3] = { { 37, 13, 7 }, { 37, 13, 7 }, { 1, 1, 1 } };

static void
c_linear_fwd(struct ctx *x, int k)
{
	int N = lin[k][0], IN = lin[k][1], OUT = lin[k][2];
	const float *xx = in_f(x, N * IN, 1), *w = in_f(x, OUT * IN, 1);
	const float *b = k == 1 ? NULL : in_f(x, OUT, 1);

	x->be->linear_fwd(OUT_F(x, N * OUT), xx, w, b, N, IN, OUT);
}

static void
c_linear_bwd(struct ctx *x, int k)
{
	int N = lin[k][0], IN = lin[k][1], OUT = lin[k][2];
	const float *dy = in_f(x, N * OUT, 1), *xx = in_f(x, N * IN, 1);
	const float *w = in_f(x, OUT * IN, 1);
	float *dx = k == 1 ? NULL : OUT_F(x, N * IN);
	float *dw = OUT_F(x, OUT * IN), *db = k == 1 ? NULL : OUT_F(x, OUT);

	x->be->linear_bwd(dx, dw, db, dy, xx, w, N, IN, OUT);
}

static const int rc[][2] = { { 37, 13 }, { 1, 7 } };

static void
c_layernorm_fwd(struct ctx *x, int k)
{
	int N = rc[k][0], C = rc[k][1];
	const float *xx = in_f(x, N * C, 2), *w = in_f(x, C, 1);
	const float *b = in_f(x, C, 1);
	float *y = OUT_F(x, N * C), *mean = OUT_F(x, N), *rstd = OUT_F(x, N);

	x->be->layernorm_fwd(y, mean, rstd, xx, w, b, N, C);
}

static void
c_layernorm_bwd(struct ctx *x, int k)
{
	int N = rc[k][0], C = rc[k][1];
	float *hx = host_f(x, N * C, 2), *hw = host_f(x, C, 1);
	float *y = malloc(N * C * 4), *st = malloc(2 * N * 4);

	vlm_layernorm_fwd_ref(y, st, st + N, hx, hw, hw, N, C);
	const float *dy = in_f(x, N * C, 1), *xx = IN(x, hx, N * C, F32);
	const float *w = IN(x, hw, C, F32), *s = IN(x, st, 2 * N, F32);
	float *dx = OUT_F(x, N * C), *dw = OUT_F(x, C), *db = OUT_F(x, C);
	x->be->layernorm_bwd(dx, dw, db, dy, xx, w, s, s + N, N, C);
	free(hx), free(hw), free(y), free(st);
}

static const int64_t nact[] = { 37 * 13, 1 };

static void
c_gelu_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, nact[k], 4);

	x->be->gelu_fwd(OUT_F(x, nact[k]), xx, nact[k]);
}

static void
c_gelu_bwd(struct ctx *x, int k)
{
	const float *dy = in_f(x, nact[k], 1), *xx = in_f(x, nact[k], 4);

	x->be->gelu_bwd(OUT_F(x, nact[k]), dy, xx, nact[k]);
}

static void
c_quickgelu_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, nact[k], 4);

	x->be->quickgelu_fwd(OUT_F(x, nact[k]), xx, nact[k]);
}

static void
c_quickgelu_bwd(struct ctx *x, int k)
{
	const float *dy = in_f(x, nact[k], 1), *xx = in_f(x, nact[k], 4);

	x->be->quickgelu_bwd(OUT_F(x, nact[k]), dy, xx, nact[k]);
}

static void
c_softmax_fwd(struct ctx *x, int k)
{
	int N = rc[k][0], C = rc[k][1];
	const float *xx = in_f(x, N * C, 5);

	x->be->softmax_fwd(OUT_F(x, N * C), xx, N, C);
}

static void
c_softmax_bwd(struct ctx *x, int k)
{
	int N = rc[k][0], C = rc[k][1];
	float *hy = host_probs(x, N, C);
	const float *dy = in_f(x, N * C, 1), *y = IN(x, hy, N * C, F32);

	x->be->softmax_bwd(OUT_F(x, N * C), dy, y, N, C);
	free(hy);
}

/* Attention: B = 3 sequences of 37, lengths 37, 20, 1; k: bit 0 causal,
 * bit 1 padding. */

static void
c_attention_fwd(struct ctx *x, int k)
{
	const float *qkv = in_f(x, AB * AT * 3 * AC, 1.5f);
	const int32_t *len = k & 2 ? IN(x, ops_len, AB, I32) : NULL;
	float *out = OUT_F(x, AB * AT * AC), *att = OUT_F(x,
	    AB * AH * AT * AT);

	x->be->attention_fwd(out, att, qkv, len, k & 1, AB, AT, AC, AH);
}

static void
c_attention_bwd(struct ctx *x, int k)
{
	size_t n = (size_t)AB * AT * 3 * AC, na = (size_t)AB * AH * AT * AT;
	float *hq = host_f(x, n, 1.5f), *ha = malloc(na * 4);
	float *ho = malloc((size_t)AB * AT * AC * 4);

	vlm_attention_fwd_ref(ho, ha, hq, k & 2 ? ops_len : NULL, k & 1, AB, AT,
	    AC, AH);
	const float *dout = in_f(x, AB * AT * AC, 1), *qkv = IN(x, hq, n, F32);
	const float *att = IN(x, ha, na, F32);
	float *scratch = IN(x, NULL, na, F32);
	x->be->attention_bwd(OUT_F(x, n), scratch, dout, qkv, att, AB, AT, AC,
	    AH);
	free(hq), free(ha), free(ho);
}

/* Attention with separate strided q, k, v (CoCa): k 0 cross (37 queries
 * over 20 keys), 1 causal self-attention on a packed [q|k|v], 2 an
 * additive mask hiding some keys of 5 queries over 37 (key 0 kept). */
static const int xa[][2] = { { AT, 20 }, { AT, AT }, { 5, AT } };

static float *
xa_mask(struct ctx *x, int k)
{
	int Tq = xa[k][0], Tk = xa[k][1];
	float *m = k == 2 ? host_f(x, (size_t)Tq * Tk, 1) : NULL;

	for (int i = 0; m && i < Tq * Tk; i++)
		m[i] = i % Tk && m[i] < -0.5f ? -INFINITY : m[i];
	return m;
}

static void
c_xattention_fwd(struct ctx *x, int k)
{
	int Tq = xa[k][0], Tk = xa[k][1], l = k == 1 ? 3 * AC : AC;
	const float *q = in_f(x, (size_t)(k == 1 ? 3 : 1) * Tq * AC, 1.5f);
	const float *kk = k == 1 ? q + AC : in_f(x, (size_t)Tk * AC, 1.5f);
	const float *v = k == 1 ? q + 2 * AC : in_f(x, (size_t)Tk * AC, 1);
	float *hm = xa_mask(x, k);
	const float *m = hm ? IN(x, hm, (size_t)Tq * Tk, F32) : NULL;

	x->be->xattention_fwd(OUT_F(x, (size_t)Tq * AC), OUT_F(x,
	    (size_t)AH * Tq * Tk), q, l, kk, l, v, l, m, k == 1, Tq, Tk, AC,
	    AH);
	free(hm);
}

static void
c_xattention_bwd(struct ctx *x, int k)
{
	int Tq = xa[k][0], Tk = xa[k][1], l = k == 1 ? 3 * AC : AC;
	size_t nq = (size_t)(k == 1 ? 3 : 1) * Tq * AC, nk = (size_t)Tk * AC;
	float *hq = host_f(x, nq, 1.5f), *hk = host_f(x, nk, 1.5f);
	float *hv = host_f(x, nk, 1), *hm = xa_mask(x, k);
	float *ho = malloc((size_t)Tq * AC * 4);
	float *hp = malloc((size_t)AH * Tq * Tk * 4);
	const float *kq = k == 1 ? hq + AC : hk, *vq = k == 1 ? hq + 2 * AC : hv;

	vlm_xattention_fwd_ref(ho, hp, hq, l, kq, l, vq, l, hm, k == 1, Tq,
	    Tk, AC, AH);
	const float *da = in_f(x, (size_t)Tq * AC, 1);
	const float *P = IN(x, hp, (size_t)AH * Tq * Tk, F32);
	const float *q = IN(x, hq, nq, F32);
	const float *kk = k == 1 ? q + AC : IN(x, hk, nk, F32);
	const float *v = k == 1 ? q + 2 * AC : IN(x, hv, nk, F32);
	/* in-out: the gradients accumulate */
	float *dq = OUT_F(x, nq), *dk = k == 1 ? dq + AC : OUT_F(x, nk);
	float *dv = k == 1 ? dq + 2 * AC : OUT_F(x, nk);
	x->be->xattention_bwd(dq, dk, dv, da, P, q, kk, v, l, l, l, Tq, Tk,
	    AC, AH);
	free(hq), free(hk), free(hv), free(hm), free(ho), free(hp);
}

static void
c_l2norm_fwd(struct ctx *x, int k)
{
	int N = rc[k][0], C = rc[k][1];
	float *hx = host_f(x, N * C, 1);

	memset(hx, 0, C * sizeof(float)); /* a zero row: the clamp */
	const float *xx = IN(x, hx, N * C, F32);
	x->be->l2norm_fwd(OUT_F(x, N * C), OUT_F(x, N), xx, N, C);
	free(hx);
}

static void
c_l2norm_bwd(struct ctx *x, int k)
{
	int N = rc[k][0], C = rc[k][1];
	float *hx = host_f(x, N * C, 1), *hy = malloc(N * C * 4);
	float *hn = malloc(N * 4);

	memset(hx, 0, C * sizeof(float));
	vlm_l2norm_fwd_ref(hy, hn, hx, N, C);
	const float *dy = in_f(x, N * C, 1), *y = IN(x, hy, N * C, F32);
	const float *nn = IN(x, hn, N, F32);
	x->be->l2norm_bwd(OUT_F(x, N * C), dy, y, nn, N, C);
	free(hx), free(hy), free(hn);
}

static const int clb[] = { 37, 1 };

/* Unit rows u, v (B, 13) on the host. */
static void
host_units(struct ctx *x, int B, float **u, float **v)
{
	float *a = host_f(x, B * 13, 1), *b = host_f(x, B * 13, 1);

	*u = malloc(B * 13 * 4), *v = malloc(B * 13 * 4);
	vlm_l2norm_fwd_ref(*u, NULL, a, B, 13);
	vlm_l2norm_fwd_ref(*v, NULL, b, B, 13);
	free(a), free(b);
}

static void
c_clip_loss_fwd(struct ctx *x, int k)
{
	int B = clb[k];
	float *hu, *hv;

	host_units(x, B, &hu, &hv);
	const float *u = IN(x, hu, B * 13, F32), *v = IN(x, hv, B * 13, F32);
	float *logits = OUT_F(x, B * B), *lse = OUT_F(x, 2 * B);
	ret(x, x->be->clip_loss_fwd(logits, lse, u, v, 2.3f, B, 13));
	free(hu), free(hv);
}

static void
c_clip_loss_bwd(struct ctx *x, int k)
{
	int B = clb[k];
	float *hu, *hv, *hl = malloc(B * B * 4), *hs = malloc(2 * B * 4);

	host_units(x, B, &hu, &hv);
	vlm_clip_loss_fwd_ref(hl, hs, hu, hv, 2.3f, B, 13);
	const float *u = IN(x, hu, B * 13, F32), *v = IN(x, hv, B * 13, F32);
	const float *lg = IN(x, hl, B * B, F32), *ls = IN(x, hs, 2 * B, F32);
	float *du = OUT_F(x, B * 13), *dv = OUT_F(x, B * 13);
	float *dth = OUT_F(x, 1), *dl = OUT_F(x, B * B);
	x->be->clip_loss_bwd(du, dv, dth, dl, lg, ls, u, v, 2.3f, 0.7f, B, 13);
	free(hu), free(hv), free(hl), free(hs);
}

static void
c_adamw_step(struct ctx *x, int k)
{
	int64_t n = 37 * 13 + 1;
	float *hv = host_f(x, n, 1);

	for (int64_t i = 0; i < n; i++)
		hv[i] = hv[i] * hv[i]; /* second moments are >= 0 */
	float *p = OUT_F(x, n), *m = OUT_F(x, n);
	float *v = out_b(x, hv, n, F32);
	const float *g = in_f(x, n, 1);
	x->be->adamw_step(p, m, v, g, n, 3 + k, 1e-3f, 0.9f, 0.98f, 1e-6f,
	    k ? 0.2f : 0);
	free(hv);
}

static void
c_grad_clip(struct ctx *x, int k)
{
	int64_t n = 1001;
	float *g = OUT_F(x, n);

	ret(x, x->be->grad_clip(g, n, k ? 0.5f : 0)); /* clips, measures */
}


static void
c_add(struct ctx *x, int k)
{
	int64_t n = k ? 1 : 100003; /* big enough for the thread pool */
	const float *xx = in_f(x, n, 1);

	x->be->add(OUT_F(x, n), xx, n);
}

static void
c_scale(struct ctx *x, int k)
{
	int64_t n = k ? 1 : 100003;
	float *y = OUT_F(x, n);

	x->be->scale(y, 0.25f, n);
}

/* rows (S) distinct stack rows of R: a shuffled prefix of 0..R-1. */
static const int32_t *
in_rows(struct ctx *x, int S, int R)
{
	int32_t h[4096];

	for (int i = 0; i < R; i++)
		h[i] = i;
	for (int i = R - 1; i > 0; i--) {
		int j = (int)vlm_rng_below(&x->rng, i + 1), t = h[i];
		h[i] = h[j], h[j] = t;
	}
	return IN(x, h, S, I32);
}

static const int rows_sz[][3] = { { 17, 37, 13 }, { 3001, 4000, 37 } };

static void
c_rows_gather(struct ctx *x, int k)
{
	int S = rows_sz[k][0], R = rows_sz[k][1], D = rows_sz[k][2];
	const int32_t *rows = in_rows(x, S, R);
	const float *xx = in_f(x, (size_t)R * D, 1);

	x->be->rows_gather(OUT_F(x, (size_t)S * D), xx, rows, S, D);
}

static void
c_rows_scatter_add(struct ctx *x, int k)
{
	int S = rows_sz[k][0], R = rows_sz[k][1], D = rows_sz[k][2];
	const int32_t *rows = in_rows(x, S, R);
	const float *y = in_f(x, (size_t)S * D, 1);

	x->be->rows_scatter_add(OUT_F(x, (size_t)R * D), y, rows, S, D);
}

static const struct op_case cases[] = {
	CASE(gemm, 4, 1e-5), CASE(linear_fwd, 3, 1e-5),
	CASE(linear_bwd, 3, 1e-5), CASE(layernorm_fwd, 2, 1e-5),
	CASE(layernorm_bwd, 2, 1e-5), CASE(gelu_fwd, 2, 1e-6),
	CASE(gelu_bwd, 2, 1e-6), CASE(quickgelu_fwd, 2, 1e-6),
	CASE(quickgelu_bwd, 2, 1e-6), CASE(softmax_fwd, 2, 1e-6),
	CASE(softmax_bwd, 2, 1e-5), CASE(attention_fwd, 4, 1e-5),
	CASE(attention_bwd, 4, 1e-5), CASE(l2norm_fwd, 2, 1e-6),
	CASE(l2norm_bwd, 2, 1e-5), CASE(clip_loss_fwd, 2, 1e-5),
	CASE(clip_loss_bwd, 2, 1e-5), CASE(adamw_step, 2, 1e-6),
	CASE(grad_clip, 2, 1e-6), CASE(add, 2, 0), CASE(scale, 2, 0),
	CASE(rows_gather, 2, 0), CASE(rows_scatter_add, 2, 0),
	CASE(xattention_fwd, 3, 1e-5), CASE(xattention_bwd, 3, 1e-5),
};

const struct op_family ops_dense = {
	"dense", cases, (int)(sizeof(cases) / sizeof(*cases))
};
