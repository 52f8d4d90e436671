/*
 * loader-items.c - the loader callbacks the commands share: an item is an image
 * file (decoded, then OpenCLIP's validation transform or its training
 * augmentation seeded by the item's seed) and/or a caption (CLIP BPE).
 * Paths and captions come from arrays (pairs, ImageFolder) or, for
 * streams, the item's key is the path; an image inside a tar shard is
 * read from its blob; a streamed sample's image from its bytes.
 */
#include "text/text.h"
#include "data/data.h"

int
vlm_items_image(void *arg, int64_t index, const char *key, uint64_t seed,
    float *px)
{
	const struct vlm_items *it = arg;
	const struct vlm_sample *sa = it->samples ? &it->samples[it->ring ?
	    index % it->ring : index] : NULL;
	const char *path = sa ? sa->name : it->paths ? it->paths[index] : key;
	struct vlm_image im;
	struct vlm_image_opts alpha = { .alpha = it->alpha };
	const struct vlm_image_opts *o = it->image_opts ? it->image_opts :
	    &alpha;
	struct vlm_rng r;
	int rc;

	if (!path)
		return vlm_error("item %lld: no image path", (long long)index);
	if (sa && sa->img)
		rc = vlm_image_decode(&im, sa->img, sa->size, path, o);
	else if (it->blobs && it->blobs[index].file)
		rc = vlm_blob_image_load(&im, &it->blobs[index], path, o);
	else
		rc = vlm_image_load(&im, path, o);
	if (rc < 0)
		return -1;
	if (it->train) {
		vlm_rng_seed(&r, seed);
		rc = vlm_preprocess_train(px, &im, it->size, it->mean, it->std,
		    it->augment, &r);
	} else {
		rc = vlm_preprocess(px, &im, it->size, it->mean, it->std);
	}
	vlm_image_release(&im);
	if (rc < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
		return vlm_error("'%s': %s", path, msg);
	}
	return 0;
}

int
vlm_items_text(void *arg, int64_t index, const char *key, uint64_t seed,
    int32_t *tokens)
{
	const struct vlm_items *it = arg;
	const char *text = it->samples ? it->samples[it->ring ? index %
	    it->ring : index].caption :
	    it->captions ? it->captions[index] : key;

	(void)seed;
	if (!text)
		return vlm_error("item %lld: no caption", (long long)index);
	if (vlm_bpe_encode(it->bpe, text, tokens, it->ctx) < 0)
		return vlm_error("item %lld: cannot tokenize the caption",
		    (long long)index);
	return 0;
}
