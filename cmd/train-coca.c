/*
 * train-coca.c - vlm-train on a CoCa model file (vlm-convert import of an
 * OpenCLIP CoCa checkpoint, or vlm-convert init coca-tiny): CoCaLoss
 * (--caption-weight, --clip-weight as OpenCLIP's), the CLIP run's AdamW,
 * schedule, pairs, loader, RUN/params.json and checkpoints; metrics.jsonl
 * logs the contrastive and caption losses apart. --stage trains one of
 * Uni-MoE's parts with the rest frozen (lora: adapters added first if the
 * model has none). --val-data: the validation CoCaLoss, logged at the
 * end and every --val-every steps. One data source, no accumulation or
 * devices.
 */
#include <err.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "train.h"
#include "base/base.h"

/* The model file a run starts or goes on from. */
static const char *
model_path(const struct train *t, char *buf, size_t n)
{
	if (!t->resume)
		return t->model;
	snprintf(buf, n, "%s/latest/model.safetensors", t->resume);
	return buf;
}

int
train_is_coca(const struct train *t)
{
	char buf[4200];
	const char *p = model_path(t, buf, sizeof(buf));
	size_t n = p ? strlen(p) : 0;

	return n > 12 && strcmp(p + n - 12, ".safetensors") == 0 &&
	    access(p, R_OK) == 0 && vlm_coca_is_checkpoint(p) == 1;
}

/* What a stage trains: the attentional pooler and the decoder's
 * cross-attention; the MoE experts and routers; the LoRA adapters. */
static int
stage_trains(const char *stage, const char *name)
{
	if (strcmp(stage, "connector") == 0)
		return strncmp(name, "visual.attn_pool.", 17) == 0 ||
		    strncmp(name, "text_decoder.cross_attn.", 24) == 0;
	if (strcmp(stage, "experts") == 0)
		return strstr(name, ".experts.") || strstr(name, ".router.");
	return strstr(name, ".lora_") != NULL;
}

/* frozen := --lock-image / --lock-text, then all --stage does not train. */
static void
freeze(struct train *t)
{
	int any = 0;

	train_freeze(t);
	for (int i = 0; t->stage && i < t->m.nparams; i++) {
		int on = stage_trains(t->stage, t->m.params[i].name);
		t->frozen[i] |= !on;
		any |= on;
	}
	if (t->stage && !any)
		errx(1, "'%s': --stage %s: the model has no such tensors%s",
		    t->model ? t->model : t->resume, t->stage,
		    strcmp(t->stage, "connector") ? " (vlm-convert upcycle "
		    "or lora it first)" : "");
}

static int
save_model(void *ctx, const char *path)
{
	struct train *t = ctx;

	return vlm_coca_save(t->coca, path, t->m.tokenizer);
}

/* Model, state, tokenizer, data, optimizer: fresh or from RUN/latest. */
/* --lora-rank, --lora-alpha (lora.rank=, lora.alpha= lines) and
 * --set aux.importance=W: the only --set lines a CoCa run takes. */
static void
lora_opts(const struct train *t, int *rank, double *alpha, float *aux)
{
	char *end;

	*rank = 8, *alpha = 0, *aux = 0;
	for (int i = 0; i < t->nset; i++)
		if (strncmp(t->sets[i], "lora.rank=", 10) == 0)
			*rank = atoi(t->sets[i] + 10);
		else if (strncmp(t->sets[i], "lora.alpha=", 11) == 0)
			*alpha = atof(t->sets[i] + 11);
		else if (strncmp(t->sets[i], "aux.importance=", 15) == 0) {
			*aux = strtof(t->sets[i] + 15, &end);
			if (*end || end == t->sets[i] + 15 || !(*aux >= 0))
				errx(2, "--set %s: not a weight >= 0",
				    t->sets[i]);
		} else
			errx(2, "CoCa training: --set %s: no --set keys but "
			    "--lora-rank, --lora-alpha and aux.importance",
			    t->sets[i]);
}

/* A fresh run: RUN made and locked, nothing trained in it yet. */
static void
new_run(struct train *t)
{
	char buf[4200];

	snprintf(buf, sizeof(buf), "%s/latest", t->out);
	if (mkdir(t->out, 0777) < 0 && access(t->out, W_OK) < 0)
		err(1, "%s", t->out);
	train_lock_run(t->out);
	if (access(buf, F_OK) == 0)
		errx(1, "'%s' holds checkpoints of a run already: --resume it, "
		    "or choose another --out", t->out);
}

