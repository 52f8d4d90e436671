/*
 * train-val.c - validation during vlm-train: image<->text retrieval
 * recall@1/5/10 (CLIP_benchmark's definitions, libcore/eval/metrics.c) on a
 * second pairs file, whose images and captions are prepared once.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"
#include "base/base.h"

/* Decode, preprocess and tokenise the validation set once. */
int
train_val_load(struct train *t)
{
	const struct vlm_config *c = &t->m.cfg;
	struct vlm_pairs *p = &t->val;
	size_t S3 = 3 * (size_t)c->image_size * c->image_size;
	struct vlm_items it = { .size = c->image_size, .mean = c->mean,
		.std = c->std, .alpha = c->image_alpha };
	int bad = 0;

	if (vlm_pairs_load(p, t->val_data, &t->csv) < 0)
		return -1;
	it.paths = p->paths;
	it.blobs = p->blobs;
	t->val_px = malloc(p->nimages * S3 * sizeof(float));
	t->val_ids = malloc((size_t)p->n * c->context * sizeof(int32_t));
	if (!t->val_px || !t->val_ids)
		return vlm_error("out of memory for the validation set");
	for (int i = 0; i < p->nimages; i++)
		if (vlm_items_image(&it, p->image_row[i], NULL, 0,
		    t->val_px + i * S3) < 0) {
			warnx("%s (validation image left blank)", vlm_errmsg());
			memset(t->val_px + i * S3, 0, S3 * sizeof(float));
			bad++;
		}
	for (int i = 0; i < p->n; i++)
		vlm_bpe_encode(&t->bpe, p->captions[i], t->val_ids +
		    (size_t)i * c->context, c->context);
	if (bad > t->max_bad * p->nimages)
		return vlm_error("'%s': %d of %d validation images are bad",
		    t->val_data, bad, p->nimages);
	return 0;
}

/* Unit embeddings of n items (images or texts) in encoder batches. */
static int
embed(struct train *t, int text, const void *in, int n, float *out)
{
	const struct vlm_config *c = &t->m.cfg;
	size_t item = text ? c->context * sizeof(int32_t) :
	    3 * (size_t)c->image_size * c->image_size * sizeof(float);
	struct vlm_encoder e;
	int rc = 0;

	if (vlm_encoder_init(&e, t->net, text, t->o.batch) < 0)
		return -1;
	for (int i = 0; rc == 0 && i < n; i += t->o.batch)
		rc = vlm_encode(&e, (const char *)in + item * i, n - i <
		    t->o.batch ? n - i : t->o.batch, out + (size_t)i *
		    c->embed_dim, 1);
	vlm_encoder_release(&e);
	return rc;
}

/* Retrieval recall on the validation set, into r (image then text). */
int
train_val(struct train *t, double r[2 * VLM_RECALL_NK])
{
	const struct vlm_pairs *p = &t->val;
	int D = t->m.cfg.embed_dim, rc = -1;
	float *img = malloc((size_t)p->nimages * D * sizeof(float));
	float *txt = malloc((size_t)p->n * D * sizeof(float));

	train_dist_val_experts(t, 1); /* experts split: every rank's */
	if (img && txt && embed(t, 0, t->val_px, p->nimages, img) == 0 &&
	    embed(t, 1, t->val_ids, p->n, txt) == 0)
		rc = vlm_metrics_retrieval(r, r + VLM_RECALL_NK, img,
		    p->nimages, txt, p->n, p->image_id, D);
	else if (!img || !txt)
		vlm_error("out of memory for the validation embeddings");
	train_dist_val_experts(t, 0);
	free(img);
	free(txt);
	train_dist_val_agree(t, rc, r, 2 * VLM_RECALL_NK);
	return rc;
}
