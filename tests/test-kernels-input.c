/*
 * test-kernels-input.c - the input and pooling kernels: patchify (against
 * a direct stride-p convolution and OpenCLIP's own activations), token,
 * position and class-token embeddings, token/mean/MAP pooling and the
 * TokenLearner. Fast versions against the plain ones; every backward
 * against central differences of a double forward or, for the linear
 * maps, the adjoint identity <f(x), r> = <x, f^T(r)>.
 */
#include "fdcheck.h"
#include "kernels.h"

static double
dot_fd(const float *a, const float *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

static float *
randn_alloc(size_t n, double scale, struct vlm_rng *r)
{
	float *a = malloc((n ? n : 1) * sizeof(float));

	assert_non_null(a);
	fill_randn(a, n, scale, r);
	return a;
}

/* ---- patchify --------------------------------------------------------- */

/* Output d of a stride-p convolution at patch q of image b, in double. */
static double
conv_at(const float *img, const float *w, int b, int q, int d, int ch, int H,
    int W, int p)
{
	int y0 = q / (W / p) * p, x0 = q % (W / p) * p;
	double s = 0;

	for (int c = 0; c < ch; c++)
		for (int i = 0; i < p; i++)
			for (int j = 0; j < p; j++)
				s += (double)w[((d * ch + c) * p + i) * p + j]
				    * img[((b * ch + c) * H + y0 + i) * W + x0
				    + j];
	return s;
}

static void
test_patchify_conv(void **state)
{
	int B = 2, ch = 3, H = 12, W = 8, p = 4, D = 5;
	int P = (H / p) * (W / p), R = ch * p * p;
	struct vlm_rng r;
	float *img, *w, *pat, *dimg, *base;
	double e = 0, m = 0;

	(void)state;
	vlm_rng_seed(&r, 1);
	img = randn_alloc(B * ch * H * W, 1, &r);
	w = randn_alloc(D * R, 1, &r); /* (D,ch,p,p) */
	pat = malloc(B * P * R * 4);
	vlm_patchify_fwd_ref(pat, img, B, ch, H, W, p);
	for (int b = 0; b < B; b++)
		for (int q = 0; q < P; q++)
			for (int d = 0; d < D; d++) {
				double conv = conv_at(img, w, b, q, d, ch, H, W,
				    p), lin = 0;
				for (int k = 0; k < R; k++) /* w as (D,R) */
					lin += (double)pat[(b * P + q) * R + k]
					    * w[d * R + k];
				e = fmax(e, fabs(conv - lin));
				m = fmax(m, fabs(conv));
			}
	print_message("patchify @ conv1 vs convolution: rel err %.2e\n", e / m);
	assert_true(e / m < 1e-6);
	/* backward: the adjoint, accumulated onto a base */
	dimg = randn_alloc(B * ch * H * W, 1, &r);
	base = malloc(B * ch * H * W * 4);
	memcpy(base, dimg, B * ch * H * W * 4);
	vlm_patchify_bwd_ref(dimg, pat, B, ch, H, W, p);
	for (int i = 0; i < B * ch * H * W; i++)
		assert_true(dimg[i] == base[i] + img[i]); /* a permutation */
	free(img); free(w); free(pat); free(dimg); free(base);
}

/* Image inputs through patchify, conv1, class token, positions, ln_pre. */
static void
test_openclip_image_embed(void **state)
{
	const char *wpath =
	    fixture("openclip-tiny/weights.openclip.safetensors");
	struct vlm_st st;
	struct vlm_tensor img, want;
	const struct vlm_tensor *cw, *cls, *pos, *lw, *lb;
	int B = 4, P = 16, D = 64, R = 192, T = 17;
	float *pat, *x, *xc;
	double *got;

	(void)state;
	NEED_FIXTURE(wpath);
	assert_int_equal(vlm_st_load(&st, wpath), 0);
	assert_int_equal(vlm_npy_load(fixture("openclip-tiny/image_input.npy"),
	    &img), 0);
	assert_int_equal(vlm_npy_load(
	    fixture("openclip-tiny/inter_vis_after_ln_pre.npy"), &want), 0);
	cw = vlm_st_get(&st, "visual.conv1.weight");
	cls = vlm_st_get(&st, "visual.class_embedding");
	pos = vlm_st_get(&st, "visual.positional_embedding");
	lw = vlm_st_get(&st, "visual.ln_pre.weight");
	lb = vlm_st_get(&st, "visual.ln_pre.bias");
	assert_true(cw && cls && pos && lw && lb);
	assert_int_equal(cw->dtype, VLM_DTYPE_F32);
	pat = malloc(B * P * R * 4);
	x = malloc(B * P * D * 4);
	xc = malloc(B * T * D * 4);
	got = malloc(B * T * D * 8);
	vlm_patchify_fwd_ref(pat, img.data, B, 3, 32, 32, 8);
	for (int i = 0; i < B * P; i++) /* conv1 as a linear layer */
		for (int d = 0; d < D; d++) {
			double s = 0;
			for (int k = 0; k < R; k++)
				s += (double)pat[i * R + k] *
				    ((const float *)cw->data)[d * R + k];
			x[i * D + d] = (float)s;
		}
	vlm_cls_prepend_fwd_ref(xc, x, cls->data, B, P, D);
	vlm_posembed_fwd_ref(xc, xc, pos->data, B, T, D);
	for (int i = 0; i < B * T; i++) { /* ln_pre in double */
		double m = 0, v = 0;
		for (int d = 0; d < D; d++)
			m += xc[i * D + d] / (double)D;
		for (int d = 0; d < D; d++)
			v += (xc[i * D + d] - m) * (xc[i * D + d] - m) / D;
		for (int d = 0; d < D; d++)
			got[i * D + d] = (xc[i * D + d] - m) / sqrt(v + 1e-5) *
			    ((const float *)lw->data)[d] +
			    ((const float *)lb->data)[d];
	}
	check_close("openclip ln_pre(embed(image))", want.data, got,
	    B * T * D, 1e-5);
	free(pat); free(x); free(xc); free(got); free(img.data);
	free(want.data);
	vlm_st_release(&st);
}

/* ---- token, position and class embeddings -------------------------- */

static void
test_embeddings(void **state)
{
	enum { N = 11, V = 7, C = 5, B = 3, T = 4, P = 3 };
	static const int32_t ids[N] = { 3, 0, 6, 3, 3, 1, 6, 0, 2, 5, 3 };
	struct vlm_rng r;
	float *tab, *out = malloc(N * C * 4), *dt, *base = malloc(V * C * 4);
	float *x, *pos, *o = malloc(B * T * C * 4), *dx, *dp, *oc, *dc;

	(void)state;
	vlm_rng_seed(&r, 2);
	tab = randn_alloc(V * C, 1, &r);
	dt = randn_alloc(V * C, 1, &r);
	memcpy(base, dt, V * C * 4);
	vlm_embed_fwd_ref(out, ids, tab, N, V, C);
	for (int n = 0; n < N; n++)
		assert_memory_equal(out + n * C, tab + ids[n] * C, C * 4);
	vlm_embed_bwd_ref(dt, out, ids, N, V, C); /* dout = out */
	for (int v = 0; v < V; v++)
		for (int c = 0; c < C; c++) {
			double want = base[v * C + c];
			for (int n = 0; n < N; n++)
				want += ids[n] == v ? out[n * C + c] : 0;
			assert_float_equal(dt[v * C + c], want, 1e-5);
		}
	/* position embedding: out = x + pos; dpos sums the batch */
	x = randn_alloc(B * T * C, 1, &r);
	pos = randn_alloc(T * C, 1, &r);
	dx = calloc(B * T * C, 4);
	dp = calloc(T * C, 4);
	vlm_posembed_fwd_ref(o, x, pos, B, T, C);
	for (int i = 0; i < B * T * C; i++)
		assert_true(o[i] == x[i] + pos[i % (T * C)]);
	vlm_posembed_bwd_ref(dx, dp, x, B, T, C);
	vlm_posembed_bwd_ref(NULL, dp, x, B, T, C);
	for (int i = 0; i < T * C; i++)
		assert_float_equal(dp[i], 2 * ((double)x[i] + x[T * C + i] +
		    x[2 * T * C + i]), 1e-5);
	assert_memory_equal(dx, x, B * T * C * 4);
	/* class token: row 0 of each example, patches after it */
	oc = malloc(B * (P + 1) * C * 4);
	dc = calloc(C, 4);
	memset(dx, 0, B * T * C * 4);
	vlm_cls_prepend_fwd_ref(oc, x, pos, B, P, C);
	for (int b = 0; b < B; b++) {
		assert_memory_equal(oc + b * (P + 1) * C, pos, C * 4);
		assert_memory_equal(oc + (b * (P + 1) + 1) * C, x + b * P * C,
		    P * C * 4);
	}
	vlm_cls_prepend_bwd_ref(dx, dc, oc, B, P, C);
	assert_memory_equal(dx, x, B * P * C * 4);
	for (int c = 0; c < C; c++)
		assert_float_equal(dc[c], 3 * (double)pos[c], 1e-5);
	free(tab); free(out); free(dt); free(base); free(x); free(pos);
	free(o); free(dx); free(dp); free(oc); free(dc);
}

/* ---- pooling ---------------------------------------------------------- */

static void
test_pool_token_mean(void **state)
{
	enum { B = 3, T = 6, C = 4 };
	static const int32_t ids[B * T] = {
		49406, 320, 49407, 0, 0, 0,
		49406, 49407, 49407, 0, 0, 0, /* the first EOT wins */
		49406, 1, 2, 3, 4, 49407,
	};
	static const int32_t len[B] = { 3, 1, 6 };
	int32_t pos[B];
	struct vlm_rng r;
	float *x, *o = malloc(B * C * 4), *d, *dx = calloc(B * T * C, 4);

	(void)state;
	vlm_eot_index(pos, ids, B, T);
	assert_int_equal(pos[0], 2);
	assert_int_equal(pos[1], 1);
	assert_int_equal(pos[2], 5);
	vlm_rng_seed(&r, 3);
	x = randn_alloc(B * T * C, 1, &r);
	d = randn_alloc(B * C, 1, &r);
	vlm_pool_token_fwd_ref(o, x, pos, B, T, C);
	for (int b = 0; b < B; b++)
		assert_memory_equal(o + b * C, x + (b * T + pos[b]) * C, C * 4);
	vlm_pool_token_fwd_ref(o, x, NULL, B, T, C); /* class token */
	for (int b = 0; b < B; b++)
		assert_memory_equal(o + b * C, x + b * T * C, C * 4);
	vlm_pool_token_bwd_ref(dx, d, pos, B, T, C);
	vlm_pool_token_fwd_ref(o, x, pos, B, T, C);
	assert_float_equal(dot_fd(o, d, B * C), dot_fd(x, dx, B * T * C),
	    1e-5);
	/* mean over the first len[b] tokens, and its adjoint */
	memset(dx, 0, B * T * C * 4);
	vlm_pool_mean_fwd_ref(o, x, len, B, T, C);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < C; c++) {
			double m = 0;
			for (int t = 0; t < len[b]; t++)
				m += x[(b * T + t) * C + c] / len[b];
			assert_float_equal(o[b * C + c], m, 1e-6);
		}
	vlm_pool_mean_bwd_ref(dx, d, len, B, T, C);
	assert_float_equal(dot_fd(o, d, B * C), dot_fd(x, dx, B * T * C),
	    1e-5);
	assert_true(dx[(0 * T + 4) * C] == 0); /* beyond len: no gradient */
	free(x); free(o); free(d); free(dx);
}

