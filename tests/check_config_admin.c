/*
 * check_config_admin: admin_allow, admin_token_file and "listen ... admin"
 * (who may read /metrics, /stats and /status), and the two checks the
 * worker makes with them: config_admin_allowed(), config_admin_token_ok().
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_config.h"
#include "orchd/config.h"

/* A sockaddr for text (IPv4 or IPv6). */
static const struct sockaddr *
peer(const char *text)
{
	static struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
	}
	return (const struct sockaddr *)&ss;
}

START_TEST(test_admin_defaults)
{
	struct config *cfg = config_new();
	char *dump;

	ck_assert_uint_eq(cfg->nadmin_allow, 2);
	ck_assert_str_eq(cfg->admin_allow[0].text, "127.0.0.1");
	ck_assert_str_eq(cfg->admin_allow[1].text, "::1");
	ck_assert_ptr_null(cfg->admin_token);
	ck_assert_ptr_null(cfg->admin_token_file);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("127.0.0.1")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::1")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::ffff:127.0.0.1")),
			 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("127.0.0.2")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("10.1.1.1")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::2")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, NULL), 0);
	/* No token configured: nothing matches, not even "". */
	ck_assert_int_eq(config_admin_token_ok(cfg, "", 0), 0);
	ck_assert_int_eq(config_admin_token_ok(cfg, "x", 1), 0);
	dump = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(dump, "\nadmin_allow 127.0.0.1 ::1\n"));
	ck_assert_ptr_nonnull(strstr(dump, "\n# admin_token_file (not set)\n"));
	free(dump);
	config_free(cfg);
}
END_TEST

START_TEST(test_admin_allow_lists)
{
	struct config *cfg;
	struct errs e;

	/* The first line replaces the default; later ones add. */
	ck_assert_int_eq(load_text(&cfg,
				   "admin_allow 10.0.0.0/8\n"
				   "admin_allow 192.168.0.0/255 [fd00::]/8 "
				   "2001:db8::1\n"
				   "admin_allow 172.16.5.4/12\n",
				   &e),
			 1);
	ck_assert_str_eq(e.msg[0],
			 "t.conf:2: admin_allow: \"192.168.0.0/255\": "
			 "the prefix length is over 32 (expected "
			 "ADDR[/PREFIX], e.g. 127.0.0.1, 10.0.0.0/8 "
			 "or ::1, or none)");
	errs_free(&e);
	config_free(cfg);

	ck_assert_int_eq(load_text(&cfg,
				   "admin_allow 10.0.0.0/8\n"
				   "admin_allow [fd00::]/8 2001:db8::1\n"
				   "admin_allow 172.16.5.4/12 0.0.0.0/0\n",
				   &e),
			 0);
	ck_assert_uint_eq(cfg->nadmin_allow, 5);
	ck_assert_str_eq(cfg->admin_allow[0].text, "10.0.0.0/8");
	ck_assert_str_eq(cfg->admin_allow[1].text, "fd00::/8");
	ck_assert_str_eq(cfg->admin_allow[2].text, "2001:db8::1");
	/* Host bits past the prefix are dropped. */
	ck_assert_str_eq(cfg->admin_allow[3].text, "172.16.0.0/12");
	ck_assert_str_eq(cfg->admin_allow[4].text, "0.0.0.0/0");
	ck_assert_int_eq(config_admin_allowed(cfg, peer("127.0.0.1")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("fdab::1")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("fe00::1")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("2001:db8::1")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("2001:db8::2")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::1")), 0);
	assert_round_trip(cfg);
	config_free(cfg);

	/* Prefixes cut inside a byte. */
	ck_assert_int_eq(
	    load_text(&cfg, "admin_allow 172.16.0.0/12 ::/1\n", &e), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("172.31.255.255")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("172.32.0.0")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("172.15.255.255")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("7fff::1")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("8000::1")), 0);
	/* An IPv4-mapped peer matches IPv4 entries, not the ::/1 entry's. */
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::ffff:172.20.0.1")),
			 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::ffff:10.0.0.1")),
			 1); /* ::ffff:0:0/96 is inside ::/1 */
	config_free(cfg);

	/* An IPv6 entry for the mapped form matches it too. */
	ck_assert_int_eq(
	    load_text(&cfg, "admin_allow ::ffff:10.0.0.0/104\n", &e), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::ffff:10.9.9.9")), 1);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("10.9.9.9")), 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_admin_allow_none)
{
	struct config *cfg;
	struct errs e;
	char *dump;

	ck_assert_int_eq(load_text(&cfg, "admin_allow none\n", &e), 0);
	ck_assert_uint_eq(cfg->nadmin_allow, 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("127.0.0.1")), 0);
	ck_assert_int_eq(config_admin_allowed(cfg, peer("::1")), 0);
	dump = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(dump, "\nadmin_allow none\n"));
	free(dump);
	assert_round_trip(cfg);
	config_free(cfg);

	EXPECT1("admin_allow none 127.0.0.1\n",
		"t.conf:1: admin_allow: ", "none stands alone");
	EXPECT1("admin_allow 127.0.0.1\nadmin_allow none\n",
		"t.conf:2: admin_allow: ", "none stands alone");
	EXPECT1("admin_allow none\nadmin_allow 127.0.0.1\n",
		"t.conf:2: admin_allow: ", "after admin_allow none");
}
END_TEST

