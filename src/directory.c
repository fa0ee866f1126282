/*
 * directory: orchestrator look-ups in the PostgreSQL directory, a bounded
 * cache of their answers, and the change notices that end cache entries
 * and re-check live connections (include/orchd/directory.h).
 *
 * The answer about an orchestrator:
 *   no row (no vps row, or its user_id names no users row)  DIR_UNKNOWN
 *   vps.status or users.status other than ACTIVE (case
 *   ignored: the schema's users.status is upper case, vps.status is free
 *   text defaulting to 'ACTIVE')                             DIR_DISABLED
 *   otherwise                                                DIR_OK
 * DIR_OK and DIR_DISABLED answers are cached (with the user id, so that a
 * users notice finds them); DIR_UNKNOWN is not (vps has no INSERT trigger:
 * a new orchestrator must work at once).
 *
 * An entry younger than database_cache_ttl answers without a query (under
 * fail-closed only while a database connection is up).  An older one (or
 * none) asks the database; when that fails (not connected,
 * queue full, timeout, server error) database_failure decides: fail-closed
 * answers DIR_UNAVAILABLE, cached answers from the entry whatever its age,
 * and DIR_UNAVAILABLE without one.
 *
 * A query in flight when a notice arrives may carry what was true before
 * the change: every notice bumps a generation, and an answer read under an
 * older generation is asked again (up to 3 times) before it is used.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "orchd/conn.h"
#include "orchd/db.h"
#include "orchd/directory.h"
#include "orchd/json.h"
#include "orchd/log.h"
#include "orchd/proto.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/wsconn.h"

#define NBUCKETS 32768 /* power of two */
#define MAX_TRIES 3
#define MEMBERS_NBUCKETS 4096 /* power of two */

struct members_waiter {
	struct members_waiter *next;
	void (*cb)(void *);
	void *arg;
};

struct directory_members {
	struct directory *d;
	struct directory_members *hnext; /* hash chain */
	uint32_t hash;
	unsigned refs;    /* holders, plus one while a query is in flight */
	int orphan;       /* the directory is gone: put() only frees */
	int loaded;       /* chans is the user's set (as of the last load) */
	int loading;      /* a query is in flight */
	int again;        /* a notice came meanwhile: ask again once it ends */
	int failed;       /* the last load failed: the retry timer asks again */
	uint64_t sent_us; /* the query in flight, for the latency metric */
	size_t n;
	char **chans; /* sorted, into blob */
	char *blob;
	struct members_waiter *waiters; /* for the first load */
	char user[REGISTRY_ID_MAX];
};

struct dir_cached {
	struct dir_cached *hnext;               /* hash chain */
	struct dir_cached *lru_prev, *lru_next; /* most recent first */
	uint32_t hash;
	enum directory_status status; /* DIR_OK or DIR_DISABLED */
	uint64_t fetched_ms;          /* monotonic */
	char orch[REGISTRY_ID_MAX];
	struct directory_entry e;
};

struct dir_req {
	struct directory *d;
	struct dir_req *next; /* deferred list */
	directory_fn cb;
	void *arg;
	unsigned gen;
	int tries;
	uint64_t sent_us; /* the query in flight, for the latency metric */
	enum directory_status status; /* deferred answer */
	struct directory_entry e;
	char orch[REGISTRY_ID_MAX];
};

struct directory {
	struct worker *w;
	struct db *db;
	int freeing;
	unsigned gen; /* bumped by every notice and cache flush */
	struct dir_cached *buckets[NBUCKETS];
	struct dir_cached *lru_head, *lru_tail;
	unsigned ncached;
	struct dir_req *deferred, **deferred_tail;
	ev_timer defer_timer;
	struct directory_members *mbuckets[MEMBERS_NBUCKETS];
	ev_timer members_retry;
};

const char *
directory_status_name(enum directory_status st)
{
	switch (st) {
	case DIR_OK:
		return "ok";
	case DIR_UNKNOWN:
		return "unknown";
	case DIR_DISABLED:
		return "disabled";
	case DIR_UNAVAILABLE:
		return "unavailable";
	}
	return "?";
}

static uint64_t
now_ms(const struct directory *d)
{
	return (uint64_t)(ev_now(d->w->loop) * 1000.0);
}

/* ---- cache -------------------------------------------------------------- */

