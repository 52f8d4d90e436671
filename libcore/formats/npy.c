/*
 * npy.c - NumPy .npy records: read versions 1.0, 2.0 and 3.0, write 1.0.
 *
 * A record is the magic "\x93NUMPY", a major and a minor version byte,
 * the header length (u16 little-endian for 1.0, u32 for 2.0 and 3.0),
 * the header, then the data. The header is a Python dict literal with
 * exactly the keys 'descr', 'fortran_order' and 'shape', e.g.
 *
 *	{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 *
 * padded with spaces and ended by '\n' so that magic, version, length
 * and header together are a multiple of 64 bytes (version 3.0 only
 * allows UTF-8 in the header, which none of our dtypes need).
 *
 * Dtypes: '<f4' '<f2' '<i4' '<i8' '|u1' (also read as '<u1'), the
 * numeric vlm_dtypes, and '<U{w}': fixed-width UCS-4 strings (ids),
 * which vlm_npy_read returns as UTF-8 C strings. Refused, each with a
 * one-line message naming the file: object arrays ('|O', they need
 * pickle), fortran_order True, big-endian or other dtypes, malformed
 * header dicts, more than VLM_MAX_DIMS dimensions, shapes whose size
 * overflows, zero-width strings ('<U0'), truncated headers or data (a
 * regular file must hold the bytes a header claims before any is
 * allocated; from a pipe, memory grows only as the data arrives).
 *
 * Records are read from and written to any FILE (pipes included), so a
 * .npys stream (npys.c) is just records one after another.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/formats.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host"
#endif

#define NPY_MAX_HEADER (1 << 20) /* numpy's own default cap is 10000 */
#define NPY_MAX_WIDTH (1 << 20)  /* '<U{w}': characters per string */
#define NPY_GROW_DIGITS 21       /* as numpy: room to rewrite shape[0] */
#define NPY_CHUNK ((size_t)1 << 24)

static const struct npy_type {
	const char *descr;
	enum vlm_dtype dtype;
	size_t size;
} npy_types[] = {
	{ "<f4", VLM_DTYPE_F32, 4 },
	{ "<f2", VLM_DTYPE_F16, 2 },
	{ "<i4", VLM_DTYPE_I32, 4 },
	{ "<i8", VLM_DTYPE_I64, 8 },
	{ "|u1", VLM_DTYPE_U8, 1 }, /* the first of a dtype is written */
	{ "<u1", VLM_DTYPE_U8, 1 },
};
#define NTYPES (sizeof(npy_types) / sizeof(*npy_types))

/* what a header says */
struct npy_header {
	char descr[32];
	int fortran;
	int ndim;
	int64_t shape[VLM_MAX_DIMS];
};

/* a cursor over the header text; why says what was malformed */
struct cur {
	const char *p, *end;
	const char *why;
};

static const struct npy_type *
type_of_dtype(enum vlm_dtype dt)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (npy_types[i].dtype == dt)
			return &npy_types[i];
	return NULL;
}

static void
skip_ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' ||
	    *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* Consume ch after optional space; 0 if it is not there. */
static int
eat(struct cur *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return 1;
	}
	return 0;
}

static int
bad(struct cur *c, const char *why)
{
	c->why = why;
	return -1;
}

/* A Python string literal without escapes: '...' or "...". */
static int
parse_str(struct cur *c, char *buf, size_t n)
{
	size_t len = 0;
	char q;

	skip_ws(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return bad(c, "expected a string");
	q = *c->p++;
	while (c->p < c->end && *c->p != q) {
		if (*c->p == '\\' || *c->p == '\n')
			return bad(c, "unsupported string literal");
		if (len + 1 >= n)
			return bad(c, "string too long");
		buf[len++] = *c->p++;
	}
	if (c->p >= c->end)
		return bad(c, "unterminated string");
	c->p++;
	buf[len] = '\0';
	return 0;
}

static int
parse_bool(struct cur *c, int *v)
{
	skip_ws(c);
	if (c->end - c->p >= 4 && memcmp(c->p, "True", 4) == 0)
		*v = 1, c->p += 4;
	else if (c->end - c->p >= 5 && memcmp(c->p, "False", 5) == 0)
		*v = 0, c->p += 5;
	else
		return bad(c, "fortran_order is not True or False");
	return 0;
}

/* A tuple of non-negative ints: (), (3,), (2, 3) or (2, 3,). */
static int
parse_shape(struct cur *c, struct npy_header *h)
{
	h->ndim = 0;
	if (!eat(c, '('))
		return bad(c, "shape is not a tuple");
	if (eat(c, ')'))
		return 0;
	for (;;) {
		int64_t v = 0;
		skip_ws(c);
		if (c->p >= c->end || !isdigit((unsigned char)*c->p))
			return bad(c, "shape is not a tuple of integers");
		while (c->p < c->end && isdigit((unsigned char)*c->p))
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, *c->p++ - '0', &v))
				return bad(c, "shape dimension too large");
		if (h->ndim == VLM_MAX_DIMS)
			return bad(c, "too many dimensions");
		h->shape[h->ndim++] = v;
		if (eat(c, ')'))
			return h->ndim == 1 ? bad(c, "shape (n) is not a "
			    "tuple; want (n,)") : 0;
		if (!eat(c, ','))
			return bad(c, "expected ',' or ')' in shape");
		if (eat(c, ')'))
			return 0;
	}
}

