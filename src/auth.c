/*
 * auth: authentication, sessions and heartbeats of the daemon protocol.
 *
 * Order of checks on auth: the JWT (signature first, then claims), the
 * token's orchestrator and daemon against the message, required scopes,
 * the revoked-jti set in Redis (asynchronous), the orchestrator in the
 * PostgreSQL directory when one is configured (asynchronous; its
 * organization and workspace replace the token's), and last the quota slot
 * in the shared registry, so that a refused connection never holds a slot.
 * A token refresh is not looked up again: the directory's change notices
 * already end the connections of a disabled orchestrator.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/auth.h"
#include "orchd/deliver.h"
#include "orchd/directory.h"
#include "orchd/queue.h"
#include "orchd/conn.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/log.h"
#include "orchd/proto.h"
#include "orchd/proto_int.h"
#include "orchd/redis.h"
#include "orchd/registry.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/worker_ctl.h"
#include "orchd/wsconn.h"

#define TOKEN_MAX 8192

/* What the asynchronous part of an auth needs to finish. */
struct proto_pending {
	struct conn *c;
	int cancelled; /* the connection closed before the reply */
	int refresh;
	int64_t exp;
	unsigned scope_mask;
	char orch[REGISTRY_ID_MAX];
	char daemon[REGISTRY_ID_MAX];
	char org[REGISTRY_ID_MAX];
	char workspace[REGISTRY_ID_MAX];
	char user[REGISTRY_ID_MAX]; /* from the directory */
	char jti[JWT_ID_SIZE];      /* the token's, "" without */
	char scopes[JWT_SCOPES_MAX][JWT_SCOPE_SIZE];
	unsigned nscopes;
	int has_resume;
	uint64_t resume_from;
};

/* What auth_success says once the queue replay knows its size. */
struct proto_success {
	int64_t exp;
	char scopes[JWT_SCOPES_MAX][JWT_SCOPE_SIZE];
	unsigned nscopes;
};

static void auth_complete(struct conn *c, struct proto_pending *pp);
static int auth_continue(struct conn *c, struct proto_pending *pp);
static void auth_ready(struct conn *c, uint64_t queued, int recovered);

int
auth_keyring_load(const struct config *cfg, struct jwt_keyring **out)
{
	struct jwt_keyring *kr = jwt_keyring_new();

	if (cfg->jwt_secret != NULL &&
	    jwt_keyring_set_secret(kr, cfg->jwt_secret, cfg->jwt_secret_len) !=
		    0) {
		log_warnx("%s: jwt secret: %s", __func__,
			  jwt_keyring_error(kr));
		jwt_keyring_free(kr);
		return -1;
	}
	for (size_t i = 0; i < cfg->njwt_public_keys; i++)
		if (jwt_keyring_add_pem_file(kr, cfg->jwt_public_keys[i],
					     cfg->jwt_public_key_kids[i]) !=
		    0) {
			log_warnx("%s: %s: %s", __func__,
				  cfg->jwt_public_keys[i],
				  jwt_keyring_error(kr));
			jwt_keyring_free(kr);
			return -1;
		}
	*out = kr;
	return 0;
}

int
auth_keyring_usable(const struct worker *w)
{
	/* jwt_keyring_nkeys() counts public keys only, not the secret. */
	return w->cfg->jwt_secret != NULL || jwt_keyring_nkeys(w->keyring) > 0;
}

static void
auth_fail(struct conn *c, const char *code, const char *message,
	  unsigned close_code)
{
	char buf[512];
	struct json_writer jw;

	atomic_fetch_add(&c->w->stats->auth_failures, 1);
	atomic_fetch_add_explicit(
	    &c->w->stats->auth_results[shm_auth_index(code)], 1,
	    memory_order_relaxed);
	log_info("auth: %s: refused: %s (%s)", conn_peer_str(c), code,
		 message);
	proto_msg_begin(&jw, buf, sizeof(buf), "auth_error");
	json_w_key(&jw, "code");
	json_w_str(&jw, code);
	json_w_key(&jw, "message");
	json_w_str(&jw, message);
	proto_msg_send(c, &jw);
	if (close_code != 0)
		wsconn_close(c, close_code, message);
}

