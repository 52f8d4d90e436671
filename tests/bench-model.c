/*
 * bench-model.c - model throughput, reported as ratios measured in the
 * same run (these machines are shared and noisy):
 *  - a ViT-B/32 image tower (224 px, width 768, 12 layers) forward at
 *    batch 32: images/s, GFLOP/s and the ratio to the best SGEMM rate;
 *  - its MoE twin (E = 8, K = 1, MoE every other block) over it, and a
 *    TokenLearner twin (49 patches cut to 8 tokens after block 5, GAP)
 *    over it, beside the ratio of their FLOPs;
 *  - training steps (forward, backward, AdamW) of the tiny and s presets,
 *    dense and MoE: images/s, GFLOP/s (3x forward) and MoE over dense.
 *  - the ViT-B/32 image encoder in fp32 and in bf16 (--precision bf16),
 *    turn about: both rates, their ratio, how close their features are;
 *  - GELU alone on a ViT-B/32 MLP activation (batch 32): ns per element
 *    of libm's erff (the _ref) and of the vectorised _cpu, one thread and
 *    all, forward and backward.
 *  - the ViT-B/32 forward against SGEMM, turn about ("ratio [ROUNDS]"),
 *    its weights packed once as vlm-embed's (BENCH_NOPACK=1: packed per
 *    call, as a training run's);
 *  - the ViT-B/32 forward with weights packed once against per call,
 *    alternated ("pack [PAIRS]").
 * Usage: bench-model [quick] [vitb-only | bf16 | gelu | ratio [ROUNDS] |
 * pack [PAIRS] |
 * train PRESET]
 * ("quick":
 * fewer repetitions; "vitb-only": just the ViT-B/32 forward lines, for
 * bench-embed.sh; "bf16": just the bf16 line; "ratio": just the model
 * against SGEMM; "train PRESET": just that
 * preset's training line, e.g.
 * to run builds of two versions of the library turn about).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "vlm.h"

static int reps = 3;

static double
clock_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double
now(void)
{
	return clock_of(CLOCK_MONOTONIC);
}

/* Seconds of CPU time of the whole process (every thread). */
static double
cpu_now(void)
{
	return clock_of(CLOCK_PROCESS_CPUTIME_ID);
}

/* Best SGEMM rate (GFLOP/s) over square sizes, as the peak to compare. */
static double
sgemm_peak(void)
{
	int n = 2048;
	float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4);
	float *c = calloc((size_t)n * n, 4);
	double best = 0;

	for (int r = 0; r < reps + 1; r++) {
		double t = now();
		vlm_gemm_cpu(0, 1, n, n, n, 1, a, n, b, n, 0, c, n);
		t = now() - t;
		if (r && 2.0 * n * n * n / t / 1e9 > best)
			best = 2.0 * n * n * n / t / 1e9;
	}
	free(a), free(b), free(c);
	return best;
}

static void
model_of(struct vlm_model *m, const char *preset, int moe, int towers,
    int cut)
{
	struct vlm_config c;

	vlm_config_preset(&c, preset);
	if (cut >= 0) {
		c.tl.after = cut, c.tl.tokens = 8;
		c.vision.pool = VLM_POOL_GAP;
	}
	if (moe) {
		c.moe.experts = 8, c.moe.top_k = 1, c.moe.every = 2;
		c.moe.towers = towers;
	}
	if (vlm_model_init(m, &c) < 0) {
		fprintf(stderr, "%s\n", vlm_errmsg());
		exit(1);
	}
	vlm_model_randomize(m, 1);
}

/* Best seconds of a forward (train: + backward + AdamW) at batch B. */
static double
time_model(struct vlm_model *m, int B, int train)
{
	int S = m->cfg.image_size, T = m->cfg.context;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));
	struct vlm_run *r = vlm_run_new(m, B, train ? B : 0, train);
	float *g = train ? malloc(m->nfloats * sizeof(float)) : NULL;
	struct vlm_optim o;
	struct vlm_loss L;
	double best = 1e30;

	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)((i * 7919) % 255) / 255 - 0.5f;
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < 9; t++)
			ids[b * T + t] = 1 + (b * 31 + t * 7) % 200;
		ids[b * T + 9] = m->cfg.vocab - 1;
	}
	vlm_optim_defaults(&o);
	if (train)
		vlm_optim_init(&o, m, NULL);
	for (int k = 0; k < reps + 1; k++) {
		double t = now();
		vlm_forward(r, m, px, train ? ids : NULL);
		if (train) {
			vlm_run_loss(r, m, &L);
			vlm_backward(r, m, g);
			vlm_optim_step(&o, m, g, 1e-4f);
		}
		t = now() - t;
		if (k && t < best)
			best = t;
	}
	if (train)
		vlm_optim_release(&o);
	vlm_run_free(r);
	free(px), free(ids), free(g);
	return best;
}

