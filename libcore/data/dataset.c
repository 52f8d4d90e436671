/*
 * dataset.c - the two labelled data layouts vlm reads: image-caption pairs
 * in a CSV/TSV file with a header (as OpenCLIP's --csv-img-key,
 * --csv-caption-key and --csv-separator select them), and the ImageFolder
 * tree of classification sets (one directory per class) with optional
 * class-name and prompt-template files. Bad pair rows are skipped and
 * described, one message per row, for the caller to print.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"

/* ---- records: TSV lines, or RFC 4180 CSV with quotes ---- */

struct record {
	char *buf;      /* the logical record, terminator stripped */
	size_t cap;
	char *line;     /* one physical line */
	size_t linecap;
	char **f;       /* fields, pointing into buf (unquoted in place) */
	int nf, fcap;
	int lineno;     /* first line of the record */
};

/* append the next physical line to r->buf; -1 at end of file */
static ssize_t
read_line(FILE *fp, struct record *r, size_t at, int *lines)
{
	ssize_t k = getline(&r->line, &r->linecap, fp);

	if (k < 0)
		return -1;
	(*lines)++;
	if (at + (size_t)k + 1 > r->cap) {
		size_t cap = 2 * (at + k + 1);
		char *p = realloc(r->buf, cap);
		if (!p)
			return -2;
		r->buf = p;
		r->cap = cap;
	}
	memcpy(r->buf + at, r->line, k + 1);
	return k;
}

/*
 * Read one record: a line, or with quoting, lines until the quotes
 * balance (a quoted field may hold newlines; a quote opens a quoted field
 * only at the start of a field). 1 ok, 0 end, -1 out of memory.
 */
static int
read_record(FILE *fp, struct record *r, char sep, int quote, int *lines)
{
	size_t len = 0;
	int inq = 0, start = 1;
	ssize_t k;

	r->lineno = *lines + 1;
	do {
		k = read_line(fp, r, len, lines);
		if (k == -2)
			return -1;
		if (k == -1)
			return len > 0;
		for (char *c = r->buf + len; quote && *c; c++) {
			if (inq && *c == '"' && c[1] == '"')
				c++;
			else if (*c == '"' && (inq || start))
				inq = !inq;
			start = !inq && *c == sep;
		}
		len += k;
	} while (inq);
	if (len > 0 && r->buf[len - 1] == '\n')
		len--;
	if (len > 0 && r->buf[len - 1] == '\r')
		len--;
	r->buf[len] = '\0';
	return 1;
}

static int
add_field(struct record *r, char *s)
{
	if (r->nf == r->fcap) {
		int cap = r->fcap ? 2 * r->fcap : 16;
		char **p = realloc(r->f, cap * sizeof(*p));
		if (!p)
			return -1;
		r->f = p;
		r->fcap = cap;
	}
	r->f[r->nf++] = s;
	return 0;
}

/*
 * Split r->buf at sep. With quote, a field that starts with '"' runs to
 * the closing quote, "" inside stands for one '"', and the separator or
 * the end must follow. Returns 0, or a message for a malformed record
 * ("" for out of memory).
 */
static const char *
split(struct record *r, char sep, int quote)
{
	char *s = r->buf, *out;

	r->nf = 0;
	for (;;) {
		if (add_field(r, s) < 0)
			return "";
		if (quote && *s == '"') {
			for (out = s++;; s++) {
				if (*s == '\0')
					return "unterminated quoted field";
				if (*s == '"' && s[1] != '"')
					break;
				*out++ = *s;
				s += *s == '"';
			}
			*out = '\0';
			s++;
			if (*s != sep && *s != '\0')
				return "text after a closing quote";
		} else {
			while (*s != sep && *s != '\0')
				s++;
		}
		if (*s == '\0')
			return NULL;
		*s++ = '\0';
	}
}

/* ---- pairs ---- */

