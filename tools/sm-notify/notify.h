/*
 * notify.h - sm-notify's parts: the receivers file (config.c), what a
 * message looks like for each kind of receiver (render.c), the durable log
 * of confirmed deliveries (dlog.c) and the delivery engine (deliver.c).
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

/* ---- config.c: receivers.yaml ------------------------------------------ */

enum rkind {
	RK_WEBHOOK, RK_SLACK, RK_MATTERMOST, RK_TEAMS, RK_PAGERDUTY, RK_EMAIL,
	RK_EXEC,
};

/* Event kinds as a bit set (routes' "events"). */
enum {
	EV_DOWN = 1 << 0, EV_UP = 1 << 1, EV_REMINDER = 1 << 2,
	EV_STALE = 1 << 3, EV_CERT = 1 << 4, EV_SLOW = 1 << 5,
	EV_FLAPPING = 1 << 6, EV_RESOLVED = 1 << 7, EV_ALL = 0xff,
};
/* The bit of an event kind name, or 0. */
unsigned event_bit(const char *kind);

struct rqueue; /* deliver.c's per-receiver state */

struct receiver {
	char *name;
	enum rkind kind;
	/* Secrets: never in a log line, an error or a dead letter. */
	char *url;         /* http(s) or smtp(s) */
	char *secret;      /* webhook HMAC key, or NULL */
	size_t secret_len;
	char *routing_key; /* pagerduty */
	char *password;    /* email AUTH */
	/* What may be shown: url_shown has its path, query and password
	 * replaced by "***" when they may carry a token. */
	char *url_shown;
	char *signature_header; /* default X-Sitemon-Signature */
	char **headers;         /* webhook: extra "Name: value" */
	size_t n_headers;
	char *username;
	char *from;
	char **to;
	size_t n_to;
	bool starttls;
	char **argv; /* exec */
	char *link;  /* link template, or NULL (the file's "link") */
	char *severity; /* pagerduty: NULL = critical for down, else warning */
	bool tls_verify;
	char *ca_file;
	int64_t timeout_ms;
	int64_t retry_for_ms; /* -1: --retry-for */
	int64_t group_wait_ms; /* 0: one event per message */
	int64_t backoff_min_ms, backoff_max_ms;
	long group_max;
	long concurrency;
	long rate_n;        /* messages per rate_per_ms; 0: no limit */
	int64_t rate_per_ms;
	struct rqueue *q;
};

struct route {
	char **keys, **vals; /* labels that must all match */
	size_t n_match;
	unsigned events;     /* EV_* bits; EV_ALL when absent */
	size_t *recv;        /* indexes into config.recv */
	size_t n_recv;
	bool cont;           /* keep looking at the next routes */
};

struct config {
	char *path;
	struct receiver *recv;
	size_t n_recv;
	struct route *routes;
	size_t n_routes;
	size_t *deflt; /* the default route's receivers */
	size_t n_deflt;
	char *link;
};

/* Load and validate the receivers file; on any error prints
 * "FILE:LINE:COLUMN: what" and exits 78. */
struct config *config_load(const char *path);
void config_free(struct config **c);
/* Receivers an event goes to (each once): the indexes into out (room for
 * c->n_recv) and their count. */
size_t config_route(const struct config *c, const json_t *ev, size_t *out);
const char *rkind_name(enum rkind k);
/* config_route for an event checked by fast_event: its kind's bit and its
 * raw labels object (NULL: none).  -1 when a label would have to be
 * decoded to tell: route the parsed event instead. */
long config_route_raw(const struct config *c, unsigned kind_bit,
                      const char *labels, size_t labels_len, size_t *out);

/* ---- render.c: what each kind of receiver is sent ------------------------ */

struct rendered {
	char *body;   /* request body, the e-mail message, or exec's stdin */
	size_t len;
	char *key;    /* Idempotency-Key: the event id, or group-<sha256> */
	char *signature; /* "sha256=<hex>" when the receiver has a secret */
	bool borrowed;   /* body and key belong to the entry (render_raw) */
};

/* Render events[0..n) for r.  now_ms is the wall clock for Date: and
 * relative times. */
void render(const struct receiver *r, const struct config *c,
            json_t *const *events, size_t n, int64_t now_ms,
            struct rendered *out);
/* One event to a webhook receiver: body (the event's input bytes, see
 * rawbody.c) and key are borrowed, not copied; only the signature is
 * made. */
void render_raw(const struct receiver *r, const char *body, size_t len,
                const char *key, struct rendered *out);
void rendered_clear(struct rendered *m);

/* ---- rawbody.c: the input bytes as the webhook body ------------------------ */

/* In the JSON object text s[0..len) (already parsed and valid), the span
 * to cut to remove the top-level member named key with its comma: true
 * and *cut_off, *cut_len set, or false when there is no such member
 * spelled plainly. */
