/*
 * model/model.h - the sparse MoE CLIP model: its configuration, parameters
 * and files, forward and backward over a preallocated run, encoders, LoRA
 * adapters, sparse upcycling, OpenCLIP import.
 */
#ifndef VLM_LIBCORE_MODEL_H
#define VLM_LIBCORE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- model configuration (model/config.c) -------------------------------- */

enum vlm_family { VLM_TWO_TOWER, VLM_ONE_TOWER };
enum vlm_act { VLM_ACT_GELU, VLM_ACT_QUICKGELU };
enum vlm_pool { VLM_POOL_CLS, VLM_POOL_EOT, VLM_POOL_GAP, VLM_POOL_MAP };
enum vlm_gate_norm { VLM_GATE_NONE, VLM_GATE_TOPK };
enum vlm_moe_towers { VLM_MOE_BOTH, VLM_MOE_VISION, VLM_MOE_TEXT };

/*
 * Limits every config is checked against where it is read (the key table
 * in config.c; vlm-model(5) lists them). Experts are bounded by
 * VLM_MAX_EXPERTS (kernels.h, 1024).
 */
#define VLM_MAX_WIDTH 16384     /* embed_dim, widths, token_reduction.hidden */
#define VLM_MAX_LAYERS 256      /* per tower; also moe.every, moe.last */
#define VLM_MAX_HEADS 256
#define VLM_MAX_MLP_RATIO 64
#define VLM_MAX_IMAGE 4096      /* image_size, patch_size in pixels */
#define VLM_MAX_PATCHES 16384   /* (image_size / patch_size)^2; M tokens */
#define VLM_MAX_CONTEXT 16384   /* text tokens */
#define VLM_MAX_VOCAB 1048576
#define VLM_MAX_LORA_RANK 4096
#define VLM_MAX_CF 64           /* capacity factors */
#define VLM_MAX_PARAMS ((int64_t)1 << 36) /* floats in a model, 256 GiB */

/* One encoder tower. In a one-tower model both share width/layers/heads. */
struct vlm_tower_config {
	int width;      /* e.g. 768 */
	int layers;     /* e.g. 12 */
	int heads;      /* e.g. 12; must divide width */
	int mlp_ratio;  /* e.g. 4: MLP hidden width = mlp_ratio * width */
	enum vlm_pool pool; /* vision: cls; text: eot */
};

struct vlm_config {
	enum vlm_family family; /* e.g. two-tower (CLIP), one-tower (LIMoE) */
	enum vlm_act act;       /* gelu (exact erf) or quickgelu */
	int embed_dim;          /* e.g. 512: the joint embedding width */
	int image_size;         /* e.g. 224 */
	int patch_size;         /* e.g. 32 */
	int context;            /* e.g. 77 text tokens */
	int vocab;              /* e.g. 49408 */
	float logit_scale_init; /* e.g. log(1/0.07) = 2.6593 */
	float mean[3], std[3];  /* image normalisation (OpenAI values) */
	int image_alpha;        /* enum vlm_alpha, e.g. resize-first */
	struct vlm_tower_config vision, text;

	/* sparse MoE (ALGORITHMS.md sections 1-2); experts == 0: dense */
	struct {
		int experts;          /* E, e.g. 8 */
		int top_k;            /* K, e.g. 1 */
		int every;            /* MoE in blocks n-1, 2n-1, ... e.g. 2 */
		int last;             /* if > 0: only the last n of those */
		enum vlm_moe_towers towers; /* two-tower: which have MoE */
		float cf_train;       /* capacity factor, e.g. 1.0; 0 = no drop */
		float cf_eval;        /* e.g. 1.0 */
		int min_capacity;     /* C_min, e.g. 4 */
		int bpr;              /* Batch Priority Routing on/off */
		float noise;          /* router noise scale, e.g. 1.0 (/E) */
		enum vlm_gate_norm gate_norm; /* none (V-MoE) or topk */
		int modality_experts; /* VL-MoE: per-modality pools */
	} moe;

	/* auxiliary losses (section 3): weights, 0 = off */
	struct {
		int limoe;           /* 1: aux = w_limoe * mean of active terms */
		float w_limoe;       /* e.g. 0.04 */
		float importance;    /* e.g. 0.005 (V-MoE) */
		float load;          /* e.g. 0.005 (V-MoE) */
		float switch_bal;    /* e.g. 0.01 (Switch) */
		float zloss;         /* e.g. 0.001 */
		float local_img, local_txt;   /* LIMoE local entropy */
		float global_img, global_txt; /* LIMoE global entropy */
		float s_image, s_text;        /* e.g. 20, 9 (clamped to E) */
	} aux;

