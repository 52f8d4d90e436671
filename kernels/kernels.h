/*
 * kernels.h - the compute kernels, one argument list for every backend.
 *
 * Each op has vlm_<op>_<fwd|bwd>_ref (plain loops: the oracle) and a fast
 * vlm_<op>_<fwd|bwd>_cpu (OpenBLAS, threads); CUDA versions (_cuda) take
 * the same arguments with device pointers.
 *
 * Conventions:
 *  - raw float pointers plus dimensions; row-major, outermost first;
 *    shape letters: B batch, T tokens, C channels, H heads, E experts,
 *    K experts per token, P patches, V vocabulary, N rows, S routing group;
 *  - linear weights are stored as PyTorch does: w (OUT, IN), y = x w^T + b;
 *  - every backward ACCUMULATES (+=) into its gradient outputs (inputs and
 *    parameters alike); callers zero the buffers. This serves shared
 *    weights (one-tower models), residual branches and accumulation.
 */
#ifndef VLM_KERNELS_H
#define VLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* @@KERNELS@@ (helpers add their sections below this line) */

#endif /* VLM_KERNELS_H */
