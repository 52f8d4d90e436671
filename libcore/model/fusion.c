/*
 * fusion.c - VL-MoE's fusion part (Shen et al. 2023, after VLMo): after
 * the modality-specific blocks, fusion.layers blocks run each pair's
 * [image tokens; text tokens] with full attention (text padding masked);
 * their MoE blocks route both modalities through a third pool, the
 * vision-language experts. The fusion blocks are one more stack of the
 * run (forward.c, backward.c); this file fills its rows from the towers'
 * outputs, runs the heads and their losses, and sends the gradient back:
 *   ITM: fusion.ln_post of the fused image class token, a linear to 2
 *        (0 no match, 1 match), cross-entropy;
 *   MLM: fusion.ln_post of the fused text rows at masked positions, the
 *        tied token embedding plus fusion.mlm_head.bias, cross-entropy;
 *   QA:  (fusion.answers > 0) fusion.ln_post of the fused class token,
 *        a linear to the answer classes, cross-entropy.
 * Also BERT masking, ALBEF hard negatives and one training step's mix of
 * ITC, ITM and MLM (ALGORITHMS.md, section on fusion).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/run.h"

struct vlm_fusion_run {
	int Bf, nm, cap;        /* pairs room, masked rows, room for them */
	int n_itm, n_qa;        /* pairs with an ITM label, a QA answer */
	int A;                  /* QA classes, 0: no head */
	float w_itm, w_mlm;     /* the heads' loss weights */
	/* the backend's memory */
	int32_t *crow, *mrow;   /* (Bf) class rows, (cap) masked rows */
	float *cls, *cln, *cmean, *crstd, *itm; /* (Bf,D) x2 (Bf) x2 (Bf,2) */
	float *dcls, *dcln;     /* (Bf,D) */
	float *qa;              /* (Bf,A) QA logits */
	float *hqa;             /* (Bf,A) host: logits, then d logits */
	int32_t *hans;          /* (Bf) the QA head's argmax */
	float *mh, *mln, *mmean, *mrstd, *mlog; /* (cap,D) x2 (cap) x2 (cap,V) */
	float *dmh, *dmln;      /* (cap,D) */
	/* host */
	int32_t *hcrow, *hmrow, *htgt, *himg, *htxt; /* (Bf) (cap) x2 (Bf) x2 */
	float *hitm, *hscore;   /* (Bf,2) logits, then d logits; (Bf) */
	float *hmlog;           /* (cap,V) logits, then d logits */
	int32_t *ids, *tgt;     /* training: (2B,T) texts, masked; (B,T) */
	int32_t *pimg, *ptxt, *mlm; /* (Bf) (Bf) (Bf,T) */
	int8_t *label;          /* (Bf) */
};

static void
dfree(const struct vlm_backend *be, void *p)
{
	if (p)
		be->free(p);
}

/* The masked-row buffers, for rows (none held: grown as needed). */
static void
free_masked(const struct vlm_backend *be, struct vlm_fusion_run *z)
{
	float *d[] = { z->mh, z->mln, z->mmean, z->mrstd, z->mlog, z->dmh,
		z->dmln };

	for (size_t i = 0; i < sizeof(d) / sizeof(*d); i++)
		dfree(be, d[i]);
	dfree(be, z->mrow);
	free(z->hmrow);
	free(z->htgt);
	free(z->hmlog);
	z->mh = z->mln = z->mmean = z->mrstd = z->mlog = z->dmh = NULL;
	z->dmln = NULL, z->mrow = NULL;
	z->hmrow = z->htgt = NULL, z->hmlog = NULL;
	z->cap = 0;
}

void
vlm_fusion_free(struct vlm_run *r)
{
	struct vlm_fusion_run *z = r->fz;
	const struct vlm_backend *be = r->be;

	if (!z)
		return;
	free_masked(be, z);
	dfree(be, z->crow);
	dfree(be, z->cls);
	dfree(be, z->cln);
	dfree(be, z->cmean);
	dfree(be, z->crstd);
	dfree(be, z->itm);
	dfree(be, z->dcls);
	dfree(be, z->dcln);
	dfree(be, z->qa);
	free(z->hqa);
	free(z->hans);
	free(z->hcrow);
	free(z->himg);
	free(z->htxt);
	free(z->hitm);
	free(z->hscore);
	free(z->ids);
	free(z->tgt);
	free(z->pimg);
	free(z->ptxt);
	free(z->mlm);
	free(z->label);
	free(z);
	r->fz = NULL;
}

