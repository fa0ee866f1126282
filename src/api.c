/*
 * api: Bearer-token HTTP endpoints.
 *
 * A request is authenticated like a WebSocket auth, minus the quota: the
 * JWT first, then (asynchronously) the revoked-jti set in Redis, under the
 * same revocation_check policy, then (asynchronously, when a database is
 * configured) the token's orchestrator in the directory, as WebSocket auth
 * does: unknown or not active is 403 ORCHESTRATOR_DISABLED, no answer 503
 * UNAVAILABLE, and the organization comes from the directory, not the
 * token.  Then the endpoint's own step runs, which may itself wait for
 * Redis (the events endpoints call the durable queue).
 *
 * Every asynchronous step follows one rule: before the call, c->refs++ and
 * CONN_HTTP_WAIT (the connection is not freed, and its timer bounds the
 * wait); in the callback, c->refs-- and answer only if the connection is
 * still in CONN_HTTP_WAIT (the client may have gone, or the timer fired).
 * The struct api_call belongs to whichever step is pending.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "orchd/api.h"
#include "orchd/auth.h"
#include "orchd/authlimit.h"
#include "orchd/conn.h"
#include "orchd/credentials.h"
#include "orchd/directory.h"
#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/log.h"
#include "orchd/queue.h"
#include "orchd/redis.h"
#include "orchd/util.h"
#include "orchd/worker.h"

#define API_TOKEN_MAX 8192

#define API_PATH_HEARTBEAT "/api/daemon/heartbeat"
#define API_PATH_EVENTS "/api/daemon/events"
#define API_PATH_AUTH "/api/daemon/auth"
#define API_PATH_REFRESH "/api/daemon/auth/refresh"

#define API_EVENTS_LIMIT_DEFAULT 100
/*
 * Queue reads one GET may make when the token's filters (daemon, scopes)
 * leave out events of a page: the first reads limit events, the others
 * QUEUE_BATCH_MAX each, so a daemon is not starved by a queue head of
 * events meant for its siblings.
 */
#define API_EVENTS_ROUNDS 8
/* Room reserved before the events body for the response head. */
#define API_HEAD_ROOM 256

enum api_endpoint {
	API_HEARTBEAT = 0,
	API_EVENTS_GET,
	API_EVENTS_DELETE,
};

/* One id of DELETE's eventIds, NUL-terminated. */
typedef char event_id[QUEUE_ID_MAX + 1];

/* What a step did with the request. */
enum {
	API_ANSWERED = 0, /* a response is queued; the caller frees the call */
	API_PENDING,      /* a callback owns the call and will answer */
};

struct api_call {
	struct conn *c;
	enum api_endpoint ep;
	int keep_alive;
	struct jwt_claims cl;
	int have_dir;             /* e is the directory's answer */
	struct directory_entry e; /* the orchestrator's, when have_dir */
	uint8_t *body; /* a copy: the request buffer is gone by the reply */
	size_t body_len;

	/* GET /api/daemon/events */
	char bad_query[96]; /* why the query was refused, "" if it was not */
	unsigned limit;     /* events to answer at most */
	int by_time;        /* since= given: timestamp order, else seq order */
	/*
	 * Where the next queue read starts: after_seq in seq order; in time
	 * order since_ms, skipping the ids up to last_id that carry exactly
	 * since_ms (already read: the time index orders equal times by id).
	 */
	uint64_t after_seq;
	uint64_t since_ms;
	char last_id[QUEUE_ID_MAX + 1];
	size_t last_id_len;
	unsigned rounds; /* queue reads made */
	unsigned n;      /* events written to out */
	char *out;       /* API_HEAD_ROOM bytes, then {"events":[... */
	size_t out_len, out_cap;
};

int
api_handles(const char *path)
{
	return strcmp(path, API_PATH_HEARTBEAT) == 0 ||
	       strcmp(path, API_PATH_EVENTS) == 0 ||
	       strcmp(path, API_PATH_AUTH) == 0 ||
	       strcmp(path, API_PATH_REFRESH) == 0;
}

/* An error with extra header lines (each ending in CRLF), or NULL. */
static void
send_error_hdr(struct conn *c, int status, const char *code,
	       const char *message, const char *extra)
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
	if (extra == NULL && status == 401)
		extra = "WWW-Authenticate: Bearer\r\n";
	n = http_format_response(resp, sizeof(resp), status, "application/json",
				 extra, body, blen, 0, 0);
	if (n < 0) {
		conn_send_error(c, status, extra);
		return;
	}
	conn_send(c, resp, (size_t)n, 0);
}

void
api_send_error(struct conn *c, int status, const char *code,
	       const char *message)
{
	send_error_hdr(c, status, code, message, NULL);
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
	/* As on the WebSocket: the directory's organization, if asked. */
	hb.org = a->have_dir ? a->e.org : a->cl.organization_id;
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
	free(a->out);
	free(a);
}

/* An asynchronous step is about to start: hold the connection for it. */
static int
hold(struct conn *c)
{
	c->refs++;
	conn_set_state(c, CONN_HTTP_WAIT);
	return API_PENDING;
}

/*
 * The end of an asynchronous step: release the connection; 1 if it still
 * waits for our answer (0: closed meanwhile, the answer has no one to go to).
 */
static int
release(struct conn *c)
{
	c->refs--;
	return c->state == CONN_HTTP_WAIT;
}

/* ---- GET /api/daemon/events -------------------------------------------- */

/*
 * Parse the query while the request is at hand; a refusal is answered only
 * after the token checks, as every endpoint answers 401 before 400.
 */
