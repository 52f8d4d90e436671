/*
 * test-config.c - the bounds on every size a config can set (config.c's
 * key table, vlm-model(5)) and the checked 64-bit size arithmetic the
 * derived sizes go through (tensor.c).
 */
#include "testutil.h"

#include "kernels.h" /* VLM_MAX_EXPERTS */

static void
test_size_arithmetic(void **state)
{
	(void)state;
	assert_true(vlm_size_mul(0, INT64_MAX) == 0);
	assert_true(vlm_size_mul(3037000499, 3037000499) ==
	    INT64_C(9223372030926249001));
	assert_true(vlm_size_mul(3037000500, 3037000500) == -1);
	assert_true(vlm_size_mul(INT64_C(1) << 62, 2) == -1);
	assert_true(vlm_size_mul(INT64_C(1) << 61, 2) == INT64_C(1) << 62);
	assert_true(vlm_size_mul(-2, 3) == -1);
	assert_true(vlm_size_mul(vlm_size_mul(INT64_MAX, 2), 0) == -1);
	assert_true(vlm_size_add(INT64_MAX - 1, 1) == INT64_MAX);
	assert_true(vlm_size_add(INT64_MAX, 1) == -1);
	assert_true(vlm_size_add(-1, 5) == -1);
}

/* Every preset is inside the limits. */
static void
test_presets_pass(void **state)
{
	static const char *const names[] = { "tiny", "tiny-moe", "s", "b",
		"openclip-tiny" };
	struct vlm_config c;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		assert_int_equal(vlm_config_preset(&c, names[i]), 0);
		assert_int_equal(vlm_config_check(&c), 0);
	}
}

/* A config built in code is held to the same ranges as a parsed one:
 * E above the aux losses' buffers, the image size of the file that
 * overflowed the token count, patch 0, a negative rank. */
static void
test_check_ranges_in_code(void **state)
{
	struct vlm_config c;

	(void)state;
	vlm_config_preset(&c, "tiny-moe");
	c.moe.experts = VLM_MAX_EXPERTS + 1;
	assert_int_equal(vlm_config_check(&c), -1);
	assert_non_null(strstr(vlm_errmsg(), "'moe.experts'"));
	c.moe.experts = VLM_MAX_EXPERTS;
	assert_int_equal(vlm_config_check(&c), 0);

	vlm_config_preset(&c, "tiny");
	c.image_size = 120816287, c.patch_size = 1;
	assert_int_equal(vlm_config_check(&c), -1);
	assert_non_null(strstr(vlm_errmsg(), "'image_size'"));
	c.image_size = 32, c.patch_size = 0;
	assert_int_equal(vlm_config_check(&c), -1);
	assert_non_null(strstr(vlm_errmsg(), "'patch_size'"));
	c.patch_size = 8, c.lora.rank = -1;
	assert_int_equal(vlm_config_check(&c), -1);
	assert_non_null(strstr(vlm_errmsg(), "'lora.rank'"));
	c.lora.rank = 0, c.text.pool = 7; /* no such name */
	assert_int_equal(vlm_config_check(&c), -1);
	assert_non_null(strstr(vlm_errmsg(), "'text.pool'"));
}

/* The limits are inclusive, and one past them is refused when parsed. */
static void
test_limits_inclusive(void **state)
{
	struct vlm_config c;
	char kv[64];

	(void)state;
	vlm_config_preset(&c, "tiny");
	assert_int_equal(vlm_config_set(&c, "vision.width=16384"), 0);
	assert_int_equal(vlm_config_set(&c, "vocab=1048576"), 0);
	assert_int_equal(vlm_config_set(&c, "context=16384"), 0);
	assert_int_equal(vlm_config_set(&c, "image_size=1024"), 0);
	assert_int_equal(vlm_config_set(&c, "patch_size=8"), 0); /* 128^2 */
	assert_int_equal(vlm_config_check(&c), 0);
	assert_int_equal(vlm_config_set(&c, "patch_size=4"), 0); /* 256^2 */
	assert_int_equal(vlm_config_check(&c), -1);
	assert_non_null(strstr(vlm_errmsg(), "65536 patches"));
	snprintf(kv, sizeof(kv), "vision.width=%d", VLM_MAX_WIDTH + 1);
	assert_int_equal(vlm_config_set(&c, kv), -1);
	assert_int_equal(vlm_config_set(&c, "vocab=1048577"), -1);
	/* an int64 that would wrap to 128 when cast to int */
	assert_int_equal(vlm_config_set(&c, "text.width=4294967424"), -1);
	assert_int_equal(c.text.width, 128); /* left as it was */
}

