/*
 * config.h - sm-schedule's input: sites.yaml or NDJSON target records,
 * parsed, substituted and validated into target records ready to emit.
 */
#ifndef SM_SCHEDULE_CONFIG_H
#define SM_SCHEDULE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Used when neither the target nor defaults give an interval. */
#define CONFIG_DEFAULT_INTERVAL_MS 60000
#define CONFIG_MIN_INTERVAL_MS 100
#define CONFIG_MAX_INTERVAL_MS (31LL * 24 * 3600 * 1000)

/* Limits applied while sites.yaml is read, before anything is built from
 * it (sites.yaml(5), LIMITS). */
#define CONFIG_MAX_BYTES (256 << 20)  /* the file */
#define CONFIG_MAX_DEPTH 64           /* nested collections */
#define CONFIG_MAX_ALIASED 1000000    /* values reached through aliases */
#define CONFIG_MAX_TARGETS 1000000
/* A target's record with its scheduled_at: sm-check reads lines of up to
 * SM_MAX_LINE bytes, and each result carries the target's name, url and
 * labels on through Kafka (whose default message limit is 1 MB). */
#define CONFIG_MAX_RECORD (64 << 10)

enum config_format { CONFIG_YAML, CONFIG_NDJSON };

struct config_target {
	char *name;          /* the record's "target" */
	char *json;          /* target_to_json() of the validated target,
	                        compact, without its closing brace (the
	                        scheduler appends scheduled_at) */
	size_t json_len;
	int64_t interval_ms;
	int64_t timeout_ms;
	uint64_t hash;       /* sched_hash(name) */
	unsigned long line;  /* where the target is defined */
	json_t *alerts;      /* sm-alert's rules (alerts.h), or NULL */
	double slo;          /* sm-report's objective, a percentage, or 0 */
};

struct config {
	char *path;
	struct config_target *v; /* in input order */
	size_t n, cap;
};

/* Reads and validates path ("-" is stdin for NDJSON).  On any error prints
 * every error found as "prog: error: FILE:LINE:COLUMN: message" on stderr
 * and returns NULL. */
struct config *config_load(const char *path, enum config_format fmt);
void config_free(struct config **c);

/* "30s", "5m", "1h30m" style, for messages and summaries. */
void config_format_duration(int64_t ms, char *buf, size_t len);

#endif
