/*
 * wds.c - webdataset tar shards as pairs (one row a sample, OpenCLIP's
 * --train-data); CLIP_benchmark's directories are read by wds-bench.c
 * over the same scan. libarchive reads the
 * member headers and the small text members; an image is kept as its
 * shard, offset and size (a struct vlm_blob) and read by the loader's
 * threads when its item is loaded, so the items can be visited in any
 * order: the loader's permutation, cursor and resume work on shard
 * samples exactly as on the rows of a pairs file.
 */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/wds-priv.h"

#define TEXT_MAX (1 << 20)  /* a caption or label member, bytes */
/* an image member read into memory: what vlm_blob_image_load allows */
#define IMAGE_MAX (16 * VLM_IMAGE_MAX_PIXELS + (1 << 16))

/* ---- brace expansion ---- */

static int
expand(const char *pat, char ***v, int *n)
{
	const char *o = strchr(pat, '{'), *c = o ? strchr(o, '}') : NULL;
	char *alt, *s, *a, *save = NULL, *dots;
	long lo, hi;
	int w, rc = 0;

	if (!o || !c)
		return *n >= BRACE_MAX ? -1 : vlm_strs_push(v, n, pat);
	if (!(alt = strndup(o + 1, c - o - 1)))
		return -1;
	dots = strstr(alt, "..");
	if (dots && sscanf(alt, "%ld..%ld", &lo, &hi) == 2 && lo <= hi &&
	    hi - lo < BRACE_MAX) {
		/* braceexpand: a bound with a leading zero pads every
		 * number to the longer bound's width */
		w = 0;
		if ((alt[0] == '0' && dots - alt > 1) || (dots[2] == '0' &&
		    dots[3] != '\0'))
			w = (int)(dots - alt) > (int)strlen(dots + 2) ?
			    (int)(dots - alt) : (int)strlen(dots + 2);
		for (long i = lo; rc == 0 && i <= hi; i++) {
			if (asprintf(&s, "%.*s%0*ld%s", (int)(o - pat), pat, w,
			    i, c + 1) < 0)
				rc = -1;
			else
				rc = expand(s, v, n), free(s);
		}
	} else {
		for (a = strtok_r(alt, ",", &save); rc == 0 && a;
		    a = strtok_r(NULL, ",", &save)) {
			if (asprintf(&s, "%.*s%s%s", (int)(o - pat), pat, a,
			    c + 1) < 0)
				rc = -1;
			else
				rc = expand(s, v, n), free(s);
		}
	}
	free(alt);
	return rc;
}

int
vlm_brace_expand(const char *pattern, char ***names, int *n)
{
	char *p = strdup(pattern), *s = p, *e;
	int rc = p ? 0 : -1;

	*names = NULL;
	*n = 0;
	for (; rc == 0 && s; s = e ? e + 2 : NULL) {
		if ((e = strstr(s, "::")) != NULL)
			*e = '\0';
		if (*s)
			rc = expand(s, names, n);
	}
	free(p);
	if (rc < 0) {
		vlm_strs_free(*names, *n);
		*names = NULL;
		*n = 0;
		return vlm_error("'%s': out of memory or over %d names",
		    pattern, BRACE_MAX);
	}
	if (*n == 0)
		return vlm_error("'%s': no shard names", pattern);
	return 0;
}

/* The command of a "pipe:COMMAND" shard, or NULL. */
static const char *
pipe_cmd(const char *name)
{
	return strncmp(name, "pipe:", 5) == 0 ? name + 5 : NULL;
}

/* path ends in ext */
static int
ends(const char *path, const char *ext)
{
	size_t k = strlen(path), e = strlen(ext);

	return k >= e && strcmp(path + k - e, ext) == 0;
}

int
vlm_wds_is_shards(const char *path)
{
	return ends(path, ".tar") || ends(path, ".tar.gz") ||
	    ends(path, ".tgz") || pipe_cmd(path) != NULL;
}

/* ---- reading one shard ---- */

static void
sample_clear(struct wds_sample *s)
{
	free(s->key);
	free(s->text);
	free(s->label);
	free(s->bytes);
	memset(s, 0, sizeof(*s));
}

