/* numparse.c - numbers with bounds and errors that name what was wrong. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

int
parse_ll(const char *s, long long min, long long max, long long *out,
         const char **errstr)
{
	char *end;
	long long v;

	errno = 0;
	if (s == NULL || *s == '\0' || *s == ' ' || *s == '\t') {
		*errstr = "invalid";
		return -1;
	}
	v = strtoll(s, &end, 10);
	if (*end != '\0') {
		*errstr = "invalid";
		return -1;
	}
	if ((errno == ERANGE && v == LLONG_MIN) || v < min) {
		*errstr = "too small";
		return -1;
	}
	if ((errno == ERANGE && v == LLONG_MAX) || v > max) {
		*errstr = "too large";
		return -1;
	}
	*out = v;
	return 0;
}

long long
opt_ll(const char *optname, const char *s, long long min, long long max)
{
	const char *errstr;
	long long v;

	if (parse_ll(s, min, max, &v, &errstr) < 0)
		die(EX_USAGE, "%s: \"%s\" is %s (%lld..%lld)", optname, s, errstr,
		    min, max);
	return v;
}

int
parse_duration_ms(const char *s, int64_t *out_ms)
{
	static const struct {
		const char *suffix;
		int64_t ms;
	} units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 }, { "", 1 },
	};
	char *end;
	long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		if (v > INT64_MAX / units[i].ms)
			return -1;
		*out_ms = v * units[i].ms;
		return 0;
	}
	return -1;
}

int64_t
opt_duration_ms(const char *optname, const char *s, int64_t min_ms,
                int64_t max_ms)
{
	int64_t v;

	if (parse_duration_ms(s, &v) < 0)
		die(EX_USAGE, "%s: \"%s\" is not a duration (such as 250ms, 30s, "
		    "5m, 1h)", optname, s);
	if (v < min_ms || v > max_ms)
		die(EX_USAGE, "%s: \"%s\" is out of range (%lldms..%lldms)",
		    optname, s, (long long)min_ms, (long long)max_ms);
	return v;
}
