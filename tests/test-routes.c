/*
 * test-routes.c - routing records and their statistics: a crafted
 * stream (written here record by record, not by routes.c) read back and
 * summarised, against hand counts and against an independent NumPy
 * reference (tests/routes-ref.py); truncated and corrupt streams; the
 * writer after real forwards of one-tower, two-tower and VL-MoE models;
 * the token-level diff; and the PNG of vlm-route-stats opened with
 * libpng.
 */
#include <jansson.h>
#include <math.h>
#include <png.h>

#include "testutil.h"

/* ---- a crafted stream ---------------------------------------------------- */

#define CE 4   /* experts */
#define CK 2   /* choices */
#define CL 2   /* layers */
#define CG 2   /* image grid: 2x2 patches + class token */
#define CT 5   /* image tokens */
#define CCTX 6 /* text context */

static void
put_json(FILE *f, const char *s)
{
	struct vlm_tensor t = { .dtype = VLM_DTYPE_U8, .ndim = 1,
		.data = (void *)s };

	t.shape[0] = (int64_t)strlen(s);
	assert_int_equal(vlm_npy_write(f, "t", &t), 0);
}

static void
put(FILE *f, enum vlm_dtype dt, const void *x, int64_t d0, int64_t d1)
{
	struct vlm_tensor t = { .dtype = dt, .ndim = d1 ? 2 : 1,
		.data = (void *)x };

	t.shape[0] = d0, t.shape[1] = d1;
	assert_int_equal(vlm_npy_write(f, "t", &t), 0);
}

static const char crafted_meta[] =
    "{\"format\":\"vlm-routes\",\"version\":1,\"family\":\"one-tower\","
    "\"experts\":4,\"top_k\":2,\"modalities\":[\"image\",\"text\"],"
    "\"layers\":[{\"tower\":\"shared\",\"block\":1,\"pool\":0,\"name\":"
    "\"transformer.resblocks.1.moe\"},{\"tower\":\"shared\",\"block\":3,"
    "\"pool\":0,\"name\":\"transformer.resblocks.3.moe\"}],"
    "\"image_tokens\":5,\"grid\":2,\"cls\":true,\"context\":6,\"cf\":1.0,"
    "\"min_capacity\":4,\"bpr\":true,\"gate_norm\":\"none\"}";

/* One batch of n examples of modality mod (lens: tokens per example),
 * random choices from r. */
static void
crafted_batch(FILE *f, int64_t b, int mod, int n, const int *lens,
    const int32_t *labels, struct vlm_rng *r)
{
	char h[1024], *p = h;
	int S = 0, C[CL];
	const char *ids[8];
	char idbuf[8][16];

	for (int i = 0; i < n; i++)
		S += lens[i];
	p += sprintf(p, "{\"batch\":%lld,\"modality\":\"%s\",\"examples\":%d,"
	    "\"layers\":[", (long long)b, mod ? "text" : "image", n);
	for (int l = 0; l < CL; l++) {
		C[l] = 2 + (int)vlm_rng_below(r, 4);
		p += sprintf(p, "%s{\"layer\":%d,\"S\":%d,\"C\":%d,"
		    "\"group\":%d,\"fill\":[%d,%d,%d,%d]}", l ? "," : "", l,
		    S, C[l], S + 3,
		    (int)vlm_rng_below(r, C[l] + 1), (int)vlm_rng_below(r,
		    C[l] + 1), C[l], 0);
	}
	strcpy(p, "]}");
	put_json(f, h);
	for (int i = 0; i < n; i++) {
		snprintf(idbuf[i], sizeof(idbuf[i]), "x%d", i);
		ids[i] = idbuf[i];
	}
	assert_int_equal(vlm_npy_write_str(f, "t", ids, n), 0);
	put(f, VLM_DTYPE_I32, labels, n, 0);
	for (int l = 0; l < CL; l++) {
		int32_t tok[64][2], idx[64][CK];
		uint8_t keep[64][CK];
		float w[64][CK], z[64][CE];
		int s = 0;
		for (int i = 0; i < n; i++)
			for (int t = 0; t < lens[i]; t++, s++) {
				tok[s][0] = i, tok[s][1] = t;
				idx[s][0] = (int32_t)vlm_rng_below(r, CE);
				idx[s][1] = (idx[s][0] + 1 + (int32_t)
				    vlm_rng_below(r, CE - 1)) % CE;
				for (int j = 0; j < CK; j++) {
					keep[s][j] = vlm_rng_below(r, 4) != 0;
					w[s][j] = keep[s][j] ?
					    (float)vlm_rng_uniform(r) : 0;
				}
				for (int e = 0; e < CE; e++)
					z[s][e] = (float)(2 *
					    vlm_rng_normal(r));
			}
		put(f, VLM_DTYPE_I32, tok, S, 2);
		put(f, VLM_DTYPE_I32, idx, S, CK);
		put(f, VLM_DTYPE_U8, keep, S, CK);
		put(f, VLM_DTYPE_F32, w, S, CK);
		put(f, VLM_DTYPE_F32, z, S, CE);
	}
}