/* A string field of the auth payload, 1..cap-1 bytes. */
static int
get_field(const struct json_doc *d, int payload, const char *key, char *out,
	  size_t cap)
{
	int t = json_obj_get(d, payload, key);
	size_t len = 0;

	if (json_type(d, t) != JSON_STRING ||
	    json_get_string(d, t, out, cap, &len) != 0 || len == 0)
		return -1;
	return 0;
}

static void
send_auth_success(struct conn *c, const char (*scopes)[JWT_SCOPE_SIZE],
		  unsigned nscopes, int64_t exp, uint64_t queued, int recovered)
{
	const struct config *cfg = c->w->cfg;
	struct proto_conn *p = c->proto;
	char buf[4096];
	struct json_writer jw;
	uint64_t now = util_wall_ms();

	proto_msg_begin(&jw, buf, sizeof(buf), "auth_success");
	json_w_key(&jw, "sessionId");
	json_w_str(&jw, p->session_id);
	json_w_key(&jw, "scopes");
	json_w_arr_begin(&jw);
	for (unsigned i = 0; i < nscopes; i++)
		json_w_str(&jw, scopes[i]);
	json_w_arr_end(&jw);
	json_w_key(&jw, "serverTime");
	json_w_timestamp(&jw, now);
	json_w_key(&jw, "heartbeatIntervalMs");
	json_w_uint(&jw, cfg->heartbeat_interval_ms);
	json_w_key(&jw, "connectionId");
	json_w_str(&jw, p->connection_id);
	json_w_key(&jw, "protocolVersion");
	json_w_uint(&jw, 1);
	json_w_key(&jw, "recovered");
	json_w_bool(&jw, recovered != 0);
	json_w_key(&jw, "queued");
	json_w_uint(&jw, queued);
	json_w_key(&jw, "tokenExpiresAt");
	json_w_timestamp(&jw, (uint64_t)exp * 1000);
	proto_msg_send(c, &jw);
}

static uint64_t
session_ttl_s(const struct config *cfg)
{
	uint64_t ms = config_session_ttl_ms(cfg);

	return ms < 1000 ? 1 : ms / 1000;
}

/* Session keys the backend reads (fire and forget: nothing waits). */
static void
session_write(struct conn *c)
{
	struct worker *w = c->w;
	struct proto_conn *p = c->proto;
	char key[128], setkey[128], worker[16], conn_at[32], seen[32];
	unsigned long long ttl = (unsigned long long)session_ttl_s(w->cfg);

	if (!redis_connected(w->redis))
		return;
	snprintf(key, sizeof(key), "ws:connection:%s", p->connection_id);
	snprintf(setkey, sizeof(setkey), "ws:vp:%s:connections", p->orch);
	snprintf(worker, sizeof(worker), "%d", w->slot);
	util_iso8601_ms(p->connected_wall_ms, conn_at, sizeof(conn_at));
	util_iso8601_ms(util_wall_ms(), seen, sizeof(seen));
	redis_command(w->redis, NULL, NULL,
		      "HSET %s orchestratorId %s daemonId %s organizationId %s "
		      "sessionId %s worker %s remoteAddress %s connectedAt %s "
		      "lastSeen %s",
		      key, p->orch, p->daemon, p->org, p->session_id, worker,
		      conn_peer_str(c), conn_at, seen);
	redis_command(w->redis, NULL, NULL, "EXPIRE %s %llu", key, ttl);
	redis_command(w->redis, NULL, NULL, "SADD %s %s", setkey,
		      p->connection_id);
	redis_command(w->redis, NULL, NULL, "EXPIRE %s %llu", setkey, ttl);
}

