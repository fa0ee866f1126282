/*
 * db: asynchronous PostgreSQL client on a libev loop (libpq, non-blocking).
 *
 * Each connection is a small state machine driven by its ev_io (the libpq
 * socket) and its ev_timer (the deadline of whatever it waits for, or the
 * reconnect back-off when it is down):
 *
 *   DOWN --timer--> [RESOLVING] --> CONNECTING --PQconnectPoll OK--> IDLE
 *   IDLE --> PREPARING (one PREPARE per statement not yet prepared here)
 *        --> LISTENING (the listening connection: LISTEN for new channels)
 *        --> BUSY (one query)            and back to IDLE on the result
 *   any --error, EOF, deadline--> DOWN (back-off 100 ms doubling to 1 s)
 *
 * A connection runs one command at a time, which keeps libpq's result
 * handling trivial and makes "this connection's query is late" mean one
 * query.  Queries wait in one FIFO for an idle connection; a queue timer
 * answers those whose deadline passes while they wait.
 *
 * A callback may free the db (see db.h).  The connections live inside the
 * db's allocation, so that a freed db is only released when the outermost
 * callback returns: every function that calls back checks db->dead after
 * the call and unwinds without touching anything (CALLED_BACK below).
 *
 * RESOLVING: a conninfo whose host list holds names has them resolved off
 * the loop (resolve.h) before every connect, all at once, each within the
 * timeout; libpq is then given the addresses as hostaddr (dbaddr.h) and
 * does no look-up of its own.  Nothing is cached between two connects: a
 * failover that moves a name is followed by the next reconnect.
 *
 * A failure is logged once per outage, not once per retry or connection:
 * with the back-off capped at 1 s a long outage would otherwise fill the
 * log.
 */
#include "config.h"

#include <sys/socket.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "orchd/db.h"
#include "orchd/dbaddr.h"
#include "orchd/log.h"
#include "orchd/resolve.h"
#include "orchd/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define MAX_CONNS 16
#define MSG_MAX 512

enum cstate {
	C_DOWN,       /* waiting for the reconnect timer */
	C_RESOLVING,  /* c->rs: host names being resolved */
	C_CONNECTING, /* PQconnectPoll() until OK or FAILED */
	C_IDLE,
	C_PREPARING, /* PREPARE of statement c->batch in flight */
	C_LISTENING, /* LISTEN of channels nlistened..c->batch in flight */
	C_BUSY,      /* c->req in flight */
};

struct dbreq {
	struct dbreq *next;
	int stmt;
	int nparams;
	char *values[DB_MAX_PARAMS];
	db_result_fn cb;
	void *arg;
	double deadline; /* ev_now() seconds */
};

struct stmt {
	char name[DB_NAME_MAX + 1];
	char *sql;
	int nparams;
};

struct dbconn;

/* One connect's look-ups (C_RESOLVING). */
struct dbresolve {
	struct dbconn *c;
	struct dbaddr a;
	int pending; /* look-ups not answered yet */
	struct resolve_req *rq[DBADDR_MAX_HOSTS];
	struct dblookup {
		struct dbresolve *rs;
		int i; /* host entry */
	} lk[DBADDR_MAX_HOSTS];
	char err[MSG_MAX]; /* the first failure */
};

struct dbconn {
	struct db *db;
	struct dbresolve *rs; /* C_RESOLVING */
	int listener;         /* the LISTEN connection, never given queries */
	int idx;
	PGconn *pg;
	enum cstate state;
	int fd; /* the io watcher's, -1: none */
	ev_io io;
	ev_timer timer;
	unsigned backoff_ms;
	struct dbreq *req; /* C_BUSY */
	int batch;
	int nprepared; /* statements PREPAREd (or tried) on this connection */
	int nlistened; /* channels LISTENed on this connection */
	int up;        /* connected since the last failure */
	PGresult *res; /* the result kept until the command completes */
};

struct db {
	struct ev_loop *loop;
	char *conninfo;
	char who[48];
	double timeout;
	int started;
	int dead;   /* db_free() was called */
	int in_api; /* in db_query() or db_start(): no callback now */
	int depth;  /* callbacks (and db_free) in progress */
	int down_logged;

	struct stmt stmts[DB_MAX_STATEMENTS];
	int nstmts;

	unsigned nconns;
	struct dbconn conns[MAX_CONNS];

	/* LISTEN: one more connection, opened by the first db_listen(). */
	char channels[DB_MAX_CHANNELS][DB_NAME_MAX + 1];
	int nchannels;
	db_notify_fn notify_fn;
	void *notify_arg;
	struct dbconn lconn;
	int lconn_used;

