/*
 * model.c - the parameters of a CLIP / LIMoE / VL-MoE model: a named
 * table derived from the config, one slab of floats, per-block offsets
 * (the same offsets index the gradient and optimizer slabs), OpenCLIP's
 * initialisation, and the model file (safetensors, config in metadata).
 *
 * Names follow OpenCLIP so that its checkpoints map one to one; MoE
 * blocks replace `mlp.*` by `moe.router.weight` (E, D) and experts
 * stacked in 3-D tensors `moe.experts.c_fc.weight` (E, F, D) etc.
 * VL-MoE pools are `moe.image.*` and `moe.text.*`.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats.h"
#include "model/model.h"

struct builder {
	struct vlm_model *m;
	int cap;
	int err;
};

/* Append a parameter; returns its offset (or -1 after an error). */
static int64_t
add(struct builder *b, int ndim, const int64_t *shape, const char *fmt, ...)
{
	struct vlm_model *m = b->m;
	struct vlm_param *p;
	va_list ap;

	if (b->err)
		return -1;
	if (m->nparams == b->cap) {
		int cap = b->cap ? 2 * b->cap : 64;
		void *np = realloc(m->params, cap * sizeof(*m->params));
		if (!np) {
			b->err = vlm_error("out of memory");
			return -1;
		}
		m->params = np;
		b->cap = cap;
	}
	p = &m->params[m->nparams++];
	memset(p, 0, sizeof(*p));
	va_start(ap, fmt);
	vsnprintf(p->name, sizeof(p->name), fmt, ap);
	va_end(ap);
	p->ndim = ndim;
	p->n = 1;
	for (int i = 0; i < ndim; i++) {
		p->shape[i] = shape[i];
		p->n = vlm_size_mul(p->n, shape[i]);
	}
	/* OpenCLIP: no decay for ndim < 2, "bn", "ln", "bias", logit_scale */
	p->decay = ndim >= 2 && !strstr(p->name, "bn") &&
	    !strstr(p->name, "ln") && !strstr(p->name, "bias") &&
	    !strstr(p->name, "logit_scale");
	p->off = m->nfloats;
	m->nfloats = vlm_size_add(m->nfloats, p->n);
	if (m->nfloats < 0 || m->nfloats > VLM_MAX_PARAMS) {
		b->err = vlm_error("config: the model would hold more than "
		    "%lld parameters (at '%s')", (long long)VLM_MAX_PARAMS,
		    p->name);
		return -1;
	}
	return p->off;
}

#define S1(a) (int64_t[]){ a }
#define S2(a, b) (int64_t[]){ a, b }
#define S3(a, b, c) (int64_t[]){ a, b, c }

/* One pool of E experts plus its router, under prefix `pre`. */
static void
add_pool(struct builder *b, struct vlm_block_off *o, int i, const char *pre,
    int E, int D, int F)
{
	o->router[i] = add(b, 2, S2(E, D), "%s.router.weight", pre);
	o->efc_w[i] = add(b, 3, S3(E, F, D), "%s.experts.c_fc.weight", pre);
	o->efc_b[i] = add(b, 2, S2(E, F), "%s.experts.c_fc.bias", pre);
	o->eproj_w[i] = add(b, 3, S3(E, D, F), "%s.experts.c_proj.weight", pre);
	o->eproj_b[i] = add(b, 2, S2(E, D), "%s.experts.c_proj.bias", pre);
}

