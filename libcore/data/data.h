/*
 * data/data.h - images and data sets into batches: JPEG/PNG decoding,
 * OpenCLIP's preprocessing and augmentation, pairs files, ImageFolder,
 * image path walks, the threaded batch loader and its item callbacks.
 */
#ifndef VLM_LIBCORE_DATA_H
#define VLM_LIBCORE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- images (data/image*.c, resample.c, preprocess.c) -------------------- */

/*
 * How PIL resizes the image as Image.open gives it (kept only under
 * VLM_ALPHA_RESIZE_FIRST; otherwise always VLM_IMAGE_RGB).
 */
enum vlm_image_kind {
	VLM_IMAGE_RGB,     /* bicubic on rgb (modes L, RGB; tRNS ignored) */
	VLM_IMAGE_ALPHA,   /* RGBA, LA: bicubic in premultiplied alpha */
	VLM_IMAGE_NEAREST, /* P, 1: nearest neighbour on rgb */
	VLM_IMAGE_GRAY16,  /* 16-bit gray (mode I): 32-bit bicubic, clip */
	VLM_IMAGE_CMYK     /* CMYK JPEG: bicubic on CMYK, then to RGB */
};

/*
 * An 8-bit RGB image; the buffers are malloc'ed, freed by
 * vlm_image_release. rgb is what PIL's convert("RGB") gives; the other
 * planes keep what a resize before that conversion needs.
 */
struct vlm_image {
	int w, h;
	uint8_t *rgb;     /* (h,w,3) */
	int kind;         /* enum vlm_image_kind, e.g. VLM_IMAGE_RGB */
	uint8_t *alpha;   /* (h,w) VLM_IMAGE_ALPHA, else NULL */
	uint16_t *gray16; /* (h,w) VLM_IMAGE_GRAY16, else NULL */
	uint8_t *cmyk;    /* (h,w,4) VLM_IMAGE_CMYK (PIL's values), else NULL */
};

enum vlm_image_format { VLM_IMAGE_NONE, VLM_IMAGE_JPEG, VLM_IMAGE_PNG,
	VLM_IMAGE_WEBP };
/*
 * What becomes of alpha (an alpha channel or PNG tRNS), and when the
 * image becomes RGB: before the resize (the first three: HF's
 * CLIPImageProcessor, torchvision's ImageFolder loader) or after it
 * (OpenCLIP's transform on Image.open's image).
 */
enum vlm_alpha {
	VLM_ALPHA_DROP,  /* as PIL's convert("RGB") (the default) */
	VLM_ALPHA_WHITE, /* composite over white (PIL alpha_composite) */
	VLM_ALPHA_BLACK, /* composite over black */
	VLM_ALPHA_RESIZE_FIRST /* resize as PIL does the opened image (RGBA
	                        * and LA premultiplied, P and 1 nearest,
	                        * 16-bit gray in 32 bits, CMYK as CMYK),
	                        * then drop alpha */
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
 * 8-bit RGB, the pixels of PIL's Image.open(path).convert("RGB") (16-bit
 * gray clipped to 0..255 as PIL does), with EXIF orientation applied
 * unless o->ignore_exif; with VLM_ALPHA_RESIZE_FIRST also the kind and
 * planes the resize needs. o may be NULL. -1 with a message naming the file for
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
/* The same on nc 8-bit channels, 1 <= nc <= 4. */
int vlm_resample_bicubic_nc(uint8_t *dst /* (ch,cw,nc) */, int ow, int oh,
    int x0, int y0, int cw, int ch, const uint8_t *src /* (h,w,nc) */,
    int w, int h, size_t stride, int nc);
/*
 * PIL's BICUBIC of a 16-bit gray image (its mode "I": double weights,
 * integer rounding after each pass), then convert("RGB"): clipped to
 * 0..255 and replicated. Rows of src `stride` elements apart.
 */
