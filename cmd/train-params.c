/*
 * train-params.c - RUN/params.json, the options a run was started with
 * (as OpenCLIP's params.txt): one JSON object keyed by long option name,
 * files as absolute paths. `--resume RUN` takes its options from there;
 * an option given again must equal the stored one when it decides what
 * the continuation computes (data, batch, seed, schedule, model...), and
 * may differ when it does not (more steps, logging, checkpoints,
 * threads, validation): then it is applied, reported on stderr and
 * stored for the next resume.
 */
#include <err.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train.h"
#include "base/base.h"

enum ptype { P_INT, P_I64, P_U64, P_FLOAT, P_DOUBLE, P_FLAG, P_NOFLAG,
	P_STR, P_PATH, P_CHAR, P_DATA, P_SETS };

struct param {
	const char *name;  /* the long option */
	enum ptype type;
	size_t off;        /* of the field in struct train */
	int may_change;    /* on --resume, without changing the computation */
};

#define F(field) offsetof(struct train, field)
static const struct param params[] = {
	{ "data", P_DATA, 0, 0 },
	{ "model", P_PATH, F(model), 0 },
	{ "set", P_SETS, 0, 0 },
	{ "batch-size", P_INT, F(o.batch), 0 },
	{ "accum-freq", P_INT, F(accum), 0 },
	{ "seed", P_U64, F(seed), 0 },
	{ "lr", P_FLOAT, F(o.lr), 0 },
	{ "warmup", P_I64, F(o.warmup), 0 },
	{ "constant-lr", P_NOFLAG, F(o.cosine), 0 },
	{ "wd", P_FLOAT, F(opt.wd), 0 },
	{ "beta1", P_FLOAT, F(opt.beta1), 0 },
	{ "beta2", P_FLOAT, F(opt.beta2), 0 },
	{ "eps", P_FLOAT, F(opt.eps), 0 },
	{ "grad-clip", P_FLOAT, F(opt.clip), 0 },
	{ "lock-image", P_FLAG, F(lock_image), 0 },
	{ "lock-text", P_FLAG, F(lock_text), 0 },
	{ "tokenizer", P_PATH, F(tokenizer), 0 },
	{ "vocab-size", P_INT, F(vocab_size), 0 },
	{ "csv-img-key", P_STR, F(csv.img_key), 0 },
	{ "csv-caption-key", P_STR, F(csv.caption_key), 0 },
	{ "csv-separator", P_CHAR, F(csv.sep), 0 },
	{ "crop-scale", P_DOUBLE, F(aug.scale_lo), 0 },
	{ "hflip", P_FLAG, F(aug.hflip), 0 },
	{ "color-jitter", P_DOUBLE, F(aug.jitter), 0 },
	{ "hue", P_DOUBLE, F(aug.hue), 0 },
	{ "grayscale", P_DOUBLE, F(aug.gray), 0 },
	{ "data-weights", P_STR, F(weights), 0 },
	{ "adaptive", P_FLAG, F(so.adaptive), 0 },
	{ "expert-parallel", P_INT, F(ep), 0 },
	{ "adaptive-tau", P_DOUBLE, F(so.tau), 0 },
	{ "adaptive-decay", P_DOUBLE, F(so.decay), 0 },
	{ "adaptive-floor", P_DOUBLE, F(so.eps), 0 },
	{ "caption-weight", P_FLOAT, F(w_caption), 0 },
	{ "clip-weight", P_FLOAT, F(w_clip), 0 },
	{ "stage", P_STR, F(stage), 0 },
	{ "steps", P_I64, F(o.steps), 1 },
	{ "epochs", P_I64, F(epochs), 1 },
	{ "threads", P_INT, F(threads), 1 },
	{ "log-every", P_I64, F(log_every), 1 },
	{ "save-every", P_I64, F(save_every), 1 },
	{ "keep", P_INT, F(keep), 1 },
	{ "max-bad", P_DOUBLE, F(max_bad), 1 },
	{ "val-data", P_PATH, F(val_data), 1 },
	{ "val-every", P_I64, F(val_every), 1 },
};
#undef F
#define NPARAMS (sizeof(params) / sizeof(*params))
_Static_assert(NPARAMS <= 64, "struct train's given is a 64-bit mask");

/* Options that are stored as --set lines. */
static const char *const set_aliases[] = { "alpha", "lora-rank",
	"lora-alpha" };

