/*
 * wds-bench.c - CLIP_benchmark's webdataset directories (as its
 * clip_benchmark_export_wds writes them and build_wds_dataset reads
 * them): dir/SPLIT/nshards.txt and the shards dir/SPLIT/0.tar ...,
 * dir/dataset_type.txt, dir/classnames.txt and
 * dir/zeroshot_classification_templates.txt ("{c}" for the class name),
 * read as a classification set (label from each sample's cls) or a
 * retrieval set (captions the lines of its txt).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/wds-priv.h"

/* The first line of dir/name, stripped, into buf; 0, 1 absent, -1. */
static int
first_line(const char *dir, const char *name, char *buf, size_t n)
{
	char *path;
	FILE *f;
	size_t k;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return vlm_error("out of memory");
	if (!(f = fopen(path, "r"))) {
		int rc = errno == ENOENT ? 1 : vlm_error("'%s': %s", path,
		    strerror(errno));
		free(path);
		return rc;
	}
	if (!fgets(buf, n, f))
		buf[0] = '\0';
	fclose(f);
	free(path);
	for (k = strlen(buf); k > 0 && isspace((unsigned char)buf[k - 1]);)
		buf[--k] = '\0';
	return 0;
}

int
vlm_wds_dataset_type(const char *dir, char *type, size_t n)
{
	int rc = first_line(dir, "dataset_type.txt", type, n);

	if (rc == 1)
		snprintf(type, n, "classification");
	for (char *c = type; *c; c++)
		*c = tolower((unsigned char)*c);
	return rc < 0 ? -1 : 0;
}

/* "dir/split/{0..N-1}.tar" from dir/split/nshards.txt (malloc'ed). */
static char *
split_pattern(const char *dir, const char *split)
{
	char buf[64], *sub, *pat = NULL, *end;
	long n;

	if (asprintf(&sub, "%s/%s", dir, split) < 0) {
		vlm_error("out of memory");
		return NULL;
	}
	if (first_line(sub, "nshards.txt", buf, sizeof(buf)) != 0) {
		if (!vlm_errmsg()[0] || strstr(vlm_errmsg(), "nshards") == NULL)
			vlm_error("'%s/nshards.txt': missing", sub);
	} else if ((n = strtol(buf, &end, 10)) < 1 || *end || n > BRACE_MAX) {
		vlm_error("'%s/nshards.txt': '%s' is not a shard count", sub,
		    buf);
	} else if (asprintf(&pat, "%s/{0..%ld}.tar", sub, n - 1) < 0) {
		vlm_error("out of memory");
		pat = NULL;
	}
	free(sub);
	return pat;
}

/* Classification: a sample's label, its class index. */
struct cls_arg {
	struct vlm_imagefolder *d;
	int cap, nc;
};

static int
cls_bad(void *arg, const char *shard, const char *key, const char *msg)
{
	struct vlm_imagefolder *d = ((struct cls_arg *)arg)->d;

	(void)shard, (void)key;
	return vlm_strs_push(&d->bad, &d->nbad, msg) < 0 ?
	    vlm_error("out of memory") : 0;
}

static int
cls_emit(void *arg, int k, int num, struct wds_sample *s)
{
	struct cls_arg *a = arg;
	struct vlm_imagefolder *d = a->d;
	char *end, *msg;
	long c = strtol(s->label, &end, 10);
	int rc;

	(void)num, (void)k;
	while (isspace((unsigned char)*end))
		end++;
	if (end == s->label || *end || c < 0 || c >= a->nc) {
		if (asprintf(&msg, "'%s': %s: label '%.20s' is not a class "
		    "0..%d", s->img.file, s->key, s->label, a->nc - 1) < 0)
			return vlm_error("out of memory");
		rc = cls_bad(arg, s->img.file, s->key, msg);
		free(msg);
		return rc;
	}
	if (d->n == a->cap) {
		int cp = a->cap ? 2 * a->cap : 1024;
		if (vlm_array_grow(&d->paths, sizeof(char *), cp) < 0 ||
		    vlm_array_grow(&d->labels, sizeof(int), cp) < 0 ||
		    vlm_array_grow(&d->blobs, sizeof(*d->blobs), cp) < 0)
			return vlm_error("out of memory");
		a->cap = cp;
	}
	if (asprintf(&d->paths[d->n], "%s:%s", s->img.file, s->key) < 0)
		return vlm_error("out of memory");
	d->labels[d->n] = (int)c;
	d->blobs[d->n++] = s->img;
	return 0;
}

