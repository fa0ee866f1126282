/*
 * The durable queue against a real redis-server, started by each test on a
 * private unix socket and stopped by its teardown.
 *
 * The temp dir belongs to the runner process (unchecked fixture), so it is
 * removed even when a test fails: with CK_FORK a failed test's process exits
 * at once and Check kills its process group, redis-server included; with
 * CK_FORK=no the checked teardown runs after a failure.
 */
#include "config.h"

#include <check.h>
#include <ev.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "orchd/event.h"
#include "orchd/queue.h"
#include "orchd/redis.h"
#include "orchd/util.h"

#define ORCH "orch-1"
#define TS_BASE 1795696496000ULL /* 2026-11-26T12:34:56.000Z */

static char dir[] = "/tmp/orchd-queue-test-XXXXXX";
static char sock[256];
static pid_t server;
static struct ev_loop *loop;
static redisContext *sc; /* synchronous client for inspection */

/* ---- fixtures ----------------------------------------------------------- */

static void
make_dir(void)
{
	strcpy(dir, "/tmp/orchd-queue-test-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
}

static void
remove_dir(void)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void
start_server(void)
{
	char logf[300];

	snprintf(logf, sizeof(logf), "%s/redis.log", dir);
	unlink(sock); /* a killed server's socket would look alive */
	server = fork();
	ck_assert_int_ge(server, 0);
	if (server == 0) {
		execlp("redis-server", "redis-server", "--port", "0",
		       "--unixsocket", sock, "--dir", dir, "--save", "",
		       "--appendonly", "no", "--logfile", logf,
		       "--enable-debug-command", "yes", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		redisContext *c = redisConnectUnix(sock);
		redisReply *rep = NULL;

		if (c != NULL && !c->err)
			rep = redisCommand(c, "PING");
		if (rep != NULL) {
			freeReplyObject(rep);
			redisFree(c);
			return;
		}
		if (c != NULL)
			redisFree(c);
		usleep(25000);
	}
	ck_abort_msg("redis-server did not start (is it installed?)");
}

static void
stop_server(int sig)
{
	if (server > 0) {
		kill(server, sig);
		waitpid(server, NULL, 0);
		server = 0;
	}
	unlink(sock);
}

static void
setup(void)
{
	start_server();
	loop = ev_loop_new(EVFLAG_AUTO);
	sc = redisConnectUnix(sock);
	ck_assert(sc != NULL && !sc->err);
}

static void
teardown(void)
{
	if (sc != NULL)
		redisFree(sc);
	sc = NULL;
	ev_loop_destroy(loop);
	stop_server(SIGTERM);
}

/* ---- helpers ------------------------------------------------------------ */

static void
run_until(const int *flag, double secs)
{
	double end = ev_time() + secs;

	while (!*flag && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(200);
	}
}

static void
run_for(double secs)
{
	int never = 0;

	run_until(&never, secs);
}

static struct redis *
connect_client(uint64_t timeout_ms)
{
	struct config_redis addr = {.unix_path = sock};
	struct redis *r = redis_new(loop, &addr, timeout_ms, "test");
	double end = ev_time() + 5;

	while (!redis_connected(r) && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
	}
	ck_assert_msg(redis_connected(r), "client did not connect");
	return r;
}

/* Synchronous inspection; the reply is freed by the caller. */
static redisReply *
cmd(const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	va_start(ap, fmt);
	rep = redisvCommand(sc, fmt, ap);
	va_end(ap);
	ck_assert_ptr_nonnull(rep);
	ck_assert_msg(rep->type != REDIS_REPLY_ERROR, "%s: %s", fmt, rep->str);
	return rep;
}

/* An integer reply; a string reply is parsed, nil is -1. */
static long long
num(const char *fmt, const char *a, const char *b)
{
	redisReply *rep = cmd(fmt, a, b);
	long long v = -1;

	if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	else if (rep->type == REDIS_REPLY_STRING)
		v = strtoll(rep->str, NULL, 10);
	else
		ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	return v;
}

static long long
key_num(const char *what, const char *prefix, const char *orch,
	const char *field)
{
	char key[128], fmt[32];

	snprintf(key, sizeof(key), "%s%s", prefix, orch);
	snprintf(fmt, sizeof(fmt), "%s %%s%s", what, field ? " %s" : "");
	return num(fmt, key, field);
}

#define ZCARD(p, o) key_num("ZCARD", (p), (o), NULL)
#define HLEN(o) key_num("HLEN", QUEUE_KEY_BODIES, (o), NULL)
#define TTL(p, o) key_num("TTL", (p), (o), NULL)
#define EXISTS(p, o) key_num("EXISTS", (p), (o), NULL)
#define ZSCORE(p, o, id) key_num("ZSCORE", (p), (o), (id))
#define HEXISTS(o, id) key_num("HEXISTS", QUEUE_KEY_BODIES, (o), (id))

static const char *const all_prefixes[] = {QUEUE_KEY_EVENTS, QUEUE_KEY_BODIES,
					   QUEUE_KEY_TIMES, QUEUE_KEY_SEQ};

/* An event record for orch with id and timestamp, parsed. */
static void
mkev(struct event *ev, const char *id, uint64_t ts_ms, const char *marker)
{
	char rec[1024], ts[32], err[128];
	int rc;

	util_iso8601_ms(ts_ms, ts, sizeof(ts));
	snprintf(rec, sizeof(rec),
		 "{\"id\": \"%s\", \"type\": \"message.received\", "
		 "\"orchestratorId\": \"" ORCH "\", \"payload\": "
		 "{\"m\": \"%s\"}, \"timestamp\": \"%s\", "
		 "\"requiresAck\": true}",
		 id, marker, ts);
	rc = event_parse(ev, rec, strlen(rec), 0, err, sizeof(err));
	ck_assert_msg(rc == EVENT_OK, "%s: %s", rec, err);
}

struct res {
	int done, status;
	struct queue_enqueue_result enq;
	uint64_t n;
};

static void
on_enq(struct queue *q, int status, const struct queue_enqueue_result *r,
       void *arg)
{
	struct res *res = arg;

	res->done++;
	res->status = status;
	ck_assert(status == QUEUE_OK || r == NULL);
	if (r != NULL)
		res->enq = *r;
}

static void
on_num(struct queue *q, int status, uint64_t n, void *arg)
{
	struct res *res = arg;

	res->done++;
	res->status = status;
	res->n = n;
}

struct fres {
	int done, status;
	size_t n;
	uint64_t total, last_seq;
	uint64_t seq[QUEUE_BATCH_MAX];
	char id[QUEUE_BATCH_MAX][QUEUE_ID_MAX + 1];
	char *body[QUEUE_BATCH_MAX];
	size_t body_len[QUEUE_BATCH_MAX];
};

static void
on_fetch(struct queue *q, int status, const struct queue_fetch_result *r,
	 void *arg)
{
	struct fres *f = arg;

	f->done++;
	f->status = status;
	if (r == NULL)
		return;
	f->n = r->n;
	f->total = r->total;
	f->last_seq = r->last_seq;
	for (size_t i = 0; i < r->n; i++) {
		const struct queue_item *it = &r->items[i];

		ck_assert_uint_le(it->id_len, QUEUE_ID_MAX);
		ck_assert_uint_eq(strlen(it->id), it->id_len);
		memcpy(f->id[i], it->id, it->id_len + 1);
		f->seq[i] = it->seq;
		f->body[i] = util_malloc(it->body_len + 1);
		memcpy(f->body[i], it->body, it->body_len + 1);
		f->body_len[i] = it->body_len;
	}
}

static void
fres_free(struct fres *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->body[i]);
	free(f);
}

/* Wait for exactly one callback with QUEUE_OK. */
static void
wait_ok(int *done, const int *status)
{
	run_until(done, 10);
	ck_assert_int_eq(*done, 1);
	ck_assert_int_eq(*status, QUEUE_OK);
}

static struct queue_enqueue_result
enq(struct queue *q, const char *orch, const char *id, uint64_t ts,
    const char *marker)
{
	struct event ev;
	struct res res = {0};

	mkev(&ev, id, ts, marker);
	ck_assert_int_eq(queue_enqueue(q, &ev, orch, on_enq, &res), 0);
	event_free(&ev);
	wait_ok(&res.done, &res.status);
	return res.enq;
}

static uint64_t
next_seq(struct queue *q, const char *orch)
{
	struct res res = {0};

	ck_assert_int_eq(queue_next_seq(q, orch, on_num, &res), 0);
	wait_ok(&res.done, &res.status);
	return res.n;
}

/* queue_enqueue_seq(); the event's marker is its id. */
static struct queue_enqueue_result
enq_seq(struct queue *q, const char *orch, const char *id, uint64_t seq)
{
	struct event ev;
	struct res res = {0};

	mkev(&ev, id, TS_BASE, id);
	ck_assert_int_eq(queue_enqueue_seq(q, &ev, orch, seq, on_enq, &res), 0);
	event_free(&ev);
	wait_ok(&res.done, &res.status);
	return res.enq;
}

/* queue_reserve(): the block's last seq. */
static uint64_t
reserve(struct queue *q, const char *orch, unsigned n)
{
	struct res res = {0};

	ck_assert_int_eq(queue_reserve(q, orch, n, on_num, &res), 0);
	wait_ok(&res.done, &res.status);
	return res.n;
}

static uint64_t
ack(struct queue *q, const char *orch, const char *const *ids, size_t n)
{
	struct res res = {0};

	ck_assert_int_eq(queue_ack(q, orch, ids, n, on_num, &res), 0);
	wait_ok(&res.done, &res.status);
	return res.n;
}

static uint64_t
count(struct queue *q, const char *orch)
{
	struct res res = {0};

	ck_assert_int_eq(queue_count(q, orch, on_num, &res), 0);
	wait_ok(&res.done, &res.status);
	return res.n;
}

/* by_time: queue_fetch_since(); the result is freed with fres_free(). */
static struct fres *
fetch(struct queue *q, const char *orch, uint64_t min, unsigned limit,
      int by_time)
{
	struct fres *f = util_calloc(1, sizeof(*f));
	int rc = by_time ? queue_fetch_since(q, orch, min, limit, on_fetch, f)
			 : queue_fetch(q, orch, min, limit, on_fetch, f);

	ck_assert_int_eq(rc, 0);
	wait_ok(&f->done, &f->status);
	return f;
}

/* Enqueue n events "<prefix>-%04d" in one pipeline; results in res[]. */
static void
enq_many(struct queue *q, const char *orch, const char *prefix, int n,
	 struct res *res)
{
	int ndone = 0;

	for (int i = 0; i < n; i++) {
		struct event ev;
		char id[64];

		snprintf(id, sizeof(id), "%s-%04d", prefix, i);
		mkev(&ev, id, TS_BASE + (uint64_t)i, "bulk");
		ck_assert_int_eq(queue_enqueue(q, &ev, orch, on_enq, &res[i]),
				 0);
		event_free(&ev);
	}
	for (double end = ev_time() + 30; ndone < n && ev_time() < end;) {
		ev_run(loop, EVRUN_NOWAIT);
		while (ndone < n && res[ndone].done)
			ndone++;
	}
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(res[i].done, 1);
		ck_assert_int_eq(res[i].status, QUEUE_OK);
	}
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_enqueue_seq_increasing)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	uint64_t t0 = util_wall_ms();
	struct queue_enqueue_result a, b, c, o;
	struct queue_stats st;

	a = enq(q, ORCH, "e1", TS_BASE, "one");
	b = enq(q, ORCH, "e2", TS_BASE, "two");
	c = enq(q, ORCH, "e3", TS_BASE, "three");
	/* A new counter starts at the wall clock, then counts. */
	ck_assert_uint_ge(a.seq, t0);
	ck_assert_uint_le(a.seq, util_wall_ms());
	ck_assert_uint_eq(b.seq, a.seq + 1);
	ck_assert_uint_eq(c.seq, b.seq + 1);
	ck_assert(!a.duplicate && !b.duplicate && !c.duplicate);
	ck_assert_uint_eq(a.evicted + b.evicted + c.evicted, 0);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 3);
	ck_assert_int_eq(HLEN(ORCH), 3);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_TIMES, ORCH), 3);
	ck_assert_int_eq(ZSCORE(QUEUE_KEY_EVENTS, ORCH, "e2"),
			 (long long)b.seq);
	ck_assert_int_eq(key_num("GET", QUEUE_KEY_SEQ, ORCH, NULL),
			 (long long)c.seq);
	/* Another orchestrator has its own counter and queue. */
	o = enq(q, "orch-2", "e1", TS_BASE, "other");
	ck_assert(!o.duplicate);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, "orch-2"), 1);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 3);
	/* Loaded once; EVAL until the SHA was known, EVALSHA after. */
	queue_get_stats(q, &st);
	ck_assert_uint_eq(st.loads, 1);
	ck_assert_uint_eq(st.eval, 1);
	ck_assert_uint_eq(st.evalsha, 3);
	ck_assert_uint_eq(st.noscript, 0);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_enqueue_duplicate)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	struct queue_enqueue_result a, b, c;
	struct res p1 = {0}, p2 = {0};
	struct event ev;
	redisReply *rep;

	a = enq(q, ORCH, "e1", TS_BASE, "first");
	b = enq(q, ORCH, "e1", TS_BASE + 5, "second");
	ck_assert(!a.duplicate);
	ck_assert(b.duplicate);
	ck_assert_uint_eq(b.seq, a.seq);
	ck_assert_uint_eq(b.evicted, 0);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 1);
	ck_assert_int_eq(HLEN(ORCH), 1);
	rep = cmd("HGET " QUEUE_KEY_BODIES ORCH " e1");
	ck_assert_ptr_nonnull(strstr(rep->str, "first"));
	freeReplyObject(rep);
	/* The duplicate took no seq. */
	c = enq(q, ORCH, "e2", TS_BASE, "x");
	ck_assert_uint_eq(c.seq, a.seq + 1);
	/* Two publishes of one id in flight together: one entry. */
	mkev(&ev, "e3", TS_BASE, "race");
	ck_assert_int_eq(queue_enqueue(q, &ev, ORCH, on_enq, &p1), 0);
	ck_assert_int_eq(queue_enqueue(q, &ev, ORCH, on_enq, &p2), 0);
	event_free(&ev);
	run_until(&p2.done, 10);
	ck_assert(p1.done == 1 && p2.done == 1);
	ck_assert_uint_eq(p1.enq.seq, c.seq + 1);
	ck_assert_uint_eq(p2.enq.seq, p1.enq.seq);
	ck_assert(!p1.enq.duplicate && p2.enq.duplicate);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 3);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_cap_evicts_oldest)
{
	struct redis *r = connect_client(10000);
	struct queue *q = queue_new(r, 1000, 0);
	struct res *res = util_calloc(1010, sizeof(*res));
	uint64_t evicted = 0;
	redisReply *rep;

	enq_many(q, ORCH, "ev", 1010, res);
	for (int i = 0; i < 1010; i++) {
		evicted += res[i].enq.evicted;
		ck_assert_uint_eq(res[i].enq.evicted, (i < 1000 ? 0 : 1));
		if (i > 0)
			ck_assert_uint_eq(res[i].enq.seq,
					  res[i - 1].enq.seq + 1);
	}
	ck_assert_uint_eq(evicted, 10);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 1000);
	ck_assert_int_eq(HLEN(ORCH), 1000);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_TIMES, ORCH), 1000);
	for (int i = 0; i <= 10; i++) {
		char id[16];
		long long want = i < 10 ? -1 : (long long)res[i].enq.seq;

		snprintf(id, sizeof(id), "ev-%04d", i);
		ck_assert_int_eq(ZSCORE(QUEUE_KEY_EVENTS, ORCH, id), want);
		ck_assert_int_eq(HEXISTS(ORCH, id), i < 10 ? 0 : 1);
		ck_assert_int_eq(ZSCORE(QUEUE_KEY_TIMES, ORCH, id) == -1,
				 i < 10);
	}
	rep = cmd("ZRANGE " QUEUE_KEY_EVENTS ORCH " 0 0");
	ck_assert_uint_eq(rep->elements, 1);
	ck_assert_str_eq(rep->element[0]->str, "ev-0010");
	freeReplyObject(rep);
	free(res);
	queue_free(q);
	redis_free(r);
}
END_TEST

