/*
 * clock.c - seconds on the clocks of clock_gettime, for timing steps,
 * rates and waits (differences of two readings).
 */
#include "base/base.h"

double
vlm_clock(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double
vlm_now(void)
{
	return vlm_clock(CLOCK_MONOTONIC);
}