	struct dbreq *head, *tail; /* queued, oldest first */
	unsigned npending;
	ev_timer qtimer; /* the head's deadline */
	ev_timer kick;   /* idle connections: new statements or channels */

	struct db_stats st;
	/* Told when db_ready() may have changed (see db_set_ready_hook()). */
	void (*ready_fn)(void *arg, int ready);
	void *ready_arg;
};

/* After a callback: the db may be gone; unwind at once if so. */
#define CALLED_BACK(db) ((db)->dead)

static void conn_start(struct dbconn *c);
static int conn_next(struct dbconn *c);
static void conn_fail(struct dbconn *c, const char *fmt, ...)
    ORCHD_PRINTF(2, 3);

/* ---- helpers --------------------------------------------------------------
 */

/* libpq's messages end with a newline and may span lines: one log line. */
static void
oneline(const char *msg, char *buf, size_t len)
{
	size_t n = 0;

	if (msg == NULL)
		msg = "";
	for (; *msg != '\0' && n + 1 < len; msg++) {
		char ch = (unsigned char)*msg < 0x20 ? ' ' : *msg;

		/* "ERROR:  x\nLINE 1: ..." reads "ERROR: x LINE 1: ...". */
		if (ch == ' ' && (n == 0 || buf[n - 1] == ' '))
			continue;
		buf[n++] = ch;
	}
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
}

static const char *
conn_name(const struct dbconn *c, char *buf, size_t len)
{
	if (c->listener)
		snprintf(buf, len, "%s listen", c->db->who);
	else
		snprintf(buf, len, "%s #%d", c->db->who, c->idx);
	return buf;
}

static void
req_free(struct dbreq *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->values[i]);
	free(q);
}

/*
 * Every way into this file from the loop (the watchers' callbacks) holds
 * the db while it runs: a db_free() from a callback only marks it dead, and
 * the memory goes when the outermost holder lets go.
 */
static void
hold(struct db *db)
{
	db->depth++;
}

static void
release(struct db *db)
{
	if (--db->depth == 0 && db->dead)
		free(db);
}

/*
 * Hand q its answer, and free it.  Returns -1 when the callback freed the
 * db: the caller unwinds at once, touching nothing but locals.
 */
static int
deliver(struct db *db, struct dbreq *q, enum db_status st, const PGresult *res)
{
	if (st == DB_ERROR)
		db->st.errors++;
	else if (st == DB_UNAVAILABLE)
		db->st.unavailable++;
	q->cb(db, st, res, q->arg);
	req_free(q);
	return CALLED_BACK(db) ? -1 : 0;
}

static int
notify(struct db *db, enum db_notify_event ev, const char *channel,
       const char *payload)
{
	if (db->notify_fn == NULL)
		return 0;
	db->notify_fn(db, ev, channel, payload, db->notify_arg);
	return CALLED_BACK(db) ? -1 : 0;
}

/* Server notices (e.g. "relation already exists, skipping"): not stderr. */
static void
notice_cb(void *arg, const char *msg)
{
	struct dbconn *c = arg;
	char buf[MSG_MAX], name[80];

	oneline(msg, buf, sizeof(buf));
	log_debug("%s: %s: %s", __func__, conn_name(c, name, sizeof(name)),
		  buf);
}

/* ---- the pending queue ------------------------------------------------------
 */

static void
queue_arm(struct db *db)
{
	ev_timer_stop(db->loop, &db->qtimer);
	if (db->head == NULL)
		return;
	ev_timer_set(&db->qtimer,
		     db->head->deadline - ev_now(db->loop) + 0.0005, 0.);
	ev_timer_start(db->loop, &db->qtimer);
}

static struct dbreq *
queue_pop(struct db *db)
{
	struct dbreq *q = db->head;

	if (q == NULL)
		return NULL;
	db->head = q->next;
	if (db->head == NULL)
		db->tail = NULL;
	db->npending--;
	q->next = NULL;
	return q;
}

static void
queue_push_front(struct db *db, struct dbreq *q)
{
	q->next = db->head;
	db->head = q;
	if (db->tail == NULL)
		db->tail = q;
	db->npending++;
	queue_arm(db);
}

