/*
 * test-npy.c - .npy records, .npys streams and the packed form
 * (libcore/formats/npy.c, npys.c): C round trips, hand-made good and
 * bad headers, every truncation of a stream, and round trips through
 * NumPy (/usr/bin/python3; skipped when it lacks numpy).
 */
#include <dirent.h>
#include <sys/stat.h>

#include <jansson.h>

#include "testutil.h"

static const struct dt {
	enum vlm_dtype dtype;
	const char *descr;
	size_t size;
} dts[] = {
	{ VLM_DTYPE_F32, "<f4", 4 }, { VLM_DTYPE_F16, "<f2", 2 },
	{ VLM_DTYPE_I32, "<i4", 4 }, { VLM_DTYPE_I64, "<i8", 8 },
	{ VLM_DTYPE_U8, "|u1", 1 },
};
#define NDT (sizeof(dts) / sizeof(*dts))

/* "wide": numpy's header padding for growth makes it 192 bytes */
static const struct shp {
	const char *name;
	int ndim;
	int64_t shape[6];
} shps[] = {
	{ "0d", 0, { 0 } }, { "1d", 1, { 5 } }, { "3d", 3, { 2, 3, 4 } },
	{ "empty", 2, { 0, 3 } },
	{ "wide", 6, { 0, 1000000, 1000000, 1000000, 1000000, 1000000 } },
};
#define NSHP (sizeof(shps) / sizeof(*shps))

/* ids with 1- to 4-byte UTF-8, and an empty one */
static const char *const ids_all[] = { "img-0.png", "\xc3\xa9.png",
	"\xe6\x97\xa5\xe6\x9c\xac.jpg", "\xf0\x9f\x98\x80", "", "line 6",
	"x" };
#define NIDS 7
#define DIM 4

static float
vec_at(int64_t row, int64_t col)
{
	return (float)(row * 10 + col) * 0.5f - 7.0f;
}

static const char *
tpath(const char *name)
{
	static char buf[32][4200];
	static int i;

	i = (i + 1) % 32;
	if (snprintf(buf[i], sizeof(buf[i]), "%s/%s", test_tmpdir(), name) >=
	    (int)sizeof(buf[i]))
		abort();
	return buf[i];
}

static size_t
numel_of(const struct shp *s)
{
	size_t n = 1;

	for (int i = 0; i < s->ndim; i++)
		n *= (size_t)s->shape[i];
	return n;
}

static void
fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 37 + seed * 11 + 5) & 0xff);
}

static void
write_file(const char *path, const void *buf, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* magic, version major.0, header length, the header text, then data */
static void
write_raw(const char *path, int major, const char *hdr, size_t ndata)
{
	size_t hl = strlen(hdr), pre = major == 1 ? 10 : 12;
	unsigned char *b = calloc(1, pre + hl + ndata + 1);

	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)major;
	b[8] = hl & 0xff;
	b[9] = (hl >> 8) & 0xff;
	memcpy(b + pre, hdr, hl);
	fill(b + pre + hl, ndata, 1);
	write_file(path, b, pre + hl + ndata);
	free(b);
}

static void
test_roundtrip(void **state)
{
	(void)state;
	for (size_t d = 0; d < NDT; d++) {
		for (size_t s = 0; s < NSHP; s++) {
			struct vlm_tensor t = { .dtype = dts[d].dtype,
			    .ndim = shps[s].ndim }, u;
			size_t nb = numel_of(&shps[s]) * dts[d].size;
			unsigned char hdr[12];
			const char *p = tpath("rt.npy");
			FILE *f;

			memcpy(t.shape, shps[s].shape, sizeof(shps[s].shape));
			t.data = malloc(nb + 1);
			fill(t.data, nb, (unsigned)(d * 7 + s));
			assert_int_equal(vlm_npy_save(p, &t), 0);
			f = fopen(p, "rb");
			assert_int_equal(fread(hdr, 1, 10, f), 10);
			fclose(f);
			assert_int_equal((10 + hdr[8] + hdr[9] * 256) % 64, 0);
			assert_int_equal(vlm_npy_load(p, &u), 0);
			assert_int_equal(u.dtype, t.dtype);
			assert_int_equal(u.ndim, t.ndim);
			for (int i = 0; i < t.ndim; i++)
				assert_int_equal(u.shape[i], t.shape[i]);
			if (nb)
				assert_memory_equal(u.data, t.data, nb);
			free(u.data);
			free(t.data);
		}
	}
}

static void
test_bf16_refused(void **state)
{
	struct vlm_tensor t = { .dtype = VLM_DTYPE_BF16, .ndim = 1,
	    .shape = { 1 } };
	uint16_t x = 0;
	const char *p = tpath("bf16.npy");

	(void)state;
	t.data = &x;
	assert_int_equal(vlm_npy_save(p, &t), -1);
	assert_int_equal(access(p, F_OK), -1);
}

