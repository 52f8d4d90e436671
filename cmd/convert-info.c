/*
 * convert-info.c - `vlm-convert info FILE`: what a safetensors file holds.
 *
 * Reads one safetensors file (or - for stdin) and prints on stdout a table
 * of its tensors (name, dtype, shape), its metadata (long values cut to
 * one line with their length), and totals: tensors, parameters, bytes.
 * Each part is one function, so model-aware parts (active parameters,
 * FLOPs) can be added beside them.
 */
#include <err.h>
#include <getopt.h>
#include <string.h>

#include "cmd.h"
#include "vlm.h"

#define NAME_MAX_COLS 60	/* longer names are printed whole, unaligned */
#define META_COLS 60		/* metadata values shown up to this */

/* Print s up to max bytes, control bytes escaped; returns the width. */
static int
put_clean(const char *s, size_t max)
{
	int w = 0;

	for (size_t i = 0; s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			w += printf("\\x%02x", c);
		else
			w += putchar(c) != EOF;
	}
	return w;
}

static void
print_tensors(const struct vlm_st *st)
{
	int w = 6;
	char shape[160];

	for (int i = 0; i < st->n; i++) {
		int k = (int)strlen(st->names[i]);
		if (k > w && k <= NAME_MAX_COLS)
			w = k;
	}
	printf("%-*s  %-5s %s\n", w, "tensor", "dtype", "shape");
	for (int i = 0; i < st->n; i++) {
		int k = put_clean(st->names[i], (size_t)-1);
		vlm_shape_str(&st->tensors[i], shape, sizeof(shape));
		printf("%*s  %-5s %s\n", k < w ? w - k : 0, "",
		    vlm_dtype_name(st->tensors[i].dtype), shape);
	}
}

/* One line per key; values longer than a line or multi-line are cut. */
static void
print_meta(const struct vlm_st *st)
{
	if (st->nmeta == 0)
		return;
	printf("\nmetadata:\n");
	for (int i = 0; i < st->nmeta; i++) {
		const char *v = st->meta_vals[i];
		size_t len = strlen(v), cut = strcspn(v, "\r\n");

		printf("  ");
		put_clean(st->meta_keys[i], (size_t)-1);
		printf(": ");
		if (cut > META_COLS)
			cut = META_COLS;
		put_clean(v, cut);
		if (cut < len)
			printf("... (%zu bytes)", len);
		putchar('\n');
	}
}

static void
print_totals(const struct vlm_st *st)
{
	size_t bytes = 0;

	for (int i = 0; i < st->n; i++)
		bytes += vlm_tensor_nbytes(&st->tensors[i]);
	printf("\ntensors: %d\n", st->n);
	printf("parameters: %lld\n", (long long)vlm_st_numel(st));
	printf("bytes: %zu\n", bytes);
}

int
convert_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_st st;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h')
			cmd_usage(convert_usage, 0);
		cmd_usage(convert_usage, 2);
	}
	if (argc - optind != 1)
		cmd_usage(convert_usage, 2);
	if (vlm_st_load(&st, argv[optind]) != 0) {
		warnx("%s", vlm_errmsg());
		return 1;
	}
	print_tensors(&st);
	print_meta(&st);
	print_totals(&st);
	vlm_st_release(&st);
	return 0;
}
