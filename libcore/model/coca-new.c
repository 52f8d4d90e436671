/*
 * model/coca-new.c - new CoCa model files: a fresh one from a shape
 * (preset "coca-tiny" with key=value overrides), initialised as
 * OpenCLIP initialises CoCa (normal with its per-tensor stds, LayerNorms
 * 1 and 0, biases 0, logit_scale ln(1/0.07)); and sparse upcycling of a
 * CoCa model's decoder: every n-th decoder self-attention block's MLP
 * becomes E experts, each a copy of it, with a router of small normal
 * weights (model/coca-moe.c), every other tensor as it was.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/coca.h"

#define MAXT 1024 /* tensors of a new model, at most */

void
vlm_coca_shape_preset(struct vlm_coca_shape *s)
{
	/* coca-tiny: the OpenCLIP fixture's layout, scaled down further */
	*s = (struct vlm_coca_shape){ .E = 32, .S = 32, .p = 8, .Dv = 64,
		.Lv = 2, .Hv = 2, .Q = 17, .Hq = 4, .Lt = 2, .Ht = 2,
		.T = 16, .Ld = 2, .Hd = 2, .V = 49408, .mlp = 4,
		.moe_top_k = 2, .moe_every = 2 };
}

int
vlm_coca_shape_set(struct vlm_coca_shape *s, const char *kv)
{
	static const struct { const char *k; size_t off; } keys[] = {
#define K(name, f) { name, offsetof(struct vlm_coca_shape, f) }
		K("embed_dim", E), K("image_size", S), K("patch_size", p),
		K("vision.width", Dv), K("vision.layers", Lv),
		K("vision.heads", Hv), K("pooler.queries", Q),
		K("pooler.heads", Hq), K("text.layers", Lt),
		K("text.heads", Ht), K("context", T),
		K("decoder.layers", Ld), K("decoder.heads", Hd),
		K("vocab", V), K("mlp_ratio", mlp),
		K("moe.experts", moe_experts), K("moe.top_k", moe_top_k),
		K("moe.every", moe_every), K("moe.mlp_ratio", moe_mlp),
#undef K
	};
	const char *eq = strchr(kv, '=');
	char *end;
	long v;

	for (size_t i = 0; eq && i < sizeof(keys) / sizeof(*keys); i++) {
		if (strlen(keys[i].k) != (size_t)(eq - kv) ||
		    strncmp(kv, keys[i].k, eq - kv) != 0)
			continue;
		v = strtol(eq + 1, &end, 10);
		if (eq[1] == '\0' || *end != '\0' || v < 0 || v > (1 << 20))
			return vlm_error("'%s': not a whole number", kv);
		*(int *)((char *)s + keys[i].off) = (int)v;
		return 0;
	}
	return vlm_error("'%s': no such CoCa key (embed_dim, image_size, "
	    "patch_size, vision.*, pooler.*, text.*, context, decoder.*, "
	    "vocab, mlp_ratio, moe.{experts,top_k,every,mlp_ratio})", kv);
}

/* The tensors being made, their names and the generator. */
struct mk {
	int n, full;
	char names[MAXT][128];
	const char *np[MAXT];
	struct vlm_tensor t[MAXT];
	unsigned char borrowed[MAXT]; /* data another's, not freed */
	struct vlm_rng r;
};

/* A new tensor (d0[, d1[, d2]]): N(0, std^2), or the constant -std if
 * std < 0 (-1: ones); std 0: zeros. */
static float *
add(struct mk *m, double std, int ndim, int d0, int d1, int d2,
    const char *fmt, ...)
{
	va_list ap;
	struct vlm_tensor *t;
	int64_t n;

	if (m->n == MAXT) {
		m->full = 1;
		return NULL;
	}
	t = &m->t[m->n];
	*t = (struct vlm_tensor){ .dtype = VLM_DTYPE_F32, .ndim = ndim,
		.shape = { d0, d1, d2 } };
	n = vlm_tensor_numel(t);
	if (!(t->data = malloc((n ? n : 1) * sizeof(float)))) {
		m->full = 1;
		return NULL;
	}
	for (int64_t i = 0; i < n; i++)
		((float *)t->data)[i] = std < 0 ? (float)-std : std > 0 ?
		    (float)(std * vlm_rng_normal(&m->r)) : 0.0f;
	va_start(ap, fmt);
	vsnprintf(m->names[m->n], sizeof(m->names[0]), fmt, ap);
	va_end(ap);
	m->np[m->n] = m->names[m->n];
	return m->t[m->n++].data;
}

