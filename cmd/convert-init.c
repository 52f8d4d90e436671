/*
 * convert-init.c - `vlm-convert init`: write a freshly initialised model
 * file from a preset or a config JSON, with key=value overrides.
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "base/base.h"
#include "model/model.h"

int
convert_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "set", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_config c;
	struct vlm_model m;
	char **sets = calloc(argc, sizeof(*sets));
	unsigned long long seed = 0;
	const char *tok = NULL;
	int c_, nset = 0;

	while ((c_ = getopt_long(argc, argv, "s:t:", opts, NULL)) != -1) {
		if (c_ == 's')
			seed = strtoull(optarg, NULL, 0);
		else if (c_ == 't')
			tok = optarg;
		else if (c_ == 'S')
			sets[nset++] = optarg;
		else
			cmd_usage(convert_usage, 2);
	}
	if (argc - optind != 2)
		cmd_usage(convert_usage, 2);
	if (strcmp(argv[optind], "coca-tiny") == 0) { /* cmd/convert-coca.c */
		convert_init_coca(sets, nset, seed, tok, argv[optind + 1]);
		free(sets);
		return 0;
	}
	if (tok)
		errx(2, "init: -t is for the coca-tiny preset");
	if (cmd_config(&c, argv[optind]) < 0)
		errx(1, "%s", vlm_errmsg());
	for (int i = 0; i < nset; i++)
		if (vlm_config_set(&c, sets[i]) < 0)
			errx(1, "%s", vlm_errmsg());
	free(sets);
	if (vlm_config_check(&c) < 0)
		errx(1, "'%s': %s", argv[optind], vlm_errmsg());
	if (vlm_model_init(&m, &c) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_model_randomize(&m, seed);
	if (vlm_model_save(&m, argv[optind + 1]) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_model_release(&m);
	return 0;
}