	/* token reduction (JARed TokenLearner); after < 0: off */
	struct {
		int after;  /* block index after which image tokens are cut */
		int tokens; /* M, e.g. 8 */
		int hidden; /* its MLP's width, e.g. 64 */
	} tl;

	/* VL-MoE fusion (model/fusion.c); layers 0: none */
	struct {
		int layers;   /* F fusion blocks over [image; text], e.g. 2 */
		int answers;  /* A: a QA head's classes, e.g. 12; 0 none */
	} fusion;

	/* LoRA adapters (model/lora.c); rank 0: none */
	struct {
		int rank;     /* r, e.g. 8 */
		float alpha;  /* scale alpha / r, e.g. 16; 0: alpha = r */
		int targets;  /* enum vlm_lora_targets, e.g. all */
	} lora;
};

/* Named presets: "tiny", "s", "b", "openclip-tiny"...; -1 if unknown. */
int vlm_config_preset(struct vlm_config *c, const char *name);
/* Parse JSON text (any subset of keys, over the current values). */
int vlm_config_from_json(struct vlm_config *c, const char *json);
/* Apply one "dotted.key=value" override, e.g. "moe.experts=8". */
int vlm_config_set(struct vlm_config *c, const char *kv);
/* Serialise every key as JSON; caller frees. NULL on out of memory. */
char *vlm_config_to_json_alloc(const struct vlm_config *c);
/* Refuse bad combinations (K > E, heads not dividing width, ...). */
int vlm_config_check(const struct vlm_config *c);
int vlm_config_check_moe(const struct vlm_config *c); /* part of it */
/* Is block l of the given tower (0 vision, 1 text; any in one-tower) MoE? */
int vlm_config_is_moe(const struct vlm_config *c, int tower, int l);
/* Image tokens entering the blocks: (S/P)^2 + class token if pooled so. */
int vlm_config_image_tokens(const struct vlm_config *c);

/* ---- model parameters and files (model/model.c) -------------------------- */

/* One named parameter: a view into the model's slabs at `off` floats. */
struct vlm_param {
	char name[96];       /* OpenCLIP-style, e.g. "visual.proj" */
	int ndim;
	int64_t shape[4];
	int64_t off;         /* offset in floats into every slab */
	int64_t n;           /* element count */
	int decay;           /* AdamW weight decay applies (OpenCLIP rule) */
};

/* Offsets of one transformer block's parameters (-1: absent). */
struct vlm_block_off {
	int64_t ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b;
	int64_t fc_w, fc_b, proj_w, proj_b; /* dense MLP */
	int moe;                  /* 0 dense; else number of pools (1 or 2) */
	int64_t router[2];        /* (E, D) per pool: [0] image/shared, [1] text */
	int64_t efc_w[2], efc_b[2], eproj_w[2], eproj_b[2]; /* (E,F,D) (E,F) (E,D,F) (E,D) */
};

/* Offsets of one tower's embedding and head parameters (-1: absent). */
struct vlm_tower_off {
	int64_t patch_w, cls, tok_emb, pos, ln_pre_w, ln_pre_b;
	int64_t ln_post_w, ln_post_b, proj; /* proj (width, embed_dim): x @ proj */
	int64_t map_q, map_in_w, map_in_b, map_out_w, map_out_b; /* pool: map */
	int64_t tl_ln_w, tl_ln_b, tl_w1, tl_b1, tl_w2, tl_b2; /* TokenLearner */
	int nblocks;
	struct vlm_block_off *blocks;       /* shared by both in one-tower */
};

/* Offsets of the fusion blocks and heads (fusion.layers > 0; else -1). */
struct vlm_fusion_off {
	int nblocks;
	struct vlm_block_off *blocks; /* MoE blocks: one pool, the VL one */
	int64_t ln_w, ln_b;           /* fusion.ln_post (D) */
	int64_t itm_w, itm_b;         /* fusion.itm_head (2, D) (2) */
	int64_t mlm_b;                /* fusion.mlm_head.bias (vocab); the
	                               * weight is token_embedding (tied) */
	int64_t qa_w, qa_b;           /* fusion.qa_head (A, D) (A), or -1 */
};

struct vlm_model {
	struct vlm_config cfg;
	int nparams;
	struct vlm_param *params;
	int64_t nfloats;          /* slab length */
	float *w;                 /* parameters (owned, or into a mapping) */
	struct vlm_tower_off vis, txt;
	struct vlm_fusion_off fus;
	int64_t logit_scale;
	char *tokenizer;          /* BPE merges text carried in the file, or NULL */
	struct vlm_map file;      /* the model file w points into, if mapped */
};

/* Build the parameter table for a config and allocate a zeroed slab. */
int vlm_model_init(struct vlm_model *m, const struct vlm_config *c);
void vlm_model_release(struct vlm_model *m);
/* m's config := c if c gives the same parameters (names and shapes):
 * routing and loss settings may change; -1 with a message if not. */
