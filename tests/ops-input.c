/*
 * ops-input.c - inputs, pooling and token reduction: patches, embeddings, the
 * class token, one-token, mean and MAP pooling, TokenLearner
 * (tests/ops-common.h): their cases, run on every backend against ref
 * by tests/test-ops-*.c.
 */
#include "ops-common.h"

/* ---- inputs, pooling, token reduction, rows ------------------------- */

enum { PB = 2, PH = 15, PW = 10, PP = 5, NP = (PH / PP) * (PW / PP) };

static void
c_patchify_fwd(struct ctx *x, int k)
{
	const float *img = in_f(x, PB * 3 * PH * PW, 1);

	(void)k;
	x->be->patchify_fwd(OUT_F(x, PB * NP * 3 * PP * PP), img, PB, 3, PH,
	    PW, PP);
}

static void
c_patchify_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, PB * NP * 3 * PP * PP, 1);

	(void)k;
	x->be->patchify_bwd(OUT_F(x, PB * 3 * PH * PW), d, PB, 3, PH, PW, PP);
}

/* ids (N) in [0, V) with repeats (the backward's collisions). */
static const int32_t *
in_ids(struct ctx *x, int N, int V)
{
	int32_t h[64];

	for (int n = 0; n < N; n++)
		h[n] = (int32_t)vlm_rng_below(&x->rng, V);
	return IN(x, h, N, I32);
}

static void
c_embed_fwd(struct ctx *x, int k)
{
	const int32_t *ids = in_ids(x, 37, 11);
	const float *table = in_f(x, 11 * 13, 1);

	(void)k;
	x->be->embed_fwd(OUT_F(x, 37 * 13), ids, table, 37, 11, 13);
}

static void
c_embed_bwd(struct ctx *x, int k)
{
	const int32_t *ids = in_ids(x, 37, 11);
	const float *dout = in_f(x, 37 * 13, 1);

	(void)k;
	x->be->embed_bwd(OUT_F(x, 11 * 13), dout, ids, 37, 11, 13);
}

static void
c_posembed_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, 3 * 37 * 13, 1), *pos = in_f(x, 37 * 13, 1);

	(void)k;
	x->be->posembed_fwd(OUT_F(x, 3 * 37 * 13), xx, pos, 3, 37, 13);
}

static void
c_posembed_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, 3 * 37 * 13, 1);

	x->be->posembed_bwd(k ? NULL : OUT_F(x, 3 * 37 * 13),
	    OUT_F(x, 37 * 13), d, 3, 37, 13);
}

static void
c_cls_prepend_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, 3 * 36 * 13, 1), *cls = in_f(x, 13, 1);

	(void)k;
	x->be->cls_prepend_fwd(OUT_F(x, 3 * 37 * 13), xx, cls, 3, 36, 13);
}

static void
c_cls_prepend_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, 3 * 37 * 13, 1);

	x->be->cls_prepend_bwd(k ? NULL : OUT_F(x, 3 * 36 * 13),
	    k == 1 ? OUT_F(x, 13) : NULL, d, 3, 36, 13);
}

static const int32_t tpos[AB] = { 36, 0, 19 };

static void
c_pool_token_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, AB * AT * 13, 1);
	const int32_t *pos = k ? NULL : IN(x, tpos, AB, I32);

	x->be->pool_token_fwd(OUT_F(x, AB * 13), xx, pos, AB, AT, 13);
}

static void
c_pool_token_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, AB * 13, 1);
	const int32_t *pos = k ? NULL : IN(x, tpos, AB, I32);

	x->be->pool_token_bwd(OUT_F(x, AB * AT * 13), d, pos, AB, AT, 13);
}

static void
c_pool_mean_fwd(struct ctx *x, int k)
{
	const float *xx = in_f(x, AB * AT * 13, 1);
	const int32_t *len = k ? NULL : IN(x, ops_len, AB, I32);

	x->be->pool_mean_fwd(OUT_F(x, AB * 13), xx, len, AB, AT, 13);
}

static void
c_pool_mean_bwd(struct ctx *x, int k)
{
	const float *d = in_f(x, AB * 13, 1);
	const int32_t *len = k ? NULL : IN(x, ops_len, AB, I32);

	x->be->pool_mean_bwd(OUT_F(x, AB * AT * 13), d, len, AB, AT, 13);
}

static void
c_pool_map_fwd(struct ctx *x, int k)
{
	const float *q = in_f(x, AC, 1), *kk = in_f(x, AB * AT * AC, 1);
	const float *v = in_f(x, AB * AT * AC, 1);
	const int32_t *len = k ? NULL : IN(x, ops_len, AB, I32);

	x->be->pool_map_fwd(OUT_F(x, AB * AC), OUT_F(x, AB * AH * AT), q, kk,
	    v, len, AB, AT, AC, AH);
}