static void
bench_vitb(double peak)
{
	struct vlm_model d, m;
	int B = 32;

	model_of(&d, "b", 0, 0, -1);
	model_of(&m, "b", 1, VLM_MOE_VISION, -1);
	double f = vlm_model_flops(&d, 0, 0), td = time_model(&d, B, 0);
	double tm = time_model(&m, B, 0);
	printf("vit-b/32 forward, batch %d: %.2f GFLOP/image, %.1f images/s, "
	    "%.1f GFLOP/s", B, f / 1e9, B / td, f * B / td / 1e9);
	if (peak > 0)
		printf(" = %.0f%% of SGEMM peak", 100 * f * B / td / 1e9 / peak);
	printf("\n");
	printf("vit-b/32 MoE twin (E=8, K=1, every 2nd block) forward / dense: "
	    "%.3f\n", tm / td);
	vlm_model_release(&m);
	model_of(&m, "b", 0, 0, 5);
	tm = time_model(&m, B, 0);
	printf("vit-b/32 TokenLearner twin (49 -> 8 tokens after block 5) "
	    "forward / dense: %.3f (FLOPs %.3f)\n", tm / td,
	    vlm_model_flops(&m, 0, 0) / f);
	vlm_model_release(&d);
	vlm_model_release(&m);
}

/* Best ns per element of an activation op, forward (dy NULL) or backward. */
static double
time_act(void (*fwd)(float *, const float *, int64_t),
    void (*bwd)(float *, const float *, const float *, int64_t),
    float *y, const float *dy, const float *x, int64_t n)
{
	double best = 1e30;

	for (int k = 0; k < 3 * reps + 1; k++) {
		double t = now();
		if (bwd)
			bwd(y, dy, x, n);
		else
			fwd(y, x, n);
		t = now() - t;
		if (k && t < best)
			best = t;
	}
	return best * 1e9 / n;
}

static void
bench_gelu(void)
{
	int64_t n = 32 * 50 * 3072;	/* (B, T, 4C) of ViT-B/32 */
	float *x = malloc(n * sizeof(*x)), *y = malloc(n * sizeof(*y));
	float *dy = malloc(n * sizeof(*dy));
	double t[2][3];
	int nt = vlm_threads();

	for (int64_t i = 0; i < n; i++)
		x[i] = (float)((i * 7919) % 2001) / 250 - 4, dy[i] = 1e-3f;
	for (int b = 0; b < 2; b++) {
		void (*bw[2])(float *, const float *, const float *, int64_t) =
		    { vlm_gelu_bwd_ref, vlm_gelu_bwd_cpu };
		t[b][0] = time_act(vlm_gelu_fwd_ref, b ? bw[0] : NULL, y, dy,
		    x, n);
		vlm_threads_set(1);
		t[b][1] = time_act(vlm_gelu_fwd_cpu, b ? bw[1] : NULL, y, dy,
		    x, n);
		vlm_threads_set(0);
		t[b][2] = time_act(vlm_gelu_fwd_cpu, b ? bw[1] : NULL, y, dy,
		    x, n);
	}
	for (int b = 0; b < 2; b++)
		printf("gelu %s, %lld elements, ns/element: erff ref %.2f, "
		    "fast 1 thread %.2f (%.1fx), %d threads %.2f (%.1fx)\n",
		    b ? "bwd" : "fwd", (long long)n, t[b][0], t[b][1],
		    t[b][0] / t[b][1], nt, t[b][2], t[b][0] / t[b][2]);
	free(x), free(y), free(dy);
}

/* Seconds of one batch through encoder e, best of reps after a warm-up. */
static double
time_encode(struct vlm_encoder *e, const float *px, float *out)
{
	double best = 1e30;

	for (int k = 0; k < reps + 1; k++) {
		double t = now();
		if (vlm_encode(e, px, e->batch, out, 1) < 0) {
			fprintf(stderr, "%s\n", vlm_errmsg());
			exit(1);
		}
		t = now() - t;
		if (k && t < best)
			best = t;
	}
	return best;
}

/* The ViT-B/32 image encoder in fp32 and in bf16 (--precision bf16),
 * turn about, 3 rounds: the rates, their ratio, the smallest cosine
 * between the two precisions' features. */
