/* event: event records and the `event` message, pure code. */
#include "config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/log.h"
#include "orchd/registry.h"
#include "orchd/sub.h"
#include "orchd/util.h"

_Static_assert(EVENT_REF_MAX == REGISTRY_ID_MAX,
	       "event ids must fit the registry's");
_Static_assert(EVENT_TYPE_MAX == SUB_MAX_LEN + 1, "type is a sub pattern");
_Static_assert(EVENT_CHANNEL_MAX == SUB_MAX_LEN + 1, "channel is a sub id");

/*
 * Fixed text of the largest message or body: keys, punctuation, uuid, two
 * timestamps, seq, priority (about 350 bytes for the message).
 */
#define EVENT_FIXED_OVERHEAD 512

/* clang-format off */
static const char *const kind_names[EVENT_NKINDS] = {
	[EVENT_OK] = "ok",
	[EVENT_ETOOBIG] = "too_big",
	[EVENT_EJSON] = "json",
	[EVENT_EID] = "id",
	[EVENT_ETYPE] = "type",
	[EVENT_ETARGET] = "target",
	[EVENT_EPAYLOAD] = "payload",
	[EVENT_EFIELD] = "field",
};
/* clang-format on */

const char *
event_kind_name(int kind)
{
	if (kind < 0 || kind >= EVENT_NKINDS)
		return "unknown";
	return kind_names[kind];
}

static int fail(char *, size_t, int, const char *, ...) ORCHD_PRINTF(4, 5);

/* Write the message (if there is room for one) and return kind. */
static int
fail(char *err, size_t errlen, int kind, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return kind;
}

/* Where a record is parsed: the limits and the channel it came from. */
struct pctx {
	size_t limit;       /* whole record, bytes */
	size_t max_payload; /* payload text, bytes */
	const char *org;    /* daemon:events:{org}, or NULL */
	char *err;
	size_t errlen;
};

/* Results of opt_string(). */
enum {
	STR_OK = 0,
	STR_TYPE,
	STR_LONG,
	STR_NUL,
};

/*
 * String field key of obj into out[cap]: STR_OK with "" when it is absent
 * or null, STR_OK with the value, or why it cannot be had.
 */
static int
opt_string(const struct json_doc *d, int obj, const char *key, char *out,
	   size_t cap)
{
	int t = json_obj_get(d, obj, key);
	int rc;

	out[0] = '\0';
	switch (json_type(d, t)) {
	case JSON_NONE:
	case JSON_NULL:
		return STR_OK;
	case JSON_STRING:
		break;
	default:
		return STR_TYPE;
	}
	rc = json_get_string(d, t, out, cap, NULL);
	if (rc == JSON_E_NOSPACE)
		return STR_LONG;
	return rc == 0 ? STR_OK : STR_NUL;
}

/* Report an opt_string() failure of field key as kind. */
static int
str_fail(const struct pctx *px, int kind, const char *key, int why, size_t cap)
{
	switch (why) {
	case STR_TYPE:
		return fail(px->err, px->errlen, kind, "%s: not a string", key);
	case STR_LONG:
		return fail(px->err, px->errlen, kind,
			    "%s: longer than %zu bytes", key, cap - 1);
	default:
		return fail(px->err, px->errlen, kind, "%s: contains \\u0000",
			    key);
	}
}

/* An optional string field: STR_OK or the failure, reported as kind. */
static int
get_opt(const struct json_doc *d, const struct pctx *px, int kind,
	const char *key, char *out, size_t cap)
{
	int why = opt_string(d, json_root(d), key, out, cap);

	return why == STR_OK ? EVENT_OK : str_fail(px, kind, key, why, cap);
}

