/*
 * test-model-grad.c - the whole model's loss gradient against central
 * finite differences: a tiny one-tower LIMoE (E = 4, K = 2, capacity
 * small enough to drop tokens, BPR, router noise, every aux loss on) and
 * a VL-MoE twin with per-modality pools. The router noise is re-drawn
 * from the same seed for every evaluation, so the loss is a fixed
 * function of the parameters; top-K and capacity decisions are
 * piecewise constant, and a probe whose +-h runs route differently is
 * skipped (counted, and required to be rare). A third model pools both
 * towers by multi-head attention (pool: map). Two more cut the image
 * tokens by a TokenLearner: a one-tower model after its first block
 * (the second block routes the learned tokens with the text), and a
 * two-tower MoE model after its last vision block.
 */
#include <math.h>

#include "testutil.h"

#define B 3

enum { T_LIMOE, T_VLMOE, T_MAP, T_CUT, T_CUT2 };

static void
tiny_config(struct vlm_config *c, int kind)
{
	tiny_grad_config(c);
	c->vision.mlp_ratio = c->text.mlp_ratio = 2;
	c->moe.experts = 4, c->moe.top_k = 2, c->moe.every = 1;
	c->moe.cf_train = 0.6f, c->moe.min_capacity = 1;
	c->moe.gate_norm = VLM_GATE_TOPK;
	c->moe.modality_experts = kind == T_VLMOE;
	c->aux.switch_bal = 1;
	c->aux.w_limoe = 0.5f; /* large, so aux gradients matter here */
	if (kind == T_MAP)
		c->vision.pool = c->text.pool = VLM_POOL_MAP;
	if (kind == T_CUT || kind == T_CUT2) {
		c->vision.pool = VLM_POOL_GAP;
		c->tl.after = kind == T_CUT ? 0 : 1;
		c->tl.tokens = 3, c->tl.hidden = 5;
	}
	if (kind == T_CUT2)
		c->family = VLM_TWO_TOWER;
}

/* FNV-1a over every MoE layer's choices and kept flags */
static uint64_t
route_hash(const struct vlm_run *r, const struct vlm_model *m)
{
	uint64_t h = 1469598103934665603ULL;
	struct vlm_route_view v;

	for (int l = 0; l < 2 * m->cfg.text.layers; l++)
		for (int p = 0; p < 2; p++) { /* text, then image layers */
			if (vlm_run_route(r, l < m->cfg.text.layers, l %
			    m->cfg.text.layers, p, &v) < 0)
				continue;
			for (int i = 0; i < v.S * m->cfg.moe.top_k; i++)
				h = (h ^ (uint64_t)(v.idx[i] * 2 + v.keep[i])) *
				    1099511628211ULL;
		}
	return h;
}

static int
dropped(const struct vlm_run *r, const struct vlm_model *m)
{
	struct vlm_route_view v;
	int n = 0;

	for (int l = 0; l < m->cfg.text.layers; l++)
		for (int p = 0; p < 2; p++)
			for (int i = 0; vlm_run_route(r, 0, l, p, &v) == 0 &&
			    i < v.S * m->cfg.moe.top_k; i++)
				n += !v.keep[i];
	return n;
}

static double
loss_at(struct vlm_run *r, const struct vlm_model *m, const float *img,
    const int32_t *ids, uint64_t *routes)
{
	struct vlm_loss L;

	vlm_run_seed(r, 7);
	assert_int_equal(vlm_forward(r, m, img, ids), 0);
	assert_int_equal(vlm_run_loss(r, m, &L), 0);
	*routes = route_hash(r, m);
	return L.total;
}

static void
check_model(int kind)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_rng rng;
	float img[B * 3 * 16 * 16], *g;
	int32_t ids[B * 7] = { 0 };
	int probes = 0, bad = 0, skipped = 0;
	uint64_t h0, hp, hm;
	struct vlm_run *r;

	tiny_config(&c, kind);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	vlm_model_randomize(&m, 3);
	vlm_rng_seed(&rng, 11);
	for (size_t i = 0; i < sizeof(img) / sizeof(*img); i++)
		img[i] = (float)vlm_rng_normal(&rng);
	for (int b = 0; b < B; b++) {  /* lengths 3..5, EOT = largest id */
		int len = 3 + b;
		for (int t = 0; t < len - 1; t++)
			ids[b * 7 + t] = 1 + vlm_rng_below(&rng, 37);
		ids[b * 7 + len - 1] = 39;
	}
	assert_non_null(r = vlm_run_new(&m, B, B, 1));
	loss_at(r, &m, img, ids, &h0);
	assert_true(dropped(r, &m) > 0); /* capacity really drops tokens */
	g = malloc(m.nfloats * sizeof(float));
	assert_int_equal(vlm_backward(r, &m, g), 0);
	for (int i = 0; i < m.nparams; i++) {
		const struct vlm_param *p = &m.params[i];
		for (int k = 0; k < 3 && k < p->n; k++) {
			int64_t j = p->off + vlm_rng_below(&rng, p->n);
			float w0 = m.w[j], h = 1e-3f;
			m.w[j] = w0 + h;
			double lp = loss_at(r, &m, img, ids, &hp);
			m.w[j] = w0 - h;
			double lm = loss_at(r, &m, img, ids, &hm);
			m.w[j] = w0;
			if (hp != h0 || hm != h0) { /* crossed a routing edge */
				skipped++;
				continue;
			}
			double fd = (lp - lm) / (2 * h), an = g[j];
			double err = fabs(fd - an) / fmax(fabs(an), 5e-2);
			probes++;
			if (err > 2e-2) {
				bad++;
				print_message("%s[%lld]: analytic %.6g fd %.6g\n",
				    p->name, (long long)(j - p->off), an, fd);
			}
		}
	}
	print_message("%d probes, %d off, %d skipped (routing changed)\n",
	    probes, bad, skipped);
	assert_int_equal(bad, 0);
	assert_true(skipped <= probes / 10);
	free(g);
	vlm_run_free(r);
	vlm_model_release(&m);
}

static void
test_limoe_gradient(void **state)
{
	(void)state;
	check_model(T_LIMOE);
}

static void
test_vlmoe_gradient(void **state)
{
	(void)state;
	check_model(T_VLMOE);
}

static void
test_map_pooling_gradient(void **state)
{
	(void)state;
	check_model(T_MAP);
}

static void
test_token_learner_gradient(void **state)
{
	(void)state;
	check_model(T_CUT);
}

static void
test_token_learner_last_block_gradient(void **state)
{
	(void)state;
	check_model(T_CUT2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limoe_gradient),
		cmocka_unit_test(test_vlmoe_gradient),
		cmocka_unit_test(test_map_pooling_gradient),
		cmocka_unit_test(test_token_learner_gradient),
		cmocka_unit_test(test_token_learner_last_block_gradient),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
