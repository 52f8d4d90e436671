/*
 * train-dist.c - vlm-train over several ranks (mpirun -np P), data
 * parallel: every rank loads the same global batch of B examples from
 * the one deterministic sampler order and computes rows rank*B/P ..
 * (rank+1)*B/P - 1 of it. The contrastive loss is over the global
 * batch: the unit features are all-gathered, every rank computes the
 * same loss and its gradient, and each backpropagates the feature
 * gradients of its own rows (OpenCLIP's gather-with-grad); rank 0 adds
 * the logit scale's. The per-rank gradients are shares of one gradient,
 * so one bucketed all-reduce sums them and every rank takes the same
 * optimizer step. MoE layers route over the group one process would
 * route, every rank's tokens (libcore/model/moe-group.c): the same
 * noise, top-K, capacity, batch priority and aux losses as one process;
 * with --expert-parallel P the experts run on their owner ranks
 * (libcore/model/moe-ep.c), --grad-clip clips by the norm over every
 * rank's experts and validation gathers them all. Only rank 0 writes
 * the run directory; the others' stderr is quiet unless
 * VLM_DIST_STDERR=all. Every collective is on host memory (the run
 * downloads its gradient and features) over MPI, but on a device backend
 * the gradient's all-reduce goes through NCCL (a device copy of it)
 * when libvlm-cuda.so has NCCL, unless VLM_NCCL=0. VLM_DIST=1 takes
 * this path in one process too (one rank: to check it against the plain
 * one, or NCCL on a machine of one GPU).
 */
#include <err.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "train/comm.h"
#include "train.h"

struct train_dist {
	struct vlm_comm comm;
	int P, rank, B, Bl, E; /* ranks, global and local batch, embed */
	int err_fd;            /* this rank's real stderr */
	float *hu[2], *hdu[2]; /* host (B, E): gathered units, their grads */
	float *u[2], *du[2];   /* the backend's copies (B, E) */
	float *logits, *dlogits, *lse2, *dtheta; /* (B,B) x2, (2B), (1) */
	float *hlogits;        /* host (B*B + 2B): logits, lse2 */
	uint64_t steps, bytes0; /* for the bytes-per-step figure */
	struct vlm_comm dev;   /* NCCL over comm's ranks, or ops NULL */
	float *gdev;           /* its device copy of the gradient */
};

/* A failure only this rank sees: one message, then every rank ends. */
static void __attribute__((noreturn))
dist_die(struct train *t, const char *what)
{
	struct train_dist *d = t->dist;

	dprintf(d->err_fd, "vlm-train: rank %d: %s\n", d->rank, what);
	vlm_comm_abort(&d->comm, 1);
}

/* A warning of this rank's (e.g. on the share of the data it alone
 * decodes): on its own stderr even when that is quiet. */
void
train_dist_warn(struct train *t, const char *fmt, ...)
{
	struct train_dist *d = t->dist;
	va_list ap;

	va_start(ap, fmt);
	if (!d || d->rank == 0) {
		vwarnx(fmt, ap);
	} else {
		dprintf(d->err_fd, "vlm-train: rank %d: ", d->rank);
		vdprintf(d->err_fd, fmt, ap);
		dprintf(d->err_fd, "\n");
	}
	va_end(ap);
}

/* A failure of this rank's: one message, every rank ends (exit 1). */
void
train_dist_fail(struct train *t, const char *what)
{
	if (!t->dist)
		errx(1, "%s", what);
	dist_die(t, what);
}