/* One residual block of width D, L blocks in its tower (OpenCLIP's
 * stds: attn width^-0.5, out and c_proj width^-0.5 (2L)^-0.5, c_fc
 * (2 width)^-0.5); cross: ln_1_kv; experts: an MoE FFN of E. */
static void
add_block(struct mk *m, const char *p, int D, int L, int F, int cross,
    int E)
{
	double a = pow(D, -0.5), pr = a * pow(2.0 * L, -0.5);
	double fc = pow(2.0 * D, -0.5);

	add(m, -1, 1, D, 0, 0, "%s.ln_1.weight", p);
	add(m, 0, 1, D, 0, 0, "%s.ln_1.bias", p);
	if (cross) {
		add(m, -1, 1, D, 0, 0, "%s.ln_1_kv.weight", p);
		add(m, 0, 1, D, 0, 0, "%s.ln_1_kv.bias", p);
	}
	add(m, a, 2, 3 * D, D, 0, "%s.attn.in_proj_weight", p);
	add(m, 0, 1, 3 * D, 0, 0, "%s.attn.in_proj_bias", p);
	add(m, pr, 2, D, D, 0, "%s.attn.out_proj.weight", p);
	add(m, 0, 1, D, 0, 0, "%s.attn.out_proj.bias", p);
	add(m, -1, 1, D, 0, 0, "%s.ln_2.weight", p);
	add(m, 0, 1, D, 0, 0, "%s.ln_2.bias", p);
	if (E) {
		add(m, 1e-3, 2, E, D, 0, "%s.mlp.router.weight", p);
		add(m, fc, 3, E, F, D, "%s.mlp.experts.c_fc.weight", p);
		add(m, 0, 2, E, F, 0, "%s.mlp.experts.c_fc.bias", p);
		add(m, pr, 3, E, D, F, "%s.mlp.experts.c_proj.weight", p);
		add(m, 0, 2, E, D, 0, "%s.mlp.experts.c_proj.bias", p);
		return;
	}
	add(m, fc, 2, F, D, 0, "%s.mlp.c_fc.weight", p);
	add(m, 0, 1, F, 0, 0, "%s.mlp.c_fc.bias", p);
	add(m, pr, 2, D, F, 0, "%s.mlp.c_proj.weight", p);
	add(m, 0, 1, D, 0, 0, "%s.mlp.c_proj.bias", p);
}

