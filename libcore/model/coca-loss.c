/*
 * model/coca-loss.c - OpenCLIP's CoCaLoss (contrastive + weighted caption
 * cross-entropy, pad 0 ignored) over the CoCa forward of model/coca.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/coca.h"

/* Cross-entropy of one logits row (V) against label y. */
static double
row_ce(const float *z, int V, int y)
{
	double mx = -INFINITY, s = 0;

	for (int v = 0; v < V; v++)
		mx = z[v] > mx ? z[v] : mx;
	for (int v = 0; v < V; v++)
		s += exp(z[v] - mx);
	return mx + log(s) - z[y];
}

int
vlm_coca_loss(const struct vlm_coca *c, const float *imgs,
    const int32_t *ids, int B, float w_caption, float w_clip,
    struct vlm_coca_loss *out)
{
	int E = c->E, T = c->T, n = T - 1, S3 = 3 * c->S * c->S, labels = 0;
	float *u = malloc((size_t)B * E * sizeof(float));
	float *v = malloc((size_t)B * E * sizeof(float));
	float *embs = malloc((size_t)(c->Q - 1) * E * sizeof(float));
	float *tok = malloc((size_t)T * c->Dt * sizeof(float));
	float *hid = malloc((size_t)T * c->Dd * sizeof(float));
	float *lg = malloc((size_t)n * c->V * sizeof(float));
	double cap = 0;
	int rc = 0;

	if (!u || !v || !embs || !tok || !hid || !lg)
		rc = vlm_error("out of memory");
	for (int b = 0; b < B && rc == 0; b++) {
		const int32_t *t = ids + (size_t)b * T;
		if (vlm_coca_image(c, imgs + (size_t)b * S3, u + b * E, embs) <
		    0 || vlm_coca_text(c, t, T, v + b * E, tok) < 0) {
			rc = -1;
			break;
		}
		/* the decoder reads tokens 0..T-2, scored against 1..T-1 */
		vlm_coca_decode(c, embs, tok, n, hid, lg);
		for (int i = 0; i < n; i++)
			if (t[i + 1]) {
				cap += row_ce(lg + (size_t)i * c->V, c->V,
				    t[i + 1]);
				labels++;
			}
	}
	if (rc == 0) {
		float theta = *(const float *)vlm_st_get(&c->st,
		    "logit_scale")->data, lg[B * B], lse[2 * B];
		vlm_l2norm_fwd_cpu(u, NULL, u, B, E);
		vlm_l2norm_fwd_cpu(v, NULL, v, B, E);
		out->contrastive = w_clip * vlm_clip_loss_fwd_cpu(lg, lse, u, v,
		    theta, B, E);
		out->caption = labels ? w_caption * cap / labels : 0;
		out->aux = 0;
		out->total = out->contrastive + out->caption;
	}
	free(u), free(v), free(embs), free(tok), free(hid), free(lg);
	return rc;
}
