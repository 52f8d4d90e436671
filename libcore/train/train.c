/*
 * train.c - what a training run needs besides the model: OpenCLIP's
 * learning-rate schedule, checkpoints that survive a crash at any
 * moment, and the state that makes a resumed run bit-identical to an
 * uninterrupted one (step, data cursor, router-noise generator; with
 * several data sources each one's cursor and loss averages, the doubles
 * written with 17 digits so that they read back exactly).
 *
 * A checkpoint is RUN/ckpt-NNNNNNNN/ holding model.safetensors,
 * optim.safetensors (AdamW moments of the trained parameters as two
 * flat tensors, save_optim) and state.json.
 * It is written as RUN/.tmp-ckpt-NNNNNNNN, every file fsynced, renamed
 * into place, and RUN/latest (a symlink) is replaced atomically after.
 * A checkpoint of experts sharded over ranks holds one model and one
 * optim file per rank instead (ckpt-shard.c), between vlm_ckpt_begin
 * and vlm_ckpt_commit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/formats.h"
#include "kernels.h"
#include "train/train.h"

float
vlm_lr_at(const struct vlm_train_opts *o, int64_t step)
{
	if (o->warmup > 0 && step < o->warmup)
		return o->lr * (step + 1) / o->warmup;
	if (!o->cosine || o->steps <= o->warmup)
		return o->lr;
	double e = (double)(step - o->warmup) / (o->steps - o->warmup);
	return (float)(0.5 * (1 + cos(M_PI * e)) * o->lr);
}

static int
fsync_path(const char *path, int dir)
{
	int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
	int rc;

	if (fd < 0)
		return vlm_error("'%s': %s", path, strerror(errno));
	rc = fsync(fd);
	close(fd);
	return rc == 0 ? 0 : vlm_error("'%s': %s", path, strerror(errno));
}

/* a loss average, or null before the first */
static json_t *
ema_json(double v, int seen)
{
	return seen ? json_real(v) : json_null();
}

static json_t *
sources_json(const struct vlm_train_state *s)
{
	json_t *a = json_array();

	for (int i = 0; a && i < s->nsources; i++) {
		const struct vlm_source_state *x = &s->sources[i];
		json_array_append_new(a, json_pack("{sIsIsoso}", "epoch",
		    (json_int_t)x->epoch, "pos", (json_int_t)x->pos, "loss_ema",
		    ema_json(x->ema, x->seen), "loss_ema_prev",
		    ema_json(x->ema_prev, x->seen_prev)));
	}
	return a;
}

/* "sources" of state.json into s; -1 when malformed */
static int
sources_read(json_t *a, struct vlm_train_state *s)
{
	if (!json_is_array(a) || json_array_size(a) < 1 ||
	    json_array_size(a) > VLM_SOURCES_MAX)
		return -1;
	s->nsources = (int)json_array_size(a);
	for (int i = 0; i < s->nsources; i++) {
		struct vlm_source_state *x = &s->sources[i];
		json_int_t epoch, pos;
		json_t *e, *ep;
		if (json_unpack(json_array_get(a, i), "{sIsIsoso}", "epoch",
		    &epoch, "pos", &pos, "loss_ema", &e, "loss_ema_prev",
		    &ep) < 0 || epoch < 0 || pos < 0 ||
		    !(json_is_null(e) || json_is_number(e)) ||
		    !(json_is_null(ep) || json_is_number(ep)))
			return -1;
		x->epoch = epoch;
		x->pos = pos;
		x->seen = !json_is_null(e);
		x->ema = x->seen ? json_number_value(e) : 0;
		x->seen_prev = !json_is_null(ep);
		x->ema_prev = x->seen_prev ? json_number_value(ep) : 0;
	}
	return 0;
}