struct map {
	int B, T, C, H;
	const int32_t *len;
	double *q, *k, *v;     /* differentiated */
	const float *dout;
	double *out;           /* (B,C) the forward's result */
};

/* sum dout . MAP(q, k, v) in double. */
static double
map_loss(void *arg)
{
	struct map *m = arg;
	int hd = m->C / m->H;
	double L = 0, sc[64];

	for (int b = 0; b < m->B; b++)
		for (int h = 0; h < m->H; h++) {
			int n = m->len[b];
			double max = -INFINITY, sum = 0;
			for (int t = 0; t < n; t++) {
				const double *kt = m->k + (b * m->T + t) *
				    m->C + h * hd;
				sc[t] = 0;
				for (int i = 0; i < hd; i++)
					sc[t] += m->q[h * hd + i] * kt[i];
				sc[t] /= sqrt(hd);
				max = fmax(max, sc[t]);
			}
			for (int t = 0; t < n; t++)
				sum += (sc[t] = exp(sc[t] - max));
			for (int i = 0; i < hd; i++) {
				double o = 0;
				for (int t = 0; t < n; t++)
					o += sc[t] / sum * m->v[(b * m->T + t) *
					    m->C + h * hd + i];
				m->out[b * m->C + h * hd + i] = o;
				L += o * m->dout[b * m->C + h * hd + i];
			}
		}
	return L;
}

