/*
 * train-sources.c - where vlm-train's examples come from: one or more
 * pairs files (--data, repeatable), each read and checked on its own (bad
 * rows and unreadable images reported by its file and line, the --max-bad
 * rule per file), their pairs one after the other as the loader's items.
 * One source is walked as before, in the loader's shuffled epochs. With
 * several, the sampler (libcore/train/sampler.c) chooses each batch's items,
 * by the weights or adaptively by each source's recent loss, and they
 * are fed to the loader one batch ahead of the one being computed; a
 * checkpoint keeps each source's cursor as it was before the batch that
 * was fed but not used, so a resumed run draws the same batches.
 *
 * Streamed (--shuffle-buffer N), every source is read sequentially
 * (data/stream.c: shards in a seeded order, a shuffle buffer of N): the
 * sampler draws each batch's counts per source as above, the samples are
 * pulled from the streams into a ring of the batches in flight, and a
 * checkpoint keeps each stream's cursor (epoch, samples delivered),
 * which a resumed run replays to. Bad samples are warned once and
 * counted against --max-bad each time a shard has been read.
 */
#include <err.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "train.h"
#include "base/base.h"

#define NFED 3 /* the ring of fed batches: 2 in use, one being filled */

/* Batches chosen by the sampler and fed: several sources, or streamed. */
static int
fed(const struct train *t)
{
	return t->nsrc > 1 || t->shuffle_buffer;
}

/* Options about sources and steps, checked before anything is read. */
void
train_sources_check(struct train *t)
{
	const char *s = t->weights;
	char *end;
	int k = 0;

	if (t->nsrc > VLM_SOURCES_MAX)
		errx(2, "--data: at most %d sources", VLM_SOURCES_MAX);
	if (t->shuffle_buffer > VLM_STREAM_BUFFER_MAX)
		errx(2, "--shuffle-buffer: at most %d", VLM_STREAM_BUFFER_MAX);
	if (t->shuffle_buffer && t->epochs)
		errx(2, "--epochs: streamed data has no known length; give "
		    "--steps");
	if (!t->shuffle_buffer && t->shard_order)
		errx(2, "--no-shard-shuffle: only with --shuffle-buffer");
	if (t->accum < 1)
		errx(2, "--accum-freq: at least 1");
	if (!(t->so.tau > 0) || !(t->so.decay >= 0 && t->so.decay < 1) ||
	    !(t->so.eps >= 0 && t->so.eps <= 1))
		errx(2, "--adaptive-tau > 0, 0 <= --adaptive-decay < 1, "
		    "0 <= --adaptive-floor <= 1");
	if (!s)
		return;
	if (!(t->w = calloc(t->nsrc, sizeof(*t->w))))
		errx(1, "out of memory");
	for (;; s = end + 1) {
		double v = strtod(s, &end);
		if (end == s || !(v > 0) || !isfinite(v) || k == t->nsrc ||
		    (*end != ',' && *end != '\0')) {
			k = -1;
			break;
		}
		t->w[k++] = v;
		if (*end == '\0')
			break;
	}
	if (k != t->nsrc)
		errx(2, "--data-weights: '%s' is not %d positive numbers, one "
		    "per --data", t->weights, t->nsrc);
}

/* A pairs file read: bad rows and missing images reported (marked in
 * t->warned), its rules checked. */
static int
check_source(struct train *t, struct train_src *s)
{
	struct vlm_pairs *p = &s->pairs;
	int missing = 0, total, need = t->nsrc == 1 ? t->o.batch : 1;

	cmd_pairs_warn(p, s->path);
	for (int i = 0; !p->blobs && i < p->n; i++)
		if (access(p->paths[i], R_OK) < 0) {
			int64_t k = s->lo + i; /* reported: not again */
			t->warned[k / 8] |= 1 << (k % 8);
			warnx("%s:%d: cannot read image '%s'", s->path,
			    p->line[i], p->paths[i]);
			missing++;
		}
	total = p->n + p->nbad;
	s->usable = p->n - missing;
	if (total == 0 || s->usable < need)
		return vlm_error("'%s': %d usable pairs, fewer than %s (%d)",
		    s->path, s->usable, t->nsrc == 1 ? "a batch" : "one",
		    need);
	if (p->nbad + missing > t->max_bad * total)
		return vlm_error("'%s': %d of %d rows are bad, more than "
		    "--max-bad %.3g allows", s->path, p->nbad + missing, total,
		    t->max_bad);
	return 0;
}

