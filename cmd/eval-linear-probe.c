/*
 * eval-linear-probe.c - `vlm-eval linear-probe`: logistic regression on
 * frozen image embeddings, trained on one labelled set, scored on
 * another (CPU only).
 *
 * Each set is the model's (-m) embeddings of an ImageFolder tree
 * (--train, --test), or the rows of an embeddings file (--train-emb,
 * --test-emb) labelled by a labels file (--train-labels, --test-labels)
 * or by the tree its ids name. The classes are the trees' (both trees
 * must have the same class directories) or, with label files only,
 * 0 .. the largest label. The weight decay is --wd, or chosen on a
 * validation split of the training set (libcore/eval/linprobe.c). Writes
 * lp_acc1, lp_acc5, lp_mean_per_class_recall and weight_decay, as
 * CLIP_benchmark's linear probe names them.
 */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

/* One side: a tree and/or an embeddings file with labels. */
struct side {
	const char *dir, *emb, *labels;
	struct vlm_imagefolder d;
	int have_d;
	struct eval_set s;
};

struct lp {
	struct eval_common c;
	struct side train, test;
	double wd;
	int C;
	char **names; /* [C] class names for --per-class */
	char **own;   /* the names made up for label files */
};

static void
parse(struct lp *p, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "train", required_argument, NULL, 'r' },
		{ "test", required_argument, NULL, 's' },
		{ "train-emb", required_argument, NULL, 'R' },
		{ "test-emb", required_argument, NULL, 'S' },
		{ "train-labels", required_argument, NULL, 'l' },
		{ "test-labels", required_argument, NULL, 'L' },
		{ "wd", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'J' },
		{ "alpha", required_argument, NULL, 'A' },
		{ "device", required_argument, NULL, 'D' },
		{ "precision", required_argument, NULL, 'X' },
		{ "per-class", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct side *sd[2] = { &p->train, &p->test };
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "m:b:h", opts, NULL)) != -1) {
		if (eval_common_opt(&p->c, c, optarg))
			continue;
		switch (c) {
		case 'r': p->train.dir = optarg; break;
		case 's': p->test.dir = optarg; break;
		case 'R': p->train.emb = optarg; break;
		case 'S': p->test.emb = optarg; break;
		case 'l': p->train.labels = optarg; break;
		case 'L': p->test.labels = optarg; break;
		case 'w':
			p->wd = strtod(optarg, &end);
			if (*end || end == optarg || !(p->wd > 0) ||
			    !isfinite(p->wd))
				errx(2, "--wd '%s': want a positive number",
				    optarg);
			break;
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc)
		cmd_usage(eval_usage, 2);
	for (int i = 0; i < 2; i++) {
		const char *what = i ? "test" : "train";
		if (!sd[i]->emb && !(p->c.model && sd[i]->dir))
			errx(2, "linear-probe: give -m and --%s, or "
			    "--%s-emb", what, what);
		if (!sd[i]->labels && !sd[i]->dir)
			errx(2, "linear-probe: %s labels come from --%s or "
			    "--%s-labels", what, what, what);
		if (sd[i]->labels && !sd[i]->emb)
			errx(2, "linear-probe: --%s-labels labels the rows of "
			    "--%s-emb", what, what);
	}
}

/* The trees; their classes must agree. C = 0: from the labels later. */
static int
load_trees(struct lp *p)
{
	struct side *sd[2] = { &p->train, &p->test };

	for (int i = 0; i < 2; i++) {
		if (!sd[i]->dir)
			continue;
		if (vlm_imagefolder_load(&sd[i]->d, sd[i]->dir, NULL) < 0) {
			warnx("%s", vlm_errmsg());
			return -1;
		}
		sd[i]->have_d = 1;
		p->C = sd[i]->d.nclasses;
		p->names = sd[i]->d.classnames;
	}
	if (p->train.have_d && p->test.have_d) {
		const struct vlm_imagefolder *a = &p->train.d, *b = &p->test.d;
		int same = a->nclasses == b->nclasses;
		for (int c = 0; same && c < a->nclasses; c++)
			same = strcmp(a->classes[c], b->classes[c]) == 0;
		if (!same) {
			warnx("'%s' and '%s' have different classes",
			    p->train.dir, p->test.dir);
			return -1;
		}
	}
	return 0;
}

