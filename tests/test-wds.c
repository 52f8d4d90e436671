/*
 * test-wds.c - shard names: brace expansion as braceexpand (OpenCLIP's
 * --train-data) expands it, and what names shards.
 */
#include "testutil.h"

#include "data/data.h"

/* pattern expands to the names in want, joined by spaces */
static void
expect(const char *pattern, const char *want)
{
	char **v, buf[4096] = "";
	int n;

	if (vlm_brace_expand(pattern, &v, &n) < 0)
		fail_msg("%s: %s", pattern, vlm_errmsg());
	for (int i = 0; i < n; i++) {
		strcat(buf, i ? " " : "");
		strcat(buf, v[i]);
	}
	vlm_strs_free(v, n);
	if (strcmp(buf, want) != 0)
		fail_msg("%s: got '%s', want '%s'", pattern, buf, want);
}

static void
test_padding(void **state)
{
	char **v;
	int n;

	(void)state;
	/* a leading zero on either bound pads to the wider bound */
	assert_int_equal(vlm_brace_expand("{08..100}", &v, &n), 0);
	assert_int_equal(n, 93);
	assert_string_equal(v[0], "008");
	assert_string_equal(v[92], "100");
	vlm_strs_free(v, n);
	assert_int_equal(vlm_brace_expand("{0..10}", &v, &n), 0);
	assert_string_equal(v[0], "0");
	assert_string_equal(v[10], "10");
	vlm_strs_free(v, n);
}

static void
test_lists(void **state)
{
	(void)state;
	expect("a.tar", "a.tar");
	expect("s/{00000..00003}.tar",
	    "s/00000.tar s/00001.tar s/00002.tar s/00003.tar");
	expect("{8..11}.tar", "8.tar 9.tar 10.tar 11.tar");
	expect("{a,b}/{0..1}.tar", "a/0.tar a/1.tar b/0.tar b/1.tar");
	expect("x/{0..0}.tar::y/{7,9}.tar", "x/0.tar y/7.tar y/9.tar");
	expect("{0..0}.tar::", "0.tar");
	assert_true(vlm_wds_is_shards("s/{0..9}.tar"));
	assert_false(vlm_wds_is_shards("pairs.tsv"));
	assert_false(vlm_wds_is_shards("tar"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_padding),
		cmocka_unit_test(test_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