static int
is_image_ext(const char *e)
{
	return !strcmp(e, "jpg") || !strcmp(e, "jpeg") || !strcmp(e, "png") ||
	    !strcmp(e, "webp");
}

/* The member's data, NUL-terminated; NULL with a message. */
static char *
read_data(struct archive *a, int64_t size, int64_t max, const char *shard,
    const char *name)
{
	char *t;
	la_ssize_t k;

	if (size > max) {
		vlm_error("'%s': %s: member over %lld bytes", shard, name,
		    (long long)max);
		return NULL;
	}
	if (!(t = malloc(size + 1))) {
		vlm_error("'%s': out of memory", shard);
		return NULL;
	}
	if ((k = archive_read_data(a, t, size)) != size) {
		vlm_error("'%s': %s: %s", shard, name, k < 0 ?
		    archive_error_string(a) : "truncated tar");
		free(t);
		return NULL;
	}
	t[size] = '\0';
	return t;
}

/* Report a bad sample: "'SHARD': KEY: why". */
static int
bad_sample(struct wds_scan *sc, int k, const char *key, const char *why)
{
	char *msg;
	int rc;

	if (asprintf(&msg, "'%s': %s%s%s", sc->shards[k], key ? key : "",
	    key ? ": " : "", why) < 0)
		return vlm_error("out of memory");
	rc = sc->bad(sc->arg, sc->shards[k], key, msg);
	free(msg);
	return rc;
}

/* Emit the finished sample *s (or report it bad); *num counts them. */
static int
finish(struct wds_scan *sc, int k, struct wds_sample *s, int *num)
{
	char why[80];
	int rc;

	if (!s->key)
		return 0;
	(*num)++;
	if (!s->img.file)
		snprintf(why, sizeof(why), "no image (jpg, jpeg, png, webp)");
	else if (sc->text_key && !s->text)
		snprintf(why, sizeof(why), "no '%.40s'", sc->text_key);
	else if (sc->label_key && !s->label)
		snprintf(why, sizeof(why), "no '%.40s'", sc->label_key);
	else
		return sc->emit(sc->arg, k, *num, s);
	rc = bad_sample(sc, k, s->key, why);
	sample_clear(s);
	return rc;
}

/* Add member name (data at off, size bytes) to the sample in *s. */
static int
member(struct wds_scan *sc, int k, struct archive *a, const char *name,
    int64_t off, int64_t size, struct wds_sample *s, int *num)
{
	const char *base = strrchr(name, '/'), *dot;
	char ext[64];
	size_t kl;

	base = base ? base + 1 : name;
	if (!(dot = strchr(base, '.')) || base[0] == '.')
		return 0;
	kl = dot - name;
	snprintf(ext, sizeof(ext), "%s", dot + 1);
	for (char *c = ext; *c; c++)
		*c = tolower((unsigned char)*c);
	if (!s->key || strlen(s->key) != kl || strncmp(s->key, name, kl)) {
		if (finish(sc, k, s, num) < 0)
			return -1;
		sample_clear(s);
		if (!(s->key = strndup(name, kl)))
			return vlm_error("out of memory");
	}
	if (is_image_ext(ext) && !s->img.file) {
		if (sc->bytes && !(s->bytes = read_data(a, size, IMAGE_MAX,
		    sc->shards[k], name)))
			return -2;
		s->img = (struct vlm_blob){ sc->shards[k], off, size };
	} else if (sc->text_key && !s->text && !strcmp(ext, sc->text_key)) {
		if (!(s->text = read_data(a, size, TEXT_MAX, sc->shards[k],
		    name)))
			return -2;
	} else if (sc->label_key && !s->label && !strcmp(ext,
	    sc->label_key)) {
		if (!(s->label = read_data(a, size, TEXT_MAX, sc->shards[k],
		    name)))
			return -2;
	}
	return 0;
}

/* the key of member name, malloc'ed ("" when it has none) */
static char *
key_of(const char *name)
{
	const char *base = strrchr(name, '/'), *dot;

	base = base ? base + 1 : name;
	dot = base[0] == '.' ? NULL : strchr(base, '.');
	return strndup(name, dot ? (size_t)(dot - name) : 0);
}

