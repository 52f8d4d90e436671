/*
 * kernels.h - the compute kernels, one argument list for every backend.
 *
 * Each op has vlm_<op>_<fwd|bwd>_ref (plain loops: the oracle) and a fast
 * vlm_<op>_<fwd|bwd>_cpu (OpenBLAS, threads); CUDA versions (_cuda) take
 * the same arguments with device pointers. The library calls none of
 * them by name: it runs ops through a struct vlm_backend (at the end of
 * this file), a table of them with its memory verbs.
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

/* ---- dense transformer (kernels/cpu/matmul.c, layernorm.c, act.c, ------
 *      softmax.c, attention.c, l2norm.c, clip-loss.c, adamw.c) ---------- */

/*
 * A pre-LN block, forward, on x (N,C) with N = B*T tokens (F = MLP width):
 *   vlm_layernorm_fwd    ln1 = LN(x)
 *   vlm_linear_fwd       qkv (N,3C) = ln1 in_proj_weight^T + in_proj_bias
 *   vlm_attention_fwd    a (N,C)
 *   vlm_linear_fwd       o = a out_proj^T + b; x1 = x + o (caller)
 *   vlm_layernorm_fwd    ln2 = LN(x1)
 *   vlm_linear_fwd       h (N,F) = ln2 c_fc^T + b
 *   vlm_gelu_fwd         (or vlm_quickgelu_fwd) g = act(h)
 *   vlm_linear_fwd       m = g c_proj^T + b; y = x1 + m (caller)
 * and the backward in reverse order, every gradient accumulated (+=).
 * Gradient outputs named NULL are not computed (frozen weights). Flat
 * element counts are int64_t, shape dimensions int. Each op has _ref
 * (plain loops, single thread) and _cpu (OpenBLAS and the thread pool,
 * bit-identical for every thread count; within ~1e-5 relative of _ref).
 */

/*
 * C = alpha op(A) op(B) + beta C, row-major like cblas_sgemm (op(X) = X^T
 * when ta/tb; A is (M,K), or (K,M) when ta; B is (K,N), or (N,K) when tb;
 * lda, ldb, ldc the row strides). The _cpu version cuts C into tiles
 * fixed by the shape and runs single-threaded SGEMMs on the thread pool:
 * use it rather than cblas_sgemm, whose own threading is off (base/base.h).
 */
void vlm_gemm_ref(int ta, int tb, int M, int N, int K, float alpha,
    const float *A /* (M,K) */, int lda, const float *B /* (K,N) */, int ldb,
    float beta, float *C /* (M,N) */, int ldc);
void vlm_gemm_cpu(int ta, int tb, int M, int N, int K, float alpha,
    const float *A, int lda, const float *B, int ldb, float beta, float *C,
    int ldc);

/* y = x w^T + b; b may be NULL (no bias). Overwrites y. */
void vlm_linear_fwd_ref(float *y /* (N,OUT) */, const float *x /* (N,IN) */,
    const float *w /* (OUT,IN) */, const float *b /* (OUT) or NULL */,
    int N, int IN, int OUT);
void vlm_linear_fwd_cpu(float *y, const float *x, const float *w,
    const float *b, int N, int IN, int OUT);
/* dx += dy w; dw += dy^T x; db += sum over rows of dy. */
void vlm_linear_bwd_ref(float *dx /* (N,IN) or NULL */,
    float *dw /* (OUT,IN) or NULL */, float *db /* (OUT) or NULL */,
    const float *dy /* (N,OUT) */, const float *x /* (N,IN) */,
    const float *w /* (OUT,IN) */, int N, int IN, int OUT);
void vlm_linear_bwd_cpu(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, int N, int IN, int OUT);
/*
 * The linear forward on weights packed once (inference: weights that do
 * not change). vlm_linear_packed_floats: the floats w (OUT,IN) takes
 * packed in the panels the CPU GEMM reads, 0 where that GEMM does not
 * run (no AVX-512, VLM_LINEAR_BLAS=1); vlm_linear_pack_cpu fills them
 * (64-byte aligned); vlm_linear_fwd_packed_cpu gives the same bits as
 * vlm_linear_fwd_cpu on the unpacked w, without packing w per call.
 */
size_t vlm_linear_packed_floats(int IN, int OUT);
void vlm_linear_pack_cpu(float *wk, const float *w /* (OUT,IN) */, int IN,
    int OUT);
void vlm_linear_fwd_packed_cpu(float *y /* (N,OUT) */,
    const float *x /* (N,IN) */, const float *wk, const float *b, int N,
    int IN, int OUT);

/*
 * LayerNorm over the last dim: y = (x - mean) rstd w + b, biased
 * variance, rstd = 1/sqrt(var + 1e-5). mean and rstd are saved for the
 * backward (NULL when not training).
 */
void vlm_layernorm_fwd_ref(float *y /* (N,C) */, float *mean /* (N) */,
    float *rstd /* (N) */, const float *x /* (N,C) */,
    const float *w /* (C) */, const float *b /* (C) */, int N, int C);
void vlm_layernorm_fwd_cpu(float *y, float *mean, float *rstd,
    const float *x, const float *w, const float *b, int N, int C);
void vlm_layernorm_bwd_ref(float *dx /* (N,C) or NULL */,
    float *dw /* (C) or NULL */, float *db /* (C) or NULL */,
    const float *dy /* (N,C) */, const float *x /* (N,C) */,
    const float *w /* (C) */, const float *mean /* (N) */,
    const float *rstd /* (N) */, int N, int C);
void vlm_layernorm_bwd_cpu(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, const float *mean, const float *rstd,
    int N, int C);

/*
 * Activations, elementwise over n values (y may be x): GELU with the
 * exact erf, 0.5 x (1 + erf(x / sqrt 2)), and QuickGELU x sigmoid(1.702 x)
 * (OpenAI CLIP). The backward takes the input x: dx += dy act'(x).
 */
void vlm_gelu_fwd_ref(float *y /* (n) */, const float *x /* (n) */,
    int64_t n);
void vlm_gelu_fwd_cpu(float *y, const float *x, int64_t n);
void vlm_gelu_bwd_ref(float *dx /* (n) */, const float *dy /* (n) */,
    const float *x /* (n) */, int64_t n);