static void
add_block(struct builder *b, struct vlm_block_off *o, const char *pre,
    const struct vlm_tower_config *t, int moe, int pools, int E)
{
	int D = t->width, F = t->mlp_ratio * t->width;
	char sub[96];

	memset(o, 0xff, sizeof(*o)); /* every offset -1 */
	o->ln1_w = add(b, 1, S1(D), "%s.ln_1.weight", pre);
	o->ln1_b = add(b, 1, S1(D), "%s.ln_1.bias", pre);
	o->qkv_w = add(b, 2, S2(3 * D, D), "%s.attn.in_proj_weight", pre);
	o->qkv_b = add(b, 1, S1(3 * D), "%s.attn.in_proj_bias", pre);
	o->out_w = add(b, 2, S2(D, D), "%s.attn.out_proj.weight", pre);
	o->out_b = add(b, 1, S1(D), "%s.attn.out_proj.bias", pre);
	o->ln2_w = add(b, 1, S1(D), "%s.ln_2.weight", pre);
	o->ln2_b = add(b, 1, S1(D), "%s.ln_2.bias", pre);
	o->moe = moe ? pools : 0;
	if (!moe) {
		o->fc_w = add(b, 2, S2(F, D), "%s.mlp.c_fc.weight", pre);
		o->fc_b = add(b, 1, S1(F), "%s.mlp.c_fc.bias", pre);
		o->proj_w = add(b, 2, S2(D, F), "%s.mlp.c_proj.weight", pre);
		o->proj_b = add(b, 1, S1(D), "%s.mlp.c_proj.bias", pre);
	} else if (pools == 1) {
		snprintf(sub, sizeof(sub), "%s.moe", pre);
		add_pool(b, o, 0, sub, E, D, F);
	} else {
		snprintf(sub, sizeof(sub), "%s.moe.image", pre);
		add_pool(b, o, 0, sub, E, D, F);
		snprintf(sub, sizeof(sub), "%s.moe.text", pre);
		add_pool(b, o, 1, sub, E, D, F);
	}
}

/* The blocks of a tower (tower 0 vision, 1 text) under `pre`. */
static int
add_blocks(struct builder *b, struct vlm_tower_off *t, const char *pre,
    int tower)
{
	const struct vlm_config *c = &b->m->cfg;
	const struct vlm_tower_config *tc = tower ? &c->text : &c->vision;
	int pools = c->moe.modality_experts ? 2 : 1;
	char name[64];

	t->nblocks = tc->layers;
	t->blocks = calloc(tc->layers, sizeof(*t->blocks));
	if (!t->blocks)
		return b->err = vlm_error("out of memory");
	for (int l = 0; l < tc->layers; l++) {
		snprintf(name, sizeof(name), "%stransformer.resblocks.%d", pre, l);
		add_block(b, &t->blocks[l], name, tc,
		    vlm_config_is_moe(c, tower, l), pools, c->moe.experts);
	}
	return b->err;
}

/* Attention pooling (pool: map): a learned query attending over the
 * tokens after the final LN, OpenCLIP's nn.MultiheadAttention layout. */
static void
add_map(struct builder *b, struct vlm_tower_off *t, const char *pre, int D,
    int map)
{
	t->map_q = t->map_in_w = t->map_in_b = t->map_out_w = t->map_out_b = -1;
	if (!map)
		return;
	t->map_q = add(b, 1, S1(D), "%sattn_pool.query", pre);
	t->map_in_w = add(b, 2, S2(3 * D, D), "%sattn_pool.attn.in_proj_weight",
	    pre);
	t->map_in_b = add(b, 1, S1(3 * D), "%sattn_pool.attn.in_proj_bias",
	    pre);
	t->map_out_w = add(b, 2, S2(D, D), "%sattn_pool.attn.out_proj.weight",
	    pre);
	t->map_out_b = add(b, 1, S1(D), "%sattn_pool.attn.out_proj.bias", pre);
}

/* TokenLearner (token_reduction): LN, MLP D -> hidden -> M. */
static void
add_token_learner(struct builder *b, struct vlm_tower_off *v, int D)
{
	const struct vlm_config *c = &b->m->cfg;
	int H = c->tl.hidden, M = c->tl.tokens;

	v->tl_ln_w = v->tl_ln_b = v->tl_w1 = v->tl_b1 = v->tl_w2 = -1;
	v->tl_b2 = -1;
	if (c->tl.after < 0)
		return;
	v->tl_ln_w = add(b, 1, S1(D), "visual.token_learner.ln.weight");
	v->tl_ln_b = add(b, 1, S1(D), "visual.token_learner.ln.bias");
	v->tl_w1 = add(b, 2, S2(H, D), "visual.token_learner.mlp.c_fc.weight");
	v->tl_b1 = add(b, 1, S1(H), "visual.token_learner.mlp.c_fc.bias");
	v->tl_w2 = add(b, 2, S2(M, H),
	    "visual.token_learner.mlp.c_proj.weight");
	v->tl_b2 = add(b, 1, S1(M), "visual.token_learner.mlp.c_proj.bias");
}

