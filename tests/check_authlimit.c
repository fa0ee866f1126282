/* authlimit: the failed-attempt tables (pure). */
#include "config.h"

#include "check_run.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "orchd/authlimit.h"

static struct sockaddr_storage
v4(const char *s)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a = (void *)&ss;

	memset(&ss, 0, sizeof(ss));
	a->sin_family = AF_INET;
	ck_assert_int_eq(inet_pton(AF_INET, s, &a->sin_addr), 1);
	return ss;
}

START_TEST(key_closes_after_limit_until_window_ends)
{
	struct authlimit al;
	struct authlimit_ticket t;
	struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2");
	uint64_t now = 1000, wait;

	authlimit_init(&al, 3, 60000, 42);
	for (int i = 0; i < 3; i++) /* three failures from two addresses */
		ck_assert_uint_eq(
		    authlimit_take(&al, "k1", i % 2 ? &a : &b, now + i, &t), 0);
	wait = authlimit_take(&al, "k1", &a, now + 10, &t);
	ck_assert_uint_eq(wait, 60000 - 10);
	/* Another key from the same addresses is not affected. */
	ck_assert_uint_eq(authlimit_take(&al, "k2", &b, now + 10, &t), 0);
	/* Refused attempts were not charged; the window ends on time. */
	ck_assert_uint_gt(authlimit_take(&al, "k1", &a, now + 59999, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, "k1", &a, now + 60000, &t), 0);
	authlimit_free(&al);
}
END_TEST

START_TEST(address_closes_on_a_spray_and_success_does_not_reset_it)
{
	struct authlimit al;
	struct authlimit_ticket t;
	struct sockaddr_storage a = v4("192.0.2.7"), b = v4("192.0.2.8");
	char key[32];

	authlimit_init(&al, 5, 1000, 7);
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "spray-%d", i);
		ck_assert_uint_eq(authlimit_take(&al, key, &a, 10, &t), 0);
	}
	/* The attacker's own good key succeeds: only its charge goes. */
	ck_assert_uint_eq(authlimit_take(&al, "mine", &a, 11, &t), 0);
	authlimit_refund(&al, "mine", &a, &t);
	ck_assert_uint_eq(authlimit_take(&al, "spray-4", &a, 12, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, "spray-5", &a, 13, &t), 1000 - 3);
	ck_assert_uint_eq(authlimit_take(&al, "mine", &a, 13, &t), 1000 - 3);
	/* The key check may come later (refresh): address only first. */
	ck_assert_uint_gt(authlimit_take(&al, NULL, &a, 14, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, NULL, &b, 14, &t), 0);
	ck_assert_uint_eq(authlimit_take_key(&al, "other", 14, &t), 0);
	ck_assert_int_eq(t.key_charged, 1);
	authlimit_free(&al);
}
END_TEST

START_TEST(refund_and_off)
{
	struct authlimit al;
	struct authlimit_ticket t;
	struct sockaddr_storage a = v4("198.51.100.1");

	authlimit_init(&al, 2, 1000, 1);
	for (int i = 0; i < 50; i++) { /* successes never add up */
		ck_assert_uint_eq(authlimit_take(&al, "k", &a, 5, &t), 0);
		authlimit_refund(&al, "k", &a, &t);
	}
	/* A refund of an old window does not touch the new one. */
	ck_assert_uint_eq(authlimit_take(&al, "k", &a, 5, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, "k", &a, 2000, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, "k", &a, 2001, &t), 0);
	{
		struct authlimit_ticket old = {1, 1, 5, 5};

		authlimit_refund(&al, "k", &a, &old);
	}
	ck_assert_uint_gt(authlimit_take(&al, "k", &a, 2002, &t), 0);
	authlimit_free(&al);

	authlimit_init(&al, 0, 1000, 1);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(authlimit_take(&al, "k", &a, 5, &t), 0);
	ck_assert_int_eq(t.key_charged + t.addr_charged, 0);
	authlimit_free(&al);
}
END_TEST

