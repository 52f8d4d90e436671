/*
 * dense.cu - the dense transformer ops on the GPU (kernels.h): linear
 * layers and attention as cuBLAS SGEMMs (fp32, no TF32), LayerNorm,
 * softmax and L2 norm with one block per row, activations, the CLIP
 * loss, AdamW and clipping elementwise; the rows-and-sums ops. Plain
 * and correct first: each is checked against "ref" by
 * tests/test-ops-*.c on odd sizes.
 */
#include "cuda.cuh"

#define LN_EPS 1e-5f
#define L2_EPS 1e-12

/* ---- linear --------------------------------------------------------- */

static __global__ void
add_bias(float *y, const float *b, int64_t N, int OUT)
{
	CU_FOR(i, N * OUT)
		y[i] += b[i % OUT];
}

/* db[o] += sum over rows of dy[:, o], each column in row order. */
static __global__ void
col_sums(float *db, const float *dy, int N, int OUT)
{
	CU_FOR(o, OUT) {
		float s = 0;
		for (int n = 0; n < N; n++)
			s += dy[(size_t)n * OUT + o];
		db[o] += s;
	}
}

void
vlm_linear_fwd_cuda(float *y, const float *x, const float *w,
    const float *b, int N, int IN, int OUT)
{
	vlm_gemm_cuda(0, 1, N, OUT, IN, 1.0f, x, IN, w, IN, 0.0f, y, OUT);
	if (b)
		CU_LAUNCH(add_bias, (int64_t)N * OUT, y, b, N, OUT);
}

void
vlm_linear_bwd_cuda(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT)
{
	if (dx)
		vlm_gemm_cuda(0, 0, N, IN, OUT, 1.0f, dy, OUT, w, IN, 1.0f, dx,
		    IN);
	if (dw)
		vlm_gemm_cuda(1, 0, OUT, IN, N, 1.0f, dy, OUT, x, IN, 1.0f, dw,
		    IN);
	if (db)
		CU_LAUNCH(col_sums, OUT, db, dy, N, OUT);
}

/* ---- LayerNorm -------------------------------------------------------- */

static __global__ void
ln_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
    const float *b, int C)
{
	const float *xn = x + (size_t)blockIdx.x * C;
	float *yn = y + (size_t)blockIdx.x * C;
	float m = 0, v = 0, s;

	for (int c = threadIdx.x; c < C; c += blockDim.x)
		m += xn[c];
	m = cu_block_sum(m) / C;
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		v += (xn[c] - m) * (xn[c] - m);
	v = cu_block_sum(v) / C;
	s = 1.0f / sqrtf(v + LN_EPS);
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		yn[c] = (xn[c] - m) * s * w[c] + b[c];
	if (threadIdx.x == 0 && mean)
		mean[blockIdx.x] = m;
	if (threadIdx.x == 0 && rstd)
		rstd[blockIdx.x] = s;
}

/* dx += rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)). */
static __global__ void
ln_bwd_dx(float *dx, const float *dy, const float *x, const float *w,
    const float *mean, const float *rstd, int C)
{
	size_t o = (size_t)blockIdx.x * C;
	float m = mean[blockIdx.x], s = rstd[blockIdx.x], a = 0, bn = 0;

	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float dn = w[c] * dy[o + c];
		a += dn;
		bn += dn * (x[o + c] - m) * s;
	}
	a = cu_block_sum(a) / C;
	bn = cu_block_sum(bn) / C;
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float dn = w[c] * dy[o + c], norm = (x[o + c] - m) * s;
		dx[o + c] += s * (dn - a - norm * bn);
	}
}

static __global__ void
ln_bwd_cols(float *dw, float *db, const float *dy, const float *x,
    const float *mean, const float *rstd, int N, int C)
{
	CU_FOR(c, C) {
		float sw = 0, sb = 0;
		for (int n = 0; n < N; n++) {
			size_t i = (size_t)n * C + c;
			sw += dy[i] * ((x[i] - mean[n]) * rstd[n]);
			sb += dy[i];
		}
		if (dw)
			dw[c] += sw;
		if (db)
			db[c] += sb;
	}
}

