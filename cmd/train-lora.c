/*
 * train-lora.c - vlm-train with LoRA adapters (lora.rank > 0, Uni-MoE's
 * last stage): the model t->m holds the frozen base and the adapters
 * (what checkpoints save); the forward and backward run on t->net, a
 * plain view whose slab holds the merged weights W + s B A, refreshed
 * after every optimizer step. The gradient with respect to the merged
 * weights becomes the adapters' (vlm_lora_grad_packed), and every base
 * parameter is frozen: it has no moments, and only the adapted weights
 * whose adapters train get a gradient. Without adapters t->net is t->m
 * and every hook here does nothing.
 */
#include <err.h>
#include <stdlib.h>

#include "train.h"
#include "base/base.h"

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

/* Every base parameter frozen (on top of --lock-image/--lock-text). */
void
train_lora_freeze(struct train *t)
{
	for (int i = 0; t->net != &t->m && i < vlm_lora_first(&t->m); i++)
		t->frozen[i] = 1;
}

/* Is parameter i of t->net an adapted weight whose adapters train? */
static int
adapted(const struct train *t, int i)
{
	char name[112];
	const struct vlm_param *a;

	if (!vlm_lora_target(&t->m.cfg, t->net->params[i].name))
		return 0;
	snprintf(name, sizeof(name), "%s.lora_A", t->net->params[i].name);
	a = vlm_model_param(&t->m, name);
	return a && !t->frozen[a - t->m.params];
}

/* The run's gradients, packed (after vlm_optim_init): the optimizer's
 * layout, or with adapters only the dW of the weights whose adapters
 * train (vlm_lora_grad_packed turns them into the adapters'); the run
 * skips the rest (t->net's parameters are t->m's first ones). */
void
train_lora_pack(struct train *t)
{
	const struct vlm_pack *p = &t->opt.pack;
	uint8_t *skip;
	int n = t->net->nparams;

	if (t->net != &t->m) {
		if (!(skip = malloc(n ? n : 1)))
			err(1, NULL);
		for (int i = 0; i < n; i++)
			skip[i] = !adapted(t, i);
		if (vlm_pack_init(&t->lpack, t->net, skip) < 0)
			errx(1, "%s", vlm_errmsg());
		free(skip);
		p = &t->lpack;
		if (!(t->lgrad = malloc((t->opt.pack.n ? t->opt.pack.n : 1) *
		    sizeof(float))))
			err(1, NULL);
	}
	if (vlm_run_pack(t->run, t->net, p) < 0)
		errx(1, "%s", vlm_errmsg());
	t->ngrad = p->n;
}

/* Before the optimizer step: the gradient it reads, t->grad, or with
 * adapters theirs from t->grad (the merged weights'). */
float *
train_lora_grad(struct train *t)
{
	if (t->net == &t->m)
		return t->grad;
	if (vlm_lora_grad_packed(&t->m, t->grad, &t->lpack, t->lgrad,
	    &t->opt.pack) < 0)
		errx(1, "%s", vlm_errmsg());
	return t->lgrad;
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
	vlm_pack_release(&t->lpack);
	free(t->lgrad);
	t->lgrad = NULL;
	t->net = NULL;
}
