/*
 * pool.c - sequence pooling heads (ALGORITHMS.md section 1): one token
 * (class token at row 0, or CLIP's EOT at a per-example row), global
 * average pooling, and the attention part of multi-head attention
 * pooling (MAP: a learned probe query attends over the tokens). Each
 * touches every input once, so the plain version is the CPU one.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "shared.h"

/* out[b] = x[b, pos[b]]; pos NULL means row 0 (the class token). */
void
vlm_pool_token_fwd_ref(float *out, const float *x, const int32_t *pos,
    int B, int T, int C)
{
	for (int b = 0; b < B; b++) {
		int t = pos ? pos[b] : 0;
		assert(t >= 0 && t < T);
		memcpy(out + (size_t)b * C, x + ((size_t)b * T + t) * C,
		    (size_t)C * sizeof(float));
	}
}

void
vlm_pool_token_bwd_ref(float *dx, const float *dout, const int32_t *pos,
    int B, int T, int C)
{
	for (int b = 0; b < B; b++) {
		int t = pos ? pos[b] : 0;
		assert(t >= 0 && t < T);
		for (int c = 0; c < C; c++)
			dx[((size_t)b * T + t) * C + c] +=
			    dout[(size_t)b * C + c];
	}
}

/* pos[b] = the first t with the largest ids[b,t] (CLIP: the EOT). */
void
vlm_eot_index(int32_t *pos, const int32_t *ids, int B, int T)
{
	for (int b = 0; b < B; b++) {
		const int32_t *r = ids + (size_t)b * T;
		int best = 0;
		for (int t = 1; t < T; t++)
			if (r[t] > r[best])
				best = t;
		pos[b] = best;
	}
}

/* Tokens of example b that count: len[b], or all T when len is NULL. */
static int
seq_len(const int32_t *len, int b, int T)
{
	int n = len ? len[b] : T;

	assert(n >= 1 && n <= T);
	return n;
}

/* out[b] = mean over the first len[b] rows of x[b]. */
void
vlm_pool_mean_fwd_ref(float *out, const float *x, const int32_t *len, int B,
    int T, int C)
{
	for (int b = 0; b < B; b++) {
		int n = seq_len(len, b, T);
		for (int c = 0; c < C; c++) {
			float acc = 0;
			for (int t = 0; t < n; t++)
				acc += x[((size_t)b * T + t) * C + c];
			out[(size_t)b * C + c] = acc / n;
		}
	}
}

void
vlm_pool_mean_bwd_ref(float *dx, const float *dout, const int32_t *len,
    int B, int T, int C)
{
	for (int b = 0; b < B; b++) {
		int n = seq_len(len, b, T);
		for (int t = 0; t < n; t++)
			for (int c = 0; c < C; c++)
				dx[((size_t)b * T + t) * C + c] +=
				    dout[(size_t)b * C + c] / n;
	}
}

/*
 * MAP attention: head h of the probe query q attends over the keys of
 * example b: att[b,h,t] = softmax_t(q_h . k[b,t,h] / sqrt(C/H)) for
 * t < len[b] (0 beyond), out[b,h] = sum_t att[b,h,t] v[b,t,h].
 */
void
vlm_pool_map_fwd_ref(float *out, float *att, const float *q, const float *k,
    const float *v, const int32_t *len, int B, int T, int C, int H)
{
	assert(H > 0 && C % H == 0);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++)
			vlm_map_head(out, att, q, k, v, b, h,
			    seq_len(len, b, T), T, C, H);
}

/* dq (C) sums over the batch; dk, dv (B,T,C); any may be NULL. */
void
vlm_pool_map_bwd_ref(float *dq, float *dk, float *dv, const float *dout,
    const float *att, const float *q, const float *k, const float *v,
    const int32_t *len, int B, int T, int C, int H)
{
	int hd = C / H;
	float scale = 1.0f / sqrtf((float)hd);

	assert(H > 0 && C % H == 0);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			const float *a = att + ((size_t)b * H + h) * T;
			const float *d = dout + (size_t)b * C + h * hd;
			int n = seq_len(len, b, T);
			float dot = 0;
			for (int t = 0; t < n; t++) { /* sum_t att dA */
				size_t o = ((size_t)b * T + t) * C + h * hd;
				float da = 0;
				for (int i = 0; i < hd; i++) {
					da += d[i] * v[o + i];
					if (dv)
						dv[o + i] += a[t] * d[i];
				}
				dot += a[t] * da;
			}
			for (int t = 0; t < n; t++) {
				size_t o = ((size_t)b * T + t) * C + h * hd;
				float da = 0, ds;
				for (int i = 0; i < hd; i++)
					da += d[i] * v[o + i];
				ds = a[t] * (da - dot) * scale;
				for (int i = 0; i < hd; i++) {
					if (dq)
						dq[h * hd + i] += ds * k[o + i];
					if (dk)
						dk[o + i] += ds * q[h * hd + i];
				}
			}
		}
}
