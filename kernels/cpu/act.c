/*
 * act.c - elementwise activations of the transformer MLP: GELU with the
 * exact erf (nn.GELU()) and OpenAI CLIP's QuickGELU x sigmoid(1.702 x).
 * The fast QuickGELU runs the same per-element code on the thread pool;
 * the fast GELU replaces libm's erff and expf with branch-free float
 * approximations (erf within 2e-7 absolute, tests/test-kernels-dense.c
 * measures it) that gcc -O2 vectorises over fixed chunks.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "kernels.h"
#include "vmath.h"

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

/*
 * Vectorisable erf and GELU (exp_neg: vmath.h).  Each works on CHUNK
 * elements at a time through a local copy, so that the loops have a fixed
 * trip count and no aliasing (gcc -O2's cheap vectoriser asks for both)
 * and y may be x.
 */
#define CHUNK 64

/*
 * erf(x): x P(x^2) for |x| < 0.921875, else 1 - exp(-t^2 + S(t - 2.5))
 * with t = |x| clamped to 4 (erf rounds to 1 there).  P and S are least
 * squares fits in 40-digit arithmetic (mpmath) on Chebyshev nodes.
 */
INLINE float
erf_fast(float x)
{
	float t = x < 0 ? -x : x, s = x * x, u, p, q;

	t = t < 4.0f ? t : 4.0f;	/* NaN goes to 4, x keeps it */
	p = 8.438768297e-05f;
	p = p * s - 8.160783787e-04f;
	p = p * s + 5.202835678e-03f;
	p = p * s - 2.686024116e-02f;
	p = p * s + 1.128371385e-01f;
	p = p * s - 3.761263530e-01f;
	p = p * s + 1.128379167e+00f;
	u = t - 2.5f;
	q = -5.464846784e-08f;
	q = q * u - 5.895964775e-08f;
	q = q * u + 1.918088891e-06f;
	q = q * u - 1.300932940e-05f;
	q = q * u + 7.680372413e-05f;
	q = q * u - 4.206542272e-04f;
	q = q * u + 2.165627542e-03f;
	q = q * u - 1.085819594e-02f;
	q = q * u + 5.610623078e-02f;
	q = q * u - 3.526807358e-01f;
	q = q * u - 1.556815271e+00f;
	q = 1.0f - exp_neg(q - t * t);
	q = x < 0 ? -q : q;
	return t < 0.921875f ? x * p : q;
}

WIDE static void
gelu_fwd_fast(float *y, const float *x, int64_t n)
{
	float b[CHUNK];

	for (int64_t i0 = 0; i0 + CHUNK <= n; i0 += CHUNK) {
		memcpy(b, x + i0, sizeof(b));
		for (int i = 0; i < CHUNK; i++)
			b[i] = 0.5f * b[i] * (1.0f +
			    erf_fast(b[i] * (float)M_SQRT1_2));
		memcpy(y + i0, b, sizeof(b));
	}
	for (int64_t i = n - n % CHUNK; i < n; i++)
		y[i] = 0.5f * x[i] * (1.0f + erf_fast(x[i] * (float)M_SQRT1_2));
}

/* Phi(x) + x phi(x), as gelu_grad above. */
INLINE float
gelu_grad_fast(float x)
{
	float cdf = 0.5f * (1.0f + erf_fast(x * (float)M_SQRT1_2));

	return cdf + x * exp_neg(-0.5f * x * x) *
	    (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
}

WIDE static void
gelu_bwd_fast(float *dx, const float *dy, const float *x, int64_t n)
{
	float b[CHUNK];

	for (int64_t i0 = 0; i0 + CHUNK <= n; i0 += CHUNK) {
		memcpy(b, x + i0, sizeof(b));
		for (int i = 0; i < CHUNK; i++)
			b[i] = dy[i0 + i] * gelu_grad_fast(b[i]);
		for (int i = 0; i < CHUNK; i++)
			dx[i0 + i] += b[i];
	}
	for (int64_t i = n - n % CHUNK; i < n; i++)
		dx[i] += dy[i] * gelu_grad_fast(x[i]);
}

struct act {
	float *out;
	const float *dy, *x;
};

static void
gelu_fwd_job(void *arg, int64_t i0, int64_t i1)
{
	struct act *a = arg;

	gelu_fwd_fast(a->out + i0, a->x + i0, i1 - i0);
}

static void
gelu_bwd_job(void *arg, int64_t i0, int64_t i1)
{
	struct act *a = arg;

	gelu_bwd_fast(a->out + i0, a->dy + i0, a->x + i0, i1 - i0);
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
