/*
 * preprocess.c - image to model input, exactly as OpenCLIP's transforms.
 *
 * Validation (open_clip image_transform, is_train=False):
 *   Resize(S) - the shorter side to S, the longer to int(S * long / short)
 *     (torchvision's rule), PIL bicubic with antialiasing (resample.c);
 *   CenterCrop(S) - offsets int(round((size - S) / 2.0)), Python's round
 *     (half to even);
 *   ToTensor, Normalize - float32 v / 255, then (x - mean) / std.
 * Training (is_train=True): RandomResizedCrop(S, scale, ratio) with
 * torchvision's get_params (10 tries, then a centre crop of clamped aspect
 * ratio) driven by a caller's vlm_rng, bicubic resize of the crop to S x S,
 * optional horizontal flip, normalise. Draws differ from torch's RNG, so
 * only the distribution, not the crops, match a Python run.
 *
 * The input is RGB (image.c) - OpenCLIP's webdataset loader also
 * converts to RGB before the transform ("pilrgb") - unless the image
 * kept what VLM_ALPHA_RESIZE_FIRST needs: then the resize is PIL's for the
 * image as opened (OpenCLIP's transform on Image.open(path), which turns
 * RGB only after the crop): RGBA and LA in premultiplied alpha, palette
 * and bilevel by nearest neighbour, 16-bit gray in 32-bit integers, CMYK
 * in CMYK.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "data/data.h"

const float vlm_openai_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float vlm_openai_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* The resized size of torchvision's Resize(S) for a w x h image. */
void
vlm_resize_shorter(int w, int h, int S, int *ow, int *oh)
{
	int sh = w <= h ? w : h, lg = w <= h ? h : w;
	int nl = (int)((double)S * lg / sh);

	*ow = w <= h ? S : nl;
	*oh = w <= h ? nl : S;
}

/* PIL's MULDIV255: a * b / 255 rounded, in integers. */
static inline uint8_t
muldiv255(unsigned a, unsigned b)
{
	unsigned t = a * b + 128;

	return (uint8_t)(((t >> 8) + t) >> 8);
}

/*
 * The window of region c of an RGBA / LA image resized to ow x oh as PIL
 * does: convert to premultiplied ("RGBa": each colour times alpha /
 * 255), resize the four channels, convert back (colour * 255 / alpha,
 * clipped; alpha 0 and 255 left alone), then drop alpha.
 */
static int
resize_premultiplied(uint8_t *out /* (ch,cw,3) */, const struct vlm_image *im,
    const struct vlm_crop *c, int ow, int oh, int x0, int y0, int cw, int ch)
{
	uint8_t *pm = malloc((size_t)c->w * c->h * 4 + (size_t)cw * ch * 4);
	uint8_t *res = pm + (size_t)c->w * c->h * 4, *p = pm;

	if (!pm)
		return vlm_error("out of memory resizing %dx%d", c->w, c->h);
	for (int y = c->y; y < c->y + c->h; y++) {
		for (int x = c->x; x < c->x + c->w; x++, p += 4) {
			size_t i = (size_t)y * im->w + x;
			unsigned a = im->alpha[i];

			for (int k = 0; k < 3; k++)
				p[k] = muldiv255(im->rgb[3 * i + k], a);
			p[3] = a;
		}
	}
	if (vlm_resample_bicubic_nc(res, ow, oh, x0, y0, cw, ch, pm, c->w,
	    c->h, (size_t)c->w * 4, 4) < 0) {
		free(pm);
		return -1;
	}
	for (size_t i = 0; i < (size_t)cw * ch; i++, out += 3) {
		const uint8_t *q = res + 4 * i;
		unsigned a = q[3];

		for (int k = 0; k < 3; k++) {
			unsigned v = a == 0 || a == 255 ? q[k] : 255 * q[k] / a;
			out[k] = v > 255 ? 255 : (uint8_t)v;
		}
	}
	free(pm);
	return 0;
}

/* The same for a CMYK image: PIL resizes its four channels, then RGB. */
static int
resize_cmyk(uint8_t *out /* (ch,cw,3) */, const struct vlm_image *im,
    const struct vlm_crop *c, int ow, int oh, int x0, int y0, int cw, int ch)
{
	uint8_t *res = malloc((size_t)cw * ch * 4);
	size_t off = (size_t)c->y * im->w + c->x;

	if (!res)
		return vlm_error("out of memory resizing %dx%d", c->w, c->h);
	if (vlm_resample_bicubic_nc(res, ow, oh, x0, y0, cw, ch,
	    im->cmyk + off * 4, c->w, c->h, (size_t)im->w * 4, 4) < 0) {
		free(res);
		return -1;
	}
	vlm_cmyk_to_rgb(out, res, (size_t)cw * ch);
	free(res);
	return 0;
}

