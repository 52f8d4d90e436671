/*
 * test-lora.c - LoRA adapters (libcore/model/lora.c) on a tiny dense CLIP and a
 * tiny VL-MoE (stacked experts, per-modality pools): the table keeps the
 * plain model's offsets; merging is base + s B A by plain loops; the
 * adapter gradient matches the same loops on a random dW and central
 * finite differences of the whole model's loss; a fresh adapted model
 * (B = 0) computes its base's loss exactly; merged models and views run
 * alike; files round-trip; vlm_lora_add() keeps the base.
 */
#include <math.h>

#include "testutil.h"

#define B 3

/* rank 0: plain; moe: VL-MoE with E = 4, K = 2, every block MoE */
static void
tiny(struct vlm_config *c, int moe, int rank)
{
	tiny_grad_config(c);
	c->vision.mlp_ratio = c->text.mlp_ratio = 2;
	c->moe.experts = moe ? 4 : 0, c->moe.top_k = 2, c->moe.every = 1;
	c->moe.gate_norm = VLM_GATE_TOPK;
	c->moe.modality_experts = moe;
	if (!moe)
		c->family = VLM_TWO_TOWER;
	c->lora.rank = rank;
	c->lora.alpha = 2.0f * rank; /* s = 2 */
}

static void
model(struct vlm_model *m, int moe, int rank)
{
	struct vlm_config c;

	tiny(&c, moe, rank);
	assert_int_equal(vlm_model_init(m, &c), 0);
	vlm_model_randomize(m, 3);
}

/* Every B drawn too, so that the adapters change the model. */
static void
perturb_b(struct vlm_model *m)
{
	struct vlm_rng r;

	vlm_rng_seed(&r, 17);
	for (int i = vlm_lora_first(m) + 1; i < m->nparams; i += 2)
		for (int64_t j = 0; j < m->params[i].n; j++)
			m->w[m->params[i].off + j] = (float)(0.2 *
			    vlm_rng_normal(&r));
}

struct batch {
	float img[B * 3 * 16 * 16];
	int32_t ids[B * 7];
};

static void
batch(struct batch *b)
{
	struct vlm_rng rng;

	vlm_rng_seed(&rng, 11);
	memset(b->ids, 0, sizeof(b->ids));
	for (size_t i = 0; i < sizeof(b->img) / sizeof(*b->img); i++)
		b->img[i] = (float)vlm_rng_normal(&rng);
	for (int k = 0; k < B; k++) {  /* lengths 3..5, EOT = largest id */
		for (int t = 0; t < 2 + k; t++)
			b->ids[k * 7 + t] = 1 + vlm_rng_below(&rng, 37);
		b->ids[k * 7 + 2 + k] = 39;
	}
}

/* FNV-1a over every MoE layer's choices and kept flags */
static uint64_t
route_hash(const struct vlm_run *r, const struct vlm_model *m)
{
	uint64_t h = 1469598103934665603ULL;
	struct vlm_route_view v;

	for (int t = 0; t < 2; t++)
		for (int l = 0; l < m->cfg.text.layers; l++)
			for (int p = 0; p < 2; p++) {
				if (vlm_run_route(r, t, l, p, &v) < 0)
					continue;
				for (int i = 0; i < v.S * m->cfg.moe.top_k; i++)
					h = (h ^ (uint64_t)(v.idx[i] * 2 +
					    v.keep[i])) * 1099511628211ULL;
			}
	return h;
}

/* The loss of a batch (router noise re-drawn alike); routes its hash. */
static double
loss(struct vlm_run *r, const struct vlm_model *m, const struct batch *b,
    uint64_t *routes)
{
	struct vlm_loss L;

	vlm_run_seed(r, 7);
	assert_int_equal(vlm_forward(r, m, b->img, b->ids), 0);
	assert_int_equal(vlm_run_loss(r, m, &L), 0);
	if (routes)
		*routes = route_hash(r, m);
	return L.total;
}

