/*
 * test-model.c - the model against OpenCLIP 3.3.0 (../shared/fixtures/
 * openclip-tiny): imported from OpenCLIP and HF names, the forward pass
 * reproduces image and text features, logits and every intermediate
 * activation to 1e-5 relative (max |diff| / max |ref|).
 */
#include <math.h>

#include "testutil.h"

#define FIX "openclip-tiny/"

static void
import(struct vlm_model *m, int hf)
{
	char w[4096], c[4096];

	snprintf(w, sizeof(w), "%s", fixture(hf ? FIX "weights.hf.safetensors"
	    : FIX "weights.openclip.safetensors"));
	snprintf(c, sizeof(c), "%s", fixture(hf ? FIX "hf_config.json" :
	    FIX "open_clip_config.json"));
	NEED_FIXTURE(w);
	if (vlm_model_import(m, w, c) < 0)
		fail_msg("%s", vlm_errmsg());
}

static void
expect_close(const char *what, const float *got, const char *rel, double tol)
{
	struct vlm_tensor t;
	float *ref = fixture_f32(rel, &t);
	double e = rel_err(got, ref, vlm_tensor_numel(&t));

	print_message("%-34s rel err %.2e\n", what, e);
	assert_true(e < tol);
	free(ref);
}

static void
forward_matches(int hf)
{
	struct vlm_model m;
	struct vlm_tensor img;
	struct vlm_run *r;
	int64_t nt, T;
	int Bt, rows, D;
	static const char *const vis[] = { FIX "inter_vis_after_ln_pre.npy",
		FIX "inter_vis_block00_out.npy", FIX "inter_vis_block01_out.npy" };
	static const char *const txt[] = { FIX "inter_txt_block00_out.npy",
		FIX "inter_txt_block01_out.npy" };

	import(&m, hf);
	fixture_f32(FIX "image_input.npy", &img);
	int32_t *ids = fixture_ids(FIX "text_tokens.npy", &nt, &T);
	Bt = (int)(nt / T);
	assert_non_null(r = vlm_run_new(&m, img.shape[0], Bt, 0));
	assert_int_equal(vlm_forward(r, &m, img.data, ids), 0);
	for (int l = 0; l < 3; l++)
		expect_close(vis[l], vlm_run_stream(r, 0, l, &rows, &D), vis[l],
		    1e-5);
	for (int l = 0; l < 2; l++)
		expect_close(txt[l], vlm_run_stream(r, 1, l + 1, &rows, &D),
		    txt[l], 1e-5);
	expect_close("text after ln_final", vlm_run_stream(r, 1, -1, &rows,
	    &D), FIX "inter_txt_after_ln_final.npy", 1e-5);
	expect_close("image_features", vlm_run_features(r, 0, 0),
	    FIX "image_features.npy", 1e-5);
	expect_close("text_features", vlm_run_features(r, 1, 0),
	    FIX "text_features.npy", 1e-5);

	/* logits_per_image = exp(logit_scale) u v^T */
	int Bi = img.shape[0], E = m.cfg.embed_dim;
	float *lg = malloc(Bi * Bt * sizeof(float));
	const float *u = vlm_run_features(r, 0, 1), *v = vlm_run_features(r, 1,
	    1);
	for (int i = 0; i < Bi; i++)
		for (int j = 0; j < Bt; j++) {
			float s = 0;
			for (int k = 0; k < E; k++)
				s += u[i * E + k] * v[j * E + k];
			lg[i * Bt + j] = expf(m.w[m.logit_scale]) * s;
		}
	expect_close("logits_per_image", lg, FIX "logits_per_image.npy", 1e-5);
	free(lg);
	free(ids);
	free(img.data);
	vlm_run_free(r);
	vlm_model_release(&m);
}

static void
test_forward_openclip(void **state)
{
	(void)state;
	forward_matches(0);
}

static void
test_forward_hf(void **state)
{
	(void)state;
	forward_matches(1);
}

/* Both namings import to the very same parameters. */
static void
test_import_namings_agree(void **state)
{
	struct vlm_model a, b;

	(void)state;
	import(&a, 0);
	import(&b, 1);
	assert_int_equal(a.nfloats, b.nfloats);
	assert_int_equal(a.nfloats, 3384897); /* manifest.json n_params */
	assert_memory_equal(a.w, b.w, a.nfloats * sizeof(float));
	vlm_model_release(&a);
	vlm_model_release(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_import_namings_agree),
		cmocka_unit_test(test_forward_openclip),
		cmocka_unit_test(test_forward_hf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
