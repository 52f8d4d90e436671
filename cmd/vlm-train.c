/*
 * vlm-train - train dense and sparse-MoE image-text models on the CPU.
 *
 * Reads pairs files (TSV/CSV: image path, caption) or webdataset shards,
 * indexed or streamed (--shuffle-buffer); several sources mixed by weight
 * or adaptively, cmd/train-sources.c) and a model (preset,
 * config JSON, or model file to fine-tune); writes RUN_DIR/metrics.jsonl
 * and checkpoints RUN_DIR/ckpt-<step>/ with RUN_DIR/latest, the final
 * model in RUN_DIR/latest/model.safetensors.
 */
#include <err.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cmd.h"
#include "kernels.h"
#include "base/base.h"
#include "train.h"

static const char usage[] =
    "usage: vlm-train --data pairs.tsv -m preset|config.json|model -o run "
    "[options]\n"
    "       vlm-train --resume run [options]\n"
    "       vlm-train -h | --help | --version\n";

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
	stop_signal = sig;
}

enum { O_LR = 256, O_WD, O_B1, O_B2, O_EPS, O_WARMUP, O_CONST, O_CLIP,
	O_SEED, O_LOCKI, O_LOCKT, O_TOK, O_VOCAB, O_LOG, O_SAVE, O_KEEP,
	O_RESUME, O_MAXBAD, O_ALPHA, O_IMGKEY, O_CAPKEY, O_SEP, O_STOP,
	O_EPOCHS, O_SET, O_VAL, O_VALEVERY, O_CROP, O_HFLIP, O_JITTER, O_HUE, O_GRAY, O_LORA_R, O_LORA_A,
	O_VERSION, O_WEIGHTS, O_ADAPT, O_TAU, O_DECAY, O_FLOOR, O_ACCUM,
	O_DEVICE, O_EP, O_WCAP, O_WCLIP, O_STAGE, O_ITC, O_ITM, O_MLM, O_QA,
	O_SHUFBUF, O_SHARDORDER };

static const struct option opts[] = {
	{ "data", required_argument, NULL, 'd' },
	{ "model", required_argument, NULL, 'm' },
	{ "out", required_argument, NULL, 'o' },
	{ "batch-size", required_argument, NULL, 'b' },
	{ "steps", required_argument, NULL, 'n' },
	{ "threads", required_argument, NULL, 'j' },
	{ "epochs", required_argument, NULL, O_EPOCHS },
	{ "set", required_argument, NULL, O_SET },
	{ "lr", required_argument, NULL, O_LR },
	{ "wd", required_argument, NULL, O_WD },
	{ "beta1", required_argument, NULL, O_B1 },
	{ "beta2", required_argument, NULL, O_B2 },
	{ "eps", required_argument, NULL, O_EPS },
	{ "warmup", required_argument, NULL, O_WARMUP },
	{ "constant-lr", no_argument, NULL, O_CONST },
	{ "grad-clip", required_argument, NULL, O_CLIP },
	{ "seed", required_argument, NULL, O_SEED },
	{ "lock-image", no_argument, NULL, O_LOCKI },
	{ "lock-text", no_argument, NULL, O_LOCKT },
	{ "tokenizer", required_argument, NULL, O_TOK },
	{ "vocab-size", required_argument, NULL, O_VOCAB },
	{ "log-every", required_argument, NULL, O_LOG },
	{ "verbose", no_argument, NULL, 'v' },
	{ "save-every", required_argument, NULL, O_SAVE },
	{ "keep", required_argument, NULL, O_KEEP },
	{ "stop-at", required_argument, NULL, O_STOP },
	{ "resume", required_argument, NULL, O_RESUME },
	{ "max-bad", required_argument, NULL, O_MAXBAD },
	{ "alpha", required_argument, NULL, O_ALPHA },
	{ "csv-img-key", required_argument, NULL, O_IMGKEY },
	{ "csv-caption-key", required_argument, NULL, O_CAPKEY },
	{ "csv-separator", required_argument, NULL, O_SEP },
	{ "val-data", required_argument, NULL, O_VAL },
	{ "val-every", required_argument, NULL, O_VALEVERY },
	{ "crop-scale", required_argument, NULL, O_CROP },
	{ "hflip", no_argument, NULL, O_HFLIP },
	{ "color-jitter", required_argument, NULL, O_JITTER },
	{ "hue", required_argument, NULL, O_HUE },
	{ "grayscale", required_argument, NULL, O_GRAY },
	{ "data-weights", required_argument, NULL, O_WEIGHTS },
	{ "adaptive", no_argument, NULL, O_ADAPT },
	{ "adaptive-tau", required_argument, NULL, O_TAU },
	{ "adaptive-decay", required_argument, NULL, O_DECAY },
	{ "adaptive-floor", required_argument, NULL, O_FLOOR },
	{ "accum-freq", required_argument, NULL, O_ACCUM },
	{ "device", required_argument, NULL, O_DEVICE },
	{ "lora-rank", required_argument, NULL, O_LORA_R },
	{ "lora-alpha", required_argument, NULL, O_LORA_A },
	{ "expert-parallel", required_argument, NULL, O_EP },
	{ "caption-weight", required_argument, NULL, O_WCAP },
	{ "clip-weight", required_argument, NULL, O_WCLIP },
	{ "stage", required_argument, NULL, O_STAGE },
	{ "itc-weight", required_argument, NULL, O_ITC },
	{ "itm-weight", required_argument, NULL, O_ITM },
	{ "mlm-weight", required_argument, NULL, O_MLM },
	{ "qa", required_argument, NULL, O_QA },
	{ "shuffle-buffer", required_argument, NULL, O_SHUFBUF },
	{ "no-shard-shuffle", no_argument, NULL, O_SHARDORDER },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, O_VERSION },
	{ NULL, 0, NULL, 0 }
};

