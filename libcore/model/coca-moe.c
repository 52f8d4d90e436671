/*
 * model/coca-moe.c - the MoE FFN of a CoCa decoder block (vlm's own
 * extension; OpenCLIP's CoCa is dense). A block at prefix P whose MLP is
 * sparse holds, instead of P.mlp.c_fc / c_proj,
 *   P.mlp.router.weight          (E, D)
 *   P.mlp.experts.c_fc.weight    (E, F, D)   P.mlp.experts.c_fc.bias   (E, F)
 *   P.mlp.experts.c_proj.weight  (E, D, F)   P.mlp.experts.c_proj.bias (E, D)
 * Each token x goes to the K experts of the largest router logits z = Wr x
 * (ties: the lower index), weighted by the softmax of those K logits
 * (gates summing to 1, so that experts copied from one dense MLP give
 * the dense MLP exactly): y = sum_k w_k (c_proj_e gelu(c_fc_e x)). No
 * capacity, no token is dropped: a decoder step of one token routes as
 * the same token does in training. The backward differentiates the
 * experts and, through the gates, the router. With c->aux_importance set
 * the forward also computes the importance CV^2 of ALGORITHMS.md section
 * 3 over the N tokens (the routing group) with the CPU backend's aux
 * kernels, whose gradient reaches the router even with top-1 (where the
 * gate, always 1, gives it none). The load loss needs router noise,
 * which this router does not have.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/coca.h"

#define W(c, ...) ((const float *)(c)->st.tensors[vlm_coca_index((c), \
	__VA_ARGS__)].data)
#define G(c, g, ...) ((g)[vlm_coca_index((c), __VA_ARGS__)])

int
vlm_coca_moe_at(const struct vlm_coca *c, const char *pre)
{
	char nm[160];

	snprintf(nm, sizeof(nm), "%s.mlp.router.weight", pre);
	return vlm_st_get(&c->st, nm) != NULL;
}

/* Top-K of z (E) into idx (K), the softmax of those logits into w. */
static void
top_k(const float *z, int E, int K, int32_t *idx, float *w)
{
	float mx, sum = 0;

	for (int k = 0; k < K; k++) {
		int best = -1;
		for (int e = 0; e < E; e++) {
			int taken = 0;
			for (int j = 0; j < k; j++)
				taken |= idx[j] == e;
			if (!taken && (best < 0 || z[e] > z[best]))
				best = e;
		}
		idx[k] = best;
	}
	mx = z[idx[0]];
	for (int k = 0; k < K; k++)
		sum += (w[k] = expf(z[idx[k]] - mx));
	for (int k = 0; k < K; k++)
		w[k] /= sum;
}

void
vlm_coca_moe_free(struct vlm_coca_moe *s)
{
	free(s->idx), free(s->w), free(s->order), free(s->start);
	free(s->x), free(s->h), free(s->g), free(s->o), free(s->p);
	memset(s, 0, sizeof(*s));
}

