/*
 * chart.c - line charts (several series, markers, optional error bars)
 * and horizontal bar charts (groups of bars, error bars) on a
 * vlm_canvas, with a title, axis labels, round ticks with labels, light
 * grid lines and a legend. The layout is in plot.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "plot/plot.h"

enum { M = 10, SW = 16, TICK = 4, NTICK = 5, MAXNAME = 24, THICK = 2 };

static const unsigned char ink[3] = { 0, 0, 0 };
static const unsigned char grey[3] = { 90, 90, 90 };
static const unsigned char gridc[3] = { 228, 228, 228 };

/* A round step (1, 2 or 5 times a power of ten) giving about NTICK
 * ticks over [lo, hi]. */
static double
nice_step(double lo, double hi)
{
	double raw = (hi - lo) / NTICK, p = pow(10, floor(log10(raw)));
	double f = raw / p;

	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* [lo, hi] widened to multiples of its tick step (returned); a flat
 * range first gets room around it. */
static double
axis_range(double *lo, double *hi)
{
	double st, d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;

	if (!(*hi > *lo))
		*lo -= d, *hi += d;
	st = nice_step(*lo, *hi);
	*lo = floor(*lo / st + 1e-9) * st;
	*hi = ceil(*hi / st - 1e-9) * st;
	return st;
}

/* The label of tick v: as many decimals as the step needs. */
static int
tick_label(char *buf, size_t n, double v, double step)
{
	int d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);

	return snprintf(buf, n, "%.*f", d > 6 ? 6 : d,
	    fabs(v) < step * 1e-6 ? 0.0 : v);
}

/* The data range of the series: values (with error bars) into
 * [*vlo, *vhi], line x into [*xlo, *xhi]; the finite points. */
static int
data_range(const struct vlm_chart *c, const struct vlm_series *s, int ns,
    double *xlo, double *xhi, double *vlo, double *vhi)
{
	int n = 0;

	*xlo = *vlo = INFINITY, *xhi = *vhi = -INFINITY;
	if (c->bars)
		*vlo = *vhi = 0;
	for (int k = 0; k < ns; k++)
		for (int i = 0; i < s[k].n; i++) {
			double y = s[k].y[i], x = c->bars ? 0 : s[k].x[i];
			double e = s[k].err && isfinite(s[k].err[i]) ?
			    s[k].err[i] : 0;
			if (!isfinite(y) || !isfinite(x) ||
			    (c->bars && i >= c->ngroups))
				continue;
			n++;
			*xlo = fmin(*xlo, x), *xhi = fmax(*xhi, x);
			*vlo = fmin(*vlo, y - fabs(e));
			*vhi = fmax(*vhi, y + fabs(e));
		}
	return n;
}

/* Is s[k] the first series with its (non-NULL) label? */
static int
legend_entry(const struct vlm_series *s, int k)
{
	if (!s[k].label || !*s[k].label)
		return 0;
	for (int j = 0; j < k; j++)
		if (s[j].label && strcmp(s[j].label, s[k].label) == 0)
			return 0;
	return 1;
}

void
vlm_chart_px(const struct vlm_chart *c, double x, double y, int *px,
    int *py)
{
	double t = (y - c->ylo) / (c->yhi - c->ylo);

	*px = c->left + (int)lround((x - c->xlo) / (c->xhi - c->xlo) *
	    (c->right - c->left));
	*py = c->bars ? c->top + (int)lround(t * (c->bottom - c->top)) :
	    c->bottom - (int)lround(t * (c->bottom - c->top));
}

/* The plot area of c on cv, given the widths of the left labels and of
 * the legend labels (characters). */
static int
layout(struct vlm_canvas *cv, struct vlm_chart *c, int labw, int legw)
{
	c->left = M + labw * VLM_FONT_ADV + 8;
	c->top = M + 2 * VLM_FONT_LINE + 6;
	c->right = cv->w - 1 - M - (legw ? SW + 8 + legw * VLM_FONT_ADV +
	    M : 3 * VLM_FONT_ADV); /* room for the last tick label */
	c->bottom = cv->h - 1 - M - 2 * VLM_FONT_LINE - TICK;
	if (c->right - c->left < 40 || c->bottom - c->top < 40)
		return vlm_error("chart: a %d x %d canvas is too small for "
		    "its labels and legend", cv->w, cv->h);
	return 0;
}

