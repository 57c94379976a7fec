/*
 * config.c - the receivers file (receivers.yaml(5)): receivers by name,
 * routes by target labels, the default route.
 *
 * Loaded with libyaml's document API so that every node keeps its mark:
 * an error names FILE:LINE:COLUMN and exits 78.  Secrets (webhook URLs,
 * HMAC keys, routing keys, passwords) may come from files or environment
 * variables; they are kept only in the receiver and never printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "sm.h"
#include "notify.h"

#define SECRET_MAX 65536

struct loader {
	const char *path;
	char *dir; /* the file's directory, for relative paths */
	yaml_document_t doc;
};

static const char *const kind_names[] = {
	[RK_WEBHOOK] = "webhook", [RK_SLACK] = "slack",
	[RK_MATTERMOST] = "mattermost", [RK_TEAMS] = "teams",
	[RK_PAGERDUTY] = "pagerduty", [RK_EMAIL] = "email", [RK_EXEC] = "exec",
};

static const char *const event_names[] = {
	"down", "up", "reminder", "stale", "cert_expiring", "slow", "flapping",
	"resolved", NULL,
};

const char *
rkind_name(enum rkind k)
{
	return kind_names[k];
}

unsigned
event_bit(const char *kind)
{
	for (int i = 0; event_names[i]; i++)
		if (!strcmp(kind, event_names[i]))
			return 1u << i;
	return 0;
}

static void __attribute__((noreturn, format(printf, 3, 4)))
cfail(struct loader *L, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	die(EX_CONFIG, "%s:%lu:%lu: %s", L->path,
	    (unsigned long)n->start_mark.line + 1,
	    (unsigned long)n->start_mark.column + 1, msg);
}

static yaml_node_t *
node(struct loader *L, int i)
{
	return yaml_document_get_node(&L->doc, i);
}

static const char *
scalar(struct loader *L, yaml_node_t *n, const char *what)
{
	if (n->type != YAML_SCALAR_NODE)
		cfail(L, n, "%s: expected a string", what);
	return (const char *)n->data.scalar.value;
}

static char *
str_dup(struct loader *L, yaml_node_t *n, const char *what)
{
	const char *s = scalar(L, n, what);

	if (!*s)
		cfail(L, n, "%s: empty", what);
	if (strlen(s) != n->data.scalar.length)
		cfail(L, n, "%s: holds a NUL byte", what);
	return xstrdup(s);
}

static int64_t
duration(struct loader *L, yaml_node_t *n, const char *what, int64_t min)
{
	const char *s = scalar(L, n, what);
	int64_t ms;

	if (*s && strspn(s, "0123456789") == strlen(s) && strcmp(s, "0"))
		cfail(L, n, "%s: \"%s\" needs a unit (such as 500ms, 30s, 5m)",
		      what, s);
	if (parse_duration_ms(s, &ms) == -1)
		cfail(L, n, "%s: \"%s\" is not a duration (such as 500ms, 30s, "
		      "5m, 1h)", what, s);
	if (ms < min)
		cfail(L, n, "%s: at least %lldms", what, (long long)min);
	return ms;
}

static long
integer(struct loader *L, yaml_node_t *n, const char *what, long min,
        long max)
{
	const char *s = scalar(L, n, what), *errstr;
	long long v;

	if (parse_ll(s, min, max, &v, &errstr) == -1)
		cfail(L, n, "%s: \"%s\" is %s (%ld..%ld)", what, s, errstr, min,
		      max);
	return (long)v;
}

static bool
boolean(struct loader *L, yaml_node_t *n, const char *what)
{
	const char *s = scalar(L, n, what);

	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
		return true;
	if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
		return false;
	cfail(L, n, "%s: expected true or false", what);
}

