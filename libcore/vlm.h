/*
 * vlm.h - the public API of libcore, the library under every vlm program.
 *
 * Conventions (see ../shared/docs/STYLE.md):
 *  - fallible functions return 0 on success and -1 on failure, after
 *    recording a one-line message that vlm_errmsg() returns;
 *  - libcore never exits and never writes to stdout;
 *  - tensors are dense, contiguous, row-major, outermost dimension first;
 *  - whoever allocates frees: _new/_free, _init/_release, _load/_save.
 */
#ifndef VLM_H
#define VLM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors (libcore/error.c) ---------------------------------------- */

/* Record a printf-style message for this thread; returns -1. */
int vlm_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* The last message recorded on this thread ("" if none). */
const char *vlm_errmsg(void);

/* ---- dtypes and tensors (libcore/tensor.c) ---------------------------- */

enum vlm_dtype {
	VLM_DTYPE_F32,
	VLM_DTYPE_F16,
	VLM_DTYPE_BF16,
	VLM_DTYPE_I32,
	VLM_DTYPE_I64,
	VLM_DTYPE_U8,
	VLM_DTYPE_COUNT
};

#define VLM_MAX_DIMS 8

/* A dense tensor view. data may be owned or borrowed: the creator says. */
struct vlm_tensor {
	enum vlm_dtype dtype;
	int ndim;
	int64_t shape[VLM_MAX_DIMS]; /* outermost first */
	void *data;
};

size_t vlm_dtype_size(enum vlm_dtype dt);
/* safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "U8" */
const char *vlm_dtype_name(enum vlm_dtype dt);
/* Parse a safetensors dtype name; -1 (with message) if unknown. */
int vlm_dtype_parse(const char *name, enum vlm_dtype *dt);

/*
 * Sizes in 64 bits: a * b and a + b, or -1 when an operand is negative
 * (an earlier -1) or the result would overflow, so that calls chain and
 * one test of the end result catches every step.
 */
int64_t vlm_size_mul(int64_t a, int64_t b);
int64_t vlm_size_add(int64_t a, int64_t b);

/* Number of elements; 1 for ndim == 0. */
int64_t vlm_tensor_numel(const struct vlm_tensor *t);
size_t vlm_tensor_nbytes(const struct vlm_tensor *t);
/* "[4, 3, 32, 32]" into buf (always terminated). */
void vlm_shape_str(const struct vlm_tensor *t, char *buf, size_t n);

/* IEEE half and bfloat16, round to nearest even (NaN stays NaN). */
uint16_t vlm_f32_to_f16(float f);
float vlm_f16_to_f32(uint16_t h);
uint16_t vlm_f32_to_bf16(float f);
float vlm_bf16_to_f32(uint16_t h);
/* Convert n elements between any two float dtypes (F32, F16, BF16). */
int vlm_convert_floats(void *dst, enum vlm_dtype dt_dst, const void *src,
    enum vlm_dtype dt_src, int64_t n);

/* ---- files (libcore/file.c) ------------------------------------------- */

/* Refuse pickle checkpoints (.pt .bin .pth .ckpt) by name: -1 + message. */
int vlm_refuse_pickle(const char *path);

/*
 * Atomic output: vlm_atomic_open() opens PATH.tmp.PID for writing;
 * vlm_atomic_commit() flushes, fsyncs, closes and renames it over PATH
 * (fsyncing the directory); vlm_atomic_abort() closes and unlinks it.
 * "-" means stdout: commit only flushes, abort does nothing.
 */
struct vlm_atomic {
	FILE *f;
	char *path;
	char *tmp;
};
int vlm_atomic_open(struct vlm_atomic *a, const char *path);
int vlm_atomic_commit(struct vlm_atomic *a);
void vlm_atomic_abort(struct vlm_atomic *a);
/*
 * A testing aid: with VLM_CRASH_AT=POINT[:N] in the environment the
 * process kills itself (SIGKILL) the Nth time (default 1) it reaches the
 * named point: atomic-commit (an output complete under its temporary
 * name), ckpt-dir, ckpt-model, ckpt-optim, ckpt-state, ckpt-rename,
 * ckpt-latest, ckpt-remove (libcore/train.c). POINT:N:stop stops it
 * (SIGSTOP) instead, for a test to kill at a moment of its choosing.
 */
void vlm_crash_point(const char *point);

/* ---- random numbers (libcore/rng.c) --------------------------------------- */

/* xoshiro256** seeded by splitmix64: deterministic on every machine. */
struct vlm_rng {
	uint64_t s[4];
};
void vlm_rng_seed(struct vlm_rng *r, uint64_t seed);
/* Independent stream `stream` of `seed` (per item, per epoch, ...). */
void vlm_rng_seed2(struct vlm_rng *r, uint64_t seed, uint64_t stream);
uint64_t vlm_rng_u64(struct vlm_rng *r);
double vlm_rng_uniform(struct vlm_rng *r);           /* [0, 1) */
uint64_t vlm_rng_below(struct vlm_rng *r, uint64_t n); /* [0, n) */
double vlm_rng_normal(struct vlm_rng *r);            /* N(0, 1) */

/* ---- model configuration (libcore/config.c) ---------------------------- */

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
	int image_alpha;        /* enum vlm_alpha: drop (OpenCLIP), white... */
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

	/* LoRA adapters (libcore/lora.c); rank 0: none */
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

/* ---- model parameters and files (libcore/model.c) ------------------------ */

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

struct vlm_model {
	struct vlm_config cfg;
	int nparams;
	struct vlm_param *params;
	int64_t nfloats;          /* slab length */
	float *w;                 /* parameters (owned, or into a mapping) */
	struct vlm_tower_off vis, txt;
	int64_t logit_scale;
	char *tokenizer;          /* BPE merges text carried in the file, or NULL */
};

/* Build the parameter table for a config and allocate a zeroed slab. */
int vlm_model_init(struct vlm_model *m, const struct vlm_config *c);
void vlm_model_release(struct vlm_model *m);
/* OpenCLIP's initialisation (normal with its per-tensor stds), seeded. */
void vlm_model_randomize(struct vlm_model *m, uint64_t seed);
/* Find a parameter by name; NULL if absent. */
const struct vlm_param *vlm_model_param(const struct vlm_model *m,
    const char *name);
/* Load a vlm model file (safetensors with config in its metadata). */
int vlm_model_load(struct vlm_model *m, const char *path);
/* Save parameters, config and tokenizer as one safetensors file. */
int vlm_model_save(const struct vlm_model *m, const char *path);
/* Total parameters, and parameters active per token (K of E experts). */
int64_t vlm_model_active_params(const struct vlm_model *m);
/* Forward FLOPs per image and per text (ALGORITHMS.md section 5): MoE
 * layers count K expert rows per token, or with allocated the E*C rows
 * their capacity (cf_eval) sets aside. */
double vlm_model_flops(const struct vlm_model *m, int text, int allocated);
/*
 * Import an OpenCLIP- or HF-named CLIP checkpoint (safetensors); config
 * is its open_clip_config.json or config.json (heads, activation), or
 * NULL for OpenCLIP defaults (head width 64, text heads 8, GELU).
 */
int vlm_model_import(struct vlm_model *m, const char *weights,
    const char *config);

/* ---- forward and backward (libcore/forward.c, backward.c) ---------------- */

struct vlm_loss {
	float total;        /* contrastive + aux */
	float contrastive;  /* OpenCLIP ClipLoss */
	float aux;          /* weighted router losses, all MoE layers */
	float logit_scale;  /* exp(theta) */
};

/* Activations for B_img images and B_txt texts (either may be 0), all
 * allocated here once; train keeps every layer's for the backward. The
 * run's ops go through the backend VLM_BACKEND names (kernels.h; "cpu"
 * by default); NULL with vlm_error for an unknown backend or one that
 * lacks an op the model needs. */
struct vlm_run;
struct vlm_backend;
struct vlm_run *vlm_run_new(const struct vlm_model *m, int B_img, int B_txt,
    int train);
/* The same on backend be (kernels.h: vlm_backend_get). */
struct vlm_run *vlm_run_new_on(const struct vlm_backend *be,
    const struct vlm_model *m, int B_img, int B_txt, int train);
