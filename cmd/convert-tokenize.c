/*
 * convert-tokenize.c - `vlm-convert tokenize -m MODEL_OR_VOCAB`: the CLIP
 * token ids of text lines.
 *
 * Reads lines of UTF-8 text on stdin; writes one line per input line on
 * stdout: the token ids, space-separated, from <start_of_text> to
 * <end_of_text>, cut to the context length (-c, default 77) as OpenCLIP
 * cuts them, without the zero padding. The tokenizer comes from a vlm
 * model file (safetensors whose metadata "tokenizer.merges" holds it), a
 * CLIP merges file (bpe_simple_vocab_16e6.txt, gzipped or not) or a
 * Hugging Face vocab.json with merges.txt beside it.
 */
#include <err.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "base/base.h"
#include "formats/formats.h"
#include "text/text.h"

#define MAX_CONTEXT (1 << 20)

/* Whether path starts as a safetensors file: a u64 size, then '{'. */
static int
is_safetensors(const char *path)
{
	unsigned char h[9];
	FILE *f = fopen(path, "rb");
	int yes;

	if (!f)
		return 0;
	yes = fread(h, 1, 9, f) == 9 && h[8] == '{' && h[6] == 0 && h[7] == 0;
	fclose(f);
	return yes;
}

/* The tokenizer in a model file's metadata. */
static int
load_model_tokenizer(struct vlm_bpe *bpe, const char *path)
{
	struct vlm_st st;
	const char *merges;
	char msg[1024];
	int rc;

	if (vlm_st_load(&st, path) < 0)
		return -1;
	if (!(merges = vlm_st_meta(&st, "tokenizer.merges"))) {
		vlm_st_release(&st);
		return vlm_error("'%s': no tokenizer in its metadata "
		    "(tokenizer.merges)", path);
	}
	rc = vlm_bpe_from_merges(bpe, merges);
	vlm_st_release(&st);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%s", vlm_errmsg());
		return vlm_error("'%s': %s", path, msg);
	}
	return 0;
}

/* Tokenize stdin line by line onto stdout. */
static int
tokenize_lines(const struct vlm_bpe *bpe, int ctx)
{
	int32_t *ids = malloc(ctx * sizeof(*ids));
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	if (!ids)
		err(1, "context of %d tokens", ctx);
	while ((len = getline(&line, &cap, stdin)) != -1) {
		int n;
		if (len > 0 && line[len - 1] == '\n')
			line[len - 1] = 0;
		if ((n = vlm_bpe_encode(bpe, line, ids, ctx)) < 0) {
			warnx("%s", vlm_errmsg());
			rc = 1;
			break;
		}
		for (int i = 0; i < n; i++)
			printf(i ? " %d" : "%d", (int)ids[i]);
		putchar('\n');
	}
	if (ferror(stdin)) {
		warn("<stdin>");
		rc = 1;
	}
	free(line);
	free(ids);
	return rc;
}

int
convert_tokenize(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "context", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_bpe bpe;
	const char *model = NULL;
	char *end;
	long ctx = VLM_BPE_CONTEXT;
	int c, rc;

	while ((c = getopt_long(argc, argv, "m:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'c':
			ctx = strtol(optarg, &end, 10);
			if (*end || end == optarg || ctx < 1 || ctx > MAX_CONTEXT)
				errx(2, "context length '%s': want 1 to %d",
				    optarg, MAX_CONTEXT);
			break;
		case 'h': cmd_usage(convert_usage, 0);
		default: cmd_usage(convert_usage, 2);
		}
	}
	if (!model || optind != argc)
		cmd_usage(convert_usage, 2);
	rc = is_safetensors(model) ? load_model_tokenizer(&bpe, model) :
	    vlm_bpe_load(&bpe, model);
	if (rc < 0) {
		warnx("%s", vlm_errmsg());
		return 1;
	}
	rc = tokenize_lines(&bpe, (int)ctx);
	vlm_bpe_release(&bpe);
	return rc;
}
