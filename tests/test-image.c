/*
 * test-image.c - JPEG/PNG decoding (libcore/data/image*.c) against PIL, and
 * refusal of bad input without crashing or leaking.
 *
 * The images PIL cannot write (interlaced, 16-bit RGB, YCCK, ...) are
 * written here with libpng and libjpeg; tests/pil-ref.py adds the rest
 * and decodes all of them with PIL; every decode must match exactly.
 */
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "testutil.h"
#include "pil-ref.h"

/* ---- writing test images -------------------------------------------- */

struct pngw {
	int w, h, ct, depth, interlace;
	const uint8_t *data; /* packed rows, 16-bit big-endian */
	const png_color *pal;
	int npal;
	const uint8_t *trns; /* palette alphas */
	int ntrns;
	const png_color_16 *key; /* gray / RGB transparent colour */
};

static void
write_png(const char *dir, const char *name, const struct pngw *p)
{
	static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
	size_t rb = ((size_t)p->w * chans[p->ct] * p->depth + 7) / 8;
	char path[4400];
	FILE *f;
	png_structp png;
	png_infop info;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "wb"));
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL,
	    NULL);
	info = png_create_info_struct(png);
	assert_int_equal(setjmp(png_jmpbuf(png)), 0);
	png_init_io(png, f);
	png_set_IHDR(png, info, p->w, p->h, p->depth, p->ct, p->interlace,
	    PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	if (p->pal)
		png_set_PLTE(png, info, p->pal, p->npal);
	if (p->trns || p->key)
		png_set_tRNS(png, info, p->trns, p->ntrns, p->key);
	png_write_info(png, info);
	for (int pass = png_set_interlace_handling(png); pass > 0; pass--)
		for (int y = 0; y < p->h; y++)
			png_write_row(png, p->data + (size_t)y * rb);
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	assert_int_equal(fclose(f), 0);
}

static void
png_simple(const char *dir, const char *name, int w, int h, int ct,
    int depth, int interlace, const uint8_t *data)
{
	write_png(dir, name, &(struct pngw){.w = w, .h = h, .ct = ct,
	    .depth = depth, .interlace = interlace, .data = data});
}

/* A JPEG from (h,w,comps) samples in colour space in, stored as cs. */
static void
write_jpeg(const char *dir, const char *name, int w, int h, int comps,
    J_COLOR_SPACE in, J_COLOR_SPACE cs, int progressive, int adobe,
    const uint8_t *data)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	char path[4400];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "wb"));
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, f);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = comps;
	ci.in_color_space = in;
	jpeg_set_defaults(&ci);
	jpeg_set_colorspace(&ci, cs);
	jpeg_set_quality(&ci, 90, TRUE);
	ci.write_Adobe_marker = adobe;
	if (progressive)
		jpeg_simple_progression(&ci);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW r = (JSAMPROW)data + (size_t)ci.next_scanline * w *
		    comps;
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	assert_int_equal(fclose(f), 0);
}

/* n random bytes below `mod` (0: any), from a fixed seed. */
static uint8_t *
random_bytes(size_t n, uint64_t seed, int mod)
{
	struct vlm_rng r;
	uint8_t *p = malloc(n);

	assert_non_null(p);
	vlm_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		p[i] = mod ? vlm_rng_below(&r, mod) : vlm_rng_u64(&r) >> 56;
	return p;
}

