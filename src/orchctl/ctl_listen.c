/*
 * ctl_listen: "orchctl listen", a reference daemon client.
 *
 * One connection at a time, driven by ppoll(2) with SIGINT/SIGTERM blocked
 * except while waiting (so a signal is never lost between a check and a
 * wait).  The socket is blocking with send/receive timeouts, and is read
 * only when ppoll() says so: every step is bounded.  The rules (backoff,
 * close codes, dedupe, messages) live in ctl_proto.c.
 *
 * Delivery: an event is printed (one JSON line, flushed) before it is
 * acked, and its seq becomes the next resumeFrom only once a heartbeat_ack
 * shows the server has the ack (struct ctl_resume), so an event the server
 * sent is never lost to a crash of either side; one printed whose ack may
 * be lost comes back in the replay and is recognised by its eventId.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "orchctl.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/util.h"
#include "orchd/ws.h"

#define IO_TIMEOUT_MS 10000   /* connect, TLS, upgrade, one write */
#define AUTH_TIMEOUT_MS 30000 /* from the upgrade to auth_success */
#define STABLE_MS 10000       /* a connection up this long resets backoff */
#define HEAD_MAX 16384        /* the upgrade response's head */
#define READ_CHUNK 65536      /* bytes read at a time */
#define DEFAULT_MAX_MESSAGE (1024 * 1024) /* a server message, bytes */
#define DEDUPE_IDS 10000                  /* eventIds remembered (at least) */
#define TOKEN_MAX 8192
#define OUT_MSG_MAX (TOKEN_MAX + 2048) /* our largest message: auth */
#define DEFAULT_HEARTBEAT_MS 30000
#define TYPES_MAX 50

enum session_end {
	END_RECONNECT = 0, /* back off, connect again */
	END_DELAY,         /* the server's reconnect message: its delay */
	END_REAUTH,        /* mint a new token (or stop if it was given) */
	END_DONE,          /* --count reached or a signal: exit 0 */
	END_FAIL,          /* do not reconnect: exit 1 */
};

struct listen {
	const struct orchctl_opts *o;
	struct ctl_url url;
	int insecure;
	char *ca_file;
	/* credentials */
	char token[TOKEN_MAX];
	int mintable; /* from the config: a fresh one per connection */
	unsigned long connections;
	uint64_t token_exp_ms; /* a minted token's exp (wall-clock ms) */
	struct orchctl_mint mint;
	char orch[128], daemon[128];
	/* subscription */
	const char *types[TYPES_MAX];
	size_t ntypes;
	uint64_t count; /* 0: no limit */
	size_t max_message;
	/* progress, kept across connections */
	struct ctl_resume resume;
	uint64_t printed;
	struct ctl_dedupe seen;
	/* the connection */
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	struct ws_reader rd;
	uint8_t *rbuf;
	uint64_t delay_ms; /* from reconnect */
	char auth_code[CTL_MSG_TYPE_MAX];
	sigset_t waitmask; /* the mask while waiting: signals let through */
};

static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
	got_signal = sig;
}

