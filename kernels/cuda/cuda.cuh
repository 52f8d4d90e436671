/*
 * cuda.cuh - private to kernels/cuda: the one stream and cuBLAS handle
 * every op runs on, launch helpers, and the _cuda ops the table in
 * backend.cu lists (argument lists as in kernels.h, device pointers).
 * Errors of asynchronous work surface at the table's sync.
 */
#ifndef VLM_CUDA_CUH
#define VLM_CUDA_CUH

#include <cstdint>
#include <cstddef>
#include <cmath>

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "kernels.h"
}

/* The stream and handle of the open device (backend.cu). */
extern cudaStream_t vlm_cu_stream;
extern cublasHandle_t vlm_cu_blas;
/* Remember the first failure of a call (reported by sync). */
void vlm_cu_fail(const char *what, const char *why);
/* The op's scratch: n floats of device memory kept between calls
 * (grown as needed); slot 0..3 are independent buffers. */
float *vlm_cu_scratch(int slot, size_t n);
/* One float of device memory read back (a loss, a norm): syncs. */
float vlm_cu_read(const float *d);

#define CU_THREADS 256
/* Blocks of CU_THREADS for n items (at least 1). */
static inline unsigned
cu_blocks(int64_t n)
{
	int64_t b = (n + CU_THREADS - 1) / CU_THREADS;

	return b < 1 ? 1u : b > 65535 * 32 ? 65535u * 32 : (unsigned)b;
}
#define CU_LAUNCH(kernel, n, ...) do { \
	if ((n) > 0) \
		kernel<<<cu_blocks(n), CU_THREADS, 0, vlm_cu_stream>>>( \
		    __VA_ARGS__); \
	vlm_cu_check(#kernel); \
} while (0)
/* A launch error (bad configuration) into vlm_cu_fail. */
void vlm_cu_check(const char *what);
/* Grid-stride loop over i < n. */
#define CU_FOR(i, n) \
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; \
	    i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* One block per row: the sum (or max) over the block, in every thread
 * (blockDim.x a multiple of 32, at most 1024). */
#define CU_ROW 128
template <typename T>
static __device__ T
cu_block_sum(T v)
{
	__shared__ T sh[32];
	T r = 0;

	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_down_sync(0xffffffffu, v, o);
	__syncthreads(); /* sh free from the previous call */
	if ((threadIdx.x & 31) == 0)
		sh[threadIdx.x >> 5] = v;
	__syncthreads();
	for (unsigned i = 0; i < blockDim.x / 32; i++)
		r += sh[i];
	return r;
}

static __device__ float
cu_block_max(float v)
{
	__shared__ float sh[32];
	float r = -INFINITY;

	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
	__syncthreads();
	if ((threadIdx.x & 31) == 0)
		sh[threadIdx.x >> 5] = v;
	__syncthreads();
	for (unsigned i = 0; i < blockDim.x / 32; i++)
		r = fmaxf(r, sh[i]);
	return r;
}

/* A kernel with one block of CU_ROW threads per row, rows < 2^31. */
#define CU_ROWS(kernel, rows, ...) do { \
	if ((rows) > 0) \
		kernel<<<(unsigned)(rows), CU_ROW, 0, vlm_cu_stream>>>( \
		    __VA_ARGS__); \
	vlm_cu_check(#kernel); \
} while (0)

/* Row-major C = alpha op(A) op(B) + beta C (the cblas convention) and
 * `count` of them at strides sA, sB, sC (floats). */
void vlm_gemm_cuda(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc);
void vlm_cu_gemm_batched(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, long long sA, const float *B, int ldb,
    long long sB, float beta, float *C, int ldc, long long sC, int count);

/* dense.cu */
/* dx *= gelu'(x) over n values (TokenLearner's backward). */
void vlm_cu_gelu_grad_mul(float *dx, const float *x, int64_t n);
void vlm_linear_fwd_cuda(float *y, const float *x, const float *w,
    const float *b, int N, int IN, int OUT);