void
train_dist_init(struct train *t, int *argc, char ***argv)
{
	struct vlm_comm c;
	struct train_dist *d;
	const char *s = getenv("VLM_DIST_STDERR"), *one = getenv("VLM_DIST");
	const char *nccl = getenv("VLM_NCCL");

	if (nccl && *nccl && strcmp(nccl, "0") != 0 && strcmp(nccl, "1") != 0)
		errx(2, "VLM_NCCL '%s': want 0 or 1", nccl);
	if (vlm_comm_init(&c, argc, argv) < 0)
		errx(1, "%s", vlm_errmsg());
	if (c.size == 1 && !(one && strcmp(one, "1") == 0))
		return; /* one process: t->dist stays NULL */
	if (!(d = calloc(1, sizeof(*d))))
		errx(1, "out of memory");
	d->comm = c, d->P = c.size, d->rank = c.rank;
	d->err_fd = dup(STDERR_FILENO);
	t->dist = d;
	if (d->rank > 0 && !(s && strcmp(s, "all") == 0)) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO), close(fd);
	}
}

int
train_dist_rank(const struct train *t)
{
	return t->dist ? t->dist->rank : 0;
}

int
train_dist_size(const struct train *t)
{
	return t->dist ? t->dist->P : 1;
}

/* Examples this rank computes of each micro-batch. */
int
train_dist_batch(const struct train *t)
{
	const struct train_dist *d = t->dist;

	if (!d)
		return t->o.batch;
	if (t->o.batch % d->P)
		errx(2, "--batch-size %d is not a multiple of the %d ranks",
		    t->o.batch, d->P);
	return t->o.batch / d->P;
}

static void *
host_alloc(struct train *t, size_t n)
{
	void *p = calloc(n, sizeof(float));

	if (!p)
		dist_die(t, "out of memory");
	return p;
}

static void *
dev_alloc(struct train *t, size_t n)
{
	void *p = vlm_run_backend(t->run)->alloc(n * sizeof(float));

	if (!p)
		dist_die(t, "out of memory on the backend");
	return p;
}

/* The training run: this rank's share of the batch, its MoE layers
 * planned to route over every rank's tokens. */
struct vlm_run *
train_dist_run(struct train *t)
{
	const struct vlm_backend *be = vlm_backend_default();
	int P = t->dist ? t->dist->P : 1;

	if (!be)
		return NULL;
	return vlm_run_new_group(be, t->net, train_dist_batch(t),
	    train_dist_batch(t), 1, P);
}

/* Ranks the experts are sharded over (1: none): expert parallel
 * without adapters (a LoRA run keeps every expert on every rank). */
int
train_dist_shards(const struct train *t)
{
	return t->dist && t->ep > 1 && t->net == &t->m ? t->dist->P : 1;
}

/* --resume: the model and state of the run's latest checkpoint, this
 * rank's part of a sharded one. */
int
train_dist_load(struct train *t)
{
	if (vlm_ckpt_shards(t->resume) > 0 && t->dist)
		return vlm_ckpt_load_shard(t->resume, &t->m, &t->st,
		    t->dist->rank, t->dist->P);
	return vlm_ckpt_load(t->resume, &t->m, &t->st);
}

/* The optimizer's moments, of what this rank holds; a resumed run's
 * from its checkpoint, which must have the same layout. */
int
train_dist_optim_init(struct train *t)
{
	int P = train_dist_shards(t), q = train_dist_rank(t);

	if (vlm_optim_init_shard(&t->opt, &t->m, t->frozen, q, P) < 0)
		return -1;
	if (!t->resume)
		return 0;
	if ((vlm_ckpt_shards(t->resume) > 0) != (P > 1))
		return vlm_error("'%s': its checkpoint is %s: resume it with "
		    "the layout it was saved with", t->resume, P > 1 ?
		    "one model file, these ranks shard the experts" :
		    "sharded, these ranks do not shard the experts");
	return P > 1 ? vlm_ckpt_load_optim_shard(t->resume, &t->m, &t->opt) :
	    vlm_ckpt_load_optim(t->resume, &t->m, &t->opt);
}

/* A checkpoint: rank 0's files, or every rank's shards between rank 0
 * making the directory and moving latest; any failure ends every rank. */
