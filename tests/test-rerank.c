/*
 * test-rerank.c - retrieval recall from score matrices and ITM
 * re-ranking of the top K (libcore/eval/metrics.c) on hand-worked cases,
 * and the score-matrix recall against the embedding one.
 */
#include <math.h>

#include "testutil.h"
#include "eval/eval.h"

/* Top K with ties broken by the lower index. */
static void
test_topk(void **state)
{
	const float s[8] = { 1, 3, 3, 2,  0, -1, 5, 5 };
	int32_t idx[6];

	(void)state;
	vlm_topk_rows(idx, s, 2, 4, 3);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 2);
	assert_int_equal(idx[2], 3);
	assert_int_equal(idx[3], 2);
	assert_int_equal(idx[4], 3);
	assert_int_equal(idx[5], 0);
}

/*
 * Three texts, three images, text t of image t. Contrastive: text 0
 * ranks its image first, texts 1 and 2 second: image R@1 = 1/3. ITM on
 * the top 2: text 1's image 1 scores 0.9 over image 0's 0.2 (now first);
 * text 2's image 2 scores 0.4 under image 1's 0.6 (still second): 2/3.
 */
static void
test_rerank_hand(void **state)
{
	float ti[9] = { 0.9f, 0.5f, 0.1f,  0.8f, 0.7f, 0.2f,
		0.3f, 0.6f, 0.5f };
	float it[9];
	const int t2i[3] = { 0, 1, 2 };
	/* ITM scores of each text's top 2, in their contrastive order */
	const float itm[6] = { 0.7f, 0.1f,  0.2f, 0.9f,  0.6f, 0.4f };
	int32_t idx[6];
	double ir[VLM_RECALL_NK], tr[VLM_RECALL_NK];

	(void)state;
	for (int i = 0; i < 3; i++)
		for (int t = 0; t < 3; t++)
			it[i * 3 + t] = ti[t * 3 + i];
	assert_int_equal(vlm_metrics_retrieval_scores(ir, tr, ti, it, 3, 3,
	    t2i), 0);
	assert_true(fabs(ir[0] - 1.0 / 3) < 1e-12 && ir[1] == 1);
	assert_true(tr[0] == 1); /* each image's own text is its best */
	vlm_topk_rows(idx, ti, 3, 3, 2);
	assert_int_equal(idx[2], 0); /* text 1: images 0, 1 */
	assert_int_equal(idx[3], 1);
	assert_int_equal(idx[4], 1); /* text 2: images 1, 2 */
	assert_int_equal(idx[5], 2);
	vlm_rerank_apply(ti, 3, 3, idx, itm, 2);
	assert_int_equal(vlm_metrics_retrieval_scores(ir, tr, ti, it, 3, 3,
	    t2i), 0);
	assert_true(fabs(ir[0] - 2.0 / 3) < 1e-12);
	assert_true(ti[1 * 3 + 2] == 0.2f); /* outside the top 2: kept */
}

/* On cosines the score-matrix recall is the embedding recall. */
static void
test_scores_match_embeddings(void **state)
{
	enum { NI = 7, NT = 11, D = 5 };
	float img[NI * D], txt[NT * D], ti[NT * NI], it[NI * NT];
	int t2i[NT];
	double a[2][VLM_RECALL_NK], b[2][VLM_RECALL_NK];
	struct vlm_rng r;

	(void)state;
	vlm_rng_seed(&r, 4);
	for (int i = 0; i < NI * D; i++)
		img[i] = (float)vlm_rng_normal(&r);
	for (int t = 0; t < NT; t++) {
		t2i[t] = t % NI;
		double n = 0;
		for (int k = 0; k < D; k++) {
			txt[t * D + k] = img[t2i[t] * D + k] +
			    (float)vlm_rng_normal(&r);
			n += txt[t * D + k] * txt[t * D + k];
		}
		for (int k = 0; k < D; k++)
			txt[t * D + k] /= (float)sqrt(n);
	}
	for (int i = 0; i < NI; i++) {
		double n = 0;
		for (int k = 0; k < D; k++)
			n += img[i * D + k] * img[i * D + k];
		for (int k = 0; k < D; k++)
			img[i * D + k] /= (float)sqrt(n);
	}
	for (int t = 0; t < NT; t++)
		for (int i = 0; i < NI; i++) {
			float d = 0;
			for (int k = 0; k < D; k++)
				d += txt[t * D + k] * img[i * D + k];
			ti[t * NI + i] = it[i * NT + t] = d;
		}
	assert_int_equal(vlm_metrics_retrieval(a[0], a[1], img, NI, txt, NT,
	    t2i, D), 0);
	assert_int_equal(vlm_metrics_retrieval_scores(b[0], b[1], ti, it, NI,
	    NT, t2i), 0);
	for (int j = 0; j < VLM_RECALL_NK; j++) {
		assert_true(a[0][j] == b[0][j]);
		assert_true(a[1][j] == b[1][j]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topk),
		cmocka_unit_test(test_rerank_hand),
		cmocka_unit_test(test_scores_match_embeddings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
