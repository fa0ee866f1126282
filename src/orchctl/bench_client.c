/*
 * orchctl bench: one client process.  Single-threaded epoll; it opens its
 * share of the run's connections (at most --inflight handshakes at a time,
 * each socket bound to one of the source addresses first, with
 * IP_BIND_ADDRESS_NO_PORT, because ephemeral ports are per source
 * address), upgrades them (RFC 6455, masked frames, partial reads and
 * writes), then per scenario: holds them (idle), keeps a pipeline of echo
 * messages going (echo), authenticates with a minted HS256 token (auth,
 * fanout), subscribes to "*" and counts events (fanout).  The parent drives
 * it with one-byte commands on ctl_fd and gets struct bench_stats back on
 * rep_fd.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define WBUF_SIZE 8192
#define RBUF_SMALL 8192
#define RBUF_EVENTS (32 * 1024) /* fanout: events come in bursts */
#define MAX_MSG 1024

enum cst {
	C_IDLE,
	C_CONNECTING,
	C_UPGRADING,
	C_AUTHING,
	C_SUBSCRIBING,
	C_READY,
	C_CLOSED, /* was ready, then closed */
	C_FAILED, /* never got ready */
};

struct bconn {
	int fd;
	enum cst st;
	uint8_t pmd, close_sent;
	uint64_t started_ns;
	uint64_t tx_seq, rx_seq; /* echo */
	uint64_t msgs, win_base; /* echoes or events since ready */
	uint64_t last_seq;
	int64_t last_k;
	uint32_t rlen, wlen, woff;
	uint8_t *rbuf, *wbuf;
};

/* One process's state; a static because there is one per process. */
static struct {
	const struct bench_opts *o;
	int first, n, next, inflight, ep, settled;
	size_t rbuf_size;
	struct bconn *c;
	struct bench_stats st; /* counters kept live; snapshot() fills more */
	uint64_t prng;
	uint64_t t0_ns;
	int sending, in_window;
	uint64_t start_ns, win_start_ns, win_end_ns, win_t0;
	int window_auto; /* echo: window ends by the clock */
	/* drain */
	int draining;
	int64_t published;
	uint64_t drain_deadline;
	int quit;
	int idx, windows; /* this process's number; windows ended */
} B;

static volatile sig_atomic_t got_term;

static void
on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static int
write_all(int fd, const void *p, size_t n)
{
	const char *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- connection plumbing ---- */

static void
ep_set(struct bconn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	(void)epoll_ctl(B.ep, op, c->fd, &ev);
}

static void
conn_want(struct bconn *c)
{
	uint32_t ev = EPOLLIN;

	if (c->wlen > c->woff)
		ev |= EPOLLOUT;
	if (c->st == C_CONNECTING)
		ev = EPOLLOUT;
	ep_set(c, ev, EPOLL_CTL_MOD);
}

static void
conn_release(struct bconn *c)
{
	if (c->fd >= 0) {
		close(c->fd); /* also leaves the epoll set */
		c->fd = -1;
	}
	free(c->rbuf);
	free(c->wbuf);
	c->rbuf = c->wbuf = NULL;
	c->rlen = c->wlen = c->woff = 0;
}

/* A connection ends: counted as a failure if it never got ready. */
static void
conn_end(struct bconn *c, enum bench_fail why, int err)
{
	if (c->st == C_READY) {
		c->st = C_CLOSED;
		B.st.closed++;
		if (why == BF_PROTOCOL)
			B.st.proto_errors++;
	} else if (c->st != C_CLOSED && c->st != C_FAILED) {
		B.inflight--;
		c->st = C_FAILED;
		B.st.failed++;
		B.st.fail[why]++;
		if (err != 0 && B.st.first_errno == 0)
			B.st.first_errno = err;
	}
	conn_release(c);
}

static int
frame_append(struct bconn *c, unsigned op, const void *p, size_t len)
{
	size_t w;

	if (c->woff > 0 && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen + len + 8 > WBUF_SIZE && c->woff > 0) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
	}
	w = bench_frame(c->wbuf + c->wlen, WBUF_SIZE - c->wlen, op, p, len,
			(uint32_t)bench_prng(&B.prng));
	c->wlen += (uint32_t)w;
	return w > 0 ? 0 : -1;
}

