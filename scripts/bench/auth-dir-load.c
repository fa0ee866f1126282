/*
 * auth-dir-load: connect and authenticate daemon WebSockets to orchd and
 * time each one (connect() to auth_success), for the directory benchmark
 * (scripts/bench/auth-connect-directory).
 *
 *   auth-dir-load HOST PORT SECRET_FILE N FIRST_ORCH PER_ORCH SRC_NET TAG
 *                 [INFLIGHT]
 *
 * Opens N connections (at most INFLIGHT handshakes at a time, default
 * 1000); connection i comes from source address 127.NET.(SUB + i / 5000).1,
 * SRC_NET being "NET.SUB" (a different NET per pass keeps TIME_WAIT of
 * earlier passes out of the way; a different SUB per process, and 5,000
 * connections per address, keep the kernel's port search short), upgrades on /daemon/ws and authenticates with an
 * HS256 token for orchestrator "bench-<FIRST_ORCH + i / PER_ORCH>" and
 * daemon "d-TAG-i".  When every connection has succeeded or failed, it
 * prints one JSON line (counts, seconds from the first connect to the last
 * answer, and the connect+auth latency of every authenticated connection
 * in microseconds, in completion order) and exits, which closes them all.
 * Loopback only; bounded in time (DEADLINE_S).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define DEADLINE_S 120

enum st { ST_CONNECTING, ST_UPGRADING, ST_AUTHING, ST_DONE, ST_FAILED };

struct c {
	int fd;
	enum st st;
	double t_start;
	size_t rlen;
	char rbuf[1024];
};

static char secret[512];
static size_t secret_len;
static const char *tag;

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
	char hdr[64], pl[700], body[1024];
	unsigned char mac[32];
	unsigned int maclen;
	long exp = (long)time(NULL) + 3600;
	int n;

	b64url((const unsigned char *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27,
	       hdr);
	n = snprintf(body, sizeof(body),
		     "{\"sub\":\"bench-%d\",\"daemonId\":\"d-%s-%d\","
		     "\"organizationId\":\"org-bench\",\"scopes\":"
		     "[\"messages:read\"],\"type\":\"access\",\"exp\":%ld,"
		     "\"jti\":\"j-%s-%d\"}",
		     orch, tag, daemon, exp, tag, daemon);
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
	unsigned *lat;
	int n, first, per, net, sub = 0, ep, inflight_max = 1000, started = 0,
				     inflight = 0, done = 0, failed = 0,
				     auth_errors = 0;
	double t0, t_end = 0;
	FILE *fp;

	if (argc != 9 && argc != 10) {
		fprintf(stderr, "usage: %s HOST PORT SECRET_FILE N FIRST_ORCH "
				"PER_ORCH SRC_NET TAG [INFLIGHT]\n",
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
	per = atoi(argv[6]);
	if (sscanf(argv[7], "%d.%d", &net, &sub) < 1)
		net = -1;
	tag = argv[8];
	if (argc == 10)
		inflight_max = atoi(argv[9]);
	if (n <= 0 || per <= 0 || net < 0 || net > 255 || sub < 0 ||
	    sub + n / 5000 > 255 || inflight_max <= 0 ||
	    strlen(tag) > 32) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	cs = calloc((size_t)n, sizeof(*cs));
	lat = calloc((size_t)n, sizeof(*lat));
	ep = epoll_create1(0);
	if (cs == NULL || lat == NULL || ep == -1) {
		perror("setup");
		return 1;
	}
	t0 = now();

	while (done + failed < n && now() - t0 < DEADLINE_S) {
		int k;

		while (started < n && inflight < inflight_max) {
			struct c *c = &cs[started];
			struct sockaddr_in src = {0};
			struct epoll_event e = {0};
			int one = 1;

			src.sin_family = AF_INET;
			src.sin_addr.s_addr =
				htonl(0x7f000001u | (uint32_t)net << 16 |
				      (uint32_t)(sub + started / 5000) << 8);
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof(one));
			setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
				   &one, sizeof(one));
			c->t_start = now();
			if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) ==
				    -1 ||
			    (connect(c->fd, (struct sockaddr *)&dst,
				     sizeof(dst)) == -1 &&
			     errno != EINPROGRESS)) {
				if (failed < 5)
					perror("connect");
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
			int idx = (int)evs[i].data.u32;
			struct c *c = &cs[idx];
			ssize_t r;

			if (c->st == ST_DONE || c->st == ST_FAILED)
				continue;
			if (c->st == ST_CONNECTING) {
				char req[512];
				struct epoll_event e = {0};
				int len;

				if (evs[i].events & (EPOLLERR | EPOLLHUP))
					goto fail;
				if (!(evs[i].events & EPOLLOUT))
					continue;
				len = snprintf(
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
				char *e = strstr(c->rbuf, "\r\n\r\n"), tok[1200],
				     msg[1600];
				unsigned char fr[1800];
				int ml, orch = first + idx / per;
				size_t fl;

				if (e == NULL)
					continue;
				if (strncmp(c->rbuf, "HTTP/1.1 101", 12) != 0)
					goto fail;
				token(orch, idx, tok);
				ml = snprintf(msg, sizeof(msg),
					      "{\"type\":\"auth\",\"payload\":{"
					      "\"accessToken\":\"%s\","
					      "\"daemonId\":\"d-%s-%d\","
					      "\"orchestratorId\":\"bench-%d\"}}",
					      tok, tag, idx, orch);
				fl = frame(msg, (size_t)ml, fr);
				if (write(c->fd, fr, fl) != (ssize_t)fl)
					goto fail;
				c->st = ST_AUTHING;
				c->rlen = 0;
				continue;
			}
			/* ST_AUTHING */
			if (strstr(c->rbuf, "auth_success") != NULL) {
				double t = now();

				lat[done] = (unsigned)((t - c->t_start) * 1e6);
				c->st = ST_DONE;
				done++;
				inflight--;
				c->rlen = 0;
				t_end = t;
				/* Nothing more is read from it. */
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			} else if (strstr(c->rbuf, "auth_error") != NULL) {
				goto fail;
			} else if (c->rlen > 900) {
				c->rlen = 0;
			}
			continue;
fail:
			{
				/* Skip the frame header: show the JSON. */
				char *j = memchr(c->rbuf, '{', c->rlen);

				if (j != NULL && strstr(j, "auth_error") != NULL)
					auth_errors++;
				if (failed < 3)
					fprintf(stderr, "conn %d failed: %.200s\n",
						idx, j != NULL ? j : "(no message)");
			}
			c->st = ST_FAILED;
			failed++;
			inflight--;
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			close(c->fd);
		}
	}
	if (t_end == 0)
		t_end = now();
	printf("{\"connections\":%d,\"authenticated\":%d,\"failed\":%d,"
	       "\"unanswered\":%d,\"auth_errors\":%d,\"seconds\":%.4f,"
	       "\"latency_us\":[",
	       n, done, failed, n - done - failed, auth_errors, t_end - t0);
	for (int i = 0; i < done; i++)
		printf(i ? ",%u" : "%u", lat[i]);
	printf("]}\n");
	fflush(stdout);
	return 0;
}
