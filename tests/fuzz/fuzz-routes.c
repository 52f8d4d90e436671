/*
 * fuzz-routes.c - a routing-record stream (vlm-routes(5)) on arbitrary
 * bytes, read as vlm-route-stats reads it: metadata, classes, batches,
 * end; statistics of every batch, a summary of every layer and
 * modality, top classes, and the stream diffed against itself.
 */
#include "fuzz.h"

/* Summaries and top classes of everything s holds. */
static void
summarize(const struct vlm_route_stats *s)
{
	struct vlm_route_summary sum;
	int top[3];
	double frac[3];

	for (int l = 0; l < s->nlayers; l++) {
		for (int mod = 0; mod < 3; mod++)
			if (vlm_route_summarize(s, l, mod, &sum) == 0)
				vlm_route_summary_release(&sum);
		for (int e = 0; e < s->E; e++)
			vlm_route_top_classes(s, l, e, top, frac, 3);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *fa = fuzz_stream(data, size), *fb = fuzz_stream(data, size);
	struct vlm_routes_reader a, b;
	struct vlm_route_stats sa, sb;
	struct vlm_route_diff d;
	int ok = 0;

	if (vlm_routes_reader_init(&a, fa, "a.routes") < 0)
		goto out;
	if (vlm_routes_reader_init(&b, fb, "b.routes") < 0)
		goto out_a;
	if (vlm_route_stats_init(&sa, &a) < 0)
		goto out_b;
	if (vlm_route_stats_init(&sb, &b) < 0)
		goto out_sa;
	if (vlm_route_diff_init(&d, &sa, &sb) < 0)
		goto out_sb;
	while (vlm_routes_reader_next(&a) > 0 &&
	    vlm_routes_reader_next(&b) > 0) {
		if (vlm_route_stats_add(&sa, &a) < 0)
			break;
		vlm_route_diff_add(&d, &a, &b);
		ok = 1;
	}
	if (ok)
		summarize(&sa);
	vlm_route_diff_release(&d);
out_sb:
	vlm_route_stats_release(&sb);
out_sa:
	vlm_route_stats_release(&sa);
out_b:
	vlm_routes_reader_release(&b);
out_a:
	vlm_routes_reader_release(&a);
out:
	fclose(fa);
	fclose(fb);
	return 0;
}