static void
add_tensors(struct mk *m, const struct vlm_coca_shape *s)
{
	int E = s->E, Dv = s->Dv, g = s->S / s->p, F;
	char p[96];

	add(m, pow(Dv, -0.5), 1, Dv, 0, 0, "visual.class_embedding");
	add(m, pow(Dv, -0.5), 2, g * g + 1, Dv, 0,
	    "visual.positional_embedding");
	add(m, pow(3.0 * s->p * s->p, -0.5), 2, Dv, 3 * s->p * s->p, 0,
	    "visual.conv1.weight");
	if (!m->full) { /* (Dv, 3, p, p) as OpenCLIP stores the conv */
		struct vlm_tensor *t = &m->t[m->n - 1];
		t->ndim = 4, t->shape[1] = 3, t->shape[2] = t->shape[3] = s->p;
	}
	add(m, -1, 1, Dv, 0, 0, "visual.ln_pre.weight");
	add(m, 0, 1, Dv, 0, 0, "visual.ln_pre.bias");
	for (int l = 0; l < s->Lv; l++) {
		snprintf(p, sizeof(p), "visual.transformer.resblocks.%d", l);
		add_block(m, p, Dv, s->Lv, Dv * s->mlp, 0, 0);
	}
	add(m, 1, 2, s->Q, E, 0, "visual.attn_pool.query");
	add(m, -1, 1, E, 0, 0, "visual.attn_pool.ln_q.weight");
	add(m, 0, 1, E, 0, 0, "visual.attn_pool.ln_q.bias");
	add(m, -1, 1, Dv, 0, 0, "visual.attn_pool.ln_k.weight");
	add(m, 0, 1, Dv, 0, 0, "visual.attn_pool.ln_k.bias");
	add(m, pow(E, -0.5), 2, E, E, 0, "visual.attn_pool.attn.q_proj_weight");
	add(m, pow(Dv, -0.5), 2, E, Dv, 0,
	    "visual.attn_pool.attn.k_proj_weight");
	add(m, pow(Dv, -0.5), 2, E, Dv, 0,
	    "visual.attn_pool.attn.v_proj_weight");
	add(m, 0, 1, 3 * E, 0, 0, "visual.attn_pool.attn.in_proj_bias");
	add(m, pow(E, -0.5), 2, E, E, 0, "visual.attn_pool.attn.out_proj.weight");
	add(m, 0, 1, E, 0, 0, "visual.attn_pool.attn.out_proj.bias");
	add(m, -1, 1, E, 0, 0, "visual.ln_post.weight");
	add(m, 0, 1, E, 0, 0, "visual.ln_post.bias");
	add(m, pow(E, -0.5), 2, E, E, 0, "visual.proj");
	add(m, 0.02, 2, s->V, E, 0, "text.token_embedding.weight");
	add(m, 0.01, 2, s->T + 1, E, 0, "text.positional_embedding");
	add(m, 0.01, 1, E, 0, 0, "text.cls_emb");
	for (int l = 0; l < s->Lt; l++) {
		snprintf(p, sizeof(p), "text.transformer.resblocks.%d", l);
		add_block(m, p, E, s->Lt, E * s->mlp, 0, 0);
	}
	add(m, -1, 1, E, 0, 0, "text.ln_final.weight");
	add(m, 0, 1, E, 0, 0, "text.ln_final.bias");
	add(m, pow(E, -0.5), 2, E, E, 0, "text.text_projection");
	F = E * s->mlp;
	for (int l = 0; l < s->Ld; l++) {
		int moe = s->moe_experts && s->moe_every && (l + 1) %
		    s->moe_every == 0;
		snprintf(p, sizeof(p), "text_decoder.resblocks.%d", l);
		add_block(m, p, E, s->Ld, moe && s->moe_mlp ? E * s->moe_mlp :
		    F, 0, moe ? s->moe_experts : 0);
		snprintf(p, sizeof(p), "text_decoder.cross_attn.%d", l);
		add_block(m, p, E, s->Ld, F, 1, 0);
	}
	add(m, -1, 1, E, 0, 0, "text_decoder.ln_final.weight");
	add(m, 0, 1, E, 0, 0, "text_decoder.ln_final.bias");
	add(m, pow(E, -0.5), 2, E, s->V, 0, "text_decoder.text_projection");
	float *ls = add(m, -log(1 / 0.07), 1, 1, 0, 0, "logit_scale");
	(void)ls;
}

static int
check_shape(const struct vlm_coca_shape *s)
{
	if (s->E < 1 || s->p < 1 || s->S < s->p || s->S % s->p || s->Dv < 1 ||
	    s->Lv < 1 || s->Lt < 1 || s->Ld < 1 || s->Q < 2 || s->T < 2 ||
	    s->V < 4 || s->mlp < 1 || s->Hv < 1 || s->Dv % s->Hv ||
	    s->Ht < 1 || s->E % s->Ht || s->Hd < 1 || s->E % s->Hd ||
	    s->Hq < 1 || s->E % s->Hq)
		return vlm_error("CoCa shape: widths, heads, sizes do not fit "
		    "(heads must divide widths, patches the image)");
	if (s->moe_experts && (s->moe_top_k < 1 || s->moe_top_k >
	    s->moe_experts || s->moe_every < 1 || s->moe_every > s->Ld))
		return vlm_error("CoCa shape: moe.top_k %d of %d experts, every "
		    "%d of %d decoder blocks", s->moe_top_k, s->moe_experts,
		    s->moe_every, s->Ld);
	return 0;
}

