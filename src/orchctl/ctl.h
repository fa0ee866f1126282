/*
 * ctl: orchctl's pure logic, without I/O, unit-tested by tests/check_orchctl.
 *
 *  - admin requests: command-line arguments -> one request line (JSON) of
 *    the admin socket protocol (ctl_req.c);
 *  - admin replies: reply JSON -> tables for people (ctl_render.c);
 *  - event records and token claims (ctl_req.c);
 *  - the listen client's rules: backoff, what a close code means, dedupe by
 *    eventId, the messages it sends and reads (ctl_proto.c).
 *
 * Builders write into a caller buffer and return the length written (no NUL
 * counted, but one is always written when cap > 0), or -1 when an argument
 * is invalid or the buffer is too small; err (when given) says why.
 */
#ifndef ORCHCTL_CTL_H
#define ORCHCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "orchd/event.h"

/* The admin socket protocol's line limit (interfaces, section 3). */
#define CTL_ADMIN_LINE_MAX (64 * 1024)
/* Largest reply orchctl reads (a connections list of 100000 entries). */
#define CTL_ADMIN_REPLY_MAX (32 * 1024 * 1024)

/* ---- admin requests (ctl_req.c) ---------------------------------------- */

/* {"cmd":"<cmd>"}: status, loglevel without a level. */
int ctl_req_simple(char *out, size_t cap, const char *cmd);
/* worker < 0 and limit 0 are "not given"; strings may be NULL. */
int ctl_req_connections(char *out, size_t cap, const char *orch,
			const char *org, long worker, unsigned long limit);
/* At least one of orch and conn; daemon needs orch; conn is "W:ID". */
int ctl_req_kick(char *out, size_t cap, const char *orch, const char *daemon,
		 const char *conn, const char *reason, char *err,
		 size_t errlen);
/* ttl 0: not given. */
int ctl_req_revoke(char *out, size_t cap, const char *jti, uint64_t ttl,
		   char *err, size_t errlen);
/* level NULL: ask; else one of error, warning, notice, info, debug. */
int ctl_req_loglevel(char *out, size_t cap, const char *level, char *err,
		     size_t errlen);
int ctl_req_drain(char *out, size_t cap, long worker);

/*
 * Check a reply line: a JSON object with a bool "ok".  Returns 1 for ok,
 * 0 for a failure (err gets the reply's "error"), -1 for a reply that does
 * not follow the protocol (err says how).
 */
int ctl_reply_ok(const char *buf, size_t len, char *err, size_t errlen);

/* ---- rendering (ctl_render.c) ------------------------------------------ */

/* "850ms", "12s", "5m07s", "3h05m", "2d03h". */
void ctl_fmt_duration(uint64_t ms, char *buf, size_t len);
/*
 * The status reply ({"ok":true,"stats":{...}}) as a compact table: a
 * summary line per section, then one line per worker.  Fields missing from
 * the reply print as "-".  Returns 0, or -1 if the reply is not JSON.
 */
int ctl_render_status(const char *buf, size_t len, FILE *out);
/* The connections reply as a table; ages relative to now_ms. */
int ctl_render_connections(const char *buf, size_t len, uint64_t now_ms,
			   FILE *out);

/* ---- event records and tokens (ctl_req.c) ------------------------------ */

struct ctl_event_args {
	const char *id; /* NULL: a fresh UUID v4 */
	const char *type;
	const char *orch; /* NULL or "" or "*": broadcast */
	const char *daemon;
	const char *org;
	const char *workspace;
	const char *channel;   /* channelId */
	const char *data;      /* a JSON object's text; NULL: {} */
	const char *timestamp; /* RFC 3339; NULL: now_ms */
	uint64_t now_ms;
	int priority;
	bool requires_ack;
};

/*
 * The event record PROTOCOL.md section 6 defines, checked with the relay's
 * own parser (event_parse()) so that what orchctl publishes is accepted.
 * The record's id is copied to id_out (EVENT_ID_MAX bytes).
 */
int ctl_event_record(const struct ctl_event_args *a, char *out, size_t cap,
		     char id_out[EVENT_ID_MAX], char *err, size_t errlen);

#define CTL_SCOPES_MAX 32

struct ctl_token_args {
	const char *orch; /* sub and orchestratorId */
	const char *daemon;
	const char *org;
	const char *workspace;
	const char *jti; /* NULL: a fresh UUID v4 */
	const char *iss; /* NULL: none */
	const char *aud;
	const char *scopes[CTL_SCOPES_MAX];
	size_t nscopes;
	int64_t iat;  /* seconds since the epoch */
	uint64_t ttl; /* seconds; exp = iat + ttl */
};

/* The access token's claims (PROTOCOL.md section 8); jti_out gets the jti. */
int ctl_token_claims(const struct ctl_token_args *a, char *out, size_t cap,
		     char *jti_out, size_t jti_cap, char *err, size_t errlen);
/*
 * Split a comma-separated list in place into v (empty items skipped).
 * Returns the number of items, or -1 if there are more than max.
 */
int ctl_split_list(char *s, const char **v, size_t max);

/*
 * Read orchestratorId (else sub) and daemonId from a token's payload,
 * without verifying it (listen --token without -o/-d).  0 or -1.
 */
int ctl_token_peek(const char *token, char *orch, size_t orch_cap, char *daemon,
		   size_t daemon_cap);

/* ---- the listen client (ctl_proto.c) ----------------------------------- */

