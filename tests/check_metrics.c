/*
 * check_metrics: the /metrics and /stats renderers, from hand-made
 * snapshots, and the label tables of shm.h.
 *
 * The Prometheus output is checked with a small validator of the text
 * format 0.0.4: every sample line belongs to a family announced by # HELP
 * and # TYPE before it, names and labels are well formed, values parse,
 * histogram buckets are cumulative with le ascending to +Inf and equal to
 * _count.
 */
#include "config.h"

#include <check.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "orchd/json.h"
#include "orchd/metrics.h"
#include "orchd/shm.h"

#define MAXFAM 256

struct fam {
	char name[128];
	char type[16];
	int help, typed;
};

struct pstate {
	struct fam fams[MAXFAM];
	int nfams;
	int samples;
};

static struct fam *
fam_find(struct pstate *p, const char *name)
{
	for (int i = 0; i < p->nfams; i++)
		if (strcmp(p->fams[i].name, name) == 0)
			return &p->fams[i];
	return NULL;
}

static int
valid_name(const char *s, size_t n)
{
	if (n == 0 ||
	    !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' ||
		      s[i] == ':'))
			return 0;
	return 1;
}

/* The family a sample named `name` belongs to (histogram suffixes). */
static struct fam *
sample_family(struct pstate *p, const char *name)
{
	static const char *const sfx[] = {"_bucket", "_sum", "_count"};
	struct fam *f = fam_find(p, name);
	char base[128];

	if (f != NULL && strcmp(f->type, "histogram") != 0)
		return f;
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(name), k = strlen(sfx[i]);

		if (n > k && strcmp(name + n - k, sfx[i]) == 0) {
			snprintf(base, sizeof(base), "%.*s", (int)(n - k),
				 name);
			f = fam_find(p, base);
			if (f != NULL && strcmp(f->type, "histogram") == 0)
				return f;
		}
	}
	return NULL;
}

/* Validate the exposition; fails the test at the first bad line. */
static void
validate(const char *text, size_t len, struct pstate *p)
{
	const char *line = text, *end = text + len;

	memset(p, 0, sizeof(*p));
	ck_assert_msg(len > 0 && text[len - 1] == '\n',
		      "the output must end with a newline");
	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		char buf[1024], name[128], *s, *v, *endp;
		size_t n;

		ck_assert_ptr_nonnull(nl);
		n = (size_t)(nl - line);
		ck_assert_msg(n > 0 && n < sizeof(buf), "empty or long line");
		memcpy(buf, line, n);
		buf[n] = '\0';
		line = nl + 1;
		if (strncmp(buf, "# HELP ", 7) == 0) {
			s = buf + 7;
			n = strcspn(s, " ");
			ck_assert_msg(valid_name(s, n), "bad name: %s", buf);
			snprintf(name, sizeof(name), "%.*s", (int)n, s);
			ck_assert_msg(fam_find(p, name) == NULL,
				      "family announced twice: %s", name);
			ck_assert_int_lt(p->nfams, MAXFAM);
			snprintf(p->fams[p->nfams].name, sizeof(name), "%s",
				 name);
			p->fams[p->nfams++].help = 1;
			ck_assert_msg(s[n] == ' ' && s[n + 1] != '\0',
				      "HELP without text: %s", buf);
			continue;
		}
		if (strncmp(buf, "# TYPE ", 7) == 0) {
			struct fam *f;

			s = buf + 7;
			n = strcspn(s, " ");
			snprintf(name, sizeof(name), "%.*s", (int)n, s);
			f = fam_find(p, name);
			ck_assert_msg(f != NULL && !f->typed,
				      "TYPE without HELP or twice: %s", buf);
			ck_assert_msg(strcmp(s + n, " counter") == 0 ||
					  strcmp(s + n, " gauge") == 0 ||
					  strcmp(s + n, " histogram") == 0,
				      "bad type: %s", buf);
			snprintf(f->type, sizeof(f->type), "%s", s + n + 1);
			f->typed = 1;
			continue;
		}
		ck_assert_msg(buf[0] != '#', "stray comment: %s", buf);
		/* name{label="value",...} value */
		n = strcspn(buf, "{ ");
		ck_assert_msg(valid_name(buf, n), "bad sample name: %s", buf);
		snprintf(name, sizeof(name), "%.*s", (int)n, buf);
		{
			struct fam *f = sample_family(p, name);

			ck_assert_msg(f != NULL && f->help && f->typed,
				      "sample of no announced family: %s", buf);
			if (strcmp(f->type, "counter") == 0)
				ck_assert_msg(
				    strlen(name) > 6 &&
					strcmp(name + strlen(name) - 6,
					       "_total") == 0,
				    "counter not named _total: %s", name);
		}
		s = buf + n;
		if (*s == '{') {
			s++;
			while (*s != '}') {
				size_t k = strcspn(s, "=");

				ck_assert_msg(valid_name(s, k),
					      "bad label name: %s", buf);
				s += k;
				ck_assert_msg(s[0] == '=' && s[1] == '"',
					      "bad label: %s", buf);
				s += 2;
				while (*s != '"' && *s != '\0')
					s += *s == '\\' ? 2 : 1;
				ck_assert_msg(*s == '"', "open label: %s", buf);
				s++;
				if (*s == ',')
					s++;
				else
					ck_assert_msg(*s == '}',
						      "bad labels: %s", buf);
			}
			s++;
		}
		ck_assert_msg(*s == ' ', "no value: %s", buf);
		v = s + 1;
		strtod(v, &endp);
		ck_assert_msg(endp != v && *endp == '\0', "bad value: %s", buf);
		p->samples++;
	}
}

