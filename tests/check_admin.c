/*
 * check_admin: the pure half of the admin socket (admin_proto.c) --
 * requests parsed and checked, replies rendered -- without sockets.
 * Rendered replies are read back with the JSON parser and checked field
 * by field.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "check_run.h"
#include "orchd/admin.h"
#include "orchd/json.h"
#include "orchd/registry.h"
#include "orchd/shm.h"

static int
parse(const char *line, struct admin_request *rq, char *err, size_t errlen)
{
	return admin_request_parse(line, strlen(line), 0, rq, err, errlen);
}

/* Parse must fail with an error containing want. */
static void
refused(const char *line, const char *want)
{
	struct admin_request rq;
	char err[256] = "";

	ck_assert_msg(parse(line, &rq, err, sizeof(err)) == -1, "accepted: %s",
		      line);
	ck_assert_msg(strstr(err, want) != NULL,
		      "%s: error \"%s\" lacks \"%s\"", line, err, want);
}

static void
accepted(const char *line, struct admin_request *rq)
{
	char err[256] = "";

	ck_assert_msg(parse(line, rq, err, sizeof(err)) == 0, "%s: %s", line,
		      err);
}

/* A parsed reply document; root checked to be an object. */
static void
doc_of(struct json_doc *d, const char *buf, size_t len)
{
	ck_assert_msg(len > 0 && buf[len - 1] == '\n', "reply not a line");
	ck_assert_msg(memchr(buf, '\n', len - 1) == NULL, "newline inside");
	ck_assert_int_eq(
	    json_parse(d, buf, len - 1,
		       &(struct json_limits){.max_tokens = 1u << 20,
					     .max_size = 1u << 30}),
	    0);
	ck_assert_int_eq(json_type(d, json_root(d)), JSON_OBJECT);
}

static uint64_t
get_u(const struct json_doc *d, int obj, const char *key)
{
	uint64_t v = UINT64_MAX;

	ck_assert_msg(json_get_uint64(d, json_obj_get(d, obj, key), &v) == 0,
		      "no integer %s", key);
	return v;
}

static int
get_b(const struct json_doc *d, int obj, const char *key)
{
	bool b = false;

	ck_assert_msg(json_get_bool(d, json_obj_get(d, obj, key), &b) == 0,
		      "no bool %s", key);
	return b;
}

START_TEST(test_parse_commands)
{
	struct admin_request rq;

	accepted("{\"cmd\":\"status\"}", &rq);
	ck_assert_int_eq(rq.cmd, ADMIN_STATUS);

	accepted("{\"cmd\":\"connections\"}", &rq);
	ck_assert_int_eq(rq.cmd, ADMIN_CONNECTIONS);
	ck_assert_uint_eq(rq.limit, ADMIN_LIST_DEFAULT);
	ck_assert_uint_eq(rq.has, 0);
	accepted("{\"limit\":100000,\"cmd\":\"connections\",\"orchestrator\":"
		 "\"vp-1\",\"organization\":\"org\",\"worker\":3}",
		 &rq);
	ck_assert_uint_eq(rq.limit, 100000);
	ck_assert_str_eq(rq.orchestrator, "vp-1");
	ck_assert_str_eq(rq.organization, "org");
	ck_assert_uint_eq(rq.worker, 3);
	ck_assert_uint_eq(rq.has,
			  ADMIN_HAS_ORCH | ADMIN_HAS_ORG | ADMIN_HAS_WORKER);

	accepted("{\"cmd\":\"kick\",\"orchestrator\":\"o\",\"daemon\":\"d\","
		 "\"reason\":\"r \\u00e9\"}",
		 &rq);
	ck_assert_int_eq(rq.cmd, ADMIN_KICK);
	ck_assert_str_eq(rq.daemon, "d");
	ck_assert_str_eq(rq.reason, "r \xc3\xa9");
	accepted("{\"cmd\":\"kick\",\"connection\":\"7:18446744073709551615\"}",
		 &rq);
	ck_assert_uint_eq(rq.conn_worker, 7);
	ck_assert_uint_eq(rq.conn_id, UINT64_MAX);
	ck_assert_uint_eq(rq.has, ADMIN_HAS_CONN);
	/* null is absent */
	accepted("{\"cmd\":\"kick\",\"orchestrator\":\"o\",\"daemon\":null}",
		 &rq);
	ck_assert_uint_eq(rq.has, ADMIN_HAS_ORCH);

	accepted("{\"cmd\":\"revoke\",\"jti\":\"abc-123\"}", &rq);
	ck_assert_int_eq(rq.cmd, ADMIN_REVOKE);
	ck_assert_str_eq(rq.jti, "abc-123");

	accepted("{\"cmd\":\"loglevel\"}", &rq);
	ck_assert_int_eq(rq.level, -1);
	accepted("{\"cmd\":\"loglevel\",\"level\":\"debug\"}", &rq);
	ck_assert_int_eq(rq.level, LOG_DEBUG);
	ck_assert_uint_eq(rq.has, ADMIN_HAS_LEVEL);

	accepted("{\"cmd\":\"drain\",\"worker\":0}", &rq);
	ck_assert_int_eq(rq.cmd, ADMIN_DRAIN);
	ck_assert_uint_eq(rq.worker, 0);
}
END_TEST

