/*
 * stream.c - a data source read sequentially, as OpenCLIP's webdataset
 * pipeline reads its shards: each epoch the shards in an order drawn from
 * (seed, epoch) (or as named), each read from start to end, its samples
 * (image bytes and caption) passing through a shuffle buffer of N
 * samples. Memory is the buffer and one shard's reader, whatever the
 * number of samples. The stream's cursor (epoch, samples delivered in
 * it) is all a checkpoint needs: vlm_stream_seek replays the epoch from
 * its first shard to there, the same buffer and generator states
 * following. A pairs file already read is streamed the same way, as one
 * shard whose rows are its samples (images then read from their files).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/wds-priv.h"

struct vlm_stream {
	struct vlm_stream_opts o;
	const char *name;              /* the pattern or pairs file */
	const struct vlm_pairs *pairs; /* or shards: */
	struct wds_scan sc;
	uint32_t *order;           /* [nshards] this epoch's shard order */
	int next;                  /* of order, the next shard to open */
	int row;                   /* pairs: the next row */
	struct wds_reader rd;      /* the open shard (rd.a) */
	struct vlm_sample got;     /* a sample the reader just emitted */
	int have;
	struct vlm_sample *buf;    /* [o.buffer] the shuffle buffer */
	int nbuf;
	struct vlm_rng rng;        /* picks from the buffer */
	int64_t epoch, pos;        /* delivered: pos samples of epoch */
	int64_t nread;             /* samples read in the epoch */
	struct vlm_stream_counts n;
};

void
vlm_sample_release(struct vlm_sample *s)
{
	free(s->name);
	free(s->caption);
	free(s->img);
	memset(s, 0, sizeof(*s));
}

/* the scan's sample, taken over as the stream's */
static int
take(void *arg, int k, int num, struct wds_sample *w)
{
	struct vlm_stream *s = arg;
	struct vlm_sample *g = &s->got;

	(void)num;
	if (asprintf(&g->name, "%s:%s", s->sc.shards[k], w->key) < 0)
		return vlm_error("out of memory");
	g->caption = w->text;
	g->img = w->bytes;
	g->size = w->img.size;
	w->text = NULL;
	w->bytes = NULL;
	s->have = 1;
	return 0;
}

static int
bad(void *arg, const char *shard, const char *key, const char *msg)
{
	struct vlm_stream *s = arg;

	s->n.bad++;
	return s->o.bad ? s->o.bad(s->o.arg, shard, key, msg) : 0;
}

static void
close_shard(struct vlm_stream *s)
{
	if (s->rd.a)
		vlm_wds_close(&s->rd);
}

/* Begin epoch e: its shard order and generator, the buffer emptied. */
static void
start(struct vlm_stream *s, int64_t e)
{
	close_shard(s);
	vlm_sample_release(&s->got);
	s->have = 0;
	for (int i = 0; i < s->nbuf; i++)
		vlm_sample_release(&s->buf[i]);
	s->nbuf = 0;
	s->epoch = e;
	s->pos = s->nread = 0;
	s->next = s->row = 0;
	if (s->o.shard_shuffle && s->order)
		vlm_perm_shuffle(s->order, s->sc.nshards, s->o.seed, e);
	else
		for (int i = 0; s->order && i < s->sc.nshards; i++)
			s->order[i] = i;
	vlm_rng_seed2(&s->rng, vlm_item_seed(s->o.seed, e, -1), 0x5b0ff);
}

/* A pairs file's next row: 1, 0 at its end, -1. */
static int
read_row(struct vlm_stream *s, struct vlm_sample *g)
{
	const struct vlm_pairs *p = s->pairs;

	if (s->row == p->n) {
		if (s->row++ == p->n)
			s->n.shards++;
		return 0;
	}
	if (s->row > p->n)
		return 0;
	if (!(g->name = strdup(p->paths[s->row])) ||
	    !(g->caption = strdup(p->captions[s->row]))) {
		vlm_sample_release(g);
		return vlm_error("out of memory");
	}
	s->row++;
	return 1;
}

/* The epoch's next sample in reading order: 1, 0 at its end, -1. */
static int
read_one(struct vlm_stream *s, struct vlm_sample *g)
{
	int rc = 0;

	if (s->pairs)
		rc = read_row(s, g);
	while (!s->pairs && !s->have) {
		if (!s->rd.a) {
			if (s->next == s->sc.nshards)
				return 0;
			if (vlm_wds_open(&s->sc, s->order[s->next++],
			    &s->rd) < 0) {
				vlm_wds_close(&s->rd);
				return -1;
			}
		}
		if ((rc = vlm_wds_step(&s->sc, &s->rd)) < 0)
			return -1;
		if (rc == 0 && !s->have) {
			s->n.shards++;
			if (vlm_wds_close(&s->rd) < 0)
				return -1;
		}
	}
	if (!s->pairs) {
		*g = s->got;
		memset(&s->got, 0, sizeof(s->got));
		s->have = 0;
		rc = 1;
	}
	if (rc == 1) {
		g->epoch = s->epoch;
		g->num = s->nread++;
		s->n.read++;
	}
	return rc;
}

