/*
 * token-learner.c - TokenLearner token reduction (JARed, ALGORITHMS.md
 * section 1): per example, N tokens x (N,D) become M learned weighted
 * sums of themselves:
 *   xn = LN(x) (eps 1e-5);  h = GELU(xn W1^T + b1) (exact erf, width Hd);
 *   a = h W2^T + b2 (N,M);  a = softmax over the N tokens, per column m;
 *   out[m] = sum_n a[n,m] x[n].
 * The activations the backward needs live in one caller buffer `act`,
 * whose tail the backward also uses as scratch. The plain version loops;
 * the CPU one does every product as an sgemm.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "kernels.h"
#include "shared.h"

#define LN_EPS 1e-5f

size_t
vlm_token_learner_act_floats(int B, int N, int D, int Hd, int M)
{
	return (size_t)B * N * (2 * (size_t)D + 2 + 3 * (size_t)Hd + 2 * M);
}

/* LayerNorm of R rows, saving mean and 1/std. */
static void
ln_fwd(struct vlm_tl_act *a, const float *x, const float *w, const float *b,
    size_t R, int D)
{
	for (size_t r = 0; r < R; r++) {
		const float *xr = x + r * D;
		float m = 0, v = 0, rs;
		for (int d = 0; d < D; d++)
			m += xr[d];
		m /= D;
		for (int d = 0; d < D; d++)
			v += (xr[d] - m) * (xr[d] - m);
		rs = 1.0f / sqrtf(v / D + LN_EPS);
		for (int d = 0; d < D; d++)
			a->xn[r * D + d] = (xr[d] - m) * rs * w[d] + b[d];
		a->mean[r] = m;
		a->rstd[r] = rs;
	}
}

/* dx += LN backward of dxn; dw, db += the affine gradients. */
static void
ln_bwd(float *dx, float *dw, float *db, const struct vlm_tl_act *a,
    const float *x, const float *w, size_t R, int D)
{
	for (size_t r = 0; r < R; r++) {
		const float *xr = x + r * D, *g = a->dxn + r * D;
		float m = a->mean[r], rs = a->rstd[r], s1 = 0, s2 = 0;
		for (int d = 0; d < D; d++) {
			float xh = (xr[d] - m) * rs;
			s1 += g[d] * w[d];
			s2 += g[d] * w[d] * xh;
			dw[d] += g[d] * xh;
			db[d] += g[d];
		}
		s1 /= D;
		s2 /= D;
		for (int d = 0; d < D; d++) {
			float xh = (xr[d] - m) * rs;
			dx[r * D + d] += rs * (g[d] * w[d] - s1 - xh * s2);
		}
	}
}

static float
gelu(float x)
{
	return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
}

static float
gelu_grad(float x)
{
	return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) +
	    x * expf(-0.5f * x * x) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
}

/* In place: softmax over n of att[b,:,m] for every b and m. */
static void
softmax_tokens(float *att, int B, int N, int M)
{
	for (int b = 0; b < B; b++)
		for (int m = 0; m < M; m++) {
			float *a = att + (size_t)b * N * M + m, max = -INFINITY;
			float sum = 0;
			for (int n = 0; n < N; n++)
				max = fmaxf(max, a[(size_t)n * M]);
			for (int n = 0; n < N; n++) {
				a[(size_t)n * M] = expf(a[(size_t)n * M] - max);
				sum += a[(size_t)n * M];
			}
			for (int n = 0; n < N; n++)
				a[(size_t)n * M] /= sum;
		}
}

/* dlogit = att * (datt - sum_n att datt), columnwise; in place on dlogit. */
static void
softmax_tokens_bwd(float *dlogit, const float *att, int B, int N, int M)
{
	for (int b = 0; b < B; b++)
		for (int m = 0; m < M; m++) {
			size_t o = (size_t)b * N * M + m;
			float dot = 0;
			for (int n = 0; n < N; n++)
				dot += att[o + (size_t)n * M] *
				    dlogit[o + (size_t)n * M];
			for (int n = 0; n < N; n++)
				dlogit[o + (size_t)n * M] =
				    att[o + (size_t)n * M] *
				    (dlogit[o + (size_t)n * M] - dot);
		}
}

