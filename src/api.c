/*
 * api: Bearer-token HTTP endpoints.
 *
 * A request is authenticated like a WebSocket auth, minus the quota: the
 * JWT first, then (asynchronously) the revoked-jti set in Redis, under the
 * same revocation_check policy.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/api.h"
#include "orchd/auth.h"
#include "orchd/conn.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/log.h"
#include "orchd/redis.h"
#include "orchd/util.h"
#include "orchd/worker.h"

#define API_TOKEN_MAX 8192

struct api_call {
	struct conn *c;
	int keep_alive;
	struct jwt_claims cl;
	uint8_t *body; /* a copy: the request buffer is gone by the reply */
	size_t body_len;
};

int
api_handles(const char *path)
{
	return strcmp(path, "/api/daemon/heartbeat") == 0;
}

void
api_send_error(struct conn *c, int status, const char *code,
	       const char *message)
{
	char body[512], resp[1024];
	struct json_writer jw;
	size_t blen = 0;
	int n;

	json_w_init(&jw, body, sizeof(body));
	json_w_obj_begin(&jw);
	json_w_key(&jw, "error");
	json_w_str(&jw, message);
	json_w_key(&jw, "code");
	json_w_str(&jw, code);
	json_w_obj_end(&jw);
	if (json_w_finish(&jw, &blen) == -1)
		blen = 0;
	n = http_format_response(resp, sizeof(resp), status, "application/json",
				 status == 401 ? "WWW-Authenticate: Bearer\r\n"
					       : NULL,
				 body, blen, 0, 0);
	if (n < 0) {
		conn_send_error(c, status, NULL);
		return;
	}
	conn_send(c, resp, (size_t)n, 0);
}

static void
send_json(struct conn *c, int keep_alive, const char *body, size_t len)
{
	char resp[4096];
	int n = http_format_response(resp, sizeof(resp), 200,
				     "application/json", NULL, body, len,
				     keep_alive, 0);

	if (n < 0) {
		api_send_error(c, 500, "INTERNAL_ERROR", "response too large");
		return;
	}
	conn_send(c, resp, (size_t)n, keep_alive);
}

static void
heartbeat_finish(struct api_call *a)
{
	struct conn *c = a->c;
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct json_limits lim = {.max_tokens = 4096,
				  .max_depth = 8,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	struct auth_hb hb;
	const char *field;
	char status[16], out[512];
	struct json_writer jw;
	uint64_t now = util_wall_ms();
	size_t len;
	int m, rc;

	if ((rc = json_parse(&d, (const char *)a->body, a->body_len, &lim)) !=
	    0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "the body must be a JSON object: %s",
			 json_strerror(rc));
		api_send_error(c, 400, "INVALID_MESSAGE", msg);
		return;
	}
	if (auth_heartbeat_validate(&d, json_root(&d), status, sizeof(status),
				    &field) != 0) {
		char msg[128];

		/* The body is the WebSocket heartbeat's payload. */
		snprintf(msg, sizeof(msg), "invalid %s",
			 strncmp(field, "payload.", 8) == 0 ? field + 8 : field);
		api_send_error(c, 400, "INVALID_MESSAGE", msg);
		json_doc_free(&d);
		return;
	}
	memset(&hb, 0, sizeof(hb));
	hb.orch = a->cl.orchestrator;
	hb.daemon = a->cl.daemon_id;
	hb.org = a->cl.organization_id;
	hb.status = status;
	m = json_obj_get(&d, json_root(&d), "metrics");
	if (m >= 0)
		json_tok_raw(&d, m, &hb.metrics_raw, &hb.metrics_len);
	auth_heartbeat_record(w, &hb);
	json_doc_free(&d);
	atomic_fetch_add(&w->stats->heartbeats, 1);

	json_w_init(&jw, out, sizeof(out));
	json_w_obj_begin(&jw);
	json_w_key(&jw, "success");
	json_w_bool(&jw, true);
	json_w_key(&jw, "serverTime");
	json_w_timestamp(&jw, now);
	json_w_key(&jw, "nextHeartbeat");
	json_w_timestamp(&jw, now + cfg->heartbeat_interval_ms);
	json_w_key(&jw, "heartbeatIntervalMs");
	json_w_uint(&jw, cfg->heartbeat_interval_ms);
	json_w_obj_end(&jw);
	if (json_w_finish(&jw, &len) == -1) {
		api_send_error(c, 500, "INTERNAL_ERROR", "response too large");
		return;
	}
	send_json(c, a->keep_alive, out, len);
}