/* Streamed: a bad sample, warned the first time it is met. */
static int
stream_bad(void *arg, const char *shard, const char *key, const char *msg)
{
	struct train *t = arg;

	(void)shard, (void)key;
	for (int i = 0; i < t->nwarned_bad; i++)
		if (strcmp(t->warned_bad[i], msg) == 0)
			return 0;
	warnx("%s (skipped)", msg);
	return vlm_strs_push(&t->warned_bad, &t->nwarned_bad, msg) < 0 ?
	    vlm_error("out of memory") : 0;
}

/* Streamed: each source a stream (pairs files read and checked first);
 * the items a ring of the batches in flight. */
static int
stream_data(struct train *t)
{
	int64_t n = 0;

	for (int i = 0; i < t->nsrc; i++) {
		struct train_src *s = &t->src[i];
		struct vlm_stream_opts so = { .text_key = t->csv.caption_key,
		    .seed = vlm_item_seed(t->seed, -1, i),
		    .buffer = t->shuffle_buffer,
		    .shard_shuffle = !t->shard_order, .bad = stream_bad,
		    .arg = t };
		int pairs = !vlm_wds_is_shards(s->path);
		s->lo = n;
		if (pairs && vlm_pairs_load(&s->pairs, s->path, &t->csv) < 0)
			return -1;
		n += s->pairs.n;
		if (!(t->warned = realloc(t->warned, n / 8 + 1)))
			return vlm_error("out of memory");
		memset(t->warned, 0, n / 8 + 1);
		if (pairs && check_source(t, s) < 0)
			return -1;
		if (!(s->stream = vlm_stream_new(s->path, pairs ? &s->pairs :
		    NULL, &so)) || vlm_stream_check(s->stream) < 0)
			return -1;
	}
	t->nitems = NFED * t->o.batch;
	if (!(t->samples = calloc(t->nitems, sizeof(*t->samples))))
		return vlm_error("out of memory");
	return 0;
}

/* Streamed, for a new tokenizer: the captions of one pass over every
 * source in reading order (a stream of its own, buffer 1, shards as
 * named), malloc'ed. */
int
train_stream_captions(struct train *t, char ***caps, int *n)
{
	struct vlm_stream_opts so = { .text_key = t->csv.caption_key,
	    .buffer = 1, .once = 1 };
	struct vlm_sample g = { 0 };
	int rc = 0;

	*caps = NULL;
	*n = 0;
	for (int i = 0; rc == 0 && i < t->nsrc; i++) {
		struct train_src *s = &t->src[i];
		struct vlm_stream *st = vlm_stream_new(s->path,
		    vlm_wds_is_shards(s->path) ? NULL : &s->pairs, &so);
		if (!st)
			return -1;
		while ((rc = vlm_stream_next(st, &g)) == 1) {
			rc = vlm_strs_push(caps, n, g.caption);
			vlm_sample_release(&g);
			if (rc < 0)
				break;
		}
		vlm_sample_release(&g);
		rc = rc < 0 ? -1 : 0;
		vlm_stream_free(st);
	}
	return rc;
}

/* Streamed: more bad samples than --max-bad allows, each time a source
 * has read another shard (its decoding failures counted too). */
static int
stream_check(struct train *t)
{
	for (int i = 0; i < t->nsrc; i++) {
		struct train_src *s = &t->src[i];
		struct vlm_stream_counts c;
		int64_t bad;
		vlm_stream_counts(s->stream, &c);
		if (c.shards == s->checked)
			continue;
		s->checked = c.shards;
		bad = c.bad + s->nbad;
		if (bad > t->max_bad * (c.read + c.bad))
			return vlm_error("'%s': %lld of the %lld samples read "
			    "are bad, more than --max-bad %.3g allows",
			    s->path, (long long)bad, (long long)(c.read +
			    c.bad), t->max_bad);
	}
	return 0;
}