static void
add_vision(struct builder *b)
{
	const struct vlm_config *c = &b->m->cfg;
	struct vlm_tower_off *v = &b->m->vis;
	int D = c->vision.width, p = c->patch_size;

	v->tok_emb = -1;
	v->patch_w = add(b, 4, (int64_t[]){ D, 3, p, p }, "visual.conv1.weight");
	v->cls = c->vision.pool == VLM_POOL_CLS ?
	    add(b, 1, S1(D), "visual.class_embedding") : -1;
	v->pos = add(b, 2, S2(vlm_config_image_tokens(c), D),
	    "visual.positional_embedding");
	v->ln_pre_w = add(b, 1, S1(D), "visual.ln_pre.weight");
	v->ln_pre_b = add(b, 1, S1(D), "visual.ln_pre.bias");
	add_token_learner(b, v, D);
	if (c->family == VLM_TWO_TOWER)
		add_blocks(b, v, "visual.", 0);
	v->ln_post_w = add(b, 1, S1(D), "visual.ln_post.weight");
	v->ln_post_b = add(b, 1, S1(D), "visual.ln_post.bias");
	add_map(b, v, "visual.", D, c->vision.pool == VLM_POOL_MAP);
	v->proj = add(b, 2, S2(D, c->embed_dim), "visual.proj");
}

static void
add_text(struct builder *b)
{
	const struct vlm_config *c = &b->m->cfg;
	struct vlm_tower_off *t = &b->m->txt;
	int D = c->text.width;

	t->patch_w = t->cls = t->ln_pre_w = t->ln_pre_b = -1;
	t->tl_ln_w = t->tl_ln_b = t->tl_w1 = t->tl_b1 = t->tl_w2 = -1;
	t->tl_b2 = -1;
	t->tok_emb = add(b, 2, S2(c->vocab, D), "token_embedding.weight");
	t->pos = add(b, 2, S2(c->context, D), "positional_embedding");
	add_blocks(b, t, "", 1);
	t->ln_post_w = add(b, 1, S1(D), "ln_final.weight");
	t->ln_post_b = add(b, 1, S1(D), "ln_final.bias");
	add_map(b, t, "", D, c->text.pool == VLM_POOL_MAP);
	t->proj = add(b, 2, S2(D, c->embed_dim), "text_projection");
}

/* VL-MoE fusion blocks (MoE ones: one pool, the vision-language
 * experts, by the moe.every rule over the fusion blocks) and heads. */
static void
add_fusion(struct builder *b)
{
	const struct vlm_config *c = &b->m->cfg;
	struct vlm_fusion_off *f = &b->m->fus;
	int D = c->text.width, n = c->moe.every;
	char name[64];

	memset(f, 0xff, sizeof(*f));
	f->nblocks = c->fusion.layers;
	f->blocks = NULL;
	if (!f->nblocks)
		return;
	if (!(f->blocks = calloc(f->nblocks, sizeof(*f->blocks)))) {
		b->err = vlm_error("out of memory");
		return;
	}
	for (int l = 0; l < f->nblocks; l++) {
		snprintf(name, sizeof(name), "fusion.resblocks.%d", l);
		add_block(b, &f->blocks[l], name, &c->text, c->moe.experts > 0
		    && (l + 1) % n == 0, 1, c->moe.experts);
	}
	f->ln_w = add(b, 1, S1(D), "fusion.ln_post.weight");
	f->ln_b = add(b, 1, S1(D), "fusion.ln_post.bias");
	f->itm_w = add(b, 2, S2(2, D), "fusion.itm_head.weight");
	f->itm_b = add(b, 1, S1(2), "fusion.itm_head.bias");
	f->mlm_b = add(b, 1, S1(c->vocab), "fusion.mlm_head.bias");
	if (c->fusion.answers > 0) {
		f->qa_w = add(b, 2, S2(c->fusion.answers, D),
		    "fusion.qa_head.weight");
		f->qa_b = add(b, 1, S1(c->fusion.answers),
		    "fusion.qa_head.bias");
	}
}

/* LoRA pairs (lora.c) A (r, IN), B (OUT, r) for each targeted weight
 * (OUT, IN), per expert (E, r, IN), (E, OUT, r) for stacked experts;
 * after every base parameter, so base offsets are the plain model's. */
static void
add_lora(struct builder *b)
{
	int n = b->m->nparams, r = b->m->cfg.lora.rank;

	for (int i = 0; i < n; i++) {
		struct vlm_param p = b->m->params[i]; /* add() reallocates */
		int64_t *s = p.shape; /* (OUT, IN) or (E, OUT, IN) */
		if (!vlm_lora_target(&b->m->cfg, p.name))
			continue;
		add(b, p.ndim, p.ndim == 3 ? S3(s[0], r, s[2]) : S2(r, s[1]),
		    "%s.lora_A", p.name);
		add(b, p.ndim, p.ndim == 3 ? S3(s[0], s[1], r) : S2(s[0], r),
		    "%s.lora_B", p.name);
	}
}

