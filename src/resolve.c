/*
 * resolve: getaddrinfo() in a small thread pool, answered on a libev loop.
 *
 * A request lives in one allocation shared by the loop and, while it is
 * looked up, one thread of the process's "resolve" pool (src/tpool.c,
 * which holds the queue, the threads and the cancel/orphan rules): a
 * request cancelled or timed out while its getaddrinfo() runs is orphaned,
 * and the thread frees it (the job's release function is free()) without
 * touching the loop.
 *
 * Requests that need no thread (numeric, path, invalid, busy) are DONE from
 * the start and send their own ev_async, so the callback always runs from
 * the loop and never from inside resolve_start().
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/resolve.h"
#include "orchd/tpool.h"
#include "orchd/util.h"

#define SERVICE_MAX 32

struct resolve_req {
	struct ev_loop *loop;
	struct tpool_job *job; /* while the pool looks it up */
	ev_async async;        /* answered without a thread: res is set */
	ev_timer timer;        /* the timeout */
	resolve_fn fn;
	void *arg;
	double timeout;
	int family;
	char host[RESOLVE_HOST_MAX + 1];
	char service[SERVICE_MAX];
	struct resolve_result res; /* the thread's while job is running */
};

static struct tpool *pool; /* the process's, made on first use */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
init_once(void)
{
	pool = tpool_new("resolve", RESOLVE_MAX_THREADS, RESOLVE_MAX_QUEUED);
}

/* ---- results ---------------------------------------------------------- */

static void
set_error(struct resolve_result *res, enum resolve_status st, const char *host,
	  const char *why)
{
	res->status = st;
	res->naddrs = 0;
	snprintf(res->err, sizeof(res->err), "resolve: %s: %s", host, why);
}

static void
add_addr(struct resolve_result *res, int family, const char *a)
{
	if (res->naddrs == RESOLVE_MAX_ADDRS)
		return;
	for (int i = 0; i < res->naddrs; i++)
		if (strcmp(res->addr[i], a) == 0)
			return;
	res->family[res->naddrs] = family;
	util_strlcpy(res->addr[res->naddrs], a, sizeof(res->addr[0]));
	res->naddrs++;
}

/* Called from pool threads too: thread-safe calls only (no strerror). */
static void
fill(struct resolve_result *res, const char *host, int rc,
     const struct addrinfo *ai)
{
	char buf[RESOLVE_ADDR_MAX];

	if (rc != 0) {
		if (rc == EAI_SYSTEM) {
			snprintf(buf, sizeof(buf), "system error (errno %d)",
				 errno);
			set_error(res, RESOLVE_FAILED, host, buf);
		} else {
			set_error(res, RESOLVE_FAILED, host, gai_strerror(rc));
		}
		return;
	}
	res->naddrs = 0;
	for (; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof(buf),
				NULL, 0, NI_NUMERICHOST) != 0)
			continue;
		add_addr(res, ai->ai_family, buf);
	}
	if (res->naddrs == 0)
		set_error(res, RESOLVE_FAILED, host, "no usable address");
	else
		res->status = RESOLVE_OK;
}

static int
numeric(const char *host, const char *service, int family,
	struct resolve_result *res)
{
	struct addrinfo hints, *ai = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags =
	    AI_NUMERICHOST | (service != NULL ? AI_NUMERICSERV : 0);
	if (getaddrinfo(host, service, &hints, &ai) != 0)
		return 0;
	if (res != NULL)
		fill(res, host, 0, ai);
	freeaddrinfo(ai);
	return 1;
}

/* ---- the pool --------------------------------------------------------- */

/* On a pool thread. */
static void
lookup(void *arg)
{
	struct resolve_req *q = arg;
	struct addrinfo hints, *ai = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = q->family;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(q->host, q->service[0] != '\0' ? q->service : NULL,
			 &hints, &ai);
	fill(&q->res, q->host, rc, ai);
	if (ai != NULL)
		freeaddrinfo(ai);
}

/* ---- the loop side ---------------------------------------------------- */

/*
 * Let go of q: stop its watchers and its job, and free it unless its
 * lookup still runs in a thread, which then frees it.  With done, the
 * job's answer in q->res is kept for the caller.
 */
static void
release(struct resolve_req *q, int *done)
{
	enum tpool_cancelled r = TPOOL_CANCEL_UNRUN;

	ev_async_stop(q->loop, &q->async);
	ev_timer_stop(q->loop, &q->timer);
	if (q->job != NULL)
		r = tpool_cancel(q->job);
	q->job = NULL;
	if (done != NULL)
		*done = r == TPOOL_CANCEL_DONE;
	if (r != TPOOL_CANCEL_ORPHANED)
		free(q);
}

