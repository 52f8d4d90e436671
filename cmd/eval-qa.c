/*
 * eval-qa.c - `vlm-eval qa`: question answering accuracy of a fusion
 * model with a QA head (vlm-train --qa; model/fusion.c).
 *
 * Reads a model, a pairs file whose title column holds the questions
 * and whose "answer" column their answers (as tests/mkqa.py writes
 * them), and the answer classes, one a line, in the order the model was
 * trained with. Writes qa_accuracy, and three baselines on the same
 * rows: qa_chance (one over the classes), qa_majority (always the most
 * frequent answer) and qa_blind (for each question its most frequent
 * answer: what the question alone tells).
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

struct qa {
	struct eval_common c;
	const char *pairs, *answers;
	struct vlm_pairs p;   /* questions */
	int32_t *truth;       /* [p.n] answer classes */
	char **names;
	int A;
};

static void
parse(struct qa *q, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "pairs", required_argument, NULL, 'p' },
		{ "answers", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'J' },
		{ "alpha", required_argument, NULL, 'A' },
		{ "device", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:b:h", opts, NULL)) != -1) {
		if (eval_common_opt(&q->c, c, optarg))
			continue;
		switch (c) {
		case 'p': q->pairs = optarg; break;
		case 'a': q->answers = optarg; break;
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc || !q->pairs || !q->answers || !q->c.model)
		cmd_usage(eval_usage, 2);
}

/* Each question's answer class, by the line it shares with its row. */
static int
load_truth(struct qa *q)
{
	struct vlm_pairs_opts o = { .caption_key = "answer" };
	struct vlm_pairs a;
	int j = 0, rc = 0;

	if (vlm_pairs_load(&a, q->pairs, &o) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	if (!(q->truth = malloc((q->p.n ? q->p.n : 1) * sizeof(int32_t))))
		errx(1, "out of memory");
	for (int i = 0; rc == 0 && i < q->p.n; i++) {
		while (j < a.n && a.line[j] < q->p.line[i])
			j++;
		q->truth[i] = -1;
		for (int k = 0; j < a.n && a.line[j] == q->p.line[i] &&
		    k < q->A; k++)
			if (strcmp(a.captions[j], q->names[k]) == 0)
				q->truth[i] = k;
		if (q->truth[i] < 0) {
			warnx("%s:%d: no answer, or one not in '%s'", q->pairs,
			    q->p.line[i], q->answers);
			rc = -1;
		}
	}
	vlm_pairs_release(&a);
	return rc;
}

/* The share of rows the best constant answer gets right, over all rows
 * (by_question 0) or per distinct question (1). */
static double
baseline(const struct qa *q, int by_question)
{
	int n = q->p.n, right = 0;
	int *count = malloc((size_t)q->A * sizeof(*count));
	unsigned char *done = calloc(n ? n : 1, 1);

	if (!count || !done)
		errx(1, "out of memory");
	for (int i = 0; i < n; i++) {
		int best = 0;
		if (done[i])
			continue;
		memset(count, 0, (size_t)q->A * sizeof(*count));
		for (int j = i; j < n; j++)
			if (!by_question || strcmp(q->p.captions[j],
			    q->p.captions[i]) == 0) {
				count[q->truth[j]]++;
				done[j] = 1;
			}
		for (int k = 0; k < q->A; k++)
			best = count[k] > best ? count[k] : best;
		right += best;
	}
	free(count);
	free(done);
	return (double)right / n;
}

/* Embed, answer, report. */
static int
evaluate(struct qa *q, const struct vlm_model *m, int *failed)
{
	struct vlm_pairs *p = &q->p;
	struct eval_report rep = { .dataset = q->pairs, .model = q->c.model,
	    .task = "question_answering" };
	struct eval_fusion f;
	unsigned char *ok = malloc(p->nimages);
	float *ie = malloc((size_t)p->nimages * m->cfg.embed_dim * 4);
	float *te = malloc((size_t)p->n * m->cfg.embed_dim * 4);
	float *s = malloc((size_t)p->n * sizeof(*s));
	int32_t *pi = malloc((size_t)p->n * sizeof(*pi));
	int32_t *pt = malloc((size_t)p->n * sizeof(*pt));
	int32_t *ans = malloc((size_t)p->n * sizeof(*ans));
	int64_t bad = -1, right = 0, n = 0;
	int rc = -1;

	if (!ok || !ie || !te || !s || !pi || !pt || !ans)
		errx(1, "out of memory");
	if (m->cfg.fusion.answers != q->A)
		warnx("'%s': a QA head of %d classes, '%s' lists %d",
		    q->c.model, m->cfg.fusion.answers, q->answers, q->A);
	else if (eval_fusion_begin(&f, m, p->nimages, p->n, q->c.batch) == 0) {
		if ((bad = eval_embed_pairs(m, q->c.model, p, q->c.batch, ie,
		    ok, te)) >= 0) {
			for (int t = 0; t < p->n; t++)
				if (ok[p->image_id[t]])
					pi[n] = p->image_id[t], pt[n++] = t;
			rc = n ? eval_fusion_score(&f, n, pi, pt, s, ans) : -1;
		}
		eval_fusion_end(&f);
	}
	*failed |= bad != 0;
	for (int64_t j = 0; rc == 0 && j < n; j++)
		right += ans[j] == q->truth[pt[j]];
	if (rc == 0) {
		eval_report_add(&rep, "qa_accuracy", (double)right / n);
		eval_report_add(&rep, "qa_chance", 1.0 / q->A);
		eval_report_add(&rep, "qa_majority", baseline(q, 0));
		eval_report_add(&rep, "qa_blind", baseline(q, 1));
		eval_report_print(&rep, q->c.json);
	}
	free(ok);
	free(ie);
	free(te);
	free(s);
	free(pi);
	free(pt);
	free(ans);
	return rc;
}

int
eval_qa(int argc, char **argv)
{
	struct qa q = { .c = { .batch = EVAL_BATCH } };
	struct vlm_model m = { 0 };
	int failed = 0, rc = 1;

	parse(&q, argc, argv);
	if (eval_lines_load(q.answers, &q.names, &q.A) < 0)
		return 1;
	if (vlm_pairs_load(&q.p, q.pairs, NULL) < 0) {
		warnx("%s", vlm_errmsg());
	} else {
		failed |= cmd_pairs_warn(&q.p, q.pairs);
		if (q.p.n > 0 && load_truth(&q) == 0 &&
		    eval_model_load(&m, &q.c) == 0) {
			rc = evaluate(&q, &m, &failed) < 0 || failed;
			vlm_model_release(&m);
		}
		vlm_pairs_release(&q.p);
	}
	free(q.truth);
	eval_lines_free(q.names, q.A);
	return rc;
}
