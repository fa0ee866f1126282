/*
 * auth-load: connect and authenticate many daemon WebSockets to orchd,
 * measure the rate, then hold them idle (for memory measurements).
 *
 *   auth-load HOST PORT SECRET_FILE N FIRST_ID SRC_BASE HOLD_SECONDS
 *
 * Opens N connections (at most INFLIGHT handshakes at a time), each from
 * source address 127.0.0.(SRC_BASE + i / 20000) so ephemeral ports never
 * run out, upgrades on /daemon/ws, sends auth with an HS256 token for
 * orchestrator "bench-<k>" (one orchestrator per 5 connections, the
 * default quota), and waits for auth_success.  Prints one JSON line with
 * counts and the rate, then keeps the connections open for HOLD_SECONDS
 * (answering server pings) and exits.  Loopback only; bounded in time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INFLIGHT 1000
#define DEADLINE_S 120

enum st { ST_CONNECTING, ST_UPGRADING, ST_AUTHING, ST_DONE, ST_FAILED };

struct c {
	int fd;
	enum st st;
	size_t rlen;
	char rbuf[1024];
};

static char secret[512];
static size_t secret_len;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

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
	char hdr[64], pl[512], body[1024];
	unsigned char mac[32];
	unsigned int maclen;
	long exp = (long)time(NULL) + 3600;
	int n;

	b64url((const unsigned char *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27,
	       hdr);
	n = snprintf(body, sizeof(body),
		     "{\"sub\":\"bench-%d\",\"daemonId\":\"d-%d\","
		     "\"organizationId\":\"org-bench\",\"scopes\":"
		     "[\"messages:read\"],\"type\":\"access\",\"exp\":%ld,"
		     "\"jti\":\"j-%d-%d\"}",
		     orch, daemon, exp, orch, daemon);
	b64url((const unsigned char *)body, (size_t)n, pl);
	n = snprintf(body, sizeof(body), "%s.%s", hdr, pl);
	HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)body,
	     (size_t)n, mac, &maclen);
	strcpy(out, body);
	out[n] = '.';
	b64url(mac, maclen, out + n + 1);
}

/* A masked client text frame. */
static size_t
frame(const char *msg, size_t len, unsigned char *out)
{
	unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
	size_t h = 2;

	out[0] = 0x81;
	if (len < 126) {
		out[1] = 0x80 | (unsigned char)len;
	} else {
		out[1] = 0x80 | 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		h = 4;
	}
	memcpy(out + h, mask, 4);
	for (size_t i = 0; i < len; i++)
		out[h + 4 + i] = (unsigned char)msg[i] ^ mask[i & 3];
	return h + 4 + len;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in dst = {0};
	struct epoll_event evs[512];
	struct c *cs;
	int n, first, src_base, ep, started = 0, inflight = 0, done = 0,
			       failed = 0;
	double hold, t0, t_end = 0;
	FILE *fp;

	if (argc != 8) {
		fprintf(stderr, "usage: %s HOST PORT SECRET_FILE N FIRST_ID "
				"SRC_BASE HOLD_SECONDS\n",
			argv[0]);
		return 2;
	}
	dst.sin_family = AF_INET;
	inet_pton(AF_INET, argv[1], &dst.sin_addr);
	dst.sin_port = htons((uint16_t)atoi(argv[2]));
	if ((fp = fopen(argv[3], "r")) == NULL) {
		perror(argv[3]);
		return 1;
	}
	secret_len = fread(secret, 1, sizeof(secret) - 1, fp);
	fclose(fp);
	while (secret_len > 0 && secret[secret_len - 1] == '\n')
		secret_len--;
	n = atoi(argv[4]);
	first = atoi(argv[5]);
	src_base = atoi(argv[6]);
	hold = atof(argv[7]);
	cs = calloc((size_t)n, sizeof(*cs));
	ep = epoll_create1(0);
	t0 = now();

	while (done + failed < n && now() - t0 < DEADLINE_S) {
		int k;

		while (started < n && inflight < INFLIGHT) {
			struct c *c = &cs[started];
			struct sockaddr_in src = {0};
			struct epoll_event e = {0};
			int id = first + started, one = 1;

			src.sin_family = AF_INET;
			src.sin_addr.s_addr = htonl(0x7f000000u |
						    (uint32_t)(src_base +
							       id / 20000));
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof(one));
			setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one,
				   sizeof(one));
			if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) ==
				    -1 ||
			    (connect(c->fd, (struct sockaddr *)&dst,
				     sizeof(dst)) == -1 &&
			     errno != EINPROGRESS)) {
				c->st = ST_FAILED;
				failed++;
				close(c->fd);
				started++;
				continue;
			}
			c->st = ST_CONNECTING;
			e.events = EPOLLOUT | EPOLLIN;
			e.data.u32 = (uint32_t)started;
			epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
			started++;
			inflight++;
		}
		k = epoll_wait(ep, evs, 512, 100);
		for (int i = 0; i < k; i++) {
			int idx = (int)evs[i].data.u32, id = first + idx;
			struct c *c = &cs[idx];
			ssize_t r;

			if (c->st == ST_CONNECTING && (evs[i].events & EPOLLOUT)) {
				char req[512];
				struct epoll_event e = {0};
				int len = snprintf(
					req, sizeof(req),
					"GET /daemon/ws HTTP/1.1\r\nHost: x\r\n"
					"Upgrade: websocket\r\nConnection: "
					"Upgrade\r\nSec-WebSocket-Version: 13\r\n"
					"Sec-WebSocket-Key: "
					"dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");

				if (write(c->fd, req, (size_t)len) != len)
					goto fail;
				c->st = ST_UPGRADING;
				e.events = EPOLLIN;
				e.data.u32 = (uint32_t)idx;
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
				continue;
			}
			if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				continue;
			r = read(c->fd, c->rbuf + c->rlen,
				 sizeof(c->rbuf) - 1 - c->rlen);
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				goto fail;
			}
			c->rlen += (size_t)r;
			c->rbuf[c->rlen] = '\0';
			if (c->st == ST_UPGRADING) {
				char *e = strstr(c->rbuf, "\r\n\r\n"), tok[1024],
				     msg[1400];
				unsigned char fr[1500];
				int ml;

				if (e == NULL)
					continue;
				if (strncmp(c->rbuf, "HTTP/1.1 101", 12) != 0)
					goto fail;
				token(id / 5, id, tok);
				ml = snprintf(msg, sizeof(msg),
					      "{\"type\":\"auth\",\"payload\":{"
					      "\"accessToken\":\"%s\","
					      "\"daemonId\":\"d-%d\","
					      "\"orchestratorId\":\"bench-%d\"}}",
					      tok, id, id / 5);
				size_t fl = frame(msg, (size_t)ml, fr);

				if (write(c->fd, fr, fl) != (ssize_t)fl)
					goto fail;
				c->st = ST_AUTHING;
				c->rlen = 0;
				continue;
			}
			if (c->st == ST_AUTHING) {
				if (strstr(c->rbuf, "auth_success") != NULL) {
					c->st = ST_DONE;
					done++;
					inflight--;
					c->rlen = 0;
					if (done + failed == n)
						t_end = now();
				} else if (strstr(c->rbuf, "auth_error") != NULL) {
					goto fail;
				} else if (c->rlen > 900) {
					c->rlen = 0;
				}
				continue;
			}
			/* Idle: drop whatever comes (pings are rare). */
			c->rlen = 0;
			continue;
fail:
			if (c->st != ST_DONE) {
				if (failed < 5)
					fprintf(stderr, "conn %d failed: %.80s\n",
						id, c->rbuf);
				c->st = ST_FAILED;
				failed++;
				inflight--;
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			close(c->fd);
		}
	}
	if (t_end == 0)
		t_end = now();
	printf("{\"connections\":%d,\"authenticated\":%d,\"failed\":%d,"
	       "\"seconds\":%.3f,\"rate\":%.0f}\n",
	       n, done, failed, t_end - t0, done / (t_end - t0));
	fflush(stdout);
	/* Hold them idle, answering nothing: measurements happen now. */
	for (double end = now() + hold; now() < end;) {
		int k = epoll_wait(ep, evs, 512, 200);

		for (int i = 0; i < k; i++) {
			struct c *c = &cs[evs[i].data.u32];
			char sink[4096];

			if (read(c->fd, sink, sizeof(sink)) <= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
			}
		}
	}
	return 0;
}
