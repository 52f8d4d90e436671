/*
 * test-preprocess.c - OpenCLIP's image preprocessing (libcore/data/resample.c,
 * preprocess.c) against OpenCLIP's own output and against PIL.
 *
 * The PIL comparisons feed PIL's decoded pixels in, so they test the
 * resampling alone, whatever the decoder does.
 */
#include <math.h>

#include "testutil.h"
#include "pil-ref.h"

/* OpenCLIP 3.3.0's validation transform of test_image.png, S = 32. */
static void
test_openclip_fixture(void **state)
{
	char png[4096];
	struct vlm_image im;
	struct vlm_tensor ref;
	float out[3 * 32 * 32];
	double maxd = 0;

	(void)state;
	snprintf(png, sizeof(png), "%s", fixture("openclip-tiny/"
	    "test_image.png"));
	NEED_FIXTURE(png);
	NEED_FIXTURE(fixture("openclip-tiny/preprocess_out.npy"));
	assert_int_equal(vlm_npy_load(fixture("openclip-tiny/"
	    "preprocess_out.npy"), &ref), 0);
	assert_int_equal(ref.dtype, VLM_DTYPE_F32);
	assert_int_equal(vlm_tensor_numel(&ref), 3 * 32 * 32);
	assert_int_equal(vlm_image_load(&im, png, NULL), 0);
	assert_int_equal(vlm_preprocess(out, &im, 32, vlm_openai_mean,
	    vlm_openai_std), 0);
	for (int i = 0; i < 3 * 32 * 32; i++)
		maxd = fmax(maxd, fabs(out[i] - ((float *)ref.data)[i]));
	print_message("fixture: max abs diff %g\n", maxd);
	assert_true(maxd <= 1e-5);
	/* NULL mean and std are OpenAI's */
	assert_int_equal(vlm_preprocess(out, &im, 32, NULL, NULL), 0);
	assert_memory_equal(out, ref.data, sizeof(out));
	vlm_image_release(&im);
	free(ref.data);
}

/* Accumulated comparison of our bytes with PIL's. */
struct tally {
	size_t n, off1, over1;
	int maxd, cases;
};

static void
tally_add(struct tally *t, const uint8_t *a, const uint8_t *b, size_t n,
    const char *what)
{
	int maxd;
	size_t over1 = count_diff(a, b, n, 1, &maxd);

	t->off1 += count_diff(a, b, n, 0, &maxd);
	t->over1 += over1;
	t->n += n;
	t->cases++;
	if (maxd > t->maxd)
		t->maxd = maxd;
	if (maxd > 2 || over1 * 1000 > n)
		fail_msg("%s: max diff %d, %zu of %zu over 1", what, maxd,
		    over1, n);
}

/* Tolerance: 1/255 on 99.9% of the values, 2/255 everywhere. */
static void
tally_check(const struct tally *t, const char *what)
{
	print_message("%s: %d cases, %zu values, %zu differ, %zu by more "
	    "than 1, max %d\n", what, t->cases, t->n, t->off1, t->over1,
	    t->maxd);
	assert_true(t->cases > 0);
	assert_true(t->maxd <= 2 && t->over1 * 1000 <= t->n);
}

/* PIL's decode of a reference image (FILE.VARIANT.rgb) as a vlm_image. */
static void
ref_image(struct vlm_image *im, const char *d, const char *file,
    const char *variant, int w, int h)
{
	char name[400];

	snprintf(name, sizeof(name), "%s.%s.rgb", file, variant);
	im->w = w;
	im->h = h;
	im->rgb = read_ref(d, name, (size_t)w * h * 3);
}

static void
test_resize_matches_pil(void **state)
{
	const char *d = test_tmpdir();
	char line[512], file[256], variant[32], name[400], path[4400];
	struct vlm_image im = {0};
	struct tally pre = {0}, crop = {0};
	struct vlm_crop c;
	int w = 0, h = 0, S;
	FILE *refs;

	(void)state;
	NEED_PIL_REFS(d);
	snprintf(path, sizeof(path), "%s/refs.txt", d);
	assert_non_null(refs = fopen(path, "r"));
	while (fgets(line, sizeof(line), refs)) {
		uint8_t *ref, *out;

		if (sscanf(line, "dec %255s %31s %d %d", file, variant, &w,
		    &h) == 4) {
			vlm_image_release(&im);
			ref_image(&im, d, file, variant, w, h);
			continue;
		}
		if (sscanf(line, "pre %255s %31s %d", file, variant, &S) == 3)
			snprintf(name, sizeof(name), "%s.%s.%d.pre", file,
			    variant, S);
		else if (sscanf(line, "crop %255s %d %d %d %d %d", file, &c.x,
		    &c.y, &c.w, &c.h, &S) == 6)
			snprintf(name, sizeof(name), "%s.crop.%d.%d.%d.%d.%d"
			    ".pre", file, c.x, c.y, c.w, c.h, S);
		else
			fail_msg("bad line in refs.txt: %s", line);
		ref = read_ref(d, name, (size_t)S * S * 3);
		assert_non_null(out = malloc((size_t)S * S * 3));
		if (line[0] == 'p') {
			assert_int_equal(vlm_image_resize_crop(out, &im, S), 0);
			tally_add(&pre, out, ref, (size_t)S * S * 3, name);
		} else {
			assert_int_equal(vlm_image_crop_resize(out, &im, &c, S),
			    0);
			tally_add(&crop, out, ref, (size_t)S * S * 3, name);
		}
		free(out);
		free(ref);
	}
	fclose(refs);
	vlm_image_release(&im);
	tally_check(&pre, "resize + centre crop");
	tally_check(&crop, "crop + resize");
	assert_true(pre.cases >= 100 && crop.cases >= 15);
}

