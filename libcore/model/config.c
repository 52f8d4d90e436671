/*
 * config.c - the model configuration: one struct for CLIP, LIMoE and
 * VL-MoE shapes, stored as JSON in the model file. A table of keys
 * drives parsing, printing and command-line overrides alike.
 */
#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h" /* VLM_MAX_EXPERTS: the aux losses' stack buffers */
#include "model/model.h"

enum ktype { K_INT, K_FLOAT, K_BOOL, K_ENUM, K_FLOAT3 };

struct key {
	const char *name; /* dotted path in the JSON object */
	enum ktype type;
	size_t off;
	const char *const *names; /* K_ENUM: value names in enum order */
	double lo, hi; /* K_INT, K_FLOAT, K_FLOAT3: the allowed range */
};

static const char *const family_names[] = { "two-tower", "one-tower", NULL };
static const char *const act_names[] = { "gelu", "quickgelu", NULL };
static const char *const pool_names[] = { "cls", "eot", "gap", "map", NULL };
static const char *const gate_names[] = { "none", "topk", NULL };
static const char *const tower_names[] = { "both", "vision", "text", NULL };
static const char *const alpha_names[] = { "drop", "white", "black",
    "resize-first", NULL };
static const char *const lora_names[] = { "all", "attn", "mlp", NULL };

/*
 * Every size a file can set is bounded here, where it enters: the limits
 * keep each derived size (tokens, parameters, activations) far from
 * overflow, and they are the table in vlm-model(5).
 */
#define O(f) offsetof(struct vlm_config, f)
#define I(n, f, lo, hi) { n, K_INT, O(f), NULL, lo, hi }
#define F(n, f, lo, hi) { n, K_FLOAT, O(f), NULL, lo, hi }
#define B(n, f) { n, K_BOOL, O(f), NULL, 0, 1 }
#define E(n, f, names) { n, K_ENUM, O(f), names, 0, 0 }
#define W 1e6 /* loss weights, alpha: any sane value */
#define TOWER(p, t) \
	I(p ".width", t.width, 1, VLM_MAX_WIDTH), \
	I(p ".layers", t.layers, 1, VLM_MAX_LAYERS), \
	I(p ".heads", t.heads, 1, VLM_MAX_HEADS), \
	I(p ".mlp_ratio", t.mlp_ratio, 1, VLM_MAX_MLP_RATIO), \
	E(p ".pool", t.pool, pool_names)

static const struct key keys[] = {
	E("family", family, family_names),
	E("act", act, act_names),
	I("embed_dim", embed_dim, 1, VLM_MAX_WIDTH),
	I("image_size", image_size, 1, VLM_MAX_IMAGE),
	I("patch_size", patch_size, 1, VLM_MAX_IMAGE),
	I("context", context, 2, VLM_MAX_CONTEXT),
	I("vocab", vocab, 1, VLM_MAX_VOCAB),
	F("logit_scale_init", logit_scale_init, -20, 20),
	{ "image_mean", K_FLOAT3, O(mean), NULL, -10, 10 },
	{ "image_std", K_FLOAT3, O(std), NULL, 1e-6, 1e3 },
	E("image_alpha", image_alpha, alpha_names),
	TOWER("vision", vision),
	TOWER("text", text),
	I("moe.experts", moe.experts, 0, VLM_MAX_EXPERTS),
	I("moe.top_k", moe.top_k, 1, VLM_MAX_EXPERTS),
	I("moe.every", moe.every, 1, VLM_MAX_LAYERS),
	I("moe.last", moe.last, 0, VLM_MAX_LAYERS),
	E("moe.towers", moe.towers, tower_names),
	F("moe.cf_train", moe.cf_train, 0, VLM_MAX_CF),
	F("moe.cf_eval", moe.cf_eval, 0, VLM_MAX_CF),
	I("moe.min_capacity", moe.min_capacity, 0, VLM_MAX_PATCHES),
	B("moe.bpr", moe.bpr),
	F("moe.noise", moe.noise, 0, 100),
	E("moe.gate_norm", moe.gate_norm, gate_names),
	B("moe.modality_experts", moe.modality_experts),
	B("aux.limoe", aux.limoe),
	F("aux.w_limoe", aux.w_limoe, 0, W),
	F("aux.importance", aux.importance, 0, W),
	F("aux.load", aux.load, 0, W),
	F("aux.switch", aux.switch_bal, 0, W),
	F("aux.zloss", aux.zloss, 0, W),
	F("aux.local_img", aux.local_img, 0, W),
	F("aux.local_txt", aux.local_txt, 0, W),
	F("aux.global_img", aux.global_img, 0, W),
	F("aux.global_txt", aux.global_txt, 0, W),
	F("aux.s_image", aux.s_image, 1, W), /* experts, clamped to E */
	F("aux.s_text", aux.s_text, 1, W),
	I("token_reduction.after", tl.after, -1, VLM_MAX_LAYERS - 1),
	I("token_reduction.tokens", tl.tokens, 1, VLM_MAX_PATCHES),
	I("token_reduction.hidden", tl.hidden, 1, VLM_MAX_WIDTH),
	I("fusion.layers", fusion.layers, 0, VLM_MAX_LAYERS),
	I("fusion.answers", fusion.answers, 0, VLM_MAX_VOCAB),
	I("lora.rank", lora.rank, 0, VLM_MAX_LORA_RANK),
	F("lora.alpha", lora.alpha, 0, W),
	E("lora.targets", lora.targets, lora_names),
};
#define NKEYS (sizeof(keys) / sizeof(*keys))
#undef I
#undef F
#undef B
#undef E
#undef W

