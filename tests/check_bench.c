/* Unit tests for orchctl bench's pure pieces (src/orchctl/bench_proto.c). */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/orchctl/bench.h"
#include "orchd/jwt.h"

START_TEST(test_hist_error_bound)
{
	/* every value lands in a bucket whose value is within 0.8% below it */
	for (uint64_t v = 0; v < (1ULL << 40); v = v * 3 / 2 + 1) {
		static struct bench_hist h;
		uint64_t got;

		memset(&h, 0, sizeof(h));
		bench_hist_add(&h, v);
		got = bench_hist_pct(&h, 0.5);
		ck_assert_uint_le(got, v);
		ck_assert_uint_ge(got + got / 125 + 1, v);
		ck_assert_uint_eq(h.count, 1);
		ck_assert_uint_eq(h.max, v);
	}
}
END_TEST

START_TEST(test_hist_percentiles_and_merge)
{
	static struct bench_hist a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	for (int i = 1; i <= 100; i++)
		bench_hist_add(&a, (uint64_t)i);
	for (int i = 0; i < 100; i++)
		bench_hist_add(&b, 1000000);
	ck_assert_uint_eq(bench_hist_pct(&a, 0.50), 50);
	ck_assert_uint_eq(bench_hist_pct(&a, 0.99), 99);
	ck_assert_uint_eq(bench_hist_pct(&a, 1.0), 100);
	bench_hist_merge(&a, &b);
	ck_assert_uint_eq(a.count, 200);
	ck_assert_uint_eq(a.max, 1000000);
	ck_assert_uint_eq(bench_hist_pct(&a, 0.50), 100);
	ck_assert_uint_le(bench_hist_pct(&a, 0.99), 1000000);
	ck_assert_uint_ge(bench_hist_pct(&a, 0.99), 992000);
	/* empty */
	memset(&b, 0, sizeof(b));
	ck_assert_uint_eq(bench_hist_pct(&b, 0.5), 0);
}
END_TEST

START_TEST(test_frame_roundtrip)
{
	uint8_t out[70000], payload[300];
	size_t n, h;
	uint64_t plen;
	unsigned op, rsv;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	n = bench_frame(out, sizeof(out), 0x1, payload, 300, 0xa1b2c3d4);
	ck_assert_uint_eq(n, 4 + 4 + 300);
	ck_assert_uint_eq(out[0], 0x81);
	ck_assert_uint_eq(out[1], 0x80 | 126);
	ck_assert_uint_eq((out[2] << 8) | out[3], 300);
	for (size_t i = 0; i < 300; i++)
		ck_assert_uint_eq(out[8 + i] ^ out[4 + (i & 3)], payload[i]);
	n = bench_frame(out, sizeof(out), 0x9, "", 0, 1);
	ck_assert_uint_eq(n, 6);
	ck_assert_uint_eq(out[1], 0x80);
	/* does not fit */
	ck_assert_uint_eq(bench_frame(out, 10, 0x1, payload, 300, 1), 0);
	ck_assert_uint_eq(bench_frame(out, sizeof(out), 0x1, out, 65536, 1), 0);

	/* server frames: unmasked */
	{
		const uint8_t small[] = {0x81, 0x03, 'a', 'b', 'c'};
		const uint8_t mid[] = {0x82, 126, 0x01, 0x00};
		const uint8_t big[] = {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0};
		const uint8_t masked[] = {0x81, 0x83, 1, 2, 3, 4};
		const uint8_t frag[] = {0x01, 0x03, 'a', 'b', 'c'};
		const uint8_t rsv1[] = {0xc1, 0x01, 'a'};

		ck_assert_int_eq(
		    bench_frame_parse(small, 5, 8192, &h, &plen, &op, &rsv), 1);
		ck_assert_uint_eq(h, 2);
		ck_assert_uint_eq(plen, 3);
		ck_assert_uint_eq(op, 1);
		ck_assert_uint_eq(rsv, 0);
		ck_assert_int_eq(
		    bench_frame_parse(small, 1, 8192, &h, &plen, &op, &rsv), 0);
		ck_assert_int_eq(
		    bench_frame_parse(mid, 3, 8192, &h, &plen, &op, &rsv), 0);
		ck_assert_int_eq(
		    bench_frame_parse(mid, 4, 8192, &h, &plen, &op, &rsv), 1);
		ck_assert_uint_eq(h, 4);
		ck_assert_uint_eq(plen, 256);
		ck_assert_int_eq(
		    bench_frame_parse(big, 10, 8192, &h, &plen, &op, &rsv),
		    -1); /* 65536 > max */
		ck_assert_int_eq(
		    bench_frame_parse(big, 10, 1 << 20, &h, &plen, &op, &rsv),
		    1);
		ck_assert_uint_eq(plen, 65536);
		ck_assert_int_eq(
		    bench_frame_parse(masked, 6, 8192, &h, &plen, &op, &rsv),
		    -1);
		ck_assert_int_eq(
		    bench_frame_parse(frag, 5, 8192, &h, &plen, &op, &rsv), -1);
		ck_assert_int_eq(
		    bench_frame_parse(rsv1, 3, 8192, &h, &plen, &op, &rsv), 1);
		ck_assert_uint_eq(rsv, 0x40);
	}
}
END_TEST

