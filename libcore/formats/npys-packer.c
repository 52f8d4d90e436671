/*
 * npys-packer.c - the packed form written straight from a producer.
 *
 * A tool asked for `-o FILE.npy` writes the ordinary embedding stream
 * into a pipe; a thread on the other end reads it and packs it with
 * vlm_npys_pack(). So the packed files come from the one code path that
 * checks streams, need no temporary stream on disk and no second pass,
 * and appear (atomically) only when the stream ended with its end record:
 * a producer that gives up simply closes the pipe early, the reader sees
 * a truncated stream and leaves nothing behind.
 *
 * The thread reads until end of file even after a failure, so the
 * producer never blocks on a full pipe nor gets SIGPIPE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/formats.h"

struct vlm_npys_pack_job {
	FILE *in;        /* the pipe's read end */
	char *out;
	pthread_t tid;
	int rc;
	char msg[1024];  /* the thread's error message */
};

/* The reader side: pack, then drain whatever is left. */
static void *
pack_thread(void *arg)
{
	struct vlm_npys_pack_job *j = arg;
	struct vlm_npys_reader r;
	char buf[4096];

	j->rc = vlm_npys_reader_init(&r, j->in, j->out);
	if (j->rc == 0)
		j->rc = vlm_npys_pack(&r, j->out);
	if (j->rc < 0)
		snprintf(j->msg, sizeof(j->msg), "%s", vlm_errmsg());
	vlm_npys_reader_release(&r);
	while (fread(buf, 1, sizeof(buf), j->in) > 0)
		;
	fclose(j->in);
	return NULL;
}

/* Can files be created beside out? Fail now rather than after the work. */
static int
probe(const char *out)
{
	struct vlm_atomic a;

	if (strcmp(out, "-") == 0)
		return vlm_error("'-': packed output needs a file name");
	if (vlm_atomic_open(&a, out) < 0)
		return -1;
	vlm_atomic_abort(&a);
	return 0;
}

int
vlm_npys_packer_open(struct vlm_npys_packer *p, const char *out)
{
	struct vlm_npys_pack_job *j;
	int fd[2];

	memset(p, 0, sizeof(*p));
	if (probe(out) < 0)
		return -1;
	if (!(j = calloc(1, sizeof(*j))) || !(j->out = strdup(out))) {
		free(j);
		return vlm_error("'%s': out of memory", out);
	}
	if (pipe(fd) != 0) {
		free(j->out);
		free(j);
		return vlm_error("'%s': pipe: %s", out, strerror(errno));
	}
	j->in = fdopen(fd[0], "rb");
	p->f = fdopen(fd[1], "wb");
	if (!j->in || !p->f || pthread_create(&j->tid, NULL, pack_thread,
	    j) != 0) {
		j->in ? fclose(j->in) : close(fd[0]);
		p->f ? fclose(p->f) : close(fd[1]);
		free(j->out);
		free(j);
		p->f = NULL;
		return vlm_error("'%s': cannot start the packer", out);
	}
	p->job = j;
	return 0;
}

int
vlm_npys_packer_close(struct vlm_npys_packer *p)
{
	struct vlm_npys_pack_job *j = p->job;
	int rc, e = 0;

	if (!j)
		return 0;
	if (fclose(p->f) != 0)
		e = errno;
	pthread_join(j->tid, NULL);
	rc = j->rc;
	if (rc < 0)
		vlm_error("%s", j->msg);
	else if (e)
		rc = vlm_error("'%s': %s", j->out, strerror(e));
	free(j->out);
	free(j);
	memset(p, 0, sizeof(*p));
	return rc;
}
