/*
 * attention.c - multi-head scaled dot-product attention on a fused qkv
 * (B,T,3C) laid out [q | k | v] along the last dimension (OpenCLIP's
 * in_proj order), head h owning columns h*hs .. h*hs+hs-1 of each part.
 * The output (B,T,C) is before the out-projection (a linear layer).
 * Softmax in fp32; masked probabilities are exactly zero, so the
 * backward needs no mask. The fast version runs SGEMMs per (batch, head)
 * and spreads the (batch, head) pairs over the thread pool; its softmax
 * takes exp_neg (vmath.h) for libm's expf and sums in 16 lanes, so that
 * it vectorises (a ViT-B/32 forward spent 2% in softmax and expf).
 */
#include <assert.h>
#include <math.h>

#include <cblas.h>

#include "base/base.h"
#include "kernels.h"
#include "vmath.h"

/* How many keys query i may see: causal and padding masks. */
static inline int
nkeys(int i, int T, const int32_t *len, int causal, int b)
{
	int n = causal ? i + 1 : T;

	if (len) {
		assert(len[b] >= 1 && len[b] <= T);
		if (len[b] < n)
			n = len[b];
	}
	return n;
}

/* Softmax of a[0..n) in place, zeros in a[n..T). */
static void
softmax_row(float *a, int n, int T)
{
	float mx = -INFINITY, sum = 0.0f;

	for (int j = 0; j < n; j++)	/* fmaxf's result, inline (no NaN) */
		mx = a[j] > mx ? a[j] : mx;
	for (int j = 0; j < n; j++) {
		a[j] = expf(a[j] - mx);
		sum += a[j];
	}
	for (int j = 0; j < n; j++)
		a[j] /= sum;
	for (int j = n; j < T; j++)
		a[j] = 0.0f;
}

/* softmax_row with exp_neg, the sum in 16 lanes added in order. */
WIDE static void
softmax_row_fast(float *a, int n, int T)
{
	float mx = -INFINITY, lane[16] = { 0 }, sum = 0.0f, inv;
	int j = 0;

	for (int i = 0; i < n; i++)
		mx = a[i] > mx ? a[i] : mx;
	for (; j + 16 <= n; j += 16)
		for (int l = 0; l < 16; l++) {
			a[j + l] = exp_neg(a[j + l] - mx);
			lane[l] += a[j + l];
		}
	for (int l = 0; j + l < n; l++) {
		a[j + l] = exp_neg(a[j + l] - mx);
		lane[l] += a[j + l];
	}
	for (int l = 0; l < 16; l++)
		sum += lane[l];
	inv = 1.0f / sum;
	for (j = 0; j < n; j++)
		a[j] *= inv;
	for (j = n; j < T; j++)
		a[j] = 0.0f;
}

void
vlm_attention_fwd_ref(float *out, float *att, const float *qkv,
    const int32_t *len, int causal, int B, int T, int C, int H)
{
	int hs = C / H;
	float scale = 1.0f / sqrtf((float)hs);

	assert(C % H == 0);
	for (int b = 0; b < B; b++)
	for (int h = 0; h < H; h++)
	for (int i = 0; i < T; i++) {
		const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
		float *a = att + (((size_t)b * H + h) * T + i) * T;
		float *o = out + ((size_t)b * T + i) * C + h * hs;
		int n = nkeys(i, T, len, causal, b);
		for (int j = 0; j < n; j++) {
			const float *k = qkv + ((size_t)b * T + j) * 3 * C +
			    C + h * hs;
			float s = 0.0f;
			for (int d = 0; d < hs; d++)
				s += q[d] * k[d];
			a[j] = s * scale;
		}
		softmax_row(a, n, T);
		for (int d = 0; d < hs; d++)
			o[d] = 0.0f;
		for (int j = 0; j < n; j++) {
			const float *v = qkv + ((size_t)b * T + j) * 3 * C +
			    2 * C + h * hs;
			for (int d = 0; d < hs; d++)
				o[d] += a[j] * v[d];
		}
	}
}

/* x . y over n floats, summed in order. */
static inline float
dot(const float *x, const float *y, int n)
{
	float s = 0.0f;

	for (int d = 0; d < n; d++)
		s += x[d] * y[d];
	return s;
}

/*
 * Per query i: dA_ij = dout_i . v_j, dS_ij = A_ij (dA_ij - sum_j A dA),
 * dq_i += scale dS k, dk_j += scale dS_ij q_i, dv_j += A_ij dout_i.
 */
