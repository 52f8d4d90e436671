/*
 * train-setup.c - what vlm-train prepares before its first step: the
 * model (preset, config JSON or model file, with overrides), the data
 * (pairs file, bad rows reported once, missing images counted), the
 * tokenizer (the model's, a file's, or one learnt from the captions)
 * and the threaded loader.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "train.h"

static int
is_model_file(const char *spec)
{
	size_t n = strlen(spec);

	return n > 12 && strcmp(spec + n - 12, ".safetensors") == 0;
}

/* Overrides on a model file may change routing, never parameters. */
static int
same_shapes(struct vlm_model *m, const struct vlm_config *c,
    const char *path)
{
	struct vlm_model twin;
	int same;

	if (vlm_model_init(&twin, c) < 0)
		return -1;
	same = twin.nparams == m->nparams;
	for (int i = 0; same && i < m->nparams; i++)
		same = strcmp(twin.params[i].name, m->params[i].name) == 0 &&
		    memcmp(twin.params[i].shape, m->params[i].shape,
		    sizeof(m->params[i].shape)) == 0;
	vlm_model_release(&twin);
	if (!same)
		return vlm_error("'%s': --set would change the model's "
		    "parameters; only routing and loss settings can change "
		    "when fine-tuning", path);
	m->cfg = *c;
	return 0;
}

int
train_model(struct train *t)
{
	struct vlm_config c;

	if (is_model_file(t->model)) { /* fine-tuning */
		if (vlm_model_load(&t->m, t->model) < 0)
			return -1;
		c = t->m.cfg;
	} else if (cmd_config(&c, t->model) < 0) {
		return -1;
	}
	for (int i = 0; i < t->nset; i++)
		if (vlm_config_set(&c, t->sets[i]) < 0)
			return -1;
	if (vlm_config_check(&c) < 0)
		return -1;
	if (is_model_file(t->model))
		return same_shapes(&t->m, &c, t->model);
	if (vlm_model_init(&t->m, &c) < 0)
		return -1;
	vlm_model_randomize(&t->m, t->seed);
	return 0;
}

/* Pairs with bad rows and missing images reported; too many: failure. */
int
train_data(struct train *t)
{
	struct vlm_pairs *p = &t->pairs;
	int missing = 0, total;

	if (vlm_pairs_load(p, t->data, &t->csv) < 0)
		return -1;
	for (int i = 0; i < p->nbadmsg; i++)
		warnx("%s", p->bad[i]);
	for (int i = 0; i < p->n; i++)
		if (access(p->paths[i], R_OK) < 0) {
			warnx("%s:%d: cannot read image '%s'", t->data,
			    p->line[i], p->paths[i]);
			missing++;
		}
	total = p->n + p->nbad;
	if (total == 0 || p->n - missing < t->o.batch)
		return vlm_error("'%s': %d usable pairs, fewer than a batch "
		    "(%d)", t->data, p->n - missing, t->o.batch);
	if (p->nbad + missing > t->max_bad * total)
		return vlm_error("'%s': %d of %d rows are bad, more than "
		    "--max-bad %.3g allows", t->data, p->nbad + missing, total,
		    t->max_bad);
	return 0;
}

/* The model's tokenizer, a vocabulary file's, or a new one. */
int
train_tokenizer(struct train *t)
{
	if (t->tokenizer) {
		if (vlm_bpe_load(&t->bpe, t->tokenizer) < 0)
			return -1;
	} else if (t->m.tokenizer) {
		return vlm_model_tokenizer(&t->m, &t->bpe);
	} else {
		int v = t->vocab_size ? t->vocab_size : t->m.cfg.vocab;
		if (vlm_bpe_train(&t->bpe, (const char *const *)
		    t->pairs.captions, t->pairs.n, v) < 0)
			return -1;
	}
	if (t->bpe.nvocab > t->m.cfg.vocab)
		return vlm_error("tokenizer has %d tokens, the model's "
		    "vocabulary only %d", t->bpe.nvocab, t->m.cfg.vocab);
	free(t->m.tokenizer);
	if (!(t->m.tokenizer = vlm_bpe_merges_alloc(&t->bpe)))
		return vlm_error("out of memory");
	return 0;
}

int
train_loader(struct train *t)
{
	const struct vlm_config *c = &t->m.cfg;
	struct vlm_loader_opts lo = { 0 };

	t->items = (struct vlm_items){ .paths = t->pairs.paths,
		.captions = t->pairs.captions, .size = c->image_size,
		.mean = c->mean, .std = c->std, .train = 1, .augment = &t->aug,
		.alpha = c->image_alpha, .bpe = &t->bpe, .ctx = c->context };
	lo.n = t->pairs.n;
	lo.batch = t->o.batch;
	lo.threads = t->threads;
	lo.seed = t->seed;
	lo.shuffle = 1;
	lo.drop_last = 1;
	lo.on_fail = VLM_LOADER_REPLACE;
	lo.start = t->st.cursor;
	lo.image_floats = 3 * (int64_t)c->image_size * c->image_size;
	lo.ctx = c->context;
	lo.arg = &t->items;
	lo.image = vlm_items_image;
	lo.text = vlm_items_text;
	t->loader = vlm_loader_new(&lo);
	return t->loader ? 0 : -1;
}

/* LiT-style locking: every parameter of a tower is frozen. */
void
train_freeze(struct train *t)
{
	for (int i = 0; i < t->m.nparams; i++) {
		const char *n = t->m.params[i].name;
		int vis = strncmp(n, "visual.", 7) == 0;
		t->frozen[i] = (vis && t->lock_image) ||
		    (!vis && strcmp(n, "logit_scale") != 0 && t->lock_text);
	}
}
