/*
 * convert-pack.c - vlm-convert pack IN.npys OUT.npy
 *
 * Reads an embedding stream (.npys, "-" for stdin) and writes the packed
 * form beside OUT: OUT (N, dim) '<f4', STEM.ids.npy and STEM.json (see
 * libcore/formats/npys.c). Nothing is written unless the whole stream is good.
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "base/base.h"
#include "formats/formats.h"

int
convert_pack(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_npys_reader r;
	const char *in, *name;
	FILE *f;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		cmd_usage(convert_usage, c == 'h' ? 0 : 2);
	if (argc - optind != 2)
		cmd_usage(convert_usage, 2);
	in = argv[optind];
	if (strcmp(argv[optind + 1], "-") == 0)
		errx(2, "pack writes three files; name the output .npy file");
	name = strcmp(in, "-") == 0 ? "<stdin>" : in;
	f = strcmp(in, "-") == 0 ? stdin : fopen(in, "rb");
	if (!f) {
		warn("%s", in);
		return 1;
	}
	rc = vlm_npys_reader_init(&r, f, name) == 0 &&
	    vlm_npys_pack(&r, argv[optind + 1]) == 0 ? 0 : 1;
	if (rc)
		warnx("%s", vlm_errmsg());
	vlm_npys_reader_release(&r);
	if (f != stdin)
		fclose(f);
	return rc;
}