static void
note(const struct listen *l, const char *fmt, ...)
{
	va_list ap;

	if (l->o->quiet)
		return;
	fprintf(stderr, "orchctl: listen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Wait for fd (-1: none) until deadline; 1 ready, 0 timeout, -1 signal. */
static int
wait_io(struct listen *l, int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	struct timespec ts;
	uint64_t now = util_now_ms();
	int rc;

	if (got_signal)
		return -1;
	if (now >= deadline)
		return 0;
	ts.tv_sec = (time_t)((deadline - now) / 1000);
	ts.tv_nsec = (long)((deadline - now) % 1000 * 1000000);
	rc = ppoll(&p, fd >= 0 ? 1 : 0, &ts, &l->waitmask);
	if (rc < 0)
		return errno == EINTR && got_signal ? -1 : 0;
	return rc > 0 ? 1 : 0;
}

static void
conn_close(struct listen *l)
{
	if (l->ssl != NULL) {
		SSL_free(l->ssl);
		l->ssl = NULL;
	}
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	ws_reader_free(&l->rd);
}

static int
write_all(struct listen *l, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n;

		if (l->ssl != NULL) {
			int r = SSL_write(l->ssl, p, (int)len);

			n = r > 0 ? r : -1;
			if (r <= 0)
				ERR_clear_error();
		} else {
			n = send(l->fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Bytes read, 0 at EOF, -1 on error. */
static ssize_t
read_some(struct listen *l, void *buf, size_t cap)
{
	ssize_t n;

	if (l->ssl != NULL) {
		int r = SSL_read(l->ssl, buf, (int)cap);

		if (r > 0)
			return r;
		n = SSL_get_error(l->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
		ERR_clear_error();
		return n;
	}
	do
		n = recv(l->fd, buf, cap, 0);
	while (n < 0 && errno == EINTR && !got_signal);
	return n;
}

/* One masked frame. */
static int
send_frame(struct listen *l, unsigned op, const void *data, size_t len)
{
	uint8_t mask[4], *frame;
	size_t cap = len + WS_HEADER_MAX, n;
	int rc;

	if (getrandom(mask, sizeof(mask), 0) != (ssize_t)sizeof(mask))
		return -1;
	if ((frame = malloc(cap)) == NULL)
		return -1;
	n = ws_frame_encode(frame, cap, op, WS_FRAME_FIN, data, len, mask);
	rc = n > 0 ? write_all(l, frame, n) : -1;
	free(frame);
	return rc;
}

static int
send_text(struct listen *l, const char *msg, int len)
{
	if (len < 0)
		return -1;
	return send_frame(l, WS_OP_TEXT, msg, (size_t)len);
}

static void
send_close(struct listen *l, unsigned code, const char *reason)
{
	uint8_t payload[WS_CONTROL_MAX];
	size_t n = ws_close_payload(payload, code, reason);

	send_frame(l, WS_OP_CLOSE, payload, n);
}

static int
tcp_connect(struct listen *l)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8];
	int rc, fd = -1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	snprintf(port, sizeof(port), "%d", l->url.port);
	if ((rc = getaddrinfo(l->url.host, port, &hints, &res)) != 0) {
		note(l, "%s: %s", l->url.host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		uint64_t deadline = util_now_ms() + IO_TIMEOUT_MS;
		int err = 0, one = 1;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		util_set_nonblock(fd);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			if (errno != EINPROGRESS) {
				err = errno;
			} else if ((rc = wait_io(l, fd, POLLOUT, deadline)) <=
				   0) {
				err = rc < 0 ? EINTR : ETIMEDOUT;
			} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
					      &el) != 0) {
				err = errno;
			}
		}
		if (err == 0) {
			struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
			int fl = fcntl(fd, F_GETFL);

			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				   sizeof(tv));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
				   sizeof(tv));
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof(one));
			break;
		}
		if (!l->o->quiet)
			note(l, "connect %s port %d: %s", l->url.host,
			     l->url.port, strerror(err));
		close(fd);
		fd = -1;
		if (got_signal)
			break;
	}
	freeaddrinfo(res);
	l->fd = fd;
	return fd >= 0 ? 0 : -1;
}

