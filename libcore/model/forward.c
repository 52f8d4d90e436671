/*
 * forward.c - the forward pass of CLIP / LIMoE / VL-MoE models on the CPU:
 * image and text embeddings, pre-LN transformer blocks with dense MLPs or
 * sparse MoE layers (ALGORITHMS.md sections 1-3), pooling, projections,
 * and the contrastive loss with the auxiliary router losses.
 * Activations live in one arena planned per batch shape (run.h).
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/run.h"

/* Two-pass arenas, the backend's and the host's: with base NULL only
 * count, then hand out slices. */
struct arena {
	char *base, *hbase;
	size_t off, hoff;
};

static void *
take(char *base, size_t *off, size_t n, size_t size)
{
	void *p = base ? base + *off : NULL;

	*off += (n * size + 63) & ~(size_t)63;
	return p;
}

#define TAKE(a, n, T) ((T *)take((a)->base, &(a)->off, (n), sizeof(T)))
#define HTAKE(a, n, T) ((T *)take((a)->hbase, &(a)->hoff, (n), sizeof(T)))

/* Slots per expert for at most S tokens under either capacity factor. */
static int
capacity_max(const struct vlm_config *c, int S)
{
	float cf = fmaxf(c->moe.cf_train, c->moe.cf_eval);
	int C;

	if (S == 0)
		return 0;
	if (c->moe.cf_train <= 0 || c->moe.cf_eval <= 0)
		return S; /* one of them never drops: room for every token */
	C = vlm_moe_capacity(S, c->moe.experts, c->moe.top_k, cf,
	    c->moe.min_capacity);
	return cf <= 0 || C > S ? S : C;
}

/* Slots per expert of this rank's buffer for at most S of its tokens
 * when they route in a group of P ranks' (moe-group.c): its tokens may
 * fill up to the group's capacity of one expert, and no more than S. */
static int
capacity_local(const struct vlm_config *c, int S, int P)
{
	int C;

	if (P <= 1)
		return capacity_max(c, S);
	C = capacity_max(c, (int)((int64_t)S * P));
	return C > S ? S : C;
}

/* Buffers of one MoE layer's pool for at most S tokens. */
static void
plan_moe(struct arena *a, struct moe_acts *ma, const struct vlm_config *c,
    int S, int D, int F, int32_t *rows[2], uint8_t *mod[2], int P)
{
	int E = c->moe.experts, K = c->moe.top_k;
	int C = capacity_local(c, S, P);

	ma->rows = rows[0], ma->mod = mod[0], ma->C = ma->Cmax = C;
	ma->hrows = rows[1], ma->hmod = mod[1];
	ma->hfill = HTAKE(a, E, int32_t);
	ma->heps = HTAKE(a, (size_t)S * E, float);
	ma->hidx = HTAKE(a, (size_t)S * K, int32_t);
	ma->hkeep = HTAKE(a, (size_t)S * K, uint8_t);
	ma->hw = HTAKE(a, (size_t)S * K, float);
	ma->hz = HTAKE(a, (size_t)S * E, float);
	ma->hp = HTAKE(a, (size_t)S * E, float);
	ma->xs = TAKE(a, (size_t)S * D, float);
	ma->z = TAKE(a, (size_t)S * E, float);
	ma->p = TAKE(a, (size_t)S * E, float);
	ma->g = TAKE(a, (size_t)S * E, float);
	ma->eps = TAKE(a, (size_t)S * E, float);
	ma->idx = TAKE(a, (size_t)S * K, int32_t);
	ma->slot = TAKE(a, (size_t)S * K, int32_t);
	ma->order = TAKE(a, S, int32_t);
	ma->fill = TAKE(a, E, int32_t);
	ma->val = TAKE(a, (size_t)S * K, float);
	ma->w = TAKE(a, (size_t)S * K, float);
	ma->keep = TAKE(a, (size_t)S * K, uint8_t);
	ma->buf = TAKE(a, (size_t)E * C * D, float);
	ma->efc = TAKE(a, (size_t)E * C * F, float);
	ma->eact = TAKE(a, (size_t)E * C * F, float);
	ma->eout = TAKE(a, (size_t)E * C * D, float);
	ma->ys = TAKE(a, (size_t)S * D, float);
}

static void
plan_stack(struct arena *a, struct stack *st, const struct vlm_model *m,
    int P)
{
	int R = st->R, D = st->D, F = st->F, nl = st->nl;
	int32_t *rows[2][2];  /* [pool][backend, host] */
	uint8_t *mod[2][2];

	st->att_n = 0;
	for (int i = 0; i < st->nseg; i++)
		st->att_n += (int64_t)st->seg[i].B * st->H * st->seg[i].T *
		    st->seg[i].T;
	st->x = TAKE(a, (size_t)(st->L + 1) * R * D, float);
	st->ln1 = TAKE(a, (size_t)nl * R * D, float);
	st->mean1 = TAKE(a, (size_t)nl * R, float);
	st->rstd1 = TAKE(a, (size_t)nl * R, float);
	st->qkv = TAKE(a, (size_t)nl * R * 3 * D, float);
	st->att = TAKE(a, (size_t)nl * st->att_n, float);
	st->atty = TAKE(a, (size_t)nl * R * D, float);
	st->mid = TAKE(a, (size_t)nl * R * D, float);
	st->ln2 = TAKE(a, (size_t)nl * R * D, float);
	st->mean2 = TAKE(a, (size_t)nl * R, float);
	st->rstd2 = TAKE(a, (size_t)nl * R, float);
	st->fc = TAKE(a, (size_t)nl * R * F, float);
	st->act = TAKE(a, (size_t)nl * R * F, float);
	st->moe = HTAKE(a, (size_t)st->L * 2, struct moe_acts);
	for (int p = 0; p < st->pools; p++) {
		rows[p][0] = TAKE(a, st->S_max[p], int32_t);
		mod[p][0] = TAKE(a, st->S_max[p], uint8_t);
		rows[p][1] = HTAKE(a, st->S_max[p], int32_t);
		mod[p][1] = HTAKE(a, st->S_max[p], uint8_t);
	}
	for (int l = 0; l < st->L; l++) {
		if (!st->blocks[l].moe)
			continue;
		for (int p = 0; p < st->pools; p++) {
			struct moe_acts tmp, *ma = st->moe ?
			    &st->moe[l * 2 + p] : &tmp;
			plan_moe(a, ma, &m->cfg, st->S_max[p], D, F, rows[p],
			    mod[p], P);
		}
	}
}

