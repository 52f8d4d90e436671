/*
 * test-model-map.c - model files mapped, not copied (model/model.c,
 * base/file.c): a saved model starts its data 64-byte aligned and loads
 * with m->w pointing into the mapping, bit for bit the copy path's
 * weights and features; files written before alignment, F16 files and
 * stdin load through the copy path; a write to a mapped model is
 * copy-on-write (the file keeps its bytes); inference loads are
 * read-only (a stray write faults).
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"

#define B 3

static void
tiny(struct vlm_model *m)
{
	struct vlm_config c;

	tiny_grad_config(&c);
	c.family = VLM_TWO_TOWER;
	c.moe.experts = 0;
	assert_int_equal(vlm_model_init(m, &c), 0);
	vlm_model_randomize(m, 5);
}

static const char *
tpath(const char *name)
{
	static char buf[2][4200];
	static int k;

	k ^= 1;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", test_tmpdir(), name);
	return buf[k];
}

/* The whole of a file, malloc'ed; *n its size. */
static unsigned char *
slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	unsigned char *p;
	long len;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	rewind(f);
	assert_non_null(p = malloc((size_t)len));
	assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*n = (size_t)len;
	return p;
}

/*
 * dst := src as a writer padding to 8 only (the reference writer, and
 * vlm before alignment) would have written it: the header's trailing
 * spaces cut to a multiple of 8 that leaves the data unaligned (the
 * data section, datasize bytes, ends the file).
 */
static void
unalign(const char *src, const char *dst, size_t datasize)
{
	size_t n, len, hlen;
	unsigned char *p = slurp(src, &n), le[8];
	FILE *f;

	hlen = n - 8 - datasize;

	for (len = hlen; p[8 + len - 1] == ' '; len--)
		;
	while (len % 8 || (8 + len) % 64 == 0)
		len++; /* the spaces are still there */
	assert_true(len <= hlen);
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(len >> (8 * i));
	assert_non_null(f = fopen(dst, "wb"));
	assert_int_equal(fwrite(le, 1, 8, f), 8);
	assert_int_equal(fwrite(p + 8, 1, len, f), len);
	assert_int_equal(fwrite(p + 8 + hlen, 1, n - 8 - hlen, f),
	    n - 8 - hlen);
	assert_int_equal(fclose(f), 0);
	free(p);
}

/* Image and text features of m on a fixed batch: out (2, B, embed). */
static void
features(const struct vlm_model *m, float *out)
{
	float img[B * 3 * 16 * 16];
	int32_t ids[B * 7] = { 0 };
	struct vlm_run *r;
	struct vlm_rng rng;
	size_t E = (size_t)m->cfg.embed_dim;

	vlm_rng_seed(&rng, 11);
	for (size_t i = 0; i < sizeof(img) / sizeof(*img); i++)
		img[i] = (float)vlm_rng_normal(&rng);
	for (int k = 0; k < B; k++) { /* EOT = the largest id */
		for (int t = 0; t < 2 + k; t++)
			ids[k * 7 + t] = 1 + vlm_rng_below(&rng, 37);
		ids[k * 7 + 2 + k] = 39;
	}
	assert_non_null(r = vlm_run_new(m, B, B, 0));
	assert_int_equal(vlm_forward(r, m, img, ids), 0);
	memcpy(out, vlm_run_features(r, 0, 0), B * E * sizeof(float));
	memcpy(out + B * E, vlm_run_features(r, 1, 0), B * E * sizeof(float));
	vlm_run_free(r);
}

/* A saved model: data aligned, loaded mapped, the very same floats. */
static void
test_mapped(void **state)
{
	const char *p = tpath("m.safetensors");
	struct vlm_model a, b;
	size_t at;

	(void)state;
	tiny(&a);
	assert_int_equal(vlm_model_save(&a, p), 0);
	assert_int_equal(vlm_model_load(&b, p), 0);
	assert_true(vlm_model_mapped(&b));
	assert_int_equal(b.nfloats, a.nfloats);
	/* the slab is the file's data section (its end), in place, aligned */
	at = b.file.size - b.nfloats * sizeof(float);
	assert_int_equal(at % 64, 0);
	assert_ptr_equal(b.w, b.file.base + at);
	assert_memory_equal(b.w, a.w, a.nfloats * sizeof(float));
	vlm_model_release(&b);
	assert_null(b.file.base);
	vlm_model_release(&a);
}

