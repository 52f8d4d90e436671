/*
 * embed-run.c - vlm-embed's work: the model as an encoder, a loader
 * decoding the inputs ahead on worker threads, and the loop that
 * embeds each batch and writes it at once (vectors and, if asked,
 * routing records), warning about and listing the inputs that failed.
 */
#include <err.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd.h"
#include "embed.h"
#include "kernels.h"

/* A JSON string of name; bytes of invalid UTF-8 become '?'. */
static json_t *
json_name(const char *name)
{
	json_t *j = json_string(name);
	char *s;

	if (j || !(s = strdup(name)))
		return j;
	for (char *p = s; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(s);
	free(s);
	return j;
}

/* The model, its tokenizer (texts) and an encoder over batches. */
int
embed_setup_model(struct embed *e)
{
	const struct vlm_config *c;
	char msg[1024];

	if (vlm_model_load_merged(&e->m, e->o.model) < 0)
		return -1;
	c = &e->m.cfg;
	if (e->o.text && vlm_model_tokenizer(&e->m, &e->bpe) < 0) {
		snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
		return vlm_error("'%s': %s", e->o.model, msg);
	}
	e->items = (struct vlm_items){ .size = c->image_size, .mean = c->mean,
	    .std = c->std, .alpha = c->image_alpha, .bpe = &e->bpe,
	    .ctx = c->context };
	if (e->o.alpha)
		e->items.alpha = e->o.alpha - 1;
	e->vec = malloc((size_t)e->o.batch * c->embed_dim * sizeof(float));
	e->ids = calloc(e->o.batch, sizeof(*e->ids));
	e->num = calloc(e->o.batch, sizeof(*e->num));
	e->failed = json_array();
	if (!e->vec || !e->ids || !e->num || !e->failed)
		return vlm_error("out of memory");
	if (vlm_encoder_init(&e->enc, &e->m, e->o.text, e->o.batch) < 0 ||
	    vlm_encoder_set_precision(&e->enc, e->o.precision) < 0)
		return -1;
	if (e->o.precision == VLM_PRECISION_BF16) /* only they are read */
		vlm_model_drop_f32(&e->m, e->o.text);
	return 0;
}

/* The loader over the inputs: a stream, decoded ahead by workers. */
static int
setup_loader(struct embed *e, char **paths, int npaths)
{
	const struct vlm_config *c = &e->m.cfg;
	struct vlm_loader_opts lo = { .n = -1, .batch = e->o.batch, .depth = 3,
	    .threads = e->o.threads ? e->o.threads : vlm_threads(),
	    .arg = &e->items, .next = embed_in_next, .next_arg = &e->in };

	if (e->o.text) {
		lo.text = vlm_items_text;
		lo.ctx = c->context;
	} else {
		lo.image = cmd_load_image;
		lo.image_floats = 3 * (int64_t)c->image_size * c->image_size;
	}
	/* shards: a ring of more samples than the depth batches held */
	if (embed_in_init(&e->in, e->o.text, paths, npaths,
	    (lo.depth + 1) * e->o.batch) < 0)
		return -1;
	e->in_ok = 1;
	if (e->in.wds) {  /* items by the stream's count, from the ring */
		e->items.samples = e->in.wds->samples;
		e->items.ring = e->in.wds->ring;
	}
	e->ld = vlm_loader_new(&lo);
	return e->ld ? 0 : -1;
}

/* The embeddings output, and the routes file when asked for. */
static int
setup_outputs(struct embed *e)
{
	json_t *meta = json_pack("{s:o,s:i,s:s,s:b,s:s}", "model",
	    json_name(e->o.model), "dim", e->m.cfg.embed_dim, "space",
	    e->o.text ? "text" : "image", "normalized", !e->o.raw, "device",
	    vlm_run_backend(e->enc.r)->name);
	char *s = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
	int rc;

	json_decref(meta);
	if (!s)
		return vlm_error("out of memory");
	rc = embed_out_open(&e->out, e->o.format, e->o.output, s,
	    e->m.cfg.embed_dim);
	free(s);
	if (rc < 0 || !e->o.routes)
		return rc;
	if (vlm_atomic_open(&e->ra, e->o.routes) < 0 ||
	    vlm_routes_writer_init(&e->rw, e->ra.f, e->o.routes, &e->m) < 0) {
		vlm_atomic_abort(&e->ra);
		embed_out_abort(&e->out);
		return -1;
	}
	e->routes = 1;
	return 0;
}

/* The loader over the inputs, the outputs; 0 or -1. */
int
embed_setup_io(struct embed *e, char **paths, int npaths)
{
	if (setup_loader(e, paths, npaths) < 0)
		return -1;
	return setup_outputs(e);
}

/* Warn about each failed input of a batch and list it for the end. */
static int
note_failures(struct embed *e, const struct vlm_batch *b)
{
	if (b->nerr > 0)
		embed_progress_clear(&e->prog);
	for (int k = 0; k < b->nerr; k++) {
		const struct vlm_item_error *x = &b->err[k];
		char num[24], *name = NULL;
		warnx("%s", x->msg);
		e->prog.n += x->index >= 0;  /* the total counts it */
		if (x->index < 0)
			name = embed_in_failed(&e->in);
		else if (e->o.text && !e->in.wds)
			snprintf(num, sizeof(num), "%lld",
			    (long long)x->index + 1);
		if (json_array_append_new(e->failed, json_name(x->index < 0 ?
		    (name ? name : "?") : e->o.text && !e->in.wds ? num : x->key)) < 0) {
			free(name);
			return vlm_error("out of memory");
		}
		free(name);
	}
	return 0;
}

/* Warn about and list the items whose vectors are not finite (an
 * overflow in the model); the others moved up. The count kept. */
static int
drop_nonfinite(struct embed *e, int n)
{
	int64_t E = e->m.cfg.embed_dim;
	int k = 0;

	for (int i = 0; i < n; i++) {
		const float *v = e->vec + i * E;
		int64_t j = 0;
		while (j < E && isfinite(v[j]))
			j++;
		if (j == E) {
			memmove(e->vec + k * E, v, E * sizeof(*v));
			e->ids[k++] = e->ids[i];
			continue;
		}
		embed_progress_clear(&e->prog);
		warnx("'%s': the embedding is not finite (NaN or infinity "
		    "from model '%s')", e->ids[i], e->o.model);
		if (json_array_append_new(e->failed, json_name(e->ids[i])) < 0)
			return vlm_error("out of memory");
	}
	return k;
}

/* Embed every batch the loader makes and write it out as it comes. */
int
embed_all(struct embed *e)
{
	const struct vlm_batch *b;
	int rc, k;

	while ((rc = vlm_loader_next(e->ld, &b)) > 0) {
		if (note_failures(e, b) < 0)
			return -1;
		if (b->n == 0)
			continue;
		for (int i = 0; i < b->n; i++) {
			snprintf(e->num[i], sizeof(*e->num), "%lld",
			    (long long)b->index[i] + 1);
			e->ids[i] = e->o.text && !e->in.wds ? e->num[i] :
			    b->key[i];
		}
		if (vlm_encode(&e->enc, e->o.text ? (const void *)b->tokens :
		    b->pixels, b->n, e->vec, !e->o.raw) < 0 ||
		    (e->routes && vlm_routes_write_batch(&e->rw, e->enc.r,
		    &e->m, e->o.text, e->ids, NULL, b->n) < 0) ||
		    (k = drop_nonfinite(e, b->n)) < 0 ||
		    embed_out_batch(&e->out, e->ids, e->vec, k) < 0)
			return -1;
		embed_progress_add(&e->prog, b->n);
	}
	return rc;
}

/* The end records, then everything into place; 0 or -1. */
int
embed_finish(struct embed *e)
{
	json_t *x = json_pack("{s:O}", "failed", e->failed);
	char *s = x ? json_dumps(x, JSON_COMPACT) : NULL;
	int rc;

	json_decref(x);
	if (!s)
		return vlm_error("out of memory");
	rc = embed_out_finish(&e->out, s);
	free(s);
	if (rc < 0)
		return -1;
	if (!e->routes)
		return 0;
	e->routes = 0;
	if (vlm_routes_writer_finish(&e->rw) < 0) {
		vlm_atomic_abort(&e->ra);
		return -1;
	}
	return vlm_atomic_commit(&e->ra);
}

void
embed_abort(struct embed *e)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
	vlm_loader_free(e->ld);
	e->ld = NULL;
	embed_out_abort(&e->out);
	if (e->routes) {
		vlm_routes_writer_release(&e->rw);
		vlm_atomic_abort(&e->ra);
		e->routes = 0;
	}
	vlm_error("%s", msg);  /* the reason stays the last message */
}

void
embed_release(struct embed *e)
{
	vlm_loader_free(e->ld);
	if (e->in_ok)
		embed_in_release(&e->in);
	vlm_encoder_release(&e->enc);
	if (e->bpe.t)
		vlm_bpe_release(&e->bpe);
	vlm_model_release(&e->m);
	json_decref(e->failed);
	free(e->vec);
	free(e->ids);
	free(e->num);
	memset(e, 0, sizeof(*e));
}
