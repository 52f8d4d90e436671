/*
 * bpe.c - CLIP's byte-level BPE tokenizer: building it from a merges list,
 * writing that list back, and encoding text exactly as OpenCLIP's
 * SimpleTokenizer (see text.c for the cleaning and splitting). Merge
 * ranks live in an open-addressing hash map keyed by the symbol pair;
 * words already seen come from a cache, so a caption costs a few hash
 * probes per word.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "text/bpe-priv.h"
#include "text/text-priv.h"

#define PAIR_EMPTY UINT64_MAX
#define CACHE_SLOTS (1 << 16)        /* power of two */
#define CACHE_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_KEYBYTES (1 << 20)
#define CACHE_IDS (1 << 18)
#define CACHE_WORD 64                /* longer words are not cached */
#define SMALL_TEXT 256               /* bytes encoded without malloc */

/* Encoded words: an open-addressing map from word bytes to their ids. */
struct bpe_cache {
	pthread_mutex_t mu;
	uint32_t *slot; /* (CACHE_SLOTS) entry + 1, 0 when empty */
	struct centry {
		uint32_t hash, key, klen, ids, nids;
	} *e;
	int n;
	char *keys;
	size_t nkeys;
	int32_t *ids;
	size_t nids;
};

static inline uint32_t
hash64(uint64_t k)
{
	return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32);
}

/* The rank of merging symbols a and b, INT32_MAX if none. */
static inline int32_t
pair_rank(const struct vlm_bpe_tables *t, int32_t a, int32_t b)
{
	uint64_t key = (uint64_t)a << 32 | (uint32_t)b;

	for (uint32_t h = hash64(key) & t->pmask;; h = (h + 1) & t->pmask) {
		if (t->pkey[h] == key)
			return t->prank[h];
		if (t->pkey[h] == PAIR_EMPTY)
			return INT32_MAX;
	}
}

/* Set the rank of pair (a, b); a later merge of the same pair wins. */
static void
pair_set(struct vlm_bpe_tables *t, int32_t a, int32_t b, int32_t rank)
{
	uint64_t key = (uint64_t)a << 32 | (uint32_t)b;
	uint32_t h = hash64(key) & t->pmask;

	while (t->pkey[h] != PAIR_EMPTY && t->pkey[h] != key)
		h = (h + 1) & t->pmask;
	t->pkey[h] = key;
	t->prank[h] = rank;
}

/* Append token string a + b (b may be NULL) as the next token. */
static void
add_token(struct vlm_bpe_tables *t, const char *a, const char *b)
{
	size_t la = strlen(a), lb = b ? strlen(b) : 0;

	assert(t->nstr + la + lb + 1 <= t->capstr);
	t->off[t->ntok] = t->nstr;
	t->sym[t->ntok] = t->ntok;
	t->out[t->ntok] = t->ntok;
	memcpy(t->str + t->nstr, a, la);
	if (lb)
		memcpy(t->str + t->nstr + la, b, lb);
	t->str[t->nstr + la + lb] = 0;
	t->nstr += la + lb + 1;
	t->ntok++;
}

static struct bpe_cache *
cache_new(void)
{
	struct bpe_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->slot = calloc(CACHE_SLOTS, sizeof(*c->slot));
	c->e = malloc(CACHE_ENTRIES * sizeof(*c->e));
	c->keys = malloc(CACHE_KEYBYTES);
	c->ids = malloc(CACHE_IDS * sizeof(*c->ids));
	if (!c->slot || !c->e || !c->keys || !c->ids ||
	    pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->slot), free(c->e), free(c->keys), free(c->ids);
		free(c);
		return NULL;
	}
	return c;
}

static void
cache_free(struct bpe_cache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->mu);
	free(c->slot), free(c->e), free(c->keys), free(c->ids);
	free(c);
}

static void
tables_free(struct vlm_bpe_tables *t)
{
	if (!t)
		return;
	free(t->off), free(t->sym), free(t->out), free(t->merge);
	free(t->str), free(t->pkey), free(t->prank);
	cache_free(t->cache);
	free(t);
}

