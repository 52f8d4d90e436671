/*
 * route-stats-png.c - vlm-route-stats --png FILE: heatmaps as a PNG
 * image (8-bit RGB, libpng), written atomically. Panels, top to bottom:
 * for each modality with tokens, the share of its assignments per layer
 * (rows) and expert (columns); then, when the images carry labels, the
 * fraction of each class's assignments per expert in one layer. Colours
 * run from dark blue (0) through teal and green to yellow (the panel's
 * largest value, given in its title).
 *
 * Layout (pixels): margin 10; text in the 5x7 bitmap font of libcore/plot
 * (12 per character, lines of 18); cells 28 x 18; a label column of 12
 * per character of the longest row label (at least 6,
 * "expert", at most 16 characters) plus 12. Width 20 + label column +
 * 28 E, or 20 + 12 per character of the longest title if wider; each
 * panel a title line, a line of expert numbers and 18 per row; panels
 * 12 apart; height 20 + the panels.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "route-stats.h"
#include "base/base.h"
#include "plot/plot.h"

enum { ADV = VLM_FONT_ADV, LINE = VLM_FONT_LINE, CW = 28, CH = 18,
	MARGIN = 10, GAP = 12, MAXLABEL = 16 };

static const unsigned char ink[3] = { 0, 0, 0 };

/* Colour of t in [0, 1]: dark blue, blue, teal, green, yellow. */
static void
colour(double t, unsigned char *rgb)
{
	static const unsigned char stop[5][3] = { { 68, 1, 84 },
		{ 59, 82, 139 }, { 33, 145, 140 }, { 94, 201, 98 },
		{ 253, 231, 37 } };
	double u = (isnan(t) || t < 0 ? 0 : t > 1 ? 1 : t) * 4;
	int i = u >= 4 ? 3 : (int)u;

	for (int k = 0; k < 3; k++)
		rgb[k] = (unsigned char)lround(stop[i][k] + (u - i) *
		    (stop[i + 1][k] - stop[i][k]));
}

struct panel {
	char title[160];
	int rows;
	char (*label)[MAXLABEL + 1]; /* [rows] */
	double *v;                   /* (rows, E) */
	double max;
};

/* A panel of rows x E values; its arrays zeroed. */
static int
panel_new(struct panel *p, int rows, int E)
{
	memset(p, 0, sizeof(*p));
	p->rows = rows;
	p->label = calloc(rows ? rows : 1, sizeof(*p->label));
	p->v = calloc((size_t)(rows ? rows : 1) * E, sizeof(double));
	return p->label && p->v ? 0 : vlm_error("out of memory");
}

/* Layer x expert shares of modality m. */
static int
share_panel(struct panel *p, const struct vlm_route_stats *s, int m)
{
	struct vlm_route_summary u;
	char label[64];
	int n = 0;

	for (int l = 0; l < s->nlayers; l++)
		n += rs_has(s, l, m);
	if (panel_new(p, n, s->E) < 0)
		return -1;
	n = 0;
	for (int l = 0; l < s->nlayers; l++) {
		if (!rs_has(s, l, m) || vlm_route_summarize(s, l, m, &u) < 0)
			continue;
		rs_layer_label(label, sizeof(label), &s->layers[l]);
		snprintf(p->label[n], MAXLABEL + 1, "%.*s", MAXLABEL, label);
		for (int e = 0; e < s->E; e++)
			p->v[(size_t)n * s->E + e] = u.share[e];
		vlm_route_summary_release(&u);
		n++;
	}
	return 0;
}

/* Class x expert fractions of layer l. */
static int
class_panel(struct panel *p, const struct vlm_route_stats *s, int l)
{
	const struct vlm_route_lstats *ls = &s->l[l];
	char label[64];

	if (panel_new(p, ls->ncls, s->E) < 0)
		return -1;
	for (int c = 0; c < ls->ncls; c++) {
		const double *row = ls->cls + (size_t)c * s->E;
		double n = 0;
		for (int e = 0; e < s->E; e++)
			n += row[e];
		for (int e = 0; e < s->E; e++)
			p->v[(size_t)c * s->E + e] = n > 0 ? row[e] / n : 0;
		if (c < s->nclasses)
			snprintf(p->label[c], MAXLABEL + 1, "%.*s", MAXLABEL,
			    s->classes[c]);
		else
			snprintf(p->label[c], MAXLABEL + 1, "%d", c);
	}
	rs_layer_label(label, sizeof(label), &s->layers[l]);
	snprintf(p->title, sizeof(p->title), "%s classes", label);
	return 0;
}