/* Queries that waited their whole timeout for a connection. */
static void
qtimer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct db *db = t->data;

	(void)revents;
	hold(db);
	while (db->head != NULL &&
	       (db->head->deadline <= ev_now(loop) || !db_ready(db))) {
		struct dbreq *q = queue_pop(db);

		if (q->deadline > ev_now(loop)) {
			/* No connection left (see conn_fail()). */
			if (deliver(db, q, DB_UNAVAILABLE, NULL) < 0)
				goto out;
			continue;
		}
		db->st.timeouts++;
		log_debug("%s: %s: %s: no connection free within %.0f ms",
			  __func__, db->who, db->stmts[q->stmt].name,
			  db->timeout * 1000.0);
		if (deliver(db, q, DB_UNAVAILABLE, NULL) < 0)
			goto out;
	}
	queue_arm(db);
out:
	release(db);
}

/* ---- one connection: watchers ----------------------------------------------
 */

/* Watch the libpq socket (it may change while connecting) for events. */
static void
conn_watch(struct dbconn *c, int events)
{
	struct ev_loop *loop = c->db->loop;
	int fd = PQsocket(c->pg);

	/*
	 * While connecting, libpq may close its socket and open another (next
	 * host, TLS or GSS retry) that gets the same number: set the watcher
	 * again so that the backend registers the new one.
	 */
	if (c->state != C_CONNECTING && fd == c->fd && ev_is_active(&c->io) &&
	    (c->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(loop, &c->io);
	c->fd = fd;
	if (fd < 0)
		return;
	ev_io_set(&c->io, fd, events);
	ev_io_start(loop, &c->io);
}

static void
conn_deadline(struct dbconn *c, double at)
{
	struct ev_loop *loop = c->db->loop;

	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, at - ev_now(loop) + 0.0005, 0.);
	ev_timer_start(loop, &c->timer);
}

/* Close the libpq connection; the state and any request are the caller's. */
static void
conn_close(struct dbconn *c)
{
	struct ev_loop *loop = c->db->loop;

	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->timer);
	c->fd = -1;
	if (c->res != NULL)
		PQclear(c->res);
	c->res = NULL;
	if (c->pg != NULL)
		PQfinish(c->pg);
	c->pg = NULL;
	if (c->rs != NULL) {
		for (int i = 0; i < DBADDR_MAX_HOSTS; i++)
			resolve_cancel(c->rs->rq[i]);
		dbaddr_free(&c->rs->a);
		free(c->rs);
		c->rs = NULL;
	}
}

static void
schedule_reconnect(struct dbconn *c)
{
	struct ev_loop *loop = c->db->loop;

	c->state = C_DOWN;
	c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS
			: c->backoff_ms >= BACKOFF_MAX_MS / 2
			    ? BACKOFF_MAX_MS
			    : c->backoff_ms * 2;
	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, c->backoff_ms / 1000.0, 0.);
	ev_timer_start(loop, &c->timer);
}

/*
 * The connection is unusable: close it, answer its query with
 * DB_UNAVAILABLE, tell the listener's owner, retry later.  The callbacks
 * may free the db: callers return right after (or check db->dead).
 */
static void
conn_fail(struct dbconn *c, const char *fmt, ...)
{
	struct db *db = c->db;
	struct dbreq *q = c->req;
	char msg[MSG_MAX], name[80];
	int was_up = c->up;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_name(c, name, sizeof(name));
	if (was_up) {
		db->st.disconnects++;
		log_warnx("%s: %s: %s", __func__, name, msg);
		db->down_logged = 1;
	} else if (!db->down_logged) {
		log_warnx("%s: %s: %s", __func__, name, msg);
		db->down_logged = 1;
	} else {
		log_debug("%s: %s: %s", __func__, name, msg);
	}
	c->req = NULL;
	c->up = 0;
	conn_close(c);
	schedule_reconnect(c);
	if (was_up && db->ready_fn != NULL)
		db->ready_fn(db->ready_arg, db_ready(db));
	if (q != NULL && deliver(db, q, DB_UNAVAILABLE, NULL) < 0)
		return;
	if (c->listener) {
		if (was_up)
			(void)notify(db, DB_LISTEN_LOST, NULL, NULL);
		return;
	}
	/*
	 * The last query connection gone: the queued queries would only wait
	 * for their timeout.  They fail now, as new ones are refused now.
	 */
	if (db_ready(db) || db->head == NULL)
		return;
	if (db->in_api) {
		/* Not from within db_query(): the queue timer does it. */
		ev_timer_stop(db->loop, &db->qtimer);
		ev_timer_set(&db->qtimer, 0., 0.);
		ev_timer_start(db->loop, &db->qtimer);
		return;
	}
	while ((q = queue_pop(db)) != NULL)
		if (deliver(db, q, DB_UNAVAILABLE, NULL) < 0)
			return;
	queue_arm(db);
}

