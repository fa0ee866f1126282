/*
 * feed: event records from Redis for the relay (hiredis async on libev).
 *
 * Three connections.  The subscriber and the stream reader are raw hiredis
 * contexts, because a subscribed connection accepts no other command and an
 * XREAD BLOCK holds its connection for the whole block; both belong to this
 * module alone.  Commands that must not wait behind them (the canary's
 * PUBLISH, the SET that persists the committed stream id) go over a generic
 * struct redis client.
 *
 * The user's callbacks are only ever called from the two raw contexts'
 * callbacks or from our own timers, never from a struct redis reply: a
 * feed_free() from inside a user callback then only has to detach the raw
 * contexts (hiredis defers freeing the one whose callback is running) and
 * leave freeing the struct to the wrapper that made the call (f->busy).
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "orchd/feed.h"
#include "orchd/log.h"
#include "orchd/redis.h"
#include "orchd/resolve.h"
#include "orchd/sentinel.h"
#include "orchd/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000 /* subscribed again within 2 s of Redis' return */
#define CHANNEL_GLOBAL "daemon:events"
#define CHANNEL_PREFIX "daemon:events:"
#define PATTERN_ORGS "daemon:events:*"
#define STREAM_COUNT 256
#define LAST_ID_SUFFIX ":orchd-last-id"
/*
 * hiredis keeps only the element being parsed as raw bytes (finished ones
 * become reply objects and their bytes are discarded), so its read buffer
 * bounds the largest single string it holds.  A record up to
 * max_event_size plus this slack is passed on; beyond, the connection is
 * dropped before the buffer can grow any further.
 */
#define READ_SLACK (64 * 1024)
#define COMMIT_RETRY_S 0.2
/*
 * With Sentinel, how often the master's address is asked again.  A master
 * demoted by a failover keeps its clients until the sentinels reconfigure
 * it (up to 10 s later), and an old master that is still up keeps
 * answering: pub/sub messages published on the new one would be missed all
 * that time.
 */
#define MASTER_CHECK_S 1.0

/* One raw hiredis connection: the subscriber or the stream reader. */
struct fconn {
	struct feed *f;
	const char *name;
	redisAsyncContext *ac;
	struct sentinel_query *resolving;
	struct resolve_req *lookup; /* a host name, before a connect */
	int lookup_port;
	int connected;
	unsigned backoff_ms;
	int down_logged;   /* this outage has been logged */
	ev_timer retry;    /* back-off before the next connect */
	ev_timer watchdog; /* connect or reply overdue: drop */
	void (*up)(struct fconn *c);
};

struct feed {
	struct ev_loop *loop;
	const struct config *cfg;
	struct feed_callbacks cb;
	void *arg;
	int closing; /* feed_free() called */
	int busy;    /* inside a user callback: the wrapper frees */

	struct fconn sub, stream;
	struct redis *cmd;
	ev_prepare guard; /* read buffer bound */

	/* Sentinel: the master we connect to, checked every MASTER_CHECK_S. */
	char master_host[CONFIG_SENTINEL_HOST_MAX];
	int master_port;
	struct sentinel_query *master_q;
	ev_timer master_check;

	int subscribed;
	int sub_acks;   /* subscribe confirmations: 2 channels + 1 pattern */
	int org_logged; /* a malformed channel has been logged */

	char canary_chan[64];
	char canary_token[24];
	uint64_t canary_seq;
	int canary_out; /* a token is on its way */
	ev_tstamp canary_sent; /* ev_now() when it was published */
	ev_tstamp sub_rx;      /* ev_now() of the subscriber's last message */
	ev_timer canary_tick, canary_deadline;

	/* Stream. */
	char *last_key;                    /* KEY:orchd-last-id */
	char last[FEED_STREAM_ID_MAX + 1]; /* read up to here */
	int have_last;
	int probe;     /* next entry is oversized: look its id up */
	int count_one; /* an oversized reply: read one entry at a time */
	unsigned block_ms;
	int entry_logged; /* an entry without "event" has been logged */
	char handed[FEED_STREAM_ID_MAX + 1];      /* last passed to record() */
	char commit_last[FEED_STREAM_ID_MAX + 1]; /* newest to persist */
	char commit_want[FEED_STREAM_ID_MAX + 1]; /* waiting to be SET */
	int commit_inflight;
	ev_timer commit_retry;
	/*
	 * A skipped entry cannot be committed while records before it are
	 * still with the relay: it is committed instead of skip_after, when
	 * the relay commits that.
	 */
	char skip_after[FEED_STREAM_ID_MAX + 1];
	char skip_to[FEED_STREAM_ID_MAX + 1];

	struct feed_stats st;
};

static void conn_start(struct fconn *c);
static void commit_flush(struct feed *f);
static void stream_read(struct fconn *c);

