/*
 * route-stats-run.c - vlm-route-stats -m MODEL --images DIR [--text
 * FILE]: run the model over images (OpenCLIP's validation transform,
 * loaded by worker threads) and text lines, batch by batch, writing the
 * routing records of every batch. DIR laid out as an ImageFolder (only
 * subdirectories in it) gives each image its class label and the class
 * names; any other directory is walked for images without labels.
 * Or (--pairs FILE, a fusion model) image-caption pairs through the
 * modality blocks and the fusion blocks, whose vision-language pool's
 * routing goes with the image and the text records of each batch.
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
const char *rs_pairs;

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

/* One batch of n pairs (the run's rows past n: copies of the last):
 * the towers, the fused pairs, the image and the text records. */
static int
pair_batch(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_routes_writer *w, const struct vlm_pairs *p,
    const struct vlm_batch *b, int32_t *tok, int32_t *pair, int B)
{
	size_t px = 3 * (size_t)m->cfg.image_size * m->cfg.image_size;
	int n = b->n;
	const char *ids[B], *caps[B];
	struct vlm_fusion_batch fb = { n, pair, pair, NULL, NULL, NULL };
	float *pix = b->pixels;

	for (int j = 0; j < B; j++) {
		int i = (int)b->index[j < n ? j : n - 1];
		pair[j] = j;
		ids[j] = p->paths[i], caps[j] = p->captions[i];
		if (j >= n)
			memcpy(pix + j * px, pix + (n - 1) * px, px *
			    sizeof(float));
	}
	if (vlm_forward(r, m, pix, tok) < 0 ||
	    vlm_fusion_forward(r, m, &fb, NULL) < 0)
		return -1;
	return vlm_routes_write_batch(w, r, m, 0, ids, NULL, n) < 0 ||
	    vlm_routes_write_batch(w, r, m, 1, caps, NULL, n) < 0 ? -1 : 0;
}

/* Route every pair of rs_pairs; 1 if some image could not be loaded. */
static int
run_pairs(struct vlm_routes_writer *w, const struct vlm_model *m, int B)
{
	const struct vlm_config *c = &m->cfg;
	struct vlm_items items = { .size = c->image_size, .mean = c->mean,
		.std = c->std, .alpha = c->image_alpha };
	struct vlm_loader_opts lo = { .batch = B, .image_floats = 3LL *
		c->image_size * c->image_size, .image = cmd_load_image,
		.arg = &items, .epochs = 1 };
	struct vlm_pairs p = { 0 };
	struct vlm_bpe bpe = { 0 };
	struct vlm_loader *ld = NULL;
	struct vlm_run *r = NULL;
	const struct vlm_batch *b;
	int32_t *tok = calloc((size_t)B * c->context, sizeof(int32_t));
	int32_t *pair = calloc(B, sizeof(int32_t));
	int rc = -1, bad = 0;

	if (!tok || !pair) {
		vlm_error("out of memory");
		goto out;
	}
	if (c->fusion.layers <= 0) {
		vlm_error("'%s': --pairs: the model has no fusion blocks",
		    w->name);
		goto out;
	}
	if (vlm_pairs_load(&p, rs_pairs, NULL) < 0 || vlm_model_tokenizer(m,
	    &bpe) < 0 || !(r = vlm_run_new_fusion(m, B, B, B, 0)))
		goto out;
	bad = cmd_pairs_warn(&p, rs_pairs);
	items.paths = p.paths, lo.n = p.n;
	if (!(ld = vlm_loader_new(&lo)))
		goto out;
	while ((rc = vlm_loader_next(ld, &b)) == 1) {
		for (int i = 0; i < b->nerr; i++)
			warnx("%s", b->err[i].msg);
		bad |= b->nerr > 0;
		for (int j = 0; j < b->n; j++)
			if (vlm_bpe_encode(&bpe, p.captions[b->index[j]], tok +
			    (size_t)j * c->context, c->context) < 0)
				rc = vlm_error("out of memory");
		for (int j = b->n; b->n && j < B; j++)
			memcpy(tok + (size_t)j * c->context, tok +
			    (size_t)(b->n - 1) * c->context, c->context *
			    sizeof(int32_t));
		if (rc < 0 || (b->n && pair_batch(r, m, w, &p, b, tok, pair,
		    B) < 0)) {
			rc = -1;
			break;
		}
	}
out:
	vlm_loader_free(ld);
	vlm_run_free(r);
	if (bpe.t)
		vlm_bpe_release(&bpe);
	if (p.paths)
		vlm_pairs_release(&p);
	free(tok);
	free(pair);
	return rc < 0 ? -1 : bad;
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
	if (rs_pairs && (bad = run_pairs(&w, &m, batch)) < 0) {
		vlm_routes_writer_release(&w);
		goto out;
	}
	if (!rs_pairs && ((bad = run_images(&w, &m, dir, batch)) < 0 ||
	    (text && run_text(&w, &m, text, batch) < 0))) {
		vlm_routes_writer_release(&w);
		goto out;
	}
	rc = vlm_routes_writer_finish(&w) < 0 ? -1 : bad;
out:
	vlm_model_release(&m);
	return rc;
}
