/*
 * wsconn: the WebSocket side of a connection.
 *
 * The close handshake follows RFC 6455 section 7: whoever sends a close
 * frame sends nothing after it; the server closes TCP once both close
 * frames have been exchanged (or at ws_close_timeout), half-closing first
 * and lingering briefly so that our close frame is not destroyed by an RST.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orchd/conn.h"
#include "orchd/log.h"
#include "orchd/proto.h"
#include "orchd/transport.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/wsconn.h"
#include "orchd/deliver.h"

#define PRIO_CONTROL 1000 /* pongs and pings jump queued data */

static uint64_t
now_ms(const struct conn *c)
{
	return (uint64_t)(ev_now(c->w->loop) * 1000.0);
}

int
wsconn_is_upgrade(const struct http_request *req)
{
	const struct http_str *up = http_header_get(req, "Upgrade");

	return up != NULL && http_token_list_has(up, "websocket");
}

int
wsconn_upgrade(struct conn *c, const struct http_request *req,
	       enum wsconn_endpoint ep, const char **extra)
{
	const struct config *cfg = c->w->cfg;
	const struct http_str *h;
	char accept[WS_ACCEPT_LEN + 1], ext[PMD_RESPONSE_MAX] = "";
	char resp[512];
	struct pmd_params params;
	struct ws_reader_limits lim;
	struct wsconn *ws;
	struct outbuf *b;
	int n, pmd_on = 0;

	*extra = NULL;
	if (req->method != HTTP_METHOD_GET) {
		*extra = "Allow: GET\r\n";
		return 405;
	}
	if (!wsconn_is_upgrade(req)) {
		*extra = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
		return 426;
	}
	if (req->version_minor < 1 || req->content_length > 0)
		return 400;
	h = http_header_get(req, "Connection");
	if (h == NULL || !http_token_list_has(h, "upgrade"))
		return 400;
	h = http_header_get(req, "Sec-WebSocket-Version");
	if (h == NULL || !http_str_eq(h, "13")) {
		*extra = "Sec-WebSocket-Version: 13\r\n";
		return 426;
	}
	h = http_header_get(req, "Sec-WebSocket-Key");
	if (h == NULL || !ws_key_valid(h->p, h->len) ||
	    ws_accept_key(h->p, h->len, accept) == -1)
		return 400;
	h = http_header_get(req, "Origin");
	if (!config_origin_allowed(cfg, h != NULL ? h->p : NULL,
				   h != NULL ? h->len : 0))
		return 403;

	/* Offers may be spread over several header lines, in order. */
	for (int i = 0; i < req->nheaders && !pmd_on; i++) {
		const struct http_header *hd = &req->headers[i];

		if (hd->name.len == 24 &&
		    strncasecmp(hd->name.p, "Sec-WebSocket-Extensions", 24) ==
			    0 &&
		    pmd_negotiate(&c->w->pmdcfg, hd->value.p, hd->value.len,
				  &params, ext, sizeof(ext)) == 1)
			pmd_on = 1;
	}

	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 101 Switching Protocols\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Sec-WebSocket-Accept: %s\r\n"
		     "%s%s%s"
		     "\r\n",
		     accept, pmd_on ? "Sec-WebSocket-Extensions: " : "", ext,
		     pmd_on ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(resp))
		return 500;

	ws = util_calloc(1, sizeof(*ws));
	ws->endpoint = ep;
	ws->pmd_on = pmd_on;
	if (pmd_on)
		pmd_ctx_init(&ws->pmd, &params, &c->w->pmdcfg);
	memset(&lim, 0, sizeof(lim));
	lim.max_message_size = (size_t)cfg->ws_max_message_size;
	lim.reject_binary = ep == WSCONN_DAEMON;
	ws_reader_init(&ws->rd, &lim, pmd_on ? &ws->pmd : NULL);
	ws->last_rx_ms = now_ms(c);
	c->ws = ws;
	if (ep == WSCONN_DAEMON)
		proto_attach(c);
	c->keep_alive = 0;

	b = outbuf_from(resp, (size_t)n);
	conn_queue(c, b, 0);
	outbuf_unref(b);
	atomic_fetch_add(&c->w->stats->ws_upgrades, 1);
	log_debug("%s: fd %d %s upgraded (%s%s)", __func__, c->fd,
		  conn_peer_str(c), ep == WSCONN_ECHO ? "echo" : "daemon",
		  pmd_on ? ", permessage-deflate" : "");
	conn_set_state(c, CONN_WS_OPEN);
	return 0;
}

