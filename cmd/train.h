/* train.h - shared by cmd/vlm-train.c and its helpers cmd/train-*.c. */
#ifndef VLM_TRAIN_CMD_H
#define VLM_TRAIN_CMD_H

#include <stdio.h>

#include "text/text.h"
#include "data/data.h"
#include "model/model.h"
#include "train/train.h"
#include "eval/eval.h"

struct json_t;

/* One --data file: its pairs are items lo..lo+pairs.n-1 of the run's;
 * streamed, its samples come from stream instead. */
struct train_src {
	const char *path;
	struct vlm_pairs pairs;
	int64_t lo;
	int usable;            /* rows whose image can be read */
	struct vlm_stream *stream; /* --shuffle-buffer: its samples */
	int64_t nbad;          /* streamed: images that failed to decode */
	int64_t checked;       /* streamed: shards read at the last
	                        * --max-bad check */
};

/* A batch fed to the loader and not consumed yet (several sources). */
struct train_fed {
	int *src;              /* [B] each item's source */
	int64_t *epoch, *pos;  /* [S] the sources' cursors before it */
};

struct train {
	/* options */
	const char *data, *val_data, *model, *out, *resume, *tokenizer;
	const char *device;     /* --device, e.g. "cuda:0" */
	char **sets;
	int nset;
	struct vlm_train_opts o;
	struct vlm_optim opt;
	struct vlm_pairs_opts csv;
	int64_t epochs, stop_at, log_every, save_every;
	int keep, threads, vocab_size, lock_image, lock_text;
	int verbose;            /* -v: each metrics line also on stderr */
	uint64_t seed;
	double max_bad;
	struct vlm_augment aug; /* RandomResizedCrop */
	struct vlm_fusion_weights fw; /* a fusion model's ITC, ITM, MLM */
	const char *qa;         /* --qa: the answer classes file, or NULL */
	char **qa_names;        /* [qa_n] its lines */
	int qa_n;
	int32_t *qa_label;      /* [nitems] each item's answer class */
	int32_t *qa_batch;      /* [batch] a batch's */
	uint64_t given;         /* options on the command line, one bit each
	                         * (cmd/train-params.c) */
	struct json_t *params;  /* RUN/params.json read on --resume */
	/* data sources and steps (cmd/train-sources.c) */
	struct train_src *src; /* [nsrc] the --data files */
	int nsrc, accum;       /* accum: micro-batches per step, e.g. 1 */
	const char *weights;   /* --data-weights, e.g. "1,3" */
	int shuffle_buffer;    /* N: stream the sources; 0: indexed */
	int shard_order;       /* --no-shard-shuffle: shards as named */
	struct vlm_sample *samples; /* streamed: [nitems] a ring of the
	                             * batches fed, 3 batches of samples */
	int64_t nbatches;      /* streamed: batches fed */
	char **warned_bad;     /* streamed: bad samples reported once */
	int nwarned_bad;
	double *w;             /* [nsrc] its numbers, or NULL */
	struct vlm_sampler_opts so;
	/* state */
	struct vlm_model m;
	const struct vlm_model *net; /* what forward runs: &m or &lora_view */
	struct vlm_model lora_view;  /* LoRA: the merged weights */
	struct vlm_bpe bpe;
	struct vlm_pairs val;
	char **paths, **captions; /* [nitems] all sources' pairs, in order */
	struct vlm_blob *blobs;   /* [nitems] shard images (else file NULL) */
	int nitems;
	struct vlm_sampler *sampler; /* several sources */
	struct train_fed fed[3];    /* a ring of nfed from fed0 */
	int nfed, fed0, feed_micro;
	int64_t feed_step, last_step; /* next to feed; the run's last step */
	int64_t *step_count;        /* [nsrc] examples of each in the step */
	double *rowloss;            /* [batch] */
	struct vlm_feed *feed;      /* [batch] the batch being fed */
	float *gacc;                /* accum: a micro-batch's gradient */
	int64_t ngrad;              /* floats in grad and gacc: only the
	                             * gradients the run packs (frozen
	                             * parameters have none) */
	float *lgrad;               /* LoRA: the adapters' gradients, as
	                             * opt.pack lays them out */
	int micro;                  /* the micro-batch in the backward */
	float *val_px;         /* (nimages, 3, S, S) validation images */
	int32_t *val_ids;      /* (n, context) validation captions */
	int64_t val_every;
	struct vlm_items items;
	struct vlm_loader *loader;
	struct vlm_train_state st;
	struct vlm_run *run;
	float *grad;
	uint8_t *frozen;
	unsigned char *warned; /* one bit per pair: unreadable image reported */
	FILE *metrics;
	struct train_dist *dist; /* several ranks (cmd/train-dist.c), or NULL */
	int ep;                  /* --expert-parallel: ranks sharing experts */
	/* CoCa (cmd/train-coca.c) */
	float w_caption, w_clip; /* CoCaLoss weights, e.g. 2, 1 */
	const char *stage;       /* --stage connector|experts|lora, or NULL */
	struct vlm_coca *coca;   /* the model t->m is the table of */
	float **cgrad;           /* its per-tensor gradients */
};

