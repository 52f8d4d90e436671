/*
 * comm-nccl.cu - the communicator (libcore/train/comm.h) over NCCL, for
 * buffers in the cuda backend's device memory. Bootstrapped over the
 * host communicator (MPI, or the one-process one): rank 0 makes the
 * unique id and broadcasts it. Every collective runs on the backend's
 * one stream (backend.cu), so it follows the ops that wrote its buffer.
 * The NCCL communicator is nonblocking (ncclConfig_t blocking = 0): a
 * collective is enqueued, then polled (ncclCommGetAsyncError, then
 * cudaStreamQuery) until done or the communicator's timeout, past which
 * the NCCL communicator is aborted and the call fails naming the
 * collective. Built only when the toolkit has nccl.h (VLM_NCCL); libcore
 * finds it with dlsym (vlm_comm_init_device).
 */
#ifdef VLM_NCCL
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <nccl.h>

#include "cuda.cuh"
extern "C" {
#include "train/comm.h"
}

struct nccl {
	ncclComm_t comm;
	struct vlm_comm *host;  /* the bootstrap's: its abort ends ranks */
	float *one;             /* (1) device scratch of the barrier */
	int dead;               /* aborted: every later call fails */
	int (*error)(const char *fmt, ...);
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct nccl *
impl(struct vlm_comm *c)
{
	return (struct nccl *)c->impl;
}

/* A failed collective: the NCCL communicator aborted, -1 with why. */
static int
fail(struct vlm_comm *c, const char *what, const char *why)
{
	struct nccl *n = impl(c);

	if (!n->dead)
		ncclCommAbort(n->comm);
	n->dead = 1;
	return n->error("nccl %s failed on rank %d: %s", what, c->rank, why);
}

/* Past the timeout: the NCCL communicator aborted, -1 naming what. */
static int
timed_out(struct vlm_comm *c, const char *what)
{
	struct nccl *n = impl(c);

	if (!n->dead)
		ncclCommAbort(n->comm);
	n->dead = 1;
	return n->error("nccl %s: waited %g s for the other ranks "
	    "(VLM_COMM_TIMEOUT); the NCCL communicator is aborted", what,
	    c->timeout);
}

/* The NCCL state past ncclInProgress, within the timeout (t0 on). */
static int
settle(struct vlm_comm *c, double t0, const char *what)
{
	struct nccl *n = impl(c);
	struct timespec nap = { 0, 20000 };
	ncclResult_t as = ncclInProgress;

	for (long k = 0;; k++) {
		if (ncclCommGetAsyncError(n->comm, &as) != ncclSuccess)
			return fail(c, what, "ncclCommGetAsyncError failed");
		if (as == ncclSuccess)
			return 0;
		if (as != ncclInProgress)
			return fail(c, what, ncclGetErrorString(as));
		if (now() - t0 > c->timeout)
			return timed_out(c, what);
		if (k > 100)
			nanosleep(&nap, NULL);
	}
}

/* After enqueueing (r: what the call or ncclGroupEnd returned): wait
 * for the stream, as comm-mpi.c's wait_all: spin, then 20 us naps. */
static int
wait_done(struct vlm_comm *c, ncclResult_t r, const char *what)
{
	struct timespec nap = { 0, 20000 };
	double t0 = now();
	cudaError_t e;

	c->ncoll++;
	if (r != ncclSuccess && r != ncclInProgress)
		return fail(c, what, ncclGetErrorString(r));
	if (settle(c, t0, what) < 0)
		return -1;
	for (long k = 0;; k++) {
		if ((e = cudaStreamQuery(vlm_cu_stream)) == cudaSuccess)
			break;
		if (e != cudaErrorNotReady)
			return fail(c, what, cudaGetErrorString(e));
		if (now() - t0 > c->timeout)
			return timed_out(c, what);
		if (k > 100) {
			nanosleep(&nap, NULL);
			c->naps++;
		}
	}
	c->wait += now() - t0;
	return settle(c, t0, what); /* an error the kernels saw */
}

static int
alive(struct vlm_comm *c, const char *what)
{
	if (impl(c)->dead)
		return impl(c)->error("nccl %s: the communicator was aborted "
		    "by an earlier failure", what);
	return 0;
}

/* In buckets of VLM_COMM_BUCKET items, 64 in flight in one group. */
static int
nccl_allreduce(struct vlm_comm *c, void *buf, size_t n,
    enum vlm_comm_type t, enum vlm_comm_op op)
{
	size_t item = t == VLM_COMM_F32 ? 4 : 8;
	size_t nb = (n + VLM_COMM_BUCKET - 1) / VLM_COMM_BUCKET;
	ncclDataType_t type = t == VLM_COMM_F32 ? ncclFloat32 : ncclFloat64;
	ncclRedOp_t rop = op == VLM_COMM_SUM ? ncclSum : ncclMax;

