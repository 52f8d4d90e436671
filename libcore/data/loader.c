/*
 * loader.c - batches of decoded, preprocessed and tokenised items made by
 * worker threads ahead of the consumer, in a ring of a few batch buffers.
 *
 * What a batch holds depends only on the options, never on the thread
 * count or timing: batch order follows a per-epoch permutation (Fisher-
 * Yates over vlm_rng seeded with (seed, epoch)), each item gets an
 * augmentation seed from (seed, epoch, index), a failed item is dropped
 * or replaced by an index computed from (seed, epoch, position, attempt),
 * and the failures are handed over with the batch, in item order. The
 * consumer's cursor (epoch, position) resumes the same stream. In feed
 * mode the consumer chooses instead: it hands over the items (index,
 * seed, replacement range) of each batch ahead of asking for it.
 *
 * One mutex guards the ring; workers wait on `work`, the consumer on
 * `ready`. A slot goes FREE -> FILLING (indices assigned, items claimed
 * one at a time by workers) -> READY (all items done) -> HELD (the
 * consumer's, until its next call) -> FREE. A stream's slot is FETCHING
 * first, while one worker reads its keys without the lock.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define MAX_ATTEMPTS 16 /* REPLACE: an item and its replacements */

enum { FREE, FETCHING, FILLING, READY, HELD };

struct slot {
	int state;
	int64_t seq;          /* batch number in the stream */
	int count, claimed, done;
	int first, last;      /* the items loaded here (opts part, parts) */
	unsigned char *ok;    /* [B] item loaded */
	struct vlm_feed *fed; /* [B] feed mode: the items as fed */
	struct vlm_batch b;   /* arrays of capacity B */
	int errcap;
	int *erritem;         /* [errcap] item position of each error */
};

struct vlm_loader {
	struct vlm_loader_opts o;
	int64_t epoch_len;    /* items per epoch (-1: a stream) */
	uint32_t *perm;       /* [n] of the epoch being dispatched, or NULL */
	int64_t perm_epoch;
	struct vlm_cursor fill; /* next item to dispatch */
	struct vlm_cursor cur;  /* after the last batch delivered */
	int64_t head;         /* the batch whose items are being claimed */
	int64_t made, tail;   /* batches made; the next to deliver */
	int end;              /* no more batches will be made */
	int stop, fatal;
	char msg[1024];       /* the fatal error */
	struct slot *slots;
	pthread_t *tids;
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t work, ready;
};

/* splitmix64's finaliser: a bijective 64-bit mix */
static uint64_t
mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t
vlm_item_seed(uint64_t seed, int64_t epoch, int64_t index)
{
	return mix64(mix64(mix64(seed) ^ (uint64_t)epoch) ^ (uint64_t)index);
}