/* cmd/vlm-train.c */
void train_lock_run(const char *run);
/* Free everything setup and training allocated (cmd/vlm-train.c). */
void train_teardown(struct train *t);
/* cmd/train-coca.c: a CoCa model file (or run); its whole run */
int train_is_coca(const struct train *t);
int train_coca(struct train *t);
/* cmd/train-setup.c */
int train_model(struct train *t);
int train_tokenizer(struct train *t);
void train_freeze(struct train *t);
/* cmd/train-sources.c */
void train_sources_check(struct train *t);
int train_data(struct train *t);
int train_loader(struct train *t);
int train_stream_captions(struct train *t, char ***caps, int *n);
const struct vlm_batch *train_next(struct train *t, const int **src);
void train_sources_loss(struct train *t, const int *src, int n);
void train_sources_step(struct train *t);
void train_sources_save(struct train *t);
int64_t train_epoch(const struct train *t);
void train_sources_log(struct train *t, struct json_t *o);
void train_sources_free(struct train *t);
/* cmd/train-params.c: RUN/params.json */
void train_params_given(struct train *t, const char *name);
void train_params_resume(struct train *t);
int train_params_save(const struct train *t);
void train_params_free(struct train *t);
/* cmd/train-val.c */
int train_val_load(struct train *t);
int train_val(struct train *t, double r[2 * VLM_RECALL_NK]);
/* cmd/train-log.c; val NULL when no validation ran this step */
void train_log(struct train *t, const struct vlm_loss *L, float lr,
    double secs, double rate, const double *val);
void train_progress(const struct train *t, const struct vlm_loss *L,
    double rate);
int train_log_resume(const struct train *t, const char *path);
/* cmd/train-dist.c: data parallel over MPI ranks; one process: plain */
void train_dist_init(struct train *t, int *argc, char ***argv);
int train_dist_rank(const struct train *t);
int train_dist_size(const struct train *t);
void train_dist_warn(struct train *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void train_dist_fail(struct train *t, const char *what)
    __attribute__((noreturn));
int train_dist_batch(const struct train *t);
struct vlm_run *train_dist_run(struct train *t);
int train_dist_shards(const struct train *t);
int train_dist_load(struct train *t);
int train_dist_optim_init(struct train *t);
void train_dist_save(struct train *t);
void train_dist_setup(struct train *t);
void train_dist_forward(struct train *t, const struct vlm_batch *b,
    struct vlm_loss *l, int micro);
int train_row_loss(struct train *t, double *loss);
void train_dist_backward(struct train *t, float *grad);
void train_dist_grads(struct train *t, float *grad, int64_t n);
int train_dist_signal(struct train *t, int sig);
void train_dist_agree(struct train *t, int rc);
void train_dist_val_experts(struct train *t, int all);
void train_dist_val_agree(struct train *t, int rc, const double *r, int n);
void train_dist_finish(struct train *t);
/* cmd/train-qa.c: --qa, question answering with a fusion model */
int train_qa_init(struct train *t);
const int32_t *train_qa_labels(struct train *t, const struct vlm_batch *b);
void train_qa_free(struct train *t);
/* cmd/train-lora.c: LoRA adapters; each a no-op for a plain model */
int train_lora_model(struct train *t, const struct vlm_config *c);
int train_lora_init(struct train *t);
void train_lora_freeze(struct train *t);
void train_lora_pack(struct train *t);
float *train_lora_grad(struct train *t);
void train_lora_sync(struct train *t);
void train_lora_free(struct train *t);
/* cmd/train-dump.c: VLM_GRAD_DUMP's gradient files (a test hook) */
void train_dump_grad(struct train *t, const float *g);

#endif