START_TEST(test_parse_publish)
{
	struct admin_request rq;
	const char *line = "{\"cmd\":\"publish\",\"event\": {\"id\":\"e-1\","
			   "\"type\":\"message.received\",\"orchestratorId\":"
			   "\"vp-1\",\"payload\":{\"a\":[1,2]}} }";
	const char *rec;

	accepted(line, &rq);
	ck_assert_int_eq(rq.cmd, ADMIN_PUBLISH);
	rec = strstr(line, "{\"id\"");
	/* The record's exact text, a slice of the line. */
	ck_assert_ptr_eq(rq.event, rec);
	ck_assert_uint_eq(rq.event_len, strlen(rec) - 2);
	/* The relay's own checks refuse what it would refuse. */
	refused(
	    "{\"cmd\":\"publish\",\"event\":{\"type\":\"a.b\",\"payload\":{}}}",
	    "invalid event (id)");
	refused("{\"cmd\":\"publish\",\"event\":{\"id\":\"e\",\"type\":\"a.*\","
		"\"payload\":{}}}",
		"invalid event (type)");
	refused(
	    "{\"cmd\":\"publish\",\"event\":{\"id\":\"e\",\"type\":\"a.b\"}}",
	    "payload");
	refused("{\"cmd\":\"publish\",\"event\":{\"id\":\"e\",\"type\":\"a.b\","
		"\"daemonId\":\"d\",\"payload\":{}}}",
		"invalid event (target)");
	refused("{\"cmd\":\"publish\",\"event\":[1]}", "event");
	refused("{\"cmd\":\"publish\"}", "needs event");
	/* max_event_size applies. */
	{
		char err[128];

		ck_assert_int_eq(admin_request_parse(line, strlen(line), 20,
						     &rq, err, sizeof(err)),
				 -1);
		ck_assert_ptr_nonnull(strstr(err, "too_big"));
	}
}
END_TEST

