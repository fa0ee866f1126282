/*
 * event-load: many authenticated, subscribed daemon WebSockets that count
 * the events they receive and how late they arrive.  For orchd's event
 * fan-out and latency benchmarks (scripts/bench/event-fanout).
 *
 *	gcc -O2 -o event-load scripts/bench/event-load.c -lcrypto
 *
 *   event-load -p PORT -k SECRET_FILE -n N [-a ADDR] [-f FIRST_ID]
 *              [-o CONNS_PER_ORCH] [-b SRC_ADDR [-B COUNT]] [-c INFLIGHT]
 *              [-r READY_FILE] [-t MAX_SECONDS] [-T CONNECT_TIMEOUT]
 *              [-D DUMP_FILE] [-E COUNT]
 *
 * Connection i (i = FIRST_ID .. FIRST_ID+N-1) upgrades on /daemon/ws (no
 * extension offered), sends `auth` with an HS256 token for orchestrator
 * "orch-<i / CONNS_PER_ORCH>" and daemon "d-<i>" (scope messages:read,
 * organization "org-bench"), waits for auth_success, sends
 * `subscribe` {"eventTypes":["*"]} and waits for `subscribed`.  When every
 * connection is subscribed or has failed, one JSON line goes to READY_FILE.
 *
 * Then every `event` message is counted; an event whose data starts with
 * {"t":NS (CLOCK_REALTIME nanoseconds, put there by the publisher) gives a
 * latency, receive time - t, into a log-linear histogram of microseconds
 * (< 0.8% error).  `seq`, when present, must increase on each connection,
 * and so must K in an eventId "e-PID-K" (the publisher's counter): a
 * duplicate or reordered event counts as an order error.
 *
 * Windows are driven by signals so that several processes measure the same
 * interval: SIGUSR1 starts a window (counters and histogram reset), SIGUSR2
 * ends it and prints one JSON line on stdout (events, rate, per-connection
 * min/max, latency percentiles and the raw histogram, so that the driver
 * can merge processes); with -D, also one line per connection to
 * DUMP_FILE.<window>: "index events_in_window events_since_ready state
 * local_addr:port" (state 4: open).  Several windows may follow each other on the same
 * connections.  SIGTERM/SIGINT, or MAX_SECONDS after the start, end the
 * program (a final line with "final":true).
 *
 * -E COUNT (a fixed-count stop, for tests): once every connection that is
 * still open has received COUNT events since it got ready (and at least
 * one is open), the window in progress ends as on SIGUSR2 (its JSON line,
 * and the dump with -D; "duration_s" then runs from SIGUSR1 to the last
 * connection's COUNT-th event) and the program stops as on SIGTERM.
 * Without -E nothing of this happens.
 *
 * Each connection's source address is one of COUNT addresses from SRC_ADDR
 * on (IP_BIND_ADDRESS_NO_PORT), so ephemeral ports are per source address.
 * Pings are answered; a close from the server is answered and its code
 * counted.  Loopback use only; bounded in time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE (32 * 1024)

enum st {
	S_CONNECTING,
	S_UPGRADING,
	S_AUTHING,
	S_SUBSCRIBING,
	S_READY,
	S_CLOSED, /* was ready, closed by the server or on error */
	S_FAILED, /* never got ready */
};

struct c {
	int fd;
	enum st st;
	uint32_t rlen;
	uint8_t *rbuf;
	uint64_t started_ns;
	uint64_t last_seq;
	uint64_t last_k;     /* publisher's counter, from eventId e-PID-K */
	uint64_t events;     /* all, since ready */
	uint64_t win_base;   /* events at the window start */
	int close_sent;
};

static struct {
	struct sockaddr_in dst;
	char host_hdr[64];
	int n, first, per_orch, inflight;
	uint32_t src_base;
	int src_count;
	const char *ready_file;
	const char *dump_file;
	uint64_t stop_count;
	double max_s, connect_timeout_s;
} opt = {.n = 1000, .per_orch = 1, .inflight = 500, .src_count = 1,
	 .max_s = 600, .connect_timeout_s = 60};

static char secret[4096];
static size_t secret_len;
static struct c *cs;
static int ep;
static volatile sig_atomic_t sig_stop, sig_win_start, sig_win_end;

