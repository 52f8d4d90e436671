/*
 * convert-merge.c - `vlm-convert merge DIR -o OUT`: the checkpoint of a
 * run whose experts were sharded over P ranks (DIR holding
 * model-QQQQQ-of-PPPPP.safetensors from every rank, e.g. RUN/latest)
 * merged into one model file, written atomically: the whole parameters
 * from rank 0's shard, each rank's experts at their places. Every
 * parameter must be covered exactly.
 */
#include <err.h>
#include <getopt.h>

#include "cmd.h"
#include "base/base.h"
#include "model/model.h"

int
convert_merge(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_model m;
	const char *out = NULL;
	int c, P;

	while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
		if (c == 'o')
			out = optarg;
		else
			cmd_usage(convert_usage, c == 'h' ? 0 : 2);
	}
	if (argc - optind != 1 || !out)
		cmd_usage(convert_usage, 2);
	if ((P = vlm_shard_count(argv[optind])) == 0)
		errx(1, "'%s': no sharded model (no "
		    "model-00000-of-NNNNN.safetensors)", argv[optind]);
	if (vlm_model_load_shards(&m, argv[optind], P, -1) < 0 ||
	    vlm_model_save(&m, out) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_model_release(&m);
	return 0;
}
