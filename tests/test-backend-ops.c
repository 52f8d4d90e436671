/*
 * test-backend-ops.c - every op of every compiled backend against the
 * "ref" backend (in the spirit of ggml's test-backend-ops): each case
 * makes its inputs on the host from a seeded generator, uploads them to
 * the backend's memory, runs the op, downloads what it wrote, and the
 * same case on "ref" is the oracle. Shapes are odd on purpose: 37
 * tokens, one expert, K = E, padded and masked rows, capacity drops.
 * Prints one line per op and backend (worst error over its shapes and
 * the op's tolerance); "ref" against itself must agree bit for bit
 * (a kernel reading memory it did not write would not). Then: every op
 * of the table has a case here, a table missing an op is refused with
 * its name, and whole training steps agree between backends.
 */
#include <math.h>

#include "testutil.h"
#include "kernels.h"

enum { F32, I32, U8 };

struct buf {
	void *dev;
	size_t n;
	int type;
};

/* One run of one case on one backend. */
struct ctx {
	const struct vlm_backend *be;
	struct vlm_rng rng;
	struct buf out[12];
	int nout;
	void *mem[40];
	int nmem;
	double ret[2];
	int nret;
};

static size_t
type_size(int type)
{
	return type == F32 ? 4 : type == I32 ? 4 : 1;
}

/* n values of the backend's memory holding host's (freed at the end). */
static void *
dev_copy(struct ctx *x, const void *host, size_t n, int type)
{
	void *d = x->be->alloc(n * type_size(type));

	assert_non_null(d);
	assert_true(x->nmem < 40);
	x->mem[x->nmem++] = d;
	if (host)
		x->be->upload(d, host, n * type_size(type));
	return d;
}

/* Host floats uniform in [-s, s) from the case's generator. */
static float *
host_f(struct ctx *x, size_t n, float s)
{
	float *h = malloc((n ? n : 1) * sizeof(float));

	for (size_t i = 0; i < n; i++)
		h[i] = (float)((2 * vlm_rng_uniform(&x->rng) - 1) * s);
	return h;
}

/* An input: random floats in [-s, s). */
static float *
in_f(struct ctx *x, size_t n, float s)
{
	float *h = host_f(x, n, s), *d = dev_copy(x, h, n, F32);

	free(h);
	return d;
}

#define IN(x, host, n, type) dev_copy((x), (host), (n), (type))

/* An output (or in-out) buffer starting as host's contents (random when
 * host is NULL, so that accumulating ops and unwritten rows show). */
static void *
out_b(struct ctx *x, const void *host, size_t n, int type)
{
	void *d;

	assert_true(x->nout < 12);
	if (host || type != F32) {
		void *h = calloc(n ? n : 1, type_size(type));
		if (host)
			memcpy(h, host, n * type_size(type));
		else
			memset(h, 0x5a, n * type_size(type));
		d = dev_copy(x, h, n, type);
		free(h);
	} else {
		d = in_f(x, n, 1);
	}
	x->out[x->nout++] = (struct buf){ d, n, type };
	return d;
}

#define OUT_F(x, n) ((float *)out_b((x), NULL, (n), F32))

static void
ret(struct ctx *x, double v)
{
	x->ret[x->nret++] = v;
}

/* ---- host-made structured inputs ------------------------------------ */

/* Softmax rows (S,E) of random logits: probabilities or gates. */
static float *
host_probs(struct ctx *x, int S, int E)
{
	float *z = host_f(x, (size_t)S * E, 3), *p = malloc(
	    (size_t)S * E * sizeof(float));

	vlm_softmax_fwd_ref(p, z, S, E);
	free(z);
	return p;
}

/* One routing group as the ref kernels make it. */
struct moe_case {
	int S, D, E, K, C, bpr, gate_norm;
};

static const struct moe_case moe_cases[] = {
	{ 37, 13, 1, 1, 37, 0, 1 },  /* one expert */
	{ 37, 13, 5, 5, 37, 1, 1 },  /* K = E */
	{ 37, 13, 6, 2, 5, 1, 1 },   /* capacity drops */
	{ 37, 13, 7, 2, 9, 0, 0 },   /* no gate normalisation, drops */
};
#define NMOE ((int)(sizeof(moe_cases) / sizeof(*moe_cases)))

struct routing {
	float *g, *val, *w;
	int32_t *idx, *slot, *fill, *order;
	uint8_t *keep;
};

static void
host_route(struct ctx *x, const struct moe_case *q, struct routing *h)
{
	size_t SK = (size_t)q->S * q->K;

	h->g = host_probs(x, q->S, q->E);
	h->val = malloc(SK * 4), h->w = malloc(SK * 4);
	h->idx = malloc(SK * 4), h->slot = malloc(SK * 4);
	h->fill = malloc(q->E * 4), h->order = malloc(q->S * 4);
	h->keep = malloc(SK);
	vlm_moe_route_fwd_ref(h->idx, h->val, h->keep, h->slot, h->w, h->fill,
	    h->order, h->g, q->S, q->E, q->K, q->C, q->bpr, q->gate_norm);
}

