/*
 * moe-group.c - MoE routing over the group one process would route. A
 * global batch split over P ranks (data parallel, rank q holding
 * examples q*B/P .. (q+1)*B/P - 1) has, in one process, one routing
 * group per stack and pool: for each segment of the stack (images, then
 * texts in a one-tower model) the tokens of every example in order, that
 * is rank 0's tokens of the segment, then rank 1's, ... Here every rank
 * rebuilds that group: the router outputs (z, p, g) of its tokens are
 * all-gathered, the noise is drawn for the whole group from the run's
 * generator (the same stream as one process, indexed by group position;
 * every rank draws it), and the backend's routing kernel makes the
 * group's decisions (top-K, capacity from the group's token count, batch
 * priority order). Each rank keeps its own tokens' choices, places them
 * in its own dispatch buffer (slots counted per rank: an expert's rows
 * do not depend on where they sit), and computes the aux losses over the
 * group; in the backward it adds the group aux gradient of its own
 * tokens to their router gradient. Every rank computes the same aux
 * loss, so its weight in the backward is 1.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/run.h"
#include "train/comm.h"

/* Where one stack pool's tokens sit in the group (each forward). */
struct grp_map {
	int Sg, Smax;   /* the group's tokens, the most a rank holds */
	int32_t *pos;   /* (Smax) group position of each of my tokens */
	int32_t *from;  /* (P*Smax) gathered row of each group position */
	uint8_t *hmod, *mod; /* (P*Smax) group modality: host, backend */
};

/* One MoE layer's pool: the group's router outputs and decisions. */
struct grp_layer {
	struct grp_map *map;
	float *z, *p, *g, *eps, *dz, *val, *w; /* backend (Sg,E) x5 (Sg,K) x2 */
	int32_t *idx, *slot, *order, *fill;    /* (Sg,K) x2 (Sg) (E) */
	uint8_t *keep;                         /* (Sg,K) */
	int C;                                 /* the group's capacity */
};

struct vlm_grp {
	struct vlm_comm *c;
	int P, failed, nlay;
	int *counts;              /* (4P) every rank's tokens per pool, seg */
	struct grp_map map[3][2]; /* [stack][pool] */
	struct grp_layer *lay;
	float *send, *recv;       /* host (Smax,3E) (P*Smax,3E) */
	float *hz;                /* host (P*Smax, 3E): z, p, g or noise */
	int32_t *hidx, *hfill;    /* host (P*Smax,K) (E) */
	uint8_t *hkeep;
	float *hw, *hval;
	struct {                  /* vlm_grp_records' host copies */
		int32_t *idx, *fill;
		uint8_t *keep;
		float *w, *z, *p;
	} rec;
};

static int
grp_fail(struct vlm_run *r)
{
	r->grp->failed = 1;
	return -1;
}

/* Tokens of segment s in pool p of this rank's stack. */
static int
seg_tokens(const struct stack *st, int s, int p)
{
	const struct seg *sg = &st->seg[s];
	int n = 0;

	if ((st->pools == 2 ? sg->mod : 0) != p)
		return 0;
	for (int b = 0; b < sg->B; b++)
		n += sg->len ? sg->len[b] : sg->T;
	return n;
}

/* Every rank's token count per segment, then the group's order. */
void
vlm_grp_map(struct vlm_run *r, struct stack *st)
{
	struct vlm_grp *gr = r->grp;
	int P = gr->P, me = gr->c->rank, n[4] = { 0 }, *all = gr->counts;

	if (gr->failed)
		return;
	for (int p = 0; p < st->pools; p++)
		for (int s = 0; s < st->nseg; s++)
			n[p * 2 + s] = seg_tokens(st, s, p);
	if (gr->c->ops->allgather(gr->c, n, all, sizeof(n)) < 0) {
		grp_fail(r);
		return;
	}
	for (int p = 0; p < st->pools; p++) {
		struct grp_map *mp = &gr->map[st - r->st][p];
		int gp = 0;
		for (int s = 0; s < st->nseg; s++)
			for (int q = 0; q < P; q++) {
				int at = 0, k = all[q * 4 + p * 2 + s];
				for (int u = 0; u < s; u++)
					at += all[q * 4 + p * 2 + u];
				for (int i = 0; i < k; i++, gp++) {
					mp->from[gp] = q * mp->Smax + at + i;
					mp->hmod[gp] = (uint8_t)st->seg[s].mod;
					if (q == me)
						mp->pos[at + i] = gp;
				}
			}
		mp->Sg = gp;
		r->be->upload(mp->mod, mp->hmod, gp);
	}
}