static int n_started, n_inflight, n_ready, n_failed, n_closed;
static int n_auth_error, n_sub_error, n_status, n_timeout, n_connect, n_eof;
static uint64_t ev_total, ev_win, ev_nolat, seq_errors, other_msgs,
	proto_errors, lat_neg, order_errors;
static int close_codes[8][2]; /* (code, count), first 8 codes seen */
static int in_window, windows;
static uint64_t win_start_ns;
static uint64_t prng_state = 0x9e3779b97f4a7c15ULL;

/* latency histogram, microseconds (the one of ws-load.c) */
#define H_SUB 128
#define H_LINEAR 256
#define H_SIZE (H_LINEAR + 64 * H_SUB)
static uint64_t hist[H_SIZE];
static uint64_t lat_max_us;

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "event-load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t
prng(void)
{
	prng_state ^= prng_state >> 12;
	prng_state ^= prng_state << 25;
	prng_state ^= prng_state >> 27;
	return prng_state * 0x2545f4914f6cdd1dULL;
}

static int
hist_index(uint64_t v)
{
	int msb, shift;

	if (v < H_LINEAR)
		return (int)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - 7;
	return H_LINEAR + (shift - 1) * H_SUB + (int)((v >> shift) - H_SUB);
}

static uint64_t
hist_value(int idx)
{
	int shift;

	if (idx < H_LINEAR)
		return (uint64_t)idx;
	shift = (idx - H_LINEAR) / H_SUB + 1;
	return ((uint64_t)((idx - H_LINEAR) % H_SUB + H_SUB)) << shift;
}

static void
hist_add(uint64_t us)
{
	int i = hist_index(us);

	if (i >= H_SIZE)
		i = H_SIZE - 1;
	hist[i]++;
	if (us > lat_max_us)
		lat_max_us = us;
}

static uint64_t
hist_pct(double q)
{
	uint64_t total = 0, acc = 0, want;

	for (int i = 0; i < H_SIZE; i++)
		total += hist[i];
	if (total == 0)
		return 0;
	want = (uint64_t)(q * (double)total);
	if (want < 1)
		want = 1;
	for (int i = 0; i < H_SIZE; i++) {
		acc += hist[i];
		if (acc >= want)
			return hist_value(i);
	}
	return lat_max_us;
}

/* ---- tokens and frames (as in auth-load.c) ---------------------------- */

static size_t
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
	return o;
}

static void
token(int orch, int daemon, char *out)
{
	char hdr[64], pl[768], body[1024];
	unsigned char mac[32];
	unsigned int maclen;
	long now = (long)time(NULL);
	int n;

	b64url((const unsigned char *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27,
	       hdr);
	n = snprintf(body, sizeof(body),
		     "{\"sub\":\"orch-%d\",\"orchestratorId\":\"orch-%d\","
		     "\"daemonId\":\"d-%d\",\"organizationId\":\"org-bench\","
		     "\"scopes\":[\"messages:read\"],\"type\":\"access\","
		     "\"iat\":%ld,\"exp\":%ld,\"jti\":\"ev-%d-%d-%lx\"}",
		     orch, orch, daemon, now, now + 7200, orch, daemon,
		     (unsigned long)(prng() & 0xffffffff));
	b64url((const unsigned char *)body, (size_t)n, pl);
	n = snprintf(body, sizeof(body), "%s.%s", hdr, pl);
	HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)body,
	     (size_t)n, mac, &maclen);
	memcpy(out, body, (size_t)n);
	out[n] = '.';
	b64url(mac, maclen, out + n + 1);
}

/* Send one masked frame whole (small frames only); -1 on failure. */
static int
send_frame(struct c *c, unsigned opcode, const void *msg, size_t len)
{
	uint8_t out[2048];
	uint32_t m = (uint32_t)prng();
	uint8_t mask[4] = {(uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16),
			   (uint8_t)(m >> 24)};
	size_t h = 2;
	ssize_t w;

	if (len > sizeof(out) - 8)
		return -1;
	out[0] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		out[1] = (uint8_t)(0x80 | len);
	} else {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		h = 4;
	}
	memcpy(out + h, mask, 4);
	for (size_t i = 0; i < len; i++)
		out[h + 4 + i] = ((const uint8_t *)msg)[i] ^ mask[i & 3];
	w = send(c->fd, out, h + 4 + len, MSG_NOSIGNAL);
	return w == (ssize_t)(h + 4 + len) ? 0 : -1;
}

