/*
 * queue: the per-orchestrator durable event queue in Redis.
 *
 * Each operation is one Lua script, so that the sorted set, the bodies, the
 * time index and the counter never disagree, whatever runs concurrently
 * (the relay enqueues while workers ack and replay).  Scripts go out as
 * EVALSHA.  The SHA comes from SCRIPT LOAD, which we send on first use and
 * again on each new connection (a restarted or failed-over Redis has an
 * empty script cache); since Redis answers a connection's commands in
 * order, an EVALSHA written right after its SCRIPT LOAD finds the script.
 * Until the first SCRIPT LOAD has answered we send EVAL; a NOSCRIPT reply
 * (SCRIPT FLUSH, or a cache we did not see go) is retried once as EVAL.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/log.h"
#include "orchd/queue.h"
#include "orchd/util.h"

/*
 * The counter rule, shared by the scripts that allocate seqs: take n seqs
 * from counter key, returning the last of them.  A counter that does not
 * exist yet (INCRBY answers n) starts at now_ms instead, so the block is
 * [now_ms, now_ms + n - 1].  Seqs are written with %.0f: Lua numbers are
 * doubles and tostring() would round past 14 digits.
 */
#define TAKE_LUA                                                               \
	"local function take(key, n, now)\n"                                   \
	"  local last = redis.call('INCRBY', key, n)\n"                        \
	"  if last == n then\n"                                                \
	"    last = tonumber(now) + n - 1\n"                                   \
	"    redis.call('SET', key, string.format('%.0f', last))\n"            \
	"  end\n"                                                              \
	"  return last\n"                                                      \
	"end\n"

/*
 * KEYS events, bodies, times, seq; ARGV id, body, ts_ms, cap, ttl, now_ms,
 * seq.  ARGV[7] "0" takes the next seq from the counter; any other value is
 * a seq the caller reserved (queue_reserve()), used as is, and the counter
 * is raised to it should it be lower (it cannot be, unless the counter was
 * lost since the reservation), so that no queued seq is ever above the
 * counter.  Returns {seq, evicted, duplicate}.  The eviction works in
 * slices because unpack() has a bounded stack (the cap may have been
 * lowered far below the queue's length).
 */
static const char enqueue_lua[] = TAKE_LUA
    "local function touch()\n"
    "  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end\n"
    "end\n"
    "local old = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if old then\n"
    "  touch()\n"
    "  return {tonumber(old), 0, 1}\n"
    "end\n"
    "local seq = tonumber(ARGV[7])\n"
    "if seq == 0 then\n"
    "  seq = take(KEYS[4], 1, ARGV[6])\n"
    "elseif tonumber(redis.call('GET', KEYS[4]) or '0') < seq then\n"
    "  redis.call('SET', KEYS[4], ARGV[7])\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], string.format('%.0f', seq), ARGV[1])\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])\n"
    "local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])\n"
    "local evicted = 0\n"
    "while over > 0 do\n"
    "  local k = math.min(over, 1000)\n"
    "  local ids = redis.call('ZRANGE', KEYS[1], 0, k - 1)\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, k - 1)\n"
    "  redis.call('HDEL', KEYS[2], unpack(ids))\n"
    "  redis.call('ZREM', KEYS[3], unpack(ids))\n"
    "  evicted = evicted + #ids\n"
    "  over = over - k\n"
    "end\n"
    "touch()\n"
    "return {seq, evicted, 0}\n";

/* KEYS seq; ARGV n, ttl, now_ms.  Returns the last seq of the block. */
static const char reserve_lua[] =
    TAKE_LUA "local last = take(KEYS[1], tonumber(ARGV[1]), ARGV[3])\n"
	     "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
	     "return last\n";

/* KEYS events, bodies, times; ARGV the ids.  Returns how many were queued. */
static const char ack_lua[] =
    "if #ARGV == 0 then return 0 end\n"
    "local n = redis.call('ZREM', KEYS[1], unpack(ARGV))\n"
    "redis.call('HDEL', KEYS[2], unpack(ARGV))\n"
    "redis.call('ZREM', KEYS[3], unpack(ARGV))\n"
    "return n\n";

