/*
 * test-safetensors.c - the safetensors reader and writer.
 *
 * Round trips, zero-copy data, metadata, the OpenCLIP fixture (parameter
 * count from its manifest), one crafted bad file per validation rule,
 * and interop both ways with files built and parsed by a few lines of
 * Python (struct + json + numpy, no safetensors package).
 */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>

#include <jansson.h>

#include "testutil.h"

/* A path in the test directory (a few rotating buffers). */
static const char *
tpath(const char *name)
{
	static char buf[4][4200];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", test_tmpdir(), name);
	return buf[k];
}

/*
 * Write a file: u64 header length (claim, or the JSON's), the JSON (jlen
 * bytes, or up to its NUL), then ndata bytes of data.
 */
static const char *
craft_n(const char *name, long long claim, const char *json, size_t jlen,
    size_t ndata)
{
	const char *path = tpath(name);
	uint64_t n;
	unsigned char le[8];
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	jlen = jlen ? jlen : strlen(json);
	n = claim >= 0 ? (uint64_t)claim : jlen;
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(n >> (8 * i));
	fwrite(le, 1, 8, f);
	fwrite(json, 1, jlen, f);
	for (size_t i = 0; i < ndata; i++)
		fputc((int)(i * 7 & 0xff), f);
	assert_int_equal(fclose(f), 0);
	return path;
}

static const char *
craft(const char *name, long long claim, const char *json, size_t ndata)
{
	return craft_n(name, claim, json, 0, ndata);
}

/* Loading path fails with one line that names it and says what. */
static void
expect_bad(const char *path, const char *what)
{
	struct vlm_st st;

	assert_int_equal(vlm_st_load(&st, path), -1);
	print_message("  %s\n", vlm_errmsg());
	assert_non_null(strstr(vlm_errmsg(), path));
	assert_null(strchr(vlm_errmsg(), '\n'));
	if (!strstr(vlm_errmsg(), what))
		fail_msg("message lacks '%s': %s", what, vlm_errmsg());
	assert_null(st.file.base); /* released */
}

/* One tensor entry of a crafted header. */
#define T(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt \
    "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static float vals_a[6] = { 1.5f, -2.0f, 0.0f, 3.25f, -0.125f, 1e30f };
static int64_t vals_c[3] = { -1, 0, (int64_t)1 << 40 };
static uint8_t vals_d[5] = { 0, 1, 127, 128, 255 };
static uint16_t vals_h[4] = { 0x3c00, 0xc000, 0x0001, 0x7bff };
static float vals_s = 2.6592600f;

#define NT 7
static const char *names[NT] = { "b.half", "a.weight", "c.ids", "d.bytes",
    "s", "empty", "z.bf" };

static void
sample(struct vlm_tensor *ts)
{
	static uint16_t bf[2];
	struct vlm_tensor t[NT] = {
		{ VLM_DTYPE_F16, 2, { 2, 2 }, vals_h },
		{ VLM_DTYPE_F32, 2, { 2, 3 }, vals_a },
		{ VLM_DTYPE_I64, 1, { 3 }, vals_c },
		{ VLM_DTYPE_U8, 1, { 5 }, vals_d },
		{ VLM_DTYPE_F32, 0, { 0 }, &vals_s },
		{ VLM_DTYPE_F32, 3, { 2, 0, 4 }, NULL },
		{ VLM_DTYPE_BF16, 1, { 2 }, bf },
	};

	bf[0] = vlm_f32_to_bf16(0.5f);
	bf[1] = vlm_f32_to_bf16(-7.0f);
	memcpy(ts, t, sizeof(t));
}

static const char *mkeys[] = { "format", "config", "note" };
static const char *mvals[] = { "vlm-test", "{\"width\": 64,\n \"layers\": 2}",
    "h\xc3\xa9llo" };

static uint64_t
header_len(const char *path)
{
	unsigned char le[8];
	uint64_t n = 0;
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fread(le, 1, 8, f), 8);
	fclose(f);
	for (int i = 7; i >= 0; i--)
		n = n << 8 | le[i];
	return n;
}

