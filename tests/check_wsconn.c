/*
 * wsconn over real socket pairs and a real libev loop: the upgrade, the
 * serialize-once broadcast (one shared compressed frame for every
 * connection that allows it), and the slow-consumer bound.
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <ev.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "orchd/config.h"
#include "orchd/conn.h"
#include "orchd/http.h"
#include "orchd/shm.h"
#include "orchd/worker.h"
#include "orchd/wsconn.h"

#define NCONN 4

static struct worker w;
static struct shm_segment *shm;
static struct config *cfg;
static int peer_fd[NCONN];
static struct conn *conns[NCONN];

#define REQ_FMT                                                                \
	"GET /echo HTTP/1.1\r\n"                                                \
	"Host: x\r\n"                                                           \
	"Upgrade: websocket\r\n"                                                \
	"Connection: Upgrade\r\n"                                               \
	"Sec-WebSocket-Version: 13\r\n"                                         \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                       \
	"%s"                                                                   \
	"\r\n"

static struct conn *
open_conn(int i, const char *ext_header)
{
	struct sockaddr_storage peer = {.ss_family = AF_UNIX};
	struct http_request req;
	char buf[1024];
	const char *extra;
	int sv[2], n;
	struct conn *c;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
				    sv),
			 0);
	peer_fd[i] = sv[1];
	c = conn_new(&w, sv[0], &peer, 0);
	ck_assert_ptr_nonnull(c);
	n = snprintf(buf, sizeof(buf), REQ_FMT, ext_header);
	ck_assert_int_eq(http_parse_request(buf, (size_t)n, 8192, &req), n);
	ck_assert_int_eq(wsconn_upgrade(c, &req, WSCONN_ECHO, &extra), 0);
	ck_assert_int_eq(c->state, CONN_WS_OPEN);
	ck_assert_int_eq(conn_flush(c), 1);
	return c;
}

/* Read everything the peer end has: the 101 head, then frames. */
static size_t
drain(int fd, uint8_t *buf, size_t cap)
{
	size_t off = 0;
	ssize_t n;

	while (off < cap && (n = read(fd, buf + off, cap - off)) > 0)
		off += (size_t)n;
	return off;
}

/* Skip the HTTP head; return the frame bytes that follow. */
static const uint8_t *
after_head(const uint8_t *buf, size_t len, size_t *rest, char *head,
	   size_t hcap)
{
	const uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);

	ck_assert_ptr_nonnull(e);
	e += 4;
	snprintf(head, hcap, "%.*s", (int)(e - buf), (const char *)buf);
	*rest = len - (size_t)(e - buf);
	return e;
}

static void
setup(void)
{
	cfg = config_new();
	cfg->ws_compression_min_size = 0;
	shm = calloc(1, sizeof(*shm));
	memset(&w, 0, sizeof(w));
	w.loop = ev_loop_new(EVFLAG_AUTO);
	w.cfg = cfg;
	w.shm = shm;
	w.stats = &shm->workers[0];
	w.scratch_size = 65536;
	w.scratch = malloc(w.scratch_size);
	pmd_config_default(&w.pmdcfg);
	w.pmdcfg.enabled = 1;
}

static void
teardown(void)
{
	struct conn *c, *next;

	for (c = w.conns; c != NULL; c = next) {
		next = c->next;
		conn_close(c, "test done");
	}
	conn_flush_pending(&w); /* drops closed ones from the flush list */
	conn_reap(&w);
	for (int i = 0; i < NCONN; i++)
		if (peer_fd[i] > 0)
			close(peer_fd[i]);
	ev_loop_destroy(w.loop);
	free(w.scratch);
	free(shm);
	config_free(cfg);
	pmd_cleanup();
}

static size_t
inflate_raw(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	z_stream z;
	uint8_t tail[4] = {0, 0, 0xff, 0xff};
	size_t n;

	memset(&z, 0, sizeof(z));
	ck_assert_int_eq(inflateInit2(&z, -15), Z_OK);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	inflate(&z, Z_SYNC_FLUSH);
	z.next_in = tail;
	z.avail_in = 4;
	inflate(&z, Z_SYNC_FLUSH);
	n = cap - z.avail_out;
	inflateEnd(&z);
	return n;
}