void vlm_linear_bwd_cuda(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT);
void vlm_layernorm_fwd_cuda(float *y, float *mean, float *rstd,
    const float *x, const float *w, const float *b, int N, int C);
void vlm_layernorm_bwd_cuda(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, const float *mean, const float *rstd,
    int N, int C);
void vlm_gelu_fwd_cuda(float *y, const float *x, int64_t n);
void vlm_gelu_bwd_cuda(float *dx, const float *dy, const float *x,
    int64_t n);
void vlm_quickgelu_fwd_cuda(float *y, const float *x, int64_t n);
void vlm_quickgelu_bwd_cuda(float *dx, const float *dy, const float *x,
    int64_t n);
void vlm_softmax_fwd_cuda(float *y, const float *x, int N, int C);
void vlm_softmax_bwd_cuda(float *dx, const float *dy, const float *y, int N,
    int C);
void vlm_attention_fwd_cuda(float *out, float *att, const float *qkv,
    const int32_t *len, int causal, int B, int T, int C, int H);
void vlm_attention_bwd_cuda(float *dqkv, float *scratch, const float *dout,
    const float *qkv, const float *att, int B, int T, int C, int H);
void vlm_l2norm_fwd_cuda(float *y, float *norm, const float *x, int N,
    int C);
void vlm_l2norm_bwd_cuda(float *dx, const float *dy, const float *y,
    const float *norm, int N, int C);
float vlm_clip_loss_fwd_cuda(float *logits, float *lse, const float *u,
    const float *v, float theta, int B, int C);
void vlm_clip_loss_bwd_cuda(float *du, float *dv, float *dtheta,
    float *dlogits, const float *logits, const float *lse, const float *u,
    const float *v, float theta, float dloss, int B, int C);
void vlm_adamw_step_cuda(float *p, float *m, float *v, const float *g,
    int64_t n, int64_t t, float lr, float beta1, float beta2, float eps,
    float wd);
float vlm_grad_clip_cuda(float *g, int64_t n, float max_norm);
void vlm_add_cuda(float *y, const float *x, int64_t n);
void vlm_scale_cuda(float *y, float a, int64_t n);
void vlm_rows_gather_cuda(float *y, const float *x, const int32_t *rows,
    int S, int D);
void vlm_rows_scatter_add_cuda(float *x, const float *y,
    const int32_t *rows, int S, int D);

/* moe.cu */
void vlm_router_fwd_cuda(float *z, float *p, float *g, const float *x,
    const float *wr, const float *eps, int S, int D, int E);
void vlm_router_bwd_cuda(float *dx, float *dwr, const float *dz,
    const float *x, const float *wr, int S, int D, int E);
void vlm_moe_route_fwd_cuda(int32_t *idx, float *val, uint8_t *keep,
    int32_t *slot, float *w, int32_t *fill, int32_t *order, const float *g,
    int S, int E, int K, int C, int bpr, int gate_norm);
void vlm_moe_route_bwd_cuda(float *dz, const float *dw, const float *g,
    const int32_t *idx, const uint8_t *keep, int S, int E, int K,
    int gate_norm);
void vlm_moe_dispatch_fwd_cuda(float *buf, const float *x,
    const int32_t *idx, const int32_t *slot, int S, int D, int E, int K,
    int C);
void vlm_moe_dispatch_bwd_cuda(float *dx, const float *dbuf,
    const int32_t *idx, const int32_t *slot, int S, int D, int E, int K,
    int C);
void vlm_moe_combine_fwd_cuda(float *y, const float *out,
    const int32_t *idx, const int32_t *slot, const float *w, int S, int D,
    int E, int K, int C);
void vlm_moe_combine_bwd_cuda(float *dout, float *dw, const float *dy,
    const float *out, const int32_t *idx, const int32_t *slot,
    const float *w, int S, int D, int E, int K, int C);

