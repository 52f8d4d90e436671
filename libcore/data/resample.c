/*
 * resample.c - bicubic image resizing that reproduces PIL's
 * Image.resize(size, BICUBIC) bit for bit on 8-bit RGB.
 *
 * OpenCLIP preprocesses images with PIL (through torchvision), so a model
 * trained there saw PIL's pixels; matching them exactly keeps embeddings
 * identical. The arithmetic follows Pillow's libImaging/Resample.c:
 *  - separable: a horizontal pass into an 8-bit temporary image, then a
 *    vertical pass; each pass rounds and clips to 0..255;
 *  - for output pixel i the filter is centred at (i + 0.5) * scale with
 *    scale = in / out; when shrinking the support (2 for bicubic) and the
 *    argument are stretched by scale, which antialiases;
 *  - the taps run from (int)(centre - support + 0.5) to
 *    (int)(centre + support + 0.5), clipped to the image, and are divided
 *    by their sum (the border taps are renormalised, not mirrored);
 *  - the normalised weights become 22-bit fixed point (rounded half away
 *    from zero), sums start at 2^21 and are shifted right by 22.
 * A caller may ask for a window of the output only (a centre crop): each
 * output pixel depends only on its own taps, so the window equals the crop
 * of the full resize.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define PRECISION_BITS (32 - 8 - 2)

/* Keys' cubic with a = -0.5, as PIL's bicubic_filter. */
static double
bicubic(double x)
{
	const double a = -0.5;

	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
	if (x < 2.0)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0.0;
}

/* The taps of one axis: for output i, k[i*ksize ..] from input first[i]. */
struct taps {
	int ksize;
	int *first; /* (n) */
	int *count; /* (n) */
	int32_t *k; /* (n, ksize) fixed point */
	double *kd; /* (n, ksize) the normalised weights (32-bit images) */
};

static void
taps_release(struct taps *t)
{
	free(t->first);
	free(t->count);
	free(t->k);
	free(t->kd);
}

/*
 * Taps for outputs o0 .. o0+n-1 of a resize from `in` to `out` samples
 * (PIL's precompute_coeffs and normalize_coeffs_8bpc); with dbl, the
 * normalised double weights too (what PIL's 32-bit passes use).
 */