void
wsconn_on_close(struct conn *c)
{
	proto_detach(c);
}

void
wsconn_free(struct conn *c)
{
	struct wsconn *ws = c->ws;

	proto_detach(c);
	ws_reader_free(&ws->rd);
	if (ws->pmd_on)
		pmd_ctx_free(&ws->pmd);
	UTIL_FREE(c->ws);
}

/* A whole frame (header + payload) in one reference-counted buffer. */
static struct outbuf *
frame_buf(unsigned opcode, unsigned flags, const uint8_t *payload, size_t len)
{
	size_t hlen = ws_frame_header_size(len, 0);
	struct outbuf *b = outbuf_new(hlen + len);

	ws_frame_header_encode(b->data, opcode, flags, len, NULL);
	if (len > 0)
		memcpy(b->data + hlen, payload, len);
	return b;
}

/* Queue one frame: header + payload in one buffer. */
static size_t
queue_frame(struct conn *c, unsigned opcode, unsigned flags,
	    const uint8_t *payload, size_t len, int prio)
{
	struct outbuf *b = frame_buf(opcode, flags, payload, len);
	size_t queued = conn_queue(c, b, prio);

	outbuf_unref(b);
	return queued;
}

void
wsconn_close(struct conn *c, unsigned code, const char *reason)
{
	struct wsconn *ws = c->ws;
	uint8_t frame[WS_CLOSE_FRAME_MAX];
	size_t n;
	struct outbuf *b;

	if (ws == NULL || ws->close_sent || c->state == CONN_CLOSED)
		return;
	log_debug("%s: fd %d %s: close %u (%s)", __func__, c->fd,
		  conn_peer_str(c), code, reason ? reason : "");
	atomic_fetch_add_explicit(
	    &c->w->stats->close_codes[shm_close_index(code)], 1,
	    memory_order_relaxed);
	if (code == WS_CLOSE_POLICY) {
		outq_drop_unstarted(&c->q); /* nothing queued behind it */
		ws->slow = 1;
	}
	proto_end(c);
	n = ws_close_frame(frame, code, reason);
	b = outbuf_from(frame, n);
	conn_queue(c, b, 0);
	outbuf_unref(b);
	ws->close_sent = 1;
	conn_set_state(c, CONN_WS_CLOSING);
}

/*
 * The bound check after queueing a frame of frame_len bytes: a slow
 * consumer gets 1008.  One frame always fits an empty queue, so a message
 * as large as ws_max_message_size can be sent even when max_send_queue is
 * not larger (the default sizes are equal).
 */
static int
check_queue_bound(struct conn *c, size_t queued, size_t frame_len)
{
	const struct config *cfg = c->w->cfg;
	/*
	 * Output goes out once per loop iteration: until the socket has
	 * refused some (wblocked), bytes queued in this iteration (a burst of
	 * events from one pipe read) are not a sign of a slow consumer, and
	 * get room up to 4 x max_send_queue, which still bounds the memory.
	 */
	size_t bound = c->wblocked ? cfg->max_send_queue
				   : 4 * cfg->max_send_queue;

	if (queued <= bound || queued == frame_len)
		return 0;
	atomic_fetch_add(&c->w->stats->slow_consumers, 1);
	log_info("%s: fd %d %s: send queue over %llu bytes, closing", __func__,
		 c->fd, conn_peer_str(c), (unsigned long long)bound);
	wsconn_close(c, WS_CLOSE_POLICY, "send queue full");
	return -1;
}

