/*
 * backend.c - the two CPU backend tables: "cpu" (the fast kernels, the
 * plain ones where no fast version exists: kernels.h says which) and
 * "ref" (every op's plain oracle, for tests and debugging), their host
 * memory verbs, the lookup by name (VLM_BACKEND) and the check that a
 * table has the ops a caller needs; "cuda[:N]" loads libvlm-cuda.so
 * (kernels.h) the first time it is asked for.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels.h"

/* calloc: pages nobody touches (a frozen parameter's moments, buffers
 * a run never uses) cost no memory. */
static void *
host_alloc(size_t bytes)
{
	return calloc(1, bytes ? bytes : 1);
}

static void
host_free(void *p)
{
	free(p);
}

static void
host_copy(void *dst, const void *src, size_t bytes)
{
	if (bytes && dst != src)
		memcpy(dst, src, bytes);
}

static void
host_memset(void *dst, int c, size_t bytes)
{
	if (bytes)
		memset(dst, c, bytes);
}

static int
host_sync(void)
{
	return 0;
}

#define HOST_MEMORY \
	.alloc = host_alloc, .free = host_free, .upload = host_copy, \
	.download = host_copy, .memset = host_memset, .copy = host_copy, \
	.sync = host_sync

/* The ops that have a _ref only: the same function in both tables. */
#define REF_ONLY \
	.moe_route_bwd = vlm_moe_route_bwd_ref, \
	.aux_importance_fwd = vlm_aux_importance_fwd_ref, \
	.aux_importance_bwd = vlm_aux_importance_bwd_ref, \
	.aux_load_fwd = vlm_aux_load_fwd_ref, \
	.aux_load_bwd = vlm_aux_load_bwd_ref, \
	.aux_switch_fwd = vlm_aux_switch_fwd_ref, \
	.aux_switch_bwd = vlm_aux_switch_bwd_ref, \
	.aux_zloss_fwd = vlm_aux_zloss_fwd_ref, \
	.aux_zloss_bwd = vlm_aux_zloss_bwd_ref, \
	.aux_entropy_local_fwd = vlm_aux_entropy_local_fwd_ref, \
	.aux_entropy_local_bwd = vlm_aux_entropy_local_bwd_ref, \
	.aux_entropy_global_fwd = vlm_aux_entropy_global_fwd_ref, \
	.aux_entropy_global_bwd = vlm_aux_entropy_global_bwd_ref, \
	.patchify_fwd = vlm_patchify_fwd_ref, \
	.patchify_bwd = vlm_patchify_bwd_ref, \
	.embed_fwd = vlm_embed_fwd_ref, .embed_bwd = vlm_embed_bwd_ref, \
	.posembed_fwd = vlm_posembed_fwd_ref, \
	.posembed_bwd = vlm_posembed_bwd_ref, \
	.cls_prepend_fwd = vlm_cls_prepend_fwd_ref, \
	.cls_prepend_bwd = vlm_cls_prepend_bwd_ref, \
	.pool_token_fwd = vlm_pool_token_fwd_ref, \
	.pool_token_bwd = vlm_pool_token_bwd_ref, \
	.pool_mean_fwd = vlm_pool_mean_fwd_ref, \
	.pool_mean_bwd = vlm_pool_mean_bwd_ref, \
	.pool_map_fwd = vlm_pool_map_fwd_ref, \
	.pool_map_bwd = vlm_pool_map_bwd_ref

