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
 */
#include <stdint.h>
#include <string.h>

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

void
vlm_linear_fwd_cpu(float *y, const float *x, const float *w, const float *b,
    int N, int IN, int OUT)
{
	struct gemm g = { 0, 1, N, OUT, IN, IN, IN, OUT, 1, 1, 1.0f,
	    b ? 1.0f : 0.0f, x, w, y, b };

	gemm_run(&g);	/* each tile copies its part of the bias first */
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
