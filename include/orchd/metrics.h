/*
 * metrics: /metrics (Prometheus text format 0.0.4) and /stats (JSON).
 *
 * metrics_snapshot() copies what the shared memory holds -- the per-worker
 * counter blocks, the relay's block (shm.h), the registry's counts and its
 * per-orchestrator connections -- plus each process's resident memory into
 * a plain struct; it never blocks on another process.  The renderers are
 * pure functions of a snapshot (unit-tested from hand-made ones): they
 * write into the caller's buffer and fail rather than exceed it.
 */
#ifndef ORCHD_METRICS_H
#define ORCHD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "orchd/config.h"
#include "orchd/registry.h"
#include "orchd/shm.h"

#define METRICS_MAX_ORCHS 100 /* /stats lists the busiest this many */
/*
 * The largest rendered document: a full /metrics of CONFIG_MAX_WORKERS
 * workers is under 512 KiB; past the cap a renderer fails (the route
 * answers 500) rather than truncate.
 */
#define METRICS_MAX_OUTPUT (2u * 1024u * 1024u)

/* Histogram: plain (non-cumulative) bucket counts, bounds shm_bucket_us. */
struct metrics_hist {
	uint64_t bucket[SHM_NBUCKETS];
	uint64_t sum_us;
};

struct metrics_worker {
	int slot;
	int pid;
	unsigned generation;
	uint64_t started_ms;
	uint64_t rss_bytes;
	uint64_t open;          /* connections (the "active" gauge) */
	uint64_t authenticated; /* registry slots held by the worker */
	uint64_t conn_state[SHM_NCONN_STATES];
	uint64_t draining;
	uint64_t send_queue_bytes;
	uint64_t accepted, closed, requests, accept_paused, restarts;
	uint64_t addr_limited, ws_upgrades, ws_messages_in, ws_protocol_errors;
	uint64_t ws_deflates, slow_consumers, messages_in, messages_out;
	uint64_t auth_successes, auth_failures, auth_timeouts, auth_refreshes;
	uint64_t heartbeats, rate_limited, full_refused;
	uint64_t api_auth_limited, api_auth_busy;
	uint64_t close_codes[SHM_NCLOSE];
	uint64_t auth_results[SHM_NAUTH];
	uint64_t msg_in[SHM_NMSG_IN];
	uint64_t msg_out[SHM_NMSG_OUT];
	uint64_t events_received, events_delivered, events_replayed;
	uint64_t events_acked;
	struct metrics_hist delivery_latency;
	uint64_t db_lookups, db_errors;
	struct metrics_hist db_latency;
	uint64_t pipe_queue_bytes,
	    pipe_dropped; /* the relay's, for this slot */
};

struct metrics_relay {
	int pid;
	int subscribed; /* Redis up */
	uint64_t started_ms, rss_bytes;
	uint64_t restarts, received, invalid, routed, frames, queued, evicted;
	uint64_t unqueued, unrouted, dropped, overflow, reconnects;
	uint64_t canary_failures, pipe_resets, backlog, pipe_queue_bytes;
};

struct metrics_orch {
	char id[REGISTRY_ID_MAX];
	char organization[REGISTRY_ID_MAX];
	unsigned connections;
};

struct metrics_snapshot {
	const char *version;
	uint64_t time_ms;    /* wall clock of the snapshot */
	uint64_t started_ms; /* the supervisor's start */
	int supervisor_pid;
	uint64_t supervisor_rss_bytes;
	unsigned max_connections;
	unsigned nworkers;
	struct metrics_worker workers[CONFIG_MAX_WORKERS];
	struct metrics_relay relay;
	/* The registry: authenticated connections. */
	unsigned authenticated, orchestrators, organizations, high_water;
	unsigned registry_slots;
	int db_enabled, db_ready;
	/* The busiest orchestrators, most connections first. */
	struct metrics_orch orchs[METRICS_MAX_ORCHS];
	unsigned norchs;
	int orchs_truncated; /* more orchestrators than listed */
};

/*
 * Fill *s from the shared memory.  registry may be NULL (counts stay 0);
 * db_enabled/db_ready are the caller's view of the directory.
 */
void metrics_snapshot(struct metrics_snapshot *s, const struct shm_segment *shm,
		      struct registry *registry, const struct config *cfg,
		      int db_enabled, int db_ready);

/* Resident memory of pid from /proc/PID/statm, in bytes; 0 if unknown. */
uint64_t metrics_rss_bytes(int pid);

/*
 * Render into buf[0..cap): 0 and *len, or -1 when the output does not fit
 * (buf then holds nothing useful).
 */
int metrics_render_prometheus(const struct metrics_snapshot *s, char *buf,
			      size_t cap, size_t *len);
int metrics_render_json(const struct metrics_snapshot *s, char *buf, size_t cap,
			size_t *len);

#endif
