/*
 * run.h - private to forward.c and backward.c: the activations of one
 * batch shape, allocated once in a single arena (no allocation inside a
 * step). A "stack" is one pass of rows through a set of blocks: in a
 * two-tower model one stack per tower, in a one-tower model one stack
 * whose rows are the image tokens followed by the text tokens, so that
 * the MoE layers route both modalities in one group. Token reduction
 * (TokenLearner after vision block `after`) cuts the image rows from N to
 * M tokens, so the blocks after it form a stack of their own: the first
 * stack's `next`, whose x[0] is the cut of the first one's output.
 *
 * Every op runs through the run's backend (kernels.h): the arena is the
 * backend's memory; what the host computes (routing rows, lengths, EOT
 * positions, router noise) or reads back (fill counts, features,
 * routing records, logits) lives in a second, host arena (the h* fields)
 * and moves only by upload and download. The weights and gradients the
 * run is given are used as the backend's memory on host backends; a
 * device backend's run keeps its own copies (wdev, gdev) and moves them.
 */
#ifndef VLM_RUN_H
#define VLM_RUN_H

#include "model/model.h"
#include "kernels.h"

/* A run of B sequences of T tokens inside a stack. */
struct seg {
	int mod;      /* 0 image, 1 text */
	int B, T;
	int64_t row0; /* first row in the stack */
	int causal;
	int32_t *len; /* (B) tokens that count (text: up to EOT), host */
	int32_t *dlen; /* its backend copy for a padding mask, or NULL */
	int split;    /* mod 2 (fused pairs): the first split tokens of
	               * each sequence are image tokens, the rest text */
};

/* One MoE layer's routing state for one pool. */
struct moe_acts {
	int S, C, Cmax; /* tokens routed, capacity used, slots allocated */
	int32_t *rows; /* (S) stack row of each routed token */
	uint8_t *mod;  /* (S) modality */
	int32_t *hrows, *hfill; /* host: rows as made, fill as read back */
	uint8_t *hmod;
	float *heps;   /* host: the noise as drawn, uploaded to eps */
	int32_t *hidx; /* host copies for vlm_run_route */
	uint8_t *hkeep;
	float *hw, *hz, *hp;
	float *xs, *z, *p, *g, *eps;       /* (S,D) (S,E) x4 */
	int32_t *idx, *slot, *order, *fill; /* (S,K) (S,K) (S) (E) */
	float *val, *w;                    /* (S,K) */
	uint8_t *keep;                     /* (S,K) */
	float *buf, *efc, *eact, *eout;    /* (E*C,D) (E*C,F) x2 (E*C,D) */
	float *ys;                         /* (S,D) */
	float aux;                         /* weighted aux loss */
	int ep;                            /* its index in moe-ep.c */
	int grp;                           /* its index in moe-group.c */
};

/* A stored activation of layer l: its own copy when training (nl = L),
 * else the one copy every layer shares (inference). */
#define LAYER(st, buf, l, n) \
	((st)->buf + (size_t)((st)->nl > 1 ? (l) : 0) * (n))

struct stack {
	int nseg;
	struct seg seg[2];
	int R, D, F, H, L, pools, nl;
	int l0;             /* the tower's index of blocks[0] */
	struct stack *next; /* the stack after a token-reduction cut */
	const struct vlm_block_off *blocks;
	int64_t att_n;      /* floats of attention probs per layer */
	float *x;           /* (L+1, R, D) block inputs; x[L] the output */
	float *ln1, *mean1, *rstd1, *qkv, *att, *atty, *mid;
	float *ln2, *mean2, *rstd2, *fc, *act; /* per stored layer */
	struct moe_acts *moe; /* (L * pools); unused entries for dense */
	int S_max[2];
	int stop;           /* backward: blocks below it need no gradient */
	int no_dx0;         /* backward: nothing wants d x[0] */
	float *dtop;        /* fusion training: d output rows from the
	                     * fusion blocks, or NULL */
};