/* Embedding and head buffers of modality i (0 images, 1 texts). */
static void
plan_tower(struct arena *a, struct tower_acts *t, const struct vlm_model *m,
    int i)
{
	const struct vlm_config *c = &m->cfg;
	int D = i ? c->text.width : c->vision.width, E = c->embed_dim;
	int B = t->B, T = t->T, g = c->image_size / c->patch_size;
	size_t P = (size_t)B * g * g;

	if (i == 0) {
		t->img = TAKE(a, (size_t)B * 3 * c->image_size * c->image_size,
		    float);
		t->patches = TAKE(a, P * 3 * c->patch_size * c->patch_size,
		    float);
		t->emb = TAKE(a, P * D, float);
		t->xe = TAKE(a, (size_t)B * t->Te * D, float);
		t->mean0 = TAKE(a, (size_t)B * t->Te, float);
		t->rstd0 = TAKE(a, (size_t)B * t->Te, float);
		if (t->st0 != t->st)
			t->tl_act = TAKE(a, vlm_token_learner_act_floats(B,
			    t->Te, D, c->tl.hidden, T), float);
	} else {
		t->ids = TAKE(a, (size_t)B * T, int32_t);
		t->emb = TAKE(a, (size_t)B * T * D, float);
	}
	t->pos = TAKE(a, B, int32_t);
	t->len = TAKE(a, B, int32_t);
	t->hpos = HTAKE(a, B, int32_t);
	t->hlen = HTAKE(a, B, int32_t);
	t->lnf = TAKE(a, (size_t)B * T * D, float);
	t->meanf = TAKE(a, (size_t)B * T, float);
	t->rstdf = TAKE(a, (size_t)B * T, float);
	t->pooled = TAKE(a, (size_t)B * D, float);
	t->feat = TAKE(a, (size_t)B * E, float);
	if ((i ? c->text.pool : c->vision.pool) == VLM_POOL_MAP) {
		int H = i ? c->text.heads : c->vision.heads;
		t->mq = TAKE(a, D, float);
		t->mk = TAKE(a, (size_t)B * T * D, float);
		t->mv = TAKE(a, (size_t)B * T * D, float);
		t->matt = TAKE(a, (size_t)B * H * T, float);
		t->mpatt = TAKE(a, (size_t)B * D, float);
	}
	t->unit = TAKE(a, (size_t)B * E, float);
	t->norm = TAKE(a, B, float);
	t->hfeat = HTAKE(a, (size_t)B * E, float);
	t->hunit = HTAKE(a, (size_t)B * E, float);
}

/* Gradient scratch, sized for the widest stack and largest MoE layer. */
static void
plan_backward(struct arena *a, struct vlm_run *r, const struct vlm_config *c)
{
	size_t RD = 0, RF = 0, ECD = 0, ECF = 0, S = 0;
	int E = c->moe.experts, K = c->moe.top_k;

	for (int i = 0; i < NSTACKS(r); i++) {
		struct stack *st = &r->st[i];
		size_t rd = (size_t)st->R * st->D, rf = (size_t)st->R * st->F;
		RD = rd > RD ? rd : RD;
		RF = rf > RF ? rf : RF;
		for (int l = 0; l < st->L; l++)
			for (int p = 0; st->blocks[l].moe && p < st->pools;
			    p++) {
				size_t ec = (size_t)E * capacity_local(c,
				    st->S_max[p], r->gsize);
				ECD = ec * st->D > ECD ? ec * st->D : ECD;
				ECF = ec * st->F > ECF ? ec * st->F : ECF;
				S = (size_t)st->S_max[p] > S ? (size_t)st->S_max[p] : S;
			}
	}
	r->dx = TAKE(a, RD, float);
	r->dnext = TAKE(a, RD, float);
	r->dln = TAKE(a, RD, float);
	r->datty = TAKE(a, RD, float);
	r->dqkv = TAKE(a, 3 * RD, float);
	r->dfc = TAKE(a, RF, float);
	r->dact = TAKE(a, RF, float);
	r->dbuf = TAKE(a, ECD, float);    /* (E*C, D) */
	r->defc = TAKE(a, ECF, float);    /* (E*C, F) */
	r->deact = TAKE(a, ECF, float);
	r->deout = TAKE(a, ECD, float);
	r->dxs = TAKE(a, S * (size_t)(c->vision.width > c->text.width ?
	    c->vision.width : c->text.width), float);
	r->dys = TAKE(a, S * (size_t)(c->vision.width > c->text.width ?
	    c->vision.width : c->text.width), float);
	r->dz = TAKE(a, S * E, float);
	r->dw = TAKE(a, S * K, float);
	if (r->st[0].next)
		r->dcut = TAKE(a, RD, float);
	size_t att = 0;
	for (int i = 0; i < NSTACKS(r); i++)
		if ((size_t)r->st[i].att_n > att)
			att = r->st[i].att_n;
	r->datt = TAKE(a, att, float);
}

/* Blocks l0 .. l0+L-1 of a tower as a stack (no rows yet). */
static struct stack *
init_stack(struct vlm_run *r, const struct vlm_model *m, int tower, int l0,
    int L)
{
	const struct vlm_config *c = &m->cfg;
	const struct vlm_tower_config *tc = tower ? &c->text : &c->vision;
	const struct vlm_tower_off *to = tower ? &m->txt : &m->vis;
	struct stack *st = &r->st[r->nst++];
	int train = r->train;

	st->D = tc->width;
	st->F = tc->width * tc->mlp_ratio;
	st->H = tc->heads;
	st->l0 = l0;
	st->L = L;
	st->blocks = to->blocks + l0;
	st->nl = train ? st->L : 1;
	st->pools = c->moe.modality_experts ? 2 : 1;
	return st;
}

/* B sequences of T tokens of modality mod into stack st; the first
 * stack a modality enters takes its embeddings, the last its head. */
static void
add_seg(struct stack *st, struct tower_acts *t, int mod, int T, int causal)
{
	struct seg *s = &st->seg[st->nseg++];

	s->mod = mod, s->B = t->B, s->T = T, s->causal = causal;
	s->row0 = st->R;
	if (!t->st0) {
		t->st0 = st;
		t->row0e = st->R;
	}
	t->st = st;
	t->row0 = st->R;
	st->R += t->B * T;
	st->S_max[st->pools == 2 ? mod : 0] += t->B * T;
}

/* Floats of the widest stack's rows: room for any vlm_run_stream. */
static size_t
stream_max(const struct vlm_run *r)
{
	size_t n = 0;

	for (int i = 0; i < r->nst; i++)
		if ((size_t)r->st[i].R * r->st[i].D > n)
			n = (size_t)r->st[i].R * r->st[i].D;
	return n;
}

