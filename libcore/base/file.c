/* file.c - file helpers shared by every tool: atomic output, pickle
 * refusal, whole files mapped or read into memory. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

static const char *pickle_ext[] = { ".pt", ".bin", ".pth", ".ckpt" };

int
vlm_refuse_pickle(const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < sizeof(pickle_ext) / sizeof(*pickle_ext); i++) {
		size_t k = strlen(pickle_ext[i]);
		if (n >= k && strcmp(path + n - k, pickle_ext[i]) == 0)
			return vlm_error("'%s': PyTorch pickle files can run "
			    "code and are not read; save the state dict with "
			    "safetensors (safetensors.torch.save_file) and "
			    "pass the .safetensors file", path);
	}
	return 0;
}

/*
 * A path that exists and is no regular file (a device such as /dev/full,
 * a FIFO, /dev/stdout on a pipe) is written in place: renaming a
 * temporary file over it would replace the device itself.
 */
static int
special_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && !S_ISREG(st.st_mode);
}

/* The file a symbolic link leads to, so the rename replaces that file
 * and not the link (/dev/stdout on a regular file); else a copy. */
static char *
target_alloc(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		return realpath(path, NULL);
	return strdup(path);
}

int
vlm_atomic_open(struct vlm_atomic *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	if (strcmp(path, "-") == 0) {
		a->f = stdout;
		return 0;
	}
	if (special_file(path)) {
		if (!(a->f = fopen(path, "wb")))
			return vlm_error("'%s': %s", path, strerror(errno));
		if (!(a->path = strdup(path))) {
			fclose(a->f);
			return vlm_error("'%s': out of memory", path);
		}
		return 0;
	}
	if (!(a->path = target_alloc(path)))
		return vlm_error("'%s': %s", path, strerror(errno));
	if (asprintf(&a->tmp, "%s.tmp.%ld", a->path, (long)getpid()) < 0) {
		free(a->path);
		return vlm_error("'%s': out of memory", path);
	}
	a->f = fopen(a->tmp, "wb");
	if (!a->f) {
		int e = errno;
		free(a->path);
		free(a->tmp);
		return vlm_error("'%s': %s", path, strerror(e));
	}
	return 0;
}

/* fsync the directory holding path so the rename itself is durable */
static void
sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (!copy)
		return;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

int
vlm_atomic_commit(struct vlm_atomic *a)
{
	int rc = 0, e = 0;

	if (!a->tmp) { /* stdout, or a special file written in place */
		const char *name = a->path ? a->path : "<stdout>";
		int bad = fflush(a->f) != 0 || ferror(a->f);
		e = errno;
		if (a->path && fclose(a->f) != 0 && !bad)
			bad = 1, e = errno;
		if (bad)
			vlm_error("'%s': %s", name, strerror(e ? e : EIO));
		free(a->path);
		a->path = NULL;
		a->f = NULL;
		return bad ? -1 : 0;
	}
	if (fflush(a->f) != 0 || ferror(a->f))
		rc = -1, e = errno;
	if (rc == 0)
		vlm_crash_point("atomic-commit");
	if (rc == 0 && fsync(fileno(a->f)) != 0)
		rc = -1, e = errno;
	if (fclose(a->f) != 0 && rc == 0)
		rc = -1, e = errno;
	a->f = NULL;
	if (rc == 0 && rename(a->tmp, a->path) != 0)
		rc = -1, e = errno;
	if (rc != 0) {
		unlink(a->tmp);
		vlm_error("'%s': %s", a->path, strerror(e ? e : EIO));
	} else {
		sync_dir(a->path);
	}
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
	return rc;
}

void
vlm_atomic_abort(struct vlm_atomic *a)
{
	if (!a->tmp) {
		if (a->path) { /* a special file: nothing to remove */
			fclose(a->f);
			free(a->path);
		}
		memset(a, 0, sizeof(*a));
		return;
	}
	if (a->f)
		fclose(a->f);
	unlink(a->tmp);
	free(a->path);
	free(a->tmp);
	memset(a, 0, sizeof(*a));
}

void
vlm_crash_point(const char *point)
{
	static long hits;
	const char *s = getenv("VLM_CRASH_AT");
	size_t n = strlen(point);

	if (!s || strncmp(s, point, n) != 0 || (s[n] != '\0' && s[n] != ':'))
		return;
	if (++hits >= (s[n] ? atol(s + n + 1) : 1))
		raise(strstr(s + n, ":stop") ? SIGSTOP : SIGKILL);
}

/* Read all of fd (a pipe, stdin) into a malloc'ed buffer. */
static int
read_all(struct vlm_map *mp, int fd, const char *name)
{
	size_t cap = 1 << 16;
	ssize_t k;

	if (!(mp->base = malloc(cap)))
		return vlm_error("'%s': out of memory", name);
	while ((k = read(fd, mp->base + mp->size, cap - mp->size)) != 0) {
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return vlm_error("'%s': %s", name, strerror(errno));
		}
		mp->size += (size_t)k;
		if (mp->size == cap) {
			unsigned char *p = realloc(mp->base, cap *= 2);
			if (!p)
				return vlm_error("'%s': out of memory", name);
			mp->base = p;
		}
	}
	return 0;
}

int
vlm_map_file(struct vlm_map *mp, const char *path, const char *name)
{
	struct stat sb;
	int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	memset(mp, 0, sizeof(*mp));
	if (fd < 0)
		return vlm_error("'%s': %s", name, strerror(errno));
	if (fstat(fd, &sb) != 0)
		rc = vlm_error("'%s': %s", name, strerror(errno));
	else if (S_ISDIR(sb.st_mode))
		rc = vlm_error("'%s': is a directory", name);
	else if (!S_ISREG(sb.st_mode))
		rc = read_all(mp, fd, name);
	else if ((mp->size = (size_t)sb.st_size) > 0) {
		mp->base = mmap(NULL, mp->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (mp->base == MAP_FAILED) {
			mp->base = NULL;
			rc = vlm_error("'%s': %s", name, strerror(errno));
		} else {
			mp->mapped = 1;
		}
	}
	if (fd != 0)
		close(fd);
	if (rc != 0)
		vlm_map_release(mp);
	return rc;
}

int
vlm_map_writable(struct vlm_map *mp, int writable)
{
	if (!mp->mapped)
		return 0;
	if (mprotect(mp->base, mp->size, PROT_READ |
	    (writable ? PROT_WRITE : 0)) != 0)
		return vlm_error("mprotect: %s", strerror(errno));
	mp->cow |= writable;
	return 0;
}

void
vlm_map_release(struct vlm_map *mp)
{
	if (mp->mapped)
		munmap(mp->base, mp->size);
	else
		free(mp->base);
	memset(mp, 0, sizeof(*mp));
}

void
vlm_pages_drop(const void *p, size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)p + page - 1) / page * page;
	uintptr_t b = ((uintptr_t)p + n) / page * page;

	if (a < b)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

int
vlm_map_holds(const struct vlm_map *mp, const void *p, size_t n)
{
	return mp->mapped && !mp->cow && (const unsigned char *)p >=
	    mp->base && (const unsigned char *)p + n <= mp->base + mp->size;
}

void
vlm_map_drop(const struct vlm_map *mp, const void *p, size_t n)
{
	if (vlm_map_holds(mp, p, n))
		vlm_pages_drop(p, n);
}
