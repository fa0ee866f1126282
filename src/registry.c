/*
 * registry: the shared-memory connection registry.
 *
 * Layout (offsets from the header, so any process may map it anywhere):
 *
 *	struct registry		header: lock, counters, seqlock
 *	struct reg_slot[max]	one per connection, 248 bytes
 *	struct reg_bucket[nb]	orchestrator index, 24 bytes each
 *	struct reg_bucket[nb]	organization index
 *
 * with nb = max + max/4 + 1.  At 100000 slots that is 24.8 MB of slots and
 * 6 MB of buckets.  The memory must be zero-filled when registry_init()
 * runs (fresh shm object after ftruncate(), or MAP_ANONYMOUS): a zero slot
 * is a free slot, a zero bucket an empty one, so init writes only the
 * header and a page is first touched when a connection first needs it.
 * Slots are handed out from a free list, then by bumping a high-water mark,
 * so scans stop at the high-water mark rather than at max.
 *
 * Index.  Each index is an open-addressing hash table with linear probing
 * and backward-shift deletion (no tombstones, so a long-running daemon
 * never degrades).  A bucket holds a key's 32-bit hash, the head of a
 * doubly linked chain of its slots (links live in the slots), the count
 * and a mask of workers.  The key itself is not copied into the bucket:
 * it is compared against the head slot's id, which saves 64 bytes per
 * bucket.  Live keys never outnumber slots, and nb > max, so a probe
 * always reaches an empty bucket.
 *
 * Locking.  Every writer (acquire, release, update, reap) holds one
 * process-shared robust mutex for a few hundred nanoseconds.  One lock is
 * enough: connection churn is thousands per second, the lock makes the
 * quota check-and-take trivially atomic across workers, and one lock has
 * one repair path.  Readers take no lock.  Index readers use a seqlock
 * (r->seq, odd while a writer changes an index); every field they touch is
 * a C11 atomic read relaxed, and a read whose sequence changed is retried,
 * so they never block a writer and writers never wait for the relay.
 * Slot readers (foreach, get) use the per-slot sequence the same way.  A
 * reader that keeps failing -- a writer died with the sequence odd --
 * falls back to taking the lock, which repairs.
 *
 * Crash consistency.  The slots are the truth; the indexes, the free list
 * and the counters are derived data.  A slot's membership is decided by
 * its state word, written while its sequence is odd, and only the lock
 * holder writes a slot (registry_touch() only stores last_seen, one atomic
 * word).  So when pthread_mutex_lock() returns EOWNERDEAD -- the kernel's
 * robust-futex list saw the holder die, SIGKILL included -- the next
 * locker, whoever it is, rebuilds everything derived from the slots:
 *
 *	- a slot whose sequence is odd was being written by the dead holder
 *	  (its acquire never returned, or its release or update was under
 *	  way): it is freed.  The holder was its owner, or the reaper of its
 *	  dead owner, so nobody alive refers to it;
 *	- every other non-free slot is linked back into both indexes, with
 *	  exact counts and masks; free slots below the high-water mark are
 *	  chained into a new free list; the counters are recounted.
 *
 * The rebuild reads nothing it writes except slots it frees idempotently,
 * so a locker that dies during a rebuild just leaves the next one to do it
 * again.  Nothing depends on where, between two instructions, the holder
 * died; the test suite kills a child at each of the crash points below
 * and checks the result.  The rebuild costs a pass over the used slots and
 * both tables (about a millisecond per 100000 slots); it runs only when a
 * process died inside a critical section.
 *
 * Masks.  A bucket's worker mask is OR-ed on acquire.  On release it is
 * recomputed from the chain when the chain is short (<= REG_EXACT_MASK,
 * which covers every orchestrator under sane quotas) or when as many
 * releases as the chain is long have happened since the last recompute;
 * in between it may keep a stale bit.  That keeps a release O(1)
 * amortized for an organization with thousands of connections, and a
 * superset never loses an event: a worker that gets an event for nobody
 * drops it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/registry.h"
#include "orchd/util.h"

#define REG_MAGIC 0x72656731u /* "reg1" */
#define REG_VERSION 1u
#define REG_WORDS (REGISTRY_ID_MAX / 8) /* an id as 64-bit words */
#define REG_EXACT_MASK 8
#define REG_SPIN 64 /* optimistic reads before falling back to the lock */
#define REG_NONE UINT32_MAX

/* The two indexes; an index's key is the slot's id of the same number. */
enum { IDX_ORCH, IDX_ORG, IDX_N };
enum { ID_ORCH = IDX_ORCH, ID_ORG = IDX_ORG, ID_DAEMON, ID_N };

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

/*
 * Seqlock writer side (Boehm, "Can seqlocks get along with programming
 * language memory models?").  BEGIN leaves an odd value -- the same one if
 * a dead writer already left it odd -- and the release fence orders it
 * before the data stores; END publishes the next even value.
 */
