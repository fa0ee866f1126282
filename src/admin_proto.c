/*
 * admin_proto: the pure half of the admin socket -- requests parsed and
 * checked, replies rendered.  No I/O; see admin.h for the protocol and
 * admin.c for the server.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "orchd/admin.h"
#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/log.h"
#include "orchd/registry.h"
#include "orchd/shm.h"
#include "orchd/util.h"

/* Fields, as bits of a command's allowed set. */
enum {
	F_ORCH = 0x001,
	F_DAEMON = 0x002,
	F_ORG = 0x004,
	F_WORKER = 0x008,
	F_CONN = 0x010,
	F_LIMIT = 0x020,
	F_REASON = 0x040,
	F_JTI = 0x080,
	F_TTL = 0x100,
	F_LEVEL = 0x200,
	F_EVENT = 0x400,
};

static const struct {
	const char *name;
	unsigned bit;
} fields[] = {
    {"orchestrator", F_ORCH}, {"daemon", F_DAEMON},   {"organization", F_ORG},
    {"worker", F_WORKER},     {"connection", F_CONN}, {"limit", F_LIMIT},
    {"reason", F_REASON},     {"jti", F_JTI},         {"ttl", F_TTL},
    {"level", F_LEVEL},       {"event", F_EVENT},
};

static const struct {
	const char *name;
	enum admin_cmd cmd;
	unsigned allowed;
} commands[] = {
    {"status", ADMIN_STATUS, 0},
    {"connections", ADMIN_CONNECTIONS,
     F_ORCH | F_DAEMON | F_ORG | F_WORKER | F_LIMIT},
    {"kick", ADMIN_KICK, F_ORCH | F_DAEMON | F_CONN | F_REASON},
    {"revoke", ADMIN_REVOKE, F_JTI | F_TTL},
    {"publish", ADMIN_PUBLISH, F_EVENT},
    {"loglevel", ADMIN_LOGLEVEL, F_LEVEL},
    {"drain", ADMIN_DRAIN, F_WORKER},
};

