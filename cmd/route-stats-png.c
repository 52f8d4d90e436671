/*
 * route-stats-png.c - vlm-route-stats --png FILE: heatmaps as a PNG
 * image (8-bit RGB, libpng), written atomically. Panels, top to bottom:
 * for each modality with tokens, the share of its assignments per layer
 * (rows) and expert (columns); then, when the images carry labels, the
 * fraction of each class's assignments per expert in one layer. Colours
 * run from dark blue (0) through teal and green to yellow (the panel's
 * largest value, given in its title).
 *
 * Layout (pixels): margin 10; text in a built-in 5x7 bitmap font drawn
 * at scale 2 (12 per character, lines of 18); cells 28 x 18; a label
 * column of 12 per character of the longest row label (at least 6,
 * "expert", at most 16 characters) plus 12. Width 20 + label column +
 * 28 E, or 20 + 12 per character of the longest title if wider; each
 * panel a title line, a line of expert numbers and 18 per row; panels
 * 12 apart; height 20 + the panels.
 */
#include <ctype.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "route-stats.h"
#include "base/base.h"

enum { SCALE = 2, ADV = 6 * SCALE, LINE = 9 * SCALE, CW = 28, CH = 18,
	MARGIN = 10, GAP = 12, MAXLABEL = 16 };

/* 5x7 glyphs, one byte a row, bit 4 the leftmost column. Letters are
 * capitals (lower case is drawn with them). */
static const struct glyph {
	char c;
	unsigned char row[7];
} font[] = {
	{ '0', { 0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e } },
	{ '1', { 0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e } },
	{ '2', { 0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f } },
	{ '3', { 0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e } },
	{ '4', { 0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02 } },
	{ '5', { 0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e } },
	{ '6', { 0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e } },
	{ '7', { 0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08 } },
	{ '8', { 0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e } },
	{ '9', { 0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c } },
	{ 'A', { 0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11 } },
	{ 'B', { 0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e } },
	{ 'C', { 0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e } },
	{ 'D', { 0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c } },
	{ 'E', { 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f } },
	{ 'F', { 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10 } },
	{ 'G', { 0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f } },
	{ 'H', { 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11 } },
	{ 'I', { 0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e } },
	{ 'J', { 0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c } },
	{ 'K', { 0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11 } },
	{ 'L', { 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f } },
	{ 'M', { 0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11 } },
	{ 'N', { 0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11 } },
	{ 'O', { 0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e } },
	{ 'P', { 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10 } },
	{ 'Q', { 0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d } },
	{ 'R', { 0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11 } },
	{ 'S', { 0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e } },
	{ 'T', { 0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04 } },
	{ 'U', { 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e } },
	{ 'V', { 0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04 } },
	{ 'W', { 0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a } },
	{ 'X', { 0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11 } },
	{ 'Y', { 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04 } },
	{ 'Z', { 0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f } },
	{ ' ', { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 } },
	{ '.', { 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c } },
	{ ',', { 0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08 } },
	{ '-', { 0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00 } },
	{ '_', { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f } },
	{ ':', { 0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00 } },
	{ '/', { 0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10 } },
	{ '(', { 0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02 } },
	{ ')', { 0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08 } },
	{ '%', { 0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03 } },
	{ '+', { 0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00 } },
	{ '=', { 0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00 } },
	{ '\'', { 0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00 } },
	{ '?', { 0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04 } },
};
static const unsigned char box[7] = { 0x1f, 0x11, 0x11, 0x11, 0x11, 0x11,
	0x1f };

struct canvas {
	int w, h;
	unsigned char *px; /* (h,w,3) */
};

static const unsigned char *
glyph(int c)
{
	c = toupper(c);
	for (size_t i = 0; i < sizeof(font) / sizeof(*font); i++)
		if (font[i].c == c)
			return font[i].row;
	return box;
}

static void
fill(struct canvas *cv, int x0, int y0, int w, int h, const unsigned char *rgb)
{
	for (int y = y0 < 0 ? 0 : y0; y < y0 + h && y < cv->h; y++)
		for (int x = x0 < 0 ? 0 : x0; x < x0 + w && x < cv->w; x++)
			memcpy(cv->px + ((size_t)y * cv->w + x) * 3, rgb, 3);
}

