/*
 * The PostgreSQL client (src/db.c) against a real server, started by each
 * test on a private unix socket and stopped by its teardown.
 *
 * PostgreSQL refuses to run as root, so when the suite runs as root (CI,
 * scripts/test) initdb and postgres run as "nobody": the temp dir is
 * chowned to it and the child drops its ids before exec.  The client side
 * stays root, which may use any socket.
 *
 * The cluster is made once, by the runner process (unchecked fixture), and
 * removed by it even when a test fails; each test starts the server in its
 * own process (checked fixture), applies etc/schema.sql and empties the
 * tables.  With CK_FORK a failed test's process exits at once and Check
 * kills its process group, the postmaster and its backends included (they
 * stay in the group: no setsid); with CK_FORK=no the checked teardown runs
 * after a failure.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "check_run.h"
#include "orchd/db.h"
#include "orchd/log.h"
#include "orchd/util.h"

#ifndef PG_BINDIR
#define PG_BINDIR "/usr/lib/postgresql/15/bin"
#endif
#define SCHEMA TEST_SRCDIR "/../etc/schema.sql"

static char dir[] = "/tmp/orchd-db-test-XXXXXX";
static char datadir[300];
static char conninfo[400];
static char pgbin[256];
static uid_t run_uid;
static gid_t run_gid;
static int drop_ids; /* running as root: run the server as nobody */
static pid_t server;
static struct ev_loop *loop;
static PGconn *sc; /* synchronous client for set-up and inspection */

/* ---- fixtures ----------------------------------------------------------- */

static void
find_pgbin(void)
{
	const char *env = getenv("ORCHD_PG_BINDIR");
	char probe[300];

	snprintf(pgbin, sizeof(pgbin), "%s", env ? env : PG_BINDIR);
	snprintf(probe, sizeof(probe), "%s/postgres", pgbin);
	if (access(probe, X_OK) != 0) {
		fprintf(stderr, "check_db: %s not found (set ORCHD_PG_BINDIR)\n",
			probe);
		abort();
	}
}

/* In a child: become the server's user, then exec argv. */
static void
exec_as_server_user(char *const argv[])
{
	if (drop_ids && (setgroups(0, NULL) != 0 || setgid(run_gid) != 0 ||
			 setuid(run_uid) != 0)) {
		perror("check_db: dropping privileges");
		_exit(126);
	}
	if (chdir(dir) != 0)
		_exit(126);
	setenv("LC_ALL", "C", 1);
	execv(argv[0], argv);
	perror(argv[0]);
	_exit(127);
}

