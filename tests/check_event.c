/* Unit tests for event records, the `event` message and queue bodies. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/util.h"

/* 2026-11-26T12:34:56.789Z */
#define TS_MS 1795696496789ULL

#define FULL_PAYLOAD                                                           \
	"{\"text\": \"hi \\u00e9\\n\",  \"n\" : [1, 2.50, -0, 1e3,"            \
	" {\"x\":null}], \"b\":true }"

static const char full_record[] =
    "{\"id\": \"evt-0001\", \"type\": \"message.received\", "
    "\"orchestratorId\": \"orch-1\", \"daemonId\": \"d-7\", "
    "\"organizationId\": \"acme\", \"workspaceId\": \"ws-3\", "
    "\"channelId\": \"C123\", \"payload\": " FULL_PAYLOAD ", "
    "\"timestamp\": \"2026-11-26T12:34:56.789Z\", \"requiresAck\": true, "
    "\"priority\": -7, \"unknown\": {\"ignored\": [1]}}";

/* Parse a NUL-terminated record on an org channel (NULL: global). */
static int
parse_org(struct event *ev, const char *rec, const char *org, char *err,
	  size_t errlen)
{
	return event_parse_ctx(ev, rec, strlen(rec), 0, org, err, errlen);
}

/*
 * Assert that rec is refused as kind, with a message, owning nothing.  A
 * macro so that a failure reports the caller's line.
 */
#define EXPECT_KIND(rec, kind) expect_kind(__LINE__, (rec), (kind))

static void
expect_kind(int line, const char *rec, int kind)
{
	struct event ev;
	char err[128];
	int rc;

	memset(err, 'x', sizeof(err));
	rc = event_parse(&ev, rec, strlen(rec), 0, err, sizeof(err));
	ck_assert_msg(rc == kind, "line %d: %s: got %d (%s), want %d", line,
		      rec, rc, rc == 0 ? "ok" : err, kind);
	ck_assert_msg(err[0] != '\0' && strlen(err) < sizeof(err),
		      "line %d: no message", line);
	ck_assert_ptr_null(ev.payload);
	event_free(&ev);
}

/* The same with extra fields after a valid id/type/payload. */
#define EXPECT_EXTRA(extra, kind) expect_extra(__LINE__, (extra), (kind))

static void
expect_extra(int line, const char *extra, int kind)
{
	char rec[1024];

	snprintf(rec, sizeof(rec),
		 "{\"id\":\"e1\",\"type\":\"message.received\","
		 "\"payload\":{\"a\":1},%s}",
		 extra);
	expect_kind(line, rec, kind);
}

/* A string of n copies of c, in a static buffer (one at a time). */
static const char *
rep(char c, size_t n)
{
	static char buf[512];

	ck_assert_uint_lt(n, sizeof(buf));
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

START_TEST(test_valid_full)
{
	struct event ev;
	char err[128];

	ck_assert_int_eq(parse_org(&ev, full_record, NULL, err, sizeof(err)),
			 EVENT_OK);
	ck_assert_str_eq(ev.id, "evt-0001");
	ck_assert_str_eq(ev.type, "message.received");
	ck_assert_str_eq(ev.orch, "orch-1");
	ck_assert_str_eq(ev.daemon, "d-7");
	ck_assert_str_eq(ev.org, "acme");
	ck_assert_str_eq(ev.workspace, "ws-3");
	ck_assert_str_eq(ev.channel, "C123");
	/* The payload's exact source text, whitespace and escapes kept. */
	ck_assert_uint_eq(ev.payload_len, strlen(FULL_PAYLOAD));
	ck_assert_str_eq(ev.payload, FULL_PAYLOAD);
	ck_assert_uint_eq(ev.ts_ms, TS_MS);
	ck_assert(ev.requires_ack);
	ck_assert_int_eq(ev.priority, -7);
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ORCHESTRATOR);
	event_free(&ev);
	ck_assert_ptr_null(ev.payload);
	event_free(&ev); /* twice is harmless */
}
END_TEST

START_TEST(test_outlives_input)
{
	struct event ev;
	char *copy = util_strdup(full_record);

	ck_assert_int_eq(event_parse(&ev, copy, strlen(copy), 0, NULL, 0),
			 EVENT_OK);
	memset(copy, '#', strlen(copy));
	free(copy);
	ck_assert_str_eq(ev.id, "evt-0001");
	ck_assert_str_eq(ev.payload, FULL_PAYLOAD);
	event_free(&ev);
}
END_TEST

START_TEST(test_valid_minimal)
{
	static const char rec[] =
	    "{\"payload\":{},\"type\":\"system.maintenance\",\"id\":\"x\"}";
	struct event ev;
	uint64_t before = util_wall_ms(), after;

	/* Not NUL-terminated: the length is what counts. */
	char buf[sizeof(rec) + 8];

	memcpy(buf, rec, sizeof(rec) - 1);
	memset(buf + sizeof(rec) - 1, '}', 9);
	ck_assert_int_eq(event_parse(&ev, buf, sizeof(rec) - 1, 0, NULL, 0),
			 EVENT_OK);
	after = util_wall_ms();
	ck_assert_str_eq(ev.id, "x");
	ck_assert_str_eq(ev.type, "system.maintenance");
	ck_assert_str_eq(ev.orch, "");
	ck_assert_str_eq(ev.daemon, "");
	ck_assert_str_eq(ev.org, "");
	ck_assert_str_eq(ev.workspace, "");
	ck_assert_str_eq(ev.channel, "");
	ck_assert_str_eq(ev.payload, "{}");
	ck_assert(ev.ts_ms >= before && ev.ts_ms <= after); /* absent: now */
	ck_assert(!ev.requires_ack);
	ck_assert_int_eq(ev.priority, 0);
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ALL);
	event_free(&ev);

	/* null is absent for every optional field. */
	ck_assert_int_eq(
	    parse_org(&ev,
		      "{\"id\":\"x\",\"type\":\"a.b\",\"payload\":{},"
		      "\"orchestratorId\":null,\"daemonId\":null,"
		      "\"organizationId\":null,\"workspaceId\":null,"
		      "\"channelId\":null,\"timestamp\":null,"
		      "\"requiresAck\":null,\"priority\":null}",
		      NULL, NULL, 0),
	    EVENT_OK);
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ALL);
	ck_assert(!ev.requires_ack);
	ck_assert_int_eq(ev.priority, 0);
	ck_assert_uint_gt(ev.ts_ms, 1600000000000ULL); /* now, not 0 */
	event_free(&ev);

	/* Offsets convert to UTC; an empty channelId is no channel. */
	ck_assert_int_eq(
	    parse_org(&ev,
		      "{\"id\":\"x\",\"type\":\"a.b\",\"payload\":{},"
		      "\"timestamp\":\"2026-11-26T14:34:56.789+02:00\","
		      "\"channelId\":\"\",\"priority\":100}",
		      NULL, NULL, 0),
	    EVENT_OK);
	ck_assert_uint_eq(ev.ts_ms, TS_MS);
	ck_assert_str_eq(ev.channel, "");
	ck_assert_int_eq(ev.priority, 100);
	event_free(&ev);
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"x\",\"type\":\"a.b\",\"payload\":"
				   "{},\"priority\":-100}",
				   NULL, NULL, 0),
			 EVENT_OK);
	ck_assert_int_eq(ev.priority, -100);
	event_free(&ev);
}
END_TEST

