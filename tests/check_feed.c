/*
 * The relay's Redis input (feed) and the Sentinel resolver against real
 * redis-server processes, started by each test in a private temp dir and
 * stopped by its teardown.
 *
 * A silently dead subscription (the connection stays up but nothing comes
 * through, as behind a NAT that lost its state) is made with a small proxy
 * in the test's own loop that can stop forwarding what Redis sends to
 * subscribed connections.  The Sentinel tests run a real sentinel
 * ("redis-server --sentinel") over TCP on free local ports.
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "orchd/config.h"
#include "orchd/feed.h"
#include "orchd/redis.h"
#include "orchd/sentinel.h"
#include "orchd/util.h"

#define MAXREC 64

static char dir[] = "/tmp/orchd-feed-test-XXXXXX";
static char sock[256];
static pid_t server;
static struct ev_loop *loop;
static redisContext *sc; /* synchronous client for publishing, inspection */
static struct config *cfg;

/* ---- fixtures ----------------------------------------------------------- */

static void
remove_dir(void)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* Wait until a server answers PING on the unix socket or TCP port. */
static int
wait_ping(const char *path, int port)
{
	for (int i = 0; i < 200; i++) {
		redisContext *c = path != NULL
				      ? redisConnectUnix(path)
				      : redisConnect("127.0.0.1", port);
		redisReply *rep = NULL;

		if (c != NULL && !c->err)
			rep = redisCommand(c, "PING");
		if (rep != NULL) {
			freeReplyObject(rep);
			redisFree(c);
			return 0;
		}
		if (c != NULL)
			redisFree(c);
		usleep(25000);
	}
	return -1;
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
		       "--appendonly", "no", "--logfile", logf, (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(wait_ping(sock, 0) == 0,
		      "redis-server did not start (is it installed?)");
}

static void
stop_pid(pid_t *pid, int sig)
{
	if (*pid > 0) {
		kill(*pid, sig);
		waitpid(*pid, NULL, 0);
		*pid = 0;
	}
}

static void
stop_server(int sig)
{
	stop_pid(&server, sig);
	unlink(sock);
}

static void
connect_sc(void)
{
	if (sc != NULL)
		redisFree(sc);
	sc = redisConnectUnix(sock);
	ck_assert(sc != NULL && !sc->err);
}

static void
setup(void)
{
	strcpy(dir, "/tmp/orchd-feed-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
	start_server();
	loop = ev_loop_new(EVFLAG_AUTO);
	connect_sc();
	cfg = config_new();
	UTIL_FREE(cfg->redis.host);
	cfg->redis.unix_path = util_strdup(sock);
	cfg->redis_timeout_ms = 500;
	cfg->relay_canary_interval_ms = 0;
}

static void
teardown(void)
{
	if (sc != NULL)
		redisFree(sc);
	sc = NULL;
	config_free(cfg);
	ev_loop_destroy(loop);
	stop_server(SIGTERM);
	remove_dir();
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

static void
cmd0(const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	va_start(ap, fmt);
	rep = redisvCommand(sc, fmt, ap);
	va_end(ap);
	ck_assert_ptr_nonnull(rep);
	ck_assert_msg(rep->type != REDIS_REPLY_ERROR, "%s: %s", fmt, rep->str);
	freeReplyObject(rep);
}

/* XADD with one field; returns the id in buf. */
static void
xadd(const char *field, const char *value, char *buf, size_t len)
{
	redisReply *rep =
	    cmd("XADD %s * %s %s", cfg->event_stream_key, field, value);

	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	snprintf(buf, len, "%s", rep->str);
	freeReplyObject(rep);
}

/* The string value of key, "" when missing. */
static void
get_key(const char *key, char *buf, size_t len)
{
	redisReply *rep = cmd("GET %s", key);

	snprintf(buf, len, "%s",
		 rep->type == REDIS_REPLY_STRING ? rep->str : "");
	freeReplyObject(rep);
}

/* What the callbacks saw. */
struct sink {
	struct feed *f;
	int n;
	char org[MAXREC][FEED_ORG_MAX + 1];
	int has_org[MAXREC];
	char msg[MAXREC][128];
	char id[MAXREC][FEED_STREAM_ID_MAX + 1];
	int states[16];
	int nstates;
	int subscribed;
	int commit;        /* commit every stream record at once */
	int free_on_rec;   /* feed_free() from inside record() */
	int free_on_state; /* feed_free() from inside state(0) */
};

static void
on_record(void *arg, const char *org, const char *buf, size_t len,
	  const char *stream_id)
{
	struct sink *s = arg;

	ck_assert_int_lt(s->n, MAXREC);
	s->has_org[s->n] = org != NULL;
	snprintf(s->org[s->n], sizeof(s->org[0]), "%s", org ? org : "");
	snprintf(s->msg[s->n], sizeof(s->msg[0]), "%.*s", (int)len, buf);
	snprintf(s->id[s->n], sizeof(s->id[0]), "%s",
		 stream_id ? stream_id : "");
	s->n++;
	if (stream_id != NULL && s->commit)
		feed_stream_commit(s->f, stream_id);
	if (s->free_on_rec) {
		feed_free(s->f);
		s->f = NULL;
	}
}

static void
on_state(void *arg, int subscribed)
{
	struct sink *s = arg;

	if (s->nstates < 16)
		s->states[s->nstates++] = subscribed;
	s->subscribed = subscribed;
	if (!subscribed && s->free_on_state) {
		feed_free(s->f);
		s->f = NULL;
	}
}

static const struct feed_callbacks callbacks = {on_record, on_state};

static void
start_feed(struct sink *s)
{
	s->f = feed_new(loop, cfg, &callbacks, s);
	run_until(&s->subscribed, 5);
	ck_assert_msg(s->subscribed, "not subscribed");
	ck_assert(feed_subscribed(s->f));
}

static void
wait_records(struct sink *s, int n, double secs)
{
	for (double end = ev_time() + secs; s->n < n && ev_time() < end;) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(200);
	}
	ck_assert_int_eq(s->n, n);
}

static struct feed_stats
stats(struct sink *s)
{
	struct feed_stats st;

	feed_get_stats(s->f, &st);
	return st;
}

/* ---- pub/sub ------------------------------------------------------------ */

START_TEST(test_global_and_org_records)
{
	struct sink s = {0};
	char chan[100];

	start_feed(&s);
	cmd0("PUBLISH daemon:events %s", "g1");
	cmd0("PUBLISH daemon:events:%s %s", "org-7", "o1");
	cmd0("PUBLISH daemon:events: %s", "empty org");
	memset(chan, 'a', 64);
	chan[64] = '\0';
	cmd0("PUBLISH daemon:events:%s %s", chan, "org too long");
	chan[63] = '\0';
	cmd0("PUBLISH daemon:events:%s %s", chan, "o63");
	cmd0("PUBLISH daemon:eventsX %s", "not ours");
	cmd0("PUBLISH daemon:events %b", "bin\0ary", (size_t)7);
	wait_records(&s, 4, 3);
	run_for(0.1);
	ck_assert_int_eq(s.n, 4);
	ck_assert(!s.has_org[0]);
	ck_assert_str_eq(s.msg[0], "g1");
	ck_assert_str_eq(s.id[0], "");
	ck_assert(s.has_org[1]);
	ck_assert_str_eq(s.org[1], "org-7");
	ck_assert_str_eq(s.msg[1], "o1");
	ck_assert_str_eq(s.org[2], chan);
	ck_assert_str_eq(s.msg[2], "o63");
	ck_assert(!s.has_org[3]);
	ck_assert_str_eq(s.msg[3],
			 "bin"); /* %s stops at the NUL: 7 bytes came */
	ck_assert_uint_eq(stats(&s).channel_errors, 2);
	ck_assert_uint_eq(stats(&s).messages, 4);
	ck_assert_int_eq(s.nstates, 1);
	ck_assert_int_eq(s.states[0], 1);
	feed_free(s.f);
}
END_TEST

/* Redis dies and comes back: subscribed again within 2 s of its return. */
START_TEST(test_redis_restart_resubscribes)
{
	struct sink s = {0};
	double back, up;

	start_feed(&s);
	stop_server(SIGKILL);
	for (double end = ev_time() + 3; s.subscribed && ev_time() < end;)
		run_for(0.01);
	ck_assert(!s.subscribed);
	ck_assert(!feed_subscribed(s.f));
	/* Long enough for the back-off to reach its cap. */
	run_for(2.5);
	start_server();
	back = ev_time();
	run_until(&s.subscribed, 5);
	up = ev_time();
	ck_assert_msg(s.subscribed, "not subscribed again");
	ck_assert_msg(up - back < 2.0, "subscribed again after %.2f s",
		      up - back);
	connect_sc();
	cmd0("PUBLISH daemon:events:%s %s", "o", "after");
	wait_records(&s, 1, 3);
	ck_assert_str_eq(s.org[0], "o");
	ck_assert_int_eq(s.nstates, 3);
	ck_assert_int_eq(s.states[0], 1);
	ck_assert_int_eq(s.states[1], 0);
	ck_assert_int_eq(s.states[2], 1);
	ck_assert_uint_ge(stats(&s).reconnects, 1);
	feed_free(s.f);
}
END_TEST

/* The subscriber's connection is killed: resubscribed, nothing else lost. */
START_TEST(test_client_kill_resubscribes)
{
	struct sink s = {0};

	start_feed(&s);
	cmd0("CLIENT KILL TYPE pubsub");
	for (double end = ev_time() + 3; s.nstates < 3 && ev_time() < end;)
		run_for(0.01);
	ck_assert_int_eq(s.nstates, 3);
	ck_assert(s.subscribed);
	cmd0("PUBLISH daemon:events %s", "x");
	wait_records(&s, 1, 3);
	feed_free(s.f);
}
END_TEST

/* feed_free() from inside record() and from inside state(). */
START_TEST(test_free_inside_callbacks)
{
	struct sink s = {0};

	start_feed(&s);
	s.free_on_rec = 1;
	cmd0("PUBLISH daemon:events %s", "a");
	cmd0("PUBLISH daemon:events %s", "b");
	wait_records(&s, 1, 3);
	ck_assert_ptr_null(s.f);
	run_for(0.2);
	ck_assert_int_eq(s.n, 1);

	memset(&s, 0, sizeof(s));
	start_feed(&s);
	s.free_on_state = 1;
	cmd0("CLIENT KILL TYPE pubsub");
	for (double end = ev_time() + 3; s.f != NULL && ev_time() < end;)
		run_for(0.01);
	ck_assert_ptr_null(s.f);
	run_for(0.5); /* nothing may fire any more */
	ck_assert_int_eq(s.nstates, 2);
}
END_TEST

/* ---- canary ------------------------------------------------------------- */

/*
 * A unix-socket proxy in front of Redis.  A connection that has sent
 * SUBSCRIBE is a subscriber; while `frozen`, what Redis sends it is read
 * and thrown away: the connection stays up and silent.
 */
struct pconn {
	int cfd, sfd; /* client side, server side */
	int subscriber;
	ev_io cw, sw;
	struct pconn *next;
};

static int proxy_fd = -1;
static ev_io proxy_w;
static int frozen;
static struct pconn *pconns;
static char proxy_path[300];

static void
pconn_close(struct pconn *p)
{
	struct pconn **pp;

	ev_io_stop(loop, &p->cw);
	ev_io_stop(loop, &p->sw);
	close(p->cfd);
	close(p->sfd);
	for (pp = &pconns; *pp != p; pp = &(*pp)->next)
		;
	*pp = p->next;
	free(p);
}

static void
pconn_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct pconn *p = w->data;
	int from_client = w == &p->cw;
	char buf[65536];
	ssize_t n = read(w->fd, buf, sizeof(buf));

	if (n <= 0) {
		pconn_close(p);
		return;
	}
	if (from_client && memmem(buf, (size_t)n, "SUBSCRIBE", 9) != NULL)
		p->subscriber = 1;
	if (!from_client && frozen && p->subscriber)
		return; /* swallowed */
	/* Blocking write: test traffic is small. */
	for (ssize_t off = 0; off < n;) {
		ssize_t k = write(from_client ? p->sfd : p->cfd, buf + off,
				  (size_t)(n - off));

		if (k <= 0) {
			pconn_close(p);
			return;
		}
		off += k;
	}
}

static void
proxy_accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pconn *p;
	int cfd = accept(w->fd, NULL, NULL), sfd;

	if (cfd < 0)
		return;
	sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(cfd);
		if (sfd >= 0)
			close(sfd);
		return;
	}
	p = util_calloc(1, sizeof(*p));
	p->cfd = cfd;
	p->sfd = sfd;
	ev_io_init(&p->cw, pconn_cb, cfd, EV_READ);
	ev_io_init(&p->sw, pconn_cb, sfd, EV_READ);
	p->cw.data = p->sw.data = p;
	ev_io_start(loop, &p->cw);
	ev_io_start(loop, &p->sw);
	p->next = pconns;
	pconns = p;
}

