/*
 * train-log.c - what vlm-train reports: one JSON line per logged step in
 * RUN/metrics.jsonl (losses, learning rate, temperature, per MoE layer
 * and modality the effective experts exp(H(mean p)) and the dropped
 * fraction, seconds since the last line, images/s since the start; with
 * several data sources each one's sampling probability, loss average,
 * examples since the last line and epoch), and a progress line when
 * stderr is a terminal; with -v instead one plain line on stderr per
 * metrics line, also into a file or pipe.
 */
#include <err.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kernels.h"
#include "cmd.h"
#include "train.h"
#include "base/base.h"

/* exp(H(mean p)) over the tokens of modality mod, and dropped tokens. */
static void
route_summary(const struct vlm_route_view *v, int E, int K, int mod,
    double *eff, double *dropped)
{
	double pbar[1024] = { 0 }, H = 0;
	int n = 0, drop = 0;

	for (int s = 0; s < v->S; s++) {
		int kept = 0;
		if (v->mod[s] != mod)
			continue;
		n++;
		for (int e = 0; e < E && e < 1024; e++)
			pbar[e] += v->p[(size_t)s * E + e];
		for (int j = 0; j < K; j++)
			kept |= v->keep[(size_t)s * K + j];
		drop += !kept;
	}
	for (int e = 0; n && e < E && e < 1024; e++)
		if (pbar[e] > 0)
			H -= pbar[e] / n * log(pbar[e] / n);
	*eff = n ? exp(H) : NAN;
	*dropped = n ? (double)drop / n : NAN;
}

static json_t *
moe_json(const struct train *t)
{
	const struct vlm_config *c = &t->m.cfg;
	json_t *a = json_array();
	static const char *const mods[2] = { "image", "text" };
	struct vlm_route_view v;

	for (int text = 0; text < 2; text++)
		for (int l = 0; l < (text ? c->text.layers : c->vision.layers);
		    l++)
			for (int p = 0; p < 2; p++) {
				if ((c->family == VLM_ONE_TOWER && text == 0) ||
				    vlm_run_route(t->run, text, l, p, &v) < 0)
					continue;
				json_t *o = json_pack("{sisssi}", "layer", l,
				    "tower", text ? "text" : "vision", "pool", p);
				for (int m = 0; m < 2; m++) {
					double eff, drop;
					char k[32];
					route_summary(&v, c->moe.experts,
					    c->moe.top_k, m, &eff, &drop);
					if (isnan(eff))
						continue;
					snprintf(k, sizeof(k), "eff_experts_%s",
					    mods[m]);
					json_object_set_new(o, k, json_real(eff));
					snprintf(k, sizeof(k), "dropped_%s", mods[m]);
					json_object_set_new(o, k, json_real(drop));
				}
				json_array_append_new(a, o);
			}
	return a;
}

/*
 * Peak resident memory against what the config implies: parameters, the
 * packed gradients (a second slab with --accum-freq), two AdamW moments
 * of each trained float, the merged weights and the adapters' gradients
 * of a LoRA run, plus the activation arena; the rest is libraries,
 * OpenBLAS buffers and the loader's batches.
 */
static void
memory_json(const struct train *t, json_t *o)
{
	struct rusage ru;
	double need = 4.0 * t->m.nfloats + 8.0 * t->opt.pack.n +
	    4.0 * t->ngrad * (t->gacc ? 2 : 1) + vlm_run_bytes(t->run) +
	    (t->net != &t->m ? 4.0 * (t->net->nfloats + t->opt.pack.n) : 0);

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return;
	json_object_set_new(o, "peak_rss_mb", json_real(ru.ru_maxrss / 1024.0));
	json_object_set_new(o, "model_optimizer_activations_mb",
	    json_real(need / 1048576));
	json_object_set_new(o, "peak_ratio", json_real(ru.ru_maxrss * 1024.0 /
	    need));
}

/* -v: metrics line o in words on stderr. */
static void
log_plain(const struct train *t, json_t *o, const double *val)
{
	double ei = cmd_moe_mean(o, "eff_experts_image");
	double et = cmd_moe_mean(o, "eff_experts_text");

	fprintf(stderr, "step %lld/%lld  epoch %lld  loss %.4f (aux %.4f)  "
	    "lr %.2e  %.0f img/s", (long long)t->st.step,
	    (long long)t->o.steps, (long long)train_epoch(t),
	    json_real_value(json_object_get(o, "loss")),
	    json_real_value(json_object_get(o, "aux")),
	    json_real_value(json_object_get(o, "lr")),
	    json_real_value(json_object_get(o, "images_per_s")));
	if (!isnan(ei) || !isnan(et))
		fprintf(stderr, "  experts used: image %.1f, text %.1f", ei, et);
	if (val)
		fprintf(stderr, "  val R@1: text->image %.3f, image->text "
		    "%.3f", val[0], val[VLM_RECALL_NK]);
	fputc('\n', stderr);
}