/* The layout the writer must choose: by decreasing dtype size, stable. */
static const int layout[NT] = { 2, 1, 4, 5, 0, 6, 3 };

static void
test_round_trip(void **state)
{
	const char *path = tpath("rt.safetensors");
	struct vlm_tensor ts[NT];
	struct vlm_st st;
	uint64_t hlen;
	size_t at = 0;

	(void)state;
	sample(ts);
	assert_int_equal(vlm_st_save(path, names, ts, NT, mkeys, mvals, 3), 0);
	assert_int_equal(vlm_st_load(&st, path), 0);
	assert_int_equal(st.n, NT);
	hlen = header_len(path);
	assert_int_equal(hlen % 8, 0);
	assert_int_equal((8 + hlen) % VLM_ST_ALIGN, 0); /* data aligned */
	assert_true(st.file.mapped);
	assert_null(st.copy);
	for (int k = 0; k < NT; k++) {
		int i = layout[k];
		const struct vlm_tensor *t = vlm_st_get(&st, names[i]);
		assert_string_equal(st.names[k], names[i]);
		assert_ptr_equal(t, &st.tensors[k]);
		assert_int_equal(t->dtype, ts[i].dtype);
		assert_int_equal(t->ndim, ts[i].ndim);
		assert_memory_equal(t->shape, ts[i].shape,
		    sizeof(int64_t) * (size_t)t->ndim);
		if (vlm_tensor_nbytes(t))
			assert_memory_equal(t->data, ts[i].data,
			    vlm_tensor_nbytes(t));
		/* zero copy: into the mapping, right after the header */
		assert_ptr_equal(t->data, st.file.base + 8 + hlen + at);
		at += vlm_tensor_nbytes(t);
	}
	assert_int_equal(st.file.size, 8 + hlen + at);
	assert_null(vlm_st_get(&st, "nope"));
	assert_null(vlm_st_get(&st, ""));
	assert_int_equal(st.nmeta, 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(st.meta_keys[i], mkeys[i]);
		assert_string_equal(vlm_st_meta(&st, mkeys[i]), mvals[i]);
	}
	assert_null(vlm_st_meta(&st, "absent"));
	assert_int_equal(vlm_st_numel(&st), 4 + 6 + 3 + 5 + 1 + 0 + 2);
	vlm_st_release(&st);
	assert_null(st.file.base);
	vlm_st_release(&st); /* twice is harmless */
}

static void
test_empty_and_order(void **state)
{
	struct vlm_st st;
	const char *p;

	(void)state;
	/* no tensors, no metadata: "{}" padded */
	p = tpath("none.safetensors");
	assert_int_equal(vlm_st_save(p, NULL, NULL, 0, NULL, NULL, 0), 0);
	/* "{}" and spaces: the data section starts at VLM_ST_ALIGN */
	assert_int_equal(header_len(p), VLM_ST_ALIGN - 8);
	assert_int_equal(vlm_st_load(&st, p), 0);
	assert_int_equal(st.n, 0);
	assert_int_equal(st.nmeta, 0);
	vlm_st_release(&st);
	/* header order differs from data order: entries follow the data */
	p = craft("order.safetensors", -1, "{" T("x", "U8", "[2]", 4, 6)
	    "," T("y", "I32", "[1]", 0, 4) ", " T("e", "F16", "[0]", 6, 6)
	    "}  ", 6);
	assert_int_equal(vlm_st_load(&st, p), 0);
	assert_int_equal(st.n, 3);
	assert_string_equal(st.names[0], "y");
	assert_string_equal(st.names[1], "x");
	assert_string_equal(st.names[2], "e");
	assert_int_equal(((uint8_t *)vlm_st_get(&st, "x")->data)[1], 5 * 7);
	vlm_st_release(&st);
}

