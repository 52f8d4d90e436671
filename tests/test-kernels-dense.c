/*
 * test-kernels-dense.c - the dense transformer kernels and the thread
 * pool. Every _cpu is checked against its _ref on odd sizes; every _ref
 * forward against a double-precision forward written here from the
 * definitions; every backward against central differences of that
 * double forward (h = 1e-6, so the difference quotient is good to ~1e-9
 * and the float gradient must agree to 1e-4). Also: attention masks, the
 * accumulate convention, bit-identical results for 1, 2 and 3 threads,
 * AdamW against PyTorch's formula evaluated in double.
 */
#include <math.h>

#include "testutil.h"
#include "kernels.h"

#define FD_H 1e-6
#define FD_TOL 1e-4	/* float analytic gradient vs double differences */
#define PAR_TOL 2e-5	/* _cpu vs _ref, _ref vs the double forward */

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* Uniform in [-1, 1) (xorshift64*). */
static float
frand(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (float)((rng_state * 0x2545f4914f6cdd1dull >> 40) /
	    (double)(1 << 23)) - 1.0f;
}

static float *
randv(int64_t n, float scale)
{
	float *x = malloc((size_t)n * sizeof(*x) + 1);

	assert_non_null(x);
	for (int64_t i = 0; i < n; i++)
		x[i] = scale * frand();
	return x;
}

static float *
copyv(const float *x, int64_t n)
{
	float *y = malloc((size_t)n * sizeof(*y) + 1);

	assert_non_null(y);
	memcpy(y, x, (size_t)n * sizeof(*y));
	return y;
}

static double *
dbl(const float *x, int64_t n)
{
	double *y = malloc((size_t)n * sizeof(*y) + 1);

	assert_non_null(y);
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i];
	return y;
}

/* b - a, elementwise: what a backward added to a buffer that held a. */
static float *
added(const float *after, const float *before, int64_t n)
{
	float *d = malloc((size_t)n * sizeof(*d) + 1);

	assert_non_null(d);
	for (int64_t i = 0; i < n; i++)
		d[i] = after[i] - before[i];
	return d;
}

static void
near(const char *what, const float *got, const float *want, int64_t n,
    double tol)
{
	double e = rel_err(got, want, (size_t)n);

	if (!(e <= tol))
		print_error("%s: relative error %.3g > %.3g\n", what, e, tol);
	assert_true(e <= tol);
}

/* near() against a double array. */
static void
near_d(const char *what, const float *got, const double *want, int64_t n,
    double tol)
{
	float *w = malloc((size_t)n * sizeof(*w) + 1);

	assert_non_null(w);
	for (int64_t i = 0; i < n; i++)
		w[i] = (float)want[i];
	near(what, got, w, n, tol);
	free(w);
}

static double
dotd(const double *a, const double *b, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/*
 * Central differences of the scalar f(ctx) with respect to x (n), which
 * f reads; checks the analytic gradient g (float) against them.
 */
static void
fd_check(const char *what, double (*f)(void *), void *ctx, double *x,
    int64_t n, const float *g)
{
	double md = 0, mf = 0;

	for (int64_t i = 0; i < n; i++) {
		double x0 = x[i], fp, fm, d;
		x[i] = x0 + FD_H;
		fp = f(ctx);
		x[i] = x0 - FD_H;
		fm = f(ctx);
		x[i] = x0;
		d = (fp - fm) / (2 * FD_H);
		md = fmax(md, fabs(d - g[i]));
		mf = fmax(mf, fabs(d));
	}
	if (!(md <= FD_TOL * mf))
		print_error("%s: gradient error %.3g (max %.3g)\n", what, md,
		    mf);
	assert_true(md <= FD_TOL * mf);
	assert_true(mf > 0);
}

/* ---- double-precision forwards, from the definitions ------------------- */

static void
lin_d(double *y, const double *x, const double *w, const double *b, int N,
    int IN, int OUT)
{
	for (int n = 0; n < N; n++)
		for (int o = 0; o < OUT; o++)
			y[n * OUT + o] = (b ? b[o] : 0) +
			    dotd(x + n * IN, w + o * IN, IN);
}

static void
ln_d(double *y, const double *x, const double *w, const double *b, int N,
    int C)
{
	for (int n = 0; n < N; n++) {
		const double *r = x + n * C;
		double m = 0, v = 0;
		for (int c = 0; c < C; c++)
			m += r[c] / C;
		for (int c = 0; c < C; c++)
			v += (r[c] - m) * (r[c] - m) / C;
		for (int c = 0; c < C; c++)
			y[n * C + c] = (r[c] - m) / sqrt(v + 1e-5) * w[c] +
			    b[c];
	}
}

static double
gelu_d(double x)
{
	return x * 0.5 * erfc(-x / sqrt(2.0));
}

static double
quickgelu_d(double x)
{
	return x / (1 + exp(-1.702 * x));
}

static void
softmax_d(double *y, const double *x, int N, int C)
{
	for (int n = 0; n < N; n++) {
		double mx = -INFINITY, s = 0;
		for (int c = 0; c < C; c++)
			mx = fmax(mx, x[n * C + c]);
		for (int c = 0; c < C; c++)
			s += exp(x[n * C + c] - mx);
		for (int c = 0; c < C; c++)
			y[n * C + c] = exp(x[n * C + c] - mx) / s;
	}
}

/* Attention with an explicit -inf mask, one query at a time. */
static void
attn_d(double *out, const double *qkv, const int32_t *len, int causal,
    int B, int T, int C, int H)
{
	int hs = C / H;
	double *s = malloc(T * sizeof(*s));

	for (int b = 0; b < B; b++)
	for (int h = 0; h < H; h++)
	for (int i = 0; i < T; i++) {
		const double *q = qkv + (b * T + i) * 3 * C + h * hs;
		double mx = -INFINITY, z = 0;
		for (int j = 0; j < T; j++) {
			const double *k = qkv + (b * T + j) * 3 * C + C +
			    h * hs;
			int masked = (causal && j > i) || (len && j >= len[b]);
			s[j] = masked ? -INFINITY : dotd(q, k, hs) / sqrt(hs);
			mx = fmax(mx, s[j]);
		}
		for (int j = 0; j < T; j++)
			z += exp(s[j] - mx);
		for (int d = 0; d < hs; d++) {
			double o = 0;
			for (int j = 0; j < T; j++)
				o += exp(s[j] - mx) / z * qkv[(b * T + j) * 3 *
				    C + 2 * C + h * hs + d];
			out[(b * T + i) * C + h * hs + d] = o;
		}
	}
	free(s);
}

static void
l2_d(double *y, const double *x, int N, int C)
{
	for (int n = 0; n < N; n++) {
		double s = sqrt(dotd(x + n * C, x + n * C, C));
		for (int c = 0; c < C; c++)
			y[n * C + c] = x[n * C + c] / fmax(s, 1e-12);
	}
}

/* OpenCLIP ClipLoss: (CE(logits, diag) + CE(logits^T, diag)) / 2. */
static double
clip_d(const double *u, const double *v, double theta, int B, int C)
{
	double t = exp(theta), loss = 0;

	for (int i = 0; i < B; i++) {
		double sr = 0, sc = 0;
		for (int j = 0; j < B; j++) {
			sr += exp(t * dotd(u + i * C, v + j * C, C));
			sc += exp(t * dotd(u + j * C, v + i * C, C));
		}
		loss += log(sr) + log(sc) - 2 * t * dotd(u + i * C, v + i * C,
		    C);
	}
	return loss / (2 * B);
}

/* ---- gemm ------------------------------------------------------------- */

/* Every transpose, strided rows, odd sizes cut into several tiles. */
static void
test_gemm(void **state)
{
	enum { M = 777, N = 593, K = 37, P = 3 };	/* 3 x 2 tiles */
	float *A = randv((M + P) * (K + P), 1);
	float *B = randv((K + P) * (N + P), 1);
	float *C0 = randv(M * (N + P), 1), *C[2];
	double *want = malloc(M * N * sizeof(*want));

	(void)state;
	for (int ta = 0; ta < 2; ta++)
	for (int tb = 0; tb < 2; tb++) {
		int lda = (ta ? M : K) + P, ldb = (tb ? K : N) + P;
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++) {
				double s = 0;
				for (int k = 0; k < K; k++)
					s += (double)(ta ? A[k * lda + i] :
					    A[i * lda + k]) * (tb ?
					    B[j * ldb + k] : B[k * ldb + j]);
				want[i * N + j] = 1.5 * s + 0.5 *
				    C0[i * (N + P) + j];
			}
		for (int k = 0; k < 2; k++) {
			C[k] = copyv(C0, M * (N + P));
			(k ? vlm_gemm_cpu : vlm_gemm_ref)(ta, tb, M, N, K, 1.5f,
			    A, lda, B, ldb, 0.5f, C[k], N + P);
			/* the row padding is left alone; compact the rows */
			for (int i = 0; i < M; i++) {
				assert_memory_equal(C[k] + i * (N + P) + N,
				    C0 + i * (N + P) + N, P * sizeof(float));
				memmove(C[k] + i * N, C[k] + i * (N + P),
				    N * sizeof(float));
			}
		}
		near_d("gemm ref", C[0], want, M * N, PAR_TOL);
		near("gemm cpu", C[1], C[0], M * N, PAR_TOL);
		free(C[0]), free(C[1]);
	}
	free(A), free(B), free(C0), free(want);
}