/* The crafted stream into path; bounds[i]: the offset after batch i-1
 * (bounds[0]: after the metadata and classes); returns the batches. */
static int
write_crafted(const char *path, long *bounds, int end)
{
	static const int img[3] = { CT, CT, CT }, txt[3] = { 3, 6, 1 };
	static const int32_t lab[3] = { 0, 2, 0 }, nolab[3] = { -1, -1, -1 };
	static const int32_t lab2[2] = { 1, 2 };
	FILE *f = fopen(path, "wb");
	struct vlm_rng r;

	assert_non_null(f);
	vlm_rng_seed(&r, 42);
	put_json(f, crafted_meta);
	put_json(f, "{\"classes\":[\"cat\",\"dog\",\"owl\"]}");
	bounds[0] = ftell(f);
	crafted_batch(f, 0, 0, 3, img, lab, &r);
	bounds[1] = ftell(f);
	crafted_batch(f, 1, 1, 3, txt, nolab, &r);
	bounds[2] = ftell(f);
	crafted_batch(f, 2, 0, 2, img, lab2, &r);
	bounds[3] = ftell(f);
	if (end)
		put_json(f, "{\"end\":true,\"batches\":3,\"examples\":[5,3]}");
	bounds[4] = ftell(f);
	fclose(f);
	return 3;
}

/* Read a whole stream into s: the reader's last result (0 or -1). */
static int
read_stats(const char *path, struct vlm_route_stats *s)
{
	struct vlm_routes_reader r;
	FILE *f = fopen(path, "rb");
	int rc;

	assert_non_null(f);
	if (vlm_routes_reader_init(&r, f, path) < 0) {
		fclose(f);
		memset(s, 0, sizeof(*s));
		return -2;
	}
	assert_int_equal(vlm_route_stats_init(s, &r), 0);
	while ((rc = vlm_routes_reader_next(&r)) == 1)
		assert_int_equal(vlm_route_stats_add(s, &r), 0);
	vlm_routes_reader_release(&r);
	fclose(f);
	return rc;
}

/* ---- hand-computed counts ------------------------------------------------ */

/* One image of 4 tokens, E = 2, K = 1: choices 0 0 1 0, the last one
 * dropped, gates .5 .25 1, logits all 0 (p uniform), C = 2; into path
 * after metadata meta and class names classes (or NULL). */
static void
write_one(const char *path, const char *meta, const char *classes,
    int32_t label)
{
	static const int32_t tok[4][2] = { { 0, 0 }, { 0, 1 }, { 0, 2 },
		{ 0, 3 } }, idx[4] = { 0, 0, 1, 0 };
	static const uint8_t keep[4] = { 1, 1, 1, 0 };
	static const float w[4] = { 0.5f, 0.25f, 1.0f, 0 }, z[4][2] = { { 0 } };
	static const char *ids[1] = { "a.png" };
	FILE *f;

	assert_non_null(f = fopen(path, "wb"));
	put_json(f, meta);
	if (classes)
		put_json(f, classes);
	put_json(f, "{\"batch\":0,\"modality\":\"image\",\"examples\":1,"
	    "\"layers\":[{\"layer\":0,\"S\":4,\"C\":2,\"group\":4,"
	    "\"fill\":[2,1]}]}");
	assert_int_equal(vlm_npy_write_str(f, "t", ids, 1), 0);
	put(f, VLM_DTYPE_I32, &label, 1, 0);
	put(f, VLM_DTYPE_I32, tok, 4, 2);
	put(f, VLM_DTYPE_I32, idx, 4, 1);
	put(f, VLM_DTYPE_U8, keep, 4, 1);
	put(f, VLM_DTYPE_F32, w, 4, 1);
	put(f, VLM_DTYPE_F32, z, 4, 2);
	put_json(f, "{\"end\":true,\"batches\":1,\"examples\":[1,0]}");
	fclose(f);
}