int vlm_model_reconfig(struct vlm_model *m, const struct vlm_config *c);
/* OpenCLIP's initialisation (normal with its per-tensor stds), seeded. */
void vlm_model_randomize(struct vlm_model *m, uint64_t seed);
/* Find a parameter by name; NULL if absent. */
const struct vlm_param *vlm_model_param(const struct vlm_model *m,
    const char *name);
/*
 * Load a vlm model file (safetensors with config in its metadata). A file
 * whose tensors are all F32 laid out as the slab, starting 64-byte
 * aligned (what vlm_model_save writes), is mapped and not copied: m->w
 * points into the mapping, copy-on-write (a page written, as training
 * does, becomes private memory; the file never changes), and pages are
 * read from the page cache only when first used. Other files (F16 or
 * BF16 tensors, another layout, stdin) are copied into a new slab.
 */
int vlm_model_load(struct vlm_model *m, const char *path);
/* Does m->w point into a mapped file (1) or own its slab (0)? */
int vlm_model_mapped(const struct vlm_model *m);
/*
 * -1 with a message naming the first parameter holding a NaN or an
 * infinity (a NaN in a file would make every output NaN). In a mapped
 * model whose pages were never written, the pages read for the check
 * are let go again (the file still holds them), so that a run faults in
 * only the weights it uses: an image-only run never holds the text
 * tower's.
 */
int vlm_model_check_finite(const struct vlm_model *m, const char *path);
/* Save parameters, config and tokenizer as one safetensors file, F32 in
 * slab order from a 64-byte aligned start: it loads mapped. */
int vlm_model_save(const struct vlm_model *m, const char *path);
/* Total parameters, and parameters active per token (K of E experts). */
int64_t vlm_model_active_params(const struct vlm_model *m);
/* Forward FLOPs per image and per text (ALGORITHMS.md section 5): MoE
 * layers count K expert rows per token, or with allocated the E*C rows
 * their capacity (cf_eval) sets aside. */
double vlm_model_flops(const struct vlm_model *m, int text, int allocated);
/* The same per image-text pair through a fusion model's fusion blocks
 * (image tokens then the text's context, full attention) and its ITM
 * head; 0 without fusion blocks. */
double vlm_model_fusion_flops(const struct vlm_model *m, int allocated);
/*
 * Import an OpenCLIP- or HF-named CLIP checkpoint (safetensors); config
 * is its open_clip_config.json or config.json (heads, activation), or
 * NULL for OpenCLIP defaults (head width 64, text heads 8, GELU).
 */
int vlm_model_import(struct vlm_model *m, const char *weights,
    const char *config);

/* ---- packed slabs (model/pack.c) ---------------------------------------- */

/*
 * The gradients or optimizer moments of only some of a model's
 * parameters (the trainable ones: frozen weights cost nothing), one
 * after the other in parameter order. With nothing left out it is the
 * model's own slab layout.
 */
struct vlm_pack {
	int nparams;  /* the model's */
	int64_t *off; /* (nparams) floats into the packed slab; -1: left out */
	int64_t n;    /* floats in it */
	/* sharded over P ranks (vlm_pack_init_shard), rank q: parameter i's
	 * elements lo[i] .. lo[i] + len[i] - 1 at off[i]; the whole
	 * parameters come first, nrep floats (NULL lo, len: unsharded) */
	int q, P;
	int64_t *lo, *len, nrep;
};
/* The parameters of m but those skip[i] marks (NULL: none). */
int vlm_pack_init(struct vlm_pack *p, const struct vlm_model *m,
    const uint8_t *skip);
void vlm_pack_release(struct vlm_pack *p);
/* model/shard.c: the experts split over P ranks. Is parameter i
 * stacked over the experts (moe.experts.*, (E, ...))? */
int vlm_param_experts(const struct vlm_model *m, int i);
/* The elements lo .. lo + n - 1 of parameter i rank q of P holds. */
void vlm_param_held(const struct vlm_model *m, int i, int q, int P,
    int64_t *lo, int64_t *n);
/* vlm_pack_init, of what rank q of P holds: the whole parameters first,
 * then its experts' part of the stacked ones. */
int vlm_pack_init_shard(struct vlm_pack *p, const struct vlm_model *m,
    const uint8_t *skip, int q, int P);
/* Let go of the pages of other ranks' experts (never to be read). */
void vlm_model_drop_others(struct vlm_model *m, int q, int P);
/* DIR/model-QQQQQ-of-PPPPP.safetensors */
void vlm_shard_name(char *buf, size_t size, const char *dir, int q, int P);
/* What rank q of P holds into path: rank 0 the config, the tokenizer and
 * the whole parameters, every rank its experts' rows of the stacked
 * ones (under their names, shape (E/P, ...)). */