#define SEQ_BEGIN(s)                                                           \
	do {                                                                   \
		ST(s, LD(s) | 1);                                              \
		atomic_thread_fence(memory_order_release);                     \
	} while (0)
#define SEQ_END(s)                                                             \
	atomic_store_explicit(&(s), (LD(s) | 1) + 1, memory_order_release)

typedef _Atomic uint32_t a32;
typedef _Atomic uint64_t a64;

/*
 * Chain links and the free list hold slot + 1, so that 0 (a zero page)
 * means "none".  A free slot's next[IDX_ORCH] is its free-list link.
 */
struct reg_slot {
	a32 seq; /* odd while the lock holder writes the slot */
	a32 state;
	_Atomic int pid;
	a32 worker;
	a32 next[IDX_N];
	a32 prev[IDX_N];
	a64 conn_id;
	a64 connected_ms;
	a64 last_seen_ms;
	a64 id[ID_N][REG_WORDS]; /* zero-padded, so comparable by words */
};

struct reg_bucket {
	a32 head;  /* first slot of the chain + 1; 0: empty bucket */
	a32 tag;   /* hash of the key; home bucket is tag % nb */
	a32 count; /* chain length */
	a32 stale; /* releases since the mask was last recomputed */
	a64 mask;  /* workers holding the chain's slots (a superset) */
};

struct registry {
	uint32_t magic;
	uint32_t version;
	uint32_t max_slots;
	uint32_t nbuckets;
	uint64_t seed;
	uint32_t weak; /* test hook: hashes squeezed into this many values */
	size_t slots_off;
	size_t buckets_off[IDX_N];
	size_t size;

	pthread_mutex_t lock; /* robust, process-shared */
	_Atomic int holder;   /* pid holding the lock, for diagnostics */
	a32 repairs;

	/* Derived from the slots; written under the lock. */
	a32 hwm;       /* slots [0, hwm) have been used */
	a32 free_head; /* slot + 1 */
	a32 active;
	a32 nkeys[IDX_N];
	a32 per_worker[REGISTRY_MAX_WORKERS];

	/* Read on every index look-up: keep it off the lock's line. */
	_Alignas(64) a64 seq;
};

_Static_assert(sizeof(struct reg_slot) <= 256, "slot too large");
_Static_assert(sizeof(struct reg_bucket) == 24, "bucket size");

static int crash_at; /* test hook; per process */

/*
 * Points where a test child kills itself: acquire 1-7 (4 and 5 in
 * idx_link), release 8-11 (9 in the backward shift), update 12, rebuild 13.
 */
#define REG_NCRASH 13
#define CRASH(n)                                                               \
	do {                                                                   \
		if (__builtin_expect(crash_at == (n), 0))                      \
			crash_now();                                           \
	} while (0)

static void
crash_now(void)
{
	raise(SIGKILL);
	for (;;)
		pause();
}

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

static uint32_t
nbuckets_for(unsigned max_slots)
{
	return max_slots + max_slots / 4 + 1;
}

static inline struct reg_slot *
slot_at(struct registry *r, uint32_t s)
{
	return (struct reg_slot *)((char *)r + r->slots_off) + s;
}

static inline struct reg_bucket *
table(struct registry *r, int k)
{
	return (struct reg_bucket *)((char *)r + r->buckets_off[k]);
}

/* An id as zero-padded words; its length, or -1 if it does not fit. */
static int
key_make(uint64_t kw[REG_WORDS], const char *s)
{
	size_t n = strnlen(s, REGISTRY_ID_MAX);

	if (n == REGISTRY_ID_MAX)
		return -1;
	memset(kw, 0, REGISTRY_ID_MAX);
	memcpy(kw, s, n);
	return (int)n;
}

static void
key_store(a64 *dst, const uint64_t *kw)
{
	for (int i = 0; i < REG_WORDS; i++)
		ST(dst[i], kw[i]);
}

static void
key_load(uint64_t *kw, a64 *src)
{
	for (int i = 0; i < REG_WORDS; i++)
		kw[i] = LD(src[i]);
}

static bool
key_eq(a64 *a, const uint64_t *kw)
{
	for (int i = 0; i < REG_WORDS; i++)
		if (LD(a[i]) != kw[i])
			return false;
	return true;
}

static void
key_string(char *dst, a64 *src)
{
	uint64_t kw[REG_WORDS];

	key_load(kw, src);
	memcpy(dst, kw, REGISTRY_ID_MAX);
	dst[REGISTRY_ID_MAX - 1] = '\0'; /* a torn read stays a string */
}

