/*
 * wsconn: a connection after the WebSocket upgrade.
 *
 * Owns the frame reader, the permessage-deflate context, liveness pings and
 * the close handshake.  Messages are handed to the endpoint the connection
 * was upgraded on: the echo endpoint sends them back, the daemon endpoint
 * (ws_path) answers per PROTOCOL.md.
 */
#ifndef ORCHD_WSCONN_H
#define ORCHD_WSCONN_H

#include <stddef.h>
#include <stdint.h>

#include "orchd/http.h"
#include "orchd/pmd.h"
#include "orchd/ws.h"

struct conn;

enum wsconn_endpoint {
	WSCONN_DAEMON = 0, /* ws_path */
	WSCONN_ECHO,       /* ws_echo_path */
};

struct wsconn {
	enum wsconn_endpoint endpoint;
	struct ws_reader rd;
	struct pmd_ctx pmd;
	int pmd_on;
	uint64_t last_rx_ms; /* monotonic; any input counts as liveness */
	uint64_t ping_sent_ms;
	unsigned ping_outstanding : 1;
	unsigned close_sent : 1;
	unsigned close_received : 1;
	unsigned failed : 1; /* reader failed: nothing more is parsed */
	unsigned slow : 1;   /* closed as a slow consumer (1008) */
};

/*
 * Validate an upgrade request (RFC 6455 section 4.2.1) and, if it is good,
 * queue the 101 response and switch the connection to CONN_WS_OPEN.
 * Returns 0, or the HTTP status to refuse it with (the caller answers);
 * *extra is set to extra response headers for that answer (or NULL).
 */
int wsconn_upgrade(struct conn *c, const struct http_request *req,
		   enum wsconn_endpoint ep, const char **extra);

/* Is this request an upgrade attempt (Upgrade: websocket)? */
int wsconn_is_upgrade(const struct http_request *req);

/* Bytes read on an open (or closing) WebSocket; consumes them all. */
void wsconn_input(struct conn *c, uint8_t *buf, size_t len);
/* Input arrived: the peer is alive. */
void wsconn_touch(struct conn *c);
/* The connection's timer fired (ping, pong timeout, close timeout). */
void wsconn_on_timer(struct conn *c);
/* The output queue drained. */
void wsconn_flushed(struct conn *c);
/* The timer the connection's WebSocket state asks for (ms; 0 = none). */
uint64_t wsconn_timeout_ms(const struct conn *c);

/*
 * Send one data message (WS_OP_TEXT or WS_OP_BINARY), compressed when the
 * connection negotiated permessage-deflate and the message is large
 * enough.  Closes the connection with 1008 when its queue would exceed
 * max_send_queue.  Returns 0, or -1 if the connection is closing.
 */
int wsconn_send(struct conn *c, unsigned opcode, const void *data, size_t len,
		int prio);

/*
 * Send one data message to n connections, serializing it once: one plain
 * frame shared by every connection that gets it uncompressed, one frame
 * compressed once (pmd_deflate_shared) shared by every connection whose
 * negotiated parameters allow it (server_no_context_takeover), and a
 * per-connection compression only for those that kept context takeover.
 * Connections that are not open are skipped; one over max_send_queue is
 * closed with 1008.  Returns the number of connections it was queued for.
 */
size_t wsconn_broadcast(struct conn **targets, size_t n, unsigned opcode,
			const void *data, size_t len, int prio);

/*
 * Start the close handshake with code (and reason): queue the close frame,
 * stop handing messages over, close TCP once the peer answered or
 * ws_close_timeout passed.  With WS_CLOSE_POLICY (slow consumer) everything
 * not yet started in the queue is dropped first.
 */
void wsconn_close(struct conn *c, unsigned code, const char *reason);

/* The connection is closing: release what others can see (quota, session). */
void wsconn_on_close(struct conn *c);
void wsconn_free(struct conn *c);

#endif