/* The panels of s: shares per modality, classes of one layer. */
static int
panels(struct panel *p, const struct vlm_route_stats *s, int layer)
{
	int n = 0, last = -1;

	for (int m = 0; m < 2; m++) {
		int any = 0;
		for (int l = 0; l < s->nlayers; l++)
			any |= rs_has(s, l, m);
		if (!any)
			continue;
		if (share_panel(&p[n], s, m) < 0)
			return -1;
		snprintf(p[n++].title, sizeof(p->title), "%s share",
		    m ? "text" : "image");
	}
	for (int l = 0; l < s->nlayers; l++)
		if (rs_has(s, l, 0) && s->l[l].ncls)
			last = l;
	if (layer >= 0)
		last = rs_has(s, layer, 0) && s->l[layer].ncls ? layer : -1;
	if (last >= 0 && class_panel(&p[n++], s, last) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < (size_t)p[i].rows * s->E; k++)
			p[i].max = p[i].v[k] > p[i].max ? p[i].v[k] : p[i].max;
		snprintf(p[i].title + strlen(p[i].title), sizeof(p->title) -
		    strlen(p[i].title), " (max %.3f)", p[i].max);
	}
	return n;
}

/* Draw panel p with its top at y; returns the y below it. */
static int
draw(struct vlm_canvas *cv, const struct panel *p, int y, int lw, int E)
{
	unsigned char rgb[3];
	char num[16];

	vlm_canvas_text(cv, MARGIN, y, cv->w - MARGIN, p->title, ink);
	y += LINE;
	vlm_canvas_text(cv, MARGIN, y, MARGIN + lw, "expert", ink);
	for (int e = 0; e < E; e++) {
		int k = snprintf(num, sizeof(num), "%d", e);
		vlm_canvas_text(cv, MARGIN + lw + e * CW + (CW - k * ADV + 2) /
		    2, y, MARGIN + lw + (e + 1) * CW, num, ink);
	}
	y += LINE;
	for (int r = 0; r < p->rows; r++, y += CH) {
		vlm_canvas_text(cv, MARGIN, y + (CH - VLM_FONT_H) / 2,
		    MARGIN + lw, p->label[r], ink);
		for (int e = 0; e < E; e++) {
			colour(p->max > 0 ? p->v[(size_t)r * E + e] / p->max :
			    0, rgb);
			vlm_canvas_fill(cv, MARGIN + lw + e * CW, y, CW - 2,
			    CH - 2, rgb);
		}
	}
	return y;
}

/* Draw panels p[0, n) on a white canvas sized for them. */
static int
render(struct vlm_canvas *cv, const struct panel *p, int n, int E)
{
	int lw = 0, w, h, y = MARGIN;

	for (int i = 0; i < n; i++)
		for (int r = 0; r < p[i].rows; r++) {
			int k = (int)strlen(p[i].label[r]);
			lw = k > lw ? k : lw;
		}
	lw = (lw > 6 ? lw : 6) * ADV + 12;
	w = 2 * MARGIN + lw + E * CW;
	for (int i = 0; i < n; i++)
		if (2 * MARGIN + (int)strlen(p[i].title) * ADV > w)
			w = 2 * MARGIN + (int)strlen(p[i].title) * ADV;
	h = 2 * MARGIN - GAP;
	for (int i = 0; i < n; i++)
		h += 2 * LINE + p[i].rows * CH + GAP;
	if (vlm_canvas_init(cv, w, h) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		y = draw(cv, &p[i], y, lw, E) + GAP;
	return 0;
}

int
rs_png(const char *path, const struct vlm_route_stats *s, int layer)
{
	struct panel p[3];
	struct vlm_canvas cv = { 0, 0, NULL };
	int n, rc = -1;

	memset(p, 0, sizeof(p));
	if ((n = panels(p, s, layer)) == 0)
		vlm_error("'%s': no routed tokens to draw", path);
	if (n > 0 && render(&cv, p, n, s->E) == 0)
		rc = vlm_canvas_save(&cv, path);
	for (int i = 0; i < 3; i++) {
		free(p[i].label);
		free(p[i].v);
	}
	vlm_canvas_release(&cv);
	return rc;
}
