/*
 * fuzz_sites_yaml - sm-schedule's configuration loader
 * (tools/sm-schedule/config.c) on any file: sites.yaml (YAML) when the
 * first byte is even, the NDJSON target list when it is odd.  It either
 * refuses the file or loads targets whose records sm-check reads, each
 * record byte for byte what jansson makes of it (the loader encodes
 * records itself: tools/sm-schedule/recenc.c).
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "../tools/sm-schedule/config.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	diag_init("fuzz_sites_yaml");
	/* ${VAR} substitution reads the environment: keep it known. */
	setenv("SM_FUZZ", "value", 1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum config_format fmt;
	struct config *c;
	char path[64], err[256];
	int fd;

	if (size == 0)
		return 0;
	fmt = data[0] & 1 ? CONFIG_NDJSON : CONFIG_YAML;
	fd = memfd_create("sites", MFD_CLOEXEC);
	FUZZ_ASSERT(fd >= 0, "memfd_create");
	FUZZ_ASSERT(write(fd, data + 1, size - 1) == (ssize_t)(size - 1),
	            "write");
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	c = config_load(path, fmt);
	if (c != NULL) {
		for (size_t i = 0; i < c->n; i++) {
			struct config_target *t = &c->v[i];
			char *line = xasprintf("%.*s}", (int)t->json_len, t->json);
			json_t *o = json_line_parse(line, strlen(line), err,
			                            sizeof err);
			struct target *tt;
			json_t *back;
			char *dumped;

			FUZZ_ASSERT(o != NULL, "target %zu: %s: %s", i, err, line);
			tt = target_from_json(o, err, sizeof err);
			FUZZ_ASSERT(tt != NULL, "target %zu refused: %s: %s", i,
			            err, line);
			FUZZ_ASSERT(strcmp(tt->target, t->name) == 0,
			            "name %s vs %s", tt->target, t->name);
			FUZZ_ASSERT(t->interval_ms >= CONFIG_MIN_INTERVAL_MS &&
			            t->interval_ms <= CONFIG_MAX_INTERVAL_MS,
			            "interval %lld", (long long)t->interval_ms);
			back = target_to_json(tt);
			dumped = json_dumps(back, JSON_COMPACT);
			FUZZ_ASSERT(dumped != NULL && strcmp(dumped, line) == 0,
			            "target %zu encoded as %s, jansson: %s", i,
			            line, dumped ? dumped : "(null)");
			free(dumped);
			json_decref(back);
			target_free(&tt);
			json_decref(o);
			free(line);
		}
		config_free(&c);
	}
	close(fd);
	return 0;
}
