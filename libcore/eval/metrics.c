/*
 * metrics.c - zero-shot classification and retrieval metrics exactly as
 * CLIP_benchmark 1.6.1 computes them (ALGORITHMS.md section 6), as pure
 * functions over float arrays.
 *
 * CLIP_benchmark ranks with torch.topk, which leaves ties unspecified;
 * here every ranking is stable (equal scores: the lower index first), so
 * results never depend on a sort's whims. Score matrices come from
 * VLM_BACKEND's gemm (the cpu one is bit-identical for every thread
 * count) and every mean is
 * a double sum in index order: the same inputs give the same bits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "eval/eval-priv.h"

#define NORM_EPS 1e-12 /* torch.nn.functional.normalize's eps */
#define LOGIT_SCALE 100.0f
#define BLOCK 1024     /* query rows per score block */

const int vlm_recall_ks[VLM_RECALL_NK] = { 1, 5, 10 };

/* y = x / max(|x|, eps) for n rows of D floats; y may be x. */
static void
normalize_rows(float *y, const float *x, int64_t n, int D)
{
	for (int64_t i = 0; i < n; i++) {
		const float *xi = x + i * D;
		double s = 0;
		for (int d = 0; d < D; d++)
			s += (double)xi[d] * xi[d];
		s = sqrt(s);
		if (s < NORM_EPS)
			s = NORM_EPS;
		for (int d = 0; d < D; d++)
			y[i * D + d] = (float)(xi[d] / s);
	}
}

int
vlm_zeroshot_classifier(float *W, const float *text, int C, int T, int D)
{
	double *mean = malloc((size_t)D * sizeof(*mean));

	if (!mean)
		return vlm_error("out of memory (dimension %d)", D);
	for (int c = 0; c < C; c++) {
		double s = 0;

		memset(mean, 0, (size_t)D * sizeof(*mean));
		for (int t = 0; t < T; t++) {
			const float *e = text + ((int64_t)c * T + t) * D;
			double n = 0;
			for (int d = 0; d < D; d++)
				n += (double)e[d] * e[d];
			n = fmax(sqrt(n), NORM_EPS);
			for (int d = 0; d < D; d++)
				mean[d] += e[d] / n;
		}
		for (int d = 0; d < D; d++) {
			mean[d] /= T;
			s += mean[d] * mean[d];
		}
		s = fmax(sqrt(s), NORM_EPS);
		for (int d = 0; d < D; d++)
			W[(int64_t)d * C + c] = (float)(mean[d] / s);
	}
	free(mean);
	return 0;
}

int
vlm_zeroshot_logits(float *logits, const float *img, const float *W,
    int64_t N, int D, int C)
{
	const struct vlm_backend *be = vlm_eval_backend();
	float *x;
	int rc;

	if (!be)
		return -1;
	if (!(x = malloc((size_t)N * D * sizeof(*x))))
		return vlm_error("out of memory (%lld embeddings)",
		    (long long)N);
	normalize_rows(x, img, N, D);
	rc = vlm_eval_gemm(be, 0, 0, (int)N, C, D, LOGIT_SCALE, x, D, W, C,
	    0.0f, logits, C);
	free(x);
	return rc;
}

/* Place of s[i] among s[0..n) sorted by decreasing score, stably. */
static int64_t
rank_of(const float *s, int64_t n, int64_t i)
{
	int64_t r = 0;

	for (int64_t j = 0; j < n; j++)
		r += s[j] > s[i] || (s[j] == s[i] && j < i);
	return r;
}

/* The first maximum of s[0..n). */
static int64_t
argmax(const float *s, int64_t n)
{
	int64_t best = 0;

	for (int64_t j = 1; j < n; j++)
		if (s[j] > s[best])
			best = j;
	return best;
}

int
vlm_metrics_cls(struct vlm_cls_metrics *m, const float *logits,
    const int *labels, int64_t N, int C, double *recall, int64_t *confusion)
{
	int64_t top1 = 0, top5 = 0, *count, *hit;
	double sum = 0;
	int present = 0;

	if (N < 1 || C < 1)
		return vlm_error("no items to evaluate");
	for (int64_t i = 0; i < N; i++)
		if (labels[i] < 0 || labels[i] >= C)
			return vlm_error("item %lld: label %d out of range "
			    "(%d classes)", (long long)i, labels[i], C);
	if (!(count = calloc(2 * (size_t)C, sizeof(*count))))
		return vlm_error("out of memory (%d classes)", C);
	hit = count + C;
	if (confusion)
		memset(confusion, 0, (size_t)C * C * sizeof(*confusion));
	for (int64_t i = 0; i < N; i++) {
		const float *l = logits + i * C;
		int64_t r = rank_of(l, C, labels[i]);
		top1 += r < 1;
		top5 += r < 5;
		count[labels[i]]++;
		hit[labels[i]] += r < 1;
		if (confusion)
			confusion[(int64_t)labels[i] * C + argmax(l, C)]++;
	}
	for (int c = 0; c < C; c++) {
		double rc = count[c] ? (double)hit[c] / count[c] : NAN;
		if (recall)
			recall[c] = rc;
		if (count[c])
			sum += rc, present++;
	}
	m->acc1 = (double)top1 / N;
	m->acc5 = C < 5 ? NAN : (double)top5 / N;
	m->mean_per_class_recall = sum / present;
	free(count);
	return 0;
}

/* For each k: hits[j] += [r < ks[j]]. */
static void
count_hits(int64_t *hits, int64_t r)
{
	for (int j = 0; j < VLM_RECALL_NK; j++)
		hits[j] += r < vlm_recall_ks[j];
}

/*
 * Image retrieval: each text t queries the images; s (rows, NI) holds
 * the scores of texts t0.. of the block.
 */
