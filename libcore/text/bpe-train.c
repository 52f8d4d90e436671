/*
 * bpe-train.c - learn byte-level BPE merges from captions, for models
 * trained from scratch. Texts are cleaned and split as the encoder does
 * (text.c), counted as words, and each step merges the most frequent
 * adjacent pair of symbols over all words (ties: the lower left symbol,
 * then the lower right one), so the result does not depend on hash order.
 * Pair counts are kept up to date incrementally: each pair knows the words
 * it occurs in, and a max-heap with stale entries skipped on pop finds
 * the next pair. The output is a merges text that vlm_bpe_from_merges()
 * reads, so training and encoding cannot disagree on the format.
 */
#include <stdlib.h>
#include <string.h>

#include "text/bpe-priv.h"
#include "text/text-priv.h"

/* Strings with an index: words (UTF-8 bytes) or symbols (token text). */
struct strtab {
	char *s;
	size_t n, cap;
	size_t *off;
	uint32_t *len;
	int count, capcount;
	int32_t *slot; /* index, -1 when empty */
	uint32_t mask;
};

struct pair {
	int32_t a, b;
	int64_t count;
	int32_t *where; /* words it occurs in (repeats and stale ones too) */
	int nwhere, capwhere;
	int stamp;      /* the step that last noted it as changed */
};

struct heapent {
	int64_t count;
	int32_t pair;
};

struct trainer {
	struct strtab words, syms;
	int64_t *freq;           /* per word */
	int32_t *wsym;           /* symbols of all words, word i at woff[i] */
	int *wlen, *stamp;
	size_t *woff;
	struct pair *p;
	int np, capp;
	uint64_t *pkey;          /* pair map: a << 32 | b -> index */
	int32_t *pidx;
	uint32_t pmask;
	struct heapent *heap;
	size_t nheap, capheap;
	int32_t *changed;        /* pairs whose count rose this step */
	int nchanged, capchanged;
	int capfreq;
	char *merges;            /* the output, "left right" lines */
	size_t nmerges_text, capmerges_text;
};

/*
 * Room for one more after n elements of size bytes in p (capacity *cap):
 * p itself, a larger copy, or NULL (p untouched) when out of memory.
 */
static void *
grow(void *p, int *cap, int n, size_t size)
{
	int nc = *cap ? 2 * *cap : 16;
	void *np;

	if (n < *cap)
		return p;
	if ((np = realloc(p, nc * size)))
		*cap = nc;
	return np;
}

/* Rebuild the index of t at twice the size. */
static int
strtab_rehash(struct strtab *t)
{
	uint32_t cap = t->mask ? 2 * (t->mask + 1) : 1024;
	int32_t *slot = malloc(cap * sizeof(*slot));

	if (!slot)
		return -1;
	memset(slot, 0xFF, cap * sizeof(*slot));
	for (int i = 0; i < t->count; i++) {
		uint32_t h = bpe_hash(t->s + t->off[i], t->len[i]) &
		    (cap - 1);
		while (slot[h] >= 0)
			h = (h + 1) & (cap - 1);
		slot[h] = i;
	}
	free(t->slot);
	t->slot = slot;
	t->mask = cap - 1;
	return 0;
}

/* The index of k[0, len) in t, added if new; -1 when out of memory. */
static int
strtab_add(struct strtab *t, const char *k, size_t len, int *added)
{
	uint32_t h;

	*added = 0;
	if ((uint32_t)t->count * 2 >= t->mask && strtab_rehash(t) < 0)
		return -1;
	for (h = bpe_hash(k, len) & t->mask; t->slot[h] >= 0;
	    h = (h + 1) & t->mask) {
		int i = t->slot[h];
		if (t->len[i] == len && !memcmp(t->s + t->off[i], k, len))
			return i;
	}
	if (t->n + len + 1 > t->cap) {
		size_t cap = 2 * (t->cap + len + 1);
		char *s = realloc(t->s, cap);
		if (!s)
			return -1;
		t->s = s, t->cap = cap;
	}
	if (t->count == t->capcount) {
		int cap = t->capcount ? 2 * t->capcount : 1024;
		size_t *off = realloc(t->off, cap * sizeof(*off));
		uint32_t *ln = off ? realloc(t->len, cap * sizeof(*ln)) : NULL;
		if (off)
			t->off = off;
		if (!ln)
			return -1;
		t->len = ln, t->capcount = cap;
	}
	memcpy(t->s + t->n, k, len);
	t->s[t->n + len] = 0;
	t->off[t->count] = t->n;
	t->len[t->count] = len;
	t->n += len + 1;
	t->slot[h] = t->count;
	*added = 1;
	return t->count++;
}

