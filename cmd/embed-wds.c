/*
 * embed-wds.c - vlm-embed's items from webdataset tar shards: every
 * sample of the shards named by the arguments (brace patterns, as
 * vlm-train --data reads them; also .tar.gz, .tgz and pipe:COMMAND), in
 * shard order, named "SHARD:KEY". The shards are streamed (data/
 * stream.c, a buffer of one, one pass): each sample's image bytes (and
 * with texts its `txt` caption) wait in a ring of the items the loader
 * has in flight, so memory does not grow with the shards. A bad sample
 * (the stream names its shard and key) or a shard that cannot be read is
 * met by the loader's stream where it was found.
 */
#include <stdlib.h>
#include <string.h>

#include "embed.h"

struct embed_wds_bad {
	char *name, *msg;
	struct embed_wds_bad *next;
};

/* A bad sample (key NULL: the shard): queued by name, in order. */
static int
on_bad(void *arg, const char *shard, const char *key, const char *msg)
{
	struct embed_wds *w = arg;
	struct embed_wds_bad *b = calloc(1, sizeof(*b));

	if (!b || (key ? asprintf(&b->name, "%s:%s", shard, key) < 0 :
	    !(b->name = strdup(shard))) || !(b->msg = strdup(msg))) {
		if (b)
			free(b->name);
		free(b);
		return vlm_error("out of memory");
	}
	if (w->tail)
		w->tail->next = b;
	else
		w->head = b;
	w->tail = b;
	return 0;
}

int
embed_wds_init(struct embed_wds *w, int text, char **paths, int npaths,
    int ring)
{
	memset(w, 0, sizeof(*w));
	w->text = text;
	w->paths = paths;
	w->npaths = npaths;
	w->ring = ring;
	if (!(w->samples = calloc(ring, sizeof(*w->samples))))
		return vlm_error("out of memory");
	return 0;
}

void
embed_wds_release(struct embed_wds *w)
{
	struct embed_wds_bad *b, *next;

	for (b = w->head; b; b = next) {
		next = b->next;
		free(b->name);
		free(b->msg);
		free(b);
	}
	vlm_stream_free(w->s);
	for (int i = 0; w->samples && i < w->ring; i++)
		vlm_sample_release(&w->samples[i]);
	free(w->samples);
	free(w->bad);
	memset(w, 0, sizeof(*w));
}

/* -1 with the oldest queued bad sample's message, *bad its name. */
static int
pop_bad(struct embed_wds *w, const char **bad)
{
	struct embed_wds_bad *b = w->head;

	if (!(w->head = b->next))
		w->tail = NULL;
	free(w->bad);
	w->bad = b->name; /* kept until the next call */
	*bad = w->bad;
	vlm_error("%s", b->msg);
	free(b->msg);
	free(b);
	return -1;
}

/* The next argument's stream; -1 (*bad its name) when it names none. */
static int
open_next(struct embed_wds *w, const char **bad)
{
	struct vlm_stream_opts o = { .text_key = w->text ? "txt" : "",
	    .buffer = 1, .once = 1, .bad = on_bad, .arg = w };
	const char *p = w->paths[w->arg++];

	if ((w->s = vlm_stream_new(p, NULL, &o)) != NULL)
		return 0;
	*bad = p;
	return -1;
}

int
embed_wds_next(struct embed_wds *w, char **key, const char **bad)
{
	struct vlm_sample *g;
	int rc;

	*bad = NULL;
	for (;;) {
		if (w->head)  /* found before the sample held, if any */
			return pop_bad(w, bad);
		g = &w->samples[w->n % w->ring];
		if (w->held) {
			w->held = 0;
			if (!(*key = strdup(g->name)))
				return vlm_error("out of memory");
			w->n++;
			return 1;
		}
		if (!w->s && w->arg == w->npaths)
			return 0;
		if (!w->s && open_next(w, bad) < 0)
			return -1;
		vlm_sample_release(g);
		if ((rc = vlm_stream_next(w->s, g)) == 0) {
			vlm_stream_free(w->s);
			w->s = NULL;
		} else if (rc < 0) {  /* that shard; the stream goes on */
			*bad = vlm_stream_shard(w->s);
			return -1;
		} else {
			w->held = 1;
		}
	}
}
