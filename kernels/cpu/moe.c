/*
 * moe.c - token routing for a sparse MoE block (ALGORITHMS.md section 2):
 * top-K of the gates, capacity, Batch Priority Routing, slots and combine
 * weights; then dispatch by index into a per-expert buffer (E,C,D) and
 * the weighted combine back, each with its backward. The dense one-hot
 * S x E x C tensors are never built: an assignment (s,j) is the pair
 * idx[s,j] (expert) and slot[s,j] (row in that expert's buffer, -1 when
 * dropped by capacity).
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels.h"
#include "shared.h"

/* C = max(cmin, round(K cf S / E)); cf <= 0: C = S, nothing dropped. */
int
vlm_moe_capacity(int S, int E, int K, float cf, int cmin)
{
	double c;

	assert(S >= 0 && E > 0 && K > 0);
	if (cf <= 0)
		return S;
	c = nearbyint((double)K * cf * S / E); /* ties to even, as Python */
	return c > cmin ? (int)c : cmin;
}

/* Top-K of one row in one pass: insertion into a sorted list of K. */
static void
topk_row_cpu(int32_t *idx, float *val, const float *g, int E, int K)
{
	int n = 0;

	for (int e = 0; e < E; e++) {
		int i;
		if (n == K && !(g[e] > val[K - 1]))
			continue;
		i = n < K ? n++ : K - 1;
		for (; i > 0 && val[i - 1] < g[e]; i--) {
			idx[i] = idx[i - 1];
			val[i] = val[i - 1];
		}
		idx[i] = e;
		val[i] = g[e];
	}
}

/*
 * Places assignments in order: every first choice (j = 0) of the tokens
 * in `order`, then every second choice, ...; an expert keeps an
 * assignment while it has a free slot.
 */
static void
place(uint8_t *keep, int32_t *slot, int32_t *fill, const int32_t *idx,
    const int32_t *order, int S, int E, int K, int C)
{
	memset(fill, 0, (size_t)E * sizeof(*fill));
	for (int j = 0; j < K; j++)
		for (int i = 0; i < S; i++) {
			size_t sj = (size_t)order[i] * K + j;
			int e = idx[sj];
			assert(e >= 0 && e < E);
			keep[sj] = fill[e] < C;
			slot[sj] = keep[sj] ? fill[e]++ : -1;
		}
}

/* w = keep * val, or with gate_norm topk keep * val / sum_j val. */
static void
combine_weights(float *w, const float *val, const uint8_t *keep, int S,
    int K, int gate_norm)
{
	for (int s = 0; s < S; s++) {
		const float *v = val + (size_t)s * K;
		float sum = 0;
		for (int j = 0; j < K; j++)
			sum += v[j];
		for (int j = 0; j < K; j++) {
			float x = gate_norm ? v[j] / sum : v[j];
			w[(size_t)s * K + j] = keep[(size_t)s * K + j] ? x : 0;
		}
	}
}

/* Routing by plain loops: K-pass top-K, insertion sort for BPR. */
void
vlm_moe_route_fwd_ref(int32_t *idx, float *val, uint8_t *keep,
    int32_t *slot, float *w, int32_t *fill, int32_t *order, const float *g,
    int S, int E, int K, int C, int bpr, int gate_norm)
{
	assert(K >= 1 && K <= E);
	for (int s = 0; s < S; s++)
		vlm_topk_row(idx + (size_t)s * K, val + (size_t)s * K,
		    g + (size_t)s * E, E, K);
	for (int i = 0; i < S; i++) {
		int t = i, k = i;
		/* stable: move t past only strictly smaller top-1 gates */
		for (; bpr && k > 0 &&
		    val[(size_t)order[k - 1] * K] < val[(size_t)t * K]; k--)
			order[k] = order[k - 1];
		order[k] = t;
	}
	place(keep, slot, fill, idx, order, S, E, K, C);
	combine_weights(w, val, keep, S, K, gate_norm);
}

struct bpr_key {
	const float *val;
	int K;
};

/* Descending top-1 gate, then ascending token: a stable order. */
static int
bpr_cmp(const void *a, const void *b, void *arg)
{
	const struct bpr_key *key = arg;
	int32_t s = *(const int32_t *)a, t = *(const int32_t *)b;
	float u = key->val[(size_t)s * key->K];
	float v = key->val[(size_t)t * key->K];

	if (u != v)
		return u > v ? -1 : 1;
	return (s > t) - (s < t);
}

