/*
 * image.c - load JPEG and PNG files as 8-bit RGB, as PIL's
 * Image.open(f).convert("RGB") would (with EXIF orientation applied as
 * ImageOps.exif_transpose does, unless asked not to).
 *
 * The format is sniffed from the first bytes, never the file name. The
 * decoders (image-jpeg.c, image-png.c) work on a memory buffer, so a file
 * is read whole first; libjpeg and libpng errors come back as -1 with a
 * message naming the file, their warnings are dropped. The pixel limit is
 * checked from the header before any pixel buffer is allocated.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "data/image-priv.h"

/* The format of a buffer from its magic bytes; 0 if neither. */
int
vlm_image_sniff_mem(const void *buf, size_t n)
{
	static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
	    '\n'};
	const uint8_t *p = buf;

	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return VLM_IMAGE_JPEG;
	if (n >= 8 && memcmp(p, png, 8) == 0)
		return VLM_IMAGE_PNG;
	if (vlm_webp_sniff(p, n))
		return VLM_IMAGE_WEBP;
	return VLM_IMAGE_NONE;
}

/* The format of a file from its first bytes; -1 if it cannot be read. */
int
vlm_image_sniff(const char *path)
{
	uint8_t buf[12];
	size_t n;
	FILE *f = fopen(path, "rb");

	if (!f)
		return vlm_error("'%s': %s", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf), f);
	if (ferror(f)) {
		fclose(f);
		return vlm_error("'%s': read error", path);
	}
	fclose(f);
	return vlm_image_sniff_mem(buf, n);
}

void
vlm_image_release(struct vlm_image *im)
{
	free(im->rgb);
	free(im->alpha);
	free(im->gray16);
	free(im->cmyk);
	*im = (struct vlm_image){0};
}

/* Copy a library's message into buf with its first letter lower-case. */
void
vlm_image_libmsg(char *buf, size_t n, const char *msg)
{
	snprintf(buf, n, "%s", msg);
	if (buf[0] && !(buf[1] && isupper((unsigned char)buf[1])))
		buf[0] = tolower((unsigned char)buf[0]);
}

/* Check w x h against the limit before allocating; -1 with message. */
int
vlm_image_check_size(const char *name, uint64_t w, uint64_t h,
    const struct vlm_image_opts *o)
{
	if (w == 0 || h == 0)
		return vlm_error("'%s': empty image (%llux%llu)", name,
		    (unsigned long long)w, (unsigned long long)h);
	if (w * h > (uint64_t)o->max_pixels || w > INT32_MAX / 4 ||
	    h > INT32_MAX / 4)
		return vlm_error("'%s': image too large (%llux%llu, limit %lld "
		    "pixels)", name, (unsigned long long)w,
		    (unsigned long long)h, (long long)o->max_pixels);
	return 0;
}

