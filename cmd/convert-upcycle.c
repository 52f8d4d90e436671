/*
 * convert-upcycle.c - `vlm-convert upcycle`: a dense model file into a
 * sparse MoE model file (sparse upcycling): E experts per MoE block,
 * each a copy of the dense MLP, routers near zero (small normal weights
 * from a seed), every other parameter and the tokenizer unchanged.
 */
#include <err.h>
#include <getopt.h>
#include <stdlib.h>

#include "cmd.h"
#include "base/base.h"
#include "model/model.h"
#include "model/coca.h"

#define LIM (1 << 20) /* the config check gives the real limits */

/* Parse a whole non-negative integer or fail with usage. */
int
convert_upcycle(int argc, char **argv)
{
	enum { O_EXPERTS = 256, O_TOPK, O_EVERY, O_LAST, O_STD };
	static const struct option opts[] = {
		{ "experts", required_argument, NULL, O_EXPERTS },
		{ "top-k", required_argument, NULL, O_TOPK },
		{ "every", required_argument, NULL, O_EVERY },
		{ "last", required_argument, NULL, O_LAST },
		{ "router-std", required_argument, NULL, O_STD },
		{ "seed", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};
	struct vlm_model dense, m;
	struct vlm_config c;
	unsigned long long seed = 0;
	double std = 1e-3;
	int c_, E = 0, K = 1, every = 0, last = -1;

	while ((c_ = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		switch (c_) {
		case O_EXPERTS: E = cmd_int("--experts", optarg, 1, LIM); break;
		case O_TOPK: K = cmd_int("--top-k", optarg, 1, LIM); break;
		case O_EVERY: every = cmd_int("--every", optarg, 1, LIM); break;
		case O_LAST: last = cmd_int("--last", optarg, 1, LIM); break;
		case O_STD: std = strtod(optarg, NULL); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		default: cmd_usage(convert_usage, 2);
		}
	}
	if (argc - optind != 2 || E == 0 || std < 0 || (every && last > 0))
		cmd_usage(convert_usage, 2);
	if (vlm_coca_is_checkpoint(argv[optind]) == 1) {
		if (last > 0)
			errx(2, "upcycle: --last is not for CoCa models");
		return convert_upcycle_coca(argv[optind], argv[optind + 1], E,
		    K, every, std, seed);
	}
	if (vlm_model_load_merged(&dense, argv[optind]) < 0)
		errx(1, "%s", vlm_errmsg());
	c = dense.cfg;
	c.moe.experts = E, c.moe.top_k = K;
	if (every)
		c.moe.every = every, c.moe.last = 0;
	if (last > 0)
		c.moe.last = last;
	if (vlm_model_upcycle(&m, &dense, &c, std, seed) < 0)
		errx(1, "'%s': %s", argv[optind], vlm_errmsg());
	vlm_model_release(&dense);
	if (vlm_model_save(&m, argv[optind + 1]) < 0)
		errx(1, "%s", vlm_errmsg());
	vlm_model_release(&m);
	return 0;
}
