/*
 * test-kernels-moe.c - the sparse-MoE kernels: router, routing (top-K,
 * capacity, BPR, combine weights), dispatch/combine and the auxiliary
 * losses. Fast versions against the plain ones on odd sizes; routing
 * against hand-worked cases and its defining invariants; every backward
 * against central differences of an independent double-precision forward
 * (routing decisions held fixed, as the kernels define the gradient).
 */
#include "fdcheck.h"
#include "kernels.h"

#define MAXE 64 /* experts in these tests */

/* ---- double-precision oracles ------------------------------------- */

/* out = softmax(z + eps) (eps may be NULL). */
static void
softmax_d(double *out, const double *z, const float *eps, int E)
{
	double max = -INFINITY, sum = 0;

	for (int e = 0; e < E; e++) {
		out[e] = z[e] + (eps ? eps[e] : 0);
		max = out[e] > max ? out[e] : max;
	}
	for (int e = 0; e < E; e++)
		sum += (out[e] = exp(out[e] - max));
	for (int e = 0; e < E; e++)
		out[e] /= sum;
}

static double
cv2_d(const double *v, int E)
{
	double m = 0, var = 0;

	for (int e = 0; e < E; e++)
		m += v[e] / E;
	for (int e = 0; e < E; e++)
		var += (v[e] - m) * (v[e] - m) / E;
	return var / (m * m);
}

/* ---- the data of one routing group --------------------------------- */

struct group {
	int S, D, E, K, C, bpr, norm;
	float *x, *wr, *eps, *z, *p, *g;       /* (S,D) (E,D) (S,E)... */
	int32_t *idx, *slot, *fill, *order;
	float *val, *w;
	uint8_t *keep;
};

static void
group_init(struct group *q, int S, int D, int E, int K, float cf, int bpr,
    int norm, uint64_t seed)
{
	struct vlm_rng r;

	vlm_rng_seed(&r, seed);
	*q = (struct group){ .S = S, .D = D, .E = E, .K = K, .bpr = bpr,
	    .norm = norm };
	q->C = vlm_moe_capacity(S, E, K, cf, 4);
	q->x = calloc((size_t)S * D, sizeof(float));
	q->wr = calloc((size_t)E * D, sizeof(float));
	q->eps = calloc((size_t)S * E, sizeof(float));
	q->z = calloc((size_t)S * E, sizeof(float));
	q->p = calloc((size_t)S * E, sizeof(float));
	q->g = calloc((size_t)S * E, sizeof(float));
	q->idx = calloc((size_t)S * K, sizeof(int32_t));
	q->slot = calloc((size_t)S * K, sizeof(int32_t));
	q->val = calloc((size_t)S * K, sizeof(float));
	q->w = calloc((size_t)S * K, sizeof(float));
	q->keep = calloc((size_t)S * K, 1);
	q->fill = calloc(E, sizeof(int32_t));
	q->order = calloc(S, sizeof(int32_t));
	assert_true(q->x && q->wr && q->eps && q->z && q->p && q->g &&
	    q->idx && q->slot && q->val && q->w && q->keep && q->fill &&
	    q->order);
	fill_randn(q->x, (size_t)S * D, 1.0, &r);
	fill_randn(q->wr, (size_t)E * D, 0.7, &r);
	fill_randn(q->eps, (size_t)S * E, 1.0 / E, &r);
	vlm_router_fwd_cpu(q->z, q->p, q->g, q->x, q->wr, q->eps, S, D, E);
	vlm_moe_route_fwd_cpu(q->idx, q->val, q->keep, q->slot, q->w,
	    q->fill, q->order, q->g, S, E, K, q->C, bpr, norm);
}

static void
group_free(struct group *q)
{
	free(q->x); free(q->wr); free(q->eps); free(q->z); free(q->p);
	free(q->g); free(q->idx); free(q->slot); free(q->val); free(q->w);
	free(q->keep); free(q->fill); free(q->order);
}

static int
dropped(const struct group *q)
{
	int n = 0;

	for (int i = 0; i < q->S * q->K; i++)
		n += !q->keep[i];
	return n;
}

/* ---- capacity and hand-worked routing ------------------------------ */

static void
test_capacity(void **state)
{
	(void)state;
	assert_int_equal(vlm_moe_capacity(37, 8, 2, 1.0f, 4), 9); /* 9.25 */
	assert_int_equal(vlm_moe_capacity(37, 8, 2, 0.0f, 4), 37);
	assert_int_equal(vlm_moe_capacity(10, 8, 1, 1.0f, 4), 4); /* C_min */
	assert_int_equal(vlm_moe_capacity(20, 8, 1, 1.0f, 1), 2); /* 2.5 */
	assert_int_equal(vlm_moe_capacity(28, 8, 1, 1.0f, 1), 4); /* 3.5 */
	assert_int_equal(vlm_moe_capacity(100, 4, 1, 1.25f, 4), 31);
}

