/*
 * check_config_protocol: the directives of the daemon protocol (PROTOCOL.md
 * sections 2-5 and 8) -- access token verification, required scopes,
 * revocation, rate limits, Redis timeout and session TTL.  Part of the
 * tests/check_config program; the helpers are in tests/check_config.c.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "check_config.h"
#include "orchd/config.h"
#include "orchd/util.h"

#define ES256 DATA "/jwt-es256.pub.pem"
#define RS256 DATA "/jwt-rs256.pub.pem"

/* The dump of cfg holds this whole line. */
static void
assert_dump_has(const struct config *cfg, const char *line)
{
	char *text = dump_text(cfg), want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	ck_assert_msg(strstr(text, want) != NULL, "no line \"%s\" in:\n%s",
		      line, text);
	free(text);
}

/* Parse text, which must be valid, and check its dump re-parses the same. */
static struct config *
load_ok(const char *text)
{
	struct config *cfg;
	struct errs e;
	int n = load_text(&cfg, text, &e);

	ck_assert_msg(n == 0, "%d errors for \"%s\"; first: %s", n, text,
		      e.n > 0 ? e.msg[0] : "");
	errs_free(&e);
	assert_round_trip(cfg);
	return cfg;
}

/* ---- defaults ------------------------------------------------------------ */

START_TEST(test_protocol_defaults)
{
	struct config *cfg = config_new();
	struct config_doc doc;

	ck_assert_uint_eq(cfg->njwt_public_keys, 0);
	ck_assert_ptr_null(cfg->jwt_public_keys);
	ck_assert_ptr_null(cfg->jwt_public_key_kids);
	ck_assert_ptr_null(cfg->jwt_issuer);
	ck_assert_ptr_null(cfg->jwt_audience);
	ck_assert_uint_eq(cfg->jwt_leeway_ms, 30000);
	ck_assert_uint_eq(cfg->nrequired_scopes, 0);
	ck_assert_ptr_null(cfg->required_scopes);
	ck_assert_int_eq(cfg->revocation_check, CONFIG_REVOCATION_STRICT);
	ck_assert_uint_eq(cfg->rate_limit_messages, 100);
	ck_assert_uint_eq(cfg->rate_limit_burst, 0);
	ck_assert_uint_eq(config_rate_limit_burst(cfg), 100);
	ck_assert_uint_eq(cfg->rate_limit_grace_ms, 10000);
	ck_assert_uint_eq(cfg->connection_rate_per_address, 0);
	ck_assert_uint_eq(cfg->auth_failure_limit, 10);
	ck_assert_uint_eq(cfg->auth_failure_window_ms, 60000);
	ck_assert_uint_eq(cfg->redis_timeout_ms, 2000);
	ck_assert_uint_eq(cfg->session_ttl_ms, 0);
	ck_assert_uint_eq(config_session_ttl_ms(cfg), 90000);

	assert_dump_has(cfg, "# jwt_public_key (not set)");
	assert_dump_has(cfg, "# jwt_issuer (not set)");
	assert_dump_has(cfg, "# jwt_audience (not set)");
	assert_dump_has(cfg, "jwt_leeway 30s");
	assert_dump_has(cfg, "# required_scopes (not set: no scope required)");
	assert_dump_has(cfg, "revocation_check strict");
	assert_dump_has(cfg, "rate_limit_messages 100");
	assert_dump_has(cfg, "rate_limit_burst 0 # 100 (rate_limit_messages)");
	assert_dump_has(cfg, "rate_limit_grace 10s");
	assert_dump_has(cfg, "connection_rate_per_address 0");
	assert_dump_has(cfg, "auth_failure_limit 10 per 1m");
	assert_dump_has(cfg, "redis_timeout 2s");
	assert_dump_has(cfg, "session_ttl 0s # 90s (3 x heartbeat_interval)");
	assert_round_trip(cfg);
	config_free(cfg);

	/* No secret and no key: valid (the daemon refuses every auth). */
	EXPECT0("");
	EXPECT0("required_scopes messages:read\njwt_issuer x\n");

	/* The two lists are the repeatable ones. */
	for (size_t i = 0; config_directive_doc(i, &doc) == 0; i++) {
		int list = strcmp(doc.name, "jwt_public_key") == 0 ||
			   strcmp(doc.name, "required_scopes") == 0;

		if (strncmp(doc.name, "jwt_", 4) == 0 ||
		    strncmp(doc.name, "rate_", 5) == 0 ||
		    strcmp(doc.name, "required_scopes") == 0)
			ck_assert_int_eq(doc.repeatable, list);
	}
}
END_TEST

