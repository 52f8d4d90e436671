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
};

static void
taps_release(struct taps *t)
{
	free(t->first);
	free(t->count);
	free(t->k);
}

/*
 * Taps for outputs o0 .. o0+n-1 of a resize from `in` to `out` samples
 * (PIL's precompute_coeffs and normalize_coeffs_8bpc).
 */
static int
taps_init(struct taps *t, int in, int out, int o0, int n)
{
	double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
	double support = 2.0 * fscale, ss = 1.0 / fscale, *w;

	t->ksize = (int)ceil(support) * 2 + 1;
	t->first = malloc(n * sizeof(int));
	t->count = malloc(n * sizeof(int));
	t->k = malloc((size_t)n * t->ksize * sizeof(int32_t));
	w = malloc(t->ksize * sizeof(double));
	if (!t->first || !t->count || !t->k || !w) {
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

/* Horizontal pass: rows of src (w wide, `stride` bytes apart) to dst. */
static void
pass_h(uint8_t *dst /* (rows,n,3) */, const uint8_t *src, size_t stride,
    int rows, const struct taps *t, int n)
{
	for (int y = 0; y < rows; y++) {
		const uint8_t *row = src + (size_t)y * stride;
		for (int i = 0; i < n; i++) {
			const int32_t *k = t->k + (size_t)i * t->ksize;
			const uint8_t *p = row + (size_t)t->first[i] * 3;
			int32_t s0, s1, s2;

			s0 = s1 = s2 = 1 << (PRECISION_BITS - 1);
			for (int x = 0; x < t->count[i]; x++, p += 3) {
				s0 += p[0] * k[x];
				s1 += p[1] * k[x];
				s2 += p[2] * k[x];
			}
			*dst++ = clip8(s0);
			*dst++ = clip8(s1);
			*dst++ = clip8(s2);
		}
	}
}

/* Vertical pass: src rows (w pixels, `stride` bytes apart) to dst rows. */
static void
pass_v(uint8_t *dst /* (n,w,3) */, const uint8_t *src, size_t stride, int w,
    const struct taps *t, int n, int row0)
{
	for (int j = 0; j < n; j++) {
		const int32_t *k = t->k + (size_t)j * t->ksize;
		const uint8_t *top = src +
		    (size_t)(t->first[j] - row0) * stride;
		for (int c = 0; c < w * 3; c++) {
			const uint8_t *p = top + c;
			int32_t s = 1 << (PRECISION_BITS - 1);

			for (int y = 0; y < t->count[j]; y++, p += stride)
				s += *p * k[y];
			*dst++ = clip8(s);
		}
	}
}

/* Copy a window of rows/columns when an axis keeps its size. */
static void
copy_window(uint8_t *dst, const uint8_t *src, size_t stride, int x0, int y0,
    int cw, int ch)
{
	for (int y = 0; y < ch; y++)
		memcpy(dst + (size_t)y * cw * 3,
		    src + (size_t)(y0 + y) * stride + (size_t)x0 * 3,
		    (size_t)cw * 3);
}

/*
 * Resize src (w x h RGB, rows `stride` bytes apart) to ow x oh as PIL's
 * BICUBIC does, writing only the output window at (x0, y0) of size
 * cw x ch into dst. -1 only when out of memory.
 */
int
vlm_resample_bicubic(uint8_t *dst /* (ch,cw,3) */, int ow, int oh, int x0,
    int y0, int cw, int ch, const uint8_t *src /* (h,w,3) */, int w, int h,
    size_t stride)
{
	struct taps th = {0}, tv = {0};
	uint8_t *tmp = NULL;
	int rv = -1, r0, r1;

	assert(w > 0 && h > 0 && ow > 0 && oh > 0 && cw > 0 && ch > 0);
	assert(x0 >= 0 && y0 >= 0 && x0 + cw <= ow && y0 + ch <= oh);
	if (ow == w && oh == h) {
		copy_window(dst, src, stride, x0, y0, cw, ch);
		return 0;
	}
	if (oh == h) {
		if (taps_init(&th, w, ow, x0, cw) < 0)
			return -1;
		pass_h(dst, src + (size_t)y0 * stride, stride, ch, &th, cw);
		taps_release(&th);
		return 0;
	}
	if (taps_init(&tv, h, oh, y0, ch) < 0)
		return -1;
	if (ow == w) {
		pass_v(dst, src + (size_t)x0 * 3, stride, cw, &tv, ch, 0);
		taps_release(&tv);
		return 0;
	}
	/* rows r0 .. r1-1 of the source feed the window's vertical taps */
	r0 = tv.first[0];
	r1 = tv.first[ch - 1] + tv.count[ch - 1];
	if (taps_init(&th, w, ow, x0, cw) < 0)
		goto out;
	tmp = malloc((size_t)(r1 - r0) * cw * 3);
	if (!tmp) {
		vlm_error("out of memory resizing %dx%d to %dx%d", w, h, ow,
		    oh);
		goto out;
	}
	pass_h(tmp, src + (size_t)r0 * stride, stride, r1 - r0, &th, cw);
	pass_v(dst, tmp, (size_t)cw * 3, cw, &tv, ch, r0);
	rv = 0;
out:
	free(tmp);
	taps_release(&th);
	taps_release(&tv);
	return rv;
}
