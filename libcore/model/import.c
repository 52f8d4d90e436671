/*
 * import.c - read OpenCLIP-named and HF-transformers-named CLIP
 * checkpoints (safetensors) into a vlm model. Shapes come from the
 * tensors themselves; head counts and the activation from the config
 * JSON each ecosystem ships (open_clip_config.json or config.json); the
 * image_alpha each ecosystem's preprocessing implies (OpenCLIP resizes
 * before it converts to RGB, HF's CLIPImageProcessor after).
 * The name mapping is in ../shared/fixtures/README.md.
 */
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h" /* enum vlm_alpha */
#include "formats/formats.h"
#include "model/model.h"

enum naming { OPENCLIP, HF };

/* snprintf that reports truncation instead of hiding it */
static int
fmt(char *buf, size_t n, const char *f, ...)
{
	va_list ap;
	int k;

	va_start(ap, f);
	k = vsnprintf(buf, n, f, ap);
	va_end(ap);
	return k < 0 || (size_t)k >= n ? vlm_error("name too long: '%s'", buf)
	    : 0;
}

/* Number of blocks: count "<pre>N." prefixes present. */
static int
count_layers(const struct vlm_st *st, const char *pre, const char *leaf)
{
	char name[160];
	int n = 0;

	for (;; n++) {
		snprintf(name, sizeof(name), "%s%d.%s", pre, n, leaf);
		if (!vlm_st_get(st, name))
			return n;
	}
}

static const struct vlm_tensor *
need(const struct vlm_st *st, const char *name, int ndim)
{
	const struct vlm_tensor *t = vlm_st_get(st, name);

	if (!t)
		vlm_error("'%s': missing tensor '%s'", st->path, name);
	else if (t->ndim != ndim) {
		vlm_error("'%s': tensor '%s' has %d dimensions, expected %d",
		    st->path, name, t->ndim, ndim);
		t = NULL;
	}
	return t;
}

/* A dimension as a config value: past INT_MAX it saturates, for the
 * config's range check to refuse rather than a cast to wrap. */
static int
dim(int64_t v)
{
	return v > INT_MAX ? INT_MAX : (int)v;
}

/* Shapes of the towers from the tensors of either naming. */
static int
shapes(struct vlm_config *c, const struct vlm_st *st, enum naming nm)
{
	static const char *const n[2][8] = {
		{ "visual.conv1.weight", "visual.positional_embedding",
		  "token_embedding.weight", "positional_embedding",
		  "visual.proj", "visual.transformer.resblocks.",
		  "transformer.resblocks.", "mlp.c_fc.weight" },
		{ "vision_model.embeddings.patch_embedding.weight",
		  "vision_model.embeddings.position_embedding.weight",
		  "text_model.embeddings.token_embedding.weight",
		  "text_model.embeddings.position_embedding.weight",
		  "visual_projection.weight", "vision_model.encoder.layers.",
		  "text_model.encoder.layers.", "mlp.fc1.weight" },
	};
	const struct vlm_tensor *conv, *vpos, *tok, *tpos, *proj, *fc;
	char name[160];
	int64_t g;

	if (!(conv = need(st, n[nm][0], 4)) || !(vpos = need(st, n[nm][1], 2))
	    || !(tok = need(st, n[nm][2], 2)) || !(tpos = need(st, n[nm][3], 2))
	    || !(proj = need(st, n[nm][4], 2)))
		return -1;
	c->vision.width = dim(conv->shape[0]);
	c->patch_size = dim(conv->shape[2]);
	for (g = 1; g <= VLM_MAX_IMAGE && (g + 1) * (g + 1) <=
	    vpos->shape[0] - 1; g++)
		;
	c->image_size = dim(g * c->patch_size);
	c->vocab = dim(tok->shape[0]);
	c->text.width = dim(tok->shape[1]);
	c->context = dim(tpos->shape[0]);
	c->embed_dim = dim(proj->shape[nm == OPENCLIP ? 1 : 0]);
	c->vision.layers = count_layers(st, n[nm][5], n[nm][7]);
	c->text.layers = count_layers(st, n[nm][6], n[nm][7]);
	snprintf(name, sizeof(name), "%s0.%s", n[nm][5], n[nm][7]);
	if (!(fc = need(st, name, 2)))
		return -1;
	c->vision.mlp_ratio = dim(fc->shape[0] / (c->vision.width ?
	    c->vision.width : 1));
	snprintf(name, sizeof(name), "%s0.%s", n[nm][6], n[nm][7]);
	if (!(fc = need(st, name, 2)))
		return -1;
	c->text.mlp_ratio = dim(fc->shape[0] / (c->text.width ?
	    c->text.width : 1));
	return 0;
}

