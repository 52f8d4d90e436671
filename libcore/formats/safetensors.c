/*
 * safetensors.c - read and write safetensors files, the weight format
 * that Python's safetensors, HF transformers and OpenCLIP share.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the raw little-endian data.
 * The reader maps the file and trusts nothing in it: it enforces what the
 * reference implementation enforces plus duplicate keys and nesting depth
 * (../shared/docs/FORMATS.md), and every error names the file.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "formats/formats.h"

#define MAX_HEADER 100000000	/* bytes, as the reference reader */
#define MAX_DEPTH 64		/* JSON nesting; a valid header needs 3 */
#define META_KEY "__metadata__"

/* One tensor while the header is being checked. */
struct entry {
	const char *name;
	uint64_t begin, end;
	int order;		/* position in the header */
	struct vlm_tensor t;
};

/* s made printable for a one-line message (at most 60 bytes of it). */
static const char *
shown(const char *s, char buf[72])
{
	size_t i;

	for (i = 0; s[i] && i < 60; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' :
		    s[i];
	if (s[i])
		buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
	buf[i] = '\0';
	return buf;
}

static uint64_t
get_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The file's bytes: mapped, or read from a pipe; at least 8 of them. */
static int
open_bytes(struct vlm_st *st, const char *path)
{
	if (vlm_map_file(&st->file, path, st->path) != 0)
		return -1;
	if (st->file.size < 8)
		return vlm_error("'%s': too short for a safetensors file "
		    "(%zu bytes)", st->path, st->file.size);
	return 0;
}

/* Refuse nesting deeper than MAX_DEPTH before the parser recurses. */
static int
check_depth(const struct vlm_st *st, const unsigned char *s, size_t n)
{
	int depth = 0, instr = 0;

	for (size_t i = 0; i < n; i++) {
		if (instr) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				instr = 0;
		} else if (s[i] == '"') {
			instr = 1;
		} else if (s[i] == '[' || s[i] == '{') {
			if (++depth > MAX_DEPTH)
				return vlm_error("'%s': header JSON nested "
				    "deeper than %d levels", st->path,
				    MAX_DEPTH);
		} else if (s[i] == ']' || s[i] == '}') {
			depth--;
		}
	}
	return 0;
}

/* Parse and check the header bytes into st->json. */
static int
parse_header(struct vlm_st *st, const unsigned char *hdr, size_t n)
{
	json_error_t jerr;
	char buf[72];

	if (n == 0 || hdr[0] != '{')
		return vlm_error("'%s': header does not start with '{'",
		    st->path);
	if (check_depth(st, hdr, n) != 0)
		return -1;
	st->json = json_loadb((const char *)hdr, n, JSON_REJECT_DUPLICATES,
	    &jerr);
	if (!st->json)
		return vlm_error("'%s': bad header JSON at byte %d: %s",
		    st->path, jerr.position, shown(jerr.text, buf));
	if (!json_is_object((json_t *)st->json))
		return vlm_error("'%s': header is not a JSON object",
		    st->path);
	return 0;
}

/* A JSON integer in [0, INT64_MAX], or -1 with a message. */
static int
get_count(const struct vlm_st *st, const char *name, const char *what,
    json_t *v, int64_t *out)
{
	char buf[72];

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return vlm_error("'%s': tensor '%s': %s is not a non-negative "
		    "integer", st->path, shown(name, buf), what);
	*out = json_integer_value(v);
	return 0;
}

