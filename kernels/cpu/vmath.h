/*
 * vmath.h - float maths that gcc -O2 vectorises, for the fast kernels
 * (act.c, attention.c): branch-free, no libm calls, compiled for
 * AVX-512, AVX2 and the SSE2 default by the callers' WIDE clones.
 */
#ifndef VLM_VMATH_H
#define VLM_VMATH_H

#include <stdint.h>
#include <string.h>

/* 16 floats a vector where the CPU has AVX-512, 8 with AVX2; same IEEE
 * operations (C11 mode contracts no FMA), so the same bits as the SSE2
 * default. */
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
/* Inlined into each clone: called out of line, the SSE2 body ran inside
 * AVX code at 50x the cost (state transitions, bench-model gelu). */
#define INLINE static inline __attribute__((always_inline))

/* e^x for x <= 0: 2^n e^r, |r| <= ln2/2, degree-7 Taylor; 0 below -87. */
INLINE float
exp_neg(float x)
{
	const float big = 12582912.0f;	/* 1.5 * 2^23: rounds to integer */
	float xc = x < -87.0f ? -87.0f : x;
	float z = xc * 1.44269504f + big, n = z - big, r, p, s;
	uint32_t zi, si; /* unsigned: NaN inputs wrap instead of overflowing */

	r = xc - n * 0.693145752f;	/* ln 2 in two parts */
	r = r - n * 1.42860677e-6f;
	p = 1.0f / 5040;
	p = p * r + 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	memcpy(&zi, &z, 4);
	si = (zi - 0x4b400000u + 127u) << 23;	/* 2^n */
	memcpy(&s, &si, 4);
	return x < -87.0f ? 0.0f : p * s;
}

#endif
