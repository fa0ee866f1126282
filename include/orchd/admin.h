/*
 * admin: the admin unix socket (orchd.8, ADMIN SOCKET; the client is
 * orchctl).
 *
 * The supervisor creates the socket (admin_listen()) before it forks and
 * removes it on stop (admin_unlink()); the relay process serves it
 * (admin_new()): one JSON object per line in, exactly one JSON line out per
 * request, in order.  The relay has what the commands need: the registry
 * and shm counters (status, connections), the Redis client (revoke,
 * publish), and a pipe to every worker, on which kick, log level and drain
 * travel as IPC frames (ipc.h).
 *
 * The pure part -- parsing and checking a request, rendering replies -- is
 * in admin_proto.c, apart from the socket I/O in admin.c, so that
 * tests/check_admin.c tests it without sockets.
 *
 * Bounds: ADMIN_MAX_CLIENTS clients at once (one more is accepted, told
 * "too many admin clients" and closed); ADMIN_LINE_MAX bytes per request
 * line (more: "line too long", then close); a reply is at most
 * ADMIN_REPLY_MAX bytes (a connections listing stops short and says
 * "truncated"); a client that neither sends nor reads for ADMIN_IDLE_MS is
 * closed.  The relay never blocks on a client: writes are non-blocking, and
 * a client is not read while a reply to it is still unwritten.
 */
#ifndef ORCHD_ADMIN_H
#define ORCHD_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "orchd/jwt.h"
#include "orchd/registry.h"

struct config;
struct redis;
struct shm_segment;
struct registry_stats;

#define ADMIN_MAX_CLIENTS 16
#define ADMIN_LINE_MAX (64 * 1024) /* bytes of one request, without \n */
#define ADMIN_REPLY_MAX (16 * 1024 * 1024)
#define ADMIN_IDLE_MS 60000
#define ADMIN_LIST_DEFAULT 1000 /* connections listed without "limit" */
#define ADMIN_LIST_MAX 100000
#define ADMIN_REASON_MAX 123 /* a kick's close reason (WebSocket limit) */
#define ADMIN_BACKLOG 16     /* listen(2) backlog */

enum admin_cmd {
	ADMIN_STATUS = 1,
	ADMIN_CONNECTIONS,
	ADMIN_KICK,
	ADMIN_REVOKE,
	ADMIN_PUBLISH,
	ADMIN_LOGLEVEL,
	ADMIN_DRAIN,
};

/* admin_request.has: the optional fields present. */
#define ADMIN_HAS_ORCH 0x01u
#define ADMIN_HAS_DAEMON 0x02u
#define ADMIN_HAS_ORG 0x04u
#define ADMIN_HAS_WORKER 0x08u
#define ADMIN_HAS_CONN 0x10u
#define ADMIN_HAS_LEVEL 0x20u
#define ADMIN_HAS_REASON 0x40u

struct admin_request {
	enum admin_cmd cmd;
	unsigned has; /* ADMIN_HAS_* */
	char orchestrator[REGISTRY_ID_MAX];
	char daemon[REGISTRY_ID_MAX];
	char organization[REGISTRY_ID_MAX];
	unsigned worker;      /* connections filter; drain */
	unsigned conn_worker; /* "connection": "<worker>:<conn_id>" */
	uint64_t conn_id;
	unsigned limit; /* connections */
	int level;      /* loglevel: LOG_ERR..LOG_DEBUG */
	char reason[ADMIN_REASON_MAX + 1];
	char jti[JWT_ID_SIZE];
	/* publish: the event record's exact text, inside the request line. */
	const char *event;
	size_t event_len;
};

/*
 * Parse and check one request line (without its newline).  max_event_size
 * bounds a publish's record, which is validated by event_parse() exactly as
 * the relay will when it comes back from Redis.  0, or -1 with a reason for
 * the client in err.  Unknown fields are refused: a misspelt selector must
 * not widen a kick.
 */