/* ---- user callbacks ------------------------------------------------------ */

/*
 * The only way user callbacks are called.  Returns -1 when the user freed
 * the feed meanwhile: the caller must return without touching it.
 */
static int
finish_call(struct feed *f)
{
	f->busy--;
	if (!f->closing)
		return 0;
	if (f->busy == 0)
		free(f);
	return -1;
}

static int
deliver(struct feed *f, const char *org, const char *buf, size_t len,
	const char *stream_id)
{
	f->busy++;
	f->cb.record(f->arg, org, buf, len, stream_id);
	return finish_call(f);
}

static int
set_subscribed(struct feed *f, int subscribed)
{
	if (f->subscribed == subscribed)
		return 0;
	f->subscribed = subscribed;
	if (f->cb.state == NULL)
		return 0;
	f->busy++;
	f->cb.state(f->arg, subscribed);
	return finish_call(f);
}

/* ---- stream ids ---------------------------------------------------------- */

static int
stream_id_parse(const char *s, size_t len, uint64_t *ms, uint64_t *seq)
{
	char buf[FEED_STREAM_ID_MAX + 1];
	char *dash;

	if (len == 0 || len > FEED_STREAM_ID_MAX)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if ((dash = strchr(buf, '-')) == NULL)
		return -1;
	*dash = '\0';
	if (util_parse_u64(buf, 0, UINT64_MAX, ms) != 0 ||
	    util_parse_u64(dash + 1, 0, UINT64_MAX, seq) != 0)
		return -1;
	return 0;
}

static int
stream_id_valid(const char *s, size_t len)
{
	uint64_t ms, seq;

	return stream_id_parse(s, len, &ms, &seq) == 0;
}

/* strcmp() for valid ids. */
static int
stream_id_cmp(const char *a, const char *b)
{
	uint64_t am, as, bm, bs;

	if (stream_id_parse(a, strlen(a), &am, &as) != 0 ||
	    stream_id_parse(b, strlen(b), &bm, &bs) != 0)
		return strcmp(a, b);
	if (am != bm)
		return am < bm ? -1 : 1;
	return as < bs ? -1 : as > bs;
}

/* ---- connections --------------------------------------------------------- */

static void conn_log_down(const char *func, struct fconn *c, const char *fmt,
			  ...) ORCHD_PRINTF(3, 4);
#define CONN_DOWN(c, ...) conn_log_down(__func__, (c), __VA_ARGS__)

/* The first failure of an outage is logged; the retries are not. */
static void
conn_log_down(const char *func, struct fconn *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (c->down_logged)
		return;
	c->down_logged = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("%s: %s: %s", func, c->name, msg);
}

/* The connection works: the next outage starts from the short back-off. */
static void
conn_healthy(struct fconn *c)
{
	c->backoff_ms = 0;
	if (c->down_logged)
		log_info("%s: %s: Redis is back", __func__, c->name);
	c->down_logged = 0;
}

static void
conn_schedule(struct fconn *c)
{
	struct feed *f = c->f;

	c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS
			: c->backoff_ms >= BACKOFF_MAX_MS / 2
			    ? BACKOFF_MAX_MS
			    : c->backoff_ms * 2;
	ev_timer_stop(f->loop, &c->retry);
	ev_timer_set(&c->retry, c->backoff_ms / 1000.0, 0.);
	ev_timer_start(f->loop, &c->retry);
}

static void
conn_arm(struct fconn *c, double secs)
{
	ev_timer_stop(c->f->loop, &c->watchdog);
	ev_timer_set(&c->watchdog, secs, 0.);
	ev_timer_start(c->f->loop, &c->watchdog);
}