void
train_dist_save(struct train *t)
{
	int rank0 = train_dist_rank(t) == 0;
	int64_t step = t->st.step;

	if (train_dist_shards(t) == 1) {
		train_dist_agree(t, rank0 ? vlm_ckpt_save(t->out, &t->m,
		    &t->opt, &t->st, t->keep) : 0);
		return;
	}
	train_dist_agree(t, rank0 ? vlm_ckpt_begin(t->out, step) : 0);
	if (vlm_ckpt_save_shard(t->out, step, &t->m, &t->opt) < 0)
		dist_die(t, vlm_errmsg());
	train_dist_agree(t, 0); /* every shard written and fsynced */
	train_dist_agree(t, rank0 ? vlm_ckpt_commit(t->out, &t->st,
	    t->keep) : 0);
}

/* The whole parameters (the same on every rank) from rank 0. */
static void
bcast_whole(struct train *t)
{
	struct train_dist *d = t->dist;
	const struct vlm_model *m = &t->m;

	for (int i = 0; i < m->nparams;) {
		int64_t off = m->params[i].off, n = 0;
		for (; i < m->nparams && !vlm_param_experts(m, i) &&
		    m->params[i].off == off + n; i++)
			n += m->params[i].n;
		if (n && d->comm.ops->bcast(&d->comm, m->w + off, n *
		    sizeof(float), 0) < 0)
			dist_die(t, vlm_errmsg());
		if (!n)
			i++;
	}
}

/* With a device backend: the NCCL communicator for the gradient and
 * its device copy, unless VLM_NCCL=0; a cuda library without NCCL
 * leaves the gradient to the host's communicator (it is host memory)
 * unless VLM_NCCL=1 insists. */
static void
dist_device(struct train *t)
{
	struct train_dist *d = t->dist;
	const struct vlm_backend *be = vlm_run_backend(t->run);
	const char *s = getenv("VLM_NCCL");
	size_t n = t->ngrad > t->opt.pack.n ? t->ngrad : t->opt.pack.n;

	if (!be->device || (s && strcmp(s, "0") == 0))
		return;
	if (!vlm_comm_have_nccl()) {
		if (s && strcmp(s, "1") == 0)
			errx(2, "VLM_NCCL=1: %s", vlm_errmsg());
		return; /* the host's communicator: the gradient is host's */
	}
	if (vlm_comm_init_device(&d->dev, &d->comm, be) < 0)
		dist_die(t, vlm_errmsg());
	d->gdev = dev_alloc(t, n ? n : 1);
}

/* After setup: buffers of the global loss, the same weights and
 * moments on every rank (rank 0's). */
void
train_dist_setup(struct train *t)
{
	struct train_dist *d = t->dist;
	size_t B, E;

	if (t->ep > 1 && (!d || d->P != t->ep))
		errx(2, "--expert-parallel %d: run it as %d ranks (mpirun "
		    "-np %d), not %d", t->ep, t->ep, t->ep, d ? d->P : 1);
	if (!d)
		return;
	if (vlm_run_route_group(t->run, t->net, &d->comm) < 0 ||
	    (t->ep > 1 && vlm_run_expert_parallel(t->run, t->net, &d->comm) <
	    0))
		errx(1, "%s", vlm_errmsg());
	d->B = t->o.batch, d->Bl = train_dist_batch(t);
	d->E = t->m.cfg.embed_dim;
	B = d->B, E = d->E;
	for (int i = 0; i < 2; i++) {
		d->hu[i] = host_alloc(t, B * E);
		d->hdu[i] = host_alloc(t, B * E);
		d->u[i] = dev_alloc(t, B * E);
		d->du[i] = dev_alloc(t, B * E);
	}
	d->logits = dev_alloc(t, B * B);
	d->dlogits = dev_alloc(t, B * B);
	d->lse2 = dev_alloc(t, 2 * B);
	d->dtheta = dev_alloc(t, 1);
	d->hlogits = host_alloc(t, B * B + 2 * B);
	dist_device(t);
	if (train_dist_shards(t) > 1) { /* others' experts never touched */
		bcast_whole(t);
		vlm_model_drop_others(&t->m, d->rank, d->P);
		d->bytes0 = d->comm.bytes;
		return;
	}
	if (d->comm.ops->bcast(&d->comm, t->m.w, t->m.nfloats *
	    sizeof(float), 0) < 0 || d->comm.ops->bcast(&d->comm, t->opt.m,
	    t->opt.pack.n * sizeof(float), 0) < 0 ||
	    d->comm.ops->bcast(&d->comm, t->opt.v, t->opt.pack.n *
	    sizeof(float), 0) < 0)
		dist_die(t, vlm_errmsg());
	d->bytes0 = d->comm.bytes;
}