void
proto_auth_cleanup(struct conn *c)
{
	struct worker *w = c->w;
	struct proto_conn *p = c->proto;

	if (p->pending != NULL) {
		p->pending->cancelled = 1; /* the reply will find nobody */
		p->pending = NULL;
	}
	UTIL_FREE(p->success);
	deliver_conn_end(c);
	if (p->has_slot) {
		registry_release(w->registry, p->slot, p->conn_id);
		p->has_slot = 0;
	}
	if (p->state == PROTO_AUTHED && redis_connected(w->redis)) {
		char key[128];

		snprintf(key, sizeof(key), "ws:connection:%s",
			 p->connection_id);
		redis_command(w->redis, NULL, NULL, "DEL %s", key);
		snprintf(key, sizeof(key), "ws:vp:%s:connections", p->orch);
		redis_command(w->redis, NULL, NULL, "SREM %s %s", key,
			      p->connection_id);
	}
	if (p->state == PROTO_AUTHED)
		p->state = PROTO_UNAUTH; /* ended: nothing more to clean */
}

static void
revocation_reply(struct redis *r, redisReply *rep, void *arg)
{
	struct proto_pending *pp = arg;
	struct conn *c = pp->c;

	c->refs--;
	if (!pp->cancelled) {
		struct proto_conn *p = c->proto;

		p->pending = NULL;
		if (c->state == CONN_WS_OPEN) {
			if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
				if (c->w->cfg->revocation_check ==
				    CONFIG_REVOCATION_BEST_EFFORT) {
					log_warnx("auth: revocation check "
						  "failed; best-effort: "
						  "accepting %s",
						  pp->orch);
					if (auth_continue(c, pp))
						return; /* pp lives on */
				} else {
					p->state = pp->refresh ? PROTO_AUTHED
							       : PROTO_UNAUTH;
					auth_fail(c, "UNAVAILABLE",
						  "token revocation check "
						  "unavailable",
						  PROTO_CLOSE_AUTH_FAILED);
				}
			} else if (rep->integer == 1) {
				p->state = pp->refresh ? PROTO_AUTHED
						       : PROTO_UNAUTH;
				auth_fail(c, "TOKEN_REVOKED",
					  "the token has been revoked",
					  PROTO_CLOSE_AUTH_FAILED);
			} else if (auth_continue(c, pp)) {
				return; /* pp lives on */
			}
			proto_replay_held(c);
		}
	}
	free(pp);
}

static void
directory_reply(enum directory_status st, const struct directory_entry *e,
		void *arg)
{
	struct proto_pending *pp = arg;
	struct conn *c = pp->c;

	c->refs--;
	if (!pp->cancelled) {
		struct proto_conn *p = c->proto;

		p->pending = NULL;
		if (c->state == CONN_WS_OPEN) {
			switch (st) {
			case DIR_OK:
				util_strlcpy(pp->user, e->user,
					     sizeof(pp->user));
				util_strlcpy(pp->org, e->org, sizeof(pp->org));
				util_strlcpy(pp->workspace, e->workspace,
					     sizeof(pp->workspace));
				auth_complete(c, pp);
				break;
			case DIR_UNKNOWN:
			case DIR_DISABLED:
				p->state = PROTO_UNAUTH;
				auth_fail(c, "ORCHESTRATOR_DISABLED",
					  st == DIR_UNKNOWN
						  ? "unknown orchestrator"
						  : "the orchestrator or its "
						    "user is not active",
					  PROTO_CLOSE_AUTH_FAILED);
				break;
			case DIR_UNAVAILABLE:
				p->state = PROTO_UNAUTH;
				auth_fail(c, "UNAVAILABLE",
					  "the directory is unavailable",
					  PROTO_CLOSE_AUTH_FAILED);
				break;
			}
			proto_replay_held(c);
		}
	}
	free(pp);
}

/*
 * The token is good: look the orchestrator up in the directory (when one
 * is configured, and not for a refresh), else finish now.  1 when the
 * look-up owns pp (directory_reply() frees it), 0 when the caller still
 * does.
 */
