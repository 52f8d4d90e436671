/*
 * test-plot.c - libcore/plot: charts written as PNG, decoded again with
 * libpng: the expected size, each series' colour where its points map,
 * the legend swatches, error bars, white elsewhere; and the errors.
 */
#include <math.h>
#include <png.h>

#include "testutil.h"

static char dir[] = "/tmp/vlm-plot.XXXXXX";

/* Decode path (8-bit RGB) into a malloc'ed (h,w,3) buffer. */
static unsigned char *
decode(const char *path, int *w, int *h)
{
	FILE *f = fopen(path, "rb");
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL,
	    NULL, NULL);
	png_infop info = png_create_info_struct(png);
	unsigned char *px;

	assert_non_null(f);
	assert_int_equal(setjmp(png_jmpbuf(png)), 0);
	png_init_io(png, f);
	png_read_info(png, info);
	*w = png_get_image_width(png, info);
	*h = png_get_image_height(png, info);
	assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
	assert_int_equal(png_get_bit_depth(png, info), 8);
	px = malloc((size_t)*w * *h * 3);
	for (int y = 0; y < *h; y++)
		png_read_row(png, px + (size_t)y * *w * 3, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	fclose(f);
	return px;
}

static void
assert_rgb(const unsigned char *px, int w, int x, int y,
    const unsigned char *rgb)
{
	const unsigned char *p = px + ((size_t)y * w + x) * 3;

	if (memcmp(p, rgb, 3) != 0)
		fail_msg("pixel (%d, %d) is %d,%d,%d, want %d,%d,%d", x, y,
		    p[0], p[1], p[2], rgb[0], rgb[1], rgb[2]);
}

/* Two lines (a rising one, a flat one), three runs with two labels. */
static void
test_lines(void **state)
{
	static const double x[2] = { 0, 10 }, up[2] = { 0, 10 };
	static const double flat[2] = { 8, 8 }, low[2] = { 1, 1 };
	static const unsigned char white[3] = { 255, 255, 255 };
	struct vlm_series s[3] = { { "rising", 0, 2, x, up, NULL },
		{ "flat", 1, 2, x, flat, NULL }, { "rising", 0, 2, x, low,
		NULL } };
	struct vlm_chart c = { .title = "loss", .xlabel = "step" };
	struct vlm_canvas cv;
	char path[64];
	unsigned char *px;
	int w, h, X, Y;

	(void)state;
	snprintf(path, sizeof(path), "%s/lines.png", dir);
	assert_int_equal(vlm_canvas_init(&cv, 400, 300), 0);
	assert_int_equal(vlm_chart_draw(&cv, &c, s, 3), 0);
	assert_int_equal(vlm_canvas_save(&cv, path), 0);
	vlm_canvas_release(&cv);
	px = decode(path, &w, &h);
	assert_int_equal(w, 400);
	assert_int_equal(h, 300);
	assert_true(c.xlo <= 0 && c.xhi >= 10 && c.ylo <= 0 && c.yhi >= 10);
	vlm_chart_px(&c, 2.5, 2.5, &X, &Y);
	assert_rgb(px, w, X, Y, vlm_palette[0]);
	vlm_chart_px(&c, 5, 8, &X, &Y);
	assert_rgb(px, w, X, Y, vlm_palette[1]);
	vlm_chart_px(&c, 7.1, 1, &X, &Y); /* the third run: first colour */
	assert_rgb(px, w, X, Y, vlm_palette[0]);
	vlm_chart_px(&c, 7.1, 5.3, &X, &Y);
	assert_rgb(px, w, X, Y, white);
	/* the legend: two entries (one a label), swatches 16 x 10 */
	assert_rgb(px, w, c.right + 19, c.top + 7, vlm_palette[0]);
	assert_rgb(px, w, c.right + 19, c.top + 18 + 7, vlm_palette[1]);
	assert_rgb(px, w, c.right + 19, c.top + 36 + 7, white);
	/* the axes: black at the plot area's left and bottom edges */
	assert_rgb(px, w, c.left, (c.top + c.bottom) / 2,
	    (const unsigned char[3]){ 0, 0, 0 });
	assert_rgb(px, w, (c.left + c.right) / 2, c.bottom,
	    (const unsigned char[3]){ 0, 0, 0 });
	free(px);
}

