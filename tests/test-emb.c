/*
 * test-emb.c - whole embedding files (libcore/eval/embeddings-load.c):
 * a .npys stream and its packed form load to the same rows, ids and
 * metadata; packed vectors without ids load without them; non-finite
 * values, truncated streams, other arrays and empty files are refused
 * with the file named.
 */
#include <math.h>

#include "testutil.h"

static const float vec[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
static const char *const ids[] = { "a.png", "b/c.png", "d.png" };

/* A stream of 3 rows (dim 3) in two batches; end record unless cut. */
static void
write_stream(const char *path, int cut)
{
	struct vlm_npys_writer w;
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(vlm_npys_writer_init(&w, f, path,
	    "{\"dim\":3,\"model\":\"m.safetensors\"}"), 0);
	assert_int_equal(vlm_npys_writer_batch(&w, ids, vec, 2), 0);
	assert_int_equal(vlm_npys_writer_batch(&w, ids + 2, vec + 6, 1), 0);
	if (!cut)
		assert_int_equal(vlm_npys_writer_finish(&w, NULL), 0);
	fclose(f);
}

static void
check_rows(const struct vlm_emb *e)
{
	assert_int_equal(e->n, 3);
	assert_int_equal(e->dim, 3);
	assert_memory_equal(e->vec, vec, sizeof(vec));
	assert_non_null(e->ids);
	for (int i = 0; i < 3; i++)
		assert_string_equal(e->ids[i], ids[i]);
	assert_non_null(e->meta);
	assert_non_null(strstr(e->meta, "m.safetensors"));
}

static void
test_stream_and_packed(void **state)
{
	char s[4200], p[4200];
	struct vlm_npys_reader r;
	struct vlm_emb e;
	FILE *f;

	(void)state;
	snprintf(s, sizeof(s), "%s/e.npys", test_tmpdir());
	snprintf(p, sizeof(p), "%s/e.npy", test_tmpdir());
	write_stream(s, 0);
	assert_int_equal(vlm_emb_load(&e, s), 0);
	check_rows(&e);
	vlm_emb_release(&e);

	assert_non_null(f = fopen(s, "rb"));
	assert_int_equal(vlm_npys_reader_init(&r, f, s), 0);
	assert_int_equal(vlm_npys_pack(&r, p), 0);
	vlm_npys_reader_release(&r);
	fclose(f);
	assert_int_equal(vlm_emb_load(&e, p), 0);
	check_rows(&e);
	vlm_emb_release(&e);
}

static void
test_packed_without_ids(void **state)
{
	float v[] = { 1, 0, 0, 1 };
	struct vlm_tensor t = { VLM_DTYPE_F32, 2, { 2, 2 }, v };
	char p[4200];
	struct vlm_emb e;

	(void)state;
	snprintf(p, sizeof(p), "%s/bare.npy", test_tmpdir());
	assert_int_equal(vlm_npy_save(p, &t), 0);
	assert_int_equal(vlm_emb_load(&e, p), 0);
	assert_true(e.n == 2 && e.dim == 2 && !e.ids && !e.meta);
	vlm_emb_release(&e);
	v[3] = NAN;
	assert_int_equal(vlm_npy_save(p, &t), 0);
	assert_int_equal(vlm_emb_load(&e, p), -1);
	assert_non_null(strstr(vlm_errmsg(), "bare.npy"));
	assert_non_null(strstr(vlm_errmsg(), "row 1 holds a non-finite"));
}

static void
test_refused(void **state)
{
	int32_t iv[] = { 1, 2 };
	struct vlm_tensor t = { VLM_DTYPE_I32, 2, { 1, 2 }, iv };
	char p[4200];
	struct vlm_emb e;
	FILE *f;

	(void)state;
	snprintf(p, sizeof(p), "%s/cut.npys", test_tmpdir());
	write_stream(p, 1);
	assert_int_equal(vlm_emb_load(&e, p), -1);
	assert_non_null(strstr(vlm_errmsg(), "truncated"));
	assert_non_null(strstr(vlm_errmsg(), "cut.npys"));

	snprintf(p, sizeof(p), "%s/int.npy", test_tmpdir());
	assert_int_equal(vlm_npy_save(p, &t), 0);
	assert_int_equal(vlm_emb_load(&e, p), -1);
	assert_non_null(strstr(vlm_errmsg(), "not embeddings"));

	snprintf(p, sizeof(p), "%s/empty.npy", test_tmpdir());
	assert_non_null(f = fopen(p, "wb"));
	fclose(f);
	assert_int_equal(vlm_emb_load(&e, p), -1);
	assert_non_null(strstr(vlm_errmsg(), "empty"));

	snprintf(p, sizeof(p), "%s/none.npy", test_tmpdir());
	assert_int_equal(vlm_emb_load(&e, p), -1);
	assert_non_null(strstr(vlm_errmsg(), "none.npy"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_and_packed),
		cmocka_unit_test(test_packed_without_ids),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
