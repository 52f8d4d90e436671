/*
 * patch.c - patchify: images (B,ch,H,W) to rows (B,P,ch*p*p) of
 * non-overlapping p x p patches, patches in row-major order, each row
 * flattened in (c, py, px) order. OpenCLIP's conv1.weight (D,ch,p,p)
 * read as (D, ch*p*p) is then the weight of a linear layer without bias,
 * and the stride-p convolution becomes one GEMM. One pass over memory:
 * the plain version is the CPU one.
 */
#include <assert.h>

#include "kernels.h"

/* Offset in the image of row i of channel c of patch q. */
static size_t
patch_row(int b, int q, int c, int i, int ch, int H, int W, int p)
{
	int py = q / (W / p), px = q % (W / p);

	return (((size_t)b * ch + c) * H + (size_t)py * p + i) * W +
	    (size_t)px * p;
}

/* out[b, py*(W/p)+px, (c*p+i)*p+j] = img[b, c, py*p+i, px*p+j]. */
void
vlm_patchify_fwd_ref(float *out, const float *img, int B, int ch, int H,
    int W, int p)
{
	int P = (H / p) * (W / p);

	assert(p > 0 && H % p == 0 && W % p == 0);
	for (int b = 0; b < B; b++)
		for (int q = 0; q < P; q++)
			for (int c = 0; c < ch; c++)
				for (int i = 0; i < p; i++) {
					const float *src = img +
					    patch_row(b, q, c, i, ch, H, W, p);
					for (int j = 0; j < p; j++)
						*out++ = src[j];
				}
}

/* dimg += the patch gradients put back in place. */
void
vlm_patchify_bwd_ref(float *dimg, const float *dout, int B, int ch, int H,
    int W, int p)
{
	int P = (H / p) * (W / p);

	assert(p > 0 && H % p == 0 && W % p == 0);
	for (int b = 0; b < B; b++)
		for (int q = 0; q < P; q++)
			for (int c = 0; c < ch; c++)
				for (int i = 0; i < p; i++) {
					float *dst = dimg +
					    patch_row(b, q, c, i, ch, H, W, p);
					for (int j = 0; j < p; j++)
						dst[j] += *dout++;
				}
}
