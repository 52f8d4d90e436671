/*
 * test-tensor.c - dtypes, tensor sizes and the F16/BF16 conversions.
 *
 * References: NumPy's float16 (run through /usr/bin/python3) for every
 * F16 value and every F32 rounding tie between F16 neighbours; the
 * compiler's _Float16 on a stride through all F32 bit patterns; for BF16
 * (NumPy has none) round-to-nearest-even evaluated by its definition in
 * double arithmetic, on every tie and on a stride through all patterns.
 */
#include <math.h>

#include "testutil.h"

static uint32_t
bits(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	return x;
}

static float
from_bits(uint32_t x)
{
	float f;

	memcpy(&f, &x, 4);
	return f;
}

static void
test_dtypes(void **state)
{
	enum vlm_dtype dt;
	static const size_t sizes[] = { 4, 2, 2, 4, 8, 1 };

	(void)state;
	for (int i = 0; i < VLM_DTYPE_COUNT; i++) {
		assert_int_equal(vlm_dtype_parse(vlm_dtype_name(i), &dt), 0);
		assert_int_equal(dt, i);
		assert_int_equal(vlm_dtype_size(i), sizes[i]);
	}
	assert_string_equal(vlm_dtype_name(VLM_DTYPE_BF16), "BF16");
	assert_int_equal(vlm_dtype_parse("f32", &dt), -1);
	assert_int_equal(vlm_dtype_parse("F64", &dt), -1);
	assert_non_null(strstr(vlm_errmsg(), "'F64'"));
	assert_int_equal(vlm_dtype_parse("", &dt), -1);
}

static void
test_sizes(void **state)
{
	struct vlm_tensor t = { VLM_DTYPE_F16, 4, { 4, 3, 32, 32 }, NULL };
	struct vlm_tensor s = { VLM_DTYPE_I64, 0, { 0 }, NULL };
	struct vlm_tensor z = { VLM_DTYPE_F32, 2, { 0, 7 }, NULL };
	char buf[64];

	(void)state;
	assert_int_equal(vlm_tensor_numel(&t), 4 * 3 * 32 * 32);
	assert_int_equal(vlm_tensor_nbytes(&t), 2 * 4 * 3 * 32 * 32);
	vlm_shape_str(&t, buf, sizeof(buf));
	assert_string_equal(buf, "[4, 3, 32, 32]");
	assert_int_equal(vlm_tensor_numel(&s), 1);
	assert_int_equal(vlm_tensor_nbytes(&s), 8);
	vlm_shape_str(&s, buf, sizeof(buf));
	assert_string_equal(buf, "[]");
	assert_int_equal(vlm_tensor_numel(&z), 0);
	vlm_shape_str(&z, buf, sizeof(buf));
	assert_string_equal(buf, "[0, 7]");
	/* short buffers: truncated but terminated */
	for (size_t n = 1; n < 16; n++) {
		memset(buf, 'x', sizeof(buf));
		vlm_shape_str(&t, buf, n);
		assert_true(strlen(buf) < n);
		assert_memory_equal(buf, "[4, 3, 32, 32]", strlen(buf));
	}
}

/* Every F16 pattern survives F16 -> F32 -> F16 bit for bit, NaNs too. */
static void
test_f16_round_trip(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = vlm_f16_to_f32((uint16_t)h);
		int e = (h >> 10) & 0x1f, m = h & 0x3ff;
		assert_int_equal(vlm_f32_to_f16(f), h);
		assert_int_equal(isnan(f) != 0, e == 31 && m != 0);
		assert_int_equal(isinf(f) != 0, e == 31 && m == 0);
		assert_int_equal(signbit(f) != 0, (h & 0x8000) != 0);
		if (e == 0) /* zero and subnormals: exactly m * 2^-24 */
			assert_true(fabsf(f) == ldexpf((float)m, -24));
	}
}

/* Read exactly n bytes from a pipe. */
static void
read_exact(FILE *p, void *buf, size_t n)
{
	assert_int_equal(fread(buf, 1, n, p), n);
}