/* The value of the sample line that starts with `key ` (exact), or -1. */
static double
sample(const char *text, const char *key)
{
	size_t k = strlen(key);
	const char *s = text;

	while ((s = strstr(s, key)) != NULL) {
		if ((s == text || s[-1] == '\n') && s[k] == ' ')
			return strtod(s + k + 1, NULL);
		s += k;
	}
	return -1;
}

/* Histogram check for one worker of family name. */
static void
check_hist(const char *text, const char *name, unsigned worker,
	   uint64_t want_count)
{
	char key[256];
	double prev = 0, prev_le = -1, v;

	for (int b = 0; b < SHM_NBUCKETS; b++) {
		if (b < SHM_NBUCKETS - 1) {
			double le = (double)shm_bucket_us[b] / 1e6;

			ck_assert(le > prev_le);
			prev_le = le;
			snprintf(key, sizeof(key),
				 "%s_bucket{worker=\"%u\",le=\"%g\"}", name,
				 worker, le);
		} else {
			snprintf(key, sizeof(key),
				 "%s_bucket{worker=\"%u\",le=\"+Inf\"}", name,
				 worker);
		}
		v = sample(text, key);
		ck_assert_msg(v >= 0, "missing %s", key);
		ck_assert_msg(v >= prev, "not cumulative at %s", key);
		prev = v;
	}
	snprintf(key, sizeof(key), "%s_count{worker=\"%u\"}", name, worker);
	ck_assert_double_eq(sample(text, key), prev);
	ck_assert_double_eq(prev, (double)want_count);
}

static void
fill(struct metrics_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->version = "9.8.7";
	s->time_ms = 1700000000123ULL;
	s->started_ms = 1700000000000ULL;
	s->supervisor_pid = 100;
	s->supervisor_rss_bytes = 4096;
	s->max_connections = 1000;
	s->nworkers = 2;
	for (unsigned i = 0; i < 2; i++) {
		struct metrics_worker *w = &s->workers[i];

		w->slot = (int)i;
		w->pid = 200 + (int)i;
		w->generation = 3;
		w->started_ms = 1700000000500ULL;
		w->rss_bytes = 8192;
		w->open = 5 + i;
		w->authenticated = 2 + i;
		w->accepted = 10;
		w->closed = 5 - i;
		w->conn_state[6] = 3; /* ws_open */
		w->close_codes[shm_close_index(4006)] = 3 + i;
		w->auth_results[0] = 2;
		w->auth_results[shm_auth_index("TOKEN_EXPIRED")] = 1;
		w->msg_in[shm_msg_in_index("ack")] = 4;
		w->msg_out[shm_msg_out_index("event", 5)] = 7;
		w->messages_in = 4;
		w->messages_out = 7;
		w->events_delivered = 7;
		w->send_queue_bytes = 123;
		/* 0.1 ms, 3 ms, 3 ms, 20 s (past every bound) */
		w->delivery_latency.bucket[0] = 1;
		w->delivery_latency.bucket[4] = 2;
		w->delivery_latency.bucket[SHM_NBUCKETS - 1] = 1;
		w->delivery_latency.sum_us = 100 + 6000 + 20000000;
		w->db_latency.bucket[2] = 5;
		w->db_latency.sum_us = 4000;
	}
	s->relay.pid = 300;
	s->relay.subscribed = 1;
	s->relay.received = 11;
	s->relay.routed = 9;
	s->relay.queued = 4;
	s->authenticated = 5;
	s->orchestrators = 2;
	s->organizations = 1;
	s->norchs = 2;
	snprintf(s->orchs[0].id, sizeof(s->orchs[0].id), "vp-\"1\"");
	snprintf(s->orchs[0].organization, sizeof(s->orchs[0].organization),
		 "org-1");
	s->orchs[0].connections = 3;
	snprintf(s->orchs[1].id, sizeof(s->orchs[1].id), "vp-2");
	s->orchs[1].connections = 2;
}

