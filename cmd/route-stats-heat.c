/*
 * route-stats-heat.c - vlm-route-stats --heatmap: heatmaps drawn with
 * Unicode block shading (and ANSI 256-colour when stdout is a
 * terminal): for each modality the share of its assignments per layer
 * and expert, and for each shown layer with labelled images the
 * fraction of each class's assignments per expert. Shades are scaled to
 * the largest value of each map, which the map's title gives.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "route-stats.h"

#define LABEL_W 16

/* One cell for v in [0, max]: two shading characters (or coloured
 * full blocks) and a space. */
static void
cell(double v, double max, int color)
{
	static const char *const shade[] = { "  ", "\u2591\u2591",
		"\u2592\u2592", "\u2593\u2593", "\u2588\u2588" };
	static const int ramp[] = { 17, 18, 19, 25, 31, 37, 43, 78, 114, 149,
		184, 226 };
	double t = max > 0 && !isnan(v) ? v / max : 0;
	int lv = t <= 0 ? 0 : 1 + (int)(t * 3.999);

	if (color && t > 0)
		printf("\033[38;5;%dm%s\033[0m ", ramp[(int)(t * 11.999)],
		    shade[lv]);
	else
		printf("%s ", shade[lv]);
}

/* Column heads: expert numbers over the cells. */
static void
heads(int E)
{
	printf("%-*s", LABEL_W, "");
	for (int e = 0; e < E; e++)
		printf("%-3d", e);
	putchar('\n');
}

static double
maxof(const double *x, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = !isnan(x[i]) && x[i] > m ? x[i] : m;
	return m;
}

/* Does the map of modality m show layer l? */
static int
shown(const struct vlm_route_stats *s, const struct rs_opts *o, int l,
    int m)
{
	return (o->layer < 0 || o->layer == l) && rs_has(s, l, m);
}

/* Layer x expert shares of modality m. */
static void
share_map(const struct vlm_route_stats *s, int m, const struct rs_opts *o)
{
	double *x = calloc((size_t)s->nlayers * s->E, sizeof(double)), mx;
	struct vlm_route_summary u;
	char label[64];

	if (!x)
		return;
	for (int l = 0; l < s->nlayers; l++)
		if (shown(s, o, l, m) && vlm_route_summarize(s, l, m, &u) == 0) {
			for (int e = 0; e < s->E; e++)
				x[(size_t)l * s->E + e] = u.share[e];
			vlm_route_summary_release(&u);
		}
	mx = maxof(x, (size_t)s->nlayers * s->E);
	printf("%s tokens: share of assignments per layer and expert "
	    "(full: %.3f)\n", m ? "text" : "image", mx);
	heads(s->E);
	for (int l = 0; l < s->nlayers; l++) {
		if (!shown(s, o, l, m))
			continue;
		rs_layer_label(label, sizeof(label), &s->layers[l]);
		printf("%-*.*s", LABEL_W, LABEL_W - 1, label);
		for (int e = 0; e < s->E; e++)
			cell(x[(size_t)l * s->E + e], mx, o->color);
		putchar('\n');
	}
	putchar('\n');
	free(x);
}

/* Class x expert fractions of layer l. */
static void
class_map(const struct vlm_route_stats *s, int l, int color)
{
	const struct vlm_route_lstats *ls = &s->l[l];
	double mx = 0, n;
	char label[64], num[16];

	for (int pass = 0; pass < 2; pass++) {
		for (int c = 0; c < ls->ncls; c++) {
			const double *row = ls->cls + (size_t)c * s->E;
			n = 0;
			for (int e = 0; e < s->E; e++)
				n += row[e];
			if (pass == 1) {
				snprintf(num, sizeof(num), "%d", c);
				printf("%-*.*s", LABEL_W, LABEL_W - 1, c <
				    s->nclasses ? s->classes[c] : num);
			}
			for (int e = 0; e < s->E && n > 0; e++) {
				if (pass == 0 && row[e] / n > mx)
					mx = row[e] / n;
				else if (pass == 1)
					cell(row[e] / n, mx, color);
			}
			if (pass == 1)
				putchar('\n');
		}
		if (pass == 0) {
			rs_layer_label(label, sizeof(label), &s->layers[l]);
			printf("layer %d (%s): fraction of each class's image "
			    "assignments per expert (full: %.3f)\n", l, label,
			    mx);
			heads(s->E);
		}
	}
	putchar('\n');
}

void
rs_print_heatmap(const struct vlm_route_stats *s, const struct rs_opts *o)
{
	for (int m = 0; m < 2; m++) {
		int any = 0;
		for (int l = 0; l < s->nlayers; l++)
			any |= shown(s, o, l, m);
		if (any)
			share_map(s, m, o);
	}
	for (int l = 0; l < s->nlayers; l++)
		if ((o->layer < 0 || o->layer == l) && s->l[l].ncls &&
		    rs_has(s, l, 0))
			class_map(s, l, o->color);
}