static void
test_hand_counts(void **state)
{
	char path[4200];
	struct vlm_route_stats s;
	struct vlm_route_summary u;

	(void)state;
	snprintf(path, sizeof(path), "%s/hand.routes", test_tmpdir());
	write_one(path, "{\"format\":\"vlm-routes\",\"version\":1,"
	    "\"experts\":2,\"top_k\":1,\"layers\":[{\"tower\":\"vision\","
	    "\"block\":0,\"pool\":0,\"name\":"
	    "\"visual.transformer.resblocks.0.moe\"}],\"image_tokens\":4,"
	    "\"grid\":2,\"cls\":false,\"context\":4}", NULL, 1);
	assert_int_equal(read_stats(path, &s), 0);
	assert_int_equal(vlm_route_summarize(&s, 0, 0, &u), 0);
	assert_int_equal(u.tokens, 4);
	assert_true(u.load[0] == 3 && u.load[1] == 1);
	assert_true(u.kept[0] == 2 && u.kept[1] == 1);
	assert_true(u.share[0] == 0.75 && u.share[1] == 0.25);
	assert_true(u.gate[0] == 0.375 && u.gate[1] == 1.0);
	assert_true(u.use[0] == 1.0 && u.use[1] == 0.5);
	assert_true(u.drop_tokens == 0.25 && u.drop_assign == 0.25);
	assert_true(u.load_cv2 == 0.25 && u.imp_cv2 == 0);
	assert_true(fabs(u.eff_experts - 2) < 1e-15);
	assert_true(fabs(u.entropy - log(2)) < 1e-15);
	assert_true(fabs(u.zloss - log(2) * log(2)) < 1e-15);
	assert_true(u.zmean == 0 && u.zmax == 0 && u.img_share[0] == 1);
	assert_int_equal(s.l[0].ncls, 2);
	assert_true(s.l[0].cls[2] == 3 && s.l[0].cls[3] == 1);
	assert_true(s.l[0].pos[0] == 1 && s.l[0].pos[2] == 1 &&
	    s.l[0].pos[5] == 1 && s.l[0].pos[6] == 1);
	assert_string_equal(vlm_route_expert_kind(u.img_share[0]), "image");
	vlm_route_summary_release(&u);
	/* "all" is image only here; text has no tokens: NaN */
	assert_int_equal(vlm_route_summarize(&s, 0, 1, &u), 0);
	assert_int_equal(u.tokens, 0);
	assert_true(isnan(u.entropy) && isnan(u.share[0]));
	vlm_route_summary_release(&u);
	vlm_route_stats_release(&s);
}

/* ---- against NumPy ------------------------------------------------------- */

static int
have_numpy(void)
{
	return system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0;
}

/* |a - b| small, or both null/NaN. */
static void
same(double a, json_t *b, const char *what, int l, int m)
{
	if (json_is_null(b) || !b) {
		if (!isnan(a))
			fail_msg("layer %d mod %d %s: %g, reference null", l, m,
			    what, a);
		return;
	}
	double r = json_number_value(b);
	if (!(fabs(a - r) <= 1e-12 * (fabs(r) > 1 ? fabs(r) : 1)))
		fail_msg("layer %d mod %d %s: %.17g, reference %.17g", l, m,
		    what, a, r);
}

static void
check_summary(const struct vlm_route_summary *u, json_t *o, int l, int m)
{
	static const char *const vec[] = { "load", "kept", "share", "gate",
		"use", "img_share" };
	const double *v[] = { u->load, u->kept, u->share, u->gate, u->use,
		u->img_share };

	assert_true(u->tokens == json_number_value(json_object_get(o,
	    "tokens")));
	same(u->drop_tokens, json_object_get(o, "drop_tokens"), "drop_tok",
	    l, m);
	same(u->drop_assign, json_object_get(o, "drop_assign"), "drop_asg",
	    l, m);
	same(u->imp_cv2, json_object_get(o, "imp_cv2"), "imp_cv2", l, m);
	same(u->load_cv2, json_object_get(o, "load_cv2"), "load_cv2", l, m);
	same(u->eff_experts, json_object_get(o, "eff_experts"), "eff", l, m);
	same(u->entropy, json_object_get(o, "entropy"), "entropy", l, m);
	same(u->zloss, json_object_get(o, "zloss"), "zloss", l, m);
	same(u->zmean, json_object_get(o, "z_mean"), "z_mean", l, m);
	same(u->zmax, json_object_get(o, "z_max"), "z_max", l, m);
	for (int i = 0; i < 6; i++)
		for (int e = 0; e < CE; e++)
			same(v[i][e], json_array_get(json_object_get(o,
			    vec[i]), e), vec[i], l, m);
}

