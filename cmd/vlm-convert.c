/*
 * vlm-convert - inspect and convert model and tensor files.
 *
 * Reads safetensors model files, .npy arrays and .npys record streams;
 * writes safetensors (cast), packed .npy (pack), or a table on stdout
 * (info). Each verb lives in cmd/convert-VERB.c.
 */

#include <signal.h>

#include "cmd.h"
#include "base/base.h"

const char convert_usage[] =
    "usage: vlm-convert info file\n"
    "       vlm-convert cast --dtype f32|f16|bf16 in out\n"
    "       vlm-convert pack in.npys out.npy\n"
    "       vlm-convert import [-c config.json] [-t vocab] checkpoint out\n"
    "       vlm-convert init [-s seed] [-t vocab] [--set key=value] "
    "preset|config.json out\n"
    "       vlm-convert tokenize -m model|vocab\n"
    "       vlm-convert upcycle --experts e [--top-k k] [--every n | "
    "--last n]\n"
    "           [--router-std x] [-s seed] dense out\n"
    "       vlm-convert set model key=value ...\n"
    "       vlm-convert merge-lora in out\n"
    "       vlm-convert merge -o out dir\n"
    "       vlm-convert shard [-c count] [--split name] [--classnames file]\n"
    "           [--templates file] [--group] input outdir\n"
    "       vlm-convert -h | --help | --version\n";

static const struct cmd_verb verbs[] = {
	{ "info", convert_info, NULL },
	{ "cast", convert_cast, NULL },
	{ "pack", convert_pack, NULL },
	{ "import", convert_import, NULL },
	{ "init", convert_init, NULL },
	{ "tokenize", convert_tokenize, NULL },
	{ "merge-lora", convert_merge_lora, NULL },
	{ "merge", convert_merge, NULL },
	{ "upcycle", convert_upcycle, NULL },
	{ "set", convert_set, NULL },
	{ "shard", convert_shard, NULL },
};

int
main(int argc, char **argv)
{
	signal(SIGXFSZ, SIG_IGN); /* past ulimit -f: EFBIG, not death */
	vlm_blas_setup(argc, argv);
	return cmd_verbs("vlm-convert", convert_usage, verbs, sizeof(verbs) / sizeof(*verbs),
	    argc, argv);
}