/* Route g with both versions; assert they agree and return via q. */
static void
route_both(struct group *q, const float *g)
{
	int S = q->S, K = q->K;
	int32_t idx[64], slot[64], fill[MAXE], order[64];
	float val[64], w[64];
	uint8_t keep[64];

	assert_true(S * K <= 64 && q->E <= MAXE);
	vlm_moe_route_fwd_ref(q->idx, q->val, q->keep, q->slot, q->w,
	    q->fill, q->order, g, S, q->E, K, q->C, q->bpr, q->norm);
	vlm_moe_route_fwd_cpu(idx, val, keep, slot, w, fill, order, g, S,
	    q->E, K, q->C, q->bpr, q->norm);
	assert_memory_equal(idx, q->idx, S * K * sizeof(int32_t));
	assert_memory_equal(slot, q->slot, S * K * sizeof(int32_t));
	assert_memory_equal(keep, q->keep, S * K);
	assert_memory_equal(w, q->w, S * K * sizeof(float));
	assert_memory_equal(fill, q->fill, q->E * sizeof(int32_t));
}

static void
test_route_hand_k1(void **state)
{
	/* top-1 gates 0.6 (e0), 0.7 (e1), 0.9 (e0), 0.8 (e0); C = 2 */
	static const float g[] = { .6f, .4f, .3f, .7f, .9f, .1f, .8f, .2f };
	static const int32_t want_slot[2][4] = {
		{ 0, 0, 1, -1 }, /* token order: token 3 finds e0 full */
		{ -1, 0, 0, 1 }, /* BPR: 2 (.9), 3 (.8), 1, then 0 is dropped */
	};
	struct group q = { .S = 4, .E = 2, .K = 1, .C = 2 };
	int32_t idx[4], slot[4], fill[2], order[4];
	float val[4], w[4];
	uint8_t keep[4];

	(void)state;
	q.idx = idx; q.slot = slot; q.fill = fill; q.order = order;
	q.val = val; q.w = w; q.keep = keep;
	for (q.bpr = 0; q.bpr < 2; q.bpr++) {
		route_both(&q, g);
		assert_int_equal(idx[0], 0); assert_int_equal(idx[1], 1);
		assert_int_equal(idx[2], 0); assert_int_equal(idx[3], 0);
		assert_memory_equal(slot, want_slot[q.bpr], sizeof(slot));
		assert_int_equal(fill[0], 2);
		assert_int_equal(fill[1], 1);
		for (int s = 0; s < 4; s++) {
			assert_int_equal(keep[s], slot[s] >= 0);
			assert_true(w[s] == (keep[s] ? g[2 * s + idx[s]] : 0));
		}
	}
	assert_int_equal(order[0], 2); /* the last run was BPR */
	assert_int_equal(order[3], 0);
}

static void
test_route_hand_k2(void **state)
{
	/* E = 3, C = 2; token 2 ties e0 and e1: e0 ranks first */
	static const float g[] = {
		.5f, .3f, .2f,  .1f, .6f, .3f,  .45f, .45f, .1f,  .2f, .5f, .3f,
	};
	/* first choices e0, e1, e0, e1; second e1, e2, e1, e2 */
	static const int32_t want_idx[] = { 0, 1, 1, 2, 0, 1, 1, 2 };
	static const int32_t want_slot[2][8] = {
		/* token order: j=0: t0 e0.0 t1 e1.0 t2 e0.1 t3 e1.1;
		 * j=1: t0 e1 full, t1 e2.0, t2 e1 full, t3 e2.1 */
		{ 0, -1, 0, 0, 1, -1, 1, 1 },
		/* BPR order 1 (.6), 0 (.5), 3 (.5), 2 (.45): j=0: t1 e1.0,
		 * t0 e0.0, t3 e1.1, t2 e0.1; j=1: t1 e2.0, t0 e1 full,
		 * t3 e2.1, t2 e1 full */
		{ 0, -1, 0, 0, 1, -1, 1, 1 },
	};
	static const int32_t want_order[] = { 1, 0, 3, 2 };
	struct group q = { .S = 4, .E = 3, .K = 2, .C = 2, .norm = 1 };
	int32_t idx[8], slot[8], fill[3], order[4];
	float val[8], w[8];
	uint8_t keep[8];

	(void)state;
	q.idx = idx; q.slot = slot; q.fill = fill; q.order = order;
	q.val = val; q.w = w; q.keep = keep;
	for (q.bpr = 0; q.bpr < 2; q.bpr++) {
		route_both(&q, g);
		assert_memory_equal(idx, want_idx, sizeof(idx));
		assert_memory_equal(slot, want_slot[q.bpr], sizeof(slot));
		assert_int_equal(fill[0], 2); assert_int_equal(fill[1], 2);
		assert_int_equal(fill[2], 2);
		/* gate_norm topk: divided by the sum of both gates */
		assert_float_equal(w[0], .5f / .8f, 1e-6);
		assert_float_equal(w[1], 0, 0);
		assert_float_equal(w[4], .5f, 1e-6); /* .45 / .9 */
		assert_float_equal(w[7], .3f / .8f, 1e-6);
	}
	assert_memory_equal(order, want_order, sizeof(order));
}