/* A list of strings (or one string) into a NULL-terminated array. */
static char **
strings(struct loader *L, yaml_node_t *n, const char *what, size_t *count)
{
	char **v;
	size_t k = 0;

	if (n->type == YAML_SCALAR_NODE) {
		v = xcalloc(2, sizeof *v);
		v[0] = str_dup(L, n, what);
		if (count)
			*count = 1;
		return v;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		cfail(L, n, "%s: expected a list of strings", what);
	v = xcalloc((size_t)(n->data.sequence.items.top -
	                     n->data.sequence.items.start) + 1, sizeof *v);
	for (yaml_node_item_t *it = n->data.sequence.items.start;
	     it < n->data.sequence.items.top; it++)
		v[k++] = str_dup(L, node(L, *it), what);
	if (k == 0)
		cfail(L, n, "%s: empty list", what);
	if (count)
		*count = k;
	return v;
}

static char *
resolve_path(struct loader *L, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	return xasprintf("%s/%s", L->dir, p);
}

/* A secret from a file (the whole file, trailing newlines dropped). */
static char *
secret_file(struct loader *L, yaml_node_t *n, const char *what, size_t *len)
{
	char *path = resolve_path(L, scalar(L, n, what));
	char *buf = xmalloc(SECRET_MAX + 1);
	ssize_t r;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		cfail(L, n, "%s: %s: %s", what, path, strerror(errno));
	while ((r = read(fd, buf + got, SECRET_MAX - got)) > 0)
		got += (size_t)r;
	if (r == -1)
		cfail(L, n, "%s: %s: %s", what, path, strerror(errno));
	close(fd);
	if (got == SECRET_MAX)
		cfail(L, n, "%s: %s: longer than %d bytes", what, path,
		      SECRET_MAX);
	while (got && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
		got--;
	buf[got] = '\0';
	if (got == 0)
		cfail(L, n, "%s: %s is empty", what, path);
	free(path);
	if (len)
		*len = got;
	return buf;
}

static char *
secret_env(struct loader *L, yaml_node_t *n, const char *what, size_t *len)
{
	const char *name = scalar(L, n, what), *v = getenv(name);

	if (!v || !*v)
		cfail(L, n, "%s: environment variable %s is not set", what,
		      name);
	if (len)
		*len = strlen(v);
	return xstrdup(v);
}

/* One secret from NAME, NAME_file or NAME_env (exactly one of them);
 * *set tells whether any was given. */
struct secret_keys {
	yaml_node_t *plain, *file, *env;
	yaml_node_t *first; /* for "missing" errors */
};

static char *
secret_take(struct loader *L, struct secret_keys *k, const char *name,
            size_t *len)
{
	int given = !!k->plain + !!k->file + !!k->env;
	char what[64];

	if (given > 1)
		cfail(L, k->plain ? k->plain : k->file, "give only one of %s, "
		      "%s_file, %s_env", name, name, name);
	if (k->plain) {
		if (len)
			*len = k->plain->data.scalar.length;
		return str_dup(L, k->plain, name);
	}
	if (k->file) {
		snprintf(what, sizeof what, "%s_file", name);
		return secret_file(L, k->file, what, len);
	}
	if (k->env) {
		snprintf(what, sizeof what, "%s_env", name);
		return secret_env(L, k->env, what, len);
	}
	return NULL;
}

static int
url_scheme_ok(const char *url, enum rkind kind)
{
	if (kind == RK_EMAIL)
		return !strncmp(url, "smtp://", 7) || !strncmp(url, "smtps://", 8);
	return !strncmp(url, "http://", 7) || !strncmp(url, "https://", 8);
}

static bool
name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		      *s == '.'))
			return false;
	return true;
}

static void
parse_rate(struct loader *L, yaml_node_t *n, struct receiver *r)
{
	const char *s = scalar(L, n, "rate_limit"), *slash = strchr(s, '/');
	char *num;
	const char *errstr;
	long long v;

	if (!slash)
		cfail(L, n, "rate_limit: expected MESSAGES/DURATION (such as "
		      "\"20/1m\")");
	num = xstrndup(s, (size_t)(slash - s));
	if (parse_ll(num, 1, 1000000, &v, &errstr) == -1)
		cfail(L, n, "rate_limit: \"%s\" is %s (1..1000000)", num,
		      errstr);
	free(num);
	if (parse_duration_ms(slash + 1, &r->rate_per_ms) == -1 ||
	    r->rate_per_ms < 1)
		cfail(L, n, "rate_limit: \"%s\" is not a duration", slash + 1);
	r->rate_n = (long)v;
}

static void
parse_receiver(struct loader *L, yaml_node_t *kn, yaml_node_t *vn,
               struct receiver *r)
{
	struct secret_keys url = {0}, secret = {0}, rkey = {0}, pass = {0};
	yaml_node_t *type = NULL, *tsv = NULL;
	const char *t;
	int i;

