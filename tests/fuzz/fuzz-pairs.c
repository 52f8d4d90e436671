/*
 * fuzz-pairs.c - an image-caption pairs file (vlm_pairs_load): the
 * first byte picks the separator (TAB: literal fields; ',' or ';':
 * RFC 4180 quoting), the rest is the file. Checks what it returns
 * against its own contract.
 */
#include "fuzz.h"

static const char seps[] = { '\t', ',', ';' };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vlm_pairs_opts o = { NULL, NULL, 0 };
	struct vlm_pairs p;
	const char *path;

	if (size < 1)
		return 0;
	o.sep = seps[data[0] % 3];
	path = fuzz_file("pairs.csv", data + 1, size - 1);
	if (vlm_pairs_load(&p, path, &o) < 0)
		return 0;
	for (int i = 0; i < p.n; i++)
		if (p.image_id[i] < 0 || p.image_id[i] >= p.nimages ||
		    !p.paths[i][0] || strcmp(p.paths[i],
		    p.paths[p.image_row[p.image_id[i]]]) != 0)
			abort();
	for (int i = 0; i < p.nbadmsg; i++)
		if (!strstr(p.bad[i], "pairs.csv:"))
			abort();
	vlm_pairs_release(&p);
	return 0;
}
