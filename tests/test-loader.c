/*
 * test-loader.c - the threaded batch loader (libcore/data/loader.c) with a
 * fake item loader: the stream equals a plain single-threaded recomputation
 * from the documented permutation and item seeds, for 1, 2 and 4 threads;
 * resuming from a cursor gives the rest of the stream; failures are
 * dropped or replaced deterministically; streams of unknown length;
 * a stream read from a stalled pipe still delivers the batches read
 * before; shutdown midway; a batch loaded in parts (one rank's share
 * each).
 */
#include <sys/stat.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "testutil.h"

#define IMG 3 /* floats per fake image */
#define CTX 2 /* tokens per fake text */

/* the fake data set: which items fail, and timing noise */
struct fake {
	int fail_mod, fail_rem; /* index % fail_mod == fail_rem fails */
	int all_fail;
	int sleep_us;           /* up to this much per item, by index */
	int64_t stream_n;       /* streams: keys produced */
	int64_t calls;          /* streams: next() calls so far */
	int64_t loads;          /* image callbacks run (atomic) */
};

static int
fails(const struct fake *f, int64_t index)
{
	return f->all_fail || (f->fail_mod && index % f->fail_mod ==
	    f->fail_rem);
}

static int
fake_image(void *arg, int64_t index, const char *key, uint64_t seed,
    float *px)
{
	struct fake *f = arg;

	__atomic_fetch_add(&f->loads, 1, __ATOMIC_RELAXED);
	if (f->sleep_us)
		usleep((unsigned)(vlm_item_seed(7, 0, index) % f->sleep_us));
	if (key && strchr(key, '3'))
		return vlm_error("'%s': no image in key", key);
	if (fails(f, index))
		return vlm_error("item %lld: fake failure", (long long)index);
	px[0] = (float)index;
	px[1] = (float)(seed & 0xffffff);
	px[2] = (float)((seed >> 24) & 0xffffff);
	return 0;
}

static int
fake_text(void *arg, int64_t index, const char *key, uint64_t seed,
    int32_t *tok)
{
	(void)arg;
	(void)key;
	tok[0] = (int32_t)index;
	tok[1] = (int32_t)(seed >> 33);
	return 0;
}

/* streams: keys "k0", "k1", ...; every 10th call (5, 15, ...) fails */
static int
fake_next(void *arg, char **key)
{
	struct fake *f = arg;
	int64_t c = f->calls++;

	if (c >= f->stream_n)
		return 0;
	if (c % 10 == 5)
		return vlm_error("source failure at call %lld", (long long)c);
	if (asprintf(key, "k%lld", (long long)c) < 0)
		abort();
	return 1;
}

/* a growing text: the trace of a stream of batches */
struct trace {
	char *s;
	size_t len, cap;
	int lines;
};

static void
tprintf(struct trace *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (t->len + k + 1 > t->cap) {
		t->cap = 2 * (t->len + k + 1);
		t->s = realloc(t->s, t->cap);
		assert_non_null(t->s);
	}
	va_start(ap, fmt);
	vsnprintf(t->s + t->len, k + 1, fmt, ap);
	va_end(ap);
	t->len += k;
}

/* one item as the fake loader must have made it */
static void
trace_item(struct trace *t, int64_t index, const char *key, const float *px,
    const int32_t *tok)
{
	tprintf(t, " %lld", (long long)index);
	if (key)
		tprintf(t, "(%s)", key);
	tprintf(t, "[%.0f %.0f %.0f|%d %d]", px[0], px[1], px[2], tok[0],
	    tok[1]);
}

static void
trace_batch(struct trace *t, const struct vlm_batch *b)
{
	tprintf(t, "e%lld p%lld n%d:", (long long)b->at.epoch,
	    (long long)b->at.pos, b->n);
	for (int i = 0; i < b->n; i++)
		trace_item(t, b->index[i], b->key ? b->key[i] : NULL,
		    b->pixels + i * IMG, b->tokens + i * CTX);
	for (int k = 0; k < b->nerr; k++)
		tprintf(t, " !%lld:%s", (long long)b->err[k].index,
		    b->err[k].msg);
	tprintf(t, "\n");
	t->lines++;
}

