/*
 * track.h - sm-kafka-sub's bookkeeping: which emitted records are still
 * unacknowledged, per partition, and the ack stream they come back on.
 */
#ifndef SUB_TRACK_H
#define SUB_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* One emitted record awaiting its acknowledgement. */
struct entry {
	int64_t offset;
	bool acked;
};

struct part {
	char *topic;
	char *qtopic;         /* topic as a JSON string, for the output */
	int32_t partition;
	struct entry *ring;   /* emitted records in offset order */
	size_t cap, head, count;
	int64_t next_commit;  /* every record before it is acked; -1: none */
	int64_t committed;    /* last offset the group has; -1: unknown */
	bool assigned;
	bool eof;             /* at the end of the partition (-e) */
	bool seen;            /* assigned before in this process */
};

struct tracker {
	struct part **parts;
	size_t n_parts;
	size_t inflight;      /* records emitted and not yet acked */
	size_t last;          /* index of the last lookup, a cheap cache */
	unsigned long commits; /* committed offsets that moved a partition */
};

void tracker_init(struct tracker *t);
void tracker_free(struct tracker *t);
/* The partition's entry, created (unassigned) when new. */
struct part *tracker_get(struct tracker *t, const char *topic,
                         int32_t partition);
/* NULL when unknown. */
struct part *tracker_find(struct tracker *t, const char *topic,
                          int32_t partition);

/* Note an emitted record (acked at once for a dead letter). */
void part_emit(struct tracker *t, struct part *p, int64_t offset, bool acked);
/* Acknowledge offset; false when it is not awaited (revoked, duplicate,
 * unknown). */
bool part_ack(struct tracker *t, struct part *p, int64_t offset);
/* Acknowledge everything emitted so far (without --ack, once stdout is
 * flushed). */
void tracker_ack_all(struct tracker *t);
/* Forget what is awaited (partition revoked: it will be re-delivered). */
void part_reset(struct tracker *t, struct part *p);

/* Offsets to commit: assigned partitions whose next_commit moved past
 * what the group has.  NULL when there is nothing. */
rd_kafka_topic_partition_list_t *tracker_commit_list(struct tracker *t);
/* Record that the group has these offsets now. */
void tracker_committed(struct tracker *t,
                       const rd_kafka_topic_partition_list_t *offsets);
/* True when nothing is left to commit. */
bool tracker_all_committed(const struct tracker *t);

/* ---- the ack stream: a FIFO (or a file that grows) ------------------- */

struct ack_stream;

/* Opens path with O_RDONLY|O_NONBLOCK; dies with 66 when it cannot. */
struct ack_stream *ack_stream_open(const char *path);
void ack_stream_free(struct ack_stream **as);
/* The fd to poll(2) for POLLIN, or -1 when it must simply be read again
 * now and then (a regular file, whose EOF only means "no more yet"). */
int ack_stream_poll_fd(const struct ack_stream *as);
/* Calls fn on each complete line available now (at most about max_bytes
 * read per call).  Returns false once the writer has closed a FIFO and
 * everything it wrote was handled. */
bool ack_stream_read(struct ack_stream *as, short revents,
                     void (*fn)(const char *line, size_t len,
                                unsigned long lineno, void *arg),
                     void *arg, size_t max_bytes);
const char *ack_stream_name(const struct ack_stream *as);

#endif