/* Every source read and checked; their pairs as one list of items. */
int
train_data(struct train *t)
{
	int64_t n = 0;
	int usable = 0;

	if (t->shuffle_buffer)
		return stream_data(t);
	for (int i = 0; i < t->nsrc; i++) {
		t->src[i].lo = n;
		if (vlm_pairs_load(&t->src[i].pairs, t->src[i].path,
		    &t->csv) < 0)
			return -1;
		n += t->src[i].pairs.n;
		if (n > INT_MAX / 2)
			return vlm_error("%lld pairs: too many", (long long)n);
	}
	if (!(t->warned = calloc(n / 8 + 1, 1)))
		return vlm_error("out of memory");
	for (int i = 0; i < t->nsrc; i++) {
		if (check_source(t, &t->src[i]) < 0)
			return -1;
		usable += t->src[i].usable;
	}
	if (usable < t->o.batch)
		return vlm_error("%d sources: %d usable pairs, fewer than a "
		    "batch (%d)", t->nsrc, usable, t->o.batch);
	t->nitems = (int)n;
	t->paths = malloc(n * sizeof(*t->paths));
	t->captions = malloc(n * sizeof(*t->captions));
	t->blobs = calloc(n, sizeof(*t->blobs));
	if (!t->paths || !t->captions || !t->blobs)
		return vlm_error("out of memory");
	for (int i = 0; i < t->nsrc; i++) {
		const struct vlm_pairs *p = &t->src[i].pairs;
		memcpy(t->paths + t->src[i].lo, p->paths,
		    p->n * sizeof(char *));
		memcpy(t->captions + t->src[i].lo, p->captions,
		    p->n * sizeof(char *));
		if (p->blobs)
			memcpy(t->blobs + t->src[i].lo, p->blobs,
			    p->n * sizeof(*p->blobs));
	}
	return 0;
}

/* Several sources: the sampler, fresh or as the checkpoint left it. */
static int
sampler_setup(struct train *t)
{
	int64_t n[VLM_SOURCES_MAX];
	double w[VLM_SOURCES_MAX];
	int S = t->nsrc, B = t->o.batch;

	for (int i = 0; i < S; i++) {
		n[i] = t->shuffle_buffer ? -1 : t->src[i].pairs.n;
		w[i] = t->w ? t->w[i] : t->shuffle_buffer ? 1 :
		    t->src[i].usable;
	}
	t->so.seed = t->seed;
	if (!(t->sampler = vlm_sampler_new(S, n, w, &t->so)))
		return -1;
	if (t->resume)
		vlm_sampler_restore(t->sampler, t->st.sources, t->st.step);
	for (int i = 0; t->resume && t->shuffle_buffer && i < S; i++) {
		struct vlm_cursor c = { t->st.sources[i].epoch,
		    t->st.sources[i].pos };
		if (vlm_stream_seek(t->src[i].stream, &c) < 0)
			return -1;
	}
	for (int i = 0; i < NFED; i++) {
		struct train_fed *f = &t->fed[i];
		f->src = malloc(B * sizeof(*f->src));
		f->epoch = malloc(S * sizeof(*f->epoch));
		f->pos = malloc(S * sizeof(*f->pos));
		if (!f->src || !f->epoch || !f->pos)
			return vlm_error("out of memory");
	}
	t->step_count = calloc(S, sizeof(*t->step_count));
	t->rowloss = malloc(B * sizeof(*t->rowloss));
	t->feed = malloc(B * sizeof(*t->feed));
	if (!t->step_count || !t->rowloss || !t->feed)
		return vlm_error("out of memory");
	t->feed_step = t->st.step + 1;
	t->last_step = t->stop_at && t->stop_at < t->o.steps ? t->stop_at :
	    t->o.steps;
	return 0;
}

int
train_loader(struct train *t)
{
	const struct vlm_config *c = &t->m.cfg;
	struct vlm_loader_opts lo = { 0 };
	int multi = fed(t);

	if (t->resume && t->st.nsources != (multi ? t->nsrc : 0))
		return vlm_error("'%s': the run was trained on %d data "
		    "sources, not %d", t->resume, t->st.nsources ?
		    t->st.nsources : 1, t->nsrc);
	if (multi && sampler_setup(t) < 0)
		return -1;
	t->items = (struct vlm_items){ .paths = t->paths,
		.samples = t->samples,
		.blobs = t->blobs, .captions = t->captions, .size = c->image_size,
		.mean = c->mean, .std = c->std, .train = 1, .augment = &t->aug,
		.alpha = c->image_alpha, .bpe = &t->bpe, .ctx = c->context };
	lo.n = t->nitems;
	lo.batch = t->o.batch;
	lo.threads = t->threads;
	lo.seed = t->seed;
	lo.shuffle = !multi;
	lo.drop_last = !multi;
	lo.feed = multi;
	lo.on_fail = VLM_LOADER_REPLACE;
	lo.start = multi ? (struct vlm_cursor){ 0, 0 } : t->st.cursor;
	lo.part = train_dist_rank(t); /* each rank decodes its share */
	lo.parts = train_dist_size(t);
	lo.image_floats = 3 * (int64_t)c->image_size * c->image_size;
	lo.ctx = c->context;
	lo.arg = &t->items;
	lo.image = vlm_items_image;
	lo.text = vlm_items_text;
	t->loader = vlm_loader_new(&lo);
	return t->loader ? 0 : -1;
}