static int
save_state(const char *path, const struct vlm_train_state *s)
{
	json_t *rng = json_array(), *o;
	struct vlm_atomic a;
	char buf[32];
	int rc;

	for (int i = 0; i < 4; i++) {
		snprintf(buf, sizeof(buf), "%" PRIu64, s->rng.s[i]);
		json_array_append_new(rng, json_string(buf));
	}
	snprintf(buf, sizeof(buf), "%" PRIu64, s->seed);
	o = json_pack("{sIsIsIsosssI}", "step", (json_int_t)s->step,
	    "epoch", (json_int_t)s->cursor.epoch, "pos",
	    (json_int_t)s->cursor.pos, "rng", rng, "seed", buf,
	    "samples", (json_int_t)s->samples);
	if (o && s->nsources > 0)
		json_object_set_new(o, "sources", sources_json(s));
	if (!o || vlm_atomic_open(&a, path) < 0) {
		json_decref(o);
		return -1;
	}
	rc = json_dumpf(o, a.f, JSON_INDENT(1)) < 0 ? -1 : 0;
	json_decref(o);
	if (rc < 0) {
		vlm_atomic_abort(&a);
		return vlm_error("'%s': cannot write", path);
	}
	return vlm_atomic_commit(&a);
}

static int
load_state(const char *path, struct vlm_train_state *s)
{
	json_error_t e;
	json_t *o = json_load_file(path, 0, &e), *rng, *src;
	json_int_t step, epoch, pos, samples = 0;
	const char *seed;

	if (!o)
		return vlm_error("'%s': %s", path, e.text);
	if (json_unpack(o, "{sIsIsIsos?Iss}", "step", &step, "epoch", &epoch,
	    "pos", &pos, "rng", &rng, "samples", &samples, "seed", &seed) < 0
	    || !json_is_array(rng) || json_array_size(rng) != 4) {
		json_decref(o);
		return vlm_error("'%s': not a vlm training state", path);
	}
	s->step = step;
	s->cursor.epoch = epoch;
	s->cursor.pos = pos;
	s->samples = samples;
	s->seed = strtoull(seed, NULL, 10);
	s->nsources = 0;
	if ((src = json_object_get(o, "sources")) && sources_read(src, s) < 0) {
		json_decref(o);
		return vlm_error("'%s': bad \"sources\"", path);
	}
	for (int i = 0; i < 4; i++)
		s->rng.s[i] = strtoull(json_string_value(json_array_get(rng,
		    i)), NULL, 10);
	json_decref(o);
	return 0;
}

/*
 * optim.safetensors: the moments of the trained parameters as two flat
 * tensors adamw.m and adamw.v, packed in parameter order (o->pack); when
 * some parameter is frozen, metadata adamw.params names those they
 * cover, comma-separated. Without it they cover every parameter at its
 * slab offset (files written before frozen parameters lost their
 * moments hold zeros there, and load the same).
 */
static int
save_optim(const char *path, const struct vlm_model *m,
    const struct vlm_optim *o)
{
	const char *names[2] = { "adamw.m", "adamw.v" };
	const char *keys[2] = { "adamw.step", "adamw.params" };
	char step[32], *list = NULL;
	const char *vals[2] = { step, NULL };
	struct vlm_tensor t[2] = {
		{ VLM_DTYPE_F32, 1, { o->pack.n }, o->m },
		{ VLM_DTYPE_F32, 1, { o->pack.n }, o->v },
	};
	size_t len = 1;
	int rc;

	snprintf(step, sizeof(step), "%" PRId64, o->step);
	if (o->pack.n != m->nfloats) {
		for (int i = 0; i < m->nparams; i++)
			len += strlen(m->params[i].name) + 1;
		if (!(list = malloc(len)))
			return vlm_error("out of memory");
		list[0] = '\0';
		for (int i = 0; i < m->nparams; i++)
			if (o->pack.off[i] >= 0)
				strcat(strcat(list, *list ? "," : ""),
				    m->params[i].name);
		vals[1] = list;
	}
	rc = vlm_st_save(path, names, t, 2, keys, vals, list ? 2 : 1);
	free(list);
	return rc;
}

/* foff (nparams) := where each parameter's moments lie in the file's
 * tensors (-1: not there); their length into *n. */
