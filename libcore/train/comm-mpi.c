/*
 * comm-mpi.c - the communicator over MPI (OpenMPI from Debian): each
 * collective is started nonblocking and polled until it completes or
 * the communicator's timeout passes, so that a rank whose peer died or
 * hangs fails with a message instead of waiting forever. Built only
 * when the Makefile finds mpicc (VLM_MPI).
 */
#ifdef VLM_MPI
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "base/base.h"
#include "train/comm.h"

/* Wait for n requests: spin briefly, then sleep 20 us between polls
 * (ranks may share cores: a spinning one would slow the others). The
 * naps stay short: a nonblocking collective moves only while polled,
 * and longer ones (up to 1 ms) made tiny-moe's steps 2-4 times slower. */
static int
wait_all(struct vlm_comm *c, MPI_Request *req, int n, const char *what)
{
	double t0 = vlm_now();
	struct timespec nap = { 0, 20000 };
	int done = 0;

	c->ncoll++;
	for (long k = 0;; k++) {
		if (MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE) !=
		    MPI_SUCCESS)
			return vlm_error("%s failed on rank %d", what,
			    c->rank);
		if (done) {
			c->wait += vlm_now() - t0;
			return 0;
		}
		if (vlm_now() - t0 > c->timeout)
			return vlm_error("%s: waited %g s for the other ranks "
			    "(VLM_COMM_TIMEOUT)", what, c->timeout);
		if (k > 100) {
			nanosleep(&nap, NULL);
			c->naps++;
		}
	}
}

static int
mpi_allreduce(struct vlm_comm *c, void *buf, size_t n,
    enum vlm_comm_type t, enum vlm_comm_op op)
{
	size_t item = t == VLM_COMM_F32 ? 4 : 8;
	size_t nb = (n + VLM_COMM_BUCKET - 1) / VLM_COMM_BUCKET;
	MPI_Request req[64];
	int rc = 0;

	c->bytes += n * item;
	for (size_t b0 = 0; b0 < nb; b0 += 64) {
		int k = 0;
		for (size_t b = b0; b < nb && k < 64; b++, k++) {
			size_t lo = b * VLM_COMM_BUCKET;
			size_t len = n - lo < VLM_COMM_BUCKET ? n - lo :
			    VLM_COMM_BUCKET;
			MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + lo * item,
			    (int)len, t == VLM_COMM_F32 ? MPI_FLOAT :
			    MPI_DOUBLE, op == VLM_COMM_SUM ? MPI_SUM :
			    MPI_MAX, MPI_COMM_WORLD, &req[k]);
		}
		if ((rc = wait_all(c, req, k, "all-reduce")) < 0)
			break;
	}
	return rc;
}

static int
mpi_allgather(struct vlm_comm *c, const void *send, void *recv,
    size_t bytes)
{
	MPI_Request req;

	if (bytes > INT32_MAX)
		return vlm_error("all-gather of %zu bytes: too many", bytes);
	c->bytes += bytes;
	MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes,
	    MPI_BYTE, MPI_COMM_WORLD, &req);
	return wait_all(c, &req, 1, "all-gather");
}

static int
mpi_alltoallv(struct vlm_comm *c, const void *send, const int *scount,
    void *recv, const int *rcount, size_t item)
{
	int P = c->size, *sc, *sd, *rc, *rd;
	MPI_Datatype type;
	MPI_Request req;
	int st;

	if (!(sc = malloc(4 * P * sizeof(int))))
		return vlm_error("out of memory");
	sd = sc + P, rc = sd + P, rd = rc + P;
	for (int r = 0, so = 0, ro = 0; r < P; r++) {
		sc[r] = scount[r], sd[r] = so, so += scount[r];
		rc[r] = rcount[r], rd[r] = ro, ro += rcount[r];
		c->bytes += (uint64_t)scount[r] * item;
	}
	MPI_Type_contiguous((int)item, MPI_BYTE, &type);
	MPI_Type_commit(&type);
	MPI_Ialltoallv(send, sc, sd, type, recv, rc, rd, type,
	    MPI_COMM_WORLD, &req);
	st = wait_all(c, &req, 1, "all-to-all");
	if (st == 0)
		MPI_Type_free(&type);
	free(sc);
	return st;
}

static int
mpi_bcast(struct vlm_comm *c, void *buf, size_t bytes, int root)
{
	size_t nb = (bytes + INT32_MAX - 1) / INT32_MAX;
	MPI_Request req[16];

	if (nb > 16)
		return vlm_error("broadcast of %zu bytes: too many", bytes);
	if (c->rank == root)
		c->bytes += bytes;
	for (size_t b = 0; b < nb; b++) {
		size_t lo = b * (size_t)INT32_MAX;
		size_t len = bytes - lo < INT32_MAX ? bytes - lo : INT32_MAX;
		MPI_Ibcast((char *)buf + lo, (int)len, MPI_BYTE, root,
		    MPI_COMM_WORLD, &req[b]);
	}
	return wait_all(c, req, (int)nb, "broadcast");
}

static int
mpi_barrier(struct vlm_comm *c)
{
	MPI_Request req;

	MPI_Ibarrier(MPI_COMM_WORLD, &req);
	return wait_all(c, &req, 1, "barrier");
}

static void
mpi_abort(struct vlm_comm *c, int status)
{
	(void)c;
	MPI_Abort(MPI_COMM_WORLD, status);
}

/* With VLM_COMM_STATS set, every rank reports its waits and its CPU
 * time at the end (to tell waiting from computing). */
static void
mpi_finalize(struct vlm_comm *c)
{
	struct rusage ru;

	if (getenv("VLM_COMM_STATS") && getrusage(RUSAGE_SELF, &ru) == 0)
		fprintf(stderr, "vlm-train: rank %d waited %.3f s in %llu "
		    "collectives (%llu sleeps); CPU %.3f s user %.3f s "
		    "system; %ld+%ld context switches\n", c->rank, c->wait,
		    (unsigned long long)c->ncoll,
		    (unsigned long long)c->naps,
		    ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
		    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6,
		    ru.ru_nvcsw, ru.ru_nivcsw);
	MPI_Finalize();
}

static const struct vlm_comm_ops mpi_ops = {
	"mpi", mpi_allreduce, mpi_allgather, mpi_alltoallv, mpi_bcast,
	mpi_barrier, mpi_abort, mpi_finalize
};

int
vlm_comm_init_mpi(struct vlm_comm *c, int *argc, char ***argv)
{
	int provided;

	if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) !=
	    MPI_SUCCESS)
		return vlm_error("MPI_Init failed");
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &c->size);
	c->ops = &mpi_ops;
	return 0;
}
#endif /* VLM_MPI */