static void
free_route(struct routing *h)
{
	free(h->g), free(h->val), free(h->w), free(h->idx), free(h->slot);
	free(h->fill), free(h->order), free(h->keep);
}

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
enum { AB = 3, AT = 37, AC = 12, AH = 3 };
static const int32_t alen[AB] = { 37, 20, 1 };

static void
c_attention_fwd(struct ctx *x, int k)
{
	const float *qkv = in_f(x, AB * AT * 3 * AC, 1.5f);
	const int32_t *len = k & 2 ? IN(x, alen, AB, I32) : NULL;
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

	vlm_attention_fwd_ref(ho, ha, hq, k & 2 ? alen : NULL, k & 1, AB, AT,
	    AC, AH);
	const float *dout = in_f(x, AB * AT * AC, 1), *qkv = IN(x, hq, n, F32);
	const float *att = IN(x, ha, na, F32);
	float *scratch = IN(x, NULL, na, F32);
	x->be->attention_bwd(OUT_F(x, n), scratch, dout, qkv, att, AB, AT, AC,
	    AH);
	free(hq), free(ha), free(ho);
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

/* ---- sparse MoE ------------------------------------------------------- */

static void
c_router_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k % NMOE];
	int S = q->S, D = q->D, E = q->E;
	const float *xx = in_f(x, S * D, 1), *wr = in_f(x, E * D, 1);
	const float *eps = k < NMOE ? in_f(x, S * E, 0.1f) : NULL;

	x->be->router_fwd(OUT_F(x, S * E), OUT_F(x, S * E), OUT_F(x, S * E),
	    xx, wr, eps, S, D, E);
}

static void
c_router_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	int S = q->S, D = q->D, E = q->E;
	const float *dz = in_f(x, S * E, 1), *xx = in_f(x, S * D, 1);
	const float *wr = in_f(x, E * D, 1);

	x->be->router_bwd(OUT_F(x, S * D), OUT_F(x, E * D), dz, xx, wr, S, D,
	    E);
}

static void
c_moe_route_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	int S = q->S, E = q->E, K = q->K;
	float *hg = host_probs(x, S, E);
	const float *g = IN(x, hg, S * E, F32);
	int32_t *idx = out_b(x, NULL, S * K, I32);
	float *val = OUT_F(x, S * K);
	uint8_t *keep = out_b(x, NULL, S * K, U8);
	int32_t *slot = out_b(x, NULL, S * K, I32);
	float *w = OUT_F(x, S * K);
	int32_t *fill = out_b(x, NULL, E, I32), *ord = out_b(x, NULL, S, I32);

	x->be->moe_route_fwd(idx, val, keep, slot, w, fill, ord, g, S, E, K,
	    q->C, q->bpr, q->gate_norm);
	free(hg);
}

static void
c_moe_route_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	int S = q->S, E = q->E, K = q->K;
	struct routing h;

	host_route(x, q, &h);
	const float *dw = in_f(x, S * K, 1), *g = IN(x, h.g, S * E, F32);
	const int32_t *idx = IN(x, h.idx, S * K, I32);
	const uint8_t *keep = IN(x, h.keep, S * K, U8);
	x->be->moe_route_bwd(OUT_F(x, S * E), dw, g, idx, keep, S, E, K,
	    q->gate_norm);
	free_route(&h);
}

/* Routing of case k uploaded: idx, slot, w. */
static void
dev_route(struct ctx *x, const struct moe_case *q, struct routing *h,
    const int32_t **idx, const int32_t **slot, const float **w)
{
	host_route(x, q, h);
	*idx = IN(x, h->idx, q->S * q->K, I32);
	*slot = IN(x, h->slot, q->S * q->K, I32);
	*w = IN(x, h->w, q->S * q->K, F32);
}

static void
c_moe_dispatch_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *xx = in_f(x, q->S * q->D, 1);
	x->be->moe_dispatch_fwd(OUT_F(x, q->E * q->C * q->D), xx, idx, slot,
	    q->S, q->D, q->E, q->K, q->C);
	free_route(&h);
}

static void
c_moe_dispatch_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *dbuf = in_f(x, q->E * q->C * q->D, 1);
	x->be->moe_dispatch_bwd(OUT_F(x, q->S * q->D), dbuf, idx, slot, q->S,
	    q->D, q->E, q->K, q->C);
	free_route(&h);
}

static void
c_moe_combine_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *out = in_f(x, q->E * q->C * q->D, 1);
	x->be->moe_combine_fwd(OUT_F(x, q->S * q->D), out, idx, slot, w, q->S,
	    q->D, q->E, q->K, q->C);
	free_route(&h);
}