void vlm_gelu_bwd_cpu(float *dx, const float *dy, const float *x, int64_t n);
void vlm_quickgelu_fwd_ref(float *y, const float *x, int64_t n);
void vlm_quickgelu_fwd_cpu(float *y, const float *x, int64_t n);
void vlm_quickgelu_bwd_ref(float *dx, const float *dy, const float *x,
    int64_t n);
void vlm_quickgelu_bwd_cpu(float *dx, const float *dy, const float *x,
    int64_t n);

/* Softmax of each row (max subtracted); backward from the saved y:
 * dx += y (dy - sum(dy y)). y may be x. */
void vlm_softmax_fwd_ref(float *y /* (N,C) */, const float *x /* (N,C) */,
    int N, int C);
void vlm_softmax_fwd_cpu(float *y, const float *x, int N, int C);
void vlm_softmax_bwd_ref(float *dx /* (N,C) */, const float *dy /* (N,C) */,
    const float *y /* (N,C) */, int N, int C);
void vlm_softmax_bwd_cpu(float *dx, const float *dy, const float *y, int N,
    int C);

/*
 * Multi-head self-attention on the fused projection qkv = [q | k | v]
 * along the last dim (OpenCLIP in_proj order); head h uses columns
 * h*C/H .. (h+1)*C/H-1 of each part. For each head:
 *   att = softmax(q k^T / sqrt(C/H) + mask) (fp32), out = att v,
 * the heads side by side in out (before the out-projection). Masks:
 * causal (key j > query i) and, with len, padding (key j >= len[b],
 * 1 <= len[b] <= T). Masked probabilities are exactly 0 in att, which the
 * backward reads instead of the masks.
 */
void vlm_attention_fwd_ref(float *out /* (B,T,C) */,
    float *att /* (B,H,T,T) */, const float *qkv /* (B,T,3C) */,
    const int32_t *len /* (B) or NULL */, int causal, int B, int T, int C,
    int H);
void vlm_attention_fwd_cpu(float *out, float *att, const float *qkv,
    const int32_t *len, int causal, int B, int T, int C, int H);
/* dqkv += the gradient through q, k and v; scratch (B,H,T,T) is the
 * caller's (the op allocates nothing), its contents undefined after. */
void vlm_attention_bwd_ref(float *dqkv /* (B,T,3C) */,
    float *scratch /* (B,H,T,T) */, const float *dout /* (B,T,C) */,
    const float *qkv /* (B,T,3C) */, const float *att /* (B,H,T,T) */,
    int B, int T, int C, int H);
void vlm_attention_bwd_cpu(float *dqkv, float *scratch, const float *dout,
    const float *qkv, const float *att, int B, int T, int C, int H);

/*
 * Attention of Tq query rows over Tk key rows, q, k, v separate with row
 * strides lq, lk, lv (columns h*C/H.. of each are head h): per head
 * P = softmax(q k^T / sqrt(C/H) + mask), out = P v, heads side by side.
 * mask (Tq,Tk) is additive (-inf hides) or NULL; causal hides key j > i.
 * Each row must keep a key. The backward adds dq, dk, dv (same strides)
 * from dout and the saved P (kernels/cpu/xattention.c; CoCa's pooler,
 * cross-attention and text class-token mask).
 */
void vlm_xattention_fwd_ref(float *out /* (Tq,C) */,
    float *P /* (H,Tq,Tk) */, const float *q /* (Tq,lq) */, int lq,
    const float *k /* (Tk,lk) */, int lk, const float *v /* (Tk,lv) */,
    int lv, const float *mask /* (Tq,Tk) or NULL */, int causal, int Tq,
    int Tk, int C, int H);
void vlm_xattention_bwd_ref(float *dq, float *dk, float *dv,
    const float *dout /* (Tq,C) */, const float *P /* (H,Tq,Tk) */,
    const float *q, const float *k, const float *v, int lq, int lk, int lv,
    int Tq, int Tk, int C, int H);
/* The same by per-head strided GEMMs (OpenBLAS). */
void vlm_xattention_fwd_cpu(float *out, float *P, const float *q, int lq,
    const float *k, int lk, const float *v, int lv, const float *mask,
    int causal, int Tq, int Tk, int C, int H);
void vlm_xattention_bwd_cpu(float *dq, float *dk, float *dv,
    const float *dout, const float *P, const float *q, const float *k,
    const float *v, int lq, int lk, int lv, int Tq, int Tk, int C, int H);

/*
 * L2 normalisation of rows, y = x / max(|x|, 1e-12) (F.normalize); norm
 * (the clamped |x|) is saved for the backward (may be NULL in the
 * forward). Backward: dx += (dy - y (y . dy)) / norm.
 */
void vlm_l2norm_fwd_ref(float *y /* (N,C) */, float *norm /* (N) */,
    const float *x /* (N,C) */, int N, int C);
void vlm_l2norm_fwd_cpu(float *y, float *norm, const float *x, int N, int C);
void vlm_l2norm_bwd_ref(float *dx /* (N,C) */, const float *dy /* (N,C) */,
    const float *y /* (N,C) */, const float *norm /* (N) */, int N, int C);
void vlm_l2norm_bwd_cpu(float *dx, const float *dy, const float *y,
    const float *norm, int N, int C);

/*
 * CLIP contrastive loss (OpenCLIP ClipLoss on one process): with u the
 * image and v the text features, L2-normalised by the caller,
 *   logits = exp(theta) u v^T,  labels = the diagonal,
 *   loss = (mean_i CE(logits[i,:], i) + mean_j CE(logits[:,j], j)) / 2.
 * The forward returns the loss and saves logits and lse: the log-sum-exp
 * of each row, then of each column. The backward adds dloss (the upstream
 * gradient, 1 for a plain loss) times dL/du, dL/dv, dL/dtheta; dlogits is
 * its scratch (on return dloss dL/dlogits). du, dv, dtheta may be NULL.
 */
float vlm_clip_loss_fwd_ref(float *logits /* (B,B) */, float *lse /* (2,B) */,
    const float *u /* (B,C) */, const float *v /* (B,C) */, float theta,
    int B, int C);
