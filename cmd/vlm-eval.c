/*
 * vlm-eval - zero-shot classification, retrieval and linear-probe
 * evaluation of a model, as CLIP_benchmark defines the metrics.
 *
 * Reads a vlm model file and an ImageFolder tree or an image-caption
 * pairs file, or embeddings made earlier (.npys streams or packed .npy
 * files, e.g. from vlm-embed); writes the metrics on stdout, a table or
 * one JSON object per run (--json). Each verb lives in cmd/eval-VERB.c.
 */
#include <err.h>
#include <getopt.h>
#include <string.h>

#include "cmd.h"
#include "eval.h"

const char eval_usage[] =
    "usage: vlm-eval zeroshot [-m model] [--images dir] [--image-emb file]\n"
    "           [--labels file] [--text-emb file] [--classnames file]\n"
    "           [--templates file] [-b batch] [--prompts] [--json]\n"
    "           [--per-class]\n"
    "       vlm-eval retrieval [-m model] --pairs file [--image-emb file]\n"
    "           [--text-emb file] [--csv-img-key name]\n"
    "           [--csv-caption-key name] [--csv-separator char] [-b batch]\n"
    "           [--json]\n"
    "       vlm-eval linear-probe [-m model] [--train dir] [--test dir]\n"
    "           [--train-emb file] [--train-labels file] [--test-emb file]\n"
    "           [--test-labels file] [--wd value] [-b batch] [--json]\n"
    "           [--per-class]\n"
    "       vlm-eval -h | --help | --version\n";

static const struct verb {
	const char *name;
	int (*fn)(int, char **);
} verbs[] = {
	{ "zeroshot", eval_zeroshot },
	{ "retrieval", eval_retrieval },
	{ "linear-probe", eval_linear_probe },
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	vlm_blas_setup(argc, argv);
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': cmd_usage(eval_usage, 0);
		case 'V': cmd_version("vlm-eval");
		default: cmd_usage(eval_usage, 2);
		}
	}
	if (optind >= argc)
		cmd_usage(eval_usage, 2);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(*verbs); i++) {
		if (strcmp(argv[optind], verbs[i].name) != 0)
			continue;
		argc -= optind;
		argv += optind;
		optind = 1; /* the verb parses its own options */
		return cmd_finish(verbs[i].fn(argc, argv));
	}
	warnx("unknown verb '%s'", argv[optind]);
	cmd_usage(eval_usage, 2);
}
