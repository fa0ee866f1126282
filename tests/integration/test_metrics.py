"""The operator pages (PROTOCOL.md section 7): GET /metrics (Prometheus text
format 0.0.4), GET /stats (JSON, docs/OPERATIONS.md) and GET /status, with
their access rules (admin_allow, admin_token_file, listen ... admin).

The real orchd (2 workers and its relay), a private redis-server
(redisfix), real WebSocket clients with tokens minted here.  Every counter
is checked by its movement between two scrapes around the thing that should
move it: connect, authenticate, fail auth (by code), publish (received,
routed, queued, delivered, the latency histogram), ack, heartbeat, close (by
code), a slow consumer (1008).  /stats is checked against the clients the
test holds: authenticated connections per worker (the worker each session
names in Redis), the orchestrators list, the processes' pids.

Access: from 127.0.0.2 with admin_allow 127.0.0.1 every page is 403; the
bearer token of admin_token_file opens them from there, a wrong one does
not; a "listen ... admin" address opens them to anyone.

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_metrics -v
"""

import json
import os
import re
import signal
import socket
import time
import unittest
import uuid

from harness import RawConn, free_port, http_request, wait_for
from pgfix import PG_BINDIR
from test_directory import HAVE_PG, DirectoryStack
from test_events import EventTestCase, record
from test_proto import WS_PATH, ProtoClient
from test_slow_consumer import SmallWsClient
from wsclient import CloseReceived, ConnectionClosed, Timeout

METRICS_CTYPE = "text/plain; version=0.0.4; charset=utf-8"

# Every family /metrics must always show, with its type.
FAMILIES = {
    "orchd_build_info": "gauge",
    "orchd_start_time_seconds": "gauge",
    "orchd_workers": "gauge",
    "orchd_connections_max": "gauge",
    "orchd_orchestrators": "gauge",
    "orchd_organizations": "gauge",
    "orchd_registry_high_water": "gauge",
    "orchd_worker_start_time_seconds": "gauge",
    "orchd_worker_restarts_total": "counter",
    "orchd_connections_open": "gauge",
    "orchd_connections_authenticated": "gauge",
    "orchd_connections_draining": "gauge",
    "orchd_connections_accepted_total": "counter",
    "orchd_connections_closed_total": "counter",
    "orchd_connections_refused_rate_total": "counter",
    "orchd_connections_refused_full_total": "counter",
    "orchd_accept_paused_total": "counter",
    "orchd_http_requests_total": "counter",
    "orchd_ws_upgrades_total": "counter",
    "orchd_ws_messages_in_total": "counter",
    "orchd_ws_protocol_errors_total": "counter",
    "orchd_ws_compressed_total": "counter",
    "orchd_slow_consumers_total": "counter",
    "orchd_send_queue_bytes": "gauge",
    "orchd_auth_timeouts_total": "counter",
    "orchd_auth_refreshes_total": "counter",
    "orchd_heartbeats_total": "counter",
    "orchd_client_rate_limited_total": "counter",
    "orchd_api_auth_limited_total": "counter",
    "orchd_api_auth_busy_total": "counter",
    "orchd_events_received_total": "counter",
    "orchd_events_delivered_total": "counter",
    "orchd_events_replayed_total": "counter",
    "orchd_events_acked_total": "counter",
    "orchd_db_lookups_total": "counter",
    "orchd_db_errors_total": "counter",
    "orchd_relay_pipe_queue_bytes": "gauge",
    "orchd_relay_pipe_dropped_total": "counter",
    "orchd_connections_state": "gauge",
    "orchd_ws_close_total": "counter",
    "orchd_auth_results_total": "counter",
    "orchd_messages_in_total": "counter",
    "orchd_messages_out_total": "counter",
    "orchd_event_delivery_latency_seconds": "histogram",
    "orchd_db_lookup_latency_seconds": "histogram",
    "orchd_process_resident_memory_bytes": "gauge",
    "orchd_relay_redis_up": "gauge",
    "orchd_relay_redis_reconnects_total": "counter",
    "orchd_relay_restarts_total": "counter",
    "orchd_relay_events_received_total": "counter",
    "orchd_relay_events_invalid_total": "counter",
    "orchd_relay_events_routed_total": "counter",
    "orchd_relay_frames_total": "counter",
    "orchd_relay_events_queued_total": "counter",
    "orchd_relay_events_evicted_total": "counter",
    "orchd_relay_events_unqueued_total": "counter",
    "orchd_relay_events_unrouted_total": "counter",
    "orchd_relay_events_dropped_total": "counter",
    "orchd_relay_events_overflow_total": "counter",
    "orchd_relay_backlog": "gauge",
    "orchd_relay_pipe_resets_total": "counter",
    "orchd_relay_canary_failures_total": "counter",
}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