static void *
dalloc(const struct vlm_backend *be, size_t n, size_t size, int *bad)
{
	void *p = be->alloc(n ? n * size : 1);

	*bad |= !p;
	return p;
}

static void *
halloc(size_t n, size_t size, int *bad)
{
	void *p = calloc(n ? n : 1, size);

	*bad |= !p;
	return p;
}

/* The heads' state of run r, made on first use. */
static struct vlm_fusion_run *
fusion_state(struct vlm_run *r, const struct vlm_model *m)
{
	const struct vlm_backend *be = r->be;
	struct vlm_fusion_run *z;
	int bad = 0, Bf, D = m->cfg.text.width, T = m->cfg.context;
	int A = m->cfg.fusion.answers;

	if (r->fz)
		return r->fz;
	if (!r->fus) {
		vlm_error("the run has no room for fused pairs");
		return NULL;
	}
	Bf = r->fus->seg[0].B;
	if (!(z = r->fz = calloc(1, sizeof(*z)))) {
		vlm_error("out of memory");
		return NULL;
	}
	z->Bf = Bf, z->w_itm = z->w_mlm = 1, z->A = A;
	z->crow = dalloc(be, Bf, sizeof(int32_t), &bad);
	z->cls = dalloc(be, (size_t)Bf * D, sizeof(float), &bad);
	z->cln = dalloc(be, (size_t)Bf * D, sizeof(float), &bad);
	z->cmean = dalloc(be, Bf, sizeof(float), &bad);
	z->crstd = dalloc(be, Bf, sizeof(float), &bad);
	z->itm = dalloc(be, (size_t)Bf * 2, sizeof(float), &bad);
	z->dcls = dalloc(be, (size_t)Bf * D, sizeof(float), &bad);
	z->dcln = dalloc(be, (size_t)Bf * D, sizeof(float), &bad);
	z->qa = dalloc(be, (size_t)Bf * (A ? A : 1), sizeof(float), &bad);
	z->hqa = halloc((size_t)Bf * (A ? A : 1), sizeof(float), &bad);
	z->hans = halloc(Bf, sizeof(int32_t), &bad);
	z->hcrow = halloc(Bf, sizeof(int32_t), &bad);
	z->himg = halloc(Bf, sizeof(int32_t), &bad);
	z->htxt = halloc(Bf, sizeof(int32_t), &bad);
	z->hitm = halloc((size_t)Bf * 2, sizeof(float), &bad);
	z->hscore = halloc(Bf, sizeof(float), &bad);
	z->ids = halloc((size_t)r->tw[1].B * T, sizeof(int32_t), &bad);
	z->tgt = halloc((size_t)r->tw[0].B * T, sizeof(int32_t), &bad);
	z->pimg = halloc(Bf, sizeof(int32_t), &bad);
	z->ptxt = halloc(Bf, sizeof(int32_t), &bad);
	z->mlm = halloc((size_t)Bf * T, sizeof(int32_t), &bad);
	z->label = halloc(Bf, sizeof(int8_t), &bad);
	if (bad) {
		vlm_fusion_free(r);
		vlm_error("out of memory for the fusion heads");
		return NULL;
	}
	return z;
}