static void
events_query(struct api_call *a, const struct http_request *req)
{
	char v[64];
	uint64_t u;
	int n;

	a->limit = API_EVENTS_LIMIT_DEFAULT;
	n = http_query_param(req, "limit", v, sizeof(v));
	if (n != -2) {
		if (n < 0 || util_parse_u64(v, 1, QUEUE_BATCH_MAX, &u) != 0) {
			snprintf(a->bad_query, sizeof(a->bad_query),
				 "limit must be an integer in 1..%d",
				 QUEUE_BATCH_MAX);
			return;
		}
		a->limit = (unsigned)u;
	}
	n = http_query_param(req, "since", v, sizeof(v));
	if (n != -2) {
		/* An unencoded '+' of an offset arrives as a space: allowed. */
		if (n < 0 || json_parse_iso8601_ms(v, &a->since_ms) != 0) {
			snprintf(a->bad_query, sizeof(a->bad_query),
				 "since must be an ISO 8601 (RFC 3339) time");
			return;
		}
		a->by_time = 1;
	}
}

/* Redis orders members of equal score by memcmp, the shorter first. */
static int
id_cmp(const char *x, size_t xlen, const char *y, size_t ylen)
{
	int r = memcmp(x, y, xlen < ylen ? xlen : ylen);

	return r != 0 ? r : (xlen > ylen) - (xlen < ylen);
}

/*
 * May the token see ev?  Section 6's rules for a connection: a daemonId
 * event only reaches that daemon (a token without daemonId is the whole
 * orchestrator's), and a type whose family needs a scope only a token with
 * that scope.
 */
static int
events_visible(const struct api_call *a, const struct event *ev)
{
	const char *scope = event_scope(ev);

	if (a->cl.daemon_id[0] != '\0' &&
	    !event_targets_daemon(ev, a->cl.daemon_id))
		return 0;
	if (scope == NULL)
		return 1;
	for (unsigned i = 0; i < a->cl.nscopes; i++)
		if (strcmp(a->cl.scopes[i], scope) == 0)
			return 1;
	return 0;
}

/* Room for n more bytes in a->out. */
static void
out_room(struct api_call *a, size_t n)
{
	if (a->out_cap - a->out_len >= n)
		return;
	while (a->out_cap - a->out_len < n)
		a->out_cap *= 2;
	a->out = util_realloc(a->out, a->out_cap);
}

static void
out_text(struct api_call *a, const char *s)
{
	size_t n = strlen(s);

	out_room(a, n);
	memcpy(a->out + a->out_len, s, n);
	a->out_len += n;
}

/* Append ev as the next element of the "events" array. */
static void
out_event(struct api_call *a, const struct event *ev, uint64_t seq)
{
	size_t room = event_message_size_hint(ev), sep = a->n > 0, len;
	struct json_writer jw;

	out_room(a, sep + room);
	json_w_init(&jw, a->out + a->out_len + sep, room);
	if (event_payload_write(ev, seq, &jw) != 0 ||
	    json_w_finish(&jw, &len) != 0) {
		/* The size hint is always enough: cannot happen. */
		log_warnx("%s: event %s does not fit its size hint", __func__,
			  ev->id);
		return;
	}
	if (sep)
		a->out[a->out_len] = ',';
	a->out_len += sep + len;
	a->n++;
}

/*
 * A stored body that does not parse (written by another version, or by
 * hand) is left out.  Warn once per worker: a poller would repeat it.
 */
static void
events_bad_body(const struct api_call *a, const struct queue_item *it,
		const char *err)
{
	static int warned;

	if (!warned) {
		warned = 1;
		log_warnx("api: queued event %.*s of %s does not parse (%s): "
			  "left out of GET %s; further ones are logged at "
			  "debug level",
			  (int)it->id_len, it->id, a->cl.orchestrator, err,
			  API_PATH_EVENTS);
		return;
	}
	log_debug("api: queued event %.*s of %s does not parse (%s)",
		  (int)it->id_len, it->id, a->cl.orchestrator, err);
}

/*
 * Take one page: the visible events go to a->out (up to a->limit) and the
 * cursor moves past the page.  1 if another page may hold more to answer.
 */
static int
events_take(struct api_call *a, const struct queue_fetch_result *res)
{
	const struct config *cfg = a->c->w->cfg;
	int moved = 0;

	for (size_t i = 0; i < res->n && a->n < a->limit; i++) {
		const struct queue_item *it = &res->items[i];
		struct event ev;
		char err[128];

		if (event_parse_queue_body(&ev, it->body, it->body_len,
					   (size_t)cfg->max_event_size, err,
					   sizeof(err)) != EVENT_OK) {
			/* Only in seq order can the cursor pass it unread. */
			if (!a->by_time) {
				a->after_seq = it->seq;
				moved = 1;
			}
			events_bad_body(a, it, err);
			continue;
		}
		if (a->by_time) {
			/* A later page repeats the events of its first time. */
			if (ev.ts_ms < a->since_ms ||
			    (ev.ts_ms == a->since_ms && a->last_id_len > 0 &&
			     id_cmp(it->id, it->id_len, a->last_id,
				    a->last_id_len) <= 0)) {
				event_free(&ev);
				continue;
			}
			if (it->id_len < sizeof(a->last_id)) {
				a->since_ms = ev.ts_ms;
				memcpy(a->last_id, it->id, it->id_len);
				a->last_id[it->id_len] = '\0';
				a->last_id_len = it->id_len;
				moved = 1;
			}
		} else {
			a->after_seq = it->seq;
			moved = 1;
		}
		if (events_visible(a, &ev))
			out_event(a, &ev, it->seq);
		event_free(&ev);
	}
	/* total counts every event from the cursor on, this page included. */
	return moved && a->n < a->limit && res->total > res->n &&
	       a->rounds < API_EVENTS_ROUNDS;
}