void vlm_run_free(struct vlm_run *r);
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
/* -1 when block l of that modality's stack has no MoE (or no pool). */
int vlm_run_route(const struct vlm_run *r, int text, int l, int pool,
    struct vlm_route_view *v);
/* Gradients of the loss into grad (nfloats, zeroed here) after
 * vlm_run_loss. */
int vlm_backward(struct vlm_run *r, const struct vlm_model *m, float *grad);
/* Parameters whose gradient nobody reads, e.g. frozen ones: nograd[i]
 * for parameter i of m (the run's model), NULL for none. The backward
 * then neither computes nor writes theirs (that part of grad stays 0:
 * no GEMM for a frozen weight's gradient) and does not differentiate
 * what leads only to them (a locked tower is not differentiated at
 * all). The run keeps a copy. */
int vlm_run_freeze(struct vlm_run *r, const struct vlm_model *m,
    const uint8_t *nograd);

/* ---- optimizer (libcore/optim.c) ------------------------------------------ */

struct vlm_optim {
	float lr;            /* e.g. 5e-4 (the schedule passes its own) */
	float beta1, beta2;  /* e.g. 0.9, 0.98 */
	float eps;           /* e.g. 1e-6 */
	float wd;            /* e.g. 0.2, for parameters with decay set */
	float clip;          /* global gradient norm cap; 0: off */
	int64_t step;        /* steps taken */
	float *m, *v;        /* moments, one float per parameter float */
	const struct vlm_backend *be; /* VLM_BACKEND's, set by _init */
};

void vlm_optim_defaults(struct vlm_optim *o);
int vlm_optim_init(struct vlm_optim *o, const struct vlm_model *m);
void vlm_optim_release(struct vlm_optim *o);
/* One AdamW step at learning rate lr; frozen[i] skips parameter i (NULL:
 * none). Returns the gradient norm before clipping (0 if clip is off). */
float vlm_optim_step(struct vlm_optim *o, struct vlm_model *m, float *grad,
    float lr, const uint8_t *frozen);

/* ---- encoding (libcore/encode.c) ------------------------------------------- */

/* A model as an image or text encoder over batches of a fixed size. */
struct vlm_encoder {
	const struct vlm_model *m;
	int text;         /* 0 images, 1 texts */
	int batch;        /* e.g. 32 */
	struct vlm_run *r;
	void *pad;        /* padding copy for a short last batch */
};
int vlm_encoder_init(struct vlm_encoder *e, const struct vlm_model *m,
    int text, int batch);
void vlm_encoder_release(struct vlm_encoder *e);
/* n <= batch items: pixels (n,3,S,S) or token ids (n,context) into
 * out (n, embed_dim); unit: L2-normalised. */
int vlm_encode(struct vlm_encoder *e, const void *in, int n, float *out,
    int unit);
/* The model's own tokenizer (merges in the file); -1 if it has none or
 * it has more tokens than the model's vocabulary. */
struct vlm_bpe;
int vlm_model_tokenizer(const struct vlm_model *m, struct vlm_bpe *bpe);

/* @@SECTIONS@@ (helpers add their sections below this line) */

/* ---- data sources, the adaptive sampler (libcore/sampler.c, rowloss.c) - */

/*
 * Feed mode of the batch loader (vlm_loader_opts.feed): the consumer
 * hands over each batch's items, at most depth - 1 batches ahead of the
 * one it asks vlm_loader_next() for (none fed: an error); they come back
 * in the order fed. Item i's callbacks get seed; under REPLACE a failed
 * item's attempt a >= 1 loads lo + splitmix(seed ^ a) mod n with seed
 * vlm_item_seed(seed, a, that index). The cursor means nothing here.
 */
struct vlm_feed {
	int64_t index;   /* item to load, 0..n-1 */
	uint64_t seed;   /* its callbacks' seed */
	int64_t lo, n;   /* REPLACE: replacements from items lo..lo+n-1 */
};
struct vlm_loader;
int vlm_loader_feed(struct vlm_loader *l, const struct vlm_feed *items,
    int n);

/*
 * Several data sources: source s is items lo[s]..lo[s]+n[s]-1 (the
 * sources' items one after the other), walked epoch after epoch in the
 * order vlm_perm_shuffle(perm, n[s], vlm_item_seed(seed, -1, s), epoch),
 * item k of it with seed vlm_item_seed(that seed, epoch, k), each
 * source with its own cursor. The B examples of micro-batch m of step k
 * (1-based) come from the sources in order, count[s] from source s, by
 * systematic sampling: positions (u + j) / B, j < B, u uniform from
 * (seed, k, m), source s taking those in [P(s-1), P(s)), P the cumulative
 * probabilities: floor or ceil of B p[s], B p[s] on average.
 *
 * The probabilities: w, the weights normalised; adaptive:
 *     p[s] = (1 - eps) q[s] + eps / S,  q[s] ~ w[s] exp(L[s] / tau)
 * L[s] the exponential moving average (decay d) of source s's mean
 * per-example contrastive loss (vlm_run_row_loss) in the steps that drew
 * from it, starting at its first mean; a source not seen yet counts the
 * mean of those seen (q = w while none is). Hard sources (high loss) are
 * drawn more, none less than eps / S. Step k's batches use the losses
 * through step k - 2: its first batch is loaded while step k - 1 runs.
 */
#define VLM_SOURCES_MAX 64

struct vlm_source_state {
	int64_t epoch, pos;   /* next item: epoch, position in its order */
	double ema, ema_prev; /* L after the last step, the one before */
	int seen, seen_prev;  /* ema, ema_prev hold a value */
};

struct vlm_sampler_opts {
	int adaptive;     /* else p = w */
	double tau;       /* temperature, e.g. 1 */
	double decay;     /* d, e.g. 0.9 */
	double eps;       /* floor, e.g. 0.1 */
	uint64_t seed;
};

struct vlm_sampler {
	struct vlm_sampler_opts o;
	int S;
	int64_t n[VLM_SOURCES_MAX], lo[VLM_SOURCES_MAX];
	double w[VLM_SOURCES_MAX];              /* normalised */
	struct vlm_source_state st[VLM_SOURCES_MAX]; /* saved and restored */
	int64_t done;                           /* last step folded in */
	double sum[VLM_SOURCES_MAX];            /* the step in progress */
	int64_t cnt[VLM_SOURCES_MAX];
	uint32_t *perm[VLM_SOURCES_MAX];
	int64_t perm_epoch[VLM_SOURCES_MAX];
};

/* S sources of n[s] items, weights w (> 0; NULL: n); -1 with a message. */
int vlm_sampler_init(struct vlm_sampler *s, int S, const int64_t *n,
    const double *w, const struct vlm_sampler_opts *o);
void vlm_sampler_release(struct vlm_sampler *s);
/* The rule above: p (S) from w (S, normalised), L and seen (S). */
void vlm_sampler_rule(int S, const double *w, const double *L,
    const int *seen, const struct vlm_sampler_opts *o, double *p);
/* p (S) for the batches of step (s->done + 1 or s->done + 2). */
void vlm_sampler_probs(const struct vlm_sampler *s, int64_t step,
    double *p);
/* count (S) summing to B, by systematic sampling of p. */
void vlm_sampler_counts(const double *p, int S, int B, uint64_t seed,
    int64_t step, int micro, int *count);
/* The B items of micro-batch micro of step, and each one's source src
 * (B); the sources' cursors move on. */
void vlm_sampler_plan(struct vlm_sampler *s, int64_t step, int micro,
    int B, struct vlm_feed *items, int *src);
/* Per-example losses (B) of a batch of the step in progress. */
void vlm_sampler_add(struct vlm_sampler *s, const int *src,
    const double *loss, int B);
/* Fold the step's mean loss per source into the averages. */
void vlm_sampler_update(struct vlm_sampler *s, int64_t step);

/* Each example's contrastive loss after vlm_run_loss: (CE of its image's
 * row + CE of its text's column) / 2, whose mean is the batch's loss:
 * loss (B). */
struct vlm_run;
int vlm_run_row_loss(const struct vlm_run *r, double *loss);

