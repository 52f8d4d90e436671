/*
 * threads.c - the thread count, a persistent pthread pool for the CPU
 * kernels, and the OpenBLAS core-type setup.
 *
 * The pool splits [0,n) into contiguous chunks, one per thread; the
 * caller runs chunk 0 itself. Kernels compute every index the same way
 * whatever chunk it falls in, so results do not depend on the thread
 * count. OpenBLAS is kept single-threaded: its own threading splits a
 * GEMM by its thread count, which changes the rounding of some elements
 * (vlm_gemm_cpu tiles GEMMs on this pool instead), and two pools of
 * spinning threads on the same cores would fight.
 */
#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

#include "base/base.h"

#define MAX_THREADS 1024

static struct {
	pthread_mutex_t mu;
	pthread_cond_t go;	/* a new job (or quit) for the workers */
	pthread_cond_t done;	/* the last worker finished the job */
	pthread_t *tid;		/* nworkers started workers */
	int nworkers;
	int quit;
	uint64_t gen;		/* bumped for each job */
	int pending;		/* workers yet to finish the job */
	void (*fn)(void *, int64_t, int64_t);
	void *ctx;
	int64_t n;
	int nchunks;
} pool = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.go = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER; /* one job */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int nthreads;			/* set once, or by vlm_threads_set */
static _Thread_local int in_job;	/* nested calls run inline */

/* Online cores, or fewer if our affinity mask says so. */
static int
default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    CPU_COUNT(&set) > 0 && CPU_COUNT(&set) < n)
		n = CPU_COUNT(&set);
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* VLM_THREADS if it is a positive number, else every core. */
static int
env_threads(void)
{
	const char *s = getenv("VLM_THREADS");
	char *end;
	long n;

	if (!s || !*s)
		return default_threads();
	n = strtol(s, &end, 10);
	if (*end || n < 1)
		return default_threads();
	return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static void
init_once(void)
{
	nthreads = env_threads();
	openblas_set_num_threads(1);
}

int
vlm_threads(void)
{
	pthread_once(&once, init_once);
	return nthreads;
}

/* Run chunk k of the current job (if the job has that many). */
static void
run_chunk(int k, void (*fn)(void *, int64_t, int64_t), void *ctx,
    int64_t n, int nchunks)
{
	if (k >= nchunks)
		return;
	in_job = 1;
	fn(ctx, n * k / nchunks, n * (k + 1) / nchunks);
	in_job = 0;
}

static void *
worker(void *arg)
{
	int k = (int)(intptr_t)arg;
	uint64_t seen = 0;

	pthread_mutex_lock(&pool.mu);
	for (;;) {
		while (pool.gen == seen && !pool.quit)
			pthread_cond_wait(&pool.go, &pool.mu);
		if (pool.quit)
			break;
		seen = pool.gen;
		pthread_mutex_unlock(&pool.mu);
		run_chunk(k, pool.fn, pool.ctx, pool.n, pool.nchunks);
		pthread_mutex_lock(&pool.mu);
		if (--pool.pending == 0)
			pthread_cond_signal(&pool.done);
	}
	pthread_mutex_unlock(&pool.mu);
	return NULL;
}

/* Stop and join the workers; job_mu held. */
static void
pool_stop(void)
{
	pthread_mutex_lock(&pool.mu);
	pool.quit = 1;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	for (int i = 0; i < pool.nworkers; i++)
		pthread_join(pool.tid[i], NULL);
	free(pool.tid);
	pool.tid = NULL;
	pool.nworkers = 0;
	pool.quit = 0;
}

/* Start nthreads - 1 workers; job_mu held. Returns how many started. */
static int
pool_start(void)
{
	int want = nthreads - 1;

	pool.tid = calloc(want, sizeof(*pool.tid));
	if (!pool.tid)
		return 0;
	pthread_mutex_lock(&pool.mu);
	pool.gen = 0;	/* what a new worker has seen, however late it runs */
	for (; pool.nworkers < want; pool.nworkers++)
		if (pthread_create(&pool.tid[pool.nworkers], NULL, worker,
		    (void *)(intptr_t)(pool.nworkers + 1)) != 0)
			break;
	pthread_mutex_unlock(&pool.mu);
	if (pool.nworkers == 0) {
		free(pool.tid);
		pool.tid = NULL;
	}
	return pool.nworkers;
}

void
vlm_threads_set(int n)
{
	pthread_once(&once, init_once);
	pthread_mutex_lock(&job_mu);
	pool_stop();
	nthreads = n > 0 ? (n > MAX_THREADS ? MAX_THREADS : n) : env_threads();
	pthread_mutex_unlock(&job_mu);
}

void
vlm_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t i0, int64_t i1),
    void *ctx)
{
	int nt = vlm_threads();

	if (n <= 0)
		return;
	/* nested, concurrent or single-threaded: the whole range inline */
	if (nt == 1 || n == 1 || in_job || pthread_mutex_trylock(&job_mu)) {
		fn(ctx, 0, n);
		return;
	}
	if (pool.nworkers == 0 && pool_start() == 0) {
		pthread_mutex_unlock(&job_mu);
		fn(ctx, 0, n);
		return;
	}
	pthread_mutex_lock(&pool.mu);
	pool.fn = fn;
	pool.ctx = ctx;
	pool.n = n;
	pool.nchunks = n < pool.nworkers + 1 ? (int)n : pool.nworkers + 1;
	pool.pending = pool.nworkers;
	pool.gen++;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	run_chunk(0, fn, ctx, n, pool.nchunks);
	pthread_mutex_lock(&pool.mu);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.mu);
	pthread_mutex_unlock(&pool.mu);
	pthread_mutex_unlock(&job_mu);
}