static void
bench_bf16(void)
{
	struct vlm_model m;
	struct vlm_encoder f, h;
	int B = 32, S, E;
	double t32 = 1e30, t16 = 1e30, cmin = 1;

	model_of(&m, "b", 0, 0, -1);
	S = m.cfg.image_size, E = m.cfg.embed_dim;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	float *o32 = malloc(sizeof(float) * B * E);
	float *o16 = malloc(sizeof(float) * B * E);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)((i * 7919) % 255) / 255 - 0.5f;
	if (vlm_encoder_init(&f, &m, 0, B) < 0 ||
	    vlm_encoder_init(&h, &m, 0, B) < 0 ||
	    vlm_encoder_set_precision(&h, VLM_PRECISION_BF16) < 0) {
		fprintf(stderr, "%s\n", vlm_errmsg());
		exit(1);
	}
	for (int round = 0; round < 3; round++) {
		double a = time_encode(&f, px, o32), b = time_encode(&h, px, o16);
		t32 = a < t32 ? a : t32, t16 = b < t16 ? b : t16;
	}
	for (int i = 0; i < B; i++) {
		double c = 0;
		for (int k = 0; k < E; k++)
			c += (double)o32[i * E + k] * o16[i * E + k];
		cmin = c < cmin ? c : cmin;
	}
	printf("vit-b/32 image encoder, batch %d, turn about: fp32 %.1f "
	    "images/s, bf16 %.1f images/s, bf16 / fp32 %.2f; min cosine "
	    "%.6f\n", B, B / t32, B / t16, t32 / t16, cmin);
	vlm_encoder_release(&f), vlm_encoder_release(&h);
	vlm_model_release(&m);
	free(px), free(o32), free(o16);
}

/* Wall and process CPU seconds of one 2048^3 SGEMM, C = A B^T: OpenBLAS
 * itself on nt threads (its own threading) when tiled is 0, else
 * vlm_gemm_cpu's tiles on the vlm pool. */
static void
time_sgemm(int tiled, int nt, double *wall, double *cpu)
{
	int n = 2048;
	float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) *
	    n * n), *c = malloc(sizeof(float) * n * n);

	for (int i = 0; i < n * n; i++)
		a[i] = (float)(i % 61) / 61, b[i] = (float)(i % 67) / 67;
	*wall = *cpu = 1e30;
	for (int r = 0; r < 3; r++) { /* the first warms up */
		double t = now(), u = cpu_now();
		if (tiled)
			vlm_gemm_cpu(0, 1, n, n, n, 1, a, n, b, n, 0, c, n);
		else {
			openblas_set_num_threads(nt);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n,
			    n, n, 1, a, n, b, n, 0, c, n);
			openblas_set_num_threads(1);
		}
		t = now() - t, u = cpu_now() - u;
		if (r && t < *wall)
			*wall = t;
		if (r && u < *cpu)
			*cpu = u;
	}
	free(a), free(b), free(c);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Wall and process CPU seconds of one ViT-B/32 block's four linear
 * layers on R rows (vlm_linear_fwd_cpu: QKV, out, fc, proj), and their
 * FLOPs in *fl. */
static void
time_linears(int R, double *wall, double *cpu, double *fl)
{
	static const int io[4][2] = { { 768, 2304 }, { 768, 768 },
		{ 768, 3072 }, { 3072, 768 } };
	size_t n = (size_t)R * 3072;
	float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
	float *w = malloc(sizeof(float) * 3072 * 768), *b = calloc(3072, 4);

	for (size_t i = 0; i < n; i++)
		x[i] = (float)(i % 61) / 61;
	for (int i = 0; i < 3072 * 768; i++)
		w[i] = (float)(i % 67) / 670;
	*fl = 0;
	for (int l = 0; l < 4; l++)
		*fl += 2.0 * R * io[l][0] * io[l][1];
	*wall = now(), *cpu = cpu_now();
	for (int l = 0; l < 4; l++)
		vlm_linear_fwd_cpu(y, x, w, b, R, io[l][0], io[l][1]);
	*wall = now() - *wall, *cpu = cpu_now() - *cpu;
	free(x), free(y), free(w), free(b);
}

/*
 * The end-to-end ratio of the ViT-B/32 image forward (batch 32) to
 * SGEMM, rounds turn about (SGEMM, model, SGEMM, ...), medians: model
 * GFLOP/s over OpenBLAS's own 2048^3 SGEMM GFLOP/s (its threading, the
 * same thread count; per CPU-second, its one-thread rate, as its idle
 * threads spin) and over vlm_gemm_cpu's tiles, in wall time and in
 * process CPU time (robust to other processes on the cores); and a
 * block's four linear layers alone at the forward's shapes (1600 rows),
 * the GEMMs' own shortfall, and their share of the forward's CPU time.
 */