static void
uuid4(char *out)
{
	uint64_t a = prng(), b = prng();

	snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx",
		 (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
		 (unsigned)a & 0xfff, (unsigned)(0x8000 | (b >> 48 & 0x3fff)),
		 (unsigned long long)(b & 0xffffffffffffULL));
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
		 tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* ---- connection life ------------------------------------------------- */

static void
release(struct c *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = 0;
}

static void
fail(struct c *c, int *why)
{
	if (c->st == S_READY) {
		c->st = S_CLOSED;
		n_closed++;
	} else if (c->st != S_CLOSED && c->st != S_FAILED) {
		c->st = S_FAILED;
		n_failed++;
		n_inflight--;
		if (why != NULL)
			(*why)++;
	}
	release(c);
}

static void
note_close(int code)
{
	for (int i = 0; i < 8; i++) {
		if (close_codes[i][1] == 0 || close_codes[i][0] == code) {
			close_codes[i][0] = code;
			close_codes[i][1]++;
			return;
		}
	}
}

static void
start(struct c *c, int idx)
{
	int one = 1;
	struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)idx};

	n_started++;
	n_inflight++;
	c->started_ns = mono_ns();
	c->st = S_CONNECTING;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		fail(c, &n_connect);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.src_base != 0) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		src.sin_addr.s_addr =
			htonl(opt.src_base + (uint32_t)(idx % opt.src_count));
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
			   sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			fail(c, &n_connect);
			return;
		}
	}
	if (connect(c->fd, (struct sockaddr *)&opt.dst, sizeof(opt.dst)) ==
		    -1 &&
	    errno != EINPROGRESS) {
		fail(c, &n_connect);
		return;
	}
	c->rbuf = malloc(RBUF_SIZE);
	if (c->rbuf == NULL)
		die("out of memory");
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) == -1)
		die("epoll_ctl: %s", strerror(errno));
}

static void
connected(struct c *c, int idx)
{
	int err = 0;
	socklen_t l = sizeof(err);
	char req[512], key[32];
	uint8_t k[16];
	int n;
	struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) == -1 ||
	    err != 0) {
		fail(c, &n_connect);
		return;
	}
	for (int i = 0; i < 16; i++)
		k[i] = (uint8_t)prng();
	b64url(k, 16, key); /* any 16 bytes in base64; url alphabet is fine */
	/* RFC 6455 wants standard base64 of 16 bytes: 22 chars + "==" */
	for (char *p = key; *p; p++)
		if (*p == '-')
			*p = '+';
		else if (*p == '_')
			*p = '/';
	n = snprintf(req, sizeof(req),
		     "GET /daemon/ws HTTP/1.1\r\nHost: %s\r\n"
		     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s==\r\n"
		     "Sec-WebSocket-Version: 13\r\n\r\n",
		     opt.host_hdr, key);
	if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		fail(c, &n_connect);
		return;
	}
	c->st = S_UPGRADING;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static int
msg_type_is(const uint8_t *p, size_t len, const char *type)
{
	char pat[64];
	int n = snprintf(pat, sizeof(pat), "\"type\":\"%s\"", type);

	return memmem(p, len < 64 ? len : 64, pat, (size_t)n) != NULL;
}

static uint64_t
num_after(const uint8_t *p, size_t len, const char *key, int *found)
{
	size_t kl = strlen(key);
	const uint8_t *q = memmem(p, len, key, kl), *end = p + len;
	uint64_t v = 0;

	*found = 0;
	if (q == NULL)
		return 0;
	q += kl;
	while (q < end && *q == ' ')
		q++;
	while (q < end && *q >= '0' && *q <= '9') {
		v = v * 10 + (uint64_t)(*q - '0');
		q++;
		*found = 1;
	}
	return v;
}

