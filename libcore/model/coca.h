/*
 * model/coca.h - OpenCLIP's CoCa (contrastive captioner) read straight
 * from an OpenCLIP checkpoint: image tower with attentional pooler, text
 * tower with an appended class token, multimodal decoder cross-attending
 * to the image tokens; features, decoder logits, CoCaLoss and greedy
 * captioning, each as OpenCLIP 2.32 computes them (model/coca.c).
 */
#ifndef VLM_LIBCORE_MODEL_COCA_H
#define VLM_LIBCORE_MODEL_COCA_H

#include <stdint.h>

#include "formats/formats.h"

#define VLM_COCA_MAX_WIDTH 16384

/* Shapes come from the weights, heads and activation from the config. */
struct vlm_coca {
	struct vlm_st st;  /* the checkpoint, owned */
	int E;             /* embed_dim, e.g. 512 */
	int S, p;          /* image size, patch size, e.g. 224, 32 */
	int Dv, Lv, Hv;    /* vision width, layers, heads, e.g. 768, 12, 12 */
	int Q, Hq;         /* pooler queries and heads, e.g. 256, 8 */
	int Dt, Lt, Ht, T; /* text width, layers, heads, context (76) */
	int Dd, Ld, Hd;    /* decoder width, layers, heads */
	int V;             /* vocabulary, e.g. 49408 */
	int quick;         /* QuickGELU instead of GELU */
	int32_t sot, eot;  /* generation's start and end ids: V - 2, V - 1
	                    * (49406, 49407) unless the tokenizer, smaller
	                    * than the vocabulary, says otherwise */
	int Ed, Kd;        /* decoder MoE: experts, top-k, e.g. 4, 2 (Ed 0:
	                    * dense); which blocks: model/coca-moe.c */
	float aux_importance; /* weight of the decoder routers' importance
	                    * CV^2 in vlm_coca_grad, e.g. 0.01 (0: off; not
	                    * in the file: vlm-train --set aux.importance) */
	/* LoRA adapters of the decoder (model/coca-lora.c) */
	int nlora, lora_rank;         /* adapted tensors, their rank r */
	double lora_alpha;            /* config lora_alpha (0: r) */
	float lora_scale;             /* alpha / r */
	struct vlm_coca_lora *lora;   /* [nlora] */
	float *lora_eff;              /* the effective weights, owned */
};

/* One adapted weight: tensor w (effective weights) = base + s B A. */
struct vlm_coca_lora {
	int w, a, b;        /* tensor indices: the weight, lora_a, lora_b */
	int nb, out, in, r; /* nb stacked matrices (E experts, or 1) */
	float *base;        /* the base weights (the file's or a slab's) */
};

/* Load weights (safetensors, OpenCLIP names) and open_clip_config.json
 * (NULL: the file's own "vlm.coca", else OpenCLIP's defaults). */
int vlm_coca_load(struct vlm_coca *c, const char *weights, const char *config);
void vlm_coca_release(struct vlm_coca *c);
/* Index in c->st.tensors of the tensor of a formatted name, e.g.
 * ("text.transformer.resblocks.%d.ln_1.weight", l); one that load did not
 * check present is a bug: it aborts. */