	r->name = str_dup(L, kn, "receiver name");
	if (!name_ok(r->name))
		cfail(L, kn, "receiver name \"%s\": use letters, digits, "
		      "'-', '_' and '.'", r->name);
	if (vn->type != YAML_MAPPING_NODE)
		cfail(L, vn, "receiver %s: expected a mapping", r->name);
	r->tls_verify = true;
	r->timeout_ms = 10000;
	r->retry_for_ms = -1;
	r->group_wait_ms = -1;
	r->backoff_min_ms = 1000;
	r->backoff_max_ms = 60000;
	r->group_max = 500;
	r->concurrency = -1;
	for (yaml_node_pair_t *p = vn->data.mapping.pairs.start;
	     p < vn->data.mapping.pairs.top; p++) {
		if (node(L, p->key)->type == YAML_SCALAR_NODE &&
		    !strcmp(scalar(L, node(L, p->key), "key"), "type"))
			type = node(L, p->value);
	}
	if (!type)
		cfail(L, vn, "receiver %s: no \"type\" (webhook, slack, "
		      "mattermost, teams, pagerduty, email or exec)", r->name);
	t = scalar(L, type, "type");
	for (i = 0; i <= RK_EXEC; i++)
		if (!strcmp(t, kind_names[i]))
			break;
	if (i > RK_EXEC)
		cfail(L, type, "type \"%s\": expected webhook, slack, "
		      "mattermost, teams, pagerduty, email or exec", t);
	r->kind = (enum rkind)i;

	for (yaml_node_pair_t *p = vn->data.mapping.pairs.start;
	     p < vn->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
		const char *key = scalar(L, k, "key");
		bool http = r->kind != RK_EXEC && r->kind != RK_EMAIL;
		bool ok = true;

		if (!strcmp(key, "type"))
			continue;
		else if (!strcmp(key, "url") && r->kind != RK_EXEC)
			url.plain = v;
		else if (!strcmp(key, "url_file") && r->kind != RK_EXEC)
			url.file = v;
		else if (!strcmp(key, "url_env") && r->kind != RK_EXEC)
			url.env = v;
		else if (!strcmp(key, "timeout"))
			r->timeout_ms = duration(L, v, key, 1);
		else if (!strcmp(key, "retry_for"))
			r->retry_for_ms = duration(L, v, key, 0);
		else if (!strcmp(key, "group_wait"))
			r->group_wait_ms = duration(L, v, key, 0);
		else if (!strcmp(key, "group_max"))
			r->group_max = integer(L, v, key, 1, 100000);
		else if (!strcmp(key, "concurrency"))
			r->concurrency = integer(L, v, key, 1, 1024);
		else if (!strcmp(key, "rate_limit"))
			parse_rate(L, v, r);
		else if (!strcmp(key, "backoff_min"))
			r->backoff_min_ms = duration(L, v, key, 1);
		else if (!strcmp(key, "backoff_max"))
			r->backoff_max_ms = duration(L, v, key, 1);
		else if (!strcmp(key, "link"))
			r->link = str_dup(L, v, key);
		else if (!strcmp(key, "tls_verify") && r->kind != RK_EXEC)
			r->tls_verify = boolean(L, v, key);
		else if (!strcmp(key, "ca_file") && r->kind != RK_EXEC)
			r->ca_file = resolve_path(L, scalar(L, v, key));
		else if (r->kind == RK_WEBHOOK && !strcmp(key, "secret"))
			secret.plain = v;
		else if (r->kind == RK_WEBHOOK && !strcmp(key, "secret_file"))
			secret.file = v;
		else if (r->kind == RK_WEBHOOK && !strcmp(key, "secret_env"))
			secret.env = v;
		else if (r->kind == RK_WEBHOOK &&
		         !strcmp(key, "signature_header"))
			r->signature_header = str_dup(L, v, key);
		else if (r->kind == RK_WEBHOOK && !strcmp(key, "headers")) {
			if (v->type != YAML_MAPPING_NODE)
				cfail(L, v, "headers: expected a mapping");
			for (yaml_node_pair_t *h = v->data.mapping.pairs.start;
			     h < v->data.mapping.pairs.top; h++) {
				const char *hn = scalar(L, node(L, h->key), "header");
				const char *hv = scalar(L, node(L, h->value), hn);

				if (strpbrk(hn, ": \r\n") || strpbrk(hv, "\r\n"))
					cfail(L, node(L, h->key), "header \"%s\": "
					      "invalid name or value", hn);
				r->headers = xrealloc(r->headers, (r->n_headers + 1) *
				                      sizeof *r->headers);
				r->headers[r->n_headers++] =
					xasprintf("%s: %s", hn, hv);
			}
		} else if (r->kind == RK_PAGERDUTY && !strcmp(key, "routing_key"))
			rkey.plain = v;
		else if (r->kind == RK_PAGERDUTY &&
		         !strcmp(key, "routing_key_file"))
			rkey.file = v;
		else if (r->kind == RK_PAGERDUTY &&
		         !strcmp(key, "routing_key_env"))
			rkey.env = v;
		else if (r->kind == RK_PAGERDUTY && !strcmp(key, "severity")) {
			r->severity = str_dup(L, v, key);
			if (strcmp(r->severity, "critical") &&
			    strcmp(r->severity, "error") &&
			    strcmp(r->severity, "warning") &&
			    strcmp(r->severity, "info"))
				cfail(L, v, "severity: expected critical, error, "
				      "warning or info");
		} else if (r->kind == RK_EMAIL && !strcmp(key, "from"))
			r->from = str_dup(L, v, key);
		else if (r->kind == RK_EMAIL && !strcmp(key, "to"))
			r->to = strings(L, v, key, &r->n_to);
		else if (r->kind == RK_EMAIL && !strcmp(key, "username"))
			r->username = str_dup(L, v, key);
		else if (r->kind == RK_EMAIL && !strcmp(key, "password_file"))
			pass.file = v;
		else if (r->kind == RK_EMAIL && !strcmp(key, "password_env"))
			pass.env = v;
		else if (r->kind == RK_EMAIL && !strcmp(key, "starttls"))
			tsv = v;
		else if (r->kind == RK_EXEC && !strcmp(key, "command")) {
			if (v->type == YAML_SCALAR_NODE) {
				r->argv = xcalloc(4, sizeof *r->argv);
				r->argv[0] = xstrdup("/bin/sh");
				r->argv[1] = xstrdup("-c");
				r->argv[2] = str_dup(L, v, key);
			} else {
				r->argv = strings(L, v, key, NULL);
			}
		} else
			ok = false;
		if (!ok)
			cfail(L, k, "receiver %s: unknown key \"%s\" for type %s",
			      r->name, key, kind_names[r->kind]);
		(void)http;
	}