/* ---- jwt_public_key ------------------------------------------------------ */

START_TEST(test_public_key)
{
	struct config *cfg;

	cfg = load_ok("jwt_public_key " ES256 "\n");
	ck_assert_uint_eq(cfg->njwt_public_keys, 1);
	ck_assert_str_eq(cfg->jwt_public_keys[0], ES256);
	ck_assert_ptr_null(cfg->jwt_public_key_kids[0]);
	assert_dump_has(cfg, "jwt_public_key " ES256);
	config_free(cfg);

	/* The lines add up, in order; one key may lack a kid, anywhere. */
	cfg = load_ok("jwt_public_key " ES256 " ec-2024\n"
		      "# rotation\n"
		      "jwt_public_key " RS256 "\n"
		      "jwt_public_key \"" RS256 "\" \"rsa key #2\"\n"
		      "jwt_public_key " ES256 " EC-2024\n");
	ck_assert_uint_eq(cfg->njwt_public_keys, 4);
	ck_assert_str_eq(cfg->jwt_public_key_kids[0], "ec-2024");
	ck_assert_ptr_null(cfg->jwt_public_key_kids[1]);
	ck_assert_str_eq(cfg->jwt_public_keys[1], RS256);
	ck_assert_str_eq(cfg->jwt_public_key_kids[2], "rsa key #2");
	ck_assert_str_eq(cfg->jwt_public_keys[2], RS256);
	/* Kids compare byte for byte: case matters. */
	ck_assert_str_eq(cfg->jwt_public_key_kids[3], "EC-2024");
	assert_dump_has(cfg, "jwt_public_key " ES256 " ec-2024\n"
			     "jwt_public_key " RS256 "\n"
			     "jwt_public_key " RS256 " \"rsa key #2\"\n"
			     "jwt_public_key " ES256 " EC-2024");
	config_free(cfg);

	/* A kid of 1 and of 127 printable characters, space and '~' too. */
	char kid[200], text[600];
	memset(kid, 'k', sizeof(kid));
	kid[CONFIG_KID_MAX] = '\0';
	kid[0] = '~';
	kid[1] = ' ';
	snprintf(text, sizeof(text),
		 "jwt_public_key " ES256 " \"%s\"\njwt_public_key " RS256
		 " !\n",
		 kid);
	cfg = load_ok(text);
	ck_assert_str_eq(cfg->jwt_public_key_kids[0], kid);
	ck_assert_str_eq(cfg->jwt_public_key_kids[1], "!");
	config_free(cfg);

	/* Thirty-two keys are fine, the thirty-third is one too many. */
	char big[32 * 200];
	size_t n = 0;
	for (int i = 1; i <= CONFIG_MAX_JWT_KEYS + 1; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
				      "jwt_public_key " ES256 " k%d\n", i);
	EXPECT1(big, "t.conf:33: jwt_public_key: too many keys (at most 32)",
		"");
	big[n - strlen("jwt_public_key " ES256 " k33\n")] = '\0';
	cfg = load_ok(big);
	ck_assert_uint_eq(cfg->njwt_public_keys, CONFIG_MAX_JWT_KEYS);
	config_free(cfg);
}
END_TEST

