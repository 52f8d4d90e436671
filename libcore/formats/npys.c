/*
 * npys.c - embedding streams (.npys) and the packed form they pack into.
 *
 * A .npys stream is ordinary NumPy .npy v1.0 records one after another,
 * so np.load(f) called repeatedly on one open file reads it record by
 * record, and a producer can write it to a pipe without knowing how
 * many rows will come:
 *
 *  1. metadata: dtype '|u1', shape (n,): n bytes of UTF-8 JSON, an
 *     object with "format":"vlm-embeddings", "version":1, "dim" (a
 *     positive integer) and what the producer knows, e.g. "model",
 *     "space" ("image" or "text"), "normalized" (true);
 *  2. per batch of k >= 1 rows, two records: ids, dtype '<U{w}' shape
 *     (k,) (file names or line numbers, UTF-8 as UCS-4), then vectors,
 *     dtype '<f4' shape (k, dim);
 *  3. end: dtype '|u1', UTF-8 JSON {"end":true,"rows":N, ...}, N the
 *     total rows; optional extra keys, e.g. "failed":["x.png"] for
 *     inputs that were skipped.
 *
 * A stream that stops without the end record is truncated (the producer
 * died); a reader refuses it, and also refuses an end record whose
 * "rows" differs from the rows it read, vectors whose shape does not
 * match their ids and "dim", and any byte after the end record.
 *
 * Packed form (vlm-convert pack IN.npys OUT.npy, and -o FILE.npy in the
 * tools): for OUT = STEM.npy (STEM = OUT when it lacks ".npy"),
 *
 *	STEM.npy       '<f4' shape (N, dim): the vectors, np.load and
 *	               np.load(mmap_mode='r') read it;
 *	STEM.ids.npy   '<U{w}' shape (N,): the ids, row for row;
 *	STEM.json      the metadata object plus "rows": N and the end
 *	               record's extra keys, indented, newline-terminated.
 *
 * Each is written to NAME.tmp.PID and renamed into place only after
 * the whole stream was read and checked, vectors last; a failure
 * leaves none of them. The vectors' header is written first with
 * shape (0, dim) and rewritten in place with (N, dim) at the end: it
 * is padded, as numpy pads every header, so both have one length.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "formats/formats.h"

#define NPYS_MAX_DIM (1 << 24)

/* Parse text as a JSON object; what names it in messages. */
static json_t *
parse_obj(const char *name, const char *text, size_t len, const char *what)
{
	json_error_t e;
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);

	if (!o)
		vlm_error("'%s': %s is not valid JSON: %s", name, what, e.text);
	else if (!json_is_object(o)) {
		json_decref(o);
		o = NULL;
		vlm_error("'%s': %s is not a JSON object", name, what);
	}
	return o;
}

/* Check what every stream's metadata must say; *dim from it. */
static int
check_meta(const char *name, json_t *m, int64_t *dim)
{
	json_t *v = json_object_get(m, "format");
	json_int_t d;

	if (!json_is_string(v) || strcmp(json_string_value(v),
	    "vlm-embeddings") != 0)
		return vlm_error("'%s': not a vlm embeddings stream (format "
		    "is not \"vlm-embeddings\")", name);
	v = json_object_get(m, "version");
	if (!json_is_integer(v) || json_integer_value(v) != 1)
		return vlm_error("'%s': unsupported embeddings stream "
		    "version (want 1)", name);
	v = json_object_get(m, "dim");
	d = json_is_integer(v) ? json_integer_value(v) : 0;
	if (d < 1 || d > NPYS_MAX_DIM)
		return vlm_error("'%s': metadata lacks a valid \"dim\"", name);
	v = json_object_get(m, "space");
	if (v && (!json_is_string(v) || (strcmp(json_string_value(v),
	    "image") != 0 && strcmp(json_string_value(v), "text") != 0)))
		return vlm_error("'%s': metadata \"space\" is not \"image\" "
		    "or \"text\"", name);
	*dim = d;
	return 0;
}

int
vlm_npy_write_json(FILE *f, const char *name, const json_t *o)
{
	struct vlm_tensor t = { .dtype = VLM_DTYPE_U8, .ndim = 1 };
	char *s = json_dumps(o, JSON_COMPACT);
	int rc;

	if (!s)
		return vlm_error("'%s': out of memory", name);
	t.shape[0] = (int64_t)strlen(s);
	t.data = s;
	rc = vlm_npy_write(f, name, &t);
	free(s);
	return rc;
}

