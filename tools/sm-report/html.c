/*
 * html.c - the status page: one self-contained HTML file.  No script, no
 * external resource; the one <style> element is allowed by its SHA-256 in
 * the page's own Content-Security-Policy (default-src 'none'), so a server
 * may send that same policy as a header.  Charts and bars are inline SVG
 * with presentation attributes and classes (no style attributes), the
 * tooltips are SVG <title> text.  State is given in words and symbols, not
 * only colour; bars differ in height as well as colour.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"
#include "report.h"

static const char css[] =
	":root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--mute:#57606a;"
	"--line:#d0d7de;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--none:#d0d7de;"
	"--p50:#0969da;--p95:#8250df}\n"
	"@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;"
	"--mute:#9198a1;--line:#30363d;--ok:#3fb950;--warn:#d29922;"
	"--bad:#f85149;--none:#30363d;--p50:#58a6ff;--p95:#bc8cff}}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0 auto;max-width:960px;padding:12px;background:var(--bg);"
	"color:var(--fg);font:15px/1.45 system-ui,-apple-system,'Segoe UI',"
	"sans-serif;overflow-wrap:anywhere}\n"
	"h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em;"
	"border-bottom:1px solid var(--line)}\n"
	".mute,.since,.figs{color:var(--mute)}\n"
	"ul.targets,ul.events{list-style:none;margin:0;padding:0}\n"
	"li.target{padding:8px 0;border-bottom:1px solid var(--line)}\n"
	".head{display:flex;flex-wrap:wrap;gap:.2em .6em;align-items:baseline}\n"
	".name{font-weight:600}\n"
	".state{font-weight:700;white-space:nowrap}\n"
	".state.up{color:var(--ok)}.state.down{color:var(--bad)}\n"
	"svg{display:block;max-width:100%;height:auto}\n"
	"svg.bars{margin:4px 0}\n"
	".b-ok{fill:var(--ok)}.b-warn{fill:var(--warn)}.b-bad{fill:var(--bad)}"
	".b-none{fill:var(--none)}\n"
	".chart .p50{stroke:var(--p50);fill:none;stroke-width:1.5}"
	".chart .p95{stroke:var(--p95);fill:none;stroke-width:1.5;"
	"stroke-dasharray:4 3}.chart .axis{stroke:var(--line)}"
	".chart text{fill:var(--mute);font-size:10px}\n"
	".charts{display:flex;flex-wrap:wrap;gap:12px}"
	".charts figure{margin:0;flex:1 1 260px;min-width:0}"
	".charts figcaption{font-size:.85em;color:var(--mute)}\n"
	"details summary{cursor:pointer;color:var(--mute);font-size:.9em}\n"
	"ul.events li{padding:4px 0;border-bottom:1px solid var(--line)}\n";

/* Text for HTML content and attribute values. */
static void
h(FILE *f, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
}

static void
pct(char *buf, size_t len, double ratio)
{
	if (ratio < 0)
		snprintf(buf, len, "no data");
	else if (ratio >= 1)
		snprintf(buf, len, "100%%");
	else
		snprintf(buf, len, "%.3f%%", floor(ratio * 100000) / 1000);
}