/* ---- linear ----------------------------------------------------------- */

struct lin {
	double *x, *w, *b, *r, *y;
	int N, IN, OUT;
};

static double
lin_obj(void *p)
{
	struct lin *c = p;

	lin_d(c->y, c->x, c->w, c->b, c->N, c->IN, c->OUT);
	return dotd(c->r, c->y, c->N * c->OUT);
}

static void
test_linear_parity(void **state)
{
	int N = 131, IN = 67, OUT = 259;
	float *x = randv(N * IN, 1), *w = randv(OUT * IN, 0.2f);
	float *b = randv(OUT, 1), *dy = randv(N * OUT, 1);
	float *y1 = randv(N * OUT, 1), *y2 = randv(N * OUT, 1);
	float *g[2][3];
	double *yd = malloc(N * OUT * sizeof(*yd));
	double *xd = dbl(x, N * IN), *wd = dbl(w, OUT * IN), *bd = dbl(b, OUT);

	(void)state;
	for (int nob = 0; nob < 2; nob++) {
		vlm_linear_fwd_ref(y1, x, w, nob ? NULL : b, N, IN, OUT);
		vlm_linear_fwd_cpu(y2, x, w, nob ? NULL : b, N, IN, OUT);
		lin_d(yd, xd, wd, nob ? NULL : bd, N, IN, OUT);
		near_d("linear fwd ref", y1, yd, N * OUT, PAR_TOL);
		near("linear fwd cpu", y2, y1, N * OUT, PAR_TOL);
	}
	g[0][0] = randv(N * IN, 1);
	g[0][1] = randv(OUT * IN, 1);
	g[0][2] = randv(OUT, 1);
	for (int k = 0; k < 3; k++)
		g[1][k] = copyv(g[0][k], k == 0 ? N * IN : k == 1 ? OUT * IN :
		    OUT);
	vlm_linear_bwd_ref(g[0][0], g[0][1], g[0][2], dy, x, w, N, IN, OUT);
	vlm_linear_bwd_cpu(g[1][0], g[1][1], g[1][2], dy, x, w, N, IN, OUT);
	near("linear dx", g[1][0], g[0][0], N * IN, PAR_TOL);
	near("linear dw", g[1][1], g[0][1], OUT * IN, PAR_TOL);
	near("linear db", g[1][2], g[0][2], OUT, PAR_TOL);
	/* NULL outputs are skipped, the others still computed */
	memcpy(y1, g[1][2], OUT * sizeof(*y1));
	vlm_linear_bwd_cpu(NULL, NULL, g[1][2], dy, x, w, N, IN, OUT);
	vlm_linear_bwd_ref(NULL, NULL, y1, dy, x, w, N, IN, OUT);
	near("linear db alone", g[1][2], y1, OUT, PAR_TOL);
	for (int k = 0; k < 3; k++) {
		free(g[0][k]);
		free(g[1][k]);
	}
	free(x), free(w), free(b), free(dy), free(y1), free(y2), free(yd);
	free(xd), free(wd), free(bd);
}

/*
 * The linear forward on w packed once (vlm_linear_pack_cpu) gives one's
 * bits (vlm_linear_fwd_cpu's on w) for 1 to 8 threads; 0 packed floats
 * (no AVX-512, VLM_LINEAR_BLAS=1) only where the GEMM is OpenBLAS's.
 */
static void
packed_same(const float *one, const float *x, const float *w,
    const float *b, int N, int IN, int OUT)
{
	size_t n = vlm_linear_packed_floats(IN, OUT);
	const char *e = getenv("VLM_LINEAR_BLAS");
	float *wk, *y = randv(N * OUT, 1);

	if (!n) {
		assert_true(!__builtin_cpu_supports("avx512f") ||
		    (e && *e == '1'));
		free(y);
		return;
	}
	assert_true(n >= (size_t)IN * OUT && n < (size_t)IN * (OUT + 32));
	assert_non_null(wk = aligned_alloc(64, (n * sizeof(float) + 63) /
	    64 * 64));
	vlm_linear_pack_cpu(wk, w, IN, OUT);
	for (int t = 1; t <= 8; t++) {
		vlm_threads_set(t);
		memset(y, 0xff, sizeof(float) * N * OUT);
		vlm_linear_fwd_packed_cpu(y, x, wk, b, N, IN, OUT);
		assert_memory_equal(y, one, sizeof(float) * N * OUT);
	}
	free(wk), free(y);
}

/*
 * The linear forward on a shape past every block of its AVX-512 GEMM
 * (500 rows > 480, IN 520 > 2 x 256, OUT 1100 > 1024 columns, none a
 * multiple of a panel), then OpenBLAS's tiles (VLM_LINEAR_BLAS=1): near
 * the reference, and bit-identical for 1, 2, 3, 5 and 8 threads.
 */