/* Lay out every buffer of the run; with a->base NULL only measure. */
static void
plan(struct arena *a, struct vlm_run *r, const struct vlm_model *m)
{
	for (int i = 0; i < 2; i++)
		if (r->tw[i].B)
			plan_tower(a, &r->tw[i], m, i);
	for (int i = 0; i < NSTACKS(r); i++) {
		plan_stack(a, &r->st[i], m, r->gsize);
		for (int s = 0; s < r->st[i].nseg; s++) /* images: all T */
			r->st[i].seg[s].len = r->st[i].seg[s].mod ?
			    r->tw[1].hlen : NULL;
	}
	if (r->fus) { /* fused pairs: image tokens and text up to EOT */
		struct seg *s = &r->fus->seg[0];
		s->len = HTAKE(a, s->B, int32_t);
		s->dlen = TAKE(a, s->B, int32_t);
	}
	for (int i = 0; r->fus && r->train && i < r->nst; i++)
		if (r->tw[0].st == &r->st[i] || r->tw[1].st == &r->st[i])
			r->st[i].dtop = TAKE(a, (size_t)r->st[i].R *
			    r->st[i].D, float);
	r->logits = TAKE(a, (size_t)r->tw[0].B * r->tw[1].B, float);
	r->lse2 = TAKE(a, 2 * (size_t)r->tw[0].B, float);
	r->hlogits = HTAKE(a, (size_t)r->tw[0].B * r->tw[1].B, float);
	r->hlse2 = HTAKE(a, 2 * (size_t)r->tw[0].B, float);
	r->hstream = HTAKE(a, stream_max(r), float);
	if (!r->train)
		return;
	r->dlogits = TAKE(a, (size_t)r->tw[0].B * r->tw[1].B, float);
	for (int i = 0; i < 2; i++) {
		int D = i ? m->cfg.text.width : m->cfg.vision.width;
		r->dfeat[i] = TAKE(a, (size_t)r->tw[i].B * m->cfg.embed_dim,
		    float);
		r->dunit[i] = TAKE(a, (size_t)r->tw[i].B * m->cfg.embed_dim,
		    float);
		r->dpooled[i] = TAKE(a, (size_t)r->tw[i].B * D, float);
	}
	size_t RD = 0;
	for (int i = 0; i < NSTACKS(r); i++)
		RD = (size_t)r->st[i].R * r->st[i].D > RD ?
		    (size_t)r->st[i].R * r->st[i].D : RD;
	r->dlnf = TAKE(a, RD, float);
	if (m->cfg.vision.pool == VLM_POOL_MAP ||
	    m->cfg.text.pool == VLM_POOL_MAP) {
		r->dmq = TAKE(a, RD, float);  /* only D of it is used */
		r->dmk = TAKE(a, RD, float);
		r->dmv = TAKE(a, RD, float);
		r->dmpatt = TAKE(a, RD, float);
	}
	plan_backward(a, r, &m->cfg);
}

const struct vlm_backend *
vlm_run_backend(const struct vlm_run *r)
{
	return r->be;
}

size_t
vlm_run_bytes(const struct vlm_run *r)
{
	return r->bytes;
}

/* The ops a run of model m needs (at most VLM_OP_COUNT) into ops. */
static int
run_ops(const struct vlm_run *r, const struct vlm_model *m, enum vlm_op *ops)
{
	const struct vlm_config *c = &m->cfg;
	float coef[8] = { c->aux.importance, c->aux.load, c->aux.switch_bal,
		c->aux.zloss, c->aux.local_img, c->aux.local_txt,
		c->aux.global_img, c->aux.global_txt };
	static const enum vlm_op aux[8] = { VLM_OP_aux_importance_fwd,
		VLM_OP_aux_load_fwd, VLM_OP_aux_switch_fwd,
		VLM_OP_aux_zloss_fwd,
		VLM_OP_aux_entropy_local_fwd, VLM_OP_aux_entropy_local_fwd,
		VLM_OP_aux_entropy_global_fwd, VLM_OP_aux_entropy_global_fwd };
	static const enum vlm_op pool[] = { [VLM_POOL_CLS] =
		VLM_OP_pool_token_fwd, [VLM_POOL_EOT] = VLM_OP_pool_token_fwd,
		[VLM_POOL_GAP] = VLM_OP_pool_mean_fwd,
		[VLM_POOL_MAP] = VLM_OP_pool_map_fwd };
	int n = 0, moe = 0, nf;

	for (int i = 0; i < NSTACKS(r); i++)
		for (int l = 0; l < r->st[i].L; l++)
			moe |= r->st[i].blocks[l].moe;
	ops[n++] = VLM_OP_gemm, ops[n++] = VLM_OP_linear_fwd;
	ops[n++] = VLM_OP_layernorm_fwd, ops[n++] = VLM_OP_attention_fwd;
	ops[n++] = VLM_OP_l2norm_fwd, ops[n++] = VLM_OP_add;
	ops[n++] = c->act == VLM_ACT_QUICKGELU ? VLM_OP_quickgelu_fwd :
	    VLM_OP_gelu_fwd;
	ops[n++] = VLM_OP_posembed_fwd;
	if (r->tw[0].B) {
		ops[n++] = VLM_OP_patchify_fwd;
		ops[n++] = VLM_OP_cls_prepend_fwd;
		ops[n++] = pool[c->vision.pool];
	}
	if (r->tw[1].B)
		ops[n++] = VLM_OP_embed_fwd, ops[n++] = pool[c->text.pool];
	if (r->tw[0].B && r->tw[1].B)
		ops[n++] = VLM_OP_clip_loss_fwd;
	if (r->st[0].next)
		ops[n++] = VLM_OP_token_learner_fwd;
	if (r->fus && !moe) /* the fusion heads gather their rows */
		ops[n++] = VLM_OP_rows_gather;
	if (moe) {
		ops[n++] = VLM_OP_router_fwd, ops[n++] = VLM_OP_moe_route_fwd;
		ops[n++] = VLM_OP_moe_dispatch_fwd;
		ops[n++] = VLM_OP_moe_combine_fwd;
		ops[n++] = VLM_OP_rows_gather;
		for (int i = 0; i < 8; i++)
			if (coef[i] != 0)
				ops[n++] = aux[i];
	}
	nf = n;
	for (int i = 0; r->train && i < nf; i++) /* each one's backward */
		if (ops[i] == VLM_OP_rows_gather)
			ops[n++] = VLM_OP_rows_scatter_add;
		else if (ops[i] != VLM_OP_gemm && ops[i] != VLM_OP_add)
			ops[n++] = ops[i] + 1; /* X_bwd follows X_fwd */
	if (moe || (r->fus && r->train)) /* the forward adds the experts'
		                                  * rows back too */
		ops[n++] = VLM_OP_rows_scatter_add;
	if (r->train) /* callers accumulate gradients (vlm_run_backend) */
		ops[n++] = VLM_OP_scale;
	return n;
}

/*
 * Every stack's token rows (images and texts of a one-tower model
 * together) fit VLM_RUN_MAX_ROWS, so row counts, capacities (up to 64x
 * the rows) and row offsets stay inside an int.
 */
static int
run_rows(const struct vlm_run *r)
{
	int64_t R = vlm_size_add(vlm_size_mul(r->tw[0].B, r->tw[0].Te),
	    vlm_size_mul(r->tw[1].B, r->tw[1].Te));
	int64_t RF = r->fus ? vlm_size_mul(r->fus->seg[0].B,
	    r->fus->seg[0].T) : 0;

	R = RF > R ? RF : R;

	if (R < 0 || R > VLM_RUN_MAX_ROWS)
		return vlm_error("a batch of %d images and %d texts is %lld "
		    "token rows (limit %d): use a smaller batch", r->tw[0].B,
		    r->tw[1].B, (long long)R, VLM_RUN_MAX_ROWS);
	return 0;
}

