/*
 * proto: the daemon protocol, message by message.
 *
 * Every client message is one JSON object (section 2).  Errors name the
 * offending field in details.field, so a client developer can fix the
 * message without reading our logs.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/conn.h"
#include "orchd/deliver.h"
#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/log.h"
#include "orchd/proto.h"
#include "orchd/proto_int.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/wsconn.h"

#define HB_MIN_INTERVAL_MS 10000 /* faster heartbeats count as messages */

struct proto_held {
	struct proto_held *next;
	size_t len;
	uint8_t data[];
};
#define ACK_MAX 1000

uint64_t
proto_now(const struct conn *c)
{
	return (uint64_t)(ev_now(c->w->loop) * 1000.0);
}

/* ---- outgoing messages -------------------------------------------------- */

void
proto_msg_begin(struct json_writer *jw, char *buf, size_t cap,
		const char *type)
{
	char id[37];

	json_w_init(jw, buf, cap);
	json_uuid_v4(id);
	json_w_obj_begin(jw);
	json_w_key(jw, "type");
	json_w_str(jw, type);
	json_w_key(jw, "id");
	json_w_str(jw, id);
	json_w_key(jw, "timestamp");
	json_w_timestamp(jw, util_wall_ms());
	json_w_key(jw, "payload");
	json_w_obj_begin(jw);
}

int
proto_msg_send(struct conn *c, struct json_writer *jw)
{
	size_t len;

	json_w_obj_end(jw);
	json_w_obj_end(jw);
	if (json_w_finish(jw, &len) == -1) {
		log_warnx("%s: message too large for its buffer", __func__);
		return -1;
	}
	atomic_fetch_add(&c->w->stats->proto_messages_out, 1);
	/* proto_msg_begin() wrote {"type":"NAME", first. */
	if (len > 9) {
		const char *t = jw->buf + 9;
		const char *q = memchr(t, '"', len - 9);

		if (q != NULL)
			atomic_fetch_add_explicit(
			    &c->w->stats->msg_out[shm_msg_out_index(
				t, (size_t)(q - t))],
			    1, memory_order_relaxed);
	}
	return wsconn_send(c, WS_OP_TEXT, jw->buf, len, 0);
}

void
proto_send_error(struct conn *c, const char *code, const char *message,
		 const char *field)
{
	char buf[1024];
	struct json_writer jw;

	proto_msg_begin(&jw, buf, sizeof(buf), "error");
	json_w_key(&jw, "code");
	json_w_str(&jw, code);
	json_w_key(&jw, "message");
	json_w_str(&jw, message);
	if (field != NULL) {
		json_w_key(&jw, "details");
		json_w_obj_begin(&jw);
		json_w_key(&jw, "field");
		json_w_str(&jw, field);
		json_w_obj_end(&jw);
	}
	proto_msg_send(c, &jw);
}

int
proto_send_reconnect(struct conn *c, const char *reason, uint64_t delay_ms)
{
	char buf[256];
	struct json_writer jw;
	const struct proto_conn *p = c->proto;

	if (p == NULL || p->ended || p->state != PROTO_AUTHED)
		return -1;
	proto_msg_begin(&jw, buf, sizeof(buf), "reconnect");
	json_w_key(&jw, "reason");
	json_w_str(&jw, reason);
	json_w_key(&jw, "delay");
	json_w_uint(&jw, delay_ms);
	return proto_msg_send(c, &jw);
}

/* ---- life cycle --------------------------------------------------------- */

void
proto_attach(struct conn *c)
{
	struct proto_conn *p = util_calloc(1, sizeof(*p));
	uint64_t now = proto_now(c);

	p->state = PROTO_UNAUTH;
	p->auth_deadline_ms = now + c->w->cfg->auth_timeout_ms;
	p->connected_wall_ms = util_wall_ms();
	json_uuid_v4(p->connection_id);
	c->proto = p;
}

