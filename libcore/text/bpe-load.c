/*
 * bpe-load.c - read a CLIP tokenizer from files: OpenCLIP's merges list
 * (bpe_simple_vocab_16e6.txt.gz, gzipped or plain; the first 48894
 * merges, as OpenCLIP slices it) or Hugging Face's vocab.json with
 * merges.txt beside it, whose ids are checked against the merges order.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "text/bpe-priv.h"

/* CLIP's merges file holds 3.2 MB of text; a bigger one is not a
 * tokenizer (and a gzip bomb must not fill memory) */
#define MAX_TEXT ((size_t)64 << 20)

/* The whole of a file, gunzipped if gzipped (malloc'ed, NUL-ended), up
 * to MAX_TEXT. */
static char *
slurp(const char *path, size_t *len)
{
	gzFile f;
	size_t n = 0, cap = 0;
	char *buf = NULL, *nb;
	int got, errnum;

	errno = 0;
	if (!(f = gzopen(path, "rb"))) {
		vlm_error("'%s': %s", path, strerror(errno ? errno : ENOMEM));
		return NULL;
	}
	for (;;) {
		if (cap - n < 65536 + 1) {
			cap = cap ? 2 * cap : 1 << 20;
			if (!(nb = realloc(buf, cap))) {
				vlm_error("'%s': out of memory", path);
				goto fail;
			}
			buf = nb;
		}
		got = gzread(f, buf + n, cap - n - 1 > (1u << 30) ? 1u << 30 :
		    (unsigned)(cap - n - 1));
		if (got < 0) {
			const char *msg = gzerror(f, &errnum);
			vlm_error("'%s': %s", path, errnum == Z_ERRNO ?
			    strerror(errno) : msg);
			goto fail;
		}
		if (got == 0)
			break;
		n += got;
		if (n > MAX_TEXT) {
			vlm_error("'%s': more than %zu MB of text: not a "
			    "tokenizer", path, MAX_TEXT >> 20);
			goto fail;
		}
	}
	gzclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
fail:
	gzclose(f);
	free(buf);
	return NULL;
}

/* Load a merges file: OpenCLIP's cut at 48894 merges. */
static int
load_merges(struct vlm_bpe *bpe, const char *path, long max)
{
	char what[4200];
	size_t len;
	char *text = slurp(path, &len);
	int rc;

	if (!text)
		return -1;
	snprintf(what, sizeof(what), "'%s'", path);
	rc = vlm_bpe_build(bpe, text, len, max, what);
	free(text);
	return rc;
}

/* Check that vocab.json gives every token the id the merges imply. */
static int
check_vocab(const struct vlm_bpe *bpe, json_t *vocab, const char *path)
{
	const struct vlm_bpe_tables *t = bpe->t;
	const char *key;
	json_t *v;
	int special = 0;

	for (int p = 0; p < t->ntok; p++) {
		int32_t want = t->out[t->sym[p]];
		v = json_object_get(vocab, bpe_str(t, p));
		if (!json_is_integer(v) || json_integer_value(v) != want)
			return vlm_error("'%s': token '%s' is not id %d as "
			    "merges.txt orders it", path, bpe_str(t, p), want);
	}
	json_object_foreach(vocab, key, v) {
		json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
		if (id < 0 || id >= bpe->nvocab)
			return vlm_error("'%s': token '%s': id out of range "
			    "[0, %d)", path, key, bpe->nvocab);
		special |= id == bpe->sot ? 1 : id == bpe->eot ? 2 : 0;
	}
	if (special != 3)
		return vlm_error("'%s': no ids %d and %d for <start_of_text> "
		    "and <end_of_text>", path, bpe->sot, bpe->eot);
	return 0;
}

/* Load vocab.json and the merges.txt in its directory. */
static int
load_hf(struct vlm_bpe *bpe, const char *path)
{
	json_error_t je;
	json_t *vocab = json_load_file(path, 0, &je);
	const char *slash = strrchr(path, '/');
	char merges[4200];
	long n;

	if (!vocab)
		return vlm_error("'%s': line %d: %s", path, je.line, je.text);
	n = json_is_object(vocab) ? (long)json_object_size(vocab) - 514 : -1;
	if (n < 1 || n > VLM_BPE_CLIP_MERGES) {
		json_decref(vocab);
		return vlm_error("'%s': want an object of 515 to %d tokens",
		    path, VLM_BPE_MAX_VOCAB);
	}
	snprintf(merges, sizeof(merges), "%.*smerges.txt",
	    slash ? (int)(slash - path + 1) : 0, path);
	if (load_merges(bpe, merges, n) < 0) {
		json_decref(vocab);
		return -1;
	}
	if (bpe->nmerges != n) {
		vlm_error("'%s': %d merges, want %ld for '%s'", merges,
		    bpe->nmerges, n, path);
		json_decref(vocab);
		vlm_bpe_release(bpe);
		return -1;
	}
	if (check_vocab(bpe, vocab, path) < 0) {
		json_decref(vocab);
		vlm_bpe_release(bpe);
		return -1;
	}
	json_decref(vocab);
	return 0;
}

int
vlm_bpe_load(struct vlm_bpe *bpe, const char *path)
{
	size_t n = strlen(path);

	memset(bpe, 0, sizeof(*bpe));
	if (n >= 5 && !strcmp(path + n - 5, ".json"))
		return load_hf(bpe, path);
	return load_merges(bpe, path, VLM_BPE_CLIP_MERGES);
}