/* Every op with both versions, from suffix S (_ref or _cpu). */
#define BOTH(S) \
	.gemm = vlm_gemm##S, \
	.linear_fwd = vlm_linear_fwd##S, .linear_bwd = vlm_linear_bwd##S, \
	.layernorm_fwd = vlm_layernorm_fwd##S, \
	.layernorm_bwd = vlm_layernorm_bwd##S, \
	.gelu_fwd = vlm_gelu_fwd##S, .gelu_bwd = vlm_gelu_bwd##S, \
	.quickgelu_fwd = vlm_quickgelu_fwd##S, \
	.quickgelu_bwd = vlm_quickgelu_bwd##S, \
	.softmax_fwd = vlm_softmax_fwd##S, .softmax_bwd = vlm_softmax_bwd##S, \
	.attention_fwd = vlm_attention_fwd##S, \
	.attention_bwd = vlm_attention_bwd##S, \
	.xattention_fwd = vlm_xattention_fwd##S, \
	.xattention_bwd = vlm_xattention_bwd##S, \
	.l2norm_fwd = vlm_l2norm_fwd##S, .l2norm_bwd = vlm_l2norm_bwd##S, \
	.clip_loss_fwd = vlm_clip_loss_fwd##S, \
	.clip_loss_bwd = vlm_clip_loss_bwd##S, \
	.adamw_step = vlm_adamw_step##S, .grad_clip = vlm_grad_clip##S, \
	.router_fwd = vlm_router_fwd##S, .router_bwd = vlm_router_bwd##S, \
	.moe_route_fwd = vlm_moe_route_fwd##S, \
	.moe_dispatch_fwd = vlm_moe_dispatch_fwd##S, \
	.moe_dispatch_bwd = vlm_moe_dispatch_bwd##S, \
	.moe_combine_fwd = vlm_moe_combine_fwd##S, \
	.moe_combine_bwd = vlm_moe_combine_bwd##S, \
	.token_learner_fwd = vlm_token_learner_fwd##S, \
	.token_learner_bwd = vlm_token_learner_bwd##S, \
	.add = vlm_add##S, .scale = vlm_scale##S, .rows_gather = vlm_rows_gather##S, \
	.rows_scatter_add = vlm_rows_scatter_add##S, \
	.bf16_from_f32 = vlm_bf16_from_f32##S, \
	.linear_fwd_bf16 = vlm_linear_fwd_bf16##S

static const struct vlm_backend cpu = {
	.name = "cpu", HOST_MEMORY, BOTH(_cpu), REF_ONLY,
	.linear_packed_floats = vlm_linear_packed_floats,
	.linear_pack = vlm_linear_pack_cpu,
	.linear_fwd_packed = vlm_linear_fwd_packed_cpu
};

static const struct vlm_backend ref = {
	.name = "ref", HOST_MEMORY, BOTH(_ref), REF_ONLY
};

static const struct vlm_backend *const backends[] = { &cpu, &ref };

const struct vlm_backend *
vlm_backend_at(int i)
{
	return i >= 0 && (size_t)i < sizeof(backends) / sizeof(*backends) ?
	    backends[i] : NULL;
}

const struct vlm_backend *
vlm_backend_host(const struct vlm_backend *b)
{
	return b->device ? &cpu : b;
}

#ifndef VLM_CUDA_SO
#define VLM_CUDA_SO "libvlm-cuda.so"
#endif

/* libvlm-cuda.so, opened once; NULL with the reason in why. */
static void *cuda_so;
static char cuda_why[512];
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;

static void
cuda_load(void)
{
#ifdef VLM_CUDA
	const char *path = getenv("VLM_CUDA_LIB");

	if (!path || !*path)
		path = VLM_CUDA_SO;
	/* the driver first: without it, cudart and cuBLAS need not load */
	if (!dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
		snprintf(cuda_why, sizeof(cuda_why), "no CUDA driver (%s)",
		    dlerror());
		return;
	}
	if (!(cuda_so = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
		snprintf(cuda_why, sizeof(cuda_why), "cannot load '%s': %s",
		    path, dlerror());
#else
	snprintf(cuda_why, sizeof(cuda_why), "this build has no CUDA "
	    "(make CUDA=1 where nvcc is)");
#endif
}

/* The symbol name of libvlm-cuda.so, or NULL (reason in cuda_why). */
static void *
cuda_sym(const char *name)
{
	void *f;

	pthread_once(&cuda_once, cuda_load);
	if (!cuda_so)
		return NULL;
	if (!(f = dlsym(cuda_so, name)))
		snprintf(cuda_why, sizeof(cuda_why), "'%s' has no %s",
		    VLM_CUDA_SO, name);
	return f;
}

void *
vlm_cuda_sym(const char *name)
{
	void *f = cuda_sym(name);

	if (!f)
		vlm_error("%s", cuda_why);
	return f;
}

/* "cuda" under a launcher of several ranks: the local rank's device,
 * modulo the devices there are; else device 0. */
static long
local_device(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_LOCAL_RANK",
		"MPI_LOCALRANKID", "PMIX_LOCAL_RANK", "SLURM_LOCALID" };
	char why[512];
	int n;

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *s = getenv(vars[i]);
		if (s && atoi(s) > 0 && (n = vlm_cuda_devices(why,
		    sizeof(why))) > 0)
			return atoi(s) % n;
		if (s)
			return 0;
	}
	return 0;
}

