/*
 * eval-sets.c - labelled image sets for vlm-eval: embeddings (from the
 * model or a file) with class labels (from the ImageFolder or a labels
 * file), and the pieces: matching embedding ids to image paths, label
 * files, class-name files.
 */
#include <err.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "base/base.h"
#include "formats/formats.h"

#define MAX_CLASSES (1 << 24)

/* s without leading "./" (and the slashes after it). */
static const char *
skip_dot(const char *s)
{
	while (s[0] == '.' && s[1] == '/')
		for (s += 2; *s == '/'; s++)
			;
	return s;
}

static const char *
base(const char *s)
{
	const char *b = strrchr(s, '/');

	return b ? b + 1 : s;
}

/* Equal, or the longer ends with "/" and the shorter. */
static int
names(const char *a, const char *b)
{
	size_t la, lb;

	a = skip_dot(a), b = skip_dot(b);
	la = strlen(a), lb = strlen(b);
	if (la < lb) {
		const char *t = a;
		size_t lt = la;
		a = b, la = lb, b = t, lb = lt;
	}
	return strcmp(a + la - lb, b) == 0 && (la == lb || a[la - lb - 1] ==
	    '/');
}

struct key {
	const char *base;
	int64_t i;
};

static int
key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;
	int c = strcmp(a->base, b->base);

	return c ? c : (a->i > b->i) - (a->i < b->i);
}

/* The path that id names, by base name among the sorted keys; -2 if two. */
static int64_t
lookup(const struct key *k, int64_t n, char *const *paths, const char *id)
{
	const char *b = base(id);
	int64_t lo = 0, hi = n, hit = -1;

	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (strcmp(k[mid].base, b) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && strcmp(k[lo].base, b) == 0; lo++)
		if (names(id, paths[k[lo].i]))
			hit = hit < 0 ? k[lo].i : -2;
	return hit;
}

int
eval_match_ids(const struct vlm_emb *e, const char *name, char *const *paths,
    int64_t n, int64_t *row)
{
	struct key *k;
	int rc = 0;

	if (!e->ids) {
		warnx("'%s': no ids to match to images (a packed file needs "
		    "its .ids.npy beside it)", name);
		return -1;
	}
	if (!(k = malloc(n * sizeof(*k))))
		errx(1, "out of memory");
	for (int64_t i = 0; i < n; i++) {
		k[i] = (struct key){ base(paths[i]), i };
		row[i] = -1;
	}
	qsort(k, n, sizeof(*k), key_cmp);
	for (int64_t r = 0; r < e->n && rc == 0; r++) {
		int64_t p = lookup(k, n, paths, e->ids[r]);
		if (p == -2) {
			warnx("'%s': id '%s' names more than one image", name,
			    e->ids[r]);
			rc = -1;
		} else if (p >= 0 && row[p] >= 0) {
			warnx("'%s': ids '%s' and '%s' name one image '%s'",
			    name, e->ids[row[p]], e->ids[r], paths[p]);
			rc = -1;
		} else if (p >= 0) {
			row[p] = r;
		}
	}
	free(k);
	return rc;
}

/* Integer labels from a 1-D .npy; -1 after a warning. */
static int
labels_npy(const char *path, int64_t n, int *y)
{
	struct vlm_tensor t;
	int rc = 0;

	if (vlm_npy_load(path, &t) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	if ((t.dtype != VLM_DTYPE_I32 && t.dtype != VLM_DTYPE_I64) ||
	    t.ndim != 1 || t.shape[0] != n) {
		warnx("'%s': want %lld integer labels (int32 or int64, shape "
		    "(%lld,))", path, (long long)n, (long long)n);
		rc = -1;
	}
	for (int64_t i = 0; rc == 0 && i < n; i++) {
		int64_t v = t.dtype == VLM_DTYPE_I32 ? ((int32_t *)t.data)[i] :
		    ((int64_t *)t.data)[i];
		y[i] = v < 0 || v > MAX_CLASSES ? -1 : (int)v;
	}
	free(t.data);
	return rc;
}

/* Integer labels, one a line; -1 after a warning. */
static int
labels_text(const char *path, FILE *f, int64_t n, int *y)
{
	char *line = NULL, *end;
	size_t cap = 0;
	int64_t k = 0;
	int rc = 0;

	while (rc == 0 && getline(&line, &cap, f) != -1) {
		long v = strtol(line, &end, 10);
		end += strspn(end, " \t\r\n");
		if (k < n && end != line && !*end)
			y[k] = v < 0 || v > MAX_CLASSES ? -1 : (int)v;
		else if (k < n)
			warnx("'%s':%lld: not an integer label", path,
			    (long long)k + 1), rc = -1;
		k++;
	}
	if (rc == 0 && ferror(f))
		warn("'%s'", path), rc = -1;
	else if (rc == 0 && k != n)
		warnx("'%s': %lld labels for %lld embeddings", path,
		    (long long)k, (long long)n), rc = -1;
	free(line);
	return rc;
}

int
eval_labels_load(const char *path, int64_t n, int nclasses, int **labels)
{
	FILE *f = fopen(path, "rb");
	char magic[6] = { 0 };
	int *y = malloc(n * sizeof(*y)), rc;

	if (!y)
		errx(1, "out of memory");
	if (!f) {
		warn("'%s'", path);
		free(y);
		return -1;
	}
	if (fread(magic, 1, 6, f) == 6 && memcmp(magic, "\x93NUMPY", 6) == 0)
		rc = labels_npy(path, n, y);
	else
		rc = fseek(f, 0, SEEK_SET) == 0 ? labels_text(path, f, n, y) :
		    (warn("'%s'", path), -1);
	fclose(f);
	for (int64_t i = 0; rc == 0 && i < n; i++)
		if (y[i] < 0 || (nclasses > 0 && y[i] >= nclasses))
			warnx("'%s': row %lld: label out of range (want 0 "
			    "to %d)", path, (long long)i + 1, nclasses > 0 ?
			    nclasses - 1 : MAX_CLASSES), rc = -1;
	if (rc < 0)
		free(y);
	else
		*labels = y;
	return rc;
}

/* Lines of a text file (no line ends); only trailing ones may be blank. */
int
eval_lines_load(const char *path, char ***lines, int *n)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, **v = NULL;
	size_t cap = 0;
	ssize_t len;
	int k = 0, good = 0, rc = 0;

	if (!f) {
		warn("'%s'", path);
		return -1;
	}
	while ((len = getline(&line, &cap, f)) != -1) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] ==
		    '\r'))
			line[--len] = 0;
		if (!(v = realloc(v, (k + 1) * sizeof(*v))) ||
		    !(v[k++] = strdup(line)))
			errx(1, "out of memory");
		if (len > 0)
			good = k;
	}
	free(line);
	if (ferror(f))
		warn("'%s'", path), rc = -1;
	else if (good == 0)
		warnx("'%s': no lines", path), rc = -1;
	for (int i = 0; rc == 0 && i < good; i++)
		if (!v[i][0])
			warnx("'%s':%d: empty line", path, i + 1), rc = -1;
	fclose(f);
	if (rc < 0) {
		eval_lines_free(v, k);
		return -1;
	}
	for (int i = good; i < k; i++)
		free(v[i]);
	*lines = v, *n = good;
	return 0;
}

