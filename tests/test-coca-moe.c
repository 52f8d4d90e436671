/*
 * test-coca-moe.c - CoCa with MoE decoder FFNs (model/coca-moe.c,
 * coca-new.c): the gradient of CoCaLoss against central finite
 * differences for the router, the experts and the tensors around them
 * (a tiny random model, both decoder blocks sparse) and for LoRA
 * adapters on its decoder's attention and FFNs; an upcycled model
 * computes what the dense one does (logits, greedy caption) and keeps
 * its config on a save and load; init and upcycle refuse bad shapes.
 * vlm_coca_merge_lora folds trained (non-zero) adapters into the
 * weights: the merged file's decoder hidden states equal the adapted
 * model's to 1e-5.
 * The routers' importance loss (c->aux_importance): with top-1 routing
 * the router's gradient comes from it alone, checked against finite
 * differences of vlm_coca_grad's total, and a few AdamW steps move the
 * routers only when it is on.
 */
#include <math.h>

#include "testutil.h"
#include "model/coca.h"
#include "train/train.h"

/* A tiny random CoCa (vocab 40, context 8, width 16) with MoE in every
 * decoder block (E experts, top-K) into c; path in tmp. */
static void
tiny(struct vlm_coca *c, int E, int K, uint64_t seed)
{
	struct vlm_coca_shape s;
	char path[4200];

	vlm_coca_shape_preset(&s);
	const char *kv[] = { "embed_dim=16", "image_size=16", "vision.width=16",
		"pooler.queries=5", "pooler.heads=2", "context=8", "vocab=40",
		"mlp_ratio=2" };
	for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++)
		assert_int_equal(vlm_coca_shape_set(&s, kv[i]), 0);
	s.moe_experts = E, s.moe_top_k = K, s.moe_every = 1;
	snprintf(path, sizeof(path), "%s/tiny-%d.safetensors", test_tmpdir(),
	    E);
	if (vlm_coca_create(path, &s, seed, NULL) < 0 ||
	    vlm_coca_load(c, path, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(c->Ed, E);
	assert_int_equal(c->Kd, K);
}

/* Random images (B,3,S,S) and texts (B,T): SOT, tokens, EOT, pads. */
static void
batch(const struct vlm_coca *c, int B, float *img, int32_t *ids,
    struct vlm_rng *r)
{
	for (int i = 0; i < B * 3 * c->S * c->S; i++)
		img[i] = (float)vlm_rng_normal(r);
	for (int b = 0; b < B; b++) {
		int32_t *t = ids + b * c->T;
		int n = 3 + b % 3;
		memset(t, 0, c->T * sizeof(*t));
		t[0] = c->V - 2;
		for (int j = 1; j < n; j++)
			t[j] = 1 + (int32_t)(vlm_rng_u64(r) % (c->V - 3));
		t[n] = c->V - 1;
	}
}

/* Every decoder router N(0, 1) (writable tensors: vlm_coca_params). */
static void
random_routers(struct vlm_coca *c, struct vlm_rng *r)
{
	for (int l = 0; l < c->Ld; l++) {
		struct vlm_tensor *t = &c->st.tensors[vlm_coca_index(c,
		    "text_decoder.resblocks.%d.mlp.router.weight", l)];
		for (int64_t i = 0; i < vlm_tensor_numel(t); i++)
			((float *)t->data)[i] = (float)vlm_rng_normal(r);
	}
}

/* tiny(c, 4, K, seed) as a parameter table m, routers N(0, 1) and a
 * batch of B (malloc'ed) from seed rs. */
static void
routed(struct vlm_coca *c, struct vlm_model *m, int K, uint64_t seed,
    uint64_t rs, int B, float **img, int32_t **ids)
{
	struct vlm_rng r;

	tiny(c, 4, K, seed);
	assert_int_equal(vlm_coca_params(c, m), 0);
	vlm_rng_seed(&r, rs);
	random_routers(c, &r);
	*img = malloc((size_t)B * 3 * c->S * c->S * sizeof(float));
	*ids = malloc((size_t)B * c->T * sizeof(**ids));
	batch(c, B, *img, *ids, &r);
}

/* Every adapter's B N(0, 0.05^2) ("trained"), the weights synced. */
static void
random_lora_b(struct vlm_coca *c, struct vlm_rng *r)
{
	for (int k = 0; k < c->nlora; k++) {
		struct vlm_tensor *t = &c->st.tensors[c->lora[k].b];
		for (int64_t i = 0; i < vlm_tensor_numel(t); i++)
			((float *)t->data)[i] = (float)(0.05 *
			    vlm_rng_normal(r));
	}
	vlm_coca_lora_sync(c);
}

static double
loss_of(const struct vlm_coca *c, const float *img, const int32_t *ids,
    int B)
{
	struct vlm_coca_loss l;

	assert_int_equal(vlm_coca_loss(c, img, ids, B, 2.0f, 1.0f, &l), 0);
	return l.total;
}

static void
test_moe_fd(void **state)
{
	struct vlm_coca c;
	struct vlm_coca_loss l;
	struct vlm_model m; /* the tensors, writable */
	int B = 3, checked = 0;
	const char *names[] = {
		"text_decoder.resblocks.0.mlp.router.weight",
		"text_decoder.resblocks.1.mlp.router.weight",
		"text_decoder.resblocks.0.mlp.experts.c_fc.weight",
		"text_decoder.resblocks.1.mlp.experts.c_fc.bias",
		"text_decoder.resblocks.1.mlp.experts.c_proj.weight",
		"text_decoder.resblocks.0.mlp.experts.c_proj.bias",
		"text_decoder.resblocks.1.ln_2.weight",
		"text_decoder.cross_attn.0.attn.in_proj_weight",
		"text.transformer.resblocks.1.mlp.c_fc.weight",
		"visual.attn_pool.attn.k_proj_weight",
	};

	(void)state;
	/* routers far from zero: an FD step must not flip a choice */
	float *img;
	int32_t *ids;
	routed(&c, &m, 2, 7, 11, B, &img, &ids);
	float **g = vlm_coca_grads_new(&c);
	assert_int_equal(vlm_coca_grad(&c, img, ids, B, 2.0f, 1.0f, g, &l), 0);
	assert_true(fabs(l.total - loss_of(&c, img, ids, B)) < 1e-5 * l.total);
	for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
		int i = vlm_coca_index(&c, "%s", names[k]);
		float *w = c.st.tensors[i].data;
		int64_t n = vlm_tensor_numel(&c.st.tensors[i]), big = 0;
		double worst = 0, gmax = 0;
		for (int64_t j = 0; j < n; j++)
			if (fabs(g[i][j]) > fabs(g[i][big]))
				big = j;
		gmax = fabs(g[i][big]);
		if (!(gmax > 0))
			print_message("%s: zero gradient\n", names[k]);
		assert_true(gmax > 0);
		/* the largest entry and 7 more spread over the tensor */
		for (int s = 0; s < 8; s++) {
			int64_t j = s ? (big + s * (n / 8 + 1)) % n : big;
			/* a step of 1e-2 flips routing choices */
			float save = w[j], h = 1e-3f;
			w[j] = save + h;
			double fp = loss_of(&c, img, ids, B);
			w[j] = save - h;
			double fm = loss_of(&c, img, ids, B);
			w[j] = save;
			double fd = (fp - fm) / (2 * h);
			worst = fmax(worst, fabs(fd - g[i][j]) / gmax);
			checked++;
		}
		print_message("%-52s max |fd - grad| / max|grad| %.1e\n",
		    names[k], worst);
		assert_true(worst < 2e-2);
	}
	print_message("%d entries checked\n", checked);
	vlm_coca_grads_free(&c, g);
	free(img), free(ids);
	vlm_coca_release(&c);
	vlm_model_release(&m);
}