static void
test_linear_blocks(void **state)
{
	int N = 500, IN = 520, OUT = 1100;
	float *x = randv(N * IN, 1), *w = randv(OUT * IN, 0.05f);
	float *b = randv(OUT, 1), *want = randv(N * OUT, 1);
	float *one = randv(N * OUT, 1), *y = randv(N * OUT, 1);
	static const int threads[] = { 2, 3, 5, 8 };

	(void)state;
	vlm_linear_fwd_ref(want, x, w, b, N, IN, OUT);
	for (int blas = 0; blas < 2; blas++) {
		setenv("VLM_LINEAR_BLAS", blas ? "1" : "0", 1);
		vlm_threads_set(1);
		vlm_linear_fwd_cpu(one, x, w, b, N, IN, OUT);
		near(blas ? "linear tiles" : "linear blocks", one, want,
		    N * OUT, PAR_TOL);
		for (int t = 0; t < 4; t++) {
			vlm_threads_set(threads[t]);
			vlm_linear_fwd_cpu(y, x, w, b, N, IN, OUT);
			assert_memory_equal(y, one, sizeof(float) * N * OUT);
		}
		packed_same(one, x, w, b, N, IN, OUT);
	}
	vlm_linear_fwd_ref(want, x, w, NULL, N, IN, OUT);
	vlm_linear_fwd_cpu(y, x, w, NULL, N, IN, OUT);	/* tiles, no bias */
	near("linear tiles, no bias", y, want, N * OUT, PAR_TOL);
	unsetenv("VLM_LINEAR_BLAS");
	vlm_threads_set(1);
	vlm_linear_fwd_cpu(y, x, w, NULL, N, IN, OUT);
	near("linear blocks, no bias", y, want, N * OUT, PAR_TOL);
	packed_same(y, x, w, NULL, N, IN, OUT);
	vlm_threads_set(0);
	free(x), free(w), free(b), free(want), free(one), free(y);
}

/* The linear forward on shapes narrower than a panel per thread (8
 * threads; 9 to 64 columns, 3 to 30 rows): near the reference, the same
 * for every thread count (a cut with an empty block divided by zero, one
 * under a panel wide computed nothing). */
static void
test_linear_narrow(void **state)
{
	static const int shapes[][3] = { { 5, 3, 40 }, { 20, 17, 33 },
		{ 13, 1, 64 }, { 3, 4, 9 }, { 30, 8, 24 } };

	(void)state;
	for (int s = 0; s < 5; s++) {
		int N = shapes[s][0], IN = shapes[s][1], OUT = shapes[s][2];
		float *x = randv(N * IN, 1), *w = randv(OUT * IN, 0.5f);
		float *b = randv(OUT, 1), *want = randv(N * OUT, 1);
		float *one = randv(N * OUT, 1), *y = randv(N * OUT, 1);
		vlm_linear_fwd_ref(want, x, w, b, N, IN, OUT);
		vlm_threads_set(1);
		vlm_linear_fwd_cpu(one, x, w, b, N, IN, OUT);
		near("linear narrow", one, want, N * OUT, PAR_TOL);
		for (int t = 2; t <= 8; t++) {
			vlm_threads_set(t);
			vlm_linear_fwd_cpu(y, x, w, b, N, IN, OUT);
			assert_memory_equal(y, one, sizeof(float) * N * OUT);
		}
		packed_same(one, x, w, b, N, IN, OUT);
		free(x), free(w), free(b), free(want), free(one), free(y);
	}
	vlm_threads_set(0);
}

static void
test_linear_grad(void **state)
{
	int N = 3, IN = 5, OUT = 4;
	float *x = randv(N * IN, 1), *w = randv(OUT * IN, 1);
	float *b = randv(OUT, 1), *r = randv(N * OUT, 1);
	struct lin c = { dbl(x, N * IN), dbl(w, OUT * IN), dbl(b, OUT),
	    dbl(r, N * OUT), malloc(N * OUT * sizeof(double)), N, IN, OUT };

	(void)state;
	for (int cpu = 0; cpu < 2; cpu++) {
		/* start from nonzero buffers: the backward must add */
		float *dx0 = randv(N * IN, 1), *dw0 = randv(OUT * IN, 1);
		float *db0 = randv(OUT, 1);
		float *dx = copyv(dx0, N * IN), *dw = copyv(dw0, OUT * IN);
		float *db = copyv(db0, OUT), *gx, *gw, *gb;
		(cpu ? vlm_linear_bwd_cpu : vlm_linear_bwd_ref)(dx, dw, db, r,
		    x, w, N, IN, OUT);
		gx = added(dx, dx0, N * IN);
		gw = added(dw, dw0, OUT * IN);
		gb = added(db, db0, OUT);
		fd_check("linear dx", lin_obj, &c, c.x, N * IN, gx);
		fd_check("linear dw", lin_obj, &c, c.w, OUT * IN, gw);
		fd_check("linear db", lin_obj, &c, c.b, OUT, gb);
		free(dx0), free(dw0), free(db0), free(dx), free(dw), free(db);
		free(gx), free(gw), free(gb);
	}
	free(x), free(w), free(b), free(r);
	free(c.x), free(c.w), free(c.b), free(c.r), free(c.y);
}

/* ---- layernorm -------------------------------------------------------- */

struct ln {
	double *x, *w, *b, *r, *y;
	int N, C;
};

static double
ln_obj(void *p)
{
	struct ln *c = p;

	ln_d(c->y, c->x, c->w, c->b, c->N, c->C);
	return dotd(c->r, c->y, c->N * c->C);
}

static void
test_layernorm_parity(void **state)
{
	int N = 131, C = 67;
	float *x = randv(N * C, 2), *w = randv(C, 1), *b = randv(C, 1);
	float *dy = randv(N * C, 1), *y[2], *st[2][2], *g[2][3];
	double *xd = dbl(x, N * C), *wd = dbl(w, C), *bd = dbl(b, C);
	double *yd = malloc(N * C * sizeof(*yd));

	(void)state;
	for (int k = 0; k < N * C; k++)
		x[k] += 3.0f;	/* a mean far from 0 */
	free(xd);
	xd = dbl(x, N * C);
	for (int i = 0; i < 2; i++) {
		y[i] = randv(N * C, 1);
		st[i][0] = randv(N, 1);
		st[i][1] = randv(N, 1);
	}
	vlm_layernorm_fwd_ref(y[0], st[0][0], st[0][1], x, w, b, N, C);
	vlm_layernorm_fwd_cpu(y[1], st[1][0], st[1][1], x, w, b, N, C);
	ln_d(yd, xd, wd, bd, N, C);
	near_d("layernorm fwd ref", y[0], yd, N * C, PAR_TOL);
	near("layernorm fwd cpu", y[1], y[0], N * C, PAR_TOL);
	near("layernorm mean", st[1][0], st[0][0], N, PAR_TOL);
	near("layernorm rstd", st[1][1], st[0][1], N, PAR_TOL);
	g[0][0] = randv(N * C, 1);
	g[0][1] = randv(C, 1);
	g[0][2] = randv(C, 1);
	g[1][0] = copyv(g[0][0], N * C);
	g[1][1] = copyv(g[0][1], C);
	g[1][2] = copyv(g[0][2], C);
	vlm_layernorm_bwd_ref(g[0][0], g[0][1], g[0][2], dy, x, w, st[0][0],
	    st[0][1], N, C);
	vlm_layernorm_bwd_cpu(g[1][0], g[1][1], g[1][2], dy, x, w, st[0][0],
	    st[0][1], N, C);
	near("layernorm dx", g[1][0], g[0][0], N * C, PAR_TOL);
	near("layernorm dw", g[1][1], g[0][1], C, PAR_TOL);
	near("layernorm db", g[1][2], g[0][2], C, PAR_TOL);
	/* inference: no statistics saved */
	vlm_layernorm_fwd_cpu(y[1], NULL, NULL, x, w, b, N, C);
	near("layernorm fwd no stats", y[1], y[0], N * C, PAR_TOL);
	for (int i = 0; i < 2; i++) {
		free(y[i]), free(st[i][0]), free(st[i][1]);
		free(g[i][0]), free(g[i][1]), free(g[i][2]);
	}
	free(x), free(w), free(b), free(dy), free(xd), free(wd), free(bd);
	free(yd);
}

