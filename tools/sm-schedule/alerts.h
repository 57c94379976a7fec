/*
 * alerts.h - the "alerts:" key of sites.yaml (under defaults: and per
 * target): read from the YAML nodes with line:column for every error and
 * normalised into a JSON object that sm-alert reads (durations as
 * milliseconds, weekdays as a bit mask).
 */
#ifndef SM_SCHEDULE_ALERTS_H
#define SM_SCHEDULE_ALERTS_H

#include <jansson.h>

#include "ynode.h"

/* Called once per error found. */
typedef void alerts_err_fn(void *ctx, unsigned long line, unsigned long col,
                           const char *msg);

/* The normalised "alerts" value of node (a mapping, or false/off to turn
 * alerting off: JSON false), or NULL after reporting errors through err. */
json_t *alerts_from_yaml(const struct ynode *node, alerts_err_fn *err,
                         void *ctx);

/* A target's alerts over the defaults' ones, key by key (a new reference;
 * either may be NULL). */
json_t *alerts_merge(const json_t *defaults, const json_t *target);

#endif