float vlm_clip_loss_fwd_cpu(float *logits, float *lse, const float *u,
    const float *v, float theta, int B, int C);
void vlm_clip_loss_bwd_ref(float *du /* (B,C) */, float *dv /* (B,C) */,
    float *dtheta /* (1) */, float *dlogits /* (B,B) */,
    const float *logits /* (B,B) */, const float *lse /* (2,B) */,
    const float *u, const float *v, float theta, float dloss, int B, int C);
void vlm_clip_loss_bwd_cpu(float *du, float *dv, float *dtheta,
    float *dlogits, const float *logits, const float *lse, const float *u,
    const float *v, float theta, float dloss, int B, int C);

/*
 * One AdamW step over n parameters (torch.optim.AdamW, no amsgrad), t the
 * step number counting from 1:
 *   p *= 1 - lr wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps).
 * wd = 0 for parameters without decay (biases, LayerNorm, 1-D, theta).
 */
void vlm_adamw_step_ref(float *p /* (n) */, float *m /* (n) */,
    float *v /* (n) */, const float *g /* (n) */, int64_t n, int64_t t,
    float lr, float beta1, float beta2, float eps, float wd);
void vlm_adamw_step_cpu(float *p, float *m, float *v, const float *g,
    int64_t n, int64_t t, float lr, float beta1, float beta2, float eps,
    float wd);
/*
 * Global-norm clipping (clip_grad_norm_): returns |g| (summed in double)
 * and scales g by max_norm / (|g| + 1e-6) when that is below 1;
 * max_norm <= 0 only measures.
 */
float vlm_grad_clip_ref(float *g /* (n) */, int64_t n, float max_norm);
float vlm_grad_clip_cpu(float *g, int64_t n, float max_norm);

/* ---- sparse MoE routing (kernels/cpu/router.c, moe.c, aux-loss.c) ----- */

/*
 * One MoE block on a routing group of S tokens xs (S,D) (ALGORITHMS.md
 * sections 2-3). Forward:
 *   vlm_router_fwd       z = xs W_r^T, p = softmax(z), g = softmax(z + eps)
 *   vlm_moe_capacity     C (slots per expert)
 *   vlm_moe_route_fwd    top-K of g, BPR order, capacity -> idx, val,
 *                        keep, slot, w, fill
 *   vlm_moe_dispatch_fwd xs rows into the expert buffer buf (E,C,D)
 *   (caller)             expert e's MLP on rows 0..fill[e]-1 of buf[e]
 *                        (the dense kernels) into eout (E,C,D)
 *   vlm_moe_combine_fwd  y[s] = sum_j w[s,j] eout[idx[s,j], slot[s,j]]
 *   vlm_aux_*_fwd        the auxiliary losses (each returns its value)
 * Backward (dz (S,E) zeroed by the caller, like every gradient):
 *   vlm_moe_combine_bwd  dy -> deout (E,C,D), dw (S,K)
 *   (caller)             experts' backward, deout -> dbuf
 *   vlm_moe_dispatch_bwd dbuf -> dxs
 *   vlm_moe_route_bwd    dw -> dz (through w and g; top-K, keep, noise
 *                        are constants)
 *   vlm_aux_*_bwd        weight * dL/dz -> dz (through their softmax)
 *   vlm_router_bwd       dz -> dxs, dW_r
 * An assignment (s,j), j-th choice of token s, is stored as idx[s,j]
 * (expert) and slot[s,j] (row in that expert's buffer, -1 if dropped);
 * no S x E x C one-hot tensor exists. Ops without a _cpu version are
 * O(S E) or one pass over memory: their _ref is the CPU version.
 */

/* Upper bound on E for the aux losses' stack buffers. */
#define VLM_MAX_EXPERTS 1024

/*
 * Router forward. eps (S,E) is the train-time noise, drawn by the caller
 * as N(0, (noise/E)^2) (e.g. vlm_rng_normal() * noise / E), or NULL at
 * eval time (then g = p).
 */
void vlm_router_fwd_ref(float *z /* (S,E) */, float *p /* (S,E) */,
    float *g /* (S,E) */, const float *x /* (S,D) */,
    const float *wr /* (E,D) */, const float *eps /* (S,E) or NULL */,
    int S, int D, int E);
void vlm_router_fwd_cpu(float *z, float *p, float *g, const float *x,
    const float *wr, const float *eps, int S, int D, int E);
/* dx += dz W_r; dwr += dz^T x. dx or dwr may be NULL (not wanted). */
void vlm_router_bwd_ref(float *dx /* (S,D) */, float *dwr /* (E,D) */,
    const float *dz /* (S,E) */, const float *x /* (S,D) */,
    const float *wr /* (E,D) */, int S, int D, int E);
void vlm_router_bwd_cpu(float *dx, float *dwr, const float *dz,
    const float *x, const float *wr, int S, int D, int E);

/*
 * Capacity C = max(cmin, round(K cf S / E)) (round half to even, as
 * Python); cf <= 0 means no dropping: C = S.
 */
int vlm_moe_capacity(int S, int E, int K, float cf, int cmin);

/*
 * Routing (1 <= K <= E). For each token the top-K gates, descending,
 * ties to the lower expert: idx, val. Tokens are visited in `order`:
 * token order, or with bpr by top-1 gate descending (stable); all first
 * choices are placed before any second choice; an assignment is kept
 * while its expert has fewer than C rows: keep = 1, slot = the row;
 * else keep = 0, slot = -1. fill[e] = rows used in expert e (<= C; the
 * kept slots are exactly 0..fill[e]-1). w = keep * val, divided by
 * sum_j val[s,j] (all K, before dropping) when gate_norm is 1
 * (VLM_GATE_TOPK; 0 is VLM_GATE_NONE). order (S) is written: the token
 * visiting order (scratch for the caller, useful for statistics).
 */
void vlm_moe_route_fwd_ref(int32_t *idx /* (S,K) */, float *val /* (S,K) */,
    uint8_t *keep /* (S,K) */, int32_t *slot /* (S,K) */,
    float *w /* (S,K) */, int32_t *fill /* (E) */, int32_t *order /* (S) */,
    const float *g /* (S,E) */, int S, int E, int K, int C, int bpr,
    int gate_norm);