/* Counts of a (rows, E) matrix equal the reference's exactly. */
static void
check_matrix(const double *x, int rows, json_t *a)
{
	assert_int_equal(json_array_size(a), rows);
	for (int r = 0; r < rows; r++)
		for (int e = 0; e < CE; e++)
			assert_true(x[r * CE + e] == json_number_value(
			    json_array_get(json_array_get(a, r), e)));
}

static void
test_numpy_reference(void **state)
{
	char path[4200], cmd[8600];
	long bounds[5];
	struct vlm_route_stats s;
	struct vlm_route_summary u;
	json_error_t je;
	json_t *ref;
	FILE *p;

	(void)state;
	if (!have_numpy()) {
		print_message("skipping: /usr/bin/python3 has no numpy\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/crafted.routes", test_tmpdir());
	write_crafted(path, bounds, 1);
	assert_int_equal(read_stats(path, &s), 0);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/routes-ref.py '%s'",
	    path);
	assert_non_null(p = popen(cmd, "r"));
	ref = json_loadf(p, 0, &je);
	assert_int_equal(pclose(p), 0);
	assert_non_null(ref);
	assert_int_equal(s.batches, 3);
	assert_int_equal(s.nclasses, 3);
	for (int l = 0; l < CL; l++) {
		json_t *lay = json_array_get(json_object_get(ref, "layers"), l);
		char key[2] = { 0 };
		for (int m = 0; m < 3; m++) {
			key[0] = (char)('0' + m);
			assert_non_null(json_object_get(lay, key));
			assert_int_equal(vlm_route_summarize(&s, l, m, &u), 0);
			check_summary(&u, json_object_get(lay, key), l, m);
			vlm_route_summary_release(&u);
		}
		check_matrix(s.l[l].cls, s.l[l].ncls, json_object_get(lay,
		    "cls"));
		check_matrix(s.l[l].pos, s.l[l].npos, json_object_get(lay,
		    "pos"));
	}
	json_decref(ref);
	vlm_route_stats_release(&s);
}

/* ---- truncated and corrupt streams --------------------------------------- */

/* Copy the first n bytes of src to dst. */
static void
cut(const char *src, const char *dst, long n)
{
	FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
	char buf[4096];
	long k;

	assert_true(a && b);
	while (n > 0 && (k = (long)fread(buf, 1, n < 4096 ? n : 4096, a)) > 0) {
		fwrite(buf, 1, k, b);
		n -= k;
	}
	fclose(a);
	fclose(b);
}

/* Every cut of the stream fails; the batches before the cut count. */
static void
test_truncated(void **state)
{
	char full[4200], part[4200];
	long bounds[5];
	struct vlm_route_stats s, ref;

	(void)state;
	snprintf(full, sizeof(full), "%s/full.routes", test_tmpdir());
	snprintf(part, sizeof(part), "%s/part.routes", test_tmpdir());
	write_crafted(full, bounds, 1);
	for (long n = 0; n < bounds[4]; n += n < 200 ? 1 : 37) {
		int whole = 0, rc;
		for (int b = 0; b <= 3; b++)
			whole = n >= bounds[b] ? b : whole;
		cut(full, part, n);
		rc = read_stats(part, &s);
		assert_true(rc < 0);
		if (rc == -2)
			continue; /* the metadata itself was cut */
		assert_int_equal(s.batches, n >= bounds[0] ? whole : 0);
		vlm_route_stats_release(&s);
	}
	/* a cut between records says "truncated"; the part's statistics are
	 * those of a whole stream of the same batches */
	for (int b = 0; b <= 3; b++) {
		cut(full, part, bounds[b]);
		assert_int_equal(read_stats(part, &s), -1);
		assert_non_null(strstr(vlm_errmsg(), "truncated"));
		assert_int_equal(s.batches, b);
		if (b == 3) {
			assert_int_equal(read_stats(full, &ref), 0);
			assert_memory_equal(s.l[1].m[0].load,
			    ref.l[1].m[0].load, 4 * CE * sizeof(double));
			assert_true(s.l[1].m[1].zsq == ref.l[1].m[1].zsq);
			vlm_route_stats_release(&ref);
		}
		vlm_route_stats_release(&s);
	}
}