/* Write what is buffered; -1: the connection is gone. */
static int
conn_flush(struct bconn *c)
{
	while (c->woff < c->wlen) {
		ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
				 MSG_NOSIGNAL);

		if (w > 0) {
			c->woff += (uint32_t)w;
			continue;
		}
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (c->st == C_READY)
			bench_stats_close_code(&B.st, 1006);
		conn_end(c, BF_EOF, errno);
		return -1;
	}
	c->woff = c->wlen = 0;
	return 0;
}

static void
conn_start(struct bconn *c, int g)
{
	const struct bench_opts *o = B.o;
	struct sockaddr_in dst = {.sin_family = AF_INET};
	int fd, one = 1;

	c->st = C_CONNECTING;
	c->fd = -1;
	c->last_k = -1;
	c->started_ns = bench_mono_ns();
	B.st.started++;
	B.inflight++;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		conn_end(c, BF_CONNECT, errno);
		return;
	}
	c->fd = fd;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->src_count > 0) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		src.sin_addr.s_addr =
		    htonl(o->src_first + (uint32_t)g % o->src_count);
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
				 sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			conn_end(c, BF_CONNECT, errno);
			return;
		}
	}
	dst.sin_port = htons((uint16_t)o->port);
	dst.sin_addr.s_addr = htonl(o->dst_addr);
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == -1 &&
	    errno != EINPROGRESS) {
		conn_end(c, BF_CONNECT, errno);
		return;
	}
	c->rbuf = malloc(B.rbuf_size);
	c->wbuf = malloc(WBUF_SIZE);
	if (c->rbuf == NULL || c->wbuf == NULL) {
		conn_end(c, BF_CONNECT, ENOMEM);
		return;
	}
	ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void
conn_connected(struct bconn *c)
{
	const struct bench_opts *o = B.o;
	int err = 0, n;
	socklen_t len = sizeof(err);
	uint8_t key[16];
	char k64[32];

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_end(c, BF_CONNECT, err);
		return;
	}
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)bench_prng(&B.prng);
	{
		/* standard base64 of 16 bytes: 22 chars + "==" */
		static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
					"klmnopqrstuvwxyz0123456789+/";
		int o2 = 0, i;

		for (i = 0; i + 2 < 16; i += 3) {
			uint32_t v = (uint32_t)key[i] << 16 |
				     (uint32_t)key[i + 1] << 8 | key[i + 2];
			k64[o2++] = t[v >> 18];
			k64[o2++] = t[(v >> 12) & 63];
			k64[o2++] = t[(v >> 6) & 63];
			k64[o2++] = t[v & 63];
		}
		k64[o2++] = t[key[15] >> 2];
		k64[o2++] = t[(key[15] & 3) << 4];
		k64[o2++] = '=';
		k64[o2++] = '=';
		k64[o2] = '\0';
	}
	n = snprintf((char *)c->wbuf, WBUF_SIZE,
		     "GET %s HTTP/1.1\r\nHost: %u.%u.%u.%u:%d\r\n"
		     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
		     "%s\r\n",
		     o->path, o->dst_addr >> 24, (o->dst_addr >> 16) & 255,
		     (o->dst_addr >> 8) & 255, o->dst_addr & 255, o->port, k64,
		     o->deflate
			 ? "Sec-WebSocket-Extensions: permessage-deflate; "
			   "client_max_window_bits\r\n"
			 : "");
	c->wlen = (uint32_t)n;
	c->woff = 0;
	c->st = C_UPGRADING;
	if (conn_flush(c) == -1)
		return;
	conn_want(c);
}

static void
conn_ready(struct bconn *c)
{
	c->st = C_READY;
	B.inflight--;
	B.st.ready++;
	if (c->pmd)
		B.st.pmd++;
	if (B.o->scenario == BENCH_AUTH)
		bench_hist_add(&B.st.lat,
			       (bench_mono_ns() - c->started_ns) / 1000);
}

