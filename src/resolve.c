/*
 * resolve: getaddrinfo() in a small thread pool, answered on a libev loop.
 *
 * A request lives in one allocation shared by the loop and, while it is
 * looked up, one pool thread.  One process-wide mutex guards the queue and
 * every request's state; the loop side owns the watchers.
 *
 *   QUEUED  --a thread takes it-->  RUNNING  --getaddrinfo returns-->  DONE
 *
 * The thread that finishes a request sends its ev_async while holding the
 * mutex, so a cancel (which takes the mutex) either finds it DONE and frees
 * it, or marks a RUNNING request orphaned, after which the thread frees it
 * without touching the loop.  A cancelled QUEUED request is unlinked and
 * freed at once.  No path touches a request or a loop after the other side
 * let go of it.
 *
 * Requests that need no thread (numeric, path, invalid, busy) are DONE from
 * the start and send their own ev_async, so the callback always runs from
 * the loop and never from inside resolve_start().
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/resolve.h"
#include "orchd/util.h"

#define SERVICE_MAX 32

enum rstate { R_QUEUED, R_RUNNING, R_DONE };

struct resolve_req {
	struct resolve_req *next; /* the queue */
	struct ev_loop *loop;
	ev_async async; /* DONE: the answer is in res */
	ev_timer timer; /* the timeout */
	resolve_fn fn;
	void *arg;
	double timeout;
	int family;
	enum rstate state; /* under mu */
	int orphan;        /* under mu: the loop let go of it */
	char host[RESOLVE_HOST_MAX + 1];
	char service[SERVICE_MAX];
	struct resolve_result res; /* the thread's until DONE */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Under mu. */
static struct {
	int nthreads; /* started, all alive: they wait for work forever */
	int nidle;    /* waiting on cv */
	int nrunning; /* in getaddrinfo(), orphans included */
	struct resolve_req *head, *tail;
	int nqueued;
} pool;

/*
 * fork() copies the pool's state but not its threads: the child starts
 * with an empty pool (and a mutex nobody holds).  Requests queued in the
 * parent are the parent's; the child never sees them.
 */
static void
atfork_prepare(void)
{
	pthread_mutex_lock(&mu);
}

static void
atfork_parent(void)
{
	pthread_mutex_unlock(&mu);
}

static void
atfork_child(void)
{
	memset(&pool, 0, sizeof(pool));
	pthread_mutex_unlock(&mu);
	pthread_cond_init(&cv, NULL);
}

static void
init_once(void)
{
	(void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
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

static void
lookup(struct resolve_req *q)
{
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

static void *
worker(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&mu);
	for (;;) {
		struct resolve_req *q;

		while (pool.head == NULL) {
			pool.nidle++;
			pthread_cond_wait(&cv, &mu);
			pool.nidle--;
		}
		q = pool.head;
		pool.head = q->next;
		if (pool.head == NULL)
			pool.tail = NULL;
		pool.nqueued--;
		q->next = NULL;
		q->state = R_RUNNING;
		pool.nrunning++;
		pthread_mutex_unlock(&mu);

		lookup(q);

		pthread_mutex_lock(&mu);
		pool.nrunning--;
		if (q->orphan) {
			free(q);
		} else {
			q->state = R_DONE;
			/* Under mu: a cancel cannot free q or stop the loop's
			 * interest in it meanwhile. */
			ev_async_send(q->loop, &q->async);
		}
	}
	return NULL;
}

/* Under mu.  0, or -1 when no thread could be started and none exists. */
static int
spawn_if_needed(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (pool.nqueued <= pool.nidle || pool.nthreads >= RESOLVE_MAX_THREADS)
		return 0;
	/* Signals stay with the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, worker, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_warnx("%s: pthread_create: %s", __func__, strerror(rc));
		return pool.nthreads > 0 ? 0 : -1;
	}
	pool.nthreads++;
	return 0;
}

/* Under mu. */
static void
unqueue(struct resolve_req *q)
{
	struct resolve_req **pp = &pool.head, *prev = NULL;

	for (; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp != q)
			continue;
		*pp = q->next;
		if (pool.tail == q)
			pool.tail = prev;
		pool.nqueued--;
		q->next = NULL;
		return;
	}
}

/* ---- the loop side ---------------------------------------------------- */

/* Stop the watchers; q itself is the caller's to free or orphan. */
static void
stop_watchers(struct resolve_req *q)
{
	ev_async_stop(q->loop, &q->async);
	ev_timer_stop(q->loop, &q->timer);
}

/*
 * Let go of q: free it unless its thread still runs, which then frees it.
 * Returns 1 when q was still running (orphaned).
 */
static int
release(struct resolve_req *q)
{
	int running;

	pthread_mutex_lock(&mu);
	stop_watchers(q);
	running = q->state == R_RUNNING;
	if (q->state == R_QUEUED)
		unqueue(q);
	if (running)
		q->orphan = 1;
	pthread_mutex_unlock(&mu);
	if (!running)
		free(q);
	return running;
}

/* Hand res to the user; q is released first (fn may do anything). */
static void
finish(struct resolve_req *q, const struct resolve_result *res)
{
	resolve_fn fn = q->fn;
	void *arg = q->arg;
	struct resolve_result copy = *res;

	(void)release(q);
	fn(arg, &copy);
}

static void
async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct resolve_req *q = w->data;
	int done;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&mu);
	done = q->state == R_DONE;
	pthread_mutex_unlock(&mu);
	if (done) /* R_DONE is final: res is ours now */
		finish(q, &q->res);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolve_req *q = w->data;
	struct resolve_result res;
	char why[48];
	int done;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&mu);
	done = q->state == R_DONE;
	pthread_mutex_unlock(&mu);
	if (done) {
		/* The answer and the deadline in the same loop iteration. */
		finish(q, &q->res);
		return;
	}
	memset(&res, 0, sizeof(res));
	snprintf(why, sizeof(why), "timed out after %.1f s", q->timeout);
	set_error(&res, RESOLVE_TIMEDOUT, q->host, why);
	finish(q, &res);
}

/* A request answered without a thread: the callback runs from the loop. */
static void
done_now(struct resolve_req *q)
{
	q->state = R_DONE;
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

	pthread_mutex_lock(&mu);
	if (pool.nqueued >= RESOLVE_MAX_QUEUED) {
		pthread_mutex_unlock(&mu);
		set_error(&q->res, RESOLVE_BUSY, q->host,
			  "too many look-ups waiting");
		done_now(q);
		return q;
	}
	q->state = R_QUEUED;
	if (pool.tail != NULL)
		pool.tail->next = q;
	else
		pool.head = q;
	pool.tail = q;
	pool.nqueued++;
	if (spawn_if_needed() < 0) {
		unqueue(q);
		pthread_mutex_unlock(&mu);
		set_error(&q->res, RESOLVE_FAILED, q->host,
			  "cannot start a look-up thread");
		done_now(q);
		return q;
	}
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
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
		(void)release(req);
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
	int n;

	pthread_mutex_lock(&mu);
	n = pool.nrunning;
	pthread_mutex_unlock(&mu);
	return n;
}
