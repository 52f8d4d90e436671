/*
 * test-bf16.c - bf16 inference (--precision bf16): the rounding
 * (vlm_f32_to_bf16, and the _cpu kernel's own) against an independent
 * oracle (the nearer of the two bf16 neighbours, ties to the even one,
 * in exact double arithmetic) and special cases;
 * each backend's bf16 ops against the plain reference on odd sizes and
 * thread counts; the OpenCLIP fixture model's features in bf16 against
 * fp32 (cosine >= 0.999, the target of issue 15).
 */
#include <math.h>

#include "testutil.h"
#include "kernels.h"

static float
from_bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* The bf16 nearest to finite x: its two neighbours by truncation, the
 * nearer in double (exact), a tie to the even one; past the largest
 * bf16 by half an ulp or more, infinity (IEEE round to nearest). */
static uint16_t
oracle(float x)
{
	uint32_t u;
	uint16_t lo;
	double d, dlo, dhi;

	memcpy(&u, &x, sizeof(u));
	lo = (uint16_t)(u >> 16);
	if ((lo & 0x7fff) == 0x7f7f) { /* the largest finite magnitude */
		d = fabs((double)x) - (double)from_bits(0x7f7f0000u);
		return d >= ldexp(1, 127 - 8) ? (uint16_t)((lo & 0x8000) |
		    0x7f80) : lo;
	}
	d = fabs((double)x);
	dlo = d - fabs((double)vlm_bf16_to_f32(lo));
	dhi = fabs((double)vlm_bf16_to_f32((uint16_t)(lo + 1))) - d;
	if (dlo < dhi || (dlo == dhi && !(lo & 1)))
		return lo;
	return lo + 1;
}

static void
test_round(void **state)
{
	static const struct { uint32_t in; uint16_t out; } cases[] = {
		{ 0x3f800000, 0x3f80 }, /* 1 */
		{ 0x3f808000, 0x3f80 }, /* tie, even below */
		{ 0x3f818000, 0x3f82 }, /* tie, even above */
		{ 0x3f808001, 0x3f81 }, /* just past the tie */
		{ 0x7f7fffff, 0x7f80 }, /* FLT_MAX rounds to inf */
		{ 0xff800000, 0xff80 }, /* -inf */
		{ 0x7fc00001, 0x7fc0 }, /* NaN, quiet */
		{ 0xffa00000, 0xffe0 }, /* -NaN, signalling: made quiet */
		{ 0x00000001, 0x0000 }, /* smallest subnormal: to 0 */
		{ 0x00018000, 0x0002 }, /* subnormal tie, even above: kept */
		{ 0x80000000, 0x8000 }, /* -0 */
	};
	struct vlm_rng rng;
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		assert_int_equal(vlm_f32_to_bf16(from_bits(cases[i].in)),
		    cases[i].out);
	vlm_rng_seed(&rng, 7);
	for (int i = 0; i < 1000000; i++) {
		uint32_t u = (uint32_t)vlm_rng_u64(&rng);
		float x = from_bits(u);
		if (isnan(x) || isinf(x))
			continue;
		bad += vlm_f32_to_bf16(x) != oracle(x);
		bad += vlm_bf16_to_f32(vlm_f32_to_bf16(x)) !=
		    from_bits((uint32_t)vlm_f32_to_bf16(x) << 16);
	}
	assert_int_equal(bad, 0);
	/* the _cpu kernel's own rounding, through a 1x1 weight of 1.0 */
	enum { N = 65536 };
	float *x = malloc(N * 4), *y = malloc(N * 4), sc[N + 1];
	uint16_t one = 0x3f80;
	for (int i = 0; i < N; i++) {
		x[i] = from_bits((uint32_t)vlm_rng_u64(&rng));
		if (isinf(x[i]) || fabsf(x[i]) > 1e38f)
			x[i] = 1;
	}
	x[0] = from_bits(0x3f808000), x[1] = from_bits(0x3f818000);
	vlm_linear_fwd_bf16_cpu(y, sc, x, &one, NULL, N, 1, 1);
	for (int i = 0; i < N; i++) {
		float want = vlm_bf16_to_f32(vlm_f32_to_bf16(x[i]));
		bad += isnan(want) ? !isnan(y[i]) :
		    memcmp(&want, &y[i], 4) != 0;
	}
	assert_int_equal(bad, 0);
	free(x), free(y);
}

static void
fill(float *x, size_t n, struct vlm_rng *rng)
{
	for (size_t i = 0; i < n; i++)
		x[i] = vlm_rng_normal(rng);
}

/* Each backend's bf16 ops against the references, odd sizes, 1 and 3
 * threads, with and without bias. */
