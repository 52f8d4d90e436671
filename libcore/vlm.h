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

/* @@SECTIONS@@ (helpers add their sections below this line) */

#endif /* VLM_H */