void
proto_detach(struct conn *c)
{
	struct proto_conn *p = c->proto;

	if (p == NULL)
		return;
	proto_auth_cleanup(c);
	sub_free(&p->sub);
	while (p->held != NULL) {
		struct proto_held *h = p->held;

		p->held = h->next;
		free(h);
	}
	UTIL_FREE(c->proto);
}

void
proto_replay_held(struct conn *c)
{
	struct proto_conn *p = c->proto;

	while (p != NULL && p->held != NULL && p->state != PROTO_AUTHING &&
	       c->state == CONN_WS_OPEN) {
		struct proto_held *h = p->held;

		p->held = h->next;
		p->nheld--;
		proto_message(c, h->data, h->len);
		free(h);
		p = c->proto; /* a message may end the connection */
	}
}

void
proto_end(struct conn *c)
{
	if (c->proto != NULL) {
		proto_auth_cleanup(c);
		c->proto->ended = 1;
	}
}

uint64_t
proto_next_deadline(const struct conn *c)
{
	const struct proto_conn *p = c->proto;

	if (p == NULL || p->ended)
		return 0;
	switch (p->state) {
	case PROTO_UNAUTH:
	case PROTO_AUTHING:
		return p->auth_deadline_ms;
	case PROTO_AUTHED:
		return p->hb_deadline_ms < p->token_exp_ms ? p->hb_deadline_ms
							   : p->token_exp_ms;
	}
	return 0;
}

void
proto_on_deadline(struct conn *c, uint64_t now)
{
	struct proto_conn *p = c->proto;

	if (p == NULL || p->ended)
		return;
	if (p->state != PROTO_AUTHED) {
		if (now >= p->auth_deadline_ms) {
			log_info("%s: %s: no auth in %llu ms", __func__,
				 conn_peer_str(c),
				 (unsigned long long)c->w->cfg->auth_timeout_ms);
			atomic_fetch_add(&c->w->stats->auth_timeouts, 1);
			wsconn_close(c, PROTO_CLOSE_AUTH_TIMEOUT,
				     "authentication timeout");
		}
		return;
	}
	if (now >= p->token_exp_ms) {
		log_info("%s: %s: token of %s expired", __func__,
			 conn_peer_str(c), p->orch);
		wsconn_close(c, PROTO_CLOSE_TOKEN_EXPIRED, "token expired");
		return;
	}
	if (now >= p->hb_deadline_ms) {
		log_info("%s: %s: no heartbeat from %s/%s in 3 intervals",
			 __func__, conn_peer_str(c), p->orch, p->daemon);
		wsconn_close(c, PROTO_CLOSE_HEARTBEAT, "heartbeat timeout");
	}
}

/* ---- rate limiting ------------------------------------------------------ */

/*
 * 1: the message may be handled.  0: dropped with a rate_limit warning, or
 * the connection was closed (4004) because it stayed over the limit past
 * the grace period.
 */
static int
rate_check(struct conn *c, int is_heartbeat)
{
	const struct config *cfg = c->w->cfg;
	struct proto_conn *p = c->proto;
	uint64_t now = proto_now(c), retry;
	double burst = (double)config_rate_limit_burst(cfg);
	char buf[512];
	struct json_writer jw;

	if (now - p->window_start_ms >= 60000) {
		p->window_start_ms = now;
		p->window_count = 0;
	}
	p->window_count++;
	/* Heartbeats at the announced pace are free; faster ones count. */
	if (is_heartbeat && (p->last_hb_ms == 0 ||
			     now - p->last_hb_ms >= HB_MIN_INTERVAL_MS))
		return 1;
	if (ratelimit_take(&p->rl, now, (double)cfg->rate_limit_messages,
			   60000, burst, &retry)) {
		p->over_since_ms = 0;
		return 1;
	}
	atomic_fetch_add(&c->w->stats->rate_limited, 1);
	if (p->over_since_ms == 0)
		p->over_since_ms = now;
	else if (now - p->over_since_ms >= cfg->rate_limit_grace_ms) {
		wsconn_close(c, PROTO_CLOSE_RATE_LIMITED, "rate limit exceeded");
		return 0;
	}
	proto_msg_begin(&jw, buf, sizeof(buf), "rate_limit");
	json_w_key(&jw, "action");
	json_w_str(&jw, "message_dropped");
	json_w_key(&jw, "retryAfter");
	json_w_uint(&jw, (retry + 999) / 1000);
	json_w_key(&jw, "currentRate");
	json_w_uint(&jw, p->window_count);
	json_w_key(&jw, "maxRate");
	json_w_uint(&jw, cfg->rate_limit_messages);
	proto_msg_send(c, &jw);
	return 0;
}

