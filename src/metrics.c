/*
 * metrics: a snapshot of the shared counters, and its two renderings.
 *
 * Reading is lock-free: every counter is an atomic read once; gauges that
 * two processes share during a reload are sums of signed shares (shm.h) and
 * are clamped at 0 here, since a snapshot taken between one process's
 * add and the other's sub can see a transient negative.
 */
#include "config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchd/conn.h"
#include "orchd/json.h"
#include "orchd/log.h"
#include "orchd/metrics.h"
#include "orchd/util.h"

#define LOAD(x) ((uint64_t)atomic_load_explicit(&(x), memory_order_relaxed))

static uint64_t
gauge(const atomic_int_fast64_t *g)
{
	int_fast64_t v = atomic_load_explicit(g, memory_order_relaxed);

	return v > 0 ? (uint64_t)v : 0;
}

uint64_t
metrics_rss_bytes(int pid)
{
	char path[64], buf[128];
	unsigned long long size, resident;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* "size resident shared text lib data dt", in pages. */
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return 0;
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void
hist_copy(struct metrics_hist *out, const struct shm_hist *h)
{
	for (int i = 0; i < SHM_NBUCKETS; i++)
		out->bucket[i] = LOAD(h->bucket[i]);
	out->sum_us = LOAD(h->sum_us);
}

static void
worker_copy(struct metrics_worker *m, const struct shm_worker *w)
{
	m->pid = atomic_load(&w->pid);
	m->generation = atomic_load(&w->generation);
	m->started_ms = LOAD(w->started_ms);
	m->open = LOAD(w->active);
	for (int i = 0; i < SHM_NCONN_STATES; i++)
		m->conn_state[i] = gauge(&w->conn_state[i]);
	m->draining = gauge(&w->draining);
	m->send_queue_bytes = gauge(&w->send_queue_bytes);
	m->accepted = LOAD(w->accepted);
	m->closed = LOAD(w->closed);
	m->requests = LOAD(w->requests);
	m->accept_paused = LOAD(w->accept_paused);
	m->restarts = LOAD(w->restarts);
	m->addr_limited = LOAD(w->addr_limited);
	m->full_refused = LOAD(w->full_refused);
	m->ws_upgrades = LOAD(w->ws_upgrades);
	m->ws_messages_in = LOAD(w->ws_messages_in);
	m->ws_protocol_errors = LOAD(w->ws_protocol_errors);
	m->ws_deflates = LOAD(w->ws_deflates);
	m->slow_consumers = LOAD(w->slow_consumers);
	m->auth_successes = LOAD(w->auth_successes);
	m->auth_failures = LOAD(w->auth_failures);
	m->auth_timeouts = LOAD(w->auth_timeouts);
	m->auth_refreshes = LOAD(w->auth_refreshes);
	m->heartbeats = LOAD(w->heartbeats);
	m->rate_limited = LOAD(w->rate_limited);
	m->api_auth_limited = LOAD(w->api_auth_limited);
	m->api_auth_busy = LOAD(w->api_auth_busy);
	m->messages_in = m->messages_out = 0;
	for (int i = 0; i < SHM_NCLOSE; i++)
		m->close_codes[i] = LOAD(w->close_codes[i]);
	for (int i = 0; i < SHM_NAUTH; i++)
		m->auth_results[i] = LOAD(w->auth_results[i]);
	for (int i = 0; i < SHM_NMSG_IN; i++)
		m->messages_in += m->msg_in[i] = LOAD(w->msg_in[i]);
	for (int i = 0; i < SHM_NMSG_OUT; i++)
		m->messages_out += m->msg_out[i] = LOAD(w->msg_out[i]);
	m->events_received = LOAD(w->events_received);
	m->events_delivered = LOAD(w->events_delivered);
	m->events_replayed = LOAD(w->events_replayed);
	m->events_acked = LOAD(w->events_acked);
	hist_copy(&m->delivery_latency, &w->delivery_latency);
	m->db_lookups = LOAD(w->db_lookups);
	m->db_errors = LOAD(w->db_errors);
	hist_copy(&m->db_latency, &w->db_latency);
}

static void
relay_copy(struct metrics_relay *m, const struct shm_relay *r)
{
	m->pid = atomic_load(&r->pid);
	m->subscribed = atomic_load(&r->subscribed) != 0;
	m->started_ms = LOAD(r->started_ms);
	m->restarts = LOAD(r->restarts);
	m->received = LOAD(r->received);
	m->invalid = LOAD(r->invalid);
	m->routed = LOAD(r->routed);
	m->frames = LOAD(r->frames);
	m->queued = LOAD(r->queued);
	m->evicted = LOAD(r->evicted);
	m->unqueued = LOAD(r->unqueued);
	m->unrouted = LOAD(r->unrouted);
	m->dropped = LOAD(r->dropped);
	m->overflow = LOAD(r->overflow);
	m->reconnects = LOAD(r->reconnects);
	m->canary_failures = LOAD(r->canary_failures);
	m->pipe_resets = LOAD(r->pipe_resets);
	m->backlog = LOAD(r->backlog);
	m->rss_bytes = metrics_rss_bytes(m->pid);
}

/* ---- per-orchestrator counts: a temporary open-addressing table -------- */

struct orch_table {
	struct metrics_orch *e;
	size_t cap, n; /* cap: a power of two */
	int full;
};

static uint64_t
hash_id(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int
orch_count_cb(uint32_t slot, const struct registry_entry *e, void *arg)
{
	struct orch_table *t = arg;
	size_t i;

	(void)slot;
	if (e->orchestrator[0] == '\0')
		return 0;
	for (i = hash_id(e->orchestrator) & (t->cap - 1); t->e[i].id[0] != '\0';
	     i = (i + 1) & (t->cap - 1))
		if (strcmp(t->e[i].id, e->orchestrator) == 0) {
			t->e[i].connections++;
			return 0;
		}
	/* Half full at most: slots taken during the walk are not counted. */
	if (t->n + 1 > t->cap / 2) {
		t->full = 1;
		return 1;
	}
	util_strlcpy(t->e[i].id, e->orchestrator, sizeof(t->e[i].id));
	util_strlcpy(t->e[i].organization, e->organization,
		     sizeof(t->e[i].organization));
	t->e[i].connections = 1;
	t->n++;
	return 0;
}

static int
orch_cmp(const void *a, const void *b)
{
	const struct metrics_orch *x = a, *y = b;

	if (x->connections != y->connections)
		return x->connections > y->connections ? -1 : 1;
	return strcmp(x->id, y->id);
}

static void
orchs_collect(struct metrics_snapshot *s, struct registry *registry,
	      unsigned active)
{
	struct orch_table t;
	size_t k = 0;

	memset(&t, 0, sizeof(t));
	for (t.cap = 64; t.cap < 2 * ((size_t)active + 64); t.cap *= 2)
		;
	t.e = util_calloc(t.cap, sizeof(*t.e));
	registry_foreach(registry, orch_count_cb, &t);
	for (size_t i = 0; i < t.cap; i++)
		if (t.e[i].id[0] != '\0')
			t.e[k++] = t.e[i];
	qsort(t.e, k, sizeof(*t.e), orch_cmp);
	s->norchs = k < METRICS_MAX_ORCHS ? (unsigned)k : METRICS_MAX_ORCHS;
	memcpy(s->orchs, t.e, s->norchs * sizeof(*t.e));
	s->orchs_truncated = k > METRICS_MAX_ORCHS || t.full;
	free(t.e);
}

void
metrics_snapshot(struct metrics_snapshot *s, const struct shm_segment *shm,
		 struct registry *registry, const struct config *cfg,
		 int db_enabled, int db_ready)
{
	struct registry_stats rs;

	memset(s, 0, sizeof(*s));
	s->version = PACKAGE_VERSION;
	s->time_ms = util_wall_ms();
	s->started_ms = LOAD(shm->started_ms);
	s->supervisor_pid = atomic_load(&shm->supervisor_pid);
	s->supervisor_rss_bytes = metrics_rss_bytes(s->supervisor_pid);
	s->max_connections = cfg->max_connections;
	s->nworkers = atomic_load(&shm->nworkers);
	if (s->nworkers > CONFIG_MAX_WORKERS)
		s->nworkers = CONFIG_MAX_WORKERS;
	memset(&rs, 0, sizeof(rs));
	if (registry != NULL)
		registry_stats(registry, &rs);
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct metrics_worker *m = &s->workers[i];

		worker_copy(m, &shm->workers[i]);
		m->slot = (int)i;
		m->rss_bytes = metrics_rss_bytes(m->pid);
		m->authenticated =
		    i < REGISTRY_MAX_WORKERS ? rs.per_worker[i] : 0;
		m->pipe_queue_bytes = LOAD(shm->relay.pipe_queue_bytes[i]);
		m->pipe_dropped = LOAD(shm->relay.pipe_dropped[i]);
		s->relay.pipe_queue_bytes += m->pipe_queue_bytes;
	}
	{
		uint64_t pq = s->relay.pipe_queue_bytes;

		relay_copy(&s->relay, &shm->relay);
		s->relay.pipe_queue_bytes = pq;
	}
	s->authenticated = rs.active;
	s->orchestrators = rs.orchestrators;
	s->organizations = rs.organizations;
	s->high_water = rs.high_water;
	s->registry_slots = rs.max_slots;
	s->db_enabled = db_enabled;
	s->db_ready = db_ready;
	if (registry != NULL)
		orchs_collect(s, registry, rs.active);
}

/* ---- bounded output ------------------------------------------------------ */

struct out {
	char *buf;
	size_t cap, len;
	int err;
};

static void outf(struct out *o, const char *fmt, ...) ORCHD_PRINTF(2, 3);

static void
outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->err = 1;
		return;
	}
	o->len += (size_t)n;
}

