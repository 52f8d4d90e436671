/*
 * route-stats-print.c - the reports of vlm-route-stats on stdout: an
 * aligned table per MoE layer (a line per modality, a line per
 * modality and expert, each expert's top classes), one tidy TSV table
 * (experts, or with --classes the class x expert counts, or with
 * --positions the position x expert counts), and the differences
 * between two streams.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route-stats.h"

static const char *const mod_names[] = { "image", "text", "all" };

void
rs_layer_label(char *buf, size_t n, const struct vlm_routes_layer *l)
{
	static const char *const tower[] = { "vision", "text", "block",
		"fusion" };
	int pooled = strstr(l->name, ".moe.") != NULL;

	snprintf(buf, n, "%s %d%s", tower[l->tower], l->block, !pooled ? "" :
	    l->pool ? " text" : " image");
}

int
rs_has(const struct vlm_route_stats *s, int l, int mod)
{
	if (mod == 2)
		return s->l[l].m[0].tokens + s->l[l].m[1].tokens > 0;
	return s->l[l].m[mod].tokens > 0;
}

/* Is layer l to be shown? */
static int
shown(const struct rs_opts *o, int l)
{
	return o->layer < 0 || o->layer == l;
}

/* Modalities a report shows for layer l: the present ones, and "all"
 * when both are. */
static int
mods(const struct vlm_route_stats *s, int l, int *m)
{
	int k = 0;

	for (int i = 0; i < 2; i++)
		if (rs_has(s, l, i))
			m[k++] = i;
	if (k == 2)
		m[k++] = 2;
	return k;
}

/* printf a number with prec decimals, or "-" when it is NaN. */
void
rs_num(int width, int prec, double v)
{
	if (isnan(v))
		printf(" %*s", width, "-");
	else
		printf(" %*.*f", width, prec, v);
}

static void
layer_line(const struct vlm_route_summary *u, int m)
{
	printf("%-8s %9lld", mod_names[m], (long long)u->tokens);
	rs_num(8, 4, u->drop_tokens);
	rs_num(8, 4, u->drop_assign);
	rs_num(8, 4, u->imp_cv2);
	rs_num(8, 4, u->load_cv2);
	rs_num(7, 3, u->eff_experts);
	rs_num(7, 4, u->entropy);
	rs_num(8, 4, u->zloss);
	rs_num(7, 3, u->zmean);
	rs_num(7, 3, u->zmax);
	putchar('\n');
}

static void
expert_line(const struct vlm_route_summary *u, int m, int e)
{
	printf("%-8s %6d %9.0f %9.0f", mod_names[m], e, u->load[e],
	    u->kept[e]);
	rs_num(7, 4, u->share[e]);
	rs_num(7, 4, u->gate[e]);
	rs_num(7, 4, u->use[e]);
	if (m == 2) {
		rs_num(9, 4, u->img_share[e]);
		printf("  %s", vlm_route_expert_kind(u->img_share[e]));
	}
	putchar('\n');
}

/* The name of class c (its number when the stream names none). */
static const char *
class_name(const struct vlm_route_stats *s, int c, char *buf, size_t n)
{
	if (c < s->nclasses)
		return s->classes[c];
	snprintf(buf, n, "%d", c);
	return buf;
}

/* Each expert's top three classes. */
static void
top_classes(const struct vlm_route_stats *s, int l)
{
	int top[3];
	double frac[3];
	char name[24];

	if (s->l[l].ncls == 0 || !rs_has(s, l, 0))
		return;
	printf("\nexpert  top classes (share of the class's image "
	    "assignments)\n");
	for (int e = 0; e < s->E; e++) {
		int k = vlm_route_top_classes(s, l, e, top, frac, 3);
		printf("%6d ", e);
		for (int i = 0; i < k; i++)
			printf(" %s %.3f", class_name(s, top[i], name,
			    sizeof(name)), frac[i]);
		printf("%s\n", k ? "" : " -");
	}
}

/* The class x expert matrix of layer l: fractions of each class row. */
static void
class_matrix(const struct vlm_route_stats *s, int l)
{
	const struct vlm_route_lstats *ls = &s->l[l];
	char name[24];

	if (ls->ncls == 0 || !rs_has(s, l, 0))
		return;
	printf("\n%-20s %8s", "class", "n");
	for (int e = 0; e < s->E; e++)
		printf(" %6d", e);
	putchar('\n');
	for (int c = 0; c < ls->ncls; c++) {
		const double *row = ls->cls + (size_t)c * s->E;
		double n = 0;
		for (int e = 0; e < s->E; e++)
			n += row[e];
		printf("%-20.20s %8.0f", class_name(s, c, name, sizeof(name)),
		    n);
		for (int e = 0; e < s->E; e++)
			rs_num(6, 3, n > 0 ? row[e] / n : NAN);
		putchar('\n');
	}
}

/* The expert most image tokens at position t go to; -1 if none. */
static int
dominant(const struct vlm_route_stats *s, int l, int t)
{
	const double *row = s->l[l].pos + (size_t)t * s->E;
	int best = -1;

	for (int e = 0; e < s->E; e++)
		if (row[e] > 0 && (best < 0 || row[e] > row[best]))
			best = e;
	return best;
}