START_TEST(test_public_key_errors)
{
	char fifo[512], text[1024], kid[200];

	EXPECT1("jwt_public_key\n", "t.conf:1: jwt_public_key: missing value",
		"jwt_public_key PATH [KID]");
	EXPECT1("jwt_public_key " ES256 " a b\n",
		"t.conf:1: jwt_public_key: too many values",
		"jwt_public_key PATH [KID]");
	EXPECT1("jwt_public_key keys/jwt.pem\n",
		"t.conf:1: jwt_public_key: \"keys/jwt.pem\" is not an absolute "
		"path",
		"");
	EXPECT1("jwt_public_key \"\" kid\n",
		"t.conf:1: jwt_public_key: \"\" is not an absolute path", "");

	/* Unreadable: missing, a directory, a FIFO (which must not block). */
	EXPECT1("jwt_public_key /nonexistent/orchd/jwt.pem\n",
		"t.conf:1: jwt_public_key: cannot read "
		"\"/nonexistent/orchd/jwt.pem\"",
		"No such file");
	EXPECT1("jwt_public_key " DATA "\n",
		"t.conf:1: jwt_public_key: \"" DATA "\" is not a regular file",
		"");
	snprintf(fifo, sizeof(fifo), "%s/key.fifo", tmpdir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	snprintf(text, sizeof(text), "jwt_public_key %s k\n", fifo);
	EXPECT1(text, "t.conf:1: jwt_public_key: ", "is not a regular file");
	snprintf(text, sizeof(text), "jwt_secret_file %s\n", fifo);
	EXPECT1(text, "t.conf:1: jwt_secret_file: ", "is not a regular file");
	if (geteuid() != 0) { /* root reads anything */
		char p[512];

		write_tmp(p, sizeof(p), "noread.pem", "x", 1);
		ck_assert_int_eq(chmod(p, 0), 0);
		snprintf(text, sizeof(text), "jwt_public_key %s\n", p);
		EXPECT1(text, "t.conf:1: jwt_public_key: cannot read ",
			"Permission denied");
	}

	/* Bad kids. */
	EXPECT1("jwt_public_key " ES256 " \"\"\n",
		"t.conf:1: jwt_public_key: empty kid", "");
	memset(kid, 'k', sizeof(kid));
	kid[CONFIG_KID_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "jwt_public_key " ES256 " %s\n", kid);
	EXPECT1(text, "t.conf:1: jwt_public_key: kid \"kkk",
		"is longer than 127 characters");
	EXPECT1("jwt_public_key " ES256 " \"a\tb\"\n",
		"t.conf:1: jwt_public_key: kid \"a?b\" holds a character that "
		"is not printable ASCII",
		"");
	EXPECT1("jwt_public_key " ES256 " cl\xc3\xa9\n",
		"t.conf:1: jwt_public_key: kid ", "not printable ASCII");
	EXPECT1("jwt_public_key " ES256 " \x7f\n",
		"t.conf:1: jwt_public_key: kid ", "not printable ASCII");

	/* Duplicate kids, two keys without kid: both lines named. */
	EXPECT1("jwt_public_key " ES256 " k1\n"
		"jwt_public_key " RS256 " k2\n"
		"jwt_public_key " RS256 " k1\n",
		"t.conf:3: jwt_public_key: duplicate kid \"k1\" (first given "
		"at t.conf:1)",
		"");
	EXPECT1("jwt_public_key " ES256 "\n\n"
		"jwt_public_key " RS256 " k\n"
		"jwt_public_key " RS256 "\n",
		"t.conf:4: jwt_public_key: a second key without kid (the "
		"first is at t.conf:1); at most one key may lack a kid",
		"");

	/* Across an include, the message names the included file. */
	char inc[512];
	write_tmp(inc, sizeof(inc), "keys.conf",
		  "# keys\njwt_public_key " ES256 " shared\n",
		  strlen("# keys\njwt_public_key " ES256 " shared\n"));
	snprintf(text, sizeof(text),
		 "include %s\njwt_public_key " RS256 " shared\n", inc);
	char want[700];
	snprintf(want, sizeof(want),
		 "t.conf:2: jwt_public_key: duplicate kid \"shared\" (first "
		 "given at %s:2)",
		 inc);
	EXPECT1(text, want, "");

	/* A refused key takes no kid: the next line may use it. */
	struct config *cfg;
	struct errs e;
	ck_assert_int_eq(load_text(&cfg,
				   "jwt_public_key /nonexistent/a.pem k\n"
				   "jwt_public_key " ES256 " k\n"
				   "jwt_public_key " RS256 " \"\"\n",
				   &e),
			 2);
	ck_assert(has_prefix(e.msg[0], "t.conf:1: jwt_public_key: cannot"));
	ck_assert(has_prefix(e.msg[1], "t.conf:3: jwt_public_key: empty kid"));
	ck_assert_uint_eq(cfg->njwt_public_keys, 1);
	ck_assert_str_eq(cfg->jwt_public_keys[0], ES256);
	errs_free(&e);
	config_free(cfg);
}
END_TEST

/* ---- jwt_issuer, jwt_audience, jwt_leeway ------------------------------- */

START_TEST(test_claims)
{
	static const char *const names[] = {"jwt_issuer", "jwt_audience"};
	char text[600], prefix[128], v[300];
	struct config *cfg;

	cfg = load_ok("jwt_issuer https://auth.example.com/\n"
		      "jwt_audience \"orchd #1\"\n");
	ck_assert_str_eq(cfg->jwt_issuer, "https://auth.example.com/");
	ck_assert_str_eq(cfg->jwt_audience, "orchd #1");
	assert_dump_has(cfg, "jwt_issuer https://auth.example.com/");
	assert_dump_has(cfg, "jwt_audience \"orchd #1\"");
	config_free(cfg);

	for (size_t i = 0; i < UTIL_NELEM(names); i++) {
		memset(v, 'i', sizeof(v));
		v[CONFIG_CLAIM_MAX] = '\0';
		snprintf(text, sizeof(text), "%s %s\n", names[i], v);
		cfg = load_ok(text);
		config_free(cfg);
		v[CONFIG_CLAIM_MAX] = 'i';
		v[CONFIG_CLAIM_MAX + 1] = '\0';
		snprintf(text, sizeof(text), "%s %s\n", names[i], v);
		snprintf(prefix, sizeof(prefix), "t.conf:1: %s: \"iii",
			 names[i]);
		EXPECT1(text, prefix, "is longer than 255 bytes");

		snprintf(text, sizeof(text), "%s \"a\tb\"\n", names[i]);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:1: %s: \"a?b\" holds a control character",
			 names[i]);
		EXPECT1(text, prefix, "");
		snprintf(text, sizeof(text), "%s \"\"\n", names[i]);
		snprintf(prefix, sizeof(prefix), "t.conf:1: %s: empty value",
			 names[i]);
		EXPECT1(text, prefix, "");
		snprintf(text, sizeof(text), "%s a\n%s b\n", names[i],
			 names[i]);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:2: %s: duplicate directive", names[i]);
		EXPECT1(text, prefix, "t.conf:1");
		snprintf(text, sizeof(text), "%s a b\n", names[i]);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:1: %s: too many values", names[i]);
		EXPECT1(text, prefix, "");
	}
}
END_TEST