/* ---- Prometheus text format 0.0.4 --------------------------------------- */

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Simple per-worker families: one sample per worker, label worker="N". */
struct wfam {
	const char *name;
	const char *type;
	const char *help;
	size_t off; /* of a uint64_t in struct metrics_worker */
};

#define WOFF(f) offsetof(struct metrics_worker, f)

static const struct wfam wfams[] = {
    {"orchd_worker_start_time_seconds", "gauge",
     "Start time of the worker process in the slot, seconds since the "
     "epoch.",
     WOFF(started_ms)},
    {"orchd_worker_restarts_total", "counter",
     "Worker processes of the slot respawned after an unplanned exit.",
     WOFF(restarts)},
    {"orchd_connections_open", "gauge", "Client connections open (any state).",
     WOFF(open)},
    {"orchd_connections_authenticated", "gauge",
     "Authenticated daemon connections (registry slots held).",
     WOFF(authenticated)},
    {"orchd_connections_draining", "gauge",
     "Connections of worker processes that are draining (reload, stop).",
     WOFF(draining)},
    {"orchd_connections_accepted_total", "counter", "Connections accepted.",
     WOFF(accepted)},
    {"orchd_connections_closed_total", "counter",
     "Connections closed and freed.", WOFF(closed)},
    {"orchd_connections_refused_rate_total", "counter",
     "Connections refused with 429 by connection_rate_per_address.",
     WOFF(addr_limited)},
    {"orchd_connections_refused_full_total", "counter",
     "Connections refused with 503 at max_connections.", WOFF(full_refused)},
    {"orchd_accept_paused_total", "counter",
     "Times accept was paused for lack of descriptors or memory.",
     WOFF(accept_paused)},
    {"orchd_http_requests_total", "counter",
     "HTTP requests (WebSocket upgrades included).", WOFF(requests)},
    {"orchd_ws_upgrades_total", "counter", "WebSocket upgrades.",
     WOFF(ws_upgrades)},
    {"orchd_ws_messages_in_total", "counter",
     "WebSocket data messages received (every endpoint).",
     WOFF(ws_messages_in)},
    {"orchd_ws_protocol_errors_total", "counter",
     "WebSocket protocol errors by clients.", WOFF(ws_protocol_errors)},
    {"orchd_ws_compressed_total", "counter",
     "Messages sent compressed (permessage-deflate).", WOFF(ws_deflates)},
    {"orchd_slow_consumers_total", "counter",
     "Connections closed (1008) because their send queue was full.",
     WOFF(slow_consumers)},
    {"orchd_send_queue_bytes", "gauge",
     "Output bytes queued on connections, not yet written.",
     WOFF(send_queue_bytes)},
    {"orchd_auth_timeouts_total", "counter",
     "Connections closed (4002) for not authenticating in time.",
     WOFF(auth_timeouts)},
    {"orchd_auth_refreshes_total", "counter",
     "Tokens refreshed in place on an authenticated connection.",
     WOFF(auth_refreshes)},
    {"orchd_heartbeats_total", "counter",
     "Daemon heartbeats (WebSocket and HTTP).", WOFF(heartbeats)},
    {"orchd_client_rate_limited_total", "counter",
     "rate_limit warnings sent to clients over their message rate.",
     WOFF(rate_limited)},
    {"orchd_api_auth_limited_total", "counter",
     "POST /api/daemon/auth and /api/daemon/auth/refresh answered 429 by "
     "auth_failure_limit.",
     WOFF(api_auth_limited)},
    {"orchd_api_auth_busy_total", "counter",
     "POST /api/daemon/auth answered 503 because the key-derivation queue "
     "was full.",
     WOFF(api_auth_busy)},
    {"orchd_events_received_total", "counter",
     "Events the worker read from the relay's pipe.", WOFF(events_received)},
    {"orchd_events_delivered_total", "counter",
     "Live events queued on a daemon's socket (one per connection).",
     WOFF(events_delivered)},
    {"orchd_events_replayed_total", "counter",
     "Events replayed from the durable queue after auth.",
     WOFF(events_replayed)},
    {"orchd_events_acked_total", "counter",
     "Events removed from the durable queue by acknowledgements.",
     WOFF(events_acked)},
    {"orchd_db_lookups_total", "counter",
     "Queries the directory sent to PostgreSQL.", WOFF(db_lookups)},
    {"orchd_db_errors_total", "counter",
     "Directory queries refused, failed or timed out.", WOFF(db_errors)},
    {"orchd_relay_pipe_queue_bytes", "gauge",
     "Bytes the relay has queued for the worker's pipe.",
     WOFF(pipe_queue_bytes)},
    {"orchd_relay_pipe_dropped_total", "counter",
     "Event frames for the worker dropped by the relay (pipe queue full "
     "or pipe gone).",
     WOFF(pipe_dropped)},
};

