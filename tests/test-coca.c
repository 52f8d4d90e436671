/*
 * test-coca.c - CoCa against OpenCLIP 2.32 (../shared/fixtures/
 * openclip-coca-tiny): image and text features, the decoder's image
 * tokens, decoder hidden states and logits to 1e-5 relative (max |diff| /
 * max |ref|), CoCaLoss to 1e-5 relative, greedy and beam-search (3 beams,
 * 1 or 3 groups) caption ids identical.
 */
#include <math.h>

#include "testutil.h"

#define FIX "openclip-coca-tiny/"

static void
load(struct vlm_coca *c)
{
	char w[4096], cf[4096];

	snprintf(w, sizeof(w), "%s", fixture(FIX "weights.openclip.safetensors"));
	snprintf(cf, sizeof(cf), "%s", fixture(FIX "open_clip_config.json"));
	NEED_FIXTURE(w);
	if (vlm_coca_load(c, w, cf) < 0)
		fail_msg("%s", vlm_errmsg());
}

/* got (n floats) against the fixture rel, from element off on. */
static void
expect_close(const char *what, const float *got, const char *rel,
    size_t off, size_t n, double tol)
{
	struct vlm_tensor t;
	float *ref = fixture_f32(rel, &t);
	double e = rel_err(got, ref + off, n);

	print_message("%-28s rel err %.2e\n", what, e);
	assert_true(e < tol);
	free(ref);
}

static void
test_shapes(void **state)
{
	struct vlm_coca c;

	(void)state;
	load(&c);
	assert_int_equal(c.E, 32);
	assert_int_equal(c.S, 32);
	assert_int_equal(c.Dv, 64);
	assert_int_equal(c.Hv, 2);
	assert_int_equal(c.Q, 256);
	assert_int_equal(c.Hq, 8);
	assert_int_equal(c.T, 76);
	assert_int_equal(c.Ld, 2);
	assert_int_equal(c.V, 49408);
	vlm_coca_release(&c);
}

static void
test_forward(void **state)
{
	struct vlm_coca c;
	struct vlm_tensor img;
	int64_t nids;

	(void)state;
	load(&c);
	fixture_f32(FIX "image_input.npy", &img);
	int32_t *ids = fixture_ids(FIX "text_tokens.npy", &nids, NULL);
	int B = img.shape[0], E = c.E, T = c.T, n = T - 1, M = c.Q - 1;
	float *u = malloc(B * E * sizeof(float)), *v = malloc(B * E *
	    sizeof(float));
	float *embs = malloc((size_t)B * M * E * sizeof(float));
	float *tok = malloc((size_t)T * E * sizeof(float));
	float *hid = malloc((size_t)B * n * E * sizeof(float));
	float *lg = malloc((size_t)n * c.V * sizeof(float));

	for (int b = 0; b < B; b++) {
		assert_int_equal(vlm_coca_image(&c, (float *)img.data + b * 3 *
		    c.S * c.S, u + b * E, embs + (size_t)b * M * E), 0);
		assert_int_equal(vlm_coca_text(&c, ids + b * T, T, v + b * E,
		    tok), 0);
		assert_int_equal(vlm_coca_decode(&c, embs + (size_t)b * M * E,
		    tok, n, hid + (size_t)b * n * E, lg), 0);
		/* logits.npy holds positions 0-11 of each caption */
		expect_close("logits[b, 0:12]", lg, FIX "logits.npy",
		    (size_t)b * 12 * c.V, (size_t)12 * c.V, 1e-5);
	}
	expect_close("image_features_unnorm", u, FIX
	    "image_features_unnorm.npy", 0, B * E, 1e-5);
	expect_close("text_features_unnorm", v, FIX "text_features_unnorm.npy",
	    0, B * E, 1e-5);
	expect_close("image_embs", embs, FIX "image_embs.npy", 0,
	    (size_t)B * M * E, 1e-5);
	expect_close("decoder_hidden", hid, FIX "decoder_hidden.npy", 0,
	    (size_t)B * n * E, 1e-5);
	free(u), free(v), free(embs), free(tok), free(hid), free(lg);
	free(ids), free(img.data);
	vlm_coca_release(&c);
}