static const char *const bad_durations[] = {
	"10x", "-1s", "1.5s", "s", "5S", "1h30m",
};

START_TEST(test_leeway)
{
	static const struct range_case rc = {"jwt_leeway", "0s", "10m", NULL,
					     "601s", "0s..10m"};
	struct config *cfg;

	check_range(&rc, "duration", bad_durations, UTIL_NELEM(bad_durations),
		    "99999999999999999999s");
	/* Token times are whole seconds: so is the leeway. */
	EXPECT1("jwt_leeway 1500ms\n",
		"t.conf:1: jwt_leeway: \"1500ms\" is not a whole number of "
		"seconds",
		"");
	EXPECT1("jwt_leeway 1ms\n", "t.conf:1: jwt_leeway: ", "whole number");
	cfg = load_ok("jwt_leeway 2000ms\n");
	ck_assert_uint_eq(cfg->jwt_leeway_ms, 2000);
	assert_dump_has(cfg, "jwt_leeway 2s");
	config_free(cfg);
	cfg = load_ok("jwt_leeway 45\n");
	ck_assert_uint_eq(cfg->jwt_leeway_ms, 45000);
	config_free(cfg);
}
END_TEST

/* ---- required_scopes, revocation_check ----------------------------------- */

START_TEST(test_required_scopes)
{
	char scope[100], text[4096], want[256];
	struct config *cfg;
	struct errs e;

	/* Values add up, across lines and files, in order. */
	cfg = load_ok("required_scopes messages:read channels:read\n"
		      "# more\n"
		      "required_scopes vp:status\n"
		      "required_scopes Az09_:.-\n");
	ck_assert_uint_eq(cfg->nrequired_scopes, 4);
	ck_assert_str_eq(cfg->required_scopes[0], "messages:read");
	ck_assert_str_eq(cfg->required_scopes[1], "channels:read");
	ck_assert_str_eq(cfg->required_scopes[2], "vp:status");
	ck_assert_str_eq(cfg->required_scopes[3], "Az09_:.-");
	assert_dump_has(cfg, "required_scopes messages:read\n"
			     "required_scopes channels:read\n"
			     "required_scopes vp:status\n"
			     "required_scopes Az09_:.-");
	config_free(cfg);

	memset(scope, 's', sizeof(scope));
	scope[CONFIG_SCOPE_MAX] = '\0';
	snprintf(text, sizeof(text), "required_scopes x %s\n", scope);
	cfg = load_ok(text);
	ck_assert_uint_eq(cfg->nrequired_scopes, 2);
	config_free(cfg);
	scope[CONFIG_SCOPE_MAX] = 's';
	scope[CONFIG_SCOPE_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "required_scopes x %s\n", scope);
	EXPECT1(text, "t.conf:1: required_scopes: \"sss",
		"is not a scope (1 to 64 characters");

	static const char *const bad[] = {
		"\"\"", "\"a b\"", "x*", "*", "a/b", "messages:read,",
		"sc\xc3\xb6pe", "a;", "\"a\tb\"",
	};
	for (size_t i = 0; i < UTIL_NELEM(bad); i++) {
		snprintf(text, sizeof(text), "# x\nrequired_scopes %s\n",
			 bad[i]);
		EXPECT1(text, "t.conf:2: required_scopes: ",
			"is not a scope (1 to 64 characters among A-Z, a-z, "
			"0-9, \"_\", \":\", \".\" and \"-\")");
	}

	/* Each bad value of a line is reported; the good ones still count. */
	ck_assert_int_eq(load_text(&cfg, "required_scopes a b! c d? a\n", &e),
			 3);
	ck_assert(has_prefix(e.msg[0], "t.conf:1: required_scopes: \"b!\""));
	ck_assert(has_prefix(e.msg[1], "t.conf:1: required_scopes: \"d?\""));
	ck_assert_str_eq(e.msg[2], "t.conf:1: required_scopes: duplicate "
				   "scope \"a\" (first given at t.conf:1)");
	ck_assert_uint_eq(cfg->nrequired_scopes, 2);
	errs_free(&e);
	config_free(cfg);

	EXPECT1("required_scopes a b\nrequired_scopes c\nrequired_scopes b\n",
		"t.conf:3: required_scopes: duplicate scope \"b\" (first "
		"given at t.conf:1)",
		"");
	EXPECT1("required_scopes\n", "t.conf:1: required_scopes: missing value",
		"required_scopes SCOPE...");

	/* 32 in all (a token carries no more), over several lines. */
	size_t n = 0;
	for (int i = 1; i <= CONFIG_MAX_SCOPES + 1; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%ss%d%s",
				      i % 10 == 1 ? "required_scopes " : "", i,
				      i % 10 == 0 ? "\n" : " ");
	text[n - 1] = '\n';
	snprintf(want, sizeof(want),
		 "t.conf:4: required_scopes: too many scopes (at most %d)",
		 CONFIG_MAX_SCOPES);
	EXPECT1(text, want, "");
	strcpy(strstr(text, " s33"), "\n");
	cfg = load_ok(text);
	ck_assert_uint_eq(cfg->nrequired_scopes, CONFIG_MAX_SCOPES);
	ck_assert_str_eq(cfg->required_scopes[31], "s32");
	config_free(cfg);
}
END_TEST