/*
 * The window (x0, y0, cw, ch) of region c of im resized to ow x oh the
 * way PIL resizes an image of im->kind (a crop first, as torchvision's
 * resized_crop does). PIL copies an image resized to its own size.
 */
static int
resize_region(uint8_t *out /* (ch,cw,3) */, const struct vlm_image *im,
    const struct vlm_crop *c, int ow, int oh, int x0, int y0, int cw, int ch)
{
	size_t off = (size_t)c->y * im->w + c->x, stride = (size_t)im->w * 3;
	const uint8_t *rgb = im->rgb + off * 3;
	int kind = ow == c->w && oh == c->h ? VLM_IMAGE_RGB : im->kind;

	assert(c->x >= 0 && c->y >= 0 && c->w > 0 && c->h > 0);
	assert(c->x + c->w <= im->w && c->y + c->h <= im->h);
	switch (kind) {
	case VLM_IMAGE_ALPHA:
		return resize_premultiplied(out, im, c, ow, oh, x0, y0, cw, ch);
	case VLM_IMAGE_NEAREST:
		vlm_resample_nearest(out, ow, oh, x0, y0, cw, ch, rgb, c->w,
		    c->h, stride);
		return 0;
	case VLM_IMAGE_GRAY16:
		return vlm_resample_bicubic_i16(out, ow, oh, x0, y0, cw, ch,
		    im->gray16 + off, c->w, c->h, im->w);
	case VLM_IMAGE_CMYK:
		return resize_cmyk(out, im, c, ow, oh, x0, y0, cw, ch);
	default:
		return vlm_resample_bicubic(out, ow, oh, x0, y0, cw, ch, rgb,
		    c->w, c->h, stride);
	}
}

int
vlm_image_resize_crop(uint8_t *out /* (S,S,3) */, const struct vlm_image *im,
    int S)
{
	struct vlm_crop all = { 0, 0, im->w, im->h };
	int ow, oh, x0, y0;

	assert(S > 0 && im->w > 0 && im->h > 0);
	vlm_resize_shorter(im->w, im->h, S, &ow, &oh);
	x0 = (int)nearbyint((ow - S) / 2.0);
	y0 = (int)nearbyint((oh - S) / 2.0);
	return resize_region(out, im, &all, ow, oh, x0, y0, S, S);
}

void
vlm_image_normalize(float *out /* (3,S,S) */, const uint8_t *px /* (S,S,3) */,
    int S, const float mean[3], const float std[3], int hflip)
{
	if (!mean)
		mean = vlm_openai_mean;
	if (!std)
		std = vlm_openai_std;
	for (int c = 0; c < 3; c++) {
		float *o = out + (size_t)c * S * S;
		for (int y = 0; y < S; y++) {
			for (int x = 0; x < S; x++) {
				int sx = hflip ? S - 1 - x : x;
				float v = px[((size_t)y * S + sx) * 3 + c] /
				    255.0f;

				*o++ = (v - mean[c]) / std[c];
			}
		}
	}
}

/* Resize-crop into a scratch (S,S,3) buffer, then normalise. */
int
vlm_preprocess(float *out /* (3,S,S) */, const struct vlm_image *im, int S,
    const float mean[3], const float std[3])
{
	uint8_t *px = malloc((size_t)S * S * 3);

	if (!px)
		return vlm_error("out of memory preprocessing %dx%d", im->w,
		    im->h);
	if (vlm_image_resize_crop(px, im, S) < 0) {
		free(px);
		return -1;
	}
	vlm_image_normalize(out, px, S, mean, std, 0);
	free(px);
	return 0;
}

/* torchvision's fallback crop: clamp the aspect ratio, centre it. */
static void
fallback_crop(struct vlm_crop *c, int w, int h, const struct vlm_augment *a)
{
	double in_ratio = (double)w / h;

	c->w = w;
	c->h = h;
	if (in_ratio < a->ratio_lo)
		c->h = (int)nearbyint(w / a->ratio_lo);
	else if (in_ratio > a->ratio_hi)
		c->w = (int)nearbyint(h * a->ratio_hi);
	c->x = (w - c->w) / 2;
	c->y = (h - c->h) / 2;
}

