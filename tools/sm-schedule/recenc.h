/*
 * recenc.h - a validated target encoded as its compact JSON record text,
 * written directly: the same bytes as
 * json_dumps(target_to_json(t), JSON_COMPACT) (fuzz_sites_yaml checks it),
 * without building a JSON tree per target.
 */
#ifndef SM_SCHEDULE_RECENC_H
#define SM_SCHEDULE_RECENC_H

#include <stddef.h>

#include "sm.h"

struct strbuf {
	char *s;
	size_t len, cap;
};

/* Appends t's record to b (emptied first); false if a string in it is not
 * valid UTF-8 (json_dumps would refuse it too). */
bool target_record_encode(struct strbuf *b, const struct target *t);
void strbuf_free(struct strbuf *b);

#endif
