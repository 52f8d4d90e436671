/*
 * route-stats-json.c - vlm-route-stats --json: every statistic of every
 * shown layer as one JSON object on stdout (NaN as null); the class x
 * expert counts and each expert's top classes when the stream has
 * labels, the position x expert counts with --positions.
 */
#include <math.h>
#include <stdio.h>

#include <jansson.h>

#include "route-stats.h"
#include "base/base.h"

static const char *const mod_names[] = { "image", "text", "all" };

static json_t *
real(double v)
{
	return isnan(v) ? json_null() : json_real(v);
}

/* A (rows, E) count matrix as an array of arrays. */
static json_t *
matrix(const double *x, int rows, int E)
{
	json_t *a = json_array();

	for (int r = 0; r < rows; r++) {
		json_t *row = json_array();
		for (int e = 0; e < E; e++)
			json_array_append_new(row, json_integer(
			    (json_int_t)x[(size_t)r * E + e]));
		json_array_append_new(a, row);
	}
	return a;
}

static json_t *
summary_json(const struct vlm_route_summary *u, int E)
{
	json_t *o = json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
	    "tokens", (json_int_t)u->tokens, "assignments",
	    (json_int_t)u->assignments, "drop_tokens", real(u->drop_tokens),
	    "drop_assign", real(u->drop_assign), "imp_cv2", real(u->imp_cv2),
	    "load_cv2", real(u->load_cv2), "eff_experts",
	    real(u->eff_experts), "entropy", real(u->entropy), "zloss",
	    real(u->zloss), "z_mean", real(u->zmean), "z_max", real(u->zmax));
	json_t *ex = json_array();

	for (int e = 0; e < E; e++)
		json_array_append_new(ex, json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,"
		    "s:o,s:s}", "expert", e, "load", real(u->load[e]), "kept",
		    real(u->kept[e]), "share", real(u->share[e]), "gate",
		    real(u->gate[e]), "use", real(u->use[e]), "img_share",
		    real(u->img_share[e]), "kind",
		    vlm_route_expert_kind(u->img_share[e])));
	json_object_set_new(o, "experts", ex);
	return o;
}

/* Class names, counts and each expert's top classes of layer l. */
static json_t *
classes_json(const struct vlm_route_stats *s, int l)
{
	json_t *names = json_array(), *tops = json_array();
	int top[5];
	double frac[5];

	for (int c = 0; c < s->nclasses; c++)
		json_array_append_new(names, json_string(s->classes[c]));
	for (int e = 0; e < s->E; e++) {
		int k = vlm_route_top_classes(s, l, e, top, frac, 5);
		json_t *t = json_array();
		for (int i = 0; i < k; i++)
			json_array_append_new(t, json_pack("{s:i,s:f}",
			    "class", top[i], "fraction", frac[i]));
		json_array_append_new(tops, t);
	}
	return json_pack("{s:o,s:o,s:o}", "names", names, "counts",
	    matrix(s->l[l].cls, s->l[l].ncls, s->E), "top", tops);
}

static json_t *
layer_json(const struct vlm_route_stats *s, int l, const struct rs_opts *o)
{
	struct vlm_route_summary u;
	char label[64];
	json_t *ms = json_object(), *j;

	for (int m = 0; m < 3; m++) {
		if (!rs_has(s, l, m) || vlm_route_summarize(s, l, m, &u) < 0)
			continue;
		json_object_set_new(ms, mod_names[m], summary_json(&u, s->E));
		vlm_route_summary_release(&u);
	}
	rs_layer_label(label, sizeof(label), &s->layers[l]);
	j = json_pack("{s:i,s:s,s:s,s:o}", "layer", l, "name",
	    s->layers[l].name, "label", label, "modalities", ms);
	if (s->l[l].ncls && rs_has(s, l, 0))
		json_object_set_new(j, "classes", classes_json(s, l));
	if (o->positions && rs_has(s, l, 0))
		json_object_set_new(j, "positions", json_pack("{s:i,s:b,s:o}",
		    "grid", s->grid, "cls", s->cls, "counts",
		    matrix(s->l[l].pos, s->l[l].npos, s->E)));
	return j;
}

int
rs_print_json(const struct vlm_route_stats *s, const char *name,
    const struct rs_opts *o)
{
	json_t *ls = json_array(), *root;
	int rc;

	for (int l = 0; l < s->nlayers; l++)
		if ((o->layer < 0 || o->layer == l) && rs_has(s, l, 2))
			json_array_append_new(ls, layer_json(s, l, o));
	root = json_pack("{s:s,s:I,s:{s:I,s:I},s:i,s:i,s:o}", "stream", name,
	    "batches", (json_int_t)s->batches, "examples", "image",
	    (json_int_t)s->examples[0], "text", (json_int_t)s->examples[1],
	    "experts", s->E, "top_k", s->K, "layers", ls);
	if (!root)
		return vlm_error("out of memory");
	rc = json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(17));
	putchar('\n');
	json_decref(root);
	return rc;
}

/* The diff of layer l and modality m: both summaries, the distance,
 * the agreement and the first-choice transitions. */
static json_t *
diff_mod_json(const struct vlm_route_stats *a,
    const struct vlm_route_stats *b, const struct vlm_route_diff *d, int l,
    int m)
{
	struct vlm_route_summary ua, ub;
	json_t *o = NULL, *tr = json_array();
	int E = a->E;

	if (vlm_route_summarize(a, l, m, &ua) < 0)
		return NULL;
	if (vlm_route_summarize(b, l, m, &ub) == 0) {
		for (int i = 0; d->aligned && m < 2 && i < E; i++) {
			json_t *row = json_array();
			for (int j = 0; j < E; j++)
				json_array_append_new(row, json_integer(
				    d->trans[(((size_t)l * 2 + m) * E + i) * E +
				    j]));
			json_array_append_new(tr, row);
		}
		o = json_pack("{s:o,s:o,s:o,s:o,s:o}", "share_tv",
		    real(rs_share_tv(&ua, &ub, E)), "agree",
		    real(rs_agree(d, l, m)), "a", summary_json(&ua, E), "b",
		    summary_json(&ub, E), "transitions", tr);
		vlm_route_summary_release(&ub);
	}
	vlm_route_summary_release(&ua);
	return o;
}

void
rs_diff_json(const struct vlm_route_stats *a, const struct vlm_route_stats *b,
    const struct vlm_route_diff *d, const struct rs_opts *o)
{
	json_t *ls = json_array(), *root, *ms, *x;

	for (int l = 0; l < a->nlayers; l++) {
		if ((o->layer >= 0 && o->layer != l) || !rs_has(a, l, 2))
			continue;
		ms = json_object();
		for (int m = 0; m < 3; m++)
			if (rs_has(a, l, m) && rs_has(b, l, m) &&
			    (x = diff_mod_json(a, b, d, l, m)))
				json_object_set_new(ms, mod_names[m], x);
		json_array_append_new(ls, json_pack("{s:i,s:s,s:o}", "layer",
		    l, "name", a->layers[l].name, "modalities", ms));
	}
	root = json_pack("{s:I,s:I,s:b,s:o}", "batches_a",
	    (json_int_t)a->batches, "batches_b", (json_int_t)b->batches,
	    "aligned", d->aligned, "layers", ls);
	json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(17));
	putchar('\n');
	json_decref(root);
}