/* Allocate empty tables for up to nmerges merges and nstr string bytes. */
static struct vlm_bpe_tables *
tables_new(long nmerges, size_t nstr)
{
	struct vlm_bpe_tables *t = calloc(1, sizeof(*t));
	size_t ntok = 512 + nmerges, cap = 1024;

	if (!t)
		return NULL;
	while (cap < 2 * (size_t)nmerges)
		cap *= 2;
	t->pmask = cap - 1;
	t->capstr = nstr + 512 * 8;
	t->off = malloc(ntok * sizeof(*t->off));
	t->sym = malloc(ntok * sizeof(*t->sym));
	t->out = malloc(ntok * sizeof(*t->out));
	t->merge = malloc((nmerges + 1) * sizeof(*t->merge));
	t->str = malloc(t->capstr);
	t->pkey = malloc(cap * sizeof(*t->pkey));
	t->prank = malloc(cap * sizeof(*t->prank));
	t->cache = cache_new();
	if (!t->off || !t->sym || !t->out || !t->merge || !t->str ||
	    !t->pkey || !t->prank || !t->cache) {
		tables_free(t);
		return NULL;
	}
	memset(t->pkey, 0xFF, cap * sizeof(*t->pkey));
	return t;
}


/* Token strings by value while building: open addressing over tokens. */
struct strset {
	int32_t *slot; /* token, -1 when empty */
	uint32_t mask;
};

/* The token spelled s[0, n), or -1 with *at where to insert it. */
static int32_t
strset_find(const struct strset *m, const struct vlm_bpe_tables *t,
    const char *s, size_t n, uint32_t *at)
{
	uint32_t h = bpe_hash(s, n) & m->mask;

	for (;; h = (h + 1) & m->mask) {
		int32_t p = m->slot[h];
		if (p < 0) {
			*at = h;
			return -1;
		}
		if (strlen(bpe_str(t, p)) == n && !memcmp(bpe_str(t, p), s, n))
			return p;
	}
}

/* Add the newest token to the set, or note that it repeats a symbol. */
static int32_t
strset_add_last(struct strset *m, struct vlm_bpe_tables *t)
{
	int32_t p = t->ntok - 1, q;
	const char *s = bpe_str(t, p);
	uint32_t at;

	if ((q = strset_find(m, t, s, strlen(s), &at)) >= 0) {
		t->sym[p] = q;
		t->out[q] = p;
		return q;
	}
	m->slot[at] = p;
	return p;
}

/* The 512 byte tokens: bytes_to_unicode() order, then with </w>. */
static void
add_bytes(struct vlm_bpe_tables *t, struct strset *m)
{
	char at_pos[256][5];

	for (int b = 0; b < 256; b++) {
		int pos = vlm_bpe_byte_pos(b);
		at_pos[pos][vlm_utf8_put(vlm_bpe_byte_cp(b), at_pos[pos])] = 0;
		t->bytepos[b] = pos;
	}
	for (int i = 0; i < 512; i++) {
		add_token(t, at_pos[i % 256], i < 256 ? NULL : VLM_BPE_EOW);
		strset_add_last(m, t);
	}
}

/* Split line[0, n) into two whitespace-separated fields; 0 if blank. */
static int
fields(const char *line, size_t n, const char *f[2], size_t len[2])
{
	int k = 0;
	size_t i = 0;

	while (1) {
		while (i < n && strchr(" \t\r\v\f", line[i]) && line[i])
			i++;
		if (i == n)
			return k;
		if (k == 2)
			return 3;
		f[k] = line + i;
		while (i < n && !(strchr(" \t\r\v\f", line[i]) && line[i]))
			i++;
		len[k] = line + i - f[k];
		k++;
	}
}

