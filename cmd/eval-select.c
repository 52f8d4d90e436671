/*
 * eval-select.c - `vlm-eval select`: image-caption selection, the tasks
 * a contrastive model is scored on by comparing its image-text scores.
 *
 * Reads a tab-separated file whose header names its kind (vlm-eval(1)):
 * "image caption NEG..." (SugarCrepe: each row an image, its caption
 * and one or more hard negative captions) or "image0 image1 caption0
 * caption1" (Winoground: two images and their two captions). Image
 * paths are relative to the file's directory. Scores are the cosines of
 * the model's (-m) embeddings. Writes acc, or text_score, image_score
 * and group_score (libcore/eval/select.c), task image_caption_selection.
 * Bad rows and images that fail to load are warned about and left out
 * (exit status 1).
 */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"

struct sel {
	struct eval_common c;
	const char *file;
	int wino;        /* Winoground's layout */
	int ni, nt;      /* images and captions per row */
	int64_t n, cap;  /* rows */
	char **img;      /* (n, ni) paths */
	char **txt;      /* (n, nt) captions */
};

static void
parse(struct sel *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "file", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:b:h", opts, NULL)) != -1) {
		if (eval_common_opt(&s->c, c, optarg))
			continue;
		if (c != 'f')
			cmd_usage(eval_usage, 2);
		s->file = optarg;
	}
	if (optind != argc || !s->file)
		cmd_usage(eval_usage, 2);
	if (!s->c.model)
		errx(2, "select: give -m");
}

/* Split line at tabs (in place, newline dropped): the field count. */
static int
split(char *line, char **f, int max)
{
	int n = 0;

	line[strcspn(line, "\r\n")] = '\0';
	for (char *p = line; n < max; p++) {
		f[n++] = p;
		if (!(p = strchr(p, '\t')))
			return n;
		*p = '\0';
	}
	return max + 1;
}

/* The kind from the header; ni, nt set. */
static int
header(struct sel *s, char *line)
{
	static const char *wino[] = { "image0", "image1", "caption0",
	    "caption1" };
	char *f[64];
	int n = split(line, f, 63);

	if (n == 4 && !strcmp(f[0], wino[0]) && !strcmp(f[1], wino[1]) &&
	    !strcmp(f[2], wino[2]) && !strcmp(f[3], wino[3])) {
		s->wino = 1, s->ni = 2, s->nt = 2;
		return 0;
	}
	if (n >= 3 && n <= 63 && !strcmp(f[0], "image") &&
	    !strcmp(f[1], "caption")) {
		s->ni = 1, s->nt = n - 1;
		return 0;
	}
	warnx("'%s': header not \"image caption NEG...\" (up to 61 "
	    "negatives) or \"image0 image1 caption0 caption1\"", s->file);
	return -1;
}

/* Keep one row (fields f) with its image paths joined to dir. */
static void
add(struct sel *s, char **f, const char *dir)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->img = realloc(s->img, s->cap * s->ni * sizeof(*s->img));
		s->txt = realloc(s->txt, s->cap * s->nt * sizeof(*s->txt));
		if (!s->img || !s->txt)
			errx(1, "out of memory");
	}
	for (int j = 0; j < s->ni; j++)
		if (asprintf(&s->img[s->n * s->ni + j], "%s%s", f[j][0] ==
		    '/' ? "" : dir, f[j]) < 0)
			errx(1, "out of memory");
	for (int j = 0; j < s->nt; j++)
		if (!(s->txt[s->n * s->nt + j] = strdup(f[s->ni + j])))
			errx(1, "out of memory");
	s->n++;
}

