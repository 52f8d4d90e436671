/*
 * text/text.h - the CLIP byte-pair-encoding tokenizer: loading,
 * encoding, training merges, and the text cleaning it does first.
 */
#ifndef VLM_LIBCORE_TEXT_H
#define VLM_LIBCORE_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- CLIP BPE tokenizer (text/bpe*.c, text.c) ---------------------------- */

#define VLM_BPE_CONTEXT 77        /* CLIP's text context length */
#define VLM_BPE_CLIP_MERGES 48894 /* merges CLIP uses: 49408 tokens */
#define VLM_BPE_MAX_VOCAB (512 + VLM_BPE_CLIP_MERGES + 2)

/*
 * A byte-level BPE tokenizer as OpenCLIP's SimpleTokenizer: ids 0..255
 * are the bytes (in CLIP's bytes_to_unicode order), 256..511 the same
 * ending a word (</w>), then one id per merge in rank order, then
 * <start_of_text> and <end_of_text>. The merges list is the whole
 * tokenizer; vlm_bpe_merges_alloc() writes it in the text format of
 * CLIP's bpe_simple_vocab_16e6.txt (a header line such as "#version: 0.2",
 * then "left right" per line) that a model file carries as metadata
 * "tokenizer.merges".
 * Encoding is safe from several threads (the word cache is used by one
 * at a time; the others go without).
 */
struct vlm_bpe {
	int nmerges;  /* e.g. 48894 */
	int nvocab;   /* 512 + nmerges + 2, e.g. 49408 */
	int32_t sot;  /* <start_of_text>, nvocab - 2, e.g. 49406 */
	int32_t eot;  /* <end_of_text>, nvocab - 1, e.g. 49407 */
	struct vlm_bpe_tables *t; /* private: tokens, merge ranks, cache */
};

/*
 * Load a tokenizer: a merges file, gzipped or not (the first 48894 merges,
 * as OpenCLIP reads bpe_simple_vocab_16e6.txt.gz), or an HF vocab.json
 * with merges.txt beside it (checked to agree with each other).
 */
int vlm_bpe_load(struct vlm_bpe *bpe, const char *path);
/* Build a tokenizer from merges text (all its merges). */
int vlm_bpe_from_merges(struct vlm_bpe *bpe, const char *text);
/* The merges text of bpe (malloc'ed), or NULL when out of memory. */
char *vlm_bpe_merges_alloc(const struct vlm_bpe *bpe);
void vlm_bpe_release(struct vlm_bpe *bpe);

/*
 * Tokenize text as OpenCLIP does (clean: html.unescape twice, collapse
 * white space, lowercase; no ftfy), into ids[0, ctx): <start_of_text>,
 * the tokens, <end_of_text>; longer results are cut to ctx with
 * <end_of_text> last; the rest is zero. Returns the ids before the
 * padding (at most ctx), or -1 (out of memory, ctx < 1).
 */
int vlm_bpe_encode(const struct vlm_bpe *bpe, const char *text,
    int32_t *ids, int ctx);
/*
 * The text of ids[0, n) (malloc'ed): <start_of_text> skipped, stops at
 * <end_of_text>, word ends become spaces (the last one dropped). NULL on
 * an id out of range or out of memory.
 */
char *vlm_bpe_decode_alloc(const struct vlm_bpe *bpe, const int32_t *ids,
    int n);
/* The cleaned text vlm_bpe_encode() splits (malloc'ed), or NULL. */
char *vlm_bpe_clean_alloc(const char *text);

/*
 * Learn a tokenizer from n texts: vocab_size tokens at most (512 bytes,
 * merges, 2 specials; at most VLM_BPE_MAX_VOCAB), same cleaning, splitting
 * and byte alphabet as CLIP. Each step merges the most frequent adjacent
 * pair (ties: the pair of lower token ids); stops early when no pair
 * occurs twice. Deterministic.
 */
int vlm_bpe_train(struct vlm_bpe *bpe, const char *const *texts, size_t n,
    int vocab_size);

#endif /* VLM_LIBCORE_TEXT_H */