/* Report each unreadable image once, by its source's file and line. */
static void
report_errors(struct train *t, const struct vlm_batch *b)
{
	for (int i = 0; t->shuffle_buffer && i < b->nerr; i++) {
		int64_t k = b->err[i].index;
		if (k < 0)
			continue;
		t->src[t->fed[t->fed0].src[k % t->o.batch]].nbad++;
		if (stream_bad(t, NULL, NULL, b->err[i].msg) < 0)
			errx(1, "%s", vlm_errmsg());
	}
	for (int i = 0; !t->shuffle_buffer && i < b->nerr; i++) {
		int64_t k = b->err[i].index;
		int s = 0;
		if (k < 0 || (t->warned[k / 8] & (1 << (k % 8))))
			continue;
		t->warned[k / 8] |= 1 << (k % 8);
		while (s + 1 < t->nsrc && k >= t->src[s + 1].lo)
			s++;
		if (t->src[s].pairs.blobs) /* names its shard and key */
			train_dist_warn(t, "%s (skipped)", b->err[i].msg);
		else
			train_dist_warn(t, "%s:%d: %s (skipped)",
			    t->src[s].path, t->src[s].pairs.line[k -
			    t->src[s].lo], b->err[i].msg);
	}
}

/*
 * Streamed: the batch's samples from the streams the sampler chose, into
 * the ring's next batch; f records the streams' cursors before it. Item
 * seeds from (the source's seed, the sample's epoch and number); a
 * failed item is replaced by another of the same batch.
 */
static int
stream_feed(struct train *t, struct train_fed *f)
{
	int B = t->o.batch, base = (int)(t->nbatches % NFED) * B;

	for (int i = 0; i < t->nsrc; i++) {
		struct vlm_cursor c;
		vlm_stream_cursor(t->src[i].stream, &c);
		f->epoch[i] = c.epoch;
		f->pos[i] = c.pos;
	}
	for (int j = 0; j < B; j++) {
		struct vlm_sample *g = &t->samples[base + j];
		int i = f->src[j];
		vlm_sample_release(g);
		if (vlm_stream_next(t->src[i].stream, g) < 0)
			return -1;
		t->feed[j] = (struct vlm_feed){ base + j, vlm_item_seed(
		    vlm_item_seed(t->seed, -1, i), g->epoch, g->num), base, B };
	}
	t->nbatches++;
	return stream_check(t);
}

/* Several sources: keep the loader fed one batch ahead of the next. */
static int
feed_ahead(struct train *t)
{
	while (t->nfed < 2 && t->feed_step <= t->last_step) {
		struct train_fed *f = &t->fed[(t->fed0 + t->nfed) % NFED];
		struct vlm_source_state st[VLM_SOURCES_MAX];
		vlm_sampler_state(t->sampler, st);
		for (int i = 0; i < t->nsrc; i++) {
			f->epoch[i] = st[i].epoch;
			f->pos[i] = st[i].pos;
		}
		vlm_sampler_plan(t->sampler, t->feed_step, t->feed_micro,
		    t->o.batch, t->feed, f->src);
		if (t->shuffle_buffer && stream_feed(t, f) < 0)
			return -1;
		if (vlm_loader_feed(t->loader, t->feed, t->o.batch) < 0)
			return -1;
		t->nfed++;
		if (++t->feed_micro == t->accum) {
			t->feed_micro = 0;
			t->feed_step++;
		}
	}
	return 0;
}

/* The next micro-batch, full; *src its items' sources (one: NULL). */
const struct vlm_batch *
train_next(struct train *t, const int **src)
{
	const struct vlm_batch *b;

	*src = NULL;
	if (fed(t) && feed_ahead(t) < 0)
		errx(1, "%s", vlm_errmsg());
	if (vlm_loader_next(t->loader, &b) != 1)
		train_dist_fail(t, vlm_errmsg());
	report_errors(t, b);
	if (b->n != t->o.batch)
		errx(1, "%s: a batch came short (%d of %d)", t->data, b->n,
		    t->o.batch);
	if (fed(t)) {
		*src = t->fed[t->fed0].src;
		t->fed0 = (t->fed0 + 1) % NFED;
		t->nfed--;
	}
	return b;
}

