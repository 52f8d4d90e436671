/*
 * adamw.c - the AdamW step and global-norm gradient clipping, with
 * torch.optim.AdamW's and clip_grad_norm_'s arithmetic: scalar factors in
 * double, rounded once to float, the tensor arithmetic in float:
 *   p *= 1 - lr wd;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 * The fast versions thread the elements; the norm is summed in double
 * over fixed blocks, so every thread count gives the same bits.
 */
#include <assert.h>
#include <math.h>

#include "base/base.h"
#include "kernels.h"

struct adamw {
	float *p, *m, *v;
	const float *g;
	float decay, w1, b2, w2, step, bc2, eps;
};

static void
adamw_setup(struct adamw *a, int64_t t, float lr, float beta1, float beta2,
    float eps, float wd)
{
	assert(t >= 1);
	a->decay = (float)(1.0 - (double)lr * wd);
	a->w1 = (float)(1.0 - beta1);
	a->b2 = beta2;
	a->w2 = (float)(1.0 - beta2);
	a->step = (float)(lr / (1.0 - pow(beta1, (double)t)));
	a->bc2 = (float)sqrt(1.0 - pow(beta2, (double)t));
	a->eps = eps;
}

/* Elements [i0, i1) of one step. */
static void
adamw_range(void *arg, int64_t i0, int64_t i1)
{
	struct adamw *a = arg;

	for (int64_t i = i0; i < i1; i++) {
		float g = a->g[i], m = a->m[i];
		a->p[i] *= a->decay;
		/* torch.lerp: start + w (end - start) for w < 0.5 */
		m = a->w1 < 0.5f ? m + a->w1 * (g - m) :
		    g - (g - m) * (1.0f - a->w1);
		a->m[i] = m;
		a->v[i] = a->v[i] * a->b2 + a->w2 * (g * g);
		a->p[i] += -a->step * (m / (sqrtf(a->v[i]) / a->bc2 +
		    a->eps));
	}
}

void
vlm_adamw_step_ref(float *p, float *m, float *v, const float *g, int64_t n,
    int64_t t, float lr, float beta1, float beta2, float eps, float wd)
{
	struct adamw a = { .p = p, .m = m, .v = v, .g = g };

	adamw_setup(&a, t, lr, beta1, beta2, eps, wd);
	adamw_range(&a, 0, n);
}

void
vlm_adamw_step_cpu(float *p, float *m, float *v, const float *g, int64_t n,
    int64_t t, float lr, float beta1, float beta2, float eps, float wd)
{
	struct adamw a = { .p = p, .m = m, .v = v, .g = g };

	adamw_setup(&a, t, lr, beta1, beta2, eps, wd);
	vlm_parallel_for_cost(n, 12 * n, adamw_range, &a);
}

/* clip_grad_norm_'s factor max_norm / (norm + 1e-6), at most 1. */
static float
clip_coef(double norm, float max_norm)
{
	float coef = (float)(max_norm / (norm + 1e-6));

	return max_norm > 0 && coef < 1.0f ? coef : 1.0f;
}

float
vlm_grad_clip_ref(float *g, int64_t n, float max_norm)
{
	double s = 0.0;
	float coef;

	for (int64_t i = 0; i < n; i++)
		s += (double)g[i] * g[i];
	coef = clip_coef(sqrt(s), max_norm);
	for (int64_t i = 0; i < n && coef < 1.0f; i++)
		g[i] *= coef;
	return (float)sqrt(s);
}

#define CLIP_BLOCK 65536	/* elements summed by one job index */
#define CLIP_BATCH 256		/* job indices per parallel call */

struct clip {
	float *g;
	float coef;
	int64_t n;
	double part[CLIP_BATCH];
	int64_t first;		/* block of part[0] */
};

static void
sumsq_blocks(void *arg, int64_t k0, int64_t k1)
{
	struct clip *c = arg;

	for (int64_t k = k0; k < k1; k++) {
		int64_t i0 = (c->first + k) * CLIP_BLOCK, i1 = i0 + CLIP_BLOCK;
		double s = 0.0;
		if (i1 > c->n)
			i1 = c->n;
		for (int64_t i = i0; i < i1; i++)
			s += (double)c->g[i] * c->g[i];
		c->part[k] = s;
	}
}

static void
scale_range(void *arg, int64_t i0, int64_t i1)
{
	struct clip *c = arg;

	for (int64_t i = i0; i < i1; i++)
		c->g[i] *= c->coef;
}

float
vlm_grad_clip_cpu(float *g, int64_t n, float max_norm)
{
	struct clip c = { .g = g, .n = n };
	int64_t nblocks = (n + CLIP_BLOCK - 1) / CLIP_BLOCK;
	double s = 0.0;

	for (c.first = 0; c.first < nblocks; c.first += CLIP_BATCH) {
		int64_t k = nblocks - c.first;
		if (k > CLIP_BATCH)
			k = CLIP_BATCH;
		vlm_parallel_for(k, sumsq_blocks, &c);
		for (int64_t i = 0; i < k; i++)
			s += c.part[i];
	}
	c.coef = clip_coef(sqrt(s), max_norm);
	if (c.coef < 1.0f)
		vlm_parallel_for_cost(n, n, scale_range, &c);
	return (float)sqrt(s);
}