static long long
num(const char *s, const char *what)
{
	char *end;
	long long v = strtoll(s, &end, 0);

	if (*s == '\0' || *end != '\0' || v < 0)
		errx(2, "%s: '%s' is not a non-negative integer", what, s);
	return v;
}

static double
real(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !isfinite(v))
		errx(2, "%s: '%s' is not a number", what, s);
	return v;
}

/* A loss weight: a number >= 0. */
static float
weight(const char *s, const char *what)
{
	double v = real(s, what);

	if (v < 0)
		errx(2, "%s: '%s' is negative", what, s);
	return (float)v;
}

static void
defaults(struct train *t)
{
	memset(t, 0, sizeof(*t));
	vlm_optim_defaults(&t->opt);
	t->o.batch = 64;
	t->o.steps = 1000;
	t->o.lr = 5e-4f;
	t->o.warmup = 100;
	t->o.cosine = 1;
	t->log_every = 10;
	t->max_bad = 0.1;
	t->aug = (struct vlm_augment)VLM_AUGMENT_DEFAULT;
	t->accum = 1;
	t->w_caption = 2; /* OpenCLIP's --coca-caption-loss-weight */
	t->w_clip = 1;
	t->fw = (struct vlm_fusion_weights){ 1, 1, 1 };
	t->so = (struct vlm_sampler_opts){ .tau = 1, .decay = 0.9, .eps = 0.1 };
}

/* The long name of option c, for cmd/train-params.c. */
static const char *
opt_name(int c)
{
	for (const struct option *o = opts; o->name; o++)
		if (o->val == c)
			return o->name;
	return "";
}