void
eval_lines_free(char **lines, int n)
{
	for (int i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
}

void
eval_set_release(struct eval_set *s)
{
	free(s->vec);
	free(s->labels);
	free(s->model);
	memset(s, 0, sizeof(*s));
}

/* The images of d embedded by m, failures left out. */
static int
set_from_model(struct eval_set *s, const struct vlm_model *m,
    const struct vlm_imagefolder *d, int batch, int *failed)
{
	int E = m->cfg.embed_dim;
	unsigned char *ok = malloc(d->n);
	int64_t nf, k = 0;

	s->vec = malloc((size_t)d->n * E * sizeof(*s->vec));
	s->labels = malloc(d->n * sizeof(*s->labels));
	if (!ok || !s->vec || !s->labels)
		errx(1, "out of memory");
	nf = eval_embed_images(m, d->paths, d->blobs, d->n, batch, s->vec,
	    ok);
	if (nf < 0) {
		free(ok);
		return -1;
	}
	for (int64_t i = 0; i < d->n; i++)
		if (ok[i]) {
			memmove(s->vec + k * E, s->vec + i * E,
			    E * sizeof(*s->vec));
			s->labels[k++] = d->labels[i];
		}
	*failed += nf > 0;
	s->n = k, s->dim = E;
	free(ok);
	return 0;
}

/* The rows of e that name images of d, in d's order, with d's labels. */
static int
set_from_ids(struct eval_set *s, const struct vlm_emb *e, const char *name,
    const struct vlm_imagefolder *d, int *failed)
{
	int64_t *row = malloc(d->n * sizeof(*row)), k = 0, miss = -1;

	s->vec = malloc((size_t)d->n * e->dim * sizeof(*s->vec));
	s->labels = malloc(d->n * sizeof(*s->labels));
	if (!row || !s->vec || !s->labels)
		errx(1, "out of memory");
	if (eval_match_ids(e, name, d->paths, d->n, row) < 0) {
		free(row);
		return -1;
	}
	for (int64_t i = 0; i < d->n; i++) {
		if (row[i] < 0) {
			miss = miss < 0 ? i : miss;
			continue;
		}
		memcpy(s->vec + k * e->dim, e->vec + row[i] * e->dim,
		    e->dim * sizeof(*s->vec));
		s->labels[k++] = d->labels[i];
	}
	if (miss >= 0) {
		warnx("'%s': %lld of the %d images have no embedding, e.g. "
		    "'%s'", name, (long long)(d->n - k), d->n, d->paths[miss]);
		*failed = 1;
	}
	s->n = k, s->dim = (int)e->dim;
	free(row);
	return 0;
}

int
eval_set_load(struct eval_set *s, const struct vlm_model *m,
    const struct vlm_imagefolder *d, const char *emb, const char *labels,
    int nclasses, int batch, int *failed)
{
	struct vlm_emb e;
	int rc;

	memset(s, 0, sizeof(*s));
	for (int i = 0; d && i < d->nbad; i++) /* entries the walk lost */
		warnx("%s", d->bad[i]);
	*failed += d ? d->nbad : 0;
	if (!emb)
		return set_from_model(s, m, d, batch, failed);
	if (vlm_emb_load(&e, emb) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	s->model = eval_meta_model(&e);
	if (labels) {
		rc = eval_labels_load(labels, e.n, nclasses, &s->labels);
		s->n = e.n, s->dim = (int)e.dim;
		s->vec = vlm_emb_take_vec(&e);
	} else {
		rc = set_from_ids(s, &e, emb, d, failed);
	}
	vlm_emb_release(&e);
	if (rc < 0)
		eval_set_release(s);
	return rc;
}