/* ---- LoRA adapters (libcore/lora.c) ------------------------------------ */

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
/* Fold the adapters into the base weights and drop them: m becomes the
 * plain model (lora.* reset). No-op (0) for a model without adapters. */
int vlm_lora_merge(struct vlm_model *m);
/* vlm_model_load() for inference: adapters, if any, merged; a weight
 * that is NaN or infinite is refused, naming its parameter. */
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

/* ---- evaluation (libcore/metrics.c, linprobe.c, emb.c) ---------------- */

/*
 * Metrics as CLIP_benchmark 1.6.1 defines them (ALGORITHMS.md section 6).
 * Rankings are stable: among equal scores the lower index ranks first
 * (a prediction is the first maximum; an item is in the top k when
 * fewer than k items score more than it or as much with a lower index).
 * Inputs must be finite. Sums run in double in a fixed order, so the
 * results are the same for every thread count.
 */
#define VLM_RECALL_NK 3 /* retrieval recall@k for k = 1, 5, 10 */
extern const int vlm_recall_ks[VLM_RECALL_NK];

/*
 * The zero-shot classifier: for each class c, the mean over its T
 * templates of the L2-normalised text embeddings text[c*T + t] (class
 * major), L2-normalised again, is column c of W. Norms as torch's
 * F.normalize: x / max(|x|, 1e-12). -1 when out of memory.
 */
int vlm_zeroshot_classifier(float *W /* (D,C) */,
    const float *text /* (C*T,D) */, int C, int T, int D);
/* logits = 100 * normalise(img) @ W; -1 when out of memory. */
int vlm_zeroshot_logits(float *logits /* (N,C) */,
    const float *img /* (N,D) */, const float *W /* (D,C) */, int64_t N,
    int D, int C);

struct vlm_cls_metrics {
	double acc1;   /* fraction with the label first */
	double acc5;   /* ... in the top 5; NaN when C < 5 */
	double mean_per_class_recall; /* mean over classes present */
};
/*
 * Classification metrics of logits against labels (0..C-1), N >= 1.
 * recall (C), if not NULL, gets each class's recall (NaN for a class
 * with no items); confusion (C,C), if not NULL, counts items by true
 * class (row) and prediction (column). -1 on a label out of range.
 */
int vlm_metrics_cls(struct vlm_cls_metrics *m,
    const float *logits /* (N,C) */, const int *labels /* (N) */,
    int64_t N, int C, double *recall /* (C) */,
    int64_t *confusion /* (C,C) */);

/*
 * Retrieval recall@k for k in vlm_recall_ks, scores the cosine of
 * normalised embeddings: image_recall[j] = mean over texts of [its
 * image text_image[t] is in the top k images]; text_recall[j] = mean
 * over images of [any of its texts is in the top k texts] (an image
 * without texts counts as a miss). -1 on a bad text_image entry or
 * out of memory.
 */
int vlm_metrics_retrieval(double *image_recall /* (VLM_RECALL_NK) */,
    double *text_recall /* (VLM_RECALL_NK) */, const float *img /* (NI,D) */,
    int64_t NI, const float *txt /* (NT,D) */, int64_t NT,
    const int *text_image /* (NT) */, int D);

/*
 * Linear probe: multinomial logistic regression on frozen embeddings,
 * loss mean cross-entropy + wd/2 |W|^2 (the bias not decayed), fitted
 * by full-batch L-BFGS. Unless wd > 0 is given, the weight decay is
 * chosen from 1, 1e-0.5, ..., 1e-6 (each fit from the last one's
 * minimum) by accuracy on a validation split (val_frac of the rows, by
 * vlm_perm_shuffle(seed, 0)) after fitting on the rest (ties: the
 * larger wd); then the model is fitted on every row from zero.
 * Deterministic for every thread count.
 */
struct vlm_linprobe_opts {
	double wd;       /* e.g. 0: choose it; > 0: use this one */
	double val_frac; /* e.g. 0.2 */
	uint64_t seed;   /* e.g. 0: the split */
	int iters;       /* L-BFGS iterations per fit, e.g. 300 */
};
#define VLM_LINPROBE_DEFAULT {0, 0.2, 0, 300}

struct vlm_linprobe {
	int D, C;
	float *W;        /* (D,C) */
	float *b;        /* (C) */
	double wd;       /* the weight decay used */
	double val_acc1; /* its validation accuracy (NaN: not chosen) */
	double loss;     /* the final objective */
};
int vlm_linprobe_fit(struct vlm_linprobe *p, const float *X /* (N,D) */,
    const int *y /* (N) */, int64_t N, int D, int C,
    const struct vlm_linprobe_opts *o);
/* logits = X W + b; -1 only for an unfitted probe. */
int vlm_linprobe_logits(const struct vlm_linprobe *p, float *logits /* (N,C) */,
    const float *X /* (N,D) */, int64_t N);
void vlm_linprobe_release(struct vlm_linprobe *p);

/*
 * A whole embeddings file in memory: a .npys stream ("-" is stdin, a
 * pipe is always read as a stream) or the packed form STEM.npy, with
 * STEM.ids.npy (ids) and STEM.json (metadata) beside it when present.
 * Refuses an empty file and non-finite values (naming the row).
 */
struct vlm_emb {
	int64_t n, dim;
	float *vec;   /* (n, dim) */
	char **ids;   /* [n], or NULL when the file has none */
	char *meta;   /* the metadata JSON text, or NULL */
};
int vlm_emb_load(struct vlm_emb *e, const char *path);
void vlm_emb_release(struct vlm_emb *e);

/* ---- packing a stream as it is written (libcore/npys-packer.c) -------- */

/*
 * The packed form of vlm_npys_pack() for a producer (`-o FILE.npy`):
 * write an ordinary .npys stream (vlm_npys_writer_*) into f; a thread
 * reads it from a pipe and packs it into out. vlm_npys_packer_close()
 * closes f and waits: 0 when the three files are in place, -1 with the
 * reason otherwise (none of them left behind). Closing before the end
 * record was written is how a producer gives up.
 */
struct vlm_npys_pack_job;
struct vlm_npys_packer {
	FILE *f;                      /* write the stream here */
	struct vlm_npys_pack_job *job; /* private */
};
/* Checks that out can be created now, then starts the thread. */
int vlm_npys_packer_open(struct vlm_npys_packer *p, const char *out);
int vlm_npys_packer_close(struct vlm_npys_packer *p);

/* ---- routing records (libcore/routes*.c, routestats.c, upcycle.c) ----- */

/*
 * A routing-record stream (man vlm-routes.5): .npy records, as .npys
 * streams are, so np.load(f) called repeatedly reads it.
 *  1. metadata '|u1' JSON: "format":"vlm-routes", "version":1,
 *     "experts" E, "top_k" K, "layers" (one object per MoE layer and
 *     pool: "tower", "block", "pool", "name"), "modalities", "family",
 *     "image_tokens", "grid", "cls", "context", "cf", "min_capacity",
 *     "bpr", "gate_norm";
 *  2. optionally '|u1' JSON {"classes":[...]}: class names of labels;
 *  3. per batch: '|u1' JSON {"batch":i,"modality":"image"|"text",
 *     "examples":n,"layers":[{"layer":j,"S":S,"C":C,"group":G,
 *     "fill":[E ints]},...]}, ids '<U{w}' (n,), labels '<i4' (n,) (-1:
 *     none), then per listed layer five arrays: tok '<i4' (S,2) (example,
 *     position), idx '<i4' (S,K), keep '|u1' (S,K), w '<f4' (S,K)
 *     (combine weights: the gate, 0 when dropped), z '<f4' (S,E) logits;
 *  4. end '|u1' JSON {"end":true,"batches":N,"examples":[ni,nt]}.
 * A stream without its end record is truncated.
 */
struct vlm_routes_writer {
	FILE *f;
	const char *name;  /* for messages */
	int E, K;
	int nlayers;
	struct vlm_routes_wlayer *layer; /* [nlayers] private */
	int64_t batches, examples[2];
	size_t cap;        /* scratch tokens allocated */
	int32_t *tok, *idx; /* (cap,2) (cap,K) */
	uint8_t *keep;     /* (cap,K) */
	float *w, *z;      /* (cap,K) (cap,E) */
};
/* Write the metadata of model m's MoE layers; -1 if m has none. */
int vlm_routes_writer_init(struct vlm_routes_writer *w, FILE *f,
    const char *name, const struct vlm_model *m);
