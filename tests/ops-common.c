/*
 * ops-common.c - the op tests' harness (ops-common.h): buffers on any
 * backend, running a case on a backend and on ref, the comparison, and
 * a family's test program.
 */
#include "ops-common.h"

const int32_t ops_len[AB] = { 37, 20, 1 };

size_t
type_size(int type)
{
	return type == F32 ? 4 : type == I32 ? 4 : 1;
}

/* n values of the backend's memory holding host's (freed at the end). */
void *
dev_copy(struct ctx *x, const void *host, size_t n, int type)
{
	void *d = x->be->alloc(n * type_size(type));

	assert_non_null(d);
	assert_true(x->nmem < 40);
	x->mem[x->nmem++] = d;
	if (host)
		x->be->upload(d, host, n * type_size(type));
	return d;
}

/* Host floats uniform in [-s, s) from the case's generator. */
float *
host_f(struct ctx *x, size_t n, float s)
{
	float *h = malloc((n ? n : 1) * sizeof(float));

	for (size_t i = 0; i < n; i++)
		h[i] = (float)((2 * vlm_rng_uniform(&x->rng) - 1) * s);
	return h;
}

/* An input: random floats in [-s, s). */
float *
in_f(struct ctx *x, size_t n, float s)
{
	float *h = host_f(x, n, s), *d = dev_copy(x, h, n, F32);

	free(h);
	return d;
}

/* An output (or in-out) buffer starting as host's contents (random when
 * host is NULL, so that accumulating ops and unwritten rows show). */
void *
out_b(struct ctx *x, const void *host, size_t n, int type)
{
	void *d;

	assert_true(x->nout < 12);
	if (host || type != F32) {
		void *h = calloc(n ? n : 1, type_size(type));
		if (host)
			memcpy(h, host, n * type_size(type));
		else
			memset(h, 0x5a, n * type_size(type));
		d = dev_copy(x, h, n, type);
		free(h);
	} else {
		d = in_f(x, n, 1);
	}
	x->out[x->nout++] = (struct buf){ d, n, type };
	return d;
}

void
ret(struct ctx *x, double v)
{
	x->ret[x->nret++] = v;
}


/* Softmax rows (S,E) of random logits: probabilities or gates. */
float *
host_probs(struct ctx *x, int S, int E)
{
	float *z = host_f(x, (size_t)S * E, 3), *p = malloc(
	    (size_t)S * E * sizeof(float));

	vlm_softmax_fwd_ref(p, z, S, E);
	free(z);
	return p;
}

/* What case c shape k wrote on backend be: outputs into host copies. */
struct result {
	int nout, nret;
	struct buf out[12]; /* dev: a host copy */
	double ret[2];
};

static void
run_case(const struct vlm_backend *be, const struct op_case *c, int k,
    struct result *r)
{
	struct ctx x = { .be = be };

	vlm_rng_seed2(&x.rng, 1234 + k, c->op);
	c->fn(&x, k);
	assert_int_equal(be->sync(), 0);
	r->nout = x.nout, r->nret = x.nret;
	memcpy(r->ret, x.ret, sizeof(r->ret));
	for (int i = 0; i < x.nout; i++) {
		size_t bytes = x.out[i].n * type_size(x.out[i].type);
		r->out[i] = x.out[i];
		r->out[i].dev = malloc(bytes ? bytes : 1);
		be->download(r->out[i].dev, x.out[i].dev, bytes);
	}
	for (int i = 0; i < x.nmem; i++)
		be->free(x.mem[i]);
}

/* Worst error of a against the oracle o; integers must be equal. */
static double
compare(const struct result *a, const struct result *o)
{
	double worst = 0, e;

	assert_int_equal(a->nout, o->nout);
	assert_int_equal(a->nret, o->nret);
	for (int i = 0; i < a->nret; i++) {
		e = fabs(a->ret[i] - o->ret[i]) / fmax(fabs(o->ret[i]), 1e-30);
		worst = fmax(worst, e);
	}
	for (int i = 0; i < a->nout; i++) {
		const struct buf *x = &a->out[i], *y = &o->out[i];
		if (x->type == F32)
			e = rel_err(x->dev, y->dev, x->n);
		else
			e = memcmp(x->dev, y->dev, x->n *
			    type_size(x->type)) != 0 ? INFINITY : 0;
		if (isnan(e))
			e = INFINITY;
		worst = fmax(worst, e);
	}
	return worst;
}

static void
free_result(struct result *r)
{
	for (int i = 0; i < r->nout; i++)
		free(r->out[i].dev);
}

/* Every case of f on be against ref; returns the failures. */
static int
run_family(const struct op_family *f, const struct vlm_backend *be, int t)
{
	const struct vlm_backend *ref = vlm_backend_get("ref");
	int failed = 0;

	for (int i = 0; i < f->n; i++) {
		const struct op_case *c = &f->cases[i];
		/* ref against itself: bit for bit */
		double tol = be == ref ? 0 : c->tol, worst = 0;
		if (!vlm_backend_has(be, c->op)) {
			print_message("%-24s %-6s not supported\n",
			    vlm_backend_op_name(c->op), be->name);
			continue;
		}
		for (int k = 0; k < c->shapes; k++) {
			struct result a, o;
			run_case(be, c, k, &a);
			run_case(ref, c, k, &o);
			worst = fmax(worst, compare(&a, &o));
			free_result(&a), free_result(&o);
		}
		print_message("%-24s %-6s %d thr %2d shapes  max err %.1e  "
		    "tol %.0e  %s\n", vlm_backend_op_name(c->op), be->name, t,
		    c->shapes, worst, tol, worst <= tol ? "ok" : "FAIL");
		failed += !(worst <= tol);
	}
	return failed;
}

const struct vlm_backend *
ops_cuda(void)
{
	const struct vlm_backend *be = vlm_backend_get("cuda");

	if (!be) {
		print_message("cuda skipped: %s\n", vlm_errmsg());
		skip();
	}
	return be;
}

static const struct op_family *family;

/* The compiled host backends (cpu, ref), the thread pool split two ways. */
static void
test_host(void **state)
{
	int failed = 0;

	(void)state;
	for (int t = 1; t <= 3; t += 2)
		for (int b = 0; vlm_backend_at(b); b++) {
			vlm_threads_set(t);
			failed += run_family(family, vlm_backend_at(b), t);
		}
	vlm_threads_set(0);
	assert_int_equal(failed, 0);
}

static void
test_cuda(void **state)
{
	const struct vlm_backend *be = ops_cuda();

	(void)state;
	assert_int_equal(run_family(family, be, 1), 0);
}

int
ops_main(const struct op_family *f)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_cuda),
	};

	family = f;
	print_message("op family %s: %d ops\n", f->name, f->n);
	return cmocka_run_group_tests_name(f->name, tests, NULL, NULL);
}
