/*
 * routes-read.c - the reader of routing-record streams (routes.c writes
 * them; man vlm-routes.5): checks the metadata, then hands out one batch
 * at a time with every array checked for dtype, shape and range, and
 * refuses a stream that stops without its end record ("truncated").
 * What was read before an error stays counted in batches and examples,
 * so a caller may keep the statistics of the complete part.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "formats/formats.h"
#include "routing/routing.h"

/*
 * Bounds on what a stream may claim, so that the statistics it feeds
 * (routestats.c: per layer and expert, a row per image position and one
 * per class) stay within STATS_MAX_CELLS doubles (1 GiB) however the
 * numbers in the records were set.
 */
#define STATS_MAX_CELLS ((int64_t)1 << 27)
#define MAX_LAYER_EXPERTS (1 << 20) /* layers x experts */
#define MAX_CLASSES (1 << 16)

static const char *const tower_names[] = { "vision", "text", "shared",
	"fusion" };
static const char *const mod_names[] = { "image", "text" };

/* Read one record; a clean end of stream is "truncated" here. */
static int
get_rec(struct vlm_routes_reader *r, struct vlm_npy *x, const char *what)
{
	int rc = vlm_npy_read(r->f, r->name, x);

	if (rc == 1)
		return vlm_error("'%s': truncated: the stream stops after %lld "
		    "batches without its end record", r->name,
		    (long long)r->batches);
	if (rc < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
		return vlm_error("%s (%s, after %lld complete batches)", msg,
		    what, (long long)r->batches);
	}
	return 0;
}

/* Read a '|u1' JSON object record. */
static json_t *
get_json(struct vlm_routes_reader *r, const char *what)
{
	struct vlm_npy x;
	json_error_t e;
	json_t *o = NULL;

	if (get_rec(r, &x, what) < 0)
		return NULL;
	if (x.is_str || x.t.dtype != VLM_DTYPE_U8 || x.t.ndim != 1)
		vlm_error("'%s': %s is not a '|u1' JSON record", r->name, what);
	else if (!(o = json_loadb(x.t.data, x.t.shape[0],
	    JSON_REJECT_DUPLICATES, &e)))
		vlm_error("'%s': %s is not valid JSON: %s", r->name, what,
		    e.text);
	else if (!json_is_object(o)) {
		json_decref(o);
		o = NULL;
		vlm_error("'%s': %s is not a JSON object", r->name, what);
	}
	vlm_npy_release(&x);
	return o;
}

/* An integer member in [lo, hi]; -1 with a message otherwise. */
static int
get_int(struct vlm_routes_reader *r, json_t *o, const char *key, int lo,
    int hi, int *out)
{
	json_t *v = json_object_get(o, key);
	json_int_t i = json_is_integer(v) ? json_integer_value(v) : lo - 1LL;

	if (i < lo || i > hi)
		return vlm_error("'%s': missing or bad \"%s\"", r->name, key);
	*out = (int)i;
	return 0;
}

static int
index_of(const char *const *names, int n, const char *s)
{
	for (int i = 0; s && i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

/* The "layers" array of the metadata. */
static int
read_layers(struct vlm_routes_reader *r, json_t *a)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a) || json_array_size(a) == 0 ||
	    json_array_size(a) > 4096)
		return vlm_error("'%s': metadata lacks \"layers\"", r->name);
	r->nlayers = (int)json_array_size(a);
	if (!(r->layers = calloc(r->nlayers, sizeof(*r->layers))))
		return vlm_error("out of memory");
	json_array_foreach(a, i, v) {
		struct vlm_routes_layer *l = &r->layers[i];
		json_t *nm = json_object_get(v, "name");
		l->tower = index_of(tower_names, 4, json_string_value(
		    json_object_get(v, "tower")));
		if (l->tower < 0 || !json_is_string(nm) ||
		    get_int(r, v, "block", 0, 1 << 20, &l->block) < 0 ||
		    get_int(r, v, "pool", 0, 1, &l->pool) < 0)
			return vlm_error("'%s': bad layer %zu in the metadata",
			    r->name, i);
		snprintf(l->name, sizeof(l->name), "%s", json_string_value(nm));
		l->image_tokens = -1; /* older records: the global count */
		if (json_object_get(v, "image_tokens") && get_int(r, v,
		    "image_tokens", 0, 1 << 24, &l->image_tokens) < 0)
			return -1;
	}
	return 0;
}

