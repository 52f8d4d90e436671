/*
 * model/coca.c - OpenCLIP's CoCa forward, loss and greedy decoding, one
 * sample at a time on the CPU kernels, reading the checkpoint's tensors
 * by their OpenCLIP names (open_clip/coca_model.py, transformer.py 2.32):
 *   image: patches + class + pos, ln_pre, blocks, attentional pooler
 *          (ln_k on all tokens, ln_q on Q queries, MHA with kdim = width),
 *          ln_post; row 0 @ proj is the feature, rows 1.. the image tokens
 *   text:  tokens + appended cls_emb + pos (n+1 rows), causal blocks where
 *          the class row sees key 0 and key j+1 iff ids[j] != 0; feature
 *          = ln_final(class row) @ text_projection; tokens = rows 0..n-1
 *   decoder: per layer a causal self-attention block, then a cross block
 *          (ln_1 on queries, ln_1_kv on image tokens, no mask); ln_final,
 *          @ text_projection (Dd, V) gives the logits.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model/coca.h"

int
vlm_coca_index(const struct vlm_coca *c, const char *fmt, ...)
{
	char name[160];
	va_list ap;
	const struct vlm_tensor *t;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	t = vlm_st_get(&c->st, name);
	if (!t) { /* vlm_coca_load checked them all */
		fprintf(stderr, "coca: missing tensor %s\n", name);
		abort();
	}
	return (int)(t - c->st.tensors);
}

/* The floats of the tensor of a formatted name. */
#define W(c, ...) ((const float *)(c)->st.tensors[vlm_coca_index((c), \
	__VA_ARGS__)].data)

/* Dimension d of the named tensor, -1 if absent. */
static int
dim(const struct vlm_coca *c, const char *name, int d)
{
	const struct vlm_tensor *t = vlm_st_get(&c->st, name);

	return t && t->ndim > d ? (int)t->shape[d] : -1;
}

static int
count_layers(const struct vlm_coca *c, const char *fmt)
{
	char name[160];
	int l = 0;

	for (;; l++) {
		snprintf(name, sizeof(name), fmt, l);
		if (!vlm_st_get(&c->st, name))
			return l;
	}
}

/*
 * The tensor of a formatted name has shape (d0, d1, d2): 2-D if d2 < 0,
 * 1-D if d1 < 0 as well.
 */
static int
need_shape(const struct vlm_coca *c, int d0, int d1, int d2, const char *fmt,
    ...)
{
	char name[160];
	va_list ap;
	const struct vlm_tensor *t;
	int d[3] = { d0, d1, d2 }, nd = d1 < 0 ? 1 : d2 < 0 ? 2 : 3, i, ok;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	if (!(t = vlm_st_get(&c->st, name)))
		return vlm_error("'%s': no tensor '%s'", c->st.path, name);
	for (ok = t->ndim == nd, i = 0; ok && i < nd; i++)
		ok = t->shape[i] == d[i];
	if (ok)
		return 0;
	if (nd == 3)
		return vlm_error("'%s': tensor '%s' is not (%d, %d, %d)",
		    c->st.path, name, d0, d1, d2);
	return vlm_error("'%s': tensor '%s' is not (%d, %d)", c->st.path,
	    name, d0, d1);
}

/* The tensor of a formatted name has shape (d0, d1) (d1 < 0: 1-D). */
#define need(c, d0, d1, ...) need_shape((c), (d0), (d1), -1, __VA_ARGS__)

/* The MoE FFN tensors of the block at p (model/coca-moe.c). */
static int
need_moe(const struct vlm_coca *c, const char *p, int D)
{
	char nm[160];
	const struct vlm_tensor *t;
	int E = c->Ed, F;

	snprintf(nm, sizeof(nm), "%s.mlp.experts.c_fc.weight", p);
	F = (t = vlm_st_get(&c->st, nm)) && t->ndim == 3 ? (int)t->shape[1] :
	    0;
	if (F < 1 || F > VLM_COCA_MAX_WIDTH * 64)
		return vlm_error("'%s': no tensor '%s' of a sane shape",
		    c->st.path, nm);
	return need(c, E, D, "%s.mlp.router.weight", p) || need_shape(c, E, F,
	    D, "%s.mlp.experts.c_fc.weight", p) || need(c, E, F,
	    "%s.mlp.experts.c_fc.bias", p) || need_shape(c, E, D, F,
	    "%s.mlp.experts.c_proj.weight", p) || need(c, E, D,
	    "%s.mlp.experts.c_proj.bias", p) ? -1 : 0;
}