/*
 * image_alpha resize-first against PIL, bit for bit: OpenCLIP's transform
 * of the images as opened (tests/pil-alpha.py: RGBA, LA, 16-bit RGBA and
 * LA, P with and without tRNS, bilevel, 16-bit gray, CMYK JPEG, odd
 * sizes), through
 * our decoder and resize, the centre crop and the crop-resize alike.
 */
static void
test_resize_first_matches_pil(void **state)
{
	static const struct vlm_image_opts o = {
		.alpha = VLM_ALPHA_RESIZE_FIRST };
	char d[4200], line[512], file[256], name[400], path[8800];
	struct vlm_image im = {0}, rgb = {0};
	struct vlm_crop c;
	int S, cases = 0, kinds[5] = {0}, differ = 0;
	FILE *refs;

	(void)state;
	if (!have_pil())
		skip();
	snprintf(d, sizeof(d), "%s/alpha", test_tmpdir());
	snprintf(path, sizeof(path), "mkdir -p '%s' && /usr/bin/python3 "
	    "tests/pil-alpha.py '%s'", d, d);
	assert_int_equal(system(path), 0);
	snprintf(path, sizeof(path), "%s/refs.txt", d);
	assert_non_null(refs = fopen(path, "r"));
	while (fgets(line, sizeof(line), refs)) {
		uint8_t *ref, *out;
		int maxd, crop = 0;

		if (sscanf(line, "first %255s %d", file, &S) == 2) {
			snprintf(name, sizeof(name), "%s.first.%d.pre", file,
			    S);
		} else if (sscanf(line, "firstcrop %255s %d %d %d %d %d",
		    file, &c.x, &c.y, &c.w, &c.h, &S) == 6) {
			snprintf(name, sizeof(name), "%s.fc.%d.%d.%d.%d.%d.pre",
			    file, c.x, c.y, c.w, c.h, S);
			crop = 1;
		} else {
			fail_msg("bad line in refs.txt: %s", line);
		}
		snprintf(path, sizeof(path), "%s/%s", d, file);
		assert_int_equal(vlm_image_load(&im, path, &o), 0);
		kinds[im.kind]++;
		ref = read_ref(d, name, (size_t)S * S * 3);
		assert_non_null(out = malloc((size_t)S * S * 3));
		assert_int_equal(crop ? vlm_image_crop_resize(out, &im, &c, S) :
		    vlm_image_resize_crop(out, &im, S), 0);
		if (count_diff(out, ref, (size_t)S * S * 3, 0, &maxd) != 0)
			fail_msg("%s: differs from PIL by up to %d", name,
			    maxd);
		/* convert-first (drop) must differ where the kind matters */
		assert_int_equal(vlm_image_load(&rgb, path, NULL), 0);
		assert_int_equal(crop ? vlm_image_crop_resize(out, &rgb, &c, S) :
		    vlm_image_resize_crop(out, &rgb, S), 0);
		differ += count_diff(out, ref, (size_t)S * S * 3, 0, &maxd) > 0;
		free(out);
		free(ref);
		vlm_image_release(&im);
		vlm_image_release(&rgb);
		cases++;
	}
	fclose(refs);
	print_message("resize-first: %d cases equal to PIL (%d of them "
	    "differ from convert-first); kinds rgb %d, alpha %d, nearest %d, "
	    "gray16 %d, cmyk %d\n", cases, differ, kinds[0], kinds[1],
	    kinds[2], kinds[3], kinds[4]);
	assert_true(cases >= 100 && kinds[0] && kinds[1] && kinds[2] &&
	    kinds[3] && kinds[4] && differ >= cases / 2);
}

/*
 * The whole training transform against PIL where its crop is forced:
 * scale (1, 1) and the image's own aspect ratio select the whole image.
 */
