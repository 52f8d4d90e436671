/*
 * test-backend-ops.c - the backend tables beyond single ops (the ops
 * themselves: tests/test-ops-*.c): every op of the table has exactly one
 * case in one family, the memory verbs round-trip on every backend, a
 * table missing an op is refused with its name, whole training steps
 * agree between backends (cuda too, skipped where it does not load),
 * and frozen parameters get no gradient.
 */
#include "ops-common.h"

/* Every op of the table has a case (a new op needs one). */
static void
test_every_op_has_a_case(void **state)
{
	(void)state;
	const struct op_family *fam[] = { &ops_dense, &ops_moe, &ops_input };

	for (int op = 0; op < VLM_OP_COUNT; op++) {
		int n = 0;
		for (int f = 0; f < 3; f++)
			for (int i = 0; i < fam[f]->n; i++)
				n += fam[f]->cases[i].op == (enum vlm_op)op;
		if (n != 1)
			fail_msg("op %s has %d cases", vlm_backend_op_name(op),
			    n);
	}
	for (int op = 0; op < VLM_OP_COUNT; op++) /* the CPU ones: all */
		assert_true(vlm_backend_has(vlm_backend_get("cpu"), op) &&
		    vlm_backend_has(vlm_backend_get("ref"), op));
	assert_string_equal(vlm_backend_at(0)->name, "cpu");
}

/* The memory verbs of be: a round trip, memset, copy, sync. */
static void
memory(const struct vlm_backend *be)
{
	{
		float h[37], g[37];
		float *d = be->alloc(sizeof(h)), *e = be->alloc(sizeof(h));
		assert_non_null(d), assert_non_null(e);
		be->download(g, d, sizeof(g)); /* alloc zero-fills */
		for (int i = 0; i < 37; i++)
			assert_true(g[i] == 0);
		for (int i = 0; i < 37; i++)
			h[i] = i * 0.5f - 3;
		be->upload(d, h, sizeof(h));
		be->copy(e, d, sizeof(h));
		be->memset(d + 5, 0, 7 * sizeof(float));
		be->download(g, e, sizeof(g));
		assert_memory_equal(g, h, sizeof(h));
		be->download(g, d, sizeof(g));
		for (int i = 0; i < 37; i++)
			assert_true(g[i] == (i >= 5 && i < 12 ? 0 : h[i]));
		assert_int_equal(be->sync(), 0);
		be->free(d), be->free(e);
	}
}

static void
test_memory(void **state)
{
	(void)state;
	for (int b = 0; vlm_backend_at(b); b++)
		memory(vlm_backend_at(b));
}

static void
test_memory_cuda(void **state)
{
	(void)state;
	memory(ops_cuda());
}

/* A table without an op is refused by name, never run. */
static void
test_missing_op(void **state)
{
	struct vlm_backend t = *vlm_backend_get("cpu");
	const enum vlm_op ops[] = { VLM_OP_linear_fwd, VLM_OP_linear_bwd };
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_run *r;

	(void)state;
	t.name = "partial";
	t.linear_bwd = NULL;
	assert_int_equal(vlm_backend_check(&t, ops, 1), 0);
	assert_int_equal(vlm_backend_check(&t, ops, 2), -1);
	assert_string_equal(vlm_errmsg(),
	    "backend 'partial' has no op 'linear_bwd'");
	tiny_grad_config(&c);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	r = vlm_run_new_on(&t, &m, 2, 2, 0); /* inference needs no bwd */
	assert_non_null(r);
	vlm_run_free(r);
	assert_null(vlm_run_new_on(&t, &m, 2, 2, 1));
	assert_string_equal(vlm_errmsg(),
	    "backend 'partial' has no op 'linear_bwd'");
	t.moe_route_fwd = NULL;
	assert_null(vlm_run_new_on(&t, &m, 2, 2, 0)); /* tiny-moe routes */
	assert_string_equal(vlm_errmsg(),
	    "backend 'partial' has no op 'moe_route_fwd'");
	setenv("VLM_BACKEND", "nosuch", 1);
	assert_null(vlm_run_new(&m, 2, 2, 0));
	assert_non_null(strstr(vlm_errmsg(), "unknown backend 'nosuch'"));
	unsetenv("VLM_BACKEND");
	vlm_model_release(&m);
}

