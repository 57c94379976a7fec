/* uuid7.c - UUIDv7 (RFC 9562): unix ms, a 12-bit sequence, random bits. */
#include <string.h>
#include <sys/random.h>

#include "sm.h"

/* Random bytes from a pool refilled 4 KiB at a time: one getrandom(2) per
 * 256 ids instead of one per id (sm-check mints one per probe). */
static void
random_bytes(unsigned char *p, size_t n)
{
	static unsigned char pool[4096];
	static size_t left;

	if (left < n) {
		for (size_t got = 0; got < sizeof pool;) {
			ssize_t r = getrandom(pool + got, sizeof pool - got, 0);

			if (r < 0)
				die(EX_SOFTWARE, "getrandom:");
			got += (size_t)r;
		}
		left = sizeof pool;
	}
	memcpy(p, pool + sizeof pool - left, n);
	memset(pool + sizeof pool - left, 0, n); /* never hand out twice */
	left -= n;
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
	for (int i = 0, o = 0; i < 16; i++) {
		static const char hex[] = "0123456789abcdef";

		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0xf];
	}
	out[36] = '\0';
}

int
hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool
uuid_parse(const char *s, size_t n, unsigned char out[16])
{
	size_t i, o = 0;

	if (n != 36)
		return false;
	for (i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
			continue;
		}
		hi = hex_digit(s[i]);
		lo = hex_digit(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[o++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	return true;
}

bool
uuid_is_valid(const char *s)
{
	unsigned char bytes[16];

	/* NULL: what json_string_value gives for a value that is no
	 * string. */
	return s != NULL && uuid_parse(s, strlen(s), bytes);
}
