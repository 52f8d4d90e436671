/*
 * test-caption-metrics.c - libcore/eval/caption-metrics.c on cases
 * worked by hand from the formulas of pycocoevalcap's bleu_scorer.py and
 * cider_scorer.py: BLEU's clipping, its "closest" reference length (ties
 * to the shorter), its 1e-15/1e-9 smoothing; CIDEr-D's idf (zero with
 * one image), clipping, per-order cosines and the length penalty on
 * bigram counts; the tokenisation; empty and missing candidates.
 */
#include <math.h>

#include "testutil.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static void
score(struct vlm_caption_scores *s, double *cider, char *const *hyp, int N,
    char *const *refs, const int *img, int R)
{
	assert_int_equal(vlm_caption_metrics(s, cider, hyp, N, refs, img, R),
	    0);
}

static void
test_tokenize(void **state)
{
	char *t = vlm_caption_tokenize("  A Dog's (big) ball... Red-ish!  ");

	(void)state;
	assert_string_equal(t, "a dog s big ball red ish");
	free(t);
	t = vlm_caption_tokenize(" .,; ");
	assert_string_equal(t, "");
	free(t);
}

static void
test_bleu_by_hand(void **state)
{
	struct vlm_caption_scores s;
	char *hyp[] = { "the the the the" };
	char *refs[] = { "The cat." };
	char *hyp2[] = { "a b" }, *refs2[] = { "a b c", "a b c d e f" };
	char *hyp3[] = { "a b c d" }, *refs3[] = { "a b c", "a b c d e" };
	int img[] = { 0, 0 };

	(void)state;
	/* clipped: 1 of 4 unigrams; testlen 4 > reflen 2: no penalty */
	score(&s, NULL, hyp, 1, refs, img, 1);
	NEAR(s.bleu[0], 0.25);
	/* closest reference 3 words: BP exp(1 - 3/2), precisions 1 */
	score(&s, NULL, hyp2, 1, refs2, img, 2);
	NEAR(s.bleu[0], exp(-0.5));
	NEAR(s.bleu[1], exp(-0.5));
	/* 3 and 5 equally close to 4: the shorter, so no penalty */
	score(&s, NULL, hyp3, 1, refs3, img, 2);
	NEAR(s.bleu[0], 1);
	NEAR(s.bleu[3], 1);
	/* identical, 3 words: 4-gram precision (0+1e-15)/(0+1e-9) */
	char *hyp4[] = { "a b c" }, *refs4[] = { "a b c" };
	score(&s, NULL, hyp4, 1, refs4, img, 1);
	NEAR(s.bleu[2], 1);
	NEAR(s.bleu[3], pow(1e-6, 0.25));
}

static void
test_cider_by_hand(void **state)
{
	struct vlm_caption_scores s;
	double c[2];
	char *hyp[] = { "x y", "p q" }, *refs[] = { "x y z", "p q" };
	char *hyp2[] = { "x x", "p" }, *refs2[] = { "x y", "p" };
	char *one[] = { "a b c d e" };
	int img[] = { 0, 1 };

	(void)state;
	/* one image: idf log(1) - log(1) = 0, every weight 0 */
	score(&s, c, one, 1, one, img, 1);
	assert_true(s.cider == 0 && c[0] == 0 && s.n == 1);
	NEAR(s.bleu[3], 1);
	/* image 0: unigram cosine 2/sqrt(6), bigram 1/sqrt(2), bigram
	 * counts 1 and 2 (penalty exp(-1/72)); image 1: cosines 1, 1 */
	score(&s, c, hyp, 2, refs, img, 2);
	NEAR(c[0], (2 / sqrt(6) + 1 / sqrt(2)) / 4 * 10 * exp(-1.0 / 72));
	NEAR(c[1], 5);
	NEAR(s.cider, (c[0] + c[1]) / 2);
	/* clipping: "x" weighs 2 idf in the candidate, 1 in the reference:
	 * min(2, 1) * 1 / (2 * sqrt(2)) */
	score(&s, c, hyp2, 2, refs2, img, 2);
	NEAR(c[0], 1 / (2 * sqrt(2)) / 4 * 10);
	NEAR(c[1], 2.5);
}

static void
test_edges(void **state)
{
	struct vlm_caption_scores s;
	double c[3];
	char *hyp[] = { "", NULL, "p q" };
	char *refs[] = { "a b", "c d", "p q", "p r" };
	char *none[] = { NULL, NULL, NULL };
	int img[] = { 0, 1, 2, 2 }, bad[] = { 0, 3 };

	(void)state;
	/* empty candidate scores 0; a missing one is left out (NaN),
	 * and its references count in no document frequency */
	score(&s, c, hyp, 3, refs, img, 4);
	assert_int_equal(s.n, 2);
	assert_true(c[0] == 0 && isnan(c[1]));
	NEAR(s.cider, c[2] / 2);
	/* "p q" vs "p q" (cosines 1, 1) and "p r" (unigram 1/2, lengths
	 * equal), halved over 2 references */
	NEAR(c[2], (2 + 0.5) / 4 * 10 / 2);
	assert_int_equal(vlm_caption_metrics(&s, c, none, 3, refs, img, 4),
	    -1);
	assert_int_equal(vlm_caption_metrics(&s, c, hyp, 3, refs, bad, 2),
	    -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokenize),
		cmocka_unit_test(test_bleu_by_hand),
		cmocka_unit_test(test_cider_by_hand),
		cmocka_unit_test(test_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
