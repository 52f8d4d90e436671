/*
 * eval-data.c - the inputs of the vlm-eval verbs: a model, embeddings
 * made by it (images through the batch loader, texts through the
 * model's tokenizer). Embedding images shows a count on stderr when it
 * is a terminal.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"
#include "text/text.h"
#include "kernels.h"

int eval_precision = VLM_PRECISION_FP32;
float *eval_stream_out[2];
int32_t *eval_stream_len;

/* Items' output rows (eval_stream_out[text]): j of the encoder's last
 * batch to row `at`. */
static void
keep_rows(const struct vlm_encoder *e, int text, int j, int64_t at)
{
	int rows, D;
	const float *x = vlm_run_stream(e->r, text, e->m->txt.nblocks, &rows,
	    &D);
	size_t n = (size_t)(rows / e->rows) * D;

	memcpy(eval_stream_out[text] + at * n, x + j * n, n * sizeof(float));
}

int
eval_model_load(struct vlm_model *m, const struct eval_common *o)
{
	cmd_device(eval_device);
	if (vlm_model_load_merged(m, o->model) == 0) {
		if (o->alpha)
			m->cfg.image_alpha = o->alpha - 1;
		return 0;
	}
	warnx("%s", vlm_errmsg());
	return -1;
}

/* Scatter the embeddings of one batch to their rows; warn its failures. */
static int64_t
take_batch(struct vlm_encoder *e, const struct vlm_batch *b, float *tmp,
    float *out, unsigned char *ok)
{
	int E = e->m->cfg.embed_dim;

	for (int k = 0; k < b->nerr; k++)
		warnx("%s", b->err[k].msg);
	if (b->n > 0 && vlm_encode(e, b->pixels, b->n, tmp, 1) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	for (int j = 0; j < b->n; j++) {
		memcpy(out + b->index[j] * E, tmp + (int64_t)j * E,
		    E * sizeof(*out));
		ok[b->index[j]] = 1;
		if (eval_stream_out[0])
			keep_rows(e, 0, j, b->index[j]);
	}
	return b->nerr;
}

int64_t
eval_embed_images(const struct vlm_model *m, char *const *paths,
    const struct vlm_blob *blobs, int64_t n, int batch, float *out,
    unsigned char *ok)
{
	const struct vlm_config *c = &m->cfg;
	struct vlm_items it = { .paths = paths, .blobs = blobs,
	    .size = c->image_size,
	    .mean = c->mean, .std = c->std, .alpha = c->image_alpha };
	struct vlm_loader_opts o = { .n = n, .batch = batch, .epochs = 1,
	    .on_fail = VLM_LOADER_SKIP, .arg = &it, .image = vlm_items_image,
	    .image_floats = 3 * (int64_t)c->image_size * c->image_size };
	struct vlm_encoder e;
	struct vlm_loader *l;
	const struct vlm_batch *b;
	float *tmp = malloc((size_t)batch * c->embed_dim * sizeof(*tmp));
	int64_t failed = 0, k = 0, done = 0;
	int rc = -1, tty = isatty(2);

	memset(ok, 0, n);
	memset(out, 0, (size_t)n * c->embed_dim * sizeof(*out));
	if (!tmp || vlm_encoder_init(&e, m, 0, batch) < 0) {
		warnx("%s", tmp ? vlm_errmsg() : "out of memory");
		free(tmp);
		return -1;
	}
	if (vlm_encoder_set_precision(&e, eval_precision) < 0) {
		warnx("%s", vlm_errmsg());
		vlm_encoder_release(&e);
		free(tmp);
		return -1;
	}
	if (!(l = vlm_loader_new(&o))) {
		warnx("%s", vlm_errmsg());
		vlm_encoder_release(&e);
		free(tmp);
		return -1;
	}
	while ((rc = vlm_loader_next(l, &b)) == 1) {
		if ((k = take_batch(&e, b, tmp, out, ok)) < 0)
			break;
		failed += k;
		done += b->n + b->nerr;
		if (tty)
			fprintf(stderr, "\r%lld/%lld images", (long long)done,
			    (long long)n);
	}
	if (tty)
		fputc('\n', stderr);
	if (rc < 0)
		warnx("%s", vlm_errmsg());
	vlm_loader_free(l);
	vlm_encoder_release(&e);
	free(tmp);
	return rc < 0 || k < 0 ? -1 : failed;
}

/* Position of the largest id (CLIP's EOT) of one text. */
static int
eot_of(const int32_t *tok, int ctx)
{
	int32_t p;

	vlm_eot_index(&p, tok, 1, ctx);
	return p;
}

int
eval_embed_texts(const struct vlm_model *m, const char *name,
    char *const *texts, int64_t n, int batch, float *out)
{
	int ctx = m->cfg.context, E = m->cfg.embed_dim, rc = 0;
	int32_t *tok = malloc((size_t)batch * ctx * sizeof(*tok));
	struct vlm_encoder e;
	struct vlm_bpe bpe;

	if (!tok)
		errx(1, "out of memory");
	if (vlm_model_tokenizer(m, &bpe) < 0) {
		warnx("'%s': %s", name, vlm_errmsg());
		free(tok);
		return -1;
	}
	if (vlm_encoder_init(&e, m, 1, batch) < 0 ||
	    vlm_encoder_set_precision(&e, eval_precision) < 0)
		rc = -1;
	for (int64_t i0 = 0; rc == 0 && i0 < n; i0 += batch) {
		int k = n - i0 < batch ? (int)(n - i0) : batch;
		for (int j = 0; j < k && rc == 0; j++)
			if (vlm_bpe_encode(&bpe, texts[i0 + j], tok +
			    (int64_t)j * ctx, ctx) < 0)
				rc = vlm_error("out of memory");
		if (rc == 0)
			rc = vlm_encode(&e, tok, k, out + i0 * E, 1);
		for (int j = 0; rc == 0 && eval_stream_out[1] && j < k; j++)
			keep_rows(&e, 1, j, i0 + j);
		if (rc == 0 && eval_stream_len) /* tokens up to the EOT */
			for (int j = 0; j < k; j++)
				eval_stream_len[i0 + j] = 1 + eot_of(tok +
				    (int64_t)j * ctx, ctx);
	}
	if (rc < 0)
		warnx("%s", vlm_errmsg());
	if (e.r)
		vlm_encoder_release(&e);
	vlm_bpe_release(&bpe);
	free(tok);
	return rc;
}

char **
eval_pairs_images(const struct vlm_pairs *p, struct vlm_blob **blobs)
{
	size_t n = p->nimages > 0 ? p->nimages : 1;
	char **paths = malloc(n * sizeof(*paths));
	struct vlm_blob *b = blobs && p->blobs ? malloc(n * sizeof(*b)) : NULL;

	if (!paths || (blobs && p->blobs && !b))
		errx(1, "out of memory");
	for (int i = 0; i < p->nimages; i++) {
		paths[i] = p->paths[p->image_row[i]];
		if (b)
			b[i] = p->blobs[p->image_row[i]];
	}
	if (blobs)
		*blobs = b;
	return paths;
}

int64_t
eval_embed_pairs(const struct vlm_model *m, const char *name,
    const struct vlm_pairs *p, int batch, float *img, unsigned char *ok,
    float *txt)
{
	struct vlm_blob *blobs;
	char **paths = eval_pairs_images(p, &blobs);
	int64_t bad;

	bad = eval_embed_images(m, paths, blobs, p->nimages, batch, img, ok);
	if (bad >= 0 && eval_embed_texts(m, name, p->captions, p->n, batch,
	    txt) < 0)
		bad = -1;
	free(paths);
	free(blobs);
	return bad;
}
