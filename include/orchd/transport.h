/*
 * transport: the byte stream under a connection, plain TCP or TLS.
 *
 * Everything above (HTTP, WebSocket, the protocol) reads and writes through
 * this small vtable, so plain and TLS connections share all of that code.
 * Return conventions follow recv(2)/writev(2): > 0 bytes, 0 EOF (recv
 * only), -1 with errno (EAGAIN: try again when the socket is ready).  A TLS
 * transport may need the opposite direction to make progress (a read that
 * must write, a renegotiation); it says so in c->tr_want, which
 * conn_set_state() adds to the watcher's events.
 */
#ifndef ORCHD_TRANSPORT_H
#define ORCHD_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct conn;

struct transport {
	const char *name;
	/* 1 done, 0 in progress (see c->tr_want), -1 failed (logged). */
	int (*handshake)(struct conn *c);
	ssize_t (*recv)(struct conn *c, void *buf, size_t len);
	ssize_t (*writev)(struct conn *c, const struct iovec *iov, int iovcnt);
	/* Stop sending (close_notify / SHUT_WR); best effort. */
	void (*shutdown)(struct conn *c);
	/* Release transport state; the fd is closed by conn. */
	void (*free)(struct conn *c);
};

extern const struct transport transport_plain;

#endif