/* One "key: value" of the header dict; its bit in *seen. */
static int
parse_item(struct cur *c, struct npy_header *h, int *seen)
{
	char key[32];
	int bit, rc;

	if (parse_str(c, key, sizeof(key)) < 0)
		return -1;
	if (!eat(c, ':'))
		return bad(c, "expected ':' after a key");
	if (strcmp(key, "descr") == 0) {
		bit = 1;
		rc = parse_str(c, h->descr, sizeof(h->descr));
	} else if (strcmp(key, "fortran_order") == 0) {
		bit = 2;
		rc = parse_bool(c, &h->fortran);
	} else if (strcmp(key, "shape") == 0) {
		bit = 4;
		rc = parse_shape(c, h);
	} else {
		return bad(c, "unknown key in header");
	}
	if (rc < 0)
		return -1;
	if (*seen & bit)
		return bad(c, "duplicate key in header");
	*seen |= bit;
	return 0;
}

/* The header dict: the three keys, each once, in any order. */
static int
parse_dict(struct cur *c, struct npy_header *h)
{
	int seen = 0;

	if (!eat(c, '{'))
		return bad(c, "header is not a dict");
	while (!eat(c, '}')) {
		if (parse_item(c, h, &seen) < 0)
			return -1;
		if (!eat(c, ',')) {
			if (!eat(c, '}'))
				return bad(c, "expected ',' or '}'");
			break;
		}
	}
	if (seen != 7)
		return bad(c, "header lacks descr, fortran_order or shape");
	skip_ws(c);
	if (c->p != c->end)
		return bad(c, "trailing text after the header dict");
	return 0;
}

/* Fill r's dtype (or string width) from the descr; *size the item size. */
static int
parse_descr(const char *name, const struct npy_header *h,
    struct vlm_npy *r, size_t *size)
{
	const char *d = h->descr;
	char *e;

	for (size_t i = 0; i < NTYPES; i++) {
		if (strcmp(d, npy_types[i].descr) == 0) {
			r->t.dtype = npy_types[i].dtype;
			*size = npy_types[i].size;
			return 0;
		}
	}
	if (d[0] == '<' && d[1] == 'U' && isdigit((unsigned char)d[2])) {
		long w = strtol(d + 2, &e, 10);
		if (*e == '\0' && w == 0)
			return vlm_error("'%s': zero-width string dtype '%s' "
			    "is refused", name, d);
		if (*e == '\0' && w <= NPY_MAX_WIDTH) {
			r->t.dtype = VLM_DTYPE_U8;
			r->width = (int)w;
			r->is_str = 1;
			*size = 4 * (size_t)w;
			return 0;
		}
	}
	if (strchr(d, 'O'))
		return vlm_error("'%s': object arrays (dtype '%s') are "
		    "refused: they need pickle", name, d);
	if (d[0] == '>')
		return vlm_error("'%s': big-endian dtype '%s' is not "
		    "supported", name, d);
	return vlm_error("'%s': unsupported dtype '%s'", name, d);
}

/* Read exactly n bytes; -1 with "truncated WHAT" if the stream ends. */
static int
read_full(FILE *f, const char *name, void *buf, size_t n, const char *what)
{
	if (n == 0 || fread(buf, 1, n, f) == n)
		return 0;
	if (ferror(f))
		return vlm_error("'%s': %s", name, strerror(errno));
	return vlm_error("'%s': truncated %s", name, what);
}