/*
 * Seeded multiply-xorshift over the eight words.  Ids are authenticated
 * (they come from verified tokens), so this needs spread, not resistance
 * to chosen collisions; the random seed is there anyway.
 */
static uint32_t
key_hash(const struct registry *r, const uint64_t *kw)
{
	uint64_t h = r->seed;

	for (int i = 0; i < REG_WORDS; i++) {
		h ^= kw[i];
		h *= 0xbf58476d1ce4e5b9ull;
		h ^= h >> 29;
	}
	h *= 0x94d049bb133111ebull;
	h ^= h >> 32;
	if (r->weak)
		return r->nbuckets - 1 - (uint32_t)(h % r->weak);
	return (uint32_t)h;
}

static void reg_rebuild(struct registry *r);

static void
reg_lock(struct registry *r)
{
	int rc = pthread_mutex_lock(&r->lock);

	if (rc == EOWNERDEAD) {
		log_warnx("%s: pid %d died holding the registry lock, "
			  "rebuilding the index",
			  __func__, LD(r->holder));
		ST(r->holder, getpid());
		reg_rebuild(r);
		ST(r->repairs, LD(r->repairs) + 1);
		/* Only now is the data consistent again. */
		if ((rc = pthread_mutex_consistent(&r->lock)) != 0) {
			errno = rc;
			fatal("%s: pthread_mutex_consistent", __func__);
		}
		return;
	}
	if (rc != 0) {
		/* ENOTRECOVERABLE: only if someone unlocked unrepaired. */
		errno = rc;
		fatal("%s: pthread_mutex_lock", __func__);
	}
	ST(r->holder, getpid());
}