/*
 * KEYS events, bodies, times, seq; ARGV mode ("seq": seq > min, "time":
 * timestamp >= min), min, limit.  Returns {counter, total, id, seq, body,
 * id, seq, body...} in the index's order.  Read-only.
 */
static const char fetch_lua[] =
    "local z, lo = KEYS[1], '(' .. ARGV[2]\n"
    "if ARGV[1] == 'time' then z, lo = KEYS[3], ARGV[2] end\n"
    "local ids = redis.call('ZRANGEBYSCORE', z, lo, '+inf', 'LIMIT', 0,"
    " ARGV[3])\n"
    "local out = {redis.call('GET', KEYS[4]) or '0',"
    " redis.call('ZCOUNT', z, lo, '+inf')}\n"
    "if #ids == 0 then return out end\n"
    "local bodies = redis.call('HMGET', KEYS[2], unpack(ids))\n"
    "for i = 1, #ids do\n"
    "  local seq = redis.call('ZSCORE', KEYS[1], ids[i])\n"
    "  if seq and bodies[i] then\n"
    "    out[#out + 1] = ids[i]\n"
    "    out[#out + 1] = string.format('%.0f', tonumber(seq))\n"
    "    out[#out + 1] = bodies[i]\n"
    "  end\n"
    "end\n"
    "return out\n";

enum { SC_ENQUEUE, SC_RESERVE, SC_ACK, SC_FETCH, SC_N };

static const char *const script_src[SC_N] = {enqueue_lua, reserve_lua, ack_lua,
					     fetch_lua};

struct qscript {
	struct queue *q;
	int id;
	char sha[41]; /* "" until a SCRIPT LOAD has answered */
	/* The connection (redis connect count) SCRIPT LOAD went to; 0: none. */
	uint64_t load_epoch;
};

struct queue {
	struct redis *redis;
	unsigned max_events;
	uint64_t retention_s;
	struct qscript sc[SC_N];
	unsigned npending; /* our commands awaiting a reply */
	int closing;
	struct queue_stats st;
};

enum qop { OP_ENQUEUE, OP_RESERVE, OP_ACK, OP_FETCH, OP_COUNT };

/*
 * One operation.  The arguments are kept (in buf) until the reply, for the
 * NOSCRIPT retry; argv[0] and argv[1] (EVALSHA sha / EVAL source) are set
 * at each send.
 */
struct qreq {
	struct queue *q;
	enum qop op;
	int script;
	int retried;
	uint64_t nseqs; /* OP_RESERVE: the block's size */
	union {
		queue_enqueue_fn enq;
		queue_num_fn num;
		queue_fetch_fn fetch;
	} fn;
	void *arg;
	int argc, maxargs;
	const char **argv;
	size_t *argvlen;
	size_t *off; /* argument offsets into buf */
	char *buf;
	size_t len, cap;
};

static struct qreq *
req_new(struct queue *q, enum qop op, int script, int maxargs, size_t bytes)
{
	struct qreq *rq = util_calloc(1, sizeof(*rq));

	rq->q = q;
	rq->op = op;
	rq->script = script;
	rq->maxargs = maxargs + 2;
	rq->argv = util_calloc((size_t)rq->maxargs, sizeof(*rq->argv));
	rq->argvlen = util_calloc((size_t)rq->maxargs, sizeof(*rq->argvlen));
	rq->off = util_calloc((size_t)rq->maxargs, sizeof(*rq->off));
	rq->cap = bytes > 0 ? bytes : 64;
	rq->buf = util_malloc(rq->cap);
	rq->argc = 2;
	return rq;
}

static void
req_free(struct qreq *rq)
{
	free(rq->argv);
	free(rq->argvlen);
	free(rq->off);
	free(rq->buf);
	free(rq);
}