/*
 * A shard ends early at member name (NULL: a header could not be read):
 * the sample that member belongs to is bad, one before it is finished.
 */
static int
cut(struct wds_scan *sc, int k, struct wds_sample *s, const char *name,
    const char *why, int *num)
{
	char *key = name ? key_of(name) : NULL;
	int rc = 0;

	if (name && !key)
		return vlm_error("out of memory");
	if (s->key && key && strcmp(s->key, key) != 0)
		rc = finish(sc, k, s, num);
	else if (s->key)
		rc = bad_sample(sc, k, s->key, why);
	if (rc == 0 && key && (!s->key || strcmp(s->key, key) != 0))
		rc = bad_sample(sc, k, key[0] ? key : name, why);
	else if (rc == 0 && !s->key && !key)
		rc = bad_sample(sc, k, NULL, why);
	sample_clear(s);
	free(key);
	return rc;
}

/*
 * Open shard k of sc into rd: a file (plain tar, or gzip-compressed when
 * sc->bytes), or the output of a "pipe:" command (sc->bytes only). -1
 * when it cannot be opened.
 */
int
vlm_wds_open(struct wds_scan *sc, int k, struct wds_reader *rd)
{
	const char *path = sc->shards[k], *cmd = pipe_cmd(path);

	memset(rd, 0, sizeof(*rd));
	rd->k = k;
	rd->name = path;
	rd->size = -1;
	if (cmd && !sc->bytes)
		return vlm_error("'%s': a pipe is read streaming only", path);
	if (!(rd->a = archive_read_new()))
		return vlm_error("'%s': out of memory", path);
	archive_read_support_format_tar(rd->a);
	archive_read_support_filter_gzip(rd->a); /* indexed: refused below */
	if (cmd && !(rd->pipe = popen(cmd, "r")))
		return vlm_error("'%s': %s", path, strerror(errno));
	if (!cmd) {
		struct stat st;
		if (stat(path, &st) < 0)
			return vlm_error("'%s': %s", path, strerror(errno));
		rd->size = st.st_size;
	}
	if ((cmd ? archive_read_open_FILE(rd->a, rd->pipe) :
	    archive_read_open_filename(rd->a, path, 1 << 16)) != ARCHIVE_OK) {
		vlm_error("'%s': %s", path, archive_error_string(rd->a) ?
		    archive_error_string(rd->a) : "not a tar");
		/* a command that failed says more than an empty tar */
		rd->done = 1;
		vlm_wds_close(rd);
		return -1;
	}
	return 0;
}

/*
 * The next member of rd's shard into its samples (finished ones emitted):
 * 1, or 0 at the end of the shard. A truncated or corrupt shard ends
 * there: the sample being read is reported bad with the error and the
 * samples before it are kept. -1 only when out of memory or a callback
 * failed.
 */
int
vlm_wds_step(struct wds_scan *sc, struct wds_reader *rd)
{
	const char *path = sc->shards[rd->k], *name = NULL, *at = NULL;
	struct archive *a = rd->a;
	struct archive_entry *e;
	int r, rc;

	if (rd->done)
		return 0;
	/* ARCHIVE_WARN: a name not in the locale's charset (pax headers
	 * hold UTF-8), read as UTF-8 all the same */
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
	    r == ARCHIVE_WARN) {
		int64_t off = archive_filter_bytes(a, 0);
		int64_t size = archive_entry_size(e);
		if (!(name = archive_entry_pathname_utf8(e)))
			name = archive_entry_pathname(e);
		if (archive_entry_filetype(e) != AE_IFREG || !name)
			continue;
		if (archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE) {
			if (!sc->bytes)
				return vlm_error("'%s': a compressed shard is "
				    "read streaming only", path);
			rd->size = -1; /* offsets are the uncompressed ones */
		}
		if (rd->size >= 0 && off + size > rd->size) {
			r = ARCHIVE_FATAL;
			archive_set_error(a, 0, "truncated tar");
			at = name; /* valid: the entry is still current */
			break;
		}
		rc = member(sc, rd->k, a, name, off, size, &rd->s, &rd->num);
		if (rc == -2) /* a member's data could not be read */
			break;
		return rc < 0 ? -1 : 1;
	}
	rd->done = 1;
	if (r == ARCHIVE_OK || r == ARCHIVE_WARN)
		rc = cut(sc, rd->k, &rd->s, name, vlm_errmsg(), &rd->num);
	else if (r != ARCHIVE_EOF)
		rc = cut(sc, rd->k, &rd->s, at, archive_error_string(a) ?
		    archive_error_string(a) : "corrupt tar", &rd->num);
	else
		rc = finish(sc, rd->k, &rd->s, &rd->num);
	rd->eof = r == ARCHIVE_EOF;
	sample_clear(&rd->s);
	return rc < 0 ? -1 : 0;
}