int
vlm_stream_next(struct vlm_stream *s, struct vlm_sample *out)
{
	int rc = 1, k;

	for (int again = 0;; again++) {
		while (s->nbuf < s->o.buffer && (rc = read_one(s,
		    &s->buf[s->nbuf])) == 1)
			s->nbuf++;
		if (rc < 0)
			return -1;
		if (s->nbuf > 0)
			break;
		if (s->o.once)
			return 0;
		if (s->nread == 0 || again)
			return vlm_error("'%s': no samples in epoch %lld",
			    s->name, (long long)s->epoch);
		start(s, s->epoch + 1);
	}
	k = (int)vlm_rng_below(&s->rng, s->nbuf);
	*out = s->buf[k];
	s->buf[k] = s->buf[--s->nbuf];
	memset(&s->buf[s->nbuf], 0, sizeof(s->buf[0]));
	s->pos++;
	return 1;
}

int
vlm_stream_seek(struct vlm_stream *s, const struct vlm_cursor *c)
{
	struct vlm_sample g;

	start(s, c->epoch);
	while (s->pos < c->pos) {
		if (vlm_stream_next(s, &g) < 0)
			return -1;
		vlm_sample_release(&g);
		if (s->epoch != c->epoch)
			return vlm_error("'%s': epoch %lld has fewer than %lld "
			    "samples now", s->name, (long long)c->epoch,
			    (long long)c->pos);
	}
	return 0;
}

void
vlm_stream_cursor(const struct vlm_stream *s, struct vlm_cursor *c)
{
	c->epoch = s->epoch;
	c->pos = s->pos;
}

int
vlm_stream_check(const struct vlm_stream *s)
{
	for (int k = 0; k < s->sc.nshards; k++) {
		const char *f = s->sc.shards[k];
		if (strncmp(f, "pipe:", 5) != 0 && access(f, R_OK) < 0)
			return vlm_error("'%s': %s", f, strerror(errno));
	}
	return 0;
}

const char *
vlm_stream_shard(const struct vlm_stream *s)
{
	if (s->pairs)
		return s->name;
	return s->next > 0 ? s->sc.shards[s->order[s->next - 1]] : s->name;
}

void
vlm_stream_counts(const struct vlm_stream *s, struct vlm_stream_counts *n)
{
	*n = s->n;
}

struct vlm_stream *
vlm_stream_new(const char *pattern, const struct vlm_pairs *pairs,
    const struct vlm_stream_opts *o)
{
	struct vlm_stream *s = calloc(1, sizeof(*s));

	if (!s) {
		vlm_error("out of memory");
		return NULL;
	}
	s->o = *o;
	s->name = pattern;
	s->pairs = pairs;
	s->sc = (struct wds_scan){ .text_key = !o->text_key ? "txt" :
	    *o->text_key ? o->text_key : NULL, .emit = take, .bad = bad,
	    .arg = s, .bytes = 1 };
	if (o->buffer < 1 || o->buffer > VLM_STREAM_BUFFER_MAX) {
		vlm_error("shuffle buffer %d: 1 to %d allowed", o->buffer,
		    VLM_STREAM_BUFFER_MAX);
	} else if (!(s->buf = calloc(o->buffer, sizeof(*s->buf)))) {
		vlm_error("out of memory");
	} else if (pairs || vlm_brace_expand(pattern, &s->sc.shards,
	    &s->sc.nshards) == 0) {
		for (int k = 0; k < s->sc.nshards; k++)
			if (!vlm_wds_is_shards(s->sc.shards[k])) {
				vlm_error("'%s': not a shard (.tar, .tar.gz, "
				    ".tgz, pipe:)", s->sc.shards[k]);
				goto fail;
			}
		if (pairs || (s->order = malloc(s->sc.nshards *
		    sizeof(*s->order)))) {
			start(s, 0);
			return s;
		}
		vlm_error("out of memory");
	}
fail:
	vlm_stream_free(s);
	return NULL;
}

void
vlm_stream_free(struct vlm_stream *s)
{
	if (!s)
		return;
	close_shard(s);
	vlm_sample_release(&s->got);
	for (int i = 0; s->buf && i < s->nbuf; i++)
		vlm_sample_release(&s->buf[i]);
	free(s->buf);
	free(s->order);
	vlm_strs_free(s->sc.shards, s->sc.nshards);
	free(s);
}
