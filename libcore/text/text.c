/*
 * text.c - the text side of the CLIP tokenizer: the cleaning OpenCLIP's
 * SimpleTokenizer applies before BPE (html.unescape twice, whitespace
 * collapse, Python's str.lower()), its regex pre-tokenizer, and the
 * byte-level alphabet of CLIP merges files. ftfy's repairs of mis-decoded
 * text are not reproduced (they leave ordinary captions alone). Works on
 * arrays of code points so that every step is one linear pass.
 */
#include <string.h>

#include "text/text-priv.h"

/* Whether c lies in one of the n sorted ranges r. */
static int
in_ranges(const uint32_t (*r)[2], int n, uint32_t c)
{
	int lo = 0, hi = n - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (c < r[mid][0])
			hi = mid - 1;
		else if (c > r[mid][1])
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

int
vlm_uc_class(uint32_t c)
{
	if (c < 128) {
		if ((c | 32) - 'a' < 26)
			return VLM_UC_LETTER;
		if (c - '0' < 10)
			return VLM_UC_NUMBER;
		if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f))
			return VLM_UC_SPACE;
		return VLM_UC_OTHER;
	}
	if (in_ranges(vlm_uc_letters, vlm_uc_letters_len, c))
		return VLM_UC_LETTER;
	if (in_ranges(vlm_uc_numbers, vlm_uc_numbers_len, c))
		return VLM_UC_NUMBER;
	if (in_ranges(vlm_uc_spaces, vlm_uc_spaces_len, c))
		return VLM_UC_SPACE;
	return VLM_UC_OTHER;
}

uint32_t
vlm_uc_lower(uint32_t c)
{
	int lo = 0, hi = vlm_uc_lower_runs_len - 1;

	if (c < 128)
		return c - 'A' < 26 ? c + 32 : c;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const int32_t *r = vlm_uc_lower_runs[mid];
		if (c < (uint32_t)r[0])
			hi = mid - 1;
		else if (c > (uint32_t)r[1])
			lo = mid + 1;
		else
			return (c - r[0]) % r[2] ? c : (uint32_t)(c + r[3]);
	}
	return c;
}

int
vlm_utf8_put(uint32_t c, char *out)
{
	unsigned char *o = (unsigned char *)out;

	if (c < 0x80) {
		o[0] = c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = 0xC0 | c >> 6;
		o[1] = 0x80 | (c & 0x3F);
		return 2;
	}
	if (c < 0x10000) {
		o[0] = 0xE0 | c >> 12;
		o[1] = 0x80 | (c >> 6 & 0x3F);
		o[2] = 0x80 | (c & 0x3F);
		return 3;
	}
	o[0] = 0xF0 | c >> 18;
	o[1] = 0x80 | (c >> 12 & 0x3F);
	o[2] = 0x80 | (c >> 6 & 0x3F);
	o[3] = 0x80 | (c & 0x3F);
	return 4;
}

size_t
vlm_utf8_repair(const char *s, size_t n, char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < n) {
		unsigned c = u[i], lo = 0x80, hi = 0xBF;
		size_t j = 1, k = 0;

		if (c >= 0xC2 && c <= 0xDF)
			k = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			k = 2, lo = c == 0xE0 ? 0xA0 : 0x80,
			hi = c == 0xED ? 0x9F : 0xBF;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, lo = c == 0xF0 ? 0x90 : 0x80,
			hi = c == 0xF4 ? 0x8F : 0xBF;
		for (; j <= k && i + j < n && u[i + j] >= lo && u[i + j] <= hi;
		    j++)
			lo = 0x80, hi = 0xBF; /* only the second byte is special */
		if (c < 0x80 || (k > 0 && j > k)) {
			memcpy(out + o, s + i, j);
			o += j;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
		}
		i += j;
	}
	return o;
}