void
train_log(struct train *t, const struct vlm_loss *L, float lr, double secs,
    double rate, const double *val)
{
	json_t *o;

	o = json_pack("{sIsIsIsfsfsfsfsfsfsf}", "step",
	    (json_int_t)t->st.step, "epoch", (json_int_t)train_epoch(t),
	    "samples", (json_int_t)t->st.samples, "lr", (double)lr, "loss",
	    (double)L->total, "contrastive", (double)L->contrastive, "aux",
	    (double)L->aux, "logit_scale", (double)L->logit_scale,
	    "seconds", secs, "images_per_s", rate);

	if (t->m.cfg.fusion.layers > 0 && !t->qa) /* model/fusion.c */
		json_object_update_new(o, json_pack("{sfsfsfsf}", "itm",
		    (double)L->itm, "itm_acc", (double)L->itm_acc, "mlm",
		    (double)L->mlm, "mlm_acc", (double)L->mlm_acc));
	if (t->qa)
		json_object_update_new(o, json_pack("{sfsf}", "qa",
		    (double)L->qa, "qa_acc", (double)L->qa_acc));
	if (t->m.cfg.moe.experts)
		json_object_set_new(o, "moe", moe_json(t));
	json_object_set_new(o, "device",
	    json_string(vlm_run_backend(t->run)->name));
	memory_json(t, o);
	train_sources_log(t, o);
	for (int i = 0; val && i < 2 * VLM_RECALL_NK; i++) {
		char k[64];
		snprintf(k, sizeof(k), "val_%s_retrieval_recall@%d",
		    i < VLM_RECALL_NK ? "image" : "text",
		    vlm_recall_ks[i % VLM_RECALL_NK]);
		json_object_set_new(o, k, json_real(val[i]));
	}
	if (t->verbose)
		log_plain(t, o, val);
	if (json_dumpf(o, t->metrics, JSON_COMPACT | JSON_REAL_PRECISION(7))
	    < 0 || fputc('\n', t->metrics) == EOF || fflush(t->metrics) != 0)
		err(1, "%s/metrics.jsonl", t->out);
	json_decref(o);
}

void
train_progress(const struct train *t, const struct vlm_loss *L, double rate)
{
	double eta;

	if (t->verbose || !isatty(STDERR_FILENO))
		return;
	eta = rate > 0 ? (t->o.steps - t->st.step) * (double)t->o.batch *
	    t->accum / rate : 0;
	fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %.1f img/s  eta %.0fs ",
	    (long long)t->st.step, (long long)t->o.steps, L->total, rate, eta);
}

/* The lines of in a resume at step keeps, onto out (NULL: counted
 * only); the number of lines dropped. */
static int64_t
keep_lines(FILE *in, FILE *out, int64_t step)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int64_t dropped = 0;

	while ((len = getline(&line, &cap, in)) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		json_t *s = json_object_get(o, "step");
		if (line[len - 1] == '\n' && json_is_integer(s) &&
		    json_integer_value(s) <= step) {
			if (out)
				fwrite(line, 1, len, out);
		} else {
			dropped++;
		}
		json_decref(o);
	}
	free(line);
	return dropped;
}

/*
 * --resume: RUN/metrics.jsonl rewritten without the lines of steps past
 * the checkpoint (a killed run logged them; they are logged again) and
 * without a line a kill cut short, when it has such lines. -1 and a
 * message on failure.
 */
int
train_log_resume(const struct train *t, const char *path)
{
	FILE *in = fopen(path, "r");
	struct vlm_atomic a;
	int rc = 0;

	if (!in)
		return errno == ENOENT ? 0 : vlm_error("'%s': %s", path,
		    strerror(errno));
	if (keep_lines(in, NULL, t->st.step) > 0 && !ferror(in)) {
		rewind(in);
		if ((rc = vlm_atomic_open(&a, path)) == 0) {
			keep_lines(in, a.f, t->st.step);
			if (ferror(in))
				vlm_atomic_abort(&a);
			else
				rc = vlm_atomic_commit(&a);
		}
	}
	if (ferror(in))
		rc = vlm_error("'%s': cannot read", path);
	fclose(in);
	return rc;
}