/* The parameter table of config c (checked), without the slab. */
static int
build(struct vlm_model *m, const struct vlm_config *c)
{
	struct builder b = { m, 0, 0 };

	memset(m, 0, sizeof(*m));
	if (vlm_config_check(c) < 0)
		return -1;
	m->cfg = *c;
	add_text(&b);
	add_vision(&b);
	if (c->family == VLM_ONE_TOWER) { /* one set of blocks for both */
		m->vis.nblocks = m->txt.nblocks;
		m->vis.blocks = m->txt.blocks;
	}
	add_fusion(&b);
	m->logit_scale = add(&b, 0, NULL, "logit_scale");
	if (c->lora.rank > 0)
		add_lora(&b);
	if (b.err)
		vlm_model_release(m);
	return b.err;
}

/* The zeroed parameter slab of a built table (released on failure). */
static int
alloc_slab(struct vlm_model *m)
{
	if (!(m->w = calloc(m->nfloats, sizeof(float)))) {
		vlm_error("out of memory for %lld parameters (%.1f GiB)",
		    (long long)m->nfloats, m->nfloats * 4.0 / (1 << 30));
		vlm_model_release(m);
		return -1;
	}
	m->w[m->logit_scale] = m->cfg.logit_scale_init;
	return 0;
}

int
vlm_model_init(struct vlm_model *m, const struct vlm_config *c)
{
	return build(m, c) < 0 ? -1 : alloc_slab(m);
}

/* m's config := c, when c gives the very same parameter table. */
int
vlm_model_reconfig(struct vlm_model *m, const struct vlm_config *c)
{
	struct vlm_model twin = { 0 };
	int same;

	if (build(&twin, c) < 0) {
		vlm_model_release(&twin);
		return -1;
	}
	same = twin.nparams == m->nparams;
	for (int i = 0; same && i < m->nparams; i++)
		same = strcmp(twin.params[i].name, m->params[i].name) == 0 &&
		    memcmp(twin.params[i].shape, m->params[i].shape,
		    sizeof(m->params[i].shape)) == 0;
	vlm_model_release(&twin);
	if (!same)
		return vlm_error("the configuration would change the "
		    "model's parameters; only routing and loss settings can "
		    "change");
	m->cfg = *c;
	return 0;
}

void
vlm_model_release(struct vlm_model *m)
{
	if (m->vis.blocks != m->txt.blocks)
		free(m->vis.blocks);
	free(m->txt.blocks);
	free(m->fus.blocks);
	free(m->params);
	if (m->file.base)
		vlm_map_release(&m->file);
	else
		free(m->w);
	free(m->tokenizer);
	memset(m, 0, sizeof(*m));
}

const struct vlm_param *
vlm_model_param(const struct vlm_model *m, const char *name)
{
	for (int i = 0; i < m->nparams; i++)
		if (strcmp(m->params[i].name, name) == 0)
			return &m->params[i];
	return NULL;
}

static void
fill_normal(float *x, int64_t n, double std, struct vlm_rng *r)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(std * vlm_rng_normal(r));
}

static void
fill_const(float *x, int64_t n, float v)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = v;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* OpenCLIP's std for a parameter of a tower of width D and depth L. */
static double
init_std(const struct vlm_param *p, int D, int L)
{
	static const struct { const char *suffix; int kind; } rules[] = {
		{ "in_proj_weight", 0 }, { "out_proj.weight", 1 },
		{ "c_fc.weight", 2 }, { "c_proj.weight", 1 },
		{ "token_embedding.weight", 3 }, { "positional_embedding", 4 },
		{ "router.weight", 3 },
	};
	double attn = pow(D, -0.5), proj = attn * pow(2.0 * L, -0.5);
	double fc = pow(2.0 * D, -0.5);
	double stds[] = { attn, proj, fc, 0.02, 0.01 };

	if (strncmp(p->name, "visual.", 7) == 0 && !strstr(p->name, "resblocks")
	    && !strstr(p->name, "conv1"))
		return attn; /* class/positional embedding, proj: scale */
	for (size_t i = 0; i < sizeof(rules) / sizeof(*rules); i++)
		if (ends_with(p->name, rules[i].suffix))
			return stds[rules[i].kind];
	return attn; /* text_projection, conv1 */
}