int vlm_model_save_shard(const struct vlm_model *m, const char *path, int q,
    int P);
/* The shard count of the sharded model in dir (0: none). */
int vlm_shard_count(const char *dir);
/* The model of the P shards in dir; only >= 0: rank only's part (the
 * rest of the slab never touched), -1: all of it. */
int vlm_model_load_shards(struct vlm_model *m, const char *dir, int P,
    int only);
/* Where parameter i lies in p's slab (-1: left out); p NULL: m's slab. */
int64_t vlm_pack_at(const struct vlm_pack *p, const struct vlm_model *m,
    int i);

/* ---- forward and backward (model/forward.c, backward.c) ------------------ */

struct vlm_loss {
	float total;        /* contrastive + aux */
	float contrastive;  /* OpenCLIP ClipLoss */
	float aux;          /* weighted router losses, all MoE layers */
	float logit_scale;  /* exp(theta) */
	/* fusion models (model/fusion.c), else 0 */
	float itm, itm_acc; /* image-text matching CE, accuracy */
	float mlm, mlm_acc; /* masked-token CE, accuracy */
	float qa, qa_acc;   /* question answering CE, accuracy */
};

/* Activations for B_img images and B_txt texts (either may be 0), all
 * allocated here once; train keeps every layer's for the backward. The
 * run's ops go through the backend VLM_BACKEND names (kernels.h; "cpu"
 * by default); NULL with vlm_error for an unknown backend or one that
 * lacks an op the model needs. */
struct vlm_run;
struct vlm_backend;
/* The most token rows one run's batch may hold (images times their
 * tokens plus texts times the context): larger batches are refused. */
#define VLM_RUN_MAX_ROWS (1 << 24)
struct vlm_run *vlm_run_new(const struct vlm_model *m, int B_img, int B_txt,
    int train);
/* The same on backend be (kernels.h: vlm_backend_get). */
struct vlm_run *vlm_run_new_on(const struct vlm_backend *be,
    const struct vlm_model *m, int B_img, int B_txt, int train);
/* The same with room for B_fused fused pairs of a fusion model
 * (model/fusion.c); B_fused 0: its encoders only. */
struct vlm_run *vlm_run_new_fusion(const struct vlm_model *m, int B_img,
    int B_txt, int B_fused, int train);
struct vlm_run *vlm_run_new_fusion_on(const struct vlm_backend *be,
    const struct vlm_model *m, int B_img, int B_txt, int B_fused,
    int train);
/* The same for one of P ranks that each hold B_img images and B_txt
 * texts of one global batch: MoE buffers sized for routing over the
 * group of all the ranks' tokens (vlm_run_route_group). */
struct vlm_run *vlm_run_new_group(const struct vlm_backend *be,
    const struct vlm_model *m, int B_img, int B_txt, int train, int P);
void vlm_run_free(struct vlm_run *r);
/* The backend the run's ops go through (its gradients are that
 * backend's memory: accumulate them with its add and scale). */
const struct vlm_backend *vlm_run_backend(const struct vlm_run *r);
/* Bytes of activations (and gradient scratch) the run holds. */
size_t vlm_run_bytes(const struct vlm_run *r);
/* Seed the router-noise generator (training). */
void vlm_run_seed(struct vlm_run *r, uint64_t seed);
/* That generator itself, to save and restore with checkpoints. */
struct vlm_rng *vlm_run_rng(struct vlm_run *r);
/* images (B_img, 3, S, S) normalised pixels; tokens (B_txt, context). */
int vlm_forward(struct vlm_run *r, const struct vlm_model *m,
    const float *images, const int32_t *tokens);
/* Contrastive + aux loss after vlm_forward (B_img == B_txt). */
int vlm_run_loss(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_loss *out);
/* Features (B, embed_dim) of images (text 0) or texts; unit: normalised. */
const float *vlm_run_features(const struct vlm_run *r, int text, int unit);
/* Residual stream entering block l (l = layers: the output; l < 0: after
 * the final LayerNorm) of one modality: rows x D. */
const float *vlm_run_stream(const struct vlm_run *r, int text, int l,
    int *rows, int *D);
/* The routing of one MoE layer's pool in the last forward: tokens S
 * (rows of the stack, modality), choices idx/keep/w (S,K), logits z and
 * probabilities p (S,E), kept per expert fill (E), capacity C. */