/* Close rd; -1 when its command, read to the end, failed. */
int
vlm_wds_close(struct wds_reader *rd)
{
	char buf[4096];
	int st = 0, rc = 0;

	sample_clear(&rd->s);
	if (rd->a)
		archive_read_close(rd->a);
	if (rd->pipe && rd->done) /* all of it: the command may finish */
		while (fread(buf, 1, sizeof(buf), rd->pipe) > 0)
			;
	if (rd->pipe)
		st = pclose(rd->pipe);
	/* closed early, the command may die of SIGPIPE: not its failure */
	if (rd->pipe && rd->done && st != 0)
		rc = vlm_error("'%s': the command failed (%s %d)", rd->name,
		    WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ?
		    WEXITSTATUS(st) : WTERMSIG(st));
	if (rd->a)
		archive_read_free(rd->a);
	rd->a = NULL;
	rd->pipe = NULL;
	return rc;
}

/* Every sample of shard k; -1 when it cannot be opened, or no memory. */
static int
scan_shard(struct wds_scan *sc, int k)
{
	struct wds_reader rd;
	int rc;

	if ((rc = vlm_wds_open(sc, k, &rd)) == 0)
		while ((rc = vlm_wds_step(sc, &rd)) > 0)
			;
	if (vlm_wds_close(&rd) < 0)
		rc = -1;
	return rc;
}

int
vlm_wds_scan(struct wds_scan *sc, const char *pattern)
{
	if (vlm_brace_expand(pattern, &sc->shards, &sc->nshards) < 0)
		return -1;
	for (int k = 0; k < sc->nshards; k++) {
		if (!vlm_wds_is_shards(sc->shards[k]))
			return vlm_error("'%s': not a shard (.tar, .tar.gz, "
			    ".tgz, pipe:)",
			    sc->shards[k]);
		if (scan_shard(sc, k) < 0)
			return -1;
	}
	return 0;
}

/* ---- as pairs ---- */

struct pairs_arg {
	struct vlm_pairs *p;
	int cap, split;
};

static int
pairs_bad(void *arg, const char *shard, const char *key, const char *msg)
{
	struct vlm_pairs *p = ((struct pairs_arg *)arg)->p;

	(void)shard, (void)key;
	p->nbad++;
	if (p->nbadmsg == VLM_PAIRS_MAXBAD)
		return 0;
	return vlm_strs_push(&p->bad, &p->nbadmsg, msg) < 0 ?
	    vlm_error("out of memory") : 0;
}

static int
pairs_row(struct pairs_arg *a, int k, int num, const char *key,
    const struct vlm_blob *img, const char *cap, int image)
{
	struct vlm_pairs *p = a->p;
	int n = p->n;

	if (n == a->cap) {
		int c = a->cap ? 2 * a->cap : 1024;
		if (vlm_array_grow(&p->paths, sizeof(char *), c) < 0 ||
		    vlm_array_grow(&p->captions, sizeof(char *), c) < 0 ||
		    vlm_array_grow(&p->image_id, sizeof(int), c) < 0 ||
		    vlm_array_grow(&p->line, sizeof(int), c) < 0 ||
		    vlm_array_grow(&p->image_row, sizeof(int), c) < 0 ||
		    vlm_array_grow(&p->blobs, sizeof(*p->blobs), c) < 0)
			return vlm_error("out of memory");
		a->cap = c;
	}
	(void)k;
	if (asprintf(&p->paths[n], "%s:%s", img->file, key) < 0)
		return vlm_error("out of memory");
	if (!(p->captions[n] = strdup(cap))) {
		free(p->paths[n]);
		return vlm_error("out of memory");
	}
	p->blobs[n] = *img;
	p->line[n] = num;
	if (image)
		p->image_row[p->nimages++] = n;
	p->image_id[n] = p->nimages - 1;
	p->n++;
	return 0;
}