	if (r->kind == RK_EXEC) {
		if (!r->argv)
			cfail(L, vn, "receiver %s: no \"command\"", r->name);
	} else {
		r->url = secret_take(L, &url, "url", NULL);
		if (!r->url && r->kind == RK_PAGERDUTY)
			r->url = xstrdup("https://events.pagerduty.com/v2/enqueue");
		if (!r->url)
			cfail(L, vn, "receiver %s: no url (url, url_file or "
			      "url_env)", r->name);
		if (!url_scheme_ok(r->url, r->kind))
			cfail(L, url.plain ? url.plain : url.file ? url.file
			      : url.env ? url.env : vn,
			      "receiver %s: the url must be %s", r->name,
			      r->kind == RK_EMAIL ? "smtp:// or smtps://"
			                          : "http:// or https://");
		r->url_shown = url_shown_new(r->url);
	}
	r->secret = secret_take(L, &secret, "secret", &r->secret_len);
	if (r->secret && !r->signature_header)
		r->signature_header = xstrdup("X-Sitemon-Signature");
	r->routing_key = secret_take(L, &rkey, "routing_key", NULL);
	if (r->kind == RK_PAGERDUTY && !r->routing_key)
		cfail(L, vn, "receiver %s: no routing_key (routing_key, "
		      "routing_key_file or routing_key_env)", r->name);
	r->password = secret_take(L, &pass, "password", NULL);
	if (r->kind == RK_EMAIL) {
		if (!r->from)
			cfail(L, vn, "receiver %s: no \"from\"", r->name);
		if (!r->to)
			cfail(L, vn, "receiver %s: no \"to\"", r->name);
		if (r->password && !r->username)
			cfail(L, vn, "receiver %s: a password needs a username",
			      r->name);
		/* STARTTLS is required when a password would cross the
		 * wire, unless the file says otherwise. */
		r->starttls = tsv ? boolean(L, tsv, "starttls")
		                  : r->password != NULL;
		if (r->password && !r->starttls && strncmp(r->url, "smtps", 5))
			cfail(L, tsv ? tsv : vn, "receiver %s: AUTH over smtp:// "
			      "needs starttls: true (or use smtps://)", r->name);
	}
	if (r->backoff_max_ms < r->backoff_min_ms)
		r->backoff_max_ms = r->backoff_min_ms;
	/* Chat and e-mail are read by people: group a burst by default. */
	if (r->group_wait_ms < 0)
		r->group_wait_ms = (r->kind == RK_SLACK ||
		                    r->kind == RK_MATTERMOST ||
		                    r->kind == RK_TEAMS || r->kind == RK_EMAIL)
		                       ? 5000 : 0;
	if (r->concurrency < 0)
		r->concurrency = r->kind == RK_WEBHOOK ? 64
		               : r->kind == RK_PAGERDUTY ? 1
		               : r->kind == RK_EXEC ? 4 : 1;
}

