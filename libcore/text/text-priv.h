/*
 * text-priv.h - libcore-internal: the text cleaning and splitting that the
 * CLIP tokenizer (bpe.c, bpe-train.c) shares, the byte-level alphabet of
 * its merges files, and the generated tables behind them (unicode-tables.c,
 * html-entities.c, written by gen-tables.py).
 */
#ifndef VLM_TEXT_PRIV_H
#define VLM_TEXT_PRIV_H

#include <stddef.h>
#include <stdint.h>

/* ---- generated tables: sorted, disjoint {first, last} ranges ---------- */

extern const uint32_t vlm_uc_letters[][2];   /* \p{L} */
extern const int vlm_uc_letters_len;
extern const uint32_t vlm_uc_numbers[][2];   /* \p{N} */
extern const int vlm_uc_numbers_len;
extern const uint32_t vlm_uc_spaces[][2];    /* str.isspace() */
extern const int vlm_uc_spaces_len;
extern const uint32_t vlm_uc_cased[][2];     /* Final_Sigma: cased */
extern const int vlm_uc_cased_len;
extern const uint32_t vlm_uc_ignorable[][2]; /* Final_Sigma: skipped */
extern const int vlm_uc_ignorable_len;
/* {first, last, stride, delta}: lower(c) = c + delta on the run */
extern const int32_t vlm_uc_lower_runs[][4];
extern const int vlm_uc_lower_runs_len;

struct vlm_html_entity {
	const char *name; /* e.g. "amp;" or the legacy "amp", sorted */
	uint32_t cp[2];   /* its code points; cp[1] 0 if one */
};
extern const struct vlm_html_entity vlm_html_entities[];
extern const int vlm_html_entities_len;
extern const uint32_t vlm_html_charref_fix[][2]; /* {number, code point} */
extern const int vlm_html_charref_fix_len;
extern const uint32_t vlm_html_dropped[][2];     /* ranges replaced by "" */
extern const int vlm_html_dropped_len;

/* ---- code points (text.c) --------------------------------------------- */

enum { VLM_UC_OTHER, VLM_UC_LETTER, VLM_UC_NUMBER, VLM_UC_SPACE };

/* VLM_UC_LETTER, _NUMBER, _SPACE or _OTHER. */
int vlm_uc_class(uint32_t c);
/* Python's one-code-point lowercase (U+0130 and sigma need context). */
uint32_t vlm_uc_lower(uint32_t c);
/* Append c as UTF-8 to out (4 bytes room); returns the bytes written. */
int vlm_utf8_put(uint32_t c, char *out);
/* s[0, n) as Python's s.decode("utf-8", "replace") gives it back in
 * UTF-8: each maximal ill-formed subsequence becomes U+FFFD. out has room
 * for 3 * n bytes; returns the bytes written. */
size_t vlm_utf8_repair(const char *s, size_t n, char *out);

/*
 * OpenCLIP's "lower" cleaning less ftfy: decode UTF-8 (each invalid byte
 * becomes U+FFFD), html.unescape() twice, collapse runs of str.isspace()
 * to one space and strip, str.lower(). tmp holds len code points, out
 * 2 * len (lowering U+0130 doubles it). Returns the length of out.
 */
size_t vlm_text_clean(const char *text, size_t len, uint32_t *tmp,
    uint32_t *out);

/* What vlm_text_piece() found. */
enum { VLM_PIECE_END = -1, VLM_PIECE_TEXT, VLM_PIECE_SOT, VLM_PIECE_EOT };

/*
 * The next match of CLIP's pre-tokenizer
 *   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|
 *   [^\s\p{L}\p{N}]+
 * in s[*at, n): sets *at to its start and *len to its length and says
 * what it is. The caller then advances *at by *len.
 */
int vlm_text_piece(const uint32_t *s, size_t n, size_t *at, size_t *len);

/* ---- the byte-level alphabet (text.c) ------------------------------- */

/*
 * CLIP's bytes_to_unicode(): token 0..255 is byte b at position
 * vlm_bpe_byte_pos(b) (the printable bytes first), written in merges files
 * as the character vlm_bpe_byte_cp(b); vlm_bpe_cp_byte() inverts that
 * (-1 for a character outside the alphabet).
 */
int vlm_bpe_byte_pos(int b);
uint32_t vlm_bpe_byte_cp(int b);
int vlm_bpe_cp_byte(uint32_t c);

#define VLM_BPE_SOT_TEXT "<start_of_text>"
#define VLM_BPE_EOT_TEXT "<end_of_text>"
#define VLM_BPE_EOW "</w>"

#endif
