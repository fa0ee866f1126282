/*
 * api: the daemon HTTP API on the same listener (PROTOCOL.md section 7):
 * Bearer-token endpoints under /api/daemon/: POST heartbeat, and GET and
 * DELETE events (the orchestrator's durable queue, read and acknowledged).
 * With a database configured, the token's orchestrator must be known and
 * active in the directory (else 403 ORCHESTRATOR_DISABLED, or 503
 * UNAVAILABLE without an answer), as on the WebSocket.  POST auth and
 * auth/refresh issue tokens from the credentials table.
 */
#ifndef ORCHD_API_H
#define ORCHD_API_H

#include "orchd/http.h"

struct conn;

/* Is path one of ours (so its request body is collected)? */
int api_handles(const char *path);
/* Answer a request for one of our paths (path already percent-decoded). */
void api_dispatch(struct conn *c, const struct http_request *req,
		  const char *path);
/* An HTTP error with our JSON body {"error": message, "code": code}. */
void api_send_error(struct conn *c, int status, const char *code,
		    const char *message);

#endif