class Metrics:
    """A parsed exposition: families {name: type} and samples
    {(name, frozenset(labels)): value}; parse() fails on any malformed
    line or a sample of an unannounced family."""

    def __init__(self, text):
        self.text = text
        self.types = {}
        self.helps = set()
        self.samples = {}
        self.parse()

    def parse(self):
        assert self.text.endswith("\n"), "no final newline"
        for line in self.text.split("\n")[:-1]:
            if line.startswith("# HELP "):
                name, _, help_ = line[7:].partition(" ")
                assert help_, "HELP without text: %r" % line
                assert name not in self.helps, "HELP twice: %r" % line
                self.helps.add(name)
                continue
            if line.startswith("# TYPE "):
                name, _, typ = line[7:].partition(" ")
                assert name in self.helps, "TYPE before HELP: %r" % line
                assert name not in self.types, "TYPE twice: %r" % line
                assert typ in ("counter", "gauge", "histogram"), line
                self.types[name] = typ
                continue
            assert not line.startswith("#"), "stray comment %r" % line
            m = SAMPLE_RE.match(line)
            assert m, "malformed sample %r" % line
            name, labels, value = m.groups()
            fam = self.family_of(name)
            assert fam is not None, "sample of no announced family: %r" % line
            lab = {}
            if labels:
                pos = 0
                while pos < len(labels):
                    lm = LABEL_RE.match(labels, pos)
                    assert lm, "bad labels in %r" % line
                    lab[lm.group(1)] = lm.group(2)
                    pos = lm.end()
            key = (name, frozenset(lab.items()))
            assert key not in self.samples, "duplicate sample %r" % line
            self.samples[key] = float(value)

    def family_of(self, name):
        if name in self.types and self.types[name] != "histogram":
            return name
        for sfx in ("_bucket", "_sum", "_count"):
            if name.endswith(sfx) and self.types.get(name[:-len(sfx)]) == "histogram":
                return name[:-len(sfx)]
        return None

    def get(self, name, **labels):
        """The value of one sample (labels given as keyword arguments)."""
        key = (name, frozenset((k, str(v)) for k, v in labels.items()))
        return self.samples.get(key)

    def sum(self, name, **labels):
        """The sum over every sample of name whose labels include labels."""
        want = set((k, str(v)) for k, v in labels.items())
        return sum(v for (n, lab), v in self.samples.items()
                   if n == name and want <= lab)

    def workers(self, name):
        """{worker: value} of a per-worker family without other labels."""
        out = {}
        for (n, lab), v in self.samples.items():
            if n == name:
                d = dict(lab)
                out[int(d["worker"])] = v
        return out

    def check_histogram(self, name):
        """Buckets cumulative, le ascending to +Inf == _count, per worker."""
        per = {}
        for (n, lab), v in self.samples.items():
            if n == name + "_bucket":
                d = dict(lab)
                le = float("inf") if d["le"] == "+Inf" else float(d["le"])
                per.setdefault(d["worker"], []).append((le, v))
        assert per, "no buckets of %s" % name
        for w, buckets in per.items():
            buckets.sort()
            assert buckets[-1][0] == float("inf"), "%s: no +Inf bucket" % name
            prev = 0
            for le, v in buckets:
                assert v >= prev, "%s worker %s: not cumulative at le=%s" % (name, w, le)
                prev = v
            count = self.get(name + "_count", worker=w)
            assert count == buckets[-1][1], "%s worker %s: _count %s != +Inf %s" % (
                name, w, count, buckets[-1][1])
            assert self.get(name + "_sum", worker=w) is not None


