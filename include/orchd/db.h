/*
 * db: an asynchronous PostgreSQL client for one libev loop (libpq in
 * non-blocking mode).
 *
 * A db holds a small set of connections to one server, each watched by the
 * loop (ev_io on PQsocket()).  Connecting (PQconnectStart/PQconnectPoll),
 * sending (PQsendQueryPrepared, PQflush) and reading (PQconsumeInput,
 * PQisBusy, PQgetResult) never wait.  Host names in "host=" are resolved
 * before every connect off the loop (resolve.h), within the timeout, and
 * handed to libpq as "hostaddr=" (dbaddr.h), since libpq would resolve them
 * with a blocking getaddrinfo().  libpq still reads local files when it
 * connects (~/.pgpass, the service file, TLS keys), which is cheap and not
 * network-bound; a host named only inside a service file is resolved by
 * libpq itself.
 *
 * Statements are prepared: the caller registers them with db_prepare(), and
 * every connection prepares all of them each time it (re)connects, before
 * it takes a query.  A statement whose PREPARE fails (a schema without the
 * table or view it reads) is logged; its queries then fail with DB_ERROR
 * (the server's "prepared statement does not exist") until the connection
 * is replaced, while the other statements keep working.
 *
 * A query is bounded by the timeout, counted from db_query(): queued or
 * sent, it is answered by then.  A connection whose query outlives the
 * timeout is dropped (PQcancel() would block the loop on a new connection)
 * and replaced; the query fails with DB_UNAVAILABLE.  Lost connections are
 * retried after 100 ms, doubling up to 1 s; a connect also gets the timeout.
 *
 * db_listen() adds one dedicated connection that runs LISTEN for the given
 * channels, again after every reconnect, and hands the notifications to the
 * caller.  It tells the caller when it has (re)started listening and when it
 * lost the connection, since notifications sent in between are lost.
 *
 * Callbacks.  A result callback is called exactly once for every query
 * db_query() accepted (returned 0), never from within db_query() itself.
 * Inside a callback the caller may call db_query(), db_prepare(),
 * db_listen(), db_ready(), db_get_stats() and db_free(); after db_free()
 * it must not touch the db again (the memory is released once the
 * outermost callback returns).  db_free() answers every query still queued
 * or in flight with DB_UNAVAILABLE, synchronously, before it returns.
 */
#ifndef ORCHD_DB_H
#define ORCHD_DB_H

#include <ev.h>
#include <stdint.h>

#include <libpq-fe.h>

struct db;

#define DB_MAX_PENDING 16384 /* queued queries (not yet sent); beyond: -1 */
#define DB_MAX_STATEMENTS 64  /* db_prepare() names */
#define DB_MAX_PARAMS 16      /* parameters of one statement */
#define DB_MAX_CHANNELS 8     /* db_listen() channels */
#define DB_NAME_MAX 63        /* bytes of a statement or channel name */

enum db_status {
	DB_OK = 0,      /* res: PGRES_TUPLES_OK or PGRES_COMMAND_OK */
	DB_UNAVAILABLE, /* no answer: not connected, timeout, connection lost,
			   server shutting down, db_free(); res is NULL */
	DB_ERROR,       /* the server's error: res holds it
			   (PQresultErrorField(res, PG_DIAG_SQLSTATE)) */
};

/*
 * res belongs to the db and is cleared when the callback returns (NULL with
 * DB_UNAVAILABLE).  Values are in text format (PQgetvalue()).
 */
typedef void (*db_result_fn)(struct db *db, enum db_status st,
			     const PGresult *res, void *arg);

enum db_notify_event {
	DB_NOTIFY,    /* a notification: channel and payload are set */
	DB_LISTENING, /* LISTEN is in effect (again): notifications sent
			 before this may have been missed */
	DB_LISTEN_LOST, /* the listening connection is gone (reconnecting) */
};

/* channel and payload: only for DB_NOTIFY, valid during the call. */
typedef void (*db_notify_fn)(struct db *db, enum db_notify_event ev,
			     const char *channel, const char *payload,
			     void *arg);

/*
 * A client for conninfo (copied), with nconns query connections (1..16)
 * and timeout_ms per query and connect.  who names it in log lines.  Does
 * not connect yet: register statements, then db_start().
 */
struct db *db_new(struct ev_loop *loop, const char *conninfo, unsigned nconns,
		  uint64_t timeout_ms, const char *who);
/* Start connecting (once). */
void db_start(struct db *db);
/* Close everything; queued and in-flight queries get DB_UNAVAILABLE. */
void db_free(struct db *db);

/*
 * Register a statement: name (1..DB_NAME_MAX bytes of [A-Za-z0-9_]), its
 * SQL with $1..$n, and n (0..DB_MAX_PARAMS).  Connections already up
 * prepare it before their next query.  Returns 0, or -1 (bad name, name
 * taken, too many statements, too many parameters).
 */
int db_prepare(struct db *db, const char *name, const char *sql,
	       int nparams);

/*
 * Run the prepared statement name with nparams text values (a NULL value
 * is SQL NULL; the values are copied).  Returns 0 when accepted (cb will be
 * called exactly once, later), -1 when refused, and cb is then NOT called:
 * errno is ENOTCONN (no connection is up: fail at once rather than wait
 * for a timeout), EAGAIN (DB_MAX_PENDING queries are already queued), or
 * EINVAL (unknown statement, wrong parameter count, NULL cb).
 */
int db_query(struct db *db, const char *name, int nparams,
	     const char *const *values, db_result_fn cb, void *arg);

/*
 * LISTEN on channel (1..DB_NAME_MAX bytes; added to the channels of the
 * one listening connection, which is opened by the first call).  fn gets
 * every notification of every channel and the DB_LISTENING and
 * DB_LISTEN_LOST events; the fn and arg of the first call are used.
 * Returns 0, or -1 (bad name, too many channels).
 */
int db_listen(struct db *db, const char *channel, db_notify_fn fn, void *arg);

/* 1 when at least one query connection is up (statements prepared). */
int db_ready(const struct db *db);
/* 1 when the listening connection is up and LISTEN in effect. */
int db_listening(const struct db *db);

struct db_stats {
	uint64_t connects;    /* connections established (listening one too) */
	uint64_t disconnects; /* established connections lost or dropped */
	uint64_t queries;     /* accepted by db_query() */
	uint64_t errors;      /* answered DB_ERROR */
	uint64_t timeouts;    /* answered DB_UNAVAILABLE for lack of time */
	uint64_t unavailable; /* answered DB_UNAVAILABLE, timeouts included */
	uint64_t refused;     /* refused by db_query() */
	uint64_t notifies;    /* notifications delivered */
};
void db_get_stats(const struct db *db, struct db_stats *st);
/*
 * fn(arg, db_ready(db)) after a connection comes up or goes down, for a
 * flag other processes read (the relay's admin status).  It must not call
 * back into the db.
 */
void db_set_ready_hook(struct db *db, void (*fn)(void *arg, int ready),
		       void *arg);

#endif