/* Parse and add the merges of text[0, len) (header already skipped). */
static int
add_merges(struct vlm_bpe *bpe, struct strset *m, const char *text,
    size_t len, long max, int lineno, const char *what)
{
	struct vlm_bpe_tables *t = bpe->t;
	const char *p = text, *end = text + len, *f[2];
	size_t flen[2];
	int32_t a, b;
	uint32_t at;

	for (; p < end && bpe->nmerges < max; lineno++) {
		const char *e = memchr(p, '\n', end - p);
		size_t n = (e ? e : end) - p;
		int k = fields(p, n, f, flen);
		if (k != 0 && k != 2)
			return vlm_error("%s: line %d: want 'left right'",
			    what, lineno);
		p += n + 1;
		if (k == 0)
			continue;
		if ((a = strset_find(m, t, f[0], flen[0], &at)) < 0 ||
		    (b = strset_find(m, t, f[1], flen[1], &at)) < 0)
			return vlm_error("%s: line %d: unknown token '%.*s'",
			    what, lineno, (int)flen[a < 0 ? 0 : 1],
			    f[a < 0 ? 0 : 1]);
		add_token(t, bpe_str(t, a), bpe_str(t, b));
		t->merge[bpe->nmerges][0] = a;
		t->merge[bpe->nmerges][1] = b;
		t->merge[bpe->nmerges][2] = strset_add_last(m, t);
		pair_set(t, a, b, bpe->nmerges++);
	}
	return 0;
}

int
vlm_bpe_build(struct vlm_bpe *bpe, const char *text, size_t len, long max,
    const char *what)
{
	struct strset m;
	long lines = 1;
	int lineno = 1, rc;
	uint32_t cap = 1024;

	memset(bpe, 0, sizeof(*bpe));
	for (const char *p = text; (p = memchr(p, '\n', text + len - p)); p++)
		if (++lines > max + 1 && max >= 0) { /* header + max merges */
			len = p - text;
			break;
		}
	if (max < 0 || max > lines)
		max = lines;
	while (cap < 2 * (512 + max))
		cap *= 2;
	m.mask = cap - 1;
	if (!(m.slot = malloc(cap * sizeof(*m.slot))) ||
	    !(bpe->t = tables_new(max, len))) {
		free(m.slot);
		return vlm_error("%s: out of memory for %ld merges", what, max);
	}
	memset(m.slot, 0xFF, cap * sizeof(*m.slot));
	add_bytes(bpe->t, &m);
	if (len > 0) { /* the header, e.g. "#version: 0.2" */
		const char *e = memchr(text, '\n', len);
		size_t skip = e ? (size_t)(e - text) + 1 : len;
		text += skip, len -= skip, lineno++;
	}
	rc = add_merges(bpe, &m, text, len, max, lineno, what);
	free(m.slot);
	if (rc == 0 && bpe->nmerges == 0)
		rc = vlm_error("%s: no merges", what);
	if (rc < 0) {
		vlm_bpe_release(bpe);
		return -1;
	}
	bpe->nvocab = 512 + bpe->nmerges + 2;
	bpe->sot = bpe->nvocab - 2;
	bpe->eot = bpe->nvocab - 1;
	return 0;
}

int
vlm_bpe_from_merges(struct vlm_bpe *bpe, const char *text)
{
	return vlm_bpe_build(bpe, text, strlen(text), -1, "merges text");
}

void
vlm_bpe_release(struct vlm_bpe *bpe)
{
	tables_free(bpe->t);
	memset(bpe, 0, sizeof(*bpe));
}

char *
vlm_bpe_merges_alloc(const struct vlm_bpe *bpe)
{
	static const char head[] = "#version: 0.2\n";
	const struct vlm_bpe_tables *t = bpe->t;
	size_t n = sizeof(head), o;
	char *s;

	for (int k = 0; k < bpe->nmerges; k++)
		n += strlen(bpe_str(t, 512 + k)) + 2;
	if (!(s = malloc(n)))
		return NULL;
	memcpy(s, head, o = sizeof(head) - 1);
	for (int k = 0; k < bpe->nmerges; k++) {
		const char *a = bpe_str(t, t->merge[k][0]);
		const char *b = bpe_str(t, t->merge[k][1]);
		size_t la = strlen(a), lb = strlen(b);
		memcpy(s + o, a, la);
		s[o + la] = ' ';
		memcpy(s + o + la + 1, b, lb);
		s[o + la + 1 + lb] = '\n';
		o += la + lb + 2;
	}
	s[o] = 0;
	return s;
}