/* Room for n masked rows (the vocabulary-wide logits are the big part). */
static int
masked_room(struct vlm_run *r, struct vlm_fusion_run *z, int n, int D,
    int V)
{
	const struct vlm_backend *be = r->be;
	int bad = 0, cap = n > 2 * z->cap ? n : 2 * z->cap;

	if (n <= z->cap)
		return 0;
	free_masked(be, z);
	z->mrow = dalloc(be, cap, sizeof(int32_t), &bad);
	z->mh = dalloc(be, (size_t)cap * D, sizeof(float), &bad);
	z->mln = dalloc(be, (size_t)cap * D, sizeof(float), &bad);
	z->mmean = dalloc(be, cap, sizeof(float), &bad);
	z->mrstd = dalloc(be, cap, sizeof(float), &bad);
	z->mlog = dalloc(be, (size_t)cap * V, sizeof(float), &bad);
	z->dmh = dalloc(be, (size_t)cap * D, sizeof(float), &bad);
	z->dmln = dalloc(be, (size_t)cap * D, sizeof(float), &bad);
	z->hmrow = halloc(cap, sizeof(int32_t), &bad);
	z->htgt = halloc(cap, sizeof(int32_t), &bad);
	z->hmlog = halloc((size_t)cap * V, sizeof(float), &bad);
	if (bad) {
		free_masked(be, z);
		return vlm_error("out of memory for %d masked tokens' "
		    "logits", n);
	}
	z->cap = cap;
	return 0;
}

/*
 * Cross-entropy of each row of logits x (N,C) against its class y[i]
 * (< 0: not counted): their mean into *loss, the fraction whose argmax
 * is right into *acc; x becomes w * dloss/dx (0 in rows not counted).
 */
static void
xent_rows(float *x, const int32_t *y, int N, int C, float w, float *loss,
    float *acc)
{
	double sum = 0;
	int n = 0, right = 0;

	for (int i = 0; i < N; i++)
		n += y[i] >= 0;
	for (int i = 0; i < N; i++) {
		float *xi = x + (size_t)i * C, mx = xi[0];
		double z = 0;
		int arg = 0;
		for (int c = 1; c < C; c++)
			if (xi[c] > mx)
				mx = xi[c], arg = c;
		for (int c = 0; c < C; c++)
			z += exp((double)xi[c] - mx);
		if (y[i] < 0) {
			memset(xi, 0, C * sizeof(float));
			continue;
		}
		sum += mx + log(z) - xi[y[i]];
		right += arg == y[i];
		for (int c = 0; c < C; c++)
			xi[c] = (float)(w / n * exp((double)xi[c] - mx) / z);
		xi[y[i]] -= w / n;
	}
	*loss = n ? (float)(sum / n) : 0;
	*acc = n ? (float)right / n : 0;
}

/* Pair j's rows into the fusion stack's x[0]: img[j] (split, D) and
 * txt[j] (context, D), the backend's memory or (host) the caller's; its
 * length, the image tokens and tlen[j] text tokens (up to its EOT). */
static void
fill_pairs(struct vlm_run *r, int n, const float *const *img,
    const float *const *txt, const int32_t *tlen, int host)
{
	const struct vlm_backend *be = r->be;
	struct stack *st = r->fus;
	struct seg *s = &st->seg[0];
	size_t D = st->D, T = s->T, Ti = s->split, Tt = T - Ti;
	void (*put)(void *, const void *, size_t) = host ? be->upload :
	    be->copy;

	s->B = n;
	st->R = n * (int)T;
	st->att_n = (int64_t)n * st->H * T * T;
	for (int j = 0; j < n; j++) {
		float *x0 = st->x + j * T * D;
		put(x0, img[j], Ti * D * sizeof(float));
		put(x0 + Ti * D, txt[j], Tt * D * sizeof(float));
		s->len[j] = (int)Ti + tlen[j];
	}
	be->upload(s->dlen, s->len, n * sizeof(int32_t));
}

/* The aux losses of the fusion blocks' MoE layers. */
static float
fusion_aux(const struct vlm_run *r)
{
	const struct stack *st = r->fus;
	float sum = 0;

	for (int l = 0; l < st->L; l++)
		if (st->blocks[l].moe)
			sum += st->moe[l * 2].aux;
	return sum;
}

/* QA head on the fused class tokens (z->cln): each pair's answer, and
 * the host CE of those with one. */
static void
qa_fwd(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_fusion_run *z, const struct vlm_fusion_batch *fb,
    struct vlm_loss *out)
{
	const struct vlm_fusion_off *o = &m->fus;
	int n = fb->n, D = r->fus->D, A = m->cfg.fusion.answers;
	int32_t y[n];