/* Runner process: an empty cluster in a fresh temp dir. */
static void
make_cluster(void)
{
	char initdb[300], log[350];
	int status;
	pid_t pid;

	find_pgbin();
	strcpy(dir, "/tmp/orchd-db-test-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	drop_ids = geteuid() == 0;
	if (drop_ids) {
		struct passwd *pw = getpwnam("nobody");

		if (pw == NULL) {
			fprintf(stderr, "check_db: no user nobody\n");
			abort();
		}
		run_uid = pw->pw_uid;
		run_gid = pw->pw_gid;
		if (chown(dir, run_uid, run_gid) != 0) {
			perror("chown");
			abort();
		}
	}
	snprintf(datadir, sizeof(datadir), "%s/data", dir);
	snprintf(initdb, sizeof(initdb), "%s/initdb", pgbin);
	snprintf(log, sizeof(log), "%s/initdb.log", dir);
	snprintf(conninfo, sizeof(conninfo),
		 "host=%s port=5432 dbname=postgres user=orchd "
		 "application_name=check_db",
		 dir);
	pid = fork();
	if (pid == 0) {
		char *argv[] = {initdb, "-D", datadir, "-U", "orchd",
				"-A", "trust", "--no-sync", "-E", "UTF8",
				"--locale=C", NULL};

		if (freopen(log, "w", stdout) == NULL ||
		    dup2(fileno(stdout), 2) < 0)
			_exit(126);
		exec_as_server_user(argv);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char cmd[400];

		fprintf(stderr, "check_db: initdb failed; its log:\n");
		snprintf(cmd, sizeof(cmd), "cat %s >&2", log);
		if (system(cmd) != 0)
			fprintf(stderr, "(no log)\n");
		abort();
	}
}

static void
remove_cluster(void)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void
start_server(void)
{
	char postgres[300], log[350], sock[350];

	snprintf(postgres, sizeof(postgres), "%s/postgres", pgbin);
	snprintf(log, sizeof(log), "%s/postgres.log", dir);
	snprintf(sock, sizeof(sock), "%s/.s.PGSQL.5432", dir);
	unlink(sock);
	/*
	 * A failed test's server was killed with its process group, but in a
	 * container nobody may reap it: its pid would look alive to the lock
	 * files.  No server of ours runs now; the locks are stale.
	 */
	snprintf(log, sizeof(log), "%s/.s.PGSQL.5432.lock", dir);
	unlink(log);
	snprintf(log, sizeof(log), "%s/postmaster.pid", datadir);
	unlink(log);
	snprintf(log, sizeof(log), "%s/postgres.log", dir);
	server = fork();
	ck_assert_int_ge(server, 0);
	if (server == 0) {
		char *argv[] = {postgres, "-D", datadir, "-k", dir,
				"-c", "listen_addresses=",
				"-c", "fsync=off",
				"-c", "synchronous_commit=off",
				"-c", "full_page_writes=off",
				"-c", "max_connections=40",
				"-c", "shared_buffers=16MB",
				NULL};
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		exec_as_server_user(argv);
	}
	for (int i = 0; i < 400; i++) {
		if (PQping(conninfo) == PQPING_OK)
			return;
		if (waitpid(server, NULL, WNOHANG) == server) {
			server = 0;
			ck_abort_msg("postgres exited; see %s", log);
		}
		usleep(25000);
	}
	ck_abort_msg("postgres did not start within 10 s; see %s", log);
}

/* SIGINT: fast shutdown, backends end their sessions with 57P01. */
static void
stop_server(void)
{
	if (server > 0) {
		kill(server, SIGINT);
		waitpid(server, NULL, 0);
		server = 0;
	}
}

static void
sql(const char *q)
{
	PGresult *r = PQexec(sc, q);
	ExecStatusType st = PQresultStatus(r);

	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK,
		      "%s: %s", q, PQresultErrorMessage(r));
	PQclear(r);
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(fp != NULL, "cannot open %s", path);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void
apply_schema(void)
{
	char *text = slurp(SCHEMA);

	sql(text);
	free(text);
}

static void
sync_connect(void)
{
	sc = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(sc) == CONNECTION_OK, "connect: %s",
		      PQerrorMessage(sc));
	sql("SET client_min_messages = warning");
}

static void
setup(void)
{
	start_server();
	loop = ev_loop_new(EVFLAG_AUTO);
	sync_connect();
	apply_schema();
	sql("TRUNCATE channel_members, daemon_credentials, vps, users, "
	    "organizations");
}

