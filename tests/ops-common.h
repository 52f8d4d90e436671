/*
 * ops-common.h - the harness of the op tests (tests/test-ops-*.c and
 * test-backend-ops.c), in the spirit of ggml's test-backend-ops: each
 * case makes its inputs on the host from a seeded generator, uploads
 * them to the backend's memory, runs the op, downloads what it wrote,
 * and the same case on "ref" is the oracle. Shapes are odd on purpose
 * (37 tokens, one expert, K = E, padded and masked rows, capacity
 * drops). The cases live in one file per op family (tests/ops-*.c).
 */
#ifndef VLM_OPS_COMMON_H
#define VLM_OPS_COMMON_H

#include <math.h>

#include "testutil.h"
#include "kernels.h"

enum { F32, I32, U8 };

struct buf {
	void *dev;
	size_t n;
	int type;
};

/* One run of one case on one backend. */
struct ctx {
	const struct vlm_backend *be;
	struct vlm_rng rng;
	struct buf out[12];
	int nout;
	void *mem[40];
	int nmem;
	double ret[2];
	int nret;
};

size_t type_size(int type);
/* n values of the backend's memory holding host's (freed at the end). */
void *dev_copy(struct ctx *x, const void *host, size_t n, int type);
/* Host floats uniform in [-s, s) from the case's generator (malloc'ed). */
float *host_f(struct ctx *x, size_t n, float s);
/* An input: random floats in [-s, s). */
float *in_f(struct ctx *x, size_t n, float s);
/* An output (or in-out) buffer starting as host's contents (random when
 * host is NULL, so that accumulating ops and unwritten rows show). */
void *out_b(struct ctx *x, const void *host, size_t n, int type);
/* A value the op returned (a loss). */
void ret(struct ctx *x, double v);
/* Softmax rows (S,E) of random logits: probabilities or gates. */
float *host_probs(struct ctx *x, int S, int E);
#define IN(x, host, n, type) dev_copy((x), (host), (n), (type))
#define OUT_F(x, n) ((float *)out_b((x), NULL, (n), F32))

/* Attention and pooling batches: B, T, C, heads; lengths 37, 20, 1. */
enum { AB = 3, AT = 37, AC = 12, AH = 3 };
extern const int32_t ops_len[AB];

struct op_case {
	enum vlm_op op;
	void (*fn)(struct ctx *x, int k);
	int shapes;
	double tol; /* max |a - ref| / max |ref| over each output */
};
#define CASE(name, n, tol) { VLM_OP_##name, c_##name, (n), (tol) }

/* The cases of one op family (tests/ops-dense.c, ops-moe.c,
 * ops-input.c). */
struct op_family {
	const char *name;
	const struct op_case *cases;
	int n;
};
extern const struct op_family ops_dense, ops_moe, ops_input;

/* The cuda backend, or skip() the calling test saying why. */
const struct vlm_backend *ops_cuda(void);
/* A test program of family f: its cases on cpu and ref (bit for bit
 * against itself), each with 1 and 3 threads, then on cuda (a skipped
 * test where cuda does not load). One line per op and backend. */
int ops_main(const struct op_family *f);

#endif