	z->n_qa = 0;
	if (A <= 0)
		return;
	r->be->linear_fwd(z->qa, z->cln, m->w + o->qa_w, m->w + o->qa_b, n, D,
	    A);
	r->be->download(z->hqa, z->qa, (size_t)n * A * sizeof(float));
	for (int j = 0; j < n; j++) {
		const float *x = z->hqa + (size_t)j * A;
		int best = 0;
		for (int a = 1; a < A; a++)
			best = x[a] > x[best] ? a : best;
		z->hans[j] = best;
		y[j] = fb->answer && fb->answer[j] < A ? fb->answer[j] : -1;
		z->n_qa += y[j] >= 0;
	}
	xent_rows(z->hqa, y, n, A, 1, &out->qa, &out->qa_acc);
}

/* ITM head on each pair's fused class token: logits, then host CE. */
static void
itm_fwd(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_fusion_run *z, const struct vlm_fusion_batch *fb,
    struct vlm_loss *out)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_fusion_off *o = &m->fus;
	int n = fb->n, D = r->fus->D, T = r->fus->seg[0].T;
	int32_t y[n];

	for (int j = 0; j < n; j++) {
		z->hcrow[j] = j * T;
		y[j] = fb->itm ? fb->itm[j] : -1;
		z->n_itm += y[j] >= 0;
	}
	be->upload(z->crow, z->hcrow, n * sizeof(int32_t));
	be->rows_gather(z->cls, STACK_TOP(r->fus), z->crow, n, D);
	be->layernorm_fwd(z->cln, z->cmean, z->crstd, z->cls, m->w + o->ln_w,
	    m->w + o->ln_b, n, D);
	be->linear_fwd(z->itm, z->cln, m->w + o->itm_w, m->w + o->itm_b, n,
	    D, 2);
	be->download(z->hitm, z->itm, (size_t)n * 2 * sizeof(float));
	for (int j = 0; j < n; j++) /* P(match) */
		z->hscore[j] = (float)(1 / (1 + exp((double)z->hitm[2 * j] -
		    z->hitm[2 * j + 1])));
	xent_rows(z->hitm, y, n, 2, z->w_itm, &out->itm, &out->itm_acc);
	qa_fwd(r, m, z, fb, out);
}

/* MLM head on the fused text rows that have a target. */
static int
mlm_fwd(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_fusion_run *z, const struct vlm_fusion_batch *fb,
    struct vlm_loss *out)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_fusion_off *o = &m->fus;
	int n = fb->n, D = r->fus->D, T = r->fus->seg[0].T;
	int Ti = r->fus->seg[0].split, Tt = T - Ti, V = m->cfg.vocab, nm = 0;

	for (int64_t i = 0; fb->mlm && i < (int64_t)n * Tt; i++)
		if (fb->mlm[i] >= V)
			return vlm_error("MLM target %d out of the vocabulary "
			    "(%d)", fb->mlm[i], V);
		else
			nm += fb->mlm[i] >= 0;
	z->nm = nm;
	if (!nm || masked_room(r, z, nm, D, V) < 0)
		return nm ? -1 : 0;
	nm = 0;
	for (int j = 0; j < n; j++)
		for (int t = 0; t < Tt; t++)
			if (fb->mlm[j * Tt + t] >= 0) {
				z->hmrow[nm] = j * T + Ti + t;
				z->htgt[nm++] = fb->mlm[j * Tt + t];
			}
	be->upload(z->mrow, z->hmrow, nm * sizeof(int32_t));
	be->rows_gather(z->mh, STACK_TOP(r->fus), z->mrow, nm, D);
	be->layernorm_fwd(z->mln, z->mmean, z->mrstd, z->mh, m->w + o->ln_w,
	    m->w + o->ln_b, nm, D);
	be->linear_fwd(z->mlog, z->mln, m->w + m->txt.tok_emb, m->w + o->mlm_b,
	    nm, D, V);
	be->download(z->hmlog, z->mlog, (size_t)nm * V * sizeof(float));
	xent_rows(z->hmlog, z->htgt, nm, V, z->w_mlm, &out->mlm,
	    &out->mlm_acc);
	return 0;
}

