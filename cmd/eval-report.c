/*
 * eval-report.c - the options every vlm-eval verb takes, and what a run
 * prints: a table by default, or one JSON object in CLIP_benchmark's
 * shape {"dataset", "model", "task", "metrics": {...}} with --json.
 * Numbers are printed with fixed precision (%.6f, or %g for a weight
 * decay; NaN as "nan" in the table, null in JSON), so equal results
 * are equal bytes.
 */
#include <err.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd.h"
#include "eval.h"

const char *eval_device;

int
eval_common_opt(struct eval_common *o, int c, const char *arg)
{
	switch (c) {
	case 'm': o->model = arg; return 1;
	case 'b': o->batch = cmd_int("-b", arg, 1, 1 << 20); return 1;
	case 'J': o->json = 1; return 1;
	case 'P': o->per_class = 1; return 1;
	case 'A': o->alpha = cmd_alpha(arg) + 1; return 1;
	case 'D': eval_device = cmd_device_arg("--device", arg); return 1;
	case 'X': eval_precision = cmd_precision(arg); return 1;
	case 'h': cmd_usage(eval_usage, 0);
	}
	return 0;
}

void
eval_report_add(struct eval_report *r, const char *name, double v)
{
	if (r->n >= EVAL_MAX_METRICS)
		errx(1, "too many metrics"); /* a bug */
	r->names[r->n] = name;
	r->values[r->n++] = v;
}

int
eval_report_cls(struct eval_report *r, struct eval_cls *k,
    const struct eval_common *o, const char *const names[3],
    const float *logits, const struct eval_set *s, int C,
    char *const *classes)
{
	struct vlm_cls_metrics m;

	k->recall = malloc(C * sizeof(*k->recall));
	k->cm = malloc((size_t)C * C * sizeof(*k->cm));
	if (!k->recall || !k->cm)
		errx(1, "out of memory");
	if (vlm_metrics_cls(&m, logits, s->labels, s->n, C, k->recall,
	    k->cm) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	eval_report_add(r, names[0], m.acc1);
	eval_report_add(r, names[1], m.acc5);
	eval_report_add(r, names[2], m.mean_per_class_recall);
	if (o->per_class)
		r->nclasses = C, r->classes = classes, r->recall = k->recall,
		r->confusion = k->cm;
	return 0;
}

void
eval_cls_release(struct eval_cls *k)
{
	free(k->recall);
	free(k->cm);
	k->recall = NULL, k->cm = NULL;
}

char *
eval_meta_model(const struct vlm_emb *e)
{
	json_t *j = e->meta ? json_loads(e->meta, 0, NULL) : NULL;
	json_t *v = json_object_get(j, "model");
	char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;

	json_decref(j);
	return s;
}

/* s as a JSON string: quotes, backslashes and control bytes escaped. */
static void
put_json_str(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
put_json_num(double v, int exp)
{
	if (isnan(v))
		fputs("null", stdout);
	else
		printf(exp ? "%g" : "%.6f", v);
}

static void
json_per_class(const struct eval_report *r)
{
	int C = r->nclasses;

	printf(", \"per_class_recall\": [");
	for (int c = 0; c < C; c++) {
		printf(c ? ", " : "");
		put_json_num(r->recall[c], 0);
	}
	printf("], \"confusion_matrix\": [");
	for (int i = 0; i < C; i++) {
		printf(i ? ", [" : "[");
		for (int j = 0; j < C; j++)
			printf(j ? ", %lld" : "%lld",
			    (long long)r->confusion[(int64_t)i * C + j]);
		putchar(']');
	}
	printf("]}, \"classes\": [");
	for (int c = 0; c < C; c++) {
		printf(c ? ", " : "");
		put_json_str(r->classes[c]);
	}
	putchar(']');
}

static void
print_json(const struct eval_report *r)
{
	printf("{\"dataset\": ");
	put_json_str(r->dataset);
	printf(", \"model\": ");
	put_json_str(r->model);
	printf(", \"task\": ");
	put_json_str(r->task);
	printf(", \"metrics\": {");
	for (int i = 0; i < r->n; i++) {
		printf(i ? ", \"%s\": " : "\"%s\": ", r->names[i]);
		put_json_num(r->values[i], r->exp[i]);
	}
	if (r->recall)
		json_per_class(r);
	else
		putchar('}');
	printf("}\n");
}

/* Per class: its recall, then the confusion matrix row by row. */
static void
table_per_class(const struct eval_report *r)
{
	int C = r->nclasses, w = 5;

	for (int c = 0; c < C; c++)
		if ((int)strlen(r->classes[c]) > w)
			w = (int)strlen(r->classes[c]);
	printf("\n%-*s  recall    predicted as (class order)\n", w, "class");
	for (int i = 0; i < C; i++) {
		printf("%-*s  ", w, r->classes[i]);
		isnan(r->recall[i]) ? printf("%-8s", "nan") :
		    printf("%.6f", r->recall[i]);
		for (int j = 0; j < C; j++)
			printf(" %lld", (long long)r->confusion[(int64_t)i *
			    C + j]);
		putchar('\n');
	}
}

static void
print_table(const struct eval_report *r)
{
	int w = 7;

	for (int i = 0; i < r->n; i++)
		if ((int)strlen(r->names[i]) > w)
			w = (int)strlen(r->names[i]);
	printf("%-*s  %s\n", w, "task", r->task);
	printf("%-*s  %s\n", w, "dataset", r->dataset ? r->dataset : "-");
	printf("%-*s  %s\n", w, "model", r->model ? r->model : "-");
	for (int i = 0; i < r->n; i++)
		isnan(r->values[i]) ? printf("%-*s  nan\n", w, r->names[i]) :
		    printf(r->exp[i] ? "%-*s  %g\n" : "%-*s  %.6f\n", w,
		    r->names[i], r->values[i]);
	if (r->recall)
		table_per_class(r);
}

void
eval_report_print(const struct eval_report *r, int json)
{
	if (json)
		print_json(r);
	else
		print_table(r);
}
