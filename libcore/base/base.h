/*
 * base/base.h - what every subsystem stands on: error messages, dtypes
 * and tensor views, checked sizes, atomic output files, random numbers,
 * clocks, threads.
 */
#ifndef VLM_LIBCORE_BASE_H
#define VLM_LIBCORE_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* ---- errors (base/error.c) ----------------------------------------------- */

/* Record a printf-style message for this thread; returns -1. */
int vlm_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* The last message recorded on this thread ("" if none). */
const char *vlm_errmsg(void);

/* ---- dtypes and tensors (base/tensor.c) ---------------------------------- */

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

/* ---- files (base/file.c) ------------------------------------------------- */

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
 * A whole file in memory: a regular file is mapped (MAP_PRIVATE,
 * read-only until vlm_map_writable), anything else (a pipe, "-" for
 * stdin) read into a malloc'ed buffer. name is the file in messages.
 * A mapping reads the file as it is on disk: a file truncated while
 * mapped raises SIGBUS (vlm writes files by rename, never in place).
 */
struct vlm_map {
	unsigned char *base;
	size_t size;
	int mapped;   /* 1: base is a mapping; 0: malloc'ed (or NULL) */
	int cow;      /* made writable once: pages may differ from the file */
};
int vlm_map_file(struct vlm_map *mp, const char *path, const char *name);
/* Make a mapping copy-on-write (1) or read-only again (0); a written
 * page becomes private memory, the file never changes. */
int vlm_map_writable(struct vlm_map *mp, int writable);
void vlm_map_release(struct vlm_map *mp);
/* Let go of the whole pages of [p, p + n), a range inside a mapping
 * never made writable (else a no-op): they leave memory, and a later
 * read maps the file's bytes again. */
void vlm_map_drop(const struct vlm_map *mp, const void *p, size_t n);
/* Whether [p, p + n) lies inside a mapping never made writable (whose
 * pages vlm_map_drop gives back). */
int vlm_map_holds(const struct vlm_map *mp, const void *p, size_t n);
/* Give back the whole pages inside [p, p + n) whatever holds them
 * (MADV_DONTNEED): a file mapping reads the file again, private memory
 * reads zeros. */
void vlm_pages_drop(const void *p, size_t n);
/*
 * A testing aid: with VLM_CRASH_AT=POINT[:N] in the environment the
 * process kills itself (SIGKILL) the Nth time (default 1) it reaches the
 * named point: atomic-commit (an output complete under its temporary
 * name), ckpt-dir, ckpt-model, ckpt-optim, ckpt-state, ckpt-rename,
 * ckpt-latest, ckpt-remove (train/train.c). POINT:N:stop stops it
 * (SIGSTOP) instead, for a test to kill at a moment of its choosing.
 */
void vlm_crash_point(const char *point);

/* ---- random numbers (base/rng.c) ----------------------------------------- */

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

/* ---- clocks (base/clock.c) ----------------------------------------------- */

/* Seconds on clock id (CLOCK_PROCESS_CPUTIME_ID: this process's CPU time). */
double vlm_clock(clockid_t id);
/* Seconds on the monotonic wall clock: a difference of two is a duration. */
double vlm_now(void);

/* ---- threads (base/threads.c) -------------------------------------------- */

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

#endif /* VLM_LIBCORE_BASE_H */