static void
test_layernorm_grad(void **state)
{
	int N = 3, C = 7;
	float *x = randv(N * C, 2), *w = randv(C, 1), *b = randv(C, 1);
	float *r = randv(N * C, 1), *y = randv(N * C, 1), *mean = randv(N, 1);
	float *rstd = randv(N, 1);
	struct ln c = { dbl(x, N * C), dbl(w, C), dbl(b, C), dbl(r, N * C),
	    malloc(N * C * sizeof(double)), N, C };

	(void)state;
	vlm_layernorm_fwd_ref(y, mean, rstd, x, w, b, N, C);
	for (int cpu = 0; cpu < 2; cpu++) {
		float *dx0 = randv(N * C, 1), *dw0 = randv(C, 1);
		float *db0 = randv(C, 1), *dx = copyv(dx0, N * C);
		float *dw = copyv(dw0, C), *db = copyv(db0, C), *gx, *gw, *gb;
		(cpu ? vlm_layernorm_bwd_cpu : vlm_layernorm_bwd_ref)(dx, dw,
		    db, r, x, w, mean, rstd, N, C);
		gx = added(dx, dx0, N * C);
		gw = added(dw, dw0, C);
		gb = added(db, db0, C);
		fd_check("layernorm dx", ln_obj, &c, c.x, N * C, gx);
		fd_check("layernorm dw", ln_obj, &c, c.w, C, gw);
		fd_check("layernorm db", ln_obj, &c, c.b, C, gb);
		free(dx0), free(dw0), free(db0), free(dx), free(dw), free(db);
		free(gx), free(gw), free(gb);
	}
	free(x), free(w), free(b), free(r), free(y), free(mean), free(rstd);
	free(c.x), free(c.w), free(c.b), free(c.r), free(c.y);
}

/* ---- activations ------------------------------------------------------ */

struct act {
	double *x, *r;
	double (*f)(double);
	int n;
};

static double
act_obj(void *p)
{
	struct act *c = p;
	double s = 0;

	for (int i = 0; i < c->n; i++)
		s += c->r[i] * c->f(c->x[i]);
	return s;
}

static const struct {
	const char *name;
	void (*fwd[2])(float *, const float *, int64_t);
	void (*bwd[2])(float *, const float *, const float *, int64_t);
	double (*f)(double);
} acts[] = {
	{ "gelu", { vlm_gelu_fwd_ref, vlm_gelu_fwd_cpu },
	    { vlm_gelu_bwd_ref, vlm_gelu_bwd_cpu }, gelu_d },
	{ "quickgelu", { vlm_quickgelu_fwd_ref, vlm_quickgelu_fwd_cpu },
	    { vlm_quickgelu_bwd_ref, vlm_quickgelu_bwd_cpu }, quickgelu_d },
};

static void
test_act(void **state)
{
	int n = 26331, nfd = 64;

	(void)state;
	for (size_t a = 0; a < sizeof(acts) / sizeof(acts[0]); a++) {
		float *x = randv(n, 4), *dy = randv(n, 1);
		float *y[2] = { randv(n, 1), randv(n, 1) };
		float *g0 = randv(n, 1), *g[2] = { copyv(g0, n), copyv(g0, n) };
		double *xd = dbl(x, n);
		struct act c = { xd, dbl(dy, n), acts[a].f, nfd };
		char what[64];
		for (int i = 0; i < n; i++)
			xd[i] = acts[a].f(xd[i]);
		for (int k = 0; k < 2; k++) {
			acts[a].fwd[k](y[k], x, n);
			acts[a].bwd[k](g[k], dy, x, n);
		}
		snprintf(what, sizeof(what), "%s fwd ref", acts[a].name);
		near_d(what, y[0], xd, n, PAR_TOL);
		near(acts[a].name, y[1], y[0], n, PAR_TOL);
		near(acts[a].name, g[1], g[0], n, PAR_TOL);
		for (int i = 0; i < n; i++)
			g[0][i] -= g0[i];
		free(xd);
		c.x = dbl(x, nfd);
		fd_check(acts[a].name, act_obj, &c, c.x, nfd, g[0]);
		/* in place */
		acts[a].fwd[1](x, x, n);
		near("act in place", x, y[1], n, 0);
		free(x), free(dy), free(y[0]), free(y[1]), free(g0);
		free(g[0]), free(g[1]), free(c.x), free(c.r);
	}
}

/*
 * The fast GELU's erf against double erf over a dense sweep of [-10, 10]
 * (the erf error read back from y = x/2 (1 + erf(x/sqrt 2)), less the
 * rounding of y and of 1 + erf), its gradient likewise, and the special
 * values (NaN, +-inf, +-0, huge) as the libm reference gives them.
 */
static void
test_gelu_sweep(void **state)
{
	enum { N = 400001 };
	float *x = malloc(N * sizeof(*x)), *y = malloc(N * sizeof(*y));
	float *g = calloc(N, sizeof(*g)), *dy = malloc(N * sizeof(*dy));
	const float sp[] = { NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f,
	    1e30f, -1e30f, 3.9f, -3.9f, 5.7f, -5.7f, 20.0f, -20.0f, 1e-30f };
	int ns = sizeof(sp) / sizeof(sp[0]);
	float ys[2][16], gs[2][16], one[16];
	double ef = 0, eg = 0;

	(void)state;
	assert_true(x && y && g && dy);
	for (int i = 0; i < N; i++)
		x[i] = -10.0f + 20.0f * i / (N - 1), dy[i] = 1;
	vlm_gelu_fwd_cpu(y, x, N);
	vlm_gelu_bwd_cpu(g, dy, x, N);
	for (int i = 0; i < N; i++) {
		double xd = x[i], t = gelu_d(xd), e;
		double pdf = exp(-0.5 * xd * xd) / sqrt(2 * M_PI);
		double gt = 0.5 * erfc(-xd / sqrt(2.0)) + xd * pdf;
		if (xd == 0)
			continue;
		/* |y - t| <= |x|/2 e_erf + ulp(y)/2 + |x|/2 ulp(1)/2 */
		e = (fabs(y[i] - t) - ldexp(fabs(t), -24)) / (0.5 * fabs(xd)) -
		    ldexp(1, -24);
		ef = e > ef ? e : ef;
		eg = fabs(g[i] - gt) > eg ? fabs(g[i] - gt) : eg;
	}
	print_message("gelu sweep: erf abs error %.3g, grad abs error %.3g\n",
	    ef, eg);
	assert_true(ef < 2e-7);
	assert_true(eg < 4e-7);
	for (int i = 0; i < ns; i++)
		one[i] = 1;
	for (int k = 0; k < 2; k++) {
		memset(gs[k], 0, sizeof(gs[k]));
		(k ? vlm_gelu_fwd_cpu : vlm_gelu_fwd_ref)(ys[k], sp, ns);
		(k ? vlm_gelu_bwd_cpu : vlm_gelu_bwd_ref)(gs[k], one, sp, ns);
	}
	for (int i = 0; i < ns; i++) {
		assert_int_equal(isnan(ys[0][i]), isnan(ys[1][i]));
		assert_int_equal(isnan(gs[0][i]), isnan(gs[1][i]));
		if (!isnan(ys[0][i]) && (isinf(ys[0][i]) || ys[0][i] == 0 ||
		    fabsf(sp[i]) >= 5.7f))
			assert_true(ys[0][i] == ys[1][i] &&
			    signbit(ys[0][i]) == signbit(ys[1][i]));
		if (!isnan(gs[0][i]) && (isinf(gs[0][i]) || fabsf(sp[i]) >= 20))
			assert_true(gs[0][i] == gs[1][i]);
	}
	free(x), free(y), free(g), free(dy);
}

