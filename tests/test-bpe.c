/*
 * test-bpe.c - the CLIP tokenizer against OpenCLIP's own output (7496
 * strings in ../shared/fixtures/clip-bpe), its cleaning against Python's
 * html.unescape/str.split/str.lower (expected strings computed with
 * Python 3.11), its file formats, and the BPE trainer against a plain
 * reference trainer that recounts every pair at every step.
 */
#include <jansson.h>
#include <pthread.h>

#include "testutil.h"
#include "text/text-priv.h"

#define TSV "clip-bpe/clip-tokens.tsv"
#define GZ "clip-bpe/bpe_simple_vocab_16e6.txt.gz"

struct fixture {
	int n;
	char **text;
	char **want; /* ids as in the file: "49406 320 ... 49407" */
};

static struct fixture fx;
static struct vlm_bpe clip;

/* Read the TSV: column 1 a JSON string, column 2 the ids. */
static void
read_fixture(void)
{
	FILE *f = fopen(fixture(TSV), "r");
	char *line = NULL;
	size_t cap = 0;

	assert_non_null(f);
	while (getline(&line, &cap, f) > 0) {
		char *tab = strchr(line, '\t');
		json_error_t je;
		json_t *s;
		assert_non_null(tab);
		*tab = 0;
		tab[1 + strcspn(tab + 1, "\n")] = 0;
		s = json_loads(line, JSON_DECODE_ANY, &je);
		assert_true(json_is_string(s));
		fx.text = realloc(fx.text, (fx.n + 1) * sizeof(*fx.text));
		fx.want = realloc(fx.want, (fx.n + 1) * sizeof(*fx.want));
		fx.text[fx.n] = strdup(json_string_value(s));
		fx.want[fx.n++] = strdup(tab + 1);
		json_decref(s);
	}
	free(line);
	fclose(f);
}

/* The ids of text under bpe as "a b c" (static buffer). */
static const char *
ids_str(const struct vlm_bpe *bpe, const char *text, int ctx)
{
	static _Thread_local char buf[16 * 1024];
	int32_t ids[1024];
	int n = vlm_bpe_encode(bpe, text, ids, ctx), o = 0;

	assert_true(n > 0 && n <= ctx && ctx <= 1024);
	buf[0] = 0;
	for (int i = 0; i < n; i++)
		o += snprintf(buf + o, sizeof(buf) - o, "%s%d", i ? " " : "",
		    ids[i]);
	return buf;
}

static int
setup_clip(void **state)
{
	(void)state;
	if (access(fixture(GZ), R_OK) != 0 || access(fixture(TSV), R_OK) != 0)
		return 0;
	if (vlm_bpe_load(&clip, fixture(GZ)) < 0) {
		fprintf(stderr, "%s\n", vlm_errmsg());
		return -1;
	}
	read_fixture();
	return 0;
}

static int
teardown_clip(void **state)
{
	(void)state;
	vlm_bpe_release(&clip);
	for (int i = 0; i < fx.n; i++)
		free(fx.text[i]), free(fx.want[i]);
	free(fx.text), free(fx.want);
	return 0;
}

/* Every fixture string gives exactly OpenCLIP's ids. */
static void
test_openclip_ids(void **state)
{
	int bad = 0;

	(void)state;
	NEED_FIXTURE(fixture(TSV));
	NEED_FIXTURE(fixture(GZ));
	assert_int_equal(clip.nvocab, 49408);
	assert_int_equal(clip.sot, 49406);
	assert_int_equal(clip.eot, 49407);
	assert_int_equal(fx.n, 7496);
	for (int i = 0; i < fx.n; i++) {
		const char *got = ids_str(&clip, fx.text[i], VLM_BPE_CONTEXT);
		if (strcmp(got, fx.want[i]) != 0 && bad++ < 5)
			print_message("mismatch %d: '%s'\n  got  %s\n"
			    "  want %s\n", i + 1, fx.text[i], got, fx.want[i]);
	}
	print_message("%d of %d strings differ from OpenCLIP\n", bad, fx.n);
	assert_int_equal(bad, 0);
}