/* The patch grid of layer l: each patch's dominant expert. */
static void
position_map(const struct vlm_route_stats *s, int l)
{
	int g = s->grid, c = s->cls, d;

	if (!rs_has(s, l, 0) || g * g + c != s->image_tokens ||
	    s->l[l].npos != s->image_tokens) /* learned tokens: no grid */
		return;
	printf("\ndominant expert per patch (%dx%d)", g, g);
	if (c && (d = dominant(s, l, 0)) >= 0)
		printf(", class token: %d", d);
	putchar('\n');
	for (int y = 0; y < g; y++) {
		for (int x = 0; x < g; x++) {
			d = dominant(s, l, c + y * g + x);
			if (d < 0)
				printf(" %3s", "-");
			else
				printf(" %3d", d);
		}
		putchar('\n');
	}
}

void
rs_print_table(const struct vlm_route_stats *s, const char *name,
    const struct rs_opts *o)
{
	struct vlm_route_summary u;
	char label[64];
	int m[3], k;

	printf("# %s: %lld batches, %lld images, %lld texts; %d experts, "
	    "top-%d\n", name, (long long)s->batches,
	    (long long)s->examples[0], (long long)s->examples[1], s->E, s->K);
	for (int l = 0; l < s->nlayers; l++) {
		if (!shown(o, l) || (k = mods(s, l, m)) == 0)
			continue;
		rs_layer_label(label, sizeof(label), &s->layers[l]);
		printf("\nlayer %d: %s (%s)\n%-8s %9s %8s %8s %8s %8s %7s %7s "
		    "%8s %7s %7s\n", l, label, s->layers[l].name, "modality",
		    "tokens", "drop_tok", "drop_asg", "imp_cv2", "load_cv2",
		    "eff_exp", "entropy", "z_loss", "z_mean", "z_max");
		for (int i = 0; i < k; i++)
			if (vlm_route_summarize(s, l, m[i], &u) == 0) {
				layer_line(&u, m[i]);
				vlm_route_summary_release(&u);
			}
		printf("\n%-8s %6s %9s %9s %7s %7s %7s%s\n", "modality",
		    "expert", "load", "kept", "share", "gate", "use",
		    k == 3 ? " img_share  kind" : "");
		for (int i = 0; i < k; i++) {
			if (vlm_route_summarize(s, l, m[i], &u) < 0)
				continue;
			for (int e = 0; e < s->E; e++)
				expert_line(&u, m[i], e);
			vlm_route_summary_release(&u);
		}
		top_classes(s, l);
		if (o->classes)
			class_matrix(s, l);
		if (o->positions)
			position_map(s, l);
	}
}

/* A TSV number: %.17g keeps every bit of a double; "nan" for NaN. */
static void
tnum(double v)
{
	if (isnan(v))
		fputs("\tnan", stdout);
	else
		printf("\t%.17g", v);
}

static void
tsv_experts(const struct vlm_route_stats *s, int l)
{
	struct vlm_route_summary u;
	int m[3], k = mods(s, l, m);

	for (int i = 0; i < k; i++) {
		if (vlm_route_summarize(s, l, m[i], &u) < 0)
			continue;
		for (int e = 0; e < s->E; e++) {
			printf("%d\t%s\t%s\t%d\t%lld", l, s->layers[l].name,
			    mod_names[m[i]], e, (long long)u.tokens);
			tnum(u.load[e]), tnum(u.kept[e]), tnum(u.share[e]);
			tnum(u.gate[e]), tnum(u.use[e]), tnum(u.img_share[e]);
			printf("\t%s", vlm_route_expert_kind(u.img_share[e]));
			tnum(u.drop_tokens), tnum(u.drop_assign);
			tnum(u.imp_cv2), tnum(u.load_cv2);
			tnum(u.eff_experts), tnum(u.entropy), tnum(u.zloss);
			tnum(u.zmean), tnum(u.zmax);
			putchar('\n');
		}
		vlm_route_summary_release(&u);
	}
}

/* Rows of a (rows, E) count matrix: a key column, counts, fractions. */
static void
tsv_matrix(const struct vlm_route_stats *s, int l, const double *x, int rows,
    int positions)
{
	char name[24];

	for (int r = 0; r < rows; r++) {
		const double *row = x + (size_t)r * s->E;
		double n = 0;
		for (int e = 0; e < s->E; e++)
			n += row[e];
		for (int e = 0; e < s->E; e++) {
			printf("%d\t%s\t%d\t", l, s->layers[l].name, r);
			int p = r - s->cls;
			if (positions)
				printf("%d\t%d", p < 0 ? -1 : p / s->grid,
				    p < 0 ? -1 : p % s->grid);
			else
				fputs(class_name(s, r, name, sizeof(name)),
				    stdout);
			printf("\t%d\t%.0f", e, row[e]);
			tnum(n > 0 ? row[e] / n : NAN);
			putchar('\n');
		}
	}
}

void
rs_print_tsv(const struct vlm_route_stats *s, const struct rs_opts *o)
{
	if (o->classes)
		puts("layer\tname\tlabel\tclass\texpert\tcount\tfraction");
	else if (o->positions)
		puts("layer\tname\tposition\trow\tcol\texpert\tcount\t"
		    "fraction");
	else
		puts("layer\tname\tmodality\texpert\ttokens\tload\tkept\t"
		    "share\tgate\tuse\timg_share\tkind\tdrop_tokens\t"
		    "drop_assign\timp_cv2\tload_cv2\teff_experts\tentropy\t"
		    "zloss\tz_mean\tz_max");
	for (int l = 0; l < s->nlayers; l++) {
		if (!shown(o, l))
			continue;
		if (o->classes)
			tsv_matrix(s, l, s->l[l].cls, s->l[l].ncls, 0);
		else if (o->positions)
			tsv_matrix(s, l, s->l[l].pos, rs_has(s, l, 0) ?
			    s->l[l].npos : 0, 1);
		else
			tsv_experts(s, l);
	}
}