START_TEST(test_broadcast)
{
	static const struct {
		const char *extra;
		enum event_target target;
		const char *org;
	} cases[] = {
	    {"\"orchestratorId\":\"\"", EVENT_TARGET_ALL, ""},
	    {"\"orchestratorId\":\"*\"", EVENT_TARGET_ALL, ""},
	    {"\"orchestratorId\":\"*\",\"organizationId\":\"acme\"",
	     EVENT_TARGET_ORGANIZATION, "acme"},
	    {"\"orchestratorId\":\"\",\"organizationId\":\"acme\"",
	     EVENT_TARGET_ORGANIZATION, "acme"},
	    {"\"organizationId\":\"acme\"", EVENT_TARGET_ORGANIZATION, "acme"},
	    {"\"orchestratorId\":\"o\",\"organizationId\":\"acme\"",
	     EVENT_TARGET_ORCHESTRATOR, "acme"},
	    {"\"orchestratorId\":\"o\",\"daemonId\":\"\"",
	     EVENT_TARGET_ORCHESTRATOR, ""},
	};

	for (size_t i = 0; i < UTIL_NELEM(cases); i++) {
		char rec[256];
		struct event ev;

		snprintf(rec, sizeof(rec),
			 "{\"id\":\"x\",\"type\":\"vp.status\",\"payload\":{},"
			 "%s}",
			 cases[i].extra);
		ck_assert_int_eq(parse_org(&ev, rec, NULL, NULL, 0), EVENT_OK);
		ck_assert_msg(event_target(&ev) == cases[i].target, "case %zu",
			      i);
		ck_assert_str_eq(ev.org, cases[i].org);
		if (cases[i].target != EVENT_TARGET_ORCHESTRATOR)
			ck_assert_str_eq(ev.orch, ""); /* "*" normalized */
		event_free(&ev);
	}
}
END_TEST

START_TEST(test_org_channel)
{
	static const char bcast[] =
	    "{\"id\":\"x\",\"type\":\"channel.created\",\"payload\":{},"
	    "\"orchestratorId\":\"*\"}";
	static const char same[] =
	    "{\"id\":\"x\",\"type\":\"channel.created\",\"payload\":{},"
	    "\"organizationId\":\"acme\"}";
	static const char other[] =
	    "{\"id\":\"x\",\"type\":\"channel.created\",\"payload\":{},"
	    "\"orchestratorId\":\"o1\",\"organizationId\":\"evil\"}";
	static const char targeted[] =
	    "{\"id\":\"x\",\"type\":\"channel.created\",\"payload\":{},"
	    "\"orchestratorId\":\"o1\"}";
	struct event ev;
	char err[128];

	/* Absent: taken from the channel. */
	ck_assert_int_eq(parse_org(&ev, bcast, "acme", NULL, 0), EVENT_OK);
	ck_assert_str_eq(ev.org, "acme");
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ORGANIZATION);
	event_free(&ev);
	/* The same broadcast on the global channel reaches everyone. */
	ck_assert_int_eq(parse_org(&ev, bcast, NULL, NULL, 0), EVENT_OK);
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ALL);
	event_free(&ev);
	ck_assert_int_eq(parse_org(&ev, bcast, "", NULL, 0), EVENT_OK);
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ALL);
	event_free(&ev);
	/* Present: must be the channel's. */
	ck_assert_int_eq(parse_org(&ev, same, "acme", NULL, 0), EVENT_OK);
	ck_assert_str_eq(ev.org, "acme");
	event_free(&ev);
	ck_assert_int_eq(parse_org(&ev, other, "acme", err, sizeof(err)),
			 EVENT_ETARGET);
	ck_assert_ptr_nonnull(strstr(err, "organizationId"));
	ck_assert_ptr_null(ev.payload);
	ck_assert_int_eq(parse_org(&ev, same, "acm", NULL, 0), EVENT_ETARGET);
	/* A targeted event gets the organization too. */
	ck_assert_int_eq(parse_org(&ev, targeted, "acme", NULL, 0), EVENT_OK);
	ck_assert_str_eq(ev.org, "acme");
	ck_assert_int_eq(event_target(&ev), EVENT_TARGET_ORCHESTRATOR);
	event_free(&ev);
	/* A channel organization that cannot be an id. */
	ck_assert_int_eq(parse_org(&ev, bcast, rep('o', 64), NULL, 0),
			 EVENT_ETARGET);
}
END_TEST

START_TEST(test_bad_json)
{
	EXPECT_KIND("", EVENT_EJSON);
	EXPECT_KIND("   ", EVENT_EJSON);
	EXPECT_KIND("nope", EVENT_EJSON);
	EXPECT_KIND("{", EVENT_EJSON);
	EXPECT_KIND("{\"id\":\"x\",}", EVENT_EJSON);
	EXPECT_KIND("{\"id\":\"x\"} {}", EVENT_EJSON);
	EXPECT_KIND("{\"id\":\"\xff\"}", EVENT_EJSON); /* not UTF-8 */
	EXPECT_KIND("{\"id\":\"\\ud800\"}", EVENT_EJSON);
	/* Not an object. */
	EXPECT_KIND("[]", EVENT_EJSON);
	EXPECT_KIND("[{\"id\":\"x\"}]", EVENT_EJSON);
	EXPECT_KIND("\"x\"", EVENT_EJSON);
	EXPECT_KIND("42", EVENT_EJSON);
	EXPECT_KIND("null", EVENT_EJSON);
}
END_TEST

