/*
 * embed-wds.c - vlm-embed's items from webdataset tar shards: every
 * sample of the shards named by the arguments (brace patterns, as
 * vlm-train --data reads them), in shard order, named "SHARD:KEY". The
 * scan keeps each image as its shard, offset and size (a vlm_blob) that
 * the loader's threads read; with texts, the sample's `txt` caption.
 * Bad samples and shards that cannot be read are kept in order with
 * their message, to be met by the stream where they were found.
 */
#include <stdlib.h>
#include <string.h>

#include "embed.h"
#include "data/wds-priv.h"

struct embed_wds_bad {
	char *name, *msg;
	int at;                /* the good samples before it */
};

/* A bad sample or shard: name and message, in order. */
static int
add_bad(struct embed_wds *w, const char *name, int nlen, const char *msg)
{
	struct embed_wds_bad *b;

	if (w->nbad == w->capbad && vlm_array_grow(&w->bad, sizeof(*w->bad),
	    w->capbad = w->capbad ? 2 * w->capbad : 16) < 0)
		return vlm_error("out of memory");
	b = &w->bad[w->nbad];
	if (!(b->name = strndup(name, nlen)) || !(b->msg = strdup(msg))) {
		free(b->name);
		return vlm_error("out of memory");
	}
	b->at = w->n;
	w->nbad++;
	return 0;
}

/* The scan's bad sample, "'SHARD': KEY: why": named SHARD:KEY. */
static int
scan_bad(void *arg, const char *msg)
{
	struct embed_wds *w = arg;
	size_t k = strlen(w->cur) + 4;
	const char *key = strlen(msg) > k ? msg + k : NULL;
	const char *e = key ? strstr(key, ": ") : NULL;
	char *name;
	int rc;

	if (!e)  /* the shard's fault, not a sample's */
		return add_bad(w, w->cur, strlen(w->cur), msg);
	if (asprintf(&name, "%s:%.*s", w->cur, (int)(e - key), key) < 0)
		return vlm_error("out of memory");
	rc = add_bad(w, name, strlen(name), msg);
	free(name);
	return rc;
}

/* A good sample: its name, image and (texts) caption, taken over. */
static int
scan_emit(void *arg, int shard, int num, struct wds_sample *s)
{
	struct embed_wds *w = arg;
	int c = w->cap ? 2 * w->cap : 1024;

	(void)shard, (void)num;
	if (w->n == w->cap && (vlm_array_grow(&w->ids, sizeof(char *), c) < 0 ||
	    vlm_array_grow(&w->blobs, sizeof(*w->blobs), c) < 0 ||
	    vlm_array_grow(&w->texts, sizeof(char *), c) < 0))
		return vlm_error("out of memory");
	w->cap = w->n == w->cap ? c : w->cap;
	if (asprintf(&w->ids[w->n], "%s:%s", s->img.file, s->key) < 0)
		return vlm_error("out of memory");
	w->blobs[w->n] = s->img;
	w->texts[w->n++] = s->text;  /* NULL for images */
	s->text = NULL;
	return 0;
}

/* Scan one shard; one that cannot be read is a bad item, not an end. */
static int
scan_one(struct embed_wds *w, const char *shard)
{
	struct wds_scan sc = { .text_key = w->text ? "txt" : NULL,
	    .emit = scan_emit, .bad = scan_bad, .arg = w };
	int rc;

	w->cur = shard;
	rc = vlm_wds_scan(&sc, shard);
	/* kept until the end: the blobs point to these names */
	if (sc.nshards && vlm_array_grow(&w->shards, sizeof(char *),
	    w->nshards + sc.nshards) < 0) {
		vlm_strs_free(sc.shards, sc.nshards);
		return vlm_error("out of memory");
	}
	for (int i = 0; i < sc.nshards; i++)
		w->shards[w->nshards++] = sc.shards[i];
	free(sc.shards);
	if (rc < 0)
		return add_bad(w, shard, strlen(shard), vlm_errmsg());
	return 0;
}

int
embed_wds_init(struct embed_wds *w, int text, char **paths, int npaths)
{
	char **names;
	int n, rc = 0;

	memset(w, 0, sizeof(*w));
	w->text = text;
	for (int i = 0; rc == 0 && i < npaths; i++) {
		if (vlm_brace_expand(paths[i], &names, &n) < 0) {
			rc = add_bad(w, paths[i], strlen(paths[i]),
			    vlm_errmsg());
			continue;
		}
		for (int k = 0; rc == 0 && k < n; k++)
			rc = scan_one(w, names[k]);
		vlm_strs_free(names, n);
	}
	return rc;
}

void
embed_wds_release(struct embed_wds *w)
{
	for (int i = 0; i < w->n; i++)
		free(w->texts[i]);
	for (int i = 0; i < w->nbad; i++) {
		free(w->bad[i].name);
		free(w->bad[i].msg);
	}
	vlm_strs_free(w->ids, w->n);
	vlm_strs_free(w->shards, w->nshards);
	free(w->blobs);
	free(w->texts);
	free(w->bad);
	memset(w, 0, sizeof(*w));
}

int
embed_wds_next(struct embed_wds *w, char **key, const char **bad)
{
	*bad = NULL;
	if (w->ibad < w->nbad && w->bad[w->ibad].at == w->pos) {
		vlm_error("%s", w->bad[w->ibad].msg);
		*bad = w->bad[w->ibad++].name;
		return -1;
	}
	if (w->pos == w->n)
		return 0;
	if (!(*key = strdup(w->ids[w->pos])))
		return vlm_error("'%s': out of memory", w->ids[w->pos]);
	w->pos++;
	return 1;
}