struct vlm_route_view {
	int S, C;
	int block;  /* the block asked for (for vlm_run_row_info) */
	const int32_t *rows, *idx, *fill;
	const uint8_t *mod, *keep;
	const float *w, *z, *p;
};
/* -1 when block l of that modality's stack has no MoE (or no pool).
 * Fusion blocks are blocks layers .. layers + fusion.layers - 1 of
 * either modality, one pool whose rows hold both (mod 0 image, 1 text),
 * after vlm_fusion_forward.
 * A run routing over a group of ranks (vlm_run_route_group) gives the
 * group's records, rows NULL. */
int vlm_run_route(const struct vlm_run *r, int text, int l, int pool,
    struct vlm_route_view *v);
/* Gradients of the loss into grad (nfloats, or as vlm_run_pack packs
 * them; zeroed here) after vlm_run_loss. */
int vlm_backward(struct vlm_run *r, const struct vlm_model *m, float *grad);
/* The same from a loss computed outside the run (over the features of
 * several ranks, cmd/train-dist.c): its gradient dimg, dtxt (B, embed)
 * with respect to the run's unit features (host memory), the aux terms
 * weighted aux_w (e.g. 1/ranks); logit_scale's gradient is left 0. */
int vlm_backward_from(struct vlm_run *r, const struct vlm_model *m,
    float *grad, const float *dimg, const float *dtxt, float aux_w);
/* Expert parallel over c's ranks (model/moe-ep.c): rank q computes
 * experts q*E/P .. (q+1)*E/P - 1 of every MoE layer for every rank's
 * tokens, moved by all-to-all; the backward writes only those experts'
 * gradients (sum the ranks' gradients). c must outlive the run. */
struct vlm_comm;
int vlm_run_expert_parallel(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_comm *c);
/* Route every MoE layer over the group of c's ranks' tokens as one
 * process routes the whole batch (model/moe-group.c): rank q's tokens
 * follow rank q-1's within each modality, the router noise is drawn for
 * the whole group from the run's generator (seed every rank alike), and
 * top-K, capacity, batch priority and the aux losses are those of the
 * group; each rank keeps its own tokens' choices and the aux gradients
 * of its own tokens (its weight in vlm_backward_from is then 1, not
 * 1/P). r must come from vlm_run_new_group with c's size; c must
 * outlive the run. */
int vlm_run_route_group(struct vlm_run *r, const struct vlm_model *m,
    struct vlm_comm *c);
/* Parameters whose gradient nobody reads, e.g. frozen ones: nograd[i]
 * for parameter i of m (the run's model), NULL for none. The backward
 * then neither computes nor writes theirs (that part of grad stays 0:
 * no GEMM for a frozen weight's gradient) and does not differentiate
 * what leads only to them (a locked tower is not differentiated at
 * all). The run keeps a copy. */
int vlm_run_freeze(struct vlm_run *r, const struct vlm_model *m,
    const uint8_t *nograd);
/* As vlm_run_freeze with the parameters p leaves out, and from now on
 * the backward writes the gradients packed as p lays them out: grad
 * holds p->n floats (p NULL: back to m's slab layout, no freezing).
 * The run keeps a copy. */
int vlm_run_pack(struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_pack *p);
/* Parameters fold[i] of m (weights of the transformer blocks, e.g. the
 * ones LoRA adapts) get their gradient not in grad but in a scratch of
 * one block, handed to fn(ctx, i, dw) when the block's backward is done
 * (dw: the whole gradient of parameter i, the backend's memory, valid
 * during the call): no slab holds them. They are differentiated even if
 * frozen. NULL: none. After vlm_run_freeze or vlm_run_pack, which do
 * not keep it. */
int vlm_run_fold(struct vlm_run *r, const struct vlm_model *m,
    const uint8_t *fold, void (*fn)(void *ctx, int i, const float *dw),
    void *ctx);
/* Where vlm_backward puts the gradient of the parameter at slab float
 * off of m, k floats into it, given its grad: grad + off + k, or its
 * place in the packed slab (vlm_run_pack) or in a block's fold scratch
 * (vlm_run_fold, the backend's memory); NULL when nobody reads it
 * (frozen; the kernels skip a NULL gradient). The backward and
 * model/moe-ep.c write through it. */
float *vlm_run_grad(const struct vlm_run *r, const struct vlm_model *m,
    float *grad, int64_t off, int64_t k);

/* ---- VL-MoE fusion (model/fusion.c) ------------------------------------- */

/*
 * A model with fusion.layers = F > 0 runs, on a run made with room for
 * fused pairs (vlm_run_new_fusion), F fusion blocks over each pair's
 * [image tokens; text tokens] after vlm_forward: full attention with the
 * text's padding masked, MoE blocks routing both through one more pool
 * (the vision-language experts). Heads: ITM, P(match) from the fused
 * class token (fusion.ln_post, a linear to 2); MLM, the vocabulary from
 * fused text rows (fusion.ln_post, the tied token embedding and a bias).
 * vlm_backward then also differentiates the fused pairs' losses.
 */
