/*
 * bench-gpu.c - the cuda backend's speed, as ratios measured in the same
 * run (tests/bench-gpu.sh runs it; not part of make check):
 *  - the cuBLAS SGEMM rate of a large square product (fp32, no TF32),
 *    the peak the model FLOP utilisation (MFU) is measured against;
 *  - training steps (forward, loss, backward; AdamW stays on the host
 *    for now) of a ViT-B/16-shaped one-tower LIMoE (width 768, 12
 *    blocks, E = 8, K = 1, MoE every other block, 224 px images and
 *    77-token texts through the same tower) and of its dense twin:
 *    pairs/s, model GFLOP/s (3x forward), MFU, MoE step over dense;
 *  - a ViT-B/32 image tower forward at batch 256: images/s (the model
 *    alone, for vlm-embed end to end in bench-gpu.sh).
 * Precision: fp32 only (bf16 is not implemented on the GPU yet).
 * Usage: bench-gpu [quick] [B]   (B: training batch, default 128)
 * Where cuda does not load, it says so and exits 0. BENCH_BACKEND names
 * another backend (e.g. cpu, to check the program with a small B).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "vlm.h"

static int reps = 3;

/* Best SGEMM rate (GFLOP/s) of an n^3 product on the device. */
static double
gemm_peak(const struct vlm_backend *be, int n)
{
	size_t bytes = (size_t)n * n * sizeof(float);
	float *a = be->alloc(bytes), *b = be->alloc(bytes);
	float *c = be->alloc(bytes);
	double best = 0;

	if (!a || !b || !c)
		return 0;
	for (int r = 0; r < reps + 2; r++) {
		double t = vlm_now();
		be->gemm(0, 1, n, n, n, 1, a, n, b, n, 0, c, n);
		be->sync();
		t = vlm_now() - t;
		if (r && 2.0 * n * n * n / t / 1e9 > best)
			best = 2.0 * n * n * n / t / 1e9;
	}
	be->free(a), be->free(b), be->free(c);
	return best;
}

/* ViT-B/16-shaped one-tower LIMoE (experts 8) or its dense twin (0). */
static void
limoe_b16(struct vlm_model *m, int experts)
{
	struct vlm_config c;

	vlm_config_preset(&c, "b");
	c.patch_size = 16;
	c.family = VLM_ONE_TOWER;
	c.text = c.vision;
	c.text.pool = VLM_POOL_EOT;
	if (experts) {
		c.moe.experts = experts, c.moe.top_k = 1, c.moe.every = 2;
		c.moe.towers = VLM_MOE_BOTH;
		c.aux.limoe = 1;
		c.aux.importance = c.aux.load = c.aux.zloss = 1;
		c.aux.local_img = c.aux.local_txt = 1;
		c.aux.global_img = c.aux.global_txt = 1;
	}
	if (vlm_model_init(m, &c) < 0) {
		fprintf(stderr, "bench-gpu: %s\n", vlm_errmsg());
		exit(1);
	}
	vlm_model_randomize(m, 1);
}

/* Best seconds of a forward (train: + loss + backward) at batch B. */
static double
time_model(const struct vlm_backend *be, struct vlm_model *m, int B,
    int train)
{
	int S = m->cfg.image_size, T = m->cfg.context;
	float *px = malloc(sizeof(float) * B * 3 * S * S);
	int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));
	struct vlm_run *r = vlm_run_new_on(be, m, B, train ? B : 0, train);
	float *g = train ? malloc(m->nfloats * sizeof(float)) : NULL;
	double best = 1e30;

	if (!r || !px || !ids || (train && !g)) {
		fprintf(stderr, "bench-gpu: %s\n", r ? "out of memory" :
		    vlm_errmsg());
		exit(1);
	}
	for (int i = 0; i < B * 3 * S * S; i++)
		px[i] = (float)((i * 7919) % 255) / 255 - 0.5f;
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < 9; t++)
			ids[b * T + t] = 1 + (b * 31 + t * 7) % 200;
		ids[b * T + 9] = m->cfg.vocab - 1;
	}
	for (int k = 0; k < reps + 1; k++) {
		double t = vlm_now();
		if (vlm_forward(r, m, px, train ? ids : NULL) < 0 ||
		    (train && (vlm_run_loss(r, m, NULL) < 0 ||
		    vlm_backward(r, m, g) < 0))) {
			fprintf(stderr, "bench-gpu: %s\n", vlm_errmsg());
			exit(1);
		}
		t = vlm_now() - t;
		if (k && t < best)
			best = t;
	}
	vlm_run_free(r);
	free(px), free(ids), free(g);
	return best;
}

static void
bench_train(const struct vlm_backend *be, int B, double peak)
{
	struct vlm_model d, m;
	double f, td, tm;

	limoe_b16(&d, 0);
	limoe_b16(&m, 8);
	/* one tower: images and texts both pass it; MoE FLOPs = dense's
	 * (K = 1) plus the router */
	f = vlm_model_flops(&d, 0, 0) + vlm_model_flops(&d, 1, 0);
	td = time_model(be, &d, B, 1);
	tm = time_model(be, &m, B, 1);
	printf("train vit-b/16 one-tower, batch %d pairs, fp32: dense %.3f s "
	    "= %.1f pairs/s, %.0f GFLOP/s, MFU %.1f%% of SGEMM\n", B, td,
	    B / td, 3 * f * B / td / 1e9, 100 * 3 * f * B / td / 1e9 / peak);
	printf("train vit-b/16 one-tower LIMoE (E=8, K=1, every 2nd block): "
	    "%.3f s = %.1f pairs/s, MFU %.1f%%; MoE step / dense: %.3f\n",
	    tm, B / tm, 100 * 3 * f * B / tm / 1e9 / peak, tm / td);
	vlm_model_release(&d);
	vlm_model_release(&m);
}

static void
bench_embed(const struct vlm_backend *be)
{
	struct vlm_model m;
	struct vlm_config c;
	int B = 256;

	vlm_config_preset(&c, "b");
	if (vlm_model_init(&m, &c) < 0)
		exit(1);
	vlm_model_randomize(&m, 1);
	double t = time_model(be, &m, B, 0);
	printf("vit-b/32 image forward, batch %d: %.1f images/s (model "
	    "alone)\n", B, B / t);
	vlm_model_release(&m);
}

int
main(int argc, char **argv)
{
	const struct vlm_backend *be;
	int a = 1, B = 128;
	char dev[256];
	const char *name;
	double peak;

	vlm_blas_setup(argc, argv);
	if (argc > a && strcmp(argv[a], "quick") == 0)
		reps = 1, a++;
	if (argc > a)
		B = atoi(argv[a]);
	name = getenv("BENCH_BACKEND");
	if (!(be = vlm_backend_get(name && *name ? name : "cuda"))) {
		printf("bench-gpu: skipped (%s)\n", vlm_errmsg());
		return 0;
	}
	if (be->device)
		vlm_cuda_devices(dev, sizeof(dev));
	peak = gemm_peak(be, be->device ? 8192 : 1024);
	printf("%s: %s SGEMM (fp32): %.0f GFLOP/s\n", be->name, be->device ?
	    dev : "host", peak);
	bench_train(be, B, peak);
	bench_embed(be);
	return 0;
}
