/*
 * shm: the shared-memory segment created by the supervisor before it forks.
 *
 * It holds one counter block per worker slot and the relay's block; any
 * process can sum them without messages (src/metrics.c does, at scrape
 * time).  Counters are C11 atomics, incremented with relaxed ordering.  Each
 * slot has one writer at a time except during a reload, when the old and
 * the new worker of a slot add to the same block.
 *
 * Gauges of a worker block (conn_state[], draining, active,
 * send_queue_bytes) are therefore only ever changed with add/sub, never
 * stored: each process adds what it holds and takes it back when it lets
 * go, so the block is the sum of both processes' shares during a reload.
 * A worker that dies without letting go (a crash, SIGKILL) leaves its
 * share behind; the supervisor, reaping it, zeroes the gauges with
 * shm_worker_reset_gauges() when no other process of the slot is alive
 * (then the dead one's share is the whole value).  The relay's gauges
 * have one writer (the relay) and are stored.
 */
#ifndef ORCHD_SHM_H
#define ORCHD_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "orchd/config.h"

#define SHM_MAGIC 0x6f726368u /* "orch" */
#define SHM_VERSION 4u

/*
 * Labelled counter families: fixed tables, indexes from the functions
 * below, names (the label values) from shm_*_name().  The last index of
 * each is "other".
 */
#define SHM_NCONN_STATES 8 /* enum conn_state before CONN_CLOSED */
#define SHM_NCLOSE 17      /* close codes of PROTOCOL.md 5 + other */
#define SHM_NAUTH 9        /* success, the auth_error codes, other */
#define SHM_NMSG_IN 6      /* client message types + other */
#define SHM_NMSG_OUT 9     /* server message types + other */
/* Histogram buckets: upper bounds in microseconds, then +Inf. */
#define SHM_NBUCKETS 14
extern const uint64_t shm_bucket_us[SHM_NBUCKETS - 1];

/* A latency histogram; buckets hold plain (non-cumulative) counts. */
struct shm_hist {
	atomic_uint_fast64_t bucket[SHM_NBUCKETS];
	atomic_uint_fast64_t sum_us;
};

struct shm_worker {
	atomic_int pid;
	atomic_uint generation;
	atomic_uint_fast64_t started_ms; /* wall clock */
	atomic_uint_fast64_t accepted;
	atomic_uint_fast64_t closed;
	atomic_uint_fast64_t active;
	atomic_uint_fast64_t requests;
	atomic_uint_fast64_t accept_paused; /* EMFILE/ENFILE pauses */
	atomic_uint_fast64_t restarts;
	atomic_uint_fast64_t ws_upgrades;
	atomic_uint_fast64_t ws_messages_in;
	atomic_uint_fast64_t ws_protocol_errors;
	atomic_uint_fast64_t slow_consumers;
	atomic_uint_fast64_t ws_deflates; /* messages compressed */
	atomic_uint_fast64_t proto_messages_in;
	atomic_uint_fast64_t proto_messages_out;
	atomic_uint_fast64_t auth_successes;
	atomic_uint_fast64_t auth_failures;
	atomic_uint_fast64_t auth_timeouts;
	atomic_uint_fast64_t auth_refreshes;
	atomic_uint_fast64_t heartbeats;
	atomic_uint_fast64_t rate_limited;
	atomic_uint_fast64_t addr_limited; /* connections refused with 429 */
	atomic_uint_fast64_t full_refused; /* refused with 503 at max_connections */
	/* POST /api/daemon/auth{,/refresh}: refused with 429 by
	 * auth_failure_limit, and with 503 for a full key-derivation queue */
	atomic_uint_fast64_t api_auth_limited;
	atomic_uint_fast64_t api_auth_busy;

	/* Gauges (add/sub only, see the head comment). */
	atomic_int_fast64_t conn_state[SHM_NCONN_STATES]; /* by conn_state */
	atomic_int_fast64_t draining; /* connections of draining processes */
	atomic_int_fast64_t send_queue_bytes; /* unwritten output, all conns */

	/* Counters by label. */
	atomic_uint_fast64_t close_codes[SHM_NCLOSE]; /* close frames sent */
	atomic_uint_fast64_t auth_results[SHM_NAUTH];
	atomic_uint_fast64_t msg_in[SHM_NMSG_IN];   /* protocol messages */
	atomic_uint_fast64_t msg_out[SHM_NMSG_OUT]; /* event: live + replay */