int
vlm_fusion_forward(struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_fusion_batch *fb, struct vlm_loss *out)
{
	struct vlm_fusion_run *z = fusion_state(r, m);
	struct vlm_model view;
	struct vlm_loss L;
	int n = fb->n, D, Ti, Tt;

	if (!z)
		return -1;
	D = r->fus->D, Ti = r->fus->seg[0].split, Tt = m->cfg.context;
	if (n < 1 || n > z->Bf)
		return vlm_error("%d fused pairs: the run has room for 1 to "
		    "%d", n, z->Bf);
	for (int j = 0; j < n; j++)
		if (fb->img[j] < 0 || fb->img[j] >= r->tw[0].B ||
		    fb->txt[j] < 0 || fb->txt[j] >= r->tw[1].B)
			return vlm_error("fused pair %d: image %d or text %d "
			    "not in the batch", j, fb->img[j], fb->txt[j]);
	const float *pi[n], *pt[n];
	int32_t len[n];

	m = vlm_run_weights(r, m, &view);
	memset(&L, 0, sizeof(L));
	memcpy(z->himg, fb->img, n * sizeof(int32_t));
	memcpy(z->htxt, fb->txt, n * sizeof(int32_t));
	for (int j = 0; j < n; j++) { /* the towers' output rows */
		pi[j] = STACK_TOP(r->tw[0].st) + ((size_t)r->tw[0].row0 +
		    (size_t)fb->img[j] * Ti) * D;
		pt[j] = STACK_TOP(r->tw[1].st) + ((size_t)r->tw[1].row0 +
		    (size_t)fb->txt[j] * Tt) * D;
		len[j] = r->tw[1].hlen[fb->txt[j]];
	}
	fill_pairs(r, n, pi, pt, len, 0);
	vlm_stack_fwd(r, m, r->fus);
	z->n_itm = 0;
	itm_fwd(r, m, z, fb, &L);
	if (mlm_fwd(r, m, z, fb, &L) < 0)
		return -1;
	L.aux = fusion_aux(r);
	L.total = z->w_itm * L.itm + z->w_mlm * L.mlm + L.qa + L.aux;
	r->fus_n = n;
	if (out)
		*out = L;
	return r->be->sync();
}

int
vlm_fusion_score_rows(struct vlm_run *r, const struct vlm_model *m, int n,
    const float *const *img, const float *const *txt, const int32_t *len,
    float *p)
{
	struct vlm_fusion_run *z = fusion_state(r, m);
	struct vlm_fusion_batch fb = { n, NULL, NULL, NULL, NULL, NULL };
	struct vlm_model view;
	struct vlm_loss L;

	if (!z)
		return -1;
	if (n < 1 || n > z->Bf)
		return vlm_error("%d fused pairs: the run has room for 1 to "
		    "%d", n, z->Bf);
	for (int j = 0; j < n; j++)
		if (len[j] < 1 || len[j] > m->cfg.context)
			return vlm_error("fused pair %d: text length %d", j,
			    len[j]);
	if (r->wdev) /* as vlm_forward: the weights may have changed */
		r->be->upload(r->wdev, m->w, m->nfloats * sizeof(float));
	m = vlm_run_weights(r, m, &view);
	fill_pairs(r, n, img, txt, len, 1);
	vlm_stack_fwd(r, m, r->fus);
	z->n_itm = 0;
	itm_fwd(r, m, z, &fb, &L);
	memcpy(p, z->hscore, n * sizeof(float));
	r->fus_n = 0; /* nothing for a backward */
	return r->be->sync();
}

const int32_t *
vlm_fusion_answers(const struct vlm_run *r)
{
	return r->fz && r->fz->A ? r->fz->hans : NULL;
}

const float *
vlm_fusion_itm_scores(const struct vlm_run *r)
{
	return r->fz && r->fus_n ? r->fz->hscore : NULL;
}

