/*
 * embed.h - the parts of vlm-embed: where items come from
 * (cmd/embed-input.c), where vectors go and the progress line
 * (cmd/embed-output.c).
 */
#ifndef VLM_EMBED_H
#define VLM_EMBED_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"
#include "formats/formats.h"
#include "text/text.h"
#include "data/data.h"
#include "model/model.h"
#include "routing/routing.h"

/*
 * The items, as a loader stream (vlm_loader_opts.next = embed_in_next):
 * images are the paths of a walk over the arguments (or of the list on
 * stdin), texts are the lines of the files (or of stdin); or, when the
 * arguments name tar shards, their samples' images or captions. A source that
 * fails (a missing file, an unreadable directory) is an error of the
 * stream; its name is queued so that the consumer, meeting that error
 * in a batch (index -1), gets it back with embed_in_failed().
 */
/*
 * Tar shards (cmd/embed-wds.c): the samples of every shard of the
 * arguments' brace patterns, in order, streamed: item i (the loader's
 * stream count) is samples[i % ring] (vlm_items.samples), ring more than
 * the items the loader holds; a bad sample or shard is met by
 * embed_wds_next where it was found.
 */
struct embed_wds_bad;
struct embed_wds {
	int text;
	char **paths;               /* the arguments */
	int npaths, arg;            /* arg: the next to open */
	struct vlm_stream *s;       /* the open one */
	struct vlm_sample *samples; /* [ring] */
	int ring;
	int64_t n;                  /* samples given out */
	int held;                   /* samples[n % ring] waits behind bads */
	struct embed_wds_bad *head, *tail; /* bad samples not yet met */
	char *bad;                  /* the last one's name */
};
int embed_wds_init(struct embed_wds *w, int text, char **paths, int npaths,
    int ring);
/* 1 and the next sample's id (malloc'ed), 0 at the end, -1 with *bad
 * the name of a bad sample or shard (the message set). */
int embed_wds_next(struct embed_wds *w, char **key, const char **bad);
void embed_wds_release(struct embed_wds *w);

struct embed_fail;
struct embed_in {
	int text;
	char **paths;          /* the arguments */
	int npaths;
	struct vlm_walk walk;  /* images */
	struct embed_wds *wds; /* or tar shards (vlm_wds_is_shards) */
	int ifile;             /* texts: the next file, */
	FILE *cur;             /* the open one, */
	const char *curname;
	char *line;
	size_t cap;
	pthread_mutex_t mu;    /* guards the queue of failed names */
	struct embed_fail *head, *tail;
};
/* ring: for shards, embed_wds_init's */
int embed_in_init(struct embed_in *in, int text, char **paths, int npaths,
    int ring);
int embed_in_next(void *arg, char **key);
/* The name behind the oldest stream error not yet taken (malloc'ed). */
char *embed_in_failed(struct embed_in *in);
void embed_in_release(struct embed_in *in);
/* How many items the arguments hold (a second walk); -1 for stdin. */
int64_t embed_in_count(int text, char **paths, int npaths);

enum embed_format { EMBED_NPYS, EMBED_JSONL };

/*
 * Where the vectors go: a .npys stream on stdout, its packed form
 * (-o FILE.npy), or JSON lines on stdout or in a file (atomically).
 */
struct embed_out {
	enum embed_format format;
	const char *name;             /* for messages */
	int64_t dim;
	FILE *f;
	struct vlm_npys_writer w;
	struct vlm_npys_packer pk;    /* npys with a path */
	struct vlm_atomic a;          /* jsonl with a path */
	int packed, atomic;
};
/* meta_json: the stream's metadata ({"model":...,"dim":...}). */
int embed_out_open(struct embed_out *o, enum embed_format format,
    const char *path, const char *meta_json, int64_t dim);
int embed_out_batch(struct embed_out *o, const char *const *ids,
    const float *vec /* (k,dim) */, int k);
/* The end record (extra_json: {"failed":[...]}), then commit. */
int embed_out_finish(struct embed_out *o, const char *extra_json);
/* Give up: nothing of a file output is left. */
void embed_out_abort(struct embed_out *o);

/* The progress line on stderr (only when it is a terminal). */
struct embed_progress {
	int on;
	const char *unit;     /* "images" or "texts" */
	int64_t n, total;     /* total -1: unknown */
	double t0, last;
};
void embed_progress_init(struct embed_progress *p, int on, const char *unit,
    int64_t total);
void embed_progress_add(struct embed_progress *p, int64_t k);
/* Clear the line before a warning; the next add redraws it. */
void embed_progress_clear(struct embed_progress *p);
void embed_progress_end(struct embed_progress *p);

/* What the command line asked for. */
struct embed_opts {
	const char *model, *output, *routes;
	const char *device;  /* --device, e.g. "cuda" */
	enum embed_format format;
	int text, raw, force, quiet;
	int batch;    /* e.g. 32 */
	int threads;  /* loader workers and kernel threads; 0: all cores */
	int precision; /* enum vlm_precision, --precision */
	int alpha;    /* --alpha: enum vlm_alpha + 1; 0: the model's */
};

/* One run of vlm-embed (cmd/embed-run.c). */
struct embed {
	struct embed_opts o;
	struct vlm_model m;
	struct vlm_bpe bpe;            /* texts: the model's tokenizer */
	struct vlm_items items;
	struct vlm_encoder enc;
	struct embed_in in;
	int in_ok;
	struct vlm_loader *ld;
	struct embed_out out;
	struct vlm_atomic ra;          /* the routes file */
	struct vlm_routes_writer rw;
	int routes;
	struct json_t *failed;         /* names of the inputs that failed */
	float *vec;                    /* (batch, dim) */
	const char **ids;              /* [batch] */
	char (*num)[24];               /* [batch] line numbers of texts */
	struct embed_progress prog;
};
/* Load the model (and its tokenizer for texts), make the encoder. */
int embed_setup_model(struct embed *e);
/* Start the loader over paths (none: stdin) and open the outputs. */
int embed_setup_io(struct embed *e, char **paths, int npaths);
/* Embed and write every batch; -1 stops the run (output error, ...). */
int embed_all(struct embed *e);
/* The end records; commit the files. */
int embed_finish(struct embed *e);
/* Stop the workers and remove partial output files. */
void embed_abort(struct embed *e);
void embed_release(struct embed *e);

#endif