/* A valid record of exactly n bytes (n >= 80): padded payload string. */
static char *
record_of(size_t n)
{
	static const char head[] =
	    "{\"id\":\"big\",\"type\":\"message.received\","
	    "\"payload\":{\"s\":\"";
	static const char tail[] = "\"}}";
	char *r = util_malloc(n + 1);

	ck_assert_uint_ge(n, sizeof(head) + sizeof(tail));
	memcpy(r, head, sizeof(head) - 1);
	memset(r + sizeof(head) - 1, 'a', n - (sizeof(head) - 1));
	memcpy(r + n - (sizeof(tail) - 1), tail, sizeof(tail));
	return r;
}

START_TEST(test_too_big)
{
	struct event ev;
	char err[128];
	char *r;
	size_t n;

	r = record_of(1000);
	ck_assert_int_eq(event_parse(&ev, r, 1000, 1000, NULL, 0), EVENT_OK);
	ck_assert_uint_eq(ev.payload_len, 1000 - 49); /* head 48, tail 1 */
	event_free(&ev);
	ck_assert_int_eq(event_parse(&ev, r, 1000, 999, err, sizeof(err)),
			 EVENT_ETOOBIG);
	ck_assert_ptr_null(ev.payload);
	free(r);

	/* Default limit: 64 KiB. */
	r = record_of(EVENT_DEFAULT_MAX_SIZE);
	ck_assert_int_eq(
	    event_parse(&ev, r, EVENT_DEFAULT_MAX_SIZE, 0, NULL, 0), EVENT_OK);
	event_free(&ev);
	free(r);
	r = record_of(EVENT_DEFAULT_MAX_SIZE + 1);
	ck_assert_int_eq(
	    event_parse(&ev, r, EVENT_DEFAULT_MAX_SIZE + 1, 0, NULL, 0),
	    EVENT_ETOOBIG);
	free(r);

	/* Many small values fit: the token limit follows the size. */
	r = util_malloc(EVENT_DEFAULT_MAX_SIZE);
	n = (size_t)snprintf(r, EVENT_DEFAULT_MAX_SIZE,
			     "{\"id\":\"x\",\"type\":\"a.b\",\"payload\":{"
			     "\"v\":[0");
	while (n + 8 < EVENT_DEFAULT_MAX_SIZE) {
		r[n++] = ',';
		r[n++] = '1';
	}
	r[n++] = ']';
	r[n++] = '}';
	r[n++] = '}';
	ck_assert_int_eq(event_parse(&ev, r, n, 0, NULL, 0), EVENT_OK);
	ck_assert_uint_eq(ev.payload_len, n - 34); /* head 33, tail 1 */
	event_free(&ev);
	free(r);
}
END_TEST

START_TEST(test_bad_id)
{
	char rec[1024];
	struct event ev;

	EXPECT_KIND("{\"type\":\"a.b\",\"payload\":{}}", EVENT_EID);
	EXPECT_KIND("{\"id\":\"\",\"type\":\"a.b\",\"payload\":{}}", EVENT_EID);
	EXPECT_KIND("{\"id\":null,\"type\":\"a.b\",\"payload\":{}}", EVENT_EID);
	EXPECT_KIND("{\"id\":7,\"type\":\"a.b\",\"payload\":{}}", EVENT_EID);
	EXPECT_KIND("{\"id\":[\"x\"],\"type\":\"a.b\",\"payload\":{}}",
		    EVENT_EID);
	EXPECT_KIND("{\"id\":\"a\\u0001\",\"type\":\"a.b\",\"payload\":{}}",
		    EVENT_EID);
	EXPECT_KIND("{\"id\":\"a\\u0000b\",\"type\":\"a.b\",\"payload\":{}}",
		    EVENT_EID);
	EXPECT_KIND("{\"id\":\"caf\xc3\xa9\",\"type\":\"a.b\",\"payload\":{}}",
		    EVENT_EID);
	EXPECT_KIND("{\"id\":\"a\\u007f\",\"type\":\"a.b\",\"payload\":{}}",
		    EVENT_EID);
	/* Checked before type and payload. */
	EXPECT_KIND("{\"id\":\"\"}", EVENT_EID);
	/* 128 bytes pass, 129 do not. */
	snprintf(rec, sizeof(rec),
		 "{\"id\":\"%s\",\"type\":\"a.b\",\"payload\":{}}",
		 rep('i', 128));
	ck_assert_int_eq(parse_org(&ev, rec, NULL, NULL, 0), EVENT_OK);
	ck_assert_uint_eq(strlen(ev.id), 128);
	event_free(&ev);
	snprintf(rec, sizeof(rec),
		 "{\"id\":\"%s\",\"type\":\"a.b\",\"payload\":{}}",
		 rep('i', 129));
	EXPECT_KIND(rec, EVENT_EID);
	/* Printable includes space and punctuation. */
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\" a\\\"~\",\"type\":\"a.b\","
				   "\"payload\":{}}",
				   NULL, NULL, 0),
			 EVENT_OK);
	ck_assert_str_eq(ev.id, " a\"~");
	event_free(&ev);
}
END_TEST

START_TEST(test_bad_type)
{
	static const char *const bad[] = {
	    "\"\"",
	    "\"*\"",
	    "\"message.*\"",
	    "\"mess age\"",
	    "\"a.b*\"",
	    "\".message\"",
	    "\"message.\"",
	    "null",
	    "42",
	    "true",
	    "{}",
	    "\"a\\tb\"",
	    "\"caf\xc3\xa9\"",
	};
	char rec[1024];
	struct event ev;

	EXPECT_KIND("{\"id\":\"x\",\"payload\":{}}", EVENT_ETYPE);
	for (size_t i = 0; i < UTIL_NELEM(bad); i++) {
		snprintf(rec, sizeof(rec),
			 "{\"id\":\"x\",\"type\":%s,\"payload\":{}}", bad[i]);
		EXPECT_KIND(rec, EVENT_ETYPE);
	}
	snprintf(rec, sizeof(rec),
		 "{\"id\":\"x\",\"type\":\"%s\",\"payload\":{}}", rep('t', 65));
	EXPECT_KIND(rec, EVENT_ETYPE);
	snprintf(rec, sizeof(rec),
		 "{\"id\":\"x\",\"type\":\"%s\",\"payload\":{}}", rep('t', 64));
	ck_assert_int_eq(parse_org(&ev, rec, NULL, NULL, 0), EVENT_OK);
	event_free(&ev);
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"x\",\"type\":\"vp.status_changed"
				   ":v2-x\",\"payload\":{}}",
				   NULL, NULL, 0),
			 EVENT_OK);
	event_free(&ev);
}
END_TEST

