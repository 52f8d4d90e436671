/*
 * vlm-caption - caption images with a CoCa model.
 *
 * Reads image files and directories (walked recursively in byte order),
 * or a list of paths on stdin when none are given; writes one line
 * "path<TAB>caption" per image on stdout, in input order. Captions are
 * OpenCLIP's generate(): greedy by default, beam search with -k; the
 * same input gives the same caption. A bad image is warned about,
 * skipped, and makes the exit status 1.
 */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "base/base.h"
#include "text/text.h"
#include "data/data.h"
#include "model/coca.h"

static const char usage[] =
    "usage: vlm-caption -m model [-k beams] [-g groups] [-l max-len] "
    "[-n min-len]\n"
    "                   [-t tokenizer] [path ...]\n"
    "       vlm-caption -h | --help | --version\n";

struct opts {
	const char *model, *tok;
	int beams, groups, len, min_len;
};

static void
parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "beams", required_argument, NULL, 'k' },
		{ "groups", required_argument, NULL, 'g' },
		{ "max-len", required_argument, NULL, 'l' },
		{ "min-len", required_argument, NULL, 'n' },
		{ "tokenizer", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	*o = (struct opts){ .beams = 1, .groups = 1, .len = 30, .min_len = 5 };
	while ((c = getopt_long(argc, argv, "m:k:g:l:n:t:h", lo, NULL)) != -1)
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'k': o->beams = cmd_int("-k", optarg, 1,
		    VLM_COCA_MAX_BEAMS); break;
		case 'g': o->groups = cmd_int("-g", optarg, 1,
		    VLM_COCA_MAX_BEAMS); break;
		case 'l': o->len = cmd_int("-l", optarg, 2, VLM_COCA_MAX_LEN);
			break;
		case 'n': o->min_len = cmd_int("-n", optarg, 0,
		    VLM_COCA_MAX_LEN); break;
		case 't': o->tok = optarg; break;
		case 'h': cmd_usage(usage, 0);
		case 'V': cmd_version("vlm-caption");
		default: cmd_usage(usage, 2);
		}
	if (!o->model)
		cmd_usage(usage, 2);
	if (o->beams % o->groups)
		errx(2, "-g %d does not divide -k %d", o->groups, o->beams);
}

/* Caption one image file: print its line, or warn and return -1. */
static int
caption(const struct vlm_coca *c, const struct vlm_bpe *bpe,
    const struct opts *o, const char *path, float *px, int32_t *ids)
{
	struct vlm_image im;
	char *text;
	int n;

	if (vlm_image_load(&im, path, NULL) < 0)
		return warnx("%s", vlm_errmsg()), -1;
	n = vlm_preprocess(px, &im, c->S, NULL, NULL);
	vlm_image_release(&im);
	if (n == 0)
		n = o->beams == 1 ? vlm_coca_greedy(c, px, o->len, o->min_len,
		    ids) : vlm_coca_beam(c, px, o->len, o->min_len, o->beams,
		    o->groups, ids);
	if (n < 0 || !(text = vlm_bpe_decode_alloc(bpe, ids, n)))
		return warnx("'%s': %s", path, vlm_errmsg()), -1;
	for (char *s = text; *s; s++) /* one line per image */
		if (*s == '\t' || *s == '\n' || *s == '\r')
			*s = ' ';
	printf("%s\t%s\n", path, text);
	free(text);
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct vlm_coca c;
	struct vlm_bpe bpe;
	struct vlm_walk w;
	const char *path;
	int rc, failed = 0;

	parse(argc, argv, &o);
	if (vlm_coca_load(&c, o.model, NULL) < 0)
		errx(1, "%s", vlm_errmsg());
	if (o.tok ? vlm_bpe_load(&bpe, o.tok) : !vlm_coca_merges(&c) ?
	    vlm_error("'%s': the model carries no tokenizer (give -t, or "
	    "import it with -t)", o.model) : vlm_bpe_from_merges(&bpe,
	    vlm_coca_merges(&c)))
		errx(1, "%s", vlm_errmsg());
	if (bpe.nvocab > c.V)
		errx(1, "'%s': the tokenizer has %d tokens, the model's "
		    "vocabulary only %d", o.model, bpe.nvocab, c.V);
	c.sot = bpe.sot, c.eot = bpe.eot;
	float *px = malloc((size_t)3 * c.S * c.S * sizeof(float));
	int32_t *ids = malloc(VLM_COCA_MAX_LEN * sizeof(int32_t));
	if (!px || !ids)
		errx(1, "out of memory");
	vlm_walk_init(&w, argv + optind, argc - optind,
	    optind == argc ? stdin : NULL, "<stdin>");
	while ((rc = vlm_walk_next(&w, &path)) != 0)
		if (rc < 0 || caption(&c, &bpe, &o, path, px, ids) < 0) {
			if (rc < 0)
				warnx("%s", vlm_errmsg());
			failed = 1;
		}
	vlm_walk_release(&w);
	free(px), free(ids);
	vlm_bpe_release(&bpe);
	vlm_coca_release(&c);
	return cmd_finish(failed);
}