/* The dense MLP tensors of the block at p. */
static int
need_mlp(const struct vlm_coca *c, const char *p, int D)
{
	char nm[160];
	const struct vlm_tensor *t;
	int F;

	snprintf(nm, sizeof(nm), "%s.mlp.c_fc.weight", p);
	F = (t = vlm_st_get(&c->st, nm)) && t->ndim == 2 ? (int)t->shape[0] :
	    0;
	if (F < 1 || F > VLM_COCA_MAX_WIDTH * 64)
		return vlm_error("'%s': no tensor '%s' of a sane shape",
		    c->st.path, nm);
	return need(c, F, D, "%s.mlp.c_fc.weight", p) || need(c, F, -1,
	    "%s.mlp.c_fc.bias", p) || need(c, D, F, "%s.mlp.c_proj.weight", p)
	    || need(c, D, -1, "%s.mlp.c_proj.bias", p) ? -1 : 0;
}

/* Every tensor of a residual block of width D at prefix pre; moe: its
 * FFN may be sparse. */
static int
need_block(const struct vlm_coca *c, const char *pre, int l, int D,
    int cross, int moe)
{
	char p[96];

	snprintf(p, sizeof(p), pre, l);
	if (!moe && vlm_coca_moe_at(c, p))
		return vlm_error("'%s': '%s' has experts, which only the "
		    "decoder's self-attention blocks may have", c->st.path, p);
	return need(c, D, -1, "%s.ln_1.weight", p) || need(c, D, -1,
	    "%s.ln_1.bias", p) || need(c, 3 * D, D, "%s.attn.in_proj_weight",
	    p) || need(c, 3 * D, -1, "%s.attn.in_proj_bias", p) || need(c, D,
	    D, "%s.attn.out_proj.weight", p) || need(c, D, -1,
	    "%s.attn.out_proj.bias", p) || need(c, D, -1, "%s.ln_2.weight", p)
	    || need(c, D, -1, "%s.ln_2.bias", p) || (moe &&
	    vlm_coca_moe_at(c, p) ? need_moe(c, p, D) : need_mlp(c, p, D)) ||
	    (cross && (need(c, D, -1, "%s.ln_1_kv.weight", p) || need(c, D,
	    -1, "%s.ln_1_kv.bias", p))) ? -1 : 0;
}

