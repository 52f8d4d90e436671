/*
 * matmul.c - general matrix product and the linear layer y = x w^T + b,
 * weights stored as PyTorch does (OUT, IN). The references are plain
 * loops. The fast GEMM cuts C into tiles fixed by the shape alone and
 * runs one single-threaded OpenBLAS SGEMM per tile on the thread pool:
 * OpenBLAS's own threading splits work by its thread count, which
 * changes the rounding of some elements, so it is not used. Each tile's
 * SGEMM packs its rows of A and its columns of B again, so the grid is
 * coarse: at most MAXT tiles (enough for 8 threads), cut the way that
 * packs least (a ViT-B/32 QKV projection of 1600 x 2304 outputs: 2 x 4
 * tiles, half the packing of 384-square tiles). Bias sums are split by
 * columns, each summed in row order.
 *
 * On a CPU with AVX-512 the linear layer's forward is our own GEMM
 * instead (BLIS's loops): w packed in 32-column panels once per call
 * and K block, x read in place, a 12 x 32 micro-kernel. Every output
 * starts from its bias and sums its K terms in order, so the result does
 * not depend on how the work is cut, and the cut follows the thread
 * count: each thread packs its part of w once, where OpenBLAS's tiles
 * packed it again per tile.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <cblas.h>

#include "base/base.h"
#include "kernels.h"

#define TILE 384	/* a dimension under 1.5 TILE is not cut */
#define MAXT 8		/* most tiles of one GEMM */
#define ALIGN 16	/* tile edges fall on multiples of this */

void
vlm_gemm_ref(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			float s = 0.0f, *c = C + (size_t)i * ldc + j;
			for (int k = 0; k < K; k++)
				s += (ta ? A[(size_t)k * lda + i] :
				    A[(size_t)i * lda + k]) *
				    (tb ? B[(size_t)j * ldb + k] :
				    B[(size_t)k * ldb + j]);
			*c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
		}
}

struct gemm {
	int ta, tb, M, N, K, lda, ldb, ldc, mt, nt;
	float alpha, beta;
	const float *A, *B;
	float *C;
	const float *bias;	/* (N) copied into each row of C first */
};

/* Start of part i of n cut into parts: near n i / parts, on ALIGN. */
static int
cut(int n, int i, int parts)
{
	int64_t c = (int64_t)n * i / parts;

	return i == parts ? n : (int)(c - c % ALIGN);
}

/* Tiles [t0, t1), numbered row-major over the mt x nt grid. */
static void
gemm_tiles(void *arg, int64_t t0, int64_t t1)
{
	struct gemm *g = arg;

	for (int64_t t = t0; t < t1; t++) {
		int ti = (int)(t / g->nt), tj = (int)(t % g->nt);
		int i0 = cut(g->M, ti, g->mt), j0 = cut(g->N, tj, g->nt);
		int m = cut(g->M, ti + 1, g->mt) - i0;
		int n = cut(g->N, tj + 1, g->nt) - j0;
		const float *a = g->ta ? g->A + i0 : g->A + (size_t)i0 * g->lda;
		const float *b = g->tb ? g->B + (size_t)j0 * g->ldb : g->B + j0;
		for (int i = 0; g->bias && i < m; i++)
			memcpy(g->C + (size_t)(i0 + i) * g->ldc + j0, g->bias + j0,
			    n * sizeof(float));
		cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
		    g->tb ? CblasTrans : CblasNoTrans, m, n, g->K, g->alpha,
		    a, g->lda, b, g->ldb, g->beta,
		    g->C + (size_t)i0 * g->ldc + j0, g->ldc);
	}
}

/* A dimension under 1.5 tiles stays whole; else it is cut in TILEs. */
static int
ntiles(int n)
{
	return n < TILE + TILE / 2 ? 1 : (n + TILE - 1) / TILE;
}

/*
 * The grid of an M x N product: as many tiles as TILE-sized cuts would
 * make, down to a power of two up to MAXT, split mt x nt so that the
 * packed rows and columns, M nt + N mt, are fewest.
 */
static void
grid(int M, int N, int *mt, int *nt)
{
	int64_t most = (int64_t)ntiles(M) * ntiles(N), best = INT64_MAX;
	int P = 1;

	while (2 * P <= MAXT && 2 * P <= most)
		P *= 2;
	*mt = *nt = 1;
	for (int r = 1; r <= P; r *= 2) {
		int c = P / r;
		int64_t packed = (int64_t)M * c + (int64_t)N * r;
		if (r * ALIGN > M || c * ALIGN > N || packed >= best)
			continue;
		best = packed, *mt = r, *nt = c;
	}
}