/* run a loader to its end (or maxb batches): the trace */
static struct trace
run(const struct vlm_loader_opts *o, int maxb, struct vlm_cursor *cur)
{
	struct vlm_loader *l = vlm_loader_new(o);
	struct trace t = { 0 };
	const struct vlm_batch *b;
	int rc;

	assert_non_null(l);
	tprintf(&t, "%s", "");
	while (t.lines != maxb && (rc = vlm_loader_next(l, &b)) != 0) {
		assert_int_equal(rc, 1);
		trace_batch(&t, b);
	}
	if (cur)
		vlm_loader_cursor(l, cur);
	vlm_loader_free(l);
	return t;
}

/* the expected trace of an indexed SKIP loader, computed plainly */
static struct trace
reference(const struct vlm_loader_opts *o, const struct fake *f)
{
	struct trace t = { 0 };
	int64_t len = o->drop_last ? o->n / o->batch * o->batch : o->n;
	uint32_t *perm = malloc(o->n * sizeof(*perm));

	tprintf(&t, "%s", "");
	for (int64_t e = 0; e < o->epochs; e++) {
		vlm_perm_shuffle(perm, o->n, o->seed, e);
		for (int64_t p = 0; p < len; p += o->batch) {
			int64_t end = p + o->batch < len ? p + o->batch : len;
			struct trace items = { 0 }, errs = { 0 };
			int n = 0;
			tprintf(&items, "%s", "");
			tprintf(&errs, "%s", "");
			for (int64_t i = p; i < end; i++) {
				int64_t x = o->shuffle ? perm[i] : i;
				uint64_t s = vlm_item_seed(o->seed, e, x);
				float px[IMG] = { x, s & 0xffffff,
					(s >> 24) & 0xffffff };
				int32_t tok[CTX] = { x, s >> 33 };
				if (fails(f, x)) {
					tprintf(&errs, " !%lld:item %lld: "
					    "fake failure", (long long)x,
					    (long long)x);
					continue;
				}
				trace_item(&items, x, NULL, px, tok);
				n++;
			}
			tprintf(&t, "e%lld p%lld n%d:%s%s\n", (long long)e,
			    (long long)p, n, items.s, errs.s);
			t.lines++;
			free(items.s);
			free(errs.s);
		}
	}
	free(perm);
	return t;
}

static struct vlm_loader_opts
opts(struct fake *f)
{
	struct vlm_loader_opts o = {
		.n = 50, .batch = 8, .threads = 1, .depth = 3, .seed = 42,
		.shuffle = 1, .epochs = 3, .image_floats = IMG, .ctx = CTX,
		.arg = f, .image = fake_image, .text = fake_text,
	};
	return o;
}

static void
test_perm(void **state)
{
	uint32_t p[3], q[40], r[40];
	int count[6] = { 0 };

	(void)state;
	for (int e = 0; e < 6000; e++) {
		vlm_perm_shuffle(p, 3, 1, e);
		assert_true(p[0] < 3 && p[1] < 3 && p[2] < 3);
		assert_true(p[0] != p[1] && p[1] != p[2] && p[0] != p[2]);
		count[p[0] * 2 + (p[1] > p[2])]++;
	}
	for (int k = 0; k < 6; k++)  /* 1000 each, sd 29 */
		assert_true(count[k] > 850 && count[k] < 1150);
	vlm_perm_shuffle(q, 40, 5, 0);
	vlm_perm_shuffle(r, 40, 5, 0);
	assert_memory_equal(q, r, sizeof(q));
	vlm_perm_shuffle(r, 40, 5, 1);
	assert_memory_not_equal(q, r, sizeof(q));
	vlm_perm_shuffle(r, 40, 6, 0);
	assert_memory_not_equal(q, r, sizeof(q));
	assert_true(vlm_item_seed(1, 0, 1) != vlm_item_seed(1, 1, 0));
	assert_true(vlm_item_seed(1, 2, 3) != vlm_item_seed(2, 2, 3));
}