static int
auth_continue(struct conn *c, struct proto_pending *pp)
{
	struct worker *w = c->w;
	struct proto_conn *p = c->proto;

	if (w->dir == NULL || pp->refresh) {
		auth_complete(c, pp);
		return 0;
	}
	pp->c = c;
	pp->cancelled = 0;
	c->refs++;
	p->pending = pp;
	p->state = PROTO_AUTHING;
	directory_lookup(w->dir, pp->orch, directory_reply, pp);
	return 1;
}

/* Monotonic deadline for a wall-clock expiry in seconds. */
static uint64_t
exp_deadline(const struct conn *c, int64_t exp)
{
	int64_t left = exp * 1000 - (int64_t)util_wall_ms();

	return proto_now(c) + (left > 0 ? (uint64_t)left : 0);
}

static void
auth_complete(struct conn *c, struct proto_pending *pp)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct proto_conn *p = c->proto;
	uint64_t now = proto_now(c);

	/* Revoked while this auth waited (its Redis check came first). */
	if (worker_ctl_revoked(w, pp->jti)) {
		p->state = pp->refresh ? PROTO_AUTHED : PROTO_UNAUTH;
		auth_fail(c, "TOKEN_REVOKED", "the token has been revoked",
			  PROTO_CLOSE_AUTH_FAILED);
		return;
	}
	if (pp->refresh) {
		p->token_exp_ms = exp_deadline(c, pp->exp);
		p->scope_mask = pp->scope_mask;
		memcpy(p->jti, pp->jti, sizeof(p->jti));
		p->state = PROTO_AUTHED;
		atomic_fetch_add(&w->stats->auth_refreshes, 1);
		send_auth_success(c, (const char(*)[JWT_SCOPE_SIZE])pp->scopes,
				  pp->nscopes, pp->exp, 0, 0);
		conn_set_state(c, c->state); /* re-arm the deadline timer */
		return;
	}
	if (w->registry != NULL) {
		struct registry_entry e;
		int rc;

		memset(&e, 0, sizeof(e));
		e.conn_id = p->conn_id = ((uint64_t)w->slot << 56) |
					 ((uint64_t)w->generation << 40) |
					 ++w->conn_seq;
		e.connected_ms = util_wall_ms();
		e.last_seen_ms = e.connected_ms;
		e.pid = getpid();
		e.worker = (unsigned)w->slot;
		e.state = REGISTRY_ACTIVE;
		util_strlcpy(e.orchestrator, pp->orch, sizeof(e.orchestrator));
		util_strlcpy(e.daemon, pp->daemon, sizeof(e.daemon));
		util_strlcpy(e.organization, pp->org, sizeof(e.organization));
		rc = registry_acquire(w->registry, &e,
				      cfg->max_connections_per_orchestrator,
				      &p->slot);
		if (rc != REGISTRY_OK) {
			p->state = PROTO_UNAUTH;
			auth_fail(c, "MAX_CONNECTIONS",
				  rc == REGISTRY_EQUOTA
					  ? "too many connections for this "
					    "orchestrator"
					  : "server connection table full",
				  PROTO_CLOSE_AUTH_FAILED);
			return;
		}
		p->has_slot = 1;
	}
	memcpy(p->orch, pp->orch, sizeof(p->orch));
	memcpy(p->daemon, pp->daemon, sizeof(p->daemon));
	memcpy(p->org, pp->org, sizeof(p->org));
	memcpy(p->workspace, pp->workspace, sizeof(p->workspace));
	memcpy(p->user, pp->user, sizeof(p->user));
	memcpy(p->jti, pp->jti, sizeof(p->jti));
	p->scope_mask = pp->scope_mask;
	p->token_exp_ms = exp_deadline(c, pp->exp);
	p->hb_deadline_ms = now + 3 * cfg->heartbeat_interval_ms;
	json_uuid_v4(p->session_id);
	/*
	 * auth_success reports the replay's size, so it waits for the first
	 * page of the queue; messages that come meanwhile stay held.
	 */
	p->state = PROTO_AUTHING;
	p->success = util_calloc(1, sizeof(*p->success));
	p->success->exp = pp->exp;
	memcpy(p->success->scopes, pp->scopes, sizeof(p->success->scopes));
	p->success->nscopes = pp->nscopes;
	deliver_conn_start(c, pp->has_resume, pp->resume_from, auth_ready);
}