static void
c_moe_combine_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *dy = in_f(x, q->S * q->D, 1);
	const float *out = in_f(x, q->E * q->C * q->D, 1);
	x->be->moe_combine_bwd(OUT_F(x, q->E * q->C * q->D),
	    OUT_F(x, q->S * q->K), dy, out, idx, slot, w, q->S, q->D, q->E,
	    q->K, q->C);
	free_route(&h);
}

/* Aux losses: case k's group; p and g softmax rows, z logits. */
#define AUX_SETUP \
	const struct moe_case *q = &moe_cases[k % NMOE]; \
	int S = q->S, E = q->E, K = q->K; \
	float *hp = host_probs(x, S, E); \
	const float *p = IN(x, hp, S * E, F32), *z = in_f(x, S * E, 3); \
	free(hp)

static void
c_aux_importance_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)z, (void)K;
	ret(x, x->be->aux_importance_fwd(p, S, E));
}

static void
c_aux_importance_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)z, (void)K;
	x->be->aux_importance_bwd(OUT_F(x, S * E), p, 0.7f, S, E);
}

static void
c_aux_load_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p;
	const float *eps = in_f(x, S * E, 0.3f);
	ret(x, x->be->aux_load_fwd(z, eps, 0.3f, S, E, K));
}

static void
c_aux_load_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p;
	const float *eps = in_f(x, S * E, 0.3f);
	x->be->aux_load_bwd(OUT_F(x, S * E), z, eps, 0.3f, 0.7f, S, E, K);
}

static void
c_aux_switch_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	struct routing h;
	(void)z;
	host_route(x, q, &h);
	const int32_t *idx = IN(x, h.idx, S * K, I32);
	ret(x, x->be->aux_switch_fwd(p, idx, S, E, K));
	free_route(&h);
}

static void
c_aux_switch_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	struct routing h;
	(void)z;
	host_route(x, q, &h);
	const int32_t *idx = IN(x, h.idx, S * K, I32);
	x->be->aux_switch_bwd(OUT_F(x, S * E), p, idx, 0.7f, S, E, K);
	free_route(&h);
}

static void
c_aux_zloss_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	ret(x, x->be->aux_zloss_fwd(z, S, E));
}

static void
c_aux_zloss_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	x->be->aux_zloss_bwd(OUT_F(x, S * E), z, 0.7f, S, E);
}

/* Modalities: tokens 0..11 images, the rest texts; case k >= NMOE
 * takes NULL (every token of modality m). */
static const uint8_t *
in_mod(struct ctx *x, int S, int k)
{
	uint8_t h[64];

	if (k >= NMOE)
		return NULL;
	for (int s = 0; s < S; s++)
		h[s] = s >= 12;
	return IN(x, h, S, U8);
}

static void
c_aux_entropy_local_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	ret(x, x->be->aux_entropy_local_fwd(z, mod, 0, S, E));
	ret(x, x->be->aux_entropy_local_fwd(z, mod, 1, S, E));
}

static void
c_aux_entropy_local_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	float *dz = OUT_F(x, S * E);
	x->be->aux_entropy_local_bwd(dz, z, mod, 0, 0.7f, S, E);
	x->be->aux_entropy_local_bwd(dz, z, mod, 1, 0.3f, S, E);
}

static void
c_aux_entropy_global_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	for (int m = 0; m < 2; m++)
		ret(x, x->be->aux_entropy_global_fwd(z, mod, m,
		    vlm_aux_entropy_tau(m ? 25 : 12, E), S, E));
}

static void
c_aux_entropy_global_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	float *dz = OUT_F(x, S * E);
	for (int m = 0; m < 2; m++)
		x->be->aux_entropy_global_bwd(dz, z, mod, m,
		    vlm_aux_entropy_tau(m ? 25 : 12, E), 0.7f, S, E);
}

/* ---- inputs, pooling, token reduction, rows ------------------------- */

enum { PB = 2, PH = 15, PW = 10, PP = 5, NP = (PH / PP) * (PW / PP) };

static void
c_patchify_fwd(struct ctx *x, int k)
{
	const float *img = in_f(x, PB * 3 * PH * PW, 1);

	(void)k;
	x->be->patchify_fwd(OUT_F(x, PB * NP * 3 * PP * PP), img, PB, 3, PH,
	    PW, PP);
}

static void
c_patchify_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, PB * NP * 3 * PP * PP, 1);

	(void)k;
	x->be->patchify_bwd(OUT_F(x, PB * 3 * PH * PW), d, PB, 3, PH, PW, PP);
}

/* ids (N) in [0, V) with repeats (the backward's collisions). */
static const int32_t *
in_ids(struct ctx *x, int N, int V)
{
	int32_t h[64];

	for (int n = 0; n < N; n++)
		h[n] = (int32_t)vlm_rng_below(&x->rng, V);
	return IN(x, h, N, I32);
}

