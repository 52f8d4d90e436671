/*
 * test-fusion.c - the VL-MoE fusion model (model/fusion.c): the whole
 * training loss (ITC + ITM with hard negatives + MLM + every MoE aux
 * loss, MoE in the modality blocks and in the fusion blocks' third pool,
 * capacity small enough to drop tokens) against central finite
 * differences, probing every parameter of the fusion blocks and heads;
 * the padding mask; BERT masking's proportions; hard negatives drawn by
 * the softmax of the similarities; determinism from the seed.
 */
#include <math.h>

#include "testutil.h"
#include "kernels.h"

#define B 3
#define CTX 7

static void
fusion_config(struct vlm_config *c)
{
	tiny_grad_config(c);
	c->vision.mlp_ratio = c->text.mlp_ratio = 2;
	c->moe.experts = 4, c->moe.top_k = 2, c->moe.every = 1;
	c->moe.cf_train = 0.6f, c->moe.min_capacity = 1;
	c->moe.gate_norm = VLM_GATE_TOPK;
	c->moe.modality_experts = 1;
	c->aux.switch_bal = 1;
	c->aux.w_limoe = 0.5f;
	c->fusion.layers = 2;
}

static const struct vlm_fusion_weights W = { 0.7f, 1.3f, 0.9f };

/* FNV-1a over every MoE layer's choices, fusion blocks included. */
static uint64_t
route_hash(const struct vlm_run *r, const struct vlm_model *m)
{
	uint64_t h = 1469598103934665603ULL;
	struct vlm_route_view v;
	int L = m->cfg.text.layers + m->cfg.fusion.layers;

	for (int l = 0; l < L; l++)
		for (int t = 0; t < 2; t++)
			for (int p = 0; p < 2; p++) {
				if (vlm_run_route(r, t, l, p, &v) < 0)
					continue;
				for (int i = 0; i < v.S * m->cfg.moe.top_k; i++)
					h = (h ^ (uint64_t)(v.idx[i] * 2 +
					    v.keep[i])) * 1099511628211ULL;
			}
	return h;
}

static void
inputs(float *img, int32_t *ids, struct vlm_rng *rng)
{
	for (size_t i = 0; i < (size_t)B * 3 * 16 * 16; i++)
		img[i] = (float)vlm_rng_normal(rng);
	for (int b = 0; b < B; b++) { /* lengths 5..7, EOT = 39 */
		int len = 5 + b;
		for (int t = 0; t < CTX; t++)
			ids[b * CTX + t] = t < len - 1 ?
			    1 + (int)vlm_rng_below(rng, 30) : 0;
		ids[b * CTX + len - 1] = 39;
	}
}

/* QA answers of the B pairs, or NULL: the pretraining losses. */
static const int32_t *qa_answers;

static double
loss_at(struct vlm_run *r, const struct vlm_model *m, const float *img,
    const int32_t *ids, uint64_t *routes, struct vlm_loss *out)
{
	struct vlm_loss L;

	vlm_run_seed(r, 7);
	if (qa_answers)
		assert_int_equal(vlm_fusion_qa_forward(r, m, img, ids,
		    qa_answers, &L), 0);
	else
		assert_int_equal(vlm_fusion_train_forward(r, m, img, ids, &W,
		    &L), 0);
	*routes = route_hash(r, m);
	if (out)
		*out = L;
	return L.total;
}

/* A random fusion model (seed ms) and inputs (seed is). */
static void
fusion_model(struct vlm_model *m, uint64_t ms, float *img, int32_t *ids,
    uint64_t is, int cf_eval0)
{
	struct vlm_config c;
	struct vlm_rng rng;

	fusion_config(&c);
	if (cf_eval0)
		c.moe.cf_eval = 0; /* no capacity: pairs do not compete */
	assert_int_equal(vlm_model_init(m, &c), 0);
	vlm_model_randomize(m, ms);
	vlm_rng_seed(&rng, is);
	inputs(img, ids, &rng);
}

/*
 * The error allowed a central difference with step h of the float loss
 * lp, lm against the analytic gradient an: 2% of an, at least 2% of 0.05,
 * and at least 4 ulp of the loss over 2 h. The last is what a float loss
 * resolves: its total adds four rounded losses, each the end of long
 * float sums, so the +-h runs land a few ulp off the exact difference
 * (at a loss of 10, 2 ulp over 2 h is 1e-3, the old bound for small
 * gradients: an ulp moved anywhere in the forward, as a softmax with a
 * vectorised exp does, tipped a probe whose error was 2.4 ulp over 2 h).
 */
