/*
 * aux-loss.c - the router's auxiliary losses of ALGORITHMS.md section 3,
 * per routing group of S tokens: importance and load CV^2 (V-MoE),
 * switch balance, z-loss, and LIMoE's per-modality local and global
 * entropies. Each _fwd returns the loss; each _bwd ACCUMULATES
 * dloss * dL/dz into the logit gradient dz (S,E), going through the
 * softmax itself, so the caller only sums dz and runs vlm_router_bwd.
 * Sums run in double; all are O(S E), so the plain version is the CPU one.
 */
#include <assert.h>
#include <math.h>

#include "kernels.h"
#include "shared.h"

#define ENT_EPS 1e-8 /* H(pbar) uses log(pbar + 1e-8) */

/* logsumexp of a row; with p != NULL also its softmax. */
static double
lse_row(const float *z, int E, double *p)
{
	double max = -INFINITY, sum = 0;

	for (int e = 0; e < E; e++)
		if (z[e] > max)
			max = z[e];
	for (int e = 0; e < E; e++)
		sum += exp(z[e] - max);
	for (int e = 0; p && e < E; e++)
		p[e] = exp(z[e] - max) / sum;
	return max + log(sum);
}

/* Importance CV^2 of Imp_e = sum_s p[s,e]. */
float
vlm_aux_importance_fwd_ref(const float *p, int S, int E)
{
	double imp[VLM_MAX_EXPERTS] = { 0 };

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++)
		for (int e = 0; e < E; e++)
			imp[e] += p[(size_t)s * E + e];
	return (float)vlm_cv2(imp, E, NULL);
}

void
vlm_aux_importance_bwd_ref(float *dz, const float *p, float dloss, int S,
    int E)
{
	double imp[VLM_MAX_EXPERTS] = { 0 }, c[VLM_MAX_EXPERTS];

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++)
		for (int e = 0; e < E; e++)
			imp[e] += p[(size_t)s * E + e];
	vlm_cv2(imp, E, c);
	for (int e = 0; e < E; e++)
		c[e] *= dloss;
	for (int s = 0; s < S; s++)
		vlm_softmax_bwd_row(dz + (size_t)s * E, p + (size_t)s * E, c,
		    E);
}

/* P[s,e] = 1 - Phi((eta_s - z[s,e]) / sigma) for one row. */
static void
load_row(double *P, double *dens, int *kth, const float *z, const float *eps,
    float sigma, int E, int K)
{
	int k = vlm_kth_index(z, eps, E, K);
	double eta = (double)z[k] + eps[k];

	for (int e = 0; e < E; e++) {
		double u = (z[e] - eta) / sigma;
		P[e] = 0.5 * erfc(-u / M_SQRT2);
		if (dens) /* dP/dz[s,e] */
			dens[e] = exp(-0.5 * u * u) / (sqrt(2 * M_PI) * sigma);
	}
	*kth = k;
}

/* Load CV^2 of Load_e = mean_s P[s,e]; needs the noise (sigma > 0). */
float
vlm_aux_load_fwd_ref(const float *z, const float *eps, float sigma, int S,
    int E, int K)
{
	double load[VLM_MAX_EXPERTS] = { 0 }, P[VLM_MAX_EXPERTS];
	int k;

	assert(E <= VLM_MAX_EXPERTS && K >= 1 && K <= E && sigma > 0);
	for (int s = 0; s < S; s++) {
		load_row(P, NULL, &k, z + (size_t)s * E, eps + (size_t)s * E,
		    sigma, E, K);
		for (int e = 0; e < E; e++)
			load[e] += P[e] / S;
	}
	return (float)vlm_cv2(load, E, NULL);
}

/*
 * The threshold eta = z[s,k] + eps[s,k] moves with z[s,k] (the index k
 * is a constant): as V-MoE's code differentiates it.
 */
void
vlm_aux_load_bwd_ref(float *dz, const float *z, const float *eps,
    float sigma, float dloss, int S, int E, int K)
{
	double load[VLM_MAX_EXPERTS] = { 0 }, P[VLM_MAX_EXPERTS];
	double c[VLM_MAX_EXPERTS], dens[VLM_MAX_EXPERTS];
	int k;

	assert(E <= VLM_MAX_EXPERTS && K >= 1 && K <= E && sigma > 0);
	for (int s = 0; s < S; s++) {
		load_row(P, NULL, &k, z + (size_t)s * E, eps + (size_t)s * E,
		    sigma, E, K);
		for (int e = 0; e < E; e++)
			load[e] += P[e] / S;
	}
	vlm_cv2(load, E, c);
	for (int s = 0; s < S; s++) {
		float *dzs = dz + (size_t)s * E;
		double tot = 0;
		load_row(P, dens, &k, z + (size_t)s * E, eps + (size_t)s * E,
		    sigma, E, K);
		for (int e = 0; e < E; e++) {
			double d = dloss * c[e] / S * dens[e];
			dzs[e] += (float)d;
			tot += d;
		}
		dzs[k] -= (float)tot;
	}
}

/* Switch balance E sum_e f_e P_e; f_e from the top-1 idx[s,0]. */
float
vlm_aux_switch_fwd_ref(const float *g, const int32_t *idx, int S, int E,
    int K)
{
	double f[VLM_MAX_EXPERTS] = { 0 }, P[VLM_MAX_EXPERTS] = { 0 }, l = 0;

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++) {
		f[idx[(size_t)s * K]] += 1.0 / S;
		for (int e = 0; e < E; e++)
			P[e] += g[(size_t)s * E + e] / S;
	}
	for (int e = 0; e < E; e++)
		l += f[e] * P[e];
	return (float)(E * l);
}

