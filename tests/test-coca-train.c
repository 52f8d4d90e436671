/*
 * test-coca-train.c - CoCa training steps (train/coca.c) on the OpenCLIP
 * fixture (../shared/fixtures/openclip-coca-tiny): the first AdamW step
 * equals AdamW written out here applied to OpenCLIP's step-0 gradients
 * (train_step0_grads.safetensors), with OpenCLIP's weight-decay rule; a
 * few steps on the fixture batch lower CoCaLoss; a frozen tensor stays
 * byte-identical while the trained ones move (Uni-MoE's connector stage).
 * Validation (vlm_coca_val): one batch of all pairs is CoCaLoss of them;
 * the caption loss does not depend on the batching (a mean over labels),
 * the contrastive one does; repeated calls are bit-identical.
 */
#include <math.h>

#include "testutil.h"
#include "train/train.h"

#define FIX "openclip-coca-tiny/"

struct fx {
	struct vlm_coca c;
	struct vlm_model m;
	struct vlm_tensor img;
	int32_t *ids;
	int B;
};

/* The fixture model as a parameter table, its images and texts. */
static int
fx_load(struct fx *f)
{
	char w[4096], cf[4096];
	struct vlm_tensor t;

	snprintf(w, sizeof(w), "%s", fixture(FIX "weights.openclip.safetensors"));
	snprintf(cf, sizeof(cf), "%s", fixture(FIX "open_clip_config.json"));
	if (access(w, R_OK) < 0) {
		print_message("skipping: fixture '%s' not found\n", w);
		return -1;
	}
	if (vlm_coca_load(&f->c, w, cf) < 0 || vlm_coca_params(&f->c, &f->m) <
	    0 || vlm_npy_load(fixture(FIX "image_input.npy"), &f->img) < 0 ||
	    vlm_npy_load(fixture(FIX "text_tokens.npy"), &t) < 0)
		fail_msg("%s", vlm_errmsg());
	f->B = (int)f->img.shape[0];
	f->ids = malloc(vlm_tensor_numel(&t) * sizeof(*f->ids));
	for (int64_t i = 0; i < vlm_tensor_numel(&t); i++)
		f->ids[i] = (int32_t)((int64_t *)t.data)[i];
	free(t.data);
	return 0;
}

static void
fx_free(struct fx *f)
{
	vlm_coca_release(&f->c);
	vlm_model_release(&f->m);
	free(f->img.data);
	free(f->ids);
}