/* Jobs under this many flops are not worth waking the pool for. */
#define PARALLEL_MIN 32768

void
vlm_parallel_for_cost(int64_t n, int64_t flops,
    void (*fn)(void *ctx, int64_t i0, int64_t i1), void *ctx)
{
	vlm_threads();	/* OpenBLAS single-threaded before any BLAS call */
	if (flops < PARALLEL_MIN) {
		if (n > 0)
			fn(ctx, 0, n);
	} else {
		vlm_parallel_for(n, fn, ctx);
	}
}

/* Whether OpenBLAS chose a kernel set that uses AVX-512. */
static int
avx512_core(const char *core)
{
	static const char *const names[] = {
		"SkylakeX", "Cooperlake", "SapphireRapids",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(core, names[i]) == 0)
			return 1;
	return 0;
}

/* Whether this CPU runs OpenBLAS's SkylakeX kernels. */
static int
cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl");
#else
	return 0;
#endif
}

/*
 * OpenBLAS picks its kernels in its library constructor, before main and
 * before any constructor of ours, from OPENBLAS_CORETYPE or from cpuid.
 * Where it ends up with AVX2 kernels on an AVX-512 CPU, half the speed
 * (its cpuid tables miss the CPU, as Debian's 0.3.21 does on AMD Zen 4,
 * or an environment forces OPENBLAS_CORETYPE=Haswell, as some machine
 * images do), run this program again with OPENBLAS_CORETYPE=SkylakeX.
 * VLM_BLAS_KEEP=1 keeps whatever OpenBLAS chose; VLM_BLAS_REEXEC stops
 * any second re-exec.
 */
int
vlm_blas_setup(int argc, char **argv)
{
	const char *core = openblas_get_corename();

	(void)argc;
	assert(argc >= 1 && argv[argc] == NULL);
	vlm_threads();
	if (getenv("VLM_BLAS_KEEP") || getenv("VLM_BLAS_REEXEC") ||
	    !cpu_has_avx512() || !core || avx512_core(core))
		return 0;
	if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) ||
	    setenv("VLM_BLAS_REEXEC", "1", 1))
		return vlm_error("cannot set OPENBLAS_CORETYPE");
	/* by its real path, so that ps and top still show its name */
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		execv(self, argv);
	}
	execv("/proc/self/exe", argv);
	unsetenv("OPENBLAS_CORETYPE");
	return vlm_error("'/proc/self/exe': cannot re-execute with "
	    "OPENBLAS_CORETYPE=SkylakeX");
}
