/*
 * convert-cast.c - `vlm-convert cast --dtype f32|f16|bf16 IN OUT`.
 *
 * Reads the safetensors file IN and writes OUT, a safetensors file with
 * every float tensor (F32, F16, BF16) converted to the given dtype, round
 * to nearest even; other tensors and the metadata are copied unchanged.
 * OUT is written to a temporary name and renamed, so a failure leaves
 * nothing behind.
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "base/base.h"
#include "formats/formats.h"

static const struct {
	const char *name;
	enum vlm_dtype dt;
} targets[] = {
	{ "f32", VLM_DTYPE_F32 },
	{ "f16", VLM_DTYPE_F16 },
	{ "bf16", VLM_DTYPE_BF16 },
};

static int
is_float(enum vlm_dtype dt)
{
	return dt == VLM_DTYPE_F32 || dt == VLM_DTYPE_F16 ||
	    dt == VLM_DTYPE_BF16;
}

/* Convert st's float tensors to dt into ts (new buffers in bufs). */
static int
cast_all(const struct vlm_st *st, enum vlm_dtype dt, struct vlm_tensor *ts,
    void **bufs)
{
	for (int i = 0; i < st->n; i++) {
		const struct vlm_tensor *t = &st->tensors[i];

		ts[i] = *t;
		if (!is_float(t->dtype) || t->dtype == dt)
			continue;
		ts[i].dtype = dt;
		bufs[i] = ts[i].data = malloc(vlm_tensor_nbytes(&ts[i]) + 1);
		if (!bufs[i])
			return vlm_error("'%s': out of memory", st->path);
		if (vlm_convert_floats(ts[i].data, dt, t->data, t->dtype,
		    vlm_tensor_numel(t)) != 0)
			return -1;
	}
	return 0;
}

/* Load in, cast, save out; -1 with a message on any failure. */
static int
cast_file(const char *in, const char *out, enum vlm_dtype dt)
{
	struct vlm_st st;
	struct vlm_tensor *ts;
	void **bufs;
	int rc = -1;

	if (vlm_st_load(&st, in) != 0)
		return -1;
	ts = calloc((size_t)st.n + 1, sizeof(*ts));
	bufs = calloc((size_t)st.n + 1, sizeof(*bufs));
	if (!ts || !bufs)
		vlm_error("'%s': out of memory", in);
	else if (cast_all(&st, dt, ts, bufs) == 0)
		rc = vlm_st_save(out, st.names, ts, st.n, st.meta_keys,
		    st.meta_vals, st.nmeta);
	for (int i = 0; bufs && i < st.n; i++)
		free(bufs[i]);
	free(bufs);
	free(ts);
	vlm_st_release(&st);
	return rc;
}

int
convert_cast(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dtype", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c, dt = -1;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		if (c == 'h')
			cmd_usage(convert_usage, 0);
		if (c != 'd')
			cmd_usage(convert_usage, 2);
		for (size_t i = 0; i < sizeof(targets) / sizeof(*targets); i++)
			if (strcmp(optarg, targets[i].name) == 0)
				dt = (int)targets[i].dt;
		if (dt < 0) {
			warnx("unknown dtype '%s' (f32, f16 or bf16)", optarg);
			cmd_usage(convert_usage, 2);
		}
	}
	if (dt < 0 || argc - optind != 2)
		cmd_usage(convert_usage, 2);
	if (strcmp(argv[optind + 1], "-") == 0)
		cmd_binary_out(stdout, 0);
	if (cast_file(argv[optind], argv[optind + 1], dt) != 0) {
		warnx("%s", vlm_errmsg());
		return 1;
	}
	return 0;
}