/* Hand res to the user; q is released first (fn may do anything). */
static void
finish(struct resolve_req *q, const struct resolve_result *res)
{
	resolve_fn fn = q->fn;
	void *arg = q->arg;
	struct resolve_result copy = *res;

	release(q, NULL);
	fn(arg, &copy);
}

/* The pool's answer (the job is gone). */
static void
looked_up(void *arg)
{
	struct resolve_req *q = arg;

	q->job = NULL;
	finish(q, &q->res);
}

/* An answer without a thread. */
static void
async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	finish(w->data, &((struct resolve_req *)w->data)->res);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolve_req *q = w->data;
	resolve_fn fn = q->fn;
	void *arg = q->arg;
	struct resolve_result res;
	enum tpool_cancelled r;
	char why[48];

	(void)revents;
	memset(&res, 0, sizeof(res));
	snprintf(why, sizeof(why), "timed out after %.1f s", q->timeout);
	set_error(&res, RESOLVE_TIMEDOUT, q->host, why);
	/* The answer and the deadline in the same loop iteration: the
	 * answer wins. */
	r = tpool_cancel(q->job);
	q->job = NULL;
	if (r == TPOOL_CANCEL_DONE) {
		finish(q, &q->res);
		return;
	}
	ev_async_stop(loop, &q->async);
	ev_timer_stop(loop, &q->timer);
	if (r != TPOOL_CANCEL_ORPHANED) /* else its thread frees q */
		free(q);
	fn(arg, &res);
}

/* A request answered without a thread: the callback runs from the loop. */
static void
done_now(struct resolve_req *q)
{
	ev_async_send(q->loop, &q->async);
}

struct resolve_req *
resolve_start(struct ev_loop *loop, const char *host, const char *service,
	      int family, double timeout, resolve_fn fn, void *arg)
{
	struct resolve_req *q = calloc(1, sizeof(*q));
	size_t hlen = host != NULL ? strlen(host) : 0;

	if (q == NULL)
		return NULL;
	pthread_once(&once, init_once);
	q->loop = loop;
	q->fn = fn;
	q->arg = arg;
	q->timeout = timeout;
	q->family = family;
	ev_async_init(&q->async, async_cb);
	q->async.data = q;
	ev_async_start(loop, &q->async);
	ev_init(&q->timer, timer_cb);
	q->timer.data = q;

	if (hlen == 0 || hlen > RESOLVE_HOST_MAX ||
	    (service != NULL && strlen(service) >= SERVICE_MAX)) {
		snprintf(q->host, sizeof(q->host), "%.64s%s",
			 host != NULL ? host : "", hlen > 64 ? "..." : "");
		set_error(&q->res, RESOLVE_INVALID, q->host,
			  hlen == 0 ? "empty name" : "name too long");
		done_now(q);
		return q;
	}
	memcpy(q->host, host, hlen + 1);
	if (service != NULL)
		util_strlcpy(q->service, service, sizeof(q->service));
	if (host[0] == '/') {
		q->res.status = RESOLVE_OK;
		add_addr(&q->res, AF_UNIX, host);
		done_now(q);
		return q;
	}
	if (numeric(host, service, family, &q->res)) {
		done_now(q);
		return q;
	}

	switch (tpool_submit(pool, loop, lookup, looked_up, free, q, &q->job)) {
	case TPOOL_OK:
		break;
	case TPOOL_FULL:
		set_error(&q->res, RESOLVE_BUSY, q->host,
			  "too many look-ups waiting");
		done_now(q);
		return q;
	case TPOOL_NOTHREAD:
		set_error(&q->res, RESOLVE_FAILED, q->host,
			  "cannot start a look-up thread");
		done_now(q);
		return q;
	}
	if (timeout > 0) {
		ev_timer_set(&q->timer, timeout, 0.);
		ev_timer_start(loop, &q->timer);
	}
	return q;
}

void
resolve_cancel(struct resolve_req *req)
{
	if (req != NULL)
		release(req, NULL);
}

int
resolve_is_numeric(const char *host)
{
	return host != NULL && host[0] != '\0' &&
	       (host[0] == '/' || numeric(host, NULL, AF_UNSPEC, NULL));
}

const char *
resolve_pick(const struct resolve_result *res, int family)
{
	if (res->status != RESOLVE_OK || res->naddrs == 0)
		return NULL;
	for (int i = 0; i < res->naddrs; i++)
		if (res->family[i] == family)
			return res->addr[i];
	return res->addr[0];
}

int
resolve_running(void)
{
	pthread_once(&once, init_once);
	return tpool_running(pool);
}