/* Forget the context; hiredis frees it now or when its callback returns. */
static void
conn_detach(struct fconn *c)
{
	redisAsyncContext *ac = c->ac;

	c->ac = NULL;
	c->connected = 0;
	ev_timer_stop(c->f->loop, &c->watchdog);
	/* A look-up in flight would otherwise connect a second context. */
	resolve_cancel(c->lookup);
	c->lookup = NULL;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

/*
 * The connection is gone or we give up on it: reconnect after the back-off.
 * Returns -1 when the user freed the feed from state().
 */
static int
conn_lost(struct fconn *c)
{
	struct feed *f = c->f;

	f->st.reconnects++;
	conn_detach(c);
	conn_schedule(c);
	if (c == &f->sub) {
		f->sub_acks = 0;
		f->canary_out = 0;
		ev_timer_stop(f->loop, &f->canary_deadline);
		return set_subscribed(f, 0);
	}
	return 0;
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct fconn *c = ac->data;

	if (c == NULL)
		return;
	if (status != REDIS_OK) {
		CONN_DOWN(c, "connect failed: %s", ac->errstr);
		/* hiredis frees the context after this callback. */
		c->ac = NULL;
		ev_timer_stop(c->f->loop, &c->watchdog);
		conn_schedule(c);
		return;
	}
	c->connected = 1;
	c->f->st.connects++;
	log_debug("%s: %s: connected", __func__, c->name);
	/* The watchdog keeps running: up() re-arms it for its first reply. */
	c->up(c);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct fconn *c = ac->data;

	if (c == NULL)
		return;
	CONN_DOWN(c, "disconnected%s%s", status != REDIS_OK ? ": " : "",
		  status != REDIS_OK ? ac->errstr : "");
	c->ac = NULL; /* hiredis is freeing it */
	conn_lost(c);
}

/* host: NULL (the unix socket) or a numeric address. */
static void
conn_open_addr(struct fconn *c, const char *host, int port)
{
	struct feed *f = c->f;
	redisAsyncContext *ac;

	if (host == NULL)
		ac = redisAsyncConnectUnix(f->cfg->redis.unix_path);
	else
		ac = redisAsyncConnect(host, port);
	if (ac == NULL || ac->err) {
		CONN_DOWN(c, "%s", ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		conn_schedule(c);
		return;
	}
	ac->data = c;
	if (redisLibevAttach(f->loop, ac) != REDIS_OK) {
		redisAsyncFree(ac);
		conn_schedule(c);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	/* hiredis 0.14 has no connect timeout. */
	conn_arm(c, (double)f->cfg->redis_timeout_ms / 1000.0);
}

static void
on_lookup(void *arg, const struct resolve_result *res)
{
	struct fconn *c = arg;
	const char *ip = resolve_pick(res, AF_INET);

	c->lookup = NULL; /* the request is gone */
	if (ip == NULL) {
		CONN_DOWN(c, "%s", res->err);
		conn_schedule(c);
		return;
	}
	log_debug("%s: %s: connecting to %s port %d", __func__, c->name, ip,
		  c->lookup_port);
	conn_open_addr(c, ip, c->lookup_port);
}

/*
 * host: NULL (the unix socket), an address, or a name, resolved off the
 * loop first (within redis_timeout) since hiredis would block on it.
 */
static void
conn_open(struct fconn *c, const char *host, int port)
{
	struct feed *f = c->f;

	if (host == NULL || resolve_is_numeric(host)) {
		conn_open_addr(c, host, port);
		return;
	}
	c->lookup_port = port;
	c->lookup = resolve_start(f->loop, host, NULL, AF_UNSPEC,
				  (double)f->cfg->redis_timeout_ms / 1000.0,
				  on_lookup, c);
	if (c->lookup == NULL) {
		CONN_DOWN(c, "resolve: out of memory");
		conn_schedule(c);
	}
}

static void
on_resolved(void *arg, const char *host, int port, const char *err)
{
	struct fconn *c = arg;

	c->resolving = NULL;
	if (host == NULL) {
		CONN_DOWN(c, "no master address for %s: %s",
			  c->f->cfg->redis.master, err);
		conn_schedule(c);
		return;
	}
	log_debug("%s: %s: master %s is %s:%d", __func__, c->name,
		  c->f->cfg->redis.master, host, port);
	util_strlcpy(c->f->master_host, host, sizeof(c->f->master_host));
	c->f->master_port = port;
	conn_open(c, host, port);
}

static void
conn_start(struct fconn *c)
{
	const struct config_redis *addr = &c->f->cfg->redis;

	if (addr->nsentinels > 0)
		c->resolving = sentinel_resolve(c->f->loop, addr,
						c->f->cfg->redis_timeout_ms,
						c->name, on_resolved, c);
	else if (addr->unix_path != NULL)
		conn_open(c, NULL, 0);
	else
		conn_open(c, addr->host, addr->port);
}

static void
retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	conn_start(t->data);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct fconn *c = t->data;

	CONN_DOWN(c, "no answer within %" PRIu64 " ms, reconnecting",
		  c->f->cfg->redis_timeout_ms);
	conn_lost(c);
}

static void
conn_init(struct feed *f, struct fconn *c, const char *name,
	  void (*up)(struct fconn *))
{
	c->f = f;
	c->name = name;
	c->up = up;
	ev_init(&c->retry, retry_cb);
	c->retry.data = c;
	ev_init(&c->watchdog, watchdog_cb);
	c->watchdog.data = c;
}

static void
conn_stop(struct fconn *c)
{
	ev_timer_stop(c->f->loop, &c->retry);
	sentinel_cancel(c->resolving);
	c->resolving = NULL;
	conn_detach(c);
}

/*
 * Before the loop blocks: no raw connection may hold more than one record's
 * worth of unparsed bytes.
 */
static void
guard_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct feed *f = w->data;
	size_t limit = f->cfg->max_event_size + READ_SLACK;

	if (f->sub.ac != NULL && f->sub.ac->c.reader->len > limit) {
		f->st.oversized++;
		log_warnx("%s: subscriber: a message over %zu bytes, "
			  "reconnecting",
			  __func__, limit);
		if (conn_lost(&f->sub) == -1)
			return;
	}
	if (f->stream.ac != NULL && f->stream.ac->c.reader->len > limit) {
		f->st.oversized++;
		log_warnx("%s: stream: an entry over %zu bytes after %s, "
			  "reconnecting",
			  __func__, limit, f->last);
		/*
		 * The bound is on one string, so some entry is too large, but
		 * not necessarily the first one of the batch (whose entries
		 * before it are lost with the connection).  Read one entry at
		 * a time until the large one is reached, then skip it by id
		 * (looked up without its fields).
		 */
		if (f->count_one)
			f->probe = 1;
		f->count_one = 1;
		conn_lost(&f->stream);
	}
}

/* ---- Sentinel ------------------------------------------------------------ */

static void
on_master_check(void *arg, const char *host, int port, const char *err)
{
	struct feed *f = arg;

	f->master_q = NULL;
	if (host == NULL || f->master_host[0] == '\0' ||
	    (strcmp(host, f->master_host) == 0 && port == f->master_port))
		return; /* the connections' own resolving reports failures */
	log_warnx("%s: master %s moved from %s:%d to %s:%d, reconnecting",
		  __func__, f->cfg->redis.master, f->master_host,
		  f->master_port, host, port);
	util_strlcpy(f->master_host, host, sizeof(f->master_host));
	f->master_port = port;
	/*
	 * The command connection too: the canary published on the old master
	 * would never reach the subscriber on the new one, and a commit SET
	 * there would be lost when it resyncs as a replica.  Its pending
	 * callbacks get NULL now and retry later.
	 */
	redis_free(f->cmd);
	f->cmd = redis_new(f->loop, &f->cfg->redis, f->cfg->redis_timeout_ms,
			   "relay commands");
	if (f->stream.ac != NULL)
		conn_lost(&f->stream);
	if (f->sub.ac != NULL)
		conn_lost(&f->sub);
}

static void
master_check_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct feed *f = t->data;

	if (f->master_q != NULL)
		return;
	f->master_q =
	    sentinel_resolve(loop, &f->cfg->redis, f->cfg->redis_timeout_ms,
			     "master check", on_master_check, f);
}

