/*
 * redis: asynchronous Redis client (hiredis 0.14 + its libev adapter).
 *
 * hiredis 0.14 has no command timeouts, so we keep our own FIFO of
 * outstanding commands (Redis answers in order): a timer watches the
 * oldest, and if it is overdue the connection is dropped, which makes
 * hiredis call every pending callback with a NULL reply.
 *
 * With "redis sentinel ...", the master's address is asked of the sentinels
 * before every connect, so a reconnect after a failover finds the new
 * master.  Sentinel kills the clients of a demoted master, and a READONLY
 * reply (we reached a replica) drops the connection too: either way the
 * next connect resolves again.
 *
 * A host name (the configured one, or one a sentinel gives) is resolved
 * off the loop (resolve.h) before every connect, within the timeout, and
 * hiredis is given the address: its own look-up would block the loop.
 *
 * A failure is logged once per outage, not once per retry: with the
 * back-off capped at 1 s a long outage would otherwise fill the log.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "orchd/log.h"
#include "orchd/redis.h"
#include "orchd/resolve.h"
#include "orchd/sentinel.h"
#include "orchd/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000

struct redis_req {
	struct redis *r;
	redis_reply_fn fn;
	void *arg;
	double deadline; /* ev_now() seconds */
	struct redis_req *next;
};

struct redis {
	struct ev_loop *loop;
	struct config_redis addr;
	char who[32];
	double timeout;
	redisAsyncContext *ac;
	int connected;
	int closing; /* redis_free() in progress */
	/* This outage has been logged. */
	int down_logged;
	/* Asking the sentinels for the master, before a connect. */
	struct sentinel_query *resolving;
	/* Resolving the host name, before a connect to lookup_port. */
	struct resolve_req *lookup;
	int lookup_port;
	unsigned backoff_ms;
	ev_timer reconnect;
	ev_timer watchdog;
	struct redis_req *head, *tail; /* outstanding, oldest first */
	unsigned npending;
	struct redis_stats st;
};

static void redis_connect(struct redis *r);

static void
schedule_reconnect(struct redis *r)
{
	if (r->closing)
		return;
	r->backoff_ms = r->backoff_ms == 0 ? BACKOFF_MIN_MS
			: r->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS
							       : r->backoff_ms * 2;
	ev_timer_stop(r->loop, &r->reconnect);
	ev_timer_set(&r->reconnect, r->backoff_ms / 1000.0, 0.);
	ev_timer_start(r->loop, &r->reconnect);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct redis *r = ac->data;

	if (status != REDIS_OK) {
		if (!r->down_logged)
			log_warnx("%s: %s: connect failed: %s", __func__,
				  r->who, ac->errstr);
		r->down_logged = 1;
		r->ac = NULL; /* hiredis frees the context */
		schedule_reconnect(r);
		return;
	}
	r->connected = 1;
	r->backoff_ms = 0;
	r->down_logged = 0;
	r->st.connects++;
	log_info("%s: %s: connected", __func__, r->who);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis *r = ac->data;

	r->st.disconnects++;
	if (r->connected && !r->closing) {
		log_warnx("%s: %s: disconnected%s%s", __func__, r->who,
			  status != REDIS_OK ? ": " : "",
			  status != REDIS_OK ? ac->errstr : "");
		r->down_logged = 1;
	}
	r->connected = 0;
	r->ac = NULL;
	ev_timer_stop(r->loop, &r->watchdog);
	schedule_reconnect(r);
}

static void
reconnect_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	redis_connect(t->data);
}

static void
arm_watchdog(struct redis *r)
{
	ev_timer_stop(r->loop, &r->watchdog);
	if (r->head == NULL)
		return;
	ev_timer_set(&r->watchdog, r->head->deadline - ev_now(r->loop) + 0.001,
		     0.);
	ev_timer_start(r->loop, &r->watchdog);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct redis *r = t->data;

	if (r->head == NULL || r->ac == NULL)
		return;
	if (ev_now(loop) < r->head->deadline) {
		arm_watchdog(r);
		return;
	}
	r->st.timeouts++;
	log_warnx("%s: %s: no reply within %.0f ms, reconnecting", __func__,
		  r->who, r->timeout * 1000.0);
	/*
	 * redisAsyncDisconnect() would wait for the replies; freeing answers
	 * every outstanding command with NULL now, then calls on_disconnect.
	 */
	redisAsyncFree(r->ac);
}

