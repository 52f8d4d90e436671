/*
 * eval-plot.c - vlm-eval plot: PNG charts of training runs and sweeps,
 * drawn by libcore/plot (no Python).
 *
 * Curves: -y KEY of every line of each run's metrics.jsonl (vlm-train)
 * against -x KEY (step); "moe.KEY" is the mean of KEY over the MoE
 * layers of the line (eff_experts_text, dropped_image, ...). A run is
 * given as [LABEL=]FILE (LABEL: the name of FILE's directory's parent,
 * that is RUN of RUN/SEED/metrics.jsonl, else its directory); runs with
 * one label share a colour and a legend entry (seeds of one model).
 * Lines without the keys are passed over (validation every few steps).
 *
 * Sweeps: --tsv FILE, a header and rows x<TAB>series<TAB>value; rows of
 * one (x, series) are averaged, and the sample standard deviation is an
 * error bar. A line chart over numeric x, or with --bars horizontal bars
 * per x (in the order of the file).
 */
#include <err.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "plot/plot.h"

struct ser {
	char *label;
	int n, cap;
	double *x, *y, *err; /* (cap) */
};

struct plot {
	struct ser *s;
	int ns;
	const char *xkey, *ykey;
};

/* A new series labelled label (copied); NULL when out of memory. */
static struct ser *
ser_new(struct plot *p, const char *label, size_t len)
{
	struct ser *s = realloc(p->s, (p->ns + 1) * sizeof(*s));

	if (!s)
		return NULL;
	p->s = s;
	s = &p->s[p->ns];
	memset(s, 0, sizeof(*s));
	if (!(s->label = strndup(label, len)))
		return NULL;
	p->ns++;
	return s;
}

static int
point(struct ser *s, double x, double y, double e)
{
	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 64;
		double *a = realloc(s->x, cap * sizeof(double));
		double *b = a ? realloc(s->y, cap * sizeof(double)) : NULL;
		double *c = b ? realloc(s->err, cap * sizeof(double)) : NULL;
		s->x = a ? a : s->x, s->y = b ? b : s->y;
		s->err = c ? c : s->err;
		if (!c)
			return -1;
		s->cap = cap;
	}
	s->x[s->n] = x, s->y[s->n] = y, s->err[s->n++] = e;
	return 0;
}

/* Key k of a metrics line: a number, or "moe.KEY" averaged over the
 * layers; NaN when absent. */
static double
value(json_t *o, const char *k)
{
	json_t *e;

	if (strncmp(k, "moe.", 4) == 0)
		return cmd_moe_mean(o, k + 4);
	return json_is_number(e = json_object_get(o, k)) ?
	    json_number_value(e) : NAN;
}

/* The label of a run given as FILE: RUN of RUN/SEED/FILE, else the
 * directory of FILE, else FILE; into *len its length. */
static const char *
run_label(const char *arg, size_t *len)
{
	const char *end = strrchr(arg, '/'), *b = end;

	if (!end) {
		*len = strlen(arg);
		return arg;
	}
	while (b > arg && b[-1] != '/')
		b--;
	if (strncmp(b, "seed", 4) == 0 && b > arg + 1) {
		end = b - 1;
		for (b = end; b > arg && b[-1] != '/'; b--)
			;
	}
	*len = end - b;
	return *len ? b : arg;
}

/* One run [LABEL=]FILE; 0, or -1 after a warning. */
static int
load_run(struct plot *p, const char *arg)
{
	const char *eq = strchr(arg, '='), *path = eq ? eq + 1 : arg, *l;
	size_t len, cap = 0;
	char *line = NULL;
	struct ser *s;
	FILE *f;
	int rc = 0;
	long no = 0;

	l = eq ? arg : run_label(path, &len);
	len = eq ? (size_t)(eq - arg) : len;
	if (!(f = fopen(path, "r"))) {
		warn("%s", path);
		return -1;
	}
	if (!(s = ser_new(p, l, len)))
		errx(1, "out of memory");
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		double x = value(o, p->xkey), y = value(o, p->ykey);
		no++;
		if (!json_is_object(o))
			rc = -1, warnx("%s: line %ld: not a JSON object", path,
			    no);
		else if (isfinite(x) && isfinite(y) && point(s, x, y, NAN) < 0)
			errx(1, "out of memory");
		json_decref(o);
	}
	if (ferror(f))
		rc = -1, warn("%s", path);
	fclose(f);
	free(line);
	return rc;
}