struct vlm_fusion_batch {
	int n;                /* pairs, at most the run's B_fused */
	const int32_t *img;   /* (n) rows of the run's images */
	const int32_t *txt;   /* (n) rows of the run's texts */
	const int8_t *itm;    /* (n) 1 match, 0 not, -1 no ITM loss; or NULL */
	const int32_t *mlm;   /* (n, context) the id to predict at each text
	                       * position, -1 none; or NULL */
	const int32_t *answer; /* (n) QA class, -1 none; or NULL */
};
/* After vlm_forward: the pairs through the fusion blocks and heads;
 * out's itm, itm_acc, mlm, mlm_acc (means over the labelled), aux (the
 * fusion blocks'), total (those weighted, 1 each unless a training
 * step set them). */
int vlm_fusion_forward(struct vlm_run *r, const struct vlm_model *m,
    const struct vlm_fusion_batch *fb, struct vlm_loss *out);
/* Each pair's answer (the QA head's argmax) after vlm_fusion_forward or
 * vlm_fusion_score_rows (n, host); NULL without a QA head. */
const int32_t *vlm_fusion_answers(const struct vlm_run *r);
/* Question answering: pairs (image i, question i) of images (B,3,S,S)
 * and tokens (B,T) on a run of B, B and B fused pairs; answer (B) their
 * classes. out: qa, qa_acc, aux; total = qa + aux (the weights of ITC,
 * ITM, MLM are 0). vlm_backward follows. */
int vlm_fusion_qa_forward(struct vlm_run *r, const struct vlm_model *m,
    const float *images, const int32_t *tokens, const int32_t *answer,
    struct vlm_loss *out);
/* m (a fusion model) := the same with a QA head of A classes (new,
 * seeded; every other parameter and the tokenizer kept). */
int vlm_fusion_add_qa(struct vlm_model *m, int A, uint64_t seed);
/* Each pair's P(match) after vlm_fusion_forward (n, host); NULL if none. */
const float *vlm_fusion_itm_scores(const struct vlm_run *r);
/* P(match) of n pairs from token rows held on the host: img[j] (image
 * tokens, width) and txt[j] (context, width) as vlm_run_stream gives a
 * fusion model's modality-specific output (l = layers), len[j] the text's
 * tokens up to its EOT; into p (n). The run (B_fused >= n) needs no
 * vlm_forward. */
int vlm_fusion_score_rows(struct vlm_run *r, const struct vlm_model *m,
    int n, const float *const *img, const float *const *txt,
    const int32_t *len, float *p);
/* BERT masking (15% of the tokens strictly between the start of text
 * and the EOT; of those 80% the mask id EOT - 2, 10% random, 10% kept):
 * ids (B,T) into masked (B,T), the original ids at the chosen positions
 * into target (B,T), -1 elsewhere. */
void vlm_mlm_mask(int32_t *masked, int32_t *target, const int32_t *ids,
    int B, int T, struct vlm_rng *rng);
/* ALBEF's hard negatives from the contrastive logits (B,B): for image i
 * a text j != i drawn with probability softmax_j(logits[i][j]), and for
 * text j an image i != j by softmax_i(logits[i][j]). B >= 2. */
void vlm_itm_negatives(int32_t *neg_txt, int32_t *neg_img,
    const float *logits, int B, struct vlm_rng *rng);
/* The losses' weights of a training step (0: off). */
struct vlm_fusion_weights {
	float itc, itm, mlm; /* e.g. 1, 1, 1 */
};
/*
 * One training forward of B pairs (images (B,3,S,S), tokens (B,T)) on a
 * run of B images, B texts (2B with MLM: the masked copies) and room for
 * 3B fused pairs for ITM (positives, a hard negative text per image and
 * image per text) plus B for MLM; masks and negatives come from the
 * run's generator (vlm_run_rng). out: every loss, total = the weighted
 * sum plus aux. vlm_backward follows.
 */
int vlm_fusion_train_forward(struct vlm_run *r, const struct vlm_model *m,
    const float *images, const int32_t *tokens,
    const struct vlm_fusion_weights *w, struct vlm_loss *out);

/* ---- reduced precision (model/precision.c) ------------------------------- */

/*
 * --precision bf16 (inference): the weights of the linear layers (patch
 * embedding, attention and MLP projections, experts, attention pooling)
 * as bf16, their inputs rounded to bf16, products summed in fp32;
 * everything else fp32 (LayerNorm, softmax, attention, residuals,
 * routers, the final projections).
 */
