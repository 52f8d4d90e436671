/*
 * route-stats-run.c - vlm-route-stats -m MODEL --images DIR [--text
 * FILE]: run the model over images (OpenCLIP's validation transform,
 * loaded by worker threads) and text lines, batch by batch, writing the
 * routing records of every batch. DIR laid out as an ImageFolder (only
 * subdirectories in it) gives each image its class label and the class
 * names; any other directory is walked for images without labels.
 */
#include <dirent.h>
#include <err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "route-stats.h"
#include "base/base.h"
#include "text/text.h"
#include "data/data.h"
#include "model/model.h"

int rs_precision = VLM_PRECISION_FP32;

/* Does dir hold only (non-hidden) subdirectories, at least one? */
static int
is_imagefolder(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct stat st;
	char path[4096];
	int dirs = 0, other = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			dirs++;
		else
			other++;
	}
	closedir(d);
	return dirs > 0 && other == 0;
}

/* The images under dir: paths (and labels, class names for an
 * ImageFolder, written to the records). */
struct images {
	struct vlm_imagefolder d;
	int folder;
	int bad;           /* some entry of the walk failed */
	char **paths;
	int n, cap;
};

static int
find_images(struct images *im, const char *dir, struct vlm_routes_writer *w)
{
	struct vlm_walk wk;
	const char *p;
	char *root = (char *)dir;
	int rc;

	memset(im, 0, sizeof(*im));
	if ((im->folder = is_imagefolder(dir))) {
		if (vlm_imagefolder_load(&im->d, dir, NULL) < 0)
			return -1;
		for (int i = 0; i < im->d.nbad; i++)
			warnx("%s", im->d.bad[i]);
		im->bad = im->d.nbad > 0;
		im->paths = im->d.paths, im->n = im->d.n;
		return vlm_routes_writer_classes(w,
		    (const char *const *)im->d.classnames, im->d.nclasses);
	}
	if (vlm_walk_init(&wk, &root, 1, NULL, NULL) < 0)
		return -1;
	while ((rc = vlm_walk_next(&wk, &p)) != 0) {
		if (rc < 0) { /* a symlink loop, an unreadable directory */
			warnx("%s", vlm_errmsg());
			im->bad = 1;
			continue;
		}
		if (im->n == im->cap) {
			im->cap = im->cap ? 2 * im->cap : 64;
			char **np = realloc(im->paths, im->cap * sizeof(*np));
			if (!np) {
				rc = vlm_error("out of memory");
				break;
			}
			im->paths = np;
		}
		if (!(im->paths[im->n] = strdup(p))) {
			rc = vlm_error("out of memory");
			break;
		}
		im->n++;
	}
	vlm_walk_release(&wk);
	if (rc >= 0 && im->n == 0)
		rc = vlm_error("'%s': no images", dir);
	return rc;
}

static void
images_release(struct images *im)
{
	if (im->folder) {
		vlm_imagefolder_release(&im->d);
		return;
	}
	for (int i = 0; i < im->n; i++)
		free(im->paths[i]);
	free(im->paths);
}

/* One loaded batch: forward, then its routing records. */
static int
image_batch(struct vlm_encoder *enc, struct vlm_routes_writer *w,
    const struct images *im, const struct vlm_batch *b, float *feat,
    const char **ids, int32_t *labels)
{
	for (int i = 0; i < b->n; i++) {
		ids[i] = im->paths[b->index[i]];
		labels[i] = im->folder ? im->d.labels[b->index[i]] : -1;
	}
	if (vlm_encode(enc, b->pixels, b->n, feat, 1) < 0)
		return -1;
	return vlm_routes_write_batch(w, enc->r, enc->m, 0, ids, labels, b->n);
}

