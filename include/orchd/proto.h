/*
 * proto: the daemon protocol on ws_path (PROTOCOL.md sections 2-5 and 8).
 *
 * A connection upgraded on ws_path gets a struct proto_conn.  Client
 * messages are parsed (JSON envelope), rate limited, and dispatched: auth
 * (JWT, revocation check in Redis, quota slot in the shared registry,
 * session keys in Redis), heartbeat, subscribe, unsubscribe, ack.
 * Deadlines (auth timeout, heartbeat timeout, token expiry) ride on the
 * connection's timer through proto_next_deadline()/proto_on_deadline().
 */
#ifndef ORCHD_PROTO_H
#define ORCHD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "orchd/jwt.h"
#include "orchd/ratelimit.h"
#include "orchd/registry.h"
#include "orchd/sub.h"

struct conn;
struct directory_members;
struct worker;

/* Close codes of PROTOCOL.md section 5. */
#define PROTO_CLOSE_AUTH_FAILED 4001
#define PROTO_CLOSE_AUTH_TIMEOUT 4002
#define PROTO_CLOSE_TOKEN_EXPIRED 4003
#define PROTO_CLOSE_RATE_LIMITED 4004
#define PROTO_CLOSE_SCOPE 4005
#define PROTO_CLOSE_TERMINATED 4006
#define PROTO_CLOSE_HEARTBEAT 4007

/* Known scopes, as bits. */
#define PROTO_SCOPE_MESSAGES 0x01u
#define PROTO_SCOPE_CHANNELS 0x02u
#define PROTO_SCOPE_PRESENCE 0x04u
#define PROTO_SCOPE_VP 0x08u
#define PROTO_SCOPE_CALLS 0x10u

enum proto_state {
	PROTO_UNAUTH = 0, /* waiting for auth */
	PROTO_AUTHING,    /* auth checks in flight (Redis, directory) */
	PROTO_AUTHED,
};

struct proto_conn {
	enum proto_state state;
	int ended; /* close handshake started: no deadlines, no messages */
	unsigned scope_mask;
	uint64_t conn_id; /* registry connection id */
	uint64_t auth_deadline_ms;
	uint64_t hb_deadline_ms;
	uint64_t token_exp_ms;
	uint64_t last_hb_ms;
	uint64_t connected_wall_ms;
	int has_slot;
	uint32_t slot;
	char connection_id[37]; /* uuid, the session key */
	char session_id[37];
	char orch[REGISTRY_ID_MAX];
	char daemon[REGISTRY_ID_MAX];
	char org[REGISTRY_ID_MAX];
	char workspace[REGISTRY_ID_MAX];
	char user[REGISTRY_ID_MAX]; /* the directory's user id; "" without */
	/* The token's jti ("" without), for revocation by an operator. */
	char jti[JWT_ID_SIZE];
	/* deliver.c: user's channels (a reference); NULL: directory off */
	struct directory_members *members;
	struct sub sub;
	struct ratelimit rl;
	uint64_t over_since_ms; /* first rate_limit warning of this burst */
	unsigned window_count;  /* messages in the current minute */
	uint64_t window_start_ms;
	struct proto_pending *pending; /* auth in flight */
	/*
	 * Messages that arrived while auth was in flight, replayed in order
	 * once it is decided (bounded: PROTO_HELD_MAX messages).
	 */
	struct proto_held *held, **held_tail;
	unsigned nheld;
	/* deliver.c: its indexes of the worker's connections, and the replay. */
	int indexed;
	struct deliver_orch *orch_entry;
	struct conn *orch_prev, *orch_next; /* same orchestrator */
	struct conn *all_prev, *all_next;   /* every indexed connection */
	struct deliver_replay *replay;
	struct proto_success *success; /* auth_success waits for the queue */
};

#define PROTO_HELD_MAX 32

void proto_attach(struct conn *c);
void proto_detach(struct conn *c);
/*
 * The WebSocket is closing: give back the quota slot and remove the session
 * keys now, not when TCP finally closes.  The state stays until detach.
 */
void proto_end(struct conn *c);
/*
 * Ask an authenticated daemon to reconnect after delay_ms (drain).  0, or
 * -1 when the connection is not an authenticated, open one.
 */
int proto_send_reconnect(struct conn *c, const char *reason,
			 uint64_t delay_ms);
/* One whole text message from the client. */
void proto_message(struct conn *c, const uint8_t *data, size_t len);
/* Earliest protocol deadline (monotonic ms), 0 if none. */
uint64_t proto_next_deadline(const struct conn *c);
/* The connection timer fired at now_ms: act on what is due. */
void proto_on_deadline(struct conn *c, uint64_t now_ms);

#endif