/* SKIP with failures, shuffled and not, drop_last or not: as computed */
static void
test_order(void **state)
{
	struct fake f = { .fail_mod = 7, .fail_rem = 3, .sleep_us = 300 };
	struct vlm_loader_opts o = opts(&f);

	(void)state;
	for (int v = 0; v < 3; v++) {
		o.shuffle = v != 1;
		o.drop_last = v == 2;
		struct trace want = reference(&o, &f);
		assert_int_equal(want.lines, v == 2 ? 18 : 21);
		for (int th = 1; th <= 4; th *= 2) {
			o.threads = th;
			o.depth = th == 2 ? 2 : 3;
			struct trace got = run(&o, -1, NULL);
			assert_string_equal(got.s, want.s);
			free(got.s);
		}
		free(want.s);
	}
}

/* stop after k batches, resume from the cursor: the rest of the stream */
static void
test_resume(void **state)
{
	struct fake f = { .fail_mod = 5, .fail_rem = 0, .sleep_us = 200 };
	struct vlm_loader_opts o = opts(&f);
	struct vlm_cursor c;
	const int ks[] = { 1, 7, 9, 20 };
	struct trace all;

	(void)state;
	o.threads = 4;
	all = run(&o, -1, NULL);
	assert_int_equal(all.lines, 21);
	for (size_t i = 0; i < sizeof(ks) / sizeof(*ks); i++) {
		struct trace head = run(&o, ks[i], &c), rest;
		assert_int_equal(head.lines, ks[i]);
		if (ks[i] == 7) {  /* 7 batches = epoch 0 (50 items) */
			assert_int_equal(c.epoch, 1);
			assert_int_equal(c.pos, 0);
		}
		if (ks[i] == 9) {
			assert_int_equal(c.epoch, 1);
			assert_int_equal(c.pos, 16);
		}
		o.start = c;
		o.threads = 2;
		rest = run(&o, -1, NULL);
		o.threads = 4;
		o.start = (struct vlm_cursor){ 0, 0 };
		assert_int_equal(head.lines + rest.lines, all.lines);
		assert_int_equal(head.len + rest.len, all.len);
		assert_memory_equal(head.s, all.s, head.len);
		assert_string_equal(rest.s, all.s + head.len);
		free(head.s);
		free(rest.s);
	}
	free(all.s);
}

/* REPLACE: full batches, same for every thread count, failures listed */
static void
test_replace(void **state)
{
	struct fake f = { .fail_mod = 3, .fail_rem = 1, .sleep_us = 200 };
	struct vlm_loader_opts o = opts(&f);
	struct vlm_loader *l;
	const struct vlm_batch *b;
	struct trace t1;
	int nerr = 0;

	(void)state;
	o.on_fail = VLM_LOADER_REPLACE;
	o.drop_last = 1;
	t1 = run(&o, -1, NULL);
	for (int th = 2; th <= 4; th += 2) {
		o.threads = th;
		struct trace t = run(&o, -1, NULL);
		assert_string_equal(t.s, t1.s);
		free(t.s);
	}
	free(t1.s);
	l = vlm_loader_new(&o);
	assert_non_null(l);
	while (vlm_loader_next(l, &b) == 1) {
		assert_int_equal(b->n, 8);
		for (int i = 0; i < b->n; i++) {
			assert_false(fails(&f, b->index[i]));
			assert_true(b->index[i] >= 0 && b->index[i] < 50);
			assert_float_equal(b->pixels[i * IMG], b->index[i], 0);
		}
		for (int k = 0; k < b->nerr; k++)
			assert_true(fails(&f, b->err[k].index));
		nerr += b->nerr;
	}
	assert_true(nerr >= 3 * 6 * 8 / 3 / 2);  /* about a third fail */
	vlm_loader_free(l);

	f.all_fail = 1;  /* nothing loads: next() fails */
	l = vlm_loader_new(&o);
	assert_non_null(l);
	assert_int_equal(vlm_loader_next(l, &b), -1);
	assert_non_null(strstr(vlm_errmsg(), "16 tries to load an item "
	    "failed, the last: item"));
	assert_int_equal(vlm_loader_next(l, &b), -1);
	vlm_loader_free(l);
}

