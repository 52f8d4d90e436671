/* train.h - shared by cmd/vlm-train.c and its helpers cmd/train-*.c. */
#ifndef VLM_TRAIN_CMD_H
#define VLM_TRAIN_CMD_H

#include <stdio.h>

#include "vlm.h"

struct train {
	/* options */
	const char *data, *val_data, *model, *out, *resume, *tokenizer;
	char **sets;
	int nset;
	struct vlm_train_opts o;
	struct vlm_optim opt;
	struct vlm_pairs_opts csv;
	int64_t epochs, stop_at, log_every, save_every;
	int keep, threads, vocab_size, lock_image, lock_text;
	uint64_t seed;
	double max_bad;
	struct vlm_augment aug; /* RandomResizedCrop */
	/* state */
	struct vlm_model m;
	struct vlm_bpe bpe;
	struct vlm_pairs pairs, val;
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
};

/* cmd/train-setup.c */
int train_model(struct train *t);
int train_data(struct train *t);
int train_tokenizer(struct train *t);
int train_loader(struct train *t);
void train_freeze(struct train *t);
/* cmd/train-val.c */
int train_val_load(struct train *t);
int train_val(struct train *t, double r[2 * VLM_RECALL_NK]);
/* cmd/train-log.c; val NULL when no validation ran this step */
void train_log(struct train *t, const struct vlm_loss *L, float lr,
    double secs, double rate, const double *val);
void train_progress(const struct train *t, const struct vlm_loss *L,
    double rate);

#endif