/* ---- one connection: connecting ---------------------------------------------
 */

static void
conn_up(struct dbconn *c)
{
	struct db *db = c->db;
	char name[80];

	if (PQsetnonblocking(c->pg, 1) != 0) {
		char buf[MSG_MAX];

		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQsetnonblocking: %s", buf);
		return;
	}
	ev_timer_stop(db->loop, &c->timer);
	c->state = C_IDLE;
	c->up = 1;
	c->backoff_ms = 0;
	c->nprepared = 0;
	c->nlistened = 0;
	db->st.connects++;
	if (db->ready_fn != NULL)
		db->ready_fn(db->ready_arg, db_ready(db));
	conn_name(c, name, sizeof(name));
	if (db->down_logged)
		log_info("%s: %s: connected", __func__, name);
	else
		log_debug("%s: %s: connected", __func__, name);
	db->down_logged = 0;
	conn_watch(c, EV_READ);
	(void)conn_next(c);
}

static void
connect_poll(struct dbconn *c)
{
	char buf[MSG_MAX];

	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		conn_watch(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		conn_watch(c, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		conn_up(c);
		break;
	case PGRES_POLLING_FAILED:
	default:
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQconnectPoll: %s", buf);
		break;
	}
}

/*
 * Connect: with the conninfo as written, or with rs's keywords (the names
 * resolved).  rs is freed here.
 */
static void
conn_connect(struct dbconn *c, struct dbresolve *rs)
{
	struct db *db = c->db;
	char buf[MSG_MAX];

	if (rs != NULL) {
		c->pg = PQconnectStartParams(rs->a.keywords, rs->a.values, 0);
		dbaddr_free(&rs->a);
		free(rs);
	} else {
		c->pg = PQconnectStart(db->conninfo);
	}
	if (c->pg == NULL) {
		conn_fail(c, "PQconnectStart: out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQconnectStart: %s", buf);
		return;
	}
	PQsetNoticeProcessor(c->pg, notice_cb, c);
	c->state = C_CONNECTING;
	conn_deadline(c, ev_now(db->loop) + db->timeout);
	/* As if PQconnectPoll() had answered PGRES_POLLING_WRITING. */
	conn_watch(c, EV_WRITE);
}

/* Every look-up of this connect has answered: connect, or fail. */
static void
resolved_all(struct dbconn *c)
{
	struct dbresolve *rs = c->rs;
	char name[80];
	int n = dbaddr_build(&rs->a);

	if (n < 0) {
		/* conn_close() frees rs. */
		conn_fail(c, "%s", rs->err);
		return;
	}
	log_debug("%s: %s: host=%s hostaddr=%s", __func__,
		  conn_name(c, name, sizeof(name)), rs->a.hostlist,
		  rs->a.addrlist);
	c->rs = NULL;
	conn_connect(c, rs);
}

static void
on_resolved(void *arg, const struct resolve_result *res)
{
	struct dblookup *lk = arg;
	struct dbresolve *rs = lk->rs;
	struct dbconn *c = rs->c;
	struct db *db = c->db;
	char name[80];

	hold(db);
	rs->rq[lk->i] = NULL;
	dbaddr_set(&rs->a, lk->i, res);
	if (res->status != RESOLVE_OK) {
		/* Other names may still do (libpq would skip this one too). */
		log_debug("%s: %s: %s", __func__,
			  conn_name(c, name, sizeof(name)), res->err);
		if (rs->err[0] == '\0')
			util_strlcpy(rs->err, res->err, sizeof(rs->err));
	}
	if (--rs->pending == 0)
		resolved_all(c);
	release(db);
}

static void
conn_start(struct dbconn *c)
{
	struct db *db = c->db;
	struct dbresolve *rs = util_calloc(1, sizeof(*rs));
	char err[MSG_MAX];
	int n = dbaddr_parse(&rs->a, db->conninfo, err, sizeof(err));

	if (n <= 0) {
		dbaddr_free(&rs->a);
		free(rs);
		if (n < 0)
			conn_fail(c, "%s", err);
		else
			conn_connect(c, NULL);
		return;
	}
	/* All at once, each within the timeout: a connect waits for the
	 * slowest name, no longer than database_timeout. */
	rs->c = c;
	rs->pending = n;
	c->rs = rs;
	c->state = C_RESOLVING;
	for (int i = 0; i < rs->a.nhosts; i++) {
		if (!rs->a.hosts[i].name)
			continue;
		rs->lk[i].rs = rs;
		rs->lk[i].i = i;
		rs->rq[i] = resolve_start(db->loop, rs->a.hosts[i].host, NULL,
					  AF_UNSPEC, db->timeout, on_resolved,
					  &rs->lk[i]);
		if (rs->rq[i] == NULL) {
			/* Out of memory: this look-up answers nothing. */
			util_strlcpy(rs->err, "resolve: out of memory",
				     sizeof(rs->err));
			if (--rs->pending == 0) {
				resolved_all(c);
				return;
			}
		}
	}
}

/* ---- one connection: commands
 * ------------------------------------------------ */

/* After a PQsend*: push it out, watch for the answer. */
static int
conn_flush(struct dbconn *c)
{
	char buf[MSG_MAX];
	int r = PQflush(c->pg);

	if (r < 0) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQflush: %s", buf);
		return -1;
	}
	conn_watch(c, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return 0;
}

static int
send_prepare(struct dbconn *c)
{
	struct db *db = c->db;
	const struct stmt *s = &db->stmts[c->nprepared];
	char buf[MSG_MAX];

	if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQsendPrepare %s: %s", s->name, buf);
		return -1;
	}
	c->state = C_PREPARING;
	c->batch = c->nprepared;
	conn_deadline(c, ev_now(db->loop) + db->timeout);
	return conn_flush(c);
}

