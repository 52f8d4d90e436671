/* test-clock.c - base/clock.c: vlm_now measures a sleep on the wall
 * clock; vlm_clock(CLOCK_THREAD_CPUTIME_ID) counts busy CPU time and
 * not time asleep (the thread's clock: under ASan the process has other
 * threads, and its clock read 50 ms of CPU in a 50 ms sleep). */
#include <time.h>

#include "testutil.h"

static void
test_sleep(void **state)
{
	struct timespec nap = { 0, 50 * 1000 * 1000 };
	double t0 = vlm_now(), c0 = vlm_clock(CLOCK_THREAD_CPUTIME_ID), t, c;

	(void)state;
	assert_true(t0 > 0);
	nanosleep(&nap, NULL);
	t = vlm_now() - t0, c = vlm_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
	print_message("50 ms asleep: %.4f s wall, %.4f s cpu\n", t, c);
	assert_true(t >= 0.05 && t < 5);
	assert_true(c >= 0 && c < 0.04);
}

static void
test_busy(void **state)
{
	double t0 = vlm_now(), c0 = vlm_clock(CLOCK_THREAD_CPUTIME_ID), c;
	volatile double x = 0;

	(void)state;
	do /* until 20 ms of CPU time, or 10 s of wall time */
		for (int i = 0; i < 100000; i++)
			x += i;
	while ((c = vlm_clock(CLOCK_THREAD_CPUTIME_ID) - c0) < 0.02 &&
	    vlm_now() - t0 < 10);
	print_message("busy: %.4f s cpu in %.4f s wall\n", c, vlm_now() - t0);
	assert_true(c >= 0.02 && c < 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sleep),
		cmocka_unit_test(test_busy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