	/* Events. */
	atomic_uint_fast64_t events_received;  /* frames from the relay */
	atomic_uint_fast64_t events_delivered; /* queued on a socket, live */
	atomic_uint_fast64_t events_replayed;  /* from the durable queue */
	atomic_uint_fast64_t events_acked;     /* removed from the queue */
	/* published_ms (relay) to the frame queued on the socket, live only */
	struct shm_hist delivery_latency;

	/* The PostgreSQL directory's queries (look-ups, channel sets). */
	atomic_uint_fast64_t db_lookups;
	atomic_uint_fast64_t db_errors; /* refused, failed or timed out */
	struct shm_hist db_latency;     /* sent to answered */
	/* 1 while the worker's directory has a connection up (for the relay's
	 * admin status; /stats in a worker asks its own directory). */
	atomic_int db_ready;
};

/* The relay's state and counters, written by the relay only. */
struct shm_relay {
	atomic_int pid;
	atomic_int subscribed;     /* 1 while the Redis subscription is up */
	atomic_uint_fast64_t started_ms;
	atomic_uint_fast64_t restarts;
	atomic_uint_fast64_t received;  /* records read from Redis */
	atomic_uint_fast64_t invalid;   /* records refused */
	atomic_uint_fast64_t invalid_kind[16]; /* by enum event_kind */
	atomic_uint_fast64_t routed;    /* events written to worker pipes */
	atomic_uint_fast64_t frames;    /* frames written (one per worker) */
	atomic_uint_fast64_t queued;    /* events put in durable queues */
	atomic_uint_fast64_t evicted;   /* queue cap evictions */
	atomic_uint_fast64_t unqueued;  /* meant for the queue, Redis failed */
	atomic_uint_fast64_t unrouted;  /* no worker had a connection */
	atomic_uint_fast64_t dropped;   /* frames dropped: pipe queue full */
	atomic_uint_fast64_t overflow;  /* records dropped: relay backlog full */
	atomic_uint_fast64_t reconnects;
	atomic_uint_fast64_t canary_failures;
	atomic_uint_fast64_t pipe_resets; /* worker pipes replaced or gone */
	atomic_uint_fast64_t backlog;   /* records waiting on Redis replies */
	/* By worker slot (every pipe of the slot), stored by the relay. */
	atomic_uint_fast64_t pipe_queue_bytes[CONFIG_MAX_WORKERS]; /* gauge */
	atomic_uint_fast64_t pipe_dropped[CONFIG_MAX_WORKERS];     /* frames */
};

struct shm_segment {
	uint32_t magic;
	uint32_t version;
	atomic_uint generation; /* of the current worker set */
	atomic_uint nworkers;
	atomic_int supervisor_pid;
	atomic_uint_fast64_t started_ms; /* supervisor start, wall clock */
	struct shm_worker workers[CONFIG_MAX_WORKERS];
	struct shm_relay relay;
};

/* Create, map and unlink a fresh segment; NULL (logged) on failure. */
struct shm_segment *shm_create(void);
void shm_destroy(struct shm_segment *seg);
/* A zero-filled shared mapping of len bytes (unlinked at once); NULL. */
void *shm_map(size_t len, const char *tag);
void shm_unmap(void *p, size_t len);

/* Label indexes; out-of-table values give the "other" index. */
unsigned shm_close_index(unsigned code);
unsigned shm_auth_index(const char *code); /* NULL: success */
unsigned shm_msg_in_index(const char *type);
unsigned shm_msg_out_index(const char *type, size_t len);
/* Label values: "4006", "AUTH_FAILED", "heartbeat", "other"... */
const char *shm_close_name(unsigned i);
const char *shm_auth_name(unsigned i);
const char *shm_msg_in_name(unsigned i);
const char *shm_msg_out_name(unsigned i);

/* Count n observations of us microseconds each in h (relaxed). */
void shm_hist_observe(struct shm_hist *h, uint64_t us, uint64_t n);
/* Zero the gauges of a block nobody holds any more (see the head). */
void shm_worker_reset_gauges(struct shm_worker *w);

#endif