START_TEST(test_broadcast_compresses_once)
{
	uint8_t msg[1000], buf[NCONN][4096], out[2048];
	const uint8_t *f[NCONN];
	size_t flen[NCONN], n;
	char head[512];

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)"orchd broadcast "[i % 16];
	/* 0, 1: deflate, shareable (the server asks no context takeover). */
	conns[0] = open_conn(0, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
	conns[1] = open_conn(1, "Sec-WebSocket-Extensions: permessage-deflate; "
				"client_max_window_bits\r\n");
	/* 2: deflate with context takeover: compressed for itself. */
	w.pmdcfg.server_no_context_takeover = 0;
	conns[2] = open_conn(2, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
	w.pmdcfg.server_no_context_takeover = 1;
	/* 3: no extension: the plain frame. */
	conns[3] = open_conn(3, "");

	ck_assert_uint_eq(wsconn_broadcast(conns, NCONN, WS_OP_TEXT, msg,
					   sizeof(msg), 0),
			  NCONN);
	/* One shared compression plus one for the context-takeover peer. */
	ck_assert_uint_eq(atomic_load(&shm->workers[0].ws_deflates), 2);
	for (int i = 0; i < NCONN; i++) {
		ck_assert_int_eq(conn_flush(conns[i]), 1);
		n = drain(peer_fd[i], buf[i], sizeof(buf[i]));
		f[i] = after_head(buf[i], n, &flen[i], head, sizeof(head));
		ck_assert_ptr_nonnull(strstr(head, "101 Switching Protocols"));
		if (i < 3)
			ck_assert_ptr_nonnull(strstr(head, "permessage-deflate"));
	}
	/* The shared frame is byte-identical on both connections. */
	ck_assert_uint_eq(flen[0], flen[1]);
	ck_assert_mem_eq(f[0], f[1], flen[0]);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(f[i][0], 0xc1); /* FIN | RSV1 | text */
		ck_assert_uint_lt(flen[i], sizeof(msg));
		ck_assert_uint_eq(inflate_raw(f[i] + 2, flen[i] - 2, out,
					      sizeof(out)),
				  sizeof(msg));
		ck_assert_mem_eq(out, msg, sizeof(msg));
	}
	ck_assert_uint_eq(f[3][0], 0x81); /* FIN | text, uncompressed */
	ck_assert_uint_eq(flen[3], 4 + sizeof(msg));
	ck_assert_mem_eq(f[3] + 4, msg, sizeof(msg));
}
END_TEST

/* A peer that never reads: the queue bound closes it with 1008. */
START_TEST(test_slow_consumer_gets_1008)
{
	uint8_t msg[16384];
	struct conn *c;
	int sndbuf = 4096;

	memset(msg, 'x', sizeof(msg));
	cfg->max_send_queue = 65536;
	c = conns[0] = open_conn(0, "");
	setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	for (int i = 0; i < 200 && c->state == CONN_WS_OPEN; i++) {
		wsconn_send(c, WS_OP_BINARY, msg, sizeof(msg), 0);
		conn_flush(c);
	}
	ck_assert_int_eq(c->state, CONN_WS_CLOSING);
	ck_assert_uint_eq(atomic_load(&shm->workers[0].slow_consumers), 1);
	/* Only a started frame and the close frame are left: bounded. */
	ck_assert_uint_le(c->q.bytes, sizeof(msg) + 16 + 2 + 125);
	ck_assert_uint_le(c->q.n, 2);
	/* Nothing more is accepted behind the close frame. */
	ck_assert_int_eq(wsconn_send(c, WS_OP_TEXT, "late", 4, 0), -1);
}
END_TEST

START_TEST(test_upgrade_refusals)
{
	struct sockaddr_storage peer = {.ss_family = AF_UNIX};
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{"POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		 405},
		{"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 426},
		{"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		 "Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		 400},
		{"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		 426},
		{"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
		 "Sec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
		 400},
		{"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
		 "Origin: https://evil.example\r\n"
		 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		 403},
	};
	char *origins[] = {"https://app.example"};

	cfg->ws_allowed_origins = origins;
	cfg->nws_allowed_origins = 1;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_request req;
		const char *extra;
		int sv[2];
		struct conn *c;
		size_t len = strlen(cases[i].req);

		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		c = conn_new(&w, sv[0], &peer, 0);
		ck_assert_int_eq(http_parse_request(cases[i].req, len, 8192,
						    &req),
				 (int)len);
		ck_assert_msg(wsconn_upgrade(c, &req, WSCONN_ECHO, &extra) ==
				      cases[i].status,
			      "case %zu", i);
		ck_assert_ptr_null(c->ws);
		conn_close(c, "done");
		conn_flush_pending(&w);
		close(sv[1]);
	}
	cfg->ws_allowed_origins = NULL;
	cfg->nws_allowed_origins = 0;
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("wsconn");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_broadcast_compresses_once);
	tcase_add_test(tc, test_slow_consumer_gets_1008);
	tcase_add_test(tc, test_upgrade_refusals);
	suite_add_tcase(s, tc);
	return check_run(s);
}