static void
events_answer(struct api_call *a)
{
	char head[API_HEAD_ROOM];
	size_t blen;
	int hlen;

	out_text(a, "]}");
	blen = a->out_len - API_HEAD_ROOM;
	hlen = http_format_response(head, sizeof(head), 200, "application/json",
				    NULL, NULL, blen, a->keep_alive, 1);
	if (hlen < 0) {
		api_send_error(a->c, 500, "INTERNAL_ERROR",
			       "response too large");
		return;
	}
	/* The head goes right before the body: one buffer, one copy. */
	memcpy(a->out + API_HEAD_ROOM - hlen, head, (size_t)hlen);
	conn_send(a->c, a->out + API_HEAD_ROOM - hlen, (size_t)hlen + blen,
		  a->keep_alive);
}

static void events_fetched(struct queue *q, int status,
			   const struct queue_fetch_result *res, void *arg);

/* Read the next page of the queue (the first: a->limit events); 0 or -1. */
static int
events_fetch(struct api_call *a)
{
	struct worker *w = a->c->w;
	unsigned n = a->rounds == 0 ? a->limit : QUEUE_BATCH_MAX;
	int rc;

	if (a->by_time)
		rc = queue_fetch_since(w->queue, a->cl.orchestrator,
				       a->since_ms, n, events_fetched, a);
	else
		rc = queue_fetch(w->queue, a->cl.orchestrator, a->after_seq, n,
				 events_fetched, a);
	if (rc != 0)
		return -1;
	a->rounds++;
	hold(a->c);
	return 0;
}

static void
events_fetched(struct queue *q, int status,
	       const struct queue_fetch_result *res, void *arg)
{
	struct api_call *a = arg;
	struct conn *c = a->c;

	if (!release(c)) {
		call_free(a);
		return;
	}
	if (status != QUEUE_OK && a->rounds == 1) {
		/* An error reply (LOADING, OOM...) is as transient as none. */
		api_send_error(c, 503, "UNAVAILABLE",
			       "the event queue is unavailable");
	} else if (status == QUEUE_OK && events_take(a, res) &&
		   events_fetch(a) == 0) {
		return;
	} else {
		/*
		 * Done, or a later page failed: what the first pages gave is
		 * a valid answer (a page may always hold fewer than limit).
		 */
		events_answer(a);
	}
	conn_response_ready(c);
	call_free(a);
}

static int
events_get(struct api_call *a)
{
	if (a->bad_query[0] != '\0') {
		api_send_error(a->c, 400, "INVALID_MESSAGE", a->bad_query);
		return API_ANSWERED;
	}
	a->out_cap = API_HEAD_ROOM + 4096;
	a->out = util_malloc(a->out_cap);
	a->out_len = API_HEAD_ROOM;
	out_text(a, "{\"events\":[");
	if (events_fetch(a) != 0) {
		api_send_error(a->c, 503, "UNAVAILABLE",
			       "the event queue is unavailable");
		return API_ANSWERED;
	}
	return API_PENDING;
}

/* ---- DELETE /api/daemon/events ----------------------------------------- */

static void
events_acked(struct queue *q, int status, uint64_t n, void *arg)
{
	struct api_call *a = arg;
	struct conn *c = a->c;
	struct json_writer jw;
	char out[128];
	size_t len;

	if (status == QUEUE_OK)
		atomic_fetch_add_explicit(&c->w->stats->events_acked, n,
					  memory_order_relaxed);
	if (!release(c)) {
		call_free(a);
		return;
	}
	if (status != QUEUE_OK) {
		api_send_error(c, 503, "UNAVAILABLE",
			       "the event queue is unavailable");
	} else {
		json_w_init(&jw, out, sizeof(out));
		json_w_obj_begin(&jw);
		json_w_key(&jw, "success");
		json_w_bool(&jw, true);
		json_w_key(&jw, "acknowledged");
		json_w_uint(&jw, n);
		json_w_obj_end(&jw);
		if (json_w_finish(&jw, &len) == 0)
			send_json(c, a->keep_alive, out, len);
		else
			api_send_error(c, 500, "INTERNAL_ERROR",
				       "response too large");
	}
	conn_response_ready(c);
	call_free(a);
}

/*
 * Check the body {"eventIds": [...]} and copy the ids to a new array of n
 * strings (free it); NULL with a 400 answered.  Entries are event ids (1..
 * QUEUE_ID_MAX bytes, as a record's id): anything else cannot have been
 * queued, so it is the client's mistake rather than an unknown id.
 */
static event_id *
ack_ids(struct api_call *a, const struct json_doc *d, size_t *n)
{
	int arr = json_obj_get(d, json_root(d), "eventIds"), len, i = 0;
	event_id *ids;
	char msg[128];
	size_t slen;

	if (json_type(d, arr) != JSON_ARRAY) {
		api_send_error(a->c, 400, "INVALID_MESSAGE",
			       arr < 0 ? "eventIds is missing"
				       : "eventIds must be an array");
		return NULL;
	}
	len = json_array_len(d, arr);
	if (len < 1) {
		api_send_error(a->c, 400, "INVALID_MESSAGE",
			       "eventIds must not be empty");
		return NULL;
	}
	if (len > QUEUE_BATCH_MAX) {
		snprintf(msg, sizeof(msg), "eventIds has more than %d entries",
			 QUEUE_BATCH_MAX);
		api_send_error(a->c, 400, "LIMIT_EXCEEDED", msg);
		return NULL;
	}
	ids = util_calloc((size_t)len, sizeof(*ids));
	for (int t = json_first(d, arr); t >= 0; t = json_next(d, t), i++) {
		if (json_type(d, t) == JSON_STRING &&
		    json_get_string(d, t, ids[i], sizeof(ids[i]), &slen) == 0 &&
		    slen >= 1)
			continue;
		snprintf(msg, sizeof(msg),
			 "eventIds[%d] must be an event id (a string of "
			 "1..%d bytes)",
			 i, QUEUE_ID_MAX);
		api_send_error(a->c, 400, "INVALID_MESSAGE", msg);
		free(ids);
		return NULL;
	}
	*n = (size_t)len;
	return ids;
}

