/*
 * aux.cu - the MoE auxiliary losses on the GPU (kernels.h): each in one
 * block, tokens over the threads, per-expert sums in shared memory (in
 * double, as the CPU), the scalar written on the device and read back
 * (a logged value). Formulas as kernels/cpu/aux-loss.c.
 */
#include "cuda.cuh"
#include "shared.h"

#define AUX_T 256
#define ENT_EPS 1e-8

/* Shared doubles: n arrays of E, zeroed. */
static __device__ double *
sh_zero(int n, int E)
{
	extern __shared__ double sh[];

	for (int i = threadIdx.x; i < n * E; i += blockDim.x)
		sh[i] = 0;
	__syncthreads();
	return sh;
}

#define FOR_S(s, S) for (int s = threadIdx.x; s < (S); s += blockDim.x)

/* max and sum of exp(z - max) of a row, in double. */
static __device__ double
row_lse(const float *z, int E, double *max, double *sum)
{
	*max = -INFINITY, *sum = 0;
	for (int e = 0; e < E; e++)
		if (z[e] > *max)
			*max = z[e];
	for (int e = 0; e < E; e++)
		*sum += exp(z[e] - *max);
	return *max + log(*sum);
}

static __global__ void
importance(float *out, float *dz, const float *p, float dloss, int S, int E)
{
	double *imp = sh_zero(2, E), *c = imp + E;

	FOR_S(s, S)
		for (int e = 0; e < E; e++)
			atomicAdd(&imp[e], (double)p[(size_t)s * E + e]);
	__syncthreads();
	if (threadIdx.x == 0) {
		double l = vlm_cv2(imp, E, c);
		if (out)
			*out = (float)l;
		for (int e = 0; e < E; e++)
			c[e] *= dloss;
	}
	__syncthreads();
	FOR_S(s, S)
		if (dz)
			vlm_softmax_bwd_row(dz + (size_t)s * E,
			    p + (size_t)s * E, c, E);
}

static __global__ void
load(float *out, float *dz, const float *z, const float *eps, float sigma,
    float dloss, int S, int E, int K)
{
	double *ld = sh_zero(2, E), *c = ld + E;

	FOR_S(s, S) {
		const float *zs = z + (size_t)s * E, *es = eps + (size_t)s * E;
		int k = vlm_kth_index(zs, es, E, K);
		double eta = (double)zs[k] + es[k];
		for (int e = 0; e < E; e++) {
			double u = (zs[e] - eta) / sigma;
			atomicAdd(&ld[e], 0.5 * erfc(-u / M_SQRT2) / S);
		}
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		double l = vlm_cv2(ld, E, c);
		if (out)
			*out = (float)l;
	}
	__syncthreads();
	FOR_S(s, S) {
		const float *zs = z + (size_t)s * E, *es = eps + (size_t)s * E;
		float *dzs = dz + (size_t)s * E;
		int k = vlm_kth_index(zs, es, E, K);
		double eta = (double)zs[k] + es[k], tot = 0;
		if (!dz)
			break;
		for (int e = 0; e < E; e++) {
			double u = (zs[e] - eta) / sigma;
			double d = dloss * c[e] / S * (exp(-0.5 * u * u) /
			    (sqrt(2 * M_PI) * sigma));
			dzs[e] += (float)d;
			tot += d;
		}
		dzs[k] -= (float)tot;
	}
}

static __global__ void
switch_bal(float *out, float *dz, const float *g, const int32_t *idx,
    float dloss, int S, int E, int K)
{
	double *f = sh_zero(2, E), *P = f + E;

	FOR_S(s, S) {
		atomicAdd(&f[idx[(size_t)s * K]], 1.0 / S);
		for (int e = 0; out && e < E; e++)
			atomicAdd(&P[e], (double)g[(size_t)s * E + e] / S);
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		double l = 0;
		for (int e = 0; e < E; e++)
			l += f[e] * P[e];
		if (out)
			*out = (float)(E * l);
		for (int e = 0; e < E; e++)
			f[e] *= (double)dloss * E / S;
	}
	__syncthreads();
	FOR_S(s, S)
		if (dz)
			vlm_softmax_bwd_row(dz + (size_t)s * E,
			    g + (size_t)s * E, f, E);
}

static __global__ void
zloss(float *out, float *dz, const float *z, float dloss, int S, int E)
{
	double *l = sh_zero(1, 1), max, sum;

	FOR_S(s, S) {
		const float *zs = z + (size_t)s * E;
		double lse = row_lse(zs, E, &max, &sum);
		if (out)
			atomicAdd(l, lse * lse);
		for (int e = 0; dz && e < E; e++)
			dz[(size_t)s * E + e] += (float)(dloss * 2 * lse *
			    (exp(zs[e] - max) / sum) / S);
	}
	__syncthreads();
	if (threadIdx.x == 0 && out)
		*out = S > 0 ? (float)(*l / S) : 0;
}

/* Tokens of modality m (every token when mod is NULL), in every thread. */
static __device__ int
count_mod(const uint8_t *mod, int m, int S)
{
	__shared__ int n;

	if (threadIdx.x == 0)
		n = 0;
	__syncthreads();
	FOR_S(s, S)
		if (!mod || mod[s] == m)
			atomicAdd(&n, 1);
	__syncthreads();
	return n;
}

