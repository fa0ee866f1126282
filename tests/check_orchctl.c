/* Unit tests for orchctl's pure parts: ctl_req.c, ctl_render.c, ctl_proto.c. */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/orchctl/ctl.h"
#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/ws.h"

START_TEST(test_req_admin)
{
	char buf[1024], err[256];

	ck_assert_int_gt(ctl_req_simple(buf, sizeof(buf), "status"), 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"status\"}");
	ck_assert_int_gt(
	    ctl_req_connections(buf, sizeof(buf), "vp-1", NULL, -1, 0), 0);
	ck_assert_str_eq(buf,
			 "{\"cmd\":\"connections\",\"orchestrator\":\"vp-1\"}");
	ck_assert_int_gt(
	    ctl_req_connections(buf, sizeof(buf), NULL, "org", 0, 50), 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"connections\",\"organization\":"
			      "\"org\",\"worker\":0,\"limit\":50}");
	ck_assert_int_gt(ctl_req_kick(buf, sizeof(buf), "vp\"1", "d1", NULL,
				      "bye", err, sizeof(err)),
			 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"kick\",\"orchestrator\":\"vp\\\"1\","
			      "\"daemon\":\"d1\",\"reason\":\"bye\"}");
	ck_assert_int_gt(ctl_req_kick(buf, sizeof(buf), NULL, NULL, "1:42",
				      NULL, err, sizeof(err)),
			 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"kick\",\"connection\":\"1:42\"}");
	/* No selector, daemon without orchestrator, a bad connection id. */
	ck_assert_int_eq(ctl_req_kick(buf, sizeof(buf), NULL, NULL, NULL, NULL,
				      err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_req_kick(buf, sizeof(buf), NULL, "d", "1:2", NULL,
				      err, sizeof(err)),
			 -1);
	ck_assert_ptr_nonnull(strstr(err, "-o"));
	ck_assert_int_eq(ctl_req_kick(buf, sizeof(buf), NULL, NULL, "12", NULL,
				      err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_req_kick(buf, sizeof(buf), NULL, NULL, "a:1", NULL,
				      err, sizeof(err)),
			 -1);
	ck_assert_int_gt(
	    ctl_req_revoke(buf, sizeof(buf), "j-1", 60, err, sizeof(err)), 0);
	ck_assert_str_eq(buf,
			 "{\"cmd\":\"revoke\",\"jti\":\"j-1\",\"ttl\":60}");
	ck_assert_int_eq(
	    ctl_req_revoke(buf, sizeof(buf), "", 0, err, sizeof(err)), -1);
	ck_assert_int_gt(
	    ctl_req_loglevel(buf, sizeof(buf), NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"loglevel\"}");
	ck_assert_int_gt(
	    ctl_req_loglevel(buf, sizeof(buf), "debug", err, sizeof(err)), 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"loglevel\",\"level\":\"debug\"}");
	ck_assert_int_eq(
	    ctl_req_loglevel(buf, sizeof(buf), "loud", err, sizeof(err)), -1);
	ck_assert_int_gt(ctl_req_drain(buf, sizeof(buf), 3), 0);
	ck_assert_str_eq(buf, "{\"cmd\":\"drain\",\"worker\":3}");
	/* Too small a buffer is an error, never a truncated request. */
	ck_assert_int_eq(ctl_req_simple(buf, 8, "status"), -1);
}
END_TEST

START_TEST(test_reply_ok)
{
	char err[128];
	const char *r;

	r = "{\"ok\":true,\"matched\":2}";
	ck_assert_int_eq(ctl_reply_ok(r, strlen(r), err, sizeof(err)), 1);
	r = "{\"ok\":false,\"error\":\"no such worker\"}";
	ck_assert_int_eq(ctl_reply_ok(r, strlen(r), err, sizeof(err)), 0);
	ck_assert_str_eq(err, "no such worker");
	r = "{\"ok\":false}";
	ck_assert_int_eq(ctl_reply_ok(r, strlen(r), err, sizeof(err)), 0);
	ck_assert_str_eq(err, "(no reason given)");
	r = "{\"ok\":1}";
	ck_assert_int_eq(ctl_reply_ok(r, strlen(r), err, sizeof(err)), -1);
	r = "[true]";
	ck_assert_int_eq(ctl_reply_ok(r, strlen(r), err, sizeof(err)), -1);
	r = "{\"ok\":tru";
	ck_assert_int_eq(ctl_reply_ok(r, strlen(r), err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_duration)
{
	char b[32];

	ctl_fmt_duration(0, b, sizeof(b));
	ck_assert_str_eq(b, "0ms");
	ctl_fmt_duration(999, b, sizeof(b));
	ck_assert_str_eq(b, "999ms");
	ctl_fmt_duration(59999, b, sizeof(b));
	ck_assert_str_eq(b, "59s");
	ctl_fmt_duration(60000 * 5 + 7000, b, sizeof(b));
	ck_assert_str_eq(b, "5m07s");
	ctl_fmt_duration(3600000ull * 3 + 60000 * 5, b, sizeof(b));
	ck_assert_str_eq(b, "3h05m");
	ctl_fmt_duration(86400000ull * 2 + 3600000 * 3, b, sizeof(b));
	ck_assert_str_eq(b, "2d03h");
}
END_TEST

/* Render into memory. */
static char *
render(int (*fn)(const char *, size_t, FILE *), const char *json, int *rc)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	ck_assert_ptr_nonnull(fp);
	*rc = fn(json, strlen(json), fp);
	fclose(fp);
	return out;
}

static int
render_conns_at(const char *buf, size_t len, FILE *fp)
{
	return ctl_render_connections(buf, len, 1000000, fp);
}

START_TEST(test_render_status)
{
	const char *j =
	    "{\"ok\":true,\"stats\":{\"version\":\"0.1.0\",\"time_ms\":"
	    "100000,\"started_ms\":40000,\"connections\":{\"open\":3,"
	    "\"authenticated\":2,\"orchestrators\":1,\"organizations\":1,"
	    "\"max\":10000,\"accepted\":9,\"closed\":6},\"workers\":[{\"slot\":"
	    "0,\"pid\":4242,\"generation\":1,\"started_ms\":70000,\"open\":2,"
	    "\"authenticated\":2,\"messages_in\":17,\"messages_out\":23,"
	    "\"rss_bytes\":10485760},{\"slot\":1,\"pid\":4243}],\"relay\":{"
	    "\"pid\":4240,\"redis\":\"up\",\"received\":5},\"database\":{"
	    "\"enabled\":false,\"ready\":false}}}";
	char *out;
	int rc;

	out = render(ctl_render_status, j, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(strstr(out, "orchd 0.1.0, up 1m00s\n"));
	ck_assert_ptr_nonnull(strstr(out, "open 3  authenticated 2"));
	ck_assert_ptr_nonnull(strstr(out, "pid 4240  redis up  received 5  "
					  "routed -"));
	ck_assert_ptr_nonnull(strstr(out, "enabled no  ready no  lookups -"));
	/* Worker 0 up 30 s, 10 MiB; worker 1 with most fields missing. */
	ck_assert_ptr_nonnull(strstr(out, "0     4242     1    30s"));
	ck_assert_ptr_nonnull(strstr(out, "     17         23     10.0\n"));
	ck_assert_ptr_nonnull(strstr(out, "1     4243     -    -"));
	free(out);

	out = render(ctl_render_status, "{\"ok\":true}", &rc);
	ck_assert_int_eq(rc, -1);
	free(out);
	out = render(ctl_render_status, "not json", &rc);
	ck_assert_int_eq(rc, -1);
	free(out);
}
END_TEST

START_TEST(test_render_connections)
{
	const char *j =
	    "{\"ok\":true,\"total\":7,\"truncated\":true,\"connections\":[{"
	    "\"id\":\"0:12\",\"worker\":0,\"pid\":9,\"orchestrator\":\"vp-1\","
	    "\"daemon\":\"d\\n1\",\"organization\":\"org-1\",\"state\":"
	    "\"active\",\"connected_ms\":880000,\"last_seen_ms\":995000}]}";
	char *out;
	int rc;

	out = render(render_conns_at, j, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(strstr(out, "ID "));
	ck_assert_ptr_nonnull(strstr(out, "0:12 "));
	/* A control character from the server never breaks the table. */
	ck_assert_ptr_nonnull(strstr(out, "d?1 "));
	ck_assert_ptr_nonnull(strstr(out, "active   2m00s    5s\n"));
	ck_assert_ptr_nonnull(strstr(out, "1 shown, 7 in all (truncated"));
	free(out);
	out = render(render_conns_at, "{\"ok\":true,\"connections\":{}}", &rc);
	ck_assert_int_eq(rc, -1);
	free(out);
}
END_TEST

START_TEST(test_event_record)
{
	struct ctl_event_args a;
	char buf[4096], id[EVENT_ID_MAX], err[256];
	struct event ev;
	int n;

	memset(&a, 0, sizeof(a));
	a.type = "message.received";
	a.orch = "vp-1";
	a.daemon = "d-1";
	a.org = "org-1";
	a.workspace = "ws-1";
	a.channel = "chan-1";
	a.data = "{\"text\": \"hi\",\n \"n\": 1}";
	a.priority = -5;
	a.requires_ack = true;
	a.now_ms = 1764158096789ull;
	n = ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err));
	ck_assert_msg(n > 0, "%s", err);
	/* A fresh UUID id, read back by the relay's parser field by field. */
	ck_assert_uint_eq(strlen(id), 36);
	ck_assert_int_eq(event_parse(&ev, buf, (size_t)n, 0, err, sizeof(err)),
			 EVENT_OK);
	ck_assert_str_eq(ev.id, id);
	ck_assert_str_eq(ev.type, "message.received");
	ck_assert_str_eq(ev.orch, "vp-1");
	ck_assert_str_eq(ev.daemon, "d-1");
	ck_assert_str_eq(ev.org, "org-1");
	ck_assert_str_eq(ev.workspace, "ws-1");
	ck_assert_str_eq(ev.channel, "chan-1");
	ck_assert_str_eq(ev.payload, "{\"text\": \"hi\",\n \"n\": 1}");
	ck_assert_uint_eq(ev.ts_ms, 1764158096789ull);
	ck_assert_int_eq(ev.priority, -5);
	ck_assert(ev.requires_ack);
	ck_assert_int_eq(ev.target, EVENT_TARGET_ORCHESTRATOR);
	event_free(&ev);

	/* Broadcast to an organization, given id, default data. */
	memset(&a, 0, sizeof(a));
	a.type = "system.notice";
	a.id = "evt-7";
	a.org = "org-2";
	a.timestamp = "2026-01-02T03:04:05Z";
	n = ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err));
	ck_assert_msg(n > 0, "%s", err);
	ck_assert_str_eq(id, "evt-7");
	ck_assert_int_eq(event_parse(&ev, buf, (size_t)n, 0, err, sizeof(err)),
			 EVENT_OK);
	ck_assert_int_eq(ev.target, EVENT_TARGET_ORGANIZATION);
	ck_assert_str_eq(ev.payload, "{}");
	ck_assert(!ev.requires_ack);
	event_free(&ev);

	/* What the relay would skip is refused here, naming the field. */
	a.data = "[1]";
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "data"));
	a.data = "{\"a\":";
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	a.data = NULL;
	a.daemon = "d-1"; /* daemon without orchestrator */
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	a.daemon = NULL;
	a.type = "message.*";
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	a.type = "x.y";
	a.timestamp = "yesterday";
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	a.timestamp = NULL;
	a.priority = 101;
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	a.priority = 0;
	a.type = NULL;
	ck_assert_int_eq(
	    ctl_event_record(&a, buf, sizeof(buf), id, err, sizeof(err)), -1);
	/* A record that does not fit is refused, not cut. */
	a.type = "x.y";
	ck_assert_int_eq(ctl_event_record(&a, buf, 40, id, err, sizeof(err)),
			 -1);
}
END_TEST

