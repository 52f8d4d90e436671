/*
 * model/coca-file.c - the CoCa model file: the checkpoint's tensors under
 * their OpenCLIP names (F32), metadata "format" "vlm-coca", "vlm.coca"
 * (the OpenCLIP config keys the weights do not tell: heads, pooler,
 * activation) and optionally "tokenizer.merges" (vlm-model(5)).
 */
#include <stdio.h>
#include <stdlib.h>

#include "model/coca.h"

int
vlm_coca_save(const struct vlm_coca *c, const char *path, const char *merges)
{
	const struct vlm_tensor *t = c->nlora ? vlm_coca_lora_base_alloc(c) :
	    c->st.tensors;
	int rc = t ? vlm_coca_write(path, c->st.names, t, c->st.n, c, merges) :
	    -1;

	if (t != c->st.tensors)
		free((void *)t);
	return rc;
}

int
vlm_coca_write(const char *path, const char *const *names,
    const struct vlm_tensor *ts, int n, const struct vlm_coca *c,
    const char *merges)
{
	const char *keys[] = { "format", "vlm.version", "vlm.coca",
		"tokenizer.merges" };
	const char *vals[4] = { "vlm-coca", "1", NULL, merges };
	char cfg[600], moe[64] = "", lora[64] = "";

	if (c->Ed)
		snprintf(moe, sizeof(moe), ", \"moe_top_k\": %d", c->Kd);
	if (c->lora_alpha > 0)
		snprintf(lora, sizeof(lora), ", \"lora_alpha\": %.9g",
		    c->lora_alpha);
	snprintf(cfg, sizeof(cfg), "{\"vision_cfg\": {\"head_width\": %d, "
	    "\"attn_pooler_queries\": %d, \"attn_pooler_heads\": %d}, "
	    "\"text_cfg\": {\"heads\": %d}, \"multimodal_cfg\": {\"heads\": "
	    "%d%s}, \"quick_gelu\": %s%s}", c->Dv / c->Hv, c->Q, c->Hq, c->Ht,
	    c->Hd, moe, c->quick ? "true" : "false", lora);
	vals[2] = cfg;
	return vlm_st_save(path, names, ts, n, keys, vals,
	    merges ? 4 : 3);
}

const char *
vlm_coca_merges(const struct vlm_coca *c)
{
	return vlm_st_meta(&c->st, "tokenizer.merges");
}

int
vlm_coca_is_checkpoint(const char *path)
{
	struct vlm_st st;
	int yes;

	if (vlm_st_load(&st, path) < 0)
		return -1;
	yes = vlm_st_get(&st, "text_decoder.text_projection") != NULL;
	vlm_st_release(&st);
	return yes;
}
