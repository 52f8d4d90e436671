/*
 * test-npys-packer.c - libcore/formats/npys-packer.c: a stream written into the
 * packer becomes the packed form, the same files vlm_npys_pack() makes
 * from the stream on disk; a producer that closes early, or an output
 * that cannot be made, leaves nothing.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "testutil.h"

#define DIM 3

/* path under a fresh subdirectory of the temporary directory */
static const char *
sub(const char *dir, const char *name)
{
	static char buf[2][8500];
	static int i;
	char d[4200];

	snprintf(d, sizeof(d), "%s/%s", test_tmpdir(), dir);
	mkdir(d, 0777);
	i ^= 1;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", d, name);
	return buf[i];
}

/* entries in a directory, "." and ".." aside */
static int
entries(const char *dir)
{
	char d[4200];
	DIR *p;
	struct dirent *e;
	int n = 0;

	snprintf(d, sizeof(d), "%s/%s", test_tmpdir(), dir);
	assert_non_null(p = opendir(d));
	while ((e = readdir(p)) != NULL)
		n += e->d_name[0] != '.';
	closedir(p);
	return n;
}

/* A stream of 5 rows in batches of 2 and 3 into f; end record if end. */
static void
write_stream(FILE *f, int end)
{
	static const char *ids[] = { "a.png", "caf\xc3\xa9.jpg", "c", "d",
		"e" };
	struct vlm_npys_writer w;
	float v[5 * DIM];

	for (int i = 0; i < 5 * DIM; i++)
		v[i] = 0.5f * i - 2;
	assert_int_equal(vlm_npys_writer_init(&w, f, "t",
	    "{\"model\":\"m\",\"dim\":3,\"space\":\"image\"}"), 0);
	assert_int_equal(vlm_npys_writer_batch(&w, ids, v, 2), 0);
	assert_int_equal(vlm_npys_writer_batch(&w, ids + 2, v + 2 * DIM, 3),
	    0);
	if (end)
		assert_int_equal(vlm_npys_writer_finish(&w,
		    "{\"failed\":[\"x\"]}"), 0);
}

/* The whole of a file into a malloc'ed buffer. */
static char *
slurp(const char *path, long *n)
{
	FILE *f = fopen(path, "rb");
	char *b;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*n = ftell(f);
	rewind(f);
	assert_non_null(b = malloc(*n + 1));
	assert_int_equal(fread(b, 1, *n, f), (size_t)*n);
	fclose(f);
	return b;
}

static void
same_file(const char *a, const char *b)
{
	long na, nb;
	char *x = slurp(a, &na), *y = slurp(b, &nb);

	assert_int_equal(na, nb);
	assert_memory_equal(x, y, na);
	free(x);
	free(y);
}

/* Through the packer: the same three files as packing the file. */
static void
test_packs_like_pack(void **state)
{
	struct vlm_npys_packer p;
	struct vlm_npys_reader r;
	const char *suffix[] = { ".npy", ".ids.npy", ".json" };
	char a[4200], b[4200];
	FILE *f;

	(void)state;
	assert_int_equal(vlm_npys_packer_open(&p, sub("live", "e.npy")), 0);
	write_stream(p.f, 1);
	assert_int_equal(vlm_npys_packer_close(&p), 0);
	assert_int_equal(entries("live"), 3);

	assert_non_null(f = fopen(sub("disk", "s.npys"), "w+b"));
	write_stream(f, 1);
	rewind(f);
	assert_int_equal(vlm_npys_reader_init(&r, f, "s.npys"), 0);
	assert_int_equal(vlm_npys_pack(&r, sub("disk", "e.npy")), 0);
	vlm_npys_reader_release(&r);
	fclose(f);
	for (int i = 0; i < 3; i++) {
		snprintf(a, sizeof(a), "%s/live/e%s", test_tmpdir(), suffix[i]);
		snprintf(b, sizeof(b), "%s/disk/e%s", test_tmpdir(), suffix[i]);
		same_file(a, b);
	}
}

/* Closing before the end record: an error and no file at all. */
static void
test_early_close_leaves_nothing(void **state)
{
	struct vlm_npys_packer p;

	(void)state;
	assert_int_equal(vlm_npys_packer_open(&p, sub("early", "e.npy")), 0);
	write_stream(p.f, 0);
	assert_int_equal(vlm_npys_packer_close(&p), -1);
	assert_non_null(strstr(vlm_errmsg(), "truncated"));
	assert_int_equal(entries("early"), 0);
	/* nothing written at all */
	assert_int_equal(vlm_npys_packer_open(&p, sub("early", "f.npy")), 0);
	assert_int_equal(vlm_npys_packer_close(&p), -1);
	assert_int_equal(entries("early"), 0);
}

/* An output that cannot be created fails at open, naming it. */
static void
test_bad_output(void **state)
{
	struct vlm_npys_packer p;
	char path[4200];

	(void)state;
	snprintf(path, sizeof(path), "%s/no/such/dir/e.npy", test_tmpdir());
	assert_int_equal(vlm_npys_packer_open(&p, path), -1);
	assert_non_null(strstr(vlm_errmsg(), "no/such/dir/e.npy"));
	assert_null(p.f);
	assert_int_equal(vlm_npys_packer_open(&p, "-"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packs_like_pack),
		cmocka_unit_test(test_early_close_leaves_nothing),
		cmocka_unit_test(test_bad_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
