/*
 * eval-zeroshot.c - `vlm-eval zeroshot`: zero-shot classification.
 *
 * Classes come from an ImageFolder tree (--images: its directories, or
 * the names in --classnames), from a CLIP_benchmark webdataset directory
 * (--wds: its classnames.txt, templates and the split's shards, labels
 * from each sample's cls) or from --classnames alone; prompts are
 * each template of --templates (default "a photo of a {}.") filled with
 * each class name, class by class. Image embeddings are the model's
 * (-m) of the tree's images, or the rows of --image-emb, labelled by
 * --labels (row for row) or by the tree (ids matched to its paths).
 * Text embeddings are the model's of the prompts, or the rows of
 * --text-emb in prompt order (classes x templates). --prompts prints
 * the prompts instead, one a line, for embedding them elsewhere.
 * Writes acc1, acc5 and mean_per_class_recall (CLIP_benchmark's).
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

struct zs {
	struct eval_common c;
	const char *images, *image_emb, *labels, *text_emb;
	const char *classnames, *templates;
	const char *wds, *split;   /* --wds: a CLIP_benchmark directory */
	int prompts;
	/* the classes and templates */
	struct vlm_imagefolder d;
	int have_d;
	int C, T;
	char **names, **tmpl;     /* d's, or the files' */
	char **own_names, **own_tmpl;
};

static void
parse(struct zs *z, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "images", required_argument, NULL, 'I' },
		{ "image-emb", required_argument, NULL, 'i' },
		{ "labels", required_argument, NULL, 'l' },
		{ "text-emb", required_argument, NULL, 't' },
		{ "classnames", required_argument, NULL, 'n' },
		{ "templates", required_argument, NULL, 'T' },
		{ "prompts", no_argument, NULL, 'p' },
		{ "wds", required_argument, NULL, 'W' },
		{ "split", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'J' },
		{ "alpha", required_argument, NULL, 'A' },
		{ "device", required_argument, NULL, 'D' },
		{ "precision", required_argument, NULL, 'X' },
		{ "per-class", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:b:h", opts, NULL)) != -1) {
		if (eval_common_opt(&z->c, c, optarg))
			continue;
		switch (c) {
		case 'I': z->images = optarg; break;
		case 'i': z->image_emb = optarg; break;
		case 'l': z->labels = optarg; break;
		case 't': z->text_emb = optarg; break;
		case 'n': z->classnames = optarg; break;
		case 'T': z->templates = optarg; break;
		case 'p': z->prompts = 1; break;
		case 'W': z->wds = optarg; break;
		case 's': z->split = optarg; break;
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc)
		cmd_usage(eval_usage, 2);
	if (z->wds && z->images)
		errx(2, "zeroshot: --images or --wds, not both");
	if (z->wds)  /* the tree's part from here on */
		z->images = z->wds;
	if (!z->images && !z->classnames)
		errx(2, "zeroshot: the classes come from --images or "
		    "--classnames");
	if (z->prompts)
		return;
	if (!z->image_emb && !(z->c.model && z->images))
		errx(2, "zeroshot: give -m and --images, or --image-emb");
	if (!z->labels && !z->images)
		errx(2, "zeroshot: labels come from --images or --labels");
	if (z->labels && !z->image_emb)
		errx(2, "zeroshot: --labels labels the rows of --image-emb");
	if (!z->text_emb && !z->c.model)
		errx(2, "zeroshot: give -m or --text-emb");
}

/* Class names and templates: from the tree, or the files. */
static int
load_classes(struct zs *z)
{
	struct vlm_imagefolder_opts o = { z->classnames, z->templates };

	if (z->images) {
		if (z->wds ? vlm_wds_imagefolder_load(&z->d, z->wds, z->split ?
		    z->split : "test", &o) < 0 : vlm_imagefolder_load(&z->d,
		    z->images, &o) < 0) {
			warnx("%s", vlm_errmsg());
			return -1;
		}
		z->have_d = 1;
		z->C = z->d.nclasses, z->names = z->d.classnames;
		z->T = z->d.ntemplates, z->tmpl = z->d.templates;
		return 0;
	}
	if (eval_lines_load(z->classnames, &z->own_names, &z->C) < 0)
		return -1;
	z->names = z->own_names;
	if (!z->templates) {
		static char *def[] = { VLM_DEFAULT_TEMPLATE };
		z->tmpl = def, z->T = 1;
		return 0;
	}
	if (eval_lines_load(z->templates, &z->own_tmpl, &z->T) < 0)
		return -1;
	z->tmpl = z->own_tmpl;
	for (int t = 0; t < z->T; t++)
		if (!strstr(z->tmpl[t], "{}")) {
			warnx("'%s':%d: template without {}", z->templates,
			    t + 1);
			return -1;
		}
	return 0;
}