static const char numpy_f16[] =
    "import sys, numpy as np\n"
    "o = sys.stdout.buffer\n"
    "h = np.arange(65536, dtype=np.uint16).view(np.float16)\n"
    "o.write(h.astype(np.float32).view(np.uint32).tobytes())\n"
    "# every tie between neighbouring F16 values, and 1 ulp either side\n"
    "pos = np.arange(0x7c00, dtype=np.uint16).view(np.float16)\n"
    "pos = pos.astype(np.float64)\n"
    "mid = (pos + np.append(pos[1:], 65536.0)) / 2\n"
    "m = mid.astype(np.float32)\n"
    "assert (m.astype(np.float64) == mid).all()\n"
    "m = m.view(np.uint32)\n"
    "x = np.concatenate([m, m - 1, m + 1])\n"
    "x = np.concatenate([x, x | np.uint32(0x80000000)])\n"
    "r = np.random.default_rng(1).integers(0, 2**32, 1 << 20)\n"
    "x = np.concatenate([x, r.astype(np.uint32)])\n"
    "x = x[~np.isnan(x.view(np.float32))]\n"
    "with np.errstate(over='ignore'):\n"
    "    y = x.view(np.float32).astype(np.float16).view(np.uint16)\n"
    "o.write(np.uint64(len(x)).tobytes() + x.tobytes() + y.tobytes())\n";

/* F16 <-> F32 against NumPy: all F16 values, all F32 ties. */
static void
test_f16_numpy(void **state)
{
	char script[4200], cmd[8500];
	uint32_t *ref = malloc(65536 * 4), *x;
	uint16_t *y;
	uint64_t n;
	FILE *f, *p;

	(void)state;
	if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
		free(ref);
		print_message("skipping: /usr/bin/python3 has no numpy\n");
		skip();
	}
	snprintf(script, sizeof(script), "%s/f16.py", test_tmpdir());
	assert_non_null(f = fopen(script, "w"));
	fputs(numpy_f16, f);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s'", script);
	assert_non_null(p = popen(cmd, "r"));
	read_exact(p, ref, 65536 * 4);
	for (uint32_t h = 0; h < 65536; h++)
		assert_int_equal(bits(vlm_f16_to_f32((uint16_t)h)), ref[h]);
	read_exact(p, &n, 8);
	assert_true(n > 100000 && n < 10000000);
	x = malloc(n * 4);
	y = malloc(n * 2);
	read_exact(p, x, n * 4);
	read_exact(p, y, n * 2);
	assert_int_equal(pclose(p), 0);
	for (uint64_t i = 0; i < n; i++) {
		uint16_t h = vlm_f32_to_f16(from_bits(x[i]));
		if (h != y[i])
			fail_msg("f32 0x%08x: got f16 0x%04x, numpy 0x%04x",
			    x[i], h, y[i]);
	}
	print_message("f32 -> f16: %llu values (ties first) match numpy\n",
	    (unsigned long long)n);
	free(ref);
	free(x);
	free(y);
}

/* F32 -> F16 against the compiler's _Float16 on a stride of patterns. */
static void
test_f16_compiler(void **state)
{
	(void)state;
#ifdef __FLT16_MAX__
	uint64_t n = 0;

	for (uint64_t x = 0; x < (1ull << 32); x += 251) {
		float f = from_bits((uint32_t)x);
		_Float16 r = (_Float16)f;
		uint16_t h;

		if (isnan(f)) {
			assert_true(isnan(vlm_f16_to_f32(vlm_f32_to_f16(f))));
			continue;
		}
		memcpy(&h, &r, 2);
		if (vlm_f32_to_f16(f) != h)
			fail_msg("f32 0x%08x: got 0x%04x, _Float16 0x%04x",
			    (uint32_t)x, vlm_f32_to_f16(f), h);
		n++;
	}
	print_message("f32 -> f16: %llu strided values match _Float16\n",
	    (unsigned long long)n);
#else
	print_message("skipping: no _Float16 in this compiler\n");
	skip();
#endif
}

/* BF16 rounding by definition: the nearer neighbour, ties to even. */
static uint16_t
bf16_ref(uint32_t x)
{
	uint32_t lo = x & 0xffff0000, e = (x >> 23) & 0xff;
	double v = fabs((double)from_bits(x)), vl, ulp;

	if (e == 0xff)
		return (uint16_t)(x >> 16); /* inf; NaN handled by caller */
	vl = fabs((double)from_bits(lo));
	ulp = ldexp(1.0, (e ? (int)e : 1) - 127 - 7);
	if (v - vl < vl + ulp - v)
		return (uint16_t)(lo >> 16);
	if (v - vl > vl + ulp - v || ((lo >> 16) & 1))
		return (uint16_t)((lo >> 16) + 1); /* may carry into inf */
	return (uint16_t)(lo >> 16);
}