/* Ticks, grid lines and their labels along the value axis (x for bars,
 * y for lines), and x ticks of line charts. */
static void
axes(struct vlm_canvas *cv, const struct vlm_chart *c, double xst,
    double yst)
{
	char b[32];
	int px, py, n, w = 0, every, i = 0;
	double gap = (c->right - c->left) / ((c->xhi - c->xlo) / xst);

	for (double v = c->xlo; v <= c->xhi + xst * 1e-6; v += xst)
		w = fmax(w, tick_label(b, sizeof(b), v, xst) * VLM_FONT_ADV);
	every = (int)ceil((w + VLM_FONT_ADV) / gap); /* labels that fit */
	for (double v = c->xlo; v <= c->xhi + xst * 1e-6; v += xst, i++) {
		vlm_chart_px(c, v, c->ylo, &px, &py);
		vlm_canvas_fill(cv, px, c->top, 1, c->bottom - c->top, gridc);
		vlm_canvas_fill(cv, px, c->bottom, 1, TICK + 1, ink);
		n = tick_label(b, sizeof(b), v, xst);
		if (i % every == 0)
			vlm_canvas_text(cv, px - n * VLM_FONT_ADV / 2,
			    c->bottom + TICK + 3, cv->w, b, ink);
	}
	for (double v = c->ylo; !c->bars && v <= c->yhi + yst * 1e-6;
	    v += yst) {
		vlm_chart_px(c, c->xlo, v, &px, &py);
		vlm_canvas_fill(cv, c->left, py, c->right - c->left, 1, gridc);
		vlm_canvas_fill(cv, c->left - TICK, py, TICK, 1, ink);
		n = tick_label(b, sizeof(b), v, yst);
		vlm_canvas_text(cv, c->left - 6 - n * VLM_FONT_ADV, py -
		    VLM_FONT_H / 2, c->left, b, ink);
	}
}

/* An error bar from value a to b at position p across the value axis
 * (vertical in line charts), with caps. */
static void
errbar(struct vlm_canvas *cv, const struct vlm_chart *c, double pos,
    double a, double b, const unsigned char *rgb)
{
	int x0, y0, x1, y1;

	if (c->bars) {
		vlm_chart_px(c, a, pos, &x0, &y0);
		vlm_chart_px(c, b, pos, &x1, &y1);
		vlm_canvas_line(cv, x0, y0, x1, y1, 1, rgb);
		vlm_canvas_fill(cv, x0, y0 - 3, 1, 7, rgb);
		vlm_canvas_fill(cv, x1, y1 - 3, 1, 7, rgb);
	} else {
		vlm_chart_px(c, pos, a, &x0, &y0);
		vlm_chart_px(c, pos, b, &x1, &y1);
		vlm_canvas_line(cv, x0, y0, x1, y1, 1, rgb);
		vlm_canvas_fill(cv, x0 - 3, y0, 7, 1, rgb);
		vlm_canvas_fill(cv, x1 - 3, y1, 7, 1, rgb);
	}
}

/* Series k as a line with markers; NaN points leave gaps. */
static void
draw_line(struct vlm_canvas *cv, const struct vlm_chart *c,
    const struct vlm_series *s)
{
	const unsigned char *rgb = vlm_palette[s->colour % VLM_PALETTE];
	int px, py, lx = 0, ly = 0, have = 0;

	for (int i = 0; i < s->n; i++) {
		if (!isfinite(s->x[i]) || !isfinite(s->y[i])) {
			have = 0;
			continue;
		}
		vlm_chart_px(c, s->x[i], s->y[i], &px, &py);
		if (have)
			vlm_canvas_line(cv, lx, ly, px, py, THICK, rgb);
		vlm_canvas_fill(cv, px - 2, py - 2, 5, 5, rgb);
		if (s->err && isfinite(s->err[i]))
			errbar(cv, c, s->x[i], s->y[i] - s->err[i],
			    s->y[i] + s->err[i], ink);
		lx = px, ly = py, have = 1;
	}
}

