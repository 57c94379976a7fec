/* stats.c - when to write the periodic stats line (--stats-interval), so
 * `journalctl -u` shows each stage's health at a glance. */
#include <stdlib.h>

#include "sm.h"

void
stats_clock_init(struct stats_clock *c, int64_t interval_ms)
{
	c->interval_ns = interval_ms > 0 ? interval_ms * 1000000 : 0;
	c->next_ns = c->interval_ns ? mono_now_ns() + c->interval_ns : 0;
}

int64_t
stats_interval_default_ms(void)
{
	const char *env = getenv("SM_STATS_INTERVAL");
	int64_t ms;

	if (env == NULL || *env == '\0')
		return 0;
	if (parse_duration_ms(env, &ms) < 0 || ms < 0 ||
	    ms > STATS_INTERVAL_MAX_MS)
		die(EX_USAGE, "SM_STATS_INTERVAL: \"%s\" is not a duration "
		    "from 0 to 1d (such as 60s)", env);
	return ms;
}

int64_t
stats_interval_option_ms(const char *arg)
{
	return opt_duration_ms("--stats-interval", arg, 0,
	                       STATS_INTERVAL_MAX_MS);
}

bool
stats_clock_due(struct stats_clock *c)
{
	int64_t now;

	if (c->interval_ns == 0 || (now = mono_now_ns()) < c->next_ns)
		return false;
	/* After a long stall, report once and keep the rhythm from now. */
	c->next_ns += c->interval_ns;
	if (c->next_ns <= now)
		c->next_ns = now + c->interval_ns;
	return true;
}

int
stats_clock_timeout_ms(const struct stats_clock *c)
{
	int64_t left;

	if (c->interval_ns == 0)
		return -1;
	left = (c->next_ns - mono_now_ns() + 999999) / 1000000;
	return left < 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
}