/* Class names of the labels (optional; before the first batch). */
int vlm_routes_writer_classes(struct vlm_routes_writer *w,
    const char *const *names, int n);
/*
 * After a forward of r: the routing of the first n examples of one
 * modality (text 0: images) in every MoE layer of its stack; ids (n)
 * names, labels (n) class indices or NULL. Padding rows past n (a short
 * batch) are left out; "group" and "fill" still count them.
 */
int vlm_routes_write_batch(struct vlm_routes_writer *w,
    const struct vlm_run *r, const struct vlm_model *m, int text,
    const char *const *ids, const int32_t *labels, int n);
/* The end record; flushes; frees the writer (does not close f). */
int vlm_routes_writer_finish(struct vlm_routes_writer *w);
/* Free without writing the end record (an aborted run). */
void vlm_routes_writer_release(struct vlm_routes_writer *w);

/* Row of block l's stack (as vlm_run_route gives them) -> example and
 * token position of modality text; -1 if the row is not one of that
 * modality's. Images after a token-reduction cut have M learned tokens,
 * their positions 0..M-1 (forward.c). */
int vlm_run_row_info(const struct vlm_run *r, int text, int l, int row,
    int *example, int *pos);

/* One MoE layer and pool as the metadata lists it. */
struct vlm_routes_layer {
	int tower;   /* 0 vision, 1 text, 2 shared (one-tower) */
	int block;   /* e.g. 1 */
	int pool;    /* 0 shared or image, 1 text (VL-MoE) */
	int image_tokens; /* per image here: fewer after token reduction */
	char name[96]; /* e.g. "transformer.resblocks.1.moe" */
};

/* One layer of the current batch (arrays owned by the reader). */
struct vlm_routes_group {
	int layer;   /* index into the metadata's layers */
	int S, C;    /* tokens recorded; capacity of the group */
	int G;       /* tokens routed in the group (padding included) */
	int32_t *fill;       /* (E) kept per expert in the group */
	const int32_t *tok;  /* (S,2) example, position */
	const int32_t *idx;  /* (S,K) */
	const uint8_t *keep; /* (S,K) */
	const float *w;      /* (S,K) */
	const float *z;      /* (S,E) */
};

struct vlm_routes_reader {
	FILE *f;
	const char *name;
	char *meta;        /* metadata JSON text */
	int E, K, nlayers;
	struct vlm_routes_layer *layers; /* [nlayers] */
	int family;        /* enum vlm_family */
	int image_tokens, grid, cls, context;
	int nclasses;
	char **classes;    /* [nclasses] or NULL */
	int64_t batches, examples[2];
	char *end;         /* end record's JSON, once reached */
	/* the current batch */
	int modality;      /* 0 image, 1 text */
	int n;             /* examples */
	char **ids;        /* [n] */
	const int32_t *labels; /* [n], -1: none */
	int ng;
	struct vlm_routes_group *g; /* [ng] */
	/* private */
	struct vlm_npy *rec;
	int nrec, caprec;
	int ngcap;
};
/* Read and check the metadata. Does not take ownership of f. */
int vlm_routes_reader_init(struct vlm_routes_reader *r, FILE *f,
    const char *name);
/* The next batch: 1; 0 at the end record; -1 on an error, including a
 * stream that stops without its end record ("truncated"). */
int vlm_routes_reader_next(struct vlm_routes_reader *r);
void vlm_routes_reader_release(struct vlm_routes_reader *r);

/* ---- routing statistics (libcore/routestats.c) ------------------------ */

/*
 * Sums over the records of one MoE layer and one modality, from which
 * every statistic of ALGORITHMS.md section 7 follows (see
 * vlm_route_summarize). Assignments are (token, choice) pairs: K per
 * token.
 */
struct vlm_route_acc {
	int64_t records;  /* batch records with this layer */
	int64_t tokens;
	int64_t dropped;  /* tokens with every choice dropped */
	int64_t cap;      /* sum of C over the records */
	double ent;       /* sum over tokens of H(p) */
	double zsq;       /* sum of logsumexp(z)^2 */
	double zsum;      /* sum of every logit */
	double zmax;      /* largest logit (-inf: none) */
	double *load;     /* (E) assignments before capacity */
	double *kept;     /* (E) kept assignments */
	double *gate;     /* (E) sum of kept combine weights */
	double *imp;      /* (E) importance: sum of p */
};

struct vlm_route_lstats {
	struct vlm_route_acc m[2]; /* image, text */
	int64_t groups;   /* records with C > 0 */
	double *use;      /* (E) sum over records of fill[e] / C */
	int ncls;
	double *cls;      /* (ncls, E) image assignments by class label */
	int npos;
	double *pos;      /* (npos, E) image assignments by token position */
};

struct vlm_route_stats {
	int E, K, nlayers;
	int grid, cls, image_tokens; /* image token layout */
	struct vlm_routes_layer *layers; /* [nlayers] */
	struct vlm_route_lstats *l;      /* [nlayers] */
	int nclasses;
	char **classes;   /* [nclasses] names, or NULL */
	int64_t batches, examples[2];
};

/* Empty statistics for the layers of a stream (after reader_init). */
int vlm_route_stats_init(struct vlm_route_stats *s,
    const struct vlm_routes_reader *r);
/* Add the reader's current batch. */
int vlm_route_stats_add(struct vlm_route_stats *s,
    const struct vlm_routes_reader *r);
void vlm_route_stats_release(struct vlm_route_stats *s);

/* The statistics of one layer and modality (0 image, 1 text, 2 all). */
struct vlm_route_summary {
	int64_t tokens, assignments;
	double drop_tokens;  /* fraction of tokens with every choice dropped */
	double drop_assign;  /* fraction of assignments dropped */
	double imp_cv2;      /* (std/mean)^2 of importance sum_s p[s,e] */
	double load_cv2;     /* (std/mean)^2 of load (assignments) */
	double eff_experts;  /* exp(H(mean_s p_s)) */
	double entropy;      /* mean_s H(p_s) */
	double zloss;        /* mean_s logsumexp(z_s)^2 */
	double zmean, zmax;  /* of all logits */
	/* (E) each; NaN where undefined */
	double *load, *kept; /* assignments before / after capacity */
	double *share;       /* load / assignments */
	double *gate;        /* mean combine weight of kept assignments */
	double *use;         /* capacity use: kept / sum C (all: mean of
	                      * fill[e] / C over the group records) */
	double *img_share;   /* load_img / (load_img + load_txt) */
	double *buf;         /* private */
};
int vlm_route_summarize(const struct vlm_route_stats *s, int layer, int mod,
    struct vlm_route_summary *out);
void vlm_route_summary_release(struct vlm_route_summary *out);
/* "image" (image share > 0.9), "text" (< 0.1), "mixed", or "-" (NaN). */
const char *vlm_route_expert_kind(double img_share);
/* An expert's top n classes by the fraction of each class's image
 * assignments it takes (ties: lower class); returns how many. */
int vlm_route_top_classes(const struct vlm_route_stats *s, int layer, int e,
    int *top, double *frac, int n);

/*
 * How routing changed between two streams over the same inputs in the
 * same order (two models or checkpoints, one vlm-embed command): the
 * first choice of each token in A against B. Batches that do not line
 * up (other ids, modality or tokens) clear `aligned` and stop the count.
 */
struct vlm_route_diff {
	int E, nlayers;
	int aligned;
	int64_t *same;   /* (nlayers, 2) tokens whose first choice agrees */
	int64_t *total;  /* (nlayers, 2) tokens compared */
	int64_t *trans;  /* (nlayers, 2, E, E) first choice in A -> in B */
};
/*
 * Sparse upcycling (libcore/upcycle.c): m := an MoE model of config c
 * (dense's config with moe.* set) from the dense model: every other
 * parameter copied (their shapes must not change), every expert a copy
 * of the dense MLP it replaces, routers N(0, router_std^2) seeded (0:
 * exactly zero), the tokenizer carried over.
 */