/* ---- routing parity and invariants on odd sizes --------------------- */

static const struct {
	int S, E, K;
	float cf;
	int bpr, norm;
} cfgs[] = {
	{ 37, 1, 1, 1.0f, 0, 0 },
	{ 37, 4, 4, 1.0f, 1, 0 }, /* K = E */
	{ 37, 8, 2, 1.0f, 0, 1 }, /* C = 9: 74 choices, 72 slots */
	{ 37, 8, 2, 1.0f, 1, 1 },
	{ 37, 8, 2, 0.5f, 1, 0 },
	{ 37, 8, 2, 0.0f, 0, 0 }, /* no dropping */
	{ 37, 8, 1, 1.0f, 1, 0 },
	{ 53, 5, 3, 0.7f, 0, 1 },
};
#define NCFG (int)(sizeof(cfgs) / sizeof(cfgs[0]))

/* What routing means, checked without the reference. */
static void
check_route_invariants(const struct group *q)
{
	int S = q->S, E = q->E, K = q->K, seen[MAXE][64] = { { 0 } };

	for (int s = 0; s < S; s++) {
		const float *gs = q->g + (size_t)s * E;
		const int32_t *is = q->idx + (size_t)s * K;
		float sum = 0;
		for (int j = 0; j < K; j++) {
			assert_true(q->val[s * K + j] == gs[is[j]]);
			assert_true(j == 0 || gs[is[j]] <= gs[is[j - 1]]);
			sum += gs[is[j]];
			for (int i = 0; i < j; i++)
				assert_int_not_equal(is[i], is[j]);
		}
		for (int e = 0; e < E; e++) { /* nothing better was left out */
			int in = 0;
			for (int j = 0; j < K; j++)
				in |= is[j] == e;
			assert_true(in || gs[e] < gs[is[K - 1]] ||
			    (gs[e] == gs[is[K - 1]] && e > is[K - 1]));
		}
		for (int j = 0; j < K; j++) {
			int k = s * K + j, e = is[j];
			float want = q->norm ? gs[e] / sum : gs[e];
			assert_int_equal(q->keep[k], q->slot[k] >= 0);
			assert_float_equal(q->w[k], q->keep[k] ? want : 0,
			    1e-6);
			if (!q->keep[k]) {
				assert_int_equal(q->fill[e], q->C);
				continue;
			}
			assert_true(q->slot[k] < q->fill[e] && q->slot[k] < 64);
			assert_int_equal(seen[e][q->slot[k]]++, 0);
		}
	}
	for (int e = 0; e < E; e++) /* slots 0..fill-1, each used once */
		for (int r = 0; r < q->fill[e]; r++)
			assert_int_equal(seen[e][r], 1);
}

/* A kept first choice was placed before a dropped one of its expert. */
static void
check_priority(const struct group *q)
{
	for (int s = 0; s < q->S; s++)
		for (int t = 0; t < q->S; t++) {
			int ks = s * q->K, kt = t * q->K;
			if (q->idx[ks] != q->idx[kt] || !q->keep[ks] ||
			    q->keep[kt])
				continue;
			if (q->bpr)
				assert_true(q->val[ks] >= q->val[kt]);
			else
				assert_true(s < t);
		}
}

static void
test_route_parity(void **state)
{
	(void)state;
	for (int c = 0; c < NCFG; c++) {
		struct group q;
		int S = cfgs[c].S, E = cfgs[c].E, K = cfgs[c].K;
		int32_t idx[64 * 4], slot[64 * 4], fill[MAXE], order[64];
		float val[64 * 4], w[64 * 4];
		uint8_t keep[64 * 4];

		group_init(&q, S, 7, E, K, cfgs[c].cf, cfgs[c].bpr,
		    cfgs[c].norm, 100 + c);
		for (int tie = 0; tie < 2; tie++) {
			if (tie) /* coarse gates: many ties */
				for (int i = 0; i < S * E; i++)
					q.g[i] = floorf(q.g[i] * 8) / 8;
			vlm_moe_route_fwd_cpu(q.idx, q.val, q.keep, q.slot,
			    q.w, q.fill, q.order, q.g, S, E, K, q.C, q.bpr,
			    q.norm);
			vlm_moe_route_fwd_ref(idx, val, keep, slot, w, fill,
			    order, q.g, S, E, K, q.C, q.bpr, q.norm);
			assert_memory_equal(idx, q.idx, S * K * 4);
			assert_memory_equal(val, q.val, S * K * 4);
			assert_memory_equal(keep, q.keep, S * K);
			assert_memory_equal(slot, q.slot, S * K * 4);
			assert_memory_equal(w, q.w, S * K * 4);
			assert_memory_equal(fill, q.fill, E * 4);
			assert_memory_equal(order, q.order, S * 4);
			check_route_invariants(&q);
			check_priority(&q);
		}
		if (q.C >= S)
			assert_int_equal(dropped(&q), 0);
		if (cfgs[c].cf > 0 && K * S > E * q.C)
			assert_true(dropped(&q) > 0);
		group_free(&q);
	}
}