START_TEST(test_json_scanning)
{
	const char *ev = "{\"type\":\"event\",\"id\":\"x\",\"payload\":{"
			 "\"eventId\":\"e-123-45\",\"seq\":7,"
			 "\"data\":{\"t\":1700000000123456789}}}";
	const uint8_t *p = (const uint8_t *)ev;
	size_t n = strlen(ev);
	int found;

	ck_assert(bench_msg_type_is(p, n, "event"));
	ck_assert(!bench_msg_type_is(p, n, "auth_success"));
	ck_assert_uint_eq(bench_num_after(p, n, "\"seq\":", &found), 7);
	ck_assert_int_eq(found, 1);
	ck_assert_uint_eq(bench_num_after(p, n, "\"data\":{\"t\":", &found),
			  1700000000123456789ULL);
	ck_assert_uint_eq(bench_num_after(p, n, "\"nope\":", &found), 0);
	ck_assert_int_eq(found, 0);
	ck_assert_int_eq(bench_event_counter(p, n), 45);
	ck_assert_int_eq(bench_event_counter((const uint8_t *)"{}", 2), -1);
	ck_assert_int_eq(
	    bench_event_counter((const uint8_t *)"\"eventId\":\"e-1-\"", 16),
	    -1);
}
END_TEST

START_TEST(test_sources)
{
	uint32_t first, count;

	ck_assert_int_eq(
	    bench_parse_sources("127.0.0.2-127.0.0.50", &first, &count), 0);
	ck_assert_uint_eq(first, 0x7f000002);
	ck_assert_uint_eq(count, 49);
	ck_assert_int_eq(bench_parse_sources("127.30.1.1/16", &first, &count),
			 0);
	ck_assert_uint_eq(first, 0x7f1e0101);
	ck_assert_uint_eq(count, 16);
	ck_assert_int_eq(bench_parse_sources("127.0.0.9", &first, &count), 0);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(
	    bench_parse_sources("10.0.0.1-10.0.0.5", &first, &count),
	    -1); /* not loopback */
	ck_assert_int_eq(
	    bench_parse_sources("127.0.0.9-127.0.0.2", &first, &count), -1);
	ck_assert_int_eq(
	    bench_parse_sources("127.255.255.255/2", &first, &count),
	    -1); /* leaves 127/8 */
	ck_assert_int_eq(bench_parse_sources("127.0.0.1/0", &first, &count),
			 -1);
	ck_assert_int_eq(bench_parse_sources("127.0.0.1/x", &first, &count),
			 -1);
	ck_assert_int_eq(bench_parse_sources("", &first, &count), -1);
	ck_assert_int_eq(bench_parse_sources("localhost", &first, &count), -1);
}
END_TEST