/* ---- softmax ---------------------------------------------------------- */

struct sm {
	double *x, *r, *y;
	int N, C;
};

static double
sm_obj(void *p)
{
	struct sm *c = p;

	softmax_d(c->y, c->x, c->N, c->C);
	return dotd(c->r, c->y, c->N * c->C);
}

static void
test_softmax(void **state)
{
	int N = 131, C = 67, n = N * C;
	float *x = randv(n, 8), *dy = randv(n, 1);
	float *y[2] = { randv(n, 1), randv(n, 1) };
	float *g0 = randv(n, 1), *g[2] = { copyv(g0, n), copyv(g0, n) };
	double *xd = dbl(x, n), *yd = malloc(n * sizeof(*yd));
	struct sm c = { dbl(x, 3 * 6), dbl(dy, 3 * 6),
	    malloc(18 * sizeof(double)), 3, 6 };

	(void)state;
	x[100] = 80.0f;	/* exp would overflow without the max */
	xd[100] = 80.0;
	vlm_softmax_fwd_ref(y[0], x, N, C);
	vlm_softmax_fwd_cpu(y[1], x, N, C);
	softmax_d(yd, xd, N, C);
	near_d("softmax fwd ref", y[0], yd, n, PAR_TOL);
	near("softmax fwd cpu", y[1], y[0], n, PAR_TOL);
	vlm_softmax_bwd_ref(g[0], dy, y[0], N, C);
	vlm_softmax_bwd_cpu(g[1], dy, y[0], N, C);
	near("softmax bwd cpu", g[1], g[0], n, PAR_TOL);
	/* gradient at the small size, from fresh buffers */
	vlm_softmax_fwd_ref(y[0], x, 3, 6);
	memcpy(g[0], g0, 18 * sizeof(float));
	vlm_softmax_bwd_ref(g[0], dy, y[0], 3, 6);
	for (int i = 0; i < 18; i++)
		g[0][i] -= g0[i];
	free(c.x);
	c.x = dbl(x, 18);
	fd_check("softmax dx", sm_obj, &c, c.x, 18, g[0]);
	free(x), free(dy), free(y[0]), free(y[1]), free(g0), free(g[0]);
	free(g[1]), free(xd), free(yd), free(c.x), free(c.r), free(c.y);
}

/* ---- attention -------------------------------------------------------- */

struct at {
	double *qkv, *r, *out;
	const int32_t *len;
	int causal, B, T, C, H;
};

static double
at_obj(void *p)
{
	struct at *c = p;

	attn_d(c->out, c->qkv, c->len, c->causal, c->B, c->T, c->C, c->H);
	return dotd(c->r, c->out, c->B * c->T * c->C);
}

/* The four mask settings: none, causal, padding, both. */
static void
test_attention_parity(void **state)
{
	enum { B = 3, T = 37, C = 69, H = 3 };
	int32_t len[B] = { 37, 20, 1 };
	float *qkv = randv(B * T * 3 * C, 1.5f), *dout = randv(B * T * C, 1);
	double *qd = dbl(qkv, B * T * 3 * C);
	double *od = malloc(B * T * C * sizeof(*od));

	(void)state;
	for (int m = 0; m < 4; m++) {
		const int32_t *l = m & 2 ? len : NULL;
		float *out[2], *att[2], *g[2];
		float *g0 = randv(B * T * 3 * C, 1);
		for (int k = 0; k < 2; k++) {
			out[k] = randv(B * T * C, 1);
			att[k] = randv(B * H * T * T, 1);
			g[k] = copyv(g0, B * T * 3 * C);
		}
		vlm_attention_fwd_ref(out[0], att[0], qkv, l, m & 1, B, T, C,
		    H);
		vlm_attention_fwd_cpu(out[1], att[1], qkv, l, m & 1, B, T, C,
		    H);
		attn_d(od, qd, l, m & 1, B, T, C, H);
		near_d("attention fwd ref", out[0], od, B * T * C, PAR_TOL);
		near("attention fwd cpu", out[1], out[0], B * T * C, PAR_TOL);
		near("attention att cpu", att[1], att[0], B * H * T * T,
		    PAR_TOL);
		/* att[1] (compared above) is the scratch */
		vlm_attention_bwd_ref(g[0], att[1], dout, qkv, att[0], B, T, C,
		    H);
		vlm_attention_bwd_cpu(g[1], att[1], dout, qkv, att[0], B, T, C,
		    H);
		near("attention bwd cpu", g[1], g[0], B * T * 3 * C, PAR_TOL);
		for (int k = 0; k < 2; k++)
			free(out[k]), free(att[k]), free(g[k]);
		free(g0);
	}
	free(qkv), free(dout), free(qd), free(od);
}

static void
test_attention_grad(void **state)
{
	enum { B = 2, T = 5, C = 6, H = 2, n = B * T * 3 * C };
	int32_t len[B] = { 5, 3 };
	float *qkv = randv(n, 1.5f), *r = randv(B * T * C, 1);
	float *out = randv(B * T * C, 1), *att = randv(B * H * T * T, 1);
	struct at c = { dbl(qkv, n), dbl(r, B * T * C),
	    malloc(B * T * C * sizeof(double)), NULL, 0, B, T, C, H };

	(void)state;
	for (int m = 0; m < 4; m++)
	for (int cpu = 0; cpu < 2; cpu++) {
		float *g0 = randv(n, 1), *g = copyv(g0, n), *d;
		c.len = m & 2 ? len : NULL;
		c.causal = m & 1;
		(cpu ? vlm_attention_fwd_cpu : vlm_attention_fwd_ref)(out, att,
		    qkv, c.len, c.causal, B, T, C, H);
		float *scr = malloc(B * H * T * T * sizeof(float));
		(cpu ? vlm_attention_bwd_cpu : vlm_attention_bwd_ref)(g, scr, r,
		    qkv, att, B, T, C, H);
		free(scr);
		d = added(g, g0, n);
		fd_check("attention dqkv", at_obj, &c, c.qkv, n, d);
		/* padded keys and values get exactly nothing */
		for (int t = len[1]; c.len && t < T; t++)
			for (int k = C; k < 3 * C; k++)
				assert_true(d[(1 * T + t) * 3 * C + k] == 0);
		free(g0), free(g), free(d);
	}
	free(qkv), free(r), free(out), free(att);
	free(c.qkv), free(c.r), free(c.out);
}

