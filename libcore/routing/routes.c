/*
 * routes.c - routing records: what every MoE layer did with every token
 * of a forward pass (expert choices, combine weights, kept flags,
 * logits, capacity), written as a stream of .npy records that
 * vlm-route-stats reads back without the model (man vlm-routes.5, and
 * the comment above struct vlm_routes_writer in routing/routing.h).
 *
 * Like the .npys embedding streams, the records go one after another so
 * a producer can write to a pipe; the end record says the producer
 * finished, and a reader refuses a stream without it ("truncated")
 * unless the caller chooses to keep what it read so far.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "formats/formats.h"
#include "routing/routing.h"

/* Where a listed layer lives in the model. */
struct vlm_routes_wlayer {
	int tower, block, pool;
};

static const char *const tower_names[] = { "vision", "text", "shared",
	"fusion" };
static const char *const mod_names[] = { "image", "text" };

/* Write a JSON object as a compact '|u1' record; consumes o. */
static int
put_json(FILE *f, const char *name, json_t *o)
{
	int rc = o ? vlm_npy_write_json(f, name, o) :
	    vlm_error("'%s': out of memory", name);

	json_decref(o);
	return rc;
}

/* Write data as one record of dtype dt and shape (d0) or (d0, d1). */
static int
put_array(FILE *f, const char *name, enum vlm_dtype dt, const void *data,
    int64_t d0, int64_t d1)
{
	struct vlm_tensor t = { .dtype = dt, .ndim = d1 ? 2 : 1,
		.data = (void *)data };

	t.shape[0] = d0, t.shape[1] = d1;
	return vlm_npy_write(f, name, &t);
}

/* "visual.transformer.resblocks.3.moe.image" etc. */
static void
layer_name(char *buf, size_t n, const struct vlm_model *m,
    const struct vlm_routes_wlayer *l)
{
	if (l->tower == 3) { /* the vision-language pool */
		snprintf(buf, n, "fusion.resblocks.%d.moe", l->block);
		return;
	}
	snprintf(buf, n, "%stransformer.resblocks.%d.moe%s",
	    l->tower == 0 ? "visual." : "", l->block,
	    m->cfg.moe.modality_experts ? (l->pool ? ".text" : ".image") : "");
}

/* Append the MoE layers of n blocks (a tower's, or the fusion blocks:
 * tower 3) to w->layer. */
static void
list_tower(struct vlm_routes_writer *w, const struct vlm_block_off *b,
    int n, int tower)
{
	for (int l = 0; l < n; l++)
		for (int p = 0; p < b[l].moe; p++) {
			struct vlm_routes_wlayer *x = &w->layer[w->nlayers++];
			x->tower = tower, x->block = l, x->pool = p;
		}
}

/* The metadata object for model m and the layers listed in w. */
static json_t *
meta_json(const struct vlm_routes_writer *w, const struct vlm_model *m)
{
	const struct vlm_config *c = &m->cfg;
	json_t *o, *ls = json_array();
	char name[96];

	for (int i = 0; ls && i < w->nlayers; i++) {
		const struct vlm_routes_wlayer *l = &w->layer[i];
		layer_name(name, sizeof(name), m, l);
		int cut = c->tl.after >= 0 && l->tower != 1 &&
		    l->block > c->tl.after;
		json_array_append_new(ls, json_pack("{s:s,s:i,s:i,s:s,s:i}",
		    "tower", tower_names[l->tower], "block", l->block,
		    "pool", l->pool, "name", name, "image_tokens", cut ?
		    c->tl.tokens : vlm_config_image_tokens(c)));
	}
	o = json_pack("{s:s,s:i,s:s,s:i,s:i,s:[ss],s:o,s:i,s:i,s:b,s:i,"
	    "s:f,s:i,s:b,s:s}", "format", "vlm-routes", "version", 1,
	    "family", c->family == VLM_ONE_TOWER ? "one-tower" : "two-tower",
	    "experts", c->moe.experts, "top_k", c->moe.top_k, "modalities",
	    "image", "text", "layers", ls, "image_tokens",
	    vlm_config_image_tokens(c), "grid", c->image_size / c->patch_size,
	    "cls", c->vision.pool == VLM_POOL_CLS, "context", c->context,
	    "cf", (double)c->moe.cf_eval, "min_capacity", c->moe.min_capacity,
	    "bpr", c->moe.bpr, "gate_norm", c->moe.gate_norm == VLM_GATE_TOPK ?
	    "topk" : "none");
	return o;
}