static int
tls_start(struct listen *l)
{
	if (l->ctx == NULL) {
		l->ctx = SSL_CTX_new(TLS_client_method());
		if (l->ctx == NULL)
			return -1;
		SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION);
		if (l->ca_file != NULL) {
			if (SSL_CTX_load_verify_locations(l->ctx, l->ca_file,
							  NULL) != 1) {
				note(l, "%s: cannot load CA certificates",
				     l->ca_file);
				ERR_clear_error();
				return -1;
			}
		} else {
			SSL_CTX_set_default_verify_paths(l->ctx);
		}
		SSL_CTX_set_verify(
		    l->ctx, l->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
		    NULL);
	}
	if ((l->ssl = SSL_new(l->ctx)) == NULL)
		return -1;
	SSL_set_fd(l->ssl, l->fd);
	{
		unsigned char ip[16];
		int is_ip = inet_pton(AF_INET, l->url.host, ip) == 1 ||
			    inet_pton(AF_INET6, l->url.host, ip) == 1;

		/* SNI carries names only (RFC 6066); an IP is checked as one.
		 */
		if (!is_ip)
			SSL_set_tlsext_host_name(l->ssl, l->url.host);
		if (!l->insecure && is_ip)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl),
						      l->url.host);
		else if (!l->insecure)
			SSL_set1_host(l->ssl, l->url.host);
	}
	if (SSL_connect(l->ssl) != 1) {
		unsigned long e = ERR_get_error();
		char buf[256];

		ERR_error_string_n(e, buf, sizeof(buf));
		note(l, "TLS handshake with %s: %s", l->url.host,
		     e != 0 ? buf : "connection closed");
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/*
 * The upgrade.  Bytes that follow the response head (the server's first
 * frames) are left in rbuf[0..*extra).
 */
static int
ws_upgrade(struct listen *l, size_t *extra)
{
	uint8_t raw[16];
	char key[32], req[2048], host[CTL_URL_HOST_MAX + 16], err[200];
	char *head = (char *)l->rbuf;
	size_t len = 0;
	uint64_t deadline = util_now_ms() + IO_TIMEOUT_MS;
	int n, status;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	{
		/* base64 (standard alphabet, padded) of 16 bytes: 24 chars */
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
					  "klmnopqrstuvwxyz0123456789+/";
		size_t k = 0;

		for (size_t i = 0; i < 16; i += 3) {
			uint32_t v = (uint32_t)raw[i] << 16;

			if (i + 1 < 16)
				v |= (uint32_t)raw[i + 1] << 8;
			if (i + 2 < 16)
				v |= raw[i + 2];
			key[k++] = b64[v >> 18 & 63];
			key[k++] = b64[v >> 12 & 63];
			key[k++] = i + 1 < 16 ? b64[v >> 6 & 63] : '=';
			key[k++] = i + 2 < 16 ? b64[v & 63] : '=';
		}
		key[k] = '\0';
	}
	if (strchr(l->url.host, ':') != NULL)
		snprintf(host, sizeof(host), "[%s]", l->url.host);
	else
		snprintf(host, sizeof(host), "%s", l->url.host);
	if ((l->url.tls && l->url.port != 443) ||
	    (!l->url.tls && l->url.port != 80))
		snprintf(host + strlen(host), sizeof(host) - strlen(host),
			 ":%d", l->url.port);
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\nUser-Agent: orchctl/%s\r\n"
		     "\r\n",
		     l->url.path, host, key, PACKAGE_VERSION);
	if (n < 0 || (size_t)n >= sizeof(req) ||
	    write_all(l, req, (size_t)n) != 0) {
		note(l, "sending the upgrade request failed");
		return -1;
	}
	for (;;) {
		char *end;
		ssize_t r;

		if (l->ssl == NULL || SSL_pending(l->ssl) == 0) {
			int w = wait_io(l, l->fd, POLLIN, deadline);

			if (w <= 0) {
				if (w == 0)
					note(l,
					     "no upgrade response within "
					     "%d s",
					     IO_TIMEOUT_MS / 1000);
				return -1;
			}
		}
		r = read_some(l, head + len, HEAD_MAX - len);
		if (r <= 0) {
			note(l, "connection closed during the upgrade");
			return -1;
		}
		len += (size_t)r;
		end = memmem(head, len, "\r\n\r\n", 4);
		if (end != NULL) {
			size_t hl = (size_t)(end - head) + 4;

			n = ctl_ws_check_response(head, hl, key, &status, err,
						  sizeof(err));
			if (n != 1) {
				note(l, "upgrade refused: %s", err);
				return -1;
			}
			memmove(head, head + hl, len - hl);
			*extra = len - hl;
			return 0;
		}
		if (len == HEAD_MAX) {
			note(l, "upgrade response head over %d bytes",
			     HEAD_MAX);
			return -1;
		}
	}
}

/* Mint a token into l->token and note its lifetime; 0 or -1. */
static int
mint(struct listen *l)
{
	char claims[4096];
	struct json_doc d;
	int64_t iat = 0, exp = 0;

	if (orchctl_mint_token(l->o, "listen", &l->mint, l->token,
			       sizeof(l->token), claims, sizeof(claims)) != 0)
		return -1;
	if (json_parse(&d, claims, strlen(claims), NULL) == 0) {
		json_get_int64(&d, json_obj_get(&d, 0, "iat"), &iat);
		json_get_int64(&d, json_obj_get(&d, 0, "exp"), &exp);
		json_doc_free(&d);
	}
	l->token_exp_ms = exp > iat ? (uint64_t)exp * 1000 : 0;
	return 0;
}

