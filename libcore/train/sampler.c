/*
 * sampler.c - batches drawn from several data sources with weights, and
 * the adaptive rule that moves the mix towards the sources the model
 * currently finds hard (the compact-fusion / JARed paper's adaptive
 * pre-training data sampling, in the simple form documented in train/train.h).
 *
 * Each source walks its own permutation epoch after epoch with its own
 * cursor; how many examples of a batch each source gives is drawn by
 * systematic sampling from (seed, step, micro-batch), so the whole stream
 * is a function of the options and the saved state, never of timing.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* The sampler's state; opaque outside this file (train/train.h). */
struct vlm_sampler {
	struct vlm_sampler_opts o;
	int S;
	int64_t n[VLM_SOURCES_MAX], lo[VLM_SOURCES_MAX];
	double w[VLM_SOURCES_MAX];              /* normalised */
	struct vlm_source_state st[VLM_SOURCES_MAX]; /* saved and restored */
	int64_t done;                           /* last step folded in */
	double sum[VLM_SOURCES_MAX];            /* the step in progress */
	int64_t cnt[VLM_SOURCES_MAX];
	uint32_t *perm[VLM_SOURCES_MAX];
	int64_t perm_epoch[VLM_SOURCES_MAX];
};

/* the seed of source s's permutations and item seeds */
static uint64_t
source_seed(uint64_t seed, int s)
{
	return vlm_item_seed(seed, -1, s);
}

static int
init(struct vlm_sampler *s, int S, const int64_t *n, const double *w,
    const struct vlm_sampler_opts *o)
{
	double sum = 0;
	int64_t lo = 0;

	if (S < 1 || S > VLM_SOURCES_MAX)
		return vlm_error("%d data sources, 1 to %d allowed", S,
		    VLM_SOURCES_MAX);
	if (!(o->tau > 0) || !(o->decay >= 0 && o->decay < 1) ||
	    !(o->eps >= 0 && o->eps <= 1))
		return vlm_error("sampler: temperature %g, decay %g, floor %g: "
		    "out of range", o->tau, o->decay, o->eps);
	s->o = *o;
	s->S = S;
	for (int i = 0; i < S; i++) {
		double wi = w ? w[i] : n[i] < 0 ? 1 : (double)n[i];
		if (n[i] == 0 || n[i] > (int64_t)UINT32_MAX || !(wi > 0) ||
		    !isfinite(wi))
			return vlm_error("data source %d: %lld items, weight "
			    "%g", i + 1, (long long)n[i], wi);
		s->n[i] = n[i];
		s->lo[i] = lo;
		lo += n[i] > 0 ? n[i] : 0;
		s->w[i] = wi;
		sum += wi;
		s->perm_epoch[i] = -1;
	}
	for (int i = 0; i < S; i++) {
		s->w[i] /= sum;
		if (n[i] > 0 && !(s->perm[i] = malloc(n[i] *
		    sizeof(*s->perm[i]))))
			return vlm_error("sampler: out of memory");
	}
	return 0;
}

struct vlm_sampler *
vlm_sampler_new(int S, const int64_t *n, const double *w,
    const struct vlm_sampler_opts *o)
{
	struct vlm_sampler *s = calloc(1, sizeof(*s));

	if (!s) {
		vlm_error("sampler: out of memory");
		return NULL;
	}
	if (init(s, S, n, w, o) < 0) {
		vlm_sampler_free(s);
		return NULL;
	}
	return s;
}

void
vlm_sampler_free(struct vlm_sampler *s)
{
	if (!s)
		return;
	for (int i = 0; i < VLM_SOURCES_MAX; i++)
		free(s->perm[i]);
	free(s);
}

int64_t
vlm_sampler_done(const struct vlm_sampler *s)
{
	return s->done;
}

void
vlm_sampler_state(const struct vlm_sampler *s, struct vlm_source_state *st)
{
	memcpy(st, s->st, s->S * sizeof(*st));
}

void
vlm_sampler_restore(struct vlm_sampler *s, const struct vlm_source_state *st,
    int64_t done)
{
	memcpy(s->st, st, s->S * sizeof(*st));
	s->done = done;
}

/*
 * The rule: fixed, p = w; adaptive, p = (1 - eps) q + eps / S with
 * q_s proportional to w_s exp(L_s / tau), a source not seen yet taking
 * the mean L of those seen (q = w while none is).
 */
