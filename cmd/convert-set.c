/*
 * convert-set.c - `vlm-convert set MODEL key=value ...`: change the
 * routing-time settings stored in a model file's config (capacity
 * factors, minimum capacity, Batch Priority Routing, top-k, router
 * noise, gate normalisation, aux loss weights), rewriting the file
 * atomically with its tensors, dtypes and other metadata unchanged.
 * Keys that would change the parameters' shapes are refused.
 */
#include <err.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "base/base.h"
#include "formats/formats.h"
#include "model/model.h"

/* The keys that leave every parameter's shape as it is. */
static const char *const routing_keys[] = {
	"moe.top_k", "moe.cf_train", "moe.cf_eval", "moe.min_capacity",
	"moe.bpr", "moe.noise", "moe.gate_norm", "aux.", NULL
};

static int
routing_key(const char *kv)
{
	size_t n = strcspn(kv, "=");

	for (int i = 0; routing_keys[i]; i++) {
		size_t k = strlen(routing_keys[i]);
		if (routing_keys[i][k - 1] == '.' ? strncmp(kv,
		    routing_keys[i], k) == 0 : n == k &&
		    strncmp(kv, routing_keys[i], k) == 0)
			return 1;
	}
	return 0;
}

/* The file's config with the settings applied, as JSON (malloc'ed). */
static char *
new_config(const struct vlm_st *st, const char *path, char **kv, int n)
{
	const char *json = vlm_st_meta(st, "vlm.config");
	struct vlm_config c;

	if (!json)
		errx(1, "'%s': not a vlm model (no vlm.config metadata)", path);
	vlm_config_preset(&c, "tiny");
	if (vlm_config_from_json(&c, json) < 0)
		errx(1, "'%s': %s", path, vlm_errmsg());
	for (int i = 0; i < n; i++) {
		if (!routing_key(kv[i]))
			errx(1, "'%.*s' is not a routing-time setting (it "
			    "would change the parameters; settable: "
			    "moe.top_k, moe.cf_train, moe.cf_eval, "
			    "moe.min_capacity, moe.bpr, moe.noise, "
			    "moe.gate_norm, aux.*)", (int)strcspn(kv[i], "="),
			    kv[i]);
		if (vlm_config_set(&c, kv[i]) < 0)
			errx(1, "%s", vlm_errmsg());
	}
	if (c.moe.experts == 0)
		errx(1, "'%s': a dense model has no routing to set", path);
	if (vlm_config_check(&c) < 0)
		errx(1, "'%s': %s", path, vlm_errmsg());
	return vlm_config_to_json_alloc(&c);
}

int
convert_set(int argc, char **argv)
{
	struct vlm_st st;
	const char **keys;
	const char **vals;
	char *cfg;
	int rc;

	if (argc < 3 || argv[1][0] == '-')
		cmd_usage(convert_usage, 2);
	if (vlm_st_load(&st, argv[1]) < 0)
		errx(1, "%s", vlm_errmsg());
	if (!(cfg = new_config(&st, argv[1], argv + 2, argc - 2)))
		errx(1, "out of memory");
	keys = calloc(st.nmeta, sizeof(*keys));
	vals = calloc(st.nmeta, sizeof(*vals));
	if (!keys || !vals)
		errx(1, "out of memory");
	for (int i = 0; i < st.nmeta; i++) {
		keys[i] = st.meta_keys[i];
		vals[i] = strcmp(keys[i], "vlm.config") ? st.meta_vals[i] : cfg;
	}
	rc = vlm_st_save(argv[1], st.names, st.tensors, st.n, keys, vals,
	    st.nmeta);
	if (rc < 0)
		warnx("%s", vlm_errmsg());
	free(keys);
	free(vals);
	free(cfg);
	vlm_st_release(&st);
	return rc < 0;
}
