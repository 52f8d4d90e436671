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
#include "base/base.h"

static int
is_model_file(const char *spec)
{
	size_t n = strlen(spec);

	return n > 12 && strcmp(spec + n - 12, ".safetensors") == 0;
}

/* Overrides on a model file may change routing, never parameters. */
static int
reconfig(struct vlm_model *m, const struct vlm_config *c, const char *path)
{
	if (vlm_model_reconfig(m, c) < 0)
		return vlm_error("'%s': --set: %s", path, vlm_errmsg());
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
		    reconfig(&t->m, &c, t->model);
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
		int v = t->vocab_size ? t->vocab_size : t->m.cfg.vocab, n, rc;
		char **caps = t->captions;
		if (t->shuffle_buffer && train_stream_captions(t, &caps,
		    &n) < 0)
			return -1;
		rc = vlm_bpe_train(&t->bpe, (const char *const *)caps,
		    t->shuffle_buffer ? n : t->nitems, v);
		if (t->shuffle_buffer)
			vlm_strs_free(caps, n);
		if (rc < 0)
			return -1;
	}
	if (t->bpe.nvocab > t->m.cfg.vocab)
		return vlm_error("tokenizer has %d tokens, the model's "
		    "vocabulary only %d", t->bpe.nvocab, t->m.cfg.vocab);
	return vlm_model_set_tokenizer(&t->m, &t->bpe);
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