/*
 * A cap lowered far below the queue's length evicts in one step, more ids
 * than one Lua unpack() can take (about 8000).
 */
START_TEST(test_cap_lowered)
{
	enum { N = 9000 };
	struct redis *r = connect_client(10000);
	struct queue *big = queue_new(r, N, 0), *small = queue_new(r, 10, 0);
	struct res *res = util_calloc(N, sizeof(*res));
	struct queue_enqueue_result e;
	struct fres *f;

	enq_many(big, ORCH, "ev", N, res);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), N);
	e = enq(small, ORCH, "last", TS_BASE + 99999, "x");
	ck_assert_uint_eq(e.evicted, N - 9);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 10);
	ck_assert_int_eq(HLEN(ORCH), 10);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_TIMES, ORCH), 10);
	f = fetch(small, ORCH, 0, 100, 0);
	ck_assert_uint_eq(f->n, 10);
	ck_assert_str_eq(f->id[0], "ev-8991");
	ck_assert_uint_eq(f->seq[0], res[N - 9].enq.seq);
	ck_assert_str_eq(f->id[9], "last");
	fres_free(f);
	free(res);
	queue_free(big);
	queue_free(small);
	redis_free(r);
}
END_TEST

static void
expect_ttls(const char *orch, long long ttl)
{
	for (size_t i = 0; i < 4; i++) {
		long long t = TTL(all_prefixes[i], orch);

		ck_assert_msg(t > ttl - 10 && t <= ttl, "%s%s: TTL %lld",
			      all_prefixes[i], orch, t);
	}
}