/* Tensor t of another model under its name, data not copied. */
static void
borrow(struct mk *m, const char *name, const struct vlm_tensor *t)
{
	if (m->n == MAXT) {
		m->full = 1;
		return;
	}
	m->t[m->n] = *t;
	m->borrowed[m->n] = 1;
	snprintf(m->names[m->n], sizeof(m->names[0]), "%s", name);
	m->np[m->n] = m->names[m->n];
	m->n++;
}

static void
mk_free(struct mk *m)
{
	for (int i = 0; i < m->n; i++)
		if (!m->borrowed[i])
			free(m->t[i].data);
}

int
vlm_coca_create(const char *path, const struct vlm_coca_shape *s,
    uint64_t seed, const char *merges)
{
	struct mk *m;
	struct vlm_coca hdr = { .Dv = s->Dv, .Hv = s->Hv, .Q = s->Q,
		.Hq = s->Hq, .Ht = s->Ht, .Hd = s->Hd, .Ed = s->moe_experts,
		.Kd = s->moe_experts ? s->moe_top_k : 0 };
	int rc;

	if (check_shape(s) < 0)
		return -1;
	if (!(m = calloc(1, sizeof(*m))))
		return vlm_error("out of memory");
	vlm_rng_seed(&m->r, seed);
	add_tensors(m, s);
	rc = m->full ? vlm_error("out of memory") : vlm_coca_write(path,
	    m->np, m->t, m->n, &hdr, merges);
	mk_free(m);
	free(m);
	return rc;
}

/* Is tensor name the dense MLP of a decoder block upcycling replaces? */
static int
upcycled(const char *name, int every, int *l, char *part, size_t n)
{
	int at = -1;

	if (sscanf(name, "text_decoder.resblocks.%d.mlp.%n", l, &at) != 1 ||
	    at < 0 || (*l + 1) % every)
		return 0;
	snprintf(part, n, "%s", name + at); /* c_fc.weight, ... */
	return 1;
}

int
vlm_coca_upcycle(const struct vlm_coca *c, const char *path, int E, int K,
    int every, double std, uint64_t seed, const char *merges)
{
	struct mk *m;
	struct vlm_coca hdr = *c;
	char part[64];
	int rc, l;

	if (c->Ed)
		return vlm_error("'%s': the decoder has experts already",
		    c->st.path);
	if (E < 1 || K < 1 || K > E || every < 1 || every > c->Ld)
		return vlm_error("upcycle: --top-k %d of %d experts, every %d "
		    "of %d decoder blocks", K, E, every, c->Ld);
	if (!(m = calloc(1, sizeof(*m))))
		return vlm_error("out of memory");
	vlm_rng_seed(&m->r, seed);
	hdr.Ed = E, hdr.Kd = K;
	for (int i = 0; i < c->st.n && !m->full; i++) {
		const struct vlm_tensor *t = &c->st.tensors[i];
		int64_t n = vlm_tensor_numel(t);
		float *x;
		if (!upcycled(c->st.names[i], every, &l, part, sizeof(part))) {
			borrow(m, c->st.names[i], t);
			continue;
		}
		if (strcmp(part, "c_fc.weight") == 0)
			add(m, std, 2, E, c->Dd, 0, "text_decoder.resblocks.%d."
			    "mlp.router.weight", l);
		x = add(m, 0, t->ndim + 1, E, (int)t->shape[0], t->ndim > 1 ?
		    (int)t->shape[1] : 0, "text_decoder.resblocks.%d.mlp."
		    "experts.%s", l, part);
		for (int e = 0; x && e < E; e++)
			memcpy(x + e * n, t->data, n * sizeof(float));
	}
	rc = m->full ? vlm_error("out of memory") : vlm_coca_write(path,
	    m->np, m->t, m->n, &hdr, merges);
	mk_free(m);
	free(m);
	return rc;
}