static int
optim_layout(const char *path, const struct vlm_model *m, const char *list,
    int64_t *foff, int64_t *n)
{
	char *copy, *name, *save = NULL;
	int rc = 0;

	*n = 0;
	for (int i = 0; i < m->nparams; i++)
		foff[i] = list ? -1 : m->params[i].off;
	if (!list) {
		*n = m->nfloats;
		return 0;
	}
	if (!(copy = strdup(list)))
		return vlm_error("out of memory");
	for (name = strtok_r(copy, ",", &save); name && rc == 0;
	    name = strtok_r(NULL, ",", &save)) {
		const struct vlm_param *p = vlm_model_param(m, name);
		if (!p || foff[p - m->params] >= 0)
			rc = vlm_error("'%s': adamw.params: %s parameter "
			    "'%s'", path, p ? "repeated" : "unknown", name);
		else {
			foff[p - m->params] = *n;
			*n += p->n;
		}
	}
	free(copy);
	return rc;
}

static int
load_optim(const char *path, const struct vlm_model *m, struct vlm_optim *o)
{
	struct vlm_st st;
	const struct vlm_tensor *tm, *tv;
	const char *step;
	int64_t *foff, n;
	int rc = 0;

	if (!(foff = malloc((m->nparams ? m->nparams : 1) * sizeof(*foff))))
		return vlm_error("out of memory");
	if (vlm_st_load(&st, path) < 0) {
		free(foff);
		return -1;
	}
	tm = vlm_st_get(&st, "adamw.m");
	tv = vlm_st_get(&st, "adamw.v");
	step = vlm_st_meta(&st, "adamw.step");
	if (optim_layout(path, m, vlm_st_meta(&st, "adamw.params"), foff,
	    &n) < 0)
		rc = -1;
	else if (!tm || !tv || !step || tm->dtype != VLM_DTYPE_F32 ||
	    tv->dtype != VLM_DTYPE_F32 || vlm_tensor_numel(tm) != n ||
	    vlm_tensor_numel(tv) != n)
		rc = vlm_error("'%s': optimizer state does not fit the model",
		    path);
	for (int i = 0; rc == 0 && i < m->nparams; i++) {
		int64_t k = o->pack.off[i], f = foff[i];
		size_t bytes = m->params[i].n * sizeof(float);
		if (k < 0)
			continue; /* frozen now: its moments are not needed */
		if (f < 0) {
			rc = vlm_error("'%s': no moments for '%s', which this "
			    "run trains (it was frozen when the checkpoint "
			    "was written)", path, m->params[i].name);
			break;
		}
		o->be->upload(o->m + k, (const float *)tm->data + f, bytes);
		o->be->upload(o->v + k, (const float *)tv->data + f, bytes);
	}
	if (rc == 0)
		o->step = strtoll(step, NULL, 10);
	vlm_st_release(&st);
	free(foff);
	return rc;
}

/* Remove dir and every file in it; a missing dir is no error. */
static int
remove_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : vlm_error("'%s': %s", path,
		    strerror(errno));
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0
		    && unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
			rc = vlm_error("'%s/%s': %s", path, e->d_name,
			    strerror(errno));
	closedir(d);
	vlm_crash_point("ckpt-remove");
	if (rc == 0 && rmdir(path) < 0 && errno != ENOENT)
		rc = vlm_error("'%s': %s", path, strerror(errno));
	return rc;
}

/* Retire RUN/name: renamed to RUN/.del-name at once (so every ckpt-* is
 * complete), then emptied; a crash in between leaves only .del-*. */
static int
retire(const char *run, const char *name)
{
	char from[4096], to[4096];

	snprintf(from, sizeof(from), "%s/%s", run, name);
	snprintf(to, sizeof(to), "%s/.del-%s", run, name);
	if (remove_dir(to) < 0)
		return -1;
	if (rename(from, to) < 0)
		return errno == ENOENT ? 0 : vlm_error("'%s': %s", from,
		    strerror(errno));
	return remove_dir(to);
}