int
vlm_fusion_bwd(struct vlm_run *r, const struct vlm_model *m, float *g)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_fusion_off *o = &m->fus;
	struct vlm_fusion_run *z = r->fz;
	struct stack *st = r->fus;
	size_t D = st->D, T = st->seg[0].T, Ti = st->seg[0].split;
	size_t Tt = T - Ti;
	int n = r->fus_n, V = m->cfg.vocab;
	float *dx0, *di, *dt;

	for (int i = 0; i < r->nst; i++)
		if (r->st[i].dtop)
			be->memset(r->st[i].dtop, 0, (size_t)r->st[i].R *
			    r->st[i].D * sizeof(float));
	be->memset(r->dnext, 0, (size_t)st->R * D * sizeof(float));
	be->memset(z->dcln, 0, (size_t)n * D * sizeof(float));
	if (z->n_itm) {
		be->upload(z->itm, z->hitm, (size_t)n * 2 * sizeof(float));
		be->linear_bwd(z->dcln, vlm_run_grad(r, m, g, o->itm_w, 0),
		    vlm_run_grad(r, m, g, o->itm_b, 0), z->itm, z->cln,
		    m->w + o->itm_w, n, D, 2);
	}
	if (z->n_qa) {
		int A = m->cfg.fusion.answers;
		be->upload(z->qa, z->hqa, (size_t)n * A * sizeof(float));
		be->linear_bwd(z->dcln, vlm_run_grad(r, m, g, o->qa_w, 0),
		    vlm_run_grad(r, m, g, o->qa_b, 0), z->qa, z->cln,
		    m->w + o->qa_w, n, D, A);
	}
	if (z->n_itm || z->n_qa) {
		be->memset(z->dcls, 0, (size_t)n * D * sizeof(float));
		be->layernorm_bwd(z->dcls, vlm_run_grad(r, m, g, o->ln_w, 0),
		    vlm_run_grad(r, m, g, o->ln_b, 0), z->dcln, z->cls,
		    m->w + o->ln_w, z->cmean, z->crstd, n, D);
		be->rows_scatter_add(r->dnext, z->dcls, z->crow, n, D);
	}
	if (z->nm) {
		be->upload(z->mlog, z->hmlog, (size_t)z->nm * V *
		    sizeof(float));
		be->memset(z->dmln, 0, (size_t)z->nm * D * sizeof(float));
		be->linear_bwd(z->dmln, vlm_run_grad(r, m, g, m->txt.tok_emb,
		    0), vlm_run_grad(r, m, g, o->mlm_b, 0), z->mlog, z->mln,
		    m->w + m->txt.tok_emb, z->nm, D, V);
		be->memset(z->dmh, 0, (size_t)z->nm * D * sizeof(float));
		be->layernorm_bwd(z->dmh, vlm_run_grad(r, m, g, o->ln_w, 0),
		    vlm_run_grad(r, m, g, o->ln_b, 0), z->dmln, z->mh,
		    m->w + o->ln_w, z->mmean, z->mrstd, z->nm, D);
		be->rows_scatter_add(r->dnext, z->dmh, z->mrow, z->nm, D);
	}
	dx0 = vlm_stack_bwd(r, m, st, g);
	di = r->tw[0].st->dtop + (size_t)r->tw[0].row0 * D;
	dt = r->tw[1].st->dtop + (size_t)r->tw[1].row0 * D;
	for (int j = 0; j < n; j++) {
		be->add(di + z->himg[j] * Ti * D, dx0 + j * T * D, Ti * D);
		be->add(dt + z->htxt[j] * Tt * D, dx0 + (j * T + Ti) * D,
		    Tt * D);
	}
	return 0;
}

/*
 * BERT's masking of texts ids (B,T) into masked, with the original id
 * at each chosen position of target (-1 elsewhere): each token strictly
 * between position 0 (start of text) and the EOT (the largest id) is
 * chosen with probability 0.15; a chosen one becomes the mask id (EOT -
 * 2, the id below the start-of-text marker) 80% of the time, a random
 * id below it 10%, and stays 10%.
 */