/* y (R,OUT) = x (R,IN) w^T + b, plainly. */
static void
linear_ref(float *y, const float *x, const float *w, const float *b,
    size_t R, int IN, int OUT)
{
	for (size_t r = 0; r < R; r++)
		for (int o = 0; o < OUT; o++) {
			float acc = b[o];
			for (int i = 0; i < IN; i++)
				acc += x[r * IN + i] * w[(size_t)o * IN + i];
			y[r * OUT + o] = acc;
		}
}

/* dx (R,IN) = dy w (overwrites); dw += dy^T x; db += column sums. */
static void
linear_bwd_ref(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, size_t R, int IN, int OUT)
{
	memset(dx, 0, R * IN * sizeof(float));
	for (size_t r = 0; r < R; r++)
		for (int o = 0; o < OUT; o++) {
			float d = dy[r * OUT + o];
			db[o] += d;
			for (int i = 0; i < IN; i++) {
				dx[r * IN + i] += d * w[(size_t)o * IN + i];
				dw[(size_t)o * IN + i] += d * x[r * IN + i];
			}
		}
}

/* Forward by plain loops. */
void
vlm_token_learner_fwd_ref(float *out, float *act, const float *x,
    const float *ln_w, const float *ln_b, const float *w1, const float *b1,
    const float *w2, const float *b2, int B, int N, int D, int Hd, int M)
{
	struct vlm_tl_act a = vlm_tl_views(act, B, N, D, Hd, M);
	size_t R = (size_t)B * N;

	ln_fwd(&a, x, ln_w, ln_b, R, D);
	linear_ref(a.pre, a.xn, w1, b1, R, D, Hd);
	for (size_t i = 0; i < R * Hd; i++)
		a.h[i] = gelu(a.pre[i]);
	linear_ref(a.att, a.h, w2, b2, R, Hd, M);
	softmax_tokens(a.att, B, N, M);
	for (int b = 0; b < B; b++)
		for (int m = 0; m < M; m++)
			for (int d = 0; d < D; d++) {
				const float *ab = a.att + (size_t)b * N * M;
				const float *xb = x + (size_t)b * N * D;
				float acc = 0;
				for (int n = 0; n < N; n++)
					acc += ab[(size_t)n * M + m] *
					    xb[(size_t)n * D + d];
				out[((size_t)b * M + m) * D + d] = acc;
			}
}

/* Backward by plain loops; act as the forward left it. */
void
vlm_token_learner_bwd_ref(float *dx, float *dln_w, float *dln_b, float *dw1,
    float *db1, float *dw2, float *db2, const float *dout, float *act,
    const float *x, const float *ln_w, const float *w1, const float *w2,
    int B, int N, int D, int Hd, int M)
{
	struct vlm_tl_act a = vlm_tl_views(act, B, N, D, Hd, M);
	size_t R = (size_t)B * N;

	for (int b = 0; b < B; b++)
		for (int n = 0; n < N; n++) {
			size_t r = (size_t)b * N + n;
			for (int m = 0; m < M; m++) {
				const float *dy = dout +
				    ((size_t)b * M + m) * D;
				float at = a.att[r * M + m], acc = 0;
				for (int d = 0; d < D; d++) {
					acc += dy[d] * x[r * D + d];
					dx[r * D + d] += at * dy[d];
				}
				a.dlogit[r * M + m] = acc;
			}
		}
	softmax_tokens_bwd(a.dlogit, a.att, B, N, M);
	linear_bwd_ref(a.dh, dw2, db2, a.dlogit, a.h, w2, R, Hd, M);
	for (size_t i = 0; i < R * Hd; i++)
		a.dh[i] *= gelu_grad(a.pre[i]);
	linear_bwd_ref(a.dxn, dw1, db1, a.dh, a.xn, w1, R, D, Hd);
	ln_bwd(dx, dln_w, dln_b, &a, x, ln_w, R, D);
}