/* Every tensor the forward reads, in the shape it reads it. */
static int
need_all(const struct vlm_coca *c)
{
	int E = c->E, Dv = c->Dv, Dt = c->Dt, P = (c->S / c->p) *
	    (c->S / c->p);
	const struct vlm_tensor *ls = vlm_st_get(&c->st, "logit_scale");

	if (!ls || vlm_tensor_numel(ls) != 1)
		return vlm_error("'%s': no scalar 'logit_scale'", c->st.path);
	for (int l = 0; l < c->Lv; l++)
		if (need_block(c, "visual.transformer.resblocks.%d", l, Dv, 0,
		    0))
			return -1;
	for (int l = 0; l < c->Lt; l++)
		if (need_block(c, "text.transformer.resblocks.%d", l, Dt, 0,
		    0))
			return -1;
	for (int l = 0; l < c->Ld; l++)
		if (need_block(c, "text_decoder.resblocks.%d", l, c->Dd, 0,
		    1) || need_block(c, "text_decoder.cross_attn.%d", l, c->Dd,
		    1, 0))
			return -1;
	const struct vlm_tensor *cv = vlm_st_get(&c->st, "visual.conv1.weight");
	if (cv->ndim != 4 || cv->shape[1] != 3 || cv->shape[2] != c->p ||
	    cv->shape[3] != c->p)
		return vlm_error("'%s': 'visual.conv1.weight' is not (%d, 3, "
		    "%d, %d)", c->st.path, Dv, c->p, c->p);
	return need(c, Dv, -1, "visual.class_embedding") || need(c, P + 1, Dv,
	    "visual.positional_embedding") || need(c, Dv, -1,
	    "visual.ln_pre.weight") || need(c, Dv, -1, "visual.ln_pre.bias") ||
	    need(c, c->Q, E, "visual.attn_pool.query") || need(c, E, -1,
	    "visual.attn_pool.ln_q.weight") || need(c, E, -1,
	    "visual.attn_pool.ln_q.bias") || need(c, Dv, -1,
	    "visual.attn_pool.ln_k.weight") || need(c, Dv, -1,
	    "visual.attn_pool.ln_k.bias") || need(c, E, E,
	    "visual.attn_pool.attn.q_proj_weight") || need(c, E, Dv,
	    "visual.attn_pool.attn.k_proj_weight") || need(c, E, Dv,
	    "visual.attn_pool.attn.v_proj_weight") || need(c, 3 * E, -1,
	    "visual.attn_pool.attn.in_proj_bias") || need(c, E, E,
	    "visual.attn_pool.attn.out_proj.weight") || need(c, E, -1,
	    "visual.attn_pool.attn.out_proj.bias") || need(c, E, -1,
	    "visual.ln_post.weight") || need(c, E, -1, "visual.ln_post.bias") ||
	    need(c, E, E, "visual.proj") || need(c, c->V, Dt,
	    "text.token_embedding.weight") || need(c, c->T + 1, Dt,
	    "text.positional_embedding") || need(c, Dt, -1, "text.cls_emb") ||
	    need(c, Dt, -1, "text.ln_final.weight") || need(c, Dt, -1,
	    "text.ln_final.bias") || need(c, Dt, E, "text.text_projection") ||
	    need(c, c->Dd, -1, "text_decoder.ln_final.weight") || need(c, c->Dd,
	    -1, "text_decoder.ln_final.bias") || need(c, c->Dd, c->V,
	    "text_decoder.text_projection") ? -1 : 0;
}

static int
jget(json_t *o, const char *key, int def)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

/* Heads, pooler and activation from an OpenCLIP config dict (NULL:
 * OpenCLIP's defaults); name is its file in messages. */
static int
read_config(struct vlm_coca *c, json_t *root, const char *name)
{
	json_t *v = json_object_get(root, "vision_cfg");
	json_t *t = json_object_get(root, "text_cfg");
	json_t *m = json_object_get(root, "multimodal_cfg");
	int hw = jget(v, "head_width", 64);

	c->Hv = hw > 0 ? c->Dv / hw : 0;
	c->Q = jget(v, "attn_pooler_queries", 256);
	c->Hq = jget(v, "attn_pooler_heads", 8);
	c->Ht = jget(t, "heads", 8);
	c->Hd = jget(m, "heads", 8);
	c->quick = json_is_true(json_object_get(root, "quick_gelu"));
	c->Kd = c->Ed ? jget(m, "moe_top_k", 2) : 0;
	c->lora_alpha = json_is_number(json_object_get(root, "lora_alpha")) ?
	    json_number_value(json_object_get(root, "lora_alpha")) : 0;
	if (c->Ed && (c->Kd < 1 || c->Kd > c->Ed))
		return vlm_error("'%s': moe_top_k %d of %d experts", name,
		    c->Kd, c->Ed);
	if (c->Hv < 1 || c->Dv % c->Hv || c->Ht < 1 || c->Dt % c->Ht ||
	    c->Hd < 1 || c->Dd % c->Hd || c->Hq < 1 || c->E % c->Hq)
		return vlm_error("'%s': heads do not divide the widths", name);
	if (dim(c, "visual.attn_pool.query", 0) != c->Q || c->Q < 2)
		return vlm_error("'%s': %d pooler queries, the weights have %d",
		    name, c->Q, dim(c, "visual.attn_pool.query", 0));
	return 0;
}