static const char *
group_of(const struct report *r, const struct rtarget *t)
{
	json_t *v;

	if (r->group_by == NULL || t->labels == NULL)
		return NULL;
	v = json_object_get(t->labels, r->group_by);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void
bars(FILE *f, const struct report *r, const struct rtarget *t)
{
	/* The days' dates, made once for every target's bars. */
	static char days[N_DAYS][TIME_STR_LEN];
	static int64_t days_of = -1;
	int d;

	if (days_of != r->day0_ms) {
		for (d = 0; d < N_DAYS; d++) {
			time_format_ms(r->day0_ms + (int64_t)d * 86400000, days[d]);
			days[d][10] = '\0';
		}
		days_of = r->day0_ms;
	}
	fprintf(f, "<svg class=\"bars\" viewBox=\"0 0 %d 24\" width=\"%d\" "
	        "height=\"24\" role=\"img\" aria-label=\"daily uptime, last %d "
	        "days\">", N_DAYS * 5, N_DAYS * 5, N_DAYS);
	for (d = 0; d < N_DAYS; d++) {
		char p[32];
		long long c = t->day_checks[d], ok = t->day_ok[d];
		double ratio = c > 0 ? (double)ok / (double)c : -1;
		const char *cls = ratio < 0 ? "b-none" : ratio >= 0.999 ? "b-ok"
		                : ratio >= 0.99 ? "b-warn" : "b-bad";
		int height = ratio < 0 ? 8 : ratio >= 0.999 ? 24
		           : ratio >= 0.99 ? 18 : 12;

		fprintf(f, "<rect class=\"%s\" x=\"%d\" y=\"%d\" width=\"4\" "
		        "height=\"%d\"><title>%s: ", cls, d * 5, 24 - height,
		        height, days[d]);
		if (c > 0) {
			pct(p, sizeof p, ratio);
			fprintf(f, "%s up (%lld of %lld checks ok)", p, ok, c);
		} else {
			fputs("no data", f);
		}
		fputs("</title></rect>", f);
	}
	fputs("</svg>\n", f);
}

/* A p50/p95 chart of n histograms. */
static void
chart(FILE *f, const struct hist *hs, int n, const char *caption,
      const char *first, const char *last)
{
	double p50[N_DAYS], p95[N_DAYS], max = 0;
	int i, w = 300, ht = 80;
	char m[16];

	for (i = 0; i < n; i++) {
		p50[i] = hist_percentile(&hs[i], 50);
		p95[i] = hist_percentile(&hs[i], 95);
		if (p95[i] > max)
			max = p95[i];
	}
	fprintf(f, "<figure><svg class=\"chart\" viewBox=\"0 0 %d %d\" "
	        "width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"%s: "
	        "median and 95th percentile response time\">", w, ht + 14, w,
	        ht + 14, caption);
	fprintf(f, "<line class=\"axis\" x1=\"0\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
	        ht, w, ht);
	if (max > 0) {
		const double *series[2] = { p50, p95 };
		const char *cls[2] = { "p50", "p95" };
		int s;

		for (s = 0; s < 2; s++) {
			bool pen = false;

			fprintf(f, "<path class=\"%s\" d=\"", cls[s]);
			for (i = 0; i < n; i++) {
				double x, y;

				if (series[s][i] < 0) {
					pen = false;
					continue;
				}
				x = n > 1 ? (double)i * w / (n - 1) : w / 2.0;
				y = ht - series[s][i] / max * (ht - 4);
				fprintf(f, "%c%.1f %.1f", pen ? 'L' : 'M', x, y);
				pen = true;
			}
			fputs("\"/>", f);
		}
		fmt_ms(m, sizeof m, max);
		fprintf(f, "<text x=\"2\" y=\"10\">%s</text>", m);
	} else {
		fprintf(f, "<text x=\"2\" y=\"%d\">no data</text>", ht / 2);
	}
	fprintf(f, "<text x=\"0\" y=\"%d\">%s</text>", ht + 12, first);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>", w,
	        ht + 12, last);
	fprintf(f, "</svg><figcaption>%s: p50 (solid), p95 (dashed)"
	        "</figcaption></figure>", caption);
}

static void
target_row(FILE *f, const struct report *r, const struct rtarget *t)
{
	char since[32], len[16], up[32], p50[16], p95[16];

	fputs("<li class=\"target ", f);
	fputs(t->up ? "up" : "down", f);
	fputs("\" data-target=\"", f);
	h(f, t->name);
	fputs("\"><div class=\"head\">", f);
	fprintf(f, "<span class=\"state %s\">%s</span> <span class=\"name\">",
	        t->up ? "up" : "down", t->up ? "&#9650; Up" : "&#9660; Down");
	h(f, t->name);
	fputs("</span>", f);
	if (t->since_ms) {
		fmt_minute(since, sizeof since, t->since_ms);
		fmt_span(len, sizeof len,
		         (double)(r->now_ms - t->since_ms) / 1000.0);
		fprintf(f, " <span class=\"since\">since <time datetime=\"%s\">"
		        "%s</time> (%s)</span>", since, since, len);
	}
	fputs("</div>", f);
	pct(up, sizeof up, t->uptime_time);
	fmt_ms(p50, sizeof p50, t->p50);
	fmt_ms(p95, sizeof p95, t->p95);
	fprintf(f, "<div class=\"figs\">%s up &middot; p50 %s &middot; p95 %s",
	        up, p50, p95);
	if (t->outages_in_window > 0)
		fprintf(f, " &middot; %lld outage%s", t->outages_in_window,
		        t->outages_in_window == 1 ? "" : "s");
	fputs("</div>\n", f);
	bars(f, r, t);
	fputs("<details><summary>Response time</summary><div class=\"charts\">",
	      f);
	chart(f, t->hour_hist, N_HOURS, "Last 24 hours", "-24h", "now");
	chart(f, t->day_hist, N_CHART_DAYS, "Last 30 days", "-30d", "today");
	fputs("</div></details></li>\n", f);
}

static int
group_cmp(const void *pa, const void *pb)
{
	const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;

	return strcmp(a ? a : "\x7f", b ? b : "\x7f");
}

static void
outage_item(FILE *f, const struct report *r, const struct rtarget *t,
            const struct outage *o)
{
	char start[32], len[16];

	fmt_minute(start, sizeof start, o->start_ms);
	fmt_span(len, sizeof len,
	         (double)((o->end_ms ? o->end_ms : r->now_ms) - o->start_ms) /
	             1000.0);
	fputs("<li><span class=\"name\">", f);
	h(f, t->name);
	fputs("</span> ", f);
	if (o->probe[0]) {
		fputs("from ", f);
		h(f, o->probe);
		fputs(": ", f);
	}
	fprintf(f, "%s since %s, %s: ", o->end_ms ? "down" : "down", start, len);
	h(f, o->error_kind);
	if (o->error[0]) {
		fputs(" (", f);
		h(f, o->error);
		fputs(")", f);
	}
	if (o->end_ms) {
		char end[32];

		fmt_minute(end, sizeof end, o->end_ms);
		fprintf(f, ", ended %s", end);
	}
	fputs("</li>\n", f);
}