static int
events_delete(struct api_call *a)
{
	struct json_limits lim = {
	    .max_tokens = 4096, .max_depth = 8, .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	event_id *ids;
	const char **idv;
	size_t n = 0;
	int rc;

	if ((rc = json_parse(&d, (const char *)a->body, a->body_len, &lim)) !=
	    0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "the body must be a JSON object: %s",
			 json_strerror(rc));
		api_send_error(a->c, 400, "INVALID_MESSAGE", msg);
		return API_ANSWERED;
	}
	ids = ack_ids(a, &d, &n);
	json_doc_free(&d);
	if (ids == NULL)
		return API_ANSWERED;
	idv = util_calloc(n, sizeof(*idv));
	for (size_t i = 0; i < n; i++)
		idv[i] = ids[i];
	/* queue_ack() copies the ids into its request. */
	rc = queue_ack(a->c->w->queue, a->cl.orchestrator, idv, n, events_acked,
		       a);
	free(idv);
	free(ids);
	if (rc != 0) {
		api_send_error(a->c, 503, "UNAVAILABLE",
			       "the event queue is unavailable");
		return API_ANSWERED;
	}
	return hold(a->c);
}

/* ---- authentication ---------------------------------------------------- */

/* The token and its orchestrator are accepted: the endpoint's own step. */
static int
endpoint_step(struct api_call *a)
{
	switch (a->ep) {
	case API_EVENTS_GET:
		return events_get(a);
	case API_EVENTS_DELETE:
		return events_delete(a);
	case API_HEARTBEAT:
		break;
	}
	heartbeat_finish(a);
	return API_ANSWERED;
}

static void
directory_answer(enum directory_status st, const struct directory_entry *e,
		 void *arg)
{
	struct api_call *a = arg;
	struct conn *c = a->c;

	if (!release(c)) {
		call_free(a);
		return;
	}
	switch (st) {
	case DIR_OK:
		a->e = *e;
		a->have_dir = 1;
		if (endpoint_step(a) == API_PENDING)
			return;
		break;
	case DIR_UNKNOWN:
	case DIR_DISABLED:
		api_send_error(c, 403, "ORCHESTRATOR_DISABLED",
			       st == DIR_UNKNOWN
				   ? "unknown orchestrator"
				   : "the orchestrator or its user is not "
				     "active");
		break;
	case DIR_UNAVAILABLE:
		api_send_error(c, 503, "UNAVAILABLE",
			       "the directory is unavailable");
		break;
	}
	conn_response_ready(c);
	call_free(a);
}

/*
 * The token is accepted (JWT, revocation): look its orchestrator up in the
 * directory when one is configured (the answer always comes later), else
 * go on to the endpoint's step.
 */
static int
authorized(struct api_call *a)
{
	struct worker *w = a->c->w;

	if (w->dir == NULL)
		return endpoint_step(a);
	hold(a->c);
	directory_lookup(w->dir, a->cl.orchestrator, directory_answer, a);
	return API_PENDING;
}

static void
revocation_reply(struct redis *r, redisReply *rep, void *arg)
{
	struct api_call *a = arg;
	struct conn *c = a->c;

	if (!release(c)) {
		call_free(a);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
		if (c->w->cfg->revocation_check !=
		    CONFIG_REVOCATION_BEST_EFFORT) {
			api_send_error(c, 503, "UNAVAILABLE",
				       "token revocation check unavailable");
			goto answered;
		}
	} else if (rep->integer == 1) {
		api_send_error(c, 401, "TOKEN_REVOKED",
			       "the token has been revoked");
		goto answered;
	}
	if (authorized(a) == API_PENDING)
		return;
answered:
	conn_response_ready(c);
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

/*
 * What the events endpoints ask of a token beyond the JWT: the scopes
 * required to connect (reading the queue is receiving events), and an
 * orchestrator id the queue can name.  0, or -1 with the answer sent.
 */
static int
events_token_ok(struct api_call *a)
{
	const struct config *cfg = a->c->w->cfg;

	for (size_t i = 0; i < cfg->nrequired_scopes; i++) {
		unsigned k;

		for (k = 0; k < a->cl.nscopes; k++)
			if (strcmp(a->cl.scopes[k], cfg->required_scopes[i]) ==
			    0)
				break;
		if (k == a->cl.nscopes) {
			char msg[128];

			snprintf(msg, sizeof(msg), "the token lacks scope %s",
				 cfg->required_scopes[i]);
			api_send_error(a->c, 403, "INSUFFICIENT_SCOPE", msg);
			return -1;
		}
	}
	/* As on the WebSocket, whose auth refuses longer ids. */
	if (strlen(a->cl.orchestrator) > QUEUE_ORCH_MAX) {
		api_send_error(a->c, 401, "AUTH_FAILED",
			       "the token's orchestrator id is too long");
		return -1;
	}
	return 0;
}

static void
api_request(struct conn *c, const struct http_request *req,
	    enum api_endpoint ep)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct jwt_policy pol;
	struct api_call *a;
	char token[API_TOKEN_MAX + 1], err[256];
	int rc;

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
	a->ep = ep;
	a->keep_alive = req->keep_alive;
	if (ep != API_HEARTBEAT && events_token_ok(a) != 0) {
		call_free(a);
		return;
	}
	if (ep == API_EVENTS_GET)
		events_query(a, req);
	a->body = util_malloc(req->body_len ? req->body_len : 1);
	if (req->body_len > 0) /* a request without one has body NULL */
		memcpy(a->body, req->body, req->body_len);
	a->body_len = req->body_len;
	if (a->cl.jti[0] != '\0' &&
	    cfg->revocation_check != CONFIG_REVOCATION_OFF) {
		if (redis_command(w->redis, revocation_reply, a,
				  "SISMEMBER daemon:tokens:revoked %s",
				  a->cl.jti) == 0) {
			/* The answer comes later: hold the connection. */
			hold(c);
			return;
		}
		if (cfg->revocation_check != CONFIG_REVOCATION_BEST_EFFORT) {
			api_send_error(c, 503, "UNAVAILABLE",
				       "token revocation check unavailable");
			call_free(a);
			return;
		}
	}
	if (authorized(a) == API_ANSWERED)
		call_free(a);
}

