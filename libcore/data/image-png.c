/*
 * image-png.c - PNG to 8-bit RGB with libpng, as PIL's convert("RGB").
 *
 * Every colour type and depth ends as RGB: palettes are looked up, gray
 * (1, 2, 4 bits scaled to 0..255) is replicated, 16-bit samples keep
 * their high byte (PIL does so for 16-bit RGB, RGBA and LA); 16-bit gray
 * is PIL's mode "I", whose convert("RGB") clips values to 0..255 (which
 * whitens most such images): so do we, to see what PIL-based tools see.
 * Interlaced files are read whole. Alpha (an alpha channel, or tRNS) is
 * dropped as PIL does, or composited over white or black on request.
 * For VLM_ALPHA_RESIZE_FIRST the image also keeps what PIL's resize of the
 * opened image needs: the alpha channel, the 16-bit gray values, or the
 * note that P and 1-bit images are resized by nearest neighbour.
 * gAMA, sRGB and iCCP are ignored, as in PIL. An eXIf chunk, before or
 * after the image data, gives the orientation.
 *
 * libpng errors longjmp back with the message; warnings are dropped.
 */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "data/image-priv.h"

struct pctx {
	png_structp png;
	png_infop info;
	const uint8_t *buf;
	size_t n, off;
	char msg[256];
	uint8_t *pix;     /* (h,w,channels) */
	png_bytep *rows;  /* (h) */
};

static void
on_error(png_structp png, png_const_charp msg)
{
	struct pctx *c = png_get_error_ptr(png);
	char lm[200];

	vlm_image_libmsg(lm, sizeof(lm), msg);
	snprintf(c->msg, sizeof(c->msg), "corrupt PNG (%s)", lm);
	png_longjmp(png, 1);
}

static void
on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

static void
on_read(png_structp png, png_bytep out, png_size_t n)
{
	struct pctx *c = png_get_io_ptr(png);

	if (n > c->n - c->off) {
		snprintf(c->msg, sizeof(c->msg), "truncated PNG");
		png_longjmp(png, 1);
	}
	memcpy(out, c->buf + c->off, n);
	c->off += n;
}

/* How PIL resizes this PNG as Image.open gives it (enum vlm_image_kind). */
static int
png_kind(int ct, int depth)
{
	if (ct == PNG_COLOR_TYPE_PALETTE || (ct == PNG_COLOR_TYPE_GRAY &&
	    depth == 1))
		return VLM_IMAGE_NEAREST; /* PIL modes P and 1 */
	if (ct == PNG_COLOR_TYPE_GRAY && depth == 16)
		return VLM_IMAGE_GRAY16;  /* mode I */
	if (ct & PNG_COLOR_MASK_ALPHA)
		return VLM_IMAGE_ALPHA;   /* RGBA, LA */
	return VLM_IMAGE_RGB;
}

/*
 * Ask libpng for 8-bit RGB, or RGBA when alpha matters or is unavoidable;
 * 16-bit gray stays as it is (gray16_to_rgb).
 */
static void
set_transforms(struct pctx *c, const struct vlm_image_opts *o)
{
	png_structp png = c->png;
	int ct = png_get_color_type(png, c->info);
	int depth = png_get_bit_depth(png, c->info);
	int trns = png_get_valid(png, c->info, PNG_INFO_tRNS) != 0;

	if (png_kind(ct, depth) != VLM_IMAGE_GRAY16) {
		if (depth == 16)
			png_set_strip_16(png);
		if (ct == PNG_COLOR_TYPE_PALETTE)
			png_set_palette_to_rgb(png);
		if (ct == PNG_COLOR_TYPE_GRAY)
			png_set_expand_gray_1_2_4_to_8(png);
		if (trns && o->alpha != VLM_ALPHA_DROP &&
		    o->alpha != VLM_ALPHA_RESIZE_FIRST)
			png_set_tRNS_to_alpha(png);
		if (!(ct & PNG_COLOR_MASK_COLOR))
			png_set_gray_to_rgb(png);
	}
	png_set_interlace_handling(png);
	png_read_update_info(png, c->info);
}

/*
 * 16-bit gray rows (big-endian) to RGB clipped to 0..255, as PIL's
 * convert("RGB") of mode "I"; the tRNS gray is the background colour
 * when compositing; the values kept, native, for VLM_ALPHA_RESIZE_FIRST.
 */