int vlm_resample_bicubic_i16(uint8_t *dst /* (ch,cw,3) */, int ow, int oh,
    int x0, int y0, int cw, int ch, const uint16_t *src /* (h,w) */, int w,
    int h, size_t stride);
/* PIL's Image.resize((ow, oh), NEAREST) of RGB pixels, the window only. */
void vlm_resample_nearest(uint8_t *dst /* (ch,cw,3) */, int ow, int oh,
    int x0, int y0, int cw, int ch, const uint8_t *src /* (h,w,3) */,
    int w, int h, size_t stride);

/* PIL's cmyk2rgb of n pixels of its "CMYK" mode. */
void vlm_cmyk_to_rgb(uint8_t *rgb /* (n,3) */, const uint8_t *cmyk /* (n,4) */,
    size_t n);

/* OpenAI CLIP's normalisation, OpenCLIP's default. */
extern const float vlm_openai_mean[3], vlm_openai_std[3];

/* torchvision Resize(S): shorter side S, longer int(S * long / short). */
void vlm_resize_shorter(int w, int h, int S, int *ow, int *oh);
/*
 * Resize(S) + CenterCrop(S) of OpenCLIP's validation transform; the
 * resize follows im->kind (bicubic on rgb for VLM_IMAGE_RGB).
 */
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

/* ---- data sets: pairs, ImageFolder (data/dataset.c) ---------------------- */

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
	struct vlm_blob *blobs; /* tar shards: [n] each row's image bytes in
	                         * shards[] (paths then read "SHARD:KEY",
	                         * line the sample's number in its shard);
	                         * else NULL */
	int nshards;
	char **shards;
};

/* Read a pairs file (o may be NULL). -1 only for the whole file. A path
 * naming webdataset tar shards (vlm_wds_is_shards) reads those instead:
 * vlm_wds_pairs_load with o->caption_key. */
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
	struct vlm_blob *blobs; /* tar shards: [n] the images (paths read
	                         * "SHARD:KEY"); else NULL */
	int nshards;
	char **shards;
};

int vlm_imagefolder_load(struct vlm_imagefolder *d, const char *root,
    const struct vlm_imagefolder_opts *o);
void vlm_imagefolder_release(struct vlm_imagefolder *d);
/* The class names and templates of d, whose classes are set, as
 * vlm_imagefolder_load reads them (root for messages). */
int vlm_imagefolder_names(struct vlm_imagefolder *d, const char *root,
    const struct vlm_imagefolder_opts *o);
/* The lines of a small text file as the class-name and template files
 * are read; string arrays grown one by one and freed. */
int vlm_lines_load(const char *path, char ***lines, int *n);
int vlm_strs_push(char ***v, int *n, const char *s);
/* *pp, a malloc'ed array, to n elements of size bytes; -1 if no memory. */
int vlm_array_grow(void *pp, size_t size, int n);
void vlm_strs_free(char **s, int n);
/* The template with each "{}" replaced by name; caller frees; NULL: OOM. */
char *vlm_template_fill_alloc(const char *tmpl, const char *name);

/* ---- webdataset tar shards (data/wds.c) --------------------------------- */

/*
 * Tar shards as webdataset writes them (OpenCLIP's --train-data,
 * CLIP_benchmark's sets): members grouped into samples by key (the
 * member's path up to the first dot of its base name; consecutive
 * members with the same key are one sample), the part after that dot,
 * lower-cased, the member's extension. The image is the first member
 * with extension jpg, jpeg, png or webp; the caption the text of `txt`
 * (or another key); the label the integer in `cls`. Shards are named by
 * a pattern with brace expansion as braceexpand (OpenCLIP) does it:
 * "{000..127}" (zero-padded as the bounds), "{a,b}", several patterns
 * joined by "::". Plain uncompressed tar only (libarchive reads the
 * headers; images are read later by offset, by the loader's threads).
 * A truncated shard, a sample without an image or without the caption
 * or label asked for is skipped and described "SHARD: KEY: why".
 */