static __global__ void
entropy_local(float *out, float *dz, const float *z, const uint8_t *mod,
    int m, float dloss, int S, int E)
{
	double *h = sh_zero(1, 1), max, sum;
	int n = count_mod(mod, m, S);

	FOR_S(s, S) {
		const float *zs = z + (size_t)s * E;
		double lse, hs = 0;
		if (mod && mod[s] != m)
			continue;
		lse = row_lse(zs, E, &max, &sum);
		for (int e = 0; e < E; e++)
			hs -= exp(zs[e] - max) / sum * (zs[e] - lse);
		if (out)
			atomicAdd(h, hs);
		for (int e = 0; dz && e < E; e++)
			dz[(size_t)s * E + e] -= (float)(dloss * (exp(zs[e] -
			    max) / sum) * (zs[e] - lse + hs) / n);
	}
	__syncthreads();
	if (threadIdx.x == 0 && out)
		*out = n > 0 ? (float)(*h / n) : 0;
}

static __global__ void
entropy_global(float *out, float *dz, const float *z, const uint8_t *mod,
    int m, float tau, float dloss, int S, int E)
{
	double *pbar = sh_zero(2, E), *c = pbar + E, max, sum;
	int n = count_mod(mod, m, S);
	__shared__ double l;

	FOR_S(s, S) {
		const float *zs = z + (size_t)s * E;
		if (mod && mod[s] != m)
			continue;
		row_lse(zs, E, &max, &sum);
		for (int e = 0; e < E; e++)
			atomicAdd(&pbar[e], exp(zs[e] - max) / sum / n);
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		double h = 0;
		for (int e = 0; e < E; e++)
			h -= pbar[e] * log(pbar[e] + ENT_EPS);
		l = n > 0 ? tau - h : 0;
		if (out)
			*out = l > 0 ? (float)l : 0;
		for (int e = 0; e < E; e++)
			c[e] = dloss * (log(pbar[e] + ENT_EPS) + pbar[e] /
			    (pbar[e] + ENT_EPS)) / n;
	}
	__syncthreads();
	if (!dz || n == 0 || l <= 0)
		return;
	FOR_S(s, S) {
		const float *zs = z + (size_t)s * E;
		float *dzs = dz + (size_t)s * E;
		double dot = 0;
		if (mod && mod[s] != m)
			continue;
		row_lse(zs, E, &max, &sum);
		for (int e = 0; e < E; e++)
			dot += (float)(exp(zs[e] - max) / sum) * c[e];
		for (int e = 0; e < E; e++) {
			float p = (float)(exp(zs[e] - max) / sum);
			dzs[e] += (float)(p * (c[e] - dot));
		}
	}
}

/* Launch one block with sh doubles of shared memory; fwd reads back. */
#define AUX(kernel, sh, ...) do { \
	kernel<<<1, AUX_T, (sh) * sizeof(double), vlm_cu_stream>>>( \
	    __VA_ARGS__); \
	vlm_cu_check(#kernel); \
} while (0)

float
vlm_aux_importance_fwd_cuda(const float *p, int S, int E)
{
	float *o = vlm_cu_scratch(0, 1);

	AUX(importance, 2 * E, o, NULL, p, 0.0f, S, E);
	return vlm_cu_read(o);
}

void
vlm_aux_importance_bwd_cuda(float *dz, const float *p, float dloss, int S,
    int E)
{
	AUX(importance, 2 * E, NULL, dz, p, dloss, S, E);
}

float
vlm_aux_load_fwd_cuda(const float *z, const float *eps, float sigma, int S,
    int E, int K)
{
	float *o = vlm_cu_scratch(0, 1);

	AUX(load, 2 * E, o, NULL, z, eps, sigma, 0.0f, S, E, K);
	return vlm_cu_read(o);
}

void
vlm_aux_load_bwd_cuda(float *dz, const float *z, const float *eps,
    float sigma, float dloss, int S, int E, int K)
{
	AUX(load, 2 * E, NULL, dz, z, eps, sigma, dloss, S, E, K);
}

float
vlm_aux_switch_fwd_cuda(const float *g, const int32_t *idx, int S, int E,
    int K)
{
	float *o = vlm_cu_scratch(0, 1);

	AUX(switch_bal, 2 * E, o, NULL, g, idx, 0.0f, S, E, K);
	return vlm_cu_read(o);
}

void
vlm_aux_switch_bwd_cuda(float *dz, const float *g, const int32_t *idx,
    float dloss, int S, int E, int K)
{
	AUX(switch_bal, 2 * E, NULL, dz, g, idx, dloss, S, E, K);
}

float
vlm_aux_zloss_fwd_cuda(const float *z, int S, int E)
{
	float *o = vlm_cu_scratch(0, 1);

	AUX(zloss, 1, o, NULL, z, 0.0f, S, E);
	return vlm_cu_read(o);
}

void
vlm_aux_zloss_bwd_cuda(float *dz, const float *z, float dloss, int S, int E)
{
	AUX(zloss, 1, NULL, dz, z, dloss, S, E);
}

float
vlm_aux_entropy_local_fwd_cuda(const float *z, const uint8_t *mod, int m,
    int S, int E)
{
	float *o = vlm_cu_scratch(0, 1);

	AUX(entropy_local, 1, o, NULL, z, mod, m, 0.0f, S, E);
	return vlm_cu_read(o);
}

void
vlm_aux_entropy_local_bwd_cuda(float *dz, const float *z, const uint8_t *mod,
    int m, float dloss, int S, int E)
{
	AUX(entropy_local, 1, NULL, dz, z, mod, m, dloss, S, E);
}

float
vlm_aux_entropy_global_fwd_cuda(const float *z, const uint8_t *mod, int m,
    float tau, int S, int E)
{
	float *o = vlm_cu_scratch(0, 1);

	AUX(entropy_global, 2 * E, o, NULL, z, mod, m, tau, 0.0f, S, E);
	return vlm_cu_read(o);
}

void
vlm_aux_entropy_global_bwd_cuda(float *dz, const float *z,
    const uint8_t *mod, int m, float tau, float dloss, int S, int E)
{
	AUX(entropy_global, 2 * E, NULL, dz, z, mod, m, tau, dloss, S, E);
}
