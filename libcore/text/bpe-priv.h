/*
 * bpe-priv.h - libcore-internal: the tables behind struct vlm_bpe, shared
 * by bpe.c (building, encoding), bpe-load.c (files) and bpe-train.c.
 *
 * Tokens are kept as CLIP writes them: strings over the byte alphabet of
 * bytes_to_unicode(), "</w>" ending a word, so that token identity is
 * string identity exactly as in OpenCLIP (two merges making the same
 * string make one symbol, and the id emitted for it is the later one, as
 * Python's dict(zip(vocab, range(n))) has it).
 */
#ifndef VLM_BPE_PRIV_H
#define VLM_BPE_PRIV_H

#include "text/text.h"

struct bpe_cache;

struct vlm_bpe_tables {
	int ntok;             /* tokens with a string: nvocab - 2 */
	uint32_t *off;        /* (ntok) offset of each token's string */
	char *str;            /* NUL-terminated token strings, UTF-8 */
	size_t nstr, capstr;
	int32_t *sym;         /* (ntok) token -> symbol: first equal token */
	int32_t *out;         /* (ntok) symbol -> id emitted: last equal one */
	int32_t (*merge)[3];  /* (nmerges) left, right, result symbol */
	int16_t bytepos[256]; /* byte -> its token (position) */
	uint64_t *pkey;       /* pair map: left << 32 | right -> rank */
	int32_t *prank;
	uint32_t pmask;
	struct bpe_cache *cache;
};

/*
 * Build bpe from merges text[0, len): a header line (skipped, as OpenCLIP
 * and HF do), then "left right" lines (blank lines skipped), at most max
 * merges (-1: all). what names the source in messages, e.g. "'file'".
 */
int vlm_bpe_build(struct vlm_bpe *bpe, const char *text, size_t len,
    long max, const char *what);

/* FNV-1a (32 bits) of s[0, n): the hash of bpe.c's word cache and
 * bpe-train.c's string table. */
static inline uint32_t
bpe_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* The string of token (position) p. */
static inline const char *
bpe_str(const struct vlm_bpe_tables *t, int p)
{
	return t->str + t->off[p];
}

#endif