START_TEST(test_bad_target)
{
	static const char *const keys[] = {"orchestratorId", "daemonId",
					   "organizationId"};
	char extra[256];
	struct event ev;

	for (size_t i = 0; i < UTIL_NELEM(keys); i++) {
		/* daemonId needs an orchestrator; the first key wins. */
		const char *pre = i == 0 ? "" : "\"orchestratorId\":\"o\",";
		char rec[1024];

		/* 63 bytes pass, 64 do not. */
		snprintf(rec, sizeof(rec),
			 "{\"id\":\"x\",\"type\":\"a.b\",\"payload\":{},"
			 "%s\"%s\":\"%s\"}",
			 pre, keys[i], rep('k', 63));
		ck_assert_int_eq(parse_org(&ev, rec, NULL, NULL, 0), EVENT_OK);
		event_free(&ev);
		snprintf(extra, sizeof(extra), "%s\"%s\":\"%s\"", pre, keys[i],
			 rep('k', 64));
		EXPECT_EXTRA(extra, EVENT_ETARGET);
		snprintf(extra, sizeof(extra), "%s\"%s\":5", pre, keys[i]);
		EXPECT_EXTRA(extra, EVENT_ETARGET);
		snprintf(extra, sizeof(extra), "%s\"%s\":\"a\\u0000\"", pre,
			 keys[i]);
		EXPECT_EXTRA(extra, EVENT_ETARGET);
	}
	/* daemonId without an orchestrator. */
	EXPECT_EXTRA("\"daemonId\":\"d\"", EVENT_ETARGET);
	EXPECT_EXTRA("\"daemonId\":\"d\",\"orchestratorId\":\"\"",
		     EVENT_ETARGET);
	EXPECT_EXTRA("\"daemonId\":\"d\",\"orchestratorId\":\"*\"",
		     EVENT_ETARGET);
	EXPECT_EXTRA("\"daemonId\":\"d\",\"organizationId\":\"acme\"",
		     EVENT_ETARGET);
	/* workspaceId is not a target: a field. */
	snprintf(extra, sizeof(extra), "\"workspaceId\":\"%s\"", rep('w', 64));
	EXPECT_EXTRA(extra, EVENT_EFIELD);
	EXPECT_EXTRA("\"workspaceId\":false", EVENT_EFIELD);
}
END_TEST

START_TEST(test_bad_payload)
{
	EXPECT_KIND("{\"id\":\"x\",\"type\":\"a.b\"}", EVENT_EPAYLOAD);
	EXPECT_KIND("{\"id\":\"x\",\"type\":\"a.b\",\"payload\":null}",
		    EVENT_EPAYLOAD);
	EXPECT_KIND("{\"id\":\"x\",\"type\":\"a.b\",\"payload\":[]}",
		    EVENT_EPAYLOAD);
	EXPECT_KIND("{\"id\":\"x\",\"type\":\"a.b\",\"payload\":\"{}\"}",
		    EVENT_EPAYLOAD);
	EXPECT_KIND("{\"id\":\"x\",\"type\":\"a.b\",\"payload\":1}",
		    EVENT_EPAYLOAD);
	EXPECT_KIND("{\"id\":\"x\",\"type\":\"a.b\",\"payload\":true}",
		    EVENT_EPAYLOAD);
}
END_TEST

START_TEST(test_bad_fields)
{
	char extra[256];

	/* timestamp */
	EXPECT_EXTRA("\"timestamp\":\"yesterday\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"timestamp\":\"\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"timestamp\":\"2026-13-01T00:00:00Z\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"timestamp\":\"2026-11-26T12:34:56\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"timestamp\":\"1969-12-31T23:59:59Z\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"timestamp\":1795696496789", EVENT_EFIELD);
	snprintf(extra, sizeof(extra),
		 "\"timestamp\":\"2026-11-26T12:34:56.%sZ\"", rep('1', 100));
	EXPECT_EXTRA(extra, EVENT_EFIELD);
	/* requiresAck */
	EXPECT_EXTRA("\"requiresAck\":\"true\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"requiresAck\":1", EVENT_EFIELD);
	EXPECT_EXTRA("\"requiresAck\":{}", EVENT_EFIELD);
	/* priority */
	EXPECT_EXTRA("\"priority\":101", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":-101", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":99999999999999999999999", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":1.5", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":1.0", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":1e1", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":\"1\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"priority\":true", EVENT_EFIELD);
	/* channelId */
	EXPECT_EXTRA("\"channelId\":\"has space\"", EVENT_EFIELD);
	EXPECT_EXTRA("\"channelId\":7", EVENT_EFIELD);
	snprintf(extra, sizeof(extra), "\"channelId\":\"%s\"", rep('c', 65));
	EXPECT_EXTRA(extra, EVENT_EFIELD);
}
END_TEST

START_TEST(test_kind_names)
{
	for (int i = 0; i < EVENT_NKINDS; i++) {
		ck_assert_ptr_nonnull(event_kind_name(i));
		ck_assert_str_ne(event_kind_name(i), "unknown");
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(event_kind_name(i),
					 event_kind_name(j));
	}
	ck_assert_str_eq(event_kind_name(EVENT_ETOOBIG), "too_big");
	ck_assert_str_eq(event_kind_name(-1), "unknown");
	ck_assert_str_eq(event_kind_name(EVENT_NKINDS), "unknown");
}
END_TEST

/* A string member of obj, copied (asserts it is there). */
static const char *
get_str(const struct json_doc *d, int obj, const char *key)
{
	static char buf[4][256];
	static int i;
	char *b = buf[i++ % 4];

	ck_assert_msg(
	    json_get_string(d, json_obj_get(d, obj, key), b, 256, NULL) == 0,
	    "no string %s", key);
	return b;
}

static int
is_uuid_v4(const char *s)
{
	if (strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' ||
	    s[23] != '-' || s[14] != '4' || strchr("89ab", s[19]) == NULL)
		return 0;
	for (int i = 0; i < 36; i++)
		if (s[i] != '-' && strchr("0123456789abcdef", s[i]) == NULL)
			return 0;
	return 1;
}