/* a stream of unknown length with keys, source errors and bad items */
static void
test_stream(void **state)
{
	struct fake f = { .stream_n = 45, .sleep_us = 100 };
	struct vlm_loader_opts o = opts(&f);
	struct trace want = { 0 };
	int64_t c = 0, item = 0;

	(void)state;
	o.n = -1;
	o.next = fake_next;
	o.next_arg = &f;
	o.shuffle = 0;
	o.epochs = 0;
	tprintf(&want, "%s", "");
	/* batches of 8 keys; errors (source, then items) after the items */
	while (c < 45) {
		struct trace items = { 0 }, errs = { 0 };
		int64_t p = item;
		int n = 0, k = 0;
		tprintf(&items, "%s", "");
		tprintf(&errs, "%s", "");
		for (; k < 8 && c < 45; c++) {
			char key[32];
			if (c % 10 == 5) {
				tprintf(&errs, " !-1:source failure at call "
				    "%lld", (long long)c);
				continue;
			}
			snprintf(key, sizeof(key), "k%lld", (long long)c);
			k++;
			if (strchr(key, '3')) {
				tprintf(&errs, " !%lld:'%s': no image in key",
				    (long long)item++, key);
				continue;
			}
			uint64_t s = vlm_item_seed(o.seed, 0, item);
			float px[IMG] = { item, s & 0xffffff,
				(s >> 24) & 0xffffff };
			int32_t tok[CTX] = { item, s >> 33 };
			trace_item(&items, item++, key, px, tok);
			n++;
		}
		tprintf(&want, "e0 p%lld n%d:%s%s\n", (long long)p, n, items.s,
		    errs.s);
		want.lines++;
		free(items.s);
		free(errs.s);
	}
	for (int th = 1; th <= 4; th *= 2) {
		o.threads = th;
		f.calls = 0;
		struct trace got = run(&o, -1, NULL);
		assert_string_equal(got.s, want.s);
		free(got.s);
	}
	free(want.s);
}

static void
test_empty(void **state)
{
	/* an empty stream and an empty data set end at once */
	struct fake f = { .stream_n = 0 };
	struct vlm_loader_opts o = opts(&f);
	struct vlm_loader *l;
	const struct vlm_batch *b;

	(void)state;
	o.n = -1;
	o.next = fake_next;
	o.next_arg = &f;
	o.epochs = 0;
	l = vlm_loader_new(&o);  /* an empty stream */
	assert_non_null(l);
	assert_int_equal(vlm_loader_next(l, &b), 0);
	assert_int_equal(vlm_loader_next(l, &b), 0);
	vlm_loader_free(l);
	o.n = 0;  /* no items */
	l = vlm_loader_new(&o);
	assert_non_null(l);
	assert_int_equal(vlm_loader_next(l, &b), 0);
	vlm_loader_free(l);
}

/* free while the workers are busy, after 0, 1 and a few batches */
static void
test_shutdown(void **state)
{
	struct fake f = { .sleep_us = 2000 };
	struct vlm_loader_opts o = opts(&f);
	const struct vlm_batch *b;

	(void)state;
	o.epochs = 0;  /* endless */
	o.threads = 4;
	for (int k = 0; k < 3; k++) {
		struct vlm_loader *l = vlm_loader_new(&o);
		assert_non_null(l);
		for (int i = 0; i < 2 * k; i++)
			assert_int_equal(vlm_loader_next(l, &b), 1);
		vlm_loader_free(l);
	}
	f.stream_n = 1000;  /* a stream holding keys */
	f.calls = 0;
	o.n = -1;
	o.next = fake_next;
	o.next_arg = &f;
	o.shuffle = 0;
	struct vlm_loader *l = vlm_loader_new(&o);
	assert_non_null(l);
	assert_int_equal(vlm_loader_next(l, &b), 1);
	vlm_loader_free(l);
}