START_TEST(test_token_claims)
{
	struct ctl_token_args a;
	struct jwt_keyring *kr;
	struct jwt_policy pol;
	struct jwt_claims c;
	char claims[2048], jti[128], tok[4096], err[256];
	const char secret[] = "0123456789abcdef0123456789abcdef";

	memset(&a, 0, sizeof(a));
	a.orch = "vp-1";
	a.daemon = "d-1";
	a.org = "org-1";
	a.scopes[0] = "messages:read";
	a.scopes[1] = "vp:status";
	a.nscopes = 2;
	a.iat = 1764158096;
	a.ttl = 600;
	a.iss = "orchd-test";
	ck_assert_int_gt(ctl_token_claims(&a, claims, sizeof(claims), jti,
					  sizeof(jti), err, sizeof(err)),
			 0);
	ck_assert_uint_eq(strlen(jti), 36);
	ck_assert_int_gt(
	    jwt_sign_hs256(secret, strlen(secret), claims, tok, sizeof(tok)),
	    0);
	/* orchd's verifier accepts it and reads every claim back. */
	kr = jwt_keyring_new();
	ck_assert_int_eq(jwt_keyring_set_secret(kr, secret, strlen(secret)), 0);
	jwt_policy_init(&pol);
	pol.iss = "orchd-test";
	pol.now = a.iat + 10;
	ck_assert_int_eq(
	    jwt_verify(kr, &pol, tok, strlen(tok), &c, err, sizeof(err)),
	    JWT_OK);
	ck_assert_str_eq(c.orchestrator, "vp-1");
	ck_assert_str_eq(c.daemon_id, "d-1");
	ck_assert_str_eq(c.organization_id, "org-1");
	ck_assert_str_eq(c.jti, jti);
	ck_assert_str_eq(c.type, "access");
	ck_assert_uint_eq(c.nscopes, 2);
	ck_assert_str_eq(c.scopes[1], "vp:status");
	ck_assert_int_eq(c.exp, a.iat + 600);
	pol.now = a.iat + 600 + 31;
	ck_assert_int_eq(
	    jwt_verify(kr, &pol, tok, strlen(tok), &c, err, sizeof(err)),
	    JWT_EEXPIRED);
	jwt_keyring_free(kr);

	{
		char orch[64], daemon[64];

		ck_assert_int_eq(ctl_token_peek(tok, orch, sizeof(orch), daemon,
						sizeof(daemon)),
				 0);
		ck_assert_str_eq(orch, "vp-1");
		ck_assert_str_eq(daemon, "d-1");
		ck_assert_int_eq(ctl_token_peek("abc", orch, sizeof(orch),
						daemon, sizeof(daemon)),
				 -1);
		ck_assert_int_eq(ctl_token_peek("a.!!.b", orch, sizeof(orch),
						daemon, sizeof(daemon)),
				 -1);
	}
	a.jti = "fixed";
	ck_assert_int_gt(ctl_token_claims(&a, claims, sizeof(claims), jti,
					  sizeof(jti), err, sizeof(err)),
			 0);
	ck_assert_str_eq(jti, "fixed");
	a.orch = NULL;
	ck_assert_int_eq(ctl_token_claims(&a, claims, sizeof(claims), jti,
					  sizeof(jti), err, sizeof(err)),
			 -1);
}
END_TEST

