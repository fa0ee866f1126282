/*
 * The asynchronous Redis client against a real redis-server, started by the
 * test on a private unix socket in a temp dir and stopped afterwards.
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orchd/redis.h"

static char dir[] = "/tmp/orchd-redis-test-XXXXXX";
static char sock[256];
static pid_t server;
static struct ev_loop *loop;

static void
start_server(void)
{
	char logf[300];

	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
	snprintf(logf, sizeof(logf), "%s/redis.log", dir);
	server = fork();
	ck_assert_int_ge(server, 0);
	if (server == 0) {
		execlp("redis-server", "redis-server", "--port", "0",
		       "--unixsocket", sock, "--dir", dir, "--save", "",
		       "--appendonly", "no", "--logfile", logf,
		       "--enable-debug-command", "yes", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		struct stat st;

		if (stat(sock, &st) == 0)
			return;
		usleep(50000);
	}
	ck_abort_msg("redis-server did not start (is it installed?)");
}

static void
stop_server(void)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
		server = 0;
	}
	unlink(sock);
}

static void
setup(void)
{
	strcpy(dir, "/tmp/orchd-redis-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	start_server();
	loop = ev_loop_new(EVFLAG_AUTO);
}

static void
teardown(void)
{
	char cmd[400];

	ev_loop_destroy(loop);
	stop_server();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* Run the loop until *flag or the deadline (seconds). */
static void
run_until(int *flag, double secs)
{
	double end = ev_time() + secs;

	while (!*flag && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
	}
}

struct result {
	int done;
	int is_null;
	long long integer;
	char str[64];
};

static void
on_reply(struct redis *r, redisReply *rep, void *arg)
{
	struct result *res = arg;

	res->done = 1;
	res->is_null = rep == NULL;
	if (rep != NULL && rep->type == REDIS_REPLY_INTEGER)
		res->integer = rep->integer;
	if (rep != NULL && (rep->type == REDIS_REPLY_STRING ||
			    rep->type == REDIS_REPLY_STATUS))
		snprintf(res->str, sizeof(res->str), "%.*s", (int)rep->len,
			 rep->str);
}

static struct redis *
connect_client(uint64_t timeout_ms)
{
	struct config_redis addr = {.unix_path = sock};
	struct redis *r = redis_new(loop, &addr, timeout_ms, "test");
	int connected = 0;
	double end = ev_time() + 5;

	while (!connected && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		connected = redis_connected(r);
		usleep(1000);
	}
	ck_assert_msg(connected, "client did not connect");
	return r;
}

START_TEST(test_commands_and_replies)
{
	struct redis *r = connect_client(1000);
	struct result a = {0}, b = {0}, c = {0};

	ck_assert_int_eq(redis_command(r, on_reply, &a, "SET %s %b", "k",
				       "v\0x", (size_t)3),
			 0);
	ck_assert_int_eq(redis_command(r, on_reply, &b, "STRLEN %s", "k"), 0);
	ck_assert_int_eq(redis_command(r, on_reply, &c, "INCRBY %s %d", "n",
				       41),
			 0);
	run_until(&c.done, 3);
	ck_assert(a.done && b.done && c.done);
	ck_assert_str_eq(a.str, "OK");
	ck_assert_int_eq(b.integer, 3);
	ck_assert_int_eq(c.integer, 41);
	redis_free(r);
}
END_TEST

/* A command with no reply in time drops the connection: NULL, reconnect. */
START_TEST(test_timeout_then_reconnect)
{
	struct redis *r = connect_client(200);
	struct result slow = {0}, after = {0};
	struct redis_stats st;
	int up = 0;

	ck_assert_int_eq(redis_command(r, on_reply, &slow, "DEBUG SLEEP 1"), 0);
	run_until(&slow.done, 3);
	ck_assert(slow.done);
	ck_assert(slow.is_null);
	redis_get_stats(r, &st);
	ck_assert_uint_eq(st.timeouts, 1);
	/* Disconnected now: commands are refused at once... */
	ck_assert_int_eq(redis_command(r, on_reply, &after, "PING"), -1);
	/* ...until the client is back and Redis has woken up (replies). */
	for (double end = ev_time() + 8; !up && ev_time() < end;) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
		if (!redis_connected(r))
			continue;
		memset(&after, 0, sizeof(after));
		if (redis_command(r, on_reply, &after, "PING") == 0)
			run_until(&after.done, 1);
		up = strcmp(after.str, "PONG") == 0;
	}
	ck_assert_msg(up, "no PONG after the reconnect");
	redis_free(r);
}
END_TEST

/* Redis restarts: pending commands get NULL, the client comes back. */
START_TEST(test_server_restart)
{
	struct redis *r = connect_client(1000);
	struct result res = {0};
	int up = 1;

	stop_server();
	for (double end = ev_time() + 3; up && ev_time() < end;) {
		ev_run(loop, EVRUN_NOWAIT);
		up = redis_connected(r);
		usleep(1000);
	}
	ck_assert(!up);
	ck_assert_int_eq(redis_command(r, on_reply, &res, "PING"), -1);
	start_server();
	for (double end = ev_time() + 8; !up && ev_time() < end;) {
		ev_run(loop, EVRUN_NOWAIT);
		up = redis_connected(r);
		usleep(1000);
	}
	ck_assert_msg(up, "client did not reconnect after the restart");
	ck_assert_int_eq(redis_command(r, on_reply, &res, "PING"), 0);
	run_until(&res.done, 3);
	ck_assert_str_eq(res.str, "PONG");
	redis_free(r);
}
END_TEST

/* Freeing with commands in flight answers each with NULL, exactly once. */
START_TEST(test_free_answers_pending)
{
	struct redis *r = connect_client(1000);
	struct result res[10];

	memset(res, 0, sizeof(res));
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(redis_command(r, on_reply, &res[i], "PING"),
				 0);
	redis_free(r);
	for (int i = 0; i < 10; i++) {
		ck_assert(res[i].done);
		ck_assert(res[i].is_null);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("redis");
	TCase *tc = tcase_create("client");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_commands_and_replies);
	tcase_add_test(tc, test_timeout_then_reconnect);
	tcase_add_test(tc, test_server_restart);
	tcase_add_test(tc, test_free_answers_pending);
	suite_add_tcase(s, tc);
	return check_run(s);
}
