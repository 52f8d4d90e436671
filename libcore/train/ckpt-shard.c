/*
 * ckpt-shard.c - checkpoints of a run whose experts are sharded over P
 * ranks (vlm-train --expert-parallel P): RUN/ckpt-NNNNNNNN/ holds
 * model-QQQQQ-of-PPPPP.safetensors (model/shard.c) and
 * optim-QQQQQ-of-PPPPP.safetensors from every rank q, and state.json.
 * An optim shard holds rank q's moments as two flat tensors adamw.m and
 * adamw.v laid out as its pack (the whole parameters, the same on every
 * rank, then its experts' part), metadata adamw.step, adamw.shard
 * ("q/P") and adamw.params (the parameters covered, in pack order).
 * Each file is written atomically and fsynced; rank 0 makes the
 * directory before and moves latest after every rank has written
 * (cmd/train-dist.c waits between the steps).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats.h"
#include "kernels.h"
#include "train/train.h"

static void
optim_name(char *buf, size_t size, const char *dir, int q, int P)
{
	snprintf(buf, size, "%s/optim-%05d-of-%05d.safetensors", dir, q, P);
}

/* The names of the parameters o's pack covers, in pack order. */
static char *
pack_list(const struct vlm_model *m, const struct vlm_optim *o)
{
	size_t len = 1;
	char *list;

	for (int i = 0; i < m->nparams; i++)
		len += strlen(m->params[i].name) + 1;
	if (!(list = malloc(len))) {
		vlm_error("out of memory");
		return NULL;
	}
	list[0] = '\0';
	for (int64_t at = 0; at < o->pack.n;) { /* the parameter at `at` */
		int i = 0;
		while (i < m->nparams && o->pack.off[i] != at)
			i++;
		if (i == m->nparams)
			break; /* not reached: the pack is contiguous */
		strcat(strcat(list, *list ? "," : ""), m->params[i].name);
		at += o->pack.len ? o->pack.len[i] : m->params[i].n;
	}
	return list;
}

int
vlm_ckpt_save_shard(const char *run, int64_t step,
    const struct vlm_model *m, const struct vlm_optim *o)
{
	const char *names[2] = { "adamw.m", "adamw.v" };
	const char *keys[3] = { "adamw.step", "adamw.shard", "adamw.params" };
	char tmp[4096], f[4400], st[32], sh[32], *list;
	const char *vals[3] = { st, sh, NULL };
	struct vlm_tensor t[2] = {
		{ VLM_DTYPE_F32, 1, { o->pack.n }, o->m },
		{ VLM_DTYPE_F32, 1, { o->pack.n }, o->v },
	};
	int q = o->pack.q, P = o->pack.P, rc;

	vlm_ckpt_tmp(run, step, tmp);
	vlm_shard_name(f, sizeof(f), tmp, q, P);
	if (vlm_model_save_shard(m, f, q, P) < 0)
		return -1;
	vlm_crash_point("ckpt-model");
	if (!(list = pack_list(m, o)))
		return -1;
	snprintf(st, sizeof(st), "%lld", (long long)o->step);
	snprintf(sh, sizeof(sh), "%d/%d", q, P);
	vals[2] = list;
	optim_name(f, sizeof(f), tmp, q, P);
	rc = vlm_st_save(f, names, t, 2, keys, vals, 3);
	free(list);
	if (rc == 0)
		vlm_crash_point("ckpt-optim");
	return rc;
}

int
vlm_ckpt_shards(const char *run)
{
	char f[4200];

	snprintf(f, sizeof(f), "%s/latest", run);
	return vlm_shard_count(f);
}

int
vlm_ckpt_load_shard(const char *run, struct vlm_model *m,
    struct vlm_train_state *s, int q, int P)
{
	char f[4200];
	int have = vlm_ckpt_shards(run);

	if (have != P)
		return vlm_error("'%s': its checkpoint is %s, not sharded over "
		    "%d ranks: resume it with the layout it was saved with",
		    run, have ? "sharded otherwise" : "one model file", P);
	if (vlm_ckpt_load_state(run, s) < 0)
		return -1;
	snprintf(f, sizeof(f), "%s/latest", run);
	return vlm_model_load_shards(m, f, P, q);
}

int
vlm_ckpt_load_optim_shard(const char *run, const struct vlm_model *m,
    struct vlm_optim *o)
{
	char f[4400], dir[4200], want[32], *list;
	const struct vlm_tensor *tm, *tv;
	const char *step, *sh, *params;
	struct vlm_st st;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/latest", run);
	optim_name(f, sizeof(f), dir, o->pack.q, o->pack.P);
	snprintf(want, sizeof(want), "%d/%d", o->pack.q, o->pack.P);
	if (!(list = pack_list(m, o)))
		return -1;
	if (vlm_st_load(&st, f) < 0) {
		free(list);
		return -1;
	}
	tm = vlm_st_get(&st, "adamw.m");
	tv = vlm_st_get(&st, "adamw.v");
	step = vlm_st_meta(&st, "adamw.step");
	sh = vlm_st_meta(&st, "adamw.shard");
	params = vlm_st_meta(&st, "adamw.params");
	if (!tm || !tv || !step || !sh || !params || strcmp(sh, want) ||
	    strcmp(params, list) || tm->dtype != VLM_DTYPE_F32 ||
	    tv->dtype != VLM_DTYPE_F32 || vlm_tensor_numel(tm) != o->pack.n ||
	    vlm_tensor_numel(tv) != o->pack.n)
		rc = vlm_error("'%s': optimizer state does not fit shard %s of "
		    "the run (trained parameters changed?)", f, want);
	if (rc == 0) {
		o->be->upload(o->m, tm->data, o->pack.n * sizeof(float));
		o->be->upload(o->v, tv->data, o->pack.n * sizeof(float));
		o->step = strtoll(step, NULL, 10);
	}
	vlm_st_release(&st);
	free(list);
	return rc;
}