static void
c_embed_fwd(struct ctx *x, int k)
{
	const int32_t *ids = in_ids(x, 37, 11);
	const float *table = in_f(x, 11 * 13, 1);

	(void)k;
	x->be->embed_fwd(OUT_F(x, 37 * 13), ids, table, 37, 11, 13);
}

static void
c_embed_bwd(struct ctx *x, int k)
{
	const int32_t *ids = in_ids(x, 37, 11);
	const float *dout = in_f(x, 37 * 13, 1);

	(void)k;
	x->be->embed_bwd(OUT_F(x, 11 * 13), dout, ids, 37, 11, 13);
}

static void
c_posembed_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, 3 * 37 * 13, 1), *pos = in_f(x, 37 * 13, 1);

	(void)k;
	x->be->posembed_fwd(OUT_F(x, 3 * 37 * 13), xx, pos, 3, 37, 13);
}

static void
c_posembed_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, 3 * 37 * 13, 1);

	x->be->posembed_bwd(k ? NULL : OUT_F(x, 3 * 37 * 13),
	    OUT_F(x, 37 * 13), d, 3, 37, 13);
}

static void
c_cls_prepend_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, 3 * 36 * 13, 1), *cls = in_f(x, 13, 1);

	(void)k;
	x->be->cls_prepend_fwd(OUT_F(x, 3 * 37 * 13), xx, cls, 3, 36, 13);
}

static void
c_cls_prepend_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, 3 * 37 * 13, 1);

	x->be->cls_prepend_bwd(k ? NULL : OUT_F(x, 3 * 36 * 13),
	    k == 1 ? OUT_F(x, 13) : NULL, d, 3, 36, 13);
}

static const int32_t tpos[AB] = { 36, 0, 19 };

static void
c_pool_token_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, AB * AT * 13, 1);
	const int32_t *pos = k ? NULL : IN(x, tpos, AB, I32);

	x->be->pool_token_fwd(OUT_F(x, AB * 13), xx, pos, AB, AT, 13);
}

static void
c_pool_token_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, AB * 13, 1);
	const int32_t *pos = k ? NULL : IN(x, tpos, AB, I32);

	x->be->pool_token_bwd(OUT_F(x, AB * AT * 13), d, pos, AB, AT, 13);
}

static void
c_pool_mean_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, AB * AT * 13, 1);
	const int32_t *len = k ? NULL : IN(x, alen, AB, I32);

	x->be->pool_mean_fwd(OUT_F(x, AB * 13), xx, len, AB, AT, 13);
}

static void
c_pool_mean_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, AB * 13, 1);
	const int32_t *len = k ? NULL : IN(x, alen, AB, I32);

	x->be->pool_mean_bwd(OUT_F(x, AB * AT * 13), d, len, AB, AT, 13);
}

static void
c_pool_map_fwd(struct ctx *x, int k)
{
	const float *q = in_f(x, AC, 1), *kk = in_f(x, AB * AT * AC, 1);
	const float *v = in_f(x, AB * AT * AC, 1);
	const int32_t *len = k ? NULL : IN(x, alen, AB, I32);

	x->be->pool_map_fwd(OUT_F(x, AB * AC), OUT_F(x, AB * AH * AT), q, kk,
	    v, len, AB, AT, AC, AH);
}

static void
c_pool_map_bwd(struct ctx *x, int k)
{
	float *hq = host_f(x, AC, 1), *hk = host_f(x, AB * AT * AC, 1);
	float *hv = host_f(x, AB * AT * AC, 1), *ho = malloc(AB * AC * 4);
	float *ha = malloc(AB * AH * AT * 4);

	vlm_pool_map_fwd_ref(ho, ha, hq, hk, hv, k ? NULL : alen, AB, AT, AC,
	    AH);
	const float *q = IN(x, hq, AC, F32), *kk = IN(x, hk, AB * AT * AC, F32);
	const float *v = IN(x, hv, AB * AT * AC, F32);
	const float *att = IN(x, ha, AB * AH * AT, F32);
	const float *d = in_f(x, AB * AC, 1);
	const int32_t *len = k ? NULL : IN(x, alen, AB, I32);
	x->be->pool_map_bwd(OUT_F(x, AC), OUT_F(x, AB * AT * AC),
	    k == 2 ? NULL : OUT_F(x, AB * AT * AC), d, att, q, kk, v, len, AB,
	    AT, AC, AH);
	free(hq), free(hk), free(hv), free(ho), free(ha);
}

enum { TB = 2, TN = 37, TD = 12, THd = 7, TM = 5 };

struct tl_in {
	const float *x, *lw, *lb, *w1, *b1, *w2, *b2;
};

