/*
 * image-webp.c - WebP (lossy, lossless, with or without alpha) to 8-bit
 * RGB with libwebp, as PIL's Image.open(...).convert("RGB") gives it:
 * PIL decodes through the same library to RGBA, so the colour samples
 * are libwebp's (fancy upsampling, its defaults); alpha is dropped or
 * composited as for PNG, or kept for VLM_ALPHA_RESIZE_FIRST. Animated
 * files are refused (PIL shows frame 0; no data set here needs them).
 * WebP has no EXIF orientation for PIL's exif_transpose to apply in a
 * still image decoded this way, so the orientation is 1.
 */
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

#include "data/image-priv.h"

/* "RIFF" size "WEBP": the container every WebP file has */
int
vlm_webp_sniff(const uint8_t *p, size_t n)
{
	return n >= 12 && p[0] == 'R' && p[1] == 'I' && p[2] == 'F' &&
	    p[3] == 'F' && p[8] == 'W' && p[9] == 'E' && p[10] == 'B' &&
	    p[11] == 'P';
}

int
vlm_webp_decode(struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation)
{
	WebPBitstreamFeatures f;
	uint8_t *px;
	int w, h;

	*orientation = 1;
	if (WebPGetFeatures(buf, n, &f) != VP8_STATUS_OK)
		return vlm_error("'%s': corrupt WebP (bad header)", name);
	if (f.has_animation)
		return vlm_error("'%s': animated WebP not supported", name);
	if (vlm_image_check_size(name, f.width, f.height, o) < 0)
		return -1;
	if (!(px = WebPDecodeRGBA(buf, n, &w, &h)))
		return vlm_error("'%s': corrupt WebP (cannot decode)", name);
	if (w != f.width || h != f.height) {
		WebPFree(px);
		return vlm_error("'%s': corrupt WebP (size changed)", name);
	}
	/* resize-first: PIL opens it as RGBA, resized premultiplied */
	if (o->alpha == VLM_ALPHA_RESIZE_FIRST && f.has_alpha) {
		im->kind = VLM_IMAGE_ALPHA;
		im->alpha = malloc((size_t)w * h);
		for (size_t i = 0; im->alpha && i < (size_t)w * h; i++)
			im->alpha[i] = px[4 * i + 3];
	}
	if (!(im->rgb = malloc((size_t)w * h * 3)) ||
	    (im->kind == VLM_IMAGE_ALPHA && !im->alpha)) {
		WebPFree(px);
		vlm_image_release(im);
		return vlm_error("'%s': out of memory", name);
	}
	vlm_image_flatten(px, (size_t)w * h, o->alpha);
	memcpy(im->rgb, px, (size_t)w * h * 3);
	WebPFree(px);
	im->w = w;
	im->h = h;
	return 0;
}
