/*
 * ctl_render: admin socket replies as tables for people.  Pure code: the
 * caller gives the reply text and a FILE to print to.  Every field is read
 * defensively (a missing or mistyped field prints "-"), so a server that
 * answers a subset of the /stats document still gets a table.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "orchd/json.h"

void
ctl_fmt_duration(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60,
			 s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
			 s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
			 s % 86400 / 3600);
}

static int
parse_reply(struct json_doc *d, const char *buf, size_t len)
{
	struct json_limits lim = {.max_size = CTL_ADMIN_REPLY_MAX,
				  .max_tokens = 4u * 1024 * 1024,
				  .flags = JSON_REQUIRE_OBJECT};

	return json_parse(d, buf, len, &lim) == 0 ? 0 : -1;
}

/* A number or string field as text; "-" when absent or of another type. */
static const char *
field(const struct json_doc *d, int obj, const char *key, char *buf, size_t len)
{
	int t = json_obj_get(d, obj, key);
	uint64_t u;
	int64_t i;
	double f;
	bool b;

	switch (json_type(d, t)) {
	case JSON_NUMBER:
		if (json_get_uint64(d, t, &u) == 0)
			snprintf(buf, len, "%" PRIu64, u);
		else if (json_get_int64(d, t, &i) == 0)
			snprintf(buf, len, "%" PRId64, i);
		else if (json_get_double(d, t, &f) == 0)
			snprintf(buf, len, "%g", f);
		else
			snprintf(buf, len, "-");
		break;
	case JSON_STRING:
		if (json_get_string(d, t, buf, len, NULL) != 0 ||
		    buf[0] == '\0')
			snprintf(buf, len, "-");
		/* One line per row: no control characters from the server. */
		for (char *p = buf; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		break;
	case JSON_BOOL:
		json_get_bool(d, t, &b);
		snprintf(buf, len, "%s", b ? "yes" : "no");
		break;
	default:
		snprintf(buf, len, "-");
		break;
	}
	return buf;
}

static int
get_u64(const struct json_doc *d, int obj, const char *key, uint64_t *out)
{
	return json_get_uint64(d, json_obj_get(d, obj, key), out);
}

/* An age "now - field" as a duration, "-" when the field is missing. */
static const char *
age(const struct json_doc *d, int obj, const char *key, uint64_t now_ms,
    char *buf, size_t len)
{
	uint64_t t;

	if (get_u64(d, obj, key, &t) != 0 || t == 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	ctl_fmt_duration(now_ms > t ? now_ms - t : 0, buf, len);
	return buf;
}

int
ctl_render_status(const char *buf, size_t len, FILE *out)
{
	struct json_doc d;
	char a[64], b[64], c[64], e[64], f[64], g[64], h[64], k[64], m[64];
	int st, sec, ws;
	uint64_t now = 0, started = 0;

	if (parse_reply(&d, buf, len) != 0)
		return -1;
	st = json_obj_get(&d, 0, "stats");
	if (json_type(&d, st) != JSON_OBJECT) {
		json_doc_free(&d);
		return -1;
	}
	get_u64(&d, st, "time_ms", &now);
	fprintf(out, "orchd %s", field(&d, st, "version", a, sizeof(a)));
	if (get_u64(&d, st, "started_ms", &started) == 0 && now >= started &&
	    started > 0) {
		ctl_fmt_duration(now - started, a, sizeof(a));
		fprintf(out, ", up %s", a);
	}
	fputc('\n', out);

	sec = json_obj_get(&d, st, "connections");
	fprintf(out,
		"connections  open %s  authenticated %s  orchestrators %s  "
		"organizations %s  max %s  accepted %s  closed %s\n",
		field(&d, sec, "open", a, sizeof(a)),
		field(&d, sec, "authenticated", b, sizeof(b)),
		field(&d, sec, "orchestrators", c, sizeof(c)),
		field(&d, sec, "organizations", e, sizeof(e)),
		field(&d, sec, "max", f, sizeof(f)),
		field(&d, sec, "accepted", g, sizeof(g)),
		field(&d, sec, "closed", h, sizeof(h)));
	sec = json_obj_get(&d, st, "relay");
	fprintf(out,
		"relay        pid %s  redis %s  received %s  routed %s  "
		"queued %s  dropped %s  backlog %s  reconnects %s\n",
		field(&d, sec, "pid", a, sizeof(a)),
		field(&d, sec, "redis", b, sizeof(b)),
		field(&d, sec, "received", c, sizeof(c)),
		field(&d, sec, "routed", e, sizeof(e)),
		field(&d, sec, "queued", f, sizeof(f)),
		field(&d, sec, "dropped", g, sizeof(g)),
		field(&d, sec, "backlog", h, sizeof(h)),
		field(&d, sec, "reconnects", k, sizeof(k)));
	sec = json_obj_get(&d, st, "events");
	if (sec >= 0)
		fprintf(out,
			"events       received %s  routed %s  delivered %s  "
			"queued %s  acked %s  dropped %s\n",
			field(&d, sec, "received", a, sizeof(a)),
			field(&d, sec, "routed", b, sizeof(b)),
			field(&d, sec, "delivered", c, sizeof(c)),
			field(&d, sec, "queued", e, sizeof(e)),
			field(&d, sec, "acked", f, sizeof(f)),
			field(&d, sec, "dropped", g, sizeof(g)));
	sec = json_obj_get(&d, st, "database");
	fprintf(out,
		"database     enabled %s  ready %s  lookups %s  errors %s\n",
		field(&d, sec, "enabled", a, sizeof(a)),
		field(&d, sec, "ready", b, sizeof(b)),
		field(&d, sec, "lookups", c, sizeof(c)),
		field(&d, sec, "errors", e, sizeof(e)));

	ws = json_obj_get(&d, st, "workers");
	fprintf(out, "%-5s %-8s %-4s %-8s %7s %7s %10s %10s %8s\n", "SLOT",
		"PID", "GEN", "UP", "OPEN", "AUTH", "MSGS_IN", "MSGS_OUT",
		"RSS_MB");
	for (int w = json_first(&d, ws); w >= 0; w = json_next(&d, w)) {
		uint64_t rss, wst;

		if (get_u64(&d, w, "started_ms", &wst) == 0 && now >= wst &&
		    wst > 0)
			ctl_fmt_duration(now - wst, e, sizeof(e));
		else
			snprintf(e, sizeof(e), "-");
		if (get_u64(&d, w, "rss_bytes", &rss) == 0)
			snprintf(k, sizeof(k), "%.1f",
				 (double)rss / (1024.0 * 1024.0));
		else
			snprintf(k, sizeof(k), "-");
		fprintf(out, "%-5s %-8s %-4s %-8s %7s %7s %10s %10s %8s\n",
			field(&d, w, "slot", a, sizeof(a)),
			field(&d, w, "pid", b, sizeof(b)),
			field(&d, w, "generation", c, sizeof(c)), e,
			field(&d, w, "open", f, sizeof(f)),
			field(&d, w, "authenticated", g, sizeof(g)),
			field(&d, w, "messages_in", h, sizeof(h)),
			field(&d, w, "messages_out", m, sizeof(m)), k);
	}
	json_doc_free(&d);
	return 0;
}

int
ctl_render_connections(const char *buf, size_t len, uint64_t now_ms, FILE *out)
{
	struct json_doc d;
	char id[64], wk[32], orch[64], dmn[64], org[64], state[16], ag[32],
	    seen[32];
	int list, n = 0;
	bool trunc = false;

	if (parse_reply(&d, buf, len) != 0)
		return -1;
	list = json_obj_get(&d, 0, "connections");
	if (json_type(&d, list) != JSON_ARRAY) {
		json_doc_free(&d);
		return -1;
	}
	fprintf(out, "%-20s %-6s %-20s %-20s %-16s %-8s %-8s %s\n", "ID",
		"WORKER", "ORCHESTRATOR", "DAEMON", "ORGANIZATION", "STATE",
		"AGE", "LAST_SEEN");
	for (int c = json_first(&d, list); c >= 0; c = json_next(&d, c)) {
		fprintf(out, "%-20s %-6s %-20s %-20s %-16s %-8s %-8s %s\n",
			field(&d, c, "id", id, sizeof(id)),
			field(&d, c, "worker", wk, sizeof(wk)),
			field(&d, c, "orchestrator", orch, sizeof(orch)),
			field(&d, c, "daemon", dmn, sizeof(dmn)),
			field(&d, c, "organization", org, sizeof(org)),
			field(&d, c, "state", state, sizeof(state)),
			age(&d, c, "connected_ms", now_ms, ag, sizeof(ag)),
			age(&d, c, "last_seen_ms", now_ms, seen, sizeof(seen)));
		n++;
	}
	json_get_bool(&d, json_obj_get(&d, 0, "truncated"), &trunc);
	fprintf(out, "%d shown, %s in all%s\n", n,
		field(&d, 0, "total", id, sizeof(id)),
		trunc ? " (truncated: raise -n)" : "");
	json_doc_free(&d);
	return 0;
}