/* Check shape and dtype; nbytes = prod(shape) * size without overflow. */
static int
parse_shape(const struct vlm_st *st, struct entry *e, json_t *shape,
    uint64_t *nbytes)
{
	uint64_t n = 1, guard = 1;
	char buf[72];
	size_t i;
	json_t *d;

	if (!json_is_array(shape))
		return vlm_error("'%s': tensor '%s': shape is not an array",
		    st->path, shown(e->name, buf));
	if (json_array_size(shape) > VLM_MAX_DIMS)
		return vlm_error("'%s': tensor '%s': %zu dimensions, more "
		    "than %d", st->path, shown(e->name, buf),
		    json_array_size(shape), VLM_MAX_DIMS);
	e->t.ndim = (int)json_array_size(shape);
	json_array_foreach(shape, i, d) {
		if (get_count(st, e->name, "a shape entry", d,
		    &e->t.shape[i]) != 0)
			return -1;
		/* guard: the product of the non-zero dims must fit too */
		uint64_t s = (uint64_t)e->t.shape[i];
		if (__builtin_mul_overflow(n, s, &n) || (s &&
		    __builtin_mul_overflow(guard, s, &guard)))
			return vlm_error("'%s': tensor '%s': shape overflows",
			    st->path, shown(e->name, buf));
	}
	if (guard > INT64_MAX || __builtin_mul_overflow(n,
	    (uint64_t)vlm_dtype_size(e->t.dtype), nbytes))
		return vlm_error("'%s': tensor '%s': shape overflows",
		    st->path, shown(e->name, buf));
	return 0;
}

/* Check one tensor entry of the header. */
static int
parse_entry(const struct vlm_st *st, struct entry *e, json_t *v)
{
	json_t *dt = json_object_get(v, "dtype");
	json_t *off = json_object_get(v, "data_offsets");
	char buf[72], buf2[72];
	int64_t b, end;
	uint64_t nbytes = 0;

	if (!json_is_object(v))
		return vlm_error("'%s': tensor '%s' is not a JSON object",
		    st->path, shown(e->name, buf));
	if (!json_is_string(dt))
		return vlm_error("'%s': tensor '%s' has no dtype string",
		    st->path, shown(e->name, buf));
	if (vlm_dtype_parse(json_string_value(dt), &e->t.dtype) != 0)
		return vlm_error("'%s': tensor '%s' has unknown dtype '%s' "
		    "(known: F32 F16 BF16 I32 I64 U8)", st->path,
		    shown(e->name, buf), shown(json_string_value(dt), buf2));
	if (parse_shape(st, e, json_object_get(v, "shape"), &nbytes) != 0)
		return -1;
	if (!json_is_array(off) || json_array_size(off) != 2)
		return vlm_error("'%s': tensor '%s': data_offsets is not a "
		    "pair", st->path, shown(e->name, buf));
	if (get_count(st, e->name, "a data offset", json_array_get(off, 0),
	    &b) != 0 || get_count(st, e->name, "a data offset",
	    json_array_get(off, 1), &end) != 0)
		return -1;
	if (end < b || (uint64_t)(end - b) != nbytes)
		return vlm_error("'%s': tensor '%s': data_offsets [%lld, %lld] "
		    "do not hold %llu bytes of %s", st->path,
		    shown(e->name, buf), (long long)b, (long long)end,
		    (unsigned long long)nbytes, vlm_dtype_name(e->t.dtype));
	e->begin = (uint64_t)b;
	e->end = (uint64_t)end;
	return 0;
}

/* Collect __metadata__: an object of strings. */
static int
parse_meta(struct vlm_st *st, json_t *m)
{
	const char *k;
	char buf[72];
	json_t *v;

	if (!json_is_object(m))
		return vlm_error("'%s': __metadata__ is not a JSON object",
		    st->path);
	st->meta_keys = calloc(json_object_size(m) + 1, sizeof(char *));
	st->meta_vals = calloc(json_object_size(m) + 1, sizeof(char *));
	if (!st->meta_keys || !st->meta_vals)
		return vlm_error("'%s': out of memory", st->path);
	json_object_foreach(m, k, v) {
		if (!json_is_string(v))
			return vlm_error("'%s': metadata '%s' is not a string",
			    st->path, shown(k, buf));
		st->meta_keys[st->nmeta] = k;
		st->meta_vals[st->nmeta++] = json_string_value(v);
	}
	return 0;
}