/* The files PIL cannot write, plus the ones the no-Python tests use. */
static void
make_c_images(const char *d)
{
	static const png_color pal[16] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0},
	    {0, 0, 255}, {9, 99, 199}, {200, 100, 50}, {1, 2, 3}, {250, 251,
	    252}, {17, 34, 51}, {68, 85, 102}, {119, 136, 153}, {170, 187,
	    204}, {221, 238, 255}, {128, 128, 128}, {64, 0, 64}, {0, 64, 64}};
	static const uint8_t alphas[3] = {0, 128, 255};
	png_color_16 gkey = {.gray = 5}, ckey = {.red = 7, .green = 7,
	    .blue = 7};
	uint8_t *b = random_bytes(1 << 16, 7, 0);
	uint8_t *p16 = random_bytes(1 << 12, 8, 16);
	uint8_t *sevens = malloc(20 * 14 * 3);

	png_simple(d, "rgb16-37x29.png", 37, 29, 2, 16, 0, b);
	png_simple(d, "rgba16-21x17.png", 21, 17, 6, 16, 0, b);
	png_simple(d, "la16-13x11.png", 13, 11, 4, 16, 0, b);
	png_simple(d, "la8-13x11.png", 13, 11, 4, 8, 0, b);
	png_simple(d, "adam7-rgb-45x33.png", 45, 33, 2, 8, 1, b);
	png_simple(d, "adam7-rgba-19x25.png", 19, 25, 6, 8, 1, b);
	png_simple(d, "adam7-gray1-35x9.png", 35, 9, 0, 1, 1, b);
	png_simple(d, "gray2-17x13.png", 17, 13, 0, 2, 0, b);
	write_png(d, "gray4-trns-15x12.png", &(struct pngw){.w = 15, .h = 12,
	    .depth = 4, .data = b, .key = &gkey});
	write_png(d, "adam7-pal4-trns-29x23.png", &(struct pngw){29, 23, 3,
	    4, 1, b, pal, 16, alphas, 3, NULL});
	write_png(d, "pal8-40x24.png", &(struct pngw){.w = 40, .h = 24,
	    .ct = 3, .depth = 8, .data = p16, .pal = pal, .npal = 16});
	memset(sevens, 7, 20 * 14 * 3);
	memcpy(sevens, b, 20 * 3 * 7);
	write_png(d, "rgb-key-20x14.png", &(struct pngw){.w = 20, .h = 14,
	    .ct = 2, .depth = 8, .data = sevens, .key = &ckey});
	png_simple(d, "rgb-40x24.png", 40, 24, 2, 8, 0, b);
	write_jpeg(d, "ycck-41x27.jpg", 41, 27, 4, JCS_CMYK, JCS_YCCK, 0, 1, b);
	write_jpeg(d, "cmyk-noadobe-33x21.jpg", 33, 21, 4, JCS_CMYK, JCS_CMYK,
	    0, 0, b);
	write_jpeg(d, "prog-gray-30x20.jpg", 30, 20, 1, JCS_GRAYSCALE,
	    JCS_GRAYSCALE, 1, 0, b);
	write_jpeg(d, "rgb-40x24.jpg", 40, 24, 3, JCS_RGB, JCS_YCbCr, 0, 0, b);
	write_jpeg(d, "prog-40x24.jpg", 40, 24, 3, JCS_RGB, JCS_YCbCr, 1, 0, b);
	free(b);
	free(p16);
	free(sevens);
}