int vlm_model_upcycle(struct vlm_model *m, const struct vlm_model *dense,
    const struct vlm_config *c, double router_std, uint64_t seed);

int vlm_route_diff_init(struct vlm_route_diff *d,
    const struct vlm_route_stats *a, const struct vlm_route_stats *b);
void vlm_route_diff_add(struct vlm_route_diff *d,
    const struct vlm_routes_reader *a, const struct vlm_routes_reader *b);
void vlm_route_diff_release(struct vlm_route_diff *d);

/* ---- data sets: pairs, ImageFolder (libcore/dataset.c) ---------------- */

/*
 * Image-caption pairs from a CSV/TSV file whose first line is a header.
 * Columns are picked by name as OpenCLIP's --csv-img-key and
 * --csv-caption-key do. With a TAB separator (the default) fields are
 * taken literally; with any other separator RFC 4180 quoting applies (a
 * field starting with '"' runs to the closing quote, "" is one quote, and
 * it may span lines). Relative image paths are taken from the directory of
 * the pairs file ("-" reads stdin: from the current directory).
 * An image with several captions is several rows repeating its path; those
 * rows share an image id. Blank lines are ignored; a row with a different
 * field count from the header's, an empty path or a blank caption is
 * skipped and described ("FILE:LINE: empty caption") in bad[].
 */
struct vlm_pairs_opts {
	const char *img_key;     /* NULL: "filepath" */
	const char *caption_key; /* NULL: "title" */
	char sep;                /* 0: '\t'; e.g. ',' for CSV */
};

#define VLM_PAIRS_MAXBAD 1000 /* messages kept; nbad counts them all */

struct vlm_pairs {
	int n;            /* good rows, file order */
	char **paths;     /* [n] image paths (joined to the file's directory) */
	char **captions;  /* [n] as in the file */
	int *image_id;    /* [n] 0..nimages-1, by first appearance of the path */
	int *line;        /* [n] line number where the row starts */
	int nimages;
	int *image_row;   /* [nimages] the first row of each image */
	int nbad;         /* rows skipped */
	int nbadmsg;
	char **bad;       /* [nbadmsg] "FILE:LINE: why", the first ones */
};

/* Read a pairs file (o may be NULL). -1 only for the whole file. */
int vlm_pairs_load(struct vlm_pairs *p, const char *path,
    const struct vlm_pairs_opts *o);
void vlm_pairs_release(struct vlm_pairs *p);

/*
 * A classification set in the ImageFolder layout: each subdirectory of
 * root is a class; classes in byte order of their directory names; each
 * class's images found as vlm_walk finds them (recursively, byte order of
 * the full path, images by content, hidden entries skipped). A class
 * without images is an error. classnames: a file with one readable name a
 * line in class order (default: the directory names); templates: one
 * prompt a line, "{}" standing for the class name (default: the one
 * template VLM_DEFAULT_TEMPLATE). In both files only trailing blank lines
 * are allowed.
 */
#define VLM_DEFAULT_TEMPLATE "a photo of a {}."

struct vlm_imagefolder_opts {
	const char *classnames; /* path or NULL */
	const char *templates;  /* path or NULL */
};

struct vlm_imagefolder {
	int n;              /* images, class by class */
	char **paths;       /* [n] "ROOT/CLASS/..." */
	int *labels;        /* [n] class index */
	int nclasses;
	char **classes;     /* [nclasses] directory names */
	int nnames;         /* == nclasses */
	char **classnames;  /* [nclasses] readable names */
	int ntemplates;
	char **templates;   /* [ntemplates] */
	int nskipped;       /* files that are not images */
	int nbad;           /* entries that could not be walked (symlink */
	char **bad;         /* loops, unreadable directories): [nbad] the
	                     * messages, for the caller to report */
};

int vlm_imagefolder_load(struct vlm_imagefolder *d, const char *root,
    const struct vlm_imagefolder_opts *o);
void vlm_imagefolder_release(struct vlm_imagefolder *d);
/* The template with each "{}" replaced by name; caller frees; NULL: OOM. */
char *vlm_template_fill_alloc(const char *tmpl, const char *name);

/* ---- image paths: arguments, lists, directory walks (libcore/walk.c) -- */

/*
 * An iterator over image paths. Each root - the arguments, then each
 * non-empty line of list (e.g. stdin; '\r' stripped) - is either a file,
 * yielded as given (not sniffed: the decoder will say what is wrong), or
 * a directory, walked recursively: entries in byte order of their full
 * paths (as `LC_ALL=C sort` orders them), names starting with '.' skipped,
 * symbolic links followed (loops refused), and only regular files whose
 * first bytes are PNG or JPEG yielded (others counted in nskipped). Paths are
 * the root as given joined with '/' to the names below it.
 * Memory: the current line, plus the sorted entries of the directories on
 * the current path.
 */
struct vlm_walk_frame;
struct vlm_walk {
	int nskipped;     /* non-image files passed over */
	long lineno;      /* lines of list read */
	/* private */
	char *const *roots;
	int nroots, iroot;
	FILE *list;
	const char *listname;
	char *line;
	size_t linecap;
	char *path;
	size_t pathcap;
	struct vlm_walk_frame *stack;
	int depth, cap;
};

/* roots may be NULL (nroots 0), list NULL; listname for messages. */
int vlm_walk_init(struct vlm_walk *w, char *const *roots, int nroots,
    FILE *list, const char *listname);
/*
 * The next image path in *path (valid until the next call): 1; 0 at the
 * end; -1 on an error (a missing root, an unreadable directory or file,
 * a loop: message set); calling again goes on past it.
 */
int vlm_walk_next(struct vlm_walk *w, const char **path);
void vlm_walk_release(struct vlm_walk *w);
/* vlm_loader_opts.next over a walk (arg): each path as a malloc'ed key. */
int vlm_walk_key(void *arg, char **key);

/* ---- batch loader (libcore/loader.c) ---------------------------------- */

/*
 * Worker threads load items (decode + preprocess + tokenise, through the
 * callbacks) into a ring of `depth` batch buffers ahead of the consumer.
 * The stream is deterministic: it depends on the options only, never on
 * `threads` or timing.
 *  - Items 0..n-1; epoch e visits them in the order of
 *    vlm_perm_shuffle(seed, e) (shuffle) or in index order; an epoch is
 *    cut into batches of `batch`, the last one short unless drop_last.
 *  - Each item's callbacks get seed = vlm_item_seed(seed, epoch, index)
 *    for its random augmentation.
 *  - A failed item (callback returned -1) is reported in its batch's
 *    err[] (in item order) and either dropped (SKIP: the batch is
 *    shorter) or replaced (REPLACE: by index splitmix(seed, epoch,
 *    position, attempt) mod n, up to 16 tries, then vlm_loader_next
 *    fails).
 *  - The cursor (epoch, pos) after a batch says where the rest of the
 *    stream starts: a loader created with start = that cursor delivers
 *    exactly the batches that would have followed.
 *  - n = -1: a stream of unknown length; next() gives each item a key
 *    (e.g. a path from vlm_walk); index is then the item's number in the
 *    stream; one epoch, no shuffle, SKIP only, no resume. next() runs
 *    on one worker at a time, outside the loader's lock (a slow source
 *    stalls no worker decoding items read before); its -1 is reported
 *    as an error with index -1.
 * The image and text callbacks run concurrently on the workers (they must
 * be thread-safe) and write one item: pixels (image_floats floats) and
 * tokens (ctx int32s).
 */
struct vlm_cursor {
	int64_t epoch;
	int64_t pos;   /* items of that epoch already delivered */
};

enum vlm_loader_fail { VLM_LOADER_SKIP, VLM_LOADER_REPLACE };

