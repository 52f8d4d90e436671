/*
 * eval-retrieval.c - `vlm-eval retrieval`: image-text retrieval.
 *
 * Reads a pairs file (TSV by default, CSV with --csv-separator ,): one
 * row per caption, rows repeating an image path give it several
 * captions; or a CLIP_benchmark webdataset directory (--wds), each
 * sample an image and its captions, the lines of its txt. Image
 * embeddings are the model's (-m) of the distinct
 * images, or the rows of --image-emb whose ids name them; caption
 * embeddings are the model's, or the rows of --text-emb, one per good
 * row of the pairs file in order. Writes image_retrieval_recall@k (text
 * queries) and text_retrieval_recall@k (image queries), k = 1, 5, 10.
 * Images that fail to load or have no embedding are left out with their
 * captions (warned; exit status 1). With --rerank K (a fusion model),
 * each query's contrastive top K are re-ranked by the ITM head
 * (cmd/eval-fusion.c), as VLMo and ALBEF evaluate.
 */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

struct ret {
	struct eval_common c;
	const char *pairs, *image_emb, *text_emb;
	const char *wds, *split;  /* --wds: a CLIP_benchmark directory */
	struct vlm_pairs_opts po;
	struct vlm_pairs p;
	char *model;        /* from the image embeddings' metadata */
	int rerank;         /* --rerank K, 0: none */
};

static void
parse(struct ret *r, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "pairs", required_argument, NULL, 'p' },
		{ "wds", required_argument, NULL, 'W' },
		{ "split", required_argument, NULL, 's' },
		{ "image-emb", required_argument, NULL, 'i' },
		{ "text-emb", required_argument, NULL, 't' },
		{ "csv-img-key", required_argument, NULL, 'K' },
		{ "csv-caption-key", required_argument, NULL, 'C' },
		{ "csv-separator", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'J' },
		{ "alpha", required_argument, NULL, 'A' },
		{ "device", required_argument, NULL, 'D' },
		{ "precision", required_argument, NULL, 'X' },
		{ "rerank", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:b:h", opts, NULL)) != -1) {
		if (eval_common_opt(&r->c, c, optarg))
			continue;
		switch (c) {
		case 'p': r->pairs = optarg; break;
		case 'W': r->wds = optarg; break;
		case 's': r->split = optarg; break;
		case 'i': r->image_emb = optarg; break;
		case 'R': r->rerank = cmd_int("--rerank", optarg, 1, 1 << 20);
			break;
		case 't': r->text_emb = optarg; break;
		case 'K': r->po.img_key = optarg; break;
		case 'C': r->po.caption_key = optarg; break;
		case 'S':
			if (strlen(optarg) != 1 || optarg[0] == '"' ||
			    optarg[0] == '\n')
				errx(2, "--csv-separator '%s': want one "
				    "character", optarg);
			r->po.sep = optarg[0];
			break;
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind != argc || !r->pairs == !r->wds)
		cmd_usage(eval_usage, 2);
	if ((!r->image_emb || !r->text_emb) && !r->c.model)
		errx(2, "retrieval: give -m, or both --image-emb and "
		    "--text-emb");
	if (r->rerank && (!r->c.model || r->image_emb || r->text_emb))
		errx(2, "retrieval: --rerank needs -m (a fusion model) and "
		    "no embedding files");
}

