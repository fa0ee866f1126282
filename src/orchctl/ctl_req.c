/*
 * ctl_req: admin socket requests, event records and token claims built from
 * orchctl's arguments.  Pure code (json_uuid_v4() reads getrandom(2)).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/util.h"

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Finish w into out as a NUL-terminated string; length or -1. */
static int
finish(struct json_writer *w, char *out, size_t cap)
{
	size_t len;

	if (json_w_finish(w, &len) != 0 || len >= cap)
		return -1;
	out[len] = '\0';
	return (int)len;
}

static void
w_opt_str(struct json_writer *w, const char *key, const char *v)
{
	if (v != NULL && v[0] != '\0') {
		json_w_key(w, key);
		json_w_str(w, v);
	}
}

int
ctl_req_simple(char *out, size_t cap, const char *cmd)
{
	struct json_writer w;

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "cmd", cmd);
	json_w_obj_end(&w);
	return finish(&w, out, cap);
}

int
ctl_req_connections(char *out, size_t cap, const char *orch, const char *org,
		    long worker, unsigned long limit)
{
	struct json_writer w;

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "cmd", "connections");
	w_opt_str(&w, "orchestrator", orch);
	w_opt_str(&w, "organization", org);
	if (worker >= 0) {
		json_w_key(&w, "worker");
		json_w_int(&w, worker);
	}
	if (limit > 0) {
		json_w_key(&w, "limit");
		json_w_uint(&w, limit);
	}
	json_w_obj_end(&w);
	return finish(&w, out, cap);
}

/* "W:ID" with both parts decimal. */
static int
conn_id_valid(const char *s)
{
	const char *colon = strchr(s, ':');
	size_t n;

	if (colon == NULL || colon == s || colon[1] == '\0')
		return 0;
	n = strspn(s, "0123456789");
	if (s + n != colon)
		return 0;
	return strspn(colon + 1, "0123456789") == strlen(colon + 1);
}

int
ctl_req_kick(char *out, size_t cap, const char *orch, const char *daemon,
	     const char *conn, const char *reason, char *err, size_t errlen)
{
	struct json_writer w;
	int n;

	if ((orch == NULL || orch[0] == '\0') &&
	    (conn == NULL || conn[0] == '\0')) {
		seterr(err, errlen, "needs -o ORCH or -i CONN_ID");
		return -1;
	}
	if (daemon != NULL && daemon[0] != '\0' &&
	    (orch == NULL || orch[0] == '\0')) {
		seterr(err, errlen, "-d DAEMON needs -o ORCH");
		return -1;
	}
	if (conn != NULL && conn[0] != '\0' && !conn_id_valid(conn)) {
		seterr(err, errlen,
		       "a connection id is WORKER:ID, as \"connections\" "
		       "prints it");
		return -1;
	}
	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "cmd", "kick");
	w_opt_str(&w, "orchestrator", orch);
	w_opt_str(&w, "daemon", daemon);
	w_opt_str(&w, "connection", conn);
	w_opt_str(&w, "reason", reason);
	json_w_obj_end(&w);
	if ((n = finish(&w, out, cap)) < 0)
		seterr(err, errlen, "arguments too long");
	return n;
}

int
ctl_req_revoke(char *out, size_t cap, const char *jti, uint64_t ttl, char *err,
	       size_t errlen)
{
	struct json_writer w;
	int n;

	if (jti == NULL || jti[0] == '\0') {
		seterr(err, errlen, "revoke needs a token id (jti)");
		return -1;
	}
	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "cmd", "revoke");
	w_opt_str(&w, "jti", jti);
	if (ttl > 0) {
		json_w_key(&w, "ttl");
		json_w_uint(&w, ttl);
	}
	json_w_obj_end(&w);
	if ((n = finish(&w, out, cap)) < 0)
		seterr(err, errlen, "jti too long");
	return n;
}

static const char *const log_levels[] = {"error", "warn",  "notice",
					 "info",  "debug", NULL};