START_TEST(test_ttl_on_all_keys)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 3600), *dq = queue_new(r, 0, 0);
	redisReply *rep;

	enq(q, ORCH, "e1", TS_BASE, "x");
	expect_ttls(ORCH, 3600);
	/* Every enqueue refreshes them, a duplicate too. */
	for (size_t i = 0; i < 4; i++) {
		char key[128];

		snprintf(key, sizeof(key), "%s%s", all_prefixes[i], ORCH);
		freeReplyObject(cmd("EXPIRE %s 5", key));
	}
	ck_assert_int_le(TTL(QUEUE_KEY_BODIES, ORCH), 5);
	enq(q, ORCH, "e1", TS_BASE, "x");
	expect_ttls(ORCH, 3600);
	/* The default is 7 days. */
	enq(dq, "orch-d", "e1", TS_BASE, "x");
	expect_ttls("orch-d", QUEUE_DEFAULT_RETENTION_S);
	/* A live-only seq creates (and refreshes) the counter alone. */
	next_seq(q, "orch-live");
	ck_assert_int_gt(TTL(QUEUE_KEY_SEQ, "orch-live"), 3590);
	ck_assert_int_eq(EXISTS(QUEUE_KEY_EVENTS, "orch-live"), 0);
	rep = cmd("EXPIRE " QUEUE_KEY_SEQ "orch-live 5");
	freeReplyObject(rep);
	next_seq(q, "orch-live");
	ck_assert_int_gt(TTL(QUEUE_KEY_SEQ, "orch-live"), 3590);
	queue_free(q);
	queue_free(dq);
	redis_free(r);
}
END_TEST