static void
bench_ratio(int rounds)
{
	struct vlm_model d;
	int B = 32, nt = vlm_threads(), S;
	double f, gf = 2.0 * 2048 * 2048 * 2048;
	double q[6][2][16], w, u, lf;
	/* [blas, tiles, model, model / blas, linears, linears / blas]
	 * [wall, cpu] */

	if (rounds > 16)
		rounds = 16;
	if (rounds < 1)
		rounds = 1;
	model_of(&d, "b", 0, 0, -1);
	f = vlm_model_flops(&d, 0, 0) * B, S = d.cfg.image_size;
	int R = B * vlm_config_image_tokens(&d.cfg);	/* token rows */
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	struct vlm_run *r = vlm_run_new(&d, B, 0, 0);
	struct vlm_wpack wk = { .copies = 1 }; /* d is not a file */
	if (!getenv("BENCH_NOPACK"))
		vlm_run_set_wpack(r, &wk);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)((i * 7919) % 255) / 255 - 0.5f;
	vlm_forward(r, &d, px, NULL);	/* warm-up */
	for (int k = 0; getenv("BENCH_FORWARDS") && k < atoi(getenv(
	    "BENCH_FORWARDS")); k++) /* just forwards, for perf record */
		vlm_forward(r, &d, px, NULL);
	for (int k = 0; k < rounds; k++) {
		time_sgemm(0, nt, &w, &u);
		q[0][0][k] = gf / w / 1e9;
		if (nt > 1) /* its idle threads spin: CPU time of 1 thread */
			time_sgemm(0, 1, &u, &u);
		q[0][1][k] = gf / u / 1e9;
		time_sgemm(1, nt, &w, &u);
		q[1][0][k] = gf / w / 1e9, q[1][1][k] = gf / u / 1e9;
		w = now(), u = cpu_now();
		vlm_forward(r, &d, px, NULL);
		w = now() - w, u = cpu_now() - u;
		q[2][0][k] = f / w / 1e9, q[2][1][k] = f / u / 1e9;
		q[3][0][k] = q[2][0][k] / q[0][0][k];
		q[3][1][k] = q[2][1][k] / q[0][1][k];
		time_linears(R, &w, &u, &lf);
		q[4][0][k] = lf / w / 1e9, q[4][1][k] = lf / u / 1e9;
		q[5][0][k] = q[4][0][k] / q[0][0][k];
		q[5][1][k] = q[4][1][k] / q[0][1][k];
	}
	for (int i = 0; i < 6; i++)
		for (int c = 0; c < 2; c++)
			qsort(q[i][c], rounds, sizeof(double), cmp_double);
	int h = rounds / 2;
	printf("vit-b/32 forward batch %d (weights packed %s), %d threads, "
	    "%d rounds turn about, medians: model %.1f GFLOP/s wall, %.1f "
	    "per CPU-s; OpenBLAS sgemm 2048^3 %.1f wall, %.1f per CPU-s (1 thread); tiles %.1f "
	    "wall, %.1f per CPU-s\n", B, wk.n ? "once" : "per call", nt,
	    rounds, q[2][0][h], q[2][1][h],
	    q[0][0][h], q[0][1][h], q[1][0][h], q[1][1][h]);
	printf("vit-b/32 end to end / OpenBLAS sgemm: %.1f%% wall, %.1f%% "
	    "CPU time (per-round ratios' medians)\n", 100 * q[3][0][h],
	    100 * q[3][1][h]);
	printf("vit-b/32 block's 4 linear layers alone (%d rows, %.2f "
	    "GFLOP): %.1f GFLOP/s per CPU-s = %.1f%% of OpenBLAS sgemm; "
	    "%d blocks of them = %.0f%% of the forward's FLOPs\n",
	    R, lf / 1e9, q[4][1][h], 100 * q[5][1][h],
	    d.cfg.vision.layers, 100 * lf * d.cfg.vision.layers / f);
	vlm_run_free(r);
	vlm_wpack_release(&wk);
	vlm_model_release(&d);
	free(px);
}

/*
 * The ViT-B/32 image forward (batch 32) with its linear weights packed
 * per call (as training) and packed once (as vlm-embed), alternated in
 * this process, pairs medians: the rates per CPU-second and wall-second
 * and the speed ratio of each pair.
 */
