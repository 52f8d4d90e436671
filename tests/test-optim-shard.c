/*
 * test-optim-shard.c - clipping a gradient whose experts are split over
 * ranks (libcore/train/optim.c): the whole parameters' sum of squares is
 * the same on every rank, the experts' sums of the ranks add up with it
 * to the one-process norm, and each rank's part clipped by that norm
 * equals the one-process clipped gradient; vlm_optim_step leaves a
 * sharded gradient as the caller clipped it.
 */
#include <math.h>

#include "testutil.h"

#include "kernels.h"

#define P 2

static void
test_clip_shards(void **state)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_optim full, o[P];
	double whole[P], ex[P], s = 0, norm;

	(void)state;
	tiny_grad_config(&c);
	c.moe.experts = 4;
	assert_int_equal(vlm_model_init(&m, &c), 0);
	vlm_model_randomize(&m, 5);
	vlm_optim_defaults(&full);
	assert_int_equal(vlm_optim_init(&full, &m, NULL), 0);
	assert_int_equal(full.pack.n, m.nfloats); /* the slab's layout */
	float *g = malloc(m.nfloats * 4), *gc = malloc(m.nfloats * 4);
	randn_fill(g, m.nfloats, 41);
	for (int64_t i = 0; i < m.nfloats; i++)
		s += (double)g[i] * g[i];
	full.clip = (float)(0.5 * sqrt(s)); /* clips by about a half */
	memcpy(gc, g, m.nfloats * 4);
	assert_true(fabsf(full.be->grad_clip(gc, m.nfloats, full.clip) -
	    (float)sqrt(s)) <= 1e-6 * sqrt(s));
	float *gq[P];
	for (int q = 0; q < P; q++) {
		vlm_optim_defaults(&o[q]);
		assert_int_equal(vlm_optim_init_shard(&o[q], &m, NULL, q, P),
		    0);
		o[q].clip = full.clip;
		assert_true(o[q].pack.nrep < o[q].pack.n &&
		    o[q].pack.n < m.nfloats);
		gq[q] = malloc(o[q].pack.n * 4);
		for (int i = 0; i < m.nparams; i++)
			memcpy(gq[q] + o[q].pack.off[i], g + m.params[i].off +
			    o[q].pack.lo[i], o[q].pack.len[i] * 4);
		vlm_optim_sumsq(&o[q], gq[q], &whole[q], &ex[q]);
	}
	print_message("sums of squares: whole %.6g %.6g, experts %.6g "
	    "%.6g, one process %.6g\n", whole[0], whole[1], ex[0], ex[1], s);
	assert_true(whole[0] == whole[1]); /* the replicated part, once */
	assert_true(ex[0] > 0 && ex[1] > 0 && ex[0] != ex[1]);
	norm = sqrt(whole[0] + ex[0] + ex[1]);
	assert_true(fabs(norm - sqrt(s)) <= 1e-6 * sqrt(s));
	for (int q = 0; q < P; q++) {
		assert_true(vlm_optim_clip_norm(&o[q], gq[q], norm) ==
		    (float)norm);
		for (int i = 0; i < m.nparams; i++) {
			const float *want = gc + m.params[i].off +
			    o[q].pack.lo[i];
			assert_true(rel_err(gq[q] + o[q].pack.off[i], want,
			    o[q].pack.len[i]) <= 1e-6);
		}
		/* the step reads the caller's clipped gradient as it is,
		 * whatever its cap */
		float *keep = malloc(o[q].pack.n * 4);
		memcpy(keep, gq[q], o[q].pack.n * 4);
		o[q].clip = full.clip * 0.1f;
		vlm_optim_step(&o[q], &m, gq[q], 1e-3f);
		assert_memory_equal(keep, gq[q], o[q].pack.n * 4);
		free(keep);
		free(gq[q]);
		vlm_optim_release(&o[q]);
	}
	vlm_optim_release(&full);
	free(g), free(gc);
	vlm_model_release(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clip_shards),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
