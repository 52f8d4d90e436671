/*
 * train/comm.h - the communicator the ranks of a distributed vlm-train
 * talk through: a small table of collectives (all-reduce, all-gather,
 * all-to-all with counts, broadcast, barrier) with two implementations,
 * one process (comm.c) and MPI (comm-mpi.c, when built with mpicc),
 * for host memory; and for the cuda backend's device memory NCCL
 * (kernels/cuda/comm-nccl.cu in libvlm-cuda.so, bootstrapped over one
 * of those), with the same entries. Every collective waits at most the
 * communicator's timeout: past it the call fails (-1, vlm_error) and
 * the caller must vlm_comm_abort, since a collective in flight cannot
 * be taken back.
 */
#ifndef VLM_LIBCORE_COMM_H
#define VLM_LIBCORE_COMM_H

#include <stddef.h>
#include <stdint.h>

enum vlm_comm_type { VLM_COMM_F32, VLM_COMM_F64 };
enum vlm_comm_op { VLM_COMM_SUM, VLM_COMM_MAX };
#define VLM_COMM_BUCKET (1 << 22) /* items per all-reduce bucket */

struct vlm_comm;
struct vlm_backend;

struct vlm_comm_ops {
	const char *name; /* e.g. "mpi" */
	/* buf (n) := its op over the ranks, in place; a long buffer goes
	 * in buckets (VLM_COMM_BUCKET items), all in flight at once */
	int (*allreduce)(struct vlm_comm *c, void *buf, size_t n,
	    enum vlm_comm_type t, enum vlm_comm_op op);
	/* recv (size * bytes) := every rank's send (bytes), rank order */
	int (*allgather)(struct vlm_comm *c, const void *send, void *recv,
	    size_t bytes);
	/* rank r's scount[r] items of send go to rank r, rcount[r] come
	 * from it; items of `item` bytes, packed in rank order */
	int (*alltoallv)(struct vlm_comm *c, const void *send,
	    const int *scount, void *recv, const int *rcount, size_t item);
	int (*bcast)(struct vlm_comm *c, void *buf, size_t bytes, int root);
	int (*barrier)(struct vlm_comm *c);
	void (*abort)(struct vlm_comm *c, int status); /* every rank ends */
	void (*finalize)(struct vlm_comm *c);
};

struct vlm_comm {
	const struct vlm_comm_ops *ops;
	int rank, size;      /* e.g. 0, 2 */
	double timeout;      /* seconds a collective may wait, e.g. 600 */
	uint64_t bytes;      /* payload this rank handed to collectives */
	uint64_t ncoll;      /* collectives waited for */
	uint64_t naps;       /* sleeps while waiting for them */
	double wait;         /* seconds spent waiting for them */
	void *impl;
};

/* The engine the process was launched with: MPI under mpirun (or
 * another launcher of MPI ranks), else one process. -1 with a message
 * when launched as several ranks by a build without MPI. timeout:
 * VLM_COMM_TIMEOUT seconds when set, else 600. */
int vlm_comm_init(struct vlm_comm *c, int *argc, char ***argv);
/* The single-process communicator (size 1, every collective a copy). */
void vlm_comm_init_self(struct vlm_comm *c);
/* Ranks this process was launched among (the launcher's environment),
 * 1 when none. */
int vlm_comm_launched_size(void);
/* 1 when this build has MPI. */
int vlm_comm_have_mpi(void);
void vlm_comm_finalize(struct vlm_comm *c);
void vlm_comm_abort(struct vlm_comm *c, int status)
    __attribute__((noreturn));

/* dev := a communicator of host's ranks for buffers of the device
 * backend be (NCCL, bootstrapped over host, which must outlive it), or
 * -1 with a message: be is host memory, its library has no NCCL, or
 * NCCL fails (e.g. two ranks on one device). */
int vlm_comm_init_device(struct vlm_comm *dev, struct vlm_comm *host,
    const struct vlm_backend *be);
/* 1 when the cuda backend's library has NCCL (loading it). */
int vlm_comm_have_nccl(void);

/* comm-mpi.c, built with MPI only: 0 and *c, or -1 with a message */
int vlm_comm_init_mpi(struct vlm_comm *c, int *argc, char ***argv);

#endif /* VLM_LIBCORE_COMM_H */
