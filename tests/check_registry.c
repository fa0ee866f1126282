/*
 * Unit tests for the shared-memory connection registry.
 *
 * Every test maps a real MAP_SHARED region and most fork real processes:
 * the properties under test (quota across workers, repair after a holder
 * is SIGKILLed) only exist between processes.  Children leave with
 * _exit() so that they never run Check's or the sanitizers' exit handlers
 * twice.
 */
#include "config.h"

#include <check.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orchd/registry.h"

/*
 * Check records every passing ck_assert (a message to the runner), which
 * dominates loops of many thousand checks: those use REQUIRE, which costs
 * nothing until it fails.
 */
#define REQUIRE(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond))                                                   \
			ck_abort_msg(__VA_ARGS__);                             \
	} while (0)
#define REQUIRE_EQ(a, b)                                                       \
	do {                                                                   \
		unsigned long long a_ = (a), b_ = (b);                         \
		REQUIRE(a_ == b_, "%s:%d: %s == %llu, expected %s == %llu",    \
			__FILE__, __LINE__, #a, a_, #b, b_);                   \
	} while (0)

static size_t map_len;

static void *
map_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

static struct registry *
reg_new(unsigned max)
{
	struct registry *r;
	void *mem;

	map_len = registry_size(max);
	ck_assert_uint_gt(map_len, 0);
	mem = map_shared(map_len);
	r = registry_init(mem, map_len, max);
	ck_assert_ptr_eq(r, mem);
	return r;
}

static void
reg_free(struct registry *r)
{
	munmap(r, map_len);
}

static void
assert_consistent(struct registry *r)
{
	char err[256] = "";

	if (registry_check(r, err, sizeof(err)) != 0)
		ck_abort_msg("registry_check: %s", err);
}

static struct registry_entry
entry(const char *orch, const char *org, unsigned worker, pid_t pid,
      uint64_t conn_id)
{
	struct registry_entry e;

	memset(&e, 0, sizeof(e));
	snprintf(e.orchestrator, sizeof(e.orchestrator), "%s", orch);
	snprintf(e.organization, sizeof(e.organization), "%s", org);
	snprintf(e.daemon, sizeof(e.daemon), "daemon-%llu",
		 (unsigned long long)conn_id);
	e.worker = worker;
	e.pid = pid;
	e.conn_id = conn_id;
	e.connected_ms = 1000 + conn_id;
	e.last_seen_ms = 1000 + conn_id;
	return e;
}

/* Acquire, asserting the result; returns the slot. */
static uint32_t
take(struct registry *r, const char *orch, const char *org, unsigned worker,
     uint64_t conn_id, unsigned quota, int want)
{
	struct registry_entry e = entry(orch, org, worker, getpid(), conn_id);
	uint32_t slot = UINT32_MAX;
	int rc = registry_acquire(r, &e, quota, &slot);

	REQUIRE(rc == want, "acquire %s worker %u: %s, wanted %s", orch, worker,
		registry_strerror(rc), registry_strerror(want));
	return slot;
}

/*
 * fork() for a test child: it dies with the test process, so a failed
 * assertion never leaves racers spinning behind it.
 */
static pid_t
fork_child(void)
{
	pid_t parent = getpid(), pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0 &&
	    (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent))
		_exit(5);
	return pid;
}