/* RandomResizedCrop.get_params: area fraction and log-uniform aspect. */
void
vlm_augment_crop(struct vlm_crop *c, int w, int h,
    const struct vlm_augment *a, struct vlm_rng *r)
{
	double area = (double)w * h;
	double llo = log(a->ratio_lo), lhi = log(a->ratio_hi);

	assert(w > 0 && h > 0);
	for (int i = 0; i < 10; i++) {
		double s = a->scale_lo + (a->scale_hi - a->scale_lo) *
		    vlm_rng_uniform(r);
		double ar = exp(llo + (lhi - llo) * vlm_rng_uniform(r));
		int cw = (int)nearbyint(sqrt(area * s * ar));
		int ch = (int)nearbyint(sqrt(area * s / ar));

		if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
			c->y = (int)vlm_rng_below(r, h - ch + 1);
			c->x = (int)vlm_rng_below(r, w - cw + 1);
			c->w = cw;
			c->h = ch;
			return;
		}
	}
	fallback_crop(c, w, h, a);
}

/* Crop c of im resized to S x S as PIL resizes im's kind. */
int
vlm_image_crop_resize(uint8_t *out /* (S,S,3) */, const struct vlm_image *im,
    const struct vlm_crop *c, int S)
{
	return resize_region(out, im, c, S, S, 0, 0, S, S);
}

static double
luma(const double *p)
{
	return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

void
vlm_color_apply(uint8_t *px, int64_t n, double b, double c, double s,
    double h, int gray)
{
	double mean = 0, ch = cos(2 * M_PI * h), sh = sin(2 * M_PI * h);

	for (int64_t i = 0; c != 1 && i < n; i++) { /* after brightness */
		double p[3];
		for (int k = 0; k < 3; k++)
			p[k] = fmin(fmax(px[3 * i + k] * b, 0), 255);
		mean += luma(p);
	}
	mean /= n > 0 ? n : 1;
	for (int64_t i = 0; i < n; i++) {
		uint8_t *q = px + 3 * i;
		double p[3], y, I, Q, t;
		for (int k = 0; k < 3; k++)
			p[k] = fmin(fmax(q[k] * b, 0), 255);
		for (int k = 0; c != 1 && k < 3; k++)
			p[k] = fmin(fmax(c * p[k] + (1 - c) * mean, 0), 255);
		y = luma(p);
		for (int k = 0; s != 1 && k < 3; k++)
			p[k] = fmin(fmax(s * p[k] + (1 - s) * y, 0), 255);
		if (h != 0) { /* YIQ: Y stays, (I, Q) turn by 2 pi h */
			y = luma(p);
			I = 0.596 * p[0] - 0.274 * p[1] - 0.322 * p[2];
			Q = 0.211 * p[0] - 0.523 * p[1] + 0.312 * p[2];
			t = ch * I - sh * Q, Q = sh * I + ch * Q, I = t;
			p[0] = y + 0.956 * I + 0.621 * Q;
			p[1] = y - 0.272 * I - 0.647 * Q;
			p[2] = y - 1.106 * I + 1.703 * Q;
		}
		if (gray)
			p[0] = p[1] = p[2] = luma(p);
		for (int k = 0; k < 3; k++)
			q[k] = (uint8_t)lrint(fmin(fmax(p[k], 0), 255));
	}
}

void
vlm_augment_color(uint8_t *px, int64_t n, const struct vlm_augment *a,
    struct vlm_rng *r)
{
	double f[3] = { 1, 1, 1 }, h = 0;
	int gray;

	for (int k = 0; a->jitter > 0 && k < 3; k++)
		f[k] = 1 - a->jitter + 2 * a->jitter * vlm_rng_uniform(r);
	if (a->hue > 0)
		h = a->hue * (2 * vlm_rng_uniform(r) - 1);
	gray = a->gray > 0 && vlm_rng_uniform(r) < a->gray;
	if (a->jitter > 0 || a->hue > 0 || gray)
		vlm_color_apply(px, n, f[0], f[1], f[2], h, gray);
}

int
vlm_preprocess_train(float *out /* (3,S,S) */, const struct vlm_image *im,
    int S, const float mean[3], const float std[3],
    const struct vlm_augment *a, struct vlm_rng *r)
{
	static const struct vlm_augment def = VLM_AUGMENT_DEFAULT;
	struct vlm_crop c;
	uint8_t *px = malloc((size_t)S * S * 3);
	int flip;

	if (!px)
		return vlm_error("out of memory preprocessing %dx%d", im->w,
		    im->h);
	if (!a)
		a = &def;
	vlm_augment_crop(&c, im->w, im->h, a, r);
	flip = a->hflip && vlm_rng_uniform(r) < 0.5;
	if (vlm_image_crop_resize(px, im, &c, S) < 0) {
		free(px);
		return -1;
	}
	vlm_augment_color(px, (int64_t)S * S, a, r);
	vlm_image_normalize(out, px, S, mean, std, flip);
	free(px);
	return 0;
}
