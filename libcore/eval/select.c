/*
 * eval/select.c - image-caption selection scores: SugarCrepe's accuracy
 * (the true caption scores above every hard negative) and Winoground's
 * text, image and group scores (Thrush et al. 2022, section 3.3).
 * Comparisons are strict: a tie is a miss, as the papers count them
 * (CLIP_benchmark's argmax would give a tie to the first caption).
 */
#include <stddef.h>

#include "eval/eval.h"

int
vlm_select_acc(double *acc, const float *s /* (N,K) */, int64_t N, int K)
{
	int64_t hit = 0;

	if (N < 1 || K < 2)
		return vlm_error("caption selection: want items with a "
		    "caption and at least one negative");
	for (int64_t i = 0; i < N; i++) {
		const float *r = s + i * K;
		int k = 1;
		while (k < K && r[0] > r[k])
			k++;
		hit += k == K;
	}
	*acc = (double)hit / (double)N;
	return 0;
}

int
vlm_winoground(struct vlm_wino_scores *w, const float *s /* (N,2,2) */,
    int64_t N)
{
	int64_t t = 0, im = 0, g = 0;

	if (N < 1)
		return vlm_error("winoground: no items");
	for (int64_t i = 0; i < N; i++) {
		/* s[i][img][cap]: the score of caption cap for image img */
		const float *q = s + i * 4;
		float c0i0 = q[0], c1i0 = q[1], c0i1 = q[2], c1i1 = q[3];
		int text = c0i0 > c1i0 && c1i1 > c0i1;
		int image = c0i0 > c0i1 && c1i1 > c1i0;
		t += text;
		im += image;
		g += text && image;
	}
	w->text = (double)t / (double)N;
	w->image = (double)im / (double)N;
	w->group = (double)g / (double)N;
	return 0;
}
