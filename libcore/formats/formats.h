/*
 * formats/formats.h - array and weight files: .npy arrays, .npys record
 * streams and their packed form, safetensors.
 */
#ifndef VLM_LIBCORE_FORMATS_H
#define VLM_LIBCORE_FORMATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"

/* ---- .npy arrays, .npys streams, packed embeddings (formats/npy*.c) ------ */

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
/* Write a JSON value (jansson's json_t) as a compact '|u1' record. */
struct json_t;
int vlm_npy_write_json(FILE *f, const char *name, const struct json_t *o);
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
 * (|u1 JSON {"end":true,"rows":N, ...}). See formats/npys.c.
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

/* ---- safetensors files (formats/safetensors.c) --------------------------- */

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
	struct vlm_map file;        /* the whole file: mapped or read */
	void *copy;                 /* aligned copy of the data, or NULL */
	int *byname;                /* indices sorted by name */
	void *json;                 /* the parsed header, owns the strings */
};

/* The data section's alignment in files vlm_st_save() writes. */
#define VLM_ST_ALIGN 64

int vlm_st_load(struct vlm_st *st, const char *path);
/*
 * Hand the file's bytes over to the caller (who releases them with
 * vlm_map_release): tensor data that points into them stays valid after
 * vlm_st_release(). st keeps working until then.
 */
void vlm_st_keep_file(struct vlm_st *st, struct vlm_map *out);
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
 * (temporary name, fsync, rename; "-" is stdout). The header is padded
 * with spaces (which the format allows) so that the data section starts
 * at a multiple of VLM_ST_ALIGN bytes, and as the reference writer does
 * the tensors are laid out contiguously in the given order stably
 * sorted by decreasing dtype size, so each is aligned for its dtype and
 * loads zero copy; tensors of sizes that are multiples of 64 bytes
 * after such a start stay 64-byte aligned (the format allows no gaps).
 * Refuses repeated or reserved ("__metadata__") names, invalid UTF-8.
 */
int vlm_st_save(const char *path, const char *const *names,
    const struct vlm_tensor *ts, int n, const char *const *meta_keys,
    const char *const *meta_vals, int nmeta);

/* ---- packing a stream as it is written (formats/npys-packer.c) ----------- */

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

#endif /* VLM_LIBCORE_FORMATS_H */