START_TEST(test_ack)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	const char *some[] = {"e1", "e3", "nope", "e1"};
	const char *rest[] = {"e0", "e2", "e4"};
	const char *unknown[] = {"nope"};
	char longid[200];
	const char *bad[] = {longid, ""};
	struct res res = {0};
	char id[8];

	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "e%d", i);
		enq(q, ORCH, id, TS_BASE, "x");
	}
	ck_assert_uint_eq(ack(q, ORCH, some, 4), 2);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 3);
	ck_assert_int_eq(HLEN(ORCH), 3);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_TIMES, ORCH), 3);
	ck_assert_int_eq(HEXISTS(ORCH, "e1"), 0);
	ck_assert_int_eq(HEXISTS(ORCH, "e2"), 1);
	/* Unknown ids, unknown orchestrator, ids that cannot exist: 0. */
	ck_assert_uint_eq(ack(q, ORCH, unknown, 1), 0);
	ck_assert_uint_eq(ack(q, "orch-none", rest, 3), 0);
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	ck_assert_uint_eq(ack(q, ORCH, bad, 2), 0);
	/* Refused outright: no ids, too many. */
	ck_assert_int_eq(queue_ack(q, ORCH, rest, 0, on_num, &res), -1);
	ck_assert_int_eq(
	    queue_ack(q, ORCH, rest, QUEUE_BATCH_MAX + 1, on_num, &res), -1);
	ck_assert_uint_eq(ack(q, ORCH, rest, 3), 3);
	for (size_t i = 0; i < 3; i++)
		ck_assert_int_eq(EXISTS(all_prefixes[i], ORCH), 0);
	ck_assert_int_eq(res.done, 0);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_ack_full_batch)
{
	struct redis *r = connect_client(10000);
	struct queue *q = queue_new(r, 0, 0);
	struct res *res = util_calloc(QUEUE_BATCH_MAX, sizeof(*res));
	char(*ids)[16] = util_calloc(QUEUE_BATCH_MAX, 16);
	const char **p = util_calloc(QUEUE_BATCH_MAX, sizeof(*p));

	enq_many(q, ORCH, "ev", QUEUE_BATCH_MAX, res);
	for (int i = 0; i < QUEUE_BATCH_MAX; i++) {
		snprintf(ids[i], 16, "ev-%04d", i);
		p[i] = ids[i];
	}
	ck_assert_uint_eq(ack(q, ORCH, p, QUEUE_BATCH_MAX), QUEUE_BATCH_MAX);
	ck_assert_uint_eq(count(q, ORCH), 0);
	ck_assert_int_eq(EXISTS(QUEUE_KEY_BODIES, ORCH), 0);
	free(p);
	free(ids);
	free(res);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_fetch_after_seq)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	const char *five[] = {"e5"};
	uint64_t s[10], gap;
	struct fres *f, *dummy = util_calloc(1, sizeof(*dummy));
	struct event ev;
	char id[8], err[128];

	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "e%d", i);
		s[i] = enq(q, ORCH, id, TS_BASE, id).seq;
	}
	f = fetch(q, ORCH, s[3], 100, 0);
	ck_assert_uint_eq(f->n, 6);
	ck_assert_uint_eq(f->total, 6);
	ck_assert_uint_eq(f->last_seq, s[9]);
	for (size_t i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "e%zu", i + 4);
		ck_assert_uint_eq(f->seq[i], s[i + 4]);
		ck_assert_str_eq(f->id[i], id);
		ck_assert_int_eq(event_parse_queue_body(&ev, f->body[i],
							f->body_len[i], 0, err,
							sizeof(err)),
				 EVENT_OK);
		ck_assert_str_eq(ev.id, id);
		event_free(&ev);
	}
	fres_free(f);
	/* The limit, then the next page. */
	f = fetch(q, ORCH, s[3], 2, 0);
	ck_assert_uint_eq(f->n, 2);
	ck_assert_uint_eq(f->total, 6);
	ck_assert_uint_eq(f->seq[0], s[4]);
	ck_assert_uint_eq(f->seq[1], s[5]);
	fres_free(f);
	f = fetch(q, ORCH, s[5], 2, 0);
	ck_assert_uint_eq(f->n, 2);
	ck_assert_uint_eq(f->seq[0], s[6]);
	ck_assert_uint_eq(f->seq[1], s[7]);
	fres_free(f);
	/* Nothing after the last; everything after 0. */
	f = fetch(q, ORCH, s[9], 10, 0);
	ck_assert_uint_eq(f->n, 0);
	ck_assert_uint_eq(f->total, 0);
	fres_free(f);
	f = fetch(q, ORCH, 0, QUEUE_BATCH_MAX, 0);
	ck_assert_uint_eq(f->n, 10);
	ck_assert_uint_eq(f->seq[0], s[0]);
	fres_free(f);
	/* Acked events are gone from the replay. */
	ck_assert_uint_eq(ack(q, ORCH, five, 1), 1);
	f = fetch(q, ORCH, s[3], 100, 0);
	ck_assert_uint_eq(f->n, 5);
	ck_assert_uint_eq(f->total, 5);
	ck_assert_str_eq(f->id[1], "e6");
	fres_free(f);
	/* A live-only seq leaves a gap, the counter shows it. */
	gap = next_seq(q, ORCH);
	ck_assert_uint_eq(gap, s[9] + 1);
	ck_assert_uint_eq(enq(q, ORCH, "e10", TS_BASE, "x").seq, s[9] + 2);
	f = fetch(q, ORCH, s[9], 10, 0);
	ck_assert_uint_eq(f->n, 1);
	ck_assert_uint_eq(f->seq[0], s[9] + 2);
	ck_assert_uint_eq(f->last_seq, s[9] + 2);
	fres_free(f);
	/* An orchestrator with nothing; bad limits. */
	f = fetch(q, "orch-none", 0, 10, 0);
	ck_assert(f->n == 0 && f->total == 0 && f->last_seq == 0);
	fres_free(f);
	ck_assert_int_eq(queue_fetch(q, ORCH, 0, 0, on_fetch, dummy), -1);
	ck_assert_int_eq(
	    queue_fetch_since(q, ORCH, 0, QUEUE_BATCH_MAX + 1, on_fetch, dummy),
	    -1);
	run_for(0.05);
	ck_assert_int_eq(dummy->done, 0);
	free(dummy);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_fetch_since)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	/* Publication (seq) order differs from the timestamps. */
	static const struct {
		const char *id;
		uint64_t dt;
	} evs[] = {{"e0", 3000},
		   {"e1", 1000},
		   {"e2", 2000},
		   {"e3", 1000},
		   {"e4", 5000}};
	static const char *const by_time[] = {"e1", "e3", "e2", "e0", "e4"};
	const char *zero[] = {"e0"};
	uint64_t s[5];
	struct fres *f;

	for (size_t i = 0; i < 5; i++)
		s[i] = enq(q, ORCH, evs[i].id, TS_BASE + evs[i].dt, "x").seq;
	f = fetch(q, ORCH, TS_BASE, 100, 1);
	ck_assert_uint_eq(f->n, 5);
	ck_assert_uint_eq(f->total, 5);
	for (size_t i = 0; i < 5; i++)
		ck_assert_str_eq(f->id[i], by_time[i]);
	ck_assert_uint_eq(f->seq[0], s[1]);
	ck_assert_uint_eq(f->seq[3], s[0]);
	fres_free(f);
	/* The bound is inclusive. */
	f = fetch(q, ORCH, TS_BASE + 2000, 100, 1);
	ck_assert_uint_eq(f->n, 3);
	ck_assert_str_eq(f->id[0], "e2");
	ck_assert_str_eq(f->id[2], "e4");
	fres_free(f);
	f = fetch(q, ORCH, TS_BASE + 2001, 100, 1);
	ck_assert_uint_eq(f->n, 2);
	ck_assert_str_eq(f->id[0], "e0");
	fres_free(f);
	/* The limit. */
	f = fetch(q, ORCH, TS_BASE, 2, 1);
	ck_assert_uint_eq(f->n, 2);
	ck_assert_uint_eq(f->total, 5);
	ck_assert_str_eq(f->id[1], "e3");
	fres_free(f);
	/* Acked events leave the time index too. */
	ck_assert_uint_eq(ack(q, ORCH, zero, 1), 1);
	f = fetch(q, ORCH, TS_BASE + 2001, 100, 1);
	ck_assert_uint_eq(f->n, 1);
	ck_assert_str_eq(f->id[0], "e4");
	fres_free(f);
	f = fetch(q, ORCH, TS_BASE + 5001, 100, 1);
	ck_assert_uint_eq(f->n, 0);
	ck_assert_uint_eq(f->total, 0);
	fres_free(f);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_count)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	const char *one[] = {"b"};

	ck_assert_uint_eq(count(q, ORCH), 0);
	enq(q, ORCH, "a", TS_BASE, "x");
	enq(q, ORCH, "b", TS_BASE, "x");
	enq(q, ORCH, "c", TS_BASE, "x");
	enq(q, "orch-2", "a", TS_BASE, "x");
	ck_assert_uint_eq(count(q, ORCH), 3);
	ck_assert_uint_eq(ack(q, ORCH, one, 1), 1);
	ck_assert_uint_eq(count(q, ORCH), 2);
	ck_assert_uint_eq(count(q, "orch-2"), 1);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* Queued and live events share one counter, which only grows. */