/* A header length that leaves F32 data misaligned: one aligned copy. */
static void
test_misaligned(void **state)
{
	const char *p = tpath("odd.safetensors");
	const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],"
	    "\"data_offsets\":[0,12]}}";
	float v[3] = { 1.0f, -2.5f, 1e-3f };
	const struct vlm_tensor *t;
	struct vlm_st st;
	FILE *f;

	(void)state;
	assert_true(strlen(json) % 4 != 0);
	craft("odd.safetensors", -1, json, 0);
	assert_non_null(f = fopen(p, "ab"));
	fwrite(v, 4, 3, f);
	fclose(f);
	assert_int_equal(vlm_st_load(&st, p), 0);
	t = vlm_st_get(&st, "w");
	assert_non_null(st.copy);
	assert_int_equal((uintptr_t)t->data % 4, 0);
	assert_memory_equal(t->data, v, 12);
	vlm_st_release(&st);
}

/* The OpenCLIP fixture: every tensor, parameter count from manifest. */
static void
test_fixture(void **state)
{
	const struct vlm_tensor *t;
	json_t *man;
	struct vlm_st st;
	char p[4200];

	(void)state;
	/* fixture() returns a static buffer: copy it */
	snprintf(p, sizeof(p), "%s",
	    fixture("openclip-tiny/weights.openclip.safetensors"));
	NEED_FIXTURE(p);
	man = json_load_file(fixture("openclip-tiny/manifest.json"), 0, NULL);
	assert_non_null(man);
	assert_int_equal(vlm_st_load(&st, p), 0);
	assert_int_equal(vlm_st_numel(&st),
	    json_integer_value(json_object_get(man, "n_params")));
	json_decref(man);
	assert_null(st.copy);
	t = vlm_st_get(&st, "token_embedding.weight");
	assert_non_null(t);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[0], 49408);
	assert_int_equal(t->shape[1], 64);
	/* OpenCLIP initialises logit_scale to log(1 / 0.07) */
	t = vlm_st_get(&st, "logit_scale");
	assert_int_equal(t->ndim, 0);
	assert_true(fabs(*(float *)t->data - log(1 / 0.07)) < 1e-6);
	assert_string_equal(vlm_st_meta(&st, "model"), "Tiny-RefTest");
	vlm_st_release(&st);
}