void vlm_moe_route_fwd_cpu(int32_t *idx, float *val, uint8_t *keep,
    int32_t *slot, float *w, int32_t *fill, int32_t *order, const float *g,
    int S, int E, int K, int C, int bpr, int gate_norm);
/*
 * The router's task-loss gradient: dz += d(w)/d(z)^T dw, through the
 * topk normalisation (if gate_norm) and the softmax that made g.
 */
void vlm_moe_route_bwd_ref(float *dz /* (S,E) */, const float *dw /* (S,K) */,
    const float *g /* (S,E) */, const int32_t *idx /* (S,K) */,
    const uint8_t *keep /* (S,K) */, int S, int E, int K, int gate_norm);

/* buf[idx[s,j], slot[s,j]] = x[s] for kept assignments; other rows kept. */
void vlm_moe_dispatch_fwd_ref(float *buf /* (E,C,D) */,
    const float *x /* (S,D) */, const int32_t *idx /* (S,K) */,
    const int32_t *slot /* (S,K) */, int S, int D, int E, int K, int C);
void vlm_moe_dispatch_fwd_cpu(float *buf, const float *x, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C);
/* dx[s] += dbuf[idx[s,j], slot[s,j]] for kept assignments. */
void vlm_moe_dispatch_bwd_ref(float *dx /* (S,D) */,
    const float *dbuf /* (E,C,D) */, const int32_t *idx,
    const int32_t *slot, int S, int D, int E, int K, int C);
void vlm_moe_dispatch_bwd_cpu(float *dx, const float *dbuf,
    const int32_t *idx, const int32_t *slot, int S, int D, int E, int K,
    int C);
/* y[s] = sum_j w[s,j] out[idx[s,j], slot[s,j]] (overwrites y; a token
 * with every choice dropped gets 0). */
void vlm_moe_combine_fwd_ref(float *y /* (S,D) */,
    const float *out /* (E,C,D) */, const int32_t *idx /* (S,K) */,
    const int32_t *slot /* (S,K) */, const float *w /* (S,K) */, int S,
    int D, int E, int K, int C);
void vlm_moe_combine_fwd_cpu(float *y, const float *out, const int32_t *idx,
    const int32_t *slot, const float *w, int S, int D, int E, int K, int C);
/* dout[idx,slot] += w dy[s]; dw[s,j] += dy[s] . out[idx,slot] (either
 * output may be NULL). */
void vlm_moe_combine_bwd_ref(float *dout /* (E,C,D) */, float *dw /* (S,K) */,
    const float *dy /* (S,D) */, const float *out /* (E,C,D) */,
    const int32_t *idx, const int32_t *slot, const float *w, int S, int D,
    int E, int K, int C);
void vlm_moe_combine_bwd_cpu(float *dout, float *dw, const float *dy,
    const float *out, const int32_t *idx, const int32_t *slot,
    const float *w, int S, int D, int E, int K, int C);

/*
 * Auxiliary losses of one group. Each _fwd returns the loss; each _bwd
 * does dz (S,E) += dloss * dL/dz, dloss being the upstream weight (e.g.
 * 0.005, or 0.04 / number of active LIMoE terms).
 *  importance  CV^2 of Imp_e = sum_s p[s,e] (population std); p is the
 *              clean softmax(z) of vlm_router_fwd.
 *  load        CV^2 of Load_e = mean_s Phi((z[s,e] - eta_s) / sigma),
 *              eta_s = K-th largest z[s,:] + eps[s,:], sigma = noise/E
 *              (> 0: only with noise); eta_s moves with z at its expert.
 *  switch      E sum_e f_e P_e, f_e = share of tokens with idx[s,0] = e
 *              (a constant), P_e = mean_s g[s,e]; g the gates.
 *  zloss       mean_s (logsumexp_e z[s,e])^2.
 *  entropy_local   mean over tokens with mod[s] == m of H(softmax(z[s])).
 *  entropy_global  max(0, tau - H(pbar)), pbar = mean of softmax(z[s])
 *              over those tokens, H(q) = -sum q log(q + 1e-8);
 *              tau = vlm_aux_entropy_tau(S_m, E).
 * mod (S) is the modality per token (0 image, 1 text); NULL counts every
 * token as modality m. A modality with no token in the group gives 0.
 */
float vlm_aux_importance_fwd_ref(const float *p /* (S,E) */, int S, int E);
void vlm_aux_importance_bwd_ref(float *dz /* (S,E) */, const float *p,
    float dloss, int S, int E);
float vlm_aux_load_fwd_ref(const float *z /* (S,E) */,
    const float *eps /* (S,E) */, float sigma, int S, int E, int K);
void vlm_aux_load_bwd_ref(float *dz, const float *z, const float *eps,
    float sigma, float dloss, int S, int E, int K);
float vlm_aux_switch_fwd_ref(const float *g /* (S,E) */,
    const int32_t *idx /* (S,K) */, int S, int E, int K);
void vlm_aux_switch_bwd_ref(float *dz, const float *g, const int32_t *idx,
    float dloss, int S, int E, int K);
float vlm_aux_zloss_fwd_ref(const float *z /* (S,E) */, int S, int E);
void vlm_aux_zloss_bwd_ref(float *dz, const float *z, float dloss, int S,
    int E);
float vlm_aux_entropy_local_fwd_ref(const float *z /* (S,E) */,
    const uint8_t *mod /* (S) or NULL */, int m, int S, int E);
void vlm_aux_entropy_local_bwd_ref(float *dz, const float *z,
    const uint8_t *mod, int m, float dloss, int S, int E);
float vlm_aux_entropy_global_fwd_ref(const float *z /* (S,E) */,
    const uint8_t *mod /* (S) or NULL */, int m, float tau, int S, int E);
void vlm_aux_entropy_global_bwd_ref(float *dz, const float *z,
    const uint8_t *mod, int m, float tau, float dloss, int S, int E);
/* log(min(S_m, E)), e.g. S_m = 20 for images, 9 for text. */
float vlm_aux_entropy_tau(float sm, int E);