static void
iso_now(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

/* A client message {type, id, timestamp, payload}. */
static int
send_msg(struct bconn *c, const char *type, const char *payload)
{
	char msg[2048], ts[64];
	uint64_t a = bench_prng(&B.prng), b = bench_prng(&B.prng);
	int n;

	iso_now(ts, sizeof(ts));
	n = snprintf(msg, sizeof(msg),
		     "{\"type\":\"%s\",\"id\":\"%08x-%04x-4%03x-%04x-%012llx\","
		     "\"timestamp\":\"%s\",\"payload\":%s}",
		     type, (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
		     (unsigned)a & 0xfff,
		     (unsigned)(0x8000 | (b >> 48 & 0x3fff)),
		     (unsigned long long)(b & 0xffffffffffffULL), ts, payload);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return -1;
	return frame_append(c, 0x1, msg, (size_t)n);
}

static int
send_auth(struct bconn *c)
{
	const struct bench_opts *o = B.o;
	int g = B.first + (int)(c - B.c), id = o->first_id + g;
	char orch[96], daemon[96], tok[1536], pl[1800];

	snprintf(orch, sizeof(orch), "%s%d", o->orch_prefix,
		 o->first_id / o->per_orch + g / o->per_orch);
	snprintf(daemon, sizeof(daemon), "%s%d", o->daemon_prefix, id);
	if (bench_token(o, orch, daemon, bench_prng(&B.prng), tok,
			sizeof(tok)) < 0)
		return -1;
	snprintf(pl, sizeof(pl),
		 "{\"accessToken\":\"%s\",\"daemonId\":\"%s\","
		 "\"orchestratorId\":\"%s\"}",
		 tok, daemon, orch);
	return send_msg(c, "auth", pl);
}

/* ---- echo ---- */

static void
put_hex(uint8_t *o, uint64_t v)
{
	static const char hexd[] = "0123456789abcdef";

	for (int i = 15; i >= 0; i--) {
		o[i] = (uint8_t)hexd[v & 15];
		v >>= 4;
	}
}

static int
get_hex(const uint8_t *p, uint64_t *v)
{
	uint64_t r = 0;

	for (int i = 0; i < 16; i++) {
		int d;

		if (p[i] >= '0' && p[i] <= '9')
			d = p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			d = p[i] - 'a' + 10;
		else
			return -1;
		r = r << 4 | (uint64_t)d;
	}
	*v = r;
	return 0;
}

static void
echo_fill(struct bconn *c, uint64_t now)
{
	uint8_t msg[MAX_MSG];
	size_t size = (size_t)B.o->size;

	if (!B.sending || c->st != C_READY)
		return;
	memset(msg, 'x', size);
	while (c->tx_seq - c->rx_seq < (uint64_t)B.o->depth) {
		put_hex(msg, now);
		put_hex(msg + 16, c->tx_seq);
		if (frame_append(c, 0x1, msg, size) == -1)
			break;
		c->tx_seq++;
	}
}

static int
on_echo(struct bconn *c, const uint8_t *p, size_t len, uint64_t now)
{
	uint64_t sent, seq;

	if (len != (size_t)B.o->size || get_hex(p, &sent) == -1 ||
	    get_hex(p + 16, &seq) == -1 || seq != c->rx_seq)
		return -1;
	c->rx_seq++;
	c->msgs++;
	B.st.msgs_total++;
	if (now >= B.win_start_ns && now < B.win_end_ns) {
		B.st.msgs_window++;
		bench_hist_add(&B.st.lat, now > sent ? (now - sent) / 1000 : 0);
	}
	return 0;
}

/* ---- events ---- */

static void
on_event(struct bconn *c, const uint8_t *p, size_t len)
{
	int found;
	uint64_t seq, t;
	int64_t k;

	c->msgs++;
	B.st.msgs_total++;
	seq = bench_num_after(p, len, "\"seq\":", &found);
	if (found) {
		if (seq <= c->last_seq)
			B.st.seq_errors++;
		c->last_seq = seq;
	}
	k = bench_event_counter(p, len);
	if (k >= 0) {
		if (k <= c->last_k)
			B.st.order_errors++;
		c->last_k = k;
	}
	if (!B.in_window)
		return;
	B.st.msgs_window++;
	t = bench_num_after(p, len, "\"data\":{\"t\":", &found);
	if (!found) {
		B.st.no_latency++;
	} else {
		uint64_t now = bench_real_ns();

		if (now >= t) {
			bench_hist_add(&B.st.lat, (now - t) / 1000);
		} else {
			B.st.clock_neg++;
			bench_hist_add(&B.st.lat, 0);
		}
	}
}

/* One text message; -1: the connection is gone. */
static int
on_text(struct bconn *c, const uint8_t *p, size_t len, uint64_t now)
{
	enum bench_scenario sc = B.o->scenario;

	if (sc == BENCH_ECHO) {
		if (c->st == C_READY && on_echo(c, p, len, now) == 0)
			return 0;
		conn_end(c, BF_PROTOCOL, 0);
		return -1;
	}
	switch (c->st) {
	case C_AUTHING:
		if (bench_msg_type_is(p, len, "auth_success")) {
			if (sc == BENCH_AUTH) {
				conn_ready(c);
				return 0;
			}
			if (send_msg(c, "subscribe",
				     "{\"eventTypes\":[\"*\"]}") == -1) {
				conn_end(c, BF_PROTOCOL, 0);
				return -1;
			}
			c->st = C_SUBSCRIBING;
			return 0;
		}
		if (bench_msg_type_is(p, len, "auth_error")) {
			if (B.st.fail[BF_AUTH] == 0 && !B.o->quiet)
				fprintf(stderr,
					"orchctl: bench: auth_error: "
					"%.*s\n",
					(int)(len < 300 ? len : 300), p);
			conn_end(c, BF_AUTH, 0);
			return -1;
		}
		break;
	case C_SUBSCRIBING:
		if (bench_msg_type_is(p, len, "subscribed")) {
			conn_ready(c);
			return 0;
		}
		if (bench_msg_type_is(p, len, "error")) {
			if (B.st.fail[BF_SUBSCRIBE] == 0 && !B.o->quiet)
				fprintf(stderr,
					"orchctl: bench: subscribe: "
					"%.*s\n",
					(int)(len < 300 ? len : 300), p);
			conn_end(c, BF_SUBSCRIBE, 0);
			return -1;
		}
		break;
	case C_READY:
		if (sc == BENCH_FANOUT && bench_msg_type_is(p, len, "event")) {
			on_event(c, p, len);
			return 0;
		}
		break;
	default:
		break;
	}
	B.st.other_msgs++;
	return 0;
}

/* Complete frames in rbuf; -1: the connection is gone. */
static int
frames_input(struct bconn *c, uint64_t now)
{
	size_t off = 0;

	for (;;) {
		const uint8_t *b = c->rbuf + off;
		size_t h;
		uint64_t len;
		unsigned op, rsv;
		int r = bench_frame_parse(b, c->rlen - off, B.rbuf_size, &h,
					  &len, &op, &rsv);

		if (r == 0)
			break;
		if (r == -1 || (rsv && !c->pmd)) {
			conn_end(c, BF_PROTOCOL, 0);
			return -1;
		}
		if (c->rlen - off < h + len)
			break;
		switch (op) {
		case 0x1:
		case 0x2:
			if (rsv) { /* compressed: never asked for */
				conn_end(c, BF_PROTOCOL, 0);
				return -1;
			}
			if (on_text(c, b + h, (size_t)len, now) == -1)
				return -1;
			break;
		case 0x9:
			(void)frame_append(c, 0xa, b + h, (size_t)len);
			break;
		case 0xa:
			break;
		case 0x8:
			if (c->st == C_READY)
				bench_stats_close_code(
				    &B.st,
				    len >= 2 ? (unsigned)(b[h] << 8 | b[h + 1])
					     : 1005);
			if (!c->close_sent) {
				c->close_sent = 1;
				(void)frame_append(c, 0x8, b + h,
						   len >= 2 ? 2 : 0);
				(void)conn_flush(c);
			}
			if (c->fd >= 0)
				conn_end(c, BF_EOF, 0);
			return -1;
		default:
			conn_end(c, BF_PROTOCOL, 0);
			return -1;
		}
		off += h + (size_t)len;
	}
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= (uint32_t)off;
	}
	return 0;
}

/* The response head is in rbuf: check it.  -1: gone. */
static int
handshake_input(struct bconn *c)
{
	uint8_t *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
	size_t hlen;
	char *p;

	if (end == NULL) {
		if (c->rlen >= B.rbuf_size) {
			conn_end(c, BF_STATUS, 0);
			return -1;
		}
		return 0;
	}
	if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0) {
		if (B.st.fail[BF_STATUS] == 0 && !B.o->quiet)
			fprintf(stderr,
				"orchctl: bench: upgrade answered "
				"%.40s\n",
				(const char *)c->rbuf);
		conn_end(c, BF_STATUS, 0);
		return -1;
	}
	hlen = (size_t)(end - c->rbuf) + 4;
	*end = '\0';
	for (p = (char *)c->rbuf;
	     (p = strcasestr(p, "\r\nSec-WebSocket-Extensions:")) != NULL;
	     p += 2) {
		char *eol = strstr(p + 2, "\r\n");

		if (eol != NULL)
			*eol = '\0';
		if (strcasestr(p, "permessage-deflate") != NULL)
			c->pmd = 1;
		if (eol != NULL)
			*eol = '\r';
	}
	memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
	c->rlen -= (uint32_t)hlen;
	if (B.o->scenario == BENCH_AUTH || B.o->scenario == BENCH_FANOUT) {
		c->st = C_AUTHING;
		if (send_auth(c) == -1) {
			conn_end(c, BF_AUTH, 0);
			return -1;
		}
	} else {
		conn_ready(c);
	}
	return 0;
}

