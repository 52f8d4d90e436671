/*
 * eval/eval.h - evaluation: CLIP_benchmark's metrics, the linear
 * probe, whole embedding files in memory.
 */
#ifndef VLM_LIBCORE_EVAL_H
#define VLM_LIBCORE_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- evaluation (eval/metrics.c, linprobe.c, embeddings-load.c) ---------- */

/*
 * Metrics as CLIP_benchmark 1.6.1 defines them (ALGORITHMS.md section 6).
 * Rankings are stable: among equal scores the lower index ranks first
 * (a prediction is the first maximum; an item is in the top k when
 * fewer than k items score more than it or as much with a lower index).
 * Inputs must be finite. Sums run in double in a fixed order, so the
 * results are the same for every thread count.
 */
#define VLM_RECALL_NK 3 /* retrieval recall@k for k = 1, 5, 10 */
extern const int vlm_recall_ks[VLM_RECALL_NK];

/*
 * The zero-shot classifier: for each class c, the mean over its T
 * templates of the L2-normalised text embeddings text[c*T + t] (class
 * major), L2-normalised again, is column c of W. Norms as torch's
 * F.normalize: x / max(|x|, 1e-12). -1 when out of memory.
 */
int vlm_zeroshot_classifier(float *W /* (D,C) */,
    const float *text /* (C*T,D) */, int C, int T, int D);
/* logits = 100 * normalise(img) @ W; -1 when out of memory. */
int vlm_zeroshot_logits(float *logits /* (N,C) */,
    const float *img /* (N,D) */, const float *W /* (D,C) */, int64_t N,
    int D, int C);

struct vlm_cls_metrics {
	double acc1;   /* fraction with the label first */
	double acc5;   /* ... in the top 5; NaN when C < 5 */
	double mean_per_class_recall; /* mean over classes present */
};
/*
 * Classification metrics of logits against labels (0..C-1), N >= 1.
 * recall (C), if not NULL, gets each class's recall (NaN for a class
 * with no items); confusion (C,C), if not NULL, counts items by true
 * class (row) and prediction (column). -1 on a label out of range.
 */
int vlm_metrics_cls(struct vlm_cls_metrics *m,
    const float *logits /* (N,C) */, const int *labels /* (N) */,
    int64_t N, int C, double *recall /* (C) */,
    int64_t *confusion /* (C,C) */);

/*
 * Retrieval recall@k for k in vlm_recall_ks, scores the cosine of
 * normalised embeddings: image_recall[j] = mean over texts of [its
 * image text_image[t] is in the top k images]; text_recall[j] = mean
 * over images of [any of its texts is in the top k texts] (an image
 * without texts counts as a miss). -1 on a bad text_image entry or
 * out of memory.
 */
int vlm_metrics_retrieval(double *image_recall /* (VLM_RECALL_NK) */,
    double *text_recall /* (VLM_RECALL_NK) */, const float *img /* (NI,D) */,
    int64_t NI, const float *txt /* (NT,D) */, int64_t NT,
    const int *text_image /* (NT) */, int D);

/*
 * The same from score matrices: s_ti (NT,NI) each text's scores of the
 * images, s_it (NI,NT) each image's of the texts (higher is better;
 * ties: the lower index first).
 */
int vlm_metrics_retrieval_scores(double *image_recall, double *text_recall,
    const float *s_ti /* (NT,NI) */, const float *s_it /* (NI,NT) */,
    int64_t NI, int64_t NT, const int *text_image /* (NT) */);
/* The K (<= NK) best keys of each row of s (NQ,NK), best first (ties:
 * the lower index first): idx (NQ,K). */
void vlm_topk_rows(int32_t *idx, const float *s, int64_t NQ, int64_t NK,
    int K);
/* Re-ranking (ALBEF, VLMo): row q's keys idx[q][k] get 2 + score[q][k]
 * (score in [0, 1], above every cosine), so that they come first,
 * ordered by score; the other keys keep their place after them. */
void vlm_rerank_apply(float *s, int64_t NQ, int64_t NK,
    const int32_t *idx /* (NQ,K) */, const float *score /* (NQ,K) */,
    int K);

/*
 * Linear probe: multinomial logistic regression on frozen embeddings,
 * loss mean cross-entropy + wd/2 |W|^2 (the bias not decayed), fitted
 * by full-batch L-BFGS. Unless wd > 0 is given, the weight decay is
 * chosen from 1, 1e-0.5, ..., 1e-6 (each fit from the last one's
 * minimum) by accuracy on a validation split (val_frac of the rows, by
 * vlm_perm_shuffle(seed, 0)) after fitting on the rest (ties: the
 * larger wd); then the model is fitted on every row from zero.
 * Deterministic for every thread count.
 */
