/*
 * test-pack.c - packed gradient and moment slabs (libcore/model/pack.c):
 * a packed backward (vlm_run_pack) writes each kept parameter's gradient
 * bit for bit as the slab-layout backward with the same parameters
 * frozen, and nothing else; AdamW over packed moments moves the trained
 * parameters as a full optimizer does and leaves the frozen ones; LoRA
 * gradients folded block by block equal the slab-layout ones;
 * checkpoints of packed moments round-trip, old full-layout files load,
 * and moments missing for a trained parameter, a wrong length or
 * unknown or repeated names in adamw.params are refused, saying which.
 */
#include <sys/stat.h>

#include "testutil.h"

#include "kernels.h"

#define NB 4

/* Images and texts of one batch for config c (lengths 3..6). */
static void
batch(const struct vlm_config *c, float **px, int32_t **ids)
{
	int S = c->image_size, T = c->context;
	struct vlm_rng g;

	*px = malloc(sizeof(float) * NB * 3 * S * S);
	*ids = calloc((size_t)NB * T, sizeof(int32_t));
	assert_non_null(*px);
	assert_non_null(*ids);
	vlm_rng_seed(&g, 9);
	for (int i = 0; i < NB * 3 * S * S; i++)
		(*px)[i] = (float)vlm_rng_uniform(&g) - 0.5f;
	for (int b = 0; b < NB; b++) {
		for (int t = 0; t < 2 + b; t++)
			(*ids)[b * T + t] = 1 + (int)vlm_rng_below(&g,
			    c->vocab - 2);
		(*ids)[b * T + 2 + b] = c->vocab - 1;
	}
}

/* A "device" on the host: the cpu table with device set, so that a run
 * keeps its own weights and gradients and moves them (as on a GPU). */
static const struct vlm_backend *
fake_device(void)
{
	static struct vlm_backend dev;

	dev = *vlm_backend_get("cpu");
	dev.name = "fake-device", dev.device = 1;
	return &dev;
}

/* One step's gradient of m into grad on be: slab layout with nograd
 * frozen (p NULL), or packed as p. */
static void
grad_step_on(const struct vlm_backend *be, const struct vlm_model *m,
    const uint8_t *nograd, const struct vlm_pack *p, float *grad)
{
	struct vlm_run *r;
	float *px;
	int32_t *ids;

	batch(&m->cfg, &px, &ids);
	assert_non_null(r = vlm_run_new_on(be, m, NB, NB, 1));
	if (p)
		assert_int_equal(vlm_run_pack(r, m, p), 0);
	else
		assert_int_equal(vlm_run_freeze(r, m, nograd), 0);
	vlm_run_seed(r, 3);
	assert_int_equal(vlm_forward(r, m, px, ids), 0);
	assert_int_equal(vlm_run_loss(r, m, NULL), 0);
	assert_int_equal(vlm_backward(r, m, grad), 0);
	vlm_run_free(r);
	free(px);
	free(ids);
}

static void
grad_step(const struct vlm_model *m, const uint8_t *nograd,
    const struct vlm_pack *p, float *grad)
{
	grad_step_on(vlm_backend_get("cpu"), m, nograd, p, grad);
}

/* Model variant v: two towers; a TokenLearner cut with MAP pooling;
 * one tower. Three blocks each. */
static void
variant(struct vlm_config *c, int v)
{
	tiny_grad_config(c);
	c->vision.layers = c->text.layers = 3;
	c->family = v == 2 ? VLM_ONE_TOWER : VLM_TWO_TOWER;
	if (v >= 1) {
		c->tl.after = 1, c->tl.tokens = 3, c->tl.hidden = 5;
		c->vision.pool = VLM_POOL_MAP;
	}
}

/* Mask k over m: a locked image tower, a locked text tower, every
 * other parameter (some TokenLearner ones with rows below wanted). */
static void
mask(const struct vlm_model *m, int k, uint8_t *skip)
{
	for (int i = 0; i < m->nparams; i++) {
		int vis = strncmp(m->params[i].name, "visual.", 7) == 0;
		skip[i] = k == 0 ? vis : k == 1 ? !vis &&
		    strcmp(m->params[i].name, "logit_scale") != 0 : i % 2;
	}
}