/* The bit of option name in struct train's given, or 0. */
static uint64_t
bit(const char *name)
{
	for (size_t i = 0; i < sizeof(set_aliases) / sizeof(*set_aliases); i++)
		if (strcmp(name, set_aliases[i]) == 0)
			name = "set";
	for (size_t i = 0; i < NPARAMS; i++)
		if (strcmp(params[i].name, name) == 0)
			return 1ull << i;
	return 0;
}

void
train_params_given(struct train *t, const char *name)
{
	t->given |= bit(name);
}

/* A file as an absolute path when it exists (a shard pattern: when its
 * directory does), else as given. */
static json_t *
path_json(const char *path)
{
	char *abs = path ? realpath(path, NULL) : NULL, *dir, *s = NULL;
	const char *slash = path ? strrchr(path, '/') : NULL;
	json_t *j;

	if (path && !abs && slash && slash > path && !memchr(path, '{',
	    slash - path) && (dir = strndup(path, slash - path))) {
		if ((abs = realpath(dir, NULL)) && asprintf(&s, "%s%s", abs,
		    slash) < 0)
			s = NULL;
		free(dir);
		free(abs);
		abs = s;
	}
	j = path ? json_string(abs ? abs : path) : json_null();
	free(abs);
	return j;
}

/* The value of option p in t as JSON. */
static json_t *
to_json(const struct train *t, const struct param *p)
{
	const void *f = (const char *)t + p->off;
	json_t *a;

	switch (p->type) {
	case P_INT: return json_integer(*(const int *)f);
	case P_I64: return json_integer(*(const int64_t *)f);
	case P_U64: return json_integer((json_int_t)*(const uint64_t *)f);
	case P_FLOAT: return json_real(*(const float *)f);
	case P_DOUBLE: return json_real(*(const double *)f);
	case P_FLAG: return json_boolean(*(const int *)f);
	case P_NOFLAG: return json_boolean(!*(const int *)f);
	case P_STR: return *(char *const *)f ? json_string(*(char *const *)f)
	    : json_null();
	case P_PATH: return path_json(*(char *const *)f);
	case P_CHAR: return json_stringn((const char *)f, *(const char *)f ?
	    1 : 0);
	case P_DATA:
		a = json_array();
		for (int i = 0; i < t->nsrc; i++)
			json_array_append_new(a, path_json(t->src[i].path));
		return a;
	case P_SETS:
		a = json_array();
		for (int i = 0; i < t->nset; i++)
			json_array_append_new(a, json_string(t->sets[i]));
		return a;
	}
	return NULL;
}

/* A list of strings, or -1. */
static int
str_array(json_t *v)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v))
		return -1;
	json_array_foreach(v, i, e)
		if (!json_is_string(e))
			return -1;
	return (int)json_array_size(v);
}

/* The stored value v into t's option p (strings stay v's); -1 when v
 * is not of the option's type. */
static int
from_json(struct train *t, const struct param *p, json_t *v)
{
	void *f = (char *)t + p->off;
	int n;

	switch (p->type) {
	case P_INT: if (!json_is_integer(v)) return -1;
		*(int *)f = (int)json_integer_value(v); return 0;
	case P_I64: if (!json_is_integer(v)) return -1;
		*(int64_t *)f = json_integer_value(v); return 0;
	case P_U64: if (!json_is_integer(v)) return -1;
		*(uint64_t *)f = (uint64_t)json_integer_value(v); return 0;
	case P_FLOAT: if (!json_is_number(v)) return -1;
		*(float *)f = (float)json_number_value(v); return 0;
	case P_DOUBLE: if (!json_is_number(v)) return -1;
		*(double *)f = json_number_value(v); return 0;
	case P_FLAG: case P_NOFLAG: if (!json_is_boolean(v)) return -1;
		*(int *)f = json_is_true(v) ^ (p->type == P_NOFLAG); return 0;
	case P_STR: case P_PATH: if (!json_is_null(v) && !json_is_string(v))
			return -1;
		*(const char **)f = json_string_value(v); return 0;
	case P_CHAR: if (!json_is_string(v) || json_string_length(v) > 1)
			return -1;
		*(char *)f = json_string_value(v)[0]; return 0;
	case P_DATA:
		if ((n = str_array(v)) < 1 || !(t->src = realloc(t->src, n *
		    sizeof(*t->src))))
			return -1;
		memset(t->src, 0, n * sizeof(*t->src));
		for (t->nsrc = 0; t->nsrc < n; t->nsrc++)
			t->src[t->nsrc].path = json_string_value(
			    json_array_get(v, t->nsrc));
		t->data = t->src[0].path;
		return 0;
	case P_SETS:
		if ((n = str_array(v)) < 0 || !(t->sets = realloc(t->sets,
		    (n + 1) * sizeof(*t->sets))))
			return -1;
		for (t->nset = 0; t->nset < n; t->nset++)
			if (!(t->sets[t->nset] = strdup(json_string_value(
			    json_array_get(v, t->nset)))))
				return -1;
		return 0;
	}
	return -1;
}