/* The crafted batches, then end (a JSON record, or NULL): read_stats. */
static int
read_with(const char *end)
{
	char path[4200];
	long bounds[5];
	struct vlm_route_stats s;
	FILE *f;
	int rc;

	snprintf(path, sizeof(path), "%s/bad.routes", test_tmpdir());
	write_crafted(path, bounds, 0);
	assert_non_null(f = fopen(path, "ab"));
	if (end)
		put_json(f, end);
	fclose(f);
	rc = read_stats(path, &s);
	if (rc != -2)
		vlm_route_stats_release(&s);
	return rc;
}

static void
test_corrupt(void **state)
{
	char path[4200];
	FILE *f;
	struct vlm_route_stats s;

	(void)state;
	assert_int_equal(read_with("{\"end\":true,\"batches\":3,"
	    "\"examples\":[5,3]}"), 0);
	assert_int_equal(read_with("{\"end\":true,\"batches\":2,"
	    "\"examples\":[5,3]}"), -1);
	assert_non_null(strstr(vlm_errmsg(), "end record's counts"));
	assert_int_equal(read_with("{\"what\":1}"), -1);
	assert_non_null(strstr(vlm_errmsg(), "unknown record"));
	assert_int_equal(read_with("{\"end\":true,\"batches\":3,"
	    "\"examples\":[5,3]}"), 0);
	/* bytes after the end record */
	snprintf(path, sizeof(path), "%s/bad.routes", test_tmpdir());
	assert_non_null(f = fopen(path, "ab"));
	fputc('x', f);
	fclose(f);
	assert_int_equal(read_stats(path, &s), -1);
	assert_non_null(strstr(vlm_errmsg(), "after the end record"));
	vlm_route_stats_release(&s);
	/* not a routing stream: an embeddings stream's metadata */
	assert_non_null(f = fopen(path, "wb"));
	put_json(f, "{\"format\":\"vlm-embeddings\",\"version\":1,\"dim\":4}");
	fclose(f);
	assert_int_equal(read_stats(path, &s), -2);
	assert_non_null(strstr(vlm_errmsg(), "not a routing-record stream"));
	/* an expert out of range */
	assert_non_null(f = fopen(path, "wb"));
	put_json(f, crafted_meta);
	put_json(f, "{\"batch\":0,\"modality\":\"text\",\"examples\":1,"
	    "\"layers\":[{\"layer\":1,\"S\":1,\"C\":4,\"group\":1,"
	    "\"fill\":[0,0,0,1]}]}");
	{
		static const char *ids[1] = { "1" };
		static const int32_t lab[1] = { -1 }, tok[2] = { 0, 0 };
		static const int32_t idx[2] = { 3, 4 };
		static const uint8_t keep[2] = { 1, 0 };
		static const float w[2] = { 1, 0 }, z[4] = { 0 };
		assert_int_equal(vlm_npy_write_str(f, "t", ids, 1), 0);
		put(f, VLM_DTYPE_I32, lab, 1, 0);
		put(f, VLM_DTYPE_I32, tok, 1, 2);
		put(f, VLM_DTYPE_I32, idx, 1, 2);
		put(f, VLM_DTYPE_U8, keep, 1, 2);
		put(f, VLM_DTYPE_F32, w, 1, 2);
		put(f, VLM_DTYPE_F32, z, 1, 4);
	}
	fclose(f);
	assert_int_equal(read_stats(path, &s), -1);
	assert_non_null(strstr(vlm_errmsg(), "bad expert"));
	vlm_route_stats_release(&s);
}

/* The one-image stream of write_one read back: read_stats' result. */
static int
read_one(const char *meta, const char *classes, int32_t label)
{
	char path[4200];
	struct vlm_route_stats s;
	int rc;

	snprintf(path, sizeof(path), "%s/one.routes", test_tmpdir());
	write_one(path, meta, classes, label);
	rc = read_stats(path, &s);
	if (rc != -2)
		vlm_route_stats_release(&s);
	if (rc < 0 && (!strstr(vlm_errmsg(), path) ||
	    strchr(vlm_errmsg(), '\n')))
		fail_msg("not one line naming the file: '%s'", vlm_errmsg());
	return rc;
}

/* What a stream claims is bounded where it is read: the patch grid,
 * the layers x experts x tokens the statistics hold, labels, classes. */