/* ---- router parity ------------------------------------------------- */

static void
test_router_parity(void **state)
{
	int S = 37, D = 13, E = 7;
	struct vlm_rng r;
	float *x = malloc(S * D * 4), *wr = malloc(E * D * 4);
	float *eps = malloc(S * E * 4), *dz = malloc(S * E * 4);
	float *o[2][3], *dx[2], *dwr[2];

	(void)state;
	vlm_rng_seed(&r, 7);
	fill_randn(x, S * D, 1, &r);
	fill_randn(wr, E * D, 1, &r);
	fill_randn(eps, S * E, 1.0 / E, &r);
	fill_randn(dz, S * E, 1, &r);
	for (int v = 0; v < 2; v++) {
		for (int i = 0; i < 3; i++)
			o[v][i] = malloc(S * E * 4);
		dx[v] = malloc(S * D * 4);
		dwr[v] = malloc(E * D * 4);
		memcpy(dx[v], x, S * D * 4); /* accumulate onto something */
		memcpy(dwr[v], wr, E * D * 4);
	}
	vlm_router_fwd_ref(o[0][0], o[0][1], o[0][2], x, wr, eps, S, D, E);
	vlm_router_fwd_cpu(o[1][0], o[1][1], o[1][2], x, wr, eps, S, D, E);
	check_closef("router z cpu/ref", o[1][0], o[0][0], S * E, 1e-5);
	check_closef("router p cpu/ref", o[1][1], o[0][1], S * E, 1e-5);
	check_closef("router g cpu/ref", o[1][2], o[0][2], S * E, 1e-5);
	vlm_router_bwd_ref(dx[0], dwr[0], dz, x, wr, S, D, E);
	vlm_router_bwd_cpu(dx[1], dwr[1], dz, x, wr, S, D, E);
	check_closef("router dx cpu/ref", dx[1], dx[0], S * D, 1e-5);
	check_closef("router dwr cpu/ref", dwr[1], dwr[0], E * D, 1e-5);
	vlm_router_fwd_cpu(o[1][0], o[1][1], o[1][2], x, wr, NULL, S, D, E);
	assert_memory_equal(o[1][1], o[1][2], S * E * 4); /* eval: g = p */
	for (int v = 0; v < 2; v++) {
		for (int i = 0; i < 3; i++)
			free(o[v][i]);
		free(dx[v]);
		free(dwr[v]);
	}
	free(x); free(wr); free(eps); free(dz);
}

/* ---- dispatch and combine ------------------------------------------ */

/* Expert e of the tests: y = A_e x, A (E,D,D). */
static void
experts_fwd(float *out, const float *buf, const float *A, const int32_t *fill,
    int E, int C, int D)
{
	for (int e = 0; e < E; e++)
		for (int r = 0; r < fill[e]; r++)
			for (int o = 0; o < D; o++) {
				float acc = 0;
				for (int i = 0; i < D; i++)
					acc += A[((size_t)e * D + o) * D + i] *
					    buf[((size_t)e * C + r) * D + i];
				out[((size_t)e * C + r) * D + o] = acc;
			}
}

static void
experts_bwd(float *dbuf, const float *dout, const float *A,
    const int32_t *fill, int E, int C, int D)
{
	for (int e = 0; e < E; e++)
		for (int r = 0; r < fill[e]; r++)
			for (int i = 0; i < D; i++) {
				float acc = 0;
				for (int o = 0; o < D; o++)
					acc += A[((size_t)e * D + o) * D + i] *
					    dout[((size_t)e * C + r) * D + o];
				dbuf[((size_t)e * C + r) * D + i] = acc;
			}
}