static void
test_backward_packed(void **state)
{
	struct vlm_config c;
	struct vlm_model m;

	(void)state;
	for (int v = 0; v < 3; v++)
	for (int k = 0; k < 3; k++) {
		struct vlm_pack p;
		int64_t kept = 0;
		int diff = 0;
		variant(&c, v);
		assert_int_equal(vlm_model_init(&m, &c), 0);
		vlm_model_randomize(&m, 5);
		uint8_t *skip = calloc(m.nparams, 1);
		mask(&m, k, skip);
		assert_int_equal(vlm_pack_init(&p, &m, skip), 0);
		float *full = malloc(m.nfloats * 4);
		/* one float past the packed slab: the backward stays in */
		float *part = malloc((p.n + 1) * 4);
		float *dpart = malloc((p.n + 1) * 4);
		part[p.n] = dpart[p.n] = 12345.0f;
		grad_step(&m, skip, NULL, full);
		grad_step(&m, NULL, &p, part);
		/* a device run downloads the packed slab, no more */
		grad_step_on(fake_device(), &m, NULL, &p, dpart);
		assert_memory_equal(part, dpart, (p.n + 1) * 4);
		for (int i = 0; i < m.nparams; i++) {
			const struct vlm_param *q = &m.params[i];
			if (skip[i]) {
				assert_int_equal(p.off[i], -1);
				continue;
			}
			assert_int_equal(p.off[i], kept);
			kept += q->n;
			diff += memcmp(part + p.off[i], full + q->off,
			    q->n * 4) != 0;
		}
		print_message("variant %d mask %d: %lld of %lld floats "
		    "packed, %d parameters differ\n", v, k, (long long)p.n,
		    (long long)m.nfloats, diff);
		assert_int_equal(kept, p.n);
		assert_true(p.n < m.nfloats);
		assert_int_equal(diff, 0);
		assert_true(part[p.n] == 12345.0f);
		vlm_pack_release(&p);
		free(full), free(part), free(dpart), free(skip);
		vlm_model_release(&m);
	}
}

/* AdamW with the image tower frozen against a full optimizer: the
 * trained parameters move alike, bit for bit; frozen ones stay. */
static void
test_optim_packed(void **state)
{
	struct vlm_config c;
	struct vlm_model a, b;
	struct vlm_optim oa, ob;

	(void)state;
	variant(&c, 0);
	assert_int_equal(vlm_model_init(&a, &c), 0);
	assert_int_equal(vlm_model_init(&b, &c), 0);
	vlm_model_randomize(&a, 5);
	memcpy(b.w, a.w, a.nfloats * 4);
	uint8_t *skip = calloc(a.nparams, 1);
	mask(&a, 0, skip);
	vlm_optim_defaults(&oa);
	vlm_optim_defaults(&ob);
	assert_int_equal(vlm_optim_init(&oa, &a, skip), 0);
	assert_int_equal(vlm_optim_init(&ob, &b, NULL), 0);
	assert_true(oa.pack.n < a.nfloats && ob.pack.n == b.nfloats);
	float *gf = malloc(a.nfloats * 4), *gp = malloc(oa.pack.n * 4);
	for (int s = 0; s < 3; s++) {
		randn_fill(gf, a.nfloats, 40 + s);
		for (int i = 0; i < a.nparams; i++)
			if (!skip[i])
				memcpy(gp + oa.pack.off[i], gf +
				    a.params[i].off, a.params[i].n * 4);
		vlm_optim_step(&oa, &a, gp, 1e-2f);
		vlm_optim_step(&ob, &b, gf, 1e-2f);
	}
	struct vlm_model c0;
	assert_int_equal(vlm_model_init(&c0, &c), 0);
	vlm_model_randomize(&c0, 5);
	for (int i = 0; i < a.nparams; i++) {
		const struct vlm_param *q = &a.params[i];
		const float *want = skip[i] ? c0.w : b.w;
		assert_memory_equal(a.w + q->off, want + q->off, q->n * 4);
	}
	vlm_model_release(&c0);
	vlm_optim_release(&oa);
	vlm_optim_release(&ob);
	vlm_model_release(&a);
	vlm_model_release(&b);
	free(gf), free(gp), free(skip);
}

struct fold_ctx {
	const struct vlm_model *m;
	float *ga;
	const struct vlm_pack *ap;
	int calls;
};

static void
fold_fn(void *ctx, int i, const float *dw)
{
	struct fold_ctx *f = ctx;

	f->calls++;
	assert_int_equal(vlm_lora_fold(f->m, i, dw, f->ga, f->ap, 0), 0);
}

/* A backward of v on be, its gradients none in a slab (one float that
 * must stay) and those fold marks folded into f. */
static void
fold_backward(const struct vlm_backend *be, const struct vlm_model *v,
    const struct vlm_pack *none, const uint8_t *fold, struct fold_ctx *f)
{
	struct vlm_run *r;
	float *px, g0 = 77;
	int32_t *ids;

	batch(&v->cfg, &px, &ids);
	assert_non_null(r = vlm_run_new_on(be, v, NB, NB, 1));
	assert_int_equal(vlm_run_pack(r, v, none), 0);
	assert_int_equal(vlm_run_fold(r, v, fold, fold_fn, f), 0);
	vlm_run_seed(r, 3);
	assert_int_equal(vlm_forward(r, v, px, ids), 0);
	assert_int_equal(vlm_run_loss(r, v, NULL), 0);
	assert_int_equal(vlm_backward(r, v, &g0), 0);
	assert_true(g0 == 77);
	vlm_run_free(r);
	free(px), free(ids);
}