int
vlm_npys_writer_init(struct vlm_npys_writer *w, FILE *f, const char *name,
    const char *meta_json)
{
	json_t *m, *user;
	int rc = -1;

	*w = (struct vlm_npys_writer){ .f = f, .name = name };
	user = parse_obj(name, meta_json, strlen(meta_json), "metadata");
	if (!user)
		return -1;
	m = json_pack("{s:s,s:i}", "format", "vlm-embeddings", "version", 1);
	if (!m || json_object_update(m, user) < 0)
		vlm_error("'%s': out of memory", name);
	else if (check_meta(name, m, &w->dim) == 0)
		rc = vlm_npy_write_json(f, name, m);
	json_decref(m);
	json_decref(user);
	return rc;
}

int
vlm_npys_writer_batch(struct vlm_npys_writer *w, const char *const *ids,
    const float *vec, int64_t k)
{
	struct vlm_tensor t = { .dtype = VLM_DTYPE_F32, .ndim = 2,
	    .shape = { k, w->dim }, .data = (void *)vec };

	assert(k >= 0);
	if (k == 0)
		return 0;
	if (vlm_npy_write_str(w->f, w->name, ids, k) < 0 ||
	    vlm_npy_write(w->f, w->name, &t) < 0)
		return -1;
	w->rows += k;
	return 0;
}

int
vlm_npys_writer_finish(struct vlm_npys_writer *w, const char *extra_json)
{
	json_t *e, *x = NULL;
	int rc = -1;

	e = json_pack("{s:b,s:I}", "end", 1, "rows", (json_int_t)w->rows);
	if (extra_json && !(x = parse_obj(w->name, extra_json,
	    strlen(extra_json), "end record extras")))
		goto out;
	if (x && (json_object_get(x, "end") || json_object_get(x, "rows")))
		vlm_error("'%s': end record extras may not set \"end\" or "
		    "\"rows\"", w->name);
	else if (!e || (x && json_object_update(e, x) < 0))
		vlm_error("'%s': out of memory", w->name);
	else if (vlm_npy_write_json(w->f, w->name, e) == 0)
		rc = 0;
	if (rc == 0 && (fflush(w->f) != 0 || ferror(w->f)))
		rc = vlm_error("'%s': %s", w->name, strerror(errno));
out:
	json_decref(e);
	json_decref(x);
	return rc;
}

/* A '|u1' 1-d record: JSON text. */
static int
is_json_record(const struct vlm_npy *rec)
{
	return !rec->is_str && rec->t.dtype == VLM_DTYPE_U8 &&
	    rec->t.ndim == 1;
}

int
vlm_npys_reader_init(struct vlm_npys_reader *r, FILE *f, const char *name)
{
	struct vlm_npy rec;
	json_t *m = NULL;
	size_t len;
	int rc;

	memset(r, 0, sizeof(*r));
	r->f = f;
	r->name = name;
	if ((rc = vlm_npy_read(f, name, &rec)) != 0)
		return rc > 0 ? vlm_error("'%s': empty stream", name) : -1;
	len = (size_t)rec.t.shape[0];
	if (!is_json_record(&rec))
		rc = vlm_error("'%s': not a vlm embeddings stream (the first "
		    "record is not JSON metadata)", name);
	else if (!(m = parse_obj(name, rec.t.data, len, "metadata")))
		rc = -1;
	else if ((rc = check_meta(name, m, &r->dim)) == 0 &&
	    !(r->meta = strndup(rec.t.data, len)))
		rc = vlm_error("'%s': out of memory", name);
	json_decref(m);
	vlm_npy_release(&rec);
	return rc;
}

/* The end record in rec: check it and that nothing follows; 0 or -1. */
static int
read_end(struct vlm_npys_reader *r, struct vlm_npy *rec)
{
	size_t len = (size_t)rec->t.shape[0];
	json_t *e = parse_obj(r->name, rec->t.data, len, "a JSON record");
	json_t *v = json_object_get(e, "end"), *n = json_object_get(e, "rows");
	int rc = -1;

	if (!e)
		return -1;
	if (!json_is_true(v))
		vlm_error("'%s': JSON record after row %lld is not an end "
		    "record", r->name, (long long)r->rows);
	else if (!json_is_integer(n))
		vlm_error("'%s': end record lacks \"rows\"", r->name);
	else if (json_integer_value(n) != r->rows)
		vlm_error("'%s': end record says %lld rows, the stream holds "
		    "%lld", r->name, (long long)json_integer_value(n),
		    (long long)r->rows);
	else if (getc(r->f) != EOF)
		vlm_error("'%s': data after the end record", r->name);
	else if (ferror(r->f))
		vlm_error("'%s': %s", r->name, strerror(errno));
	else if (!(r->end = strndup(rec->t.data, len)))
		vlm_error("'%s': out of memory", r->name);
	else
		rc = 0;
	json_decref(e);
	return rc;
}

