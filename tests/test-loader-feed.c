/*
 * test-loader-feed.c - the batch loader's feed mode (libcore/data/loader.c):
 * fed batches come back in the order fed, each item loaded with its fed
 * seed, for 1, 2 and 4 threads and timing noise; a failed item is
 * replaced as documented (lo + splitmix(seed ^ a) mod n, recomputed here
 * from splitmix64's published finaliser) or dropped (SKIP); no batch fed,
 * too many fed, a bad item, all replacements failing: errors, no hang.
 */
#include "testutil.h"

#define IMG 2 /* floats per fake image */
#define CTX 1 /* tokens per fake text */
#define N 40  /* items */

/* items whose index % 10 == 7 fail; with all, every item does */
struct fake {
	int all;
	int sleep_us;
};

static int
fake_image(void *arg, int64_t index, const char *key, uint64_t seed,
    float *px)
{
	const struct fake *f = arg;

	(void)key;
	if (f->sleep_us)
		usleep((unsigned)(vlm_item_seed(3, 0, index) % f->sleep_us));
	if (f->all || index % 10 == 7)
		return vlm_error("item %lld: fake failure", (long long)index);
	px[0] = (float)index;
	px[1] = (float)(seed & 0xffffff);
	return 0;
}

static int
fake_text(void *arg, int64_t index, const char *key, uint64_t seed,
    int32_t *tok)
{
	(void)arg;
	(void)key;
	tok[0] = (int32_t)((seed >> 8) & 0xffff) ^ (int32_t)index;
	return 0;
}

static uint64_t
splitmix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static struct vlm_loader_opts
opts(struct fake *f, int threads, enum vlm_loader_fail on_fail)
{
	struct vlm_loader_opts o = {
		.n = N, .batch = 4, .threads = threads, .depth = 3,
		.seed = 1, .feed = 1, .on_fail = on_fail, .image_floats = IMG,
		.ctx = CTX, .arg = f, .image = fake_image, .text = fake_text,
	};
	return o;
}

/* batch k's item i: an index (7s among them), a seed, range [20, 40) */
static struct vlm_feed
item(int k, int i)
{
	int64_t x = (k * 13 + i * 5) % N;

	return (struct vlm_feed){ x, vlm_item_seed(99, k, i), 20, 20 };
}

/* Where item it ends up under REPLACE, with which seed; the indices
 * that failed on the way appended to err[*nerr]. */
static void
replaced(const struct vlm_feed *it, int64_t *index, uint64_t *seed,
    int64_t *err, int *nerr)
{
	*index = it->index;
	*seed = it->seed;
	for (int a = 1; *index % 10 == 7; a++) {
		err[(*nerr)++] = *index;
		*index = it->lo + (int64_t)(splitmix(it->seed ^ (uint64_t)a) %
		    (uint64_t)it->n);
		*seed = vlm_item_seed(it->seed, a, *index);
	}
}

/* check batch k as delivered under REPLACE; its replacements counted */
static void
check_batch(const struct vlm_batch *b, int k, int *nrepl)
{
	int64_t err[64];
	int nerr = 0;

	assert_int_equal(b->n, 4);
	for (int i = 0; i < 4; i++) {
		struct vlm_feed it = item(k, i);
		int64_t x;
		uint64_t seed;
		replaced(&it, &x, &seed, err, &nerr);
		*nrepl += x != it.index;
		assert_int_equal(b->index[i], x);
		assert_true(x >= 20 || x == it.index);
		assert_true(b->pixels[i * IMG] == (float)x);
		assert_true(b->pixels[i * IMG + 1] == (float)(seed & 0xffffff));
		assert_int_equal(b->tokens[i], (int32_t)((seed >> 8) & 0xffff) ^
		    (int32_t)x);
	}
	assert_int_equal(b->nerr, nerr);
	for (int e = 0; e < nerr; e++)
		assert_int_equal(b->err[e].index, err[e]);
}