/* y (R,OUT) = x (R,IN) w^T + b as one sgemm. */
static void
linear_cpu(float *y, const float *x, const float *w, const float *b,
    size_t R, int IN, int OUT)
{
	for (size_t r = 0; r < R; r++)
		memcpy(y + r * OUT, b, (size_t)OUT * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, OUT, IN,
	    1.0f, x, IN, w, IN, 1.0f, y, OUT);
}

/* dx = dy w (overwrites); dw += dy^T x; db += column sums. */
static void
linear_bwd_cpu(float *dx, float *dw, float *db, const float *dy,
    const float *x, const float *w, size_t R, int IN, int OUT)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, IN, OUT,
	    1.0f, dy, OUT, w, IN, 0.0f, dx, IN);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, (int)R,
	    1.0f, dy, OUT, x, IN, 1.0f, dw, IN);
	for (size_t r = 0; r < R; r++)
		for (int o = 0; o < OUT; o++)
			db[o] += dy[r * OUT + o];
}

/* Forward with sgemms: out[b] (M,D) = att[b]^T (M,N) x[b] (N,D). */
void
vlm_token_learner_fwd_cpu(float *out, float *act, const float *x,
    const float *ln_w, const float *ln_b, const float *w1, const float *b1,
    const float *w2, const float *b2, int B, int N, int D, int Hd, int M)
{
	struct vlm_tl_act a = vlm_tl_views(act, B, N, D, Hd, M);
	size_t R = (size_t)B * N;

	ln_fwd(&a, x, ln_w, ln_b, R, D);
	linear_cpu(a.pre, a.xn, w1, b1, R, D, Hd);
	for (size_t i = 0; i < R * Hd; i++)
		a.h[i] = gelu(a.pre[i]);
	linear_cpu(a.att, a.h, w2, b2, R, Hd, M);
	softmax_tokens(a.att, B, N, M);
	for (int b = 0; b < B; b++)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, D, N,
		    1.0f, a.att + (size_t)b * N * M, M, x + (size_t)b * N * D,
		    D, 0.0f, out + (size_t)b * M * D, D);
}

/* Backward with sgemms; act as the forward left it. */
void
vlm_token_learner_bwd_cpu(float *dx, float *dln_w, float *dln_b, float *dw1,
    float *db1, float *dw2, float *db2, const float *dout, float *act,
    const float *x, const float *ln_w, const float *w1, const float *w2,
    int B, int N, int D, int Hd, int M)
{
	struct vlm_tl_act a = vlm_tl_views(act, B, N, D, Hd, M);
	size_t R = (size_t)B * N;

	for (int b = 0; b < B; b++) {
		const float *xb = x + (size_t)b * N * D;
		const float *db = dout + (size_t)b * M * D;
		float *att = a.att + (size_t)b * N * M;
		/* datt[b] (N,M) = x[b] dout[b]^T; dx[b] += att[b] dout[b] */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, D,
		    1.0f, xb, D, db, D, 0.0f, a.dlogit + (size_t)b * N * M, M);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, M,
		    1.0f, att, M, db, D, 1.0f, dx + (size_t)b * N * D, D);
	}
	softmax_tokens_bwd(a.dlogit, a.att, B, N, M);
	linear_bwd_cpu(a.dh, dw2, db2, a.dlogit, a.h, w2, R, Hd, M);
	for (size_t i = 0; i < R * Hd; i++)
		a.dh[i] *= gelu_grad(a.pre[i]);
	linear_bwd_cpu(a.dxn, dw1, db1, a.dh, a.xn, w1, R, D, Hd);
	ln_bwd(dx, dln_w, dln_b, &a, x, ln_w, R, D);
}