START_TEST(test_revocation_check)
{
	static const struct {
		const char *word;
		int value;
	} good[] = {
		{"strict", CONFIG_REVOCATION_STRICT},
		{"best-effort", CONFIG_REVOCATION_BEST_EFFORT},
		{"off", CONFIG_REVOCATION_OFF},
	};
	static const char *const bad[] = {"Strict", "best_effort",
					  "besteffort", "none", "on", "0"};
	char text[128], line[128], prefix[128];
	struct config *cfg;

	for (size_t i = 0; i < UTIL_NELEM(good); i++) {
		snprintf(text, sizeof(text), "revocation_check %s\n",
			 good[i].word);
		cfg = load_ok(text);
		ck_assert_int_eq(cfg->revocation_check, good[i].value);
		snprintf(line, sizeof(line), "revocation_check %s",
			 good[i].word);
		assert_dump_has(cfg, line);
		config_free(cfg);
	}
	for (size_t i = 0; i < UTIL_NELEM(bad); i++) {
		snprintf(text, sizeof(text), "revocation_check %s\n", bad[i]);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:1: revocation_check: \"%s\" is not one of "
			 "strict, best-effort or off",
			 bad[i]);
		EXPECT1(text, prefix, "");
	}
	EXPECT1("revocation_check off\nrevocation_check strict\n",
		"t.conf:2: revocation_check: duplicate directive", "t.conf:1");
}
END_TEST