static void
call_free(struct api_call *a)
{
	free(a->body);
	free(a);
}

static void
revocation_reply(struct redis *r, redisReply *rep, void *arg)
{
	struct api_call *a = arg;
	struct conn *c = a->c;

	c->refs--;
	if (c->state == CONN_HTTP_WAIT) {
		if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
			if (c->w->cfg->revocation_check ==
			    CONFIG_REVOCATION_BEST_EFFORT)
				heartbeat_finish(a);
			else
				api_send_error(c, 503, "UNAVAILABLE",
					       "token revocation check "
					       "unavailable");
		} else if (rep->integer == 1) {
			api_send_error(c, 401, "TOKEN_REVOKED",
				       "the token has been revoked");
		} else {
			heartbeat_finish(a);
		}
		conn_response_ready(c);
	}
	call_free(a);
}

static int
bearer(const struct http_request *req, char *out, size_t cap)
{
	const struct http_str *h = http_header_get(req, "Authorization");

	if (h == NULL || h->len <= 7 || strncasecmp(h->p, "Bearer ", 7) != 0 ||
	    h->len - 7 >= cap)
		return -1;
	memcpy(out, h->p + 7, h->len - 7);
	out[h->len - 7] = '\0';
	return 0;
}

static void
api_heartbeat(struct conn *c, const struct http_request *req)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct jwt_policy pol;
	struct api_call *a;
	char token[API_TOKEN_MAX + 1], err[256];
	int rc;

	if (req->method != HTTP_METHOD_POST) {
		conn_send_error(c, 405, "Allow: POST\r\n");
		return;
	}
	if (bearer(req, token, sizeof(token)) != 0) {
		api_send_error(c, 401, "AUTH_FAILED",
			       "an Authorization: Bearer token is required");
		return;
	}
	if (!auth_keyring_usable(w)) {
		api_send_error(c, 503, "UNAVAILABLE",
			       "token verification is not configured");
		return;
	}
	a = util_calloc(1, sizeof(*a));
	jwt_policy_init(&pol);
	pol.leeway = (unsigned)(cfg->jwt_leeway_ms / 1000);
	pol.iss = cfg->jwt_issuer;
	pol.aud = cfg->jwt_audience;
	pol.max_len = API_TOKEN_MAX;
	rc = jwt_verify(w->keyring, &pol, token, strlen(token), &a->cl, err,
			sizeof(err));
	if (rc != JWT_OK) {
		api_send_error(c, 401,
			       rc == JWT_EEXPIRED ? "TOKEN_EXPIRED" : "AUTH_FAILED",
			       err);
		call_free(a);
		return;
	}
	a->c = c;
	a->keep_alive = req->keep_alive;
	a->body = util_malloc(req->body_len ? req->body_len : 1);
	memcpy(a->body, req->body, req->body_len);
	a->body_len = req->body_len;
	if (a->cl.jti[0] != '\0' &&
	    cfg->revocation_check != CONFIG_REVOCATION_OFF) {
		if (redis_command(w->redis, revocation_reply, a,
				  "SISMEMBER daemon:tokens:revoked %s",
				  a->cl.jti) == 0) {
			/* The answer comes later: hold the connection. */
			c->refs++;
			conn_set_state(c, CONN_HTTP_WAIT);
			return;
		}
		if (cfg->revocation_check != CONFIG_REVOCATION_BEST_EFFORT) {
			api_send_error(c, 503, "UNAVAILABLE",
				       "token revocation check unavailable");
			call_free(a);
			return;
		}
	}
	heartbeat_finish(a);
	call_free(a);
}

void
api_dispatch(struct conn *c, const struct http_request *req, const char *path)
{
	if (strcmp(path, "/api/daemon/heartbeat") == 0) {
		api_heartbeat(c, req);
		return;
	}
	conn_send_error(c, 404, NULL);
}
