/*
 * test-eval-backend.c - the evaluation's products go through the backend
 * table (libcore/eval/gemm-host.c): a backend with memory of its own
 * gets the host arrays uploaded and gives the same bits as the cpu gemm
 * in place; the metrics follow VLM_BACKEND (an unknown one is an error,
 * ref agrees with cpu); embeddings made by vlm_emb_init and taken apart
 * by vlm_emb_take_vec.
 */
#include <math.h>

#include "testutil.h"

#include "eval/eval-priv.h"

/* A "device": cpu's ops on memory of its own, each transfer counted. */
static int uploads, downloads;

static void
dev_upload(void *dst, const void *src, size_t n)
{
	uploads++;
	memcpy(dst, src, n);
}

static void
dev_download(void *dst, const void *src, size_t n)
{
	downloads++;
	memcpy(dst, src, n);
}

static void
test_gemm_device(void **state)
{
	struct vlm_backend dev = *vlm_backend_get("cpu");
	const struct vlm_backend *cpu = vlm_backend_get("cpu");
	int M = 37, N = 13, K = 29;

	(void)state;
	dev.name = "dev", dev.device = 1;
	dev.upload = dev_upload, dev.download = dev_download;
	for (int ta = 0; ta < 2; ta++)
	for (int tb = 0; tb < 2; tb++)
	for (int beta = 0; beta < 2; beta++) {
		float A[37 * 29], B[29 * 13], C0[37 * 13], C1[37 * 13];
		randn_fill(A, M * K, 1);
		randn_fill(B, K * N, 2);
		randn_fill(C0, M * N, 3);
		memcpy(C1, C0, sizeof(C0));
		uploads = downloads = 0;
		assert_int_equal(vlm_eval_gemm(cpu, ta, tb, M, N, K, 0.5f, A,
		    ta ? M : K, B, tb ? K : N, beta, C0, N), 0);
		assert_int_equal(uploads + downloads, 0);
		assert_int_equal(vlm_eval_gemm(&dev, ta, tb, M, N, K, 0.5f, A,
		    ta ? M : K, B, tb ? K : N, beta, C1, N), 0);
		assert_int_equal(uploads, 2 + beta);
		assert_int_equal(downloads, 1);
		assert_memory_equal(C0, C1, sizeof(C0));
	}
}

/* Zero-shot logits of random embeddings on the current VLM_BACKEND. */
static int
logits(float *z)
{
	float img[20 * 8], W[8 * 5];

	randn_fill(img, 20 * 8, 4);
	randn_fill(W, 8 * 5, 5);
	return vlm_zeroshot_logits(z, img, W, 20, 8, 5);
}

static void
test_metrics_backend(void **state)
{
	float zc[100], zr[100];
	double err = 0;

	(void)state;
	setenv("VLM_BACKEND", "nosuch", 1);
	assert_int_equal(logits(zc), -1);
	assert_non_null(strstr(vlm_errmsg(), "unknown backend 'nosuch'"));
	setenv("VLM_BACKEND", "ref", 1);
	assert_int_equal(logits(zr), 0);
	unsetenv("VLM_BACKEND");
	assert_int_equal(logits(zc), 0);
	for (int i = 0; i < 100; i++)
		err = fmax(err, fabs(zc[i] - zr[i]) / (1 + fabs(zr[i])));
	print_message("zero-shot logits, cpu against ref: %.1e\n", err);
	assert_true(err < 1e-5);
}

static void
test_emb_init_take(void **state)
{
	struct vlm_emb e;
	float *v;

	(void)state;
	assert_int_equal(vlm_emb_init(&e, 3, 4), 0);
	assert_true(e.n == 3 && e.dim == 4 && !e.ids && !e.meta);
	for (int i = 0; i < 12; i++)
		assert_true(e.vec[i] == 0.0f);
	e.vec[11] = 7;
	v = vlm_emb_take_vec(&e);
	assert_null(e.vec);
	vlm_emb_release(&e);
	assert_true(v[11] == 7);
	free(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemm_device),
		cmocka_unit_test(test_metrics_backend),
		cmocka_unit_test(test_emb_init_take),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