struct vlm_loader_opts {
	int64_t n;             /* items, e.g. 1000000; -1: a stream */
	int batch;             /* B, e.g. 256 */
	int threads;           /* workers, e.g. 8; 0: 4 */
	int depth;             /* batch buffers, >= 2, e.g. 3; 0: 3 */
	uint64_t seed;         /* e.g. 0 */
	int shuffle;           /* a new permutation every epoch */
	int drop_last;         /* epochs of floor(n/B) full batches */
	int64_t epochs;        /* stop after this many; 0: never */
	enum vlm_loader_fail on_fail;
	struct vlm_cursor start; /* where to begin, e.g. a saved cursor */
	int feed;              /* batches by vlm_loader_feed() (sampler) */
	int64_t image_floats;  /* per item, e.g. 3*224*224; 0: no image */
	int ctx;               /* tokens per item, e.g. 77; 0: no text */
	void *arg;             /* for the callbacks */
	/* 0, or -1 after vlm_error(); key is NULL unless a stream */
	int (*image)(void *arg, int64_t index, const char *key,
	    uint64_t seed, float *pixels /* (image_floats) */);
	int (*text)(void *arg, int64_t index, const char *key,
	    uint64_t seed, int32_t *tokens /* (ctx) */);
	/* streams: 1 and *key (malloc'ed, the loader frees), 0 end, -1 */
	int (*next)(void *next_arg, char **key);
	void *next_arg;        /* e.g. a struct vlm_walk for vlm_walk_key */
};

struct vlm_item_error {
	int64_t index;   /* -1: from next() */
	char *key;       /* the item's key or NULL */
	char *msg;
};

struct vlm_batch {
	int n;                /* items (SKIP: fewer when some failed) */
	struct vlm_cursor at; /* the first item's epoch and position */
	int64_t *index;       /* [n] item indices */
	char **key;           /* [n] streams: item keys; else NULL */
	float *pixels;        /* (n, image_floats) or NULL */
	int32_t *tokens;      /* (n, ctx) or NULL */
	int nerr;
	struct vlm_item_error *err; /* [nerr] failures, item order */
};

/* Start the workers; NULL with a message on bad options or no memory. */
struct vlm_loader *vlm_loader_new(const struct vlm_loader_opts *o);
/*
 * The next batch: 1 and *b (valid until the next call or free; a batch
 * may have n == 0 and only errors), 0 at the end, -1 on an error.
 */
int vlm_loader_next(struct vlm_loader *l, const struct vlm_batch **b);
/* Where the stream goes on after the last batch returned. */
void vlm_loader_cursor(const struct vlm_loader *l, struct vlm_cursor *c);
/* Stop the workers (each finishes its item) and free everything. */
void vlm_loader_free(struct vlm_loader *l);
/* perm := a permutation of 0..n-1 (n < 2^32) for (seed, epoch). */
void vlm_perm_shuffle(uint32_t *perm, int64_t n, uint64_t seed,
    int64_t epoch);
/* splitmix64's mixer applied to seed, then ^epoch, then ^index. */
uint64_t vlm_item_seed(uint64_t seed, int64_t epoch, int64_t index);

/*
 * Ready-made callbacks (libcore/items.c), arg a struct vlm_items:
 * vlm_items_image loads paths[index] (streams: the key) and applies
 * OpenCLIP's validation transform, or with train its RandomResizedCrop
 * augmentation drawn from vlm_rng_seed(item seed): image_floats 3*S*S.
 * vlm_items_text tokenizes captions[index] (streams: the key) to ctx ids.
 */
struct vlm_items {
	char *const *paths;        /* [n] or NULL: the key */
	char *const *captions;     /* [n] or NULL: the key */
	int size;                  /* S, e.g. 224 */
	const float *mean, *std;   /* NULL: OpenAI's */
	int train;                 /* augment (else the validation crop) */
	const struct vlm_augment *augment;      /* NULL: the defaults */
	const struct vlm_image_opts *image_opts; /* NULL: the defaults, */
	int alpha;                 /* with this enum vlm_alpha (model's) */
	const struct vlm_bpe *bpe;
	int ctx;                   /* e.g. VLM_BPE_CONTEXT */
};
int vlm_items_image(void *arg, int64_t index, const char *key,
    uint64_t seed, float *pixels /* (3,S,S) */);
int vlm_items_text(void *arg, int64_t index, const char *key,
    uint64_t seed, int32_t *tokens /* (ctx) */);

/* ---- CLIP BPE tokenizer (libcore/bpe.c, bpe-train.c, text.c) ---------- */

#define VLM_BPE_CONTEXT 77        /* CLIP's text context length */
#define VLM_BPE_CLIP_MERGES 48894 /* merges CLIP uses: 49408 tokens */
#define VLM_BPE_MAX_VOCAB (512 + VLM_BPE_CLIP_MERGES + 2)

/*
 * A byte-level BPE tokenizer as OpenCLIP's SimpleTokenizer: ids 0..255
 * are the bytes (in CLIP's bytes_to_unicode order), 256..511 the same
 * ending a word (</w>), then one id per merge in rank order, then
 * <start_of_text> and <end_of_text>. The merges list is the whole
 * tokenizer; vlm_bpe_merges_alloc() writes it in the text format of
 * CLIP's bpe_simple_vocab_16e6.txt (a header line such as "#version: 0.2",
 * then "left right" per line) that a model file carries as metadata
 * "tokenizer.merges".
 * Encoding is safe from several threads (the word cache is used by one
 * at a time; the others go without).
 */
struct vlm_bpe {
	int nmerges;  /* e.g. 48894 */
	int nvocab;   /* 512 + nmerges + 2, e.g. 49408 */
	int32_t sot;  /* <start_of_text>, nvocab - 2, e.g. 49406 */
	int32_t eot;  /* <end_of_text>, nvocab - 1, e.g. 49407 */
	struct vlm_bpe_tables *t; /* private: tokens, merge ranks, cache */
};

/*
 * Load a tokenizer: a merges file, gzipped or not (the first 48894 merges,
 * as OpenCLIP reads bpe_simple_vocab_16e6.txt.gz), or an HF vocab.json
 * with merges.txt beside it (checked to agree with each other).
 */
int vlm_bpe_load(struct vlm_bpe *bpe, const char *path);
/* Build a tokenizer from merges text (all its merges). */
int vlm_bpe_from_merges(struct vlm_bpe *bpe, const char *text);
/* The merges text of bpe (malloc'ed), or NULL when out of memory. */
char *vlm_bpe_merges_alloc(const struct vlm_bpe *bpe);
void vlm_bpe_release(struct vlm_bpe *bpe);

/*
 * Tokenize text as OpenCLIP does (clean: html.unescape twice, collapse
 * white space, lowercase; no ftfy), into ids[0, ctx): <start_of_text>,
 * the tokens, <end_of_text>; longer results are cut to ctx with
 * <end_of_text> last; the rest is zero. Returns the ids before the
 * padding (at most ctx), or -1 (out of memory, ctx < 1).
 */
int vlm_bpe_encode(const struct vlm_bpe *bpe, const char *text,
    int32_t *ids, int ctx);
/*
 * The text of ids[0, n) (malloc'ed): <start_of_text> skipped, stops at
 * <end_of_text>, word ends become spaces (the last one dropped). NULL on
 * an id out of range or out of memory.
 */
char *vlm_bpe_decode_alloc(const struct vlm_bpe *bpe, const int32_t *ids,
    int n);
/* The cleaned text vlm_bpe_encode() splits (malloc'ed), or NULL. */
char *vlm_bpe_clean_alloc(const char *text);

/*
 * Learn a tokenizer from n texts: vocab_size tokens at most (512 bytes,
 * merges, 2 specials; at most VLM_BPE_MAX_VOCAB), same cleaning, splitting
 * and byte alphabet as CLIP. Each step merges the most frequent adjacent
 * pair (ties: the pair of lower token ids); stops early when no pair
 * occurs twice. Deterministic.
 */
int vlm_bpe_train(struct vlm_bpe *bpe, const char *const *texts, size_t n,
    int vocab_size);

/* ---- images (libcore/image*.c, resample.c, preprocess.c) -------------- */

/* An 8-bit RGB image; rgb is malloc'ed, freed by vlm_image_release. */
struct vlm_image {
	int w, h;
	uint8_t *rgb; /* (h,w,3) */
};

enum vlm_image_format { VLM_IMAGE_NONE, VLM_IMAGE_JPEG, VLM_IMAGE_PNG };
/* What becomes of alpha (an alpha channel or PNG tRNS). */
enum vlm_alpha {
	VLM_ALPHA_DROP,  /* as PIL's convert("RGB") (the default) */
	VLM_ALPHA_WHITE, /* composite over white (PIL alpha_composite) */
	VLM_ALPHA_BLACK  /* composite over black */
};