/* ---- subscriber ---------------------------------------------------------- */

static void
canary_arrived(struct feed *f, const char *buf, size_t len)
{
	if (!f->canary_out || len != strlen(f->canary_token) ||
	    memcmp(buf, f->canary_token, len) != 0)
		return; /* a late token of a round already failed */
	f->canary_out = 0;
	ev_timer_stop(f->loop, &f->canary_deadline);
	f->st.canary_ok++;
}

static int
str_is(const redisReply *r, const char *s)
{
	size_t n = strlen(s);

	return r->type == REDIS_REPLY_STRING && r->len == n &&
	       memcmp(r->str, s, n) == 0;
}

static void
org_message(struct feed *f, const redisReply *chan, const redisReply *msg)
{
	size_t plen = sizeof(CHANNEL_PREFIX) - 1;
	char org[FEED_ORG_MAX + 1];
	size_t olen;

	if (chan->type != REDIS_REPLY_STRING || chan->len <= plen ||
	    chan->len - plen > FEED_ORG_MAX ||
	    memchr(chan->str + plen, '\0', chan->len - plen) != NULL) {
		f->st.channel_errors++;
		if (!f->org_logged)
			log_warnx("%s: a message on channel \"%.*s\": no "
				  "organization or one over %d bytes, skipped "
				  "(logged once)",
				  __func__,
				  (int)(chan->len < 200 ? chan->len : 200),
				  chan->str, FEED_ORG_MAX);
		f->org_logged = 1;
		return;
	}
	olen = chan->len - plen;
	memcpy(org, chan->str + plen, olen);
	org[olen] = '\0';
	f->st.messages++;
	deliver(f, org, msg->str, msg->len, NULL);
}

static void
on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fconn *c = ac->data;
	redisReply *r = reply;
	struct feed *f;

	if (c == NULL || r == NULL)
		return;
	f = c->f;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		CONN_DOWN(c, "unexpected reply%s%.*s",
			  r->type == REDIS_REPLY_ERROR ? ": " : "",
			  r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
			  r->type == REDIS_REPLY_ERROR ? r->str : "");
		conn_lost(c);
		return;
	}
	f->sub_rx = ev_now(f->loop);
	if (str_is(r->element[0], "message") &&
	    r->element[2]->type == REDIS_REPLY_STRING) {
		if (str_is(r->element[1], CHANNEL_GLOBAL)) {
			f->st.messages++;
			deliver(f, NULL, r->element[2]->str, r->element[2]->len,
				NULL);
		} else if (str_is(r->element[1], f->canary_chan))
			canary_arrived(f, r->element[2]->str,
				       r->element[2]->len);
	} else if (str_is(r->element[0], "pmessage") && r->elements == 4 &&
		   r->element[3]->type == REDIS_REPLY_STRING) {
		org_message(f, r->element[2], r->element[3]);
	} else if (str_is(r->element[0], "subscribe") ||
		   str_is(r->element[0], "psubscribe")) {
		if (++f->sub_acks < 3)
			return;
		ev_timer_stop(f->loop, &c->watchdog);
		conn_healthy(c);
		log_info("%s: subscribed to %s and %s", __func__,
			 CHANNEL_GLOBAL, PATTERN_ORGS);
		set_subscribed(f, 1);
	}
}

