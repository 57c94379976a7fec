/*
 * probe.h - one HTTP(S) check: a target, its curl easy handle, and the
 * result record built when the transfer ends.
 */
#ifndef SM_CHECK_PROBE_H
#define SM_CHECK_PROBE_H

#include <curl/curl.h>

#include "sm.h"
#include "jtext.h"

struct probe_opts {
	const char *location;   /* "probe" field of every result */
	const char *user_agent; /* default User-Agent, a target may override */
	bool proxy_env;         /* a proxy variable libcurl reads is set */
};

struct probe;

/* url with the password of its userinfo, if any, replaced by "***"; a new
 * string.  Results and names never carry a password. */

/* Takes over t (freed with the probe, or at once on failure).  Returns NULL with a reason in err
 * when the target cannot be probed (a regex that does not compile). */
struct probe *probe_new(struct target *t, const struct probe_opts *o,
                        char *err, size_t errlen);
/* Once, before any probe and before threads (after curl_global_init). */
void probe_global_init(void);
/* Once, after every probe loop has ended. */
void probe_global_end(void);
/* The probe's easy handle is kept, reset, for a later probe_new() of the
 * same thread. */
void probe_free(struct probe **p);
/* Free the easy handles this thread kept (at its end). */
void probe_pool_clear(void);
/* The easy handle, to add to a multi handle; CURLOPT_PRIVATE is p. */
CURL *probe_easy(const struct probe *p);
/* Mark the start (call when the handle is added to the multi). */
void probe_start(struct probe *p);
/* The transfer ended with code: take from curl what the result needs
 * (call before the handle leaves the multi).  Returns true when regexes
 * remain to be evaluated, by probe_eval(p) on a worker thread, before
 * probe_result(); false when probe_result() may follow at once. */
bool probe_transfer_done(struct probe *p, CURLcode code);
/* Evaluate the regexes on the body, bounded by the probe's deadline and
 * PCRE2's limits (any thread; p is the worker job's argument). */
void probe_eval(void *p);
/* The result record, as one line of JSON text (without the newline) in
 * out, which is emptied first.  Returns its error kind (ERR_NONE: ok),
 * for the stats line. */
enum error_kind probe_result(struct probe *p, struct jtext *out);
/* Connections whose TLS sm-check made itself so far (tlsrelay.h), every
 * loop's. */
unsigned long probe_relayed(void);
/* The loop's waits taken out of every probe's phases so far (µs). */
unsigned long long probe_waited_us(void);
/* Before libcurl reads fd, a socket of easy's that is readable: the
 * kernel's receive time of an answer, if the probe waits for one (so
 * that its phases leave out how long the loop took to read it). */
void probe_socket_readable(CURL *easy, int fd);
/* A result for a probe that never ran (the multi refused it). */
json_t *probe_result_error(struct probe *p, enum error_kind kind,
                           const char *msg);

#endif