static void
image_hits(int64_t *hits, const float *s, int64_t rows, int64_t NI,
    const int *text_image)
{
	for (int64_t t = 0; t < rows; t++)
		count_hits(hits, rank_of(s + t * NI, NI, text_image[t]));
}

/*
 * Text retrieval: each image i0+i queries the texts; s (rows, NT). Any of
 * its texts in the top k is the best-placed one in the top k: the first
 * of its texts with the highest score.
 */
static void
text_hits(int64_t *hits, const float *s, int64_t rows, int64_t i0,
    int64_t NT, const int *text_image)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *si = s + i * NT;
		int64_t best = -1;

		for (int64_t t = 0; t < NT; t++)
			if (text_image[t] == i0 + i && (best < 0 ||
			    si[t] > si[best]))
				best = t;
		if (best >= 0)
			count_hits(hits, rank_of(si, NT, best));
	}
}

/*
 * Hits of queries q (NQ,D) against keys k (NK,D), both normalised,
 * BLOCK queries at a time: scores (rows, NK) then the direction's count.
 */
static int
recall_hits(int64_t *hits, const float *q, int64_t NQ, const float *k,
    int64_t NK, int D, const int *text_image, int text_queries)
{
	const struct vlm_backend *be = vlm_eval_backend();
	float *s;

	if (!be)
		return -1;
	if (!(s = malloc((size_t)(NQ < BLOCK ? NQ : BLOCK) * NK * sizeof(*s))))
		return vlm_error("out of memory (%lld x %lld scores)",
		    (long long)BLOCK, (long long)NK);
	for (int64_t q0 = 0; q0 < NQ; q0 += BLOCK) {
		int64_t rows = NQ - q0 < BLOCK ? NQ - q0 : BLOCK;
		if (vlm_eval_gemm(be, 0, 1, (int)rows, (int)NK, D, 1.0f,
		    q + q0 * D, D, k, D, 0.0f, s, (int)NK) < 0) {
			free(s);
			return -1;
		}
		if (text_queries)
			image_hits(hits, s, rows, NK, text_image + q0);
		else
			text_hits(hits, s, rows, q0, NK, text_image);
	}
	free(s);
	return 0;
}

/* Images and texts to evaluate, each text's image one of them. */
static int
check_text_image(int64_t NI, int64_t NT, const int *text_image)
{
	if (NI < 1 || NT < 1)
		return vlm_error("no %s to evaluate", NI < 1 ? "images" :
		    "texts");
	for (int64_t t = 0; t < NT; t++)
		if (text_image[t] < 0 || text_image[t] >= NI)
			return vlm_error("text %lld: image %d out of range "
			    "(%lld images)", (long long)t, text_image[t],
			    (long long)NI);
	return 0;
}

int
vlm_metrics_retrieval(double *image_recall, double *text_recall,
    const float *img, int64_t NI, const float *txt, int64_t NT,
    const int *text_image, int D)
{
	int64_t ih[VLM_RECALL_NK] = { 0 }, th[VLM_RECALL_NK] = { 0 };
	float *ni, *nt;
	int rc = -1;

	if (check_text_image(NI, NT, text_image) < 0)
		return -1;
	ni = malloc((size_t)(NI + NT) * D * sizeof(*ni));
	if (!ni)
		return vlm_error("out of memory (%lld embeddings)",
		    (long long)(NI + NT));
	nt = ni + NI * D;
	normalize_rows(ni, img, NI, D);
	normalize_rows(nt, txt, NT, D);
	if (recall_hits(ih, nt, NT, ni, NI, D, text_image, 1) == 0 &&
	    recall_hits(th, ni, NI, nt, NT, D, text_image, 0) == 0) {
		for (int j = 0; j < VLM_RECALL_NK; j++) {
			image_recall[j] = (double)ih[j] / NT;
			text_recall[j] = (double)th[j] / NI;
		}
		rc = 0;
	}
	free(ni);
	return rc;
}

int
vlm_metrics_retrieval_scores(double *image_recall, double *text_recall,
    const float *s_ti, const float *s_it, int64_t NI, int64_t NT,
    const int *text_image)
{
	int64_t ih[VLM_RECALL_NK] = { 0 }, th[VLM_RECALL_NK] = { 0 };

	if (check_text_image(NI, NT, text_image) < 0)
		return -1;
	image_hits(ih, s_ti, NT, NI, text_image);
	text_hits(th, s_it, NI, 0, NT, text_image);
	for (int j = 0; j < VLM_RECALL_NK; j++) {
		image_recall[j] = (double)ih[j] / NT;
		text_recall[j] = (double)th[j] / NI;
	}
	return 0;
}

void
vlm_topk_rows(int32_t *idx, const float *s, int64_t NQ, int64_t NK, int K)
{
	for (int64_t q = 0; q < NQ; q++) {
		const float *sq = s + q * NK;
		int32_t *iq = idx + q * K;
		int n = 0;
		for (int64_t k = 0; k < NK; k++) { /* insertion, stable */
			int at = n;
			while (at > 0 && sq[k] > sq[iq[at - 1]])
				at--;
			if (at >= K)
				continue;
			if (n < K)
				n++;
			memmove(iq + at + 1, iq + at, (n - 1 - at) *
			    sizeof(*iq));
			iq[at] = (int32_t)k;
		}
	}
}

void
vlm_rerank_apply(float *s, int64_t NQ, int64_t NK, const int32_t *idx,
    const float *score, int K)
{
	for (int64_t q = 0; q < NQ; q++)
		for (int k = 0; k < K; k++)
			s[q * NK + idx[q * K + k]] = 2 + score[q * K + k];
}
