/*
 * train-setup.c - what vlm-train prepares before its first step: the
 * model (preset, config JSON or model file, with overrides), the
 * tokenizer (the model's, a file's, or one learnt from the captions of
 * every source) and the frozen towers. The data and the loader are
 * train-sources.c's.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>

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
		return train_lora_model(t, &c) < 0 ? -1 :
		    same_shapes(&t->m, &c, t->model);
	if (vlm_model_init(&t->m, &c) < 0)
		return -1;
	vlm_model_randomize(&t->m, t->seed);
	return 0;
}

/* The model's tokenizer, a vocabulary file's, or a new one. */
int
train_tokenizer(struct train *t)
{
	if (t->tokenizer && !t->resume) { /* a checkpoint has its own */
		if (vlm_bpe_load(&t->bpe, t->tokenizer) < 0)
			return -1;
	} else if (t->m.tokenizer) {
		return vlm_model_tokenizer(&t->m, &t->bpe);
	} else {
		int v = t->vocab_size ? t->vocab_size : t->m.cfg.vocab;
		if (vlm_bpe_train(&t->bpe, (const char *const *)
		    t->captions, t->nitems, v) < 0)
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
