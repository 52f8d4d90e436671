/*
 * act.c - elementwise activations of the transformer MLP: GELU with the
 * exact erf (nn.GELU()) and OpenAI CLIP's QuickGELU x sigmoid(1.702 x).
 * The fast versions run the same per-element code on the thread pool.
 */
#include <math.h>

#include "base/base.h"
#include "kernels.h"

#define QUICK 1.702f

static inline float
gelu(float x)
{
	return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
}

/* d gelu / dx = Phi(x) + x phi(x) */
static inline float
gelu_grad(float x)
{
	float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
	float pdf = expf(-0.5f * x * x) * (float)(0.5 * M_2_SQRTPI *
	    M_SQRT1_2);

	return cdf + x * pdf;
}

static inline float
sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

static inline float
quickgelu(float x)
{
	return x * sigmoid(QUICK * x);
}

/* d/dx x s(ax) = s + a x s (1 - s) */
static inline float
quickgelu_grad(float x)
{
	float s = sigmoid(QUICK * x);

	return s + QUICK * x * s * (1.0f - s);
}

void
vlm_gelu_fwd_ref(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = gelu(x[i]);
}

void
vlm_gelu_bwd_ref(float *dx, const float *dy, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		dx[i] += dy[i] * gelu_grad(x[i]);
}

void
vlm_quickgelu_fwd_ref(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = quickgelu(x[i]);
}

void
vlm_quickgelu_bwd_ref(float *dx, const float *dy, const float *x,
    int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		dx[i] += dy[i] * quickgelu_grad(x[i]);
}

struct act {
	float *out;
	const float *dy, *x;
};

static void
gelu_fwd_job(void *arg, int64_t i0, int64_t i1)
{
	struct act *a = arg;

	vlm_gelu_fwd_ref(a->out + i0, a->x + i0, i1 - i0);
}

static void
gelu_bwd_job(void *arg, int64_t i0, int64_t i1)
{
	struct act *a = arg;

	vlm_gelu_bwd_ref(a->out + i0, a->dy + i0, a->x + i0, i1 - i0);
}

static void
quickgelu_fwd_job(void *arg, int64_t i0, int64_t i1)
{
	struct act *a = arg;

	vlm_quickgelu_fwd_ref(a->out + i0, a->x + i0, i1 - i0);
}

static void
quickgelu_bwd_job(void *arg, int64_t i0, int64_t i1)
{
	struct act *a = arg;

	vlm_quickgelu_bwd_ref(a->out + i0, a->dy + i0, a->x + i0, i1 - i0);
}

/* About 20 flops per element (erf, exp). */
void
vlm_gelu_fwd_cpu(float *y, const float *x, int64_t n)
{
	struct act a = { y, NULL, x };

	vlm_parallel_for_cost(n, 20 * n, gelu_fwd_job, &a);
}

void
vlm_gelu_bwd_cpu(float *dx, const float *dy, const float *x, int64_t n)
{
	struct act a = { dx, dy, x };

	vlm_parallel_for_cost(n, 30 * n, gelu_bwd_job, &a);
}

void
vlm_quickgelu_fwd_cpu(float *y, const float *x, int64_t n)
{
	struct act a = { y, NULL, x };

	vlm_parallel_for_cost(n, 20 * n, quickgelu_fwd_job, &a);
}

void
vlm_quickgelu_bwd_cpu(float *dx, const float *dy, const float *x,
    int64_t n)
{
	struct act a = { dx, dy, x };

	vlm_parallel_for_cost(n, 20 * n, quickgelu_bwd_job, &a);
}