static void
parse(struct train *t, int argc, char **argv)
{
	int c;

	t->sets = calloc(argc, sizeof(*t->sets));
	t->src = calloc(argc, sizeof(*t->src));
	while ((c = getopt_long(argc, argv, "d:m:o:b:n:j:hv", opts, NULL)) !=
	    -1) {
		train_params_given(t, opt_name(c));
		switch (c) {
		case 'd':
			t->src[t->nsrc++].path = optarg;
			t->data = t->data ? t->data : optarg;
			break;
		case 'm': t->model = optarg; break;
		case 'o': t->out = optarg; break;
		case 'b': t->o.batch = num(optarg, "--batch-size"); break;
		case 'n': t->o.steps = num(optarg, "--steps"); break;
		case 'j': t->threads = num(optarg, "--threads"); break;
		case O_EPOCHS: t->epochs = num(optarg, "--epochs"); break;
		case O_SET: t->sets[t->nset++] = strdup(optarg); break;
		case O_LR: t->o.lr = real(optarg, "--lr"); break;
		case O_WD: t->opt.wd = real(optarg, "--wd"); break;
		case O_B1: t->opt.beta1 = real(optarg, "--beta1"); break;
		case O_B2: t->opt.beta2 = real(optarg, "--beta2"); break;
		case O_EPS: t->opt.eps = real(optarg, "--eps"); break;
		case O_WARMUP: t->o.warmup = num(optarg, "--warmup"); break;
		case O_CONST: t->o.cosine = 0; break;
		case O_CLIP: t->opt.clip = real(optarg, "--grad-clip"); break;
		case O_SEED: t->seed = num(optarg, "--seed"); break;
		case O_LOCKI: t->lock_image = 1; break;
		case O_LOCKT: t->lock_text = 1; break;
		case O_TOK: t->tokenizer = optarg; break;
		case O_VOCAB: t->vocab_size = num(optarg, "--vocab-size"); break;
		case O_LOG: t->log_every = num(optarg, "--log-every"); break;
		case 'v': t->verbose = 1; break;
		case O_SAVE: t->save_every = num(optarg, "--save-every"); break;
		case O_KEEP: t->keep = num(optarg, "--keep"); break;
		case O_STOP: t->stop_at = num(optarg, "--stop-at"); break;
		case O_RESUME: t->resume = t->out = optarg; break;
		case O_MAXBAD: t->max_bad = real(optarg, "--max-bad"); break;
		case O_IMGKEY: t->csv.img_key = optarg; break;
		case O_CAPKEY: t->csv.caption_key = optarg; break;
		case O_SEP: t->csv.sep = optarg[0]; break;
		case O_VAL: t->val_data = optarg; break;
		case O_VALEVERY: t->val_every = num(optarg, "--val-every"); break;
		case O_WEIGHTS: t->weights = optarg; break;
		case O_ADAPT: t->so.adaptive = 1; break;
		case O_TAU: t->so.tau = real(optarg, "--adaptive-tau"); break;
		case O_DECAY: t->so.decay = real(optarg, "--adaptive-decay");
			break;
		case O_FLOOR: t->so.eps = real(optarg, "--adaptive-floor");
			break;
		case O_ACCUM: t->accum = num(optarg, "--accum-freq"); break;
		case O_DEVICE:
			t->device = cmd_device_arg("--device", optarg);
			break;
		case O_EP: t->ep = num(optarg, "--expert-parallel"); break;
		case O_WCAP: t->w_caption = real(optarg, "--caption-weight");
			break;
		case O_WCLIP: t->w_clip = real(optarg, "--clip-weight"); break;
		case O_STAGE:
			if (strcmp(optarg, "connector") && strcmp(optarg,
			    "experts") && strcmp(optarg, "lora"))
				errx(2, "--stage: connector, experts or lora");
			t->stage = optarg;
			break;
		case O_ITC: t->fw.itc = weight(optarg, "--itc-weight"); break;
		case O_ITM: t->fw.itm = weight(optarg, "--itm-weight"); break;
		case O_MLM: t->fw.mlm = weight(optarg, "--mlm-weight"); break;
		case O_QA: t->qa = optarg; break;
		case O_SHUFBUF:
			t->shuffle_buffer = num(optarg, "--shuffle-buffer");
			break;
		case O_SHARDORDER: t->shard_order = 1; break;
		case O_HFLIP: t->aug.hflip = 1; break;
		case O_JITTER:
			t->aug.jitter = real(optarg, "--color-jitter");
			if (!(t->aug.jitter >= 0 && t->aug.jitter < 1))
				errx(2, "--color-jitter: a fraction in [0, 1)");
			break;
		case O_HUE:
			t->aug.hue = real(optarg, "--hue");
			if (!(t->aug.hue >= 0 && t->aug.hue <= 0.5))
				errx(2, "--hue: a fraction of a turn in [0, 0.5]");
			break;
		case O_GRAY:
			t->aug.gray = real(optarg, "--grayscale");
			if (!(t->aug.gray >= 0 && t->aug.gray <= 1))
				errx(2, "--grayscale: a probability");
			break;
		case O_CROP:
			t->aug.scale_lo = real(optarg, "--crop-scale");
			if (!(t->aug.scale_lo > 0 && t->aug.scale_lo <= 1))
				errx(2, "--crop-scale: a fraction in (0, 1]");
			break;
		case O_ALPHA: /* a model property: --set image_alpha=... */
			if (asprintf(&t->sets[t->nset++], "image_alpha=%s",
			    optarg) < 0)
				errx(1, "out of memory");
			break;
		case O_LORA_R: /* model properties too: lora.rank, lora.alpha */
			if (asprintf(&t->sets[t->nset++], "lora.rank=%lld",
			    num(optarg, "--lora-rank")) < 0)
				errx(1, "out of memory");
			break;
		case O_LORA_A:
			if (asprintf(&t->sets[t->nset++], "lora.alpha=%.9g",
			    real(optarg, "--lora-alpha")) < 0)
				errx(1, "out of memory");
			break;
		case 'h': cmd_usage(usage, 0);
		case O_VERSION: cmd_version("vlm-train");
		default: cmd_usage(usage, 2);
		}
	}
	if (optind != argc || !t->out || (!t->model && !t->resume))
		cmd_usage(usage, 2);
	if (t->resume)
		train_params_resume(t);
	if (!t->data || t->o.batch < 2)
		cmd_usage(usage, 2);
	t->device = cmd_device(t->device);
	train_sources_check(t);
}