bool raw_without_member(const char *s, size_t len, const char *key,
                        size_t *cut_off, size_t *cut_len);
/* The raw value of the member key of the JSON object text s (valid): 1
 * and *val, *vlen set; 0: no such member; -1: a member name has escapes
 * (it may spell key). */
int raw_member(const char *s, size_t len, const char *key, const char **val,
               size_t *vlen);

/* ---- fastev.c: the common event line checked without a tree --------------- */

struct fast_ev {
	const char *id;       /* spans into the line */
	size_t id_len;
	unsigned kind_bit;
	const char *labels;   /* the raw labels object, or NULL */
	size_t labels_len;
	bool has_kafka;       /* a "kafka" object */
};

/* true when line is certainly an event that json_line_parse and
 * event_validate accept (out filled); false: ask them. */
bool fast_event(const char *line, size_t len, struct fast_ev *out);
/* One human line for an event ("shop is DOWN since ...: HTTP 500"). */
char *render_summary(const json_t *ev);
/* A url with its userinfo dropped and path and query as three stars. */
char *url_shown_new(const char *url);

/* ---- dlog.c: the durable log of confirmed deliveries --------------------- */

struct dlog;
/* Open (create) path, load what it holds, lock it against a second
 * sm-notify; keeps the newest max entries.  Exits on failure.  path NULL:
 * in memory only. */
struct dlog *dlog_open(const char *path, size_t max);
void dlog_free(struct dlog **d);
bool dlog_has(const struct dlog *d, const char *recv, const char *id);
/* Remember a confirmed delivery (written now, on disk at dlog_sync). */
void dlog_add(struct dlog *d, const char *recv, const char *id);
/* fdatasync what was added since the last call; exits 74 on failure. */
void dlog_sync(struct dlog *d);
size_t dlog_count(const struct dlog *d);
/* Added since the last dlog_sync. */
bool dlog_pending(const struct dlog *d);

/* ---- deliver.c: queues, messages, retries --------------------------------- */

/* One input line held until every delivery of it is settled. */
struct entry {
	char *line;
	size_t len;
	char *body;      /* the event without "kafka" as it came: into line's
	                  * allocation; NULL: render it from ev */
	size_t body_len;
	unsigned long lineno;
	json_t *ev;      /* the event without "kafka"; NULL for a bare ack,
	                  * or not parsed yet (entry_event) */
	const char *id;  /* borrowed from ev, or in line's allocation */
	int pending;     /* deliveries not settled */
	bool has_kafka;
};

/* e's event tree, parsed from its body on first use: lines that
 * fast_event checked are not parsed unless a receiver needs the tree. */
json_t *entry_event(struct entry *e);

struct deliver_opts {
	int64_t retry_for_ms;
	bool dry_run;
	const char *dead_letter_path;
	FILE *dead_letter;  /* or NULL */
	struct dlog *dlog;
	struct config *cfg;
};

struct deliver_stats {
	unsigned long long delivered, messages, attempts, failures, retries;
	unsigned long long dead, skipped;
};

void deliver_init(struct deliver_opts *o, CURLM *multi);
/* Queue e's deliveries to the given receivers (e->pending counts them). */
void deliver_enqueue(struct entry *e, const size_t *recv, size_t n);
/* Start what is due; returns the milliseconds until something else is
 * due (-1: nothing waits on time).  draining: send groups now. */
long deliver_run(int64_t now_ns, bool draining);
/* A finished curl transfer. */
void deliver_curl_done(CURL *easy, CURLcode rc);
/* Reap exec children; kill those past their timeout. */
void deliver_reap(int64_t now_ns);
/* Deliveries queued or in flight. */
size_t deliver_outstanding(void);
const struct deliver_stats *deliver_stats(void);
/* A per-receiver "name=queued/in-flight" summary for the stats line. */
char *deliver_queues_text(void);
void deliver_shutdown(void);

/* ---- evloop.c: waiting on stdin, the wake pipe and libcurl's sockets ------ */

void ev_init(CURLM *multi);
void ev_free(void);
/* Watch fd for input (or stop); false when it cannot be watched (a
 * regular file: always ready). */
bool ev_watch(int fd, bool on);
/* libcurl's timer: run it when due; the milliseconds until it is (-1:
 * none). */
void ev_curl_timer(int64_t now_ns);
long ev_curl_wait_ms(int64_t now_ns);
/* Wait up to ms (-1: no limit) and hand libcurl its sockets' events. */
void ev_wait(long ms);
/* CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION of every
 * easy handle. */
curl_socket_t ev_open_socket(void *u, curlsocktype purpose,
                             struct curl_sockaddr *a);
int ev_close_socket(void *u, curl_socket_t s);

#endif
