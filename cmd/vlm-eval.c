/*
 * vlm-eval - zero-shot classification, retrieval, linear-probe and
 * image-caption selection evaluation of a model, as CLIP_benchmark
 * defines the metrics; whole suites of them and their results table.
 *
 * Reads a vlm model file and an ImageFolder tree or an image-caption
 * pairs file, or embeddings made earlier (.npys streams or packed .npy
 * files, e.g. from vlm-embed); writes the metrics on stdout, a table or
 * one JSON object per run (--json). Each verb lives in cmd/eval-VERB.c.
 */

#include "cmd.h"
#include "eval.h"
#include "base/base.h"

const char eval_usage[] =
    "usage: vlm-eval zeroshot [-m model] [--images dir] [--image-emb file]\n"
    "           [--labels file] [--text-emb file] [--classnames file]\n"
    "           [--templates file] [--wds dir] [--split name] [-b batch]\n"
    "           [--prompts] [--json] [--per-class] [--device dev]\n"
    "           [--precision fp32|bf16]\n"
    "           [--alpha mode]\n"
    "       vlm-eval retrieval [-m model] [--pairs file] [--wds dir]\n"
    "           [--split name] [--image-emb file]\n"
    "           [--text-emb file] [--csv-img-key name]\n"
    "           [--csv-caption-key name] [--csv-separator char] [-b batch]\n"
    "           [--json] [--device dev] [--precision fp32|bf16]\n"
    "           [--alpha mode] [--rerank K]\n"
    "       vlm-eval linear-probe [-m model] [--train dir] [--test dir]\n"
    "           [--train-emb file] [--train-labels file] [--test-emb file]\n"
    "           [--test-labels file] [--wd value] [-b batch] [--json]\n"
    "           [--per-class] [--device dev] [--precision fp32|bf16]\n"
    "           [--alpha mode]\n"
    "       vlm-eval select -m model --file file [-b batch] [--json]\n"
    "       vlm-eval suite -m model [-m model ...] [-o dir] [--split name]\n"
    "           [-b batch] list\n"
    "       vlm-eval table [--markdown] [-o file] dir\n"
    "       vlm-eval plot -y key [-x key] [--title text] [--size WxH]\n"
    "           -o file.png [label=]metrics.jsonl ...\n"
    "       vlm-eval plot --tsv file [--bars] [--title text] [--size WxH]\n"
    "           -o file.png\n"
    "       vlm-eval captioning --refs file --hyp file [--json]\n"
    "       vlm-eval match -m model --pairs file [--scores file] [-b batch]\n"
    "           [--json] [--device dev] [--alpha mode]\n"
    "       vlm-eval qa -m model --pairs file --answers file [-b batch]\n"
    "           [--json] [--device dev] [--alpha mode]\n"
    "       vlm-eval -h | --help | --version\n";

static const struct cmd_verb verbs[] = {
	{ "zeroshot", eval_zeroshot, NULL },
	{ "retrieval", eval_retrieval, NULL },
	{ "linear-probe", eval_linear_probe, NULL },
	{ "select", eval_select, NULL },
	{ "suite", eval_suite, NULL },
	{ "table", eval_table, NULL },
	{ "plot", eval_plot, NULL },
	{ "captioning", eval_captioning, NULL },
	{ "match", eval_match, NULL },
	{ "qa", eval_qa, NULL },
};

int
main(int argc, char **argv)
{
	vlm_blas_setup(argc, argv);
	return cmd_verbs("vlm-eval", eval_usage, verbs, sizeof(verbs) / sizeof(*verbs),
	    argc, argv);
}
