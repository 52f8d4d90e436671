/*
 * train-qa.c - vlm-train --qa ANSWERS: fine-tune a fusion model
 * (model/fusion.c) to answer questions. The one --data file has a third
 * column, "answer" (with --csv-caption-key naming the question column as
 * usual); ANSWERS lists the answer classes, one a line, and each row's
 * answer must be one of them. A model without a QA head of that many
 * classes gets one (its other parameters kept); the step's loss is the
 * answers' cross-entropy plus the router losses.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "train.h"
#include "base/base.h"

/* The class names: the non-empty lines of path. */
static int
load_names(struct train *t)
{
	size_t cap = 0;
	char *line = NULL;
	ssize_t len;
	FILE *f = fopen(t->qa, "r");

	if (!f)
		return vlm_error("'%s': cannot open", t->qa);
	while ((len = getline(&line, &cap, f)) > 0) {
		while (len > 0 && (line[len - 1] == '\n' ||
		    line[len - 1] == '\r'))
			line[--len] = '\0';
		if (!len)
			continue;
		char **n = realloc(t->qa_names, (t->qa_n + 1) *
		    sizeof(*n));
		if (!n || !(n[t->qa_n] = strdup(line)))
			errx(1, "out of memory");
		t->qa_names = n, t->qa_n++;
	}
	free(line);
	fclose(f);
	return t->qa_n ? 0 : vlm_error("'%s': no answer classes", t->qa);
}

/* Answer row i of the data (by its line) the index of its class. */
static int
label_rows(struct train *t, const struct vlm_pairs *a)
{
	const struct vlm_pairs *p = &t->src[0].pairs;
	int j = 0;

	if (!(t->qa_label = malloc((p->n ? p->n : 1) * sizeof(int32_t))))
		errx(1, "out of memory");
	for (int i = 0; i < p->n; i++) {
		while (j < a->n && a->line[j] < p->line[i])
			j++;
		if (j == a->n || a->line[j] != p->line[i])
			return vlm_error("%s:%d: no answer", t->data,
			    p->line[i]);
		t->qa_label[i] = -1;
		for (int k = 0; k < t->qa_n; k++)
			if (strcmp(a->captions[j], t->qa_names[k]) == 0)
				t->qa_label[i] = k;
		if (t->qa_label[i] < 0)
			return vlm_error("%s:%d: answer '%s' is not in '%s'",
			    t->data, p->line[i], a->captions[j], t->qa);
	}
	return 0;
}

int
train_qa_init(struct train *t)
{
	struct vlm_pairs_opts o = t->csv;
	struct vlm_pairs a;
	int rc;

	if (!t->qa)
		return 0;
	if (t->nsrc != 1)
		return vlm_error("--qa: one --data file");
	if (t->m.cfg.fusion.layers <= 0)
		return vlm_error("--qa: the model has no fusion blocks "
		    "(fusion.layers)");
	if (load_names(t) < 0)
		return -1;
	o.caption_key = "answer";
	if (vlm_pairs_load(&a, t->data, &o) < 0)
		return -1;
	rc = label_rows(t, &a);
	vlm_pairs_release(&a);
	if (rc < 0)
		return -1;
	if (t->m.cfg.fusion.answers != t->qa_n && (t->resume ||
	    vlm_fusion_add_qa(&t->m, t->qa_n, t->seed ^ 0x9a) < 0))
		return t->resume ? vlm_error("the checkpoint's QA head has %d "
		    "classes, '%s' %d", t->m.cfg.fusion.answers, t->qa,
		    t->qa_n) : -1;
	return 0;
}

/* The answers of batch b's items. */
const int32_t *
train_qa_labels(struct train *t, const struct vlm_batch *b)
{
	if (!t->qa_batch && !(t->qa_batch = malloc(t->o.batch *
	    sizeof(int32_t))))
		errx(1, "out of memory");
	for (int j = 0; j < b->n; j++)
		t->qa_batch[j] = t->qa_label[b->index[j]];
	return t->qa_batch;
}

void
train_qa_free(struct train *t)
{
	for (int i = 0; i < t->qa_n; i++)
		free(t->qa_names[i]);
	free(t->qa_names);
	free(t->qa_label);
	free(t->qa_batch);
}