/* The index of s in the list v[0, *n), appended when new. */
static int
intern(char ***v, int *n, const char *s)
{
	char **w;

	for (int i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return i;
	if (!(w = realloc(*v, (*n + 1) * sizeof(*w))) ||
	    !(w[*n] = strdup(s)))
		errx(1, "out of memory");
	*v = w;
	return (*n)++;
}

struct sweep {
	char **xs, **names, *head[3]; /* distinct x, series; header */
	int nx, nn, nrows;
	double *row;                  /* (nrows, 3): x, series, value */
	double *xnum;                 /* (nx) */
};

/* The rows of a sweep TSV into w; 0, or -1 after a warning. */
static int
read_sweep(struct sweep *w, const char *path, int numeric)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *c[3], *end;
	size_t cap = 0;
	long no = 0;
	int rc = 0;

	if (!f) {
		warn("%s", path);
		return -1;
	}
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		char *sp = line;
		line[strcspn(line, "\r\n")] = 0;
		for (int i = 0; i < 3; i++)
			c[i] = strsep(&sp, "\t");
		if (++no == 1 && c[2]) {
			for (int i = 0; i < 3; i++)
				if (!(w->head[i] = strdup(c[i])))
					errx(1, "out of memory");
			continue;
		}
		double v = c[2] ? strtod(c[2], &end) : NAN;
		if (no == 1 || !c[2] || end == c[2] || *end)
			rc = -1, warnx("%s: line %ld: want x<TAB>series<TAB>"
			    "number", path, no);
		else if (!(w->row = realloc(w->row, (w->nrows + 1) * 3 *
		    sizeof(double))))
			errx(1, "out of memory");
		else {
			double *r = w->row + 3 * w->nrows++;
			r[0] = intern(&w->xs, &w->nx, c[0]);
			r[1] = intern(&w->names, &w->nn, c[1]), r[2] = v;
		}
	}
	if (rc == 0 && ferror(f))
		rc = -1, warn("%s", path);
	if (rc == 0 && w->nrows == 0)
		rc = -1, warnx("%s: no rows", path);
	if (!(w->xnum = calloc(w->nx + 1, sizeof(double))))
		errx(1, "out of memory");
	for (int i = 0; rc == 0 && i < w->nx; i++) {
		w->xnum[i] = numeric ? strtod(w->xs[i], &end) : i;
		if (numeric && (end == w->xs[i] || *end))
			rc = -1, warnx("%s: x '%s' is not a number (a line "
			    "chart; --bars for names)", path, w->xs[i]);
	}
	fclose(f);
	free(line);
	return rc;
}

static int
by_x(const void *a, const void *b, void *xnum)
{
	double u = ((double *)xnum)[*(const int *)a];
	double v = ((double *)xnum)[*(const int *)b];

	return (u > v) - (u < v);
}

/* Sweep series: per series the mean and sample sd of each x (bars:
 * every group, NaN where the series has no row). */
static void
sweep_series(struct plot *p, struct sweep *w, int bars)
{
	double *m = calloc((size_t)w->nn * w->nx * 3 + 1, sizeof(double));
	int *ord = malloc((w->nx + 1) * sizeof(int));

	if (!m || !ord)
		errx(1, "out of memory");
	for (int r = 0; r < w->nrows; r++) {
		double *c = m + 3 * ((size_t)w->row[3 * r + 1] * w->nx +
		    (size_t)w->row[3 * r]), v = w->row[3 * r + 2];
		c[0] += v, c[1] += v * v, c[2]++;
	}
	for (int i = 0; i < w->nx; i++)
		ord[i] = i;
	qsort_r(ord, w->nx, sizeof(int), by_x, w->xnum);
	for (int k = 0; k < w->nn; k++) {
		struct ser *s = ser_new(p, w->names[k], strlen(w->names[k]));
		if (!s)
			errx(1, "out of memory");
		for (int j = 0; j < w->nx; j++) {
			double *c = m + 3 * ((size_t)k * w->nx + ord[j]);
			double mu = c[2] ? c[0] / c[2] : NAN;
			double var = c[2] > 1 ? (c[1] - c[2] * mu * mu) /
			    (c[2] - 1) : NAN;
			if ((c[2] || bars) && point(s, w->xnum[ord[j]], mu,
			    var > 0 ? sqrt(var) : c[2] > 1 ? 0 : NAN) < 0)
				errx(1, "out of memory");
		}
	}
	free(m);
	free(ord);
}