/*
 * When a minted token is refreshed on a live connection (monotonic ms; 0
 * never): after 4/5 of the time it has left (exp is in whole seconds).
 */
static uint64_t
refresh_time(const struct listen *l)
{
	uint64_t wall = util_wall_ms();

	if (!l->mintable || l->token_exp_ms == 0)
		return 0;
	return util_now_ms() +
	       (l->token_exp_ms > wall ? (l->token_exp_ms - wall) * 4 / 5 : 0);
}

/* Print an event line; -1 if stdout is gone. */
static int
print_event(const struct ctl_server_msg *m)
{
	char *line = malloc(m->payload_len + 1);
	size_t n;
	int rc = 0;

	if (line == NULL)
		return -1;
	n = ctl_json_compact(m->payload, m->payload_len, line);
	if (fwrite(line, 1, n, stdout) != n || fputc('\n', stdout) == EOF ||
	    fflush(stdout) != 0)
		rc = -1;
	free(line);
	return rc;
}

/* Handle one text message; returns -1 to go on, else a session_end. */
static int
on_text(struct listen *l, const uint8_t *data, size_t len, int *authed,
	uint64_t *hb_ms, uint64_t *auth_at)
{
	struct ctl_server_msg m;
	char err[200], out[OUT_MSG_MAX];
	int dup;

	if (ctl_parse_server_msg((const char *)data, len, &m, err,
				 sizeof(err)) != 0) {
		note(l, "ignoring a server message: %s", err);
		return -1;
	}
	if (strcmp(m.type, "event") == 0) {
		if ((dup = ctl_dedupe_check(&l->seen, m.event_id)) < 0)
			return END_FAIL;
		if (!dup) {
			if (print_event(&m) != 0) {
				note(l, "stdout: %s", strerror(errno));
				return END_FAIL;
			}
			l->printed++;
		}
		/* A duplicate is acked again: its first ack may be lost. */
		if (m.requires_ack &&
		    send_text(l, out,
			      ctl_msg_ack(out, sizeof(out), util_wall_ms(),
					  m.event_id)) != 0) {
			note(l, "sending the ack failed: connection lost");
			return END_RECONNECT;
		}
		ctl_resume_processed(&l->resume, m.seq);
		if (l->count > 0 && l->printed >= l->count) {
			note(l, "%" PRIu64 " events, done", l->printed);
			return END_DONE;
		}
	} else if (strcmp(m.type, "heartbeat_ack") == 0) {
		ctl_resume_heartbeat_ack(&l->resume);
	} else if (strcmp(m.type, "auth_success") == 0 && *authed) {
		note(l, "token refreshed");
	} else if (strcmp(m.type, "auth_success") == 0) {
		*authed = 1;
		*auth_at = util_now_ms();
		*hb_ms =
		    m.heartbeat_ms > 0 ? m.heartbeat_ms : DEFAULT_HEARTBEAT_MS;
		note(l, "authenticated as %s/%s, resuming after seq %" PRIu64,
		     l->orch, l->daemon, l->resume.confirmed);
	} else if (strcmp(m.type, "auth_error") == 0) {
		util_strlcpy(l->auth_code, m.code, sizeof(l->auth_code));
		note(l, "auth_error %s: %s", m.code, m.text);
	} else if (strcmp(m.type, "reconnect") == 0) {
		note(l, "server asks to reconnect (%s) in %" PRIu64 " ms",
		     m.text, m.delay_ms);
		l->delay_ms = m.delay_ms;
		return END_DELAY;
	} else if (strcmp(m.type, "error") == 0) {
		note(l, "error %s: %s", m.code, m.text);
	} else if (strcmp(m.type, "rate_limit") == 0) {
		note(l, "rate limited");
	}
	return -1;
}