/* The tiles of g on the thread pool. */
static void
gemm_run(struct gemm *g)
{
	if (g->M <= 0 || g->N <= 0)
		return;
	grid(g->M, g->N, &g->mt, &g->nt);
	vlm_parallel_for_cost((int64_t)g->mt * g->nt, 2 * (int64_t)g->M *
	    g->N * g->K, gemm_tiles, g);
}

void
vlm_gemm_cpu(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc)
{
	struct gemm g = { ta, tb, M, N, K, lda, ldb, ldc, 1, 1, alpha, beta,
	    A, B, C, NULL };

	gemm_run(&g);
}

void
vlm_linear_fwd_ref(float *y, const float *x, const float *w, const float *b,
    int N, int IN, int OUT)
{
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * IN;
		for (int o = 0; o < OUT; o++) {
			const float *wo = w + (size_t)o * IN;
			float s = b ? b[o] : 0.0f;
			for (int i = 0; i < IN; i++)
				s += xn[i] * wo[i];
			y[(size_t)n * OUT + o] = s;
		}
	}
}

void
vlm_linear_bwd_ref(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT)
{
	for (int n = 0; n < N; n++) {
		const float *dyn = dy + (size_t)n * OUT;
		const float *xn = x + (size_t)n * IN;
		for (int o = 0; o < OUT; o++) {
			float d = dyn[o];
			const float *wo = w + (size_t)o * IN;
			if (dx)
				for (int i = 0; i < IN; i++)
					dx[(size_t)n * IN + i] += d * wo[i];
			if (dw)
				for (int i = 0; i < IN; i++)
					dw[(size_t)o * IN + i] += d * xn[i];
			if (db)
				db[o] += d;
		}
	}
}

/* Start of part i of n cut into parts, on a multiple of align. */
static int
cut_at(int n, int i, int parts, int align)
{
	int64_t c = (int64_t)n * i / parts;

	return i == parts ? n : (int)(c - c % align);
}

