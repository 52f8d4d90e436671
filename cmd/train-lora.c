/*
 * train-lora.c - vlm-train with LoRA adapters (lora.rank > 0, Uni-MoE's
 * last stage): the model t->m holds the frozen base and the adapters
 * (what checkpoints save); the forward and backward run on t->net, a
 * plain view whose slab holds the merged weights W + s B A, refreshed
 * after every optimizer step. Every base parameter is frozen: no
 * moments, no gradient slab; the gradient of an adapted weight whose
 * adapters train lives only while the backward is in its block, which
 * folds it into the adapters' (vlm_run_fold, vlm_lora_fold). Without
 * adapters t->net is t->m and every hook here does nothing.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
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

/* The run's fold: adapted weight i's gradient dw (micro-batch
 * t->micro's) into its adapters'. */
static void
fold(void *ctx, int i, const float *dw)
{
	struct train *t = ctx;

	if (vlm_lora_fold(&t->m, i, dw, t->lgrad, &t->opt.pack, t->micro ?
	    1.0f : 0.0f) < 0)
		errx(1, "%s", vlm_errmsg());
}

/* The run's gradients (after vlm_optim_init): packed as the optimizer
 * lays them out; with adapters none in a slab: the weights whose
 * adapters train are folded into the adapters' gradients block by
 * block, the rest skipped (t->net's parameters are t->m's first ones). */
void
train_lora_pack(struct train *t)
{
	struct vlm_pack none;
	uint8_t *skip;
	int n = t->net->nparams;

	if (t->net == &t->m) {
		if (vlm_run_pack(t->run, t->net, &t->opt.pack) < 0)
			errx(1, "%s", vlm_errmsg());
		t->ngrad = t->opt.pack.n;
		return;
	}
	if (!(skip = malloc(n ? n : 1)) || !(t->lgrad = calloc(t->opt.pack.n ?
	    t->opt.pack.n : 1, sizeof(float))))
		err(1, NULL);
	memset(skip, 1, n);
	if (vlm_pack_init(&none, t->net, skip) < 0 ||
	    vlm_run_pack(t->run, t->net, &none) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_pack_release(&none);
	for (int i = 0; i < n; i++)
		skip[i] = adapted(t, i);
	if (vlm_run_fold(t->run, t->net, skip, fold, t) < 0)
		errx(1, "%s", vlm_errmsg());
	free(skip);
	t->ngrad = 0;
}

/* Before the optimizer step: the gradient it reads, t->grad, or with
 * adapters theirs, the mean of the micro-batches'. */
float *
train_lora_grad(struct train *t)
{
	if (t->net == &t->m)
		return t->grad;
	if (t->accum > 1)
		vlm_backend_host(vlm_run_backend(t->run))->scale(t->lgrad,
		    1.0f / t->accum, t->opt.pack.n);
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
	free(t->lgrad);
	t->lgrad = NULL;
	t->net = NULL;
}
