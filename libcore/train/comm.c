/*
 * comm.c - choosing the communicator's engine, and the one-process
 * engine: with one rank every collective is the identity or a copy.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels.h"
#include "train/comm.h"

/* libvlm-cuda.so's vlm_cuda_so_comm (kernels/cuda/comm-nccl.cu) */
typedef int vlm_cuda_comm_fn(struct vlm_comm *dev, struct vlm_comm *host,
    int (*error)(const char *fmt, ...));

static int
self_allreduce(struct vlm_comm *c, void *buf, size_t n,
    enum vlm_comm_type t, enum vlm_comm_op op)
{
	(void)c, (void)buf, (void)n, (void)t, (void)op;
	return 0;
}

static int
self_allgather(struct vlm_comm *c, const void *send, void *recv,
    size_t bytes)
{
	(void)c;
	memmove(recv, send, bytes);
	return 0;
}

static int
self_alltoallv(struct vlm_comm *c, const void *send, const int *scount,
    void *recv, const int *rcount, size_t item)
{
	(void)c;
	if (scount[0] != rcount[0])
		return vlm_error("all-to-all: %d items sent to self, %d "
		    "expected", scount[0], rcount[0]);
	memmove(recv, send, (size_t)scount[0] * item);
	return 0;
}

static int
self_bcast(struct vlm_comm *c, void *buf, size_t bytes, int root)
{
	(void)c, (void)buf, (void)bytes, (void)root;
	return 0;
}

static int
self_barrier(struct vlm_comm *c)
{
	(void)c;
	return 0;
}

static void
self_abort(struct vlm_comm *c, int status)
{
	(void)c;
	exit(status);
}

static void
self_finalize(struct vlm_comm *c)
{
	(void)c;
}

static const struct vlm_comm_ops self_ops = {
	"self", self_allreduce, self_allgather, self_alltoallv, self_bcast,
	self_barrier, self_abort, self_finalize
};

void
vlm_comm_init_self(struct vlm_comm *c)
{
	memset(c, 0, sizeof(*c));
	c->ops = &self_ops;
	c->size = 1;
	c->timeout = 600;
}

/* The launcher's count of ranks: OpenMPI's, then PMI's and Slurm's. */
int
vlm_comm_launched_size(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE",
		"PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *s = getenv(vars[i]);
		if (s && atoi(s) > 0)
			return atoi(s);
	}
	return 1;
}

int
vlm_comm_have_mpi(void)
{
#ifdef VLM_MPI
	return 1;
#else
	return 0;
#endif
}

int
vlm_comm_init(struct vlm_comm *c, int *argc, char ***argv)
{
	int n = vlm_comm_launched_size();
	const char *s = getenv("VLM_COMM_TIMEOUT");

	vlm_comm_init_self(c);
	if (s && !(atof(s) > 0))
		return vlm_error("VLM_COMM_TIMEOUT: '%s' is not a positive "
		    "number of seconds", s);
	if (n > 1 && !vlm_comm_have_mpi())
		return vlm_error("launched as %d ranks, but this build has "
		    "no MPI (install libopenmpi-dev and rebuild)", n);
	if (n > 1 && vlm_comm_init_mpi(c, argc, argv) < 0)
		return -1;
	if (s)
		c->timeout = atof(s);
	return 0;
}

void
vlm_comm_finalize(struct vlm_comm *c)
{
	c->ops->finalize(c);
}

void
vlm_comm_abort(struct vlm_comm *c, int status)
{
	c->ops->abort(c, status);
	exit(status); /* not reached: abort ends the process */
}

int
vlm_comm_have_nccl(void)
{
	return vlm_cuda_sym("vlm_cuda_so_comm") != NULL;
}

int
vlm_comm_init_device(struct vlm_comm *dev, struct vlm_comm *host,
    const struct vlm_backend *be)
{
	vlm_cuda_comm_fn *f;

	memset(dev, 0, sizeof(*dev));
	if (!be->device)
		return vlm_error("backend '%s' is host memory: its buffers go "
		    "through the host communicator", be->name);
	if (!(f = (vlm_cuda_comm_fn *)vlm_cuda_sym("vlm_cuda_so_comm")))
		return vlm_error("backend '%s': no NCCL (%s; rebuild where "
		    "the CUDA toolkit has nccl.h)", be->name, vlm_errmsg());
	return f(dev, host, vlm_error);
}

#ifndef VLM_MPI
int
vlm_comm_init_mpi(struct vlm_comm *c, int *argc, char ***argv)
{
	(void)c, (void)argc, (void)argv;
	return vlm_error("this build has no MPI");
}
#endif