static int
wait_child(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static void
assert_exit_ok(pid_t pid)
{
	int status = wait_child(pid);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child %ld: status %#x", (long)pid, status);
}

START_TEST(test_size_init_attach)
{
	struct registry_stats st;
	struct registry *r;
	_Alignas(64) char junk[4096];
	void *mem;

	ck_assert_uint_eq(registry_size(0), 0);
	ck_assert_uint_eq(registry_size(REGISTRY_MAX_SLOTS + 1), 0);
	ck_assert_uint_gt(registry_size(REGISTRY_MAX_SLOTS), 0);
	/* The brief: about 30 MB for the default 100000 connections. */
	ck_assert_uint_le(registry_size(100000), 31u * 1000 * 1000);
	ck_assert_uint_ge(registry_size(100000), 100000u * 200);

	map_len = registry_size(100);
	mem = map_shared(map_len);
	ck_assert_ptr_null(registry_init(mem, map_len - 1, 100));
	ck_assert_ptr_null(registry_init((char *)mem + 8, map_len, 100));
	ck_assert_ptr_null(registry_init(mem, map_len, 0));
	r = registry_init(mem, map_len, 100);
	ck_assert_ptr_eq(r, mem);
	ck_assert_ptr_eq(registry_attach(mem), r);
	memset(junk, 0x5a, sizeof(junk));
	ck_assert_ptr_null(registry_attach(junk));
	ck_assert_ptr_null(registry_attach(junk + 8));
	ck_assert_ptr_null(registry_attach((char *)mem + 8));
	registry_stats(r, &st);
	ck_assert_uint_eq(st.max_slots, 100);
	ck_assert_uint_eq(st.active, 0);
	ck_assert_uint_eq(st.high_water, 0);
	reg_free(r);
}
END_TEST

/* Init and the first acquires must not fault in the whole table. */
START_TEST(test_lazy_pages)
{
	long pg = sysconf(_SC_PAGESIZE);
	struct registry *r = reg_new(100000);
	size_t npages = (map_len + pg - 1) / pg, resident = 0;
	unsigned char *vec = malloc(npages);

	ck_assert_ptr_nonnull(vec);
	take(r, "o1", "org", 0, 1, 5, REGISTRY_OK);
	take(r, "o2", "org", 1, 2, 5, REGISTRY_OK);
	ck_assert_int_eq(registry_count(r, "absent"), 0);
	ck_assert_int_eq(mincore(r, map_len, vec), 0);
	for (size_t i = 0; i < npages; i++)
		resident += vec[i] & 1;
	ck_assert_uint_gt(npages, 7000);
	ck_assert_msg(resident <= 16, "%zu of %zu pages resident", resident,
		      npages);
	free(vec);
	reg_free(r);
}
END_TEST

START_TEST(test_acquire_release)
{
	struct registry *r = reg_new(64);
	struct registry_entry e, got;
	struct registry_stats st;
	uint64_t mask;
	uint32_t a, b;

	a = take(r, "orch-1", "org-1", 3, 100, 5, REGISTRY_OK);
	b = take(r, "orch-1", "org-1", 7, 101, 5, REGISTRY_OK);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_eq(registry_workers_for(r, "orch-1", &mask), 2);
	ck_assert_uint_eq(mask, (1ull << 3) | (1ull << 7));
	ck_assert_uint_eq(registry_workers_for_org(r, "org-1", &mask), 2);
	ck_assert_uint_eq(mask, (1ull << 3) | (1ull << 7));
	ck_assert_uint_eq(registry_count(r, "orch-2"), 0);

	ck_assert_int_eq(registry_get(r, a, &got), REGISTRY_OK);
	ck_assert_str_eq(got.orchestrator, "orch-1");
	ck_assert_str_eq(got.organization, "org-1");
	ck_assert_str_eq(got.daemon, "daemon-100");
	ck_assert_uint_eq(got.worker, 3);
	ck_assert_int_eq(got.pid, getpid());
	ck_assert_uint_eq(got.conn_id, 100);
	ck_assert_uint_eq(got.connected_ms, 1100);
	ck_assert_int_eq(got.state, REGISTRY_ACTIVE);

	/* A stale handle cannot free someone else's connection. */
	ck_assert_int_eq(registry_release(r, a, 999), REGISTRY_ESTALE);
	ck_assert_int_eq(registry_release(r, 1000, 100), REGISTRY_ESTALE);
	ck_assert_int_eq(registry_release(r, a, 100), REGISTRY_OK);
	ck_assert_int_eq(registry_release(r, a, 100), REGISTRY_ESTALE);
	ck_assert_int_eq(registry_get(r, a, &got), REGISTRY_ESTALE);
	ck_assert_uint_eq(registry_workers_for(r, "orch-1", &mask), 1);
	ck_assert_uint_eq(mask, 1ull << 7);

	/* Invalid entries. */
	e = entry("", "", 0, getpid(), 1);
	ck_assert_int_eq(registry_acquire(r, &e, 5, &a), REGISTRY_EINVAL);
	e = entry("x", "", 64, getpid(), 1);
	ck_assert_int_eq(registry_acquire(r, &e, 5, &a), REGISTRY_EINVAL);
	e = entry("x", "", 0, 0, 1);
	ck_assert_int_eq(registry_acquire(r, &e, 5, &a), REGISTRY_EINVAL);
	e = entry("x", "", 0, getpid(), 1);
	memset(e.orchestrator, 'a', sizeof(e.orchestrator)); /* no NUL */
	ck_assert_int_eq(registry_acquire(r, &e, 5, &a), REGISTRY_EINVAL);
	e = entry("x", "", 0, getpid(), 1);
	ck_assert_int_eq(registry_acquire(r, &e, 0, &a), REGISTRY_EQUOTA);

	/* A 63-byte id is the longest that fits, and is kept whole. */
	memset(e.orchestrator, 'z', REGISTRY_ID_MAX - 1);
	e.orchestrator[REGISTRY_ID_MAX - 1] = '\0';
	ck_assert_int_eq(registry_acquire(r, &e, 5, &a), REGISTRY_OK);
	ck_assert_uint_eq(registry_count(r, e.orchestrator), 1);
	ck_assert_int_eq(registry_get(r, a, &got), REGISTRY_OK);
	ck_assert_str_eq(got.orchestrator, e.orchestrator);

	registry_stats(r, &st);
	ck_assert_uint_eq(st.active, 2);
	ck_assert_uint_eq(st.orchestrators, 2);
	ck_assert_uint_eq(st.organizations, 1);
	ck_assert_uint_eq(st.per_worker[7], 1);
	ck_assert_uint_eq(st.per_worker[0], 1);
	assert_consistent(r);
	reg_free(r);
}
END_TEST

START_TEST(test_quota_and_full)
{
	struct registry *r = reg_new(16);
	uint32_t slots[16];
	char name[32];

	for (int i = 0; i < 5; i++)
		slots[i] = take(r, "q", "", i, i, 5, REGISTRY_OK);
	take(r, "q", "", 9, 99, 5, REGISTRY_EQUOTA);
	/* The quota is per call: a larger one lets a sixth in. */
	slots[5] = take(r, "q", "", 9, 5, 6, REGISTRY_OK);
	ck_assert_int_eq(registry_release(r, slots[5], 5), REGISTRY_OK);
	ck_assert_int_eq(registry_release(r, slots[2], 2), REGISTRY_OK);
	slots[2] = take(r, "q", "", 2, 2, 5, REGISTRY_OK);
	take(r, "q", "", 2, 98, 5, REGISTRY_EQUOTA);

	for (int i = 5; i < 16; i++) {
		snprintf(name, sizeof(name), "other-%d", i);
		slots[i] = take(r, name, "", 1, i, 5, REGISTRY_OK);
	}
	take(r, "fresh", "", 1, 100, 5, REGISTRY_EFULL);
	/* When both hold, the quota answer is the more useful one. */
	take(r, "q", "", 1, 101, 5, REGISTRY_EQUOTA);
	ck_assert_int_eq(registry_release(r, slots[9], 9), REGISTRY_OK);
	take(r, "fresh", "", 1, 100, 5, REGISTRY_OK);
	take(r, "fresh2", "", 1, 102, 5, REGISTRY_EFULL);
	assert_consistent(r);
	reg_free(r);
}
END_TEST

START_TEST(test_touch_update)
{
	struct registry *r = reg_new(32);
	struct registry_entry got;
	uint32_t a;

	a = take(r, "t", "o", 1, 11, 5, REGISTRY_OK);
	ck_assert_int_eq(registry_touch(r, a, 11, 5555), REGISTRY_OK);
	ck_assert_int_eq(registry_touch(r, a, 12, 6666), REGISTRY_ESTALE);
	ck_assert_int_eq(registry_touch(r, 31, 11, 6666), REGISTRY_ESTALE);
	ck_assert_int_eq(registry_get(r, a, &got), REGISTRY_OK);
	ck_assert_uint_eq(got.last_seen_ms, 5555);

	ck_assert_int_eq(registry_update(r, a, 11, REGISTRY_DRAINING),
			 REGISTRY_OK);
	ck_assert_int_eq(registry_update(r, a, 11, REGISTRY_FREE),
			 REGISTRY_EINVAL);
	ck_assert_int_eq(registry_update(r, a, 12, REGISTRY_ACTIVE),
			 REGISTRY_ESTALE);
	ck_assert_int_eq(registry_get(r, a, &got), REGISTRY_OK);
	ck_assert_int_eq(got.state, REGISTRY_DRAINING);
	ck_assert_uint_eq(got.last_seen_ms, 5555);
	/* Draining still counts against the quota and still routes. */
	ck_assert_uint_eq(registry_count(r, "t"), 1);
	take(r, "t", "", 0, 13, 1, REGISTRY_EQUOTA);
	ck_assert_int_eq(registry_update(r, a, 11, REGISTRY_ACTIVE),
			 REGISTRY_OK);
	ck_assert_int_eq(registry_get(r, a, &got), REGISTRY_OK);
	ck_assert_int_eq(got.state, REGISTRY_ACTIVE);
	assert_consistent(r);
	reg_free(r);
}
END_TEST

struct seen {
	unsigned n;
	uint64_t conn_sum;
	int draining;
	unsigned stop_after;
};

static int
collect(uint32_t slot, const struct registry_entry *e, void *arg)
{
	struct seen *s = arg;

	(void)slot;
	s->n++;
	s->conn_sum += e->conn_id;
	s->draining += e->state == REGISTRY_DRAINING;
	return s->stop_after != 0 && s->n == s->stop_after;
}

START_TEST(test_foreach)
{
	struct registry *r = reg_new(32);
	struct seen s = {0};
	uint32_t a, b;

	a = take(r, "t", "o", 1, 11, 5, REGISTRY_OK);
	b = take(r, "u", "", 2, 12, 5, REGISTRY_OK);
	take(r, "v", "", 3, 14, 5, REGISTRY_OK);
	ck_assert_int_eq(registry_update(r, a, 11, REGISTRY_DRAINING),
			 REGISTRY_OK);
	ck_assert_int_eq(registry_release(r, b, 12), REGISTRY_OK);
	ck_assert_uint_eq(registry_foreach(r, collect, &s), 2);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.conn_sum, 25);
	ck_assert_int_eq(s.draining, 1);
	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	ck_assert_uint_eq(registry_foreach(r, collect, &s), 1);
	reg_free(r);
}
END_TEST

