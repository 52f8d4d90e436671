/*
 * tensor.c - dtypes, tensor sizes (64-bit, overflow-checked), and the
 * float conversions between F32, F16 (IEEE binary16) and BF16 (bfloat16).
 *
 * Narrowing rounds to nearest, ties to even, as NumPy, PyTorch and the
 * hardware do; NaN stays NaN (payload kept where it fits, the quiet bit
 * set only when the payload would vanish), infinities and signed zeros
 * survive, and F16 subnormals are produced and read exactly.
 */
#include <assert.h>
#include <string.h>

#include "base/base.h"

static const struct {
	const char *name;
	size_t size;
} dtypes[VLM_DTYPE_COUNT] = {
	[VLM_DTYPE_F32] = { "F32", 4 },
	[VLM_DTYPE_F16] = { "F16", 2 },
	[VLM_DTYPE_BF16] = { "BF16", 2 },
	[VLM_DTYPE_I32] = { "I32", 4 },
	[VLM_DTYPE_I64] = { "I64", 8 },
	[VLM_DTYPE_U8] = { "U8", 1 },
};

size_t
vlm_dtype_size(enum vlm_dtype dt)
{
	assert((unsigned)dt < VLM_DTYPE_COUNT);
	return dtypes[dt].size;
}

const char *
vlm_dtype_name(enum vlm_dtype dt)
{
	assert((unsigned)dt < VLM_DTYPE_COUNT);
	return dtypes[dt].name;
}

int
vlm_dtype_parse(const char *name, enum vlm_dtype *dt)
{
	for (int i = 0; i < VLM_DTYPE_COUNT; i++) {
		if (strcmp(name, dtypes[i].name) == 0) {
			*dt = (enum vlm_dtype)i;
			return 0;
		}
	}
	return vlm_error("unknown dtype '%s'", name);
}

int64_t
vlm_size_mul(int64_t a, int64_t b)
{
	int64_t r;

	if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
		return -1;
	return r;
}

int64_t
vlm_size_add(int64_t a, int64_t b)
{
	return a < 0 || b < 0 || a > INT64_MAX - b ? -1 : a + b;
}

int64_t
vlm_tensor_numel(const struct vlm_tensor *t)
{
	int64_t n = 1;

	assert(t->ndim >= 0 && t->ndim <= VLM_MAX_DIMS);
	for (int i = 0; i < t->ndim; i++) {
		assert(t->shape[i] >= 0);
		n *= t->shape[i];
	}
	return n;
}

size_t
vlm_tensor_nbytes(const struct vlm_tensor *t)
{
	return (size_t)vlm_tensor_numel(t) * vlm_dtype_size(t->dtype);
}

void
vlm_shape_str(const struct vlm_tensor *t, char *buf, size_t n)
{
	size_t off = 0;

	if (n == 0)
		return;
	buf[0] = '\0';
	for (int i = 0; i < t->ndim && off < n; i++) {
		int k = snprintf(buf + off, n - off, "%s%lld", i ? ", " : "[",
		    (long long)t->shape[i]);
		if (k < 0)
			return;
		off += (size_t)k;
	}
	if (off < n)
		snprintf(buf + off, n - off, "%s", t->ndim ? "]" : "[]");
}

static uint32_t
f32_bits(float f)
{
	uint32_t x;

	memcpy(&x, &f, sizeof(x));
	return x;
}

static float
bits_f32(uint32_t x)
{
	float f;

	memcpy(&f, &x, sizeof(f));
	return f;
}

/* Shift m right by s (1..31) rounding to nearest, ties to even. */
static uint32_t
shift_rne(uint32_t m, int s)
{
	uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);

	return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t
vlm_f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffff;
	int e = (int)(ax >> 23);

	if (ax > 0x7f800000) {		/* NaN: keep the top payload */
		uint32_t m = (ax >> 13) & 0x3ff;
		return sign | 0x7c00 | (m ? m : 0x200);
	}
	if (ax >= 0x477ff000)		/* >= 65520 (or inf): inf */
		return sign | 0x7c00;
	if (ax >= 0x38800000)		/* normal: rebias 127 -> 15 */
		return sign | (uint16_t)shift_rne(ax - 0x38000000, 13);
	if (e < 102)			/* below 2^-25: zero */
		return sign;
	/* subnormal: value = m * 2^(e - 150) = q * 2^-24 */
	return sign | (uint16_t)shift_rne((ax & 0x7fffff) | 0x800000, 126 - e);
}

float
vlm_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;

	if (e == 0x1f)			/* inf, NaN (payload kept) */
		return bits_f32(sign | 0x7f800000 | (m << 13));
	if (e != 0)
		return bits_f32(sign | ((e + 112) << 23) | (m << 13));
	if (m == 0)
		return bits_f32(sign);
	/* subnormal m * 2^-24: normalise the mantissa */
	e = 113;
	while (!(m & 0x400)) {
		m <<= 1;
		e--;
	}
	return bits_f32(sign | (e << 23) | ((m & 0x3ff) << 13));
}

uint16_t
vlm_f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);

	if ((x & 0x7fffffff) > 0x7f800000) {	/* NaN: keep it quiet NaN */
		return (uint16_t)((x >> 16) | 0x0040);
	}
	return (uint16_t)(shift_rne(x & 0x7fffffff, 16) |
	    ((x >> 16) & 0x8000));
}

float
vlm_bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

static int
is_float(enum vlm_dtype dt)
{
	return dt == VLM_DTYPE_F32 || dt == VLM_DTYPE_F16 ||
	    dt == VLM_DTYPE_BF16;
}

/* Element i of a float array as f32 (exact). */
static float
load_f32(const void *p, enum vlm_dtype dt, int64_t i)
{
	switch (dt) {
	case VLM_DTYPE_F16: return vlm_f16_to_f32(((const uint16_t *)p)[i]);
	case VLM_DTYPE_BF16: return vlm_bf16_to_f32(((const uint16_t *)p)[i]);
	default: return ((const float *)p)[i];
	}
}

int
vlm_convert_floats(void *dst, enum vlm_dtype dt_dst, const void *src,
    enum vlm_dtype dt_src, int64_t n)
{
	assert(n >= 0);
	if (!is_float(dt_dst) || !is_float(dt_src))
		return vlm_error("cannot convert %s to %s: not both float "
		    "dtypes", vlm_dtype_name(dt_src), vlm_dtype_name(dt_dst));
	if (dt_dst == dt_src) {
		memmove(dst, src, (size_t)n * vlm_dtype_size(dt_src));
		return 0;
	}
	for (int64_t i = 0; i < n; i++) {
		float f = load_f32(src, dt_src, i);
		switch (dt_dst) {
		case VLM_DTYPE_F16:
			((uint16_t *)dst)[i] = vlm_f32_to_f16(f);
			break;
		case VLM_DTYPE_BF16:
			((uint16_t *)dst)[i] = vlm_f32_to_bf16(f);
			break;
		default:
			((float *)dst)[i] = f;
			break;
		}
	}
	return 0;
}