/* Bytes off..off+size-1 of a file: an image inside a shard. */
struct vlm_blob {
	const char *file;
	int64_t off, size;
};
/* Decode b's image (name for messages), as vlm_image_load does. */
int vlm_blob_image_load(struct vlm_image *im, const struct vlm_blob *b,
    const char *name, const struct vlm_image_opts *o);

/* The expansions of a brace pattern (malloc'ed, vlm_strs_free). */
int vlm_brace_expand(const char *pattern, char ***names, int *n);
/* 1 if a path names shards: its last expansion ends in ".tar". */
int vlm_wds_is_shards(const char *path);
/*
 * The samples of the shards of pattern as pairs: one row a sample,
 * the caption the text of key (NULL: "txt"); bad samples as vlm_pairs
 * bad rows. -1 when a shard cannot be opened or has no samples at all.
 */
int vlm_wds_pairs_load(struct vlm_pairs *p, const char *pattern,
    const char *key);
/*
 * A CLIP_benchmark webdataset directory: dir/SPLIT/nshards.txt and
 * dir/SPLIT/0.tar ..., dir/dataset_type.txt ("classification", the
 * default, or "retrieval"), dir/classnames.txt and
 * dir/zeroshot_classification_templates.txt ("{c}" standing for the
 * class name). *type gets the dataset type.
 */
int vlm_wds_dataset_type(const char *dir, char *type, size_t n);
/* A classification set: labels from cls, names and templates from the
 * directory's files unless o names others (default template if none). */
int vlm_wds_imagefolder_load(struct vlm_imagefolder *d, const char *dir,
    const char *split, const struct vlm_imagefolder_opts *o);
/* A retrieval set: a row per line of each sample's txt (Python's
 * str.splitlines), rows of a sample sharing its image. */
int vlm_wds_retrieval_load(struct vlm_pairs *p, const char *dir,
    const char *split);

/*
 * Writing shards (data/wds-write.c): samples into dir/0.tar, dir/1.tar
 * ... of at most maxcount samples each, then dir/nshards.txt; a sample
 * is n members KEY.ext[i] holding data[i] (size[i] bytes).
 */
struct vlm_shard_writer {
	char *dir;
	int maxcount;          /* e.g. 10000 */
	int nshards;           /* shards complete */
	int count;             /* samples in the open shard */
	int64_t nsamples;      /* samples written */
	struct archive *a;     /* the open shard or NULL */
	struct vlm_atomic out;
};
int vlm_shard_writer_init(struct vlm_shard_writer *w, const char *dir,
    int maxcount);
int vlm_shard_writer_add(struct vlm_shard_writer *w, const char *key,
    int n, const char *const *ext, const void *const *data,
    const size_t *size);
/* Close the last shard, write nshards.txt. */
int vlm_shard_writer_finish(struct vlm_shard_writer *w);
/* Free; with remove, delete the shards written (after a failure). */
void vlm_shard_writer_release(struct vlm_shard_writer *w, int remove);

/* ---- streams: shards read sequentially (data/stream.c) ------------------ */

/*
 * The samples of shards (a pattern as vlm_wds_pairs_load's, also
 * gzip-compressed .tar.gz / .tgz and "pipe:COMMAND", whose output is
 * read) or of a pairs file already read, epoch after epoch, as
 * OpenCLIP's webdataset pipeline reads them: epoch e reads the shards in
 * the order vlm_perm_shuffle(seed, e) (shard_shuffle) or as named, each
 * from start to end, and its samples pass through a buffer of N: once
 * it is full (or the epoch's shards are read), a sample drawn uniformly
 * from it (a generator seeded from (seed, e)) is delivered and the next
 * one read takes its place. N = 1 delivers the reading order. Memory:
 * N samples and one open shard. Bad samples are described to bad()
 * ("'SHARD': KEY: why"), skipped and counted.
 */
#define VLM_STREAM_BUFFER_MAX (1 << 24)