/*
 * Read nbytes of data, growing the buffer as bytes arrive so that a
 * header claiming a huge shape fails as truncated, not out of memory.
 */
static void *
read_data(FILE *f, const char *name, size_t nbytes)
{
	size_t cap = nbytes < NPY_CHUNK ? nbytes : NPY_CHUNK, have = 0;
	char *buf = malloc(cap ? cap : 1), *nb;

	if (!buf)
		return vlm_error("'%s': out of memory", name), NULL;
	for (;;) {
		if (read_full(f, name, buf + have, cap - have, "data") < 0)
			break;
		have = cap;
		if (have == nbytes)
			return buf;
		cap = nbytes / 2 < cap ? nbytes : 2 * cap;
		if (!(nb = realloc(buf, cap))) {
			vlm_error("'%s': out of memory", name);
			break;
		}
		buf = nb;
	}
	free(buf);
	return NULL;
}

/* A regular file's remaining bytes after the header must hold nbytes;
 * checked before allocating (a pipe's data is read as it arrives). */
static int
check_room(FILE *f, const char *name, size_t nbytes)
{
	struct stat st;
	off_t pos;
	int fd = fileno(f);

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (pos = ftello(f)) < 0 || pos > st.st_size ||
	    nbytes <= (uint64_t)(st.st_size - pos))
		return 0;
	return vlm_error("'%s': truncated data (the header claims %zu "
	    "bytes, %lld remain in the file)", name, nbytes,
	    (long long)(st.st_size - pos));
}