#define CTL_BACKOFF_BASE_MS 1000
#define CTL_BACKOFF_CAP_MS 60000

/*
 * Exponential backoff with full jitter: a delay drawn from
 * 0..min(cap, base * 2^attempt) with rnd (uniform 32 bits).
 */
uint64_t ctl_backoff_ms(unsigned attempt, uint32_t rnd);

enum ctl_close_action {
	CTL_CLOSE_RECONNECT = 0, /* back off and connect again */
	CTL_CLOSE_REAUTH,        /* needs a fresh token, then as RECONNECT */
	CTL_CLOSE_STOP,          /* do not reconnect: exit 1 */
};

/*
 * What the client does after the server closed with code (1006: no close
 * frame, the connection broke).  See orchctl(1), "listen".
 */
enum ctl_close_action ctl_close_action(unsigned code);

/*
 * Remembers the last eventIds seen, in two generations of at most gen_cap
 * ids each: when the current one fills up, the older is dropped.  So at
 * least the last gen_cap ids are always remembered, and memory is bounded
 * by 2 * gen_cap ids.
 */
struct ctl_dedupe {
	char **gen[2];
	size_t slots; /* hash slots per generation (a power of 2) */
	size_t n[2];
	size_t gen_cap;
	int cur;
};

int ctl_dedupe_init(struct ctl_dedupe *d, size_t gen_cap);
void ctl_dedupe_free(struct ctl_dedupe *d);
/* 1 if id was seen already, else remembers it and returns 0; -1 on ENOMEM. */
int ctl_dedupe_check(struct ctl_dedupe *d, const char *id);

/*
 * Which seq to resume from.  The protocol has no reply to an ack, so an
 * ack written just before a connection broke may be lost; resuming from
 * the last seq processed would then skip the event for good (it stays
 * queued, unacked).  A heartbeat_ack does answer: messages on one
 * connection are handled in order, so once the answer to a heartbeat sent
 * after an ack arrives, the server has that ack.  resumeFrom is the last
 * seq processed before such a heartbeat; later events come back in the
 * replay and are recognised by their eventId.
 */
#define CTL_RESUME_HB_MAX 8

struct ctl_resume {
	uint64_t processed; /* the highest seq printed (and acked) */
	uint64_t confirmed; /* the highest seq whose ack is known to arrive */
	uint64_t hb[CTL_RESUME_HB_MAX]; /* processed at each heartbeat sent */
	unsigned nhb;                   /* heartbeats awaiting their answer */
};

void ctl_resume_processed(struct ctl_resume *r, uint64_t seq);
void ctl_resume_heartbeat_sent(struct ctl_resume *r);
void ctl_resume_heartbeat_ack(struct ctl_resume *r);
/* A new connection: answers to the old one's heartbeats never come. */
void ctl_resume_new_connection(struct ctl_resume *r);

/* Client messages, with the envelope's id and timestamp (now_ms). */
int ctl_msg_auth(char *out, size_t cap, uint64_t now_ms, const char *token,
		 const char *orch, const char *daemon, uint64_t resume_from);
int ctl_msg_subscribe(char *out, size_t cap, uint64_t now_ms,
		      const char *const *types, size_t ntypes);
int ctl_msg_heartbeat(char *out, size_t cap, uint64_t now_ms);
int ctl_msg_ack(char *out, size_t cap, uint64_t now_ms, const char *event_id);

#define CTL_MSG_TYPE_MAX 32
#define CTL_MSG_TEXT_MAX 256

/* A server message, as far as the client needs it. */
struct ctl_server_msg {
	char type[CTL_MSG_TYPE_MAX];
	/* event */
	char event_id[EVENT_ID_MAX];
	uint64_t seq; /* 0: none */
	bool requires_ack;
	const char *payload; /* the payload object's text, inside the input */
	size_t payload_len;
	/* auth_success */
	uint64_t heartbeat_ms;
	/* reconnect */
	uint64_t delay_ms;
	/* auth_error, error: code and message; reconnect: reason */
	char code[CTL_MSG_TYPE_MAX];
	char text[CTL_MSG_TEXT_MAX];
};

/* 0, or -1 if buf is not a message (err says why). */
int ctl_parse_server_msg(const char *buf, size_t len, struct ctl_server_msg *m,
			 char *err, size_t errlen);

#define CTL_URL_HOST_MAX 256
#define CTL_URL_PATH_MAX 1024

struct ctl_url {
	int tls;                     /* wss:// */
	char host[CTL_URL_HOST_MAX]; /* without the [] of an IPv6 address */
	int port;                    /* 80 / 443 when not given */
	char path[CTL_URL_PATH_MAX]; /* "/" when not given; query included */
};

/* ws://HOST[:PORT][/PATH] or wss://...; 0, or -1 with err. */
int ctl_parse_ws_url(const char *url, struct ctl_url *u, char *err,
		     size_t errlen);

/*
 * Check the head of the upgrade response (status line and headers, up to
 * the empty line): 1 for "101" with the Sec-WebSocket-Accept that key
 * calls for, 0 for another status (*status set; err gets the status line),
 * -1 for a malformed head or a wrong accept value.
 */
int ctl_ws_check_response(const char *head, size_t len, const char *key,
			  int *status, char *err, size_t errlen);

/*
 * Copy JSON text without the whitespace outside strings, so that a value
 * prints on one line.  out needs len + 1 bytes; returns the length.
 */
size_t ctl_json_compact(const char *in, size_t len, char *out);

#endif
