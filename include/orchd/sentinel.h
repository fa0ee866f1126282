/*
 * sentinel: find the current Redis master through Redis Sentinel, on a
 * libev loop, without blocking.
 *
 * A query asks the configured sentinels in turn ("SENTINEL
 * get-master-addr-by-name NAME"), each with its own timeout, and calls back
 * once with the first address a sentinel gives, or with a failure when none
 * did.  Callers resolve before every (re)connect, so a failover is followed
 * by the next reconnect: the old master's connection breaks (or is closed by
 * the caller) and the new address comes from the sentinels.
 */
#ifndef ORCHD_SENTINEL_H
#define ORCHD_SENTINEL_H

#include <ev.h>
#include <stdint.h>

#include "orchd/config.h"

struct sentinel_query;

/*
 * The answer: host/port of the master, or host NULL and err saying why
 * (the last sentinel's error).  Called exactly once per query unless the
 * query was cancelled first, never from inside sentinel_resolve(); the query
 * is gone when fn is called (do not cancel it from fn).
 */
typedef void (*sentinel_fn)(void *arg, const char *host, int port,
			    const char *err);

/*
 * Start a query.  addr (sentinels and master name) must stay valid until
 * fn is called or the query is cancelled.
 */
struct sentinel_query *sentinel_resolve(struct ev_loop *loop,
					const struct config_redis *addr,
					uint64_t timeout_ms, const char *who,
					sentinel_fn fn, void *arg);
/* Abandon a query that has not answered yet: fn will not be called. */
void sentinel_cancel(struct sentinel_query *q);

#endif