/* The group's noise: Sg*E draws in group order, mine into ma->eps. */
static const float *
grp_noise(struct vlm_run *r, const struct vlm_config *c, struct moe_acts *ma,
    struct grp_layer *L)
{
	struct vlm_grp *gr = r->grp;
	int E = c->moe.experts, Sg = L->map->Sg;
	double sd = c->moe.noise / E;

	if (!r->train || sd <= 0)
		return NULL;
	for (int64_t i = 0; i < (int64_t)Sg * E; i++)
		gr->hz[i] = (float)(sd * vlm_rng_normal(&r->rng));
	for (int i = 0; i < ma->S; i++)
		memcpy(ma->heps + (size_t)i * E, gr->hz + (size_t)L->map->pos[i] *
		    E, E * sizeof(float));
	r->be->upload(L->eps, gr->hz, (size_t)Sg * E * sizeof(float));
	r->be->upload(ma->eps, ma->heps, (size_t)ma->S * E * sizeof(float));
	return ma->eps;
}

/* z, p, g of every rank's tokens into the layer's group arrays. */
static int
grp_gather(struct vlm_run *r, struct moe_acts *ma, struct grp_layer *L,
    int E)
{
	struct vlm_grp *gr = r->grp;
	const struct vlm_backend *be = r->be;
	float *src[3] = { ma->z, ma->p, ma->g }, *dst[3] = { L->z, L->p, L->g };
	size_t W = 3 * (size_t)E, Smax = L->map->Smax;

	for (int k = 0; k < 3; k++) { /* (S, E) each into (S, 3E) */
		be->download(gr->hz, src[k], (size_t)ma->S * E * sizeof(float));
		for (int i = 0; i < ma->S; i++)
			memcpy(gr->send + i * W + k * E, gr->hz + (size_t)i * E,
			    E * sizeof(float));
	}
	if (gr->c->ops->allgather(gr->c, gr->send, gr->recv, Smax * W *
	    sizeof(float)) < 0)
		return grp_fail(r);
	for (int k = 0; k < 3; k++) {
		for (int gp = 0; gp < L->map->Sg; gp++)
			memcpy(gr->hz + (size_t)gp * E, gr->recv +
			    L->map->from[gp] * W + k * E, E * sizeof(float));
		be->upload(dst[k], gr->hz, (size_t)L->map->Sg * E *
		    sizeof(float));
	}
	return 0;
}