static void
test_order(void **state)
{
	struct fake f = { .sleep_us = 200 };
	static const int threads[3] = { 1, 2, 4 };

	(void)state;
	for (int v = 0; v < 3; v++) {
		struct vlm_loader_opts o = opts(&f, threads[v],
		    VLM_LOADER_REPLACE);
		struct vlm_loader *l = vlm_loader_new(&o);
		const struct vlm_batch *b;
		struct vlm_feed it[4];
		int fed = 0, nrepl = 0;
		assert_non_null(l);
		for (int k = 0; k < 12; k++) {
			while (fed < k + 2 && fed < 12) { /* one ahead */
				for (int i = 0; i < 4; i++)
					it[i] = item(fed, i);
				assert_int_equal(vlm_loader_feed(l, it, 4), 0);
				fed++;
			}
			assert_int_equal(vlm_loader_next(l, &b), 1);
			check_batch(b, k, &nrepl);
		}
		assert_true(nrepl >= 3); /* the failures really happened */
		/* nothing fed: an error, not a wait */
		assert_int_equal(vlm_loader_next(l, &b), -1);
		assert_non_null(strstr(vlm_errmsg(), "no batch was fed"));
		vlm_loader_free(l);
	}
}

/* depth 3: three fed before the first next(), then two ahead at most */
static void
test_too_many(void **state)
{
	struct fake f = { 0 };
	struct vlm_loader_opts o = opts(&f, 2, VLM_LOADER_REPLACE);
	struct vlm_loader *l = vlm_loader_new(&o);
	const struct vlm_batch *b;
	struct vlm_feed it[4], bad = { N, 0, 0, N };

	(void)state;
	assert_non_null(l);
	for (int i = 0; i < 4; i++)
		it[i] = item(0, i);
	for (int k = 0; k < 3; k++)
		assert_int_equal(vlm_loader_feed(l, it, 4), 0);
	assert_int_equal(vlm_loader_feed(l, it, 4), -1);
	assert_non_null(strstr(vlm_errmsg(), "fed ahead"));
	assert_int_equal(vlm_loader_next(l, &b), 1);
	assert_int_equal(vlm_loader_feed(l, it, 4), -1);
	assert_int_equal(vlm_loader_next(l, &b), 1);
	assert_int_equal(vlm_loader_feed(l, it, 2), 0); /* a short batch */
	assert_int_equal(vlm_loader_feed(l, &bad, 1), -1);
	bad.index = 3, bad.lo = 30, bad.n = 11;
	assert_int_equal(vlm_loader_feed(l, &bad, 1), -1);
	assert_int_equal(vlm_loader_next(l, &b), 1);
	assert_int_equal(vlm_loader_next(l, &b), 1);
	assert_int_equal(b->n, 2);
	vlm_loader_free(l);
}

/* SKIP drops failed items; REPLACE with nothing loadable fails */
static void
test_failures(void **state)
{
	struct fake f = { 0 };
	struct vlm_loader_opts o = opts(&f, 3, VLM_LOADER_SKIP);
	struct vlm_loader *l = vlm_loader_new(&o);
	const struct vlm_batch *b;
	struct vlm_feed it[4] = { { 7, 1, 0, N }, { 8, 2, 0, N },
		{ 17, 3, 0, N }, { 9, 4, 0, N } };

	(void)state;
	assert_non_null(l);
	assert_int_equal(vlm_loader_feed(l, it, 4), 0);
	assert_int_equal(vlm_loader_next(l, &b), 1);
	assert_int_equal(b->n, 2);
	assert_int_equal(b->index[0], 8);
	assert_int_equal(b->index[1], 9);
	assert_int_equal(b->nerr, 2);
	assert_int_equal(b->err[0].index, 7);
	assert_int_equal(b->err[1].index, 17);
	vlm_loader_free(l);

	f.all = 1;
	o.on_fail = VLM_LOADER_REPLACE;
	assert_non_null(l = vlm_loader_new(&o));
	assert_int_equal(vlm_loader_feed(l, it, 4), 0);
	assert_int_equal(vlm_loader_next(l, &b), -1);
	assert_non_null(strstr(vlm_errmsg(), "tries"));
	vlm_loader_free(l);

	o.n = -1; /* feed mode needs items to index */
	assert_null(vlm_loader_new(&o));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