#define VLM_IMAGE_MAX_PIXELS (64LL << 20)
#define VLM_IMAGE_MAX_SCANS 1000

/* Decoding options; all zero means the defaults. */
struct vlm_image_opts {
	enum vlm_alpha alpha; /* e.g. VLM_ALPHA_DROP */
	int64_t max_pixels;   /* e.g. 0: VLM_IMAGE_MAX_PIXELS (64 Mpixel) */
	int max_scans;        /* e.g. 0: VLM_IMAGE_MAX_SCANS (JPEG) */
	int ignore_exif;      /* e.g. 0: apply EXIF orientation as PIL's
	                       * ImageOps.exif_transpose; 1: leave the
	                       * pixels as stored (plain Image.open) */
};

/*
 * Load a JPEG or PNG file ("-": stdin; format sniffed from content) as
 * 8-bit RGB, the pixels of PIL's Image.open(path).convert("RGB"), except:
 * EXIF orientation applied (unless o->ignore_exif), 16-bit gray kept as
 * value >> 8. o may be NULL. -1 with a message naming the file for
 * unreadable, truncated, corrupt, unsupported or over-limit input.
 */
int vlm_image_load(struct vlm_image *im, const char *path,
    const struct vlm_image_opts *o);
/* The same from a buffer; name is used in messages. */
int vlm_image_decode(struct vlm_image *im, const void *buf, size_t n,
    const char *name, const struct vlm_image_opts *o);
void vlm_image_release(struct vlm_image *im);
/* enum vlm_image_format from the first bytes; 0 if not an image. */
int vlm_image_sniff_mem(const void *buf, size_t n);
/* The same for a file; -1 with message if it cannot be read. */
int vlm_image_sniff(const char *path);

/*
 * PIL's Image.resize((ow, oh), BICUBIC) of src (w x h RGB, rows `stride`
 * bytes apart), bit-exact, computing only the window (x0, y0, cw, ch) of
 * the output. -1 only when out of memory.
 */
int vlm_resample_bicubic(uint8_t *dst /* (ch,cw,3) */, int ow, int oh,
    int x0, int y0, int cw, int ch, const uint8_t *src /* (h,w,3) */,
    int w, int h, size_t stride);

/* OpenAI CLIP's normalisation, OpenCLIP's default. */
extern const float vlm_openai_mean[3], vlm_openai_std[3];

/* torchvision Resize(S): shorter side S, longer int(S * long / short). */
void vlm_resize_shorter(int w, int h, int S, int *ow, int *oh);
/* Resize(S) + CenterCrop(S) of OpenCLIP's validation transform. */
int vlm_image_resize_crop(uint8_t *out /* (S,S,3) */,
    const struct vlm_image *im, int S);
/* ToTensor + Normalize: (v / 255 - mean) / std in float32, CHW; NULL
 * mean / std mean OpenAI's; hflip mirrors the columns. */
void vlm_image_normalize(float *out /* (3,S,S) */,
    const uint8_t *px /* (S,S,3) */, int S, const float mean[3],
    const float std[3], int hflip);
/* OpenCLIP's validation transform of an RGB image. */
int vlm_preprocess(float *out /* (3,S,S) */, const struct vlm_image *im,
    int S, const float mean[3], const float std[3]);

/* Training augmentation (OpenCLIP is_train=True). */
struct vlm_augment {
	double scale_lo, scale_hi; /* e.g. 0.9, 1.0: crop area fraction */
	double ratio_lo, ratio_hi; /* e.g. 3/4, 4/3: crop width / height */
	int hflip;                 /* e.g. 0; 1: mirror half the images */
	double jitter; /* e.g. 0.4: brightness, contrast, saturation x[1-j,1+j] */
	double hue;    /* e.g. 0.1: hue turned by up to this fraction of a turn */
	double gray;   /* e.g. 0.2: probability of greyscale */
};
#define VLM_AUGMENT_DEFAULT {0.9, 1.0, 3.0 / 4.0, 4.0 / 3.0, 0, 0, 0, 0}
struct vlm_crop {
	int x, y, w, h;
};
/* torchvision RandomResizedCrop.get_params for a w x h image. */
void vlm_augment_crop(struct vlm_crop *c, int w, int h,
    const struct vlm_augment *a, struct vlm_rng *r);
/* Crop c of im resized to S x S (PIL bicubic of the cropped image). */
int vlm_image_crop_resize(uint8_t *out /* (S,S,3) */,
    const struct vlm_image *im, const struct vlm_crop *c, int S);
/*
 * Colour changes on n RGB pixels, in this order (PIL ImageEnhance's and
 * torchvision ColorJitter's definitions): brightness b (x b), contrast c
 * (blend with the mean luma), saturation s (blend with each pixel's
 * luma), hue h (a turn of h in YIQ's chroma plane), then greyscale when
 * gray; luma is 0.299 R + 0.587 G + 0.114 B; one rounding at the end.
 */
void vlm_color_apply(uint8_t *px /* (n,3) */, int64_t n, double b, double c,
    double s, double h, int gray);
/* Draw vlm_color_apply's factors from a (nothing drawn for what is off). */
void vlm_augment_color(uint8_t *px /* (n,3) */, int64_t n,
    const struct vlm_augment *a, struct vlm_rng *r);
/* RandomResizedCrop (a NULL: defaults), optional flip, colour, normalise. */
int vlm_preprocess_train(float *out /* (3,S,S) */, const struct vlm_image *im,
    int S, const float mean[3], const float std[3],
    const struct vlm_augment *a, struct vlm_rng *r);

/* ---- threads (libcore/threads.c) -------------------------------------- */

/*
 * The number of threads the CPU kernels use: VLM_THREADS if set to a
 * positive number, else every online core (within our affinity mask).
 * The first call sets OpenBLAS to one thread: all threading is the
 * pool's (threaded GEMMs: vlm_gemm_cpu in kernels.h), so results are
 * bit-identical for every thread count.
 */
int vlm_threads(void);
/* Use n threads from now on (n <= 0: back to the default); for tests. */
void vlm_threads_set(int n);
/*
 * Call fn(ctx, i0, i1) on contiguous chunks covering [0,n), one chunk
 * per thread, on a persistent pool; returns when all are done. fn must
 * compute each index the same way whatever its chunk, so that results
 * are bit-identical for every thread count. Nested calls (and calls
 * while another thread's job runs) run inline.
 */
void vlm_parallel_for(int64_t n,
    void (*fn)(void *ctx, int64_t i0, int64_t i1), void *ctx);
/* The same, but inline when the whole job is under ~32k flops. */
void vlm_parallel_for_cost(int64_t n, int64_t flops,
    void (*fn)(void *ctx, int64_t i0, int64_t i1), void *ctx);
/*
 * Call first in main. Sets up the threads (vlm_threads), and on an
 * AVX-512 CPU where OpenBLAS runs AVX2 kernels (its cpuid tables missed
 * the CPU, or OPENBLAS_CORETYPE forces e.g. Haswell), re-executes the
 * program with OPENBLAS_CORETYPE=SkylakeX, about twice the SGEMM speed.
 * Returns 0 without re-executing when VLM_BLAS_KEEP is set (keep what
 * OpenBLAS chose), OpenBLAS already uses AVX-512 kernels, the CPU lacks
 * AVX-512, or after one re-exec (VLM_BLAS_REEXEC); -1 if the exec failed
 * (the program may go on). argc and argv as main's.
 */
int vlm_blas_setup(int argc, char **argv);

/* ---- .npy arrays, .npys streams, packed embeddings (libcore/npy*.c) --- */

/*
 * One .npy record (versions 1.0-3.0 read, 1.0 written). Numeric
 * dtypes '<f4' '<f2' '<i4' '<i8' '|u1' fill t (t.data malloc'ed);
 * '<U{w}' string arrays set is_str and width and fill str: numel UTF-8
 * strings in one malloc'ed block (t.data NULL, t.dtype meaningless).
 */
struct vlm_npy {
	struct vlm_tensor t;
	int is_str;
	int width; /* '<U{w}': characters per string */
	char **str;
};

