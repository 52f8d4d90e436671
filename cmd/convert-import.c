/*
 * convert-import.c - `vlm-convert import`: an OpenCLIP- or HF-named CLIP
 * checkpoint (safetensors, plus the config JSON its ecosystem ships)
 * (and a BPE vocabulary) into one vlm model file; a CoCa checkpoint into
 * a CoCa model file (convert-coca.c).
 */
#include <err.h>
#include <getopt.h>

#include "cmd.h"
#include "base/base.h"
#include "text/text.h"
#include "model/model.h"
#include "model/coca.h"

int
convert_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "tokenizer", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	const char *config = NULL, *tok = NULL;
	struct vlm_bpe bpe;
	struct vlm_model m;
	int c;

	while ((c = getopt_long(argc, argv, "c:t:", opts, NULL)) != -1) {
		if (c == 'c')
			config = optarg;
		else if (c == 't')
			tok = optarg;
		else
			cmd_usage(convert_usage, 2);
	}
	if (argc - optind != 2)
		cmd_usage(convert_usage, 2);
	if ((c = vlm_coca_is_checkpoint(argv[optind])) != 0)
		return c < 0 ? (warnx("%s", vlm_errmsg()), 1) :
		    convert_import_coca(argv[optind], config, tok,
		    argv[optind + 1]);
	if (vlm_model_import(&m, argv[optind], config) < 0)
		errx(1, "%s", vlm_errmsg());
	if (tok) { /* the model file carries its tokenizer from now on */
		if (vlm_bpe_load(&bpe, tok) < 0)
			errx(1, "%s", vlm_errmsg());
		if (bpe.nvocab > m.cfg.vocab)
			errx(1, "'%s': %d tokens, the model's vocabulary only "
			    "%d", tok, bpe.nvocab, m.cfg.vocab);
		if (vlm_model_set_tokenizer(&m, &bpe) < 0)
			errx(1, "%s", vlm_errmsg());
		vlm_bpe_release(&bpe);
	}
	if (vlm_model_save(&m, argv[optind + 1]) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_model_release(&m);
	return 0;
}