static void
proxy_start(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(proxy_path, sizeof(proxy_path), "%s/proxy.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", proxy_path);
	proxy_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(proxy_fd, 0);
	ck_assert_int_eq(bind(proxy_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(proxy_fd, 16), 0);
	ev_io_init(&proxy_w, proxy_accept_cb, proxy_fd, EV_READ);
	ev_io_start(loop, &proxy_w);
	free(cfg->redis.unix_path);
	cfg->redis.unix_path = util_strdup(proxy_path);
}

static void
proxy_stop(void)
{
	while (pconns != NULL)
		pconn_close(pconns);
	ev_io_stop(loop, &proxy_w);
	close(proxy_fd);
	proxy_fd = -1;
}

/*
 * The canary goes round while the subscription works; when the subscription
 * goes silent, the canary fails and the subscriber is reconnected.
 */
START_TEST(test_canary_silent_subscription)
{
	struct sink s = {0};
	uint64_t ok;

	proxy_start();
	cfg->relay_canary_interval_ms = 100;
	cfg->redis_timeout_ms = 400;
	start_feed(&s);
	run_for(0.6);
	ok = stats(&s).canary_ok;
	ck_assert_uint_ge(ok, 2);
	ck_assert_uint_eq(stats(&s).canary_failures, 0);
	ck_assert_int_eq(s.n, 0); /* canary tokens are not records */

	/* The subscription goes silent: no disconnect, no error. */
	frozen = 1;
	for (double end = ev_time() + 3; s.subscribed && ev_time() < end;)
		run_for(0.01);
	ck_assert_msg(!s.subscribed, "the silent subscription was not noticed");
	ck_assert_uint_ge(stats(&s).canary_failures, 1);

	/* The path heals: subscribed again, the canary goes round again. */
	frozen = 0;
	run_until(&s.subscribed, 3);
	ck_assert(s.subscribed);
	ok = stats(&s).canary_ok;
	run_for(0.6);
	ck_assert_uint_gt(stats(&s).canary_ok, ok);
	cmd0("PUBLISH daemon:events %s", "after");
	wait_records(&s, 1, 3);
	ck_assert_str_eq(s.msg[0], "after");
	ck_assert_int_eq(s.states[0], 1);
	ck_assert_int_eq(s.states[1], 0);
	ck_assert_int_eq(s.states[2], 1);
	feed_free(s.f);
	proxy_stop();
}
END_TEST

/* ---- stream ------------------------------------------------------------- */

static void
stream_cfg(void)
{
	cfg->event_stream = 1;
}

static void
wait_key(const char *key, const char *want, double secs)
{
	char got[64] = "";

	for (double end = ev_time() + secs; ev_time() < end;) {
		get_key(key, got, sizeof(got));
		if (strcmp(got, want) == 0)
			return;
		run_for(0.01);
	}
	ck_abort_msg("%s is \"%s\", not \"%s\"", key, got, want);
}

/* First start ever: the history is not replayed, the tail is persisted. */
START_TEST(test_stream_first_start_from_tail)
{
	struct sink s = {0};
	char id[64], key[128];

	stream_cfg();
	snprintf(key, sizeof(key), "%s:orchd-last-id", cfg->event_stream_key);
	xadd("event", "old1", id, sizeof(id));
	xadd("event", "old2", id, sizeof(id));
	start_feed(&s);
	wait_key(key, id, 3);
	xadd("event", "new1", id, sizeof(id));
	wait_records(&s, 1, 3);
	ck_assert_str_eq(s.msg[0], "new1");
	ck_assert_str_eq(s.id[0], id);
	ck_assert(!s.has_org[0]);
	ck_assert_uint_eq(stats(&s).stream_entries, 1);
	run_for(0.2);
	ck_assert_int_eq(s.n, 1);
	feed_free(s.f);
}
END_TEST

/* No stream at all on the first start: "0-0", then everything new. */
START_TEST(test_stream_first_start_empty)
{
	struct sink s = {0};
	char id[64], key[128];

	stream_cfg();
	snprintf(key, sizeof(key), "%s:orchd-last-id", cfg->event_stream_key);
	start_feed(&s);
	wait_key(key, "0-0", 3);
	xadd("event", "e1", id, sizeof(id));
	wait_records(&s, 1, 3);
	ck_assert_str_eq(s.msg[0], "e1");
	feed_free(s.f);
}
END_TEST

/*
 * Stopped, written to, started: every entry is delivered in order; entries
 * without "event" are skipped and committed; commits are persisted.
 */
START_TEST(test_stream_resume_after_restart)
{
	struct sink s = {0};
	char id[8][64], key[128];

	stream_cfg();
	snprintf(key, sizeof(key), "%s:orchd-last-id", cfg->event_stream_key);
	s.commit = 1;
	start_feed(&s);
	wait_key(key, "0-0", 3);
	xadd("event", "e0", id[0], sizeof(id[0]));
	wait_records(&s, 1, 3);
	wait_key(key, id[0], 3);
	feed_free(s.f);

	xadd("event", "e1", id[1], sizeof(id[1]));
	xadd("other", "no event", id[2], sizeof(id[2]));
	xadd("event", "e3", id[3], sizeof(id[3]));
	xadd("event", "e4", id[4], sizeof(id[4]));
	xadd("other", "no event either", id[5], sizeof(id[5]));

	memset(&s, 0, sizeof(s));
	s.commit = 1;
	start_feed(&s);
	wait_records(&s, 3, 3);
	ck_assert_str_eq(s.msg[0], "e1");
	ck_assert_str_eq(s.id[0], id[1]);
	ck_assert_str_eq(s.msg[1], "e3");
	ck_assert_str_eq(s.id[1], id[3]);
	ck_assert_str_eq(s.msg[2], "e4");
	ck_assert_str_eq(s.id[2], id[4]);
	ck_assert_uint_eq(stats(&s).stream_errors, 2);
	/* The trailing skipped entry is committed too. */
	wait_key(key, id[5], 3);
	feed_free(s.f);
}
END_TEST

/*
 * Without commits the persisted id stays put: a restart reads the same
 * entries again (at-least-once); a late commit persists; a skipped entry
 * is committed only once the record before it is.
 */
START_TEST(test_stream_commit_late)
{
	struct sink s = {0};
	char id[4][64], key[128], got[64];

	stream_cfg();
	snprintf(key, sizeof(key), "%s:orchd-last-id", cfg->event_stream_key);
	start_feed(&s);
	wait_key(key, "0-0", 3);
	xadd("event", "e0", id[0], sizeof(id[0]));
	xadd("other", "x", id[1], sizeof(id[1]));
	xadd("event", "e2", id[2], sizeof(id[2]));
	wait_records(&s, 2, 3);
	run_for(0.2);
	get_key(key, got, sizeof(got));
	ck_assert_str_eq(got, "0-0"); /* nothing committed yet */
	feed_stream_commit(s.f, id[0]);
	wait_key(key, id[1], 3); /* e0 and the skipped entry after it */
	feed_free(s.f);

	memset(&s, 0, sizeof(s));
	start_feed(&s);
	wait_records(&s, 1, 3);
	ck_assert_str_eq(s.msg[0], "e2"); /* not committed: read again */
	feed_stream_commit(s.f, s.id[0]);
	wait_key(key, id[2], 3);
	feed_free(s.f);
}
END_TEST

/* The stream connection drops: reading resumes after the last entry read. */
START_TEST(test_stream_reconnect_resumes)
{
	struct sink s = {0};
	char id[64], key[128];

	stream_cfg();
	snprintf(key, sizeof(key), "%s:orchd-last-id", cfg->event_stream_key);
	start_feed(&s);
	wait_key(key, "0-0", 3);
	xadd("event", "e0", id, sizeof(id));
	wait_records(&s, 1, 3);
	cmd0("CLIENT KILL TYPE normal SKIPME yes");
	xadd("event", "e1", id, sizeof(id));
	xadd("event", "e2", id, sizeof(id));
	wait_records(&s, 3, 5);
	ck_assert_str_eq(s.msg[1], "e1");
	ck_assert_str_eq(s.msg[2], "e2");
	ck_assert_str_eq(s.id[2], id);
	run_for(0.3);
	ck_assert_int_eq(s.n, 3);
	feed_free(s.f);
}
END_TEST

/* An entry over the size bound is skipped; the entries around it are not. */
START_TEST(test_stream_oversized_entry)
{
	struct sink s = {0};
	char id[4][64], key[128];
	size_t big = 300 * 1024;
	char *v = util_malloc(big + 1);
	redisReply *rep;

	stream_cfg();
	cfg->max_event_size = 1024;
	snprintf(key, sizeof(key), "%s:orchd-last-id", cfg->event_stream_key);
	s.commit = 1;
	start_feed(&s);
	wait_key(key, "0-0", 3);
	/* Stopped, so that all three come in one batch when it starts. */
	feed_free(s.f);
	memset(v, 'x', big);
	v[big] = '\0';
	xadd("event", "e0", id[0], sizeof(id[0]));
	rep = cmd("XADD %s * event %s", cfg->event_stream_key, v);
	snprintf(id[1], sizeof(id[1]), "%s", rep->str);
	freeReplyObject(rep);
	xadd("event", "e2", id[2], sizeof(id[2]));
	memset(&s, 0, sizeof(s));
	s.commit = 1;
	start_feed(&s);
	wait_records(&s, 2, 8);
	ck_assert_str_eq(s.msg[0], "e0");
	ck_assert_str_eq(s.msg[1], "e2");
	ck_assert_uint_ge(stats(&s).oversized, 1);
	ck_assert_uint_eq(stats(&s).stream_errors, 1);
	wait_key(key, id[2], 3);
	feed_free(s.f);
	free(v);
}
END_TEST

/* ---- Sentinel ----------------------------------------------------------- */

static pid_t sentinel_pid, replica_pid, master_pid;
static int master_port, replica_port, sentinel_port;

static int
free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static pid_t
start_tcp_redis(int port, int replica_of)
{
	char p[16], logf[300], rdir[300], of[32];
	pid_t pid;

	snprintf(p, sizeof(p), "%d", port);
	snprintf(logf, sizeof(logf), "%s/redis-%d.log", dir, port);
	snprintf(rdir, sizeof(rdir), "%s", dir);
	snprintf(of, sizeof(of), "%d", replica_of);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (replica_of > 0)
			execlp("redis-server", "redis-server", "--port", p,
			       "--bind", "127.0.0.1", "--dir", rdir,
			       "--dbfilename", "r.rdb", "--save", "",
			       "--appendonly", "no", "--logfile", logf,
			       "--replicaof", "127.0.0.1", of, (char *)NULL);
		else
			execlp("redis-server", "redis-server", "--port", p,
			       "--bind", "127.0.0.1", "--dir", rdir,
			       "--dbfilename", "m.rdb", "--save", "",
			       "--appendonly", "no", "--logfile", logf,
			       "--repl-diskless-sync-delay", "0", (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(wait_ping(NULL, port) == 0, "redis on %d did not start",
		      port);
	return pid;
}

static void
start_sentinel(void)
{
	char conf[300], logf[300];
	FILE *fp;

	snprintf(conf, sizeof(conf), "%s/sentinel.conf", dir);
	snprintf(logf, sizeof(logf), "%s/sentinel.log", dir);
	fp = fopen(conf, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp,
		"port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"
		"sentinel monitor mymaster 127.0.0.1 %d 1\n"
		"sentinel down-after-milliseconds mymaster 1000\n"
		"sentinel failover-timeout mymaster 5000\n",
		sentinel_port, dir, logf, master_port);
	fclose(fp);
	sentinel_pid = fork();
	ck_assert_int_ge(sentinel_pid, 0);
	if (sentinel_pid == 0) {
		execlp("redis-server", "redis-server", conf, "--sentinel",
		       (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(wait_ping(NULL, sentinel_port) == 0,
		      "redis-server --sentinel did not start");
}

static void
wait_replica_linked(void)
{
	redisContext *c = redisConnect("127.0.0.1", master_port);
	int linked = 0;

	ck_assert(c != NULL && !c->err);
	for (double end = ev_time() + 10; !linked && ev_time() < end;) {
		redisReply *rep = redisCommand(c, "INFO replication");

		linked = rep != NULL && rep->type == REDIS_REPLY_STRING &&
			 strstr(rep->str, "state=online") != NULL;
		if (rep != NULL)
			freeReplyObject(rep);
		if (!linked)
			usleep(50000);
	}
	redisFree(c);
	ck_assert_msg(linked, "the replica did not link to the master");
}

static void
sentinel_setup(void)
{
	setup();
	master_port = free_port();
	replica_port = free_port();
	sentinel_port = free_port();
	master_pid = start_tcp_redis(master_port, 0);
	/*
	 * The replica is linked before the sentinel starts: the sentinel's
	 * first INFO then knows it, instead of its next one 10 s later.
	 */
	replica_pid = start_tcp_redis(replica_port, master_port);
	wait_replica_linked();
	start_sentinel();
	/* A dead sentinel first: the resolver must move on to the next. */
	cfg->redis.nsentinels = 2;
	util_strlcpy(cfg->redis.sentinels[0].host, "127.0.0.1",
		     sizeof(cfg->redis.sentinels[0].host));
	cfg->redis.sentinels[0].port = free_port();
	util_strlcpy(cfg->redis.sentinels[1].host, "127.0.0.1",
		     sizeof(cfg->redis.sentinels[1].host));
	cfg->redis.sentinels[1].port = sentinel_port;
	util_strlcpy(cfg->redis.master, "mymaster", sizeof(cfg->redis.master));
	UTIL_FREE(cfg->redis.unix_path);
}

static void
sentinel_teardown(void)
{
	/* SIGTERM would wait up to 10 s for the replica to catch up. */
	stop_pid(&sentinel_pid, SIGKILL);
	stop_pid(&replica_pid, SIGKILL);
	stop_pid(&master_pid, SIGKILL);
	teardown();
}

struct answer {
	int done;
	char host[64];
	int port;
	char err[128];
};

static void
on_answer(void *arg, const char *host, int port, const char *err)
{
	struct answer *a = arg;

	a->done = 1;
	snprintf(a->host, sizeof(a->host), "%s", host ? host : "");
	a->port = port;
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
}

START_TEST(test_sentinel_resolve)
{
	struct answer a = {0};
	struct sentinel_query *q;

	q = sentinel_resolve(loop, &cfg->redis, 500, "test", on_answer, &a);
	ck_assert(!a.done); /* never from inside sentinel_resolve() */
	run_until(&a.done, 5);
	ck_assert(a.done);
	ck_assert_str_eq(a.host, "127.0.0.1");
	ck_assert_int_eq(a.port, master_port);

	/* Unknown master: a failure that says why. */
	memset(&a, 0, sizeof(a));
	util_strlcpy(cfg->redis.master, "nosuch", sizeof(cfg->redis.master));
	sentinel_resolve(loop, &cfg->redis, 500, "test", on_answer, &a);
	run_until(&a.done, 5);
	ck_assert(a.done);
	ck_assert_str_eq(a.host, "");
	ck_assert_ptr_nonnull(strstr(a.err, "nosuch"));

	/* Cancelled: never called back. */
	memset(&a, 0, sizeof(a));
	q = sentinel_resolve(loop, &cfg->redis, 500, "test", on_answer, &a);
	sentinel_cancel(q);
	run_for(0.5);
	ck_assert(!a.done);
}
END_TEST

static void
publish_on(int port, const char *chan, const char *msg)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	redisReply *rep;

	ck_assert(c != NULL && !c->err);
	rep = redisCommand(c, "PUBLISH %s %s", chan, msg);
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	redisFree(c);
}

static void
on_ping(struct redis *r, redisReply *rep, void *arg)
{
	*(int *)arg = rep != NULL && rep->type == REDIS_REPLY_STATUS ? 2 : 1;
}

/*
 * The feed and the generic client find the master through the sentinel,
 * and follow it when a failover promotes the replica.
 */
START_TEST(test_sentinel_failover)
{
	struct sink s = {0};
	struct redis *r;
	redisContext *c;
	redisReply *rep;
	int done = 0, ok = 0;

	r = redis_new(loop, &cfg->redis, 500, "test");
	start_feed(&s);
	publish_on(master_port, "daemon:events", "via master");
	wait_records(&s, 1, 3);
	for (double end = ev_time() + 3;
	     !redis_connected(r) && ev_time() < end;)
		run_for(0.01);
	ck_assert(redis_connected(r));

	/* Wait for the sentinel to know the replica, then fail over. */
	c = redisConnect("127.0.0.1", sentinel_port);
	ck_assert(c != NULL && !c->err);
	for (double end = ev_time() + 15; !ok && ev_time() < end;) {
		rep = redisCommand(c, "SENTINEL FAILOVER mymaster");
		ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
		if (rep != NULL)
			freeReplyObject(rep);
		if (!ok)
			run_for(0.2);
	}
	redisFree(c);
	ck_assert_msg(ok, "the sentinel would not fail over");

	/* The feed loses the old master and subscribes to the new one. */
	for (double end = ev_time() + 15; ev_time() < end && s.n < 2;) {
		run_for(0.1);
		publish_on(replica_port, "daemon:events:o", "via new master");
	}
	ck_assert_int_ge(s.n, 2);
	ck_assert_str_eq(s.msg[1], "via new master");
	ck_assert_str_eq(s.org[1], "o");

	/*
	 * The generic client re-resolves when its connection breaks: the
	 * sentinel kills the clients of the old master when it demotes it
	 * (up to 10 s later), so its writes end up on the new master.
	 */
	c = redisConnect("127.0.0.1", replica_port);
	ck_assert(c != NULL && !c->err);
	ok = 0;
	for (int i = 0; !ok && i < 200; i++) {
		done = 0;
		if (redis_command(r, on_ping, &done, "SET k %d", i) == 0)
			run_until(&done, 1);
		if (done == 2) {
			rep = redisCommand(c, "GET k");
			ck_assert_ptr_nonnull(rep);
			ok = rep->type == REDIS_REPLY_STRING &&
			     atoi(rep->str) == i;
			freeReplyObject(rep);
		}
		if (!ok)
			run_for(0.1);
	}
	redisFree(c);
	ck_assert_msg(ok, "the client did not follow the failover");
	redis_free(r);
	feed_free(s.f);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("feed");
	TCase *tc = tcase_create("pubsub");
	TCase *ts = tcase_create("stream");
	TCase *tn = tcase_create("sentinel");

	signal(SIGPIPE, SIG_IGN);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_global_and_org_records);
	tcase_add_test(tc, test_redis_restart_resubscribes);
	tcase_add_test(tc, test_client_kill_resubscribes);
	tcase_add_test(tc, test_free_inside_callbacks);
	tcase_add_test(tc, test_canary_silent_subscription);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(ts, setup, teardown);
	tcase_set_timeout(ts, 30);
	tcase_add_test(ts, test_stream_first_start_from_tail);
	tcase_add_test(ts, test_stream_first_start_empty);
	tcase_add_test(ts, test_stream_resume_after_restart);
	tcase_add_test(ts, test_stream_commit_late);
	tcase_add_test(ts, test_stream_reconnect_resumes);
	tcase_add_test(ts, test_stream_oversized_entry);
	suite_add_tcase(s, ts);

	/* Sentinel mode is built into redis-server (redis-sentinel links it).
	 */
	tcase_add_checked_fixture(tn, sentinel_setup, sentinel_teardown);
	tcase_set_timeout(tn, 60);
	tcase_add_test(tn, test_sentinel_resolve);
	tcase_add_test(tn, test_sentinel_failover);
	suite_add_tcase(s, tn);
	return check_run(s);
}
