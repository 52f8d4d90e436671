/*
 * shard.c - a model's experts split over P ranks (expert parallel that
 * saves memory): rank q holds experts q*E/P .. (q+1)*E/P - 1 of every
 * expert-stacked parameter (moe.experts.*, (E, ...)) and every other
 * parameter whole. The slab keeps its layout (offsets stay valid); the
 * other ranks' experts are never touched (a mapped file's pages never
 * read, a fresh slab's pages let go), the gradient and moment slabs pack
 * only what the rank holds, and a checkpoint is one file per rank:
 * model-QQQQQ-of-PPPPP.safetensors, rank 0's with the config, the
 * tokenizer and every whole parameter, each with its experts' rows of
 * the stacked ones under their names (shape (E/P, ...)).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/formats.h"
#include "model/model.h"

int
vlm_param_experts(const struct vlm_model *m, int i)
{
	const struct vlm_param *p = &m->params[i];

	return m->cfg.moe.experts > 0 && strstr(p->name, ".experts.") &&
	    !strstr(p->name, "lora_") && p->ndim >= 2 &&
	    p->shape[0] == m->cfg.moe.experts;
}

void
vlm_param_held(const struct vlm_model *m, int i, int q, int P, int64_t *lo,
    int64_t *n)
{
	const struct vlm_param *p = &m->params[i];

	*lo = 0, *n = p->n;
	if (P > 1 && vlm_param_experts(m, i))
		*lo = p->n / P * q, *n = p->n / P;
}

int
vlm_pack_init_shard(struct vlm_pack *p, const struct vlm_model *m,
    const uint8_t *skip, int q, int P)
{
	if (vlm_pack_init(p, m, skip) < 0)
		return -1;
	p->nrep = p->n;
	if (P <= 1)
		return 0;
	if (m->cfg.moe.experts % P)
		return vlm_error("%d experts do not split over %d ranks",
		    m->cfg.moe.experts, P);
	p->q = q, p->P = P;
	if (!(p->lo = calloc(2 * (size_t)(m->nparams ? m->nparams : 1),
	    sizeof(int64_t)))) {
		vlm_pack_release(p);
		return vlm_error("out of memory");
	}
	p->len = p->lo + m->nparams;
	p->n = 0;
	for (int pass = 0; pass < 2; pass++) { /* whole ones first */
		for (int i = 0; i < m->nparams; i++) {
			if (skip && skip[i]) {
				p->off[i] = -1;
				continue;
			}
			if (vlm_param_experts(m, i) != pass)
				continue;
			vlm_param_held(m, i, q, P, &p->lo[i], &p->len[i]);
			p->off[i] = p->n;
			p->n += p->len[i];
		}
		if (pass == 0)
			p->nrep = p->n;
	}
	return 0;
}

/* Let go of n floats at x (the pages wholly inside), never to be read. */
static void
drop(float *x, int64_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)x + page - 1) / page * page;
	uintptr_t b = ((uintptr_t)(x + n)) / page * page;

	if (a < b)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

void
vlm_model_drop_others(struct vlm_model *m, int q, int P)
{
	for (int i = 0; P > 1 && i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		int64_t lo, n;
		if (!vlm_param_experts(m, i))
			continue;
		vlm_param_held(m, i, q, P, &lo, &n);
		drop(m->w + p->off, lo);
		drop(m->w + p->off + lo + n, p->n - lo - n);
	}
}

void
vlm_shard_name(char *buf, size_t size, const char *dir, int q, int P)
{
	snprintf(buf, size, "%s/model-%05d-of-%05d.safetensors", dir, q, P);
}

int
vlm_model_save_shard(const struct vlm_model *m, const char *path, int q,
    int P)
{
	const char *keys[] = { "format", "vlm.version", "vlm.shard",
		"vlm.config", "tokenizer.merges" };
	const char *vals[5] = { "vlm-model-shard", "1", NULL, NULL,
		m->tokenizer };
	const char **names = calloc(m->nparams + 1, sizeof(*names));
	struct vlm_tensor *ts = calloc(m->nparams + 1, sizeof(*ts));
	char *cfg = q == 0 ? vlm_config_to_json_alloc(&m->cfg) : NULL;
	char shard[32];
	int n = 0, rc = -1;

	if (!names || !ts || (q == 0 && !cfg)) {
		vlm_error("out of memory");
		goto out;
	}
	snprintf(shard, sizeof(shard), "%d/%d", q, P);
	vals[2] = shard, vals[3] = cfg;
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		int64_t lo, len;
		int ex = vlm_param_experts(m, i);
		if (!ex && q > 0)
			continue; /* rank 0 holds the whole ones */
		vlm_param_held(m, i, q, P, &lo, &len);
		names[n] = p->name;
		ts[n].dtype = VLM_DTYPE_F32;
		ts[n].ndim = p->ndim;
		memcpy(ts[n].shape, p->shape, sizeof(p->shape));
		ts[n].shape[0] = ex ? p->shape[0] / P : p->shape[0];
		ts[n++].data = m->w + p->off + lo;
	}
	rc = vlm_st_save(path, names, ts, n, keys, vals, q > 0 ? 3 :
	    m->tokenizer ? 5 : 4);
