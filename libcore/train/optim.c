/*
 * optim.c - AdamW over the model's parameter slab with OpenCLIP's
 * settings: weight decay only where vlm_param.decay says so (not for
 * 1-D tensors, LayerNorms, biases, logit_scale), optional global-norm
 * clipping, and logit_scale clamped to [0, ln 100] after each step.
 * The moments are the backend's memory (VLM_BACKEND), the step its ops.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "train/train.h"

void
vlm_optim_defaults(struct vlm_optim *o)
{
	memset(o, 0, sizeof(*o));
	o->lr = 5e-4f;      /* OpenCLIP's default learning rate */
	o->beta1 = 0.9f;
	o->beta2 = 0.98f;   /* OpenCLIP ViT defaults */
	o->eps = 1e-6f;
	o->wd = 0.2f;
}

int
vlm_optim_init(struct vlm_optim *o, const struct vlm_model *m,
    const uint8_t *frozen)
{
	return vlm_optim_init_shard(o, m, frozen, 0, 1);
}

int
vlm_optim_init_shard(struct vlm_optim *o, const struct vlm_model *m,
    const uint8_t *frozen, int q, int P)
{
	static const enum vlm_op ops[] = { VLM_OP_adamw_step,
		VLM_OP_grad_clip };
	size_t n;

	o->step = 0;
	o->m = o->v = NULL;
	/* the weights are host memory: a device backend's runs move them */
	if (!(o->be = vlm_backend_default()) ||
	    !(o->be = vlm_backend_host(o->be)) ||
	    vlm_backend_check(o->be, ops, 2) < 0 ||
	    vlm_pack_init_shard(&o->pack, m, frozen, q, P) < 0)
		return -1;
	n = (o->pack.n ? o->pack.n : 1) * sizeof(float);
	o->m = o->be->alloc(n);
	o->v = o->be->alloc(n);
	if (!o->m || !o->v) {
		vlm_optim_release(o);
		return vlm_error("out of memory for optimizer state");
	}
	return 0;
}

void
vlm_optim_release(struct vlm_optim *o)
{
	if (o->be) {
		if (o->m)
			o->be->free(o->m);
		if (o->v)
			o->be->free(o->v);
	}
	o->m = o->v = NULL;
	vlm_pack_release(&o->pack);
}

float
vlm_optim_step(struct vlm_optim *o, struct vlm_model *m, float *grad,
    float lr)
{
	float norm = 0;
	int clamp = 0;

	assert(o->be && o->m && o->v); /* vlm_optim_init first */
	assert(o->pack.nparams == m->nparams);
	if (o->clip > 0 && !o->pack.lo) /* a sharded one: the caller's */
		norm = o->be->grad_clip(grad, o->pack.n, o->clip);
	o->step++;
	for (int i = 0; i < m->nparams; i++) {
		const struct vlm_param *p = &m->params[i];
		int64_t k = o->pack.off[i], lo = 0, n = p->n;
		if (k < 0)
			continue; /* frozen */
		if (o->pack.lo) /* this rank's part */
			lo = o->pack.lo[i], n = o->pack.len[i];
		clamp |= p->off == m->logit_scale;
		o->be->adamw_step(m->w + p->off + lo, o->m + k, o->v + k,
		    grad + k, n, o->step, lr, o->beta1, o->beta2, o->eps,
		    p->decay ? o->wd : 0);
	}
	if (clamp) /* a frozen temperature stays as it was */
		m->w[m->logit_scale] = fminf(fmaxf(m->w[m->logit_scale], 0),
		    logf(100));
	return norm;
}

void
vlm_optim_sumsq(const struct vlm_optim *o, const float *grad, double *whole,
    double *experts)
{
	/* the clip kernel with no cap: the norm, grad left as it is */
	double w = o->be->grad_clip((float *)grad, o->pack.nrep,
	    0);
	double e = o->be->grad_clip((float *)grad + o->pack.nrep,
	    o->pack.n -
	    o->pack.nrep, 0);

	*whole = w * w, *experts = e * e;
}

float
vlm_optim_clip_norm(const struct vlm_optim *o, float *grad, double norm)
{
	float coef = (float)(o->clip / (norm + 1e-6)); /* as the kernel */

	for (int64_t i = 0; o->clip > 0 && coef < 1.0f && i < o->pack.n; i++)
		grad[i] *= coef;
	return (float)norm;
}