static const struct bad {
	const char *file, *json, *what;
	long long claim;
	size_t ndata;
} bads[] = {
	{ "truncated", "{" T("a", "F32", "[4]", 0, 16) "}", "truncated",
	    -1, 8 },
	{ "past-eof", "{}", "past the end", 1000, 0 },
	{ "huge-header", "{}", "limit", 200000000, 0 },
	{ "overlap", "{" T("a", "F32", "[4]", 0, 16) ","
	    T("b", "F32", "[4]", 8, 24) "}", "overlaps", -1, 24 },
	{ "gap", "{" T("a", "F32", "[4]", 0, 16) ","
	    T("b", "F32", "[4]", 20, 36) "}", "gap", -1, 36 },
	{ "not-from-0", "{" T("a", "F32", "[4]", 4, 20) "}", "gap", -1, 20 },
	{ "trailing", "{" T("a", "F32", "[4]", 0, 16) "}", "trailing",
	    -1, 24 },
	{ "dtype", "{" T("a", "F8_E4M3", "[4]", 0, 4) "}", "unknown dtype "
	    "'F8_E4M3'", -1, 4 },
	{ "no-dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}",
	    "dtype", -1, 1 },
	{ "negative", "{" T("a", "F32", "[-1,4]", 0, 16) "}",
	    "non-negative", -1, 16 },
	{ "real-dim", "{" T("a", "F32", "[2.0]", 0, 8) "}", "non-negative",
	    -1, 8 },
	{ "overflow", "{" T("a", "F32", "[4294967296,4294967296,4]", 0, 0)
	    "}", "overflows", -1, 0 },
	{ "overflow-zero", "{" T("a", "U8", "[0,4294967296,4294967296]", 0, 0)
	    "}", "overflows", -1, 0 },
	{ "overflow-size", "{" T("a", "I64", "[4611686018427387904]", 0, 0)
	    "}", "overflows", -1, 0 },
	{ "big-int", "{" T("a", "U8", "[99999999999999999999]", 0, 0) "}",
	    "JSON", -1, 0 },
	{ "size", "{" T("a", "F32", "[4]", 0, 8) "}", "do not hold", -1, 8 },
	{ "backwards", "{" T("a", "F32", "[4]", 16, 0) "}", "do not hold",
	    -1, 16 },
	{ "offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":"
	    "[0]}}", "pair", -1, 1 },
	{ "dims", "{" T("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}",
	    "dimensions", -1, 1 },
	{ "utf8", "{" T("a\xff", "U8", "[1]", 0, 1) "}", "JSON", -1, 1 },
	{ "surrogate", "{" T("a\\ud800", "U8", "[1]", 0, 1) "}", "JSON",
	    -1, 1 },
	{ "duplicate", "{" T("a", "U8", "[1]", 0, 1) ","
	    T("a", "U8", "[1]", 1, 2) "}", "JSON", -1, 2 },
	{ "not-object", "[1, 2]", "start", -1, 0 },
	{ "garbage", "{} x", "JSON", -1, 0 },
	{ "nul-string", "{\"a\\u0000\":1}", "JSON", -1, 0 },
	{ "entry", "{\"a\":[1]}", "not a JSON object", -1, 0 },
	{ "meta-string", "{\"__metadata__\":{\"k\":\"v\",\"n\":1}}",
	    "metadata 'n' is not a string", -1, 0 },
	{ "meta-object", "{\"__metadata__\":\"v\"}", "__metadata__", -1, 0 },
	{ "newline-name", "{" T("a\\nb", "Q4", "[1]", 0, 1) "}",
	    "'a?b'", -1, 1 },
};

static void
test_bad_files(void **state)
{
	char deep[400], name[64];
	int k = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(*bads); i++) {
		snprintf(name, sizeof(name), "%s.safetensors", bads[i].file);
		expect_bad(craft(name, bads[i].claim, bads[i].json,
		    bads[i].ndata), bads[i].what);
	}
	expect_bad(craft_n("nul.safetensors", -1, "{}\0", 3, 0), "JSON");
	/* nesting 100 deep inside a metadata value */
	k += sprintf(deep + k, "{\"__metadata__\":{\"k\":");
	for (int i = 0; i < 100; i++)
		deep[k++] = '[';
	for (int i = 0; i < 100; i++)
		deep[k++] = ']';
	sprintf(deep + k, "}}");
	expect_bad(craft("deep.safetensors", -1, deep, 0), "nested");
	/* brackets inside strings do not count */
	k = sprintf(deep, "{\"__metadata__\":{\"k\":\"");
	for (int i = 0; i < 100; i++)
		deep[k++] = '[';
	sprintf(deep + k, "\\\"\"}}");
	{
		struct vlm_st st;
		assert_int_equal(vlm_st_load(&st, craft("brackets.safetensors",
		    -1, deep, 0)), 0);
		assert_int_equal(strlen(vlm_st_meta(&st, "k")), 101);
		vlm_st_release(&st);
	}
	/* too short, empty, missing, a directory, a pickle */
	expect_bad(craft("short.safetensors", 0, "", 0), "start");
	{
		FILE *f = fopen(tpath("empty.safetensors"), "wb");
		fclose(f);
		f = fopen(tpath("four.safetensors"), "wb");
		fputs("abcd", f);
		fclose(f);
	}
	expect_bad(tpath("empty.safetensors"), "too short");
	expect_bad(tpath("four.safetensors"), "too short");
	expect_bad(tpath("missing.safetensors"), "No such file");
	expect_bad(test_tmpdir(), "directory");
	expect_bad(craft("model.pt", -1, "{}", 0), "safetensors");
}