START_TEST(test_split_list)
{
	char s[] = "a, b,,c";
	char t[] = "1,2,3";
	const char *v[4];

	ck_assert_int_eq(ctl_split_list(s, v, 4), 3);
	ck_assert_str_eq(v[0], "a");
	ck_assert_str_eq(v[1], "b");
	ck_assert_str_eq(v[2], "c");
	ck_assert_int_eq(ctl_split_list(t, v, 2), -1);
}
END_TEST

START_TEST(test_backoff)
{
	/* Full jitter: the delay is the random draw modulo the ceiling. */
	ck_assert_uint_eq(ctl_backoff_ms(0, 0), 0);
	ck_assert_uint_eq(ctl_backoff_ms(0, 1000), 1000);
	ck_assert_uint_eq(ctl_backoff_ms(0, 1001), 0);
	ck_assert_uint_eq(ctl_backoff_ms(1, 2000), 2000);
	ck_assert_uint_eq(ctl_backoff_ms(3, 8000), 8000);
	ck_assert_uint_eq(ctl_backoff_ms(5, 32000), 32000);
	/* 1 s * 2^6 = 64 s is over the 60 s cap. */
	ck_assert_uint_eq(ctl_backoff_ms(6, 60000), 60000);
	ck_assert_uint_eq(ctl_backoff_ms(6, 60001), 0);
	ck_assert_uint_eq(ctl_backoff_ms(1000, UINT32_MAX),
			  (uint64_t)UINT32_MAX % 60001);
	for (uint32_t r = 0; r < 100000; r += 997)
		ck_assert_uint_le(ctl_backoff_ms(200, r * 40009u), 60000);
}
END_TEST