START_TEST(test_next_seq)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	uint64_t t0 = util_wall_ms(), s1, s2, s3, s4, s5;

	s1 = next_seq(q, ORCH);
	ck_assert_uint_ge(s1, t0);
	s2 = next_seq(q, ORCH);
	s3 = enq(q, ORCH, "e1", TS_BASE, "x").seq;
	s4 = next_seq(q, ORCH);
	ck_assert_uint_eq(s2, s1 + 1);
	ck_assert_uint_eq(s3, s2 + 1);
	ck_assert_uint_eq(s4, s3 + 1);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 1);
	/* The counter expires (a retention of silence): still forward. */
	usleep(20000);
	freeReplyObject(cmd("DEL " QUEUE_KEY_SEQ ORCH));
	s5 = next_seq(q, ORCH);
	ck_assert_uint_gt(s5, s4);
	queue_free(q);
	redis_free(r);
}
END_TEST

/*
 * A lease: a fresh counter's block starts at the wall clock; blocks are
 * disjoint and increasing; only the counter is written, with its TTL.
 */
START_TEST(test_reserve)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 3600);
	uint64_t t0 = util_wall_ms(), a, b, c, d, e;
	struct res res = {0};

	a = reserve(q, ORCH, 16);
	ck_assert_uint_ge(a - 15, t0);
	ck_assert_uint_le(a - 15, util_wall_ms());
	ck_assert_int_eq(key_num("GET", QUEUE_KEY_SEQ, ORCH, NULL),
			 (long long)a);
	ck_assert_int_gt(TTL(QUEUE_KEY_SEQ, ORCH), 3590);
	for (size_t i = 0; i < 3; i++)
		ck_assert_int_eq(EXISTS(all_prefixes[i], ORCH), 0);
	/* The next blocks follow: (a, a + 32], then (b, b + 1]. */
	b = reserve(q, ORCH, 32);
	ck_assert_uint_eq(b, a + 32);
	c = reserve(q, ORCH, 1);
	ck_assert_uint_eq(c, b + 1);
	/* A seq taken by queue_enqueue() is after them too, and before. */
	d = enq(q, ORCH, "e1", TS_BASE, "x").seq;
	ck_assert_uint_eq(d, c + 1);
	e = reserve(q, ORCH, QUEUE_RESERVE_MAX);
	ck_assert_uint_eq(e - QUEUE_RESERVE_MAX + 1, d + 1);
	/* The TTL is refreshed. */
	freeReplyObject(cmd("EXPIRE " QUEUE_KEY_SEQ ORCH " 5"));
	reserve(q, ORCH, 4);
	ck_assert_int_gt(TTL(QUEUE_KEY_SEQ, ORCH), 3590);
	/* Another orchestrator has its own counter. */
	ck_assert_uint_ge(reserve(q, "orch-2", 1), t0);
	ck_assert_uint_lt(reserve(q, "orch-2", 1), e);
	/* An expired counter starts again at the clock, above the old. */
	usleep(20000);
	freeReplyObject(cmd("DEL " QUEUE_KEY_SEQ "orch-2"));
	ck_assert_uint_gt(reserve(q, "orch-2", 8) - 7, t0 + 10);
	/* Refused: no seqs, too many, no orchestrator, no callback. */
	ck_assert_int_eq(queue_reserve(q, ORCH, 0, on_num, &res), -1);
	ck_assert_int_eq(
	    queue_reserve(q, ORCH, QUEUE_RESERVE_MAX + 1, on_num, &res), -1);
	ck_assert_int_eq(queue_reserve(q, "", 1, on_num, &res), -1);
	ck_assert_int_eq(queue_reserve(q, ORCH, 1, NULL, &res), -1);
	run_for(0.05);
	ck_assert_int_eq(res.done, 0);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* Queued with the seq it brings: stored at that score, replayed by it. */
