/*
 * layernorm.c - LayerNorm over the last dimension (eps 1e-5, affine), as
 * torch.nn.LayerNorm: biased variance, two passes for accuracy. The fast
 * version threads rows for y and dx, and columns for dw and db (each
 * column summed in row order, so any thread count gives the same bits);
 * its forward sums each row in 16 interleaved partial sums, which
 * vectorise (the reference's one running sum cannot).
 */
#include <math.h>

#include "base/base.h"
#include "kernels.h"

#define LN_EPS 1e-5f

/* Row n of y = (x - m) s w + b, and its m and s where kept. */
static inline __attribute__((always_inline)) void
ln_out(float *y, float *mean, float *rstd, const float *x, const float *w,
    const float *b, int C, int64_t n, float m, float s)
{
	const float *xn = x + (size_t)n * C;
	float *yn = y + (size_t)n * C;

	for (int c = 0; c < C; c++)
		yn[c] = (xn[c] - m) * s * w[c] + b[c];
	if (mean)
		mean[n] = m;
	if (rstd)
		rstd[n] = s;
}

/* Normalise rows [n0, n1). */
static void
ln_fwd_rows(float *y, float *mean, float *rstd, const float *x,
    const float *w, const float *b, int C, int64_t n0, int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *xn = x + (size_t)n * C;
		float m = 0.0f, v = 0.0f;
		for (int c = 0; c < C; c++)
			m += xn[c];
		m /= C;
		for (int c = 0; c < C; c++)
			v += (xn[c] - m) * (xn[c] - m);
		v /= C;
		ln_out(y, mean, rstd, x, w, b, C, n, m,
		    1.0f / sqrtf(v + LN_EPS));
	}
}

/* dx rows [n0, n1): rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)). */
static void
ln_bwd_rows(float *dx, const float *dy, const float *x, const float *w,
    const float *mean, const float *rstd, int C, int64_t n0, int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *xn = x + (size_t)n * C, *dyn = dy + (size_t)n * C;
		float *dxn = dx + (size_t)n * C;
		float m = mean[n], s = rstd[n], a = 0.0f, bn = 0.0f;
		for (int c = 0; c < C; c++) {
			float dn = w[c] * dyn[c];
			a += dn;
			bn += dn * (xn[c] - m) * s;
		}
		a /= C;
		bn /= C;
		for (int c = 0; c < C; c++) {
			float dn = w[c] * dyn[c], norm = (xn[c] - m) * s;
			dxn[c] += s * (dn - a - norm * bn);
		}
	}
}

/* dw, db for columns [c0, c1), summing rows in order. */
static void
ln_bwd_cols(float *dw, float *db, const float *dy, const float *x,
    const float *mean, const float *rstd, int N, int C, int64_t c0,
    int64_t c1)
{
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * C, *dyn = dy + (size_t)n * C;
		for (int64_t c = c0; c < c1; c++) {
			if (dw)
				dw[c] += dyn[c] * ((xn[c] - mean[n]) * rstd[n]);
			if (db)
				db[c] += dyn[c];
		}
	}
}

#define LANES 16
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))

/* Sum of x[0..C) (minus m, squared, when sq): LANES running sums, each
 * over every LANES-th element, then added in order, then the tail. */
static inline __attribute__((always_inline)) float
lane_sum(const float *x, int C, float m, int sq)
{
	float acc[LANES] = { 0 }, s = 0.0f;
	int c = 0;

	for (; c + LANES <= C; c += LANES)
		for (int k = 0; k < LANES; k++)
			acc[k] += sq ? (x[c + k] - m) * (x[c + k] - m) :
			    x[c + k];
	for (int k = 0; k < LANES; k++)
		s += acc[k];
	for (; c < C; c++)
		s += sq ? (x[c] - m) * (x[c] - m) : x[c];
	return s;
}

/* ln_fwd_rows with lane sums. */
WIDE static void
ln_fwd_rows_fast(float *y, float *mean, float *rstd, const float *x,
    const float *w, const float *b, int C, int64_t n0, int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *xn = x + (size_t)n * C;
		float m = lane_sum(xn, C, 0.0f, 0) / C;
		ln_out(y, mean, rstd, x, w, b, C, n, m,
		    1.0f / sqrtf(lane_sum(xn, C, m, 1) / C + LN_EPS));
	}
}

void
vlm_layernorm_fwd_ref(float *y, float *mean, float *rstd, const float *x,
    const float *w, const float *b, int N, int C)
{
	ln_fwd_rows(y, mean, rstd, x, w, b, C, 0, N);
}

void
vlm_layernorm_bwd_ref(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, const float *mean, const float *rstd,
    int N, int C)
{
	if (dx)
		ln_bwd_rows(dx, dy, x, w, mean, rstd, C, 0, N);
	if (dw || db)
		ln_bwd_cols(dw, db, dy, x, mean, rstd, N, C, 0, C);
}

struct ln {
	float *y, *mean, *rstd, *dx, *dw, *db;
	const float *x, *w, *b, *dy, *cmean, *crstd;
	int N, C;
};

static void
ln_fwd_job(void *arg, int64_t n0, int64_t n1)
{
	struct ln *a = arg;

	ln_fwd_rows_fast(a->y, a->mean, a->rstd, a->x, a->w, a->b, a->C, n0,
	    n1);
}

static void
ln_bwd_row_job(void *arg, int64_t n0, int64_t n1)
{
	struct ln *a = arg;

	ln_bwd_rows(a->dx, a->dy, a->x, a->w, a->cmean, a->crstd, a->C, n0,
	    n1);
}

static void
ln_bwd_col_job(void *arg, int64_t c0, int64_t c1)
{
	struct ln *a = arg;

	ln_bwd_cols(a->dw, a->db, a->dy, a->x, a->cmean, a->crstd, a->N,
	    a->C, c0, c1);
}

void
vlm_layernorm_fwd_cpu(float *y, float *mean, float *rstd, const float *x,
    const float *w, const float *b, int N, int C)
{
	struct ln a = { .y = y, .mean = mean, .rstd = rstd, .x = x, .w = w,
	    .b = b, .N = N, .C = C };

	vlm_parallel_for_cost(N, (int64_t)N * C * 8, ln_fwd_job, &a);
}

void
vlm_layernorm_bwd_cpu(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, const float *mean, const float *rstd,
    int N, int C)
{
	struct ln a = { .dx = dx, .dw = dw, .db = db, .dy = dy, .x = x,
	    .w = w, .cmean = mean, .crstd = rstd, .N = N, .C = C };

	if (dx)
		vlm_parallel_for_cost(N, (int64_t)N * C * 10, ln_bwd_row_job,
		    &a);
	if (dw || db)
		vlm_parallel_for_cost(C, (int64_t)N * C * 4, ln_bwd_col_job,
		    &a);
}