/* LISTEN for the channels not yet listened to here, in one round trip. */
static int
send_listen(struct dbconn *c)
{
	struct db *db = c->db;
	char *sql = NULL, buf[MSG_MAX];
	size_t len = 0;

	for (int i = c->nlistened; i < db->nchannels; i++) {
		char *id = PQescapeIdentifier(c->pg, db->channels[i],
					      strlen(db->channels[i]));

		if (id == NULL) {
			free(sql);
			oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
			conn_fail(c, "PQescapeIdentifier: %s", buf);
			return -1;
		}
		sql = util_realloc(sql, len + strlen(id) + 10);
		len += (size_t)sprintf(sql + len, "LISTEN %s;", id);
		PQfreemem(id);
	}
	if (!PQsendQuery(c->pg, sql)) {
		free(sql);
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQsendQuery LISTEN: %s", buf);
		return -1;
	}
	free(sql);
	c->state = C_LISTENING;
	c->batch = db->nchannels;
	conn_deadline(c, ev_now(db->loop) + db->timeout);
	return conn_flush(c);
}

/*
 * Send q on c.  On failure q goes back to the head of the queue, so that
 * db_query() never calls back: another connection or the queue timer
 * answers it.
 */
static int
send_query(struct dbconn *c, struct dbreq *q)
{
	struct db *db = c->db;
	char buf[MSG_MAX];
	int r;

	if (!PQsendQueryPrepared(c->pg, db->stmts[q->stmt].name, q->nparams,
				 (const char *const *)q->values, NULL, NULL,
				 0)) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		queue_push_front(db, q);
		conn_fail(c, "PQsendQueryPrepared %s: %s",
			  db->stmts[q->stmt].name, buf);
		return -1;
	}
	c->state = C_BUSY;
	c->req = q;
	conn_deadline(c, q->deadline);
	if ((r = PQflush(c->pg)) < 0) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		c->req = NULL;
		queue_push_front(db, q);
		conn_fail(c, "PQflush: %s", buf);
		return -1;
	}
	conn_watch(c, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return 0;
}

/*
 * An idle connection takes its next job: LISTEN for new channels, PREPARE
 * a new statement, or the oldest queued query.  Returns -1 when the
 * connection failed (and may have called back).
 */
static int
conn_next(struct dbconn *c)
{
	struct db *db = c->db;
	struct dbreq *q;

	if (c->state != C_IDLE || db->dead)
		return 0;
	if (c->listener) {
		if (c->nlistened < db->nchannels)
			return send_listen(c);
		ev_timer_stop(db->loop, &c->timer);
		return 0;
	}
	if (c->nprepared < db->nstmts)
		return send_prepare(c);
	if ((q = queue_pop(db)) == NULL) {
		ev_timer_stop(db->loop, &c->timer);
		return 0;
	}
	if (db->head == NULL)
		ev_timer_stop(db->loop, &db->qtimer);
	return send_query(c, q);
}

/* ---- one connection: results ----------------------------------------------
 */

