/*
 * matmul.c - general matrix product and the linear layer y = x w^T + b,
 * weights stored as PyTorch does (OUT, IN). The references are plain
 * loops. The fast GEMM cuts C into tiles fixed by the shape alone and
 * runs one single-threaded OpenBLAS SGEMM per tile on the thread pool:
 * OpenBLAS's own threading splits work by its thread count, which
 * changes the rounding of some elements, so it is not used. Bias sums
 * are split by columns, each summed in row order.
 */
#include <string.h>

#include <cblas.h>

#include "base/base.h"
#include "kernels.h"

#define TILE 384	/* rows and columns of a GEMM tile */

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
};

/* Tiles [t0, t1), numbered row-major over the mt x nt grid. */
static void
gemm_tiles(void *arg, int64_t t0, int64_t t1)
{
	struct gemm *g = arg;

	for (int64_t t = t0; t < t1; t++) {
		int i0 = (int)(t / g->nt) * TILE, j0 = (int)(t % g->nt) * TILE;
		int m = g->mt == 1 ? g->M : g->M - i0 < TILE ? g->M - i0 : TILE;
		int n = g->nt == 1 ? g->N : g->N - j0 < TILE ? g->N - j0 : TILE;
		const float *a = g->ta ? g->A + i0 : g->A + (size_t)i0 * g->lda;
		const float *b = g->tb ? g->B + (size_t)j0 * g->ldb : g->B + j0;
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

void
vlm_gemm_cpu(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc)
{
	struct gemm g = { ta, tb, M, N, K, lda, ldb, ldc, ntiles(M),
	    ntiles(N), alpha, beta, A, B, C };

	if (M <= 0 || N <= 0)
		return;
	vlm_parallel_for_cost((int64_t)g.mt * g.nt, 2 * (int64_t)M * N * K,
	    gemm_tiles, &g);
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

void
vlm_linear_fwd_cpu(float *y, const float *x, const float *w, const float *b,
    int N, int IN, int OUT)
{
	if (b)
		for (int n = 0; n < N; n++)
			memcpy(y + (size_t)n * OUT, b, OUT * sizeof(*b));
	vlm_gemm_cpu(0, 1, N, OUT, IN, 1.0f, x, IN, w, IN, b ? 1.0f : 0.0f,
	    y, OUT);
}

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