/* y = x w^T + b on OpenBLAS's tiles, each copying its part of b first. */
static void
linear_fwd_tiles(float *y, const float *x, const float *w, const float *b,
    int N, int IN, int OUT)
{
	struct gemm g = { 0, 1, N, OUT, IN, IN, IN, OUT, 1, 1, 1.0f,
	    b ? 1.0f : 0.0f, x, w, y, b };

	gemm_run(&g);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define MR 12		/* rows of x per micro-kernel */
#define NR 32		/* columns of y per micro-kernel: two vectors */
#define KC 256		/* K per block: 12 rows of x, 12 KiB, in L1 */
#define NC 1024		/* columns per packed w block, 1 MiB (in L2) */
#define AVX512 __attribute__((target("avx512f")))

/*
 * c (R,NR) = start + x (R,kc) . wp (kc,NR), x rows ldx apart, w packed
 * k-major; start is the bias row (or zeros) on the first K block, else c
 * itself. Stores the columns that m0, m1 select.
 */
static inline __attribute__((always_inline)) AVX512 void
ukernel(int R, int kc, const float *x, size_t ldx, const float *wp,
    float *c, size_t ldc, const float *bias, int first, __mmask16 m0,
    __mmask16 m1)
{
	__m512 acc[MR][2];

#pragma GCC unroll 12
	for (int r = 0; r < R; r++) {
		if (!first) {
			acc[r][0] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
			acc[r][1] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
		} else if (bias) {
			acc[r][0] = _mm512_maskz_loadu_ps(m0, bias);
			acc[r][1] = _mm512_maskz_loadu_ps(m1, bias + 16);
		} else {
			acc[r][0] = acc[r][1] = _mm512_setzero_ps();
		}
	}
	for (int k = 0; k < kc; k++) {
		__m512 b0 = _mm512_load_ps(wp + k * NR);
		__m512 b1 = _mm512_load_ps(wp + k * NR + 16);
		/* in registers: gcc would load them again for every row */
		__asm__("" : "+v"(b0), "+v"(b1));
		/* w 8 k ahead from L2 (one thread, the ViT-B/32 shapes: 91-93%
		 * of OpenBLAS's rate without, 97-100% with) */
		_mm_prefetch((const char *)(wp + k * NR + 8 * NR), _MM_HINT_T0);
		_mm_prefetch((const char *)(wp + k * NR + 8 * NR + 16),
		    _MM_HINT_T0);
#pragma GCC unroll 12
		for (int r = 0; r < R; r++) {
			__m512 a = _mm512_set1_ps(x[r * ldx + k]);
			acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
			acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
		}
	}
#pragma GCC unroll 12
	for (int r = 0; r < R; r++) {
		_mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
		_mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
	}
}

/* The micro-kernel on R <= MR rows and n <= NR columns, R a constant in
 * each case so that the accumulators stay in registers. */
static AVX512 void
ukernel_rows(int R, int n, int kc, const float *x, size_t ldx,
    const float *wp, float *c, size_t ldc, const float *bias, int first)
{
	__mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
	__mmask16 m1 = n >= NR ? 0xffff : n <= 16 ? 0 :
	    (__mmask16)((1u << (n - 16)) - 1);

	switch (R) {
#define ROWS(r) case r: \
	ukernel(r, kc, x, ldx, wp, c, ldc, bias, first, m0, m1); break;
	ROWS(12) ROWS(11) ROWS(10) ROWS(9) ROWS(8) ROWS(7) ROWS(6) ROWS(5)
	ROWS(4) ROWS(3) ROWS(2) ROWS(1)
#undef ROWS
	default:
		assert(0 && "ukernel_rows: rows out of range");
	}
}

/* r[i] = column i of the 16 x 16 block r (rows r[0..16)). */
static inline __attribute__((always_inline)) AVX512 void
transpose16(__m512 r[16])
{
	__m512 t[16];

	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4)
		for (int h = 0; h < 2; h++) {
			__m512d a = _mm512_castps_pd(t[i + h]);
			__m512d b = _mm512_castps_pd(t[i + h + 2]);
			r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
			r[i + 2 * h + 1] = _mm512_castpd_ps(
			    _mm512_unpackhi_pd(a, b));
		}
	for (int i = 0; i < 16; i += 8)
		for (int q = 0; q < 4; q++) {
			t[i + q] = _mm512_shuffle_f32x4(r[i + q], r[i + q + 4],
			    0x88);
			t[i + q + 4] = _mm512_shuffle_f32x4(r[i + q],
			    r[i + q + 4], 0xdd);
		}
	for (int q = 0; q < 8; q++) {
		r[q] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0x88);
		r[q + 8] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0xdd);
	}
}

/* Rows [j0, j0+n) x [k0, k0+kc) of w (.., IN) into NR-wide k-major
 * panels, zero-padded to whole panels: 16 x 16 blocks transposed in
 * registers (element by element it took 4% of a ViT-B/32 forward). */
static AVX512 void
pack_w(float *wp, const float *w, int IN, int j0, int n, int k0, int kc)
{
	for (int p = 0; p < n; p += NR) {
		float *d = wp + (size_t)p * kc;
		int J = n - p < NR ? n - p : NR, k = 0;
		const float *s = w + (size_t)(j0 + p) * IN + k0;
		for (; k + 16 <= kc; k += 16)
			for (int h = 0; h < NR; h += 16) {
				__m512 r[16];
				for (int j = 0; j < 16; j++)
					r[j] = h + j < J ? _mm512_loadu_ps(s +
					    (size_t)(h + j) * IN + k) :
					    _mm512_setzero_ps();
				transpose16(r);
				for (int i = 0; i < 16; i++)
					_mm512_store_ps(d + (size_t)(k + i) *
					    NR + h, r[i]);
			}
		for (; k < kc; k++)
			for (int j = 0; j < NR; j++)
				d[(size_t)k * NR + j] = j < J ?
				    s[(size_t)j * IN + k] : 0.0f;
	}
}

struct lin {
	float *y;
	const float *x, *w, *b;
	const float *wk;	/* w packed whole (vlm_linear_pack_cpu), or NULL */
	int N, IN, OUT, mt, nt;
};

/* Columns of w (OUT,IN) packed whole: OUT rounded up to whole panels. */
static size_t
packed_cols(int OUT)
{
	return (size_t)(OUT + NR - 1) / NR * NR;
}

