/*
 * ws-load: a small WebSocket load generator for orchd's benchmarks.
 *
 * Single-threaded, epoll, libc only.  Build:
 *
 *	gcc -O2 -o ws-load scripts/bench/ws-load.c
 *
 * Modes:
 *
 *   idle  Open N connections, complete the RFC 6455 upgrade on each (the
 *         status line must be 101), then hold them open without sending
 *         anything until -t seconds have passed or SIGTERM/SIGINT/SIGUSR1
 *         arrives.  Pings are answered (masked pongs), a server close is
 *         answered and counted.  When every connection has either upgraded
 *         or failed, one "ready" JSON line goes to the -r file (if given).
 *         At the end a JSON report goes to stdout.
 *
 *   echo  Open N connections, then on each keep D text messages of -s
 *         bytes in flight (a pipeline of depth D): each echo received
 *         releases the next message.  Echoes are checked (opcode, length,
 *         order).  Only echoes received in the window
 *         [start + warmup, start + warmup + duration) are counted; their
 *         round-trip latencies go into a log-linear histogram (< 0.8%
 *         error).  The JSON report on stdout has the count, the rate, the
 *         percentiles and the raw histogram, so that the reports of
 *         several processes can be merged.  -S gives the start as a wall
 *         clock time (ms since the epoch), so that several processes
 *         measure the same window.
 *
 * Client frames are masked with a fresh pseudo-random key.  Partial reads
 * and writes are handled everywhere.  -b/-B spread the connections over
 * several source addresses (127.0.0.2, 127.0.0.3, ...) with
 * IP_BIND_ADDRESS_NO_PORT, so that the ephemeral port range is per source
 * address.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE 8192
#define WBUF_SIZE 8192
#define MAX_MSG 1024
#define MAX_DEPTH 256

enum cstate {
	C_IDLE = 0,   /* not started */
	C_CONNECTING, /* non-blocking connect in progress */
	C_HANDSHAKE,  /* request sent (or being sent), waiting for 101 */
	C_OPEN,       /* upgraded */
	C_DONE,       /* closed after having been open */
	C_FAILED,     /* never opened */
};

struct conn {
	int fd;
	enum cstate state;
	int pmd;            /* server accepted permessage-deflate */
	int close_sent;
	uint64_t started_ns; /* connect() time */
	uint64_t tx_seq, rx_seq;
	uint64_t window_echoes;
	uint32_t rlen, wlen, woff;
	uint8_t *rbuf, *wbuf;
};

enum fail_reason {
	F_CONNECT = 0, /* connect() or SO_ERROR */
	F_STATUS,      /* answer was not 101 */
	F_EOF,         /* closed before the upgrade */
	F_TIMEOUT,     /* no upgrade within the connect timeout */
	F_PROTOCOL,    /* bad frame or echo mismatch */
	F_IO,          /* read/write error after the upgrade */
	F_N
};
static const char *fail_names[F_N] = {"connect", "status", "eof",
				      "timeout", "protocol", "io"};

static struct {
	int echo; /* mode */
	struct sockaddr_in dst;
	const char *host_hdr;
	const char *path;
	int n;
	uint32_t src_base; /* host order; 0 = let the kernel choose */
	int src_count;
	int offer_pmd;
	int max_inflight;
	double hold_s, duration_s, warmup_s, connect_timeout_s;
	int depth;
	int msg_size;
	int64_t start_at_ms; /* wall clock; 0 = when connected */
	const char *ready_file;
	int quiet;
	const char *conn_dump; /* echo: per-connection counts go here */
} opt = {
	.path = "/echo",
	.n = 100,
	.src_count = 1,
	.max_inflight = 256,
	.hold_s = 0,
	.duration_s = 10,
	.warmup_s = 1,
	.connect_timeout_s = 60,
	.depth = 1,
	.msg_size = 32,
};

static struct conn *conns;
static int epfd;
static volatile sig_atomic_t got_stop;
static uint64_t prng_state = 0x9e3779b97f4a7c15ULL;

/* counters */
static int n_started, n_inflight, n_open, n_failed, n_pmd, n_done;
static int n_closed_by_server, n_next;
static int fail_count[F_N];
static int first_errno;
static uint64_t echoes_total, echoes_window, protocol_errors;

