"""`orchctl bench` (orchctl(1), section BENCH), each scenario run small against
a real orchd (2 workers and its relay) and a real redis-server (redisfix),
with the JSON report checked against what was asked and what the server
and Redis say:

- idle: every connection upgraded and held, none closed; the server's RSS
  sampled (supervisor, workers and relay found from the pid given);
- echo: echoes counted in the window, one latency sample per echo, no
  protocol error, every connection had its share;
- auth: every connection authenticated with a minted HS256 token (the
  config's jwt_secret_file, found through -c), one connect->auth_success
  latency each; with a wrong secret every one gets auth_error;
- fanout: events received == published x receivers (broadcast) or
  published x connections per orchestrator (targeted), with no duplicate,
  reorder or missing event, one latency sample per event, the publisher's
  PUBLISH replies naming one subscriber (the relay); the connections come
  from the --sources addresses (the per-connection dump);
- bad input is a usage error (exit 2), and a non-loopback address is
  refused.

orchctl is the build tree's (ORCHD_BUILDDIR/orchctl, or next to ORCHD_BIN,
or $ORCHCTL_BIN).  Sizes are small (200 connections, seconds) so that the
suite stays cheap on a shared machine; every run is bounded by its own
--timeout and by the subprocess timeout here.

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_bench -v
"""

import json
import os
import subprocess
import unittest

from test_events import EventTestCase

CONNS = 200
RUN_TIMEOUT = 120  # seconds for one orchctl bench run, a loaded machine