/* ---- subscribe / unsubscribe ------------------------------------------- */

static unsigned
scope_bit(const char *scope)
{
	static const struct {
		const char *name;
		unsigned bit;
	} known[] = {
		{"messages:read", PROTO_SCOPE_MESSAGES},
		{"channels:read", PROTO_SCOPE_CHANNELS},
		{"presence:read", PROTO_SCOPE_PRESENCE},
		{"vp:status", PROTO_SCOPE_VP},
		{"calls:join", PROTO_SCOPE_CALLS},
	};

	for (size_t i = 0; i < UTIL_NELEM(known); i++)
		if (strcmp(scope, known[i].name) == 0)
			return known[i].bit;
	return 0;
}

unsigned
proto_scope_mask(const char (*scopes)[JWT_SCOPE_SIZE], unsigned n)
{
	unsigned m = 0;

	for (unsigned i = 0; i < n; i++)
		m |= scope_bit(scopes[i]);
	return m;
}

int
proto_may_receive(const struct proto_conn *p, const char *type)
{
	const char *scope = sub_scope_for(type);

	return scope == NULL || (p->scope_mask & scope_bit(scope)) != 0;
}

static void
send_subscribed(struct conn *c)
{
	struct proto_conn *p = c->proto;
	/* Every string may need escaping (up to 6x) plus quotes and commas. */
	size_t cap = 512 + 6 * (p->sub.types.len + p->sub.channels.len) +
		     4 * (p->sub.types.n + p->sub.channels.n);
	char *buf = util_malloc(cap);
	struct json_writer jw;

	proto_msg_begin(&jw, buf, cap, "subscribed");
	json_w_key(&jw, "eventTypes");
	json_w_arr_begin(&jw);
	for (const char *t = sub_list_next(&p->sub.types, NULL); t != NULL;
	     t = sub_list_next(&p->sub.types, t))
		json_w_str(&jw, t);
	json_w_arr_end(&jw);
	json_w_key(&jw, "channelIds");
	json_w_arr_begin(&jw);
	for (const char *t = sub_list_next(&p->sub.channels, NULL); t != NULL;
	     t = sub_list_next(&p->sub.channels, t))
		json_w_str(&jw, t);
	json_w_arr_end(&jw);
	if (proto_msg_send(c, &jw) == -1)
		proto_send_error(c, "INTERNAL_ERROR",
				 "subscription too large to report", NULL);
	free(buf);
}

/*
 * Validate a string array field: 1..max entries, each valid.  Returns its
 * token, or -1 after answering the error.
 */