/* Read the magic, version and header; 1 at a clean end of stream. */
static int
read_header(FILE *f, const char *name, struct npy_header *h)
{
	unsigned char pre[12];
	size_t got = fread(pre, 1, 8, f);
	struct cur c;
	uint32_t hlen;
	char *text;
	int rc;

	if (got < 8 && ferror(f))
		return vlm_error("'%s': %s", name, strerror(errno));
	if (got == 0)
		return 1;
	if (memcmp(pre, "\x93NUMPY", got < 6 ? got : 6) != 0)
		return vlm_error("'%s': not a .npy record (bad magic)", name);
	if (got < 8)
		return vlm_error("'%s': truncated header", name);
	if (pre[6] < 1 || pre[6] > 3 || pre[7] != 0)
		return vlm_error("'%s': unsupported .npy version %d.%d", name,
		    pre[6], pre[7]);
	if (read_full(f, name, pre + 8, pre[6] == 1 ? 2 : 4, "header") < 0)
		return -1;
	hlen = pre[8] | pre[9] << 8;
	if (pre[6] > 1)
		hlen |= (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
	if (hlen > NPY_MAX_HEADER)
		return vlm_error("'%s': header too long (%lu bytes)", name,
		    (unsigned long)hlen);
	if (!(text = malloc(hlen + 1)))
		return vlm_error("'%s': out of memory", name);
	if (read_full(f, name, text, hlen, "header") < 0) {
		free(text);
		return -1;
	}
	c = (struct cur){ text, text + hlen, NULL };
	memset(h, 0, sizeof(*h));
	rc = parse_dict(&c, h);
	free(text);
	if (rc < 0)
		return vlm_error("'%s': malformed .npy header: %s", name,
		    c.why);
	return 0;
}

/* Append code point u to out as UTF-8; returns the bytes written. */
static int
utf8_put(char *out, uint32_t u)
{
	if (u < 0x80)
		return out[0] = (char)u, 1;
	if (u < 0x800) {
		out[0] = (char)(0xc0 | u >> 6);
		out[1] = (char)(0x80 | (u & 0x3f));
		return 2;
	}
	if (u < 0x10000) {
		out[0] = (char)(0xe0 | u >> 12);
		out[1] = (char)(0x80 | (u >> 6 & 0x3f));
		out[2] = (char)(0x80 | (u & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | u >> 18);
	out[1] = (char)(0x80 | (u >> 12 & 0x3f));
	out[2] = (char)(0x80 | (u >> 6 & 0x3f));
	out[3] = (char)(0x80 | (u & 0x3f));
	return 4;
}

/*
 * Decode one UTF-8 code point at *s (advanced past it); -1 if the bytes
 * are not shortest-form UTF-8 of a scalar value.
 */
static int32_t
utf8_get(const unsigned char **s)
{
	static const uint32_t min[] = { 0, 0x80, 0x800, 0x10000 };
	const unsigned char *p = *s;
	uint32_t u = *p;
	int n = u < 0x80 ? 0 : u >= 0xc0 && u < 0xe0 ? 1 :
	    u >= 0xe0 && u < 0xf0 ? 2 : u >= 0xf0 && u < 0xf8 ? 3 : -1;

	if (n < 0)
		return -1;
	u &= 0x7f >> n;
	for (int i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		u = u << 6 | (p[i] & 0x3f);
	}
	if (u < min[n] || u > 0x10ffff || (u >= 0xd800 && u < 0xe000))
		return -1;
	*s = p + n + 1;
	return (int32_t)u;
}

/* UCS-4 strings of width w (n of them) into one block of C strings. */
static int
ucs4_to_utf8(const char *name, const uint32_t *in, int64_t n, int w,
    struct vlm_npy *r)
{
	size_t per = 4 * (size_t)w + 1, sz;
	char *s;

	if (__builtin_mul_overflow((size_t)n, sizeof(char *) + per, &sz) ||
	    !(r->str = malloc(sz ? sz : 1)))
		return vlm_error("'%s': out of memory", name);
	s = (char *)(r->str + n);
	for (int64_t i = 0; i < n; i++, in += w) {
		int len = w;
		r->str[i] = s;
		while (len > 0 && in[len - 1] == 0)
			len--;
		for (int j = 0; j < len; j++) {
			uint32_t u = in[j];
			if (u == 0 || u > 0x10ffff || (u >= 0xd800 &&
			    u < 0xe000))
				return vlm_error("'%s': string %lld holds an "
				    "invalid character", name, (long long)i);
			s += utf8_put(s, u);
		}
		*s++ = '\0';
	}
	return 0;
}

int
vlm_npy_read(FILE *f, const char *name, struct vlm_npy *r)
{
	struct npy_header h;
	size_t size = 0, nbytes = 1;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((rc = read_header(f, name, &h)) != 0)
		return rc;
	if (h.fortran)
		return vlm_error("'%s': fortran_order arrays are not "
		    "supported (save a C-contiguous array)", name);
	if (parse_descr(name, &h, r, &size) < 0)
		return -1;
	r->t.ndim = h.ndim;
	for (int i = 0; i < h.ndim; i++) {
		r->t.shape[i] = h.shape[i];
		if (__builtin_mul_overflow(nbytes, (size_t)h.shape[i],
		    &nbytes))
			return vlm_error("'%s': shape overflows", name);
	}
	if (__builtin_mul_overflow(nbytes, size, &nbytes) ||
	    nbytes > INT64_MAX)
		return vlm_error("'%s': shape overflows", name);
	if (check_room(f, name, nbytes) < 0 ||
	    !(r->t.data = read_data(f, name, nbytes)))
		return -1;
	if (!r->is_str)
		return 0;
	rc = ucs4_to_utf8(name, r->t.data, vlm_npy_numel(r), r->width, r);
	free(r->t.data);
	r->t.data = NULL;
	if (rc < 0)
		vlm_npy_release(r);
	return rc;
}

void
vlm_npy_release(struct vlm_npy *r)
{
	free(r->t.data);
	free(r->str);
	memset(r, 0, sizeof(*r));
}

int64_t
vlm_npy_numel(const struct vlm_npy *r)
{
	int64_t n = 1;

	for (int i = 0; i < r->t.ndim; i++)
		n *= r->t.shape[i];
	return n;
}

/*
 * Write a v1 header for descr and shape, byte for byte as numpy 1.24
 * does: padded so that the header for any other shape[0] has the same
 * length and can overwrite it in place.
 */
static int
write_header(FILE *f, const char *name, const char *descr, int ndim,
    const int64_t *shape)
{
	char buf[640];
	size_t n, pad;

	assert(ndim >= 0 && ndim <= VLM_MAX_DIMS && strlen(descr) < 16);
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	n = 10 + sprintf(buf + 10, "{'descr': '%s', 'fortran_order': False, "
	    "'shape': (", descr);
	for (int i = 0; i < ndim; i++)
		n += sprintf(buf + n, "%s%lld", i ? ", " : "",
		    (long long)shape[i]);
	n += sprintf(buf + n, "%s), }", ndim == 1 ? "," : "");
	pad = ndim > 0 ? NPY_GROW_DIGITS - (size_t)snprintf(NULL, 0,
	    "%lld", (long long)shape[0]) : 0;
	pad += (64 - (n + pad + 1) % 64) % 64;
	memset(buf + n, ' ', pad);
	n += pad;
	buf[n++] = '\n';
	buf[8] = (char)((n - 10) & 0xff);
	buf[9] = (char)((n - 10) >> 8);
	if (fwrite(buf, 1, n, f) != n)
		return vlm_error("'%s': %s", name, strerror(errno));
	return 0;
}

int
vlm_npy_write_header(FILE *f, const char *name, enum vlm_dtype dt,
    int ndim, const int64_t *shape)
{
	const struct npy_type *ty = type_of_dtype(dt);

	if (!ty)
		return vlm_error("'%s': dtype %d has no .npy equivalent "
		    "(bfloat16?)", name, (int)dt);
	return write_header(f, name, ty->descr, ndim, shape);
}

int
vlm_npy_write(FILE *f, const char *name, const struct vlm_tensor *t)
{
	const struct npy_type *ty = type_of_dtype(t->dtype);
	size_t nbytes;

	if (!ty)
		return vlm_error("'%s': bfloat16 and other dtypes without a "
		    "NumPy equivalent cannot be written to .npy", name);
	nbytes = ty->size;
	for (int i = 0; i < t->ndim; i++)
		nbytes *= (size_t)t->shape[i];
	if (write_header(f, name, ty->descr, t->ndim, t->shape) < 0)
		return -1;
	if (nbytes && fwrite(t->data, 1, nbytes, f) != nbytes)
		return vlm_error("'%s': %s", name, strerror(errno));
	return 0;
}

/* Characters in s, or -1 if s is not valid UTF-8. */
static int64_t
utf8_len(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int64_t n = 0;

	while (*p) {
		if (utf8_get(&p) < 0)
			return -1;
		n++;
	}
	return n;
}

int
vlm_npy_write_str(FILE *f, const char *name, const char *const *s,
    int64_t n)
{
	int64_t w = 1, len;
	uint32_t *row;
	char descr[32];
	int rc = 0;

	for (int64_t i = 0; i < n; i++) {
		if ((len = utf8_len(s[i])) < 0)
			return vlm_error("'%s': string %lld is not valid "
			    "UTF-8", name, (long long)i);
		if (len > NPY_MAX_WIDTH)
			return vlm_error("'%s': string %lld too long", name,
			    (long long)i);
		w = len > w ? len : w;
	}
	snprintf(descr, sizeof(descr), "<U%lld", (long long)w);
	if (write_header(f, name, descr, 1, &n) < 0)
		return -1;
	if (!(row = malloc(4 * (size_t)w)))
		return vlm_error("'%s': out of memory", name);
	for (int64_t i = 0; i < n && rc == 0; i++) {
		const unsigned char *p = (const unsigned char *)s[i];
		int64_t j = 0;
		memset(row, 0, 4 * (size_t)w);
		while (*p)
			row[j++] = (uint32_t)utf8_get(&p);
		if (fwrite(row, 4, (size_t)w, f) != (size_t)w)
			rc = vlm_error("'%s': %s", name, strerror(errno));
	}
	free(row);
	return rc;
}

int
vlm_npy_load(const char *path, struct vlm_tensor *t)
{
	int std = strcmp(path, "-") == 0;
	const char *name = std ? "<stdin>" : path;
	FILE *f = std ? stdin : fopen(path, "rb");
	struct vlm_npy r;
	int rc;

	if (!f)
		return vlm_error("'%s': %s", path, strerror(errno));
	rc = vlm_npy_read(f, name, &r);
	if (rc > 0)
		rc = vlm_error("'%s': empty file", name);
	else if (rc == 0 && r.is_str)
		rc = vlm_error("'%s': string array (dtype '<U%d') where "
		    "numbers were expected", name, r.width);
	else if (rc == 0 && getc(f) != EOF)
		rc = vlm_error("'%s': trailing data after the array (a .npys "
		    "stream?)", name);
	else if (rc == 0 && ferror(f))
		rc = vlm_error("'%s': %s", name, strerror(errno));
	if (!std)
		fclose(f);
	if (rc == 0)
		*t = r.t;
	else
		vlm_npy_release(&r);
	return rc;
}

int
vlm_npy_save(const char *path, const struct vlm_tensor *t)
{
	struct vlm_atomic a;

	if (vlm_atomic_open(&a, path) < 0)
		return -1;
	if (vlm_npy_write(a.f, path, t) < 0) {
		vlm_atomic_abort(&a);
		return -1;
	}
	return vlm_atomic_commit(&a);
}