/* Two groups of two bars, with error bars. */
static void
test_bars(void **state)
{
	static const double a[2] = { 0.5, 0.25 }, b[2] = { 0.75, NAN };
	static const double ea[2] = { 0.1, 0.05 };
	static const char *const groups[2] = { "dense", "moe" };
	struct vlm_series s[2] = { { "r@1", 2, 2, NULL, a, ea },
		{ "r@5", 3, 2, NULL, b, NULL } };
	struct vlm_chart c = { .title = "recall", .bars = 1,
		.groups = groups, .ngroups = 2 };
	struct vlm_canvas cv;
	char path[64];
	unsigned char *px;
	int w, h, X, Y;

	(void)state;
	snprintf(path, sizeof(path), "%s/bars.png", dir);
	assert_int_equal(vlm_canvas_init(&cv, 500, 240), 0);
	assert_int_equal(vlm_chart_draw(&cv, &c, s, 2), 0);
	assert_int_equal(vlm_canvas_save(&cv, path), 0);
	vlm_canvas_release(&cv);
	px = decode(path, &w, &h);
	assert_int_equal(w, 500);
	assert_int_equal(h, 240);
	assert_true(c.xlo == 0 && c.xhi >= 0.75);
	/* bar k of group i: its band's middle, half its value */
	vlm_chart_px(&c, 0.25, 0 + 0.1 + 0.8 * 0.25, &X, &Y);
	assert_rgb(px, w, X, Y, vlm_palette[2]);
	vlm_chart_px(&c, 0.375, 0 + 0.1 + 0.8 * 0.75, &X, &Y);
	assert_rgb(px, w, X, Y, vlm_palette[3]);
	vlm_chart_px(&c, 0.125, 1 + 0.1 + 0.8 * 0.25, &X, &Y);
	assert_rgb(px, w, X, Y, vlm_palette[2]);
	/* NaN: no bar; the error bar's right cap at 0.6 in black */
	vlm_chart_px(&c, 0.13, 1 + 0.1 + 0.8 * 0.75, &X, &Y);
	assert_rgb(px, w, X, Y, (const unsigned char[3]){ 255, 255, 255 });
	vlm_chart_px(&c, 0.6, 0 + 0.1 + 0.8 * 0.25, &X, &Y);
	assert_rgb(px, w, X, Y - 2, (const unsigned char[3]){ 0, 0, 0 });
	free(px);
}

static void
test_errors(void **state)
{
	static const double x[1] = { 1 }, y[1] = { NAN };
	struct vlm_series s = { "a", 0, 1, x, y, NULL };
	struct vlm_chart c = { .title = "t" };
	struct vlm_canvas cv;
	char path[64];

	(void)state;
	assert_int_equal(vlm_canvas_init(&cv, 0, 10), -1);
	assert_int_equal(vlm_canvas_init(&cv, 200, 100), 0);
	assert_int_equal(vlm_chart_draw(&cv, &c, &s, 1), -1);
	assert_non_null(strstr(vlm_errmsg(), "no finite point"));
	{
		static const double ok[1] = { 3 };
		s.y = ok;
	}
	vlm_canvas_release(&cv);
	assert_int_equal(vlm_canvas_init(&cv, 60, 60), 0);
	assert_int_equal(vlm_chart_draw(&cv, &c, &s, 1), -1);
	assert_non_null(strstr(vlm_errmsg(), "too small"));
	snprintf(path, sizeof(path), "%s/no/such/dir.png", dir);
	assert_int_equal(vlm_canvas_save(&cv, path), -1);
	assert_int_equal(access(path, F_OK), -1);
	vlm_canvas_release(&cv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_bars),
		cmocka_unit_test(test_errors),
	};
	int rc;

	if (!mkdtemp(dir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	for (int i = 0; i < 2; i++) {
		char path[64];
		snprintf(path, sizeof(path), "%s/%s", dir, i ? "bars.png" :
		    "lines.png");
		remove(path);
	}
	rmdir(dir);
	return rc;
}