/* Check the metadata object and take what the reader needs. */
static int
read_meta(struct vlm_routes_reader *r, json_t *m)
{
	const char *fam = json_string_value(json_object_get(m, "family"));
	json_t *v = json_object_get(m, "format");

	if (!json_is_string(v) || strcmp(json_string_value(v), "vlm-routes"))
		return vlm_error("'%s': not a routing-record stream (format is "
		    "not \"vlm-routes\")", r->name);
	v = json_object_get(m, "version");
	if (!json_is_integer(v) || json_integer_value(v) != 1)
		return vlm_error("'%s': unsupported routing-record version "
		    "(want 1)", r->name);
	r->family = fam && strcmp(fam, "one-tower") == 0 ? VLM_ONE_TOWER :
	    VLM_TWO_TOWER;
	if (get_int(r, m, "experts", 1, 1 << 16, &r->E) < 0 ||
	    get_int(r, m, "top_k", 1, r->E, &r->K) < 0 ||
	    get_int(r, m, "image_tokens", 1, 1 << 24, &r->image_tokens) < 0 ||
	    get_int(r, m, "grid", 1, 1 << 12, &r->grid) < 0 ||
	    get_int(r, m, "context", 0, 1 << 24, &r->context) < 0)
		return vlm_error("%s in the metadata", vlm_errmsg());
	r->cls = json_is_true(json_object_get(m, "cls"));
	if ((int64_t)r->grid * r->grid + r->cls != r->image_tokens)
		return vlm_error("'%s': metadata \"image_tokens\" (%d) is not "
		    "\"grid\" (%d) squared%s", r->name, r->image_tokens,
		    r->grid, r->cls ? " plus the class token" : "");
	if (read_layers(r, json_object_get(m, "layers")) < 0)
		return -1;
	if ((int64_t)r->nlayers * r->E > MAX_LAYER_EXPERTS ||
	    (int64_t)r->nlayers * r->E * r->image_tokens > STATS_MAX_CELLS)
		return vlm_error("'%s': metadata claims %d layers of %d "
		    "experts and %d image tokens, more than vlm handles",
		    r->name, r->nlayers, r->E, r->image_tokens);
	for (int i = 0; i < r->nlayers; i++)
		if (r->layers[i].image_tokens < 0)
			r->layers[i].image_tokens = r->image_tokens;
	return 0;
}

/* Labels below this: the named classes, else what the statistics hold. */
static int
label_limit(const struct vlm_routes_reader *r)
{
	int64_t n = STATS_MAX_CELLS / ((int64_t)r->nlayers * r->E);

	if (r->nclasses > 0)
		return r->nclasses;
	return n < MAX_CLASSES ? (int)n : MAX_CLASSES;
}

int
vlm_routes_reader_init(struct vlm_routes_reader *r, FILE *f, const char *name)
{
	json_t *m;
	int rc;

	memset(r, 0, sizeof(*r));
	r->f = f, r->name = name;
	if (!(m = get_json(r, "the metadata")))
		return -1;
	rc = read_meta(r, m);
	if (rc == 0 && !(r->meta = json_dumps(m, JSON_COMPACT)))
		rc = vlm_error("out of memory");
	json_decref(m);
	if (rc < 0)
		vlm_routes_reader_release(r);
	return rc;
}

/* Free the records of the current batch. */
static void
drop_batch(struct vlm_routes_reader *r)
{
	for (int i = 0; i < r->nrec; i++)
		vlm_npy_release(&r->rec[i]);
	r->nrec = 0, r->n = 0, r->ng = 0;
	r->ids = NULL, r->labels = NULL;
}

/* The next record into r->rec, checked for dtype and shape (d0, d1);
 * d1 0: one dimension. */
static const void *
get_array(struct vlm_routes_reader *r, enum vlm_dtype dt, int64_t d0,
    int64_t d1, const char *what)
{
	struct vlm_npy *x = &r->rec[r->nrec];

	if (get_rec(r, x, what) < 0)
		return NULL;
	r->nrec++;
	if (x->is_str || x->t.dtype != dt || x->t.ndim != (d1 ? 2 : 1) ||
	    x->t.shape[0] != d0 || (d1 && x->t.shape[1] != d1)) {
		vlm_error("'%s': batch %lld: %s has the wrong dtype or shape",
		    r->name, (long long)r->batches, what);
		return NULL;
	}
	return x->t.data;
}