static void
strtab_free(struct strtab *t)
{
	free(t->s), free(t->off), free(t->len), free(t->slot);
}

static uint32_t
hash64(uint64_t k)
{
	return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32);
}

/* Rebuild the pair map at twice the size. */
static int
pair_rehash(struct trainer *tr)
{
	uint32_t cap = tr->pmask ? 2 * (tr->pmask + 1) : 4096;
	uint64_t *key = malloc(cap * sizeof(*key));
	int32_t *idx = malloc(cap * sizeof(*idx));

	if (!key || !idx) {
		free(key), free(idx);
		return -1;
	}
	memset(key, 0xFF, cap * sizeof(*key));
	for (int i = 0; i < tr->np; i++) {
		uint64_t k = (uint64_t)tr->p[i].a << 32 | (uint32_t)tr->p[i].b;
		uint32_t h = hash64(k) & (cap - 1);
		while (key[h] != UINT64_MAX)
			h = (h + 1) & (cap - 1);
		key[h] = k, idx[h] = i;
	}
	free(tr->pkey), free(tr->pidx);
	tr->pkey = key, tr->pidx = idx, tr->pmask = cap - 1;
	return 0;
}

/* The index of pair (a, b), added with count 0 if new; -1: no memory. */
static int
pair_get(struct trainer *tr, int32_t a, int32_t b)
{
	uint64_t key = (uint64_t)a << 32 | (uint32_t)b;
	uint32_t h;
	void *np;

	if ((uint32_t)tr->np * 2 >= tr->pmask && pair_rehash(tr) < 0)
		return -1;
	for (h = hash64(key) & tr->pmask; tr->pkey[h] != UINT64_MAX;
	    h = (h + 1) & tr->pmask)
		if (tr->pkey[h] == key)
			return tr->pidx[h];
	if (!(np = grow(tr->p, &tr->capp, tr->np, sizeof(*tr->p))))
		return -1;
	tr->p = np;
	tr->p[tr->np] = (struct pair){ .a = a, .b = b };
	tr->pkey[h] = key, tr->pidx[h] = tr->np;
	return tr->np++;
}

/* Whether heap entry x comes before y: higher count, then lower pair. */
static int
before(const struct trainer *tr, struct heapent x, struct heapent y)
{
	const struct pair *px = &tr->p[x.pair], *py = &tr->p[y.pair];

	if (x.count != y.count)
		return x.count > y.count;
	return px->a != py->a ? px->a < py->a : px->b < py->b;
}

static int
heap_push(struct trainer *tr, int32_t pair)
{
	struct heapent e = { tr->p[pair].count, pair };
	size_t i = tr->nheap++;

	if (tr->nheap > tr->capheap) {
		size_t cap = tr->capheap ? 2 * tr->capheap : 4096;
		struct heapent *h = realloc(tr->heap, cap * sizeof(*h));
		if (!h)
			return -1;
		tr->heap = h, tr->capheap = cap;
	}
	for (; i > 0 && before(tr, e, tr->heap[(i - 1) / 2]); i = (i - 1) / 2)
		tr->heap[i] = tr->heap[(i - 1) / 2];
	tr->heap[i] = e;
	return 0;
}

static struct heapent
heap_pop(struct trainer *tr)
{
	struct heapent top = tr->heap[0], e = tr->heap[--tr->nheap];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < tr->nheap) {
		if (c + 1 < tr->nheap &&
		    before(tr, tr->heap[c + 1], tr->heap[c]))
			c++;
		if (!before(tr, tr->heap[c], e))
			break;
		tr->heap[i] = tr->heap[c];
		i = c;
	}
	tr->heap[i] = e;
	return top;
}

/*
 * Add (sign 1) or remove (sign -1) the pairs of word w from the counts.
 * Adding notes w in the lists of the pairs holding symbol m (all pairs
 * when m < 0) and collects those pairs as changed at step.
 */