START_TEST(test_token_verifies)
{
	static const char secret[] = "0123456789abcdef0123456789abcdef";
	struct bench_opts o;
	struct jwt_keyring *kr = jwt_keyring_new();
	struct jwt_policy pol;
	struct jwt_claims cl;
	char tok[2048], err[256];
	int n;

	memset(&o, 0, sizeof(o));
	o.secret = secret;
	o.secret_len = sizeof(secret) - 1;
	o.scope = "messages:read";
	n = bench_token(&o, "orch-7", "d-70", 42, tok, sizeof(tok));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(jwt_keyring_set_secret(kr, secret, sizeof(secret) - 1),
			 0);
	jwt_policy_init(&pol);
	ck_assert_int_eq(
	    jwt_verify(kr, &pol, tok, (size_t)n, &cl, err, sizeof(err)),
	    JWT_OK);
	ck_assert_str_eq(cl.orchestrator, "orch-7");
	ck_assert_str_eq(cl.daemon_id, "d-70");
	ck_assert_str_eq(cl.organization_id, "org-bench");
	ck_assert_uint_eq(cl.nscopes, 1);
	ck_assert_str_eq(cl.scopes[0], "messages:read");
	ck_assert_str_eq(cl.jti, "bench-d-70-2a");
	/* another secret does not verify it */
	ck_assert_int_eq(jwt_keyring_set_secret(kr, "wrong", 5), 0);
	ck_assert_int_eq(
	    jwt_verify(kr, &pol, tok, (size_t)n, &cl, err, sizeof(err)),
	    JWT_ESIG);
	jwt_keyring_free(kr);
}
END_TEST

START_TEST(test_stats_merge_and_json)
{
	static struct bench_stats a, b;
	struct bench_opts o;
	char *buf = NULL;
	size_t len = 0;
	FILE *fp;

	memset(&o, 0, sizeof(o));
	o.scenario = BENCH_FANOUT;
	o.procs = 2;
	bench_stats_init(&a);
	bench_stats_init(&b);
	a.requested = a.ready = 10;
	b.requested = 10;
	b.ready = 8;
	b.failed = 2;
	b.fail[BF_AUTH] = 2;
	a.ready_s = 0.5;
	b.ready_s = 0.7;
	a.per_conn_min = 3;
	a.per_conn_max = 5;
	b.per_conn_min = 1;
	b.per_conn_max = 9;
	a.msgs_window = 40;
	b.msgs_window = 50;
	a.window_s = b.window_s = 2.0;
	bench_stats_close_code(&a, 1008);
	bench_stats_close_code(&b, 1008);
	bench_stats_close_code(&b, 4006);
	bench_hist_add(&a.lat, 100);
	bench_hist_add(&b.lat, 300);
	bench_stats_merge(&a, &b);
	ck_assert_uint_eq(a.requested, 20);
	ck_assert_uint_eq(a.ready, 18);
	ck_assert_uint_eq(a.fail[BF_AUTH], 2);
	ck_assert_uint_eq(a.per_conn_min, 1);
	ck_assert_uint_eq(a.per_conn_max, 9);
	ck_assert(a.ready_s > 0.69 && a.ready_s < 0.71);
	ck_assert_uint_eq(a.lat.count, 2);

	fp = open_memstream(&buf, &len);
	bench_render_json(fp, &o, &a, "final", "\"x\":1");
	fclose(fp);
	ck_assert_ptr_nonnull(strstr(buf, "\"scenario\":\"fanout\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"ready\":18,"));
	ck_assert_ptr_nonnull(strstr(buf, "\"auth\":2"));
	ck_assert_ptr_nonnull(strstr(buf, "\"close_codes\":{\"1008\":2,"
					  "\"4006\":1}"));
	ck_assert_ptr_nonnull(strstr(buf, "\"messages\":90,\"rate\":45.0,"));
	ck_assert_ptr_nonnull(
	    strstr(buf, "\"hist\":[[100,1],[300,1]],\"x\":1}"));
	free(buf);
}
END_TEST

static Suite *
bench_suite(void)
{
	Suite *s = suite_create("bench");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_hist_error_bound);
	tcase_add_test(tc, test_hist_percentiles_and_merge);
	tcase_add_test(tc, test_frame_roundtrip);
	tcase_add_test(tc, test_json_scanning);
	tcase_add_test(tc, test_sources);
	tcase_add_test(tc, test_token_verifies);
	tcase_add_test(tc, test_stats_merge_and_json);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(bench_suite());
}
