/*
 * bench-gemm.c - single-precision GEMM speed on this machine, and what
 * OpenBLAS's core type does to it. OpenBLAS chooses its kernels in its
 * library constructor, so each core type is measured in a child process
 * (this program again, with --one) started with OPENBLAS_CORETYPE as
 * given, unset (cpuid detection), Haswell (AVX2) and SkylakeX (AVX-512),
 * plus one child that calls vlm_blas_setup() with the variable unset.
 * Each child prints the best GFLOP/s over square sizes 1024..2048 for
 * one thread, OpenBLAS's own threading, and vlm_gemm_cpu (tiles on the
 * vlm thread pool, VLM_THREADS threads). A benchmark: nothing is asserted.
 *
 * Then the bf16 options for --precision bf16, side by side in this run
 * on the ViT-B/32 linear layers (1600 rows: a batch of 32 images of 50
 * tokens): the instruction rates (VDPBF16PS against VFMADD231PS, one
 * thread, where the CPU has AVX512_BF16); fp32 vlm_gemm_cpu; OpenBLAS
 * cblas_sbgemm where the library exports it (Debian 12's 0.3.21 is built
 * without it); oneDNN's bf16 matmul (libdnnl); and
 * vlm_linear_fwd_bf16_cpu, the one --precision bf16 runs (bf16 input
 * rounding and weight widening, then the fp32 tiles). All on one
 * thread, timed in its CPU time.
 */
#include <dlfcn.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cblas.h>

#include "vlm.h"
#include "kernels.h"

#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#define HAVE_DNNL 1
void omp_set_num_threads(int n); /* libgomp, which libdnnl uses */
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

extern char **environ;

enum { ONE, OPENBLAS, POOL };

/* Best GFLOP/s of C = A B^T over sizes 1024, 1536, 2048, 3 runs each. */
static double
best_gflops(int how, int nt, float *a, float *b, float *c)
{
	double best = 0;

	for (int n = 1024; n <= 2048; n += 512)
		for (int rep = 0; rep < 3; rep++) {
			double t = vlm_now();
			if (how == POOL)
				vlm_gemm_cpu(0, 1, n, n, n, 1.0f, a, n, b, n,
				    0.0f, c, n);
			else {
				openblas_set_num_threads(how == ONE ? 1 : nt);
				cblas_sgemm(CblasRowMajor, CblasNoTrans,
				    CblasTrans, n, n, n, 1.0f, a, n, b, n,
				    0.0f, c, n);
				openblas_set_num_threads(1);
			}
			t = vlm_now() - t;
			if (2.0 * n * n * n / t / 1e9 > best)
				best = 2.0 * n * n * n / t / 1e9;
		}
	return best;
}

/* The child: measure with the kernels this process got. */
static int
one(const char *label)
{
	size_t n = 2048 * 2048;
	float *a = malloc(n * sizeof(*a)), *b = malloc(n * sizeof(*b));
	float *c = malloc(n * sizeof(*c));
	const char *env = getenv("OPENBLAS_CORETYPE");
	int nt = vlm_threads();

	if (!a || !b || !c)
		return 1;
	for (size_t i = 0; i < n; i++) {
		a[i] = (float)(i % 17) / 17 - 0.5f;
		b[i] = (float)(i % 13) / 13 - 0.5f;
	}
	printf("%-14s %-11s %-11s %7.1f %12.1f %12.1f\n", label,
	    env ? env : "(unset)", openblas_get_corename(),
	    best_gflops(ONE, nt, a, b, c), best_gflops(OPENBLAS, nt, a, b, c),
	    best_gflops(POOL, nt, a, b, c));
	fflush(stdout);
	free(a), free(b), free(c);
	return 0;
}

/* Run this program with --one LABEL [--setup], OPENBLAS_CORETYPE = ct. */
static void
child(const char *label, const char *ct, int setup)
{
	char **env, *argv[] = { "bench-gemm", "--one", (char *)label,
	    setup ? "--setup" : NULL, NULL };
	size_t n = 0, k = 0;
	char buf[64];
	pid_t pid;
	int st;

	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	for (size_t i = 0; env && i < n; i++)
		if (strncmp(environ[i], "OPENBLAS_CORETYPE=", 18) &&
		    strncmp(environ[i], "VLM_BLAS_REEXEC=", 16))
			env[k++] = environ[i];
	if (ct) {
		snprintf(buf, sizeof(buf), "OPENBLAS_CORETYPE=%s", ct);
		env[k++] = buf;
	}
	if (!env || posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv,
	    env) != 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		printf("%-14s failed\n", label);
	free(env);
}

/* ---- bf16 --------------------------------------------------------------- */

/* Seconds of CPU time of this thread: the bf16 table runs one thread
 * and counts its CPU time, so that other programs sharing the machine
 * change the figures less than they change wall-clock rates. */
