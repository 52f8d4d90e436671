/*
 * bf16.c - bfloat16 numbers and the linear layer with bf16 weights:
 * y = bf16(x) w^T + b, w (OUT, IN) stored as bf16, the products, their
 * sums, the bias and y in fp32. Rounding fp32 to bf16 is
 * vlm_f32_to_bf16 (base/tensor.c), as PyTorch's (c10/util/BFloat16.h):
 * round to nearest even, no flushing of subnormals (a NaN stays a quiet
 * NaN of its sign, where PyTorch makes every NaN 0x7fc0).
 *
 * The product of two bf16 numbers (8-bit significands) is exact in
 * fp32, so an fp32 GEMM on bf16 values widened to fp32 computes the
 * same sums as a bf16 GEMM with fp32 accumulation, up to the order of
 * the additions. The fast version does exactly that: it rounds x and
 * widens w into the caller's scratch, then runs the tiled SGEMM
 * (matmul.c). On the CPU this was measured, `make bench` (bench-gemm),
 * faster than the bf16 dot-product instruction (AVX512_BF16
 * VDPBF16PS), whose rate here is about half the fp32 FMA rate, and it
 * needs no particular instruction set.
 */
#include "base/base.h"
#include "kernels.h"

void
vlm_bf16_from_f32_ref(uint16_t *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = vlm_f32_to_bf16(x[i]);
}

void
vlm_linear_fwd_bf16_ref(float *y, float *scratch, const float *x,
    const uint16_t *w, const float *b, int N, int IN, int OUT)
{
	(void)scratch;
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * IN;
		for (int o = 0; o < OUT; o++) {
			const uint16_t *wo = w + (size_t)o * IN;
			float s = 0.0f;
			for (int i = 0; i < IN; i++)
				s += vlm_bf16_to_f32(vlm_f32_to_bf16(xn[i])) *
				    vlm_bf16_to_f32(wo[i]);
			y[(size_t)n * OUT + o] = b ? s + b[o] : s;
		}
	}
}

size_t
vlm_linear_bf16_scratch_floats(int N, int IN, int OUT)
{
	return ((size_t)N + (size_t)OUT) * (size_t)IN;
}

/* The two passes over memory, vectorised for the CPU at hand (gcc picks
 * a clone at load time; -O2 alone vectorises neither). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_LOOP __attribute__((target_clones("avx512f", "avx2", \
    "default"), optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define VECTOR_LOOP
#endif

struct cast {
	void *y;
	const void *x;
};

/* y[i] = bf16(x[i]) for i in [i0, i1). */
static void
round_range(void *arg, int64_t i0, int64_t i1)
{
	struct cast *c = arg;

	vlm_bf16_from_f32_ref((uint16_t *)c->y + i0, (const float *)c->x + i0,
	    i1 - i0);
}

void
vlm_bf16_from_f32_cpu(uint16_t *y, const float *x, int64_t n)
{
	struct cast c = { y, x };

	vlm_parallel_for_cost(n, 4 * n, round_range, &c);
}

/* y[i] = x[i] rounded to bf16 and widened back, for i in [i0, i1):
 * vlm_f32_to_bf16 (base/tensor.c) on the bits, in a loop the compiler
 * vectorises: round to nearest even, then clear the low 16 bits; a NaN
 * made quiet. */
VECTOR_LOOP static void
round_f32_range(void *arg, int64_t i0, int64_t i1)
{
	struct cast *c = arg;
	const uint32_t *x = (const uint32_t *)c->x;
	uint32_t *y = c->y;

	for (int64_t i = i0; i < i1; i++) {
		uint32_t u = x[i];
		y[i] = (u & 0x7fffffffu) > 0x7f800000u ?
		    (u & 0xffff0000u) | 0x00400000u :
		    (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
	}
}

/* y[i] = x[i] widened from bf16 to fp32, for i in [i0, i1). */
VECTOR_LOOP static void
widen_range(void *arg, int64_t i0, int64_t i1)
{
	struct cast *c = arg;
	const uint16_t *x = c->x;
	uint32_t *y = c->y;

	for (int64_t i = i0; i < i1; i++)
		y[i] = (uint32_t)x[i] << 16;
}

void
vlm_linear_fwd_bf16_cpu(float *y, float *scratch, const float *x,
    const uint16_t *w, const float *b, int N, int IN, int OUT)
{
	float *xr = scratch, *wf = scratch + (size_t)N * IN;
	struct cast cx = { xr, x }, cw = { wf, w };
	int64_t nx = (int64_t)N * IN, nw = (int64_t)OUT * IN;

	if (N <= 0)
		return;
	vlm_parallel_for_cost(nx, 4 * nx, round_f32_range, &cx);
	vlm_parallel_for_cost(nw, 2 * nw, widen_range, &cw);
	vlm_linear_fwd_cpu(y, xr, wf, b, N, IN, OUT);
}
