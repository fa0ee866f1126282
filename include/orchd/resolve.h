/*
 * resolve: asynchronous getaddrinfo() for a libev loop.
 *
 * libpq and hiredis resolve a host name with a blocking getaddrinfo(),
 * which would stop the loop (every connection of the process) for as long
 * as the name server takes.  Callers resolve first with resolve_start() and
 * connect to the numeric address it returns.
 *
 * A numeric address (AI_NUMERICHOST) or a unix socket path ("/...")
 * completes without a thread, on the next loop iteration.  A name is looked
 * up by a small pool of threads shared by the process (a tpool.h pool of
 * its own, so other pools' work cannot delay look-ups): at most
 * RESOLVE_MAX_THREADS look-ups run at once, a timed-out one included until
 * getaddrinfo() returns to it (resolv.conf's timeout x attempts bounds
 * that).  Further requests wait, in order, for a thread, within their own
 * timeout; at most RESOLVE_MAX_QUEUED wait, and beyond that a request fails
 * at once (RESOLVE_BUSY).  The answer reaches the loop through an ev_async.
 *
 * The callback runs exactly once per request unless resolve_cancel() was
 * called first, always from the loop (never from inside resolve_start()),
 * and the request is gone when it runs.  A request is not a cache: every
 * call asks the system resolver again.
 *
 * Threads block every signal (the loop's process keeps its signals), and
 * the pool is private to the process that started it: a child forked
 * afterwards starts its own.
 */
#ifndef ORCHD_RESOLVE_H
#define ORCHD_RESOLVE_H

#include <ev.h>
#include <netinet/in.h>

#define RESOLVE_MAX_THREADS 4 /* look-ups running at once per process */
#define RESOLVE_MAX_QUEUED 64 /* waiting for a thread; beyond: RESOLVE_BUSY */
#define RESOLVE_MAX_ADDRS 8   /* addresses kept of one answer */
#define RESOLVE_HOST_MAX 255  /* bytes of a name */
/* A numeric address, or a unix socket path of up to 107 bytes. */
#define RESOLVE_ADDR_MAX 108

enum resolve_status {
	RESOLVE_OK = 0,   /* naddrs >= 1 */
	RESOLVE_FAILED,   /* the resolver's answer: no such name, ... */
	RESOLVE_TIMEDOUT, /* no answer within the timeout */
	RESOLVE_BUSY,     /* RESOLVE_MAX_QUEUED requests already wait */
	RESOLVE_INVALID,  /* empty or over-long name */
};

struct resolve_result {
	enum resolve_status status;
	/* Not OK: "resolve: NAME: timed out after 2.0 s", for a log line. */
	char err[RESOLVE_HOST_MAX + 96];
	int naddrs;
	int family[RESOLVE_MAX_ADDRS]; /* AF_INET, AF_INET6, AF_UNIX */
	/* Numeric, in the resolver's order, duplicates removed. */
	char addr[RESOLVE_MAX_ADDRS][RESOLVE_ADDR_MAX];
};

struct resolve_req;

/* res is valid during the call only. */
typedef void (*resolve_fn)(void *arg, const struct resolve_result *res);

/*
 * Resolve host (service may be NULL; family AF_UNSPEC, AF_INET or
 * AF_INET6) within timeout seconds.  Returns the request, for
 * resolve_cancel() until fn has been called; NULL only when out of memory.
 */
struct resolve_req *resolve_start(struct ev_loop *loop, const char *host,
				  const char *service, int family,
				  double timeout, resolve_fn fn, void *arg);
/*
 * Abandon a request whose callback has not run: it never will.  A look-up
 * still running in its thread finishes there and is freed by it.  NULL is
 * accepted.
 */
void resolve_cancel(struct resolve_req *req);

/* 1 when host needs no look-up: a numeric address or a "/" path. */
int resolve_is_numeric(const char *host);
/*
 * The address to use of a successful answer: the first of family when
 * there is one (hiredis prefers IPv4 the same way), else the first.
 */
const char *resolve_pick(const struct resolve_result *res, int family);

/* Look-ups running in threads now, orphaned ones included (tests). */
int resolve_running(void);

#endif