static struct vlm_run *run_new(const struct vlm_backend *be,
    const struct vlm_model *m, int B_img, int B_txt, int B_fused, int train,
    int P);

struct vlm_run *
vlm_run_new(const struct vlm_model *m, int B_img, int B_txt, int train)
{
	const struct vlm_backend *be = vlm_backend_default();

	return be ? vlm_run_new_on(be, m, B_img, B_txt, train) : NULL;
}

struct vlm_run *
vlm_run_new_on(const struct vlm_backend *be, const struct vlm_model *m,
    int B_img, int B_txt, int train)
{
	return run_new(be, m, B_img, B_txt, 0, train, 1);
}

struct vlm_run *
vlm_run_new_group(const struct vlm_backend *be, const struct vlm_model *m,
    int B_img, int B_txt, int train, int P)
{
	return run_new(be, m, B_img, B_txt, 0, train, P);
}

struct vlm_run *
vlm_run_new_fusion(const struct vlm_model *m, int B_img, int B_txt,
    int B_fused, int train)
{
	const struct vlm_backend *be = vlm_backend_default();

	return be ? vlm_run_new_fusion_on(be, m, B_img, B_txt, B_fused,
	    train) : NULL;
}

/* The fusion blocks as the stack after the towers': one segment of
 * B_fused sequences of [image tokens; text tokens], full attention. */
static int
init_fusion(struct vlm_run *r, const struct vlm_model *m, int Bf)
{
	const struct vlm_config *c = &m->cfg;
	struct stack *st = &r->st[r->nst];
	struct seg *s = &st->seg[0];

	if (Bf <= 0)
		return 0;
	if (c->fusion.layers <= 0 || !r->tw[0].B || !r->tw[1].B)
		return vlm_error("fused pairs need a fusion model "
		    "(fusion.layers > 0), images and texts");
	r->fus = st;
	st->D = c->text.width;
	st->F = c->text.width * c->text.mlp_ratio;
	st->H = c->text.heads;
	st->l0 = c->text.layers;
	st->L = c->fusion.layers;
	st->blocks = m->fus.blocks;
	st->nl = r->train ? st->L : 1;
	st->pools = 1;
	st->nseg = 1;
	s->mod = 2, s->B = Bf, s->T = r->tw[0].T + c->context;
	s->split = r->tw[0].T;
	st->R = Bf * s->T;
	st->S_max[0] = st->R;
	return 0;
}

struct vlm_run *
vlm_run_new_fusion_on(const struct vlm_backend *be,
    const struct vlm_model *m, int B_img, int B_txt, int B_fused, int train)
{
	return run_new(be, m, B_img, B_txt, B_fused, train, 1);
}

/* A run of B_img images, B_txt texts and B_fused fused pairs, its MoE
 * routing over the tokens of a group of P ranks. */
static struct vlm_run *
run_new(const struct vlm_backend *be, const struct vlm_model *m,
    int B_img, int B_txt, int B_fused, int train, int P)
{
	const struct vlm_config *c = &m->cfg;
	struct vlm_run *r = calloc(1, sizeof(*r));
	struct arena a = { NULL, NULL, 0, 0 };
	int cut = B_img && c->tl.after >= 0;
	enum vlm_op ops[2 * VLM_OP_COUNT];
	struct stack *st;

	if (!r) {
		vlm_error("out of memory");
		return NULL;
	}
	r->be = be;
	r->train = train;
	r->itc_w = 1;
	r->gsize = P > 1 ? P : 1;
	r->embed = c->embed_dim;
	r->E = c->moe.experts, r->K = c->moe.top_k;
	r->tw[0].B = B_img, r->tw[0].Te = vlm_config_image_tokens(c);
	r->tw[1].B = B_txt, r->tw[1].T = r->tw[1].Te = c->context;
	r->tw[0].T = cut ? c->tl.tokens : r->tw[0].Te;
	if (B_fused < 0 || B_fused > VLM_RUN_MAX_ROWS / (r->tw[0].T +
	    c->context)) {
		vlm_error("%d fused pairs are more than %d token rows",
		    B_fused, VLM_RUN_MAX_ROWS);
		free(r);
		return NULL;
	}
	if (run_rows(r) < 0) {
		free(r);
		return NULL;
	}
	st = init_stack(r, m, 0, 0, cut ? c->tl.after + 1 : m->vis.nblocks);
	if (cut)
		st->next = init_stack(r, m, 0, c->tl.after + 1,
		    m->vis.nblocks - c->tl.after - 1);
	if (c->family == VLM_TWO_TOWER)
		init_stack(r, m, 1, 0, m->txt.nblocks);
	for (int i = 0; i < r->nst; i++) {
		st = &r->st[i];
		if (B_img && i <= cut)
			add_seg(st, &r->tw[0], 0, i ? r->tw[0].T : r->tw[0].Te,
			    0);
		if (B_txt && (c->family == VLM_ONE_TOWER || i == r->nst - 1))
			add_seg(st, &r->tw[1], 1, c->context, 1);
	}
	if (init_fusion(r, m, B_fused) < 0 || run_rows(r) < 0 ||
	    vlm_backend_check(be, ops, run_ops(r, m, ops)) < 0) {
		free(r);
		return NULL;
	}
	plan(&a, r, m);
	r->arena = be->alloc(a.off);
	r->harena = calloc(1, a.hoff ? a.hoff : 1);
	if (!r->arena || !r->harena) {
		vlm_error("out of memory for %zu MB of activations "
		    "(backend '%s')", (a.off + a.hoff) >> 20, be->name);
		vlm_run_free(r);
		return NULL;
	}
	if (be->device && (!(r->wdev = be->alloc(m->nfloats * sizeof(float))) ||
	    (train && !(r->gdev = be->alloc(m->nfloats * sizeof(float)))))) {
		vlm_error("out of memory for the weights on backend '%s'",
		    be->name);
		vlm_run_free(r);
		return NULL;
	}
	r->bytes = a.off, r->hbytes = a.hoff;
	a.base = r->arena, a.hbase = r->harena, a.off = a.hoff = 0;
	plan(&a, r, m);
	vlm_rng_seed(&r->rng, 0);
	return r;
}

void
vlm_run_free(struct vlm_run *r)
{
	if (!r)
		return;
	if (r->arena)
		r->be->free(r->arena);
	if (r->wdev)
		r->be->free(r->wdev);
	if (r->gdev)
		r->be->free(r->gdev);
	if (r->bscratch)
		r->be->free(r->bscratch);
	free(r->harena);
	vlm_fusion_free(r);
	free(r->nograd);
	free(r->goff);
	if (r->tlg)
		r->be->free(r->tlg);
	free(r->foff);
	free(r->hfbuf);
	if (r->fbuf)
		r->be->free(r->fbuf);
	vlm_ep_free(r);
	vlm_grp_free(r);
	free(r);
}