/* Headers numpy may write or a person may type: all read the same. */
static void
test_header_variants(void **state)
{
	static const struct {
		int major;
		const char *hdr;
		int ndim;
		int64_t shape[2];
	} v[] = {
		{ 1, "{'shape': (2, 3), 'fortran_order': False, "
		    "'descr': '<i4'}", 2, { 2, 3 } },
		{ 1, "{ \"descr\" : \"<i4\" , \"fortran_order\":False,"
		    "'shape':(2,3,) , }   \n", 2, { 2, 3 } },
		{ 1, "{'descr':'<i4','fortran_order':False,'shape':(6,)}",
		    1, { 6 } },
		{ 1, "{'descr': '<i4', 'fortran_order': False, "
		    "'shape': ( 6 , ), }\n", 1, { 6 } },
		{ 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }"
		    "                       \n", 0, { 0 } },
		{ 2, "{'descr': '<i4', 'fortran_order': False, "
		    "'shape': (3, 2), }\n", 2, { 3, 2 } },
		{ 3, "{'descr': '<i4', 'fortran_order': False, "
		    "'shape': (1, 6), }\n", 2, { 1, 6 } },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		const char *p = tpath("hv.npy");
		struct vlm_tensor t;
		size_t n = v[i].ndim ? 24 : 4;
		unsigned char want[24];

		write_raw(p, v[i].major, v[i].hdr, n);
		if (vlm_npy_load(p, &t) != 0)
			fail_msg("header %zu: %s", i, vlm_errmsg());
		assert_int_equal(t.dtype, VLM_DTYPE_I32);
		assert_int_equal(t.ndim, v[i].ndim);
		for (int k = 0; k < t.ndim; k++)
			assert_int_equal(t.shape[k], v[i].shape[k]);
		fill(want, n, 1);
		assert_memory_equal(t.data, want, n);
		free(t.data);
	}
}

/* Each bad file: -1, one line naming the file and the problem. */
static void
test_bad_files(void **state)
{
	static const struct {
		int major;
		const char *hdr;
		size_t ndata;
		const char *want;
	} v[] = {
#define H(d, fo, s) "{'descr': '" d "', 'fortran_order': " fo \
	", 'shape': " s ", }\n"
		{ 1, H("|O", "False", "(1,)"), 8, "object arrays" },
		{ 1, H("<f4", "True", "(2, 2)"), 16, "fortran_order" },
		{ 1, H(">f4", "False", "(2,)"), 8, "big-endian" },
		{ 1, H("<c8", "False", "(2,)"), 16, "unsupported dtype" },
		{ 1, H("<f4", "Maybe", "(2,)"), 8, "malformed" },
		{ 1, H("<f4", "False", "(2)"), 8, "malformed" },
		{ 1, H("<f4", "False", "(-2,)"), 8, "malformed" },
		{ 1, H("<f4", "False", "(2.0,)"), 8, "malformed" },
		{ 1, H("<f4", "False", "[2]"), 8, "malformed" },
		{ 1, H("<f4", "False", "(1,1,1,1,1,1,1,1,1)"), 4,
		    "too many dimensions" },
		{ 1, H("<f4", "False", "(99999999999999999999,)"), 4,
		    "too large" },
		{ 1, H("<f4", "False", "(4294967296, 4294967296)"), 4,
		    "overflows" },
		{ 1, H("<f4", "False", "(4,)"), 8, "truncated data" },
		{ 1, H("<f4", "False", "(2,)"), 9, "trailing data" },
		{ 1, H("<U3", "False", "(0,)"), 0, "string array" },
		{ 1, H("<U0", "False", "(50000000,)"), 0, "zero-width" },
		{ 1, H("<U1", "False", "(50000000,)"), 4,
		    "truncated data (the header claims 200000000 bytes, 4 "
		    "remain" },
		{ 1, "{'descr': '<f4', 'shape': (2,), }", 8, "malformed" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,),"
		    " 'extra': 1}", 8, "malformed" },
		{ 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': "
		    "False, 'shape': (2,)}", 8, "malformed" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)"
		    "} x", 8, "malformed" },
		{ 1, "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}",
		    8, "malformed" },
		{ 1, "['<f4', False, (2,)]", 8, "malformed" },
		{ 1, "{'descr': '<f4\\n', 'fortran_order': False, "
		    "'shape': (2,)}", 8, "malformed" },
		{ 4, H("<f4", "False", "(2,)"), 8, "version" },
#undef H
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		const char *p = tpath("bad.npy");
		struct vlm_tensor t;

		write_raw(p, v[i].major, v[i].hdr, v[i].ndata);
		if (vlm_npy_load(p, &t) != -1)
			fail_msg("bad file %zu loaded", i);
		if (!strstr(vlm_errmsg(), p) || !strstr(vlm_errmsg(),
		    v[i].want) || strchr(vlm_errmsg(), '\n'))
			fail_msg("bad file %zu: message '%s' lacks '%s'", i,
			    vlm_errmsg(), v[i].want);
	}
}