/* x[L], the stack's output rows (R, D). */
#define STACK_TOP(st) ((st)->x + (size_t)(st)->L * (st)->R * (st)->D)

/* Embeddings and head of one modality. */
struct tower_acts {
	int B, T;           /* T: tokens at the head */
	struct stack *st;   /* the stack that carries its rows to the head */
	int64_t row0;
	int Te;             /* tokens at the embedding (images: N before a cut) */
	struct stack *st0;  /* the stack its embeddings enter */
	int64_t row0e;
	float *patches;     /* (B*P, 3*p*p) images only */
	float *emb;         /* (B*P, D) patch or token embeddings */
	float *xe;          /* (B*T, D) before ln_pre (images) */
	float *mean0, *rstd0;
	int32_t *ids, *pos, *len; /* (B*T) tokens; (B) pooled row; (B) */
	int32_t *hpos, *hlen;     /* their host copies */
	float *img;               /* (B,3,S,S) the images uploaded */
	float *lnf, *meanf, *rstdf; /* (B*T, D) after ln_post / ln_final */
	float *pooled, *feat;       /* (B, D) (B, embed) */
	float *mq, *mk, *mv, *matt, *mpatt; /* map pooling: (D) (B*T,D) x2
	                                     * (B,H,T) (B,D) */
	float *unit, *norm;         /* (B, embed) L2-normalised, (B) */
	float *tl_act;              /* TokenLearner activations (images) */
	float *hfeat, *hunit;       /* host copies for vlm_run_features */
	int no_head;                /* backward: the head needs no gradient */
};

struct vlm_run {
	const struct vlm_backend *be;
	int train, nst, embed;
	int E, K;                 /* experts, choices per token */
	struct stack st[4];       /* in forward order; st[nst]: fus */
	struct stack *fus;        /* the fusion blocks' (model/fusion.c), or
	                           * NULL */
	struct vlm_fusion_run *fz; /* fusion heads' state, or NULL */
	int fus_n;                /* pairs fused since the last vlm_forward */
	float itc_w;              /* the contrastive loss's weight in the
	                           * backward, e.g. 1 */
	struct tower_acts tw[2]; /* 0 images, 1 texts */
	float *logits, *dlogits;  /* (Bi, Bt) */
	float *lse2;              /* (2B) row and column log-sum-exps */
	struct vlm_loss loss;
	struct vlm_rng rng;
	/* backward scratch */
	float *dx, *dnext, *dln, *datty, *dqkv, *dfc, *dact;
	float *dbuf, *defc, *deact, *deout, *dxs, *dys, *dz, *dw; /* MoE */
	float *dfeat[2], *dunit[2], *dpooled[2], *dlnf;
	float *dmq, *dmk, *dmv, *dmpatt; /* map pooling */
	float *dcut;              /* d x[0] of a token-reduction cut's next */
	float *datt;              /* attention backward scratch, one layer */
	float *hstream;           /* host copy for vlm_run_stream */
	float *hlogits, *hlse2;   /* host copies for vlm_run_row_loss */
	float aux_w;              /* backward: weight of the aux terms */
	struct vlm_ep *ep;        /* expert parallel (moe-ep.c), or NULL */
	struct vlm_grp *grp;      /* routing group (moe-group.c), or NULL */
	int gsize;                /* ranks the group is planned for, >= 1 */
	uint8_t *nograd;          /* (nparams) vlm_run_freeze's, or NULL */
	int64_t *goff, gfloats;   /* vlm_run_pack's offsets (NULL: none) and
	                           * slab length */
	float *tlg;               /* packed: the token learner's unwanted
	                           * parameter gradients go here */
	int64_t *foff;            /* vlm_run_fold's: each folded parameter's
	                           * place in fbuf (-1: not folded), or NULL */
	float *fbuf;              /* one block's folded gradients */
	float *hfbuf;             /* their host copy (device backends) */
	void (*fold)(void *ctx, int i, const float *dw);
	void *fold_ctx;
	const uint16_t *wb;       /* bf16 weights (vlm_run_set_bf16), or NULL */
	float *bscratch;          /* linear_fwd_bf16's scratch */
	struct vlm_wpack *wk;     /* packed fp32 weights (vlm_run_set_wpack),
	                           * or NULL */
	int nparams;
	void *arena, *harena;     /* the backend's, the host's */
	/* a device backend's copy of the model's weights, uploaded by every
	 * vlm_forward, and of the gradient vlm_backward downloads into the
	 * caller's (host) buffer: NULL on host backends */
	float *wdev, *gdev;
	size_t bytes, hbytes;     /* of each */
};

