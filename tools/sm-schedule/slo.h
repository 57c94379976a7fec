/*
 * slo.h - the slo: key of sites.yaml: a target's availability objective,
 * which sm-report reads for error budgets.  sm-schedule only checks it; it
 * is no field of the target record.
 */
#ifndef SLO_H
#define SLO_H

#include <stdbool.h>
#include <stddef.h>

#include "ynode.h"

/* Whether key is "slo". */
bool slo_key(const char *key);
/* 0 and the percentage in *pct when v is one between 0 and 100
 * (exclusive), written as a number (99.9) or with a percent sign
 * ("99.9%"); else -1 with why. */
int slo_check(const struct ynode *v, double *pct, char *why, size_t len);

#endif