/* Floats of scratch enough for every linear layer of the run with bf16
 * weights: rows up to the widest stack's, widths up to the widest. */
static size_t
bf16_scratch_floats(const struct vlm_run *r, const struct vlm_model *m)
{
	int rows = 0, w = 3 * m->cfg.patch_size * m->cfg.patch_size;

	for (int i = 0; i < NSTACKS(r); i++) {
		rows = r->st[i].R > rows ? r->st[i].R : rows;
		w = r->st[i].F > w ? r->st[i].F : w;
		w = r->st[i].D > w ? r->st[i].D : w;
	}
	return vlm_linear_bf16_scratch_floats(rows, w, w);
}

int
vlm_run_set_bf16(struct vlm_run *r, const struct vlm_model *m,
    const uint16_t *wb)
{
	if (r->train && wb)
		return vlm_error("bf16 weights are for inference: a training "
		    "run keeps fp32");
	if (wb && (!r->be->linear_fwd_bf16 || !r->be->bf16_from_f32))
		return vlm_error("backend '%s' has no op 'linear_fwd_bf16'",
		    r->be->name);
	if (wb && !r->bscratch &&
	    !(r->bscratch = r->be->alloc(bf16_scratch_floats(r, m) *
	    sizeof(float))))
		return vlm_error("out of memory for the bf16 scratch");
	r->wb = wb;
	return 0;
}

void
vlm_run_set_wpack(struct vlm_run *r, struct vlm_wpack *k)
{
	assert(!(r->train && k) && "packed weights in a training run");
	r->wk = k;
}

/*
 * y (N,OUT) = x (N,IN) w^T + b with the weight at offset off (OUT,IN) of
 * the parameters: its bf16 copy when the run has them
 * (vlm_run_set_bf16), else its packed fp32 copy when the run has them
 * (vlm_run_set_wpack), else the fp32 one.
 */
static void
linear(const struct vlm_run *r, const struct vlm_model *m, float *y,
    const float *x, int64_t off, const float *b, int N, int IN, int OUT)
{
	const float *wk;

	if (r->wb)
		r->be->linear_fwd_bf16(y, r->bscratch, x, r->wb + off, b, N,
		    IN, OUT);
	else if (r->wk && (wk = vlm_wpack_get(r->wk, r->be, m, off, IN, OUT)))
		r->be->linear_fwd_packed(y, x, wk, b, N, IN, OUT);
	else
		r->be->linear_fwd(y, x, m->w + off, b, N, IN, OUT);
}

/* y (N, OUT) = x (N, IN) @ w (IN, OUT): OpenCLIP's projections. */
static void
project(const struct vlm_backend *be, float *y, const float *x,
    const float *w, int N, int IN, int OUT)
{
	if (N)
		be->gemm(0, 0, N, OUT, IN, 1.0f, x, IN, w, OUT, 0.0f, y, OUT);
}

static void
act_fwd(const struct vlm_backend *be, const struct vlm_config *c, float *y,
    const float *x, int64_t n)
{
	if (c->act == VLM_ACT_QUICKGELU)
		be->quickgelu_fwd(y, x, n);
	else
		be->gelu_fwd(y, x, n);
}

/* The rows each pool routes (the tokens that count: text up to its
 * EOT), made on the host and uploaded; the layers share them. */
static void
routing_rows(const struct vlm_backend *be, struct stack *st,
    struct moe_acts *first[2])
{
	int n[2] = { 0, 0 };

	for (int i = 0; i < st->nseg; i++) {
		const struct seg *s = &st->seg[i];
		int p = st->pools == 2 ? s->mod : 0;
		for (int b = 0; b < s->B; b++)
			for (int t = 0; t < (s->len ? s->len[b] : s->T); t++) {
				first[p]->hrows[n[p]] = s->row0 + b * s->T + t;
				first[p]->hmod[n[p]++] = s->mod < 2 ? s->mod :
				    t >= s->split;
			}
	}
	for (int p = 0; p < st->pools; p++) {
		first[p]->S = n[p];
		be->upload(first[p]->rows, first[p]->hrows, n[p] *
		    sizeof(int32_t));
		be->upload(first[p]->mod, first[p]->hmod, n[p]);
	}
}

/* Noise eps ~ N(0, (noise/E)^2) for training, none for evaluation,
 * drawn here so that every backend routes alike. */
static const float *
router_noise(struct vlm_run *r, const struct vlm_config *c,
    struct moe_acts *ma)
{
	int E = c->moe.experts;
	double sd = c->moe.noise / E;

	if (!r->train || sd <= 0)
		return NULL;
	for (int64_t i = 0; i < (int64_t)ma->S * E; i++)
		ma->heps[i] = (float)(sd * vlm_rng_normal(&r->rng));
	r->be->upload(ma->eps, ma->heps, (size_t)ma->S * E * sizeof(float));
	return ma->eps;
}

enum { A_IMP, A_LOAD, A_SWITCH, A_Z, A_LOC_I, A_LOC_T, A_GLOB_I, A_GLOB_T,
	A_N };

/* Weight of each aux term for this group (0: off or not applicable). */
void
vlm_aux_coefs(const struct vlm_config *c, const struct moe_acts *ma,
    int train, float coef[A_N])
{
	const float w[A_N] = { c->aux.importance, c->aux.load,
		c->aux.switch_bal, c->aux.zloss, c->aux.local_img,
		c->aux.local_txt, c->aux.global_img, c->aux.global_txt };
	int has[2] = { 0, 0 }, n = 0;

	for (int s = 0; s < ma->S; s++)
		has[ma->hmod[s]] = 1;
	for (int i = 0; i < A_N; i++) {
		coef[i] = w[i];
		if ((i == A_LOAD && (!train || c->moe.noise <= 0)) ||
		    ((i == A_LOC_I || i == A_GLOB_I) && !has[0]) ||
		    ((i == A_LOC_T || i == A_GLOB_T) && !has[1]) || ma->S == 0)
			coef[i] = 0;
		n += coef[i] != 0;
	}
	for (int i = 0; c->aux.limoe && i < A_N; i++)
		coef[i] = coef[i] != 0 ? c->aux.w_limoe / n : 0;
}

