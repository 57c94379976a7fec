/*
 * report.h - sm-report's pieces: the figures per target (main.c reads
 * them from PostgreSQL), their output formats (out.c: text, json, csv,
 * openmetrics; html.c: the status page), SHA-256 for the page's CSP hash
 * (sha256.c) and the sites.yaml slo: reader (slo.c).
 */
#ifndef REPORT_H
#define REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* The duration histogram of the rollups (sm-pg-write's rollup.c):
 * HIST_BOUNDS upper bounds in microseconds, HIST_BOUNDS + 1 buckets. */
#define HIST_BOUNDS 72
#define HIST_BUCKETS (HIST_BOUNDS + 1)
#define N_DAYS 90      /* the status page's daily bars */
#define N_HOURS 24     /* its hourly response-time chart */
#define N_CHART_DAYS 30 /* its daily response-time chart */

struct hist {
	long long n[HIST_BUCKETS];
	long long total;
	double min, max; /* of the durations counted (min > max: none) */
};

struct outage {
	char *probe;
	int64_t start_ms, end_ms; /* end_ms 0: open */
	char *error_kind, *error;
};

struct location {
	char *probe;
	int64_t first_ms; /* its first check in the window */
	/* Its last check with a certificate in the last hours (at
	 * cert_last_ms; INT64_MIN: none): the leaf's and the chain's
	 * expiry. */
	int64_t cert_last_ms, cert_ms, chain_ms;
};

struct rtarget {
	char *name, *url;
	json_t *labels; /* object or NULL */
	bool known;     /* in the targets table */
	bool up;
	int64_t last_checked_ms, since_ms;
	long long checks, ok, bytes;
	long long errors[16]; /* per error kind, lib's enum order */
	struct hist hist;
	struct location *locs;
	size_t n_locs;
	struct outage *outages;
	size_t n_outages;
	double uptime_time, uptime_checks; /* 0..1; < 0: no data */
	double p50, p95, p99;              /* ms; < 0: no data */
	long long outages_in_window;
	double mttr_s, longest_s;          /* < 0: none */
	int64_t cert_ms, chain_ms;         /* 0: unknown */
	double slo;                        /* percent; 0: none */
	double budget_left;                /* ratio of the budget left */
	/* html: per day (oldest first) checks and ok, and the charts. */
	long long day_checks[N_DAYS], day_ok[N_DAYS];
	struct hist hour_hist[N_HOURS];
	struct hist day_hist[N_CHART_DAYS];
};

struct report {
	int64_t now_ms, since_ms, until_ms; /* the window, whole hours */
	int64_t day0_ms;                    /* the first bar's day */
	int64_t hour0_ms;                   /* the first chart hour */
	int64_t chart_day0_ms;              /* the first chart day; 0: none */
	struct rtarget *targets;
	size_t n;
	const char *group_by; /* label to group the page by, or NULL */
	const char *title;
	int64_t cert_warn_ms; /* certificates expiring sooner are listed */
};

/* Percentile p (0..100) of h, in ms: the bucket of the nearest-rank
 * sample, as the geometric middle of its bounds, kept within min..max;
 * -1 when h is empty. */
double hist_percentile(const struct hist *h, double p);
void hist_add(struct hist *h, int bucket, long long n);

/* out.c */
void out_text(FILE *f, const struct report *r);
void out_json(FILE *f, const struct report *r);
void out_csv(FILE *f, const struct report *r);
void out_openmetrics(FILE *f, const struct report *r);
/* Durations for people: "850ms", "1.2s", "3m05s", "2h14m", "3d04h". */
void fmt_span(char *buf, size_t len, double seconds);
void fmt_ms(char *buf, size_t len, double ms);
/* "2026-11-23 22:47Z" */
void fmt_minute(char *buf, size_t len, int64_t ms);

/* html.c */
void out_html(FILE *f, const struct report *r);

/* sha256.c: the digest of data[0..len), in base64 (44 chars + NUL). */
void sha256_base64(const void *data, size_t len, char out[45]);

/* Order of targets by name (main.c). */
int target_name_cmp(const struct rtarget *a, const struct rtarget *b);

/* slo.c: the slo: of each target of a sites.yaml read by sm-schedule's
 * loader (config_load), set on the report's targets of the same name. */
struct config;
void slo_apply(const struct config *cfg, struct report *r);

#endif