START_TEST(bounded_and_closed_entries_survive_a_flood)
{
	struct authlimit al;
	struct authlimit_ticket t;
	struct sockaddr_storage a = v4("203.0.113.5"), v[3];
	char key[64];

	authlimit_init(&al, 3, 60000, 99);
	v[0] = v4("203.0.113.6");
	v[1] = v4("203.0.113.7");
	v[2] = v4("203.0.113.8");
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(authlimit_take(&al, "victim", &v[i], 1, &t),
				  0);
	/* Many more keys than slots, each failing once from many
	 * addresses: the closed key keeps its entry (fewest go first). */
	for (int i = 0; i < 20 * AUTHLIMIT_KEY_SLOTS; i++) {
		struct sockaddr_storage b;
		struct sockaddr_in *s = (void *)&b;

		memset(&b, 0, sizeof(b));
		s->sin_family = AF_INET;
		s->sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)i);
		snprintf(key, sizeof(key), "flood-%d", i);
		(void)authlimit_take(&al, key, &b, 2, &t);
	}
	ck_assert_uint_gt(authlimit_take(&al, "victim", &a, 3, &t), 0);
	/* A key longer than the table keeps is cut, not refused. */
	memset(key, 'x', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	ck_assert_uint_eq(authlimit_take(&al, key, &a, 3, &t), 0);
	authlimit_free(&al);
}
END_TEST

START_TEST(ipv6_counts_by_64)
{
	struct authlimit al;
	struct authlimit_ticket t;
	struct sockaddr_storage a[3], m;
	const char *txt[3] = {"2001:db8:1:2::1", "2001:db8:1:2:ffff::9",
			      "2001:db8:1:3::1"};
	char key[16];

	for (int i = 0; i < 3; i++) {
		struct sockaddr_in6 *s = (void *)&a[i];

		memset(&a[i], 0, sizeof(a[i]));
		s->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, txt[i], &s->sin6_addr), 1);
	}
	authlimit_init(&al, 2, 1000, 3);
	ck_assert_uint_eq(authlimit_take(&al, "a", &a[0], 1, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, "b", &a[1], 1, &t), 0);
	/* Same /64: closed; the next /64 is another client. */
	ck_assert_uint_gt(authlimit_take(&al, "c", &a[1], 2, &t), 0);
	ck_assert_uint_eq(authlimit_take(&al, "d", &a[2], 2, &t), 0);
	/* An IPv4-mapped address is the IPv4 address, not a /64. */
	{
		struct sockaddr_in6 *s = (void *)&m;
		struct sockaddr_storage v = v4("192.0.2.1"),
					w = v4("192.0.2.2");

		memset(&m, 0, sizeof(m));
		s->sin6_family = AF_INET6;
		ck_assert_int_eq(
		    inet_pton(AF_INET6, "::ffff:192.0.2.1", &s->sin6_addr), 1);
		for (int i = 0; i < 2; i++) {
			snprintf(key, sizeof(key), "m%d", i);
			ck_assert_uint_eq(authlimit_take(&al, key, &m, 3, &t),
					  0);
		}
		ck_assert_uint_gt(authlimit_take(&al, "m9", &v, 3, &t), 0);
		ck_assert_uint_eq(authlimit_take(&al, "m9", &w, 3, &t), 0);
	}
	authlimit_free(&al);
}
END_TEST

static Suite *
authlimit_suite(void)
{
	Suite *s = suite_create("authlimit");
	TCase *tc = tcase_create("authlimit");

	tcase_add_test(tc, key_closes_after_limit_until_window_ends);
	tcase_add_test(tc,
		       address_closes_on_a_spray_and_success_does_not_reset_it);
	tcase_add_test(tc, refund_and_off);
	tcase_add_test(tc, ipv6_counts_by_64);
	tcase_add_test(tc, bounded_and_closed_entries_survive_a_flood);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(authlimit_suite());
}