/* ---- inputs and pooling (kernels/cpu/patch.c, embed.c, pool.c) -------- */

/*
 * Patchify: out[b, py*(W/p)+px, (c*p+i)*p+j] = img[b, c, py*p+i, px*p+j],
 * P = (H/p)(W/p) patches in row-major order, each row in (c, py, px)
 * order, so OpenCLIP's conv1.weight (D,ch,p,p) read as (D, ch*p*p) is the
 * weight of vlm_linear (no bias). H and W must be multiples of p.
 */
void vlm_patchify_fwd_ref(float *out /* (B,P,ch*p*p) */,
    const float *img /* (B,ch,H,W) */, int B, int ch, int H, int W, int p);
void vlm_patchify_bwd_ref(float *dimg /* (B,ch,H,W) */,
    const float *dout /* (B,P,ch*p*p) */, int B, int ch, int H, int W,
    int p);

/* Token embedding: out[n] = table[ids[n]]; backward scatter-adds. */
void vlm_embed_fwd_ref(float *out /* (N,C) */, const int32_t *ids /* (N) */,
    const float *table /* (V,C) */, int N, int V, int C);
void vlm_embed_bwd_ref(float *dtable /* (V,C) */, const float *dout /* (N,C) */,
    const int32_t *ids /* (N) */, int N, int V, int C);
/* Position embedding: out = x + pos (out may be x). Backward: dx += dout
 * (dx NULL skips it, e.g. when dx is dout), dpos += sum over b. */
void vlm_posembed_fwd_ref(float *out /* (B,T,C) */,
    const float *x /* (B,T,C) */, const float *pos /* (T,C) */, int B,
    int T, int C);
void vlm_posembed_bwd_ref(float *dx /* (B,T,C) or NULL */,
    float *dpos /* (T,C) */, const float *dout /* (B,T,C) */, int B, int T,
    int C);
/* Class token first: out[b,0] = cls, out[b,1+t] = x[b,t]. */
void vlm_cls_prepend_fwd_ref(float *out /* (B,P+1,C) */,
    const float *x /* (B,P,C) */, const float *cls /* (C) */, int B, int P,
    int C);
void vlm_cls_prepend_bwd_ref(float *dx /* (B,P,C) or NULL */,
    float *dcls /* (C) or NULL */, const float *dout /* (B,P+1,C) */, int B,
    int P, int C);

/*
 * One-token pooling: out[b] = x[b, pos[b]]; pos NULL takes row 0 (the
 * class token); for CLIP text pos comes from vlm_eot_index.
 */
void vlm_pool_token_fwd_ref(float *out /* (B,C) */,
    const float *x /* (B,T,C) */, const int32_t *pos /* (B) or NULL */,
    int B, int T, int C);
void vlm_pool_token_bwd_ref(float *dx /* (B,T,C) */,
    const float *dout /* (B,C) */, const int32_t *pos, int B, int T, int C);
/* pos[b] = first position of the largest id in ids[b] (CLIP's EOT). */
void vlm_eot_index(int32_t *pos /* (B) */, const int32_t *ids /* (B,T) */,
    int B, int T);
/* Global average pooling over the first len[b] tokens (len NULL: T). */
void vlm_pool_mean_fwd_ref(float *out /* (B,C) */,
    const float *x /* (B,T,C) */, const int32_t *len /* (B) or NULL */,
    int B, int T, int C);
void vlm_pool_mean_bwd_ref(float *dx /* (B,T,C) */,
    const float *dout /* (B,C) */, const int32_t *len, int B, int T, int C);
/*
 * Multi-head attention pooling (MAP), the attention only: the caller
 * projects the learned probe to q (C) (q = W_q probe + b_q, the same for
 * every example) and the tokens to k, v (B,T,C) with vlm_linear, and
 * afterwards applies the out-projection (and, as big_vision's MAPHead,
 * LN + MLP residual) with the dense kernels. For head h of H (C/H wide):
 * att[b,h,t] = softmax over t < len[b] of q_h . k[b,t,h] / sqrt(C/H)
 * (0 for t >= len[b]); out[b,h] = sum_t att[b,h,t] v[b,t,h]. att is saved
 * for the backward. Backward: dq (C) sums over the batch; dq, dk, dv may
 * be NULL.
 */
void vlm_pool_map_fwd_ref(float *out /* (B,C) */, float *att /* (B,H,T) */,
    const float *q /* (C) */, const float *k /* (B,T,C) */,
    const float *v /* (B,T,C) */, const int32_t *len /* (B) or NULL */,
    int B, int T, int C, int H);
void vlm_pool_map_bwd_ref(float *dq /* (C) */, float *dk /* (B,T,C) */,
    float *dv /* (B,T,C) */, const float *dout /* (B,C) */,
    const float *att /* (B,H,T) */, const float *q, const float *k,
    const float *v, const int32_t *len, int B, int T, int C, int H);

/* ---- TokenLearner (kernels/cpu/token-learner.c) ---------------------- */

/*
 * JARed token reduction, per example of N tokens x (N,D):
 * xn = LN(x) (eps 1e-5); h = GELU(xn W1^T + b1) (exact erf, Hd wide,
 * e.g. 64); a = h W2^T + b2 (N,M); a = softmax over the N tokens for each
 * m; out[m] = sum_n a[n,m] x[n]. act holds what the backward needs
 * (vlm_token_learner_act_floats() floats); the backward also uses it as
 * scratch, so run one backward per forward.
 */
size_t vlm_token_learner_act_floats(int B, int N, int D, int Hd, int M);
void vlm_token_learner_fwd_ref(float *out /* (B,M,D) */, float *act,
    const float *x /* (B,N,D) */, const float *ln_w /* (D) */,
    const float *ln_b /* (D) */, const float *w1 /* (Hd,D) */,
    const float *b1 /* (Hd) */, const float *w2 /* (M,Hd) */,
    const float *b2 /* (M) */, int B, int N, int D, int Hd, int M);
void vlm_token_learner_fwd_cpu(float *out, float *act, const float *x,
    const float *ln_w, const float *ln_b, const float *w1, const float *b1,
    const float *w2, const float *b2, int B, int N, int D, int Hd, int M);
