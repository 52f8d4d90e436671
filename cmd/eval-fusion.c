/*
 * eval-fusion.c - image-text matching with a fusion model's ITM head
 * (model/fusion.c) for `vlm-eval retrieval --rerank K` and `vlm-eval
 * match`: the embedding functions keep each item's output rows of the
 * modality-specific blocks (eval_stream_out), and pairs of them go
 * through the fusion blocks a batch at a time.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

int
eval_fusion_begin(struct eval_fusion *f, const struct vlm_model *m,
    int64_t NI, int64_t NT, int batch)
{
	const struct vlm_config *c = &m->cfg;

	memset(f, 0, sizeof(*f));
	if (c->fusion.layers <= 0) {
		warnx("the model has no fusion blocks (fusion.layers): "
		    "nothing to match with");
		return -1;
	}
	f->m = m, f->NI = NI, f->NT = NT, f->batch = batch;
	f->Ti = vlm_config_image_tokens(c), f->D = c->text.width;
	f->img = malloc((NI ? NI : 1) * (size_t)f->Ti * f->D * sizeof(float));
	f->txt = malloc((NT ? NT : 1) * (size_t)c->context * f->D *
	    sizeof(float));
	f->len = malloc((NT ? NT : 1) * sizeof(int32_t));
	if (!f->img || !f->txt || !f->len)
		errx(1, "out of memory for the token rows of %lld images and "
		    "%lld texts", (long long)NI, (long long)NT);
	eval_stream_out[0] = f->img, eval_stream_out[1] = f->txt;
	eval_stream_len = f->len;
	return 0;
}

void
eval_fusion_end(struct eval_fusion *f)
{
	eval_stream_out[0] = eval_stream_out[1] = NULL;
	eval_stream_len = NULL;
	free(f->img);
	free(f->txt);
	free(f->len);
	memset(f, 0, sizeof(*f));
}

int
eval_fusion_score(const struct eval_fusion *f, int64_t n, const int32_t *pi,
    const int32_t *pt, float *p, int32_t *ans)
{
	int B = f->batch, T = f->m->cfg.context, rc = 0;
	struct vlm_run *r = vlm_run_new_fusion(f->m, 1, 1, B, 0);
	const float **rows = malloc(2 * (size_t)B * sizeof(*rows));
	int32_t *len = malloc((size_t)B * sizeof(*len));

	if (!rows || !len)
		errx(1, "out of memory");
	if (!r)
		rc = -1;
	for (int64_t j0 = 0; rc == 0 && j0 < n; j0 += B) {
		int k = n - j0 < B ? (int)(n - j0) : B;
		for (int j = 0; j < k; j++) {
			rows[j] = f->img + (size_t)pi[j0 + j] * f->Ti * f->D;
			rows[B + j] = f->txt + (size_t)pt[j0 + j] * T * f->D;
			len[j] = f->len[pt[j0 + j]];
		}
		rc = vlm_fusion_score_rows(r, f->m, k, rows, rows + B, len,
		    p + j0);
		if (rc == 0 && ans)
			memcpy(ans + j0, vlm_fusion_answers(r), k *
			    sizeof(*ans));
	}
	if (rc < 0)
		warnx("%s", vlm_errmsg());
	vlm_run_free(r);
	free(rows);
	free(len);
	return rc;
}

/* Scores s (NQ,NK) = q k^T, and the top K of each row re-ranked by
 * ITM; pairs (image, text) of the original rows through the maps. */
static int
rerank_way(const struct eval_fusion *f, float *s, const float *q,
    int64_t NQ, const float *k, int64_t NK, int E, int K, int text_q,
    const int64_t *imap, const int64_t *tmap)
{
	int32_t *idx = malloc((size_t)NQ * K * sizeof(*idx));
	int32_t *pi = malloc((size_t)NQ * K * sizeof(*pi));
	int32_t *pt = malloc((size_t)NQ * K * sizeof(*pt));
	float *p = malloc((size_t)NQ * K * sizeof(*p));
	int rc;

	if (!idx || !pi || !pt || !p)
		errx(1, "out of memory");
	for (int64_t a = 0; a < NQ; a++)
		for (int64_t b = 0; b < NK; b++) {
			double d = 0;
			for (int e = 0; e < E; e++)
				d += (double)q[a * E + e] * k[b * E + e];
			s[a * NK + b] = (float)d;
		}
	vlm_topk_rows(idx, s, NQ, NK, K);
	for (int64_t a = 0; a < NQ; a++)
		for (int j = 0; j < K; j++) {
			int64_t b = idx[a * K + j];
			pi[a * K + j] = (int32_t)imap[text_q ? b : a];
			pt[a * K + j] = (int32_t)tmap[text_q ? a : b];
		}
	rc = eval_fusion_score(f, NQ * K, pi, pt, p, NULL);
	if (rc == 0)
		vlm_rerank_apply(s, NQ, NK, idx, p, K);
	free(idx);
	free(pi);
	free(pt);
	free(p);
	return rc;
}

int
eval_fusion_rerank(const struct eval_fusion *f, const float *img,
    int64_t NI, const float *txt, int64_t NT, int E, const int *t2i,
    const int64_t *imap, const int64_t *tmap, int K, double *ir,
    double *tr)
{
	float *s_ti = malloc((size_t)NT * NI * sizeof(float));
	float *s_it = malloc((size_t)NI * NT * sizeof(float));
	int rc = -1;

	if (!s_ti || !s_it)
		errx(1, "out of memory for %lld x %lld scores", (long long)NT,
		    (long long)NI);
	if (rerank_way(f, s_ti, txt, NT, img, NI, E, K < NI ? K : (int)NI, 1,
	    imap, tmap) == 0 && rerank_way(f, s_it, img, NI, txt, NT, E,
	    K < NT ? K : (int)NT, 0, imap, tmap) == 0) {
		if ((rc = vlm_metrics_retrieval_scores(ir, tr, s_ti, s_it, NI,
		    NT, t2i)) < 0)
			warnx("%s", vlm_errmsg());
	}
	free(s_ti);
	free(s_it);
	return rc;
}
