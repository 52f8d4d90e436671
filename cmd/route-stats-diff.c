/*
 * route-stats-diff.c - vlm-route-stats --diff A B: how routing changed
 * from A to B per layer and modality: the total variation distance
 * between the two expert shares, the changes of drop rate, effective
 * experts, entropy and balance, each expert's share before and after,
 * and, when both streams hold the same inputs in the same order, the
 * fraction of tokens whose first choice stayed the same. The two
 * streams are read in step, batch by batch.
 */
#include <err.h>
#include <math.h>
#include <stdio.h>

#include "route-stats.h"
#include "base/base.h"

static const char *const mod_names[] = { "image", "text", "all" };

double
rs_share_tv(const struct vlm_route_summary *a,
    const struct vlm_route_summary *b, int E)
{
	double tv = 0;

	for (int e = 0; e < E; e++)
		tv += fabs((isnan(a->share[e]) ? 0 : a->share[e]) -
		    (isnan(b->share[e]) ? 0 : b->share[e]));
	return tv / 2;
}

double
rs_agree(const struct vlm_route_diff *d, int l, int m)
{
	int64_t same = 0, total = 0;

	for (int i = 0; i < 2; i++)
		if (m == 2 || m == i) {
			same += d->same[l * 2 + i];
			total += d->total[l * 2 + i];
		}
	return d->aligned && total > 0 ? (double)same / total : NAN;
}

/* One layer and modality: a summary line (tsv 0) or TSV rows. */
static void
diff_rows(const struct vlm_route_summary *a, const struct vlm_route_summary *b,
    const struct vlm_route_stats *s, const struct vlm_route_diff *d, int l,
    int m, int tsv)
{
	double tv = rs_share_tv(a, b, s->E), ag = rs_agree(d, l, m);

	if (!tsv) {
		printf("%-8s %9lld %9lld", mod_names[m], (long long)a->tokens,
		    (long long)b->tokens);
		rs_num(8, 4, tv), rs_num(10, 4, b->drop_tokens - a->drop_tokens);
		rs_num(9, 3, b->eff_experts - a->eff_experts);
		rs_num(9, 4, b->entropy - a->entropy);
		rs_num(9, 4, b->load_cv2 - a->load_cv2), rs_num(7, 4, ag);
		putchar('\n');
		return;
	}
	for (int e = 0; e < s->E; e++)
		printf("%d\t%s\t%s\t%d\t%.17g\t%.17g\t%.17g\t%.0f\t%.0f\t"
		    "%lld\t%lld\t%.17g\t%.17g\t%.17g\t%.17g\t%.17g\t%.17g\n", l,
		    s->layers[l].name, mod_names[m], e, a->share[e],
		    b->share[e], b->share[e] - a->share[e], a->kept[e],
		    b->kept[e], (long long)a->tokens, (long long)b->tokens, tv,
		    a->drop_tokens, b->drop_tokens, a->eff_experts,
		    b->eff_experts, ag);
}

/* Each expert's share in A and B. */
static void
expert_rows(const struct vlm_route_summary *a,
    const struct vlm_route_summary *b, int m, int E)
{
	for (int e = 0; e < E; e++) {
		printf("%-8s %6d", mod_names[m], e);
		rs_num(8, 4, a->share[e]), rs_num(8, 4, b->share[e]);
		rs_num(8, 4, b->share[e] - a->share[e]);
		printf(" %9.0f %9.0f\n", a->kept[e], b->kept[e]);
	}
}

/* The modalities of layer l in both streams (and "all"); count. */
static int
both_mods(const struct vlm_route_stats *a, const struct vlm_route_stats *b,
    int l, int *m)
{
	int k = 0;

	for (int i = 0; i < 2; i++)
		if (rs_has(a, l, i) && rs_has(b, l, i))
			m[k++] = i;
	if (k == 2)
		m[k++] = 2;
	return k;
}

/* Layer l as a table (pass 0: the summary lines, 1: experts) or TSV. */
static void
diff_layer(const struct vlm_route_stats *a, const struct vlm_route_stats *b,
    const struct vlm_route_diff *d, int l, int tsv, int pass)
{
	struct vlm_route_summary ua, ub;
	int m[3], k = both_mods(a, b, l, m);

	for (int i = 0; i < k; i++) {
		if (vlm_route_summarize(a, l, m[i], &ua) < 0)
			continue;
		if (vlm_route_summarize(b, l, m[i], &ub) == 0) {
			if (tsv || pass == 0)
				diff_rows(&ua, &ub, a, d, l, m[i], tsv);
			else
				expert_rows(&ua, &ub, m[i], a->E);
			vlm_route_summary_release(&ub);
		}
		vlm_route_summary_release(&ua);
	}
}