static void
test_dispatch_combine_parity(void **state)
{
	(void)state;
	for (int c = 0; c < NCFG; c++) {
		struct group q;
		int S = cfgs[c].S, E = cfgs[c].E, K = cfgs[c].K, D = 11;
		size_t nb;
		float *buf[2], *y[2], *dx[2], *dout[2], *dw[2], *dy;
		struct vlm_rng r;

		group_init(&q, S, D, E, K, cfgs[c].cf, cfgs[c].bpr,
		    cfgs[c].norm, 200 + c);
		nb = (size_t)E * q.C * D;
		vlm_rng_seed(&r, 300 + c);
		dy = malloc(S * D * 4);
		fill_randn(dy, S * D, 1, &r);
		for (int v = 0; v < 2; v++) {
			buf[v] = calloc(nb, 4);
			dout[v] = calloc(nb, 4);
			y[v] = calloc(S * D, 4);
			dx[v] = calloc(S * D, 4);
			dw[v] = calloc(S * K, 4);
		}
		vlm_moe_dispatch_fwd_ref(buf[0], q.x, q.idx, q.slot, S, D, E,
		    K, q.C);
		vlm_moe_dispatch_fwd_cpu(buf[1], q.x, q.idx, q.slot, S, D, E,
		    K, q.C);
		assert_memory_equal(buf[0], buf[1], nb * 4);
		/* combine the dispatched rows themselves: y = sum kept w x */
		vlm_moe_combine_fwd_ref(y[0], buf[0], q.idx, q.slot, q.w, S,
		    D, E, K, q.C);
		vlm_moe_combine_fwd_cpu(y[1], buf[0], q.idx, q.slot, q.w, S,
		    D, E, K, q.C);
		assert_memory_equal(y[0], y[1], S * D * 4);
		for (int s = 0; s < S; s++) {
			float wsum = 0;
			for (int j = 0; j < K; j++)
				wsum += q.w[s * K + j];
			for (int d = 0; d < D; d++)
				assert_float_equal(y[0][s * D + d],
				    wsum * q.x[s * D + d], 1e-5);
		}
		vlm_moe_combine_bwd_ref(dout[0], dw[0], dy, buf[0], q.idx,
		    q.slot, q.w, S, D, E, K, q.C);
		vlm_moe_combine_bwd_cpu(dout[1], dw[1], dy, buf[0], q.idx,
		    q.slot, q.w, S, D, E, K, q.C);
		check_closef("combine dout cpu/ref", dout[1], dout[0], nb,
		    1e-6);
		check_closef("combine dw cpu/ref", dw[1], dw[0], S * K, 1e-6);
		vlm_moe_dispatch_bwd_ref(dx[0], dout[0], q.idx, q.slot, S, D,
		    E, K, q.C);
		vlm_moe_dispatch_bwd_cpu(dx[1], dout[0], q.idx, q.slot, S, D,
		    E, K, q.C);
		check_closef("dispatch dx cpu/ref", dx[1], dx[0], S * D, 1e-6);
		for (int v = 0; v < 2; v++) {
			free(buf[v]); free(dout[v]); free(y[v]); free(dx[v]);
			free(dw[v]);
		}
		free(dy);
		group_free(&q);
	}
}

/* ---- the whole block against finite differences ------------------- */

struct block {
	int S, D, E, K, norm;
	double *x, *wr;              /* (S,D) (E,D): differentiated */
	const float *A, *eps, *dy;   /* (E,D,D) (S,E) (S,D) */
	const int32_t *idx;
	const uint8_t *keep;         /* routing decisions: constants */
};

/* sum_s dy[s] . y[s] in double, y the MoE block output. */
static double
block_loss(void *arg)
{
	const struct block *b = arg;
	int D = b->D, E = b->E, K = b->K;
	double z[MAXE], g[MAXE], L = 0;

	for (int s = 0; s < b->S; s++) {
		const double *xs = b->x + (size_t)s * D;
		double sum = 0;
		for (int e = 0; e < E; e++) {
			z[e] = 0;
			for (int d = 0; d < D; d++)
				z[e] += xs[d] * b->wr[e * D + d];
		}
		softmax_d(g, z, b->eps + (size_t)s * E, E);
		for (int j = 0; j < K; j++)
			sum += g[b->idx[s * K + j]];
		for (int j = 0; j < K; j++) {
			int e = b->idx[s * K + j];
			double w = g[e] / (b->norm ? sum : 1);
			if (!b->keep[s * K + j])
				continue;
			for (int o = 0; o < D; o++) {
				double y = 0;
				for (int i = 0; i < D; i++)
					y += b->A[(e * D + o) * D + i] * xs[i];
				L += b->dy[s * D + o] * w * y;
			}
		}
	}
	return L;
}