void vlm_token_learner_bwd_ref(float *dx /* (B,N,D) */, float *dln_w /* (D) */,
    float *dln_b /* (D) */, float *dw1 /* (Hd,D) */, float *db1 /* (Hd) */,
    float *dw2 /* (M,Hd) */, float *db2 /* (M) */,
    const float *dout /* (B,M,D) */, float *act, const float *x,
    const float *ln_w, const float *w1, const float *w2, int B, int N,
    int D, int Hd, int M);
void vlm_token_learner_bwd_cpu(float *dx, float *dln_w, float *dln_b,
    float *dw1, float *db1, float *dw2, float *db2, const float *dout,
    float *act, const float *x, const float *ln_w, const float *w1,
    const float *w2, int B, int N, int D, int Hd, int M);

/* ---- rows and sums (kernels/cpu/rows.c) ------------------------------ */

/*
 * What the model did in host loops: y += x over n values (residuals,
 * gradient accumulation), y *= a (the mean of accumulated gradients);
 * y[s] = x[rows[s]] (S,D) gathers the routed
 * rows of a stack (R,D); x[rows[s]] += y[s] adds them back (rows
 * distinct, as routing rows are). The gather's backward is the
 * scatter-add. _cpu splits the work over the thread pool.
 */
void vlm_add_ref(float *y /* (n) */, const float *x /* (n) */, int64_t n);
void vlm_add_cpu(float *y, const float *x, int64_t n);
void vlm_scale_ref(float *y /* (n) */, float a, int64_t n);
void vlm_scale_cpu(float *y, float a, int64_t n);
void vlm_rows_gather_ref(float *y /* (S,D) */, const float *x /* (R,D) */,
    const int32_t *rows /* (S) */, int S, int D);
void vlm_rows_gather_cpu(float *y, const float *x, const int32_t *rows,
    int S, int D);
void vlm_rows_scatter_add_ref(float *x /* (R,D) */, const float *y /* (S,D) */,
    const int32_t *rows /* (S) */, int S, int D);
void vlm_rows_scatter_add_cpu(float *x, const float *y, const int32_t *rows,
    int S, int D);

/* ---- bf16 (kernels/cpu/bf16.c) --------------------------------------- */

/*
 * bfloat16 as raw bits (uint16_t), rounded from fp32 as vlm_f32_to_bf16
 * (base/base.h: round to nearest even, as PyTorch). The linear layer
 * with bf16 weights, y = bf16(x) w^T + b: x rounded to bf16 at the
 * input, w (OUT,IN) bf16, products, sums, bias and y fp32. scratch is
 * the caller's, vlm_linear_bf16_scratch_floats() floats (the op
 * allocates nothing; a backend may leave it unused), its contents
 * undefined after.
 */
void vlm_bf16_from_f32_ref(uint16_t *y /* (n) */, const float *x /* (n) */,
    int64_t n);
void vlm_bf16_from_f32_cpu(uint16_t *y, const float *x, int64_t n);
size_t vlm_linear_bf16_scratch_floats(int N, int IN, int OUT);
void vlm_linear_fwd_bf16_ref(float *y /* (N,OUT) */, float *scratch,
    const float *x /* (N,IN) */, const uint16_t *w /* (OUT,IN) */,
    const float *b /* (OUT) or NULL */, int N, int IN, int OUT);
void vlm_linear_fwd_bf16_cpu(float *y, float *scratch, const float *x,
    const uint16_t *w, const float *b, int N, int IN, int OUT);

/* ---- backends (kernels/cpu/backend.c) -------------------------------- */

/*
 * A backend is a table: its memory verbs and one entry per op, with the
 * argument lists above (pointers are the backend's memory). "cpu" holds
 * the fast kernels (the _ref ones where no fast version exists), "ref"
 * the plain oracles. A NULL entry means the backend lacks the op; whoever
 * runs ops checks them first with vlm_backend_check (never a silent
 * fallback to another backend). The memory verbs never fail on their
 * own: a backend that runs asynchronously reports errors at sync (0 or
 * -1 with vlm_error). Host data (inputs, router noise, what the host
 * reads back) moves only through upload and download.
 */
