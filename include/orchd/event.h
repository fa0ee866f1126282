/*
 * event: event records (PROTOCOL.md section 6) and the `event` message
 * (section 4), pure code.
 *
 * A publisher puts an event record on Redis (the channels daemon:events and
 * daemon:events:{organizationId}, or the stream daemon:stream).
 * event_parse() validates one and copies it into a struct event that owns
 * all its memory, so it outlives the input buffer.  A record that is
 * refused yields a kind (enum event_kind, 1..EVENT_NKINDS-1) so that the
 * relay can count refusals per kind and log once per kind, plus a short
 * message that names the field but never quotes the (untrusted) value.
 *
 * Record fields ("null" counts as absent for every optional field; unknown
 * fields are ignored; with duplicate keys the first one wins):
 *
 *   id              required, 1..128 bytes of printable ASCII (0x20-0x7e)
 *   type            required, an exact type: sub_pattern_valid(), no '*'
 *   orchestratorId  0..63 bytes; absent, "" or "*": broadcast
 *   daemonId        0..63 bytes; non-empty targets one daemon and needs a
 *                   non-empty orchestratorId (not "*")
 *   organizationId  0..63 bytes; on daemon:events:{org} it must equal the
 *                   channel's org when present and is taken from it when
 *                   absent
 *   workspaceId     0..63 bytes
 *   channelId       sub_channel_valid(), or "" for none
 *   payload         required object, kept as its exact source text
 *   timestamp       RFC 3339 string (json_parse_iso8601_ms()); absent: now
 *   requiresAck     bool, default false
 *   priority        integer -100..100, default 0
 *
 * The 63-byte ids follow the auth message's rule (any string of 1..63
 * bytes, section 3 / REGISTRY_ID_MAX), so every orchestrator that can
 * authenticate can be addressed.
 *
 * Target: orchestratorId names one orchestrator; a broadcast with an
 * organizationId (given or taken from the channel) reaches every
 * orchestrator of that organization; a broadcast without one (global
 * channel or stream) reaches every orchestrator.
 *
 * The `event` message (event_message()) is
 *
 *   {"type":"event","id":"<uuid v4>","timestamp":"<now>","payload":{
 *    "eventId","eventType","data" (the payload's exact text),
 *    "requiresAck", "seq" (if > 0), "priority", "channelId" (if any),
 *    "occurredAt" (the record's timestamp), and -- an additive extension of
 *    section 4 -- "orchestratorId", "organizationId", "workspaceId",
 *    "daemonId" when non-empty}}
 *
 * The durable queue stores event_queue_body(): the record itself in normal
 * form (id, type, orchestratorId ("" for a broadcast), the other ids and
 * channelId when non-empty, payload, timestamp with ms precision,
 * requiresAck, priority; organizationId as filled from the channel), which
 * event_parse_queue_body() reads back into an equal struct event.
 */
#ifndef ORCHD_EVENT_H
#define ORCHD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_writer;

#define EVENT_DEFAULT_MAX_SIZE (64 * 1024) /* one record, bytes */
#define EVENT_ID_MAX 129                   /* id: <= 128 bytes + NUL */
#define EVENT_TYPE_MAX 65                  /* SUB_MAX_LEN + NUL */
#define EVENT_REF_MAX 64     /* orchestrator, daemon, org, workspace + NUL */
#define EVENT_CHANNEL_MAX 65 /* SUB_MAX_LEN + NUL */
#define EVENT_PRIORITY_MIN (-100)
#define EVENT_PRIORITY_MAX 100
/* json nesting allowed in a record (the record itself is level 1). */
#define EVENT_MAX_DEPTH 64

/* Why a record was refused: 0 is success, each kind is a counter index. */
enum event_kind {
	EVENT_OK = 0,
	EVENT_ETOOBIG,  /* longer than max_size */
	EVENT_EJSON,    /* not JSON, or not an object */
	EVENT_EID,      /* id missing, empty, too long, not printable */
	EVENT_ETYPE,    /* type missing or not an exact event type */
	EVENT_ETARGET,  /* orchestratorId/daemonId/organizationId */
	EVENT_EPAYLOAD, /* payload missing or not an object */
	EVENT_EFIELD,   /* workspaceId, channelId, timestamp, requiresAck,
			   priority */
	EVENT_NKINDS
};

