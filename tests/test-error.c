/* test-error.c - error messages: recorded per call, and a message may
 * quote the previous one (vlm_error("'%s': %s", path, vlm_errmsg())). */
#include "testutil.h"

static void
test_wrap_previous(void **state)
{
	(void)state;
	assert_int_equal(vlm_error("bad tensor '%s'", "w"), -1);
	assert_int_equal(vlm_error("'%s': %s", "m.safetensors", vlm_errmsg()),
	    -1);
	assert_string_equal(vlm_errmsg(), "'m.safetensors': bad tensor 'w'");
}

static void
test_truncated_not_overflowing(void **state)
{
	char big[3000];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	vlm_error("%s", big);
	assert_true(strlen(vlm_errmsg()) < sizeof(big) - 1);
	assert_true(strlen(vlm_errmsg()) > 500);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrap_previous),
		cmocka_unit_test(test_truncated_not_overflowing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