int
vlm_routes_writer_init(struct vlm_routes_writer *w, FILE *f,
    const char *name, const struct vlm_model *m)
{
	int n = 0;

	memset(w, 0, sizeof(*w));
	w->f = f, w->name = name;
	w->E = m->cfg.moe.experts, w->K = m->cfg.moe.top_k;
	for (int l = 0; l < m->txt.nblocks; l++)
		n += m->txt.blocks[l].moe;
	for (int l = 0; m->vis.blocks != m->txt.blocks && l < m->vis.nblocks;
	    l++)
		n += m->vis.blocks[l].moe;
	for (int l = 0; l < m->fus.nblocks; l++)
		n += m->fus.blocks[l].moe;
	if (n == 0)
		return vlm_error("'%s': the model has no MoE layer to record",
		    name);
	if (!(w->layer = calloc(n, sizeof(*w->layer))))
		return vlm_error("out of memory");
	if (m->cfg.family == VLM_ONE_TOWER) {
		list_tower(w, m->txt.blocks, m->txt.nblocks, 2);
	} else {
		list_tower(w, m->vis.blocks, m->vis.nblocks, 0);
		list_tower(w, m->txt.blocks, m->txt.nblocks, 1);
	}
	list_tower(w, m->fus.blocks, m->fus.nblocks, 3);
	if (put_json(f, name, meta_json(w, m)) < 0) {
		vlm_routes_writer_release(w);
		return -1;
	}
	return 0;
}

int
vlm_routes_writer_classes(struct vlm_routes_writer *w,
    const char *const *names, int n)
{
	json_t *a = json_array();

	for (int i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(names[i]));
	return put_json(w->f, w->name, json_pack("{s:o}", "classes", a));
}

/* Listed layer l's routing in run r (a fusion layer's: -1 without
 * fused pairs). */
static int
route_of(const struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_routes_wlayer *l, int text, struct vlm_route_view *v)
{
	return vlm_run_route(r, text, l->block + (l->tower == 3 ?
	    m->cfg.text.layers : 0), l->pool, v);
}

/* Does listed layer l carry tokens of modality text? */
static int
layer_has(const struct vlm_routes_wlayer *l, const struct vlm_model *m,
    int text)
{
	if (l->tower == 3) /* fused pairs: both */
		return 1;
	if (l->tower != 2)
		return l->tower == text;
	return !m->cfg.moe.modality_experts || l->pool == text;
}

/* Is routed token s of view v one of the first n examples of text? */
static int
token_of(const struct vlm_run *r, const struct vlm_route_view *v, int s,
    int text, int n, int *ex, int *pos)
{
	return v->mod[s] == text &&
	    vlm_run_row_info(r, text, v->block, v->rows[s], ex, pos) == 0 &&
	    *ex < n;
}

/* Tokens of the first n examples of text in view v. */
static int
count_tokens(const struct vlm_run *r, const struct vlm_route_view *v,
    int text, int n)
{
	int k = 0, ex, pos;

	for (int s = 0; s < v->S; s++)
		k += token_of(r, v, s, text, n, &ex, &pos);
	return k;
}

/* Gather the recorded tokens of view v into w's scratch; returns S. */
static int
gather(struct vlm_routes_writer *w, const struct vlm_run *r,
    const struct vlm_route_view *v, int text, int n)
{
	int E = w->E, K = w->K, k = 0, ex, pos;

	for (int s = 0; s < v->S; s++) {
		if (!token_of(r, v, s, text, n, &ex, &pos))
			continue;
		w->tok[2 * k] = ex, w->tok[2 * k + 1] = pos;
		memcpy(w->idx + (size_t)k * K, v->idx + (size_t)s * K,
		    K * sizeof(int32_t));
		memcpy(w->keep + (size_t)k * K, v->keep + (size_t)s * K, K);
		memcpy(w->w + (size_t)k * K, v->w + (size_t)s * K,
		    K * sizeof(float));
		memcpy(w->z + (size_t)k * E, v->z + (size_t)s * E,
		    E * sizeof(float));
		k++;
	}
	return k;
}

/* Grow the scratch to hold S tokens. */
static int
reserve(struct vlm_routes_writer *w, size_t S)
{
	size_t K = w->K, E = w->E;
	void *p[5];

	if (S <= w->cap)
		return 0;
	p[0] = realloc(w->tok, S * 2 * sizeof(int32_t));
	if (p[0])
		w->tok = p[0];
	p[1] = realloc(w->idx, S * K * sizeof(int32_t));
	if (p[1])
		w->idx = p[1];
	p[2] = realloc(w->keep, S * K);
	if (p[2])
		w->keep = p[2];
	p[3] = realloc(w->w, S * K * sizeof(float));
	if (p[3])
		w->w = p[3];
	p[4] = realloc(w->z, S * E * sizeof(float));
	if (p[4])
		w->z = p[4];
	if (!p[0] || !p[1] || !p[2] || !p[3] || !p[4])
		return vlm_error("out of memory");
	w->cap = S;
	return 0;
}

