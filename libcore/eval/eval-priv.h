/*
 * eval-priv.h - what the metrics and the linear probe share; not part
 * of the public API.
 */
#ifndef VLM_EVAL_PRIV_H
#define VLM_EVAL_PRIV_H

#include "kernels.h"

/* VLM_BACKEND's table when it has a gemm, else NULL (vlm_error). */
const struct vlm_backend *vlm_eval_backend(void);
/*
 * C (M,N) = alpha op(A) op(B) + beta C of host arrays (kernels.h's gemm
 * arguments) on backend be: in place on a backend of host memory (cpu,
 * ref: the same bits as its gemm), else through copies uploaded and C
 * downloaded. -1 (vlm_error) out of memory or when the backend fails.
 */
int vlm_eval_gemm(const struct vlm_backend *be, int ta, int tb, int M,
    int N, int K, float alpha, const float *A, int lda, const float *B,
    int ldb, float beta, float *C, int ldc);

#endif