int admin_request_parse(const char *line, size_t len, size_t max_event_size,
			struct admin_request *rq, char *err, size_t errlen);
/* Does a registry entry match the request's selectors/filters? */
int admin_entry_matches(const struct admin_request *rq,
			const struct registry_entry *e);

/* "error" ... "debug" for LOG_ERR ... LOG_DEBUG; -1 / NULL if none. */
int admin_level_parse(const char *name);
const char *admin_level_name(int level);

/*
 * Replies.  Each writes one whole line (with its \n) into out[0..cap) and
 * returns its length, or 0 if cap is too small.
 */
size_t admin_reply_error(char *out, size_t cap, const char *msg);
/* {"ok":true,"<key>":<v>} */
size_t admin_reply_uint(char *out, size_t cap, const char *key, uint64_t v);
/* {"ok":true,"level":"<name>"} */
size_t admin_reply_level(char *out, size_t cap, int level);
/* revoke: {"ok":true,"closed":workers told,"workers":same,"added":bool} */
size_t admin_reply_revoke(char *out, size_t cap, unsigned workers, int added);

/*
 * The connections listing, built entry by entry into a caller buffer:
 * entries past `limit`, or that would take the line over cap, are counted
 * in total but not listed (truncated).  admin_list_end() returns the
 * line's offset in buf (*len its length), or -1 if cap cannot even hold
 * an empty listing.
 */
struct admin_list {
	char *buf;
	size_t cap, len;
	unsigned limit, total, listed;
	int truncated;
};
void admin_list_begin(struct admin_list *l, char *buf, size_t cap,
		      unsigned limit);
void admin_list_add(struct admin_list *l, const struct registry_entry *e);
long admin_list_end(struct admin_list *l, size_t *len);

/* What the status reply says beyond the shared counters. */
/*
 * {"ok":true,"log_level":"info","stats":STATS} and a newline, STATS being
 * the /stats document (metrics_render_json()) as is; 0 if it does not fit.
 */
size_t admin_render_status(char *out, size_t cap, const char *stats,
			   size_t stats_len, int log_level);

/* ---- supervisor side: the socket file -------------------------------------
 */

/*
 * Create the listening socket at path with mode: refuse (-1, logged) when
 * another process answers on it, or when path exists and is not a socket;
 * remove a stale socket file.  The fd is non-blocking and close-on-exec;
 * *ino receives the socket file's inode (see admin_unlink()).
 */
int admin_listen(const char *path, unsigned mode, ino_t *ino);
/* Remove path if it is still the socket file with inode ino. */
void admin_unlink(const char *path, ino_t ino);

/* ---- relay side: the server ---------------------------------------------- */

/*
 * What the server needs from the relay.  send() queues one IPC frame on
 * the pipes of the workers of `slot` (-1: every worker), only the one of
 * `pid` if pid != 0, and returns on how many pipes it was queued.
 * worker_pid() is the pid of the worker in slot now (0: none).  drain()
 * tells the supervisor that the worker (slot, pid) drains and needs a
 * replacement; 0 or -1.
 */
struct admin_env {
	struct ev_loop *loop;
	const struct config *cfg;
	struct shm_segment *shm;
	struct registry *registry;
	struct redis *redis;
	unsigned (*send)(const uint8_t *frame, size_t len, int slot, pid_t pid);
	pid_t (*worker_pid)(int slot);
	int (*drain)(int slot, pid_t pid);
};

struct admin;

/* Serve the listening socket fd (may be -1: nothing to serve yet). */
struct admin *admin_new(const struct admin_env *env, int fd);
/*
 * A new listening socket (reload changed the path; -1: admin_socket was
 * removed): the old one is closed, connected clients stay.
 */
void admin_set_listener(struct admin *a, int fd);
/* Close every client and the listener; replies due from Redis are lost. */
void admin_free(struct admin *a);

#endif
