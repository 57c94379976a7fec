/*
 * slo.c - the slo: key of sites.yaml (slo.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slo.h"

bool
slo_key(const char *key)
{
	return strcmp(key, "slo") == 0;
}

int
slo_check(const struct ynode *v, double *pct, char *why, size_t len)
{
	const char *s;
	char *end;
	double d;

	if (!(s = ynode_text(v))) {
		snprintf(why, len, "slo: must be a percentage such as 99.9");
		return -1;
	}
	d = strtod(s, &end);
	if (end != s && *end == '%')
		end++;
	if (end == s || *end != '\0' || !(d > 0 && d < 100)) {
		snprintf(why, len, "slo: \"%s\" is not a percentage between 0 "
		         "and 100 (such as 99.9)", s);
		return -1;
	}
	*pct = d;
	return 0;
}