static void
sub_up(struct fconn *c)
{
	struct feed *f = c->f;

	f->sub_acks = 0;
	if (redisAsyncCommand(c->ac, on_sub_reply, NULL, "SUBSCRIBE %s %s",
			      CHANNEL_GLOBAL, f->canary_chan) != REDIS_OK ||
	    redisAsyncCommand(c->ac, on_sub_reply, NULL, "PSUBSCRIBE %s",
			      PATTERN_ORGS) != REDIS_OK) {
		/*
		 * Dropped from the watchdog, not here: we may be inside the
		 * connect callback, where hiredis must not free the context.
		 */
		CONN_DOWN(c, "cannot subscribe");
		conn_arm(c, 0.);
		return;
	}
	/* The confirmations are due within the timeout. */
	conn_arm(c, (double)f->cfg->redis_timeout_ms / 1000.0);
}

/* ---- canary -------------------------------------------------------------- */

static void
canary_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct feed *f = t->data;

	/* One round at a time; none while there is nothing to check. */
	if (f->canary_out || !f->subscribed || !redis_connected(f->cmd))
		return;
	snprintf(f->canary_token, sizeof(f->canary_token), "%" PRIu64,
		 ++f->canary_seq);
	if (redis_command(f->cmd, NULL, NULL, "PUBLISH %s %s", f->canary_chan,
			  f->canary_token) != 0)
		return;
	/*
	 * Whatever happens to the PUBLISH, the token must come back on the
	 * subscriber in time: a Redis that stopped answering fails the round
	 * just as a subscription that went silent does.
	 */
	f->canary_out = 1;
	f->canary_sent = ev_now(loop);
	f->st.canary_sent++;
	ev_timer_set(&f->canary_deadline,
		     (double)f->cfg->redis_timeout_ms / 1000.0, 0.);
	ev_timer_start(loop, &f->canary_deadline);
}

static void
canary_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct feed *f = t->data;

	if (!f->canary_out)
		return;
	/*
	 * Messages came since the canary went out: the subscription is alive
	 * and the canary is only queued behind them (a busy relay).  Give it
	 * another period rather than dropping a working subscription.
	 */
	if (f->sub_rx >= f->canary_sent) {
		f->canary_sent = ev_now(loop);
		ev_timer_set(t, (double)f->cfg->redis_timeout_ms / 1000.0, 0.);
		ev_timer_start(loop, t);
		return;
	}
	f->canary_out = 0;
	f->st.canary_failures++;
	log_warnx("%s: the canary did not come back within %" PRIu64
		  " ms, resubscribing",
		  __func__, f->cfg->redis_timeout_ms);
	if (f->sub.ac != NULL)
		conn_lost(&f->sub);
}

/* ---- stream -------------------------------------------------------------- */

static void
commit_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	commit_flush(t->data);
}

static void
on_commit_reply(struct redis *r, redisReply *rep, void *arg)
{
	struct feed *f = arg;

	if (f->closing)
		return; /* redis_free() from feed_free() */
	f->commit_inflight = 0;
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		/* Unless a newer id is waiting, send this one again. */
		if (f->commit_want[0] == '\0')
			util_strlcpy(f->commit_want, f->commit_last,
				     sizeof(f->commit_want));
		ev_timer_stop(f->loop, &f->commit_retry);
		ev_timer_set(&f->commit_retry, COMMIT_RETRY_S, 0.);
		ev_timer_start(f->loop, &f->commit_retry);
		return;
	}
	commit_flush(f);
}

static void
commit_flush(struct feed *f)
{
	if (f->commit_inflight || f->commit_want[0] == '\0')
		return;
	if (redis_command(f->cmd, on_commit_reply, f, "SET %s %s", f->last_key,
			  f->commit_want) != 0) {
		/* Not connected: try again shortly. */
		if (!ev_is_active(&f->commit_retry)) {
			ev_timer_set(&f->commit_retry, COMMIT_RETRY_S, 0.);
			ev_timer_start(f->loop, &f->commit_retry);
		}
		return;
	}
	f->commit_inflight = 1;
	f->commit_want[0] = '\0';
}