/* Merges text out and back in: the same text, the same ids. */
static void
test_merges_roundtrip(void **state)
{
	struct vlm_bpe b;
	char *m, *m2;

	(void)state;
	NEED_FIXTURE(fixture(GZ));
	assert_non_null(m = vlm_bpe_merges_alloc(&clip));
	assert_memory_equal(m, "#version: 0.2\ni n\nt h\n", 20);
	assert_int_equal(vlm_bpe_from_merges(&b, m), 0);
	assert_int_equal(b.nvocab, clip.nvocab);
	assert_non_null(m2 = vlm_bpe_merges_alloc(&b));
	assert_string_equal(m, m2);
	for (int i = 0; i < fx.n; i += 7)
		assert_string_equal(ids_str(&b, fx.text[i], 77), fx.want[i]);
	vlm_bpe_release(&b);
	free(m), free(m2);
}

/* CLIP's bytes_to_unicode() character for byte b, as UTF-8 into s. */
static void
byte_char(int b, char *s)
{
	static int order[256], n;
	int c;

	if (!n) { /* printable bytes keep their code, the rest get 256.. */
		for (int i = 0; i < 256; i++)
			if ((i >= 33 && i <= 126) || (i >= 161 && i <= 172) ||
			    i >= 174)
				order[i] = i;
			else
				order[i] = 256 + n++;
	}
	c = order[b];
	if (c < 0x80)
		s[0] = c, s[1] = 0;
	else
		s[0] = 0xC0 | c >> 6, s[1] = 0x80 | (c & 0x3F), s[2] = 0;
}

/* Write vocab.json as HF's CLIPTokenizer has it (built as OpenCLIP's
 * SimpleTokenizer builds its encoder) and merges.txt, into dir. */
static void
write_hf(const char *dir, const char *merges, int swap)
{
	json_t *v = json_object();
	char path[4200], tok[16], *m = strdup(merges), *save, *line;
	int id = 0, order[256], k = 0;
	FILE *f;

	for (int b = 0; b < 256; b++) /* printable ones first */
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
			order[k++] = b;
	for (int b = 0; b < 256; b++)
		if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
		    b >= 174))
			order[k++] = b;
	for (int i = 0; i < 512; i++) {
		byte_char(order[i % 256], tok);
		if (i >= 256)
			strcat(tok, "</w>");
		json_object_set_new(v, tok, json_integer(id++));
	}
	strtok_r(m, "\n", &save); /* header */
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *sp = strchr(line, ' ');
		memmove(sp, sp + 1, strlen(sp));
		json_object_set_new(v, line, json_integer(id++));
	}
	json_object_set_new(v, "<|startoftext|>", json_integer(id++));
	json_object_set_new(v, "<|endoftext|>", json_integer(id++));
	if (swap) {
		json_object_set_new(v, "a", json_integer(65));
		json_object_set_new(v, "b", json_integer(64));
	}
	snprintf(path, sizeof(path), "%s/vocab.json", dir);
	assert_int_equal(json_dump_file(v, path, 0), 0);
	snprintf(path, sizeof(path), "%s/merges.txt", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(merges, f);
	fclose(f);
	json_decref(v);
	free(m);
}

/* HF vocab.json + merges.txt load to the same tokenizer; a vocab.json
 * that disagrees with merges.txt is refused. */
static void
test_hf_vocab(void **state)
{
	struct vlm_bpe b;
	char path[4200], *m;

	(void)state;
	NEED_FIXTURE(fixture(GZ));
	assert_non_null(m = vlm_bpe_merges_alloc(&clip));
	write_hf(test_tmpdir(), m, 0);
	snprintf(path, sizeof(path), "%s/vocab.json", test_tmpdir());
	if (vlm_bpe_load(&b, path) < 0)
		fail_msg("%s", vlm_errmsg());
	assert_int_equal(b.nvocab, 49408);
	for (int i = 0; i < fx.n; i += 11)
		assert_string_equal(ids_str(&b, fx.text[i], 77), fx.want[i]);
	vlm_bpe_release(&b);
	write_hf(test_tmpdir(), m, 1);
	assert_int_equal(vlm_bpe_load(&b, path), -1);
	assert_non_null(strstr(vlm_errmsg(), "'a' is not id 64"));
	free(m);
}

/* Cleaning as Python does it: html.unescape twice, " ".join(s.split()),
 * lower(); the expected strings were computed with Python 3.11. */