/* The weight W a pair (A at index i) adapts; E, OUT, IN, r of it. */
static const struct vlm_param *
target(const struct vlm_model *m, int i, int *E, int *OUT, int *IN, int *r)
{
	const struct vlm_param *a = &m->params[i], *w;
	char name[96];

	snprintf(name, sizeof(name), "%.*s", (int)strlen(a->name) - 7,
	    a->name);
	assert_non_null(w = vlm_model_param(m, name));
	*E = w->ndim == 3 ? w->shape[0] : 1;
	*OUT = w->shape[w->ndim - 2];
	*IN = w->shape[w->ndim - 1];
	*r = m->cfg.lora.rank;
	return w;
}

/* The table: base part as the plain model's, one pair per target. */
static void
check_table(int moe)
{
	struct vlm_model p, m;
	int first, pairs = 0, targets = 0;

	model(&p, moe, 0);
	model(&m, moe, 3);
	first = vlm_lora_first(&m);
	assert_int_equal(first, p.nparams);
	assert_int_equal(vlm_lora_first(&p), p.nparams);
	for (int i = 0; i < p.nparams; i++) {
		assert_string_equal(m.params[i].name, p.params[i].name);
		assert_true(m.params[i].off == p.params[i].off);
		targets += vlm_lora_target(&m.cfg, p.params[i].name);
	}
	assert_memory_equal(m.w, p.w, p.nfloats * sizeof(float));
	for (int i = first; i < m.nparams; i += 2) {
		int E, O, I, r;
		const struct vlm_param *w = target(&m, i, &E, &O, &I, &r);
		assert_true(vlm_lora_target(&m.cfg, w->name));
		assert_true(m.params[i].n == (int64_t)E * r * I);
		assert_true(m.params[i + 1].n == (int64_t)E * O * r);
		assert_true(m.params[i].decay && m.params[i + 1].decay);
		for (int64_t j = 0; j < m.params[i + 1].n; j++)
			assert_true(m.w[m.params[i + 1].off + j] == 0.0f);
		pairs++;
	}
	/* per block: attention 2 + MLP 2 (dense, 4 blocks) or 2 expert
	 * pools 2 each (one-tower VL-MoE, 2 blocks) */
	assert_int_equal(pairs, targets);
	assert_int_equal(pairs, moe ? 2 * (2 + 2 * 2) : 4 * (2 + 2));
	vlm_model_release(&p);
	vlm_model_release(&m);
}

static void
test_table(void **state)
{
	struct vlm_config c;
	struct vlm_model m;

	(void)state;
	check_table(0);
	check_table(1);
	tiny(&c, 1, 2);
	c.lora.targets = VLM_LORA_ATTN;
	assert_int_equal(vlm_model_init(&m, &c), 0);
	for (int i = vlm_lora_first(&m); i < m.nparams; i++)
		assert_non_null(strstr(m.params[i].name, ".attn."));
	assert_int_equal(m.nparams - vlm_lora_first(&m), 2 * 2 * 2);
	vlm_model_release(&m);
	assert_false(vlm_lora_target(&c,
	    "visual.attn_pool.attn.in_proj_weight"));
	c.lora.rank = -1;
	assert_int_equal(vlm_config_check(&c), -1);
}

/* err[0] = max |got - ref|, err[1] = max |ref| so far. */
static void
track(double *err, double got, double ref)
{
	err[0] = fmax(err[0], fabs(got - ref));
	err[1] = fmax(err[1], fabs(ref));
}

/* One matrix: got (O,I) against W + s B A by loops in double. */
static void
merge_ref(double *err, const float *got, const float *W, const float *Bm,
    const float *A, int O, int I, int r, double s)
{
	for (int o = 0; o < O; o++)
		for (int k = 0; k < I; k++) {
			double ref = W[o * I + k];
			for (int q = 0; q < r; q++)
				ref += s * Bm[o * r + q] * A[q * I + k];
			track(err, got[o * I + k], ref);
		}
}