static void
test_backend_ops(void **state)
{
	static const int sizes[][3] = { { 1, 5, 3 }, { 7, 67, 130 },
		{ 33, 300, 41 }, { 130, 96, 401 }, { 600, 17, 770 } };
	struct vlm_rng rng;

	(void)state;
	vlm_rng_seed(&rng, 3);
	for (int b = 0; vlm_backend_at(b); b++) {
		const struct vlm_backend *be = vlm_backend_at(b);
		if (!be->linear_fwd_bf16 || !be->bf16_from_f32) {
			print_message("%s: no bf16 ops\n", be->name);
			continue;
		}
		for (int t = 1; t <= 3; t += 2) {
			vlm_threads_set(t);
			for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes);
			    s++) {
				int N = sizes[s][0], IN = sizes[s][1];
				int OUT = sizes[s][2];
				size_t nx = (size_t)N * IN, nw = (size_t)OUT * IN;
				size_t ns = vlm_linear_bf16_scratch_floats(N, IN,
				    OUT);
				float *x = malloc(nx * 4), *w = malloc(nw * 4);
				float *bias = malloc(OUT * 4);
				float *y = malloc((size_t)N * OUT * 4);
				float *yr = malloc((size_t)N * OUT * 4);
				float *sc = malloc(ns * 4);
				uint16_t *wb = malloc(nw * 2), *wr = malloc(nw * 2);
				fill(x, nx, &rng), fill(w, nw, &rng);
				fill(bias, OUT, &rng);
				be->bf16_from_f32(wb, w, nw);
				vlm_bf16_from_f32_ref(wr, w, nw);
				assert_memory_equal(wb, wr, nw * 2);
				for (int hb = 0; hb < 2; hb++) {
					const float *bb = hb ? bias : NULL;
					be->linear_fwd_bf16(y, sc, x, wb, bb, N,
					    IN, OUT);
					vlm_linear_fwd_bf16_ref(yr, NULL, x, wr,
					    bb, N, IN, OUT);
					double e = rel_err(y, yr,
					    (size_t)N * OUT);
					if (!(e < 1e-5))
						fail_msg("%s %d thr %dx%dx%d "
						    "bias %d: rel err %.2e",
						    be->name, t, N, IN, OUT,
						    hb, e);
				}
				free(x), free(w), free(bias), free(y);
				free(yr), free(sc), free(wb), free(wr);
			}
		}
	}
	vlm_threads_set(0);
}

/* Inputs and weights that are bf16 numbers already: the bf16 layer is
 * the fp32 one (the products are exact; only the order of the sums may
 * differ); inputs less than half an ulp off round back to them. */
static void
test_exact_on_bf16_values(void **state)
{
	enum { N = 9, IN = 70, OUT = 11 };
	float x[N * IN], w[OUT * IN], y[N * OUT], y32[N * OUT];
	float sc[(N + OUT) * IN];
	uint16_t wb[OUT * IN];
	struct vlm_rng rng;

	(void)state;
	vlm_rng_seed(&rng, 5);
	fill(x, N * IN, &rng), fill(w, OUT * IN, &rng);
	for (int i = 0; i < N * IN; i++)
		x[i] = vlm_bf16_to_f32(vlm_f32_to_bf16(x[i]));
	vlm_bf16_from_f32_ref(wb, w, OUT * IN);
	for (int i = 0; i < OUT * IN; i++)
		w[i] = vlm_bf16_to_f32(wb[i]);
	vlm_linear_fwd_bf16_cpu(y, sc, x, wb, NULL, N, IN, OUT);
	vlm_linear_fwd_ref(y32, x, w, NULL, N, IN, OUT);
	assert_true(rel_err(y, y32, N * OUT) < 1e-6);
	/* x (1 + 2^-10) is under half a bf16 ulp from x */
	for (int i = 0; i < N * IN; i++)
		x[i] *= 1.0f + 1.0f / 1024;
	vlm_linear_fwd_bf16_cpu(y, sc, x, wb, NULL, N, IN, OUT);
	assert_true(rel_err(y, y32, N * OUT) < 1e-6);
}

/* Smallest cosine between rows of a and b (n, E). */
static double
min_cosine(const float *a, const float *b, int n, int E)
{
	double worst = 1;

	for (int i = 0; i < n; i++) {
		double ab = 0, aa = 0, bb = 0;
		for (int k = 0; k < E; k++) {
			ab += (double)a[i * E + k] * b[i * E + k];
			aa += (double)a[i * E + k] * a[i * E + k];
			bb += (double)b[i * E + k] * b[i * E + k];
		}
		worst = fmin(worst, ab / sqrt(aa * bb));
	}
	return worst;
}

/* One tower of the fixture model encoded in fp32 and bf16; then the
 * tower's f32 linear weights dropped: bf16 gives the same bits (it reads
 * none of them), fp32 other ones (they are gone). */