START_TEST(test_close_action)
{
	ck_assert_int_eq(ctl_close_action(1000), CTL_CLOSE_STOP);
	ck_assert_int_eq(ctl_close_action(1001), CTL_CLOSE_RECONNECT);
	ck_assert_int_eq(ctl_close_action(1006), CTL_CLOSE_RECONNECT);
	ck_assert_int_eq(ctl_close_action(1008), CTL_CLOSE_RECONNECT);
	ck_assert_int_eq(ctl_close_action(1011), CTL_CLOSE_RECONNECT);
	ck_assert_int_eq(ctl_close_action(1002), CTL_CLOSE_STOP);
	ck_assert_int_eq(ctl_close_action(1009), CTL_CLOSE_STOP);
	ck_assert_int_eq(ctl_close_action(4001), CTL_CLOSE_REAUTH);
	ck_assert_int_eq(ctl_close_action(4002), CTL_CLOSE_RECONNECT);
	ck_assert_int_eq(ctl_close_action(4003), CTL_CLOSE_REAUTH);
	ck_assert_int_eq(ctl_close_action(4004), CTL_CLOSE_RECONNECT);
	ck_assert_int_eq(ctl_close_action(4005), CTL_CLOSE_STOP);
	ck_assert_int_eq(ctl_close_action(4006), CTL_CLOSE_STOP);
	ck_assert_int_eq(ctl_close_action(4007), CTL_CLOSE_RECONNECT);
}
END_TEST