static void
test_bounds(void **state)
{
#define META(grid, tokens, experts) "{\"format\":\"vlm-routes\"," \
	"\"version\":1,\"experts\":" experts ",\"top_k\":1,\"layers\":" \
	"[{\"tower\":\"vision\",\"block\":0,\"pool\":0,\"name\":\"v\"}]," \
	"\"image_tokens\":" tokens ",\"grid\":" grid ",\"cls\":false," \
	"\"context\":4}"
	static const struct {
		const char *meta, *classes;
		int32_t label;
		int rc;
		const char *want;
	} v[] = {
		{ META("2", "4", "2"), NULL, 0, 0, NULL },
		{ META("2", "4", "2"), NULL, -1, 0, NULL },
		{ META("2", "4", "2"), NULL, 65535, 0, NULL },
		{ META("0", "4", "2"), NULL, 0, -2, "bad \"grid\" in the "
		    "metadata" },
		{ META("3", "4", "2"), NULL, 0, -2, "is not \"grid\" (3) "
		    "squared" },
		{ META("4096", "16777216", "65536"), NULL, 0, -2,
		    "more than vlm handles" },
		{ META("2", "4", "2"), NULL, 134217728, -1,
		    "example 0 has label 134217728 (want -1 or 0 to 65535)" },
		{ META("2", "4", "2"), NULL, -2, -1, "has label -2" },
		{ META("2", "4", "2"), "{\"classes\":[\"cat\",\"dog\"]}", 1, 0,
		    NULL },
		{ META("2", "4", "2"), "{\"classes\":[\"cat\",\"dog\"]}", 2, -1,
		    "has label 2 (want -1 or 0 to 1)" },
	};
#undef META
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		int rc = read_one(v[i].meta, v[i].classes, v[i].label);
		if (rc != v[i].rc || (v[i].want && !strstr(vlm_errmsg(),
		    v[i].want)))
			fail_msg("case %zu: %d '%s', want %d '%s'", i, rc,
			    vlm_errmsg(), v[i].rc, v[i].want);
	}
}

/* ---- the writer after real forwards -------------------------------------- */

/* Check group g of a read batch against the run's view of its layer. */
static void
check_group(const struct vlm_routes_reader *rd,
    const struct vlm_routes_group *g, const struct vlm_run *r,
    const struct vlm_routes_layer *ly, int n, int T, const int *len)
{
	struct vlm_route_view v;
	int E = rd->E, K = rd->K, want = 0, ex, pos, *at;

	assert_int_equal(vlm_run_route(r, rd->modality, ly->block, ly->pool,
	    &v), 0);
	assert_int_equal(g->C, v.C);
	assert_int_equal(g->G, v.S);
	assert_memory_equal(g->fill, v.fill, E * sizeof(int32_t));
	for (int i = 0; i < n; i++)
		want += rd->modality ? len[i] : T;
	assert_int_equal(g->S, want);
	at = malloc((size_t)n * T * sizeof(int));
	for (int i = 0; i < n * T; i++)
		at[i] = -1;
	for (int s = 0; s < g->S; s++) {
		int k = g->tok[2 * s] * T + g->tok[2 * s + 1];
		assert_int_equal(at[k], -1); /* each token once */
		at[k] = s;
	}
	for (int s = 0; s < v.S; s++) {
		int t;
		if (v.mod[s] != rd->modality || vlm_run_row_info(r,
		    rd->modality, v.block, v.rows[s], &ex, &pos) < 0 || ex >= n)
			continue;
		assert_true((t = at[ex * T + pos]) >= 0);
		assert_memory_equal(g->idx + t * K, v.idx + s * K, K * 4);
		assert_memory_equal(g->keep + t * K, v.keep + s * K, K);
		assert_memory_equal(g->w + t * K, v.w + s * K, K * 4);
		assert_memory_equal(g->z + t * E, v.z + s * E, E * 4);
	}
	free(at);
}

