/*
 * routing/routing.h - routing records of MoE layers (.routes streams: writer
 * and reader) and the statistics vlm-route-stats prints from them.
 */
#ifndef VLM_LIBCORE_ROUTING_H
#define VLM_LIBCORE_ROUTING_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"
#include "model/model.h"

/* ---- routing records (routing/routes*.c) --------------------------------- */

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
	int tower;   /* 0 vision, 1 text, 2 shared (one-tower), 3 fusion
	              * (a fusion model's vision-language pool: the image
	              * and text tokens of image-text pairs) */
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

/* ---- routing statistics (routing/routestats.c) --------------------------- */

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

int vlm_route_diff_init(struct vlm_route_diff *d,
    const struct vlm_route_stats *a, const struct vlm_route_stats *b);
void vlm_route_diff_add(struct vlm_route_diff *d,
    const struct vlm_routes_reader *a, const struct vlm_routes_reader *b);
void vlm_route_diff_release(struct vlm_route_diff *d);

#endif /* VLM_LIBCORE_ROUTING_H */