/* One complete text message from the server; -1: connection gone. */
static int
on_message(struct c *c, int idx, const uint8_t *p, size_t len)
{
	char msg[1600], id[40], ts[64];
	int n, found;

	(void)idx;
	switch (c->st) {
	case S_AUTHING:
		if (msg_type_is(p, len, "auth_success")) {
			uuid4(id);
			iso_now(ts, sizeof(ts));
			n = snprintf(msg, sizeof(msg),
				     "{\"type\":\"subscribe\",\"id\":\"%s\","
				     "\"timestamp\":\"%s\",\"payload\":"
				     "{\"eventTypes\":[\"*\"]}}",
				     id, ts);
			if (send_frame(c, 0x1, msg, (size_t)n) == -1) {
				fail(c, &n_eof);
				return -1;
			}
			c->st = S_SUBSCRIBING;
			return 0;
		}
		if (msg_type_is(p, len, "auth_error")) {
			if (n_auth_error < 3)
				fprintf(stderr, "event-load: auth_error: %.*s\n",
					(int)(len < 300 ? len : 300), p);
			fail(c, &n_auth_error);
			return -1;
		}
		other_msgs++;
		return 0;
	case S_SUBSCRIBING:
		if (msg_type_is(p, len, "subscribed")) {
			c->st = S_READY;
			n_inflight--;
			n_ready++;
			return 0;
		}
		if (msg_type_is(p, len, "error")) {
			if (n_sub_error < 3)
				fprintf(stderr, "event-load: subscribe: %.*s\n",
					(int)(len < 300 ? len : 300), p);
			fail(c, &n_sub_error);
			return -1;
		}
		other_msgs++;
		return 0;
	case S_READY:
		break;
	default:
		return 0;
	}
	if (!msg_type_is(p, len, "event")) {
		other_msgs++;
		return 0;
	}
	c->events++;
	ev_total++;
	{
		uint64_t seq = num_after(p, len, "\"seq\":", &found);

		if (found) {
			if (seq <= c->last_seq)
				seq_errors++;
			c->last_seq = seq;
		}
	}
	{
		/* eventId "e-PID-K": K must grow on each connection */
		const uint8_t *q = memmem(p, len, "\"eventId\":\"e-", 13);

		if (q != NULL) {
			const uint8_t *e = p + len, *dash;
			uint64_t k = 0;

			q += 13;
			dash = memchr(q, '-', (size_t)(e - q));
			if (dash != NULL) {
				for (q = dash + 1; q < e && *q >= '0' && *q <= '9';
				     q++)
					k = k * 10 + (uint64_t)(*q - '0');
				if (k + 1 <= c->last_k)
					order_errors++;
				c->last_k = k + 1;
			}
		}
	}
	if (!in_window)
		return 0;
	ev_win++;
	{
		uint64_t t = num_after(p, len, "\"data\":{\"t\":", &found);

		if (!found) {
			ev_nolat++;
		} else {
			uint64_t now = real_ns();

			if (now >= t) {
				hist_add((now - t) / 1000);
			} else {
				lat_neg++;
				hist_add(0);
			}
		}
	}
	return 0;
}

static int
send_auth(struct c *c, int idx)
{
	char msg[1600], id[40], ts[64], tok[1024];
	int conn_id = opt.first + idx, orch = conn_id / opt.per_orch, n;

	token(orch, conn_id, tok);
	uuid4(id);
	iso_now(ts, sizeof(ts));
	n = snprintf(msg, sizeof(msg),
		     "{\"type\":\"auth\",\"id\":\"%s\",\"timestamp\":\"%s\","
		     "\"payload\":{\"accessToken\":\"%s\",\"daemonId\":\"d-%d\","
		     "\"orchestratorId\":\"orch-%d\"}}",
		     id, ts, tok, conn_id, orch);
	return send_frame(c, 0x1, msg, (size_t)n);
}

