/*
 * fuzz_pgrow - sm-pg-write's rows (tools/sm-pg-write/row.c, copybin.c):
 * the scanner's COPY row against the tree's (json_line_parse,
 * result_validate, pgw_row_format), and each row's binary tuple decoded
 * and compared, value by value, with its text.  The comparisons are the
 * unit test's (tests/unit/test_pgw_row.c), run here on any input.
 */
#define main test_pgw_row_main
#include "../tests/unit/test_pgw_row.c"
#undef main

#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line;

	if (memchr(data, '\0', size) != NULL)
		return 0; /* compare() takes a C string */
	line = fuzz_str(data, size);
	compare(line);
	FUZZ_ASSERT(tally.wrong == 0, "%s", tally.first_wrong);
	free(line);
	return 0;
}