/* The config: the file given, else the model file's "vlm.coca". */
static int
load_config(struct vlm_coca *c, const char *path, const char *weights)
{
	const char *meta = vlm_st_meta(&c->st, "vlm.coca");
	json_error_t e;
	json_t *root = NULL;
	int rc;

	if (path && !(root = json_load_file(path, 0, &e)))
		return vlm_error("'%s': %s (line %d)", path, e.text, e.line);
	if (!path && meta && !(root = json_loads(meta, 0, &e)))
		return vlm_error("'%s': vlm.coca: %s", weights, e.text);
	rc = read_config(c, root, path ? path : weights);
	json_decref(root);
	return rc;
}

int
vlm_coca_load(struct vlm_coca *c, const char *weights, const char *config)
{
	memset(c, 0, sizeof(*c));
	if (vlm_st_load(&c->st, weights) < 0)
		return -1;
	for (int i = 0; i < c->st.n; i++)
		if (c->st.tensors[i].dtype != VLM_DTYPE_F32) {
			vlm_st_release(&c->st);
			return vlm_error("'%s': tensor '%s' is not F32",
			    weights, c->st.names[i]);
		}
	c->Dv = dim(c, "visual.conv1.weight", 0);
	c->p = dim(c, "visual.conv1.weight", 2);
	int rows = dim(c, "visual.positional_embedding", 0);
	c->S = rows > 1 ? c->p * (int)sqrt(rows - 1) : 0;
	c->E = dim(c, "visual.proj", 1);
	c->Lv = count_layers(c, "visual.transformer.resblocks.%d.ln_1.weight");
	c->Dt = dim(c, "text.positional_embedding", 1);
	c->T = dim(c, "text.positional_embedding", 0) - 1;
	c->V = dim(c, "text.token_embedding.weight", 0);
	c->Lt = count_layers(c, "text.transformer.resblocks.%d.ln_1.weight");
	c->Dd = dim(c, "text_decoder.ln_final.weight", 0);
	c->Ld = count_layers(c, "text_decoder.resblocks.%d.ln_1.weight");
	c->Q = dim(c, "visual.attn_pool.query", 0);
	for (int l = 0; l < c->Ld && !c->Ed; l++) {
		char nm[96];
		snprintf(nm, sizeof(nm), "text_decoder.resblocks.%d.mlp.router."
		    "weight", l);
		c->Ed = dim(c, nm, 0) > 0 ? dim(c, nm, 0) : 0;
	}
	if (c->Ed > 4096) {
		vlm_st_release(&c->st);
		return vlm_error("'%s': %d experts (at most 4096)", weights,
		    c->Ed);
	}
	if (c->S < 1 || c->Dv < 1 || c->p < 1 || c->E < 1 || c->Dt < 1 || c->V < 1 ||
	    c->Dd != c->E || c->Dt != c->E || c->Lv < 1 || c->Lt < 1 ||
	    c->Ld < 1 || dim(c, "visual.attn_pool.query", 1) != c->E ||
	    dim(c, "text.cls_emb", 0) != c->Dt || c->T < 2 || c->Q < 2 ||
	    dim(c, "text_decoder.text_projection", 1) != c->V) {
		vlm_st_release(&c->st);
		return vlm_error("'%s': not an OpenCLIP CoCa checkpoint "
		    "(widths must agree, attentional pooler and class token)",
		    weights);
	}
	if ((c->Dv > VLM_COCA_MAX_WIDTH || c->E > VLM_COCA_MAX_WIDTH ||
	    c->p > 4096 || c->S > 4096 || c->T > 16384 || c->Q > 65536 ||
	    c->V > (1 << 20) || c->Lv > 256 || c->Lt > 256 || c->Ld > 256) &&
	    vlm_error("'%s': CoCa sizes out of range", weights) < 0) {
		vlm_st_release(&c->st);
		return -1;
	}
	if (need_all(c) < 0) {
		vlm_st_release(&c->st);
		return -1;
	}
	if (load_config(c, config, weights) < 0) {
		vlm_st_release(&c->st);
		return -1;
	}
	c->sot = c->V - 2, c->eot = c->V - 1;
	if (vlm_coca_lora_load(c, c->lora_alpha) < 0) {
		vlm_coca_release(c);
		return -1;
	}
	return 0;
}