/* Loss and gradient of one training step of model c on backend be. */
static void
train_step(const struct vlm_backend *be, const struct vlm_config *c,
    float *loss, float *grad)
{
	struct vlm_model m;
	struct vlm_run *r;
	struct vlm_loss L;
	int B = 5, S = c->image_size, T = c->context;
	struct vlm_rng g;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));

	vlm_rng_seed(&g, 7);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)vlm_rng_uniform(&g) - 0.5f;
	for (int b = 0; b < B; b++) { /* lengths 2..6: padded rows */
		for (int t = 0; t < 1 + b % 5; t++)
			ids[b * T + t] = 1 + (int)vlm_rng_below(&g,
			    c->vocab - 2);
		ids[b * T + 1 + b % 5] = c->vocab - 1;
	}
	assert_int_equal(vlm_model_init(&m, c), 0);
	vlm_model_randomize(&m, 3);
	r = vlm_run_new_on(be, &m, B, B, 1);
	assert_non_null(r);
	vlm_run_seed(r, 11);
	assert_int_equal(vlm_forward(r, &m, px, ids), 0);
	assert_int_equal(vlm_run_loss(r, &m, &L), 0);
	assert_int_equal(vlm_backward(r, &m, grad), 0);
	*loss = L.total;
	vlm_run_free(r);
	vlm_model_release(&m);
	free(px), free(ids);
}

/* Whole steps on be agree with ref: MoE with drops, TokenLearner, one
 * tower with modality experts, MAP pooling. */
static void
steps_agree(const struct vlm_backend *be)
{
	struct vlm_config c;

	for (int v = 0; v < 3; v++) {
		tiny_grad_config(&c);
		c.moe.cf_train = 0.5f, c.moe.min_capacity = 1; /* drops */
		if (v == 1) {
			c.tl.after = 0, c.tl.tokens = 3, c.tl.hidden = 5;
			c.vision.pool = VLM_POOL_MAP;
		}
		if (v == 2) {
			c.family = VLM_ONE_TOWER;
			c.moe.modality_experts = 1;
			c.text.pool = VLM_POOL_GAP;
		}
		struct vlm_model m;
		assert_int_equal(vlm_model_init(&m, &c), 0);
		int64_t n = m.nfloats;
		vlm_model_release(&m);
		float *g[2] = { malloc(n * 4), malloc(n * 4) }, L[2];
		train_step(be, &c, &L[0], g[0]);
		train_step(vlm_backend_get("ref"), &c, &L[1], g[1]);
		double el = fabs(L[0] - L[1]) / fabs(L[1]);
		double eg = rel_err(g[0], g[1], n);
		print_message("train step variant %d: loss %.6f %s / ref rel "
		    "err %.1e, gradient %.1e\n", v, L[1], be->name, el, eg);
		assert_true(el < 1e-5 && eg < 1e-4);
		free(g[0]), free(g[1]);
	}
}

static void
test_train_step_backends(void **state)
{
	(void)state;
	steps_agree(vlm_backend_get("cpu"));
}

static void
test_train_step_cuda(void **state)
{
	(void)state;
	steps_agree(ops_cuda());
}

/* The cpu table counting its linear backwards and the weight
 * gradients among them. */
static int nlinear, ndw;

static void
count_linear_bwd(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT)
{
	nlinear++;
	ndw += dw != NULL;
	vlm_linear_bwd_cpu(dx, dw, db, dy, x, w, N, IN, OUT);
}

/* Gradient of one step of model c with the parameters nograd marks
 * (NULL: none) left out. */