static size_t
receiver_index(struct loader *L, struct config *c, yaml_node_t *n)
{
	const char *s = scalar(L, n, "receiver");

	for (size_t i = 0; i < c->n_recv; i++)
		if (!strcmp(c->recv[i].name, s))
			return i;
	cfail(L, n, "no receiver named \"%s\"", s);
}

static size_t *
receiver_list(struct loader *L, struct config *c, yaml_node_t *n,
              size_t *count)
{
	size_t k = 0, *v;
	char **names = strings(L, n, "receivers", count);

	v = xcalloc(*count, sizeof *v);
	for (size_t i = 0; i < *count; i++) {
		yaml_node_t *item = n->type == YAML_SCALAR_NODE ? n
		                    : node(L, n->data.sequence.items.start[i]);

		v[k++] = receiver_index(L, c, item);
		free(names[i]);
	}
	free(names);
	return v;
}

static void
parse_route(struct loader *L, struct config *c, yaml_node_t *n,
            struct route *rt)
{
	bool have_recv = false;

	if (n->type != YAML_MAPPING_NODE)
		cfail(L, n, "route: expected a mapping");
	rt->events = EV_ALL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
	     p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
		const char *key = scalar(L, k, "key");

		if (!strcmp(key, "match")) {
			if (v->type != YAML_MAPPING_NODE)
				cfail(L, v, "match: expected a mapping of labels");
			for (yaml_node_pair_t *m = v->data.mapping.pairs.start;
			     m < v->data.mapping.pairs.top; m++) {
				size_t i = rt->n_match++;

				rt->keys = xrealloc(rt->keys, rt->n_match *
				                    sizeof *rt->keys);
				rt->vals = xrealloc(rt->vals, rt->n_match *
				                    sizeof *rt->vals);
				rt->keys[i] = str_dup(L, node(L, m->key), "label");
				rt->vals[i] = xstrdup(scalar(L, node(L, m->value),
				                             rt->keys[i]));
			}
		} else if (!strcmp(key, "events")) {
			size_t ne;
			char **ev = strings(L, v, key, &ne);

			rt->events = 0;
			for (size_t i = 0; i < ne; i++) {
				unsigned b = event_bit(ev[i]);

				if (!b)
					cfail(L, v, "events: unknown event \"%s\" "
					      "(down, up, reminder, stale, "
					      "cert_expiring, slow, flapping, "
					      "resolved)", ev[i]);
				rt->events |= b;
				free(ev[i]);
			}
			free(ev);
		} else if (!strcmp(key, "receivers")) {
			rt->recv = receiver_list(L, c, v, &rt->n_recv);
			have_recv = true;
		} else if (!strcmp(key, "continue")) {
			rt->cont = boolean(L, v, key);
		} else {
			cfail(L, k, "route: unknown key \"%s\" (match, events, "
			      "receivers, continue)", key);
		}
	}
	if (!have_recv)
		cfail(L, n, "route: no \"receivers\"");
}