static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static struct dir_cached *
cache_find(struct directory *d, const char *orch)
{
	uint32_t h = hash_str(orch);

	for (struct dir_cached *ce = d->buckets[h & (NBUCKETS - 1)]; ce != NULL;
	     ce = ce->hnext)
		if (ce->hash == h && strcmp(ce->orch, orch) == 0)
			return ce;
	return NULL;
}

static void
lru_unlink(struct directory *d, struct dir_cached *ce)
{
	if (ce->lru_prev != NULL)
		ce->lru_prev->lru_next = ce->lru_next;
	else
		d->lru_head = ce->lru_next;
	if (ce->lru_next != NULL)
		ce->lru_next->lru_prev = ce->lru_prev;
	else
		d->lru_tail = ce->lru_prev;
	ce->lru_prev = ce->lru_next = NULL;
}

static void
lru_push(struct directory *d, struct dir_cached *ce)
{
	ce->lru_prev = NULL;
	ce->lru_next = d->lru_head;
	if (d->lru_head != NULL)
		d->lru_head->lru_prev = ce;
	else
		d->lru_tail = ce;
	d->lru_head = ce;
}

static void
cache_remove(struct directory *d, struct dir_cached *ce)
{
	struct dir_cached **pp = &d->buckets[ce->hash & (NBUCKETS - 1)];

	while (*pp != ce)
		pp = &(*pp)->hnext;
	*pp = ce->hnext;
	lru_unlink(d, ce);
	d->ncached--;
	free(ce);
}

static void
cache_store(struct directory *d, const char *orch, enum directory_status st,
	    const struct directory_entry *e)
{
	struct dir_cached *ce = cache_find(d, orch);

	if (ce == NULL) {
		if (d->ncached >= DIRECTORY_CACHE_MAX)
			cache_remove(d, d->lru_tail); /* the least recent */
		ce = util_calloc(1, sizeof(*ce));
		util_strlcpy(ce->orch, orch, sizeof(ce->orch));
		ce->hash = hash_str(orch);
		ce->hnext = d->buckets[ce->hash & (NBUCKETS - 1)];
		d->buckets[ce->hash & (NBUCKETS - 1)] = ce;
		d->ncached++;
	} else {
		lru_unlink(d, ce);
	}
	lru_push(d, ce);
	ce->status = st;
	ce->e = *e;
	ce->fetched_ms = now_ms(d);
}

static void
cache_drop_orch(struct directory *d, const char *orch)
{
	struct dir_cached *ce = cache_find(d, orch);

	if (ce != NULL)
		cache_remove(d, ce);
}

static void
cache_drop_user(struct directory *d, const char *user)
{
	struct dir_cached *ce, *next;

	for (ce = d->lru_head; ce != NULL; ce = next) {
		next = ce->lru_next;
		if (strcmp(ce->e.user, user) == 0)
			cache_remove(d, ce);
	}
}

static void
cache_clear(struct directory *d)
{
	while (d->lru_head != NULL)
		cache_remove(d, d->lru_head);
}

/* ---- answers ------------------------------------------------------------ */

static void
answer_now(struct dir_req *r, enum directory_status st,
	   const struct directory_entry *e)
{
	r->cb(st, st == DIR_OK ? e : NULL, r->arg);
	free(r);
}

static int send_query(struct dir_req *r);

static void
defer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct directory *d = t->data;
	struct dir_req *list = d->deferred;

	(void)loop;
	(void)revents;
	d->deferred = NULL;
	d->deferred_tail = &d->deferred;
	while (list != NULL) {
		struct dir_req *r = list;

		list = r->next;
		/* A notice since: the cached answer may be stale, ask. */
		if (r->gen != d->gen && r->tries < MAX_TRIES &&
		    send_query(r) == 0)
			continue;
		answer_now(r, r->status, &r->e);
	}
}

/* Answer later (next loop iteration), or now when the directory goes. */
static void
answer(struct dir_req *r, enum directory_status st,
       const struct directory_entry *e)
{
	struct directory *d = r->d;

	if (d->freeing) {
		answer_now(r, st, e);
		return;
	}
	r->status = st;
	if (e != NULL)
		r->e = *e;
	r->gen = d->gen;
	r->next = NULL;
	*d->deferred_tail = r;
	d->deferred_tail = &r->next;
	if (!ev_is_active(&d->defer_timer)) {
		ev_timer_set(&d->defer_timer, 0., 0.);
		ev_timer_start(d->w->loop, &d->defer_timer);
	}
}

