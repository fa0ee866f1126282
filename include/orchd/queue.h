/*
 * queue: the per-orchestrator durable event queue in Redis (PROTOCOL.md
 * section 6, "Durable queue" and "Replay").
 *
 * Keys, for orchestrator O (O is any 1..QUEUE_ORCH_MAX bytes; every name and
 * id reaches Redis as a command argument, never inside Lua source):
 *
 *   daemon:events:O       sorted set: event id -> seq (the protocol's key)
 *   daemon:eventbodies:O  hash: event id -> event_queue_body() JSON
 *   daemon:eventtimes:O   sorted set: event id -> the record's timestamp
 *                         (wall-clock ms), for queue_fetch_since()
 *   daemon:seq:O          the orchestrator's sequence counter
 *
 * The bodies and times live under prefixes of their own, not as suffixes of
 * daemon:events:O ("daemon:events:O:bodies" is also the sorted set of an
 * orchestrator named "O:bodies", and one tenant could break another's
 * queue).  The four keys share one TTL, the retention, which every enqueue
 * refreshes (queue_reserve() refreshes the counter's), so a queue nobody
 * writes to disappears whole.  All keys of one orchestrator are used by one
 * script, so the scheme needs a single Redis, not Redis Cluster.
 *
 * Sequence numbers: `seq` is "per-orchestrator sequence, strictly
 * increasing" (not contiguous: gaps are allowed), so every event delivered
 * to an orchestrator takes one from its counter.  The relay, the only
 * process that allocates seqs, leases them in blocks: queue_reserve() INCRBYs
 * the counter by n and hands back the block's last seq, and the relay gives
 * the block's seqs out itself, to events delivered live only and to events
 * it queues with queue_enqueue_seq().  The counter is thus never below a
 * seq in use, and a block nobody used up (a relay restart, an evicted
 * lease) is only a gap.  queue_enqueue() and queue_next_seq() take one seq
 * from the counter in the same step, for callers without a lease.  A
 * counter that does not exist yet (new orchestrator, or expired after a
 * retention of silence) starts at the caller's wall clock in ms rather than
 * at 1, so that seqs still only grow across an expiry and a daemon's old
 * resumeFrom cannot hide events queued after it.  Seqs stay at most
 * QUEUE_SEQ_MAX (exact as JSON numbers and as sorted-set scores).
 *
 * Every operation is one atomic step on the server (a Lua script sent with
 * EVALSHA; the scripts are loaded with SCRIPT LOAD on first use and on each
 * new connection, and a NOSCRIPT reply is retried once with EVAL), and is
 * bounded by the Redis client's timeout (twice that with the retry).
 *
 * Calls return 0 when accepted, and then call the callback exactly once,
 * later, from the loop; or -1 when refused (an argument out of range or a
 * NULL callback, Redis not connected, too many commands pending, the queue
 * being freed), and then never call it.  A callback gets a status:
 * QUEUE_OK, QUEUE_EUNAVAIL (no reply: disconnected, timed out, client
 * freed) or QUEUE_EREPLY (Redis answered with an error or something
 * unexpected); results are meaningful only with QUEUE_OK.
 */
#ifndef ORCHD_QUEUE_H
#define ORCHD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orchd/event.h"
#include "orchd/redis.h"

#define QUEUE_KEY_EVENTS "daemon:events:"
#define QUEUE_KEY_BODIES "daemon:eventbodies:"
#define QUEUE_KEY_TIMES "daemon:eventtimes:"
#define QUEUE_KEY_SEQ "daemon:seq:"

#define QUEUE_DEFAULT_MAX_EVENTS 1000
#define QUEUE_MAX_EVENTS_LIMIT 1000000        /* queue_max_events range */
#define QUEUE_DEFAULT_RETENTION_S (7 * 86400) /* 7 days */
#define QUEUE_RETENTION_LIMIT_S (365 * 86400) /* queue_retention range */
#define QUEUE_ORCH_MAX 63                     /* bytes of an orchestrator id */
#define QUEUE_ID_MAX 128                      /* bytes of an event id */
#define QUEUE_BATCH_MAX 1000    /* ids per ack, events per fetch */
#define QUEUE_RESERVE_MAX 65536 /* seqs per queue_reserve() */
#define QUEUE_SEQ_MAX ((UINT64_C(1) << 53) - 1)

enum queue_status {
	QUEUE_OK = 0,
	QUEUE_EUNAVAIL, /* no reply: disconnected, timeout, shutdown */
	QUEUE_EREPLY,   /* an error reply, or a reply of the wrong shape */
};

struct queue;

struct queue_enqueue_result {
	uint64_t seq;     /* the event's seq (the existing one if duplicate) */
	unsigned evicted; /* oldest events dropped to respect the cap */
	bool duplicate;   /* the id was already queued: nothing written */
};

/* One queued event; the pointers are valid during the callback only. */
struct queue_item {
	uint64_t seq;
	const char *id; /* NUL-terminated */
	size_t id_len;
	const char *body; /* event_queue_body(), NUL-terminated */
	size_t body_len;
};