/* Decode UTF-8; each byte of an invalid sequence becomes U+FFFD. */
static size_t
utf8_decode(const unsigned char *s, size_t len, uint32_t *out)
{
	size_t i = 0, n = 0;

	while (i < len) {
		uint32_t c = s[i], min;
		int k, j;

		if (c < 0x80) {
			out[n++] = c;
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1, c &= 0x1F, min = 0x80;
		else if (c >= 0xE0 && c <= 0xEF)
			k = 2, c &= 0x0F, min = 0x800;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, c &= 0x07, min = 0x10000;
		else
			k = 0, min = 0;
		for (j = 1; j <= k && i + j < len &&
		    (s[i + j] & 0xC0) == 0x80; j++)
			c = c << 6 | (s[i + j] & 0x3F);
		if (k == 0 || j <= k || c < min || c > 0x10FFFF ||
		    (c >= 0xD800 && c <= 0xDFFF)) {
			out[n++] = 0xFFFD;
			i++;
			continue;
		}
		out[n++] = c;
		i += k + 1;
	}
	return n;
}

/* A named reference s[0, n) in the HTML5 table: its code points, or 0. */
static int
entity_find(const uint32_t *s, size_t n, uint32_t cp[2])
{
	char name[40];
	int lo = 0, hi = vlm_html_entities_len - 1;

	for (size_t i = 0; i < n; i++) {
		if (s[i] >= 128)
			return 0;
		name[i] = s[i];
	}
	name[n] = 0;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		int d = strcmp(name, vlm_html_entities[mid].name);
		if (d < 0)
			hi = mid - 1;
		else if (d > 0)
			lo = mid + 1;
		else {
			cp[0] = vlm_html_entities[mid].cp[0];
			cp[1] = vlm_html_entities[mid].cp[1];
			return cp[1] ? 2 : 1;
		}
	}
	return 0;
}

/* What Python's html module makes of the reference &#num;. */
static int
numeric_ref(uint32_t num, uint32_t rep[2])
{
	for (int i = 0; i < vlm_html_charref_fix_len; i++) {
		if (vlm_html_charref_fix[i][0] == num) {
			rep[0] = vlm_html_charref_fix[i][1];
			return 1;
		}
	}
	if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
		rep[0] = 0xFFFD;
		return 1;
	}
	if (in_ranges(vlm_html_dropped, vlm_html_dropped_len, num))
		return 0;
	rep[0] = num;
	return 1;
}

/* A character that may appear in a named reference. */
static int
name_char(uint32_t c)
{
	return !(c == '\t' || c == '\n' || c == '\f' || c == ' ' ||
	    c == '<' || c == '&' || c == '#' || c == ';');
}

/*
 * The reference after an '&' at s[0, n), as html.unescape() matches
 * (&#D;? &#xH;? or up to 32 name characters and ;?) and replaces it
 * (longest known prefix of a name): returns the code points consumed (0:
 * no reference, the '&' stays) and sets rep[0, *nrep).
 */
static size_t
charref(const uint32_t *s, size_t n, uint32_t rep[2], int *nrep)
{
	size_t i, len, full, x;

	if (n >= 2 && s[0] == '#') {
		int hex = s[1] == 'x' || s[1] == 'X';
		uint32_t num = 0, d;
		for (i = hex ? 2 : 1; i < n; i++) {
			if (s[i] - '0' < 10)
				d = s[i] - '0';
			else if (hex && (s[i] | 32) - 'a' < 6)
				d = (s[i] | 32) - 'a' + 10;
			else
				break;
			num = num > 0x10FFFF ? num : num * (hex ? 16 : 10) + d;
		}
		if (i == (hex ? 2u : 1u))
			return 0;
		i += i < n && s[i] == ';';
		*nrep = numeric_ref(num, rep);
		return i;
	}
	for (len = 0; len < n && len < 32 && name_char(s[len]); len++)
		;
	if (len == 0)
		return 0;
	full = len + (len < n && s[len] == ';');
	if ((*nrep = entity_find(s, full, rep)))
		return full;
	for (x = full - 1; x >= 2; x--)
		if ((*nrep = entity_find(s, x, rep)))
			return x;
	return 0;
}

/* html.unescape() in place (the result is never longer). */
static size_t
unescape(uint32_t *s, size_t n)
{
	size_t i = 0, o = 0, used;
	uint32_t rep[2];
	int nrep;

	while (i < n) {
		if (s[i] != '&' || !(used = charref(s + i + 1, n - i - 1, rep,
		    &nrep))) {
			s[o++] = s[i++];
			continue;
		}
		for (int k = 0; k < nrep; k++)
			s[o++] = rep[k];
		i += 1 + used;
	}
	return o;
}

/* Collapse runs of white space to one space and strip, in place. */
static size_t
squeeze(uint32_t *s, size_t n)
{
	size_t o = 0;
	int gap = 0;

	for (size_t i = 0; i < n; i++) {
		if (vlm_uc_class(s[i]) == VLM_UC_SPACE) {
			gap = o > 0;
			continue;
		}
		if (gap)
			s[o++] = ' ';
		gap = 0;
		s[o++] = s[i];
	}
	return o;
}

