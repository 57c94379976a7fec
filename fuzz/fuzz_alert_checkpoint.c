/*
 * fuzz_alert_checkpoint - sm-alert's checkpoint loader (engine_load_buf,
 * tools/sm-alert/engine.c) on any bytes, into an engine configured with
 * the targets of `sites` below.  It loads them, or refuses them and leaves
 * the state as it was (what the engine would write is what an engine that
 * loaded nothing writes); it never crashes or reads out of bounds.
 *
 * The two FNV-1a hashes (the header's, the whole file's) stop nearly every
 * mutation at the door, so each input is also tried with them made right:
 * the parser behind them is reached.  What loads is then used (results for
 * every target from two locations, with Kafka coordinates, and scans: the
 * state must be one the engine can work on), and the checkpoint the engine
 * then writes loads into a new engine that writes the same bytes again.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "../tools/sm-alert/alert.h"
#include "../tools/sm-schedule/config.h"

/* The seeds (fuzz/corpus/alert_checkpoint/) were written by sm-alert with
 * these targets and one more, "gone", which is not here: loading them
 * resolves its incidents as removed. */
static const char sites[] =
	"targets:\n"
	"  - name: a\n"
	"    url: https://a.example/\n"
	"    alerts: {failure_threshold: 1, success_threshold: 1, quorum: 1,\n"
	"             flap_changes: 2, flap_window: 1h, slow_ms: 100,\n"
	"             slow_window: 10m, cert_days: 30, remind_every: 1m}\n"
	"  - name: b\n"
	"    url: https://b.example/\n"
	"  - name: c\n"
	"    url: http://c.example/\n"
	"    alerts: false\n";

static const char *const names[] = {"a", "b", "c", "gone"};
static const char *const locs[] = {"eu-west", "us-east"};

static struct config *cfg;
static FILE *devnull;
static char *fresh;     /* the checkpoint of an engine that loaded nothing */
static size_t fresh_len;

static struct engine *
engine(void)
{
	struct engine_opts o = {.out = devnull, .outbox_max = 16};
	struct engine *e = engine_new(&o);

	engine_set_config(e, cfg);
	return e;
}

/* What e would write as its checkpoint. */
static char *
dump(struct engine *e, size_t *len)
{
	char *buf = NULL;
	FILE *fp = open_memstream(&buf, len);

	FUZZ_ASSERT(fp != NULL, "open_memstream");
	FUZZ_ASSERT(engine_write(e, fp) == 0, "engine_write");
	FUZZ_ASSERT(fclose(fp) == 0, "fclose");
	return buf;
}

static uint64_t
fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The header's hash (checkpoints 2 and 3: magic, then the header's length,
 * the hash its last 8 bytes), then the whole file's (its last 8). */
static void
fix_hashes(unsigned char *buf, size_t len)
{
	static const char magic[] = "sm-alert checkpoint ";
	const size_t mlen = sizeof(magic) - 1 + 2; /* "N\n" */
	uint32_t hlen;
	uint64_t h;

	if (len >= mlen + 4 + 8 && !memcmp(buf, magic, sizeof(magic) - 1)) {
		memcpy(&hlen, buf + mlen, 4);
		if (hlen >= mlen + 4 + 8 && hlen <= len - 8) {
			h = fnv(buf, hlen - 8);
			memcpy(buf + hlen - 8, &h, 8);
		}
	}
	h = fnv(buf, len - 8);
	memcpy(buf + len - 8, &h, 8);
}

/* Results for every target (and one the engine does not know) from two
 * locations, failing and recovering, slow, with a certificate near its
 * end and Kafka coordinates, after the newest time the state holds; then
 * the timers, soon and much later. */
static void
use(struct engine *e)
{
	int64_t t0 = engine_watermark(e);
	unsigned n = 0;

	/* The results' times stay times (to year 9999). */
	if (t0 <= 0)
		t0 = INT64_C(1764000000000);
	if (t0 > TIME_MAX_MS - INT64_C(86400000) * 50)
		t0 = TIME_MAX_MS - INT64_C(86400000) * 50;
	for (int i = 0; i < 6; i++) {
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			for (size_t l = 0; l < 2; l++) {
				struct result r = {
					.target = names[k],
					.target_len = strlen(names[k]),
					.probe = locs[l],
					.probe_len = strlen(locs[l]),
					.error = i % 2 ? NULL : "refused",
					.error_len = i % 2 ? 0 : 7,
					.ktopic = "results",
					.ktopic_len = 7,
					.kpart = (long long)l,
					.koff = i,
					.started_ms = t0 + 1000 * (i + 1),
					.ok = i % 2,
					.status = i % 2 ? 200 : -1,
					.kind = i % 2 ? 0 : 2,
					.duration_ms = 150 + i,
					.cert_na = t0 + INT64_C(86400000) * 3,
				};

				r.kafka = "{}";
				r.kafka_len = 2;
				n++;
				memcpy(r.id, &n, sizeof(n));
				memcpy(r.id + 8, &t0, sizeof(t0));
				engine_result(e, &r);
			}
		}
		engine_maybe_scan(e);
	}
	engine_scan(e, t0 + 600000, true);
	engine_scan(e, t0 + INT64_C(86400000) * 40, true);
}

/* The checkpoint of e, loaded into a new engine, is written back byte for
 * byte. */
static void
round_trip(struct engine *e)
{
	size_t alen, blen;
	char *a = dump(e, &alen), *b;
	struct engine *e2 = engine();

	FUZZ_ASSERT(engine_load_buf(e2, (unsigned char *)a, alen,
	                            "round trip") == 0,
	            "a checkpoint written does not load (%zu bytes)", alen);
	b = dump(e2, &blen);
	FUZZ_ASSERT(alen == blen && !memcmp(a, b, alen),
	            "a checkpoint loaded is not written back the same");
	engine_free(&e2);
	free(a);
	free(b);
}

static void
try_load(const unsigned char *data, size_t size)
{
	struct engine *e = engine();
	size_t len;
	char *after;

	if (engine_load_buf(e, data, size, "fuzz") < 0) {
		after = dump(e, &len);
		FUZZ_ASSERT(len == fresh_len && !memcmp(after, fresh, len),
		            "a checkpoint refused changed the state");
		free(after);
	} else {
		round_trip(e);
		use(e);
		round_trip(e);
	}
	engine_free(&e);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[64];
	int fd;
	struct engine *e;

	(void)argc;
	(void)argv;
	diag_init("fuzz_alert_checkpoint");
	fd = memfd_create("sites", MFD_CLOEXEC);
	FUZZ_ASSERT(fd >= 0, "memfd_create");
	FUZZ_ASSERT(write(fd, sites, sizeof(sites) - 1) ==
	            (ssize_t)(sizeof(sites) - 1), "write");
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	cfg = config_load(path, CONFIG_YAML);
	FUZZ_ASSERT(cfg != NULL && cfg->n == 3, "the sites do not load");
	close(fd);
	devnull = fopen("/dev/null", "w");
	FUZZ_ASSERT(devnull != NULL, "/dev/null");
	e = engine();
	fresh = dump(e, &fresh_len);
	engine_free(&e);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *fixed;

	try_load(data, size);
	if (size < 8)
		return 0;
	fixed = xmalloc(size);
	memcpy(fixed, data, size);
	fix_hashes(fixed, size);
	if (memcmp(fixed, data, size))
		try_load(fixed, size);
	free(fixed);
	return 0;
}