/* the ready-made callbacks: real files, a missing one, BPE captions */
static void
test_items(void **state)
{
	const char *png = fixture("openclip-tiny/test_image.png");
	char *paths[] = { (char *)png, "/nonexistent/x.png", (char *)png };
	char *caps[] = { "a photo of a cat", "x", "hello there" };
	struct vlm_bpe bpe;
	struct vlm_items it = { .paths = paths, .captions = caps, .size = 32,
		.bpe = &bpe, .ctx = 16 };
	struct vlm_loader_opts o = { .n = 3, .batch = 3, .threads = 2,
		.seed = 9, .epochs = 2, .image_floats = 3 * 32 * 32, .ctx = 16,
		.arg = &it, .image = vlm_items_image, .text = vlm_items_text };
	float want[3 * 32 * 32];
	int32_t tok[16];
	struct vlm_image im;
	const struct vlm_batch *b;

	(void)state;
	NEED_FIXTURE(png);
	assert_int_equal(vlm_bpe_from_merges(&bpe, "#version: 0.2\nh e\n"
	    "a t</w>\n"), 0);
	assert_int_equal(vlm_image_load(&im, png, NULL), 0);
	for (int train = 0; train < 2; train++) {
		struct vlm_loader *l;
		it.train = train;
		l = vlm_loader_new(&o);
		assert_non_null(l);
		for (int e = 0; e < 2; e++) {
			assert_int_equal(vlm_loader_next(l, &b), 1);
			assert_int_equal(b->n, 2);
			assert_int_equal(b->nerr, 1);
			assert_int_equal(b->err[0].index, 1);
			assert_non_null(strstr(b->err[0].msg,
			    "/nonexistent/x"));
			for (int i = 0; i < 2; i++) {
				int64_t x = b->index[i];
				struct vlm_rng r;
				assert_int_equal(x, 2 * i);
				vlm_rng_seed(&r, vlm_item_seed(9, e, x));
				assert_int_equal(train ? vlm_preprocess_train(
				    want, &im, 32, NULL, NULL, NULL, &r) :
				    vlm_preprocess(want, &im, 32, NULL, NULL),
				    0);
				assert_memory_equal(b->pixels + i * 3 * 32 * 32,
				    want, sizeof(want));
				assert_true(vlm_bpe_encode(&bpe, caps[x], tok,
				    16) > 2);
				assert_memory_equal(b->tokens + i * 16, tok,
				    sizeof(tok));
			}
		}
		assert_int_equal(vlm_loader_next(l, &b), 0);
		vlm_loader_free(l);
	}
	vlm_image_release(&im);
	vlm_bpe_release(&bpe);
}

/* a stream over a directory walk: images by content, in path order */
static void
test_walk_stream(void **state)
{
	const char *png = fixture("openclip-tiny/test_image.png");
	const char *links[] = { "c.png", "a.png", "sub/b.png" };
	char dir[4200], abs[4200], p[4300], *roots[] = { dir };
	struct vlm_items it = { .size = 16 };
	struct vlm_walk w;
	struct vlm_loader_opts o = { .n = -1, .batch = 4, .threads = 3,
		.image_floats = 3 * 16 * 16, .arg = &it,
		.image = vlm_items_image, .next = vlm_walk_key };
	struct vlm_loader *l;
	const struct vlm_batch *b;
	FILE *f;

	(void)state;
	NEED_FIXTURE(png);
	assert_non_null(realpath(png, abs));  /* links from anywhere */
	snprintf(dir, sizeof(dir), "%s/stream", test_tmpdir());
	snprintf(p, sizeof(p), "%s/sub", dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(p, 0700), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, links[i]);
		assert_int_equal(symlink(abs, p), 0);
	}
	snprintf(p, sizeof(p), "%s/bad.png", dir);
	f = fopen(p, "w");  /* PNG magic, then nonsense */
	assert_non_null(f);
	fputs("\x89PNG\r\n\x1a\nnonsense", f);
	assert_int_equal(fclose(f), 0);
	vlm_walk_init(&w, roots, 1, NULL, NULL);
	o.next_arg = &w;
	l = vlm_loader_new(&o);
	assert_non_null(l);
	assert_int_equal(vlm_loader_next(l, &b), 1);
	assert_int_equal(b->n, 3);
	assert_int_equal(b->nerr, 1);
	assert_int_equal(b->err[0].index, 1);
	snprintf(p, sizeof(p), "%s/bad.png", dir);
	assert_string_equal(b->err[0].key, p);
	const char *order[] = { "a.png", "c.png", "sub/b.png" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, order[i]);
		assert_string_equal(b->key[i], p);
		assert_int_equal(b->index[i], i + (i > 0));
		assert_memory_equal(b->pixels, b->pixels + i * 3 * 16 * 16,
		    3 * 16 * 16 * sizeof(float));
	}
	assert_int_equal(vlm_loader_next(l, &b), 0);
	vlm_loader_free(l);
	assert_int_equal(w.nskipped, 0);
	vlm_walk_release(&w);
}

