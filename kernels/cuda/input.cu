/*
 * input.cu - inputs, pooling and token reduction on the GPU (kernels.h):
 * patchify, token and position embeddings, the class token, one-token,
 * mean and MAP pooling, and TokenLearner composed of the dense ops
 * (LayerNorm, linear, GELU) with a softmax over tokens and batched
 * SGEMMs. Gradients that several rows add into one (embedding table,
 * position table, class token, MAP probe) are summed by one thread per
 * output value in the CPU's order, so they are deterministic.
 */
#include "cuda.cuh"
#include "shared.h"

/* ---- patches ---------------------------------------------------------- */

/* Element o of out (B,P,ch*p*p): its offset in img (B,ch,H,W). */
static __device__ size_t
patch_src(int64_t o, int ch, int H, int W, int p)
{
	int P = (H / p) * (W / p), row = ch * p * p;
	int64_t b = o / ((int64_t)P * row);
	int q = (int)(o / row % P), r = (int)(o % row);
	int c = r / (p * p), i = r / p % p, j = r % p;
	int py = q / (W / p), px = q % (W / p);

	return (((size_t)b * ch + c) * H + (size_t)py * p + i) * W +
	    (size_t)px * p + j;
}

static __global__ void
patchify_fwd(float *out, const float *img, int64_t n, int ch, int H, int W,
    int p)
{
	CU_FOR(o, n)
		out[o] = img[patch_src(o, ch, H, W, p)];
}

static __global__ void
patchify_bwd(float *dimg, const float *dout, int64_t n, int ch, int H, int W,
    int p)
{
	CU_FOR(o, n) /* a pixel belongs to one patch */
		dimg[patch_src(o, ch, H, W, p)] += dout[o];
}

void
vlm_patchify_fwd_cuda(float *out, const float *img, int B, int ch, int H,
    int W, int p)
{
	int64_t n = (int64_t)B * ch * H * W;

	CU_LAUNCH(patchify_fwd, n, out, img, n, ch, H, W, p);
}

void
vlm_patchify_bwd_cuda(float *dimg, const float *dout, int B, int ch, int H,
    int W, int p)
{
	int64_t n = (int64_t)B * ch * H * W;

	CU_LAUNCH(patchify_bwd, n, dimg, dout, n, ch, H, W, p);
}

/* ---- embeddings ------------------------------------------------------- */

static __global__ void
embed_fwd(float *out, const int32_t *ids, const float *table, int N, int C)
{
	CU_FOR(i, (int64_t)N * C)
		out[i] = table[(size_t)ids[i / C] * C + i % C];
}

/* One thread per channel, rows in order (repeated ids add up). */
static __global__ void
embed_bwd(float *dtable, const float *dout, const int32_t *ids, int N, int C)
{
	CU_FOR(c, C)
		for (int n = 0; n < N; n++)
			dtable[(size_t)ids[n] * C + c] +=
			    dout[(size_t)n * C + c];
}

static __global__ void
posembed_fwd(float *out, const float *x, const float *pos, int64_t n,
    int64_t TC)
{
	CU_FOR(i, n)
		out[i] = x[i] + pos[i % TC];
}

/* dx += dout; dpos[i] += sum over b, one thread per i. */
static __global__ void
posembed_bwd(float *dx, float *dpos, const float *dout, int B, int64_t TC)
{
	CU_FOR(i, TC) {
		float s = 0;
		for (int b = 0; b < B; b++) {
			float d = dout[b * TC + i];
			if (dx)
				dx[b * TC + i] += d;
			s += d;
		}
		if (dpos)
			dpos[i] += s;
	}
}

void
vlm_embed_fwd_cuda(float *out, const int32_t *ids, const float *table, int N,
    int V, int C)
{
	(void)V;
	CU_LAUNCH(embed_fwd, (int64_t)N * C, out, ids, table, N, C);
}

void
vlm_embed_bwd_cuda(float *dtable, const float *dout, const int32_t *ids,
    int N, int V, int C)
{
	(void)V;
	CU_LAUNCH(embed_bwd, C, dtable, dout, ids, N, C);
}