static const char *
path_of(const char *dir, const char *name)
{
	static char p[4400];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

/* A fresh directory for one test under the process's temporary one. */
static const char *
subdir(const char *name)
{
	static char d[4400];

	snprintf(d, sizeof(d), "%s/%s", test_tmpdir(), name);
	if (mkdir(d, 0700) != 0 && errno != EEXIST)
		fail();
	return d;
}

/* ---- decoding against PIL --------------------------------------------- */

static enum vlm_alpha
alpha_of(const char *variant)
{
	return !strcmp(variant, "white") ? VLM_ALPHA_WHITE :
	    !strcmp(variant, "black") ? VLM_ALPHA_BLACK : VLM_ALPHA_DROP;
}

static void
test_decode_matches_pil(void **state)
{
	const char *d = subdir("pil");
	char line[512], file[256], variant[32], refname[400];
	int w, h, nfiles = 0, njpeg = 0;
	FILE *refs;

	(void)state;
	make_c_images(d);
	NEED_PIL_REFS(d);
	assert_non_null(refs = fopen(path_of(d, "refs.txt"), "r"));
	while (fgets(line, sizeof(line), refs)) {
		struct vlm_image_opts o = {0};
		struct vlm_image im;
		uint8_t *ref;
		int maxd;
		size_t bad;

		if (sscanf(line, "dec %255s %31s %d %d", file, variant, &w,
		    &h) != 4)
			continue;
		o.alpha = alpha_of(variant);
		o.ignore_exif = !strcmp(variant, "noexif");
		if (vlm_image_load(&im, path_of(d, file), &o) < 0)
			fail_msg("%s", vlm_errmsg());
		snprintf(refname, sizeof(refname), "%s.%s.rgb", file, variant);
		ref = read_ref(d, refname, (size_t)w * h * 3);
		if (im.w != w || im.h != h)
			fail_msg("%s %s: %dx%d, PIL %dx%d", file, variant,
			    im.w, im.h, w, h);
		bad = count_diff(im.rgb, ref, (size_t)w * h * 3, 0, &maxd);
		if (bad)
			fail_msg("%s %s: %zu bytes differ from PIL (max %d)",
			    file, variant, bad, maxd);
		nfiles++;
		njpeg += strstr(file, ".jpg") != NULL;
		free(ref);
		vlm_image_release(&im);
	}
	fclose(refs);
	print_message("%d decodes (%d JPEG) identical to PIL\n", nfiles,
	    njpeg);
	assert_true(nfiles >= 60 && njpeg >= 20);
}

/* ---- no Python needed ------------------------------------------------- */

static void
test_sniff(void **state)
{
	const char *d = subdir("sniff");
	char from[4400];
	FILE *f;

	(void)state;
	make_c_images(d);
	assert_int_equal(vlm_image_sniff(path_of(d, "rgb-40x24.jpg")),
	    VLM_IMAGE_JPEG);
	assert_int_equal(vlm_image_sniff(path_of(d, "rgb-40x24.png")),
	    VLM_IMAGE_PNG);
	/* content, not the name, decides */
	snprintf(from, sizeof(from), "%s", path_of(d, "rgb-40x24.png"));
	assert_int_equal(rename(from, path_of(d, "png-named.jpg")), 0);
	assert_int_equal(vlm_image_sniff(path_of(d, "png-named.jpg")),
	    VLM_IMAGE_PNG);
	assert_non_null(f = fopen(path_of(d, "text.png"), "w"));
	fputs("hello, not an image\n", f);
	fclose(f);
	assert_int_equal(vlm_image_sniff(path_of(d, "text.png")), 0);
	fclose(fopen(path_of(d, "empty.jpg"), "w"));
	assert_int_equal(vlm_image_sniff(path_of(d, "empty.jpg")), 0);
	assert_int_equal(vlm_image_sniff(path_of(d, "missing")), -1);
	assert_non_null(strstr(vlm_errmsg(), "missing"));
	assert_int_equal(vlm_image_sniff_mem("\xff\xd8\xff", 3),
	    VLM_IMAGE_JPEG);
	assert_int_equal(vlm_image_sniff_mem("\xff\xd8", 2), 0);
}

/* The whole file, its decode from memory equal to its decode by path. */
static void
test_decode_from_memory(void **state)
{
	static const char *names[] = {"rgb-40x24.jpg", "prog-40x24.jpg",
	    "adam7-rgba-19x25.png", "pal8-40x24.png"};
	const char *d = subdir("mem");

	(void)state;
	make_c_images(d);
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		struct vlm_image a, b;
		size_t n;
		uint8_t *buf = slurp_file(d, names[i], &n);

		assert_non_null(buf);
		assert_int_equal(vlm_image_load(&a, path_of(d, names[i]),
		    NULL), 0);
		assert_int_equal(vlm_image_decode(&b, buf, n, names[i], NULL),
		    0);
		assert_int_equal(a.w, b.w);
		assert_int_equal(a.h, b.h);
		assert_memory_equal(a.rgb, b.rgb, (size_t)a.w * a.h * 3);
		vlm_image_release(&a);
		vlm_image_release(&b);
		free(buf);
	}
}

/* Opaque pixels keep their colour; clear ones become the background. */
static void
test_alpha_modes(void **state)
{
	const char *d = subdir("alpha");
	uint8_t px[4 * 4 * 4];
	struct vlm_image im[3];

	(void)state;
	for (int i = 0; i < 16; i++) {
		px[i * 4 + 0] = 10 * i;
		px[i * 4 + 1] = 100;
		px[i * 4 + 2] = 255 - 10 * i;
		px[i * 4 + 3] = i < 8 ? 255 : 0;
	}
	png_simple(d, "a.png", 4, 4, 6, 8, 0, px);
	for (int m = 0; m < 3; m++)
		assert_int_equal(vlm_image_load(&im[m], path_of(d, "a.png"),
		    &(struct vlm_image_opts){.alpha = m}), 0);
	for (int i = 0; i < 16; i++) {
		for (int c = 0; c < 3; c++) {
			int v = px[i * 4 + c];

			assert_int_equal(im[VLM_ALPHA_DROP].rgb[i * 3 + c], v);
			assert_int_equal(im[VLM_ALPHA_WHITE].rgb[i * 3 + c],
			    i < 8 ? v : 255);
			assert_int_equal(im[VLM_ALPHA_BLACK].rgb[i * 3 + c],
			    i < 8 ? v : 0);
		}
	}
	for (int m = 0; m < 3; m++)
		vlm_image_release(&im[m]);
}