START_TEST(test_message_full)
{
	struct event ev;
	struct json_doc d;
	char out[2048], id1[64];
	size_t n, rawlen;
	const char *raw;
	int p;
	bool b;
	int64_t i64;
	uint64_t u64, t, before, after;

	ck_assert_int_eq(parse_org(&ev, full_record, NULL, NULL, 0), EVENT_OK);
	before = util_wall_ms();
	n = event_message(&ev, 42, out, sizeof(out));
	after = util_wall_ms();
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_le(n, event_message_size_hint(&ev));
	ck_assert_int_eq(json_parse(&d, out, n, NULL), 0);
	ck_assert_str_eq(get_str(&d, 0, "type"), "event");
	ck_assert(is_uuid_v4(get_str(&d, 0, "id")));
	util_strlcpy(id1, get_str(&d, 0, "id"), sizeof(id1));
	ck_assert_int_eq(json_parse_iso8601_ms(get_str(&d, 0, "timestamp"), &t),
			 0);
	ck_assert(t >= before && t <= after);
	ck_assert_uint_eq(strlen(get_str(&d, 0, "timestamp")), 24);
	ck_assert_int_eq(json_obj_len(&d, 0), 4);

	p = json_obj_get(&d, 0, "payload");
	ck_assert_int_eq(json_type(&d, p), JSON_OBJECT);
	ck_assert_str_eq(get_str(&d, p, "eventId"), "evt-0001");
	ck_assert_str_eq(get_str(&d, p, "eventType"), "message.received");
	ck_assert_int_eq(
	    json_tok_raw(&d, json_obj_get(&d, p, "data"), &raw, &rawlen), 0);
	ck_assert_uint_eq(rawlen, strlen(FULL_PAYLOAD));
	ck_assert(memcmp(raw, FULL_PAYLOAD, rawlen) == 0);
	ck_assert_int_eq(
	    json_get_bool(&d, json_obj_get(&d, p, "requiresAck"), &b), 0);
	ck_assert(b);
	ck_assert_int_eq(json_get_uint64(&d, json_obj_get(&d, p, "seq"), &u64),
			 0);
	ck_assert_uint_eq(u64, 42);
	ck_assert_int_eq(
	    json_get_int64(&d, json_obj_get(&d, p, "priority"), &i64), 0);
	ck_assert_int_eq(i64, -7);
	ck_assert_str_eq(get_str(&d, p, "channelId"), "C123");
	ck_assert_str_eq(get_str(&d, p, "occurredAt"),
			 "2026-11-26T12:34:56.789Z");
	ck_assert_str_eq(get_str(&d, p, "orchestratorId"), "orch-1");
	ck_assert_str_eq(get_str(&d, p, "organizationId"), "acme");
	ck_assert_str_eq(get_str(&d, p, "workspaceId"), "ws-3");
	ck_assert_str_eq(get_str(&d, p, "daemonId"), "d-7");
	ck_assert_int_eq(json_obj_len(&d, p), 12);
	json_doc_free(&d);

	/* Each message gets a fresh id. */
	n = event_message(&ev, 42, out, sizeof(out));
	ck_assert_int_eq(json_parse(&d, out, n, NULL), 0);
	ck_assert_str_ne(get_str(&d, 0, "id"), id1);
	json_doc_free(&d);
	event_free(&ev);
}
END_TEST

START_TEST(test_message_minimal)
{
	struct event ev;
	struct json_doc d;
	char out[1024];
	size_t n;
	int p;
	bool b = true;
	int64_t i64 = 1;

	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"m\",\"type\":\"system.x\","
				   "\"orchestratorId\":\"*\",\"payload\":{}}",
				   NULL, NULL, 0),
			 EVENT_OK);
	n = event_message(&ev, 0, out, sizeof(out));
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(json_parse(&d, out, n, NULL), 0);
	p = json_obj_get(&d, 0, "payload");
	ck_assert_str_eq(get_str(&d, p, "eventId"), "m");
	ck_assert_str_eq(get_str(&d, p, "eventType"), "system.x");
	ck_assert_int_eq(json_obj_len(&d, json_obj_get(&d, p, "data")), 0);
	ck_assert_int_eq(
	    json_get_bool(&d, json_obj_get(&d, p, "requiresAck"), &b), 0);
	ck_assert(!b);
	ck_assert_int_eq(
	    json_get_int64(&d, json_obj_get(&d, p, "priority"), &i64), 0);
	ck_assert_int_eq(i64, 0);
	/* seq 0, no channel, broadcast: those keys are left out. */
	ck_assert_int_eq(json_obj_get(&d, p, "seq"), -1);
	ck_assert_int_eq(json_obj_get(&d, p, "channelId"), -1);
	ck_assert_int_eq(json_obj_get(&d, p, "orchestratorId"), -1);
	ck_assert_int_eq(json_obj_get(&d, p, "organizationId"), -1);
	ck_assert_int_eq(json_obj_get(&d, p, "workspaceId"), -1);
	ck_assert_int_eq(json_obj_get(&d, p, "daemonId"), -1);
	ck_assert_int_ne(json_obj_get(&d, p, "occurredAt"), -1);
	ck_assert_int_eq(json_obj_len(&d, p), 6);
	json_doc_free(&d);
	event_free(&ev);
}
END_TEST

START_TEST(test_message_cap)
{
	struct event ev;
	char out[1024], *big;
	size_t n, m;

	ck_assert_int_eq(parse_org(&ev, full_record, NULL, NULL, 0), EVENT_OK);
	n = event_message(&ev, 7, out, sizeof(out));
	ck_assert_uint_gt(n, 0);
	/* The length is stable (same fields, fixed-width uuid and time). */
	memset(out, '@', sizeof(out));
	ck_assert_uint_eq(event_message(&ev, 7, out, n - 1), 0);
	ck_assert_int_eq(out[n - 1], '@'); /* nothing past the cap */
	ck_assert_uint_eq(event_message(&ev, 7, out, 1), 0);
	ck_assert_uint_eq(event_message(&ev, 7, NULL, 0), 0);
	ck_assert_uint_eq(event_message(&ev, 7, out, n), n);
	/* The size hint is enough even for worst-case escaping. */
	big = util_malloc(event_message_size_hint(&ev));
	m = event_message(&ev, UINT64_MAX, big, event_message_size_hint(&ev));
	ck_assert_uint_gt(m, n);
	free(big);
	event_free(&ev);
	/* Little variable text: the fixed part of the hint must hold. */
	ck_assert_int_eq(
	    parse_org(&ev,
		      "{\"id\":\"x\",\"type\":\"a.b\",\"payload\":"
		      "{},\"priority\":-100,\"requiresAck\":false}",
		      NULL, NULL, 0),
	    EVENT_OK);
	big = util_malloc(event_message_size_hint(&ev));
	ck_assert_uint_gt(
	    event_message(&ev, UINT64_MAX, big, event_message_size_hint(&ev)),
	    0);
	free(big);
	big = util_malloc(event_queue_body_size_hint(&ev));
	ck_assert_uint_gt(
	    event_queue_body(&ev, big, event_queue_body_size_hint(&ev)), 0);
	free(big);
	/* An event with no payload (a zeroed struct) writes nothing. */
	event_free(&ev);
	memset(&ev, 0, sizeof(ev));
	ck_assert_uint_eq(event_message(&ev, 1, out, sizeof(out)), 0);
	ck_assert_uint_eq(event_queue_body(&ev, out, sizeof(out)), 0);
}
END_TEST