static double
fd_bound(double an, double lp, double lm, float h)
{
	float L = (float)fmax(fabs(lp), fabs(lm));
	double ulp = nextafterf(L, INFINITY) - L;

	return fmax(2e-2 * fmax(fabs(an), 5e-2), 4 * ulp / (2 * h));
}

/* Probe k entries of parameter p; returns probes off, counts skips. */
static int
probe(struct vlm_run *r, struct vlm_model *m, const struct vlm_param *p,
    int k, const float *g, const float *img, const int32_t *ids,
    uint64_t h0, struct vlm_rng *rng, int *probes, int *skipped)
{
	int bad = 0;
	uint64_t hp, hm;

	for (int i = 0; i < k && i < p->n; i++) {
		int64_t j = p->off + vlm_rng_below(rng, p->n);
		float w0 = m->w[j], h = 1e-3f;
		m->w[j] = w0 + h;
		double lp = loss_at(r, m, img, ids, &hp, NULL);
		m->w[j] = w0 - h;
		double lm = loss_at(r, m, img, ids, &hm, NULL);
		m->w[j] = w0;
		if (hp != h0 || hm != h0) { /* crossed a routing edge */
			(*skipped)++;
			continue;
		}
		double fd = (lp - lm) / (2 * h), an = g[j];
		(*probes)++;
		if (fabs(fd - an) > fd_bound(an, lp, lm, h)) {
			bad++;
			print_message("%s[%lld]: analytic %.6g fd %.6g\n",
			    p->name, (long long)(j - p->off), an, fd);
		}
	}
	return bad;
}

/* Probe every parameter (kf entries of the fusion ones, ko of the
 * others) against g; assert few skips and none off. */
static void
probe_all(struct vlm_run *r, struct vlm_model *m, const float *g,
    const float *img, const int32_t *ids, uint64_t h0, int kf, int ko)
{
	struct vlm_rng rng;
	int probes = 0, bad = 0, skipped = 0;

	vlm_rng_seed(&rng, 23);
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		int fus = strncmp(p->name, "fusion.", 7) == 0;
		bad += probe(r, m, p, fus ? kf : ko, g, img, ids, h0, &rng,
		    &probes, &skipped);
	}
	print_message("%d probes, %d off, %d skipped (routing changed)\n",
	    probes, bad, skipped);
	assert_int_equal(bad, 0);
	assert_true(skipped <= probes / 10);
}

static void
test_fusion_gradient(void **state)
{
	struct vlm_model m;
	struct vlm_loss L;
	float img[B * 3 * 16 * 16], *g;
	int32_t ids[B * CTX];
	int fused = 0;
	uint64_t h0;
	struct vlm_run *r;

	(void)state;
	fusion_model(&m, 3, img, ids, 11, 0);
	assert_non_null(r = vlm_run_new_fusion(&m, B, 2 * B, 4 * B, 1));
	loss_at(r, &m, img, ids, &h0, &L);
	print_message("itc %.4f itm %.4f (acc %.2f) mlm %.4f aux %.4f\n",
	    L.contrastive, L.itm, L.itm_acc, L.mlm, L.aux);
	assert_true(L.itm > 0 && L.mlm > 0 && L.aux > 0); /* all live */
	assert_true(fabsf(L.total - (W.itc * L.contrastive + W.itm * L.itm +
	    W.mlm * L.mlm + L.aux)) < 1e-5f * fabsf(L.total));
	for (int i = 0; i < m.nparams; i++)
		fused += strncmp(m.params[i].name, "fusion.", 7) == 0;
	assert_true(fused >= 2 * 13 + 5); /* 2 MoE blocks and the heads */
	g = malloc(m.nfloats * sizeof(float));
	assert_int_equal(vlm_backward(r, &m, g), 0);
	probe_all(r, &m, g, img, ids, h0, 4, 2);
	free(g);
	vlm_run_free(r);
	vlm_model_release(&m);
}

/* The QA head's loss (and the aux losses) through the fusion blocks
 * and the towers, a head added to a fusion model by vlm_fusion_add_qa. */
static void
test_qa_gradient(void **state)
{
	const int32_t ans[B] = { 4, 0, 2 };
	struct vlm_model m;
	struct vlm_loss L;
	float img[B * 3 * 16 * 16], *g, keep;
	int32_t ids[B * CTX];
	uint64_t h0;
	struct vlm_run *r;

	(void)state;
	fusion_model(&m, 3, img, ids, 11, 0);
	keep = m.w[m.fus.itm_w + 5];
	assert_int_equal(vlm_fusion_add_qa(&m, 5, 8), 0);
	assert_true(m.fus.qa_w >= 0 && m.cfg.fusion.answers == 5);
	assert_true(m.w[m.fus.itm_w + 5] == keep); /* the rest kept */
	assert_non_null(r = vlm_run_new_fusion(&m, B, B, B, 1));
	qa_answers = ans;
	loss_at(r, &m, img, ids, &h0, &L);
	print_message("qa %.4f (acc %.2f) aux %.4f\n", L.qa, L.qa_acc, L.aux);
	assert_true(L.qa > 0 && fabsf(L.total - L.qa - L.aux) < 1e-5f);
	assert_non_null(vlm_fusion_answers(r));
	g = malloc(m.nfloats * sizeof(float));
	assert_int_equal(vlm_backward(r, &m, g), 0);
	probe_all(r, &m, g, img, ids, h0, 3, 1);
	qa_answers = NULL;
	free(g);
	vlm_run_free(r);
	vlm_model_release(&m);
}

