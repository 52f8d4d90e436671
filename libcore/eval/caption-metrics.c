/*
 * eval/caption-metrics.c - BLEU-1..4 and CIDEr-D of candidate captions
 * against reference captions, as the COCO caption evaluation
 * (pycocoevalcap bleu_scorer.py with option "closest", cider_scorer.py)
 * computes them, after a simple tokenisation that stands in for its
 * Java PTBTokenizer (vlm_caption_tokenize).
 *
 * Words are interned to ids and n-grams (n = 1..4) to gram ids in one
 * hash table; a sentence is its sorted (gram, count) list.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define NG 4 /* n-gram orders */

struct gc {
	int g, c; /* gram id, count */
};

struct sent {
	int len;        /* words */
	int n;          /* distinct grams */
	struct gc *gc;  /* [n] sorted by g */
};

/* Keys: a word (n = 0, its text) or an n-gram of word ids (n = 1..4). */
struct key {
	int n;
	int w[NG];
	const char *s;
	size_t slen;
};

struct table {
	struct key *k; /* [cap]; n = -1 empty */
	int *id;       /* [cap] */
	size_t cap, used;
	int next[NG + 1]; /* ids handed out: words (0), grams (1..4 share) */
	int *gram_n;   /* [ngram] the order of each gram id */
	int gcap;
};

static uint64_t
key_hash(const struct key *k)
{
	uint64_t h = 1469598103934665603u ^ (uint64_t)k->n;

	if (k->n == 0)
		for (size_t i = 0; i < k->slen; i++)
			h = (h ^ (unsigned char)k->s[i]) * 1099511628211u;
	else
		for (int i = 0; i < k->n; i++)
			h = (h ^ (uint32_t)k->w[i]) * 1099511628211u;
	return h;
}

static int
key_eq(const struct key *a, const struct key *b)
{
	if (a->n != b->n)
		return 0;
	if (a->n == 0)
		return a->slen == b->slen && !memcmp(a->s, b->s, a->slen);
	return !memcmp(a->w, b->w, a->n * sizeof(*a->w));
}

static int
table_grow(struct table *t)
{
	size_t cap = t->cap ? 2 * t->cap : 1024;
	struct key *k = malloc(cap * sizeof(*k));
	int *id = malloc(cap * sizeof(*id));

	if (!k || !id) {
		free(k);
		free(id);
		return vlm_error("out of memory");
	}
	for (size_t i = 0; i < cap; i++)
		k[i].n = -1;
	for (size_t i = 0; i < t->cap; i++) {
		size_t j;
		if (t->k[i].n < 0)
			continue;
		for (j = key_hash(&t->k[i]) & (cap - 1); k[j].n >= 0;
		    j = (j + 1) & (cap - 1))
			;
		k[j] = t->k[i], id[j] = t->id[i];
	}
	free(t->k);
	free(t->id);
	t->k = k, t->id = id, t->cap = cap;
	return 0;
}

/* The id of key k, added when new (a word's text must outlive t); -1 out
 * of memory. */
static int
table_id(struct table *t, const struct key *k)
{
	size_t j;

	if (2 * (t->used + 1) > t->cap && table_grow(t) < 0)
		return -1;
	for (j = key_hash(k) & (t->cap - 1); t->k[j].n >= 0;
	    j = (j + 1) & (t->cap - 1))
		if (key_eq(&t->k[j], k))
			return t->id[j];
	if (k->n > 0 && t->next[1] == t->gcap) {
		int cap = t->gcap ? 2 * t->gcap : 1024;
		int *gn = realloc(t->gram_n, cap * sizeof(*gn));
		if (!gn)
			return vlm_error("out of memory");
		t->gram_n = gn, t->gcap = cap;
	}
	t->k[j] = *k;
	t->id[j] = t->next[k->n ? 1 : 0]++;
	if (k->n > 0)
		t->gram_n[t->id[j]] = k->n;
	t->used++;
	return t->id[j];
}

static int
gc_cmp(const void *a, const void *b)
{
	const struct gc *x = a, *y = b;

	return (x->g > y->g) - (x->g < y->g);
}

/* s := the grams of the tokenised text tok (words separated by single
 * spaces, kept by t); 0, or -1 out of memory. */
static int
sent_cook(struct sent *s, struct table *t, const char *tok)
{
	int nw = 0, *w, k = 0;

	for (const char *p = tok; *p; p++)
		nw += *p != ' ' && (p == tok || p[-1] == ' ');
	w = malloc((nw + 1) * sizeof(*w));
	s->gc = malloc((size_t)(NG * nw + 1) * sizeof(*s->gc));
	s->len = nw, s->n = 0;
	if (!w || !s->gc) {
		free(w);
		return vlm_error("out of memory");
	}
	for (const char *p = tok; *p; k++) {
		struct key key = { .n = 0, .s = p, .slen = strcspn(p, " ") };
		if ((w[k] = table_id(t, &key)) < 0)
			goto fail;
		p += key.slen + (p[key.slen] == ' ');
	}
	for (int n = 1; n <= NG; n++)
		for (int i = 0; i + n <= nw; i++) {
			struct key key = { .n = n };
			memcpy(key.w, w + i, n * sizeof(*w));
			if ((s->gc[s->n].g = table_id(t, &key)) < 0)
				goto fail;
			s->gc[s->n++].c = 1;
		}
	qsort(s->gc, s->n, sizeof(*s->gc), gc_cmp);
	k = 0;
	for (int i = 0; i < s->n; i++)
		if (k > 0 && s->gc[k - 1].g == s->gc[i].g)
			s->gc[k - 1].c++;
		else
			s->gc[k++] = s->gc[i];
	s->n = k;
	free(w);
	return 0;
fail:
	free(w);
	return -1;
}

