/*
 * convert-shard.c - `vlm-convert shard [-c count] [--split name]
 * [--classnames file] [--templates file] [--group] input outdir`:
 * webdataset tar shards from a pairs file or an ImageFolder tree.
 *
 * Reads a pairs file (TSV, as vlm-train --data reads it) or, when input
 * is a directory, an ImageFolder tree; writes outdir[/split]/0.tar ...
 * (at most count samples a shard, default 10000) and nshards.txt beside
 * them, the samples keyed s0000000, s0000001, ... in input order (the
 * file order of the rows, the classes' then the walk's order of the
 * tree), each image copied byte for byte as KEY.jpg, KEY.png or
 * KEY.webp. Pairs: a sample a row with its caption as KEY.txt, or with
 * --group a sample an image with its captions as the lines of KEY.txt
 * and dataset_type.txt "retrieval". A tree: KEY.cls the class index, and
 * classnames.txt, zeroshot_classification_templates.txt ("{c}" for the
 * class) and dataset_type.txt "classification" in outdir: the layout of
 * CLIP_benchmark's webdataset sets. Prints the shards' brace pattern.
 */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "base/base.h"
#include "data/data.h"

struct shard {
	const char *in, *out, *split;
	int count, group, failed;
	struct vlm_imagefolder_opts fo;
	struct vlm_shard_writer w;
	char *dir;         /* out[/split] */
	int64_t n;         /* samples */
};

/* A whole file into *buf (malloc'ed); -1 after a warning. */
static int
read_file(const char *path, char **buf, size_t *n)
{
	FILE *f = fopen(path, "rb");
	struct stat st;

	*buf = NULL;
	if (!f || fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) ||
	    !(*buf = malloc(st.st_size + 1)) ||
	    fread(*buf, 1, st.st_size, f) != (size_t)st.st_size) {
		warn("'%s'", path);
		free(*buf);
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	*n = st.st_size;
	return 0;
}

/* One sample: the image at path and a second member (ext2, text). */
static int
add(struct shard *s, const char *path, const char *ext2, const char *text)
{
	static const char *img[] = { NULL, "jpg", "png", "webp" };
	const char *ext[2] = { NULL, ext2 };
	const void *data[2];
	size_t size[2] = { 0, strlen(text) };
	char key[32], *buf;
	int f;

	if (read_file(path, &buf, &size[0]) < 0)
		return s->failed = 1, 0;
	f = vlm_image_sniff_mem(buf, size[0]);
	if (f <= VLM_IMAGE_NONE || f > VLM_IMAGE_WEBP) {
		warnx("'%s': not a JPEG, PNG or WebP image (skipped)", path);
		free(buf);
		return s->failed = 1, 0;
	}
	ext[0] = img[f], data[0] = buf, data[1] = text;
	snprintf(key, sizeof(key), "s%07lld", (long long)s->n++);
	f = vlm_shard_writer_add(&s->w, key, 2, ext, data, size);
	free(buf);
	return f;
}

/* A text file dir/name holding text; -1 with a message. */
static int
put(const char *dir, const char *name, const char *text)
{
	struct vlm_atomic a;
	char *path;
	int rc;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return vlm_error("out of memory");
	if ((rc = vlm_atomic_open(&a, path)) == 0 && fputs(text, a.f) < 0) {
		vlm_atomic_abort(&a);
		rc = vlm_error("'%s': write error", path);
	} else if (rc == 0) {
		rc = vlm_atomic_commit(&a);
	}
	free(path);
	return rc;
}

/* strs one a line, with tmpl "{}" written as "{c}" (malloc'ed) */
static char *
lines(char **v, int n, int tmpl)
{
	char *s = strdup(""), *t, *x;

	for (int i = 0; s && i < n; i++) {
		x = tmpl ? vlm_template_fill_alloc(v[i], "{c}") : strdup(v[i]);
		if (!x || asprintf(&t, "%s%s\n", s, x) < 0)
			errx(1, "out of memory");
		free(x);
		free(s);
		s = t;
	}
	if (!s)
		errx(1, "out of memory");
	return s;
}