static void
test_pool_map(void **state)
{
	enum { B = 3, T = 7, C = 6, H = 2 };
	static const int32_t len[B] = { 7, 4, 1 };
	struct vlm_rng r;
	float *q, *k, *v, *d, out[B * C], att[B * H * T];
	float dq[C] = { 0 }, *dk = calloc(B * T * C, 4);
	float *dv = calloc(B * T * C, 4);
	double gq[C], *gk = malloc(B * T * C * 8), *gv = malloc(B * T * C * 8);
	double mout[B * C];
	struct map m = { B, T, C, H, len, NULL, NULL, NULL, NULL, mout };

	(void)state;
	vlm_rng_seed(&r, 4);
	q = randn_alloc(C, 1, &r);
	k = randn_alloc(B * T * C, 1, &r);
	v = randn_alloc(B * T * C, 1, &r);
	d = randn_alloc(B * C, 1, &r);
	m.q = dup_double(q, C);
	m.k = dup_double(k, B * T * C);
	m.v = dup_double(v, B * T * C);
	m.dout = d;
	vlm_pool_map_fwd_ref(out, att, q, k, v, len, B, T, C, H);
	map_loss(&m);
	check_close("MAP forward", out, m.out, B * C, 1e-6);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			const float *a = att + (b * H + h) * T;
			double s = 0;
			for (int t = 0; t < T; t++) {
				s += a[t];
				if (t >= len[b])
					assert_true(a[t] == 0);
			}
			assert_float_equal(s, 1, 1e-6);
		}
	vlm_pool_map_bwd_ref(dq, dk, dv, d, att, q, k, v, len, B, T, C, H);
	fd_grad(gq, m.q, C, map_loss, &m);
	fd_grad(gk, m.k, B * T * C, map_loss, &m);
	fd_grad(gv, m.v, B * T * C, map_loss, &m);
	check_close("MAP dq", dq, gq, C, 1e-4);
	check_close("MAP dk", dk, gk, B * T * C, 1e-4);
	check_close("MAP dv", dv, gv, B * T * C, 1e-4);
	free(q); free(k); free(v); free(d); free(dk); free(dv); free(gk);
	free(gv); free(m.q); free(m.k); free(m.v);
}

