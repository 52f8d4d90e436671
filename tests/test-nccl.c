/*
 * test-nccl.c - the NCCL communicator (kernels/cuda/comm-nccl.cu) on the
 * cuda backend's device buffers against the host communicator on the
 * same data, every collective: all-reduce f32/f64 sum/max over two
 * buckets, all-gather, all-to-all with uneven and zero counts,
 * broadcast, barrier, the counters, and the timeout (the stream kept
 * busy past a tiny timeout: the communicator aborted, the collective
 * named, later calls refused). Equal exactly on up to 2 ranks (a + b is
 * the same sum in any order), to 1e-6 relative on more. Under mpirun
 * the host communicator is MPI and NCCL is bootstrapped over it (one
 * rank per GPU: NCCL refuses two ranks on one device, and then its
 * message is printed and the tests skip); run alone, the one-process
 * communicator. Skipped where cuda or NCCL is not there.
 */
#include <math.h>

#include "kernels.h"
#include "testutil.h"

static struct vlm_comm host, dev;
static const struct vlm_backend *be;
static char why[1024];          /* why the tests skip */
static uint64_t want_bytes, want_coll; /* what dev's counters should be */

#define N (VLM_COMM_BUCKET + 1001) /* two buckets */

static int
setup(void **state)
{
	char buf[512];
	int ndev;

	(void)state;
	vlm_comm_init_self(&host);
	if (getenv("OMPI_COMM_WORLD_SIZE") && vlm_comm_init_mpi(&host, NULL,
	    NULL) < 0) {
		snprintf(why, sizeof(why), "%s", vlm_errmsg());
		return 0;
	}
	host.timeout = 60;
	if (!(be = vlm_backend_get("cuda"))) {
		snprintf(why, sizeof(why), "%s", vlm_errmsg());
		return 0;
	}
	if (!vlm_comm_have_nccl()) {
		snprintf(why, sizeof(why), "this build has no NCCL: %s",
		    vlm_errmsg());
		return 0;
	}
	ndev = vlm_cuda_devices(buf, sizeof(buf));
	if (vlm_comm_init_device(&dev, &host, be) < 0) {
		/* NCCL's own words, e.g. "Duplicate GPU detected" */
		snprintf(why, sizeof(why), "%d ranks, %d device(s): %s",
		    host.size, ndev, vlm_errmsg());
		fprintf(stderr, "rank %d: %s\n", host.rank, why);
		if (host.size <= ndev)
			return -1; /* that should have worked */
		return 0;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (dev.ops)
		vlm_comm_finalize(&dev);
	vlm_comm_finalize(&host);
	return 0;
}

static void
need_nccl(void)
{
	if (!dev.ops) {
		print_message("nccl skipped: %s\n", why);
		skip();
	}
}

/* x (n) of this rank, different on every rank */
static void
fill(void *x, size_t n, int f64, int salt)
{
	for (size_t i = 0; i < n; i++) {
		double v = sin(0.37 * (double)i + 1.7 * host.rank + salt);
		if (f64)
			((double *)x)[i] = v;
		else
			((float *)x)[i] = (float)v;
	}
}

/* got and want (n items) equal: exactly on up to 2 ranks */
static void
same(const void *got, const void *want, size_t n, int f64)
{
	size_t bad = 0;

	if (host.size <= 2) {
		assert_memory_equal(got, want, n * (f64 ? 8 : 4));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		double a = f64 ? ((double *)got)[i] : ((float *)got)[i];
		double b = f64 ? ((double *)want)[i] : ((float *)want)[i];
		bad += !(fabs(a - b) <= 1e-6 * fmax(1, fabs(b)));
	}
	assert_int_equal(bad, 0);
}

/* the same all-reduce on the host (x) and on the device (y) */
static void
check_allreduce(enum vlm_comm_type t, enum vlm_comm_op op, size_t n)
{
	int f64 = t == VLM_COMM_F64;
	size_t bytes = n * (f64 ? 8 : 4);
	void *x = malloc(bytes), *y = malloc(bytes), *d = be->alloc(bytes);

	assert_non_null(x), assert_non_null(y), assert_non_null(d);
	fill(x, n, f64, op);
	be->upload(d, x, bytes);
	assert_int_equal(host.ops->allreduce(&host, x, n, t, op), 0);
	assert_int_equal(dev.ops->allreduce(&dev, d, n, t, op), 0);
	be->download(y, d, bytes);
	assert_int_equal(be->sync(), 0);
	same(y, x, n, f64);
	want_bytes += bytes, want_coll++;
	be->free(d);
	free(x), free(y);
}

static void
test_allreduce(void **state)
{
	(void)state;
	need_nccl();
	check_allreduce(VLM_COMM_F32, VLM_COMM_SUM, N);
	check_allreduce(VLM_COMM_F64, VLM_COMM_SUM, N);
	check_allreduce(VLM_COMM_F32, VLM_COMM_MAX, N);
	check_allreduce(VLM_COMM_F64, VLM_COMM_MAX, 1001);
	check_allreduce(VLM_COMM_F32, VLM_COMM_SUM, 1);
}

static void
test_allgather(void **state)
{
	size_t bytes = 4099, all = bytes * host.size;
	char *s, *x, *y;
	void *ds, *dr;

	(void)state;
	need_nccl();
	s = malloc(bytes), x = malloc(all), y = malloc(all);
	ds = be->alloc(bytes), dr = be->alloc(all);
	assert_true(s && x && y && ds && dr);
	for (size_t i = 0; i < bytes; i++)
		s[i] = (char)(i * 31 + host.rank * 7);
	be->upload(ds, s, bytes);
	assert_int_equal(host.ops->allgather(&host, s, x, bytes), 0);
	assert_int_equal(dev.ops->allgather(&dev, ds, dr, bytes), 0);
	be->download(y, dr, all);
	assert_int_equal(be->sync(), 0);
	assert_memory_equal(x, y, all);
	want_bytes += bytes, want_coll++;
	be->free(ds), be->free(dr);
	free(s), free(x), free(y);
}

/* Rank q sends (q + 2r + k) % 3 items to rank r: uneven, some 0 (to
 * itself too, for some k). Items of 12 bytes. */
static void
check_alltoallv(int k)
{
	int P = host.size, q = host.rank, sc[64], rc[64], ns = 0, nr = 0;
	size_t item = 12;
	char *s, *x, *y;
	void *ds, *dr;

	assert_true(P <= 64);
	for (int r = 0; r < P; r++) {
		sc[r] = (q + 2 * r + k) % 3, ns += sc[r];
		rc[r] = (r + 2 * q + k) % 3, nr += rc[r];
	}
	s = malloc(ns * item + 1), x = malloc(nr * item + 1);
	y = malloc(nr * item + 1);
	ds = be->alloc(ns * item + 1), dr = be->alloc(nr * item + 1);
	assert_true(s && x && y && ds && dr);
	for (size_t i = 0; i < ns * item; i++)
		s[i] = (char)(i * 13 + q * 101 + k);
	be->upload(ds, s, ns * item);
	assert_int_equal(host.ops->alltoallv(&host, s, sc, x, rc, item), 0);
	assert_int_equal(dev.ops->alltoallv(&dev, ds, sc, dr, rc, item), 0);
	be->download(y, dr, nr * item);
	assert_int_equal(be->sync(), 0);
	assert_memory_equal(x, y, nr * item);
	want_bytes += ns * item, want_coll++;
	be->free(ds), be->free(dr);
	free(s), free(x), free(y);
}

static void
test_alltoallv(void **state)
{
	(void)state;
	need_nccl();
	for (int k = 0; k < 3; k++)
		check_alltoallv(k);
}

static void
test_bcast_barrier(void **state)
{
	size_t bytes = 10001;
	int root = host.size - 1;
	char *x, *y;
	void *d;

	(void)state;
	need_nccl();
	x = malloc(bytes), y = malloc(bytes), d = be->alloc(bytes);
	assert_true(x && y && d);
	for (size_t i = 0; i < bytes; i++)
		x[i] = (char)(i * 5 + host.rank);
	be->upload(d, x, bytes);
	assert_int_equal(host.ops->bcast(&host, x, bytes, root), 0);
	assert_int_equal(dev.ops->bcast(&dev, d, bytes, root), 0);
	be->download(y, d, bytes);
	assert_int_equal(be->sync(), 0);
	assert_memory_equal(x, y, bytes);
	want_bytes += host.rank == root ? bytes : 0, want_coll++;
	assert_int_equal(dev.ops->barrier(&dev), 0);
	want_coll++;
	assert_int_equal(host.ops->barrier(&host), 0);
	be->free(d);
	free(x), free(y);
}

/* The counters as comm-mpi.c keeps them (bytes handed in, collectives
 * waited for); the MPI communicator's bytes the same. */
static void
test_counters(void **state)
{
	(void)state;
	need_nccl();
	assert_int_equal(dev.bytes, want_bytes);
	assert_int_equal(dev.ncoll, want_coll);
	if (strcmp(host.ops->name, "mpi") == 0)
		assert_int_equal(host.bytes, want_bytes);
	assert_true(dev.wait >= 0);
}

/* Last: the stream busy with copies for milliseconds, a barrier allowed
 * 50 us fails naming itself, the communicator is aborted and refuses
 * what follows. */
static void
test_timeout(void **state)
{
	size_t bytes = (size_t)1 << 30;
	void *a, *b;
	float one = 1;

	(void)state;
	need_nccl();
	if (!(a = be->alloc(bytes)) || !(b = be->alloc(bytes))) {
		print_message("timeout skipped: no 2 GiB of device memory\n");
		skip();
	}
	for (int i = 0; i < 16; i++)
		be->copy(i % 2 ? a : b, i % 2 ? b : a, bytes);
	dev.timeout = 50e-6;
	assert_int_equal(dev.ops->barrier(&dev), -1);
	assert_non_null(strstr(vlm_errmsg(), "nccl barrier: waited"));
	assert_non_null(strstr(vlm_errmsg(), "VLM_COMM_TIMEOUT"));
	assert_int_equal(dev.ops->allreduce(&dev, a, 1, VLM_COMM_F32,
	    VLM_COMM_SUM), -1);
	assert_non_null(strstr(vlm_errmsg(), "aborted"));
	be->upload(a, &one, sizeof(one)); /* the device still works */
	be->sync();
	be->free(a), be->free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allreduce),
		cmocka_unit_test(test_allgather),
		cmocka_unit_test(test_alltoallv),
		cmocka_unit_test(test_bcast_barrier),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_timeout),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