/* LoRA adapters (model/coca-lora.c) on the MoE decoder: the adapters'
 * gradients against finite differences, B made non-zero first. */
static void
test_lora_fd(void **state)
{
	struct vlm_coca c0, c;
	struct vlm_model m;
	struct vlm_rng r;
	struct vlm_coca_loss l;
	char path[4200];
	int B = 3;
	const char *names[] = {
		"text_decoder.resblocks.0.attn.in_proj_weight.lora_a",
		"text_decoder.resblocks.1.attn.out_proj.weight.lora_b",
		"text_decoder.cross_attn.0.attn.in_proj_weight.lora_b",
		"text_decoder.cross_attn.1.mlp.c_fc.weight.lora_a",
		"text_decoder.resblocks.1.mlp.experts.c_fc.weight.lora_a",
		"text_decoder.resblocks.0.mlp.experts.c_proj.weight.lora_b",
	};

	(void)state;
	tiny(&c0, 4, 2, 9);
	snprintf(path, sizeof(path), "%s/lora.safetensors", test_tmpdir());
	assert_int_equal(vlm_coca_add_lora(&c0, path, 3, 6.0, 1, NULL), 0);
	if (vlm_coca_load(&c, path, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(c.lora_rank, 3);
	assert_true(c.lora_scale == 2.0f);
	assert_int_equal(c.nlora, 2 * 2 * 4); /* 2 layers x 2 blocks x 4 */
	assert_int_equal(vlm_coca_params(&c, &m), 0);
	vlm_rng_seed(&r, 3);
	float *img = malloc((size_t)B * 3 * c.S * c.S * sizeof(float));
	int32_t *ids = malloc((size_t)B * c.T * sizeof(*ids));
	batch(&c, B, img, ids, &r);
	/* B = 0: the same function as without adapters */
	assert_true(fabs(loss_of(&c, img, ids, B) - loss_of(&c0, img, ids, B))
	    < 1e-6);
	random_lora_b(&c, &r);
	assert_true(fabs(loss_of(&c, img, ids, B) - loss_of(&c0, img, ids, B))
	    > 1e-4);
	float **g = vlm_coca_grads_new(&c);
	assert_int_equal(vlm_coca_grad(&c, img, ids, B, 2.0f, 1.0f, g, &l), 0);
	for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
		int i = vlm_coca_index(&c, "%s", names[k]);
		float *w = c.st.tensors[i].data;
		int64_t n = vlm_tensor_numel(&c.st.tensors[i]), big = 0;
		double worst = 0, gmax;
		for (int64_t j = 0; j < n; j++)
			if (fabs(g[i][j]) > fabs(g[i][big]))
				big = j;
		gmax = fabs(g[i][big]);
		assert_true(gmax > 0);
		for (int s = 0; s < 6; s++) {
			int64_t j = s ? (big + s * (n / 6 + 1)) % n : big;
			float save = w[j], h = 1e-3f;
			w[j] = save + h;
			vlm_coca_lora_sync(&c);
			double fp = loss_of(&c, img, ids, B);
			w[j] = save - h;
			vlm_coca_lora_sync(&c);
			double fm = loss_of(&c, img, ids, B);
			w[j] = save;
			vlm_coca_lora_sync(&c);
			worst = fmax(worst, fabs((fp - fm) / (2 * h) - g[i][j]) /
			    gmax);
		}
		print_message("%-58s max |fd - grad| / max|grad| %.1e\n",
		    names[k], worst);
		assert_true(worst < 2e-2);
	}
	/* a save writes the base weights and the adapters: it reloads to
	 * the same function */
	snprintf(path, sizeof(path), "%s/lora2.safetensors", test_tmpdir());
	assert_int_equal(vlm_coca_save(&c, path, NULL), 0);
	struct vlm_coca d;
	if (vlm_coca_load(&d, path, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_true(fabs(loss_of(&c, img, ids, B) - loss_of(&d, img, ids, B))
	    < 1e-6);
	vlm_coca_release(&d);
	vlm_coca_grads_free(&c, g);
	free(img), free(ids);
	vlm_coca_release(&c);
	vlm_model_release(&m);
	vlm_coca_release(&c0);
}

/* Upcycled from the OpenCLIP fixture: the same logits and caption. */
static void
test_upcycle_same_function(void **state)
{
	struct vlm_coca c, u;
	struct vlm_tensor img;
	char w[4096], cf[4096], path[4200];
	int32_t a[20], b[20];

	(void)state;
	snprintf(w, sizeof(w), "%s", fixture("openclip-coca-tiny/"
	    "weights.openclip.safetensors"));
	snprintf(cf, sizeof(cf), "%s", fixture("openclip-coca-tiny/"
	    "open_clip_config.json"));
	NEED_FIXTURE(w);
	if (vlm_coca_load(&c, w, cf) < 0 || vlm_npy_load(fixture(
	    "openclip-coca-tiny/image_input.npy"), &img) < 0)
		fail_msg("%s", vlm_errmsg());
	snprintf(path, sizeof(path), "%s/up.safetensors", test_tmpdir());
	assert_int_equal(vlm_coca_upcycle(&c, path, 4, 2, 1, 1e-3, 5, NULL),
	    0);
	if (vlm_coca_load(&u, path, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(u.Ed, 4);
	assert_int_equal(u.Kd, 2);
	assert_int_equal(u.Hd, c.Hd);
	assert_int_equal(u.st.n, c.st.n + 2 * 1); /* + a router a block */
	assert_int_equal(vlm_coca_moe_at(&u, "text_decoder.resblocks.0"), 1);
	assert_int_equal(vlm_coca_moe_at(&u, "text_decoder.cross_attn.0"), 0);
	/* decoder hidden states of one text through both */
	int n = 10, M = c.Q - 1, E = c.E;
	int32_t ids[10] = { 49406, 320, 1929, 539, 518, 2866, 49407 };
	float *embs = malloc((size_t)M * E * sizeof(float)), f[32];
	float *tok = malloc((size_t)n * E * sizeof(float));
	float *h1 = malloc((size_t)n * E * sizeof(float));
	float *h2 = malloc((size_t)n * E * sizeof(float));
	assert_int_equal(vlm_coca_image(&c, img.data, f, embs), 0);
	assert_int_equal(vlm_coca_text(&c, ids, n, NULL, tok), 0);
	vlm_coca_decode(&c, embs, tok, n, h1, NULL);
	vlm_coca_decode(&u, embs, tok, n, h2, NULL);
	double e = rel_err(h2, h1, (size_t)n * E);
	print_message("upcycled decoder hidden rel err %.2e\n", e);
	assert_true(e < 1e-5);
	assert_int_equal(vlm_coca_greedy(&c, img.data, 20, 5, a),
	    vlm_coca_greedy(&u, img.data, 20, 5, b));
	assert_memory_equal(a, b, sizeof(int32_t) * 5);
	/* twice is refused; so are bad shapes */
	assert_int_equal(vlm_coca_upcycle(&u, path, 4, 2, 1, 1e-3, 5, NULL),
	    -1);
	assert_int_equal(vlm_coca_upcycle(&c, path, 2, 3, 1, 1e-3, 5, NULL),
	    -1);
	free(embs), free(tok), free(h1), free(h2), free(img.data);
	vlm_coca_release(&u);
	vlm_coca_release(&c);
}

static void
test_bad_shape(void **state)
{
	struct vlm_coca_shape s;

	(void)state;
	vlm_coca_shape_preset(&s);
	assert_int_equal(vlm_coca_shape_set(&s, "nope=3"), -1);
	assert_int_equal(vlm_coca_shape_set(&s, "vocab=x"), -1);
	assert_int_equal(vlm_coca_shape_set(&s, "decoder.heads=3"), 0);
	assert_int_equal(vlm_coca_create("/nonexistent/x", &s, 0, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "heads"));
}

/*
 * A copy of c's file with tensor name's shape set to the nd dims of d
 * (the same element count) is refused with a message naming it and the
 * shape it should have.
 */
static void
refuse_reshaped(const struct vlm_coca *c, const char *name, int nd,
    const int64_t *d, const char *want)
{
	struct vlm_tensor *ts = malloc(c->st.n * sizeof(*ts));
	struct vlm_coca b;
	char path[4200];
	int i, k = -1;

	for (i = 0; i < c->st.n; i++)
		if (ts[i] = c->st.tensors[i], strcmp(c->st.names[i], name) == 0)
			k = i;
	assert_true(k >= 0);
	ts[k].ndim = nd;
	memcpy(ts[k].shape, d, nd * sizeof(*d));
	snprintf(path, sizeof(path), "%s/reshaped.safetensors", test_tmpdir());
	assert_int_equal(vlm_st_save(path, c->st.names, ts, c->st.n,
	    c->st.meta_keys, c->st.meta_vals, c->st.nmeta), 0);
	free(ts);
	assert_int_equal(vlm_coca_load(&b, path, NULL), -1);
	print_message("%s\n", vlm_errmsg());
	assert_non_null(strstr(vlm_errmsg(), name));
	assert_non_null(strstr(vlm_errmsg(), want));
}

/* Load refuses a tensor of the wrong shape: 1-D, 2-D and 3-D ones. */
static void
test_tensor_shape(void **state)
{
	struct vlm_coca c;
	int E, D, F;

	(void)state;
	tiny(&c, 3, 2, 11);
	E = c.Ed, D = c.Dd, F = (int)c.st.tensors[vlm_coca_index(&c,
	    "text_decoder.resblocks.0.mlp.experts.c_fc.weight")].shape[1];
	char want[64];
	int64_t d1[] = { 1, D }, d2[] = { F, E }, d3[] = { E, F, D };
	snprintf(want, sizeof(want), "is not (%d", D);
	refuse_reshaped(&c, "text_decoder.ln_final.bias", 2, d1, want);
	snprintf(want, sizeof(want), "is not (%d, %d)", E, F);
	refuse_reshaped(&c, "text_decoder.resblocks.0.mlp.experts.c_fc.bias",
	    2, d2, want);
	snprintf(want, sizeof(want), "is not (%d, %d, %d)", E, D, F);
	refuse_reshaped(&c, "text_decoder.resblocks.0.mlp.experts.c_proj."
	    "weight", 3, d3, want);
	vlm_coca_release(&c);
}

/* Decoder hidden states (T-1, Dd) of one random image and caption. */
static void
hidden_of(const struct vlm_coca *c, const float *img, const int32_t *ids,
    float *hid)
{
	float *feat = malloc(c->E * sizeof(float));
	float *embs = malloc((size_t)(c->Q - 1) * c->E * sizeof(float));
	float *tok = malloc((size_t)c->T * c->Dt * sizeof(float));

	assert_int_equal(vlm_coca_image(c, img, feat, embs), 0);
	assert_int_equal(vlm_coca_text(c, ids, c->T, feat, tok), 0);
	assert_int_equal(vlm_coca_decode(c, embs, tok, c->T - 1, hid, NULL),
	    0);
	free(feat), free(embs), free(tok);
}

static void
test_merge_lora(void **state)
{
	struct vlm_coca c0, c, c1, cm;
	struct vlm_model m; /* c's tensors, writable */
	struct vlm_rng r;
	char lp[4200], tp[4200], mp[4200];
	double worst = 0, hmax = 0, moved = 0;

	(void)state;
	tiny(&c0, 4, 2, 21);
	snprintf(lp, sizeof(lp), "%s/ml-lora.safetensors", test_tmpdir());
	snprintf(tp, sizeof(tp), "%s/ml-trained.safetensors", test_tmpdir());
	snprintf(mp, sizeof(mp), "%s/ml-merged.safetensors", test_tmpdir());
	assert_int_equal(vlm_coca_merge_lora(&c0, mp, NULL), -1);
	assert_int_equal(vlm_coca_add_lora(&c0, lp, 3, 6.0, 1, NULL), 0);
	if (vlm_coca_load(&c, lp, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	/* "trained" adapters: B non-zero, saved (bases and adapters) */
	assert_int_equal(vlm_coca_params(&c, &m), 0);
	vlm_rng_seed(&r, 23);
	random_lora_b(&c, &r);
	assert_int_equal(vlm_coca_save(&c, tp, NULL), 0);
	if (vlm_coca_load(&c1, tp, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(vlm_coca_merge_lora(&c1, mp, NULL), 0);
	if (vlm_coca_load(&cm, mp, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(cm.nlora, 0);
	assert_int_equal(cm.st.n, c0.st.n);
	assert_int_equal(cm.Ed, 4);
	float *img = malloc((size_t)3 * c.S * c.S * sizeof(float));
	int32_t *ids = malloc((size_t)c.T * sizeof(*ids));
	size_t nh = (size_t)(c.T - 1) * c.Dd;
	float *h0 = malloc(nh * sizeof(float)), *h1 = malloc(nh *
	    sizeof(float)), *hm = malloc(nh * sizeof(float));
	batch(&c, 1, img, ids, &r);
	hidden_of(&c0, img, ids, h0);
	hidden_of(&c1, img, ids, h1);
	hidden_of(&cm, img, ids, hm);
	for (size_t i = 0; i < nh; i++) {
		hmax = fmax(hmax, fabs(h1[i]));
		worst = fmax(worst, fabs(hm[i] - h1[i]));
		moved = fmax(moved, fabs(h0[i] - h1[i]));
	}
	print_message("merged vs adapted hidden: max |diff| %.1e (max |h| "
	    "%.2f); adapters changed them by up to %.2e\n", worst, hmax,
	    moved);
	assert_true(moved > 1e-3);     /* the adapters do something */
	assert_true(worst <= 1e-5 * hmax);
	free(img), free(ids), free(h0), free(h1), free(hm);
	vlm_coca_release(&c0), vlm_coca_release(&c);
	vlm_coca_release(&c1), vlm_coca_release(&cm);
	vlm_model_release(&m);
}

/* The total of vlm_coca_grad (the aux loss included), gradients into the
 * scratch g. */
static double
total_of(const struct vlm_coca *c, float **g, const float *img,
    const int32_t *ids, int B)
{
	struct vlm_coca_loss l;

	assert_int_equal(vlm_coca_grad(c, img, ids, B, 2.0f, 1.0f, g, &l), 0);
	return l.total;
}

/* Top-1 (the gate always 1): the router's gradient is the importance
 * loss's, zero without it; against central differences. */
static void
test_aux_fd(void **state)
{
	struct vlm_coca c;
	struct vlm_coca_loss l;
	struct vlm_model m;
	int B = 3;

	(void)state;
	float *img;
	int32_t *ids;
	routed(&c, &m, 1, 5, 13, B, &img, &ids);
	float **g = vlm_coca_grads_new(&c), **scr = vlm_coca_grads_new(&c);
	int i = vlm_coca_index(&c, "text_decoder.resblocks.1.mlp.router."
	    "weight");
	int64_t n = vlm_tensor_numel(&c.st.tensors[i]);
	float *w = c.st.tensors[i].data;
	double worst = 0, gmax = 0;

	assert_int_equal(vlm_coca_grad(&c, img, ids, B, 2.0f, 1.0f, g, &l), 0);
	assert_true(l.aux == 0);
	for (int64_t j = 0; j < n; j++)
		assert_true(g[i][j] == 0);
	c.aux_importance = 0.5f;
	memset(g[c.st.n], 0, m.nfloats * sizeof(float));
	assert_int_equal(vlm_coca_grad(&c, img, ids, B, 2.0f, 1.0f, g, &l), 0);
	print_message("aux %.5f of total %.5f\n", l.aux, l.total);
	assert_true(l.aux > 0);
	assert_true(fabs(l.contrastive + l.caption + l.aux - l.total) < 1e-5);
	for (int64_t j = 0; j < n; j++)
		gmax = fmax(gmax, fabs(g[i][j]));
	assert_true(gmax > 0);
	for (int64_t j = 0; j < n; j += 5) {
		float save = w[j], h = 1e-3f;
		w[j] = save + h;
		double fp = total_of(&c, scr, img, ids, B);
		w[j] = save - h;
		double fm = total_of(&c, scr, img, ids, B);
		w[j] = save;
		worst = fmax(worst, fabs((fp - fm) / (2 * h) - g[i][j]) / gmax);
	}
	print_message("top-1 router, aux on: max |fd - grad| / max|grad| "
	    "%.1e\n", worst);
	assert_true(worst < 2e-2);
	vlm_coca_grads_free(&c, g);
	vlm_coca_grads_free(&c, scr);
	free(img), free(ids);
	vlm_coca_release(&c);
	vlm_model_release(&m);
}

/* How far 4 AdamW steps (no weight decay) move the routers of a top-1 model (aux weight
 * w): the largest change of any router entry. */
static double
router_moves(float w)
{
	struct vlm_coca c;
	struct vlm_model m;
	struct vlm_optim o;
	struct vlm_rng r;
	struct vlm_coca_loss l;
	int B = 3;
	double moved = 0;

	tiny(&c, 4, 1, 5);
	c.aux_importance = w;
	assert_int_equal(vlm_coca_params(&c, &m), 0);
	vlm_optim_defaults(&o);
	o.wd = 0; /* no decay: what moves is the gradient's doing */
	assert_int_equal(vlm_optim_init(&o, &m, NULL), 0);
	vlm_rng_seed(&r, 17);
	float *img = malloc((size_t)B * 3 * c.S * c.S * sizeof(float));
	int32_t *ids = malloc((size_t)B * c.T * sizeof(*ids));
	float *w0 = malloc(m.nfloats * sizeof(float));
	float **g = vlm_coca_grads_new(&c);
	float *grad = malloc((o.pack.n ? o.pack.n : 1) * sizeof(float));
	batch(&c, B, img, ids, &r);
	memcpy(w0, m.w, m.nfloats * sizeof(float));
	for (int s = 0; s < 4; s++)
		assert_int_equal(vlm_coca_step(&c, &m, &o, g, grad, img, ids,
		    B, 2.0f, 1.0f, 1e-3f, &l), 0);
	for (int i = 0; i < m.nparams; i++)
		if (strstr(m.params[i].name, ".router."))
			for (int64_t j = 0; j < m.params[i].n; j++)
				moved = fmax(moved, fabs(m.w[m.params[i].off +
				    j] - w0[m.params[i].off + j]));
	vlm_coca_grads_free(&c, g);
	free(grad), free(w0), free(img), free(ids);
	vlm_optim_release(&o);
	vlm_coca_release(&c);
	vlm_model_release(&m);
	return moved;
}

static void
test_aux_router_learns(void **state)
{
	double off, on;

	(void)state;
	off = router_moves(0);
	on = router_moves(0.01f);
	print_message("top-1 router max change after 4 steps: aux off %.2e, "
	    "aux 0.01 %.2e\n", off, on);
	assert_true(off == 0);
	assert_true(on > 1e-4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_moe_fd),
		cmocka_unit_test(test_lora_fd),
		cmocka_unit_test(test_upcycle_same_function),
		cmocka_unit_test(test_bad_shape),
		cmocka_unit_test(test_tensor_shape),
		cmocka_unit_test(test_merge_lora),
		cmocka_unit_test(test_aux_fd),
		cmocka_unit_test(test_aux_router_learns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