/* What a mask hides cannot change the output, bit for bit. */
static void
test_attention_masks(void **state)
{
	enum { B = 2, T = 9, C = 12, H = 4, n = B * T * 3 * C };
	int32_t len[B] = { 9, 4 };
	float *qkv = randv(n, 1), *out[2], *att = randv(B * H * T * T, 1);

	(void)state;
	out[0] = randv(B * T * C, 1);
	out[1] = randv(B * T * C, 1);
	for (int cpu = 0; cpu < 2; cpu++) {
		void (*fwd)(float *, float *, const float *, const int32_t *,
		    int, int, int, int, int) = cpu ? vlm_attention_fwd_cpu :
		    vlm_attention_fwd_ref;
		float *p = copyv(qkv, n);
		/* causal: the last token changes nothing before it */
		fwd(out[0], att, qkv, NULL, 1, B, T, C, H);
		for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++)
		for (int i = 0; i < T; i++)
		for (int j = i + 1; j < T; j++)
			assert_true(att[((b * H + h) * T + i) * T + j] == 0);
		for (int k = 0; k < 3 * C; k++)
			p[(0 * T + T - 1) * 3 * C + k] += 1.0f;
		fwd(out[1], att, p, NULL, 1, B, T, C, H);
		assert_memory_equal(out[0], out[1],
		    (T - 1) * C * sizeof(float));
		assert_memory_not_equal(out[0] + (T - 1) * C,
		    out[1] + (T - 1) * C, C * sizeof(float));
		/* padding: keys and values past len[1] change nothing */
		memcpy(p, qkv, n * sizeof(float));
		fwd(out[0], att, qkv, len, 0, B, T, C, H);
		for (int h = 0; h < H; h++)
		for (int i = 0; i < T; i++)
		for (int j = len[1]; j < T; j++)
			assert_true(att[((1 * H + h) * T + i) * T + j] == 0);
		for (int t = len[1]; t < T; t++)
			for (int k = C; k < 3 * C; k++)
				p[(1 * T + t) * 3 * C + k] -= 2.0f;
		fwd(out[1], att, p, len, 0, B, T, C, H);
		assert_memory_equal(out[0], out[1], B * T * C * sizeof(float));
		free(p);
	}
	free(qkv), free(out[0]), free(out[1]), free(att);
}

/* ---- l2 normalisation ------------------------------------------------- */

struct l2 {
	double *x, *r, *y;
	int N, C;
};

static double
l2_obj(void *p)
{
	struct l2 *c = p;

	l2_d(c->y, c->x, c->N, c->C);
	return dotd(c->r, c->y, c->N * c->C);
}

static void
test_l2norm(void **state)
{
	int N = 131, C = 67, n = N * C;
	float *x = randv(n, 1), *dy = randv(n, 1), *y[2], *nm[2], *g[2];
	float *g0 = randv(n, 1);
	double *yd = malloc(n * sizeof(*yd)), *xd;
	struct l2 c = { NULL, dbl(dy, 15), malloc(15 * sizeof(double)), 3,
	    5 };

	(void)state;
	xd = dbl(x, n);
	for (int k = 0; k < 2; k++) {
		y[k] = randv(n, 1);
		nm[k] = randv(N, 1);
		g[k] = copyv(g0, n);
	}
	vlm_l2norm_fwd_ref(y[0], nm[0], x, N, C);
	vlm_l2norm_fwd_cpu(y[1], nm[1], x, N, C);
	l2_d(yd, xd, N, C);
	near_d("l2norm fwd ref", y[0], yd, n, PAR_TOL);
	near("l2norm fwd cpu", y[1], y[0], n, PAR_TOL);
	near("l2norm norm cpu", nm[1], nm[0], N, PAR_TOL);
	vlm_l2norm_bwd_ref(g[0], dy, y[0], nm[0], N, C);
	vlm_l2norm_bwd_cpu(g[1], dy, y[0], nm[0], N, C);
	near("l2norm bwd cpu", g[1], g[0], n, PAR_TOL);
	for (int k = 0; k < 15; k++)
		g[0][k] = 0;
	vlm_l2norm_fwd_ref(y[0], nm[0], x, 3, 5);
	vlm_l2norm_bwd_ref(g[0], dy, y[0], nm[0], 3, 5);
	c.x = dbl(x, 15);
	fd_check("l2norm dx", l2_obj, &c, c.x, 15, g[0]);
	/* a zero row: y = x / 1e-12, the gradient dy / 1e-12 */
	memset(x, 0, C * sizeof(float));
	memset(g[1], 0, C * sizeof(float));
	vlm_l2norm_fwd_cpu(y[1], nm[1], x, 1, C);
	vlm_l2norm_bwd_cpu(g[1], dy, y[1], nm[1], 1, C);
	assert_true(nm[1][0] == 1e-12f);
	for (int k = 0; k < C; k++) {
		assert_true(y[1][k] == 0);
		assert_true(fabs(g[1][k] - dy[k] * 1e12) <= 1e-6 * 1e12);
	}
	for (int k = 0; k < 2; k++)
		free(y[k]), free(nm[k]), free(g[k]);
	free(x), free(dy), free(g0), free(yd), free(xd), free(c.x), free(c.r);
	free(c.y);
}

/* ---- CLIP loss -------------------------------------------------------- */

struct cl {
	double *u, *v, theta;
	int B, C;
};

static double
cl_obj(void *p)
{
	struct cl *c = p;

	return clip_d(c->u, c->v, c->theta, c->B, c->C);
}

/* Random rows of unit length. */
static float *
unit_rows(int N, int C)
{
	float *x = randv(N * C, 1), *y = randv(N * C, 1);

	vlm_l2norm_fwd_ref(y, NULL, x, N, C);
	free(x);
	return y;
}