/* Whether the capital sigma at s[i] ends a word (Python's Final_Sigma). */
static int
final_sigma(const uint32_t *s, size_t n, size_t i)
{
	size_t j = i;

	while (j > 0 && in_ranges(vlm_uc_ignorable, vlm_uc_ignorable_len,
	    s[j - 1]))
		j--;
	if (j == 0 || !in_ranges(vlm_uc_cased, vlm_uc_cased_len, s[j - 1]))
		return 0;
	for (j = i + 1; j < n; j++)
		if (!in_ranges(vlm_uc_ignorable, vlm_uc_ignorable_len, s[j]))
			return !in_ranges(vlm_uc_cased, vlm_uc_cased_len, s[j]);
	return 1;
}

/* str.lower() from s[0, n) into out; returns the length. */
static size_t
lower(const uint32_t *s, size_t n, uint32_t *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t c = s[i];
		if (c < 128)
			out[o++] = c - 'A' < 26 ? c + 32 : c;
		else if (c == 0x130) { /* I with dot: i + combining dot */
			out[o++] = 'i';
			out[o++] = 0x307;
		} else if (c == 0x3A3)
			out[o++] = final_sigma(s, n, i) ? 0x3C2 : 0x3C3;
		else
			out[o++] = vlm_uc_lower(c);
	}
	return o;
}

size_t
vlm_text_clean(const char *text, size_t len, uint32_t *tmp, uint32_t *out)
{
	size_t n = utf8_decode((const unsigned char *)text, len, tmp);

	if (memchr(text, '&', len)) {
		n = unescape(tmp, n);
		n = unescape(tmp, n);
	}
	n = squeeze(tmp, n);
	return lower(tmp, n, out);
}

/* Whether s[0, n) starts with the ASCII word w, matched as re.IGNORECASE
 * does on lowercased text (the long s U+017F counts as 's'). */
static int
starts(const uint32_t *s, size_t n, const char *w)
{
	size_t i;

	for (i = 0; w[i]; i++)
		if (i >= n || (s[i] != (unsigned char)w[i] &&
		    !(w[i] == 's' && s[i] == 0x17F)))
			return 0;
	return 1;
}

/* The length of a contraction 's 't 're 've 'm 'll 'd at s, or 0. */
static size_t
contraction(const uint32_t *s, size_t n)
{
	static const char *const tab[] = { "'s", "'t", "'re", "'ve", "'m",
		"'ll", "'d" };

	for (size_t i = 0; i < sizeof(tab) / sizeof(*tab); i++)
		if (starts(s, n, tab[i]))
			return strlen(tab[i]);
	return 0;
}

int
vlm_text_piece(const uint32_t *s, size_t n, size_t *at, size_t *len)
{
	size_t i = *at, j;
	int cl;

	while (i < n && vlm_uc_class(s[i]) == VLM_UC_SPACE)
		i++;
	*at = i;
	if (i >= n)
		return VLM_PIECE_END;
	if (s[i] == '<' && starts(s + i, n - i, VLM_BPE_SOT_TEXT)) {
		*len = strlen(VLM_BPE_SOT_TEXT);
		return VLM_PIECE_SOT;
	}
	if (s[i] == '<' && starts(s + i, n - i, VLM_BPE_EOT_TEXT)) {
		*len = strlen(VLM_BPE_EOT_TEXT);
		return VLM_PIECE_EOT;
	}
	if (s[i] == '\'' && (*len = contraction(s + i, n - i)))
		return VLM_PIECE_TEXT;
	cl = vlm_uc_class(s[i]);
	for (j = i + 1; cl != VLM_UC_NUMBER && j < n &&
	    vlm_uc_class(s[j]) == cl; j++)
		;
	*len = j - i;
	return VLM_PIECE_TEXT;
}

int
vlm_bpe_byte_pos(int b)
{
	if (b >= 33 && b <= 126)
		return b - 33;
	if (b >= 161 && b <= 172)
		return 94 + b - 161;
	if (b >= 174)
		return 106 + b - 174;
	if (b <= 32)
		return 188 + b;
	return b == 173 ? 255 : 188 + 33 + b - 127;
}

uint32_t
vlm_bpe_byte_cp(int b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return b;
	if (b <= 32)
		return 256 + b;
	return b == 173 ? 323 : 256 + 33 + b - 127;
}

int
vlm_bpe_cp_byte(uint32_t c)
{
	if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) ||
	    (c >= 174 && c <= 255))
		return c;
	if (c >= 256 && c <= 288)
		return c - 256;
	if (c >= 289 && c <= 322)
		return c - 289 + 127;
	return c == 323 ? 173 : -1;
}