void
vlm_coca_release(struct vlm_coca *c)
{
	vlm_st_release(&c->st);
	free(c->lora);
	free(c->lora_eff);
	c->lora = NULL, c->lora_eff = NULL, c->nlora = 0;
}

/* x += mlp(ln_2(x)) of the block at prefix. */
static void
mlp(const struct vlm_coca *c, const char *pre, float *x, int N, int D)
{
	char nm[160];
	int F, n = N * D;

	if (vlm_coca_moe_at(c, pre)) {
		float *ln = malloc(n * sizeof(float));
		vlm_layernorm_fwd_cpu(ln, NULL, NULL, x, W(c, "%s.ln_2.weight",
		    pre), W(c, "%s.ln_2.bias", pre), N, D);
		vlm_coca_moe_fwd(c, pre, ln, N, x, NULL);
		free(ln);
		return;
	}
	snprintf(nm, sizeof(nm), "%s.mlp.c_fc.weight", pre);
	F = dim(c, nm, 0);
	float *ln = malloc(n * sizeof(float)), *h = malloc((size_t)N * F *
	    sizeof(float)), *o = malloc(n * sizeof(float));
	vlm_layernorm_fwd_cpu(ln, NULL, NULL, x, W(c, "%s.ln_2.weight", pre),
	    W(c, "%s.ln_2.bias", pre), N, D);
	vlm_linear_fwd_cpu(h, ln, W(c, "%s.mlp.c_fc.weight", pre),
	    W(c, "%s.mlp.c_fc.bias", pre), N, D, F);
	if (c->quick)
		vlm_quickgelu_fwd_cpu(h, h, (int64_t)N * F);
	else
		vlm_gelu_fwd_cpu(h, h, (int64_t)N * F);
	vlm_linear_fwd_cpu(o, h, W(c, "%s.mlp.c_proj.weight", pre),
	    W(c, "%s.mlp.c_proj.bias", pre), N, F, D);
	for (int i = 0; i < n; i++)
		x[i] += o[i];
	free(ln), free(h), free(o);
}

/* One residual block x (N,D) at prefix: self-attention (mask, causal),
 * or with kv (M,D) cross-attention (ln_1_kv on kv), then the MLP. */
static void
block(const struct vlm_coca *c, const char *pre, float *x, int N, int D,
    int H, const float *mask, int causal, const float *kv, int M)
{
	int Tk = kv ? M : N;
	float *ln = malloc((size_t)N * D * sizeof(float));
	float *qkv = malloc((size_t)(N > Tk ? N : Tk) * 3 * D * sizeof(float));
	float *kvl = kv ? malloc((size_t)M * D * sizeof(float)) : NULL;
	float *kvp = kv ? malloc((size_t)M * 2 * D * sizeof(float)) : NULL;
	float *a = malloc((size_t)N * D * sizeof(float));
	float *o = malloc((size_t)N * D * sizeof(float));
	float *s = malloc((size_t)H * N * Tk * sizeof(float));
	const float *w = W(c, "%s.attn.in_proj_weight", pre);
	const float *b = W(c, "%s.attn.in_proj_bias", pre);

	vlm_layernorm_fwd_cpu(ln, NULL, NULL, x, W(c, "%s.ln_1.weight", pre),
	    W(c, "%s.ln_1.bias", pre), N, D);
	if (!kv) {
		vlm_linear_fwd_cpu(qkv, ln, w, b, N, D, 3 * D);
		vlm_xattention_fwd_cpu(a, s, qkv, 3 * D, qkv + D, 3 * D,
		    qkv + 2 * D, 3 * D, mask, causal, N, N, D, H);
	} else {
		vlm_layernorm_fwd_cpu(kvl, NULL, NULL, kv,
		    W(c, "%s.ln_1_kv.weight", pre),
		    W(c, "%s.ln_1_kv.bias", pre), M, D);
		vlm_linear_fwd_cpu(qkv, ln, w, b, N, D, D);
		vlm_linear_fwd_cpu(kvp, kvl, w + D * D, b + D, M, D, 2 * D);
		vlm_xattention_fwd_cpu(a, s, qkv, D, kvp, 2 * D, kvp + D,
		    2 * D, NULL, 0, N, M, D, H);
	}
	vlm_linear_fwd_cpu(o, a, W(c, "%s.attn.out_proj.weight", pre),
	    W(c, "%s.attn.out_proj.bias", pre), N, D, D);
	for (int i = 0; i < N * D; i++)
		x[i] += o[i];
	mlp(c, pre, x, N, D);
	free(ln), free(qkv), free(kvl), free(kvp), free(a), free(o), free(s);
}

