/*
 * bench-load.c - loading a ViT-B/32 CLIP (preset b, 605 MB of F32
 * weights) the two ways, each in a child process of its own so that its
 * peak RSS is its own:
 *  - mapped: the file as vlm_model_save writes it (data 64-byte aligned);
 *  - copied: the same file as written before alignment (tests/unalign.py),
 *    the path every file took before.
 * For each: inference start-up (vlm_model_load_merged, NaN check
 * included, then one image through an image encoder: what vlm-embed of
 * one image does besides decoding it), and training start-up
 * (vlm_model_load, then every weight written once, as the first
 * optimizer step does: copy-on-write against a copy). Wall and CPU
 * seconds, since these machines are shared and noisy.
 * Usage: bench-load [model.safetensors]  (default: a random one made here)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vlm.h"

/* Seconds of this process's CPU time. */
#define cpu() vlm_clock(CLOCK_PROCESS_CPUTIME_ID)

/* Inference start-up: load for inference, embed one image. */
static int
infer(const char *path)
{
	struct vlm_model m;
	struct vlm_encoder e;
	double t = vlm_now(), c = cpu(), tl, cl;
	float *img, out[1024];
	int S;

	if (vlm_model_load_merged(&m, path) < 0)
		return fprintf(stderr, "%s\n", vlm_errmsg()), 1;
	tl = vlm_now() - t, cl = cpu() - c;
	S = m.cfg.image_size;
	if (!(img = calloc(3 * (size_t)S * S, sizeof(float))) ||
	    m.cfg.embed_dim > 1024 || vlm_encoder_init(&e, &m, 0, 32) < 0 ||
	    vlm_encode(&e, img, 1, out, 1) < 0)
		return fprintf(stderr, "%s\n", vlm_errmsg()), 1;
	printf("  load %.3f s (cpu %.3f s), load + one image %.3f s "
	    "(cpu %.3f s), mapped %d\n", tl, cl, vlm_now() - t, cpu() - c,
	    vlm_model_mapped(&m));
	vlm_encoder_release(&e);
	vlm_model_release(&m);
	free(img);
	return 0;
}

/* Training start-up: load, then write every weight once. */
static int
train(const char *path)
{
	struct vlm_model m;
	double t = vlm_now(), c = cpu(), tl, cl;

	if (vlm_model_load(&m, path) < 0)
		return fprintf(stderr, "%s\n", vlm_errmsg()), 1;
	tl = vlm_now() - t, cl = cpu() - c;
	for (int64_t i = 0; i < m.nfloats; i++)
		m.w[i] *= 0.999f;
	printf("  load %.3f s (cpu %.3f s), load + every weight written "
	    "%.3f s (cpu %.3f s), mapped %d\n", tl, cl, vlm_now() - t,
	    cpu() - c, vlm_model_mapped(&m));
	vlm_model_release(&m);
	return 0;
}

/* Run fn(path) in a child; print its peak RSS. */
static void
child(const char *what, int (*fn)(const char *), const char *path)
{
	struct rusage ru;
	int st;
	pid_t pid;

	printf("%s\n", what);
	fflush(stdout);
	if ((pid = fork()) == 0) {
		int rc = fn(path);
		fflush(stdout);
		_exit(rc);
	}
	if (pid < 0 || wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		printf("  failed\n");
		return;
	}
	printf("  peak RSS %.0f MiB\n", ru.ru_maxrss / 1024.0);
}

/* A random ViT-B/32 saved at path. */
static int
make_model(const char *path)
{
	struct vlm_config c;
	struct vlm_model m;
	int rc;

	vlm_config_preset(&c, "b");
	if (vlm_model_init(&m, &c) < 0)
		return -1;
	vlm_model_randomize(&m, 1);
	rc = vlm_model_save(&m, path);
	vlm_model_release(&m);
	return rc;
}

int
main(int argc, char **argv)
{
	char dir[] = "/tmp/vlm-bench-load.XXXXXX", path[64], old[64];
	char cmd[256];

	if (!mkdtemp(dir))
		return perror("mkdtemp"), 1;
	snprintf(path, sizeof(path), "%s/b.safetensors", dir);
	snprintf(old, sizeof(old), "%s/old.safetensors", dir);
	if (argc > 1 && snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", argv[1],
	    path) < (int)sizeof(cmd) && system(cmd) != 0)
		return fprintf(stderr, "cannot copy %s\n", argv[1]), 1;
	if (argc < 2 && make_model(path) < 0)
		return fprintf(stderr, "%s\n", vlm_errmsg()), 1;
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/unalign.py '%s' "
	    "'%s'", path, old);
	if (system(cmd) != 0)
		old[0] = '\0';
	/* warm the page cache: both files are read as a second run would */
	snprintf(cmd, sizeof(cmd), "cat '%s'/*.safetensors >/dev/null", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not read %s\n", dir);
	child("inference start-up, mapped (64-byte aligned file):", infer,
	    path);
	if (old[0])
		child("inference start-up, copied (the file before "
		    "alignment):", infer, old);
	child("training start-up, mapped copy-on-write:", train, path);
	if (old[0])
		child("training start-up, copied:", train, old);
	else
		printf("copy path skipped: no /usr/bin/python3 for "
		    "tests/unalign.py\n");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0;
}