/* Ids that need escaping, at their maximum lengths. */
static char *
escape_record(void)
{
	char *rec = util_malloc(8192);
	char id[129 * 2 + 1], ws[63 * 6 + 1];

	for (int i = 0; i < 128; i++) {
		id[2 * i] = '\\';
		id[2 * i + 1] = i % 2 ? '"' : '\\';
	}
	id[256] = '\0';
	for (int i = 0; i < 63; i++)
		memcpy(ws + 6 * i, "\\u0001", 6);
	ws[378] = '\0';
	snprintf(rec, 8192,
		 "{\"id\":\"%s\",\"type\":\"call.started\",\"orchestratorId\":"
		 "\"\\u00e9\\u2028\\ud83d\\ude00/\",\"daemonId\":\"\\t\\n\","
		 "\"workspaceId\":\"%s\",\"payload\":{\"k\":\"\\u0000\"},"
		 "\"priority\":3}",
		 id, ws);
	return rec;
}

START_TEST(test_message_escapes)
{
	struct event ev;
	struct json_doc d;
	char *rec = escape_record(), *out, buf[512];
	size_t n, hint;
	int p;

	ck_assert_int_eq(parse_org(&ev, rec, NULL, NULL, 0), EVENT_OK);
	ck_assert_uint_eq(strlen(ev.id), 128);
	ck_assert_uint_eq(strlen(ev.workspace), 63);
	ck_assert_str_eq(ev.orch, "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80/");
	ck_assert_str_eq(ev.payload, "{\"k\":\"\\u0000\"}");
	hint = event_message_size_hint(&ev);
	out = util_malloc(hint);
	n = event_message(&ev, 1, out, hint);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(json_parse(&d, out, n, NULL), 0);
	p = json_obj_get(&d, 0, "payload");
	ck_assert_int_eq(json_get_string(&d, json_obj_get(&d, p, "eventId"),
					 buf, sizeof(buf), NULL),
			 0);
	ck_assert_str_eq(buf, ev.id);
	ck_assert_str_eq(get_str(&d, p, "orchestratorId"), ev.orch);
	ck_assert_str_eq(get_str(&d, p, "daemonId"), "\t\n");
	ck_assert_str_eq(get_str(&d, p, "workspaceId"), ev.workspace);
	json_doc_free(&d);
	free(out);
	event_free(&ev);
	free(rec);
}
END_TEST

/* event_payload_write() into a fresh buffer; its length (0: failed). */
static size_t
payload_of(const struct event *ev, uint64_t seq, char *out, size_t cap)
{
	struct json_writer jw;
	size_t len;

	json_w_init(&jw, out, cap);
	if (event_payload_write(ev, seq, &jw) != 0)
		return 0;
	ck_assert_int_eq(json_w_finish(&jw, &len), 0);
	return len;
}

START_TEST(test_payload_write)
{
	struct event ev;
	struct json_doc d;
	char msg[2048], out[2048];
	const char *raw;
	size_t n, m, rawlen;
	int p;
	int64_t i64;
	uint64_t u64;
	bool b;

	/* Exactly the bytes of the message's payload, whatever the seq. */
	ck_assert_int_eq(parse_org(&ev, full_record, NULL, NULL, 0), EVENT_OK);
	for (uint64_t seq = 0; seq < 3; seq++) {
		m = event_message(&ev, seq * 1000, msg, sizeof(msg));
		ck_assert_uint_gt(m, 0);
		ck_assert_int_eq(json_parse(&d, msg, m, NULL), 0);
		ck_assert_int_eq(json_tok_raw(&d,
					      json_obj_get(&d, 0, "payload"),
					      &raw, &rawlen),
				 0);
		n = payload_of(&ev, seq * 1000, out, sizeof(out));
		ck_assert_uint_eq(n, rawlen);
		ck_assert(memcmp(out, raw, n) == 0);
		json_doc_free(&d);
	}

	/* Every field of section 4, with the extensions. */
	n = payload_of(&ev, 42, out, sizeof(out));
	ck_assert_int_eq(json_parse(&d, out, n, NULL), 0);
	p = json_root(&d);
	ck_assert_str_eq(get_str(&d, p, "eventId"), "evt-0001");
	ck_assert_str_eq(get_str(&d, p, "eventType"), "message.received");
	ck_assert_int_eq(
	    json_tok_raw(&d, json_obj_get(&d, p, "data"), &raw, &rawlen), 0);
	ck_assert_uint_eq(rawlen, strlen(FULL_PAYLOAD));
	ck_assert(memcmp(raw, FULL_PAYLOAD, rawlen) == 0);
	ck_assert_int_eq(
	    json_get_bool(&d, json_obj_get(&d, p, "requiresAck"), &b), 0);
	ck_assert(b);
	ck_assert_int_eq(json_get_uint64(&d, json_obj_get(&d, p, "seq"), &u64),
			 0);
	ck_assert_uint_eq(u64, 42);
	ck_assert_int_eq(
	    json_get_int64(&d, json_obj_get(&d, p, "priority"), &i64), 0);
	ck_assert_int_eq(i64, -7);
	ck_assert_str_eq(get_str(&d, p, "channelId"), "C123");
	ck_assert_str_eq(get_str(&d, p, "occurredAt"),
			 "2026-11-26T12:34:56.789Z");
	ck_assert_str_eq(get_str(&d, p, "orchestratorId"), "orch-1");
	ck_assert_str_eq(get_str(&d, p, "organizationId"), "acme");
	ck_assert_str_eq(get_str(&d, p, "workspaceId"), "ws-3");
	ck_assert_str_eq(get_str(&d, p, "daemonId"), "d-7");
	ck_assert_int_eq(json_obj_len(&d, p), 12);
	json_doc_free(&d);

	/* As array elements: the writer puts the commas. */
	{
		struct json_writer jw;
		char arr[4096];

		json_w_init(&jw, arr, sizeof(arr));
		json_w_arr_begin(&jw);
		ck_assert_int_eq(event_payload_write(&ev, 1, &jw), 0);
		ck_assert_int_eq(event_payload_write(&ev, 2, &jw), 0);
		json_w_arr_end(&jw);
		ck_assert_int_eq(json_w_finish(&jw, &n), 0);
		ck_assert_int_eq(json_parse(&d, arr, n, NULL), 0);
		ck_assert_int_eq(json_array_len(&d, 0), 2);
		ck_assert_int_eq(
		    json_get_uint64(
			&d, json_obj_get(&d, json_array_get(&d, 0, 1), "seq"),
			&u64),
		    0);
		ck_assert_uint_eq(u64, 2);
		json_doc_free(&d);

		/* Where a key is due, it is an error, sticky. */
		json_w_init(&jw, arr, sizeof(arr));
		json_w_obj_begin(&jw);
		ck_assert_int_eq(event_payload_write(&ev, 1, &jw), -1);
		json_w_obj_end(&jw);
		ck_assert_int_eq(json_w_finish(&jw, &n), -1);
	}

	/* No room: -1, and nothing written past the cap. */
	n = payload_of(&ev, 7, out, sizeof(out));
	memset(out, '@', sizeof(out));
	ck_assert_uint_eq(payload_of(&ev, 7, out, n - 1), 0);
	ck_assert_int_eq(out[n - 1], '@');
	ck_assert_uint_eq(payload_of(&ev, 7, out, n), n);
	ck_assert_uint_le(n, event_message_size_hint(&ev));
	event_free(&ev);

	/* Absent optional fields are left out, not written empty. */
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"m\",\"type\":\"system.x\","
				   "\"orchestratorId\":\"*\",\"payload\":{}}",
				   NULL, NULL, 0),
			 EVENT_OK);
	n = payload_of(&ev, 0, out, sizeof(out));
	ck_assert_uint_gt(n, 0);
	out[n] = '\0';
	{
		/* The record had no timestamp: occurredAt is its arrival. */
		static const char head[] =
		    "{\"eventId\":\"m\",\"eventType\":\"system.x\","
		    "\"data\":{},\"requiresAck\":false,\"priority\":0,"
		    "\"occurredAt\":\"";

		ck_assert_uint_eq(n, strlen(head) + 24 + 2);
		ck_assert(strncmp(out, head, strlen(head)) == 0);
		ck_assert_str_eq(out + n - 3, "Z\"}");
	}
	event_free(&ev);

	/* A zeroed event (no payload) writes nothing. */
	memset(&ev, 0, sizeof(ev));
	{
		struct json_writer jw;

		json_w_init(&jw, out, sizeof(out));
		ck_assert_int_eq(event_payload_write(&ev, 1, &jw), -1);
		ck_assert_uint_eq(jw.len, 0);
	}
}
END_TEST