START_TEST(test_dedupe)
{
	struct ctl_dedupe d;
	char id[32];

	ck_assert_int_eq(ctl_dedupe_init(&d, 100), 0);
	ck_assert_int_eq(ctl_dedupe_check(&d, "a"), 0);
	ck_assert_int_eq(ctl_dedupe_check(&d, "a"), 1);
	ck_assert_int_eq(ctl_dedupe_check(&d, "b"), 0);
	/* The last 100 ids are always remembered ... */
	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "e%d", i);
		ck_assert_int_eq(ctl_dedupe_check(&d, id), 0);
		for (int k = i; k >= 0 && k > i - 100; k -= 7) {
			snprintf(id, sizeof(id), "e%d", k);
			ck_assert_int_eq(ctl_dedupe_check(&d, id), 1);
		}
	}
	/* ... and memory is bounded: the oldest are forgotten. */
	ck_assert_uint_le(d.n[0] + d.n[1], 200);
	ck_assert_int_eq(ctl_dedupe_check(&d, "e0"), 0);
	ctl_dedupe_free(&d);
}
END_TEST

START_TEST(test_messages)
{
	char buf[2048];
	struct json_doc d;
	const char *types[] = {"message.*", "system.*"};
	uint64_t u;
	int p;

	ck_assert_int_gt(ctl_msg_auth(buf, sizeof(buf), 1764158096789ull,
				      "t.o.k", "vp-1", "d-1", 42),
			 0);
	ck_assert_int_eq(json_parse(&d, buf, strlen(buf), NULL), 0);
	ck_assert(json_str_eq(&d, json_obj_get(&d, 0, "type"), "auth"));
	ck_assert(json_str_eq(&d, json_obj_get(&d, 0, "timestamp"),
			      "2025-11-26T11:54:56.789Z"));
	ck_assert_int_eq(json_type(&d, json_obj_get(&d, 0, "id")), JSON_STRING);
	p = json_obj_get(&d, 0, "payload");
	ck_assert(json_str_eq(&d, json_obj_get(&d, p, "accessToken"), "t.o.k"));
	ck_assert(
	    json_str_eq(&d, json_obj_get(&d, p, "orchestratorId"), "vp-1"));
	ck_assert(json_str_eq(&d, json_obj_get(&d, p, "daemonId"), "d-1"));
	ck_assert_int_eq(
	    json_get_uint64(&d, json_obj_get(&d, p, "resumeFrom"), &u), 0);
	ck_assert_uint_eq(u, 42);
	json_doc_free(&d);
	/* No seq seen yet: no resumeFrom. */
	ck_assert_int_gt(
	    ctl_msg_auth(buf, sizeof(buf), 1, "t", "vp-1", "d-1", 0), 0);
	ck_assert_ptr_null(strstr(buf, "resumeFrom"));

	ck_assert_int_gt(ctl_msg_subscribe(buf, sizeof(buf), 1, NULL, 0), 0);
	ck_assert_ptr_nonnull(
	    strstr(buf, "\"payload\":{\"eventTypes\":[\"*\"]}"));
	ck_assert_int_gt(ctl_msg_subscribe(buf, sizeof(buf), 1, types, 2), 0);
	ck_assert_ptr_nonnull(
	    strstr(buf, "\"eventTypes\":[\"message.*\",\"system.*\"]"));
	ck_assert_int_gt(ctl_msg_heartbeat(buf, sizeof(buf), 1), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\"type\":\"heartbeat\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"status\":\"active\""));
	ck_assert_int_gt(ctl_msg_ack(buf, sizeof(buf), 1, "e\"1"), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\"eventIds\":[\"e\\\"1\"]"));
	ck_assert_int_eq(ctl_msg_ack(buf, 30, 1, "e1"), -1);
}
END_TEST