/* JSON from a file: the first key out of range is named; the struct
 * keeps no half-applied value of it. */
static void
test_json_ranges(void **state)
{
	struct vlm_config c;

	(void)state;
	vlm_config_preset(&c, "tiny");
	assert_int_equal(vlm_config_from_json(&c,
	    "{\"vocab\": 1099511627776}"), -1);
	assert_non_null(strstr(vlm_errmsg(), "'vocab': 1099511627776 is out "
	    "of range (1 to 1048576)"));
	assert_int_equal(c.vocab, 8192);
	assert_int_equal(vlm_config_from_json(&c,
	    "{\"moe\": {\"cf_eval\": -0.5}}"), -1);
	assert_non_null(strstr(vlm_errmsg(), "'moe.cf_eval'"));
	assert_int_equal(vlm_config_from_json(&c,
	    "{\"image_std\": [0.5, 0, 0.5]}"), -1);
	assert_non_null(strstr(vlm_errmsg(), "'image_std'"));
	/* a bound no float holds exactly: parsed and checked alike */
	assert_int_equal(vlm_config_from_json(&c,
	    "{\"image_std\": [0.000001, 1000, 0.5]}"), 0);
	assert_int_equal(vlm_config_check(&c), 0);
}

/* A model past the parameter limit is refused while its table is built,
 * before any slab is allocated, naming the tensor that crossed it. */
static void
test_param_limit(void **state)
{
	struct vlm_config c;
	struct vlm_model m;

	(void)state;
	vlm_config_preset(&c, "tiny");
	c.image_size = c.patch_size = 4096, c.vision.width = 16384;
	assert_int_equal(vlm_model_init(&m, &c), -1);
	assert_non_null(strstr(vlm_errmsg(), "more than 68719476736 "
	    "parameters (at 'visual.conv1.weight')"));
	assert_null(m.w);
	assert_null(m.params);
}

/* A model file's config may change its routing and losses, never its
 * parameters: top_k and the capacity factor pass, the width and the
 * number of experts are refused and leave the config as it was. */
static void
test_reconfig(void **state)
{
	struct vlm_config c, c2;
	struct vlm_model m;

	(void)state;
	assert_int_equal(vlm_config_preset(&c, "tiny-moe"), 0);
	assert_int_equal(vlm_model_init(&m, &c), 0);
	c2 = c;
	c2.moe.top_k = 2, c2.moe.cf_train = 2.5f;
	assert_int_equal(vlm_model_reconfig(&m, &c2), 0);
	assert_int_equal(m.cfg.moe.top_k, 2);
	assert_true(m.cfg.moe.cf_train == 2.5f);
	c2.moe.experts++;
	assert_int_equal(vlm_model_reconfig(&m, &c2), -1);
	assert_non_null(strstr(vlm_errmsg(), "would change the model's "
	    "parameters"));
	c2 = c;
	c2.vision.width *= 2;
	assert_int_equal(vlm_model_reconfig(&m, &c2), -1);
	assert_int_equal(m.cfg.moe.top_k, 2);
	assert_int_equal(m.cfg.vision.width, c.vision.width);
	vlm_model_release(&m);
}

/* A batch past VLM_RUN_MAX_ROWS token rows is refused before anything
 * is planned: 1024 images of 128x128 patches are 16778240 rows. */
static void
test_run_rows(void **state)
{
	struct vlm_config c;
	struct vlm_model m;

	(void)state;
	assert_int_equal(vlm_config_preset(&c, "tiny-moe"), 0);
	c.image_size = 4096, c.patch_size = 32;
	assert_int_equal(vlm_model_init(&m, &c), 0);
	assert_null(vlm_run_new(&m, 1024, 0, 0));
	assert_non_null(strstr(vlm_errmsg(), "1024 images and 0 texts is "
	    "16778240 token rows (limit 16777216)"));
	assert_null(vlm_run_new(&m, 0, VLM_RUN_MAX_ROWS / c.context + 1, 1));
	assert_non_null(strstr(vlm_errmsg(), "token rows (limit 16777216)"));
	vlm_model_release(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_arithmetic),
		cmocka_unit_test(test_presets_pass),
		cmocka_unit_test(test_check_ranges_in_code),
		cmocka_unit_test(test_limits_inclusive),
		cmocka_unit_test(test_json_ranges),
		cmocka_unit_test(test_param_limit),
		cmocka_unit_test(test_reconfig),
		cmocka_unit_test(test_run_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
