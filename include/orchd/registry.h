/*
 * registry: the shared-memory connection registry.
 *
 * One fixed table of slots, one per authenticated connection, in memory the
 * supervisor maps MAP_SHARED before it forks, plus two indexes over it: by
 * orchestrator (the quota check and the relay's routing) and by
 * organization (org-wide events).  Every process of the daemon uses the same
 * pointer after fork; nothing in it is an absolute address.
 *
 * Writers (acquire, release, update, reap) serialize on one robust,
 * process-shared mutex, so the per-orchestrator quota is checked and taken
 * in one step across all workers, and a holder that dies mid-update is
 * repaired by the next locker.  Readers (count, workers_for*, foreach,
 * stats, get) take no lock: they read the indexes under a seqlock and the
 * slots under per-slot sequence counters.  See src/registry.c for the
 * crash-consistency argument.
 *
 * Memory: registry_size(100000) is about 30 MB (29.4 MiB), but only the
 * pages that are used get touched.  registry_init() requires zero-filled
 * memory (a fresh ftruncate()d shm object or an anonymous mapping) and
 * writes only the header.
 */
#ifndef ORCHD_REGISTRY_H
#define ORCHD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REGISTRY_ID_MAX 64 /* bytes with the NUL: ids are <= 63 bytes */
#define REGISTRY_MAX_SLOTS 10000000u
#define REGISTRY_MAX_WORKERS 64 /* worker index 0..63, one bit of a mask */

/* Return codes; REGISTRY_OK is 0, errors are negative. */
#define REGISTRY_OK 0
#define REGISTRY_EQUOTA (-1) /* the orchestrator has `quota` slots */
#define REGISTRY_EFULL (-2)  /* every slot is in use */
#define REGISTRY_EINVAL (-3) /* bad entry: empty/unterminated id, worker */
#define REGISTRY_ESTALE (-4) /* slot not in use by that connection id */

enum registry_state {
	REGISTRY_FREE = 0, /* zero pages are free slots */
	REGISTRY_ACTIVE,   /* authenticated, receiving events */
	REGISTRY_DRAINING, /* being closed (reload, stop); still counted */
	REGISTRY_NSTATES
};

/*
 * What acquire stores and what readers get back.  Ids are NUL-terminated
 * within REGISTRY_ID_MAX bytes; an id that does not fit is refused rather
 * than truncated, since truncation could merge two orchestrators' quotas.
 * `organization` may be empty (then the connection is in no org index).
 * Times are opaque milliseconds chosen by the caller (util_wall_ms() suits
 * /stats).  `conn_id` is the caller's handle check: every later call on the
 * slot must present it, so a stale slot number cannot free or change a
 * connection that reused the slot.
 */
struct registry_entry {
	uint64_t conn_id;
	uint64_t connected_ms;
	uint64_t last_seen_ms;
	pid_t pid;
	unsigned worker;           /* 0..REGISTRY_MAX_WORKERS-1 */
	enum registry_state state; /* acquire: FREE means ACTIVE */
	char orchestrator[REGISTRY_ID_MAX];
	char daemon[REGISTRY_ID_MAX];
	char organization[REGISTRY_ID_MAX];
};

struct registry_stats {
	unsigned max_slots;
	unsigned active;        /* slots in use (ACTIVE + DRAINING) */
	unsigned orchestrators; /* distinct orchestrators with a slot */
	unsigned organizations; /* distinct non-empty organizations */
	unsigned high_water;    /* slots ever used since start */
	unsigned repairs;       /* lock holders found dead, index rebuilt */
	unsigned per_worker[REGISTRY_MAX_WORKERS];
};

struct registry;

/* Bytes needed for max_slots (1..REGISTRY_MAX_SLOTS); 0 if out of range. */
size_t registry_size(unsigned max_slots);
/*
 * Lay a registry out in `mem` (64-byte aligned, zero-filled, `size` >=
 * registry_size()).  Called once, by the supervisor, before fork.  NULL
 * (logged) on a bad argument.
 */
struct registry *registry_init(void *mem, size_t size, unsigned max_slots);
/* The registry at `mem` if its header is valid, else NULL. */
struct registry *registry_attach(void *mem);