enum vlm_precision { VLM_PRECISION_FP32, VLM_PRECISION_BF16 };
/* "fp32" or "bf16" into *p; -1 with vlm_error for anything else. */
int vlm_precision_parse(const char *s, enum vlm_precision *p);
/* bf16 copies of the linear weights of a tower (0 vision, 1 text, -1
 * both; one-tower: the shared blocks) in memory of backend be, at the
 * parameters' own offsets (a slab of nfloats bf16 whose other entries
 * are never touched); free with be->free. NULL with vlm_error. */
uint16_t *vlm_model_bf16_alloc(const struct vlm_model *m,
    const struct vlm_backend *be, int tower);
/*
 * Give back the memory of the f32 linear weights of a tower (as for
 * vlm_model_bf16_alloc) once their bf16 copies are made: the whole pages
 * inside them (madvise MADV_DONTNEED; for a process that runs no other
 * precision or tower, e.g. vlm-embed). They must not be read afterwards
 * (a private mapping of the model file reads back the file's values, an
 * allocated slab zeros); in a one-tower model the blocks are both
 * towers'. Host memory only.
 */
void vlm_model_drop_f32(struct vlm_model *m, int tower);
/* The run's linear layers use wb (from vlm_model_bf16_alloc for the same
 * model and the run's backend; NULL: back to fp32) from now on. -1 for
 * a training run or a backend without bf16 ops. */
int vlm_run_set_bf16(struct vlm_run *r, const struct vlm_model *m,
    const uint16_t *wb);
/*
 * fp32 linear weights packed once for inference (model/precision.c):
 * each weight packed at its first use into the layout the backend's GEMM
 * reads (linear_pack), then its pages of a clean file mapping given
 * back; a weight never used is never packed, nor one whose pages cannot
 * be given back (unless copies). The model's weights must not change
 * while a run uses it (training runs pack per call).
 */
struct vlm_wpack {
	int n, cap;
	int64_t *off;     /* (n) the weights' offsets in the parameters */
	float **wk;       /* (n) their packed copies (NULL: none to be had) */
	int copies;       /* 1: pack weights outside a clean file mapping
	                   * too (memory then holds both); 0: not those */
};
/* The packed copy of the weight (OUT,IN) at offset off, packed now if it
 * is not yet; NULL where the backend has no packed path (or no memory):
 * the caller runs its plain linear_fwd. */
const float *vlm_wpack_get(struct vlm_wpack *k, const struct vlm_backend *be,
    const struct vlm_model *m, int64_t off, int IN, int OUT);
void vlm_wpack_release(struct vlm_wpack *k);
/* The run's fp32 linear layers use k's packed weights from now on (NULL:
 * pack per call); not for a training run. */
void vlm_run_set_wpack(struct vlm_run *r, struct vlm_wpack *k);

/* ---- encoding (model/encoder.c) ------------------------------------------ */

/* A model as an image or text encoder over batches of a fixed size. */
struct vlm_encoder {
	const struct vlm_model *m;
	int text;         /* 0 images, 1 texts */
	int batch;        /* e.g. 32 */
	int rows;         /* r's batch: batch, or fewer for a short one */
	struct vlm_run *r;
	void *pad;        /* padding copy for a short last batch */
	uint16_t *wb;     /* bf16 weights (vlm_encoder_set_precision) */
	struct vlm_wpack wk; /* fp32 weights packed at first use (ditto) */
	int pack;         /* whether the runs use wk */
};
int vlm_encoder_init(struct vlm_encoder *e, const struct vlm_model *m,
    int text, int batch);
void vlm_encoder_release(struct vlm_encoder *e);
/* Encode in precision p from now on (bf16: converts the tower's linear
 * weights once, model/precision.c; fp32: packs each linear weight at its
 * first use, vlm_wpack_get: the model must not change after). */
int vlm_encoder_set_precision(struct vlm_encoder *e, enum vlm_precision p);
/* n <= batch items: pixels (n,3,S,S) or token ids (n,context) into
 * out (n, embed_dim); unit: L2-normalised. */
int vlm_encode(struct vlm_encoder *e, const void *in, int n, float *out,
    int unit);
/* The model's own tokenizer (merges in the file); -1 if it has none or
 * it has more tokens than the model's vocabulary. */
struct vlm_bpe;
int vlm_model_tokenizer(const struct vlm_model *m, struct vlm_bpe *bpe);
/* m carries bpe's merges from now on (saved with it); -1 out of memory. */
int vlm_model_set_tokenizer(struct vlm_model *m, const struct vlm_bpe *bpe);

/* ---- each example's loss (model/example-loss.c) -------------------------- */

/* Each example's contrastive loss after vlm_run_loss: (CE of its image's
 * row + CE of its text's column) / 2, whose mean is the batch's loss:
 * loss (B). */