START_TEST(test_parse_refusals)
{
	char big[80];

	refused("", "JSON");
	refused("not json", "JSON");
	refused("[1]", "JSON");
	refused("{\"cmd\":1}", "cmd");
	refused("{}", "cmd");
	refused("{\"cmd\":\"nope\"}", "unknown cmd \"nope\"");
	refused("{\"cmd\":\"status\",\"orchestrator\":\"o\"}",
		"unknown field \"orchestrator\" for cmd status");
	refused("{\"cmd\":\"kick\",\"orchestrator\":\"o\",\"deamon\":\"d\"}",
		"unknown field \"deamon\"");
	refused(
	    "{\"cmd\":\"kick\",\"orchestrator\":\"o\",\"orchestrator\":\"p\"}",
	    "given twice");
	refused("{\"cmd\":\"kick\"}", "kick needs");
	refused("{\"cmd\":\"kick\",\"reason\":\"x\"}", "kick needs");
	refused("{\"cmd\":\"kick\",\"daemon\":\"d\"}",
		"daemon needs orchestrator");
	refused("{\"cmd\":\"connections\",\"daemon\":\"d\"}",
		"daemon needs orchestrator");
	refused("{\"cmd\":\"kick\",\"orchestrator\":\"\"}", "orchestrator");
	refused("{\"cmd\":\"kick\",\"orchestrator\":5}", "orchestrator");
	memset(big, 'o', sizeof(big));
	big[64] = '\0';
	{
		char line[160];

		snprintf(line, sizeof(line),
			 "{\"cmd\":\"kick\",\"orchestrator\":\"%s\"}", big);
		refused(line, "1..63 bytes");
		big[63] = '\0';
		snprintf(line, sizeof(line),
			 "{\"cmd\":\"kick\",\"orchestrator\":\"%s\"}", big);
		{
			struct admin_request rq;

			accepted(line, &rq);
		}
	}
	refused("{\"cmd\":\"kick\",\"connection\":\"1\"}", "connection");
	refused("{\"cmd\":\"kick\",\"connection\":\"64:1\"}", "connection");
	refused("{\"cmd\":\"kick\",\"connection\":\"1:\"}", "connection");
	refused("{\"cmd\":\"kick\",\"connection\":\"-1:2\"}", "connection");
	refused("{\"cmd\":\"kick\",\"connection\":\"1:2x\"}", "connection");
	refused("{\"cmd\":\"kick\",\"connection\":\"1:18446744073709551616\"}",
		"connection");
	refused("{\"cmd\":\"kick\",\"connection\":12}", "connection");
	refused("{\"cmd\":\"connections\",\"limit\":0}", "limit");
	refused("{\"cmd\":\"connections\",\"limit\":100001}", "limit");
	refused("{\"cmd\":\"connections\",\"limit\":1.5}", "limit");
	refused("{\"cmd\":\"connections\",\"worker\":64}", "worker");
	refused("{\"cmd\":\"connections\",\"worker\":-1}", "worker");
	refused("{\"cmd\":\"revoke\"}", "revoke needs jti");
	refused("{\"cmd\":\"revoke\",\"jti\":\"\"}", "jti");
	refused("{\"cmd\":\"revoke\",\"jti\":\"a\",\"ttl\":10}", "ttl");
	refused("{\"cmd\":\"revoke\",\"jti\":\"a\\u0000b\"}", "jti");
	refused("{\"cmd\":\"loglevel\",\"level\":\"verbose\"}", "level");
	refused("{\"cmd\":\"loglevel\",\"level\":7}", "level");
	refused("{\"cmd\":\"drain\"}", "drain needs worker");
	refused("{\"cmd\":\"drain\",\"worker\":\"0\"}", "worker");
}
END_TEST

START_TEST(test_levels)
{
	static const char *names[] = {"error", "warn", "notice", "info",
				      "debug"};

	for (size_t i = 0; i < 5; i++) {
		int lv = admin_level_parse(names[i]);

		ck_assert_int_ge(lv, LOG_ERR);
		ck_assert_str_eq(admin_level_name(lv), names[i]);
	}
	ck_assert_int_eq(admin_level_parse("DEBUG"), -1);
	ck_assert_ptr_null(admin_level_name(LOG_EMERG));
}
END_TEST

static void
entry(struct registry_entry *e, unsigned worker, uint64_t id, const char *orch,
      const char *daemon, const char *org)
{
	memset(e, 0, sizeof(*e));
	e->worker = worker;
	e->conn_id = id;
	e->pid = 1000 + (pid_t)worker;
	e->state = REGISTRY_ACTIVE;
	e->connected_ms = 1700000000000ULL;
	e->last_seen_ms = 1700000000500ULL;
	snprintf(e->orchestrator, sizeof(e->orchestrator), "%s", orch);
	snprintf(e->daemon, sizeof(e->daemon), "%s", daemon);
	snprintf(e->organization, sizeof(e->organization), "%s", org);
}