static void
test_train_whole_image(void **state)
{
	const struct vlm_augment a = {1.0, 1.0, 4.0 / 3, 4.0 / 3, 0, 0, 0, 0};
	const char *d = test_tmpdir();
	struct vlm_image im;
	struct vlm_rng r;
	float out[3 * 32 * 32], want[3 * 32 * 32];
	uint8_t *ref;

	(void)state;
	NEED_PIL_REFS(d);
	ref_image(&im, d, "q75-500x375.jpg", "drop", 500, 375);
	ref = read_ref(d, "q75-500x375.jpg.crop.0.0.500.375.32.pre",
	    32 * 32 * 3);
	vlm_rng_seed(&r, 5);
	assert_int_equal(vlm_preprocess_train(out, &im, 32, NULL, NULL, &a,
	    &r), 0);
	vlm_image_normalize(want, ref, 32, vlm_openai_mean, vlm_openai_std, 0);
	assert_true(rel_err(out, want, 3 * 32 * 32) < 1e-6);
	vlm_image_release(&im);
	free(ref);
}

/* RandomResizedCrop parameters stay in range, in the image, repeatable. */
static void
test_crop_params(void **state)
{
	const struct vlm_augment a = VLM_AUGMENT_DEFAULT;
	struct vlm_rng r1, r2;
	int distinct = 0, last_x = -1;

	(void)state;
	vlm_rng_seed(&r1, 42);
	vlm_rng_seed(&r2, 42);
	for (int i = 0; i < 2000; i++) {
		struct vlm_crop c, c2;
		double frac, ar;

		vlm_augment_crop(&c, 500, 375, &a, &r1);
		vlm_augment_crop(&c2, 500, 375, &a, &r2);
		assert_memory_equal(&c, &c2, sizeof(c));
		assert_true(c.x >= 0 && c.y >= 0 && c.w > 0 && c.h > 0);
		assert_true(c.x + c.w <= 500 && c.y + c.h <= 375);
		frac = (double)c.w * c.h / (500.0 * 375);
		ar = (double)c.w / c.h;
		/* rounding w and h moves these by well under 1% */
		assert_true(frac > 0.9 * 0.99 && frac < 1.0 * 1.01);
		assert_true(ar > 0.75 * 0.99 && ar < 4.0 / 3 * 1.01);
		distinct += c.x != last_x;
		last_x = c.x;
	}
	assert_true(distinct > 100);
}

/*
 * When no random crop fits (a strip far outside the ratio range),
 * torchvision falls back to a centre crop of the clamped ratio:
 * 7x300: w/h < 3/4, so w = 7, h = round(7 / 0.75) = 9, y = (300-9)//2;
 * 300x7: w/h > 4/3, so h = 7, w = round(7 * 4/3) = 9, x = 145.
 */
static void
test_crop_fallback(void **state)
{
	const struct vlm_augment a = VLM_AUGMENT_DEFAULT;
	struct vlm_rng r;
	struct vlm_crop c;

	(void)state;
	vlm_rng_seed(&r, 1);
	vlm_augment_crop(&c, 7, 300, &a, &r);
	assert_true(c.x == 0 && c.y == 145 && c.w == 7 && c.h == 9);
	vlm_augment_crop(&c, 300, 7, &a, &r);
	assert_true(c.x == 145 && c.y == 0 && c.w == 9 && c.h == 7);
	vlm_augment_crop(&c, 1, 1, &a, &r);
	assert_true(c.x == 0 && c.y == 0 && c.w == 1 && c.h == 1);
}

/* With hflip, a draw is either the unflipped output or its mirror. */
static void
test_hflip(void **state)
{
	struct vlm_augment a = VLM_AUGMENT_DEFAULT;
	struct vlm_image im = {.w = 37, .h = 29};
	struct vlm_rng r;
	float plain[3 * 16 * 16], flip[3 * 16 * 16];
	int nflip = 0, nsame = 0;

	(void)state;
	assert_non_null(im.rgb = malloc(37 * 29 * 3));
	vlm_rng_seed(&r, 3);
	for (int i = 0; i < 37 * 29 * 3; i++)
		im.rgb[i] = vlm_rng_u64(&r) >> 56;
	for (uint64_t seed = 0; seed < 40; seed++) {
		int mirrored = 1;

		vlm_rng_seed(&r, seed);
		a.hflip = 0;
		assert_int_equal(vlm_preprocess_train(plain, &im, 16, NULL,
		    NULL, &a, &r), 0);
		vlm_rng_seed(&r, seed);
		a.hflip = 1;
		assert_int_equal(vlm_preprocess_train(flip, &im, 16, NULL,
		    NULL, &a, &r), 0);
		if (!memcmp(plain, flip, sizeof(plain))) {
			nsame++;
			continue;
		}
		for (int i = 0; i < 3 * 16 * 16; i++)
			mirrored &= flip[i] == plain[i - i % 16 + 15 - i % 16];
		assert_true(mirrored);
		nflip++;
	}
	assert_true(nflip > 5 && nsame > 5);
	free(im.rgb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openclip_fixture),
		cmocka_unit_test(test_crop_params),
		cmocka_unit_test(test_crop_fallback),
		cmocka_unit_test(test_hflip),
		cmocka_unit_test(test_resize_matches_pil),
		cmocka_unit_test(test_resize_first_matches_pil),
		cmocka_unit_test(test_train_whole_image),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