void
vlm_attention_bwd_ref(float *dqkv, float *scratch, const float *dout,
    const float *qkv, const float *att, int B, int T, int C, int H)
{
	(void)scratch; /* the plain loops keep dA in a register */
	int hs = C / H;
	float scale = 1.0f / sqrtf((float)hs);

	assert(C % H == 0);
	for (int b = 0; b < B; b++)
	for (int h = 0; h < H; h++)
	for (int i = 0; i < T; i++) {
		size_t qi = ((size_t)b * T + i) * 3 * C + h * hs;
		const float *a = att + (((size_t)b * H + h) * T + i) * T;
		const float *g = dout + ((size_t)b * T + i) * C + h * hs;
		float s = 0.0f;
		for (int j = 0; j < T; j++)
			s += a[j] * dot(g, qkv + ((size_t)b * T + j) * 3 * C +
			    2 * C + h * hs, hs);
		for (int j = 0; j < T; j++) {
			size_t kj = ((size_t)b * T + j) * 3 * C + C + h * hs;
			float ds = a[j] * (dot(g, qkv + kj + C, hs) - s);
			for (int d = 0; d < hs; d++) {
				dqkv[qi + d] += scale * ds * qkv[kj + d];
				dqkv[kj + d] += scale * ds * qkv[qi + d];
				dqkv[kj + C + d] += a[j] * g[d];
			}
		}
	}
}

struct attn {
	float *out, *att, *dqkv, *scratch;
	const float *qkv, *dout, *catt;
	const int32_t *len;
	int causal, B, T, C, H;
};

/* Forward of (batch, head) pairs [p0, p1). */
static void
fwd_job(void *arg, int64_t p0, int64_t p1)
{
	struct attn *x = arg;
	int T = x->T, C = x->C, hs = C / x->H;
	float scale = 1.0f / sqrtf((float)hs);

	for (int64_t p = p0; p < p1; p++) {
		int b = p / x->H, h = p % x->H;
		const float *q = x->qkv + (size_t)b * T * 3 * C + h * hs;
		float *a = x->att + (size_t)p * T * T;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs,
		    scale, q, 3 * C, q + C, 3 * C, 0.0f, a, T);
		for (int i = 0; i < T; i++)
			softmax_row_fast(a + (size_t)i * T,
			    nkeys(i, T, x->len, x->causal, b), T);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs,
		    T, 1.0f, a, T, q + 2 * C, 3 * C, 0.0f,
		    x->out + (size_t)b * T * C + h * hs, C);
	}
}

void
vlm_attention_fwd_cpu(float *out, float *att, const float *qkv,
    const int32_t *len, int causal, int B, int T, int C, int H)
{
	struct attn x = { .out = out, .att = att, .qkv = qkv, .len = len,
	    .causal = causal, .B = B, .T = T, .C = C, .H = H };

	assert(C % H == 0);
	vlm_parallel_for_cost((int64_t)B * H, (int64_t)B * T * T * C * 4,
	    fwd_job, &x);
}

/* Backward of (batch, head) pairs [p0, p1); s, pair p's (T,T) of the
 * caller's scratch, is dA then dS. */
static void
bwd_job(void *arg, int64_t p0, int64_t p1)
{
	struct attn *x = arg;
	int T = x->T, C = x->C, hs = C / x->H;
	float scale = 1.0f / sqrtf((float)hs);

	for (int64_t p = p0; p < p1; p++) {
		int b = p / x->H, h = p % x->H;
		float *s = x->scratch + (size_t)p * T * T;
		size_t off = (size_t)b * T * 3 * C + h * hs;
		const float *q = x->qkv + off, *a = x->catt + (size_t)p * T * T;
		const float *g = x->dout + (size_t)b * T * C + h * hs;
		float *dq = x->dqkv + off;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs,
		    1.0f, g, C, q + 2 * C, 3 * C, 0.0f, s, T);
		for (int i = 0; i < T; i++) {
			float *si = s + (size_t)i * T;
			const float *ai = a + (size_t)i * T;
			float sum = dot(ai, si, T);
			for (int j = 0; j < T; j++)
				si[j] = ai[j] * (si[j] - sum);
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs,
		    T, scale, s, T, q + C, 3 * C, 1.0f, dq, 3 * C);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T,
		    scale, s, T, q, 3 * C, 1.0f, dq + C, 3 * C);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T,
		    1.0f, a, T, g, C, 1.0f, dq + 2 * C, 3 * C);
	}
}

void
vlm_attention_bwd_cpu(float *dqkv, float *scratch, const float *dout,
    const float *qkv, const float *att, int B, int T, int C, int H)
{
	struct attn x = { .dqkv = dqkv, .scratch = scratch, .dout = dout,
	    .qkv = qkv,
	    .catt = att, .B = B, .T = T, .C = C, .H = H };

	assert(C % H == 0);
	vlm_parallel_for_cost((int64_t)B * H, (int64_t)B * T * T * C * 8,
	    bwd_job, &x);
}