/* The integer at key of o (past INT_MAX saturated, negative -1), or def. */
static int
jint(json_t *o, const char *key, int def)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return def;
	return json_integer_value(v) < 0 ? -1 : dim(json_integer_value(v));
}

/* Heads and activation from open_clip_config.json or HF config.json. */
static int
ecosystem_config(struct vlm_config *c, const char *path)
{
	json_error_t e;
	json_t *root, *v, *t;

	c->vision.heads = c->vision.width / 64; /* OpenCLIP head_width 64 */
	c->text.heads = 8;
	if (!path)
		return 0;
	if (!(root = json_load_file(path, 0, &e)))
		return vlm_error("'%s': %s (line %d)", path, e.text, e.line);
	if ((v = json_object_get(root, "vision_cfg"))) { /* OpenCLIP */
		t = json_object_get(root, "text_cfg");
		int hw = jint(v, "head_width", 64);
		c->vision.heads = jint(v, "heads", hw > 0 ?
		    c->vision.width / hw : 0);
		c->text.heads = jint(t, "heads", 8);
		c->act = json_is_true(json_object_get(root, "quick_gelu"));
	} else if ((v = json_object_get(root, "vision_config"))) { /* HF */
		t = json_object_get(root, "text_config");
		c->vision.heads = jint(v, "num_attention_heads", 12);
		c->text.heads = jint(t, "num_attention_heads", 8);
		json_t *act = json_object_get(t, "hidden_act");
		c->act = json_is_string(act) &&
		    strcmp(json_string_value(act), "quick_gelu") == 0;
	} else {
		json_decref(root);
		return vlm_error("'%s': neither an OpenCLIP nor an HF CLIP "
		    "config (no vision_cfg or vision_config)", path);
	}
	json_decref(root);
	return 0;
}

static const char *const hf_top[][2] = {
	{ "visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight" },
	{ "visual.class_embedding", "vision_model.embeddings.class_embedding" },
	{ "visual.positional_embedding",
	  "vision_model.embeddings.position_embedding.weight" },
	{ "visual.ln_pre.", "vision_model.pre_layrnorm." },
	{ "visual.ln_post.", "vision_model.post_layernorm." },
	{ "visual.proj", "visual_projection.weight" },
	{ "token_embedding.weight", "text_model.embeddings.token_embedding.weight" },
	{ "positional_embedding", "text_model.embeddings.position_embedding.weight" },
	{ "ln_final.", "text_model.final_layer_norm." },
	{ "text_projection", "text_projection.weight" },
	{ "logit_scale", "logit_scale" },
	{ "visual.transformer.resblocks.", "vision_model.encoder.layers." },
	{ "transformer.resblocks.", "text_model.encoder.layers." },
};

static const char *const hf_block[][2] = {
	{ "ln_1.", "layer_norm1." }, { "ln_2.", "layer_norm2." },
	{ "attn.out_proj.", "self_attn.out_proj." },
	{ "mlp.c_fc.", "mlp.fc1." }, { "mlp.c_proj.", "mlp.fc2." },
	{ "attn.in_proj_", "self_attn.%s_proj." },
};

/* Rewrite an OpenCLIP name by a prefix table; NULL if none matches. */
static const char *
rewrite(const char *ours, const char *const tab[][2], size_t n, char *out,
    size_t outsz, const char **rest)
{
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(tab[i][0]);
		if (strncmp(ours, tab[i][0], k) == 0) {
			snprintf(out, outsz, "%s", tab[i][1]);
			*rest = ours + k;
			return out;
		}
	}
	return NULL;
}

/* Copy src into a parameter, transposed when it is (cols, rows). */
static void
copy_param(float *dst, const struct vlm_tensor *t, const struct vlm_param *p,
    int transpose, int64_t rows)
{
	float *tmp = NULL;

	if (!transpose) {
		vlm_convert_floats(dst, VLM_DTYPE_F32, t->data, t->dtype, rows);
		return;
	}
	tmp = malloc(p->n * sizeof(float));
	if (!tmp)
		return;
	vlm_convert_floats(tmp, VLM_DTYPE_F32, t->data, t->dtype, p->n);
	for (int64_t i = 0; i < p->shape[0]; i++) /* dst (R,C) = src^T */
		for (int64_t j = 0; j < p->shape[1]; j++)
			dst[i * p->shape[1] + j] = tmp[j * p->shape[0] + i];
	free(tmp);
}