START_TEST(test_enqueue_seq)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 3600);
	uint64_t last = reserve(q, ORCH, 10), first = last - 9;
	struct queue_enqueue_result a, b, c;
	struct event ev;
	struct res res = {0};
	struct fres *f;
	redisReply *rep;

	/* Out of order between two ids: the score decides. */
	a = enq_seq(q, ORCH, "e5", first + 5);
	b = enq_seq(q, ORCH, "e2", first + 2);
	ck_assert(!a.duplicate && !b.duplicate);
	ck_assert_uint_eq(a.seq, first + 5);
	ck_assert_uint_eq(b.seq, first + 2);
	ck_assert_uint_eq(a.evicted + b.evicted, 0);
	ck_assert_int_eq(ZSCORE(QUEUE_KEY_EVENTS, ORCH, "e5"),
			 (long long)(first + 5));
	ck_assert_int_eq(HEXISTS(ORCH, "e2"), 1);
	ck_assert_int_eq(ZSCORE(QUEUE_KEY_TIMES, ORCH, "e2"),
			 (long long)TS_BASE);
	/* The counter is the lease's end still. */
	ck_assert_int_eq(key_num("GET", QUEUE_KEY_SEQ, ORCH, NULL),
			 (long long)last);
	f = fetch(q, ORCH, first, 10, 0);
	ck_assert_uint_eq(f->n, 2);
	ck_assert_str_eq(f->id[0], "e2");
	ck_assert_str_eq(f->id[1], "e5");
	ck_assert_uint_eq(f->last_seq, last);
	fres_free(f);
	/* Idempotent by id: the first seq, nothing written. */
	c = enq_seq(q, ORCH, "e5", first + 7);
	ck_assert(c.duplicate);
	ck_assert_uint_eq(c.seq, first + 5);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 2);
	ck_assert_int_eq(HLEN(ORCH), 2);
	rep = cmd("HGET " QUEUE_KEY_BODIES ORCH " e5");
	ck_assert_ptr_nonnull(strstr(rep->str, "\"e5\""));
	freeReplyObject(rep);
	/* Every key has the retention, refreshed by a duplicate too. */
	expect_ttls(ORCH, 3600);
	for (size_t i = 0; i < 4; i++) {
		char key[128];

		snprintf(key, sizeof(key), "%s%s", all_prefixes[i], ORCH);
		freeReplyObject(cmd("EXPIRE %s 5", key));
	}
	enq_seq(q, ORCH, "e2", first + 8);
	expect_ttls(ORCH, 3600);
	/* Refused: no seq, a seq past QUEUE_SEQ_MAX. */
	mkev(&ev, "e9", TS_BASE, "x");
	ck_assert_int_eq(queue_enqueue_seq(q, &ev, ORCH, 0, on_enq, &res), -1);
	ck_assert_int_eq(
	    queue_enqueue_seq(q, &ev, ORCH, QUEUE_SEQ_MAX + 1, on_enq, &res),
	    -1);
	ck_assert_int_eq(queue_enqueue_seq(q, &ev, "", first, on_enq, &res),
			 -1);
	ck_assert_int_eq(queue_enqueue_seq(q, &ev, ORCH, first, NULL, &res),
			 -1);
	event_free(&ev);
	run_for(0.05);
	ck_assert_int_eq(res.done, 0);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* The cap evicts the lowest seqs, whatever order they were queued in. */
START_TEST(test_enqueue_seq_cap)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 3, 0);
	uint64_t first = reserve(q, ORCH, 10) - 9;
	static const unsigned at[] = {4, 1, 6, 9, 2};
	static const unsigned evicted[] = {0, 0, 0, 1, 1};
	char id[8];
	redisReply *rep;

	for (size_t i = 0; i < UTIL_NELEM(at); i++) {
		snprintf(id, sizeof(id), "e%u", at[i]);
		ck_assert_uint_eq(enq_seq(q, ORCH, id, first + at[i]).evicted,
				  evicted[i]);
	}
	/* e1 went when e9 came; e2 came last and was the lowest then. */
	rep = cmd("ZRANGE " QUEUE_KEY_EVENTS ORCH " 0 -1");
	ck_assert_uint_eq(rep->elements, 3);
	ck_assert_str_eq(rep->element[0]->str, "e4");
	ck_assert_str_eq(rep->element[1]->str, "e6");
	ck_assert_str_eq(rep->element[2]->str, "e9");
	freeReplyObject(rep);
	ck_assert_int_eq(HLEN(ORCH), 3);
	ck_assert_int_eq(ZCARD(QUEUE_KEY_TIMES, ORCH), 3);
	ck_assert_int_eq(HEXISTS(ORCH, "e2"), 0);
	queue_free(q);
	redis_free(r);
}
END_TEST

/*
 * The counter is never below a queued seq: a reserve after
 * queue_enqueue_seq() returns seqs above it, even when the counter was
 * lost in between (then queue_enqueue_seq() raises it).
 */
START_TEST(test_reserve_after_enqueue_seq)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	uint64_t last = reserve(q, ORCH, 16), big, s;
	struct fres *f;

	enq_seq(q, ORCH, "e1", last);
	ck_assert_uint_eq(reserve(q, ORCH, 4) - 3, last + 1);
	/* Lost: the lease holds seqs the counter no longer knows. */
	freeReplyObject(cmd("DEL " QUEUE_KEY_SEQ ORCH));
	big = util_wall_ms() + 1000000;
	ck_assert_uint_eq(enq_seq(q, ORCH, "e2", big).seq, big);
	ck_assert_int_eq(key_num("GET", QUEUE_KEY_SEQ, ORCH, NULL),
			 (long long)big);
	s = reserve(q, ORCH, 8);
	ck_assert_uint_eq(s - 7, big + 1);
	/* A seq below the counter leaves it alone. */
	enq_seq(q, ORCH, "e3", big - 5);
	ck_assert_int_eq(key_num("GET", QUEUE_KEY_SEQ, ORCH, NULL),
			 (long long)s);
	ck_assert_uint_gt(enq(q, ORCH, "e4", TS_BASE, "x").seq, s);
	/* No queued seq is above the counter fetch reports. */
	f = fetch(q, ORCH, 0, 10, 0);
	ck_assert_uint_eq(f->n, 4);
	for (size_t i = 0; i < f->n; i++)
		ck_assert_uint_le(f->seq[i], f->last_seq);
	fres_free(f);
	queue_free(q);
	redis_free(r);
}
END_TEST

START_TEST(test_noscript_recovery)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	const char *one[] = {"e1"};
	struct queue_stats st;
	struct fres *f;
	uint64_t s2, s3;

	enq(q, ORCH, "e1", TS_BASE, "x");
	s2 = enq(q, ORCH, "e2", TS_BASE, "x").seq;
	f = fetch(q, ORCH, 0, 10, 0);
	fres_free(f);
	freeReplyObject(cmd("SCRIPT FLUSH"));
	/* Both loaded scripts hit NOSCRIPT once, and run anyway. */
	s3 = enq(q, ORCH, "e3", TS_BASE, "x").seq;
	ck_assert_uint_eq(s3, s2 + 1);
	f = fetch(q, ORCH, s2, 10, 0);
	ck_assert_uint_eq(f->n, 1);
	ck_assert_str_eq(f->id[0], "e3");
	fres_free(f);
	queue_get_stats(q, &st);
	ck_assert_uint_eq(st.noscript, 2);
	/* ...and are loaded again: no more NOSCRIPT. */
	ck_assert_uint_eq(enq(q, ORCH, "e4", TS_BASE, "x").seq, s3 + 1);
	ck_assert_uint_eq(ack(q, ORCH, one, 1), 1);
	f = fetch(q, ORCH, s3, 10, 0);
	ck_assert_uint_eq(f->n, 1);
	fres_free(f);
	queue_get_stats(q, &st);
	ck_assert_uint_eq(st.noscript, 2);
	ck_assert_uint_eq(st.loads, 5); /* enqueue, fetch, twice; ack */
	/* Flushed again between two calls of the same script. */
	freeReplyObject(cmd("SCRIPT FLUSH"));
	ck_assert_uint_eq(enq(q, ORCH, "e5", TS_BASE, "x").seq, s3 + 2);
	ck_assert_uint_eq(count(q, ORCH), 4);
	queue_get_stats(q, &st);
	ck_assert_uint_eq(st.noscript, 3);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* A new connection (here: a restarted Redis) gets SCRIPT LOAD first. */
