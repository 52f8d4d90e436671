/*
 * config.c - the model configuration: one struct for CLIP, LIMoE and
 * VL-MoE shapes, stored as JSON in the model file. A table of keys
 * drives parsing, printing and command-line overrides alike.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm.h"

enum ktype { K_INT, K_FLOAT, K_BOOL, K_ENUM, K_FLOAT3 };

struct key {
	const char *name; /* dotted path in the JSON object */
	enum ktype type;
	size_t off;
	const char *const *names; /* K_ENUM: value names in enum order */
};

static const char *const family_names[] = { "two-tower", "one-tower", NULL };
static const char *const act_names[] = { "gelu", "quickgelu", NULL };
static const char *const pool_names[] = { "cls", "eot", "gap", "map", NULL };
static const char *const gate_names[] = { "none", "topk", NULL };
static const char *const tower_names[] = { "both", "vision", "text", NULL };
static const char *const alpha_names[] = { "drop", "white", "black", NULL };
static const char *const lora_names[] = { "all", "attn", "mlp", NULL };

#define O(f) offsetof(struct vlm_config, f)
#define TOWER(p, t) \
	{ p ".width", K_INT, O(t.width), NULL }, \
	{ p ".layers", K_INT, O(t.layers), NULL }, \
	{ p ".heads", K_INT, O(t.heads), NULL }, \
	{ p ".mlp_ratio", K_INT, O(t.mlp_ratio), NULL }, \
	{ p ".pool", K_ENUM, O(t.pool), pool_names }

static const struct key keys[] = {
	{ "family", K_ENUM, O(family), family_names },
	{ "act", K_ENUM, O(act), act_names },
	{ "embed_dim", K_INT, O(embed_dim), NULL },
	{ "image_size", K_INT, O(image_size), NULL },
	{ "patch_size", K_INT, O(patch_size), NULL },
	{ "context", K_INT, O(context), NULL },
	{ "vocab", K_INT, O(vocab), NULL },
	{ "logit_scale_init", K_FLOAT, O(logit_scale_init), NULL },
	{ "image_mean", K_FLOAT3, O(mean), NULL },
	{ "image_std", K_FLOAT3, O(std), NULL },
	{ "image_alpha", K_ENUM, O(image_alpha), alpha_names },
	TOWER("vision", vision),
	TOWER("text", text),
	{ "moe.experts", K_INT, O(moe.experts), NULL },
	{ "moe.top_k", K_INT, O(moe.top_k), NULL },
	{ "moe.every", K_INT, O(moe.every), NULL },
	{ "moe.last", K_INT, O(moe.last), NULL },
	{ "moe.towers", K_ENUM, O(moe.towers), tower_names },
	{ "moe.cf_train", K_FLOAT, O(moe.cf_train), NULL },
	{ "moe.cf_eval", K_FLOAT, O(moe.cf_eval), NULL },
	{ "moe.min_capacity", K_INT, O(moe.min_capacity), NULL },
	{ "moe.bpr", K_BOOL, O(moe.bpr), NULL },
	{ "moe.noise", K_FLOAT, O(moe.noise), NULL },
	{ "moe.gate_norm", K_ENUM, O(moe.gate_norm), gate_names },
	{ "moe.modality_experts", K_BOOL, O(moe.modality_experts), NULL },
	{ "aux.limoe", K_BOOL, O(aux.limoe), NULL },
	{ "aux.w_limoe", K_FLOAT, O(aux.w_limoe), NULL },
	{ "aux.importance", K_FLOAT, O(aux.importance), NULL },
	{ "aux.load", K_FLOAT, O(aux.load), NULL },
	{ "aux.switch", K_FLOAT, O(aux.switch_bal), NULL },
	{ "aux.zloss", K_FLOAT, O(aux.zloss), NULL },
	{ "aux.local_img", K_FLOAT, O(aux.local_img), NULL },
	{ "aux.local_txt", K_FLOAT, O(aux.local_txt), NULL },
	{ "aux.global_img", K_FLOAT, O(aux.global_img), NULL },
	{ "aux.global_txt", K_FLOAT, O(aux.global_txt), NULL },
	{ "aux.s_image", K_FLOAT, O(aux.s_image), NULL },
	{ "aux.s_text", K_FLOAT, O(aux.s_text), NULL },
	{ "token_reduction.after", K_INT, O(tl.after), NULL },
	{ "token_reduction.tokens", K_INT, O(tl.tokens), NULL },
	{ "token_reduction.hidden", K_INT, O(tl.hidden), NULL },
	{ "lora.rank", K_INT, O(lora.rank), NULL },
	{ "lora.alpha", K_FLOAT, O(lora.alpha), NULL },
	{ "lora.targets", K_ENUM, O(lora.targets), lora_names },
};
#define NKEYS (sizeof(keys) / sizeof(*keys))

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
		    "b, openclip-tiny)", name);
	}
	return 0;
}

