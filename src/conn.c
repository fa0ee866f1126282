/*
 * conn: connection life cycle, input dispatch and output.
 *
 * Input is read into the worker's scratch buffer and handed to the layer the
 * state names (HTTP head parser, body discard, WebSocket reader).  Only the
 * bytes no layer could consume yet are kept, so an idle connection costs no
 * buffer.  Output goes through the connection's outq and the transport.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orchd/conn.h"
#include "orchd/http.h"
#include "orchd/log.h"
#include "orchd/transport.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/wsconn.h"

#define CONN_READS_PER_EVENT 8 /* fairness: then let others run */

static void conn_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_input(struct conn *c, uint8_t *buf, size_t len);
static void conn_after_flush(struct conn *c);
static void conn_resume_input(struct conn *c);

const char *
conn_state_name(enum conn_state st)
{
	switch (st) {
	case CONN_TLS_HANDSHAKE: return "tls_handshake";
	case CONN_HTTP_READ: return "http_read";
	case CONN_HTTP_BODY: return "http_body";
	case CONN_HTTP_WAIT: return "http_wait";
	case CONN_HTTP_WRITE: return "http_write";
	case CONN_LINGER: return "linger";
	case CONN_WS_OPEN: return "ws_open";
	case CONN_WS_CLOSING: return "ws_closing";
	case CONN_CLOSED: return "closed";
	}
	return "?";
}

const char *
conn_peer_str(const struct conn *c)
{
	static char buf[INET6_ADDRSTRLEN + 8];
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (c->peer.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&c->peer;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(buf, sizeof(buf), "%s:%u", host, port);
	} else if (c->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&c->peer;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(buf, sizeof(buf), "[%s]:%u", host, port);
	} else {
		snprintf(buf, sizeof(buf), "?");
	}
	return buf;
}

static void
list_remove(struct conn **head, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void
list_push(struct conn **head, struct conn *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head != NULL)
		(*head)->prev = c;
	*head = c;
}

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr_storage *peer,
	 int tls)
{
	struct conn *c = util_calloc(1, sizeof(*c));
	int one = 1;

	/* We batch with writev ourselves; Nagle would only delay pushes. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->fd = fd;
	c->peer = *peer;
	c->keep_alive = 1;
	c->tr = &transport_plain;
	ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_init(&c->timer, conn_timer_cb);
	c->timer.data = c;
	list_push(&w->conns, c);
	w->nconns++;
	c->state = CONN_CLOSED; /* so that the first transition applies */
	if (tls && worker_tls_attach(w, c) == -1) {
		c->state = CONN_HTTP_READ;
		conn_close(c, "tls setup failed");
		return NULL;
	}
	conn_set_state(c, tls ? CONN_TLS_HANDSHAKE : CONN_HTTP_READ);
	return c;
}

static unsigned
conn_events(const struct conn *c)
{
	unsigned ev = c->tr_want;

	switch (c->state) {
	case CONN_TLS_HANDSHAKE:
		break; /* the transport says what it needs */
	case CONN_WS_CLOSING:
		/*
		 * A slow consumer we closed (1008) does not read, so it will
		 * not answer our close either: stop reading what it sends.
		 */
		if (!c->eof && !(c->ws != NULL && c->ws->slow))
			ev |= EV_READ;
		break;
	case CONN_HTTP_READ:
	case CONN_HTTP_BODY:
	case CONN_LINGER:
	case CONN_WS_OPEN:
		if (!c->eof)
			ev |= EV_READ;
		break;
	case CONN_HTTP_WAIT:
		/*
		 * A step that can be cancelled: a client that goes away
		 * (EOF, as nginx takes it) cancels it.  Input that comes
		 * first is kept (one read) and reading stops there.
		 */
		if (c->cancel != NULL && !c->eof && c->rlen == 0)
			ev |= EV_READ;
		break;
	case CONN_HTTP_WRITE:
	case CONN_CLOSED:
		break;
	}
	if (c->q.head != NULL && c->wblocked)
		ev |= EV_WRITE;
	return ev;
}

