/*
 * embed-input.c - the items vlm-embed embeds, one at a time so that
 * memory stays flat: image paths from a walk over the arguments (files
 * as given, directories recursively in byte order) or over a list of
 * paths on stdin, or text lines from files or stdin, or the samples of
 * tar shards (cmd/embed-wds.c). The loader calls
 * embed_in_next() one call at a time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "embed.h"

/* A queued name of a source that failed. */
struct embed_fail {
	char *name;
	struct embed_fail *next;
};

/* The samples of tar shards; every argument must name some. */
static int
init_wds(struct embed_in *in, int text, char **paths, int npaths, int ring)
{
	for (int i = 0; i < npaths; i++)
		if (!vlm_wds_is_shards(paths[i]))
			return vlm_error("'%s': not a .tar shard (tar shards "
			    "and other inputs cannot be mixed)", paths[i]);
	if (!(in->wds = calloc(1, sizeof(*in->wds))))
		return vlm_error("out of memory");
	if (embed_wds_init(in->wds, text, paths, npaths, ring) == 0)
		return 0;
	embed_wds_release(in->wds);
	free(in->wds);
	in->wds = NULL;
	return -1;
}

int
embed_in_init(struct embed_in *in, int text, char **paths, int npaths,
    int ring)
{
	memset(in, 0, sizeof(*in));
	in->text = text;
	in->paths = paths;
	in->npaths = npaths;
	pthread_mutex_init(&in->mu, NULL);
	for (int i = 0; i < npaths; i++)
		if (vlm_wds_is_shards(paths[i]))
			return init_wds(in, text, paths, npaths, ring);
	if (!text)
		return vlm_walk_init(&in->walk, paths, npaths,
		    npaths ? NULL : stdin, "<stdin>");
	return 0;
}

/* Queue name as failed and return -1; the stream's message stays set. */
static int
failed(struct embed_in *in, const char *name)
{
	struct embed_fail *f = malloc(sizeof(*f));
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
	if (!f || !(f->name = strdup(name))) {
		free(f);
		return vlm_error("out of memory");
	}
	f->next = NULL;
	pthread_mutex_lock(&in->mu);
	if (in->tail)
		in->tail->next = f;
	else
		in->head = f;
	in->tail = f;
	pthread_mutex_unlock(&in->mu);
	return vlm_error("%s", msg);
}

char *
embed_in_failed(struct embed_in *in)
{
	struct embed_fail *f;
	char *name = NULL;

	pthread_mutex_lock(&in->mu);
	if ((f = in->head) != NULL) {
		in->head = f->next;
		if (!in->head)
			in->tail = NULL;
		name = f->name;
		free(f);
	}
	pthread_mutex_unlock(&in->mu);
	return name;
}

/* The next image path; a failed root or directory is named. */
static int
next_image(struct embed_in *in, char **key)
{
	FILE *list = in->walk.list;
	const char *path;
	int rc = vlm_walk_next(&in->walk, &path);

	if (rc < 0)
		return failed(in, list && !in->walk.list ? "<stdin>" :
		    in->walk.path ? in->walk.path : "?");
	if (rc > 0 && !(*key = strdup(path)))
		return vlm_error("'%s': out of memory", path);
	return rc;
}

/* Open the next text file ("-" or none: stdin); 0 when none is left. */
static int
open_text(struct embed_in *in)
{
	const char *name;

	if (in->ifile >= (in->npaths ? in->npaths : 1))
		return 0;
	name = in->npaths ? in->paths[in->ifile] : "-";
	in->ifile++;
	in->curname = strcmp(name, "-") == 0 ? "<stdin>" : name;
	in->cur = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
	if (!in->cur) {
		vlm_error("'%s': %s", name, strerror(errno));
		return failed(in, name);
	}
	return 1;
}

/* Close the current text file; -1 (it failed) on a read error. */
static int
close_text(struct embed_in *in)
{
	int bad = ferror(in->cur), e = errno;

	if (in->cur != stdin)
		fclose(in->cur);
	in->cur = NULL;
	if (!bad)
		return 0;
	vlm_error("'%s': %s", in->curname, strerror(e ? e : EIO));
	return failed(in, in->curname);
}

/* The next line of text, without its newline (and a '\r' before it). */
static int
next_text(struct embed_in *in, char **key)
{
	ssize_t k;
	int rc;

	for (;;) {
		if (!in->cur && (rc = open_text(in)) <= 0)
			return rc;
		if ((k = getline(&in->line, &in->cap, in->cur)) >= 0)
			break;
		if (close_text(in) < 0)
			return -1;
	}
	if (k > 0 && in->line[k - 1] == '\n')
		in->line[--k] = '\0';
	if (k > 0 && in->line[k - 1] == '\r')
		in->line[--k] = '\0';
	if (!(*key = strdup(in->line)))
		return vlm_error("out of memory for a line of text");
	return 1;
}

int
embed_in_next(void *arg, char **key)
{
	struct embed_in *in = arg;
	const char *bad;
	int rc;

	if (in->wds) {
		rc = embed_wds_next(in->wds, key, &bad);
		return rc < 0 && bad ? failed(in, bad) : rc;
	}
	return in->text ? next_text(in, key) : next_image(in, key);
}

void
embed_in_release(struct embed_in *in)
{
	char *name;

	while ((name = embed_in_failed(in)) != NULL)
		free(name);
	if (in->wds) {
		embed_wds_release(in->wds);
		free(in->wds);
	} else if (in->text) {
		if (in->cur && in->cur != stdin)
			fclose(in->cur);
		free(in->line);
	} else {
		vlm_walk_release(&in->walk);
	}
	pthread_mutex_destroy(&in->mu);
}

/* Lines in a file, the last one counted without its newline too. */
static int64_t
count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int64_t n = 0;
	int c, last = '\n';

	if (!f)
		return 0;
	while ((c = getc(f)) != EOF) {
		n += c == '\n';
		last = c;
	}
	fclose(f);
	return n + (last != '\n');
}

int64_t
embed_in_count(int text, char **paths, int npaths)
{
	struct vlm_walk w;
	const char *path;
	int64_t n = 0;
	int rc;

	if (npaths == 0)
		return -1;
	for (int i = 0; i < npaths; i++)  /* shards: known once scanned */
		if (vlm_wds_is_shards(paths[i]))
			return -1;
	for (int i = 0; text && i < npaths; i++) {
		if (strcmp(paths[i], "-") == 0)
			return -1;
		n += count_lines(paths[i]);
	}
	if (text)
		return n;
	vlm_walk_init(&w, paths, npaths, NULL, NULL);
	while ((rc = vlm_walk_next(&w, &path)) != 0)
		n += rc > 0;
	vlm_walk_release(&w);
	return n;
}