/* After a micro-batch's loss: each example's, by source. */
void
train_sources_loss(struct train *t, const int *src, int n)
{
	if (!src || t->nsrc == 1) /* one source (streamed): nothing to mix */
		return;
	if (train_row_loss(t, t->rowloss) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_sampler_add(t->sampler, src, t->rowloss, n);
	for (int j = 0; j < n; j++)
		t->step_count[src[j]]++;
}

/* After an optimizer step (t->st.step done): the loss averages. */
void
train_sources_step(struct train *t)
{
	if (fed(t))
		vlm_sampler_update(t->sampler, t->st.step);
}

/* Into t->st: each source's cursor before the batch fed ahead. */
void
train_sources_save(struct train *t)
{
	const struct train_fed *f = &t->fed[t->fed0];

	t->st.nsources = fed(t) ? t->nsrc : 0;
	if (t->st.nsources)
		vlm_sampler_state(t->sampler, t->st.sources);
	for (int i = 0; i < t->st.nsources; i++) {
		struct vlm_cursor c;
		if (t->nfed > 0) {
			t->st.sources[i].epoch = f->epoch[i];
			t->st.sources[i].pos = f->pos[i];
		} else if (t->shuffle_buffer) {
			vlm_stream_cursor(t->src[i].stream, &c);
			t->st.sources[i].epoch = c.epoch;
			t->st.sources[i].pos = c.pos;
		}
	}
}

/* Passes over the data: the loader's epoch, or examples / pairs. */
int64_t
train_epoch(const struct train *t)
{
	struct vlm_cursor at;

	if (t->shuffle_buffer) { /* the first source's */
		vlm_stream_cursor(t->src[0].stream, &at);
		return at.epoch;
	}
	if (t->nsrc > 1)
		return t->st.samples / t->nitems;
	vlm_loader_cursor(t->loader, &at);
	return at.epoch;
}

/* Several sources: probabilities the losses so far give, the averages,
 * examples drawn since the last line and epochs, one entry a source. */
void
train_sources_log(struct train *t, struct json_t *o)
{
	struct vlm_source_state st[VLM_SOURCES_MAX];
	json_t *p, *l, *n, *e;
	double prob[VLM_SOURCES_MAX];

	if (t->nsrc < 2)
		return;
	vlm_sampler_probs(t->sampler, vlm_sampler_done(t->sampler) + 2, prob);
	vlm_sampler_state(t->sampler, st);
	p = json_array(), l = json_array(), n = json_array(), e = json_array();
	for (int i = 0; i < t->nsrc; i++) {
		struct vlm_cursor c;
		if (t->shuffle_buffer) {
			vlm_stream_cursor(t->src[i].stream, &c);
			st[i].epoch = c.epoch;
		}
		json_array_append_new(p, json_real(prob[i]));
		json_array_append_new(l, st[i].seen ? json_real(st[i].ema) :
		    json_null());
		json_array_append_new(n, json_integer(t->step_count[i]));
		json_array_append_new(e, json_integer(st[i].epoch));
		t->step_count[i] = 0;
	}
	json_object_set_new(o, "source_p", p);
	json_object_set_new(o, "source_loss", l);
	json_object_set_new(o, "source_examples", n);
	json_object_set_new(o, "source_epoch", e);
}

void
train_sources_free(struct train *t)
{
	for (int i = 0; i < t->nsrc; i++) {
		vlm_pairs_release(&t->src[i].pairs);
		vlm_stream_free(t->src[i].stream);
	}
	for (int i = 0; t->samples && i < t->nitems; i++)
		vlm_sample_release(&t->samples[i]);
	free(t->samples);
	vlm_strs_free(t->warned_bad, t->nwarned_bad);
	vlm_sampler_free(t->sampler);
	for (int i = 0; i < NFED; i++) {
		free(t->fed[i].src);
		free(t->fed[i].epoch);
		free(t->fed[i].pos);
	}
	free(t->src);
	free(t->w);
	free(t->paths);
	free(t->captions);
	free(t->blobs);
	free(t->step_count);
	free(t->rowloss);
	free(t->feed);
}
