/*
 * vlm-eval - zero-shot, retrieval and linear-probe evaluation.
 *
 * Not implemented yet: it comes with vlm-embed and vlm-eval (issue 7). Until then it
 * answers --help and --version and refuses to run with exit status 2.
 */
#include <err.h>
#include <getopt.h>

#include "cmd.h"

static const char usage[] =
    "usage: vlm-eval -h | --help | --version\n";

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': cmd_usage(usage, 0);
		case 'V': cmd_version("vlm-eval");
		default: cmd_usage(usage, 2);
		}
	}
	errx(2, "not implemented yet; it comes with vlm-embed and vlm-eval (issue 7)");
}