static int
string_array(struct conn *c, const struct json_doc *d, int payload,
	     const char *key, const char *field, unsigned max, int optional,
	     int (*valid)(const char *))
{
	int arr = json_obj_get(d, payload, key), n;
	/* Event ids (ack) go up to 128 bytes; the validators bound the rest. */
	char s[EVENT_ID_MAX];

	if (arr < 0 && optional)
		return -2;
	if (json_type(d, arr) != JSON_ARRAY) {
		proto_send_error(c, "INVALID_MESSAGE", "must be an array",
				 field);
		return -1;
	}
	n = json_array_len(d, arr);
	if (n < 1 || (unsigned)n > max) {
		proto_send_error(c, (unsigned)n > max ? "LIMIT_EXCEEDED"
						      : "INVALID_MESSAGE",
				 (unsigned)n > max ? "too many entries"
						   : "must not be empty",
				 field);
		return -1;
	}
	for (int t = json_first(d, arr); t >= 0; t = json_next(d, t))
		if (json_get_string(d, t, s, sizeof(s), NULL) != 0 ||
		    !valid(s)) {
			proto_send_error(c, "INVALID_MESSAGE",
					 "entries must be valid strings", field);
			return -1;
		}
	return arr;
}

static void
handle_subscribe(struct conn *c, const struct json_doc *d, int payload)
{
	struct proto_conn *p = c->proto;
	struct sub next;
	char s[SUB_MAX_LEN + 1];
	int types, chans;

	types = string_array(c, d, payload, "eventTypes", "payload.eventTypes",
			     SUB_MAX_TYPES, 0, sub_pattern_valid);
	if (types < 0)
		return;
	chans = string_array(c, d, payload, "channelIds", "payload.channelIds",
			     SUB_MAX_CHANNELS, 1, sub_channel_valid);
	if (chans == -1)
		return;
	/* Scope per family: all or nothing, so a client never half-subscribes. */
	for (int t = json_first(d, types); t >= 0; t = json_next(d, t)) {
		const char *scope;

		json_get_string(d, t, s, sizeof(s), NULL);
		scope = sub_scope_for(s);
		if (scope != NULL && !(p->scope_mask & scope_bit(scope))) {
			char msg[128];

			snprintf(msg, sizeof(msg), "%s requires scope %s", s,
				 scope);
			proto_send_error(c, "INSUFFICIENT_SCOPE", msg,
					 "payload.eventTypes");
			return;
		}
	}
	/* Build the new set aside: on LIMIT_EXCEEDED nothing changes. */
	memset(&next, 0, sizeof(next));
	for (const char *t = sub_list_next(&p->sub.types, NULL); t != NULL;
	     t = sub_list_next(&p->sub.types, t))
		sub_list_add(&next.types, t, SUB_MAX_TYPES);
	for (int t = json_first(d, types); t >= 0; t = json_next(d, t)) {
		json_get_string(d, t, s, sizeof(s), NULL);
		if (sub_list_add(&next.types, s, SUB_MAX_TYPES) == -1) {
			sub_free(&next);
			proto_send_error(c, "LIMIT_EXCEEDED",
					 "at most 50 event types per connection",
					 "payload.eventTypes");
			return;
		}
	}
	if (chans >= 0) {
		/* channelIds replaces the channel filter. */
		for (int t = json_first(d, chans); t >= 0; t = json_next(d, t)) {
			json_get_string(d, t, s, sizeof(s), NULL);
			sub_list_add(&next.channels, s, SUB_MAX_CHANNELS);
		}
	} else {
		next.channels = p->sub.channels;
		memset(&p->sub.channels, 0, sizeof(p->sub.channels));
	}
	sub_free(&p->sub);
	p->sub = next;
	send_subscribed(c);
	deliver_conn_subscribed(c);
}

static void
handle_unsubscribe(struct conn *c, const struct json_doc *d, int payload)
{
	struct proto_conn *p = c->proto;
	char s[SUB_MAX_LEN + 1];
	int types;

	types = string_array(c, d, payload, "eventTypes", "payload.eventTypes",
			     SUB_MAX_TYPES, 0, sub_pattern_valid);
	if (types < 0)
		return;
	for (int t = json_first(d, types); t >= 0; t = json_next(d, t)) {
		json_get_string(d, t, s, sizeof(s), NULL);
		sub_list_remove(&p->sub.types, s);
	}
	send_subscribed(c);
}