/* Parse complete frames; -1: connection gone. */
static int
frames(struct c *c, int idx)
{
	size_t off = 0;

	while (c->rlen - off >= 2) {
		const uint8_t *b = c->rbuf + off;
		unsigned op = b[0] & 0x0f;
		uint64_t len = b[1] & 0x7f;
		size_t h = 2;

		if ((b[1] & 0x80) || !(b[0] & 0x80) || (b[0] & 0x70)) {
			proto_errors++; /* masked, fragmented or compressed */
			fail(c, NULL);
			return -1;
		}
		if (len == 126) {
			if (c->rlen - off < 4)
				break;
			len = (uint64_t)b[2] << 8 | b[3];
			h = 4;
		} else if (len == 127) {
			if (c->rlen - off < 10)
				break;
			len = 0;
			for (int i = 2; i < 10; i++)
				len = len << 8 | b[i];
			h = 10;
		}
		if (h + len > RBUF_SIZE) {
			proto_errors++;
			fail(c, NULL);
			return -1;
		}
		if (c->rlen - off < h + len)
			break;
		switch (op) {
		case 0x1:
			if (on_message(c, idx, b + h, (size_t)len) == -1)
				return -1;
			break;
		case 0x9:
			if (send_frame(c, 0xa, b + h, (size_t)len) == -1) {
				fail(c, &n_eof);
				return -1;
			}
			break;
		case 0xa:
			break;
		case 0x8:
			note_close(len >= 2 ? (b[h] << 8 | b[h + 1]) : 1005);
			if (!c->close_sent) {
				c->close_sent = 1;
				(void)send_frame(c, 0x8, b + h,
						 len >= 2 ? 2 : 0);
			}
			fail(c, &n_eof);
			return -1;
		default:
			proto_errors++;
			fail(c, NULL);
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

static void
readable(struct c *c, int idx)
{
	for (int round = 0; round < 8; round++) {
		ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen,
				 0);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			if (c->st == S_READY)
				note_close(r == 0 ? 1006 : 1006);
			fail(c, &n_eof);
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		c->rlen += (uint32_t)r;
		if (c->st == S_UPGRADING) {
			uint8_t *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
			size_t hl;

			if (e == NULL) {
				if (c->rlen >= RBUF_SIZE) {
					fail(c, &n_status);
					return;
				}
				continue;
			}
			if (c->rlen < 12 ||
			    memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0) {
				if (n_status < 3)
					fprintf(stderr,
						"event-load: upgrade: %.60s\n",
						c->rbuf);
				fail(c, &n_status);
				return;
			}
			hl = (size_t)(e - c->rbuf) + 4;
			memmove(c->rbuf, c->rbuf + hl, c->rlen - hl);
			c->rlen -= (uint32_t)hl;
			if (send_auth(c, idx) == -1) {
				fail(c, &n_eof);
				return;
			}
			c->st = S_AUTHING;
		}
		if (frames(c, idx) == -1)
			return;
		if ((size_t)r < RBUF_SIZE / 2)
			return;
	}
}

static void
check_timeouts(void)
{
	uint64_t now = mono_ns(),
		 lim = (uint64_t)(opt.connect_timeout_s * 1e9);

	for (int i = 0; i < n_started; i++) {
		struct c *c = &cs[i];

		if (c->st < S_READY && now - c->started_ns > lim)
			fail(c, &n_timeout);
	}
}

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		sig_win_start = 1;
	else if (sig == SIGUSR2)
		sig_win_end = 1;
	else
		sig_stop = 1;
}

static void
window_begin(void)
{
	memset(hist, 0, sizeof(hist));
	lat_max_us = 0;
	ev_win = ev_nolat = lat_neg = 0;
	for (int i = 0; i < opt.n; i++)
		cs[i].win_base = cs[i].events;
	win_start_ns = mono_ns();
	in_window = 1;
}

static void
report(int final)
{
	uint64_t now = mono_ns(), minc = UINT64_MAX, maxc = 0;
	double dur = in_window ? (double)(now - win_start_ns) / 1e9 : 0;
	int open = 0;

	for (int i = 0; i < opt.n; i++) {
		uint64_t e;

		if (cs[i].st != S_READY)
			continue;
		open++;
		e = cs[i].events - cs[i].win_base;
		if (e < minc)
			minc = e;
		if (e > maxc)
			maxc = e;
	}
	if (minc == UINT64_MAX)
		minc = 0;
	printf("{\"pid\":%d,\"final\":%s,\"window\":%d,\"requested\":%d,"
	       "\"ready\":%d,\"open\":%d,\"failed\":%d,\"closed\":%d,"
	       "\"fail\":{\"connect\":%d,\"status\":%d,\"auth_error\":%d,"
	       "\"sub_error\":%d,\"timeout\":%d,\"eof\":%d},"
	       "\"close_codes\":{",
	       (int)getpid(), final ? "true" : "false", windows, opt.n,
	       n_ready, open, n_failed, n_closed, n_connect, n_status,
	       n_auth_error, n_sub_error, n_timeout, n_eof);
	for (int i = 0, f = 1; i < 8; i++) {
		if (close_codes[i][1] == 0)
			continue;
		printf("%s\"%d\":%d", f ? "" : ",", close_codes[i][0],
		       close_codes[i][1]);
		f = 0;
	}
	printf("},\"duration_s\":%.3f,\"events\":%llu,\"rate\":%.1f,"
	       "\"events_total\":%llu,\"no_latency\":%llu,\"clock_neg\":%llu,"
	       "\"seq_errors\":%llu,\"order_errors\":%llu,"
	       "\"other_msgs\":%llu,\"proto_errors\":%llu,"
	       "\"per_conn_min\":%llu,\"per_conn_max\":%llu,"
	       "\"lat_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,"
	       "\"p999\":%llu,\"max\":%llu},\"hist\":[",
	       dur, (unsigned long long)ev_win,
	       dur > 0 ? (double)ev_win / dur : 0.0,
	       (unsigned long long)ev_total, (unsigned long long)ev_nolat,
	       (unsigned long long)lat_neg, (unsigned long long)seq_errors,
	       (unsigned long long)order_errors,
	       (unsigned long long)other_msgs,
	       (unsigned long long)proto_errors, (unsigned long long)minc,
	       (unsigned long long)maxc, (unsigned long long)hist_pct(0.50),
	       (unsigned long long)hist_pct(0.90),
	       (unsigned long long)hist_pct(0.99),
	       (unsigned long long)hist_pct(0.999),
	       (unsigned long long)lat_max_us);
	for (int i = 0, f = 1; i < H_SIZE; i++) {
		if (hist[i] == 0)
			continue;
		printf("%s[%llu,%llu]", f ? "" : ",",
		       (unsigned long long)hist_value(i),
		       (unsigned long long)hist[i]);
		f = 0;
	}
	printf("]}\n");
	fflush(stdout);
	if (opt.dump_file != NULL && !final) {
		char path[4096];
		FILE *fp;

		snprintf(path, sizeof(path), "%s.%d", opt.dump_file, windows);
		if ((fp = fopen(path, "w")) != NULL) {
			for (int i = 0; i < opt.n; i++) {
				struct sockaddr_in la = {0};
				socklen_t ll = sizeof(la);
				char a[INET_ADDRSTRLEN] = "-";

				if (cs[i].fd >= 0 &&
				    getsockname(cs[i].fd, (struct sockaddr *)&la,
						&ll) == 0)
					inet_ntop(AF_INET, &la.sin_addr, a,
						  sizeof(a));
				fprintf(fp, "%d %llu %llu %d %s:%u\n",
					opt.first + i,
					(unsigned long long)(cs[i].events -
							     cs[i].win_base),
					(unsigned long long)cs[i].events,
					(int)cs[i].st, a,
					(unsigned)ntohs(la.sin_port));
			}
			fclose(fp);
		}
	}
}

/* -E: has every open connection got opt.stop_count events? */
static int
count_reached(void)
{
	int open = 0;

	for (int i = 0; i < opt.n; i++) {
		if (cs[i].st != S_READY)
			continue;
		if (cs[i].events < opt.stop_count)
			return 0;
		open++;
	}
	return open > 0;
}

static void
usage(void)
{
	fprintf(stderr,
		"usage: event-load -p PORT -k SECRET_FILE -n N [-a ADDR] "
		"[-f FIRST_ID]\n"
		"         [-o CONNS_PER_ORCH] [-b SRC_ADDR [-B COUNT]] "
		"[-c INFLIGHT]\n"
		"         [-r READY_FILE] [-t MAX_SECONDS] "
		"[-T CONNECT_TIMEOUT] [-D DUMP_FILE] [-E COUNT]\n"
		"  SIGUSR1 starts a window, SIGUSR2 ends it (JSON line), "
		"SIGTERM stops\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[512];
	struct sigaction sa;
	struct rlimit rl;
	const char *addr = "127.0.0.1", *secret_file = NULL;
	int ch, port = 0, next = 0, settled = 0;
	uint64_t t0, last_check = 0;
	FILE *fp;

	while ((ch = getopt(argc, argv, "p:k:n:a:f:o:b:B:c:r:t:T:D:E:")) != -1) {
		switch (ch) {
		case 'p': port = atoi(optarg); break;
		case 'k': secret_file = optarg; break;
		case 'n': opt.n = atoi(optarg); break;
		case 'a': addr = optarg; break;
		case 'f': opt.first = atoi(optarg); break;
		case 'o': opt.per_orch = atoi(optarg); break;
		case 'b': {
			struct in_addr a;

			if (inet_pton(AF_INET, optarg, &a) != 1)
				die("bad source address %s", optarg);
			opt.src_base = ntohl(a.s_addr);
			break;
		}
		case 'B': opt.src_count = atoi(optarg); break;
		case 'c': opt.inflight = atoi(optarg); break;
		case 'r': opt.ready_file = optarg; break;
		case 't': opt.max_s = atof(optarg); break;
		case 'T': opt.connect_timeout_s = atof(optarg); break;
		case 'D': opt.dump_file = optarg; break;
		case 'E': opt.stop_count = strtoull(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (port <= 0 || port > 65535 || secret_file == NULL || opt.n <= 0 ||
	    opt.per_orch <= 0 || opt.src_count <= 0 || opt.inflight <= 0)
		usage();
	opt.dst.sin_family = AF_INET;
	opt.dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &opt.dst.sin_addr) != 1)
		die("bad address %s", addr);
	snprintf(opt.host_hdr, sizeof(opt.host_hdr), "%s:%d", addr, port);
	if ((fp = fopen(secret_file, "r")) == NULL)
		die("%s: %s", secret_file, strerror(errno));
	secret_len = fread(secret, 1, sizeof(secret) - 1, fp);
	fclose(fp);
	while (secret_len > 0 && (secret[secret_len - 1] == '\n' ||
				  secret[secret_len - 1] == '\r'))
		secret_len--;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur != RLIM_INFINITY &&
		    (rlim_t)opt.n + 16 > rl.rlim_cur)
			die("-n %d is over the open-file limit %llu", opt.n,
			    (unsigned long long)rl.rlim_cur);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	prng_state ^= mono_ns() ^ ((uint64_t)getpid() << 32);

	cs = calloc((size_t)opt.n, sizeof(*cs));
	if (cs == NULL)
		die("out of memory");
	for (int i = 0; i < opt.n; i++)
		cs[i].fd = -1;
	ep = epoll_create1(EPOLL_CLOEXEC);
	t0 = mono_ns();

	while (!sig_stop && mono_ns() - t0 < (uint64_t)(opt.max_s * 1e9)) {
		int k;

		while (next < opt.n && n_inflight < opt.inflight)
			start(&cs[next], next), next++;
		if (!settled && next == opt.n && n_inflight == 0) {
			settled = 1;
			if (opt.ready_file != NULL) {
				char tmp[4096];

				snprintf(tmp, sizeof(tmp), "%s.tmp",
					 opt.ready_file);
				if ((fp = fopen(tmp, "w")) == NULL)
					die("%s: %s", tmp, strerror(errno));
				fprintf(fp,
					"{\"ready\":%d,\"failed\":%d,"
					"\"auth_error\":%d,\"seconds\":%.3f}\n",
					n_ready, n_failed, n_auth_error,
					(double)(mono_ns() - t0) / 1e9);
				fclose(fp);
				rename(tmp, opt.ready_file);
			}
		}
		if (sig_win_start) {
			sig_win_start = 0;
			windows++;
			window_begin();
		}
		if (sig_win_end) {
			sig_win_end = 0;
			report(0);
			in_window = 0;
		}
		if (!settled && mono_ns() - last_check > 500000000ULL) {
			check_timeouts();
			last_check = mono_ns();
		}
		k = epoll_wait(ep, evs, 512, 100);
		if (k == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < k; i++) {
			int idx = (int)evs[i].data.u32;
			struct c *c = &cs[idx];

			if (c->fd < 0)
				continue;
			if (c->st == S_CONNECTING)
				connected(c, idx);
			else
				readable(c, idx);
		}
		if (opt.stop_count > 0 && settled && k > 0 && count_reached()) {
			if (in_window) {
				report(0);
				in_window = 0;
			}
			break;
		}
	}
	report(1);
	for (int i = 0; i < opt.n; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	return 0;
}