static void
reg_unlock(struct registry *r)
{
	ST(r->holder, 0);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Find key kw in index k: its bucket, or REG_NONE with *empty set to the
 * empty bucket that ends the probe.  Used both under the lock and inside a
 * seqlock read, where a torn view may show anything: hence the bounds on
 * head and on the number of probes.
 */
static uint32_t
idx_find(struct registry *r, int k, const uint64_t *kw, uint32_t tag,
	 uint32_t *empty)
{
	struct reg_bucket *b = table(r, k);
	uint32_t nb = r->nbuckets, i = tag % nb;

	for (uint32_t n = 0; n < nb; n++) {
		uint32_t head = LD(b[i].head);

		if (head == 0) {
			if (empty != NULL)
				*empty = i;
			return REG_NONE;
		}
		if (LD(b[i].tag) == tag && head <= r->max_slots &&
		    key_eq(slot_at(r, head - 1)->id[k], kw))
			return i;
		if (++i == nb)
			i = 0;
	}
	return REG_NONE;
}

static uint64_t
chain_mask(struct registry *r, int k, uint32_t head)
{
	uint64_t mask = 0;

	for (uint32_t n = 0; head != 0 && n < r->max_slots; n++) {
		struct reg_slot *sl = slot_at(r, head - 1);

		mask |= 1ull << LD(sl->worker);
		head = LD(sl->next[k]);
	}
	return mask;
}

/* Link slot s, whose id k is already stored, into index k. */
static void
idx_link(struct registry *r, int k, uint32_t s)
{
	struct reg_slot *sl = slot_at(r, s);
	uint64_t kw[REG_WORDS], bit = 1ull << LD(sl->worker);
	uint32_t tag, pos, empty = REG_NONE;
	struct reg_bucket *b;

	key_load(kw, sl->id[k]);
	tag = key_hash(r, kw);
	pos = idx_find(r, k, kw, tag, &empty);
	ST(sl->prev[k], 0);
	if (pos == REG_NONE) {
		b = &table(r, k)[empty];
		ST(sl->next[k], 0);
		ST(b->tag, tag);
		ST(b->count, 1);
		ST(b->stale, 0);
		ST(b->mask, bit);
		CRASH(4);
		ST(b->head, s + 1);
		ST(r->nkeys[k], LD(r->nkeys[k]) + 1);
		return;
	}
	b = &table(r, k)[pos];
	ST(sl->next[k], LD(b->head));
	ST(slot_at(r, LD(b->head) - 1)->prev[k], s + 1);
	CRASH(5);
	ST(b->head, s + 1);
	ST(b->count, LD(b->count) + 1);
	ST(b->mask, LD(b->mask) | bit);
}

/*
 * Backward-shift deletion (Knuth's Algorithm R): empty bucket i, then move
 * back each later bucket of the cluster whose home does not lie cyclically
 * in (i, j], so that every key stays reachable from its home without
 * tombstones.
 */
static void
idx_delete(struct registry *r, int k, uint32_t i)
{
	struct reg_bucket *b = table(r, k);
	uint32_t nb = r->nbuckets, j = i;

	for (;;) {
		uint32_t home;

		if (++j == nb)
			j = 0;
		if (LD(b[j].head) == 0)
			break;
		home = LD(b[j].tag) % nb;
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		ST(b[i].tag, LD(b[j].tag));
		ST(b[i].count, LD(b[j].count));
		ST(b[i].stale, LD(b[j].stale));
		ST(b[i].mask, LD(b[j].mask));
		ST(b[i].head, LD(b[j].head));
		CRASH(9);
		i = j;
	}
	ST(b[i].head, 0);
	ST(r->nkeys[k], LD(r->nkeys[k]) - 1);
}

static void
idx_unlink(struct registry *r, int k, uint32_t s)
{
	struct reg_slot *sl = slot_at(r, s);
	uint64_t kw[REG_WORDS];
	uint32_t pos, next, prev, count, stale;
	struct reg_bucket *b;

	key_load(kw, sl->id[k]);
	pos = idx_find(r, k, kw, key_hash(r, kw), NULL);
	if (pos == REG_NONE)
		fatalx("%s: slot %u missing from index %d", __func__, s, k);
	b = &table(r, k)[pos];
	next = LD(sl->next[k]);
	prev = LD(sl->prev[k]);
	if (prev != 0)
		ST(slot_at(r, prev - 1)->next[k], next);
	else
		ST(b->head, next);
	if (next != 0)
		ST(slot_at(r, next - 1)->prev[k], prev);
	CRASH(8);
	count = LD(b->count) - 1;
	ST(b->count, count);
	if (count == 0) {
		idx_delete(r, k, pos);
		return;
	}
	stale = LD(b->stale) + 1;
	if (count <= REG_EXACT_MASK || stale >= count) {
		ST(b->mask, chain_mask(r, k, LD(b->head)));
		stale = 0;
	}
	ST(b->stale, stale);
}

static bool
slot_has_org(struct reg_slot *sl)
{
	/* A non-empty id has a non-zero first byte, so a non-zero word. */
	return LD(sl->id[ID_ORG][0]) != 0;
}

static void
count_slot(struct registry *r, unsigned worker, int delta)
{
	ST(r->active, LD(r->active) + delta);
	ST(r->per_worker[worker], LD(r->per_worker[worker]) + delta);
}

static uint32_t
slot_alloc(struct registry *r)
{
	uint32_t f = LD(r->free_head), hwm;

	if (f != 0) {
		ST(r->free_head, LD(slot_at(r, f - 1)->next[IDX_ORCH]));
		return f - 1;
	}
	hwm = LD(r->hwm);
	if (hwm == r->max_slots)
		return REG_NONE;
	/* Release: a scanner that sees the new mark sees a zero slot. */
	atomic_store_explicit(&r->hwm, hwm + 1, memory_order_release);
	return hwm;
}

static void
slot_push_free(struct registry *r, uint32_t s)
{
	ST(slot_at(r, s)->next[IDX_ORCH], LD(r->free_head));
	ST(r->free_head, s + 1);
}

/* Free a used slot; the caller holds the lock and the index seqlock. */
static void
slot_free(struct registry *r, uint32_t s)
{
	struct reg_slot *sl = slot_at(r, s);

	idx_unlink(r, IDX_ORCH, s);
	if (slot_has_org(sl))
		idx_unlink(r, IDX_ORG, s);
	CRASH(10);
	SEQ_BEGIN(sl->seq);
	ST(sl->state, REGISTRY_FREE);
	SEQ_END(sl->seq);
	CRASH(11);
	slot_push_free(r, s);
	count_slot(r, LD(sl->worker), -1);
}

/*
 * Re-derive the indexes, the free list and the counters from the slots;
 * see the crash-consistency argument at the top of this file.
 */
static void
reg_rebuild(struct registry *r)
{
	uint32_t hwm = LD(r->hwm), nb = r->nbuckets;

	SEQ_BEGIN(r->seq);
	for (int k = 0; k < IDX_N; k++) {
		struct reg_bucket *b = table(r, k);

		for (uint32_t i = 0; i < nb; i++)
			ST(b[i].head, 0);
		ST(r->nkeys[k], 0);
	}
	ST(r->free_head, 0);
	ST(r->active, 0);
	for (int w = 0; w < REGISTRY_MAX_WORKERS; w++)
		ST(r->per_worker[w], 0);
	CRASH(13);
	/* Downwards, so that the free list hands out low slots first. */
	for (uint32_t s = hwm; s-- > 0;) {
		struct reg_slot *sl = slot_at(r, s);
		uint32_t state = LD(sl->state);

		if ((LD(sl->seq) & 1) || state >= REGISTRY_NSTATES ||
		    LD(sl->worker) >= REGISTRY_MAX_WORKERS) {
			/* Half-written by the dead holder: nobody owns it. */
			SEQ_BEGIN(sl->seq);
			ST(sl->state, REGISTRY_FREE);
			SEQ_END(sl->seq);
			state = REGISTRY_FREE;
		}
		if (state == REGISTRY_FREE) {
			slot_push_free(r, s);
			continue;
		}
		idx_link(r, IDX_ORCH, s);
		if (slot_has_org(sl))
			idx_link(r, IDX_ORG, s);
		count_slot(r, LD(sl->worker), 1);
	}
	SEQ_END(r->seq);
}

size_t
registry_size(unsigned max_slots)
{
	size_t nb;

	if (max_slots == 0 || max_slots > REGISTRY_MAX_SLOTS)
		return 0;
	nb = nbuckets_for(max_slots);
	return ALIGN64(sizeof(struct registry)) +
	       ALIGN64((size_t)max_slots * sizeof(struct reg_slot)) +
	       IDX_N * ALIGN64(nb * sizeof(struct reg_bucket));
}

struct registry *
registry_init(void *mem, size_t size, unsigned max_slots)
{
	size_t need = registry_size(max_slots);
	pthread_mutexattr_t attr;
	struct registry *r = mem;
	int rc;

	if (need == 0 || mem == NULL || size < need ||
	    ((uintptr_t)mem & 63) != 0) {
		log_warnx("%s: bad arguments (max %u, size %zu, need %zu)",
			  __func__, max_slots, size, need);
		return NULL;
	}
	/*
	 * Only the header is written.  The slots and buckets must already be
	 * zero (see the top of the file); memset here would fault in every
	 * page of a table sized for the worst case.
	 */
	memset(r, 0, sizeof(*r));
	r->max_slots = max_slots;
	r->nbuckets = nbuckets_for(max_slots);
	r->slots_off = ALIGN64(sizeof(*r));
	r->buckets_off[IDX_ORCH] =
	    r->slots_off + ALIGN64((size_t)max_slots * sizeof(struct reg_slot));
	r->buckets_off[IDX_ORG] =
	    r->buckets_off[IDX_ORCH] +
	    ALIGN64(r->nbuckets * sizeof(struct reg_bucket));
	r->size = need;
	if (getrandom(&r->seed, sizeof(r->seed), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(r->seed))
		r->seed =
		    util_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)mem;

	/*
	 * Robust: if a holder dies, the kernel hands the next locker
	 * EOWNERDEAD instead of a lock that never opens.
	 */
	if ((rc = pthread_mutexattr_init(&attr)) != 0)
		goto fail;
	rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (rc == 0)
		rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (rc == 0)
		rc = pthread_mutex_init(&r->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc != 0)
		goto fail;
	r->version = REG_VERSION;
	r->magic = REG_MAGIC;
	return r;
fail:
	errno = rc;
	log_warn("%s: robust process-shared mutex", __func__);
	return NULL;
}

struct registry *
registry_attach(void *mem)
{
	struct registry *r = mem;

	if (r == NULL || ((uintptr_t)mem & 63) != 0 || r->magic != REG_MAGIC ||
	    r->version != REG_VERSION || r->size != registry_size(r->max_slots))
		return NULL;
	return r;
}

int
registry_acquire(struct registry *r, const struct registry_entry *e,
		 unsigned quota, uint32_t *slot_out)
{
	uint64_t kw[ID_N][REG_WORDS];
	enum registry_state state;
	struct reg_slot *sl;
	uint32_t pos, s;
	unsigned have = 0;
	int rc = REGISTRY_OK;

	if (key_make(kw[ID_ORCH], e->orchestrator) <= 0 ||
	    key_make(kw[ID_ORG], e->organization) < 0 ||
	    key_make(kw[ID_DAEMON], e->daemon) < 0 ||
	    e->worker >= REGISTRY_MAX_WORKERS || e->pid <= 0 ||
	    (unsigned)e->state >= REGISTRY_NSTATES)
		return REGISTRY_EINVAL;
	state = e->state == REGISTRY_FREE ? REGISTRY_ACTIVE : e->state;

	reg_lock(r);
	pos =
	    idx_find(r, IDX_ORCH, kw[ID_ORCH], key_hash(r, kw[ID_ORCH]), NULL);
	if (pos != REG_NONE)
		have = LD(table(r, IDX_ORCH)[pos].count);
	if (have >= quota) {
		rc = REGISTRY_EQUOTA;
		goto out;
	}
	if ((s = slot_alloc(r)) == REG_NONE) {
		rc = REGISTRY_EFULL;
		goto out;
	}
	CRASH(1);
	sl = slot_at(r, s);
	SEQ_BEGIN(r->seq);
	SEQ_BEGIN(sl->seq);
	ST(sl->pid, e->pid);
	ST(sl->worker, e->worker);
	ST(sl->conn_id, e->conn_id);
	ST(sl->connected_ms, e->connected_ms);
	ST(sl->last_seen_ms, e->last_seen_ms);
	for (int i = 0; i < ID_N; i++)
		key_store(sl->id[i], kw[i]);
	CRASH(2);
	ST(sl->state, state);
	SEQ_END(sl->seq);
	CRASH(3);
	idx_link(r, IDX_ORCH, s);
	CRASH(6);
	if (slot_has_org(sl))
		idx_link(r, IDX_ORG, s);
	count_slot(r, e->worker, 1);
	CRASH(7);
	SEQ_END(r->seq);
	*slot_out = s;
out:
	reg_unlock(r);
	return rc;
}

/*
 * The slot if it is in use by conn_id.  Unlocked callers are the owner
 * (touch), whose slot nobody else frees while it lives.
 */
static struct reg_slot *
slot_owned(struct registry *r, uint32_t s, uint64_t conn_id)
{
	struct reg_slot *sl;

	if (s >= atomic_load_explicit(&r->hwm, memory_order_acquire))
		return NULL;
	sl = slot_at(r, s);
	if (LD(sl->state) == REGISTRY_FREE || LD(sl->conn_id) != conn_id)
		return NULL;
	return sl;
}

int
registry_release(struct registry *r, uint32_t slot, uint64_t conn_id)
{
	int rc = REGISTRY_ESTALE;

	reg_lock(r);
	if (slot_owned(r, slot, conn_id) != NULL) {
		SEQ_BEGIN(r->seq);
		slot_free(r, slot);
		SEQ_END(r->seq);
		rc = REGISTRY_OK;
	}
	reg_unlock(r);
	return rc;
}

int
registry_touch(struct registry *r, uint32_t slot, uint64_t conn_id,
	       uint64_t now_ms)
{
	struct reg_slot *sl = slot_owned(r, slot, conn_id);

	if (sl == NULL)
		return REGISTRY_ESTALE;
	ST(sl->last_seen_ms, now_ms);
	return REGISTRY_OK;
}

int
registry_update(struct registry *r, uint32_t slot, uint64_t conn_id,
		enum registry_state state)
{
	struct reg_slot *sl;
	int rc = REGISTRY_ESTALE;

	if (state == REGISTRY_FREE || (unsigned)state >= REGISTRY_NSTATES)
		return REGISTRY_EINVAL;
	reg_lock(r);
	if ((sl = slot_owned(r, slot, conn_id)) != NULL) {
		/* No index changes: both non-free states count the same. */
		SEQ_BEGIN(sl->seq);
		CRASH(12);
		ST(sl->state, state);
		SEQ_END(sl->seq);
		rc = REGISTRY_OK;
	}
	reg_unlock(r);
	return rc;
}

unsigned
registry_reap_worker(struct registry *r, unsigned worker, pid_t pid)
{
	unsigned n = 0;
	uint32_t hwm;

	reg_lock(r);
	hwm = LD(r->hwm);
	for (uint32_t s = 0; s < hwm; s++) {
		struct reg_slot *sl = slot_at(r, s);

		if (LD(sl->state) == REGISTRY_FREE ||
		    LD(sl->worker) != worker || LD(sl->pid) != pid)
			continue;
		/* One seqlock window per slot: the relay reads in between. */
		SEQ_BEGIN(r->seq);
		slot_free(r, s);
		SEQ_END(r->seq);
		n++;
	}
	reg_unlock(r);
	return n; /* the caller logs it, with the exit status */
}

/* Count and mask of key kw in index k; 0 and no mask if absent. */
static unsigned
idx_get(struct registry *r, int k, const uint64_t *kw, uint32_t tag,
	uint64_t *mask)
{
	uint32_t pos = idx_find(r, k, kw, tag, NULL);

	if (pos == REG_NONE)
		return 0;
	*mask = LD(table(r, k)[pos].mask);
	return LD(table(r, k)[pos].count);
}

/* Count and mask of one key, read optimistically under the seqlock. */
static unsigned
idx_read(struct registry *r, int k, const char *id, uint64_t *mask_out)
{
	uint64_t kw[REG_WORDS], mask = 0;
	unsigned count = 0;
	uint32_t tag;

	if (key_make(kw, id) <= 0)
		goto done;
	tag = key_hash(r, kw);
	for (int t = 0; t < REG_SPIN; t++) {
		uint64_t s1 =
		    atomic_load_explicit(&r->seq, memory_order_acquire);

		if ((s1 & 1) == 0) {
			count = idx_get(r, k, kw, tag, &mask);
			atomic_thread_fence(memory_order_acquire);
			if (LD(r->seq) == s1)
				goto done;
		}
		if (t >= 8)
			sched_yield();
	}
	/*
	 * A writer keeps the index busy, or died in it leaving the sequence
	 * odd: wait in line for the lock, which repairs in the second case.
	 */
	reg_lock(r);
	count = idx_get(r, k, kw, tag, &mask);
	reg_unlock(r);
done:
	if (mask_out != NULL)
		*mask_out = count ? mask : 0;
	return count;
}

unsigned
registry_count(struct registry *r, const char *orchestrator)
{
	return idx_read(r, IDX_ORCH, orchestrator, NULL);
}

unsigned
registry_workers_for(struct registry *r, const char *orchestrator,
		     uint64_t *worker_mask)
{
	return idx_read(r, IDX_ORCH, orchestrator, worker_mask);
}

unsigned
registry_workers_for_org(struct registry *r, const char *organization,
			 uint64_t *worker_mask)
{
	return idx_read(r, IDX_ORG, organization, worker_mask);
}

unsigned
registry_workers_all(struct registry *r, uint64_t *worker_mask)
{
	uint64_t mask = 0;
	unsigned total = 0;

	for (int w = 0; w < REGISTRY_MAX_WORKERS; w++) {
		unsigned n = LD(r->per_worker[w]);

		if (n != 0)
			mask |= 1ull << w;
		total += n;
	}
	*worker_mask = mask;
	return total;
}

/*
 * Consistent copy of slot s: 1 if it is in use, 0 if free (or stuck odd
 * because its writer died: the coming repair frees it).
 */
static int
slot_snap(struct registry *r, uint32_t s, struct registry_entry *e)
{
	struct reg_slot *sl = slot_at(r, s);

	for (int t = 0; t < REG_SPIN; t++) {
		uint32_t s1 =
		    atomic_load_explicit(&sl->seq, memory_order_acquire);
		uint32_t state;

		if ((s1 & 1) == 0) {
			state = LD(sl->state);
			if (state != REGISTRY_FREE) {
				e->state = (enum registry_state)state;
				e->pid = LD(sl->pid);
				e->worker = LD(sl->worker);
				e->conn_id = LD(sl->conn_id);
				e->connected_ms = LD(sl->connected_ms);
				key_string(e->orchestrator, sl->id[ID_ORCH]);
				key_string(e->organization, sl->id[ID_ORG]);
				key_string(e->daemon, sl->id[ID_DAEMON]);
			}
			atomic_thread_fence(memory_order_acquire);
			if (LD(sl->seq) == s1) {
				/* Not covered by the sequence: touch. */
				e->last_seen_ms = LD(sl->last_seen_ms);
				return state != REGISTRY_FREE;
			}
		}
		if (t >= 8)
			sched_yield();
	}
	return 0;
}

int
registry_get(struct registry *r, uint32_t slot, struct registry_entry *e)
{
	if (slot >= atomic_load_explicit(&r->hwm, memory_order_acquire) ||
	    !slot_snap(r, slot, e))
		return REGISTRY_ESTALE;
	return REGISTRY_OK;
}

unsigned
registry_foreach(struct registry *r,
		 int (*cb)(uint32_t slot, const struct registry_entry *e,
			   void *arg),
		 void *arg)
{
	uint32_t hwm = atomic_load_explicit(&r->hwm, memory_order_acquire);
	struct registry_entry e;
	unsigned n = 0;

	for (uint32_t s = 0; s < hwm; s++) {
		if (!slot_snap(r, s, &e))
			continue;
		n++;
		if (cb(s, &e, arg) != 0)
			break;
	}
	return n;
}

void
registry_stats(struct registry *r, struct registry_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->max_slots = r->max_slots;
	st->active = LD(r->active);
	st->orchestrators = LD(r->nkeys[IDX_ORCH]);
	st->organizations = LD(r->nkeys[IDX_ORG]);
	st->high_water = LD(r->hwm);
	st->repairs = LD(r->repairs);
	for (int w = 0; w < REGISTRY_MAX_WORKERS; w++)
		st->per_worker[w] = LD(r->per_worker[w]);
}

pid_t
registry_lock_holder(struct registry *r)
{
	return LD(r->holder);
}

/* registry_check(): on a false condition, say why and fail. */
#define VERIFY(cond, ...)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			snprintf(err, len, __VA_ARGS__);                       \
			return -1;                                             \
		}                                                              \
	} while (0)