void
vlm_posembed_fwd_cuda(float *out, const float *x, const float *pos, int B,
    int T, int C)
{
	int64_t n = (int64_t)B * T * C;

	CU_LAUNCH(posembed_fwd, n, out, x, pos, n, (int64_t)T * C);
}

void
vlm_posembed_bwd_cuda(float *dx, float *dpos, const float *dout, int B,
    int T, int C)
{
	CU_LAUNCH(posembed_bwd, (int64_t)T * C, dx, dpos, dout, B,
	    (int64_t)T * C);
}

/* out[b,0] = cls, out[b,1+t] = x[b,t]. */
static __global__ void
cls_fwd(float *out, const float *x, const float *cls, int B, int P, int C)
{
	CU_FOR(i, (int64_t)B * (P + 1) * C) {
		int64_t b = i / ((int64_t)(P + 1) * C);
		int64_t r = i % ((int64_t)(P + 1) * C);
		out[i] = r < C ? cls[r] : x[b * P * C + r - C];
	}
}

static __global__ void
cls_bwd_dx(float *dx, const float *dout, int B, int P, int C)
{
	CU_FOR(i, (int64_t)B * P * C) {
		int64_t b = i / ((int64_t)P * C), r = i % ((int64_t)P * C);
		dx[i] += dout[b * (P + 1) * C + C + r];
	}
}

static __global__ void
cls_bwd_cls(float *dcls, const float *dout, int B, int P, int C)
{
	CU_FOR(c, C) {
		float s = 0;
		for (int b = 0; b < B; b++)
			s += dout[(size_t)b * (P + 1) * C + c];
		dcls[c] += s;
	}
}

void
vlm_cls_prepend_fwd_cuda(float *out, const float *x, const float *cls, int B,
    int P, int C)
{
	CU_LAUNCH(cls_fwd, (int64_t)B * (P + 1) * C, out, x, cls, B, P, C);
}

void
vlm_cls_prepend_bwd_cuda(float *dx, float *dcls, const float *dout, int B,
    int P, int C)
{
	if (dx)
		CU_LAUNCH(cls_bwd_dx, (int64_t)B * P * C, dx, dout, B, P, C);
	if (dcls)
		CU_LAUNCH(cls_bwd_cls, C, dcls, dout, B, P, C);
}

/* ---- pooling ---------------------------------------------------------- */

static __global__ void
pool_token(float *out, float *dx, const float *x, const float *dout,
    const int32_t *pos, int B, int T, int C)
{
	CU_FOR(i, (int64_t)B * C) {
		int64_t b = i / C;
		size_t o = ((size_t)b * T + (pos ? pos[b] : 0)) * C + i % C;
		if (out)
			out[i] = x[o];
		else
			dx[o] += dout[i];
	}
}

void
vlm_pool_token_fwd_cuda(float *out, const float *x, const int32_t *pos,
    int B, int T, int C)
{
	CU_LAUNCH(pool_token, (int64_t)B * C, out, NULL, x, NULL, pos, B, T,
	    C);
}

void
vlm_pool_token_bwd_cuda(float *dx, const float *dout, const int32_t *pos,
    int B, int T, int C)
{
	CU_LAUNCH(pool_token, (int64_t)B * C, NULL, dx, NULL, dout, pos, B, T,
	    C);
}

static __global__ void
pool_mean_fwd(float *out, const float *x, const int32_t *len, int B, int T,
    int C)
{
	CU_FOR(i, (int64_t)B * C) {
		int64_t b = i / C;
		int n = len ? len[b] : T;
		float acc = 0;
		for (int t = 0; t < n; t++)
			acc += x[((size_t)b * T + t) * C + i % C];
		out[i] = acc / n;
	}
}

static __global__ void
pool_mean_bwd(float *dx, const float *dout, const int32_t *len, int B, int T,
    int C)
{
	CU_FOR(i, (int64_t)B * T * C) {
		int64_t b = i / ((int64_t)T * C);
		int t = (int)(i / C % T), n = len ? len[b] : T;
		if (t < n)
			dx[i] += dout[b * C + i % C] / n;
	}
}

void
vlm_pool_mean_fwd_cuda(float *out, const float *x, const int32_t *len, int B,
    int T, int C)
{
	CU_LAUNCH(pool_mean_fwd, (int64_t)B * C, out, x, len, B, T, C);
}