/* NAME.tmp.PID: an atomic output a killed process left (libcore/file.c) */
static int
stray_tmp(const char *name)
{
	const char *s = strstr(name, ".tmp.");

	if (!s || s == name || !s[5])
		return 0;
	for (s += 5; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* The step of a name "ckpt-NNNNNNNN", or -1. */
static int64_t
ckpt_step(const char *name)
{
	char *end;
	long long v;

	if (strncmp(name, "ckpt-", 5) != 0 || name[5] < '0' || name[5] > '9')
		return -1;
	v = strtoll(name + 5, &end, 10);
	return *end == '\0' ? v : -1;
}

static int
by_step_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x < y) - (x > y);
}

/*
 * After the checkpoint of `step`: remove what interrupted saves and
 * prunes left (.tmp-ckpt-*, .del-ckpt-*, NAME.tmp.PID) and, with keep > 0,
 * every checkpoint but the newest `keep` up to `step`, including those
 * past it that a killed run wrote before this one resumed behind them.
 */
int
vlm_ckpt_prune(const char *run, int64_t step, int keep)
{
	DIR *d = opendir(run);
	struct dirent *e;
	int64_t *steps = NULL, *grown;
	int n = 0, cap = 0, rc = 0;
	char name[64], path[4400];

	if (!d)
		return vlm_error("'%s': %s", run, strerror(errno));
	while (rc == 0 && (e = readdir(d))) {
		int64_t s = ckpt_step(e->d_name);
		if (strncmp(e->d_name, ".tmp-ckpt-", 10) == 0 ||
		    strncmp(e->d_name, ".del-ckpt-", 10) == 0) {
			snprintf(path, sizeof(path), "%s/%s", run, e->d_name);
			rc = remove_dir(path);
		} else if (stray_tmp(e->d_name)) {
			if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno !=
			    ENOENT)
				rc = vlm_error("'%s/%s': %s", run, e->d_name,
				    strerror(errno));
		} else if (s >= 0 && keep > 0) {
			if (n == cap) {
				cap = 2 * cap + 16;
				if (!(grown = realloc(steps, cap *
				    sizeof(*steps)))) {
					rc = vlm_error("out of memory");
					break;
				}
				steps = grown;
			}
			steps[n++] = s;
		}
	}
	closedir(d);
	if (n > 1)
		qsort(steps, n, sizeof(*steps), by_step_desc);
	for (int i = 0, kept = 0; rc == 0 && i < n; i++) {
		if (steps[i] <= step && ++kept <= keep)
			continue;
		snprintf(name, sizeof(name), "ckpt-%08" PRId64, steps[i]);
		rc = retire(run, name);
	}
	free(steps);
	return rc;
}

/* RUN/.tmp-NAME/FILE written by save; the checkpoint crash points. */
static int
save_files(const char *tmp, const struct vlm_model *m,
    const struct vlm_optim *o, const struct vlm_ckpt_saver *sv)
{
	char f[4200];

	snprintf(f, sizeof(f), "%s/model.safetensors", tmp);
	if ((sv ? sv->save(sv->ctx, f) : vlm_model_save(m, f)) < 0)
		return -1;
	vlm_crash_point("ckpt-model");
	snprintf(f, sizeof(f), "%s/optim.safetensors", tmp);
	if (save_optim(f, m, o) < 0)
		return -1;
	vlm_crash_point("ckpt-optim");
	return 0;
}

/* RUN/.tmp-ckpt-<step> into tmp, RUN/ckpt-<step> into dir, its name. */
static void
ckpt_paths(const char *run, int64_t step, char *tmp, char *dir, char *name)
{
	snprintf(name, 64, "ckpt-%08" PRId64, step);
	snprintf(tmp, 4096, "%s/.tmp-%s", run, name);
	if (dir)
		snprintf(dir, 4096, "%s/%s", run, name);
}

void
vlm_ckpt_tmp(const char *run, int64_t step, char *tmp)
{
	char name[64];

	ckpt_paths(run, step, tmp, NULL, name);
}

int
vlm_ckpt_begin(const char *run, int64_t step)
{
	char tmp[4096], dir[4096], name[64];

	ckpt_paths(run, step, tmp, dir, name);
	/* a killed save of this step may have left either behind */
	if (remove_dir(tmp) < 0 || retire(run, name) < 0)
		return -1;
	if (mkdir(tmp, 0777) < 0)
		return vlm_error("'%s': %s", tmp, strerror(errno));
	vlm_crash_point("ckpt-dir");
	return 0;
}