void
conn_update_io(struct conn *c)
{
	unsigned ev;

	if (c->state == CONN_CLOSED)
		return;
	ev = conn_events(c);
	if (ev == (unsigned)(c->io.events & (EV_READ | EV_WRITE)) &&
	    ev_is_active(&c->io))
		return;
	ev_io_stop(c->w->loop, &c->io);
	if (ev != 0) {
		ev_io_set(&c->io, c->fd, (int)ev);
		ev_io_start(c->w->loop, &c->io);
	}
}

/*
 * The per-state gauges: add/sub of this connection's own share, so that
 * the old and the new worker of a slot can share the block (shm.h).
 */
static void
conn_account_state(struct conn *c, enum conn_state st)
{
	struct shm_worker *sw = c->w->stats;
	int next = st < SHM_NCONN_STATES ? (int)st + 1 : 0;

	if (next == c->gauge_state)
		return;
	if (c->gauge_state != 0)
		atomic_fetch_sub_explicit(&sw->conn_state[c->gauge_state - 1],
					  1, memory_order_relaxed);
	if (next != 0)
		atomic_fetch_add_explicit(&sw->conn_state[next - 1], 1,
					  memory_order_relaxed);
	c->gauge_state = next;
}

void
conn_account_queue(struct conn *c)
{
	if (c->q.bytes == c->gauge_qbytes)
		return;
	atomic_fetch_add_explicit(&c->w->stats->send_queue_bytes,
				  (int_fast64_t)c->q.bytes -
				      (int_fast64_t)c->gauge_qbytes,
				  memory_order_relaxed);
	c->gauge_qbytes = c->q.bytes;
}

void
conn_account_draining(struct conn *c)
{
	if (c->gauge_draining)
		return;
	c->gauge_draining = 1;
	atomic_fetch_add_explicit(&c->w->stats->draining, 1,
				  memory_order_relaxed);
}

/*
 * The choke point: every state change goes through here, and only here are
 * the watcher's events and the timer's deadline decided.
 */
void
conn_set_state(struct conn *c, enum conn_state st)
{
	const struct config *cfg = c->w->cfg;
	uint64_t timeout_ms = 0;

	if (c->state == CONN_CLOSED && st == CONN_CLOSED)
		return;
	conn_account_state(c, st);
	if (c->state != st)
		log_debug("%s: fd %d %s -> %s", __func__, c->fd,
			  conn_state_name(c->state), conn_state_name(st));
	c->state = st;
	switch (st) {
	case CONN_TLS_HANDSHAKE:
	case CONN_HTTP_READ:
	case CONN_HTTP_BODY: {
		uint64_t now = (uint64_t)(ev_now(c->w->loop) * 1000.0);

		if (st == CONN_HTTP_READ && c->rlen == 0 && c->nrequests > 0) {
			/* Idle between requests: the keep-alive timeout. */
			c->head_deadline = 0;
			timeout_ms = cfg->keepalive_timeout_ms;
			break;
		}
		if (c->head_deadline == 0)
			c->head_deadline = now + cfg->handshake_timeout_ms;
		timeout_ms = c->head_deadline > now ? c->head_deadline - now : 1;
		break;
	}
	case CONN_HTTP_WAIT:
	case CONN_HTTP_WRITE:
		timeout_ms = WORKER_WRITE_TIMEOUT_MS;
		break;
	case CONN_LINGER:
		timeout_ms = WORKER_LINGER_TIMEOUT_MS;
		break;
	case CONN_WS_OPEN:
	case CONN_WS_CLOSING:
		timeout_ms = wsconn_timeout_ms(c);
		break;
	case CONN_CLOSED:
		break;
	}

	ev_timer_stop(c->w->loop, &c->timer);
	if (st == CONN_CLOSED) {
		ev_io_stop(c->w->loop, &c->io);
		return;
	}
	conn_update_io(c);
	if (timeout_ms > 0) {
		ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(c->w->loop, &c->timer);
	}
}