/* Micro-batch b's forward and loss into l: the whole batch, or this
 * rank's rows and the loss over every rank's features. */
void
train_dist_forward(struct train *t, const struct vlm_batch *b,
    struct vlm_loss *l, int micro)
{
	struct train_dist *d = t->dist;
	const struct vlm_backend *be = vlm_run_backend(t->run);
	const struct vlm_config *c = &t->m.cfg;
	size_t img = 3 * (size_t)c->image_size * c->image_size, E, o;

	if (!d && t->qa) { /* question answering, cmd/train-qa.c */
		if (vlm_fusion_qa_forward(t->run, t->net, b->pixels,
		    b->tokens, train_qa_labels(t, b), l) < 0)
			errx(1, "%s", vlm_errmsg());
		return;
	}
	if (!d && t->m.cfg.fusion.layers > 0) { /* model/fusion.c */
		if (vlm_fusion_train_forward(t->run, t->net, b->pixels,
		    b->tokens, &t->fw, l) < 0)
			errx(1, "%s", vlm_errmsg());
		return;
	}
	if (!d) {
		if (vlm_forward(t->run, t->net, b->pixels, b->tokens) < 0 ||
		    vlm_run_loss(t->run, t->net, l) < 0)
			errx(1, "%s", vlm_errmsg());
		return;
	}
	E = d->E, o = (size_t)d->rank * d->Bl;
	(void)micro; /* the router noise: the run's generator, as one process */
	if (vlm_forward(t->run, t->net, b->pixels + o * img, b->tokens +
	    o * c->context) < 0 || vlm_run_loss(t->run, t->net, l) < 0)
		dist_die(t, vlm_errmsg()); /* e.g. a routing exchange */
	for (int i = 0; i < 2; i++)
		if (d->comm.ops->allgather(&d->comm, vlm_run_features(t->run,
		    i, 1), d->hu[i], d->Bl * E * sizeof(float)) < 0)
			dist_die(t, vlm_errmsg());
	for (int i = 0; i < 2; i++)
		be->upload(d->u[i], d->hu[i], d->B * E * sizeof(float));
	l->contrastive = be->clip_loss_fwd(d->logits, d->lse2, d->u[0],
	    d->u[1], t->net->w[t->net->logit_scale], d->B, (int)E);
	/* l->aux: the group's, the same on every rank */
	l->total = l->contrastive + l->aux;
}

/* After train_dist_forward: each example's contrastive loss (B). */
int
train_row_loss(struct train *t, double *loss)
{
	struct train_dist *d = t->dist;
	const struct vlm_backend *be;
	size_t BB;

	if (!d)
		return vlm_run_row_loss(t->run, loss);
	be = vlm_run_backend(t->run);
	BB = (size_t)d->B * d->B;
	be->download(d->hlogits, d->logits, BB * sizeof(float));
	be->download(d->hlogits + BB, d->lse2, 2 * (size_t)d->B *
	    sizeof(float));
	vlm_row_loss(d->hlogits, d->hlogits + BB, d->B, loss);
	return 0;
}