START_TEST(test_prometheus_valid)
{
	static struct metrics_snapshot s;
	static char buf[METRICS_MAX_OUTPUT];
	static struct pstate p;
	size_t len = 0;

	fill(&s);
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, sizeof(buf), &len),
			 0);
	ck_assert_uint_gt(len, 0);
	buf[len] = '\0';
	validate(buf, len, &p);
	ck_assert_int_gt(p.samples, 100);
	ck_assert_double_eq(sample(buf, "orchd_build_info{version=\"9.8.7\"}"),
			    1);
	ck_assert_double_eq(
	    sample(buf, "orchd_ws_close_total{worker=\"1\",code=\"4006\"}"), 4);
	ck_assert_double_eq(sample(buf, "orchd_auth_results_total{worker=\"0\","
					"code=\"TOKEN_EXPIRED\"}"),
			    1);
	ck_assert_double_eq(sample(buf, "orchd_messages_out_total{worker=\"0\","
					"type=\"event\"}"),
			    7);
	ck_assert_double_eq(sample(buf, "orchd_connections_state{worker=\"0\","
					"state=\"ws_open\"}"),
			    3);
	ck_assert_double_eq(sample(buf, "orchd_connections_open{worker=\"1\"}"),
			    6);
	ck_assert_double_eq(sample(buf, "orchd_relay_redis_up"), 1);
	ck_assert_double_eq(
	    sample(buf, "orchd_process_resident_memory_bytes{process="
			"\"worker\",worker=\"1\"}"),
	    8192);
	check_hist(buf, "orchd_event_delivery_latency_seconds", 0, 4);
	check_hist(buf, "orchd_event_delivery_latency_seconds", 1, 4);
	check_hist(buf, "orchd_db_lookup_latency_seconds", 1, 5);
	ck_assert_double_eq_tol(
	    sample(buf, "orchd_event_delivery_latency_seconds_sum{worker="
			"\"0\"}"),
	    20.0061, 1e-9);
	/* Without a database, no database gauge. */
	ck_assert_ptr_null(strstr(buf, "orchd_database_ready"));
}
END_TEST

START_TEST(test_prometheus_bounded)
{
	static struct metrics_snapshot s;
	static char buf[METRICS_MAX_OUTPUT];
	size_t len = 0, full;

	fill(&s);
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, sizeof(buf), &len),
			 0);
	full = len;
	/* One byte short (vsnprintf needs room for its NUL) fails. */
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, full, &len), -1);
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, 10, &len), -1);
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, 0, &len), -1);
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, full + 1, &len), 0);
	ck_assert_uint_eq(len, full);
}
END_TEST

/* Every worker slot, every family: well under the documented cap. */
START_TEST(test_prometheus_max_workers)
{
	static struct metrics_snapshot s;
	static char buf[METRICS_MAX_OUTPUT];
	static struct pstate p;
	size_t len = 0;

	fill(&s);
	s.nworkers = CONFIG_MAX_WORKERS;
	for (unsigned i = 0; i < CONFIG_MAX_WORKERS; i++) {
		s.workers[i] = s.workers[0];
		s.workers[i].accepted = UINT64_MAX; /* the widest numbers */
	}
	s.db_enabled = 1;
	s.db_ready = 1;
	ck_assert_int_eq(metrics_render_prometheus(&s, buf, sizeof(buf), &len),
			 0);
	ck_assert_uint_lt(len, 512 * 1024); /* as documented */
	validate(buf, len, &p);
	ck_assert_double_eq(sample(buf, "orchd_database_ready"), 1);
}
END_TEST

static uint64_t
juint(const struct json_doc *d, int obj, const char *key)
{
	uint64_t v = 0;
	int t = json_obj_get(d, obj, key);

	ck_assert_msg(t >= 0, "missing %s", key);
	ck_assert_int_eq(json_get_uint64(d, t, &v), 0);
	return v;
}

