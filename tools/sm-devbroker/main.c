/*
 * sm-devbroker - a Kafka cluster for development and tests, built on
 * librdkafka's mock cluster (rdkafka_mock.h).  Not for production: nothing
 * is persisted, acks are not replicated, and each partition keeps at most
 * about 5 MiB before it silently drops the oldest data.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sm.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t all_down_requested, all_up_requested;

static const char usage_text[] =
"usage: sm-devbroker [-n BROKERS] [-T TOPIC[:PARTITIONS]]...\n"
"\n"
"A throwaway Kafka cluster on 127.0.0.1 for development and tests, built on\n"
"librdkafka's mock cluster.  NOT FOR PRODUCTION: nothing is stored on disk,\n"
"acks are not replicated, and a partition silently drops its oldest data past\n"
"about 5 MiB.\n"
"\n"
"Prints the bootstrap servers on the first line of stdout, then serves until\n"
"SIGTERM or SIGINT.  Topics are created on first use (4 partitions) or ahead\n"
"with -T.\n"
"\n"
"  -n, --brokers N        brokers in the cluster (default 3)\n"
"  -T, --topic T[:P]      create topic T with P partitions (default 4)\n"
"  -h, --help             this text\n"
"  -V, --version          print the version\n"
"\n"
"Fault controls, one command per line on stdin:\n"
"  down ID | up ID        take broker ID (1..N) down or bring it back\n"
"  down all | up all      the same for every broker\n"
"  rtt ID MS              delay broker ID's responses by MS milliseconds\n"
"  error API ERR [COUNT]  make the next COUNT requests of API key API fail\n"
"                         with Kafka error code ERR (default COUNT 1)\n"
"  quit                   stop, as SIGTERM does\n"
"SIGUSR1 takes every broker down, SIGUSR2 brings every broker back.\n"
"Each command is answered with one line on stdout: \"ok\" or \"error: ...\".\n";

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		all_down_requested = 1;
	else if (sig == SIGUSR2)
		all_up_requested = 1;
	else
		stop_requested = 1;
}

static void
set_all(rd_kafka_mock_cluster_t *mc, int nbrokers, bool up)
{
	for (int id = 1; id <= nbrokers; id++) {
		if (up)
			rd_kafka_mock_broker_set_up(mc, id);
		else
			rd_kafka_mock_broker_set_down(mc, id);
	}
}

static void
create_topic(rd_kafka_mock_cluster_t *mc, const char *spec, int nbrokers)
{
	char *name = xstrdup(spec), *colon = strrchr(name, ':');
	long long partitions = 4;
	rd_kafka_resp_err_t err;

	if (colon) {
		*colon = '\0';
		partitions = opt_ll("-T", colon + 1, 1, 1000);
	}
	if (*name == '\0')
		die(EX_USAGE, "-T: empty topic name");
	err = rd_kafka_mock_topic_create(mc, name, (int)partitions,
	                                 nbrokers < 3 ? nbrokers : 3);
	if (err)
		die(EX_SOFTWARE, "topic %s: %s", name, rd_kafka_err2str(err));
	free(name);
}

static int
broker_id(const char *s, int nbrokers)
{
	const char *errstr;
	long long id;

	if (parse_ll(s, 1, nbrokers, &id, &errstr) < 0)
		return -1;
	return (int)id;
}

/* Runs one fault-control command; returns the reply line's text. */
static const char *
run_command(rd_kafka_mock_cluster_t *mc, int nbrokers, char *line)
{
	char *words[5] = { 0 };
	int n = 0, id;
	long long a, b, c = 1;
	const char *errstr;

	for (char *save = NULL, *w = strtok_r(line, " \t", &save);
	     w && n < 5; w = strtok_r(NULL, " \t", &save))
		words[n++] = w;
	if (n == 0)
		return NULL;
	if (strcmp(words[0], "quit") == 0) {
		stop_requested = 1;
		return "ok";
	}
	if (n == 2 && (strcmp(words[0], "down") == 0 ||
	               strcmp(words[0], "up") == 0)) {
		bool up = words[0][0] == 'u';

		if (strcmp(words[1], "all") == 0) {
			set_all(mc, nbrokers, up);
			return "ok";
		}
		if ((id = broker_id(words[1], nbrokers)) < 0)
			return "error: no such broker";
		if (up)
			rd_kafka_mock_broker_set_up(mc, id);
		else
			rd_kafka_mock_broker_set_down(mc, id);
		return "ok";
	}
	if (n == 3 && strcmp(words[0], "rtt") == 0) {
		if ((id = broker_id(words[1], nbrokers)) < 0 ||
		    parse_ll(words[2], 0, 3600000, &a, &errstr) < 0)
			return "error: usage: rtt ID MS";
		rd_kafka_mock_broker_set_rtt(mc, id, (int)a);
		return "ok";
	}
	if ((n == 3 || n == 4) && strcmp(words[0], "error") == 0) {
		if (parse_ll(words[1], 0, 1000, &a, &errstr) < 0 ||
		    parse_ll(words[2], -1, 1000, &b, &errstr) < 0 ||
		    (n == 4 && parse_ll(words[3], 1, 1000000, &c, &errstr) < 0))
			return "error: usage: error API ERR [COUNT]";
		for (long long i = 0; i < c; i++)
			rd_kafka_mock_push_request_errors(mc, (int16_t)a, 1,
			                                  (rd_kafka_resp_err_t)b);
		return "ok";
	}
	return "error: unknown command";
}

