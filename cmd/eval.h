/* eval.h - what the vlm-eval verbs (cmd/eval-*.c) share. */
#ifndef VLM_EVAL_H
#define VLM_EVAL_H

#include <stdint.h>

#include "data/data.h"
#include "model/model.h"
#include "eval/eval.h"

extern const char eval_usage[];
/* The verbs: argv[0] is the verb, optind 1; they return the exit status. */
int eval_zeroshot(int argc, char **argv);
int eval_retrieval(int argc, char **argv);
int eval_linear_probe(int argc, char **argv);
int eval_select(int argc, char **argv);
int eval_suite(int argc, char **argv);
int eval_table(int argc, char **argv);
int eval_plot(int argc, char **argv);
int eval_captioning(int argc, char **argv);
int eval_match(int argc, char **argv);
int eval_qa(int argc, char **argv);

/* cmd/eval-fusion.c: ITM of a fusion model over the output rows the
 * embedding functions kept (eval_stream_out). */
struct eval_fusion {
	const struct vlm_model *m;
	float *img, *txt;  /* (NI, Ti, D) (NT, context, D) */
	int32_t *len;      /* (NT) */
	int64_t NI, NT;
	int Ti, D, batch;
};
/* Room for NI images' and NT texts' rows, the hooks set; -1 warned (a
 * model without fusion blocks). */
int eval_fusion_begin(struct eval_fusion *f, const struct vlm_model *m,
    int64_t NI, int64_t NT, int batch);
void eval_fusion_end(struct eval_fusion *f);
/* P(match) of n pairs (image pi[j], text pt[j]) into p, and (ans not
 * NULL, a model with a QA head) their answers into ans; -1 warned. */
int eval_fusion_score(const struct eval_fusion *f, int64_t n,
    const int32_t *pi, const int32_t *pt, float *p, int32_t *ans);
/* Recall after ITM re-ranking of the contrastive top K both ways: img
 * (NI,E) and txt (NT,E) unit embeddings of the kept items, whose rows
 * in f are imap[i] and tmap[t]; t2i the kept texts' images. */
int eval_fusion_rerank(const struct eval_fusion *f, const float *img,
    int64_t NI, const float *txt, int64_t NT, int E, const int *t2i,
    const int64_t *imap, const int64_t *tmap, int K, double *ir,
    double *tr);

#define EVAL_BATCH 32 /* -b: images or texts per encoder batch */

/* Options every verb parses: -m, -b, --json, --per-class. */
struct eval_common {
	const char *model;  /* -m */
	int batch;          /* -b */
	int json;           /* --json */
	int per_class;      /* --per-class */
	int alpha;          /* --alpha: enum vlm_alpha + 1; 0: the model's */
};
/* --device (NULL: VLM_DEVICE or the default), used by eval_model_load. */
extern const char *eval_device;
/* --precision (c 'X'; every verb): the encoders' enum vlm_precision. */
extern int eval_precision;
/* Handle one of those options (c from getopt_long); 0 if not one. */
int eval_common_opt(struct eval_common *o, int c, const char *arg);
/* A positive integer option value, or exit 2. */

/* Load a model (-m; --alpha applied): 0, or -1 after a warning. */
int eval_model_load(struct vlm_model *m, const struct eval_common *o);

/* A labelled image set: embeddings (n, dim) and labels. */
struct eval_set {
	int64_t n;
	int dim;
	float *vec;  /* (n, dim) */
	int *labels; /* (n) */
	char *model; /* from the embeddings' metadata, or NULL */
};
void eval_set_release(struct eval_set *s);
/*
 * The embeddings of d's images by model m (failed images warned about
 * and left out, setting *failed), or of the rows of the file emb
 * with labels from the file labels (row for row) or, without one, from
 * matching the rows' ids to d's paths. 0, or -1 after a warning.
 */
int eval_set_load(struct eval_set *s, const struct vlm_model *m,
    const struct vlm_imagefolder *d, const char *emb, const char *labels,
    int nclasses, int batch, int *failed);

/*
 * Embed n images by path (or, blobs not NULL, from the shards there)
 * with the model (OpenCLIP's validation transform, L2-normalised): out
 * (n, embed_dim); ok[i] 0 for a failed image (warned about, its row
 * zero). Returns the failures, or -1.
 */
int64_t eval_embed_images(const struct vlm_model *m, char *const *paths,
    const struct vlm_blob *blobs, int64_t n, int batch, float *out,
    unsigned char *ok);
/* When set, the two above also keep each item's output rows of the
 * modality blocks ([0] images (n, tokens, width), [1] texts (n,
 * context, width)) and the texts' lengths up to the EOT: a fusion
 * model's inputs to its fusion blocks (cmd/eval-fusion.c). */