struct vlm_run;
int vlm_run_row_loss(const struct vlm_run *r, double *loss);
/* The same from a contrastive loss's logits (B,B) and log-sum-exps
 * (2B) on the host. */
void vlm_row_loss(const float *logits, const float *lse2, int B,
    double *loss);

/* ---- LoRA adapters (model/lora.c) ---------------------------------------- */

/*
 * With lora.rank = r > 0, each targeted weight W (OUT, IN) of the
 * transformer blocks (attention in/out projections, MLP and stacked
 * expert c_fc/c_proj) is used as W + s B A, s = vlm_lora_scale(), with
 * trainable A (r, IN) "<W>.lora_A" and B (OUT, r) "<W>.lora_B"; stacked
 * experts (E, OUT, IN) have a pair per expert, A (E, r, IN), B (E, OUT, r).
 * The pairs come after every base parameter (base offsets are the plain
 * model's), are saved in the model file like any tensor, and follow the
 * OpenCLIP weight-decay rule (2-D: decayed). vlm_model_randomize() draws
 * A ~ N(0, 1/IN) and sets B = 0, so a fresh adapted model computes what
 * its base computes. vlm_forward() refuses a model with adapters:
 * train through a view, infer after vlm_lora_merge().
 */
enum vlm_lora_targets { VLM_LORA_ALL, VLM_LORA_ATTN, VLM_LORA_MLP };

/* Does config c put adapters on the parameter called name? */
int vlm_lora_target(const struct vlm_config *c, const char *name);
/* s = alpha / r (alpha 0 means alpha = r: s = 1); 0 when rank is 0. */
float vlm_lora_scale(const struct vlm_config *c);
/* Index of m's first adapter parameter (m->nparams: none). */
int vlm_lora_first(const struct vlm_model *m);
/* Every A ~ N(0, 1/IN) from seed's own stream, every B = 0. */
void vlm_lora_randomize(struct vlm_model *m, uint64_t seed);
/* w (m's base floats; may be m->w) := the base weights, each adapted
 * one plus s B A, per expert for stacked experts. The products run on
 * VLM_BACKEND's gemm: -1 (vlm_error) when it has none. */
int vlm_lora_merge_into(const struct vlm_model *m, float *w);
/* grad (m->nfloats) holds dL/dW of the merged weights in its base part
 * (a backward on the view): set each pair's dA = s B^T dW and
 * dB = s dW A^T, then zero the base part (the base is frozen). -1 as
 * vlm_lora_merge_into. */
int vlm_lora_grad(const struct vlm_model *m, float *grad);
/* One adapted weight's share, a vlm_run_fold fold: from dw, the
 * gradient of base parameter w, ga := beta ga + the dA and dB of its
 * pair, as ap lays them out (NULL: m's slab layout); nothing when ap
 * leaves the pair out (frozen). -1 as vlm_lora_merge_into, or when w
 * has no adapters. */
int vlm_lora_fold(const struct vlm_model *m, int w, const float *dw,
    float *ga, const struct vlm_pack *ap, float beta);
/* Fold the adapters into the base weights and drop them: m becomes the
 * plain model (lora.* reset). No-op (0) for a model without adapters. */
int vlm_lora_merge(struct vlm_model *m);
/* vlm_model_load() for inference: adapters, if any, merged; a weight
 * that is NaN or infinite is refused, naming its parameter; a mapped
 * slab is read-only (a stray write faults). In model/model.c. */
int vlm_model_load_merged(struct vlm_model *m, const char *path);
/* m (plain) := the model of config c, whose only change to m's table is
 * c->lora's adapters: base values kept, adapters seeded, tokenizer
 * moved over. */
int vlm_lora_add(struct vlm_model *m, const struct vlm_config *c,
    uint64_t seed);
/* view := a plain model sharing m's table and offsets (base part) with
 * its own slab, the merged weights; refresh it with
 * vlm_lora_merge_into(m, view->w). Release only with the function below
 * (never vlm_model_release); m must outlive it. */
int vlm_lora_view_init(struct vlm_model *view, const struct vlm_model *m);
void vlm_lora_view_release(struct vlm_model *view);

/* ---- sparse upcycling (model/upcycle.c) ---------------------------------- */

/*
 * Sparse upcycling: m := an MoE model of config c
 * (dense's config with moe.* set) from the dense model: every other
 * parameter copied (their shapes must not change), every expert a copy
 * of the dense MLP it replaces, routers N(0, router_std^2) seeded (0:
 * exactly zero), the tokenizer carried over.
 */
int vlm_model_upcycle(struct vlm_model *m, const struct vlm_model *dense,
    const struct vlm_config *c, double router_std, uint64_t seed);

#endif /* VLM_LIBCORE_MODEL_H */