struct vlm_sample {
	char *name;        /* "SHARD:KEY", or a pairs file's image path */
	char *caption;
	void *img;         /* the image file's bytes, or NULL: read name */
	size_t size;
	int64_t epoch;     /* the epoch it was read in */
	int64_t num;       /* its number in the epoch's reading order */
};
void vlm_sample_release(struct vlm_sample *s);
struct vlm_cursor;

struct vlm_stream_opts {
	const char *text_key;  /* NULL: "txt"; "": no caption (images) */
	uint64_t seed;         /* e.g. 0 */
	int buffer;            /* N, e.g. 1000 */
	int shard_shuffle;     /* else the shards in the pattern's order */
	int once;              /* one epoch: then vlm_stream_next gives 0 */
	/* each bad sample (key NULL: the shard's fault; msg "'SHARD':
	 * KEY: why"); NULL: counted only */
	int (*bad)(void *arg, const char *shard, const char *key,
	    const char *msg);
	void *arg;
};
struct vlm_stream_counts {
	int64_t read;          /* good samples read (all epochs) */
	int64_t bad;           /* bad ones skipped */
	int64_t shards;        /* shards read to their end */
};
struct vlm_stream;

/* Shards of pattern, or (pattern just naming it) pairs, which must
 * outlive the stream; NULL with a message on bad options. A shard that
 * cannot be opened is an error of vlm_stream_next. */
struct vlm_stream *vlm_stream_new(const char *pattern,
    const struct vlm_pairs *pairs, const struct vlm_stream_opts *o);
void vlm_stream_free(struct vlm_stream *s);
/* The next sample into *out (the caller releases it): 1; 0 at the end
 * (once); -1 when a shard cannot be opened or a pipe's command failed
 * (calling again goes on with the next shard), or an epoch had no
 * samples. */
int vlm_stream_next(struct vlm_stream *s, struct vlm_sample *out);
/* -1 naming the first shard file that cannot be read (pipe: commands
 * are not run): a check before a long run. */
int vlm_stream_check(const struct vlm_stream *s);
/* The shard read last (the one that failed, after -1). */
const char *vlm_stream_shard(const struct vlm_stream *s);
/* c := where the stream is: its epoch, samples delivered in it. */
void vlm_stream_cursor(const struct vlm_stream *s, struct vlm_cursor *c);
/* Go to cursor c: epoch c->epoch replayed from its start to c->pos. */
int vlm_stream_seek(struct vlm_stream *s, const struct vlm_cursor *c);
void vlm_stream_counts(const struct vlm_stream *s,
    struct vlm_stream_counts *n);

/* ---- image paths: arguments, lists, directory walks (data/walk.c) -------- */

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

/* ---- batch loader (data/loader.c) ---------------------------------------- */

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
	int part, parts;       /* parts > 1: load only items part*B/parts ..
	                        * (part+1)*B/parts - 1 of each batch (a rank's
	                        * share; the others keep their slot, unread,
	                        * and report no error); full batches only */
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

/* ---- feeding the loader (data/loader.c) ---------------------------------- */

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
 * Ready-made callbacks (data/loader-items.c), arg a struct vlm_items:
 * vlm_items_image loads paths[index] (streams: the key) and applies
 * OpenCLIP's validation transform, or with train its RandomResizedCrop
 * augmentation drawn from vlm_rng_seed(item seed): image_floats 3*S*S.
 * vlm_items_text tokenizes captions[index] (streams: the key) to ctx ids.
 */
struct vlm_items {
	char *const *paths;        /* [n] or NULL: the key */
	const struct vlm_blob *blobs; /* [n] or NULL: an item whose blob
	                           * has a file is read from it (shards) */
	char *const *captions;     /* [n] or NULL: the key */
	const struct vlm_sample *samples; /* [n] or NULL: streamed samples
	                           * (name, caption, image bytes) */
	int64_t ring;              /* samples: item i is samples[i % ring]
	                           * (0: samples[i]) */
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

#endif /* VLM_LIBCORE_DATA_H */