static void
tl_inputs(struct ctx *x, struct tl_in *t)
{
	t->x = in_f(x, TB * TN * TD, 1);
	t->lw = in_f(x, TD, 1), t->lb = in_f(x, TD, 1);
	t->w1 = in_f(x, THd * TD, 1), t->b1 = in_f(x, THd, 1);
	t->w2 = in_f(x, TM * THd, 1), t->b2 = in_f(x, TM, 1);
}

static void
c_token_learner_fwd(struct ctx *x, int k)
{
	struct tl_in t;
	float *act;

	(void)k;
	tl_inputs(x, &t);
	act = IN(x, NULL, vlm_token_learner_act_floats(TB, TN, TD, THd, TM),
	    F32);
	x->be->token_learner_fwd(OUT_F(x, TB * TM * TD), act, t.x, t.lw, t.lb,
	    t.w1, t.b1, t.w2, t.b2, TB, TN, TD, THd, TM);
}

/* The backend's own forward fills act (its layout is the backend's). */
static void
c_token_learner_bwd(struct ctx *x, int k)
{
	struct tl_in t;
	float *act, *out;

	(void)k;
	tl_inputs(x, &t);
	act = IN(x, NULL, vlm_token_learner_act_floats(TB, TN, TD, THd, TM),
	    F32);
	out = IN(x, NULL, TB * TM * TD, F32);
	x->be->token_learner_fwd(out, act, t.x, t.lw, t.lb, t.w1, t.b1, t.w2,
	    t.b2, TB, TN, TD, THd, TM);
	const float *d = in_f(x, TB * TM * TD, 1);
	x->be->token_learner_bwd(OUT_F(x, TB * TN * TD), OUT_F(x, TD),
	    OUT_F(x, TD), OUT_F(x, THd * TD), OUT_F(x, THd),
	    OUT_F(x, TM * THd), OUT_F(x, TM), d, act, t.x, t.lw, t.w1, t.w2,
	    TB, TN, TD, THd, TM);
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

/* ---- the table of cases ------------------------------------------------ */

struct op_case {
	enum vlm_op op;
	void (*fn)(struct ctx *x, int k);
	int shapes;
	double tol; /* max |a - ref| / max |ref| over each output */
};

#define CASE(name, n, tol) { VLM_OP_##name, c_##name, (n), (tol) }

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
	CASE(grad_clip, 2, 1e-6),
	CASE(router_fwd, 2 * NMOE, 1e-5), CASE(router_bwd, NMOE, 1e-5),
	CASE(moe_route_fwd, NMOE, 0), CASE(moe_route_bwd, NMOE, 1e-6),
	CASE(moe_dispatch_fwd, NMOE, 0), CASE(moe_dispatch_bwd, NMOE, 0),
	CASE(moe_combine_fwd, NMOE, 1e-6), CASE(moe_combine_bwd, NMOE, 1e-6),
	CASE(aux_importance_fwd, NMOE, 1e-6),
	CASE(aux_importance_bwd, NMOE, 1e-6),
	CASE(aux_load_fwd, NMOE, 1e-6), CASE(aux_load_bwd, NMOE, 1e-6),
	CASE(aux_switch_fwd, NMOE, 1e-6), CASE(aux_switch_bwd, NMOE, 1e-6),
	CASE(aux_zloss_fwd, NMOE, 1e-6), CASE(aux_zloss_bwd, NMOE, 1e-6),
	CASE(aux_entropy_local_fwd, NMOE + 1, 1e-6),
	CASE(aux_entropy_local_bwd, NMOE + 1, 1e-6),
	CASE(aux_entropy_global_fwd, NMOE + 1, 1e-6),
	CASE(aux_entropy_global_bwd, NMOE + 1, 1e-6),
	CASE(patchify_fwd, 1, 0), CASE(patchify_bwd, 1, 0),
	CASE(embed_fwd, 1, 0), CASE(embed_bwd, 1, 1e-6),
	CASE(posembed_fwd, 1, 0), CASE(posembed_bwd, 2, 1e-6),
	CASE(cls_prepend_fwd, 1, 0), CASE(cls_prepend_bwd, 3, 1e-6),
	CASE(pool_token_fwd, 2, 0), CASE(pool_token_bwd, 2, 0),
	CASE(pool_mean_fwd, 2, 1e-6), CASE(pool_mean_bwd, 2, 1e-6),
	CASE(pool_map_fwd, 2, 1e-5), CASE(pool_map_bwd, 3, 1e-5),
	CASE(token_learner_fwd, 1, 1e-5), CASE(token_learner_bwd, 1, 1e-4),
	CASE(add, 2, 0), CASE(scale, 2, 0), CASE(rows_gather, 2, 0),
	CASE(rows_scatter_add, 2, 0),
};
#define NCASES ((int)(sizeof(cases) / sizeof(*cases)))

/* What case c shape k wrote on backend be: outputs into host copies. */
struct result {
	int nout, nret;
	struct buf out[12]; /* dev: a host copy */
	double ret[2];
};