static void
teardown(void)
{
	if (sc != NULL)
		PQfinish(sc);
	sc = NULL;
	ev_loop_destroy(loop);
	stop_server();
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

/* What one query got. */
struct res {
	int done;
	int calls;
	enum db_status st;
	int ntuples;
	char v[4][64];
	int null[4];
	char sqlstate[8];
	double at;
};

static void
on_result(struct db *db, enum db_status st, const PGresult *res, void *arg)
{
	struct res *r = arg;

	(void)db;
	r->calls++;
	r->done = 1;
	r->st = st;
	r->at = ev_time();
	if (st == DB_UNAVAILABLE) {
		ck_assert_ptr_null(res);
		return;
	}
	ck_assert_ptr_nonnull(res);
	if (st == DB_ERROR) {
		const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", s ? s : "");
		return;
	}
	r->ntuples = PQntuples(res);
	for (int i = 0; i < PQnfields(res) && i < 4 && r->ntuples > 0; i++) {
		r->null[i] = PQgetisnull(res, 0, i);
		snprintf(r->v[i], sizeof(r->v[i]), "%s", PQgetvalue(res, 0, i));
	}
}

static struct db *
new_db(unsigned n, uint64_t timeout_ms)
{
	struct db *db = db_new(loop, conninfo, n, timeout_ms, "test");

	ck_assert_ptr_nonnull(db);
	return db;
}

static void
wait_ready(struct db *db, double secs)
{
	double end = ev_time() + secs;

	while (!db_ready(db) && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(500);
	}
	ck_assert_msg(db_ready(db), "client did not connect");
}

/* Until the client has made want connections (all of a pool, say). */
static void
wait_connects(struct db *db, uint64_t want, double secs)
{
	double end = ev_time() + secs;
	struct db_stats st;

	db_get_stats(db, &st);
	while (st.connects < want && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(500);
		db_get_stats(db, &st);
	}
	ck_assert_msg(st.connects >= want, "%llu of %llu connections made",
		      (unsigned long long)st.connects,
		      (unsigned long long)want);
}

/* Run a query to its end; a refused one counts as DB_UNAVAILABLE. */
static void
query(struct db *db, const char *name, int n, const char *const *v,
      struct res *r, double secs)
{
	memset(r, 0, sizeof(*r));
	if (db_query(db, name, n, v, on_result, r) < 0) {
		r->done = 1;
		r->calls = 1;
		r->st = DB_UNAVAILABLE;
		r->at = ev_time();
		return;
	}
	run_until(&r->done, secs);
	ck_assert_msg(r->done, "query %s did not complete in %.1f s", name,
		      secs);
}

/* Notifications and listener events, as received. */
struct notes {
	int n, listening, lost;
	char channel[8][64];
	char payload[8][256];
};

static void
on_notify(struct db *db, enum db_notify_event ev, const char *channel,
	  const char *payload, void *arg)
{
	struct notes *nt = arg;

	(void)db;
	switch (ev) {
	case DB_LISTENING:
		nt->listening++;
		break;
	case DB_LISTEN_LOST:
		nt->lost++;
		break;
	case DB_NOTIFY:
		ck_assert_ptr_nonnull(channel);
		ck_assert_ptr_nonnull(payload);
		if (nt->n < 8) {
			snprintf(nt->channel[nt->n], sizeof(nt->channel[0]),
				 "%s", channel);
			snprintf(nt->payload[nt->n], sizeof(nt->payload[0]),
				 "%s", payload);
		}
		nt->n++;
		break;
	}
}

/* Until *counter reaches want, within secs. */
static void
run_until_count(const int *counter, int want, double secs)
{
	double end = ev_time() + secs;

	while (*counter < want && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(200);
	}
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_query)
{
	struct db *db = new_db(2, 2000);
	const char *v[3] = {"2", "40", NULL};
	const char *id[1] = {"u-1"};
	struct db_stats st;
	struct res r;

	ck_assert_int_eq(db_prepare(db, "add",
				    "SELECT $1::int + $2::int, $3::text IS NULL",
				    3),
			 0);
	ck_assert_int_eq(db_prepare(db, "user_status",
				    "SELECT status FROM users WHERE id = $1",
				    1),
			 0);
	/* Names are identifiers; each once; parameters bounded. */
	ck_assert_int_eq(db_prepare(db, "add", "SELECT 1", 0), -1);
	ck_assert_int_eq(db_prepare(db, "bad name", "SELECT 1", 0), -1);
	ck_assert_int_eq(db_prepare(db, "", "SELECT 1", 0), -1);
	ck_assert_int_eq(db_prepare(db, "many", "SELECT 1", DB_MAX_PARAMS + 1),
			 -1);
	db_start(db);
	wait_ready(db, 10);
	wait_connects(db, 2, 10);

	query(db, "add", 3, v, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.ntuples, 1);
	ck_assert_str_eq(r.v[0], "42");
	ck_assert_str_eq(r.v[1], "t");

	query(db, "user_status", 1, id, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	ck_assert_int_eq(r.ntuples, 0);
	sql("INSERT INTO users (id, status) VALUES ('u-1', 'ACTIVE')");
	query(db, "user_status", 1, id, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	ck_assert_int_eq(r.ntuples, 1);
	ck_assert_str_eq(r.v[0], "ACTIVE");

	/* Refused at once, the callback never called. */
	errno = 0;
	ck_assert_int_eq(db_query(db, "nope", 0, NULL, on_result, &r), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(db_query(db, "add", 2, v, on_result, &r), -1);
	ck_assert_int_eq(errno, EINVAL);

	/* A statement registered once connected is prepared before use. */
	ck_assert_int_eq(db_prepare(db, "late", "SELECT 'late:' || $1", 1), 0);
	query(db, "late", 1, id, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	ck_assert_str_eq(r.v[0], "late:u-1");

	db_get_stats(db, &st);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_uint_eq(st.disconnects, 0);
	ck_assert_uint_eq(st.queries, 4);
	ck_assert_uint_eq(st.refused, 2);
	ck_assert_uint_eq(st.errors, 0);
	db_free(db);
}
END_TEST

START_TEST(test_server_error)
{
	struct db *db = new_db(1, 2000);
	const char *zero[1] = {"0"}, *one[1] = {"1"}, *word[1] = {"x"};
	struct db_stats st;
	struct res r;

	ck_assert_int_eq(db_prepare(db, "div", "SELECT 10 / $1::int", 1), 0);
	/* A statement the server refuses: logged, its queries fail. */
	ck_assert_int_eq(db_prepare(db, "broken",
				    "SELECT * FROM no_such_table", 0),
			 0);
	db_start(db);
	wait_ready(db, 10);

	query(db, "div", 1, zero, &r, 10);
	ck_assert_int_eq(r.st, DB_ERROR);
	ck_assert_str_eq(r.sqlstate, "22012"); /* division_by_zero */
	query(db, "div", 1, word, &r, 10);
	ck_assert_int_eq(r.st, DB_ERROR);
	ck_assert_str_eq(r.sqlstate, "22P02"); /* invalid_text_representation */
	/* The same (only) connection goes on. */
	query(db, "div", 1, one, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	ck_assert_str_eq(r.v[0], "10");
	query(db, "broken", 0, NULL, &r, 10);
	ck_assert_int_eq(r.st, DB_ERROR);
	ck_assert_str_eq(r.sqlstate, "26000"); /* no such prepared statement */
	query(db, "div", 1, one, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);

	db_get_stats(db, &st);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_uint_eq(st.disconnects, 0);
	ck_assert_uint_eq(st.errors, 3);
	db_free(db);
}
END_TEST

START_TEST(test_timeout)
{
	struct db *db = new_db(1, 300);
	const char *two[1] = {"2"}, *none[1] = {"0"};
	struct db_stats st;
	struct res r;
	double t0;

	ck_assert_int_eq(db_prepare(db, "sleep", "SELECT pg_sleep($1)", 1), 0);
	db_start(db);
	wait_ready(db, 10);

	t0 = ev_time();
	query(db, "sleep", 1, two, &r, 10);
	ck_assert_int_eq(r.st, DB_UNAVAILABLE);
	/* At the 300 ms timeout, not after the 2 s the query asked for;
	 * the upper bound leaves room for a loaded machine. */
	ck_assert_msg(r.at - t0 >= 0.28 && r.at - t0 < 1.5,
		      "answered after %.3f s", r.at - t0);
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_uint_eq(st.disconnects, 1);

	/* Reconnected (100 ms back-off), statements prepared again. */
	wait_ready(db, 10);
	query(db, "sleep", 1, none, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.connects, 2);
	db_free(db);
}
END_TEST

START_TEST(test_queue_timeout)
{
	struct db *db = new_db(1, 400);
	const char *one[1] = {"1"}, *none[1] = {"0"};
	struct res a, b;

	ck_assert_int_eq(db_prepare(db, "sleep", "SELECT pg_sleep($1)", 1), 0);
	db_start(db);
	wait_ready(db, 10);
	/* b waits behind a for the only connection: both time out. */
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(db_query(db, "sleep", 1, one, on_result, &a), 0);
	ck_assert_int_eq(db_query(db, "sleep", 1, none, on_result, &b), 0);
	ck_assert_int_eq(a.calls + b.calls, 0); /* never from db_query() */
	run_until(&b.done, 2);
	run_until(&a.done, 2);
	ck_assert_int_eq(a.st, DB_UNAVAILABLE);
	ck_assert_int_eq(b.st, DB_UNAVAILABLE);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(b.calls, 1);
	/* b went with a's connection, the only one: no waiting for more. */
	/* Waiting for a new connection would take the 100 ms back-off. */
	ck_assert_msg(b.at - a.at < 0.09, "b answered %.3f s after a",
		      b.at - a.at);
	db_free(db);
}
END_TEST

START_TEST(test_server_restart)
{
	struct db *db = new_db(2, 2000);
	const char *five[1] = {"5"}, *none[1] = {"0"};
	struct db_stats st;
	struct res inflight, r;
	double t0;

	ck_assert_int_eq(db_prepare(db, "sleep", "SELECT pg_sleep($1)", 1), 0);
	db_start(db);
	wait_ready(db, 10);

	/* A query in flight when the server stops fails at once. */
	memset(&inflight, 0, sizeof(inflight));
	ck_assert_int_eq(db_query(db, "sleep", 1, five, on_result, &inflight),
			 0);
	run_for(0.1);
	PQfinish(sc);
	sc = NULL;
	t0 = ev_time();
	stop_server();
	run_until(&inflight.done, 5);
	ck_assert_int_eq(inflight.st, DB_UNAVAILABLE);
	/* At once, not at the 2 s query timeout (1.9 s after t0). */
	ck_assert_msg(inflight.at - t0 < 1.6, "answered after %.3f s",
		      inflight.at - t0);

	/* Down: refused at once rather than after the timeout. */
	run_for(0.2);
	ck_assert_int_eq(db_ready(db), 0);
	errno = 0;
	ck_assert_int_eq(db_query(db, "sleep", 1, none, on_result, &r), -1);
	ck_assert_int_eq(errno, ENOTCONN);
	run_for(1.0); /* let the back-off grow to its cap */

	start_server();
	t0 = ev_time(); /* the back-off is capped at 1 s */
	wait_ready(db, 10);
	query(db, "sleep", 1, none, &r, 10);
	ck_assert_int_eq(r.st, DB_OK);
	ck_assert_msg(ev_time() - t0 < 2.5, "working again after %.3f s",
		      ev_time() - t0);
	db_get_stats(db, &st);
	ck_assert_uint_ge(st.disconnects, 2);
	ck_assert_uint_ge(st.connects, 3);
	sync_connect();
	db_free(db);
}
END_TEST

START_TEST(test_listen)
{
	struct db *db = new_db(1, 2000);
	struct notes nt;
	PGresult *res;

	memset(&nt, 0, sizeof(nt));
	ck_assert_int_eq(db_listen(db, "orchd_test", on_notify, &nt), 0);
	ck_assert_int_eq(db_listen(db, "bad-name", on_notify, &nt), -1);
	db_start(db);
	run_until_count(&nt.listening, 1, 5);
	ck_assert_int_eq(nt.listening, 1);
	ck_assert(db_listening(db));

	sql("SELECT pg_notify('orchd_test', 'hello')");
	sql("NOTIFY other_channel, 'not for us'");
	run_until_count(&nt.n, 1, 10);
	run_for(0.1);
	ck_assert_int_eq(nt.n, 1);
	ck_assert_str_eq(nt.channel[0], "orchd_test");
	ck_assert_str_eq(nt.payload[0], "hello");

	/* A second channel on the same connection. */
	ck_assert_int_eq(db_listen(db, "orchd_more", on_notify, &nt), 0);
	run_until_count(&nt.listening, 2, 10);
	sql("NOTIFY orchd_more, 'more'");
	run_until_count(&nt.n, 2, 10);
	ck_assert_str_eq(nt.channel[1], "orchd_more");
	ck_assert_str_eq(nt.payload[1], "more");

	/* Kill the listening backend: lost, then listening again. */
	res = PQexec(sc, "SELECT pg_terminate_backend(pid) FROM "
			 "pg_stat_activity WHERE query LIKE 'LISTEN%'");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(res), 1);
	PQclear(res);
	run_until_count(&nt.lost, 1, 10);
	ck_assert_int_eq(nt.lost, 1);
	ck_assert(!db_listening(db));
	run_until_count(&nt.listening, 3, 10);
	ck_assert_int_eq(nt.listening, 3);
	sql("SELECT pg_notify('orchd_test', 'again')");
	sql("SELECT pg_notify('orchd_more', 'more again')");
	run_until_count(&nt.n, 4, 10);
	ck_assert_int_eq(nt.n, 4);
	ck_assert_str_eq(nt.payload[2], "again");
	ck_assert_str_eq(nt.payload[3], "more again");
	db_free(db);
}
END_TEST

static int
has_note(const struct notes *nt, const char *a, const char *b)
{
	for (int i = 0; i < nt->n && i < 8; i++)
		if (strstr(nt->payload[i], a) != NULL &&
		    (b == NULL || strstr(nt->payload[i], b) != NULL))
			return 1;
	return 0;
}

START_TEST(test_schema)
{
	struct db *db = new_db(1, 2000);
	struct notes nt;

	/* Applied by setup() already: a second time changes nothing. */
	apply_schema();
	apply_schema();

	memset(&nt, 0, sizeof(nt));
	ck_assert_int_eq(db_listen(db, "orchd_directory", on_notify, &nt), 0);
	db_start(db);
	run_until_count(&nt.listening, 1, 5);

	/* Inserting users and vps tells nothing: nobody cached them yet. */
	sql("INSERT INTO organizations (id, slug) VALUES ('o-1', 'acme')");
	sql("INSERT INTO users (id, status) VALUES ('u-1', 'ACTIVE')");
	sql("INSERT INTO vps (id, user_id, organization_id, workspace_id, "
	    "status) VALUES ('v-1', 'u-1', 'o-1', 'w-1', 'ACTIVE')");
	sql("INSERT INTO daemon_credentials (api_key, api_secret_hash, vp_id) "
	    "VALUES ('k-1', 'hash', 'v-1')");
	/* An UPDATE that changes nothing orchd reads is silent too. */
	sql("UPDATE users SET status = 'ACTIVE' WHERE id = 'u-1'");
	run_for(0.2);
	ck_assert_int_eq(nt.n, 0);

	sql("UPDATE users SET status = 'SUSPENDED' WHERE id = 'u-1'");
	run_until_count(&nt.n, 1, 10);
	ck_assert_int_eq(nt.n, 1);
	ck_assert_str_eq(nt.channel[0], "orchd_directory");
	ck_assert_str_eq(nt.payload[0], "{\"table\" : \"users\", \"op\" : "
					"\"UPDATE\", \"id\" : \"u-1\"}");

	sql("UPDATE vps SET status = 'DISABLED' WHERE id = 'v-1'");
	run_until_count(&nt.n, 2, 10);
	ck_assert(has_note(&nt, "\"vps\"", "\"v-1\""));

	sql("INSERT INTO channel_members (channel_id, user_id) "
	    "VALUES ('c-1', 'u-1')");
	run_until_count(&nt.n, 3, 10);
	ck_assert(has_note(&nt, "\"channel_id\" : \"c-1\"",
			   "\"user_id\" : \"u-1\""));
	ck_assert(has_note(&nt, "\"INSERT\"", "channel_members"));

	sql("UPDATE channel_members SET left_at = now() WHERE channel_id = "
	    "'c-1'");
	run_until_count(&nt.n, 4, 10);
	sql("DELETE FROM daemon_credentials");
	sql("DELETE FROM vps WHERE id = 'v-1'");
	run_until_count(&nt.n, 5, 10);
	ck_assert(has_note(&nt, "\"DELETE\"", "\"v-1\""));
	run_for(0.1);
	ck_assert_int_eq(nt.n, 5);
	db_free(db);
}
END_TEST

static int npend_done;

static void
count_result(struct db *db, enum db_status st, const PGresult *res,
	     void *arg)
{
	(void)db;
	(void)res;
	(void)arg;
	ck_assert_int_eq(st, DB_OK);
	npend_done++;
}

START_TEST(test_pending_bound)
{
	struct db *db = new_db(1, 10000);
	const char *slow[1] = {"0.3"};
	struct db_stats st;
	int accepted = 0;

	ck_assert_int_eq(db_prepare(db, "sleep", "SELECT pg_sleep($1)", 1), 0);
	ck_assert_int_eq(db_prepare(db, "one", "SELECT 1", 0), 0);
	db_start(db);
	wait_ready(db, 10);
	npend_done = 0;
	/* The first is sent (once prepared); DB_MAX_PENDING more wait. */
	ck_assert_int_eq(db_query(db, "sleep", 1, slow, count_result, NULL), 0);
	accepted++;
	run_for(0.1);
	for (int i = 0; i < DB_MAX_PENDING; i++) {
		ck_assert_int_eq(db_query(db, "one", 0, NULL, count_result,
					  NULL),
				 0);
		accepted++;
	}
	errno = 0;
	ck_assert_int_eq(db_query(db, "one", 0, NULL, count_result, NULL), -1);
	ck_assert_int_eq(errno, EAGAIN);
	run_until_count(&npend_done, accepted, 30);
	ck_assert_int_eq(npend_done, accepted);
	/* Drained: room again. */
	ck_assert_int_eq(db_query(db, "one", 0, NULL, count_result, NULL), 0);
	run_until_count(&npend_done, accepted + 1, 10);
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.refused, 1);
	ck_assert_uint_eq(st.queries, (uint64_t)accepted + 1);
	db_free(db);
}
END_TEST

/* db_free() from a callback: the others get DB_UNAVAILABLE, once each. */
static struct res frees[4];

static void
free_in_cb(struct db *db, enum db_status st, const PGresult *res, void *arg)
{
	on_result(db, st, res, arg);
	db_free(db);
	/* Once freed, the db refuses nothing: it must not be touched. */
}

START_TEST(test_free)
{
	struct db *db = new_db(2, 5000);
	const char *slow[1] = {"3"}, *none[1] = {"0"};
	struct notes nt;

	ck_assert_int_eq(db_prepare(db, "sleep", "SELECT pg_sleep($1)", 1), 0);
	db_start(db);
	wait_ready(db, 10);
	wait_connects(db, 2, 10); /* both connections up */

	/* db_free() with two in flight and one queued. */
	memset(frees, 0, sizeof(frees));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(db_query(db, "sleep", 1, slow, on_result,
					  &frees[i]),
				 0);
	run_for(0.05);
	db_free(db);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(frees[i].calls, 1);
		ck_assert_int_eq(frees[i].st, DB_UNAVAILABLE);
	}

	/* db_free() from a result callback, a query still in flight. */
	db = new_db(2, 5000);
	memset(&nt, 0, sizeof(nt));
	ck_assert_int_eq(db_prepare(db, "sleep", "SELECT pg_sleep($1)", 1), 0);
	ck_assert_int_eq(db_listen(db, "orchd_test", on_notify, &nt), 0);
	db_start(db);
	wait_ready(db, 10);
	wait_connects(db, 3, 10); /* two for queries, one listening */
	memset(frees, 0, sizeof(frees));
	ck_assert_int_eq(db_query(db, "sleep", 1, slow, on_result, &frees[0]),
			 0);
	ck_assert_int_eq(db_query(db, "sleep", 1, none, free_in_cb, &frees[1]),
			 0);
	ck_assert_int_eq(db_query(db, "sleep", 1, slow, on_result, &frees[2]),
			 0);
	run_until(&frees[1].done, 10);
	ck_assert_int_eq(frees[1].st, DB_OK);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(frees[i].calls, 1);
	ck_assert_int_eq(frees[0].st, DB_UNAVAILABLE);
	ck_assert_int_eq(frees[2].st, DB_UNAVAILABLE);
	run_for(0.2); /* nothing of the freed db may run now */
	ck_assert_int_eq(nt.lost, 0);
}
END_TEST

START_TEST(test_no_server)
{
	char ci[512];
	struct db *db;
	struct db_stats st;
	struct res r;

	/* Nothing listens there: connects fail, queries are refused. */
	snprintf(ci, sizeof(ci), "host=%s/nowhere port=5432 dbname=x user=y",
		 dir);
	db = db_new(loop, ci, 2, 500, "test");
	ck_assert_int_eq(db_prepare(db, "one", "SELECT 1", 0), 0);
	db_start(db);
	run_for(0.5);
	ck_assert_int_eq(db_ready(db), 0);
	errno = 0;
	ck_assert_int_eq(db_query(db, "one", 0, NULL, on_result, &r), -1);
	ck_assert_int_eq(errno, ENOTCONN);
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.connects, 0);
	ck_assert_uint_eq(st.refused, 1);
	db_free(db);
}
END_TEST

static Suite *
db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("postgres");

	tcase_add_unchecked_fixture(tc, make_cluster, remove_cluster);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_query);
	tcase_add_test(tc, test_server_error);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_queue_timeout);
	tcase_add_test(tc, test_server_restart);
	tcase_add_test(tc, test_listen);
	tcase_add_test(tc, test_schema);
	tcase_add_test(tc, test_pending_bound);
	tcase_add_test(tc, test_free);
	tcase_add_test(tc, test_no_server);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	/* Quiet unless asked: the client logs every outage it sees. */
	log_init("check_db");
	if (getenv("CHECK_DB_VERBOSE") == NULL)
		log_set_level(LOG_ERR);
	return check_run(db_suite());
}