/* The queue's first page is in (or Redis failed): the daemon is in. */
static void
auth_ready(struct conn *c, uint64_t queued, int recovered)
{
	struct worker *w = c->w;
	struct proto_conn *p = c->proto;
	struct proto_success *ps = p->success;

	p->success = NULL;
	if (c->state != CONN_WS_OPEN || p->ended || ps == NULL) {
		free(ps);
		return;
	}
	p->state = PROTO_AUTHED;
	atomic_fetch_add(&w->stats->auth_successes, 1);
	atomic_fetch_add_explicit(&w->stats->auth_results[0], 1,
				  memory_order_relaxed);
	log_debug("auth: %s: %s/%s authenticated, %llu queued events",
		  conn_peer_str(c), p->orch, p->daemon,
		  (unsigned long long)queued);
	session_write(c);
	send_auth_success(c, (const char(*)[JWT_SCOPE_SIZE])ps->scopes,
			  ps->nscopes, ps->exp, queued, recovered);
	free(ps);
	conn_set_state(c, c->state); /* re-arm the deadline timer */
	proto_replay_held(c);
}

void
proto_handle_auth(struct conn *c, const struct json_doc *d, int payload)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct proto_conn *p = c->proto;
	struct proto_pending *pp;
	struct jwt_policy pol;
	struct jwt_claims cl;
	char token[TOKEN_MAX + 1], err[256];
	int rc, refresh = p->state == PROTO_AUTHED;
	unsigned fail_close = refresh ? 0 : PROTO_CLOSE_AUTH_FAILED;

	if (p->state == PROTO_AUTHING) {
		proto_send_error(c, "INVALID_MESSAGE",
				 "authentication already in progress", "type");
		return;
	}
	pp = util_calloc(1, sizeof(*pp));
	pp->refresh = refresh;
	if (payload < 0 ||
	    get_field(d, payload, "accessToken", token, sizeof(token)) != 0) {
		proto_send_error(c, "INVALID_MESSAGE",
				 "accessToken must be a non-empty string",
				 "payload.accessToken");
		goto drop;
	}
	if (get_field(d, payload, "daemonId", pp->daemon, sizeof(pp->daemon)) !=
	    0) {
		proto_send_error(c, "INVALID_MESSAGE",
				 "daemonId must be a string of 1 to 63 bytes",
				 "payload.daemonId");
		goto drop;
	}
	if (get_field(d, payload, "orchestratorId", pp->orch,
		      sizeof(pp->orch)) != 0 &&
	    get_field(d, payload, "vpId", pp->orch, sizeof(pp->orch)) != 0) {
		proto_send_error(c, "INVALID_MESSAGE",
				 "orchestratorId must be a string of 1 to 63 "
				 "bytes",
				 "payload.orchestratorId");
		goto drop;
	}
	{
		int rf = json_obj_get(d, payload, "resumeFrom");
		int64_t v;

		if (rf >= 0 && !json_is_null(d, rf) &&
		    (json_get_int64(d, rf, &v) != 0 || v < 0)) {
			proto_send_error(c, "INVALID_MESSAGE",
					 "resumeFrom must be a non-negative "
					 "integer",
					 "payload.resumeFrom");
			goto drop;
		}
		if (rf >= 0 && !json_is_null(d, rf)) {
			pp->has_resume = 1;
			pp->resume_from = (uint64_t)v;
		}
	}
	if (!auth_keyring_usable(w)) {
		log_warnx("auth: no jwt_secret_file, DAEMON_JWT_SECRET or "
			  "jwt_public_key configured");
		auth_fail(c, "UNAVAILABLE", "token verification is not configured",
			  fail_close);
		goto drop;
	}
	jwt_policy_init(&pol);
	pol.leeway = (unsigned)(cfg->jwt_leeway_ms / 1000);
	pol.iss = cfg->jwt_issuer;
	pol.aud = cfg->jwt_audience;
	pol.max_len = TOKEN_MAX;
	rc = jwt_verify(w->keyring, &pol, token, strlen(token), &cl, err,
			sizeof(err));
	if (rc != JWT_OK) {
		auth_fail(c, rc == JWT_EEXPIRED ? "TOKEN_EXPIRED" : "AUTH_FAILED",
			  err, fail_close);
		goto drop;
	}
	if (strcmp(cl.orchestrator, pp->orch) != 0) {
		auth_fail(c, "AUTH_FAILED",
			  "the token belongs to another orchestrator",
			  fail_close);
		goto drop;
	}
	if (cl.daemon_id[0] != '\0' && strcmp(cl.daemon_id, pp->daemon) != 0) {
		auth_fail(c, "AUTH_FAILED", "the token belongs to another daemon",
			  fail_close);
		goto drop;
	}
	if (refresh && (strcmp(pp->orch, p->orch) != 0 ||
			strcmp(pp->daemon, p->daemon) != 0)) {
		auth_fail(c, "AUTH_FAILED",
			  "a refresh must keep the orchestrator and daemon", 0);
		goto drop;
	}
	if (strlen(cl.organization_id) >= sizeof(pp->org) ||
	    strlen(cl.workspace_id) >= sizeof(pp->workspace)) {
		auth_fail(c, "AUTH_FAILED", "organization or workspace id too long",
			  fail_close);
		goto drop;
	}
	for (size_t i = 0; i < cfg->nrequired_scopes; i++) {
		unsigned k;

		for (k = 0; k < cl.nscopes; k++)
			if (strcmp(cl.scopes[k], cfg->required_scopes[i]) == 0)
				break;
		if (k == cl.nscopes) {
			char msg[128];

			snprintf(msg, sizeof(msg), "the token lacks scope %s",
				 cfg->required_scopes[i]);
			auth_fail(c, "INSUFFICIENT_SCOPE", msg,
				  refresh ? 0 : PROTO_CLOSE_SCOPE);
			goto drop;
		}
	}
	util_strlcpy(pp->org, cl.organization_id, sizeof(pp->org));
	util_strlcpy(pp->workspace, cl.workspace_id, sizeof(pp->workspace));
	util_strlcpy(pp->jti, cl.jti, sizeof(pp->jti));
	pp->exp = cl.exp;
	pp->scope_mask = proto_scope_mask(
		(const char(*)[JWT_SCOPE_SIZE])cl.scopes, cl.nscopes);
	memcpy(pp->scopes, cl.scopes, sizeof(pp->scopes));
	pp->nscopes = cl.nscopes;

	if (cl.jti[0] != '\0' && cfg->revocation_check != CONFIG_REVOCATION_OFF) {
		pp->c = c;
		if (redis_command(w->redis, revocation_reply, pp,
				  "SISMEMBER daemon:tokens:revoked %s",
				  cl.jti) == 0) {
			c->refs++;
			p->pending = pp;
			p->state = PROTO_AUTHING;
			return;
		}
		if (cfg->revocation_check != CONFIG_REVOCATION_BEST_EFFORT) {
			auth_fail(c, "UNAVAILABLE",
				  "token revocation check unavailable",
				  fail_close);
			goto drop;
		}
		log_warnx("auth: Redis down; best-effort: accepting %s without "
			  "the revocation check",
			  pp->orch);
	}
	if (auth_continue(c, pp))
		return; /* pp lives on */