/* The rows; bad ones warned about (*failed set). */
static int
load(struct sel *s, int *failed)
{
	FILE *fp = fopen(s->file, "r");
	const char *slash = strrchr(s->file, '/');
	char *line = NULL, *f[64], *dir;
	size_t len = 0;
	int ln = 1, rc = -1, w = 0;

	if (!fp) {
		warn("'%s'", s->file);
		return -1;
	}
	if (!(dir = strndup(s->file, slash ? slash - s->file + 1 : 0)))
		errx(1, "out of memory");
	if (getline(&line, &len, fp) < 0)
		warnx("'%s': empty file", s->file);
	else if (header(s, line) == 0) {
		while (getline(&line, &len, fp) >= 0) {
			int n = split(line, f, 63), k = 0;
			ln++;
			while (k < n && k < 64 && f[k][0])
				k++;
			if (n == s->ni + s->nt && k == n)
				add(s, f, dir);
			else if (w++ < 5)
				warnx("'%s':%d: want %d non-empty fields",
				    s->file, ln, s->ni + s->nt);
		}
		if (w > 5)
			warnx("'%s': %d more bad rows", s->file, w - 5);
		*failed |= w > 0;
		if (ferror(fp))
			warn("'%s'", s->file);
		else if (s->n == 0)
			warnx("'%s': no rows", s->file);
		else
			rc = 0;
	}
	free(line);
	free(dir);
	fclose(fp);
	return rc;
}

static float
dot(const float *a, const float *b, int D)
{
	double t = 0;

	for (int d = 0; d < D; d++)
		t += (double)a[d] * b[d];
	return (float)t;
}

/* Scores (rows with every image embedded, ni*nt each): *k rows. */
static float *
scores(const struct sel *s, const float *img, const unsigned char *ok,
    const float *txt, int D, int64_t *k)
{
	float *sc = malloc((size_t)s->n * s->ni * s->nt * sizeof(*sc));

	if (!sc)
		errx(1, "out of memory");
	*k = 0;
	for (int64_t i = 0; i < s->n; i++) {
		int good = 1;
		for (int j = 0; j < s->ni; j++)
			good &= ok[i * s->ni + j];
		if (!good)
			continue;
		for (int j = 0; j < s->ni; j++)
			for (int c = 0; c < s->nt; c++)
				sc[(*k * s->ni + j) * s->nt + c] = dot(img +
				    (i * s->ni + j) * D, txt + (i * s->nt + c) *
				    D, D);
		(*k)++;
	}
	return sc;
}

/* The metrics of the scores, reported. */
static int
report(const struct sel *s, const float *sc, int64_t k)
{
	struct eval_report r = { .dataset = s->file, .model = s->c.model,
	    .task = "image_caption_selection" };
	struct vlm_wino_scores w;
	double acc;

	if ((s->wino ? vlm_winoground(&w, sc, k) : vlm_select_acc(&acc, sc,
	    k, s->nt)) < 0) {
		warnx("'%s': %s", s->file, vlm_errmsg());
		return -1;
	}
	if (s->wino) {
		eval_report_add(&r, "text_score", w.text);
		eval_report_add(&r, "image_score", w.image);
		eval_report_add(&r, "group_score", w.group);
	} else {
		eval_report_add(&r, "acc", acc);
	}
	eval_report_print(&r, s->c.json);
	return 0;
}

static int
evaluate(struct sel *s, const struct vlm_model *m, int *failed)
{
	int64_t NI = s->n * s->ni, NT = s->n * s->nt, bad, k = 0;
	int D = m->cfg.embed_dim, rc = -1;
	float *img = malloc((size_t)NI * D * sizeof(*img));
	float *txt = malloc((size_t)NT * D * sizeof(*txt)), *sc;
	unsigned char *ok = malloc(NI);

	if (!img || !txt || !ok)
		errx(1, "out of memory");
	if ((bad = eval_embed_images(m, s->img, NULL, NI, s->c.batch, img,
	    ok)) >= 0 && eval_embed_texts(m, s->c.model, s->txt, NT,
	    s->c.batch, txt) == 0) {
		*failed |= bad > 0;
		sc = scores(s, img, ok, txt, D, &k);
		rc = report(s, sc, k);
		free(sc);
	}
	free(img);
	free(txt);
	free(ok);
	return rc;
}

int
eval_select(int argc, char **argv)
{
	struct sel s = { .c = { .batch = EVAL_BATCH } };
	struct vlm_model m = { 0 };
	int failed = 0, rc = 1;

	parse(&s, argc, argv);
	if (load(&s, &failed) == 0 && eval_model_load(&m, &s.c) == 0) {
		rc = evaluate(&s, &m, &failed) < 0 || failed;
		vlm_model_release(&m);
	}
	for (int64_t i = 0; i < s.n * s.ni; i++)
		free(s.img[i]);
	for (int64_t i = 0; i < s.n * s.nt; i++)
		free(s.txt[i]);
	free(s.img);
	free(s.txt);
	return rc;
}
