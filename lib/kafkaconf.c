/* kafkaconf.c - kcat-spelled Kafka configuration for both Kafka programs. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kafkaconf.h"
#include "sm.h"

struct kconf {
	enum kconf_role role;
	rd_kafka_conf_t *conf;
	char **user_keys; /* properties set with -X or -F */
	size_t n_user_keys;
	bool dump;
	char *brokers;    /* -b */
	char *ca, *cert, *key;
	char *sasl_mechanism, *sasl_user;
	char *sasl_password_file;
};

/* Properties whose values are never printed nor accepted from argv. */
static const char *const secrets[] = {
	"sasl.password",
	"ssl.key.password",
	"ssl.keystore.password",
	"ssl.key.pem",
	"sasl.oauthbearer.client.secret",
	"sasl.oauthbearer.config",
};

bool
kconf_is_secret(const char *name)
{
	size_t i;

	if (strncmp(name, "topic.", 6) == 0)
		name += 6;
	for (i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
		if (strcmp(name, secrets[i]) == 0)
			return true;
	return strstr(name, "password") != NULL ||
	       strstr(name, "secret") != NULL;
}

/* librdkafka's log lines through our "prog: level: message" format.
 * Called from librdkafka's threads: one fprintf per line. */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	const char *lvl = level <= 3 ? "error" :
	                  level == 4 ? "warning" :
	                  level <= 6 ? "info" : "debug";

	/* Cleaned as every diagnostic: brokers name topics and errors. */
	diag_log(lvl, "kafka: %s: %s", fac, buf);
}

bool
kconf_error(rd_kafka_t *rk, int err, const char *reason)
{
	char fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal, sizeof fatal);
		warn("kafka: fatal: %s", fatal);
		return true;
	}
	/* Connection failures are already in librdkafka's log. */
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT ||
	    err == RD_KAFKA_RESP_ERR__RESOLVE)
		return false;
	warning("kafka: %s", reason);
	return false;
}

static char *
env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? xstrdup(v) : NULL;
}

static void
set_or_die(struct kconf *kc, const char *where, const char *name,
           const char *value)
{
	char errstr[512];

	if (rd_kafka_conf_set(kc->conf, name, value, errstr, sizeof errstr) !=
	    RD_KAFKA_CONF_OK) {
		if (where != NULL)
			die(EX_CONFIG, "%s: %s", where, errstr);
		die(EX_CONFIG, "%s", errstr);
	}
}

/* The mechanisms --sasl-mechanism maps (others: -X sasl.mechanisms). */
static bool
sasl_mechanism_ok(const char *m)
{
	return strcmp(m, "PLAIN") == 0 || strcmp(m, "SCRAM-SHA-256") == 0 ||
	       strcmp(m, "SCRAM-SHA-512") == 0;
}

struct kconf *
kconf_new(enum kconf_role role)
{
	struct kconf *kc = xcalloc(1, sizeof *kc);

	kc->role = role;
	kc->conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(kc->conf, log_cb);
	set_or_die(kc, NULL, "client.id", diag_progname());
	if (role == KCONF_PRODUCER) {
		/* Every record once, in order, confirmed by all replicas. */
		set_or_die(kc, NULL, "enable.idempotence", "true");
		set_or_die(kc, NULL, "acks", "all");
		/* Checks spread over many partitions: in librdkafka's 5 ms a
		 * partition's batch holds one or two records, and each batch
		 * is a request the producer and the brokers pay for.  50 ms
		 * cut both sides' CPU per record 3 to 8 times
		 * (bench/pipeline.bench) for at most 50 ms of latency. */
		set_or_die(kc, NULL, "linger.ms", "50");
	} else {
		/* Offsets move only when the tool says a record is done. */
		set_or_die(kc, NULL, "enable.auto.commit", "false");
		set_or_die(kc, NULL, "enable.auto.offset.store", "false");
		/* A new group starts at the oldest record: nothing skipped. */
		set_or_die(kc, NULL, "auto.offset.reset", "earliest");
		/* Kafka's pre-3.0 default: a dead consumer's partitions move
		 * on within 10 s (45 s otherwise). */
		set_or_die(kc, NULL, "session.timeout.ms", "10000");
		/* A broker holds a fetch that finds nothing for up to this
		 * long; librdkafka's mock cluster (the dev broker) holds it
		 * even when records arrive meanwhile, which made 500 ms the
		 * pipeline's latency floor.  A real broker answers as soon as
		 * records arrive; there 100 ms costs ten empty fetches a
		 * second per broker while idle. */
		set_or_die(kc, NULL, "fetch.wait.max.ms", "100");
	}
	kc->ca = env_nonempty("SM_KAFKA_CA");
	kc->cert = env_nonempty("SM_KAFKA_CERT");
	kc->key = env_nonempty("SM_KAFKA_KEY");
	kc->sasl_mechanism = env_nonempty("SM_KAFKA_SASL_MECHANISM");
	if (kc->sasl_mechanism != NULL && !sasl_mechanism_ok(kc->sasl_mechanism))
		die(EX_CONFIG, "SM_KAFKA_SASL_MECHANISM %s: expected PLAIN, "
		    "SCRAM-SHA-256 or SCRAM-SHA-512", kc->sasl_mechanism);
	kc->sasl_user = env_nonempty("SM_KAFKA_SASL_USER");
	kc->sasl_password_file = env_nonempty("SM_KAFKA_SASL_PASSWORD_FILE");
	return kc;
}