void
rs_print_diff(const struct vlm_route_stats *a,
    const struct vlm_route_stats *b, const struct vlm_route_diff *d,
    const struct rs_opts *o)
{
	char label[64];

	if (o->fmt == RS_JSON) {
		rs_diff_json(a, b, d, o);
		return;
	}
	if (o->fmt == RS_TSV)
		puts("layer\tname\tmodality\texpert\tshare_a\tshare_b\t"
		    "d_share\tkept_a\tkept_b\ttokens_a\ttokens_b\tshare_tv\t"
		    "drop_tokens_a\tdrop_tokens_b\teff_experts_a\t"
		    "eff_experts_b\tagree");
	else
		printf("# %lld and %lld batches; first choices %s\n",
		    (long long)a->batches, (long long)b->batches, d->aligned ?
		    "compared token by token" : "not comparable (other "
		    "inputs)");
	for (int l = 0; l < a->nlayers; l++) {
		if (o->layer >= 0 && o->layer != l)
			continue;
		if (o->fmt == RS_TSV) {
			diff_layer(a, b, d, l, 1, 0);
			continue;
		}
		rs_layer_label(label, sizeof(label), &a->layers[l]);
		printf("\nlayer %d: %s\n%-8s %9s %9s %8s %10s %9s %9s %9s "
		    "%7s\n", l, label, "modality", "tokens_a", "tokens_b",
		    "share_tv", "d_drop_tok", "d_eff_exp", "d_entropy",
		    "d_ld_cv2", "agree");
		diff_layer(a, b, d, l, 0, 0);
		printf("\n%-8s %6s %8s %8s %8s %9s %9s\n", "modality",
		    "expert", "share_a", "share_b", "d_share", "kept_a",
		    "kept_b");
		diff_layer(a, b, d, l, 0, 1);
	}
}

/* Read a and b in step: statistics of each and the token-level diff. */
static int
read_pair(FILE *fa, const char *na, FILE *fb, const char *nb, int partial,
    struct vlm_route_stats *s, struct vlm_route_diff *d)
{
	struct vlm_routes_reader r[2];
	int rc[2] = { 1, 1 }, bad = 0;

	if (vlm_routes_reader_init(&r[0], fa, na) < 0)
		errx(1, "%s", vlm_errmsg());
	if (vlm_routes_reader_init(&r[1], fb, nb) < 0)
		errx(1, "%s", vlm_errmsg());
	if (vlm_route_stats_init(&s[0], &r[0]) < 0 ||
	    vlm_route_stats_init(&s[1], &r[1]) < 0 ||
	    vlm_route_diff_init(d, &s[0], &s[1]) < 0)
		errx(1, "%s", vlm_errmsg());
	while (rc[0] == 1 || rc[1] == 1) {
		for (int i = 0; i < 2; i++) {
			if (rc[i] != 1)
				continue;
			if ((rc[i] = vlm_routes_reader_next(&r[i])) == 1 &&
			    vlm_route_stats_add(&s[i], &r[i]) < 0)
				rc[i] = -1;
			if (rc[i] < 0) {
				warnx("%s", vlm_errmsg());
				bad = 1;
			}
		}
		if (rc[0] == 1 && rc[1] == 1)
			vlm_route_diff_add(d, &r[0], &r[1]);
		else
			d->aligned &= rc[0] == 0 && rc[1] == 0;
	}
	vlm_routes_reader_release(&r[0]);
	vlm_routes_reader_release(&r[1]);
	if (bad && !partial)
		return -1;
	if (bad)
		warnx("statistics of the complete batches follow");
	return 0;
}

/* --diff: read both streams, print how routing changed; exit status. */
int
rs_diff(const char *a, const char *b, int partial, const struct rs_opts *o)
{
	FILE *fa = rs_open(a), *fb = fa ? rs_open(b) : NULL;
	struct vlm_route_stats s[2];
	struct vlm_route_diff d;
	int rc;

	if (!fa || !fb || (fa == stdin && fb == stdin)) {
		if (fa == stdin && fb == stdin)
			warnx("only one of the two streams can be stdin");
		rs_close(fa);
		return 1;
	}
	rc = read_pair(fa, a, fb, b, partial, s, &d);
	if (rc == 0)
		rs_print_diff(&s[0], &s[1], &d, o);
	vlm_route_diff_release(&d);
	vlm_route_stats_release(&s[0]);
	vlm_route_stats_release(&s[1]);
	rs_close(fa);
	rs_close(fb);
	return rc < 0;
}
