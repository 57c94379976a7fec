/*
 * out.c - the report as a terminal table (100 columns), JSON, CSV and
 * OpenMetrics (for node_exporter's textfile collector).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sm.h"
#include "report.h"

void
fmt_span(char *buf, size_t len, double s)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s < 60)
		snprintf(buf, len, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else if (s < 86400)
		snprintf(buf, len, "%dh%02dm", (int)(s / 3600),
		         (int)fmod(s, 3600) / 60);
	else
		snprintf(buf, len, "%dd%02dh", (int)(s / 86400),
		         (int)fmod(s, 86400) / 3600);
}

void
fmt_ms(char *buf, size_t len, double ms)
{
	if (ms < 0)
		snprintf(buf, len, "-");
	else if (ms < 10)
		snprintf(buf, len, "%.1fms", ms);
	else if (ms < 1000)
		snprintf(buf, len, "%.0fms", ms);
	else
		snprintf(buf, len, "%.2fs", ms / 1000);
}

void
fmt_minute(char *buf, size_t len, int64_t ms)
{
	char t[TIME_STR_LEN];

	time_format_ms(ms, t);
	/* 2026-11-23T22:47:01.000Z -> 2026-11-23 22:47Z */
	snprintf(buf, len, "%.10s %.5sZ", t, t + 11);
}

static void
fmt_pct(char *buf, size_t len, double ratio)
{
	if (ratio < 0)
		snprintf(buf, len, "-");
	else if (ratio >= 1)
		snprintf(buf, len, "100%%");
	else /* never rounded up to 100% */
		snprintf(buf, len, "%.3f%%", floor(ratio * 100000) / 1000);
}

static void
fmt_days_left(char *buf, size_t len, int64_t at, int64_t now)
{
	if (at == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%lldd",
		         (long long)floor((double)(at - now) / 86400000.0));
}

/* The earlier of the leaf's and the chain's expiry (0: unknown). */
static int64_t
cert_expiry(const struct rtarget *t)
{
	if (t->cert_ms && t->chain_ms)
		return t->cert_ms < t->chain_ms ? t->cert_ms : t->chain_ms;
	return t->cert_ms ? t->cert_ms : t->chain_ms;
}

void
out_text(FILE *f, const struct report *r)
{
	char since[32], until[32];
	size_t i;

	fmt_minute(since, sizeof since, r->since_ms);
	fmt_minute(until, sizeof until, r->until_ms);
	fprintf(f, "sitemon report %s .. %s, %zu target%s, worst first\n",
	        since, until, r->n, r->n == 1 ? "" : "s");
	/* 17+1+4+1+11+1+7+1+7+1+6+1+6+1+6+1+3+1+6+1+6+1+4+1+5 = 100 */
	fprintf(f, "%-17s %-4s %-11s %7s %7s %6s %6s %6s %3s %6s %6s %4s %5s\n",
	        "TARGET", "NOW", "SINCE (UTC)", "UP-TIME", "UP-CHKS", "P50",
	        "P95", "P99", "OUT", "MTTR", "LONG", "CERT", "BUDGT");
	for (i = 0; i < r->n; i++) {
		const struct rtarget *t = &r->targets[i];
		char name[18], sn[32], ut[16], uc[16], p50[16], p95[16], p99[16];
		char mttr[16], lng[16], cert[16], budget[16];

		snprintf(name, sizeof name, "%s", t->name);
		if (strlen(t->name) > 17)
			memcpy(name + 14, "...", 4);
		if (t->since_ms) {
			fmt_minute(sn, sizeof sn, t->since_ms);
			/* "2026-11-23 22:47Z" -> "11-23 22:47" */
			memmove(sn, sn + 5, 11);
			sn[11] = '\0';
		} else
			snprintf(sn, sizeof sn, "-");
		fmt_pct(ut, sizeof ut, t->uptime_time);
		fmt_pct(uc, sizeof uc, t->uptime_checks);
		fmt_ms(p50, sizeof p50, t->p50);
		fmt_ms(p95, sizeof p95, t->p95);
		fmt_ms(p99, sizeof p99, t->p99);
		fmt_span(mttr, sizeof mttr, t->mttr_s);
		fmt_span(lng, sizeof lng, t->longest_s);
		fmt_days_left(cert, sizeof cert, cert_expiry(t), r->now_ms);
		if (t->slo > 0)
			snprintf(budget, sizeof budget, "%.0f%%",
			         t->budget_left * 100);
		else
			snprintf(budget, sizeof budget, "-");
		fprintf(f, "%-17s %-4s %-11s %7s %7s %6s %6s %6s %3lld %6s %6s "
		        "%4s %5s\n", name, !t->known ? "?" : t->up ? "up" : "DOWN",
		        sn, ut, uc, p50, p95, p99, t->outages_in_window, mttr, lng,
		        cert, budget);
	}
}

