/*
 * slo.c - the slo: of each target in a sites.yaml (sites.yaml(5)), for
 * the error budget.  The file is read by sm-schedule's own loader, so a
 * target is found by the same name (given, or made from its URL), with
 * defaults, merge keys and ${VAR} applied, and a file sm-schedule refuses
 * is refused here too, with its errors.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sm.h"
#include "report.h"
#include "../sm-schedule/config.h"

static int
by_name(const void *a, const void *b)
{
	return target_name_cmp(a, b);
}

void
slo_apply(const struct config *cfg, struct report *r)
{
	for (size_t i = 0; i < cfg->n; i++) {
		struct rtarget key, *found;

		if (!cfg->v[i].slo)
			continue;
		key.name = cfg->v[i].name;
		found = bsearch(&key, r->targets, r->n, sizeof *r->targets,
		                by_name);
		if (found != NULL)
			found->slo = cfg->v[i].slo;
	}
}