/* One vlm-train a run: RUN itself locked, until exit or kill. */
void
train_lock_run(const char *run)
{
	int fd = open(run, O_RDONLY | O_DIRECTORY);

	if (fd < 0)
		err(1, "%s", run);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		errx(1, "'%s': another vlm-train is working on this run", run);
}

/* The training run: a fusion model's with room for its texts (MLM:
 * twice, the masked copies) and fused pairs (ITM 3B, MLM B). */
static struct vlm_run *
train_run(struct train *t)
{
	int B = train_dist_batch(t), itm = t->fw.itm > 0, mlm = t->fw.mlm > 0;

	if (t->m.cfg.fusion.layers <= 0)
		return train_dist_run(t);
	if (t->dist)
		errx(1, "a fusion model trains on one process");
	if (t->qa) /* pairs (image, question) */
		return vlm_run_new_fusion(t->net, B, B, B, 1);
	if (t->fw.itc + t->fw.itm + t->fw.mlm <= 0)
		errx(2, "--itc-weight, --itm-weight, --mlm-weight: all 0");
	return vlm_run_new_fusion(t->net, B, mlm ? 2 * B : B,
	    (itm ? 3 * B : 0) + (mlm ? B : 0), 1);
}

/* Model, data, tokenizer, optimizer: fresh or from RUN/latest. */
static void
setup(struct train *t)
{
	int rank0 = train_dist_rank(t) == 0; /* writes the run directory */

	if (t->resume) {
		if (rank0)
			train_lock_run(t->resume);
		if (train_dist_load(t) < 0 ||
		    (rank0 && vlm_ckpt_prune(t->resume, t->st.step, t->keep) <
		    0))
			errx(1, "%s", vlm_errmsg());
		t->seed = t->st.seed;
	} else {
		if (train_model(t) < 0)
			errx(1, "%s", vlm_errmsg());
		t->st.seed = t->seed;
		vlm_rng_seed(&t->st.rng, t->seed ^ 0x5eed);
		char latest[4096];
		snprintf(latest, sizeof(latest), "%s/latest", t->out);
		if (rank0 && mkdir(t->out, 0777) < 0 && access(t->out, W_OK) < 0)
			err(1, "%s", t->out);
		if (rank0)
			train_lock_run(t->out);
		if (rank0 && access(latest, F_OK) == 0)
			errx(1, "'%s' holds checkpoints of a run already: "
			    "--resume it, or choose another --out", t->out);
	}
	if (train_data(t) < 0 || train_qa_init(t) < 0 ||
	    train_tokenizer(t) < 0 ||
	    (t->val_data && train_val_load(t) < 0))
		errx(1, "%s", vlm_errmsg());
	if (t->epochs)
		t->o.steps = t->epochs * (t->nitems / ((int64_t)t->o.batch *
		    t->accum));
	if (train_lora_init(t) < 0 || !(t->run = train_run(t)) ||
	    !(t->frozen = calloc(t->m.nparams, 1)))
		errx(1, "%s", vlm_errmsg());
	*vlm_run_rng(t->run) = t->st.rng;
	train_freeze(t);
	train_lora_freeze(t);
	/* frozen parameters get no moments, no gradient slab space */
	if (train_dist_optim_init(t) < 0)
		errx(1, "%s", vlm_errmsg());
	train_lora_pack(t);
	if (!(t->grad = malloc((t->ngrad ? t->ngrad : 1) * sizeof(float))) ||
	    (t->accum > 1 && !(t->gacc = malloc((t->ngrad ? t->ngrad : 1) *
	    sizeof(float)))))
		err(1, NULL);
	if (train_loader(t) < 0)
		errx(1, "%s", vlm_errmsg());
	train_dist_setup(t);
}

