/*
 * test-linprobe.c - the linear probe (libcore/eval/linprobe.c): the fit is the
 * minimum of the regularised cross-entropy (its gradient, computed here
 * independently in double, vanishes there, and the reported loss is the
 * objective there); the chosen weight decay comes from the documented
 * grid; Gaussian classes are learnt; the same bits for every thread
 * count; bad input is refused.
 */
#include <math.h>

#include "testutil.h"

enum { D = 5, C = 4 };

/* n rows of C Gaussian classes around planted means, labels i % C. */
static void
make_data(float *X, int *y, int n, double spread, uint64_t seed)
{
	struct vlm_rng r;

	vlm_rng_seed(&r, seed);
	for (int i = 0; i < n; i++) {
		y[i] = i % C;
		for (int d = 0; d < D; d++)
			X[i * D + d] = (float)((d == y[i] ? 1.0 : 0.0) +
			    (d == D - 1 ? 0.5 : 0.0) + spread *
			    vlm_rng_normal(&r));
	}
}

/* The objective and its gradient, from the definition, in double. */
static double
objective(const float *X, const int *y, int n, double wd, const float *W,
    const float *b, double *gW, double *gb)
{
	double f = 0, reg = 0;

	memset(gW, 0, D * C * sizeof(*gW));
	memset(gb, 0, C * sizeof(*gb));
	for (int i = 0; i < n; i++) {
		double z[C], mx = -INFINITY, sum = 0;
		for (int c = 0; c < C; c++) {
			z[c] = b[c];
			for (int d = 0; d < D; d++)
				z[c] += (double)X[i * D + d] * W[d * C + c];
			mx = fmax(mx, z[c]);
		}
		for (int c = 0; c < C; c++)
			sum += exp(z[c] - mx);
		f += mx + log(sum) - z[y[i]];
		for (int c = 0; c < C; c++) {
			double q = exp(z[c] - mx) / sum - (c == y[i]);
			gb[c] += q / n;
			for (int d = 0; d < D; d++)
				gW[d * C + c] += q * X[i * D + d] / n;
		}
	}
	for (int j = 0; j < D * C; j++) {
		gW[j] += wd * W[j];
		reg += (double)W[j] * W[j];
	}
	return f / n + 0.5 * wd * reg;
}

static void
test_minimum(void **state)
{
	enum { N = 120 };
	struct vlm_linprobe_opts o = VLM_LINPROBE_DEFAULT;
	struct vlm_linprobe lp;
	float X[N * D];
	int y[N];
	double gW[D * C], gb[C], f, gmax = 0;

	(void)state;
	make_data(X, y, N, 0.6, 1);
	o.wd = 1e-2;
	assert_int_equal(vlm_linprobe_fit(&lp, X, y, N, D, C, &o), 0);
	assert_true(lp.wd == 1e-2 && isnan(lp.val_acc1));
	f = objective(X, y, N, o.wd, lp.W, lp.b, gW, gb);
	for (int j = 0; j < D * C; j++)
		gmax = fmax(gmax, fabs(gW[j]));
	for (int c = 0; c < C; c++)
		gmax = fmax(gmax, fabs(gb[c]));
	print_message("objective %.9f (probe says %.9f), max |gradient| "
	    "%.2e\n", f, lp.loss, gmax);
	assert_true(gmax < 1e-4);
	assert_true(fabs(f - lp.loss) < 1e-6);
	/* a real fit, not the start: the loss at zero is log C */
	assert_true(f < log(C) - 0.3);
	vlm_linprobe_release(&lp);
}

static void
test_choose_wd(void **state)
{
	enum { N = 200, NT = 100 };
	struct vlm_linprobe lp;
	struct vlm_cls_metrics m;
	float X[N * D], Xt[NT * D], z[NT * C];
	int y[N], yt[NT], k;

	(void)state;
	make_data(X, y, N, 0.3, 2);
	make_data(Xt, yt, NT, 0.3, 3);
	assert_int_equal(vlm_linprobe_fit(&lp, X, y, N, D, C, NULL), 0);
	k = (int)lround(2 * log10(lp.wd));
	print_message("wd %g, validation acc1 %.3f\n", lp.wd, lp.val_acc1);
	assert_true(k >= -12 && k <= 0 && fabs(lp.wd - pow(10, k / 2.0)) <
	    1e-12 * lp.wd);
	assert_true(lp.val_acc1 >= 0.9 && lp.val_acc1 <= 1);
	assert_int_equal(vlm_linprobe_logits(&lp, z, Xt, NT), 0);
	assert_int_equal(vlm_metrics_cls(&m, z, yt, NT, C, NULL, NULL), 0);
	assert_true(m.acc1 >= 0.9);
	vlm_linprobe_release(&lp);
}

static void
test_threads(void **state)
{
	enum { N = 300 };
	struct vlm_linprobe a, b;
	float *X = malloc(N * D * sizeof(*X));
	int y[N];

	(void)state;
	make_data(X, y, N, 1.0, 4);
	vlm_threads_set(1);
	assert_int_equal(vlm_linprobe_fit(&a, X, y, N, D, C, NULL), 0);
	vlm_threads_set(3);
	assert_int_equal(vlm_linprobe_fit(&b, X, y, N, D, C, NULL), 0);
	vlm_threads_set(0);
	assert_true(a.wd == b.wd && a.loss == b.loss);
	assert_memory_equal(a.W, b.W, (D + 1) * C * sizeof(float));
	vlm_linprobe_release(&a);
	vlm_linprobe_release(&b);
	free(X);
}

static void
test_bad_input(void **state)
{
	struct vlm_linprobe lp;
	float X[3 * D] = { 0 };
	int y[3] = { 0, 1, 4 };

	(void)state;
	assert_int_equal(vlm_linprobe_fit(&lp, X, y, 3, D, C, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "out of range"));
	y[2] = 1;
	assert_int_equal(vlm_linprobe_fit(&lp, X, y, 3, D, C, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "too few"));
	assert_null(lp.W);
	assert_int_equal(vlm_linprobe_logits(&lp, X, X, 1), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimum),
		cmocka_unit_test(test_choose_wd),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