static int
taps_init(struct taps *t, int in, int out, int o0, int n, int dbl)
{
	double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
	double support = 2.0 * fscale, ss = 1.0 / fscale, *w;

	t->ksize = (int)ceil(support) * 2 + 1;
	t->first = malloc(n * sizeof(int));
	t->count = malloc(n * sizeof(int));
	t->k = malloc((size_t)n * t->ksize * sizeof(int32_t));
	t->kd = dbl ? malloc((size_t)n * t->ksize * sizeof(double)) : NULL;
	w = malloc(t->ksize * sizeof(double));
	if (!t->first || !t->count || !t->k || !w || (dbl && !t->kd)) {
		free(w);
		taps_release(t);
		return vlm_error("out of memory resizing %dx%d", in, out);
	}
	for (int i = 0; i < n; i++) {
		double centre = ((o0 + i) + 0.5) * scale, ww = 0.0;
		int lo = (int)(centre - support + 0.5);
		int hi = (int)(centre + support + 0.5);
		int32_t *k = t->k + (size_t)i * t->ksize;

		lo = lo < 0 ? 0 : lo;
		hi = (hi > in ? in : hi) - lo;
		assert(hi <= t->ksize);
		for (int x = 0; x < hi; x++) {
			w[x] = bicubic((x + lo - centre + 0.5) * ss);
			ww += w[x];
		}
		for (int x = 0; x < hi; x++) {
			double v = ww != 0.0 ? w[x] / ww : w[x];
			if (dbl)
				t->kd[(size_t)i * t->ksize + x] = v;
			v *= 1 << PRECISION_BITS;
			k[x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
		}
		t->first[i] = lo;
		t->count[i] = hi;
	}
	free(w);
	return 0;
}

static inline uint8_t
clip8(int32_t ss)
{
	if (ss < 0)
		return 0;
	ss >>= PRECISION_BITS;
	return ss > 255 ? 255 : (uint8_t)ss;
}

/* Horizontal pass: rows of src (nc channels, `stride` bytes apart). */
static void
pass_h(uint8_t *dst /* (rows,n,nc) */, const uint8_t *src, size_t stride,
    int rows, const struct taps *t, int n, int nc)
{
	for (int y = 0; y < rows; y++) {
		const uint8_t *row = src + (size_t)y * stride;
		for (int i = 0; i < n; i++) {
			const int32_t *k = t->k + (size_t)i * t->ksize;
			const uint8_t *p = row + (size_t)t->first[i] * nc;
			int32_t s[4];

			for (int c = 0; c < nc; c++)
				s[c] = 1 << (PRECISION_BITS - 1);
			for (int x = 0; x < t->count[i]; x++, p += nc)
				for (int c = 0; c < nc; c++)
					s[c] += p[c] * k[x];
			for (int c = 0; c < nc; c++)
				*dst++ = clip8(s[c]);
		}
	}
}

/* Vertical pass: src rows (w pixels, `stride` bytes apart) to dst rows. */
static void
pass_v(uint8_t *dst /* (n,w,nc) */, const uint8_t *src, size_t stride, int w,
    const struct taps *t, int n, int row0, int nc)
{
	for (int j = 0; j < n; j++) {
		const int32_t *k = t->k + (size_t)j * t->ksize;
		const uint8_t *top = src +
		    (size_t)(t->first[j] - row0) * stride;
		for (int c = 0; c < w * nc; c++) {
			const uint8_t *p = top + c;
			int32_t s = 1 << (PRECISION_BITS - 1);

			for (int y = 0; y < t->count[j]; y++, p += stride)
				s += *p * k[y];
			*dst++ = clip8(s);
		}
	}
}

/* Copy a window of rows/columns (bpp bytes a pixel) when nothing changes. */
static void
copy_window(uint8_t *dst, const uint8_t *src, size_t stride, int x0, int y0,
    int cw, int ch, int bpp)
{
	for (int y = 0; y < ch; y++)
		memcpy(dst + (size_t)y * cw * bpp,
		    src + (size_t)(y0 + y) * stride + (size_t)x0 * bpp,
		    (size_t)cw * bpp);
}

/*
 * Resize src (w x h, nc 8-bit channels, rows `stride` bytes apart) to
 * ow x oh as PIL's BICUBIC does, writing only the output window at
 * (x0, y0) of size cw x ch into dst. -1 only when out of memory.
 */
int
vlm_resample_bicubic_nc(uint8_t *dst /* (ch,cw,nc) */, int ow, int oh,
    int x0, int y0, int cw, int ch, const uint8_t *src /* (h,w,nc) */,
    int w, int h, size_t stride, int nc)
{
	struct taps th = {0}, tv = {0};
	uint8_t *tmp = NULL;
	int rv = -1, r0, r1;

	assert(w > 0 && h > 0 && ow > 0 && oh > 0 && cw > 0 && ch > 0);
	assert(x0 >= 0 && y0 >= 0 && x0 + cw <= ow && y0 + ch <= oh);
	assert(nc >= 1 && nc <= 4);
	if (ow == w && oh == h) {
		copy_window(dst, src, stride, x0, y0, cw, ch, nc);
		return 0;
	}
	if (oh == h) {
		if (taps_init(&th, w, ow, x0, cw, 0) < 0)
			return -1;
		pass_h(dst, src + (size_t)y0 * stride, stride, ch, &th, cw, nc);
		taps_release(&th);
		return 0;
	}
	if (taps_init(&tv, h, oh, y0, ch, 0) < 0)
		return -1;
	if (ow == w) {
		pass_v(dst, src + (size_t)x0 * nc, stride, cw, &tv, ch, 0, nc);
		taps_release(&tv);
		return 0;
	}
	/* rows r0 .. r1-1 of the source feed the window's vertical taps */
	r0 = tv.first[0];
	r1 = tv.first[ch - 1] + tv.count[ch - 1];
	if (taps_init(&th, w, ow, x0, cw, 0) < 0)
		goto out;
	tmp = malloc((size_t)(r1 - r0) * cw * nc);
	if (!tmp) {
		vlm_error("out of memory resizing %dx%d to %dx%d", w, h, ow,
		    oh);
		goto out;
	}
	pass_h(tmp, src + (size_t)r0 * stride, stride, r1 - r0, &th, cw, nc);
	pass_v(dst, tmp, (size_t)cw * nc, cw, &tv, ch, r0, nc);
	rv = 0;
out:
	free(tmp);
	taps_release(&th);
	taps_release(&tv);
	return rv;
}

int
vlm_resample_bicubic(uint8_t *dst /* (ch,cw,3) */, int ow, int oh, int x0,
    int y0, int cw, int ch, const uint8_t *src /* (h,w,3) */, int w, int h,
    size_t stride)
{
	return vlm_resample_bicubic_nc(dst, ow, oh, x0, y0, cw, ch, src, w, h,
	    stride, 3);
}

/* PIL's ROUND_UP of a 32-bit pass: half away from zero. */
static int32_t
round_up(double f)
{
	return (int32_t)(f >= 0.0 ? floor(f + 0.5) : -floor(fabs(f) + 0.5));
}

/* Horizontal 32-bit pass: rows of src (w wide) to dst (rows, n). */
static void
pass_h32(int32_t *dst, const int32_t *src, int w, int rows,
    const struct taps *t, int n)
{
	for (int y = 0; y < rows; y++) {
		const int32_t *row = src + (size_t)y * w;
		for (int i = 0; i < n; i++) {
			const double *k = t->kd + (size_t)i * t->ksize;
			const int32_t *p = row + t->first[i];
			double ss = 0.0;

			for (int x = 0; x < t->count[i]; x++)
				ss += p[x] * k[x];
			*dst++ = round_up(ss);
		}
	}
}

/* Vertical 32-bit pass: src rows from row0 (w wide) to dst (n, w). */
static void
pass_v32(int32_t *dst, const int32_t *src, int w, const struct taps *t,
    int n, int row0)
{
	for (int j = 0; j < n; j++) {
		const double *k = t->kd + (size_t)j * t->ksize;
		const int32_t *top = src + (size_t)(t->first[j] - row0) * w;
		for (int x = 0; x < w; x++) {
			double ss = 0.0;

			for (int y = 0; y < t->count[j]; y++)
				ss += top[(size_t)y * w + x] * k[y];
			*dst++ = round_up(ss);
		}
	}
}

/*
 * The window of PIL's BICUBIC resize of a 16-bit gray image (PIL mode
 * "I": 32-bit passes with double weights, each rounded to an integer),
 * then convert("RGB"), which clips to 0..255. -1 only out of memory.
 */
int
vlm_resample_bicubic_i16(uint8_t *dst /* (ch,cw,3) */, int ow, int oh,
    int x0, int y0, int cw, int ch, const uint16_t *src /* (h,w) */, int w,
    int h, size_t stride)
{
	struct taps th = {0}, tv = {0};
	int32_t *a = NULL, *b = NULL, *res;
	int rv = -1, r0 = y0, r1 = y0 + ch, c0 = 0, n;

	assert(w > 0 && h > 0 && ow > 0 && oh > 0 && cw > 0 && ch > 0);
	assert(x0 >= 0 && y0 >= 0 && x0 + cw <= ow && y0 + ch <= oh);
	if ((oh != h && taps_init(&tv, h, oh, y0, ch, 1) < 0) ||
	    (ow != w && taps_init(&th, w, ow, x0, cw, 1) < 0))
		goto out;
	if (oh != h) {
		r0 = tv.first[0];
		r1 = tv.first[ch - 1] + tv.count[ch - 1];
	}
	n = ow != w ? w : cw; /* columns kept of the source rows */
	c0 = ow != w ? 0 : x0;
	/* each holds the source rows, or a pass's output */
	a = malloc(((size_t)(r1 - r0) * n + (size_t)ch * cw) * sizeof(*a));
	b = malloc(((size_t)(r1 - r0) + ch) * cw * sizeof(*b));
	if (!a || !b) {
		vlm_error("out of memory resizing %dx%d to %dx%d", w, h, ow,
		    oh);
		goto out;
	}
	for (int y = r0; y < r1; y++)
		for (int x = 0; x < n; x++)
			a[(size_t)(y - r0) * n + x] =
			    src[(size_t)y * stride + c0 + x];
	res = a;
	if (ow != w) {
		pass_h32(b, a, w, r1 - r0, &th, cw);
		res = b;
	}
	if (oh != h) {
		int32_t *o = res == a ? b : a;
		pass_v32(o, res, cw, &tv, ch, r0);
		res = o;
	}
	for (size_t i = 0; i < (size_t)ch * cw; i++, dst += 3)
		dst[0] = dst[1] = dst[2] = res[i] <= 0 ? 0 :
		    res[i] >= 255 ? 255 : (uint8_t)res[i];
	rv = 0;
out:
	free(a);
	free(b);
	taps_release(&th);
	taps_release(&tv);
	return rv;
}

/*
 * The window of PIL's NEAREST resize (what it uses for "P" and "1"
 * images): output x samples input int(x0') where x0' starts at scale / 2
 * and adds scale = w / ow per pixel, in doubles, as Pillow's
 * ImagingScaleAffine steps.
 */
void
vlm_resample_nearest(uint8_t *dst /* (ch,cw,3) */, int ow, int oh, int x0,
    int y0, int cw, int ch, const uint8_t *src /* (h,w,3) */, int w, int h,
    size_t stride)
{
	double ax = (double)w / ow, ay = (double)h / oh;
	double xo = ax * 0.5, yo = ay * 0.5;

	assert(x0 >= 0 && y0 >= 0 && x0 + cw <= ow && y0 + ch <= oh);
	for (int y = 0; y < y0; y++)
		yo += ay;
	for (int x = 0; x < x0; x++)
		xo += ax;
	for (int y = 0; y < ch; y++, yo += ay) {
		int yi = (int)yo < h ? (int)yo : h - 1;
		double xx = xo;
		for (int x = 0; x < cw; x++, xx += ax, dst += 3) {
			int xi = (int)xx < w ? (int)xx : w - 1;
			memcpy(dst, src + (size_t)yi * stride + (size_t)xi * 3,
			    3);
		}
	}
}
