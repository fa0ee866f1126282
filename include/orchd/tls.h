/*
 * tls: TLS for `listen ... tls` listeners, with OpenSSL.
 *
 * The supervisor builds the SSL_CTX (reading the key while it is still
 * privileged) before forking, so every worker shares the certificate and
 * the session-ticket keys: a ticket issued by one worker resumes on any
 * other.  On HUP a new context is built from the files; if that fails the
 * reload is refused and the old context keeps serving.
 */
#ifndef ORCHD_TLS_H
#define ORCHD_TLS_H

#include "orchd/config.h"
#include "orchd/transport.h"

struct conn;

/* Does cfg have a tls listener? */
int tls_needed(const struct config *cfg);
/* An SSL_CTX for cfg's certificate and key; NULL (logged) on error. */
void *tls_ctx_new(const struct config *cfg);
void tls_ctx_free(void *ctx);
/* Put a new connection under TLS (server side); -1 (logged) on error. */
int tls_conn_attach(void *ctx, struct conn *c);

extern const struct transport transport_tls;

#endif
