/*
 * test-select.c - libcore/eval/select.c on examples worked by hand:
 * SugarCrepe's accuracy (strict: a negative tying the caption is a
 * miss) and Winoground's text, image and group scores as the paper
 * defines them, each case chosen so that one score passes where another
 * fails.
 */
#include "testutil.h"

static void
test_acc_by_hand(void **state)
{
	/* 4 items, a caption and 2 negatives each:
	 * 1: caption best                      -> hit
	 * 2: second negative above the caption -> miss
	 * 3: first negative ties the caption   -> miss
	 * 4: caption best by a hair            -> hit */
	const float s[4 * 3] = {
		0.9f, 0.1f, 0.2f,
		0.5f, 0.4f, 0.6f,
		0.3f, 0.3f, 0.1f,
		0.21f, 0.2f, -1.0f,
	};
	double acc = -1;

	(void)state;
	assert_int_equal(vlm_select_acc(&acc, s, 4, 3), 0);
	assert_true(acc == 0.5);
	assert_int_equal(vlm_select_acc(&acc, s, 1, 3), 0);
	assert_true(acc == 1.0);
	assert_int_equal(vlm_select_acc(&acc, s + 3, 1, 3), 0);
	assert_true(acc == 0.0);
	assert_int_equal(vlm_select_acc(&acc, s, 0, 3), -1);
	assert_int_equal(vlm_select_acc(&acc, s, 4, 1), -1);
}

static void
test_winoground_by_hand(void **state)
{
	/* [img][cap]: { c0·i0, c1·i0, c0·i1, c1·i1 } */
	const float s[5 * 4] = {
		/* each image prefers its caption, each caption its image:
		 * text, image, group */
		0.9f, 0.1f, 0.2f, 0.8f,
		/* both images prefer caption 0 (text fails), but each
		 * caption still scores its own image higher: image only */
		0.9f, 0.5f, 0.6f, 0.55f,
		/* each image prefers its caption (0.5 > 0.4, 0.3 > 0.2),
		 * but caption 1 scores image 0 higher (0.4 > 0.3): text only */
		0.5f, 0.4f, 0.2f, 0.3f,
		/* all equal: ties are misses */
		0.5f, 0.5f, 0.5f, 0.5f,
		/* swapped: nothing */
		0.1f, 0.9f, 0.8f, 0.2f,
	};
	struct vlm_wino_scores w;

	(void)state;
	assert_int_equal(vlm_winoground(&w, s + 8, 1), 0);
	assert_true(w.text == 1 && w.image == 0 && w.group == 0);
	assert_int_equal(vlm_winoground(&w, s + 4, 1), 0);
	assert_true(w.text == 0 && w.image == 1 && w.group == 0);
	assert_int_equal(vlm_winoground(&w, s, 5), 0);
	assert_true(w.text == 2.0 / 5 && w.image == 2.0 / 5 &&
	    w.group == 1.0 / 5);
	assert_int_equal(vlm_winoground(&w, s, 0), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acc_by_hand),
		cmocka_unit_test(test_winoground_by_hand),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