/* Short name of a kind for logs and metric labels ("too_big", "json"...). */
const char *event_kind_name(int kind);

enum event_target {
	EVENT_TARGET_ORCHESTRATOR = 0, /* orch names it */
	EVENT_TARGET_ORGANIZATION,     /* every orchestrator of org */
	EVENT_TARGET_ALL,              /* every orchestrator */
};

struct event {
	char id[EVENT_ID_MAX];
	char type[EVENT_TYPE_MAX];
	char orch[EVENT_REF_MAX]; /* "" for a broadcast ("*" is normalized) */
	char daemon[EVENT_REF_MAX];
	char org[EVENT_REF_MAX];
	char workspace[EVENT_REF_MAX];
	char channel[EVENT_CHANNEL_MAX]; /* "" if none */
	char *payload;      /* malloc'ed, NUL-terminated source text of {} */
	size_t payload_len; /* without the NUL; <= max_size */
	uint64_t ts_ms;     /* wall-clock ms: the record's timestamp or now */
	int priority;
	bool requires_ack;
	enum event_target target;
};

/*
 * Parse one record buf[0..len) (need not be NUL-terminated).  max_size 0
 * means EVENT_DEFAULT_MAX_SIZE.  Returns EVENT_OK or an enum event_kind;
 * err (if errlen > 0) receives a message naming the field.  ev needs no
 * initialisation and owns nothing on error; on success free it with
 * event_free().
 */
int event_parse(struct event *ev, const char *buf, size_t len, size_t max_size,
		char *err, size_t errlen);
/*
 * The same for a record read from daemon:events:{channel_org}: its
 * organizationId must equal channel_org when present, and is set to it when
 * absent.  channel_org NULL or "" is the global channel (or the stream):
 * event_parse().
 */
int event_parse_ctx(struct event *ev, const char *buf, size_t len,
		    size_t max_size, const char *channel_org, char *err,
		    size_t errlen);
/* Free the payload copy; ev may be parsed again.  Safe on a zeroed ev. */
void event_free(struct event *ev);

/*
 * The `event` message for ev with sequence number seq (0: none), with a
 * fresh uuid and the current time: build it once and send the same bytes to
 * every recipient.  Returns its length (not NUL-terminated), or 0 if cap is
 * too small; event_message_size_hint() is always enough.
 */
size_t event_message(const struct event *ev, uint64_t seq, char *out,
		     size_t cap);
size_t event_message_size_hint(const struct event *ev);
/*
 * The message's "payload" object alone (the same bytes event_message()
 * writes there), as one value into jw: at the top, as an array element or
 * after a key.  GET /api/daemon/events lists these.  Returns 0, or -1 if
 * jw is in error afterwards (no room, no value due) or ev has no payload
 * (then nothing is written).  event_message_size_hint() is always enough
 * room for one.
 */
int event_payload_write(const struct event *ev, uint64_t seq,
			struct json_writer *jw);

/* Routing. */
enum event_target event_target(const struct event *ev);
/*
 * Does ev reach orchestrator orch of organization org (org NULL or "" if
 * unknown)?  A targeted event also needs its organizationId, if any, to
 * equal org when org is known; an organization broadcast needs org known
 * and equal.
 */
int event_targets_orchestrator(const struct event *ev, const char *orch,
			       const char *org);
/* Does ev reach daemon (it targets no daemon, or exactly that one)? */
int event_targets_daemon(const struct event *ev, const char *daemon);
/* The scope needed to receive ev (sub_scope_for()), NULL if none. */
const char *event_scope(const struct event *ev);

/*
 * Durable queue body: the record in normal form (see above).  Returns its
 * length (not NUL-terminated) or 0 if cap is too small;
 * event_queue_body_size_hint() is always enough.
 */
size_t event_queue_body(const struct event *ev, char *out, size_t cap);
size_t event_queue_body_size_hint(const struct event *ev);
/*
 * Read a body back (the replay path).  max_size as for event_parse() (the
 * limit that admitted the record): a body may exceed it by
 * EVENT_QUEUE_BODY_SLACK bytes, the fields the normal form adds.
 */
#define EVENT_QUEUE_BODY_SLACK 1024
int event_parse_queue_body(struct event *ev, const char *buf, size_t len,
			   size_t max_size, char *err, size_t errlen);

#endif