extern float *eval_stream_out[2];
extern int32_t *eval_stream_len;
/* Embed n texts with the tokenizer of model m (file name): out (n,
 * embed_dim), L2-normalised. 0, or -1 after a warning. */
int eval_embed_texts(const struct vlm_model *m, const char *name,
    char *const *texts, int64_t n, int batch, float *out);
/* The paths of a pairs file's nimages images (image_row order) and, blobs
 * not NULL, their shard blobs into *blobs (NULL for a pairs file without
 * shards); malloc'ed arrays of p's strings, exits when out of memory. */
char **eval_pairs_images(const struct vlm_pairs *p, struct vlm_blob **blobs);
/* Both for a pairs file: its images into img (nimages, embed_dim) and
 * ok as eval_embed_images, its captions into txt (n, embed_dim). The
 * images' failures, or -1. */
int64_t eval_embed_pairs(const struct vlm_model *m, const char *name,
    const struct vlm_pairs *p, int batch, float *img, unsigned char *ok,
    float *txt);
/*
 * row[i] := the row of e whose id names paths[i] (-1: none). An id
 * names a path when they are equal or one ends with "/" and the other
 * (leading "./" ignored). -1 after a warning when e has no ids, or an
 * id names two paths, or two ids one path.
 */
int eval_match_ids(const struct vlm_emb *e, const char *name,
    char *const *paths, int64_t n, int64_t *row);
/* Labels, one a row: a text file of integers or a 1-D integer .npy. */
int eval_labels_load(const char *path, int64_t n, int nclasses,
    int **labels);
/* Lines of a text file (class names), trailing blank lines dropped. */
int eval_lines_load(const char *path, char ***lines, int *n);
void eval_lines_free(char **lines, int n);

/* What a run reports: printed as a table, or one JSON object. */
#define EVAL_MAX_METRICS 8
struct eval_report {
	const char *dataset, *model, *task;
	int n;
	const char *names[EVAL_MAX_METRICS];
	double values[EVAL_MAX_METRICS]; /* NaN prints as null / nan */
	int exp[EVAL_MAX_METRICS];       /* printed %g (e.g. a weight
	                                  * decay), not %.6f */
	int nclasses;                    /* with --per-class: */
	char *const *classes;            /* [nclasses] names */
	const double *recall;            /* [nclasses] */
	const int64_t *confusion;        /* (nclasses, nclasses) */
};
void eval_report_add(struct eval_report *r, const char *name, double v);
void eval_report_print(const struct eval_report *r, int json);
/* A classifier's per-class results, held for its report. */
struct eval_cls {
	double *recall;  /* (C) */
	int64_t *cm;     /* (C, C) confusion counts */
};
/*
 * Add to r the top-1 and top-5 accuracy and the mean per-class recall of
 * logits (s->n, C) against s's labels as names[0..2], and with
 * --per-class the per-class tables of the classes (names), held in k
 * until eval_cls_release. 0, or -1 after a warning.
 */
int eval_report_cls(struct eval_report *r, struct eval_cls *k,
    const struct eval_common *o, const char *const names[3],
    const float *logits, const struct eval_set *s, int C,
    char *const *classes);
void eval_cls_release(struct eval_cls *k);
/* The "model" key of an embeddings file's metadata (malloc'ed), or NULL. */
char *eval_meta_model(const struct vlm_emb *e);

/* ---- vlm-eval suite (cmd/eval-suite.c, eval-suite-list.c) ---------- */
#define SUITE_MAX_MODELS 64
#define SUITE_MAX_TASKS 4

enum suite_kind { SUITE_WDS, SUITE_FOLDER, SUITE_SELECT, SUITE_PAIRS };

/* A line of the list: a data set, its kind and tasks. */
struct suite_entry {
	char *path, *slug;
	enum suite_kind kind;
	int splits;                      /* a folder with train/, test/ */
	int ntasks;
	const char *tasks[SUITE_MAX_TASKS];
};

/* A run: the options, then the list. */
struct suite {
	const char *models[SUITE_MAX_MODELS];
	int nmodels;
	const char *out, *split, *batch, *list;
	struct suite_entry *e;
	int n;
	int done, total;                 /* progress */
};

/* The tasks (zeroshot_classification, zeroshot_retrieval, linear_probe,
 * image_caption_selection) and the kinds of data set that have each. */
#define SUITE_NTASKS 4
struct suite_task {
	const char *name;
	unsigned kinds; /* 1 << enum suite_kind */
};
extern const struct suite_task suite_tasks[SUITE_NTASKS];
/* 1 if dir (or dir/sub) is a directory. */
int suite_is_dir(const char *dir, const char *sub);
/* The list s->list into s->e, s->n, s->total; a bad line warned about
 * (any fails the list, -1). */
int suite_list_load(struct suite *s);

#endif