static void
commit(struct feed *f, const char *id)
{
	if (f->commit_last[0] != '\0' && stream_id_cmp(id, f->commit_last) <= 0)
		return; /* never move the persisted id backwards */
	util_strlcpy(f->commit_last, id, sizeof(f->commit_last));
	util_strlcpy(f->commit_want, id, sizeof(f->commit_want));
	commit_flush(f);
}

void
feed_stream_commit(struct feed *f, const char *id)
{
	size_t len;

	if (f == NULL || f->closing || !f->cfg->event_stream || id == NULL)
		return;
	len = strlen(id);
	if (!stream_id_valid(id, len)) {
		log_warnx("%s: invalid stream id \"%.*s\"", __func__,
			  (int)(len < 64 ? len : 64), id);
		return;
	}
	if (f->skip_to[0] != '\0' && strcmp(id, f->skip_after) == 0) {
		/* The skipped entry right after it goes too. */
		commit(f, f->skip_to);
		f->skip_to[0] = f->skip_after[0] = '\0';
		return;
	}
	if (f->skip_to[0] != '\0' && stream_id_cmp(id, f->skip_to) > 0)
		f->skip_to[0] = f->skip_after[0] = '\0'; /* covered */
	commit(f, id);
}

/* An entry the relay never sees: committed once everything before it is. */
static void
stream_skip(struct feed *f, const char *id, const char *why)
{
	f->st.stream_errors++;
	if (!f->entry_logged)
		log_warnx("%s: stream %s entry %s: %s, skipped (logged once)",
			  __func__, f->cfg->event_stream_key, id, why);
	f->entry_logged = 1;
	if (f->handed[0] == '\0' ||
	    stream_id_cmp(f->handed, f->commit_last) <= 0) {
		commit(f, id);
		return;
	}
	util_strlcpy(f->skip_after, f->handed, sizeof(f->skip_after));
	util_strlcpy(f->skip_to, id, sizeof(f->skip_to));
}

static void
stream_fail(struct fconn *c, const redisReply *r, const char *what)
{
	struct feed *f = c->f;

	if (r != NULL && r->type == REDIS_REPLY_ERROR) {
		f->st.stream_errors++;
		CONN_DOWN(c, "%s: %.*s", what, (int)r->len, r->str);
	} else
		CONN_DOWN(c, "%s: unexpected reply", what);
	/* Dropped, so that a broken stream is retried at the back-off pace. */
	conn_lost(c);
}

/* One entry: [id, [field, value, ...]].  -1: the feed was freed. */
static int
stream_entry(struct fconn *c, const redisReply *e)
{
	struct feed *f = c->f;
	const redisReply *id, *kv, *ev = NULL;
	char idbuf[FEED_STREAM_ID_MAX + 1];

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    !stream_id_valid(e->element[0]->str, e->element[0]->len))
		return 1;
	id = e->element[0];
	memcpy(f->last, id->str, id->len);
	f->last[id->len] = '\0';
	kv = e->element[1];
	if (kv->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i + 1 < kv->elements; i += 2)
			if (str_is(kv->element[i], "event") &&
			    kv->element[i + 1]->type == REDIS_REPLY_STRING) {
				ev = kv->element[i + 1];
				break;
			}
	if (ev == NULL) {
		stream_skip(f, f->last, "no \"event\" field");
		return 0;
	}
	f->st.stream_entries++;
	util_strlcpy(f->handed, f->last, sizeof(f->handed));
	/* A copy: the user may free the feed, and f->last with it. */
	memcpy(idbuf, f->last, sizeof(idbuf));
	return deliver(f, NULL, ev->str, ev->len, idbuf);
}

static void
on_xread(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fconn *c = ac->data;
	redisReply *r = reply, *s;
	struct feed *f;

	if (c == NULL || r == NULL)
		return;
	f = c->f;
	ev_timer_stop(f->loop, &c->watchdog);
	conn_healthy(c);
	if (r->type == REDIS_REPLY_NIL) { /* the block ran out */
		stream_read(c);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
	    (s = r->element[0])->type != REDIS_REPLY_ARRAY ||
	    s->elements != 2 || s->element[1]->type != REDIS_REPLY_ARRAY) {
		stream_fail(c, r, "XREAD");
		return;
	}
	for (size_t i = 0; i < s->element[1]->elements; i++) {
		int rc = stream_entry(c, s->element[1]->element[i]);

		if (rc == -1)
			return;
		if (rc == 1) {
			stream_fail(c, NULL, "XREAD entry");
			return;
		}
	}
	if (f->stream.ac == ac) /* not dropped by the user */
		stream_read(c);
}