static float
aux_fwd(const struct vlm_backend *be, const struct vlm_config *c,
    const struct moe_acts *ma, int train)
{
	int S = ma->S, E = c->moe.experts, K = c->moe.top_k;
	float coef[A_N], sigma = c->moe.noise / E, L = 0;

	vlm_aux_coefs(c, ma, train, coef);
	if (coef[A_IMP])
		L += coef[A_IMP] * be->aux_importance_fwd(ma->p, S, E);
	if (coef[A_LOAD])
		L += coef[A_LOAD] * be->aux_load_fwd(ma->z, ma->eps, sigma, S,
		    E, K);
	if (coef[A_SWITCH])
		L += coef[A_SWITCH] * be->aux_switch_fwd(ma->g, ma->idx, S, E,
		    K);
	if (coef[A_Z])
		L += coef[A_Z] * be->aux_zloss_fwd(ma->z, S, E);
	for (int m = 0; m < 2; m++) {
		float tau = vlm_aux_entropy_tau(m ? c->aux.s_text :
		    c->aux.s_image, E);
		if (coef[A_LOC_I + m])
			L += coef[A_LOC_I + m] * be->aux_entropy_local_fwd(
			    ma->z, ma->mod, m, S, E);
		if (coef[A_GLOB_I + m])
			L += coef[A_GLOB_I + m] * be->aux_entropy_global_fwd(
			    ma->z, ma->mod, m, tau, S, E);
	}
	return L;
}

/* One pool of one MoE layer: route ln2 rows, run experts, add to out. */
static void
moe_fwd(struct vlm_run *r, const struct vlm_model *m, struct moe_acts *ma,
    const struct vlm_block_off *o, int pool, const float *ln2, float *out,
    int D, int F)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	int S = ma->S, E = c->moe.experts, K = c->moe.top_k, C;
	const float *w = m->w;
	float cf = r->train ? c->moe.cf_train : c->moe.cf_eval;
	struct moe_acts gv;

	if (S == 0)
		return;
	C = cf <= 0 ? S : vlm_moe_capacity(S, E, K, cf, c->moe.min_capacity);
	ma->C = C = C > ma->Cmax || r->grp ? ma->Cmax : C;
	be->rows_gather(ma->xs, ln2, ma->rows, S, D);
	if (r->grp) { /* decided over every rank's tokens */
		vlm_grp_route(r, m, ma, w + o->router[pool], D);
	} else {
		be->router_fwd(ma->z, ma->p, ma->g, ma->xs,
		    w + o->router[pool], router_noise(r, c, ma), S, D, E);
		be->moe_route_fwd(ma->idx, ma->val, ma->keep, ma->slot, ma->w,
		    ma->fill, ma->order, ma->g, S, E, K, C, c->moe.bpr,
		    c->moe.gate_norm == VLM_GATE_TOPK);
	}
	be->download(ma->hfill, ma->fill, E * sizeof(int32_t));
	be->moe_dispatch_fwd(ma->buf, ma->xs, ma->idx, ma->slot, S, D, E, K,
	    C);
	if (r->ep) /* the experts on their ranks */
		vlm_ep_fwd(r, m, ma, o, pool, D, F);
	for (int e = 0; !r->ep && e < E; e++) {
		int n = ma->hfill[e];
		size_t bo = (size_t)e * C;
		if (!n)
			continue;
		linear(r, m, ma->efc + bo * F, ma->buf + bo * D,
		    o->efc_w[pool] + (int64_t)e * F * D,
		    w + o->efc_b[pool] + (size_t)e * F, n, D, F);
		act_fwd(be, c, ma->eact + bo * F, ma->efc + bo * F,
		    (int64_t)n * F);
		linear(r, m, ma->eout + bo * D, ma->eact + bo * F,
		    o->eproj_w[pool] + (int64_t)e * D * F,
		    w + o->eproj_b[pool] + (size_t)e * D, n, F, D);
	}
	be->moe_combine_fwd(ma->ys, ma->eout, ma->idx, ma->slot, ma->w, S, D,
	    E, K, C);
	be->rows_scatter_add(out, ma->ys, ma->rows, S, D);
	ma->aux = aux_fwd(be, c, r->grp ? vlm_grp_view(r, ma, &gv) : ma,
	    r->train);
}

/* Attention of every segment of layer l (rows of each run apart). */
static void
attention_fwd(const struct vlm_backend *be, struct stack *st, int l)
{
	size_t R = st->R, D = st->D;
	float *att = LAYER(st, att, l, st->att_n);
	const float *qkv = LAYER(st, qkv, l, R * 3 * D);
	float *y = LAYER(st, atty, l, R * D);

	for (int i = 0; i < st->nseg; i++) {
		const struct seg *s = &st->seg[i];
		be->attention_fwd(y + s->row0 * D, att, qkv + s->row0 * 3 * D,
		    s->dlen, s->causal, s->B, s->T, D, st->H);
		att += (size_t)s->B * st->H * s->T * s->T;
	}
}

/* Block l: x[l+1] = mid + mlp(ln2(mid)), mid = x[l] + attn(ln1(x[l])). */
static void
block_fwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st,
    int l)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_block_off *o = &st->blocks[l];
	const float *w = m->w;
	size_t R = st->R, D = st->D, F = st->F;
	float *x = st->x + l * R * D, *out = st->x + (l + 1) * R * D;
	float *ln1 = LAYER(st, ln1, l, R * D), *qkv = LAYER(st, qkv, l, R * 3 * D);
	float *mid = LAYER(st, mid, l, R * D), *ln2 = LAYER(st, ln2, l, R * D);
	float *fc = LAYER(st, fc, l, R * F), *act = LAYER(st, act, l, R * F);

	be->layernorm_fwd(ln1, LAYER(st, mean1, l, R), LAYER(st, rstd1, l, R),
	    x, w + o->ln1_w, w + o->ln1_b, R, D);
	linear(r, m, qkv, ln1, o->qkv_w, w + o->qkv_b, R, D, 3 * D);
	attention_fwd(be, st, l);
	linear(r, m, mid, LAYER(st, atty, l, R * D), o->out_w, w + o->out_b, R,
	    D, D);
	be->add(mid, x, R * D);
	be->layernorm_fwd(ln2, LAYER(st, mean2, l, R), LAYER(st, rstd2, l, R),
	    mid, w + o->ln2_w, w + o->ln2_b, R, D);
	if (!o->moe) {
		linear(r, m, fc, ln2, o->fc_w, w + o->fc_b, R, D, F);
		act_fwd(be, &m->cfg, act, fc, R * F);
		linear(r, m, out, act, o->proj_w, w + o->proj_b, R, F, D);
		be->add(out, mid, R * D);
		return;
	}
	be->copy(out, mid, R * D * sizeof(float));
	for (int p = 0; p < st->pools; p++)
		moe_fwd(r, m, &st->moe[l * 2 + p], o, p, ln2, out, D, F);
}

void
vlm_stack_fwd(struct vlm_run *r, const struct vlm_model *m, struct stack *st)
{
	struct moe_acts *first[2] = { NULL, NULL };

	for (int l = 0; l < st->L; l++)
		for (int p = 0; st->blocks[l].moe && p < st->pools; p++) {
			if (!first[p])
				first[p] = &st->moe[l * 2 + p];
			st->moe[l * 2 + p].S = -1;
		}
	if (first[0])
		routing_rows(r->be, st, first);
	if (first[0] && r->grp) /* where the group's tokens are */
		vlm_grp_map(r, st);
	for (int l = 0; l < st->L; l++) {
		for (int p = 0; st->blocks[l].moe && p < st->pools; p++)
			st->moe[l * 2 + p].S = first[p]->S;
		block_fwd(r, m, st, l);
	}
}