/* latency histogram, microseconds, log-linear: 128 sub-buckets per octave */
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
	fprintf(stderr, "ws-load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
prng(void)
{
	/* xorshift64* */
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

static void
on_signal(int sig)
{
	(void)sig;
	got_stop = 1;
}

/* ---- connection plumbing --------------------------------------------- */

static void
ep_set(struct conn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (epoll_ctl(epfd, op, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
}

static void
conn_want(struct conn *c)
{
	uint32_t ev = EPOLLIN;

	if (c->state == C_CONNECTING || c->wlen > c->woff)
		ev |= EPOLLOUT;
	if (c->state == C_CONNECTING)
		ev = EPOLLOUT;
	ep_set(c, ev, EPOLL_CTL_MOD);
}

static void
conn_release(struct conn *c)
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

static void
conn_fail(struct conn *c, enum fail_reason why, int err)
{
	if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
		n_inflight--;
	if (c->state == C_OPEN) {
		n_open--;
		n_done++;
		c->state = C_DONE;
		if (why == F_PROTOCOL)
			protocol_errors++;
	} else {
		c->state = C_FAILED;
		n_failed++;
	}
	fail_count[why]++;
	if (err != 0 && first_errno == 0)
		first_errno = err;
	conn_release(c);
}

static void
conn_closed_open(struct conn *c)
{
	/* An open connection the server closed (close frame or EOF). */
	n_open--;
	n_done++;
	n_closed_by_server++;
	c->state = C_DONE;
	conn_release(c);
}

static void
b64(const uint8_t *in, size_t n, char *out)
{
	static const char t[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = t[(v >> 6) & 63];
		out[o++] = t[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = t[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* Append one masked frame to the write buffer; 0 if it does not fit. */
static int
frame_append(struct conn *c, unsigned opcode, const uint8_t *p, size_t len)
{
	uint8_t *o;
	size_t h = len < 126 ? 2 : 4;
	uint32_t m = (uint32_t)prng();
	uint8_t mask[4] = {(uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16),
			   (uint8_t)(m >> 24)};

	if (c->woff > 0 && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen + h + 4 + len > WBUF_SIZE) {
		/* compact */
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
		if (c->wlen + h + 4 + len > WBUF_SIZE)
			return 0;
	}
	o = c->wbuf + c->wlen;
	o[0] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		o[1] = (uint8_t)(0x80 | len);
	} else {
		o[1] = 0x80 | 126;
		o[2] = (uint8_t)(len >> 8);
		o[3] = (uint8_t)len;
	}
	memcpy(o + h, mask, 4);
	for (size_t i = 0; i < len; i++)
		o[h + 4 + i] = p[i] ^ mask[i & 3];
	c->wlen += (uint32_t)(h + 4 + len);
	return 1;
}

/* Write what is buffered.  -1: the connection is gone. */
static int
conn_flush(struct conn *c)
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
			break;
		if (c->state == C_OPEN && (errno == EPIPE || errno == ECONNRESET))
			conn_closed_open(c);
		else
			conn_fail(c, c->state == C_OPEN ? F_IO : F_EOF, errno);
		return -1;
	}
	if (c->woff == c->wlen)
		c->woff = c->wlen = 0;
	return 0;
}

static void
conn_start(struct conn *c, int i)
{
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->state = C_CONNECTING;
	c->fd = -1;
	n_started++;
	n_inflight++;
	c->started_ns = now_ns();
	if (fd == -1) {
		conn_fail(c, F_CONNECT, errno);
		return;
	}
	c->fd = fd;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.src_base != 0) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		src.sin_addr.s_addr =
			htonl(opt.src_base + (uint32_t)(i % opt.src_count));
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
				 sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			conn_fail(c, F_CONNECT, errno);
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&opt.dst, sizeof(opt.dst)) == -1 &&
	    errno != EINPROGRESS) {
		conn_fail(c, F_CONNECT, errno);
		return;
	}
	c->rbuf = malloc(RBUF_SIZE);
	c->wbuf = malloc(WBUF_SIZE);
	if (c->rbuf == NULL || c->wbuf == NULL)
		die("out of memory");
	ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void
conn_connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	uint8_t key[16];
	char k64[32];
	int n;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_fail(c, F_CONNECT, err);
		return;
	}
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)prng();
	b64(key, sizeof(key), k64);
	n = snprintf((char *)c->wbuf, WBUF_SIZE,
		     "GET %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n"
		     "%s"
		     "\r\n",
		     opt.path, opt.host_hdr, k64,
		     opt.offer_pmd ? "Sec-WebSocket-Extensions: "
				     "permessage-deflate; "
				     "client_max_window_bits\r\n"
				   : "");
	c->wlen = (uint32_t)n;
	c->woff = 0;
	c->state = C_HANDSHAKE;
	if (conn_flush(c) == -1)
		return;
	conn_want(c);
}

