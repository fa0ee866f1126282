/*
 * redis: an asynchronous Redis client on a libev loop (hiredis).
 *
 * One connection per process role.  Commands never block the loop: a
 * command issued while disconnected fails at once (the caller decides what
 * "Redis unavailable" means for it), and a command that gets no reply
 * within the timeout tears the connection down, which answers every
 * outstanding command with a NULL reply; the client then reconnects with
 * exponential back-off (100 ms doubling to 1 s).
 *
 * Every callback is called exactly once per accepted command, with the reply
 * or NULL (error, timeout, disconnect, shutdown).  Callers that may go away
 * before the reply (a closed connection) keep themselves alive until then.
 */
#ifndef ORCHD_REDIS_H
#define ORCHD_REDIS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "orchd/config.h"

struct redis;

typedef void (*redis_reply_fn)(struct redis *r, redisReply *reply, void *arg);

#define REDIS_MAX_PENDING 65536 /* outstanding commands; beyond: refused */

struct redis *redis_new(struct ev_loop *loop, const struct config_redis *addr,
			uint64_t timeout_ms, const char *who);
/* Disconnect (pending callbacks get NULL) and free. */
void redis_free(struct redis *r);
int redis_connected(const struct redis *r);

/*
 * Send a command (hiredis format, e.g. "SISMEMBER %s %b").  Returns 0 when
 * queued (fn will be called), -1 when refused (not connected, too many
 * pending, or a format error): fn is then NOT called.  fn may be NULL.
 */
int redis_command(struct redis *r, redis_reply_fn fn, void *arg,
		  const char *fmt, ...);
int redis_command_argv(struct redis *r, redis_reply_fn fn, void *arg,
		       int argc, const char **argv, const size_t *argvlen);

/* Counters for metrics and tests. */
struct redis_stats {
	uint64_t connects, disconnects, timeouts, commands, errors;
};
void redis_get_stats(const struct redis *r, struct redis_stats *st);

#endif