START_TEST(test_server_msg)
{
	struct ctl_server_msg m;
	char err[128];
	const char *s;

	s = "{\"type\":\"event\",\"id\":\"x\",\"payload\":{\"eventId\":\"e-1\","
	    "\"eventType\":\"a.b\",\"data\":{\"k\": [1, 2]},\"requiresAck\":"
	    "true,\"seq\":17}}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), 0);
	ck_assert_str_eq(m.type, "event");
	ck_assert_str_eq(m.event_id, "e-1");
	ck_assert_uint_eq(m.seq, 17);
	ck_assert(m.requires_ack);
	ck_assert_int_eq(strncmp(m.payload, "{\"eventId\"", 10), 0);
	ck_assert_int_eq(m.payload[m.payload_len - 1], '}');

	s = "{\"type\":\"auth_success\",\"payload\":{\"heartbeatIntervalMs\":"
	    "30000}}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.heartbeat_ms, 30000);
	s = "{\"type\":\"reconnect\",\"payload\":{\"reason\":\"reload\","
	    "\"delay\":1234}}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.delay_ms, 1234);
	ck_assert_str_eq(m.text, "reload");
	s = "{\"type\":\"auth_error\",\"payload\":{\"code\":\"TOKEN_REVOKED\","
	    "\"message\":\"revoked\"}}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), 0);
	ck_assert_str_eq(m.code, "TOKEN_REVOKED");
	ck_assert_str_eq(m.text, "revoked");

	/* Bad messages are errors, not crashes. */
	s = "{\"type\":\"event\",\"payload\":{\"seq\":1}}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), -1);
	s = "{\"payload\":{}}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), -1);
	s = "{\"type\":\"event\",\"payload\":[]}";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), -1);
	s = "[]";
	ck_assert_int_eq(
	    ctl_parse_server_msg(s, strlen(s), &m, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_json_compact)
{
	const char *in = "{ \"a\" : [1,\n 2],\t\"b\": \"x y\\\" \\n z\" }";
	char out[128];
	size_t n = ctl_json_compact(in, strlen(in), out);

	ck_assert_str_eq(out, "{\"a\":[1,2],\"b\":\"x y\\\" \\n z\"}");
	ck_assert_uint_eq(n, strlen(out));
}
END_TEST

START_TEST(test_ws_url)
{
	struct ctl_url u;
	char err[128];

	ck_assert_int_eq(ctl_parse_ws_url("ws://127.0.0.1:8080/daemon/ws", &u,
					  err, sizeof(err)),
			 0);
	ck_assert_int_eq(u.tls, 0);
	ck_assert_str_eq(u.host, "127.0.0.1");
	ck_assert_int_eq(u.port, 8080);
	ck_assert_str_eq(u.path, "/daemon/ws");
	ck_assert_int_eq(
	    ctl_parse_ws_url("wss://[::1]/x?y=1", &u, err, sizeof(err)), 0);
	ck_assert_int_eq(u.tls, 1);
	ck_assert_str_eq(u.host, "::1");
	ck_assert_int_eq(u.port, 443);
	ck_assert_str_eq(u.path, "/x?y=1");
	ck_assert_int_eq(ctl_parse_ws_url("ws://h", &u, err, sizeof(err)), 0);
	ck_assert_int_eq(u.port, 80);
	ck_assert_str_eq(u.path, "/");
	ck_assert_int_eq(ctl_parse_ws_url("ws://h?q", &u, err, sizeof(err)), 0);
	ck_assert_str_eq(u.path, "/?q");
	ck_assert_int_eq(ctl_parse_ws_url("http://h/", &u, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://", &u, err, sizeof(err)), -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://h:0/", &u, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(
	    ctl_parse_ws_url("ws://h:65536/", &u, err, sizeof(err)), -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://h:/", &u, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://[::1/", &u, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://u@h/", &u, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://h/a b", &u, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_parse_ws_url("ws://h/#f", &u, err, sizeof(err)),
			 -1);
}
END_TEST

START_TEST(test_ws_response)
{
	/* RFC 6455 section 1.3's example key and accept value. */
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
	const char *ok = "HTTP/1.1 101 Switching Protocols\r\n"
			 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			 "sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= "
			 "\r\n\r\n";
	const char *wrong = "HTTP/1.1 101 Switching Protocols\r\n"
			    "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA="
			    "\r\n\r\n";
	const char *missing = "HTTP/1.1 101 OK\r\n\r\n";
	const char *refused = "HTTP/1.1 426 Upgrade Required\r\n"
			      "Upgrade: websocket\r\n\r\n";
	char err[200];
	int st;

	ck_assert_int_eq(
	    ctl_ws_check_response(ok, strlen(ok), key, &st, err, sizeof(err)),
	    1);
	ck_assert_int_eq(st, 101);
	ck_assert_int_eq(ctl_ws_check_response(wrong, strlen(wrong), key, &st,
					       err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_ws_check_response(missing, strlen(missing), key,
					       &st, err, sizeof(err)),
			 -1);
	ck_assert_int_eq(ctl_ws_check_response(refused, strlen(refused), key,
					       &st, err, sizeof(err)),
			 0);
	ck_assert_int_eq(st, 426);
	ck_assert_str_eq(err, "HTTP/1.1 426 Upgrade Required");
	ck_assert_int_eq(ctl_ws_check_response("SSH-2.0\r\n\r\n", 11, key, &st,
					       err, sizeof(err)),
			 -1);
}
END_TEST

/*
 * Only head[0..len) is read (fuzz_orchctl found reads past it): the read
 * buffer goes on past the head with stale bytes, which must not be taken
 * for a status code, and an exact-size heap copy lets ASan see any read
 * beyond it.
 */
START_TEST(test_ws_response_bounded)
{
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
	const char stale[] = "HTTP/1.1\r\n\r\n101 Switching Protocols\r\n";
	char *exact = malloc(12), err[200];
	int st = -7;

	ck_assert_ptr_nonnull(exact);
	ck_assert_int_eq(
	    ctl_ws_check_response(stale, 12, key, &st, err, sizeof(err)), -1);
	ck_assert_int_eq(st, 0);
	memcpy(exact, stale, 12);
	ck_assert_int_eq(
	    ctl_ws_check_response(exact, 12, key, &st, err, sizeof(err)), -1);
	memcpy(exact, "HTTP/1.1 426", 12);
	ck_assert_int_eq(
	    ctl_ws_check_response(exact, 12, key, &st, err, sizeof(err)), 0);
	ck_assert_int_eq(st, 426);
	ck_assert_str_eq(err, "HTTP/1.1 426");
	/* One space, then exactly three digits. */
	memcpy(exact, "HTTP/1.1  42", 12);
	ck_assert_int_eq(
	    ctl_ws_check_response(exact, 12, key, &st, err, sizeof(err)), -1);
	ck_assert_int_eq(ctl_ws_check_response("HTTP/1.1 1010\r\n\r\n", 17, key,
					       &st, err, sizeof(err)),
			 -1);
	free(exact);
}
END_TEST

/* The client's reader takes unmasked server frames and refuses masked ones. */
START_TEST(test_ws_client_reader)
{
	struct ws_reader r;
	struct ws_event ev;
	uint8_t buf[64];
	const uint8_t mask[4] = {1, 2, 3, 4};
	size_t n, used;

	ws_reader_init(&r, NULL, NULL);
	ws_reader_set_client(&r);
	n = ws_frame_encode(buf, sizeof(buf), WS_OP_TEXT, WS_FRAME_FIN,
			    (const uint8_t *)"{}", 2, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, buf, n, &used, &ev), WS_EV_TEXT);
	ck_assert_uint_eq(ev.len, 2);
	ck_assert_int_eq(memcmp(ev.data, "{}", 2), 0);
	n = ws_frame_encode(buf, sizeof(buf), WS_OP_TEXT, WS_FRAME_FIN,
			    (const uint8_t *)"{}", 2, mask);
	ck_assert_int_eq(ws_reader_feed(&r, buf, n, &used, &ev), WS_EV_ERROR);
	ck_assert_uint_eq(ev.code, WS_CLOSE_PROTOCOL);
	ws_reader_free(&r);
	/* A server's reader still refuses unmasked frames. */
	ws_reader_init(&r, NULL, NULL);
	n = ws_frame_encode(buf, sizeof(buf), WS_OP_TEXT, WS_FRAME_FIN,
			    (const uint8_t *)"{}", 2, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, buf, n, &used, &ev), WS_EV_ERROR);
	ws_reader_free(&r);
}
END_TEST

START_TEST(test_resume)
{
	struct ctl_resume r;

	memset(&r, 0, sizeof(r));
	ctl_resume_processed(&r, 5);
	ctl_resume_processed(&r, 3); /* out of order (priority): max kept */
	ck_assert_uint_eq(r.processed, 5);
	ck_assert_uint_eq(r.confirmed, 0);
	/* An answer to no heartbeat of ours proves nothing. */
	ctl_resume_heartbeat_ack(&r);
	ck_assert_uint_eq(r.confirmed, 0);
	ctl_resume_heartbeat_sent(&r); /* covers 5 */
	ctl_resume_processed(&r, 9);
	ctl_resume_heartbeat_sent(&r); /* covers 9 */
	ctl_resume_heartbeat_ack(&r);
	ck_assert_uint_eq(r.confirmed, 5);
	/* The connection breaks before the second answer: 9 is not confirmed.
	 */
	ctl_resume_new_connection(&r);
	ctl_resume_heartbeat_ack(&r);
	ck_assert_uint_eq(r.confirmed, 5);
	ctl_resume_heartbeat_sent(&r);
	ctl_resume_heartbeat_ack(&r);
	ck_assert_uint_eq(r.confirmed, 9);
	/* Unanswered heartbeats are bounded: the oldest are forgotten. */
	for (uint64_t i = 10; i < 10 + 3 * CTL_RESUME_HB_MAX; i++) {
		ctl_resume_processed(&r, i);
		ctl_resume_heartbeat_sent(&r);
	}
	ck_assert_uint_eq(r.nhb, CTL_RESUME_HB_MAX);
	ctl_resume_heartbeat_ack(&r);
	ck_assert_uint_eq(r.confirmed, 10 + 2 * CTL_RESUME_HB_MAX);
}
END_TEST

static Suite *
orchctl_suite(void)
{
	Suite *s = suite_create("orchctl");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_req_admin);
	tcase_add_test(tc, test_reply_ok);
	tcase_add_test(tc, test_duration);
	tcase_add_test(tc, test_render_status);
	tcase_add_test(tc, test_render_connections);
	tcase_add_test(tc, test_event_record);
	tcase_add_test(tc, test_token_claims);
	tcase_add_test(tc, test_split_list);
	tcase_add_test(tc, test_backoff);
	tcase_add_test(tc, test_close_action);
	tcase_add_test(tc, test_dedupe);
	tcase_add_test(tc, test_messages);
	tcase_add_test(tc, test_server_msg);
	tcase_add_test(tc, test_json_compact);
	tcase_add_test(tc, test_ws_url);
	tcase_add_test(tc, test_ws_response);
	tcase_add_test(tc, test_ws_response_bounded);
	tcase_add_test(tc, test_ws_client_reader);
	tcase_add_test(tc, test_resume);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(orchctl_suite());
}
