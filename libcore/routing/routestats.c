/*
 * routestats.c - routing statistics (ALGORITHMS.md section 7) from
 * routing records: sums per MoE layer and modality accumulated batch by
 * batch (so a stream of any length takes memory for the sums only),
 * then the derived numbers of one layer and modality on demand.
 *
 * Everything is summed in double; probabilities come from the recorded
 * logits by a log-softmax in double, so p, H(p) and logsumexp(z) do not
 * depend on how the model rounded them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "routing/routing.h"

static int
acc_init(struct vlm_route_acc *a, int E)
{
	memset(a, 0, sizeof(*a));
	a->zmax = -INFINITY;
	if (!(a->load = calloc(4 * (size_t)E, sizeof(double))))
		return vlm_error("out of memory");
	a->kept = a->load + E, a->gate = a->kept + E, a->imp = a->gate + E;
	return 0;
}

int
vlm_route_stats_init(struct vlm_route_stats *s,
    const struct vlm_routes_reader *r)
{
	memset(s, 0, sizeof(*s));
	s->E = r->E, s->K = r->K, s->nlayers = r->nlayers;
	s->grid = r->grid, s->cls = r->cls, s->image_tokens = r->image_tokens;
	s->layers = calloc(r->nlayers, sizeof(*s->layers));
	s->l = calloc(r->nlayers, sizeof(*s->l));
	if (!s->layers || !s->l)
		goto oom;
	memcpy(s->layers, r->layers, r->nlayers * sizeof(*s->layers));
	for (int i = 0; i < s->nlayers; i++) {
		struct vlm_route_lstats *l = &s->l[i];
		if (acc_init(&l->m[0], s->E) < 0 ||
		    acc_init(&l->m[1], s->E) < 0)
			goto oom;
		/* patch heatmaps only where tokens are still patches */
		l->npos = r->layers[i].image_tokens == r->image_tokens ?
		    r->image_tokens : 0;
		l->use = calloc(s->E, sizeof(double));
		l->pos = calloc((size_t)(l->npos ? l->npos : 1) * s->E,
		    sizeof(double));
		if (!l->use || !l->pos)
			goto oom;
	}
	return 0;
oom:
	vlm_route_stats_release(s);
	return vlm_error("out of memory");
}

void
vlm_route_stats_release(struct vlm_route_stats *s)
{
	for (int i = 0; s->l && i < s->nlayers; i++) {
		free(s->l[i].m[0].load);
		free(s->l[i].m[1].load);
		free(s->l[i].use);
		free(s->l[i].cls);
		free(s->l[i].pos);
	}
	for (int c = 0; c < s->nclasses; c++)
		free(s->classes[c]);
	free(s->classes);
	free(s->l);
	free(s->layers);
	memset(s, 0, sizeof(*s));
}

/* Grow every layer's class matrix to n classes (zeros). */
static int
grow_classes(struct vlm_route_stats *s, int n)
{
	for (int i = 0; i < s->nlayers; i++) {
		struct vlm_route_lstats *l = &s->l[i];
		double *p;
		if (n <= l->ncls)
			continue;
		if (!(p = realloc(l->cls, (size_t)n * s->E * sizeof(double))))
			return vlm_error("out of memory");
		memset(p + (size_t)l->ncls * s->E, 0, (size_t)(n - l->ncls) *
		    s->E * sizeof(double));
		l->cls = p, l->ncls = n;
	}
	return 0;
}

/* Take the reader's class names if it has more than we do. */
static int
copy_classes(struct vlm_route_stats *s, const struct vlm_routes_reader *r)
{
	char **c;

	if (r->nclasses <= s->nclasses)
		return 0;
	if (!(c = calloc(r->nclasses, sizeof(*c))))
		return vlm_error("out of memory");
	for (int i = 0; i < r->nclasses; i++)
		if (!(c[i] = strdup(r->classes[i]))) {
			while (i--)
				free(c[i]);
			free(c);
			return vlm_error("out of memory");
		}
	for (int i = 0; i < s->nclasses; i++)
		free(s->classes[i]);
	free(s->classes);
	s->classes = c, s->nclasses = r->nclasses;
	return grow_classes(s, r->nclasses);
}

/* Logit sums of one token z (E) into a: p, H(p), logsumexp(z)^2. */
static void
add_logits(struct vlm_route_acc *a, const float *z, int E)
{
	double mx = -INFINITY, sum = 0, lse, h = 0;

	for (int e = 0; e < E; e++) {
		mx = z[e] > mx ? z[e] : mx;
		a->zsum += z[e];
	}
	for (int e = 0; e < E; e++)
		sum += exp(z[e] - mx);
	lse = mx + log(sum);
	for (int e = 0; e < E; e++) {
		double lp = z[e] - lse, p = exp(lp);
		a->imp[e] += p;
		h -= p * lp;
	}
	a->ent += h;
	a->zsq += lse * lse;
	a->zmax = mx > a->zmax ? mx : a->zmax;
}