static void
freeze_step(const struct vlm_config *c, const uint8_t *nograd, float *grad)
{
	struct vlm_backend counting = *vlm_backend_get("cpu");
	struct vlm_model m;
	struct vlm_run *r;
	int B = 4, S = c->image_size, T = c->context;
	struct vlm_rng g;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));

	vlm_rng_seed(&g, 9);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)vlm_rng_uniform(&g) - 0.5f;
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < 2 + b; t++)
			ids[b * T + t] = 1 + (int)vlm_rng_below(&g,
			    c->vocab - 2);
		ids[b * T + 2 + b] = c->vocab - 1;
	}
	assert_int_equal(vlm_model_init(&m, c), 0);
	vlm_model_randomize(&m, 5);
	counting.linear_bwd = count_linear_bwd;
	assert_non_null(r = vlm_run_new_on(&counting, &m, B, B, 1));
	assert_int_equal(vlm_run_freeze(r, &m, nograd), 0);
	nlinear = ndw = 0;
	vlm_run_seed(r, 3);
	assert_int_equal(vlm_forward(r, &m, px, ids), 0);
	assert_int_equal(vlm_run_loss(r, &m, NULL), 0);
	assert_int_equal(vlm_backward(r, &m, grad), 0);
	vlm_run_free(r);
	vlm_model_release(&m);
	free(px), free(ids);
}

/* Frozen parameters get exactly 0, every other one exactly the
 * gradient of the full backward: locked towers, a frozen bottom, one
 * frozen layer in the middle, every other parameter. */
static void
test_freeze(void **state)
{
	struct vlm_config c;
	struct vlm_model m;

	(void)state;
	for (int v = 0; v < 3; v++)
	for (int mask = 0; mask < 5; mask++) {
		tiny_grad_config(&c);
		c.vision.layers = c.text.layers = 3;
		c.family = v == 2 ? VLM_ONE_TOWER : VLM_TWO_TOWER;
		if (v >= 1) { /* a cut after block 1, its own stack above */
			c.tl.after = 1, c.tl.tokens = 3, c.tl.hidden = 5;
			c.vision.pool = VLM_POOL_MAP;
		}
		if (vlm_model_init(&m, &c) < 0)
			fail_msg("%s", vlm_errmsg());
		uint8_t *ng = calloc(m.nparams, 1);
		for (int i = 0; i < m.nparams; i++) {
			const char *n = m.params[i].name;
			int vis = strncmp(n, "visual.", 7) == 0;
			int b0 = strstr(n, "resblocks.0.") != NULL;
			int b1 = strstr(n, "resblocks.1.") != NULL;
			int top = strstr(n, "resblocks") ||
			    strstr(n, "ln_post") || strstr(n, "ln_final") ||
			    strstr(n, "proj") || strstr(n, "logit_scale") ||
			    strstr(n, "map") || strstr(n, "token_learner");
			ng[i] = mask == 0 ? vis : mask == 1 ? !vis :
			    mask == 2 ? !top || b0 : mask == 3 ? b1 : i % 2;
		}
		int64_t n = m.nfloats;
		float *full = malloc(n * 4), *part = malloc(n * 4);
		freeze_step(&c, NULL, full);
		int nl = nlinear, nw = ndw;
		freeze_step(&c, ng, part);
		int off = 0, diff = 0;
		for (int i = 0; i < m.nparams; i++) {
			const struct vlm_param *p = &m.params[i];
			for (int64_t j = 0; j < p->n; j++) {
				float want = ng[i] ? 0 : full[p->off + j];
				off += ng[i] && part[p->off + j] != 0;
				diff += !ng[i] && part[p->off + j] != want;
			}
		}
		print_message("freeze variant %d mask %d: %d frozen values "
		    "non-zero, %d others differ; linear backwards %d -> %d, "
		    "weight gradients %d -> %d\n", v, mask, off, diff, nl,
		    nlinear, nw, ndw);
		assert_int_equal(off, 0);
		assert_int_equal(diff, 0);
		assert_true(ndw < nw);
		/* a locked tower of its own is not differentiated at all */
		assert_true(v == 2 || mask > 1 || nlinear < nl);
		free(full), free(part), free(ng);
		vlm_model_release(&m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_op_has_a_case),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_memory_cuda),
		cmocka_unit_test(test_missing_op),
		cmocka_unit_test(test_train_step_backends),
		cmocka_unit_test(test_train_step_cuda),
		cmocka_unit_test(test_freeze),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