static void
conn_readable(struct bconn *c, uint64_t now)
{
	for (int round = 0; round < 8; round++) {
		ssize_t n =
		    recv(c->fd, c->rbuf + c->rlen, B.rbuf_size - c->rlen, 0);

		if (n == 0 || (n < 0 && errno != EAGAIN &&
			       errno != EWOULDBLOCK && errno != EINTR)) {
			if (c->st == C_READY)
				bench_stats_close_code(&B.st, 1006);
			conn_end(c, BF_EOF, n < 0 ? errno : 0);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		c->rlen += (uint32_t)n;
		if (c->st == C_UPGRADING) {
			if (handshake_input(c) == -1)
				return;
			if (c->st == C_UPGRADING)
				continue;
		}
		if (frames_input(c, now) == -1)
			return;
		if ((size_t)n < B.rbuf_size / 2)
			break; /* most likely drained */
	}
	echo_fill(c, now);
	if (conn_flush(c) == -1)
		return;
	conn_want(c);
}

static void
conn_event(struct bconn *c, uint32_t ev, uint64_t now)
{
	if (c->st == C_CONNECTING) {
		conn_connected(c);
		return;
	}
	if (ev & EPOLLOUT) {
		echo_fill(c, now);
		if (conn_flush(c) == -1)
			return;
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		conn_readable(c, now);
		return;
	}
	conn_want(c);
}

/* ---- reports ---- */

/* Fill the per-connection figures and send the report to the parent. */
static void
report(char kind)
{
	struct bench_stats *s = &B.st;
	uint64_t now = bench_mono_ns();

	s->open = 0;
	s->per_conn_min = UINT64_MAX;
	s->per_conn_max = 0;
	s->expected_missing = 0;
	for (int i = 0; i < B.next; i++) {
		struct bconn *c = &B.c[i];
		uint64_t w = c->msgs - c->win_base;

		if (c->st == C_READY)
			s->open++;
		if (c->st != C_READY && c->st != C_CLOSED)
			continue;
		if (w < s->per_conn_min)
			s->per_conn_min = w;
		if (w > s->per_conn_max)
			s->per_conn_max = w;
	}
	if (B.draining) {
		for (int i = 0; i < B.next; i++) {
			int64_t want;
			int g = B.first + i;
			int orch = g / B.o->per_orch;

			if (B.c[i].st != C_READY && B.c[i].st != C_CLOSED)
				continue;
			if (!B.o->targeted)
				want = B.published;
			else if (orch >= B.o->norch)
				want = 0;
			else
				want = B.published / B.o->norch +
				       (orch < B.published % B.o->norch);
			if ((int64_t)B.c[i].msgs < want)
				s->expected_missing +=
				    (uint64_t)(want - (int64_t)B.c[i].msgs);
		}
	}
	if (kind != BENCH_REP_READY && B.in_window)
		s->window_s = (double)(now - B.win_t0) / 1e9;
}

static int rep_fd_g = -1;

static void
send_report(char kind)
{
	report(kind);
	if (write_all(rep_fd_g, &kind, 1) == -1 ||
	    write_all(rep_fd_g, &B.st, sizeof(B.st)) == -1)
		B.quit = 1; /* the parent is gone */
}

/* --dump: "index events_in_window events_since_ready open|closed|failed
 * local_addr:port" per connection, after each window. */
static void
dump_window(void)
{
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "%s.%d.%d", B.o->dump, B.idx, B.windows);
	if ((fp = fopen(path, "w")) == NULL) {
		fprintf(stderr, "orchctl: bench: %s: %s\n", path,
			strerror(errno));
		return;
	}
	for (int i = 0; i < B.next; i++) {
		struct bconn *c = &B.c[i];
		struct sockaddr_in la = {0};
		socklen_t ll = sizeof(la);
		char a[INET_ADDRSTRLEN] = "-";

		if (c->fd >= 0 &&
		    getsockname(c->fd, (struct sockaddr *)&la, &ll) == 0)
			inet_ntop(AF_INET, &la.sin_addr, a, sizeof(a));
		fprintf(fp, "%d %llu %llu %s %s:%u\n",
			B.o->first_id + B.first + i,
			(unsigned long long)(c->msgs - c->win_base),
			(unsigned long long)c->msgs,
			c->st == C_READY    ? "open"
			: c->st == C_CLOSED ? "closed"
					    : "failed",
			a, (unsigned)ntohs(la.sin_port));
	}
	fclose(fp);
}

