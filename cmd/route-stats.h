/*
 * route-stats.h - the parts of vlm-route-stats: the reports
 * (cmd/route-stats-print.c), the heatmaps (route-stats-heat.c for the
 * terminal, route-stats-png.c for PNG files), and running a model to
 * get routing records (route-stats-run.c).
 */
#ifndef VLM_ROUTE_STATS_H
#define VLM_ROUTE_STATS_H

#include <stdio.h>

#include "routing/routing.h"

enum rs_format { RS_TABLE, RS_TSV, RS_JSON, RS_HEATMAP };

struct rs_opts {
	enum rs_format fmt;
	int classes;    /* --classes: the class x expert tables */
	int positions;  /* --positions: the patch-position maps */
	int layer;      /* --layer: one layer (index), -1 all */
	int color;      /* ANSI colour in heatmaps */
};

/* The reports of one stream on stdout. */
void rs_print_table(const struct vlm_route_stats *s, const char *name,
    const struct rs_opts *o);
void rs_print_tsv(const struct vlm_route_stats *s, const struct rs_opts *o);
int rs_print_json(const struct vlm_route_stats *s, const char *name,
    const struct rs_opts *o);
/* How routing changed from a to b (d: token-level, when aligned). */
void rs_print_diff(const struct vlm_route_stats *a,
    const struct vlm_route_stats *b, const struct vlm_route_diff *d,
    const struct rs_opts *o);

void rs_diff_json(const struct vlm_route_stats *a,
    const struct vlm_route_stats *b, const struct vlm_route_diff *d,
    const struct rs_opts *o);
/* Total variation distance between two expert shares (NaN as 0). */
double rs_share_tv(const struct vlm_route_summary *a,
    const struct vlm_route_summary *b, int E);
/* Fraction of tokens whose first choice agrees (NaN: not comparable). */
double rs_agree(const struct vlm_route_diff *d, int l, int mod);

/* --diff a b (route-stats-diff.c): the exit status. */
int rs_diff(const char *a, const char *b, int partial,
    const struct rs_opts *o);
/* Open path for reading ("-" or NULL: stdin), NULL after a warning;
 * close it unless stdin (vlm-route-stats.c). */
FILE *rs_open(const char *path);
void rs_close(FILE *f);

/* "block 3", "vision 1", "block 1 text": a layer's short name. */
void rs_layer_label(char *buf, size_t n, const struct vlm_routes_layer *l);
/* Does layer l of s carry tokens of modality mod (0, 1; 2 either)? */
int rs_has(const struct vlm_route_stats *s, int l, int mod);
/* printf " %*.*f", or "-" in that width when v is NaN (route-stats-print.c) */
void rs_num(int width, int prec, double v);

/* Terminal heatmaps: layer x expert share per modality, class x expert. */
void rs_print_heatmap(const struct vlm_route_stats *s,
    const struct rs_opts *o);
/* The same as a PNG file (atomically); the class panel is layer
 * `layer` (-1: the last layer with image tokens). */
int rs_png(const char *path, const struct vlm_route_stats *s, int layer);

/*
 * Run model on the images under dir (an ImageFolder: labels and class
 * names) and the lines of text (or NULL), batch at a time, writing
 * routing records to out.
 */
int rs_run(FILE *out, const char *model, const char *dir, const char *text,
    int batch);
/* The encoders' precision (enum vlm_precision, --precision). */
extern int rs_precision;
/* --pairs: route a fusion model's image-caption pairs (rs_run runs them
 * instead of dir and text). */
extern const char *rs_pairs;

#endif