START_TEST(test_reload_after_reconnect)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	struct queue_stats st;
	double end;

	enq(q, ORCH, "e1", TS_BASE, "x");
	enq(q, ORCH, "e2", TS_BASE, "x");
	redisFree(sc);
	sc = NULL;
	stop_server(SIGTERM);
	for (end = ev_time() + 5; redis_connected(r) && ev_time() < end;)
		run_for(0.01);
	ck_assert(!redis_connected(r));
	start_server();
	sc = redisConnectUnix(sock);
	ck_assert(sc != NULL && !sc->err);
	for (end = ev_time() + 10; !redis_connected(r) && ev_time() < end;)
		run_for(0.01);
	ck_assert(redis_connected(r));
	enq(q, ORCH, "e3", TS_BASE, "x");
	ck_assert_int_eq(ZCARD(QUEUE_KEY_EVENTS, ORCH), 1);
	queue_get_stats(q, &st);
	ck_assert_uint_eq(st.loads, 2);
	ck_assert_uint_eq(st.noscript, 0);
	ck_assert_uint_eq(st.evalsha, 2);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* Issue one of each operation; returns how many were accepted. */
static int
issue_all(struct queue *q, struct res *res, struct fres *f)
{
	const char *ids[] = {"e1"};
	struct event ev;
	int n = 0;

	mkev(&ev, "e9", TS_BASE, "x");
	n += queue_enqueue(q, &ev, ORCH, on_enq, &res[0]) == 0;
	event_free(&ev);
	n += queue_next_seq(q, ORCH, on_num, &res[1]) == 0;
	n += queue_ack(q, ORCH, ids, 1, on_num, &res[2]) == 0;
	n += queue_count(q, ORCH, on_num, &res[3]) == 0;
	n += queue_fetch(q, ORCH, 0, 10, on_fetch, &f[0]) == 0;
	n += queue_fetch_since(q, ORCH, 0, 10, on_fetch, &f[1]) == 0;
	return n;
}

static void
expect_all_failed(struct res *res, struct fres *f, int status)
{
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(res[i].done, 1);
		ck_assert_int_eq(res[i].status, status);
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(f[i].done, 1);
		ck_assert_int_eq(f[i].status, status);
		ck_assert_uint_eq(f[i].n, 0);
	}
}

START_TEST(test_redis_down)
{
	struct redis *r = connect_client(2000);
	struct queue *q = queue_new(r, 0, 0);
	struct res res[4];
	struct fres *f = util_calloc(2, sizeof(*f));
	double end;

	enq(q, ORCH, "e1", TS_BASE, "x"); /* scripts known */
	/* In flight when Redis dies: each callback once, with an error. */
	memset(res, 0, sizeof(res));
	ck_assert_int_eq(redis_command(r, NULL, NULL, "DEBUG SLEEP 1"), 0);
	ck_assert_int_eq(issue_all(q, res, f), 6);
	run_for(0.1);
	ck_assert_int_eq(res[0].done, 0);
	redisFree(sc);
	sc = NULL;
	stop_server(SIGKILL);
	for (end = ev_time() + 5; !f[1].done && ev_time() < end;)
		run_for(0.01);
	expect_all_failed(res, f, QUEUE_EUNAVAIL);
	/* While it is down: refused, no callback. */
	memset(res, 0, sizeof(res));
	memset(f, 0, 2 * sizeof(*f));
	ck_assert(!redis_connected(r));
	ck_assert_int_eq(issue_all(q, res, f), 0);
	run_for(0.2);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(res[i].done, 0);
	ck_assert(f[0].done == 0 && f[1].done == 0);
	/* Back: works again. */
	start_server();
	sc = redisConnectUnix(sock);
	for (end = ev_time() + 10; !redis_connected(r) && ev_time() < end;)
		run_for(0.01);
	ck_assert(redis_connected(r));
	ck_assert(!enq(q, ORCH, "e2", TS_BASE, "x").duplicate);
	/* A reply that does not come in time: the same error. */
	memset(res, 0, sizeof(res));
	memset(f, 0, 2 * sizeof(*f));
	ck_assert_int_eq(redis_command(r, NULL, NULL, "DEBUG SLEEP 3"), 0);
	ck_assert_int_eq(issue_all(q, res, f), 6);
	for (end = ev_time() + 6; !f[1].done && ev_time() < end;)
		run_for(0.01);
	expect_all_failed(res, f, QUEUE_EUNAVAIL);
	free(f);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* Freed with operations in flight: they still complete, then q goes. */
START_TEST(test_free_with_pending)
{
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0), *q2 = queue_new(r, 0, 0);
	struct res res[4], res2[4];
	struct fres *f = util_calloc(4, sizeof(*f));

	memset(res, 0, sizeof(res));
	memset(res2, 0, sizeof(res2));
	/* q: answered by Redis after queue_free(). */
	ck_assert_int_eq(issue_all(q, res, f), 6);
	queue_free(q);
	run_until(&f[1].done, 10);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(res[i].done, 1);
		ck_assert_int_eq(res[i].status, QUEUE_OK);
	}
	ck_assert(f[0].done == 1 && f[1].done == 1);
	ck_assert_uint_eq(f[0].n, 1); /* the enqueue ahead of it */
	/* q2: answered with NULL when the client goes. */
	ck_assert_int_eq(issue_all(q2, res2, f + 2), 6);
	queue_free(q2);
	redis_free(r);
	expect_all_failed(res2, f + 2, QUEUE_EUNAVAIL);
	for (int i = 0; i < 4; i++)
		for (size_t j = 0; j < f[i].n; j++)
			free(f[i].body[j]);
	free(f);
}
END_TEST

