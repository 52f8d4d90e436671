/*
 * embed-output.c - where vlm-embed's vectors go, a batch at a time: the
 * .npys record stream (libcore/formats/npys.c) on stdout, or its packed form
 * (FILE.npy, FILE.ids.npy, FILE.json) through a packer thread, or JSON
 * lines {"id":"...","embedding":[...]} for jq, on stdout or in a file
 * renamed into place at the end. And the progress line on stderr.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "embed.h"

int
embed_out_open(struct embed_out *o, enum embed_format format,
    const char *path, const char *meta_json, int64_t dim)
{
	memset(o, 0, sizeof(*o));
	o->format = format;
	o->dim = dim;
	o->name = path ? path : "<stdout>";
	o->f = stdout;
	if (format == EMBED_JSONL) {
		if (path && vlm_atomic_open(&o->a, path) < 0)
			return -1;
		o->atomic = path != NULL;
		o->f = o->a.f ? o->a.f : stdout;
		return 0;
	}
	if (path) {
		if (vlm_npys_packer_open(&o->pk, path) < 0)
			return -1;
		o->packed = 1;
		o->f = o->pk.f;
	}
	if (vlm_npys_writer_init(&o->w, o->f, o->name, meta_json) < 0) {
		embed_out_abort(o);
		return -1;
	}
	return 0;
}

/* One JSON line per row; floats with 9 digits, enough to round-trip. */
static int
write_jsonl(struct embed_out *o, const char *const *ids, const float *vec,
    int k)
{
	for (int i = 0; i < k; i++) {
		json_t *id = json_string(ids[i]);
		const float *v = vec + (int64_t)i * o->dim;
		int rc;
		if (!id)
			return vlm_error("'%s': id %s is not valid UTF-8",
			    o->name, ids[i]);
		fputs("{\"id\":", o->f);
		rc = json_dumpf(id, o->f, JSON_ENCODE_ANY);
		json_decref(id);
		if (rc < 0)
			return vlm_error("'%s': %s", o->name,
			    strerror(errno ? errno : EIO));
		fputs(",\"embedding\":[", o->f);
		for (int64_t j = 0; j < o->dim; j++)
			if (isfinite(v[j]))
				fprintf(o->f, j ? ",%.9g" : "%.9g", v[j]);
			else
				fputs(j ? ",null" : "null", o->f);
		fputs("]}\n", o->f);
	}
	if (ferror(o->f))
		return vlm_error("'%s': %s", o->name, strerror(errno ? errno :
		    EIO));
	return 0;
}

int
embed_out_batch(struct embed_out *o, const char *const *ids,
    const float *vec, int k)
{
	if (o->format == EMBED_JSONL)
		return write_jsonl(o, ids, vec, k);
	return vlm_npys_writer_batch(&o->w, ids, vec, k);
}

int
embed_out_finish(struct embed_out *o, const char *extra_json)
{
	if (o->format == EMBED_JSONL) {
		if (o->atomic)
			return vlm_atomic_commit(&o->a);
		if (fflush(o->f) != 0 || ferror(o->f))
			return vlm_error("'%s': %s", o->name,
			    strerror(errno ? errno : EIO));
		return 0;
	}
	if (vlm_npys_writer_finish(&o->w, extra_json) < 0) {
		embed_out_abort(o);
		return -1;
	}
	return o->packed ? vlm_npys_packer_close(&o->pk) : 0;
}

void
embed_out_abort(struct embed_out *o)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
	if (o->packed)
		vlm_npys_packer_close(&o->pk);  /* truncated: packs nothing */
	if (o->atomic)
		vlm_atomic_abort(&o->a);
	o->packed = o->atomic = 0;
	vlm_error("%s", msg);
}

void
embed_progress_init(struct embed_progress *p, int on, const char *unit,
    int64_t total)
{
	*p = (struct embed_progress){ .on = on, .unit = unit, .total = total };
	p->t0 = p->last = vlm_now();
}

/* Redraw at most 5 times a second: count, rate, and ETA when known. */
static void
draw(struct embed_progress *p, double t)
{
	double rate = t > p->t0 ? p->n / (t - p->t0) : 0;

	fprintf(stderr, "\rvlm-embed: %lld", (long long)p->n);
	if (p->total >= 0)
		fprintf(stderr, "/%lld", (long long)p->total);
	fprintf(stderr, " %s, %.1f/s", p->unit, rate);
	if (p->total >= p->n && rate > 0) {
		long s = (long)((p->total - p->n) / rate + 0.5);
		fprintf(stderr, ", ETA %ld:%02ld:%02ld", s / 3600, s / 60 % 60,
		    s % 60);
	}
	fputs("\033[K", stderr);
	p->last = t;
}

void
embed_progress_add(struct embed_progress *p, int64_t k)
{
	double t;

	p->n += k;
	if (p->on && (t = vlm_now()) - p->last >= 0.2)
		draw(p, t);
}

void
embed_progress_clear(struct embed_progress *p)
{
	if (p->on)
		fputs("\r\033[K", stderr);
	p->last = 0;
}

void
embed_progress_end(struct embed_progress *p)
{
	if (!p->on)
		return;
	draw(p, vlm_now());
	fputc('\n', stderr);
}