/* The adapters' gradients folded block by block during the backward,
 * with no slab for any base weight, equal bit for bit those of the
 * slab-layout backward and vlm_lora_grad; a frozen pair gets none and
 * its weight is not differentiated. Dense two towers, one-tower VL-MoE
 * (stacked experts in two pools). */
static void
test_lora_fold(void **state)
{
	struct vlm_config c;
	struct vlm_model m, v;

	(void)state;
	for (int moe = 0; moe < 2; moe++) {
		tiny_grad_config(&c);
		c.family = moe ? VLM_ONE_TOWER : VLM_TWO_TOWER;
		c.moe.experts = moe ? 4 : 0, c.moe.top_k = 2, c.moe.every = 1;
		c.moe.modality_experts = moe;
		c.lora.rank = 2, c.lora.alpha = 4;
		assert_int_equal(vlm_model_init(&m, &c), 0);
		vlm_model_randomize(&m, 3);
		int first = vlm_lora_first(&m);
		randn_fill(m.w + m.params[first].off, m.nfloats -
		    m.params[first].off, 8); /* every B off 0 */
		assert_int_equal(vlm_lora_view_init(&v, &m), 0);
		/* the base frozen; and in two towers the visual adapters */
		uint8_t *frozen = calloc(m.nparams, 1);
		uint8_t *skip = calloc(v.nparams, 1), *fold = calloc(v.nparams,
		    1);
		for (int i = 0; i < m.nparams; i++)
			frozen[i] = i < first || (!moe &&
			    strncmp(m.params[i].name, "visual.", 7) == 0);
		memset(skip, 1, v.nparams);
		for (int i = 0; i < v.nparams; i++) {
			char a[112];
			snprintf(a, sizeof(a), "%s.lora_A", v.params[i].name);
			const struct vlm_param *p = vlm_model_param(&m, a);
			fold[i] = p && !frozen[p - m.params];
		}
		struct vlm_pack ap, none;
		assert_int_equal(vlm_pack_init(&ap, &m, frozen), 0);
		assert_int_equal(vlm_pack_init(&none, &v, skip), 0);
		float *full = calloc(m.nfloats, 4), *ga = calloc(ap.n, 4);
		struct fold_ctx f = { &m, ga, &ap, 0 };
		/* the reference: every gradient in the slab, then the pairs */
		grad_step(&v, NULL, NULL, full);
		assert_int_equal(vlm_lora_grad(&m, full), 0);
		/* folded: no slab at all (one float that stays), on the
		 * host and on a device (the fold gets host copies) */
		const struct vlm_backend *bes[2] = { vlm_backend_get("cpu"),
			fake_device() };
		for (int d = 0; d < 2; d++) {
			memset(ga, 0, ap.n * 4);
			f.calls = 0;
			fold_backward(bes[d], &v, &none, fold, &f);
			int n = 0, nf = 0;
			for (int i = 0; i < v.nparams; i++)
				nf += fold[i];
			for (int i = first; i < m.nparams; i++) {
				if (frozen[i])
					continue;
				assert_memory_equal(ga + ap.off[i], full +
				    m.params[i].off, m.params[i].n * 4);
				n++;
			}
			print_message("%s on %s: %d adapted weights folded "
			    "(%d calls), %d adapter tensors of %d trained, "
			    "equal\n", moe ? "one-tower moe" : "two towers",
			    bes[d]->name, nf, f.calls, n, m.nparams - first);
			assert_int_equal(f.calls, nf);
			assert_true(n > 0 && n == 2 * nf);
		}
		vlm_pack_release(&ap);
		vlm_pack_release(&none);
		free(full), free(ga), free(frozen), free(skip), free(fold);
		vlm_lora_view_release(&v);
		vlm_model_release(&m);
	}
}

/* RUN/latest -> a checkpoint whose optim.safetensors holds n moments
 * each, written by hand: adamw.params list (NULL: the full layout of
 * before, every parameter at its slab offset). */
