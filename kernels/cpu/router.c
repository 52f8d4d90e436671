/*
 * router.c - the MoE router of ALGORITHMS.md section 2: logits
 * z = x W_r^T (fp32, no bias), clean probabilities p = softmax(z) and
 * gates g = softmax(z + eps), where the caller draws eps (train-time noise
 * N(0, (noise/E)^2)) so that routing stays reproducible and testable.
 * The backward takes the finished logit gradient dz (the gate path of
 * vlm_moe_route_bwd plus the aux losses) to dx and dW_r.
 */
#include <assert.h>
#include <math.h>

#include <cblas.h>

#include "kernels.h"

/* out = softmax(z + eps) over one row of E (eps may be NULL). */
static void
softmax_row(float *out, const float *z, const float *eps, int E)
{
	float max = -INFINITY, sum = 0;

	for (int e = 0; e < E; e++) {
		out[e] = z[e] + (eps ? eps[e] : 0.0f);
		if (out[e] > max)
			max = out[e];
	}
	for (int e = 0; e < E; e++) {
		out[e] = expf(out[e] - max);
		sum += out[e];
	}
	for (int e = 0; e < E; e++)
		out[e] /= sum;
}

/* The two softmaxes of every row, shared by both versions. */
static void
router_probs(float *p, float *g, const float *z, const float *eps, int S,
    int E)
{
	for (int s = 0; s < S; s++) {
		const float *zs = z + (size_t)s * E;
		softmax_row(p + (size_t)s * E, zs, NULL, E);
		softmax_row(g + (size_t)s * E, zs,
		    eps ? eps + (size_t)s * E : NULL, E);
	}
}

/* Logits, probabilities and gates by plain loops. */
void
vlm_router_fwd_ref(float *z, float *p, float *g, const float *x,
    const float *wr, const float *eps, int S, int D, int E)
{
	for (int s = 0; s < S; s++)
		for (int e = 0; e < E; e++) {
			const float *xs = x + (size_t)s * D;
			const float *we = wr + (size_t)e * D;
			float acc = 0;
			for (int d = 0; d < D; d++)
				acc += xs[d] * we[d];
			z[(size_t)s * E + e] = acc;
		}
	router_probs(p, g, z, eps, S, E);
}

/* The same with the logits as one sgemm. */
void
vlm_router_fwd_cpu(float *z, float *p, float *g, const float *x,
    const float *wr, const float *eps, int S, int D, int E)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, E, D, 1.0f,
	    x, D, wr, D, 0.0f, z, E);
	router_probs(p, g, z, eps, S, E);
}

/* dx += dz W_r, dW_r += dz^T x, by plain loops. */
void
vlm_router_bwd_ref(float *dx, float *dwr, const float *dz, const float *x,
    const float *wr, int S, int D, int E)
{
	for (int s = 0; s < S; s++)
		for (int e = 0; e < E; e++) {
			float d = dz[(size_t)s * E + e];
			for (int k = 0; k < D; k++) {
				if (dx)
					dx[(size_t)s * D + k] +=
					    d * wr[(size_t)e * D + k];
				if (dwr)
					dwr[(size_t)e * D + k] +=
					    d * x[(size_t)s * D + k];
			}
		}
}

/* The same as two sgemms. */
void
vlm_router_bwd_cpu(float *dx, float *dwr, const float *dz, const float *x,
    const float *wr, int S, int D, int E)
{
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, D,
		    E, 1.0f, dz, E, wr, D, 1.0f, dx, D);
	if (dwr)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, D, S,
		    1.0f, dz, E, x, D, 1.0f, dwr, D);
}