void
kconf_free(struct kconf **kcp)
{
	struct kconf *kc = *kcp;
	size_t i;

	if (kc == NULL)
		return;
	if (kc->conf != NULL)
		rd_kafka_conf_destroy(kc->conf);
	for (i = 0; i < kc->n_user_keys; i++)
		free(kc->user_keys[i]);
	free(kc->user_keys);
	free(kc->brokers);
	free(kc->ca);
	free(kc->cert);
	free(kc->key);
	free(kc->sasl_mechanism);
	free(kc->sasl_user);
	free(kc->sasl_password_file);
	free(kc);
	*kcp = NULL;
}

/* "topic.acks" and "acks" name one property; so do the aliases that
 * librdkafka knows, which matter only for kconf_user_set(). */
static const char *
canonical(const char *name)
{
	if (strncmp(name, "topic.", 6) == 0)
		name += 6;
	if (strcmp(name, "metadata.broker.list") == 0)
		return "bootstrap.servers";
	if (strcmp(name, "request.required.acks") == 0)
		return "acks";
	if (strcmp(name, "sasl.mechanism") == 0)
		return "sasl.mechanisms";
	if (strcmp(name, "queue.buffering.max.ms") == 0)
		return "linger.ms";
	return name;
}

bool
kconf_user_set(const struct kconf *kc, const char *name)
{
	size_t i;

	name = canonical(name);
	for (i = 0; i < kc->n_user_keys; i++)
		if (strcmp(kc->user_keys[i], name) == 0)
			return true;
	return false;
}

static void
note_user_key(struct kconf *kc, const char *name)
{
	if (kconf_user_set(kc, name))
		return;
	kc->user_keys = xrealloc(kc->user_keys,
	                         (kc->n_user_keys + 1) * sizeof *kc->user_keys);
	kc->user_keys[kc->n_user_keys++] = xstrdup(canonical(name));
}

void
kconf_set(struct kconf *kc, const char *name, const char *value)
{
	set_or_die(kc, NULL, name, value);
}

void
kconf_default(struct kconf *kc, const char *name, const char *value)
{
	if (!kconf_user_set(kc, name))
		set_or_die(kc, NULL, name, value);
}

/* One "name=value" from -X or a -F line; where is NULL or "path:line". */
static void
user_property(struct kconf *kc, const char *where, const char *name,
              const char *value)
{
	/* kcat's "topic." prefix is also librdkafka's: pass it through. */
	set_or_die(kc, where, name, value);
	note_user_key(kc, name);
}