START_TEST(test_payload_escapes)
{
	struct event ev;
	struct json_doc d;
	char *rec = escape_record(), *out, buf[512];
	size_t n, hint;
	int p;

	ck_assert_int_eq(parse_org(&ev, rec, NULL, NULL, 0), EVENT_OK);
	/* Worst-case escaping still fits the message's size hint. */
	hint = event_message_size_hint(&ev);
	out = util_malloc(hint);
	n = payload_of(&ev, UINT64_MAX, out, hint);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(json_parse(&d, out, n, NULL), 0);
	p = json_root(&d);
	ck_assert_int_eq(json_get_string(&d, json_obj_get(&d, p, "eventId"),
					 buf, sizeof(buf), NULL),
			 0);
	ck_assert_str_eq(buf, ev.id);
	ck_assert_str_eq(get_str(&d, p, "orchestratorId"), ev.orch);
	ck_assert_str_eq(get_str(&d, p, "daemonId"), "\t\n");
	ck_assert_str_eq(get_str(&d, p, "workspaceId"), ev.workspace);
	ck_assert_str_eq(get_str(&d, p, "eventType"), "call.started");
	json_doc_free(&d);
	/* The data is forwarded verbatim, \u0000 included. */
	ck_assert_ptr_nonnull(strstr(out, "\"data\":{\"k\":\"\\u0000\"}"));
	/* Control characters are escaped, never raw. */
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_ge((unsigned char)out[i], 0x20);
	free(out);
	event_free(&ev);
	free(rec);
}
END_TEST

/* Two parsed events carry the same record. */
static void
assert_same(const struct event *a, const struct event *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_str_eq(a->type, b->type);
	ck_assert_str_eq(a->orch, b->orch);
	ck_assert_str_eq(a->daemon, b->daemon);
	ck_assert_str_eq(a->org, b->org);
	ck_assert_str_eq(a->workspace, b->workspace);
	ck_assert_str_eq(a->channel, b->channel);
	ck_assert_uint_eq(a->payload_len, b->payload_len);
	ck_assert(memcmp(a->payload, b->payload, a->payload_len + 1) == 0);
	ck_assert_uint_eq(a->ts_ms, b->ts_ms);
	ck_assert_int_eq(a->priority, b->priority);
	ck_assert_int_eq(a->requires_ack, b->requires_ack);
	ck_assert_int_eq(a->target, b->target);
}

/* record (on org's channel) -> body -> event: the same event. */
static void
round_trip(const char *rec, size_t len, size_t max_size, const char *org)
{
	struct event a, b;
	char *body, err[128];
	size_t n, hint;

	ck_assert_int_eq(event_parse_ctx(&a, rec, len, max_size, org, NULL, 0),
			 EVENT_OK);
	hint = event_queue_body_size_hint(&a);
	body = util_malloc(hint);
	n = event_queue_body(&a, body, hint);
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_eq(event_queue_body(&a, body, n - 1), 0);
	ck_assert_uint_eq(event_queue_body(&a, body, n), n);
	ck_assert_uint_le(n, (max_size ? max_size : EVENT_DEFAULT_MAX_SIZE) +
				 EVENT_QUEUE_BODY_SLACK);
	ck_assert_msg(event_parse_queue_body(&b, body, n, max_size, err,
					     sizeof(err)) == EVENT_OK,
		      "%s", err);
	assert_same(&a, &b);
	event_free(&a);
	event_free(&b);
	free(body);
}

