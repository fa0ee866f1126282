/*
 * shm: the shared-memory segment created by the supervisor before it forks.
 *
 * For now it holds one counter block per worker slot; any process can sum
 * them without messages.  Counters are C11 atomics: each slot has one
 * writer at a time except during a reload, when the old and the new worker
 * of a slot add to the same block.
 */
#ifndef ORCHD_SHM_H
#define ORCHD_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "orchd/config.h"

#define SHM_MAGIC 0x6f726368u /* "orch" */
#define SHM_VERSION 1u

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
};

struct shm_segment {
	uint32_t magic;
	uint32_t version;
	atomic_uint generation; /* of the current worker set */
	atomic_uint nworkers;
	struct shm_worker workers[CONFIG_MAX_WORKERS];
	struct shm_relay relay;
};

/* Create, map and unlink a fresh segment; NULL (logged) on failure. */
struct shm_segment *shm_create(void);
void shm_destroy(struct shm_segment *seg);
/* A zero-filled shared mapping of len bytes (unlinked at once); NULL. */
void *shm_map(size_t len, const char *tag);
void shm_unmap(void *p, size_t len);

#endif