/* The cached ids of word w[0, len) with hash h, or NULL. */
static const int32_t *
cache_get(const struct bpe_cache *c, const char *w, size_t len, uint32_t h,
    int *n)
{
	for (uint32_t i = h & (CACHE_SLOTS - 1);; i = (i + 1) &
	    (CACHE_SLOTS - 1)) {
		const struct centry *e;
		if (!c->slot[i])
			return NULL;
		e = &c->e[c->slot[i] - 1];
		if (e->hash == h && e->klen == len &&
		    !memcmp(c->keys + e->key, w, len)) {
			*n = e->nids;
			return c->ids + e->ids;
		}
	}
}

/* Remember the ids of a word not in the cache; a full cache starts over. */
static void
cache_put(struct bpe_cache *c, const char *w, size_t len, uint32_t h,
    const int32_t *ids, int n)
{
	uint32_t i = h & (CACHE_SLOTS - 1);
	struct centry *e;

	if (c->n == CACHE_ENTRIES || c->nkeys + len > CACHE_KEYBYTES ||
	    c->nids + n > CACHE_IDS) {
		memset(c->slot, 0, CACHE_SLOTS * sizeof(*c->slot));
		c->n = 0, c->nkeys = 0, c->nids = 0;
	}
	while (c->slot[i])
		i = (i + 1) & (CACHE_SLOTS - 1);
	e = &c->e[c->n];
	*e = (struct centry){ h, c->nkeys, len, c->nids, n };
	memcpy(c->keys + c->nkeys, w, len);
	memcpy(c->ids + c->nids, ids, n * sizeof(*ids));
	c->nkeys += len, c->nids += n;
	c->slot[i] = ++c->n;
}

/* Merge the symbols sym[0, n) of one word by rank; returns the new n. */
static int
bpe_word(const struct vlm_bpe_tables *t, int32_t *sym, int n)
{
	while (n > 1) {
		int32_t best = INT32_MAX, a, b, m;
		int i, j;

		for (i = 0; i + 1 < n; i++) {
			int32_t r = pair_rank(t, sym[i], sym[i + 1]);
			if (r < best)
				best = r;
		}
		if (best == INT32_MAX)
			break;
		a = t->merge[best][0], b = t->merge[best][1];
		m = t->merge[best][2];
		for (i = j = 0; i < n; j++) {
			if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
				sym[j] = m;
				i += 2;
			} else
				sym[j] = sym[i++];
		}
		n = j;
	}
	return n;
}

/* The ids of word w[0, len) (len > 0) into ids[0, len); returns how many. */
static int
word_ids(const struct vlm_bpe_tables *t, const char *w, size_t len,
    int32_t *ids)
{
	int n;

	for (size_t i = 0; i < len; i++)
		ids[i] = t->bytepos[(unsigned char)w[i]];
	ids[len - 1] += 256;
	n = bpe_word(t, ids, len);
	for (int i = 0; i < n; i++)
		ids[i] = t->out[ids[i]];
	return n;
}

/* Append the ids of the piece p[0, np) to ids[count, ctx). */
static int
put_word(const struct vlm_bpe_tables *t, struct bpe_cache *c,
    const uint32_t *p, size_t np, char *w, int32_t *tmp, int32_t *ids,
    int count, int ctx)
{
	const int32_t *got = NULL;
	size_t len = 0;
	uint32_t h = 0;
	int n;

	for (size_t i = 0; i < np; i++) {
		if (p[i] < 0x80)
			w[len++] = p[i];
		else
			len += vlm_utf8_put(p[i], w + len);
	}
	if (c && len <= CACHE_WORD)
		got = cache_get(c, w, len, h = bpe_hash(w, len), &n);
	if (!got) {
		n = word_ids(t, w, len, tmp);
		got = tmp;
		if (c && len <= CACHE_WORD)
			cache_put(c, w, len, h, tmp, n);
	}
	for (int i = 0; i < n && count < ctx; i++)
		ids[count++] = got[i];
	return count;
}

