/*
 * embed.c - sequence inputs (ALGORITHMS.md section 1): token embedding
 * lookup, learned position embeddings, and the class token put in front
 * of the patches. Each is one pass over memory, so the plain version is
 * the CPU one. Backwards accumulate (kernels.h).
 */
#include <assert.h>
#include <string.h>

#include "kernels.h"

/* out[n] = table[ids[n]]. */
void
vlm_embed_fwd_ref(float *out, const int32_t *ids, const float *table, int N,
    int V, int C)
{
	for (int n = 0; n < N; n++) {
		assert(ids[n] >= 0 && ids[n] < V);
		memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C,
		    (size_t)C * sizeof(float));
	}
}

/* dtable[ids[n]] += dout[n], in order n = 0, 1, ... (deterministic). */
void
vlm_embed_bwd_ref(float *dtable, const float *dout, const int32_t *ids,
    int N, int V, int C)
{
	for (int n = 0; n < N; n++) {
		float *d = dtable + (size_t)ids[n] * C;
		assert(ids[n] >= 0 && ids[n] < V);
		for (int c = 0; c < C; c++)
			d[c] += dout[(size_t)n * C + c];
	}
}

/* out[b,t] = x[b,t] + pos[t]; out may be x. */
void
vlm_posembed_fwd_ref(float *out, const float *x, const float *pos, int B,
    int T, int C)
{
	for (int b = 0; b < B; b++)
		for (size_t i = 0; i < (size_t)T * C; i++)
			out[(size_t)b * T * C + i] = x[(size_t)b * T * C + i] +
			    pos[i];
}

/* dx += dout (dx NULL: skipped, e.g. when it is dout itself); dpos += sum_b. */
void
vlm_posembed_bwd_ref(float *dx, float *dpos, const float *dout, int B, int T,
    int C)
{
	for (int b = 0; b < B; b++)
		for (size_t i = 0; i < (size_t)T * C; i++) {
			float d = dout[(size_t)b * T * C + i];
			if (dx)
				dx[(size_t)b * T * C + i] += d;
			if (dpos)
				dpos[i] += d;
		}
}

/* out[b,0] = cls, out[b,1+t] = x[b,t]. */
void
vlm_cls_prepend_fwd_ref(float *out, const float *x, const float *cls, int B,
    int P, int C)
{
	for (int b = 0; b < B; b++) {
		float *o = out + (size_t)b * (P + 1) * C;
		memcpy(o, cls, (size_t)C * sizeof(float));
		memcpy(o + C, x + (size_t)b * P * C,
		    (size_t)P * C * sizeof(float));
	}
}

/* dx[b,t] += dout[b,1+t]; dcls += sum_b dout[b,0]; either may be NULL. */
void
vlm_cls_prepend_bwd_ref(float *dx, float *dcls, const float *dout, int B,
    int P, int C)
{
	for (int b = 0; b < B; b++) {
		const float *d = dout + (size_t)b * (P + 1) * C;
		for (int c = 0; dcls && c < C; c++)
			dcls[c] += d[c];
		for (size_t i = 0; dx && i < (size_t)P * C; i++)
			dx[(size_t)b * P * C + i] += d[C + i];
	}
}
