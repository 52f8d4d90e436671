/*
 * fdcheck.h - helpers for the kernel tests: seeded random data, central
 * finite differences of a double-precision forward, and the parity
 * measure max |a - b| / max |b| asserted under a tolerance.
 */
#ifndef VLM_FDCHECK_H
#define VLM_FDCHECK_H

#include <math.h>

#include "testutil.h"

#define FD_STEP 1e-5

/* n normal draws times scale. */
static void
fill_randn(float *a, size_t n, double scale, struct vlm_rng *r)
{
	for (size_t i = 0; i < n; i++)
		a[i] = (float)(scale * vlm_rng_normal(r));
}

/* A double copy of n floats; caller frees. */
static double *
dup_double(const float *a, size_t n)
{
	double *d = malloc((n ? n : 1) * sizeof(*d));

	assert_non_null(d);
	for (size_t i = 0; i < n; i++)
		d[i] = a[i];
	return d;
}

/* g[i] = (f(x + h e_i) - f(x - h e_i)) / 2h, x perturbed in place. */
static void
fd_grad(double *g, double *x, size_t n, double (*f)(void *), void *ctx)
{
	for (size_t i = 0; i < n; i++) {
		double save = x[i], fp, fm;
		double h = FD_STEP * (fabs(save) > 1 ? fabs(save) : 1);
		x[i] = save + h;
		fp = f(ctx);
		x[i] = save - h;
		fm = f(ctx);
		x[i] = save;
		g[i] = (fp - fm) / (2 * h);
	}
}

/* max |a - b| / max |b| (or max |a - b| when b is all zero). */
static double
rel_err_d(const float *a, const double *b, size_t n)
{
	double md = 0, mb = 0;

	for (size_t i = 0; i < n; i++) {
		if (fabs(a[i] - b[i]) > md)
			md = fabs(a[i] - b[i]);
		if (fabs(b[i]) > mb)
			mb = fabs(b[i]);
	}
	return mb > 0 ? md / mb : md;
}

/* Assert a (float, under test) matches b (double oracle) within tol. */
static void
check_close(const char *what, const float *a, const double *b, size_t n,
    double tol)
{
	double e = rel_err_d(a, b, n);

	print_message("%-40s rel err %.2e\n", what, e);
	if (!(e <= tol))
		fail_msg("%s: rel err %.3e > %.1e", what, e, tol);
}

/* The same for two float arrays (fast version against the reference). */
static void
check_closef(const char *what, const float *a, const float *b, size_t n,
    double tol)
{
	double e = rel_err(a, b, n);

	print_message("%-40s rel err %.2e\n", what, e);
	if (!(e <= tol))
		fail_msg("%s: rel err %.3e > %.1e", what, e, tol);
}

#endif