/* The gradient of the loss of train_dist_forward into grad. */
void
train_dist_backward(struct train *t, float *grad)
{
	struct train_dist *d = t->dist;
	const struct vlm_backend *be = vlm_run_backend(t->run);
	size_t n, o;
	float dtheta, *gls;
	int64_t ls = t->net->logit_scale;

	if (!d) {
		if (vlm_backward(t->run, t->net, grad) < 0)
			errx(1, "%s", vlm_errmsg());
		return;
	}
	n = (size_t)d->B * d->E * sizeof(float);
	o = (size_t)d->rank * d->Bl * d->E;
	be->memset(d->du[0], 0, n);
	be->memset(d->du[1], 0, n);
	be->memset(d->dtheta, 0, sizeof(float));
	be->clip_loss_bwd(d->du[0], d->du[1], d->dtheta, d->dlogits,
	    d->logits, d->lse2, d->u[0], d->u[1], t->net->w[ls], 1.0f, d->B,
	    d->E);
	be->download(d->hdu[0], d->du[0], n);
	be->download(d->hdu[1], d->du[1], n);
	if (vlm_backward_from(t->run, t->net, grad, d->hdu[0] + o,
	    d->hdu[1] + o, 1.0f) < 0)
		dist_die(t, vlm_errmsg());
	/* the logit scale's gradient: rank 0's alone, at its place in the
	 * (packed) gradient; none when it is frozen */
	gls = vlm_run_grad(t->run, t->net, grad, ls, 0);
	if (d->rank > 0 || !gls)
		return;
	be->download(&dtheta, d->dtheta, sizeof(float));
	*gls += dtheta; /* grad is host memory: the run downloaded it */
}

/* grad (n floats, host memory) summed over the ranks: through NCCL on
 * its device copy where there is one, else the host's communicator. */
static int
grad_allreduce(struct train *t, float *grad, size_t n)
{
	struct train_dist *d = t->dist;
	const struct vlm_backend *be = vlm_run_backend(t->run);

	if (!d->dev.ops)
		return d->comm.ops->allreduce(&d->comm, grad, n, VLM_COMM_F32,
		    VLM_COMM_SUM);
	be->upload(d->gdev, grad, n * sizeof(float));
	if (d->dev.ops->allreduce(&d->dev, d->gdev, n, VLM_COMM_F32,
	    VLM_COMM_SUM) < 0)
		return -1;
	be->download(grad, d->gdev, n * sizeof(float));
	return be->sync();
}

/* The step's gradient (n floats) summed over the ranks; with sharded
 * experts and --grad-clip, clipped by the global norm: the whole
 * parameters' part (the same on every rank) counted once, every rank's
 * experts' summed, so that every rank scales by the same factor. */
void
train_dist_grads(struct train *t, float *grad, int64_t n)
{
	struct train_dist *d = t->dist;
	double whole, ex;

	if (!d)
		return;
	if (train_dist_shards(t) > 1) /* the experts' part stays here */
		n = t->opt.pack.nrep;
	if (grad_allreduce(t, grad, n) < 0)
		dist_die(t, vlm_errmsg());
	d->steps++;
	if (train_dist_shards(t) == 1 || t->opt.clip <= 0)
		return; /* vlm_optim_step clips the whole gradient */
	vlm_optim_sumsq(&t->opt, grad, &whole, &ex);
	if (d->comm.ops->allreduce(&d->comm, &ex, 1, VLM_COMM_F64,
	    VLM_COMM_SUM) < 0)
		dist_die(t, vlm_errmsg());
	vlm_optim_clip_norm(&t->opt, grad, sqrt(whole + ex));
}

/* Validation with the experts split: the whole model runs on every rank,
 * every rank's experts gathered into each rank's slab (all = 1), the
 * others' let go again after (all = 0); those bytes are not a step's. */
void
train_dist_val_experts(struct train *t, int all)
{
	struct train_dist *d = t->dist;
	struct vlm_model *m = &t->m;
	uint64_t b0;

	if (train_dist_shards(t) == 1)
		return;
	if (!all) {
		vlm_model_drop_others(m, d->rank, d->P);
		return;
	}
	b0 = d->comm.bytes;
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		int64_t lo, n;
		float *own;
		if (!vlm_param_experts(m, i))
			continue;
		vlm_param_held(m, i, d->rank, d->P, &lo, &n);
		own = host_alloc(t, n); /* the send buffer may not overlap */
		memcpy(own, m->w + p->off + lo, n * sizeof(float));
		if (d->comm.ops->allgather(&d->comm, own, m->w + p->off, n *
		    sizeof(float)) < 0)
			dist_die(t, vlm_errmsg());
		free(own);
	}
	d->bytes0 += d->comm.bytes - b0;
}