/* The pairs file; its bad rows warned about (and *failed set). */
static int
load_pairs(struct ret *r, int *failed)
{
	struct vlm_pairs *p = &r->p;

	if (r->wds ? vlm_wds_retrieval_load(p, r->wds, r->split ? r->split :
	    "test") < 0 : vlm_pairs_load(p, r->pairs, &r->po) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	if (r->wds)
		r->pairs = r->wds; /* the data set's name from here on */
	*failed |= cmd_pairs_warn(p, r->pairs);
	if (p->n > 0)
		return 0;
	warnx("'%s': no pairs", r->pairs);
	return -1;
}

/* Warn once about images without an embedding in the file. */
static void
missing(struct ret *r, const unsigned char *ok, int *failed)
{
	int n = 0, first = -1;

	for (int i = 0; i < r->p.nimages; i++)
		if (!ok[i] && n++ == 0)
			first = i;
	if (n == 0)
		return;
	warnx("'%s': %d of the %d images have no embedding, e.g. '%s'",
	    r->image_emb, n, r->p.nimages, r->p.paths[r->p.image_row[first]]);
	*failed = 1;
}

/* Image embeddings (NI, *dim) from the model or the file; ok flags. */
static float *
images(struct ret *r, const struct vlm_model *m, unsigned char *ok,
    int *dim, int *failed)
{
	struct vlm_pairs *p = &r->p;
	struct vlm_blob *blobs;
	char **paths = eval_pairs_images(p, &blobs);
	int64_t *row = malloc(p->nimages * sizeof(*row)), k;
	struct vlm_emb e;
	float *v = NULL;

	if (!row)
		errx(1, "out of memory");
	if (!r->image_emb) {
		*dim = m->cfg.embed_dim;
		if (!(v = malloc((size_t)p->nimages * *dim * sizeof(*v))))
			errx(1, "out of memory");
		if ((k = eval_embed_images(m, paths, blobs, p->nimages,
		    r->c.batch, v, ok)) < 0) {
			free(v);
			v = NULL;
		}
		*failed |= k != 0;
	} else if (vlm_emb_load(&e, r->image_emb) < 0) {
		warnx("%s", vlm_errmsg());
	} else {
		if (eval_match_ids(&e, r->image_emb, paths, p->nimages,
		    row) == 0 && (v = malloc((size_t)p->nimages * e.dim *
		    sizeof(*v)))) {
			for (int i = 0; i < p->nimages; i++) {
				ok[i] = row[i] >= 0;
				memcpy(v + (int64_t)i * e.dim, e.vec + (ok[i] ?
				    row[i] : 0) * e.dim, e.dim * sizeof(*v));
			}
			*dim = (int)e.dim;
			missing(r, ok, failed);
		}
		r->model = eval_meta_model(&e);
		vlm_emb_release(&e);
	}
	free(paths);
	free(blobs);
	free(row);
	return v;
}

/* Caption embeddings (n, *dim): the model's, or the file's rows. */
static float *
texts(struct ret *r, const struct vlm_model *m, int *dim)
{
	struct vlm_emb e;
	float *v = NULL;

	if (!r->text_emb) {
		*dim = m->cfg.embed_dim;
		if (!(v = malloc((size_t)r->p.n * *dim * sizeof(*v))))
			errx(1, "out of memory");
		if (eval_embed_texts(m, r->c.model, r->p.captions, r->p.n,
		    r->c.batch, v) < 0) {
			free(v);
			v = NULL;
		}
		return v;
	}
	if (vlm_emb_load(&e, r->text_emb) < 0) {
		warnx("%s", vlm_errmsg());
		return NULL;
	}
	if (e.n != r->p.n)
		warnx("'%s': %lld rows for the %d captions of '%s'",
		    r->text_emb, (long long)e.n, r->p.n, r->pairs);
	else
		v = vlm_emb_take_vec(&e), *dim = (int)e.dim;
	vlm_emb_release(&e);
	return v;
}

/*
 * Keep the images with embeddings (renumbered in place) and their
 * captions; text_image[] the kept captions' images. Returns the kept
 * captions; *ni the kept images.
 */
static int64_t
keep(const struct ret *r, const unsigned char *ok, float *img, float *txt,
    int dim, int *text_image, int64_t *ni)
{
	int *newid = malloc(r->p.nimages * sizeof(*newid));
	int64_t k = 0, nt = 0;

	if (!newid)
		errx(1, "out of memory");
	for (int i = 0; i < r->p.nimages; i++) {
		newid[i] = ok[i] ? (int)k : -1;
		if (ok[i])
			memmove(img + k++ * dim, img + (int64_t)i * dim,
			    dim * sizeof(*img));
	}
	for (int t = 0; t < r->p.n; t++) {
		if (newid[r->p.image_id[t]] < 0)
			continue;
		memmove(txt + nt * dim, txt + (int64_t)t * dim,
		    dim * sizeof(*txt));
		text_image[nt++] = newid[r->p.image_id[t]];
	}
	free(newid);
	*ni = k;
	return nt;
}

/* ITM re-ranked recall (f) of the kept items: their original rows. */
static int
rerank(const struct ret *r, const struct eval_fusion *f,
    const unsigned char *ok, const float *img, int64_t ni, const float *txt,
    int64_t nt, int dim, const int *t2i, double *ir, double *tr)
{
	int64_t *imap = malloc((ni + 1) * sizeof(*imap));
	int64_t *tmap = malloc((nt + 1) * sizeof(*tmap)), k = 0;
	int rc;

	if (!imap || !tmap)
		errx(1, "out of memory");
	for (int i = 0; i < r->p.nimages; i++)
		if (ok[i])
			imap[k++] = i;
	k = 0;
	for (int t = 0; t < r->p.n; t++)
		if (ok[r->p.image_id[t]])
			tmap[k++] = t;
	rc = eval_fusion_rerank(f, img, ni, txt, nt, dim, t2i, imap, tmap,
	    r->rerank, ir, tr);
	free(imap);
	free(tmap);
	return rc;
}

/* Recall both ways (f: ITM re-ranked), reported. */
static int
score(struct ret *r, float *img, float *txt, int dim, const unsigned char *ok,
    const struct eval_fusion *f)
{
	static const char *const names[2][VLM_RECALL_NK] = {
		{ "image_retrieval_recall@1", "image_retrieval_recall@5",
		    "image_retrieval_recall@10" },
		{ "text_retrieval_recall@1", "text_retrieval_recall@5",
		    "text_retrieval_recall@10" } };
	struct eval_report rep = { .dataset = r->pairs, .model = r->c.model ?
	    r->c.model : r->model, .task = "zeroshot_retrieval" };
	double ir[VLM_RECALL_NK], tr[VLM_RECALL_NK];
	int *t2i = malloc(r->p.n * sizeof(*t2i));
	int64_t ni, nt;
	int rc = 0;

	if (!t2i)
		errx(1, "out of memory");
	nt = keep(r, ok, img, txt, dim, t2i, &ni);
	if (f && rerank(r, f, ok, img, ni, txt, nt, dim, t2i, ir, tr) < 0) {
		rc = -1;
	} else if (!f && vlm_metrics_retrieval(ir, tr, img, ni, txt, nt, t2i,
	    dim) < 0) {
		warnx("'%s': %s", r->pairs, vlm_errmsg());
		rc = -1;
	} else {
		for (int j = 0; j < VLM_RECALL_NK; j++) {
			eval_report_add(&rep, names[0][j], ir[j]);
			eval_report_add(&rep, names[1][j], tr[j]);
		}
		eval_report_print(&rep, r->c.json);
	}
	free(t2i);
	return rc;
}

static int
evaluate(struct ret *r, const struct vlm_model *m, int *failed)
{
	unsigned char *ok = malloc(r->p.nimages);
	float *img = NULL, *txt = NULL;
	int di = 0, dt = 0, rc = -1;
	struct eval_fusion f;

	if (!ok)
		errx(1, "out of memory");
	if (r->rerank && eval_fusion_begin(&f, m, r->p.nimages, r->p.n,
	    r->c.batch) < 0) {
		free(ok);
		return -1;
	}
	if ((img = images(r, m, ok, &di, failed)) &&
	    (txt = texts(r, m, &dt))) {
		if (di != dt)
			warnx("'%s': image embeddings of dimension %d, text "
			    "embeddings '%s' of %d", r->image_emb ?
			    r->image_emb : r->c.model, di, r->text_emb ?
			    r->text_emb : r->c.model, dt);
		else
			rc = score(r, img, txt, di, ok, r->rerank ? &f : NULL);
	}
	if (r->rerank)
		eval_fusion_end(&f);
	free(img);
	free(txt);
	free(ok);
	return rc;
}

int
eval_retrieval(int argc, char **argv)
{
	struct ret r = { .c = { .batch = EVAL_BATCH } };
	struct vlm_model m = { 0 };
	int failed = 0, rc = 1;

	parse(&r, argc, argv);
	if (load_pairs(&r, &failed) == 0) {
		if (!r.c.model || eval_model_load(&m, &r.c) == 0) {
			rc = evaluate(&r, &m, &failed) < 0 || failed;
			if (r.c.model)
				vlm_model_release(&m);
		}
		vlm_pairs_release(&r.p);
	}
	free(r.model);
	return rc;
}