/*
 * Read one record from f; name is the file or stream in messages.
 * 0 a record, 1 a clean end of stream before any byte, -1 an error.
 */
int vlm_npy_read(FILE *f, const char *name, struct vlm_npy *r);
void vlm_npy_release(struct vlm_npy *r);
int64_t vlm_npy_numel(const struct vlm_npy *r);
/* Write t as one v1 record (not BF16: NumPy has no such dtype). */
int vlm_npy_write(FILE *f, const char *name, const struct vlm_tensor *t);
/* Write n UTF-8 strings as a '<U{w}' record of shape (n,), w >= 1. */
int vlm_npy_write_str(FILE *f, const char *name, const char *const *s,
    int64_t n);
/*
 * Write only a v1 header, byte for byte as numpy's: padded so that a
 * header with any other shape[0] is as long and may overwrite it.
 */
int vlm_npy_write_header(FILE *f, const char *name, enum vlm_dtype dt,
    int ndim, const int64_t *shape);
/* A whole numeric .npy file ("-" stdin); t->data malloc'ed, caller frees. */
int vlm_npy_load(const char *path, struct vlm_tensor *t);
/* Write t to path atomically (temporary name, then rename). */
int vlm_npy_save(const char *path, const struct vlm_tensor *t);

/*
 * .npys embedding stream: a metadata record (|u1 UTF-8 JSON object with
 * "format":"vlm-embeddings", "version":1, "dim", ...), then per batch
 * ids ('<U{w}', (k,)) and vectors ('<f4', (k, dim)), then an end record
 * (|u1 JSON {"end":true,"rows":N, ...}). See libcore/npys.c.
 */
struct vlm_npys_writer {
	FILE *f;
	const char *name; /* for messages */
	int64_t dim;
	int64_t rows;     /* written so far */
};
/*
 * Write the metadata record: meta_json is a JSON object holding at
 * least "dim" (e.g. {"model":"clip","dim":512,"space":"image",
 * "normalized":true}); "format" and "version" are added.
 */
int vlm_npys_writer_init(struct vlm_npys_writer *w, FILE *f,
    const char *name, const char *meta_json);
/* One batch: k ids and vec (k, dim); k == 0 writes nothing. */
int vlm_npys_writer_batch(struct vlm_npys_writer *w, const char *const *ids,
    const float *vec, int64_t k);
/*
 * The end record {"end":true,"rows":N} plus the keys of extra_json (a
 * JSON object or NULL, e.g. {"failed":["a.png"]}); then flushes f and
 * fails on a write error. Does not close f.
 */
int vlm_npys_writer_finish(struct vlm_npys_writer *w, const char *extra_json);

struct vlm_npys_reader {
	FILE *f;
	const char *name;
	char *meta;    /* the metadata JSON text */
	int64_t dim;
	int64_t rows;  /* rows returned so far */
	char *end;     /* the end record's JSON text, once reached */
	int64_t k;     /* the current batch: k ids and vectors */
	char **ids;    /* (k) UTF-8 */
	float *vec;    /* (k, dim) */
	struct vlm_npy rec[2]; /* owns ids and vec */
};
/* Read and check the metadata record. Does not take ownership of f. */
int vlm_npys_reader_init(struct vlm_npys_reader *r, FILE *f,
    const char *name);
/*
 * The next batch: 1 with k, ids, vec set; 0 at the end record (checked
 * against the row count, nothing may follow it); -1 on an error,
 * including a stream that ends without an end record ("truncated").
 */
int vlm_npys_reader_next(struct vlm_npys_reader *r);
void vlm_npys_reader_release(struct vlm_npys_reader *r);

/*
 * Pack the rest of a stream into the packed form for out ("E.npy"):
 * E.npy (N, dim) '<f4', E.ids.npy '<U{w}' (N,), E.json (metadata plus
 * "rows" and the end record's extra keys), each written to a temporary
 * name and renamed only once the whole stream has been read and
 * checked; on failure none of the three is left behind.
 */
int vlm_npys_pack(struct vlm_npys_reader *r, const char *out);

/* ---- safetensors files (libcore/safetensors.c) ------------------------ */

/*
 * A loaded safetensors file. vlm_st_load() maps the file and checks every
 * rule of ../shared/docs/FORMATS.md (header cap, UTF-8 JSON, known dtypes,
 * sizes, contiguous offsets covering the data exactly, no duplicate keys,
 * nesting depth); it refuses pickle names first. Tensor data point into
 * the read-only mapping (zero copy); only a file with a tensor not
 * aligned for its dtype (which the reference writer never makes) gets
 * one aligned copy of its data section. "-" reads stdin into memory.
 * Entries are in file order (ascending data offset). All strings and data
 * live until vlm_st_release().
 */
struct vlm_st {
	char *path;                 /* as given ("<stdin>" for -) */
	int n;                      /* tensors */
	const char **names;         /* n names, file order */
	struct vlm_tensor *tensors; /* n tensors, same order */
	int nmeta;                  /* __metadata__ entries, header order */
	const char **meta_keys, **meta_vals;
	/* private */
	unsigned char *base;        /* whole file: mmap or malloc */
	size_t size;
	int mapped;
	void *copy;                 /* aligned copy of the data, or NULL */
	int *byname;                /* indices sorted by name */
	void *json;                 /* the parsed header, owns the strings */
};

int vlm_st_load(struct vlm_st *st, const char *path);
void vlm_st_release(struct vlm_st *st);
/* The tensor called name, or NULL. */
const struct vlm_tensor *vlm_st_get(const struct vlm_st *st,
    const char *name);
/* The metadata value for key, or NULL. */
const char *vlm_st_meta(const struct vlm_st *st, const char *key);
/* Total elements of all tensors. */
int64_t vlm_st_numel(const struct vlm_st *st);

/*
 * Write n tensors and nmeta metadata strings to path atomically
 * (temporary name, fsync, rename; "-" is stdout). As the reference
 * writer does, the header is padded with spaces to a multiple of 8 and
 * the tensors are laid out in the given order stably sorted by
 * decreasing dtype size, so each is aligned and loads zero copy.
 * Refuses repeated or reserved ("__metadata__") names, invalid UTF-8.
 */
int vlm_st_save(const char *path, const char *const *names,
    const struct vlm_tensor *ts, int n, const char *const *meta_keys,
    const char *const *meta_vals, int nmeta);

/* ---- training runs (libcore/train.c) -------------------------------------- */

struct vlm_train_opts {
	int batch;          /* examples per step, e.g. 128 */
	int64_t steps;      /* optimizer steps, e.g. 2000 */
	float lr;           /* peak learning rate, e.g. 5e-4 */
	int64_t warmup;     /* linear warmup steps, e.g. 100 */
	int cosine;         /* cosine decay to 0 after warmup */
};
/* OpenCLIP's schedule: warmup (step+1)/warmup, then cosine or constant. */
float vlm_lr_at(const struct vlm_train_opts *o, int64_t step);

/* What a checkpoint restores besides parameters and moments. */
struct vlm_train_state {
	int64_t step;             /* optimizer steps done */
	int64_t samples;          /* examples seen */
	struct vlm_cursor cursor; /* where the data stream goes on */
	struct vlm_rng rng;       /* router noise generator */
	uint64_t seed;
	int nsources;             /* several data sources: S; else 0 */
	struct vlm_source_state sources[VLM_SOURCES_MAX]; /* their cursors,
	                                                   * loss averages */
};
/* RUN/ckpt-<step>/ written atomically, RUN/latest pointed at it, all but
 * the newest `keep` removed (0: keep all). */
int vlm_ckpt_save(const char *run, const struct vlm_model *m,
    const struct vlm_optim *o, const struct vlm_train_state *s, int keep);
/* Remove what killed saves left and, keep > 0, checkpoints beyond the
 * newest `keep` up to step (vlm_ckpt_save does it after each save). */
int vlm_ckpt_prune(const char *run, int64_t step, int keep);
/* Model, moments (o is initialised here) and state from RUN/latest. */
int vlm_ckpt_load(const char *run, struct vlm_model *m, struct vlm_optim *o,
    struct vlm_train_state *s);

#endif /* VLM_H */