static void
test_clip_loss(void **state)
{
	int B = 37, C = 67;
	float theta = logf(1 / 0.07f);
	float *u = unit_rows(B, C), *v = unit_rows(B, C);
	float *lg[2] = { randv(B * B, 1), randv(B * B, 1) };
	float *ls[2] = { randv(2 * B, 1), randv(2 * B, 1) };
	float *du0 = randv(B * C, 1), *dv0 = randv(B * C, 1), *scr = NULL;
	float *du[2] = { copyv(du0, B * C), copyv(du0, B * C) };
	float *dv[2] = { copyv(dv0, B * C), copyv(dv0, B * C) };
	float dt[2] = { 0.5f, 0.5f }, loss[2];
	double *ud = dbl(u, B * C), *vd = dbl(v, B * C);
	double want = clip_d(ud, vd, theta, B, C);

	(void)state;
	scr = randv(B * B, 1);
	loss[0] = vlm_clip_loss_fwd_ref(lg[0], ls[0], u, v, theta, B, C);
	loss[1] = vlm_clip_loss_fwd_cpu(lg[1], ls[1], u, v, theta, B, C);
	assert_true(fabs(loss[0] - want) <= PAR_TOL * want);
	assert_true(fabsf(loss[1] - loss[0]) <= PAR_TOL * loss[0]);
	near("clip logits cpu", lg[1], lg[0], B * B, PAR_TOL);
	near("clip lse cpu", ls[1], ls[0], 2 * B, PAR_TOL);
	vlm_clip_loss_bwd_ref(du[0], dv[0], &dt[0], scr, lg[0], ls[0], u, v,
	    theta, 0.75f, B, C);
	vlm_clip_loss_bwd_cpu(du[1], dv[1], &dt[1], scr, lg[0], ls[0], u, v,
	    theta, 0.75f, B, C);
	near("clip du cpu", du[1], du[0], B * C, PAR_TOL);
	near("clip dv cpu", dv[1], dv[0], B * C, PAR_TOL);
	assert_true(fabsf(dt[1] - dt[0]) <= PAR_TOL * fabsf(dt[0] - 0.5f));
	for (int k = 0; k < 2; k++)
		free(lg[k]), free(ls[k]), free(du[k]), free(dv[k]);
	free(u), free(v), free(du0), free(dv0), free(scr), free(ud), free(vd);
}

static void
test_clip_loss_grad(void **state)
{
	int B = 4, C = 5;
	float theta = 1.3f, *u = unit_rows(B, C), *v = unit_rows(B, C);
	float *lg = randv(B * B, 1), *ls = randv(2 * B, 1);
	float *scr = randv(B * B, 1);
	struct cl c = { dbl(u, B * C), dbl(v, B * C), theta, B, C };

	(void)state;
	for (int cpu = 0; cpu < 2; cpu++) {
		float *du0 = randv(B * C, 1), *dv0 = randv(B * C, 1);
		float *du = copyv(du0, B * C), *dv = copyv(dv0, B * C);
		float dt = 0.25f, *gu, *gv, gt;
		(cpu ? vlm_clip_loss_fwd_cpu : vlm_clip_loss_fwd_ref)(lg, ls, u,
		    v, theta, B, C);
		(cpu ? vlm_clip_loss_bwd_cpu : vlm_clip_loss_bwd_ref)(du, dv,
		    &dt, scr, lg, ls, u, v, theta, 1.0f, B, C);
		gu = added(du, du0, B * C);
		gv = added(dv, dv0, B * C);
		gt = dt - 0.25f;
		fd_check("clip du", cl_obj, &c, c.u, B * C, gu);
		fd_check("clip dv", cl_obj, &c, c.v, B * C, gv);
		fd_check("clip dtheta", cl_obj, &c, &c.theta, 1, &gt);
		free(du0), free(dv0), free(du), free(dv), free(gu), free(gv);
	}
	free(u), free(v), free(lg), free(ls), free(scr), free(c.u), free(c.v);
}

/* ---- AdamW and clipping ----------------------------------------------- */

/* Two steps of torch.optim.AdamW's update, written out in double. */
static void
test_adamw(void **state)
{
	enum { n = 5 };
	const double lr = 1e-3, b1 = 0.9, b2 = 0.98, eps = 1e-6, wd = 0.2;
	float p0[n] = { 0.5f, -1.0f, 2.0f, 0.0f, 3.0f };
	float g[2][n] = { { 0.1f, -0.2f, 0.0f, 1e-3f, 5.0f },
	    { -0.3f, -0.1f, 0.4f, 2e-3f, 4.0f } };
	double p[n], m[n] = { 0 }, v[n] = { 0 };
	float pf[2][n], mf[2][n] = { { 0 } }, vf[2][n] = { { 0 } };

	(void)state;
	for (int i = 0; i < n; i++)
		p[i] = pf[0][i] = pf[1][i] = p0[i];
	for (int t = 1; t <= 2; t++) {
		for (int i = 0; i < n; i++) {
			double gi = g[t - 1][i];
			p[i] *= 1 - lr * wd;
			m[i] = b1 * m[i] + (1 - b1) * gi;
			v[i] = b2 * v[i] + (1 - b2) * gi * gi;
			p[i] -= lr / (1 - pow(b1, t)) * m[i] /
			    (sqrt(v[i]) / sqrt(1 - pow(b2, t)) + eps);
		}
		vlm_adamw_step_ref(pf[0], mf[0], vf[0], g[t - 1], n, t, lr, b1,
		    b2, eps, wd);
		vlm_adamw_step_cpu(pf[1], mf[1], vf[1], g[t - 1], n, t, lr, b1,
		    b2, eps, wd);
		/* step 1 by hand: p (1 - lr wd) - lr g / (|g| + eps) */
		for (int i = 0; t == 1 && i < n; i++)
			assert_true(fabs(pf[0][i] - (p0[i] * (1 - lr * wd) -
			    lr * g[0][i] / (fabs(g[0][i]) + eps))) < 1e-6);
	}
	for (int i = 0; i < n; i++) {
		assert_true(fabs(pf[0][i] - p[i]) <=
		    1e-6 * fmax(1, fabs(p[i])));
		assert_true(fabs(mf[0][i] - m[i]) <= 1e-6 * fabs(m[i]) + 1e-12);
		assert_true(fabs(vf[0][i] - v[i]) <= 1e-6 * fabs(v[i]) + 1e-12);
	}
	assert_memory_equal(pf[0], pf[1], sizeof(pf[0]));
	assert_memory_equal(mf[0], mf[1], sizeof(mf[0]));
	assert_memory_equal(vf[0], vf[1], sizeof(vf[0]));
}

static void
test_grad_clip(void **state)
{
	int64_t n = 3 * 65536 + 17;
	float *g = randv(n, 1), *a = copyv(g, n), *b = copyv(g, n);
	double s = 0;
	float na, nb;

	(void)state;
	for (int64_t i = 0; i < n; i++)
		s += (double)g[i] * g[i];
	s = sqrt(s);
	/* below the threshold, or measuring only: nothing changes */
	na = vlm_grad_clip_ref(a, n, (float)(2 * s));
	nb = vlm_grad_clip_cpu(b, n, 0);
	assert_true(fabs(na - s) <= 1e-6 * s && fabs(nb - s) <= 1e-6 * s);
	assert_memory_equal(a, g, n * sizeof(float));
	assert_memory_equal(b, g, n * sizeof(float));
	na = vlm_grad_clip_ref(a, n, 1.0f);
	nb = vlm_grad_clip_cpu(b, n, 1.0f);
	assert_true(fabs(na - s) <= 1e-6 * s && fabs(nb - s) <= 1e-6 * s);
	for (int64_t i = 0; i < n; i++)
		g[i] = (float)(g[i] * (1.0 / (s + 1e-6)));
	near("clip ref", a, g, n, 1e-6);
	near("clip cpu", b, g, n, 1e-6);
	free(g), free(a), free(b);
}

/* ---- the pool and determinism ----------------------------------------- */

struct cover {
	int *hits;
	int nested;
};

static void
cover_inner(void *arg, int64_t i0, int64_t i1)
{
	struct cover *c = arg;

	for (int64_t i = i0; i < i1; i++)
		c->hits[i]++;
}