/* FNV-1a: image paths to image ids */
static uint64_t
hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* the image id of row p->n (its path already stored), new or old */
static int
image_id(struct vlm_pairs *p, int **tab, size_t *cap)
{
	const char *s = p->paths[p->n];
	size_t i;

	if ((size_t)p->nimages * 2 >= *cap) {
		size_t nc = *cap ? 2 * *cap : 1024;
		int *nt = malloc(nc * sizeof(*nt));
		if (!nt)
			return -1;
		memset(nt, 0xff, nc * sizeof(*nt));
		for (int k = 0; k < p->nimages; k++) {
			const char *q = p->paths[p->image_row[k]];
			for (i = hash_str(q) & (nc - 1); nt[i] >= 0;
			    i = (i + 1) & (nc - 1))
				;
			nt[i] = k;
		}
		free(*tab);
		*tab = nt;
		*cap = nc;
	}
	for (i = hash_str(s) & (*cap - 1); (*tab)[i] >= 0;
	    i = (i + 1) & (*cap - 1))
		if (strcmp(p->paths[p->image_row[(*tab)[i]]], s) == 0)
			return (*tab)[i];
	(*tab)[i] = p->nimages;
	p->image_row[p->nimages] = p->n;
	return p->nimages++;
}

/* note a skipped row: count it, keep the first VLM_PAIRS_MAXBAD messages */
static int
bad_row(struct vlm_pairs *p, const char *file, int line, const char *why)
{
	p->nbad++;
	if (p->nbadmsg == VLM_PAIRS_MAXBAD)
		return 0;
	if (p->nbadmsg % 64 == 0) {
		char **b = realloc(p->bad, (p->nbadmsg + 64) * sizeof(*b));
		if (!b)
			return -1;
		p->bad = b;
	}
	if (asprintf(&p->bad[p->nbadmsg], "%s:%d: %s", file, line, why) < 0)
		return -1;
	p->nbadmsg++;
	return 0;
}

int
vlm_array_grow(void *pp, size_t size, int n)
{
	void **p = pp, *q = realloc(*p, size * n);

	if (!q)
		return -1;
	*p = q;
	return 0;
}

/* grow the per-row arrays to hold row p->n */
static int
grow_rows(struct vlm_pairs *p, int *cap)
{
	int nc = *cap ? 2 * *cap : 1024;

	if (p->n < *cap)
		return 0;
	if (vlm_array_grow(&p->paths, sizeof(*p->paths), nc) < 0 ||
	    vlm_array_grow(&p->captions, sizeof(*p->captions), nc) < 0 ||
	    vlm_array_grow(&p->image_id, sizeof(*p->image_id), nc) < 0 ||
	    vlm_array_grow(&p->line, sizeof(*p->line), nc) < 0 ||
	    vlm_array_grow(&p->image_row, sizeof(*p->image_row), nc) < 0)
		return -1;
	*cap = nc;
	return 0;
}

static int
is_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
			return 0;
	return 1;
}

/* relative image paths are taken from the pairs file's directory */
static char *
join_dir(const char *dir, const char *path)
{
	char *s;

	if (path[0] == '/' || dir[0] == '\0')
		return strdup(path);
	if (asprintf(&s, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" :
	    "/", path) < 0)
		return NULL;
	return s;
}

/* check one split row and keep it; -1 only for out of memory */
static int
add_row(struct vlm_pairs *p, struct record *r, const char *name,
    const char *dir, int nh, int ic, int cc, int *cap, int **tab,
    size_t *tcap)
{
	char why[64];

	if (r->nf != nh) {
		snprintf(why, sizeof(why), "%d fields, the header has %d",
		    r->nf, nh);
		return bad_row(p, name, r->lineno, why);
	}
	if (r->f[ic][0] == '\0')
		return bad_row(p, name, r->lineno, "empty image path");
	if (is_blank(r->f[cc]))
		return bad_row(p, name, r->lineno, "empty caption");
	if (grow_rows(p, cap) < 0)
		return -1;
	p->paths[p->n] = join_dir(dir, r->f[ic]);
	p->captions[p->n] = strdup(r->f[cc]);
	if (!p->paths[p->n] || !p->captions[p->n]) {
		free(p->paths[p->n]);
		free(p->captions[p->n]);
		return -1;
	}
	p->line[p->n] = r->lineno;
	if ((p->image_id[p->n] = image_id(p, tab, tcap)) < 0) {
		free(p->paths[p->n]);
		free(p->captions[p->n]);
		return -1;
	}
	p->n++;
	return 0;
}