/*
 * Masks: exact while a chain is short, a superset (never missing a worker)
 * while a long chain shrinks, exact again once it is short.
 */
START_TEST(test_masks)
{
	struct registry *r = reg_new(64);
	uint32_t big[20];
	uint64_t mask, all;

	for (int i = 0; i < 19; i++)
		big[i] = take(r, "orch-big", "big-org", 0, i, 100, REGISTRY_OK);
	big[19] = take(r, "orch-5", "big-org", 5, 19, 5, REGISTRY_OK);
	take(r, "orch-63", "", 63, 20, 5, REGISTRY_OK);
	ck_assert_uint_eq(registry_workers_for_org(r, "big-org", &mask), 20);
	ck_assert_uint_eq(mask, 1ull | (1ull << 5));
	ck_assert_uint_eq(registry_workers_for(r, "orch-63", &mask), 1);
	ck_assert_uint_eq(mask, 1ull << 63);
	ck_assert_uint_eq(registry_workers_all(r, &all), 21);
	ck_assert_uint_eq(all, 1ull | (1ull << 5) | (1ull << 63));

	ck_assert_int_eq(registry_release(r, big[19], 19), REGISTRY_OK);
	ck_assert_uint_eq(registry_workers_for(r, "orch-5", &mask), 0);
	ck_assert_uint_eq(mask, 0);
	ck_assert_uint_eq(registry_workers_for_org(r, "big-org", &mask), 19);
	ck_assert(mask & 1); /* bit 5 may linger: superset */
	ck_assert_uint_eq(mask & ~(1ull | (1ull << 5)), 0);
	for (int i = 0; i < 11; i++)
		ck_assert_int_eq(registry_release(r, big[i], i), REGISTRY_OK);
	ck_assert_uint_eq(registry_workers_for_org(r, "big-org", &mask), 8);
	ck_assert_uint_eq(mask, 1ull);
	ck_assert_uint_eq(registry_workers_all(r, &all), 9);
	ck_assert_uint_eq(all, 1ull | (1ull << 63));
	assert_consistent(r);
	reg_free(r);
}
END_TEST

/*
 * A long chain's stale bit goes away within `count` releases, even if
 * the chain never gets short: the bound that makes the superset harmless.
 */
START_TEST(test_mask_stale_bound)
{
	struct registry *r = reg_new(64);
	uint32_t gone, s;
	uint64_t mask;
	int i;

	for (i = 0; i < 29; i++)
		take(r, "o", "big", 0, i, 100, REGISTRY_OK);
	gone = take(r, "o", "big", 5, 99, 100, REGISTRY_OK);
	ck_assert_int_eq(registry_release(r, gone, 99), REGISTRY_OK);
	for (i = 0; i < 29; i++) {
		s = take(r, "o", "big", 0, 100 + i, 100, REGISTRY_OK);
		ck_assert_int_eq(registry_release(r, s, 100 + i), REGISTRY_OK);
	}
	ck_assert_uint_eq(registry_workers_for(r, "o", &mask), 29);
	ck_assert_uint_eq(mask, 1);
	ck_assert_uint_eq(registry_workers_for_org(r, "big", &mask), 29);
	ck_assert_uint_eq(mask, 1);
	assert_consistent(r);
	reg_free(r);
}
END_TEST