static int
cmp_offsets(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->order - y->order;
}

/* In offset order the tensors must tile [0, datasize) exactly. */
static int
check_layout(const struct vlm_st *st, struct entry *es, int n,
    uint64_t datasize)
{
	uint64_t at = 0;
	char buf[72];

	qsort(es, (size_t)n, sizeof(*es), cmp_offsets);
	for (int i = 0; i < n; i++) {
		if (es[i].end > datasize)
			return vlm_error("'%s': truncated: tensor '%s' ends at "
			    "byte %llu of a %llu-byte data section", st->path,
			    shown(es[i].name, buf),
			    (unsigned long long)es[i].end,
			    (unsigned long long)datasize);
		if (es[i].begin != at)
			return vlm_error("'%s': tensor '%s' starts at %llu: "
			    "%s the previous tensor's end %llu", st->path,
			    shown(es[i].name, buf),
			    (unsigned long long)es[i].begin,
			    es[i].begin < at ? "overlaps" : "gap after",
			    (unsigned long long)at);
		at = es[i].end;
	}
	if (at != datasize)
		return vlm_error("'%s': %llu trailing bytes after the last "
		    "tensor", st->path, (unsigned long long)(datasize - at));
	return 0;
}

/* Point tensors at their data: into the map, or one aligned copy. */
static int
place_data(struct vlm_st *st, struct entry *es, unsigned char *data,
    size_t datasize)
{
	int aligned = 1;

	for (int i = 0; i < st->n; i++)
		if ((uintptr_t)(data + es[i].begin) %
		    vlm_dtype_size(es[i].t.dtype))
			aligned = 0;
	if (!aligned) {
		st->copy = aligned_alloc(64, (datasize + 63) / 64 * 64);
		if (!st->copy)
			return vlm_error("'%s': out of memory", st->path);
		memcpy(st->copy, data, datasize);
		data = st->copy;
	}
	for (int i = 0; i < st->n; i++) {
		st->names[i] = es[i].name;
		st->tensors[i] = es[i].t;
		st->tensors[i].data = data + es[i].begin;
	}
	return 0;
}

static int
cmp_names(const void *a, const void *b, void *names)
{
	return strcmp(((const char **)names)[*(const int *)a],
	    ((const char **)names)[*(const int *)b]);
}

/* Check every entry of the parsed header and fill st. */
static int
load_entries(struct vlm_st *st, struct entry *es, unsigned char *data,
    size_t datasize)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)st->json, k, v) {
		if (strcmp(k, META_KEY) == 0) {
			if (parse_meta(st, v) != 0)
				return -1;
			continue;
		}
		es[st->n].name = k;
		es[st->n].order = st->n;
		if (parse_entry(st, &es[st->n++], v) != 0)
			return -1;
	}
	if (check_layout(st, es, st->n, datasize) != 0 ||
	    place_data(st, es, data, datasize) != 0)
		return -1;
	for (int i = 0; i < st->n; i++)
		st->byname[i] = i;
	qsort_r(st->byname, (size_t)st->n, sizeof(int), cmp_names,
	    st->names);
	return 0;
}