/* the header: find the two columns; -1 with a message if absent */
static int
find_columns(struct record *r, const char *name, const char *ik,
    const char *ck, int *ic, int *cc)
{
	if (strncmp(r->f[0], "\xef\xbb\xbf", 3) == 0)
		r->f[0] += 3;  /* UTF-8 byte order mark */
	*ic = *cc = -1;
	for (int i = r->nf - 1; i >= 0; i--) {
		if (strcmp(r->f[i], ik) == 0)
			*ic = i;
		if (strcmp(r->f[i], ck) == 0)
			*cc = i;
	}
	if (*ic < 0 || *cc < 0)
		return vlm_error("'%s': no column '%s' in the header", name,
		    *ic < 0 ? ik : ck);
	return 0;
}

/* read every row after the header into p */
static int
read_rows(struct vlm_pairs *p, FILE *fp, const char *name, const char *dir,
    const struct vlm_pairs_opts *o, struct record *r)
{
	const char *ik = o && o->img_key ? o->img_key : "filepath";
	const char *ck = o && o->caption_key ? o->caption_key : "title";
	char sep = o && o->sep ? o->sep : '\t';
	int quote = sep != '\t', lines = 0, ic, cc, nh, cap = 0, rc = 0;
	int *tab = NULL;
	size_t tcap = 0;
	const char *why;

	if ((rc = read_record(fp, r, sep, quote, &lines)) <= 0)
		return rc < 0 ? vlm_error("'%s': out of memory", name) :
		    vlm_error("'%s': empty file, no header", name);
	if ((why = split(r, sep, quote)) != NULL)
		return vlm_error("'%s': header: %s", name,
		    *why ? why : "out of memory");
	nh = r->nf;
	if (find_columns(r, name, ik, ck, &ic, &cc) < 0)
		return -1;
	rc = 0;
	while (rc == 0 && (rc = read_record(fp, r, sep, quote, &lines)) > 0) {
		rc = 0;
		if (r->buf[0] == '\0')
			continue;  /* blank line */
		if ((why = split(r, sep, quote)) != NULL && *why == '\0')
			rc = -1;
		else if (why)
			rc = bad_row(p, name, r->lineno, why);
		else
			rc = add_row(p, r, name, dir, nh, ic, cc, &cap, &tab,
			    &tcap);
	}
	free(tab);
	if (rc < 0)
		return vlm_error("'%s': out of memory", name);
	if (ferror(fp))
		return vlm_error("'%s': read error", name);
	return 0;
}

int
vlm_pairs_load(struct vlm_pairs *p, const char *path,
    const struct vlm_pairs_opts *o)
{
	struct record r = { 0 };
	int stdin_ = strcmp(path, "-") == 0, rc;
	const char *name = stdin_ ? "<stdin>" : path;
	const char *slash = strrchr(path, '/');
	char *dir;
	FILE *fp;

	memset(p, 0, sizeof(*p));
	if (vlm_wds_is_shards(path))
		return vlm_wds_pairs_load(p, path, o ? o->caption_key : NULL);
	if (o && o->sep && (o->sep == '"' || o->sep == '\n'))
		return vlm_error("'%s': bad field separator", name);
	if (!(dir = strndup(path, slash && !stdin_ ? slash - path + (slash ==
	    path) : 0)))
		return vlm_error("'%s': out of memory", name);
	fp = stdin_ ? stdin : fopen(path, "r");
	if (!fp) {
		free(dir);
		return vlm_error("'%s': %s", path, strerror(errno));
	}
	rc = read_rows(p, fp, name, dir, o, &r);
	if (!stdin_)
		fclose(fp);
	free(r.buf);
	free(r.line);
	free(r.f);
	free(dir);
	if (rc < 0)
		vlm_pairs_release(p);
	return rc;
}