/* Draw the series of p as chart c into out; the exit status. */
static int
draw(const struct plot *p, struct vlm_chart *c, int w, int h,
    const char *out)
{
	struct vlm_series *v = calloc(p->ns + 1, sizeof(*v));
	struct vlm_canvas cv;
	int rc = 1, ncol = 0;

	if (!v)
		errx(1, "out of memory");
	for (int k = 0; k < p->ns; k++) {
		v[k] = (struct vlm_series){ p->s[k].label, -1, p->s[k].n,
			p->s[k].x, p->s[k].y, p->s[k].err };
		if (c->bars && p->ns == 1) /* the x label names it */
			v[k].label = NULL;
		for (int j = 0; j < k && v[k].colour < 0; j++)
			if (strcmp(p->s[j].label, p->s[k].label) == 0)
				v[k].colour = v[j].colour;
		if (v[k].colour < 0) /* one colour a label */
			v[k].colour = ncol++;
	}
	if (vlm_canvas_init(&cv, w, h) == 0) {
		if (vlm_chart_draw(&cv, c, v, p->ns) == 0 &&
		    vlm_canvas_save(&cv, out) == 0)
			rc = 0;
		vlm_canvas_release(&cv);
	}
	if (rc)
		warnx("%s: %s", out, vlm_errmsg());
	free(v);
	return rc;
}

int
eval_plot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "y", required_argument, NULL, 'y' },
		{ "x", required_argument, NULL, 'x' },
		{ "tsv", required_argument, NULL, 't' },
		{ "bars", no_argument, NULL, 'B' },
		{ "title", required_argument, NULL, 'T' },
		{ "size", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct plot p = { NULL, 0, "step", NULL };
	struct vlm_chart c = { 0 };
	struct sweep sw = { 0 };
	const char *tsv = NULL, *out = NULL;
	int o, bars = 0, w = 720, h = 440, bad = 0;
	char x;

	while ((o = getopt_long(argc, argv, "ho:x:y:", opts, NULL)) != -1) {
		switch (o) {
		case 'y': p.ykey = optarg; break;
		case 'x': p.xkey = optarg; break;
		case 't': tsv = optarg; break;
		case 'B': bars = 1; break;
		case 'T': c.title = optarg; break;
		case 'o': out = optarg; break;
		case 's':
			if (sscanf(optarg, "%dx%d%c", &w, &h, &x) != 2 ||
			    w < 160 || h < 120 || w > 8192 || h > 8192)
				errx(2, "--size %s: want WxH, 160x120 to "
				    "8192x8192", optarg);
			break;
		case 'h': cmd_usage(eval_usage, 0);
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (!out || (tsv ? optind < argc || p.ykey : optind == argc ||
	    !p.ykey || bars))
		cmd_usage(eval_usage, 2);
	if (tsv && read_sweep(&sw, tsv, !bars) == 0) {
		sweep_series(&p, &sw, bars);
		c.xlabel = bars ? sw.head[2] : sw.head[0];
		c.ylabel = bars ? NULL : sw.head[2];
		c.bars = bars, c.groups = (const char *const *)sw.xs;
		c.ngroups = sw.nx;
	} else if (tsv) {
		bad = 1;
	}
	for (int i = optind; i < argc; i++)
		bad |= load_run(&p, argv[i]) < 0;
	c.xlabel = tsv ? c.xlabel : p.xkey, c.ylabel = tsv ? c.ylabel : p.ykey;
	if (!bad)
		bad = draw(&p, &c, w, h, out);
	for (int k = 0; k < p.ns; k++) {
		free(p.s[k].label);
		free(p.s[k].x), free(p.s[k].y), free(p.s[k].err);
	}
	for (int i = 0; i < sw.nx; i++)
		free(sw.xs[i]);
	for (int i = 0; i < sw.nn; i++)
		free(sw.names[i]);
	for (int i = 0; i < 3; i++)
		free(sw.head[i]);
	free(p.s), free(sw.xs), free(sw.names), free(sw.row), free(sw.xnum);
	return cmd_finish(bad);
}