/* Room for n more bytes; returns where they go. */
static char *
req_room(struct qreq *rq, size_t n)
{
	if (rq->cap - rq->len < n) {
		while (rq->cap - rq->len < n)
			rq->cap *= 2;
		rq->buf = util_realloc(rq->buf, rq->cap);
	}
	return rq->buf + rq->len;
}

/* Append one argument made of a then b (b may be NULL). */
static void
req_arg2(struct qreq *rq, const char *a, size_t alen, const char *b,
	 size_t blen)
{
	char *p = req_room(rq, alen + blen);

	if (rq->argc >= rq->maxargs)
		fatalx("%s: too many arguments", __func__);
	memcpy(p, a, alen);
	if (blen > 0)
		memcpy(p + alen, b, blen);
	rq->off[rq->argc] = rq->len;
	rq->argvlen[rq->argc] = alen + blen;
	rq->argc++;
	rq->len += alen + blen;
}

static void
req_str(struct qreq *rq, const char *s)
{
	req_arg2(rq, s, strlen(s), NULL, 0);
}

static void
req_u64(struct qreq *rq, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

	req_arg2(rq, tmp, (size_t)n, NULL, 0);
}

static void
req_key(struct qreq *rq, const char *prefix, const char *orch)
{
	req_arg2(rq, prefix, strlen(prefix), orch, strlen(orch));
}

/* Point argv at the arguments: buf does not move after this. */
static void
req_seal(struct qreq *rq)
{
	for (int i = 2; i < rq->argc; i++)
		rq->argv[i] = rq->buf + rq->off[i];
}

static void
release_if_idle(struct queue *q)
{
	if (q->closing && q->npending == 0)
		free(q);
}

static void
on_load(struct redis *r, redisReply *rep, void *arg)
{
	struct qscript *sc = arg;
	struct queue *q = sc->q;

	if (rep != NULL && rep->type == REDIS_REPLY_STRING &&
	    rep->len == sizeof(sc->sha) - 1)
		memcpy(sc->sha, rep->str, sizeof(sc->sha));
	else
		sc->load_epoch = 0; /* load again next time */
	q->npending--;
	release_if_idle(q);
}

/*
 * Load sc on this connection unless done already.  Sent before the
 * operation that needs it, so it is executed first.
 */
static void
script_prepare(struct queue *q, struct qscript *sc)
{
	struct redis_stats rs;

	redis_get_stats(q->redis, &rs);
	if (sc->load_epoch == rs.connects)
		return;
	if (redis_command(q->redis, on_load, sc, "SCRIPT LOAD %s",
			  script_src[sc->id]) != 0)
		return;
	sc->load_epoch = rs.connects;
	q->npending++;
	q->st.loads++;
}

static void on_reply(struct redis *r, redisReply *rep, void *arg);

static int
req_send(struct qreq *rq)
{
	struct queue *q = rq->q;
	struct qscript *sc = &q->sc[rq->script];
	int eval = rq->retried || sc->sha[0] == '\0';

	rq->argv[0] = eval ? "EVAL" : "EVALSHA";
	rq->argvlen[0] = strlen(rq->argv[0]);
	rq->argv[1] = eval ? script_src[rq->script] : sc->sha;
	rq->argvlen[1] = strlen(rq->argv[1]);
	if (redis_command_argv(q->redis, on_reply, rq, rq->argc, rq->argv,
			       rq->argvlen) != 0)
		return -1;
	if (eval)
		q->st.eval++;
	else
		q->st.evalsha++;
	return 0;
}

/* Send a built request; on refusal free it and return -1. */
static int
req_start(struct qreq *rq)
{
	struct queue *q = rq->q;

	req_seal(rq);
	script_prepare(q, &q->sc[rq->script]);
	if (req_send(rq) != 0) {
		req_free(rq);
		return -1;
	}
	q->npending++;
	return 0;
}

static int
usable(const struct queue *q)
{
	return q != NULL && !q->closing && redis_connected(q->redis);
}

/* A non-empty string of at most max bytes. */
static int
len_ok(const char *s, size_t max)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strnlen(s, max + 1);
	return n >= 1 && n <= max;
}

