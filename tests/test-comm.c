/*
 * test-comm.c - the one-process communicator (collectives are copies),
 * the launcher's rank count, and the data-parallel arithmetic of
 * cmd/train-dist.c in one process: a batch of 4 split into two runs of
 * 2, the contrastive loss over both halves' gathered features, each
 * half backpropagating its rows' feature gradients (vlm_backward_from)
 * with the aux terms halved; the two gradients plus the logit scale's
 * sum to the whole batch's (vlm_backward), dense and MoE (no router
 * noise, no capacity drops, no aux weights: each half routes alone);
 * expert parallel over the one-process communicator equals the plain
 * expert loop.
 */
#include <math.h>

#include "kernels.h"
#include "testutil.h"

static void
test_self(void **state)
{
	struct vlm_comm c;
	double x[2] = { 1.5, -2 };
	int a[3] = { 1, 2, 3 }, b[3] = { 0 }, n = 3;

	(void)state;
	vlm_comm_init_self(&c);
	assert_int_equal(c.size, 1);
	assert_int_equal(c.rank, 0);
	assert_int_equal(c.ops->allreduce(&c, x, 2, VLM_COMM_F64,
	    VLM_COMM_SUM), 0);
	assert_true(x[0] == 1.5 && x[1] == -2);
	assert_int_equal(c.ops->allgather(&c, a, b, sizeof(a)), 0);
	assert_memory_equal(a, b, sizeof(a));
	memset(b, 0, sizeof(b));
	assert_int_equal(c.ops->alltoallv(&c, a, &n, b, &n, sizeof(int)), 0);
	assert_memory_equal(a, b, sizeof(a));
	n = 2;
	assert_int_equal(c.ops->alltoallv(&c, a, &n, b, (int[]){ 3 },
	    sizeof(int)), -1);
	assert_int_equal(c.ops->barrier(&c), 0);
}

static void
test_launched(void **state)
{
	struct vlm_comm c;

	(void)state;
	unsetenv("OMPI_COMM_WORLD_SIZE");
	unsetenv("PMI_SIZE");
	unsetenv("PMIX_SIZE");
	unsetenv("MPI_LOCALNRANKS");
	assert_int_equal(vlm_comm_launched_size(), 1);
	setenv("PMI_SIZE", "3", 1);
	assert_int_equal(vlm_comm_launched_size(), 3);
	unsetenv("PMI_SIZE");
	setenv("VLM_COMM_TIMEOUT", "soon", 1);
	assert_int_equal(vlm_comm_init(&c, NULL, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "VLM_COMM_TIMEOUT"));
	setenv("VLM_COMM_TIMEOUT", "2.5", 1);
	assert_int_equal(vlm_comm_init(&c, NULL, NULL), 0);
	assert_int_equal(c.size, 1);
	assert_true(c.timeout == 2.5);
	unsetenv("VLM_COMM_TIMEOUT");
}

#define B 4
#define E 8

/* The whole batch's gradient against two halves' (see the header). */
static void
check_split(int moe)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_rng rng;
	static float img[B * 3 * 16 * 16], u[2][B * E], du[2][B * E];
	static float logits[B * B], dlogits[B * B], lse[2 * B];
	int32_t ids[B * 7] = { 0 };
	struct vlm_run *whole, *half;
	struct vlm_loss L;
	float *g, *gh, *sum, dtheta = 0, loss;
	double worst = 0, big = 0;

	tiny_grad_config(&c);
	c.moe.noise = 0, c.moe.cf_train = 0;
	c.aux.limoe = 0;
	c.aux.importance = c.aux.load = c.aux.switch_bal = c.aux.zloss = 0;
	c.aux.local_img = c.aux.local_txt = 0;
	c.aux.global_img = c.aux.global_txt = 0;
	if (!moe) /* two towers of dense blocks */
		c.family = VLM_TWO_TOWER, c.moe.experts = 0;
	if (vlm_model_init(&m, &c) < 0)
		fail_msg("%s", vlm_errmsg());
	vlm_model_randomize(&m, 3);
	vlm_rng_seed(&rng, 11);
	for (size_t i = 0; i < sizeof(img) / sizeof(*img); i++)
		img[i] = (float)vlm_rng_normal(&rng);
	for (int b = 0; b < B; b++) {  /* lengths 3..6, EOT = largest id */
		for (int t = 0; t < 2 + b; t++)
			ids[b * 7 + t] = 1 + vlm_rng_below(&rng, 37);
		ids[b * 7 + 2 + b] = 39;
	}
	g = malloc(m.nfloats * sizeof(float));
	gh = malloc(m.nfloats * sizeof(float));
	sum = calloc(m.nfloats, sizeof(float));
	assert_non_null(whole = vlm_run_new(&m, B, B, 1));
	assert_non_null(half = vlm_run_new(&m, B / 2, B / 2, 1));
	assert_int_equal(vlm_forward(whole, &m, img, ids), 0);
	assert_int_equal(vlm_run_loss(whole, &m, &L), 0);
	assert_int_equal(vlm_backward(whole, &m, g), 0);
	for (int h = 0; h < 2; h++) { /* "all-gather" */
		assert_int_equal(vlm_forward(half, &m, img + h * (B / 2) * 3 *
		    256, ids + h * (B / 2) * 7), 0);
		for (int i = 0; i < 2; i++)
			memcpy(u[i] + h * (B / 2) * E, vlm_run_features(half,
			    i, 1), (B / 2) * E * sizeof(float));
	}
	loss = vlm_clip_loss_fwd_cpu(logits, lse, u[0], u[1],
	    m.w[m.logit_scale], B, E);
	assert_true(fabsf(loss - L.contrastive) <= 1e-6f * fabsf(loss));
	memset(du, 0, sizeof(du)); /* the backward adds */
	vlm_clip_loss_bwd_cpu(du[0], du[1], &dtheta, dlogits, logits, lse,
	    u[0], u[1], m.w[m.logit_scale], 1.0f, B, E);
	for (int h = 0; h < 2; h++) { /* each rank's backward, "all-reduce" */
		assert_int_equal(vlm_forward(half, &m, img + h * (B / 2) * 3 *
		    256, ids + h * (B / 2) * 7), 0);
		assert_int_equal(vlm_run_loss(half, &m, NULL), 0);
		assert_int_equal(vlm_backward_from(half, &m, gh, du[0] + h *
		    (B / 2) * E, du[1] + h * (B / 2) * E, 0.5f), 0);
		for (int64_t i = 0; i < m.nfloats; i++)
			sum[i] += gh[i];
	}
	sum[m.logit_scale] += dtheta;
	for (int64_t i = 0; i < m.nfloats; i++) {
		worst = fmax(worst, fabs(sum[i] - g[i]));
		big = fmax(big, fabs(g[i]));
	}
	print_message("%s: gradient max |diff| %.3g of max |g| %.3g\n",
	    moe ? "moe" : "dense", worst, big);
	assert_true(big > 0 && worst <= 1e-5 * big);
	vlm_run_free(whole);
	vlm_run_free(half);
	vlm_model_release(&m);
	free(g);
	free(gh);
	free(sum);
}