static void
run_case(const struct vlm_backend *be, const struct op_case *c, int k,
    struct result *r)
{
	struct ctx x = { .be = be };

	vlm_rng_seed2(&x.rng, 1234 + k, c->op);
	c->fn(&x, k);
	assert_int_equal(be->sync(), 0);
	r->nout = x.nout, r->nret = x.nret;
	memcpy(r->ret, x.ret, sizeof(r->ret));
	for (int i = 0; i < x.nout; i++) {
		size_t bytes = x.out[i].n * type_size(x.out[i].type);
		r->out[i] = x.out[i];
		r->out[i].dev = malloc(bytes ? bytes : 1);
		be->download(r->out[i].dev, x.out[i].dev, bytes);
	}
	for (int i = 0; i < x.nmem; i++)
		be->free(x.mem[i]);
}

/* Worst error of a against the oracle o; integers must be equal. */
static double
compare(const struct result *a, const struct result *o)
{
	double worst = 0, e;

	assert_int_equal(a->nout, o->nout);
	assert_int_equal(a->nret, o->nret);
	for (int i = 0; i < a->nret; i++) {
		e = fabs(a->ret[i] - o->ret[i]) / fmax(fabs(o->ret[i]), 1e-30);
		worst = fmax(worst, e);
	}
	for (int i = 0; i < a->nout; i++) {
		const struct buf *x = &a->out[i], *y = &o->out[i];
		if (x->type == F32)
			e = rel_err(x->dev, y->dev, x->n);
		else
			e = memcmp(x->dev, y->dev, x->n *
			    type_size(x->type)) != 0 ? INFINITY : 0;
		if (isnan(e))
			e = INFINITY;
		worst = fmax(worst, e);
	}
	return worst;
}

static void
free_result(struct result *r)
{
	for (int i = 0; i < r->nout; i++)
		free(r->out[i].dev);
}

/* Every case on every backend against ref; one line per op and backend. */
static void
test_ops(void **state)
{
	const struct vlm_backend *ref = vlm_backend_get("ref");
	int failed = 0;

	(void)state;
	for (int t = 1; t <= 3; t += 2) /* the thread pool split two ways */
	for (int b = 0; vlm_backend_at(b); b++) {
		const struct vlm_backend *be = vlm_backend_at(b);
		vlm_threads_set(t);
		for (int i = 0; i < NCASES; i++) {
			const struct op_case *c = &cases[i];
			/* ref against itself: bit for bit */
			double tol = be == ref ? 0 : c->tol, worst = 0;
			if (!vlm_backend_has(be, c->op)) {
				print_message("%-24s %-4s not supported\n",
				    vlm_backend_op_name(c->op), be->name);
				continue;
			}
			for (int k = 0; k < c->shapes; k++) {
				struct result a, o;
				run_case(be, c, k, &a);
				run_case(ref, c, k, &o);
				worst = fmax(worst, compare(&a, &o));
				free_result(&a), free_result(&o);
			}
			print_message("%-24s %-4s %d thr %2d shapes  max err "
			    "%.1e  tol %.0e  %s\n", vlm_backend_op_name(c->op),
			    be->name, t, c->shapes, worst, tol,
			    worst <= tol ? "ok" : "FAIL");
			failed += !(worst <= tol);
		}
	}
	vlm_threads_set(0);
	assert_int_equal(failed, 0);
}

/* Every op of the table has a case (a new op needs one). */
static void
test_every_op_has_a_case(void **state)
{
	(void)state;
	for (int op = 0; op < VLM_OP_COUNT; op++) {
		int n = 0;
		for (int i = 0; i < NCASES; i++)
			n += cases[i].op == (enum vlm_op)op;
		if (n != 1)
			fail_msg("op %s has %d cases", vlm_backend_op_name(op),
			    n);
	}
	for (int op = 0; op < VLM_OP_COUNT; op++) /* the CPU ones: all */
		assert_true(vlm_backend_has(vlm_backend_get("cpu"), op) &&
		    vlm_backend_has(vlm_backend_get("ref"), op));
	assert_string_equal(vlm_backend_at(0)->name, "cpu");
}

/* The memory verbs: a round trip, memset, copy, sync. */
static void
test_memory(void **state)
{
	(void)state;
	for (int b = 0; vlm_backend_at(b); b++) {
		const struct vlm_backend *be = vlm_backend_at(b);
		float h[37], g[37];
		float *d = be->alloc(sizeof(h)), *e = be->alloc(sizeof(h));
		assert_non_null(d), assert_non_null(e);
		be->download(g, d, sizeof(g)); /* alloc zero-fills */
		for (int i = 0; i < 37; i++)
			assert_true(g[i] == 0);
		for (int i = 0; i < 37; i++)
			h[i] = i * 0.5f - 3;
		be->upload(d, h, sizeof(h));
		be->copy(e, d, sizeof(h));
		be->memset(d + 5, 0, 7 * sizeof(float));
		be->download(g, e, sizeof(g));
		assert_memory_equal(g, h, sizeof(h));
		be->download(g, d, sizeof(g));
		for (int i = 0; i < 37; i++)
			assert_true(g[i] == (i >= 5 && i < 12 ? 0 : h[i]));
		assert_int_equal(be->sync(), 0);
		be->free(d), be->free(e);
	}
}

