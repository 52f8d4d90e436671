/*
 * replay.c - a main() for the fuzz harnesses without libFuzzer: calls
 * LLVMFuzzerTestOneInput once on each file named (a directory: on each
 * file in it). `make check` builds every harness with it and replays
 * the seed corpus and every crash ever found, under ASan and UBSan with
 * SANITIZE=1. A crash aborts; otherwise it prints how many it ran.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Run one input file; -1 if it cannot be read. */
static int
replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0, got;

	if (!f) {
		perror(path);
		return -1;
	}
	do {
		if (n == cap && !(buf = realloc(buf, cap = 2 * cap + 4096))) {
			fprintf(stderr, "replay: out of memory\n");
			exit(1);
		}
		n += got = fread(buf + n, 1, cap - n, f);
	} while (got > 0);
	if (ferror(f)) {
		perror(path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* an exact-size copy, so that ASan sees reads past the input */
	uint8_t *in = malloc(n ? n : 1);
	if (!in)
		exit(1);
	memcpy(in, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(in, n);
	free(in);
	return 0;
}

static int
regular(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Every file in dir (hidden ones skipped), in name order; how many ran,
 * -1 on an error. */
static int
replay_dir(const char *dir)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, regular, alphasort), ran = 0;
	char path[4096];

	if (n < 0) {
		perror(dir);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
		if (ran >= 0)
			ran = replay(path) < 0 ? -1 : ran + 1;
		free(ents[i]);
	}
	free(ents);
	return ran;
}

int
main(int argc, char **argv)
{
	struct stat st;
	int total = 0, k, rc = 0;

	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			rc = 1;
			continue;
		}
		k = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) :
		    replay(argv[i]) < 0 ? -1 : 1;
		if (k < 0)
			rc = 1;
		else
			total += k;
	}
	fprintf(stderr, "%s: %d inputs replayed\n", argv[0], total);
	return rc;
}
