/*
 * test-upcycle.c - sparse upcycling (libcore/model/upcycle.c): experts are
 * copies of the dense MLP, routers small and seeded, everything else
 * unchanged; and the upcycled model computes the dense model's features
 * when each token's gates sum to 1 and nothing is dropped.
 *
 * That holds in two settings: K = 1 with the gate renormalised to 1 (the
 * issue's comparison; the config check refuses gate_norm=topk with
 * top_k=1 for training, so the test sets it on the in-memory config of
 * the upcycled model, which the forward pass reads as it is), and K = E
 * with gate_norm=topk (a valid config: the gates of all E identical
 * experts sum to 1). With K = 1 and no renormalisation the MoE block
 * scales the MLP by the gate (1/E for a zero router), so the features
 * must differ: the comparison can fail.
 */
#include <math.h>

#include "testutil.h"

/* Features (B, embed) of 2 images and 2 texts into img and txt. */
static void
features(const struct vlm_model *m, float *img, float *txt)
{
	const struct vlm_config *c = &m->cfg;
	int S = c->image_size, n = 2 * 3 * S * S;
	float *px = malloc(n * sizeof(float));
	int32_t *tok = calloc(2 * (size_t)c->context, sizeof(int32_t));
	struct vlm_run *r;
	struct vlm_rng g;

	vlm_rng_seed(&g, 3);
	for (int i = 0; i < n; i++)
		px[i] = (float)vlm_rng_normal(&g);
	for (int b = 0; b < 2; b++) {
		for (int t = 0; t < 5 + b; t++)
			tok[b * c->context + t] = 1 +
			    (int)vlm_rng_below(&g, 90);
		tok[b * c->context + 5 + b] = c->vocab - 1;
	}
	assert_non_null(r = vlm_run_new(m, 2, 2, 0));
	assert_int_equal(vlm_forward(r, m, px, tok), 0);
	memcpy(img, vlm_run_features(r, 0, 0), 2 * c->embed_dim * 4);
	memcpy(txt, vlm_run_features(r, 1, 0), 2 * c->embed_dim * 4);
	vlm_run_free(r);
	free(px);
	free(tok);
}

/* A random dense model of a preset with overrides. */
static void
dense_model(struct vlm_model *d, const char *preset, const char *set)
{
	struct vlm_config c;

	assert_int_equal(vlm_config_preset(&c, preset), 0);
	assert_int_equal(vlm_config_set(&c, "moe.experts=0"), 0);
	if (set)
		assert_int_equal(vlm_config_set(&c, set), 0);
	assert_int_equal(vlm_model_init(d, &c), 0);
	vlm_model_randomize(d, 11);
}

/* Upcycle d with E experts, top-K, gate normalisation gn, no dropping;
 * max relative error of both features against the dense ones. */
static double
upcycled_error(const struct vlm_model *d, int E, int K, int gn,
    int modality, double std)
{
	struct vlm_config c = d->cfg;
	struct vlm_model m;
	int n = 2 * c.embed_dim;
	float *a = malloc(4 * n * sizeof(float)), *b = a + 2 * n;
	double e1, e2;

	c.moe.experts = E, c.moe.top_k = 1;
	c.moe.cf_eval = c.moe.cf_train = 0; /* no dropping */
	c.moe.modality_experts = modality;
	assert_int_equal(vlm_model_upcycle(&m, d, &c, std, 5), 0);
	m.cfg.moe.top_k = K;       /* see the header: test-only settings */
	m.cfg.moe.gate_norm = gn;
	features(d, a, a + n);
	features(&m, b, b + n);
	e1 = rel_err(b, a, n);
	e2 = rel_err(b + n, a + n, n);
	vlm_model_release(&m);
	free(a);
	return e1 > e2 ? e1 : e2;
}

static void
test_equivalence(void **state)
{
	struct vlm_model d;
	double e;

	(void)state;
	dense_model(&d, "tiny", NULL);
	e = upcycled_error(&d, 4, 1, VLM_GATE_TOPK, 0, 0.02);
	print_message("two-tower K=1 renormalised: %.3g\n", e);
	assert_true(e < 1e-5);
	e = upcycled_error(&d, 4, 4, VLM_GATE_TOPK, 0, 0.02);
	print_message("two-tower K=E=4 topk: %.3g\n", e);
	assert_true(e < 1e-5);
	e = upcycled_error(&d, 4, 1, VLM_GATE_NONE, 0, 0);
	print_message("two-tower K=1 not renormalised: %.3g\n", e);
	assert_true(e > 1e-3);
	vlm_model_release(&d);
	dense_model(&d, "tiny-moe", NULL); /* one tower, shared blocks */
	e = upcycled_error(&d, 8, 1, VLM_GATE_TOPK, 0, 0.02);
	print_message("one-tower K=1 renormalised: %.3g\n", e);
	assert_true(e < 1e-5);
	e = upcycled_error(&d, 3, 1, VLM_GATE_TOPK, 1, 0.02);
	print_message("VL-MoE K=1 renormalised: %.3g\n", e);
	assert_true(e < 1e-5);
	vlm_model_release(&d);
}

/* Parameters: experts copy the MLP, routers N(0, std^2), rest equal. */
static void
test_parameters(void **state)
{
	struct vlm_model d, m, m2;
	struct vlm_config c;
	const struct vlm_block_off *o, *db;
	int E = 4, D = 128, F = 512;
	double s2 = 0;

	(void)state;
	dense_model(&d, "tiny", NULL);
	d.tokenizer = strdup("#version: 0.2\n");
	c = d.cfg;
	c.moe.experts = E, c.moe.last = 1;
	assert_int_equal(vlm_model_upcycle(&m, &d, &c, 0.01, 9), 0);
	assert_string_equal(m.tokenizer, d.tokenizer);
	for (int i = 0; i < m.nparams; i++) {
		const struct vlm_param *p = &m.params[i], *q;
		if (strstr(p->name, ".moe."))
			continue;
		assert_non_null(q = vlm_model_param(&d, p->name));
		assert_memory_equal(m.w + p->off, d.w + q->off, p->n * 4);
	}
	assert_false(m.vis.blocks[1].moe); /* --last 1: only block 3 */
	o = &m.vis.blocks[3], db = &d.vis.blocks[3];
	assert_int_equal(o->moe, 1);
	for (int e = 0; e < E; e++) {
		assert_memory_equal(m.w + o->efc_w[0] + (size_t)e * F * D,
		    d.w + db->fc_w, (size_t)F * D * 4);
		assert_memory_equal(m.w + o->eproj_b[0] + (size_t)e * D,
		    d.w + db->proj_b, (size_t)D * 4);
	}
	for (int i = 0; i < E * D; i++)
		s2 += (double)m.w[o->router[0] + i] * m.w[o->router[0] + i];
	s2 = sqrt(s2 / (E * D));
	assert_true(s2 > 0.009 && s2 < 0.011);
	/* the same seed gives the same routers */
	assert_int_equal(vlm_model_upcycle(&m2, &d, &c, 0.01, 9), 0);
	assert_memory_equal(m.w + o->router[0], m2.w + o->router[0], E * D * 4);
	vlm_model_release(&m2);
	/* already sparse; a config that changes another parameter */
	assert_int_equal(vlm_model_upcycle(&m2, &m, &c, 0.01, 9), -1);
	c.embed_dim = 32;
	assert_int_equal(vlm_model_upcycle(&m2, &d, &c, 0.01, 9), -1);
	assert_non_null(strstr(vlm_errmsg(), "changes parameter"));
	vlm_model_release(&m);
	vlm_model_release(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equivalence),
		cmocka_unit_test(test_parameters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