/* Text s at (x, y), its top left; clipped at xmax. */
static void
text(struct canvas *cv, int x, int y, int xmax, const char *s)
{
	static const unsigned char ink[3] = { 0, 0, 0 };

	for (; *s && x + 5 * SCALE <= xmax; s++, x += ADV) {
		const unsigned char *g = glyph((unsigned char)*s);
		for (int r = 0; r < 7; r++)
			for (int c = 0; c < 5; c++)
				if (g[r] & (0x10 >> c))
					fill(cv, x + c * SCALE, y + r * SCALE,
					    SCALE, SCALE, ink);
	}
}

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
draw(struct canvas *cv, const struct panel *p, int y, int lw, int E)
{
	unsigned char rgb[3];
	char num[16];

	text(cv, MARGIN, y, cv->w - MARGIN, p->title);
	y += LINE;
	text(cv, MARGIN, y, MARGIN + lw, "expert");
	for (int e = 0; e < E; e++) {
		int k = snprintf(num, sizeof(num), "%d", e);
		text(cv, MARGIN + lw + e * CW + (CW - k * ADV + SCALE) / 2, y,
		    MARGIN + lw + (e + 1) * CW, num);
	}
	y += LINE;
	for (int r = 0; r < p->rows; r++, y += CH) {
		text(cv, MARGIN, y + (CH - 7 * SCALE) / 2, MARGIN + lw,
		    p->label[r]);
		for (int e = 0; e < E; e++) {
			colour(p->max > 0 ? p->v[(size_t)r * E + e] / p->max :
			    0, rgb);
			fill(cv, MARGIN + lw + e * CW, y, CW - 2, CH - 2, rgb);
		}
	}
	return y;
}

/* Write cv as an 8-bit RGB PNG to f. */
static int
write_png(FILE *f, const char *path, const struct canvas *cv)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL,
	    NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;

	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return vlm_error("'%s': out of memory", path);
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return vlm_error("'%s': cannot write the PNG", path);
	}
	png_init_io(png, f);
	png_set_IHDR(png, info, cv->w, cv->h, 8, PNG_COLOR_TYPE_RGB,
	    PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
	    PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int y = 0; y < cv->h; y++)
		png_write_row(png, cv->px + (size_t)y * cv->w * 3);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	return 0;
}

/* Draw panels p[0, n) on a white canvas sized for them. */
static int
render(struct canvas *cv, const struct panel *p, int n, int E)
{
	static const unsigned char white[3] = { 255, 255, 255 };
	int lw = 0, y = MARGIN;

	for (int i = 0; i < n; i++)
		for (int r = 0; r < p[i].rows; r++) {
			int k = (int)strlen(p[i].label[r]);
			lw = k > lw ? k : lw;
		}
	lw = (lw > 6 ? lw : 6) * ADV + 12;
	cv->w = 2 * MARGIN + lw + E * CW;
	for (int i = 0; i < n; i++)
		if (2 * MARGIN + (int)strlen(p[i].title) * ADV > cv->w)
			cv->w = 2 * MARGIN + (int)strlen(p[i].title) * ADV;
	cv->h = 2 * MARGIN - GAP;
	for (int i = 0; i < n; i++)
		cv->h += 2 * LINE + p[i].rows * CH + GAP;
	if (!(cv->px = malloc((size_t)cv->w * cv->h * 3)))
		return vlm_error("out of memory");
	fill(cv, 0, 0, cv->w, cv->h, white);
	for (int i = 0; i < n; i++)
		y = draw(cv, &p[i], y, lw, E) + GAP;
	return 0;
}

int
rs_png(const char *path, const struct vlm_route_stats *s, int layer)
{
	struct panel p[3];
	struct canvas cv = { 0, 0, NULL };
	struct vlm_atomic a;
	int n, rc = -1;

	memset(p, 0, sizeof(p));
	if ((n = panels(p, s, layer)) == 0)
		vlm_error("'%s': no routed tokens to draw", path);
	if (n > 0 && render(&cv, p, n, s->E) == 0 &&
	    vlm_atomic_open(&a, path) == 0) {
		if (write_png(a.f, path, &cv) < 0)
			vlm_atomic_abort(&a);
		else
			rc = vlm_atomic_commit(&a);
	}
	for (int i = 0; i < 3; i++) {
		free(p[i].label);
		free(p[i].v);
	}
	free(cv.px);
	return rc;
}
