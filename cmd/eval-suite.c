/*
 * eval-suite.c - `vlm-eval suite`: every task of every data set of a
 * list, for each model, one JSON file per (data set, model, task) in
 * CLIP_benchmark's shape and naming (its `eval --skip_existing` over a
 * benchmark list and several models).
 *
 * The list: a data set a line (blank lines and lines starting with #
 * skipped), its path, then its tasks (none: the default of its kind):
 * a CLIP_benchmark webdataset directory (a SPLIT/nshards.txt inside;
 * its dataset_type.txt), an ImageFolder tree (with train/ and test/
 * subtrees the zero-shot set is test/ and linear_probe is possible),
 * a selection file (a header "image caption ..." or "image0 image1
 * ...") or a pairs file. A result whose file exists is skipped; an
 * ImageFolder's test images are embedded once per model and the rows
 * reused by its tasks (a temporary .npys in the output directory).
 * Each task runs as the verb would (cmd/eval-*.c, --json), its stdout
 * caught in a temporary file, then rewritten with the fields
 * CLIP_benchmark adds and renamed into place. Progress on stderr.
 */
#include <err.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "formats/formats.h"
#include "eval.h"

static void
parse(struct suite *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "output", required_argument, NULL, 'o' },
		{ "batch", required_argument, NULL, 'b' },
		{ "split", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:o:b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (s->nmodels == SUITE_MAX_MODELS)
				errx(2, "suite: more than %d models",
				    SUITE_MAX_MODELS);
			s->models[s->nmodels++] = optarg;
			break;
		case 'o': s->out = optarg; break;
		case 'b': cmd_int("-b", optarg, 1, 1 << 20); s->batch = optarg;
			break;
		case 's': s->split = optarg; break;
		case 'h': cmd_usage(eval_usage, 0);
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc - 1 || s->nmodels == 0)
		cmd_usage(eval_usage, 2);
	s->list = argv[optind];
	for (int i = 0; i < s->nmodels; i++)
		for (int j = 0; j < i; j++)
			if (!strcmp(basename(s->models[i]),
			    basename(s->models[j])))
				errx(2, "suite: models '%s' and '%s' share "
				    "a file name", s->models[j], s->models[i]);
}

/* One model on one data set. */
struct job {
	const struct suite *s;
	const struct suite_entry *e;
	const char *model;   /* its path */
	char *name;          /* its file name without the extension */
	char *tree, *train;  /* a folder's zero-shot tree, training tree */
	char *emb;           /* a folder's embeddings, once made */
	int emb_ok;
};

static int (*const verb_of[])(int, char **) = { eval_zeroshot,
    eval_retrieval, eval_linear_probe, eval_select };

/* Where a result goes: CLIP_benchmark's default output name,
 * "{dataset}_{pretrained}_{model}_{language}_{task}.json". */
static char *
result_alloc(const struct job *j, const char *task)
{
	char *p;

	if (asprintf(&p, "%s/%s_%s_%s_en_%s.json", j->s->out, j->e->slug,
	    basename(j->model), j->name, task) < 0)
		errx(1, "out of memory");
	return p;
}

/* Run verb fn with stdout into the file tmp: its exit status. */
static int
capture(int (*fn)(int, char **), char **argv, const char *tmp)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666), save, rc,
	    argc = 0;

	if (fd < 0) {
		warn("'%s'", tmp);
		return 1;
	}
	while (argv[argc])
		argc++;
	if (fflush(stdout) != 0 || (save = dup(1)) < 0 || dup2(fd, 1) < 0)
		err(1, "stdout");
	close(fd);
	optind = 0; /* glibc: start getopt afresh */
	rc = fn(argc, argv);
	if (fflush(stdout) != 0) {
		warn("'%s'", tmp);
		rc = 1;
	}
	if (dup2(save, 1) < 0)
		err(1, "stdout");
	close(save);
	return rc;
}

/* The verb's JSON object in CLIP_benchmark's shape, key for key, into
 * path (atomically). */