/* Files that are not even headers. */
static void
test_bad_prefix(void **state)
{
	static const struct {
		const char *bytes;
		size_t n;
		const char *want;
	} v[] = {
		{ "", 0, "empty file" },
		{ "\x93NUM", 4, "truncated header" },
		{ "\x93NUMPY\x01\x00\x40\x00{'descr'", 17, "truncated header" },
		{ "PK\x03\x04", 4, "bad magic" },
		{ "\x93NUMPY\x01\x01\x10\x00", 10, "version 1.1" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		const char *p = tpath("prefix.npy");
		struct vlm_tensor t;

		write_file(p, v[i].bytes, v[i].n);
		assert_int_equal(vlm_npy_load(p, &t), -1);
		if (!strstr(vlm_errmsg(), v[i].want))
			fail_msg("prefix %zu: '%s'", i, vlm_errmsg());
	}
	assert_int_equal(vlm_npy_load(tpath("nonexistent.npy"), &(struct
	    vlm_tensor){ 0 }), -1);
	assert_non_null(strstr(vlm_errmsg(), "nonexistent.npy"));
}

static void
test_strings(void **state)
{
	static const char *bad[] = { "\xff", "a\xc0\xaf", "\xed\xa0\x80",
		"\xe6\x97", "\xf4\x90\x80\x80" };
	const char *p = tpath("ids.npy");
	FILE *f = fopen(p, "w+b");
	struct vlm_npy r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		assert_int_equal(vlm_npy_write_str(f, p, &bad[i], 1), -1);
		assert_non_null(strstr(vlm_errmsg(), "UTF-8"));
		assert_int_equal(ftell(f), 0);
	}
	assert_int_equal(vlm_npy_write_str(f, p, ids_all, NIDS), 0);
	rewind(f);
	assert_int_equal(vlm_npy_read(f, p, &r), 0);
	assert_true(r.is_str);
	assert_int_equal(r.width, 9); /* "img-0.png" */
	assert_int_equal(r.t.ndim, 1);
	assert_int_equal(r.t.shape[0], NIDS);
	for (int i = 0; i < NIDS; i++)
		assert_string_equal(r.str[i], ids_all[i]);
	vlm_npy_release(&r);
	assert_int_equal(vlm_npy_read(f, p, &r), 1); /* clean end */
	fclose(f);
}

/* A stream of NIDS rows: batches of 2, 0 and 5 rows, extras. */
static void
write_stream(FILE *f, const char *name, const char *extra)
{
	struct vlm_npys_writer w;
	float vec[NIDS * DIM];
	int64_t at = 0, k[] = { 2, 0, 5 };

	for (int i = 0; i < NIDS * DIM; i++)
		vec[i] = vec_at(i / DIM, i % DIM);
	assert_int_equal(vlm_npys_writer_init(&w, f, name, "{\"model\":"
	    "\"tiny\",\"dim\":4,\"space\":\"image\",\"normalized\":true}"),
	    0);
	for (int b = 0; b < 3; at += k[b++])
		assert_int_equal(vlm_npys_writer_batch(&w, ids_all + at,
		    vec + at * DIM, k[b]), 0);
	assert_int_equal(vlm_npys_writer_finish(&w, extra), 0);
}

/* Read a whole stream: 0 with the rows checked, or -1. */
static int
read_stream(FILE *f, const char *name, int64_t *rows)
{
	struct vlm_npys_reader r;
	int rc;

	if (vlm_npys_reader_init(&r, f, name) < 0)
		return -1;
	assert_int_equal(r.dim, DIM);
	while ((rc = vlm_npys_reader_next(&r)) > 0) {
		for (int64_t i = 0; i < r.k; i++) {
			int64_t row = r.rows - r.k + i;
			assert_string_equal(r.ids[i], ids_all[row]);
			for (int j = 0; j < DIM; j++)
				assert_true(r.vec[i * DIM + j] ==
				    vec_at(row, j));
		}
	}
	*rows = r.rows;
	if (rc == 0)
		assert_int_equal(vlm_npys_reader_next(&r), 0);
	vlm_npys_reader_release(&r);
	return rc;
}

static void
test_npys_roundtrip(void **state)
{
	const char *p = tpath("s.npys");
	FILE *f = fopen(p, "w+b");
	struct vlm_npys_reader r;
	int64_t rows;
	json_t *m;

	(void)state;
	write_stream(f, p, "{\"failed\":[\"bad.png\"]}");
	rewind(f);
	assert_int_equal(read_stream(f, p, &rows), 0);
	assert_int_equal(rows, NIDS);
	rewind(f);
	assert_int_equal(vlm_npys_reader_init(&r, f, p), 0);
	m = json_loads(r.meta, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(m, "format")),
	    "vlm-embeddings");
	assert_int_equal(json_integer_value(json_object_get(m, "version")),
	    1);
	assert_string_equal(json_string_value(json_object_get(m, "model")),
	    "tiny");
	json_decref(m);
	while (vlm_npys_reader_next(&r) > 0)
		;
	assert_non_null(r.end);
	assert_string_equal(r.end,
	    "{\"end\":true,\"rows\":7,\"failed\":[\"bad.png\"]}");
	vlm_npys_reader_release(&r);
	fclose(f);
}

/* Every proper prefix of a good stream is refused, naming the stream. */
static void
test_npys_truncated(void **state)
{
	char *buf;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	int64_t rows;

	(void)state;
	write_stream(f, "mem", NULL);
	fclose(f);
	for (size_t n = 0; n < len; n++) {
		f = fmemopen(buf, n ? n : 1, "rb");
		if (n == 0)
			getc(f); /* fmemopen cannot open 0 bytes */
		if (read_stream(f, "cut.npys", &rows) != -1)
			fail_msg("prefix of %zu of %zu bytes accepted", n, len);
		if (!strstr(vlm_errmsg(), "'cut.npys'"))
			fail_msg("prefix %zu: '%s'", n, vlm_errmsg());
		fclose(f);
	}
	f = fmemopen(buf, len, "rb");
	assert_int_equal(read_stream(f, "whole", &rows), 0);
	fclose(f);
	free(buf);
}