static rd_kafka_t *
host_handle_new(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];
	rd_kafka_t *rk;

	/* The mock cluster needs a client handle to live in; it never talks. */
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr))
		die(EX_SOFTWARE, "%s", errstr);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (rk == NULL)
		die(EX_SOFTWARE, "cannot create librdkafka handle: %s", errstr);
	return rk;
}

static void
serve(rd_kafka_mock_cluster_t *mc, int nbrokers)
{
	struct line_reader *lr = line_reader_new(STDIN_FILENO, "<stdin>", 4096);
	int saved_flags = fcntl(STDIN_FILENO, F_GETFL);
	bool stdin_open = saved_flags >= 0 &&
	    fcntl(STDIN_FILENO, F_SETFL, saved_flags | O_NONBLOCK) == 0;

	while (!stop_requested) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		char *line;
		size_t len;

		if (all_down_requested) {
			all_down_requested = 0;
			set_all(mc, nbrokers, false);
		}
		if (all_up_requested) {
			all_up_requested = 0;
			set_all(mc, nbrokers, true);
		}
		if (poll(&pfd, stdin_open ? 1 : 0, 200) <= 0)
			continue;
		/* One read may bring several commands: answer them all. */
		for (bool more = true; more;) {
			switch (line_reader_next(lr, &line, &len)) {
			case LINE_OK: {
				const char *reply = run_command(mc, nbrokers, line);

				if (reply)
					printf("%s\n", reply);
				break;
			}
			case LINE_TOO_LONG:
				printf("error: line too long\n");
				break;
			case LINE_AGAIN:
				more = false;
				break;
			case LINE_EOF:
			case LINE_ERROR:
				stdin_open = false; /* keep serving, no controls */
				more = false;
				break;
			}
		}
		fflush(stdout);
	}
	if (saved_flags >= 0) /* a terminal shared with a shell stays usable */
		fcntl(STDIN_FILENO, F_SETFL, saved_flags);
	line_reader_free(&lr);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "brokers", required_argument, NULL, 'n' },
		{ "topic", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char **topics = xcalloc((size_t)argc, sizeof *topics);
	int ntopics = 0, nbrokers = 3, c;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_t *rk;

	diag_init(argv[0]);
	while ((c = getopt_long(argc, argv, "n:T:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			nbrokers = (int)opt_ll("-n", optarg, 1, 16);
			break;
		case 'T':
			topics[ntopics++] = optarg;
			break;
		case 'h':
			usage_exit(usage_text, NULL, 0);
		case 'V':
			print_version_and_exit();
		default:
			usage_exit(usage_text, NULL, EX_USAGE);
		}
	}
	if (optind != argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGUSR1, on_signal);
	signal(SIGUSR2, on_signal);

	rk = host_handle_new();
	mc = rd_kafka_mock_cluster_new(rk, nbrokers);
	if (mc == NULL)
		die(EX_UNAVAILABLE, "cannot start the mock cluster");
	for (int i = 0; i < ntopics; i++)
		create_topic(mc, topics[i], nbrokers);
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	if (fflush(stdout) != 0)
		die(EX_IOERR, "stdout:");
	info("%d brokers up (development only, not for production)", nbrokers);

	serve(mc, nbrokers);

	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	free(topics);
	return 0;
}
