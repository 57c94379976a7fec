/* timefmt.c - clocks and RFC 3339 timestamps in UTC with milliseconds. */
#include <ctype.h>
#include <string.h>
#include <time.h>

#include "sm.h"

int64_t
time_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
time_format_ms(int64_t unix_ms, char out[TIME_STR_LEN])
{
	int64_t ms = unix_ms % 1000, secs = unix_ms / 1000;
	time_t t;
	struct tm tm;

	if (ms < 0) {
		ms += 1000;
		secs--;
	}
	t = (time_t)secs;
	gmtime_r(&t, &tm);
	/* strftime keeps the compiler sure every field fits. */
	/* %04Y: years before 1000 as 4 digits too, as RFC 3339 wants. */
	strftime(out, TIME_STR_LEN, "%04Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + 19, TIME_STR_LEN - 19, ".%03uZ", (unsigned)ms % 1000);
}

static int
digits(const char **s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)**s))
			return -1;
		v = v * 10 + (*(*s)++ - '0');
	}
	*out = v;
	return 0;
}

/* One of the bytes of set: a loop, not strchr (a call for each of the
 * separators of every time; sm-alert reads five times per result). */
static int
expect(const char **s, const char *set)
{
	for (; *set; set++)
		if (**s == *set) {
			(*s)++;
			return 0;
		}
	return -1;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
	static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dim[m - 1];
}

int
time_parse_ms(const char *s, int64_t *unix_ms)
{
	int y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0, sign = 0;
	int64_t t;

	if (digits(&s, 4, &y) || expect(&s, "-") || digits(&s, 2, &mo) ||
	    expect(&s, "-") || digits(&s, 2, &d) || expect(&s, "Tt ") ||
	    digits(&s, 2, &h) || expect(&s, ":") || digits(&s, 2, &mi) ||
	    expect(&s, ":") || digits(&s, 2, &sec))
		return -1;
	if (*s == '.') {
		int scale = 100;

		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		for (; isdigit((unsigned char)*s); s++, scale /= 10)
			ms += (*s - '0') * scale;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '-' ? -1 : 1;
		if (digits(&s, 2, &oh) || expect(&s, ":") || digits(&s, 2, &om) ||
		    oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	if (*s != '\0' || mo < 1 || mo > 12 || d < 1 ||
	    d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
		return -1;
	t = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
	     sign * (oh * 3600 + om * 60)) * 1000 + ms;
	/* In UTC still a year of four digits, and not year 0 (PostgreSQL
	 * has none): 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, so
	 * every time read here prints back as one that reads the same. */
	if (t < TIME_MIN_MS || t > TIME_MAX_MS)
		return -1;
	*unix_ms = t;
	return 0;
}
