/*
 * wds-priv.h - what wds.c (shards: names, the scan, pairs) shares with
 * wds-bench.c (CLIP_benchmark's directories); not part of the API.
 */
#ifndef VLM_WDS_PRIV_H
#define VLM_WDS_PRIV_H

#include <stdio.h>

#include "data/data.h"

#define BRACE_MAX 1000000   /* names one pattern may expand to */

/* One sample's members, as they are met in the tar. */
struct wds_sample {
	char *key;
	struct vlm_blob img;
	char *text, *label;     /* NULL if absent */
	void *bytes;            /* scan.bytes: the image's bytes */
};

/* What to do with each sample: emit(arg, shard, number, sample). */
struct wds_scan {
	const char *text_key, *label_key;
	int (*emit)(void *arg, int shard, int num, struct wds_sample *s);
	void *arg;
	/* a bad sample (key NULL: the shard's fault), described by msg
	 * "'SHARD': KEY: why" */
	int (*bad)(void *arg, const char *shard, const char *key,
	    const char *msg);
	char **shards;
	int nshards;
	int bytes;  /* read the images (img.off means nothing then); also
	             * reads gzip-compressed shards and pipe: commands */
};

/* One shard being read. */
struct wds_reader {
	int k;                  /* the shard */
	const char *name;
	struct archive *a;
	FILE *pipe;             /* pipe:COMMAND's output, or NULL */
	int64_t size;           /* of the file, -1: a pipe */
	struct wds_sample s;    /* the sample being read */
	int num;                /* samples met */
	int done, eof;          /* read to its end, the end a good one */
};

/* Open shard k of sc, read it a member at a time (1, 0 at its end, -1),
 * close it (-1: a pipe's command read to the end failed). */
int vlm_wds_open(struct wds_scan *sc, int k, struct wds_reader *rd);
int vlm_wds_step(struct wds_scan *sc, struct wds_reader *rd);
int vlm_wds_close(struct wds_reader *rd);

/* Every shard of pattern, in order, through sc (sc->shards set, also
 * on failure). -1 when a shard cannot be opened, or out of memory. */
int vlm_wds_scan(struct wds_scan *sc, const char *pattern);
/* The samples of pattern as pairs, captions from key; with split a row
 * per line of each caption (Python's str.splitlines on \n, \r\n, \r). */
int vlm_wds_pairs_scan(struct vlm_pairs *p, const char *pattern,
    const char *key, int split);

#endif