/* Every index once; a nested call runs inline and covers its range. */
static void
cover_job(void *arg, int64_t i0, int64_t i1)
{
	struct cover *c = arg;

	if (c->nested) {
		struct cover sub = { c->hits + i0, 0 };
		vlm_parallel_for(i1 - i0, cover_inner, &sub);
	} else {
		cover_inner(c, i0, i1);
	}
}

static void
test_parallel_for(void **state)
{
	int64_t sizes[] = { 0, 1, 2, 3, 5, 1000 };
	int hits[1000];

	(void)state;
	for (int nt = 1; nt <= 5; nt++) {
		vlm_threads_set(nt);
		assert_int_equal(vlm_threads(), nt);
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (int nested = 0; nested < 2; nested++) {
			struct cover c = { hits, nested };
			memset(hits, 0, sizeof(hits));
			vlm_parallel_for(sizes[s], cover_job, &c);
			for (int64_t i = 0; i < 1000; i++)
				assert_int_equal(hits[i], i < sizes[s]);
		}
	}
	vlm_threads_set(0);
}

/* Append n floats to a growing record of every output. */
static void
record(float **buf, size_t *len, const float *x, size_t n)
{
	*buf = realloc(*buf, (*len + n) * sizeof(**buf));
	assert_non_null(*buf);
	memcpy(*buf + *len, x, n * sizeof(**buf));
	*len += n;
}

/* Every _cpu kernel on fixed inputs; all outputs in one array. */
static float *
run_all_cpu(size_t *len)
{
	enum { N = 131, C = 67, OUT = 259, B = 3, T = 37, A = 69, H = 3 };
	int32_t lens[B] = { 37, 20, 1 };
	float *r = NULL, *x, *w, *b, *dy, *y, *g1, *g2, *g3, *st, *qkv, *att;
	float f;

	rng_state = 12345;
	*len = 0;
	x = randv(N * OUT, 1), w = randv(OUT * OUT, 0.1f), b = randv(OUT, 1);
	dy = randv(N * OUT, 1), g1 = randv(N * OUT, 1);
	g2 = randv(OUT * OUT, 1), g3 = randv(OUT, 1), st = randv(2 * N, 1);
	qkv = randv(B * T * 3 * A, 1), att = randv(B * H * T * T, 1);
	y = randv(800 * 700, 1);	/* 3 x 2 tiles */
	vlm_gemm_cpu(0, 1, 800, 700, 21, 1.0f, x, 21, w, 21, 0.0f, y, 700);
	record(&r, len, y, 800 * 700);
	free(y);
	y = randv(N * OUT, 1);
	vlm_linear_fwd_cpu(y, x, w, b, N, C, OUT);
	vlm_linear_bwd_cpu(g1, g2, g3, dy, x, w, N, C, OUT);
	record(&r, len, y, N * OUT), record(&r, len, g1, N * C);
	record(&r, len, g2, OUT * C), record(&r, len, g3, OUT);
	vlm_layernorm_fwd_cpu(y, st, st + N, x, w, b, N, C);
	vlm_layernorm_bwd_cpu(g1, g2, g3, dy, x, w, st, st + N, N, C);
	record(&r, len, y, N * C), record(&r, len, st, 2 * N);
	record(&r, len, g1, N * C), record(&r, len, g2, C);
	record(&r, len, g3, C);
	vlm_gelu_fwd_cpu(y, x, N * OUT);
	vlm_gelu_bwd_cpu(g1, dy, x, N * OUT);
	vlm_quickgelu_fwd_cpu(y + 1, x, N * OUT - 1);
	vlm_quickgelu_bwd_cpu(g1 + 1, dy, x, N * OUT - 1);
	record(&r, len, y, N * OUT), record(&r, len, g1, N * OUT);
	vlm_softmax_fwd_cpu(y, x, N, OUT);
	vlm_softmax_bwd_cpu(g1, dy, y, N, OUT);
	record(&r, len, y, N * OUT), record(&r, len, g1, N * OUT);
	vlm_attention_fwd_cpu(y, att, qkv, lens, 1, B, T, A, H);
	float *scr = malloc((size_t)B * H * T * T * sizeof(float));
	vlm_attention_bwd_cpu(g1, scr, dy, qkv, att, B, T, A, H);
	free(scr);
	record(&r, len, y, B * T * A), record(&r, len, att, B * H * T * T);
	record(&r, len, g1, B * T * 3 * A);
	vlm_l2norm_fwd_cpu(y, st, x, N, OUT);
	vlm_l2norm_bwd_cpu(g1, dy, y, st, N, OUT);
	record(&r, len, y, N * OUT), record(&r, len, st, N);
	record(&r, len, g1, N * OUT);
	f = vlm_clip_loss_fwd_cpu(g2, st, x, dy, 2.0f, N, C);
	vlm_clip_loss_bwd_cpu(y, g1, g3, w, g2, st, x, dy, 2.0f, 1, N, C);
	record(&r, len, &f, 1), record(&r, len, g2, N * N);
	record(&r, len, y, N * C), record(&r, len, g1, N * C);
	record(&r, len, g3, 1);
	for (int i = 0; i < N * OUT; i++)
		g1[i] = fabsf(g1[i]);	/* second moments are not negative */
	vlm_adamw_step_cpu(x, y, g1, dy, N * OUT, 3, 1e-3, 0.9, 0.98, 1e-6,
	    0.1);
	record(&r, len, x, N * OUT), record(&r, len, y, N * OUT);
	record(&r, len, g1, N * OUT);
	f = vlm_grad_clip_cpu(dy, N * OUT, 1.0f);
	record(&r, len, &f, 1), record(&r, len, dy, N * OUT);
	free(x), free(w), free(b), free(dy), free(y), free(g1), free(g2);
	free(g3), free(st), free(qkv), free(att);
	return r;
}

static void
test_threads_identical(void **state)
{
	size_t n1, n;
	float *one, *many;

	(void)state;
	vlm_threads_set(1);
	one = run_all_cpu(&n1);
	for (int nt = 2; nt <= 3; nt++) {
		vlm_threads_set(nt);
		many = run_all_cpu(&n);
		assert_int_equal(n, n1);
		assert_memory_equal(one, many, n * sizeof(float));
		free(many);
	}
	vlm_threads_set(0);
	free(one);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parallel_for),
		cmocka_unit_test(test_gemm),
		cmocka_unit_test(test_linear_parity),
		cmocka_unit_test(test_linear_blocks),
		cmocka_unit_test(test_linear_narrow),
		cmocka_unit_test(test_linear_grad),
		cmocka_unit_test(test_layernorm_parity),
		cmocka_unit_test(test_layernorm_grad),
		cmocka_unit_test(test_act),
		cmocka_unit_test(test_gelu_sweep),
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_attention_parity),
		cmocka_unit_test(test_attention_grad),
		cmocka_unit_test(test_attention_masks),
		cmocka_unit_test(test_l2norm),
		cmocka_unit_test(test_clip_loss),
		cmocka_unit_test(test_clip_loss_grad),
		cmocka_unit_test(test_adamw),
		cmocka_unit_test(test_grad_clip),
		cmocka_unit_test(test_threads_identical),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