drop:
	free(pp);
}

/* ---- heartbeats --------------------------------------------------------- */

static const char *const metric_names[] = {
	"memoryUsageBytes", "uptimeSeconds", "messagesSent", "messagesReceived",
	"errors", "apiCalls", "avgResponseTimeMs",
};

int
auth_heartbeat_validate(const struct json_doc *d, int payload, char *status,
			size_t cap, const char **field)
{
	int st, m;

	*field = "payload.status";
	st = payload >= 0 ? json_obj_get(d, payload, "status") : -1;
	if (json_get_string(d, st, status, cap, NULL) != 0 ||
	    (strcmp(status, "active") != 0 && strcmp(status, "idle") != 0 &&
	     strcmp(status, "busy") != 0))
		return -1;
	m = json_obj_get(d, payload, "metrics");
	if (m < 0 || json_is_null(d, m))
		return 0;
	*field = "payload.metrics";
	if (json_type(d, m) != JSON_OBJECT)
		return -1;
	for (size_t i = 0; i < UTIL_NELEM(metric_names); i++) {
		int v = json_obj_get(d, m, metric_names[i]);

		if (v >= 0 && json_type(d, v) != JSON_NUMBER) {
			*field = "payload.metrics";
			return -1;
		}
	}
	{
		int cu = json_obj_get(d, m, "custom");

		if (cu >= 0) {
			if (json_type(d, cu) != JSON_OBJECT)
				return -1;
			for (int k = json_first(d, cu); k >= 0;
			     k = json_next(d, k)) {
				enum json_type t =
					json_type(d, json_obj_value(d, k));

				if (t != JSON_NUMBER && t != JSON_STRING)
					return -1;
			}
		}
	}
	return 0;
}