/* Fetch one HF tensor of n elements into dst; mark it used. */
static int
hf_fetch(const struct vlm_st *st, const char *name, float *dst, int64_t n,
    const struct vlm_param *p, int transpose, char *used)
{
	const struct vlm_tensor *t = vlm_st_get(st, name);

	if (!t)
		return vlm_error("'%s': missing tensor '%s'", st->path, name);
	if (vlm_tensor_numel(t) != n)
		return vlm_error("'%s': tensor '%s' has %lld elements, expected "
		    "%lld", st->path, name, (long long)vlm_tensor_numel(t),
		    (long long)n);
	if (t->dtype != VLM_DTYPE_F32 && t->dtype != VLM_DTYPE_F16 &&
	    t->dtype != VLM_DTYPE_BF16)
		return vlm_error("'%s': tensor '%s' is not floating point",
		    st->path, name);
	used[t - st->tensors] = 1;
	copy_param(dst, t, p, transpose, n);
	return 0;
}

/* One parameter from an HF checkpoint (q/k/v fused, projections T). */
static int
hf_param(struct vlm_model *m, const struct vlm_param *p,
    const struct vlm_st *st, char *used)
{
	char base[160], name[200];
	const char *rest, *brest;
	float *dst = m->w + p->off;
	int transpose = strcmp(p->name, "visual.proj") == 0 ||
	    strcmp(p->name, "text_projection") == 0;

	if (!rewrite(p->name, hf_top, sizeof(hf_top) / sizeof(*hf_top), base,
	    sizeof(base), &rest))
		return vlm_error("no HF name for '%s'", p->name);
	if (!strstr(base, "layers.")) {
		if (fmt(name, sizeof(name), "%s%s", base, rest) < 0)
			return -1;
		return hf_fetch(st, name, dst, p->n, p, transpose, used);
	}
	const char *dot = strchr(rest, '.'); /* "N.suffix" */
	char blk[160];
	if (!dot || !rewrite(dot + 1, hf_block, sizeof(hf_block) /
	    sizeof(*hf_block), blk, sizeof(blk), &brest))
		return vlm_error("no HF name for '%s'", p->name);
	if (strstr(blk, "%s")) { /* q, k, v thirds of in_proj */
		static const char *const qkv[3] = { "q", "k", "v" };
		for (int i = 0; i < 3; i++) {
			char sub[64];
			snprintf(sub, sizeof(sub), blk, qkv[i]);
			if (fmt(name, sizeof(name), "%s%.*s%s%s", base,
			    (int)(dot + 1 - rest), rest, sub,
			    strcmp(brest, "weight") == 0 ? "weight" : "bias") < 0
			    || hf_fetch(st, name, dst + i * p->n / 3, p->n / 3, p,
			    0, used) < 0)
				return -1;
		}
		return 0;
	}
	if (fmt(name, sizeof(name), "%s%.*s%s%s", base, (int)(dot + 1 - rest),
	    rest, blk, brest) < 0)
		return -1;
	return hf_fetch(st, name, dst, p->n, p, 0, used);
}

static int
openclip_param(struct vlm_model *m, const struct vlm_param *p,
    const struct vlm_st *st, char *used)
{
	return hf_fetch(st, p->name, m->w + p->off, p->n, p, 0, used);
}

/* Every checkpoint tensor must have been used (position_ids aside). */
static int
all_used(const struct vlm_st *st, const char *used)
{
	for (int i = 0; i < st->n; i++) {
		const char *n = st->names[i];
		size_t k = strlen(n);
		if (!used[i] && !(k >= 12 && strcmp(n + k - 12,
		    "position_ids") == 0))
			return vlm_error("'%s': tensor '%s' is not part of a "
			    "CLIP model vlm knows", st->path, n);
	}
	return 0;
}

int
vlm_model_import(struct vlm_model *m, const char *weights,
    const char *config)
{
	struct vlm_st st;
	struct vlm_config c;
	enum naming nm;
	char *used = NULL;
	int rc = -1;

	if (vlm_refuse_pickle(weights) < 0 || vlm_st_load(&st, weights) < 0)
		return -1;
	nm = vlm_st_get(&st, "visual.conv1.weight") ? OPENCLIP : HF;
	vlm_config_preset(&c, "openclip-tiny");
	if (shapes(&c, &st, nm) < 0 || ecosystem_config(&c, config) < 0)
		goto out;
	/* the images as each ecosystem's preprocessing sees them */
	c.image_alpha = nm == OPENCLIP ? VLM_ALPHA_RESIZE_FIRST :
	    VLM_ALPHA_DROP;
	if (vlm_model_init(m, &c) < 0) {
		vlm_error("'%s': %s", weights, vlm_errmsg());
		goto out;
	}
	if (!(used = calloc(st.n + 1, 1))) {
		vlm_error("out of memory");
		goto fail;
	}
	for (int i = 0; i < m->nparams; i++)
		if ((nm == HF ? hf_param : openclip_param)(m, &m->params[i],
		    &st, used) < 0)
			goto fail;
	if (all_used(&st, used) < 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	vlm_model_release(m);
out:
	free(used);
	vlm_st_release(&st);
	return rc;
}