void
vlm_mlm_mask(int32_t *masked, int32_t *target, const int32_t *ids, int B,
    int T, struct vlm_rng *rng)
{
	int32_t eot[B];

	vlm_eot_index(eot, ids, B, T);
	memcpy(masked, ids, (size_t)B * T * sizeof(*ids));
	for (int b = 0; b < B; b++) {
		int32_t mask = ids[b * T + eot[b]] - 2;
		for (int t = 0; t < T; t++) {
			int i = b * T + t;
			double u;
			target[i] = -1;
			if (t == 0 || t >= eot[b] || mask < 1 ||
			    vlm_rng_uniform(rng) >= 0.15)
				continue;
			target[i] = ids[i];
			u = vlm_rng_uniform(rng);
			if (u < 0.8)
				masked[i] = mask;
			else if (u < 0.9)
				masked[i] = (int32_t)vlm_rng_below(rng, mask);
		}
	}
}

/* A draw from softmax(x) over the n entries but skip (ALBEF: weights
 * from the similarities, the positive left out). */
static int
draw_softmax(const float *x, int stride, int n, int skip,
    struct vlm_rng *rng)
{
	double mx = -INFINITY, z = 0, u;
	int last = skip ? 0 : 1;

	for (int i = 0; i < n; i++)
		if (i != skip && x[(size_t)i * stride] > mx)
			mx = x[(size_t)i * stride];
	for (int i = 0; i < n; i++)
		if (i != skip)
			z += exp(x[(size_t)i * stride] - mx);
	u = vlm_rng_uniform(rng) * z;
	for (int i = 0; i < n; i++) {
		if (i == skip)
			continue;
		last = i;
		u -= exp(x[(size_t)i * stride] - mx);
		if (u < 0)
			return i;
	}
	return last;
}

void
vlm_itm_negatives(int32_t *neg_txt, int32_t *neg_img, const float *logits,
    int B, struct vlm_rng *rng)
{
	for (int i = 0; i < B; i++) /* a text for each image: its row */
		neg_txt[i] = draw_softmax(logits + (size_t)i * B, 1, B, i, rng);
	for (int j = 0; j < B; j++) /* an image for each text: its column */
		neg_img[j] = draw_softmax(logits + j, B, B, j, rng);
}

/* The pairs of a training step: ITM positives, then a negative text per
 * image, a negative image per text; then MLM (image, masked text). */
static int
step_pairs(struct vlm_fusion_run *z, const struct vlm_fusion_weights *w,
    const float *logits, int B, int T, struct vlm_rng *rng)
{
	int n = 0;

	if (w->itm > 0) {
		vlm_itm_negatives(z->ptxt + B, z->pimg + 2 * B, logits, B,
		    rng);
		for (int i = 0; i < B; i++) {
			z->pimg[i] = z->ptxt[i] = i, z->label[i] = 1;
			z->pimg[B + i] = i, z->label[B + i] = 0;
			z->ptxt[2 * B + i] = i, z->label[2 * B + i] = 0;
		}
		n = 3 * B;
	}
	for (int i = 0; i < n * T; i++)
		z->mlm[i] = -1;
	for (int i = 0; w->mlm > 0 && i < B; i++, n++) {
		z->pimg[n] = i, z->ptxt[n] = B + i, z->label[n] = -1;
		memcpy(z->mlm + (size_t)n * T, z->tgt + (size_t)i * T,
		    T * sizeof(int32_t));
	}
	return n;
}

