/*
 * convert-lora.c - `vlm-convert merge-lora IN OUT`: fold a model's LoRA
 * adapters into its weights (W + alpha/r B A, per expert for stacked
 * experts) and write the plain model, atomically; a CoCa model file's
 * decoder adapters likewise (model/coca-lora.c). A model without
 * adapters is an error.
 */
#include <err.h>
#include <getopt.h>

#include "cmd.h"
#include "base/base.h"
#include "model/coca.h"
#include "model/model.h"

/* A CoCa model file: its decoder adapters merged into out. */
static int
merge_coca(const char *in, const char *out)
{
	struct vlm_coca c;

	if (vlm_coca_load(&c, in, NULL) < 0)
		errx(1, "%s", vlm_errmsg());
	if (vlm_coca_merge_lora(&c, out, vlm_coca_merges(&c)) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_coca_release(&c);
	return 0;
}

int
convert_merge_lora(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_model m;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		cmd_usage(convert_usage, c == 'h' ? 0 : 2);
	if (argc - optind != 2)
		cmd_usage(convert_usage, 2);
	if (vlm_coca_is_checkpoint(argv[optind]) == 1)
		return merge_coca(argv[optind], argv[optind + 1]);
	if (vlm_model_load(&m, argv[optind]) < 0)
		errx(1, "%s", vlm_errmsg());
	if (m.cfg.lora.rank == 0)
		errx(1, "'%s': no LoRA adapters to merge", argv[optind]);
	if (vlm_lora_merge(&m) < 0 || vlm_model_save(&m, argv[optind + 1]) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_model_release(&m);
	return 0;
}