/* host: NULL (the unix socket) or a numeric address. */
static void
connect_addr(struct redis *r, const char *host, int port)
{
	redisAsyncContext *ac;

	if (host == NULL)
		ac = redisAsyncConnectUnix(r->addr.unix_path);
	else
		ac = redisAsyncConnect(host, port);
	if (ac == NULL || ac->err) {
		if (!r->down_logged)
			log_warnx("%s: %s: %s", __func__, r->who,
				  ac != NULL ? ac->errstr : "out of memory");
		r->down_logged = 1;
		if (ac != NULL)
			redisAsyncFree(ac);
		schedule_reconnect(r);
		return;
	}
	ac->data = r;
	if (redisLibevAttach(r->loop, ac) != REDIS_OK) {
		redisAsyncFree(ac);
		schedule_reconnect(r);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	r->ac = ac;
}

static void
on_lookup(void *arg, const struct resolve_result *res)
{
	struct redis *r = arg;
	const char *ip = resolve_pick(res, AF_INET);

	r->lookup = NULL; /* the request is gone */
	if (ip == NULL) {
		if (!r->down_logged)
			log_warnx("%s: %s: %s", __func__, r->who, res->err);
		r->down_logged = 1;
		schedule_reconnect(r);
		return;
	}
	log_debug("%s: %s: connecting to %s port %d", __func__, r->who, ip,
		  r->lookup_port);
	connect_addr(r, ip, r->lookup_port);
}

/* host: NULL (the unix socket), an address or a name to resolve first. */
static void
connect_to(struct redis *r, const char *host, int port)
{
	if (host == NULL || resolve_is_numeric(host)) {
		connect_addr(r, host, port);
		return;
	}
	/* IPv4 first, as hiredis itself would (resolve_pick()). */
	r->lookup_port = port;
	r->lookup = resolve_start(r->loop, host, NULL, AF_UNSPEC, r->timeout,
				  on_lookup, r);
	if (r->lookup == NULL) {
		log_warnx("%s: %s: resolve: out of memory", __func__, r->who);
		schedule_reconnect(r);
	}
}

static void
on_resolved(void *arg, const char *host, int port, const char *err)
{
	struct redis *r = arg;

	r->resolving = NULL; /* the query is gone */
	if (host == NULL) {
		if (!r->down_logged)
			log_warnx("%s: %s: no master address for %s: %s",
				  __func__, r->who, r->addr.master, err);
		r->down_logged = 1;
		schedule_reconnect(r);
		return;
	}
	log_debug("%s: %s: master %s is %s:%d", __func__, r->who,
		  r->addr.master, host, port);
	connect_to(r, host, port);
}

static void
redis_connect(struct redis *r)
{
	if (r->addr.nsentinels > 0) {
		/* Each sentinel gets the command timeout to answer. */
		r->resolving = sentinel_resolve(r->loop, &r->addr,
						(uint64_t)(r->timeout * 1000.0),
						r->who, on_resolved, r);
		return;
	}
	if (r->addr.unix_path != NULL)
		connect_to(r, NULL, 0);
	else
		connect_to(r, r->addr.host, r->addr.port);
}

struct redis *
redis_new(struct ev_loop *loop, const struct config_redis *addr,
	  uint64_t timeout_ms, const char *who)
{
	struct redis *r = util_calloc(1, sizeof(*r));

	r->loop = loop;
	r->addr = *addr; /* the strings belong to the config, which outlives us */
	r->timeout = (double)timeout_ms / 1000.0;
	util_strlcpy(r->who, who, sizeof(r->who));
	ev_init(&r->reconnect, reconnect_cb);
	r->reconnect.data = r;
	ev_init(&r->watchdog, watchdog_cb);
	r->watchdog.data = r;
	redis_connect(r);
	return r;
}

void
redis_free(struct redis *r)
{
	if (r == NULL)
		return;
	r->closing = 1;
	ev_timer_stop(r->loop, &r->reconnect);
	ev_timer_stop(r->loop, &r->watchdog);
	sentinel_cancel(r->resolving);
	resolve_cancel(r->lookup);
	if (r->ac != NULL)
		redisAsyncFree(r->ac); /* pending callbacks get NULL */
	free(r);
}

int
redis_connected(const struct redis *r)
{
	return r != NULL && r->connected;
}

static void
reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_req *q = privdata;
	struct redis *r = q->r;
	redisReply *rep = reply;
	int readonly = 0;

	/* Replies come in order: q is the head. */
	if (r->head == q) {
		r->head = q->next;
		if (r->head == NULL)
			r->tail = NULL;
	}
	r->npending--;
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
		r->st.errors++;
		readonly =
		    rep->len >= 8 && strncmp(rep->str, "READONLY", 8) == 0;
		/* NOSCRIPT is routine: the caller reloads the script. */
		if (rep->len >= 8 && strncmp(rep->str, "NOSCRIPT", 8) == 0)
			log_debug("%s: %s: %.*s", __func__, r->who,
				  (int)rep->len, rep->str);
		else
			log_warnx("%s: %s: %.*s", __func__, r->who,
				  (int)rep->len, rep->str);
	}
	if (q->fn != NULL)
		q->fn(r, rep, q->arg);
	free(q);
	if (r->closing)
		return;
	/*
	 * A replica answered: the master we resolved was demoted.  Drop the
	 * connection (hiredis frees it once this callback returns, answering
	 * the rest with NULL) and resolve again.
	 */
	if (readonly && r->addr.nsentinels > 0 && r->ac == ac && r->connected) {
		log_warnx("%s: %s: the server is a replica now, reconnecting",
			  __func__, r->who);
		r->connected = 0;
		r->down_logged = 1;
		redisAsyncFree(ac);
		return;
	}
	arm_watchdog(r);
}