/*
 * Hash collisions and wrap-around: every key hashes to one or two values
 * at the end of the table, so clusters wrap past bucket 0; keys are then
 * deleted in a random order (head, middle, tail of the cluster) and the
 * survivors must stay reachable.
 */
START_TEST(test_collisions)
{
	unsigned weak = 1 + (unsigned)_i % 3;
	struct registry *r = reg_new(64);
	uint32_t slot[48];
	int order[48], alive[48];
	char name[32];
	unsigned seed = 7 + _i;

	registry_test_weak_hash(r, weak);
	for (int i = 0; i < 48; i++) {
		snprintf(name, sizeof(name), "collide-%d", i);
		slot[i] = take(r, name, i % 2 ? "org-x" : "", i % 64, i, 5,
			       REGISTRY_OK);
		order[i] = i;
		alive[i] = 1;
	}
	assert_consistent(r);
	for (int i = 47; i > 0; i--) {
		int j = rand_r(&seed) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int n = 0; n < 48; n++) {
		int v = order[n];

		REQUIRE_EQ(registry_release(r, slot[v], v), REGISTRY_OK);
		alive[v] = 0;
		for (int i = 0; i < 48; i++) {
			snprintf(name, sizeof(name), "collide-%d", i);
			REQUIRE_EQ(registry_count(r, name), alive[i]);
		}
		assert_consistent(r);
	}
	REQUIRE_EQ(registry_workers_for_org(r, "org-x", NULL), 0);
	reg_free(r);
}
END_TEST

/* ---- processes --------------------------------------------------------- */

#define RACERS 8
#define ROUNDS 300
#define RACE_QUOTA 5

struct race {
	_Atomic int round;
	_Atomic int done;
	int rc[ROUNDS][RACERS];
};

static void
race_child(struct registry *r, struct race *c, unsigned worker)
{
	for (int round = 1; round <= ROUNDS; round++) {
		struct registry_entry e;
		char name[32];
		uint32_t slot;

		while (atomic_load(&c->round) < round)
			sched_yield();
		snprintf(name, sizeof(name), "race-%d", round);
		e = entry(name, "race-org", worker, getpid(),
			  (uint64_t)round * 100 + worker);
		c->rc[round - 1][worker] =
		    registry_acquire(r, &e, RACE_QUOTA, &slot);
		atomic_fetch_add(&c->done, 1);
	}
	_exit(0);
}

/* N processes race for the same orchestrator: exactly `quota` win. */
START_TEST(test_quota_race)
{
	struct registry *r = reg_new(RACE_QUOTA * ROUNDS + 8);
	struct race *c = map_shared(sizeof(*c));
	struct registry_stats st;
	pid_t pids[RACERS];
	unsigned freed = 0;
	char name[32];

	for (int i = 0; i < RACERS; i++) {
		pids[i] = fork_child();
		if (pids[i] == 0)
			race_child(r, c, i);
	}
	for (int round = 1; round <= ROUNDS; round++) {
		int ok = 0, quota = 0;

		atomic_store(&c->round, round);
		while (atomic_load(&c->done) < round * RACERS)
			sched_yield();
		for (int i = 0; i < RACERS; i++) {
			ok += c->rc[round - 1][i] == REGISTRY_OK;
			quota += c->rc[round - 1][i] == REGISTRY_EQUOTA;
		}
		REQUIRE(ok == RACE_QUOTA && quota == RACERS - RACE_QUOTA,
			"round %d: %d won, %d refused", round, ok, quota);
		snprintf(name, sizeof(name), "race-%d", round);
		REQUIRE_EQ(registry_count(r, name), RACE_QUOTA);
	}
	for (int i = 0; i < RACERS; i++)
		assert_exit_ok(pids[i]);
	assert_consistent(r);
	ck_assert_uint_eq(registry_workers_for_org(r, "race-org", NULL),
			  RACE_QUOTA * ROUNDS);
	for (int i = 0; i < RACERS; i++)
		freed += registry_reap_worker(r, i, pids[i]);
	ck_assert_uint_eq(freed, RACE_QUOTA * ROUNDS);
	registry_stats(r, &st);
	ck_assert_uint_eq(st.active, 0);
	ck_assert_uint_eq(st.orchestrators, 0);
	ck_assert_uint_eq(st.organizations, 0);
	ck_assert_uint_eq(st.repairs, 0);
	assert_consistent(r);
	munmap(c, sizeof(*c));
	reg_free(r);
}
END_TEST

#define STRESS_KIDS 6
#define STRESS_ITERS 4000
#define STRESS_ORCH 3
#define STRESS_QUOTA 2

struct stress {
	_Atomic int held[STRESS_ORCH];
	_Atomic int violations;
	_Atomic int finished;
};

static void
stress_child(struct registry *r, struct stress *c, unsigned worker)
{
	unsigned seed = worker * 7919 + 1;
	char name[32];

	for (int it = 0; it < STRESS_ITERS; it++) {
		int j = rand_r(&seed) % STRESS_ORCH, rc;
		uint64_t id = (uint64_t)worker << 48 | it;
		struct registry_entry e;
		uint32_t slot;

		snprintf(name, sizeof(name), "stress-%d", j);
		e = entry(name, "stress-org", worker, getpid(), id);
		rc = registry_acquire(r, &e, STRESS_QUOTA, &slot);
		if (rc == REGISTRY_EQUOTA)
			continue;
		if (rc != REGISTRY_OK ||
		    atomic_fetch_add(&c->held[j], 1) + 1 > STRESS_QUOTA)
			atomic_fetch_add(&c->violations, 1);
		if (registry_touch(r, slot, id, it) != REGISTRY_OK)
			atomic_fetch_add(&c->violations, 1);
		atomic_fetch_sub(&c->held[j], 1);
		if (registry_release(r, slot, id) != REGISTRY_OK)
			atomic_fetch_add(&c->violations, 1);
	}
	atomic_fetch_add(&c->finished, 1);
	_exit(0);
}

