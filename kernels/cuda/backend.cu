/*
 * backend.cu - libvlm-cuda.so's entry points: the devices there are,
 * and the "cuda:N" table (kernels.h) of one device: memory verbs on
 * cudaMalloc/cudaMemcpy, every op on one stream, GEMMs through cuBLAS.
 * Loaded at run time by kernels/cpu/backend.c, so that a program built
 * with CUDA runs where there is no CUDA library, driver or device.
 * One device per process: the first one opened.
 */
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "cuda.cuh"

cudaStream_t vlm_cu_stream;
cublasHandle_t vlm_cu_blas;
static int (*report)(const char *fmt, ...);
static char failed[512]; /* the first failure since the last sync */
static int open_dev = -1;
static char table_name[32];

void
vlm_cu_fail(const char *what, const char *why)
{
	if (!failed[0])
		snprintf(failed, sizeof(failed), "%s: %s", what, why);
}

void
vlm_cu_check(const char *what)
{
	cudaError_t e = cudaGetLastError();

	if (e != cudaSuccess)
		vlm_cu_fail(what, cudaGetErrorString(e));
}

static void *
cu_alloc(size_t bytes)
{
	void *p = NULL;

	if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
		cudaGetLastError(); /* out of memory is not sticky */
		return NULL;
	}
	if (cudaMemsetAsync(p, 0, bytes, vlm_cu_stream) != cudaSuccess)
		vlm_cu_check("cudaMemset");
	return p;
}

static void
cu_free(void *p)
{
	cudaStreamSynchronize(vlm_cu_stream);
	if (p && cudaFree(p) != cudaSuccess)
		vlm_cu_check("cudaFree");
}

static void
cu_copy_kind(void *dst, const void *src, size_t bytes, cudaMemcpyKind k)
{
	if (!bytes || dst == src)
		return;
	if (cudaMemcpyAsync(dst, src, bytes, k, vlm_cu_stream) != cudaSuccess)
		vlm_cu_check("cudaMemcpy");
	if (k != cudaMemcpyDeviceToDevice) /* the host buffer is reused */
		cudaStreamSynchronize(vlm_cu_stream);
}

static void
cu_upload(void *dst, const void *src, size_t bytes)
{
	cu_copy_kind(dst, src, bytes, cudaMemcpyHostToDevice);
}

static void
cu_download(void *dst, const void *src, size_t bytes)
{
	cu_copy_kind(dst, src, bytes, cudaMemcpyDeviceToHost);
}

static void
cu_copy(void *dst, const void *src, size_t bytes)
{
	cu_copy_kind(dst, src, bytes, cudaMemcpyDeviceToDevice);
}

static void
cu_memset(void *dst, int c, size_t bytes)
{
	if (bytes && cudaMemsetAsync(dst, c, bytes, vlm_cu_stream) !=
	    cudaSuccess)
		vlm_cu_check("cudaMemset");
}

static int
cu_sync(void)
{
	cudaError_t e = cudaStreamSynchronize(vlm_cu_stream);

	if (e != cudaSuccess)
		vlm_cu_fail("cuda", cudaGetErrorString(e));
	if (!failed[0])
		return 0;
	report("%s: %s", table_name, failed);
	failed[0] = '\0';
	return -1;
}

float *
vlm_cu_scratch(int slot, size_t n)
{
	static float *buf[4];
	static size_t cap[4];

	if (n > cap[slot]) {
		cu_free(buf[slot]);
		cap[slot] = n + n / 2;
		buf[slot] = (float *)cu_alloc(cap[slot] * sizeof(float));
		if (!buf[slot]) {
			cap[slot] = 0;
			vlm_cu_fail("scratch", "out of device memory");
		}
	}
	return buf[slot];
}

float
vlm_cu_read(const float *d)
{
	float h = 0;

	if (d)
		cu_download(&h, d, sizeof(h));
	return h;
}

static __global__ void
scale_mat(float *C, float beta, int M, int N, int ldc)
{
	CU_FOR(i, (int64_t)M * N) {
		float *c = C + (i / N) * ldc + i % N;
		*c = beta == 0 ? 0 : beta * *c;
	}
}

/* cuBLAS is column-major: row-major C = op(A) op(B) is, read as its
 * transpose, C^T = op(B)^T op(A)^T, so the operands swap. */
void
vlm_cu_gemm_batched(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, long long sA, const float *B, int ldb,
    long long sB, float beta, float *C, int ldc, long long sC, int count)
{
	cublasStatus_t s;

	if (M <= 0 || N <= 0 || count <= 0)
		return;
	if (K <= 0) { /* C = beta C */
		for (int i = 0; i < count; i++)
			CU_LAUNCH(scale_mat, (int64_t)M * N, C + i * sC, beta,
			    M, N, ldc);
		return;
	}
	s = cublasSgemmStridedBatched(vlm_cu_blas, tb ? CUBLAS_OP_T :
	    CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
	    ldb, sB, A, lda, sA, &beta, C, ldc, sC, count);
	if (s != CUBLAS_STATUS_SUCCESS)
		vlm_cu_fail("cublasSgemm", cublasGetStatusString(s));
}