static enum db_status
result_status(const struct dbconn *c, const PGresult *res)
{
	const char *state;

	if (res == NULL)
		return DB_UNAVAILABLE;
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:
		return DB_OK;
	default:
		break;
	}
	/*
	 * No SQLSTATE: libpq's own error (the connection broke).  57P: the
	 * server is shutting down or restarting; 08: connection exception;
	 * 53: out of resources.  None is an answer about the data.
	 */
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQstatus(c->pg) == CONNECTION_BAD || state == NULL ||
	    strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "53", 2) == 0)
		return DB_UNAVAILABLE;
	return DB_ERROR;
}

/* The command in flight on c has all its results (c->res, maybe NULL). */
static void
conn_complete(struct dbconn *c)
{
	struct db *db = c->db;
	PGresult *res = c->res;
	enum db_status st = result_status(c, res);
	char buf[MSG_MAX], name[80];
	struct dbreq *q;

	c->res = NULL;
	ev_timer_stop(db->loop, &c->timer);
	conn_name(c, name, sizeof(name));
	if (st == DB_UNAVAILABLE) {
		/* The answer is "going away": so is this connection. */
		oneline(res != NULL ? PQresultErrorMessage(res)
				    : PQerrorMessage(c->pg),
			buf, sizeof(buf));
		if (res != NULL)
			PQclear(res);
		conn_fail(c, "%s", buf);
		return;
	}
	switch (c->state) {
	case C_PREPARING:
		if (st != DB_OK) {
			oneline(PQresultErrorMessage(res), buf, sizeof(buf));
			log_warnx("%s: %s: PREPARE %s: %s", __func__, name,
				  db->stmts[c->batch].name, buf);
		}
		c->nprepared = c->batch + 1;
		c->state = C_IDLE;
		PQclear(res);
		(void)conn_next(c);
		return;
	case C_LISTENING:
		c->state = C_IDLE;
		if (st != DB_OK) {
			oneline(PQresultErrorMessage(res), buf, sizeof(buf));
			PQclear(res);
			conn_fail(c, "LISTEN: %s", buf);
			return;
		}
		PQclear(res);
		c->nlistened = c->batch;
		if (notify(db, DB_LISTENING, NULL, NULL) < 0)
			return;
		(void)conn_next(c);
		return;
	case C_BUSY:
		q = c->req;
		c->req = NULL;
		c->state = C_IDLE;
		if (st == DB_ERROR) {
			oneline(PQresultErrorMessage(res), buf, sizeof(buf));
			log_warnx("%s: %s: %s: %s", __func__, name,
				  db->stmts[q->stmt].name, buf);
		}
		conn_watch(c, EV_READ);
		if (deliver(db, q, st, res) < 0) {
			PQclear(res);
			return;
		}
		PQclear(res);
		(void)conn_next(c);
		return;
	default:
		if (res != NULL)
			PQclear(res);
		return;
	}
}

/* Hand the notifications read so far to the owner. */
static int
drain_notifies(struct dbconn *c)
{
	struct db *db = c->db;
	PGnotify *n;

	while ((n = PQnotifies(c->pg)) != NULL) {
		int r;

		db->st.notifies++;
		r = c->listener ? notify(db, DB_NOTIFY, n->relname, n->extra)
				: 0;
		PQfreemem(n);
		if (r < 0)
			return -1;
	}
	return 0;
}

static void
conn_read(struct dbconn *c)
{
	char buf[MSG_MAX];

	if (!PQconsumeInput(c->pg)) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "PQconsumeInput: %s", buf);
		return;
	}
	if (drain_notifies(c) < 0)
		return;
	if (c->state == C_IDLE) {
		/* Nothing asked: only a notice, or the server going away. */
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
			conn_fail(c, "connection lost: %s", buf);
		}
		return;
	}
	while (!PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);

		if (r == NULL) {
			conn_complete(c);
			return;
		}
		/* Keep the first error; otherwise the last result. */
		if (c->res != NULL &&
		    PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			if (c->res != NULL)
				PQclear(c->res);
			c->res = r;
		}
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
		conn_fail(c, "connection lost: %s", buf);
	}
}

