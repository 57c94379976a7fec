/*
 * kafkaconf.h - Kafka client configuration shared by sm-kafka-pub and
 * sm-kafka-sub, spelled as kcat spells it.
 *
 * Precedence, lowest first: the role's defaults, SM_KAFKA_* environment
 * variables, then the command line in the order given (-X, -F, and the
 * named options such as -b and --ca, which win over -X for their property).
 *
 * Usage:
 *	kc = kconf_new(KCONF_PRODUCER);
 *	while ((c = getopt_long(...)) != -1)
 *		if (!kconf_option(kc, c, optarg)) switch (c) { ... }
 *	kconf_default(kc, "enable.partition.eof", "true");   (tool's own)
 *	conf = kconf_finish(kc);   (-X dump prints and exits here)
 *	... set callbacks on conf, rd_kafka_new(..., conf, ...) takes it ...
 *	kconf_free(&kc);
 */
#ifndef SM_KAFKACONF_H
#define SM_KAFKACONF_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

enum kconf_role { KCONF_PRODUCER, KCONF_CONSUMER };

/* Option codes of the long-only options below (above any char). */
enum {
	KCONF_OPT_CA = 0x4b00,
	KCONF_OPT_CERT,
	KCONF_OPT_KEY,
	KCONF_OPT_SASL_MECHANISM,
	KCONF_OPT_SASL_USER,
	KCONF_OPT_SASL_PASSWORD_FILE,
};

/* Put these in the tool's getopt_long() tables. */
#define KCONF_SHORTOPTS "b:X:F:d:"
#define KCONF_LONGOPTS                                                     \
	{ "brokers", required_argument, NULL, 'b' },                       \
	{ "property", required_argument, NULL, 'X' },                      \
	{ "config-file", required_argument, NULL, 'F' },                   \
	{ "debug", required_argument, NULL, 'd' },                         \
	{ "ca", required_argument, NULL, KCONF_OPT_CA },                   \
	{ "cert", required_argument, NULL, KCONF_OPT_CERT },               \
	{ "key", required_argument, NULL, KCONF_OPT_KEY },                 \
	{ "sasl-mechanism", required_argument, NULL,                       \
	  KCONF_OPT_SASL_MECHANISM },                                      \
	{ "sasl-user", required_argument, NULL, KCONF_OPT_SASL_USER },     \
	{ "sasl-password-file", required_argument, NULL,                   \
	  KCONF_OPT_SASL_PASSWORD_FILE }

/* The lines --help prints for these options (man page OPTIONS agree). */
#define KCONF_USAGE                                                        \
	"  -b, --brokers LIST        bootstrap brokers (SM_KAFKA_BROKERS)\n"   \
	"  -X, --property PROP=VAL   librdkafka property; -X list, -X dump\n"  \
	"  -F, --config-file FILE    librdkafka properties file\n"             \
	"  -d, --debug CONTEXTS      librdkafka debug contexts (all, ...)\n"   \
	"      --ca FILE             CA bundle; implies TLS (SM_KAFKA_CA)\n"   \
	"      --cert FILE           client certificate (SM_KAFKA_CERT)\n"     \
	"      --key FILE            client private key (SM_KAFKA_KEY)\n"      \
	"      --sasl-mechanism M    PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512\n"  \
	"                            (SM_KAFKA_SASL_MECHANISM)\n"              \
	"      --sasl-user USER      SASL user name (SM_KAFKA_SASL_USER)\n"    \
	"      --sasl-password-file FILE  first line is the SASL password\n"   \
	"                            (else SM_KAFKA_SASL_PASSWORD)\n"

struct kconf;

/* Role defaults, logging through diag, and SM_KAFKA_* (brokers, TLS,
 * SASL) noted as defaults under the flags. */
struct kconf *kconf_new(enum kconf_role role);
void kconf_free(struct kconf **kc);

/* Applies one of the options above and returns true; returns false for
 * any other option.  Dies with 78 on a property librdkafka refuses (with
 * its own message), with 64 on a secret given on the command line. */
bool kconf_option(struct kconf *kc, int opt, const char *arg);

/* Set a property now (librdkafka's message and 78 on failure). */
void kconf_set(struct kconf *kc, const char *name, const char *value);
/* Set a property unless the user set it with -X or -F. */
void kconf_default(struct kconf *kc, const char *name, const char *value);
/* True when the user set the property with -X or -F. */
bool kconf_user_set(const struct kconf *kc, const char *name);

/* Applies -b, TLS and SASL; with -X dump prints the effective
 * configuration (secrets masked) and exits 0; dies with 64 when no broker
 * is configured.  Returns the configuration, which the caller now owns
 * (rd_kafka_new() takes it over on success). */
rd_kafka_conf_t *kconf_finish(struct kconf *kc);

/* The configuration as "name = value" lines, secrets masked. */
void kconf_dump(rd_kafka_conf_t *conf, FILE *fp);
/* True for properties whose value must never be shown. */
bool kconf_is_secret(const char *name);

/* For the error callback: logs err (unless librdkafka's own log already
 * said it) and returns true when it is fatal (logged with its reason). */
bool kconf_error(rd_kafka_t *rk, int err, const char *reason);

/* Splits a comma-separated list (SM_KAFKA_TOPIC may name several topics);
 * calls fn for each non-empty element. */
void kconf_split_list(const char *list, void (*fn)(const char *item,
                                                   void *arg),
                      void *arg);

#endif