/* One token s of group g into layer statistics l. */
static void
add_token(struct vlm_route_stats *s, struct vlm_route_lstats *l,
    const struct vlm_routes_reader *r, const struct vlm_routes_group *g,
    int t)
{
	struct vlm_route_acc *a = &l->m[r->modality];
	int E = s->E, K = s->K, ex = g->tok[2 * t], pos = g->tok[2 * t + 1];
	int lab = r->labels[ex], nkept = 0;

	add_logits(a, g->z + (size_t)t * E, E);
	for (int j = 0; j < K; j++) {
		int e = g->idx[(size_t)t * K + j];
		a->load[e]++;
		if (g->keep[(size_t)t * K + j]) {
			a->kept[e]++;
			a->gate[e] += g->w[(size_t)t * K + j];
			nkept++;
		}
		if (r->modality == 0 && lab >= 0 && lab < l->ncls)
			l->cls[(size_t)lab * E + e]++;
		if (r->modality == 0 && pos < l->npos)
			l->pos[(size_t)pos * E + e]++;
	}
	a->tokens++;
	a->dropped += nkept == 0;
}

int
vlm_route_stats_add(struct vlm_route_stats *s,
    const struct vlm_routes_reader *r)
{
	int maxlab = -1;

	if (r->E != s->E || r->K != s->K || r->nlayers != s->nlayers)
		return vlm_error("'%s': another model's routing records",
		    r->name);
	if (copy_classes(s, r) < 0)
		return -1;
	for (int i = 0; r->modality == 0 && i < r->n; i++)
		maxlab = r->labels[i] > maxlab ? r->labels[i] : maxlab;
	if (grow_classes(s, maxlab + 1) < 0)
		return -1;
	for (int j = 0; j < r->ng; j++) {
		const struct vlm_routes_group *g = &r->g[j];
		struct vlm_route_lstats *l = &s->l[g->layer];
		struct vlm_route_acc *a = &l->m[r->modality];
		a->records++;
		a->cap += g->C;
		for (int e = 0; g->C > 0 && e < s->E; e++)
			l->use[e] += (double)g->fill[e] / g->C;
		l->groups += g->C > 0;
		for (int t = 0; t < g->S; t++)
			add_token(s, l, r, g, t);
	}
	s->batches++;
	s->examples[r->modality] += r->n;
	return 0;
}

/* (std / mean)^2 of x (n) with the population std; NaN if mean is 0. */
static double
cv2(const double *x, int n)
{
	double mean = 0, var = 0;

	for (int i = 0; i < n; i++)
		mean += x[i];
	mean /= n;
	for (int i = 0; i < n; i++)
		var += (x[i] - mean) * (x[i] - mean);
	return mean > 0 ? var / n / (mean * mean) : NAN;
}

/* a + b into one accumulator (arrays into buf, 4E). */
static void
acc_sum(struct vlm_route_acc *o, const struct vlm_route_acc *a,
    const struct vlm_route_acc *b, double *buf, int E)
{
	*o = *a;
	o->records += b->records, o->tokens += b->tokens;
	o->dropped += b->dropped, o->cap += b->cap;
	o->ent += b->ent, o->zsq += b->zsq, o->zsum += b->zsum;
	o->zmax = b->zmax > a->zmax ? b->zmax : a->zmax;
	o->load = buf, o->kept = buf + E, o->gate = buf + 2 * E;
	o->imp = buf + 3 * E;
	for (int i = 0; i < 4 * E; i++)
		buf[i] = a->load[i] + b->load[i];
}

/* The per-expert columns of out from accumulator a. */
static void
expert_columns(struct vlm_route_summary *out, const struct vlm_route_acc *a,
    const struct vlm_route_lstats *l, int mod, int E)
{
	const struct vlm_route_acc *im = &l->m[0], *tx = &l->m[1];

	for (int e = 0; e < E; e++) {
		double both = im->load[e] + tx->load[e];
		out->load[e] = a->load[e];
		out->kept[e] = a->kept[e];
		out->share[e] = out->assignments ? a->load[e] /
		    out->assignments : NAN;
		out->gate[e] = a->kept[e] > 0 ? a->gate[e] / a->kept[e] : NAN;
		if (mod == 2)
			out->use[e] = l->groups ? l->use[e] / l->groups : NAN;
		else
			out->use[e] = a->cap ? a->kept[e] / a->cap : NAN;
		out->img_share[e] = both > 0 ? im->load[e] / both : NAN;
	}
}

int
vlm_route_summarize(const struct vlm_route_stats *s, int layer, int mod,
    struct vlm_route_summary *out)
{
	const struct vlm_route_lstats *l = &s->l[layer];
	struct vlm_route_acc all;
	const struct vlm_route_acc *a = mod < 2 ? &l->m[mod] : &all;
	int E = s->E;
	double n, h = 0, dropped_asg = 0;