static uint64_t
wval(const struct metrics_worker *w, const struct wfam *f)
{
	uint64_t v;

	memcpy(&v, (const char *)w + f->off, sizeof(v));
	return v;
}

/* Labelled per-worker counters: an array of n values with names. */
static void
labelled(struct out *o, const struct metrics_snapshot *s, const char *name,
	 const char *type, const char *help, const char *label, size_t off,
	 unsigned n, const char *(*namefn)(unsigned))
{
	family(o, name, type, help);
	for (unsigned i = 0; i < s->nworkers; i++) {
		const uint64_t *v =
		    (const uint64_t *)((const char *)&s->workers[i] + off);

		for (unsigned k = 0; k < n; k++)
			outf(o, "%s{worker=\"%u\",%s=\"%s\"} %llu\n", name, i,
			     label, namefn(k), (unsigned long long)v[k]);
	}
}

static const char *
state_name(unsigned i)
{
	return conn_state_name((enum conn_state)i);
}

static void
histogram(struct out *o, const struct metrics_snapshot *s, const char *name,
	  const char *help, size_t off)
{
	family(o, name, "histogram", help);
	for (unsigned i = 0; i < s->nworkers; i++) {
		const struct metrics_hist *h =
		    (const struct metrics_hist *)((const char *)&s->workers[i] +
						  off);
		uint64_t cum = 0;

		for (int b = 0; b < SHM_NBUCKETS; b++) {
			cum += h->bucket[b];
			if (b < SHM_NBUCKETS - 1)
				outf(
				    o,
				    "%s_bucket{worker=\"%u\",le=\"%g\"} %llu\n",
				    name, i, (double)shm_bucket_us[b] / 1e6,
				    (unsigned long long)cum);
			else
				outf(o,
				     "%s_bucket{worker=\"%u\",le=\"+Inf\"} "
				     "%llu\n",
				     name, i, (unsigned long long)cum);
		}
		outf(o, "%s_sum{worker=\"%u\"} %.6f\n", name, i,
		     (double)h->sum_us / 1e6);
		outf(o, "%s_count{worker=\"%u\"} %llu\n", name, i,
		     (unsigned long long)cum);
	}
}