/* Write a JSON text as a |u1 record. */
static void
put_json(FILE *f, const char *json)
{
	struct vlm_tensor t = { .dtype = VLM_DTYPE_U8, .ndim = 1,
	    .shape = { (int64_t)strlen(json) }, .data = (void *)json };

	assert_int_equal(vlm_npy_write(f, "x", &t), 0);
}

static void
put_f32(FILE *f, int ndim, int64_t a, int64_t b)
{
	float z[64];
	struct vlm_tensor t = { .dtype = VLM_DTYPE_F32, .ndim = ndim,
	    .shape = { a, b }, .data = z };

	for (int i = 0; i < 64; i++)
		z[i] = vec_at(i / DIM, i % DIM);

	assert_int_equal(vlm_npy_write(f, "x", &t), 0);
}

#define META "{\"format\":\"vlm-embeddings\",\"version\":1,\"dim\":4}"

/*
 * Build a stream from ops: M good metadata, J the case's JSON, I the
 * first two ids, V their vectors (2, 4), v vectors (2, 3), F vectors (8,), E a good end
 * record, X one stray byte.
 */
static void
put_ops(FILE *f, const char *ops, const char *json)
{
	for (; *ops; ops++) {
		switch (*ops) {
		case 'M': put_json(f, META); break;
		case 'J': put_json(f, json); break;
		case 'I': vlm_npy_write_str(f, "x", ids_all, 2); break;
		case 'V': put_f32(f, 2, 2, 4); break;
		case 'v': put_f32(f, 2, 2, 3); break;
		case 'F': put_f32(f, 1, 8, 0); break;
		case 'E': put_json(f, "{\"end\":true,\"rows\":2}"); break;
		case 'X': fputc(0, f); break;
		default: fail_msg("bad op '%c'", *ops);
		}
	}
}

/* Streams built record by record, each wrong in one way. */
static void
test_npys_bad(void **state)
{
	static const struct {
		const char *ops, *json, *want;
	} v[] = {
		{ "MIVJ", "{\"end\":true,\"rows\":5}", "end record says 5 "
		    "rows, the stream holds 2" },
		{ "MIVJ", "{\"end\":true,\"rows\":0}", "holds 2" },
		{ "MIVJ", "{\"end\":true}", "lacks \"rows\"" },
		{ "MIVJ", "{\"rows\":2}", "not an end record" },
		{ "MIVJ", "{\"end\":tru", "not valid JSON" },
		{ "MIVJ", "[1]", "not a JSON object" },
		{ "MIvE", "", "not '<f4' (2, 4)" },
		{ "MIFE", "", "not '<f4' (2, 4)" },
		{ "MIVV", "", "want ids" },
		{ "MI", "", "ids without vectors" },
		{ "MIV", "", "no end record after 2 rows" },
		{ "M", "", "no end record after 0 rows" },
		{ "MIVEX", "", "data after the end record" },
		{ "", "", "empty stream" },
		{ "V", "", "not JSON metadata" },
		{ "J", "{\"format\":\"x\",\"version\":1,\"dim\":4}",
		    "not a vlm embeddings stream" },
		{ "J", "{\"format\":\"vlm-embeddings\",\"version\":2,"
		    "\"dim\":4}", "version" },
		{ "J", "{\"format\":\"vlm-embeddings\",\"version\":1}",
		    "\"dim\"" },
		{ "J", "{\"format\":\"vlm-embeddings\",\"version\":1,"
		    "\"dim\":4,\"space\":\"audio\"}", "\"space\"" },
		{ "J", "{\"format\":\"vlm-embeddings\",\"version\":1,"
		    "\"dim\":4,\"dim\":5}", "not valid JSON" },
	};
	(void)state;
	for (size_t c = 0; c < sizeof(v) / sizeof(*v); c++) {
		const char *p = tpath("bad.npys");
		FILE *f = fopen(p, "w+b");
		int64_t rows;

		put_ops(f, v[c].ops, v[c].json);
		rewind(f);
		if (read_stream(f, p, &rows) != -1)
			fail_msg("bad stream %zu accepted", c);
		if (!strstr(vlm_errmsg(), p) || !strstr(vlm_errmsg(),
		    v[c].want) || strchr(vlm_errmsg(), '\n'))
			fail_msg("stream %zu: '%s' lacks '%s'", c,
			    vlm_errmsg(), v[c].want);
		fclose(f);
	}
}

