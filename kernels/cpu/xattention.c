/*
 * xattention.c - multi-head attention of Tq query rows over Tk key rows
 * given as separate (strided) q, k, v: CoCa's attentional pooler and
 * decoder cross-attention, and self-attention under an additive mask
 * (the text class token's); probabilities P kept for the backward.
 */
#include <assert.h>
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


/* Scores row i of one head (Tk) := softmax(s * sc + mask, causal). */
static void
softmax_row(float *p, const float *mask, int causal, int i, int Tk,
    float sc)
{
	float mx = -INFINITY, sum = 0;

	for (int j = 0; j < Tk; j++) {
		float s = p[j] * sc + (mask ? mask[j] : 0);
		p[j] = causal && j > i ? -INFINITY : s;
		mx = p[j] > mx ? p[j] : mx;
	}
	for (int j = 0; j < Tk; j++)
		sum += (p[j] = expf(p[j] - mx));
	for (int j = 0; j < Tk; j++)
		p[j] /= sum;
}

/* The fast forward: per head two strided GEMMs around the softmax. */
void
vlm_xattention_fwd_cpu(float *out, float *P, const float *q, int lq,
    const float *k, int lk, const float *v, int lv, const float *mask,
    int causal, int Tq, int Tk, int C, int H)
{
	int hd = C / H;
	float sc = 1.0f / sqrtf((float)hd);

	for (int h = 0; h < H; h++) {
		float *Ph = P + (size_t)h * Tq * Tk;
		/* (Tq,hd) x (Tk,hd)^T -> (Tq,Tk) */
		vlm_gemm_cpu(0, 1, Tq, Tk, hd, 1, q + h * hd, lq, k + h * hd,
		    lk, 0, Ph, Tk);
		for (int i = 0; i < Tq; i++)
			softmax_row(Ph + (size_t)i * Tk, mask ? mask +
			    (size_t)i * Tk : NULL, causal, i, Tk, sc);
		/* (Tq,Tk) x (Tk,hd) -> out's head columns */
		vlm_gemm_cpu(0, 0, Tq, hd, Tk, 1, Ph, Tk, v + h * hd, lv, 0,
		    out + h * hd, C);
	}
}

/* The fast backward: dv += P^T da, dS = P (da v^T - rowdot) / sqrt(hd),
 * dq += dS k, dk += dS^T q, per head. */
void
vlm_xattention_bwd_cpu(float *dq, float *dk, float *dv, const float *da,
    const float *P, const float *q, const float *k, const float *v, int lq,
    int lk, int lv, int Tq, int Tk, int C, int H)
{
	int hd = C / H;
	float sc = 1.0f / sqrtf((float)hd);
	float *dS = malloc((size_t)Tq * Tk * sizeof(float));

	assert(dS);
	for (int h = 0; h < H; h++) {
		const float *Ph = P + (size_t)h * Tq * Tk;
		vlm_gemm_cpu(1, 0, Tk, hd, Tq, 1, Ph, Tk, da + h * hd, C, 1,
		    dv + h * hd, lv);
		vlm_gemm_cpu(0, 1, Tq, Tk, hd, 1, da + h * hd, C, v + h * hd,
		    lv, 0, dS, Tk);
		for (int i = 0; i < Tq; i++) {
			const float *p = Ph + (size_t)i * Tk;
			float *d = dS + (size_t)i * Tk, dot = 0;
			for (int j = 0; j < Tk; j++)
				dot += p[j] * d[j];
			for (int j = 0; j < Tk; j++)
				d[j] = p[j] * (d[j] - dot) * sc;
		}
		vlm_gemm_cpu(0, 0, Tq, hd, Tk, 1, dS, Tk, k + h * hd, lk, 1,
		    dq + h * hd, lq);
		vlm_gemm_cpu(1, 0, Tk, hd, Tq, 1, dS, Tk, q + h * hd, lq, 1,
		    dk + h * hd, lk);
	}
	free(dS);
}