void
vlm_coca_moe_fwd(const struct vlm_coca *c, const char *pre, const float *x,
    int N, float *y, struct vlm_coca_moe *out)
{
	struct vlm_coca_moe s = { .N = N, .E = c->Ed, .K = c->Kd };
	int D = c->Dd, E = s.E, K = s.K, F;
	const float *w1 = W(c, "%s.mlp.experts.c_fc.weight", pre);
	const float *b1 = W(c, "%s.mlp.experts.c_fc.bias", pre);
	const float *w2 = W(c, "%s.mlp.experts.c_proj.weight", pre);
	const float *b2 = W(c, "%s.mlp.experts.c_proj.bias", pre);
	float *z = malloc((size_t)N * E * sizeof(float));
	int32_t *fill = calloc(E + 1, sizeof(int32_t));

	F = s.F = (int)c->st.tensors[vlm_coca_index(c,
	    "%s.mlp.experts.c_fc.weight", pre)].shape[1];
	s.idx = malloc((size_t)N * K * sizeof(int32_t));
	s.w = malloc((size_t)N * K * sizeof(float));
	s.order = malloc((size_t)N * K * sizeof(int32_t));
	s.start = calloc(E + 1, sizeof(int32_t));
	s.x = malloc((size_t)N * K * D * sizeof(float));
	s.h = malloc((size_t)N * K * F * sizeof(float));
	s.g = malloc((size_t)N * K * F * sizeof(float));
	s.o = malloc((size_t)N * K * D * sizeof(float));
	/* (N,D) x (E,D)^T: the router logits */
	vlm_gemm_cpu(0, 1, N, E, D, 1, x, D, W(c, "%s.mlp.router.weight", pre),
	    D, 0, z, E);
	for (int t = 0; t < N; t++)
		top_k(z + (size_t)t * E, E, K, s.idx + t * K, s.w + t * K);
	/* assignments t*K+k in expert order (counting sort, stable) */
	for (int a = 0; a < N * K; a++)
		s.start[s.idx[a] + 1]++;
	for (int e = 0; e < E; e++)
		s.start[e + 1] += s.start[e];
	for (int a = 0; a < N * K; a++) {
		int r = s.start[s.idx[a]] + fill[s.idx[a]]++;
		s.order[r] = a;
		memcpy(s.x + (size_t)r * D, x + (size_t)(a / K) * D,
		    D * sizeof(float));
	}
	for (int e = 0; e < E; e++) {
		int r0 = s.start[e], n = s.start[e + 1] - r0;
		if (n == 0)
			continue;
		vlm_linear_fwd_cpu(s.h + (size_t)r0 * F, s.x + (size_t)r0 * D,
		    w1 + (size_t)e * F * D, b1 + (size_t)e * F, n, D, F);
		if (c->quick)
			vlm_quickgelu_fwd_cpu(s.g + (size_t)r0 * F, s.h +
			    (size_t)r0 * F, (int64_t)n * F);
		else
			vlm_gelu_fwd_cpu(s.g + (size_t)r0 * F, s.h +
			    (size_t)r0 * F, (int64_t)n * F);
		vlm_linear_fwd_cpu(s.o + (size_t)r0 * D, s.g + (size_t)r0 * F,
		    w2 + (size_t)e * D * F, b2 + (size_t)e * D, n, F, D);
	}
	for (int r = 0; r < N * K; r++) {
		int a = s.order[r];
		float *yt = y + (size_t)(a / K) * D, wa = s.w[a];
		for (int d = 0; d < D; d++)
			yt[d] += wa * s.o[(size_t)r * D + d];
	}
	if (out && c->aux_importance > 0) {
		const struct vlm_backend *be = vlm_backend_get("cpu");
		s.p = malloc((size_t)N * E * sizeof(float));
		vlm_softmax_fwd_cpu(s.p, z, N, E);
		s.aux = be->aux_importance_fwd(s.p, N, E);
	}
	free(z), free(fill);
	if (out)
		*out = s;
	else
		vlm_coca_moe_free(&s);
}

void
vlm_coca_moe_bwd(const struct vlm_coca *c, float **gr, const char *pre,
    const struct vlm_coca_moe *s, const float *x, const float *dy,
    float *dx)
{
	int N = s->N, E = s->E, K = s->K, F = s->F, D = c->Dd;
	const float *w1 = W(c, "%s.mlp.experts.c_fc.weight", pre);
	const float *w2 = W(c, "%s.mlp.experts.c_proj.weight", pre);
	const float *wr = W(c, "%s.mlp.router.weight", pre);
	float *gw1 = G(c, gr, "%s.mlp.experts.c_fc.weight", pre);
	float *gb1 = G(c, gr, "%s.mlp.experts.c_fc.bias", pre);
	float *gw2 = G(c, gr, "%s.mlp.experts.c_proj.weight", pre);
	float *gb2 = G(c, gr, "%s.mlp.experts.c_proj.bias", pre);
	float *gwr = G(c, gr, "%s.mlp.router.weight", pre);
	float *dO = malloc((size_t)N * K * D * sizeof(float));
	float *dG = calloc((size_t)N * K * F, sizeof(float));
	float *dH = calloc((size_t)N * K * F, sizeof(float));
	float *dX = calloc((size_t)N * K * D, sizeof(float));
	float *dw = calloc((size_t)N * K, sizeof(float));
	float *dz = calloc((size_t)N * E, sizeof(float));

	/* y_t += w_a o_r: do_r = w_a dy_t, dw_a = dy_t . o_r */
	for (int r = 0; r < N * K; r++) {
		int a = s->order[r];
		const float *d = dy + (size_t)(a / K) * D;
		for (int j = 0; j < D; j++) {
			dO[(size_t)r * D + j] = s->w[a] * d[j];
			dw[a] += d[j] * s->o[(size_t)r * D + j];
		}
	}
	for (int e = 0; e < E; e++) {
		int r0 = s->start[e], n = s->start[e + 1] - r0;
		if (n == 0)
			continue;
		vlm_linear_bwd_cpu(dG + (size_t)r0 * F, gw2 + (size_t)e * D * F,
		    gb2 + (size_t)e * D, dO + (size_t)r0 * D, s->g +
		    (size_t)r0 * F, w2 + (size_t)e * D * F, n, F, D);
		if (c->quick)
			vlm_quickgelu_bwd_cpu(dH + (size_t)r0 * F, dG +
			    (size_t)r0 * F, s->h + (size_t)r0 * F,
			    (int64_t)n * F);
		else
			vlm_gelu_bwd_cpu(dH + (size_t)r0 * F, dG + (size_t)r0 *
			    F, s->h + (size_t)r0 * F, (int64_t)n * F);
		vlm_linear_bwd_cpu(dX + (size_t)r0 * D, gw1 + (size_t)e * F * D,
		    gb1 + (size_t)e * F, dH + (size_t)r0 * F, s->x + (size_t)r0 *
		    D, w1 + (size_t)e * F * D, n, D, F);
	}
	for (int r = 0; r < N * K; r++) {
		float *dxt = dx + (size_t)(s->order[r] / K) * D;
		for (int j = 0; j < D; j++)
			dxt[j] += dX[(size_t)r * D + j];
	}
	/* gates: softmax over the K chosen logits */
	for (int t = 0; t < N; t++) {
		const float *wt = s->w + t * K, *dwt = dw + t * K;
		float dot = 0;
		for (int k = 0; k < K; k++)
			dot += wt[k] * dwt[k];
		for (int k = 0; k < K; k++)
			dz[(size_t)t * E + s->idx[t * K + k]] = wt[k] *
			    (dwt[k] - dot);
	}
	if (s->p && s->aux_w != 0)
		vlm_backend_get("cpu")->aux_importance_bwd(dz, s->p, s->aux_w,
		    N, E);
	vlm_gemm_cpu(1, 0, E, D, N, 1, dz, E, x, D, 1, gwr, D);
	vlm_gemm_cpu(0, 0, N, D, E, 1, dz, E, wr, D, 1, dx, D);
	free(dO), free(dG), free(dH), free(dX), free(dw), free(dz);
}