static void
conn_io(struct dbconn *c, int revents)
{
	char buf[MSG_MAX];
	int r;

	if (c->state == C_CONNECTING) {
		connect_poll(c);
		return;
	}
	if (c->pg == NULL)
		return;
	if (revents & EV_WRITE) {
		if ((r = PQflush(c->pg)) < 0) {
			oneline(PQerrorMessage(c->pg), buf, sizeof(buf));
			conn_fail(c, "PQflush: %s", buf);
			return;
		}
		if (r == 0)
			conn_watch(c, EV_READ);
	}
	if (revents & EV_READ)
		conn_read(c);
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dbconn *c = w->data;
	struct db *db = c->db;

	(void)loop;
	hold(db);
	conn_io(c, revents);
	release(db);
}

static void
conn_timer(struct dbconn *c)
{
	struct db *db = c->db;
	double ms = db->timeout * 1000.0;

	switch (c->state) {
	case C_DOWN:
		conn_start(c);
		break;
	case C_RESOLVING: /* each look-up has its own timeout */
		break;
	case C_CONNECTING:
		conn_fail(c, "no connection within %.0f ms", ms);
		break;
	case C_PREPARING:
		conn_fail(c, "PREPARE %s: no answer within %.0f ms",
			  db->stmts[c->batch].name, ms);
		break;
	case C_LISTENING:
		conn_fail(c, "LISTEN: no answer within %.0f ms", ms);
		break;
	case C_BUSY:
		db->st.timeouts++;
		/* PQcancel() would connect, and wait, in the loop. */
		conn_fail(c, "%s: no answer within %.0f ms, reconnecting",
			  db->stmts[c->req->stmt].name, ms);
		break;
	case C_IDLE:
		break;
	}
}

static void
timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct dbconn *c = t->data;
	struct db *db = c->db;

	(void)loop;
	(void)revents;
	hold(db);
	conn_timer(c);
	release(db);
}

/* New statements or channels for the idle connections. */
static void
kick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct db *db = t->data;

	(void)loop;
	(void)revents;
	hold(db);
	for (unsigned i = 0; i < db->nconns && !db->dead; i++)
		(void)conn_next(&db->conns[i]);
	if (db->lconn_used && !db->dead)
		(void)conn_next(&db->lconn);
	release(db);
}

static void
kick(struct db *db)
{
	if (!db->started || ev_is_active(&db->kick))
		return;
	ev_timer_set(&db->kick, 0., 0.);
	ev_timer_start(db->loop, &db->kick);
}

/* ---- public API ------------------------------------------------------------
 */

static void
conn_init(struct db *db, struct dbconn *c, int idx, int listener)
{
	c->db = db;
	c->idx = idx;
	c->listener = listener;
	c->fd = -1;
	c->state = C_DOWN;
	ev_init(&c->io, io_cb);
	c->io.data = c;
	ev_init(&c->timer, timer_cb);
	c->timer.data = c;
}

struct db *
db_new(struct ev_loop *loop, const char *conninfo, unsigned nconns,
       uint64_t timeout_ms, const char *who)
{
	struct db *db = util_calloc(1, sizeof(*db));

	if (nconns < 1)
		nconns = 1;
	if (nconns > MAX_CONNS)
		nconns = MAX_CONNS;
	db->loop = loop;
	db->conninfo = util_strdup(conninfo);
	db->nconns = nconns;
	db->timeout = (double)timeout_ms / 1000.0;
	util_strlcpy(db->who, who, sizeof(db->who));
	for (unsigned i = 0; i < nconns; i++)
		conn_init(db, &db->conns[i], (int)i, 0);
	conn_init(db, &db->lconn, 0, 1);
	ev_init(&db->qtimer, qtimer_cb);
	db->qtimer.data = db;
	ev_init(&db->kick, kick_cb);
	db->kick.data = db;
	return db;
}

void
db_start(struct db *db)
{
	if (db->started || db->dead)
		return;
	db->started = 1;
	db->in_api = 1;
	for (unsigned i = 0; i < db->nconns; i++)
		conn_start(&db->conns[i]);
	if (db->lconn_used)
		conn_start(&db->lconn);
	db->in_api = 0;
}

void
db_free(struct db *db)
{
	struct dbreq *q;

	if (db == NULL || db->dead)
		return;
	db->dead = 1;
	hold(db);
	ev_timer_stop(db->loop, &db->qtimer);
	ev_timer_stop(db->loop, &db->kick);
	for (unsigned i = 0; i <= db->nconns; i++) {
		struct dbconn *c = i < db->nconns ? &db->conns[i] : &db->lconn;

		conn_close(c);
		c->state = C_DOWN;
		if ((q = c->req) != NULL) {
			c->req = NULL;
			(void)deliver(db, q, DB_UNAVAILABLE, NULL);
		}
	}
	while ((q = queue_pop(db)) != NULL)
		(void)deliver(db, q, DB_UNAVAILABLE, NULL);
	for (int i = 0; i < db->nstmts; i++)
		free(db->stmts[i].sql);
	/* Not a secret-free string: the conninfo may hold a password. */
	for (volatile char *v = db->conninfo; *v != '\0'; v++)
		*v = 0;
	free(db->conninfo);
	db->conninfo = NULL;
	release(db);
}