/* Forward 3 images and 2 texts, record 2 of each, read them back. */
static void
writer_case(const char *preset, const char *set, int nlayers)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_rng g;
	struct vlm_routes_writer w;
	struct vlm_routes_reader rd;
	static const char *ids[2] = { "a.png", "b.png" };
	static const int32_t lab[2] = { 4, 1 };
	int len[2] = { 4, 9 }, S, T, rc, nb = 0;
	char path[4200];
	float *img;
	int32_t *tok;
	struct vlm_run *r;
	FILE *f;

	assert_int_equal(vlm_config_preset(&c, preset), 0);
	if (set)
		assert_int_equal(vlm_config_set(&c, set), 0);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	vlm_model_randomize(&m, 7);
	S = c.image_size, T = vlm_config_image_tokens(&c);
	img = malloc(sizeof(float) * 3 * 3 * S * S);
	tok = calloc(2 * (size_t)c.context, sizeof(int32_t));
	vlm_rng_seed(&g, 1);
	for (int i = 0; i < 3 * 3 * S * S; i++)
		img[i] = (float)vlm_rng_normal(&g);
	for (int b = 0; b < 2; b++) {
		for (int t = 0; t < len[b] - 1; t++)
			tok[b * c.context + t] = 1 + (int)vlm_rng_below(&g, 50);
		tok[b * c.context + len[b] - 1] = c.vocab - 1; /* EOT */
	}
	assert_non_null(r = vlm_run_new(&m, 3, 2, 0));
	assert_int_equal(vlm_forward(r, &m, img, tok), 0);
	snprintf(path, sizeof(path), "%s/w.routes", test_tmpdir());
	assert_non_null(f = fopen(path, "w+b"));
	assert_int_equal(vlm_routes_writer_init(&w, f, path, &m), 0);
	assert_int_equal(w.nlayers, nlayers);
	assert_int_equal(vlm_routes_write_batch(&w, r, &m, 0, ids, lab, 2), 0);
	assert_int_equal(vlm_routes_write_batch(&w, r, &m, 1, NULL, NULL, 2),
	    0);
	assert_int_equal(vlm_routes_writer_finish(&w), 0);
	rewind(f);
	assert_int_equal(vlm_routes_reader_init(&rd, f, path), 0);
	assert_int_equal(rd.nlayers, nlayers);
	while ((rc = vlm_routes_reader_next(&rd)) == 1) {
		assert_int_equal(rd.modality, nb);
		assert_int_equal(rd.n, 2);
		assert_string_equal(rd.ids[1], nb ? "1" : "b.png");
		assert_int_equal(rd.labels[0], nb ? -1 : 4);
		assert_true(rd.ng > 0);
		for (int j = 0; j < rd.ng; j++)
			check_group(&rd, &rd.g[j], r, &rd.layers[rd.g[j].layer],
			    2, nb ? c.context : T, len);
		nb++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(nb, 2);
	vlm_routes_reader_release(&rd);
	fclose(f);
	vlm_run_free(r);
	vlm_model_release(&m);
	free(img);
	free(tok);
}

static void
test_writer(void **state)
{
	(void)state;
	writer_case("tiny-moe", NULL, 2);                 /* one-tower */
	writer_case("tiny", "moe.experts=4", 4);          /* two towers */
	writer_case("tiny-moe", "moe.modality_experts=true", 4); /* VL-MoE */
}

/* A model without MoE layers has nothing to record. */
static void
test_writer_dense(void **state)
{
	struct vlm_config c;
	struct vlm_model m;
	struct vlm_routes_writer w;

	(void)state;
	vlm_config_preset(&c, "tiny");
	assert_int_equal(vlm_model_init(&m, &c), 0);
	assert_int_equal(vlm_routes_writer_init(&w, stdout, "x", &m), -1);
	assert_non_null(strstr(vlm_errmsg(), "no MoE layer"));
	vlm_model_release(&m);
}

/* ---- diff ---------------------------------------------------------------- */

static void
diff_files(const char *a, const char *b, struct vlm_route_diff *d)
{
	struct vlm_routes_reader r[2];
	struct vlm_route_stats s[2];
	FILE *f[2] = { fopen(a, "rb"), fopen(b, "rb") };
	int rc[2];

	for (int i = 0; i < 2; i++) {
		assert_non_null(f[i]);
		assert_int_equal(vlm_routes_reader_init(&r[i], f[i], "x"), 0);
		assert_int_equal(vlm_route_stats_init(&s[i], &r[i]), 0);
	}
	assert_int_equal(vlm_route_diff_init(d, &s[0], &s[1]), 0);
	while ((rc[0] = vlm_routes_reader_next(&r[0])) == 1 &&
	    (rc[1] = vlm_routes_reader_next(&r[1])) == 1)
		vlm_route_diff_add(d, &r[0], &r[1]);
	for (int i = 0; i < 2; i++) {
		vlm_routes_reader_release(&r[i]);
		vlm_route_stats_release(&s[i]);
		fclose(f[i]);
	}
}