/* What to do after the server closed with code. */
static int
after_close(struct listen *l, unsigned code)
{
	switch (ctl_close_action(code)) {
	case CTL_CLOSE_STOP:
		note(l, "closed with %u: not reconnecting", code);
		return END_FAIL;
	case CTL_CLOSE_REAUTH:
		/* Transient refusals are retried with the same token. */
		if (strcmp(l->auth_code, "UNAVAILABLE") == 0 ||
		    strcmp(l->auth_code, "MAX_CONNECTIONS") == 0)
			return END_RECONNECT;
		return END_REAUTH;
	default:
		return END_RECONNECT;
	}
}

/* One connection, from connect to close. */
static int
session(struct listen *l, uint64_t *up_ms)
{
	char out[OUT_MSG_MAX];
	struct ws_reader_limits lim = {.max_message_size = l->max_message};
	size_t have = 0;
	uint64_t hb_ms = DEFAULT_HEARTBEAT_MS, next_hb = 0, auth_at = 0;
	uint64_t auth_deadline, refresh_at;
	int authed = 0, end = -1;

	*up_ms = 0;
	l->auth_code[0] = '\0';
	ctl_resume_new_connection(&l->resume);
	/* A minted token is fresh for every connection (backoff may be long).
	 */
	if (l->mintable && l->connections++ > 0 && mint(l) != 0)
		return END_FAIL;
	ws_reader_init(&l->rd, &lim, NULL);
	ws_reader_set_client(&l->rd);
	if (tcp_connect(l) != 0)
		return got_signal ? END_DONE : END_RECONNECT;
	if (l->url.tls && tls_start(l) != 0) {
		conn_close(l);
		return got_signal ? END_DONE : END_RECONNECT;
	}
	if (ws_upgrade(l, &have) != 0) {
		conn_close(l);
		return got_signal ? END_DONE : END_RECONNECT;
	}
	note(l, "connected to %s://%s:%d%s", l->url.tls ? "wss" : "ws",
	     l->url.host, l->url.port, l->url.path);
	/* auth, and subscribe behind it (orchd holds it until auth_success). */
	if (send_text(l, out,
		      ctl_msg_auth(out, sizeof(out), util_wall_ms(), l->token,
				   l->orch, l->daemon, l->resume.confirmed)) !=
		0 ||
	    send_text(l, out,
		      ctl_msg_subscribe(out, sizeof(out), util_wall_ms(),
					l->types, l->ntypes)) != 0) {
		conn_close(l);
		return END_RECONNECT;
	}
	auth_deadline = util_now_ms() + AUTH_TIMEOUT_MS;
	refresh_at = refresh_time(l);
	while (end < 0) {
		struct ws_event ev;
		size_t used = 0, consumed;
		uint64_t now = util_now_ms(), deadline;
		int w;

		/* Whatever is buffered first, then wait for more. */
		while (end < 0 && used < have) {
			int t = ws_reader_feed(&l->rd, l->rbuf + used,
					       have - used, &consumed, &ev);

			used += consumed;
			switch (t) {
			case WS_EV_TEXT:
				end = on_text(l, ev.data, ev.len, &authed,
					      &hb_ms, &auth_at);
				if (authed && next_hb == 0)
					next_hb = util_now_ms() + hb_ms;
				break;
			case WS_EV_PING:
				if (send_frame(l, WS_OP_PONG, ev.data,
					       ev.len) != 0)
					end = END_RECONNECT;
				break;
			case WS_EV_CLOSE:
				note(l, "server closed the connection: %u %.*s",
				     ev.code, (int)ev.len, ev.data);
				send_close(
				    l,
				    ev.code == WS_CLOSE_NO_STATUS ? 0 : ev.code,
				    NULL);
				end = after_close(l, ev.code);
				break;
			case WS_EV_ERROR:
				note(l,
				     "bad data from the server (%s): "
				     "closing with %u",
				     ev.err, ev.code);
				send_close(l, ev.code, NULL);
				end = END_RECONNECT;
				break;
			case WS_EV_BINARY:
			case WS_EV_PONG:
			default:
				break;
			}
		}
		have = 0;
		if (end >= 0)
			break;
		now = util_now_ms();
		if (!authed && now >= auth_deadline) {
			note(l, "no auth_success within %d s",
			     AUTH_TIMEOUT_MS / 1000);
			send_close(l, WS_CLOSE_NORMAL, "auth timeout");
			end = END_RECONNECT;
			break;
		}
		if (authed && now >= next_hb) {
			if (send_text(l, out,
				      ctl_msg_heartbeat(out, sizeof(out),
							util_wall_ms())) != 0) {
				end = END_RECONNECT;
				break;
			}
			ctl_resume_heartbeat_sent(&l->resume);
			next_hb = now + hb_ms;
		}
		/*
		 * A minted token is replaced before it expires by a second
		 * auth on the connection (PROTOCOL.md section 3), so orchd
		 * never closes it with 4003.
		 */
		if (authed && refresh_at != 0 && now >= refresh_at) {
			if (mint(l) != 0 ||
			    send_text(l, out,
				      ctl_msg_auth(out, sizeof(out),
						   util_wall_ms(), l->token,
						   l->orch, l->daemon, 0)) !=
				0) {
				end = END_RECONNECT;
				break;
			}
			refresh_at = refresh_time(l);
		}
		deadline = authed ? next_hb : auth_deadline;
		if (authed && refresh_at != 0 && refresh_at < deadline)
			deadline = refresh_at;
		if (l->ssl == NULL || SSL_pending(l->ssl) == 0) {
			w = wait_io(l, l->fd, POLLIN, deadline);
			if (w < 0) {
				note(l, "signal %d: closing", (int)got_signal);
				send_close(l, WS_CLOSE_GOING_AWAY, "shutdown");
				end = END_DONE;
				break;
			}
			if (w == 0)
				continue;
		}
		{
			ssize_t r = read_some(l, l->rbuf, READ_CHUNK);

			if (r <= 0) {
				note(l, "connection lost%s%s",
				     r < 0 ? ": " : "",
				     r < 0 ? strerror(errno) : "");
				end = after_close(l, WS_CLOSE_ABNORMAL);
				break;
			}
			have = (size_t)r;
		}
	}
	if (end == END_DELAY)
		send_close(l, WS_CLOSE_NORMAL, "reconnecting");
	else if (end == END_DONE && !got_signal)
		send_close(l, WS_CLOSE_NORMAL, "done");
	if (authed)
		*up_ms = util_now_ms() - auth_at;
	conn_close(l);
	return end;
}