void
out_html(FILE *f, const struct report *r)
{
	char hash[45], now[32], since[32];
	const char **groups = xcalloc(r->n + 1, sizeof *groups);
	size_t i, j, n_groups = 0, down = 0, shown;

	sha256_base64(css, sizeof css - 1, hash);
	fmt_minute(now, sizeof now, r->now_ms);
	fmt_minute(since, sizeof since, r->since_ms);
	for (i = 0; i < r->n; i++)
		down += !r->targets[i].up;
	fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
	        "<meta charset=\"utf-8\">\n"
	        "<meta name=\"viewport\" content=\"width=device-width, "
	        "initial-scale=1\">\n"
	        "<meta http-equiv=\"Content-Security-Policy\" content=\""
	        "default-src 'none'; style-src 'sha256-%s'\">\n<title>", hash);
	h(f, r->title);
	fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<header><h1>",
	        css);
	h(f, r->title);
	fprintf(f, "</h1><p class=\"summary\">%s: %zu target%s, %zu up, "
	        "%zu down. <span class=\"mute\">Updated <time datetime=\"%s\">"
	        "%s</time>; uptime since %s.</span></p></header>\n<main>\n",
	        down ? "Some targets are down" : "All targets are up",
	        r->n, r->n == 1 ? "" : "s", r->n - down, down, now, now, since);

	/* Targets, by group (sorted by name; those without the label last),
	 * worst first within each. */
	for (i = 0; i < r->n; i++) {
		const char *g = group_of(r, &r->targets[i]);

		for (j = 0; j < n_groups; j++)
			if ((g == NULL && groups[j] == NULL) ||
			    (g && groups[j] && strcmp(g, groups[j]) == 0))
				break;
		if (j == n_groups)
			groups[n_groups++] = g;
	}
	qsort(groups, n_groups, sizeof *groups, group_cmp);
	for (j = 0; j < n_groups; j++) {
		fputs("<section class=\"group\"><h2>", f);
		if (r->group_by == NULL)
			fputs("Targets", f);
		else if (groups[j] == NULL)
			fputs("Other", f);
		else
			h(f, groups[j]);
		fputs("</h2>\n<ul class=\"targets\">\n", f);
		for (i = 0; i < r->n; i++) {
			const char *g = group_of(r, &r->targets[i]);

			if ((g == NULL) != (groups[j] == NULL) ||
			    (g && strcmp(g, groups[j]) != 0))
				continue;
			target_row(f, r, &r->targets[i]);
		}
		fputs("</ul></section>\n", f);
	}
	free(groups);

	fputs("<section><h2>Open outages</h2><ul class=\"events open\">\n", f);
	shown = 0;
	for (i = 0; i < r->n; i++)
		for (j = 0; j < r->targets[i].n_outages; j++)
			if (r->targets[i].outages[j].end_ms == 0) {
				outage_item(f, r, &r->targets[i],
				            &r->targets[i].outages[j]);
				shown++;
			}
	if (shown == 0)
		fputs("<li class=\"mute\">None.</li>\n", f);
	fputs("</ul></section>\n", f);

	fputs("<section><h2>Recent outages</h2><ul class=\"events recent\">\n",
	      f);
	shown = 0;
	for (i = 0; i < r->n; i++)
		for (j = 0; j < r->targets[i].n_outages; j++) {
			const struct outage *o = &r->targets[i].outages[j];

			if (o->end_ms != 0 &&
			    o->end_ms >= r->now_ms - INT64_C(7) * 86400000 &&
			    shown < 50) {
				outage_item(f, r, &r->targets[i], o);
				shown++;
			}
		}
	if (shown == 0)
		fputs("<li class=\"mute\">None in the last 7 days.</li>\n", f);
	fputs("</ul></section>\n", f);

	fputs("<section><h2>Certificates expiring soon</h2>"
	      "<ul class=\"events certs\">\n", f);
	shown = 0;
	for (i = 0; i < r->n; i++) {
		const struct rtarget *t = &r->targets[i];
		int64_t at = t->cert_ms;
		const char *which = "certificate";
		char when[32];

		if (t->chain_ms && (at == 0 || t->chain_ms < at)) {
			at = t->chain_ms;
			which = "chain certificate";
		}
		if (at == 0 || at > r->now_ms + r->cert_warn_ms)
			continue;
		fmt_minute(when, sizeof when, at);
		fputs("<li><span class=\"name\">", f);
		h(f, t->name);
		fprintf(f, "</span>: %s %s %s (%.0f days)</li>\n", which,
		        at < r->now_ms ? "expired" : "expires", when,
		        floor((double)(at - r->now_ms) / 86400000.0));
		shown++;
	}
	if (shown == 0)
		fputs("<li class=\"mute\">None.</li>\n", f);
	fputs("</ul></section>\n</main>\n</body>\n</html>\n", f);
}