/* The writer's checks on what it is given. */
static void
test_npys_writer_refuses(void **state)
{
	struct vlm_npys_writer w;
	const char *bad = "\xff";
	float z[DIM] = { 0 };
	FILE *f = fopen(tpath("w.npys"), "wb");

	(void)state;
	assert_int_equal(vlm_npys_writer_init(&w, f, "w", "{}"), -1);
	assert_int_equal(vlm_npys_writer_init(&w, f, "w", "{\"dim\":0}"),
	    -1);
	assert_int_equal(vlm_npys_writer_init(&w, f, "w", "{\"dim\":4,"
	    "\"version\":3}"), -1);
	assert_int_equal(ftell(f), 0);
	assert_int_equal(vlm_npys_writer_init(&w, f, "w", "{\"dim\":4}"), 0);
	assert_int_equal(vlm_npys_writer_batch(&w, &bad, z, 1), -1);
	assert_int_equal(w.rows, 0);
	assert_int_equal(vlm_npys_writer_finish(&w, "{\"rows\":3}"), -1);
	assert_int_equal(vlm_npys_writer_finish(&w, "[]"), -1);
	assert_int_equal(vlm_npys_writer_finish(&w, NULL), 0);
	fclose(f);
}

/* A full disk fails at the latest when the stream is finished. */
static void
test_dev_full(void **state)
{
	FILE *f = fopen("/dev/full", "wb");
	struct vlm_npys_writer w;
	float vec[NIDS * DIM] = { 0 };
	int rc;

	(void)state;
	if (!f)
		skip();
	rc = vlm_npys_writer_init(&w, f, "/dev/full", "{\"dim\":4}");
	for (int i = 0; rc == 0 && i < 1000; i++)
		rc = vlm_npys_writer_batch(&w, ids_all, vec, NIDS);
	if (rc == 0)
		rc = vlm_npys_writer_finish(&w, NULL);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(vlm_errmsg(), "'/dev/full': "));
	fclose(f);
}

/* Names in the test directory other than keep (leftovers). */
static int
count_files(const char *keep)
{
	DIR *d = opendir(test_tmpdir());
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && strcmp(e->d_name, keep) != 0)
			n++;
	closedir(d);
	return n;
}

/* Remove every file in the test directory. */
static void
clear_dir(void)
{
	DIR *d = opendir(test_tmpdir());
	struct dirent *e;

	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

static void
pack_file(const char *in, const char *out, int want)
{
	FILE *f = fopen(in, "rb");
	struct vlm_npys_reader r;
	int rc;

	assert_non_null(f);
	rc = vlm_npys_reader_init(&r, f, in);
	if (rc == 0)
		rc = vlm_npys_pack(&r, out);
	if (rc != want)
		fail_msg("pack '%s': %d (%s)", in, rc, vlm_errmsg());
	vlm_npys_reader_release(&r);
	fclose(f);
}

static void
test_pack(void **state)
{
	const char *in = tpath("p.npys");
	struct vlm_tensor t;
	struct vlm_npy ids;
	json_t *m;
	FILE *f;

	(void)state;
	clear_dir();
	f = fopen(in, "wb");
	write_stream(f, in, "{\"failed\":[\"bad.png\"]}");
	fclose(f);
	pack_file(in, tpath("emb.npy"), 0);
	assert_int_equal(vlm_npy_load(tpath("emb.npy"), &t), 0);
	assert_int_equal(t.dtype, VLM_DTYPE_F32);
	assert_int_equal(t.ndim, 2);
	assert_int_equal(t.shape[0], NIDS);
	assert_int_equal(t.shape[1], DIM);
	for (int i = 0; i < NIDS * DIM; i++)
		assert_true(((float *)t.data)[i] == vec_at(i / DIM, i % DIM));
	free(t.data);
	f = fopen(tpath("emb.ids.npy"), "rb");
	assert_int_equal(vlm_npy_read(f, "ids", &ids), 0);
	fclose(f);
	assert_int_equal(ids.t.shape[0], NIDS);
	for (int i = 0; i < NIDS; i++)
		assert_string_equal(ids.str[i], ids_all[i]);
	vlm_npy_release(&ids);
	m = json_load_file(tpath("emb.json"), 0, NULL);
	assert_non_null(m);
	assert_int_equal(json_integer_value(json_object_get(m, "rows")),
	    NIDS);
	assert_int_equal(json_integer_value(json_object_get(m, "dim")), DIM);
	assert_true(json_is_array(json_object_get(m, "failed")));
	assert_null(json_object_get(m, "end"));
	json_decref(m);
	assert_int_equal(count_files("p.npys"), 3); /* no temporaries */
}

static void
test_pack_empty(void **state)
{
	const char *in = tpath("e.npys");
	struct vlm_npys_writer w;
	struct vlm_tensor t;
	FILE *f;

	(void)state;
	clear_dir();
	f = fopen(in, "wb");
	assert_int_equal(vlm_npys_writer_init(&w, f, in, "{\"dim\":3}"), 0);
	assert_int_equal(vlm_npys_writer_finish(&w, NULL), 0);
	fclose(f);
	pack_file(in, tpath("e-out"), 0); /* no .npy: e-out, e-out.ids.npy */
	assert_int_equal(vlm_npy_load(tpath("e-out"), &t), 0);
	assert_int_equal(t.ndim, 2);
	assert_int_equal(t.shape[0], 0);
	assert_int_equal(t.shape[1], 3);
	free(t.data);
	assert_int_equal(access(tpath("e-out.ids.npy"), R_OK), 0);
	assert_int_equal(access(tpath("e-out.json"), R_OK), 0);
}

/* Bad streams and outputs leave no file behind, not even temporaries. */
static void
test_pack_bad(void **state)
{
	static const char *ops[] = { "MIV", "MIVJ", "MIvE", "MIVEX" };
	struct vlm_npys_reader r;

	(void)state;
	for (size_t c = 0; c < sizeof(ops) / sizeof(*ops); c++) {
		const char *in = tpath("b.npys");
		FILE *f;

		clear_dir();
		f = fopen(in, "wb");
		put_ops(f, ops[c], "{\"end\":true,\"rows\":9}");
		fclose(f);
		pack_file(in, tpath("out.npy"), -1);
		assert_non_null(strstr(vlm_errmsg(), in));
		assert_int_equal(count_files("b.npys"), 0);
	}
	assert_int_equal(mkdir(tpath("out.json"), 0700), 0);
	pack_file(tpath("b.npys"), tpath("out.npy"), -1);
	assert_non_null(strstr(vlm_errmsg(), "not a regular file"));
	rmdir(tpath("out.json"));
	assert_int_equal(count_files("b.npys"), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(vlm_npys_pack(&r, "-"), -1);
}

/* Arrays numpy wrote (independent of this code): shapes and a value. */
static void
test_fixtures(void **state)
{
	const char *p = fixture("openclip-tiny/text_tokens.npy");
	struct vlm_tensor t;

	(void)state;
	NEED_FIXTURE(p);
	assert_int_equal(vlm_npy_load(p, &t), 0);
	assert_int_equal(t.dtype, VLM_DTYPE_I64);
	assert_int_equal(t.ndim, 2);
	assert_int_equal(t.shape[0], 6);
	assert_int_equal(t.shape[1], 77);
	for (int i = 0; i < 6; i++) /* SOT starts every caption */
		assert_int_equal(((int64_t *)t.data)[i * 77], 49406);
	free(t.data);
	p = fixture("openclip-tiny/image_features.npy");
	assert_int_equal(vlm_npy_load(p, &t), 0);
	assert_int_equal(t.dtype, VLM_DTYPE_F32);
	assert_int_equal(t.shape[0], 4);
	assert_int_equal(t.shape[1], 32);
	free(t.data);
}

/* ---- round trips through NumPy -------------------------------------- */

#define PY "/usr/bin/python3"

static int
have_numpy(void)
{
	return system(PY " -c 'import numpy' >/dev/null 2>&1") == 0;
}

#define NEED_NUMPY() do { \
	if (!have_numpy()) { \
		print_message("skipping: " PY " lacks numpy\n"); \
		skip(); \
	} \
} while (0)

/* Run a Python script with the test directory as argv[1]. */
static void
python(const char *script)
{
	char cmd[9000];
	FILE *f = fopen(tpath("t.py"), "w");

	assert_non_null(f);
	fputs(script, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), PY " '%s' '%s'", tpath("t.py"),
	    test_tmpdir());
	if (system(cmd) != 0)
		fail_msg("python check failed");
}

