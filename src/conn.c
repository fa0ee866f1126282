/*
 * conn: connection life cycle and HTTP/1.1 I/O.
 *
 * One request is handled at a time: while a response is being written the
 * connection does not read, so a pipelining client is served in order and
 * cannot make orchd buffer unboundedly.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orchd/conn.h"
#include "orchd/http.h"
#include "orchd/log.h"
#include "orchd/util.h"
#include "orchd/worker.h"

static void conn_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_process(struct conn *c);

const char *
conn_state_name(enum conn_state st)
{
	switch (st) {
	case CONN_HTTP_READ: return "http_read";
	case CONN_HTTP_BODY: return "http_body";
	case CONN_HTTP_WRITE: return "http_write";
	case CONN_LINGER: return "linger";
	case CONN_CLOSED: return "closed";
	}
	return "?";
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
conn_new(struct worker *w, int fd, const struct sockaddr_storage *peer)
{
	struct conn *c = util_calloc(1, sizeof(*c));

	c->w = w;
	c->fd = fd;
	c->peer = *peer;
	c->keep_alive = 1;
	ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_init(&c->timer, conn_timer_cb);
	c->timer.data = c;
	list_push(&w->conns, c);
	w->nconns++;
	c->state = CONN_CLOSED; /* so that the first transition is applied */
	conn_set_state(c, CONN_HTTP_READ);
	return c;
}

/*
 * The choke point: every state change goes through here, and only here are
 * the I/O watcher's events and the timer's deadline decided.
 */
void
conn_set_state(struct conn *c, enum conn_state st)
{
	struct ev_loop *loop = c->w->loop;
	int events = 0;
	uint64_t timeout_ms = 0;

	if (c->state == CONN_CLOSED && st == CONN_CLOSED)
		return;
	log_debug("%s: fd %d %s -> %s", __func__, c->fd,
		  conn_state_name(c->state), conn_state_name(st));
	c->state = st;
	switch (st) {
	case CONN_HTTP_READ:
		events = EV_READ;
		/* An idle keep-alive connection waits longer than a head. */
		timeout_ms = (c->rlen == 0 && c->nrequests > 0)
				     ? WORKER_IDLE_TIMEOUT_MS
				     : WORKER_HEAD_TIMEOUT_MS;
		break;
	case CONN_HTTP_BODY:
		events = EV_READ;
		timeout_ms = WORKER_HEAD_TIMEOUT_MS;
		break;
	case CONN_HTTP_WRITE:
		events = EV_WRITE;
		timeout_ms = WORKER_WRITE_TIMEOUT_MS;
		break;
	case CONN_LINGER:
		events = EV_READ;
		timeout_ms = WORKER_LINGER_TIMEOUT_MS;
		break;
	case CONN_CLOSED:
		break;
	}

	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->timer);
	if (st == CONN_CLOSED)
		return;
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(loop, &c->io);
	ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.);
	ev_timer_start(loop, &c->timer);
}

void
conn_close(struct conn *c, const char *why)
{
	if (c->state == CONN_CLOSED)
		return;
	log_debug("%s: fd %d: %s", __func__, c->fd, why);
	conn_set_state(c, CONN_CLOSED);
	close(c->fd);
	c->fd = -1;
	list_remove(&c->w->conns, c);
	list_push(&c->w->dead, c);
}

void
conn_reap(struct worker *w)
{
	struct conn *c;

	while ((c = w->dead) != NULL) {
		list_remove(&w->dead, c);
		UTIL_FREE(c->rbuf);
		UTIL_FREE(c->wbuf);
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

/* Try to write what is queued; returns 1 if all is written. */
static int
conn_flush(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
				 MSG_NOSIGNAL);

		if (n > 0) {
			c->woff += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (errno != EPIPE && errno != ECONNRESET)
			log_warn("%s: send fd %d", __func__, c->fd);
		conn_close(c, "send failed");
		return -1;
	}
	UTIL_FREE(c->wbuf);
	c->wlen = c->woff = 0;
	return 1;
}

/*
 * After a response went out: linger-and-close, discard the rest of the
 * request body, or wait for the next request.  Never parses: callers loop.
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
		if (shutdown(c->fd, SHUT_WR) == -1) {
			conn_close(c, "shutdown");
			return;
		}
		UTIL_FREE(c->rbuf);
		c->rlen = 0;
		conn_set_state(c, CONN_LINGER);
		return;
	}
	if (c->body_left > 0) {
		UTIL_FREE(c->rbuf); /* the whole buffer was body */
		c->rlen = 0;
		conn_set_state(c, CONN_HTTP_BODY);
		return;
	}
	if (c->rlen == 0)
		UTIL_FREE(c->rbuf);
	conn_set_state(c, CONN_HTTP_READ);
}

