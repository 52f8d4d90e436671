/*
 * train/train.h - training: the AdamW optimizer, several data sources
 * and the adaptive sampler, learning-rate schedule and checkpoints.
 */
#ifndef VLM_LIBCORE_TRAIN_H
#define VLM_LIBCORE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "data/data.h"
#include "model/model.h"
#include "model/coca.h"

/* ---- optimizer (train/optim.c) ------------------------------------------- */

struct vlm_optim {
	float lr;            /* e.g. 5e-4 (the schedule passes its own) */
	float beta1, beta2;  /* e.g. 0.9, 0.98 */
	float eps;           /* e.g. 1e-6 */
	float wd;            /* e.g. 0.2, for parameters with decay set */
	float clip;          /* global gradient norm cap; 0: off */
	int64_t step;        /* steps taken */
	struct vlm_pack pack; /* the trained parameters: how the moments
	                       * and the gradient are laid out */
	float *m, *v;        /* moments (pack.n), one per trained float */
	const struct vlm_backend *be; /* VLM_BACKEND's, set by _init */
};

void vlm_optim_defaults(struct vlm_optim *o);
/* Moments for the parameters of m but those frozen[i] marks (NULL:
 * none): frozen ones have no moments and take no step. */
int vlm_optim_init(struct vlm_optim *o, const struct vlm_model *m,
    const uint8_t *frozen);
/* The same for rank q of P holding its share of the experts
 * (vlm_pack_init_shard): moments of what it holds. The norm to clip by
 * spans the ranks: vlm_optim_step does not clip such a gradient, the
 * caller clips it first (vlm_optim_sumsq, vlm_optim_clip_norm). */
int vlm_optim_init_shard(struct vlm_optim *o, const struct vlm_model *m,
    const uint8_t *frozen, int q, int P);
void vlm_optim_release(struct vlm_optim *o);
/* One AdamW step at learning rate lr; grad (o->pack.n) laid out as the
 * moments (vlm_run_pack with o->pack writes it so). Returns the
 * gradient norm before clipping (0 if clip is off). */
float vlm_optim_step(struct vlm_optim *o, struct vlm_model *m, float *grad,
    float lr);
/* A sharded gradient's (pack.lo set) sums of squares: of the whole
 * parameters' part (grad[0, pack.nrep), the same on every rank once
 * all-reduced) into *whole, of this rank's experts' into *experts; the
 * global norm is sqrt(whole + the ranks' experts summed). */
void vlm_optim_sumsq(const struct vlm_optim *o, const float *grad,
    double *whole, double *experts);
/* grad (pack.n) scaled by clip_grad_norm_'s factor o->clip / (norm +
 * 1e-6) when that is under 1, norm the global gradient norm; returns
 * norm. */
float vlm_optim_clip_norm(const struct vlm_optim *o, float *grad,
    double norm);

/* ---- data sources, the adaptive sampler (train/sampler.c) ---------------- */

/*
 * Several data sources: source s is items lo[s]..lo[s]+n[s]-1 (the
 * sources' items one after the other), walked epoch after epoch in the
 * order vlm_perm_shuffle(perm, n[s], vlm_item_seed(seed, -1, s), epoch),
 * item k of it with seed vlm_item_seed(that seed, epoch, k), each
 * source with its own cursor. The B examples of micro-batch m of step k
 * (1-based) come from the sources in order, count[s] from source s, by
 * systematic sampling: positions (u + j) / B, j < B, u uniform from
 * (seed, k, m), source s taking those in [P(s-1), P(s)), P the cumulative
 * probabilities: floor or ceil of B p[s], B p[s] on average.
 *
 * The probabilities: w, the weights normalised; adaptive:
 *     p[s] = (1 - eps) q[s] + eps / S,  q[s] ~ w[s] exp(L[s] / tau)
 * L[s] the exponential moving average (decay d) of source s's mean
 * per-example contrastive loss (vlm_run_row_loss) in the steps that drew
 * from it, starting at its first mean; a source not seen yet counts the
 * mean of those seen (q = w while none is). Hard sources (high loss) are
 * drawn more, none less than eps / S. Step k's batches use the losses
 * through step k - 2: its first batch is loaded while step k - 1 runs.
 */