/* An ImageFolder tree: image and class index; the set's text files. */
static int
from_tree(struct shard *s)
{
	struct vlm_imagefolder d;
	char cls[16], *t;
	int rc = 0;

	if (vlm_imagefolder_load(&d, s->in, &s->fo) < 0)
		return -1;
	for (int i = 0; i < d.nbad; i++)
		warnx("%s", d.bad[i]);
	s->failed |= d.nbad > 0;
	for (int i = 0; rc == 0 && i < d.n; i++) {
		snprintf(cls, sizeof(cls), "%d", d.labels[i]);
		rc = add(s, d.paths[i], "cls", cls);
	}
	if (rc == 0) {
		t = lines(d.classnames, d.nnames, 0);
		rc = put(s->out, "classnames.txt", t);
		free(t);
	}
	if (rc == 0) {
		t = lines(d.templates, d.ntemplates, 1);
		rc = put(s->out, "zeroshot_classification_templates.txt", t);
		free(t);
	}
	if (rc == 0)
		rc = put(s->out, "dataset_type.txt", "classification\n");
	vlm_imagefolder_release(&d);
	return rc;
}

/* A pairs file: a sample a row, or with --group an image. */
static int
from_pairs(struct shard *s)
{
	struct vlm_pairs p;
	int rc = 0;

	if (vlm_pairs_load(&p, s->in, NULL) < 0)
		return -1;
	s->failed |= cmd_pairs_warn(&p, s->in);
	for (int i = 0; rc == 0 && !s->group && i < p.n; i++)
		rc = add(s, p.paths[i], "txt", p.captions[i]);
	for (int g = 0; rc == 0 && s->group && g < p.nimages; g++) {
		char *t = strdup(""), *u;
		for (int i = p.image_row[g]; t && i < p.n; i++) {
			if (p.image_id[i] != g)
				continue;
			if (asprintf(&u, "%s%s%s", t, *t ? "\n" : "",
			    p.captions[i]) < 0)
				errx(1, "out of memory");
			free(t);
			t = u;
		}
		if (!t)
			errx(1, "out of memory");
		rc = add(s, p.paths[p.image_row[g]], "txt", t);
		free(t);
	}
	if (rc == 0 && s->group)
		rc = put(s->out, "dataset_type.txt", "retrieval\n");
	vlm_pairs_release(&p);
	return rc;
}

static void
parse(struct shard *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'c' },
		{ "split", required_argument, NULL, 's' },
		{ "classnames", required_argument, NULL, 'n' },
		{ "templates", required_argument, NULL, 'T' },
		{ "group", no_argument, NULL, 'g' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': s->count = cmd_int("-c", optarg, 1, 1 << 30); break;
		case 's': s->split = optarg; break;
		case 'n': s->fo.classnames = optarg; break;
		case 'T': s->fo.templates = optarg; break;
		case 'g': s->group = 1; break;
		default: cmd_usage(convert_usage, 2);
		}
	}
	if (argc - optind != 2)
		cmd_usage(convert_usage, 2);
	s->in = argv[optind], s->out = argv[optind + 1];
	if (s->split && (!*s->split || strchr(s->split, '/')))
		errx(2, "--split '%s': a directory name", s->split);
}

int
convert_shard(int argc, char **argv)
{
	struct shard s = { .count = 10000 };
	struct stat st;
	int tree, rc;

	parse(&s, argc, argv);
	if (stat(s.in, &st) < 0)
		err(1, "'%s'", s.in);
	tree = S_ISDIR(st.st_mode);
	if (tree && s.group)
		errx(2, "--group: for a pairs file, not a directory");
	if (asprintf(&s.dir, "%s%s%s", s.out, s.split ? "/" : "", s.split ?
	    s.split : "") < 0)
		errx(1, "out of memory");
	if ((mkdir(s.out, 0777) < 0 && errno != EEXIST) ||
	    (s.split && mkdir(s.dir, 0777) < 0 && errno != EEXIST))
		err(1, "'%s'", s.dir);
	if (vlm_shard_writer_init(&s.w, s.dir, s.count) < 0)
		errx(1, "%s", vlm_errmsg());
	rc = tree ? from_tree(&s) : from_pairs(&s);
	if (rc == 0 && s.n == 0)
		rc = vlm_error("'%s': no samples to write", s.in);
	if (rc == 0)
		rc = vlm_shard_writer_finish(&s.w);
	if (rc < 0)
		warnx("%s", vlm_errmsg());
	else
		printf("%s/{0..%d}.tar\n", s.dir, s.w.nshards - 1);
	vlm_shard_writer_release(&s.w, rc < 0);
	free(s.dir);
	return cmd_finish(rc < 0 || s.failed);
}
