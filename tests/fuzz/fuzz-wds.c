/*
 * fuzz-wds.c - a webdataset tar shard (vlm_wds_pairs_load), then each
 * sample's image decoded from its blob (vlm_blob_image_load). Checks
 * what the reader returns against its own contract: every blob inside
 * the file, every row's path and every bad sample's message naming the
 * shard; then the shard streamed (data/stream.c), which must give the
 * same samples, names, captions and image bytes as the indexed reading.
 */
#include "fuzz.h"

/* The stream of path: p's rows, in order, image bytes as p's blobs. */
static void
check_stream(const char *path, const struct vlm_pairs *p,
    const uint8_t *data)
{
	struct vlm_stream_opts o = { .buffer = 2, .once = 1 };
	struct vlm_stream *s = vlm_stream_new(path, NULL, &o);
	struct vlm_sample g;
	int n = 0, rc;

	if (!s)
		abort();
	while ((rc = vlm_stream_next(s, &g)) == 1) {
		if (n >= p->n)
			abort();
		const struct vlm_blob *b = &p->blobs[g.num];
		if (g.num < 0 || g.num >= p->n || strcmp(g.name,
		    p->paths[g.num]) || strcmp(g.caption, p->captions[g.num]) ||
		    g.size != (size_t)b->size ||
		    memcmp(g.img, data + b->off, g.size) != 0)
			abort();
		vlm_sample_release(&g);
		n++;
	}
	if (rc < 0 || n != p->n)
		abort();
	vlm_stream_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vlm_image_opts o = { .max_pixels = FUZZ_MAX_PIXELS };
	struct vlm_pairs p;
	struct vlm_image im;
	const char *path = fuzz_file("shard.tar", data, size);

	if (vlm_pairs_load(&p, path, NULL) < 0)
		return 0;
	if (!p.blobs || p.nshards != 1 || p.n < 1)
		abort();
	for (int i = 0; i < p.n; i++) {
		const struct vlm_blob *b = &p.blobs[i];
		if (b->file != p.shards[0] || b->off < 0 || b->size < 0 ||
		    (uint64_t)(b->off + b->size) > size ||
		    strncmp(p.paths[i], path, strlen(path)) != 0 ||
		    p.image_id[i] != i || p.image_row[i] != i)
			abort();
		if (i < 8 && vlm_blob_image_load(&im, b, p.paths[i], &o) == 0)
			vlm_image_release(&im);
	}
	for (int i = 0; i < p.nbadmsg; i++)
		if (!strstr(p.bad[i], "shard.tar"))
			abort();
	check_stream(path, &p, data);
	vlm_pairs_release(&p);
	return 0;
}