static void
check_bf16(uint32_t x)
{
	float f = from_bits(x);
	uint16_t h = vlm_f32_to_bf16(f);

	if (isnan(f)) {
		assert_true(isnan(vlm_bf16_to_f32(h)));
		assert_int_equal(h >> 15, x >> 31);
	} else if (h != bf16_ref(x)) {
		fail_msg("f32 0x%08x: got bf16 0x%04x, want 0x%04x", x, h,
		    bf16_ref(x));
	}
}

static void
test_bf16(void **state)
{
	(void)state;
	/* every tie, 1 ulp either side, both signs; then a stride */
	for (uint32_t hi = 0; hi < 65536; hi++) {
		uint32_t x = hi << 16;
		check_bf16(x | 0x8000);
		check_bf16(x | 0x7fff);
		check_bf16(x | 0x8001);
		check_bf16(x);
		assert_int_equal(bits(vlm_bf16_to_f32((uint16_t)hi)), x);
		if (!isnan(from_bits(x)))
			assert_int_equal(vlm_f32_to_bf16(from_bits(x)), hi);
	}
	for (uint64_t x = 0; x < (1ull << 32); x += 257)
		check_bf16((uint32_t)x);
	/* the textbook ties: 1 + 2^-8 -> 1 (even), 1 + 3 * 2^-8 -> up */
	assert_int_equal(vlm_f32_to_bf16(1.0f + 0x1p-8f),
	    bf16_ref(bits(1.0f + 0x1p-8f)));
	assert_true(vlm_bf16_to_f32(vlm_f32_to_bf16(1.0f + 0x1p-8f)) == 1.0f);
	assert_true(vlm_bf16_to_f32(vlm_f32_to_bf16(1.0f + 0x3p-8f)) ==
	    1.0f + 0x4p-8f);
	assert_true(isinf(vlm_bf16_to_f32(vlm_f32_to_bf16(3.4e38f))));
	assert_true(isnan(vlm_bf16_to_f32(vlm_f32_to_bf16(
	    from_bits(0x7f800001)))));
}

static void
test_convert(void **state)
{
	enum { N = 4099 };
	static const enum vlm_dtype fl[] = { VLM_DTYPE_F32, VLM_DTYPE_F16,
	    VLM_DTYPE_BF16 };
	float *src = malloc(N * 4), *dst = malloc(N * 4), *back = malloc(N * 4);
	uint16_t *h = malloc(N * 2), *h2 = malloc(N * 2);

	(void)state;
	for (int i = 0; i < N; i++)
		src[i] = ldexpf((float)(i * 2654435761u % 100003) - 50000.0f,
		    i % 40 - 30);
	src[0] = INFINITY, src[1] = -0.0f, src[2] = NAN;
	assert_int_equal(vlm_convert_floats(h, VLM_DTYPE_F16, src,
	    VLM_DTYPE_F32, N), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(h[i], vlm_f32_to_f16(src[i]));
	assert_int_equal(vlm_convert_floats(h2, VLM_DTYPE_BF16, h,
	    VLM_DTYPE_F16, N), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(h2[i],
		    vlm_f32_to_bf16(vlm_f16_to_f32(h[i])));
	assert_int_equal(vlm_convert_floats(back, VLM_DTYPE_F32, h2,
	    VLM_DTYPE_BF16, N), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(bits(back[i]), bits(vlm_bf16_to_f32(h2[i])));
	assert_int_equal(vlm_convert_floats(h, VLM_DTYPE_F16, h2,
	    VLM_DTYPE_BF16, N), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(h[i], vlm_f32_to_f16(vlm_bf16_to_f32(h2[i])));
	for (int a = 0; a < 3; a++) { /* same dtype: a copy */
		memset(dst, 0, N * 4);
		assert_int_equal(vlm_convert_floats(dst, fl[a], src, fl[a],
		    N / 2), 0);
		assert_memory_equal(dst, src, N / 2 * vlm_dtype_size(fl[a]));
	}
	assert_int_equal(vlm_convert_floats(dst, VLM_DTYPE_I32, src,
	    VLM_DTYPE_F32, N), -1);
	assert_non_null(strstr(vlm_errmsg(), "I32"));
	assert_int_equal(vlm_convert_floats(dst, VLM_DTYPE_F32, src,
	    VLM_DTYPE_U8, 0), -1);
	free(src);
	free(dst);
	free(back);
	free(h);
	free(h2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_f16_round_trip),
		cmocka_unit_test(test_f16_numpy),
		cmocka_unit_test(test_f16_compiler),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_convert),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