int vlm_coca_index(const struct vlm_coca *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Save as a vlm CoCa model file (model/coca-file.c), with the BPE merges
 * text of its tokenizer or NULL; vlm_coca_load reads it back (config
 * NULL). */
int vlm_coca_save(const struct vlm_coca *c, const char *path,
    const char *merges);
/* The same for n tensors of names and ts, with c's config keys (heads,
 * pooler, activation, moe_top_k; its tensors unused). */
int vlm_coca_write(const char *path, const char *const *names,
    const struct vlm_tensor *ts, int n, const struct vlm_coca *c,
    const char *merges);
/* 1 if the safetensors file holds a CoCa decoder, 0 if not, -1 if it
 * cannot be read. */
int vlm_coca_is_checkpoint(const char *path);
/* The tokenizer merges the file carries, or NULL. */
const char *vlm_coca_merges(const struct vlm_coca *c);
/* One image (3,S,S) normalised: feature (E) before normalisation and the
 * decoder's image tokens embs (Q-1, E). */
int vlm_coca_image(const struct vlm_coca *c, const float *img, float *feat,
    float *embs);
/* One text of n <= T ids: feature (E) before normalisation (pooled class
 * token) and the token outputs tok (n, Dt) the decoder reads. */
int vlm_coca_text(const struct vlm_coca *c, const int32_t *ids, int n,
    float *feat, float *tok);
/* Decoder over n token rows tok (n, Dd) and image tokens embs (Q-1, E):
 * hidden (n, Dd) after ln_final, logits (n, V) or NULL. */
int vlm_coca_decode(const struct vlm_coca *c, const float *embs,
    const float *tok, int n, float *hidden, float *logits);

struct vlm_coca_loss {
	float contrastive; /* ClipLoss, times its weight */
	float caption;     /* mean CE over non-pad labels, times its weight */
	float aux;         /* vlm_coca_grad only: the decoder routers'
	                    * importance loss times c->aux_importance */
	float total;
};
/* CoCaLoss of B images (B,3,S,S) and texts ids (B,T) (pad 0), weights
 * as OpenCLIP's CoCaLoss(caption_loss_weight, clip_loss_weight). */
int vlm_coca_loss(const struct vlm_coca *c, const float *imgs,
    const int32_t *ids, int B, float w_caption, float w_clip,
    struct vlm_coca_loss *out);

/* Gradients (model/coca-grad.c): one zeroed buffer per checkpoint
 * tensor, in file order (g[i] for c->st.tensors[i]); NULL on no memory. */
float **vlm_coca_grads_new(const struct vlm_coca *c);
void vlm_coca_grads_free(const struct vlm_coca *c, float **g);
/* The loss of vlm_coca_loss, and g += its gradient for every tensor. */
int vlm_coca_grad(const struct vlm_coca *c, const float *imgs,
    const int32_t *ids, int B, float w_caption, float w_clip, float **g,
    struct vlm_coca_loss *out);

/* Generation as OpenCLIP's generate(): SOT first, EOT barred before
 * min_len tokens, stop at EOT, EOT forced at position len - 1; out holds
 * len ids; returns the count written (<= len), -1 on error. */
int vlm_coca_greedy(const struct vlm_coca *c, const float *img, int len,
    int min_len, int32_t *out);
/* Beam search as generate(generation_type='beam_search'): nb beams in G
 * groups (G divides nb), the same contract as vlm_coca_greedy. */
#define VLM_COCA_MAX_BEAMS 16
#define VLM_COCA_MAX_LEN 77
int vlm_coca_beam(const struct vlm_coca *c, const float *img, int len,
    int min_len, int nb, int G, int32_t *out);

/* New model files (model/coca-new.c). */
struct vlm_coca_shape {
	int E;             /* embed = text = decoder width, e.g. 32 */
	int S, p;          /* image, patch size, e.g. 32, 8 */
	int Dv, Lv, Hv;    /* vision width, layers, heads, e.g. 64, 2, 2 */
	int Q, Hq;         /* pooler queries, heads, e.g. 17, 4 */
	int Lt, Ht, T;     /* text layers, heads, context, e.g. 2, 2, 16 */
	int Ld, Hd;        /* decoder layers, heads, e.g. 2, 2 */
	int V;             /* vocabulary, e.g. 49408 */
	int mlp;           /* MLP ratio, e.g. 4 */
	int moe_experts, moe_top_k, moe_every; /* decoder MoE, e.g. 0, 2, 2 */
	int moe_mlp;       /* the experts' MLP ratio, e.g. 2 (0: mlp) */
};
/* coca-tiny, the shape above's e.g. values. */
void vlm_coca_shape_preset(struct vlm_coca_shape *s);
/* One "key=value" override: embed_dim, image_size, patch_size,
 * vision.{width,layers,heads}, pooler.{queries,heads},
 * text.{layers,heads}, context, decoder.{layers,heads}, vocab,
 * mlp_ratio, moe.{experts,top_k,every,mlp_ratio}. */
int vlm_coca_shape_set(struct vlm_coca_shape *s, const char *kv);
/* A CoCa model file of shape s, initialised as OpenCLIP does (seeded);
 * MoE FFNs in decoder blocks moe_every-1, 2 moe_every-1, ... */
int vlm_coca_create(const char *path, const struct vlm_coca_shape *s,
    uint64_t seed, const char *merges);
/* c with the MLP of decoder blocks every-1, 2 every-1, ... made E
 * experts (copies of it) and a router N(0, std^2) (seeded), top-K. */
int vlm_coca_upcycle(const struct vlm_coca *c, const char *path, int E,
    int K, int every, double std, uint64_t seed, const char *merges);

/* LoRA (model/coca-lora.c). Set up the adapters c's file holds, scale
 * alpha / r (alpha 0: r); vlm_coca_load does it. */
int vlm_coca_lora_load(struct vlm_coca *c, double alpha);
/* Recompute the effective weights after the adapters or bases moved. */
void vlm_coca_lora_sync(const struct vlm_coca *c);
/* gr[a], gr[b] += the adapters' gradients from gr[w] (effective). */
void vlm_coca_lora_grads(const struct vlm_coca *c, float **gr);
/* A copy of c->st.tensors with the base weights, as a save writes them
 * (malloc'ed), NULL on no memory. */
const struct vlm_tensor *vlm_coca_lora_base_alloc(const struct vlm_coca *c);
/* c's adapters folded into its weights (W + s B A, per expert) and
 * written to path as a plain model (no adapters, no lora_alpha). */
int vlm_coca_merge_lora(const struct vlm_coca *c, const char *path,
    const char *merges);
/* c with rank-r adapters (A ~ N(0, 1/in), B = 0: the same function) on
 * the decoder's attention and FFN weights, alpha into the config. */
int vlm_coca_add_lora(const struct vlm_coca *c, const char *path, int r,
    double alpha, uint64_t seed, const char *merges);

/* MoE FFNs of decoder blocks (model/coca-moe.c). */
struct vlm_coca_moe {    /* a forward's saves for the backward */
	int N, E, K, F;
	int32_t *idx;    /* (N,K) each token's experts */
	float *w;        /* (N,K) their gates */
	int32_t *order;  /* (N*K) assignments t*K+k in expert order */
	int32_t *start;  /* (E+1) each expert's first row of that order */
	float *x, *h, *g, *o; /* rows in that order: input (D), c_fc out
	                       * and its GELU (F), expert output (D) */
	float *p;        /* (N,E) softmax of all E router logits, with
	                  * c->aux_importance > 0 (else NULL) */
	float aux;       /* importance CV^2 of p over these N tokens */
	float aux_w;     /* the backward's dL/daux (the caller sets it) */
};
/* 1 if the block at prefix pre has an MoE FFN (a router). */
int vlm_coca_moe_at(const struct vlm_coca *c, const char *pre);
/* y (N,D) += the MoE FFN of block pre on x (N,D) (ln_2's output); the
 * saves into s, or none with s NULL. */
void vlm_coca_moe_fwd(const struct vlm_coca *c, const char *pre,
    const float *x, int N, float *y, struct vlm_coca_moe *s);
/* dx (N,D) += from dy (N,D); the experts' and router's gradients
 * accumulate into gr (vlm_coca_grads_new), with s->aux_w times the
 * importance loss's through the router. */
void vlm_coca_moe_bwd(const struct vlm_coca *c, float **gr,
    const char *pre, const struct vlm_coca_moe *s, const float *x,
    const float *dy, float *dx);
void vlm_coca_moe_free(struct vlm_coca_moe *s);
/* Forward FLOPs (multiply-adds twice; LayerNorms, softmax, GELU not
 * counted) of part 0 an image, 1 a text of T tokens, 2 the decoder over
 * T - 1 tokens with the logits; an MoE FFN counts its router and K of
 * its experts. */
double vlm_coca_flops(const struct vlm_coca *c, int part);

#endif