/*
 * Take a free slot for `e` if its orchestrator holds fewer than `quota`
 * slots across all workers: REGISTRY_OK and *slot_out, or REGISTRY_EQUOTA,
 * REGISTRY_EFULL, REGISTRY_EINVAL.  EQUOTA wins over EFULL.
 */
int registry_acquire(struct registry *r, const struct registry_entry *e,
		     unsigned quota, uint32_t *slot_out);
int registry_release(struct registry *r, uint32_t slot, uint64_t conn_id);
/* Lock-free store of last_seen_ms; only the owning worker calls it. */
int registry_touch(struct registry *r, uint32_t slot, uint64_t conn_id,
		   uint64_t now_ms);
/* ACTIVE <-> DRAINING; FREE is refused (use registry_release()). */
int registry_update(struct registry *r, uint32_t slot, uint64_t conn_id,
		    enum registry_state state);
/*
 * After the supervisor has waited for a dead worker: free every slot held
 * by (worker, pid) and return how many.  The slots of another pid with the
 * same worker index (the new worker of a reload) are left alone.  If pid
 * died holding the lock, this call's own locking repairs the index.
 * Cost: one pass over the used slots (high-water mark), under the lock.
 */
unsigned registry_reap_worker(struct registry *r, unsigned worker, pid_t pid);

/*
 * Readers.  The two index look-ups are O(1) expected (one hash, a short
 * linear probe, no lock, no write to shared memory); they fall back to the
 * lock only if a writer keeps the seqlock busy.  They return the number of
 * slots of that orchestrator (organization) and set *worker_mask to the
 * workers holding them.  The mask is exact while the count is <= 8 (every
 * orchestrator under the default quota); above that it may keep, for a
 * while, the bit of a worker whose last such connection just left -- a
 * superset, so routing by it never loses an event (see registry.c).
 */
unsigned registry_count(struct registry *r, const char *orchestrator);
unsigned registry_workers_for(struct registry *r, const char *orchestrator,
			      uint64_t *worker_mask);
unsigned registry_workers_for_org(struct registry *r, const char *organization,
				  uint64_t *worker_mask);
/* Workers with any slot (global events); O(REGISTRY_MAX_WORKERS). */
unsigned registry_workers_all(struct registry *r, uint64_t *worker_mask);
/* Snapshot of one slot: REGISTRY_OK, or REGISTRY_ESTALE if it is free. */
int registry_get(struct registry *r, uint32_t slot, struct registry_entry *e);
/*
 * Call cb for a consistent snapshot of each used slot, without the lock;
 * stop when cb returns non-zero.  The set as a whole is not a snapshot:
 * slots taken or freed during the walk may or may not be seen.  Cost:
 * O(high-water mark).  Returns the number of callbacks made.
 */
unsigned registry_foreach(struct registry *r,
			  int (*cb)(uint32_t slot,
				    const struct registry_entry *e, void *arg),
			  void *arg);
void registry_stats(struct registry *r, struct registry_stats *st);

/*
 * Full invariant check under the lock (chains, counts, masks, probe
 * reachability, free list).  0, or -1 with a reason in err.  For tests and
 * debugging: O(slots + buckets).
 */
int registry_check(struct registry *r, char *err, size_t errlen);
/* Pid that holds the lock now (0 if none); diagnostics and tests. */
pid_t registry_lock_holder(struct registry *r);

/*
 * Test hooks.  registry_test_crash_at(n) makes this process SIGKILL itself
 * at the n-th crash point (1..registry_test_ncrash()) inside a locked
 * update; 0 disables.  registry_test_lock_and_hang() takes the lock, opens
 * an index update and pauses forever.  registry_test_weak_hash() (right
 * after init) squeezes every hash into `nvalues` values placed at the end
 * of the tables, forcing collisions and probe wrap-around.
 */
void registry_test_crash_at(int n);
int registry_test_ncrash(void);
void registry_test_lock_and_hang(struct registry *r);
void registry_test_weak_hash(struct registry *r, unsigned nvalues);

const char *registry_strerror(int rc);

#endif