static const struct key *
find_key(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len &&
		    strncmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

/* Common defaults: OpenCLIP ViT conventions, dense, LIMoE aux recipe. */
static void
defaults(struct vlm_config *c)
{
	static const float mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
	static const float std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

	memset(c, 0, sizeof(*c));
	c->family = VLM_TWO_TOWER;
	c->act = VLM_ACT_GELU;
	c->context = 77;
	c->vocab = 49408;
	c->logit_scale_init = logf(1 / 0.07f);
	memcpy(c->mean, mean, sizeof(mean));
	memcpy(c->std, std, sizeof(std));
	c->vision.mlp_ratio = c->text.mlp_ratio = 4;
	c->vision.pool = VLM_POOL_CLS;
	c->text.pool = VLM_POOL_EOT;
	c->moe.top_k = 1;
	c->moe.every = 2;
	c->moe.cf_train = c->moe.cf_eval = 1.0f;
	c->moe.min_capacity = 4;
	c->moe.bpr = 1;
	c->moe.noise = 1.0f;
	c->aux.w_limoe = 0.04f;
	c->aux.s_image = 20;
	c->aux.s_text = 9;
	c->tl.after = -1;
	c->tl.tokens = 8;
	c->tl.hidden = 64;
}

static void
tower(struct vlm_tower_config *t, int width, int layers, int heads)
{
	t->width = width;
	t->layers = layers;
	t->heads = heads;
}

/* LIMoE one-tower with E experts, K = 1, MoE every other block */
static void
limoe(struct vlm_config *c, int experts)
{
	c->family = VLM_ONE_TOWER;
	c->text = c->vision;
	c->text.pool = VLM_POOL_EOT;
	c->moe.experts = experts;
	c->aux.limoe = 1;
	c->aux.importance = c->aux.load = 1;
	c->aux.zloss = 1;
	c->aux.local_img = c->aux.local_txt = 1;
	c->aux.global_img = c->aux.global_txt = 1;
	c->logit_scale_init = logf(10);
}

int
vlm_config_preset(struct vlm_config *c, const char *name)
{
	defaults(c);
	if (strcmp(name, "openclip-tiny") == 0) {
		c->embed_dim = 32, c->image_size = 32, c->patch_size = 8;
		tower(&c->vision, 64, 2, 2);
		tower(&c->text, 64, 2, 2);
	} else if (strcmp(name, "tiny") == 0 || strcmp(name, "tiny-moe") == 0) {
		c->embed_dim = 64, c->image_size = 32, c->patch_size = 8;
		c->vocab = 8192, c->context = 32;
		tower(&c->vision, 128, 4, 4);
		if (strcmp(name, "tiny-moe") == 0)
			limoe(c, 8);
		else
			tower(&c->text, 128, 4, 4);
	} else if (strcmp(name, "fusion-tiny") == 0) { /* VL-MoE, model/fusion.c */
		c->embed_dim = 64, c->image_size = 32, c->patch_size = 8;
		c->vocab = 8192, c->context = 32;
		tower(&c->vision, 128, 4, 4);
		limoe(c, 4);
		c->moe.modality_experts = 1;
		c->fusion.layers = 2;
	} else if (strcmp(name, "s") == 0) {
		c->embed_dim = 256, c->image_size = 64, c->patch_size = 8;
		c->vocab = 8192, c->context = 32;
		tower(&c->vision, 384, 6, 6);
		tower(&c->text, 384, 6, 6);
	} else if (strcmp(name, "b") == 0) { /* ViT-B/32 CLIP */
		c->embed_dim = 512, c->image_size = 224, c->patch_size = 32;
		tower(&c->vision, 768, 12, 12);
		tower(&c->text, 512, 12, 8);
	} else {
		return vlm_error("unknown preset '%s' (try tiny, tiny-moe, s, "
		    "b, openclip-tiny, fusion-tiny)", name);
	}
	return 0;
}

/* Is v inside key k's range? If not, say so: the key, value and range. */
static int
in_range(const struct key *k, double v)
{
	/* a float field is compared as stored, with its bounds as floats */
	double lo = k->type == K_INT ? k->lo : (float)k->lo;
	double hi = k->type == K_INT ? k->hi : (float)k->hi;

	if (v >= lo && v <= hi) /* false for NaN */
		return 0;
	if (k->type == K_INT)
		return vlm_error("config key '%s': %.0f is out of range (%.0f "
		    "to %.0f)", k->name, v, k->lo, k->hi);
	return vlm_error("config key '%s': %g is out of range (%g to %g)",
	    k->name, v, k->lo, k->hi);
}

/* Store a JSON value into the field a key names, range-checked. */
static int
set_value(struct vlm_config *c, const struct key *k, json_t *v)
{
	char *p = (char *)c + k->off;

	switch (k->type) {
	case K_INT:
		if (!json_is_integer(v))
			return vlm_error("config key '%s': expected an integer",
			    k->name);
		if (in_range(k, (double)json_integer_value(v)) < 0)
			return -1;
		*(int *)p = (int)json_integer_value(v);
		return 0;
	case K_FLOAT:
		if (!json_is_number(v))
			return vlm_error("config key '%s': expected a number",
			    k->name);
		if (in_range(k, (float)json_number_value(v)) < 0)
			return -1;
		*(float *)p = (float)json_number_value(v);
		return 0;
	case K_BOOL:
		if (!json_is_boolean(v) && !json_is_integer(v))
			return vlm_error("config key '%s': expected true or "
			    "false", k->name);
		*(int *)p = json_is_boolean(v) ? json_is_true(v) :
		    json_integer_value(v) != 0;
		return 0;
	case K_FLOAT3:
		if (!json_is_array(v) || json_array_size(v) != 3)
			return vlm_error("config key '%s': expected 3 numbers",
			    k->name);
		for (int i = 0; i < 3; i++) {
			json_t *e = json_array_get(v, i);
			if (!json_is_number(e))
				return vlm_error("config key '%s': expected 3 "
				    "numbers", k->name);
			if (in_range(k, (float)json_number_value(e)) < 0)
				return -1;
			((float *)p)[i] = (float)json_number_value(e);
		}
		return 0;
	case K_ENUM: {
		char list[160] = "";
		size_t n = 0;

		if (json_is_string(v))
			for (int i = 0; k->names[i]; i++)
				if (strcmp(k->names[i], json_string_value(v)) == 0) {
					*(int *)p = i;
					return 0;
				}
		for (int i = 0; k->names[i] && n < sizeof(list); i++)
			n += snprintf(list + n, sizeof(list) - n, "%s%s",
			    i ? ", " : "", k->names[i]);
		return vlm_error("config key '%s': expected one of %s",
		    k->name, list);
	}
	}
	return 0;
}

/* Every field of c inside its key's range (configs built in code too). */
static int
check_ranges(const struct vlm_config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const void *p = (const char *)c + k->off;
		int n = 0, rc = 0;

		switch (k->type) {
		case K_INT: rc = in_range(k, *(const int *)p); break;
		case K_FLOAT: rc = in_range(k, *(const float *)p); break;
		case K_FLOAT3:
			for (int j = 0; j < 3 && rc == 0; j++)
				rc = in_range(k, ((const float *)p)[j]);
			break;
		case K_BOOL: break;
		case K_ENUM:
			while (k->names[n])
				n++;
			if (*(const int *)p < 0 || *(const int *)p >= n)
				rc = vlm_error("config key '%s': no value %d",
				    k->name, *(const int *)p);
			break;
		}
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* Walk a JSON object; prefix is the dotted path so far. */
static int
walk(struct vlm_config *c, json_t *obj, const char *prefix)
{
	const char *name;
	json_t *v;
	char path[128];

	json_object_foreach(obj, name, v) {
		snprintf(path, sizeof(path), "%s%s%s", prefix,
		    *prefix ? "." : "", name);
		const struct key *k = find_key(path, strlen(path));
		if (k) {
			if (set_value(c, k, v) < 0)
				return -1;
		} else if (json_is_object(v)) {
			if (walk(c, v, path) < 0)
				return -1;
		} else {
			return vlm_error("unknown config key '%s'", path);
		}
	}
	return 0;
}

int
vlm_config_from_json(struct vlm_config *c, const char *text)
{
	json_error_t e;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	int rc;

	if (!root)
		return vlm_error("config: %s (line %d)", e.text, e.line);
	if (!json_is_object(root)) {
		json_decref(root);
		return vlm_error("config: expected a JSON object");
	}
	rc = walk(c, root, "");
	json_decref(root);
	return rc;
}

int
vlm_config_set(struct vlm_config *c, const char *kv)
{
	const char *eq = strchr(kv, '=');
	const struct key *k;
	json_t *v;
	int rc;

	if (!eq)
		return vlm_error("'%s': expected key=value", kv);
	k = find_key(kv, eq - kv);
	if (!k)
		return vlm_error("unknown config key '%.*s'", (int)(eq - kv), kv);
	v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
	if (!v) /* bare words: enum names */
		v = json_string(eq + 1);
	rc = set_value(c, k, v);
	json_decref(v);
	return rc;
}

/* The object at a dotted prefix of root, created as needed. */
static json_t *
parent_of(json_t *root, const char *name, const char **leaf)
{
	const char *dot;
	char part[64];

	while ((dot = strchr(name, '.'))) {
		snprintf(part, sizeof(part), "%.*s", (int)(dot - name), name);
		json_t *sub = json_object_get(root, part);
		if (!sub) {
			sub = json_object();
			json_object_set_new(root, part, sub);
		}
		root = sub;
		name = dot + 1;
	}
	*leaf = name;
	return root;
}

static json_t *
get_value(const struct vlm_config *c, const struct key *k)
{
	const char *p = (const char *)c + k->off;

	switch (k->type) {
	case K_INT: return json_integer(*(const int *)p);
	case K_FLOAT: return json_real(*(const float *)p);
	case K_BOOL: return json_boolean(*(const int *)p);
	case K_ENUM: return json_string(k->names[*(const int *)p]);
	case K_FLOAT3:
		return json_pack("[fff]", ((const float *)p)[0],
		    ((const float *)p)[1], ((const float *)p)[2]);
	}
	return NULL;
}

char *
vlm_config_to_json_alloc(const struct vlm_config *c)
{
	json_t *root = json_object();
	char *s;

	for (size_t i = 0; i < NKEYS; i++) {
		const char *leaf;
		json_t *obj = parent_of(root, keys[i].name, &leaf);
		json_object_set_new(obj, leaf, get_value(c, &keys[i]));
	}
	s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(9));
	json_decref(root);
	return s;
}

static int
check_tower(const char *name, const struct vlm_tower_config *t)
{
	if (t->width % t->heads)
		return vlm_error("config: %s.heads (%d) do not divide "
		    "%s.width (%d)", name, t->heads, name, t->width);
	return 0;
}

int
vlm_config_check(const struct vlm_config *c)
{
	const struct vlm_tower_config *v = &c->vision, *t = &c->text;
	int64_t g = c->image_size / (c->patch_size > 0 ? c->patch_size : 1);

	if (check_ranges(c) < 0 || check_tower("vision", v) < 0 ||
	    check_tower("text", t) < 0)
		return -1;
	if (c->image_size % c->patch_size)
		return vlm_error("config: patch_size (%d) must divide "
		    "image_size (%d)", c->patch_size, c->image_size);
	if (vlm_size_mul(g, g) > VLM_MAX_PATCHES)
		return vlm_error("config: image_size / patch_size = %lld "
		    "makes %lld patches, more than %d", (long long)g,
		    (long long)vlm_size_mul(g, g), VLM_MAX_PATCHES);
	if (c->family == VLM_ONE_TOWER && (v->width != t->width ||
	    v->layers != t->layers || v->heads != t->heads ||
	    v->mlp_ratio != t->mlp_ratio))
		return vlm_error("config: a one-tower model shares its "
		    "blocks: vision and text width, layers, heads and "
		    "mlp_ratio must be equal");
	if (v->pool == VLM_POOL_EOT)
		return vlm_error("config: vision.pool cannot be eot");
	if (t->pool == VLM_POOL_CLS)
		return vlm_error("config: text.pool cannot be cls");
	if (c->fusion.layers > 0 && (c->family != VLM_ONE_TOWER ||
	    c->tl.after >= 0))
		return vlm_error("config: fusion.layers needs a one-tower "
		    "model without token reduction");
	if (c->fusion.answers > 0 && c->fusion.layers == 0)
		return vlm_error("config: fusion.answers needs fusion.layers");
	if (c->fusion.layers > 0 && c->lora.rank > 0)
		return vlm_error("config: LoRA adapters (lora.rank) cover the "
		    "towers' blocks only, not a fusion model's fusion blocks");
	return vlm_config_check_moe(c);
}

/* The MoE and token-reduction part of vlm_config_check() (the ranges of
 * single keys are checked there). */
int
vlm_config_check_moe(const struct vlm_config *c)
{
	int E = c->moe.experts, K = c->moe.top_k;

	if (c->tl.after >= c->vision.layers)
		return vlm_error("config: token_reduction.after (%d) must be "
		    "a vision block index (< %d)", c->tl.after,
		    c->vision.layers);
	if (c->tl.after >= 0 && c->vision.pool == VLM_POOL_CLS)
		return vlm_error("config: token reduction replaces the class "
		    "token: choose vision.pool gap or map");
	if (E == 0)
		return 0;
	if (K > E)
		return vlm_error("config: moe.top_k (%d) exceeds moe.experts "
		    "(%d)", K, E);
	if (K == 1 && c->moe.gate_norm == VLM_GATE_TOPK)
		return vlm_error("config: moe.gate_norm=topk with top_k=1 "
		    "makes every gate 1 and the router untrainable");
	if (c->moe.modality_experts && c->family != VLM_ONE_TOWER)
		return vlm_error("config: moe.modality_experts needs a "
		    "one-tower model (a two-tower model's pools are already "
		    "separate)");
	return 0;
}

int
vlm_config_is_moe(const struct vlm_config *c, int tower, int l)
{
	int layers = tower ? c->text.layers : c->vision.layers;
	int n = c->moe.every, nmoe, idx;

	if (c->moe.experts == 0 || (l + 1) % n != 0)
		return 0;
	if (c->family == VLM_TWO_TOWER && c->moe.towers != VLM_MOE_BOTH &&
	    c->moe.towers != (tower ? VLM_MOE_TEXT : VLM_MOE_VISION))
		return 0;
	if (c->moe.last == 0)
		return 1;
	nmoe = layers / n;     /* MoE-eligible blocks in the tower */
	idx = (l + 1) / n - 1; /* this block's rank among them */
	return idx >= nmoe - c->moe.last;
}

int
vlm_config_image_tokens(const struct vlm_config *c)
{
	int g;

	/* a checked config: g * g cannot overflow */
	assert(c->patch_size >= 1 && c->image_size <= VLM_MAX_IMAGE);
	g = c->image_size / c->patch_size;

	return g * g + (c->vision.pool == VLM_POOL_CLS);
}