/* ---- echo traffic ---------------------------------------------------- */

static const char hexd[] = "0123456789abcdef";

static void
put_hex(uint8_t *o, uint64_t v)
{
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

static int sending;             /* echo mode: the load has started */
static uint64_t win_start_ns, win_end_ns;

/* Fill the pipeline up to its depth. */
static void
echo_fill(struct conn *c, uint64_t now)
{
	uint8_t msg[MAX_MSG];

	if (!sending || c->state != C_OPEN || got_stop)
		return;
	memset(msg, 'x', (size_t)opt.msg_size);
	while (c->tx_seq - c->rx_seq < (uint64_t)opt.depth) {
		put_hex(msg, now);
		put_hex(msg + 16, c->tx_seq);
		if (!frame_append(c, 0x1, msg, (size_t)opt.msg_size))
			break;
		c->tx_seq++;
	}
}

static int
on_echo(struct conn *c, const uint8_t *p, size_t len, uint64_t now)
{
	uint64_t sent, seq;

	if (len != (size_t)opt.msg_size || get_hex(p, &sent) == -1 ||
	    get_hex(p + 16, &seq) == -1 || seq != c->rx_seq)
		return -1;
	c->rx_seq++;
	echoes_total++;
	if (now >= win_start_ns && now < win_end_ns) {
		echoes_window++;
		c->window_echoes++;
		hist_add(now > sent ? (now - sent) / 1000 : 0);
	}
	return 0;
}

/* ---- input ----------------------------------------------------------- */

/* Parse complete frames in rbuf.  -1: the connection is gone. */
static int
frames_input(struct conn *c, uint64_t now)
{
	size_t off = 0;

	while (c->rlen - off >= 2) {
		const uint8_t *b = c->rbuf + off;
		unsigned op = b[0] & 0x0f, rsv = b[0] & 0x70;
		uint64_t len = b[1] & 0x7f;
		size_t h = 2;

		if ((b[1] & 0x80) || !(b[0] & 0x80) || (rsv && !c->pmd)) {
			conn_fail(c, F_PROTOCOL, 0); /* masked/fragmented */
			return -1;
		}
		if (len == 126) {
			if (c->rlen - off < 4)
				break;
			len = (uint64_t)b[2] << 8 | b[3];
			h = 4;
		} else if (len == 127) {
			conn_fail(c, F_PROTOCOL, 0); /* never this big */
			return -1;
		}
		if (h + len > RBUF_SIZE) {
			conn_fail(c, F_PROTOCOL, 0);
			return -1;
		}
		if (c->rlen - off < h + len)
			break;
		switch (op) {
		case 0x1:
		case 0x2:
			if (!opt.echo || rsv ||
			    on_echo(c, b + h, (size_t)len, now) == -1) {
				conn_fail(c, F_PROTOCOL, 0);
				return -1;
			}
			break;
		case 0x9: /* ping */
			frame_append(c, 0xa, b + h, (size_t)len);
			break;
		case 0xa:
			break;
		case 0x8: /* close: answer it and go */
			if (!c->close_sent) {
				frame_append(c, 0x8, b + h, len >= 2 ? 2 : 0);
				c->close_sent = 1;
				(void)conn_flush(c);
			}
			if (c->state == C_OPEN)
				conn_closed_open(c);
			return -1;
		default:
			conn_fail(c, F_PROTOCOL, 0);
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

/* The response head is complete in rbuf: check it.  -1: gone. */
static int
handshake_input(struct conn *c)
{
	char *head = (char *)c->rbuf, *end, *p;
	size_t hlen;

	end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
	if (end == NULL) {
		if (c->rlen >= RBUF_SIZE) {
			conn_fail(c, F_STATUS, 0);
			return -1;
		}
		return 0;
	}
	hlen = (size_t)(end - head) + 4;
	if (c->rlen < 12 || strncmp(head, "HTTP/1.1 101", 12) != 0) {
		conn_fail(c, F_STATUS, 0);
		return -1;
	}
	/* permessage-deflate accepted? (case-insensitive header search) */
	*end = '\0';
	for (p = head; (p = strcasestr(p, "\r\nSec-WebSocket-Extensions:")) !=
		       NULL;
	     p += 2) {
		char *eol = strstr(p + 2, "\r\n");
		char save = 0;

		if (eol != NULL) {
			save = *eol;
			*eol = '\0';
		}
		if (strcasestr(p, "permessage-deflate") != NULL)
			c->pmd = 1;
		if (eol != NULL)
			*eol = save;
	}
	memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
	c->rlen -= (uint32_t)hlen;
	c->state = C_OPEN;
	n_inflight--;
	n_open++;
	if (c->pmd)
		n_pmd++;
	return 0;
}

static void
conn_readable(struct conn *c, uint64_t now)
{
	for (int round = 0; round < 4; round++) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);

		if (n == 0) {
			if (c->state == C_OPEN)
				conn_closed_open(c);
			else
				conn_fail(c, F_EOF, 0);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (c->state == C_OPEN && errno == ECONNRESET)
				conn_closed_open(c);
			else
				conn_fail(c, c->state == C_OPEN ? F_IO : F_EOF,
					  errno);
			return;
		}
		c->rlen += (uint32_t)n;
		if (c->state == C_HANDSHAKE) {
			if (handshake_input(c) == -1)
				return;
			if (c->state != C_OPEN)
				continue;
		}
		if (frames_input(c, now) == -1)
			return;
		if ((size_t)n < RBUF_SIZE / 2)
			break; /* most likely drained */
	}
	echo_fill(c, now);
	if (conn_flush(c) == -1)
		return;
	conn_want(c);
}

static void
conn_event(struct conn *c, uint32_t ev, uint64_t now)
{
	if (c->state == C_CONNECTING) {
		conn_connected(c);
		return;
	}
	if (ev & (EPOLLOUT)) {
		if (conn_flush(c) == -1)
			return;
		if (c->state == C_OPEN) {
			echo_fill(c, now);
			if (conn_flush(c) == -1)
				return;
		}
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		conn_readable(c, now);
		return;
	}
	conn_want(c);
}

/* ---- main ------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr,
		"usage: ws-load idle|echo -p PORT [-a ADDR] [-P PATH] [-n N]\n"
		"         [-b SRC_ADDR [-B COUNT]] [-z] [-c INFLIGHT]\n"
		"         [-t SECONDS] [-r READY_FILE] [-T CONNECT_TIMEOUT]\n"
		"         [-d DEPTH] [-s SIZE] [-w WARMUP] [-S START_AT_MS] [-q]\n"
		"         [-D CONN_DUMP_FILE]\n"
		"  idle: -t is the hold time after all are up (0: until "
		"SIGTERM)\n"
		"  echo: -t is the measured duration (default 10)\n");
	exit(2);
}

static void
start_more(void)
{
	while (n_next < opt.n && n_inflight < opt.max_inflight && !got_stop) {
		conn_start(&conns[n_next], n_next);
		n_next++;
	}
}

static void
check_timeouts(uint64_t now)
{
	uint64_t limit = (uint64_t)(opt.connect_timeout_s * 1e9);

	for (int i = 0; i < n_next; i++) {
		struct conn *c = &conns[i];

		if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) &&
		    now > c->started_ns && now - c->started_ns > limit)
			conn_fail(c, F_TIMEOUT, 0);
	}
}

static void
print_fail_json(FILE *fp)
{
	fprintf(fp, "\"fail\":{");
	for (int i = 0; i < F_N; i++)
		fprintf(fp, "%s\"%s\":%d", i ? "," : "", fail_names[i],
			fail_count[i]);
	fprintf(fp, "},\"first_errno\":\"%s\"",
		first_errno ? strerror(first_errno) : "");
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[512];
	struct rlimit rl;
	struct sigaction sa;
	int ch, port = 0;
	const char *addr = "127.0.0.1";
	char hosthdr[64];
	uint64_t t_begin, t_settled = 0, hold_end = 0, start_ns = 0;
	uint64_t last_check = 0;
	int settled = 0;

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "echo") == 0)
		opt.echo = 1;
	else if (strcmp(argv[1], "idle") != 0)
		usage();
	optind = 2;
	while ((ch = getopt(argc, argv, "a:p:P:n:b:B:zc:t:r:T:d:s:w:S:qD:")) !=
	       -1) {
		switch (ch) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'P': opt.path = optarg; break;
		case 'n': opt.n = atoi(optarg); break;
		case 'b': {
			struct in_addr a;

			if (inet_pton(AF_INET, optarg, &a) != 1)
				die("bad source address %s", optarg);
			opt.src_base = ntohl(a.s_addr);
			break;
		}
		case 'B': opt.src_count = atoi(optarg); break;
		case 'z': opt.offer_pmd = 1; break;
		case 'c': opt.max_inflight = atoi(optarg); break;
		case 't':
			opt.hold_s = opt.duration_s = atof(optarg);
			break;
		case 'r': opt.ready_file = optarg; break;
		case 'T': opt.connect_timeout_s = atof(optarg); break;
		case 'd': opt.depth = atoi(optarg); break;
		case 's': opt.msg_size = atoi(optarg); break;
		case 'w': opt.warmup_s = atof(optarg); break;
		case 'S': opt.start_at_ms = atoll(optarg); break;
		case 'q': opt.quiet = 1; break;
		case 'D': opt.conn_dump = optarg; break;
		default: usage();
		}
	}
	if (port <= 0 || port > 65535 || opt.n <= 0 || opt.src_count <= 0 ||
	    opt.max_inflight <= 0 || opt.depth <= 0 || opt.depth > MAX_DEPTH ||
	    opt.msg_size < 32 || opt.msg_size > MAX_MSG)
		usage();
	if (opt.echo && opt.offer_pmd)
		die("-z is for idle mode only (echoes are not inflated)");
	opt.dst.sin_family = AF_INET;
	opt.dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &opt.dst.sin_addr) != 1)
		die("bad address %s", addr);
	snprintf(hosthdr, sizeof(hosthdr), "%s:%d", addr, port);
	opt.host_hdr = hosthdr;

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
	signal(SIGPIPE, SIG_IGN);

	prng_state ^= now_ns() ^ ((uint64_t)getpid() << 32);
	conns = calloc((size_t)opt.n, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	for (int i = 0; i < opt.n; i++)
		conns[i].fd = -1;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd == -1)
		die("epoll_create1: %s", strerror(errno));

	t_begin = now_ns();
	for (;;) {
		uint64_t now = now_ns();
		int timeout = 100, n;

		if (got_stop)
			break;
		start_more();
		if (!settled && n_next == opt.n && n_inflight == 0) {
			settled = 1;
			t_settled = now;
			if (!opt.quiet)
				fprintf(stderr,
					"ws-load: %d upgraded, %d failed in "
					"%.2f s\n",
					n_open, n_failed,
					(double)(now - t_begin) / 1e9);
			if (opt.ready_file != NULL) {
				FILE *fp = fopen(opt.ready_file, "w");

				if (fp == NULL)
					die("%s: %s", opt.ready_file,
					    strerror(errno));
				fprintf(fp,
					"{\"upgraded\":%d,\"failed\":%d,"
					"\"pmd\":%d,\"connect_s\":%.3f}\n",
					n_open, n_failed, n_pmd,
					(double)(now - t_begin) / 1e9);
				fclose(fp);
			}
			if (!opt.echo) {
				if (opt.hold_s > 0)
					hold_end = now +
						   (uint64_t)(opt.hold_s * 1e9);
			} else {
				int64_t wait = opt.start_at_ms > 0
						       ? opt.start_at_ms -
								 wall_ms()
						       : 0;

				if (wait < 0) {
					fprintf(stderr,
						"ws-load: connected %lld ms "
						"after the start time\n",
						(long long)-wait);
					wait = 0;
				}
				start_ns = now + (uint64_t)wait * 1000000ULL;
				win_start_ns = start_ns +
					       (uint64_t)(opt.warmup_s * 1e9);
				win_end_ns = win_start_ns +
					     (uint64_t)(opt.duration_s * 1e9);
			}
		}
		if (settled && opt.echo && !sending && now >= start_ns) {
			sending = 1;
			for (int i = 0; i < opt.n; i++) {
				struct conn *c = &conns[i];

				if (c->state != C_OPEN)
					continue;
				echo_fill(c, now);
				if (conn_flush(c) == 0)
					conn_want(c);
			}
		}
		if (settled && opt.echo && sending && now >= win_end_ns)
			break;
		if (settled && !opt.echo && hold_end != 0 && now >= hold_end)
			break;
		if (!settled && now - last_check > 500000000ULL) {
			check_timeouts(now);
			last_check = now;
		}
		if (settled && opt.echo && !sending)
			timeout = (int)((start_ns - now) / 1000000ULL) + 1;
		else if (sending)
			timeout = (int)((win_end_ns - now) / 1000000ULL) + 1;
		if (timeout > 100)
			timeout = 100;
		n = epoll_wait(epfd, evs, 512, timeout);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		now = now_ns();
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->fd == -1)
				continue;
			conn_event(c, evs[i].events, now);
		}
	}

	/* report */
	{
		uint64_t t_end = now_ns(), minc = UINT64_MAX, maxc = 0;

		printf("{\"mode\":\"%s\",\"pid\":%d,\"requested\":%d,"
		       "\"started\":%d,\"upgraded\":%d,\"open_at_end\":%d,"
		       "\"failed\":%d,\"pmd\":%d,\"closed_by_server\":%d,"
		       "\"connect_s\":%.3f,",
		       opt.echo ? "echo" : "idle", (int)getpid(), opt.n,
		       n_started, n_open + n_done, n_open, n_failed, n_pmd,
		       n_closed_by_server,
		       settled ? (double)(t_settled - t_begin) / 1e9 : -1.0);
		print_fail_json(stdout);
		if (opt.echo) {
			double dur = opt.duration_s;

			if (sending && t_end < win_end_ns)
				dur = t_end > win_start_ns
					      ? (double)(t_end - win_start_ns) / 1e9
					      : 0;
			for (int i = 0; i < opt.n; i++) {
				if (conns[i].state != C_OPEN &&
				    conns[i].state != C_DONE)
					continue;
				if (conns[i].window_echoes < minc)
					minc = conns[i].window_echoes;
				if (conns[i].window_echoes > maxc)
					maxc = conns[i].window_echoes;
			}
			if (minc == UINT64_MAX)
				minc = 0;
			printf(",\"depth\":%d,\"size\":%d,\"warmup_s\":%.3f,"
			       "\"duration_s\":%.3f,\"echoes\":%llu,"
			       "\"echoes_total\":%llu,\"rate\":%.1f,"
			       "\"protocol_errors\":%llu,"
			       "\"per_conn_min\":%llu,\"per_conn_max\":%llu,"
			       "\"lat_us\":{\"p50\":%llu,\"p90\":%llu,"
			       "\"p99\":%llu,\"p999\":%llu,\"max\":%llu},"
			       "\"hist\":[",
			       opt.depth, opt.msg_size, opt.warmup_s, dur,
			       (unsigned long long)echoes_window,
			       (unsigned long long)echoes_total,
			       dur > 0 ? (double)echoes_window / dur : 0.0,
			       (unsigned long long)protocol_errors,
			       (unsigned long long)minc,
			       (unsigned long long)maxc,
			       (unsigned long long)hist_pct(0.50),
			       (unsigned long long)hist_pct(0.90),
			       (unsigned long long)hist_pct(0.99),
			       (unsigned long long)hist_pct(0.999),
			       (unsigned long long)lat_max_us);
			for (int i = 0, first = 1; i < H_SIZE; i++) {
				if (hist[i] == 0)
					continue;
				printf("%s[%llu,%llu]", first ? "" : ",",
				       (unsigned long long)hist_value(i),
				       (unsigned long long)hist[i]);
				first = 0;
			}
			printf("]");
		}
		printf("}\n");
		fflush(stdout);
	}
	if (opt.conn_dump != NULL) {
		/* "local_port echoes_in_window" per open connection */
		FILE *fp = fopen(opt.conn_dump, "w");

		for (int i = 0; fp != NULL && i < opt.n; i++) {
			struct sockaddr_in la;
			socklen_t ll = sizeof(la);

			if (conns[i].fd < 0 ||
			    getsockname(conns[i].fd, (struct sockaddr *)&la,
					&ll) == -1)
				continue;
			fprintf(fp, "%u %llu\n", ntohs(la.sin_port),
				(unsigned long long)conns[i].window_echoes);
		}
		if (fp != NULL)
			fclose(fp);
	}
	for (int i = 0; i < opt.n; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	return 0;
}