START_TEST(test_queue_body)
{
	static const char bcast[] =
	    "{\"id\":\"q\",\"type\":\"presence.updated\",\"payload\":"
	    "{ \"z\" : [ ] },\"orchestratorId\":\"*\"}";
	char *rec;
	struct event ev;
	char body[1024];
	size_t n;

	round_trip(full_record, strlen(full_record), 0, NULL);
	round_trip(bcast, strlen(bcast), 0, NULL);
	round_trip(bcast, strlen(bcast), 0, "acme");
	rec = escape_record();
	round_trip(rec, strlen(rec), 0, "\x01\x02");
	free(rec);
	/* A record at the limit, growing by the normal form's fields. */
	rec = record_of(2000);
	round_trip(rec, 2000, 2000, rep('\x1f', 63));
	free(rec);

	/* The body is a record in normal form, timestamp in ms. */
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"n\",\"type\":\"a.b\",\"payload\":"
				   "{},\"timestamp\":\"2026-11-26T12:34:56"
				   ".789123Z\"}",
				   NULL, NULL, 0),
			 EVENT_OK);
	n = event_queue_body(&ev, body, sizeof(body));
	ck_assert_uint_gt(n, 0);
	body[n] = '\0';
	ck_assert_str_eq(body, "{\"id\":\"n\",\"type\":\"a.b\","
			       "\"orchestratorId\":\"\",\"payload\":{},"
			       "\"timestamp\":\"2026-11-26T12:34:56.789Z\","
			       "\"requiresAck\":false,\"priority\":0}");
	event_free(&ev);
	/* And it is read as strictly as a record. */
	ck_assert_int_eq(event_parse_queue_body(&ev, "{", 1, 0, NULL, 0),
			 EVENT_EJSON);
	ck_assert_int_eq(
	    event_parse_queue_body(&ev, "{\"id\":\"n\"}", 10, 0, NULL, 0),
	    EVENT_ETYPE);
	rec = record_of(EVENT_DEFAULT_MAX_SIZE + EVENT_QUEUE_BODY_SLACK + 1);
	ck_assert_int_eq(event_parse_queue_body(&ev, rec,
						EVENT_DEFAULT_MAX_SIZE +
						    EVENT_QUEUE_BODY_SLACK + 1,
						0, NULL, 0),
			 EVENT_ETOOBIG);
	free(rec);
	/* Within the slack, but a payload beyond max_size. */
	rec = record_of(EVENT_DEFAULT_MAX_SIZE + 100);
	ck_assert_int_eq(event_parse_queue_body(&ev, rec,
						EVENT_DEFAULT_MAX_SIZE + 100, 0,
						NULL, 0),
			 EVENT_EPAYLOAD);
	free(rec);
}
END_TEST

START_TEST(test_routing)
{
	struct event ev;

	/* One orchestrator (organization known). */
	ck_assert_int_eq(parse_org(&ev, full_record, NULL, NULL, 0), EVENT_OK);
	ck_assert(event_targets_orchestrator(&ev, "orch-1", "acme"));
	ck_assert(event_targets_orchestrator(&ev, "orch-1", NULL));
	ck_assert(event_targets_orchestrator(&ev, "orch-1", ""));
	ck_assert(!event_targets_orchestrator(&ev, "orch-1", "other"));
	ck_assert(!event_targets_orchestrator(&ev, "orch-2", "acme"));
	ck_assert(!event_targets_orchestrator(&ev, "orch-", "acme"));
	ck_assert(!event_targets_orchestrator(&ev, NULL, "acme"));
	ck_assert(event_targets_daemon(&ev, "d-7"));
	ck_assert(!event_targets_daemon(&ev, "d-8"));
	ck_assert(!event_targets_daemon(&ev, NULL));
	ck_assert_str_eq(event_scope(&ev), "messages:read");
	event_free(&ev);

	/* Organization broadcast. */
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"x\",\"type\":\"vp.online\","
				   "\"payload\":{}}",
				   "acme", NULL, 0),
			 EVENT_OK);
	ck_assert(event_targets_orchestrator(&ev, "any", "acme"));
	ck_assert(!event_targets_orchestrator(&ev, "any", "acme2"));
	ck_assert(!event_targets_orchestrator(&ev, "any", NULL));
	ck_assert(!event_targets_orchestrator(&ev, "any", ""));
	ck_assert(event_targets_daemon(&ev, "d"));
	ck_assert(event_targets_daemon(&ev, NULL));
	ck_assert_str_eq(event_scope(&ev), "vp:status");
	event_free(&ev);

	/* Global broadcast. */
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"x\",\"type\":\"system.notice\","
				   "\"payload\":{},\"orchestratorId\":\"\"}",
				   NULL, NULL, 0),
			 EVENT_OK);
	ck_assert(event_targets_orchestrator(&ev, "any", "acme"));
	ck_assert(event_targets_orchestrator(&ev, "other", NULL));
	ck_assert_ptr_null(event_scope(&ev));
	event_free(&ev);

	/* Targeted, no organization in the record: any org. */
	ck_assert_int_eq(parse_org(&ev,
				   "{\"id\":\"x\",\"type\":\"call.started\","
				   "\"payload\":{},\"orchestratorId\":\"o\"}",
				   NULL, NULL, 0),
			 EVENT_OK);
	ck_assert(event_targets_orchestrator(&ev, "o", "whatever"));
	ck_assert(!event_targets_orchestrator(&ev, "p", "whatever"));
	ck_assert_str_eq(event_scope(&ev), "calls:join");
	event_free(&ev);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("event");
	TCase *tp = tcase_create("parse");
	TCase *to = tcase_create("output");
	SRunner *sr;
	int failed;

	tcase_add_test(tp, test_valid_full);
	tcase_add_test(tp, test_outlives_input);
	tcase_add_test(tp, test_valid_minimal);
	tcase_add_test(tp, test_broadcast);
	tcase_add_test(tp, test_org_channel);
	tcase_add_test(tp, test_bad_json);
	tcase_add_test(tp, test_too_big);
	tcase_add_test(tp, test_bad_id);
	tcase_add_test(tp, test_bad_type);
	tcase_add_test(tp, test_bad_target);
	tcase_add_test(tp, test_bad_payload);
	tcase_add_test(tp, test_bad_fields);
	tcase_add_test(tp, test_kind_names);
	tcase_add_test(to, test_message_full);
	tcase_add_test(to, test_message_minimal);
	tcase_add_test(to, test_message_cap);
	tcase_add_test(to, test_message_escapes);
	tcase_add_test(to, test_payload_write);
	tcase_add_test(to, test_payload_escapes);
	tcase_add_test(to, test_queue_body);
	tcase_add_test(to, test_routing);
	suite_add_tcase(s, tp);
	suite_add_tcase(s, to);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
