/*
 * test-dataset.c - pairs files (TSV with bad rows, RFC 4180 CSV), the
 * ImageFolder layout with class-name and template files, and the path
 * iterator (directory walks, lists on a stream) of libcore/data/dataset.c and
 * libcore/data/walk.c, on small files made in a temporary directory.
 */
#include <sys/stat.h>

#include "testutil.h"

static const char *
tpath(const char *name)
{
	static char buf[16][4200];
	static int i;

	i = (i + 1) % 16;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", test_tmpdir(), name);
	return buf[i];
}

static void
write_file(const char *path, const void *buf, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void
write_str(const char *path, const char *s)
{
	write_file(path, s, strlen(s));
}

/* files whose first bytes say PNG or JPEG (the walk does not decode) */
static void
write_png(const char *path)
{
	write_file(path, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
}

static void
write_jpeg(const char *path)
{
	write_file(path, "\xff\xd8\xff\xe0\0\x10JFIF", 10);
}

static void
mkdirs(const char *path)
{
	char cmd[4300];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static void
test_pairs_tsv(void **state)
{
	struct vlm_pairs p;
	const char *f = tpath("tsv/pairs.tsv");
	char want[4300];

	(void)state;
	mkdirs(tpath("tsv"));
	write_str(f,
	    "\xef\xbb\xbfid\tfilepath\ttitle\n"      /* 1: header, BOM */
	    "0\ta.png\ta cat\n"                      /* 2 */
	    "1\tb.png\n"                             /* 3: missing column */
	    "2\tc.png\t \n"                          /* 4: blank caption */
	    "3\t\ta caption\n"                       /* 5: empty path */
	    "\n"                                     /* 6: blank line */
	    "4\ta.png\ta \"black\" cat\r\n"          /* 7: CRLF, same image */
	    "5\t/abs/d.jpg\ta dog\textra\n"          /* 8: extra field */
	    "6\tsub/e.png\tan emu\n"                 /* 9 */
	    "7\t/abs/d.jpg\ta dog");                 /* 10: no newline */
	assert_int_equal(vlm_pairs_load(&p, f, NULL), 0);
	assert_int_equal(p.n, 4);
	assert_int_equal(p.nbad, 4);
	assert_int_equal(p.nbadmsg, 4);
	snprintf(want, sizeof(want), "%s:3: 2 fields, the header has 3", f);
	assert_string_equal(p.bad[0], want);
	snprintf(want, sizeof(want), "%s:4: empty caption", f);
	assert_string_equal(p.bad[1], want);
	snprintf(want, sizeof(want), "%s:5: empty image path", f);
	assert_string_equal(p.bad[2], want);
	snprintf(want, sizeof(want), "%s:8: 4 fields, the header has 3", f);
	assert_string_equal(p.bad[3], want);

	assert_string_equal(p.paths[0], tpath("tsv/a.png"));
	assert_string_equal(p.paths[1], tpath("tsv/a.png"));
	assert_string_equal(p.paths[2], tpath("tsv/sub/e.png"));
	assert_string_equal(p.paths[3], "/abs/d.jpg");
	assert_string_equal(p.captions[0], "a cat");
	assert_string_equal(p.captions[1], "a \"black\" cat");
	assert_string_equal(p.captions[2], "an emu");
	assert_string_equal(p.captions[3], "a dog");
	assert_int_equal(p.line[0], 2);
	assert_int_equal(p.line[1], 7);
	assert_int_equal(p.line[2], 9);
	assert_int_equal(p.line[3], 10);
	assert_int_equal(p.nimages, 3);
	assert_int_equal(p.image_id[0], 0);
	assert_int_equal(p.image_id[1], 0);
	assert_int_equal(p.image_id[2], 1);
	assert_int_equal(p.image_id[3], 2);
	assert_int_equal(p.image_row[0], 0);
	assert_int_equal(p.image_row[1], 2);
	assert_int_equal(p.image_row[2], 3);
	vlm_pairs_release(&p);
}

static void
test_pairs_csv(void **state)
{
	struct vlm_pairs p;
	struct vlm_pairs_opts o = { .img_key = "image",
		.caption_key = "caption", .sep = ',' };
	const char *f = tpath("pairs.csv");
	char want[4300];

	(void)state;
	write_str(f,
	    "caption,\"image\"\n"                          /* 1 */
	    "\"one, two\",x.jpg\n"                         /* 2 */
	    "\"she said \"\"hi\"\"\",y.jpg\n"              /* 3 */
	    "\"two\nlines\",\"z,1.jpg\"\n"                 /* 4-5 */
	    "\"bad\"x,w.jpg\n"                             /* 6: after quote */
	    "a 5\" screen,v.jpg\n"                         /* 7: bare quote */
	    ",u.jpg\n"                                     /* 8: empty */
	    "\"\",t.jpg\n"                                 /* 9: empty */
	    "\"open,s.jpg\n");                             /* 10: open */
	assert_int_equal(vlm_pairs_load(&p, f, &o), 0);
	assert_int_equal(p.n, 4);
	assert_string_equal(p.captions[0], "one, two");
	assert_string_equal(p.captions[1], "she said \"hi\"");
	assert_string_equal(p.captions[2], "two\nlines");
	assert_string_equal(p.captions[3], "a 5\" screen");
	assert_string_equal(p.paths[0], tpath("x.jpg"));
	assert_string_equal(p.paths[2], tpath("z,1.jpg"));
	assert_string_equal(p.paths[3], tpath("v.jpg"));
	assert_int_equal(p.line[2], 4);
	assert_int_equal(p.line[3], 7);
	assert_int_equal(p.nimages, 4);
	assert_int_equal(p.nbad, 4);
	snprintf(want, sizeof(want), "%s:6: text after a closing quote", f);
	assert_string_equal(p.bad[0], want);
	snprintf(want, sizeof(want), "%s:8: empty caption", f);
	assert_string_equal(p.bad[1], want);
	snprintf(want, sizeof(want), "%s:9: empty caption", f);
	assert_string_equal(p.bad[2], want);
	snprintf(want, sizeof(want), "%s:10: unterminated quoted field", f);
	assert_string_equal(p.bad[3], want);
	vlm_pairs_release(&p);
}

static void
test_pairs_errors(void **state)
{
	struct vlm_pairs p;
	struct vlm_pairs_opts o = { .caption_key = "caption" };
	const char *f = tpath("nocol.tsv");
	char want[4300];

	(void)state;
	write_str(f, "filepath\ttitle\na.png\tx\n");
	assert_int_equal(vlm_pairs_load(&p, f, &o), -1);
	snprintf(want, sizeof(want), "'%s': no column 'caption' in the header",
	    f);
	assert_string_equal(vlm_errmsg(), want);
	assert_int_equal(p.n, 0);
	write_str(f, "");
	assert_int_equal(vlm_pairs_load(&p, f, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "no header"));
	assert_int_equal(vlm_pairs_load(&p, tpath("absent.tsv"), NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "No such file"));

	/* more bad rows than messages kept: all counted */
	FILE *fp = fopen(f, "w");
	assert_non_null(fp);
	fprintf(fp, "filepath\ttitle\n");
	for (int i = 0; i < VLM_PAIRS_MAXBAD + 10; i++)
		fprintf(fp, "x%d.png\t\n", i);
	fprintf(fp, "ok.png\tfine\n");
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(vlm_pairs_load(&p, f, NULL), 0);
	assert_int_equal(p.n, 1);
	assert_int_equal(p.nbad, VLM_PAIRS_MAXBAD + 10);
	assert_int_equal(p.nbadmsg, VLM_PAIRS_MAXBAD);
	vlm_pairs_release(&p);
}

/* many rows, few images: ids by first appearance through table growth */
static void
test_pairs_many(void **state)
{
	struct vlm_pairs p;
	const char *f = tpath("many.tsv");
	FILE *fp = fopen(f, "w");
	enum { ROWS = 5000, IMAGES = 1700 };

	(void)state;
	assert_non_null(fp);
	fprintf(fp, "filepath\ttitle\n");
	for (int i = 0; i < ROWS; i++)
		fprintf(fp, "/i/%d.png\tcaption %d\n", (i * 7) % IMAGES, i);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(vlm_pairs_load(&p, f, NULL), 0);
	assert_int_equal(p.n, ROWS);
	assert_int_equal(p.nimages, IMAGES);
	for (int i = 0; i < ROWS; i++) {
		int id = p.image_id[i];
		/* image (7i mod 1700) first appears at row i mod 1700 */
		assert_int_equal(id, i % IMAGES);
		assert_string_equal(p.paths[p.image_row[id]], p.paths[i]);
	}
	vlm_pairs_release(&p);
}

/* the ImageFolder test tree: two classes, odd files, nested images */
static void
make_folder(const char *r)
{
	char d[4200];

#define P(s) (snprintf(d, sizeof(d), "%s/%s", r, s), d)
	mkdirs(P("b_cls/sub"));
	mkdirs(P("a_cls"));
	mkdirs(P(".hidden"));
	write_png(P(".hidden/x.png"));
	write_str(P("readme.txt"), "not a class\n");
	write_png(P("a_cls/2.png"));
	write_jpeg(P("a_cls/10.jpg"));
	write_str(P("a_cls/fake.png"), "this is text, not a PNG\n");
	write_png(P("a_cls/.DS_Store"));
	write_png(P("b_cls/sub/noext"));
	write_jpeg(P("b_cls/a.jpeg"));
#undef P
}

static void
test_imagefolder(void **state)
{
	struct vlm_imagefolder d;
	struct vlm_imagefolder_opts o = { tpath("names.txt"),
		tpath("tmpl.txt") };
	const char *r = tpath("folder");
	char want[4300];
	char *s;

	(void)state;
	make_folder(r);
	write_str(o.classnames, "class a\r\nclass b\n\n\n");
	write_str(o.templates, "a photo of a {}.\n{} and {}\n");
	assert_int_equal(vlm_imagefolder_load(&d, r, &o), 0);
	assert_int_equal(d.nclasses, 2);
	assert_string_equal(d.classes[0], "a_cls");
	assert_string_equal(d.classes[1], "b_cls");
	assert_string_equal(d.classnames[0], "class a");
	assert_string_equal(d.classnames[1], "class b");
	assert_int_equal(d.n, 4);
	const char *paths[] = { "a_cls/10.jpg", "a_cls/2.png", "b_cls/a.jpeg",
		"b_cls/sub/noext" };
	const int labels[] = { 0, 0, 1, 1 };
	for (int i = 0; i < 4; i++) {
		snprintf(want, sizeof(want), "%s/%s", r, paths[i]);
		assert_string_equal(d.paths[i], want);
		assert_int_equal(d.labels[i], labels[i]);
	}
	assert_int_equal(d.nskipped, 1);
	assert_int_equal(d.ntemplates, 2);
	s = vlm_template_fill_alloc(d.templates[1], d.classnames[1]);
	assert_string_equal(s, "class b and class b");
	free(s);
	vlm_imagefolder_release(&d);

	assert_int_equal(d.nbad, 0);
	vlm_imagefolder_release(&d);

	/* a symlink loop and a FIFO: the loop noted, the FIFO passed over,
	 * the images still there */
	snprintf(want, sizeof(want), "%s/b_cls/loop.png", r);
	assert_int_equal(symlink("loop.png", want), 0);
	snprintf(want, sizeof(want), "%s/b_cls/fifo.png", r);
	assert_int_equal(mkfifo(want, 0600), 0);
	assert_int_equal(vlm_imagefolder_load(&d, r, &o), 0);
	assert_int_equal(d.n, 4);
	assert_int_equal(d.nskipped, 2);
	assert_int_equal(d.nbad, 1);
	snprintf(want, sizeof(want), "'%s/b_cls/loop.png': Too many levels "
	    "of symbolic links", r);
	assert_string_equal(d.bad[0], want);
	vlm_imagefolder_release(&d);

	/* defaults: directory names and the one template */
	assert_int_equal(vlm_imagefolder_load(&d, r, NULL), 0);
	assert_string_equal(d.classnames[1], "b_cls");
	assert_int_equal(d.ntemplates, 1);
	s = vlm_template_fill_alloc(d.templates[0], d.classnames[0]);
	assert_string_equal(s, "a photo of a a_cls.");
	free(s);
	vlm_imagefolder_release(&d);
}

static void
test_imagefolder_errors(void **state)
{
	struct vlm_imagefolder d;
	struct vlm_imagefolder_opts o = { tpath("names2.txt"), NULL };
	const char *r = tpath("folder2");
	char want[4300];

	(void)state;
	make_folder(r);
	write_str(o.classnames, "one\ntwo\nthree\n");
	assert_int_equal(vlm_imagefolder_load(&d, r, &o), -1);
	snprintf(want, sizeof(want), "'%s': 3 class names for 2 class "
	    "directories in '%s'", o.classnames, r);
	assert_string_equal(vlm_errmsg(), want);
	write_str(o.classnames, "one\n\ntwo\n");
	assert_int_equal(vlm_imagefolder_load(&d, r, &o), -1);
	snprintf(want, sizeof(want), "'%s':2: empty line", o.classnames);
	assert_string_equal(vlm_errmsg(), want);

	o.classnames = NULL;
	o.templates = tpath("tmpl2.txt");
	write_str(o.templates, "{} ok\nno slot\n");
	assert_int_equal(vlm_imagefolder_load(&d, r, &o), -1);
	snprintf(want, sizeof(want), "'%s':2: template without {}",
	    o.templates);
	assert_string_equal(vlm_errmsg(), want);

	mkdirs(tpath("folder2/c_empty"));
	write_str(tpath("folder2/c_empty/notes.png"), "text");
	assert_int_equal(vlm_imagefolder_load(&d, r, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "c_empty': no images"));
	assert_int_equal(vlm_imagefolder_load(&d, tpath("nowhere"), NULL), -1);
	assert_int_equal(d.n, 0);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the tree of test_walk: names chosen so per-name sorting would differ */
static const char *const walk_images[] = {
	"B.png", "a-b.png", "a.png", "a/b.png", "a/noext", "a0/x.jpg",
	"link.png", "sub/deep/z.png",
};
#define NWALK (sizeof(walk_images) / sizeof(*walk_images))

static void
test_walk(void **state)
{
	struct vlm_walk w;
	const char *r = tpath("walk"), *path;
	char buf[4200], *got[NWALK], *want[NWALK];
	int n = 0, rc, nerr = 0;

	(void)state;
	mkdirs(tpath("walk/a"));
	mkdirs(tpath("walk/a0"));
	mkdirs(tpath("walk/sub/deep"));
	mkdirs(tpath("walk/sub/.git"));
	for (size_t i = 0; i < NWALK; i++) {
		snprintf(buf, sizeof(buf), "%s/%s", r, walk_images[i]);
		if (strcmp(walk_images[i], "link.png") == 0)
			assert_int_equal(symlink("a.png", buf), 0);
		else if (strchr(walk_images[i], '.') && strstr(buf, ".jpg"))
			write_jpeg(buf);
		else
			write_png(buf);
	}
	write_str(tpath("walk/fake.png"), "not an image");
	write_str(tpath("walk/a/notes.txt"), "text");
	write_png(tpath("walk/sub/.git/hidden.png"));
	assert_int_equal(symlink("..", tpath("walk/sub/deep/up")), 0);
	assert_int_equal(symlink("gone.png", tpath("walk/sub/broken.png")), 0);

	char *roots[] = { (char *)r };
	vlm_walk_init(&w, roots, 1, NULL, NULL);
	while ((rc = vlm_walk_next(&w, &path)) != 0) {
		if (rc < 0) {
			nerr++;  /* the loop "up" and the broken link */
			continue;
		}
		assert_true(n < (int)NWALK);
		got[n++] = strdup(path);
	}
	assert_int_equal(n, NWALK);
	assert_int_equal(nerr, 2);
	assert_int_equal(w.nskipped, 2);
	vlm_walk_release(&w);
	/* the order must be byte order of the full paths */
	for (size_t i = 0; i < NWALK; i++)
		want[i] = got[i];
	qsort(want, NWALK, sizeof(*want), cmp_str);
	for (size_t i = 0; i < NWALK; i++) {
		snprintf(buf, sizeof(buf), "%s/%s", r, walk_images[i]);
		assert_string_equal(got[i], want[i]);
		assert_string_equal(got[i], buf);
		free(got[i]);
	}
}

static void
test_walk_list(void **state)
{
	struct vlm_walk w;
	const char *path;
	char list[4 * 4200], want[4200];
	FILE *f;

	(void)state;
	mkdirs(tpath("lst/d"));
	write_png(tpath("lst/d/x.png"));
	write_str(tpath("lst/d/y.png"), "text");
	write_str(tpath("lst/plain.txt"), "listed files are not sniffed");
	snprintf(list, sizeof(list), "%s\n\n%s\r\n%s\n%s",
	    tpath("lst/plain.txt"), tpath("lst/missing.png"), tpath("lst/d/"),
	    tpath("lst/d/x.png"));
	f = fmemopen(list, strlen(list), "r");
	assert_non_null(f);
	char *roots[] = { (char *)tpath("lst/d") };
	vlm_walk_init(&w, roots, 1, f, "list");
	assert_int_equal(vlm_walk_next(&w, &path), 1);
	snprintf(want, sizeof(want), "%s/x.png", tpath("lst/d"));
	assert_string_equal(path, want);
	assert_int_equal(vlm_walk_next(&w, &path), 1);
	assert_string_equal(path, tpath("lst/plain.txt"));
	assert_int_equal(vlm_walk_next(&w, &path), -1);
	snprintf(want, sizeof(want), "'%s': No such file or directory",
	    tpath("lst/missing.png"));
	assert_string_equal(vlm_errmsg(), want);
	assert_int_equal(vlm_walk_next(&w, &path), 1);
	snprintf(want, sizeof(want), "%sx.png", tpath("lst/d/"));
	assert_string_equal(path, want);  /* "d/" + "x.png": no "//" */
	assert_int_equal(vlm_walk_next(&w, &path), 1);
	assert_string_equal(path, tpath("lst/d/x.png"));
	assert_int_equal(vlm_walk_next(&w, &path), 0);
	assert_int_equal(vlm_walk_next(&w, &path), 0);
	assert_int_equal(w.lineno, 5);
	assert_int_equal(w.nskipped, 2);
	vlm_walk_release(&w);
	fclose(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs_tsv),
		cmocka_unit_test(test_pairs_csv),
		cmocka_unit_test(test_pairs_errors),
		cmocka_unit_test(test_pairs_many),
		cmocka_unit_test(test_imagefolder),
		cmocka_unit_test(test_imagefolder_errors),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_walk_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