/* Route every image under dir; 1 if some could not be loaded. */
static int
run_images(struct vlm_routes_writer *w, const struct vlm_model *m,
    const char *dir, int batch)
{
	const struct vlm_config *c = &m->cfg;
	struct vlm_items items = { .size = c->image_size, .mean = c->mean,
		.std = c->std, .alpha = c->image_alpha };
	struct vlm_loader_opts lo = { .batch = batch, .image_floats = 3LL *
		c->image_size * c->image_size, .image = cmd_load_image,
		.arg = &items, .epochs = 1 };
	struct vlm_encoder enc = { 0 };
	struct vlm_loader *ld = NULL;
	const struct vlm_batch *b;
	struct images im;
	float *feat = malloc((size_t)batch * c->embed_dim * sizeof(float));
	const char **ids = calloc(batch, sizeof(*ids));
	int32_t *labels = calloc(batch, sizeof(*labels));
	int rc = -1, bad = 0;

	if (!feat || !ids || !labels) {
		vlm_error("out of memory");
		goto out;
	}
	if (find_images(&im, dir, w) < 0)
		goto out;
	items.paths = im.paths, lo.n = im.n, bad = im.bad;
	if (vlm_encoder_init(&enc, m, 0, batch) == 0 &&
	    vlm_encoder_set_precision(&enc, rs_precision) == 0 &&
	    (ld = vlm_loader_new(&lo)) != NULL) {
		while ((rc = vlm_loader_next(ld, &b)) == 1) {
			for (int i = 0; i < b->nerr; i++)
				warnx("%s", b->err[i].msg);
			bad |= b->nerr > 0;
			if (b->n && image_batch(&enc, w, &im, b, feat, ids,
			    labels) < 0) {
				rc = -1;
				break;
			}
		}
	}
	vlm_loader_free(ld);
	vlm_encoder_release(&enc);
	images_release(&im);
out:
	free(feat);
	free(ids);
	free(labels);
	return rc < 0 ? -1 : bad;
}

/* Encode and record the n texts of tok (n, context) named ids. */
static int
text_batch(struct vlm_encoder *enc, struct vlm_routes_writer *w,
    const int32_t *tok, char (*num)[24], int n, float *feat)
{
	const char *ids[n];

	for (int i = 0; i < n; i++)
		ids[i] = num[i];
	if (vlm_encode(enc, tok, n, feat, 1) < 0)
		return -1;
	return vlm_routes_write_batch(w, enc->r, enc->m, 1, ids, NULL, n);
}

/* Route every non-blank line of path ("-": stdin), ids line numbers. */
static int
run_text(struct vlm_routes_writer *w, const struct vlm_model *m,
    const char *path, int batch)
{
	int ctx = m->cfg.context, n = 0, rc = -1;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	int32_t *tok = calloc((size_t)batch * ctx, sizeof(int32_t));
	char (*num)[24] = calloc(batch, sizeof(*num)), *line = NULL;
	float *feat = malloc((size_t)batch * m->cfg.embed_dim * sizeof(float));
	struct vlm_encoder enc = { 0 };
	struct vlm_bpe bpe = { 0 };
	size_t cap = 0;
	long lineno = 0;
	char msg[1024];

	if (!f)
		vlm_error("'%s': cannot open", path);
	else if (!tok || !num || !feat)
		vlm_error("out of memory");
	else if (vlm_model_tokenizer(m, &bpe) < 0)
		vlm_error("'%s': %s", w->name, strcpy(msg, vlm_errmsg()));
	else if (vlm_encoder_init(&enc, m, 1, batch) == 0 &&
	    vlm_encoder_set_precision(&enc, rs_precision) == 0) {
		for (rc = 0; rc == 0 && getline(&line, &cap, f) > 0;) {
			lineno++;
			if (strspn(line, " \t\r\n") == strlen(line))
				continue;
			line[strcspn(line, "\r\n")] = '\0';
			snprintf(num[n], sizeof(*num), "%ld", lineno);
			if (vlm_bpe_encode(&bpe, line, tok + (size_t)n * ctx,
			    ctx) < 0)
				rc = -1;
			else if (++n == batch)
				rc = text_batch(&enc, w, tok, num, n, feat),
				n = 0;
		}
		if (rc == 0 && n)
			rc = text_batch(&enc, w, tok, num, n, feat);
		if (rc == 0 && ferror(f))
			rc = vlm_error("'%s': read error", path);
	}
	vlm_encoder_release(&enc);
	if (bpe.t)
		vlm_bpe_release(&bpe);
	if (f && f != stdin)
		fclose(f);
	free(line);
	free(tok);
	free(num);
	free(feat);
	return rc;
}

int
rs_run(FILE *out, const char *model, const char *dir, const char *text,
    int batch)
{
	struct vlm_routes_writer w;
	struct vlm_model m;
	int rc = -1, bad = 0;

	if (vlm_model_load_merged(&m, model) < 0)
		return -1;
	if (vlm_routes_writer_init(&w, out, model, &m) < 0)
		goto out;
	if ((bad = run_images(&w, &m, dir, batch)) < 0 ||
	    (text && run_text(&w, &m, text, batch) < 0)) {
		vlm_routes_writer_release(&w);
		goto out;
	}
	rc = vlm_routes_writer_finish(&w) < 0 ? -1 : bad;
out:
	vlm_model_release(&m);
	return rc;
}