/* Check index k, bucket i and its chain; count its slots into *members. */
static int
check_bucket(struct registry *r, int k, uint32_t i, uint64_t *members,
	     char *err, size_t len)
{
	struct reg_bucket *b = &table(r, k)[i];
	uint32_t head = LD(b->head), prev = 0, n = 0, count = LD(b->count);
	uint64_t kw[REG_WORDS], exact = 0, mask = LD(b->mask);

	VERIFY(head <= LD(r->hwm), "index %d bucket %u: head %u", k, i, head);
	key_load(kw, slot_at(r, head - 1)->id[k]);
	VERIFY(LD(b->tag) == key_hash(r, kw) &&
		   idx_find(r, k, kw, LD(b->tag), NULL) == i,
	       "index %d bucket %u: bad tag or unreachable", k, i);
	for (uint32_t s = head; s != 0; s = LD(slot_at(r, s - 1)->next[k])) {
		struct reg_slot *sl = slot_at(r, s - 1);

		VERIFY(s <= LD(r->hwm) && ++n <= count &&
			   LD(sl->state) != REGISTRY_FREE &&
			   LD(sl->prev[k]) == prev && key_eq(sl->id[k], kw),
		       "index %d bucket %u: broken chain at slot %u", k, i,
		       s - 1);
		exact |= 1ull << LD(sl->worker);
		prev = s;
	}
	VERIFY(n == count && (mask & exact) == exact &&
		   (count > REG_EXACT_MASK || mask == exact),
	       "index %d bucket %u: count %u/%u, mask %#llx, exact %#llx", k, i,
	       count, n, (unsigned long long)mask, (unsigned long long)exact);
	*members += n;
	return 0;
}