void
vlm_pairs_release(struct vlm_pairs *p)
{
	for (int i = 0; i < p->n; i++) {
		free(p->paths[i]);
		free(p->captions[i]);
	}
	for (int i = 0; i < p->nbadmsg; i++)
		free(p->bad[i]);
	free(p->paths);
	free(p->captions);
	free(p->image_id);
	free(p->line);
	free(p->image_row);
	free(p->bad);
	free(p->blobs);
	for (int i = 0; i < p->nshards; i++)
		free(p->shards[i]);
	free(p->shards);
	memset(p, 0, sizeof(*p));
}

/* ---- ImageFolder, class names and templates ---- */

static void
free_strs(char **s, int n)
{
	for (int i = 0; s && i < n; i++)
		free(s[i]);
	free(s);
}

/* append a copy of s to (*v, *n); -1 on out of memory */
static int
push_str(char ***v, int *n, const char *s)
{
	char *c = strdup(s);

	if (!c)
		return -1;
	if ((*n & (*n - 1)) == 0) {  /* 0, 1, 2, 4, ...: grow */
		char **p = realloc(*v, (*n ? 2 * *n : 1) * sizeof(*p));
		if (!p) {
			free(c);
			return -1;
		}
		*v = p;
	}
	(*v)[(*n)++] = c;
	return 0;
}

/*
 * The lines of a small text file, '\r' and '\n' stripped and trailing
 * blank lines dropped; an empty line elsewhere is an error (the lines are
 * positional). -1 with a message on error.
 */
static int
read_lines(const char *path, char ***v, int *n)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t k;
	int rc = 0, lineno = 0, blank = 0;

	*v = NULL;
	*n = 0;
	if (!fp)
		return vlm_error("'%s': %s", path, strerror(errno));
	while (rc == 0 && (k = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		while (k > 0 && (line[k - 1] == '\n' || line[k - 1] == '\r'))
			line[--k] = '\0';
		if (k == 0 && !blank)
			blank = lineno;
		else if (k > 0 && blank)
			rc = vlm_error("'%s':%d: empty line", path, blank);
		else if (k > 0 && push_str(v, n, line) < 0)
			rc = vlm_error("'%s': out of memory", path);
	}
	if (rc == 0 && ferror(fp))
		rc = vlm_error("'%s': read error", path);
	fclose(fp);
	free(line);
	if (rc < 0) {
		free_strs(*v, *n);
		*v = NULL;
		*n = 0;
	}
	return rc;
}

int
vlm_lines_load(const char *path, char ***lines, int *n)
{
	return read_lines(path, lines, n);
}

int
vlm_strs_push(char ***v, int *n, const char *s)
{
	return push_str(v, n, s);
}