struct config *
config_load(const char *path)
{
	struct loader L = {.path = path};
	struct config *c = xcalloc(1, sizeof *c);
	yaml_parser_t parser;
	yaml_node_t *root, *recv = NULL, *routes = NULL, *deflt = NULL;
	char *tmp;
	FILE *fp = fopen(path, "r");

	if (!fp)
		die(EX_CONFIG, "%s:", path);
	tmp = xstrdup(path);
	L.dir = xstrdup(dirname(tmp));
	free(tmp);
	c->path = xstrdup(path);
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &L.doc))
		die(EX_CONFIG, "%s:%lu:%lu: %s", path,
		    (unsigned long)parser.problem_mark.line + 1,
		    (unsigned long)parser.problem_mark.column + 1,
		    parser.problem ? parser.problem : "invalid YAML");
	yaml_parser_delete(&parser);
	fclose(fp);
	root = yaml_document_get_root_node(&L.doc);
	if (!root)
		die(EX_CONFIG, "%s:1:1: empty file", path);
	if (root->type != YAML_MAPPING_NODE)
		cfail(&L, root, "expected a mapping with \"receivers\"");
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
	     p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(&L, p->key), *v = node(&L, p->value);
		const char *key = scalar(&L, k, "key");

		if (!strcmp(key, "receivers"))
			recv = v;
		else if (!strcmp(key, "routes"))
			routes = v;
		else if (!strcmp(key, "default"))
			deflt = v;
		else if (!strcmp(key, "link"))
			c->link = str_dup(&L, v, key);
		else
			cfail(&L, k, "unknown key \"%s\" (receivers, routes, "
			      "default, link)", key);
	}
	if (!recv)
		cfail(&L, root, "no \"receivers\"");
	if (recv->type != YAML_MAPPING_NODE)
		cfail(&L, recv, "receivers: expected a mapping of names to "
		      "receivers");
	c->recv = xcalloc((size_t)(recv->data.mapping.pairs.top -
	                           recv->data.mapping.pairs.start) + 1,
	                  sizeof *c->recv);
	for (yaml_node_pair_t *p = recv->data.mapping.pairs.start;
	     p < recv->data.mapping.pairs.top; p++) {
		struct receiver *r = &c->recv[c->n_recv];

		parse_receiver(&L, node(&L, p->key), node(&L, p->value), r);
		for (size_t i = 0; i < c->n_recv; i++)
			if (!strcmp(c->recv[i].name, r->name))
				cfail(&L, node(&L, p->key), "receiver \"%s\" "
				      "is defined twice", r->name);
		c->n_recv++;
	}
	if (c->n_recv == 0)
		cfail(&L, recv, "receivers: none defined");
	if (routes) {
		if (routes->type != YAML_SEQUENCE_NODE)
			cfail(&L, routes, "routes: expected a list");
		c->routes = xcalloc((size_t)(routes->data.sequence.items.top -
		                             routes->data.sequence.items.start) + 1,
		                    sizeof *c->routes);
		for (yaml_node_item_t *it = routes->data.sequence.items.start;
		     it < routes->data.sequence.items.top; it++)
			parse_route(&L, c, node(&L, *it), &c->routes[c->n_routes++]);
	}
	if (deflt && !(deflt->type == YAML_SEQUENCE_NODE &&
	               deflt->data.sequence.items.top ==
	                   deflt->data.sequence.items.start))
		c->deflt = receiver_list(&L, c, deflt, &c->n_deflt);
	else if (!routes)
		cfail(&L, root, "no \"routes\" and no \"default\": no event "
		      "would go anywhere");
	yaml_document_delete(&L.doc);
	free(L.dir);
	return c;
}

static bool
route_matches(const struct route *rt, const json_t *ev)
{
	const json_t *labels = json_object_get(ev, "labels");
	const char *kind = json_string_value(json_object_get(ev, "event"));

	if (!kind || !(rt->events & event_bit(kind)))
		return false;
	for (size_t i = 0; i < rt->n_match; i++) {
		const json_t *v = json_object_get(labels, rt->keys[i]);
		char num[64];
		const char *s = json_string_value(v);

		if (!s && json_is_integer(v)) {
			snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
			         json_integer_value(v));
			s = num;
		} else if (!s && json_is_boolean(v)) {
			s = json_is_true(v) ? "true" : "false";
		}
		if (!s || strcmp(s, rt->vals[i]))
			return false;
	}
	return true;
}

/* route_matches on an event's raw labels object (NULL: none): 1, 0, or
 * -1 when the text would have to be decoded to tell. */