static int
gray16_to_rgb(struct pctx *c, struct vlm_image *im, size_t n,
    const struct vlm_image_opts *o)
{
	png_color_16p key = NULL;
	int bg = o->alpha == VLM_ALPHA_WHITE ? 255 : 0, keyed = -1;
	uint16_t *v = (uint16_t *)c->pix;

	if ((o->alpha == VLM_ALPHA_WHITE || o->alpha == VLM_ALPHA_BLACK) &&
	    png_get_tRNS(c->png, c->info, NULL, NULL, &key) && key)
		keyed = key->gray;
	if (!(im->rgb = malloc(n * 3)))
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned g = (unsigned)c->pix[2 * i] << 8 | c->pix[2 * i + 1];
		uint8_t *d = im->rgb + 3 * i;

		d[0] = d[1] = d[2] = (int)g == keyed ? bg :
		    g > 255 ? 255 : (int)g;
		v[i] = (uint16_t)g;
	}
	if (o->alpha == VLM_ALPHA_RESIZE_FIRST) {
		im->kind = VLM_IMAGE_GRAY16;
		im->gray16 = v;
		c->pix = NULL;
	}
	return 0;
}

/*
 * RGBA pixels to im's RGB; an alpha channel (not a palette's tRNS, which
 * libpng's palette expansion turns into one) kept for resize-first.
 */
static int
rgba_to_rgb(struct pctx *c, struct vlm_image *im, size_t n,
    const struct vlm_image_opts *o)
{
	uint8_t *shrunk;

	if (im->kind == VLM_IMAGE_ALPHA) {
		if (!(im->alpha = malloc(n)))
			return -1;
		for (size_t i = 0; i < n; i++)
			im->alpha[i] = c->pix[4 * i + 3];
	}
	vlm_image_flatten(c->pix, n, o->alpha);
	if ((shrunk = realloc(c->pix, n * 3)))
		c->pix = shrunk;
	return 0;
}

/* EXIF orientation from an eXIf chunk (TIFF data, no "Exif" prefix). */
static int
png_orientation(struct pctx *c)
{
	png_uint_32 n = 0;
	png_bytep exif = NULL;

	if (!png_get_valid(c->png, c->info, PNG_INFO_eXIf) ||
	    !png_get_eXIf_1(c->png, c->info, &n, &exif) || !exif)
		return 1;
	return vlm_exif_orientation(exif, n);
}

/* Header, checks, rows; errors longjmp back here. */
static int
run(struct pctx *c, struct vlm_image *im, const char *name,
    const struct vlm_image_opts *o, int *orientation)
{
	png_uint_32 w, h;
	int ch, kind, bpp;

	if (setjmp(png_jmpbuf(c->png)))
		return vlm_error("'%s': %s", name, c->msg);
	png_set_read_fn(c->png, c, on_read);
#ifdef VLM_FUZZ /* fuzz builds: mutated chunks keep their old checksums */
	png_set_crc_action(c->png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
	png_set_option(c->png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
	png_read_info(c->png, c->info);
	w = png_get_image_width(c->png, c->info);
	h = png_get_image_height(c->png, c->info);
	if (vlm_image_check_size(name, w, h, o) < 0)
		return -1;
	kind = png_kind(png_get_color_type(c->png, c->info),
	    png_get_bit_depth(c->png, c->info));
	set_transforms(c, o);
	ch = png_get_channels(c->png, c->info);
	bpp = kind == VLM_IMAGE_GRAY16 ? 2 : ch;
	if ((kind == VLM_IMAGE_GRAY16 ? ch != 1 : ch != 3 && ch != 4) ||
	    png_get_rowbytes(c->png, c->info) != (size_t)w * bpp)
		return vlm_error("'%s': unsupported PNG layout", name);
	c->pix = malloc((size_t)w * h * bpp);
	c->rows = malloc(h * sizeof(*c->rows));
	if (!c->pix || !c->rows)
		return vlm_error("'%s': out of memory", name);
	for (png_uint_32 y = 0; y < h; y++)
		c->rows[y] = c->pix + (size_t)y * w * bpp;
	png_read_image(c->png, c->rows);
	png_read_end(c->png, c->info);
	*orientation = png_orientation(c);
	if (o->alpha == VLM_ALPHA_RESIZE_FIRST)
		im->kind = kind;
	if ((kind == VLM_IMAGE_GRAY16 && gray16_to_rgb(c, im, (size_t)w * h,
	    o) < 0) || (ch == 4 && rgba_to_rgb(c, im, (size_t)w * h, o) < 0)) {
		vlm_image_release(im);
		return vlm_error("'%s': out of memory", name);
	}
	im->w = w;
	im->h = h;
	if (kind != VLM_IMAGE_GRAY16) {
		im->rgb = c->pix;
		c->pix = NULL;
	}
	return 0;
}

int
vlm_png_decode(struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation)
{
	struct pctx *c = calloc(1, sizeof(*c));
	int rv = -1;

	if (!c)
		return vlm_error("'%s': out of memory", name);
	c->buf = buf;
	c->n = n;
	c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error,
	    on_warning);
	if (c->png)
		c->info = png_create_info_struct(c->png);
	if (!c->png || !c->info)
		vlm_error("'%s': out of memory", name);
	else
		rv = run(c, im, name, o, orientation);
	png_destroy_read_struct(&c->png, &c->info, NULL);
	free(c->pix);
	free(c->rows);
	free(c);
	return rv;
}