static void
stream_send(struct fconn *c, redisCallbackFn *fn, double timeout,
	    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAsyncCommand(c->ac, fn, NULL, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		CONN_DOWN(c, "cannot send a command");
		conn_arm(c, 0.); /* maybe inside the connect callback */
		return;
	}
	conn_arm(c, timeout);
}

static void
stream_read(struct fconn *c)
{
	struct feed *f = c->f;

	stream_send(c, on_xread,
		    (f->block_ms + f->cfg->redis_timeout_ms) / 1000.0,
		    "XREAD COUNT %d BLOCK %u STREAMS %s %s",
		    f->count_one ? 1 : STREAM_COUNT, f->block_ms,
		    f->cfg->event_stream_key, f->last);
}

/*
 * The id of the first entry at or after ARGV[1], looked up without its
 * fields (an exclusive "(" range would need Redis 6.2).
 */
static const char probe_lua[] =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', 1)\n"
    "if #e == 0 then return false end\n"
    "return e[1][1]\n";

static void
on_probe(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fconn *c = ac->data;
	redisReply *r = reply;
	struct feed *f;

	if (c == NULL || r == NULL)
		return;
	f = c->f;
	ev_timer_stop(f->loop, &c->watchdog);
	if (r->type == REDIS_REPLY_STRING && stream_id_valid(r->str, r->len)) {
		memcpy(f->last, r->str, r->len);
		f->last[r->len] = '\0';
		stream_skip(f, f->last, "over the size bound");
	} else if (r->type != REDIS_REPLY_NIL) {
		stream_fail(c, r, "XRANGE");
		return;
	}
	f->probe = 0;
	f->count_one = 0; /* back to full batches */
	stream_read(c);
}

static void
stream_resume(struct fconn *c)
{
	struct feed *f = c->f;
	double t = (double)f->cfg->redis_timeout_ms / 1000.0;
	char next[FEED_STREAM_ID_MAX + 1];
	uint64_t ms, seq;

	f->have_last = 1;
	if (!f->probe) {
		stream_read(c);
		return;
	}
	/* The smallest id after f->last. */
	if (stream_id_parse(f->last, strlen(f->last), &ms, &seq) != 0)
		ms = seq = 0;
	if (seq == UINT64_MAX)
		snprintf(next, sizeof(next), "%" PRIu64 "-0", ms + 1);
	else
		snprintf(next, sizeof(next), "%" PRIu64 "-%" PRIu64, ms,
			 seq + 1);
	stream_send(c, on_probe, t, "EVAL %s 1 %s %s", probe_lua,
		    f->cfg->event_stream_key, next);
}

static void
on_first_set(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fconn *c = ac->data;
	redisReply *r = reply;

	if (c == NULL || r == NULL)
		return;
	ev_timer_stop(c->f->loop, &c->watchdog);
	if (r->type != REDIS_REPLY_STATUS) {
		stream_fail(c, r, "SET");
		return;
	}
	util_strlcpy(c->f->commit_last, c->f->last, sizeof(c->f->commit_last));
	log_info("%s: stream %s: first start, reading after %s", __func__,
		 c->f->cfg->event_stream_key, c->f->last);
	stream_resume(c);
}

static void
on_tail(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fconn *c = ac->data;
	redisReply *r = reply, *e;
	struct feed *f;

	if (c == NULL || r == NULL)
		return;
	f = c->f;
	ev_timer_stop(f->loop, &c->watchdog);
	if (r->type != REDIS_REPLY_ARRAY) {
		stream_fail(c, r, "XREVRANGE");
		return;
	}
	if (r->elements == 0) {
		util_strlcpy(f->last, "0-0", sizeof(f->last));
	} else if ((e = r->element[0])->type == REDIS_REPLY_ARRAY &&
		   e->elements >= 1 &&
		   e->element[0]->type == REDIS_REPLY_STRING &&
		   stream_id_valid(e->element[0]->str, e->element[0]->len)) {
		memcpy(f->last, e->element[0]->str, e->element[0]->len);
		f->last[e->element[0]->len] = '\0';
	} else {
		stream_fail(c, NULL, "XREVRANGE");
		return;
	}
	/* Persisted first, so that a restart starts from here too. */
	stream_send(c, on_first_set, (double)f->cfg->redis_timeout_ms / 1000.0,
		    "SET %s %s", f->last_key, f->last);
}

static void
on_last_id(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fconn *c = ac->data;
	redisReply *r = reply;
	struct feed *f;

	if (c == NULL || r == NULL)
		return;
	f = c->f;
	ev_timer_stop(f->loop, &c->watchdog);
	conn_healthy(c);
	if (r->type == REDIS_REPLY_NIL) {
		/* First start ever: from the stream's tail, not its history. */
		stream_send(
		    c, on_tail, (double)f->cfg->redis_timeout_ms / 1000.0,
		    "XREVRANGE %s + - COUNT 1", f->cfg->event_stream_key);
		return;
	}
	if (r->type != REDIS_REPLY_STRING || !stream_id_valid(r->str, r->len)) {
		stream_fail(c, r, "GET");
		return;
	}
	memcpy(f->last, r->str, r->len);
	f->last[r->len] = '\0';
	util_strlcpy(f->commit_last, f->last, sizeof(f->commit_last));
	log_info("%s: stream %s: reading after %s", __func__,
		 f->cfg->event_stream_key, f->last);
	stream_resume(c);
}

