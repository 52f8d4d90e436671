/*
 * linprobe.c - the linear probe: multinomial logistic regression on
 * frozen embeddings, as the CLIP paper evaluates representations (an
 * L2-regularised logistic regression fitted by L-BFGS, the strength
 * swept on a validation split).
 *
 * Objective over rows (x_i, y_i), i < N, with logits z = x W + b:
 *   f(W, b) = 1/N sum_i [logsumexp(z_i) - z_i[y_i]] + wd/2 |W|^2,
 * gradient dW = X^T (P - Y) / N + wd W, db = sum_i (P - Y)_i / N.
 * The products run in float on VLM_BACKEND's gemm (the cpu one is
 * bit-identical for every thread count); everything else is double,
 * each row on its own and the sums over rows in row order; L-BFGS
 * starts from zero (the sweep from
 * wd large to small, each fit from the last one's minimum): the fit is
 * deterministic.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "eval/eval.h"
#include "eval/eval-priv.h"

#define HIST 10         /* L-BFGS memory */
#define GTOL 1e-5       /* stop when every |gradient| is below this */
#define FTOL 1e-12      /* ... or the objective no longer moves */
#define ARMIJO 1e-4
#define MAX_HALVINGS 40
#define WD_LO (-12)     /* the sweep: wd = 10^(k/2), k = WD_LO..WD_HI */
#define WD_HI 0

/* One fitting problem and its scratch. */
struct problem {
	const float *X;   /* (N,D) */
	const int *y;     /* (N) */
	int64_t N;
	int D, C;
	double wd;
	float *W, *b;     /* (D,C), (C): the point as floats */
	float *z;         /* (N,C) logits, then (P - Y) / N */
	float *gW;        /* (D,C) */
	double *rowf;     /* (N) each row's cross-entropy */
	const struct vlm_backend *be; /* whose gemm runs the products */
	int failed;       /* a product failed (vlm_error said why) */
};

static int
problem_init(struct problem *p, const float *X, const int *y, int64_t N,
    int D, int C)
{
	size_t nf = (size_t)D * C * 2 + C + (size_t)N * C;

	*p = (struct problem){ .X = X, .y = y, .N = N, .D = D, .C = C };
	if (!(p->be = vlm_eval_backend()))
		return -1;
	p->W = malloc(nf * sizeof(float));
	p->rowf = malloc(N * sizeof(double));
	if (!p->W || !p->rowf) {
		free(p->W);
		free(p->rowf);
		p->W = NULL, p->rowf = NULL;
		return vlm_error("linear probe: out of memory (%lld rows)",
		    (long long)N);
	}
	p->b = p->W + (size_t)D * C; /* W and b contiguous, as theta */
	p->gW = p->b + C;
	p->z = p->gW + (size_t)D * C;
	return 0;
}

static void
problem_release(struct problem *p)
{
	free(p->W);
	free(p->rowf);
}

/* p->z = X W + b at theta (W then b), rounded to floats in p->W, p->b. */
static void
logits(struct problem *p, const double *theta)
{
	int64_t DC = (int64_t)p->D * p->C;

	for (int64_t j = 0; j < DC + p->C; j++)
		p->W[j] = (float)theta[j];
	if (vlm_eval_gemm(p->be, 0, 0, (int)p->N, p->C, p->D, 1.0f, p->X,
	    p->D, p->W, p->C, 0.0f, p->z, p->C) < 0)
		p->failed = 1;
	for (int64_t i = 0; i < p->N; i++)
		for (int c = 0; c < p->C; c++)
			p->z[i * p->C + c] += p->b[c];
}

/* Rows [i0, i1): cross-entropy into rowf, logits into (P - Y) / N. */
static void
softmax_rows(void *ctx, int64_t i0, int64_t i1)
{
	struct problem *p = ctx;
	int C = p->C;

	for (int64_t i = i0; i < i1; i++) {
		float *z = p->z + i * C;
		double mx = -INFINITY, sum = 0;
		for (int c = 0; c < C; c++)
			mx = fmax(mx, z[c]);
		for (int c = 0; c < C; c++)
			sum += exp(z[c] - mx);
		p->rowf[i] = mx + log(sum) - z[p->y[i]];
		for (int c = 0; c < C; c++)
			z[c] = (float)((exp(z[c] - mx) / sum -
			    (c == p->y[i])) / p->N);
	}
}