/* Values of a layer's arrays in range: examples, positions, experts. */
static int
check_group(struct vlm_routes_reader *r, const struct vlm_routes_group *g)
{
	int T = r->modality ? r->context : r->layers[g->layer].image_tokens;

	for (int s = 0; s < g->S; s++) {
		if (g->tok[2 * s] < 0 || g->tok[2 * s] >= r->n ||
		    g->tok[2 * s + 1] < 0 || g->tok[2 * s + 1] >= T)
			return vlm_error("'%s': batch %lld: token %d has a bad "
			    "example or position", r->name,
			    (long long)r->batches, s);
		for (size_t j = (size_t)s * r->K; j < (size_t)(s + 1) * r->K;
		    j++)
			if (g->idx[j] < 0 || g->idx[j] >= r->E ||
			    g->keep[j] > 1)
				return vlm_error("'%s': batch %lld: token %d "
				    "has a bad expert or kept flag", r->name,
				    (long long)r->batches, s);
	}
	return 0;
}

/* Room for ng groups (each with E fill counts) and their records. */
static int
reserve_groups(struct vlm_routes_reader *r, int ng)
{
	void *p;

	if (ng > r->ngcap) {
		p = realloc(r->g, ng * (sizeof(*r->g) + r->E *
		    sizeof(int32_t)));
		if (!p)
			return vlm_error("out of memory");
		r->g = p;
		r->ngcap = ng;
		for (int i = 0; i < ng; i++)
			r->g[i].fill = (int32_t *)(r->g + ng) +
			    (size_t)i * r->E;
	}
	if (2 + 5 * ng > r->caprec) {
		if (!(p = realloc(r->rec, (2 + 5 * ng) * sizeof(*r->rec))))
			return vlm_error("out of memory");
		r->rec = p;
		r->caprec = 2 + 5 * ng;
	}
	return 0;
}

/* One entry of a batch header's "layers" into g. */
static int
parse_group(struct vlm_routes_reader *r, json_t *o,
    struct vlm_routes_group *g)
{
	json_t *fill = json_object_get(o, "fill");

	if (get_int(r, o, "layer", 0, r->nlayers - 1, &g->layer) < 0 ||
	    get_int(r, o, "S", 0, INT32_MAX / 2, &g->S) < 0 ||
	    get_int(r, o, "C", 0, INT32_MAX, &g->C) < 0 ||
	    get_int(r, o, "group", g->S, INT32_MAX, &g->G) < 0)
		return -1;
	if (!json_is_array(fill) || json_array_size(fill) != (size_t)r->E)
		return vlm_error("'%s': missing or bad \"fill\"", r->name);
	for (int e = 0; e < r->E; e++) {
		json_t *v = json_array_get(fill, e);
		json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
		if (n < 0 || n > g->C)
			return vlm_error("'%s': bad \"fill\"", r->name);
		g->fill[e] = (int32_t)n;
	}
	return 0;
}

/* The batch header h; then read the batch's arrays. */
static int
read_batch(struct vlm_routes_reader *r, json_t *h)
{
	json_t *ls = json_object_get(h, "layers"), *v;
	size_t i;

	r->modality = index_of(mod_names, 2, json_string_value(
	    json_object_get(h, "modality")));
	if (r->modality < 0 || get_int(r, h, "examples", 0, 1 << 30,
	    &r->n) < 0 || !json_is_array(ls) || json_array_size(ls) >
	    (size_t)r->nlayers)
		return vlm_error("'%s': bad batch header after %lld batches",
		    r->name, (long long)r->batches);
	if (reserve_groups(r, (int)json_array_size(ls)) < 0)
		return -1;
	json_array_foreach(ls, i, v)
		if (parse_group(r, v, &r->g[i]) < 0)
			return vlm_error("%s (batch %lld)", vlm_errmsg(),
			    (long long)r->batches);
	r->ng = (int)json_array_size(ls);
	if (get_rec(r, &r->rec[r->nrec], "array ids") < 0)
		return -1;
	if (!r->rec[r->nrec++].is_str || r->rec[0].t.ndim != 1 ||
	    r->rec[0].t.shape[0] != r->n)
		return vlm_error("'%s': batch %lld: bad ids", r->name,
		    (long long)r->batches);
	r->ids = r->rec[0].str;
	r->labels = get_array(r, VLM_DTYPE_I32, r->n, 0, "array labels");
	if (!r->labels)
		return -1;
	for (int j = 0, lim = label_limit(r); j < r->n; j++)
		if (r->labels[j] < -1 || r->labels[j] >= lim)
			return vlm_error("'%s': batch %lld: example %d has "
			    "label %d (want -1 or 0 to %d)", r->name,
			    (long long)r->batches, j, (int)r->labels[j],
			    lim - 1);
	for (int j = 0; j < r->ng; j++) {
		struct vlm_routes_group *g = &r->g[j];
		int S = g->S, K = r->K;
		if (!(g->tok = get_array(r, VLM_DTYPE_I32, S, 2, "array tok"))
		    || !(g->idx = get_array(r, VLM_DTYPE_I32, S, K,
		    "array idx"))
		    || !(g->keep = get_array(r, VLM_DTYPE_U8, S, K,
		    "array keep"))
		    || !(g->w = get_array(r, VLM_DTYPE_F32, S, K, "array w"))
		    || !(g->z = get_array(r, VLM_DTYPE_F32, S, r->E, "array z"))
		    ||
		    check_group(r, g) < 0)
			return -1;
	}
	return 0;
}