static void
test_clean(void **state)
{
	static const char *const cases[][2] = {
	{ "  Hello&nbsp;&amp;amp;World\t\n ",
	    "hello &world" },
	{ "&lt;b&gt; &#39;q&#x27; &#65;&#x42 &ampx &notit; &#128; &#0; "
	    "&#1;x &#x110000; &#xD800;",
	    "<b> 'q' ab &x \xc2\xacit; \xe2\x82\xac \xef\xbf\xbd x "
	    "\xef\xbf\xbd \xef\xbf\xbd" },
	{ "\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xa3\xce\x91\xce\xa3 "
	    "\xce\xa3. \xce\x91\xce\xa3'\xce\xa3",
	    "\xce\xbf\xce\xb4\xce\xbf\xcf\x82 \xcf\x83\xce\xb1\xcf\x82 "
	    "\xcf\x83. \xce\xb1\xcf\x83'\xcf\x82" },
	{ "\xc4\xb0STANBUL \xc7\x84 \xc7\x85 \xe1\xba\x9e \xce\xa9 "
	    "\xe2\x84\xaa",
	    "i\xcc\x87stanbul \xc7\x86 \xc7\x86 \xc3\x9f \xcf\x89 k" },
	{ "a\xe2\x80\xa8" "b\xe3\x80\x80" "c\xc2\xa0" "d\x1c" "e\xc2\x85" "f",
	    "a b c d e f" },
	{ "&AMP; &amp &Amp; &AElig &nvlt; &acE; &#9999999999;",
	    "& & &amp; \xc3\xa6 <\xe2\x83\x92 \xe2\x88\xbe\xcc\xb3 "
	    "\xef\xbf\xbd" },
	{ "<start_of_text>x<END_OF_TEXT>",
	    "<start_of_text>x<end_of_text>" },
	{ "caf\xc3\xa9\xe2\x80\x99s \xc3\x89" "COLE "
	    "\xf0\x9d\x90\x80\xf0\x9d\x90\x81",
	    "caf\xc3\xa9\xe2\x80\x99s \xc3\xa9" "cole "
	    "\xf0\x9d\x90\x80\xf0\x9d\x90\x81" },
	{ "&amp;#38;amp; &#x26;lt;", "&amp; <" },
	{ "", "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *got = vlm_bpe_clean_alloc(cases[i][0]);
		assert_non_null(got);
		assert_string_equal(got, cases[i][1]);
		free(got);
	}
}

/* Long texts are cut to ctx with <end_of_text> last; short ones padded. */
static void
test_context(void **state)
{
	char text[4096] = "";
	int32_t full[1024], ids[80];
	int n, k;

	(void)state;
	NEED_FIXTURE(fixture(GZ));
	for (int i = 0; i < 60; i++)
		strcat(text, "a photo of a cat. ");
	n = vlm_bpe_encode(&clip, text, full, 1024);
	assert_true(n > 77);
	assert_int_equal(full[n - 1], clip.eot);
	for (int ctx = 1; ctx <= 77; ctx += 19) {
		memset(ids, 0x55, sizeof(ids));
		assert_int_equal(vlm_bpe_encode(&clip, text, ids, ctx), ctx);
		assert_memory_equal(ids, full, (ctx - 1) * sizeof(*ids));
		assert_int_equal(ids[ctx - 1], clip.eot);
		assert_int_equal(ids[ctx], 0x55555555);
	}
	k = vlm_bpe_encode(&clip, "A photo", ids, 77);
	assert_int_equal(k, 4);
	assert_int_equal(ids[0], clip.sot);
	assert_int_equal(ids[3], clip.eot);
	for (int i = k; i < 77; i++)
		assert_int_equal(ids[i], 0);
	assert_int_equal(vlm_bpe_encode(&clip, "", ids, 77), 2);
	assert_int_equal(vlm_bpe_encode(&clip, "x", ids, 0), -1);
}

/* The special tokens' text maps to their ids where the regex finds it;
 * expected ids from Python's re with the pattern on ASCII text. */
static void
test_specials(void **state)
{
	(void)state;
	NEED_FIXTURE(fixture(GZ));
	assert_string_equal(ids_str(&clip, "a <START_of_text> dog"
	    "<end_of_text>", 77), "49406 320 49406 1929 49407 49407");
	/* inside a run of punctuation it is plain text */
	assert_string_equal(ids_str(&clip, "!<end_of_text>", 77),
	    "49406 0 283 806 318 539 318 4160 285 49407");
	assert_string_equal(ids_str(&clip, "it's a dog's 'LL", 77),
	    "49406 585 568 320 1929 568 1342 49407");
}

/* Encoding from several threads at once gives the same ids. */
static void *
encode_all(void *arg)
{
	long bad = 0;

	(void)arg;
	for (int i = 0; i < fx.n; i++)
		bad += strcmp(ids_str(&clip, fx.text[i], 77), fx.want[i]) != 0;
	return (void *)bad;
}

static void
test_threads(void **state)
{
	pthread_t th[4];
	void *bad;

	(void)state;
	NEED_FIXTURE(fixture(TSV));
	NEED_FIXTURE(fixture(GZ));
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, encode_all, NULL),
		    0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], &bad), 0);
		assert_int_equal((long)bad, 0);
	}
}

