/*
 * test-ops-dense.c - the dense transformer and rows-and-sums ops (tests/ops-dense.c) on every backend
 * against "ref": cpu and ref themselves, then cuda, a skipped test where
 * the cuda backend does not load.
 */
#include "ops-common.h"

int
main(void)
{
	return ops_main(&ops_dense);
}