static void
test_loss(void **state)
{
	struct vlm_coca c;
	struct vlm_tensor img;
	struct vlm_coca_loss l;
	int64_t nids;

	(void)state;
	load(&c);
	fixture_f32(FIX "image_input.npy", &img);
	int32_t *ids = fixture_ids(FIX "text_tokens.npy", &nids, NULL);
	assert_int_equal(vlm_coca_loss(&c, img.data, ids, img.shape[0], 2.0f,
	    1.0f, &l), 0);
	print_message("contrastive %.6f caption %.6f total %.6f\n",
	    l.contrastive, l.caption, l.total);
	/* manifest.json: losses */
	assert_true(fabs(l.contrastive - 3.2111260890960693) < 1e-5 * 3.22);
	assert_true(fabs(l.caption - 23.857877731323242) < 1e-5 * 23.9);
	assert_true(fabs(l.total - 27.06900405883789) < 1e-5 * 27.1);
	free(ids), free(img.data);
	vlm_coca_release(&c);
}

static void
test_greedy(void **state)
{
	struct vlm_coca c;
	struct vlm_tensor img;
	int64_t n;
	int32_t out[20];

	(void)state;
	load(&c);
	fixture_f32(FIX "image_input.npy", &img);
	int32_t *ref = fixture_ids(FIX "gen_greedy.npy", &n, NULL);
	assert_int_equal(vlm_coca_greedy(&c, img.data, 20, 5, out), n);
	for (int i = 0; i < n; i++)
		assert_int_equal(out[i], ref[i]);
	free(ref), free(img.data);
	vlm_coca_release(&c);
}

/* Every tensor's step-0 gradient against OpenCLIP's to 1e-4 relative. */
static void
test_grads(void **state)
{
	struct vlm_coca c;
	struct vlm_tensor img;
	struct vlm_coca_loss l;
	struct vlm_st ref;
	int64_t nids;
	int nbad = 0;
	double worst = 0;
	const char *wname = "";

	(void)state;
	load(&c);
	fixture_f32(FIX "image_input.npy", &img);
	int32_t *ids = fixture_ids(FIX "text_tokens.npy", &nids, NULL);
	if (vlm_st_load(&ref, fixture(FIX "train_step0_grads.safetensors")) < 0)
		fail_msg("%s", vlm_errmsg());
	float **g = vlm_coca_grads_new(&c);
	assert_non_null(g);
	assert_int_equal(vlm_coca_grad(&c, img.data, ids, img.shape[0], 2.0f,
	    1.0f, g, &l), 0);
	assert_true(fabs(l.total - 27.06900405883789) < 1e-5 * 27.1);
	assert_int_equal(ref.n, c.st.n);
	for (int i = 0; i < c.st.n; i++) {
		const struct vlm_tensor *t = vlm_st_get(&ref, c.st.names[i]);
		assert_non_null(t);
		double e = rel_err(g[i], t->data, vlm_tensor_numel(t));
		if (e > worst)
			worst = e, wname = c.st.names[i];
		if (!(e < 1e-4)) {
			print_message("%-50s rel err %.2e\n", c.st.names[i], e);
			nbad++;
		}
	}
	print_message("%d tensors, worst rel err %.2e (%s)\n", c.st.n, worst,
	    wname);
	assert_int_equal(nbad, 0);
	vlm_coca_grads_free(&c, g);
	vlm_st_release(&ref);
	free(ids), free(img.data);
	vlm_coca_release(&c);
}