/* Routing with one-pass top-K and an O(S log S) sort for BPR. */
void
vlm_moe_route_fwd_cpu(int32_t *idx, float *val, uint8_t *keep,
    int32_t *slot, float *w, int32_t *fill, int32_t *order, const float *g,
    int S, int E, int K, int C, int bpr, int gate_norm)
{
	struct bpr_key key = { val, K };

	assert(K >= 1 && K <= E);
	for (int s = 0; s < S; s++)
		topk_row_cpu(idx + (size_t)s * K, val + (size_t)s * K,
		    g + (size_t)s * E, E, K);
	for (int i = 0; i < S; i++)
		order[i] = i;
	if (bpr)
		qsort_r(order, S, sizeof(*order), bpr_cmp, &key);
	place(keep, slot, fill, idx, order, S, E, K, C);
	combine_weights(w, val, keep, S, K, gate_norm);
}

/*
 * Gate path of the backward: dw (S,K) to the selected gates (through
 * the topk normalisation if on; dropped choices still count in its
 * sum), then through g = softmax(z + eps) into dz.
 */
void
vlm_moe_route_bwd_ref(float *dz, const float *dw, const float *g,
    const int32_t *idx, const uint8_t *keep, int S, int E, int K,
    int gate_norm)
{
	for (int s = 0; s < S; s++)
		vlm_route_bwd_row(dz, dw, g, idx, keep, s, E, K, gate_norm);
}

/* buf[idx[s,j], slot[s,j]] = x[s] for every kept assignment. */
void
vlm_moe_dispatch_fwd_ref(float *buf, const float *x, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C)
{
	for (int s = 0; s < S; s++)
		for (int j = 0; j < K; j++) {
			int e = idx[s * K + j], r = slot[s * K + j];
			if (r < 0)
				continue;
			assert(e >= 0 && e < E && r < C);
			for (int d = 0; d < D; d++)
				buf[((size_t)e * C + r) * D + d] =
				    x[(size_t)s * D + d];
		}
}

/* dx[s] += dbuf[idx[s,j], slot[s,j]] for every kept assignment. */
void
vlm_moe_dispatch_bwd_ref(float *dx, const float *dbuf, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C)
{
	for (int s = 0; s < S; s++)
		for (int j = 0; j < K; j++) {
			int e = idx[s * K + j], r = slot[s * K + j];
			if (r < 0)
				continue;
			assert(e >= 0 && e < E && r < C);
			for (int d = 0; d < D; d++)
				dx[(size_t)s * D + d] +=
				    dbuf[((size_t)e * C + r) * D + d];
		}
}

/* y[s] = sum_j w[s,j] out[idx[s,j], slot[s,j]] (dropped: nothing). */
void
vlm_moe_combine_fwd_ref(float *y, const float *out, const int32_t *idx,
    const int32_t *slot, const float *w, int S, int D, int E, int K, int C)
{
	for (int s = 0; s < S; s++) {
		for (int d = 0; d < D; d++)
			y[(size_t)s * D + d] = 0;
		for (int j = 0; j < K; j++) {
			int e = idx[s * K + j], r = slot[s * K + j];
			if (r < 0)
				continue;
			assert(e >= 0 && e < E && r < C);
			for (int d = 0; d < D; d++)
				y[(size_t)s * D + d] += w[s * K + j] *
				    out[((size_t)e * C + r) * D + d];
		}
	}
}

/* dout[e,r] += w[s,j] dy[s]; dw[s,j] += dy[s] . out[e,r]. */
void
vlm_moe_combine_bwd_ref(float *dout, float *dw, const float *dy,
    const float *out, const int32_t *idx, const int32_t *slot,
    const float *w, int S, int D, int E, int K, int C)
{
	for (int s = 0; s < S; s++)
		for (int j = 0; j < K; j++) {
			int e = idx[s * K + j], r = slot[s * K + j];
			size_t o;
			float acc = 0;
			if (r < 0)
				continue;
			assert(e >= 0 && e < E && r < C);
			o = ((size_t)e * C + r) * D;
			for (int d = 0; d < D; d++) {
				if (dout)
					dout[o + d] += w[s * K + j] *
					    dy[(size_t)s * D + d];
				acc += dy[(size_t)s * D + d] * out[o + d];
			}
			if (dw)
				dw[s * K + j] += acc;
		}
}

/*
 * The fast versions work on ranges of tokens: every output row belongs
 * to one token (buf/dout rows to one assignment), so ranges run in
 * parallel without locks and give the same bits as one thread.
 */
struct moe_job {
	float *out;           /* buf, dx, y or dout */
	float *dw;            /* (S,K) or NULL */
	const float *in;      /* x, dbuf, out or dy */
	const float *other;   /* out (combine backward) */
	const float *w;
	const int32_t *idx, *slot;
	int D, E, K, C;
};