int
vlm_st_load(struct vlm_st *st, const char *path)
{
	struct entry *es = NULL;
	uint64_t hlen;
	size_t cap;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (vlm_refuse_pickle(path) != 0)
		return -1;
	if (!(st->path = strdup(strcmp(path, "-") ? path : "<stdin>")))
		return vlm_error("'%s': out of memory", path);
	if (open_bytes(st, path) != 0)
		goto out;
	hlen = get_le64(st->file.base);
	if (hlen > MAX_HEADER) {
		vlm_error("'%s': header length %llu exceeds the %d-byte limit",
		    st->path, (unsigned long long)hlen, MAX_HEADER);
		goto out;
	}
	if (hlen > st->file.size - 8) {
		vlm_error("'%s': header length %llu runs past the end of the "
		    "file (%zu bytes)", st->path, (unsigned long long)hlen,
		    st->file.size);
		goto out;
	}
	if (parse_header(st, st->file.base + 8, hlen) != 0)
		goto out;
	cap = json_object_size((json_t *)st->json) + 1;
	es = calloc(cap, sizeof(*es));
	st->names = calloc(cap, sizeof(*st->names));
	st->tensors = calloc(cap, sizeof(*st->tensors));
	st->byname = calloc(cap, sizeof(*st->byname));
	if (!es || !st->names || !st->tensors || !st->byname)
		vlm_error("'%s': out of memory", st->path);
	else
		rc = load_entries(st, es, st->file.base + 8 + hlen,
		    st->file.size - 8 - hlen);
out:
	free(es);
	if (rc != 0)
		vlm_st_release(st);
	return rc;
}

void
vlm_st_keep_file(struct vlm_st *st, struct vlm_map *out)
{
	*out = st->file;
	memset(&st->file, 0, sizeof(st->file));
}

void
vlm_st_release(struct vlm_st *st)
{
	vlm_map_release(&st->file);
	free(st->copy);
	if (st->json)
		json_decref((json_t *)st->json);
	free(st->names);
	free(st->tensors);
	free(st->byname);
	free(st->meta_keys);
	free(st->meta_vals);
	free(st->path);
	memset(st, 0, sizeof(*st));
}