/* ---- TokenLearner ----------------------------------------------------- */

enum { TB = 2, TN = 9, TD = 7, TH = 5, TM = 3 };

/* Parameters in one array: x, ln_w, ln_b, w1, b1, w2, b2. */
#define TL_X 0
#define TL_LNW (TL_X + TB * TN * TD)
#define TL_LNB (TL_LNW + TD)
#define TL_W1 (TL_LNB + TD)
#define TL_B1 (TL_W1 + TH * TD)
#define TL_W2 (TL_B1 + TH)
#define TL_B2 (TL_W2 + TM * TH)
#define TL_ALL (TL_B2 + TM)

struct tl {
	double *th;            /* TL_ALL values: differentiated */
	const float *dout;     /* (B,M,D) */
	double out[TB * TM * TD];
};

/* sum dout . TokenLearner(x) in double, written from the spec. */
static double
tl_loss(void *arg)
{
	struct tl *t = arg;
	const double *th = t->th, *x = th + TL_X;
	double a[TN][TM], L = 0;

	for (int b = 0; b < TB; b++) {
		for (int n = 0; n < TN; n++) {
			const double *xr = x + (b * TN + n) * TD;
			double m = 0, v = 0, xn[TD], h[TH];
			for (int d = 0; d < TD; d++)
				m += xr[d] / TD;
			for (int d = 0; d < TD; d++)
				v += (xr[d] - m) * (xr[d] - m) / TD;
			for (int d = 0; d < TD; d++)
				xn[d] = (xr[d] - m) / sqrt(v + 1e-5) *
				    th[TL_LNW + d] + th[TL_LNB + d];
			for (int k = 0; k < TH; k++) {
				double s = th[TL_B1 + k];
				for (int d = 0; d < TD; d++)
					s += th[TL_W1 + k * TD + d] * xn[d];
				h[k] = 0.5 * s * (1 + erf(s / sqrt(2)));
			}
			for (int j = 0; j < TM; j++) {
				a[n][j] = th[TL_B2 + j];
				for (int k = 0; k < TH; k++)
					a[n][j] += th[TL_W2 + j * TH + k] *
					    h[k];
			}
		}
		for (int j = 0; j < TM; j++) {
			double sum = 0;
			for (int n = 0; n < TN; n++)
				sum += exp(a[n][j]);
			for (int d = 0; d < TD; d++) {
				double o = 0;
				for (int n = 0; n < TN; n++)
					o += exp(a[n][j]) / sum *
					    x[(b * TN + n) * TD + d];
				t->out[(b * TM + j) * TD + d] = o;
				L += o * t->dout[(b * TM + j) * TD + d];
			}
		}
	}
	return L;
}

