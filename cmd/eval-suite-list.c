/*
 * eval-suite-list.c - the list `vlm-eval suite` reads: a data set a
 * line, its path then its tasks; each path's kind (a CLIP_benchmark
 * webdataset directory, an ImageFolder tree, a selection file, a pairs
 * file) and default task; CLIP_benchmark's dataset slug.
 */
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval.h"

/* The tasks, and which kinds may have each. */
const struct suite_task suite_tasks[SUITE_NTASKS] = {
	{ "zeroshot_classification", 1 << SUITE_WDS | 1 << SUITE_FOLDER },
	{ "zeroshot_retrieval", 1 << SUITE_WDS | 1 << SUITE_PAIRS },
	{ "linear_probe", 1 << SUITE_FOLDER },
	{ "image_caption_selection", 1 << SUITE_SELECT },
};

int
suite_is_dir(const char *dir, const char *sub)
{
	struct stat st;
	char *p;
	int r;

	if (asprintf(&p, "%s%s%s", dir, sub ? "/" : "", sub ? sub : "") < 0)
		errx(1, "out of memory");
	r = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return r;
}

/* A file's kind from its header: a selection file or pairs. */
static int
file_kind(struct suite_entry *e)
{
	FILE *f = fopen(e->path, "r");
	char line[32] = "";

	if (!f) {
		warn("'%s'", e->path);
		return -1;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	e->kind = !strncmp(line, "image\tcaption\t", 14) ||
	    !strncmp(line, "image0\timage1\t", 14) ? SUITE_SELECT : SUITE_PAIRS;
	return 0;
}

/* The entry's kind and, without tasks given, its default task. */
static int
classify(struct suite *s, struct suite_entry *e)
{
	char *nsh, type[64];

	if (!suite_is_dir(e->path, NULL))
		return file_kind(e);
	if (asprintf(&nsh, "%s/%s/nshards.txt", e->path, s->split) < 0)
		errx(1, "out of memory");
	e->kind = access(nsh, F_OK) == 0 ? SUITE_WDS : SUITE_FOLDER;
	free(nsh);
	e->splits = e->kind == SUITE_FOLDER && suite_is_dir(e->path, "train") &&
	    suite_is_dir(e->path, "test");
	if (e->kind == SUITE_WDS && vlm_wds_dataset_type(e->path, type,
	    sizeof(type)) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	if (e->ntasks == 0 && e->kind == SUITE_WDS)
		e->tasks[e->ntasks++] = strcmp(type, "retrieval") ?
		    suite_tasks[0].name : suite_tasks[1].name;
	return 0;
}

/* Check a line's tasks against its kind; the default one if none. */
static int
check_tasks(struct suite *s, struct suite_entry *e, int ln)
{
	static const int deflt[] = { 0, 0, 3, 1 }; /* by kind */

	if (classify(s, e) < 0)
		return -1;
	if (e->ntasks == 0)
		e->tasks[e->ntasks++] = suite_tasks[deflt[e->kind]].name;
	for (int i = 0; i < e->ntasks; i++) {
		size_t t = 0;
		while (t < SUITE_NTASKS &&
		    strcmp(suite_tasks[t].name, e->tasks[i]))
			t++;
		if (t == SUITE_NTASKS) {
			warnx("'%s':%d: unknown task '%s'", s->list, ln,
			    e->tasks[i]);
			return -1;
		}
		e->tasks[i] = suite_tasks[t].name;
		if (!(suite_tasks[t].kinds >> e->kind & 1) ||
		    (!strcmp(e->tasks[i], "linear_probe") && !e->splits)) {
			warnx("'%s':%d: '%s' cannot have task '%s'%s", s->list,
			    ln, e->path, e->tasks[i], e->kind == SUITE_FOLDER ?
			    " (linear_probe: a tree with train/ and test/)" :
			    "");
			return -1;
		}
	}
	return 0;
}

/* CLIP_benchmark's dataset slug: "/" as "_", no leading "./" or "/",
 * no trailing "/". */
static char *
slug_alloc(const char *path)
{
	char *s;

	while (!strncmp(path, "./", 2) || (path[0] == '/' && path[1]))
		path += path[0] == '/' ? 1 : 2;
	if (!(s = strdup(path)))
		errx(1, "out of memory");
	for (size_t n = strlen(s); n > 1 && s[n - 1] == '/'; n--)
		s[n - 1] = '\0';
	for (char *c = s; *c; c++)
		if (*c == '/')
			*c = '_';
	return s;
}

/* One line of the list into e (fields split in place); 0 if blank. */
static int
entry(struct suite *s, struct suite_entry *e, char *line, int ln)
{
	char *f[SUITE_MAX_TASKS + 2], *save;
	int n = 0;

	memset(e, 0, sizeof(*e));
	for (char *t = strtok_r(line, " \t\r\n", &save); t && n <
	    SUITE_MAX_TASKS + 2; t = strtok_r(NULL, " \t\r\n", &save))
		f[n++] = t;
	if (n == 0 || f[0][0] == '#')
		return 0;
	if (n > SUITE_MAX_TASKS + 1) {
		warnx("'%s':%d: more than %d tasks", s->list, ln,
		    SUITE_MAX_TASKS);
		return -1;
	}
	if (!(e->path = strdup(f[0])))
		errx(1, "out of memory");
	e->slug = slug_alloc(f[0]);
	for (int i = 1; i < n; i++)
		e->tasks[e->ntasks++] = f[i];
	return check_tasks(s, e, ln) < 0 ? -1 : 1;
}

int
suite_list_load(struct suite *s)
{
	FILE *f = fopen(s->list, "r");
	char *line = NULL;
	size_t len = 0, cap = 0;
	int ln = 0, rc = 0, r;

	if (!f) {
		warn("'%s'", s->list);
		return -1;
	}
	while (getline(&line, &len, f) >= 0) {
		ln++;
		if ((size_t)s->n == cap && !(s->e = realloc(s->e, (cap = cap *
		    2 + 8) * sizeof(*s->e))))
			errx(1, "out of memory");
		if ((r = entry(s, &s->e[s->n], line, ln)) < 0) {
			free(s->e[s->n].path);
			free(s->e[s->n].slug);
			rc = -1;
		} else if (r > 0)
			s->total += s->e[s->n++].ntasks * s->nmodels;
	}
	if (ferror(f))
		rc = -1, warn("'%s'", s->list);
	else if (rc == 0 && s->n == 0)
		rc = -1, warnx("'%s': no data sets", s->list);
	free(line);
	fclose(f);
	return rc;
}