void
vlm_layernorm_fwd_cuda(float *y, float *mean, float *rstd, const float *x,
    const float *w, const float *b, int N, int C)
{
	CU_ROWS(ln_fwd, N, y, mean, rstd, x, w, b, C);
}

void
vlm_layernorm_bwd_cuda(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, const float *mean, const float *rstd,
    int N, int C)
{
	if (dx)
		CU_ROWS(ln_bwd_dx, N, dx, dy, x, w, mean, rstd, C);
	if (dw || db)
		CU_LAUNCH(ln_bwd_cols, C, dw, db, dy, x, mean, rstd, N, C);
}

/* ---- activations ---------------------------------------------------- */

#define QUICK 1.702f

static __device__ float
gelu_grad(float x)
{
	return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) + x *
	    expf(-0.5f * x * x) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
}

static __device__ float
sigm(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

static __global__ void
gelu_fwd(float *y, const float *x, int64_t n)
{
	CU_FOR(i, n)
		y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static __global__ void
gelu_bwd(float *dx, const float *dy, const float *x, int64_t n)
{
	CU_FOR(i, n)
		dx[i] += dy[i] * gelu_grad(x[i]);
}

static __global__ void
quickgelu_fwd(float *y, const float *x, int64_t n)
{
	CU_FOR(i, n)
		y[i] = x[i] * sigm(QUICK * x[i]);
}

static __global__ void
quickgelu_bwd(float *dx, const float *dy, const float *x, int64_t n)
{
	CU_FOR(i, n) {
		float s = sigm(QUICK * x[i]);
		dx[i] += dy[i] * (s + QUICK * x[i] * s * (1.0f - s));
	}
}

static __global__ void
gelu_grad_mul(float *dx, const float *x, int64_t n)
{
	CU_FOR(i, n)
		dx[i] *= gelu_grad(x[i]);
}

void
vlm_cu_gelu_grad_mul(float *dx, const float *x, int64_t n)
{
	CU_LAUNCH(gelu_grad_mul, n, dx, x, n);
}

void
vlm_gelu_fwd_cuda(float *y, const float *x, int64_t n)
{
	CU_LAUNCH(gelu_fwd, n, y, x, n);
}

void
vlm_gelu_bwd_cuda(float *dx, const float *dy, const float *x, int64_t n)
{
	CU_LAUNCH(gelu_bwd, n, dx, dy, x, n);
}

void
vlm_quickgelu_fwd_cuda(float *y, const float *x, int64_t n)
{
	CU_LAUNCH(quickgelu_fwd, n, y, x, n);
}

void
vlm_quickgelu_bwd_cuda(float *dx, const float *dy, const float *x, int64_t n)
{
	CU_LAUNCH(quickgelu_bwd, n, dx, dy, x, n);
}

/* ---- softmax (plain rows, and attention rows with masks) ------------- */

/* y[0..n) = softmax(scale x[0..n)), y[n..C) = 0, for row blockIdx.x. */
static __device__ void
softmax_row(float *y, const float *x, int n, int C, float scale)
{
	float mx = -INFINITY, sum = 0;

	for (int c = threadIdx.x; c < n; c += blockDim.x)
		mx = fmaxf(mx, x[c] * scale);
	mx = cu_block_max(mx);
	for (int c = threadIdx.x; c < n; c += blockDim.x)
		sum += expf(x[c] * scale - mx);
	sum = cu_block_sum(sum);
	__syncthreads(); /* y may be x */
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		y[c] = c < n ? expf(x[c] * scale - mx) / sum : 0.0f;
}

static __global__ void
softmax_fwd(float *y, const float *x, int C)
{
	size_t o = (size_t)blockIdx.x * C;

	softmax_row(y + o, x + o, C, C, 1.0f);
}

/* dx += y (dy - sum(dy y)) times k, for row blockIdx.x; dx may be dy. */
static __global__ void
softmax_bwd(float *dx, const float *dy, const float *y, int C, float k,
    int add)
{
	size_t o = (size_t)blockIdx.x * C;
	float dot = 0;

	for (int c = threadIdx.x; c < C; c += blockDim.x)
		dot += dy[o + c] * y[o + c];
	dot = cu_block_sum(dot);
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float d = k * y[o + c] * (dy[o + c] - dot);
		dx[o + c] = add ? dx[o + c] + d : d;
	}
}

void
vlm_softmax_fwd_cuda(float *y, const float *x, int N, int C)
{
	CU_ROWS(softmax_fwd, N, y, x, C);
}

void
vlm_softmax_bwd_cuda(float *dx, const float *dy, const float *y, int N,
    int C)
{
	CU_ROWS(softmax_bwd, N, dx, dy, y, C, 1.0f, 1);
}

/* Row (b,h,i) of the scores: softmax over the keys query i may see. */
static __global__ void
att_softmax(float *att, const int32_t *len, int causal, int H, int T,
    float scale)
{
	int i = blockIdx.x % T, b = blockIdx.x / T / H;
	int n = causal ? i + 1 : T;
	float *a = att + (size_t)blockIdx.x * T;

	if (len && len[b] < n)
		n = len[b];
	softmax_row(a, a, n, T, scale);
}

void
vlm_attention_fwd_cuda(float *out, float *att, const float *qkv,
    const int32_t *len, int causal, int B, int T, int C, int H)
{
	int hs = C / H;
	long long tt = (long long)T * T;

	for (int b = 0; b < B; b++) { /* scores of every head, then A V */
		const float *q = qkv + (size_t)b * T * 3 * C;
		float *ab = att + (size_t)b * H * tt;
		vlm_cu_gemm_batched(0, 1, T, T, hs, 1.0f, q, 3 * C, hs,
		    q + C, 3 * C, hs, 0.0f, ab, T, tt, H);
	}
	CU_ROWS(att_softmax, (int64_t)B * H * T, att, len, causal, H, T,
	    1.0f / sqrtf((float)hs));
	for (int b = 0; b < B; b++)
		vlm_cu_gemm_batched(0, 0, T, hs, T, 1.0f,
		    att + (size_t)b * H * tt, T, tt,
		    qkv + (size_t)b * T * 3 * C + 2 * C, 3 * C, hs, 0.0f,
		    out + (size_t)b * T * C, C, hs, H);
}

/* dA = dout V^T; dS = scale A (dA - sum A dA); dq += dS K,
 * dk += dS^T Q, dv += A^T dout, per (batch, head). */
void
vlm_attention_bwd_cuda(float *dqkv, float *scratch, const float *dout,
    const float *qkv, const float *att, int B, int T, int C, int H)
{
	int hs = C / H;
	long long tt = (long long)T * T;

	for (int b = 0; b < B; b++)
		vlm_cu_gemm_batched(0, 1, T, T, hs, 1.0f,
		    dout + (size_t)b * T * C, C, hs,
		    qkv + (size_t)b * T * 3 * C + 2 * C, 3 * C, hs, 0.0f,
		    scratch + (size_t)b * H * tt, T, tt, H);
	CU_ROWS(softmax_bwd, (int64_t)B * H * T, scratch, scratch, att, T,
	    1.0f / sqrtf((float)hs), 0);
	for (int b = 0; b < B; b++) {
		const float *q = qkv + (size_t)b * T * 3 * C;
		const float *ds = scratch + (size_t)b * H * tt;
		const float *ab = att + (size_t)b * H * tt;
		float *dq = dqkv + (size_t)b * T * 3 * C;
		vlm_cu_gemm_batched(0, 0, T, hs, T, 1.0f, ds, T, tt, q + C,
		    3 * C, hs, 1.0f, dq, 3 * C, hs, H);
		vlm_cu_gemm_batched(1, 0, T, hs, T, 1.0f, ds, T, tt, q,
		    3 * C, hs, 1.0f, dq + C, 3 * C, hs, H);
		vlm_cu_gemm_batched(1, 0, T, hs, T, 1.0f, ab, T, tt,
		    dout + (size_t)b * T * C, C, hs, 1.0f, dq + 2 * C, 3 * C,
		    hs, H);
	}
}

/* ---- L2 norm ---------------------------------------------------------- */

static __global__ void
l2_fwd(float *y, float *norm, const float *x, int C)
{
	size_t o = (size_t)blockIdx.x * C;
	double s = 0;

	for (int c = threadIdx.x; c < C; c += blockDim.x)
		s += (double)x[o + c] * x[o + c];
	s = fmax(sqrt(cu_block_sum(s)), L2_EPS);
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		y[o + c] = (float)(x[o + c] / s);
	if (threadIdx.x == 0 && norm)
		norm[blockIdx.x] = (float)s;
}

static __global__ void
l2_bwd(float *dx, const float *dy, const float *y, const float *norm, int C)
{
	size_t o = (size_t)blockIdx.x * C;
	float nm = norm[blockIdx.x];
	double s = 0;

	for (int c = threadIdx.x; nm > (float)L2_EPS && c < C;
	    c += blockDim.x)
		s += (double)y[o + c] * dy[o + c];
	s = cu_block_sum(s);
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		dx[o + c] += (float)((dy[o + c] - y[o + c] * s) / nm);
}

void
vlm_l2norm_fwd_cuda(float *y, float *norm, const float *x, int N, int C)
{
	CU_ROWS(l2_fwd, N, y, norm, x, C);
}

void
vlm_l2norm_bwd_cuda(float *dx, const float *dy, const float *y,
    const float *norm, int N, int C)
{
	CU_ROWS(l2_bwd, N, dx, dy, y, norm, C);
}

/* ---- CLIP loss -------------------------------------------------------- */

/* lse (2,B): row k of logits for k < B, else column k - B. */
static __global__ void
clip_lse(float *lse, const float *logits, int B)
{
	CU_FOR(k, 2 * (int64_t)B) {
		const float *x = k < B ? logits + k * B : logits + (k - B);
		size_t st = k < B ? 1 : B;
		float mx = -INFINITY;
		double s = 0;
		for (int i = 0; i < B; i++)
			mx = fmaxf(mx, x[i * st]);
		for (int i = 0; i < B; i++)
			s += exp((double)x[i * st] - mx);
		lse[k] = mx + (float)log(s);
	}
}

/* The loss, summed in double in row order, by one thread. */
static __global__ void
clip_total(float *loss, const float *logits, const float *lse, int B)
{
	double s = 0;

	for (int i = 0; i < B; i++)
		s += (double)lse[i] + lse[B + i] - 2.0 *
		    logits[(size_t)i * B + i];
	*loss = (float)(s / (2.0 * B));
}

float
vlm_clip_loss_fwd_cuda(float *logits, float *lse, const float *u,
    const float *v, float theta, int B, int C)
{
	float *loss = vlm_cu_scratch(0, 1);

	vlm_gemm_cuda(0, 1, B, B, C, expf(theta), u, C, v, C, 0.0f, logits,
	    B);
	CU_LAUNCH(clip_lse, 2 * (int64_t)B, lse, logits, B);
	clip_total<<<1, 1, 0, vlm_cu_stream>>>(loss, logits, lse, B);
	vlm_cu_check("clip_total");
	return vlm_cu_read(loss); /* the logged scalar */
}

static __global__ void
clip_dlogits(float *dl, const float *logits, const float *lse, int B,
    float dloss)
{
	float k = dloss / (2.0f * B);

	CU_FOR(e, (int64_t)B * B) {
		int i = (int)(e / B), j = (int)(e % B);
		float p = expf(logits[e] - lse[i]) + expf(logits[e] -
		    lse[B + j]);
		dl[e] = k * (p - (i == j ? 2.0f : 0.0f));
	}
}

/* *dtheta += sum dl logits, one block, summed in double. */
static __global__ void
clip_dtheta(float *dtheta, const float *dl, const float *logits, int64_t n)
{
	double s = 0;

	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		s += (double)dl[i] * logits[i];
	s = cu_block_sum(s);
	if (threadIdx.x == 0)
		*dtheta += (float)s;
}

void
vlm_clip_loss_bwd_cuda(float *du, float *dv, float *dtheta, float *dlogits,
    const float *logits, const float *lse, const float *u, const float *v,
    float theta, float dloss, int B, int C)
{
	float t = expf(theta);

	CU_LAUNCH(clip_dlogits, (int64_t)B * B, dlogits, logits, lse, B,
	    dloss);
	if (dtheta) {
		clip_dtheta<<<1, 1024, 0, vlm_cu_stream>>>(dtheta, dlogits,
		    logits, (int64_t)B * B);
		vlm_cu_check("clip_dtheta");
	}
	if (du)
		vlm_gemm_cuda(0, 0, B, C, B, t, dlogits, B, v, C, 1.0f, du, C);
	if (dv)
		vlm_gemm_cuda(1, 0, B, C, B, t, dlogits, B, u, C, 1.0f, dv, C);
}

/* ---- AdamW and clipping ------------------------------------------- */

static __global__ void
adamw(float *p, float *m, float *v, const float *g, int64_t n, float decay,
    float w1, float b2, float w2, float step, float bc2, float eps)
{
	CU_FOR(i, n) {
		float gi = g[i], mi = m[i];
		p[i] *= decay;
		mi = w1 < 0.5f ? mi + w1 * (gi - mi) : gi - (gi - mi) *
		    (1.0f - w1); /* torch.lerp */
		m[i] = mi;
		v[i] = v[i] * b2 + w2 * (gi * gi);
		p[i] += -step * (mi / (sqrtf(v[i]) / bc2 + eps));
	}
}

void
vlm_adamw_step_cuda(float *p, float *m, float *v, const float *g, int64_t n,
    int64_t t, float lr, float beta1, float beta2, float eps, float wd)
{
	CU_LAUNCH(adamw, n, p, m, v, g, n, (float)(1.0 - (double)lr * wd),
	    (float)(1.0 - beta1), beta2, (float)(1.0 - beta2),
	    (float)(lr / (1.0 - pow(beta1, (double)t))),
	    (float)sqrt(1.0 - pow(beta2, (double)t)), eps);
}

/* *s += sum of squares, per block in double, then one atomic. */
static __global__ void
sumsq(double *s, const float *g, int64_t n)
{
	double a = 0;

	CU_FOR(i, n)
		a += (double)g[i] * g[i];
	a = cu_block_sum(a);
	if (threadIdx.x == 0)
		atomicAdd(s, a);
}

static __global__ void
scale(float *y, float a, int64_t n)
{
	CU_FOR(i, n)
		y[i] *= a;
}

float
vlm_grad_clip_cuda(float *g, int64_t n, float max_norm)
{
	double *s = (double *)vlm_cu_scratch(1, 2), norm = 0;
	float coef;

	if (!s)
		return NAN;
	cudaMemsetAsync(s, 0, sizeof(*s), vlm_cu_stream);
	CU_LAUNCH(sumsq, n, s, g, n);
	cudaMemcpyAsync(&norm, s, sizeof(norm), cudaMemcpyDeviceToHost,
	    vlm_cu_stream);
	cudaStreamSynchronize(vlm_cu_stream);
	norm = sqrt(norm);
	coef = (float)(max_norm / (norm + 1e-6));
	if (max_norm > 0 && coef < 1.0f)
		CU_LAUNCH(scale, n, g, coef, n);
	return (float)norm;
}

/* ---- rows and sums ---------------------------------------------------- */

static __global__ void
add(float *y, const float *x, int64_t n)
{
	CU_FOR(i, n)
		y[i] += x[i];
}

static __global__ void
rows_gather(float *y, const float *x, const int32_t *rows, int S, int D)
{
	CU_FOR(i, (int64_t)S * D)
		y[i] = x[(size_t)rows[i / D] * D + i % D];
}

static __global__ void
rows_scatter_add(float *x, const float *y, const int32_t *rows, int S, int D)
{
	CU_FOR(i, (int64_t)S * D) /* rows distinct: no two threads meet */
		x[(size_t)rows[i / D] * D + i % D] += y[i];
}

void
vlm_add_cuda(float *y, const float *x, int64_t n)
{
	CU_LAUNCH(add, n, y, x, n);
}

void
vlm_scale_cuda(float *y, float a, int64_t n)
{
	CU_LAUNCH(scale, n, y, a, n);
}

void
vlm_rows_gather_cuda(float *y, const float *x, const int32_t *rows, int S,
    int D)
{
	CU_LAUNCH(rows_gather, (int64_t)S * D, y, x, rows, S, D);
}

void
vlm_rows_scatter_add_cuda(float *x, const float *y, const int32_t *rows,
    int S, int D)
{
	CU_LAUNCH(rows_scatter_add, (int64_t)S * D, x, y, rows, S, D);
}