static json_t *
time_or_null(int64_t ms)
{
	char t[TIME_STR_LEN];

	if (ms == 0)
		return json_null();
	time_format_ms(ms, t);
	return json_string(t);
}

static json_t *
num_or_null(double v)
{
	return v < 0 || isnan(v) ? json_null() : json_real(v);
}

void
out_json(FILE *f, const struct report *r)
{
	json_t *root = json_object(), *arr = json_array();
	size_t i, j;

	json_object_set_new(root, "v", json_integer(1));
	json_object_set_new(root, "generated_at", time_or_null(r->now_ms));
	json_object_set_new(root, "since", time_or_null(r->since_ms));
	json_object_set_new(root, "until", time_or_null(r->until_ms));
	for (i = 0; i < r->n; i++) {
		const struct rtarget *t = &r->targets[i];
		json_t *o = json_object(), *outs = json_array(), *errs = json_object();

		json_object_set_new(o, "target", json_string(t->name));
		json_object_set_new(o, "url", json_string(t->url));
		json_object_set_new(o, "labels", t->labels ? json_incref(t->labels)
		                                           : json_object());
		json_object_set_new(o, "state", json_string(t->up ? "up" : "down"));
		json_object_set_new(o, "since", time_or_null(t->since_ms));
		json_object_set_new(o, "last_checked_at",
		                    time_or_null(t->last_checked_ms));
		json_object_set_new(o, "checks", json_integer(t->checks));
		json_object_set_new(o, "ok_checks", json_integer(t->ok));
		json_object_set_new(o, "uptime_by_time", num_or_null(t->uptime_time));
		json_object_set_new(o, "uptime_by_checks",
		                    num_or_null(t->uptime_checks));
		json_object_set_new(o, "p50_ms", num_or_null(t->p50));
		json_object_set_new(o, "p95_ms", num_or_null(t->p95));
		json_object_set_new(o, "p99_ms", num_or_null(t->p99));
		json_object_set_new(o, "bytes", json_integer(t->bytes));
		for (j = 1; j <= ERR_OTHER; j++)
			if (t->errors[j] > 0)
				json_object_set_new(errs,
				    error_kind_name((enum error_kind)j),
				    json_integer(t->errors[j]));
		json_object_set_new(o, "errors", errs);
		json_object_set_new(o, "outage_count",
		                    json_integer(t->outages_in_window));
		json_object_set_new(o, "mttr_s", num_or_null(t->mttr_s));
		json_object_set_new(o, "longest_outage_s", num_or_null(t->longest_s));
		for (j = 0; j < t->n_outages; j++) {
			const struct outage *ou = &t->outages[j];
			json_t *x = json_object();
			int64_t end = ou->end_ms ? ou->end_ms : r->now_ms;

			json_object_set_new(x, "probe", json_string(ou->probe));
			json_object_set_new(x, "start", time_or_null(ou->start_ms));
			json_object_set_new(x, "end", time_or_null(ou->end_ms));
			json_object_set_new(x, "length_s",
			    json_real((double)(end - ou->start_ms) / 1000.0));
			json_object_set_new(x, "error_kind",
			                    json_string(ou->error_kind));
			json_object_set_new(x, "error", json_string(ou->error));
			json_array_append_new(outs, x);
		}
		json_object_set_new(o, "outages", outs);
		json_object_set_new(o, "cert_not_after", time_or_null(t->cert_ms));
		json_object_set_new(o, "chain_not_after", time_or_null(t->chain_ms));
		json_object_set_new(o, "slo", t->slo > 0 ? json_real(t->slo)
		                                         : json_null());
		json_object_set_new(o, "error_budget_left",
		                    t->slo > 0 ? json_real(t->budget_left)
		                               : json_null());
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "targets", arr);
	json_dumpf(root, f, JSON_COMPACT | JSON_REAL_PRECISION(10));
	fputc('\n', f);
	json_decref(root);
}

/* A CSV field: quoted when it must be (RFC 4180). */
static void
csv_field(FILE *f, const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n") != NULL) {
		fputc('"', f);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else {
		fputs(s, f);
	}
	fputs(last ? "\r\n" : ",", f);
}

static void
csv_num(FILE *f, double v)
{
	if (v < 0 || isnan(v))
		fputc(',', f);
	else
		fprintf(f, "%.6g,", v);
}

static void
csv_time(FILE *f, int64_t ms, bool last)
{
	char t[TIME_STR_LEN];

	if (ms)
		time_format_ms(ms, t);
	else
		t[0] = '\0';
	csv_field(f, t, last);
}