static int
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > DB_NAME_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

static int
find_stmt(const struct db *db, const char *name)
{
	for (int i = 0; i < db->nstmts; i++)
		if (strcmp(db->stmts[i].name, name) == 0)
			return i;
	return -1;
}

int
db_prepare(struct db *db, const char *name, const char *sql, int nparams)
{
	struct stmt *s;

	if (db->dead || !valid_name(name) || sql == NULL || nparams < 0 ||
	    nparams > DB_MAX_PARAMS || db->nstmts == DB_MAX_STATEMENTS ||
	    find_stmt(db, name) >= 0) {
		errno = EINVAL;
		return -1;
	}
	s = &db->stmts[db->nstmts++];
	util_strlcpy(s->name, name, sizeof(s->name));
	s->sql = util_strdup(sql);
	s->nparams = nparams;
	kick(db);
	return 0;
}

int
db_query(struct db *db, const char *name, int nparams,
	 const char *const *values, db_result_fn cb, void *arg)
{
	struct dbreq *q;
	int i;

	if (db->dead || !db_ready(db)) {
		db->st.refused += !db->dead;
		errno = ENOTCONN;
		return -1;
	}
	if (cb == NULL || (i = find_stmt(db, name)) < 0 ||
	    db->stmts[i].nparams != nparams) {
		db->st.refused++;
		errno = EINVAL;
		return -1;
	}
	if (db->npending >= DB_MAX_PENDING) {
		db->st.refused++;
		errno = EAGAIN;
		return -1;
	}
	q = util_calloc(1, sizeof(*q));
	q->stmt = i;
	q->nparams = nparams;
	for (int j = 0; j < nparams; j++)
		q->values[j] =
		    values[j] != NULL ? util_strdup(values[j]) : NULL;
	q->cb = cb;
	q->arg = arg;
	q->deadline = ev_now(db->loop) + db->timeout;
	if (db->tail != NULL)
		db->tail->next = q;
	else
		db->head = q;
	db->tail = q;
	db->npending++;
	db->st.queries++;
	if (!ev_is_active(&db->qtimer))
		queue_arm(db);
	/*
	 * An idle connection takes it now.  A failed send puts it back in
	 * the queue and calls nothing back (the connection is a query
	 * connection: no listener event either).
	 */
	db->in_api = 1;
	for (unsigned k = 0; k < db->nconns && db->head != NULL; k++)
		if (db->conns[k].state == C_IDLE)
			(void)conn_next(&db->conns[k]);
	db->in_api = 0;
	return 0;
}

int
db_listen(struct db *db, const char *channel, db_notify_fn fn, void *arg)
{
	if (db->dead || !valid_name(channel) ||
	    db->nchannels == DB_MAX_CHANNELS || fn == NULL) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < db->nchannels; i++)
		if (strcmp(db->channels[i], channel) == 0)
			return 0;
	util_strlcpy(db->channels[db->nchannels++], channel,
		     sizeof(db->channels[0]));
	if (db->notify_fn == NULL) {
		db->notify_fn = fn;
		db->notify_arg = arg;
	}
	if (!db->lconn_used) {
		db->lconn_used = 1;
		if (db->started)
			conn_start(&db->lconn);
	} else {
		kick(db);
	}
	return 0;
}

void
db_set_ready_hook(struct db *db, void (*fn)(void *arg, int ready), void *arg)
{
	db->ready_fn = fn;
	db->ready_arg = arg;
}

int
db_ready(const struct db *db)
{
	if (db == NULL || db->dead)
		return 0;
	for (unsigned i = 0; i < db->nconns; i++) {
		const struct dbconn *c = &db->conns[i];

		if (c->up && c->state >= C_IDLE)
			return 1;
	}
	return 0;
}

int
db_listening(const struct db *db)
{
	return db != NULL && !db->dead && db->lconn_used && db->lconn.up &&
	       db->nchannels > 0 && db->lconn.nlistened > 0;
}

void
db_get_stats(const struct db *db, struct db_stats *st)
{
	*st = db->st;
}