START_TEST(test_matches)
{
	struct admin_request rq;
	struct registry_entry e;

	entry(&e, 2, 77, "vp-1", "d-1", "org-1");
	accepted("{\"cmd\":\"connections\"}", &rq);
	ck_assert(admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"connections\",\"worker\":2,\"organization\":"
		 "\"org-1\"}",
		 &rq);
	ck_assert(admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"connections\",\"worker\":1}", &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"connections\",\"organization\":\"org-2\"}", &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"kick\",\"orchestrator\":\"vp-1\"}", &rq);
	ck_assert(admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"kick\",\"orchestrator\":\"vp-1\",\"daemon\":"
		 "\"d-2\"}",
		 &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"kick\",\"orchestrator\":\"vp-10\"}", &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"kick\",\"connection\":\"2:77\"}", &rq);
	ck_assert(admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"kick\",\"connection\":\"1:77\"}", &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
	accepted("{\"cmd\":\"kick\",\"connection\":\"2:78\"}", &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
	/* Selectors combine: every one must match. */
	accepted("{\"cmd\":\"kick\",\"connection\":\"2:77\",\"orchestrator\":"
		 "\"vp-2\"}",
		 &rq);
	ck_assert(!admin_entry_matches(&rq, &e));
}
END_TEST

START_TEST(test_replies)
{
	char buf[256];
	struct json_doc d;
	size_t n;
	char s[64];

	n = admin_reply_error(buf, sizeof(buf), "bad \"thing\"\n");
	doc_of(&d, buf, n);
	ck_assert(!get_b(&d, 0, "ok"));
	ck_assert_int_eq(json_get_string(&d, json_obj_get(&d, 0, "error"), s,
					 sizeof(s), NULL),
			 0);
	ck_assert_str_eq(s, "bad \"thing\"\n");
	json_doc_free(&d);
	ck_assert_uint_eq(admin_reply_error(buf, 10, "x"), 0);

	n = admin_reply_uint(buf, sizeof(buf), "matched", 3);
	ck_assert_str_eq(buf, "{\"ok\":true,\"matched\":3}\n");
	ck_assert_uint_eq(n, strlen(buf));
	n = admin_reply_level(buf, sizeof(buf), LOG_WARNING);
	ck_assert_str_eq(buf, "{\"ok\":true,\"level\":\"warn\"}\n");
	n = admin_reply_revoke(buf, sizeof(buf), 4, 1);
	ck_assert_str_eq(buf, "{\"ok\":true,\"closed\":4,\"workers\":4,"
			      "\"added\":true}\n");
}
END_TEST

static void
check_listing(const char *buf, long off, size_t len, unsigned total,
	      unsigned listed, int truncated)
{
	struct json_doc d;
	int arr;

	ck_assert_int_ge(off, 0);
	doc_of(&d, buf + off, len);
	ck_assert(get_b(&d, 0, "ok"));
	ck_assert_uint_eq(get_u(&d, 0, "total"), total);
	ck_assert_int_eq(get_b(&d, 0, "truncated"), truncated);
	arr = json_obj_get(&d, 0, "connections");
	ck_assert_int_eq(json_array_len(&d, arr), (int)listed);
	json_doc_free(&d);
}

START_TEST(test_listing)
{
	struct admin_list l;
	struct registry_entry e;
	struct json_doc d;
	char *buf = malloc(1 << 16), s[64];
	size_t len;
	long off;
	int arr, x;

	/* Empty. */
	admin_list_begin(&l, buf, 1 << 16, 10);
	off = admin_list_end(&l, &len);
	check_listing(buf, off, len, 0, 0, 0);

	/* Every field of an entry. */
	admin_list_begin(&l, buf, 1 << 16, 10);
	entry(&e, 3, 12345, "vp-\"1\"", "d-1", "");
	e.state = REGISTRY_DRAINING;
	admin_list_add(&l, &e);
	off = admin_list_end(&l, &len);
	check_listing(buf, off, len, 1, 1, 0);
	doc_of(&d, buf + off, len);
	arr = json_obj_get(&d, 0, "connections");
	x = json_array_get(&d, arr, 0);
	json_get_string(&d, json_obj_get(&d, x, "id"), s, sizeof(s), NULL);
	ck_assert_str_eq(s, "3:12345");
	ck_assert_uint_eq(get_u(&d, x, "worker"), 3);
	ck_assert_uint_eq(get_u(&d, x, "pid"), 1003);
	json_get_string(&d, json_obj_get(&d, x, "orchestrator"), s, sizeof(s),
			NULL);
	ck_assert_str_eq(s, "vp-\"1\"");
	json_get_string(&d, json_obj_get(&d, x, "organization"), s, sizeof(s),
			NULL);
	ck_assert_str_eq(s, "");
	json_get_string(&d, json_obj_get(&d, x, "state"), s, sizeof(s), NULL);
	ck_assert_str_eq(s, "draining");
	ck_assert_uint_eq(get_u(&d, x, "connected_ms"), 1700000000000ULL);
	ck_assert_uint_eq(get_u(&d, x, "last_seen_ms"), 1700000000500ULL);
	json_doc_free(&d);

	/* The limit: counted, not listed. */
	admin_list_begin(&l, buf, 1 << 16, 3);
	for (unsigned i = 0; i < 10; i++) {
		entry(&e, i % 2, i, "vp-1", "d", "o");
		admin_list_add(&l, &e);
	}
	off = admin_list_end(&l, &len);
	check_listing(buf, off, len, 10, 3, 1);

	/* The buffer: as many as fit, the line stays valid. */
	for (size_t cap = 140; cap < 2000; cap += 37) {
		admin_list_begin(&l, buf, cap, 1000);
		for (unsigned i = 0; i < 50; i++) {
			entry(&e, 1, i, "vp-1", "d", "o");
			admin_list_add(&l, &e);
		}
		off = admin_list_end(&l, &len);
		ck_assert_uint_le((size_t)off + len, cap);
		check_listing(buf, off, len, 50, l.listed, 1);
	}
	/* Too small for anything. */
	admin_list_begin(&l, buf, 100, 10);
	admin_list_add(&l, &e);
	ck_assert_int_eq(admin_list_end(&l, &len), -1);
	free(buf);
}
END_TEST

START_TEST(test_status)
{
	/* The /stats document is metrics_render_json()'s (check_metrics);
	 * the admin reply wraps it as it is. */
	static const char stats[] = "{\"version\":\"9.9.9\",\"workers\":"
				    "[{\"slot\":0,\"pid\":100}]}";
	char buf[512], s[32];
	struct json_doc d;
	int r, w;
	size_t n;

	n = admin_render_status(buf, sizeof(buf), stats, strlen(stats),
				LOG_DEBUG);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(buf[n - 1], '\n');
	doc_of(&d, buf, n);
	ck_assert(get_b(&d, 0, "ok"));
	json_get_string(&d, json_obj_get(&d, 0, "log_level"), s, sizeof(s),
			NULL);
	ck_assert_str_eq(s, "debug");
	r = json_obj_get(&d, 0, "stats");
	json_get_string(&d, json_obj_get(&d, r, "version"), s, sizeof(s), NULL);
	ck_assert_str_eq(s, "9.9.9");
	w = json_obj_get(&d, r, "workers");
	ck_assert_uint_eq(get_u(&d, json_array_get(&d, w, 0), "pid"), 100);
	json_doc_free(&d);
	/* Too small a buffer is 0, never a partial line. */
	ck_assert_uint_eq(
	    admin_render_status(buf, 40, stats, strlen(stats), LOG_INFO), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("proto");

	tcase_add_test(tc, test_parse_commands);
	tcase_add_test(tc, test_parse_publish);
	tcase_add_test(tc, test_parse_refusals);
	tcase_add_test(tc, test_levels);
	tcase_add_test(tc, test_matches);
	tcase_add_test(tc, test_replies);
	tcase_add_test(tc, test_listing);
	tcase_add_test(tc, test_status);
	suite_add_tcase(s, tc);
	return check_run(s);
}