void
auth_heartbeat_record(struct worker *w, const struct auth_hb *hb)
{
	const struct config *cfg = w->cfg;
	char key[160], *buf;
	struct json_writer jw;
	size_t len, cap = 1024 + 6 * hb->metrics_len; /* escaping can grow */
	unsigned long long ttl =
		(unsigned long long)(3 * cfg->heartbeat_interval_ms / 1000);

	if (!redis_connected(w->redis))
		return;
	buf = util_malloc(cap);
	json_w_init(&jw, buf, cap);
	json_w_obj_begin(&jw);
	json_w_key(&jw, "orchestratorId");
	json_w_str(&jw, hb->orch);
	json_w_key(&jw, "daemonId");
	json_w_str(&jw, hb->daemon);
	json_w_key(&jw, "organizationId");
	json_w_str(&jw, hb->org);
	if (hb->session_id != NULL) {
		json_w_key(&jw, "sessionId");
		json_w_str(&jw, hb->session_id);
	}
	if (hb->connection_id != NULL) {
		json_w_key(&jw, "connectionId");
		json_w_str(&jw, hb->connection_id);
	}
	json_w_key(&jw, "status");
	json_w_str(&jw, hb->status);
	json_w_key(&jw, "metrics");
	if (hb->metrics_raw != NULL)
		json_w_raw(&jw, hb->metrics_raw, hb->metrics_len);
	else
		json_w_null(&jw);
	json_w_key(&jw, "timestamp");
	json_w_timestamp(&jw, util_wall_ms());
	json_w_obj_end(&jw);
	if (json_w_finish(&jw, &len) == -1) {
		log_warnx("%s: heartbeat record of %s too large", __func__,
			  hb->orch);
		free(buf);
		return;
	}
	snprintf(key, sizeof(key), "daemon:heartbeat:%s", hb->orch);
	redis_command(w->redis, NULL, NULL, "SET %s %b EX %llu", key, buf, len,
		      ttl ? ttl : 1);
	snprintf(key, sizeof(key), "daemon:metrics:%s", hb->orch);
	redis_command(w->redis, NULL, NULL, "LPUSH %s %b", key, buf, len);
	redis_command(w->redis, NULL, NULL, "LTRIM %s 0 99", key);
	redis_command(w->redis, NULL, NULL, "EXPIRE %s 86400", key);
	snprintf(key, sizeof(key), "daemon:heartbeats:%s", hb->org);
	redis_command(w->redis, NULL, NULL, "PUBLISH %s %b", key, buf, len);
	free(buf);
}

