/*
 * model/coca-gen.c - captions from CoCa as OpenCLIP 2.32's generate()
 * makes them (ids SOT, EOT the tokenizer's, c->sot and c->eot: 49406 and
 * 49407 in OpenCLIP's; pad 0; repetition penalty 1):
 *   greedy  generation_type 'top_k', top_k 1: argmax per step, EOT barred
 *           while fewer than min_len ids, EOT forced at position len - 1
 *   beam    generation_type 'beam_search' over transformers' BeamSearch-
 *           Scorer: scores are summed raw logits (no log-softmax), G groups
 *           of beams/G beams, no diversity penalty, 2*beams/G candidates a
 *           group, a finished hypothesis scores sum / its length + 1,
 *           length penalty 1, no early stopping.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/coca.h"

#define SOT (c->sot) /* 49406 in OpenCLIP's vocabulary */
#define EOT (c->eot) /* 49407 */

/* Scratch of one image's decoding: its tokens and one step's buffers. */
struct gen {
	float *embs, *tok, *hid, *lg;
};

static void
gen_free(struct gen *g)
{
	free(g->embs), free(g->tok), free(g->hid), free(g->lg);
}

static int
gen_init(struct gen *g, const struct vlm_coca *c, const float *img, int len,
    int nlg)
{
	float feat[c->E];

	g->embs = malloc((size_t)(c->Q - 1) * c->E * sizeof(float));
	g->tok = malloc((size_t)c->T * c->Dt * sizeof(float));
	g->hid = malloc((size_t)c->T * c->Dd * sizeof(float));
	g->lg = malloc((size_t)nlg * c->V * sizeof(float));
	if (len < 2 || len > c->T) {
		gen_free(g);
		return vlm_error("caption length %d (2 to %d)", len, c->T);
	}
	if (!g->embs || !g->tok || !g->hid || !g->lg) {
		gen_free(g);
		return vlm_error("out of memory");
	}
	if (vlm_coca_image(c, img, feat, g->embs) < 0) {
		gen_free(g);
		return -1;
	}
	return 0;
}

/* lg (V) := the logits after ids (n), EOT barred while n < min_len, ids
 * the tokenizer does not have (past EOT) always. */
static int
next_logits(const struct vlm_coca *c, struct gen *g, const int32_t *ids,
    int n, int min_len, float *lg)
{
	const struct vlm_tensor *proj = vlm_st_get(&c->st,
	    "text_decoder.text_projection");

	if (vlm_coca_text(c, ids, n, NULL, g->tok) < 0)
		return -1;
	vlm_coca_decode(c, g->embs, g->tok, n, g->hid, NULL);
	vlm_gemm_cpu(0, 0, 1, c->V, c->Dd, 1, g->hid + (size_t)(n - 1) * c->Dd,
	    c->Dd, proj->data, c->V, 0, lg, c->V);
	if (n < min_len)
		lg[EOT] = -INFINITY;
	for (int v = EOT + 1; v < c->V; v++) /* past a smaller tokenizer */
		lg[v] = -INFINITY;
	return 0;
}

int
vlm_coca_greedy(const struct vlm_coca *c, const float *img, int len,
    int min_len, int32_t *out)
{
	struct gen g;
	int n = 1;

	if (gen_init(&g, c, img, len, 1) < 0)
		return -1;
	out[0] = SOT;
	while (n < len && out[n - 1] != EOT) {
		if (next_logits(c, &g, out, n, min_len, g.lg) < 0) {
			gen_free(&g);
			return -1;
		}
		int best = 0;
		for (int v = 1; v < c->V; v++)
			if (g.lg[v] > g.lg[best])
				best = v;
		out[n] = n + 1 == len ? EOT : best;
		n++;
	}
	gen_free(&g);
	return n;
}

/* A group's finished hypotheses (BeamHypotheses): at most cap kept. */
struct hyps {
	int n, cap;
	double worst;
	double score[VLM_COCA_MAX_BEAMS + 1];
	int len[VLM_COCA_MAX_BEAMS + 1];
	int32_t ids[VLM_COCA_MAX_BEAMS + 1][VLM_COCA_MAX_LEN];
};

/* BeamHypotheses.add: score = sum / glen; evict the worst past cap. */
static void
hyps_add(struct hyps *h, const int32_t *ids, int n, float sum, int glen)
{
	double s = (double)sum / glen;

	if (h->n == h->cap && !(s > h->worst))
		return;
	h->score[h->n] = s, h->len[h->n] = n;
	memcpy(h->ids[h->n], ids, n * sizeof(*ids));
	if (++h->n <= h->cap) {
		h->worst = h->n == 1 || s < h->worst ? s : h->worst;
		return;
	}
	int lo = 0, lo2 = -1; /* sorted() order: the first of equal lows */
	for (int i = 1; i < h->n; i++)
		if (h->score[i] < h->score[lo])
			lo = i;
	for (int i = 0; i < h->n; i++)
		if (i != lo && (lo2 < 0 || h->score[i] < h->score[lo2]))
			lo2 = i;
	h->worst = h->score[lo2];
	for (int i = lo; i + 1 < h->n; i++) {
		h->score[i] = h->score[i + 1], h->len[i] = h->len[i + 1];
		memcpy(h->ids[i], h->ids[i + 1], sizeof(h->ids[i]));
	}
	h->n--;
}