void
vlm_perm_shuffle(uint32_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
	struct vlm_rng r;

	vlm_rng_seed2(&r, seed, (uint64_t)epoch);
	for (int64_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)vlm_rng_below(&r, (uint64_t)i + 1);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

/* the replacement tried at attempt a (>= 1) for position pos of epoch */
static int64_t
replacement(const struct vlm_loader *l, int64_t epoch, int64_t pos, int a)
{
	return (int64_t)(mix64(vlm_item_seed(~l->o.seed, epoch, pos) ^
	    (uint64_t)a) % (uint64_t)l->o.n);
}

/* record a fatal error (under the lock) and wake everyone */
static void
set_fatal(struct vlm_loader *l, const char *msg)
{
	if (!l->fatal)
		snprintf(l->msg, sizeof(l->msg), "%s", msg);
	l->fatal = 1;
	pthread_cond_broadcast(&l->ready);
	pthread_cond_broadcast(&l->work);
}

/* append an error record for item position `item`; -1 out of memory */
static int
add_error(struct slot *s, int item, int64_t index, const char *key,
    const char *msg)
{
	struct vlm_item_error *e;

	if (s->b.nerr == s->errcap) {
		int cap = s->errcap ? 2 * s->errcap : 16;
		void *p = realloc(s->b.err, cap * sizeof(*s->b.err));
		if (!p)
			return -1;
		s->b.err = p;
		if (!(p = realloc(s->erritem, cap * sizeof(*s->erritem))))
			return -1;
		s->erritem = p;
		s->errcap = cap;
	}
	e = &s->b.err[s->b.nerr];
	e->index = index;
	e->key = key ? strdup(key) : NULL;
	e->msg = strdup(msg);
	if (!e->msg || (key && !e->key)) {
		free(e->key);
		free(e->msg);
		return -1;
	}
	s->erritem[s->b.nerr++] = item;
	return 0;
}

/*
 * The items of the next batch from the stream source. Called under the
 * lock, it reads outside it: a slow source (a pipe) must not stall the
 * workers finishing earlier batches. The slot is FETCHING meanwhile, and
 * only the head slot is ever filled, so one reader at a time, in order.
 */
static int
fill_stream(struct vlm_loader *l, struct slot *s)
{
	int64_t pos = l->fill.pos;
	int rc = 0, end = 0;

	s->state = FETCHING;
	pthread_mutex_unlock(&l->mu);
	while (s->count < l->o.batch) {
		char *key = NULL;
		int r = l->o.next(l->o.next_arg, &key);
		if (r == 0) {
			end = 1;
			break;
		}
		if (r < 0 && add_error(s, s->count, -1, NULL,
		    vlm_errmsg()) < 0) {
			rc = -1;
			break;
		}
		if (r < 0)
			continue;
		s->b.key[s->count] = key;
		s->b.index[s->count++] = pos++;
	}
	pthread_mutex_lock(&l->mu);
	s->state = FREE;
	l->fill.pos = pos;
	if (end)
		l->end = 1;
	return rc;
}

/* the items of the next batch of the epoch permutation (under the lock) */
static int
fill_indexed(struct vlm_loader *l, struct slot *s)
{
	if (l->fill.pos >= l->epoch_len) {
		l->fill.epoch++;
		l->fill.pos = 0;
	}
	if (l->o.epochs > 0 && l->fill.epoch >= l->o.epochs) {
		l->end = 1;
		return 0;
	}
	if (l->perm && l->perm_epoch != l->fill.epoch) {
		vlm_perm_shuffle(l->perm, l->o.n, l->o.seed, l->fill.epoch);
		l->perm_epoch = l->fill.epoch;
	}
	s->b.at = l->fill;
	while (s->count < l->o.batch && l->fill.pos < l->epoch_len) {
		int64_t p = l->fill.pos++;
		s->b.index[s->count++] = l->perm ? l->perm[p] : p;
	}
	return 0;
}

/* The items of slot s this loader loads: all, or its part of the batch
 * (o.parts > 1); the others count as loaded and are left as they are. */
static void
share(const struct vlm_loader *l, struct slot *s)
{
	int B = l->o.batch, P = l->o.parts;

	s->first = 0, s->last = s->count;
	if (P > 1) {
		s->first = l->o.part * B / P;
		s->last = (l->o.part + 1) * B / P;
	}
	for (int i = 0; i < s->count; i++)
		s->ok[i] = i < s->first || i >= s->last;
	s->claimed = s->first;
	s->done = 0;
}

/* make the free slot s batch number l->head; sets l->end when none */
static void
fill_slot(struct vlm_loader *l, struct slot *s)
{
	int rc;

	s->count = s->claimed = s->done = 0;
	s->b.nerr = 0;
	s->b.at = l->fill;
	rc = l->o.n < 0 ? fill_stream(l, s) : fill_indexed(l, s);
	if (rc < 0) {
		set_fatal(l, "out of memory in the loader");
		return;
	}
	if (s->count == 0 && s->b.nerr == 0) {
		l->end = 1;
		pthread_cond_broadcast(&l->ready);
		return;
	}
	share(l, s);
	s->seq = l->made++;
	s->state = s->count == 0 ? READY : FILLING;
	if (s->state == READY) {
		l->head++;
		pthread_cond_broadcast(&l->ready);
	} else {
		pthread_cond_broadcast(&l->work);
	}
}

/*
 * Load item i of slot s (outside the lock): image and text, and on
 * failure under REPLACE the replacements in turn. Errors go to the local
 * list e (item, attempt order); returns 1 loaded, 0 failed.
 */
static int
load_item(struct vlm_loader *l, struct slot *s, int i, struct slot *e)
{
	const struct vlm_loader_opts *o = &l->o;
	int64_t epoch = s->b.at.epoch, index = s->b.index[i];
	const char *key = s->b.key ? s->b.key[i] : NULL;
	float *px = s->b.pixels ? s->b.pixels + i * o->image_floats : NULL;
	int32_t *tok = s->b.tokens ? s->b.tokens + (int64_t)i * o->ctx : NULL;

	for (int a = 0; a < MAX_ATTEMPTS; a++) {
		uint64_t seed = vlm_item_seed(o->seed, epoch, index);
		if (o->feed)
			seed = a == 0 ? s->fed[i].seed :
			    vlm_item_seed(s->fed[i].seed, a, index);
		if ((!o->image || !o->image(o->arg, index, key, seed, px)) &&
		    (!o->text || !o->text(o->arg, index, key, seed, tok))) {
			s->b.index[i] = index;
			return 1;
		}
		if (add_error(e, i, index, key, vlm_errmsg()) < 0)
			return -1;
		if (o->on_fail != VLM_LOADER_REPLACE)
			return 0;
		if (o->feed)
			index = s->fed[i].lo + (int64_t)(mix64(s->fed[i].seed ^
			    (uint64_t)(a + 1)) % (uint64_t)s->fed[i].n);
		else
			index = replacement(l, epoch, s->b.at.pos + i, a + 1);
	}
	return 0;
}

/* move the local errors into the slot (under the lock) */
static int
merge_errors(struct slot *s, struct slot *e)
{
	for (int k = 0; k < e->b.nerr; k++) {
		struct vlm_item_error *x = &e->b.err[k];
		if (add_error(s, e->erritem[k], x->index, x->key, x->msg) < 0)
			return -1;
	}
	return 0;
}

static void
free_errors(struct vlm_batch *b)
{
	for (int k = 0; k < b->nerr; k++) {
		free(b->err[k].key);
		free(b->err[k].msg);
	}
	b->nerr = 0;
}

/* REPLACE: item i of s and all its replacements failed (under the lock) */
static void
give_up(struct vlm_loader *l, struct slot *s, int i)
{
	char msg[1024], where[64];

	if (l->o.feed)
		snprintf(where, sizeof(where), "fed batch %lld item %d",
		    (long long)s->seq, i);
	else
		snprintf(where, sizeof(where), "epoch %lld position %lld",
		    (long long)s->b.at.epoch, (long long)(s->b.at.pos + i));
	snprintf(msg, sizeof(msg), "%s: %d tries to load an item failed, "
	    "the last: %.900s", where, MAX_ATTEMPTS,
	    s->b.nerr > 0 ? s->b.err[s->b.nerr - 1].msg : "");
	set_fatal(l, msg);
}

static void *
worker(void *arg)
{
	struct vlm_loader *l = arg;
	struct slot e = { 0 };  /* this worker's error list */

	pthread_mutex_lock(&l->mu);
	while (!l->stop && !l->fatal) {
		struct slot *s = &l->slots[l->head % l->o.depth];
		if (s->state == FILLING && s->seq == l->head) {
			int i = s->claimed++, ok;
			if (s->claimed == s->last)
				l->head++;  /* the next batch's turn */
			pthread_mutex_unlock(&l->mu);
			ok = load_item(l, s, i, &e);
			pthread_mutex_lock(&l->mu);
			if (ok < 0 || merge_errors(s, &e) < 0)
				set_fatal(l, "out of memory in the loader");
			free_errors(&e.b);
			s->ok[i] = ok > 0;
			if (ok == 0 && l->o.on_fail == VLM_LOADER_REPLACE)
				give_up(l, s, i);
			if (++s->done == s->last - s->first) {
				s->state = READY;
				pthread_cond_broadcast(&l->ready);
			}
		} else if (s->state == FREE && !l->end && !l->o.feed) {
			fill_slot(l, s);
		} else {
			pthread_cond_wait(&l->work, &l->mu);
		}
	}
	pthread_mutex_unlock(&l->mu);
	free(e.b.err);
	free(e.erritem);
	return NULL;
}

/* order the errors by item (stable), then drop failed items (SKIP) */
static void
finish_batch(struct vlm_loader *l, struct slot *s)
{
	struct vlm_batch *b = &s->b;
	int j = 0;

	for (int k = 1; k < b->nerr; k++) {  /* insertion sort, stable */
		struct vlm_item_error x = b->err[k];
		int xi = s->erritem[k], m = k;
		for (; m > 0 && s->erritem[m - 1] > xi; m--) {
			b->err[m] = b->err[m - 1];
			s->erritem[m] = s->erritem[m - 1];
		}
		b->err[m] = x;
		s->erritem[m] = xi;
	}
	for (int i = 0; i < s->count; i++) {
		if (!s->ok[i])
			continue;
		if (j != i) {
			char *t;
			b->index[j] = b->index[i];
			if (b->key) {
				t = b->key[j], b->key[j] = b->key[i];
				b->key[i] = t;
			}
			if (b->pixels)
				memcpy(b->pixels + j * l->o.image_floats,
				    b->pixels + i * l->o.image_floats,
				    l->o.image_floats * sizeof(float));
			if (b->tokens)
				memcpy(b->tokens + (int64_t)j * l->o.ctx,
				    b->tokens + (int64_t)i * l->o.ctx,
				    l->o.ctx * sizeof(int32_t));
		}
		j++;
	}
	b->n = j;
}

/* the consumer is done with its batch: free it for the workers */
static void
release_held(struct vlm_loader *l)
{
	for (int d = 0; d < l->o.depth; d++) {
		struct slot *s = &l->slots[d];
		if (s->state != HELD)
			continue;
		for (int i = 0; s->b.key && i < s->count; i++) {
			free(s->b.key[i]);
			s->b.key[i] = NULL;
		}
		free_errors(&s->b);
		s->state = FREE;
		pthread_cond_broadcast(&l->work);
	}
}

/* the cursor after a batch: the epoch's end is the next one's start */
static void
advance(struct vlm_loader *l, const struct slot *s)
{
	l->cur.epoch = s->b.at.epoch;
	l->cur.pos = s->b.at.pos + s->count;
	if (l->epoch_len > 0 && l->cur.pos >= l->epoch_len) {
		l->cur.epoch++;
		l->cur.pos = 0;
	}
}

int
vlm_loader_next(struct vlm_loader *l, const struct vlm_batch **batch)
{
	struct slot *s;

	*batch = NULL;
	pthread_mutex_lock(&l->mu);
	release_held(l);
	s = &l->slots[l->tail % l->o.depth];
	if (l->o.feed && l->tail == l->made && !l->fatal) {
		pthread_mutex_unlock(&l->mu);
		return vlm_error("loader: no batch was fed");
	}
	while (!l->fatal && !(s->state == READY && s->seq == l->tail) &&
	    !(l->end && l->tail == l->made))
		pthread_cond_wait(&l->ready, &l->mu);
	if (l->fatal) {
		pthread_mutex_unlock(&l->mu);
		return vlm_error("%s", l->msg);
	}
	if (l->end && l->tail == l->made) {
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	s->state = HELD;
	l->tail++;
	pthread_mutex_unlock(&l->mu);
	finish_batch(l, s);
	if (!l->o.feed)
		advance(l, s);
	*batch = &s->b;
	return 1;
}

/* feed mode: the next batch's items, loaded while the consumer works */
int
vlm_loader_feed(struct vlm_loader *l, const struct vlm_feed *items, int n)
{
	struct slot *s;

	assert(l->o.feed && n >= 1 && n <= l->o.batch);
	if (l->o.parts > 1 && n != l->o.batch)
		return vlm_error("loader: %d items fed, a batch of %d in %d "
		    "parts", n, l->o.batch, l->o.parts);
	for (int i = 0; i < n; i++)
		if (items[i].index < 0 || items[i].index >= l->o.n ||
		    items[i].lo < 0 || items[i].n < 1 ||
		    items[i].lo + items[i].n > l->o.n)
			return vlm_error("loader: fed item %lld (replacements "
			    "%lld+%lld) is not one of the %lld", (long long)
			    items[i].index, (long long)items[i].lo, (long long)
			    items[i].n, (long long)l->o.n);
	pthread_mutex_lock(&l->mu);
	s = &l->slots[l->made % l->o.depth];
	if (l->fatal || s->state != FREE) {
		pthread_mutex_unlock(&l->mu);
		return l->fatal ? vlm_error("%s", l->msg) : vlm_error("loader: "
		    "more than %d batches fed ahead", l->o.depth - 1);
	}
	s->count = n;
	s->b.nerr = 0;
	s->b.at = (struct vlm_cursor){ 0, l->fill.pos };
	l->fill.pos += n;
	for (int i = 0; i < n; i++) {
		s->fed[i] = items[i];
		s->b.index[i] = items[i].index;
	}
	share(l, s);
	s->seq = l->made++;
	s->state = FILLING;
	pthread_cond_broadcast(&l->work);
	pthread_mutex_unlock(&l->mu);
	return 0;
}

void
vlm_loader_cursor(const struct vlm_loader *l, struct vlm_cursor *c)
{
	*c = l->cur;
}

/* check the options and fill in the defaults; -1 with a message */
static int
check_opts(struct vlm_loader_opts *o)
{
	if (o->threads <= 0)
		o->threads = 4;
	if (o->depth <= 0)
		o->depth = 3;
	if (o->batch <= 0 || o->depth < 2 || o->epochs < 0)
		return vlm_error("loader: batch %d, depth %d, epochs %lld: "
		    "out of range", o->batch, o->depth, (long long)o->epochs);
	if (!o->image != !(o->image_floats > 0) || !o->text != !(o->ctx > 0))
		return vlm_error("loader: image_floats and ctx must be set "
		    "exactly when the image and text callbacks are");
	if (!o->image && !o->text)
		return vlm_error("loader: neither image nor text callback");
	if (o->n < 0 && (!o->next || o->on_fail == VLM_LOADER_REPLACE))
		return vlm_error("loader: a stream needs next() and cannot "
		    "replace failed items");
	if (o->n < 0 && (o->start.epoch != 0 || o->start.pos != 0))
		return vlm_error("loader: a stream cannot start at a cursor");
	if (o->feed && (o->n <= 0 || o->start.epoch != 0 ||
	    o->start.pos != 0))
		return vlm_error("loader: feed mode needs items to index and "
		    "no cursor");
	if (o->n > (int64_t)UINT32_MAX)
		return vlm_error("loader: %lld items, at most %lu", (long long)
		    o->n, (unsigned long)UINT32_MAX);
	if (o->n > 0 && o->drop_last && o->n < o->batch)
		return vlm_error("loader: %lld items make no full batch of %d",
		    (long long)o->n, o->batch);
	if (o->start.epoch < 0 || o->start.pos < 0)
		return vlm_error("loader: negative cursor");
	if (o->parts > 1 && (o->part < 0 || o->part >= o->parts ||
	    o->batch % o->parts || o->n <= 0 || !(o->drop_last || o->feed)))
		return vlm_error("loader: part %d of %d of batches of %d: "
		    "needs full batches of indexed items, a multiple of the "
		    "parts", o->part, o->parts, o->batch);
	return 0;
}

/* a slot's arrays, each of capacity B */
static int
alloc_slot(struct slot *s, const struct vlm_loader_opts *o)
{
	size_t B = o->batch, px, tk;

	if (__builtin_mul_overflow(B, (size_t)o->image_floats, &px) ||
	    __builtin_mul_overflow(px, sizeof(float), &px) ||
	    __builtin_mul_overflow(B * sizeof(int32_t), (size_t)o->ctx, &tk))
		return -1;
	s->ok = calloc(B, 1);
	s->b.index = calloc(B, sizeof(*s->b.index));
	s->b.key = o->n < 0 ? calloc(B, sizeof(*s->b.key)) : NULL;
	s->fed = o->feed ? calloc(B, sizeof(*s->fed)) : NULL;
	s->b.pixels = px ? malloc(px) : NULL;
	s->b.tokens = tk ? malloc(tk) : NULL;
	if (!s->ok || !s->b.index || (o->n < 0 && !s->b.key) ||
	    (o->feed && !s->fed) ||
	    (px && !s->b.pixels) || (tk && !s->b.tokens))
		return -1;
	return 0;
}

struct vlm_loader *
vlm_loader_new(const struct vlm_loader_opts *opts)
{
	struct vlm_loader *l = calloc(1, sizeof(*l));

	if (!l) {
		vlm_error("loader: out of memory");
		return NULL;
	}
	l->o = *opts;
	if (check_opts(&l->o) < 0) {
		free(l);
		return NULL;
	}
	l->epoch_len = l->o.n < 0 ? -1 : l->o.drop_last ?
	    l->o.n / l->o.batch * l->o.batch : l->o.n;
	l->cur = l->o.start;
	if (l->epoch_len > 0 && l->cur.pos >= l->epoch_len) {
		l->cur.epoch++;  /* resumed at an epoch's end */
		l->cur.pos = 0;
	}
	l->fill = l->cur;
	l->end = l->o.n == 0;
	l->perm_epoch = -1;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->work, NULL);
	pthread_cond_init(&l->ready, NULL);
	l->slots = calloc(l->o.depth, sizeof(*l->slots));
	l->tids = calloc(l->o.threads, sizeof(*l->tids));
	if (!l->slots || !l->tids ||
	    (l->o.shuffle && l->o.n > 0 &&
	    !(l->perm = malloc(l->o.n * sizeof(*l->perm)))))
		goto oom;
	for (int d = 0; d < l->o.depth; d++)
		if (alloc_slot(&l->slots[d], &l->o) < 0)
			goto oom;
	for (; l->nthreads < l->o.threads; l->nthreads++)
		if (pthread_create(&l->tids[l->nthreads], NULL, worker, l)) {
			vlm_loader_free(l);
			vlm_error("loader: cannot start a thread");
			return NULL;
		}
	return l;
oom:
	vlm_loader_free(l);
	vlm_error("loader: out of memory for %d batches of %d", opts->depth,
	    opts->batch);
	return NULL;
}

void
vlm_loader_free(struct vlm_loader *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->work);
	pthread_mutex_unlock(&l->mu);
	for (int t = 0; t < l->nthreads; t++)
		pthread_join(l->tids[t], NULL);
	for (int d = 0; l->slots && d < l->o.depth; d++) {
		struct slot *s = &l->slots[d];
		for (int i = 0; s->b.key && i < l->o.batch; i++)
			free(s->b.key[i]);
		free_errors(&s->b);
		free(s->b.err);
		free(s->erritem);
		free(s->ok);
		free(s->fed);
		free(s->b.index);
		free(s->b.key);
		free(s->b.pixels);
		free(s->b.tokens);
	}
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->work);
	pthread_cond_destroy(&l->ready);
	free(l->slots);
	free(l->tids);
	free(l->perm);
	free(l);
}