static int
stress_seen(uint32_t slot, const struct registry_entry *e, void *arg)
{
	int *bad = arg;

	(void)slot;
	if (strncmp(e->orchestrator, "stress-", 7) != 0 ||
	    strcmp(e->organization, "stress-org") != 0 ||
	    e->worker >= STRESS_KIDS || e->conn_id >> 48 != e->worker)
		(*bad)++;
	return 0;
}

/*
 * Workers churn acquire/release on a few orchestrators while this process
 * reads without the lock: nobody ever holds more than the quota, and the
 * lock-free readers never see a count above it or a worker that does not
 * exist.
 */
START_TEST(test_concurrent_churn)
{
	struct registry *r = reg_new(64);
	struct stress *c = map_shared(sizeof(*c));
	const uint64_t kids = (1ull << STRESS_KIDS) - 1;
	pid_t pids[STRESS_KIDS];
	unsigned long reads = 0;
	int bad = 0;
	char name[32];

	for (int i = 0; i < STRESS_KIDS; i++) {
		pids[i] = fork_child();
		if (pids[i] == 0)
			stress_child(r, c, i);
	}
	while (atomic_load(&c->finished) < STRESS_KIDS) {
		for (int j = 0; j < STRESS_ORCH; j++) {
			uint64_t mask;
			unsigned n;

			snprintf(name, sizeof(name), "stress-%d", j);
			n = registry_workers_for(r, name, &mask);
			if (n > STRESS_QUOTA || (mask & ~kids) ||
			    (n == 0) != (mask == 0))
				bad++;
			reads++;
		}
		if (registry_workers_for_org(r, "stress-org", NULL) >
		    STRESS_ORCH * STRESS_QUOTA)
			bad++;
		registry_foreach(r, stress_seen, &bad);
	}
	for (int i = 0; i < STRESS_KIDS; i++)
		assert_exit_ok(pids[i]);
	ck_assert_int_eq(atomic_load(&c->violations), 0);
	ck_assert_msg(bad == 0, "%d bad reads of %lu", bad, reads);
	ck_assert_uint_gt(reads, 0);
	for (int j = 0; j < STRESS_ORCH; j++) {
		snprintf(name, sizeof(name), "stress-%d", j);
		ck_assert_uint_eq(registry_count(r, name), 0);
	}
	assert_consistent(r);
	munmap(c, sizeof(*c));
	reg_free(r);
}
END_TEST