def http_get_from(port, path, source=None, headers=None, method="GET", host="127.0.0.1"):
    """One request on a fresh connection, from source address source."""
    c = RawConn.__new__(RawConn)
    c.sock = socket.create_connection((host, port), timeout=5.0,
                                      source_address=(source, 0) if source else None)
    c.sock.settimeout(5.0)
    c.buf = b""
    with c:
        return c.request(method, path, headers=headers, close=True)


class MetricsHelpers:
    """Scrape and compare; mixed into the suites' test cases."""

    def scrape(self, port=None):
        r = http_request(port or self.o.port, "GET", "/metrics")
        self.assertEqual(r.status, 200, "%r%s" % (r, self.diag()))
        self.assertEqual(r.header("content-type"), METRICS_CTYPE)
        try:
            return Metrics(r.body.decode("utf-8"))
        except AssertionError as e:
            self.fail("/metrics is not valid: %s\n%s" % (e, r.body.decode()[:3000]))

    def stats(self, port=None):
        r = http_request(port or self.o.port, "GET", "/stats")
        self.assertEqual(r.status, 200, "%r%s" % (r, self.diag()))
        self.assertEqual(r.header("content-type"), "application/json")
        return r.json()

    def wait_metric(self, pred, what, timeout=5.0):
        """Scrape until pred(metrics) holds; returns those metrics."""
        last = [None]

        def ok():
            m = self.scrape()
            last[0] = m
            return m if pred(m) else None
        m = wait_for(ok, timeout, 0.1)
        self.assertTrue(m, "%s: not within %.0fs%s" % (what, timeout, self.diag()))
        return m

    def delta(self, before, name, want, timeout=5.0, **labels):
        """Wait until sum(name, labels) grew by exactly want over before."""
        base = before.sum(name, **labels)
        got = [None]

        def ok(m):
            got[0] = m.sum(name, **labels) - base
            return got[0] == want
        try:
            return self.wait_metric(ok, "%s%s +%s" % (name, labels or "", want), timeout)
        except AssertionError:
            self.fail("%s%s moved by %s, want %s%s" % (name, labels or "", got[0], want,
                                                       self.diag()))


class MetricsTestCase(MetricsHelpers, EventTestCase):
    pass