/* No answer from the database: database_failure decides. */
static void
fallback(struct dir_req *r,
	 void (*reply)(struct dir_req *, enum directory_status,
		       const struct directory_entry *))
{
	struct directory *d = r->d;
	struct dir_cached *ce;

	if (d->w->cfg->database_failure == CONFIG_DB_CACHED &&
	    (ce = cache_find(d, r->orch)) != NULL) {
		log_debug("directory: %s: database unavailable, using the "
			  "cached answer (%s)",
			  r->orch, directory_status_name(ce->status));
		reply(r, ce->status, &ce->e);
		return;
	}
	reply(r, DIR_UNAVAILABLE, NULL);
}

static int
copy_id(const PGresult *res, int col, char *out, size_t cap)
{
	if (PQgetisnull(res, 0, col)) {
		out[0] = '\0';
		return 0;
	}
	if ((size_t)PQgetlength(res, 0, col) >= cap)
		return -1;
	util_strlcpy(out, PQgetvalue(res, 0, col), cap);
	return 0;
}

/* ---- metrics: every query sent, its errors and its latency ------------- */

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A query was handed to db_query(): rc its answer; the start time. */
static uint64_t
metric_sent(struct directory *d, int rc)
{
	struct shm_worker *sw = d->w->stats;

	atomic_fetch_add_explicit(&sw->db_lookups, 1, memory_order_relaxed);
	if (rc != 0)
		atomic_fetch_add_explicit(&sw->db_errors, 1,
					  memory_order_relaxed);
	return mono_us();
}

static void
metric_answered(struct directory *d, enum db_status st, uint64_t sent_us)
{
	struct shm_worker *sw = d->w->stats;
	uint64_t now = mono_us();

	if (st != DB_OK)
		atomic_fetch_add_explicit(&sw->db_errors, 1,
					  memory_order_relaxed);
	shm_hist_observe(&sw->db_latency, now > sent_us ? now - sent_us : 0, 1);
}

static void
query_reply(struct db *db, enum db_status st, const PGresult *res, void *arg)
{
	struct dir_req *r = arg;
	struct directory *d = r->d;
	struct directory_entry e;
	enum directory_status ds;

	(void)db;
	metric_answered(d, st, r->sent_us);
	if (st != DB_OK) {
		if (st == DB_ERROR)
			log_warnx("directory: look-up of %s failed: %s",
				  r->orch, PQresultErrorMessage(res));
		fallback(r, answer_now);
		return;
	}
	if (r->gen != d->gen && !d->freeing && r->tries < MAX_TRIES) {
		/* A notice came meanwhile: this may predate it. */
		if (send_query(r) == 0)
			return;
		fallback(r, answer_now);
		return;
	}
	memset(&e, 0, sizeof(e));
	if (PQntuples(res) == 0 || PQnfields(res) < 5) {
		cache_drop_orch(d, r->orch);
		answer_now(r, DIR_UNKNOWN, NULL);
		return;
	}
	if (copy_id(res, 0, e.user, sizeof(e.user)) != 0 ||
	    copy_id(res, 1, e.org, sizeof(e.org)) != 0 ||
	    copy_id(res, 2, e.workspace, sizeof(e.workspace)) != 0) {
		log_warnx("directory: %s: an id in its row is longer than %d "
			  "bytes: treated as unknown",
			  r->orch, REGISTRY_ID_MAX - 1);
		cache_drop_orch(d, r->orch);
		answer_now(r, DIR_UNKNOWN, NULL);
		return;
	}
	ds = !PQgetisnull(res, 0, 3) &&
		     strcasecmp(PQgetvalue(res, 0, 3), "ACTIVE") == 0 &&
		     !PQgetisnull(res, 0, 4) &&
		     strcasecmp(PQgetvalue(res, 0, 4), "ACTIVE") == 0
		 ? DIR_OK
		 : DIR_DISABLED;
	if (r->gen == d->gen)
		cache_store(d, r->orch, ds, &e);
	answer_now(r, ds, &e);
}

