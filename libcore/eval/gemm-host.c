/*
 * gemm-host.c - the products of the metrics and the linear probe, whose
 * arrays live on the host, through VLM_BACKEND's table: a backend of
 * host memory multiplies them where they are, any other through its
 * memory verbs (STYLE.md: device memory only through the backend).
 */
#include <stdlib.h>

#include "base/base.h"
#include "eval/eval-priv.h"

const struct vlm_backend *
vlm_eval_backend(void)
{
	static const enum vlm_op op = VLM_OP_gemm;
	const struct vlm_backend *be = vlm_backend_default();

	return be && vlm_backend_check(be, &op, 1) == 0 ? be : NULL;
}

/* A copy of n host floats x in be's memory (x NULL: zeros); NULL if
 * out of memory. */
static float *
upload(const struct vlm_backend *be, const float *x, size_t n)
{
	float *d = be->alloc(n * sizeof(float));

	if (d && x)
		be->upload(d, x, n * sizeof(float));
	return d;
}

int
vlm_eval_gemm(const struct vlm_backend *be, int ta, int tb, int M, int N,
    int K, float alpha, const float *A, int lda, const float *B, int ldb,
    float beta, float *C, int ldc)
{
	size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) *
	    ldb, nc = (size_t)M * ldc;
	float *a, *b, *c;
	int rc;

	if (!be->device) {
		be->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return be->sync();
	}
	a = upload(be, A, na);
	b = upload(be, B, nb);
	c = upload(be, beta != 0 ? C : NULL, nc);
	if (a && b && c) {
		be->gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
		if ((rc = be->sync()) == 0)
			be->download(C, c, nc * sizeof(float));
	} else {
		rc = vlm_error("backend '%s': out of memory for a %d x %d "
		    "product", be->name, M, N);
	}
	if (a)
		be->free(a);
	if (b)
		be->free(b);
	if (c)
		be->free(c);
	return rc;
}
