/*
 * moe-ep.c - expert parallelism: the E experts of every MoE layer split
 * over the P ranks of a communicator, rank q computing experts
 * q*E/P .. (q+1)*E/P - 1 for the tokens of every rank. Each rank routes
 * its own tokens (forward.c) into its dispatch buffer (E*C slots); the
 * rows of each expert go to its owner with an all-to-all (counts first,
 * then the rows), the owner runs the expert on them and the outputs come
 * back the same way to be combined; the backward sends the output
 * gradients to the owners and the input gradients back. An owner writes
 * its experts' weight gradients from every rank's tokens and the others
 * leave theirs 0, so the data-parallel sum of the gradients is the
 * whole gradient. Host memory only (the CPU backends).
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/run.h"
#include "train/comm.h"

/* One MoE layer's pool: what the owner received and computed. */
struct ep_layer {
	int32_t *rfill;            /* (P*El) rows of (source, own expert) */
	float *rin, *rfc, *ract;   /* (E*C, D) (E*C, F) x2 received rows */
};

struct vlm_ep {
	struct vlm_comm *c;
	int P, El, failed;
	struct ep_layer *lay;
	int nlay;
	int *scnt, *rcnt;          /* (P) rows to and from each rank */
	float *sbuf, *rout;        /* (E*Cmax, D) packed rows, any layer */
	float *dfc, *dact;         /* (E*Cmax, F) backward scratch */
};

static int
ep_fail(struct vlm_run *r)
{
	r->ep->failed = 1;
	return -1;
}

/* Rows packed by expert (its fill of slots) <-> dispatch slots. */
static void
pack(float *dst, const float *slots, const int32_t *fill, int E, int C,
    int W, int unpack)
{
	for (int e = 0; e < E; e++) {
		float *s = (float *)slots + (size_t)e * C * W;
		size_t n = (size_t)fill[e] * W * sizeof(float);
		if (unpack)
			memcpy(s, dst, n);
		else
			memcpy(dst, s, n);
		dst += (size_t)fill[e] * W;
	}
}

/* The rows this layer's pool sends to and receives from each rank, from
 * its fills: ep->scnt and ep->rcnt are scratch shared by every layer, so
 * the backward sets them again for its layer. */
static void
row_counts(struct vlm_ep *ep, const struct moe_acts *ma,
    const struct ep_layer *L)
{
	int El = ep->El;

	for (int q = 0; q < ep->P; q++) {
		ep->scnt[q] = ep->rcnt[q] = 0;
		for (int j = 0; j < El; j++) {
			ep->scnt[q] += ma->hfill[q * El + j];
			ep->rcnt[q] += L->rfill[q * El + j];
		}
	}
}

/* The fills of every rank's rows for my experts, and row counts. */
static int
exchange_counts(struct vlm_run *r, const struct moe_acts *ma,
    struct ep_layer *L)
{
	struct vlm_ep *ep = r->ep;
	int El = ep->El, *one = ep->scnt;

	for (int q = 0; q < ep->P; q++)
		one[q] = El;
	if (ep->c->ops->alltoallv(ep->c, ma->hfill, one, L->rfill, one,
	    sizeof(int32_t)) < 0)
		return ep_fail(r);
	row_counts(ep, ma, L);
	return 0;
}

static void
act(const struct vlm_backend *be, const struct vlm_config *c, float *y,
    const float *dy, const float *x, int64_t n)
{
	if (dy && c->act == VLM_ACT_QUICKGELU)
		be->quickgelu_bwd(y, dy, x, n);
	else if (dy)
		be->gelu_bwd(y, dy, x, n);
	else if (c->act == VLM_ACT_QUICKGELU)
		be->quickgelu_fwd(y, x, n);
	else
		be->gelu_fwd(y, x, n);
}

/* The experts of one pool: ma->buf's rows to their owners and back into
 * ma->eout. */