/* Weight of each aux term for one group (forward.c); index order:
 * importance, load, switch, z, local img/txt, global img/txt. */
void vlm_aux_coefs(const struct vlm_config *c, const struct moe_acts *ma,
    int train, float coef[8]);

/* Stacks of the run, the fusion one included. */
#define NSTACKS(r) ((r)->nst + ((r)->fus != NULL))
/* The blocks of a stack forward, and backward from d x[L] in r->dnext
 * (returns d x[0], r->dnext or r->dx); forward.c, backward.c. */
void vlm_stack_fwd(struct vlm_run *r, const struct vlm_model *m,
    struct stack *st);
float *vlm_stack_bwd(struct vlm_run *r, const struct vlm_model *m,
    struct stack *st, float *g);
/* fusion.c: the heads' backward into d of the fusion stack's output,
 * through its blocks into each tower stack's dtop; its state freed. */
int vlm_fusion_bwd(struct vlm_run *r, const struct vlm_model *m, float *g);
void vlm_fusion_free(struct vlm_run *r);

/* m, or (device backends) a view of m whose weights are r->wdev. */
const struct vlm_model *vlm_run_weights(const struct vlm_run *r,
    const struct vlm_model *m, struct vlm_model *view);
/* moe-ep.c: expert parallel in place of the local expert loop; a failed
 * exchange is reported by vlm_ep_check at the end of the pass. */
void vlm_ep_fwd(struct vlm_run *r, const struct vlm_model *m,
    struct moe_acts *ma, const struct vlm_block_off *o, int pool, int D,
    int F);
void vlm_ep_bwd(struct vlm_run *r, const struct vlm_model *m,
    struct moe_acts *ma, const struct vlm_block_off *o, int pool, float *g,
    int D, int F);
int vlm_ep_check(const struct vlm_run *r);
void vlm_ep_free(struct vlm_run *r);
/* moe-group.c: routing over every rank's tokens. vlm_grp_map after
 * routing_rows (each forward of a stack); vlm_grp_route in place of
 * router_fwd and moe_route_fwd (ma->xs gathered); vlm_grp_view: ma with
 * the group's router outputs, choices and modalities, for the aux terms;
 * vlm_grp_dz_in: this rank's dz rows at their places in the group's
 * (zero elsewhere), returned, and vlm_grp_dz_out: its rows back into dz. */
void vlm_grp_map(struct vlm_run *r, struct stack *st);
void vlm_grp_route(struct vlm_run *r, const struct vlm_model *m,
    struct moe_acts *ma, const float *router_w, int D);
const struct moe_acts *vlm_grp_view(const struct vlm_run *r,
    const struct moe_acts *ma, struct moe_acts *v);
float *vlm_grp_dz_in(struct vlm_run *r, const struct moe_acts *ma,
    const float *dz);
void vlm_grp_dz_out(struct vlm_run *r, const struct moe_acts *ma,
    float *dz);
/* The group's routing records of ma's layer (vlm_run_route of a grouped
 * run; rows NULL: other ranks' rows have no place here), valid until
 * the next call. */
void vlm_grp_records(const struct vlm_run *r, const struct moe_acts *ma,
    struct vlm_route_view *v);
int vlm_grp_check(const struct vlm_run *r);
void vlm_grp_free(struct vlm_run *r);

#endif
