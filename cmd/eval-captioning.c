/*
 * eval-captioning.c - `vlm-eval captioning`: BLEU-1..4 and CIDEr-D of
 * candidate captions against reference captions, as the COCO caption
 * evaluation (pycocoevalcap) computes them (libcore/eval/caption-metrics.c).
 *
 * Reads the references from a pairs file (--refs: a header, then
 * "path<TAB>caption" rows, several rows of one path its several
 * references) and the candidates from a file of "path<TAB>caption" lines
 * without a header (--hyp, as vlm-caption prints them; "-" stdin).
 * Candidate paths are matched to reference images as embedding ids are
 * (equal, or one ends with "/" and the other). Writes the metrics as a
 * table or one JSON object (--json). An image without a candidate, a
 * candidate without an image and a bad line are warned about and left
 * out (exit status 1).
 */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"

struct hyps {
	int64_t n, cap;
	char **path, **text;
};

/* The candidate lines of path; bad lines warned about (*failed set). */
static int
hyps_load(struct hyps *h, const char *path, int *failed)
{
	FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
	char *line = NULL, *tab;
	size_t len = 0;
	int ln = 0, rc = 0;

	if (!fp) {
		warn("'%s'", path);
		return -1;
	}
	while (getline(&line, &len, fp) >= 0) {
		ln++;
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		if (!(tab = strchr(line, '\t')) || tab == line) {
			warnx("'%s':%d: not \"path<TAB>caption\"", path, ln);
			*failed = 1;
			continue;
		}
		*tab = '\0';
		if (h->n == h->cap) {
			h->cap = h->cap ? 2 * h->cap : 64;
			h->path = realloc(h->path, h->cap * sizeof(*h->path));
			h->text = realloc(h->text, h->cap * sizeof(*h->text));
			if (!h->path || !h->text)
				errx(1, "out of memory");
		}
		if (!(h->path[h->n] = strdup(line)) ||
		    !(h->text[h->n++] = strdup(tab + 1)))
			errx(1, "out of memory");
	}
	if (ferror(fp))
		warn("'%s'", path), rc = -1;
	else if (h->n == 0)
		warnx("'%s': no captions", path), rc = -1;
	free(line);
	if (fp != stdin)
		fclose(fp);
	return rc;
}

/* hyp[i] := the candidate of reference image i (NULL: none, warned). */
static int
match(const struct vlm_pairs *p, const struct hyps *h, const char *hname,
    char **hyp, int *failed)
{
	struct vlm_emb e = { .n = h->n, .ids = h->path };
	char **paths = eval_pairs_images(p, NULL);
	int64_t *row = malloc(p->nimages * sizeof(*row)), used = 0;
	int rc = -1;

	if (!row)
		errx(1, "out of memory");
	if (eval_match_ids(&e, hname, paths, p->nimages, row) == 0) {
		for (int i = 0; i < p->nimages; i++) {
			hyp[i] = row[i] < 0 ? NULL : h->text[row[i]];
			used += row[i] >= 0;
			if (row[i] < 0)
				warnx("'%s': no caption for '%s'", hname,
				    paths[i]);
		}
		if (used < h->n)
			warnx("'%s': %lld captions of images not in the "
			    "references", hname, (long long)(h->n - used));
		*failed |= used < h->n || used < p->nimages;
		rc = 0;
	}
	free(paths);
	free(row);
	return rc;
}

/* Score and report; 0, or -1 after a warning. */
static int
score(const struct vlm_pairs *p, char **hyp, const char *refs,
    const char *hname, int json)
{
	static const char *names[4] = { "Bleu_1", "Bleu_2", "Bleu_3",
	    "Bleu_4" };
	struct eval_report r = { .dataset = refs, .model = hname,
	    .task = "captioning" };
	struct vlm_caption_scores s;

	if (vlm_caption_metrics(&s, NULL, hyp, p->nimages, p->captions,
	    p->image_id, p->n) < 0) {
		warnx("'%s': %s", hname, vlm_errmsg());
		return -1;
	}
	for (int k = 0; k < 4; k++)
		eval_report_add(&r, names[k], s.bleu[k]);
	eval_report_add(&r, "CIDEr", s.cider);
	eval_report_add(&r, "images", s.n);
	r.exp[r.n - 1] = 1;
	eval_report_print(&r, json);
	return 0;
}

int
eval_captioning(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "refs", required_argument, NULL, 'r' },
		{ "hyp", required_argument, NULL, 'H' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct eval_common o = { 0 };
	struct vlm_pairs p = { 0 };
	struct hyps h = { 0 };
	const char *refs = NULL, *hname = NULL;
	char **hyp;
	int c, failed = 0, rc = 1;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (c == 'r' || c == 'H')
			*(c == 'r' ? &refs : &hname) = optarg;
		else if (!eval_common_opt(&o, c, optarg))
			cmd_usage(eval_usage, 2);
	if (optind != argc || !refs || !hname)
		cmd_usage(eval_usage, 2);
	if (vlm_pairs_load(&p, refs, NULL) < 0) {
		warnx("%s", vlm_errmsg());
		return 1;
	}
	failed = cmd_pairs_warn(&p, refs);
	if (!(hyp = calloc(p.nimages + 1, sizeof(*hyp))))
		errx(1, "out of memory");
	if (hyps_load(&h, hname, &failed) == 0 &&
	    match(&p, &h, hname, hyp, &failed) == 0)
		rc = score(&p, hyp, refs, hname, o.json) < 0 || failed;
	for (int64_t i = 0; i < h.n; i++)
		free(h.path[i]), free(h.text[i]);
	free(h.path);
	free(h.text);
	free(hyp);
	vlm_pairs_release(&p);
	return rc;
}