/* The model: --stage lora on one without adapters gets them first
 * (RUN/lora-init.safetensors, the same function), rank --lora-rank. */
static void
load_model(struct train *t, struct vlm_coca *c, const char *path)
{
	char buf[4200];
	double alpha;
	float aux;
	int rank;

	lora_opts(t, &rank, &alpha, &aux);
	if (vlm_coca_load(c, path, NULL) < 0)
		errx(1, "%s", vlm_errmsg());
	c->aux_importance = aux;
	if (aux > 0 && !c->Ed)
		errx(2, "'%s': --set aux.importance: the decoder has no "
		    "experts", path);
	if (!t->stage || strcmp(t->stage, "lora") || c->nlora)
		return;
	snprintf(buf, sizeof(buf), "%s/lora-init.safetensors", t->out);
	if (vlm_coca_add_lora(c, buf, rank, alpha, t->seed,
	    vlm_coca_merges(c)) < 0)
		errx(1, "'%s': %s", path, vlm_errmsg());
	vlm_coca_release(c);
	if (vlm_coca_load(c, buf, NULL) < 0)
		errx(1, "%s", vlm_errmsg());
	c->aux_importance = aux;
}

static void
setup(struct train *t, struct vlm_coca *c)
{
	char buf[4200];
	const char *path = model_path(t, buf, sizeof(buf));

	if (t->nsrc > 1 || t->accum > 1 || t->ep || t->dist)
		errx(2, "CoCa training: one --data, no --accum-freq or "
		    "--expert-parallel");
	if (t->resume)
		train_lock_run(t->resume);
	else
		new_run(t);
	load_model(t, c, path);
	if (vlm_coca_params(c, &t->m) < 0 || (t->resume &&
	    (vlm_ckpt_load_state(t->resume, &t->st) < 0 ||
	    vlm_ckpt_prune(t->resume, t->st.step, t->keep) < 0)))
		errx(1, "%s", vlm_errmsg());
	t->coca = c;
	if (t->resume)
		t->seed = t->st.seed;
	else
		t->st.seed = t->seed;
	if (train_data(t) < 0)
		errx(1, "%s", vlm_errmsg());
	/* the run's tokenizer, the model's, or one learnt from the
	 * captions with the model's vocabulary at most */
	if (t->tokenizer && !t->resume ? vlm_bpe_load(&t->bpe, t->tokenizer)
	    < 0 : vlm_coca_merges(c) ? vlm_bpe_from_merges(&t->bpe,
	    vlm_coca_merges(c)) < 0 : vlm_bpe_train(&t->bpe, (const char
	    *const *)t->captions, t->nitems, t->vocab_size ? t->vocab_size :
	    c->V) < 0)
		errx(1, "%s", vlm_errmsg());
	if (t->bpe.nvocab > c->V)
		errx(1, "tokenizer has %d tokens, the model's vocabulary only "
		    "%d", t->bpe.nvocab, c->V);
	c->sot = t->bpe.sot, c->eot = t->bpe.eot;
	if (t->val_data && train_val_load(t) < 0)
		errx(1, "%s", vlm_errmsg());
	if (!(t->m.tokenizer = vlm_bpe_merges_alloc(&t->bpe)) ||
	    !(t->frozen = calloc(t->m.nparams, 1)))
		err(1, NULL);
	if (t->epochs)
		t->o.steps = t->epochs * (t->nitems / t->o.batch);
	freeze(t);
	if (vlm_optim_init(&t->opt, &t->m, t->frozen) < 0 || (t->resume &&
	    vlm_ckpt_load_optim(t->resume, &t->m, &t->opt) < 0) ||
	    train_loader(t) < 0)
		errx(1, "%s", vlm_errmsg());
	if (!(t->grad = malloc((t->opt.pack.n ? t->opt.pack.n : 1) *
	    sizeof(float))) || !(t->cgrad = vlm_coca_grads_new(c)))
		err(1, NULL);
}

static void
checkpoint(struct train *t)
{
	struct vlm_ckpt_saver sv = { save_model, t };

	vlm_loader_cursor(t->loader, &t->st.cursor);
	train_sources_save(t);
	if (vlm_ckpt_save_as(t->out, &t->m, &t->opt, &t->st, t->keep, &sv) <
	    0)
		errx(1, "%s", vlm_errmsg());
}