static void
stream_up(struct fconn *c)
{
	struct feed *f = c->f;

	/* After a reconnect: after the last entry read, from memory. */
	if (f->have_last) {
		stream_resume(c);
		return;
	}
	stream_send(c, on_last_id, (double)f->cfg->redis_timeout_ms / 1000.0,
		    "GET %s", f->last_key);
}

/* ---- the feed ------------------------------------------------------------ */

struct feed *
feed_new(struct ev_loop *loop, const struct config *cfg,
	 const struct feed_callbacks *cb, void *arg)
{
	struct feed *f = util_calloc(1, sizeof(*f));
	unsigned char rnd[8];
	uint64_t block;

	f->loop = loop;
	f->cfg = cfg;
	f->cb = *cb;
	f->arg = arg;
	/*
	 * A private channel per process and start: two relays (or an old and
	 * a new one) never take each other's tokens for their own.
	 */
	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd)) {
		uint64_t t = util_now_ms() ^ ((uint64_t)getpid() << 32);

		memcpy(rnd, &t, sizeof(rnd));
	}
	snprintf(f->canary_chan, sizeof(f->canary_chan),
		 "orchd:canary:%ld:%02x%02x%02x%02x%02x%02x%02x%02x",
		 (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
		 rnd[6], rnd[7]);
	/*
	 * XREAD BLOCK is a reply that takes its time on purpose; it must stay
	 * well under redis_timeout so a dead connection is still noticed.
	 */
	block = cfg->redis_timeout_ms / 2;
	f->block_ms = (unsigned)(block > 1000 ? 1000 : block);
	if (f->block_ms == 0)
		f->block_ms = 1;

	f->cmd = redis_new(loop, &cfg->redis, cfg->redis_timeout_ms,
			   "relay commands");
	conn_init(f, &f->sub, "subscriber", sub_up);
	conn_init(f, &f->stream, "stream", stream_up);
	ev_init(&f->canary_tick, canary_tick_cb);
	f->canary_tick.data = f;
	ev_init(&f->canary_deadline, canary_deadline_cb);
	f->canary_deadline.data = f;
	ev_init(&f->commit_retry, commit_retry_cb);
	f->commit_retry.data = f;
	ev_init(&f->master_check, master_check_cb);
	f->master_check.data = f;
	if (cfg->redis.nsentinels > 0) {
		ev_timer_set(&f->master_check, MASTER_CHECK_S, MASTER_CHECK_S);
		ev_timer_start(loop, &f->master_check);
	}
	ev_prepare_init(&f->guard, guard_cb);
	f->guard.data = f;
	ev_prepare_start(loop, &f->guard);

	conn_start(&f->sub);
	if (cfg->event_stream) {
		size_t n =
		    strlen(cfg->event_stream_key) + sizeof(LAST_ID_SUFFIX);

		f->last_key = util_malloc(n);
		snprintf(f->last_key, n, "%s%s", cfg->event_stream_key,
			 LAST_ID_SUFFIX);
		conn_start(&f->stream);
	}
	if (cfg->relay_canary_interval_ms > 0) {
		double iv = (double)cfg->relay_canary_interval_ms / 1000.0;

		ev_timer_set(&f->canary_tick, iv, iv);
		ev_timer_start(loop, &f->canary_tick);
	}
	return f;
}

void
feed_free(struct feed *f)
{
	if (f == NULL || f->closing)
		return;
	f->closing = 1;
	ev_prepare_stop(f->loop, &f->guard);
	ev_timer_stop(f->loop, &f->canary_tick);
	ev_timer_stop(f->loop, &f->canary_deadline);
	ev_timer_stop(f->loop, &f->commit_retry);
	ev_timer_stop(f->loop, &f->master_check);
	sentinel_cancel(f->master_q);
	f->master_q = NULL;
	conn_stop(&f->sub);
	conn_stop(&f->stream);
	/* Its callbacks (NULL replies, now) see f->closing. */
	redis_free(f->cmd);
	f->cmd = NULL;
	UTIL_FREE(f->last_key);
	if (f->busy == 0)
		free(f);
	/* else: the wrapper around the user callback frees it. */
}

int
feed_subscribed(const struct feed *f)
{
	return f != NULL && f->subscribed;
}

void
feed_get_stats(const struct feed *f, struct feed_stats *st)
{
	*st = f->st;
}