/* The templates file: "{c}" becomes "{}" (CLIP_benchmark's format). */
static int
wds_templates(struct vlm_imagefolder *d, const char *path)
{
	if (vlm_lines_load(path, &d->templates, &d->ntemplates) < 0)
		return -1;
	for (int t = 0; t < d->ntemplates; t++) {
		char *s = d->templates[t], *p;
		while ((p = strstr(s, "{c}")) != NULL)
			memmove(p + 1, p + 2, strlen(p + 2) + 1);
	}
	if (d->ntemplates == 0)
		return vlm_error("'%s': no templates", path);
	return 0;
}

/* classes, names and templates of a CLIP_benchmark directory */
static int
wds_classes(struct vlm_imagefolder *d, const char *dir,
    const struct vlm_imagefolder_opts *o)
{
	struct vlm_imagefolder_opts no = { o ? o->classnames : NULL,
	    o ? o->templates : NULL };
	char *cn, *tn;
	int rc = 0;

	if (asprintf(&cn, "%s/classnames.txt", dir) < 0 ||
	    asprintf(&tn, "%s/zeroshot_classification_templates.txt", dir) < 0)
		return vlm_error("out of memory");
	if (vlm_lines_load(no.classnames ? no.classnames : cn, &d->classes,
	    &d->nclasses) < 0)
		rc = -1;
	else if (d->nclasses == 0)
		rc = vlm_error("'%s': no class names", no.classnames ?
		    no.classnames : cn);
	no.classnames = NULL;  /* the names are the classes just read */
	if (rc == 0 && !no.templates && access(tn, F_OK) == 0) {
		rc = wds_templates(d, tn);
		if (rc == 0) {
			char **t = d->templates;
			int nt = d->ntemplates;
			d->templates = NULL, d->ntemplates = 0;
			rc = vlm_imagefolder_names(d, dir, &no);
			vlm_strs_free(d->templates, d->ntemplates);
			d->templates = t, d->ntemplates = nt;
		}
	} else if (rc == 0) {
		rc = vlm_imagefolder_names(d, dir, &no);
	}
	free(cn);
	free(tn);
	return rc;
}

int
vlm_wds_imagefolder_load(struct vlm_imagefolder *d, const char *dir,
    const char *split, const struct vlm_imagefolder_opts *o)
{
	char type[64], *pat = NULL;
	struct cls_arg a = { d, 0, 0 };
	struct wds_scan sc = { .label_key = "cls", .emit = cls_emit,
	    .bad = cls_bad, .arg = &a };
	int rc;

	memset(d, 0, sizeof(*d));
	if (vlm_wds_dataset_type(dir, type, sizeof(type)) < 0)
		return -1;
	if (strcmp(type, "classification") != 0)
		return vlm_error("'%s': a %s set, not classification", dir,
		    type);
	if ((rc = wds_classes(d, dir, o)) == 0 && !(pat = split_pattern(dir,
	    split)))
		rc = -1;
	a.nc = d->nclasses;
	if (rc == 0)
		rc = vlm_wds_scan(&sc, pat);
	d->shards = sc.shards;
	d->nshards = sc.nshards;
	if (rc == 0 && d->n == 0)
		rc = vlm_error("'%s': no samples with an image and a label%s%s",
		    pat, d->nbad ? "; " : "", d->nbad ? d->bad[0] : "");
	free(pat);
	if (rc < 0)
		vlm_imagefolder_release(d);
	return rc;
}

int
vlm_wds_retrieval_load(struct vlm_pairs *p, const char *dir,
    const char *split)
{
	char type[64], *pat;
	int rc;

	memset(p, 0, sizeof(*p));
	if (vlm_wds_dataset_type(dir, type, sizeof(type)) < 0)
		return -1;
	if (strcmp(type, "retrieval") != 0)
		return vlm_error("'%s': a %s set, not retrieval", dir, type);
	if (!(pat = split_pattern(dir, split)))
		return -1;
	rc = vlm_wds_pairs_scan(p, pat, "txt", 1);
	free(pat);
	return rc;
}
