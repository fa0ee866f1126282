/*
 * conn: one client connection of a worker, from accept to free.
 *
 * The state enum and conn_set_state() are the one place where the I/O
 * watcher's events and the timer change.  A connection is never freed where
 * it may still be in use: conn_close() moves it to CONN_CLOSED and onto the
 * worker's dead list, and the worker frees that list before the loop blocks
 * (conn_reap()).
 *
 * Memory: an idle connection holds no buffer.  Reads go to the worker's
 * scratch buffer; only bytes that cannot be consumed yet (half a request
 * head) are kept, in a buffer of exactly their size.  Output lives in the
 * outq only while it is queued.
 */
#ifndef ORCHD_CONN_H
#define ORCHD_CONN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "orchd/outq.h"

struct worker;
struct transport;
struct wsconn;
struct proto_conn;

enum conn_state {
	CONN_TLS_HANDSHAKE = 0, /* TLS handshake in progress */
	CONN_HTTP_READ,         /* waiting for (the rest of) a request head */
	CONN_HTTP_BODY,         /* discarding a request body */
	CONN_HTTP_WAIT,         /* an answer is being prepared (async) */
	CONN_HTTP_WRITE,        /* writing a response */
	CONN_LINGER,            /* response sent, SHUT_WR done; draining input */
	CONN_WS_OPEN,           /* WebSocket open */
	CONN_WS_CLOSING,        /* close frame queued; waiting for the peer's */
	CONN_CLOSED,            /* on the dead list, fd closed */
};

struct conn {
	struct worker *w;
	int fd;
	enum conn_state state;
	const struct transport *tr;
	void *tls;       /* SSL * on TLS listeners */
	unsigned tr_want; /* EV_READ/EV_WRITE the transport needs */
	ev_io io;
	ev_timer timer;

	char *rbuf; /* unconsumed input, exactly rlen bytes */
	size_t rlen;
	struct outq q;

	uint64_t body_left; /* request body bytes still to come */
	/* A request whose body an endpoint wants: head + body, collected. */
	uint8_t *hold;
	size_t hold_len, hold_head;
	int keep_alive;     /* keep the connection after this response */
	int nrequests;
	int eof;
	/*
	 * When the request head being read (or the TLS handshake) must be
	 * complete, monotonic ms; 0 between requests.  Absolute, so that a
	 * client trickling bytes does not push it back (slowloris).
	 */
	uint64_t head_deadline;            /* peer closed its side */

	struct wsconn *ws;         /* after the upgrade */
	struct proto_conn *proto; /* on ws_path */
	int refs; /* asynchronous operations that still point here */
	/*
	 * An asynchronous step that can be abandoned (work queued on a thread
	 * pool): conn_close() calls cancel(c) once, which lets go of it
	 * (and of its ref).  Set before entering CONN_HTTP_WAIT, so that the
	 * client's EOF is watched for (and closes); cleared by the step when
	 * it completes, followed by conn_update_io().
	 */
	void (*cancel)(struct conn *c);
	void *cancel_arg;
	/*
	 * Output is written once per loop iteration, before the loop blocks
	 * (conn_flush_pending()): many frames queued in one iteration go out
	 * in one writev, and EV_WRITE is armed only when the socket is full.
	 */
	int wblocked;             /* the last write hit EAGAIN */
	int in_flush_list;
	struct conn *flush_next;

	struct sockaddr_storage peer;
	int admin;                /* accepted on a listener with "admin" */
	struct conn *prev, *next; /* the worker's live or dead list */
	/*
	 * What this connection has added to its worker's gauges (shm.h): the
	 * state counted + 1 (0: none) and the output bytes counted.
	 */
	int gauge_state;
	int gauge_draining;
	size_t gauge_qbytes;
};

const char *conn_state_name(enum conn_state st);

/* Take ownership of an accepted, non-blocking fd. */
struct conn *conn_new(struct worker *w, int fd,
		      const struct sockaddr_storage *peer, int tls);
/* Bring the worker's send_queue_bytes gauge up to date with c->q. */
void conn_account_queue(struct conn *c);
/* The worker started draining: c counts as a draining connection. */
void conn_account_draining(struct conn *c);
void conn_set_state(struct conn *c, enum conn_state st);
/* Re-evaluate the watcher's events (after queueing output). */
void conn_update_io(struct conn *c);
/* Close now and queue for freeing. */
void conn_close(struct conn *c, const char *why);
/* Queue a whole HTTP response and switch to CONN_HTTP_WRITE. */
void conn_send(struct conn *c, const char *data, size_t len, int keep_alive);
/* Answer an HTTP error with a JSON body and Connection: close. */
void conn_send_error(struct conn *c, int status, const char *extra_headers);
/* Queue bytes (any state); returns the queued byte count afterwards. */
size_t conn_queue(struct conn *c, struct outbuf *b, int prio);
/* Write what is queued; 1 all written, 0 more to go, -1 closed. */
int conn_flush(struct conn *c);
/*
 * A response was queued outside the input path (after an asynchronous
 * step): write it and carry on with the connection.
 */
void conn_response_ready(struct conn *c);
/* Is the connection idle between requests (safe to close on drain)? */
int conn_is_idle(const struct conn *c);
/* Write what connections queued this iteration (the prepare watcher). */
void conn_flush_pending(struct worker *w);
/* Free every connection on the worker's dead list. */
void conn_reap(struct worker *w);
/* "1.2.3.4:5678" for logs. */
const char *conn_peer_str(const struct conn *c);

#endif
