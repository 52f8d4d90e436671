/*
 * eval-table.c - `vlm-eval table`: the results of a directory (the
 * JSON files `vlm-eval suite` writes, CLIP_benchmark's shape) as one
 * table, CSV (CLIP_benchmark's `build`) or markdown (--markdown), on
 * stdout or into -o file (atomically). A row per file, in file-name
 * order; columns dataset, model, pretrained, task, language,
 * model_fullname ("MODEL PRETRAINED", as `build` adds it), then every
 * metric in order of first appearance (empty where a result has none).
 * A .json file not in that shape is warned about and left out (exit 1).
 */
#include <dirent.h>
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd.h"
#include "eval.h"

static const char *const fixed[] = { "dataset", "model", "pretrained",
    "task", "language", "model_fullname" };
#define NFIXED 6

struct table {
	json_t **rows;
	int n;
	const char **cols;  /* the metric names, borrowed from rows */
	int ncols;
	int md;
};

static int
is_json(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 5 && !strcmp(d->d_name + n - 5,
	    ".json");
}

/* Add the row of file path, and its new metric names. */
static int
add(struct table *t, const char *path)
{
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e), *m, *v;
	const char *k;

	if (!j) {
		warnx("'%s':%d: %s", path, e.line, e.text);
		return -1;
	}
	m = json_object_get(j, "metrics");
	if (!json_is_object(m) || !json_is_string(json_object_get(j,
	    "dataset")) || !json_is_string(json_object_get(j, "task"))) {
		warnx("'%s': not a result (dataset, task, metrics)", path);
		json_decref(j);
		return -1;
	}
	t->rows[t->n++] = j;
	json_object_foreach(m, k, v) {
		int c = 0;
		while (c < t->ncols && strcmp(t->cols[c], k))
			c++;
		if (c == t->ncols && !(t->cols = realloc(t->cols,
		    (t->ncols + 1) * sizeof(*t->cols))))
			errx(1, "out of memory");
		t->cols[c] = k;
		t->ncols += c == t->ncols;
	}
	return 0;
}

/* One cell: a string quoted as Python's csv quotes it, or |-escaped. */
static void
put_str(const struct table *t, FILE *f, const char *s)
{
	if (t->md) {
		for (; *s; s++) {
			if (*s == '|')
				fputc('\\', f);
			fputc(*s == '\n' ? ' ' : *s, f);
		}
		return;
	}
	if (!s[strcspn(s, ",\"\r\n")]) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void
put_val(const struct table *t, FILE *f, const json_t *v)
{
	if (json_is_string(v))
		put_str(t, f, json_string_value(v));
	else if (json_is_integer(v))
		fprintf(f, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		fprintf(f, "%.15g", json_real_value(v));
	else if (json_is_boolean(v))
		fputs(json_is_true(v) ? "True" : "False", f);
}

/* Cell c of row j: a fixed column, then the metrics. */
static void
put_cell(const struct table *t, FILE *f, json_t *j, int c)
{
	const char *m, *p;

	if (c >= NFIXED) {
		put_val(t, f, json_object_get(json_object_get(j, "metrics"),
		    t->cols[c - NFIXED]));
	} else if (c < NFIXED - 1) {
		put_val(t, f, json_object_get(j, fixed[c]));
	} else {
		char *s;
		m = json_string_value(json_object_get(j, "model"));
		p = json_string_value(json_object_get(j, "pretrained"));
		if (asprintf(&s, "%s %s", m ? m : "", p ? p : "") < 0)
			errx(1, "out of memory");
		put_str(t, f, s);
		free(s);
	}
}

static void
print(const struct table *t, FILE *f)
{
	int nc = NFIXED + t->ncols;
	const char *sep = t->md ? " | " : ",";

	for (int c = 0; c < nc; c++) {
		fputs(c ? sep : t->md ? "| " : "", f);
		put_str(t, f, c < NFIXED ? fixed[c] : t->cols[c - NFIXED]);
	}
	fputs(t->md ? " |\n" : "\r\n", f);
	for (int c = 0; t->md && c < nc; c++)
		fputs(c + 1 < nc ? "|---" : "|---|\n", f);
	for (int i = 0; i < t->n; i++) {
		for (int c = 0; c < nc; c++) {
			fputs(c ? sep : t->md ? "| " : "", f);
			put_cell(t, f, t->rows[i], c);
		}
		fputs(t->md ? " |\n" : "\r\n", f);
	}
}

/* Every result file of dir, by name. */
static int
load(struct table *t, const char *dir)
{
	struct dirent **d;
	int n = scandir(dir, &d, is_json, alphasort), rc = 0;

	if (n < 0) {
		warn("'%s'", dir);
		return -1;
	}
	if (!(t->rows = malloc((n + 1) * sizeof(*t->rows))))
		errx(1, "out of memory");
	for (int i = 0; i < n; i++) {
		char *p;
		if (asprintf(&p, "%s/%s", dir, d[i]->d_name) < 0)
			errx(1, "out of memory");
		rc |= add(t, p);
		free(p);
		free(d[i]);
	}
	free(d);
	if (t->n == 0)
		warnx("'%s': no results", dir), rc = -1;
	return rc;
}

int
eval_table(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "markdown", no_argument, NULL, 'M' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct table t = { 0 };
	struct vlm_atomic a = { 0 };
	const char *out = "-";
	int c, rc;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'M': t.md = 1; break;
		case 'o': out = optarg; break;
		case 'h': cmd_usage(eval_usage, 0);
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc - 1)
		cmd_usage(eval_usage, 2);
	rc = load(&t, argv[optind]) < 0;
	if (t.n > 0 && vlm_atomic_open(&a, out) < 0)
		warnx("%s", vlm_errmsg()), rc = 1;
	else if (t.n > 0) {
		print(&t, a.f);
		if (vlm_atomic_commit(&a) < 0)
			warnx("%s", vlm_errmsg()), rc = 1;
	}
	for (int i = 0; i < t.n; i++)
		json_decref(t.rows[i]);
	free(t.rows);
	free(t.cols);
	return rc;
}