/* Store a JSON value into the field a key names. */
static int
set_value(struct vlm_config *c, const struct key *k, json_t *v)
{
	char *p = (char *)c + k->off;

	switch (k->type) {
	case K_INT:
		if (!json_is_integer(v))
			return vlm_error("config key '%s': expected an integer",
			    k->name);
		*(int *)p = (int)json_integer_value(v);
		return 0;
	case K_FLOAT:
		if (!json_is_number(v) ||
		    !isfinite((float)json_number_value(v)))
			return vlm_error("config key '%s': expected a number "
			    "(finite as a float)", k->name);
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
			if (!json_is_number(e) ||
			    !isfinite((float)json_number_value(e)))
				return vlm_error("config key '%s': expected 3 "
				    "numbers (finite as floats)", k->name);
			((float *)p)[i] = (float)json_number_value(e);
		}
		return 0;
	case K_ENUM:
		if (json_is_string(v))
			for (int i = 0; k->names[i]; i++)
				if (strcmp(k->names[i], json_string_value(v)) == 0) {
					*(int *)p = i;
					return 0;
				}
		return vlm_error("config key '%s': expected one of %s%s%s%s%s",
		    k->name, k->names[0], k->names[1] ? ", " : "",
		    k->names[1] ? k->names[1] : "", k->names[2] ? ", " : "",
		    k->names[2] ? k->names[2] : "");
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
	if (t->width <= 0 || t->layers <= 0 || t->heads <= 0 ||
	    t->mlp_ratio <= 0)
		return vlm_error("config: %s width, layers, heads and mlp_ratio "
		    "must be positive", name);
	if (t->width % t->heads)
		return vlm_error("config: %s heads (%d) do not divide width "
		    "(%d)", name, t->heads, t->width);
	return 0;
}

int
vlm_config_check(const struct vlm_config *c)
{
	const struct vlm_tower_config *v = &c->vision, *t = &c->text;

	if (check_tower("vision", v) < 0 || check_tower("text", t) < 0)
		return -1;
	if (c->embed_dim <= 0 || c->context <= 1 || c->vocab <= 0)
		return vlm_error("config: embed_dim, context and vocab must be "
		    "positive");
	if (c->patch_size <= 0 || c->image_size % c->patch_size)
		return vlm_error("config: patch_size (%d) must divide "
		    "image_size (%d)", c->patch_size, c->image_size);
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
	if (c->lora.rank < 0 || !(c->lora.alpha >= 0))
		return vlm_error("config: lora.rank and lora.alpha must not be "
		    "negative");
	return vlm_config_check_moe(c);
}

/* The MoE and token-reduction part of vlm_config_check(). */
int
vlm_config_check_moe(const struct vlm_config *c)
{
	int E = c->moe.experts, K = c->moe.top_k;

	if (c->tl.after >= 0 && (c->tl.after >= c->vision.layers ||
	    c->tl.tokens <= 0 || c->tl.hidden <= 0))
		return vlm_error("config: token_reduction.after must be a "
		    "vision block index (< %d), tokens and hidden positive",
		    c->vision.layers);
	if (c->tl.after >= 0 && c->vision.pool == VLM_POOL_CLS)
		return vlm_error("config: token reduction replaces the class "
		    "token: choose vision.pool gap or map");
	if (E == 0)
		return 0;
	if (E < 0 || K < 1)
		return vlm_error("config: moe.experts and moe.top_k must be "
		    "positive");
	if (K > E)
		return vlm_error("config: moe.top_k (%d) exceeds moe.experts "
		    "(%d)", K, E);
	if (K == 1 && c->moe.gate_norm == VLM_GATE_TOPK)
		return vlm_error("config: moe.gate_norm=topk with top_k=1 "
		    "makes every gate 1 and the router untrainable");
	if (c->moe.every < 1 || c->moe.last < 0)
		return vlm_error("config: moe.every must be >= 1 and moe.last "
		    ">= 0");
	if (c->moe.cf_train < 0 || c->moe.cf_eval < 0 ||
	    c->moe.min_capacity < 0 || c->moe.noise < 0)
		return vlm_error("config: capacity factors, min_capacity and "
		    "noise must not be negative");
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
	int g = c->image_size / c->patch_size;

	return g * g + (c->vision.pool == VLM_POOL_CLS);
}