/* The ids as a JSON file both sides read. */
static void
write_ids_json(void)
{
	json_t *a = json_array();

	for (int i = 0; i < NIDS; i++)
		json_array_append_new(a, json_string(ids_all[i]));
	assert_int_equal(json_dump_file(a, tpath("ids.json"), 0), 0);
	json_decref(a);
}

/*
 * NumPy reads each file back, and its header and data are byte for byte
 * what numpy writes (np.save, or numpy's header writer for "wide").
 */
static const char py_check_npy[] =
"import io, sys, json, numpy as np\n"
"from numpy.lib import format as F\n"
"d = sys.argv[1]\n"
"for line in open(d + '/manifest.txt'):\n"
"    name, descr, shape = line.rstrip('\\n').split(' ')\n"
"    shape = tuple(int(x) for x in shape.split(',') if x)\n"
"    data = open(f'{d}/{name}.npy', 'rb').read()\n"
"    f = io.BytesIO(data)\n"
"    assert F.read_magic(f) == (1, 0), name\n"
"    h = F.read_array_header_1_0(f)\n"
"    assert h == (shape, False, np.dtype(descr)), (name, h)\n"
"    b = io.BytesIO()\n"
"    F._write_array_header(b, {'descr': descr, 'fortran_order': False,\n"
"                              'shape': shape}, (1, 0))\n"
"    assert data[:f.tell()] == b.getvalue(), name\n"
"    if 'wide' in name:\n"
"        continue  # numpy refuses the size, even with a 0\n"
"    raw = open(f'{d}/{name}.raw', 'rb').read()\n"
"    for mm in (None, 'r'):\n"
"        a = np.load(f'{d}/{name}.npy', mmap_mode=mm)\n"
"        assert a.dtype.str == descr, (name, a.dtype.str)\n"
"        assert a.shape == shape, (name, a.shape)\n"
"        assert a.tobytes() == raw, name\n"
"    b = io.BytesIO()\n"
"    np.save(b, np.load(f'{d}/{name}.npy'))\n"
"    assert b.getvalue() == data, name\n"
"ids = np.load(d + '/ids.npy')\n"
"assert ids.dtype.str == '<U9', ids.dtype\n"
"assert list(ids) == json.load(open(d + '/ids.json')), list(ids)\n"
"b = io.BytesIO()\n"
"np.save(b, ids)\n"
"assert b.getvalue() == open(d + '/ids.npy', 'rb').read()\n";