void
vlm_sampler_rule(int S, const double *w, const double *L, const int *seen,
    const struct vlm_sampler_opts *o, double *p)
{
	double mean = 0, mx = -INFINITY, sum = 0, l[VLM_SOURCES_MAX];
	int nseen = 0;

	assert(S >= 1 && S <= VLM_SOURCES_MAX);
	for (int s = 0; s < S; s++)
		if (seen[s]) {
			mean += L[s];
			nseen++;
		}
	if (!o->adaptive || nseen == 0) {
		memcpy(p, w, S * sizeof(*p));
		return;
	}
	mean /= nseen;
	for (int s = 0; s < S; s++) {
		l[s] = (seen[s] ? L[s] : mean) / o->tau;
		mx = fmax(mx, l[s]);
	}
	for (int s = 0; s < S; s++) {
		p[s] = w[s] * exp(l[s] - mx);
		sum += p[s];
	}
	for (int s = 0; s < S; s++)
		p[s] = (1 - o->eps) * p[s] / sum + o->eps / S;
}

void
vlm_sampler_probs(const struct vlm_sampler *s, int64_t step, double *p)
{
	double L[VLM_SOURCES_MAX];
	int seen[VLM_SOURCES_MAX], prev;

	/* step's batches use the losses through step - 2 */
	assert(step - 2 == s->done || step - 2 == s->done - 1);
	prev = step - 2 < s->done;
	for (int i = 0; i < s->S; i++) {
		L[i] = prev ? s->st[i].ema_prev : s->st[i].ema;
		seen[i] = prev ? s->st[i].seen_prev : s->st[i].seen;
	}
	vlm_sampler_rule(s->S, s->w, L, seen, &s->o, p);
}

/*
 * Systematic sampling: B positions (u + j) / B, j = 0..B-1, u uniform
 * from (seed, step, micro); source s gets those in [P_{s-1}, P_s), P the
 * cumulative probabilities (P_S = 1).
 */
void
vlm_sampler_counts(const double *p, int S, int B, uint64_t seed,
    int64_t step, int micro, int *count)
{
	struct vlm_rng r;
	double u, cum = 0;
	int below = 0;

	vlm_rng_seed2(&r, vlm_item_seed(seed, step, micro), 0x5a3b1e);
	u = vlm_rng_uniform(&r);
	for (int s = 0; s < S; s++) {
		int k;
		cum += p[s];
		k = s == S - 1 ? B : (int)fmax(0, fmin(B, ceil(cum * B - u)));
		if (k < below)
			k = below;
		count[s] = k - below;
		below = k;
	}
}

/* the next item of source i, its cursor moved on */
static void
next_item(struct vlm_sampler *s, int i, struct vlm_feed *f)
{
	struct vlm_source_state *st = &s->st[i];
	uint64_t seed = source_seed(s->o.seed, i);
	int64_t k;

	if (st->pos >= s->n[i]) {
		st->epoch++;
		st->pos = 0;
	}
	if (s->perm_epoch[i] != st->epoch) {
		vlm_perm_shuffle(s->perm[i], s->n[i], seed, st->epoch);
		s->perm_epoch[i] = st->epoch;
	}
	k = s->perm[i][st->pos++];
	f->index = s->lo[i] + k;
	f->seed = vlm_item_seed(seed, st->epoch, k);
	f->lo = s->lo[i];
	f->n = s->n[i];
}

void
vlm_sampler_plan(struct vlm_sampler *s, int64_t step, int micro, int B,
    struct vlm_feed *items, int *src)
{
	double p[VLM_SOURCES_MAX];
	int count[VLM_SOURCES_MAX], j = 0;

	vlm_sampler_probs(s, step, p);
	vlm_sampler_counts(p, s->S, B, s->o.seed, step, micro, count);
	for (int i = 0; i < s->S; i++)
		for (int c = 0; c < count[i]; c++, j++) {
			if (s->n[i] > 0)
				next_item(s, i, &items[j]);
			else /* a stream: the caller's to fill */
				items[j] = (struct vlm_feed){ -1, 0, 0, 0 };
			src[j] = i;
		}
	assert(j == B);
}

void
vlm_sampler_add(struct vlm_sampler *s, const int *src, const double *loss,
    int B)
{
	for (int j = 0; j < B; j++) {
		assert(src[j] >= 0 && src[j] < s->S);
		s->sum[src[j]] += loss[j];
		s->cnt[src[j]]++;
	}
}

void
vlm_sampler_update(struct vlm_sampler *s, int64_t step)
{
	for (int i = 0; i < s->S; i++) {
		struct vlm_source_state *st = &s->st[i];
		st->ema_prev = st->ema;
		st->seen_prev = st->seen;
		if (s->cnt[i] > 0) {
			double m = s->sum[i] / s->cnt[i];
			st->ema = st->seen ? s->o.decay * st->ema +
			    (1 - s->o.decay) * m : m;
			st->seen = 1;
		}
		s->sum[i] = 0;
		s->cnt[i] = 0;
	}
	s->done = step;
}