/* Nothing but the wanted file in dir: no temporary left behind. */
static int
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void
test_save_errors(void **state)
{
	const char *dir = tpath("save"), *p = tpath("save/x.safetensors");
	struct vlm_tensor ts[NT];
	const char *dup[2] = { "a", "a" }, *res[1] = { "__metadata__" };
	const char *bad[1] = { "a\xff" }, *mk[2] = { "k", "k" };

	(void)state;
	sample(ts);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(vlm_st_save(p, dup, ts, 2, NULL, NULL, 0), -1);
	assert_non_null(strstr(vlm_errmsg(), "repeated"));
	assert_int_equal(vlm_st_save(p, res, ts, 1, NULL, NULL, 0), -1);
	assert_non_null(strstr(vlm_errmsg(), "reserved"));
	assert_int_equal(vlm_st_save(p, bad, ts, 1, NULL, NULL, 0), -1);
	assert_non_null(strstr(vlm_errmsg(), "UTF-8"));
	assert_int_equal(vlm_st_save(p, names, ts, 1, mk, mvals, 2), -1);
	assert_non_null(strstr(vlm_errmsg(), "repeated"));
	assert_int_equal(vlm_st_save(p, names, ts, 1, mkeys, bad, 1), -1);
	assert_non_null(strstr(vlm_errmsg(), "UTF-8"));
	assert_non_null(strstr(vlm_errmsg(), p));
	assert_int_equal(count_files(dir), 0);
	assert_int_equal(vlm_st_save(tpath("save/no/such/dir.safetensors"),
	    names, ts, NT, NULL, NULL, 0), -1);
	assert_non_null(strstr(vlm_errmsg(), "no/such/dir.safetensors"));
	assert_int_equal(vlm_st_save(p, names, ts, NT, NULL, NULL, 0), 0);
	assert_int_equal(count_files(dir), 1);
	/* over an existing file: replaced whole */
	assert_int_equal(vlm_st_save(p, names + 1, ts + 1, 1, NULL, NULL, 0),
	    0);
	assert_int_equal(count_files(dir), 1);
	{
		struct vlm_st st;
		assert_int_equal(vlm_st_load(&st, p), 0);
		assert_int_equal(st.n, 1);
		vlm_st_release(&st);
	}
}

static int
have_numpy(void)
{
	if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0)
		return 1;
	print_message("skipping: /usr/bin/python3 has no numpy\n");
	return 0;
}

/* Run a Python script with one argument; its exit status. */
static int
python(const char *script, const char *arg)
{
	char path[4200], cmd[9000];
	FILE *f;

	snprintf(path, sizeof(path), "%s/script.py", test_tmpdir());
	assert_non_null(f = fopen(path, "w"));
	fputs(script, f);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s'", path, arg);
	return system(cmd);
}

static const char py_write[] =
    "import json, struct, sys, numpy as np\n"
    "a = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.25 - 1\n"
    "b = (np.arange(6, dtype=np.float16) / 8).reshape(2, 3)\n"
    "c = np.arange(-3, 2, dtype=np.int64)\n"
    "d = np.arange(7, dtype=np.uint8) * 3\n"
    "e = (np.array([1.5, -2, 0.125, 3], np.float32).view(np.uint32)\n"
    "     >> 16).astype('<u2')\n"
    "arrs = [('a', 'F32', a), ('c', 'I64', c), ('b', 'F16', b),\n"
    "        ('e', 'BF16', e), ('d', 'U8', d)]\n"
    "hdr, data = {'__metadata__': {'note': 'h\\u00e9llo'}}, b''\n"
    "for name, dt, x in arrs:\n"
    "    raw = x.astype(x.dtype.newbyteorder('<')).tobytes()\n"
    "    hdr[name] = {'dtype': dt, 'shape': list(x.shape),\n"
    "                 'data_offsets': [len(data), len(data) + len(raw)]}\n"
    "    data += raw\n"
    "h = json.dumps(dict(sorted(hdr.items()))).encode()\n"
    "h += b' ' * (-len(h) % 8)\n"
    "open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + data)\n";