const struct vlm_tensor *
vlm_st_get(const struct vlm_st *st, const char *name)
{
	int lo = 0, hi = st->n;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(name, st->names[st->byname[mid]]);
		if (c == 0)
			return &st->tensors[st->byname[mid]];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *
vlm_st_meta(const struct vlm_st *st, const char *key)
{
	for (int i = 0; i < st->nmeta; i++)
		if (strcmp(st->meta_keys[i], key) == 0)
			return st->meta_vals[i];
	return NULL;
}

int64_t
vlm_st_numel(const struct vlm_st *st)
{
	int64_t n = 0;

	for (int i = 0; i < st->n; i++)
		n += vlm_tensor_numel(&st->tensors[i]);
	return n;
}

/*
 * The layout: the given order, stably sorted by decreasing dtype size as
 * the reference writer does, so every tensor is aligned in the file.
 */
static int *
layout_alloc(const struct vlm_tensor *ts, int n)
{
	int *ord = malloc(((size_t)n + 1) * sizeof(int)), k = 0;

	for (int size = 8; ord && size > 0; size /= 2)
		for (int i = 0; i < n; i++)
			if (vlm_dtype_size(ts[i].dtype) == (size_t)size)
				ord[k++] = i;
	assert(!ord || k == n);
	return ord;
}

/* Add the tensors to the header object root in layout order. */
static json_t *
header_json(const char *path, const char *const *names,
    const struct vlm_tensor *ts, const int *ord, int n, json_t *root)
{
	uint64_t at = 0;
	char buf[72];

	for (int k = 0; k < n; k++) {
		int i = ord[k];
		json_t *shape = json_array(), *e;
		size_t nb = vlm_tensor_nbytes(&ts[i]);

		assert(names[i] && (ts[i].data || nb == 0));
		if (strcmp(names[i], META_KEY) == 0 ||
		    json_object_get(root, names[i])) {
			vlm_error("'%s': tensor name '%s' is %s", path,
			    shown(names[i], buf), json_object_get(root,
			    names[i]) ? "repeated" : "reserved");
			json_decref(shape);
			return NULL;
		}
		for (int d = 0; shape && d < ts[i].ndim; d++)
			json_array_append_new(shape,
			    json_integer(ts[i].shape[d]));
		e = json_pack("{s:s, s:o, s:[I, I]}", "dtype",
		    vlm_dtype_name(ts[i].dtype), "shape", shape,
		    "data_offsets", (json_int_t)at, (json_int_t)(at + nb));
		if (!e || json_object_set_new(root, names[i], e) != 0) {
			vlm_error("'%s': tensor name '%s' is not valid UTF-8",
			    path, shown(names[i], buf));
			return NULL;
		}
		at += nb;
	}
	return root;
}

/* The __metadata__ object; NULL on error. */
static json_t *
meta_json(const char *path, const char *const *keys,
    const char *const *vals, int nmeta)
{
	json_t *m = json_object();
	char buf[72];

	for (int i = 0; m && i < nmeta; i++) {
		if (json_object_get(m, keys[i])) {
			vlm_error("'%s': metadata key '%s' is repeated", path,
			    shown(keys[i], buf));
		} else if (json_object_set_new(m, keys[i],
		    json_string(vals[i])) == 0) {
			continue;
		} else {
			vlm_error("'%s': metadata '%s' is not valid UTF-8",
			    path, shown(keys[i], buf));
		}
		json_decref(m);
		return NULL;
	}
	if (!m)
		vlm_error("'%s': out of memory", path);
	return m;
}

/* The header text, space-padded so that the data section starts at a
 * multiple of VLM_ST_ALIGN bytes (so also a multiple of 8, as the
 * reference writer pads); caller frees. */
static char *
header_text_alloc(const char *path, const char *const *names,
    const struct vlm_tensor *ts, const int *ord, int n,
    const char *const *keys, const char *const *vals, int nmeta, size_t *len)
{
	json_t *root = json_object(), *m;
	char *text = NULL, *p;

	if (!root) {
		vlm_error("'%s': out of memory", path);
		return NULL;
	}
	if (nmeta > 0 && (!(m = meta_json(path, keys, vals, nmeta)) ||
	    json_object_set_new(root, META_KEY, m) != 0))
		goto out;
	if (!header_json(path, names, ts, ord, n, root))
		goto out;
	if (!(text = json_dumps(root, JSON_COMPACT))) {
		vlm_error("'%s': out of memory", path);
		goto out;
	}
	*len = strlen(text);
	if (!(p = realloc(text, *len + VLM_ST_ALIGN))) {
		vlm_error("'%s': out of memory", path);
		free(text);
		text = NULL;
		goto out;
	}
	text = p;
	while ((8 + *len) % VLM_ST_ALIGN)
		text[(*len)++] = ' ';
	if (*len > MAX_HEADER) {
		vlm_error("'%s': header of %zu bytes exceeds the %d-byte "
		    "limit", path, *len, MAX_HEADER);
		free(text);
		text = NULL;
	}
out:
	json_decref(root);
	return text;
}

int
vlm_st_save(const char *path, const char *const *names,
    const struct vlm_tensor *ts, int n, const char *const *meta_keys,
    const char *const *meta_vals, int nmeta)
{
	struct vlm_atomic a;
	unsigned char le[8];
	char *text = NULL;
	int *ord, ok;
	size_t len;

	assert(n >= 0 && nmeta >= 0);
	if (!(ord = layout_alloc(ts, n)))
		return vlm_error("'%s': out of memory", path);
	text = header_text_alloc(path, names, ts, ord, n, meta_keys,
	    meta_vals, nmeta, &len);
	if (!text || vlm_atomic_open(&a, path) != 0) {
		free(text);
		free(ord);
		return -1;
	}
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)((uint64_t)len >> (8 * i));
	ok = fwrite(le, 1, 8, a.f) == 8 && fwrite(text, 1, len, a.f) == len;
	for (int k = 0; ok && k < n; k++) {
		size_t nb = vlm_tensor_nbytes(&ts[ord[k]]);
		ok = nb == 0 || fwrite(ts[ord[k]].data, 1, nb, a.f) == nb;
	}
	free(text);
	free(ord);
	if (!ok) {
		int e = errno;
		vlm_atomic_abort(&a);
		return vlm_error("'%s': %s", path, strerror(e ? e : EIO));
	}
	return vlm_atomic_commit(&a);
}