/* ---- rate limits --------------------------------------------------------- */

START_TEST(test_rate_limits)
{
	static const char *const bad_numbers[] = {
		"x", "-1", "1.5", "1e3", "0x10", "+5", "5k",
	};
	static const struct range_case numbers[] = {
		{"rate_limit_messages", "1", "1000000", "0", "1000001",
		 "1..1000000"},
		{"connection_rate_per_address", "0", "1000000", NULL,
		 "1000001", "0..1000000"},
	};
	static const struct range_case grace = {"rate_limit_grace", "0s",
						"10m", NULL, "601s",
						"0s..10m"};
	struct config *cfg;

	for (size_t i = 0; i < UTIL_NELEM(numbers); i++)
		check_range(&numbers[i], "number", bad_numbers,
			    UTIL_NELEM(bad_numbers), "99999999999999999999");
	check_range(&grace, "duration", bad_durations,
		    UTIL_NELEM(bad_durations), "99999999999999999999s");

	/* rate_limit_burst: 0 (the default) means rate_limit_messages. */
	cfg = load_ok("rate_limit_messages 250\n");
	ck_assert_uint_eq(cfg->rate_limit_burst, 0);
	ck_assert_uint_eq(config_rate_limit_burst(cfg), 250);
	assert_dump_has(cfg, "rate_limit_burst 0 # 250 (rate_limit_messages)");
	config_free(cfg);
	cfg = load_ok("rate_limit_burst 1000000\nrate_limit_messages 1\n");
	ck_assert_uint_eq(cfg->rate_limit_burst, 1000000);
	ck_assert_uint_eq(config_rate_limit_burst(cfg), 1000000);
	assert_dump_has(cfg, "rate_limit_burst 1000000");
	config_free(cfg);
	cfg = load_ok("rate_limit_burst 1\n");
	ck_assert_uint_eq(config_rate_limit_burst(cfg), 1);
	assert_dump_has(cfg, "rate_limit_burst 1");
	config_free(cfg);
	EXPECT1("rate_limit_burst 1000001\n",
		"t.conf:1: rate_limit_burst: \"1000001\" is out of range "
		"(0..1000000)",
		"");
	EXPECT1("rate_limit_burst -1\n",
		"t.conf:1: rate_limit_burst: \"-1\" is not a number "
		"(0..1000000)",
		"");
	EXPECT1("rate_limit_burst 99999999999999999999\n",
		"t.conf:1: rate_limit_burst: ", "out of range");

	cfg = load_ok("rate_limit_messages 60\nrate_limit_grace 90s\n"
		      "connection_rate_per_address 5\n");
	ck_assert_uint_eq(cfg->rate_limit_messages, 60);
	ck_assert_uint_eq(cfg->rate_limit_grace_ms, 90000);
	ck_assert_uint_eq(cfg->connection_rate_per_address, 5);
	assert_dump_has(cfg, "rate_limit_grace 90s");
	config_free(cfg);

	cfg = load_ok("auth_failure_limit 3 per 90s\n");
	ck_assert_uint_eq(cfg->auth_failure_limit, 3);
	ck_assert_uint_eq(cfg->auth_failure_window_ms, 90000);
	assert_dump_has(cfg, "auth_failure_limit 3 per 90s");
	assert_round_trip(cfg);
	config_free(cfg);
	cfg = load_ok("auth_failure_limit 0\n");
	ck_assert_uint_eq(cfg->auth_failure_limit, 0);
	assert_dump_has(cfg, "auth_failure_limit 0");
	assert_round_trip(cfg);
	config_free(cfg);
	EXPECT1("auth_failure_limit 10\n",
		"t.conf:1: auth_failure_limit: expected N per DURATION", "");
	EXPECT1("auth_failure_limit 10 in 1m\n",
		"t.conf:1: auth_failure_limit: expected N per DURATION", "");
	EXPECT1("auth_failure_limit 10 per 100ms\n",
		"t.conf:1: auth_failure_limit: \"100ms\" is not a duration "
		"in 1s..1d",
		"");
	EXPECT1("auth_failure_limit ten per 1m\n",
		"t.conf:1: auth_failure_limit: \"ten\" is not a number", "");
	EXPECT1("auth_failure_limit 1000001 per 1m\n",
		"t.conf:1: auth_failure_limit: \"1000001\" is out of range "
		"(0..1000000)",
		"");
	EXPECT1("auth_failure_limit 1 per 1m extra\n",
		"t.conf:1: auth_failure_limit: ", "");
}
END_TEST