static void
checkpoint(struct train *t)
{
	t->st.rng = *vlm_run_rng(t->run);
	vlm_loader_cursor(t->loader, &t->st.cursor);
	train_sources_save(t);
	train_dist_save(t);
}

/* Micro-batch m's loss into the mean L, its gradient into t->grad. */
static void
micro_step(struct train *t, int m, struct vlm_loss *L)
{
	const int *src;
	const struct vlm_batch *b = train_next(t, &src);
	/* the gradients are host memory (the run downloads them) */
	const struct vlm_backend *be = vlm_backend_host(
	    vlm_run_backend(t->run));
	struct vlm_loss l;
	float k = 1.0f / t->accum;

	t->micro = m;
	train_dist_forward(t, b, &l, m);
	if (!isfinite(l.total))
		errx(1, "non-finite loss at step %lld; nothing saved over the "
		    "last checkpoint", (long long)t->st.step + 1);
	train_sources_loss(t, src, b->n);
	if (t->accum == 1) {
		*L = l;
		train_dist_backward(t, t->grad);
		return;
	}
	/* plain accumulation: the mean of the micro-batches' gradients */
	train_dist_backward(t, m ? t->gacc : t->grad);
	if (m)
		be->add(t->grad, t->gacc, t->ngrad);
	if (m == t->accum - 1)
		be->scale(t->grad, k, t->ngrad);
	L->total = (m ? L->total : 0) + k * l.total;
	L->contrastive = (m ? L->contrastive : 0) + k * l.contrastive;
	L->aux = (m ? L->aux : 0) + k * l.aux;
	L->itm = (m ? L->itm : 0) + k * l.itm;
	L->itm_acc = (m ? L->itm_acc : 0) + k * l.itm_acc;
	L->mlm = (m ? L->mlm : 0) + k * l.mlm;
	L->mlm_acc = (m ? L->mlm_acc : 0) + k * l.mlm_acc;
	L->qa = (m ? L->qa : 0) + k * l.qa;
	L->qa_acc = (m ? L->qa_acc : 0) + k * l.qa_acc;
	L->logit_scale = l.logit_scale;
}

/* One optimizer step on --accum-freq micro-batches; their mean loss. */
static void
step(struct train *t, struct vlm_loss *L)
{
	float *g; /* the gradient the optimizer reads */

	for (int m = 0; m < t->accum; m++)
		micro_step(t, m, L);
	g = train_lora_grad(t);
	train_dist_grads(t, g, g == t->grad ? t->ngrad : t->opt.pack.n);
	train_dump_grad(t, g);
	vlm_optim_step(&t->opt, &t->m, g, vlm_lr_at(&t->o, t->st.step));
	train_lora_sync(t);
	t->st.step++;
	t->st.samples += (int64_t)t->o.batch * t->accum;
	train_sources_step(t);
}

