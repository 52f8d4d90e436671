/*
 * image-jpeg.c - JPEG to 8-bit RGB with libjpeg-turbo, as PIL does it.
 *
 * PIL decodes with the same library and default settings (islow DCT,
 * fancy upsampling), so the pixels agree exactly. Grayscale is replicated
 * to RGB. Four-channel files (CMYK, or YCCK that libjpeg turns into CMYK)
 * are read with Adobe's inverted polarity, as PIL always assumes, and
 * converted with PIL's cmyk2rgb arithmetic.
 *
 * libjpeg reports fatal errors through error_exit, which here longjmps
 * back with the message; warnings are dropped, except "premature end of
 * file", which PIL also refuses (as a truncated image). A progress hook
 * bounds the number of progressive scans (a tiny file with thousands of
 * scans costs minutes of CPU otherwise).
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "data/image-priv.h"

struct jctx {
	struct jpeg_decompress_struct ci;
	struct jpeg_error_mgr jerr;
	struct jpeg_progress_mgr prog;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX + 64];
	int max_scans;
	uint8_t *pix; /* (h,w,3) */
	uint8_t *row; /* (w,4) for CMYK */
};

static void
on_error(j_common_ptr ci)
{
	struct jctx *c = ci->client_data;
	char m[JMSG_LENGTH_MAX], lm[JMSG_LENGTH_MAX];

	ci->err->format_message(ci, m);
	vlm_image_libmsg(lm, sizeof(lm), m);
	snprintf(c->msg, sizeof(c->msg), "corrupt JPEG (%s)", lm);
	longjmp(c->jb, 1);
}

static void
on_message(j_common_ptr ci, int level)
{
	struct jctx *c = ci->client_data;

	if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) {
		snprintf(c->msg, sizeof(c->msg), "truncated JPEG");
		longjmp(c->jb, 1);
	}
}

static void
on_progress(j_common_ptr ci)
{
	struct jctx *c = ci->client_data;
	j_decompress_ptr d = (j_decompress_ptr)ci;

	if (ci->is_decompressor && d->input_scan_number > c->max_scans) {
		snprintf(c->msg, sizeof(c->msg), "too many progressive scans "
		    "in JPEG (limit %d)", c->max_scans);
		longjmp(c->jb, 1);
	}
}

/* PIL's cmyk2rgb: each colour nk - c * nk / 255, nk = 255 - k. */
void
vlm_cmyk_to_rgb(uint8_t *out /* (n,3) */, const uint8_t *in /* (n,4) */,
    size_t n)
{
	for (size_t x = 0; x < n; x++, in += 4, out += 3) {
		int nk = 255 - in[3];

		for (int c = 0; c < 3; c++) {
			int t = in[c] * nk + 128;

			out[c] = nk - (((t >> 8) + t) >> 8);
		}
	}
}

/* Inverted (Adobe) CMYK to PIL's values in place (its unpacker "CMYK;I"). */
static void
uninvert(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = 255 - p[i];
}

/*
 * EXIF orientation from the first APP1 "Exif\0" marker (the one PIL
 * keeps); PIL reads the TIFF data after "Exif\0\0" only.
 */
static int
jpeg_orientation(j_decompress_ptr ci)
{
	for (jpeg_saved_marker_ptr m = ci->marker_list; m; m = m->next)
		if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
		    memcmp(m->data, "Exif\0", 5) == 0)
			return m->data[5] ? 1 : vlm_exif_orientation(
			    m->data + 6, m->data_length - 6);
	return 1;
}

/* Header, checks, scanlines; errors longjmp back here. */
static int
run(struct jctx *c, struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation)
{
	j_decompress_ptr ci = &c->ci;
	int cmyk, keep;

	if (setjmp(c->jb))
		return vlm_error("'%s': %s", name, c->msg);
	jpeg_mem_src(ci, buf, n);
	jpeg_save_markers(ci, JPEG_APP0 + 1, 0xffff);
	jpeg_read_header(ci, TRUE);
	if (vlm_image_check_size(name, ci->image_width, ci->image_height,
	    o) < 0)
		return -1;
	*orientation = jpeg_orientation(ci);
	cmyk = ci->jpeg_color_space == JCS_CMYK ||
	    ci->jpeg_color_space == JCS_YCCK;
	ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
	jpeg_start_decompress(ci);
	if (ci->output_components != (cmyk ? 4 : 3))
		return vlm_error("'%s': unsupported JPEG colour layout", name);
	/* resize-first keeps every CMYK row (PIL resizes in CMYK) */
	keep = cmyk && o->alpha == VLM_ALPHA_RESIZE_FIRST;
	c->pix = malloc((size_t)ci->output_width * ci->output_height * 3);
	c->row = cmyk ? malloc((size_t)ci->output_width * 4 *
	    (keep ? ci->output_height : 1)) : NULL;
	if (!c->pix || (cmyk && !c->row))
		return vlm_error("'%s': out of memory", name);
	while (ci->output_scanline < ci->output_height) {
		size_t y = ci->output_scanline, w = ci->output_width;
		uint8_t *rgb = c->pix + y * w * 3;
		JSAMPROW r = !cmyk ? rgb : c->row + (keep ? y * w * 4 : 0);

		if (jpeg_read_scanlines(ci, &r, 1) != 1)
			return vlm_error("'%s': truncated JPEG", name);
		if (cmyk) {
			uninvert(r, w * 4);
			vlm_cmyk_to_rgb(rgb, r, w);
		}
	}
	if (keep) {
		im->kind = VLM_IMAGE_CMYK;
		im->cmyk = c->row;
		c->row = NULL;
	}
	im->w = ci->output_width;
	im->h = ci->output_height;
	im->rgb = c->pix;
	c->pix = NULL;
	return 0;
}

int
vlm_jpeg_decode(struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation)
{
	struct jctx *c = calloc(1, sizeof(*c));
	int rv;

	if (!c)
		return vlm_error("'%s': out of memory", name);
	c->ci.err = jpeg_std_error(&c->jerr);
	c->jerr.error_exit = on_error;
	c->jerr.emit_message = on_message;
	c->max_scans = o->max_scans;
	c->prog.progress_monitor = on_progress;
	jpeg_create_decompress(&c->ci);
	c->ci.client_data = c;
	c->ci.progress = &c->prog;
	rv = run(c, im, buf, n, name, o, orientation);
	jpeg_destroy_decompress(&c->ci);
	free(c->pix);
	free(c->row);
	free(c);
	return rv;
}