static const struct {
	const char *name;
	int level;
} levels[] = {
    {"error", LOG_ERR}, {"warn", LOG_WARNING}, {"notice", LOG_NOTICE},
    {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

int
admin_level_parse(const char *name)
{
	for (size_t i = 0; i < UTIL_NELEM(levels); i++)
		if (strcmp(levels[i].name, name) == 0)
			return levels[i].level;
	return -1;
}

const char *
admin_level_name(int level)
{
	for (size_t i = 0; i < UTIL_NELEM(levels); i++)
		if (levels[i].level == level)
			return levels[i].name;
	return NULL;
}

/* ---- requests ------------------------------------------------------------ */

struct pstate {
	const struct json_doc *d;
	char *err;
	size_t errlen;
};

static int fail(struct pstate *ps, const char *fmt, ...) ORCHD_PRINTF(2, 3);

static int
fail(struct pstate *ps, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ps->err, ps->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* A string of 1..cap-1 bytes into out. */
static int
get_str(struct pstate *ps, int tok, const char *name, char *out, size_t cap)
{
	size_t len = 0;

	if (json_type(ps->d, tok) != JSON_STRING ||
	    json_get_string(ps->d, tok, out, cap, &len) != 0 || len == 0) {
		snprintf(ps->err, ps->errlen,
			 "%s must be a string of 1..%zu bytes", name, cap - 1);
		return -1;
	}
	return 0;
}

static int
get_uint(struct pstate *ps, int tok, const char *name, uint64_t min,
	 uint64_t max, uint64_t *out)
{
	if (json_get_uint64(ps->d, tok, out) != 0 || *out < min || *out > max) {
		snprintf(ps->err, ps->errlen,
			 "%s must be an integer %" PRIu64 "..%" PRIu64, name,
			 min, max);
		return -1;
	}
	return 0;
}

/* "<worker>:<conn_id>", both decimal. */
static int
parse_conn(const char *s, unsigned *worker, uint64_t *id)
{
	char *end;
	unsigned long w;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	w = strtoul(s, &end, 10);
	if (errno != 0 || *end != ':' || w >= REGISTRY_MAX_WORKERS)
		return -1;
	s = end + 1;
	if (*s < '0' || *s > '9')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*worker = (unsigned)w;
	*id = v;
	return 0;
}

static int
parse_field(struct pstate *ps, struct admin_request *rq, unsigned bit, int v,
	    size_t max_event_size)
{
	const struct json_doc *d = ps->d;
	char buf[JWT_ID_SIZE];
	uint64_t u;

	switch (bit) {
	case F_ORCH:
		rq->has |= ADMIN_HAS_ORCH;
		return get_str(ps, v, "orchestrator", rq->orchestrator,
			       sizeof(rq->orchestrator));
	case F_DAEMON:
		rq->has |= ADMIN_HAS_DAEMON;
		return get_str(ps, v, "daemon", rq->daemon, sizeof(rq->daemon));
	case F_ORG:
		rq->has |= ADMIN_HAS_ORG;
		return get_str(ps, v, "organization", rq->organization,
			       sizeof(rq->organization));
	case F_WORKER:
		rq->has |= ADMIN_HAS_WORKER;
		if (get_uint(ps, v, "worker", 0, REGISTRY_MAX_WORKERS - 1, &u))
			return -1;
		rq->worker = (unsigned)u;
		return 0;
	case F_CONN:
		rq->has |= ADMIN_HAS_CONN;
		if (json_type(d, v) != JSON_STRING ||
		    json_get_string(d, v, buf, sizeof(buf), NULL) != 0 ||
		    parse_conn(buf, &rq->conn_worker, &rq->conn_id) != 0)
			return fail(ps, "%s must be \"<worker>:<conn_id>\"",
				    "connection");
		return 0;
	case F_LIMIT:
		if (get_uint(ps, v, "limit", 1, ADMIN_LIST_MAX, &u))
			return -1;
		rq->limit = (unsigned)u;
		return 0;
	case F_REASON:
		rq->has |= ADMIN_HAS_REASON;
		return get_str(ps, v, "reason", rq->reason, sizeof(rq->reason));
	case F_JTI:
		return get_str(ps, v, "jti", rq->jti, sizeof(rq->jti));
	case F_TTL:
		/*
		 * The revoked set has no per-member expiry (the TypeScript
		 * service and auth.c use a plain set), so a ttl could only be
		 * honoured by expiring every revocation at once.
		 */
		return fail(ps,
			    "%s is not supported: daemon:tokens:revoked "
			    "is a plain set, revocations do not expire",
			    "ttl");
	case F_LEVEL:
		if (json_type(d, v) != JSON_STRING ||
		    json_get_string(d, v, buf, sizeof(buf), NULL) != 0 ||
		    (rq->level = admin_level_parse(buf)) < 0)
			return fail(ps,
				    "%s must be error, warn, notice, info or "
				    "debug",
				    "level");
		rq->has |= ADMIN_HAS_LEVEL;
		return 0;
	case F_EVENT: {
		struct event ev;
		char eerr[160];
		int rc;

		if (json_type(d, v) != JSON_OBJECT ||
		    json_tok_raw(d, v, &rq->event, &rq->event_len) != 0)
			return fail(ps,
				    "%s must be an event record (an object)",
				    "event");
		/* The relay's own check: a bad record is refused here. */
		rc = event_parse(&ev, rq->event, rq->event_len, max_event_size,
				 eerr, sizeof(eerr));
		if (rc != EVENT_OK) {
			snprintf(ps->err, ps->errlen, "invalid event (%s): %s",
				 event_kind_name(rc), eerr);
			return -1;
		}
		event_free(&ev);
		return 0;
	}
	}
	return fail(ps, "internal error: field %s", "?");
}

int
admin_request_parse(const char *line, size_t len, size_t max_event_size,
		    struct admin_request *rq, char *err, size_t errlen)
{
	struct json_limits lim = {
	    .max_size = ADMIN_LINE_MAX,
	    .max_tokens = ADMIN_LINE_MAX / 2,
	    .max_depth = EVENT_MAX_DEPTH + 1,
	    .flags = JSON_REQUIRE_OBJECT,
	};
	struct json_doc d;
	struct pstate ps = {&d, err, errlen};
	char name[32];
	unsigned allowed = 0, seen = 0;
	int root, ctok, rc, ok = -1;
	size_t ci;

	memset(rq, 0, sizeof(*rq));
	rq->level = -1;
	rq->limit = ADMIN_LIST_DEFAULT;
	if ((rc = json_parse(&d, line, len, &lim)) != 0) {
		snprintf(err, errlen, "the request is not a JSON object (%s)",
			 json_strerror(rc));
		return -1;
	}
	root = json_root(&d);
	ctok = json_obj_get(&d, root, "cmd");
	if (ctok < 0 || json_type(&d, ctok) != JSON_STRING) {
		fail(&ps, "%s: a string field \"cmd\" is required", "request");
		goto out;
	}
	name[0] = '\0';
	(void)json_get_string(&d, ctok, name, sizeof(name), NULL);
	for (ci = 0; ci < UTIL_NELEM(commands); ci++)
		if (strcmp(commands[ci].name, name) == 0)
			break;
	if (ci == UTIL_NELEM(commands)) {
		fail(&ps, "unknown cmd \"%s\"", name);
		goto out;
	}
	rq->cmd = commands[ci].cmd;
	allowed = commands[ci].allowed;
	for (int k = json_first(&d, root); k >= 0; k = json_next(&d, k)) {
		char key[32];
		unsigned bit = 0;
		int v = json_obj_value(&d, k);

		if (json_get_string(&d, k, key, sizeof(key), NULL) != 0) {
			fail(&ps, "unknown field in a %s request", name);
			goto out;
		}
		if (strcmp(key, "cmd") == 0)
			continue;
		for (size_t i = 0; i < UTIL_NELEM(fields); i++)
			if (strcmp(fields[i].name, key) == 0)
				bit = fields[i].bit;
		if (bit == 0 || !(allowed & bit)) {
			snprintf(err, errlen, "unknown field \"%s\" for cmd %s",
				 key, name);
			goto out;
		}
		if (seen & bit) {
			snprintf(err, errlen, "field \"%s\" given twice", key);
			goto out;
		}
		seen |= bit;
		if (json_is_null(&d, v))
			continue; /* null is absent */
		if (parse_field(&ps, rq, bit, v, max_event_size) != 0)
			goto out;
	}
	switch (rq->cmd) {
	case ADMIN_KICK:
		if (!(rq->has &
		      (ADMIN_HAS_ORCH | ADMIN_HAS_DAEMON | ADMIN_HAS_CONN))) {
			fail(&ps, "%s needs orchestrator, daemon or connection",
			     "kick");
			goto out;
		}
		/* FALLTHROUGH */
	case ADMIN_CONNECTIONS:
		if ((rq->has & ADMIN_HAS_DAEMON) &&
		    !(rq->has & ADMIN_HAS_ORCH)) {
			fail(&ps,
			     "%s: daemon needs orchestrator (daemon ids "
			     "are only unique within an orchestrator)",
			     name);
			goto out;
		}
		break;
	case ADMIN_REVOKE:
		if (rq->jti[0] == '\0') {
			fail(&ps, "%s needs jti", "revoke");
			goto out;
		}
		break;
	case ADMIN_PUBLISH:
		if (rq->event == NULL) {
			fail(&ps, "%s needs event", "publish");
			goto out;
		}
		break;
	case ADMIN_DRAIN:
		if (!(rq->has & ADMIN_HAS_WORKER)) {
			fail(&ps, "%s needs worker", "drain");
			goto out;
		}
		break;
	default:
		break;
	}
	ok = 0;
out:
	json_doc_free(&d);
	return ok;
}

int
admin_entry_matches(const struct admin_request *rq,
		    const struct registry_entry *e)
{
	if ((rq->has & ADMIN_HAS_ORCH) &&
	    strcmp(rq->orchestrator, e->orchestrator) != 0)
		return 0;
	if ((rq->has & ADMIN_HAS_DAEMON) && strcmp(rq->daemon, e->daemon) != 0)
		return 0;
	if ((rq->has & ADMIN_HAS_ORG) &&
	    strcmp(rq->organization, e->organization) != 0)
		return 0;
	if ((rq->has & ADMIN_HAS_WORKER) && rq->cmd == ADMIN_CONNECTIONS &&
	    rq->worker != e->worker)
		return 0;
	if ((rq->has & ADMIN_HAS_CONN) &&
	    (rq->conn_worker != e->worker || rq->conn_id != e->conn_id))
		return 0;
	return 1;
}

/* ---- replies ------------------------------------------------------------- */

/* Finish a writer's object as one line. */
static size_t
finish_line(struct json_writer *w)
{
	size_t len;

	if (json_w_finish(w, &len) != 0 || len + 1 >= w->cap)
		return 0;
	w->buf[len] = '\n';
	w->buf[len + 1] = '\0';
	return len + 1;
}

size_t
admin_reply_error(char *out, size_t cap, const char *msg)
{
	struct json_writer w;

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	json_w_key(&w, "ok");
	json_w_bool(&w, false);
	json_w_key(&w, "error");
	json_w_str(&w, msg);
	json_w_obj_end(&w);
	return finish_line(&w);
}

size_t
admin_reply_uint(char *out, size_t cap, const char *key, uint64_t v)
{
	struct json_writer w;

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	json_w_key(&w, "ok");
	json_w_bool(&w, true);
	json_w_key(&w, key);
	json_w_uint(&w, v);
	json_w_obj_end(&w);
	return finish_line(&w);
}

size_t
admin_reply_level(char *out, size_t cap, int level)
{
	struct json_writer w;
	const char *name = admin_level_name(level);

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	json_w_key(&w, "ok");
	json_w_bool(&w, true);
	json_w_key(&w, "level");
	json_w_str(&w, name != NULL ? name : "unknown");
	json_w_obj_end(&w);
	return finish_line(&w);
}

size_t
admin_reply_revoke(char *out, size_t cap, unsigned workers, int added)
{
	struct json_writer w;

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	json_w_key(&w, "ok");
	json_w_bool(&w, true);
	json_w_key(&w, "closed");
	json_w_uint(&w, workers);
	json_w_key(&w, "workers");
	json_w_uint(&w, workers);
	json_w_key(&w, "added");
	json_w_bool(&w, added != 0);
	json_w_obj_end(&w);
	return finish_line(&w);
}

/*
 * The listing's head is only known at the end (total, truncated), so
 * entries are written after a gap kept for it, and the head is put right
 * before them at the end.
 */
#define LIST_HEAD_ROOM 128
#define LIST_TAIL "]}\n"
#define LIST_ENTRY_MAX 512

static const char *
state_name(enum registry_state s)
{
	return s == REGISTRY_DRAINING ? "draining" : "active";
}

void
admin_list_begin(struct admin_list *l, char *buf, size_t cap, unsigned limit)
{
	memset(l, 0, sizeof(*l));
	l->buf = buf;
	l->cap = cap;
	l->limit = limit;
	l->len = LIST_HEAD_ROOM;
}

void
admin_list_add(struct admin_list *l, const struct registry_entry *e)
{
	char tmp[LIST_ENTRY_MAX], id[48];
	struct json_writer w;
	size_t n;

	l->total++;
	if (l->listed >= l->limit || l->cap < LIST_HEAD_ROOM) {
		l->truncated = 1;
		return;
	}
	snprintf(id, sizeof(id), "%u:%" PRIu64, e->worker, e->conn_id);
	json_w_init(&w, tmp, sizeof(tmp));
	json_w_obj_begin(&w);
	json_w_key(&w, "id");
	json_w_str(&w, id);
	json_w_key(&w, "worker");
	json_w_uint(&w, e->worker);
	json_w_key(&w, "pid");
	json_w_int(&w, e->pid);
	json_w_key(&w, "orchestrator");
	json_w_str(&w, e->orchestrator);
	json_w_key(&w, "daemon");
	json_w_str(&w, e->daemon);
	json_w_key(&w, "organization");
	json_w_str(&w, e->organization);
	json_w_key(&w, "state");
	json_w_str(&w, state_name(e->state));
	json_w_key(&w, "connected_ms");
	json_w_uint(&w, e->connected_ms);
	json_w_key(&w, "last_seen_ms");
	json_w_uint(&w, e->last_seen_ms);
	json_w_obj_end(&w);
	if (json_w_finish(&w, &n) != 0 ||
	    l->len + 1 + n + sizeof(LIST_TAIL) > l->cap) {
		l->truncated = 1;
		return;
	}
	if (l->listed > 0)
		l->buf[l->len++] = ',';
	memcpy(l->buf + l->len, tmp, n);
	l->len += n;
	l->listed++;
}

long
admin_list_end(struct admin_list *l, size_t *len)
{
	char head[LIST_HEAD_ROOM];
	int n;
	size_t start;

	if (l->cap < LIST_HEAD_ROOM + sizeof(LIST_TAIL))
		return -1;
	n = snprintf(head, sizeof(head),
		     "{\"ok\":true,\"total\":%u,\"truncated\":%s,"
		     "\"connections\":[",
		     l->total, l->truncated ? "true" : "false");
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	start = LIST_HEAD_ROOM - (size_t)n;
	memcpy(l->buf + start, head, (size_t)n);
	memcpy(l->buf + l->len, LIST_TAIL, sizeof(LIST_TAIL));
	l->len += sizeof(LIST_TAIL) - 1;
	*len = l->len - start;
	return (long)start;
}

size_t
admin_render_status(char *out, size_t cap, const char *stats, size_t stats_len,
		    int log_level)
{
	struct json_writer w;

	json_w_init(&w, out, cap);
	json_w_obj_begin(&w);
	json_w_key(&w, "ok");
	json_w_bool(&w, true);
	json_w_key(&w, "log_level");
	json_w_str(&w, admin_level_name(log_level));
	json_w_key(&w, "stats");
	json_w_raw(&w, stats, stats_len);
	json_w_obj_end(&w);
	return finish_line(&w);
}