void
vlm_model_randomize(struct vlm_model *m, uint64_t seed)
{
	struct vlm_rng r;

	vlm_rng_seed(&r, seed);
	for (int i = 0; i < vlm_lora_first(m); i++) { /* then the adapters */
		const struct vlm_param *p = &m->params[i];
		int vis = strncmp(p->name, "visual.", 7) == 0;
		const struct vlm_tower_config *t = vis && m->cfg.family ==
		    VLM_TWO_TOWER ? &m->cfg.vision : &m->cfg.text;
		float *x = m->w + p->off;

		if (strstr(p->name, "ln") && ends_with(p->name, ".weight"))
			fill_const(x, p->n, 1);
		else if (ends_with(p->name, "bias") || p->ndim == 0)
			fill_const(x, p->n, 0);
		else
			fill_normal(x, p->n, init_std(p, t->width, t->layers),
			    &r);
	}
	m->w[m->logit_scale] = m->cfg.logit_scale_init;
	vlm_lora_randomize(m, seed);
}

int64_t
vlm_model_active_params(const struct vlm_model *m)
{
	const struct vlm_config *c = &m->cfg;
	int64_t active = 0;

	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		int64_t n = p->n;

		if (strstr(p->name, ".experts.")) /* K of E experts */
			n = n / c->moe.experts * c->moe.top_k;
		if (strstr(p->name, ".moe.image.") ||
		    strstr(p->name, ".moe.text."))
			n /= 2; /* a token uses its own modality's pool */
		active += n;
	}
	return active;
}

/*
 * Forward FLOPs of one tower's blocks on N tokens (2 x multiply-adds).
 * MoE experts count K rows per token, or with `allocated` the E*C rows
 * of their buffers (K * cf_eval per token, at least K).
 */
static double
blocks_flops(const struct vlm_model *m, const struct vlm_block_off *blocks,
    int nblocks, const struct vlm_tower_config *tc, double N, int cut,
    int allocated)
{
	const struct vlm_config *c = &m->cfg;
	double D = tc->width, r = tc->mlp_ratio, f = 0;
	double rows = c->moe.top_k * (allocated && c->moe.cf_eval > 1 ?
	    c->moe.cf_eval : 1), H = c->tl.hidden, M = c->tl.tokens;

	for (int l = 0; l < nblocks; l++) {
		f += 8 * N * D * D + 4 * N * N * D; /* qkv, out; scores, sum */
		if (blocks[l].moe)
			f += N * (2 * D * c->moe.experts +
			    rows * 4 * r * D * D);
		else
			f += 4 * r * N * D * D;
		if (l == cut) { /* TokenLearner: its MLP, M sums of N rows */
			f += 2 * N * H * (D + M) + 2 * M * N * D;
			N = M;
		}
	}
	return f;
}

double
vlm_model_flops(const struct vlm_model *m, int text, int allocated)
{
	const struct vlm_config *c = &m->cfg;
	double N, D, f;

	if (text) {
		N = c->context, D = c->text.width;
		return blocks_flops(m, m->txt.blocks, m->txt.nblocks, &c->text,
		    N, -1, allocated) + 2 * D * c->embed_dim;
	}
	N = vlm_config_image_tokens(c), D = c->vision.width;
	f = 2.0 * (c->image_size / c->patch_size) *
	    (c->image_size / c->patch_size) * 3 * c->patch_size *
	    c->patch_size * D;
	return f + blocks_flops(m, m->vis.blocks, m->vis.nblocks, &c->vision,
	    N, c->tl.after, allocated) + 2 * D * c->embed_dim;
}

double
vlm_model_fusion_flops(const struct vlm_model *m, int allocated)
{
	const struct vlm_config *c = &m->cfg;

	if (c->fusion.layers <= 0)
		return 0;
	return blocks_flops(m, m->fus.blocks, m->fus.nblocks, &c->text,
	    vlm_config_image_tokens(c) + c->context, -1, allocated) +
	    4.0 * c->text.width; /* the ITM head */
}

