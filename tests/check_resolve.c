/*
 * resolve (asynchronous getaddrinfo on a real libev loop, real system
 * resolver) and dbaddr (the conninfo rewriting, pure).
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orchd/dbaddr.h"
#include "orchd/resolve.h"

/* ---- resolve ---------------------------------------------------------- */

struct answer {
	int calls;
	struct resolve_result res;
};

static void
on_answer(void *arg, const struct resolve_result *res)
{
	struct answer *a = arg;

	a->calls++;
	a->res = *res;
}

/* Run loop until a has been answered or secs pass. */
static void
wait_answer(struct ev_loop *loop, struct answer *a, double secs)
{
	double end = ev_time() + secs;

	while (a->calls == 0 && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
}

/* Wait (bounded) for the pool to have no look-up running. */
static void
wait_idle(double secs)
{
	double end = ev_time() + secs;

	while (resolve_running() > 0 && ev_time() < end)
		usleep(10000);
}

static int
has_addr(const struct resolve_result *res, const char *a)
{
	for (int i = 0; i < res->naddrs; i++)
		if (strcmp(res->addr[i], a) == 0)
			return 1;
	return 0;
}

START_TEST(numeric_at_once)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct answer a4 = {0}, a6 = {0}, ap = {0};
	struct resolve_req *q;

	q = resolve_start(loop, "127.0.0.1", NULL, AF_UNSPEC, 1.0, on_answer,
			  &a4);
	ck_assert_ptr_nonnull(q);
	ck_assert_ptr_nonnull(
	    resolve_start(loop, "::1", "6379", AF_UNSPEC, 1.0, on_answer, &a6));
	ck_assert_ptr_nonnull(resolve_start(loop, "/run/redis.sock", NULL,
					    AF_UNSPEC, 1.0, on_answer, &ap));
	/* Never from inside resolve_start(), and no thread involved. */
	ck_assert_int_eq(a4.calls, 0);
	ck_assert_int_eq(resolve_running(), 0);
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert_int_eq(a4.calls, 1);
	ck_assert_int_eq(a6.calls, 1);
	ck_assert_int_eq(ap.calls, 1);
	ck_assert_int_eq(a4.res.status, RESOLVE_OK);
	ck_assert_int_eq(a4.res.naddrs, 1);
	ck_assert_str_eq(a4.res.addr[0], "127.0.0.1");
	ck_assert_int_eq(a4.res.family[0], AF_INET);
	ck_assert_int_eq(a6.res.status, RESOLVE_OK);
	ck_assert_str_eq(a6.res.addr[0], "::1");
	ck_assert_int_eq(a6.res.family[0], AF_INET6);
	ck_assert_int_eq(ap.res.status, RESOLVE_OK);
	ck_assert_int_eq(ap.res.family[0], AF_UNIX);
	ck_assert_str_eq(ap.res.addr[0], "/run/redis.sock");
	ck_assert_int_eq(resolve_is_numeric("10.1.2.3"), 1);
	ck_assert_int_eq(resolve_is_numeric("fe80::1"), 1);
	ck_assert_int_eq(resolve_is_numeric("/tmp"), 1);
	ck_assert_int_eq(resolve_is_numeric("localhost"), 0);
	ck_assert_int_eq(resolve_is_numeric(""), 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(localhost_resolves)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct answer a = {0};

	ck_assert_ptr_nonnull(resolve_start(loop, "localhost", NULL, AF_UNSPEC,
					    10.0, on_answer, &a));
	ck_assert_int_eq(a.calls, 0);
	wait_answer(loop, &a, 15.0);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_msg(a.res.status == RESOLVE_OK, "%s", a.res.err);
	ck_assert_int_ge(a.res.naddrs, 1);
	ck_assert(has_addr(&a.res, "127.0.0.1") || has_addr(&a.res, "::1"));
	/* The loop has nothing left of the request: it returns at once. */
	ck_assert_int_eq(ev_run(loop, EVRUN_NOWAIT), 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(invalid_name_fails)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct answer a = {0}, e = {0};

	/* RFC 6761: .invalid never resolves. */
	ck_assert_ptr_nonnull(resolve_start(loop, "name.invalid", NULL,
					    AF_UNSPEC, 10.0, on_answer, &a));
	ck_assert_ptr_nonnull(
	    resolve_start(loop, "", NULL, AF_UNSPEC, 1.0, on_answer, &e));
	wait_answer(loop, &a, 15.0);
	wait_answer(loop, &e, 1.0);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_ne(a.res.status, RESOLVE_OK);
	ck_assert_int_eq(a.res.naddrs, 0);
	ck_assert_ptr_null(resolve_pick(&a.res, AF_INET));
	ck_assert_msg(strncmp(a.res.err, "resolve: name.invalid: ", 23) == 0,
		      "%s", a.res.err);
	ck_assert_int_eq(e.calls, 1);
	ck_assert_int_eq(e.res.status, RESOLVE_INVALID);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(cancel_is_safe)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct answer a[8];
	struct resolve_req *q[8];
	double end;

	memset(a, 0, sizeof(a));
	/* More than the pool runs at once: some queued, some running. */
	for (int i = 0; i < 8; i++) {
		q[i] = resolve_start(loop, i % 2 ? "localhost" : "name.invalid",
				     NULL, AF_UNSPEC, 10.0, on_answer, &a[i]);
		ck_assert_ptr_nonnull(q[i]);
	}
	for (int i = 0; i < 8; i++)
		resolve_cancel(q[i]);
	/* A numeric one too (done, its ev_async already sent). */
	resolve_cancel(resolve_start(loop, "127.0.0.1", NULL, AF_UNSPEC, 1.0,
				     on_answer, &a[0]));
	resolve_cancel(NULL);
	end = ev_time() + 0.3;
	while (ev_time() < end)
		ev_run(loop, EVRUN_NOWAIT);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(a[i].calls, 0);
	/* The threads finish the orphans and free them (ASan: no leak). */
	wait_idle(15.0);
	ck_assert_int_eq(resolve_running(), 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(pool_bounded)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct answer a[20];
	int ok = 0;

	/* More requests than threads: all answered, in turn. */
	memset(a, 0, sizeof(a));
	for (int i = 0; i < 20; i++)
		ck_assert_ptr_nonnull(resolve_start(loop, "localhost", NULL,
						    AF_UNSPEC, 10.0, on_answer,
						    &a[i]));
	ck_assert_int_le(resolve_running(), RESOLVE_MAX_THREADS);
	for (int i = 0; i < 20; i++) {
		wait_answer(loop, &a[i], 15.0);
		ck_assert_int_eq(a[i].calls, 1);
		ok += a[i].res.status == RESOLVE_OK;
	}
	ck_assert_int_eq(ok, 20);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(pick_prefers_family)
{
	struct resolve_result r;

	memset(&r, 0, sizeof(r));
	r.status = RESOLVE_OK;
	r.naddrs = 2;
	r.family[0] = AF_INET6;
	strcpy(r.addr[0], "::1");
	r.family[1] = AF_INET;
	strcpy(r.addr[1], "127.0.0.1");
	ck_assert_str_eq(resolve_pick(&r, AF_INET), "127.0.0.1");
	ck_assert_str_eq(resolve_pick(&r, AF_INET6), "::1");
	r.naddrs = 1;
	ck_assert_str_eq(resolve_pick(&r, AF_INET), "::1");
	r.status = RESOLVE_TIMEDOUT;
	ck_assert_ptr_null(resolve_pick(&r, AF_INET));
}
END_TEST

/* ---- dbaddr ----------------------------------------------------------- */

static const char *
kw(const struct dbaddr *a, const char *k)
{
	for (int i = 0; a->keywords[i] != NULL; i++)
		if (strcmp(a->keywords[i], k) == 0)
			return a->values[i];
	return NULL;
}

static struct resolve_result
answer(int n, const char *const *addrs)
{
	struct resolve_result r;

	memset(&r, 0, sizeof(r));
	r.status = n > 0 ? RESOLVE_OK : RESOLVE_FAILED;
	r.naddrs = n;
	for (int i = 0; i < n; i++) {
		r.family[i] = strchr(addrs[i], ':') ? AF_INET6 : AF_INET;
		strcpy(r.addr[i], addrs[i]);
	}
	return r;
}

START_TEST(dbaddr_one_name)
{
	struct dbaddr a;
	char err[128];
	const char *ips[] = {"127.0.0.1", "::1"};
	struct resolve_result r = answer(2, ips);

	ck_assert_int_eq(dbaddr_parse(&a,
				      "host=localhost dbname=orchd "
				      "user=u password=secret sslmode=disable",
				      err, sizeof(err)),
			 1);
	ck_assert_int_eq(a.nhosts, 1);
	ck_assert_int_eq(a.hosts[0].name, 1);
	dbaddr_set(&a, 0, &r);
	ck_assert_int_eq(dbaddr_build(&a), 2);
	ck_assert_str_eq(kw(&a, "host"), "localhost,localhost");
	ck_assert_str_eq(kw(&a, "hostaddr"), "127.0.0.1,::1");
	ck_assert_str_eq(kw(&a, "dbname"), "orchd");
	ck_assert_str_eq(kw(&a, "user"), "u");
	ck_assert_str_eq(kw(&a, "password"), "secret");
	ck_assert_str_eq(kw(&a, "sslmode"), "disable");
	ck_assert_ptr_null(kw(&a, "port"));
	/* Only what was given: libpq's defaults and environment still apply. */
	ck_assert_ptr_null(kw(&a, "connect_timeout"));
	dbaddr_free(&a);
}
END_TEST

START_TEST(dbaddr_nothing_to_resolve)
{
	struct dbaddr a;
	char err[128];

	ck_assert_int_eq(
	    dbaddr_parse(&a, "host=/run/postgresql dbname=x", err, sizeof(err)),
	    0);
	dbaddr_free(&a);
	ck_assert_int_eq(dbaddr_parse(&a, "host=db.example hostaddr=10.0.0.1",
				      err, sizeof(err)),
			 0);
	dbaddr_free(&a);
	ck_assert_int_eq(dbaddr_parse(&a, "host=10.0.0.1,::1,@abstract port=1",
				      err, sizeof(err)),
			 0);
	dbaddr_free(&a);
	ck_assert_int_eq(dbaddr_parse(&a, "dbname=x", err, sizeof(err)), 0);
	dbaddr_free(&a);
	/* libpq's own errors, reported when it connects. */
	ck_assert_int_eq(
	    dbaddr_parse(&a, "host='unterminated", err, sizeof(err)), 0);
	dbaddr_free(&a);
	ck_assert_int_eq(dbaddr_parse(&a, "host=a.example,b.example port=1,2,3",
				      err, sizeof(err)),
			 0);
	dbaddr_free(&a);
}
END_TEST

START_TEST(dbaddr_multi_host)
{
	struct dbaddr a;
	char err[128];
	const char *b[] = {"10.9.0.1", "10.9.0.2"};
	struct resolve_result fail = answer(0, NULL), rb = answer(2, b);

	ck_assert_int_eq(dbaddr_parse(&a,
				      "host=10.0.0.1,a.example,/tmp,b.example "
				      "port=5432,5433,5434,5435 "
				      "target_session_attrs=read-write",
				      err, sizeof(err)),
			 2);
	ck_assert_int_eq(a.nhosts, 4);
	ck_assert_int_eq(a.hosts[0].name, 0);
	ck_assert_int_eq(a.hosts[1].name, 1);
	ck_assert_int_eq(a.hosts[2].name, 0);
	ck_assert_int_eq(a.hosts[3].name, 1);
	/* a.example did not resolve: left out, as libpq skips it. */
	dbaddr_set(&a, 1, &fail);
	dbaddr_set(&a, 3, &rb);
	ck_assert_int_eq(dbaddr_build(&a), 4);
	ck_assert_str_eq(kw(&a, "host"), "10.0.0.1,/tmp,b.example,b.example");
	ck_assert_str_eq(kw(&a, "hostaddr"), ",,10.9.0.1,10.9.0.2");
	ck_assert_str_eq(kw(&a, "port"), "5432,5434,5435,5435");
	ck_assert_str_eq(kw(&a, "target_session_attrs"), "read-write");
	dbaddr_free(&a);
}
END_TEST

START_TEST(dbaddr_uri_and_failures)
{
	struct dbaddr a;
	char err[128], many[512] = "host=h0.example";
	const char *ip[] = {"192.0.2.7"};
	struct resolve_result r = answer(1, ip), fail = answer(0, NULL);

	ck_assert_int_eq(
	    dbaddr_parse(&a,
			 "postgresql://orchd@db.example:6432/orchd?sslmode="
			 "verify-full&application_name=orchd",
			 err, sizeof(err)),
	    1);
	dbaddr_set(&a, 0, &r);
	ck_assert_int_eq(dbaddr_build(&a), 1);
	ck_assert_str_eq(kw(&a, "host"), "db.example");
	ck_assert_str_eq(kw(&a, "hostaddr"), "192.0.2.7");
	/* One port for every host: kept as it was. */
	ck_assert_str_eq(kw(&a, "port"), "6432");
	ck_assert_str_eq(kw(&a, "user"), "orchd");
	ck_assert_str_eq(kw(&a, "dbname"), "orchd");
	ck_assert_str_eq(kw(&a, "sslmode"), "verify-full");
	dbaddr_free(&a);

	/* Every name failed: nothing to connect to. */
	ck_assert_int_eq(
	    dbaddr_parse(&a, "host=a.example,b.example", err, sizeof(err)), 2);
	dbaddr_set(&a, 0, &fail);
	dbaddr_set(&a, 1, NULL);
	ck_assert_int_eq(dbaddr_build(&a), -1);
	dbaddr_free(&a);

	for (int i = 1; i <= DBADDR_MAX_HOSTS; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many),
			 ",h%d.example", i);
	ck_assert_int_eq(dbaddr_parse(&a, many, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "more than 16 hosts in the conninfo");
	dbaddr_free(&a);
}
END_TEST

/* libpq accepts what dbaddr builds (no server needed: a closed port). */
START_TEST(dbaddr_libpq_accepts)
{
	struct dbaddr a;
	char err[128];
	const char *ips[] = {"127.0.0.1"};
	struct resolve_result r = answer(1, ips);
	PGconn *pg;

	ck_assert_int_eq(dbaddr_parse(&a,
				      "host=db.example,/nonexistent port=1,2 "
				      "dbname=x connect_timeout=1",
				      err, sizeof(err)),
			 1);
	dbaddr_set(&a, 0, &r);
	ck_assert_int_eq(dbaddr_build(&a), 2);
	pg = PQconnectStartParams(a.keywords, a.values, 0);
	ck_assert_ptr_nonnull(pg);
	/* Options parsed: libpq did not refuse the host/hostaddr lists. */
	ck_assert_msg(strstr(PQerrorMessage(pg), "could not match") == NULL &&
			  strstr(PQerrorMessage(pg), "invalid") == NULL,
		      "%s", PQerrorMessage(pg));
	PQfinish(pg);
	dbaddr_free(&a);
}
END_TEST

static Suite *
resolve_suite(void)
{
	Suite *s = suite_create("resolve");
	TCase *tc = tcase_create("resolve");
	TCase *td = tcase_create("dbaddr");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, numeric_at_once);
	tcase_add_test(tc, localhost_resolves);
	tcase_add_test(tc, invalid_name_fails);
	tcase_add_test(tc, cancel_is_safe);
	tcase_add_test(tc, pool_bounded);
	tcase_add_test(tc, pick_prefers_family);
	suite_add_tcase(s, tc);
	tcase_add_test(td, dbaddr_one_name);
	tcase_add_test(td, dbaddr_nothing_to_resolve);
	tcase_add_test(td, dbaddr_multi_host);
	tcase_add_test(td, dbaddr_uri_and_failures);
	tcase_add_test(td, dbaddr_libpq_accepts);
	suite_add_tcase(s, td);
	return s;
}

int
main(void)
{
	return check_run(resolve_suite());
}