static int
route_matches_raw(const struct route *rt, unsigned kind_bit,
                  const char *labels, size_t labels_len)
{
	if (!(rt->events & kind_bit))
		return 0;
	for (size_t i = 0; i < rt->n_match; i++) {
		const char *v, *want = rt->vals[i];
		size_t vl, wl = strlen(want);
		int r = labels ? raw_member(labels, labels_len, rt->keys[i], &v,
		                            &vl)
		               : 0;

		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (*v == '"') {
			/* A string: equal when its text, without escapes, is. */
			if (memchr(v, '\\', vl))
				return -1;
			if (vl - 2 != wl || memcmp(v + 1, want, wl) != 0)
				return 0;
		} else if (*v == 't' || *v == 'f' || *v == 'n' || *v == '{' ||
		           *v == '[') {
			/* true and false match as words; null, objects and
			 * arrays never. */
			if (!((*v == 't' && !strcmp(want, "true")) ||
			      (*v == 'f' && !strcmp(want, "false"))))
				return 0;
		} else {
			/* A number: an integer's digits as jansson prints them;
			 * anything else (a fraction, an exponent, -0, a long
			 * one) is left to jansson. */
			size_t k = *v == '-' ? 1 : 0;

			if (vl > 18 || vl == k || (k && v[1] == '0'))
				return -1;
			for (size_t j = k; j < vl; j++)
				if (v[j] < '0' || v[j] > '9')
					return -1;
			if (vl != wl || memcmp(v, want, wl) != 0)
				return 0;
		}
	}
	return 1;
}

static size_t
add_unique(size_t *out, size_t n, const size_t *add, size_t n_add)
{
	for (size_t i = 0; i < n_add; i++) {
		size_t j;

		for (j = 0; j < n && out[j] != add[i]; j++)
			;
		if (j == n)
			out[n++] = add[i];
	}
	return n;
}

/* The receivers of the routes an event matches, in order: a route that
 * matches ends the walk unless it says continue; none: the default.
 * match() answers 1, 0, or -1 (can't tell: the walk gives -1). */
typedef int route_match_fn(const struct route *rt, const void *ev);

static long
route_walk(const struct config *c, route_match_fn *match, const void *ev,
           size_t *out)
{
	size_t n = 0;
	bool matched = false;

	for (size_t i = 0; i < c->n_routes; i++) {
		const struct route *rt = &c->routes[i];
		int m = match(rt, ev);

		if (m < 0)
			return -1;
		if (!m)
			continue;
		matched = true;
		n = add_unique(out, n, rt->recv, rt->n_recv);
		if (!rt->cont)
			break;
	}
	if (!matched)
		n = add_unique(out, n, c->deflt, c->n_deflt);
	return (long)n;
}

static int
tree_match(const struct route *rt, const void *ev)
{
	return route_matches(rt, ev);
}

size_t
config_route(const struct config *c, const json_t *ev, size_t *out)
{
	return (size_t)route_walk(c, tree_match, ev, out);
}

struct raw_event {
	unsigned kind_bit;
	const char *labels;
	size_t labels_len;
};

static int
raw_match(const struct route *rt, const void *ev)
{
	const struct raw_event *r = ev;

	return route_matches_raw(rt, r->kind_bit, r->labels, r->labels_len);
}

long
config_route_raw(const struct config *c, unsigned kind_bit,
                 const char *labels, size_t labels_len, size_t *out)
{
	struct raw_event r = { kind_bit, labels, labels_len };

	return route_walk(c, raw_match, &r, out);
}

static void
strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static void
wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void
config_free(struct config **cp)
{
	struct config *c = *cp;

	if (!c)
		return;
	for (size_t i = 0; i < c->n_recv; i++) {
		struct receiver *r = &c->recv[i];

		free(r->name);
		wipe_free(r->url);
		if (r->secret) {
			explicit_bzero(r->secret, r->secret_len);
			free(r->secret);
		}
		wipe_free(r->routing_key);
		wipe_free(r->password);
		free(r->url_shown);
		free(r->signature_header);
		for (size_t j = 0; j < r->n_headers; j++)
			free(r->headers[j]);
		free(r->headers);
		free(r->username);
		free(r->from);
		strv_free(r->to);
		strv_free(r->argv);
		free(r->link);
		free(r->severity);
		free(r->ca_file);
	}
	free(c->recv);
	for (size_t i = 0; i < c->n_routes; i++) {
		struct route *rt = &c->routes[i];

		for (size_t j = 0; j < rt->n_match; j++) {
			free(rt->keys[j]);
			free(rt->vals[j]);
		}
		free(rt->keys);
		free(rt->vals);
		free(rt->recv);
	}
	free(c->routes);
	free(c->deflt);
	free(c->link);
	free(c->path);
	free(c);
	*cp = NULL;
}