/* Does stored tensor t (absent: NULL) have parameter p's shape? */
static int
check_param(const struct vlm_param *p, const struct vlm_tensor *t,
    const char *path)
{
	if (!t)
		return vlm_error("'%s': missing tensor '%s'", path, p->name);
	if (t->ndim != p->ndim)
		return vlm_error("'%s': tensor '%s' has %d dimensions, the "
		    "config wants %d", path, p->name, t->ndim, p->ndim);
	for (int i = 0; i < p->ndim; i++)
		if (t->shape[i] != p->shape[i]) {
			char a[64], b[64];
			struct vlm_tensor want = { .ndim = p->ndim };
			memcpy(want.shape, p->shape, sizeof(p->shape));
			vlm_shape_str(t, a, sizeof(a));
			vlm_shape_str(&want, b, sizeof(b));
			return vlm_error("'%s': tensor '%s' has shape %s, the "
			    "config wants %s", path, p->name, a, b);
		}
	return 0;
}

/*
 * The slab as it lies in st's file: every parameter F32 at its slab
 * offset from a 64-byte aligned start in a mapping; else NULL.
 */
static float *
slab_in_file(const struct vlm_model *m, const struct vlm_st *st)
{
	const unsigned char *w;

	if (!st->file.mapped || m->nparams == 0)
		return NULL;
	w = vlm_st_get(st, m->params[0].name)->data;
	if (m->params[0].off != 0 || (uintptr_t)w % VLM_ST_ALIGN != 0)
		return NULL;
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		const struct vlm_tensor *t = vlm_st_get(st, p->name);
		if (t->dtype != VLM_DTYPE_F32 || (const unsigned char *)t->data
		    != w + p->off * sizeof(float))
			return NULL;
	}
	return (float *)w;
}

/* The floats (F32, F16 or BF16) of st's tensors copied into a new slab;
 * the file's pages go as they are copied, so it is not held twice. */
static int
copy_params(struct vlm_model *m, const struct vlm_st *st, const char *path)
{
	if (alloc_slab(m) < 0)
		return vlm_error("'%s': %s", path, vlm_errmsg());
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		const struct vlm_tensor *t = vlm_st_get(st, p->name);
		if (vlm_convert_floats(m->w + p->off, VLM_DTYPE_F32, t->data,
		    t->dtype, p->n) < 0) {
			vlm_error("'%s': tensor '%s': %s", path, p->name,
			    vlm_errmsg());
			vlm_model_release(m);
			return -1;
		}
		vlm_map_drop(&st->file, t->data, vlm_tensor_nbytes(t));
	}
	return 0;
}

/*
 * The model of a file: its config (checked), every tensor's shape checked
 * against it before any slab is allocated (so a config claiming a huge
 * model over small tensors costs nothing), then the slab: the file's own
 * mapping where it holds the slab as is, else a copy.
 */
static int
load_params(struct vlm_model *m, struct vlm_st *st, const char *path)
{
	const char *cfg = vlm_st_meta(st, "vlm.config");
	struct vlm_config c;

	if (!cfg)
		return vlm_error("'%s': not a vlm model (no vlm.config "
		    "metadata; use vlm-convert import for OpenCLIP or HF "
		    "checkpoints)", path);
	vlm_config_preset(&c, "tiny");
	if (vlm_config_from_json(&c, cfg) < 0 || build(m, &c) < 0)
		return vlm_error("'%s': %s", path, vlm_errmsg());
	for (int i = 0; i < m->nparams; i++)
		if (check_param(&m->params[i], vlm_st_get(st,
		    m->params[i].name), path) < 0) {
			vlm_model_release(m);
			return -1;
		}
	if (!(m->w = slab_in_file(m, st)))
		return copy_params(m, st, path);
	vlm_st_keep_file(st, &m->file);
	return 0;
}

/* The model of a file; a mapped slab copy-on-write, or read-only. */
static int
load(struct vlm_model *m, const char *path, int writable)
{
	struct vlm_st st;
	const char *tok;
	int rc;

	if (vlm_st_load(&st, path) < 0)
		return -1;
	rc = load_params(m, &st, path);
	if (rc == 0 && writable && vlm_map_writable(&m->file, 1) < 0) {
		rc = vlm_error("'%s': %s", path, vlm_errmsg());
		vlm_model_release(m);
	}
	if (rc == 0 && (tok = vlm_st_meta(&st, "tokenizer.merges")) &&
	    !(m->tokenizer = strdup(tok))) {
		rc = vlm_error("out of memory");
		vlm_model_release(m);
	}
	vlm_st_release(&st);
	return rc;
}