static int
send_query(struct dir_req *r)
{
	const char *values[1] = {r->orch};
	int rc;

	r->gen = r->d->gen;
	r->tries++;
	rc = db_query(r->d->db, DIRECTORY_STATEMENT, 1, values, query_reply, r);
	r->sent_us = metric_sent(r->d, rc);
	return rc;
}

void
directory_lookup(struct directory *d, const char *orch, directory_fn cb,
		 void *arg)
{
	struct dir_req *r = util_calloc(1, sizeof(*r));
	struct dir_cached *ce;
	uint64_t ttl = d->w->cfg->database_cache_ttl_ms;

	r->d = d;
	r->cb = cb;
	r->arg = arg;
	util_strlcpy(r->orch, orch, sizeof(r->orch));
	ce = cache_find(d, orch);
	/*
	 * Under fail-closed a fresh entry does not outlive the database
	 * either: while no connection is up, auth fails (as /readyz says).
	 */
	if (ce != NULL && ttl > 0 && now_ms(d) - ce->fetched_ms < ttl &&
	    (d->w->cfg->database_failure == CONFIG_DB_CACHED ||
	     db_ready(d->db))) {
		answer(r, ce->status, &ce->e);
		return;
	}
	if (d->freeing || send_query(r) != 0)
		fallback(r, answer);
}

int
directory_ready(const struct directory *d)
{
	return d != NULL && db_ready(d->db);
}

/* ---- channel membership -------------------------------------------------- */

static struct directory_members *
members_find(struct directory *d, const char *user)
{
	uint32_t h = hash_str(user);

	for (struct directory_members *m =
		 d->mbuckets[h & (MEMBERS_NBUCKETS - 1)];
	     m != NULL; m = m->hnext)
		if (m->hash == h && strcmp(m->user, user) == 0)
			return m;
	return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The answer of DIRECTORY_MEMBERS_SQL becomes m's set. */
static void
members_set(struct directory_members *m, const PGresult *res)
{
	int rows = PQnfields(res) >= 1 ? PQntuples(res) : 0;
	size_t n = 0, k = 0, bytes = 0;
	char **chans, *blob, *at;

	if (rows > DIRECTORY_MEMBERS_MAX) {
		log_warnx("directory: user %s is a member of %d channels; "
			  "only %d are kept, events of the others do not "
			  "reach it",
			  m->user, rows, DIRECTORY_MEMBERS_MAX);
		rows = DIRECTORY_MEMBERS_MAX;
	}
	for (int i = 0; i < rows; i++)
		if (!PQgetisnull(res, i, 0))
			bytes += (size_t)PQgetlength(res, i, 0) + 1;
	chans = util_calloc(rows > 0 ? (size_t)rows : 1, sizeof(*chans));
	at = blob = util_calloc(bytes > 0 ? bytes : 1, 1);
	for (int i = 0; i < rows; i++) {
		size_t len;

		if (PQgetisnull(res, i, 0))
			continue;
		len = (size_t)PQgetlength(res, i, 0);
		memcpy(at, PQgetvalue(res, i, 0), len);
		at[len] = '\0';
		chans[n++] = at;
		at += len + 1;
	}
	if (n > 1)
		qsort(chans, n, sizeof(*chans), cmp_str);
	for (size_t i = 0; i < n; i++) /* one row per membership: dedupe */
		if (k == 0 || strcmp(chans[k - 1], chans[i]) != 0)
			chans[k++] = chans[i];
	free(m->chans);
	free(m->blob);
	m->chans = chans;
	m->blob = blob;
	m->n = k;
	m->loaded = 1;
}

static void
members_retry_arm(struct directory *d)
{
	if (d->freeing || ev_is_active(&d->members_retry))
		return;
	ev_timer_set(&d->members_retry, DIRECTORY_MEMBERS_RETRY_MS / 1000., 0.);
	ev_timer_start(d->w->loop, &d->members_retry);
}

static void members_reply(struct db *db, enum db_status st, const PGresult *res,
			  void *arg);

/* Ask for m's set (again, once the query in flight ends, if there is one). */
static void
members_load(struct directory_members *m)
{
	const char *values[1] = {m->user};
	int rc;

	if (m->loading) {
		m->again = 1;
		return;
	}
	if (m->orphan || m->d->freeing)
		return;
	m->again = 0;
	rc = db_query(m->d->db, DIRECTORY_MEMBERS_STATEMENT, 1, values,
		      members_reply, m);
	m->sent_us = metric_sent(m->d, rc);
	if (rc != 0) {
		if (!m->failed)
			log_warnx("directory: channels of user %s: no query "
				  "possible (%s); asking again in %dms",
				  m->user, strerror(errno),
				  DIRECTORY_MEMBERS_RETRY_MS);
		m->failed = 1;
		members_retry_arm(m->d);
		return;
	}
	m->loading = 1;
	m->refs++; /* the query's */
}

static void
members_reply(struct db *db, enum db_status st, const PGresult *res, void *arg)
{
	struct directory_members *m = arg;
	struct directory *d = m->d;
	struct members_waiter *wt;

	(void)db;
	metric_answered(d, st, m->sent_us);
	m->loading = 0;
	if (st == DB_OK) {
		members_set(m, res);
		m->failed = 0;
		log_debug("directory: user %s: %zu channels", m->user, m->n);
	} else {
		log_warnx("directory: channels of user %s: %s; %s", m->user,
			  st == DB_ERROR ? PQresultErrorMessage(res)
					 : "database unavailable",
			  m->loaded ? "the previous set stays"
				    : "its channel events are refused");
		m->failed = 1;
		members_retry_arm(d);
	}
	if (m->again && m->refs > 1 && !d->freeing)
		members_load(m);
	while ((wt = m->waiters) != NULL) {
		m->waiters = wt->next;
		wt->cb(wt->arg);
		free(wt);
	}
	directory_members_put(d, m);
}

static void
members_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct directory *d = t->data;

	(void)loop;
	(void)revents;
	for (size_t b = 0; b < MEMBERS_NBUCKETS; b++)
		for (struct directory_members *m = d->mbuckets[b]; m != NULL;
		     m = m->hnext)
			if (m->failed && !m->loading)
				members_load(m);
}