static int
orch_ok(const char *orch)
{
	return len_ok(orch, QUEUE_ORCH_MAX);
}

static int
id_ok(const char *id)
{
	return len_ok(id, QUEUE_ID_MAX);
}

/* A non-negative integer element (or a decimal string) of a reply. */
static int
reply_u64(const redisReply *e, uint64_t *out)
{
	if (e->type == REDIS_REPLY_INTEGER) {
		if (e->integer < 0)
			return -1;
		*out = (uint64_t)e->integer;
		return 0;
	}
	if (e->type == REDIS_REPLY_STRING)
		return util_parse_u64(e->str, 0, UINT64_MAX, out);
	return -1;
}

static int
done_enqueue(struct qreq *rq, const redisReply *rep)
{
	struct queue_enqueue_result res;
	uint64_t ev, dup;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
	    reply_u64(rep->element[0], &res.seq) != 0 || res.seq == 0 ||
	    reply_u64(rep->element[1], &ev) != 0 || ev > UINT32_MAX ||
	    reply_u64(rep->element[2], &dup) != 0)
		return -1;
	res.evicted = (unsigned)ev;
	res.duplicate = dup != 0;
	rq->fn.enq(rq->q, QUEUE_OK, &res, rq->arg);
	return 0;
}

static int
done_num(struct qreq *rq, const redisReply *rep)
{
	uint64_t n;

	if (rep->type != REDIS_REPLY_INTEGER || reply_u64(rep, &n) != 0 ||
	    (rq->op == OP_RESERVE && (n < rq->nseqs || n > QUEUE_SEQ_MAX)))
		return -1;
	rq->fn.num(rq->q, QUEUE_OK, n, rq->arg);
	return 0;
}

static int
done_fetch(struct qreq *rq, const redisReply *rep)
{
	struct queue_fetch_result res;
	struct queue_item *items;
	size_t n;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    (rep->elements - 2) % 3 != 0 ||
	    reply_u64(rep->element[0], &res.last_seq) != 0 ||
	    reply_u64(rep->element[1], &res.total) != 0)
		return -1;
	n = (rep->elements - 2) / 3;
	items = util_calloc(n > 0 ? n : 1, sizeof(*items));
	for (size_t i = 0; i < n; i++) {
		redisReply **e = rep->element + 2 + 3 * i;

		if (e[0]->type != REDIS_REPLY_STRING ||
		    e[2]->type != REDIS_REPLY_STRING ||
		    reply_u64(e[1], &items[i].seq) != 0) {
			free(items);
			return -1;
		}
		items[i].id = e[0]->str;
		items[i].id_len = e[0]->len;
		items[i].body = e[2]->str;
		items[i].body_len = e[2]->len;
	}
	res.items = items;
	res.n = n;
	rq->fn.fetch(rq->q, QUEUE_OK, &res, rq->arg);
	free(items);
	return 0;
}

/* Tell the caller about a failure. */
static void
done_error(struct qreq *rq, int status)
{
	switch (rq->op) {
	case OP_ENQUEUE:
		rq->fn.enq(rq->q, status, NULL, rq->arg);
		break;
	case OP_FETCH:
		rq->fn.fetch(rq->q, status, NULL, rq->arg);
		break;
	default:
		rq->fn.num(rq->q, status, 0, rq->arg);
		break;
	}
}

static const char *const op_name[] = {"enqueue", "reserve", "ack", "fetch",
				      "count"};