/* The vectors record after k ids: '<f4' (k, dim). */
static int
read_vectors(struct vlm_npys_reader *r, int64_t k)
{
	struct vlm_npy *v = &r->rec[1];
	int rc = vlm_npy_read(r->f, r->name, v);

	if (rc > 0)
		return vlm_error("'%s': truncated stream (ids without "
		    "vectors after row %lld)", r->name, (long long)r->rows);
	if (rc < 0)
		return -1;
	if (v->is_str || v->t.dtype != VLM_DTYPE_F32 || v->t.ndim != 2 ||
	    v->t.shape[0] != k || v->t.shape[1] != r->dim)
		return vlm_error("'%s': vectors after row %lld are not '<f4' "
		    "(%lld, %lld)", r->name, (long long)r->rows,
		    (long long)k, (long long)r->dim);
	return 0;
}

int
vlm_npys_reader_next(struct vlm_npys_reader *r)
{
	struct vlm_npy *ids = &r->rec[0];
	int rc;

	vlm_npy_release(&r->rec[0]);
	vlm_npy_release(&r->rec[1]);
	r->k = 0;
	r->ids = NULL;
	r->vec = NULL;
	if (r->end)
		return 0;
	if ((rc = vlm_npy_read(r->f, r->name, ids)) > 0)
		return vlm_error("'%s': truncated stream (no end record after "
		    "%lld rows)", r->name, (long long)r->rows);
	if (rc < 0)
		return -1;
	if (is_json_record(ids))
		return read_end(r, ids);
	if (!ids->is_str || ids->t.ndim != 1)
		return vlm_error("'%s': unexpected record after row %lld "
		    "(want ids or the end record)", r->name,
		    (long long)r->rows);
	if (read_vectors(r, ids->t.shape[0]) < 0)
		return -1;
	r->k = ids->t.shape[0];
	r->ids = ids->str;
	r->vec = r->rec[1].t.data;
	r->rows += r->k;
	return 1;
}

void
vlm_npys_reader_release(struct vlm_npys_reader *r)
{
	vlm_npy_release(&r->rec[0]);
	vlm_npy_release(&r->rec[1]);
	free(r->meta);
	free(r->end);
	memset(r, 0, sizeof(*r));
}

/* ---- the packed form ---------------------------------------------- */

enum { P_IDS, P_JSON, P_DATA, P_N }; /* commit order: vectors last */

struct pack {
	char *path[P_N];
	struct vlm_atomic a[P_N];
	int open[P_N];
	char *idbuf;     /* the ids, each NUL-terminated, one after another */
	size_t idlen, idcap;
	int64_t rows;    /* rows packed */
};

/* STEM.ids.npy, STEM.json and OUT itself; refuse non-regular files. */
static int
pack_names(struct pack *p, const char *out)
{
	size_t n = strlen(out);
	struct stat st;

	if (n > 4 && strcmp(out + n - 4, ".npy") == 0)
		n -= 4;
	if (asprintf(&p->path[P_IDS], "%.*s.ids.npy", (int)n, out) < 0 ||
	    asprintf(&p->path[P_JSON], "%.*s.json", (int)n, out) < 0 ||
	    !(p->path[P_DATA] = strdup(out)))
		return vlm_error("'%s': out of memory", out);
	for (int i = 0; i < P_N; i++)
		if (stat(p->path[i], &st) == 0 && !S_ISREG(st.st_mode))
			return vlm_error("'%s': not a regular file",
			    p->path[i]);
	for (int i = 0; i < P_N; i++) {
		if (vlm_atomic_open(&p->a[i], p->path[i]) < 0)
			return -1;
		p->open[i] = 1;
	}
	return 0;
}