/*
 * f(theta) and its gradient g; theta = W (D,C) then b (C). Rows run in
 * parallel, each on its own; the sums over rows run in row order.
 */
static double
objective(struct problem *p, const double *theta, double *g)
{
	int64_t DC = (int64_t)p->D * p->C;
	int C = p->C;
	double f = 0, reg = 0;

	logits(p, theta);
	vlm_parallel_for_cost(p->N, p->N * C * 40, softmax_rows, p);
	memset(g + DC, 0, C * sizeof(*g));
	for (int64_t i = 0; i < p->N; i++) {
		f += p->rowf[i];
		for (int c = 0; c < C; c++)
			g[DC + c] += p->z[i * C + c];
	}
	if (vlm_eval_gemm(p->be, 1, 0, p->D, C, (int)p->N, 1.0f, p->X, p->D,
	    p->z, C, 0.0f, p->gW, C) < 0)
		p->failed = 1;
	for (int64_t j = 0; j < DC; j++) {
		g[j] = p->gW[j] + p->wd * theta[j];
		reg += theta[j] * theta[j];
	}
	return f / p->N + 0.5 * p->wd * reg;
}

static double
dot(const double *a, const double *b, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* L-BFGS state: history of k pairs (s, y) in a ring, newest at head. */
struct lbfgs {
	int64_t n;
	double *g, *d, *xn, *gn, *s, *y; /* s, y: HIST rows of n */
	double rho[HIST], alpha[HIST];
	int k, head;
};

/* d = -H g by the two-loop recursion. */
static void
direction(struct lbfgs *L)
{
	int64_t n = L->n;
	double gamma = 1;

	for (int64_t j = 0; j < n; j++)
		L->d[j] = -L->g[j];
	for (int i = 0; i < L->k; i++) {
		int h = (L->head - i + HIST) % HIST;
		double *s = L->s + h * n, *y = L->y + h * n;
		L->alpha[h] = L->rho[h] * dot(s, L->d, n);
		for (int64_t j = 0; j < n; j++)
			L->d[j] -= L->alpha[h] * y[j];
	}
	if (L->k > 0) {
		double *y = L->y + L->head * n;
		gamma = 1 / (L->rho[L->head] * dot(y, y, n));
	}
	for (int64_t j = 0; j < n; j++)
		L->d[j] *= gamma;
	for (int i = L->k - 1; i >= 0; i--) {
		int h = (L->head - i + HIST) % HIST;
		double *s = L->s + h * n, *y = L->y + h * n;
		double beta = L->rho[h] * dot(y, L->d, n);
		for (int64_t j = 0; j < n; j++)
			L->d[j] += (L->alpha[h] - beta) * s[j];
	}
}

/* Remember the step x -> xn (gradients g -> gn) if it curves upward. */
static void
remember(struct lbfgs *L, const double *x)
{
	int64_t n = L->n;
	int h = (L->head + 1) % HIST;
	double *s = L->s + h * n, *y = L->y + h * n, sy;

	for (int64_t j = 0; j < n; j++) {
		s[j] = L->xn[j] - x[j];
		y[j] = L->gn[j] - L->g[j];
	}
	if ((sy = dot(s, y, n)) <= 1e-12 * dot(y, y, n))
		return;
	L->rho[h] = 1 / sy;
	L->head = h;
	if (L->k < HIST)
		L->k++;
}

/* Backtracking along d from x: 1 with xn, gn, *f updated, 0 if none. */
static int
line_search(struct problem *p, struct lbfgs *L, const double *x, double *f,
    double t)
{
	double dg = dot(L->d, L->g, L->n);

	for (int h = 0; h < MAX_HALVINGS; h++, t *= 0.5) {
		for (int64_t j = 0; j < L->n; j++)
			L->xn[j] = x[j] + t * L->d[j];
		double fn = objective(p, L->xn, L->gn);
		if (fn <= *f + ARMIJO * t * dg) {
			*f = fn;
			return 1;
		}
	}
	return 0;
}

/* Minimise from x (in: start, out: the minimum); returns f there. */
static double
minimize(struct problem *p, struct lbfgs *L, double *x, int iters)
{
	double f = objective(p, x, L->g), gmax, fold;

	L->k = 0;
	L->head = 0;
	for (int it = 0; it < iters; it++) {
		gmax = 0;
		for (int64_t j = 0; j < L->n; j++)
			gmax = fmax(gmax, fabs(L->g[j]));
		if (gmax < GTOL)
			break;
		direction(L);
		if (dot(L->d, L->g, L->n) >= 0) { /* not downhill: restart */
			for (int64_t j = 0; j < L->n; j++)
				L->d[j] = -L->g[j];
			L->k = 0;
		}
		fold = f;
		if (!line_search(p, L, x, &f, L->k ? 1 :
		    fmin(1, 1 / sqrt(dot(L->g, L->g, L->n)))))
			break;
		remember(L, x);
		memcpy(x, L->xn, L->n * sizeof(*x));
		memcpy(L->g, L->gn, L->n * sizeof(*x));
		if (fold - f <= FTOL * fmax(1, fabs(f)))
			break;
	}
	return f;
}

static int
lbfgs_init(struct lbfgs *L, int64_t n)
{
	memset(L, 0, sizeof(*L));
	L->n = n;
	if (!(L->g = calloc((size_t)n * (4 + 2 * HIST), sizeof(double))))
		return vlm_error("linear probe: out of memory (%lld "
		    "parameters)", (long long)n);
	L->d = L->g + n;
	L->xn = L->d + n;
	L->gn = L->xn + n;
	L->s = L->gn + n;
	L->y = L->s + HIST * n;
	return 0;
}


/* Top-1 accuracy of theta on p's rows (the first maximum predicted). */
static double
accuracy(struct problem *p, const double *theta)
{
	int64_t hits = 0;

	logits(p, theta);
	for (int64_t i = 0; i < p->N; i++) {
		const float *z = p->z + i * p->C;
		int best = 0;
		for (int c = 1; c < p->C; c++)
			if (z[c] > z[best])
				best = c;
		hits += best == p->y[i];
	}
	return (double)hits / p->N;
}

/*
 * Fit on pt for each wd, larger first, each fit starting from the last
 * one's minimum; keep the best on pv (ties: the larger wd).
 */
static void
sweep(struct vlm_linprobe *lp, struct problem *pt, struct problem *pv,
    struct lbfgs *L, double *theta, int iters)
{
	lp->val_acc1 = -1;
	memset(theta, 0, L->n * sizeof(*theta));
	for (int k = WD_HI; k >= WD_LO; k--) {
		double a;
		pt->wd = pow(10, k / 2.0);
		minimize(pt, L, theta, iters);
		if ((a = accuracy(pv, theta)) > lp->val_acc1)
			lp->val_acc1 = a, lp->wd = pt->wd;
	}
}

/* The validation split: the first val_frac of a seeded permutation. */
static int
choose_wd(struct vlm_linprobe *lp, const float *X, const int *y, int64_t N,
    const struct vlm_linprobe_opts *o, struct lbfgs *L, double *theta)
{
	int D = lp->D, C = lp->C;
	int64_t nv = (int64_t)floor(N * o->val_frac), nt = N - nv, k[2] = {0};
	struct problem pt = { 0 }, pv = { 0 };
	uint32_t *perm = malloc(N * sizeof(*perm));
	unsigned char *isval = calloc(N, 1);
	float *Xs = malloc((size_t)N * D * sizeof(*Xs));
	int *ys = malloc(N * sizeof(*ys)), rc = -1;

	if (nv < 1 || nt < 1)
		vlm_error("linear probe: %lld rows are too few for a "
		    "validation split", (long long)N);
	else if (!perm || !isval || !Xs || !ys)
		vlm_error("linear probe: out of memory (%lld rows)",
		    (long long)N);
	else if (problem_init(&pt, Xs, ys, nt, D, C) == 0 &&
	    problem_init(&pv, Xs + nt * D, ys + nt, nv, D, C) == 0) {
		vlm_perm_shuffle(perm, N, o->seed, 0);
		for (int64_t i = 0; i < nv; i++)
			isval[perm[i]] = 1;
		for (int64_t i = 0; i < N; i++) { /* train, then val rows */
			int64_t r = isval[i] ? nt + k[1]++ : k[0]++;
			memcpy(Xs + r * D, X + i * D, D * sizeof(*X));
			ys[r] = y[i];
		}
		sweep(lp, &pt, &pv, L, theta, o->iters);
		rc = pt.failed || pv.failed ? -1 : 0;
	}
	problem_release(&pt);
	problem_release(&pv);
	free(perm);
	free(isval);
	free(Xs);
	free(ys);
	return rc;
}

/* Fit on every row with lp->wd from zero; keep W, b and the loss. */
static int
fit_all(struct vlm_linprobe *lp, const float *X, const int *y, int64_t N,
    int iters, struct lbfgs *L, double *theta)
{
	int64_t DC = (int64_t)lp->D * lp->C;
	struct problem p;

	if (problem_init(&p, X, y, N, lp->D, lp->C) < 0)
		return -1;
	p.wd = lp->wd;
	memset(theta, 0, L->n * sizeof(*theta));
	lp->loss = minimize(&p, L, theta, iters);
	for (int64_t j = 0; j < DC + lp->C; j++)
		lp->W[j] = (float)theta[j];
	problem_release(&p);
	return p.failed ? -1 : 0;
}

int
vlm_linprobe_fit(struct vlm_linprobe *lp, const float *X, const int *y,
    int64_t N, int D, int C, const struct vlm_linprobe_opts *o)
{
	static const struct vlm_linprobe_opts def = VLM_LINPROBE_DEFAULT;
	int64_t n = (int64_t)(D + 1) * C;
	struct lbfgs L;
	double *theta;
	int rc = -1;

	memset(lp, 0, sizeof(*lp));
	if (!o)
		o = &def;
	if (N < 1 || D < 1 || C < 1 || N > INT32_MAX)
		return vlm_error("linear probe: %lld rows of %d dimensions, "
		    "%d classes", (long long)N, D, C);
	for (int64_t i = 0; i < N; i++)
		if (y[i] < 0 || y[i] >= C)
			return vlm_error("linear probe: row %lld: label %d out "
			    "of range (%d classes)", (long long)i, y[i], C);
	lp->D = D, lp->C = C, lp->wd = o->wd, lp->val_acc1 = NAN;
	if (!(theta = malloc(n * sizeof(*theta))) || lbfgs_init(&L, n) < 0) {
		free(theta);
		return vlm_error("linear probe: out of memory (%lld "
		    "parameters)", (long long)n);
	}
	if (!(lp->W = malloc(n * sizeof(*lp->W))))
		vlm_error("linear probe: out of memory");
	else if ((o->wd > 0 || choose_wd(lp, X, y, N, o, &L, theta) == 0) &&
	    fit_all(lp, X, y, N, o->iters, &L, theta) == 0)
		rc = 0;
	lp->b = lp->W ? lp->W + (int64_t)D * C : NULL;
	free(theta);
	free(L.g);
	if (rc < 0)
		vlm_linprobe_release(lp);
	return rc;
}

int
vlm_linprobe_logits(const struct vlm_linprobe *lp, float *z, const float *X,
    int64_t N)
{
	const struct vlm_backend *be;

	if (!lp->W)
		return vlm_error("linear probe: not fitted");
	if (!(be = vlm_eval_backend()) || vlm_eval_gemm(be, 0, 0, (int)N,
	    lp->C, lp->D, 1.0f, X, lp->D, lp->W, lp->C, 0.0f, z, lp->C) < 0)
		return -1;
	for (int64_t i = 0; i < N; i++)
		for (int c = 0; c < lp->C; c++)
			z[i * lp->C + c] += lp->b[c];
	return 0;
}

void
vlm_linprobe_release(struct vlm_linprobe *lp)
{
	free(lp->W);
	memset(lp, 0, sizeof(*lp));
}