void
conn_send(struct conn *c, const char *data, size_t len, int keep_alive)
{
	if (c->wbuf != NULL) {
		/* One response per request; a second one is a bug. */
		log_warnx("%s: fd %d: response already queued", __func__,
			  c->fd);
		return;
	}
	c->keep_alive = c->keep_alive && keep_alive;
	c->wbuf = util_malloc(len);
	memcpy(c->wbuf, data, len);
	c->wlen = len;
	c->woff = 0;
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
 * Parse, dispatch and answer buffered requests one at a time.  Dispatch only
 * queues the response (req points into rbuf, which is compacted before the
 * write); the optimistic write happens here, and a response that does not
 * fit the socket buffer continues from the EV_WRITE callback.
 */
static void
conn_process(struct conn *c)
{
	struct http_request req;
	int n;

	while (c->state == CONN_HTTP_READ && c->rlen > 0) {
		n = http_parse_request(c->rbuf, c->rlen, HTTP_MAX_HEAD_SIZE,
				       &req);
		if (n == 0)
			return; /* need more */
		if (n < 0) {
			log_debug("%s: fd %d: bad request head (%d)", __func__,
				  c->fd, -n);
			/* What follows a refused head can't be parsed. */
			c->rlen = 0;
			conn_send_error(c, -n, NULL);
		} else {
			c->nrequests++;
			atomic_fetch_add(&c->w->stats->requests, 1);
			if (req.content_length > WORKER_MAX_BODY) {
				c->rlen = 0;
				conn_send_error(c, 413, NULL);
			} else {
				c->body_left = req.content_length;
				worker_dispatch_http(c, &req);
				if (c->state == CONN_CLOSED)
					return;
				memmove(c->rbuf, c->rbuf + n,
					c->rlen - (size_t)n);
				c->rlen -= (size_t)n;
				/* Drop what of the body is already here. */
				if (c->body_left > 0) {
					size_t k = c->rlen < c->body_left
							   ? c->rlen
							   : (size_t)c->body_left;

					memmove(c->rbuf, c->rbuf + k,
						c->rlen - k);
					c->rlen -= k;
					c->body_left -= k;
				}
			}
		}
		if (c->state != CONN_HTTP_WRITE)
			return; /* dispatch closed it or changed protocol */
		if (conn_flush(c) != 1)
			return;
		conn_finish_response(c);
	}
}

static void
conn_on_read(struct conn *c)
{
	ssize_t n;

	if (c->state == CONN_LINGER || c->state == CONN_HTTP_BODY) {
		char sink[4096];

		n = recv(c->fd, sink, sizeof(sink), 0);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			conn_close(c, n == 0 ? "eof" : "recv failed");
			return;
		}
		if (n > 0 && c->state == CONN_HTTP_BODY) {
			/* Bytes past the body start the next request. */
			if ((uint64_t)n > c->body_left) {
				size_t extra = (size_t)n - (size_t)c->body_left;

				c->rbuf = util_malloc(HTTP_MAX_HEAD_SIZE);
				memcpy(c->rbuf, sink + c->body_left, extra);
				c->rlen = extra;
				c->body_left = 0;
			} else {
				c->body_left -= (uint64_t)n;
			}
			if (c->body_left == 0) {
				conn_set_state(c, CONN_HTTP_READ);
				conn_process(c);
			}
		}
		return;
	}

	if (c->rbuf == NULL)
		c->rbuf = util_malloc(HTTP_MAX_HEAD_SIZE);
	if (c->rlen >= HTTP_MAX_HEAD_SIZE) {
		conn_send_error(c, 431, NULL);
		return;
	}
	n = recv(c->fd, c->rbuf + c->rlen, HTTP_MAX_HEAD_SIZE - c->rlen, 0);
	if (n == 0) {
		conn_close(c, "eof");
		return;
	}
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		if (errno != ECONNRESET)
			log_warn("%s: recv fd %d", __func__, c->fd);
		conn_close(c, "recv failed");
		return;
	}
	if (c->rlen == 0 && c->nrequests > 0)
		conn_set_state(c, CONN_HTTP_READ); /* idle -> head timeout */
	c->rlen += (size_t)n;
	conn_process(c);
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	if (revents & EV_READ)
		conn_on_read(c);
	if ((revents & EV_WRITE) && c->state == CONN_HTTP_WRITE &&
	    conn_flush(c) == 1) {
		conn_finish_response(c);
		conn_process(c); /* a pipelined request may be buffered */
	}
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct conn *c = t->data;

	switch (c->state) {
	case CONN_HTTP_READ:
		if (c->rlen > 0) {
			conn_send_error(c, 408, NULL);
			return;
		}
		conn_close(c, "idle timeout");
		return;
	case CONN_HTTP_BODY:
		conn_close(c, "body timeout");
		return;
	case CONN_HTTP_WRITE:
		conn_close(c, "write timeout");
		return;
	case CONN_LINGER:
		conn_close(c, "linger done");
		return;
	case CONN_CLOSED:
		return;
	}
}