/* Images (B,3,S,S) into the first rows of their stack's x[0]. */
static void
image_embed(struct vlm_run *r, const struct vlm_model *m, const float *img)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[0];
	const struct vlm_tower_off *o = &m->vis;
	int D = c->vision.width, p = c->patch_size, g = c->image_size / p;
	int P = g * g, B = t->B;
	float *x0 = t->st0->x + (size_t)t->row0e * D;

	be->upload(t->img, img, (size_t)B * 3 * c->image_size *
	    c->image_size * sizeof(float));
	be->patchify_fwd(t->patches, t->img, B, 3, c->image_size,
	    c->image_size, p);
	linear(r, m, t->emb, t->patches, o->patch_w, NULL, B * P, 3 * p * p,
	    D);
	if (o->cls >= 0)
		be->cls_prepend_fwd(t->xe, t->emb, m->w + o->cls, B, P, D);
	else
		be->copy(t->xe, t->emb, (size_t)B * P * D * sizeof(float));
	be->posembed_fwd(t->xe, t->xe, m->w + o->pos, B, t->Te, D);
	be->layernorm_fwd(x0, t->mean0, t->rstd0, t->xe, m->w + o->ln_pre_w,
	    m->w + o->ln_pre_b, B * t->Te, D);
	for (int b = 0; b < B; b++) {
		t->hlen[b] = t->T;
		t->hpos[b] = 0;
	}
	be->upload(t->len, t->hlen, B * sizeof(int32_t));
	be->upload(t->pos, t->hpos, B * sizeof(int32_t));
}

/* Token ids (B, context) into their stack's x[0]; EOT = largest id. */
static int
text_embed(struct vlm_run *r, const struct vlm_model *m, const int32_t *ids)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[1];
	int D = c->text.width, B = t->B, T = t->T;
	float *x0 = t->st0->x + (size_t)t->row0e * D;

	for (int64_t i = 0; i < (int64_t)B * T; i++)
		if (ids[i] < 0 || ids[i] >= c->vocab)
			return vlm_error("token id %d out of the vocabulary "
			    "(%d)", ids[i], c->vocab);
	be->upload(t->ids, ids, (size_t)B * T * sizeof(*ids));
	vlm_eot_index(t->hpos, ids, B, T);
	for (int b = 0; b < B; b++)
		t->hlen[b] = t->hpos[b] + 1;
	be->upload(t->len, t->hlen, B * sizeof(int32_t));
	be->upload(t->pos, t->hpos, B * sizeof(int32_t));
	be->embed_fwd(t->emb, t->ids, m->w + m->txt.tok_emb, B * T, c->vocab,
	    D);
	be->posembed_fwd(x0, t->emb, m->w + m->txt.pos, B, T, D);
	return 0;
}

/* Attention pooling: the query attends over lnf, then out-projection. */
static void
map_fwd(const struct vlm_run *r, const struct vlm_model *m,
    struct tower_acts *t, const struct vlm_tower_off *o, int B, int T, int D,
    int H)
{
	const float *w = m->w;
	int64_t DD = (int64_t)D * D;

	linear(r, m, t->mq, w + o->map_q, o->map_in_w, w + o->map_in_b, 1, D,
	    D);
	linear(r, m, t->mk, t->lnf, o->map_in_w + DD, w + o->map_in_b + D,
	    B * T, D, D);
	linear(r, m, t->mv, t->lnf, o->map_in_w + 2 * DD,
	    w + o->map_in_b + 2 * D, B * T, D, D);
	r->be->pool_map_fwd(t->mpatt, t->matt, t->mq, t->mk, t->mv, t->len, B,
	    T, D, H);
	linear(r, m, t->pooled, t->mpatt, o->map_out_w, w + o->map_out_b, B,
	    D, D);
}

/* Final LN, pooling and projection of modality i. */
static void
head_fwd(struct vlm_run *r, const struct vlm_model *m, int i)
{
	const struct vlm_backend *be = r->be;
	const struct vlm_config *c = &m->cfg;
	struct tower_acts *t = &r->tw[i];
	const struct vlm_tower_off *o = i ? &m->txt : &m->vis;
	const struct vlm_tower_config *tc = i ? &c->text : &c->vision;
	int D = tc->width, B = t->B, T = t->T;
	const float *xl = STACK_TOP(t->st) + (size_t)t->row0 * D;

	be->layernorm_fwd(t->lnf, t->meanf, t->rstdf, xl,
	    m->w + o->ln_post_w, m->w + o->ln_post_b, B * T, D);
	if (tc->pool == VLM_POOL_GAP)
		be->pool_mean_fwd(t->pooled, t->lnf, t->len, B, T, D);
	else if (tc->pool == VLM_POOL_MAP)
		map_fwd(r, m, t, o, B, T, D, tc->heads);
	else
		be->pool_token_fwd(t->pooled, t->lnf, t->pos, B, T, D);
	project(be, t->feat, t->pooled, m->w + o->proj, B, D, c->embed_dim);
	be->l2norm_fwd(t->unit, t->norm, t->feat, B, c->embed_dim);
}

/* Stack st's output into x[0] of st->next: image rows through the
 * TokenLearner (N -> M tokens each), text rows as they are. */
static void
cut_fwd(struct vlm_run *r, const struct vlm_model *m, const struct stack *st)
{
	const struct vlm_config *c = &m->cfg;
	const struct vlm_tower_off *o = &m->vis;
	const float *w = m->w, *top = STACK_TOP(st);
	size_t D = st->D;

	for (int i = 0; i < st->nseg; i++) {
		const struct seg *a = &st->seg[i], *b = &st->next->seg[i];
		float *x0 = st->next->x + b->row0 * D;
		if (a->mod)
			r->be->copy(x0, top + a->row0 * D, (size_t)a->B * a->T *
			    D * sizeof(float));
		else
			r->be->token_learner_fwd(x0, r->tw[0].tl_act,
			    top + a->row0 * D, w + o->tl_ln_w, w + o->tl_ln_b,
			    w + o->tl_w1, w + o->tl_b1, w + o->tl_w2,
			    w + o->tl_b2, a->B, a->T, D, c->tl.hidden, b->T);
	}
}

/* m, or on a device backend m with its weights uploaded to r->wdev. */
const struct vlm_model *
vlm_run_weights(const struct vlm_run *r, const struct vlm_model *m,
    struct vlm_model *view)
{
	if (!r->wdev)
		return m;
	*view = *m;
	view->w = r->wdev;
	return view;
}