/* One sample: a row, or with split a row per line of its text. */
static int
pairs_emit(void *arg, int k, int num, struct wds_sample *s)
{
	struct pairs_arg *a = arg;
	char *t = s->text, *e, *msg;
	int first = 1, rc = 0;

	if (a->p->n > INT_MAX / 4)
		return vlm_error("'%s': too many samples", s->img.file);
	if (!a->split)
		rc = pairs_row(a, k, num, s->key, &s->img, t, 1);
	for (; a->split && rc == 0 && *t; t = e + (*e == '\r' && e[1] ==
	    '\n' ? 2 : *e != '\0')) {
		e = t + strcspn(t, "\r\n");
		char c = *e;
		*e = '\0';
		rc = pairs_row(a, k, num, s->key, &s->img, t, first);
		*e = c;
		first = 0;
	}
	if (rc == 0 && first && a->split) {
		if (asprintf(&msg, "'%s': %s: empty 'txt'", s->img.file,
		    s->key) < 0)
			return vlm_error("out of memory");
		rc = pairs_bad(arg, s->img.file, s->key, msg);
		free(msg);
	}
	return rc;
}

int
vlm_wds_pairs_scan(struct vlm_pairs *p, const char *pattern,
    const char *key, int split)
{
	struct pairs_arg a = { p, 0, split };
	struct wds_scan sc = { .text_key = key ? key : "txt", .emit = pairs_emit,
	    .bad = pairs_bad, .arg = &a };
	int rc;

	memset(p, 0, sizeof(*p));
	rc = vlm_wds_scan(&sc, pattern);
	p->shards = sc.shards;
	p->nshards = sc.nshards;
	if (rc == 0 && p->n == 0)
		rc = vlm_error("'%s': no samples with an image and '%s'%s%s",
		    pattern, sc.text_key, p->nbadmsg ? "; " : "",
		    p->nbadmsg ? p->bad[0] : "");
	if (rc < 0)
		vlm_pairs_release(p);
	return rc;
}

int
vlm_wds_pairs_load(struct vlm_pairs *p, const char *pattern,
    const char *key)
{
	return vlm_wds_pairs_scan(p, pattern, key, 0);
}

/* ---- images inside shards ---- */

int
vlm_blob_image_load(struct vlm_image *im, const struct vlm_blob *b,
    const char *name, const struct vlm_image_opts *o)
{
	uint8_t *buf;
	ssize_t k = 0, got = 0;
	int fd, rc;

	im->w = im->h = 0;
	im->rgb = NULL;
	if (b->size > 16 * (o && o->max_pixels ? o->max_pixels :
	    VLM_IMAGE_MAX_PIXELS) + (1 << 16))
		return vlm_error("'%s': too large for an image of the pixel "
		    "limit (%lld bytes)", name, (long long)b->size);
	if ((fd = open(b->file, O_RDONLY | O_CLOEXEC)) < 0)
		return vlm_error("'%s': %s", b->file, strerror(errno));
	if (!(buf = malloc(b->size ? b->size : 1))) {
		close(fd);
		return vlm_error("'%s': out of memory", name);
	}
	while (k < b->size && (got = pread(fd, buf + k, b->size - k,
	    b->off + k)) > 0)
		k += got;
	close(fd);
	if (k < b->size)
		rc = vlm_error("'%s': %s", name, got < 0 ? strerror(errno) :
		    "shard truncated since it was read");
	else
		rc = vlm_image_decode(im, buf, b->size, name, o);
	free(buf);
	return rc;
}