static void
global(struct out *o, const char *name, const char *type, const char *help,
       unsigned long long v)
{
	family(o, name, type, help);
	outf(o, "%s %llu\n", name, v);
}

int
metrics_render_prometheus(const struct metrics_snapshot *s, char *buf,
			  size_t cap, size_t *len)
{
	struct out o = {buf, cap, 0, 0};
	const struct metrics_relay *r = &s->relay;

	if (cap == 0)
		return -1;
	family(&o, "orchd_build_info", "gauge",
	       "Always 1; the version is in its label.");
	outf(&o, "orchd_build_info{version=\"%s\"} 1\n", s->version);
	family(&o, "orchd_start_time_seconds", "gauge",
	       "Start time of the supervisor, seconds since the epoch.");
	outf(&o, "orchd_start_time_seconds %.3f\n",
	     (double)s->started_ms / 1000.);
	global(&o, "orchd_workers", "gauge", "Worker slots configured.",
	       s->nworkers);
	global(&o, "orchd_connections_max", "gauge",
	       "max_connections: the bound on open connections.",
	       s->max_connections);
	global(&o, "orchd_orchestrators", "gauge",
	       "Orchestrators with at least one authenticated connection.",
	       s->orchestrators);
	global(&o, "orchd_organizations", "gauge",
	       "Organizations with at least one authenticated connection.",
	       s->organizations);
	global(&o, "orchd_registry_high_water", "gauge",
	       "Most registry slots ever in use at once.", s->high_water);

	for (size_t f = 0; f < UTIL_NELEM(wfams); f++) {
		family(&o, wfams[f].name, wfams[f].type, wfams[f].help);
		for (unsigned i = 0; i < s->nworkers; i++) {
			uint64_t v = wval(&s->workers[i], &wfams[f]);

			if (wfams[f].off == WOFF(started_ms))
				outf(&o, "%s{worker=\"%u\"} %.3f\n",
				     wfams[f].name, i, (double)v / 1000.);
			else
				outf(&o, "%s{worker=\"%u\"} %llu\n",
				     wfams[f].name, i, (unsigned long long)v);
		}
	}
	labelled(&o, s, "orchd_connections_state", "gauge",
		 "Connections by state of the connection machine.", "state",
		 WOFF(conn_state), SHM_NCONN_STATES, state_name);
	labelled(&o, s, "orchd_ws_close_total", "counter",
		 "WebSocket close frames sent, by close code (an echoed "
		 "client close included; 1005: empty close).",
		 "code", WOFF(close_codes), SHM_NCLOSE, shm_close_name);
	labelled(&o, s, "orchd_auth_results_total", "counter",
		 "Daemon auth attempts by result: success or the auth_error "
		 "code.",
		 "code", WOFF(auth_results), SHM_NAUTH, shm_auth_name);
	labelled(&o, s, "orchd_messages_in_total", "counter",
		 "Daemon protocol messages received, by type.", "type",
		 WOFF(msg_in), SHM_NMSG_IN, shm_msg_in_name);
	labelled(&o, s, "orchd_messages_out_total", "counter",
		 "Daemon protocol messages sent, by type (event: live and "
		 "replayed).",
		 "type", WOFF(msg_out), SHM_NMSG_OUT, shm_msg_out_name);
	histogram(&o, s, "orchd_event_delivery_latency_seconds",
		  "From the relay's receipt of a live event to its frame "
		  "queued on a daemon's socket.",
		  WOFF(delivery_latency));
	histogram(&o, s, "orchd_db_lookup_latency_seconds",
		  "Directory queries, from sent to answered.",
		  WOFF(db_latency));

	family(&o, "orchd_process_resident_memory_bytes", "gauge",
	       "Resident memory of each process (/proc/PID/statm).");
	outf(&o,
	     "orchd_process_resident_memory_bytes{process=\"supervisor\"} "
	     "%llu\n",
	     (unsigned long long)s->supervisor_rss_bytes);
	outf(&o,
	     "orchd_process_resident_memory_bytes{process=\"relay\"} %llu\n",
	     (unsigned long long)r->rss_bytes);
	for (unsigned i = 0; i < s->nworkers; i++)
		outf(&o,
		     "orchd_process_resident_memory_bytes{process=\"worker\","
		     "worker=\"%u\"} %llu\n",
		     i, (unsigned long long)s->workers[i].rss_bytes);

	global(&o, "orchd_relay_redis_up", "gauge",
	       "1 while the relay's Redis subscription is up.", r->subscribed);
	global(&o, "orchd_relay_redis_reconnects_total", "counter",
	       "Times the relay's Redis subscription came back.",
	       r->reconnects);
	global(&o, "orchd_relay_restarts_total", "counter",
	       "Relay processes respawned.", r->restarts);
	global(&o, "orchd_relay_events_received_total", "counter",
	       "Event records the relay read from Redis.", r->received);
	global(&o, "orchd_relay_events_invalid_total", "counter",
	       "Event records refused as invalid.", r->invalid);
	global(&o, "orchd_relay_events_routed_total", "counter",
	       "Events written to at least one worker's pipe.", r->routed);
	global(&o, "orchd_relay_frames_total", "counter",
	       "Event frames written to pipes (one per worker).", r->frames);
	global(&o, "orchd_relay_events_queued_total", "counter",
	       "Events put in durable queues.", r->queued);
	global(&o, "orchd_relay_events_evicted_total", "counter",
	       "Events evicted from durable queues by queue_max_events.",
	       r->evicted);
	global(&o, "orchd_relay_events_unqueued_total", "counter",
	       "Events meant for a durable queue that Redis failed to take.",
	       r->unqueued);
	global(&o, "orchd_relay_events_unrouted_total", "counter",
	       "Events for which no worker had a connection.", r->unrouted);
	global(&o, "orchd_relay_events_dropped_total", "counter",
	       "Event frames dropped: a worker pipe's queue was full or gone.",
	       r->dropped);
	global(&o, "orchd_relay_events_overflow_total", "counter",
	       "Event records dropped: the relay's backlog was full.",
	       r->overflow);
	global(&o, "orchd_relay_backlog", "gauge",
	       "Event records waiting on Redis replies in the relay.",
	       r->backlog);
	global(&o, "orchd_relay_pipe_resets_total", "counter",
	       "Worker pipes replaced or gone.", r->pipe_resets);
	global(&o, "orchd_relay_canary_failures_total", "counter",
	       "Relay canary events that did not come back in time.",
	       r->canary_failures);
	if (s->db_enabled)
		global(&o, "orchd_database_ready", "gauge",
		       "1 while the answering worker has a database "
		       "connection.",
		       s->db_ready);
	if (o.err)
		return -1;
	*len = o.len;
	return 0;
}