static void
test_step0_is_adamw(void **state)
{
	struct fx f;
	struct vlm_optim o;
	struct vlm_st ref;
	struct vlm_coca_loss l;
	float lr = 1e-3f, *w0, **g, *grad;
	int nbad = 0, loose = 0;
	double worst = 0;

	(void)state;
	if (fx_load(&f) < 0)
		skip();
	if (vlm_st_load(&ref, fixture(FIX "train_step0_grads.safetensors")) < 0)
		fail_msg("%s", vlm_errmsg());
	vlm_optim_defaults(&o);
	o.wd = 0.1f;
	assert_int_equal(vlm_optim_init(&o, &f.m, NULL), 0);
	w0 = malloc(f.m.nfloats * sizeof(float));
	memcpy(w0, f.m.w, f.m.nfloats * sizeof(float));
	g = vlm_coca_grads_new(&f.c);
	grad = malloc(o.pack.n * sizeof(float));
	assert_int_equal(vlm_coca_step(&f.c, &f.m, &o, g, grad, f.img.data,
	    f.ids, f.B, 2.0f, 1.0f, lr, &l), 0);
	assert_true(fabs(l.total - 27.06900405883789) < 1e-5 * 27.1);
	for (int i = 0; i < f.m.nparams; i++) {
		const struct vlm_param *p = &f.m.params[i];
		const struct vlm_tensor *t = vlm_st_get(&ref, p->name);
		assert_non_null(t);
		/* step 1: m/(1-b1) = g, v/(1-b2) = g^2, decoupled decay;
		 * OpenCLIP decays 2-D weights but norms and biases */
		int decay = p->ndim >= 2 && !strstr(p->name, "ln") &&
		    !strstr(p->name, "bias") && !strstr(p->name, "logit");
		double gmax = 0;
		for (int64_t k = 0; k < p->n; k++)
			gmax = fmax(gmax, fabs(((float *)t->data)[k]));
		for (int64_t k = 0; k < p->n; k++) {
			double w = w0[p->off + k], gr = ((float *)t->data)[k];
			double want = w * (1 - lr * (decay ? o.wd : 0)) - lr *
			    gr / (fabs(gr) + o.eps);
			double e = fabs(f.m.w[p->off + k] - want);
			/* the gradients agree to 1e-4 of their tensor's
			 * largest; g / (|g| + eps) moves by eps / (|g| +
			 * eps)^2 per unit of g (a lot where |g| ~ eps) */
			double d = 1e-4 * gmax * o.eps / ((fabs(gr) + o.eps) *
			    (fabs(gr) + o.eps));
			double tol = lr * (1e-5 + fmin(2, d)) + 1e-6 * fabs(w);
			worst = e / lr > worst ? e / lr : worst;
			nbad += e > tol;
			loose += gr != 0 && d > 1e-2;
			/* and AdamW of the gradient it computed, to float
			 * rounding (2 ulps of w) */
			double own = g[i][k], wo = w * (1 - lr * (decay ?
			    o.wd : 0)) - lr * own / (fabs(own) + o.eps);
			if (fabs(f.m.w[p->off + k] - wo) > 1e-5 * lr + 3e-7 *
			    fabs(w)) {
				print_message("%s[%lld]: %.9g, AdamW of g %.9g "
				    "gives %.9g\n", p->name, (long long)k,
				    f.m.w[p->off + k], own, wo);
				nbad++;
			}
		}
	}
	print_message("%d tensors, worst |w - AdamW(fixture grads)| / lr "
	    "%.2e; %d of %lld floats with 0 < |g| ~ eps checked loosely\n",
	    f.m.nparams, worst, loose, (long long)f.m.nfloats);
	assert_int_equal(nbad, 0);
	/* what vlm_coca_save writes is the stepped weights */
	assert_true(f.c.st.tensors[0].data == (void *)f.m.w);
	vlm_coca_grads_free(&f.c, g);
	free(grad), free(w0);
	vlm_st_release(&ref);
	vlm_optim_release(&o);
	fx_free(&f);
}

/* Steps on the fixture batch with tensors named by frozen_if frozen:
 * the loss goes down; frozen tensors keep their bytes, others move. */
static void
steps(int (*frozen_if)(const char *name), int nsteps)
{
	struct fx f;
	struct vlm_optim o;
	struct vlm_coca_loss l, first;
	float **g, *grad, *w0;
	uint8_t *frozen;

	if (fx_load(&f) < 0)
		skip();
	frozen = calloc(f.m.nparams, 1);
	for (int i = 0; i < f.m.nparams; i++)
		frozen[i] = frozen_if(f.m.params[i].name);
	vlm_optim_defaults(&o);
	assert_int_equal(vlm_optim_init(&o, &f.m, frozen), 0);
	w0 = malloc(f.m.nfloats * sizeof(float));
	memcpy(w0, f.m.w, f.m.nfloats * sizeof(float));
	g = vlm_coca_grads_new(&f.c);
	grad = malloc((o.pack.n ? o.pack.n : 1) * sizeof(float));
	for (int s = 0; s < nsteps; s++) {
		assert_int_equal(vlm_coca_step(&f.c, &f.m, &o, g, grad,
		    f.img.data, f.ids, f.B, 2.0f, 1.0f, 1e-3f, &l), 0);
		if (s == 0)
			first = l;
	}
	assert_int_equal(vlm_coca_loss(&f.c, f.img.data, f.ids, f.B, 2.0f,
	    1.0f, &l), 0);
	print_message("loss %.4f (contrastive %.4f caption %.4f) -> %.4f "
	    "(%.4f %.4f) after %d steps\n", first.total, first.contrastive,
	    first.caption, l.total, l.contrastive, l.caption, nsteps);
	assert_true(l.total < first.total - 1);
	for (int i = 0; i < f.m.nparams; i++) {
		const struct vlm_param *p = &f.m.params[i];
		int same = memcmp(w0 + p->off, f.m.w + p->off, p->n *
		    sizeof(float)) == 0;
		if (same != frozen[i])
			fail_msg("%s: %s", p->name, same ? "did not move" :
			    "frozen but moved");
	}
	vlm_coca_grads_free(&f.c, g);
	free(grad), free(w0), free(frozen);
	vlm_optim_release(&o);
	fx_free(&f);
}