/* A one-line rendering of option p's value v for messages. */
static char *
show_alloc(const struct param *p, json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT |
	    (p->type == P_FLOAT ? JSON_REAL_PRECISION(9) : 0));

	return s ? s : strdup("?");
}

/* Option p given again on --resume: refused when it would change the
 * computation, else applied and said. */
static void
merge_given(const struct train *t, const struct param *p, json_t *old,
    const char *file)
{
	json_t *now = to_json(t, p);
	char *was, *is;

	if (json_equal(now, old)) {
		json_decref(now);
		return;
	}
	was = show_alloc(p, old);
	is = show_alloc(p, now);
	if (p->type == P_DATA && json_array_size(old) != (size_t)t->nsrc)
		errx(1, "'%s': the run was trained on %zu data sources, not "
		    "%d: %s", file, json_array_size(old), t->nsrc, was);
	if (!p->may_change)
		errx(1, "'%s': --%s %s differs from the run's %s; a resumed "
		    "run keeps it (start a new run to change it)", file,
		    p->name, is, was);
	warnx("--%s %s (the run had %s)%s", p->name, is, was,
	    strcmp(p->name, "steps") == 0 && t->o.cosine ? ": the cosine "
	    "schedule now ends there" : "");
	free(was);
	free(is);
	json_decref(now);
}

/*
 * --resume: the options of RUN/params.json, with those given again
 * checked against them. A run from before params.json goes on with the
 * command line's options, as it used to. Exits on a conflict.
 */
void
train_params_resume(struct train *t)
{
	char file[4096];
	json_error_t e;
	json_t *o, *v;

	snprintf(file, sizeof(file), "%s/params.json", t->resume);
	if (!(o = json_load_file(file, 0, &e))) {
		if (access(file, F_OK) == 0)
			errx(1, "'%s': %s", file, e.text);
		snprintf(file, sizeof(file), "%s/latest", t->resume);
		if (access(file, F_OK) < 0)
			errx(1, "'%s': no run to resume (no params.json, no "
			    "latest checkpoint)", t->resume);
		warnx("'%s': no params.json: options from the command line",
		    t->resume);
		return;
	}
	if (!json_is_object(o))
		errx(1, "'%s': not a JSON object", file);
	for (size_t i = 0; i < NPARAMS; i++) {
		if (!(v = json_object_get(o, params[i].name)))
			continue;
		if (t->given & (1ull << i))
			merge_given(t, &params[i], v, file);
		else if (from_json(t, &params[i], v) < 0)
			errx(1, "'%s': bad \"%s\"", file, params[i].name);
	}
	/* --steps alone replaces the length an --epochs run had */
	if ((t->given & bit("steps")) && !(t->given & bit("epochs")))
		t->epochs = 0;
	t->params = o;
}

/* RUN/params.json, written atomically; -1 and a message on failure. */
int
train_params_save(const struct train *t)
{
	char file[4096];
	json_t *o = json_object();
	struct vlm_atomic a;
	int rc;

	snprintf(file, sizeof(file), "%s/params.json", t->out);
	for (size_t i = 0; o && i < NPARAMS; i++)
		json_object_set_new(o, params[i].name, to_json(t, &params[i]));
	if (!o || vlm_atomic_open(&a, file) < 0) {
		json_decref(o);
		return o ? -1 : vlm_error("out of memory");
	}
	rc = json_dumpf(o, a.f, JSON_INDENT(1)) == 0 && fputc('\n', a.f) !=
	    EOF;
	json_decref(o);
	if (!rc) {
		vlm_atomic_abort(&a);
		return vlm_error("'%s': %s", file, strerror(errno ? errno :
		    EIO));
	}
	return vlm_atomic_commit(&a);
}

void
train_params_free(struct train *t)
{
	json_decref(t->params);
}
