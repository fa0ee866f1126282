/*
 * tls: the TLS transport.
 *
 * Policy: TLS 1.2 and 1.3 only; for 1.2, ECDHE with AES-GCM or ChaCha20
 * (the "intermediate" profile most sites use); no renegotiation; ALPN
 * http/1.1; stateless session tickets.  SSL_MODE_RELEASE_BUFFERS gives the
 * record buffers back while a connection is idle, which keeps idle TLS
 * connections cheap.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "orchd/conn.h"
#include "orchd/log.h"
#include "orchd/tls.h"

#define TLS12_CIPHERS                                                          \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_RECORD_COALESCE 16384 /* one full record from small frames */

static void
log_ssl_errors(const char *where)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_warnx("%s: %s", where, buf);
	}
}

int
tls_needed(const struct config *cfg)
{
	for (int i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].tls)
			return 1;
	return 0;
}

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
	    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* no ALPN is fine too */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

void *
tls_ctx_new(const struct config *cfg)
{
	SSL_CTX *ctx;
	static const unsigned char sid_ctx[] = "orchd";

	if (cfg->tls_certificate == NULL || cfg->tls_certificate_key == NULL) {
		log_warnx("%s: tls listeners need tls_certificate and "
			  "tls_certificate_key",
			  __func__);
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		log_ssl_errors(__func__);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A peer closing TCP without close_notify is an EOF, not an error. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_NO_COMPRESSION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
		goto fail;
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_certificate) !=
	    1) {
		log_warnx("%s: cannot load certificate %s", __func__,
			  cfg->tls_certificate);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_certificate_key,
					SSL_FILETYPE_PEM) != 1) {
		log_warnx("%s: cannot load key %s", __func__,
			  cfg->tls_certificate_key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_warnx("%s: %s does not match %s", __func__,
			  cfg->tls_certificate_key, cfg->tls_certificate);
		goto fail;
	}
	return ctx;
fail:
	log_ssl_errors(__func__);
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_ctx_free(void *ctx)
{
	SSL_CTX_free(ctx);
}

int
tls_conn_attach(void *ctx, struct conn *c)
{
	SSL *ssl;

	if (ctx == NULL) {
		log_warnx("%s: no TLS context", __func__);
		return -1;
	}
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, c->fd) != 1) {
		log_ssl_errors(__func__);
		SSL_free(ssl);
		return -1;
	}
	SSL_set_accept_state(ssl);
	c->tls = ssl;
	c->tr = &transport_tls;
	c->tr_want = EV_READ;
	return 0;
}

/*
 * Map an SSL result to the transport conventions.  WANT_READ/WANT_WRITE
 * become EAGAIN with c->tr_want saying which readiness unblocks it.
 */
static ssize_t
tls_result(struct conn *c, int r, int is_read)
{
	int err = SSL_get_error(c->tls, r);

	switch (err) {
	case SSL_ERROR_WANT_READ:
		c->tr_want = is_read ? 0 : EV_READ;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		c->tr_want = EV_WRITE;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0; /* close_notify */
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (errno == 0 || errno == EAGAIN)
			return 0; /* EOF without close_notify */
		return -1;
	default:
		if (log_get_level() >= LOG_DEBUG)
			log_ssl_errors("tls");
		ERR_clear_error();
		errno = ECONNRESET;
		return -1;
	}
}

static int
tls_handshake(struct conn *c)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(c->tls);
	if (r == 1) {
		c->tr_want = 0;
		return 1;
	}
	errno = 0;
	if (tls_result(c, r, 0) == -1 && errno == EAGAIN) {
		if (c->tr_want == 0)
			c->tr_want = EV_READ;
		return 0;
	}
	log_debug("%s: fd %d %s: handshake failed", __func__, c->fd,
		  conn_peer_str(c));
	return -1;
}

static ssize_t
tls_recv(struct conn *c, void *buf, size_t len)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_read(c->tls, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (r > 0) {
		c->tr_want = 0;
		return r;
	}
	return tls_result(c, r, 1);
}

/*
 * TLS has no writev: coalesce small frames into one record-sized buffer.
 * A retry after WANT_WRITE starts with the same bytes (the queue only
 * moves on success), which is what OpenSSL requires of a retried write.
 */
static ssize_t
tls_writev(struct conn *c, const struct iovec *iov, int iovcnt)
{
	unsigned char buf[TLS_RECORD_COALESCE];
	size_t fill = 0;
	const void *p;
	size_t len;
	int r;

	if (iovcnt == 1 || iov[0].iov_len >= sizeof(buf)) {
		p = iov[0].iov_base;
		len = iov[0].iov_len;
	} else {
		for (int i = 0; i < iovcnt && fill < sizeof(buf); i++) {
			size_t k = iov[i].iov_len;

			if (k > sizeof(buf) - fill)
				k = sizeof(buf) - fill;
			memcpy(buf + fill, iov[i].iov_base, k);
			fill += k;
		}
		p = buf;
		len = fill;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_write(c->tls, p, len > INT32_MAX ? INT32_MAX : (int)len);
	if (r > 0) {
		c->tr_want = 0;
		return r;
	}
	if (tls_result(c, r, 0) == 0)
		errno = EPIPE;
	return -1;
}

static void
tls_shutdown(struct conn *c)
{
	ERR_clear_error();
	(void)SSL_shutdown(c->tls); /* close_notify; don't wait for theirs */
	ERR_clear_error();
	(void)shutdown(c->fd, SHUT_WR);
}

static void
tls_free(struct conn *c)
{
	SSL_free(c->tls);
	c->tls = NULL;
}

const struct transport transport_tls = {
	.name = "tls",
	.handshake = tls_handshake,
	.recv = tls_recv,
	.writev = tls_writev,
	.shutdown = tls_shutdown,
	.free = tls_free,
};
