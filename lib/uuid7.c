/* uuid7.c - UUIDv7 (RFC 9562): unix ms, a 12-bit sequence, random bits. */
#include <string.h>
#include <sys/random.h>

#include "sm.h"

static void
random_bytes(unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0)
			die(EX_SOFTWARE, "getrandom:");
		p += r;
		n -= (size_t)r;
	}
}

void
uuid7_new(char out[UUID_STR_LEN])
{
	/* rand_a holds a counter so ids minted in one ms still sort in order. */
	static int64_t last_ms;
	static unsigned seq;
	unsigned char b[16];
	int64_t ms = time_now_ms();

	random_bytes(b, sizeof b);
	if (ms <= last_ms) {
		if (++seq > 0xfff) { /* counter spent: borrow the next ms */
			last_ms++;
			seq = 0;
		}
		ms = last_ms;
	} else {
		last_ms = ms;
		seq = b[6] & 0x3; /* small random start, room to count */
	}
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | ((seq >> 8) & 0x0f));
	b[7] = (unsigned char)(seq & 0xff);
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
	snprintf(out, UUID_STR_LEN,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	         "%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
	         b[10], b[11], b[12], b[13], b[14], b[15]);
}

bool
uuid_is_valid(const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";

	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (strchr(hex, s[i]) == NULL || s[i] == '\0') {
			return false;
		}
	}
	return true;
}
