/*
 * slo.h - the slo: key of sites.yaml: a target's availability objective,
 * which sm-report reads for error budgets.  sm-schedule only checks it; it
 * is no field of the target record.
 */
#ifndef SLO_H
#define SLO_H

#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

/* Whether key is "slo". */
bool slo_key(const char *key);
/* 0 when v is a percentage between 0 and 100 (exclusive), written as a
 * number (99.9) or with a percent sign ("99.9%"); else -1 with why. */
int slo_check(const yaml_node_t *v, char *why, size_t len);

#endif