def find_orchctl():
    cands = [os.environ.get("ORCHCTL_BIN")]
    if os.environ.get("ORCHD_BUILDDIR"):
        cands.append(os.path.join(os.environ["ORCHD_BUILDDIR"], "orchctl"))
    if os.environ.get("ORCHD_BIN"):
        cands.append(os.path.join(os.path.dirname(os.environ["ORCHD_BIN"]), "orchctl"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


class BenchTest(EventTestCase):

    def setUp(self):
        super().setUp()
        self.orchctl = find_orchctl()
        if self.orchctl is None:
            self.skipTest("no orchctl (ORCHD_BUILDDIR/orchctl, next to ORCHD_BIN, or "
                          "ORCHCTL_BIN)")

    def start(self, **kw):
        # ws_echo_path for idle/echo; a quota above the 5 per orchestrator
        # that auth uses; no heartbeat or ping during the short runs.
        cfg = {"ws_echo_path": "/echo", "heartbeat_interval": "10m",
               "ws_ping_interval": 0, "max_connections_per_orchestrator": 30,
               "log_level": "info", "rate_limit_messages": 1000000}
        cfg.update(kw)
        return self.start_stack(**cfg)

    def bench(self, *args, conf=True, expect_rc=0):
        """Run orchctl [-c orchd.conf] --json bench ARGS; the last JSON line."""
        argv = [self.orchctl, "-q", "--json"]
        if conf:
            argv[1:1] = ["-c", self.o.conf_path]
        argv += ["bench"] + [str(a) for a in args] + ["--timeout", "90"]
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                           timeout=RUN_TIMEOUT, cwd=self.tmp)
        ctx = "%s\nexit %d\nstdout: %s\nstderr: %s%s" % (
            " ".join(argv), r.returncode, r.stdout[-2000:], r.stderr[-2000:], self.diag())
        self.assertEqual(r.returncode, expect_rc, ctx)
        lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
        self.assertTrue(lines, ctx)
        doc = json.loads(lines[-1])
        doc["_ctx"] = ctx
        doc["_lines"] = [json.loads(x) for x in lines]
        return doc

    def assert_all_ready(self, d, n=CONNS):
        ctx = d["_ctx"]
        self.assertEqual((d["requested"], d["started"], d["ready"], d["failed"]),
                         (n, n, n, 0), ctx)
        self.assertEqual(d["closed"], 0, ctx)
        self.assertEqual(d["protocol_errors"], 0, ctx)
        self.assertGreater(d["ready_s"], 0, ctx)

    def assert_hist(self, d, count):
        """The histogram holds count samples and agrees with the percentiles."""
        ctx = d["_ctx"]
        self.assertEqual(d["lat_us"]["count"], count, ctx)
        self.assertEqual(sum(c for _, c in d["hist"]), count, ctx)
        if count:
            self.assertLessEqual(d["lat_us"]["p50"], d["lat_us"]["p99"], ctx)
            self.assertLessEqual(d["lat_us"]["p99"], d["lat_us"]["max"], ctx)
            self.assertLessEqual(max(v for v, _ in d["hist"]), d["lat_us"]["max"], ctx)

    # -- scenarios --------------------------------------------------------

    def test_idle_holds_every_connection_and_samples_the_servers_rss(self):
        self.start()
        self.o.remember_tree()
        d = self.bench("idle", "-n", CONNS, "--procs", 2, "--sources", "127.0.0.2-127.0.0.5",
                       "--hold", 1, "--pid", self.o.pid, "--sample-interval", 0.2)
        self.assert_all_ready(d)
        self.assertEqual(d["open"], CONNS, d["_ctx"])
        self.assertEqual(len(d["pids"]), 2, d["_ctx"])
        rss = d["rss"]
        # supervisor, 2 workers, relay
        self.assertGreaterEqual(rss["processes"], 4, d["_ctx"])
        self.assertGreaterEqual(rss["samples"], 3, d["_ctx"])
        for k in ("before_bytes", "ready_bytes", "max_bytes", "last_bytes"):
            self.assertGreater(rss[k], 1024 * 1024, "%s: %s" % (k, d["_ctx"]))
        self.assertGreaterEqual(rss["max_bytes"], rss["ready_bytes"], d["_ctx"])

    def test_idle_with_permessage_deflate_offered(self):
        self.start(ws_compression="on")
        d = self.bench("idle", "-n", CONNS, "--deflate", "--hold", 0.2)
        self.assert_all_ready(d)
        self.assertEqual(d["pmd"], CONNS, d["_ctx"])

    def test_echo_counts_every_echo_in_the_window(self):
        self.start()
        d = self.bench("echo", "-n", CONNS, "--procs", 2, "--depth", 4, "--duration", 2,
                       "--warmup", 0.5, "--sources", "127.0.0.2/4")
        self.assert_all_ready(d)
        ctx = d["_ctx"]
        self.assertGreater(d["messages"], CONNS, ctx)
        self.assertAlmostEqual(d["window_s"], 2.0, delta=0.2, msg=ctx)
        self.assertGreater(d["per_conn_min"], 0, ctx)
        self.assertGreaterEqual(d["messages_total"], d["messages"], ctx)
        self.assert_hist(d, d["messages"])
        # window_s is printed to the ms
        self.assertAlmostEqual(d["rate"], d["messages"] / d["window_s"],
                               delta=0.002 * d["rate"] + 1, msg=ctx)

    def test_auth_mints_tokens_from_the_configs_secret(self):
        self.start()
        d = self.bench("auth", "-n", CONNS, "--procs", 2, "--per-orch", 5, "--hold", 0.5,
                       "--sources", "127.0.0.2/2")
        self.assert_all_ready(d)
        self.assertEqual(d["fail"]["auth"], 0, d["_ctx"])
        self.assert_hist(d, CONNS)  # one connect->auth_success each
        self.assertGreater(d["connect_rate"], 0, d["_ctx"])

    def test_auth_with_a_wrong_secret_fails_every_connection(self):
        self.start()
        bad = os.path.join(self.tmp, "wrong.secret")
        with open(bad, "w") as f:
            f.write("not-the-secret-" + "x" * 32)
        d = self.bench("auth", "-n", 20, "--secret-file", bad, "--hold", 0.1, expect_rc=1)
        self.assertEqual((d["ready"], d["failed"], d["fail"]["auth"]), (0, 20, 20), d["_ctx"])

    def test_fanout_broadcast_every_event_to_every_receiver(self):
        self.start()
        events = 50
        d = self.bench("fanout", "-n", CONNS, "--procs", 2, "--events", events, "--rate", 200,
                       "--sources", "127.0.0.2/4", "--drain", 20)
        self.assert_all_ready(d)
        ctx = d["_ctx"]
        pub = d["publisher"]
        self.assertEqual((pub["published"], pub["replies"], pub["errors"]),
                         (events, events, 0), ctx)
        self.assertEqual(pub["receivers"], events, ctx)  # one subscriber: the relay
        self.assertEqual(d["messages_total"], events * CONNS, ctx)
        self.assertEqual(d["missing"], 0, ctx)
        self.assertEqual((d["seq_errors"], d["order_errors"], d["no_latency"]), (0, 0, 0), ctx)
        self.assertEqual((d["per_conn_min"], d["per_conn_max"]), (events, events), ctx)
        self.assert_hist(d, events * CONNS)

    def test_fanout_targeted_counts_per_orchestrator(self):
        self.start()
        events, per_orch = 100, 2
        d = self.bench("fanout", "-n", CONNS, "--procs", 2, "--targeted", "--per-orch",
                       per_orch, "--events", events, "--rate", 500, "--drain", 20)
        self.assert_all_ready(d)
        ctx = d["_ctx"]
        self.assertEqual(d["publisher"]["published"], events, ctx)
        self.assertEqual(d["publisher"]["mode"], "targeted", ctx)
        # CONNS / per_orch = 100 orchestrators, one event each, 2 receivers
        self.assertEqual(d["messages_total"], events * per_orch, ctx)
        self.assertEqual(d["missing"], 0, ctx)
        self.assertEqual((d["seq_errors"], d["order_errors"]), (0, 0), ctx)
        self.assert_hist(d, events * per_orch)

    def test_fanout_window_at_a_rate_and_the_source_addresses(self):
        self.start()
        dump = os.path.join(self.tmp, "conns")
        d = self.bench("fanout", "-n", CONNS, "--procs", 2, "--rate", 50, "--duration", 2,
                       "--warmup", 0.5, "--sources", "127.0.0.2-127.0.0.5", "--dump", dump,
                       "--drain", 20)
        self.assert_all_ready(d)
        ctx = d["_ctx"]
        pub = d["publisher"]
        self.assertEqual(pub["errors"], 0, ctx)
        self.assertGreater(pub["published"], 50, ctx)
        # every event reached every receiver in the end ...
        self.assertEqual(d["messages_total"], pub["published"] * CONNS, ctx)
        self.assertEqual(d["missing"], 0, ctx)
        # ... and the window holds about its 2 s share of them
        self.assertGreater(d["messages"], 0.5 * 50 * 2 * CONNS, ctx)
        self.assertLessEqual(d["messages"], d["messages_total"], ctx)
        self.assert_hist(d, d["messages"])
        # the per-connection dumps: every connection, from the 4 sources
        addrs, rows = set(), 0
        for k in range(2):
            with open("%s.%d.1" % (dump, k)) as f:
                for line in f:
                    idx, in_win, total, state, addr = line.split()
                    self.assertEqual(state, "open", line)
                    self.assertEqual(int(total), pub["published"], line)
                    addrs.add(addr.rsplit(":", 1)[0])
                    rows += 1
        self.assertEqual(rows, CONNS, ctx)
        self.assertEqual(addrs, {"127.0.0.%d" % i for i in range(2, 6)}, ctx)

    def test_bad_input_is_a_usage_error(self):
        self.start()
        for args in (["nosuch"], ["idle", "--host", "192.0.2.1"],
                     ["idle", "--sources", "10.0.0.1-10.0.0.4"], ["idle", "-n", "0"],
                     ["echo", "--depth", "1000"], ["echo", "--deflate"],
                     ["fanout", "--rate", "fast"]):
            r = subprocess.run([self.orchctl, "-c", self.o.conf_path, "bench"] + args,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, "%s: %s%s" % (args, r.stdout, r.stderr))
            self.assertIn("orchctl: bench", r.stderr + r.stdout, args)


if __name__ == "__main__":
    unittest.main()
