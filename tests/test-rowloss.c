/*
 * test-rowloss.c - per-example contrastive losses
 * (libcore/model/example-loss.c) of a tiny random LIMoE and a tiny
 * two-tower CLIP: their mean is the loss vlm_run_loss reports, and each
 * is the mean of its image's row and its text's column cross-entropy
 * recomputed in double from the logits.
 */
#include <math.h>

#include "testutil.h"
#include "model/run.h"

#define B 5

static void
tiny(struct vlm_config *c, int two_tower)
{
	tiny_grad_config(c);
	c->moe.experts = 4, c->moe.top_k = 1;
	if (two_tower) {
		c->family = VLM_TWO_TOWER;
		c->moe.experts = 0;
	}
}

/* log sum_j exp(x[j * st]) in double */
static double
lse(const float *x, int n, int st)
{
	double mx = -INFINITY, s = 0;

	for (int j = 0; j < n; j++)
		mx = fmax(mx, x[j * st]);
	for (int j = 0; j < n; j++)
		s += exp(x[j * st] - mx);
	return mx + log(s);
}

static void
check(int two_tower)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_rng rng;
	struct vlm_run *r;
	struct vlm_loss L;
	float img[B * 3 * 16 * 16];
	int32_t ids[B * 7] = { 0 };
	double loss[B], mean = 0;

	tiny(&c, two_tower);
	assert_int_equal(vlm_config_check(&c), 0);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	vlm_model_randomize(&m, 5);
	m.w[m.logit_scale] = 2.0f; /* sharper logits: losses that differ */
	vlm_rng_seed(&rng, 9);
	for (size_t i = 0; i < sizeof(img) / sizeof(*img); i++)
		img[i] = (float)vlm_rng_normal(&rng);
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < 2 + b % 3; t++)
			ids[b * 7 + t] = 1 + vlm_rng_below(&rng, 37);
		ids[b * 7 + 2 + b % 3] = 39;
	}
	assert_non_null(r = vlm_run_new(&m, B, B, 1));
	assert_int_equal(vlm_forward(r, &m, img, ids), 0);
	assert_int_equal(vlm_run_loss(r, &m, &L), 0);
	assert_int_equal(vlm_run_row_loss(r, loss), 0);
	for (int i = 0; i < B; i++) {
		const float *lg = r->logits;
		double d = lg[i * B + i];
		double want = (lse(lg + i * B, B, 1) - d +
		    lse(lg + i, B, B) - d) / 2;
		assert_true(fabs(loss[i] - want) < 1e-5 * fmax(1, fabs(want)));
		mean += loss[i] / B;
	}
	assert_true(fabs(mean - L.contrastive) < 1e-5 * L.contrastive);
	assert_true(fabs(loss[0] - loss[1]) > 1e-4); /* not all the same */
	vlm_run_free(r);
	/* images and texts in different numbers: refused */
	assert_non_null(r = vlm_run_new(&m, B, B - 1, 0));
	assert_int_equal(vlm_run_row_loss(r, loss), -1);
	vlm_run_free(r);
	vlm_model_release(&m);
}

static void
test_limoe(void **state)
{
	(void)state;
	check(0);
}

static void
test_clip(void **state)
{
	(void)state;
	check(1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limoe),
		cmocka_unit_test(test_clip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
