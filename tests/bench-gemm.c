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
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cblas.h>

#include "vlm.h"
#include "kernels.h"

extern char **environ;

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + 1e-9 * t.tv_nsec;
}

enum { ONE, OPENBLAS, POOL };

/* Best GFLOP/s of C = A B^T over sizes 1024, 1536, 2048, 3 runs each. */
static double
best_gflops(int how, int nt, float *a, float *b, float *c)
{
	double best = 0;

	for (int n = 1024; n <= 2048; n += 512)
		for (int rep = 0; rep < 3; rep++) {
			double t = now();
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
			t = now() - t;
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

int
main(int argc, char **argv)
{
	const char *given = getenv("OPENBLAS_CORETYPE");

	if (argc >= 3 && strcmp(argv[1], "--one") == 0) {
		if (argc == 4 && vlm_blas_setup(argc, argv) < 0)
			fprintf(stderr, "%s\n", vlm_errmsg());
		return one(argv[2]);
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
	return 0;
}