/* vlm_fusion_score_rows on the towers' output rows read back gives the
 * scores vlm_fusion_forward gave (s0) for pairs (pi, pt). */
static void
rows_agree(const struct vlm_run *r, const struct vlm_model *m,
    const int32_t *pi, const int32_t *pt, const int32_t *ids,
    const float *s0)
{
	int L = m->cfg.text.layers, ni, nt, D;
	const float *a, *pa[B], *pb[B];
	float *img, *txt, p[B];
	int32_t eot[B], len[B];
	struct vlm_run *q;

	a = vlm_run_stream(r, 0, L, &ni, &D);
	assert_non_null(img = malloc((size_t)ni * D * sizeof(float)));
	memcpy(img, a, (size_t)ni * D * sizeof(float));
	a = vlm_run_stream(r, 1, L, &nt, &D);
	assert_non_null(txt = malloc((size_t)nt * D * sizeof(float)));
	memcpy(txt, a, (size_t)nt * D * sizeof(float));
	assert_int_equal(nt, B * CTX);
	vlm_eot_index(eot, ids, B, CTX);
	for (int j = 0; j < B; j++) {
		pa[j] = img + (size_t)pi[j] * (ni / B) * D;
		pb[j] = txt + (size_t)pt[j] * CTX * D;
		len[j] = eot[pt[j]] + 1;
	}
	assert_non_null(q = vlm_run_new_fusion(m, 1, 1, B, 0));
	assert_int_equal(vlm_fusion_score_rows(q, m, B, pa, pb, len, p), 0);
	for (int j = 0; j < B; j++)
		assert_true(fabsf(p[j] - s0[j]) < 1e-6f);
	vlm_run_free(q);
	free(img);
	free(txt);
}

/* Padding after the EOT is masked: its ids change no ITM score. */
static void
test_fusion_padding_masked(void **state)
{
	struct vlm_model m;
	float img[B * 3 * 16 * 16], s0[B];
	int32_t ids[B * CTX], pi[B] = { 0, 1, 2 }, pt[B] = { 2, 0, 1 };
	struct vlm_fusion_batch fb = { B, pi, pt, NULL, NULL, NULL };
	struct vlm_run *r;
	const float *s;

	(void)state;
	fusion_model(&m, 5, img, ids, 13, 1);
	assert_non_null(r = vlm_run_new_fusion(&m, B, B, B, 0));
	assert_int_equal(vlm_forward(r, &m, img, ids), 0);
	assert_int_equal(vlm_fusion_forward(r, &m, &fb, NULL), 0);
	assert_non_null(s = vlm_fusion_itm_scores(r));
	memcpy(s0, s, sizeof(s0));
	for (int j = 0; j < B; j++)
		assert_true(s0[j] > 0 && s0[j] < 1);
	rows_agree(r, &m, pi, pt, ids, s0);
	ids[0 * CTX + 6] = 17, ids[1 * CTX + 6] = 3; /* padding of 0, 1 */
	assert_int_equal(vlm_forward(r, &m, img, ids), 0);
	assert_int_equal(vlm_fusion_forward(r, &m, &fb, NULL), 0);
	s = vlm_fusion_itm_scores(r);
	for (int j = 0; j < B; j++)
		assert_true(s[j] == s0[j]);
	ids[1 * CTX + 2] = 5 + ids[1 * CTX + 2] % 20; /* a real token */
	assert_int_equal(vlm_forward(r, &m, img, ids), 0);
	assert_int_equal(vlm_fusion_forward(r, &m, &fb, NULL), 0);
	s = vlm_fusion_itm_scores(r);
	print_message("pair 2 (text 1 changed) %.6f -> %.6f; pair 0 %.7f -> "
	    "%.7f\n", s0[2], s[2], s0[0], s[0]);
	assert_true(fabsf(s[2] - s0[2]) > 1e-4f); /* pair 2 holds text 1 */
	assert_true(fabsf(s[0] - s0[0]) < 1e-6f); /* (other experts' GEMM
	                                           * sizes change rounding) */
	vlm_run_free(r);
	vlm_model_release(&m);
}