/* One matrix: dA (r,I) against s B^T G, dB (O,r) against s G A^T. */
static void
grad_ref(double *err, const float *dA, const float *dB, const float *G,
    const float *Bm, const float *A, int O, int I, int r, double s)
{
	for (int q = 0; q < r; q++) {
		for (int k = 0; k < I; k++) {
			double ref = 0;
			for (int o = 0; o < O; o++)
				ref += s * Bm[o * r + q] * G[o * I + k];
			track(err, dA[q * I + k], ref);
		}
		for (int o = 0; o < O; o++) {
			double ref = 0;
			for (int k = 0; k < I; k++)
				ref += s * G[o * I + k] * A[q * I + k];
			track(err, dB[o * r + q], ref);
		}
	}
}

/* merge_into against the loops, per expert for stacked experts. */
static void
check_merge(int moe)
{
	struct vlm_model m;
	double err[2] = { 0, 0 };
	float *w;
	int first;

	model(&m, moe, 3);
	perturb_b(&m);
	assert_true(vlm_lora_scale(&m.cfg) == 2.0f);
	first = vlm_lora_first(&m);
	assert_non_null(w = malloc(m.params[first].off * sizeof(float)));
	vlm_lora_merge_into(&m, w);
	for (int i = 0; i < first; i++) /* not adapted: copied */
		if (!vlm_lora_target(&m.cfg, m.params[i].name))
			assert_memory_equal(w + m.params[i].off,
			    m.w + m.params[i].off, m.params[i].n * 4);
	for (int i = first; i < m.nparams; i += 2) {
		int E, O, I, r;
		const struct vlm_param *p = target(&m, i, &E, &O, &I, &r);
		int64_t a = m.params[i].off, b = m.params[i + 1].off;
		for (int e = 0; e < E; e++)
			merge_ref(err, w + p->off + e * O * I,
			    m.w + p->off + e * O * I, m.w + b + e * O * r,
			    m.w + a + e * r * I, O, I, r, 2.0);
	}
	print_message("merge (%s): rel err %.2e\n", moe ? "moe" : "dense",
	    err[0] / err[1]);
	assert_true(err[0] / err[1] < 1e-6);
	free(w);
	vlm_model_release(&m);
}

static void
test_merge(void **state)
{
	(void)state;
	check_merge(0);
	check_merge(1);
}

/* vlm_lora_grad on a random dW against the loops; base part zeroed. */
static void
check_grad_algebra(int moe)
{
	struct vlm_model m;
	struct vlm_rng rng;
	double err[2] = { 0, 0 };
	float *g, *dw;
	int first;

	model(&m, moe, 3);
	perturb_b(&m);
	first = vlm_lora_first(&m);
	assert_non_null(g = malloc(m.nfloats * sizeof(float)));
	assert_non_null(dw = malloc(m.nfloats * sizeof(float)));
	vlm_rng_seed(&rng, 5);
	for (int64_t j = 0; j < m.nfloats; j++) /* adapters' overwritten */
		dw[j] = g[j] = (float)vlm_rng_normal(&rng);
	vlm_lora_grad(&m, g);
	for (int64_t j = 0; j < m.params[first].off; j++)
		assert_true(g[j] == 0.0f);
	for (int i = first; i < m.nparams; i += 2) {
		int E, O, I, r;
		const struct vlm_param *p = target(&m, i, &E, &O, &I, &r);
		int64_t a = m.params[i].off, b = m.params[i + 1].off;
		for (int e = 0; e < E; e++)
			grad_ref(err, g + a + e * r * I, g + b + e * O * r,
			    dw + p->off + e * O * I, m.w + b + e * O * r,
			    m.w + a + e * r * I, O, I, r, 2.0);
	}
	print_message("adapter grad (%s): rel err %.2e\n",
	    moe ? "moe" : "dense", err[0] / err[1]);
	assert_true(err[0] / err[1] < 1e-6);
	free(dw);
	free(g);
	vlm_model_release(&m);
}

