/*
 * walk.c - the image paths a command is given: files named on the command
 * line or one per line on a stream (stdin), and directories walked
 * recursively in byte order of their full paths, keeping only regular
 * files whose first bytes say they are images (FIFOs, sockets and devices
 * in a directory are passed over unopened, so a walk never blocks). It
 * is an iterator so that a list of millions of paths never sits in
 * memory: it holds one line, or the sorted entries of the directories on
 * the current path.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"

/* One open directory: its entries sorted, directories ending in '/'. */
struct vlm_walk_frame {
	char **names;
	int n, i;
	size_t len;  /* length of the directory's path in w->path */
	dev_t dev;
	ino_t ino;
};

int
vlm_walk_init(struct vlm_walk *w, char *const *roots, int nroots,
    FILE *list, const char *listname)
{
	memset(w, 0, sizeof(*w));
	w->roots = roots;
	w->nroots = nroots;
	w->list = list;
	w->listname = listname ? listname : "<stdin>";
	return 0;
}

static void
pop(struct vlm_walk *w)
{
	struct vlm_walk_frame *f = &w->stack[--w->depth];

	for (int i = 0; i < f->n; i++)
		free(f->names[i]);
	free(f->names);
}

void
vlm_walk_release(struct vlm_walk *w)
{
	while (w->depth > 0)
		pop(w);
	free(w->stack);
	free(w->path);
	free(w->line);
	memset(w, 0, sizeof(*w));
}

/* make w->path hold its first len bytes plus s; -1 on out of memory */
static int
set_path(struct vlm_walk *w, size_t len, const char *s)
{
	size_t k = strlen(s);

	if (len + k + 1 > w->pathcap) {
		size_t cap = 2 * (len + k + 1);
		char *p = realloc(w->path, cap);
		if (!p)
			return vlm_error("out of memory walking '%s'", s);
		w->path = p;
		w->pathcap = cap;
	}
	memcpy(w->path + len, s, k + 1);
	return 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* read the directory at w->path (ending in '/'); entries sorted */
static int
list_dir(struct vlm_walk *w, char ***names, int *n)
{
	DIR *d = opendir(w->path);
	struct dirent *e;
	size_t len = strlen(w->path);
	int cap = 0, rc = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return vlm_error("'%s': %s", w->path, strerror(errno));
	while (rc == 0 && (e = readdir(d)) != NULL) {
		struct stat st;
		if (e->d_name[0] == '.')
			continue;  /* ".", "..", hidden files */
		if (set_path(w, len, e->d_name) < 0) {
			rc = -1;
			break;
		}
		int isdir = stat(w->path, &st) == 0 && S_ISDIR(st.st_mode);
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			char **p = realloc(*names, cap * sizeof(*p));
			if (!p) {
				rc = vlm_error("'%s': out of memory", w->path);
				break;
			}
			*names = p;
		}
		char *s = malloc(strlen(e->d_name) + 2);
		if (!s) {
			rc = vlm_error("'%s': out of memory", w->path);
			break;
		}
		strcpy(s, e->d_name);
		if (isdir)
			strcat(s, "/");
		(*names)[(*n)++] = s;
	}
	closedir(d);
	w->path[len] = '\0';
	if (rc == 0 && *n > 1) /* an empty directory has no array */
		qsort(*names, *n, sizeof(**names), cmp_names);
	return rc;
}

/* descend into the directory at w->path, which ends in '/' */
static int
push(struct vlm_walk *w, const struct stat *st)
{
	struct vlm_walk_frame *f;

	for (int i = 0; i < w->depth; i++)
		if (w->stack[i].dev == st->st_dev &&
		    w->stack[i].ino == st->st_ino)
			return vlm_error("'%s': directory loop", w->path);
	if (w->depth == w->cap) {
		int cap = w->cap ? 2 * w->cap : 8;
		f = realloc(w->stack, cap * sizeof(*f));
		if (!f)
			return vlm_error("'%s': out of memory", w->path);
		w->stack = f;
		w->cap = cap;
	}
	f = &w->stack[w->depth];
	memset(f, 0, sizeof(*f));
	if (list_dir(w, &f->names, &f->n) < 0) {
		for (int i = 0; i < f->n; i++)
			free(f->names[i]);
		free(f->names);
		return -1;
	}
	f->len = strlen(w->path);
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	w->depth++;
	return 0;
}

/* a root (argument or list line): a file is yielded, a directory entered */
static int
start_root(struct vlm_walk *w, const char *root, const char **path)
{
	struct stat st;
	size_t k = strlen(root);

	if (set_path(w, 0, root) < 0)
		return -1;
	if (stat(root, &st) != 0)
		return vlm_error("'%s': %s", root, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		*path = w->path;
		return 1;
	}
	if ((k == 0 || root[k - 1] != '/') && set_path(w, k, "/") < 0)
		return -1;
	return push(w, &st) < 0 ? -1 : 0;
}

/* the next root: an argument, then a line of the list; 0 when none */
static const char *
next_root(struct vlm_walk *w)
{
	ssize_t k;

	if (w->iroot < w->nroots)
		return w->roots[w->iroot++];
	while (w->list && (k = getline(&w->line, &w->linecap, w->list)) >= 0) {
		w->lineno++;
		while (k > 0 && strchr("\r\n", w->line[k - 1]))
			w->line[--k] = '\0';
		if (k > 0)
			return w->line;
	}
	return NULL;
}

/* one step inside the current directory: 1 image, 0 nothing yet, -1 */
static int
step_dir(struct vlm_walk *w, const char **path)
{
	struct vlm_walk_frame *f = &w->stack[w->depth - 1];
	struct stat st;
	const char *name;
	size_t k;

	if (f->i == f->n) {
		pop(w);
		return 0;
	}
	name = f->names[f->i++];
	k = strlen(name);
	if (set_path(w, f->len, name) < 0)
		return -1;
	if (stat(w->path, &st) != 0)
		return vlm_error("'%s': %s", w->path, strerror(errno));
	if (name[k - 1] == '/')
		return push(w, &st);
	if (!S_ISREG(st.st_mode)) { /* a FIFO would block the open */
		w->nskipped++;
		return 0;
	}
	switch (vlm_image_sniff(w->path)) {
	case -1:
		return -1;
	case VLM_IMAGE_NONE:
		w->nskipped++;
		return 0;
	default:
		*path = w->path;
		return 1;
	}
}

int
vlm_walk_next(struct vlm_walk *w, const char **path)
{
	const char *root;
	int rc;

	for (;;) {
		if (w->depth > 0)
			rc = step_dir(w, path);
		else if ((root = next_root(w)) != NULL)
			rc = start_root(w, root, path);
		else if (w->list && ferror(w->list)) {
			w->list = NULL;  /* reported once */
			return vlm_error("'%s': read error", w->listname);
		}
		else
			return 0;
		if (rc != 0)
			return rc;
	}
}

/* A loader's next(): the walk's paths as malloc'ed keys. */
int
vlm_walk_key(void *arg, char **key)
{
	const char *path;
	int rc = vlm_walk_next(arg, &path);

	if (rc <= 0)
		return rc;
	if (!(*key = strdup(path)))
		return vlm_error("'%s': out of memory", path);
	return 1;
}