struct vlm_backend {
	const char *name;              /* e.g. "cpu" */
	int device;                    /* 1: its memory is a device's */
	void *(*alloc)(size_t bytes);  /* zero-filled; NULL: out of memory */
	void (*free)(void *p);
	void (*upload)(void *dst, const void *src, size_t bytes);
	void (*download)(void *dst, const void *src, size_t bytes);
	void (*memset)(void *dst, int c, size_t bytes);
	void (*copy)(void *dst, const void *src, size_t bytes);
	int (*sync)(void);
	/* dense */
	void (*gemm)(int ta, int tb, int M, int N, int K, float alpha,
	    const float *A, int lda, const float *B, int ldb, float beta,
	    float *C, int ldc);
	void (*linear_fwd)(float *y, const float *x, const float *w,
	    const float *b, int N, int IN, int OUT);
	void (*linear_bwd)(float *dx, float *dw, float *db, const float *dy,
	    const float *x, const float *w, int N, int IN, int OUT);
	void (*layernorm_fwd)(float *y, float *mean, float *rstd,
	    const float *x, const float *w, const float *b, int N, int C);
	void (*layernorm_bwd)(float *dx, float *dw, float *db,
	    const float *dy, const float *x, const float *w,
	    const float *mean, const float *rstd, int N, int C);
	void (*gelu_fwd)(float *y, const float *x, int64_t n);
	void (*gelu_bwd)(float *dx, const float *dy, const float *x,
	    int64_t n);
	void (*quickgelu_fwd)(float *y, const float *x, int64_t n);
	void (*quickgelu_bwd)(float *dx, const float *dy, const float *x,
	    int64_t n);
	void (*softmax_fwd)(float *y, const float *x, int N, int C);
	void (*softmax_bwd)(float *dx, const float *dy, const float *y, int N,
	    int C);
	void (*attention_fwd)(float *out, float *att, const float *qkv,
	    const int32_t *len, int causal, int B, int T, int C, int H);
	void (*attention_bwd)(float *dqkv, float *scratch, const float *dout,
	    const float *qkv, const float *att, int B, int T, int C, int H);
	void (*xattention_fwd)(float *out, float *P, const float *q, int lq,
	    const float *k, int lk, const float *v, int lv,
	    const float *mask, int causal, int Tq, int Tk, int C, int H);
	void (*xattention_bwd)(float *dq, float *dk, float *dv,
	    const float *dout, const float *P, const float *q,
	    const float *k, const float *v, int lq, int lk, int lv, int Tq,
	    int Tk, int C, int H);
	void (*l2norm_fwd)(float *y, float *norm, const float *x, int N,
	    int C);
	void (*l2norm_bwd)(float *dx, const float *dy, const float *y,
	    const float *norm, int N, int C);
	float (*clip_loss_fwd)(float *logits, float *lse, const float *u,
	    const float *v, float theta, int B, int C);
	void (*clip_loss_bwd)(float *du, float *dv, float *dtheta,
	    float *dlogits, const float *logits, const float *lse,
	    const float *u, const float *v, float theta, float dloss, int B,
	    int C);
	void (*adamw_step)(float *p, float *m, float *v, const float *g,
	    int64_t n, int64_t t, float lr, float beta1, float beta2,
	    float eps, float wd);
	float (*grad_clip)(float *g, int64_t n, float max_norm);
	/* sparse MoE */
	void (*router_fwd)(float *z, float *p, float *g, const float *x,
	    const float *wr, const float *eps, int S, int D, int E);
	void (*router_bwd)(float *dx, float *dwr, const float *dz,
	    const float *x, const float *wr, int S, int D, int E);
	void (*moe_route_fwd)(int32_t *idx, float *val, uint8_t *keep,
	    int32_t *slot, float *w, int32_t *fill, int32_t *order,
	    const float *g, int S, int E, int K, int C, int bpr,
	    int gate_norm);
	void (*moe_route_bwd)(float *dz, const float *dw, const float *g,
	    const int32_t *idx, const uint8_t *keep, int S, int E, int K,
	    int gate_norm);
	void (*moe_dispatch_fwd)(float *buf, const float *x,
	    const int32_t *idx, const int32_t *slot, int S, int D, int E,
	    int K, int C);
	void (*moe_dispatch_bwd)(float *dx, const float *dbuf,
	    const int32_t *idx, const int32_t *slot, int S, int D, int E,
	    int K, int C);
	void (*moe_combine_fwd)(float *y, const float *out,
	    const int32_t *idx, const int32_t *slot, const float *w, int S,
	    int D, int E, int K, int C);
	void (*moe_combine_bwd)(float *dout, float *dw, const float *dy,
	    const float *out, const int32_t *idx, const int32_t *slot,
	    const float *w, int S, int D, int E, int K, int C);
	float (*aux_importance_fwd)(const float *p, int S, int E);
	void (*aux_importance_bwd)(float *dz, const float *p, float dloss,
	    int S, int E);
	float (*aux_load_fwd)(const float *z, const float *eps, float sigma,
	    int S, int E, int K);
	void (*aux_load_bwd)(float *dz, const float *z, const float *eps,
	    float sigma, float dloss, int S, int E, int K);
	float (*aux_switch_fwd)(const float *g, const int32_t *idx, int S,
	    int E, int K);
	void (*aux_switch_bwd)(float *dz, const float *g, const int32_t *idx,
	    float dloss, int S, int E, int K);
	float (*aux_zloss_fwd)(const float *z, int S, int E);
	void (*aux_zloss_bwd)(float *dz, const float *z, float dloss, int S,
	    int E);
	float (*aux_entropy_local_fwd)(const float *z, const uint8_t *mod,
	    int m, int S, int E);
	void (*aux_entropy_local_bwd)(float *dz, const float *z,
	    const uint8_t *mod, int m, float dloss, int S, int E);
	float (*aux_entropy_global_fwd)(const float *z, const uint8_t *mod,
	    int m, float tau, int S, int E);
	void (*aux_entropy_global_bwd)(float *dz, const float *z,
	    const uint8_t *mod, int m, float tau, float dloss, int S, int E);
	/* inputs, pooling, token reduction */
	void (*patchify_fwd)(float *out, const float *img, int B, int ch,
	    int H, int W, int p);
	void (*patchify_bwd)(float *dimg, const float *dout, int B, int ch,
	    int H, int W, int p);
	void (*embed_fwd)(float *out, const int32_t *ids, const float *table,
	    int N, int V, int C);
	void (*embed_bwd)(float *dtable, const float *dout,
	    const int32_t *ids, int N, int V, int C);
	void (*posembed_fwd)(float *out, const float *x, const float *pos,
	    int B, int T, int C);
	void (*posembed_bwd)(float *dx, float *dpos, const float *dout,
	    int B, int T, int C);
	void (*cls_prepend_fwd)(float *out, const float *x, const float *cls,
	    int B, int P, int C);
	void (*cls_prepend_bwd)(float *dx, float *dcls, const float *dout,
	    int B, int P, int C);
	void (*pool_token_fwd)(float *out, const float *x, const int32_t *pos,
	    int B, int T, int C);
	void (*pool_token_bwd)(float *dx, const float *dout,
	    const int32_t *pos, int B, int T, int C);
	void (*pool_mean_fwd)(float *out, const float *x, const int32_t *len,
	    int B, int T, int C);
	void (*pool_mean_bwd)(float *dx, const float *dout,
	    const int32_t *len, int B, int T, int C);
	void (*pool_map_fwd)(float *out, float *att, const float *q,
	    const float *k, const float *v, const int32_t *len, int B, int T,
	    int C, int H);
	void (*pool_map_bwd)(float *dq, float *dk, float *dv,
	    const float *dout, const float *att, const float *q,
	    const float *k, const float *v, const int32_t *len, int B, int T,
	    int C, int H);
	void (*token_learner_fwd)(float *out, float *act, const float *x,
	    const float *ln_w, const float *ln_b, const float *w1,
	    const float *b1, const float *w2, const float *b2, int B, int N,
	    int D, int Hd, int M);
	void (*token_learner_bwd)(float *dx, float *dln_w, float *dln_b,
	    float *dw1, float *db1, float *dw2, float *db2, const float *dout,
	    float *act, const float *x, const float *ln_w, const float *w1,
	    const float *w2, int B, int N, int D, int Hd, int M);
	/* rows and sums */
	void (*add)(float *y, const float *x, int64_t n);
	void (*scale)(float *y, float a, int64_t n);
	void (*rows_gather)(float *y, const float *x, const int32_t *rows,
	    int S, int D);
	void (*rows_scatter_add)(float *x, const float *y,
	    const int32_t *rows, int S, int D);
	/* bf16 weights (inference with --precision bf16). Not in
	 * VLM_BACKEND_OPS: a run checks them when it is given bf16
	 * weights (vlm_run_set_bf16); tests/test-bf16.c tests them. */
	void (*bf16_from_f32)(uint16_t *y, const float *x, int64_t n);
	void (*linear_fwd_bf16)(float *y, float *scratch, const float *x,
	    const uint16_t *w, const float *b, int N, int IN, int OUT);
	/* weights packed once (inference, fp32): NULL on backends
	 * without them; not in VLM_BACKEND_OPS (forward.c falls back to
	 * linear_fwd); tests/test-kernels-dense.c tests them. */
	size_t (*linear_packed_floats)(int IN, int OUT);
	void (*linear_pack)(float *wk, const float *w, int IN, int OUT);
	void (*linear_fwd_packed)(float *y, const float *x, const float *wk,
	    const float *b, int N, int IN, int OUT);
};

