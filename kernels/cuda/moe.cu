/*
 * moe.cu - MoE routing on the GPU (kernels.h, ALGORITHMS.md 2-3): the
 * router as an SGEMM and a softmax per token; routing in one block,
 * on the device (no host round trip): top-K per token in parallel, the
 * BPR order by each token's rank (the stable order of the CPU's sort),
 * then the capacity pass in the CPU's order by one thread, so that the
 * decisions are the CPU's exactly; dispatch and combine as gathers and
 * scatters over (token, choice, channel).
 */
#include "cuda.cuh"
#include "shared.h"

/* g (or p) of one row: softmax(z + eps) as the CPU computes it. */
static __device__ void
softmax_e(float *out, const float *z, const float *eps, int E)
{
	float max = -INFINITY, sum = 0;

	for (int e = 0; e < E; e++) {
		out[e] = z[e] + (eps ? eps[e] : 0.0f);
		max = fmaxf(max, out[e]);
	}
	for (int e = 0; e < E; e++) {
		out[e] = expf(out[e] - max);
		sum += out[e];
	}
	for (int e = 0; e < E; e++)
		out[e] /= sum;
}

static __global__ void
router_probs(float *p, float *g, const float *z, const float *eps, int S,
    int E)
{
	CU_FOR(s, S) {
		softmax_e(p + s * E, z + s * E, NULL, E);
		softmax_e(g + s * E, z + s * E, eps ? eps + s * E : NULL, E);
	}
}

void
vlm_router_fwd_cuda(float *z, float *p, float *g, const float *x,
    const float *wr, const float *eps, int S, int D, int E)
{
	vlm_gemm_cuda(0, 1, S, E, D, 1.0f, x, D, wr, D, 0.0f, z, E);
	CU_LAUNCH(router_probs, S, p, g, z, eps, S, E);
}

void
vlm_router_bwd_cuda(float *dx, float *dwr, const float *dz, const float *x,
    const float *wr, int S, int D, int E)
{
	if (dx)
		vlm_gemm_cuda(0, 0, S, D, E, 1.0f, dz, E, wr, D, 1.0f, dx, D);
	if (dwr)
		vlm_gemm_cuda(1, 0, E, D, S, 1.0f, dz, E, x, D, 1.0f, dwr, D);
}

/* The whole routing of one group, one block. */
static __global__ void
route(int32_t *idx, float *val, uint8_t *keep, int32_t *slot, float *w,
    int32_t *fill, int32_t *order, const float *g, int S, int E, int K,
    int C, int bpr, int gate_norm)
{
	for (int s = threadIdx.x; s < S; s += blockDim.x)
		vlm_topk_row(idx + (size_t)s * K, val + (size_t)s * K,
		    g + (size_t)s * E, E, K);
	__syncthreads();
	for (int s = threadIdx.x; s < S; s += blockDim.x) {
		float v = val[(size_t)s * K];
		int rank = 0;
		for (int t = 0; bpr && t < S; t++) { /* descending, stable */
			float u = val[(size_t)t * K];
			rank += u > v || (u == v && t < s);
		}
		order[bpr ? rank : s] = s;
	}
	__syncthreads();
	if (threadIdx.x == 0) { /* first choices first, in order */
		for (int e = 0; e < E; e++)
			fill[e] = 0;
		for (int j = 0; j < K; j++)
			for (int i = 0; i < S; i++) {
				size_t sj = (size_t)order[i] * K + j;
				int e = idx[sj];
				keep[sj] = fill[e] < C;
				slot[sj] = keep[sj] ? fill[e]++ : -1;
			}
	}
	__syncthreads();
	for (int s = threadIdx.x; s < S; s += blockDim.x) {
		const float *v = val + (size_t)s * K;
		float sum = 0;
		for (int j = 0; j < K; j++)
			sum += v[j];
		for (int j = 0; j < K; j++)
			w[(size_t)s * K + j] = keep[(size_t)s * K + j] ?
			    (gate_norm ? v[j] / sum : v[j]) : 0;
	}
}

void
vlm_moe_route_fwd_cuda(int32_t *idx, float *val, uint8_t *keep,
    int32_t *slot, float *w, int32_t *fill, int32_t *order, const float *g,
    int S, int E, int K, int C, int bpr, int gate_norm)
{
	route<<<1, 1024, 0, vlm_cu_stream>>>(idx, val, keep, slot, w, fill,
	    order, g, S, E, K, C, bpr, gate_norm);
	vlm_cu_check("route");
}