/* A metrics.jsonl line: the weighted losses, as CoCaLoss returns them,
 * the decoder routers' aux loss when on, the validation losses (V) when
 * computed this step. */
static void
log_line(struct train *t, const struct vlm_coca_loss *L, float lr,
    double secs, double rate, const struct vlm_coca_loss *V)
{
	json_t *o = json_pack("{sIsIsIsfsfsfsfsfsfsf}", "step",
	    (json_int_t)t->st.step, "epoch", (json_int_t)train_epoch(t),
	    "samples", (json_int_t)t->st.samples, "lr", (double)lr, "loss",
	    (double)L->total, "contrastive", (double)L->contrastive,
	    "caption", (double)L->caption, "logit_scale",
	    (double)expf(t->m.w[t->m.logit_scale]), "seconds", secs,
	    "images_per_s", rate);

	if (o && t->coca->aux_importance > 0)
		json_object_set_new(o, "aux", json_real(L->aux));
	if (o && V) {
		json_object_set_new(o, "val_loss", json_real(V->total));
		json_object_set_new(o, "val_contrastive",
		    json_real(V->contrastive));
		json_object_set_new(o, "val_caption", json_real(V->caption));
	}
	if (t->verbose)
		fprintf(stderr, "step %lld loss %.4f contrastive %.4f caption "
		    "%.4f\n", (long long)t->st.step, L->total, L->contrastive,
		    L->caption);
	if (!o || json_dumpf(o, t->metrics, JSON_COMPACT |
	    JSON_REAL_PRECISION(7)) < 0 || fputc('\n', t->metrics) == EOF ||
	    fflush(t->metrics) != 0)
		err(1, "%s/metrics.jsonl", t->out);
	json_decref(o);
}

int
train_coca(struct train *t)
{
	struct vlm_coca c;
	struct vlm_coca_loss L, V;
	char path[4200];
	double t0, last;
	int64_t first, saved;
	int end, val;

	setup(t, &c);
	snprintf(path, sizeof(path), "%s/metrics.jsonl", t->out);
	if (train_params_save(t) < 0 || (t->resume && train_log_resume(t,
	    path) < 0))
		errx(1, "%s", vlm_errmsg());
	if (!(t->metrics = fopen(path, "a")))
		err(1, "%s", path);
	t0 = last = vlm_now();
	first = saved = t->st.step;
	while (t->st.step < t->o.steps && (!t->stop_at || t->st.step <
	    t->stop_at)) {
		const int *src;
		const struct vlm_batch *b = train_next(t, &src);
		float lr = vlm_lr_at(&t->o, t->st.step);
		if (vlm_coca_step(&c, &t->m, &t->opt, t->cgrad, t->grad,
		    b->pixels, b->tokens, b->n, t->w_caption, t->w_clip, lr,
		    &L) < 0)
			errx(1, "%s", vlm_errmsg());
		if (!isfinite(L.total))
			errx(1, "non-finite loss at step %lld; nothing saved "
			    "over the last checkpoint",
			    (long long)t->st.step + 1);
		t->st.step++;
		t->st.samples += t->o.batch;
		end = t->st.step == t->o.steps || t->st.step == t->stop_at;
		val = t->val_data && (end || (t->val_every && t->st.step %
		    t->val_every == 0));
		if (val && vlm_coca_val(&c, t->val_px, t->val.image_id,
		    t->val_ids, t->val.n, t->o.batch, t->w_caption, t->w_clip,
		    &V) < 0)
			errx(1, "%s: %s", t->val_data, vlm_errmsg());
		if (t->st.step % t->log_every == 0 || end || val) {
			log_line(t, &L, lr, vlm_now() - last, (t->st.step -
			    first) * (double)t->o.batch / (vlm_now() - t0),
			    val ? &V : NULL);
			last = vlm_now();
		}
		if (t->save_every && t->st.step % t->save_every == 0) {
			checkpoint(t);
			saved = t->st.step;
		}
	}
	if (t->st.step != saved)
		checkpoint(t);
	if (fclose(t->metrics) != 0)
		err(1, "%s", path);
	vlm_coca_grads_free(&c, t->cgrad);
	vlm_coca_release(&c);
	train_teardown(t);
	return cmd_finish(0);
}