void
proto_handle_heartbeat(struct conn *c, const struct json_doc *d, int payload)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct proto_conn *p = c->proto;
	char status[16], buf[512];
	const char *field;
	struct json_writer jw;
	struct auth_hb hb;
	uint64_t now = proto_now(c), wall = util_wall_ms();
	int m;

	if (auth_heartbeat_validate(d, payload, status, sizeof(status),
				    &field) != 0) {
		proto_send_error(c, "INVALID_MESSAGE",
				 "status must be active, idle or busy; metrics "
				 "must be numbers",
				 field);
		return;
	}
	p->last_hb_ms = now;
	p->hb_deadline_ms = now + 3 * cfg->heartbeat_interval_ms;
	if (p->has_slot)
		registry_touch(w->registry, p->slot, p->conn_id, wall);
	memset(&hb, 0, sizeof(hb));
	hb.orch = p->orch;
	hb.daemon = p->daemon;
	hb.org = p->org;
	hb.session_id = p->session_id;
	hb.connection_id = p->connection_id;
	hb.status = status;
	m = json_obj_get(d, payload, "metrics");
	if (m >= 0)
		json_tok_raw(d, m, &hb.metrics_raw, &hb.metrics_len);
	auth_heartbeat_record(w, &hb);
	if (redis_connected(w->redis)) {
		char key[128];

		char seen[32];

		snprintf(key, sizeof(key), "ws:connection:%s",
			 p->connection_id);
		util_iso8601_ms(wall, seen, sizeof(seen));
		redis_command(w->redis, NULL, NULL, "HSET %s lastSeen %s", key,
			      seen);
		redis_command(w->redis, NULL, NULL, "EXPIRE %s %llu", key,
			      (unsigned long long)session_ttl_s(cfg));
		snprintf(key, sizeof(key), "ws:vp:%s:connections", p->orch);
		redis_command(w->redis, NULL, NULL, "EXPIRE %s %llu", key,
			      (unsigned long long)session_ttl_s(cfg));
	}
	atomic_fetch_add(&w->stats->heartbeats, 1);
	proto_msg_begin(&jw, buf, sizeof(buf), "heartbeat_ack");
	json_w_key(&jw, "serverTime");
	json_w_timestamp(&jw, wall);
	json_w_key(&jw, "nextHeartbeat");
	json_w_timestamp(&jw, wall + cfg->heartbeat_interval_ms);
	proto_msg_send(c, &jw);
	conn_set_state(c, c->state); /* re-arm the deadline timer */
}

static void
ack_reply(struct queue *q, int status, uint64_t n, void *arg)
{
	struct shm_worker *sw = arg; /* in shared memory: outlives the conn */

	(void)q;
	if (status == QUEUE_OK)
		atomic_fetch_add_explicit(&sw->events_acked, n,
					  memory_order_relaxed);
	if (status != QUEUE_OK)
		log_warnx("auth: acknowledgement lost: Redis unavailable");
	else
		log_debug("auth: %llu queued events acknowledged",
			  (unsigned long long)n);
}

void
proto_ack_events(struct conn *c, const struct json_doc *d, int ids)
{
	struct proto_conn *p = c->proto;
	int n = json_array_len(d, ids);
	char(*buf)[QUEUE_ID_MAX + 2];
	const char **argv;
	int k = 0;

	/*
	 * Unknown ids are no error: at-least-once delivery makes duplicate
	 * acks normal.  Ids too long to be queued are left out.
	 */
	if (n <= 0 || c->w->queue == NULL)
		return;
	buf = util_calloc((size_t)n, sizeof(*buf));
	argv = util_calloc((size_t)n, sizeof(*argv));
	for (int t = json_first(d, ids); t >= 0 && k < n; t = json_next(d, t)) {
		size_t len;

		if (json_get_string(d, t, buf[k], sizeof(buf[k]), &len) == 0 &&
		    len <= QUEUE_ID_MAX) {
			argv[k] = buf[k];
			k++;
		}
	}
	if (k > 0 && queue_ack(c->w->queue, p->orch, argv, (size_t)k, ack_reply,
			       c->w->stats) != 0)
		log_warnx("auth: %s: acknowledgement of %d events lost: Redis "
			  "unavailable",
			  p->orch, k);
	free(argv);
	free(buf);
}