/* The count of gram g in s (0 when absent). */
static int
sent_count(const struct sent *s, int g)
{
	int lo = 0, hi = s->n;

	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (s->gc[mid].g < g)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->n && s->gc[lo].g == g ? s->gc[lo].c : 0;
}

/* The characters the tokenisation drops: those of pycocoevalcap's
 * PUNCTUATIONS list, the quotes and brackets PTBTokenizer turns into its
 * members (`` '' -LRB- -RRB- -LCB- -RCB-). */
static const char punct[] = "'`\".?!,:-;(){}";

char *
vlm_caption_tokenize(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out) {
		vlm_error("out of memory");
		return NULL;
	}
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (isspace(c) || strchr(punct, c)) {
			if (o > out && o[-1] != ' ')
				*o++ = ' ';
			continue;
		}
		*o++ = c < 128 ? (char)tolower(c) : (char)c;
	}
	if (o > out && o[-1] == ' ')
		o--;
	*o = '\0';
	return out;
}

/* BLEU's statistics of one image, added to the corpus totals (as
 * bleu_scorer.cook_test, reference length "closest"). */
static void
bleu_add(double tot[2 + 2 * NG], const struct table *t,
    const struct sent *h, const struct sent *r, int m)
{
	int reflen = r[0].len, best = abs(r[0].len - h->len);

	for (int j = 1; j < m; j++) {
		int d = abs(r[j].len - h->len);
		if (d < best || (d == best && r[j].len < reflen))
			best = d, reflen = r[j].len;
	}
	tot[0] += h->len, tot[1] += reflen;
	for (int k = 0; k < NG; k++)
		tot[2 + k] += h->len - k > 0 ? h->len - k : 0;
	for (int i = 0; i < h->n; i++) {
		int mx = 0;
		for (int j = 0; j < m; j++) {
			int c = sent_count(&r[j], h->gc[i].g);
			mx = c > mx ? c : mx;
		}
		tot[2 + NG + t->gram_n[h->gc[i].g] - 1] +=
		    h->gc[i].c < mx ? h->gc[i].c : mx;
	}
}

/* BLEU-1..4 from the totals, as bleu_scorer.compute_score. */
static void
bleu_final(double bleu[NG], const double tot[2 + 2 * NG])
{
	const double tiny = 1e-15, small = 1e-9;
	double b = 1, ratio = (tot[0] + tiny) / (tot[1] + small);

	for (int k = 0; k < NG; k++) {
		b *= (tot[2 + NG + k] + tiny) / (tot[2 + k] + small);
		bleu[k] = pow(b, 1.0 / (k + 1));
		if (ratio < 1)
			bleu[k] *= exp(1 - 1 / ratio);
	}
}

/* CIDEr-D's tf-idf vector of s: w[i] the weight of gram s->gc[i],
 * norm the per-order norms; the length is its bigram count (as
 * cider_scorer's counts2vec). */
static int
cider_vec(double *w, double norm[NG], const struct table *t,
    const struct sent *s, const int *df, double ref_len)
{
	int len = 0;

	for (int n = 0; n < NG; n++)
		norm[n] = 0;
	for (int i = 0; i < s->n; i++) {
		int g = s->gc[i].g, n = t->gram_n[g] - 1;
		w[i] = s->gc[i].c * (ref_len - log(df[g] > 1 ? df[g] : 1));
		norm[n] += w[i] * w[i];
		len += n == 1 ? s->gc[i].c : 0;
	}
	for (int n = 0; n < NG; n++)
		norm[n] = sqrt(norm[n]);
	return len;
}

/* CIDEr-D of one image: hypothesis h against its m references r. */
static double
cider_image(const struct table *t, const struct sent *h,
    const struct sent *r, int m, const int *df, double ref_len, double *wh,
    double *wr)
{
	const double sigma = 6;
	double nh[NG], nr[NG], score[NG] = { 0 }, total = 0;
	int lh = cider_vec(wh, nh, t, h, df, ref_len);

	for (int j = 0; j < m; j++) {
		int lr = cider_vec(wr, nr, t, &r[j], df, ref_len), k = 0;
		double val[NG] = { 0 }, delta = lh - lr;
		for (int i = 0; i < h->n; i++) {
			int g = h->gc[i].g;
			while (k < r[j].n && r[j].gc[k].g < g)
				k++;
			if (k < r[j].n && r[j].gc[k].g == g)
				val[t->gram_n[g] - 1] += (wh[i] < wr[k] ?
				    wh[i] : wr[k]) * wr[k];
		}
		for (int n = 0; n < NG; n++) {
			if (nh[n] != 0 && nr[n] != 0)
				val[n] /= nh[n] * nr[n];
			score[n] += val[n] * exp(-delta * delta /
			    (2 * sigma * sigma));
		}
	}
	for (int n = 0; n < NG; n++)
		total += score[n];
	return total / NG / m * 10;
}