/* A table without an op is refused by name, never run. */
static void
test_missing_op(void **state)
{
	struct vlm_backend t = *vlm_backend_get("cpu");
	const enum vlm_op ops[] = { VLM_OP_linear_fwd, VLM_OP_linear_bwd };
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_run *r;

	(void)state;
	t.name = "partial";
	t.linear_bwd = NULL;
	assert_int_equal(vlm_backend_check(&t, ops, 1), 0);
	assert_int_equal(vlm_backend_check(&t, ops, 2), -1);
	assert_string_equal(vlm_errmsg(),
	    "backend 'partial' has no op 'linear_bwd'");
	tiny_grad_config(&c);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	r = vlm_run_new_on(&t, &m, 2, 2, 0); /* inference needs no bwd */
	assert_non_null(r);
	vlm_run_free(r);
	assert_null(vlm_run_new_on(&t, &m, 2, 2, 1));
	assert_string_equal(vlm_errmsg(),
	    "backend 'partial' has no op 'linear_bwd'");
	t.moe_route_fwd = NULL;
	assert_null(vlm_run_new_on(&t, &m, 2, 2, 0)); /* tiny-moe routes */
	assert_string_equal(vlm_errmsg(),
	    "backend 'partial' has no op 'moe_route_fwd'");
	setenv("VLM_BACKEND", "nosuch", 1);
	assert_null(vlm_run_new(&m, 2, 2, 0));
	assert_non_null(strstr(vlm_errmsg(), "unknown backend 'nosuch'"));
	unsetenv("VLM_BACKEND");
	vlm_model_release(&m);
}

/* Loss and gradient of one training step of model c on backend be. */
static void
train_step(const char *be, const struct vlm_config *c, float *loss,
    float *grad)
{
	struct vlm_model m;
	struct vlm_run *r;
	struct vlm_loss L;
	int B = 5, S = c->image_size, T = c->context;
	struct vlm_rng g;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));

	vlm_rng_seed(&g, 7);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)vlm_rng_uniform(&g) - 0.5f;
	for (int b = 0; b < B; b++) { /* lengths 2..6: padded rows */
		for (int t = 0; t < 1 + b % 5; t++)
			ids[b * T + t] = 1 + (int)vlm_rng_below(&g,
			    c->vocab - 2);
		ids[b * T + 1 + b % 5] = c->vocab - 1;
	}
	assert_int_equal(vlm_model_init(&m, c), 0);
	vlm_model_randomize(&m, 3);
	r = vlm_run_new_on(vlm_backend_get(be), &m, B, B, 1);
	assert_non_null(r);
	vlm_run_seed(r, 11);
	assert_int_equal(vlm_forward(r, &m, px, ids), 0);
	assert_int_equal(vlm_run_loss(r, &m, &L), 0);
	assert_int_equal(vlm_backward(r, &m, grad), 0);
	*loss = L.total;
	vlm_run_free(r);
	vlm_model_release(&m);
	free(px), free(ids);
}

/* Whole steps agree across backends: MoE with drops, TokenLearner, one
 * tower with modality experts, MAP pooling. */
static void
test_train_step_backends(void **state)
{
	struct vlm_config c;

	(void)state;
	for (int v = 0; v < 3; v++) {
		tiny_grad_config(&c);
		c.moe.cf_train = 0.5f, c.moe.min_capacity = 1; /* drops */
		if (v == 1) {
			c.tl.after = 0, c.tl.tokens = 3, c.tl.hidden = 5;
			c.vision.pool = VLM_POOL_MAP;
		}
		if (v == 2) {
			c.family = VLM_ONE_TOWER;
			c.moe.modality_experts = 1;
			c.text.pool = VLM_POOL_GAP;
		}
		struct vlm_model m;
		assert_int_equal(vlm_model_init(&m, &c), 0);
		int64_t n = m.nfloats;
		vlm_model_release(&m);
		float *g[2] = { malloc(n * 4), malloc(n * 4) }, L[2];
		train_step("cpu", &c, &L[0], g[0]);
		train_step("ref", &c, &L[1], g[1]);
		double el = fabs(L[0] - L[1]) / fabs(L[1]);
		double eg = rel_err(g[0], g[1], n);
		print_message("train step variant %d: loss %.6f cpu / ref rel "
		    "err %.1e, gradient %.1e\n", v, L[1], el, eg);
		assert_true(el < 1e-5 && eg < 1e-4);
		free(g[0]), free(g[1]);
	}
}