static int
check_locked(struct registry *r, char *err, size_t len)
{
	uint32_t hwm = LD(r->hwm), nfree = 0, active = 0, with_org = 0;
	uint32_t per_worker[REGISTRY_MAX_WORKERS] = {0};

	VERIFY(hwm <= r->max_slots && !(LD(r->seq) & 1), "header");
	for (uint32_t s = 0; s < hwm; s++) {
		struct reg_slot *sl = slot_at(r, s);
		uint32_t state = LD(sl->state), w = LD(sl->worker);

		VERIFY(!(LD(sl->seq) & 1) && state < REGISTRY_NSTATES &&
			   (state == REGISTRY_FREE || w < REGISTRY_MAX_WORKERS),
		       "slot %u: seq %u state %u worker %u", s, LD(sl->seq),
		       state, w);
		if (state == REGISTRY_FREE)
			continue;
		active++;
		per_worker[w]++;
		with_org += slot_has_org(sl);
	}
	for (uint32_t f = LD(r->free_head); f != 0;
	     f = LD(slot_at(r, f - 1)->next[IDX_ORCH]))
		VERIFY(f <= hwm && ++nfree <= hwm &&
			   LD(slot_at(r, f - 1)->state) == REGISTRY_FREE,
		       "free list: bad slot %u", f - 1);
	VERIFY(nfree + active == hwm && active == LD(r->active),
	       "free %u + active %u != hwm %u, or active counter %u", nfree,
	       active, hwm, LD(r->active));
	for (int w = 0; w < REGISTRY_MAX_WORKERS; w++)
		VERIFY(per_worker[w] == LD(r->per_worker[w]),
		       "worker %d: %u slots, counter %u", w, per_worker[w],
		       LD(r->per_worker[w]));
	for (int k = 0; k < IDX_N; k++) {
		uint64_t members = 0;
		uint32_t keys = 0;

		for (uint32_t i = 0; i < r->nbuckets; i++) {
			if (LD(table(r, k)[i].head) == 0)
				continue;
			keys++;
			if (check_bucket(r, k, i, &members, err, len) != 0)
				return -1;
		}
		/*
		 * Chains are disjoint (prev links are checked), hold only used
		 * slots of their key, and add up to every used slot: so each
		 * used slot is in exactly the bucket of its key.
		 */
		VERIFY(keys == LD(r->nkeys[k]) &&
			   members == (k == IDX_ORCH ? active : with_org),
		       "index %d: %u keys (counter %u), %llu members", k, keys,
		       LD(r->nkeys[k]), (unsigned long long)members);
	}
	return 0;
}

int
registry_check(struct registry *r, char *err, size_t len)
{
	int rc;

	reg_lock(r);
	rc = check_locked(r, err, len);
	reg_unlock(r);
	return rc;
}

void
registry_test_crash_at(int n)
{
	crash_at = n;
}

int
registry_test_ncrash(void)
{
	return REG_NCRASH;
}

void
registry_test_lock_and_hang(struct registry *r)
{
	reg_lock(r);
	SEQ_BEGIN(r->seq);
	for (;;)
		pause();
}

void
registry_test_weak_hash(struct registry *r, unsigned nvalues)
{
	if (nvalues > r->nbuckets)
		nvalues = r->nbuckets;
	r->weak = nvalues;
}

const char *
registry_strerror(int rc)
{
	static const char *const msg[] = {
	    "ok", "orchestrator connection quota reached",
	    "connection registry full", "invalid registry entry",
	    "registry slot not held by this connection"};

	if (rc > 0 || -rc >= (int)UTIL_NELEM(msg))
		return "unknown registry error";
	return msg[-rc];
}