static int
rewrite(const struct job *j, const char *tmp, const char *path)
{
	json_t *in = json_load_file(tmp, 0, NULL), *o;
	json_t *task = json_object_get(in, "task");
	json_t *metrics = json_object_get(in, "metrics");
	struct vlm_atomic a;
	int rc = -1;

	if (!json_is_string(task) || !json_is_object(metrics)) {
		warnx("'%s': no result from the verb", tmp);
		json_decref(in);
		return -1;
	}
	o = json_pack("{s:s, s:s, s:s, s:O, s:O, s:s}", "dataset", j->e->path,
	    "model", j->name, "pretrained", j->model, "task", task, "metrics",
	    metrics, "language", "en");
	if (!o)
		errx(1, "out of memory");
	if (vlm_atomic_open(&a, path) < 0)
		warnx("%s", vlm_errmsg());
	else if (json_dumpf(o, a.f, JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(15)) < 0 ||
	    fputc('\n', a.f) == EOF) {
		warn("'%s'", path);
		vlm_atomic_abort(&a);
	} else if (vlm_atomic_commit(&a) < 0)
		warnx("%s", vlm_errmsg());
	else
		rc = 0;
	json_decref(o);
	json_decref(in);
	return rc;
}

/* Write n embedded rows (those ok) of d into an .npys file. */
static int
write_emb(const struct job *j, const struct vlm_imagefolder *d, float *v,
    const unsigned char *ok, int D)
{
	struct vlm_npys_writer w;
	json_t *meta = json_pack("{s:s, s:i, s:s, s:b}", "model", j->name,
	    "dim", D, "space", "image", "normalized", 1);
	char *mj = json_dumps(meta, JSON_COMPACT), **ids = malloc(d->n *
	    sizeof(*ids));
	FILE *f;
	int64_t k = 0;
	int rc = -1;

	if (!mj || !ids)
		errx(1, "out of memory");
	for (int i = 0; i < d->n; i++)
		if (ok[i]) {
			memmove(v + k * D, v + (int64_t)i * D, D * sizeof(*v));
			ids[k++] = d->paths[i];
		}
	if (!(f = fopen(j->emb, "w")))
		warn("'%s'", j->emb);
	else if (vlm_npys_writer_init(&w, f, j->emb, mj) < 0 ||
	    vlm_npys_writer_batch(&w, (const char *const *)ids, v, k) < 0 ||
	    vlm_npys_writer_finish(&w, NULL) < 0)
		warnx("%s", vlm_errmsg());
	else
		rc = 0;
	if (f && fclose(f) != 0 && rc == 0)
		rc = -1, warn("'%s'", j->emb);
	json_decref(meta);
	free(mj);
	free(ids);
	return rc;
}