/* Forward and backward with one version; grads in TL_ALL layout. */
static void
tl_run(int fast, float *out, float *grad, const float *th, const float *dout)
{
	size_t na = vlm_token_learner_act_floats(TB, TN, TD, TH, TM);
	float *act = malloc(na * 4);
	const float *p = th;
	float *g = grad;

	memset(grad, 0, TL_ALL * 4);
	(fast ? vlm_token_learner_fwd_cpu : vlm_token_learner_fwd_ref)(out,
	    act, p + TL_X, p + TL_LNW, p + TL_LNB, p + TL_W1, p + TL_B1,
	    p + TL_W2, p + TL_B2, TB, TN, TD, TH, TM);
	(fast ? vlm_token_learner_bwd_cpu : vlm_token_learner_bwd_ref)(
	    g + TL_X, g + TL_LNW, g + TL_LNB, g + TL_W1, g + TL_B1, g + TL_W2,
	    g + TL_B2, dout, act, p + TL_X, p + TL_LNW, p + TL_W1, p + TL_W2,
	    TB, TN, TD, TH, TM);
	free(act);
}

static void
test_token_learner(void **state)
{
	static const struct { const char *name; int off, n; } part[] = {
		{ "dx", TL_X, TB * TN * TD }, { "dln_w", TL_LNW, TD },
		{ "dln_b", TL_LNB, TD }, { "dw1", TL_W1, TH * TD },
		{ "db1", TL_B1, TH }, { "dw2", TL_W2, TM * TH },
	};
	struct vlm_rng r;
	float th[TL_ALL], dout[TB * TM * TD], out[2][TB * TM * TD];
	float grad[2][TL_ALL];
	double fd[TL_ALL];
	struct tl t;
	char what[64];

	(void)state;
	vlm_rng_seed(&r, 5);
	fill_randn(th, TL_ALL, 1, &r);
	for (int d = 0; d < TD; d++)
		th[TL_LNW + d] = 1 + 0.3f * th[TL_LNW + d];
	fill_randn(dout, TB * TM * TD, 1, &r);
	tl_run(0, out[0], grad[0], th, dout);
	tl_run(1, out[1], grad[1], th, dout);
	check_closef("TokenLearner out cpu/ref", out[1], out[0],
	    TB * TM * TD, 1e-5);
	check_closef("TokenLearner grads cpu/ref", grad[1], grad[0], TL_ALL,
	    1e-5);
	t.th = dup_double(th, TL_ALL);
	t.dout = dout;
	tl_loss(&t);
	check_close("TokenLearner out vs double", out[0], t.out, TB * TM * TD,
	    1e-5);
	fd_grad(fd, t.th, TL_ALL, tl_loss, &t);
	/* softmax over tokens ignores a per-m shift: b2 gets no gradient */
	for (int j = 0; j < TM; j++) {
		assert_true(fabs(fd[TL_B2 + j]) < 1e-8);
		assert_true(fabsf(grad[0][TL_B2 + j]) < 1e-5);
		assert_true(fabsf(grad[1][TL_B2 + j]) < 1e-5);
		fd[TL_B2 + j] = grad[0][TL_B2 + j] = grad[1][TL_B2 + j] = 0;
	}
	for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++) {
		snprintf(what, sizeof(what), "TokenLearner %s", part[i].name);
		check_close(what, grad[0] + part[i].off, fd + part[i].off,
		    part[i].n, 1e-4);
		snprintf(what, sizeof(what), "TokenLearner %s (cpu)",
		    part[i].name);
		check_close(what, grad[1] + part[i].off, fd + part[i].off,
		    part[i].n, 1e-4);
	}
	free(t.th);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patchify_conv),
		cmocka_unit_test(test_openclip_image_embed),
		cmocka_unit_test(test_embeddings),
		cmocka_unit_test(test_pool_token_mean),
		cmocka_unit_test(test_pool_map),
		cmocka_unit_test(test_token_learner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