START_TEST(test_admin_allow_errors)
{
	EXPECT1("admin_allow\n", "t.conf:1: admin_allow: missing value",
		"ADDR[/PREFIX]...|none");
	EXPECT1("admin_allow 10.0.0.0/33\n", "t.conf:1: admin_allow: ",
		"\"10.0.0.0/33\": the prefix length is over 32");
	EXPECT1("admin_allow ::1/129\n", "t.conf:1: admin_allow: ",
		"\"::1/129\": the prefix length is over 128");
	EXPECT1("admin_allow 10.0.0.0/\n",
		"t.conf:1: admin_allow: ", "the prefix length is not a number");
	EXPECT1("admin_allow 10.0.0.0/-1\n",
		"t.conf:1: admin_allow: ", "the prefix length is not a number");
	EXPECT1("admin_allow 10.0.0.0/8x\n",
		"t.conf:1: admin_allow: ", "the prefix length is not a number");
	EXPECT1("admin_allow 10.0.0.0/99999999999999999999999\n",
		"t.conf:1: admin_allow: ", "the prefix length is over 32");
	EXPECT1("admin_allow 10.0.0.256\n", "t.conf:1: admin_allow: ",
		"\"10.0.0.256\": not an IPv4 or IPv6 address");
	EXPECT1("admin_allow localhost\n", "t.conf:1: admin_allow: ",
		"\"localhost\": not an IPv4 or IPv6 address");
	EXPECT1("admin_allow /8\n",
		"t.conf:1: admin_allow: ", "not an IPv4 or IPv6 address");
	EXPECT1("admin_allow 1.2.3.4 ::1 fe80::1%eth0\n",
		"t.conf:1: admin_allow: ", "not an IPv4 or IPv6 address");
	EXPECT1("admin_allow []\n",
		"t.conf:1: admin_allow: ", "not an IPv4 or IPv6 address");
	/* Every bad line is reported, each with its line number. */
	EXPECTN("admin_allow x\nadmin_allow 1.1.1.1/40\n", 2,
		"t.conf:1: admin_allow: ", "not an IPv4");
}
END_TEST

START_TEST(test_admin_allow_limit)
{
	char text[4096];
	size_t off = 0;
	struct config *cfg;
	struct errs e;

	/* 64 addresses are fine, 65 are too many. */
	for (int line = 0; line < 4; line++) {
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"admin_allow");
		for (int i = 0; i < 16; i++)
			off += (size_t)snprintf(text + off, sizeof(text) - off,
						" 10.%d.%d.1", line, i);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "\n");
	}
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_uint_eq(cfg->nadmin_allow, CONFIG_MAX_ADMIN_ALLOW);
	config_free(cfg);
	snprintf(text + off, sizeof(text) - off, "admin_allow 11.0.0.1\n");
	EXPECT1(text, "t.conf:5: admin_allow: ", "too many addresses");
}
END_TEST

