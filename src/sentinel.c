/*
 * sentinel: asynchronous master look-up through Redis Sentinel (hiredis
 * async on libev).
 *
 * One short-lived connection per sentinel asked.  Every step that would
 * otherwise call the user back from inside sentinel_resolve() or from inside
 * a hiredis connect callback (where the context must not be freed) goes
 * through a zero-delay timer, so the user always runs from a plain loop
 * callback.
 *
 * A sentinel given by name is resolved off the loop (resolve.h) before
 * each connect, within the per-sentinel timeout: hiredis' own look-up
 * would block.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "orchd/log.h"
#include "orchd/resolve.h"
#include "orchd/sentinel.h"
#include "orchd/util.h"

struct sentinel_query {
	struct ev_loop *loop;
	const struct config_redis *addr;
	double timeout;
	char who[32];
	sentinel_fn fn;
	void *arg;
	int idx;                    /* sentinel being asked */
	redisAsyncContext *ac;      /* its connection, NULL between two */
	struct resolve_req *lookup; /* its name being resolved */
	ev_timer timer; /* per-sentinel timeout, or a deferred step */
	int next;       /* the timer moves on to the next sentinel */
	int done;       /* answer ready: the timer calls back */
	char host[CONFIG_SENTINEL_HOST_MAX];
	int port;
	char err[128];
};

static void ask(struct sentinel_query *q);

/* Close the current sentinel connection; its callbacks will ignore us. */
static void
drop(struct sentinel_query *q)
{
	redisAsyncContext *ac = q->ac;

	resolve_cancel(q->lookup);
	q->lookup = NULL;
	if (ac == NULL)
		return;
	q->ac = NULL;
	ac->data = NULL;
	/* Inside a reply callback hiredis defers this until we return. */
	redisAsyncFree(ac);
}

/* Schedule the next step from a clean stack. */
static void
defer(struct sentinel_query *q, int next, int done)
{
	q->next = next;
	q->done = done;
	ev_timer_stop(q->loop, &q->timer);
	ev_timer_set(&q->timer, 0., 0.);
	ev_timer_start(q->loop, &q->timer);
}

static void
fail_one(struct sentinel_query *q, const char *fmt, const char *detail)
{
	const struct config_sentinel *s = &q->addr->sentinels[q->idx];

	snprintf(q->err, sizeof(q->err), "sentinel %s:%d: %s%s", s->host,
		 s->port, fmt, detail != NULL ? detail : "");
	log_debug("%s: %s: %s", __func__, q->who, q->err);
	q->idx++;
	defer(q, 1, 0);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct sentinel_query *q = ac->data;

	if (q == NULL || status == REDIS_OK)
		return;
	/* hiredis frees the context after this callback. */
	q->ac = NULL;
	fail_one(q, "connect: ", ac->errstr);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct sentinel_query *q = ac->data;

	if (q == NULL)
		return;
	q->ac = NULL;
	fail_one(q, "disconnected", NULL);
}

static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct sentinel_query *q = ac->data;
	redisReply *rep = reply;
	uint64_t port;
	char buf[16];

	if (q == NULL || rep == NULL)
		return; /* dropped: the step that dropped it moves on */
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING &&
	    rep->element[1]->type == REDIS_REPLY_STRING &&
	    rep->element[0]->len > 0 &&
	    rep->element[0]->len < sizeof(q->host) &&
	    rep->element[1]->len < sizeof(buf)) {
		memcpy(buf, rep->element[1]->str, rep->element[1]->len);
		buf[rep->element[1]->len] = '\0';
		if (util_parse_u64(buf, 1, 65535, &port) == 0) {
			memcpy(q->host, rep->element[0]->str,
			       rep->element[0]->len);
			q->host[rep->element[0]->len] = '\0';
			q->port = (int)port;
			drop(q);
			defer(q, 0, 1);
			return;
		}
	}
	drop(q);
	if (rep->type == REDIS_REPLY_ERROR)
		fail_one(q, "", rep->str);
	else if (rep->type == REDIS_REPLY_NIL)
		fail_one(q, "unknown master ", q->addr->master);
	else
		fail_one(q, "unexpected reply", NULL);
}

