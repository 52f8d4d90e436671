/*
 * fuzz-imagefolder.c - an ImageFolder tree (vlm_imagefolder_load) and a
 * directory walk (vlm_walk) over names taken from the input. Each line
 * before a line "--" makes one entry: its first byte says what ('d' a
 * directory, 'p' a file starting like a PNG, 'j' like a JPEG, 'l' a link
 * to its own directory (a loop), 'x' a dangling link, anything else a
 * text file), the rest is its path below the root ('/'-separated; empty,
 * "." and ".." parts dropped, at most 4 deep). The lines after "--" are
 * the class names file, and after a second "--" the templates file.
 */
#include <ftw.h>
#include <sys/stat.h>

#include "fuzz.h"

#define MAX_ENTRIES 32

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(path);
}

/* Create root/path (its parents as directories) as kind says. */
static void
make_entry(const char *root, char kind, char *path)
{
	char full[1024];
	size_t len = strlen(root);
	int depth = 0;
	FILE *f;

	memcpy(full, root, len + 1);
	for (char *part = strtok(path, "/"); part; part = strtok(NULL, "/")) {
		if (!strcmp(part, ".") || !strcmp(part, ".."))
			continue;
		if (depth++ == 4 || len + 2 + strlen(part) > 256)
			break;
		if (len > strlen(root))
			mkdir(full, 0755);  /* the parent, once a directory */
		len += snprintf(full + len, sizeof(full) - len, "/%.100s", part);
	}
	if (len == strlen(root))
		return;
	if (kind == 'd')
		mkdir(full, 0755);
	else if (kind == 'l')
		(void)!symlink(".", full);
	else if (kind == 'x')
		(void)!symlink("nowhere", full);
	else if ((f = fopen(full, "wb"))) {
		fputs(kind == 'p' ? "\x89PNG\r\n\x1a\n" : kind == 'j' ?
		    "\xff\xd8\xff\xe0" : "text", f);
		fclose(f);
	}
}

/* Write lines [*p, the next "--" line) to path; 0 if there were none. */
static int
section(char **p, const char *path)
{
	FILE *f;
	char *end;

	if (!*p)
		return 0;
	end = strstr(*p, "\n--\n");
	if (!(f = fopen(path, "wb")))
		abort();
	fwrite(*p, 1, end ? (size_t)(end - *p + 1) : strlen(*p), f);
	fclose(f);
	*p = end ? end + 4 : NULL;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size), *p = text, *nl, root[128];
	char names[128], tmpls[128], *s;
	struct vlm_imagefolder_opts o = { NULL, NULL };
	struct vlm_imagefolder d;
	struct vlm_walk w;
	const char *path;
	char *roots[1] = { root };
	int n = 0;

	snprintf(root, sizeof(root), "%s/tree", fuzz_dir());
	snprintf(names, sizeof(names), "%s/names.txt", fuzz_dir());
	snprintf(tmpls, sizeof(tmpls), "%s/templates.txt", fuzz_dir());
	mkdir(root, 0755);
	for (; p && n < MAX_ENTRIES; p = nl ? nl + 1 : NULL, n++) {
		if ((nl = strchr(p, '\n')))
			*nl = '\0';
		if (!strcmp(p, "--")) {
			p = nl ? nl + 1 : NULL;
			break;
		}
		if (*p)
			make_entry(root, p[0], p + 1);
	}
	if (n == MAX_ENTRIES)
		p = NULL;
	if (section(&p, names))
		o.classnames = names;
	if (section(&p, tmpls))
		o.templates = tmpls;
	if (vlm_imagefolder_load(&d, root, &o) == 0) {
		for (int c = 0; c < d.nclasses; c++)
			for (int t = 0; t < d.ntemplates; t++)
				if ((s = vlm_template_fill_alloc(d.templates[t],
				    d.classnames[c])))
					free(s);
		for (int i = 0; i < d.n; i++)
			if (d.labels[i] < 0 || d.labels[i] >= d.nclasses)
				abort();
		vlm_imagefolder_release(&d);
	}
	vlm_walk_init(&w, roots, 1, NULL, NULL);
	for (int k = 0; k < 1000 && vlm_walk_next(&w, &path) != 0; k++)
		; /* -1 (an error) goes on past it */
	vlm_walk_release(&w);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	remove(names);
	remove(tmpls);
	free(text);
	return 0;
}
