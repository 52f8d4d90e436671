/*
 * eval-match.c - `vlm-eval match`: image-text matching accuracy of a
 * fusion model's ITM head (model/fusion.c) on a pairs file and its
 * negatives.
 *
 * Reads a model and a pairs file (TSV, rows repeating an image give it
 * several captions). Each caption t makes three pairs: its own (a
 * match), its image with caption u (not a match), and u's image with
 * caption t (not a match), u the next caption in file order (wrapping
 * around) of another image. Writes itm_accuracy (P(match) > 0.5 on
 * matches, < 0.5 on the others, over all pairs), its two parts
 * itm_match_accuracy and itm_nonmatch_accuracy, and itm_ranking (the
 * share of captions whose own pair scores above both its negatives);
 * with --scores, every pair as "kind<TAB>image<TAB>caption<TAB>P(match)"
 * (kind: match, other-text or other-image).
 */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

struct match {
	struct eval_common c;
	const char *pairs, *scores;
	struct vlm_pairs p;
};

static void
parse(struct match *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "pairs", required_argument, NULL, 'p' },
		{ "scores", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'J' },
		{ "alpha", required_argument, NULL, 'A' },
		{ "device", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:b:h", opts, NULL)) != -1) {
		if (eval_common_opt(&a->c, c, optarg))
			continue;
		switch (c) {
		case 'p': a->pairs = optarg; break;
		case 's': a->scores = optarg; break;
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc || !a->pairs || !a->c.model)
		cmd_usage(eval_usage, 2);
}

/* Caption t's negative u: the next caption of another usable image. */
static int
other(const struct vlm_pairs *p, const unsigned char *ok, int t)
{
	for (int k = 1; k < p->n; k++) {
		int u = (t + k) % p->n;
		if (ok[p->image_id[u]] && p->image_id[u] != p->image_id[t])
			return u;
	}
	return -1;
}

/* The pairs of every usable caption: (n3 = 3 per caption) into pi,
 * pt; the captions into tq. */
static int
make_pairs(const struct match *a, const unsigned char *ok, int32_t *pi,
    int32_t *pt, int *tq)
{
	const struct vlm_pairs *p = &a->p;
	int n = 0;

	for (int t = 0; t < p->n; t++) {
		int u;
		if (!ok[p->image_id[t]])
			continue;
		if ((u = other(p, ok, t)) < 0) {
			warnx("'%s': no caption of another image to make "
			    "negatives with", a->pairs);
			return -1;
		}
		pi[3 * n] = pi[3 * n + 1] = p->image_id[t];
		pi[3 * n + 2] = p->image_id[u];
		pt[3 * n] = pt[3 * n + 2] = t, pt[3 * n + 1] = u;
		tq[n++] = t;
	}
	if (!n)
		warnx("'%s': no usable pairs", a->pairs);
	return n ? n : -1;
}

/* Every pair's score into --scores; -1 warned. */
static int
write_scores(const struct match *a, int n, const int32_t *pi,
    const int32_t *pt, const float *s)
{
	static const char *const kind[3] = { "match", "other-text",
		"other-image" };
	const struct vlm_pairs *p = &a->p;
	FILE *f = fopen(a->scores, "w");

	if (!f) {
		warn("%s", a->scores);
		return -1;
	}
	for (int j = 0; j < 3 * n; j++)
		fprintf(f, "%s\t%s\t%s\t%.6f\n", kind[j % 3],
		    p->paths[p->image_row[pi[j]]], p->captions[pt[j]], s[j]);
	if (fclose(f) != 0) {
		warn("%s", a->scores);
		return -1;
	}
	return 0;
}

static void
report(const struct match *a, int n, const float *s)
{
	struct eval_report rep = { .dataset = a->pairs, .model = a->c.model,
	    .task = "image_text_matching" };
	int64_t pos = 0, neg = 0, rank = 0;

	for (int i = 0; i < n; i++) {
		const float *x = s + 3 * i;
		pos += x[0] > 0.5f;
		neg += (x[1] < 0.5f) + (x[2] < 0.5f);
		rank += x[0] > x[1] && x[0] > x[2];
	}
	eval_report_add(&rep, "itm_accuracy", (double)(pos + neg) / (3.0 * n));
	eval_report_add(&rep, "itm_match_accuracy", (double)pos / n);
	eval_report_add(&rep, "itm_nonmatch_accuracy", (double)neg / (2.0 * n));
	eval_report_add(&rep, "itm_ranking", (double)rank / n);
	eval_report_print(&rep, a->c.json);
}

/* Embed, pair, score, report; the failures of images set *failed. */
static int
evaluate(struct match *a, const struct vlm_model *m, int *failed)
{
	const struct vlm_pairs *p = &a->p;
	struct eval_fusion f;
	unsigned char *ok = malloc(p->nimages);
	float *ie = malloc((size_t)p->nimages * m->cfg.embed_dim * 4);
	float *te = malloc((size_t)p->n * m->cfg.embed_dim * 4);
	int32_t *pi = malloc(3 * (size_t)p->n * sizeof(*pi));
	int32_t *pt = malloc(3 * (size_t)p->n * sizeof(*pt));
	int *tq = malloc((size_t)p->n * sizeof(*tq));
	float *s = malloc(3 * (size_t)p->n * sizeof(*s));
	int64_t bad;
	int n = -1;

	if (!ok || !ie || !te || !pi || !pt || !tq || !s)
		errx(1, "out of memory");
	if (eval_fusion_begin(&f, m, p->nimages, p->n, a->c.batch) == 0) {
		if ((bad = eval_embed_pairs(m, a->c.model, p, a->c.batch, ie,
		    ok, te)) >= 0 && (n = make_pairs(a, ok, pi, pt, tq)) > 0 &&
		    eval_fusion_score(&f, 3 * (int64_t)n, pi, pt, s, NULL) == 0 &&
		    (!a->scores || write_scores(a, n, pi, pt, s) == 0))
			report(a, n, s);
		else
			n = -1;
		*failed |= bad != 0;
		eval_fusion_end(&f);
	}
	free(ok);
	free(ie);
	free(te);
	free(pi);
	free(pt);
	free(tq);
	free(s);
	return n > 0 ? 0 : -1;
}

int
eval_match(int argc, char **argv)
{
	struct match a = { .c = { .batch = EVAL_BATCH } };
	struct vlm_model m = { 0 };
	int failed = 0, rc = 1;

	parse(&a, argc, argv);
	if (vlm_pairs_load(&a.p, a.pairs, NULL) < 0) {
		warnx("%s", vlm_errmsg());
		return 1;
	}
	failed |= cmd_pairs_warn(&a.p, a.pairs);
	if (a.p.n < 1)
		warnx("'%s': no pairs", a.pairs);
	else if (eval_model_load(&m, &a.c) == 0) {
		rc = evaluate(&a, &m, &failed) < 0 || failed;
		vlm_model_release(&m);
	}
	vlm_pairs_release(&a.p);
	return rc;
}