/* The group's choices of my tokens, with slots in my own buffer. */
static void
grp_mine(struct vlm_run *r, struct moe_acts *ma, struct grp_layer *L,
    int E, int K)
{
	struct vlm_grp *gr = r->grp;
	const struct vlm_backend *be = r->be;
	size_t SK = (size_t)ma->S * K, GK = (size_t)L->map->Sg * K;
	int32_t *slot = gr->hidx + GK; /* after the group's choices */

	be->download(gr->hidx, L->idx, GK * sizeof(int32_t));
	be->download(gr->hkeep, L->keep, GK);
	be->download(gr->hw, L->w, GK * sizeof(float));
	be->download(gr->hval, L->val, GK * sizeof(float));
	for (int i = 0; i < ma->S; i++) { /* mine first, in place */
		size_t g = (size_t)L->map->pos[i] * K, s = (size_t)i * K;
		memmove(gr->hidx + s, gr->hidx + g, K * sizeof(int32_t));
		memmove(gr->hkeep + s, gr->hkeep + g, K);
		memmove(gr->hw + s, gr->hw + g, K * sizeof(float));
		memmove(gr->hval + s, gr->hval + g, K * sizeof(float));
	}
	memset(gr->hfill, 0, E * sizeof(int32_t));
	for (int j = 0; j < K; j++) /* as the kernel places: by choice */
		for (int i = 0; i < ma->S; i++) {
			size_t sj = (size_t)i * K + j;
			slot[sj] = gr->hkeep[sj] ? gr->hfill[gr->hidx[sj]]++ :
			    -1;
		}
	be->upload(ma->idx, gr->hidx, SK * sizeof(int32_t));
	be->upload(ma->keep, gr->hkeep, SK);
	be->upload(ma->w, gr->hw, SK * sizeof(float));
	be->upload(ma->val, gr->hval, SK * sizeof(float));
	be->upload(ma->slot, slot, SK * sizeof(int32_t));
	be->upload(ma->fill, gr->hfill, E * sizeof(int32_t));
}

void
vlm_grp_route(struct vlm_run *r, const struct vlm_model *m,
    struct moe_acts *ma, const float *router_w, int D)
{
	const struct vlm_config *c = &m->cfg;
	struct vlm_grp *gr = r->grp;
	struct grp_layer *L = &gr->lay[ma->grp];
	int E = c->moe.experts, K = c->moe.top_k, Sg = L->map->Sg, C;
	float cf = r->train ? c->moe.cf_train : c->moe.cf_eval;

	if (gr->failed) /* keep going: vlm_grp_check reports it */
		return;
	r->be->router_fwd(ma->z, ma->p, ma->g, ma->xs, router_w,
	    grp_noise(r, c, ma, L), ma->S, D, E);
	if (grp_gather(r, ma, L, E) < 0)
		return;
	/* one process: capacity of the group, up to its planned slots */
	C = cf <= 0 ? Sg : vlm_moe_capacity(Sg, E, K, cf,
	    c->moe.min_capacity);
	L->C = C = C > Sg ? Sg : C;
	r->be->moe_route_fwd(L->idx, L->val, L->keep, L->slot, L->w, L->fill,
	    L->order, L->g, Sg, E, K, C, c->moe.bpr,
	    c->moe.gate_norm == VLM_GATE_TOPK);
	grp_mine(r, ma, L, E, K);
}

const struct moe_acts *
vlm_grp_view(const struct vlm_run *r, const struct moe_acts *ma,
    struct moe_acts *v)
{
	const struct grp_layer *L = &r->grp->lay[ma->grp];

	*v = *ma;
	v->S = L->map->Sg;
	v->z = L->z, v->p = L->p, v->g = L->g, v->eps = L->eps;
	v->idx = L->idx, v->mod = L->map->mod, v->hmod = L->map->hmod;
	return v;
}

void
vlm_grp_records(const struct vlm_run *r, const struct moe_acts *ma,
    struct vlm_route_view *v)
{
	const struct vlm_grp *gr = r->grp;
	const struct grp_layer *L = &gr->lay[ma->grp];
	const struct vlm_backend *be = r->be;
	size_t GK = (size_t)L->map->Sg * r->K, GE = (size_t)L->map->Sg * r->E;

	be->download(gr->rec.idx, L->idx, GK * sizeof(int32_t));
	be->download(gr->rec.keep, L->keep, GK);
	be->download(gr->rec.w, L->w, GK * sizeof(float));
	be->download(gr->rec.z, L->z, GE * sizeof(float));
	be->download(gr->rec.p, L->p, GE * sizeof(float));
	be->download(gr->rec.fill, L->fill, r->E * sizeof(int32_t));
	v->S = L->map->Sg, v->C = L->C, v->rows = NULL;
	v->mod = L->map->hmod, v->fill = gr->rec.fill;
	v->idx = gr->rec.idx, v->keep = gr->rec.keep, v->w = gr->rec.w;
	v->z = gr->rec.z, v->p = gr->rec.p;
}