void
out_csv(FILE *f, const struct report *r)
{
	size_t i;

	fputs("target,url,state,since,checks,ok_checks,uptime_by_time,"
	      "uptime_by_checks,p50_ms,p95_ms,p99_ms,outages,mttr_s,"
	      "longest_outage_s,slo,error_budget_left,cert_not_after,"
	      "chain_not_after\r\n", f);
	for (i = 0; i < r->n; i++) {
		const struct rtarget *t = &r->targets[i];

		csv_field(f, t->name, false);
		csv_field(f, t->url, false);
		csv_field(f, t->up ? "up" : "down", false);
		csv_time(f, t->since_ms, false);
		fprintf(f, "%lld,%lld,", t->checks, t->ok);
		csv_num(f, t->uptime_time);
		csv_num(f, t->uptime_checks);
		csv_num(f, t->p50);
		csv_num(f, t->p95);
		csv_num(f, t->p99);
		fprintf(f, "%lld,", t->outages_in_window);
		csv_num(f, t->mttr_s);
		csv_num(f, t->longest_s);
		csv_num(f, t->slo > 0 ? t->slo : -1);
		if (t->slo > 0)
			fprintf(f, "%.6g,", t->budget_left);
		else
			fputc(',', f);
		csv_time(f, t->cert_ms, false);
		csv_time(f, t->chain_ms, true);
	}
}

/* A label value, escaped as the exposition formats want. */
static void
om_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void
om_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
om_sample(FILE *f, const char *name, const struct rtarget *t,
          const char *extra, double v)
{
	if (v < 0 || isnan(v))
		return;
	fprintf(f, "%s{target=\"", name);
	om_label(f, t->name);
	fprintf(f, "\"%s} %.10g\n", extra ? extra : "", v);
}

void
out_openmetrics(FILE *f, const struct report *r)
{
	static const struct {
		const char *name, *type, *help;
	} m[] = {
		{ "sitemon_up", "gauge", "Whether the target's last check was ok." },
		{ "sitemon_state_since_timestamp_seconds", "gauge",
		  "When the target's current up or down state began." },
		{ "sitemon_uptime_ratio", "gauge",
		  "Uptime over the report window, by time and by checks." },
		{ "sitemon_checks", "gauge", "Checks in the report window." },
		{ "sitemon_duration_percentile_seconds", "gauge",
		  "Check duration percentiles over the report window, from the "
		  "rollups' histogram (within 9.1%)." },
		{ "sitemon_outages", "gauge", "Outages in the report window." },
		{ "sitemon_mttr_seconds", "gauge",
		  "Mean length of the outages that ended in the window." },
		{ "sitemon_longest_outage_seconds", "gauge",
		  "Longest outage in the report window." },
		{ "sitemon_cert_expiry_timestamp_seconds", "gauge",
		  "When the leaf certificate, or the earliest in the chain, expires." },
		{ "sitemon_error_budget_remaining_ratio", "gauge",
		  "Share of the SLO's error budget left over the window." },
	};
	size_t i, k;

	for (k = 0; k < sizeof m / sizeof m[0]; k++) {
		om_head(f, m[k].name, m[k].type, m[k].help);
		for (i = 0; i < r->n; i++) {
			const struct rtarget *t = &r->targets[i];

			switch (k) {
			case 0: om_sample(f, m[k].name, t, NULL, t->up); break;
			case 1:
				if (t->since_ms)
					om_sample(f, m[k].name, t, NULL,
					          (double)t->since_ms / 1000.0);
				break;
			case 2:
				om_sample(f, m[k].name, t, ",basis=\"time\"",
				          t->uptime_time);
				om_sample(f, m[k].name, t, ",basis=\"checks\"",
				          t->uptime_checks);
				break;
			case 3:
				om_sample(f, m[k].name, t, ",result=\"ok\"",
				          (double)t->ok);
				om_sample(f, m[k].name, t, ",result=\"failed\"",
				          (double)(t->checks - t->ok));
				break;
			case 4:
				om_sample(f, m[k].name, t, ",percentile=\"50\"",
				          t->p50 < 0 ? -1 : t->p50 / 1000);
				om_sample(f, m[k].name, t, ",percentile=\"95\"",
				          t->p95 < 0 ? -1 : t->p95 / 1000);
				om_sample(f, m[k].name, t, ",percentile=\"99\"",
				          t->p99 < 0 ? -1 : t->p99 / 1000);
				break;
			case 5:
				om_sample(f, m[k].name, t, NULL,
				          (double)t->outages_in_window);
				break;
			case 6: om_sample(f, m[k].name, t, NULL, t->mttr_s); break;
			case 7: om_sample(f, m[k].name, t, NULL, t->longest_s); break;
			case 8:
				if (t->cert_ms)
					om_sample(f, m[k].name, t, ",cert=\"leaf\"",
					          (double)t->cert_ms / 1000.0);
				if (t->chain_ms)
					om_sample(f, m[k].name, t, ",cert=\"chain\"",
					          (double)t->chain_ms / 1000.0);
				break;
			case 9:
				if (t->slo > 0)
					om_sample(f, m[k].name, t, NULL,
					          t->budget_left < 0 ? 0
					                             : t->budget_left);
				break;
			}
		}
	}
	fputs("# EOF\n", f);
}
