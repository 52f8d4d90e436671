/*
 * bench-moe.c - the sparse-MoE and TokenLearner kernels, _cpu against
 * _ref on one LIMoE-sized routing group (S = 2048 tokens, D = 512,
 * E = 8, K = 2, cf 1, BPR) and one TokenLearner batch (B = 32, N = 196,
 * D = 512, M = 8): milliseconds per call and the speed-up. A benchmark,
 * not a test: it prints, it does not judge.
 */
#include <stdlib.h>
#include <string.h>

#include "vlm.h"
#include "kernels.h"

enum { S = 2048, D = 512, E = 8, K = 2, TB = 32, TN = 196, TM = 8, TH = 64 };

static float *
randn(size_t n, double scale, struct vlm_rng *r)
{
	float *a = malloc(n * sizeof(float));

	for (size_t i = 0; a && i < n; i++)
		a[i] = (float)(scale * vlm_rng_normal(r));
	return a;
}

/* Buffers of one group; filled once, reused by every timed call. */
static struct {
	float *x, *wr, *eps, *z, *p, *g, *val, *w, *buf, *y, *dy, *dw, *dx;
	float *dwr;
	int32_t *idx, *slot, *fill, *order;
	uint8_t *keep;
	int C;
	float *tx, *tout, *act, *tp, *tg;
} b;

#define TIME(ms, reps, call) do { \
	double t0_ = vlm_now(); \
	for (int r_ = 0; r_ < (reps); r_++) \
		call; \
	(ms) = (vlm_now() - t0_) * 1e3 / (reps); \
} while (0)

static void
report(const char *what, double ref, double cpu)
{
	printf("%-24s ref %8.3f ms  cpu %8.3f ms  x%.1f\n", what, ref, cpu,
	    ref / cpu);
}

static void
bench_moe(void)
{
	double r, c;

	TIME(r, 2, vlm_router_fwd_ref(b.z, b.p, b.g, b.x, b.wr, b.eps, S, D,
	    E));
	TIME(c, 20, vlm_router_fwd_cpu(b.z, b.p, b.g, b.x, b.wr, b.eps, S, D,
	    E));
	report("router fwd", r, c);
	TIME(r, 2, vlm_router_bwd_ref(b.dx, b.dwr, b.z, b.x, b.wr, S, D, E));
	TIME(c, 20, vlm_router_bwd_cpu(b.dx, b.dwr, b.z, b.x, b.wr, S, D, E));
	report("router bwd", r, c);
	TIME(r, 5, vlm_moe_route_fwd_ref(b.idx, b.val, b.keep, b.slot, b.w,
	    b.fill, b.order, b.g, S, E, K, b.C, 1, 0));
	TIME(c, 20, vlm_moe_route_fwd_cpu(b.idx, b.val, b.keep, b.slot, b.w,
	    b.fill, b.order, b.g, S, E, K, b.C, 1, 0));
	report("route (BPR)", r, c);
	TIME(r, 20, vlm_moe_dispatch_fwd_ref(b.buf, b.x, b.idx, b.slot, S, D,
	    E, K, b.C));
	TIME(c, 20, vlm_moe_dispatch_fwd_cpu(b.buf, b.x, b.idx, b.slot, S, D,
	    E, K, b.C));
	report("dispatch fwd", r, c);
	TIME(r, 20, vlm_moe_combine_fwd_ref(b.y, b.buf, b.idx, b.slot, b.w, S,
	    D, E, K, b.C));
	TIME(c, 20, vlm_moe_combine_fwd_cpu(b.y, b.buf, b.idx, b.slot, b.w, S,
	    D, E, K, b.C));
	report("combine fwd", r, c);
	TIME(r, 20, vlm_moe_combine_bwd_ref(b.buf, b.dw, b.dy, b.buf, b.idx,
	    b.slot, b.w, S, D, E, K, b.C));
	TIME(c, 20, vlm_moe_combine_bwd_cpu(b.buf, b.dw, b.dy, b.buf, b.idx,
	    b.slot, b.w, S, D, E, K, b.C));
	report("combine bwd", r, c);
	TIME(r, 20, vlm_moe_dispatch_bwd_ref(b.dx, b.buf, b.idx, b.slot, S, D,
	    E, K, b.C));
	TIME(c, 20, vlm_moe_dispatch_bwd_cpu(b.dx, b.buf, b.idx, b.slot, S, D,
	    E, K, b.C));
	report("dispatch bwd", r, c);
}