/* Python writes by hand, C reads and checks every value. */
static void
test_from_python(void **state)
{
	const char *p = tpath("py.safetensors");
	const struct vlm_tensor *t;
	struct vlm_st st;

	(void)state;
	if (!have_numpy())
		skip();
	assert_int_equal(python(py_write, p), 0);
	assert_int_equal(vlm_st_load(&st, p), 0);
	assert_int_equal(st.n, 5);
	assert_string_equal(st.names[1], "c"); /* data order */
	t = vlm_st_get(&st, "a");
	assert_int_equal(t->dtype, VLM_DTYPE_F32);
	assert_int_equal(t->shape[0] * 10 + t->shape[1], 34);
	for (int i = 0; i < 12; i++)
		assert_true(((float *)t->data)[i] == i * 0.25f - 1);
	t = vlm_st_get(&st, "b");
	assert_int_equal(t->dtype, VLM_DTYPE_F16);
	for (int i = 0; i < 6; i++)
		assert_true(vlm_f16_to_f32(((uint16_t *)t->data)[i]) ==
		    i / 8.0f);
	t = vlm_st_get(&st, "c");
	for (int i = 0; i < 5; i++)
		assert_int_equal(((int64_t *)t->data)[i], i - 3);
	t = vlm_st_get(&st, "d");
	assert_int_equal(t->dtype, VLM_DTYPE_U8);
	for (int i = 0; i < 7; i++)
		assert_int_equal(((uint8_t *)t->data)[i], 3 * i);
	t = vlm_st_get(&st, "e");
	assert_int_equal(t->dtype, VLM_DTYPE_BF16);
	assert_true(vlm_bf16_to_f32(((uint16_t *)t->data)[0]) == 1.5f);
	assert_true(vlm_bf16_to_f32(((uint16_t *)t->data)[3]) == 3.0f);
	assert_string_equal(vlm_st_meta(&st, "note"), "h\xc3\xa9llo");
	vlm_st_release(&st);
}

static const char py_read[] =
    "import json, struct, sys, numpy as np\n"
    "raw = open(sys.argv[1], 'rb').read()\n"
    "n, = struct.unpack('<Q', raw[:8])\n"
    "assert n % 8 == 0 and raw[8:9] == b'{'\n"
    "hdr = json.loads(raw[8:8 + n].decode('utf-8'))\n"
    "data = raw[8 + n:]\n"
    "meta = hdr.pop('__metadata__')\n"
    "assert meta == {'format': 'vlm-test', 'config':\n"
    "    '{\"width\": 64,\\n \"layers\": 2}', 'note': 'h\\u00e9llo'}, meta\n"
    "assert list(hdr) == ['c.ids', 'a.weight', 's', 'empty', 'b.half',\n"
    "    'z.bf', 'd.bytes'], list(hdr)\n"
    "dt = {'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'U8': 'u1',\n"
    "      'BF16': '<u2'}\n"
    "end = 0\n"
    "def get(k):\n"
    "    global end\n"
    "    e = hdr[k]\n"
    "    b, f = e['data_offsets']\n"
    "    assert b == end, (k, b, end)\n"
    "    end = f\n"
    "    return np.frombuffer(data[b:f], dt[e['dtype']]).reshape(e['shape'])\n"
    "assert get('c.ids').tolist() == [-1, 0, 2**40]\n"
    "a = get('a.weight')\n"
    "assert a.dtype == np.float32 and a.shape == (2, 3)\n"
    "want = np.float32([1.5, -2, 0, 3.25, -0.125, 1e30]).reshape(2, 3)\n"
    "assert a.tolist() == want.tolist(), a\n"
    "s = get('s')\n"
    "assert s.shape == () and s == np.float32(2.6592600)\n"
    "assert get('empty').shape == (2, 0, 4)\n"
    "h = get('b.half')\n"
    "assert h.tolist() == [[1, -2], [2.0**-24, 65504]], h\n"
    "z = get('z.bf').astype(np.uint32) << 16\n"
    "assert z.view(np.float32).tolist() == [0.5, -7.0]\n"
    "assert get('d.bytes').tolist() == [0, 1, 127, 128, 255]\n"
    "assert end == len(data)\n";

/* C writes, Python parses by hand and checks every value. */
static void
test_to_python(void **state)
{
	const char *p = tpath("c.safetensors");
	struct vlm_tensor ts[NT];

	(void)state;
	if (!have_numpy())
		skip();
	sample(ts);
	assert_int_equal(vlm_st_save(p, names, ts, NT, mkeys, mvals, 3), 0);
	assert_int_equal(python(py_read, p), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty_and_order),
		cmocka_unit_test(test_misaligned),
		cmocka_unit_test(test_fixture),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_save_errors),
		cmocka_unit_test(test_from_python),
		cmocka_unit_test(test_to_python),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