/* a stream of lines from a pipe; a writer thread feeds it late */
struct slow_pipe {
	FILE *in;          /* the read end */
	int wfd;           /* the write end */
	const char *rest;  /* written once the consumer has batch 0 */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int got_first;     /* the consumer has batch 0 */
	int timed_out;     /* the writer gave up waiting for it */
};

static int
pipe_next(void *arg, char **key)
{
	struct slow_pipe *p = arg;
	size_t cap = 0;

	*key = NULL;
	if (getline(key, &cap, p->in) < 0) {
		free(*key);
		*key = NULL;
		return 0;
	}
	(*key)[strcspn(*key, "\n")] = 0;
	return 1;
}

/* wait (5 s at most) for the consumer's first batch, then feed the rest */
static void *
pipe_writer(void *arg)
{
	struct slow_pipe *p = arg;
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&p->mu);
	while (!p->got_first && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
	p->timed_out = !p->got_first;
	pthread_mutex_unlock(&p->mu);
	if (write(p->wfd, p->rest, strlen(p->rest)) != (ssize_t)strlen(p->rest))
		abort();
	close(p->wfd);
	return NULL;
}

/* a loader over a pipe holding `first`; `rest` follows batch 0 */
static struct trace
run_pipe(struct vlm_loader_opts *o, const char *first, const char *rest,
    int *timed_out)
{
	struct slow_pipe p = { .rest = rest };
	struct vlm_loader *l;
	const struct vlm_batch *b;
	struct trace t = { 0 };
	pthread_t tid;
	int fd[2];

	assert_int_equal(pipe(fd), 0);
	assert_non_null(p.in = fdopen(fd[0], "r"));
	p.wfd = fd[1];
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	assert_int_equal(write(p.wfd, first, strlen(first)),
	    (ssize_t)strlen(first));
	o->next_arg = &p;
	assert_non_null(l = vlm_loader_new(o));
	assert_int_equal(pthread_create(&tid, NULL, pipe_writer, &p), 0);
	tprintf(&t, "%s", "");
	for (int rc; (rc = vlm_loader_next(l, &b)) != 0;) {
		assert_int_equal(rc, 1);
		trace_batch(&t, b);
		pthread_mutex_lock(&p.mu);
		p.got_first = 1;
		pthread_cond_signal(&p.cv);
		pthread_mutex_unlock(&p.mu);
	}
	vlm_loader_free(l);
	pthread_join(tid, NULL);
	fclose(p.in);
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
	*timed_out = p.timed_out;
	return t;
}

/*
 * A stream whose source stalls (a pipe holding only batch 0's paths):
 * one worker waits in next() for batch 1's, the others still finish
 * batch 0 and the consumer gets it; the writer feeds the rest only then
 * (or after 5 s). The batches equal those of the same lines read at once.
 */
static void
test_slow_stream(void **state)
{
	struct fake f = { .sleep_us = 2000 };
	struct vlm_loader_opts o = opts(&f);
	const char *first = "k0\nk1\n", *rest = "k2\nk3\nk4\nk5\nk6\n";
	char all[64];
	struct trace want, got;
	int timed_out;

	(void)state;
	o.n = -1;
	o.next = pipe_next;
	o.shuffle = 0;
	o.epochs = 0;
	o.batch = 2;
	snprintf(all, sizeof(all), "%s%s", first, rest);
	o.threads = 1;
	want = run_pipe(&o, all, "", &timed_out);
	assert_int_equal(want.lines, 4);
	assert_non_null(strstr(want.s, "(k6)"));
	assert_non_null(strstr(want.s, "'k3': no image in key"));
	for (int th = 1; th <= 4; th *= 2) {
		o.threads = th;
		got = run_pipe(&o, first, rest, &timed_out);
		print_message("%d threads: batch 0 %s\n", th, timed_out ?
		    "came only after the writer gave up (5 s)" :
		    "came while the pipe was stalled");
		assert_false(timed_out);
		assert_string_equal(got.s, want.s);
		free(got.s);
	}
	free(want.s);
}