/* Load must fail, naming the file and saying `why`, image left empty. */
static void
expect_fail(const char *path, const struct vlm_image_opts *o,
    const char *why)
{
	struct vlm_image im = {.w = 1, .h = 1, .rgb = (uint8_t *)"x"};

	if (vlm_image_load(&im, path, o) != -1)
		fail_msg("'%s' loaded (%dx%d), want failure", path, im.w,
		    im.h);
	assert_null(im.rgb);
	if (!strstr(vlm_errmsg(), path) || !strstr(vlm_errmsg(), why))
		fail_msg("message '%s': want '%s' and '%s'", vlm_errmsg(), why,
		    path);
}

static void
put_file(const char *path, const void *buf, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Cut a file to n bytes under a new name; expect failure saying why. */
static void
expect_truncated(const char *d, const char *name, size_t n, const char *why)
{
	char out[4400];
	size_t len;
	uint8_t *buf = slurp_file(d, name, &len);

	assert_non_null(buf);
	assert_true(n < len);
	snprintf(out, sizeof(out), "%s/cut%zu-%s", d, n, name);
	put_file(out, buf, n);
	expect_fail(out, NULL, why);
	free(buf);
}

static void
test_bad_input(void **state)
{
	const char *d = subdir("bad");
	size_t n;
	uint8_t *buf;

	(void)state;
	make_c_images(d);
	put_file(path_of(d, "zero.png"), "", 0);
	expect_fail(path_of(d, "zero.png"), NULL, "empty file");
	put_file(path_of(d, "text.jpg"), "GIF89a not really\n", 18);
	expect_fail(path_of(d, "text.jpg"), NULL, "not a JPEG, PNG or WebP");
	expect_fail(path_of(d, "nonexistent.png"), NULL, "No such file");
	buf = slurp_file(d, "rgb-40x24.png", &n);
	for (size_t cut = 8; cut < n; cut += n / 7)
		expect_truncated(d, "rgb-40x24.png", cut, "truncated PNG");
	buf[n / 2] ^= 0x55; /* inside IDAT: CRC mismatch */
	put_file(path_of(d, "crc.png"), buf, n);
	expect_fail(path_of(d, "crc.png"), NULL, "corrupt PNG");
	free(buf);
	buf = slurp_file(d, "rgb-40x24.jpg", &n);
	for (size_t cut = 3; cut < n - 2; cut += n / 7)
		expect_truncated(d, "rgb-40x24.jpg", cut, "truncated JPEG");
	expect_truncated(d, "prog-40x24.jpg", 700, "truncated JPEG");
	buf[2] = 0xff, buf[3] = 0xc3; /* lossless SOF3: unsupported */
	put_file(path_of(d, "sof.jpg"), buf, n);
	expect_fail(path_of(d, "sof.jpg"), NULL, "corrupt JPEG");
	free(buf);
}

/* A PNG of a claimed size: signature, IHDR, a token IDAT, IEND. */
static void
write_png_header(const char *path, uint32_t w, uint32_t h)
{
	uint8_t b[8 + 25 + 13 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
	    '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'}, *p = b + 16;
	static const uint8_t idat[13] = {0, 0, 0, 1, 'I', 'D', 'A', 'T', 0},
	    iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60,
	    0x82};
	uint32_t v[2] = {w, h}, crc;

	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 4; k++)
			*p++ = v[i] >> (24 - 8 * k);
	*p++ = 8, *p++ = 2, *p++ = 0, *p++ = 0, *p++ = 0;
	crc = crc32(0, b + 12, 17);
	for (int k = 0; k < 4; k++)
		*p++ = crc >> (24 - 8 * k);
	memcpy(p, idat, 9);
	crc = crc32(0, idat + 4, 5);
	for (int k = 0; k < 4; k++)
		p[9 + k] = crc >> (24 - 8 * k);
	memcpy(p + 13, iend, 12);
	put_file(path, b, sizeof(b));
}

