/*
 * pil-ref.h - run tests/pil-ref.py (PIL's decoding and preprocessing as
 * references) and read what it writes; shared by test-image.c and
 * test-preprocess.c. Include after testutil.h.
 */
#ifndef VLM_PIL_REF_H
#define VLM_PIL_REF_H

#include <sys/stat.h>

/* Whether Debian's python3 with numpy and PIL is there. */
static int
have_pil(void)
{
	return system("/usr/bin/python3 -c 'import numpy, PIL' "
	    ">/dev/null 2>&1") == 0;
}

/*
 * Run pil-ref.py over dir unless it already has (dir/refs.txt); skip the
 * calling test when PIL is missing.
 */
#define NEED_PIL_REFS(dir) do { \
	char cmd_[8400]; \
	if (!have_pil()) { \
		print_message("skipping: /usr/bin/python3 lacks PIL/numpy\n"); \
		skip(); \
	} \
	snprintf(cmd_, sizeof(cmd_), "test -f '%s/refs.txt' || " \
	    "/usr/bin/python3 tests/pil-ref.py '%s'", (dir), (dir)); \
	assert_int_equal(system(cmd_), 0); \
} while (0)

/* The whole of dir/name, malloc'ed; *n its size. NULL if unreadable. */
static uint8_t *
slurp_file(const char *dir, const char *name, size_t *n)
{
	char path[4400];
	struct stat st;
	uint8_t *buf;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "rb")) || fstat(fileno(f), &st) < 0) {
		if (f)
			fclose(f);
		return NULL;
	}
	buf = malloc(st.st_size + 1);
	if (buf && fread(buf, 1, st.st_size, f) != (size_t)st.st_size) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*n = st.st_size;
	return buf;
}

/* dir/name must hold exactly n bytes; returns them malloc'ed. */
static uint8_t *
read_ref(const char *dir, const char *name, size_t n)
{
	size_t got = 0;
	uint8_t *buf = slurp_file(dir, name, &got);

	if (!buf || got != n) {
		print_error("reference '%s' missing or %zu bytes, want %zu\n",
		    name, got, n);
		fail();
	}
	return buf;
}

/* Number of bytes differing by more than tol; *maxd the largest diff. */
static size_t
count_diff(const uint8_t *a, const uint8_t *b, size_t n, int tol, int *maxd)
{
	size_t bad = 0;

	*maxd = 0;
	for (size_t i = 0; i < n; i++) {
		int d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
		if (d > *maxd)
			*maxd = d;
		bad += d > tol;
	}
	return bad;
}

#endif