static int
count_word(struct trainer *tr, int w, int sign, int32_t m, int step)
{
	const int32_t *s = tr->wsym + tr->woff[w];
	void *np;

	for (int i = 0; i + 1 < tr->wlen[w]; i++) {
		int k = pair_get(tr, s[i], s[i + 1]);
		struct pair *p;
		if (k < 0)
			return -1;
		p = &tr->p[k];
		p->count += sign * tr->freq[w];
		if (sign < 0 || (m >= 0 && s[i] != m && s[i + 1] != m))
			continue;
		if (!(np = grow(p->where, &p->capwhere, p->nwhere,
		    sizeof(*p->where))))
			return -1;
		p->where = np;
		p->where[p->nwhere++] = w;
		if (m < 0 || p->stamp == step)
			continue;
		p->stamp = step;
		if (!(np = grow(tr->changed, &tr->capchanged, tr->nchanged,
		    sizeof(*tr->changed))))
			return -1;
		tr->changed = np;
		tr->changed[tr->nchanged++] = k;
	}
	return 0;
}

/* Replace pair k by symbol m in every word that holds it. */
static int
apply(struct trainer *tr, int k, int32_t m, int step)
{
	int32_t a = tr->p[k].a, b = tr->p[k].b;

	for (int i = 0; i < tr->p[k].nwhere; i++) {
		int w = tr->p[k].where[i], n = tr->wlen[w], j, o;
		int32_t *s = tr->wsym + tr->woff[w];
		if (tr->stamp[w] == step)
			continue;
		tr->stamp[w] = step;
		for (j = 0; j + 1 < n && !(s[j] == a && s[j + 1] == b); j++)
			;
		if (j + 1 >= n)
			continue; /* stale: merged away by an earlier step */
		if (count_word(tr, w, -1, -1, step) < 0)
			return -1;
		for (j = o = 0; j < n; o++) {
			if (j + 1 < n && s[j] == a && s[j + 1] == b) {
				s[o] = m;
				j += 2;
			} else
				s[o] = s[j++];
		}
		tr->wlen[w] = o;
		if (count_word(tr, w, 1, m, step) < 0)
			return -1;
	}
	return 0;
}

/* Clean and split the texts; count their words. */
static int
count_words(struct trainer *tr, const char *const *texts, size_t n)
{
	uint32_t *cp = NULL;
	char *w = NULL;
	size_t cap = 0;
	int rc = -1;

	for (size_t t = 0; t < n; t++) {
		size_t len = strlen(texts[t]), at = 0, plen, nc;
		if (len + 1 > cap) {
			uint32_t *ncp = realloc(cp, 3 * (len + 1) *
			    sizeof(*cp));
			char *nw = ncp ? realloc(w, 8 * (len + 1)) : NULL;
			cp = ncp ? ncp : cp, w = nw ? nw : w;
			if (!nw)
				goto out;
			cap = len + 1;
		}
		nc = vlm_text_clean(texts[t], len, cp, cp + len);
		for (; vlm_text_piece(cp + len, nc, &at, &plen) !=
		    VLM_PIECE_END; at += plen) {
			size_t wl = 0;
			int i, added;
			void *np;
			for (size_t k = 0; k < plen; k++)
				wl += vlm_utf8_put(cp[len + at + k], w + wl);
			if ((i = strtab_add(&tr->words, w, wl, &added)) < 0 ||
			    !(np = grow(tr->freq, &tr->capfreq, i,
			    sizeof(*tr->freq))))
				goto out;
			tr->freq = np;
			if (added)
				tr->freq[i] = 0;
			tr->freq[i]++;
		}
	}
	rc = 0;
out:
	free(cp), free(w);
	return rc;
}

/* The byte tokens as symbols 0..511, and each word as byte symbols. */
static int
init_words(struct trainer *tr)
{
	int nw = tr->words.count, added, byte_at[256];
	char tok[8];
	size_t o = 0;

	for (int b = 0; b < 256; b++)
		byte_at[vlm_bpe_byte_pos(b)] = b;
	for (int i = 0; i < 512; i++) {
		int n = vlm_utf8_put(vlm_bpe_byte_cp(byte_at[i % 256]), tok);
		if (i >= 256)
			memcpy(tok + n, VLM_BPE_EOW, 4), n += 4;
		if (strtab_add(&tr->syms, tok, n, &added) != i)
			return -1;
	}
	tr->wsym = malloc((tr->words.n + 1) * sizeof(*tr->wsym));
	tr->woff = malloc((nw + 1) * sizeof(*tr->woff));
	tr->wlen = malloc((nw + 1) * sizeof(*tr->wlen));
	tr->stamp = calloc(nw + 1, sizeof(*tr->stamp));
	if (!tr->wsym || !tr->woff || !tr->wlen || !tr->stamp)
		return -1;
	for (int i = 0; i < nw; i++) {
		const unsigned char *s = (const unsigned char *)tr->words.s +
		    tr->words.off[i];
		tr->woff[i] = o;
		tr->wlen[i] = tr->words.len[i];
		for (int j = 0; j < tr->wlen[i]; j++)
			tr->wsym[o++] = vlm_bpe_byte_pos(s[j]);
		tr->wsym[o - 1] += 256;
	}
	for (int i = 0; i < nw; i++)
		if (count_word(tr, i, 1, -1, 0) < 0)
			return -1;
	for (int k = 0; k < tr->np; k++)
		if (heap_push(tr, k) < 0)
			return -1;
	return 0;
}