void
conn_close(struct conn *c, const char *why)
{
	if (c->state == CONN_CLOSED)
		return;
	log_debug("%s: fd %d %s: %s", __func__, c->fd, conn_peer_str(c), why);
	if (c->cancel != NULL) {
		void (*cancel)(struct conn *) = c->cancel;

		c->cancel = NULL;
		cancel(c);
	}
	if (c->ws != NULL)
		wsconn_on_close(c); /* quota slot and session go now */
	conn_set_state(c, CONN_CLOSED);
	c->tr->free(c);
	close(c->fd);
	c->fd = -1;
	list_remove(&c->w->conns, c);
	list_push(&c->w->dead, c);
}

/*
 * Free what is dead, except connections an asynchronous operation (a Redis
 * reply) still points to: they stay on the list until it comes back.
 */
void
conn_reap(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->dead; c != NULL; c = next) {
		next = c->next;
		if (c->refs > 0 || c->in_flush_list)
			continue;
		list_remove(&w->dead, c);
		if (c->ws != NULL)
			wsconn_free(c);
		outq_clear(&c->q);
		conn_account_queue(c);
		if (c->gauge_draining)
			atomic_fetch_sub_explicit(&w->stats->draining, 1,
						  memory_order_relaxed);
		UTIL_FREE(c->hold);
		UTIL_FREE(c->rbuf);
		UTIL_FREE(c);
		w->nconns--;
		worker_conn_freed(w);
	}
}

/*
 * Idle means between two requests of a keep-alive connection.  A connection
 * that has not sent its first request yet is in flight: its client already
 * wrote (or is writing) a request, so closing it would lose that request.
 */
int
conn_is_idle(const struct conn *c)
{
	return c->state == CONN_HTTP_READ && c->rlen == 0 && c->nrequests > 0;
}

size_t
conn_queue(struct conn *c, struct outbuf *b, int prio)
{
	outq_push(&c->q, b, prio);
	conn_account_queue(c);
	if (!c->in_flush_list && !c->wblocked) {
		c->in_flush_list = 1;
		c->flush_next = c->w->flush_list;
		c->w->flush_list = c;
	}
	return c->q.bytes;
}

void
conn_flush_pending(struct worker *w)
{
	struct conn *c;

	/* Closed connections stay on the dead list until reaped after this. */
	while ((c = w->flush_list) != NULL) {
		w->flush_list = c->flush_next;
		c->flush_next = NULL;
		c->in_flush_list = 0;
		if (c->state == CONN_CLOSED || c->q.head == NULL || c->wblocked)
			continue;
		if (conn_flush(c) == 1) {
			conn_after_flush(c);
			conn_resume_input(c);
		}
	}
}

int
conn_flush(struct conn *c)
{
	struct iovec iov[OUTQ_IOV_MAX];

	while (c->q.head != NULL) {
		int n = outq_iov(&c->q, iov, OUTQ_IOV_MAX);
		ssize_t w = c->tr->writev(c, iov, n);

		if (w > 0) {
			outq_consume(&c->q, (size_t)w);
			conn_account_queue(c);
			continue;
		}
		if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->wblocked = 1; /* now EV_WRITE says when to go on */
			conn_update_io(c);
			return 0;
		}
		if (w == -1 && errno != EPIPE && errno != ECONNRESET)
			log_warn("%s: writev fd %d", __func__, c->fd);
		conn_close(c, "write failed");
		return -1;
	}
	c->wblocked = 0;
	conn_update_io(c);
	return 1;
}