/* Every loaded set may be stale (notices missed): ask again. */
static void
members_reload_all(struct directory *d)
{
	for (size_t b = 0; b < MEMBERS_NBUCKETS; b++)
		for (struct directory_members *m = d->mbuckets[b]; m != NULL;
		     m = m->hnext)
			members_load(m);
}

struct directory_members *
directory_members_get(struct directory *d, const char *user)
{
	struct directory_members *m = members_find(d, user);

	if (m == NULL) {
		uint32_t h = hash_str(user);

		m = util_calloc(1, sizeof(*m));
		m->d = d;
		m->hash = h;
		util_strlcpy(m->user, user, sizeof(m->user));
		m->hnext = d->mbuckets[h & (MEMBERS_NBUCKETS - 1)];
		d->mbuckets[h & (MEMBERS_NBUCKETS - 1)] = m;
		members_load(m);
	}
	m->refs++;
	return m;
}

void
directory_members_put(struct directory *d, struct directory_members *m)
{
	if (m == NULL || --m->refs > 0)
		return;
	if (!m->orphan) {
		struct directory_members **pp =
		    &d->mbuckets[m->hash & (MEMBERS_NBUCKETS - 1)];

		while (*pp != m)
			pp = &(*pp)->hnext;
		*pp = m->hnext;
	}
	free(m->chans);
	free(m->blob);
	free(m);
}

int
directory_members_wait(struct directory_members *m, void (*cb)(void *),
		       void *arg)
{
	struct members_waiter *wt;

	if (m->loaded || !m->loading)
		return 0;
	wt = util_calloc(1, sizeof(*wt));
	wt->cb = cb;
	wt->arg = arg;
	wt->next = m->waiters;
	m->waiters = wt;
	return 1;
}

int
directory_members_has(const struct directory_members *m, const char *channel)
{
	return m->loaded && m->n > 0 &&
	       bsearch(&channel, m->chans, m->n, sizeof(*m->chans), cmp_str) !=
		   NULL;
}

static void
notice_member(struct directory *d, const char *user)
{
	struct directory_members *m = members_find(d, user);

	if (m != NULL)
		members_load(m);
}

/* ---- change notices: re-check live connections -------------------------- */

/* A connection that holds an orchestrator (authenticated or finishing). */
static struct proto_conn *
live_proto(struct conn *c)
{
	struct proto_conn *p = c->proto;

	if (p == NULL || p->ended || c->state != CONN_WS_OPEN ||
	    p->state == PROTO_UNAUTH || p->orch[0] == '\0')
		return NULL;
	return p;
}