/* ---- redis_timeout, session_ttl ------------------------------------------ */

START_TEST(test_redis_timeout)
{
	static const struct range_case rc = {"redis_timeout", "100ms", "1m",
					     "99ms", "61s", "100ms..1m"};
	struct config *cfg;

	check_range(&rc, "duration", bad_durations, UTIL_NELEM(bad_durations),
		    "99999999999999999999s");
	EXPECT1("redis_timeout 0\n",
		"t.conf:1: redis_timeout: \"0\" is out of range (100ms..1m)",
		"");
	cfg = load_ok("redis_timeout 250ms\n");
	ck_assert_uint_eq(cfg->redis_timeout_ms, 250);
	config_free(cfg);
}
END_TEST

START_TEST(test_session_ttl)
{
	struct config *cfg;
	struct errs e;

	cfg = load_ok("session_ttl 1d\n");
	ck_assert_uint_eq(cfg->session_ttl_ms, 86400000);
	ck_assert_uint_eq(config_session_ttl_ms(cfg), 86400000);
	assert_dump_has(cfg, "session_ttl 1d");
	config_free(cfg);

	/* 0 follows heartbeat_interval, whatever sets it. */
	cfg = load_ok("heartbeat_interval 1h\nsession_ttl 0\n");
	ck_assert_uint_eq(cfg->session_ttl_ms, 0);
	ck_assert_uint_eq(config_session_ttl_ms(cfg), 3 * 3600000);
	assert_dump_has(cfg, "session_ttl 0s # 3h (3 x heartbeat_interval)");
	config_free(cfg);

	EXPECT1("session_ttl 86401s\n",
		"t.conf:1: session_ttl: \"86401s\" is out of range (0s..1d)",
		"");
	EXPECT1("session_ttl 2d\n", "t.conf:1: session_ttl: ", "out of range");
	EXPECT1("session_ttl 1.5h\n",
		"t.conf:1: session_ttl: \"1.5h\" is not a duration", "");
	EXPECT1("session_ttl 1500ms\n",
		"t.conf:1: session_ttl: \"1500ms\" is not a whole number of "
		"seconds",
		"");
	cfg = load_ok("session_ttl 61000ms\n");
	assert_dump_has(cfg, "session_ttl 61s");
	config_free(cfg);
	EXPECT1("session_ttl 1h\nsession_ttl 2h\n",
		"t.conf:2: session_ttl: duplicate directive", "t.conf:1");

	/* It must outlive the interval between two heartbeats. */
	EXPECT1("# ttl\nsession_ttl 30s\n",
		"t.conf:2: session_ttl: 30s is not longer than "
		"heartbeat_interval (30s, its default): session keys would "
		"expire between two heartbeats",
		"");
	EXPECT1("heartbeat_interval 10s\nsession_ttl 5s\n",
		"t.conf:2: session_ttl: 5s is not longer than "
		"heartbeat_interval (10s, set at t.conf:1)",
		"");
	cfg = load_ok("session_ttl 31s\n");
	ck_assert_uint_eq(config_session_ttl_ms(cfg), 31000);
	config_free(cfg);

	/* The environment counts, and is named. */
	setenv("WS_HEARTBEAT_INTERVAL", "60000", 1);
	EXPECT1("session_ttl 45s\n",
		"t.conf:1: session_ttl: 45s is not longer than "
		"heartbeat_interval (1m, set by the environment variable "
		"WS_HEARTBEAT_INTERVAL)",
		"");
	ck_assert_int_eq(load_text(&cfg, "session_ttl 0\n", &e), 0);
	ck_assert_uint_eq(config_session_ttl_ms(cfg), 180000);
	config_free(cfg);
	unsetenv("WS_HEARTBEAT_INTERVAL");
}
END_TEST

