/* cmd.h - the little every vlm command shares: usage, version, output. */
#ifndef VLM_CMD_H
#define VLM_CMD_H

#include <stdint.h>
#include <stdio.h>

/* Print usage to stdout (asked for, exit 0) or stderr (misuse, exit 2). */
void cmd_usage(const char *usage, int status) __attribute__((noreturn));
void cmd_version(const char *prog) __attribute__((noreturn));
int cmd_int(const char *opt, const char *s, long min, long max);
/* --alpha's argument: an image_alpha mode (enum vlm_alpha), or exit 2. */
int cmd_alpha(const char *s);
/*
 * --device (spec) or $VLM_DEVICE: cpu, cuda or cuda:N, the backend of the
 * program's runs (it sets VLM_BACKEND). Unset: VLM_BACKEND if set, else
 * cuda where the build has CUDA and a device is present, else cpu. A
 * malformed name exits 2, a device that cannot be used 1 (one line
 * naming the reason). Returns the name.
 */
const char *cmd_device(const char *spec);
/* s (option or variable `what`) if it looks like a device, else exit 2. */
const char *cmd_device_arg(const char *what, const char *s);
/* The name cmd_device would use, unchecked (for --version). */
const char *cmd_device_name(const char *spec);
/* --precision's argument: enum vlm_precision (fp32, bf16), or exit 2. */
int cmd_precision(const char *s);
/* Refuse to write binary data to a terminal unless forced; exits 2. */
void cmd_binary_out(FILE *f, int force);
/* Flush stdout and fail (exit 1) on a full disk or closed pipe. */
int cmd_finish(int status);
/* vlm_items_image() for outputs that name each image: a path that is
 * not UTF-8 (ids are) fails that item. */
int cmd_load_image(void *arg, int64_t index, const char *key,
    uint64_t seed, float *px);

/* A program of verbs: fn gets argv from the verb on (optind reset);
 * a verb without fn is refused with exit 2, naming `issue`. */
struct cmd_verb {
	const char *name;
	int (*fn)(int, char **);
	const char *issue;
};
/* -h/--help and --version, then the verb; returns the exit status. */
int cmd_verbs(const char *prog, const char *usage, const struct cmd_verb *v,
    size_t n, int argc, char **argv);

/*
 * vlm-convert verbs (cmd/convert-*.c): argv[0] is the verb, optind is 1;
 * they return the exit status and call cmd_usage(convert_usage, 2) on
 * misuse.
 */
extern const char convert_usage[];
int convert_info(int argc, char **argv);
int convert_cast(int argc, char **argv);
int convert_pack(int argc, char **argv);
int convert_import(int argc, char **argv);
int convert_import_coca(const char *weights, const char *config,
    const char *tok, const char *out);
int convert_init(int argc, char **argv);
int convert_init_coca(char **sets, int nset, unsigned long long seed,
    const char *tok, const char *out);
int convert_info_coca(const char *path);
int convert_upcycle_coca(const char *in, const char *out, int E, int K,
    int every, double std, unsigned long long seed);
int convert_tokenize(int argc, char **argv);
int convert_upcycle(int argc, char **argv);
int convert_set(int argc, char **argv);
int convert_merge_lora(int argc, char **argv);
int convert_merge(int argc, char **argv);
int convert_shard(int argc, char **argv);
/* A preset name or a config JSON file into c. */
struct vlm_config;
int cmd_config(struct vlm_config *c, const char *spec);
/* Warn the bad rows of a pairs file (name) read into p: the messages
 * kept, and how many more there were. 1 if it had any, else 0. */
struct vlm_pairs;
int cmd_pairs_warn(const struct vlm_pairs *p, const char *name);
/* The mean of the number key over the entries of a metrics line's "moe"
 * array (its MoE layers), NaN when none has it. */
struct json_t;
double cmd_moe_mean(struct json_t *line, const char *key);

#endif
