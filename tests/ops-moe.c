/*
 * ops-moe.c - the sparse MoE ops: router, routing, dispatch and combine, the
 * auxiliary losses
 * (tests/ops-common.h): their cases, run on every backend against ref
 * by tests/test-ops-*.c.
 */
#include "ops-common.h"

/* ---- host-made structured inputs ------------------------------------ */

/* One routing group as the ref kernels make it. */
struct moe_case {
	int S, D, E, K, C, bpr, gate_norm;
};

static const struct moe_case moe_cases[] = {
	{ 37, 13, 1, 1, 37, 0, 1 },  /* one expert */
	{ 37, 13, 5, 5, 37, 1, 1 },  /* K = E */
	{ 37, 13, 6, 2, 5, 1, 1 },   /* capacity drops */
	{ 37, 13, 7, 2, 9, 0, 0 },   /* no gate normalisation, drops */
};
#define NMOE ((int)(sizeof(moe_cases) / sizeof(*moe_cases)))

struct routing {
	float *g, *val, *w;
	int32_t *idx, *slot, *fill, *order;
	uint8_t *keep;
};

static void
host_route(struct ctx *x, const struct moe_case *q, struct routing *h)
{
	size_t SK = (size_t)q->S * q->K;

	h->g = host_probs(x, q->S, q->E);
	h->val = malloc(SK * 4), h->w = malloc(SK * 4);
	h->idx = malloc(SK * 4), h->slot = malloc(SK * 4);
	h->fill = malloc(q->E * 4), h->order = malloc(q->S * 4);
	h->keep = malloc(SK);
	vlm_moe_route_fwd_ref(h->idx, h->val, h->keep, h->slot, h->w, h->fill,
	    h->order, h->g, q->S, q->E, q->K, q->C, q->bpr, q->gate_norm);
}

static void
free_route(struct routing *h)
{
	free(h->g), free(h->val), free(h->w), free(h->idx), free(h->slot);
	free(h->fill), free(h->order), free(h->keep);
}

/* ---- sparse MoE ------------------------------------------------------- */

static void
c_router_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k % NMOE];
	int S = q->S, D = q->D, E = q->E;
	const float *xx = in_f(x, S * D, 1), *wr = in_f(x, E * D, 1);
	const float *eps = k < NMOE ? in_f(x, S * E, 0.1f) : NULL;

	x->be->router_fwd(OUT_F(x, S * E), OUT_F(x, S * E), OUT_F(x, S * E),
	    xx, wr, eps, S, D, E);
}

static void
c_router_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	int S = q->S, D = q->D, E = q->E;
	const float *dz = in_f(x, S * E, 1), *xx = in_f(x, S * D, 1);
	const float *wr = in_f(x, E * D, 1);

	x->be->router_bwd(OUT_F(x, S * D), OUT_F(x, E * D), dz, xx, wr, S, D,
	    E);
}

static void
c_moe_route_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	int S = q->S, E = q->E, K = q->K;
	float *hg = host_probs(x, S, E);
	const float *g = IN(x, hg, S * E, F32);
	int32_t *idx = out_b(x, NULL, S * K, I32);
	float *val = OUT_F(x, S * K);
	uint8_t *keep = out_b(x, NULL, S * K, U8);
	int32_t *slot = out_b(x, NULL, S * K, I32);
	float *w = OUT_F(x, S * K);
	int32_t *fill = out_b(x, NULL, E, I32), *ord = out_b(x, NULL, S, I32);

	x->be->moe_route_fwd(idx, val, keep, slot, w, fill, ord, g, S, E, K,
	    q->C, q->bpr, q->gate_norm);
	free(hg);
}

static void
c_moe_route_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	int S = q->S, E = q->E, K = q->K;
	struct routing h;

	host_route(x, q, &h);
	const float *dw = in_f(x, S * K, 1), *g = IN(x, h.g, S * E, F32);
	const int32_t *idx = IN(x, h.idx, S * K, I32);
	const uint8_t *keep = IN(x, h.keep, S * K, U8);
	x->be->moe_route_bwd(OUT_F(x, S * E), dw, g, idx, keep, S, E, K,
	    q->gate_norm);
	free_route(&h);
}

/* Routing of case k uploaded: idx, slot, w. */
static void
dev_route(struct ctx *x, const struct moe_case *q, struct routing *h,
    const int32_t **idx, const int32_t **slot, const float **w)
{
	host_route(x, q, h);
	*idx = IN(x, h->idx, q->S * q->K, I32);
	*slot = IN(x, h->slot, q->S * q->K, I32);
	*w = IN(x, h->w, q->S * q->K, F32);
}

static void
c_moe_dispatch_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *xx = in_f(x, q->S * q->D, 1);
	x->be->moe_dispatch_fwd(OUT_F(x, q->E * q->C * q->D), xx, idx, slot,
	    q->S, q->D, q->E, q->K, q->C);
	free_route(&h);
}

static void
c_moe_dispatch_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *dbuf = in_f(x, q->E * q->C * q->D, 1);
	x->be->moe_dispatch_bwd(OUT_F(x, q->S * q->D), dbuf, idx, slot, q->S,
	    q->D, q->E, q->K, q->C);
	free_route(&h);
}

static void
c_moe_combine_fwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *out = in_f(x, q->E * q->C * q->D, 1);
	x->be->moe_combine_fwd(OUT_F(x, q->S * q->D), out, idx, slot, w, q->S,
	    q->D, q->E, q->K, q->C);
	free_route(&h);
}