static void
window_begin(uint64_t now)
{
	memset(&B.st.lat, 0, sizeof(B.st.lat));
	B.st.msgs_window = B.st.no_latency = B.st.clock_neg = 0;
	for (int i = 0; i < B.next; i++)
		B.c[i].win_base = B.c[i].msgs;
	B.win_t0 = now;
	B.in_window = 1;
}

/* --until-count: has every open connection got that many events? */
static int
count_reached(void)
{
	int open = 0;

	for (int i = 0; i < B.next; i++) {
		if (B.c[i].st != C_READY)
			continue;
		if (B.c[i].msgs < B.o->until_count)
			return 0;
		open++;
	}
	return open > 0;
}

/* Every open connection has got what was published (drain). */
static int
drained(void)
{
	report(BENCH_REP_FINAL);
	return B.st.expected_missing == 0;
}

static void
on_ctl(int fd, uint64_t now)
{
	char cmd;
	ssize_t r = read(fd, &cmd, 1);

	if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
		B.quit = 1;
		return;
	}
	if (r < 0)
		return;
	switch (cmd) {
	case BENCH_CMD_START: {
		int64_t at_ms;
		int64_t wait_ms;

		if (read(fd, &at_ms, sizeof(at_ms)) != sizeof(at_ms)) {
			B.quit = 1;
			return;
		}
		wait_ms = at_ms - (int64_t)(bench_real_ns() / 1000000ULL);
		if (wait_ms < 0)
			wait_ms = 0;
		B.start_ns = now + (uint64_t)wait_ms * 1000000ULL;
		B.win_start_ns = B.start_ns + (uint64_t)(B.o->warmup_s * 1e9);
		B.win_end_ns =
		    B.win_start_ns + (uint64_t)(B.o->duration_s * 1e9);
		B.window_auto = 1;
		break;
	}
	case BENCH_CMD_WINDOW:
		window_begin(now);
		break;
	case BENCH_CMD_END:
		B.windows++;
		if (B.o->dump != NULL)
			dump_window();
		send_report(BENCH_REP_WINDOW);
		B.in_window = 0;
		break;
	case BENCH_CMD_DRAIN: {
		struct {
			int64_t published;
			double seconds;
		} d;

		if (read(fd, &d, sizeof(d)) != sizeof(d)) {
			B.quit = 1;
			return;
		}
		B.draining = 1;
		B.published = d.published;
		B.drain_deadline = now + (uint64_t)(d.seconds * 1e9);
		break;
	}
	default: /* BENCH_CMD_QUIT */
		B.quit = 1;
		break;
	}
}