/* dw through the gate normalisation and the softmax into dz. */
static __global__ void
route_bwd(float *dz, const float *dw, const float *g, const int32_t *idx,
    const uint8_t *keep, int S, int E, int K, int gate_norm)
{
	CU_FOR(s, S)
		vlm_route_bwd_row(dz, dw, g, idx, keep, (int)s, E, K,
		    gate_norm);
}

void
vlm_moe_route_bwd_cuda(float *dz, const float *dw, const float *g,
    const int32_t *idx, const uint8_t *keep, int S, int E, int K,
    int gate_norm)
{
	CU_LAUNCH(route_bwd, S, dz, dw, g, idx, keep, S, E, K, gate_norm);
}

/* Element (s, j, d): buf[idx, slot, d] = x[s, d] when kept. */
static __global__ void
dispatch_fwd(float *buf, const float *x, const int32_t *idx,
    const int32_t *slot, int S, int D, int K, int C)
{
	CU_FOR(i, (int64_t)S * K * D) {
		int64_t sj = i / D;
		int r = slot[sj];
		if (r >= 0)
			buf[((size_t)idx[sj] * C + r) * D + i % D] =
			    x[(sj / K) * D + i % D];
	}
}

/* Element (s, d): dx += the kept rows' gradients. */
static __global__ void
dispatch_bwd(float *dx, const float *dbuf, const int32_t *idx,
    const int32_t *slot, int S, int D, int K, int C)
{
	CU_FOR(i, (int64_t)S * D) {
		int64_t s = i / D;
		float a = 0;
		for (int j = 0; j < K; j++) {
			int r = slot[s * K + j];
			if (r >= 0)
				a += dbuf[((size_t)idx[s * K + j] * C + r) *
				    D + i % D];
		}
		dx[i] += a;
	}
}

static __global__ void
combine_fwd(float *y, const float *out, const int32_t *idx,
    const int32_t *slot, const float *w, int S, int D, int K, int C)
{
	CU_FOR(i, (int64_t)S * D) {
		int64_t s = i / D;
		float a = 0;
		for (int j = 0; j < K; j++) {
			int r = slot[s * K + j];
			if (r >= 0)
				a += w[s * K + j] * out[((size_t)idx[s * K +
				    j] * C + r) * D + i % D];
		}
		y[i] = a;
	}
}

/* dout rows: each belongs to one kept (s, j). */
static __global__ void
combine_bwd_out(float *dout, const float *dy, const int32_t *idx,
    const int32_t *slot, const float *w, int S, int D, int K, int C)
{
	CU_FOR(i, (int64_t)S * K * D) {
		int64_t sj = i / D;
		int r = slot[sj];
		if (r >= 0)
			dout[((size_t)idx[sj] * C + r) * D + i % D] += w[sj] *
			    dy[(sj / K) * D + i % D];
	}
}

static __global__ void
combine_bwd_w(float *dw, const float *dy, const float *out,
    const int32_t *idx, const int32_t *slot, int S, int D, int K, int C)
{
	CU_FOR(sj, (int64_t)S * K) {
		int r = slot[sj];
		const float *o = out + ((size_t)idx[sj] * C + r) * D;
		const float *d = dy + (sj / K) * D;
		float a = 0;
		if (r < 0)
			continue;
		for (int k = 0; k < D; k++)
			a += d[k] * o[k];
		dw[sj] += a;
	}
}

void
vlm_moe_dispatch_fwd_cuda(float *buf, const float *x, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C)
{
	(void)E;
	CU_LAUNCH(dispatch_fwd, (int64_t)S * K * D, buf, x, idx, slot, S, D, K,
	    C);
}

void
vlm_moe_dispatch_bwd_cuda(float *dx, const float *dbuf, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C)
{
	(void)E;
	CU_LAUNCH(dispatch_bwd, (int64_t)S * D, dx, dbuf, idx, slot, S, D, K,
	    C);
}

void
vlm_moe_combine_fwd_cuda(float *y, const float *out, const int32_t *idx,
    const int32_t *slot, const float *w, int S, int D, int E, int K, int C)
{
	(void)E;
	CU_LAUNCH(combine_fwd, (int64_t)S * D, y, out, idx, slot, w, S, D, K,
	    C);
}

void
vlm_moe_combine_bwd_cuda(float *dout, float *dw, const float *dy,
    const float *out, const int32_t *idx, const int32_t *slot,
    const float *w, int S, int D, int E, int K, int C)
{
	(void)E;
	if (dout)
		CU_LAUNCH(combine_bwd_out, (int64_t)S * K * D, dout, dy, idx,
		    slot, w, S, D, K, C);
	if (dw)
		CU_LAUNCH(combine_bwd_w, (int64_t)S * K, dw, dy, out, idx, slot,
		    S, D, K, C);
}
