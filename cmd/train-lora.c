/*
 * train-lora.c - vlm-train with LoRA adapters (lora.rank > 0, Uni-MoE's
 * last stage): the model t->m holds the frozen base and the adapters
 * (what checkpoints save); the forward and backward run on t->net, a
 * plain view whose slab holds the merged weights W + s B A, refreshed
 * after every optimizer step. The gradient with respect to the merged
 * weights becomes the adapters' (vlm_lora_grad), and every base
 * parameter is frozen. Without adapters t->net is t->m and every hook
 * here does nothing.
 */
#include <err.h>
#include <stdlib.h>

#include "train.h"

/* A model file fine-tuned with --lora-rank: add the adapters of c. */
int
train_lora_model(struct train *t, const struct vlm_config *c)
{
	if (c->lora.rank == 0 || t->m.cfg.lora.rank > 0)
		return 0; /* none asked, or the file has them: reconfig */
	return vlm_lora_add(&t->m, c, t->seed);
}

/* t->net: the model itself, or the merged view of its adapters. */
int
train_lora_init(struct train *t)
{
	t->net = &t->m;
	if (t->m.cfg.lora.rank == 0)
		return 0;
	if (vlm_lora_view_init(&t->lora_view, &t->m) < 0)
		return -1;
	t->net = &t->lora_view;
	return 0;
}

/* Every base parameter frozen (on top of --lock-image/--lock-text);
 * then the run skips the gradients nobody reads: the frozen ones, but
 * for the adapted weights (vlm_lora_grad turns theirs into the
 * adapters'). t->net's parameters are t->m's first ones. */
void
train_lora_freeze(struct train *t)
{
	int lora = t->m.cfg.lora.rank > 0, n = t->net->nparams;
	uint8_t *nograd;

	for (int i = 0; lora && i < vlm_lora_first(&t->m); i++)
		t->frozen[i] = 1;
	if (!(nograd = malloc(n ? n : 1)))
		err(1, NULL);
	for (int i = 0; i < n; i++)
		nograd[i] = t->frozen[i] && !(lora &&
		    vlm_lora_target(&t->m.cfg, t->net->params[i].name));
	if (vlm_run_freeze(t->run, t->net, nograd) < 0)
		errx(1, "%s", vlm_errmsg());
	free(nograd);
}

/* Before the optimizer step: t->grad (merged weights) -> adapters'. */
void
train_lora_grad(struct train *t)
{
	if (t->m.cfg.lora.rank > 0)
		vlm_lora_grad(&t->m, t->grad);
}

/* After it: the view's weights from the updated adapters. */
void
train_lora_sync(struct train *t)
{
	if (t->m.cfg.lora.rank > 0)
		vlm_lora_merge_into(&t->m, t->lora_view.w);
}

void
train_lora_free(struct train *t)
{
	if (t->net == &t->lora_view)
		vlm_lora_view_release(&t->lora_view);
	t->net = NULL;
}