int
vlm_model_load(struct vlm_model *m, const char *path)
{
	return load(m, path, 1);
}

int
vlm_model_load_merged(struct vlm_model *m, const char *path)
{
	int lora = 0;

	if (load(m, path, 0) < 0)
		return -1;
	if (m->cfg.lora.rank > 0) /* merging writes the base weights */
		lora = vlm_map_writable(&m->file, 1) < 0 ||
		    vlm_lora_merge(m) < 0 || vlm_map_writable(&m->file, 0) < 0;
	if (lora || vlm_model_check_finite(m, path) < 0) {
		vlm_model_release(m);
		return -1;
	}
	return 0;
}

int
vlm_model_mapped(const struct vlm_model *m)
{
	return m->file.mapped;
}

#define FINITE_CHUNK (1 << 20) /* floats each job checks */

struct finite_job {
	const struct vlm_model *m;
	int64_t bad;   /* the first chunk holding a non-finite, or -1 */
};

/* Does x (n floats) hold a NaN or infinity? Exponent bits all ones, in
 * fixed blocks that the compiler vectorizes. */
static int
any_nonfinite(const float *x, int64_t n)
{
	const uint32_t *u = (const uint32_t *)x;
	uint32_t bad = 0;
	int64_t i = 0;

	for (; i + 64 <= n; i += 64)
		for (int k = 0; k < 64; k++)
			bad |= (u[i + k] & 0x7f800000u) == 0x7f800000u;
	for (; i < n; i++)
		bad |= (u[i] & 0x7f800000u) == 0x7f800000u;
	return bad != 0;
}

/* Check chunks [c0, c1); let go of the pages read, if they can be. */
static void
finite_chunks(void *ctx, int64_t c0, int64_t c1)
{
	struct finite_job *j = ctx;

	for (int64_t c = c0; c < c1; c++) {
		int64_t i0 = c * FINITE_CHUNK, n = j->m->nfloats - i0;
		int64_t seen;

		n = n < FINITE_CHUNK ? n : FINITE_CHUNK;
		if (any_nonfinite(j->m->w + i0, n))
			while ((seen = __atomic_load_n(&j->bad,
			    __ATOMIC_RELAXED)) < 0 || c < seen)
				if (__atomic_compare_exchange_n(&j->bad, &seen,
				    c, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
					break;
		vlm_map_drop(&j->m->file, j->m->w + i0, n * sizeof(float));
	}
}

int
vlm_model_check_finite(const struct vlm_model *m, const char *path)
{
	struct finite_job j = { m, -1 };
	int64_t i0, i1;

	vlm_parallel_for((m->nfloats + FINITE_CHUNK - 1) / FINITE_CHUNK,
	    finite_chunks, &j);
	if (j.bad < 0)
		return 0;
	i0 = j.bad * FINITE_CHUNK;
	i1 = i0 + FINITE_CHUNK < m->nfloats ? i0 + FINITE_CHUNK : m->nfloats;
	while (i0 < i1 && isfinite(m->w[i0]))
		i0++;
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		if (i0 >= p->off && i0 < p->off + p->n)
			return vlm_error("'%s': parameter '%s' holds NaN or "
			    "infinity (element %lld)", path, p->name,
			    (long long)(i0 - p->off));
	}
	return vlm_error("'%s': NaN or infinity at float %lld", path,
	    (long long)i0);
}

int
vlm_model_save(const struct vlm_model *m, const char *path)
{
	const char *keys[] = { "format", "vlm.version", "vlm.config",
		"tokenizer.merges" };
	const char *vals[4] = { "vlm-model", "1", NULL, m->tokenizer };
	const char **names = calloc(m->nparams, sizeof(*names));
	struct vlm_tensor *ts = calloc(m->nparams, sizeof(*ts));
	char *cfg = vlm_config_to_json_alloc(&m->cfg);
	int rc = -1;

	if (!names || !ts || !cfg) {
		vlm_error("out of memory");
		goto out;
	}
	vals[2] = cfg;
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		names[i] = p->name;
		ts[i].dtype = VLM_DTYPE_F32;
		ts[i].ndim = p->ndim;
		memcpy(ts[i].shape, p->shape, sizeof(p->shape));
		ts[i].data = m->w + p->off;
	}
	rc = vlm_st_save(path, names, ts, m->nparams, keys, vals,
	    m->tokenizer ? 4 : 3);
out:
	free(names);
	free(ts);
	free(cfg);
	return rc;
}
