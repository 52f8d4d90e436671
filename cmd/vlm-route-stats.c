/*
 * vlm-route-stats - expert routing statistics of sparse MoE models.
 *
 * Reads a routing-record stream (vlm-routes(5), from `vlm-embed
 * --routes`; a file or - for stdin), or makes one by running a model
 * over images (and texts), and prints every statistic of ALGORITHMS.md
 * section 7 per MoE layer, modality and expert: an aligned table, TSV,
 * JSON, or heatmaps (terminal, PNG). --diff compares two streams.
 * A truncated or corrupt stream is an error; --partial reports the
 * batches before the damage.
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "route-stats.h"
#include "base/base.h"

static const char usage[] =
    "usage: vlm-route-stats [--partial] [--tsv | --json | --heatmap]\n"
    "           [--classes] [--positions] [--layer n] [--png file] "
    "[records]\n"
    "       vlm-route-stats -m model --images dir [--text file] "
    "[-b batch]\n"
    "           [-o records] [--precision fp32|bf16] [option ...]\n"
    "       vlm-route-stats -m model --pairs file [-b batch]\n"
    "           [-o records] [--precision fp32|bf16] [option ...]\n"
    "       vlm-route-stats [--partial] [--tsv | --json] --diff a b\n"
    "       vlm-route-stats -h | --help | --version\n";

/* Read a whole stream into s; 0, or -1 after a warning. With partial a
 * damaged stream gives the statistics of its complete batches. */