static void
write_moments(const char *run, int64_t n, const float *mm, const float *vv,
    const char *list)
{
	char dir[4400], f[4500];
	const char *names[2] = { "adamw.m", "adamw.v" };
	const char *keys[2] = { "adamw.step", "adamw.params" };
	const char *vals[2] = { "3", list };
	struct vlm_tensor t[2] = {
		{ VLM_DTYPE_F32, 1, { n }, (void *)mm },
		{ VLM_DTYPE_F32, 1, { n }, (void *)vv },
	};

	snprintf(dir, sizeof(dir), "%s/ckpt-00000003", run);
	assert_int_equal(mkdir(run, 0777), 0);
	assert_int_equal(mkdir(dir, 0777), 0);
	snprintf(f, sizeof(f), "%s/optim.safetensors", dir);
	assert_int_equal(vlm_st_save(f, names, t, 2, keys, vals, list ? 2 :
	    1), 0);
	snprintf(f, sizeof(f), "%s/latest", run);
	assert_int_equal(symlink("ckpt-00000003", f), 0);
}

/* Moments files that do not fit m are refused, saying why. */
static void
refused(const struct vlm_model *m, struct vlm_optim *l, const char *name,
    int64_t n, const char *list, const char *why)
{
	char run[4200];
	float *x = calloc(n, sizeof(float));

	snprintf(run, sizeof(run), "%s/%s", test_tmpdir(), name);
	write_moments(run, n, x, x, list);
	assert_int_equal(vlm_ckpt_load_optim(run, m, l), -1);
	print_message("%s\n", vlm_errmsg());
	assert_non_null(strstr(vlm_errmsg(), why));
	free(x);
}

static void
test_ckpt_moments(void **state)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_optim o, l;
	struct vlm_train_state st;
	char run[4200], old[4200];

	(void)state;
	variant(&c, 0);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	uint8_t *img = calloc(m.nparams, 1), *txt = calloc(m.nparams, 1);
	mask(&m, 0, img);
	mask(&m, 1, txt);
	vlm_optim_defaults(&o);
	assert_int_equal(vlm_optim_init(&o, &m, img), 0);
	randn_fill(o.m, o.pack.n, 1);
	randn_fill(o.v, o.pack.n, 2);
	o.step = 7;
	memset(&st, 0, sizeof(st));
	st.step = 7;
	snprintf(run, sizeof(run), "%s/run", test_tmpdir());
	assert_int_equal(mkdir(run, 0777), 0);
	assert_int_equal(vlm_ckpt_save(run, &m, &o, &st, 0), 0);
	/* the same parameters trained: the moments back bit for bit */
	vlm_optim_defaults(&l);
	assert_int_equal(vlm_optim_init(&l, &m, img), 0);
	assert_int_equal(vlm_ckpt_load_optim(run, &m, &l), 0);
	assert_int_equal(l.step, 7);
	assert_memory_equal(l.m, o.m, o.pack.n * 4);
	assert_memory_equal(l.v, o.v, o.pack.n * 4);
	vlm_optim_release(&l);
	/* the image tower trained now: its moments are not in the file */
	assert_int_equal(vlm_optim_init(&l, &m, txt), 0);
	assert_int_equal(vlm_ckpt_load_optim(run, &m, &l), -1);
	print_message("%s\n", vlm_errmsg());
	assert_non_null(strstr(vlm_errmsg(), "optim.safetensors': no moments "
	    "for 'visual."));
	vlm_optim_release(&l);
	/* a full-layout file of before: each trained parameter's part */
	float *fm = calloc(m.nfloats, 4), *fv = calloc(m.nfloats, 4);
	randn_fill(fm, m.nfloats, 3);
	randn_fill(fv, m.nfloats, 4);
	snprintf(old, sizeof(old), "%s/old", test_tmpdir());
	write_moments(old, m.nfloats, fm, fv, NULL);
	assert_int_equal(vlm_optim_init(&l, &m, txt), 0);
	assert_int_equal(vlm_ckpt_load_optim(old, &m, &l), 0);
	assert_int_equal(l.step, 3);
	for (int i = 0; i < m.nparams; i++) {
		const struct vlm_param *q = &m.params[i];
		if (txt[i])
			continue;
		assert_memory_equal(l.m + l.pack.off[i], fm + q->off, q->n * 4);
		assert_memory_equal(l.v + l.pack.off[i], fv + q->off, q->n * 4);
	}
	refused(&m, &l, "short", m.nfloats - 1, NULL, "optimizer state "
	    "does not fit the model");
	refused(&m, &l, "unknown", 1, "nosuch", "adamw.params: unknown "
	    "parameter 'nosuch'");
	refused(&m, &l, "twice", 2, "logit_scale,logit_scale", "adamw.params: "
	    "repeated parameter 'logit_scale'");
	vlm_optim_release(&l);
	vlm_optim_release(&o);
	vlm_model_release(&m);
	free(fm), free(fv), free(img), free(txt);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backward_packed),
		cmocka_unit_test(test_optim_packed),
		cmocka_unit_test(test_lora_fold),
		cmocka_unit_test(test_ckpt_moments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
