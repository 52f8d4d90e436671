/*
 * fuzz-wds.c - a webdataset tar shard (vlm_wds_pairs_load), then each
 * sample's image decoded from its blob (vlm_blob_image_load). Checks
 * what the reader returns against its own contract: every blob inside
 * the file, every row's path and every bad sample's message naming the
 * shard.
 */
#include "fuzz.h"

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
	vlm_pairs_release(&p);
	return 0;
}