int
vlm_forward(struct vlm_run *r, const struct vlm_model *m, const float *images,
    const int32_t *tokens)
{
	struct vlm_model view;

	if (r->wdev) /* the weights may have changed since the last step */
		r->be->upload(r->wdev, m->w, m->nfloats * sizeof(float));
	m = vlm_run_weights(r, m, &view);
	r->fus_n = 0;
	if (m->cfg.lora.rank > 0) /* lora.c: a view, or vlm_lora_merge() */
		return vlm_error("model has unmerged LoRA adapters: merge "
		    "them first (vlm-convert merge-lora)");
	if (r->tw[0].B)
		image_embed(r, m, images);
	if (r->tw[1].B && text_embed(r, m, tokens) < 0)
		return -1;
	for (int i = 0; i < r->nst; i++) {
		if (r->st[i].R)
			vlm_stack_fwd(r, m, &r->st[i]);
		if (r->st[i].next)
			cut_fwd(r, m, &r->st[i]);
	}
	for (int i = 0; i < 2; i++)
		if (r->tw[i].B)
			head_fwd(r, m, i);
	if (vlm_ep_check(r) < 0 || vlm_grp_check(r) < 0)
		return -1;
	return r->be->sync();
}

/* Sum of the weighted aux losses of every MoE layer and pool. */
static float
aux_total(const struct vlm_run *r)
{
	float sum = 0;

	for (int i = 0; i < r->nst; i++) {
		const struct stack *st = &r->st[i];
		for (int l = 0; st->R && l < st->L; l++)
			for (int p = 0; st->blocks[l].moe && p < st->pools; p++)
				sum += st->moe[l * 2 + p].aux;
	}
	return sum;
}

int
vlm_run_loss(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_loss *out)
{
	int B = r->tw[0].B;

	/* a fusion run's texts past B (masked copies) are not in it */
	if (B == 0 || (B != r->tw[1].B && !(r->fus && r->tw[1].B > B)))
		return vlm_error("the contrastive loss needs as many images as "
		    "texts (%d and %d)", B, r->tw[1].B);
	r->loss.logit_scale = expf(m->w[m->logit_scale]);
	r->loss.contrastive = r->be->clip_loss_fwd(r->logits, r->lse2,
	    r->tw[0].unit, r->tw[1].unit, m->w[m->logit_scale], B,
	    m->cfg.embed_dim);
	r->loss.aux = aux_total(r);
	r->loss.total = r->loss.contrastive + r->loss.aux;
	if (out)
		*out = r->loss;
	return r->be->sync();
}

/* n bytes of the backend's memory src read back into host buffer dst. */
static const void *
readback(const struct vlm_run *r, void *dst, const void *src, size_t n)
{
	r->be->download(dst, src, n);
	return dst;
}

const float *
vlm_run_features(const struct vlm_run *r, int text, int unit)
{
	const struct tower_acts *t = &r->tw[text];

	return readback(r, unit ? t->hunit : t->hfeat, unit ? t->unit :
	    t->feat, (size_t)t->B * r->embed * sizeof(float));
}

/* The stack whose x[l - l0] is the stream entering block l of modality
 * text (l = depth: the output), and that modality's segment in it. */
static const struct stack *
stack_at(const struct vlm_run *r, int text, int l, const struct seg **sg)
{
	for (int i = 0; i < r->nst; i++) {
		const struct stack *st = &r->st[i];
		if (l < st->l0 || l > st->l0 + st->L ||
		    (l == st->l0 + st->L && st->next))
			continue;
		for (int k = 0; k < st->nseg; k++)
			if (st->seg[k].mod == text) {
				*sg = &st->seg[k];
				return st;
			}
	}
	return NULL;
}

const float *
vlm_run_stream(const struct vlm_run *r, int text, int l, int *rows, int *D)
{
	const struct tower_acts *t = &r->tw[text];
	const struct stack *st;
	const struct seg *sg;

	*rows = t->B * t->T;
	*D = t->st->D;
	if (l < 0) /* after the final LayerNorm */
		return readback(r, r->hstream, t->lnf, (size_t)*rows * *D *
		    sizeof(float));
	if (!(st = stack_at(r, text, l, &sg)))
		return NULL;
	*rows = sg->B * sg->T;
	return readback(r, r->hstream, st->x + ((size_t)(l - st->l0) * st->R +
	    sg->row0) * st->D, (size_t)*rows * *D * sizeof(float));
}

void
vlm_run_seed(struct vlm_run *r, uint64_t seed)
{
	vlm_rng_seed(&r->rng, seed);
}

int
vlm_run_route(const struct vlm_run *r, int text, int l, int pool,
    struct vlm_route_view *v)
{
	const struct seg *sg;
	const struct stack *st = stack_at(r, text, l, &sg);
	const struct moe_acts *ma;
	size_t S, SK, SE;

	if (r->fus && l >= r->fus->l0 && l < r->fus->l0 + r->fus->L &&
	    r->fus_n) /* a fusion block: the pairs of both modalities */
		st = r->fus;
	if (!st || l >= st->l0 + st->L || !st->blocks[l - st->l0].moe ||
	    pool >= st->pools)
		return -1;
	ma = &st->moe[(l - st->l0) * 2 + pool];
	if (r->grp && ma->S > 0) { /* the group's, as one process's */
		vlm_grp_records(r, ma, v);
		v->block = l;
		return 0;
	}
	S = ma->S > 0 ? ma->S : 0;
	SK = S * r->K, SE = S * r->E;
	v->S = ma->S, v->C = ma->C, v->block = l;
	v->rows = ma->hrows, v->mod = ma->hmod, v->fill = ma->hfill;
	v->idx = readback(r, ma->hidx, ma->idx, SK * sizeof(int32_t));
	v->keep = readback(r, ma->hkeep, ma->keep, SK);
	v->w = readback(r, ma->hw, ma->w, SK * sizeof(float));
	v->z = readback(r, ma->hz, ma->z, SE * sizeof(float));
	v->p = readback(r, ma->hp, ma->p, SE * sizeof(float));
	return 0;
}

struct vlm_rng *
vlm_run_rng(struct vlm_run *r)
{
	return &r->rng;
}

int
vlm_run_row_info(const struct vlm_run *r, int text, int l, int row,
    int *example, int *pos)
{
	const struct seg *sg;
	const struct stack *st = stack_at(r, text, l, &sg);
	int64_t i = st ? (int64_t)row - sg->row0 : -1;

	if (r->fus && r->fus_n && l >= r->fus->l0 && l < r->fus->l0 +
	    r->fus->L) { /* fused pair `example`: image rows, then text */
		sg = &r->fus->seg[0];
		if (row < 0 || row >= sg->B * sg->T)
			return -1;
		*example = row / sg->T;
		*pos = row % sg->T - (text ? sg->split : 0);
		return (*pos < 0 || (!text && *pos >= sg->split)) ? -1 : 0;
	}
	if (!st || i < 0 || i >= (int64_t)sg->B * sg->T)
		return -1;
	*example = (int)(i / sg->T);
	*pos = (int)(i % sg->T);
	return 0;
}
