/*
 * plot.h - PNG charts drawn by the toolkit itself (no Python): an RGB
 * canvas with a built-in 5x7 bitmap font (canvas.c), and on it line
 * charts of several series and horizontal bar charts with error bars,
 * with axes, tick labels and a legend (chart.c). vlm-route-stats draws
 * its heatmaps and vlm-eval plot its charts with them.
 */
#ifndef VLM_PLOT_H
#define VLM_PLOT_H

#include <stdio.h>

/* Text: 5x7 glyphs drawn at scale 2, 12 pixels a character, lines of 18;
 * letters are drawn as capitals, an unknown character as a box. */
enum { VLM_FONT_ADV = 12, VLM_FONT_LINE = 18, VLM_FONT_H = 14 };

struct vlm_canvas {
	int w, h;          /* e.g. 720, 440 */
	unsigned char *px; /* (h,w,3) 8-bit RGB, rows top to bottom */
};

/* A white w x h canvas; -1 when out of memory or too large. */
int vlm_canvas_init(struct vlm_canvas *cv, int w, int h);
void vlm_canvas_release(struct vlm_canvas *cv);
/* The rectangle (x, y, w, h), clipped to the canvas. */
void vlm_canvas_fill(struct vlm_canvas *cv, int x, int y, int w, int h,
    const unsigned char *rgb);
/* A line thick pixels wide from (x0, y0) to (x1, y1). */
void vlm_canvas_line(struct vlm_canvas *cv, int x0, int y0, int x1, int y1,
    int thick, const unsigned char *rgb);
/* Text s with its top left at (x, y), cut before xmax; the x after it. */
int vlm_canvas_text(struct vlm_canvas *cv, int x, int y, int xmax,
    const char *s, const unsigned char *rgb);
/* Write the canvas as an 8-bit RGB PNG to f (path names it in errors). */
int vlm_canvas_write_png(const struct vlm_canvas *cv, FILE *f,
    const char *path);
/* The same into path, atomically (no half-written file on failure). */
int vlm_canvas_save(const struct vlm_canvas *cv, const char *path);

/* Series colours: series colour c is vlm_palette[c % VLM_PALETTE]. */
enum { VLM_PALETTE = 8 };
extern const unsigned char vlm_palette[VLM_PALETTE][3];

/* One series: points (x[i], y[i]) of a line chart, or in a bar chart its
 * bar y[i] in group i. A NaN y leaves a gap. */
struct vlm_series {
	const char *label; /* legend entry; the label of an earlier
	                    * series or NULL: no new entry */
	int colour;        /* palette index */
	int n;
	const double *x;   /* (n) line charts only */
	const double *y;   /* (n) */
	const double *err; /* (n) error-bar half-widths, or NULL */
};

/*
 * A chart filling its canvas. Layout (pixels, m = 10): the title at
 * (m, m); the y label (the value label of bars) a line below it; the
 * legend (a 16 x 10 swatch and the label, a line each) in a column at
 * the right, as wide as its longest label; the plot area between,
 * above a line of tick labels and a line with the x label. Line charts:
 * x to the right, y up, ranges from the data widened to round ticks.
 * Bar charts (bars = 1): the values run to the right from 0; group i
 * takes the band y in [i, i + 1) from the top, named at the left, and
 * its ns bars the part [i + 0.1, i + 0.9), bar k of them
 * [i + 0.1 + 0.8 k / ns, i + 0.1 + 0.8 (k + 1) / ns).
 */
struct vlm_chart {
	const char *title, *xlabel, *ylabel; /* or NULL */
	int bars;                  /* horizontal bar chart */
	const char *const *groups; /* [ngroups] bar group names */
	int ngroups;
	/* set by vlm_chart_draw: */
	int left, top, right, bottom; /* plot area, inclusive */
	double xlo, xhi, ylo, yhi;    /* data range of its edges */
};

/* Draw series s[0, ns) as chart c on cv (white first). -1 when there is
 * nothing finite to draw or the canvas is too small for the layout. */
int vlm_chart_draw(struct vlm_canvas *cv, struct vlm_chart *c,
    const struct vlm_series *s, int ns);
/* Where data point (x, y) of a drawn chart lies on the canvas. */
void vlm_chart_px(const struct vlm_chart *c, double x, double y, int *px,
    int *py);

#endif
