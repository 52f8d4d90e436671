/*
 * vlm-embed - embed images or texts into vectors with a vlm model.
 *
 * Reads image files and directories (walked recursively in byte order),
 * or a list of paths on stdin, or with --text one text per line of the
 * files or stdin, or the samples of webdataset tar shards; writes one L2-normalised vector per item as a .npys
 * record stream on stdout (vlm-npys(5)), its packed form with -o
 * FILE.npy, or JSON lines with --format jsonl; with --routes, also the
 * routing records of every MoE layer (vlm-routes(5)). Worker threads
 * decode the next batches while the model runs on the current one;
 * batches are written as they complete, so memory stays flat. Bad
 * inputs are warned about, skipped, listed in the end record, and make
 * the exit status 1.
 */
#include <err.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "embed.h"

static const char usage[] =
    "usage: vlm-embed -m model [-t] [--raw] [-o out.npy] "
    "[--format npys|jsonl]\n"
    "                 [--alpha mode]\n"
    "                 [--routes file] [-b batch] [-j threads] "
    "[--device dev]\n"
    "                 [--precision fp32|bf16] [-fq] [path ...]\n"
    "       vlm-embed -h | --help | --version\n";

static void
parse(int argc, char **argv, struct embed_opts *o)
{
	static const struct option lo[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "text", no_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, 'F' },
		{ "raw", no_argument, NULL, 'r' },
		{ "alpha", required_argument, NULL, 'A' },
		{ "routes", required_argument, NULL, 'R' },
		{ "batch", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 'j' },
		{ "precision", required_argument, NULL, 'P' },
		{ "force", no_argument, NULL, 'f' },
		{ "device", required_argument, NULL, 'D' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	size_t n;
	int c;

	*o = (struct embed_opts){ .batch = 32 };
	while ((c = getopt_long(argc, argv, "m:to:b:j:fqh", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 't': o->text = 1; break;
		case 'o': o->output = optarg; break;
		case 'F':
			if (strcmp(optarg, "npys") != 0 &&
			    strcmp(optarg, "jsonl") != 0)
				errx(2, "format '%s': want npys or jsonl",
				    optarg);
			o->format = *optarg == 'j' ? EMBED_JSONL : EMBED_NPYS;
			break;
		case 'r': o->raw = 1; break;
		case 'A': o->alpha = cmd_alpha(optarg) + 1; break;
		case 'R': o->routes = optarg; break;
		case 'b': o->batch = cmd_int("-b", optarg, 1, 65536); break;
		case 'j': o->threads = cmd_int("-j", optarg, 1, 65536); break;
		case 'P': o->precision = cmd_precision(optarg); break;
		case 'f': o->force = 1; break;
		case 'D': o->device = cmd_device_arg("--device", optarg); break;
		case 'q': o->quiet = 1; break;
		case 'h': cmd_usage(usage, 0);
		case 'V': cmd_version("vlm-embed");
		default: cmd_usage(usage, 2);
		}
	}
	if (!o->model)
		cmd_usage(usage, 2);
	cmd_device(o->device);
	if (o->output && strcmp(o->output, "-") == 0)
		o->output = NULL;
	n = o->output ? strlen(o->output) : 0;
	if (o->format == EMBED_NPYS && n > 5 &&
	    strcmp(o->output + n - 5, ".npys") == 0)
		errx(2, "'%s': -o writes the packed form (a .npy file); for "
		    "a stream, redirect the standard output", o->output);
	if (o->routes && strcmp(o->routes, "-") == 0 && !o->output)
		errx(2, "--routes -: the standard output already carries the "
		    "embeddings (use -o)");
}

int
main(int argc, char **argv)
{
	static struct embed e;
	int64_t total = -1;
	int status;

	signal(SIGXFSZ, SIG_IGN); /* past ulimit -f: EFBIG, not death */
	vlm_blas_setup(argc, argv);
	parse(argc, argv, &e.o);
	if (!e.o.output && e.o.format == EMBED_NPYS)
		cmd_binary_out(stdout, e.o.force);
	if (e.o.routes && strcmp(e.o.routes, "-") == 0)
		cmd_binary_out(stdout, e.o.force);
	if (e.o.threads)
		vlm_threads_set(e.o.threads);
	if (embed_setup_model(&e) < 0)
		errx(1, "%s", vlm_errmsg());
	if (!e.o.quiet && isatty(STDERR_FILENO))
		total = embed_in_count(e.o.text, argv + optind, argc - optind);
	embed_progress_init(&e.prog, !e.o.quiet && isatty(STDERR_FILENO),
	    e.o.text ? "texts" : "images", total);
	if (embed_setup_io(&e, argv + optind, argc - optind) < 0 ||
	    embed_all(&e) < 0) {
		embed_progress_clear(&e.prog);
		embed_abort(&e);
		errx(1, "%s", vlm_errmsg());
	}
	embed_progress_end(&e.prog);
	if (embed_finish(&e) < 0) {
		embed_abort(&e);
		errx(1, "%s", vlm_errmsg());
	}
	if (!e.o.text && e.in.walk.nskipped > 0 && !e.o.quiet)
		warnx("passed over %d non-image file%s", e.in.walk.nskipped,
		    e.in.walk.nskipped > 1 ? "s" : "");
	status = json_array_size(e.failed) > 0;
	embed_release(&e);
	return cmd_finish(status);
}