static void
test_limits(void **state)
{
	const char *d = subdir("limits");
	struct vlm_image_opts o = {0};
	struct vlm_image im;
	size_t n;
	uint8_t *buf;

	(void)state;
	make_c_images(d);
	write_png_header(path_of(d, "huge.png"), 100000, 100000);
	expect_fail(path_of(d, "huge.png"), NULL, "too large");
	/* a JPEG whose frame header claims 60000 x 60000 */
	buf = slurp_file(d, "rgb-40x24.jpg", &n);
	for (size_t i = 2; i + 9 < n; i++) {
		if (buf[i] == 0xff && buf[i + 1] == 0xc0) {
			buf[i + 5] = buf[i + 7] = 60000 >> 8;
			buf[i + 6] = buf[i + 8] = 60000 & 0xff;
			break;
		}
	}
	put_file(path_of(d, "huge.jpg"), buf, n);
	expect_fail(path_of(d, "huge.jpg"), NULL, "too large");
	free(buf);
	o.max_pixels = 40 * 24 - 1;
	expect_fail(path_of(d, "rgb-40x24.jpg"), &o, "too large");
	expect_fail(path_of(d, "pal8-40x24.png"), &o, "too large");
	o.max_pixels = 40 * 24;
	assert_int_equal(vlm_image_load(&im, path_of(d, "rgb-40x24.jpg"),
	    &o), 0);
	vlm_image_release(&im);
	/* 200 KB after IEND: fine by default, too big for 960 pixels
	 * (16 bytes a pixel and 64 KB) */
	buf = slurp_file(d, "rgb-40x24.png", &n);
	buf = realloc(buf, n + 200000);
	memset(buf + n, 'x', 200000);
	put_file(path_of(d, "long.png"), buf, n + 200000);
	free(buf);
	assert_int_equal(vlm_image_load(&im, path_of(d, "long.png"), NULL), 0);
	vlm_image_release(&im);
	expect_fail(path_of(d, "long.png"), &o, "file too large");
	o.max_scans = 3;
	expect_fail(path_of(d, "prog-40x24.jpg"), &o, "progressive scans");
	o.max_scans = 20;
	assert_int_equal(vlm_image_load(&im, path_of(d, "prog-40x24.jpg"),
	    &o), 0);
	vlm_image_release(&im);
}

/* Random byte changes and cuts: a clean result or a clean error. */
static void
test_mutants(void **state)
{
	static const char *names[] = {"rgb-40x24.jpg", "prog-40x24.jpg",
	    "ycck-41x27.jpg", "rgb-40x24.png", "adam7-pal4-trns-29x23.png"};
	const char *d = subdir("fuzz");
	struct vlm_rng r;
	int ok = 0, failed = 0;

	(void)state;
	make_c_images(d);
	vlm_rng_seed(&r, 99);
	for (size_t f = 0; f < sizeof(names) / sizeof(*names); f++) {
		size_t n;
		uint8_t *orig = slurp_file(d, names[f], &n);
		uint8_t *buf = malloc(n);

		for (int t = 0; t < 150; t++) {
			struct vlm_image im;
			size_t len = n;
			int k = 1 + vlm_rng_below(&r, 4);

			memcpy(buf, orig, n);
			while (k--)
				buf[vlm_rng_below(&r, n)] = vlm_rng_u64(&r);
			if (vlm_rng_below(&r, 4) == 0)
				len = vlm_rng_below(&r, n);
			if (vlm_image_decode(&im, buf, len, "mutant", NULL)) {
				assert_non_null(strstr(vlm_errmsg(),
				    "'mutant'"));
				assert_null(im.rgb);
				failed++;
				continue;
			}
			assert_true(im.w > 0 && im.h > 0 && im.rgb);
			vlm_image_release(&im);
			ok++;
		}
		free(buf);
		free(orig);
	}
	print_message("mutants: %d decoded, %d refused\n", ok, failed);
	assert_true(ok > 0 && failed > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sniff),
		cmocka_unit_test(test_decode_from_memory),
		cmocka_unit_test(test_alpha_modes),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_mutants),
		cmocka_unit_test(test_decode_matches_pil),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