/* Bar k of ns of each group, from 0 to its value. */
static void
draw_bars(struct vlm_canvas *cv, const struct vlm_chart *c,
    const struct vlm_series *s, int k, int ns)
{
	const unsigned char *rgb = vlm_palette[s->colour % VLM_PALETTE];
	int x0, y0, x1, y1;

	for (int i = 0; i < s->n && i < c->ngroups; i++) {
		double a = i + 0.1 + 0.8 * k / ns, b = i + 0.1 + 0.8 *
		    (k + 1) / ns, v = s->y[i];
		if (!isfinite(v))
			continue;
		vlm_chart_px(c, fmin(0, v), a, &x0, &y0);
		vlm_chart_px(c, fmax(0, v), b, &x1, &y1);
		vlm_canvas_fill(cv, x0, y0, x1 - x0 + 1, y1 - y0, rgb);
		if (s->err && isfinite(s->err[i]))
			errbar(cv, c, (a + b) / 2, v - s->err[i],
			    v + s->err[i], ink);
	}
}

/* Title, y label, x label, group names, legend. */
static void
labels(struct vlm_canvas *cv, const struct vlm_chart *c,
    const struct vlm_series *s, int ns)
{
	int px, py, y = c->top;

	if (c->title)
		vlm_canvas_text(cv, M, M, cv->w - M, c->title, ink);
	if (c->ylabel)
		vlm_canvas_text(cv, M, M + VLM_FONT_LINE, cv->w - M,
		    c->ylabel, grey);
	if (c->xlabel)
		vlm_canvas_text(cv, (c->left + c->right - (int)strlen(
		    c->xlabel) * VLM_FONT_ADV) / 2, cv->h - M - VLM_FONT_H,
		    cv->w - M, c->xlabel, grey);
	for (int i = 0; c->bars && i < c->ngroups; i++) {
		vlm_chart_px(c, c->xlo, i + 0.5, &px, &py);
		vlm_canvas_text(cv, M, py - VLM_FONT_H / 2, c->left - 8,
		    c->groups[i], ink);
	}
	for (int k = 0; k < ns; k++) {
		if (!legend_entry(s, k))
			continue;
		vlm_canvas_fill(cv, c->right + M + 1, y + 2, SW, 10,
		    vlm_palette[s[k].colour % VLM_PALETTE]);
		vlm_canvas_text(cv, c->right + M + 1 + SW + 8, y, cv->w - M,
		    s[k].label, ink);
		y += VLM_FONT_LINE;
	}
}

int
vlm_chart_draw(struct vlm_canvas *cv, struct vlm_chart *c,
    const struct vlm_series *s, int ns)
{
	static const unsigned char white[3] = { 255, 255, 255 };
	double xlo, xhi, vlo, vhi, xst, yst = 1;
	int labw = 0, legw = 0;
	char b[32];

	if (data_range(c, s, ns, &xlo, &xhi, &vlo, &vhi) == 0)
		return vlm_error("chart '%s': no finite point to draw",
		    c->title ? c->title : "");
	for (int k = 0; k < ns; k++)
		if (legend_entry(s, k) && (int)strlen(s[k].label) > legw)
			legw = (int)strlen(s[k].label);
	if (c->bars) {
		xst = axis_range(&vlo, &vhi);
		c->xlo = vlo, c->xhi = vhi, c->ylo = 0, c->yhi = c->ngroups;
		for (int i = 0; i < c->ngroups; i++)
			labw = fmax(labw, fmin(strlen(c->groups[i]), MAXNAME));
	} else {
		xst = axis_range(&xlo, &xhi);
		yst = axis_range(&vlo, &vhi);
		c->xlo = xlo, c->xhi = xhi, c->ylo = vlo, c->yhi = vhi;
		for (double v = vlo; v <= vhi + yst * 1e-6; v += yst)
			labw = fmax(labw, tick_label(b, sizeof(b), v, yst));
	}
	if (layout(cv, c, labw, legw) < 0)
		return -1;
	vlm_canvas_fill(cv, 0, 0, cv->w, cv->h, white);
	axes(cv, c, xst, yst);
	for (int k = 0; k < ns; k++)
		if (c->bars)
			draw_bars(cv, c, &s[k], k, ns);
		else
			draw_line(cv, c, &s[k]);
	vlm_canvas_fill(cv, c->left, c->top, 1, c->bottom - c->top + 1, ink);
	vlm_canvas_fill(cv, c->left, c->bottom, c->right - c->left + 1, 1,
	    ink);
	labels(cv, c, s, ns);
	return 0;
}