struct work {
	struct table t;
	char **tok;          /* [N + R] tokenised hypotheses, then references */
	struct sent *s;      /* [N + R] hypotheses, then references by image */
	int *start;          /* [N + 1] image i's references: s[N + start[i]..] */
	int *df;             /* [grams] document frequency */
	double *wh, *wr;     /* [4 * longest] weights */
};

static void
work_release(struct work *w, int ns)
{
	for (int i = 0; i < ns; i++) {
		free(w->tok[i]);
		free(w->s[i].gc);
	}
	free(w->tok);
	free(w->s);
	free(w->start);
	free(w->df);
	free(w->wh);
	free(w->wr);
	free(w->t.k);
	free(w->t.id);
	free(w->t.gram_n);
}

/* Tokenise and cook every caption, references grouped by image. */
static int
work_cook(struct work *w, char *const *hyp, int N, char *const *refs,
    const int *ref_image, int R, int *ns)
{
	int *fill = calloc(N + 1, sizeof(*fill)), longest = 1;

	w->tok = calloc(N + R, sizeof(*w->tok));
	w->s = calloc(N + R, sizeof(*w->s));
	w->start = calloc(N + 1, sizeof(*w->start));
	if (!fill || !w->tok || !w->s || !w->start)
		return free(fill), vlm_error("out of memory");
	for (int j = 0; j < R; j++)
		if (ref_image[j] < 0 || ref_image[j] >= N)
			return free(fill), vlm_error("reference %d: image %d "
			    "out of range", j, ref_image[j]);
		else
			w->start[ref_image[j] + 1]++;
	for (int i = 0; i < N; i++)
		w->start[i + 1] += w->start[i];
	for (int j = 0; j < N + R; j++) {
		int i = j < N ? j : N + w->start[ref_image[j - N]] +
		    fill[ref_image[j - N]]++;
		const char *text = j < N ? hyp[j] : refs[j - N];
		if (!text)
			text = "";
		if (!(w->tok[i] = vlm_caption_tokenize(text)) ||
		    sent_cook(&w->s[i], &w->t, w->tok[i]) < 0)
			return free(fill), -1;
		*ns = j + 1;
		longest = w->s[i].n > longest ? w->s[i].n : longest;
	}
	free(fill);
	w->df = calloc(w->t.next[1] + 1, sizeof(*w->df));
	w->wh = malloc(longest * sizeof(*w->wh));
	w->wr = malloc(longest * sizeof(*w->wr));
	if (!w->df || !w->wh || !w->wr)
		return vlm_error("out of memory");
	return 0;
}

/* Document frequencies over the reference sets of the scored images;
 * the number of those images. */
static int
work_df(struct work *w, char *const *hyp, int N)
{
	int *last = malloc((w->t.next[1] + 1) * sizeof(*last)), n = 0;

	if (!last)
		return vlm_error("out of memory");
	for (int g = 0; g < w->t.next[1]; g++)
		last[g] = -1;
	for (int i = 0; i < N; i++) {
		if (!hyp[i] || w->start[i] == w->start[i + 1])
			continue;
		n++;
		for (int j = w->start[i]; j < w->start[i + 1]; j++)
			for (int k = 0; k < w->s[N + j].n; k++) {
				int g = w->s[N + j].gc[k].g;
				w->df[g] += last[g] != i;
				last[g] = i;
			}
	}
	free(last);
	return n;
}

int
vlm_caption_metrics(struct vlm_caption_scores *sc, double *cider,
    char *const *hyp, int N, char *const *refs, const int *ref_image, int R)
{
	struct work w = { 0 };
	double tot[2 + 2 * NG] = { 0 }, sum = 0;
	int ns = 0, n, rc = -1;

	if (work_cook(&w, hyp, N, refs, ref_image, R, &ns) < 0)
		goto out;
	if ((n = work_df(&w, hyp, N)) <= 0) {
		if (n == 0)
			vlm_error("no image has both a candidate and a "
			    "reference caption");
		goto out;
	}
	for (int i = 0; i < N; i++) {
		const struct sent *r = &w.s[N + w.start[i]];
		int m = w.start[i + 1] - w.start[i];
		double c = NAN;
		if (hyp[i] && m > 0) {
			bleu_add(tot, &w.t, &w.s[i], r, m);
			c = cider_image(&w.t, &w.s[i], r, m, w.df, log(n),
			    w.wh, w.wr);
			sum += c;
		}
		if (cider)
			cider[i] = c;
	}
	bleu_final(sc->bleu, tot);
	sc->cider = sum / n;
	sc->n = n;
	rc = 0;
out:
	work_release(&w, ns);
	return rc;
}