static struct redis_req *
req_new(struct redis *r, redis_reply_fn fn, void *arg)
{
	struct redis_req *q;

	if (!r->connected || r->ac == NULL || r->npending >= REDIS_MAX_PENDING)
		return NULL;
	q = util_malloc(sizeof(*q));
	q->r = r;
	q->fn = fn;
	q->arg = arg;
	q->deadline = ev_now(r->loop) + r->timeout;
	q->next = NULL;
	return q;
}

static void
req_enqueue(struct redis *r, struct redis_req *q)
{
	if (r->tail != NULL)
		r->tail->next = q;
	else
		r->head = q;
	r->tail = q;
	r->npending++;
	r->st.commands++;
	if (!ev_is_active(&r->watchdog))
		arm_watchdog(r);
}

int
redis_command(struct redis *r, redis_reply_fn fn, void *arg, const char *fmt,
	      ...)
{
	struct redis_req *q = req_new(r, fn, arg);
	va_list ap;
	int rc;

	if (q == NULL)
		return -1;
	va_start(ap, fmt);
	rc = redisvAsyncCommand(r->ac, reply_cb, q, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		free(q);
		return -1;
	}
	req_enqueue(r, q);
	return 0;
}

int
redis_command_argv(struct redis *r, redis_reply_fn fn, void *arg, int argc,
		   const char **argv, const size_t *argvlen)
{
	struct redis_req *q = req_new(r, fn, arg);

	if (q == NULL)
		return -1;
	if (redisAsyncCommandArgv(r->ac, reply_cb, q, argc, argv, argvlen) !=
	    REDIS_OK) {
		free(q);
		return -1;
	}
	req_enqueue(r, q);
	return 0;
}

void
redis_get_stats(const struct redis *r, struct redis_stats *st)
{
	*st = r->st;
}