static void
on_reply(struct redis *r, redisReply *rep, void *arg)
{
	struct qreq *rq = arg;
	struct queue *q = rq->q;
	int rc;

	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && !rq->retried &&
	    rq->op != OP_COUNT && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
		/* The cache lost our script: run it whole, load it again. */
		q->st.noscript++;
		q->sc[rq->script].load_epoch = 0;
		rq->retried = 1;
		if (req_send(rq) == 0)
			return;
		rep = NULL;
	}
	if (rep == NULL) {
		done_error(rq, QUEUE_EUNAVAIL);
	} else if (rep->type == REDIS_REPLY_ERROR) {
		done_error(rq, QUEUE_EREPLY); /* redis.c has logged it */
	} else {
		switch (rq->op) {
		case OP_ENQUEUE:
			rc = done_enqueue(rq, rep);
			break;
		case OP_FETCH:
			rc = done_fetch(rq, rep);
			break;
		default:
			rc = done_num(rq, rep);
			break;
		}
		if (rc != 0) {
			log_warnx("%s: %s: unexpected reply (type %d)",
				  __func__, op_name[rq->op], rep->type);
			done_error(rq, QUEUE_EREPLY);
		}
	}
	req_free(rq);
	q->npending--;
	release_if_idle(q);
}

struct queue *
queue_new(struct redis *r, unsigned max_events, uint64_t retention_s)
{
	struct queue *q = util_calloc(1, sizeof(*q));

	if (max_events == 0)
		max_events = QUEUE_DEFAULT_MAX_EVENTS;
	if (max_events > QUEUE_MAX_EVENTS_LIMIT)
		max_events = QUEUE_MAX_EVENTS_LIMIT;
	if (retention_s == 0)
		retention_s = QUEUE_DEFAULT_RETENTION_S;
	if (retention_s > QUEUE_RETENTION_LIMIT_S)
		retention_s = QUEUE_RETENTION_LIMIT_S;
	q->redis = r;
	q->max_events = max_events;
	q->retention_s = retention_s;
	for (int i = 0; i < SC_N; i++) {
		q->sc[i].q = q;
		q->sc[i].id = i;
	}
	return q;
}

void
queue_free(struct queue *q)
{
	if (q == NULL)
		return;
	q->closing = 1;
	release_if_idle(q);
}

/* The floor of a new counter: now, never 0. */
static uint64_t
seq_floor(void)
{
	uint64_t now = util_wall_ms();

	return now > 0 ? now : 1;
}

/* seq 0: the script takes one from the counter. */
static int
enqueue(struct queue *q, const struct event *ev, const char *orch, uint64_t seq,
	queue_enqueue_fn fn, void *arg)
{
	struct qreq *rq;
	size_t hint, blen;
	char *p;

	if (!usable(q) || ev == NULL || fn == NULL || !orch_ok(orch) ||
	    !id_ok(ev->id))
		return -1;
	hint = event_queue_body_size_hint(ev);
	rq = req_new(q, OP_ENQUEUE, SC_ENQUEUE, 12, hint + 512);
	rq->fn.enq = fn;
	rq->arg = arg;
	req_str(rq, "4");
	req_key(rq, QUEUE_KEY_EVENTS, orch);
	req_key(rq, QUEUE_KEY_BODIES, orch);
	req_key(rq, QUEUE_KEY_TIMES, orch);
	req_key(rq, QUEUE_KEY_SEQ, orch);
	req_str(rq, ev->id);
	/* The body is written in place. */
	p = req_room(rq, hint);
	blen = event_queue_body(ev, p, hint);
	if (blen == 0) {
		req_free(rq);
		return -1;
	}
	rq->off[rq->argc] = rq->len;
	rq->argvlen[rq->argc++] = blen;
	rq->len += blen;
	req_u64(rq, ev->ts_ms);
	req_u64(rq, q->max_events);
	req_u64(rq, q->retention_s);
	req_u64(rq, seq_floor());
	req_u64(rq, seq);
	return req_start(rq);
}

int
queue_enqueue(struct queue *q, const struct event *ev, const char *orch,
	      queue_enqueue_fn fn, void *arg)
{
	return enqueue(q, ev, orch, 0, fn, arg);
}

int
queue_enqueue_seq(struct queue *q, const struct event *ev, const char *orch,
		  uint64_t seq, queue_enqueue_fn fn, void *arg)
{
	if (seq == 0 || seq > QUEUE_SEQ_MAX)
		return -1;
	return enqueue(q, ev, orch, seq, fn, arg);
}