/* Forward and backward of the block through the kernels, in float. */
static void
block_grads(struct group *q, const float *A, const float *dy, float *dx,
    float *dwr, double *loss)
{
	int S = q->S, D = q->D, E = q->E, K = q->K, C = q->C;
	size_t nb = (size_t)E * C * D;
	float *buf = calloc(nb, 4), *eout = calloc(nb, 4);
	float *y = calloc(S * D, 4);
	float *deout = calloc(nb, 4), *dbuf = calloc(nb, 4);
	float *dw = calloc(S * K, 4), *dz = calloc(S * E, 4);

	vlm_moe_dispatch_fwd_cpu(buf, q->x, q->idx, q->slot, S, D, E, K, C);
	experts_fwd(eout, buf, A, q->fill, E, C, D);
	vlm_moe_combine_fwd_cpu(y, eout, q->idx, q->slot, q->w, S, D, E, K,
	    C);
	*loss = 0;
	for (int i = 0; i < S * D; i++)
		*loss += (double)dy[i] * y[i];
	vlm_moe_combine_bwd_cpu(deout, dw, dy, eout, q->idx, q->slot, q->w,
	    S, D, E, K, C);
	experts_bwd(dbuf, deout, A, q->fill, E, C, D);
	vlm_moe_dispatch_bwd_cpu(dx, dbuf, q->idx, q->slot, S, D, E, K, C);
	vlm_moe_route_bwd_ref(dz, dw, q->g, q->idx, q->keep, S, E, K,
	    q->norm);
	vlm_router_bwd_cpu(dx, dwr, dz, q->x, q->wr, S, D, E);
	free(buf); free(eout); free(y); free(deout); free(dbuf); free(dw);
	free(dz);
}

static void
test_block_grad(void **state)
{
	static const struct {
		int E, K;
		float cf;
		int bpr, norm;
	} bc[] = {
		{ 8, 2, 1.0f, 1, 1 }, /* dropping, gate_norm topk, K = 2 */
		{ 8, 2, 0.5f, 0, 0 },
		{ 8, 2, 0.0f, 1, 1 },
		{ 4, 1, 1.0f, 1, 0 },
		{ 3, 3, 1.0f, 0, 1 },
	};

	(void)state;
	for (size_t c = 0; c < sizeof(bc) / sizeof(bc[0]); c++) {
		int S = 37, D = 6, E = bc[c].E, K = bc[c].K;
		struct group q;
		struct vlm_rng r;
		float *A = malloc(E * D * D * 4), *dy = malloc(S * D * 4);
		float *dx = calloc(S * D, 4), *dwr = calloc(E * D, 4);
		double *gx = malloc(S * D * 8), *gw = malloc(E * D * 8), L;
		struct block b;
		char what[64];

		group_init(&q, S, D, E, K, bc[c].cf, bc[c].bpr, bc[c].norm,
		    400 + c);
		if (bc[c].cf == 1.0f && K == 2)
			assert_true(dropped(&q) > 0);
		vlm_rng_seed(&r, 500 + c);
		fill_randn(A, E * D * D, 0.5, &r);
		fill_randn(dy, S * D, 1, &r);
		block_grads(&q, A, dy, dx, dwr, &L);
		b = (struct block){ S, D, E, K, bc[c].norm,
		    dup_double(q.x, S * D), dup_double(q.wr, E * D), A, q.eps,
		    dy, q.idx, q.keep };
		assert_float_equal(L, block_loss(&b), 1e-4 * (1 + fabs(L)));
		fd_grad(gx, b.x, S * D, block_loss, &b);
		fd_grad(gw, b.wr, E * D, block_loss, &b);
		snprintf(what, sizeof(what), "block E%d K%d cf%.1f: dx", E, K,
		    bc[c].cf);
		check_close(what, dx, gx, S * D, 1e-4);
		snprintf(what, sizeof(what), "block E%d K%d cf%.1f: dW_r", E,
		    K, bc[c].cf);
		check_close(what, dwr, gw, E * D, 1e-4);
		free(b.x); free(b.wr); free(A); free(dy); free(dx); free(dwr);
		free(gx); free(gw);
		group_free(&q);
	}
}

/* ---- auxiliary losses ------------------------------------------------ */

enum { AUX_IMP, AUX_LOAD, AUX_SWITCH, AUX_Z, AUX_LOC, AUX_GLOB, AUX_N };
static const char *const aux_name[] = {
	"importance", "load", "switch", "z-loss", "local entropy",
	"global entropy",
};

struct aux {
	int kind, S, E, K, m, *kth;
	double *z;             /* (S,E): differentiated */
	const float *eps;
	const int32_t *idx;
	const uint8_t *mod;
	float sigma, tau;
};