out:
	free(names);
	free(ts);
	free(cfg);
	return rc;
}

/* Shard q of P in st (path) into m: its tensors at their places, but
 * the experts when only (>= 0) is another rank. */
static int
shard_into(struct vlm_model *m, const struct vlm_st *st, const char *path,
    int q, int P, int only, int64_t *got)
{
	const char *s = vlm_st_meta(st, "vlm.shard");
	int sq, sp;

	if (!s || sscanf(s, "%d/%d", &sq, &sp) != 2 || sq != q || sp != P)
		return vlm_error("'%s': not shard %d of %d (vlm.shard %s)",
		    path, q, P, s ? s : "missing");
	for (int k = 0; k < st->n; k++) {
		const struct vlm_param *p = vlm_model_param(m, st->names[k]);
		const struct vlm_tensor *t = &st->tensors[k];
		int64_t lo, len;
		if (!p)
			return vlm_error("'%s': tensor '%s' is not a parameter "
			    "of the model", path, st->names[k]);
		vlm_param_held(m, (int)(p - m->params), q, P, &lo, &len);
		if (only >= 0 && only != q && vlm_param_experts(m,
		    (int)(p - m->params)))
			continue;
		if (t->dtype != VLM_DTYPE_F32 || vlm_tensor_numel(t) != len ||
		    t->ndim != p->ndim)
			return vlm_error("'%s': tensor '%s' does not fit shard "
			    "%d of %d of the model", path, p->name, q, P);
		memcpy(m->w + p->off + lo, t->data, len * sizeof(float));
		*got += len;
	}
	return 0;
}

/* Shard q's file in dir into m (built); *got counts the floats. */
static int
load_one(struct vlm_model *m, const char *dir, int q, int P, int64_t *got)
{
	char path[4200];
	struct vlm_st st;
	int rc;

	vlm_shard_name(path, sizeof(path), dir, q, P);
	if (vlm_st_load(&st, path) < 0)
		return -1;
	rc = shard_into(m, &st, path, q, P, q, got);
	vlm_st_release(&st);
	return rc;
}

int
vlm_shard_count(const char *dir)
{
	char path[4200];

	for (int P = 2; P <= 4096; P++) { /* shard 0 names the count */
		vlm_shard_name(path, sizeof(path), dir, 0, P);
		if (access(path, F_OK) == 0)
			return P;
	}
	return 0;
}

int
vlm_model_load_shards(struct vlm_model *m, const char *dir, int P, int only)
{
	char path[4200];
	struct vlm_st st;
	struct vlm_config c;
	const char *cfg, *tok;
	int64_t got = 0, want = 0;
	int rc;

	vlm_shard_name(path, sizeof(path), dir, 0, P);
	if (vlm_st_load(&st, path) < 0)
		return -1;
	vlm_config_preset(&c, "tiny");
	if (!(cfg = vlm_st_meta(&st, "vlm.config")) ||
	    vlm_config_from_json(&c, cfg) < 0 || vlm_model_init(m, &c) < 0) {
		rc = vlm_error("'%s': no model config: %s", path,
		    cfg ? vlm_errmsg() : "no vlm.config metadata");
		vlm_st_release(&st);
		return rc;
	}
	if (c.moe.experts % P)
		rc = vlm_error("'%s': %d experts in %d shards", path,
		    c.moe.experts, P);
	else
		rc = shard_into(m, &st, path, 0, P, only, &got);
	if (rc == 0 && (tok = vlm_st_meta(&st, "tokenizer.merges")) &&
	    !(m->tokenizer = strdup(tok)))
		rc = vlm_error("out of memory");
	vlm_st_release(&st);
	for (int q = 1; rc == 0 && q < P; q++)
		if (only < 0 || q == only)
			rc = load_one(m, dir, q, P, &got);
	for (int i = 0; i < m->nparams; i++) { /* all, or only's */
		int64_t lo, n;
		vlm_param_held(m, i, only, only < 0 ? 1 : P, &lo, &n);
		want += n;
	}
	if (rc == 0 && got != want)
		rc = vlm_error("'%s': the shards hold %lld of the model's "
		    "%lld floats", dir, (long long)got, (long long)want);
	if (rc < 0)
		vlm_model_release(m);
	return rc;
}
