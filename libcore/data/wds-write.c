/*
 * wds-write.c - writing webdataset tar shards: samples of named members
 * (KEY.jpg, KEY.txt, KEY.cls ...) into DIR/0.tar, DIR/1.tar, ... of at
 * most maxcount samples each, with DIR/nshards.txt, as CLIP_benchmark's
 * exporter lays them out. POSIX ustar members (libarchive), mode 0644,
 * mtime 0, so the same input gives the same bytes. Each shard is written
 * under a temporary name and renamed when complete; on failure the
 * shards already written are removed.
 */
#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"

int
vlm_shard_writer_init(struct vlm_shard_writer *w, const char *dir,
    int maxcount)
{
	memset(w, 0, sizeof(*w));
	if (maxcount < 1)
		return vlm_error("shards of %d samples", maxcount);
	if (!(w->dir = strdup(dir)))
		return vlm_error("out of memory");
	w->maxcount = maxcount;
	return 0;
}

/* the path of shard k (malloc'ed) */
static char *
shard_path(const struct vlm_shard_writer *w, int k)
{
	char *p;

	return asprintf(&p, "%s/%d.tar", w->dir, k) < 0 ? NULL : p;
}

static int
shard_open(struct vlm_shard_writer *w)
{
	char *path = shard_path(w, w->nshards);
	int rc = 0;

	if (!path)
		return vlm_error("out of memory");
	if (vlm_atomic_open(&w->out, path) < 0)
		rc = -1;
	else if (!(w->a = archive_write_new()) ||
	    archive_write_set_format_ustar(w->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
	    archive_write_open_FILE(w->a, w->out.f) != ARCHIVE_OK) {
		rc = vlm_error("'%s': %s", path, w->a ?
		    archive_error_string(w->a) : "out of memory");
		if (w->a)
			archive_write_free(w->a);
		w->a = NULL;
		vlm_atomic_abort(&w->out);
	}
	free(path);
	w->count = 0;
	return rc;
}

static int
shard_close(struct vlm_shard_writer *w)
{
	int rc = 0;

	if (!w->a)
		return 0;
	if (archive_write_close(w->a) != ARCHIVE_OK)
		rc = vlm_error("'%s': %s", w->out.path,
		    archive_error_string(w->a));
	archive_write_free(w->a);
	w->a = NULL;
	if (rc < 0) {
		vlm_atomic_abort(&w->out);
		return -1;
	}
	if (vlm_atomic_commit(&w->out) < 0)
		return -1;
	w->nshards++;
	return 0;
}

int
vlm_shard_writer_add(struct vlm_shard_writer *w, const char *key, int n,
    const char *const *ext, const void *const *data, const size_t *size)
{
	struct archive_entry *e;
	char name[512];

	if (w->a && w->count == w->maxcount && shard_close(w) < 0)
		return -1;
	if (!w->a && shard_open(w) < 0)
		return -1;
	if (!(e = archive_entry_new()))
		return vlm_error("out of memory");
	for (int i = 0; i < n; i++) {
		if ((size_t)snprintf(name, sizeof(name), "%s.%s", key,
		    ext[i]) >= sizeof(name)) {
			archive_entry_free(e);
			return vlm_error("'%s': member name too long", key);
		}
		archive_entry_clear(e);
		archive_entry_set_pathname(e, name);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, size[i]);
		if (archive_write_header(w->a, e) != ARCHIVE_OK ||
		    archive_write_data(w->a, data[i], size[i]) !=
		    (la_ssize_t)size[i]) {
			archive_entry_free(e);
			return vlm_error("'%s': %s: %s", w->out.path, name,
			    archive_error_string(w->a));
		}
	}
	archive_entry_free(e);
	w->count++;
	w->nsamples++;
	return 0;
}

int
vlm_shard_writer_finish(struct vlm_shard_writer *w)
{
	struct vlm_atomic n;
	char *path;
	int rc;

	if (shard_close(w) < 0)
		return -1;
	if (asprintf(&path, "%s/nshards.txt", w->dir) < 0)
		return vlm_error("out of memory");
	rc = vlm_atomic_open(&n, path);
	if (rc == 0 && fprintf(n.f, "%d\n", w->nshards) < 0) {
		vlm_atomic_abort(&n);
		rc = vlm_error("'%s': write error", path);
	} else if (rc == 0) {
		rc = vlm_atomic_commit(&n);
	}
	free(path);
	return rc;
}

void
vlm_shard_writer_release(struct vlm_shard_writer *w, int remove)
{
	if (w->a) {
		archive_write_free(w->a);
		vlm_atomic_abort(&w->out);
	}
	for (int k = 0; remove && k < w->nshards; k++) {
		char *p = shard_path(w, k);
		if (p)
			unlink(p);
		free(p);
	}
	free(w->dir);
	memset(w, 0, sizeof(*w));
}