/* The cpu table counting its linear backwards and the weight
 * gradients among them. */
static int nlinear, ndw;

static void
count_linear_bwd(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT)
{
	nlinear++;
	ndw += dw != NULL;
	vlm_linear_bwd_cpu(dx, dw, db, dy, x, w, N, IN, OUT);
}

/* Gradient of one step of model c with the parameters nograd marks
 * (NULL: none) left out. */
static void
freeze_step(const struct vlm_config *c, const uint8_t *nograd, float *grad)
{
	struct vlm_backend counting = *vlm_backend_get("cpu");
	struct vlm_model m;
	struct vlm_run *r;
	int B = 4, S = c->image_size, T = c->context;
	struct vlm_rng g;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));

	vlm_rng_seed(&g, 9);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)vlm_rng_uniform(&g) - 0.5f;
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < 2 + b; t++)
			ids[b * T + t] = 1 + (int)vlm_rng_below(&g,
			    c->vocab - 2);
		ids[b * T + 2 + b] = c->vocab - 1;
	}
	assert_int_equal(vlm_model_init(&m, c), 0);
	vlm_model_randomize(&m, 5);
	counting.linear_bwd = count_linear_bwd;
	assert_non_null(r = vlm_run_new_on(&counting, &m, B, B, 1));
	assert_int_equal(vlm_run_freeze(r, &m, nograd), 0);
	nlinear = ndw = 0;
	vlm_run_seed(r, 3);
	assert_int_equal(vlm_forward(r, &m, px, ids), 0);
	assert_int_equal(vlm_run_loss(r, &m, NULL), 0);
	assert_int_equal(vlm_backward(r, &m, grad), 0);
	vlm_run_free(r);
	vlm_model_release(&m);
	free(px), free(ids);
}

/* Frozen parameters get exactly 0, every other one exactly the
 * gradient of the full backward: locked towers, a frozen bottom, one
 * frozen layer in the middle, every other parameter. */
static void
test_freeze(void **state)
{
	struct vlm_config c;
	struct vlm_model m;

	(void)state;
	for (int v = 0; v < 3; v++)
	for (int mask = 0; mask < 5; mask++) {
		tiny_grad_config(&c);
		c.vision.layers = c.text.layers = 3;
		c.family = v == 2 ? VLM_ONE_TOWER : VLM_TWO_TOWER;
		if (v >= 1) { /* a cut after block 1, its own stack above */
			c.tl.after = 1, c.tl.tokens = 3, c.tl.hidden = 5;
			c.vision.pool = VLM_POOL_MAP;
		}
		if (vlm_model_init(&m, &c) < 0)
			fail_msg("%s", vlm_errmsg());
		uint8_t *ng = calloc(m.nparams, 1);
		for (int i = 0; i < m.nparams; i++) {
			const char *n = m.params[i].name;
			int vis = strncmp(n, "visual.", 7) == 0;
			int b0 = strstr(n, "resblocks.0.") != NULL;
			int b1 = strstr(n, "resblocks.1.") != NULL;
			int top = strstr(n, "resblocks") ||
			    strstr(n, "ln_post") || strstr(n, "ln_final") ||
			    strstr(n, "proj") || strstr(n, "logit_scale") ||
			    strstr(n, "map") || strstr(n, "token_learner");
			ng[i] = mask == 0 ? vis : mask == 1 ? !vis :
			    mask == 2 ? !top || b0 : mask == 3 ? b1 : i % 2;
		}
		int64_t n = m.nfloats;
		float *full = malloc(n * 4), *part = malloc(n * 4);
		freeze_step(&c, NULL, full);
		int nl = nlinear, nw = ndw;
		freeze_step(&c, ng, part);
		int off = 0, diff = 0;
		for (int i = 0; i < m.nparams; i++) {
			const struct vlm_param *p = &m.params[i];
			for (int64_t j = 0; j < p->n; j++) {
				float want = ng[i] ? 0 : full[p->off + j];
				off += ng[i] && part[p->off + j] != 0;
				diff += !ng[i] && part[p->off + j] != want;
			}
		}
		print_message("freeze variant %d mask %d: %d frozen values "
		    "non-zero, %d others differ; linear backwards %d -> %d, "
		    "weight gradients %d -> %d\n", v, mask, off, diff, nl,
		    nlinear, nw, ndw);
		assert_int_equal(off, 0);
		assert_int_equal(diff, 0);
		assert_true(ndw < nw);
		/* a locked tower of its own is not differentiated at all */
		assert_true(v == 2 || mask > 1 || nlinear < nl);
		free(full), free(part), free(ng);
		vlm_model_release(&m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_op_has_a_case),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_missing_op),
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_train_step_backends),
		cmocka_unit_test(test_freeze),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