START_TEST(test_json)
{
	static struct metrics_snapshot s;
	static char buf[METRICS_MAX_OUTPUT];
	struct json_limits lim = {.max_tokens = 100000,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	size_t len = 0;
	int root, t, w, o;
	char str[64];
	bool b;

	fill(&s);
	ck_assert_int_eq(metrics_render_json(&s, buf, sizeof(buf), &len), 0);
	ck_assert_int_eq(json_parse(&d, buf, len, &lim), 0);
	root = json_root(&d);
	t = json_obj_get(&d, root, "version");
	ck_assert_int_eq(json_get_string(&d, t, str, sizeof(str), NULL), 0);
	ck_assert_str_eq(str, "9.8.7");
	ck_assert_uint_eq(juint(&d, root, "time_ms"), 1700000000123ULL);
	ck_assert_uint_eq(juint(&d, root, "started_ms"), 1700000000000ULL);
	t = json_obj_get(&d, root, "connections");
	ck_assert_uint_eq(juint(&d, t, "open"), 11);
	ck_assert_uint_eq(juint(&d, t, "authenticated"), 5);
	ck_assert_uint_eq(juint(&d, t, "orchestrators"), 2);
	ck_assert_uint_eq(juint(&d, t, "organizations"), 1);
	ck_assert_uint_eq(juint(&d, t, "max"), 1000);
	ck_assert_uint_eq(juint(&d, t, "accepted"), 20);
	ck_assert_uint_eq(juint(&d, t, "closed"), 9);
	w = json_obj_get(&d, root, "workers");
	ck_assert_int_eq(json_array_len(&d, w), 2);
	t = json_array_get(&d, w, 1);
	{
		static const char *const keys[] = {"slot",
						   "pid",
						   "generation",
						   "started_ms",
						   "open",
						   "authenticated",
						   "accepted",
						   "closed",
						   "messages_in",
						   "messages_out",
						   "events_delivered",
						   "send_queue_bytes",
						   "slow_consumers",
						   "auth_successes",
						   "auth_failures",
						   "rss_bytes"};

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			(void)juint(&d, t, keys[i]);
	}
	ck_assert_uint_eq(juint(&d, t, "slot"), 1);
	ck_assert_uint_eq(juint(&d, t, "pid"), 201);
	ck_assert_uint_eq(juint(&d, t, "open"), 6);
	ck_assert_uint_eq(juint(&d, t, "authenticated"), 3);
	t = json_obj_get(&d, root, "relay");
	ck_assert(json_str_eq(&d, json_obj_get(&d, t, "redis"), "up"));
	ck_assert_uint_eq(juint(&d, t, "pid"), 300);
	{
		static const char *const keys[] = {
		    "received",         "routed",   "queued",     "evicted",
		    "dropped",          "unrouted", "reconnects", "backlog",
		    "pipe_queue_bytes", "rss_bytes"};

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			(void)juint(&d, t, keys[i]);
	}
	t = json_obj_get(&d, root, "events");
	ck_assert_uint_eq(juint(&d, t, "received"), 11);
	ck_assert_uint_eq(juint(&d, t, "routed"), 9);
	ck_assert_uint_eq(juint(&d, t, "delivered"), 14);
	ck_assert_uint_eq(juint(&d, t, "queued"), 4);
	(void)juint(&d, t, "evicted");
	(void)juint(&d, t, "acked");
	(void)juint(&d, t, "dropped");
	t = json_obj_get(&d, root, "database");
	ck_assert_int_eq(json_get_bool(&d, json_obj_get(&d, t, "enabled"), &b),
			 0);
	ck_assert(!b);
	ck_assert_int_eq(json_get_bool(&d, json_obj_get(&d, t, "ready"), &b),
			 0);
	ck_assert(!b);
	o = json_obj_get(&d, root, "orchestrators");
	ck_assert_int_eq(json_array_len(&d, o), 2);
	t = json_array_get(&d, o, 0);
	ck_assert(json_str_eq(&d, json_obj_get(&d, t, "id"), "vp-\"1\""));
	ck_assert(
	    json_str_eq(&d, json_obj_get(&d, t, "organization"), "org-1"));
	ck_assert_uint_eq(juint(&d, t, "connections"), 3);
	ck_assert_int_eq(
	    json_get_bool(&d, json_obj_get(&d, root, "orchestrators_truncated"),
			  &b),
	    0);
	ck_assert(!b);
	json_doc_free(&d);
	/* Too small a buffer fails. */
	ck_assert_int_eq(metrics_render_json(&s, buf, 100, &len), -1);
}
END_TEST

START_TEST(test_json_many_orchestrators)
{
	static struct metrics_snapshot s;
	static char buf[METRICS_MAX_OUTPUT];
	struct json_limits lim = {.max_tokens = 100000,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	size_t len = 0;
	bool b;

	fill(&s);
	s.norchs = METRICS_MAX_ORCHS;
	s.orchs_truncated = 1;
	for (unsigned i = 0; i < METRICS_MAX_ORCHS; i++) {
		memset(s.orchs[i].id, 'x', REGISTRY_ID_MAX - 1);
		s.orchs[i].id[REGISTRY_ID_MAX - 1] = '\0';
		s.orchs[i].connections = 1000 - i;
	}
	ck_assert_int_eq(metrics_render_json(&s, buf, sizeof(buf), &len), 0);
	ck_assert_int_eq(json_parse(&d, buf, len, &lim), 0);
	ck_assert_int_eq(json_array_len(&d, json_obj_get(&d, json_root(&d),
							 "orchestrators")),
			 METRICS_MAX_ORCHS);
	ck_assert_int_eq(json_get_bool(&d,
				       json_obj_get(&d, json_root(&d),
						    "orchestrators_truncated"),
				       &b),
			 0);
	ck_assert(b);
	json_doc_free(&d);
}
END_TEST

START_TEST(test_labels)
{
	ck_assert_str_eq(shm_close_name(shm_close_index(1000)), "1000");
	ck_assert_str_eq(shm_close_name(shm_close_index(4007)), "4007");
	ck_assert_str_eq(shm_close_name(shm_close_index(0)), "1005");
	ck_assert_str_eq(shm_close_name(shm_close_index(3999)), "other");
	ck_assert_str_eq(shm_auth_name(shm_auth_index(NULL)), "success");
	ck_assert_str_eq(shm_auth_name(shm_auth_index("UNAVAILABLE")),
			 "UNAVAILABLE");
	ck_assert_str_eq(shm_auth_name(shm_auth_index("NOPE")), "other");
	ck_assert_str_eq(shm_msg_in_name(shm_msg_in_index("heartbeat")),
			 "heartbeat");
	ck_assert_str_eq(shm_msg_in_name(shm_msg_in_index("bogus")), "other");
	ck_assert_str_eq(shm_msg_out_name(shm_msg_out_index("error", 5)),
			 "error");
	ck_assert_str_eq(shm_msg_out_name(shm_msg_out_index("errorx", 5)),
			 "error");
	ck_assert_str_eq(shm_msg_out_name(shm_msg_out_index("err", 3)),
			 "other");
}
END_TEST

START_TEST(test_hist_observe)
{
	static struct shm_hist h;

	memset(&h, 0, sizeof(h));
	shm_hist_observe(&h, 0, 1);   /* le 0.25 ms */
	shm_hist_observe(&h, 250, 1); /* le 0.25 ms: bounds are inclusive */
	shm_hist_observe(&h, 251, 2); /* le 0.5 ms */
	shm_hist_observe(&h, 2500000, 1);
	shm_hist_observe(&h, 2500001, 1); /* +Inf */
	shm_hist_observe(&h, 7, 0);       /* nothing */
	ck_assert_uint_eq(atomic_load(&h.bucket[0]), 2);
	ck_assert_uint_eq(atomic_load(&h.bucket[1]), 2);
	ck_assert_uint_eq(atomic_load(&h.bucket[SHM_NBUCKETS - 2]), 1);
	ck_assert_uint_eq(atomic_load(&h.bucket[SHM_NBUCKETS - 1]), 1);
	ck_assert_uint_eq(atomic_load(&h.sum_us),
			  250 + 502 + 2500000 + 2500001);
}
END_TEST

START_TEST(test_rss)
{
	ck_assert_uint_gt(metrics_rss_bytes((int)getpid()), 0);
	ck_assert_uint_eq(metrics_rss_bytes(0), 0);
	ck_assert_uint_eq(metrics_rss_bytes(-1), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_prometheus_valid);
	tcase_add_test(tc, test_prometheus_bounded);
	tcase_add_test(tc, test_prometheus_max_workers);
	tcase_add_test(tc, test_json);
	tcase_add_test(tc, test_json_many_orchestrators);
	tcase_add_test(tc, test_labels);
	tcase_add_test(tc, test_hist_observe);
	tcase_add_test(tc, test_rss);
	suite_add_tcase(s, tc);
	return check_run(s);
}