void
vlm_ep_fwd(struct vlm_run *r, const struct vlm_model *m,
    struct moe_acts *ma, const struct vlm_block_off *o, int pool, int D,
    int F)
{
	struct vlm_ep *ep = r->ep;
	struct ep_layer *L = &ep->lay[ma->ep];
	const struct vlm_backend *be = r->be;
	int E = m->cfg.moe.experts, El = ep->El, C = ma->C;
	size_t at = 0;

	if (ep->failed || exchange_counts(r, ma, L) < 0)
		return;
	pack(ep->sbuf, ma->buf, ma->hfill, E, C, D, 0);
	if (ep->c->ops->alltoallv(ep->c, ep->sbuf, ep->scnt, L->rin,
	    ep->rcnt, D * sizeof(float)) < 0) {
		ep_fail(r);
		return;
	}
	for (int s = 0; s < ep->P; s++) /* rows of (source s, expert e) */
		for (int j = 0; j < El; j++) {
			int n = L->rfill[s * El + j], e = ep->c->rank * El + j;
			if (n)
				be->linear_fwd(L->rfc + at * F, L->rin + at * D,
				    m->w + o->efc_w[pool] + (size_t)e * F * D,
				    m->w + o->efc_b[pool] + (size_t)e * F, n,
				    D, F);
			if (n)
				act(be, &m->cfg, L->ract + at * F, NULL,
				    L->rfc + at * F, (int64_t)n * F);
			if (n)
				be->linear_fwd(ep->rout + at * D,
				    L->ract + at * F, m->w + o->eproj_w[pool] +
				    (size_t)e * D * F, m->w + o->eproj_b[pool] +
				    (size_t)e * D, n, F, D);
			at += n;
		}
	if (ep->c->ops->alltoallv(ep->c, ep->rout, ep->rcnt, ep->sbuf,
	    ep->scnt, D * sizeof(float)) < 0) {
		ep_fail(r);
		return;
	}
	pack(ep->sbuf, ma->eout, ma->hfill, E, C, D, 1);
}

/* Backward of vlm_ep_fwd: r->deout's rows to their owners, the owners'
 * weight gradients into g, the input gradients back into r->dbuf. */
void
vlm_ep_bwd(struct vlm_run *r, const struct vlm_model *m,
    struct moe_acts *ma, const struct vlm_block_off *o, int pool, float *g,
    int D, int F)
{
	struct vlm_ep *ep = r->ep;
	struct ep_layer *L = &ep->lay[ma->ep];
	const struct vlm_backend *be = r->be;
	int E = m->cfg.moe.experts, El = ep->El, C = ma->C;
	size_t at = 0;

	if (ep->failed)
		return;
	row_counts(ep, ma, L); /* this layer's, not the last forward's */
	pack(ep->sbuf, r->deout, ma->hfill, E, C, D, 0);
	if (ep->c->ops->alltoallv(ep->c, ep->sbuf, ep->scnt, ep->rout,
	    ep->rcnt, D * sizeof(float)) < 0) {
		ep_fail(r);
		return;
	}
	memset(ep->dact, 0, (size_t)E * ma->Cmax * F * sizeof(float));
	memset(ep->dfc, 0, (size_t)E * ma->Cmax * F * sizeof(float));
	memset(ep->sbuf, 0, (size_t)E * ma->Cmax * D * sizeof(float));
	for (int s = 0; s < ep->P; s++)
		for (int j = 0; j < El; j++) {
			int n = L->rfill[s * El + j], e = ep->c->rank * El + j;
			size_t x = at;
			at += n;
			if (!n)
				continue;
			be->linear_bwd(ep->dact + x * F, vlm_run_grad(r, m, g,
			    o->eproj_w[pool], (size_t)e * D * F),
			    vlm_run_grad(r, m, g, o->eproj_b[pool],
			    (size_t)e * D), ep->rout + x * D, L->ract + x * F,
			    m->w + o->eproj_w[pool] + (size_t)e * D * F, n, F,
			    D);
			act(be, &m->cfg, ep->dfc + x * F, ep->dact + x * F,
			    L->rfc + x * F, (int64_t)n * F);
			be->linear_bwd(ep->sbuf + x * D, vlm_run_grad(r, m, g,
			    o->efc_w[pool], (size_t)e * F * D),
			    vlm_run_grad(r, m, g, o->efc_b[pool],
			    (size_t)e * F), ep->dfc + x * F, L->rin + x * D,
			    m->w + o->efc_w[pool] + (size_t)e * F * D, n, D,
			    F);
		}
	if (ep->c->ops->alltoallv(ep->c, ep->sbuf, ep->rcnt, ep->rout,
	    ep->scnt, D * sizeof(float)) < 0) {
		ep_fail(r);
		return;
	}
	pack(ep->rout, r->dbuf, ma->hfill, E, C, D, 1);
}