static void
c_moe_combine_bwd(struct ctx *x, int k)
{
	const struct moe_case *q = &moe_cases[k];
	struct routing h;
	const int32_t *idx, *slot;
	const float *w;

	dev_route(x, q, &h, &idx, &slot, &w);
	const float *dy = in_f(x, q->S * q->D, 1);
	const float *out = in_f(x, q->E * q->C * q->D, 1);
	x->be->moe_combine_bwd(OUT_F(x, q->E * q->C * q->D),
	    OUT_F(x, q->S * q->K), dy, out, idx, slot, w, q->S, q->D, q->E,
	    q->K, q->C);
	free_route(&h);
}

/* Aux losses: case k's group; p and g softmax rows, z logits. */
#define AUX_SETUP \
	const struct moe_case *q = &moe_cases[k % NMOE]; \
	int S = q->S, E = q->E, K = q->K; \
	float *hp = host_probs(x, S, E); \
	const float *p = IN(x, hp, S * E, F32), *z = in_f(x, S * E, 3); \
	free(hp)

static void
c_aux_importance_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)z, (void)K;
	ret(x, x->be->aux_importance_fwd(p, S, E));
}

static void
c_aux_importance_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)z, (void)K;
	x->be->aux_importance_bwd(OUT_F(x, S * E), p, 0.7f, S, E);
}

static void
c_aux_load_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p;
	const float *eps = in_f(x, S * E, 0.3f);
	ret(x, x->be->aux_load_fwd(z, eps, 0.3f, S, E, K));
}

static void
c_aux_load_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p;
	const float *eps = in_f(x, S * E, 0.3f);
	x->be->aux_load_bwd(OUT_F(x, S * E), z, eps, 0.3f, 0.7f, S, E, K);
}

static void
c_aux_switch_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	struct routing h;
	(void)z;
	host_route(x, q, &h);
	const int32_t *idx = IN(x, h.idx, S * K, I32);
	ret(x, x->be->aux_switch_fwd(p, idx, S, E, K));
	free_route(&h);
}

static void
c_aux_switch_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	struct routing h;
	(void)z;
	host_route(x, q, &h);
	const int32_t *idx = IN(x, h.idx, S * K, I32);
	x->be->aux_switch_bwd(OUT_F(x, S * E), p, idx, 0.7f, S, E, K);
	free_route(&h);
}

static void
c_aux_zloss_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	ret(x, x->be->aux_zloss_fwd(z, S, E));
}

static void
c_aux_zloss_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	x->be->aux_zloss_bwd(OUT_F(x, S * E), z, 0.7f, S, E);
}

/* Modalities: tokens 0..11 images, the rest texts; case k >= NMOE
 * takes NULL (every token of modality m). */
static const uint8_t *
in_mod(struct ctx *x, int S, int k)
{
	uint8_t h[64];

	if (k >= NMOE)
		return NULL;
	for (int s = 0; s < S; s++)
		h[s] = s >= 12;
	return IN(x, h, S, U8);
}

static void
c_aux_entropy_local_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	ret(x, x->be->aux_entropy_local_fwd(z, mod, 0, S, E));
	ret(x, x->be->aux_entropy_local_fwd(z, mod, 1, S, E));
}

static void
c_aux_entropy_local_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	float *dz = OUT_F(x, S * E);
	x->be->aux_entropy_local_bwd(dz, z, mod, 0, 0.7f, S, E);
	x->be->aux_entropy_local_bwd(dz, z, mod, 1, 0.3f, S, E);
}

static void
c_aux_entropy_global_fwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	for (int m = 0; m < 2; m++)
		ret(x, x->be->aux_entropy_global_fwd(z, mod, m,
		    vlm_aux_entropy_tau(m ? 25 : 12, E), S, E));
}

static void
c_aux_entropy_global_bwd(struct ctx *x, int k)
{
	AUX_SETUP;
	(void)p, (void)K;
	const uint8_t *mod = in_mod(x, S, k);
	float *dz = OUT_F(x, S * E);
	for (int m = 0; m < 2; m++)
		x->be->aux_entropy_global_bwd(dz, z, mod, m,
		    vlm_aux_entropy_tau(m ? 25 : 12, E), 0.7f, S, E);
}

static const struct op_case cases[] = {
	CASE(router_fwd, 2 * NMOE, 1e-5), CASE(router_bwd, NMOE, 1e-5),
	CASE(moe_route_fwd, NMOE, 0), CASE(moe_route_bwd, NMOE, 1e-6),
	CASE(moe_dispatch_fwd, NMOE, 0), CASE(moe_dispatch_bwd, NMOE, 0),
	CASE(moe_combine_fwd, NMOE, 1e-6), CASE(moe_combine_bwd, NMOE, 1e-6),
	CASE(aux_importance_fwd, NMOE, 1e-6),
	CASE(aux_importance_bwd, NMOE, 1e-6), CASE(aux_load_fwd, NMOE, 1e-6),
	CASE(aux_load_bwd, NMOE, 1e-6), CASE(aux_switch_fwd, NMOE, 1e-6),
	CASE(aux_switch_bwd, NMOE, 1e-6), CASE(aux_zloss_fwd, NMOE, 1e-6),
	CASE(aux_zloss_bwd, NMOE, 1e-6),
	CASE(aux_entropy_local_fwd, NMOE + 1, 1e-6),
	CASE(aux_entropy_local_bwd, NMOE + 1, 1e-6),
	CASE(aux_entropy_global_fwd, NMOE + 1, 1e-6),
	CASE(aux_entropy_global_bwd, NMOE + 1, 1e-6),
};

const struct op_family ops_moe = {
	"moe", cases, (int)(sizeof(cases) / sizeof(*cases))
};