	memset(out, 0, sizeof(*out));
	if (!(out->buf = malloc(10 * (size_t)E * sizeof(double))))
		return vlm_error("out of memory");
	out->load = out->buf, out->kept = out->load + E;
	out->share = out->kept + E, out->gate = out->share + E;
	out->use = out->gate + E, out->img_share = out->use + E;
	if (mod == 2)
		acc_sum(&all, &l->m[0], &l->m[1], out->img_share + E, E);
	n = (double)a->tokens;
	out->tokens = a->tokens;
	out->assignments = a->tokens * s->K;
	for (int e = 0; e < E; e++) {
		double pb = n > 0 ? a->imp[e] / n : 0;
		h -= pb > 0 ? pb * log(pb) : 0;
		dropped_asg += a->load[e] - a->kept[e];
	}
	out->drop_tokens = n > 0 ? a->dropped / n : NAN;
	out->drop_assign = n > 0 ? dropped_asg / out->assignments : NAN;
	out->imp_cv2 = cv2(a->imp, E);
	out->load_cv2 = cv2(a->load, E);
	out->eff_experts = n > 0 ? exp(h) : NAN;
	out->entropy = n > 0 ? a->ent / n : NAN;
	out->zloss = n > 0 ? a->zsq / n : NAN;
	out->zmean = n > 0 ? a->zsum / (n * E) : NAN;
	out->zmax = n > 0 ? a->zmax : NAN;
	expert_columns(out, a, l, mod, E);
	return 0;
}

void
vlm_route_summary_release(struct vlm_route_summary *out)
{
	free(out->buf);
	memset(out, 0, sizeof(*out));
}

const char *
vlm_route_expert_kind(double img_share)
{
	if (isnan(img_share))
		return "-";
	return img_share > 0.9 ? "image" : img_share < 0.1 ? "text" : "mixed";
}

/* Fraction of class c's image assignments that went to expert e. */
static double
class_frac(const struct vlm_route_lstats *l, int E, int c, int e)
{
	double tot = 0;

	for (int x = 0; x < E; x++)
		tot += l->cls[(size_t)c * E + x];
	return tot > 0 ? l->cls[(size_t)c * E + e] / tot : 0;
}

int
vlm_route_top_classes(const struct vlm_route_stats *s, int layer, int e,
    int *top, double *frac, int n)
{
	const struct vlm_route_lstats *l = &s->l[layer];
	int k;

	for (k = 0; k < n; k++) {
		int best = -1;
		double bf = 0;
		for (int c = 0; c < l->ncls; c++) {
			double f = class_frac(l, s->E, c, e);
			int taken = 0;
			for (int i = 0; i < k; i++)
				taken |= top[i] == c;
			if (!taken && f > bf)
				best = c, bf = f;
		}
		if (best < 0)
			break;
		top[k] = best, frac[k] = bf;
	}
	return k;
}

int
vlm_route_diff_init(struct vlm_route_diff *d,
    const struct vlm_route_stats *a, const struct vlm_route_stats *b)
{
	size_t n = 2 * (size_t)a->nlayers;

	memset(d, 0, sizeof(*d));
	if (a->E != b->E || a->nlayers != b->nlayers)
		return vlm_error("the two streams come from models with other "
		    "MoE layers or expert counts (%d layers x %d experts, %d "
		    "x %d)", a->nlayers, a->E, b->nlayers, b->E);
	d->E = a->E, d->nlayers = a->nlayers, d->aligned = 1;
	d->same = calloc(n, sizeof(int64_t));
	d->total = calloc(n, sizeof(int64_t));
	d->trans = calloc(n * d->E * d->E, sizeof(int64_t));
	if (!d->same || !d->total || !d->trans) {
		vlm_route_diff_release(d);
		return vlm_error("out of memory");
	}
	return 0;
}

/* Do the current batches of a and b hold the same tokens? */
static int
same_tokens(const struct vlm_routes_reader *a,
    const struct vlm_routes_reader *b)
{
	if (a->modality != b->modality || a->n != b->n || a->ng != b->ng)
		return 0;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->ids[i], b->ids[i]) != 0)
			return 0;
	for (int j = 0; j < a->ng; j++) {
		const struct vlm_routes_group *ga = &a->g[j], *gb = &b->g[j];
		if (ga->layer != gb->layer || ga->S != gb->S ||
		    memcmp(ga->tok, gb->tok, 2 * sizeof(int32_t) * ga->S))
			return 0;
	}
	return 1;
}

void
vlm_route_diff_add(struct vlm_route_diff *d,
    const struct vlm_routes_reader *a, const struct vlm_routes_reader *b)
{
	int E = d->E;

	if (!d->aligned || !(d->aligned = same_tokens(a, b)))
		return;
	for (int j = 0; j < a->ng; j++) {
		const struct vlm_routes_group *ga = &a->g[j], *gb = &b->g[j];
		size_t at = (size_t)ga->layer * 2 + a->modality;
		for (int t = 0; t < ga->S; t++) {
			int ea = ga->idx[(size_t)t * a->K];
			int eb = gb->idx[(size_t)t * b->K];
			d->same[at] += ea == eb;
			d->total[at]++;
			d->trans[(at * E + ea) * E + eb]++;
		}
	}
}

void
vlm_route_diff_release(struct vlm_route_diff *d)
{
	free(d->same);
	free(d->total);
	free(d->trans);
	memset(d, 0, sizeof(*d));
}
