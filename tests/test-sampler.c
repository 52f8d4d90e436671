/*
 * test-sampler.c - several data sources (libcore/train/sampler.c): the
 * probability rule (weights, temperature, floor, unseen sources, no
 * overflow) against a plain recomputation of the documented formula;
 * systematic counts (sum B, floor or ceil of B p, deterministic, B p on
 * average); each source's items walk its documented permutations epoch
 * after epoch; the loss averages and their one-step lag; a sampler
 * restored from the saved state continues the same stream.
 */
#include <math.h>

#include "testutil.h"

static const struct vlm_sampler_opts adaptive = { .adaptive = 1,
	.tau = 0.5, .decay = 0.9, .eps = 0.1, .seed = 42 };

static void
test_rule(void **state)
{
	double w[3] = { 0.2, 0.3, 0.5 }, L[3] = { 1.0, 2.5, 1.5 }, p[3];
	int seen[3] = { 1, 1, 1 }, none[3] = { 0 };
	struct vlm_sampler_opts fixed = adaptive;
	double q[3], sum = 0;

	(void)state;
	fixed.adaptive = 0;
	vlm_sampler_rule(3, w, L, seen, &fixed, p);
	for (int s = 0; s < 3; s++)
		assert_true(p[s] == w[s]);
	vlm_sampler_rule(3, w, L, none, &adaptive, p);
	for (int s = 0; s < 3; s++)
		assert_true(p[s] == w[s]);
	/* the formula, written out plainly */
	for (int s = 0; s < 3; s++)
		sum += q[s] = w[s] * exp(L[s] / adaptive.tau);
	vlm_sampler_rule(3, w, L, seen, &adaptive, p);
	for (int s = 0; s < 3; s++) {
		double want = 0.9 * q[s] / sum + 0.1 / 3;
		assert_true(fabs(p[s] - want) < 1e-12);
	}
	assert_true(p[1] > p[2] && p[2] > p[0] * 2); /* hard sources more */
	assert_true(fabs(p[0] + p[1] + p[2] - 1) < 1e-12);
	/* a source not seen yet counts the mean of the others */
	seen[1] = 0;
	sum = 0;
	for (int s = 0; s < 3; s++)
		sum += q[s] = w[s] * exp((s == 1 ? 1.25 : L[s]) / 0.5);
	vlm_sampler_rule(3, w, L, seen, &adaptive, p);
	for (int s = 0; s < 3; s++)
		assert_true(fabs(p[s] - (0.9 * q[s] / sum + 0.1 / 3)) < 1e-12);
}

/* the floor holds however lopsided the losses, and nothing overflows */
static void
test_floor(void **state)
{
	double w[2] = { 0.5, 0.5 }, L[2] = { 1000, 2000 }, p[2];
	int seen[2] = { 1, 1 };
	struct vlm_sampler_opts o = adaptive;

	(void)state;
	o.tau = 1;
	vlm_sampler_rule(2, w, L, seen, &o, p);
	assert_true(isfinite(p[0]) && isfinite(p[1]));
	assert_true(fabs(p[0] - 0.05) < 1e-12 && fabs(p[1] - 0.95) < 1e-12);
	o.eps = 1; /* all floor: uniform */
	vlm_sampler_rule(2, w, L, seen, &o, p);
	assert_true(p[0] == 0.5 && p[1] == 0.5);
}

static void
test_counts(void **state)
{
	double p[3] = { 0.13, 0.5, 0.37 }, mean[3] = { 0 };
	int c[3], c2[3], differ = 0, N = 4000, B = 16;

	(void)state;
	for (int k = 1; k <= N; k++) {
		vlm_sampler_counts(p, 3, B, 7, k, 0, c);
		vlm_sampler_counts(p, 3, B, 7, k, 0, c2);
		assert_memory_equal(c, c2, sizeof(c));
		assert_int_equal(c[0] + c[1] + c[2], B);
		for (int s = 0; s < 3; s++) {
			assert_true(c[s] == (int)floor(B * p[s]) ||
			    c[s] == (int)ceil(B * p[s]));
			mean[s] += (double)c[s] / N;
		}
		vlm_sampler_counts(p, 3, B, 7, k, 1, c2);
		differ += memcmp(c, c2, sizeof(c)) != 0;
	}
	for (int s = 0; s < 3; s++)
		assert_true(fabs(mean[s] - B * p[s]) < 0.05);
	assert_true(differ > N / 10); /* micro-batches draw anew */
}

/* The documented order of source s: perm(seed(s), epoch) of its n. */
static void
walk(int64_t n, int s, int64_t k, int64_t *epoch, uint32_t *perm,
    int64_t *pe, int64_t *local, uint64_t *seed)
{
	uint64_t ss = vlm_item_seed(42, -1, s);
	int64_t e = k / n;

	if (*pe != e) {
		vlm_perm_shuffle(perm, n, ss, e);
		*pe = e;
	}
	*epoch = e;
	*local = perm[k % n];
	*seed = vlm_item_seed(ss, e, *local);
}

