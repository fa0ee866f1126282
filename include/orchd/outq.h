/*
 * outq: a connection's bounded queue of outgoing bytes.
 *
 * Items point at reference-counted buffers, so one serialized frame can sit
 * in many connections' queues at once (a broadcast is built once per
 * worker).  The queue counts its bytes; the caller compares that with
 * max_send_queue and decides what happens at the limit (close 1008 for a
 * WebSocket, drop for HTTP).  Items with a higher priority are inserted
 * ahead of lower-priority ones that have not started to go out.
 */
#ifndef ORCHD_OUTQ_H
#define ORCHD_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define OUTQ_IOV_MAX 64 /* iovecs per writev */

struct outbuf {
	uint32_t refs;
	size_t len;
	uint8_t data[];
};

struct outq_item {
	struct outbuf *buf;
	size_t off; /* bytes of buf already written */
	int prio;
	struct outq_item *next;
};

struct outq {
	struct outq_item *head, *tail;
	size_t bytes; /* unwritten bytes queued */
	unsigned n;
};

/* A buffer of len bytes with one reference (the caller's). */
struct outbuf *outbuf_new(size_t len);
struct outbuf *outbuf_from(const void *data, size_t len);
void outbuf_ref(struct outbuf *b);
void outbuf_unref(struct outbuf *b);

/* Append (or insert by prio) a reference to b; the queue takes its own. */
void outq_push(struct outq *q, struct outbuf *b, int prio);
/* Fill iov with the queued bytes; returns the count (<= max). */
int outq_iov(const struct outq *q, struct iovec *iov, int max);
/* Drop n written bytes from the front. */
void outq_consume(struct outq *q, size_t n);
/* Drop everything not yet started; keep a partly written head item. */
void outq_drop_unstarted(struct outq *q);
void outq_clear(struct outq *q);

#endif
