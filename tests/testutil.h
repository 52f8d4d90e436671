/* testutil.h - helpers for the cmocka unit tests. */
#ifndef VLM_TESTUTIL_H
#define VLM_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vlm.h"

/* Path of a file under ../shared/fixtures (or $SHARED/fixtures). */
static inline const char *
fixture(const char *rel)
{
	static char buf[4096];
	const char *shared = getenv("SHARED");

	snprintf(buf, sizeof(buf), "%s/fixtures/%s", shared ? shared :
	    "../shared", rel);
	return buf;
}

/* The small shape of the whole-model gradient tests: tiny-moe with
 * 16 px images of 4 patches, 7 tokens of 40 ids, width 16, 2 blocks of
 * 2 heads, embeddings of 8 (each test sets its MoE and family). */
static inline void
tiny_grad_config(struct vlm_config *c)
{
	vlm_config_preset(c, "tiny-moe");
	c->embed_dim = 8, c->image_size = 16, c->patch_size = 8;
	c->vocab = 40, c->context = 7;
	c->vision.width = c->text.width = 16;
	c->vision.layers = c->text.layers = 2;
	c->vision.heads = c->text.heads = 2;
}

/* Skip the calling test (not fail) when a fixture file is missing. */
#define NEED_FIXTURE(path) do { \
	if (access((path), R_OK) != 0) { \
		print_message("skipping: fixture '%s' not found\n", (path)); \
		skip(); \
	} \
} while (0)

/* The float32 fixture rel loaded into t (the test fails otherwise):
 * t->data, the caller's to free. */
static inline float *
fixture_f32(const char *rel, struct vlm_tensor *t)
{
	if (vlm_npy_load(fixture(rel), t) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(t->dtype, VLM_DTYPE_F32);
	return t->data;
}

/* The int64 fixture rel as int32 values (malloc'ed): their count in *n,
 * the length of the last dimension in *cols (NULL: not wanted). */
static inline int32_t *
fixture_ids(const char *rel, int64_t *n, int64_t *cols)
{
	struct vlm_tensor t;
	int32_t *ids;

	if (vlm_npy_load(fixture(rel), &t) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(t.dtype, VLM_DTYPE_I64);
	*n = vlm_tensor_numel(&t);
	if (cols)
		*cols = t.shape[t.ndim - 1];
	ids = malloc(*n * sizeof(*ids));
	assert_non_null(ids);
	for (int64_t i = 0; i < *n; i++)
		ids[i] = (int32_t)((int64_t *)t.data)[i];
	free(t.data);
	return ids;
}

/* A fresh temporary directory for this process, removed at exit. */
static const char *test_tmpdir(void);

static inline void
rm_tmpdir(void)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_tmpdir());
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", test_tmpdir());
}

static const char *
test_tmpdir(void)
{
	static char dir[4096];

	if (!dir[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/vlm-unit.XXXXXX", t ? t : "/tmp");
		if (!mkdtemp(dir))
			abort();
		atexit(rm_tmpdir);
	}
	return dir;
}

/* x (n) := standard normal draws of the generator seeded with seed. */
static inline void
randn_fill(float *x, size_t n, uint64_t seed)
{
	struct vlm_rng r;

	vlm_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)vlm_rng_normal(&r);
}

/* max |a - b| / max |b|, the parity measure the project uses. */
static inline double
rel_err(const float *a, const float *b, size_t n)
{
	double md = 0, mb = 0;

	for (size_t i = 0; i < n; i++) {
		double d = a[i] - (double)b[i];
		if (d < 0) d = -d;
		if (d > md) md = d;
		double v = b[i] < 0 ? -(double)b[i] : b[i];
		if (v > mb) mb = v;
	}
	return mb > 0 ? md / mb : md;
}

#endif
