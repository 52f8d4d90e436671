/*
 * test-color.c - colour augmentation (vlm_color_apply, vlm_augment_color)
 * against PIL's ImageEnhance (Brightness, Contrast, Color) run by
 * Debian's python3 on the same random image, within the +-2 levels that
 * PIL's per-stage integer rounding (and its integer luma) allow; hue and
 * greyscale by their invariants; the random draws are reproducible and
 * absent when everything is off.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

#define N 256 /* 16 x 16 pixels */

static void
random_image(uint8_t *px)
{
	struct vlm_rng r;

	vlm_rng_seed(&r, 5);
	for (int i = 0; i < 3 * N; i++)
		px[i] = (uint8_t)vlm_rng_below(&r, 256);
}

static int
have_pil(void)
{
	return system("/usr/bin/python3 -c 'import numpy, PIL' "
	    ">/dev/null 2>&1") == 0;
}

/* PIL's enhancer `what` with factor f on px, into ref. */
static void
pil(const char *what, double f, const uint8_t *px, uint8_t *ref)
{
	char dir[] = "/tmp/vlm-color.XXXXXX", cmd[1024], path[256];
	FILE *fp;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/in.rgb", dir);
	assert_non_null(fp = fopen(path, "wb"));
	assert_int_equal(fwrite(px, 1, 3 * N, fp), 3 * N);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -c \"\n"
	    "from PIL import Image, ImageEnhance\n"
	    "im = Image.frombytes('RGB', (16, 16), open('%s/in.rgb', "
	    "'rb').read())\n"
	    "open('%s/out.rgb', 'wb').write(ImageEnhance.%s(im)"
	    ".enhance(%.17g).tobytes())\"", dir, dir, what, f);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/out.rgb", dir);
	assert_non_null(fp = fopen(path, "rb"));
	assert_int_equal(fread(ref, 1, 3 * N, fp), 3 * N);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static int
max_diff(const uint8_t *a, const uint8_t *b)
{
	int m = 0;

	for (int i = 0; i < 3 * N; i++)
		m = abs(a[i] - b[i]) > m ? abs(a[i] - b[i]) : m;
	return m;
}

static void
test_matches_pil(void **state)
{
	static const struct { const char *what; double f; } cases[] = {
		{ "Brightness", 0.63 }, { "Brightness", 1.37 },
		{ "Contrast", 0.6 }, { "Contrast", 1.4 },
		{ "Color", 0.0 }, { "Color", 0.7 }, { "Color", 1.35 },
	};
	uint8_t px[3 * N], out[3 * N], ref[3 * N];

	(void)state;
	if (!have_pil()) {
		print_message("skipping: /usr/bin/python3 lacks PIL/numpy\n");
		skip();
	}
	random_image(px);
	for (size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
		double f = cases[k].f;
		char w = cases[k].what[1];
		memcpy(out, px, sizeof(px));
		vlm_color_apply(out, N, w == 'r' ? f : 1, w == 'o' &&
		    cases[k].what[2] == 'n' ? f : 1, w == 'o' &&
		    cases[k].what[2] == 'l' ? f : 1, 0, 0);
		pil(cases[k].what, f, px, ref);
		print_message("%s %.2f: max diff %d\n", cases[k].what, f,
		    max_diff(out, ref));
		assert_true(max_diff(out, ref) <= 2);
	}
}

static void
test_hue_and_grey(void **state)
{
	uint8_t px[3 * N], out[3 * N];

	(void)state;
	random_image(px);
	memcpy(out, px, sizeof(px));
	vlm_color_apply(out, N, 1, 1, 1, 1.0, 0); /* a whole turn */
	assert_true(max_diff(out, px) <= 1);
	memcpy(out, px, sizeof(px));
	vlm_color_apply(out, N, 1, 1, 1, 0, 1);
	for (int i = 0; i < N; i++) {
		double y = 0.299 * px[3 * i] + 0.587 * px[3 * i + 1] +
		    0.114 * px[3 * i + 2];
		assert_int_equal(out[3 * i], out[3 * i + 1]);
		assert_int_equal(out[3 * i], out[3 * i + 2]);
		assert_true(fabs(out[3 * i] - y) <= 0.5 + 1e-9);
	}
	/* a grey pixel has no chroma to turn */
	uint8_t g[3] = { 77, 77, 77 };
	vlm_color_apply(g, 1, 1, 1, 1, 0.3, 0);
	assert_true(abs(g[0] - 77) <= 1 && abs(g[1] - 77) <= 1 &&
	    abs(g[2] - 77) <= 1);
	/* a half turn keeps the luma of unclipped pixels */
	uint8_t c[3] = { 120, 100, 90 };
	vlm_color_apply(c, 1, 1, 1, 1, 0.5, 0);
	assert_true(fabs(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] -
	    (0.299 * 120 + 0.587 * 100 + 0.114 * 90)) <= 1);
	assert_true(c[0] < 110 && c[2] > 100); /* warm became cool */
}

static void
test_draws(void **state)
{
	struct vlm_augment a = VLM_AUGMENT_DEFAULT;
	uint8_t px[3 * N], o1[3 * N], o2[3 * N];
	struct vlm_rng r1, r2;

	(void)state;
	random_image(px);
	memcpy(o1, px, sizeof(px));
	vlm_rng_seed(&r1, 9);
	r2 = r1;
	vlm_augment_color(o1, N, &a, &r1); /* all off: untouched, no draw */
	assert_memory_equal(o1, px, sizeof(px));
	assert_memory_equal(&r1, &r2, sizeof(r1));
	a.jitter = 0.4, a.hue = 0.1, a.gray = 0.2;
	memcpy(o1, px, sizeof(px));
	memcpy(o2, px, sizeof(px));
	vlm_augment_color(o1, N, &a, &r1);
	vlm_augment_color(o2, N, &a, &r2);
	assert_memory_equal(o1, o2, sizeof(o1)); /* same seed, same result */
	assert_true(max_diff(o1, px) > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_pil),
		cmocka_unit_test(test_hue_and_grey),
		cmocka_unit_test(test_draws),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