void
vlm_gemm_cuda(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc)
{
	vlm_cu_gemm_batched(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta,
	    C, ldc, 0, 1);
}

#define OP(name) .name = vlm_##name##_cuda
static struct vlm_backend table = {
	.name = table_name, .device = 1,
	.alloc = cu_alloc, .free = cu_free, .upload = cu_upload,
	.download = cu_download, .memset = cu_memset, .copy = cu_copy,
	.sync = cu_sync,
	OP(gemm), OP(linear_fwd), OP(linear_bwd), OP(layernorm_fwd),
	OP(layernorm_bwd), OP(gelu_fwd), OP(gelu_bwd), OP(quickgelu_fwd),
	OP(quickgelu_bwd), OP(softmax_fwd), OP(softmax_bwd),
	OP(attention_fwd), OP(attention_bwd), OP(l2norm_fwd), OP(l2norm_bwd),
	OP(clip_loss_fwd), OP(clip_loss_bwd), .adamw_step =
	vlm_adamw_step_cuda, .grad_clip = vlm_grad_clip_cuda,
	OP(router_fwd), OP(router_bwd), OP(moe_route_fwd), OP(moe_route_bwd),
	OP(moe_dispatch_fwd), OP(moe_dispatch_bwd), OP(moe_combine_fwd),
	OP(moe_combine_bwd), OP(aux_importance_fwd), OP(aux_importance_bwd),
	OP(aux_load_fwd), OP(aux_load_bwd), OP(aux_switch_fwd),
	OP(aux_switch_bwd), OP(aux_zloss_fwd), OP(aux_zloss_bwd),
	OP(aux_entropy_local_fwd), OP(aux_entropy_local_bwd),
	OP(aux_entropy_global_fwd), OP(aux_entropy_global_bwd),
	OP(patchify_fwd), OP(patchify_bwd), OP(embed_fwd), OP(embed_bwd),
	OP(posembed_fwd), OP(posembed_bwd), OP(cls_prepend_fwd),
	OP(cls_prepend_bwd), OP(pool_token_fwd), OP(pool_token_bwd),
	OP(pool_mean_fwd), OP(pool_mean_bwd), OP(pool_map_fwd),
	OP(pool_map_bwd), OP(token_learner_fwd), OP(token_learner_bwd),
	.add = vlm_add_cuda, .scale = vlm_scale_cuda,
	.rows_gather = vlm_rows_gather_cuda,
	.rows_scatter_add = vlm_rows_scatter_add_cuda,
};

extern "C" int
vlm_cuda_so_devices(char *buf, int len)
{
	cudaDeviceProp p;
	cudaError_t e;
	int n = 0;

	if ((e = cudaGetDeviceCount(&n)) != cudaSuccess) {
		snprintf(buf, len, "%s", cudaGetErrorString(e));
		return 0;
	}
	if (n == 0)
		snprintf(buf, len, "no CUDA device");
	else if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
		snprintf(buf, len, "%s (sm_%d%d, %zu MiB)", p.name, p.major,
		    p.minor, p.totalGlobalMem >> 20);
	return n;
}

extern "C" const struct vlm_backend *
vlm_cuda_so_open(int dev, int (*error)(const char *fmt, ...), char *err,
    int len)
{
	cudaError_t e;
	char why[256];
	int n = vlm_cuda_so_devices(why, sizeof(why));

	if (open_dev >= 0 && dev != open_dev) {
		snprintf(err, len, "device %d is open; one device per process",
		    open_dev);
		return NULL;
	}
	if (open_dev >= 0)
		return &table;
	if (n == 0) {
		snprintf(err, len, "no usable CUDA device (%s)", why);
		return NULL;
	}
	if (dev >= n) {
		snprintf(err, len, "no device %d (there are %d)", dev, n);
		return NULL;
	}
	if ((e = cudaSetDevice(dev)) != cudaSuccess ||
	    (e = cudaStreamCreate(&vlm_cu_stream)) != cudaSuccess) {
		snprintf(err, len, "device %d: %s", dev, cudaGetErrorString(e));
		return NULL;
	}
	if (cublasCreate(&vlm_cu_blas) != CUBLAS_STATUS_SUCCESS ||
	    cublasSetStream(vlm_cu_blas, vlm_cu_stream) !=
	    CUBLAS_STATUS_SUCCESS) {
		snprintf(err, len, "device %d: cannot start cuBLAS", dev);
		return NULL;
	}
	/* fp32 means fp32: no TF32 tensor cores behind our back */
	cublasSetMathMode(vlm_cu_blas, CUBLAS_DEFAULT_MATH);
	report = error;
	open_dev = dev;
	snprintf(table_name, sizeof(table_name), "cuda:%d", dev);
	return &table;
}