/* Linear layer FLOPs: 2 n in out. */
static double
lin(double n, double in, double out)
{
	return 2 * n * in * out;
}

/* One block at prefix pre over n query rows (cross: M key rows). */
static double
block_flops(const struct vlm_coca *c, const char *pre, int n, int M, int D,
    int cross)
{
	char nm[160];
	const struct vlm_tensor *t;
	double f = lin(n, D, D) * 2 + lin(cross ? M : n, D, 2 * D) +
	    4.0 * n * (cross ? M : n) * D; /* q, out; k, v; scores, mix */

	if (vlm_coca_moe_at(c, pre)) {
		snprintf(nm, sizeof(nm), "%s.mlp.experts.c_fc.weight", pre);
		t = vlm_st_get(&c->st, nm);
		return f + lin(n, D, c->Ed) + c->Kd * 2 * lin(n, D,
		    (double)t->shape[1]);
	}
	snprintf(nm, sizeof(nm), "%s.mlp.c_fc.weight", pre);
	t = vlm_st_get(&c->st, nm);
	return f + 2 * lin(n, D, (double)t->shape[0]);
}

double
vlm_coca_flops(const struct vlm_coca *c, int part)
{
	int P = (c->S / c->p) * (c->S / c->p), n = c->T - 1, M = c->Q - 1;
	double f = 0;
	char pre[96];

	if (part == 0) { /* image: patches, blocks, pooler, projection */
		f = lin(P, 3.0 * c->p * c->p, c->Dv);
		for (int l = 0; l < c->Lv; l++) {
			snprintf(pre, sizeof(pre), "visual.transformer."
			    "resblocks.%d", l);
			f += block_flops(c, pre, P + 1, 0, c->Dv, 0);
		}
		return f + lin(c->Q, c->E, c->E) + lin(P + 1, c->Dv, 2 *
		    c->E) + 4.0 * c->Q * (P + 1) * c->E + lin(c->Q, c->E,
		    c->E) + lin(1, c->E, c->E);
	}
	if (part == 1) { /* text: T tokens and the class token */
		for (int l = 0; l < c->Lt; l++) {
			snprintf(pre, sizeof(pre), "text.transformer."
			    "resblocks.%d", l);
			f += block_flops(c, pre, c->T + 1, 0, c->Dt, 0);
		}
		return f + lin(1, c->Dt, c->E);
	}
	/* decoder over T - 1 tokens, the logits included */
	for (int l = 0; l < c->Ld; l++) {
		snprintf(pre, sizeof(pre), "text_decoder.resblocks.%d", l);
		f += block_flops(c, pre, n, 0, c->Dd, 0);
		snprintf(pre, sizeof(pre), "text_decoder.cross_attn.%d", l);
		f += block_flops(c, pre, n, M, c->Dd, 1);
	}
	return f + lin(n, c->Dd, c->V);
}
