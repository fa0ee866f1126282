/* Unit tests for subscriptions and the token bucket. */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <string.h>

#include <arpa/inet.h>

#include "orchd/addrlimit.h"
#include "orchd/ratelimit.h"
#include "orchd/sub.h"

START_TEST(test_patterns)
{
	ck_assert(sub_pattern_valid("*"));
	ck_assert(sub_pattern_valid("message.*"));
	ck_assert(sub_pattern_valid("message.received"));
	ck_assert(sub_pattern_valid("vp.status_changed"));
	ck_assert(!sub_pattern_valid(""));
	ck_assert(!sub_pattern_valid(".*"));
	ck_assert(!sub_pattern_valid("message."));
	ck_assert(!sub_pattern_valid(".message"));
	ck_assert(!sub_pattern_valid("mess age"));
	ck_assert(!sub_pattern_valid("message.*.x"));
	ck_assert(!sub_pattern_valid("**"));
	{
		char longp[SUB_MAX_LEN + 2];

		memset(longp, 'a', sizeof(longp) - 1);
		longp[sizeof(longp) - 1] = '\0';
		ck_assert(!sub_pattern_valid(longp));
		longp[SUB_MAX_LEN] = '\0';
		ck_assert(sub_pattern_valid(longp));
	}
}
END_TEST

START_TEST(test_match)
{
	ck_assert(sub_match("*", "anything.at.all"));
	ck_assert(sub_match("message.*", "message.received"));
	ck_assert(sub_match("message.*", "message.reaction.added"));
	ck_assert(!sub_match("message.*", "message"));
	ck_assert(!sub_match("message.*", "messages.received"));
	ck_assert(!sub_match("message.*", "channel.joined"));
	ck_assert(sub_match("message.received", "message.received"));
	ck_assert(!sub_match("message.received", "message.receivedx"));
}
END_TEST

START_TEST(test_scopes)
{
	ck_assert_str_eq(sub_scope_for("message.received"), "messages:read");
	ck_assert_str_eq(sub_scope_for("message.*"), "messages:read");
	ck_assert_str_eq(sub_scope_for("channel.joined"), "channels:read");
	ck_assert_str_eq(sub_scope_for("presence.updated"), "presence:read");
	ck_assert_str_eq(sub_scope_for("vp.status_changed"), "vp:status");
	ck_assert_str_eq(sub_scope_for("call.started"), "calls:join");
	ck_assert_ptr_null(sub_scope_for("system.maintenance"));
	ck_assert_ptr_null(sub_scope_for("*"));
	ck_assert_ptr_null(sub_scope_for("messagex.y"));
}
END_TEST

START_TEST(test_lists_and_wants)
{
	struct sub s;
	const char *p;
	int n = 0;

	memset(&s, 0, sizeof(s));
	ck_assert(!sub_wants(&s, "message.received", NULL)); /* nothing yet */
	ck_assert_int_eq(sub_list_add(&s.types, "message.*", 3), 0);
	ck_assert_int_eq(sub_list_add(&s.types, "vp.status", 3), 0);
	ck_assert_int_eq(sub_list_add(&s.types, "vp.status", 3), 0); /* dup */
	ck_assert_uint_eq(s.types.n, 2);
	ck_assert_int_eq(sub_list_add(&s.types, "call.*", 3), 0);
	ck_assert_int_eq(sub_list_add(&s.types, "presence.*", 3), -1);
	ck_assert_uint_eq(s.types.n, 3);
	for (p = sub_list_next(&s.types, NULL); p; p = sub_list_next(&s.types, p))
		n++;
	ck_assert_int_eq(n, 3);
	ck_assert(sub_wants(&s, "message.received", NULL));
	ck_assert(sub_wants(&s, "vp.status", "c1"));
	ck_assert(!sub_wants(&s, "vp.other", NULL));
	/* Channel filter: events of other channels are dropped, events
	 * without a channel still pass. */
	ck_assert_int_eq(sub_list_add(&s.channels, "c1", 10), 0);
	ck_assert(sub_wants(&s, "message.received", "c1"));
	ck_assert(!sub_wants(&s, "message.received", "c2"));
	ck_assert(sub_wants(&s, "message.received", NULL));
	ck_assert(sub_wants(&s, "message.received", ""));
	ck_assert_int_eq(sub_list_remove(&s.types, "vp.status"), 1);
	ck_assert_int_eq(sub_list_remove(&s.types, "vp.status"), 0);
	ck_assert(!sub_wants(&s, "vp.status", NULL));
	ck_assert(sub_list_has(&s.types, "call.*"));
	ck_assert_int_eq(sub_list_remove(&s.types, "message.*"), 1);
	ck_assert_int_eq(sub_list_remove(&s.types, "call.*"), 1);
	ck_assert_uint_eq(s.types.n, 0);
	ck_assert_ptr_null(s.types.buf); /* emptied: memory returned */
	sub_free(&s);
}
END_TEST

START_TEST(test_ratelimit)
{
	struct ratelimit rl = {0};
	uint64_t retry = 0;
	int ok = 0;

	/* 100 per minute, burst 100: 100 pass at once, the 101st waits. */
	for (int i = 0; i < 100; i++)
		ok += ratelimit_take(&rl, 1000, 100, 60000, 100, &retry);
	ck_assert_int_eq(ok, 100);
	ck_assert_int_eq(ratelimit_take(&rl, 1000, 100, 60000, 100, &retry),
			 0);
	ck_assert_uint_ge(retry, 590);
	ck_assert_uint_le(retry, 601);
	/* 600 ms later one token is back, not two. */
	ck_assert_int_eq(ratelimit_take(&rl, 1601, 100, 60000, 100, NULL), 1);
	ck_assert_int_eq(ratelimit_take(&rl, 1601, 100, 60000, 100, NULL), 0);
	/* A long pause refills to the burst, no more. */
	ok = 0;
	for (int i = 0; i < 200; i++)
		ok += ratelimit_take(&rl, 10000000, 100, 60000, 100, NULL);
	ck_assert_int_eq(ok, 100);
}
END_TEST

START_TEST(test_addrlimit)
{
	struct addrlimit al;
	struct sockaddr_storage a = {0}, b = {0};
	struct sockaddr_in *a4 = (void *)&a, *b4 = (void *)&b;
	int ok = 0;

	a4->sin_family = b4->sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.2", &a4->sin_addr);
	inet_pton(AF_INET, "127.0.0.3", &b4->sin_addr);
	/* 20 per second over 2 workers: 10 here, burst 10. */
	addrlimit_init(&al, 20, 2);
	for (int i = 0; i < 15; i++)
		ok += addrlimit_allow(&al, &a, 1000);
	ck_assert_int_eq(ok, 10);
	ck_assert_int_eq(addrlimit_allow(&al, &b, 1000), 1); /* independent */
	ck_assert_int_eq(addrlimit_allow(&al, &a, 1100), 1); /* refilled one */
	ck_assert_int_eq(addrlimit_allow(&al, &a, 1100), 0);
	addrlimit_free(&al);
	/* 0: unlimited, and no table is allocated. */
	addrlimit_init(&al, 0, 2);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(addrlimit_allow(&al, &a, 1000), 1);
	ck_assert_ptr_null(al.slots);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("sub");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_patterns);
	tcase_add_test(tc, test_match);
	tcase_add_test(tc, test_scopes);
	tcase_add_test(tc, test_lists_and_wants);
	tcase_add_test(tc, test_ratelimit);
	tcase_add_test(tc, test_addrlimit);
	suite_add_tcase(s, tc);
	return check_run(s);
}
