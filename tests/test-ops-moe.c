/*
 * test-ops-moe.c - the sparse MoE ops (tests/ops-moe.c) on every backend
 * against "ref": cpu and ref themselves, then cuda, a skipped test where
 * the cuda backend does not load.
 */
#include "ops-common.h"

int
main(void)
{
	return ops_main(&ops_moe);
}