static void
test_grad_algebra(void **state)
{
	(void)state;
	check_grad_algebra(0);
	check_grad_algebra(1);
}

/* The whole model: backward on the view, then vlm_lora_grad, against
 * central differences of the loss in a few entries of every A and B
 * (probes that change the routing are skipped, as test-model-grad). */
static void
check_grad_fd(int moe)
{
	struct vlm_model m, v;
	struct batch b;
	struct vlm_run *r;
	struct vlm_rng rng;
	float *g;
	int probes = 0, bad = 0, skipped = 0;

	model(&m, moe, 2);
	perturb_b(&m);
	batch(&b);
	assert_int_equal(vlm_lora_view_init(&v, &m), 0);
	assert_non_null(r = vlm_run_new(&v, B, B, 1));
	uint64_t h0, hp, hm;
	loss(r, &v, &b, &h0);
	assert_non_null(g = malloc(m.nfloats * sizeof(float)));
	assert_int_equal(vlm_backward(r, &v, g), 0);
	vlm_lora_grad(&m, g);
	vlm_rng_seed(&rng, 23);
	for (int i = vlm_lora_first(&m); i < m.nparams; i++) {
		const struct vlm_param *p = &m.params[i];
		for (int k = 0; k < 2; k++) {
			int64_t j = p->off + vlm_rng_below(&rng, p->n);
			float w0 = m.w[j], h = 1e-2f;
			m.w[j] = w0 + h;
			vlm_lora_merge_into(&m, v.w);
			double lp = loss(r, &v, &b, &hp);
			m.w[j] = w0 - h;
			vlm_lora_merge_into(&m, v.w);
			double lm = loss(r, &v, &b, &hm);
			m.w[j] = w0;
			if (hp != h0 || hm != h0) { /* routing moved */
				skipped++;
				continue;
			}
			double fd = (lp - lm) / (2 * h), an = g[j];
			probes++;
			if (fabs(fd - an) / fmax(fabs(an), 5e-2) > 2e-2) {
				bad++;
				print_message("%s[%lld]: analytic %.6g fd "
				    "%.6g\n", p->name, (long long)(j - p->off),
				    an, fd);
			}
		}
	}
	print_message("%s: %d probes, %d off, %d skipped\n",
	    moe ? "moe" : "dense", probes, bad, skipped);
	assert_int_equal(bad, 0);
	assert_true(skipped <= probes / 10);
	free(g);
	vlm_run_free(r);
	vlm_lora_view_release(&v);
	vlm_model_release(&m);
}

static void
test_grad_fd(void **state)
{
	(void)state;
	check_grad_fd(0);
	check_grad_fd(1);
}

/* B = 0: exactly the base's loss; merged and view run alike; a model
 * with adapters is refused by the forward. */
static void
check_runs(int moe)
{
	struct vlm_model p, m, v;
	struct batch b;
	struct vlm_run *r;

	model(&p, moe, 0);
	model(&m, moe, 4);
	batch(&b);
	assert_int_equal(vlm_lora_view_init(&v, &m), 0);
	assert_non_null(r = vlm_run_new(&p, B, B, 1));
	double base = loss(r, &p, &b, NULL), fresh = loss(r, &v, &b, NULL);
	print_message("base %.9g, fresh adapters %.9g\n", base, fresh);
	assert_true(base == fresh);
	assert_int_equal(vlm_forward(r, &m, b.img, b.ids), -1);
	assert_non_null(strstr(vlm_errmsg(), "merge-lora"));
	perturb_b(&m);
	vlm_lora_merge_into(&m, v.w);
	double viewed = loss(r, &v, &b, NULL);
	assert_int_equal(vlm_lora_merge(&m), 0);
	assert_int_equal(m.nparams, p.nparams);
	assert_true(m.nfloats == p.nfloats);
	assert_int_equal(m.cfg.lora.rank, 0);
	for (int i = 0; i < m.nparams; i++)
		assert_null(strstr(m.params[i].name, "lora"));
	double merged = loss(r, &m, &b, NULL);
	print_message("view %.9g, merged %.9g\n", viewed, merged);
	assert_true(viewed == merged && viewed != base);
	assert_int_equal(vlm_lora_merge(&p), 0); /* none: no-op */
	assert_int_equal(p.nparams, m.nparams);
	vlm_run_free(r);
	vlm_lora_view_release(&v);
	vlm_model_release(&p);
	vlm_model_release(&m);
}