static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* A librdkafka properties file: "name=value" lines, '#' comments. */
static void
read_properties(struct kconf *kc, const char *path)
{
	char *line = NULL, *eq, *name, *value;
	size_t cap = 0;
	unsigned long lineno = 0;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		die(EX_CONFIG, "%s:", path);
	while (getline(&line, &cap, fp) != -1) {
		char where[4096];

		lineno++;
		snprintf(where, sizeof where, "%s:%lu", path, lineno);
		name = trim(line);
		if (*name == '\0' || *name == '#')
			continue;
		if ((eq = strchr(name, '=')) == NULL)
			die(EX_CONFIG, "%s: expected property=value", where);
		*eq = '\0';
		value = trim(eq + 1);
		name = trim(name);
		if (*name == '\0')
			die(EX_CONFIG, "%s: expected property=value", where);
		user_property(kc, where, name, value);
	}
	if (ferror(fp))
		die(EX_CONFIG, "%s:", path);
	free(line);
	fclose(fp);
}

static void
show_properties(void)
{
	rd_kafka_conf_properties_show(stdout);
	exit(fflush(stdout) == 0 ? 0 : EX_IOERR);
}

static void
x_option(struct kconf *kc, const char *arg)
{
	char *name, *eq;

	if (strcmp(arg, "dump") == 0) {
		kc->dump = true;
		return;
	}
	if (strcmp(arg, "list") == 0)
		show_properties();
	if ((eq = strchr(arg, '=')) == NULL || eq == arg)
		die(EX_USAGE, "-X %s: expected property=value, list or dump",
		    arg);
	name = xstrndup(arg, (size_t)(eq - arg));
	if (kconf_is_secret(name))
		die(EX_USAGE,
		    "-X %s: secrets are not taken from the command line: use "
		    "-F FILE, SM_KAFKA_SASL_PASSWORD or --sasl-password-file",
		    name);
	user_property(kc, NULL, name, eq + 1);
	free(name);
}

static void
replace(char **slot, const char *value)
{
	free(*slot);
	*slot = xstrdup(value);
}

bool
kconf_option(struct kconf *kc, int opt, const char *arg)
{
	switch (opt) {
	case 'b':
		replace(&kc->brokers, arg);
		return true;
	case 'X':
		x_option(kc, arg);
		return true;
	case 'F':
		read_properties(kc, arg);
		return true;
	case 'd':
		user_property(kc, NULL, "debug", arg);
		return true;
	case KCONF_OPT_CA:
		replace(&kc->ca, arg);
		return true;
	case KCONF_OPT_CERT:
		replace(&kc->cert, arg);
		return true;
	case KCONF_OPT_KEY:
		replace(&kc->key, arg);
		return true;
	case KCONF_OPT_SASL_MECHANISM:
		if (!sasl_mechanism_ok(arg))
			die(EX_USAGE, "--sasl-mechanism %s: expected PLAIN, "
			    "SCRAM-SHA-256 or SCRAM-SHA-512", arg);
		replace(&kc->sasl_mechanism, arg);
		return true;
	case KCONF_OPT_SASL_USER:
		replace(&kc->sasl_user, arg);
		return true;
	case KCONF_OPT_SASL_PASSWORD_FILE:
		replace(&kc->sasl_password_file, arg);
		return true;
	}
	return false;
}

/* The first line of path, without its newline; the content is never
 * echoed in an error. */
static char *
read_secret_file(const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		die(EX_CONFIG, "--sasl-password-file %s:", path);
	n = getline(&line, &cap, fp);
	if (n < 0 && ferror(fp))
		die(EX_CONFIG, "--sasl-password-file %s:", path);
	fclose(fp);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n <= 0)
		die(EX_CONFIG, "--sasl-password-file %s: empty", path);
	return line;
}