static int
load_token_file(struct listen *l, const char *path)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	if (fp == NULL) {
		fprintf(stderr, "orchctl: listen: %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	n = fread(l->token, 1, sizeof(l->token) - 1, fp);
	fclose(fp);
	l->token[n] = '\0';
	l->token[strcspn(l->token, "\r\n \t")] = '\0';
	if (l->token[0] == '\0' || n == sizeof(l->token) - 1) {
		fprintf(stderr,
			"orchctl: listen: %s: no token (or over %d bytes)\n",
			path, TOKEN_MAX - 1);
		return -1;
	}
	return 0;
}

/* The config's first listener as a URL (0.0.0.0 and :: mean this host). */
static int
url_from_config(struct listen *l)
{
	const struct config *cfg = l->o->cfg;
	char url[CTL_URL_HOST_MAX + CTL_URL_PATH_MAX + 32], err[128];
	const char *host, *port;
	char text[96];

	if (cfg == NULL || cfg->nlisten == 0) {
		fprintf(stderr, "orchctl: listen: no --url and no listener in "
				"a config\n");
		return -1;
	}
	util_strlcpy(text, cfg->listen[0].text, sizeof(text));
	port = strrchr(text, ':');
	if (port == NULL)
		return -1;
	text[port - text] = '\0';
	port++;
	host = text;
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "[::]") == 0)
		host = "[::1]";
	snprintf(url, sizeof(url), "%s://%s:%s%s",
		 cfg->listen[0].tls ? "wss" : "ws", host, port,
		 cfg->ws_path != NULL ? cfg->ws_path : "/daemon/ws");
	if (ctl_parse_ws_url(url, &l->url, err, sizeof(err)) != 0) {
		fprintf(stderr, "orchctl: listen: %s: %s\n", url, err);
		return -1;
	}
	return 0;
}