/* Steps 1..steps of micro-batches of B, checked against walk(). */
static void
run_plan(struct vlm_sampler *sp, int64_t first, int64_t steps, int B,
    int64_t *taken)
{
	int64_t n[2] = { 5, 3 }, lo[2] = { 0, 5 }, pe[2] = { -1, -1 };
	uint32_t perm[2][5];
	struct vlm_feed f[8];
	int src[8];

	for (int64_t k = first; k <= steps; k++) {
		for (int m = 0; m < 2; m++) {
			vlm_sampler_plan(sp, k, m, B, f, src);
			for (int j = 0; j < B; j++) {
				int s = src[j];
				int64_t e, local;
				uint64_t seed;
				assert_true(j == 0 || src[j - 1] <= s);
				walk(n[s], s, taken[s]++, &e, perm[s], &pe[s],
				    &local, &seed);
				assert_int_equal(f[j].index, lo[s] + local);
				assert_true(f[j].seed == seed);
				assert_int_equal(f[j].lo, lo[s]);
				assert_int_equal(f[j].n, n[s]);
			}
		}
		double loss[8];
		for (int j = 0; j < B; j++)
			loss[j] = 1.0 + src[j] + 0.01 * (double)k;
		vlm_sampler_add(sp, src, loss, B);
		vlm_sampler_update(sp, k);
	}
}

static void
test_plan_resume(void **state)
{
	int64_t n[2] = { 5, 3 }, taken[2] = { 0 }, taken2[2];
	double w[2] = { 1, 1 };
	struct vlm_sampler *a, *b;
	struct vlm_source_state sa[2], sb[2];

	(void)state;
	assert_non_null(a = vlm_sampler_new(2, n, w, &adaptive));
	run_plan(a, 1, 6, 4, taken);
	assert_true(taken[0] > 5 && taken[1] > 3); /* past an epoch each */
	/* a sampler restored from the state at step 6 goes on the same */
	assert_non_null(b = vlm_sampler_new(2, n, w, &adaptive));
	assert_int_equal(vlm_sampler_done(a), 6);
	vlm_sampler_state(a, sa);
	vlm_sampler_restore(b, sa, vlm_sampler_done(a));
	memcpy(taken2, taken, sizeof(taken));
	run_plan(a, 7, 12, 4, taken);
	run_plan(b, 7, 12, 4, taken2);
	assert_memory_equal(taken, taken2, sizeof(taken));
	vlm_sampler_state(a, sa);
	vlm_sampler_state(b, sb);
	for (int s = 0; s < 2; s++) {
		assert_true(sa[s].ema == sb[s].ema);
		assert_int_equal(sa[s].pos, sb[s].pos);
	}
	vlm_sampler_free(a);
	vlm_sampler_free(b);
}

static void
test_update(void **state)
{
	int64_t n[3] = { 4, 4, 4 };
	struct vlm_sampler *s;
	struct vlm_source_state st[3];
	int src[3] = { 0, 0, 1 };
	double loss[3] = { 2.0, 4.0, 1.0 }, p[3], want[3];
	double w[3] = { 4.0 / 12, 4.0 / 12, 4.0 / 12 }; /* n normalised */

	(void)state;
	assert_non_null(s = vlm_sampler_new(3, n, NULL, &adaptive));
	vlm_sampler_probs(s, 1, p);     /* nothing seen: the weights */
	for (int i = 0; i < 3; i++)
		assert_true(fabs(p[i] - 1.0 / 3) < 1e-15);
	vlm_sampler_add(s, src, loss, 3);
	vlm_sampler_update(s, 1);
	vlm_sampler_state(s, st);
	assert_true(st[0].seen && st[0].ema == 3.0);
	assert_true(st[1].seen && st[1].ema == 1.0);
	assert_false(st[2].seen);
	loss[0] = loss[1] = 5.0;
	vlm_sampler_add(s, src, loss, 2); /* source 0 only */
	vlm_sampler_update(s, 2);
	vlm_sampler_state(s, st);
	assert_int_equal(vlm_sampler_done(s), 2);
	assert_true(fabs(st[0].ema - (0.9 * 3.0 + 0.1 * 5.0)) < 1e-15);
	assert_true(st[0].ema_prev == 3.0 && st[1].ema == 1.0);
	/* step 3 uses the losses through step 1, step 4 through step 2 */
	vlm_sampler_probs(s, 3, p);
	vlm_sampler_rule(3, w, (double[]){ 3.0, 1.0, 0 }, (int[]){ 1, 1, 0 },
	    &adaptive, want);
	assert_memory_equal(p, want, sizeof(p));
	vlm_sampler_probs(s, 4, p);
	vlm_sampler_rule(3, w, (double[]){ 3.2, 1.0, 0 }, (int[]){ 1, 1, 0 },
	    &adaptive, want);
	assert_true(fabs(p[0] - want[0]) < 1e-15 && p[0] > p[1]);
	vlm_sampler_free(s);
}

static void
test_bad_init(void **state)
{
	int64_t n[2] = { 3, 0 }, n2[2] = { 3, 3 };
	double w[2] = { 1, 0 };
	struct vlm_sampler_opts o = adaptive;

	(void)state;
	assert_null(vlm_sampler_new(2, n, NULL, &adaptive));
	assert_null(vlm_sampler_new(2, n2, w, &adaptive));
	assert_non_null(strstr(vlm_errmsg(), "weight"));
	o.tau = 0;
	assert_null(vlm_sampler_new(2, n2, NULL, &o));
	assert_null(vlm_sampler_new(0, n2, NULL, &adaptive));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule),
		cmocka_unit_test(test_floor),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_plan_resume),
		cmocka_unit_test(test_update),
		cmocka_unit_test(test_bad_init),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