int
wsconn_send(struct conn *c, unsigned opcode, const void *data, size_t len,
	    int prio)
{
	struct wsconn *ws = c->ws;
	const struct config *cfg = c->w->cfg;
	size_t queued, flen;

	if (ws == NULL || ws->close_sent || c->state != CONN_WS_OPEN)
		return -1;
	if (ws->pmd_on && len >= cfg->ws_compression_min_size) {
		size_t clen;
		uint8_t *z = pmd_deflate(&ws->pmd, data, len, 0, &clen);

		if (z == NULL) {
			wsconn_close(c, WS_CLOSE_INTERNAL, "compression failed");
			return -1;
		}
		atomic_fetch_add(&c->w->stats->ws_deflates, 1);
		queued = queue_frame(c, opcode, WS_FRAME_FIN | WS_FRAME_RSV1, z,
				     clen, prio);
		flen = ws_frame_header_size(clen, 0) + clen;
		free(z);
	} else {
		queued = queue_frame(c, opcode, WS_FRAME_FIN, data, len, prio);
		flen = ws_frame_header_size(len, 0) + len;
	}
	return check_queue_bound(c, queued, flen);
}

size_t
wsconn_broadcast(struct conn **targets, size_t n, unsigned opcode,
		 const void *data, size_t len, int prio)
{
	struct outbuf *plain = NULL, *shared = NULL;
	size_t sent = 0;

	for (size_t i = 0; i < n; i++) {
		struct conn *c = targets[i];
		struct wsconn *ws = c->ws;
		const struct config *cfg = c->w->cfg;
		struct outbuf *b;

		if (ws == NULL || ws->close_sent || c->state != CONN_WS_OPEN)
			continue;
		if (!ws->pmd_on || len < cfg->ws_compression_min_size) {
			if (plain == NULL)
				plain = frame_buf(opcode, WS_FRAME_FIN, data,
						  len);
			b = plain;
		} else if (pmd_can_share(&ws->pmd.params, &c->w->pmdcfg)) {
			if (shared == NULL) {
				size_t clen;
				uint8_t *z = pmd_deflate_shared(
					&c->w->pmdcfg, data, len, 0, &clen);

				if (z == NULL) {
					wsconn_close(c, WS_CLOSE_INTERNAL,
						     "compression failed");
					continue;
				}
				atomic_fetch_add(&c->w->stats->ws_deflates, 1);
				shared = frame_buf(opcode,
						   WS_FRAME_FIN | WS_FRAME_RSV1,
						   z, clen);
				free(z);
			}
			b = shared;
		} else {
			if (wsconn_send(c, opcode, data, len, prio) == 0)
				sent++;
			continue;
		}
		if (check_queue_bound(c, conn_queue(c, b, prio), b->len) == 0)
			sent++;
	}
	outbuf_unref(plain);
	outbuf_unref(shared);
	return sent;
}

static void
deliver(struct conn *c, const struct ws_event *ev)
{
	atomic_fetch_add(&c->w->stats->ws_messages_in, 1);
	if (c->ws->endpoint == WSCONN_ECHO)
		wsconn_send(c, ev->type == WS_EV_TEXT ? WS_OP_TEXT
						      : WS_OP_BINARY,
			    ev->data, ev->len, 0);
	else
		proto_message(c, ev->data, ev->len);
}

void
wsconn_input(struct conn *c, uint8_t *buf, size_t len)
{
	struct wsconn *ws = c->ws;
	size_t off = 0;

	while (!ws->failed && c->state != CONN_CLOSED) {
		struct ws_event ev;
		size_t used = 0;

		ws_reader_feed(&ws->rd, buf + off, len - off, &used, &ev);
		off += used;
		switch (ev.type) {
		case WS_EV_NEED_MORE:
			return;
		case WS_EV_TEXT:
		case WS_EV_BINARY:
			if (!ws->close_sent)
				deliver(c, &ev);
			break;
		case WS_EV_PING:
			/*
			 * Pongs count against max_send_queue too: a client
			 * that pings and never reads must not grow our queue.
			 */
			if (!ws->close_sent)
				check_queue_bound(
					c,
					queue_frame(c, WS_OP_PONG, WS_FRAME_FIN,
						    ev.data, ev.len,
						    PRIO_CONTROL),
					2 + ev.len);
			break;
		case WS_EV_PONG:
			ws->ping_outstanding = 0;
			break;
		case WS_EV_CLOSE:
			ws->close_received = 1;
			if (!ws->close_sent) {
				/* Echo the code; an empty close gets one. */
				wsconn_close(c, ev.code == WS_CLOSE_NO_STATUS
							? 0
							: ev.code,
					     NULL);
			} else if (c->q.head == NULL) {
				wsconn_flushed(c);
			}
			break;
		case WS_EV_ERROR:
			ws->failed = 1;
			log_debug("%s: fd %d %s: %s", __func__, c->fd,
				  conn_peer_str(c), ev.err ? ev.err : "error");
			atomic_fetch_add(&c->w->stats->ws_protocol_errors, 1);
			wsconn_close(c, ev.code, ev.err);
			return;
		}
	}
}