/* Keep what could not be consumed yet, in a buffer of exactly its size. */
static void
conn_stash(struct conn *c, const uint8_t *buf, size_t len)
{
	UTIL_FREE(c->rbuf);
	c->rlen = 0;
	if (len == 0)
		return;
	c->rbuf = util_malloc(len);
	memcpy(c->rbuf, buf, len);
	c->rlen = len;
}

/*
 * After a response went out: linger-and-close, discard the rest of the
 * request body, or wait for the next request.
 */
static void
conn_finish_response(struct conn *c)
{
	if (!c->keep_alive || c->w->draining) {
		/*
		 * Half-close and read what the client still sends, so that
		 * unread input does not turn our close into an RST that
		 * destroys the response before the client reads it.
		 */
		c->tr->shutdown(c);
		conn_stash(c, NULL, 0);
		conn_set_state(c, CONN_LINGER);
		return;
	}
	conn_set_state(c, c->body_left > 0 ? CONN_HTTP_BODY : CONN_HTTP_READ);
}

static void
conn_after_flush(struct conn *c)
{
	switch (c->state) {
	case CONN_HTTP_WRITE:
		conn_finish_response(c);
		break;
	case CONN_WS_OPEN:
	case CONN_WS_CLOSING:
		wsconn_flushed(c);
		break;
	default:
		break;
	}
}

void
conn_send(struct conn *c, const char *data, size_t len, int keep_alive)
{
	struct outbuf *b = outbuf_from(data, len);

	c->keep_alive = c->keep_alive && keep_alive;
	conn_queue(c, b, 0);
	outbuf_unref(b);
	conn_set_state(c, CONN_HTTP_WRITE);
}

void
conn_send_error(struct conn *c, int status, const char *extra_headers)
{
	char body[256], resp[1024];
	int blen, n;

	blen = http_error_body(body, sizeof(body), status);
	n = http_format_response(resp, sizeof(resp), status,
				 "application/json", extra_headers, body,
				 blen < 0 ? 0 : (size_t)blen, 0, 0);
	if (n < 0) {
		conn_close(c, "error response too large");
		return;
	}
	conn_send(c, resp, (size_t)n, 0);
}

/*
 * Parse and dispatch one request head from buf.  Returns the bytes consumed
 * (0: the head is incomplete).  Dispatch only queues the response; req
 * points into buf, which stays untouched until we return.
 */
static size_t
conn_http_input(struct conn *c, uint8_t *buf, size_t len)
{
	const struct config *cfg = c->w->cfg;
	struct http_request req;
	int n;

	n = http_parse_request((const char *)buf, len,
			       (size_t)cfg->http_max_header_size, &req);
	if (n == 0)
		return 0;
	if (n < 0) {
		log_debug("%s: fd %d: bad request head (%d)", __func__, c->fd,
			  -n);
		conn_send_error(c, -n, NULL);
		return len; /* what follows a refused head can't be parsed */
	}
	c->nrequests++;
	c->head_deadline = 0; /* the next request gets its own */
	atomic_fetch_add(&c->w->stats->requests, 1);
	if (req.content_length > cfg->http_max_body_size) {
		conn_send_error(c, 413, NULL);
		return len;
	}
	if (req.content_length > 0 && worker_wants_body(&req)) {
		size_t total = (size_t)n + (size_t)req.content_length;

		if (len >= total) {
			req.body = buf + n;
			req.body_len = (size_t)req.content_length;
			c->body_left = 0;
			worker_dispatch_http(c, &req);
			return total;
		}
		/* Keep head and body together until the body is complete. */
		c->hold = util_malloc(total);
		memcpy(c->hold, buf, len);
		c->hold_len = len;
		c->hold_head = (size_t)n;
		c->body_left = total - len;
		conn_set_state(c, CONN_HTTP_BODY);
		return len;
	}
	c->body_left = req.content_length;
	worker_dispatch_http(c, &req);
	return (size_t)n;
}