/* BERT's proportions over many tokens: 15% chosen, 80/10/10. */
static void
test_mlm_mask(void **state)
{
	enum { N = 4000, T = 20 };
	int32_t *ids = malloc(N * T * sizeof(int32_t));
	int32_t *mk = malloc(N * T * sizeof(int32_t));
	int32_t *tg = malloc(N * T * sizeof(int32_t));
	struct vlm_rng rng;
	long chosen = 0, cand = 0, masked = 0, kept = 0, other = 0;

	(void)state;
	vlm_rng_seed(&rng, 1);
	for (int b = 0; b < N; b++) { /* SOT 998, words, EOT 999, pad 0 */
		int len = 3 + b % (T - 2);
		for (int t = 0; t < T; t++)
			ids[b * T + t] = t == 0 ? 998 : t < len - 1 ?
			    1 + (int)vlm_rng_below(&rng, 900) : t == len - 1 ?
			    999 : 0;
		cand += len - 2;
	}
	vlm_rng_seed(&rng, 2);
	vlm_mlm_mask(mk, tg, ids, N, T, &rng);
	for (int b = 0; b < N; b++) {
		int len = 3 + b % (T - 2);
		for (int t = 0; t < T; t++) {
			int i = b * T + t;
			if (t == 0 || t >= len - 1) { /* special: untouched */
				assert_int_equal(tg[i], -1);
				assert_int_equal(mk[i], ids[i]);
				continue;
			}
			if (tg[i] < 0) {
				assert_int_equal(mk[i], ids[i]);
				continue;
			}
			assert_int_equal(tg[i], ids[i]);
			chosen++;
			if (mk[i] == 997)
				masked++;
			else if (mk[i] == ids[i])
				kept++;
			else
				other++;
			assert_true(mk[i] >= 0 && mk[i] <= 997);
		}
	}
	print_message("chosen %.4f; mask %.3f random %.3f kept %.3f\n",
	    (double)chosen / cand, (double)masked / chosen,
	    (double)other / chosen, (double)kept / chosen);
	assert_true(fabs((double)chosen / cand - 0.15) < 0.01);
	assert_true(fabs((double)masked / chosen - 0.8) < 0.03);
	assert_true(fabs((double)other / chosen - 0.1) < 0.03);
	assert_true(fabs((double)kept / chosen - 0.1) < 0.03);
	free(ids);
	free(mk);
	free(tg);
}

/* Negatives follow softmax of the similarities, never the positive. */
static void
test_itm_negatives(void **state)
{
	/* image 0: texts 1, 2 at logits 1 and 0 -> P(text 1) = e/(e+1) */
	const float logits[9] = { 5, 1, 0,  0, 9, 0,  3, 3, 7 };
	struct vlm_rng rng;
	int32_t nt[3], ni[3];
	int n = 20000, t1 = 0, i2 = 0;

	(void)state;
	vlm_rng_seed(&rng, 3);
	for (int k = 0; k < n; k++) {
		vlm_itm_negatives(nt, ni, logits, 3, &rng);
		for (int i = 0; i < 3; i++)
			assert_true(nt[i] != i && ni[i] != i);
		t1 += nt[0] == 1;
		i2 += ni[0] == 2; /* text 0: images 1, 2 at 0 and 3 */
	}
	print_message("P(text 1 | image 0) %.4f, P(image 2 | text 0) %.4f\n",
	    (double)t1 / n, (double)i2 / n);
	assert_true(fabs((double)t1 / n - exp(1) / (exp(1) + 1)) < 0.01);
	assert_true(fabs((double)i2 / n - exp(3) / (exp(3) + 1)) < 0.01);
}

/* The same seed gives the same step, bit for bit. */
static void
test_fusion_deterministic(void **state)
{
	struct vlm_model m;
	struct vlm_loss a, b;
	float img[B * 3 * 16 * 16];
	int32_t ids[B * CTX];
	uint64_t h;
	struct vlm_run *r;

	(void)state;
	fusion_model(&m, 9, img, ids, 17, 0);
	assert_non_null(r = vlm_run_new_fusion(&m, B, 2 * B, 4 * B, 1));
	loss_at(r, &m, img, ids, &h, &a);
	loss_at(r, &m, img, ids, &h, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	vlm_run_free(r);
	vlm_model_release(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fusion_gradient),
		cmocka_unit_test(test_qa_gradient),
		cmocka_unit_test(test_fusion_padding_masked),
		cmocka_unit_test(test_mlm_mask),
		cmocka_unit_test(test_itm_negatives),
		cmocka_unit_test(test_fusion_deterministic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