/* A failed save: its directory removed, the message says what stays. */
int
vlm_ckpt_abandon(const char *run, int64_t step)
{
	char tmp[4096], f[4200], msg[1024], prev[64];
	ssize_t n;

	snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
	vlm_ckpt_tmp(run, step, tmp);
	remove_dir(tmp);
	snprintf(f, sizeof(f), "%s/latest", run);
	if ((n = readlink(f, prev, sizeof(prev) - 1)) < 0)
		return vlm_error("%s; no checkpoint saved", msg);
	prev[n] = '\0';
	return vlm_error("%s; %s/latest (%s) is kept", msg, run, prev);
}

int
vlm_ckpt_commit(const char *run, const struct vlm_train_state *s, int keep)
{
	char tmp[4096], dir[4096], f[4200], link[4096], name[64];

	ckpt_paths(run, s->step, tmp, dir, name);
	snprintf(f, sizeof(f), "%s/state.json", tmp);
	if (save_state(f, s) < 0 || fsync_path(tmp, 1) < 0)
		return vlm_ckpt_abandon(run, s->step);
	vlm_crash_point("ckpt-state");
	if (rename(tmp, dir) < 0)
		return vlm_error("'%s': %s", dir, strerror(errno));
	vlm_crash_point("ckpt-rename");
	snprintf(link, sizeof(link), "%s/.latest.tmp", run);
	snprintf(f, sizeof(f), "%s/latest", run);
	unlink(link);
	if (symlink(name, link) < 0 || rename(link, f) < 0)
		return vlm_error("'%s': %s", f, strerror(errno));
	if (fsync_path(run, 1) < 0)
		return -1;
	vlm_crash_point("ckpt-latest");
	return vlm_ckpt_prune(run, s->step, keep);
}

int
vlm_ckpt_save(const char *run, const struct vlm_model *m,
    const struct vlm_optim *o, const struct vlm_train_state *s, int keep)
{
	return vlm_ckpt_save_as(run, m, o, s, keep, NULL);
}

int
vlm_ckpt_save_as(const char *run, const struct vlm_model *m,
    const struct vlm_optim *o, const struct vlm_train_state *s, int keep,
    const struct vlm_ckpt_saver *sv)
{
	char tmp[4096];

	if (vlm_ckpt_begin(run, s->step) < 0)
		return -1;
	vlm_ckpt_tmp(run, s->step, tmp);
	if (save_files(tmp, m, o, sv) < 0)
		return vlm_ckpt_abandon(run, s->step);
	return vlm_ckpt_commit(run, s, keep);
}

int
vlm_ckpt_load(const char *run, struct vlm_model *m,
    struct vlm_train_state *s)
{
	char f[4200];
	int P;

	snprintf(f, sizeof(f), "%s/latest", run);
	if ((P = vlm_shard_count(f)) > 0)
		return vlm_error("'%s': its checkpoint is sharded over %d "
		    "ranks: resume it as %d ranks with --expert-parallel %d, "
		    "or merge it (vlm-convert merge)", run, P, P, P);
	snprintf(f, sizeof(f), "%s/latest/model.safetensors", run);
	if (access(f, R_OK) < 0)
		return vlm_error("'%s': no checkpoint to resume from (no "
		    "latest/model.safetensors)", run);
	if (vlm_model_load(m, f) < 0)
		return -1;
	if (vlm_ckpt_load_state(run, s) < 0) {
		vlm_model_release(m);
		return -1;
	}
	return 0;
}

int
vlm_ckpt_load_state(const char *run, struct vlm_train_state *s)
{
	char f[4200];

	snprintf(f, sizeof(f), "%s/latest/state.json", run);
	return load_state(f, s);
}

int
vlm_ckpt_load_optim(const char *run, const struct vlm_model *m,
    struct vlm_optim *o)
{
	char f[4200];

	snprintf(f, sizeof(f), "%s/latest/optim.safetensors", run);
	return load_optim(f, m, o);
}