/* The end record e: counts agree, nothing follows. */
static int
read_end(struct vlm_routes_reader *r, json_t *e)
{
	json_t *ex = json_object_get(e, "examples");
	json_t *b = json_object_get(e, "batches");

	if (!json_is_integer(b) || json_integer_value(b) != r->batches ||
	    !json_is_array(ex) || json_array_size(ex) != 2 ||
	    json_integer_value(json_array_get(ex, 0)) != r->examples[0] ||
	    json_integer_value(json_array_get(ex, 1)) != r->examples[1])
		return vlm_error("'%s': the end record's counts differ from "
		    "the batches read (%lld)", r->name, (long long)r->batches);
	if (getc(r->f) != EOF)
		return vlm_error("'%s': data after the end record", r->name);
	if (!(r->end = json_dumps(e, JSON_COMPACT)))
		return vlm_error("out of memory");
	return 0;
}

/* A classes record: the names of the labels. */
static int
read_classes(struct vlm_routes_reader *r, json_t *a)
{
	size_t i;
	json_t *v;

	for (int c = 0; c < r->nclasses; c++)
		free(r->classes[c]);
	free(r->classes);
	r->nclasses = 0;
	r->classes = NULL;
	if (json_array_size(a) > (size_t)label_limit(r))
		return vlm_error("'%s': %zu class names, more than vlm "
		    "handles (%d)", r->name, json_array_size(a),
		    label_limit(r));
	if (!(r->classes = calloc(json_array_size(a) + 1, sizeof(char *))))
		return vlm_error("out of memory");
	json_array_foreach(a, i, v) {
		if (!json_is_string(v))
			return vlm_error("'%s': bad class names", r->name);
		if (!(r->classes[i] = strdup(json_string_value(v))))
			return vlm_error("out of memory");
		r->nclasses++;
	}
	return 0;
}

int
vlm_routes_reader_next(struct vlm_routes_reader *r)
{
	json_t *h, *v;
	int rc;

	drop_batch(r);
	if (r->end)
		return 0;
	for (;;) {
		if (!(h = get_json(r, "a batch header")))
			return -1;
		if (json_is_true(json_object_get(h, "end"))) {
			rc = read_end(r, h);
			json_decref(h);
			return rc;
		}
		if (json_is_array(v = json_object_get(h, "classes"))) {
			rc = read_classes(r, v);
			json_decref(h);
			if (rc < 0)
				return -1;
			continue;
		}
		rc = json_is_integer(json_object_get(h, "batch")) ?
		    read_batch(r, h) : vlm_error("'%s': unknown record after "
		    "%lld batches", r->name, (long long)r->batches);
		json_decref(h);
		if (rc < 0) {
			drop_batch(r);
			return -1;
		}
		r->batches++;
		r->examples[r->modality] += r->n;
		return 1;
	}
}

void
vlm_routes_reader_release(struct vlm_routes_reader *r)
{
	drop_batch(r);
	for (int c = 0; c < r->nclasses; c++)
		free(r->classes[c]);
	free(r->classes);
	free(r->rec);
	free(r->g);
	free(r->layers);
	free(r->meta);
	free(r->end);
	memset(r, 0, sizeof(*r));
}