/* ---- /stats JSON -----------------------------------------------------------
 */

static void
kv(struct json_writer *jw, const char *k, uint64_t v)
{
	json_w_key(jw, k);
	json_w_uint(jw, v);
}

int
metrics_render_json(const struct metrics_snapshot *s, char *buf, size_t cap,
		    size_t *len)
{
	struct json_writer jw;
	const struct metrics_relay *r = &s->relay;
	uint64_t open = 0, accepted = 0, closed = 0, delivered = 0, acked = 0;
	uint64_t replayed = 0, lookups = 0, errors = 0;

	for (unsigned i = 0; i < s->nworkers; i++) {
		const struct metrics_worker *w = &s->workers[i];

		open += w->open;
		accepted += w->accepted;
		closed += w->closed;
		delivered += w->events_delivered;
		replayed += w->events_replayed;
		acked += w->events_acked;
		lookups += w->db_lookups;
		errors += w->db_errors;
	}
	json_w_init(&jw, buf, cap);
	json_w_obj_begin(&jw);
	json_w_key(&jw, "version");
	json_w_str(&jw, s->version);
	kv(&jw, "time_ms", s->time_ms);
	kv(&jw, "started_ms", s->started_ms);

	json_w_key(&jw, "connections");
	json_w_obj_begin(&jw);
	kv(&jw, "open", open);
	kv(&jw, "authenticated", s->authenticated);
	kv(&jw, "orchestrators", s->orchestrators);
	kv(&jw, "organizations", s->organizations);
	kv(&jw, "max", s->max_connections);
	kv(&jw, "accepted", accepted);
	kv(&jw, "closed", closed);
	json_w_obj_end(&jw);

	json_w_key(&jw, "workers");
	json_w_arr_begin(&jw);
	for (unsigned i = 0; i < s->nworkers; i++) {
		const struct metrics_worker *w = &s->workers[i];

		json_w_obj_begin(&jw);
		kv(&jw, "slot", (uint64_t)w->slot);
		kv(&jw, "pid", w->pid > 0 ? (uint64_t)w->pid : 0);
		kv(&jw, "generation", w->generation);
		kv(&jw, "started_ms", w->started_ms);
		kv(&jw, "open", w->open);
		kv(&jw, "authenticated", w->authenticated);
		kv(&jw, "draining", w->draining);
		kv(&jw, "accepted", w->accepted);
		kv(&jw, "closed", w->closed);
		kv(&jw, "messages_in", w->messages_in);
		kv(&jw, "messages_out", w->messages_out);
		kv(&jw, "events_received", w->events_received);
		kv(&jw, "events_delivered", w->events_delivered);
		kv(&jw, "events_replayed", w->events_replayed);
		kv(&jw, "events_acked", w->events_acked);
		kv(&jw, "send_queue_bytes", w->send_queue_bytes);
		kv(&jw, "slow_consumers", w->slow_consumers);
		kv(&jw, "auth_successes", w->auth_successes);
		kv(&jw, "auth_failures", w->auth_failures);
		kv(&jw, "rss_bytes", w->rss_bytes);
		kv(&jw, "pipe_queue_bytes", w->pipe_queue_bytes);
		json_w_obj_end(&jw);
	}
	json_w_arr_end(&jw);

	json_w_key(&jw, "relay");
	json_w_obj_begin(&jw);
	kv(&jw, "pid", r->pid > 0 ? (uint64_t)r->pid : 0);
	json_w_key(&jw, "redis");
	json_w_str(&jw, r->subscribed ? "up" : "down");
	kv(&jw, "received", r->received);
	kv(&jw, "invalid", r->invalid);
	kv(&jw, "routed", r->routed);
	kv(&jw, "queued", r->queued);
	kv(&jw, "evicted", r->evicted);
	kv(&jw, "dropped", r->dropped);
	kv(&jw, "overflow", r->overflow);
	kv(&jw, "unrouted", r->unrouted);
	kv(&jw, "reconnects", r->reconnects);
	kv(&jw, "restarts", r->restarts);
	kv(&jw, "backlog", r->backlog);
	kv(&jw, "pipe_queue_bytes", r->pipe_queue_bytes);
	kv(&jw, "rss_bytes", r->rss_bytes);
	json_w_obj_end(&jw);

	json_w_key(&jw, "supervisor");
	json_w_obj_begin(&jw);
	kv(&jw, "pid", s->supervisor_pid > 0 ? (uint64_t)s->supervisor_pid : 0);
	kv(&jw, "rss_bytes", s->supervisor_rss_bytes);
	json_w_obj_end(&jw);

	json_w_key(&jw, "events");
	json_w_obj_begin(&jw);
	kv(&jw, "received", r->received);
	kv(&jw, "routed", r->routed);
	kv(&jw, "delivered", delivered);
	kv(&jw, "replayed", replayed);
	kv(&jw, "queued", r->queued);
	kv(&jw, "evicted", r->evicted);
	kv(&jw, "acked", acked);
	kv(&jw, "dropped", r->dropped);
	json_w_obj_end(&jw);

	json_w_key(&jw, "database");
	json_w_obj_begin(&jw);
	json_w_key(&jw, "enabled");
	json_w_bool(&jw, s->db_enabled != 0);
	json_w_key(&jw, "ready");
	json_w_bool(&jw, s->db_enabled && s->db_ready);
	kv(&jw, "lookups", lookups);
	kv(&jw, "errors", errors);
	json_w_obj_end(&jw);

	json_w_key(&jw, "orchestrators");
	json_w_arr_begin(&jw);
	for (unsigned i = 0; i < s->norchs && i < METRICS_MAX_ORCHS; i++) {
		json_w_obj_begin(&jw);
		json_w_key(&jw, "id");
		json_w_str(&jw, s->orchs[i].id);
		json_w_key(&jw, "organization");
		json_w_str(&jw, s->orchs[i].organization);
		kv(&jw, "connections", s->orchs[i].connections);
		json_w_obj_end(&jw);
	}
	json_w_arr_end(&jw);
	json_w_key(&jw, "orchestrators_truncated");
	json_w_bool(&jw, s->orchs_truncated != 0);
	json_w_obj_end(&jw);
	return json_w_finish(&jw, len);
}
