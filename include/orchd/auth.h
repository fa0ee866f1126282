/*
 * auth: token verification keys, heartbeat validation and recording, shared
 * by the WebSocket protocol and the HTTP API.
 */
#ifndef ORCHD_AUTH_H
#define ORCHD_AUTH_H

#include <stddef.h>

#include "orchd/config.h"
#include "orchd/json.h"
#include "orchd/jwt.h"

struct worker;

/* Is any verification key (secret or public key) configured? */
int auth_keyring_usable(const struct worker *w);
/* The keyring for cfg's secret and public keys; -1 (logged) on error. */
int auth_keyring_load(const struct config *cfg, struct jwt_keyring **out);

struct auth_hb {
	const char *orch, *daemon, *org;
	const char *session_id, *connection_id; /* may be NULL */
	const char *status;
	const char *metrics_raw; /* JSON text of payload.metrics, or NULL */
	size_t metrics_len;
};

/* Check a heartbeat payload; -1 with *field naming the bad field. */
int auth_heartbeat_validate(const struct json_doc *d, int payload,
			    char *status, size_t cap, const char **field);
/*
 * Record a heartbeat the way the backend reads it: daemon:heartbeat:{orch}
 * (JSON, TTL 3 intervals), daemon:metrics:{orch} (list capped at 100, TTL
 * 24 h) and a notice on daemon:heartbeats:{org}.
 */
void auth_heartbeat_record(struct worker *w, const struct auth_hb *hb);

#endif