/* Keep the batch's ids for the ids file, written at the end. */
static int
pack_keep_ids(struct pack *p, char *const *ids, int64_t k)
{
	for (int64_t i = 0; i < k; i++) {
		size_t n = strlen(ids[i]) + 1;
		if (p->idlen + n > p->idcap) {
			size_t cap = 2 * p->idcap + n + 4096;
			char *nb = realloc(p->idbuf, cap);
			if (!nb)
				return vlm_error("'%s': out of memory",
				    p->path[P_IDS]);
			p->idbuf = nb;
			p->idcap = cap;
		}
		memcpy(p->idbuf + p->idlen, ids[i], n);
		p->idlen += n;
	}
	return 0;
}

/* Stream the vectors into the data file, then fix its header's shape. */
static int
pack_rows(struct vlm_npys_reader *r, struct pack *p)
{
	FILE *f = p->a[P_DATA].f;
	const char *name = p->path[P_DATA];
	int64_t shape[2] = { 0, r->dim };
	off_t hlen;
	int rc;

	if (vlm_npy_write_header(f, name, VLM_DTYPE_F32, 2, shape) < 0)
		return -1;
	hlen = ftello(f);
	while ((rc = vlm_npys_reader_next(r)) > 0) {
		size_t n = (size_t)(r->k * r->dim);
		if (fwrite(r->vec, sizeof(float), n, f) != n)
			return vlm_error("'%s': %s", name, strerror(errno));
		if (pack_keep_ids(p, r->ids, r->k) < 0)
			return -1;
		p->rows += r->k;
	}
	if (rc < 0)
		return -1;
	shape[0] = p->rows;
	if (fseeko(f, 0, SEEK_SET) != 0)
		return vlm_error("'%s': %s", name, strerror(errno));
	if (vlm_npy_write_header(f, name, VLM_DTYPE_F32, 2, shape) < 0)
		return -1;
	assert(ftello(f) == hlen);
	return 0;
}

/* The ids file, from the kept ids. */
static int
pack_ids(struct pack *p)
{
	const char **ids = malloc(((size_t)p->rows + 1) * sizeof(*ids));
	const char *s = p->idbuf;
	int rc;

	if (!ids)
		return vlm_error("'%s': out of memory", p->path[P_IDS]);
	for (int64_t i = 0; i < p->rows; i++, s += strlen(s) + 1)
		ids[i] = s;
	rc = vlm_npy_write_str(p->a[P_IDS].f, p->path[P_IDS], ids, p->rows);
	free(ids);
	return rc;
}

/* The JSON file: metadata, "rows", the end record's extra keys. */
static int
pack_json(struct vlm_npys_reader *r, struct pack *p)
{
	json_t *m = json_loads(r->meta, 0, NULL);
	json_t *e = json_loads(r->end, 0, NULL);
	FILE *f = p->a[P_JSON].f;
	int rc = -1;

	if (m && e && json_object_del(e, "end") == 0 &&
	    json_object_update(m, e) == 0 && json_object_set_new(m, "rows",
	    json_integer(p->rows)) == 0 &&
	    json_dumpf(m, f, JSON_INDENT(2)) == 0 && fputc('\n', f) != EOF)
		rc = 0;
	else
		vlm_error("'%s': %s", p->path[P_JSON], m && e ?
		    strerror(errno) : "out of memory");
	json_decref(m);
	json_decref(e);
	return rc;
}

/* Flush all three first, so a full disk fails before any rename. */
static int
pack_commit(struct pack *p)
{
	int i, j;

	for (i = 0; i < P_N; i++)
		if (fflush(p->a[i].f) != 0 || ferror(p->a[i].f))
			return vlm_error("'%s': %s", p->path[i],
			    strerror(errno ? errno : EIO));
	for (i = 0; i < P_N; i++) {
		p->open[i] = 0;
		if (vlm_atomic_commit(&p->a[i]) < 0)
			break;
	}
	if (i == P_N)
		return 0;
	for (j = 0; j < i; j++)
		unlink(p->path[j]);
	return -1;
}

int
vlm_npys_pack(struct vlm_npys_reader *r, const char *out)
{
	struct pack p = { 0 };
	int rc = -1;

	if (strcmp(out, "-") == 0)
		return vlm_error("'-': packed output needs a file name");
	if (pack_names(&p, out) == 0 && pack_rows(r, &p) == 0 &&
	    pack_ids(&p) == 0 && pack_json(r, &p) == 0)
		rc = pack_commit(&p);
	for (int i = 0; i < P_N; i++) {
		if (p.open[i])
			vlm_atomic_abort(&p.a[i]);
		free(p.path[i]);
	}
	free(p.idbuf);
	return rc;
}