static void
start_traffic(uint64_t now)
{
	B.sending = 1;
	B.win_t0 = B.win_start_ns;
	for (int i = 0; i < B.next; i++) {
		struct bconn *c = &B.c[i];

		if (c->st != C_READY)
			continue;
		echo_fill(c, now);
		if (conn_flush(c) == 0)
			conn_want(c);
	}
}

int
bench_client_run(const struct bench_opts *o, int idx, int first, int n,
		 int ctl_fd, int rep_fd)
{
	struct epoll_event evs[512];
	struct sigaction sa;
	uint64_t last_check = 0, hard_end;
	struct epoll_event cev = {.events = EPOLLIN, .data.ptr = NULL};

	memset(&B, 0, sizeof(B));
	B.o = o;
	B.idx = idx;
	B.first = first;
	B.n = n;
	rep_fd_g = rep_fd;
	B.rbuf_size = o->scenario == BENCH_FANOUT ? RBUF_EVENTS : RBUF_SMALL;
	bench_stats_init(&B.st);
	B.st.requested = (uint64_t)n;
	B.prng = 0x9e3779b97f4a7c15ULL ^ bench_mono_ns() ^
		 ((uint64_t)getpid() << 32);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	B.c = calloc((size_t)(n > 0 ? n : 1), sizeof(*B.c));
	B.ep = epoll_create1(EPOLL_CLOEXEC);
	if (B.c == NULL || B.ep == -1) {
		fprintf(stderr, "orchctl: bench: client: %s\n",
			strerror(errno));
		return 1;
	}
	for (int i = 0; i < n; i++)
		B.c[i].fd = -1;
	(void)epoll_ctl(B.ep, EPOLL_CTL_ADD, ctl_fd, &cev);
	B.t0_ns = bench_mono_ns();
	hard_end = B.t0_ns + (uint64_t)((o->timeout_s + 30) * 1e9);

	while (!B.quit && !got_term) {
		uint64_t now = bench_mono_ns();
		int timeout = 100, k;

		if (now >= hard_end)
			break;
		while (B.next < n && B.inflight < o->inflight) {
			conn_start(&B.c[B.next], first + B.next);
			B.next++;
		}
		if (!B.settled && B.next == n && B.inflight == 0) {
			B.settled = 1;
			B.st.ready_s = (double)(now - B.t0_ns) / 1e9;
			send_report(BENCH_REP_READY);
		}
		if (!B.settled && now - last_check > 500000000ULL) {
			uint64_t lim = (uint64_t)(o->connect_timeout_s * 1e9);

			for (int i = 0; i < B.next; i++) {
				struct bconn *c = &B.c[i];

				if (c->st >= C_CONNECTING && c->st < C_READY &&
				    now > c->started_ns &&
				    now - c->started_ns > lim)
					conn_end(c, BF_TIMEOUT, 0);
			}
			last_check = now;
		}
		if (B.window_auto && !B.sending && now >= B.start_ns)
			start_traffic(now);
		if (B.window_auto && B.sending && now >= B.win_end_ns) {
			B.in_window = 1;
			B.win_t0 = B.win_start_ns;
			B.windows++;
			if (o->dump != NULL)
				dump_window();
			send_report(BENCH_REP_WINDOW);
			B.in_window = 0;
			B.sending = 0;
			B.window_auto = 0;
		}
		if (B.draining && (now >= B.drain_deadline || drained()))
			break;
		if (o->until_count > 0 && B.settled && count_reached()) {
			/* the window in progress ends as on SIGUSR2 */
			if (B.in_window) {
				B.windows++;
				if (o->dump != NULL)
					dump_window();
				send_report(BENCH_REP_WINDOW);
				B.in_window = 0;
			}
			break;
		}
		if (B.window_auto) {
			uint64_t next = B.sending ? B.win_end_ns : B.start_ns;

			if (next > now && (next - now) / 1000000ULL < 100)
				timeout = (int)((next - now) / 1000000ULL) + 1;
			else if (next <= now)
				timeout = 0;
		}
		k = epoll_wait(B.ep, evs, 512, timeout);
		if (k == -1 && errno != EINTR)
			break;
		now = bench_mono_ns();
		for (int i = 0; i < k; i++) {
			struct bconn *c = evs[i].data.ptr;

			if (c == NULL) {
				on_ctl(ctl_fd, now);
				continue;
			}
			if (c->fd >= 0)
				conn_event(c, evs[i].events, now);
		}
	}
	send_report(BENCH_REP_FINAL);
	for (int i = 0; i < n; i++)
		if (B.c[i].fd >= 0)
			close(B.c[i].fd);
	free(B.c);
	close(B.ep);
	return 0;
}