/* C writes every dtype and shape (and ids); NumPy reads them. */
static void
test_numpy_reads_c(void **state)
{
	FILE *man, *f;

	(void)state;
	NEED_NUMPY();
	clear_dir();
	man = fopen(tpath("manifest.txt"), "w");
	for (size_t d = 0; d < NDT; d++) {
		for (size_t s = 0; s < NSHP; s++) {
			struct vlm_tensor t = { .dtype = dts[d].dtype,
			    .ndim = shps[s].ndim };
			size_t nb = numel_of(&shps[s]) * dts[d].size;
			char name[64];

			memcpy(t.shape, shps[s].shape, sizeof(shps[s].shape));
			t.data = malloc(nb + 1);
			fill(t.data, nb, (unsigned)(d + s));
			snprintf(name, sizeof(name), "c-%s-%s", dts[d].descr
			    + 1, shps[s].name);
			fprintf(man, "%s %s ", name, dts[d].descr);
			for (int i = 0; i < t.ndim; i++)
				fprintf(man, "%lld,", (long long)t.shape[i]);
			fprintf(man, "\n");
			write_file(tpath(strcat(name, ".raw")), t.data, nb);
			strcpy(name + strlen(name) - 4, ".npy");
			assert_int_equal(vlm_npy_save(tpath(name), &t), 0);
			free(t.data);
		}
	}
	fclose(man);
	f = fopen(tpath("ids.npy"), "wb");
	assert_int_equal(vlm_npy_write_str(f, "ids", ids_all, NIDS), 0);
	fclose(f);
	write_ids_json();
	python(py_check_npy);
}

static const char py_write_npy[] =
"import sys, json, numpy as np\n"
"from numpy.lib import format as F\n"
"d = sys.argv[1]\n"
"man = open(d + '/pymanifest.txt', 'w')\n"
"shapes = {'0d': (), '1d': (5,), '3d': (2, 3, 4), 'empty': (0, 3)}\n"
"for descr in ['<f4', '<f2', '<i4', '<i8', '|u1']:\n"
"    for sname, shape in shapes.items():\n"
"        n = int(np.prod(shape))\n"
"        a = ((np.arange(n) * 37 + 5) % 251 - 100 * (descr[1] != 'u'))\n"
"        a = a.astype(descr).reshape(shape)\n"
"        for ver in [None, (1, 0), (2, 0), (3, 0)]:\n"
"            name = f'py-{descr[1:]}-{sname}-v{ver[0] if ver else 0}'\n"
"            with open(f'{d}/{name}.npy', 'wb') as f:\n"
"                F.write_array(f, a, version=ver)\n"
"            open(f'{d}/{name}.raw', 'wb').write(a.tobytes())\n"
"            man.write(f'{name} {descr} {\",\".join(map(str, shape))}\\n')\n"
"np.save(d + '/py-ids.npy', np.array(json.load(open(d + '/ids.json'))))\n"
"np.save(d + '/py-fortran.npy', np.zeros((3, 2), np.float32).T)\n"
"np.save(d + '/py-object.npy', np.array([1, 'a'], object),\n"
"        allow_pickle=True)\n"
"np.save(d + '/py-big.npy', np.zeros(3, '>f4'))\n"
"np.save(d + '/py-f8.npy', np.zeros(3))\n";

/* Load one array NumPy wrote and compare it with its raw bytes. */
static void
check_py_array(const char *name, const char *descr, const char *shape)
{
	char path[128], *raw;
	struct vlm_tensor t;
	size_t d, n, i = 0;
	FILE *f;

	for (d = 0; d < NDT && strcmp(dts[d].descr, descr) != 0; d++)
		;
	assert_true(d < NDT);
	snprintf(path, sizeof(path), "%s.npy", name);
	if (vlm_npy_load(tpath(path), &t) != 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(t.dtype, dts[d].dtype);
	for (n = dts[d].size; *shape; i++) {
		assert_int_equal(t.shape[i], strtoll(shape, (char **)&shape,
		    10));
		n *= (size_t)t.shape[i];
		shape += *shape == ',';
	}
	assert_int_equal(t.ndim, (int)i);
	snprintf(path, sizeof(path), "%s.raw", name);
	raw = malloc(n + 1);
	f = fopen(tpath(path), "rb");
	assert_int_equal(fread(raw, 1, n + 1, f), n);
	fclose(f);
	if (n)
		assert_memory_equal(t.data, raw, n);
	free(raw);
	free(t.data);
}

/* NumPy writes v1, v2 and v3 files, and files C must refuse. */
static void
test_c_reads_numpy(void **state)
{
	static const char *refused[][2] = { { "py-fortran.npy",
		"fortran_order" }, { "py-object.npy", "object arrays" },
		{ "py-big.npy", "big-endian" }, { "py-f8.npy", "'<f8'" } };
	char name[64], descr[16], shape[64];
	struct vlm_tensor t;
	struct vlm_npy ids;
	FILE *man, *f;
	int n = 0;

	(void)state;
	NEED_NUMPY();
	clear_dir();
	write_ids_json();
	python(py_write_npy);
	man = fopen(tpath("pymanifest.txt"), "r");
	while (fscanf(man, "%63s %15s", name, descr) == 2) {
		shape[0] = '\0';
		if (fgetc(man) == ' ' && fscanf(man, "%63[0-9,]", shape) < 0)
			break;
		check_py_array(name, descr, shape);
		n++;
	}
	fclose(man);
	assert_int_equal(n, 5 * 4 * 4);
	f = fopen(tpath("py-ids.npy"), "rb");
	assert_int_equal(vlm_npy_read(f, "py-ids", &ids), 0);
	fclose(f);
	assert_true(ids.is_str);
	assert_int_equal(ids.t.shape[0], NIDS);
	for (int i = 0; i < NIDS; i++)
		assert_string_equal(ids.str[i], ids_all[i]);
	vlm_npy_release(&ids);
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
		assert_int_equal(vlm_npy_load(tpath(refused[i][0]), &t), -1);
		if (!strstr(vlm_errmsg(), refused[i][1]))
			fail_msg("%s: '%s'", refused[i][0], vlm_errmsg());
	}
}