/* The attentional pooler: out (Q,E) = MHA(ln_q(query), ln_k(x), ln_k(x))
 * with separate q/k/v projections, x (N,Dv). */
static void
pooler(const struct vlm_coca *c, float *out, const float *x, int N)
{
	int Q = c->Q, E = c->E, D = c->Dv;
	float *xk = malloc((size_t)N * D * sizeof(float));
	float *qn = malloc((size_t)Q * E * sizeof(float));
	float *q = malloc((size_t)Q * E * sizeof(float));
	float *k = malloc((size_t)N * E * sizeof(float));
	float *v = malloc((size_t)N * E * sizeof(float));
	float *a = malloc((size_t)Q * E * sizeof(float));
	float *s = malloc((size_t)c->Hq * Q * N * sizeof(float));
	const float *b = W(c, "visual.attn_pool.attn.in_proj_bias");

	vlm_layernorm_fwd_cpu(xk, NULL, NULL, x, W(c, "visual.attn_pool.ln_k"
	    ".weight"), W(c, "visual.attn_pool.ln_k.bias"), N, D);
	vlm_layernorm_fwd_cpu(qn, NULL, NULL, W(c, "visual.attn_pool.query"),
	    W(c, "visual.attn_pool.ln_q.weight"),
	    W(c, "visual.attn_pool.ln_q.bias"), Q, E);
	vlm_linear_fwd_cpu(q, qn, W(c, "visual.attn_pool.attn.q_proj_weight"),
	    b, Q, E, E);
	vlm_linear_fwd_cpu(k, xk, W(c, "visual.attn_pool.attn.k_proj_weight"),
	    b + E, N, D, E);
	vlm_linear_fwd_cpu(v, xk, W(c, "visual.attn_pool.attn.v_proj_weight"),
	    b + 2 * E, N, D, E);
	vlm_xattention_fwd_cpu(a, s, q, E, k, E, v, E, NULL, 0, Q, N, E,
	    c->Hq);
	vlm_linear_fwd_cpu(out, a, W(c, "visual.attn_pool.attn.out_proj.weight"),
	    W(c, "visual.attn_pool.attn.out_proj.bias"), Q, E, E);
	free(xk), free(qn), free(q), free(k), free(v), free(a), free(s);
}

int
vlm_coca_image(const struct vlm_coca *c, const float *img, float *feat,
    float *embs)
{
	int P = (c->S / c->p) * (c->S / c->p), N = P + 1, D = c->Dv, E = c->E;
	int pp = 3 * c->p * c->p;
	float *patch = malloc((size_t)P * pp * sizeof(float));
	float *x = malloc((size_t)N * D * sizeof(float));
	float *y = malloc((size_t)N * D * sizeof(float));
	float *pool = malloc((size_t)c->Q * E * sizeof(float));
	char pre[96];

	if (!patch || !x || !y || !pool) {
		free(patch), free(x), free(y), free(pool);
		return vlm_error("out of memory");
	}
	vlm_patchify_fwd_ref(patch, img, 1, 3, c->S, c->S, c->p);
	vlm_linear_fwd_cpu(y, patch, W(c, "visual.conv1.weight"), NULL, P, pp,
	    D);
	vlm_cls_prepend_fwd_ref(x, y, W(c, "visual.class_embedding"), 1, P, D);
	vlm_posembed_fwd_ref(x, x, W(c, "visual.positional_embedding"), 1, N,
	    D);
	vlm_layernorm_fwd_cpu(y, NULL, NULL, x, W(c, "visual.ln_pre.weight"),
	    W(c, "visual.ln_pre.bias"), N, D);
	for (int l = 0; l < c->Lv; l++) {
		snprintf(pre, sizeof(pre), "visual.transformer.resblocks.%d", l);
		block(c, pre, y, N, D, c->Hv, NULL, 0, NULL, 0);
	}
	pooler(c, pool, y, N);
	vlm_layernorm_fwd_cpu(pool, NULL, NULL, pool,
	    W(c, "visual.ln_post.weight"), W(c, "visual.ln_post.bias"), c->Q,
	    E);
	vlm_gemm_cpu(0, 0, 1, E, E, 1, pool, E, W(c, "visual.proj"), E, 0,
	    feat, E);
	if (embs)
		memcpy(embs, pool + E, (size_t)(c->Q - 1) * E * sizeof(float));
	free(patch), free(x), free(y), free(pool);
	return 0;
}