START_TEST(test_admin_token_file)
{
	char p[512], text[700], *dump;
	struct config *cfg;
	struct errs e;

	write_tmp(p, sizeof(p), "tok", "Tk-0123456789abcdef-Zz\r\n", 24);
	snprintf(text, sizeof(text), "admin_token_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_str_eq(cfg->admin_token, "Tk-0123456789abcdef-Zz");
	ck_assert_uint_eq(cfg->admin_token_len, 22);
	ck_assert_int_eq(
	    config_admin_token_ok(cfg, "Tk-0123456789abcdef-Zz", 22), 1);
	ck_assert_int_eq(
	    config_admin_token_ok(cfg, "Tk-0123456789abcdef-Zy", 22), 0);
	ck_assert_int_eq(
	    config_admin_token_ok(cfg, "Tk-0123456789abcdef-Z", 21), 0);
	ck_assert_int_eq(
	    config_admin_token_ok(cfg, "Tk-0123456789abcdef-ZzTk-01", 27), 0);
	ck_assert_int_eq(config_admin_token_ok(cfg, "", 0), 0);
	ck_assert_int_eq(config_admin_token_ok(cfg, NULL, 0), 0);
	/* -T shows the path, never the token. */
	dump = dump_text(cfg);
	ck_assert_ptr_null(strstr(dump, "0123456789abcdef"));
	ck_assert_ptr_nonnull(strstr(dump, text));
	free(dump);
	assert_round_trip(cfg);
	config_free(cfg);

	/* Too short (the newline is not counted), empty, missing, a dir. */
	write_tmp(p, sizeof(p), "short", "0123456789abcde\n", 16);
	snprintf(text, sizeof(text), "admin_token_file %s\n", p);
	EXPECT1(text, "t.conf:1: admin_token_file: ", "holds 15 bytes");
	write_tmp(p, sizeof(p), "empty", "", 0);
	snprintf(text, sizeof(text), "admin_token_file %s\n", p);
	EXPECT1(text, "t.conf:1: admin_token_file: ", "holds 0 bytes");
	write_tmp(p, sizeof(p), "spaces", "0123456789 abcdef\n", 18);
	snprintf(text, sizeof(text), "admin_token_file %s\n", p);
	EXPECT1(text, "t.conf:1: admin_token_file: ", "one line");
	snprintf(text, sizeof(text), "admin_token_file %s/nonexistent\n",
		 tmpdir);
	EXPECT1(text, "t.conf:1: admin_token_file: ", "cannot read");
	snprintf(text, sizeof(text), "admin_token_file %s\n", tmpdir);
	EXPECT1(text, "t.conf:1: admin_token_file: ", "not a regular file");
	EXPECT1("admin_token_file relative/tok\n",
		"t.conf:1: admin_token_file: ", "not an absolute path");
	{
		static char big[CONFIG_ADMIN_TOKEN_MAX + 10];

		memset(big, 'a', sizeof(big));
		write_tmp(p, sizeof(p), "big", big, sizeof(big));
		snprintf(text, sizeof(text), "admin_token_file %s\n", p);
		EXPECT1(text, "t.conf:1: admin_token_file: ", "larger than");
	}
}
END_TEST

START_TEST(test_listen_admin)
{
	char cert[512], key[512], text[1500];
	struct config *cfg;
	struct errs e;
	char *dump;

	write_tmp(cert, sizeof(cert), "admin-cert.pem", "cert", 4);
	write_tmp(key, sizeof(key), "admin-key.pem", "key", 3);
	snprintf(text, sizeof(text),
		 "listen 127.0.0.1:9000\n"
		 "listen 127.0.0.1:9100 admin\n"
		 "listen [::1]:9443 admin tls\n"
		 "listen [::1]:9444 tls admin\n"
		 "tls_certificate %s\ntls_certificate_key %s\n",
		 cert, key);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_int_eq(cfg->listen[0].admin, 0);
	ck_assert_int_eq(cfg->listen[1].admin, 1);
	ck_assert_int_eq(cfg->listen[1].tls, 0);
	ck_assert_int_eq(cfg->listen[2].admin, 1);
	ck_assert_int_eq(cfg->listen[2].tls, 1);
	ck_assert_int_eq(cfg->listen[3].admin, 1);
	ck_assert_int_eq(cfg->listen[3].tls, 1);
	dump = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(dump, "\nlisten 127.0.0.1:9100 admin\n"));
	ck_assert_ptr_nonnull(strstr(dump, "\nlisten [::1]:9443 tls admin\n"));
	free(dump);
	assert_round_trip(cfg);
	config_free(cfg);
	EXPECT1("listen 127.0.0.1:9000 admin admin\n",
		"t.conf:1: listen: ", "option admin given twice");
	EXPECT1("listen 127.0.0.1:9000 adm\n",
		"t.conf:1: listen: ", "unknown option \"adm\"");
}
END_TEST

void
add_admin_tests(Suite *s)
{
	TCase *tc = tcase_create("admin");

	tcase_add_test(tc, test_admin_defaults);
	tcase_add_test(tc, test_admin_allow_lists);
	tcase_add_test(tc, test_admin_allow_none);
	tcase_add_test(tc, test_admin_allow_errors);
	tcase_add_test(tc, test_admin_allow_limit);
	tcase_add_test(tc, test_admin_token_file);
	tcase_add_test(tc, test_listen_admin);
	suite_add_tcase(s, tc);
}
