/*
 * test-metrics.c - libcore/eval/metrics.c against CLIP_benchmark: its own code
 * computed every number of ../shared/fixtures/clip-benchmark-metrics
 * from the planted embeddings there (the classifier, the logits, acc1,
 * acc5, mean per-class recall, recall@1/5/10 both ways); plus tiny cases
 * worked by hand: ties, classes without items, fewer than 5 classes,
 * images with several captions, bad labels.
 */
#include <math.h>

#include <jansson.h>

#include "testutil.h"

#define FIX "clip-benchmark-metrics/"
#define TOL 1e-6

/* metrics_reference.json: section.key as a number. */
static double
reference(const char *section, const char *key)
{
	json_error_t e;
	json_t *j = json_load_file(fixture(FIX "metrics_reference.json"), 0,
	    &e);
	json_t *v;
	double d;

	assert_non_null(j);
	v = json_object_get(json_object_get(j, section), key);
	assert_true(json_is_number(v));
	d = json_number_value(v);
	json_decref(j);
	return d;
}

static void
test_fixture_classification(void **state)
{
	struct vlm_tensor tt, ti, tw, tl;
	struct vlm_cls_metrics m, m2;
	float *text, *img, *ref_w, *ref_logits, W[16 * 7], *logits;
	int64_t n;
	int *y;

	(void)state;
	NEED_FIXTURE(fixture(FIX "metrics_reference.json"));
	text = fixture_f32(FIX "cls_text_features.npy", &tt);
	img = fixture_f32(FIX "cls_image_features.npy", &ti);
	ref_w = fixture_f32(FIX "cls_classifier.npy", &tw);
	ref_logits = fixture_f32(FIX "cls_logits.npy", &tl);
	y = fixture_ids(FIX "cls_labels.npy", &n, NULL);
	assert_true(tt.shape[0] == 21 && tt.shape[1] == 16);
	assert_true(tw.shape[0] == 16 && tw.shape[1] == 7 && n == 200);

	/* 7 classes x 3 templates, class major: the classifier, columns */
	assert_int_equal(vlm_zeroshot_classifier(W, text, 7, 3, 16), 0);
	for (int i = 0; i < 16 * 7; i++)
		assert_true(fabs(W[i] - ref_w[i]) < TOL);
	/* logits = 100 norm(img) @ classifier: float32 products, ~1e-7 */
	logits = malloc(200 * 7 * sizeof(*logits));
	assert_int_equal(vlm_zeroshot_logits(logits, img, ref_w, 200, 16, 7),
	    0);
	assert_true(rel_err(logits, ref_logits, 200 * 7) < TOL);

	assert_int_equal(vlm_metrics_cls(&m, logits, y, n, 7, NULL, NULL), 0);
	assert_true(fabs(m.acc1 - reference("zeroshot_classification",
	    "acc1")) < TOL);
	assert_true(fabs(m.acc5 - reference("zeroshot_classification",
	    "acc5")) < TOL);
	assert_true(fabs(m.mean_per_class_recall - reference(
	    "zeroshot_classification", "mean_per_class_recall")) < TOL);
	/* the reference logits give the very same metrics */
	assert_int_equal(vlm_metrics_cls(&m2, ref_logits, y, n, 7, NULL,
	    NULL), 0);
	assert_true(m2.acc1 == m.acc1 && m2.acc5 == m.acc5 &&
	    m2.mean_per_class_recall == m.mean_per_class_recall);
	free(logits);
	free(y);
	free(tt.data);
	free(ti.data);
	free(tw.data);
	free(tl.data);
}

