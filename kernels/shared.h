/*
 * shared.h - the pieces of the kernels written once for the host and
 * the device: the files of kernels/cpu use them as plain static inline
 * functions, those of kernels/cuda (nvcc) as __host__ __device__ ones,
 * so the CPU oracle and the GPU version share the arithmetic where it
 * is the same per row or per group.
 */
#ifndef VLM_SHARED_H
#define VLM_SHARED_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define VLM_HD __host__ __device__
#else
#define VLM_HD
#endif

/* TokenLearner's act for R = B N rows (vlm_token_learner_act_floats). */
struct vlm_tl_act {
	float *xn;     /* (R,D) LayerNorm output */
	float *mean;   /* (R) */
	float *rstd;   /* (R) */
	float *pre;    /* (R,Hd) before GELU */
	float *h;      /* (R,Hd) after GELU */
	float *att;    /* (R,M) = (B,N,M) softmax over N */
	float *dlogit; /* (R,M) backward scratch */
	float *dh;     /* (R,Hd) backward scratch */
	float *dxn;    /* (R,D) backward scratch */
};

static inline VLM_HD struct vlm_tl_act
vlm_tl_views(float *act, int B, int N, int D, int Hd, int M)
{
	size_t R = (size_t)B * N;
	struct vlm_tl_act a;

	a.xn = act;
	a.mean = a.xn + R * D;
	a.rstd = a.mean + R;
	a.pre = a.rstd + R;
	a.h = a.pre + R * Hd;
	a.att = a.h + R * Hd;
	a.dlogit = a.att + R * M;
	a.dh = a.dlogit + R * M;
	a.dxn = a.dh + R * Hd;
	return a;
}

/* CV^2 = var / mean^2 with population variance; grad (or NULL) =
 * dCV^2/dv. The importance and load losses. */
static inline VLM_HD double
vlm_cv2(const double *v, int E, double *grad)
{
	double m = 0, var = 0;

	for (int e = 0; e < E; e++)
		m += v[e];
	m /= E;
	for (int e = 0; e < E; e++)
		var += (v[e] - m) * (v[e] - m);
	var /= E;
	for (int e = 0; grad && e < E; e++)
		grad[e] = 2.0 / (E * m * m) * ((v[e] - m) - var / m);
	return var / (m * m);
}

/* dz += p * (dp - p . dp): the softmax backward of one row (the aux
 * losses' gradients into the router logits). */
static inline VLM_HD void
vlm_softmax_bwd_row(float *dz, const float *p, const double *dp, int E)
{
	double dot = 0;

	for (int e = 0; e < E; e++)
		dot += p[e] * dp[e];
	for (int e = 0; e < E; e++)
		dz[e] += (float)(p[e] * (dp[e] - dot));
}

/* Routing's gate path for token s: dw (S,K) through the top-K
 * normalisation (if gate_norm; dropped choices still count in its sum)
 * and the softmax that made g, into dz (S,E). */
static inline VLM_HD void
vlm_route_bwd_row(float *dz, const float *dw, const float *g,
    const int32_t *idx, const uint8_t *keep, int s, int E, int K,
    int gate_norm)
{
	const float *gs = g + (size_t)s * E, *dws = dw + (size_t)s * K;
	const int32_t *is = idx + (size_t)s * K;
	const uint8_t *ks = keep + (size_t)s * K;
	float *dzs = dz + (size_t)s * E;
	float sum = 0, dot = 0, sw = 0;

	for (int j = 0; j < K; j++)
		sum += gs[is[j]];
	for (int j = 0; j < K; j++) /* sum_j dw_j w_j */
		sw += ks[j] ? dws[j] * gs[is[j]] / sum : 0;
	for (int j = 0; j < K; j++) { /* dval_j, then softmax */
		float dv = ks[j] ? dws[j] : 0;
		if (gate_norm)
			dv = (dv - sw) / sum;
		dot += gs[is[j]] * dv;
		dzs[is[j]] += gs[is[j]] * dv;
	}
	for (int e = 0; e < E; e++)
		dzs[e] -= gs[e] * dot;
}

/* Index of the K-th largest z + eps (ties: the lower index ranks first). */
static inline VLM_HD int
vlm_kth_index(const float *z, const float *eps, int E, int K)
{
	int prev = -1;

	for (int j = 0; j < K; j++) {
		int best = -1;
		for (int e = 0; e < E; e++) {
			float v = z[e] + eps[e];
			float pv = prev < 0 ? 0 : z[prev] + eps[prev];
			if (prev >= 0 && !(v < pv || (v == pv && e > prev)))
				continue; /* ranks at or before prev */
			if (best < 0 || v > z[best] + eps[best])
				best = e;
		}
		prev = best;
	}
	return prev;
}

/* Top-K of one row, plainly: K passes, ties to the lower index. */
static inline VLM_HD void
vlm_topk_row(int32_t *idx, float *val, const float *g, int E, int K)
{
	for (int j = 0; j < K; j++) {
		int best = -1;
		for (int e = 0; e < E; e++) {
			int taken = 0;
			for (int i = 0; i < j; i++)
				taken |= idx[i] == e;
			if (!taken && (best < 0 || g[e] > g[best]))
				best = e;
		}
		idx[j] = best;
		val[j] = g[best];
	}
}

/* MAP attention of example b, head h over n of T keys (pool.c). */
static inline VLM_HD void
vlm_map_head(float *out, float *att, const float *q, const float *k,
    const float *v, int b, int h, int n, int T, int C, int H)
{
	int hd = C / H;
	float scale = 1.0f / sqrtf((float)hd), max = -INFINITY, sum = 0;
	float *a = att + ((size_t)b * H + h) * T;
	float *o = out + (size_t)b * C + h * hd;

	for (int t = 0; t < T; t++) {
		const float *kt = k + ((size_t)b * T + t) * C + h * hd;
		float dot = 0;
		for (int i = 0; i < hd; i++)
			dot += q[h * hd + i] * kt[i];
		a[t] = dot * scale;
		if (t < n && a[t] > max)
			max = a[t];
	}
	for (int t = 0; t < T; t++) {
		a[t] = t < n ? expf(a[t] - max) : 0;
		sum += a[t];
	}
	for (int i = 0; i < hd; i++)
		o[i] = 0;
	for (int t = 0; t < n; t++) {
		const float *vt = v + ((size_t)b * T + t) * C + h * hd;
		a[t] /= sum;
		for (int i = 0; i < hd; i++)
			o[i] += a[t] * vt[i];
	}
}

#endif