int
vlm_fusion_train_forward(struct vlm_run *r, const struct vlm_model *m,
    const float *images, const int32_t *tokens,
    const struct vlm_fusion_weights *w, struct vlm_loss *out)
{
	struct vlm_fusion_run *z = fusion_state(r, m);
	int B = r->tw[0].B, T = m->cfg.context, need, n;
	struct vlm_fusion_batch fb;
	struct vlm_loss L, F;

	if (!z)
		return -1;
	need = (w->itm > 0 ? 3 * B : 0) + (w->mlm > 0 ? B : 0);
	if (!r->train || r->tw[1].B != (w->mlm > 0 ? 2 * B : B) ||
	    need > z->Bf || (w->itm > 0 && B < 2))
		return vlm_error("a fusion training run of %d pairs needs %d "
		    "texts and room for %d fused pairs (and ITM 2 pairs)", B,
		    w->mlm > 0 ? 2 * B : B, need);
	memcpy(z->ids, tokens, (size_t)B * T * sizeof(int32_t));
	if (w->mlm > 0)
		vlm_mlm_mask(z->ids + (size_t)B * T, z->tgt, tokens, B, T,
		    &r->rng);
	z->w_itm = w->itm, z->w_mlm = w->mlm;
	if (vlm_forward(r, m, images, z->ids) < 0 ||
	    vlm_run_loss(r, m, &L) < 0)
		return -1;
	r->be->download(r->hlogits, r->logits, (size_t)B * B *
	    sizeof(float));
	memset(&F, 0, sizeof(F));
	n = step_pairs(z, w, r->hlogits, B, T, &r->rng);
	fb = (struct vlm_fusion_batch){ n, z->pimg, z->ptxt, z->label,
		z->mlm, NULL };
	if (n && vlm_fusion_forward(r, m, &fb, &F) < 0)
		return -1;
	r->itc_w = w->itc;
	L.itm = F.itm, L.itm_acc = F.itm_acc;
	L.mlm = F.mlm, L.mlm_acc = F.mlm_acc;
	L.aux += F.aux;
	L.total = w->itc * L.contrastive + F.total + (L.aux - F.aux);
	r->loss = L;
	if (out)
		*out = L;
	return 0;
}

int
vlm_fusion_qa_forward(struct vlm_run *r, const struct vlm_model *m,
    const float *images, const int32_t *tokens, const int32_t *answer,
    struct vlm_loss *out)
{
	struct vlm_fusion_run *z = fusion_state(r, m);
	int B = r->tw[0].B;
	struct vlm_fusion_batch fb;
	struct vlm_loss L, F;

	if (!z)
		return -1;
	if (m->cfg.fusion.answers <= 0 || r->tw[1].B != B || z->Bf < B)
		return vlm_error("question answering needs a QA head "
		    "(fusion.answers) and a run of as many images, questions "
		    "and fused pairs");
	for (int j = 0; j < B; j++) {
		if (answer[j] < 0 || answer[j] >= m->cfg.fusion.answers)
			return vlm_error("answer %d out of the %d classes",
			    answer[j], m->cfg.fusion.answers);
		z->pimg[j] = z->ptxt[j] = j;
	}
	z->w_itm = z->w_mlm = 0;
	if (vlm_forward(r, m, images, tokens) < 0 ||
	    vlm_run_loss(r, m, &L) < 0)
		return -1;
	fb = (struct vlm_fusion_batch){ B, z->pimg, z->ptxt, NULL, NULL,
		answer };
	if (vlm_fusion_forward(r, m, &fb, &F) < 0)
		return -1;
	r->itc_w = 0;
	L.qa = F.qa, L.qa_acc = F.qa_acc;
	L.aux += F.aux;
	L.total = L.qa + L.aux;
	r->loss = L;
	if (out)
		*out = L;
	return 0;
}

int
vlm_fusion_add_qa(struct vlm_model *m, int A, uint64_t seed)
{
	struct vlm_config c = m->cfg;
	struct vlm_model n;

	c.fusion.answers = A;
	if (vlm_model_init(&n, &c) < 0)
		return -1;
	vlm_model_randomize(&n, seed);
	for (int i = 0; i < n.nparams; i++) {
		const struct vlm_param *p = &n.params[i];
		const struct vlm_param *q = vlm_model_param(m, p->name);
		if (q && q->n == p->n && q->ndim == p->ndim &&
		    memcmp(q->shape, p->shape, sizeof(p->shape)) == 0)
			memcpy(n.w + p->off, m->w + q->off, p->n *
			    sizeof(float));
	}
	n.tokenizer = m->tokenizer;
	m->tokenizer = NULL;
	vlm_model_release(m);
	*m = n;
	return 0;
}