static void
finish(struct sentinel_query *q)
{
	sentinel_fn fn = q->fn;
	void *arg = q->arg;
	char host[CONFIG_SENTINEL_HOST_MAX], err[sizeof(q->err)];
	int port = q->port, ok = q->done;

	memcpy(host, q->host, sizeof(host));
	memcpy(err, q->err, sizeof(err));
	sentinel_cancel(q);
	fn(arg, ok ? host : NULL, port, err);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sentinel_query *q = t->data;

	if (q->done) {
		finish(q);
		return;
	}
	if (q->next) {
		q->next = 0;
		ask(q);
		return;
	}
	/* The current sentinel did not answer in time. */
	drop(q);
	fail_one(q, "no answer in time", NULL);
}

/* Connect to the current sentinel at ip (numeric) and ask. */
static void
ask_at(struct sentinel_query *q, const char *ip)
{
	const struct config_sentinel *s = &q->addr->sentinels[q->idx];
	redisAsyncContext *ac;

	ac = redisAsyncConnect(ip, s->port);
	if (ac == NULL || ac->err) {
		if (ac != NULL) {
			fail_one(q, "", ac->errstr);
			redisAsyncFree(ac);
		} else
			fail_one(q, "out of memory", NULL);
		return;
	}
	ac->data = q;
	if (redisLibevAttach(q->loop, ac) != REDIS_OK) {
		redisAsyncFree(ac);
		fail_one(q, "cannot attach to the loop", NULL);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	q->ac = ac;
	/* Queued now, written once connected. */
	if (redisAsyncCommand(ac, on_reply, NULL,
			      "SENTINEL get-master-addr-by-name %s",
			      q->addr->master) != REDIS_OK) {
		drop(q);
		fail_one(q, "cannot send", NULL);
		return;
	}
	ev_timer_stop(q->loop, &q->timer);
	ev_timer_set(&q->timer, q->timeout, 0.);
	ev_timer_start(q->loop, &q->timer);
}

static void
on_lookup(void *arg, const struct resolve_result *res)
{
	struct sentinel_query *q = arg;
	const char *ip = resolve_pick(res, AF_INET);

	q->lookup = NULL; /* the request is gone */
	if (ip == NULL) {
		fail_one(q, "", res->err);
		return;
	}
	ask_at(q, ip);
}

static void
ask(struct sentinel_query *q)
{
	const struct config_sentinel *s;

	if (q->idx >= q->addr->nsentinels) {
		if (q->err[0] == '\0')
			util_strlcpy(q->err, "no sentinel", sizeof(q->err));
		finish(q);
		return;
	}
	s = &q->addr->sentinels[q->idx];
	if (resolve_is_numeric(s->host)) {
		ask_at(q, s->host);
		return;
	}
	q->lookup = resolve_start(q->loop, s->host, NULL, AF_UNSPEC, q->timeout,
				  on_lookup, q);
	if (q->lookup == NULL)
		fail_one(q, "resolve: out of memory", NULL);
}

struct sentinel_query *
sentinel_resolve(struct ev_loop *loop, const struct config_redis *addr,
		 uint64_t timeout_ms, const char *who, sentinel_fn fn,
		 void *arg)
{
	struct sentinel_query *q = util_calloc(1, sizeof(*q));

	q->loop = loop;
	q->addr = addr;
	q->timeout = (double)timeout_ms / 1000.0;
	util_strlcpy(q->who, who, sizeof(q->who));
	q->fn = fn;
	q->arg = arg;
	ev_init(&q->timer, timer_cb);
	q->timer.data = q;
	/* The first sentinel is asked from the loop: fn never runs in here. */
	defer(q, 1, 0);
	return q;
}

void
sentinel_cancel(struct sentinel_query *q)
{
	if (q == NULL)
		return;
	ev_timer_stop(q->loop, &q->timer);
	drop(q);
	free(q);
}