/* The batch header: modality, examples, and each layer's counts. */
static json_t *
batch_json(struct vlm_routes_writer *w, const struct vlm_run *r,
    const struct vlm_model *m, int text, int n)
{
	json_t *ls = json_array(), *fill;
	struct vlm_route_view v;

	for (int j = 0; ls && j < w->nlayers; j++) {
		const struct vlm_routes_wlayer *l = &w->layer[j];
		if (!layer_has(l, m, text) || route_of(r, m, l, text, &v) < 0)
			continue;
		if (v.S < 0) /* not run */
			v.S = 0;
		fill = json_array();
		for (int e = 0; e < w->E; e++)
			json_array_append_new(fill, json_integer(v.S ?
			    v.fill[e] : 0));
		json_array_append_new(ls, json_pack("{s:i,s:i,s:i,s:i,s:o}",
		    "layer", j, "S", count_tokens(r, &v, text, n), "C",
		    v.S ? v.C : 0, "group", v.S, "fill", fill));
	}
	return json_pack("{s:I,s:s,s:i,s:o}", "batch", (json_int_t)w->batches,
	    "modality", mod_names[text], "examples", n, "layers", ls);
}

/* ids (or numbers in the modality) and labels (or -1) of a batch of n. */
static int
put_examples(struct vlm_routes_writer *w, int text, const char *const *ids,
    const int32_t *labels, int n)
{
	char **num = NULL, *buf = NULL;
	int32_t *lab = malloc((n ? n : 1) * sizeof(int32_t));
	int rc = -1;

	if (!lab || (!ids && (!(num = malloc(n * sizeof(*num) + 1)) ||
	    !(buf = malloc((size_t)n * 24 + 1)))))
		goto out;
	for (int i = 0; !ids && i < n; i++) {
		num[i] = buf + (size_t)i * 24;
		snprintf(num[i], 24, "%lld", (long long)(w->examples[text] +
		    i));
	}
	for (int i = 0; i < n; i++)
		lab[i] = labels ? labels[i] : -1;
	rc = 0;
out:
	if (rc < 0)
		vlm_error("out of memory");
	else if (vlm_npy_write_str(w->f, w->name, ids ? ids :
	    (const char *const *)num, n) < 0 ||
	    put_array(w->f, w->name, VLM_DTYPE_I32, lab, n, 0) < 0)
		rc = -1;
	free(lab);
	free(num);
	free(buf);
	return rc;
}

/* The five arrays of one layer. */
static int
put_layer(struct vlm_routes_writer *w, int S)
{
	FILE *f = w->f;
	const char *nm = w->name;

	if (put_array(f, nm, VLM_DTYPE_I32, w->tok, S, 2) < 0 ||
	    put_array(f, nm, VLM_DTYPE_I32, w->idx, S, w->K) < 0 ||
	    put_array(f, nm, VLM_DTYPE_U8, w->keep, S, w->K) < 0 ||
	    put_array(f, nm, VLM_DTYPE_F32, w->w, S, w->K) < 0 ||
	    put_array(f, nm, VLM_DTYPE_F32, w->z, S, w->E) < 0)
		return -1;
	return 0;
}

int
vlm_routes_write_batch(struct vlm_routes_writer *w, const struct vlm_run *r,
    const struct vlm_model *m, int text, const char *const *ids,
    const int32_t *labels, int n)
{
	struct vlm_route_view v;

	for (int j = 0; j < w->nlayers; j++) /* fusion layers: if run */
		if (w->layer[j].tower != 3 && layer_has(&w->layer[j], m, text) &&
		    route_of(r, m, &w->layer[j], text, &v) < 0)
			return vlm_error("'%s': the run has no %s MoE layer "
			    "%d (no %ss in it?)", w->name, mod_names[text],
			    w->layer[j].block, mod_names[text]);
	if (put_json(w->f, w->name, batch_json(w, r, m, text, n)) < 0 ||
	    put_examples(w, text, ids, labels, n) < 0)
		return -1;
	for (int j = 0; j < w->nlayers; j++) {
		const struct vlm_routes_wlayer *l = &w->layer[j];
		if (!layer_has(l, m, text) || route_of(r, m, l, text, &v) < 0)
			continue;
		if (v.S < 0)
			v.S = 0;
		if (reserve(w, v.S) < 0 || put_layer(w, gather(w, r, &v,
		    text, n)) < 0)
			return -1;
	}
	w->batches++;
	w->examples[text] += n;
	return 0;
}

int
vlm_routes_writer_finish(struct vlm_routes_writer *w)
{
	int rc = put_json(w->f, w->name, json_pack("{s:b,s:I,s:[II]}", "end",
	    1, "batches", (json_int_t)w->batches, "examples",
	    (json_int_t)w->examples[0], (json_int_t)w->examples[1]));

	if (rc == 0 && (fflush(w->f) != 0 || ferror(w->f)))
		rc = vlm_error("'%s': write error", w->name);
	vlm_routes_writer_release(w);
	return rc;
}

void
vlm_routes_writer_release(struct vlm_routes_writer *w)
{
	free(w->layer);
	free(w->tok);
	free(w->idx);
	free(w->keep);
	free(w->w);
	free(w->z);
	memset(w, 0, sizeof(*w));
}