int
ctl_req_loglevel(char *out, size_t cap, const char *level, char *err,
		 size_t errlen)
{
	struct json_writer w;
	int known = 0;

	if (level != NULL) {
		for (size_t i = 0; log_levels[i] != NULL; i++)
			if (strcmp(level, log_levels[i]) == 0)
				known = 1;
		if (!known) {
			seterr(err, errlen,
			       "unknown level \"%.32s\" (error, warn, notice, "
			       "info, debug)",
			       level);
			return -1;
		}
	}
	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "cmd", "loglevel");
	w_opt_str(&w, "level", level);
	json_w_obj_end(&w);
	return finish(&w, out, cap);
}

int
ctl_req_drain(char *out, size_t cap, long worker)
{
	struct json_writer w;

	if (worker < 0)
		return -1;
	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "cmd", "drain");
	json_w_key(&w, "worker");
	json_w_int(&w, worker);
	json_w_obj_end(&w);
	return finish(&w, out, cap);
}

int
ctl_reply_ok(const char *buf, size_t len, char *err, size_t errlen)
{
	struct json_limits lim = {.max_size = CTL_ADMIN_REPLY_MAX,
				  .max_tokens = 4u * 1024 * 1024,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	bool ok;
	int rc;

	if ((rc = json_parse(&d, buf, len, &lim)) != 0) {
		seterr(err, errlen, "reply is not a JSON object: %s",
		       json_strerror(rc));
		return -1;
	}
	if (json_get_bool(&d, json_obj_get(&d, 0, "ok"), &ok) != 0) {
		seterr(err, errlen, "reply has no boolean \"ok\"");
		json_doc_free(&d);
		return -1;
	}
	if (!ok) {
		char msg[512];

		if (json_get_string(&d, json_obj_get(&d, 0, "error"), msg,
				    sizeof(msg), NULL) != 0 &&
		    msg[0] == '\0')
			util_strlcpy(msg, "(no reason given)", sizeof(msg));
		seterr(err, errlen, "%s", msg);
	}
	json_doc_free(&d);
	return ok ? 1 : 0;
}

/* ---- event records ----------------------------------------------------- */

int
ctl_event_record(const struct ctl_event_args *a, char *out, size_t cap,
		 char id_out[EVENT_ID_MAX], char *err, size_t errlen)
{
	struct json_limits lim = {.max_size = EVENT_DEFAULT_MAX_SIZE,
				  .max_tokens = 65536,
				  .max_depth = EVENT_MAX_DEPTH - 1,
				  .flags = JSON_REQUIRE_OBJECT};
	char uuid[37], pe[160];
	struct json_writer w;
	struct json_doc d;
	struct event ev;
	const char *id = a->id;
	int n, rc;

	if (a->type == NULL || a->type[0] == '\0') {
		seterr(err, errlen, "an event needs a type (-t TYPE)");
		return -1;
	}
	if (a->data != NULL &&
	    (rc = json_parse(&d, a->data, strlen(a->data), &lim)) != 0) {
		seterr(err, errlen, "data is not a JSON object: %s at byte %zu",
		       json_strerror(rc), d.err_off);
		return -1;
	}
	if (a->data != NULL)
		json_doc_free(&d);
	if (id == NULL) {
		if (json_uuid_v4(uuid) != 0) {
			seterr(err, errlen, "no randomness for an event id");
			return -1;
		}
		id = uuid;
	}
	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	json_w_key(&w, "id");
	json_w_str(&w, id);
	json_w_key(&w, "type");
	json_w_str(&w, a->type);
	json_w_key(&w, "orchestratorId");
	json_w_str(&w, a->orch != NULL ? a->orch : "");
	json_w_key(&w, "daemonId");
	json_w_str(&w, a->daemon != NULL ? a->daemon : "");
	w_opt_str(&w, "organizationId", a->org);
	w_opt_str(&w, "workspaceId", a->workspace);
	w_opt_str(&w, "channelId", a->channel);
	json_w_key(&w, "payload");
	if (a->data != NULL)
		json_w_raw(&w, a->data, strlen(a->data));
	else
		json_w_raw(&w, "{}", 2);
	json_w_key(&w, "timestamp");
	if (a->timestamp != NULL)
		json_w_str(&w, a->timestamp);
	else
		json_w_timestamp(&w, a->now_ms);
	json_w_key(&w, "requiresAck");
	json_w_bool(&w, a->requires_ack);
	json_w_key(&w, "priority");
	json_w_int(&w, a->priority);
	json_w_obj_end(&w);
	if ((n = finish(&w, out, cap)) < 0) {
		seterr(err, errlen, "the record is over %zu bytes", cap);
		return -1;
	}
	/* The relay's own rules: what it would skip is refused here. */
	if (event_parse(&ev, out, (size_t)n, cap, pe, sizeof(pe)) != EVENT_OK) {
		seterr(err, errlen, "invalid event record: %s", pe);
		return -1;
	}
	event_free(&ev);
	util_strlcpy(id_out, id, EVENT_ID_MAX);
	return n;
}

/* ---- tokens ------------------------------------------------------------ */

int
ctl_token_claims(const struct ctl_token_args *a, char *out, size_t cap,
		 char *jti_out, size_t jti_cap, char *err, size_t errlen)
{
	char uuid[37];
	struct json_writer w;
	const char *jti = a->jti;
	int n;

	if (a->orch == NULL || a->orch[0] == '\0') {
		seterr(err, errlen, "a token needs an orchestrator (-o ORCH)");
		return -1;
	}
	if (a->ttl == 0) {
		seterr(err, errlen, "the ttl must be at least 1 second");
		return -1;
	}
	if (jti == NULL) {
		if (json_uuid_v4(uuid) != 0) {
			seterr(err, errlen, "no randomness for a jti");
			return -1;
		}
		jti = uuid;
	}
	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	w_opt_str(&w, "sub", a->orch);
	w_opt_str(&w, "orchestratorId", a->orch);
	w_opt_str(&w, "daemonId", a->daemon);
	w_opt_str(&w, "organizationId", a->org);
	w_opt_str(&w, "workspaceId", a->workspace);
	json_w_key(&w, "scopes");
	json_w_arr_begin(&w);
	for (size_t i = 0; i < a->nscopes; i++)
		json_w_str(&w, a->scopes[i]);
	json_w_arr_end(&w);
	json_w_key(&w, "type");
	json_w_str(&w, "access");
	w_opt_str(&w, "jti", jti);
	w_opt_str(&w, "iss", a->iss);
	w_opt_str(&w, "aud", a->aud);
	json_w_key(&w, "iat");
	json_w_int(&w, a->iat);
	json_w_key(&w, "exp");
	json_w_int(&w, a->iat + (int64_t)a->ttl);
	json_w_obj_end(&w);
	if ((n = finish(&w, out, cap)) < 0) {
		seterr(err, errlen, "claims too long");
		return -1;
	}
	if (jti_out != NULL)
		util_strlcpy(jti_out, jti, jti_cap);
	return n;
}

int
ctl_split_list(char *s, const char **v, size_t max)
{
	size_t n = 0;
	char *save = NULL;

	for (char *t = strtok_r(s, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		t += strspn(t, " \t");
		if (t[0] == '\0')
			continue;
		if (n == max)
			return -1;
		v[n++] = t;
	}
	return (int)n;
}

int
ctl_token_peek(const char *token, char *orch, size_t orch_cap, char *daemon,
	       size_t daemon_cap)
{
	const char *p1 = strchr(token, '.'), *p2;
	char buf[8192];
	struct json_doc d;
	int len, o;

	orch[0] = '\0';
	daemon[0] = '\0';
	if (p1 == NULL || (p2 = strchr(p1 + 1, '.')) == NULL ||
	    (size_t)(p2 - p1 - 1) > sizeof(buf) * 4 / 3)
		return -1;
	len =
	    jwt_b64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), buf, sizeof(buf));
	if (len < 0 || json_parse(&d, buf, (size_t)len, NULL) != 0)
		return -1;
	o = json_obj_get(&d, 0, "orchestratorId");
	if (o < 0)
		o = json_obj_get(&d, 0, "sub");
	json_get_string(&d, o, orch, orch_cap, NULL);
	json_get_string(&d, json_obj_get(&d, 0, "daemonId"), daemon, daemon_cap,
			NULL);
	json_doc_free(&d);
	return orch[0] != '\0' ? 0 : -1;
}
