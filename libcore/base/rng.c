/*
 * rng.c - the project's one pseudo-random generator: xoshiro256** seeded
 * through splitmix64, with uniform and normal draws. Its state is four
 * words, so checkpoints can save and restore it exactly.
 */
#include <math.h>

#include "base/base.h"

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
vlm_rng_seed(struct vlm_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

/* A generator for stream `stream` of `seed`: independent, reproducible. */
void
vlm_rng_seed2(struct vlm_rng *r, uint64_t seed, uint64_t stream)
{
	vlm_rng_seed(r, seed ^ (stream * 0xd1342543de82ef95ULL + 1));
}

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
vlm_rng_u64(struct vlm_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double
vlm_rng_uniform(struct vlm_rng *r)
{
	return (vlm_rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Integer in [0, n) without modulo bias worth noticing (n < 2^32). */
uint64_t
vlm_rng_below(struct vlm_rng *r, uint64_t n)
{
	return (uint64_t)(vlm_rng_uniform(r) * (double)n) % n;
}

/* Standard normal by Box-Muller (one draw per call; simple over fast). */
double
vlm_rng_normal(struct vlm_rng *r)
{
	double u1 = 1.0 - vlm_rng_uniform(r), u2 = vlm_rng_uniform(r);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