#define VLM_SOURCES_MAX 64

struct vlm_source_state {
	int64_t epoch, pos;   /* next item: epoch, position in its order */
	double ema, ema_prev; /* L after the last step, the one before */
	int seen, seen_prev;  /* ema, ema_prev hold a value */
};

struct vlm_sampler_opts {
	int adaptive;     /* else p = w */
	double tau;       /* temperature, e.g. 1 */
	double decay;     /* d, e.g. 0.9 */
	double eps;       /* floor, e.g. 0.1 */
	uint64_t seed;
};

/* Opaque: its cursors, loss averages and permutations (train/sampler.c). */
struct vlm_sampler;

/* S sources of n[s] items, weights w (> 0; NULL: n); NULL with a
 * message on bad arguments or no memory. n[s] = -1: a stream (data/
 * stream.c), whose items vlm_sampler_plan leaves to the caller (index
 * -1) and whose cursor the caller keeps; weight 1 when w is NULL. */
struct vlm_sampler *vlm_sampler_new(int S, const int64_t *n,
    const double *w, const struct vlm_sampler_opts *o);
void vlm_sampler_free(struct vlm_sampler *s);
/* The last step whose losses vlm_sampler_update folded in (0: none). */
int64_t vlm_sampler_done(const struct vlm_sampler *s);
/* st (S) := each source's cursor and loss averages, for a checkpoint. */
void vlm_sampler_state(const struct vlm_sampler *s,
    struct vlm_source_state *st);
/* Go on from a checkpoint: the sources' states st (S) after step done. */
void vlm_sampler_restore(struct vlm_sampler *s,
    const struct vlm_source_state *st, int64_t done);
/* The rule above: p (S) from w (S, normalised), L and seen (S). */
void vlm_sampler_rule(int S, const double *w, const double *L,
    const int *seen, const struct vlm_sampler_opts *o, double *p);
/* p (S) for the batches of step (done + 1 or done + 2). */
void vlm_sampler_probs(const struct vlm_sampler *s, int64_t step,
    double *p);
/* count (S) summing to B, by systematic sampling of p. */
void vlm_sampler_counts(const double *p, int S, int B, uint64_t seed,
    int64_t step, int micro, int *count);
/* The B items of micro-batch micro of step, and each one's source src
 * (B); the sources' cursors move on. */
void vlm_sampler_plan(struct vlm_sampler *s, int64_t step, int micro,
    int B, struct vlm_feed *items, int *src);
/* Per-example losses (B) of a batch of the step in progress. */
void vlm_sampler_add(struct vlm_sampler *s, const int *src,
    const double *loss, int B);
/* Fold the step's mean loss per source into the averages. */
void vlm_sampler_update(struct vlm_sampler *s, int64_t step);

/* ---- training runs (train/train.c) --------------------------------------- */

struct vlm_train_opts {
	int batch;          /* examples per step, e.g. 128 */
	int64_t steps;      /* optimizer steps, e.g. 2000 */
	float lr;           /* peak learning rate, e.g. 5e-4 */
	int64_t warmup;     /* linear warmup steps, e.g. 100 */
	int cosine;         /* cosine decay to 0 after warmup */
};
/* OpenCLIP's schedule: warmup (step+1)/warmup, then cosine or constant. */
float vlm_lr_at(const struct vlm_train_opts *o, int64_t step);

/* What a checkpoint restores besides parameters and moments. */
struct vlm_train_state {
	int64_t step;             /* optimizer steps done */
	int64_t samples;          /* examples seen */
	struct vlm_cursor cursor; /* where the data stream goes on */
	struct vlm_rng rng;       /* router noise generator */
	uint64_t seed;
	int nsources;             /* several data sources: S; else 0 */
	struct vlm_source_state sources[VLM_SOURCES_MAX]; /* their cursors,
	                                                   * loss averages */
};
/* RUN/ckpt-<step>/ written atomically, RUN/latest pointed at it, all but
 * the newest `keep` removed (0: keep all). */
int vlm_ckpt_save(const char *run, const struct vlm_model *m,
    const struct vlm_optim *o, const struct vlm_train_state *s, int keep);
/* vlm_ckpt_save with the model file written by sv->save(sv->ctx, path)
 * (another kind of model, e.g. CoCa's; m is its parameter table). */
