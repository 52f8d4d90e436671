/*
 * train-dump.c - VLM_GRAD_DUMP=DIR, a test hook: the gradient every
 * optimizer step is given (summed over the ranks; under
 * --expert-parallel with --grad-clip, already clipped) written as a
 * model file holding gradients, 0 for the parameters that get none
 * (frozen, or adapted by LoRA: its adapters' are there), in
 * DIR/grad-NNNNNNNN.safetensors for step N (from 1, as metrics.jsonl
 * counts) by one process or rank 0 of a data-parallel run; with the
 * experts sharded, every rank writes its shard into DIR/grad-NNNNNNNN/
 * (vlm-convert merge joins them). tests/cli-mpi.sh compares one
 * process's gradients with several ranks' with it, before AdamW, which
 * magnifies rounding where a gradient is near 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train.h"

/* Where to write step t->st.step + 1's gradient into path. */
static void
dump_path(struct train *t, const char *dir, char *path, size_t size)
{
	int P = train_dist_shards(t);
	char name[4096];

	snprintf(name, sizeof(name), "%s/grad-%08lld%s", dir,
	    (long long)t->st.step + 1, P > 1 ? "" : ".safetensors");
	if (P == 1) {
		snprintf(path, size, "%s", name);
		return;
	}
	if (mkdir(name, 0777) < 0 && errno != EEXIST) {
		snprintf(path, size, "VLM_GRAD_DUMP: '%s': %s", name,
		    strerror(errno));
		train_dist_fail(t, path);
	}
	vlm_shard_name(path, size, name, train_dist_rank(t), P);
}

/* The gradient g (as t->opt.pack lays it out) of the step about to be
 * taken, when VLM_GRAD_DUMP asks for it. */
void
train_dump_grad(struct train *t, const float *g)
{
	const struct vlm_pack *pk = &t->opt.pack;
	const char *dir = getenv("VLM_GRAD_DUMP");
	int P = train_dist_shards(t), q = train_dist_rank(t), rc;
	struct vlm_model gm = t->m;
	char path[4200];

	if (!dir || !*dir || (P == 1 && q != 0))
		return;
	if (!(gm.w = calloc(t->m.nfloats ? t->m.nfloats : 1, sizeof(float))))
		train_dist_fail(t, "out of memory");
	for (int i = 0; i < t->m.nparams; i++) {
		int64_t lo = pk->lo ? pk->lo[i] : 0;
		int64_t n = pk->len ? pk->len[i] : t->m.params[i].n;
		if (pk->off[i] >= 0)
			memcpy(gm.w + t->m.params[i].off + lo, g + pk->off[i],
			    n * sizeof(float));
	}
	dump_path(t, dir, path, sizeof(path));
	rc = P > 1 ? vlm_model_save_shard(&gm, path, q, P) :
	    vlm_model_save(&gm, path);
	free(gm.w);
	if (rc < 0)
		train_dist_fail(t, vlm_errmsg());
}
