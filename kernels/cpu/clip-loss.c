/*
 * clip-loss.c - the CLIP contrastive loss (OpenCLIP ClipLoss, one
 * process): logits = exp(theta) u v^T, loss = the mean of the image->text
 * and text->image cross-entropies with the diagonal as labels. The
 * forward saves the logits and the row and column log-sum-exps; the
 * backward turns them into dL/dlogits and then du, dv and dtheta. The
 * fast version does the products with vlm_gemm_cpu and threads the rows.
 */
#include <math.h>

#include "base/base.h"
#include "kernels.h"

/* lse of n values with stride st. */
static float
lse(const float *x, int n, size_t st)
{
	float mx = -INFINITY;
	double s = 0.0;

	for (int i = 0; i < n; i++)
		mx = fmaxf(mx, x[i * st]);
	for (int i = 0; i < n; i++)
		s += exp((double)x[i * st] - mx);
	return mx + (float)log(s);
}

/* lse (2,B): entries [k0, k1) (rows 0..B-1, then columns). */
static void
lse_range(float *out, const float *logits, int B, int64_t k0, int64_t k1)
{
	for (int64_t k = k0; k < k1; k++)
		out[k] = k < B ? lse(logits + (size_t)k * B, B, 1) :
		    lse(logits + (k - B), B, B);
}

/* The loss from logits and lse, summed in double in a fixed order. */
static float
loss_of(const float *logits, const float *lse2, int B)
{
	double s = 0.0;

	for (int i = 0; i < B; i++)
		s += (double)lse2[i] + lse2[B + i] - 2.0 *
		    logits[(size_t)i * B + i];
	return (float)(s / (2.0 * B));
}

float
vlm_clip_loss_fwd_ref(float *logits, float *lse2, const float *u,
    const float *v, float theta, int B, int C)
{
	float t = expf(theta);

	for (int i = 0; i < B; i++)
		for (int j = 0; j < B; j++) {
			const float *ui = u + (size_t)i * C;
			const float *vj = v + (size_t)j * C;
			float s = 0.0f;
			for (int c = 0; c < C; c++)
				s += ui[c] * vj[c];
			logits[(size_t)i * B + j] = t * s;
		}
	lse_range(lse2, logits, B, 0, 2 * B);
	return loss_of(logits, lse2, B);
}

/* Rows [i0, i1) of dl = dloss/2B (softmax_row + softmax_col - 2I). */
static void
dlogits_rows(float *dl, const float *logits, const float *lse2, int B,
    float dloss, int64_t i0, int64_t i1)
{
	float k = dloss / (2.0f * B);

	for (int64_t i = i0; i < i1; i++)
		for (int j = 0; j < B; j++) {
			float l = logits[(size_t)i * B + j];
			float p = expf(l - lse2[i]) + expf(l - lse2[B + j]);
			p -= i == j ? 2.0f : 0.0f;
			dl[(size_t)i * B + j] = k * p;
		}
}

/* dtheta = sum dl * logits, since d logits / d theta = logits. */
static float
dtheta_of(const float *dl, const float *logits, int B)
{
	double s = 0.0;

	for (size_t i = 0; i < (size_t)B * B; i++)
		s += (double)dl[i] * logits[i];
	return (float)s;
}

void
vlm_clip_loss_bwd_ref(float *du, float *dv, float *dtheta, float *dlogits,
    const float *logits, const float *lse2, const float *u, const float *v,
    float theta, float dloss, int B, int C)
{
	float t = expf(theta);

	dlogits_rows(dlogits, logits, lse2, B, dloss, 0, B);
	if (dtheta)
		*dtheta += dtheta_of(dlogits, logits, B);
	for (int i = 0; i < B; i++)
		for (int j = 0; j < B; j++) {
			float g = t * dlogits[(size_t)i * B + j];
			for (int c = 0; c < C; c++) {
				if (du)
					du[(size_t)i * C + c] +=
					    g * v[(size_t)j * C + c];
				if (dv)
					dv[(size_t)j * C + c] +=
					    g * u[(size_t)i * C + c];
			}
		}
}

struct cl {
	float *lse2, *dl;
	const float *logits, *clse2;
	int B;
	float dloss;
};

static void
lse_job(void *arg, int64_t k0, int64_t k1)
{
	struct cl *a = arg;

	lse_range(a->lse2, a->logits, a->B, k0, k1);
}

static void
dl_job(void *arg, int64_t i0, int64_t i1)
{
	struct cl *a = arg;

	dlogits_rows(a->dl, a->logits, a->clse2, a->B, a->dloss, i0, i1);
}

float
vlm_clip_loss_fwd_cpu(float *logits, float *lse2, const float *u,
    const float *v, float theta, int B, int C)
{
	struct cl a = { .lse2 = lse2, .logits = logits, .B = B };

	vlm_gemm_cpu(0, 1, B, B, C, expf(theta), u, C, v, C, 0.0f, logits, B);
	vlm_parallel_for_cost(2 * B, (int64_t)B * B * 40, lse_job, &a);
	return loss_of(logits, lse2, B);
}

void
vlm_clip_loss_bwd_cpu(float *du, float *dv, float *dtheta, float *dlogits,
    const float *logits, const float *lse2, const float *u, const float *v,
    float theta, float dloss, int B, int C)
{
	struct cl a = { .clse2 = lse2, .dl = dlogits,
	    .logits = logits, .B = B, .dloss = dloss };
	float t = expf(theta);

	vlm_parallel_for_cost(B, (int64_t)B * B * 40, dl_job, &a);
	if (dtheta)
		*dtheta += dtheta_of(dlogits, logits, B);
	if (du)
		vlm_gemm_cpu(0, 0, B, C, B, t, dlogits, B, v, C, 1.0f, du, C);
	if (dv)
		vlm_gemm_cpu(1, 0, B, C, B, t, dlogits, B, u, C, 1.0f, dv, C);
}