static void
test_fixture_retrieval(void **state)
{
	static const char *const ik[] = { "image_retrieval_recall@1",
	    "image_retrieval_recall@5", "image_retrieval_recall@10" };
	static const char *const tk[] = { "text_retrieval_recall@1",
	    "text_retrieval_recall@5", "text_retrieval_recall@10" };
	struct vlm_tensor ti, tt;
	double ir[VLM_RECALL_NK], tr[VLM_RECALL_NK];
	float *img, *txt;
	int64_t n;
	int *t2i;

	(void)state;
	NEED_FIXTURE(fixture(FIX "metrics_reference.json"));
	img = fixture_f32(FIX "ret_image_features.npy", &ti);
	txt = fixture_f32(FIX "ret_text_features.npy", &tt);
	t2i = fixture_ids(FIX "ret_text_to_image.npy", &n, NULL);
	assert_true(ti.shape[0] == 60 && tt.shape[0] == 166 && n == 166);
	assert_int_equal(vlm_metrics_retrieval(ir, tr, img, 60, txt, 166, t2i,
	    16), 0);
	for (int j = 0; j < VLM_RECALL_NK; j++) {
		assert_true(fabs(ir[j] - reference("zeroshot_retrieval",
		    ik[j])) < TOL);
		assert_true(fabs(tr[j] - reference("zeroshot_retrieval",
		    tk[j])) < TOL);
	}
	free(t2i);
	free(ti.data);
	free(tt.data);
}

/* Two classes, two templates each, by hand: (2,0),(0,3) -> (1,1)/sqrt 2. */
static void
test_classifier_by_hand(void **state)
{
	const float text[] = { 2, 0, 0, 3, /* class 0 */ 0, -5, 0, -1 };
	float W[4], img[] = { 3, 4 }, logits[2];
	const double h = sqrt(0.5);

	(void)state;
	assert_int_equal(vlm_zeroshot_classifier(W, text, 2, 2, 2), 0);
	/* W is (D, C): column 0 = (h, h), column 1 = (0, -1) */
	assert_true(fabs(W[0] - h) < 1e-7 && fabs(W[2] - h) < 1e-7);
	assert_true(fabs(W[1]) < 1e-7 && fabs(W[3] + 1) < 1e-7);
	/* img (3,4)/5: logits 100 * (0.6h + 0.8h), 100 * -0.8 */
	assert_int_equal(vlm_zeroshot_logits(logits, img, W, 1, 2, 2), 0);
	assert_true(fabs(logits[0] - 140 * h) < 1e-4);
	assert_true(fabs(logits[1] + 80) < 1e-4);
}

/*
 * Ties and fewer than 5 classes. Rows (C = 3):
 *   [1 1 0] label 1: tie with class 0, which ranks first: miss
 *   [1 1 0] label 0: hit
 *   [0 2 2] label 2: miss (class 1 first)
 *   [5 5 5] label 0: hit
 * acc1 2/4; acc5 NaN; recall class 0: 2/2, class 1: 0/1, class 2: 0/1:
 * mean 1/3. Predictions (first maximum): 0 0 1 0.
 */
static void
test_ties(void **state)
{
	const float l[] = { 1, 1, 0, 1, 1, 0, 0, 2, 2, 5, 5, 5 };
	const int y[] = { 1, 0, 2, 0 };
	const int64_t want_cm[] = { 2, 0, 0, 1, 0, 0, 0, 1, 0 };
	struct vlm_cls_metrics m;
	double recall[3];
	int64_t cm[9];

	(void)state;
	assert_int_equal(vlm_metrics_cls(&m, l, y, 4, 3, recall, cm), 0);
	assert_true(m.acc1 == 0.5);
	assert_true(isnan(m.acc5));
	assert_true(fabs(m.mean_per_class_recall - 1.0 / 3) < 1e-15);
	assert_true(recall[0] == 1 && recall[1] == 0 && recall[2] == 0);
	assert_memory_equal(cm, want_cm, sizeof(cm));
}

/*
 * Classes without items and top 5 (C = 6): class 1 and 5 absent.
 * Row scores are 6 - j except one planted high: the label's rank is the
 * count of classes scoring more.
 *   label 0, scores 6 5 4 3 2 1: rank 0
 *   label 4, scores 6 5 4 3 2 1: rank 4 (top 5, not top 1)
 *   label 4, scores 6 5 4 3 2 9: rank 5 (out of the top 5)
 *   label 2, scores 0 0 7 0 0 0: rank 0
 *   label 3, scores 1 1 1 1 1 1: rank 3 (ties: lower classes first)
 * acc1 2/5, acc5 4/5; recalls: c0 1, c2 1, c3 0, c4 0: mean 1/2.
 */