static void
bench_token_learner(void)
{
	float *p = b.tp, *g = b.tg;
	double r, c;

	/* params: ln_w, ln_b (D), w1 (TH,D), b1 (TH), w2 (TM,TH), b2 (TM) */
	float *lnw = p, *lnb = p + D, *w1 = p + 2 * D, *b1 = w1 + TH * D;
	float *w2 = b1 + TH, *b2 = w2 + TM * TH;

	TIME(r, 1, vlm_token_learner_fwd_ref(b.tout, b.act, b.tx, lnw, lnb,
	    w1, b1, w2, b2, TB, TN, D, TH, TM));
	TIME(c, 5, vlm_token_learner_fwd_cpu(b.tout, b.act, b.tx, lnw, lnb,
	    w1, b1, w2, b2, TB, TN, D, TH, TM));
	report("TokenLearner fwd", r, c);
	TIME(r, 1, vlm_token_learner_bwd_ref(b.tx, g, g + D, g + 2 * D,
	    g + 2 * D + TH * D, g + 2 * D + TH * D + TH,
	    g + 2 * D + TH * D + TH + TM * TH, b.tout, b.act, b.tx, lnw, w1,
	    w2, TB, TN, D, TH, TM));
	TIME(c, 5, vlm_token_learner_bwd_cpu(b.tx, g, g + D, g + 2 * D,
	    g + 2 * D + TH * D, g + 2 * D + TH * D + TH,
	    g + 2 * D + TH * D + TH + TM * TH, b.tout, b.act, b.tx, lnw, w1,
	    w2, TB, TN, D, TH, TM));
	report("TokenLearner bwd", r, c);
}

int
main(void)
{
	size_t np = 2 * D + TH * D + TH + TM * TH + TM;
	struct vlm_rng r;

	vlm_rng_seed(&r, 1);
	b.C = vlm_moe_capacity(S, E, K, 1.0f, 4);
	b.x = randn((size_t)S * D, 1, &r);
	b.wr = randn((size_t)E * D, 0.05, &r);
	b.eps = randn((size_t)S * E, 1.0 / E, &r);
	b.dy = randn((size_t)S * D, 1, &r);
	b.z = calloc((size_t)S * E, 4); b.p = calloc((size_t)S * E, 4);
	b.g = calloc((size_t)S * E, 4); b.val = calloc(S * K, 4);
	b.w = calloc(S * K, 4); b.dw = calloc(S * K, 4);
	b.buf = calloc((size_t)E * b.C * D, 4);
	b.y = calloc((size_t)S * D, 4); b.dx = calloc((size_t)S * D, 4);
	b.dwr = calloc((size_t)E * D, 4);
	b.idx = calloc(S * K, 4); b.slot = calloc(S * K, 4);
	b.fill = calloc(E, 4); b.order = calloc(S, 4);
	b.keep = calloc(S * K, 1);
	b.tx = randn((size_t)TB * TN * D, 1, &r);
	b.tout = calloc((size_t)TB * TM * D, 4);
	b.act = calloc(vlm_token_learner_act_floats(TB, TN, D, TH, TM), 4);
	b.tp = randn(np, 0.05, &r);
	b.tg = calloc(np, 4);
	if (!b.z || !b.p || !b.g || !b.val || !b.w || !b.dw || !b.buf ||
	    !b.y || !b.dx || !b.dwr || !b.idx || !b.slot || !b.fill ||
	    !b.order || !b.keep || !b.tout || !b.act || !b.tg || !b.x ||
	    !b.wr || !b.eps || !b.dy || !b.tx || !b.tp) {
		fprintf(stderr, "bench-moe: out of memory\n");
		return 1;
	}
	vlm_router_fwd_cpu(b.z, b.p, b.g, b.x, b.wr, b.eps, S, D, E);
	vlm_moe_route_fwd_cpu(b.idx, b.val, b.keep, b.slot, b.w, b.fill,
	    b.order, b.g, S, E, K, b.C, 1, 0);
	printf("S %d D %d E %d K %d C %d, %d threads\n", S, D, E, K, b.C,
	    vlm_threads());
	bench_moe();
	bench_token_learner();
	return 0;
}
