/*
 * image-priv.h - what image.c shares with its two decoders,
 * image-jpeg.c and image-png.c; not part of the public API.
 */
#ifndef VLM_IMAGE_PRIV_H
#define VLM_IMAGE_PRIV_H

#include "data/data.h"

/*
 * Decode a whole JPEG / PNG buffer into im (rgb malloc'ed) under the
 * options o (defaults filled in); *orientation gets the EXIF orientation
 * (1..8, 1 if none). -1 with a message naming `name`, im left empty.
 */
int vlm_jpeg_decode(struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation);
int vlm_png_decode(struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation);
/* The same for WebP (image-webp.c); vlm_webp_sniff: 1 for a RIFF WEBP. */
int vlm_webp_decode(struct vlm_image *im, const uint8_t *buf, size_t n,
    const char *name, const struct vlm_image_opts *o, int *orientation);
int vlm_webp_sniff(const uint8_t *p, size_t n);

/* -1 with a message unless 0 < w, h and w * h <= o->max_pixels. */
int vlm_image_check_size(const char *name, uint64_t w, uint64_t h,
    const struct vlm_image_opts *o);
/* EXIF Orientation from a TIFF-structured block; 1 if none. */
int vlm_exif_orientation(const uint8_t *tiff, size_t n);
/* RGBA to RGB in place: drop alpha or composite over white / black. */
void vlm_image_flatten(uint8_t *p /* (n,4) -> (n,3) */, size_t n,
    enum vlm_alpha mode);
/* A library's message with its first letter lower-cased. */
void vlm_image_libmsg(char *buf, size_t n, const char *msg);

#endif