static int
event_id_valid(const char *s)
{
	return s[0] != '\0';
}

static void
handle_ack(struct conn *c, const struct json_doc *d, int payload)
{
	int ids = string_array(c, d, payload, "eventIds", "payload.eventIds",
			       ACK_MAX, 0, event_id_valid);

	if (ids < 0)
		return;
	/* The durable queue (event pipeline) removes acked events. */
	proto_ack_events(c, d, ids);
}

/* ---- dispatch ----------------------------------------------------------- */

void
proto_message(struct conn *c, const uint8_t *data, size_t len)
{
	struct proto_conn *p = c->proto;
	struct json_limits lim = {.max_size = 0,
				  .max_tokens = 4096,
				  .max_depth = 16,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	char type[32];
	int root, t, payload, rc, bad;

	if (p->ended)
		return;
	/*
	 * While auth waits for Redis, later messages wait too: a client that
	 * pipelines subscribe behind auth must not get NOT_AUTHENTICATED.
	 */
	if (p->state == PROTO_AUTHING) {
		struct proto_held *h;

		if (p->nheld >= PROTO_HELD_MAX) {
			proto_send_error(c, "RATE_LIMITED",
					 "too many messages during authentication",
					 NULL);
			return;
		}
		h = util_malloc(sizeof(*h) + len);
		h->next = NULL;
		h->len = len;
		memcpy(h->data, data, len);
		if (p->held == NULL)
			p->held_tail = &p->held;
		*p->held_tail = h;
		p->held_tail = &h->next;
		p->nheld++;
		return;
	}
	atomic_fetch_add(&c->w->stats->proto_messages_in, 1);
	if ((rc = json_parse(&d, (const char *)data, len, &lim)) != 0) {
		atomic_fetch_add_explicit(&c->w->stats->msg_in[SHM_NMSG_IN - 1],
					  1, memory_order_relaxed);
		if (rate_check(c, 0))
			proto_send_error(c, "INVALID_MESSAGE",
					 json_strerror(rc), NULL);
		return;
	}
	root = json_root(&d);
	t = json_obj_get(&d, root, "type");
	bad = json_type(&d, t) != JSON_STRING ||
	      json_get_string(&d, t, type, sizeof(type), NULL) != 0;
	atomic_fetch_add_explicit(
	    &c->w->stats
		 ->msg_in[bad ? SHM_NMSG_IN - 1 : shm_msg_in_index(type)],
	    1, memory_order_relaxed);
	if (bad) {
		if (rate_check(c, 0))
			proto_send_error(c, "INVALID_MESSAGE",
					 "type must be a string", "type");
		goto out;
	}
	if (!rate_check(c, strcmp(type, "heartbeat") == 0))
		goto out;
	payload = json_obj_get(&d, root, "payload");
	if (payload >= 0 && json_type(&d, payload) != JSON_OBJECT) {
		proto_send_error(c, "INVALID_MESSAGE",
				 "payload must be an object", "payload");
		goto out;
	}
	if (strcmp(type, "auth") == 0) {
		proto_handle_auth(c, &d, payload);
		goto out;
	}
	if (p->state != PROTO_AUTHED) {
		proto_send_error(c, "NOT_AUTHENTICATED",
				 "authenticate first (auth)", NULL);
		goto out;
	}
	if (strcmp(type, "heartbeat") == 0)
		proto_handle_heartbeat(c, &d, payload);
	else if (strcmp(type, "subscribe") == 0)
		handle_subscribe(c, &d, payload);
	else if (strcmp(type, "unsubscribe") == 0)
		handle_unsubscribe(c, &d, payload);
	else if (strcmp(type, "ack") == 0)
		handle_ack(c, &d, payload);
	else
		proto_send_error(c, "INVALID_MESSAGE", "unknown message type",
				 "type");
out:
	json_doc_free(&d);
}