/* The held request's body is complete: parse its head again, dispatch. */
static void
conn_dispatch_held(struct conn *c)
{
	struct http_request req;
	uint8_t *hold = c->hold;

	c->hold = NULL;
	if (http_parse_request((const char *)hold, c->hold_head,
			       (size_t)c->w->cfg->http_max_header_size,
			       &req) <= 0) {
		free(hold); /* parsed once already: cannot happen */
		conn_send_error(c, 500, NULL);
		return;
	}
	req.body = hold + c->hold_head;
	req.body_len = c->hold_len - c->hold_head;
	conn_set_state(c, CONN_HTTP_READ);
	worker_dispatch_http(c, &req);
	free(hold); /* the response was copied into the queue */
	c->hold_len = c->hold_head = 0;
}

/* Hand input to the layer the state names, until it is used up. */
static void
conn_input(struct conn *c, uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		switch (c->state) {
		case CONN_HTTP_READ: {
			size_t n = conn_http_input(c, buf + off, len - off);

			if (n == 0) {
				if (len - off >= c->w->cfg->http_max_header_size) {
					conn_send_error(c, 431, NULL);
					return;
				}
				conn_stash(c, buf + off, len - off);
				conn_set_state(c, CONN_HTTP_READ);
				return;
			}
			off += n;
			/* Optimistic write: most responses fit at once. */
			if (c->state == CONN_HTTP_WRITE && conn_flush(c) == 1)
				conn_after_flush(c);
			break;
		}
		case CONN_HTTP_BODY: {
			size_t k = len - off;

			if (k > c->body_left)
				k = (size_t)c->body_left;
			if (c->hold != NULL) {
				memcpy(c->hold + c->hold_len, buf + off, k);
				c->hold_len += k;
			}
			c->body_left -= k;
			off += k;
			if (c->body_left > 0)
				break;
			if (c->hold == NULL) {
				conn_set_state(c, CONN_HTTP_READ);
				break;
			}
			conn_dispatch_held(c);
			if (c->state == CONN_HTTP_WRITE && conn_flush(c) == 1)
				conn_after_flush(c);
			break;
		}
		case CONN_HTTP_WAIT:
		case CONN_HTTP_WRITE:
		case CONN_TLS_HANDSHAKE:
			/* Pipelined: keep it for after the response. */
			conn_stash(c, buf + off, len - off);
			return;
		case CONN_WS_OPEN:
		case CONN_WS_CLOSING:
			wsconn_input(c, buf + off, len - off);
			return;
		case CONN_LINGER:
		case CONN_CLOSED:
			return;
		}
		if (c->state == CONN_CLOSED)
			return;
	}
	if (c->state == CONN_HTTP_READ && c->rlen == 0)
		conn_set_state(c, CONN_HTTP_READ); /* idle: keep-alive timer */
}

/* Feed back what was stashed while a response was going out. */
static void
conn_resume_input(struct conn *c)
{
	uint8_t *buf;
	size_t len;

	if (c->rlen == 0 || c->state == CONN_HTTP_WRITE ||
	    c->state == CONN_HTTP_WAIT || c->state == CONN_CLOSED)
		return;
	buf = (uint8_t *)c->rbuf;
	len = c->rlen;
	c->rbuf = NULL;
	c->rlen = 0;
	/* The stash is at most a head long: copy it to scratch and go on. */
	memcpy(c->w->scratch, buf, len);
	free(buf);
	conn_input(c, c->w->scratch, len);
}

void
conn_response_ready(struct conn *c)
{
	if (c->state != CONN_HTTP_WRITE)
		return;
	if (conn_flush(c) == 1) {
		conn_after_flush(c);
		conn_resume_input(c);
	}
}

