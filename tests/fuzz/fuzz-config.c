/*
 * fuzz-config.c - model configuration text: JSON over a preset (the
 * first byte picks it), then NUL-separated "key=value" overrides, as
 * vlm-convert init and set apply them; vlm_config_check() of the result,
 * the JSON it writes read back to the same JSON, and for a config that
 * passes and is small (the harness's bound, so that every input runs
 * fast) the parameter table of vlm_model_init() and its counts.
 */
#include "fuzz.h"

static const char *const presets[] = { "tiny", "tiny-moe", "s", "b",
	"openclip-tiny" };

/* Small enough to build the model's table in a few milliseconds. */
static int
small(const struct vlm_config *c)
{
	const struct vlm_tower_config *t[2] = { &c->vision, &c->text };

	for (int i = 0; i < 2; i++)
		if (t[i]->width > 256 || t[i]->layers > 8 ||
		    t[i]->mlp_ratio > 8)
			return 0;
	return c->embed_dim <= 256 && c->vocab <= 4096 &&
	    c->context <= 256 && c->image_size <= 256 &&
	    c->moe.experts <= 16 && c->tl.tokens <= 64 &&
	    c->tl.hidden <= 256 && c->lora.rank <= 16;
}

/* Write c as JSON, read it into a preset, write again: the same text. */
static void
round_trip(const struct vlm_config *c)
{
	struct vlm_config d;
	char *a = vlm_config_to_json_alloc(c), *b;

	if (!a)
		return;
	vlm_config_preset(&d, "b");
	if (vlm_config_from_json(&d, a) < 0) {
		fprintf(stderr, "config JSON not read back: %s\n%s\n",
		    vlm_errmsg(), a);
		abort();
	}
	if (!(b = vlm_config_to_json_alloc(&d)))
		abort();
	if (strcmp(a, b) != 0) {
		fprintf(stderr, "config JSON round trip differs:\n%s\n%s\n", a,
		    b);
		abort();
	}
	free(a);
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vlm_config c;
	struct vlm_model m;
	char *text, *p, *end;

	if (size < 1)
		return 0;
	vlm_config_preset(&c, presets[data[0] % 5]);
	text = fuzz_str(data + 1, size - 1);
	end = text + size - 1;
	if (vlm_config_from_json(&c, text) < 0)
		goto out;
	for (p = text + strlen(text) + 1; p < end; p += strlen(p) + 1)
		if (vlm_config_set(&c, p) < 0)
			goto out;
	round_trip(&c);
	if (vlm_config_check(&c) < 0)
		goto out;
	vlm_config_image_tokens(&c);
	for (int l = 0; l < 64; l++)
		vlm_config_is_moe(&c, l % 2, l);
	if (small(&c) && vlm_model_init(&m, &c) == 0) {
		vlm_model_active_params(&m);
		vlm_model_flops(&m, 0, 0);
		vlm_model_flops(&m, 1, 1);
		for (int i = 0; i < m.nparams; i++)
			if (vlm_model_param(&m, m.params[i].name) !=
			    &m.params[i])
				abort();
		vlm_model_release(&m);
	}
out:
	free(text);
	return 0;
}