float *
vlm_grp_dz_in(struct vlm_run *r, const struct moe_acts *ma, const float *dz)
{
	struct vlm_grp *gr = r->grp;
	struct grp_layer *L = &gr->lay[ma->grp];
	size_t E = r->E;

	r->be->download(gr->send, dz, ma->S * E * sizeof(float));
	memset(gr->hz, 0, L->map->Sg * E * sizeof(float));
	for (int i = 0; i < ma->S; i++)
		memcpy(gr->hz + L->map->pos[i] * E, gr->send + i * E,
		    E * sizeof(float));
	r->be->upload(L->dz, gr->hz, L->map->Sg * E * sizeof(float));
	return L->dz;
}

void
vlm_grp_dz_out(struct vlm_run *r, const struct moe_acts *ma, float *dz)
{
	struct vlm_grp *gr = r->grp;
	struct grp_layer *L = &gr->lay[ma->grp];
	size_t E = r->E;

	r->be->download(gr->hz, L->dz, L->map->Sg * E * sizeof(float));
	for (int i = 0; i < ma->S; i++)
		memcpy(gr->send + i * E, gr->hz + L->map->pos[i] * E,
		    E * sizeof(float));
	r->be->upload(dz, gr->send, ma->S * E * sizeof(float));
}

int
vlm_grp_check(const struct vlm_run *r)
{
	if (r->grp && r->grp->failed)
		return vlm_error("routing group exchange: %s", vlm_errmsg());
	return 0;
}

static void
layer_free(const struct vlm_backend *be, struct grp_layer *L)
{
	void *p[] = { L->z, L->p, L->g, L->eps, L->dz, L->val, L->w, L->idx,
		L->slot, L->order, L->fill, L->keep };

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		if (p[i])
			be->free(p[i]);
}

void
vlm_grp_free(struct vlm_run *r)
{
	struct vlm_grp *gr = r->grp;

	if (!gr)
		return;
	for (int i = 0; gr->lay && i < gr->nlay; i++)
		layer_free(r->be, &gr->lay[i]);
	for (int i = 0; i < 3; i++)
		for (int p = 0; p < 2; p++) {
			free(gr->map[i][p].pos);
			free(gr->map[i][p].from);
			free(gr->map[i][p].hmod);
			if (gr->map[i][p].mod)
				r->be->free(gr->map[i][p].mod);
		}
	free(gr->lay);
	free(gr->send);
	free(gr->recv);
	free(gr->hz);
	free(gr->hidx);
	free(gr->hfill);
	free(gr->hkeep);
	free(gr->hw);
	free(gr->hval);
	free(gr->counts);
	free(gr->rec.idx);
	free(gr->rec.fill);
	free(gr->rec.keep);
	free(gr->rec.w);
	free(gr->rec.z);
	free(gr->rec.p);
	free(gr);
	r->grp = NULL;
}

/* A stack pool's map, for P ranks of at most Smax tokens each. */
static int
map_alloc(const struct vlm_backend *be, struct grp_map *mp, int Smax, int P)
{
	size_t G = (size_t)P * Smax;

	mp->Smax = Smax;
	mp->pos = calloc(Smax ? Smax : 1, sizeof(int32_t));
	mp->from = calloc(G ? G : 1, sizeof(int32_t));
	mp->hmod = calloc(G ? G : 1, 1);
	mp->mod = be->alloc(G ? G : 1);
	return mp->pos && mp->from && mp->hmod && mp->mod ? 0 : -1;
}

static int
layer_alloc(const struct vlm_backend *be, struct grp_layer *L, size_t G,
    int E, int K)
{
	size_t GE = G * E * sizeof(float), GK = G * K;

	L->z = be->alloc(GE), L->p = be->alloc(GE), L->g = be->alloc(GE);
	L->eps = be->alloc(GE), L->dz = be->alloc(GE);
	L->val = be->alloc(GK * sizeof(float));
	L->w = be->alloc(GK * sizeof(float));
	L->idx = be->alloc(GK * sizeof(int32_t));
	L->slot = be->alloc(GK * sizeof(int32_t));
	L->order = be->alloc(G * sizeof(int32_t));
	L->fill = be->alloc(E * sizeof(int32_t));
	L->keep = be->alloc(GK);
	return L->z && L->p && L->g && L->eps && L->dz && L->val && L->w &&
	    L->idx && L->slot && L->order && L->fill && L->keep ? 0 : -1;
}