struct recheck {
	struct directory *d;
	char orch[REGISTRY_ID_MAX];
};

static void
recheck_reply(enum directory_status st, const struct directory_entry *e,
	      void *arg)
{
	struct recheck *rc = arg;
	struct worker *w = rc->d->w;
	struct conn *c, *next;
	unsigned closed = 0;

	if (st == DIR_UNAVAILABLE || rc->d->freeing) {
		if (st == DIR_UNAVAILABLE)
			log_warnx("directory: %s changed, but the database is "
				  "unavailable: its connections stay",
				  rc->orch);
		free(rc);
		return;
	}
	for (c = w->conns; c != NULL; c = next) {
		struct proto_conn *p;

		next = c->next;
		if ((p = live_proto(c)) == NULL || strcmp(p->orch, rc->orch))
			continue;
		if (st == DIR_OK) {
			/* Moved to another user: its channels now. */
			if (p->members != NULL &&
			    strcmp(p->user, e->user) != 0) {
				directory_members_put(rc->d, p->members);
				p->members =
				    directory_members_get(rc->d, e->user);
			}
			/* Moved: events are matched against these. */
			memcpy(p->user, e->user, sizeof(p->user));
			memcpy(p->org, e->org, sizeof(p->org));
			memcpy(p->workspace, e->workspace,
			       sizeof(p->workspace));
			continue;
		}
		wsconn_close(c, PROTO_CLOSE_TERMINATED,
			     st == DIR_UNKNOWN ? "orchestrator removed"
					       : "orchestrator disabled");
		closed++;
	}
	if (closed > 0)
		log_info("directory: %s is %s: %u connections closed", rc->orch,
			 directory_status_name(st), closed);
	free(rc);
}

static void
recheck(struct directory *d, const char *orch)
{
	struct recheck *rc = util_calloc(1, sizeof(*rc));

	rc->d = d;
	util_strlcpy(rc->orch, orch, sizeof(rc->orch));
	directory_lookup(d, orch, recheck_reply, rc);
}

static void
notice_vps(struct directory *d, const char *id)
{
	cache_drop_orch(d, id);
	for (struct conn *c = d->w->conns; c != NULL; c = c->next) {
		struct proto_conn *p = live_proto(c);

		if (p != NULL && strcmp(p->orch, id) == 0) {
			recheck(d, id);
			return;
		}
	}
}

static void
notice_user(struct directory *d, const char *id)
{
	const char **seen = NULL;
	size_t n = 0, cap = 0;

	cache_drop_user(d, id);
	for (struct conn *c = d->w->conns; c != NULL; c = c->next) {
		struct proto_conn *p = live_proto(c);
		size_t k;

		if (p == NULL || strcmp(p->user, id) != 0)
			continue;
		for (k = 0; k < n; k++)
			if (strcmp(seen[k], p->orch) == 0)
				break;
		if (k < n)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			seen = util_realloc(seen, cap * sizeof(*seen));
		}
		seen[n++] = p->orch;
	}
	/* Look-ups answer later: the names are copied first. */
	for (size_t k = 0; k < n; k++)
		recheck(d, seen[k]);
	free(seen);
}

/*
 * After the notice connection came back, every orchestrator with live
 * connections here is looked up again: a suspension made while notices
 * could not arrive takes effect now, not at the next auth.  A look-up
 * that gets no answer leaves the connections alone.
 */
static void
recheck_all(struct directory *d)
{
	const char **names = NULL;
	size_t n = 0, cap = 0, k = 0;

	for (struct conn *c = d->w->conns; c != NULL; c = c->next) {
		struct proto_conn *p = live_proto(c);

		if (p == NULL)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			names = util_realloc(names, cap * sizeof(*names));
		}
		names[n++] = p->orch;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
			continue;
		names[k++] = names[i];
	}
	if (k > 0)
		log_info("directory: checking the %zu orchestrators connected "
			 "here again",
			 k);
	/* Look-ups answer later: recheck() copies each name. */
	for (size_t i = 0; i < k; i++)
		recheck(d, names[i]);
	free(names);
}

