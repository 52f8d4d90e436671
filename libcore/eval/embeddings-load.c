/*
 * embeddings-load.c - a whole embeddings file in memory, whichever form
 * it has: a .npys stream (vlm-embed's output on a pipe) or the packed
 * form STEM.npy + STEM.ids.npy + STEM.json (vlm-convert pack, vlm-embed
 * -o).
 * What vlm-eval reads so that one embedding run serves many evaluations.
 *
 * The form is told by the first record: '|u1' JSON metadata starts a
 * stream, a '<f4' (N, dim) array is packed vectors. Pipes are read as
 * streams (they cannot be rewound, and the packed form lives in files);
 * packed vectors on a redirected stdin come without ids.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/formats.h"
#include "eval/eval.h"

#define ID_ALLOC 1024

/* Append the current batch of a stream reader to e. */
static int
append_batch(struct vlm_emb *e, const struct vlm_npys_reader *r,
    int64_t *cap)
{
	int64_t n = e->n + r->k;

	if (n > *cap) {
		int64_t c = *cap ? *cap : ID_ALLOC;
		while (c < n)
			c *= 2;
		float *v = realloc(e->vec, (size_t)c * r->dim * sizeof(*v));
		if (v)
			e->vec = v;
		char **ids = realloc(e->ids, (size_t)c * sizeof(*ids));
		if (ids)
			e->ids = ids;
		if (!v || !ids)
			return vlm_error("'%s': out of memory (%lld rows)",
			    r->name, (long long)n);
		*cap = c;
	}
	memcpy(e->vec + e->n * r->dim, r->vec, (size_t)r->k * r->dim *
	    sizeof(float));
	for (int64_t i = 0; i < r->k; i++) {
		if (!(e->ids[e->n] = strdup(r->ids[i])))
			return vlm_error("'%s': out of memory", r->name);
		e->n++;
	}
	return 0;
}

/* A whole stream from f (positioned at its start). */
static int
load_stream(struct vlm_emb *e, FILE *f, const char *name)
{
	struct vlm_npys_reader r;
	int64_t cap = 0;
	int rc;

	if (vlm_npys_reader_init(&r, f, name) < 0)
		return -1;
	e->dim = r.dim;
	while ((rc = vlm_npys_reader_next(&r)) == 1)
		if (append_batch(e, &r, &cap) < 0) {
			rc = -1;
			break;
		}
	if (rc == 0 && !(e->meta = strdup(r.meta)))
		rc = vlm_error("'%s': out of memory", name);
	vlm_npys_reader_release(&r);
	return rc;
}

/* path with its ".npy" ending (if any) replaced by ext; NULL: OOM. */
static char *
beside_alloc(const char *path, const char *ext)
{
	size_t n = strlen(path);
	char *s;

	if (n >= 4 && strcmp(path + n - 4, ".npy") == 0)
		n -= 4;
	if ((s = malloc(n + strlen(ext) + 1))) {
		memcpy(s, path, n);
		strcpy(s + n, ext);
	}
	return s;
}

/* STEM.ids.npy, if it exists: n strings, row for row. */
static int
load_ids(struct vlm_emb *e, const char *path)
{
	char *name = beside_alloc(path, ".ids.npy");
	struct vlm_npy r;
	FILE *f;
	int rc = -1;

	if (!name)
		return vlm_error("'%s': out of memory", path);
	if (!(f = fopen(name, "rb"))) {
		rc = errno == ENOENT ? 0 : vlm_error("'%s': %s", name,
		    strerror(errno));
		free(name);
		return rc;
	}
	if ((rc = vlm_npy_read(f, name, &r)) != 0)
		rc = rc > 0 ? vlm_error("'%s': empty file", name) : -1;
	else if (!r.is_str || r.t.ndim != 1 || r.t.shape[0] != e->n)
		rc = vlm_error("'%s': not %lld ids (a '<U' array of shape "
		    "(%lld,))", name, (long long)e->n, (long long)e->n);
	else if (!(e->ids = calloc(e->n, sizeof(*e->ids))))
		rc = vlm_error("'%s': out of memory", name);
	for (int64_t i = 0; rc == 0 && i < e->n; i++)
		if (!(e->ids[i] = strdup(r.str[i])))
			rc = vlm_error("'%s': out of memory", name);
	vlm_npy_release(&r);
	fclose(f);
	free(name);
	return rc;
}