static int
read_stream(FILE *f, const char *name, int partial, struct vlm_route_stats *s)
{
	struct vlm_routes_reader r;
	int rc;

	if (vlm_routes_reader_init(&r, f, name) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	if ((rc = vlm_route_stats_init(s, &r)) == 0)
		while ((rc = vlm_routes_reader_next(&r)) == 1)
			if ((rc = vlm_route_stats_add(s, &r)) < 0)
				break;
	vlm_routes_reader_release(&r);
	if (rc < 0 && partial && s->l) {
		warnx("%s; statistics of the %lld batches before it follow",
		    vlm_errmsg(), (long long)s->batches);
		return 0;
	}
	if (rc < 0) {
		warnx("%s", vlm_errmsg());
		vlm_route_stats_release(s);
	}
	return rc;
}

/* Open path for reading ("-" or NULL: stdin); NULL after a warning. */
FILE *
rs_open(const char *path)
{
	FILE *f;

	if (!path || strcmp(path, "-") == 0)
		return stdin;
	if (!(f = fopen(path, "rb")))
		warn("%s", path);
	return f;
}

void
rs_close(FILE *f)
{
	if (f && f != stdin)
		fclose(f);
}

/* Run the model into the records file out (or a temporary file), then
 * return it open for reading; *bad: some inputs failed. Exits on
 * failure. */
static FILE *
run_model(const char *model, const char *dir, const char *text, int batch,
    const char *out, int *bad)
{
	struct vlm_atomic a;
	FILE *f;

	if (!out) {
		if (!(f = tmpfile()))
			err(1, "temporary file");
		if ((*bad = rs_run(f, model, dir, text, batch)) < 0)
			errx(1, "%s", vlm_errmsg());
		rewind(f);
		return f;
	}
	if (vlm_atomic_open(&a, out) < 0)
		errx(1, "%s", vlm_errmsg());
	if ((*bad = rs_run(a.f, model, dir, text, batch)) < 0) {
		vlm_atomic_abort(&a);
		errx(1, "%s", vlm_errmsg());
	}
	if (vlm_atomic_commit(&a) < 0)
		errx(1, "%s", vlm_errmsg());
	if (!(f = fopen(out, "rb")))
		err(1, "%s", out);
	return f;
}

/* Print the reports of s as the options ask. */
static int
report(const struct vlm_route_stats *s, const char *name,
    const struct rs_opts *o, const char *png)
{
	int rc = 0;

	if (png && rs_png(png, s, o->layer) < 0) {
		warnx("%s", vlm_errmsg());
		rc = 1;
	}
	if (o->fmt == RS_TSV)
		rs_print_tsv(s, o);
	else if (o->fmt == RS_JSON)
		rc |= rs_print_json(s, name, o) < 0;
	else if (o->fmt == RS_HEATMAP)
		rs_print_heatmap(s, o);
	else
		rs_print_table(s, name, o);
	return rc;
}

int
main(int argc, char **argv)
{
	enum { O_TSV = 256, O_JSON, O_HEAT, O_CLASSES, O_POS, O_LAYER,
		O_PARTIAL, O_PNG, O_IMAGES, O_TEXT, O_DIFF, O_DEVICE,
		O_PRECISION, O_PAIRS };
	static const struct option opts[] = {
		{ "tsv", no_argument, NULL, O_TSV },
		{ "json", no_argument, NULL, O_JSON },
		{ "heatmap", no_argument, NULL, O_HEAT },
		{ "classes", no_argument, NULL, O_CLASSES },
		{ "positions", no_argument, NULL, O_POS },
		{ "layer", required_argument, NULL, O_LAYER },
		{ "partial", no_argument, NULL, O_PARTIAL },
		{ "png", required_argument, NULL, O_PNG },
		{ "model", required_argument, NULL, 'm' },
		{ "images", required_argument, NULL, O_IMAGES },
		{ "text", required_argument, NULL, O_TEXT },
		{ "pairs", required_argument, NULL, O_PAIRS },
		{ "batch", required_argument, NULL, 'b' },
		{ "output", required_argument, NULL, 'o' },
		{ "diff", no_argument, NULL, O_DIFF },
		{ "device", required_argument, NULL, O_DEVICE },
		{ "precision", required_argument, NULL, O_PRECISION },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct rs_opts o = { .fmt = RS_TABLE, .layer = -1 };
	const char *png = NULL, *model = NULL, *images = NULL, *text = NULL;
	const char *out = NULL, *name, *device = NULL;
	int c, partial = 0, dif = 0, batch = 32, bad = 0, rc;
	struct vlm_route_stats s;
	FILE *f;

	vlm_blas_setup(argc, argv);
	while ((c = getopt_long(argc, argv, "b:hm:o:", opts, NULL)) != -1) {
		switch (c) {
		case O_TSV: o.fmt = RS_TSV; break;
		case O_JSON: o.fmt = RS_JSON; break;
		case O_HEAT: o.fmt = RS_HEATMAP; break;
		case O_CLASSES: o.classes = 1; break;
		case O_POS: o.positions = 1; break;
		case O_LAYER:
			o.layer = cmd_int("--layer", optarg, 0, 1 << 20);
			break;
		case O_PARTIAL: partial = 1; break;
		case O_PNG: png = optarg; break;
		case 'm': model = optarg; break;
		case O_IMAGES: images = optarg; break;
		case O_TEXT: text = optarg; break;
		case O_PAIRS: rs_pairs = optarg; break;
		case 'b': batch = cmd_int("-b", optarg, 1, 65536); break;
		case 'o': out = optarg; break;
		case O_DIFF: dif = 1; break;
		case O_DEVICE:
			device = cmd_device_arg("--device", optarg);
			break;
		case O_PRECISION: rs_precision = cmd_precision(optarg); break;
		case 'h': cmd_usage(usage, 0);
		case 'V': cmd_version("vlm-route-stats");
		default: cmd_usage(usage, 2);
		}
	}
	o.color = isatty(1) && !getenv("NO_COLOR");
	if (dif) {
		if (argc - optind != 2 || model)
			cmd_usage(usage, 2);
		return cmd_finish(rs_diff(argv[optind], argv[optind + 1],
		    partial, &o));
	}
	if (argc - optind > 1 || (model && (optind < argc || !images ==
	    !rs_pairs || (rs_pairs && text))) ||
	    (!model && (images || text || out || rs_pairs)) || batch < 1 ||
	    (out && strcmp(out, "-") == 0))
		cmd_usage(usage, 2);
	if (model) {
		cmd_device(device);
		f = run_model(model, images, text, batch, out, &bad);
		name = out ? out : model;
	} else {
		name = optind < argc ? argv[optind] : "<stdin>";
		if (!(f = rs_open(argv[optind])))
			return 1;
	}
	rc = read_stream(f, name, partial, &s);
	rs_close(f);
	if (rc < 0)
		return cmd_finish(1);
	if (o.layer >= s.nlayers)
		errx(2, "--layer %d: the stream has %d MoE layers", o.layer,
		    s.nlayers);
	rc = report(&s, name, &o, png);
	vlm_route_stats_release(&s);
	return cmd_finish(rc || bad);
}