/* A required, non-empty string field (id, type). */
static int
get_req(const struct json_doc *d, const struct pctx *px, int kind,
	const char *key, char *out, size_t cap)
{
	int t = json_obj_get(d, json_root(d), key);
	int why;

	if (t < 0)
		return fail(px->err, px->errlen, kind, "%s: missing", key);
	if (json_type(d, t) != JSON_STRING)
		return str_fail(px, kind, key, STR_TYPE, cap);
	why = opt_string(d, json_root(d), key, out, cap);
	if (why != STR_OK)
		return str_fail(px, kind, key, why, cap);
	if (out[0] == '\0')
		return fail(px->err, px->errlen, kind, "%s: empty", key);
	return EVENT_OK;
}

static int
parse_id_type(struct event *ev, const struct json_doc *d, const struct pctx *px)
{
	int rc;

	rc = get_req(d, px, EVENT_EID, "id", ev->id, sizeof(ev->id));
	if (rc != EVENT_OK)
		return rc;
	for (const char *p = ev->id; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return fail(px->err, px->errlen, EVENT_EID,
				    "id: not printable ASCII");
	rc = get_req(d, px, EVENT_ETYPE, "type", ev->type, sizeof(ev->type));
	if (rc != EVENT_OK)
		return rc;
	if (strchr(ev->type, '*') != NULL)
		return fail(px->err, px->errlen, EVENT_ETYPE,
			    "type: a pattern, not an event type");
	if (!sub_pattern_valid(ev->type))
		return fail(px->err, px->errlen, EVENT_ETYPE,
			    "type: not a valid event type");
	return EVENT_OK;
}

/* orchestratorId, daemonId, organizationId: who receives the event. */
static int
parse_target(struct event *ev, const struct json_doc *d, const struct pctx *px)
{
	int rc;

	if ((rc = get_opt(d, px, EVENT_ETARGET, "orchestratorId", ev->orch,
			  sizeof(ev->orch))) != EVENT_OK ||
	    (rc = get_opt(d, px, EVENT_ETARGET, "daemonId", ev->daemon,
			  sizeof(ev->daemon))) != EVENT_OK ||
	    (rc = get_opt(d, px, EVENT_ETARGET, "organizationId", ev->org,
			  sizeof(ev->org))) != EVENT_OK)
		return rc;
	if (strcmp(ev->orch, "*") == 0)
		ev->orch[0] = '\0';
	if (ev->daemon[0] != '\0' && ev->orch[0] == '\0')
		return fail(px->err, px->errlen, EVENT_ETARGET,
			    "daemonId: needs an orchestratorId");
	if (px->org != NULL) {
		if (ev->org[0] == '\0')
			util_strlcpy(ev->org, px->org, sizeof(ev->org));
		else if (strcmp(ev->org, px->org) != 0)
			return fail(px->err, px->errlen, EVENT_ETARGET,
				    "organizationId: not the channel's");
	}
	if (ev->orch[0] != '\0')
		ev->target = EVENT_TARGET_ORCHESTRATOR;
	else if (ev->org[0] != '\0')
		ev->target = EVENT_TARGET_ORGANIZATION;
	else
		ev->target = EVENT_TARGET_ALL;
	return EVENT_OK;
}

static int
parse_payload(struct event *ev, const struct json_doc *d, const struct pctx *px)
{
	int t = json_obj_get(d, json_root(d), "payload");
	const char *raw;
	size_t n;

	if (t < 0)
		return fail(px->err, px->errlen, EVENT_EPAYLOAD,
			    "payload: missing");
	if (json_type(d, t) != JSON_OBJECT)
		return fail(px->err, px->errlen, EVENT_EPAYLOAD,
			    "payload: not an object");
	if (json_tok_raw(d, t, &raw, &n) != 0)
		return fail(px->err, px->errlen, EVENT_EPAYLOAD,
			    "payload: unreadable");
	if (n > px->max_payload)
		return fail(px->err, px->errlen, EVENT_EPAYLOAD,
			    "payload: longer than %zu bytes", px->max_payload);
	ev->payload = util_malloc(n + 1);
	memcpy(ev->payload, raw, n);
	ev->payload[n] = '\0';
	ev->payload_len = n;
	return EVENT_OK;
}

/* workspaceId, channelId, timestamp, requiresAck, priority. */
static int
parse_rest(struct event *ev, const struct json_doc *d, const struct pctx *px)
{
	int root = json_root(d), t, rc;
	char ts[64];
	int64_t prio;

	if ((rc = get_opt(d, px, EVENT_EFIELD, "workspaceId", ev->workspace,
			  sizeof(ev->workspace))) != EVENT_OK ||
	    (rc = get_opt(d, px, EVENT_EFIELD, "channelId", ev->channel,
			  sizeof(ev->channel))) != EVENT_OK)
		return rc;
	if (ev->channel[0] != '\0' && !sub_channel_valid(ev->channel))
		return fail(px->err, px->errlen, EVENT_EFIELD,
			    "channelId: not a valid channel id");

	t = json_obj_get(d, root, "timestamp");
	if (json_type(d, t) == JSON_NONE || json_type(d, t) == JSON_NULL) {
		ev->ts_ms = util_wall_ms();
	} else if (json_type(d, t) != JSON_STRING) {
		return fail(px->err, px->errlen, EVENT_EFIELD,
			    "timestamp: not a string");
	} else if (json_get_string(d, t, ts, sizeof(ts), NULL) != 0 ||
		   json_parse_iso8601_ms(ts, &ev->ts_ms) != 0) {
		return fail(px->err, px->errlen, EVENT_EFIELD,
			    "timestamp: not an RFC 3339 time");
	}

	t = json_obj_get(d, root, "requiresAck");
	if (json_type(d, t) != JSON_NONE && json_type(d, t) != JSON_NULL &&
	    json_get_bool(d, t, &ev->requires_ack) != 0)
		return fail(px->err, px->errlen, EVENT_EFIELD,
			    "requiresAck: not a boolean");

	t = json_obj_get(d, root, "priority");
	if (json_type(d, t) == JSON_NONE || json_type(d, t) == JSON_NULL)
		return EVENT_OK;
	rc = json_get_int64(d, t, &prio);
	if (rc == JSON_E_RANGE || (rc == 0 && (prio < EVENT_PRIORITY_MIN ||
					       prio > EVENT_PRIORITY_MAX)))
		return fail(px->err, px->errlen, EVENT_EFIELD,
			    "priority: outside %d..%d", EVENT_PRIORITY_MIN,
			    EVENT_PRIORITY_MAX);
	if (rc != 0)
		return fail(px->err, px->errlen, EVENT_EFIELD,
			    "priority: not an integer");
	ev->priority = (int)prio;
	return EVENT_OK;
}

static int
parse_record(struct event *ev, const char *buf, size_t len,
	     const struct pctx *px)
{
	struct json_limits lim;
	struct json_doc d;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (px->err != NULL && px->errlen > 0)
		px->err[0] = '\0';
	if (len > px->limit)
		return fail(px->err, px->errlen, EVENT_ETOOBIG,
			    "record of %zu bytes, limit %zu", len, px->limit);
	if (px->org != NULL && strlen(px->org) >= EVENT_REF_MAX)
		return fail(px->err, px->errlen, EVENT_ETARGET,
			    "channel organization: longer than %d bytes",
			    EVENT_REF_MAX - 1);

	memset(&lim, 0, sizeof(lim));
	lim.max_size = px->limit;
	/* A value or key takes at least 2 bytes with its separator. */
	lim.max_tokens = (unsigned)(len / 2 + 2);
	lim.max_depth = EVENT_MAX_DEPTH;
	lim.flags = JSON_REQUIRE_OBJECT;
	rc = json_parse(&d, buf, len, &lim);
	if (rc == JSON_E_NOT_OBJECT)
		return fail(px->err, px->errlen, EVENT_EJSON,
			    "not a JSON object");
	if (rc != 0)
		return fail(px->err, px->errlen, EVENT_EJSON,
			    "not JSON: %s at byte %zu", json_strerror(rc),
			    d.err_off);

	if ((rc = parse_id_type(ev, &d, px)) == EVENT_OK &&
	    (rc = parse_target(ev, &d, px)) == EVENT_OK &&
	    (rc = parse_payload(ev, &d, px)) == EVENT_OK)
		rc = parse_rest(ev, &d, px);
	json_doc_free(&d);
	if (rc != EVENT_OK)
		event_free(ev);
	return rc;
}

/* max_size as given by the caller: 0 is the default; never above INT_MAX. */
static size_t
record_limit(size_t max_size)
{
	if (max_size == 0)
		return EVENT_DEFAULT_MAX_SIZE;
	return max_size > INT_MAX ? INT_MAX : max_size;
}

int
event_parse_ctx(struct event *ev, const char *buf, size_t len, size_t max_size,
		const char *channel_org, char *err, size_t errlen)
{
	struct pctx px;

	px.limit = record_limit(max_size);
	px.max_payload = px.limit;
	px.org =
	    channel_org != NULL && channel_org[0] != '\0' ? channel_org : NULL;
	px.err = err;
	px.errlen = errlen;
	return parse_record(ev, buf, len, &px);
}

int
event_parse(struct event *ev, const char *buf, size_t len, size_t max_size,
	    char *err, size_t errlen)
{
	return event_parse_ctx(ev, buf, len, max_size, NULL, err, errlen);
}

int
event_parse_queue_body(struct event *ev, const char *buf, size_t len,
		       size_t max_size, char *err, size_t errlen)
{
	struct pctx px;

	px.max_payload = record_limit(max_size);
	px.limit = record_limit(px.max_payload + EVENT_QUEUE_BODY_SLACK);
	px.org = NULL;
	px.err = err;
	px.errlen = errlen;
	return parse_record(ev, buf, len, &px);
}

void
event_free(struct event *ev)
{
	UTIL_FREE(ev->payload);
	ev->payload_len = 0;
}

/* ---- output ------------------------------------------------------------ */

/* Room for s as a JSON string: each byte escapes to at most 6 (\u00XX). */
static size_t
str_room(const char *s)
{
	return 6 * strlen(s) + 2;
}

/* The variable part shared by the message and the queue body. */
static size_t
fields_room(const struct event *ev)
{
	return str_room(ev->id) + str_room(ev->type) + str_room(ev->orch) +
	       str_room(ev->daemon) + str_room(ev->org) +
	       str_room(ev->workspace) + str_room(ev->channel) +
	       ev->payload_len;
}

size_t
event_message_size_hint(const struct event *ev)
{
	return EVENT_FIXED_OVERHEAD + fields_room(ev);
}

size_t
event_queue_body_size_hint(const struct event *ev)
{
	return EVENT_FIXED_OVERHEAD + fields_room(ev);
}

/* "key":"s" if s is not empty. */
static void
w_opt(struct json_writer *jw, const char *key, const char *s)
{
	if (s[0] == '\0')
		return;
	json_w_key(jw, key);
	json_w_str(jw, s);
}

int
event_payload_write(const struct event *ev, uint64_t seq,
		    struct json_writer *jw)
{
	if (ev->payload == NULL)
		return -1;
	json_w_obj_begin(jw);
	json_w_key(jw, "eventId");
	json_w_str(jw, ev->id);
	json_w_key(jw, "eventType");
	json_w_str(jw, ev->type);
	json_w_key(jw, "data");
	json_w_raw(jw, ev->payload, ev->payload_len);
	json_w_key(jw, "requiresAck");
	json_w_bool(jw, ev->requires_ack);
	if (seq > 0) {
		json_w_key(jw, "seq");
		json_w_uint(jw, seq);
	}
	json_w_key(jw, "priority");
	json_w_int(jw, ev->priority);
	w_opt(jw, "channelId", ev->channel);
	json_w_key(jw, "occurredAt");
	json_w_timestamp(jw, ev->ts_ms);
	/* Extension: the record's target, so a daemon can tell broadcasts. */
	w_opt(jw, "orchestratorId", ev->orch);
	w_opt(jw, "organizationId", ev->org);
	w_opt(jw, "workspaceId", ev->workspace);
	w_opt(jw, "daemonId", ev->daemon);
	/* Errors are sticky: the last call tells about all of them. */
	return json_w_obj_end(jw);
}

/*
 * The envelope around event_payload_write(), so that a WebSocket event and
 * an entry of GET /api/daemon/events never differ.
 */
size_t
event_message(const struct event *ev, uint64_t seq, char *out, size_t cap)
{
	struct json_writer jw;
	char id[37];
	size_t len;

	json_uuid_v4(id);
	json_w_init(&jw, out, cap);
	json_w_obj_begin(&jw);
	json_w_key(&jw, "type");
	json_w_str(&jw, "event");
	json_w_key(&jw, "id");
	json_w_str(&jw, id);
	json_w_key(&jw, "timestamp");
	json_w_timestamp(&jw, util_wall_ms());
	json_w_key(&jw, "payload");
	event_payload_write(ev, seq, &jw);
	json_w_obj_end(&jw);
	if (ev->payload == NULL || json_w_finish(&jw, &len) != 0)
		return 0;
	return len;
}

size_t
event_queue_body(const struct event *ev, char *out, size_t cap)
{
	struct json_writer jw;
	size_t len;

	json_w_init(&jw, out, cap);
	json_w_obj_begin(&jw);
	json_w_key(&jw, "id");
	json_w_str(&jw, ev->id);
	json_w_key(&jw, "type");
	json_w_str(&jw, ev->type);
	json_w_key(&jw, "orchestratorId");
	json_w_str(&jw, ev->orch);
	w_opt(&jw, "daemonId", ev->daemon);
	w_opt(&jw, "organizationId", ev->org);
	w_opt(&jw, "workspaceId", ev->workspace);
	w_opt(&jw, "channelId", ev->channel);
	json_w_key(&jw, "payload");
	json_w_raw(&jw, ev->payload, ev->payload_len);
	json_w_key(&jw, "timestamp");
	json_w_timestamp(&jw, ev->ts_ms);
	json_w_key(&jw, "requiresAck");
	json_w_bool(&jw, ev->requires_ack);
	json_w_key(&jw, "priority");
	json_w_int(&jw, ev->priority);
	json_w_obj_end(&jw);
	if (ev->payload == NULL || json_w_finish(&jw, &len) != 0)
		return 0;
	return len;
}

/* ---- routing ----------------------------------------------------------- */

enum event_target
event_target(const struct event *ev)
{
	return ev->target;
}

int
event_targets_orchestrator(const struct event *ev, const char *orch,
			   const char *org)
{
	int known = org != NULL && org[0] != '\0';

	switch (ev->target) {
	case EVENT_TARGET_ORCHESTRATOR:
		if (orch == NULL || strcmp(ev->orch, orch) != 0)
			return 0;
		return ev->org[0] == '\0' || !known ||
		       strcmp(ev->org, org) == 0;
	case EVENT_TARGET_ORGANIZATION:
		return known && strcmp(ev->org, org) == 0;
	case EVENT_TARGET_ALL:
		return 1;
	}
	return 0;
}

int
event_targets_daemon(const struct event *ev, const char *daemon)
{
	if (ev->daemon[0] == '\0')
		return 1;
	return daemon != NULL && strcmp(ev->daemon, daemon) == 0;
}

const char *
event_scope(const struct event *ev)
{
	return sub_scope_for(ev->type);
}