/* ---- everything at once: -T round trip ---------------------------------- */

START_TEST(test_protocol_dump)
{
	struct config *cfg;
	char *text;

	cfg = load_ok("jwt_public_key \"" RS256 "\" \"key \\\"one\\\"\"\n"
		      "jwt_public_key " ES256 "\n"
		      "jwt_issuer \"issuer with spaces\"\n"
		      "jwt_audience aud\n"
		      "jwt_leeway 0\n"
		      "required_scopes a b\n"
		      "required_scopes c\n"
		      "revocation_check off\n"
		      "rate_limit_messages 1000000\n"
		      "rate_limit_burst 7\n"
		      "rate_limit_grace 10m\n"
		      "connection_rate_per_address 1000000\n"
		      "redis_timeout 1m\n"
		      "session_ttl 90m\n");
	text = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(text, "\njwt_public_key " RS256
					   " \"key \\\"one\\\"\"\n"
					   "jwt_public_key " ES256 "\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "\njwt_issuer \"issuer with spaces\"\n"));
	ck_assert_ptr_nonnull(strstr(text, "\njwt_leeway 0s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nsession_ttl 90m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nrate_limit_grace 10m\n"));
	ck_assert_ptr_null(strstr(text, "# jwt_public_key (not set)"));
	ck_assert_ptr_null(strstr(text, "# required_scopes (not set"));
	free(text);
	config_free(cfg);
}
END_TEST

void
add_protocol_tests(Suite *s)
{
	TCase *tc = tcase_create("protocol");

	tcase_add_test(tc, test_protocol_defaults);
	tcase_add_test(tc, test_public_key);
	tcase_add_test(tc, test_public_key_errors);
	tcase_add_test(tc, test_claims);
	tcase_add_test(tc, test_leeway);
	tcase_add_test(tc, test_required_scopes);
	tcase_add_test(tc, test_revocation_check);
	tcase_add_test(tc, test_rate_limits);
	tcase_add_test(tc, test_redis_timeout);
	tcase_add_test(tc, test_session_ttl);
	tcase_add_test(tc, test_protocol_dump);
	suite_add_tcase(s, tc);
}