static void
conn_on_readable(struct conn *c)
{
	struct worker *w = c->w;

	for (int i = 0; i < CONN_READS_PER_EVENT; i++) {
		size_t off = 0;
		ssize_t n;

		if (c->state == CONN_CLOSED || c->state == CONN_HTTP_WRITE)
			return;
		if (c->state == CONN_HTTP_WAIT &&
		    (c->cancel == NULL || c->rlen > 0)) {
			conn_update_io(c); /* no more reading */
			return;
		}
		if (c->rlen > 0) {
			memcpy(w->scratch, c->rbuf, c->rlen);
			off = c->rlen;
			UTIL_FREE(c->rbuf);
			c->rlen = 0;
		}
		n = c->tr->recv(c, w->scratch + off, w->scratch_size - off);
		if (n == 0) {
			c->eof = 1;
			if (off > 0)
				conn_input(c, w->scratch, off);
			if (c->state != CONN_CLOSED)
				conn_close(c, "eof");
			return;
		}
		if (n < 0) {
			if (off > 0)
				conn_stash(c, w->scratch, off);
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn_update_io(c);
				return;
			}
			if (errno != ECONNRESET)
				log_warn("%s: recv fd %d", __func__, c->fd);
			conn_close(c, "recv failed");
			return;
		}
		if (c->state == CONN_HTTP_READ && off == 0 && c->nrequests > 0)
			conn_set_state(c, CONN_HTTP_READ); /* idle -> head */
		if (c->state == CONN_WS_OPEN || c->state == CONN_WS_CLOSING)
			wsconn_touch(c);
		conn_input(c, w->scratch, off + (size_t)n);
	}
	/* Budget used: come back after the others had their turn. */
	if (c->state != CONN_CLOSED)
		ev_feed_event(w->loop, &c->io, EV_READ);
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	/*
	 * A TLS read that needed the socket writable (or a write that needed
	 * it readable) is retried on whichever readiness arrives.
	 */
	if (c->tr_want != 0 && c->state != CONN_TLS_HANDSHAKE &&
	    (revents & (int)c->tr_want)) {
		c->tr_want = 0;
		revents |= EV_READ | (c->q.head != NULL ? EV_WRITE : 0);
	}
	if (c->state == CONN_TLS_HANDSHAKE) {
		int r = c->tr->handshake(c);

		if (r < 0) {
			conn_close(c, "tls handshake failed");
			return;
		}
		if (r == 0) {
			conn_update_io(c);
			return;
		}
		conn_set_state(c, CONN_HTTP_READ);
		revents |= EV_READ; /* data may already be buffered */
	}
	if ((revents & EV_WRITE) && c->q.head != NULL) {
		int r = conn_flush(c);

		if (r < 0)
			return;
		if (r == 1) {
			conn_after_flush(c);
			conn_resume_input(c);
		}
	}
	if ((revents & EV_READ) && c->state != CONN_CLOSED)
		conn_on_readable(c);
	if (c->state != CONN_CLOSED && c->q.head != NULL &&
	    !(c->io.events & EV_WRITE))
		conn_update_io(c);
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct conn *c = t->data;

	switch (c->state) {
	case CONN_TLS_HANDSHAKE:
		conn_close(c, "tls handshake timeout");
		return;
	case CONN_HTTP_READ:
		if (c->rlen > 0) {
			c->rlen = 0;
			UTIL_FREE(c->rbuf);
			conn_send_error(c, 408, NULL);
			if (c->state == CONN_HTTP_WRITE && conn_flush(c) == 1)
				conn_after_flush(c);
			return;
		}
		conn_close(c, c->nrequests > 0 ? "keep-alive timeout"
					       : "handshake timeout");
		return;
	case CONN_HTTP_BODY:
		conn_close(c, "body timeout");
		return;
	case CONN_HTTP_WAIT:
		conn_close(c, "no answer in time");
		return;
	case CONN_HTTP_WRITE:
		conn_close(c, "write timeout");
		return;
	case CONN_LINGER:
		conn_close(c, "linger done");
		return;
	case CONN_WS_OPEN:
	case CONN_WS_CLOSING:
		wsconn_on_timer(c);
		return;
	case CONN_CLOSED:
		return;
	}
}