static void
test_split_dense(void **state)
{
	(void)state;
	check_split(0);
}

static void
test_split_moe(void **state)
{
	(void)state;
	check_split(1);
}

/* Expert parallel over the one-process communicator: every expert's
 * rows packed, "sent" to itself, computed in chunks and unpacked give
 * the features and gradients of the plain expert loop; two towers: two
 * MoE layers of different row counts (20 image tokens, then 18 text
 * ones, all kept), each backward exchanging its own layer's rows. */
static void
check_expert_parallel_self(int two)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_comm self;
	struct vlm_rng rng;
	static float img[B * 3 * 16 * 16], f[B * E];
	int32_t ids[B * 7] = { 0 };
	struct vlm_run *r;
	float *g[2];
	double worst = 0, big = 0;

	tiny_grad_config(&c);
	c.moe.experts = 4;
	if (two) /* no capacity: the image layer sends more rows */
		c.family = VLM_TWO_TOWER, c.moe.cf_train = 0;
	assert_int_equal(vlm_model_init(&m, &c), 0);
	vlm_model_randomize(&m, 5);
	vlm_rng_seed(&rng, 12);
	for (size_t i = 0; i < sizeof(img) / sizeof(*img); i++)
		img[i] = (float)vlm_rng_normal(&rng);
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < 2 + b; t++)
			ids[b * 7 + t] = 1 + vlm_rng_below(&rng, 37);
		ids[b * 7 + 2 + b] = 39;
	}
	vlm_comm_init_self(&self);
	assert_non_null(r = vlm_run_new(&m, B, B, 1));
	for (int k = 0; k < 2; k++) {
		g[k] = malloc(m.nfloats * sizeof(float));
		if (k == 1) { /* stale buffers would show */
			static float neg[sizeof(img) / sizeof(*img)];
			for (size_t i = 0; i < sizeof(img) / sizeof(*img); i++)
				neg[i] = -img[i];
			assert_int_equal(vlm_forward(r, &m, neg, ids), 0);
			assert_int_equal(vlm_run_expert_parallel(r, &m, &self),
			    0);
		}
		vlm_run_seed(r, 9); /* the same router noise */
		assert_int_equal(vlm_forward(r, &m, img, ids), 0);
		assert_int_equal(vlm_run_loss(r, &m, NULL), 0);
		assert_int_equal(vlm_backward(r, &m, g[k]), 0);
		if (k == 0)
			memcpy(f, vlm_run_features(r, 1, 0), sizeof(f));
		else
			assert_memory_equal(f, vlm_run_features(r, 1, 0),
			    sizeof(f));
	}
	for (int64_t i = 0; i < m.nfloats; i++) {
		worst = fmax(worst, fabs(g[0][i] - g[1][i]));
		big = fmax(big, fabs(g[0][i]));
	}
	print_message("%s: gradient max |diff| %.3g of max |g| %.3g\n",
	    two ? "two towers" : "one tower", worst, big);
	assert_true(big > 0 && worst <= 1e-6 * big);
	vlm_run_free(r);
	vlm_model_release(&m);
	free(g[0]);
	free(g[1]);
}

static void
test_expert_parallel_self(void **state)
{
	(void)state;
	check_expert_parallel_self(0);
}

static void
test_expert_parallel_two_towers(void **state)
{
	(void)state;
	check_expert_parallel_self(1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self),
		cmocka_unit_test(test_launched),
		cmocka_unit_test(test_split_dense),
		cmocka_unit_test(test_split_moe),
		cmocka_unit_test(test_expert_parallel_self),
		cmocka_unit_test(test_expert_parallel_two_towers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