static const char py_read_npys[] =
"import sys, json, numpy as np\n"
"d = sys.argv[1]\n"
"ids = json.load(open(d + '/ids.json'))\n"
"def want(r0, k):\n"
"    r = np.arange(r0, r0 + k)[:, None]\n"
"    return ((r * 10 + np.arange(4)) * 0.5 - 7).astype(np.float32)\n"
"with open(d + '/c.npys', 'rb') as f:\n"
"    meta = json.loads(np.load(f).tobytes())\n"
"    assert meta == {'format': 'vlm-embeddings', 'version': 1,\n"
"        'model': 'tiny', 'dim': 4, 'space': 'image',\n"
"        'normalized': True}, meta\n"
"    rows = 0\n"
"    while True:\n"
"        a = np.load(f)\n"
"        if a.dtype == np.uint8:\n"
"            end = json.loads(a.tobytes())\n"
"            break\n"
"        assert a.dtype.kind == 'U' and a.ndim == 1, a.dtype\n"
"        v = np.load(f)\n"
"        assert v.dtype == np.float32 and v.shape == (len(a), 4)\n"
"        assert list(a) == ids[rows:rows + len(a)], list(a)\n"
"        assert (v == want(rows, len(a))).all()\n"
"        rows += len(a)\n"
"    assert f.read() == b''\n"
"assert rows == 7\n"
"assert end == {'end': True, 'rows': 7, 'failed': ['bad.png']}, end\n"
"a = np.load(d + '/packed.npy')\n"
"m = np.load(d + '/packed.npy', mmap_mode='r')\n"
"assert a.dtype.str == '<f4' and a.shape == (7, 4), a.shape\n"
"assert (a == want(0, 7)).all() and (np.asarray(m) == a).all()\n"
"assert list(np.load(d + '/packed.ids.npy')) == ids\n"
"meta = json.load(open(d + '/packed.json'))\n"
"assert meta['rows'] == 7 and meta['dim'] == 4 and 'end' not in meta\n"
"assert meta['failed'] == ['bad.png'] and meta['model'] == 'tiny'\n"
"with open(d + '/py.npys', 'wb') as f:\n"
"    def js(o):\n"
"        np.save(f, np.frombuffer(json.dumps(o).encode(), np.uint8))\n"
"    js({'format': 'vlm-embeddings', 'version': 1, 'model': 'py',\n"
"        'dim': 4, 'space': 'text', 'normalized': True})\n"
"    for r0, k in ((0, 3), (3, 4)):\n"
"        np.save(f, np.array(ids[r0:r0 + k]))\n"
"        np.save(f, want(r0, k))\n"
"    js({'end': True, 'rows': 7})\n";

/* C writes a stream and packs it, NumPy reads both; and the reverse. */
static void
test_numpy_npys(void **state)
{
	FILE *f;
	int64_t rows;

	(void)state;
	NEED_NUMPY();
	clear_dir();
	write_ids_json();
	f = fopen(tpath("c.npys"), "wb");
	write_stream(f, "c.npys", "{\"failed\":[\"bad.png\"]}");
	fclose(f);
	pack_file(tpath("c.npys"), tpath("packed.npy"), 0);
	python(py_read_npys);
	f = fopen(tpath("py.npys"), "rb");
	assert_int_equal(read_stream(f, "py.npys", &rows), 0);
	assert_int_equal(rows, NIDS);
	fclose(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_bf16_refused),
		cmocka_unit_test(test_header_variants),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_bad_prefix),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_npys_roundtrip),
		cmocka_unit_test(test_npys_truncated),
		cmocka_unit_test(test_npys_bad),
		cmocka_unit_test(test_npys_writer_refuses),
		cmocka_unit_test(test_dev_full),
		cmocka_unit_test(test_pack),
		cmocka_unit_test(test_pack_empty),
		cmocka_unit_test(test_pack_bad),
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test(test_numpy_reads_c),
		cmocka_unit_test(test_c_reads_numpy),
		cmocka_unit_test(test_numpy_npys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
