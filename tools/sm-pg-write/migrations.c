/*
 * migrations.c - the database schema, as versioned migrations.
 *
 * pg.c applies them in order, each in its own transaction under an advisory
 * lock, and records each version in schema_migrations.  A migration is
 * IMMUTABLE once released: databases in the field have already run it.
 * Change the schema by appending a new version, never by editing an old one.
 */
#include "pgw.h"

/*
 * checks: one row per result.  Columns are named after the result record's
 * fields, nested objects flattened (phases.dns_ms -> dns_ms, regex.pattern
 * -> regex_pattern, tls.version -> tls_version, kafka.offset ->
 * kafka_offset).  The primary key includes started_at so that the table can
 * become range-partitioned by started_at (a partitioned table's unique keys
 * must contain the partition key); id alone is the idempotency key, and
 * started_at is fixed per id by sm-check, so (id, started_at) is as good.
 *
 * targets: the latest state per target, from the newest started_at seen.
 * last_change_at is when the current ok/not-ok run began; down_since is the
 * same instant while the target is failing, NULL while it is up.
 */
static const char m001_initial[] =
	"CREATE TABLE checks (\n"
	"  id uuid NOT NULL,\n"
	"  target text NOT NULL,\n"
	"  url text NOT NULL,\n"
	"  labels jsonb,\n"
	"  probe text,\n"
	"  scheduled_at timestamptz,\n"
	"  started_at timestamptz NOT NULL,\n"
	"  ok boolean NOT NULL,\n"
	"  status integer,\n"
	"  error_kind text,\n"
	"  error text,\n"
	"  duration_ms integer,\n"
	"  dns_ms integer,\n"
	"  connect_ms integer,\n"
	"  tls_ms integer,\n"
	"  ttfb_ms integer,\n"
	"  transfer_ms integer,\n"
	"  bytes bigint,\n"
	"  http_version text,\n"
	"  remote_ip text,\n"
	"  redirects integer,\n"
	"  final_url text,\n"
	"  regex_pattern text,\n"
	"  regex_matched boolean,\n"
	"  tls_version text,\n"
	"  tls_cert_not_after timestamptz,\n"
	"  tls_cert_issuer text,\n"
	"  kafka_topic text,\n"
	"  kafka_partition integer,\n"
	"  kafka_offset bigint,\n"
	"  stored_at timestamptz NOT NULL DEFAULT now(),\n"
	"  PRIMARY KEY (id, started_at)\n"
	");\n"
	"CREATE INDEX checks_target_started_at_idx\n"
	"  ON checks (target, started_at DESC);\n"
	"CREATE INDEX checks_started_at_idx ON checks (started_at);\n"
	"CREATE TABLE targets (\n"
	"  target text PRIMARY KEY,\n"
	"  url text NOT NULL,\n"
	"  labels jsonb,\n"
	"  last_checked_at timestamptz NOT NULL,\n"
	"  last_ok boolean NOT NULL,\n"
	"  last_status integer,\n"
	"  last_error_kind text,\n"
	"  last_duration_ms integer,\n"
	"  down_since timestamptz,\n"
	"  last_change_at timestamptz NOT NULL\n"
	");\n";

const struct migration pgw_migrations[] = {
	{ 1, "initial", m001_initial },
};

const size_t pgw_n_migrations = sizeof pgw_migrations / sizeof pgw_migrations[0];
