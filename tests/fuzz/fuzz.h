/*
 * fuzz.h - what the fuzz harnesses (tests/fuzz/fuzz-*.c) share: the
 * libFuzzer entry point and the input as a file or a stream, for the
 * readers that take a path or a FILE.
 *
 * Each harness is built twice: with clang -fsanitize=fuzzer (make fuzz)
 * and with gcc plus replay.c, which calls LLVMFuzzerTestOneInput on
 * each file it is given (make check replays the corpus and crashes).
 */
#ifndef VLM_FUZZ_H
#define VLM_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Pixel cap of the image harnesses: a 1 Mpixel image decodes fast. */
#define FUZZ_MAX_PIXELS (1 << 20)

static char fuzz_dir_path[64];

static inline void
fuzz_cleanup(void)
{
	char cmd[96];

	/* the directory holds only what the harness wrote: names we chose */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir_path);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}

/* This process's scratch directory (made on first use, removed at exit). */
static inline const char *
fuzz_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	if (fuzz_dir_path[0])
		return fuzz_dir_path;
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%.40s/vlm-fuzz.XXXXXX",
	    tmp && *tmp && strlen(tmp) <= 40 ? tmp : "/tmp");
	if (!mkdtemp(fuzz_dir_path)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(fuzz_cleanup);
	return fuzz_dir_path;
}

/* Write data to the scratch file called name; its path (static). */
static inline const char *
fuzz_file(const char *name, const uint8_t *data, size_t size)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fuzz_dir(), name);
	if (!(f = fopen(path, "wb")) || fwrite(data, 1, size, f) != size ||
	    fclose(f) != 0) {
		perror(path);
		abort();
	}
	return path;
}

/* data as a read-only stream (fmemopen refuses size 0: use "" then). */
static inline FILE *
fuzz_stream(const uint8_t *data, size_t size)
{
	FILE *f = fmemopen(size ? (void *)data : (void *)"", size ? size : 1,
	    "rb");

	if (!f) {
		perror("fuzz: fmemopen");
		abort();
	}
	if (!size)
		getc(f); /* an empty stream: at its end */
	return f;
}

/* data as a NUL-terminated string (malloc'ed). */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif /* VLM_FUZZ_H */