/* Rows [i0, i1) x columns [j0, j1) of l's y; wp: NC KC floats, unused
 * when w comes packed whole (K block k0 at k0 OUTp, column j's panel at
 * j kc in it, as pack_w lays out a block). Loops
 * as BLIS's: 12 rows of x (K block kc) stay in L1 while the block's w
 * panels stream past them from L2. x is not packed: its rows are read
 * where they are (packing them cost more than it saved). */
static AVX512 void
linear_block(const struct lin *l, int i0, int i1, int j0, int j1,
    float *wp)
{
	int IN = l->IN, nb = (j1 - j0 + NC - 1) / NC, step;

	if (i1 <= i0 || j1 <= j0)
		return;
	step = ((j1 - j0 + nb - 1) / nb + NR - 1) / NR * NR; /* <= NC */
	for (int jc = j0; jc < j1; jc += step) {	/* blocks alike */
		int nc = j1 - jc < step ? j1 - jc : step;
		for (int k0 = 0; k0 < IN; k0 += KC) {
			int kc = IN - k0 < KC ? IN - k0 : KC;
			const float *wb = wp;
			if (l->wk)
				wb = l->wk + (size_t)k0 * packed_cols(l->OUT) +
				    (size_t)jc * kc;
			else
				pack_w(wp, l->w, IN, jc, nc, k0, kc);
			for (int i = i0; i < i1; i += MR)
			for (int jr = 0; jr < nc; jr += NR)
				ukernel_rows(i1 - i < MR ? i1 - i : MR,
				    nc - jr < NR ? nc - jr : NR, kc,
				    l->x + (size_t)i * IN + k0, IN,
				    wb + (size_t)jr * kc,
				    l->y + (size_t)i * l->OUT + jc + jr, l->OUT,
				    l->b ? l->b + jc + jr : NULL, k0 == 0);
		}
	}
}

/* Blocks [t0, t1) of the mt x nt grid, row-major, with a packing
 * buffer of their own (OpenBLAS on the block where it cannot be had). */
static void
linear_job(void *arg, int64_t t0, int64_t t1)
{
	const struct lin *l = arg;
	float *wp = l->wk ? (float *)l->wk : aligned_alloc(64,
	    sizeof(float) * NC * KC);

	for (int64_t t = t0; t < t1; t++) {
		int ti = (int)(t / l->nt), tj = (int)(t % l->nt);
		int i0 = cut_at(l->N, ti, l->mt, MR);
		int i1 = cut_at(l->N, ti + 1, l->mt, MR);
		int j0 = cut_at(l->OUT, tj, l->nt, NR);
		int j1 = cut_at(l->OUT, tj + 1, l->nt, NR);
		if (wp) {
			linear_block(l, i0, i1, j0, j1, wp);
			continue;
		}
		for (int i = i0; l->b && i < i1; i++)
			memcpy(l->y + (size_t)i * l->OUT + j0, l->b + j0,
			    (j1 - j0) * sizeof(float));
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0,
		    j1 - j0, l->IN, 1.0f, l->x + (size_t)i0 * l->IN, l->IN,
		    l->w + (size_t)j0 * l->IN, l->IN, l->b ? 1.0f : 0.0f,
		    l->y + (size_t)i0 * l->OUT + j0, l->OUT);
	}
	if (!l->wk)
		free(wp);
}

/*
 * One block per thread, the grid mt x nt that reads least (x is read nt
 * times, w packed mt times): no more blocks than whole panels (so none
 * is empty), as many blocks as threads where the shape has them.
 */
static void
linear_grid(struct lin *l)
{
	int P = vlm_threads(), pm = l->N / MR > 1 ? l->N / MR : 1;
	int pn = l->OUT / NR > 1 ? l->OUT / NR : 1;
	int64_t best = INT64_MAX, most = 0;

	l->mt = l->nt = 1;
	for (int r = 1; r <= P && r <= pm; r++) {
		int c = P / r < pn ? P / r : pn;
		int64_t packed = (int64_t)l->N * c + (int64_t)l->OUT * r;
		if ((int64_t)r * c < most || ((int64_t)r * c == most &&
		    packed >= best))
			continue;
		most = (int64_t)r * c, best = packed, l->mt = r, l->nt = c;
	}
}

/* l's grid of blocks, run on the thread pool (packed w or not). */
static void
linear_run(struct lin *l)
{
	linear_grid(l);
	vlm_parallel_for_cost((int64_t)l->mt * l->nt, 2 * (int64_t)l->N *
	    l->IN * l->OUT, linear_job, l);
}