static void
notify_cb(struct db *db, enum db_notify_event ev, const char *channel,
	  const char *payload, void *arg)
{
	struct directory *d = arg;
	struct json_doc doc;
	struct json_limits lim = {
	    .max_size = 8192, .max_tokens = 64, .flags = JSON_REQUIRE_OBJECT};
	char table[64], id[REGISTRY_ID_MAX];
	int root;

	(void)db;
	switch (ev) {
	case DB_LISTENING:
		/* Notices may have been missed: forget everything. */
		log_info("directory: listening for change notices; cache "
			 "of %u entries dropped",
			 d->ncached);
		d->gen++;
		cache_clear(d);
		members_reload_all(d);
		recheck_all(d);
		return;
	case DB_LISTEN_LOST:
		log_warnx("directory: change notices lost until the database "
			  "is back");
		return;
	case DB_NOTIFY:
		break;
	}
	if (strcmp(channel, DIRECTORY_CHANNEL) != 0)
		return;
	d->gen++;
	if (json_parse(&doc, payload, strlen(payload), &lim) != 0) {
		log_warnx("directory: a change notice that is not JSON: "
			  "cache dropped");
		cache_clear(d);
		return;
	}
	root = json_root(&doc);
	if (json_get_string(&doc, json_obj_get(&doc, root, "table"), table,
			    sizeof(table), NULL) == 0 &&
	    json_get_string(&doc, json_obj_get(&doc, root, "id"), id,
			    sizeof(id), NULL) == 0) {
		log_debug("directory: change notice: %s %s", table, id);
		if (strcmp(table, "vps") == 0)
			notice_vps(d, id);
		else if (strcmp(table, "users") == 0)
			notice_user(d, id);
	} else if (json_get_string(&doc, json_obj_get(&doc, root, "table"),
				   table, sizeof(table), NULL) == 0 &&
		   strcmp(table, "channel_members") == 0 &&
		   json_get_string(&doc, json_obj_get(&doc, root, "user_id"),
				   id, sizeof(id), NULL) == 0) {
		log_debug("directory: change notice: channel_members of %s",
			  id);
		notice_member(d, id);
	}
	json_doc_free(&doc);
}

/* ---- life --------------------------------------------------------------- */

static void
ready_hook(void *arg, int ready)
{
	struct directory *d = arg;

	atomic_store(&d->w->stats->db_ready, ready);
}

struct directory *
directory_new(struct worker *w)
{
	const struct config *cfg = w->cfg;
	struct directory *d;

	if (cfg->database_conninfo == NULL)
		return NULL;
	d = util_calloc(1, sizeof(*d));
	d->w = w;
	d->deferred_tail = &d->deferred;
	ev_init(&d->defer_timer, defer_cb);
	d->defer_timer.data = d;
	ev_init(&d->members_retry, members_retry_cb);
	d->members_retry.data = d;
	d->db =
	    db_new(w->loop, cfg->database_conninfo, cfg->database_connections,
		   cfg->database_timeout_ms, "database");
	if (db_prepare(d->db, DIRECTORY_STATEMENT, DIRECTORY_LOOKUP_SQL, 1) !=
		0 ||
	    db_prepare(d->db, DIRECTORY_MEMBERS_STATEMENT,
		       DIRECTORY_MEMBERS_SQL, 1) != 0 ||
	    db_listen(d->db, DIRECTORY_CHANNEL, notify_cb, d) != 0)
		fatalx("%s: cannot register the directory look-up", __func__);
	db_set_ready_hook(d->db, ready_hook, d);
	db_start(d->db);
	return d;
}

void
directory_free(struct directory *d)
{
	if (d == NULL)
		return;
	d->freeing = 1;
	ev_timer_stop(d->w->loop, &d->defer_timer);
	ev_timer_stop(d->w->loop, &d->members_retry);
	db_free(d->db); /* in-flight look-ups and loads: answered now */
	while (d->deferred != NULL) {
		struct dir_req *r = d->deferred;

		d->deferred = r->next;
		answer_now(r, DIR_UNAVAILABLE, NULL);
	}
	cache_clear(d);
	/* Sets still referenced by connections outlive us, orphaned. */
	for (size_t b = 0; b < MEMBERS_NBUCKETS; b++) {
		struct directory_members *m, *next;

		for (m = d->mbuckets[b]; m != NULL; m = next) {
			next = m->hnext;
			m->orphan = 1;
			m->d = NULL;
		}
	}
	free(d);
}