	if (alive(c, "all-reduce") < 0)
		return -1;
	c->bytes += n * item;
	for (size_t b0 = 0; b0 < nb; b0 += 64) {
		ncclResult_t r = ncclGroupStart();
		for (size_t b = b0; b < nb && b < b0 + 64 &&
		    (r == ncclSuccess || r == ncclInProgress); b++) {
			size_t lo = b * VLM_COMM_BUCKET;
			size_t len = n - lo < VLM_COMM_BUCKET ? n - lo :
			    VLM_COMM_BUCKET;
			char *p = (char *)buf + lo * item;
			r = ncclAllReduce(p, p, len, type, rop,
			    impl(c)->comm, vlm_cu_stream);
		}
		if (r == ncclSuccess || r == ncclInProgress)
			r = ncclGroupEnd();
		else
			ncclGroupEnd();
		if (wait_done(c, r, "all-reduce") < 0)
			return -1;
	}
	return 0;
}

static int
nccl_allgather(struct vlm_comm *c, const void *send, void *recv,
    size_t bytes)
{
	if (alive(c, "all-gather") < 0)
		return -1;
	c->bytes += bytes;
	return wait_done(c, ncclAllGather(send, recv, bytes, ncclUint8,
	    impl(c)->comm, vlm_cu_stream), "all-gather");
}

/* One group of a send and a receive per peer with items to move. */
static int
nccl_alltoallv(struct vlm_comm *c, const void *send, const int *scount,
    void *recv, const int *rcount, size_t item)
{
	ncclResult_t r;
	size_t so = 0, ro = 0;

	if (alive(c, "all-to-all") < 0)
		return -1;
	r = ncclGroupStart();
	for (int q = 0; q < c->size; q++) {
		size_t s = (size_t)scount[q] * item, k = (size_t)rcount[q] *
		    item;
		c->bytes += s;
		if (s && (r == ncclSuccess || r == ncclInProgress))
			r = ncclSend((const char *)send + so, s, ncclUint8, q,
			    impl(c)->comm, vlm_cu_stream);
		if (k && (r == ncclSuccess || r == ncclInProgress))
			r = ncclRecv((char *)recv + ro, k, ncclUint8, q,
			    impl(c)->comm, vlm_cu_stream);
		so += s, ro += k;
	}
	if (r == ncclSuccess || r == ncclInProgress)
		r = ncclGroupEnd();
	else
		ncclGroupEnd();
	return wait_done(c, r, "all-to-all");
}

static int
nccl_bcast(struct vlm_comm *c, void *buf, size_t bytes, int root)
{
	if (alive(c, "broadcast") < 0)
		return -1;
	if (c->rank == root)
		c->bytes += bytes;
	return wait_done(c, ncclBroadcast(buf, buf, bytes, ncclUint8, root,
	    impl(c)->comm, vlm_cu_stream), "broadcast");
}

/* NCCL has no barrier: an all-reduce of one float stands for it. */
static int
nccl_barrier(struct vlm_comm *c)
{
	if (alive(c, "barrier") < 0)
		return -1;
	return wait_done(c, ncclAllReduce(impl(c)->one, impl(c)->one, 1,
	    ncclFloat32, ncclSum, impl(c)->comm, vlm_cu_stream), "barrier");
}

/* NCCL's collectives given up, then every rank ended by the host's. */
static void
nccl_abort(struct vlm_comm *c, int status)
{
	struct nccl *n = impl(c);

	if (!n->dead)
		ncclCommAbort(n->comm);
	n->dead = 1;
	n->host->ops->abort(n->host, status);
}

/* The NCCL communicator flushed and freed (the host's is left to its
 * owner); with VLM_COMM_STATS set, this rank's NCCL waits. */
static void
nccl_finalize(struct vlm_comm *c)
{
	struct nccl *n = impl(c);

	if (getenv("VLM_COMM_STATS"))
		fprintf(stderr, "vlm-train: rank %d waited %.3f s in %llu "
		    "nccl collectives (%llu sleeps)\n", c->rank, c->wait,
		    (unsigned long long)c->ncoll,
		    (unsigned long long)c->naps);
	if (!n->dead) { /* nonblocking: finalize, wait, then destroy */
		ncclResult_t r = ncclCommFinalize(n->comm);
		if ((r == ncclSuccess || r == ncclInProgress) &&
		    settle(c, now(), "finalize") == 0)
			ncclCommDestroy(n->comm);
	}
	cudaFree(n->one);
	free(n);
	c->impl = NULL;
}

static const struct vlm_comm_ops nccl_ops = {
	"nccl", nccl_allreduce, nccl_allgather, nccl_alltoallv, nccl_bcast,
	nccl_barrier, nccl_abort, nccl_finalize
};

/* The state of a communicator being made (r: what the init returned),
 * ncclInProgress when it took more than timeout seconds. */
static ncclResult_t
init_wait(ncclComm_t comm, ncclResult_t r, double timeout)
{
	struct timespec nap = { 0, 1000000 };
	double t0 = now();

	while (r == ncclSuccess || r == ncclInProgress) {
		if (ncclCommGetAsyncError(comm, &r) != ncclSuccess)
			return ncclInternalError;
		if (r != ncclInProgress || now() - t0 > timeout)
			break;
		nanosleep(&nap, NULL);
	}
	return r;
}

/* What rank 0 broadcasts: its id, or that it has none. */
struct boot {
	int ok;
	ncclUniqueId id;
};

/* dev := an NCCL communicator of host's ranks on the open device, or
 * -1 with error(...) (e.g. NCCL's "Duplicate GPU detected"). */
extern "C" int
vlm_cuda_so_comm(struct vlm_comm *dev, struct vlm_comm *host,
    int (*error)(const char *fmt, ...))
{
	ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
	struct boot b;
	struct nccl *n;
	ncclResult_t r;
	int d;

	memset(dev, 0, sizeof(*dev));
	memset(&b, 0, sizeof(b));
	if (!vlm_cu_stream || cudaGetDevice(&d) != cudaSuccess)
		return error("nccl: no cuda device is open");
	if (host->rank == 0)
		b.ok = ncclGetUniqueId(&b.id) == ncclSuccess;
	if (host->ops->bcast(host, &b, sizeof(b), 0) < 0)
		return -1;
	if (!b.ok)
		return error("nccl: rank 0 could not make a unique id");
	if (!(n = (struct nccl *)calloc(1, sizeof(*n))))
		return error("out of memory");
	n->host = host, n->error = error;
	*dev = *host;
	dev->ops = &nccl_ops, dev->impl = n;
	dev->bytes = dev->ncoll = dev->naps = 0, dev->wait = 0;
	if (cudaMalloc(&n->one, sizeof(float)) != cudaSuccess) {
		free(n);
		return error("nccl: out of device memory");
	}
	cfg.blocking = 0;
	r = ncclCommInitRankConfig(&n->comm, host->size, b.id, host->rank,
	    &cfg);
	if ((r = init_wait(n->comm, r, host->timeout)) == ncclSuccess)
		return 0;
	error("nccl: rank %d of %d on device %d: %s (%s)", host->rank,
	    host->size, d, r == ncclInProgress ? "timed out" :
	    ncclGetErrorString(r), ncclGetLastError(n->comm));
	if (n->comm)
		ncclCommAbort(n->comm);
	cudaFree(n->one);
	free(n);
	memset(dev, 0, sizeof(*dev));
	return -1;
}
#endif /* VLM_NCCL */
