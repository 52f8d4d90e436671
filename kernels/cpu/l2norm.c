/*
 * l2norm.c - L2 normalisation of rows, y = x / max(|x|, 1e-12), as
 * torch.nn.functional.normalize (CLIP's embeddings before the loss).
 * The norm is summed in double; the fast version threads rows.
 */
#include <math.h>

#include "base/base.h"
#include "kernels.h"

#define L2_EPS 1e-12

static void
l2_rows(float *y, float *norm, const float *x, int C, int64_t n0,
    int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *xn = x + (size_t)n * C;
		float *yn = y + (size_t)n * C;
		double s = 0.0;
		for (int c = 0; c < C; c++)
			s += (double)xn[c] * xn[c];
		s = fmax(sqrt(s), L2_EPS);
		for (int c = 0; c < C; c++)
			yn[c] = (float)(xn[c] / s);
		if (norm)
			norm[n] = (float)s;
	}
}

/* dx += (dy - y (y . dy)) / |x|; below the clamp y = x / eps is linear. */
static void
l2_bwd_rows(float *dx, const float *dy, const float *y, const float *norm,
    int C, int64_t n0, int64_t n1)
{
	for (int64_t n = n0; n < n1; n++) {
		const float *dyn = dy + (size_t)n * C, *yn = y + (size_t)n * C;
		float *dxn = dx + (size_t)n * C;
		double s = 0.0;
		if (norm[n] > (float)L2_EPS)
			for (int c = 0; c < C; c++)
				s += (double)yn[c] * dyn[c];
		for (int c = 0; c < C; c++)
			dxn[c] += (float)((dyn[c] - yn[c] * s) / norm[n]);
	}
}

void
vlm_l2norm_fwd_ref(float *y, float *norm, const float *x, int N, int C)
{
	l2_rows(y, norm, x, C, 0, N);
}

void
vlm_l2norm_bwd_ref(float *dx, const float *dy, const float *y,
    const float *norm, int N, int C)
{
	l2_bwd_rows(dx, dy, y, norm, C, 0, N);
}

struct l2 {
	float *out, *norm;
	const float *dy, *in, *cnorm;
	int C;
};

static void
fwd_job(void *arg, int64_t n0, int64_t n1)
{
	struct l2 *a = arg;

	l2_rows(a->out, a->norm, a->in, a->C, n0, n1);
}

static void
bwd_job(void *arg, int64_t n0, int64_t n1)
{
	struct l2 *a = arg;

	l2_bwd_rows(a->out, a->dy, a->in, a->cnorm, a->C, n0, n1);
}

void
vlm_l2norm_fwd_cpu(float *y, float *norm, const float *x, int N, int C)
{
	struct l2 a = { .out = y, .norm = norm, .in = x, .C = C };

	vlm_parallel_for_cost(N, (int64_t)N * C * 4, fwd_job, &a);
}

void
vlm_l2norm_bwd_cpu(float *dx, const float *dy, const float *y,
    const float *norm, int N, int C)
{
	struct l2 a = { .out = dx, .dy = dy, .in = y, .cnorm = norm, .C = C };

	vlm_parallel_for_cost(N, (int64_t)N * C * 4, bwd_job, &a);
}