/* aux.cu */
float vlm_aux_importance_fwd_cuda(const float *p, int S, int E);
void vlm_aux_importance_bwd_cuda(float *dz, const float *p, float dloss,
    int S, int E);
float vlm_aux_load_fwd_cuda(const float *z, const float *eps, float sigma,
    int S, int E, int K);
void vlm_aux_load_bwd_cuda(float *dz, const float *z, const float *eps,
    float sigma, float dloss, int S, int E, int K);
float vlm_aux_switch_fwd_cuda(const float *g, const int32_t *idx, int S,
    int E, int K);
void vlm_aux_switch_bwd_cuda(float *dz, const float *g, const int32_t *idx,
    float dloss, int S, int E, int K);
float vlm_aux_zloss_fwd_cuda(const float *z, int S, int E);
void vlm_aux_zloss_bwd_cuda(float *dz, const float *z, float dloss, int S,
    int E);
float vlm_aux_entropy_local_fwd_cuda(const float *z, const uint8_t *mod,
    int m, int S, int E);
void vlm_aux_entropy_local_bwd_cuda(float *dz, const float *z,
    const uint8_t *mod, int m, float dloss, int S, int E);
float vlm_aux_entropy_global_fwd_cuda(const float *z, const uint8_t *mod,
    int m, float tau, int S, int E);
void vlm_aux_entropy_global_bwd_cuda(float *dz, const float *z,
    const uint8_t *mod, int m, float tau, float dloss, int S, int E);

/* input.cu */
void vlm_patchify_fwd_cuda(float *out, const float *img, int B, int ch,
    int H, int W, int p);
void vlm_patchify_bwd_cuda(float *dimg, const float *dout, int B, int ch,
    int H, int W, int p);
void vlm_embed_fwd_cuda(float *out, const int32_t *ids, const float *table,
    int N, int V, int C);
void vlm_embed_bwd_cuda(float *dtable, const float *dout,
    const int32_t *ids, int N, int V, int C);
void vlm_posembed_fwd_cuda(float *out, const float *x, const float *pos,
    int B, int T, int C);
void vlm_posembed_bwd_cuda(float *dx, float *dpos, const float *dout, int B,
    int T, int C);
void vlm_cls_prepend_fwd_cuda(float *out, const float *x, const float *cls,
    int B, int P, int C);
void vlm_cls_prepend_bwd_cuda(float *dx, float *dcls, const float *dout,
    int B, int P, int C);
void vlm_pool_token_fwd_cuda(float *out, const float *x, const int32_t *pos,
    int B, int T, int C);
void vlm_pool_token_bwd_cuda(float *dx, const float *dout,
    const int32_t *pos, int B, int T, int C);
void vlm_pool_mean_fwd_cuda(float *out, const float *x, const int32_t *len,
    int B, int T, int C);
void vlm_pool_mean_bwd_cuda(float *dx, const float *dout,
    const int32_t *len, int B, int T, int C);
void vlm_pool_map_fwd_cuda(float *out, float *att, const float *q,
    const float *k, const float *v, const int32_t *len, int B, int T, int C,
    int H);
void vlm_pool_map_bwd_cuda(float *dq, float *dk, float *dv,
    const float *dout, const float *att, const float *q, const float *k,
    const float *v, const int32_t *len, int B, int T, int C, int H);
void vlm_token_learner_fwd_cuda(float *out, float *act, const float *x,
    const float *ln_w, const float *ln_b, const float *w1, const float *b1,
    const float *w2, const float *b2, int B, int N, int D, int Hd, int M);
void vlm_token_learner_bwd_cuda(float *dx, float *dln_w, float *dln_b,
    float *dw1, float *db1, float *dw2, float *db2, const float *dout,
    float *act, const float *x, const float *ln_w, const float *w1,
    const float *w2, int B, int N, int D, int Hd, int M);

#endif