/* The 2*gs best (score, beam*V + token) of scores (gs,V), descending. */
static void
topk(const float *sc, int gs, int V, int k, float *val, int *at)
{
	for (int i = 0; i < k; i++)
		val[i] = -INFINITY, at[i] = -1;
	for (int i = 0; i < gs * V; i++) {
		if (at[k - 1] >= 0 && !(sc[i] > val[k - 1]))
			continue;
		int j = k - 1;
		while (j > 0 && (at[j - 1] < 0 || sc[i] > val[j - 1])) {
			val[j] = val[j - 1], at[j] = at[j - 1];
			j--;
		}
		val[j] = sc[i], at[j] = i;
	}
}

/* The beams' state: ids (nb, n), summed scores, per group done + hyps. */
struct beams {
	int nb, G, gs, n;
	int32_t eot;
	int32_t ids[VLM_COCA_MAX_BEAMS][VLM_COCA_MAX_LEN];
	float score[VLM_COCA_MAX_BEAMS];
	int done[VLM_COCA_MAX_BEAMS];
	struct hyps hyp[VLM_COCA_MAX_BEAMS];
};

/* BeamSearchScorer.process for group q: scores sc (gs,V) already summed. */
static void
group_step(struct beams *b, int q, const float *sc, int V, int32_t
    (*nids)[VLM_COCA_MAX_LEN], float *nscore)
{
	int gs = b->gs, k = 2 * gs, at[2 * VLM_COCA_MAX_BEAMS], m = 0;
	int32_t(*ids)[VLM_COCA_MAX_LEN] = b->ids + q * gs;
	float val[2 * VLM_COCA_MAX_BEAMS];

	if (b->done[q]) { /* pad after beam 0 of the group, score 0 */
		for (int j = 0; j < gs; j++) {
			memcpy(nids[j], ids[0], b->n * sizeof(int32_t));
			nids[j][b->n] = 0, nscore[j] = 0;
		}
		return;
	}
	topk(sc, gs, V, k, val, at);
	for (int r = 0; r < k && m < gs; r++) {
		int j = at[r] / V, t = at[r] % V;
		if (t == b->eot) {
			if (r < gs)
				hyps_add(&b->hyp[q], ids[j], b->n, val[r],
				    b->n + 1);
			continue;
		}
		memcpy(nids[m], ids[j], b->n * sizeof(int32_t));
		nids[m][b->n] = t, nscore[m++] = val[r];
	}
	assert(m == gs);
	/* BeamHypotheses.is_done, early_stopping False */
	b->done[q] = b->hyp[q].n == b->hyp[q].cap &&
	    b->hyp[q].worst >= (double)val[0] / (b->n + 1);
}

/* BeamSearchScorer.finalize: the best hypothesis over all groups. */
static int
finalize(struct beams *b, int len, int32_t *out)
{
	int bq = -1, bi = 0;

	for (int q = 0; q < b->G; q++)
		for (int j = 0; !b->done[q] && j < b->gs; j++)
			hyps_add(&b->hyp[q], b->ids[q * b->gs + j], b->n,
			    b->score[q * b->gs + j], b->n);
	for (int q = 0; q < b->G; q++)
		for (int i = 0; i < b->hyp[q].n; i++)
			if (bq < 0 || b->hyp[q].score[i] >=
			    b->hyp[bq].score[bi])
				bq = q, bi = i;
	int n = b->hyp[bq].len[bi];
	memcpy(out, b->hyp[bq].ids[bi], n * sizeof(*out));
	if (n < len)
		out[n++] = b->eot;
	return n;
}

int
vlm_coca_beam(const struct vlm_coca *c, const float *img, int len,
    int min_len, int nb, int G, int32_t *out)
{
	struct gen g;
	struct beams *b;
	int rc = 0, V = c->V;

	if (nb < 1 || nb > VLM_COCA_MAX_BEAMS || G < 1 || nb % G)
		return vlm_error("%d beams in %d groups (1 to %d beams, "
		    "groups dividing them)", nb, G, VLM_COCA_MAX_BEAMS);
	if (len > VLM_COCA_MAX_LEN)
		return vlm_error("caption length %d (2 to %d)", len,
		    VLM_COCA_MAX_LEN);
	if (!(b = calloc(1, sizeof(*b))))
		return vlm_error("out of memory");
	if (gen_init(&g, c, img, len, nb) < 0) {
		free(b);
		return -1;
	}
	b->nb = nb, b->G = G, b->gs = nb / G, b->n = 1, b->eot = EOT;
	for (int j = 0; j < nb; j++) {
		b->ids[j][0] = SOT;
		b->score[j] = j % b->gs ? -1e9f : 0;
		b->hyp[j].cap = b->gs;
	}
	for (;;) {
		int32_t nids[VLM_COCA_MAX_BEAMS][VLM_COCA_MAX_LEN];
		float nscore[VLM_COCA_MAX_BEAMS];
		int all = 1;
		for (int j = 0; j < nb && rc == 0; j++)
			rc = next_logits(c, &g, b->ids[j], b->n, min_len,
			    g.lg + (size_t)j * V);
		if (rc < 0)
			break;
		for (int j = 0; j < nb; j++)
			for (int v = 0; v < V; v++)
				g.lg[(size_t)j * V + v] += b->score[j];
		for (int q = 0; q < G; q++)
			group_step(b, q, g.lg + (size_t)q * b->gs * V, V,
			    nids + q * b->gs, nscore + q * b->gs);
		memcpy(b->ids, nids, sizeof(nids));
		memcpy(b->score, nscore, sizeof(nscore));
		b->n++;
		for (int q = 0; q < G; q++)
			all &= b->done[q];
		if (all || b->n >= len)
			break;
	}
	if (rc == 0)
		rc = finalize(b, len, out);
	gen_free(&g);
	free(b);
	return rc;
}