/* A folder's zero-shot images embedded by model m, once, into j->emb. */
static int
embed_once(struct job *j, const struct vlm_model *m)
{
	struct vlm_imagefolder d;
	int D = m->cfg.embed_dim, rc = -1;
	const char *b = j->s->batch;
	float *v;
	unsigned char *ok;

	if (j->emb)
		return j->emb_ok ? 0 : -1;
	if (vlm_imagefolder_load(&d, j->tree, NULL) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	if (!(v = malloc((size_t)d.n * D * sizeof(*v))) || !(ok = malloc(
	    d.n)))
		errx(1, "out of memory");
	if (asprintf(&j->emb, "%s/.%s_%s.%ld.npys", j->s->out, j->e->slug,
	    j->name, (long)getpid()) < 0)
		errx(1, "out of memory");
	fprintf(stderr, "vlm-eval suite: embedding the %d images of '%s' "
	    "with '%s'\n", d.n, j->tree, j->model);
	if (eval_embed_images(m, d.paths, NULL, d.n, b ? atoi(b) : EVAL_BATCH,
	    v, ok) >= 0)
		rc = write_emb(j, &d, v, ok, D);
	j->emb_ok = rc == 0;
	free(v);
	free(ok);
	vlm_imagefolder_release(&d);
	return rc;
}

/* The verb's argument list for task t of j (NULL-terminated). */
static void
args(const struct job *j, int t, char **av)
{
	const struct suite_entry *e = j->e;
	const char *tree = j->tree;
	int n = 0;

#define A(x) (av[n++] = (char *)(x))
	A(t == 0 ? "zeroshot" : t == 1 ? "retrieval" : t == 2 ?
	    "linear-probe" : "select");
	A("-m"), A(j->model), A("--json");
	if (j->s->batch)
		A("-b"), A(j->s->batch);
	if (e->kind == SUITE_WDS)
		A("--wds"), A(e->path), A("--split"), A(j->s->split);
	else if (t == 0)
		A("--images"), A(tree), A("--image-emb"), A(j->emb);
	else if (t == 1)
		A("--pairs"), A(e->path);
	else if (t == 2)
		A("--test"), A(tree), A("--test-emb"), A(j->emb);
	else
		A("--file"), A(e->path);
	if (t == 2)
		A("--train"), A(j->train);
#undef A
	av[n] = NULL;
}

/* Task t of j, unless its result exists: 0 done or skipped, -1. */
static int
run_task(struct suite *s, struct job *j, int t, struct vlm_model *m,
    int *loaded)
{
	char *out = result_alloc(j, suite_tasks[t].name), *tmp, *av[24];
	int rc = -1;

	s->done++;
	if (access(out, F_OK) == 0) {
		fprintf(stderr, "vlm-eval suite: [%d/%d] skip '%s': exists\n",
		    s->done, s->total, out);
		free(out);
		return 0;
	}
	fprintf(stderr, "vlm-eval suite: [%d/%d] %s on '%s' with '%s'\n",
	    s->done, s->total, suite_tasks[t].name, j->e->path, j->model);
	if (asprintf(&tmp, "%s.out.%ld", out, (long)getpid()) < 0)
		errx(1, "out of memory");
	if (j->e->kind == SUITE_FOLDER && !*loaded &&
	    eval_model_load(m, &(struct eval_common){ .model = j->model }) == 0)
		*loaded = 1;
	if (j->e->kind != SUITE_FOLDER || (*loaded && embed_once(j, m) == 0)) {
		args(j, t, av);
		if (capture(verb_of[t], av, tmp) == 0)
			rc = rewrite(j, tmp, out);
		unlink(tmp);
	}
	if (rc < 0)
		warnx("'%s': %s with '%s' failed", j->e->path,
		    suite_tasks[t].name, j->model);
	free(tmp);
	free(out);
	return rc;
}

/* Every task of e with one model. */
static int
run_entry(struct suite *s, const struct suite_entry *e, const char *model,
    struct vlm_model *m, int *loaded)
{
	struct job j = { .s = s, .e = e, .model = model };
	const char *dot, *base = basename(model);
	int rc = 0;

	dot = strrchr(base, '.');
	if (!(j.name = strndup(base, dot && dot != base ? (size_t)(dot -
	    base) : strlen(base))))
		errx(1, "out of memory");
	if (asprintf(&j.tree, "%s%s", e->path, e->splits ? "/test" : "") <
	    0 || asprintf(&j.train, "%s/train", e->path) < 0)
		errx(1, "out of memory");
	for (int i = 0; i < e->ntasks; i++) {
		int t = 0;
		while (strcmp(suite_tasks[t].name, e->tasks[i]))
			t++;
		rc |= run_task(s, &j, t, m, loaded);
	}
	if (j.emb)
		unlink(j.emb);
	free(j.emb);
	free(j.tree);
	free(j.train);
	free(j.name);
	return rc;
}

int
eval_suite(int argc, char **argv)
{
	struct suite s = { .out = ".", .split = "test" };
	int bad, failed = 0;

	parse(&s, argc, argv);
	if (!suite_is_dir(s.out, NULL))
		errx(1, "'%s': not a directory", s.out);
	bad = suite_list_load(&s) < 0;
	for (int i = 0; !bad && i < s.nmodels; i++) {
		struct vlm_model m = { 0 };
		int loaded = 0, r = 0;
		for (int k = 0; k < s.n; k++)
			r |= run_entry(&s, &s.e[k], s.models[i], &m, &loaded);
		if (loaded)
			vlm_model_release(&m);
		failed |= r != 0;
	}
	for (int k = 0; k < s.n; k++) {
		free(s.e[k].path);
		free(s.e[k].slug);
	}
	free(s.e);
	return bad || failed;
}