/* Every op of the table, in its order: X(name) for each entry. */
#define VLM_BACKEND_OPS(X) \
	X(gemm) X(linear_fwd) X(linear_bwd) X(layernorm_fwd) \
	X(layernorm_bwd) X(gelu_fwd) X(gelu_bwd) X(quickgelu_fwd) \
	X(quickgelu_bwd) X(softmax_fwd) X(softmax_bwd) X(attention_fwd) \
	X(attention_bwd) X(l2norm_fwd) X(l2norm_bwd) X(clip_loss_fwd) \
	X(clip_loss_bwd) X(adamw_step) X(grad_clip) X(router_fwd) \
	X(router_bwd) X(moe_route_fwd) X(moe_route_bwd) X(moe_dispatch_fwd) \
	X(moe_dispatch_bwd) X(moe_combine_fwd) X(moe_combine_bwd) \
	X(aux_importance_fwd) X(aux_importance_bwd) X(aux_load_fwd) \
	X(aux_load_bwd) X(aux_switch_fwd) X(aux_switch_bwd) \
	X(aux_zloss_fwd) X(aux_zloss_bwd) X(aux_entropy_local_fwd) \
	X(aux_entropy_local_bwd) X(aux_entropy_global_fwd) \
	X(aux_entropy_global_bwd) X(patchify_fwd) X(patchify_bwd) \
	X(embed_fwd) X(embed_bwd) X(posembed_fwd) X(posembed_bwd) \
	X(cls_prepend_fwd) X(cls_prepend_bwd) X(pool_token_fwd) \
	X(pool_token_bwd) X(pool_mean_fwd) X(pool_mean_bwd) \
	X(pool_map_fwd) X(pool_map_bwd) X(token_learner_fwd) \
	X(token_learner_bwd) X(add) X(scale) X(rows_gather) \
	X(rows_scatter_add) X(xattention_fwd) X(xattention_bwd)

/* VLM_OP_gemm, ...: an op's index, for lists of needed ops. */
#define VLM_OP_ENUM_(name) VLM_OP_##name,
enum vlm_op { VLM_BACKEND_OPS(VLM_OP_ENUM_) VLM_OP_COUNT };

/* The i-th compiled backend (0: "cpu"), NULL past the last. */
const struct vlm_backend *vlm_backend_at(int i);
/* The backend called name ("cpu", "ref"), or NULL with vlm_error. */
const struct vlm_backend *vlm_backend_get(const char *name);
/* The backend VLM_BACKEND names, "cpu" when unset or empty (NULL with
 * vlm_error for an unknown name). */
const struct vlm_backend *vlm_backend_default(void);
/* The op's name ("linear_fwd"); whether backend b has it. */
const char *vlm_backend_op_name(enum vlm_op op);
int vlm_backend_has(const struct vlm_backend *b, enum vlm_op op);
/* 0 when b has each of the n ops, else -1 and vlm_error naming the first
 * missing one and the backend. */
int vlm_backend_check(const struct vlm_backend *b, const enum vlm_op *ops,
    int n);

/* The table whose memory is the host's for b: b itself, or "cpu". */
const struct vlm_backend *vlm_backend_host(const struct vlm_backend *b);

/* ---- CUDA (kernels/cuda/, build/libvlm-cuda.so, loaded at run time) ---- */

/*
 * "cuda" and "cuda:N" name the CUDA backend on device N (0). It lives in
 * libvlm-cuda.so (built by make CUDA=1 beside libvlm.a, with cudart and
 * cuBLAS), which vlm_backend_get loads on first use: from $VLM_CUDA_LIB,
 * else the path the build wrote in. A binary built with CUDA thus runs
 * on a machine without the CUDA libraries or a driver until cuda is
 * asked for, which then fails with the reason.
 */
/* Devices the cuda backend sees; device 0's "NAME (sm_XY, N MiB)" into
 * buf. 0, with the reason in buf, when the build has no CUDA, the
 * library or driver does not load, or there is no device. */
int vlm_cuda_devices(char *buf, int len);

/* What libvlm-cuda.so exports (kernels/cuda/backend.cu). */
typedef int vlm_cuda_devices_fn(char *buf, int len);
/* The table of device dev (its errors reported through `error`, i.e.
 * vlm_error), or NULL with the reason in err. */
typedef const struct vlm_backend *vlm_cuda_open_fn(int dev,
    int (*error)(const char *fmt, ...), char *err, int len);
/* Another export of libvlm-cuda.so (e.g. vlm_cuda_so_comm, the NCCL
 * communicator, train/comm.h), or NULL with vlm_error: no such library
 * loaded, or it lacks that name. */
void *vlm_cuda_sym(const char *name);

#endif /* VLM_KERNELS_H */