int
vlm_coca_text(const struct vlm_coca *c, const int32_t *ids, int n,
    float *feat, float *tok)
{
	int N = n + 1, D = c->Dt;
	float *x, *mask, *ln;
	char pre[96];

	if (n < 1 || n > c->T)
		return vlm_error("text of %d tokens (1 to %d)", n, c->T);
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= c->V)
			return vlm_error("token id %d out of range", ids[i]);
	x = malloc((size_t)N * D * sizeof(float));
	mask = calloc((size_t)N * N, sizeof(float));
	ln = malloc((size_t)D * sizeof(float));
	if (!x || !mask || !ln) {
		free(x), free(mask), free(ln);
		return vlm_error("out of memory");
	}
	vlm_embed_fwd_ref(x, ids, W(c, "text.token_embedding.weight"), n, c->V,
	    D);
	memcpy(x + (size_t)n * D, W(c, "text.cls_emb"), D * sizeof(float));
	vlm_posembed_fwd_ref(x, x, W(c, "text.positional_embedding"), 1, N, D);
	/* the class row: key 0, and key j + 1 where ids[j] is not pad */
	for (int j = 1; j < N; j++)
		mask[(size_t)n * N + j] = ids[j - 1] ? 0 : -INFINITY;
	for (int l = 0; l < c->Lt; l++) {
		snprintf(pre, sizeof(pre), "text.transformer.resblocks.%d", l);
		block(c, pre, x, N, D, c->Ht, mask, 1, NULL, 0);
	}
	vlm_layernorm_fwd_cpu(ln, NULL, NULL, x + (size_t)n * D,
	    W(c, "text.ln_final.weight"), W(c, "text.ln_final.bias"), 1, D);
	if (feat)
		vlm_gemm_cpu(0, 0, 1, c->E, D, 1, ln, D,
		    W(c, "text.text_projection"), c->E, 0, feat, c->E);
	if (tok)
		memcpy(tok, x, (size_t)n * D * sizeof(float));
	free(x), free(mask), free(ln);
	return 0;
}

int
vlm_coca_decode(const struct vlm_coca *c, const float *embs,
    const float *tok, int n, float *hidden, float *logits)
{
	int D = c->Dd;
	char pre[96];

	memcpy(hidden, tok, (size_t)n * D * sizeof(float));
	for (int l = 0; l < c->Ld; l++) {
		snprintf(pre, sizeof(pre), "text_decoder.resblocks.%d", l);
		block(c, pre, hidden, n, D, c->Hd, NULL, 1, NULL, 0);
		snprintf(pre, sizeof(pre), "text_decoder.cross_attn.%d", l);
		block(c, pre, hidden, n, D, c->Hd, NULL, 0, embs, c->Q - 1);
	}
	vlm_layernorm_fwd_cpu(hidden, NULL, NULL, hidden,
	    W(c, "text_decoder.ln_final.weight"),
	    W(c, "text_decoder.ln_final.bias"), n, D);
	if (logits)
		vlm_gemm_cpu(0, 0, n, c->V, D, 1, hidden, D,
		    W(c, "text_decoder.text_projection"), c->V, 0, logits,
		    c->V);
	return 0;
}