int
vlm_ep_check(const struct vlm_run *r)
{
	if (r->ep && r->ep->failed)
		return vlm_error("expert parallel exchange: %s", vlm_errmsg());
	return 0;
}

/* Each MoE pool of the run numbered, its buffers sized by its slots. */
static int
ep_plan(struct vlm_run *r, const struct vlm_model *m, int alloc)
{
	struct vlm_ep *ep = r->ep;
	int n = 0, E = m->cfg.moe.experts;
	size_t most = 0;

	for (int i = 0; i < r->nst; i++) {
		struct stack *st = &r->st[i];
		for (int l = 0; st->R && l < st->L; l++)
			for (int p = 0; st->blocks[l].moe && p < st->pools;
			    p++, n++) {
				struct moe_acts *ma = &st->moe[l * 2 + p];
				size_t k = (size_t)E * ma->Cmax;
				struct ep_layer *L = &ep->lay[n];
				if (k > most)
					most = k;
				if (!alloc)
					continue;
				ma->ep = n;
				L->rfill = calloc(E, sizeof(int32_t));
				L->rin = calloc(k * st->D, sizeof(float));
				L->rfc = calloc(k * st->F, sizeof(float));
				L->ract = calloc(k * st->F, sizeof(float));
				if (!L->rfill || !L->rin || !L->rfc || !L->ract)
					return vlm_error("out of memory");
			}
	}
	ep->nlay = n;
	if (alloc) {
		int D = 0, F = 0;
		for (int i = 0; i < r->nst; i++) {
			D = r->st[i].D > D ? r->st[i].D : D;
			F = r->st[i].F > F ? r->st[i].F : F;
		}
		ep->sbuf = calloc(most * D, sizeof(float));
		ep->rout = calloc(most * D, sizeof(float));
		ep->dfc = calloc(most * F, sizeof(float));
		ep->dact = calloc(most * F, sizeof(float));
		ep->scnt = calloc(2 * ep->P, sizeof(int));
		if (!ep->sbuf || !ep->rout || !ep->dfc || !ep->dact ||
		    !ep->scnt)
			return vlm_error("out of memory");
		ep->rcnt = ep->scnt + ep->P;
	}
	return 0;
}

void
vlm_ep_free(struct vlm_run *r)
{
	struct vlm_ep *ep = r->ep;

	if (!ep)
		return;
	for (int i = 0; ep->lay && i < ep->nlay; i++) {
		free(ep->lay[i].rfill);
		free(ep->lay[i].rin);
		free(ep->lay[i].rfc);
		free(ep->lay[i].ract);
	}
	free(ep->lay);
	free(ep->sbuf);
	free(ep->rout);
	free(ep->dfc);
	free(ep->dact);
	free(ep->scnt);
	free(ep);
	r->ep = NULL;
}

int
vlm_run_expert_parallel(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_comm *c)
{
	int E = m->cfg.moe.experts;

	if (strcmp(r->be->name, "cpu") != 0 && strcmp(r->be->name, "ref") != 0)
		return vlm_error("expert parallel runs on the CPU backends, "
		    "not '%s'", r->be->name);
	if (E == 0 || E % c->size != 0)
		return vlm_error("expert parallel over %d ranks needs experts "
		    "in a multiple of it (the model has %d)", c->size, E);
	if (!r->train)
		return vlm_error("expert parallel is for training runs");
	vlm_ep_free(r);
	if (!(r->ep = calloc(1, sizeof(*r->ep))))
		return vlm_error("out of memory");
	r->ep->c = c, r->ep->P = c->size, r->ep->El = E / c->size;
	ep_plan(r, m, 0);
	if (!(r->ep->lay = calloc(r->ep->nlay + 1, sizeof(*r->ep->lay))) ||
	    ep_plan(r, m, 1) < 0) {
		vlm_ep_free(r);
		return vlm_error("out of memory");
	}
	return 0;
}