struct vlm_linprobe_opts {
	double wd;       /* e.g. 0: choose it; > 0: use this one */
	double val_frac; /* e.g. 0.2 */
	uint64_t seed;   /* e.g. 0: the split */
	int iters;       /* L-BFGS iterations per fit, e.g. 300 */
};
#define VLM_LINPROBE_DEFAULT {0, 0.2, 0, 300}

struct vlm_linprobe {
	int D, C;
	float *W;        /* (D,C) */
	float *b;        /* (C) */
	double wd;       /* the weight decay used */
	double val_acc1; /* its validation accuracy (NaN: not chosen) */
	double loss;     /* the final objective */
};
int vlm_linprobe_fit(struct vlm_linprobe *p, const float *X /* (N,D) */,
    const int *y /* (N) */, int64_t N, int D, int C,
    const struct vlm_linprobe_opts *o);
/* logits = X W + b; -1 only for an unfitted probe. */
int vlm_linprobe_logits(const struct vlm_linprobe *p, float *logits /* (N,C) */,
    const float *X /* (N,D) */, int64_t N);
void vlm_linprobe_release(struct vlm_linprobe *p);

/*
 * A whole embeddings file in memory: a .npys stream ("-" is stdin, a
 * pipe is always read as a stream) or the packed form STEM.npy, with
 * STEM.ids.npy (ids) and STEM.json (metadata) beside it when present.
 * Refuses an empty file and non-finite values (naming the row).
 */
struct vlm_emb {
	int64_t n, dim;
	float *vec;   /* (n, dim) */
	char **ids;   /* [n], or NULL when the file has none */
	char *meta;   /* the metadata JSON text, or NULL */
};
int vlm_emb_load(struct vlm_emb *e, const char *path);
/* e := n rows of dim zeros to fill, no ids, no metadata; -1 (with a
 * message) out of memory. */
int vlm_emb_init(struct vlm_emb *e, int64_t n, int64_t dim);
void vlm_emb_release(struct vlm_emb *e);
/* e's vectors (n, dim), from now on the caller's to free; e keeps the
 * rest (release it as before). */
float *vlm_emb_take_vec(struct vlm_emb *e);

/*
 * Image-caption selection (eval/select.c). SugarCrepe: s (N,K) the
 * scores of item i's true caption (column 0) and its K-1 hard
 * negatives; *acc the fraction of items whose true caption scores
 * strictly above every negative. Winoground: s (N,2,2) the score of
 * caption c for image j at [i][j][c]; text: both images prefer their own
 * caption (s[0][0] > s[0][1], s[1][1] > s[1][0]); image: both captions
 * prefer their own image (s[0][0] > s[1][0], s[1][1] > s[0][1]);
 * group: both. Ties are misses. -1 for N < 1 (or K < 2).
 */
int vlm_select_acc(double *acc, const float *s /* (N,K) */, int64_t N, int K);
struct vlm_wino_scores {
	double text, image, group;
};
int vlm_winoground(struct vlm_wino_scores *w, const float *s /* (N,2,2) */,
    int64_t N);

/*
 * Caption metrics as the COCO caption evaluation (pycocoevalcap) defines
 * them (eval/caption-metrics.c). Captions are tokenised by
 * vlm_caption_tokenize. Image i has the candidate hyp[i] (NULL: none;
 * the image is then left out) and the references refs[j] with
 * ref_image[j] == i (none: left out too). Over the images kept:
 * bleu[k] is corpus BLEU-(k+1) (bleu_scorer.py, reference length the
 * closest to the candidate's, shorter on ties); cider is CIDEr-D
 * (cider_scorer.py: n = 1..4, tf-idf with document frequencies over the
 * kept images' reference sets, candidate weights clipped by the
 * reference's, Gaussian length penalty sigma 6 on the bigram counts,
 * x10), the mean over images of cider[i] (NaN for an image left out).
 * -1 with none kept, a ref_image out of range or out of memory.
 */
struct vlm_caption_scores {
	double bleu[4];
	double cider;
	int n;           /* images scored */
};
int vlm_caption_metrics(struct vlm_caption_scores *s, double *cider /* (N) */,
    char *const *hyp /* (N) */, int N, char *const *refs /* (R) */,
    const int *ref_image /* (R) */, int R);
/* s lower-cased (ASCII), the characters ' ` " . ? ! , : - ; ( ) { }
 * and white space as separators, words joined by one space (malloc'ed;
 * NULL out of memory). */
char *vlm_caption_tokenize(const char *s);

#endif /* VLM_LIBCORE_EVAL_H */