/* STEM.json, if it exists, as text. */
static int
load_meta(struct vlm_emb *e, const char *path)
{
	char *name = beside_alloc(path, ".json");
	FILE *f = name ? fopen(name, "rb") : NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	if (!name)
		return vlm_error("'%s': out of memory", path);
	if (f && (len = getdelim(&e->meta, &cap, 0, f)) < 0)
		rc = vlm_error("'%s': cannot read it", name);
	else if (!f && errno != ENOENT)
		rc = vlm_error("'%s': %s", name, strerror(errno));
	if (f)
		fclose(f);
	free(name);
	return rc;
}

/*
 * A regular file: packed vectors (ids and metadata beside it unless it
 * is stdin), or a stream to read from the start.
 */
static int
load_file(struct vlm_emb *e, FILE *f, const char *path, int std)
{
	struct vlm_npy r;
	int rc = vlm_npy_read(f, path, &r);

	if (rc != 0)
		return rc > 0 ? vlm_error("'%s': empty file", path) : -1;
	if (!r.is_str && r.t.dtype == VLM_DTYPE_U8 && r.t.ndim == 1) {
		vlm_npy_release(&r);
		if (fseek(f, 0, SEEK_SET) != 0)
			return vlm_error("'%s': %s", path, strerror(errno));
		return load_stream(e, f, path);
	}
	if (r.is_str || r.t.dtype != VLM_DTYPE_F32 || r.t.ndim != 2 ||
	    r.t.shape[1] < 1)
		rc = vlm_error("'%s': not embeddings (want a .npys stream or "
		    "a '<f4' (rows, dim) array)", path);
	else if (getc(f) != EOF)
		rc = vlm_error("'%s': trailing data after the array", path);
	if (rc < 0) {
		vlm_npy_release(&r);
		return -1;
	}
	e->n = r.t.shape[0];
	e->dim = r.t.shape[1];
	e->vec = r.t.data;
	if (std)
		return 0;
	return load_ids(e, path) < 0 || load_meta(e, path) < 0 ? -1 : 0;
}

/* At least one row, every value finite. */
static int
check(const struct vlm_emb *e, const char *name)
{
	if (e->n < 1)
		return vlm_error("'%s': no embeddings", name);
	for (int64_t i = 0; i < e->n * e->dim; i++)
		if (!isfinite(e->vec[i]))
			return vlm_error("'%s': row %lld holds a non-finite "
			    "value", name, (long long)(i / e->dim));
	return 0;
}

int
vlm_emb_load(struct vlm_emb *e, const char *path)
{
	int std = strcmp(path, "-") == 0;
	const char *name = std ? "<stdin>" : path;
	FILE *f = std ? stdin : fopen(path, "rb");
	struct stat st;
	int rc;

	memset(e, 0, sizeof(*e));
	if (!f)
		return vlm_error("'%s': %s", path, strerror(errno));
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
		rc = load_file(e, f, name, std);
	else
		rc = load_stream(e, f, name);
	if (rc == 0)
		rc = check(e, name);
	if (!std)
		fclose(f);
	if (rc < 0)
		vlm_emb_release(e);
	return rc;
}

void
vlm_emb_release(struct vlm_emb *e)
{
	if (e->ids)
		for (int64_t i = 0; i < e->n; i++)
			free(e->ids[i]);
	free(e->ids);
	free(e->vec);
	free(e->meta);
	memset(e, 0, sizeof(*e));
}

int
vlm_emb_init(struct vlm_emb *e, int64_t n, int64_t dim)
{
	size_t k = (size_t)n * dim;

	memset(e, 0, sizeof(*e));
	if (!(e->vec = calloc(k ? k : 1, sizeof(*e->vec))))
		return vlm_error("out of memory for %lld embeddings of %lld",
		    (long long)n, (long long)dim);
	e->n = n;
	e->dim = dim;
	return 0;
}

float *
vlm_emb_take_vec(struct vlm_emb *e)
{
	float *v = e->vec;

	e->vec = NULL;
	return v;
}