/* Maps and layers of every MoE pool; n counts them (alloc 0: count). */
static int
grp_plan(struct vlm_run *r, int alloc, size_t *most)
{
	struct vlm_grp *gr = r->grp;
	int n = 0;

	for (int i = 0; i < r->nst; i++) {
		struct stack *st = &r->st[i];
		for (int p = 0; p < st->pools; p++) {
			if ((size_t)st->S_max[p] > *most)
				*most = st->S_max[p];
			if (alloc && map_alloc(r->be, &gr->map[i][p],
			    st->S_max[p], gr->P) < 0)
				return -1;
		}
		for (int l = 0; st->R && l < st->L; l++)
			for (int p = 0; st->blocks[l].moe && p < st->pools;
			    p++, n++) {
				if (!alloc)
					continue;
				st->moe[l * 2 + p].grp = n;
				gr->lay[n].map = &gr->map[i][p];
				if (layer_alloc(r->be, &gr->lay[n], (size_t)gr->P *
				    st->S_max[p], r->E, r->K) < 0)
					return -1;
			}
	}
	gr->nlay = n;
	return 0;
}

int
vlm_run_route_group(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_comm *c)
{
	struct vlm_grp *gr;
	size_t most = 0, G, W = 3 * (size_t)m->cfg.moe.experts;
	int K = m->cfg.moe.top_k, E = m->cfg.moe.experts;

	if (c->size != r->gsize)
		return vlm_error("routing group of %d ranks for a run planned "
		    "for %d", c->size, r->gsize);
	vlm_grp_free(r);
	if (E == 0 || c->size == 1)
		return 0; /* no MoE layer, or one rank: its own group */
	if (!(gr = r->grp = calloc(1, sizeof(*gr))))
		return vlm_error("out of memory");
	gr->c = c, gr->P = c->size;
	grp_plan(r, 0, &most);
	G = (size_t)gr->P * most;
	gr->lay = calloc(gr->nlay + 1, sizeof(*gr->lay));
	gr->send = calloc(most * W + 1, sizeof(float));
	gr->recv = calloc(G * W + 1, sizeof(float));
	gr->hz = calloc(G * W + 1, sizeof(float));
	gr->hidx = calloc(2 * G * K + 1, sizeof(int32_t));
	gr->hfill = calloc(E, sizeof(int32_t));
	gr->hkeep = calloc(G * K + 1, 1);
	gr->hw = calloc(G * K + 1, sizeof(float));
	gr->hval = calloc(G * K + 1, sizeof(float));
	gr->counts = calloc(4 * (size_t)gr->P, sizeof(int));
	gr->rec.idx = calloc(G * K + 1, sizeof(int32_t));
	gr->rec.fill = calloc(E, sizeof(int32_t));
	gr->rec.keep = calloc(G * K + 1, 1);
	gr->rec.w = calloc(G * K + 1, sizeof(float));
	gr->rec.z = calloc(G * E + 1, sizeof(float));
	gr->rec.p = calloc(G * E + 1, sizeof(float));
	if (!gr->lay || !gr->send || !gr->recv || !gr->hz || !gr->hidx ||
	    !gr->hfill || !gr->hkeep || !gr->hw || !gr->hval || !gr->counts ||
	    !gr->rec.idx || !gr->rec.fill || !gr->rec.keep || !gr->rec.w ||
	    !gr->rec.z || !gr->rec.p ||
	    grp_plan(r, 1, &most) < 0) {
		vlm_grp_free(r);
		return vlm_error("out of memory for the routing group");
	}
	return 0;
}