/* parts: each of 2 loaders loads only its half of every batch, the
 * same items and replacements as the whole, and reports only its
 * items' failures; together they load what one loader loads */
static void
test_parts(void **state)
{
	struct fake f = { .fail_mod = 3, .fail_rem = 1, .sleep_us = 100 };
	struct vlm_loader_opts o = opts(&f);
	struct vlm_loader *l[3];
	const struct vlm_batch *b[3];
	int64_t loads[3];

	(void)state;
	o.on_fail = VLM_LOADER_REPLACE;
	o.drop_last = 1;
	o.threads = 3;
	for (int k = 0; k < 3; k++) { /* the whole, then parts 0 and 1 */
		o.parts = k ? 2 : 0, o.part = k ? k - 1 : 0;
		l[k] = vlm_loader_new(&o);
		assert_non_null(l[k]);
	}
	for (int nb = 0;; nb++) {
		int rc = vlm_loader_next(l[0], &b[0]), ne = 0;
		for (int k = 1; k < 3; k++)
			assert_int_equal(vlm_loader_next(l[k], &b[k]), rc);
		if (rc == 0) {
			assert_int_equal(nb, 18);
			break;
		}
		for (int k = 1; k < 3; k++) {
			int lo = (k - 1) * 4;
			assert_int_equal(b[k]->n, 8);
			for (int i = lo; i < lo + 4; i++) {
				assert_int_equal(b[k]->index[i], b[0]->index[i]);
				assert_memory_equal(b[k]->pixels + i * IMG,
				    b[0]->pixels + i * IMG, IMG * sizeof(float));
				assert_memory_equal(b[k]->tokens + i * CTX,
				    b[0]->tokens + i * CTX, CTX * 4);
			}
			for (int e = 0; e < b[k]->nerr; e++, ne++) {
				assert_int_equal(b[k]->err[e].index,
				    b[0]->err[ne].index);
				assert_string_equal(b[k]->err[e].msg,
				    b[0]->err[ne].msg);
			}
		}
		assert_int_equal(ne, b[0]->nerr);
	}
	for (int k = 0; k < 3; k++)
		vlm_loader_free(l[k]);
	/* the image callbacks: one loader's count, split between parts */
	f.loads = 0;
	for (int k = 0; k < 3; k++) {
		o.parts = k ? 2 : 0, o.part = k ? k - 1 : 0;
		struct trace t = run(&o, -1, NULL);
		loads[k] = f.loads;
		f.loads = 0;
		free(t.s);
	}
	assert_true(loads[1] > 0 && loads[2] > 0);
	assert_int_equal(loads[1] + loads[2], loads[0]);
	o.parts = 3; /* 8 is not a multiple of 3 */
	assert_null(vlm_loader_new(&o));
	o.parts = 2, o.drop_last = 0;
	assert_null(vlm_loader_new(&o));
}

static void
test_bad_opts(void **state)
{
	struct fake f = { 0 };
	struct vlm_loader_opts o;

	(void)state;
#define BAD(field, value, msg) do { \
	o = opts(&f); \
	o.field = value; \
	assert_null(vlm_loader_new(&o)); \
	assert_non_null(strstr(vlm_errmsg(), msg)); \
} while (0)
	BAD(batch, 0, "out of range");
	BAD(depth, 1, "out of range");
	BAD(image, NULL, "image_floats and ctx");
	BAD(ctx, 0, "image_floats and ctx");
	BAD(n, -1, "a stream needs next()");
	BAD(start.pos, -1, "negative cursor");
	o = opts(&f);
	o.drop_last = 1;
	o.batch = 64;
	assert_null(vlm_loader_new(&o));
	assert_non_null(strstr(vlm_errmsg(), "make no full batch of 64"));
	o = opts(&f);
	o.n = -1;
	o.next = fake_next;
	o.next_arg = &f;
	o.on_fail = VLM_LOADER_REPLACE;
	assert_null(vlm_loader_new(&o));
#undef BAD
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_perm),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_shutdown),
		cmocka_unit_test(test_items),
		cmocka_unit_test(test_walk_stream),
		cmocka_unit_test(test_slow_stream),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_bad_opts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