/* The loss of kind a->kind from double logits, written from the spec. */
static double
aux_loss(void *arg)
{
	const struct aux *a = arg;
	int S = a->S, E = a->E, n = 0;
	double v[MAXE] = { 0 }, f[MAXE] = { 0 }, p[MAXE], L = 0, h = 0;

	for (int s = 0; s < S; s++) {
		const double *zs = a->z + (size_t)s * E;
		int in = !a->mod || a->mod[s] == a->m;
		double eta = zs[a->kth[s]] + a->eps[s * E + a->kth[s]], lse;
		softmax_d(p, zs, a->kind == AUX_SWITCH ? a->eps + s * E : NULL,
		    E);
		lse = log(exp(zs[0]) / p[0]);
		n += in;
		for (int e = 0; e < E; e++) {
			if (a->kind == AUX_IMP || a->kind == AUX_SWITCH ||
			    (a->kind == AUX_GLOB && in))
				v[e] += p[e];
			if (a->kind == AUX_LOAD)
				v[e] += 0.5 * erfc((eta - zs[e]) / a->sigma /
				    sqrt(2)) / S;
			if (a->kind == AUX_LOC && in)
				L -= p[e] * log(p[e]);
		}
		if (a->kind == AUX_SWITCH)
			f[a->idx[s * a->K]] += 1.0 / S;
		if (a->kind == AUX_Z)
			L += lse * lse / S;
	}
	switch (a->kind) {
	case AUX_IMP: case AUX_LOAD:
		return cv2_d(v, E);
	case AUX_SWITCH:
		for (int e = 0; e < E; e++)
			L += E * f[e] * v[e] / S;
		return L;
	case AUX_LOC:
		return n ? L / n : 0;
	case AUX_GLOB:
		for (int e = 0; e < E && n; e++)
			h -= v[e] / n * log(v[e] / n + 1e-8);
		return n && a->tau - h > 0 ? a->tau - h : 0;
	}
	return L;
}

static float
aux_fwd(const struct group *q, const struct aux *a)
{
	int S = q->S, E = q->E, K = q->K;

	switch (a->kind) {
	case AUX_IMP: return vlm_aux_importance_fwd_ref(q->p, S, E);
	case AUX_LOAD: return vlm_aux_load_fwd_ref(q->z, q->eps, a->sigma, S,
	    E, K);
	case AUX_SWITCH: return vlm_aux_switch_fwd_ref(q->g, q->idx, S, E, K);
	case AUX_Z: return vlm_aux_zloss_fwd_ref(q->z, S, E);
	case AUX_LOC: return vlm_aux_entropy_local_fwd_ref(q->z, a->mod, a->m,
	    S, E);
	default: return vlm_aux_entropy_global_fwd_ref(q->z, a->mod, a->m,
	    a->tau, S, E);
	}
}

static void
aux_bwd(float *dz, const struct group *q, const struct aux *a, float dl)
{
	int S = q->S, E = q->E, K = q->K;

	switch (a->kind) {
	case AUX_IMP: vlm_aux_importance_bwd_ref(dz, q->p, dl, S, E); break;
	case AUX_LOAD: vlm_aux_load_bwd_ref(dz, q->z, q->eps, a->sigma, dl,
	    S, E, K); break;
	case AUX_SWITCH: vlm_aux_switch_bwd_ref(dz, q->g, q->idx, dl, S, E,
	    K); break;
	case AUX_Z: vlm_aux_zloss_bwd_ref(dz, q->z, dl, S, E); break;
	case AUX_LOC: vlm_aux_entropy_local_bwd_ref(dz, q->z, a->mod, a->m,
	    dl, S, E); break;
	default: vlm_aux_entropy_global_bwd_ref(dz, q->z, a->mod, a->m,
	    a->tau, dl, S, E);
	}
}

/* Index of the K-th largest of z + eps, ties to the lower index. */
static int
kth_largest(const float *z, const float *eps, int E, int K)
{
	for (int e = 0; e < E; e++) {
		int rank = 0;
		for (int f = 0; f < E; f++) {
			float a = z[f] + eps[f], b = z[e] + eps[e];
			rank += a > b || (a == b && f < e);
		}
		if (rank == K - 1)
			return e;
	}
	return -1;
}

/* One aux loss: value against the oracle, dz against differences. */
static void
check_aux(struct group *q, struct aux *a, const char *tag)
{
	int S = q->S, E = q->E;
	float *dz = malloc(S * E * 4), *once = malloc(S * E * 4);
	double *fd = malloc(S * E * 8), want;
	float got, dl = 0.7f;
	char what[80];

	memset(dz, 0, S * E * 4);
	a->z = dup_double(q->z, S * E);
	got = aux_fwd(q, a);
	want = aux_loss(a);
	snprintf(what, sizeof(what), "%s %s: value", aux_name[a->kind], tag);
	print_message("%-40s %.6g (oracle %.6g)\n", what, got, want);
	assert_float_equal(got, want, 1e-5 * (1 + fabs(want)));
	aux_bwd(dz, q, a, dl);
	memcpy(once, dz, S * E * 4);
	aux_bwd(dz, q, a, dl); /* accumulates: twice the gradient */
	for (int i = 0; i < S * E; i++)
		once[i] *= 2;
	assert_true(rel_err(dz, once, S * E) < 1e-6);
	for (int i = 0; i < S * E; i++)
		dz[i] = once[i] / 2;
	fd_grad(fd, a->z, S * E, aux_loss, a);
	for (int i = 0; i < S * E; i++)
		fd[i] *= dl;
	snprintf(what, sizeof(what), "%s %s: dz", aux_name[a->kind], tag);
	check_close(what, dz, fd, S * E, 1e-4);
	free(a->z); free(dz); free(once); free(fd);
}