/* ---- POST /api/daemon/auth and /api/daemon/auth/refresh ----------------- */

/*
 * Token issuance.  auth: body {apiKey, apiSecret} -> the credential row
 * (cred_lookup) -> secret check -> the directory (the vps must exist and be
 * ACTIVE, as on the WebSocket) -> tokens; the refresh token's id is stored
 * in Redis (API_REFRESH_PREFIX jti = "sessionId apiKey", expiring with the
 * token) before the answer.  refresh: body {refreshToken} -> JWT check
 * (type refresh) -> GET of its key (gone: TOKEN_REVOKED) -> the credential
 * and the directory again -> DEL of its key, which must remove it (else a
 * concurrent refresh spent it: TOKEN_REVOKED) -> new tokens, as for auth.
 * Each asynchronous step holds the connection as the Bearer endpoints do.
 *
 * The secret check (PBKDF2) runs on the worker's key-derivation pool
 * (cred_verify_start()); a connection closed meanwhile cancels it through
 * c->cancel.  A full pool queue is 503 UNAVAILABLE with Retry-After: 1.
 *
 * Failed attempts (authlimit.h, auth_failure_limit): an attempt is charged
 * to its client address (and API key) before any work, refused with 429
 * RATE_LIMITED and Retry-After when either is closed, and refunded when it
 * ends in anything but a refused credential or token (tokens issued, 403,
 * 503, 500).  A client that goes away before the answer keeps its charge.
 */
#define API_REFRESH_PREFIX "daemon:refresh:"
#define API_ISSUED_MAX 2048 /* bytes of an issued token */

/* Scopes of an issued access token, with required_scopes added. */
static const char *const api_default_scopes[] = {
    "messages:read", "channels:read", "presence:read", "vp:status",
    "calls:join"};

struct tok_call {
	struct conn *c;
	int keep_alive;
	int refresh; /* the refresh endpoint */
	char key[CRED_KEY_MAX + 1];
	char secret[CRED_SECRET_MAX + 1];
	char vp[CRED_VP_MAX];
	char sid[37];
	char old_jti[JWT_ID_SIZE]; /* refresh: the token being spent */
	char jti[37];              /* the new refresh token's id */
	struct directory_entry e;
	char access[API_ISSUED_MAX], rtok[API_ISSUED_MAX];
	uint64_t access_exp_ms, refresh_exp_ms;
	struct cred_check *kdf; /* the secret check under way */
	int row_ok;             /* the row is active and not expired */
	struct authlimit_ticket ticket;
	int answered;     /* a response went out */
	int guess_failed; /* it refused the credential or token */
};

static void
tok_free(struct tok_call *t)
{
	if (t->answered && !t->guess_failed)
		authlimit_refund(&t->c->w->authlimit,
				 t->key[0] != '\0' ? t->key : NULL, &t->c->peer,
				 &t->ticket);
	OPENSSL_cleanse(t->secret, sizeof(t->secret));
	free(t);
}

/* Answered: let the response go, forget the call. */
static void
tok_done(struct tok_call *t)
{
	t->answered = 1;
	conn_response_ready(t->c);
	tok_free(t);
}

static void
tok_auth_failed(struct tok_call *t)
{
	t->guess_failed = 1;
	api_send_error(t->c, 401, "AUTH_FAILED",
		       t->refresh ? "the refresh token is not valid"
				  : "invalid API key or secret");
}

/* 429: the key or the address is closed for wait_ms more. */
static void
tok_limited(struct tok_call *t, uint64_t wait_ms)
{
	char hdr[48], msg[96];
	uint64_t secs = (wait_ms + 999) / 1000;

	atomic_fetch_add(&t->c->w->stats->api_auth_limited, 1);
	snprintf(hdr, sizeof(hdr), "Retry-After: %llu\r\n",
		 (unsigned long long)(secs > 0 ? secs : 1));
	snprintf(msg, sizeof(msg), "too many failed attempts; retry in %llu s",
		 (unsigned long long)(secs > 0 ? secs : 1));
	send_error_hdr(t->c, 429, "RATE_LIMITED", msg, hdr);
}