static void
apply_security(struct kconf *kc)
{
	bool tls = kc->ca != NULL || kc->cert != NULL || kc->key != NULL;
	bool sasl = kc->sasl_mechanism != NULL || kc->sasl_user != NULL;

	if (kc->ca != NULL)
		set_or_die(kc, "--ca", "ssl.ca.location", kc->ca);
	if (kc->cert != NULL)
		set_or_die(kc, "--cert", "ssl.certificate.location", kc->cert);
	if (kc->key != NULL)
		set_or_die(kc, "--key", "ssl.key.location", kc->key);
	if (sasl) {
		const char *pw_env = getenv("SM_KAFKA_SASL_PASSWORD");

		set_or_die(kc, "--sasl-mechanism", "sasl.mechanisms",
		           kc->sasl_mechanism ? kc->sasl_mechanism : "PLAIN");
		if (kc->sasl_user != NULL)
			set_or_die(kc, "--sasl-user", "sasl.username",
			           kc->sasl_user);
		if (kc->sasl_password_file != NULL) {
			char *pw = read_secret_file(kc->sasl_password_file);

			set_or_die(kc, "--sasl-password-file", "sasl.password",
			           pw);
			explicit_bzero(pw, strlen(pw));
			free(pw);
		} else if (pw_env != NULL && *pw_env != '\0') {
			set_or_die(kc, "SM_KAFKA_SASL_PASSWORD",
			           "sasl.password", pw_env);
		} else if (kc->sasl_user != NULL &&
		           !kconf_user_set(kc, "sasl.password")) {
			die(EX_CONFIG, "SASL user %s has no password: set "
			    "SM_KAFKA_SASL_PASSWORD or --sasl-password-file",
			    kc->sasl_user);
		}
	}
	/* SASL defaults to TLS too: a password never crosses in clear
	 * unless -X security.protocol=sasl_plaintext says so. */
	if ((tls || sasl) && !kconf_user_set(kc, "security.protocol"))
		set_or_die(kc, NULL, "security.protocol",
		           sasl ? "sasl_ssl" : "ssl");
}

void
kconf_dump(rd_kafka_conf_t *conf, FILE *fp)
{
	rd_kafka_topic_conf_t *tconf;
	const char **arr;
	size_t n, i;

	arr = rd_kafka_conf_dump(conf, &n);
	fprintf(fp, "# global configuration\n");
	for (i = 0; i + 1 < n; i += 2)
		fprintf(fp, "%s = %s\n", arr[i],
		        kconf_is_secret(arr[i]) && arr[i + 1][0] != '\0' ?
		            "[redacted]" : arr[i + 1]);
	rd_kafka_conf_dump_free(arr, n);
	if ((tconf = rd_kafka_conf_get_default_topic_conf(conf)) == NULL)
		return;
	arr = rd_kafka_topic_conf_dump(tconf, &n);
	fprintf(fp, "# topic configuration\n");
	for (i = 0; i + 1 < n; i += 2)
		fprintf(fp, "%s = %s\n", arr[i],
		        kconf_is_secret(arr[i]) && arr[i + 1][0] != '\0' ?
		            "[redacted]" : arr[i + 1]);
	rd_kafka_conf_dump_free(arr, n);
}

rd_kafka_conf_t *
kconf_finish(struct kconf *kc)
{
	rd_kafka_conf_t *conf;
	char brokers[4096];
	size_t len = sizeof brokers;

	if (kc->brokers != NULL) {
		set_or_die(kc, "-b", "bootstrap.servers", kc->brokers);
		note_user_key(kc, "bootstrap.servers");
	} else if (!kconf_user_set(kc, "bootstrap.servers")) {
		const char *env = getenv("SM_KAFKA_BROKERS");

		if (env != NULL && *env != '\0')
			set_or_die(kc, "SM_KAFKA_BROKERS", "bootstrap.servers",
			           env);
	}
	apply_security(kc);
	if (kc->dump) {
		kconf_dump(kc->conf, stdout);
		exit(fflush(stdout) == 0 ? 0 : EX_IOERR);
	}
	if (rd_kafka_conf_get(kc->conf, "bootstrap.servers", brokers, &len) !=
	        RD_KAFKA_CONF_OK ||
	    brokers[0] == '\0')
		die(EX_USAGE, "no brokers: give -b BROKERS or set "
		    "SM_KAFKA_BROKERS");
	conf = kc->conf;
	kc->conf = NULL; /* the caller owns it now */
	return conf;
}

void
kconf_split_list(const char *list, void (*fn)(const char *, void *),
                 void *arg)
{
	char *copy = xstrdup(list), *save = NULL, *tok;

	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		tok = trim(tok);
		if (*tok != '\0')
			fn(tok, arg);
	}
	free(copy);
}