static void
test_aux_grad(void **state)
{
	int S = 41, E = 8, K = 2, kth[41];
	uint8_t mod[41];
	struct group q;
	struct aux a = { 0 };

	(void)state;
	group_init(&q, S, 5, E, K, 1.0f, 1, 0, 600);
	for (int s = 0; s < S; s++) {
		mod[s] = s % 3 == 1; /* a third text */
		kth[s] = kth_largest(q.z + s * E, q.eps + s * E, E, K);
	}
	a = (struct aux){ .S = S, .E = E, .K = K, .kth = kth, .eps = q.eps,
	    .idx = q.idx, .sigma = 1.0f / E };
	for (a.kind = 0; a.kind < AUX_N; a.kind++) {
		a.mod = NULL;
		a.m = 0;
		a.tau = vlm_aux_entropy_tau(20, E); /* log 8: always active */
		check_aux(&q, &a, "all");
		if (a.kind < AUX_LOC)
			continue;
		a.mod = mod;
		check_aux(&q, &a, "image");
		a.m = 1;
		a.tau = vlm_aux_entropy_tau(9, E);
		check_aux(&q, &a, "text");
	}
	/* K = E: the threshold is the smallest logit */
	a.K = E;
	for (int s = 0; s < S; s++)
		kth[s] = kth_largest(q.z + s * E, q.eps + s * E, E, E);
	a.kind = AUX_LOAD;
	q.K = E;
	check_aux(&q, &a, "K=E");
	q.K = K;
	group_free(&q);
}

/* Inactive global entropy and an absent modality: 0 and no gradient. */
static void
test_aux_edges(void **state)
{
	int S = 19, E = 4;
	struct group q;
	uint8_t mod[19] = { 0 };
	float dz[19 * 4] = { 0 };

	(void)state;
	group_init(&q, S, 5, E, 1, 1.0f, 0, 0, 700);
	assert_float_equal(vlm_aux_entropy_global_fwd_ref(q.z, NULL, 0, 0.0f,
	    S, E), 0, 0);
	vlm_aux_entropy_global_bwd_ref(dz, q.z, NULL, 0, 0.0f, 1, S, E);
	assert_float_equal(vlm_aux_entropy_local_fwd_ref(q.z, mod, 1, S, E),
	    0, 0);
	vlm_aux_entropy_local_bwd_ref(dz, q.z, mod, 1, 1, S, E);
	vlm_aux_entropy_global_bwd_ref(dz, q.z, mod, 1, 1.0f, 1, S, E);
	for (int i = 0; i < S * E; i++)
		assert_true(dz[i] == 0);
	assert_float_equal(vlm_aux_entropy_tau(20, 8), logf(8), 1e-7);
	assert_float_equal(vlm_aux_entropy_tau(9, 32), logf(9), 1e-7);
	/* balanced top-1 with uniform gates: switch loss is exactly 1 */
	for (int i = 0; i < S * E; i++)
		q.g[i] = 1.0f / E;
	for (int s = 0; s < 16; s++)
		q.idx[s] = s % E;
	assert_float_equal(vlm_aux_switch_fwd_ref(q.g, q.idx, 16, E, 1), 1,
	    1e-6);
	group_free(&q);
}

/* ---- determinism across runs and thread counts --------------------- */

static void
run_block(float *out, int threads)
{
	int S = 301, D = 64, E = 8, K = 2;
	struct group q;
	struct vlm_rng r;
	float *A = malloc(E * D * D * 4), *dy = malloc(S * D * 4);
	double L;

	vlm_threads_set(threads);
	group_init(&q, S, D, E, K, 1.0f, 1, 1, 800);
	vlm_rng_seed(&r, 801);
	fill_randn(A, E * D * D, 0.1, &r);
	fill_randn(dy, S * D, 1, &r);
	memset(out, 0, (S * D + E * D) * 4);
	block_grads(&q, A, dy, out, out + S * D, &L);
	free(A); free(dy);
	group_free(&q);
	vlm_threads_set(0);
}

static void
test_determinism(void **state)
{
	size_t n = 301 * 64 + 8 * 64;
	float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);

	(void)state;
	run_block(a, 1);
	run_block(b, 1);
	run_block(c, 3);
	assert_memory_equal(a, b, n * 4);
	check_closef("block grads 3 threads / 1", c, a, n, 1e-5);
	/* the routing kernels themselves are bit-exact across threads */
	free(a); free(b); free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_route_hand_k1),
		cmocka_unit_test(test_route_hand_k2),
		cmocka_unit_test(test_route_parity),
		cmocka_unit_test(test_router_parity),
		cmocka_unit_test(test_dispatch_combine_parity),
		cmocka_unit_test(test_block_grad),
		cmocka_unit_test(test_aux_grad),
		cmocka_unit_test(test_aux_edges),
		cmocka_unit_test(test_determinism),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
