/*
 * xattention.c - multi-head attention of Tq query rows over Tk key rows
 * given as separate (strided) q, k, v: CoCa's attentional pooler and
 * decoder cross-attention, and self-attention under an additive mask
 * (the text class token's); probabilities P kept for the backward.
 */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

/* out = softmax(q k^T / sqrt(C/H) + mask) v per head; P (H,Tq,Tk). */
void
vlm_xattention_fwd_ref(float *out, float *P, const float *q, int lq,
    const float *k, int lk, const float *v, int lv, const float *mask, int causal, int Tq, int Tk,
    int C, int H)
{
	int hd = C / H;
	float sc = 1.0f / sqrtf((float)hd);

	for (int h = 0; h < H; h++)
		for (int i = 0; i < Tq; i++) {
			float *p = P + ((size_t)h * Tq + i) * Tk, mx = -INFINITY,
			    sum = 0;
			for (int j = 0; j < Tk; j++) {
				float s = 0;
				for (int d = 0; d < hd; d++)
					s += q[i * lq + h * hd + d] *
					    k[j * lk + h * hd + d];
				s *= sc;
				if (mask)
					s += mask[(size_t)i * Tk + j];
				if (causal && j > i)
					s = -INFINITY;
				p[j] = s;
				mx = s > mx ? s : mx;
			}
			for (int j = 0; j < Tk; j++)
				sum += (p[j] = expf(p[j] - mx));
			for (int j = 0; j < Tk; j++)
				p[j] /= sum;
			for (int d = 0; d < hd; d++) {
				float o = 0;
				for (int j = 0; j < Tk; j++)
					o += p[j] * v[j * lv + h * hd + d];
				out[i * C + h * hd + d] = o;
			}
		}
}

/* dq, dk, dv += the gradient of attn_fwd's out (da) (same strides). */
void
vlm_xattention_bwd_ref(float *dq, float *dk, float *dv, const float *da, const float *P,
    const float *q, const float *k, const float *v, int lq, int lk, int lv,
    int Tq, int Tk, int C, int H)
{
	int hd = C / H;
	float sc = 1.0f / sqrtf((float)hd), *dp = calloc(Tk, sizeof(float));

	for (int h = 0; h < H; h++)
		for (int i = 0; i < Tq; i++) {
			const float *p = P + ((size_t)h * Tq + i) * Tk;
			const float *d = da + i * C + h * hd;
			float dot = 0;
			for (int j = 0; j < Tk; j++) {
				float s = 0;
				for (int e = 0; e < hd; e++) {
					s += d[e] * v[j * lv + h * hd + e];
					dv[j * lv + h * hd + e] += p[j] * d[e];
				}
				dp[j] = s;
				dot += p[j] * s;
			}
			for (int j = 0; j < Tk; j++) {
				float ds = p[j] * (dp[j] - dot) * sc;
				if (ds == 0)
					continue;
				for (int e = 0; e < hd; e++) {
					dq[i * lq + h * hd + e] += ds *
					    k[j * lk + h * hd + e];
					dk[j * lk + h * hd + e] += ds *
					    q[i * lq + h * hd + e];
				}
			}
		}
	free(dp);
}