int
queue_reserve(struct queue *q, const char *orch, unsigned n, queue_num_fn fn,
	      void *arg)
{
	struct qreq *rq;

	if (!usable(q) || fn == NULL || !orch_ok(orch) || n == 0 ||
	    n > QUEUE_RESERVE_MAX)
		return -1;
	rq = req_new(q, OP_RESERVE, SC_RESERVE, 5, 128);
	rq->fn.num = fn;
	rq->arg = arg;
	rq->nseqs = n;
	req_str(rq, "1");
	req_key(rq, QUEUE_KEY_SEQ, orch);
	req_u64(rq, n);
	req_u64(rq, q->retention_s);
	req_u64(rq, seq_floor());
	return req_start(rq);
}

int
queue_next_seq(struct queue *q, const char *orch, queue_num_fn fn, void *arg)
{
	return queue_reserve(q, orch, 1, fn, arg);
}

int
queue_ack(struct queue *q, const char *orch, const char *const *ids, size_t n,
	  queue_num_fn fn, void *arg)
{
	struct qreq *rq;

	if (!usable(q) || fn == NULL || !orch_ok(orch) || ids == NULL ||
	    n == 0 || n > QUEUE_BATCH_MAX)
		return -1;
	rq = req_new(q, OP_ACK, SC_ACK, 4 + (int)n, 256 + n * 40);
	rq->fn.num = fn;
	rq->arg = arg;
	req_str(rq, "3");
	req_key(rq, QUEUE_KEY_EVENTS, orch);
	req_key(rq, QUEUE_KEY_BODIES, orch);
	req_key(rq, QUEUE_KEY_TIMES, orch);
	/* An id that cannot have been queued cannot be removed either. */
	for (size_t i = 0; i < n; i++)
		if (id_ok(ids[i]))
			req_str(rq, ids[i]);
	return req_start(rq);
}

static int
fetch(struct queue *q, const char *orch, const char *mode, uint64_t min,
      unsigned limit, queue_fetch_fn fn, void *arg)
{
	struct qreq *rq;

	if (!usable(q) || fn == NULL || !orch_ok(orch) || limit == 0 ||
	    limit > QUEUE_BATCH_MAX)
		return -1;
	rq = req_new(q, OP_FETCH, SC_FETCH, 8, 256);
	rq->fn.fetch = fn;
	rq->arg = arg;
	req_str(rq, "4");
	req_key(rq, QUEUE_KEY_EVENTS, orch);
	req_key(rq, QUEUE_KEY_BODIES, orch);
	req_key(rq, QUEUE_KEY_TIMES, orch);
	req_key(rq, QUEUE_KEY_SEQ, orch);
	req_str(rq, mode);
	req_u64(rq, min);
	req_u64(rq, limit);
	return req_start(rq);
}

int
queue_fetch(struct queue *q, const char *orch, uint64_t after_seq,
	    unsigned limit, queue_fetch_fn fn, void *arg)
{
	return fetch(q, orch, "seq", after_seq, limit, fn, arg);
}

int
queue_fetch_since(struct queue *q, const char *orch, uint64_t since_wall_ms,
		  unsigned limit, queue_fetch_fn fn, void *arg)
{
	return fetch(q, orch, "time", since_wall_ms, limit, fn, arg);
}

int
queue_count(struct queue *q, const char *orch, queue_num_fn fn, void *arg)
{
	struct qreq *rq;
	char key[sizeof(QUEUE_KEY_EVENTS) + QUEUE_ORCH_MAX];
	int n;

	if (!usable(q) || fn == NULL || !orch_ok(orch))
		return -1;
	n = snprintf(key, sizeof(key), "%s%s", QUEUE_KEY_EVENTS, orch);
	rq = req_new(q, OP_COUNT, 0, 0, 0);
	rq->fn.num = fn;
	rq->arg = arg;
	if (redis_command(q->redis, on_reply, rq, "ZCARD %b", key, (size_t)n) !=
	    0) {
		req_free(rq);
		return -1;
	}
	q->npending++;
	return 0;
}

void
queue_get_stats(const struct queue *q, struct queue_stats *st)
{
	*st = q->st;
}
