/*
 * fuzz-jpeg.c - JPEG decoding and preprocessing of arbitrary bytes (the
 * decoder is chosen by content, so the corpus steers it); see
 * fuzz-image.h.
 */
#include "fuzz-image.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_image(data, size);
}