static void
test_missing_classes(void **state)
{
	const float l[] = { 6, 5, 4, 3, 2, 1, 6, 5, 4, 3, 2, 1,
	    6, 5, 4, 3, 2, 9, 0, 0, 7, 0, 0, 0, 1, 1, 1, 1, 1, 1 };
	const int y[] = { 0, 4, 4, 2, 3 };
	struct vlm_cls_metrics m;
	double recall[6];

	(void)state;
	assert_int_equal(vlm_metrics_cls(&m, l, y, 5, 6, recall, NULL), 0);
	assert_true(fabs(m.acc1 - 0.4) < 1e-15);
	assert_true(fabs(m.acc5 - 0.8) < 1e-15);
	assert_true(m.mean_per_class_recall == 0.5);
	assert_true(isnan(recall[1]) && isnan(recall[5]));
	assert_true(recall[0] == 1 && recall[4] == 0);
}

static void
test_bad_labels(void **state)
{
	const float l[] = { 1, 2 };
	const int y[] = { 2 };
	struct vlm_cls_metrics m;

	(void)state;
	assert_int_equal(vlm_metrics_cls(&m, l, y, 1, 2, NULL, NULL), -1);
	assert_non_null(strstr(vlm_errmsg(), "out of range"));
	assert_int_equal(vlm_metrics_cls(&m, l, y, 0, 2, NULL, NULL), -1);
}

/* acc5 needs 5 classes: NaN with 4; with 5 every label is in the top 5. */
static void
test_acc5_classes(void **state)
{
	const float l[] = { 1, 2, 3, 4, 5 };
	const int y[] = { 0 };
	struct vlm_cls_metrics m;

	(void)state;
	assert_int_equal(vlm_metrics_cls(&m, l, y, 1, 4, NULL, NULL), 0);
	assert_true(isnan(m.acc5) && m.acc1 == 0);
	assert_int_equal(vlm_metrics_cls(&m, l, y, 1, 5, NULL, NULL), 0);
	assert_true(m.acc5 == 1 && m.acc1 == 0);
}

/* Unit vectors in the plane at the given angles (degrees). */
static void
at_angles(float *v, const double *deg, int n)
{
	const double pi = acos(-1);

	for (int i = 0; i < n; i++) {
		v[2 * i] = (float)cos(deg[i] * pi / 180);
		v[2 * i + 1] = (float)sin(deg[i] * pi / 180);
	}
}

/*
 * Retrieval by hand, D = 2, unit vectors (cosine order is angle order).
 * Images: a (0 deg), b (0 deg, a duplicate: ties), c (90 deg), and 8
 * more at 180 deg. Texts: t0 (0) of b, t1 (80) of c, t2 (30) of c, t3
 * (85) of a.
 * Image retrieval: t0 ranks a, b (a tie: a first) -> b at 1, a miss at
 * 1; t1 -> c first: hit; t2 -> a, b (cos 30) before c (cos 60): rank 2;
 * t3 -> c (cos 5) then a: rank 1.  @1 = 1/4, @5 = @10 = 1.
 * Text retrieval (11 images): a's text t3 is 4th (after t0, t2, t1):
 * rank 3; b's t0 first; c's best text t1 (cos 10) comes after t3 (cos
 * 5): rank 1. The 8 others have no texts: misses. @1 = 1/11, @5 = @10
 * = 3/11.
 */
static void
test_retrieval_by_hand(void **state)
{
	const double ideg[] = { 0, 0, 90, 180, 180, 180, 180, 180, 180, 180,
	    180 }, tdeg[] = { 0, 80, 30, 85 };
	const int t2i[] = { 1, 2, 2, 0 };
	float img[11 * 2], txt[4 * 2];
	double ir[VLM_RECALL_NK], tr[VLM_RECALL_NK];

	(void)state;
	at_angles(img, ideg, 11);
	at_angles(txt, tdeg, 4);
	img[4] *= 3, img[5] *= 3; /* any length: it is normalised */
	assert_int_equal(vlm_metrics_retrieval(ir, tr, img, 11, txt, 4, t2i,
	    2), 0);
	assert_true(ir[0] == 0.25 && ir[1] == 1 && ir[2] == 1);
	assert_true(fabs(tr[0] - 1.0 / 11) < 1e-15);
	assert_true(fabs(tr[1] - 3.0 / 11) < 1e-15);
	assert_true(fabs(tr[2] - 3.0 / 11) < 1e-15);
}