/* The C*T prompts, class by class (malloc'ed strings). */
static char **
prompts_alloc(const struct zs *z)
{
	char **p = malloc((size_t)z->C * z->T * sizeof(*p));

	if (!p)
		errx(1, "out of memory");
	for (int c = 0; c < z->C; c++)
		for (int t = 0; t < z->T; t++)
			if (!(p[c * z->T + t] = vlm_template_fill_alloc(
			    z->tmpl[t], z->names[c])))
				errx(1, "out of memory");
	return p;
}

/* The classifier W (dim, C) from the model or --text-emb. */
static float *
classifier(struct zs *z, const struct vlm_model *m, int *dim)
{
	struct vlm_emb e = { 0 };
	char **p = NULL;
	float *W = NULL;
	int T = z->T, n = z->C * z->T;

	if (z->text_emb) {
		if (vlm_emb_load(&e, z->text_emb) < 0)
			warnx("%s", vlm_errmsg());
		else if (e.n % z->C != 0) {
			warnx("'%s': %lld rows are not classes x templates "
			    "(%d classes)", z->text_emb, (long long)e.n, z->C);
			vlm_emb_release(&e); /* no classifier from them */
		} else
			T = (int)(e.n / z->C), *dim = (int)e.dim;
	} else {
		*dim = m->cfg.embed_dim;
		p = prompts_alloc(z);
		if (vlm_emb_init(&e, n, *dim) < 0)
			errx(1, "%s", vlm_errmsg());
		if (eval_embed_texts(m, z->c.model, p, n, z->c.batch, e.vec) <
		    0)
			vlm_emb_release(&e); /* no rows: no classifier */
		for (int i = 0; i < n; i++)
			free(p[i]);
		free(p);
	}
	if (e.n > 0 && (!(W = malloc((size_t)*dim * z->C * sizeof(*W))) ||
	    vlm_zeroshot_classifier(W, e.vec, z->C, T, *dim) < 0))
		errx(1, "out of memory");
	vlm_emb_release(&e);
	return W;
}

/* Logits, metrics and the report of set s against W. */
static int
score(struct zs *z, const struct eval_set *s, const float *W, int dim)
{
	struct eval_report r = { .dataset = z->images ? z->images :
	    z->image_emb, .model = z->c.model ? z->c.model : s->model,
	    .task = "zeroshot_classification" };
	static const char *const names[3] = { "acc1", "acc5",
	    "mean_per_class_recall" };
	struct eval_cls k = { 0 };
	float *logits = malloc((size_t)s->n * z->C * sizeof(*logits));
	int rc = -1;

	if (!logits)
		errx(1, "out of memory");
	if (vlm_zeroshot_logits(logits, s->vec, W, s->n, dim, z->C) < 0)
		warnx("%s", vlm_errmsg());
	else if (eval_report_cls(&r, &k, &z->c, names, logits, s, z->C,
	    z->names) == 0) {
		eval_report_print(&r, z->c.json);
		rc = 0;
	}
	eval_cls_release(&k);
	free(logits);
	return rc;
}

/* The image set and the classifier, checked against each other. */
static int
evaluate(struct zs *z, const struct vlm_model *m, int *failed)
{
	const char *img = z->image_emb ? z->image_emb : z->images;
	struct eval_set s;
	float *W = NULL;
	int dim = 0, rc = -1;

	if (eval_set_load(&s, m, z->have_d ? &z->d : NULL, z->image_emb,
	    z->labels, z->C, z->c.batch, failed) < 0)
		return -1;
	if (s.n == 0)
		warnx("'%s': no images to evaluate", img);
	else if (!(W = classifier(z, m, &dim)))
		;
	else if (dim != s.dim)
		warnx("'%s': image embeddings of dimension %d, text "
		    "embeddings '%s' of %d", img, s.dim, z->text_emb ?
		    z->text_emb : z->c.model, dim);
	else
		rc = score(z, &s, W, dim);
	free(W);
	eval_set_release(&s);
	return rc;
}

int
eval_zeroshot(int argc, char **argv)
{
	struct zs z = { .c = { .batch = EVAL_BATCH } };
	struct vlm_model m = { 0 };
	int failed = 0, rc = 1;

	parse(&z, argc, argv);
	if (load_classes(&z) < 0)
		return 1;
	if (z.prompts) {
		char **p = prompts_alloc(&z);
		for (int i = 0; i < z.C * z.T; i++) {
			puts(p[i]);
			free(p[i]);
		}
		free(p);
		rc = 0;
	} else if (!z.c.model || eval_model_load(&m, &z.c) == 0) {
		rc = evaluate(&z, &m, &failed) < 0 || failed;
		if (z.c.model)
			vlm_model_release(&m);
	}
	if (z.have_d)
		vlm_imagefolder_release(&z.d);
	if (z.own_names)
		eval_lines_free(z.own_names, z.C);
	if (z.own_tmpl)
		eval_lines_free(z.own_tmpl, z.T);
	return rc;
}