int
vlm_cuda_devices(char *buf, int len)
{
	vlm_cuda_devices_fn *f = (vlm_cuda_devices_fn *)cuda_sym(
	    "vlm_cuda_so_devices");

	if (!f) {
		snprintf(buf, len, "%s", cuda_why);
		return 0;
	}
	return f(buf, len);
}

/* "cuda" or "cuda:N": that device's table, or NULL with vlm_error. */
static const struct vlm_backend *
cuda_get(const char *name)
{
	vlm_cuda_open_fn *f;
	const struct vlm_backend *b;
	char why[512], *end;
	long dev = local_device();

	if (name[4] == ':') {
		dev = strtol(name + 5, &end, 10);
		if (name[5] < '0' || name[5] > '9' || *end || dev > 1023) {
			vlm_error("backend '%s': want cuda or cuda:N, N a "
			    "device number", name);
			return NULL;
		}
	}
	if (!(f = (vlm_cuda_open_fn *)cuda_sym("vlm_cuda_so_open"))) {
		vlm_error("backend '%s': %s", name, cuda_why);
		return NULL;
	}
	if (!(b = f((int)dev, vlm_error, why, sizeof(why))))
		vlm_error("backend '%s': %s", name, why);
	return b;
}

const struct vlm_backend *
vlm_backend_get(const char *name)
{
	const struct vlm_backend *b;

	for (int i = 0; (b = vlm_backend_at(i)); i++)
		if (strcmp(b->name, name) == 0)
			return b;
	if (strncmp(name, "cuda", 4) == 0 && (!name[4] || name[4] == ':'))
		return cuda_get(name);
	vlm_error("unknown backend '%s' (there are cpu, ref and cuda[:N])",
	    name);
	return NULL;
}

const struct vlm_backend *
vlm_backend_default(void)
{
	const char *s = getenv("VLM_BACKEND");

	return vlm_backend_get(s && *s ? s : "cpu");
}

#define OP_NAME_(name) #name,
static const char *const op_names[] = { VLM_BACKEND_OPS(OP_NAME_) };
#define OP_OFF_(name) offsetof(struct vlm_backend, name),
static const size_t op_offs[] = { VLM_BACKEND_OPS(OP_OFF_) };

const char *
vlm_backend_op_name(enum vlm_op op)
{
	return op >= 0 && op < VLM_OP_COUNT ? op_names[op] : "(no such op)";
}

int
vlm_backend_has(const struct vlm_backend *b, enum vlm_op op)
{
	void (*fn)(void);

	if (op < 0 || op >= VLM_OP_COUNT)
		return 0;
	/* every entry is a function pointer; all have one size and NULL */
	memcpy(&fn, (const char *)b + op_offs[op], sizeof(fn));
	return fn != NULL;
}

int
vlm_backend_check(const struct vlm_backend *b, const enum vlm_op *ops, int n)
{
	for (int i = 0; i < n; i++)
		if (!vlm_backend_has(b, ops[i]))
			return vlm_error("backend '%s' has no op '%s'",
			    b->name, vlm_backend_op_name(ops[i]));
	return 0;
}