START_TEST(test_body_roundtrip)
{
	static const char rec[] =
	    "{\"id\": \"evt-0001\", \"type\": \"message.received\", "
	    "\"orchestratorId\": \"orch-1\", \"daemonId\": \"d-7\", "
	    "\"organizationId\": \"acme\", \"workspaceId\": \"ws-3\", "
	    "\"channelId\": \"C123\", \"payload\": {\"text\": \"hi "
	    "\\u00e9\\n\\\"q\\\"\",  \"n\" : [1, 2.50, -0, 1e3, {\"x\":null}]},"
	    " \"timestamp\": \"2026-11-26T12:34:56.789Z\", \"requiresAck\": "
	    "true, \"priority\": -7}";
	static const char bcast[] =
	    "{\"id\": \"b 1 \\\"'\", \"type\": \"system.notice\", "
	    "\"orchestratorId\": \"*\", \"organizationId\": \"acme\", "
	    "\"payload\": {}}";
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	struct event in, out;
	struct res res = {0};
	struct fres *f;
	char err[128], *msg, want[64];
	size_t len;
	uint64_t seq;

	ck_assert_int_eq(
	    event_parse(&in, rec, strlen(rec), 0, err, sizeof(err)), EVENT_OK);
	ck_assert_int_eq(queue_enqueue(q, &in, ORCH, on_enq, &res), 0);
	wait_ok(&res.done, &res.status);
	seq = res.enq.seq;
	f = fetch(q, ORCH, 0, 10, 0);
	ck_assert_uint_eq(f->n, 1);
	ck_assert_int_eq(event_parse_queue_body(&out, f->body[0],
						f->body_len[0], 0, err,
						sizeof(err)),
			 EVENT_OK);
	ck_assert_str_eq(out.id, in.id);
	ck_assert_str_eq(out.type, in.type);
	ck_assert_str_eq(out.orch, in.orch);
	ck_assert_str_eq(out.daemon, in.daemon);
	ck_assert_str_eq(out.org, in.org);
	ck_assert_str_eq(out.workspace, in.workspace);
	ck_assert_str_eq(out.channel, in.channel);
	ck_assert_uint_eq(out.payload_len, in.payload_len);
	ck_assert_str_eq(out.payload, in.payload);
	ck_assert_uint_eq(out.ts_ms, in.ts_ms);
	ck_assert_int_eq(out.priority, -7);
	ck_assert(out.requires_ack);
	ck_assert_int_eq(out.target, in.target);
	/* The replayed message carries the seq. */
	msg = util_malloc(event_message_size_hint(&out));
	len = event_message(&out, seq, msg, event_message_size_hint(&out));
	ck_assert_uint_gt(len, 0);
	snprintf(want, sizeof(want), "\"seq\":%llu", (unsigned long long)seq);
	ck_assert_ptr_nonnull(memmem(msg, len, want, strlen(want)));
	free(msg);
	fres_free(f);
	event_free(&in);
	event_free(&out);
	/* A broadcast queued for one of its orchestrators. */
	ck_assert_int_eq(
	    event_parse(&in, bcast, strlen(bcast), 0, err, sizeof(err)),
	    EVENT_OK);
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(queue_enqueue(q, &in, "orch-9", on_enq, &res), 0);
	wait_ok(&res.done, &res.status);
	f = fetch(q, "orch-9", 0, 10, 0);
	ck_assert_uint_eq(f->n, 1);
	ck_assert_str_eq(f->id[0], "b 1 \"'");
	ck_assert_int_eq(event_parse_queue_body(&out, f->body[0],
						f->body_len[0], 0, err,
						sizeof(err)),
			 EVENT_OK);
	ck_assert_str_eq(out.orch, "");
	ck_assert_int_eq(out.target, EVENT_TARGET_ORGANIZATION);
	ck_assert_str_eq(out.id, in.id);
	fres_free(f);
	event_free(&in);
	event_free(&out);
	queue_free(q);
	redis_free(r);
}
END_TEST

/* Ids are arguments: no injection, no collision between tenants. */
START_TEST(test_args_and_isolation)
{
	static const char *const orchs[] = {
	    "a", "a:bodies", "x') redis.call('FLUSHALL') --", "\xc3\xa9 \"]]"};
	struct redis *r = connect_client(5000);
	struct queue *q = queue_new(r, 0, 0);
	char o63[64], o64[65];
	struct event ev;
	struct res res = {0};

	for (size_t i = 0; i < UTIL_NELEM(orchs); i++)
		enq(q, orchs[i], "e1", TS_BASE, "x");
	enq(q, "a:bodies", "e2", TS_BASE, "x");
	ck_assert_uint_eq(count(q, "a"), 1);
	ck_assert_uint_eq(count(q, "a:bodies"), 2);
	ck_assert_uint_eq(count(q, orchs[2]), 1);
	ck_assert_uint_eq(count(q, orchs[3]), 1);
	memset(o63, 'o', 63);
	o63[63] = '\0';
	memset(o64, 'o', 64);
	o64[64] = '\0';
	enq(q, o63, "e1", TS_BASE, "x");
	mkev(&ev, "e1", TS_BASE, "x");
	ck_assert_int_eq(queue_enqueue(q, &ev, o64, on_enq, &res), -1);
	ck_assert_int_eq(queue_enqueue(q, &ev, "", on_enq, &res), -1);
	ck_assert_int_eq(queue_enqueue(q, &ev, NULL, on_enq, &res), -1);
	ck_assert_int_eq(queue_enqueue(q, &ev, ORCH, NULL, &res), -1);
	ck_assert_int_eq(queue_enqueue(q, NULL, ORCH, on_enq, &res), -1);
	ck_assert_int_eq(queue_next_seq(q, o64, on_num, &res), -1);
	ck_assert_int_eq(queue_count(q, "", on_num, &res), -1);
	ev.id[0] = '\0';
	ck_assert_int_eq(queue_enqueue(q, &ev, ORCH, on_enq, &res), -1);
	event_free(&ev);
	run_for(0.1);
	ck_assert_int_eq(res.done, 0);
	queue_free(q);
	redis_free(r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("redis");
	SRunner *sr;
	int failed;

	tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_enqueue_seq_increasing);
	tcase_add_test(tc, test_enqueue_duplicate);
	tcase_add_test(tc, test_cap_evicts_oldest);
	tcase_add_test(tc, test_cap_lowered);
	tcase_add_test(tc, test_ttl_on_all_keys);
	tcase_add_test(tc, test_ack);
	tcase_add_test(tc, test_ack_full_batch);
	tcase_add_test(tc, test_fetch_after_seq);
	tcase_add_test(tc, test_fetch_since);
	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_next_seq);
	tcase_add_test(tc, test_reserve);
	tcase_add_test(tc, test_enqueue_seq);
	tcase_add_test(tc, test_enqueue_seq_cap);
	tcase_add_test(tc, test_reserve_after_enqueue_seq);
	tcase_add_test(tc, test_noscript_recovery);
	tcase_add_test(tc, test_reload_after_reconnect);
	tcase_add_test(tc, test_redis_down);
	tcase_add_test(tc, test_free_with_pending);
	tcase_add_test(tc, test_body_roundtrip);
	tcase_add_test(tc, test_args_and_isolation);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