static void
bench_pack(int pairs)
{
	struct vlm_model d;
	struct vlm_wpack wk = { .copies = 1 }; /* d is not a file */
	int B = 32, S;
	double q[4][32], f;

	pairs = pairs < 1 ? 1 : pairs > 32 ? 32 : pairs;
	model_of(&d, "b", 0, 0, -1);
	f = vlm_model_flops(&d, 0, 0) * B, S = d.cfg.image_size;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	struct vlm_run *r[2] = { vlm_run_new(&d, B, 0, 0),
		vlm_run_new(&d, B, 0, 0) };
	vlm_run_set_wpack(r[1], &wk);
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)((i * 7919) % 255) / 255 - 0.5f;
	vlm_forward(r[0], &d, px, NULL), vlm_forward(r[1], &d, px, NULL);
	for (int k = 0; k < pairs; k++) {
		double w[2], u[2];
		for (int p = 0; p < 2; p++) {
			w[p] = now(), u[p] = cpu_now();
			vlm_forward(r[p], &d, px, NULL);
			w[p] = now() - w[p], u[p] = cpu_now() - u[p];
		}
		q[0][k] = f / u[1] / 1e9, q[1][k] = f / w[1] / 1e9;
		q[2][k] = u[0] / u[1], q[3][k] = w[0] / w[1];
	}
	for (int i = 0; i < 4; i++)
		qsort(q[i], pairs, sizeof(double), cmp_double);
	printf("vit-b/32 forward batch 32, %d threads, weights packed once "
	    "(%d weights) against per call, %d pairs, medians: %.1f GFLOP/s "
	    "per CPU-s, %.1f wall; speed packed once / per call %.3f CPU "
	    "time, %.3f wall\n", vlm_threads(), wk.n, pairs, q[0][pairs / 2],
	    q[1][pairs / 2], q[2][pairs / 2], q[3][pairs / 2]);
	vlm_run_free(r[0]), vlm_run_free(r[1]);
	vlm_wpack_release(&wk);
	vlm_model_release(&d);
	free(px);
}

static void
bench_train(const char *preset, double peak)
{
	struct vlm_model d, m;
	int B = 64;

	model_of(&d, preset, 0, 0, -1);
	model_of(&m, preset, 1, VLM_MOE_BOTH, -1);
	double f = vlm_model_flops(&d, 0, 0) + vlm_model_flops(&d, 1, 0);
	double td = time_model(&d, B, 1), tm = time_model(&m, B, 1);
	printf("train %-4s batch %d: dense %.1f pairs/s, %.1f GFLOP/s = %.0f%% "
	    "of peak; MoE twin step / dense: %.3f\n", preset, B, B / td,
	    3 * f * B / td / 1e9, 100 * 3 * f * B / td / 1e9 / peak, tm / td);
	vlm_model_release(&d);
	vlm_model_release(&m);
}

int
main(int argc, char **argv)
{
	double peak;
	int a = 1;

	vlm_blas_setup(argc, argv);
	if (argc > a && strcmp(argv[a], "quick") == 0)
		reps = 1, a++;
	if (argc > a && strcmp(argv[a], "bf16") == 0) {
		bench_bf16();
		return 0;
	}
	if (argc > a && strcmp(argv[a], "ratio") == 0) {
		bench_ratio(argc > a + 1 ? atoi(argv[a + 1]) : 5);
		return 0;
	}
	if (argc > a && strcmp(argv[a], "pack") == 0) {
		bench_pack(argc > a + 1 ? atoi(argv[a + 1]) : 9);
		return 0;
	}
	if (argc > a && strcmp(argv[a], "gelu") == 0) {
		bench_gelu();
		return 0;
	}
	if (argc > a && strcmp(argv[a], "vitb-only") == 0) {
		bench_vitb(0); /* images/s for bench-embed.sh */
		return 0;
	}
	peak = sgemm_peak();
	if (argc > a + 1 && strcmp(argv[a], "train") == 0) {
		bench_train(argv[a + 1], peak);
		return 0;
	}
	printf("OpenBLAS %s kernels; sgemm peak (2048^3, %d threads, "
	    "vlm_gemm_cpu tiles): %.1f GFLOP/s\n", openblas_get_corename(),
	    vlm_threads(), peak);
	bench_vitb(peak);
	bench_ratio(reps);	/* the end-to-end ratio to OpenBLAS's SGEMM */
	bench_gelu();
	bench_bf16();
	bench_train("tiny", peak);
	bench_train("s", peak);
	return 0;
}