/* One token's claims and signature into out; 0 or -1. */
static int
tok_sign(struct tok_call *t, int refresh, const char *jti, uint64_t now_s,
	 uint64_t life_ms, char *out, size_t cap)
{
	const struct config *cfg = t->c->w->cfg;
	char claims[2048];
	struct json_writer jw;
	size_t len;

	json_w_init(&jw, claims, sizeof(claims));
	json_w_obj_begin(&jw);
	json_w_key(&jw, "sub");
	json_w_str(&jw, t->vp);
	json_w_key(&jw, "orchestratorId");
	json_w_str(&jw, t->vp);
	if (!refresh && t->e.org[0] != '\0') {
		json_w_key(&jw, "organizationId");
		json_w_str(&jw, t->e.org);
	}
	if (!refresh && t->e.workspace[0] != '\0') {
		json_w_key(&jw, "workspaceId");
		json_w_str(&jw, t->e.workspace);
	}
	if (!refresh) {
		json_w_key(&jw, "scopes");
		json_w_arr_begin(&jw);
		for (size_t i = 0; i < sizeof(api_default_scopes) /
					   sizeof(api_default_scopes[0]);
		     i++)
			json_w_str(&jw, api_default_scopes[i]);
		for (size_t i = 0; i < cfg->nrequired_scopes; i++) {
			size_t k;

			for (k = 0; k < sizeof(api_default_scopes) /
					    sizeof(api_default_scopes[0]);
			     k++)
				if (strcmp(api_default_scopes[k],
					   cfg->required_scopes[i]) == 0)
					break;
			if (k == sizeof(api_default_scopes) /
				     sizeof(api_default_scopes[0]))
				json_w_str(&jw, cfg->required_scopes[i]);
		}
		json_w_arr_end(&jw);
	}
	json_w_key(&jw, "type");
	json_w_str(&jw, refresh ? "refresh" : "access");
	json_w_key(&jw, "sessionId");
	json_w_str(&jw, t->sid);
	json_w_key(&jw, "jti");
	json_w_str(&jw, jti);
	json_w_key(&jw, "iat");
	json_w_uint(&jw, now_s);
	json_w_key(&jw, "exp");
	json_w_uint(&jw, now_s + life_ms / 1000);
	if (cfg->jwt_issuer != NULL) {
		json_w_key(&jw, "iss");
		json_w_str(&jw, cfg->jwt_issuer);
	}
	if (cfg->jwt_audience != NULL) {
		json_w_key(&jw, "aud");
		json_w_str(&jw, cfg->jwt_audience);
	}
	json_w_obj_end(&jw);
	if (json_w_finish(&jw, &len) != 0 || len >= sizeof(claims))
		return -1;
	claims[len] = '\0'; /* json_w_finish() does not terminate */
	return jwt_sign_hs256(cfg->jwt_secret, cfg->jwt_secret_len, claims,
			      out, cap) < 0
		   ? -1
		   : 0;
}

static void
tok_answer(struct tok_call *t)
{
	struct json_writer jw;
	char out[3 * API_ISSUED_MAX];
	size_t len;

	json_w_init(&jw, out, sizeof(out));
	json_w_obj_begin(&jw);
	json_w_key(&jw, "accessToken");
	json_w_str(&jw, t->access);
	json_w_key(&jw, "tokenType");
	json_w_str(&jw, "Bearer");
	json_w_key(&jw, "expiresAt");
	json_w_timestamp(&jw, t->access_exp_ms);
	json_w_key(&jw, "refreshToken");
	json_w_str(&jw, t->rtok);
	json_w_key(&jw, "refreshExpiresAt");
	json_w_timestamp(&jw, t->refresh_exp_ms);
	json_w_key(&jw, "sessionId");
	json_w_str(&jw, t->sid);
	json_w_key(&jw, "orchestratorId");
	json_w_str(&jw, t->vp);
	json_w_obj_end(&jw);
	if (json_w_finish(&jw, &len) != 0) {
		api_send_error(t->c, 500, "INTERNAL_ERROR",
			       "response too large");
		return;
	}
	send_json(t->c, t->keep_alive, out, len);
}

static void
tok_stored(struct redis *r, redisReply *rep, void *arg)
{
	struct tok_call *t = arg;

	(void)r;
	if (!release(t->c)) {
		tok_free(t);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_STATUS)
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the token store (Redis) is unavailable");
	else
		tok_answer(t);
	tok_done(t);
}

/* Sign both tokens and store the refresh token's id; API_* or answered. */
static int
tok_issue(struct tok_call *t)
{
	const struct config *cfg = t->c->w->cfg;
	uint64_t now_ms = util_wall_ms(), now_s = now_ms / 1000;
	char access_jti[37], value[64 + CRED_KEY_MAX];

	json_uuid_v4(access_jti);
	json_uuid_v4(t->jti);
	t->access_exp_ms = (now_s * 1000) + cfg->token_lifetime_ms;
	t->refresh_exp_ms = (now_s * 1000) + cfg->refresh_token_lifetime_ms;
	if (tok_sign(t, 0, access_jti, now_s, cfg->token_lifetime_ms,
		     t->access, sizeof(t->access)) != 0 ||
	    tok_sign(t, 1, t->jti, now_s, cfg->refresh_token_lifetime_ms,
		     t->rtok, sizeof(t->rtok)) != 0) {
		api_send_error(t->c, 500, "INTERNAL_ERROR",
			       "cannot sign the tokens");
		return API_ANSWERED;
	}
	snprintf(value, sizeof(value), "%s %s", t->sid, t->key);
	/* Kept a little longer than the token: leeway. */
	if (redis_command(t->c->w->redis, tok_stored, t,
			  "SET " API_REFRESH_PREFIX "%s %s EX %llu", t->jti,
			  value,
			  (unsigned long long)(cfg->refresh_token_lifetime_ms /
						   1000 +
					       cfg->jwt_leeway_ms / 1000)) != 0) {
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the token store (Redis) is unavailable");
		return API_ANSWERED;
	}
	return hold(t->c);
}

static void
tok_spent(struct redis *r, redisReply *rep, void *arg)
{
	struct tok_call *t = arg;

	(void)r;
	if (!release(t->c)) {
		tok_free(t);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the token store (Redis) is unavailable");
	} else if (rep->integer != 1) {
		/* Another refresh spent it meanwhile. */
		t->guess_failed = 1;
		api_send_error(t->c, 401, "TOKEN_REVOKED",
			       "the refresh token has already been used");
	} else if (tok_issue(t) == API_PENDING) {
		return;
	}
	tok_done(t);
}

