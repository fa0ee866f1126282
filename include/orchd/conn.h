/*
 * conn: one client connection of a worker, from accept to free.
 *
 * The state enum and conn_set_state() are the one place where watchers and
 * timers change.  A connection is never freed where it may still be in use:
 * conn_close() moves it to CONN_CLOSED and onto the worker's dead list, and
 * the worker frees that list between loop iterations (conn_reap()).
 */
#ifndef ORCHD_CONN_H
#define ORCHD_CONN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct worker;

enum conn_state {
	CONN_HTTP_READ = 0, /* waiting for (the rest of) a request head */
	CONN_HTTP_BODY,     /* discarding a request body */
	CONN_HTTP_WRITE,    /* writing a response */
	CONN_LINGER,        /* response sent, SHUT_WR done; draining input */
	CONN_CLOSED,        /* on the dead list, fd closed */
};

struct conn {
	struct worker *w;
	int fd;
	enum conn_state state;
	ev_io io;
	ev_timer timer;

	/* Allocated on demand and returned when drained: idle costs nothing. */
	char *rbuf;
	size_t rlen;
	char *wbuf;
	size_t wlen, woff;

	uint64_t body_left; /* request body bytes still to discard */
	int keep_alive;     /* keep the connection after this response */
	int nrequests;

	struct sockaddr_storage peer;
	struct conn *prev, *next; /* the worker's live or dead list */
};

const char *conn_state_name(enum conn_state st);

/* Take ownership of an accepted, non-blocking fd. */
struct conn *conn_new(struct worker *w, int fd,
		      const struct sockaddr_storage *peer);
void conn_set_state(struct conn *c, enum conn_state st);
/* Close now (RST-free where possible) and queue for freeing. */
void conn_close(struct conn *c, const char *why);
/* Queue a whole response and switch to CONN_HTTP_WRITE. */
void conn_send(struct conn *c, const char *data, size_t len, int keep_alive);
/* Answer an HTTP error with a JSON body and Connection: close. */
void conn_send_error(struct conn *c, int status, const char *extra_headers);
/* Is the connection idle between requests (safe to close on drain)? */
int conn_is_idle(const struct conn *c);
/* Free every connection on the worker's dead list. */
void conn_reap(struct worker *w);

#endif