struct queue_fetch_result {
	const struct queue_item *items;
	size_t n;
	uint64_t total;    /* all matching events, past the limit too */
	uint64_t last_seq; /* the counter now: the highest seq given, or 0 */
};

typedef void (*queue_enqueue_fn)(struct queue *q, int status,
				 const struct queue_enqueue_result *res,
				 void *arg);
/*
 * queue_reserve(): the block's last seq; queue_next_seq(): the seq;
 * queue_ack(): removed; queue_count(): queued.
 */
typedef void (*queue_num_fn)(struct queue *q, int status, uint64_t n,
			     void *arg);
typedef void (*queue_fetch_fn)(struct queue *q, int status,
			       const struct queue_fetch_result *res, void *arg);

/*
 * A queue on Redis client r (which must outlive it).  max_events 0 means
 * QUEUE_DEFAULT_MAX_EVENTS, retention_s 0 QUEUE_DEFAULT_RETENTION_S; other
 * values are clamped to 1..QUEUE_MAX_EVENTS_LIMIT and
 * 1..QUEUE_RETENTION_LIMIT_S (the config checks the ranges).  Several queue
 * objects may share one client and one Redis.
 */
struct queue *queue_new(struct redis *r, unsigned max_events,
			uint64_t retention_s);
/*
 * Refuse new calls and release the queue once nothing is pending.
 * Operations in flight still complete and call their callbacks (with
 * QUEUE_EUNAVAIL if the Redis client is freed meanwhile); q may be passed
 * to them but not used for new calls.
 */
void queue_free(struct queue *q);

/*
 * Queue ev for orchestrator orch (which a broadcast event does not name),
 * keyed by ev->id, with its body and timestamp.  Idempotent by event id
 * while the id is queued: a second enqueue returns the first seq with
 * duplicate set and changes nothing but the TTLs.  An id that was acked or
 * evicted is a new event if it comes again.  Beyond the cap, the lowest
 * seqs go, bodies included: res->evicted says how many (the caller counts
 * them).
 */
int queue_enqueue(struct queue *q, const struct event *ev, const char *orch,
		  queue_enqueue_fn fn, void *arg);
/*
 * queue_enqueue() with a seq the caller reserved (1..QUEUE_SEQ_MAX) instead
 * of one taken from the counter; the same idempotency (a duplicate returns
 * the seq it was queued with, and the given one stays unused), cap and
 * TTLs.  Should the counter be below seq (lost since the reservation), it
 * is raised to seq.
 */
int queue_enqueue_seq(struct queue *q, const struct event *ev, const char *orch,
		      uint64_t seq, queue_enqueue_fn fn, void *arg);
/*
 * Lease n seqs (1..QUEUE_RESERVE_MAX) from orch's counter and refresh its
 * TTL: fn gets the last seq of the block, which is (last - n, last], every
 * seq of it above any seq given before.  Nothing else is written.
 */
int queue_reserve(struct queue *q, const char *orch, unsigned n,
		  queue_num_fn fn, void *arg);
/* queue_reserve() of one seq: fn gets it. */
int queue_next_seq(struct queue *q, const char *orch, queue_num_fn fn,
		   void *arg);
/*
 * Remove ids[0..n) (1 <= n <= QUEUE_BATCH_MAX) and their bodies; fn gets
 * how many were queued.  Unknown ids (and ids of more than QUEUE_ID_MAX
 * bytes or empty, which cannot be queued) count 0 and are no error.
 */
int queue_ack(struct queue *q, const char *orch, const char *const *ids,
	      size_t n, queue_num_fn fn, void *arg);
/*
 * Replay: the events with seq > after_seq, in seq order, at most limit
 * (1..QUEUE_BATCH_MAX); page on with after_seq = the last item's seq.
 * res->total counts all events after after_seq (auth_success.queued);
 * after_seq > res->last_seq means the client's resumeFrom is not from this
 * counter (it cannot have seen such a seq): replay from 0.
 */
int queue_fetch(struct queue *q, const char *orch, uint64_t after_seq,
		unsigned limit, queue_fetch_fn fn, void *arg);
/*
 * GET /api/daemon/events?since=: the events whose record timestamp
 * (occurredAt, ms) is >= since_wall_ms, ordered by that timestamp (then by
 * id), at most limit (1..QUEUE_BATCH_MAX); res->total counts them all.
 * Publishers' clocks decide the order here, not the seq.
 */
int queue_fetch_since(struct queue *q, const char *orch, uint64_t since_wall_ms,
		      unsigned limit, queue_fetch_fn fn, void *arg);
/* ZCARD: how many events are queued for orch. */
int queue_count(struct queue *q, const char *orch, queue_num_fn fn, void *arg);

/* Counters for metrics and tests. */
struct queue_stats {
	uint64_t evalsha;  /* scripts sent by SHA */
	uint64_t eval;     /* scripts sent whole (first use, NOSCRIPT) */
	uint64_t noscript; /* NOSCRIPT replies (script cache lost) */
	uint64_t loads;    /* SCRIPT LOAD sent */
};
void queue_get_stats(const struct queue *q, struct queue_stats *st);

#endif