int
vlm_bpe_encode(const struct vlm_bpe *bpe, const char *text, int32_t *ids,
    int ctx)
{
	uint32_t small_cp[3 * SMALL_TEXT], *cp = small_cp;
	int32_t small_tmp[8 * SMALL_TEXT], *tmp = small_tmp;
	char small_w[8 * SMALL_TEXT], *w = small_w;
	struct bpe_cache *c = bpe->t->cache;
	size_t len = strlen(text), n, at = 0, plen;
	void *big = NULL;
	int count = 0, kind;

	if (ctx < 1)
		return vlm_error("context length %d: want 1 or more", ctx);
	if (len > SMALL_TEXT) {
		big = malloc(len * (3 * sizeof(*cp) + 8 * sizeof(*tmp) + 8));
		if (!big)
			return vlm_error("out of memory for a text of %zu "
			    "bytes", len);
		cp = big;
		tmp = (int32_t *)(cp + 3 * len);
		w = (char *)(tmp + 8 * len);
	}
	n = vlm_text_clean(text, len, cp, cp + len);
	if (pthread_mutex_trylock(&c->mu) != 0)
		c = NULL;
	ids[count++] = bpe->sot;
	while (count < ctx && (kind = vlm_text_piece(cp + len, n, &at,
	    &plen)) != VLM_PIECE_END) {
		if (kind == VLM_PIECE_TEXT)
			count = put_word(bpe->t, c, cp + len + at, plen, w, tmp,
			    ids, count, ctx);
		else
			ids[count++] = kind == VLM_PIECE_SOT ? bpe->sot :
			    bpe->eot;
		at += plen;
	}
	if (c)
		pthread_mutex_unlock(&c->mu);
	if (count < ctx)
		ids[count++] = bpe->eot;
	else
		ids[ctx - 1] = bpe->eot;
	memset(ids + count, 0, (ctx - count) * sizeof(*ids));
	free(big);
	return count;
}

/* Each </w> in s[0, n) becomes a space, a final one goes; returns s. */
static char *
word_ends(char *s, size_t n)
{
	char *r = s;

	for (size_t i = 0; i < n;) {
		if (n - i >= 4 && !memcmp(s + i, VLM_BPE_EOW, 4))
			*r++ = ' ', i += 4;
		else
			*r++ = s[i++];
	}
	if (r > s && r[-1] == ' ')
		r--;
	*r = 0;
	return s;
}

char *
vlm_bpe_decode_alloc(const struct vlm_bpe *bpe, const int32_t *ids, int n)
{
	const struct vlm_bpe_tables *t = bpe->t;
	size_t size = 1, o = 0;
	char *raw, *s;
	int i;

	for (i = 0; i < n && ids[i] != bpe->eot; i++) {
		if (ids[i] < 0 || ids[i] >= bpe->nvocab) {
			vlm_error("token id %d out of range [0, %d)", ids[i],
			    bpe->nvocab);
			return NULL;
		}
		if (ids[i] != bpe->sot)
			size += strlen(bpe_str(t, ids[i]));
	}
	raw = malloc(size);
	s = malloc(3 * size);
	if (!raw || !s) {
		free(raw);
		free(s);
		vlm_error("out of memory decoding %d tokens", n);
		return NULL;
	}
	for (i = 0; i < n && ids[i] != bpe->eot; i++) {
		if (ids[i] == bpe->sot)
			continue;
		for (const char *p = bpe_str(t, ids[i]); *p;) {
			uint32_t c = (unsigned char)*p++;
			if (c >= 0x80) /* alphabet: at most 2 bytes */
				c = (c & 0x1F) << 6 | (*p++ & 0x3F);
			raw[o++] = vlm_bpe_cp_byte(c);
		}
	}
	/* bytes cut inside a character read as OpenCLIP's decode reads them:
	 * U+FFFD (errors="replace") */
	o = vlm_utf8_repair(raw, o, s);
	free(raw);
	return word_ends(s, o);
}

char *
vlm_bpe_clean_alloc(const char *text)
{
	size_t len = strlen(text), n, o = 0;
	uint32_t *cp = malloc((3 * len + 1) * sizeof(*cp));
	char *s = malloc(8 * len + 1);

	if (!cp || !s) {
		free(cp), free(s);
		vlm_error("out of memory cleaning %zu bytes", len);
		return NULL;
	}
	n = vlm_text_clean(text, len, cp, cp + len);
	for (size_t i = 0; i < n; i++)
		o += vlm_utf8_put(cp[len + i], s + o);
	s[o] = 0;
	free(cp);
	return s;
}