static void
features_both(struct vlm_model *m, int text, const void *in, int n,
    float *f32, float *b16)
{
	struct vlm_encoder e;
	float *again = malloc(sizeof(float) * n * m->cfg.embed_dim);
	size_t bytes = sizeof(float) * n * m->cfg.embed_dim;

	assert_int_equal(vlm_encoder_init(&e, m, text, n), 0);
	assert_int_equal(vlm_encode(&e, in, n, f32, 0), 0);
	assert_int_equal(vlm_encoder_set_precision(&e, VLM_PRECISION_BF16),
	    0);
	assert_int_equal(vlm_encode(&e, in, n, b16, 0), 0);
	/* a short batch runs on a smaller run (a dense model): in bf16 too,
	 * its first row as the whole batch's to rounding, not fp32's */
	if (n > 1) {
		size_t E = m->cfg.embed_dim;
		assert_int_equal(vlm_encode(&e, in, 1, again, 0), 0);
		assert_true(rel_err(again, b16, E) < 1e-5);
		assert_true(rel_err(again, f32, E) > 1e-5);
	}
	vlm_model_drop_f32(m, text);
	assert_int_equal(vlm_encode(&e, in, n, again, 0), 0);
	assert_memory_equal(again, b16, bytes);
	assert_int_equal(vlm_encoder_set_precision(&e, VLM_PRECISION_FP32),
	    0);
	assert_int_equal(vlm_encode(&e, in, n, again, 0), 0);
	assert_true(memcmp(again, f32, bytes) != 0);
	vlm_encoder_release(&e);
	free(again);
}

static void
test_fixture_features(void **state)
{
	char w[4096], c[4096];
	struct vlm_model m;
	struct vlm_tensor img;
	float f32[16 * 512], b16[16 * 512];
	int32_t ids[16 * 77];

	(void)state;
	snprintf(w, sizeof(w), "%s",
	    fixture("openclip-tiny/weights.openclip.safetensors"));
	snprintf(c, sizeof(c), "%s",
	    fixture("openclip-tiny/open_clip_config.json"));
	NEED_FIXTURE(w);
	if (vlm_model_import(&m, w, c) < 0)
		fail_msg("%s", vlm_errmsg());
	int E = m.cfg.embed_dim;
	fixture_f32("openclip-tiny/image_input.npy", &img);
	int64_t nt, T;
	int32_t *tok = fixture_ids("openclip-tiny/text_tokens.npy", &nt, &T);
	int B = (int)(nt / T);
	assert_true(img.shape[0] * E <= 16 * 512 && B <= 16 &&
	    T == m.cfg.context);
	memcpy(ids, tok, nt * sizeof(*ids));

	features_both(&m, 0, img.data, img.shape[0], f32, b16);
	double ci = min_cosine(f32, b16, img.shape[0], E);
	double di = rel_err(b16, f32, img.shape[0] * E);
	features_both(&m, 1, ids, B, f32, b16);
	double ct = min_cosine(f32, b16, B, E);
	double dt = rel_err(b16, f32, B * E);
	print_message("bf16 vs fp32: images min cosine %.6f (rel err %.1e), "
	    "texts %.6f (%.1e)\n", ci, di, ct, dt);
	assert_true(ci >= 0.999 && ct >= 0.999);
	assert_true(di > 1e-5 && dt > 1e-5); /* bf16 did run */
	free(img.data), free(tok);
	vlm_model_release(&m);
}

static void
test_parse_and_refusals(void **state)
{
	enum vlm_precision p;
	struct vlm_model m;
	struct vlm_config c;
	struct vlm_run *r;
	uint16_t *wb;

	(void)state;
	assert_int_equal(vlm_precision_parse("bf16", &p), 0);
	assert_int_equal(p, VLM_PRECISION_BF16);
	assert_int_equal(vlm_precision_parse("fp32", &p), 0);
	assert_int_equal(p, VLM_PRECISION_FP32);
	assert_int_equal(vlm_precision_parse("fp16", &p), -1);
	assert_non_null(strstr(vlm_errmsg(), "fp16"));
	tiny_grad_config(&c);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	assert_non_null(r = vlm_run_new_on(vlm_backend_get("cpu"), &m, 2, 2,
	    1));
	assert_non_null(wb = vlm_model_bf16_alloc(&m, vlm_backend_get("cpu"),
	    -1));
	assert_int_equal(vlm_run_set_bf16(r, &m, wb), -1);
	assert_non_null(strstr(vlm_errmsg(), "training"));
	vlm_backend_get("cpu")->free(wb);
	vlm_run_free(r);
	vlm_model_release(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round),
		cmocka_unit_test(test_backend_ops),
		cmocka_unit_test(test_exact_on_bf16_values),
		cmocka_unit_test(test_fixture_features),
		cmocka_unit_test(test_parse_and_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