void
vlm_aux_switch_bwd_ref(float *dz, const float *g, const int32_t *idx,
    float dloss, int S, int E, int K)
{
	double f[VLM_MAX_EXPERTS] = { 0 };

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++)
		f[idx[(size_t)s * K]] += 1.0 / S;
	for (int e = 0; e < E; e++) /* dL/dg[s,e] */
		f[e] *= (double)dloss * E / S;
	for (int s = 0; s < S; s++)
		vlm_softmax_bwd_row(dz + (size_t)s * E, g + (size_t)s * E, f,
		    E);
}

/* z-loss: mean_s (logsumexp_e z[s,e])^2. */
float
vlm_aux_zloss_fwd_ref(const float *z, int S, int E)
{
	double l = 0;

	for (int s = 0; s < S; s++) {
		double lse = lse_row(z + (size_t)s * E, E, NULL);
		l += lse * lse;
	}
	return S > 0 ? (float)(l / S) : 0;
}

void
vlm_aux_zloss_bwd_ref(float *dz, const float *z, float dloss, int S, int E)
{
	double p[VLM_MAX_EXPERTS];

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++) {
		double lse = lse_row(z + (size_t)s * E, E, p);
		for (int e = 0; e < E; e++)
			dz[(size_t)s * E + e] +=
			    (float)(dloss * 2 * lse * p[e] / S);
	}
}

/* Tokens of modality m (every token when mod is NULL). */
static int
count_mod(const uint8_t *mod, int m, int S)
{
	int n = 0;

	for (int s = 0; s < S; s++)
		n += !mod || mod[s] == m;
	return n;
}

/* H(p) of one row from log_softmax(z); p filled. */
static double
entropy_row(const float *z, int E, double *p)
{
	double lse = lse_row(z, E, p), h = 0;

	for (int e = 0; e < E; e++)
		h -= p[e] * (z[e] - lse);
	return h;
}

/* Local entropy: mean of H(p_s) over the n_m tokens of modality m. */
float
vlm_aux_entropy_local_fwd_ref(const float *z, const uint8_t *mod, int m,
    int S, int E)
{
	double p[VLM_MAX_EXPERTS], h = 0;
	int n = count_mod(mod, m, S);

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++)
		if (!mod || mod[s] == m)
			h += entropy_row(z + (size_t)s * E, E, p);
	return n > 0 ? (float)(h / n) : 0;
}

/* dH/dz_e = -p_e (log p_e + H). */
void
vlm_aux_entropy_local_bwd_ref(float *dz, const float *z, const uint8_t *mod,
    int m, float dloss, int S, int E)
{
	double p[VLM_MAX_EXPERTS];
	int n = count_mod(mod, m, S);

	assert(E <= VLM_MAX_EXPERTS);
	for (int s = 0; s < S; s++) {
		const float *zs = z + (size_t)s * E;
		double h, lse;
		if (mod && mod[s] != m)
			continue;
		h = entropy_row(zs, E, p);
		lse = lse_row(zs, E, NULL);
		for (int e = 0; e < E; e++)
			dz[(size_t)s * E + e] -=
			    (float)(dloss * p[e] * (zs[e] - lse + h) / n);
	}
}

/* pbar over modality m and H(pbar) = -sum pbar log(pbar + 1e-8). */
static double
mean_entropy(double *pbar, const float *z, const uint8_t *mod, int m, int S,
    int E, int n)
{
	double p[VLM_MAX_EXPERTS], h = 0;

	for (int e = 0; e < E; e++)
		pbar[e] = 0;
	for (int s = 0; s < S; s++) {
		if (mod && mod[s] != m)
			continue;
		lse_row(z + (size_t)s * E, E, p);
		for (int e = 0; e < E; e++)
			pbar[e] += p[e] / n;
	}
	for (int e = 0; e < E; e++)
		h -= pbar[e] * log(pbar[e] + ENT_EPS);
	return h;
}

/* Global entropy: max(0, tau - H(pbar_m)). */
float
vlm_aux_entropy_global_fwd_ref(const float *z, const uint8_t *mod, int m,
    float tau, int S, int E)
{
	double pbar[VLM_MAX_EXPERTS], l;
	int n = count_mod(mod, m, S);

	assert(E <= VLM_MAX_EXPERTS);
	if (n == 0)
		return 0;
	l = tau - mean_entropy(pbar, z, mod, m, S, E, n);
	return l > 0 ? (float)l : 0;
}

void
vlm_aux_entropy_global_bwd_ref(float *dz, const float *z, const uint8_t *mod,
    int m, float tau, float dloss, int S, int E)
{
	double pbar[VLM_MAX_EXPERTS], c[VLM_MAX_EXPERTS], p[VLM_MAX_EXPERTS];
	float pf[VLM_MAX_EXPERTS];
	int n = count_mod(mod, m, S);

	assert(E <= VLM_MAX_EXPERTS);
	if (n == 0 || tau - mean_entropy(pbar, z, mod, m, S, E, n) <= 0)
		return;
	for (int e = 0; e < E; e++) /* dL/dp[s,e] = -dH/dpbar_e / n */
		c[e] = dloss * (log(pbar[e] + ENT_EPS) +
		    pbar[e] / (pbar[e] + ENT_EPS)) / n;
	for (int s = 0; s < S; s++) {
		if (mod && mod[s] != m)
			continue;
		lse_row(z + (size_t)s * E, E, p);
		for (int e = 0; e < E; e++)
			pf[e] = (float)p[e];
		vlm_softmax_bwd_row(dz + (size_t)s * E, pf, c, E);
	}
}

/* tau_m = log(S_m) with S_m clamped to E (S_image 20, S_text 9). */
float
vlm_aux_entropy_tau(float sm, int E)
{
	return logf(sm < E ? sm : (float)E);
}