static int
none(const char *name)
{
	(void)name;
	return 0;
}

/* Uni-MoE's first stage: the connector (pooler, cross-attention). */
static int
not_connector(const char *name)
{
	return strncmp(name, "visual.attn_pool.", 17) != 0 &&
	    strncmp(name, "text_decoder.cross_attn.", 24) != 0;
}

static void
test_steps_lower_loss(void **state)
{
	(void)state;
	steps(none, 5);
}

static void
test_frozen_stay(void **state)
{
	(void)state;
	steps(not_connector, 5);
}

static void
test_val(void **state)
{
	struct fx f;
	struct vlm_coca_loss all, v1, v2, vb, vb2;

	(void)state;
	if (fx_load(&f) < 0)
		skip();
	int n = f.B, *iid = malloc(n * sizeof(int));
	for (int i = 0; i < n; i++)
		iid[i] = n - 1 - i; /* images stored in reverse order */
	size_t S3 = 3 * (size_t)f.c.S * f.c.S;
	float *px = malloc(n * S3 * sizeof(float));
	for (int i = 0; i < n; i++)
		memcpy(px + iid[i] * S3, (float *)f.img.data + i * S3,
		    S3 * sizeof(float));
	assert_int_equal(vlm_coca_loss(&f.c, f.img.data, f.ids, n, 2.0f, 1.0f,
	    &all), 0);
	assert_int_equal(vlm_coca_val(&f.c, px, iid, f.ids, n, n, 2.0f, 1.0f,
	    &v1), 0);
	assert_int_equal(vlm_coca_val(&f.c, px, iid, f.ids, n, n + 3, 2.0f,
	    1.0f, &v2), 0);
	assert_int_equal(vlm_coca_val(&f.c, px, iid, f.ids, n, 1, 2.0f, 1.0f,
	    &vb), 0);
	assert_int_equal(vlm_coca_val(&f.c, px, iid, f.ids, n, 1, 2.0f, 1.0f,
	    &vb2), 0);
	print_message("B=%d: contrastive %.6f caption %.6f; batches of 1: "
	    "contrastive %.6f caption %.6f\n", n, v1.contrastive, v1.caption,
	    vb.contrastive, vb.caption);
	assert_true(fabs(v1.total - all.total) <= 1e-6 * fabs(all.total));
	assert_true(memcmp(&v1, &v2, sizeof(v1)) == 0);
	assert_true(memcmp(&vb, &vb2, sizeof(vb)) == 0);
	assert_true(fabs(vb.caption - all.caption) <= 1e-5 * all.caption);
	assert_true(vb.contrastive == 0); /* one pair: log softmax of 1 */
	assert_true(all.contrastive > 0);
	assert_int_equal(vlm_coca_val(&f.c, px, iid, f.ids, 0, 2, 2.0f, 1.0f,
	    &vb), -1);
	free(iid), free(px);
	fx_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_step0_is_adamw),
		cmocka_unit_test(test_steps_lower_loss),
		cmocka_unit_test(test_frozen_stay),
		cmocka_unit_test(test_val),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