/* After validation on every rank (experts split): rc (0 or -1) and the
 * n figures r of each rank to rank 0; a rank that failed ends every
 * rank with its message, rank 0 warns of figures that differ from its
 * own (they should not: the same weights, the same forward). */
void
train_dist_val_agree(struct train *t, int rc, const double *r, int n)
{
	struct train_dist *d = t->dist;
	double *all, *mine;

	if (train_dist_shards(t) == 1)
		return;
	mine = host_alloc(t, 2 * ((size_t)n + 1)); /* doubles */
	all = host_alloc(t, 2 * ((size_t)n + 1) * d->P);
	mine[0] = rc;
	memcpy(mine + 1, r, n * sizeof(double));
	if (d->comm.ops->allgather(&d->comm, mine, all, (n + 1) *
	    sizeof(double)) < 0)
		dist_die(t, vlm_errmsg());
	d->bytes0 += (n + 1) * sizeof(double);
	if (rc < 0)
		dist_die(t, vlm_errmsg());
	for (int q = 1; q < d->P; q++) {
		const double *o = all + (size_t)q * (n + 1);
		if (o[0] < 0)
			exit(1); /* rank q says why */
		if (d->rank == 0 && memcmp(o + 1, r, n * sizeof(double)))
			warnx("validation: rank %d's figures differ from rank "
			    "0's", q);
	}
	free(mine);
	free(all);
}

/* The signal any rank caught (the largest number), so that every rank
 * stops after the same step. */
int
train_dist_signal(struct train *t, int sig)
{
	struct train_dist *d = t->dist;
	double s = sig;

	if (!d)
		return sig;
	if (d->comm.ops->allreduce(&d->comm, &s, 1, VLM_COMM_F64,
	    VLM_COMM_MAX) < 0)
		dist_die(t, vlm_errmsg());
	return (int)s;
}

/* rc (0 or -1) of something rank 0 alone did: when it failed, every
 * rank exits 1, rank 0 with vlm_errmsg(). */
void
train_dist_agree(struct train *t, int rc)
{
	struct train_dist *d = t->dist;
	double bad = rc < 0;

	if (d && d->comm.ops->allreduce(&d->comm, &bad, 1, VLM_COMM_F64,
	    VLM_COMM_MAX) < 0)
		dist_die(t, vlm_errmsg());
	if (bad && rc < 0)
		errx(1, "%s", vlm_errmsg());
	if (bad)
		exit(1);
}

/* The end of a distributed run: bytes moved per step (rank 0, with
 * VLM_COMM_STATS set), buffers freed, MPI finalised. */
void
train_dist_finish(struct train *t)
{
	struct train_dist *d = t->dist;
	const struct vlm_backend *be;

	if (!d)
		return;
	if (d->rank == 0 && getenv("VLM_COMM_STATS") && d->steps)
		fprintf(stderr, "vlm-train: %d ranks, rank 0 moved %.0f bytes "
		    "per step over %llu steps\n", d->P,
		    (double)(d->comm.bytes + d->dev.bytes - d->bytes0) /
		    d->steps,
		    (unsigned long long)d->steps);
	be = vlm_run_backend(t->run);
	for (int i = 0; i < 2; i++) {
		free(d->hu[i]);
		free(d->hdu[i]);
		be->free(d->u[i]);
		be->free(d->du[i]);
	}
	be->free(d->logits);
	be->free(d->dlogits);
	be->free(d->lse2);
	be->free(d->dtheta);
	free(d->hlogits);
	if (d->dev.ops) {
		vlm_comm_finalize(&d->dev);
		be->free(d->gdev);
	}
	vlm_comm_finalize(&d->comm);
	close(d->err_fd);
	free(d);
	t->dist = NULL;
}