static void
c_pool_map_bwd(struct ctx *x, int k)
{
	float *hq = host_f(x, AC, 1), *hk = host_f(x, AB * AT * AC, 1);
	float *hv = host_f(x, AB * AT * AC, 1), *ho = malloc(AB * AC * 4);
	float *ha = malloc(AB * AH * AT * 4);

	vlm_pool_map_fwd_ref(ho, ha, hq, hk, hv, k ? NULL : ops_len, AB, AT, AC,
	    AH);
	const float *q = IN(x, hq, AC, F32), *kk = IN(x, hk, AB * AT * AC, F32);
	const float *v = IN(x, hv, AB * AT * AC, F32);
	const float *att = IN(x, ha, AB * AH * AT, F32);
	const float *d = in_f(x, AB * AC, 1);
	const int32_t *len = k ? NULL : IN(x, ops_len, AB, I32);
	x->be->pool_map_bwd(OUT_F(x, AC), OUT_F(x, AB * AT * AC),
	    k == 2 ? NULL : OUT_F(x, AB * AT * AC), d, att, q, kk, v, len, AB,
	    AT, AC, AH);
	free(hq), free(hk), free(hv), free(ho), free(ha);
}

enum { TB = 2, TN = 37, TD = 12, THd = 7, TM = 5 };

struct tl_in {
	const float *x, *lw, *lb, *w1, *b1, *w2, *b2;
};

static void
tl_inputs(struct ctx *x, struct tl_in *t)
{
	t->x = in_f(x, TB * TN * TD, 1);
	t->lw = in_f(x, TD, 1), t->lb = in_f(x, TD, 1);
	t->w1 = in_f(x, THd * TD, 1), t->b1 = in_f(x, THd, 1);
	t->w2 = in_f(x, TM * THd, 1), t->b2 = in_f(x, TM, 1);
}

static void
c_token_learner_fwd(struct ctx *x, int k)
{
	struct tl_in t;
	float *act;

	(void)k;
	tl_inputs(x, &t);
	act = IN(x, NULL, vlm_token_learner_act_floats(TB, TN, TD, THd, TM),
	    F32);
	x->be->token_learner_fwd(OUT_F(x, TB * TM * TD), act, t.x, t.lw, t.lb,
	    t.w1, t.b1, t.w2, t.b2, TB, TN, TD, THd, TM);
}

/* The backend's own forward fills act (its layout is the backend's). */
static void
c_token_learner_bwd(struct ctx *x, int k)
{
	struct tl_in t;
	float *act, *out;

	(void)k;
	tl_inputs(x, &t);
	act = IN(x, NULL, vlm_token_learner_act_floats(TB, TN, TD, THd, TM),
	    F32);
	out = IN(x, NULL, TB * TM * TD, F32);
	x->be->token_learner_fwd(out, act, t.x, t.lw, t.lb, t.w1, t.b1, t.w2,
	    t.b2, TB, TN, TD, THd, TM);
	const float *d = in_f(x, TB * TM * TD, 1);
	x->be->token_learner_bwd(OUT_F(x, TB * TN * TD), OUT_F(x, TD),
	    OUT_F(x, TD), OUT_F(x, THd * TD), OUT_F(x, THd),
	    OUT_F(x, TM * THd), OUT_F(x, TM), d, act, t.x, t.lw, t.w1, t.w2,
	    TB, TN, TD, THd, TM);
}
static const struct op_case cases[] = {
	CASE(patchify_fwd, 1, 0), CASE(patchify_bwd, 1, 0),
	CASE(embed_fwd, 1, 0), CASE(embed_bwd, 1, 1e-6),
	CASE(posembed_fwd, 1, 0), CASE(posembed_bwd, 2, 1e-6),
	CASE(cls_prepend_fwd, 1, 0), CASE(cls_prepend_bwd, 3, 1e-6),
	CASE(pool_token_fwd, 2, 0), CASE(pool_token_bwd, 2, 0),
	CASE(pool_mean_fwd, 2, 1e-6), CASE(pool_mean_bwd, 2, 1e-6),
	CASE(pool_map_fwd, 2, 1e-5), CASE(pool_map_bwd, 3, 1e-5),
	CASE(token_learner_fwd, 1, 1e-5), CASE(token_learner_bwd, 1, 1e-4),
};

const struct op_family ops_input = {
	"input", cases, (int)(sizeof(cases) / sizeof(*cases))
};