void
wsconn_touch(struct conn *c)
{
	c->ws->last_rx_ms = now_ms(c);
	c->ws->ping_outstanding = 0;
}

void
wsconn_flushed(struct conn *c)
{
	struct wsconn *ws = c->ws;

	/*
	 * Both closes exchanged (or the peer broke the protocol and there is
	 * nothing to wait for): the server closes TCP first, RFC 6455 7.1.1.
	 */
	if (c->state == CONN_WS_CLOSING && ws->close_sent &&
	    (ws->close_received || ws->failed)) {
		c->tr->shutdown(c);
		conn_set_state(c, CONN_LINGER);
		return;
	}
	if (c->state == CONN_WS_OPEN && ws->endpoint == WSCONN_DAEMON)
		deliver_conn_flushed(c); /* a replay may wait for room */
}

uint64_t
wsconn_timeout_ms(const struct conn *c)
{
	const struct config *cfg = c->w->cfg;
	const struct wsconn *ws = c->ws;
	uint64_t idle, now;

	uint64_t t = 0, due;

	/*
	 * A slow consumer will hardly read our close frame, let alone answer
	 * it: give it a second, not the whole close timeout.
	 */
	if (c->state == CONN_WS_CLOSING)
		return ws->slow && cfg->ws_close_timeout_ms > 1000
			       ? 1000
			       : cfg->ws_close_timeout_ms;
	now = now_ms(c);
	if (ws->ping_outstanding) {
		uint64_t end = ws->ping_sent_ms + cfg->ws_pong_timeout_ms;

		t = end > now ? end - now : 1;
	} else if (cfg->ws_ping_interval_ms != 0) {
		idle = now > ws->last_rx_ms ? now - ws->last_rx_ms : 0;
		t = idle >= cfg->ws_ping_interval_ms
			    ? 1
			    : cfg->ws_ping_interval_ms - idle;
	}
	/* The protocol's deadlines (auth, heartbeat, token) share the timer. */
	if ((due = proto_next_deadline(c)) != 0) {
		uint64_t left = due > now ? due - now : 1;

		if (t == 0 || left < t)
			t = left;
	}
	return t;
}

void
wsconn_on_timer(struct conn *c)
{
	const struct config *cfg = c->w->cfg;
	struct wsconn *ws = c->ws;
	uint64_t now = now_ms(c);

	if (c->state == CONN_WS_CLOSING) {
		conn_close(c, "close timeout");
		return;
	}
	if (c->proto != NULL) {
		uint64_t due = proto_next_deadline(c);

		if (due != 0 && now >= due) {
			proto_on_deadline(c, now);
			if (c->state != CONN_WS_OPEN)
				return;
		}
	}
	if (ws->ping_outstanding &&
	    now - ws->ping_sent_ms >= cfg->ws_pong_timeout_ms) {
		log_debug("%s: fd %d %s: no pong in %llu ms", __func__, c->fd,
			  conn_peer_str(c),
			  (unsigned long long)cfg->ws_pong_timeout_ms);
		wsconn_close(c, WS_CLOSE_GOING_AWAY, "pong timeout");
		return;
	}
	if (!ws->ping_outstanding && cfg->ws_ping_interval_ms != 0 &&
	    now - ws->last_rx_ms >= cfg->ws_ping_interval_ms) {
		uint8_t payload[8];

		for (int i = 0; i < 8; i++)
			payload[i] = (uint8_t)(now >> (56 - 8 * i));
		queue_frame(c, WS_OP_PING, WS_FRAME_FIN, payload,
			    sizeof(payload), PRIO_CONTROL);
		ws->ping_outstanding = 1;
		ws->ping_sent_ms = now;
	}
	conn_set_state(c, CONN_WS_OPEN); /* re-arm */
}