struct vlm_ckpt_saver {
	int (*save)(void *ctx, const char *path);
	void *ctx;
};
int vlm_ckpt_save_as(const char *run, const struct vlm_model *m,
    const struct vlm_optim *o, const struct vlm_train_state *s, int keep,
    const struct vlm_ckpt_saver *sv);
/* The steps of vlm_ckpt_save, for ranks that each write their shard
 * between them: RUN/.tmp-ckpt-<step> made (begin), its path (tmp), the
 * state written and the directory moved into place, latest after it
 * (commit); abandon: the directory removed after a failure, -1 with
 * the message and what latest still is. */
int vlm_ckpt_begin(const char *run, int64_t step);
void vlm_ckpt_tmp(const char *run, int64_t step, char *tmp /* [4096] */);
int vlm_ckpt_commit(const char *run, const struct vlm_train_state *s,
    int keep);
int vlm_ckpt_abandon(const char *run, int64_t step);
/* ckpt-shard.c: rank o->pack.q of o->pack.P writes its model and optim
 * shards (model-Q-of-P, optim-Q-of-P) into RUN/.tmp-ckpt-<step>,
 * fsynced; _load_shard: that rank's part of the model, and the state,
 * of RUN/latest; _load_optim_shard its moments (o laid out as saved). */
int vlm_ckpt_save_shard(const char *run, int64_t step,
    const struct vlm_model *m, const struct vlm_optim *o);
int vlm_ckpt_load_shard(const char *run, struct vlm_model *m,
    struct vlm_train_state *s, int q, int P);
int vlm_ckpt_load_optim_shard(const char *run, const struct vlm_model *m,
    struct vlm_optim *o);
/* The ranks RUN/latest is sharded over (0: one model file). */
int vlm_ckpt_shards(const char *run);
/* Remove what killed saves left and, keep > 0, checkpoints beyond the
 * newest `keep` up to step (vlm_ckpt_save does it after each save). */
int vlm_ckpt_prune(const char *run, int64_t step, int keep);
/* Model and state from RUN/latest. */
int vlm_ckpt_load(const char *run, struct vlm_model *m,
    struct vlm_train_state *s);
/* The state alone of RUN/latest (its model loaded by the caller). */
int vlm_ckpt_load_state(const char *run, struct vlm_train_state *s);
/* The moments of RUN/latest into o (vlm_optim_init'ed for m): those of
 * every parameter o trains, which the checkpoint must hold. */
int vlm_ckpt_load_optim(const char *run, const struct vlm_model *m,
    struct vlm_optim *o);

/* ---- CoCa training (train/coca.c) --------------------------------------- */

/* m := a parameter table of c's tensors (OpenCLIP's weight decay rule),
 * which move into m's slab (m->w, file order, the layout of
 * vlm_coca_grads_new); c reads and vlm_coca_save writes them there (a
 * LoRA-adapted weight: its base moves there, c keeps reading the merged
 * copy). The config holds only what the loader needs (image size,
 * context, normalisation). Release c before m. */
int vlm_coca_params(struct vlm_coca *c, struct vlm_model *m);
/* One AdamW step of CoCaLoss on B images (B,3,S,S) and texts (B,T): g
 * (vlm_coca_grads_new) zeroed and filled, packed into grad (o->pack.n)
 * for o (vlm_optim_init'ed on m), the loss into out; LoRA's merged
 * weights recomputed after it. */
int vlm_coca_step(struct vlm_coca *c, struct vlm_model *m,
    struct vlm_optim *o, float **g, float *grad, const float *imgs,
    const int32_t *ids, int B, float w_caption, float w_clip, float lr,
    struct vlm_coca_loss *out);
/* The validation CoCaLoss of n pairs: caption ids (n, T) and their
 * images px[image_id[i]] (3,S,S), in file order in batches of B (the last
 * one shorter): contrastive the batches' mean weighted by their sizes,
 * caption the mean CE over all non-pad labels (times the weights). */
int vlm_coca_val(const struct vlm_coca *c, const float *px,
    const int *image_id, const int32_t *ids, int n, int B, float w_caption,
    float w_clip, struct vlm_coca_loss *out);

#endif /* VLM_LIBCORE_TRAIN_H */