static uint32_t
get16(const uint8_t *p, int be)
{
	return be ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t
get32(const uint8_t *p, int be)
{
	return be ? get16(p, 1) << 16 | get16(p + 2, 1) :
	    get16(p + 2, 0) << 16 | get16(p, 0);
}

/*
 * The Orientation tag (0x0112) of IFD0 of a TIFF-structured EXIF block
 * ("II*\0" or "MM\0*" first); 1 when absent or malformed.
 */
int
vlm_exif_orientation(const uint8_t *t, size_t n)
{
	uint32_t ifd, count;
	int be;

	if (n < 8 || (memcmp(t, "II", 2) != 0 && memcmp(t, "MM", 2) != 0))
		return 1;
	be = t[0] == 'M';
	if (get16(t + 2, be) != 42)
		return 1;
	ifd = get32(t + 4, be);
	if (ifd > n - 2)
		return 1;
	count = get16(t + ifd, be);
	for (uint32_t i = 0; i < count; i++) {
		size_t e = ifd + 2 + (size_t)i * 12;
		uint32_t type, v;

		if (e + 12 > n)
			return 1;
		if (get16(t + e, be) != 0x0112)
			continue;
		type = get16(t + e + 2, be);
		if (type == 3)
			v = get16(t + e + 8, be);
		else if (type == 4)
			v = get32(t + e + 8, be);
		else
			return 1;
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}

/*
 * One plane of bpp bytes a pixel transposed as EXIF orientation o asks
 * (PIL's exif_transpose): output (x, y) takes input (u, v) = (y, x) if
 * transposed, else (x, y), each coordinate mirrored where the table says.
 * The new plane replaces *pp; -1 when out of memory.
 */
static int
orient_plane(void *pp, int w, int h, int bpp, int o)
{
	static const struct {
		int swap, flipx, flipy;
	} t[9] = {{0, 0, 0}, {0, 0, 0}, {0, 1, 0}, {0, 1, 1}, {0, 0, 1},
	    {1, 0, 0}, {1, 0, 1}, {1, 1, 1}, {1, 1, 0}};
	int ow = t[o].swap ? h : w, oh = t[o].swap ? w : h;
	uint8_t **plane = pp, *out = malloc((size_t)w * h * bpp), *d = out;

	if (!out)
		return -1;
	for (int y = 0; y < oh; y++) {
		for (int x = 0; x < ow; x++, d += bpp) {
			int u = t[o].swap ? y : x, v = t[o].swap ? x : y;

			u = t[o].flipx ? w - 1 - u : u;
			v = t[o].flipy ? h - 1 - v : v;
			memcpy(d, *plane + ((size_t)v * w + u) * bpp, bpp);
		}
	}
	free(*plane);
	*plane = out;
	return 0;
}

/* Orient every plane of im (EXIF orientation o). */
static int
orient(struct vlm_image *im, int o, const char *name)
{
	int w = im->w, h = im->h;

	if (o <= 1 || o > 8)
		return 0;
	if (orient_plane(&im->rgb, w, h, 3, o) < 0 ||
	    (im->alpha && orient_plane(&im->alpha, w, h, 1, o) < 0) ||
	    (im->gray16 && orient_plane(&im->gray16, w, h, 2, o) < 0) ||
	    (im->cmyk && orient_plane(&im->cmyk, w, h, 4, o) < 0))
		return vlm_error("'%s': out of memory", name);
	if (o >= 5) {
		im->w = h;
		im->h = w;
	}
	return 0;
}

/* Fill in the defaults of zero fields. */
static struct vlm_image_opts
opts_or_defaults(const struct vlm_image_opts *o)
{
	struct vlm_image_opts d = {0};

	if (o)
		d = *o;
	if (d.max_pixels <= 0)
		d.max_pixels = VLM_IMAGE_MAX_PIXELS;
	if (d.max_scans <= 0)
		d.max_scans = VLM_IMAGE_MAX_SCANS;
	return d;
}

int
vlm_image_decode(struct vlm_image *im, const void *buf, size_t n,
    const char *name, const struct vlm_image_opts *o)
{
	struct vlm_image_opts d = opts_or_defaults(o);
	int orientation = 1, rv;

	*im = (struct vlm_image){0};
	switch (vlm_image_sniff_mem(buf, n)) {
	case VLM_IMAGE_JPEG:
		rv = vlm_jpeg_decode(im, buf, n, name, &d, &orientation);
		break;
	case VLM_IMAGE_PNG:
		rv = vlm_png_decode(im, buf, n, name, &d, &orientation);
		break;
	case VLM_IMAGE_WEBP:
		rv = vlm_webp_decode(im, buf, n, name, &d, &orientation);
		break;
	default:
		return vlm_error("'%s': %s", name, n == 0 ? "empty file" :
		    "not a JPEG, PNG or WebP image");
	}
	if (rv < 0)
		return -1;
	if (!d.ignore_exif && orient(im, orientation, name) < 0) {
		vlm_image_release(im);
		return -1;
	}
	return 0;
}

/*
 * Read a whole file ("-": stdin) into a malloc'ed buffer; stop after the
 * first block if it cannot be an image (a walk may meet huge files), and
 * refuse more than max bytes.
 */
static int
slurp(FILE *f, const char *name, uint8_t **bufp, size_t *np, size_t max)
{
	size_t cap = 1 << 16, n = 0, got;
	uint8_t *buf = malloc(cap), *nb;

	if (!buf)
		return vlm_error("'%s': out of memory", name);
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n >= 12 && vlm_image_sniff_mem(buf, n) == VLM_IMAGE_NONE)
			break;
		if (n > max) {
			free(buf);
			return vlm_error("'%s': file too large for an image of "
			    "the pixel limit (over %zu bytes)", name, max);
		}
		if (n == cap) {
			if (!(nb = realloc(buf, cap * 2))) {
				free(buf);
				return vlm_error("'%s': out of memory", name);
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (ferror(f)) {
		free(buf);
		return vlm_error("'%s': %s", name, strerror(errno));
	}
	*bufp = buf;
	*np = n;
	return 0;
}

int
vlm_image_load(struct vlm_image *im, const char *path,
    const struct vlm_image_opts *o)
{
	int std = strcmp(path, "-") == 0;
	const char *name = std ? "<stdin>" : path;
	FILE *f = std ? stdin : fopen(path, "rb");
	struct vlm_image_opts d = opts_or_defaults(o);
	uint8_t *buf = NULL;
	size_t n = 0;
	int rv;

	*im = (struct vlm_image){0};
	if (!f)
		return vlm_error("'%s': %s", path, strerror(errno));
	/* 16 bytes a pixel: more than a stored 16-bit RGBA PNG needs */
	rv = slurp(f, name, &buf, &n, 16 * (size_t)d.max_pixels + (1 << 16));
	if (!std)
		fclose(f);
	if (rv == 0)
		rv = vlm_image_decode(im, buf, n, name, o);
	free(buf);
	return rv;
}

/*
 * Drop (VLM_ALPHA_DROP, RESIZE_FIRST) or composite the alpha of n RGBA
 * pixels into RGB, in place (the output is packed at the start of the
 * buffer). Compositing over an
 * opaque background uses PIL's alpha_composite arithmetic.
 */
void
vlm_image_flatten(uint8_t *p /* (n,4) in, (n,3) out */, size_t n,
    enum vlm_alpha mode)
{
	int bg = mode == VLM_ALPHA_WHITE ? 255 : 0;
	uint8_t *d = p;

	for (size_t i = 0; i < n; i++, p += 4, d += 3) {
		int a = p[3];

		for (int c = 0; c < 3; c++) {
			uint32_t t;

			if (mode != VLM_ALPHA_WHITE && mode != VLM_ALPHA_BLACK) {
				d[c] = p[c];
				continue;
			}
			if (a == 0) {
				d[c] = bg;
				continue;
			}
			t = ((uint32_t)p[c] * a + (uint32_t)bg * (255 - a)) *
			    128 + (0x80 << 7);
			d[c] = (((t >> 8) + t) >> 8) >> 7;
		}
	}
}