static void
test_diff(void **state)
{
	char a[4200], b[4200];
	long bounds[5];
	struct vlm_route_diff d;
	int64_t total = 0, diag = 0;

	(void)state;
	snprintf(a, sizeof(a), "%s/a.routes", test_tmpdir());
	snprintf(b, sizeof(b), "%s/b.routes", test_tmpdir());
	write_crafted(a, bounds, 1);
	diff_files(a, a, &d);
	assert_int_equal(d.aligned, 1);
	for (int l = 0; l < CL; l++)
		for (int m = 0; m < 2; m++) {
			assert_true(d.total[l * 2 + m] > 0);
			assert_int_equal(d.same[l * 2 + m], d.total[l * 2 + m]);
			total += d.total[l * 2 + m];
			for (int e = 0; e < CE; e++)
				diag += d.trans[((l * 2 + m) * CE + e) * CE +
				    e];
		}
	/* every token once per layer: 5 images x 5 + texts 3 + 6 + 1 */
	assert_int_equal(total, CL * (5 * CT + 10));
	assert_int_equal(diag, total);
	vlm_route_diff_release(&d);
	/* other inputs (the hand stream's single layer) do not line up */
	cut(a, b, bounds[1]); /* one batch, then truncated */
	diff_files(a, b, &d);
	assert_int_equal(d.aligned, 1); /* the first batch still agrees */
	assert_int_equal(d.total[0], 3 * CT);
	vlm_route_diff_release(&d);
}

/* ---- the PNG of vlm-route-stats ------------------------------------------ */

/* An 8-bit RGB PNG read with libpng: pixels (h,w,3) malloc'ed. */
static unsigned char *
load_png(const char *path, int *w, int *h)
{
	unsigned char sig[8], *px;
	png_structp p;
	png_infop info;
	png_bytepp rows;
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fread(sig, 1, 8, f), 8);
	assert_int_equal(png_sig_cmp(sig, 0, 8), 0);
	p = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	info = png_create_info_struct(p);
	if (setjmp(png_jmpbuf(p)))
		fail_msg("'%s': libpng cannot read it", path);
	png_init_io(p, f);
	png_set_sig_bytes(p, 8);
	png_read_png(p, info, PNG_TRANSFORM_IDENTITY, NULL);
	assert_int_equal(png_get_color_type(p, info), PNG_COLOR_TYPE_RGB);
	assert_int_equal(png_get_bit_depth(p, info), 8);
	*w = (int)png_get_image_width(p, info);
	*h = (int)png_get_image_height(p, info);
	rows = png_get_rows(p, info);
	assert_non_null(px = malloc((size_t)*w * *h * 3));
	for (int y = 0; y < *h; y++)
		memcpy(px + (size_t)y * *w * 3, rows[y], (size_t)*w * 3);
	png_destroy_read_struct(&p, &info, NULL);
	fclose(f);
	return px;
}

static void
test_png(void **state)
{
	const char *bin = getenv("BIN");
	char prog[4200], path[4200], png[4200], cmd[13000];
	long bounds[5];
	unsigned char *px;
	int yellow = 0, w, h;

	(void)state;
	snprintf(prog, sizeof(prog), "%s/vlm-route-stats", bin ? bin : "bin");
	if (access(prog, X_OK) != 0) {
		print_message("skipping: %s not built\n", prog);
		skip();
	}
	snprintf(path, sizeof(path), "%s/png.routes", test_tmpdir());
	snprintf(png, sizeof(png), "%s/out.png", test_tmpdir());
	write_crafted(path, bounds, 1);
	snprintf(cmd, sizeof(cmd), "'%s' --png '%s' '%s' >/dev/null", prog, png,
	    path);
	assert_int_equal(system(cmd), 0);
	px = load_png(png, &w, &h);
	/*
	 * The layout of route-stats-png.c: the widest line is the class
	 * panel's title "block 3 classes (max 0.xxx)", 27 characters of 12
	 * pixels plus margins of 10; panels image (2 layers), text (2
	 * layers), classes (3): each 2 lines of 18, 18 per row, 12 apart.
	 */
	assert_int_equal(w, 20 + 27 * 12);
	assert_int_equal(h, 20 - 12 + (36 + 2 * 18 + 12) + (36 + 2 * 18 + 12) +
	    (36 + 3 * 18 + 12));
	assert_true(px[0] == 255 && px[1] == 255 && px[2] == 255);
	for (int i = 0; i < w * h; i++)
		yellow += px[3 * i] == 253 && px[3 * i + 1] == 231 &&
		    px[3 * i + 2] == 37;
	/* each panel's largest value: at least one cell of 26 x 16 */
	assert_true(yellow >= 3 * 26 * 16);
	free(px);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_counts),
		cmocka_unit_test(test_numpy_reference),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_writer_dense),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_png),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
