/*
 * rows.c - the sums and row moves the model used to do in host loops:
 * y += x (residual branches, gradient accumulation), y *= a, the gather and
 * scatter-add of routed rows (the tokens of one MoE pool out of their
 * stack, and their outputs back). One pass over memory each; the _cpu
 * versions split it over the thread pool (every element is written by
 * one thread, so results are bit-identical to _ref).
 */
#include <string.h>

#include "base/base.h"
#include "kernels.h"

void
vlm_add_ref(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += x[i];
}

void
vlm_scale_ref(float *y, float a, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] *= a;
}

void
vlm_rows_gather_ref(float *y, const float *x, const int32_t *rows, int S,
    int D)
{
	for (int s = 0; s < S; s++)
		memcpy(y + (size_t)s * D, x + (size_t)rows[s] * D,
		    (size_t)D * sizeof(float));
}

void
vlm_rows_scatter_add_ref(float *x, const float *y, const int32_t *rows,
    int S, int D)
{
	for (int s = 0; s < S; s++)
		vlm_add_ref(x + (size_t)rows[s] * D, y + (size_t)s * D, D);
}

struct rows_job {
	float *y;
	const float *x;
	const int32_t *rows;
	int D;
	float a;
};

static void
add_job(void *arg, int64_t i0, int64_t i1)
{
	struct rows_job *j = arg;

	vlm_add_ref(j->y + i0, j->x + i0, i1 - i0);
}

static void
scale_job(void *arg, int64_t i0, int64_t i1)
{
	struct rows_job *j = arg;

	vlm_scale_ref(j->y + i0, j->a, i1 - i0);
}

static void
gather_job(void *arg, int64_t s0, int64_t s1)
{
	struct rows_job *j = arg;

	vlm_rows_gather_ref(j->y + s0 * j->D, j->x, j->rows + s0,
	    (int)(s1 - s0), j->D);
}

static void
scatter_job(void *arg, int64_t s0, int64_t s1)
{
	struct rows_job *j = arg;

	/* here y is the stack (R,D) and x the routed rows (S,D) */
	vlm_rows_scatter_add_ref(j->y, j->x + s0 * j->D, j->rows + s0,
	    (int)(s1 - s0), j->D);
}

void
vlm_add_cpu(float *y, const float *x, int64_t n)
{
	struct rows_job j = { y, x, NULL, 1, 0.0f };

	vlm_parallel_for_cost(n, n, add_job, &j);
}

void
vlm_scale_cpu(float *y, float a, int64_t n)
{
	struct rows_job j = { y, NULL, NULL, 1, a };

	vlm_parallel_for_cost(n, n, scale_job, &j);
}

void
vlm_rows_gather_cpu(float *y, const float *x, const int32_t *rows, int S,
    int D)
{
	struct rows_job j = { y, x, rows, D, 0.0f };

	vlm_parallel_for_cost(S, (int64_t)S * D, gather_job, &j);
}

void
vlm_rows_scatter_add_cpu(float *x, const float *y, const int32_t *rows,
    int S, int D)
{
	struct rows_job j = { x, y, rows, D, 0.0f };

	vlm_parallel_for_cost(S, (int64_t)S * D, scatter_job, &j);
}