static void
test_runs(void **state)
{
	(void)state;
	check_runs(0);
	check_runs(1);
}

/* Save and load an adapted model; merge the loaded one and compare it
 * with merging in memory; the merged file has no adapter. */
static void
test_files(void **state)
{
	struct vlm_model m, l, mm;
	char path[4200], path2[4200];

	(void)state;
	model(&m, 1, 3);
	perturb_b(&m);
	snprintf(path, sizeof(path), "%s/a.safetensors", test_tmpdir());
	snprintf(path2, sizeof(path2), "%s/m.safetensors", test_tmpdir());
	assert_int_equal(vlm_model_save(&m, path), 0);
	assert_int_equal(vlm_model_load(&l, path), 0);
	assert_int_equal(l.cfg.lora.rank, 3);
	assert_true(l.cfg.lora.alpha == 6.0f);
	assert_int_equal(l.nparams, m.nparams);
	assert_memory_equal(l.w, m.w, m.nfloats * sizeof(float));
	assert_int_equal(vlm_lora_merge(&l), 0);
	assert_int_equal(vlm_model_save(&l, path2), 0);
	assert_int_equal(vlm_model_load(&mm, path2), 0);
	assert_int_equal(mm.cfg.lora.rank, 0);
	assert_int_equal(mm.nparams, vlm_lora_first(&m));
	for (int i = 0; i < mm.nparams; i++)
		assert_null(strstr(mm.params[i].name, "lora"));
	assert_int_equal(vlm_lora_merge(&m), 0);
	assert_memory_equal(mm.w, m.w, m.nfloats * sizeof(float));
	vlm_model_release(&m);
	vlm_model_release(&l);
	vlm_model_release(&mm);
}

/* Adapters added to a loaded plain model: base kept, B = 0; refused on
 * a config changing the base, and on a model with adapters. */
static void
test_add(void **state)
{
	struct vlm_model p, q;
	struct vlm_config c;

	(void)state;
	model(&p, 1, 0);
	model(&q, 1, 0);
	c = p.cfg;
	c.lora.rank = 2;
	c.lora.targets = VLM_LORA_MLP;
	assert_int_equal(vlm_lora_add(&p, &c, 9), 0);
	assert_int_equal(p.cfg.lora.rank, 2);
	assert_int_equal(vlm_lora_first(&p), q.nparams);
	assert_memory_equal(p.w, q.w, q.nfloats * sizeof(float));
	for (int i = vlm_lora_first(&p); i < p.nparams; i++) {
		assert_null(strstr(p.params[i].name, ".attn."));
		for (int64_t j = 0; j < p.params[i].n; j++)
			assert_true((i - q.nparams) % 2 == 0 ||
			    p.w[p.params[i].off + j] == 0.0f);
	}
	assert_int_equal(vlm_lora_add(&p, &c, 9), -1);
	c = q.cfg;
	c.lora.rank = 2;
	c.vision.width = c.text.width = 32;
	assert_int_equal(vlm_lora_add(&q, &c, 9), -1);
	assert_non_null(strstr(vlm_errmsg(), "base parameters"));
	vlm_model_release(&p);
	vlm_model_release(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_grad_algebra),
		cmocka_unit_test(test_grad_fd),
		cmocka_unit_test(test_runs),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_add),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
