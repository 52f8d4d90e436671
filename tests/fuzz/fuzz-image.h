/*
 * fuzz-image.h - the body of the PNG and JPEG harnesses: decode with a
 * 1 Mpixel cap (and few JPEG scans), options picked from the size, then
 * the validation and training transforms at a small size.
 */
#include "fuzz.h"

static int
fuzz_image(const uint8_t *data, size_t size)
{
	struct vlm_image_opts o = { 0 };
	struct vlm_image im;
	struct vlm_augment a = VLM_AUGMENT_DEFAULT;
	struct vlm_rng r;
	enum { S = 16 };
	float out[3 * S * S];
	uint8_t px[S * S * 3];

	o.alpha = size % 4; /* drop, white, black, resize-first */
	o.ignore_exif = size / 4 % 2;
	o.max_pixels = FUZZ_MAX_PIXELS;
	o.max_scans = 50;
	vlm_image_sniff_mem(data, size);
	if (vlm_image_decode(&im, data, size, "in", &o) < 0)
		return 0;
	if (im.w < 1 || im.h < 1 || !im.rgb)
		abort();
	vlm_preprocess(out, &im, S, NULL, NULL);
	vlm_image_resize_crop(px, &im, S);
	vlm_rng_seed(&r, size);
	a.hflip = 1, a.jitter = 0.4, a.hue = 0.1, a.gray = 0.2;
	vlm_preprocess_train(out, &im, S, vlm_openai_mean, vlm_openai_std, &a,
	    &r);
	vlm_image_release(&im);
	return 0;
}
