/*
 * softmax.c - row-wise softmax over the last dimension (max subtracted)
 * and its backward from the saved output. The fast version threads rows.
 */
#include <math.h>

#include "base/base.h"
#include "kernels.h"

/* Rows [n0, n1) of y = softmax(x). */
static void
softmax_rows(float *y, const float *x, int C, int64_t n0, int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *xn = x + (size_t)n * C;
		float *yn = y + (size_t)n * C;
		float mx = -INFINITY, sum = 0.0f;
		for (int c = 0; c < C; c++)
			mx = fmaxf(mx, xn[c]);
		for (int c = 0; c < C; c++) {
			yn[c] = expf(xn[c] - mx);
			sum += yn[c];
		}
		for (int c = 0; c < C; c++)
			yn[c] /= sum;
	}
}

/* Rows [n0, n1) of dx += y (dy - sum(dy y)). */
static void
softmax_bwd_rows(float *dx, const float *dy, const float *y, int C,
    int64_t n0, int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *dyn = dy + (size_t)n * C, *yn = y + (size_t)n * C;
		float *dxn = dx + (size_t)n * C;
		float dot = 0.0f;
		for (int c = 0; c < C; c++)
			dot += dyn[c] * yn[c];
		for (int c = 0; c < C; c++)
			dxn[c] += yn[c] * (dyn[c] - dot);
	}
}

void
vlm_softmax_fwd_ref(float *y, const float *x, int N, int C)
{
	softmax_rows(y, x, C, 0, N);
}

void
vlm_softmax_bwd_ref(float *dx, const float *dy, const float *y, int N,
    int C)
{
	softmax_bwd_rows(dx, dy, y, C, 0, N);
}

struct sm {
	float *out;
	const float *dy, *in;
	int C;
};

static void
fwd_job(void *arg, int64_t n0, int64_t n1)
{
	struct sm *a = arg;

	softmax_rows(a->out, a->in, a->C, n0, n1);
}

static void
bwd_job(void *arg, int64_t n0, int64_t n1)
{
	struct sm *a = arg;

	softmax_bwd_rows(a->out, a->dy, a->in, a->C, n0, n1);
}

void
vlm_softmax_fwd_cpu(float *y, const float *x, int N, int C)
{
	struct sm a = { y, NULL, x, C };

	vlm_parallel_for_cost(N, (int64_t)N * C * 20, fwd_job, &a);
}

void
vlm_softmax_bwd_cpu(float *dx, const float *dy, const float *y, int N,
    int C)
{
	struct sm a = { dx, dy, y, C };

	vlm_parallel_for_cost(N, (int64_t)N * C * 4, bwd_job, &a);
}