/*
 * A tie among texts: image p (0 deg) and q (90 deg); t0 (30) of q, t1
 * (-30) of p. p's scores tie (cos 30 both): t0 ranks first, so p's t1
 * is a miss at 1. q: t0 (cos 60) before t1 (cos 120): hit.
 * Text @1 = 1/2, @5 = 1. Image retrieval: t0 -> p (cos 30) before q:
 * miss at 1; t1 -> p first: hit. @1 = 1/2, @5 = 1.
 */
static void
test_retrieval_text_ties(void **state)
{
	const double ideg[] = { 0, 90 }, tdeg[] = { 30, -30 };
	const int t2i[] = { 1, 0 };
	float img[4], txt[4];
	double ir[VLM_RECALL_NK], tr[VLM_RECALL_NK];

	(void)state;
	at_angles(img, ideg, 2);
	at_angles(txt, tdeg, 2);
	assert_int_equal(vlm_metrics_retrieval(ir, tr, img, 2, txt, 2, t2i,
	    2), 0);
	assert_true(tr[0] == 0.5 && tr[1] == 1 && tr[2] == 1);
	assert_true(ir[0] == 0.5 && ir[1] == 1 && ir[2] == 1);
}

static void
test_retrieval_bad_pairing(void **state)
{
	const float v[] = { 1, 0, 0, 1 };
	const int t2i[] = { 0, 2 };
	double ir[VLM_RECALL_NK], tr[VLM_RECALL_NK];

	(void)state;
	assert_int_equal(vlm_metrics_retrieval(ir, tr, v, 2, v, 2, t2i, 2),
	    -1);
	assert_non_null(strstr(vlm_errmsg(), "out of range"));
}

/* More than one block of queries, any thread count: the same bits. */
static void
test_retrieval_threads(void **state)
{
	enum { NI = 1500, NT = 2100, D = 8 };
	float *img = malloc(NI * D * sizeof(float));
	float *txt = malloc(NT * D * sizeof(float));
	int *t2i = malloc(NT * sizeof(int));
	double a[2][VLM_RECALL_NK], b[2][VLM_RECALL_NK];
	struct vlm_rng r;

	(void)state;
	vlm_rng_seed(&r, 5);
	for (int i = 0; i < NI * D; i++)
		img[i] = (float)vlm_rng_normal(&r);
	for (int t = 0; t < NT; t++) {
		t2i[t] = t % NI;
		for (int d = 0; d < D; d++)
			txt[t * D + d] = img[t2i[t] * D + d] +
			    (float)vlm_rng_normal(&r);
	}
	vlm_threads_set(1);
	assert_int_equal(vlm_metrics_retrieval(a[0], a[1], img, NI, txt, NT,
	    t2i, D), 0);
	vlm_threads_set(3);
	assert_int_equal(vlm_metrics_retrieval(b[0], b[1], img, NI, txt, NT,
	    t2i, D), 0);
	vlm_threads_set(0);
	assert_memory_equal(a, b, sizeof(a));
	assert_true(a[0][0] > 0.05 && a[0][2] < 1);
	free(img);
	free(txt);
	free(t2i);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_classification),
		cmocka_unit_test(test_fixture_retrieval),
		cmocka_unit_test(test_classifier_by_hand),
		cmocka_unit_test(test_ties),
		cmocka_unit_test(test_missing_classes),
		cmocka_unit_test(test_bad_labels),
		cmocka_unit_test(test_acc5_classes),
		cmocka_unit_test(test_retrieval_by_hand),
		cmocka_unit_test(test_retrieval_text_ties),
		cmocka_unit_test(test_retrieval_bad_pairing),
		cmocka_unit_test(test_retrieval_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
