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
#include "base/base.h"
#include "formats/formats.h"
#include "model/model.h"

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

/* For a vlm model file: its shape, active parameters and FLOPs; -1 if
 * the file is no valid model (warned). */
static int
print_model(const char *path)
{
	static const char *const fam[] = { "two-tower (CLIP)",
		"one-tower (LIMoE)" };
	struct vlm_model m;
	const struct vlm_config *c = &m.cfg;

	if (vlm_model_load(&m, path) < 0) {
		warnx("%s", vlm_errmsg());
		return -1;
	}
	printf("\nmodel: %s, embedding %d, image %d px / patch %d, context "
	    "%d, vocabulary %d%s\n", fam[c->family], c->embed_dim,
	    c->image_size, c->patch_size, c->context, c->vocab,
	    m.tokenizer ? ", tokenizer inside" : "");
	if (c->moe.experts)
		printf("experts: %d, top-%d, %s pools, capacity factor %g "
		    "(eval %g)\n", c->moe.experts, c->moe.top_k,
		    c->moe.modality_experts ? "per-modality" : "shared",
		    c->moe.cf_train, c->moe.cf_eval);
	if (c->tl.after >= 0)
		printf("token reduction: TokenLearner (hidden %d) after "
		    "block %d, %d -> %d image tokens\n", c->tl.hidden,
		    c->tl.after, vlm_config_image_tokens(c), c->tl.tokens);
	printf("active parameters per token: %lld\n",
	    (long long)vlm_model_active_params(&m));
	if (c->lora.rank > 0)
		printf("LoRA adapters: rank %d, scale %g, %d tensors, %lld "
		    "parameters\n", c->lora.rank, vlm_lora_scale(c),
		    m.nparams - vlm_lora_first(&m), (long long)(m.nfloats -
		    m.params[vlm_lora_first(&m)].off));
	for (int text = 0; text < 2; text++)
		printf("forward GFLOPs per %s: %.4g (rows allocated: %.4g)\n",
		    text ? "text" : "image", vlm_model_flops(&m, text, 0) / 1e9,
		    vlm_model_flops(&m, text, 1) / 1e9);
	if (c->fusion.layers > 0)
		printf("forward GFLOPs per fused pair: %.4g (rows allocated: "
		    "%.4g)\n", vlm_model_fusion_flops(&m, 0) / 1e9,
		    vlm_model_fusion_flops(&m, 1) / 1e9);
	vlm_model_release(&m);
	return 0;
}

int
convert_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_st st;
	int c, rc = 0;

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
	if (vlm_st_meta(&st, "vlm.config") && strcmp(argv[optind], "-") != 0)
		rc = print_model(argv[optind]) < 0;
	else if (vlm_st_meta(&st, "vlm.coca") && strcmp(argv[optind], "-"))
		rc = convert_info_coca(argv[optind]) < 0;
	vlm_st_release(&st);
	return rc;
}
