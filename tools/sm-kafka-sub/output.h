/*
 * output.h - sm-kafka-sub's stdout: an owned buffer written with write(2).
 *
 * With --ack, stdout is non-blocking: the stage after us may be blocked
 * writing its acks to us, and a blocking write here would deadlock the two.
 * Without --ack it blocks, and a flush means the records are in the pipe.
 */
#ifndef SUB_OUTPUT_H
#define SUB_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

struct output {
	int fd;
	int saved_flags;   /* to restore at exit; -1 if unchanged */
	char *buf;
	size_t off;        /* bytes of buf already written */
	size_t len, cap;
};

void output_init(struct output *o, int fd, bool nonblock);
/* Restores the fd's flags and frees the buffer. */
void output_free(struct output *o);
void output_append(struct output *o, const void *data, size_t n);
/* Bytes appended and not yet written. */
size_t output_pending(const struct output *o);
/* Write what the fd takes now (everything when it blocks); 0, or -1 with
 * errno on a write error. */
int output_flush(struct output *o);
/* Write at most up to the end of the line being written; 0 or -1. */
int output_flush_line(struct output *o);
/* True when everything written so far ends with a newline. */
bool output_at_line_end(const struct output *o);
/* Forget what was not written. */
void output_discard(struct output *o);

#endif