void
vlm_pool_mean_bwd_cuda(float *dx, const float *dout, const int32_t *len,
    int B, int T, int C)
{
	CU_LAUNCH(pool_mean_bwd, (int64_t)B * T * C, dx, dout, len, B, T, C);
}

/* MAP attention of (b, h), one thread each (shared.h). */
static __global__ void
map_fwd(float *out, float *att, const float *q, const float *k,
    const float *v, const int32_t *len, int B, int T, int C, int H)
{
	CU_FOR(bh, (int64_t)B * H) {
		int b = (int)(bh / H), h = (int)(bh % H);
		vlm_map_head(out, att, q, k, v, b, h, len ? len[b] : T, T, C,
		    H);
	}
}

/* sum_t att dA of (b, h): the softmax backward's dot. */
static __device__ float
map_dot(const float *a, const float *d, const float *v, int b, int h, int n,
    int T, int C, int hd)
{
	float dot = 0;

	for (int t = 0; t < n; t++) {
		size_t o = ((size_t)b * T + t) * C + h * hd;
		float da = 0;
		for (int i = 0; i < hd; i++)
			da += d[i] * v[o + i];
		dot += a[t] * da;
	}
	return dot;
}

/* dk, dv of (b, h), one thread each. */
static __global__ void
map_bwd_kv(float *dk, float *dv, const float *dout, const float *att,
    const float *q, const float *v, const int32_t *len, int B, int T, int C,
    int H)
{
	int hd = C / H;
	float scale = 1.0f / sqrtf((float)hd);

	CU_FOR(bh, (int64_t)B * H) {
		int b = (int)(bh / H), h = (int)(bh % H);
		int n = len ? len[b] : T;
		const float *a = att + bh * T;
		const float *d = dout + (size_t)b * C + h * hd;
		float dot = map_dot(a, d, v, b, h, n, T, C, hd);
		for (int t = 0; t < n; t++) {
			size_t o = ((size_t)b * T + t) * C + h * hd;
			float da = 0, ds;
			for (int i = 0; i < hd; i++) {
				da += d[i] * v[o + i];
				if (dv)
					dv[o + i] += a[t] * d[i];
			}
			ds = a[t] * (da - dot) * scale;
			for (int i = 0; dk && i < hd; i++)
				dk[o + i] += ds * q[h * hd + i];
		}
	}
}

/* dq[h*hd+i], one thread each, summed over b and t in the CPU's order. */
static __global__ void
map_bwd_q(float *dq, const float *dout, const float *att, const float *k,
    const float *v, const int32_t *len, int B, int T, int C, int H)
{
	int hd = C / H;
	float scale = 1.0f / sqrtf((float)hd);

	CU_FOR(c, C) {
		int h = (int)(c / hd), i = (int)(c % hd);
		float s = 0;
		for (int b = 0; b < B; b++) {
			const float *a = att + ((size_t)b * H + h) * T;
			const float *d = dout + (size_t)b * C + h * hd;
			int n = len ? len[b] : T;
			float dot = map_dot(a, d, v, b, h, n, T, C, hd);
			for (int t = 0; t < n; t++) {
				size_t o = ((size_t)b * T + t) * C + h * hd;
				float da = 0;
				for (int j = 0; j < hd; j++)
					da += d[j] * v[o + j];
				s += a[t] * (da - dot) * scale * k[o + i];
			}
		}
		dq[c] += s;
	}
}

void
vlm_pool_map_fwd_cuda(float *out, float *att, const float *q, const float *k,
    const float *v, const int32_t *len, int B, int T, int C, int H)
{
	CU_LAUNCH(map_fwd, (int64_t)B * H, out, att, q, k, v, len, B, T, C, H);
}

void
vlm_pool_map_bwd_cuda(float *dq, float *dk, float *dv, const float *dout,
    const float *att, const float *q, const float *k, const float *v,
    const int32_t *len, int B, int T, int C, int H)
{
	if (dk || dv)
		CU_LAUNCH(map_bwd_kv, (int64_t)B * H, dk, dv, dout, att, q, v,
		    len, B, T, C, H);
	if (dq)
		CU_LAUNCH(map_bwd_q, C, dq, dout, att, k, v, len, B, T, C, H);
}