/* Validation due after this step: every --val-every steps and at the
 * end (stop: the signal every rank stops for), the same on every rank. */
static int
val_due(const struct train *t, int stop)
{
	int64_t s = t->st.step;

	return t->val_data && (s == t->o.steps || s == t->stop_at || stop ||
	    (t->val_every && s % t->val_every == 0));
}

/* After a step: progress, validation when due, a metrics line when due. */
static void
report(struct train *t, const struct vlm_loss *L, double rate, double *last,
    int stop)
{
	int64_t s = t->st.step;
	int end = s == t->o.steps || s == t->stop_at || stop;
	int val = val_due(t, stop);
	double recall[2 * VLM_RECALL_NK];

	train_progress(t, L, rate);
	if (val && train_val(t, recall) < 0)
		errx(1, "%s: %s", t->val_data, vlm_errmsg());
	if (s % t->log_every == 0 || end || val) {
		train_log(t, L, vlm_lr_at(&t->o, s - 1), vlm_now() - *last,
		    rate, val ? recall : NULL);
		*last = vlm_now();
	}
}

void
train_teardown(struct train *t)
{
	vlm_loader_free(t->loader);
	train_sources_free(t);
	vlm_run_free(t->run);
	train_lora_free(t);
	train_qa_free(t);
	train_params_free(t);
	vlm_optim_release(&t->opt);
	vlm_bpe_release(&t->bpe);
	if (t->val_data)
		vlm_pairs_release(&t->val);
	free(t->val_px);
	free(t->val_ids);
	vlm_model_release(&t->m);
	for (int i = 0; i < t->nset; i++)
		free(t->sets[i]);
	free(t->sets);
	free(t->grad);
	free(t->gacc);
	free(t->frozen);
	free(t->warned);
}

int
main(int argc, char **argv)
{
	struct train t;
	struct vlm_loss L;
	char path[4096];
	double t0, last;
	int64_t first, saved;
	int stop = 0; /* the signal every rank stops for (one: this one's) */
	double recall[2 * VLM_RECALL_NK];

	signal(SIGXFSZ, SIG_IGN); /* past ulimit -f: EFBIG, not death */
	vlm_blas_setup(argc, argv);
	defaults(&t);
	train_dist_init(&t, &argc, &argv);
	parse(&t, argc, argv);
	if (train_is_coca(&t))
		return train_coca(&t);
	if (t.stage)
		errx(2, "--stage: for CoCa models only");
	setup(&t);
	snprintf(path, sizeof(path), "%s/metrics.jsonl", t.out);
	if (train_dist_rank(&t) == 0) { /* the others write nothing */
		if (train_params_save(&t) < 0 || (t.resume &&
		    train_log_resume(&t, path) < 0))
			errx(1, "%s", vlm_errmsg());
		if (!(t.metrics = fopen(path, "a")))
			err(1, "%s", path);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	t0 = last = vlm_now();
	first = saved = t.st.step;
	while (t.st.step < t.o.steps && !stop &&
	    (!t.stop_at || t.st.step < t.stop_at)) {
		step(&t, &L);
		if ((stop = train_dist_signal(&t, stop_signal)))
			stop_signal = stop; /* report() logs the last step */
		if (t.metrics)
			report(&t, &L, (t.st.step - first) *
			    (double)t.o.batch * t.accum / (vlm_now() - t0),
			    &last, stop);
		else if (train_dist_shards(&t) > 1 && val_due(&t, stop))
			train_val(&t, recall); /* with rank 0's (experts split) */
		if (t.save_every && t.st.step % t.save_every == 0) {
			checkpoint(&t);
			saved = t.st.step;
		}
	}
	if (isatty(STDERR_FILENO))
		fputc('\n', stderr);
	if (t.st.step != saved)
		checkpoint(&t);
	if (t.metrics && fclose(t.metrics) != 0)
		err(1, "%s", path);
	train_dist_finish(&t);
	train_teardown(&t);
	if (stop || stop_signal)
		return 128 + (stop ? stop : stop_signal);
	return cmd_finish(0);
}