/* Decoding gives back the cleaned text of plain words. */
static void
test_decode(void **state)
{
	const char *text = "  A Photo of   TWO dogs\tplaying hopscotch ";
	int32_t ids[77], bad[3] = { 49406, 49408, 49407 };
	char *s, *c;
	int n;

	(void)state;
	NEED_FIXTURE(fixture(GZ));
	n = vlm_bpe_encode(&clip, text, ids, 77);
	assert_non_null(s = vlm_bpe_decode_alloc(&clip, ids, n));
	assert_non_null(c = vlm_bpe_clean_alloc(text));
	assert_string_equal(s, c);
	assert_string_equal(s, "a photo of two dogs playing hopscotch");
	free(s), free(c);
	assert_null(vlm_bpe_decode_alloc(&clip, bad, 3));
	assert_non_null(strstr(vlm_errmsg(), "49408"));
	/* byte tokens: 'a', then E2 82 cut short ("a\xe2\x82" decoded with
	 * errors="replace"), and E2 82 AC whole (the euro sign) */
	int32_t cut[] = { 49406, 64, 158, 224, 49407 }, euro[] = { 158, 224,
	    105 };
	assert_non_null(s = vlm_bpe_decode_alloc(&clip, cut, 5));
	assert_string_equal(s, "a\xEF\xBF\xBD");
	free(s);
	assert_non_null(s = vlm_bpe_decode_alloc(&clip, euro, 3));
	assert_string_equal(s, "\xE2\x82\xAC");
	free(s);
}

/* Ill-formed UTF-8 repaired as Python 3.11's bytes.decode("utf-8",
 * "replace") does it (one U+FFFD per maximal ill-formed subpart). */
static void
test_utf8_repair(void **state)
{
#define R "\xEF\xBF\xBD"
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "a\xe2\x82", "a" R }, { "\xe2\x82" "a", R "a" },
		{ "\xf0\x9f\x98", R }, { "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
		{ "\xc0\xaf", R R }, { "\xed\xa0\x80", R R R },
		{ "\xf4\x90\x80\x80", R R R R }, { "\xe0\x80\x80", R R R },
		{ "\x80\x80", R R }, { "\xf0\x9f", R }, { "\xff", R },
		{ "\xe2(\xa1", R "(" R }, { "\xf8\x88\x80\x80\x80", R R R R R },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
	};
#undef R
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = vlm_utf8_repair(cases[i].in, strlen(cases[i].in),
		    out);
		out[n] = 0;
		assert_string_equal(out, cases[i].want);
	}
}

/* Bad inputs fail with a message naming them. */
static void
test_errors(void **state)
{
	struct vlm_bpe b;

	(void)state;
	assert_int_equal(vlm_bpe_load(&b, "/nonexistent/bpe.txt.gz"), -1);
	assert_non_null(strstr(vlm_errmsg(), "/nonexistent/bpe.txt.gz"));
	assert_int_equal(vlm_bpe_load(&b, "/nonexistent/vocab.json"), -1);
	assert_non_null(strstr(vlm_errmsg(), "/nonexistent/vocab.json"));
	assert_int_equal(vlm_bpe_from_merges(&b, "#v\na b\nab zz\n"), -1);
	assert_non_null(strstr(vlm_errmsg(), "line 3: unknown token 'zz'"));
	assert_int_equal(vlm_bpe_from_merges(&b, "#v\na b c\n"), -1);
	assert_non_null(strstr(vlm_errmsg(), "line 2"));
	assert_int_equal(vlm_bpe_from_merges(&b, "#v\n\n"), -1);
	assert_non_null(strstr(vlm_errmsg(), "no merges"));
	assert_int_equal(vlm_bpe_from_merges(&b, "#v\na b\nab c</w>\n"), 0);
	assert_int_equal(b.nvocab, 516);
	assert_string_equal(ids_str(&b, "abc ab", 77),
	    "514 513 64 321 515");
	vlm_bpe_release(&b);
}