/* Whether the AVX-512 GEMM runs (VLM_LINEAR_BLAS=1: OpenBLAS's tiles). */
static int
use_avx512(void)
{
	const char *e = getenv("VLM_LINEAR_BLAS");

	return __builtin_cpu_supports("avx512f") && !(e && *e == '1');
}

void
vlm_linear_fwd_cpu(float *y, const float *x, const float *w, const float *b,
    int N, int IN, int OUT)
{
	struct lin l = { y, x, w, b, NULL, N, IN, OUT, 1, 1 };

	if (N <= 0 || OUT <= 0)
		return;
	if (IN <= 0 || !use_avx512()) {
		linear_fwd_tiles(y, x, w, b, N, IN, OUT);
		return;
	}
	linear_run(&l);
}

size_t
vlm_linear_packed_floats(int IN, int OUT)
{
	if (IN <= 0 || OUT <= 0 || !use_avx512())
		return 0;
	return packed_cols(OUT) * IN;
}

struct pack {
	float *wk;
	const float *w;
	int IN, OUT;
};

/* Panels [p0, p1) of every K block of a whole-w packing. */
static void
pack_job(void *arg, int64_t p0, int64_t p1)
{
	const struct pack *a = arg;
	int j0 = (int)p0 * NR, j1 = p1 * NR < a->OUT ? (int)p1 * NR : a->OUT;

	for (int k0 = 0; k0 < a->IN; k0 += KC) {
		int kc = a->IN - k0 < KC ? a->IN - k0 : KC;
		pack_w(a->wk + (size_t)k0 * packed_cols(a->OUT) +
		    (size_t)j0 * kc, a->w, a->IN, j0, j1 - j0, k0, kc);
	}
}

void
vlm_linear_pack_cpu(float *wk, const float *w, int IN, int OUT)
{
	struct pack a = { wk, w, IN, OUT };

	vlm_parallel_for_cost((int64_t)packed_cols(OUT) / NR,
	    (int64_t)IN * OUT, pack_job, &a);
}

void
vlm_linear_fwd_packed_cpu(float *y, const float *x, const float *wk,
    const float *b, int N, int IN, int OUT)
{
	struct lin l = { y, x, NULL, b, wk, N, IN, OUT, 1, 1 };

	if (N <= 0 || OUT <= 0)
		return;
	assert(IN > 0 && __builtin_cpu_supports("avx512f") &&
	    "linear_fwd_packed: no packed path");
	linear_run(&l);
}
#else
size_t
vlm_linear_packed_floats(int IN, int OUT)
{
	(void)IN, (void)OUT;
	return 0;
}

void
vlm_linear_pack_cpu(float *wk, const float *w, int IN, int OUT)
{
	(void)wk, (void)w, (void)IN, (void)OUT;
	assert(0 && "linear_pack: no packed path");
}

void
vlm_linear_fwd_packed_cpu(float *y, const float *x, const float *wk,
    const float *b, int N, int IN, int OUT)
{
	(void)y, (void)x, (void)wk, (void)b, (void)N, (void)IN, (void)OUT;
	assert(0 && "linear_fwd_packed: no packed path");
}

void
vlm_linear_fwd_cpu(float *y, const float *x, const float *w, const float *b,
    int N, int IN, int OUT)
{
	linear_fwd_tiles(y, x, w, b, N, IN, OUT);
}
#endif

struct colsum {
	float *db;
	const float *dy;
	int N, OUT;
};

/* db[o] += sum over rows of dy[:, o], for columns [o0, o1). */
static void
colsum_range(void *arg, int64_t o0, int64_t o1)
{
	struct colsum *c = arg;

	for (int n = 0; n < c->N; n++) {
		const float *dyn = c->dy + (size_t)n * c->OUT;
		for (int64_t o = o0; o < o1; o++)
			c->db[o] += dyn[o];
	}
}

void
vlm_linear_bwd_cpu(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT)
{
	if (dx)
		vlm_gemm_cpu(0, 0, N, IN, OUT, 1.0f, dy, OUT, w, IN, 1.0f, dx,
		    IN);
	if (dw)
		vlm_gemm_cpu(1, 0, OUT, IN, N, 1.0f, dy, OUT, x, IN, 1.0f, dw,
		    IN);
	if (db) {
		struct colsum c = { db, dy, N, OUT };
		vlm_parallel_for_cost(OUT, (int64_t)N * OUT, colsum_range, &c);
	}
}