#define DROPPED ((size_t)-1)

/* Offset of assignment (s,j)'s row in the expert buffer, or DROPPED. */
static size_t
row_of(const struct moe_job *m, int s, int j)
{
	int e = m->idx[s * m->K + j], r = m->slot[s * m->K + j];

	if (r < 0)
		return DROPPED;
	assert(e >= 0 && e < m->E && r < m->C);
	return ((size_t)e * m->C + r) * m->D;
}

/* The fields read into locals: stores through float * cannot alias them. */
#define MOE_LOCALS(m) \
	const int D = (m)->D, K = (m)->K; \
	const float *in = (m)->in; \
	float *out = (m)->out

static void
dispatch_fwd_range(void *arg, int64_t lo, int64_t hi)
{
	const struct moe_job *m = arg;
	MOE_LOCALS(m);

	for (int s = (int)lo; s < hi; s++)
		for (int j = 0; j < K; j++) {
			size_t o = row_of(m, s, j);
			if (o != DROPPED)
				memcpy(out + o, in + (size_t)s * D,
				    (size_t)D * sizeof(float));
		}
}

static void
dispatch_bwd_range(void *arg, int64_t lo, int64_t hi)
{
	const struct moe_job *m = arg;
	MOE_LOCALS(m);

	for (int s = (int)lo; s < hi; s++) {
		float *dx = out + (size_t)s * D;
		for (int j = 0; j < K; j++) {
			size_t o = row_of(m, s, j);
			if (o == DROPPED)
				continue;
			for (int d = 0; d < D; d++)
				dx[d] += in[o + d];
		}
	}
}

static void
combine_fwd_range(void *arg, int64_t lo, int64_t hi)
{
	const struct moe_job *m = arg;
	MOE_LOCALS(m);
	const float *w = m->w;

	for (int s = (int)lo; s < hi; s++) {
		float *y = out + (size_t)s * D;
		memset(y, 0, (size_t)D * sizeof(float));
		for (int j = 0; j < K; j++) {
			size_t o = row_of(m, s, j);
			float ws = w[s * K + j];
			if (o == DROPPED)
				continue;
			for (int d = 0; d < D; d++)
				y[d] += ws * in[o + d];
		}
	}
}

static void
combine_bwd_range(void *arg, int64_t lo, int64_t hi)
{
	const struct moe_job *m = arg;
	MOE_LOCALS(m);
	const float *eout = m->other, *w = m->w;
	float *dw = m->dw;

	for (int s = (int)lo; s < hi; s++) {
		const float *dy = in + (size_t)s * D;
		for (int j = 0; j < K; j++) {
			size_t o = row_of(m, s, j);
			float ws = w[s * K + j], acc = 0;
			if (o == DROPPED)
				continue;
			for (int d = 0; d < D; d++)
				acc += dy[d] * eout[o + d];
			for (int d = 0; out && d < D; d++)
				out[o + d] += ws * dy[d];
			if (dw)
				dw[s * K + j] += acc;
		}
	}
}

/* Token ranges across the worker threads (small groups stay inline). */
static void
for_tokens(void (*fn)(void *, int64_t, int64_t), struct moe_job *m, int S)
{
	vlm_parallel_for_cost(S, (int64_t)S * m->K * m->D, fn, m);
}

void
vlm_moe_dispatch_fwd_cpu(float *buf, const float *x, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C)
{
	struct moe_job m = { buf, NULL, x, NULL, NULL, idx, slot, D, E, K, C };

	for_tokens(dispatch_fwd_range, &m, S);
}

void
vlm_moe_dispatch_bwd_cpu(float *dx, const float *dbuf, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C)
{
	struct moe_job m = { dx, NULL, dbuf, NULL, NULL, idx, slot, D, E, K,
	    C };

	for_tokens(dispatch_bwd_range, &m, S);
}

void
vlm_moe_combine_fwd_cpu(float *y, const float *out, const int32_t *idx,
    const int32_t *slot, const float *w, int S, int D, int E, int K, int C)
{
	struct moe_job m = { y, NULL, out, NULL, w, idx, slot, D, E, K, C };

	for_tokens(combine_fwd_range, &m, S);
}

void
vlm_moe_combine_bwd_cpu(float *dout, float *dw, const float *dy,
    const float *out, const int32_t *idx, const int32_t *slot,
    const float *w, int S, int D, int E, int K, int C)
{
	struct moe_job m = { dout, dw, dy, out, w, idx, slot, D, E, K, C };

	for_tokens(combine_bwd_range, &m, S);
}