/* n synthetic captions from a fixed generator (ASCII words, mixed case). */
static char **
captions(int n)
{
	static const char *const color[] = { "red", "green", "blue",
		"Yellow", "black", "white" };
	static const char *const animal[] = { "dog", "cat", "horse",
		"elephant", "bird", "zebra", "giraffe", "sheep", "cow",
		"parrot", "butterfly" };
	static const char *const place[] = { "beach", "field", "street",
		"kitchen", "forest", "mountain", "river" };
	char **c = calloc(n, sizeof(*c));
	uint32_t x = 12345;

	for (int i = 0; i < n; i++) {
		uint32_t r[4];
		for (int k = 0; k < 4; k++)
			r[k] = (x = x * 1103515245u + 12345u) >> 16;
		c[i] = malloc(128);
		if (r[3] % 3 == 0)
			snprintf(c[i], 128, "a photo of a %s %s on the %s",
			    color[r[0] % 6], animal[r[1] % 11],
			    place[r[2] % 7]);
		else if (r[3] % 3 == 1)
			snprintf(c[i], 128, "A  %s %s in a %s", color[r[0] % 6],
			    animal[r[1] % 11], place[r[2] % 7]);
		else
			snprintf(c[i], 128, "the %s and the %s near a  %s ",
			    animal[r[0] % 11], animal[r[1] % 11],
			    place[r[2] % 7]);
	}
	return c;
}

#define RMAX 4096

struct rpair {
	int a, b;
	long c;
};

static int
rpair_cmp(const void *x, const void *y)
{
	const struct rpair *p = x, *q = y;
	return p->a != q->a ? p->a - q->a : p->b - q->b;
}

/* The most frequent pair over all words (ties: lower ids); count 0 if none. */
static struct rpair
ref_best(int nw, int (*seq)[64], const int *len, const long *freq)
{
	static struct rpair occ[RMAX * 8];
	struct rpair best = { 0, 0, 0 };
	int n = 0;

	for (int w = 0; w < nw; w++)
		for (int i = 0; i + 1 < len[w]; i++)
			occ[n++] = (struct rpair){ seq[w][i], seq[w][i + 1],
				freq[w] };
	qsort(occ, n, sizeof(*occ), rpair_cmp);
	for (int i = 0; i < n;) {
		struct rpair p = occ[i++];
		while (i < n && !rpair_cmp(&occ[i], &p))
			p.c += occ[i++].c;
		if (p.c > best.c) /* sorted: the first of equal counts wins */
			best = p;
	}
	return best;
}

/*
 * The plain reference trainer for texts of ASCII letters and spaces: lower,
 * split, then at each step count every pair afresh and merge the best one
 * everywhere. Symbols: byte tokens at CLIP's positions (a letter b at
 * b - 33, with </w> at 256 + b - 33), new strings numbered from 512.
 */
