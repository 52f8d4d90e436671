/*
 * test-coca-ops.c - the attention over separate q, k, v of CoCa
 * (kernels/cpu/xattention.c) against a double-precision oracle on odd
 * sizes: forward to 1e-5, and the backward against central finite
 * differences of the double forward to 1e-4, for cross-attention (the
 * pooler's and the decoder's: more keys than queries, no mask), causal
 * self-attention on a fused qkv (row strides 3C), and an additive mask
 * that hides keys (the text class token's).
 */
#include "fdcheck.h"
#include "kernels.h"

struct xa {
	int Tq, Tk, C, H, lq, lk, lv, causal;
	double *q, *k, *v, *mask, *w; /* w: weights of the scalar loss */
};

/* out (Tq,C) of the double oracle. */
static void
xa_fwd(const struct xa *a, double *out)
{
	int hd = a->C / a->H;
	double p[64];

	for (int h = 0; h < a->H; h++)
		for (int i = 0; i < a->Tq; i++) {
			double mx = -INFINITY, sum = 0;
			for (int j = 0; j < a->Tk; j++) {
				double s = 0;
				for (int d = 0; d < hd; d++)
					s += a->q[i * a->lq + h * hd + d] *
					    a->k[j * a->lk + h * hd + d];
				s /= sqrt((double)hd);
				if (a->mask)
					s += a->mask[i * a->Tk + j];
				if (a->causal && j > i)
					s = -INFINITY;
				p[j] = s;
				mx = s > mx ? s : mx;
			}
			for (int j = 0; j < a->Tk; j++)
				sum += (p[j] = exp(p[j] - mx));
			for (int d = 0; d < hd; d++) {
				double o = 0;
				for (int j = 0; j < a->Tk; j++)
					o += p[j] / sum *
					    a->v[j * a->lv + h * hd + d];
				out[i * a->C + h * hd + d] = o;
			}
		}
}

static double
xa_loss(void *ctx)
{
	struct xa *a = ctx;
	double out[64 * 16], l = 0;

	xa_fwd(a, out);
	for (int i = 0; i < a->Tq * a->C; i++)
		l += out[i] * a->w[i];
	return l;
}

/* One case: q (Tq,lq), k (Tk,lk), v (Tk,lv) as in the kernel. */
static void
run_case(const char *what, int Tq, int Tk, int C, int H, int fused,
    int causal, int masked)
{
	struct vlm_rng r;
	int lq = fused ? 3 * C : C, lk = fused ? 3 * C : C, lv = lk;
	size_t nq = (size_t)Tq * lq, nk = (size_t)Tk * lk;
	float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
	float *w = malloc(Tq * C * 4), *mask = masked ? calloc(Tq * Tk, 4) :
	    NULL, *out = malloc(Tq * C * 4), *P = malloc(H * Tq * Tk * 4);
	float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
	double od[64 * 16], *g;
	char name[96];

	vlm_rng_seed(&r, 7 + Tq * 31 + Tk);
	fill_randn(q, nq, 1, &r), fill_randn(k, nk, 1, &r);
	fill_randn(v, nk, 1, &r), fill_randn(w, Tq * C, 1, &r);
	for (int i = 0; masked && i < Tq * Tk; i++) /* hide some, keep 0 */
		mask[i] = i % Tk && vlm_rng_below(&r, 3) == 0 ? -INFINITY : 0;
	struct xa a = { Tq, Tk, C, H, lq, lk, lv, causal, dup_double(q, nq),
		dup_double(k, nk), dup_double(v, nk), masked ?
		dup_double(mask, Tq * Tk) : NULL, dup_double(w, Tq * C) };
	vlm_xattention_fwd_ref(out, P, q, lq, k, lk, v, lv, mask, causal, Tq,
	    Tk, C, H);
	xa_fwd(&a, od);
	snprintf(name, sizeof(name), "%s fwd", what);
	check_close(name, out, od, Tq * C, 1e-5);
	vlm_xattention_bwd_ref(dq, dk, dv, w, P, q, k, v, lq, lk, lv, Tq, Tk,
	    C, H);
	struct { const char *n; float *d; double *x; size_t len; } t[] = {
		{ "dq", dq, a.q, nq }, { "dk", dk, a.k, nk },
		{ "dv", dv, a.v, nk } };
	for (int i = 0; i < 3; i++) {
		g = malloc(t[i].len * sizeof(*g));
		fd_grad(g, t[i].x, t[i].len, xa_loss, &a);
		snprintf(name, sizeof(name), "%s %s", what, t[i].n);
		check_close(name, t[i].d, g, t[i].len, 1e-4);
		free(g);
	}
	/* the backward adds: a second call doubles the gradients */
	float *twice = malloc(nq * 4);
	for (size_t i = 0; i < nq; i++)
		twice[i] = 2 * dq[i];
	vlm_xattention_bwd_ref(dq, dk, dv, w, P, q, k, v, lq, lk, lv, Tq, Tk,
	    C, H);
	snprintf(name, sizeof(name), "%s dq adds", what);
	check_closef(name, dq, twice, nq, 1e-6);
	free(twice);
	free(q), free(k), free(v), free(w), free(mask), free(out), free(P);
	free(dq), free(dk), free(dv);
	free(a.q), free(a.k), free(a.v), free(a.mask), free(a.w);
}

static void
test_cross(void **state)
{
	(void)state;
	run_case("cross 5x17 C12 H3", 5, 17, 12, 3, 0, 0, 0);
	run_case("cross 9x4 C8 H2", 9, 4, 8, 2, 0, 0, 0);
}

static void
test_self_causal(void **state)
{
	(void)state;
	run_case("causal fused 7 C10 H2", 7, 7, 10, 2, 1, 1, 0);
}

static void
test_masked(void **state)
{
	(void)state;
	run_case("masked causal fused 8 C6 H3", 8, 8, 6, 3, 1, 1, 1);
	run_case("masked cross 6x11 C8 H4", 6, 11, 8, 4, 0, 0, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cross),
		cmocka_unit_test(test_self_causal),
		cmocka_unit_test(test_masked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