static void
tok_directory(enum directory_status st, const struct directory_entry *e,
	      void *arg)
{
	struct tok_call *t = arg;

	if (!release(t->c)) {
		tok_free(t);
		return;
	}
	switch (st) {
	case DIR_OK:
		t->e = *e;
		if (!t->refresh) {
			cred_touch(cred_store(t->c->w), t->key);
			if (tok_issue(t) == API_PENDING)
				return;
			break;
		}
		/* Spend the refresh token: only one refresh may win. */
		if (redis_command(t->c->w->redis, tok_spent, t,
				  "DEL " API_REFRESH_PREFIX "%s",
				  t->old_jti) == 0) {
			hold(t->c);
			return;
		}
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the token store (Redis) is unavailable");
		break;
	case DIR_UNKNOWN:
	case DIR_DISABLED:
		api_send_error(t->c, 403, "ORCHESTRATOR_DISABLED",
			       "the credential's orchestrator is unknown or "
			       "not active");
		break;
	case DIR_UNAVAILABLE:
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the directory database is unavailable");
		break;
	}
	tok_done(t);
}

/* The secret check is done (on the loop again). */
static void
tok_verified(int ok, void *arg)
{
	struct tok_call *t = arg;

	t->kdf = NULL;
	t->c->cancel = NULL;
	conn_update_io(t->c); /* stop watching for the client's EOF */
	if (!release(t->c)) {
		tok_free(t);
		return;
	}
	OPENSSL_cleanse(t->secret, sizeof(t->secret));
	if (!ok || !t->row_ok) {
		tok_auth_failed(t);
		tok_done(t);
		return;
	}
	hold(t->c);
	directory_lookup(t->c->w->dir, t->vp, tok_directory, t);
}

/* The connection closed during the secret check (conn_close()). */
static void
tok_cancel(struct conn *c)
{
	struct tok_call *t = c->cancel_arg;

	cred_verify_cancel(t->kdf);
	t->kdf = NULL;
	c->refs--;
	tok_free(t);
}

static void
tok_credential(enum cred_status st, const struct cred_row *row, void *arg)
{
	struct tok_call *t = arg;
	int ok;

	if (!release(t->c)) {
		tok_free(t);
		return;
	}
	if (st == CRED_UNAVAILABLE) {
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the credential database is unavailable");
		tok_done(t);
		return;
	}
	if (!t->refresh) {
		/* The derivation runs whatever the row says: same time. */
		t->row_ok = st == CRED_OK && row->active && !row->expired;
		if (st == CRED_OK)
			util_strlcpy(t->vp, row->vp_id, sizeof(t->vp));
		if (cred_verify_start(cred_store(t->c->w), t->secret,
				      strlen(t->secret),
				      st == CRED_OK ? row->hash : NULL,
				      tok_verified, t, &t->kdf) != 0) {
			atomic_fetch_add(&t->c->w->stats->api_auth_busy, 1);
			send_error_hdr(t->c, 503, "UNAVAILABLE",
				       "too many secret checks waiting",
				       "Retry-After: 1\r\n");
			tok_done(t);
			return;
		}
		/* Before hold(): the client's EOF is watched for. */
		t->c->cancel = tok_cancel;
		t->c->cancel_arg = t;
		hold(t->c);
		return;
	}
	/* Refresh: the token was checked; the credential must still be good. */
	ok = st == CRED_OK && row->active && !row->expired &&
	     strcmp(row->vp_id, t->vp) == 0;
	if (!ok) {
		tok_auth_failed(t);
		tok_done(t);
		return;
	}
	hold(t->c);
	directory_lookup(t->c->w->dir, t->vp, tok_directory, t);
}

static void
tok_refresh_found(struct redis *r, redisReply *rep, void *arg)
{
	struct tok_call *t = arg;
	const char *sp;
	uint64_t wait;

	(void)r;
	if (!release(t->c)) {
		tok_free(t);
		return;
	}
	if (rep == NULL || (rep->type != REDIS_REPLY_STRING &&
			    rep->type != REDIS_REPLY_NIL)) {
		api_send_error(t->c, 503, "UNAVAILABLE",
			       "the token store (Redis) is unavailable");
	} else if (rep->type == REDIS_REPLY_NIL) {
		t->guess_failed = 1;
		api_send_error(t->c, 401, "TOKEN_REVOKED",
			       "the refresh token has been used or revoked");
	} else if ((sp = memchr(rep->str, ' ', rep->len)) == NULL ||
		   sp - rep->str != 36 ||
		   rep->len - 37 > CRED_KEY_MAX || rep->len <= 37) {
		tok_auth_failed(t);
	} else {
		memcpy(t->sid, rep->str, 36);
		t->sid[36] = '\0';
		memcpy(t->key, sp + 1, rep->len - 37);
		t->key[rep->len - 37] = '\0';
		wait = authlimit_take_key(&t->c->w->authlimit, t->key,
					  util_now_ms(), &t->ticket);
		if (wait > 0) {
			tok_limited(t, wait);
			tok_done(t);
			return;
		}
		hold(t->c);
		cred_lookup(cred_store(t->c->w), t->key, tok_credential, t);
		return;
	}
	tok_done(t);
}

/* A string member of 1..cap-1 bytes without NUL; 0 or -1. */
static int
tok_field(const struct json_doc *d, const char *name, char *out, size_t cap)
{
	int v = json_obj_get(d, json_root(d), name);
	size_t len = 0;

	if (json_type(d, v) != JSON_STRING ||
	    json_get_string(d, v, out, cap, &len) != 0 || len == 0 ||
	    strlen(out) != len)
		return -1;
	return 0;
}

