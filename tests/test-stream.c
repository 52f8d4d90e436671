/*
 * test-stream.c - shards read sequentially (data/stream.c): a buffer of
 * one delivers the reading order, epoch after epoch; a larger buffer and
 * shuffled shards deliver each sample once an epoch, the same sequence
 * for the same seed; seeking to a cursor replays to the same place; a
 * sample without an image is reported and skipped.
 */
#include <sys/stat.h>

#include "testutil.h"

#include "data/data.h"

#define NS 13 /* samples, 5 a shard: 3 shards */

static char pattern[4400];

/* NS samples k00..k12 ("img N", "cap N") in shards of 5; with noimg,
 * sample 7 has only its caption. */
static void
write_shards(const char *name, int noimg)
{
	struct vlm_shard_writer w;
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s/%s", test_tmpdir(), name);
	assert_int_equal(mkdir(dir, 0777), 0);
	assert_int_equal(vlm_shard_writer_init(&w, dir, 5), 0);
	for (int i = 0; i < NS; i++) {
		char key[16], img[16], cap[16];
		const char *ext[2] = { "jpg", "txt" };
		const void *data[2] = { img, cap };
		size_t size[2];
		snprintf(key, sizeof(key), "k%02d", i);
		size[0] = snprintf(img, sizeof(img), "img %d", i);
		size[1] = snprintf(cap, sizeof(cap), "cap %d", i);
		int skip = noimg && i == 7;
		assert_int_equal(vlm_shard_writer_add(&w, key, 2 - skip,
		    ext + skip, data + skip, size + skip), 0);
	}
	assert_int_equal(vlm_shard_writer_finish(&w), 0);
	vlm_shard_writer_release(&w, 0);
	snprintf(pattern, sizeof(pattern), "%s/{0..2}.tar", dir);
}

/* the sample's number from its caption "cap N" */
static int
cap_num(const struct vlm_sample *g)
{
	return atoi(g->caption + 4);
}

static void
test_reading_order(void **state)
{
	struct vlm_stream_opts o = { .buffer = 1, .seed = 3 };
	struct vlm_stream *s;
	struct vlm_sample g;
	struct vlm_cursor c;

	(void)state;
	write_shards("plain", 0);
	assert_non_null(s = vlm_stream_new(pattern, NULL, &o));
	for (int i = 0; i < 2 * NS + 1; i++) {
		char img[16];
		assert_int_equal(vlm_stream_next(s, &g), 1);
		snprintf(img, sizeof(img), "img %d", i % NS);
		assert_int_equal(cap_num(&g), i % NS);
		assert_int_equal(g.epoch, i / NS);
		assert_int_equal(g.num, i % NS);
		assert_int_equal(g.size, strlen(img));
		assert_memory_equal(g.img, img, g.size);
		assert_non_null(strstr(g.name, ".tar:k"));
		vlm_sample_release(&g);
	}
	vlm_stream_cursor(s, &c);
	assert_int_equal(c.epoch, 2);
	assert_int_equal(c.pos, 1);
	vlm_stream_free(s);
}

/* 3 epochs of the stream of o into seq */
static void
three_epochs(const struct vlm_stream_opts *o, int *seq)
{
	struct vlm_stream *s = vlm_stream_new(pattern, NULL, o);
	struct vlm_sample g;

	assert_non_null(s);
	for (int i = 0; i < 3 * NS; i++) {
		assert_int_equal(vlm_stream_next(s, &g), 1);
		assert_int_equal(g.epoch, i / NS);
		seq[i] = cap_num(&g);
		vlm_sample_release(&g);
	}
	vlm_stream_free(s);
}

static void
test_shuffled(void **state)
{
	struct vlm_stream_opts o = { .buffer = 4, .seed = 9,
	    .shard_shuffle = 1 };
	int a[3 * NS], b[3 * NS], inorder = 1;

	(void)state;
	write_shards("shuf", 0);
	three_epochs(&o, a);
	three_epochs(&o, b);
	assert_memory_equal(a, b, sizeof(a));
	for (int e = 0; e < 3; e++) {
		int seen[NS] = { 0 };
		for (int i = 0; i < NS; i++) {
			seen[a[e * NS + i]]++;
			inorder &= a[e * NS + i] == i;
		}
		for (int i = 0; i < NS; i++)
			assert_int_equal(seen[i], 1);
	}
	assert_false(inorder);
	/* epochs differ: shard order and buffer draws depend on the epoch */
	assert_memory_not_equal(a, a + NS, NS * sizeof(int));
	/* every cursor replays to the same sample */
	for (int at = 0; at < 3 * NS; at += 4) {
		struct vlm_cursor c = { at / NS, at % NS };
		struct vlm_stream *s = vlm_stream_new(pattern, NULL, &o);
		struct vlm_sample g;
		assert_int_equal(vlm_stream_seek(s, &c), 0);
		assert_int_equal(vlm_stream_next(s, &g), 1);
		assert_int_equal(cap_num(&g), a[at]);
		vlm_sample_release(&g);
		vlm_stream_free(s);
	}
}

static int
count_bad(void *arg, const char *shard, const char *key, const char *msg)
{
	assert_non_null(strstr(shard, "/bad/1.tar"));
	assert_string_equal(key, "k07");
	assert_non_null(strstr(msg, "1.tar': k07: no image"));
	(*(int *)arg)++;
	return 0;
}

static void
test_bad_sample(void **state)
{
	int nbad = 0;
	struct vlm_stream_opts o = { .buffer = 2, .bad = count_bad,
	    .arg = &nbad };
	struct vlm_stream *s;
	struct vlm_stream_counts n;
	struct vlm_sample g;

	(void)state;
	write_shards("bad", 1);
	assert_non_null(s = vlm_stream_new(pattern, NULL, &o));
	for (int i = 0; i < NS - 1; i++) {
		assert_int_equal(vlm_stream_next(s, &g), 1);
		assert_int_not_equal(cap_num(&g), 7);
		assert_int_equal(g.epoch, 0);
		vlm_sample_release(&g);
	}
	vlm_stream_counts(s, &n);
	assert_int_equal(nbad, 1);
	assert_int_equal(n.bad, 1);
	assert_int_equal(n.read, NS - 1);
	assert_int_equal(n.shards, 3);
	vlm_stream_free(s);
}

static void
test_missing_shard(void **state)
{
	struct vlm_stream_opts o = { .buffer = 1 };
	char pat[4200];
	struct vlm_stream *s;
	struct vlm_sample g;

	(void)state;
	snprintf(pat, sizeof(pat), "%s/none/{0..1}.tar", test_tmpdir());
	assert_non_null(s = vlm_stream_new(pat, NULL, &o));
	assert_int_equal(vlm_stream_check(s), -1);
	assert_non_null(strstr(vlm_errmsg(), "none/0.tar"));
	assert_int_equal(vlm_stream_next(s, &g), -1);
	assert_non_null(strstr(vlm_errmsg(), "none/0.tar"));
	vlm_stream_free(s);
	o.buffer = 0;
	assert_null(vlm_stream_new(pat, NULL, &o));
	o.buffer = 1;
	assert_null(vlm_stream_new("a.tsv", NULL, &o));
	assert_true(vlm_wds_is_shards("s/{0..9}.tar.gz"));
	assert_true(vlm_wds_is_shards("s/{0..9}.tgz"));
	assert_true(vlm_wds_is_shards("pipe:curl -s http://x/{0..9}.tar"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reading_order),
		cmocka_unit_test(test_shuffled),
		cmocka_unit_test(test_bad_sample),
		cmocka_unit_test(test_missing_shard),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