/* Beam search with nb beams in G groups against the fixture rel. */
static void
beam_matches(int nb, int G, const char *rel)
{
	struct vlm_coca c;
	struct vlm_tensor img;
	int64_t n;
	int32_t out[20];

	load(&c);
	fixture_f32(FIX "image_input.npy", &img);
	int32_t *ref = fixture_ids(rel, &n, NULL);
	assert_int_equal(vlm_coca_beam(&c, img.data, 20, 5, nb, G, out), n);
	for (int i = 0; i < n; i++)
		assert_int_equal(out[i], ref[i]);
	free(ref), free(img.data);
	vlm_coca_release(&c);
}

static void
test_beam3(void **state)
{
	(void)state;
	beam_matches(3, 1, FIX "gen_beam3.npy");
}

static void
test_beam3_groups3(void **state)
{
	(void)state;
	beam_matches(3, 3, FIX "gen_beam3_groups3.npy");
}

/* A saved CoCa model file reloads without its config, same numbers. */
static void
test_save_load(void **state)
{
	struct vlm_coca c, d;
	struct vlm_tensor img;
	char path[4200];
	float fc[32], fd[32];

	(void)state;
	load(&c);
	fixture_f32(FIX "image_input.npy", &img);
	snprintf(path, sizeof(path), "%s/coca.vlm", test_tmpdir());
	assert_int_equal(vlm_coca_save(&c, path, "merges text"), 0);
	if (vlm_coca_load(&d, path, NULL) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(d.Hv, c.Hv);
	assert_int_equal(d.Ht, c.Ht);
	assert_int_equal(d.Hd, c.Hd);
	assert_int_equal(d.Q, c.Q);
	assert_int_equal(d.Hq, c.Hq);
	assert_int_equal(d.quick, c.quick);
	assert_string_equal(vlm_coca_merges(&d), "merges text");
	assert_null(vlm_coca_merges(&c));
	assert_int_equal(vlm_coca_image(&c, img.data, fc, NULL), 0);
	assert_int_equal(vlm_coca_image(&d, img.data, fd, NULL), 0);
	assert_memory_equal(fc, fd, sizeof(fc));
	assert_int_equal(vlm_coca_is_checkpoint(path), 1);
	free(img.data);
	vlm_coca_release(&c);
	vlm_coca_release(&d);
}

static void
test_bad_checkpoint(void **state)
{
	struct vlm_coca c;
	char w[4096];

	(void)state;
	/* a CLIP checkpoint is not a CoCa one */
	snprintf(w, sizeof(w), "%s", fixture("openclip-tiny/"
	    "weights.openclip.safetensors"));
	NEED_FIXTURE(w);
	assert_int_equal(vlm_coca_is_checkpoint(w), 0);
	assert_int_equal(vlm_coca_load(&c, w, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "not an OpenCLIP CoCa"));

	/* a CoCa checkpoint short of one cross-attention tensor */
	char path[4200];
	const char *drop = "text_decoder.cross_attn.1.ln_1_kv.bias";
	load(&c);
	const char **names = malloc(c.st.n * sizeof(*names));
	struct vlm_tensor *ts = malloc(c.st.n * sizeof(*ts));
	int n = 0;
	for (int i = 0; i < c.st.n; i++)
		if (strcmp(c.st.names[i], drop) != 0)
			names[n] = c.st.names[i], ts[n++] = c.st.tensors[i];
	snprintf(path, sizeof(path), "%s/short.safetensors", test_tmpdir());
	assert_int_equal(vlm_st_save(path, names, ts, n, NULL, NULL, 0), 0);
	vlm_coca_release(&c);
	free(names), free(ts);
	assert_int_equal(vlm_coca_load(&c, path, NULL), -1);
	print_message("%s\n", vlm_errmsg());
	assert_non_null(strstr(vlm_errmsg(), drop));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_forward),
		cmocka_unit_test(test_loss),
		cmocka_unit_test(test_grads),
		cmocka_unit_test(test_greedy),
		cmocka_unit_test(test_beam3),
		cmocka_unit_test(test_beam3_groups3),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_bad_checkpoint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
