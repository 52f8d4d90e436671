/*
 * pack.c - packed slabs: the gradients and optimizer moments of only
 * the parameters that have them (the trainable ones), one after the
 * other in parameter order, so that frozen weights cost no memory.
 */
#include <stdlib.h>

#include "model/model.h"

int
vlm_pack_init(struct vlm_pack *p, const struct vlm_model *m,
    const uint8_t *skip)
{
	p->nparams = m->nparams;
	p->n = 0;
	p->q = 0, p->P = 1;
	p->lo = p->len = NULL;
	if (!(p->off = malloc((m->nparams ? m->nparams : 1) *
	    sizeof(*p->off))))
		return vlm_error("out of memory");
	for (int i = 0; i < m->nparams; i++) {
		p->off[i] = skip && skip[i] ? -1 : p->n;
		if (p->off[i] >= 0)
			p->n += m->params[i].n;
	}
	p->nrep = p->n;
	return 0;
}

void
vlm_pack_release(struct vlm_pack *p)
{
	free(p->off);
	free(p->lo);
	p->off = NULL;
	p->lo = p->len = NULL;
	p->nparams = 0;
	p->n = 0;
}

int64_t
vlm_pack_at(const struct vlm_pack *p, const struct vlm_model *m, int i)
{
	return p ? p->off[i] : m->params[i].off;
}