static void
tok_request(struct conn *c, const struct http_request *req, int refresh)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct json_limits lim = {
	    .max_tokens = 64, .max_depth = 4, .flags = JSON_REQUIRE_OBJECT};
	struct cred_store *store;
	struct tok_call *t;
	struct json_doc d;
	char msg[128];
	uint64_t wait;
	int rc;

	if ((store = cred_store(w)) == NULL || w->dir == NULL) {
		api_send_error(c, 503, "UNAVAILABLE",
			       "credential authentication is not configured "
			       "(no database)");
		return;
	}
	if (cfg->jwt_secret == NULL || !auth_keyring_usable(w)) {
		api_send_error(c, 503, "UNAVAILABLE",
			       "token issuance is not configured (no "
			       "jwt_secret_file)");
		return;
	}
	if ((rc = json_parse(&d, (const char *)req->body, req->body_len,
			     &lim)) != 0) {
		snprintf(msg, sizeof(msg), "the body must be a JSON object: %s",
			 json_strerror(rc));
		api_send_error(c, 400, "INVALID_MESSAGE", msg);
		return;
	}
	t = util_calloc(1, sizeof(*t));
	t->c = c;
	t->keep_alive = req->keep_alive;
	t->refresh = refresh;
	if (!refresh) {
		if (tok_field(&d, "apiKey", t->key, sizeof(t->key)) != 0 ||
		    tok_field(&d, "apiSecret", t->secret, sizeof(t->secret)) !=
			0) {
			api_send_error(c, 400, "INVALID_MESSAGE",
				       "apiKey and apiSecret must be strings "
				       "of 1..255 bytes");
			goto answered;
		}
		json_doc_free(&d);
		/* Before any work: no look-up, no derivation. */
		wait = authlimit_take(&w->authlimit, t->key, &c->peer,
				      util_now_ms(), &t->ticket);
		if (wait > 0) {
			tok_limited(t, wait);
			t->key[0] = '\0'; /* nothing charged */
			goto answered;
		}
		json_uuid_v4(t->sid);
		hold(c);
		cred_lookup(store, t->key, tok_credential, t);
		return;
	} else {
		char token[API_TOKEN_MAX + 1], err[256];
		struct jwt_policy pol;
		struct jwt_claims cl;

		if (tok_field(&d, "refreshToken", token, sizeof(token)) != 0) {
			api_send_error(c, 400, "INVALID_MESSAGE",
				       "refreshToken must be a string");
			goto answered;
		}
		/* The key is not known yet: the address now, the key later. */
		wait = authlimit_take(&w->authlimit, NULL, &c->peer,
				      util_now_ms(), &t->ticket);
		if (wait > 0) {
			tok_limited(t, wait);
			goto answered;
		}
		jwt_policy_init(&pol);
		pol.leeway = (unsigned)(cfg->jwt_leeway_ms / 1000);
		pol.iss = cfg->jwt_issuer;
		pol.aud = cfg->jwt_audience;
		pol.type = "refresh";
		pol.max_len = API_TOKEN_MAX;
		rc = jwt_verify(w->keyring, &pol, token, strlen(token), &cl,
				err, sizeof(err));
		if (rc != JWT_OK || cl.jti[0] == '\0' ||
		    strlen(cl.orchestrator) >= sizeof(t->vp)) {
			t->guess_failed = 1;
			api_send_error(c, 401,
				       rc == JWT_EEXPIRED ? "TOKEN_EXPIRED"
							  : "AUTH_FAILED",
				       rc != JWT_OK ? err
						    : "the refresh token is "
						      "not valid");
			goto answered;
		}
		util_strlcpy(t->old_jti, cl.jti, sizeof(t->old_jti));
		util_strlcpy(t->vp, cl.orchestrator, sizeof(t->vp));
		json_doc_free(&d);
		if (redis_command(w->redis, tok_refresh_found, t,
				  "GET " API_REFRESH_PREFIX "%s",
				  t->old_jti) != 0) {
			api_send_error(c, 503, "UNAVAILABLE",
				       "the token store (Redis) is "
				       "unavailable");
			t->answered = 1; /* not a failed guess: refunded */
			tok_free(t);
			return;
		}
		hold(c);
		return;
	}
answered:
	json_doc_free(&d);
	tok_free(t);
}

void
api_dispatch(struct conn *c, const struct http_request *req, const char *path)
{
	if (strcmp(path, API_PATH_AUTH) == 0 ||
	    strcmp(path, API_PATH_REFRESH) == 0) {
		if (req->method != HTTP_METHOD_POST) {
			conn_send_error(c, 405, "Allow: POST\r\n");
			return;
		}
		tok_request(c, req, strcmp(path, API_PATH_REFRESH) == 0);
		return;
	}
	if (strcmp(path, API_PATH_HEARTBEAT) == 0) {
		if (req->method != HTTP_METHOD_POST) {
			conn_send_error(c, 405, "Allow: POST\r\n");
			return;
		}
		api_request(c, req, API_HEARTBEAT);
		return;
	}
	if (strcmp(path, API_PATH_EVENTS) == 0) {
		if (req->method != HTTP_METHOD_GET &&
		    req->method != HTTP_METHOD_DELETE) {
			conn_send_error(c, 405, "Allow: GET, DELETE\r\n");
			return;
		}
		api_request(c, req,
			    req->method == HTTP_METHOD_GET ? API_EVENTS_GET
							   : API_EVENTS_DELETE);
		return;
	}
	conn_send_error(c, 404, NULL);
}