/* Append a line "left right" to the merges text. */
static int
put_merge(struct trainer *tr, const char *a, size_t la, const char *b,
    size_t lb)
{
	size_t need = tr->nmerges_text + la + lb + 3;
	char *s;

	if (need > tr->capmerges_text) {
		size_t cap = 2 * need;
		if (!(s = realloc(tr->merges, cap)))
			return -1;
		tr->merges = s, tr->capmerges_text = cap;
	}
	s = tr->merges + tr->nmerges_text;
	memcpy(s, a, la);
	s[la] = ' ';
	memcpy(s + la + 1, b, lb);
	s[la + 1 + lb] = '\n';
	s[la + 2 + lb] = 0;
	tr->nmerges_text += la + lb + 2;
	return 0;
}

/* Merge the best pair; 1 when done (no pair occurs twice), -1 no memory. */
static int
step(struct trainer *tr, int n)
{
	struct heapent top;
	const struct strtab *sy = &tr->syms;
	int32_t a, b, m;
	char *cat;
	int added;

	do {
		if (tr->nheap == 0)
			return 1;
		top = heap_pop(tr);
		if (top.count != tr->p[top.pair].count &&
		    tr->p[top.pair].count > 0 && heap_push(tr, top.pair) < 0)
			return -1;
	} while (top.count != tr->p[top.pair].count);
	if (top.count < 2)
		return 1;
	a = tr->p[top.pair].a, b = tr->p[top.pair].b;
	if (!(cat = malloc(sy->len[a] + sy->len[b] + 1)))
		return -1;
	memcpy(cat, sy->s + sy->off[a], sy->len[a]);
	memcpy(cat + sy->len[a], sy->s + sy->off[b], sy->len[b]);
	m = strtab_add(&tr->syms, cat, sy->len[a] + sy->len[b], &added);
	free(cat);
	if (m < 0 || put_merge(tr, sy->s + sy->off[a], sy->len[a],
	    sy->s + sy->off[b], sy->len[b]) < 0)
		return -1;
	tr->nchanged = 0;
	if (apply(tr, top.pair, m, n) < 0)
		return -1;
	for (int i = 0; i < tr->nchanged; i++)
		if (heap_push(tr, tr->changed[i]) < 0)
			return -1;
	return 0;
}

static void
trainer_free(struct trainer *tr)
{
	strtab_free(&tr->words), strtab_free(&tr->syms);
	for (int k = 0; k < tr->np; k++)
		free(tr->p[k].where);
	free(tr->freq), free(tr->wsym), free(tr->wlen), free(tr->stamp);
	free(tr->woff), free(tr->p), free(tr->pkey), free(tr->pidx);
	free(tr->heap), free(tr->changed), free(tr->merges);
}

int
vlm_bpe_train(struct vlm_bpe *bpe, const char *const *texts, size_t n,
    int vocab_size)
{
	struct trainer tr = { 0 };
	int merges = 0, rc = 0;

	memset(bpe, 0, sizeof(*bpe));
	if (vocab_size < 515 || vocab_size > VLM_BPE_MAX_VOCAB)
		return vlm_error("vocabulary size %d: want 515 to %d",
		    vocab_size, VLM_BPE_MAX_VOCAB);
	if (count_words(&tr, texts, n) < 0 || init_words(&tr) < 0 ||
	    put_merge(&tr, "#version:", 9, "0.2", 3) < 0)
		rc = -1;
	while (rc == 0 && merges < vocab_size - 514) {
		rc = step(&tr, merges + 1);
		merges += rc == 0;
	}
	if (rc < 0)
		rc = vlm_error("out of memory learning BPE merges");
	else if (merges == 0)
		rc = vlm_error("no pair of symbols occurs twice in %zu "
		    "texts: nothing to learn", n);
	else
		rc = vlm_bpe_from_merges(bpe, tr.merges);
	trainer_free(&tr);
	return rc;
}