static char *
train_ref(char **texts, int n, int vocab)
{
	static char word[RMAX][32], *str[RMAX];
	static int seq[RMAX][64], len[RMAX];
	static long freq[RMAX];
	int nw = 0, nsym = 512, nm = 0;
	size_t o = 0;
	char *out = malloc(1 << 20), *save, *t;

	memset(str, 0, sizeof(str));
	for (int b = 'a'; b <= 'z'; b++) {
		str[b - 33] = calloc(2, 1), str[b - 33][0] = b;
		str[256 + b - 33] = calloc(8, 1);
		snprintf(str[256 + b - 33], 8, "%c</w>", b);
	}
	for (int i = 0; i < n; i++) {
		char *s = strdup(texts[i]);
		for (char *p = s; *p; p++)
			*p = *p >= 'A' && *p <= 'Z' ? *p + 32 : *p;
		for (t = strtok_r(s, " ", &save); t; t = strtok_r(NULL, " ",
		    &save)) {
			int w = 0;
			while (w < nw && strcmp(word[w], t))
				w++;
			if (w == nw) {
				strcpy(word[nw], t), len[nw] = strlen(t);
				for (int k = 0; k < len[nw]; k++)
					seq[nw][k] = t[k] - 33;
				seq[nw][len[nw] - 1] += 256;
				nw++;
			}
			freq[w]++;
		}
		free(s);
	}
	o += sprintf(out, "#version: 0.2\n");
	while (nm < vocab - 514) {
		struct rpair p = ref_best(nw, seq, len, freq);
		char cat[256];
		int m = 512;
		if (p.c < 2)
			break;
		snprintf(cat, sizeof(cat), "%s%s", str[p.a], str[p.b]);
		while (m < nsym && strcmp(str[m], cat))
			m++;
		if (m == nsym)
			str[nsym++] = strdup(cat);
		o += sprintf(out + o, "%s %s\n", str[p.a], str[p.b]);
		nm++;
		for (int w = 0; w < nw; w++) {
			int j = 0, k = 0;
			while (j < len[w])
				if (j + 1 < len[w] && seq[w][j] == p.a &&
				    seq[w][j + 1] == p.b)
					seq[w][k++] = m, j += 2;
				else
					seq[w][k++] = seq[w][j++];
			len[w] = k;
		}
	}
	for (int i = 0; i < RMAX; i++)
		free(str[i]);
	return out;
}

/* The trainer learns what the reference learns; its merges encode. */
static void
test_train(void **state)
{
	int n = 500, sizes[] = { 560, 4000 };
	char **c = captions(n);

	(void)state;
	for (int k = 0; k < 2; k++) {
		struct vlm_bpe b;
		char *m, *want = train_ref(c, n, sizes[k]);
		if (vlm_bpe_train(&b, (const char *const *)c, n, sizes[k]) < 0)
			fail_msg("%s", vlm_errmsg());
		assert_non_null(m = vlm_bpe_merges_alloc(&b));
		assert_string_equal(m, want);
		assert_true(b.nvocab <= sizes[k]);
		print_message("vocabulary %d: %d merges\n", sizes[k],
		    b.nmerges);
		/* a frequent word is one token; text decodes back */
		assert_int_equal(vlm_bpe_encode(&b, "Photo", (int32_t[8]){ 0 },
		    8), 3);
		for (int i = 0; i < n; i++) {
			int32_t ids[77];
			int nid = vlm_bpe_encode(&b, c[i], ids, 77);
			char *d = vlm_bpe_decode_alloc(&b, ids, nid);
			char *cl = vlm_bpe_clean_alloc(c[i]);
			assert_string_equal(d, cl);
			free(d), free(cl);
		}
		vlm_bpe_release(&b);
		free(m), free(want);
	}
	for (int i = 0; i < n; i++)
		free(c[i]);
	free(c);
}

/* Non-ASCII words train and decode too; bad sizes and corpora fail. */
static void
test_train_edges(void **state)
{
	const char *t[] = { "caf\xc3\xa9 \xe2\x98\x95", "Caf\xc3\xa9 latte",
		"un caf\xc3\xa9 \xe2\x98\x95!", "a b" };
	struct vlm_bpe b;
	int32_t ids[8];
	char *d;

	(void)state;
	assert_int_equal(vlm_bpe_train(&b, t, 3, 700), 0);
	assert_int_equal(vlm_bpe_encode(&b, "CAF\xc3\x89", ids, 8), 3);
	assert_non_null(d = vlm_bpe_decode_alloc(&b, ids, 3));
	assert_string_equal(d, "caf\xc3\xa9");
	free(d);
	vlm_bpe_release(&b);
	assert_int_equal(vlm_bpe_train(&b, t, 3, 514), -1);
	assert_non_null(strstr(vlm_errmsg(), "514"));
	assert_int_equal(vlm_bpe_train(&b, t + 3, 1, 700), -1);
	assert_non_null(strstr(vlm_errmsg(), "nothing to learn"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openclip_ids),
		cmocka_unit_test(test_merges_roundtrip),
		cmocka_unit_test(test_hf_vocab),
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_context),
		cmocka_unit_test(test_specials),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_utf8_repair),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_train),
		cmocka_unit_test(test_train_edges),
	};

	return cmocka_run_group_tests(tests, setup_clip, teardown_clip);
}