/* ---- TokenLearner ------------------------------------------------------ */

/* Softmax over the N tokens of att[b,:,m] in place; with bwd, dlogit =
 * att (dlogit - sum_n att dlogit) instead. One thread per (b, m). */
static __global__ void
softmax_tokens(float *att, float *dl, int B, int N, int M)
{
	CU_FOR(bm, (int64_t)B * M) {
		float *a = att + (bm / M) * N * M + bm % M, max = -INFINITY;
		float *g = dl ? dl + (bm / M) * N * M + bm % M : NULL, s = 0;
		for (int n = 0; !g && n < N; n++)
			max = fmaxf(max, a[(size_t)n * M]);
		for (int n = 0; n < N; n++)
			s += g ? a[(size_t)n * M] * g[(size_t)n * M] :
			    (a[(size_t)n * M] = expf(a[(size_t)n * M] - max));
		for (int n = 0; n < N; n++)
			if (g)
				g[(size_t)n * M] = a[(size_t)n * M] *
				    (g[(size_t)n * M] - s);
			else
				a[(size_t)n * M] /= s;
	}
}

void
vlm_token_learner_fwd_cuda(float *out, float *act, const float *x,
    const float *ln_w, const float *ln_b, const float *w1, const float *b1,
    const float *w2, const float *b2, int B, int N, int D, int Hd, int M)
{
	struct vlm_tl_act a = vlm_tl_views(act, B, N, D, Hd, M);
	int R = B * N;

	vlm_layernorm_fwd_cuda(a.xn, a.mean, a.rstd, x, ln_w, ln_b, R, D);
	vlm_linear_fwd_cuda(a.pre, a.xn, w1, b1, R, D, Hd);
	vlm_gelu_fwd_cuda(a.h, a.pre, (int64_t)R * Hd);
	vlm_linear_fwd_cuda(a.att, a.h, w2, b2, R, Hd, M);
	CU_LAUNCH(softmax_tokens, (int64_t)B * M, a.att, NULL, B, N, M);
	/* out[b] (M,D) = att[b]^T (M,N) x[b] (N,D) */
	vlm_cu_gemm_batched(1, 0, M, D, N, 1.0f, a.att, M, (long long)N * M,
	    x, D, (long long)N * D, 0.0f, out, D, (long long)M * D, B);
}

void
vlm_token_learner_bwd_cuda(float *dx, float *dln_w, float *dln_b, float *dw1,
    float *db1, float *dw2, float *db2, const float *dout, float *act,
    const float *x, const float *ln_w, const float *w1, const float *w2,
    int B, int N, int D, int Hd, int M)
{
	struct vlm_tl_act a = vlm_tl_views(act, B, N, D, Hd, M);
	int R = B * N;

	/* dlogit[b] (N,M) = x[b] dout[b]^T; dx[b] += att[b] dout[b] */
	vlm_cu_gemm_batched(0, 1, N, M, D, 1.0f, x, D, (long long)N * D, dout,
	    D, (long long)M * D, 0.0f, a.dlogit, M, (long long)N * M, B);
	vlm_cu_gemm_batched(0, 0, N, D, M, 1.0f, a.att, M, (long long)N * M,
	    dout, D, (long long)M * D, 1.0f, dx, D, (long long)N * D, B);
	CU_LAUNCH(softmax_tokens, (int64_t)B * M, a.att, a.dlogit, B, N, M);
	cudaMemsetAsync(a.dh, 0, (size_t)R * Hd * sizeof(float), vlm_cu_stream);
	vlm_linear_bwd_cuda(a.dh, dw2, db2, a.dlogit, a.h, w2, R, Hd, M);
	vlm_cu_gelu_grad_mul(a.dh, a.pre, (int64_t)R * Hd);
	cudaMemsetAsync(a.dxn, 0, (size_t)R * D * sizeof(float), vlm_cu_stream);
	vlm_linear_bwd_cuda(a.dxn, dw1, db1, a.dh, a.xn, w1, R, D, Hd);
	vlm_layernorm_bwd_cuda(dx, dln_w, dln_b, a.dxn, x, ln_w, a.mean,
	    a.rstd, R, D);
}