void
vlm_strs_free(char **s, int n)
{
	free_strs(s, n);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the class directories: subdirectories of root, not hidden, byte order */
static int
list_classes(struct vlm_imagefolder *d, const char *root)
{
	DIR *dir = opendir(root);
	struct dirent *e;
	struct stat st;
	char *p;
	int rc = 0;

	if (!dir)
		return vlm_error("'%s': %s", root, strerror(errno));
	while (rc == 0 && (e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (asprintf(&p, "%s/%s", root, e->d_name) < 0)
			rc = -1;
		else if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
			rc = push_str(&d->classes, &d->nclasses, e->d_name);
		free(p);
	}
	closedir(dir);
	if (rc < 0)
		return vlm_error("'%s': out of memory", root);
	if (d->nclasses == 0)
		return vlm_error("'%s': no class directories", root);
	qsort(d->classes, d->nclasses, sizeof(*d->classes), cmp_str);
	return 0;
}

/* every image under root/<class c>, in walk order, labelled c */
static int
add_class(struct vlm_imagefolder *d, const char *root, int c)
{
	struct vlm_walk w;
	const char *path;
	char *top;
	int rc, n0 = d->n;

	if (asprintf(&top, "%s%s%s", root, root[strlen(root) - 1] == '/' ?
	    "" : "/", d->classes[c]) < 0)
		return vlm_error("'%s': out of memory", root);
	vlm_walk_init(&w, &top, 1, NULL, NULL);
	while ((rc = vlm_walk_next(&w, &path)) != 0) {
		if (rc < 0) { /* a symlink loop, an unreadable directory */
			if (push_str(&d->bad, &d->nbad, vlm_errmsg()) < 0) {
				rc = vlm_error("'%s': out of memory", top);
				break;
			}
			continue;
		}
		if (push_str(&d->paths, &d->n, path) < 0) {
			rc = vlm_error("'%s': out of memory", path);
			break;
		}
		if ((d->n & (d->n - 1)) == 0) {  /* paths just grew */
			int *l = realloc(d->labels, 2 * d->n * sizeof(*l));
			if (!l) {
				rc = vlm_error("'%s': out of memory", path);
				break;
			}
			d->labels = l;
		}
		d->labels[d->n - 1] = c;
	}
	d->nskipped += w.nskipped;
	vlm_walk_release(&w);
	if (rc == 0 && d->n == n0)
		rc = vlm_error("'%s': no images in the class directory%s%s",
		    top, d->nbad ? "; " : "", d->nbad ? d->bad[d->nbad - 1] :
		    "");
	free(top);
	return rc;
}

int
vlm_imagefolder_names(struct vlm_imagefolder *d, const char *root,
    const struct vlm_imagefolder_opts *o)
{
	const char *cn = o ? o->classnames : NULL, *tn = o ? o->templates :
	    NULL;
	int rc = 0;

	if (cn && (rc = read_lines(cn, &d->classnames, &d->nnames)) == 0 &&
	    d->nnames != d->nclasses)
		rc = vlm_error("'%s': %d class names for %d class "
		    "directories in '%s'", cn, d->nnames, d->nclasses, root);
	for (int c = 0; rc == 0 && !cn && c < d->nclasses; c++)
		if (push_str(&d->classnames, &d->nnames, d->classes[c]) < 0)
			rc = vlm_error("'%s': out of memory", root);
	if (rc == 0 && tn)
		rc = read_lines(tn, &d->templates, &d->ntemplates);
	else if (rc == 0 && push_str(&d->templates, &d->ntemplates,
	    VLM_DEFAULT_TEMPLATE) < 0)
		rc = vlm_error("'%s': out of memory", root);
	for (int t = 0; rc == 0 && t < d->ntemplates; t++)
		if (!strstr(d->templates[t], "{}"))
			rc = vlm_error("'%s':%d: template without {}", tn,
			    t + 1);
	if (rc == 0 && d->ntemplates == 0)
		rc = vlm_error("'%s': no templates", tn);
	return rc;
}

int
vlm_imagefolder_load(struct vlm_imagefolder *d, const char *root,
    const struct vlm_imagefolder_opts *o)
{
	int rc = 0;

	memset(d, 0, sizeof(*d));
	rc = list_classes(d, root);
	for (int c = 0; rc == 0 && c < d->nclasses; c++)
		rc = add_class(d, root, c);
	if (rc == 0)
		rc = vlm_imagefolder_names(d, root, o);
	if (rc < 0)
		vlm_imagefolder_release(d);
	return rc;
}

void
vlm_imagefolder_release(struct vlm_imagefolder *d)
{
	free_strs(d->paths, d->n);
	free(d->labels);
	free_strs(d->classes, d->nclasses);
	free_strs(d->classnames, d->nnames);
	free_strs(d->templates, d->ntemplates);
	free_strs(d->bad, d->nbad);
	free(d->blobs);
	free_strs(d->shards, d->nshards);
	memset(d, 0, sizeof(*d));
}

char *
vlm_template_fill_alloc(const char *tmpl, const char *name)
{
	size_t nt = strlen(tmpl), nn = strlen(name), k = 0;
	char *s, *o;

	for (const char *p = tmpl; (p = strstr(p, "{}")) != NULL; p += 2)
		k++;
	if (!(s = o = malloc(nt + k * nn + 1)))
		return NULL;
	for (const char *p = tmpl; *p;) {
		if (p[0] == '{' && p[1] == '}') {
			memcpy(o, name, nn);
			o += nn;
			p += 2;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return s;
}