/* Fork a child that runs fn, reports readiness on a pipe, then pauses. */
static pid_t
spawn_holder(struct registry *r, unsigned worker, int nslots, const char *orch,
	     int hang_with_lock)
{
	int fds[2];
	char c = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork_child();
	if (pid == 0) {
		close(fds[0]);
		for (int i = 0; i < nslots; i++) {
			struct registry_entry e =
			    entry(orch, "org-h", worker, getpid(), 500 + i);
			uint32_t slot;

			if (registry_acquire(r, &e, 5, &slot) != REGISTRY_OK)
				_exit(3);
		}
		if (hang_with_lock) {
			/* The parent sees the lock holder change instead. */
			close(fds[1]);
			registry_test_lock_and_hang(r);
		}
		if (write(fds[1], &c, 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	close(fds[1]);
	if (!hang_with_lock) {
		ck_assert_int_eq(read(fds[0], &c, 1), 1);
	} else {
		for (int i = 0; registry_lock_holder(r) != pid; i++) {
			ck_assert_int_lt(i, 10000);
			usleep(1000);
		}
	}
	close(fds[0]);
	return pid;
}

static void
kill_and_wait(pid_t pid)
{
	int status;

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	status = wait_child(pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/*
 * A worker is SIGKILLed between operations.  The supervisor reaps it by
 * (worker, pid): the new worker of a reload, with the same index, keeps
 * its slots.
 */
START_TEST(test_reap_dead_owner)
{
	struct registry *r = reg_new(64);
	struct registry_stats st;
	pid_t old, fresh;
	uint64_t mask;

	take(r, "A", "", 0, 1, 5, REGISTRY_OK);
	old = spawn_holder(r, 2, 3, "A", 0);
	fresh = spawn_holder(r, 2, 1, "A", 0);
	ck_assert_uint_eq(registry_workers_for(r, "A", &mask), 5);
	ck_assert_uint_eq(mask, 1ull | (1ull << 2));
	take(r, "A", "", 0, 2, 5, REGISTRY_EQUOTA);
	kill_and_wait(old);

	ck_assert_uint_eq(registry_reap_worker(r, 2, getpid()), 0);
	ck_assert_uint_eq(registry_reap_worker(r, 3, old), 0);
	ck_assert_uint_eq(registry_reap_worker(r, 2, old), 3);
	ck_assert_uint_eq(registry_reap_worker(r, 2, old), 0);
	ck_assert_uint_eq(registry_workers_for(r, "A", &mask), 2);
	ck_assert_uint_eq(mask, 1ull | (1ull << 2));
	ck_assert_uint_eq(registry_workers_for_org(r, "org-h", &mask), 1);
	ck_assert_uint_eq(mask, 1ull << 2);
	for (int i = 0; i < 3; i++)
		take(r, "A", "", 1, 10 + i, 5, REGISTRY_OK);
	take(r, "A", "", 1, 20, 5, REGISTRY_EQUOTA);

	kill_and_wait(fresh);
	ck_assert_uint_eq(registry_reap_worker(r, 2, fresh), 1);
	ck_assert_uint_eq(registry_workers_for(r, "A", &mask), 4);
	ck_assert_uint_eq(mask, 1ull | (1ull << 1));
	registry_stats(r, &st);
	ck_assert_uint_eq(st.active, 4);
	ck_assert_uint_eq(st.organizations, 0);
	ck_assert_uint_eq(st.repairs, 0);
	assert_consistent(r);
	reg_free(r);
}
END_TEST

/*
 * A worker is SIGKILLed while it holds the lock in the middle of an index
 * update (seqlock odd).  Another worker is blocked on the lock at that
 * moment: the kernel wakes it with EOWNERDEAD, it repairs and its acquire
 * succeeds.  Then the supervisor reaps the dead one.
 */
START_TEST(test_killed_holding_lock_waiter)
{
	struct registry *r = reg_new(64);
	struct {
		_Atomic int started;
		_Atomic int rc;
	} * c;
	struct registry_stats st;
	pid_t holder, waiter;

	c = map_shared(sizeof(*c));
	atomic_store(&c->rc, 99);
	take(r, "X", "", 0, 1, 5, REGISTRY_OK);
	holder = spawn_holder(r, 1, 2, "X", 1);
	waiter = fork_child();
	if (waiter == 0) {
		struct registry_entry e = entry("X", "", 2, getpid(), 77);
		uint32_t slot;

		atomic_store(&c->started, 1);
		atomic_store(&c->rc, registry_acquire(r, &e, 5, &slot));
		_exit(0);
	}
	while (!atomic_load(&c->started))
		sched_yield();
	usleep(50 * 1000); /* let it block on the lock */
	ck_assert_int_eq(atomic_load(&c->rc), 99);
	ck_assert_int_eq(registry_lock_holder(r), holder);
	kill_and_wait(holder);
	assert_exit_ok(waiter);
	ck_assert_int_eq(atomic_load(&c->rc), REGISTRY_OK);

	registry_stats(r, &st);
	ck_assert_uint_eq(st.repairs, 1);
	ck_assert_uint_eq(registry_count(r, "X"), 4);
	ck_assert_uint_eq(registry_reap_worker(r, 1, holder), 2);
	ck_assert_uint_eq(registry_reap_worker(r, 2, waiter), 1);
	ck_assert_uint_eq(registry_count(r, "X"), 1);
	take(r, "X", "", 3, 2, 2, REGISTRY_OK);
	take(r, "X", "", 3, 3, 2, REGISTRY_EQUOTA);
	ck_assert_int_eq(registry_lock_holder(r), 0);
	assert_consistent(r);
	munmap(c, sizeof(*c));
	reg_free(r);
}
END_TEST

/*
 * Same death, but nobody waits: the next lock-free reader finds the
 * seqlock stuck odd, falls back to the lock and repairs.
 */
START_TEST(test_killed_holding_lock_reader)
{
	struct registry *r = reg_new(64);
	struct registry_stats st;
	uint64_t mask;
	pid_t holder;

	holder = spawn_holder(r, 4, 3, "Y", 1);
	kill_and_wait(holder);
	ck_assert_uint_eq(registry_workers_for(r, "Y", &mask), 3);
	ck_assert_uint_eq(mask, 1ull << 4);
	registry_stats(r, &st);
	ck_assert_uint_eq(st.repairs, 1);
	ck_assert_uint_eq(registry_reap_worker(r, 4, holder), 3);
	ck_assert_uint_eq(registry_count(r, "Y"), 0);
	take(r, "Y", "", 0, 1, 5, REGISTRY_OK);
	assert_consistent(r);
	registry_stats(r, &st);
	ck_assert_uint_eq(st.repairs, 1);
	reg_free(r);
}
END_TEST

/*
 * The crash-consistency argument, tested: a child kills itself at each
 * crash point inside a locked update (acquire of a new and of an existing
 * key, update, release from a chain, release of a key with a backward
 * shift).  Whatever point it died at, the next locker repairs, the
 * supervisor's reap frees what the child held, and the registry is exactly
 * the parent's again and fully usable.
 */
START_TEST(test_crash_points)
{
	int n = registry_test_ncrash();

	ck_assert_int_ge(n, 12);
	for (int p = 1; p <= n; p++) {
		struct registry *r = reg_new(64);
		struct registry_stats st;
		uint64_t mask;
		unsigned reaped;
		pid_t pid;
		int status;

		/* One hash value: one cluster, wrapping past bucket 0. */
		registry_test_weak_hash(r, 1);
		take(r, "A", "O1", 0, 1, 5, REGISTRY_OK);
		take(r, "A", "O1", 0, 2, 5, REGISTRY_OK);
		take(r, "B", "O1", 0, 3, 5, REGISTRY_OK);
		take(r, "C", "", 0, 4, 5, REGISTRY_OK);
		pid = fork_child();
		if (pid == 0) {
			struct registry_entry a =
			    entry("A", "O1", 1, getpid(), 10);
			struct registry_entry d =
			    entry("D", "O2", 1, getpid(), 11);
			struct registry_entry e2 =
			    entry("E", "O2", 1, getpid(), 12);
			struct registry_entry a2 =
			    entry("A", "O1", 1, getpid(), 13);
			uint32_t sa, sd, s;

			if (registry_acquire(r, &a, 5, &sa) != REGISTRY_OK ||
			    registry_acquire(r, &d, 5, &sd) != REGISTRY_OK)
				_exit(3);
			registry_test_crash_at(p);
			if (registry_acquire(r, &e2, 5, &s) != REGISTRY_OK ||
			    registry_acquire(r, &a2, 5, &s) != REGISTRY_OK ||
			    registry_update(r, sa, 10, REGISTRY_DRAINING) ||
			    registry_release(r, sa, 10) != REGISTRY_OK ||
			    registry_release(r, sd, 11) != REGISTRY_OK)
				_exit(4);
			_exit(0);
		}
		status = wait_child(pid);
		if (p == n) {
			/* The last point is inside the rebuild: not reached. */
			ck_assert(WIFEXITED(status) &&
				  WEXITSTATUS(status) == 0);
		} else {
			ck_assert_msg(
			    WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			    "crash point %d not reached (%#x)", p, status);
		}
		/* A lock-free read first: it must not hang, whatever state. */
		ck_assert_uint_le(registry_workers_for(r, "A", &mask), 5);
		assert_consistent(r);
		registry_stats(r, &st);
		ck_assert_uint_eq(st.repairs, p == n ? 0 : 1);
		reaped = registry_reap_worker(r, 1, pid);
		ck_assert_uint_le(reaped, 4);
		ck_assert_uint_eq(registry_workers_for(r, "A", &mask), 2);
		ck_assert_uint_eq(mask, 1);
		ck_assert_uint_eq(registry_count(r, "B"), 1);
		ck_assert_uint_eq(registry_count(r, "C"), 1);
		ck_assert_uint_eq(registry_count(r, "D"), 0);
		ck_assert_uint_eq(registry_count(r, "E"), 0);
		ck_assert_uint_eq(registry_workers_for_org(r, "O1", &mask), 3);
		ck_assert_uint_eq(registry_workers_for_org(r, "O2", &mask), 0);
		registry_stats(r, &st);
		ck_assert_uint_eq(st.active, 4);
		ck_assert_uint_eq(st.orchestrators, 3);
		ck_assert_uint_eq(st.organizations, 1);
		assert_consistent(r);
		for (int i = 0; i < 3; i++)
			take(r, "A", "O1", 2, 20 + i, 5, REGISTRY_OK);
		take(r, "A", "O1", 2, 30, 5, REGISTRY_EQUOTA);
		take(r, "E", "O2", 2, 31, 5, REGISTRY_OK);
		assert_consistent(r);
		reg_free(r);
	}
}
END_TEST

/* The repairer itself dies mid-rebuild: the next locker rebuilds again. */
START_TEST(test_crash_in_rebuild)
{
	struct registry *r = reg_new(64);
	struct registry_stats st;
	pid_t holder, repairer;
	int status;

	take(r, "A", "", 0, 1, 5, REGISTRY_OK);
	take(r, "A", "", 0, 2, 5, REGISTRY_OK);
	holder = spawn_holder(r, 1, 1, "A", 1);
	kill_and_wait(holder);
	repairer = fork_child();
	if (repairer == 0) {
		registry_test_crash_at(registry_test_ncrash());
		(void)registry_count(r, "A");
		_exit(0);
	}
	status = wait_child(repairer);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	registry_stats(r, &st);
	ck_assert_uint_eq(st.repairs, 0);
	ck_assert_uint_eq(registry_count(r, "A"), 3);
	registry_stats(r, &st);
	ck_assert_uint_eq(st.repairs, 1);
	ck_assert_uint_eq(registry_reap_worker(r, 1, holder), 1);
	ck_assert_uint_eq(registry_count(r, "A"), 2);
	assert_consistent(r);
	reg_free(r);
}
END_TEST

/* ---- random operations against a reference model ----------------------- */

#define M_SLOTS 96
#define M_ORCH 40
#define M_ORG 6 /* org 0 is "no organization" */
#define M_OPS 40000

struct m_conn {
	uint32_t slot;
	uint64_t conn_id;
	int orch, org;
	unsigned worker;
	enum registry_state state;
	uint64_t last_seen;
};

struct model {
	struct m_conn c[M_SLOTS];
	int n;
	unsigned orch_count[M_ORCH], org_count[M_ORG];
};

static void
m_name(char *buf, size_t len, int orch)
{
	snprintf(buf, len, "orchestrator-%08x-%d", orch * 2654435761u, orch);
}

static void
o_name(char *buf, size_t len, int org)
{
	if (org == 0)
		snprintf(buf, len, "%s", "");
	else
		snprintf(buf, len, "org-%d", org);
}

static pid_t
m_pid(unsigned worker)
{
	return 10000 + (pid_t)worker;
}

static void
m_remove(struct model *m, int i)
{
	m->orch_count[m->c[i].orch]--;
	m->org_count[m->c[i].org]--;
	m->c[i] = m->c[--m->n];
}

static void
m_verify_key(struct registry *r, struct model *m, int orch, int org)
{
	uint64_t exact = 0, mask;
	char name[REGISTRY_ID_MAX];

	if (orch >= 0) {
		for (int i = 0; i < m->n; i++)
			if (m->c[i].orch == orch)
				exact |= 1ull << m->c[i].worker;
		m_name(name, sizeof(name), orch);
		REQUIRE_EQ(registry_workers_for(r, name, &mask),
			   m->orch_count[orch]);
		/* Quotas here are <= 5: orchestrator masks are exact. */
		REQUIRE_EQ(mask, exact);
	}
	if (org > 0) {
		exact = 0;
		for (int i = 0; i < m->n; i++)
			if (m->c[i].org == org)
				exact |= 1ull << m->c[i].worker;
		o_name(name, sizeof(name), org);
		REQUIRE_EQ(registry_workers_for_org(r, name, &mask),
			   m->org_count[org]);
		REQUIRE_EQ(mask & exact, exact);
		if (m->org_count[org] <= 8)
			REQUIRE_EQ(mask, exact);
	}
}

static void
m_verify_all(struct registry *r, struct model *m)
{
	struct registry_stats st;
	struct registry_entry e;
	unsigned orchs = 0, orgs = 0;
	char name[REGISTRY_ID_MAX];

	for (int k = 0; k < M_ORCH; k++) {
		m_verify_key(r, m, k, -1);
		orchs += m->orch_count[k] != 0;
	}
	for (int k = 1; k < M_ORG; k++) {
		m_verify_key(r, m, -1, k);
		orgs += m->org_count[k] != 0;
	}
	for (int i = 0; i < m->n; i++) {
		REQUIRE_EQ(registry_get(r, m->c[i].slot, &e), REGISTRY_OK);
		m_name(name, sizeof(name), m->c[i].orch);
		REQUIRE(strcmp(e.orchestrator, name) == 0, "orch %s",
			e.orchestrator);
		o_name(name, sizeof(name), m->c[i].org);
		REQUIRE(strcmp(e.organization, name) == 0, "org %s",
			e.organization);
		REQUIRE_EQ(e.conn_id, m->c[i].conn_id);
		REQUIRE_EQ(e.worker, m->c[i].worker);
		REQUIRE_EQ(e.pid, m_pid(m->c[i].worker));
		REQUIRE_EQ(e.state, m->c[i].state);
		REQUIRE_EQ(e.last_seen_ms, m->c[i].last_seen);
	}
	registry_stats(r, &st);
	REQUIRE_EQ(st.active, (unsigned)m->n);
	REQUIRE_EQ(st.orchestrators, orchs);
	REQUIRE_EQ(st.organizations, orgs);
	REQUIRE_EQ(registry_foreach(r, collect, &(struct seen){0}),
		   (unsigned)m->n);
	assert_consistent(r);
}

static void
m_acquire(struct registry *r, struct model *m, unsigned *seed, uint64_t id)
{
	int orch = rand_r(seed) % M_ORCH, org = rand_r(seed) % M_ORG, want;
	unsigned quota = 1 + rand_r(seed) % 5, worker = rand_r(seed) % 64;
	struct registry_entry e;
	char name[REGISTRY_ID_MAX], oname[REGISTRY_ID_MAX];
	uint32_t slot;
	int rc;

	m_name(name, sizeof(name), orch);
	o_name(oname, sizeof(oname), org);
	e = entry(name, oname, worker, m_pid(worker), id);
	if (rand_r(seed) % 4 == 0)
		e.state = REGISTRY_DRAINING;
	if (m->orch_count[orch] >= quota)
		want = REGISTRY_EQUOTA;
	else if (m->n == M_SLOTS)
		want = REGISTRY_EFULL;
	else
		want = REGISTRY_OK;
	rc = registry_acquire(r, &e, quota, &slot);
	REQUIRE(rc == want, "acquire: %s, model says %s", registry_strerror(rc),
		registry_strerror(want));
	if (rc == REGISTRY_OK) {
		for (int i = 0; i < m->n; i++)
			REQUIRE(m->c[i].slot != slot,
				"slot %u handed out twice", slot);
		m->c[m->n++] = (struct m_conn){
		    .slot = slot,
		    .conn_id = id,
		    .orch = orch,
		    .org = org,
		    .worker = worker,
		    .last_seen = e.last_seen_ms,
		    .state = e.state ? e.state : REGISTRY_ACTIVE};
		m->orch_count[orch]++;
		m->org_count[org]++;
	}
	m_verify_key(r, m, orch, org);
}

/*
 * Long random runs of acquire (random quota, worker, organization),
 * release, stale release, update, touch and reap, compared step by step
 * with a plain array model.  Variant 0 uses the real hash, 1 and 2 squeeze
 * every hash into 3 and 1 values (full collisions, long clusters).
 */
START_TEST(test_random_model)
{
	static const unsigned weak[] = {0, 3, 1};
	struct registry *r = reg_new(M_SLOTS);
	struct model *m = calloc(1, sizeof(*m));
	unsigned seed = 12345 + _i;
	uint64_t next_id = 1;

	ck_assert_ptr_nonnull(m);
	if (weak[_i])
		registry_test_weak_hash(r, weak[_i]);
	for (int op = 0; op < M_OPS; op++) {
		int dice = rand_r(&seed) % 100, i;

		if (dice < 50 || m->n == 0) {
			m_acquire(r, m, &seed, next_id++);
			continue;
		}
		i = rand_r(&seed) % m->n;
		if (dice < 80) {
			struct m_conn c = m->c[i];

			REQUIRE_EQ(
			    registry_release(r, c.slot, c.conn_id + 1000000),
			    REGISTRY_ESTALE);
			REQUIRE_EQ(registry_release(r, c.slot, c.conn_id),
				   REGISTRY_OK);
			m_remove(m, i);
			REQUIRE_EQ(registry_release(r, c.slot, c.conn_id),
				   REGISTRY_ESTALE);
			m_verify_key(r, m, c.orch, c.org);
		} else if (dice < 90) {
			enum registry_state s = m->c[i].state == REGISTRY_ACTIVE
						    ? REGISTRY_DRAINING
						    : REGISTRY_ACTIVE;

			REQUIRE_EQ(registry_update(r, m->c[i].slot,
						   m->c[i].conn_id, s),
				   REGISTRY_OK);
			m->c[i].state = s;
		} else if (dice < 98) {
			m->c[i].last_seen = 1000000 + op;
			REQUIRE_EQ(registry_touch(r, m->c[i].slot,
						  m->c[i].conn_id,
						  m->c[i].last_seen),
				   REGISTRY_OK);
		} else {
			unsigned w = m->c[i].worker, want = 0;

			for (int j = m->n; j-- > 0;) {
				if (m->c[j].worker == w) {
					m_remove(m, j);
					want++;
				}
			}
			REQUIRE_EQ(registry_reap_worker(r, w, m_pid(w)), want);
		}
		if (op % 1000 == 0)
			m_verify_all(r, m);
	}
	m_verify_all(r, m);
	while (m->n > 0) {
		REQUIRE_EQ(registry_release(r, m->c[0].slot, m->c[0].conn_id),
			   REGISTRY_OK);
		m_remove(m, 0);
	}
	m_verify_all(r, m);
	free(m);
	reg_free(r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("core");
	TCase *tp = tcase_create("processes");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_size_init_attach);
	tcase_add_test(tc, test_lazy_pages);
	tcase_add_test(tc, test_acquire_release);
	tcase_add_test(tc, test_quota_and_full);
	tcase_add_test(tc, test_touch_update);
	tcase_add_test(tc, test_foreach);
	tcase_add_test(tc, test_masks);
	tcase_add_test(tc, test_mask_stale_bound);
	tcase_add_loop_test(tc, test_collisions, 0, 6);
	tcase_add_loop_test(tc, test_random_model, 0, 3);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tcase_add_test(tp, test_quota_race);
	tcase_add_test(tp, test_concurrent_churn);
	tcase_add_test(tp, test_reap_dead_owner);
	tcase_add_test(tp, test_killed_holding_lock_waiter);
	tcase_add_test(tp, test_killed_holding_lock_reader);
	tcase_add_test(tp, test_crash_points);
	tcase_add_test(tp, test_crash_in_rebuild);
	tcase_set_timeout(tp, 300);
	suite_add_tcase(s, tp);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
