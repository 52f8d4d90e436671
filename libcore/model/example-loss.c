/*
 * example-loss.c - each example's share of the contrastive loss after
 * vlm_run_loss, for samplers that weigh data by how hard the model finds
 * it: example i's loss is the mean of the cross-entropy of its image's
 * row (image -> text) and of its text's column (text -> image), so the
 * batch's contrastive loss is the mean of these. Computed in double from
 * the logits and log-sum-exps the forward kept.
 */
#include "model/run.h"

int
vlm_run_row_loss(const struct vlm_run *r, double *loss)
{
	int B = r->tw[0].B;

	/* a fusion run's texts past B (masked copies) are not in it */
	if (B == 0 || (B != r->tw[1].B && !(r->fus && r->tw[1].B > B)))
		return vlm_error("per-example losses need as many images as "
		    "texts (%d and %d)", B, r->tw[1].B);
	r->be->download(r->hlogits, r->logits, (size_t)B * B * sizeof(float));
	r->be->download(r->hlse2, r->lse2, 2 * (size_t)B * sizeof(float));
	vlm_row_loss(r->hlogits, r->hlse2, B, loss);
	return 0;
}

void
vlm_row_loss(const float *logits, const float *lse2, int B, double *loss)
{
	for (int i = 0; i < B; i++) {
		double d = logits[(size_t)i * B + i];
		loss[i] = ((lse2[i] - d) + (lse2[B + i] - d)) / 2;
	}
}
