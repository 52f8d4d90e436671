/* common.c - usage, version and output checks shared by the commands. */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <jansson.h>

#include "cmd.h"
#include "kernels.h"
#include "base/base.h"
#include "data/data.h"
#include "model/model.h"

void
cmd_usage(const char *usage, int status)
{
	fputs(usage, status == 0 ? stdout : stderr);
	exit(status == 0 ? cmd_finish(0) : status);
}

/* The integer option opt's argument s, from min to max, or exit 2. */
int
cmd_int(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v < min || v > max)
		errx(2, "%s '%s': want an integer from %ld to %ld", opt, s,
		    min, max);
	return (int)v;
}

/* The mode is checked and named by the config key's own table. */
int
cmd_alpha(const char *s)
{
	struct vlm_config c = {0};
	char kv[64];

	if (strlen(s) > 32)
		errx(2, "--alpha '%.32s...': no such mode", s);
	snprintf(kv, sizeof(kv), "image_alpha=%s", s);
	if (vlm_config_set(&c, kv) < 0)
		errx(2, "--alpha: %s", vlm_errmsg());
	return c.image_alpha;
}

int
cmd_precision(const char *s)
{
	enum vlm_precision p;

	if (vlm_precision_parse(s, &p) < 0)
		errx(2, "--precision: %s", vlm_errmsg());
	return p;
}

void
cmd_version(const char *prog)
{
	printf("%s %s\n", prog, VLM_VERSION);
	printf("backend cpu: OpenBLAS %s kernels, %d threads\n",
	    openblas_get_corename(), vlm_threads());
	char why[256];
	int n = vlm_cuda_devices(why, sizeof(why));
	printf("backend cuda: %d device%s (%s)\n", n, n == 1 ? "" : "s", why);
	printf("device: %s\n", cmd_device_name(NULL));
	exit(cmd_finish(0));
}

/* The device spec names (NULL: $VLM_DEVICE, else $VLM_BACKEND, else
 * cuda where a device is, else cpu), unchecked. */
const char *
cmd_device_name(const char *spec)
{
	char why[256];

	if (!spec || !*spec)
		spec = getenv("VLM_DEVICE");
	if (!spec || !*spec)
		spec = getenv("VLM_BACKEND");
	if (!spec || !*spec)
		spec = vlm_cuda_devices(why, sizeof(why)) > 0 ? "cuda" : "cpu";
	return spec;
}

const char *
cmd_device_arg(const char *what, const char *s)
{
	if (s && *s && strcmp(s, "cpu") != 0 && strcmp(s, "cuda") != 0 &&
	    strncmp(s, "cuda:", 5) != 0)
		errx(2, "%s '%s': want cpu, cuda or cuda:N", what, s);
	return s;
}

const char *
cmd_device(const char *spec)
{
	const char *name = cmd_device_name(spec);

	if (spec && *spec)
		cmd_device_arg("--device", spec);
	else
		cmd_device_arg("VLM_DEVICE", getenv("VLM_DEVICE"));
	if (!vlm_backend_get(name))
		errx(1, "%s", vlm_errmsg());
	if (setenv("VLM_BACKEND", name, 1) != 0)
		err(1, "setenv");
	return name;
}

void
cmd_binary_out(FILE *f, int force)
{
	if (!force && isatty(fileno(f)))
		errx(2, "refusing to write binary data to a terminal "
		    "(redirect it, or use -f)");
}

int
cmd_finish(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		warn("<stdout>");
		return 1;
	}
	return status;
}

/* A preset name, or a JSON file laid over the defaults of "tiny". */
int
cmd_config(struct vlm_config *c, const char *spec)
{
	FILE *f;
	char *text = NULL;
	size_t n = 0;
	int rc;

	if (!strchr(spec, '.') && !strchr(spec, '/'))
		return vlm_config_preset(c, spec);
	if (!(f = fopen(spec, "r")))
		return vlm_error("'%s': cannot open config", spec);
	vlm_config_preset(c, "tiny");
	rc = getdelim(&text, &n, '\0', f) < 0 ? vlm_error("'%s': cannot "
	    "read config", spec) : vlm_config_from_json(c, text);
	if (rc < 0 && text)
		vlm_error("'%s': %s", spec, vlm_errmsg());
	free(text);
	fclose(f);
	return rc;
}

int
cmd_verbs(const char *prog, const char *usage, const struct cmd_verb *v,
    size_t n, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': cmd_usage(usage, 0);
		case 'V': cmd_version(prog);
		default: cmd_usage(usage, 2);
		}
	}
	if (optind >= argc)
		cmd_usage(usage, 2);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(argv[optind], v[i].name) != 0)
			continue;
		if (!v[i].fn)
			errx(2, "'%s' is not implemented yet; it comes with %s",
			    v[i].name, v[i].issue);
		argc -= optind;
		argv += optind;
		optind = 0; /* the verb parses its own options (glibc: reinit) */
		return cmd_finish(v[i].fn(argc, argv));
	}
	warnx("unknown verb '%s'", argv[optind]);
	cmd_usage(usage, 2);
}

int
cmd_load_image(void *arg, int64_t index, const char *key, uint64_t seed,
    float *px)
{
	const struct vlm_items *it = arg;
	const char *path = it->paths ? it->paths[index] : key;
	json_t *j = json_string(path);

	if (!j)
		return vlm_error("'%s': name is not valid UTF-8 (ids are)",
		    path);
	json_decref(j);
	return vlm_items_image(arg, index, key, seed, px);
}

double
cmd_moe_mean(json_t *line, const char *key)
{
	json_t *e, *v;
	double sum = 0;
	size_t i;
	int n = 0;

	json_array_foreach(json_object_get(line, "moe"), i, e)
		if (json_is_number(v = json_object_get(e, key)))
			sum += json_number_value(v), n++;
	return n ? sum / n : NAN;
}

int
cmd_pairs_warn(const struct vlm_pairs *p, const char *name)
{
	for (int i = 0; i < p->nbadmsg; i++)
		warnx("%s", p->bad[i]);
	if (p->nbad > p->nbadmsg)
		warnx("'%s': %d more bad rows", name, p->nbad - p->nbadmsg);
	return p->nbad > 0;
}