class TestMetrics(MetricsTestCase):

    def test_families_and_counters_move(self):
        self.start_stack(max_connections_per_orchestrator=10)
        m0 = self.scrape()
        for name, typ in FAMILIES.items():
            self.assertEqual(m0.types.get(name), typ, "family %s (%s) missing or "
                             "mistyped in /metrics" % (name, typ))
        m0.check_histogram("orchd_event_delivery_latency_seconds")
        m0.check_histogram("orchd_db_lookup_latency_seconds")
        self.assertEqual(m0.get("orchd_workers"), 2)
        self.assertEqual(m0.get("orchd_relay_redis_up"), 1)
        self.assertEqual(m0.sum("orchd_connections_authenticated"), 0)
        self.assertIsNone(m0.get("orchd_database_ready"), "no database configured")
        for proc in ("supervisor", "relay"):
            self.assertGreater(m0.get("orchd_process_resident_memory_bytes", process=proc),
                               0, proc)
        for w in (0, 1):
            self.assertGreater(m0.get("orchd_process_resident_memory_bytes",
                                      process="worker", worker=w), 0)
        # The pids /stats names are the processes that run.
        st = self.stats()
        self.assertEqual(sorted(w["pid"] for w in st["workers"]), sorted(self.workers()))
        self.assertEqual(st["supervisor"]["pid"], self.o.pid)
        self.assertEqual(st["relay"]["redis"], "up")

        # Connect: 3 connections of A spread over both workers, 1 of B.
        orch_a = "orch-a-" + uuid.uuid4().hex[:6]
        orch_b = "orch-b-" + uuid.uuid4().hex[:6]
        a_clients, by_worker = self.connect_spread(orch_a, 3)
        b = self.connect(orch_b)
        clients = a_clients + [b]
        n, na = len(clients), len(a_clients)
        m1 = self.delta(m0, "orchd_auth_results_total", n, code="success")
        for fam, labels, want in [
                ("orchd_ws_upgrades_total", {}, n),
                ("orchd_messages_in_total", {"type": "auth"}, n),
                ("orchd_messages_in_total", {"type": "subscribe"}, n),
                ("orchd_messages_out_total", {"type": "auth_success"}, n),
                ("orchd_messages_out_total", {"type": "subscribed"}, n)]:
            self.assertEqual(m1.sum(fam, **labels) - m0.sum(fam, **labels), want,
                             "%s%s" % (fam, labels))
        self.assertGreaterEqual(m1.sum("orchd_connections_accepted_total")
                                - m0.sum("orchd_connections_accepted_total"), n)
        # Gauges: exactly the clients held (HTTP scrapes are not WebSockets).
        self.assertEqual(m1.sum("orchd_connections_authenticated"), n)
        self.assertEqual(m1.sum("orchd_connections_state", state="ws_open"), n)
        self.assertEqual(m1.get("orchd_orchestrators"), 2)
        self.assertEqual(m1.get("orchd_organizations"), 1)
        per_worker = m1.workers("orchd_connections_authenticated")
        want_per_worker = {0: 0, 1: 0}
        for c in clients:
            want_per_worker[int(self.worker_of(c))] += 1
        self.assertEqual(per_worker, want_per_worker)

        # /stats agrees with the clients.
        st = self.stats()
        self.assertEqual(st["connections"]["authenticated"], n)
        self.assertEqual(st["connections"]["orchestrators"], 2)
        self.assertEqual(st["connections"]["organizations"], 1)
        self.assertGreaterEqual(st["connections"]["open"], n + 1)  # + this request
        self.assertEqual({w["slot"]: w["authenticated"] for w in st["workers"]},
                         want_per_worker)
        self.assertEqual(sum(w["open"] for w in st["workers"]), st["connections"]["open"])
        self.assertEqual(st["orchestrators"],
                         [{"id": orch_a, "organization": self.org, "connections": na},
                          {"id": orch_b, "organization": self.org, "connections": 1}])
        self.assertIs(st["orchestrators_truncated"], False)
        self.assertEqual(st["database"], {"enabled": False, "ready": False,
                                          "lookups": 0, "errors": 0})

        # Auth failures, by code; each closes with 4001.
        self.auth_fails(self.token(orch=orch_a, exp_in=-120), "TOKEN_EXPIRED",
                        orch=orch_a)
        self.auth_fails(self.token(orch=orch_a, secret="not-the-secret"), "AUTH_FAILED",
                        orch=orch_a)
        m2 = self.delta(m1, "orchd_auth_results_total", 1, code="TOKEN_EXPIRED")
        self.assertEqual(m2.sum("orchd_auth_results_total", code="AUTH_FAILED")
                         - m1.sum("orchd_auth_results_total", code="AUTH_FAILED"), 1)
        self.assertEqual(m2.sum("orchd_ws_close_total", code="4001")
                         - m1.sum("orchd_ws_close_total", code="4001"), 2)
        self.assertEqual(m2.sum("orchd_messages_out_total", type="auth_error")
                         - m1.sum("orchd_messages_out_total", type="auth_error"), 2)

        # A targeted event that requires an ack: received and routed by the
        # relay, queued, delivered to each of A's connections (on both
        # workers), latency observed.
        rec = record("message.received", orch_a, ack=True)
        self.publish(rec)
        for c in a_clients:
            self.assertTrue(c.wait_ids([rec["id"]]), "%r did not get the event" % c)
        m3 = self.delta(m2, "orchd_events_delivered_total", na)
        for fam, want in [("orchd_relay_events_received_total", 1),
                          ("orchd_relay_events_routed_total", 1),
                          ("orchd_relay_events_queued_total", 1),
                          ("orchd_relay_frames_total", 2),
                          ("orchd_events_received_total", 2),
                          ("orchd_event_delivery_latency_seconds_count", na)]:
            self.assertEqual(m3.sum(fam) - m2.sum(fam), want, fam)
        self.assertEqual(m3.sum("orchd_messages_out_total", type="event")
                         - m2.sum("orchd_messages_out_total", type="event"), na)
        m3.check_histogram("orchd_event_delivery_latency_seconds")
        # On this box an event takes well under the top bound (2.5 s).
        inf = m3.sum("orchd_event_delivery_latency_seconds_bucket", le="+Inf")
        top = m3.sum("orchd_event_delivery_latency_seconds_bucket", le="2.5")
        self.assertEqual(inf, top, "an event took more than 2.5 s")
        st = self.stats()
        self.assertEqual(st["events"]["received"], m3.get("orchd_relay_events_received_total"))
        self.assertEqual(st["events"]["delivered"], m3.sum("orchd_events_delivered_total"))
        self.assertEqual(st["relay"]["routed"], m3.get("orchd_relay_events_routed_total"))

        # Ack: the event leaves the queue, counted once.
        a_clients[0].ack([rec["id"]])
        m4 = self.delta(m3, "orchd_events_acked_total", 1)
        self.assertEqual(m4.sum("orchd_messages_in_total", type="ack")
                         - m3.sum("orchd_messages_in_total", type="ack"), 1)
        self.wait_zcard(orch_a, 0)

        # Heartbeat.
        b.pc.heartbeat()
        m5 = self.delta(m4, "orchd_heartbeats_total", 1)
        for fam, t in [("orchd_messages_in_total", "heartbeat"),
                       ("orchd_messages_out_total", "heartbeat_ack")]:
            self.assertEqual(m5.sum(fam, type=t) - m4.sum(fam, type=t), 1, t)

        # An unknown message type counts as "other" and gets an error.
        b.pc.send("bogus", {})
        self.assertEqual(b.pc.expect("error")["code"], "INVALID_MESSAGE")
        m6 = self.delta(m5, "orchd_messages_in_total", 1, type="other")
        self.assertEqual(m6.sum("orchd_messages_out_total", type="error")
                         - m5.sum("orchd_messages_out_total", type="error"), 1)

        # A client closes with 1000: the server's echo is counted, the
        # connection leaves every gauge.
        self.assertEqual(b.pc.close_handshake(), 1000)
        m7 = self.delta(m6, "orchd_ws_close_total", 1, code="1000")
        m7 = self.wait_metric(lambda m: m.sum("orchd_connections_authenticated") == n - 1
                              and m.sum("orchd_connections_state", state="ws_open") == n - 1
                              and m.sum("orchd_connections_state", state="ws_closing") == 0,
                              "gauges after a close")
        self.wait_metric(lambda m: m.sum("orchd_connections_closed_total")
                         - m0.sum("orchd_connections_closed_total") >= 3,
                         "closed connections counted")
        st = self.stats()
        self.assertEqual(st["orchestrators"],
                         [{"id": orch_a, "organization": self.org, "connections": na}])
        self.assertEqual(st["connections"]["orchestrators"], 1)

        # Nothing left queued anywhere once the clients are idle.
        self.wait_metric(lambda m: m.sum("orchd_send_queue_bytes") == 0, "send queues empty")
        self.assertEqual(m7.sum("orchd_relay_pipe_queue_bytes"), 0)

    def states_match_open(self, m):
        """Per worker, the connections by state add up to the open ones
        (two gauges kept apart, by different code)."""
        opened = m.workers("orchd_connections_open")
        for w, n in opened.items():
            if m.sum("orchd_connections_state", worker=w) != n:
                return False
        return True

    def test_reload_gauges(self):
        """During a reload the old and the new worker of a slot share its
        block: the gauges stay right through the drain and after."""
        self.start_stack(drain_timeout="5s", drain_reconnect_delay="0")
        clients, _ = self.connect_spread(self.orch, 2)
        n = len(clients)
        m0 = self.wait_metric(lambda m: m.sum("orchd_connections_state", state="ws_open") == n
                              and self.states_match_open(m), "gauges before the reload")
        self.assertEqual(m0.sum("orchd_connections_draining"), 0)
        gen0 = {w["slot"]: w["generation"] for w in self.stats()["workers"]}
        self.o.send_signal(signal.SIGHUP)
        for c in clients:
            msg = c.read_until(lambda m: m["type"] == "reconnect", 5.0)
            self.assertIsNotNone(msg, "%r: no reconnect message" % c)
        # The old workers hold the clients until the drain's close (at 4 s).
        m1 = self.wait_metric(lambda m: m.sum("orchd_connections_draining") == n,
                              "draining gauge = the clients")
        self.assertEqual(m1.sum("orchd_connections_authenticated"), n)
        self.assertEqual(m1.sum("orchd_connections_state", state="ws_open"), n)
        st = self.stats()
        self.assertTrue(all(w["generation"] > gen0[w["slot"]] for w in st["workers"]), st)
        # Then they close them with 1001 and exit.
        for c in clients:
            try:
                c.read_until(lambda m: False, 8.0)
                self.fail("%r not closed by the drain" % c)
            except CloseReceived as e:
                self.assertEqual(e.code, 1001)
        self.wait_metric(lambda m: m.sum("orchd_connections_draining") == 0
                         and m.sum("orchd_connections_authenticated") == 0
                         and m.sum("orchd_connections_state", state="ws_open") == 0
                         and m.sum("orchd_connections_state", state="ws_closing") == 0
                         and m.sum("orchd_send_queue_bytes") == 0
                         and self.states_match_open(m)
                         and m.sum("orchd_ws_close_total", code="1001")
                         - m0.sum("orchd_ws_close_total", code="1001") == n,
                         "gauges after the reload", timeout=10)

    def test_killed_worker_gauges_reset(self):
        """A worker killed with its connections (no drain) leaves nothing
        behind in the gauges: the supervisor resets its slot's."""
        self.start_stack()
        clients, by_worker = self.connect_spread(self.orch, 2)
        st = self.stats()
        victim = st["workers"][0]
        self.assertGreater(len(by_worker.get("0", [])), 0)
        survivors = len(by_worker.get("1", []))
        os.kill(victim["pid"], signal.SIGKILL)
        self.assertTrue(self.o.wait_log(r"worker 0 \(pid %d\) killed by signal 9"
                                        % victim["pid"], timeout=5), self.diag())
        m = self.wait_metric(
            lambda m: m.get("orchd_connections_state", worker=0, state="ws_open") == 0
            and m.get("orchd_connections_open", worker=0) <= 1
            and m.get("orchd_connections_authenticated", worker=0) == 0
            and m.sum("orchd_connections_state", state="ws_open") == survivors
            and self.states_match_open(m), "gauges of the killed worker's slot", timeout=10)
        self.assertEqual(m.get("orchd_worker_restarts_total", worker=0), 1)
        # The slot never names the dead pid once it is reaped; its
        # successor (after the crash back-off) writes its own.
        self.assertNotEqual(self.stats()["workers"][0]["pid"], victim["pid"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self.stats()["workers"][0]["pid"]
            if pid not in (0, victim["pid"]):
                break
            time.sleep(0.1)
        else:
            self.fail("no successor in worker slot 0: %r" % self.stats())

    def test_slow_consumer_counted(self):
        self.start_stack(max_send_queue="64k", heartbeat_interval="10m",
                         ws_ping_interval=0, log_level="info")
        m0 = self.scrape()
        pc = ProtoClient.__new__(ProtoClient)
        pc.t, pc.log = self, []
        pc.ws = SmallWsClient.open(self.o.port, path=WS_PATH, timeout=5.0, rcvbuf=4096)
        self.addCleanup(pc.ws.close)
        msg = pc.auth(self.token(), "d-never-reads", self.orch)
        self.assertEqual(msg["type"], "auth_success", json.dumps(msg) + self.diag())
        pc.send("subscribe", {"eventTypes": ["*"]})
        self.assertEqual(pc.recv()["type"], "subscribed")
        # The client reads no more: 8 KiB events until orchd gives up on it.
        pad = "x" * 8192
        for i in range(400):
            self.publish(record("message.received", self.orch, payload={"pad": pad, "i": i}))
            if i % 20 == 19 and self.scrape().sum("orchd_slow_consumers_total") > \
                    m0.sum("orchd_slow_consumers_total"):
                break
        m1 = self.delta(m0, "orchd_slow_consumers_total", 1)
        self.delta(m0, "orchd_ws_close_total", 1, code="1008")
        self.assertGreater(m1.sum("orchd_events_delivered_total"), 0)
        # Once the connection is gone, no byte stays counted as queued.
        pc.ws.close()
        self.wait_metric(lambda m: m.sum("orchd_send_queue_bytes") == 0
                         and m.sum("orchd_connections_authenticated") == 0
                         and m.sum("orchd_connections_state", state="ws_closing") == 0,
                         "gauges back to 0 after the slow consumer", timeout=10)
        st = self.stats()
        self.assertEqual(sum(w["slow_consumers"] for w in st["workers"]), 1)


class TestMetricsAccess(MetricsTestCase):

    def setUp(self):
        super().setUp()
        self.admin_port = free_port()
        self.token_path = os.path.join(self.tmp, "admin.token")
        self.admin_token = uuid.uuid4().hex + uuid.uuid4().hex
        with open(self.token_path, "w") as f:
            f.write(self.admin_token + "\n")

    def start_access(self, allow="127.0.0.1"):
        o = self.new_orchd()
        cfg = o.default_config(admin_allow=allow, admin_token_file=self.token_path,
                               redis="unix:" + os.path.join(self.tmp, "no-redis.sock"))
        cfg["listen"] = ["127.0.0.1:%d" % o.port, "127.0.0.1:%d admin" % self.admin_port]
        o.write_config(cfg)
        o.start()
        self.o = o
        return o

    def test_refused_from_other_address_token_and_admin_listener(self):
        o = self.start_access()
        for path in ("/metrics", "/stats", "/status"):
            r = http_get_from(o.port, path, source="127.0.0.2")
            self.assertEqual(r.status, 403, "%s from 127.0.0.2: %r" % (path, r))
            self.assertLess(len(r.body), 200)
            self.assertNotIn(b"orchd_", r.body)
            # A wrong token, or another scheme, changes nothing.
            for auth in ("Bearer " + "0" * 64, "Basic " + self.admin_token,
                         "Bearer " + self.admin_token[:-1], "Bearer"):
                r = http_get_from(o.port, path, source="127.0.0.2",
                                  headers={"Authorization": auth})
                self.assertEqual(r.status, 403, "%s with %r: %r" % (path, auth, r))
            r = http_get_from(o.port, path, source="127.0.0.2",
                              headers={"Authorization": "Bearer " + self.admin_token})
            self.assertEqual(r.status, 200, "%s with the token: %r" % (path, r))
            r = http_get_from(o.port, path, source="127.0.0.2",
                              headers={"Authorization": "bearer  " + self.admin_token})
            self.assertEqual(r.status, 200, "%s, scheme in lower case: %r" % (path, r))
            # The admin listener lets anyone in.
            r = http_get_from(self.admin_port, path, source="127.0.0.2")
            self.assertEqual(r.status, 200, "%s on the admin listener: %r" % (path, r))
            # 127.0.0.1 is allowed.
            r = http_get_from(o.port, path, source="127.0.0.1")
            self.assertEqual(r.status, 200, "%s from 127.0.0.1: %r" % (path, r))
        self.assertTrue(o.wait_log(r"worker_admin_dispatch: 127\.0\.0\.2:\d+: /metrics "
                                   r"refused", timeout=5),
                        "no debug log line for a refusal%s" % self.diag())
        self.assertNotIn(self.admin_token, o.log_text())

    def test_methods_head_and_pages(self):
        o = self.start_access()
        r = http_get_from(o.port, "/metrics")
        self.assertEqual(r.header("content-type"), METRICS_CTYPE)
        self.assertEqual(r.header("cache-control"), "no-store")
        m = Metrics(r.body.decode())
        self.assertEqual(m.get("orchd_relay_redis_up"), 0)  # no Redis here
        r = http_get_from(o.port, "/metrics", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertGreater(int(r.header("content-length")), 1000)
        for method in ("POST", "PUT", "DELETE"):
            r = http_get_from(o.port, "/stats", method=method)
            self.assertEqual(r.status, 405, method)
            self.assertEqual(r.header("allow"), "GET, HEAD")
        # Refused before the method is looked at.
        r = http_get_from(o.port, "/stats", method="POST", source="127.0.0.2")
        self.assertEqual(r.status, 403)
        r = http_get_from(o.port, "/status")
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        self.assertIn(b"<html", r.body)
        self.assertIn(b"/stats", r.body)
        st = http_get_from(o.port, "/stats").json()
        self.assertEqual(st["relay"]["redis"], "down")
        self.assertEqual(st["connections"]["max"], 100000)
        self.assertLessEqual(st["started_ms"], st["time_ms"])
        self.assertLess(abs(st["time_ms"] / 1000.0 - time.time()), 60)
        self.assertEqual(len(st["workers"]), 2)
        # Keep-alive: two scrapes on one connection.
        with RawConn(o.port) as c:
            self.assertEqual(c.request("GET", "/metrics").status, 200)
            self.assertEqual(c.request("GET", "/stats").status, 200)

    def test_admin_allow_none(self):
        o = self.start_access(allow="none")
        self.assertEqual(http_get_from(o.port, "/metrics").status, 403)
        self.assertEqual(http_get_from(self.admin_port, "/metrics").status, 200)
        self.assertEqual(http_get_from(o.port, "/metrics", headers={
            "Authorization": "Bearer " + self.admin_token}).status, 200)
        # /healthz stays open to all.
        self.assertEqual(http_get_from(o.port, "/healthz", source="127.0.0.2").status, 200)


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class TestMetricsDatabase(MetricsHelpers, DirectoryStack):
    """The directory's queries: counted, timed, their failures counted."""

    def test_database_lookups(self):
        self.start(database_cache_ttl=0)
        m0 = self.wait_metric(lambda m: m.get("orchd_database_ready") == 1,
                              "orchd_database_ready 1")
        self.assertEqual(self.stats()["database"]["enabled"], True)
        self.authed_to(self.orch)
        c, msg = self.auth_msg(orch="orch-nobody-" + uuid.uuid4().hex[:6])
        self.assert_auth_error(c, msg, "ORCHESTRATOR_DISABLED")
        m1 = self.delta(m0, "orchd_auth_results_total", 1, code="ORCHESTRATOR_DISABLED")
        lookups = m1.sum("orchd_db_lookups_total") - m0.sum("orchd_db_lookups_total")
        self.assertGreaterEqual(lookups, 2, "two auths, two look-ups at least")
        # Every query was answered: one latency observation each, no error.
        m1 = self.wait_metric(
            lambda m: m.sum("orchd_db_lookup_latency_seconds_count")
            - m0.sum("orchd_db_lookup_latency_seconds_count")
            == m.sum("orchd_db_lookups_total") - m0.sum("orchd_db_lookups_total"),
            "a latency observation per look-up")
        self.assertEqual(m1.sum("orchd_db_errors_total"), m0.sum("orchd_db_errors_total"))
        m1.check_histogram("orchd_db_lookup_latency_seconds")
        st = self.stats()
        self.assertEqual(st["database"]["lookups"], m1.sum("orchd_db_lookups_total"))
        self.assertEqual(st["database"]["errors"], 0)

        # PostgreSQL down: the look-up of a new auth fails and is counted.
        self.pg_down()
        self.wait_metric(lambda m: m.get("orchd_database_ready") == 0
                         and m.sum("orchd_database_ready") == 0, "database_ready 0",
                         timeout=10)
        c, msg = self.auth_msg()
        self.assert_auth_error(c, msg, "UNAVAILABLE")
        m2 = self.delta(m1, "orchd_auth_results_total", 1, code="UNAVAILABLE")
        self.assertGreaterEqual(m2.sum("orchd_db_errors_total")
                                - m1.sum("orchd_db_errors_total"), 1)
        self.assertGreaterEqual(self.stats()["database"]["errors"], 1)


if __name__ == "__main__":
    unittest.main()
