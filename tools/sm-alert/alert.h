/*
 * alert.h - sm-alert's parts: rules (sites.yaml's alerts), the engine
 * (state per target and location, decisions, events), the checkpoint
 * (state and outbox on disk) and the input scanner.
 */
#ifndef SM_ALERT_H
#define SM_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define MAX_LOCATIONS 64
#define FLAP_RING 16
#define SLOW_RING 32

/* ---- rules.c ------------------------------------------------------------ */

struct mwin {
	int64_t start_ms, end_ms; /* one-off: both > 0 */
	int days;                 /* recurring: bit 0 = Sunday */
	int at_min;               /* minutes after local midnight */
	int64_t dur_ms;
	char tz[64];              /* "" = UTC */
};

struct rules {
	bool off;                 /* alerts: false */
	int fail_thr, ok_thr;
	int quorum;               /* 0: majority of the locations reporting */
	int64_t stale_ms;         /* 0: 3 x interval */
	int64_t remind_ms;        /* 0: off */
	int cert_days;            /* 0: off */
	double cert_frac;         /* 0: off */
	int64_t slow_ms, slow_window_ms;
	int flap_changes;         /* 0: off */
	int64_t flap_window_ms;
	struct mwin *win;
	size_t nwin;
	/* maintenance cache: the answer holds for [cache_lo, cache_hi) */
	int64_t cache_lo, cache_hi;
	bool cache_in;
	char *key;                /* the JSON it was made from (interning) */
};

/* Rules from a target's merged alerts JSON (NULL: all defaults); equal
 * JSON gives the same object (many targets share the defaults). */
struct rules *rules_get(const json_t *alerts);
void rules_free_all(void);
/* Is t (unix ms) inside one of the maintenance windows? */
bool rules_in_maintenance(struct rules *r, int64_t t);

/* ---- engine.c ----------------------------------------------------------- */

/* A result, as much of it as sm-alert uses.  Strings point into the input
 * line (or into the parsed tree on the slow path) and are not terminated. */
struct result {
	const char *target, *probe, *error, *kafka;
	size_t target_len, probe_len, error_len, kafka_len;
	bool error_escaped; /* error holds JSON escapes */
	/* kafka's coordinates (kpart < 0: none, or not as sm-kafka-sub
	 * writes them) */
	const char *ktopic;
	size_t ktopic_len;
	long long kpart, koff;
	unsigned char id[16];
	int64_t started_ms;
	bool ok;
	int status;         /* -1: null */
	int kind;           /* enum error_kind */
	double duration_ms;
	int64_t cert_na, cert_nb, chain_na; /* 0: absent */
};

struct engine;

struct engine_opts {
	FILE *out;
	size_t outbox_max;  /* 0: no outbox */
	const char *state;  /* own checkpoint file (NULL: none) */
	const char *peers;  /* glob(3) pattern of the peers' checkpoints, for
	                       handing partitions over (NULL: none) */
};

struct config;
struct engine *engine_new(const struct engine_opts *o);
void engine_free(struct engine **e);
/* Install the targets of cfg (the first time, or on reload: state moves
 * along by name; targets gone with an open incident get "resolved"
 * removed). */
void engine_set_config(struct engine *e, struct config *cfg);
/* One result; returns -1 when its target is unknown. */
int engine_result(struct engine *e, const struct result *r);
/* Timers (stale, reminders, maintenance and flapping ends) as of now;
 * explicit: now is a clock that holds for every target (--now,
 * --wall-clock), else each target goes by its own newest result. */
void engine_scan(struct engine *e, int64_t now_ms, bool explicit);
/* Newest started_at seen. */
int64_t engine_watermark(const struct engine *e);
/* Scan when the watermark moved far enough since the last scan. */
void engine_maybe_scan(struct engine *e);
/* -1 on a write error. */
int engine_out_error(const struct engine *e);
size_t engine_state_bytes(const struct engine *e, size_t *targets,
                          size_t *pairs);
unsigned long engine_events(const struct engine *e);

/* checkpoint */
int engine_save(struct engine *e, const char *path);
/* The checkpoint's bytes to fp (engine_save's, without the file's
 * care); -1 on a write error. */
int engine_write(struct engine *e, FILE *fp);
/* 0 loaded, 1 no file, -1 corrupt (message printed, no state changed). */
int engine_load(struct engine *e, const char *path);
/* The checkpoint in buf[0..len), named name in the message: 0 loaded, -1
 * corrupt (message printed, no state changed). */
int engine_load_buf(struct engine *e, const unsigned char *buf, size_t len,
                    const char *name);
/* From the peers' checkpoint headers: leave to a peer the partitions on
 * which it is ahead, learn who owns location-wide incidents and merge the
 * locations' newest results (which may announce or close a silent
 * location).  Returns whether the state changed. */
bool engine_check_peers(struct engine *e);

/* ---- input.c ------------------------------------------------------------ */

/* Decode line into r.  0, or -1 with a reason in err.  *tree is set when
 * jansson had to parse it (the caller json_decref()s it after use). */
int input_decode(const char *line, size_t len, struct result *r, json_t **tree,
                 char *err, size_t errlen);

#endif