static int
sleep_ms(struct listen *l, uint64_t ms)
{
	return wait_io(l, -1, 0, util_now_ms() + ms) < 0 ? -1 : 0;
}

int
orchctl_listen(int argc, char **argv, const struct orchctl_opts *o)
{
	static const struct option longopts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"token", required_argument, NULL, 'T'},
	    {"token-file", required_argument, NULL, 'F'},
	    {"types", required_argument, NULL, 't'},
	    {"count", required_argument, NULL, 'n'},
	    {"scopes", required_argument, NULL, 's'},
	    {"max-message", required_argument, NULL, 'M'},
	    {"cafile", required_argument, NULL, 'A'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char help[] =
	    "usage: orchctl listen [--url ws[s]://HOST:PORT/PATH]\n"
	    "         [--token TOKEN | --token-file FILE | -o ORCH -d DAEMON "
	    "[--scopes a,b]]\n"
	    "         [--types a,b] [--count N] [--max-message BYTES] "
	    "[--cafile PEM] [-k]\n"
	    "  --url URL          default: the config's first listen and "
	    "ws_path\n"
	    "  --token TOKEN      an access token (also --token-file FILE)\n"
	    "  -o ORCH, -d DAEMON the identity; without a token one is minted "
	    "from the config\n"
	    "  -g ORG             the minted token's organizationId\n"
	    "  --types LIST       event types to subscribe to (default *)\n"
	    "  --count N          exit 0 after N distinct events\n"
	    "  --max-message B    largest server message (default 1 MiB)\n"
	    "  --cafile PEM, -k   TLS: CA certificates; -k: no verification\n"
	    "Prints each event's payload as one JSON line on stdout and acks "
	    "it;\nreconnects with backoff 1 s..60 s and resumes from the last "
	    "seq.\n";
	struct listen l;
	const char *token_arg = NULL, *token_file = NULL, *url = NULL;
	char *types_arg = NULL, err[200];
	uint64_t v;
	unsigned attempt = 0;
	struct sigaction sa;
	sigset_t block, old;
	int ch, rc = ORCHCTL_FAIL;

	memset(&l, 0, sizeof(l));
	l.o = o;
	l.fd = -1;
	l.max_message = DEFAULT_MAX_MESSAGE;
	while ((ch = getopt_long(argc, argv, "+hko:d:g:", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'h':
			printf("%s", help);
			return ORCHCTL_OK;
		case 'u':
			url = optarg;
			break;
		case 'T':
			token_arg = optarg;
			break;
		case 'F':
			token_file = optarg;
			break;
		case 't':
			types_arg = optarg;
			break;
		case 'n':
			if (util_parse_u64(optarg, 1, UINT32_MAX, &l.count) !=
			    0) {
				fprintf(stderr, "orchctl: listen: --count must "
						"be a positive integer\n");
				return ORCHCTL_USAGE;
			}
			break;
		case 's':
			l.mint.scopes = optarg;
			break;
		case 'M':
			if (util_parse_u64(optarg, 1024, WS_MAX_MESSAGE_CEILING,
					   &v) != 0) {
				fprintf(stderr,
					"orchctl: listen: --max-message must "
					"be 1024..%d\n",
					WS_MAX_MESSAGE_CEILING);
				return ORCHCTL_USAGE;
			}
			l.max_message = (size_t)v;
			break;
		case 'A':
			l.ca_file = optarg;
			break;
		case 'k':
			l.insecure = 1;
			break;
		case 'o':
			l.mint.orch = optarg;
			break;
		case 'd':
			l.mint.daemon = optarg;
			break;
		case 'g':
			l.mint.org = optarg;
			break;
		default:
			fprintf(stderr, "orchctl: listen: see \"orchctl listen "
					"-h\"\n");
			return ORCHCTL_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "orchctl: listen: unexpected argument \"%s\"\n",
			argv[optind]);
		return ORCHCTL_USAGE;
	}
	if (token_arg != NULL && token_file != NULL) {
		fprintf(stderr, "orchctl: listen: --token and --token-file "
				"exclude each other\n");
		return ORCHCTL_USAGE;
	}
	if (types_arg != NULL) {
		int n = ctl_split_list(types_arg, l.types, TYPES_MAX);

		if (n <= 0) {
			fprintf(stderr,
				"orchctl: listen: --types takes 1..%d "
				"event types\n",
				TYPES_MAX);
			return ORCHCTL_USAGE;
		}
		l.ntypes = (size_t)n;
	}
	if (url != NULL) {
		if (ctl_parse_ws_url(url, &l.url, err, sizeof(err)) != 0) {
			fprintf(stderr, "orchctl: listen: %s\n", err);
			return ORCHCTL_USAGE;
		}
	} else if (url_from_config(&l) != 0) {
		return ORCHCTL_FAIL;
	}
	/* The credentials: given, else minted from the config. */
	if (token_arg != NULL) {
		if (util_strlcpy(l.token, token_arg, sizeof(l.token)) >=
		    sizeof(l.token)) {
			fprintf(stderr, "orchctl: listen: token too long\n");
			return ORCHCTL_USAGE;
		}
	} else if (token_file != NULL) {
		if (load_token_file(&l, token_file) != 0)
			return ORCHCTL_FAIL;
	} else {
		if (l.mint.orch == NULL || l.mint.daemon == NULL) {
			fprintf(stderr, "orchctl: listen: give --token, "
					"--token-file, or -o ORCH -d DAEMON\n");
			return ORCHCTL_USAGE;
		}
		l.mintable = 1;
		if (mint(&l) != 0)
			return ORCHCTL_FAIL;
	}
	if (!l.mintable) {
		char orch[128], daemon[128];

		ctl_token_peek(l.token, orch, sizeof(orch), daemon,
			       sizeof(daemon));
		util_strlcpy(l.orch, l.mint.orch ? l.mint.orch : orch,
			     sizeof(l.orch));
		util_strlcpy(l.daemon,
			     l.mint.daemon ? l.mint.daemon
			     : daemon[0]   ? daemon
					   : "orchctl-listen",
			     sizeof(l.daemon));
		if (l.orch[0] == '\0') {
			fprintf(stderr, "orchctl: listen: the token names no "
					"orchestrator: give -o ORCH\n");
			return ORCHCTL_USAGE;
		}
	} else {
		util_strlcpy(l.orch, l.mint.orch, sizeof(l.orch));
		util_strlcpy(l.daemon, l.mint.daemon, sizeof(l.daemon));
	}
	if (ctl_dedupe_init(&l.seen, DEDUPE_IDS) != 0 ||
	    (l.rbuf = malloc(READ_CHUNK > HEAD_MAX ? READ_CHUNK : HEAD_MAX)) ==
		NULL) {
		fprintf(stderr, "orchctl: listen: out of memory\n");
		ctl_dedupe_free(&l.seen);
		return ORCHCTL_FAIL;
	}

	/* Signals are blocked except inside ppoll(): none is missed. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	l.waitmask = old;
	sigdelset(&l.waitmask, SIGINT);
	sigdelset(&l.waitmask, SIGTERM);

	for (;;) {
		uint64_t up, delay;
		int end = session(&l, &up);

		if (end == END_DONE || got_signal) {
			rc = ORCHCTL_OK;
			break;
		}
		if (end == END_FAIL)
			break;
		if (end == END_REAUTH) {
			if (!l.mintable) {
				note(&l,
				     "the token was refused: not reconnecting");
				break;
			}
			/* session() mints a fresh one before connecting. */
		}
		if (up >= STABLE_MS)
			attempt = 0;
		if (end == END_DELAY) {
			delay = l.delay_ms;
			attempt = 0;
		} else {
			uint32_t r = 0;

			if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
				r = (uint32_t)util_now_ms();
			delay = ctl_backoff_ms(attempt, r);
			if (attempt < 64)
				attempt++;
		}
		note(&l, "reconnecting in %" PRIu64 " ms", delay);
		if (sleep_ms(&l, delay) != 0) {
			rc = ORCHCTL_OK;
			break;
		}
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (l.ctx != NULL)
		SSL_CTX_free(l.ctx);
	ctl_dedupe_free(&l.seen);
	free(l.rbuf);
	explicit_bzero(l.token, sizeof(l.token));
	return rc;
}