/* Without trees: classes 0 .. the largest label, named by number. */
static void
number_classes(struct lp *p)
{
	for (int64_t i = 0; i < p->train.s.n; i++)
		if (p->train.s.labels[i] >= p->C)
			p->C = p->train.s.labels[i] + 1;
	for (int64_t i = 0; i < p->test.s.n; i++)
		if (p->test.s.labels[i] >= p->C)
			p->C = p->test.s.labels[i] + 1;
	if (!(p->own = malloc(p->C * sizeof(*p->own))))
		errx(1, "out of memory");
	for (int c = 0; c < p->C; c++)
		if (asprintf(&p->own[c], "%d", c) < 0)
			errx(1, "out of memory");
	p->names = p->own;
}

/* Fit on train, score test, report. */
static int
probe(struct lp *p)
{
	const struct eval_set *tr = &p->train.s, *te = &p->test.s;
	struct vlm_linprobe_opts o = VLM_LINPROBE_DEFAULT;
	struct eval_report r = { .dataset = p->test.dir ? p->test.dir :
	    p->test.emb, .model = p->c.model ? p->c.model : te->model,
	    .task = "linear_probe" };
	static const char *const names[3] = { "lp_acc1", "lp_acc5",
	    "lp_mean_per_class_recall" };
	struct vlm_linprobe lp;
	struct eval_cls k = { 0 };
	float *z = malloc((size_t)te->n * p->C * sizeof(*z));
	int rc = -1;

	if (!z)
		errx(1, "out of memory");
	o.wd = p->wd;
	if (vlm_linprobe_fit(&lp, tr->vec, tr->labels, tr->n, tr->dim, p->C,
	    &o) < 0 || vlm_linprobe_logits(&lp, z, te->vec, te->n) < 0)
		warnx("%s", vlm_errmsg());
	else if (eval_report_cls(&r, &k, &p->c, names, z, te, p->C,
	    p->names) == 0) {
		eval_report_add(&r, "weight_decay", lp.wd);
		r.exp[r.n - 1] = 1;
		eval_report_print(&r, p->c.json);
		rc = 0;
	}
	vlm_linprobe_release(&lp);
	eval_cls_release(&k);
	free(z);
	return rc;
}

/* Both sets, checked against each other, then the probe. */
static int
evaluate(struct lp *p, const struct vlm_model *m, int *failed)
{
	struct side *sd[2] = { &p->train, &p->test };

	for (int i = 0; i < 2; i++) {
		if (eval_set_load(&sd[i]->s, m, sd[i]->have_d ? &sd[i]->d :
		    NULL, sd[i]->emb, sd[i]->labels, p->C, p->c.batch,
		    failed) < 0)
			return -1;
		if (sd[i]->s.n == 0) {
			warnx("'%s': no images", sd[i]->emb ? sd[i]->emb :
			    sd[i]->dir);
			return -1;
		}
	}
	if (p->train.s.dim != p->test.s.dim) {
		warnx("'%s': embeddings of dimension %d, '%s' of %d",
		    p->train.emb ? p->train.emb : p->train.dir, p->train.s.dim,
		    p->test.emb ? p->test.emb : p->test.dir, p->test.s.dim);
		return -1;
	}
	if (p->C == 0)
		number_classes(p);
	return probe(p);
}

int
eval_linear_probe(int argc, char **argv)
{
	struct lp p = { .c = { .batch = EVAL_BATCH } };
	struct vlm_model m = { 0 };
	struct side *sd[2] = { &p.train, &p.test };
	int failed = 0, rc = 1;

	parse(&p, argc, argv);
	if (load_trees(&p) == 0 && (!p.c.model ||
	    eval_model_load(&m, &p.c) == 0)) {
		rc = evaluate(&p, &m, &failed) < 0 || failed;
		if (p.c.model)
			vlm_model_release(&m);
	}
	for (int i = 0; i < 2; i++) {
		eval_set_release(&sd[i]->s);
		if (sd[i]->have_d)
			vlm_imagefolder_release(&sd[i]->d);
	}
	if (p.own)
		eval_lines_free(p.own, p.C);
	return rc;
}