static double
cputime(void)
{
	return vlm_clock(CLOCK_THREAD_CPUTIME_ID);
}

#if defined(__x86_64__)
/* GFLOP/s of 24 independent chains of VFMADD231PS or of VDPBF16PS
 * (counted as 2 flops per product: 32 for FMA, 64 for DPBF16). Each
 * chain is its own variable, pinned to a register by an empty asm: in
 * an array the compiler keeps them in memory, and the loop then times
 * store-to-load forwarding, not the instruction (16 chains of an array
 * read 44 GFLOP/s of FMA here, the registers 170). */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) \
	X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) \
	X(22) X(23)
#define CHAIN_DECL(j) __m512 a##j = _mm512_set1_ps(j * 1e-3f);
#define CHAIN_FMA(j) a##j = _mm512_fmadd_ps(a##j, x, y); \
	__asm__ volatile("" : "+v"(a##j));
#define CHAIN_DP(j) a##j = _mm512_dpbf16_ps(a##j, h, h); \
	__asm__ volatile("" : "+v"(a##j));
#define CHAIN_SUM(j) s += _mm512_reduce_add_ps(a##j);
__attribute__((target("avx512f,avx512bf16"))) static void
insn_rates(double *fma, double *dp)
{
	CHAINS(CHAIN_DECL)
	__m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-4f);
	__m512bh h = (__m512bh)_mm512_set1_epi32(0x3f803f80);
	long n = 10000000;
	double t;
	float s = 0;

	t = cputime();
	for (long i = 0; i < n; i++) {
		CHAINS(CHAIN_FMA)
	}
	*fma = n * 24.0 * 32 / (cputime() - t) / 1e9;
	t = cputime();
	for (long i = 0; i < n; i++) {
		CHAINS(CHAIN_DP)
	}
	*dp = n * 24.0 * 64 / (cputime() - t) / 1e9;
	CHAINS(CHAIN_SUM)
	if (s == 42) /* keep the loops */
		printf(" ");
}
#endif

typedef void sbgemm_fn(int, int, int, int, int, int, float,
    const uint16_t *, int, const uint16_t *, int, float, float *, int);

struct shape {
	int M, N, K; /* y (M,N) = x (M,K) w^T, w (N,K) */
};

enum { F32, SBGEMM, DNNL, OURS };

#ifdef HAVE_DNNL
/* oneDNN matmul y = x w^T, bf16 in, f32 out: seconds of a run, or -1. */
static double
dnnl_run(const struct shape *s, const uint16_t *x, const uint16_t *w,
    float *y)
{
	static dnnl_engine_t eng;
	static dnnl_stream_t st;
	dnnl_memory_desc_t a, b, c;
	dnnl_dims_t da = { s->M, s->K }, db = { s->K, s->N }, dc = { s->M,
		s->N }, sb = { 1, s->K };
	dnnl_matmul_desc_t md;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t p;
	dnnl_memory_t ma, mb, mc;
	double t = -1;

	if (!eng && (dnnl_engine_create(&eng, dnnl_cpu, 0) ||
	    dnnl_stream_create(&st, eng, dnnl_stream_default_flags)))
		return -1;
	if (dnnl_memory_desc_init_by_tag(&a, 2, da, dnnl_bf16, dnnl_ab) ||
	    dnnl_memory_desc_init_by_strides(&b, 2, db, dnnl_bf16, sb) ||
	    dnnl_memory_desc_init_by_tag(&c, 2, dc, dnnl_f32, dnnl_ab) ||
	    dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) ||
	    dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL))
		return -1;
	if (dnnl_primitive_create(&p, pd) == 0) {
		dnnl_memory_create(&ma, &a, eng, (void *)x);
		dnnl_memory_create(&mb, &b, eng, (void *)w);
		dnnl_memory_create(&mc, &c, eng, y);
		dnnl_exec_arg_t args[3] = { { DNNL_ARG_SRC, ma },
			{ DNNL_ARG_WEIGHTS, mb }, { DNNL_ARG_DST, mc } };
		t = cputime();
		if (dnnl_primitive_execute(p, st, 3, args) ||
		    dnnl_stream_wait(st))
			t = -1;
		else
			t = cputime() - t;
		dnnl_memory_destroy(ma), dnnl_memory_destroy(mb);
		dnnl_memory_destroy(mc), dnnl_primitive_destroy(p);
	}
	dnnl_primitive_desc_destroy(pd);
	return t;
}
#endif

/* Seconds of one run of candidate how, or -1 for one this build or
 * library lacks. */
static double
bf16_once(int how, const struct shape *s, const float *x, const float *w,
    const uint16_t *xb, const uint16_t *wb, float *y, float *scratch)
{
	sbgemm_fn *sb = (sbgemm_fn *)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
	double t = cputime();

	if (how == DNNL) {
#ifdef HAVE_DNNL
		return dnnl_run(s, xb, wb, y); /* the execution alone */
#else
		return -1;
#endif
	} else if (how == F32)
		vlm_gemm_cpu(0, 1, s->M, s->N, s->K, 1.0f, x, s->K, w, s->K,
		    0.0f, y, s->N);
	else if (how == SBGEMM) {
		if (!sb)
			return -1;
		sb(CblasRowMajor, CblasNoTrans, CblasTrans, s->M, s->N, s->K,
		    1.0f, xb, s->K, wb, s->K, 0.0f, y, s->N);
	} else
		vlm_linear_fwd_bf16_cpu(y, scratch, x, wb, NULL, s->M, s->K,
		    s->N);
	return cputime() - t;
}

static int
bf16_report(void)
{
	static const struct shape shapes[] = { { 1600, 2304, 768 },
		{ 1600, 3072, 768 }, { 1600, 768, 3072 } };
	static const char *const names[] = { "fp32 vlm_gemm_cpu",
		"OpenBLAS cblas_sbgemm", "oneDNN bf16 matmul",
		"vlm_linear_fwd_bf16_cpu" };
	size_t n = 1600 * 3072;
	float *x = malloc(n * 4), *w = malloc(n * 4), *y = malloc(n * 4);
	float *sc = malloc(vlm_linear_bf16_scratch_floats(1600, 3072, 3072) *
	    4);
	uint16_t *xb = malloc(n * 2), *wb = malloc(n * 2);
	int bf = __builtin_cpu_supports("avx512bf16");

	printf("\nbf16 for --precision bf16 (one thread, its CPU time): "
	    "avx512_bf16 %s\n", bf ? "yes" : "no");
#if defined(__x86_64__)
	if (bf) {
		double fma, dp;
		insn_rates(&fma, &dp);
		printf("one thread, 24 chains: VFMADD231PS %.1f GFLOP/s, "
		    "VDPBF16PS %.1f GFLOP/s (bf16 / fp32 %.2f)\n", fma, dp,
		    dp / fma);
	}
#endif
	vlm_threads_set(1);
#ifdef HAVE_DNNL
	omp_set_num_threads(1);
#endif
	for (size_t i = 0; i < n; i++) {
		x[i] = (float)(i % 17) / 17 - 0.5f;
		w[i] = (float)(i % 13) / 13 - 0.5f;
	}
	vlm_bf16_from_f32_ref(xb, x, n), vlm_bf16_from_f32_ref(wb, w, n);
	printf("%-26s", "GFLOP/s, y = x w^T");
	for (int s = 0; s < 3; s++)
		printf("  %4dx%4dx%4d", shapes[s].M, shapes[s].N, shapes[s].K);
	printf("  (ratio to fp32)\n");
	/* best of 5 runs each after a warm-up, the candidates turn about */
	double g[4][3] = { { 0 } };
	for (int s = 0; s < 3; s++)
		for (int rep = 0; rep < 6; rep++)
			for (int how = F32; how <= OURS; how++) {
				const struct shape *sh = &shapes[s];
				double t = bf16_once(how, sh, x, w, xb, wb, y,
				    sc), f = 2.0 * sh->M * sh->N * sh->K;
				if (t < 0)
					g[how][s] = -1;
				else if (rep && f / t / 1e9 > g[how][s])
					g[how][s] = f / t / 1e9;
			}
	for (int how = F32; how <= OURS; how++) {
		printf("%-26s", names[how]);
		for (int s = 0; s < 3; s++)
			if (g[how][s] < 0)
				printf("  %14s", "absent");
			else
				printf("  %6.1f (%4.2fx)", g[how][s],
				    g[how][s] / g[F32][s]);
		printf("\n");
	}
	free(x), free(w), free(y), free(sc), free(xb), free(wb);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *given = getenv("OPENBLAS_CORETYPE");

	if (argc >= 3 && strcmp(argv[1], "--one") == 0) {
		if (argc == 4 && vlm_blas_setup(argc, argv) < 0)
			fprintf(stderr, "%s\n", vlm_errmsg());
		return strcmp(argv[2], "bf16") == 0 ? bf16_report() :
		    one(argv[2]);
	}
	__builtin_cpu_init();
	printf("%s\nthreads %d, avx512f %s; best SGEMM GFLOP/s, square "
	    "1024..2048:\n", openblas_get_config(), vlm_threads(),
	    __builtin_cpu_supports("avx512f") ? "yes" : "no");
	printf("%-14s %-11s %-11s %7s %12s %12s\n", "run",
	    "CORETYPE", "core", "1 thread", "openblas-mt", "vlm_gemm");
	fflush(stdout);
	child("env as given", given, 0);
	child("cpuid", NULL, 0);
	child("forced", "Haswell", 0);
	child("forced", "SkylakeX", 0);
	child("vlm_blas_setup", NULL, 1);
	child("bf16", NULL, 1); /* vlm_blas_setup's kernels */
	return 0;
}