/* A file written before alignment: the copy path, the same features. */
static void
test_unaligned(void **state)
{
	const char *p = tpath("m.safetensors"), *q = tpath("old.safetensors");
	struct vlm_model a, b, c;
	float fa[2 * B * 8], fb[2 * B * 8], fc[2 * B * 8];

	(void)state;
	tiny(&a);
	assert_int_equal(a.cfg.embed_dim, 8);
	assert_int_equal(vlm_model_save(&a, p), 0);
	unalign(p, q, a.nfloats * sizeof(float));
	assert_int_equal(vlm_model_load(&b, p), 0);
	assert_int_equal(vlm_model_load(&c, q), 0);
	assert_true(vlm_model_mapped(&b));
	assert_false(vlm_model_mapped(&c));
	assert_memory_equal(c.w, a.w, a.nfloats * sizeof(float));
	features(&a, fa);
	features(&b, fb);
	features(&c, fc);
	assert_memory_equal(fb, fa, sizeof(fa));
	assert_memory_equal(fc, fa, sizeof(fa));
	vlm_model_release(&a);
	vlm_model_release(&b);
	vlm_model_release(&c);
}

/* F16 tensors need a conversion: copied, each value the F16 rounding. */
static void
test_f16(void **state)
{
	const char *p = tpath("h.safetensors");
	const char *keys[] = { "vlm.config" }, *vals[1];
	struct vlm_model a, b;
	const char **names;
	struct vlm_tensor *ts;
	uint16_t *h;

	(void)state;
	tiny(&a);
	assert_non_null(names = calloc(a.nparams, sizeof(*names)));
	assert_non_null(ts = calloc(a.nparams, sizeof(*ts)));
	assert_non_null(h = calloc(a.nfloats, sizeof(*h)));
	assert_int_equal(vlm_convert_floats(h, VLM_DTYPE_F16, a.w,
	    VLM_DTYPE_F32, a.nfloats), 0);
	for (int i = 0; i < a.nparams; i++) {
		names[i] = a.params[i].name;
		ts[i].dtype = VLM_DTYPE_F16;
		ts[i].ndim = a.params[i].ndim;
		memcpy(ts[i].shape, a.params[i].shape, sizeof(ts[i].shape));
		ts[i].data = h + a.params[i].off;
	}
	assert_non_null(vals[0] = vlm_config_to_json_alloc(&a.cfg));
	assert_int_equal(vlm_st_save(p, names, ts, a.nparams, keys, vals, 1),
	    0);
	assert_int_equal(vlm_model_load(&b, p), 0);
	assert_false(vlm_model_mapped(&b));
	for (int64_t i = 0; i < a.nfloats; i++)
		assert_true(b.w[i] == vlm_f16_to_f32(h[i]));
	free((char *)vals[0]);
	free(names);
	free(ts);
	free(h);
	vlm_model_release(&a);
	vlm_model_release(&b);
}

/* Training writes its weights: pages become private, the file stays. */
static void
test_copy_on_write(void **state)
{
	const char *p = tpath("m.safetensors");
	struct vlm_model a, b, c;
	int64_t last;

	(void)state;
	tiny(&a);
	assert_int_equal(vlm_model_save(&a, p), 0);
	assert_int_equal(vlm_model_load(&b, p), 0);
	assert_true(vlm_model_mapped(&b));
	last = b.nfloats - 1;
	b.w[0] = 123.0f;
	b.w[last] = -7.0f;
	assert_int_equal(vlm_model_load(&c, p), 0);
	assert_true(c.w[0] == a.w[0] && c.w[last] == a.w[last]);
	assert_true(b.w[0] == 123.0f && b.w[last] == -7.0f);
	vlm_model_release(&c);
	/* saving the written model over its own file: a new file, renamed */
	assert_int_equal(vlm_model_save(&b, p), 0);
	assert_true(b.w[1] == a.w[1]);
	assert_int_equal(vlm_model_load(&c, p), 0);
	assert_true(c.w[0] == 123.0f && c.w[1] == a.w[1]);
	vlm_model_release(&a);
	vlm_model_release(&b);
	vlm_model_release(&c);
}

/* Inference loads are read-only: a stray write faults (in a child). */
static void
test_read_only(void **state)
{
	const char *p = tpath("m.safetensors");
	struct vlm_model a, b;
	pid_t pid;
	int st;

	(void)state;
	tiny(&a);
	assert_int_equal(vlm_model_save(&a, p), 0);
	vlm_model_release(&a);
	assert_int_equal(vlm_model_load_merged(&b, p), 0);
	assert_true(vlm_model_mapped(&b));
	fflush(NULL);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		((volatile float *)b.w)[0] = 1.0f;
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	/* killed by SIGSEGV; under ASan its report and a failing exit */
	assert_true(WIFSIGNALED(st) || (WIFEXITED(st) &&
	    WEXITSTATUS(st) != 0));
	vlm_model_release(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mapped),
		cmocka_unit_test(test_unaligned),
		cmocka_unit_test(test_f16),
		cmocka_unit_test(test_copy_on_write),
		cmocka_unit_test(test_read_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
