"""orchctl(1) against a real orchd (2 workers and its relay) and a real
redis-server (redisfix): `token` output accepted by orchd; `publish`
records (targeted, daemon, organization, broadcast, requiresAck, channel,
priority, the stream) reaching real WebSocket clients with the right
fields; `listen` printing and acking events, and surviving orchd and Redis
restarts without losing or repeating a requiresAck event; the admin socket
commands (status, connections, kick, revoke, loglevel, drain).

The orchctl binary is ORCHCTL_BIN, else ORCHD_BUILDDIR/orchctl, else `orchctl`
next to ORCHD_BIN.
Every wait is bounded.  Run:

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_orchctl -v
"""

import json
import os
import signal
import subprocess
import threading
import time
import unittest
import uuid

import tokens
from harness import ORCHD_BIN, children_of, free_port, wait_for
from redisfix import start_redis
from test_events import EventTestCase, QUEUE_EVENTS, record
from test_proto import ALL_SCOPES

ORCHCTL_BIN = os.environ.get("ORCHCTL_BIN") or os.path.join(
    os.environ.get("ORCHD_BUILDDIR") or os.path.dirname(ORCHD_BIN or "."), "orchctl")
RUN_TIMEOUT = 30.0


class Listener:
    """`orchctl listen` in the background: its stdout lines (events) are
    collected by a thread; stderr goes to a file."""

    def __init__(self, testcase, args):
        self.t = testcase
        self.err_path = os.path.join(testcase.tmp, "listen-%s.err" % uuid.uuid4().hex[:6])
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([ORCHCTL_BIN] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.err)
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        testcase.addCleanup(self.stop)

    def _read(self):
        for raw in self.proc.stdout:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace"))

    def events(self):
        with self.lock:
            return [json.loads(line) for line in self.lines]

    def ids(self):
        return [e.get("eventId") for e in self.events()]

    def wait_ids(self, ids, timeout):
        want = set(ids)
        return wait_for(lambda: want <= set(self.ids()), timeout, 0.05)

    def stderr(self):
        with open(self.err_path, "r", errors="replace") as f:
            return f.read()

    def wait_stderr(self, text, timeout):
        return wait_for(lambda: text in self.stderr(), timeout, 0.05)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal it and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.t.fail("orchctl listen ignored signal %d for %.0fs:\n%s"
                            % (sig, timeout, self.stderr()))
        self.reader.join(5)
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode


def kill_tree_pids(pid):
    """pid and its descendants, parents before children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        if p not in out:
            out.append(p)
            todo.extend(children_of(p))
    return out


class OrchctlTestCase(EventTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(ORCHCTL_BIN, os.X_OK):
            raise unittest.SkipTest("no orchctl binary at %s" % ORCHCTL_BIN)

    def orchctl(self, *args, conf=True, expect=0, input=None):
        argv = [ORCHCTL_BIN]
        if conf:
            argv += ["-c", self.o.conf_path]
        argv += list(args)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, input=input,
                               timeout=RUN_TIMEOUT, errors="replace")
        except subprocess.TimeoutExpired:
            self.fail("%s did not exit within %.0fs" % (" ".join(argv), RUN_TIMEOUT))
        if expect is not None:
            self.assertEqual(r.returncode, expect, "%s: exit %d\nstdout %s\nstderr %s%s"
                             % (" ".join(argv), r.returncode, r.stdout, r.stderr,
                                self.diag()))
        return r

    def publish_cli(self, *args):
        """orchctl --json publish ARGS; returns the parsed answer."""
        r = self.orchctl("--json", "publish", *args)
        return json.loads(r.stdout)

    def listen(self, *args):
        return Listener(self, ["-c", self.o.conf_path, "listen"] + list(args))


# ============================================================================


class UsageTest(OrchctlTestCase):

    def run_bare(self, *args):
        """orchctl without a config (the default one need not exist)."""
        return subprocess.run([ORCHCTL_BIN] + list(args), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)

    def test_help_and_usage_errors(self):
        for cmd in ("status", "connections", "kick", "revoke", "publish", "token",
                    "listen", "loglevel", "drain"):
            r = self.run_bare(cmd, "-h")
            self.assertEqual(r.returncode, 0, (cmd, r.stderr))
            self.assertTrue(r.stdout.startswith("usage: orchctl %s" % cmd), (cmd, r.stdout))
            r = self.run_bare(cmd, "--no-such-option")
            self.assertEqual(r.returncode, 2, (cmd, r.stdout, r.stderr))
            self.assertIn("orchctl", r.stderr)
        r = self.run_bare("-h")
        self.assertEqual(r.returncode, 0)
        for cmd in ("status", "publish", "listen", "bench"):
            self.assertIn(cmd, r.stdout)
        self.assertEqual(self.run_bare().returncode, 2)
        r = self.run_bare("no-such-command")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)
        r = self.run_bare("-V")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^orchctl \d+\.\d+")
        # A config named with -c must load.
        r = self.run_bare("-c", os.path.join(self.tmp, "missing.conf"), "status")
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing.conf", r.stderr)


class TokenTest(OrchctlTestCase):

    def test_token_is_accepted_by_orchd_with_its_claims(self):
        self.start_stack()
        r = self.orchctl("--json", "token", "-o", self.orch, "-d", "d-1", "-g", self.org,
                         "--ttl", "120", "--jti", "jti-" + self.orch)
        doc = json.loads(r.stdout)
        tok, claims = doc["token"], doc["claims"]
        self.assertEqual(tokens.decode_unverified(tok)[1], claims)
        self.assertEqual(claims["sub"], self.orch)
        self.assertEqual(claims["orchestratorId"], self.orch)
        self.assertEqual(claims["daemonId"], "d-1")
        self.assertEqual(claims["organizationId"], self.org)
        self.assertEqual(claims["jti"], "jti-" + self.orch)
        self.assertEqual(claims["type"], "access")
        self.assertEqual(claims["exp"] - claims["iat"], 120)
        self.assertLessEqual(abs(claims["iat"] - time.time()), 5)
        self.assertEqual(sorted(claims["scopes"]), sorted(ALL_SCOPES))
        c, payload = self.authed(token=tok, daemon="d-1")
        self.assertEqual(sorted(payload["scopes"]), sorted(ALL_SCOPES))
        # Its daemonId binds it: another daemon is refused.
        self.auth_fails(tok, "AUTH_FAILED", daemon="d-2")
        # Without --json: the token alone on one line.
        r = self.orchctl("token", "-o", self.orch, "--scopes", "messages:read")
        tok2 = r.stdout.strip()
        self.assertEqual(r.stdout.count("\n"), 1)
        self.assertEqual(tokens.decode_unverified(tok2)[1]["scopes"], ["messages:read"])
        self.assertNotIn("daemonId", tokens.decode_unverified(tok2)[1])
        self.authed(token=tok2, daemon="any-daemon")

    def test_token_with_a_private_key_is_accepted(self):
        key = tokens.EcKey(self.tmp, "ec")
        self.start_stack(jwt_public_key="%s kid-ec" % key.public_pem)
        r = self.orchctl("token", "-o", self.orch, "-d", "d-1", "--alg", "ES256",
                         "--key", key.private_pem, "--kid", "kid-ec")
        tok = r.stdout.strip()
        self.assertEqual(tokens.decode_unverified(tok)[0],
                         {"alg": "ES256", "typ": "JWT", "kid": "kid-ec"})
        self.authed(token=tok, daemon="d-1")

    def test_token_usage_errors(self):
        self.start_stack()
        for args in (["token"], ["token", "-o", "x", "--ttl", "0"],
                     ["token", "-o", "x", "--bogus"], ["token", "-o", "x", "extra"]):
            r = self.orchctl(*args, expect=2)
            self.assertTrue(r.stderr.strip(), args)
        # RS256 without a key, and a config without a secret: failures, 1.
        self.orchctl("token", "-o", "x", "--alg", "RS256", expect=1)
        cfg = os.path.join(self.tmp, "nosecret.conf")
        with open(cfg, "w") as f:
            f.write("listen 127.0.0.1:1\n")
        r = subprocess.run([ORCHCTL_BIN, "-c", cfg, "token", "-o", "x"], capture_output=True,
                           text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("jwt_secret_file", r.stderr)


# ============================================================================


class PublishTest(OrchctlTestCase):

    def test_targeted_event_has_every_field(self):
        self.start_stack()
        a = self.connect(self.orch, daemon="d-a")
        other = self.connect("orch-other-" + uuid.uuid4().hex[:6], daemon="d-o")
        data = {"text": "hello", "n": [1, 2.5, {"x": None}]}
        ans = self.publish_cli("-t", "message.received", "-o", self.orch, "-g", self.org,
                               "-w", "ws-1", "-C", "chan-1", "-p", "7", "--ack",
                               "--data", json.dumps(data, indent=2),
                               "--timestamp", "2026-01-02T03:04:05.678Z")
        self.assertEqual(ans["receivers"], 1, ans)
        self.assertEqual(ans["channel"], "daemon:events")
        eid = ans["eventId"]
        self.assertEqual(len(eid), 36, ans)
        self.assertTrue(a.wait_ids([eid], 5), "event not delivered%s" % self.diag())
        e = a.event(eid)
        self.assertEqual(e["eventType"], "message.received")
        self.assertEqual(e["data"], data)
        self.assertIs(e["requiresAck"], True)
        self.assertEqual(e["priority"], 7)
        self.assertEqual(e["channelId"], "chan-1")
        self.assertEqual(e["occurredAt"], "2026-01-02T03:04:05.678Z")
        self.assertEqual(e["orchestratorId"], self.orch)
        self.assertEqual(e["organizationId"], self.org)
        self.assertEqual(e["workspaceId"], "ws-1")
        self.assertIsInstance(e["seq"], int)
        # requiresAck: queued until acked.
        self.assertIsNotNone(self.redis.command("ZSCORE", QUEUE_EVENTS + self.orch, eid))
        a.ack([eid])
        self.assertTrue(wait_for(lambda: self.redis.command(
            "ZSCORE", QUEUE_EVENTS + self.orch, eid) is None, 5))
        # Exactly: the other orchestrator got nothing.
        self.fence([a, other])
        self.assertEqual(other.ids(), [])

    def test_daemon_org_and_broadcast_targets(self):
        self.start_stack()
        org2 = "org-two-" + uuid.uuid4().hex[:6]
        b_orch = "orch-b-" + uuid.uuid4().hex[:6]
        d1 = self.connect(self.orch, daemon="d-1")
        d2 = self.connect(self.orch, daemon="d-2")
        b = self.connect(b_orch, daemon="d-b")
        c = self.connect("orch-c-" + uuid.uuid4().hex[:6], daemon="d-c", org=org2)
        everyone = [d1, d2, b, c]
        # One daemon of the orchestrator.
        e1 = self.publish_cli("-t", "vp.status", "-o", self.orch, "-d", "d-2",
                              "--data", '{"k":1}')["eventId"]
        # Every orchestrator of the organization (org channel and the global one).
        e2 = self.publish_cli("-t", "presence.update", "-g", self.org)["eventId"]
        e3 = self.publish_cli("-t", "presence.update", "-g", self.org,
                              "--org-channel")
        self.assertEqual(e3["channel"], "daemon:events:" + self.org)
        e3 = e3["eventId"]
        # Everyone.
        e4 = self.publish_cli("-t", "system.notice", "-i", "given-id-" + self.orch,
                              "-o", "*")["eventId"]
        self.assertEqual(e4, "given-id-" + self.orch)
        self.fence(everyone)
        self.assertEqual(d1.ids(), [e2, e3, e4])
        self.assertEqual(d2.ids(), [e1, e2, e3, e4])
        self.assertEqual(b.ids(), [e2, e3, e4])
        self.assertEqual(c.ids(), [e4])
        self.assertEqual(d2.event(e1)["data"], {"k": 1})
        self.assertEqual(d2.event(e1)["daemonId"], "d-2")
        self.assertEqual(d1.event(e2)["data"], {})
        self.assertIs(d1.event(e2)["requiresAck"], False)

    def test_data_file_and_people_output(self):
        self.start_stack()
        a = self.connect(self.orch)
        path = os.path.join(self.tmp, "data.json")
        with open(path, "w") as f:
            f.write('{"from": "file",\n "list": [1, 2]}\n')
        r = self.orchctl("publish", "-t", "message.sent", "-o", self.orch,
                         "--data-file", path)
        eid, n = r.stdout.split()[:2]
        self.assertEqual(n, "1", r.stdout)
        self.assertTrue(a.wait_ids([eid], 5))
        self.assertEqual(a.event(eid)["data"], {"from": "file", "list": [1, 2]})
        # stdin
        r = self.orchctl("--json", "publish", "-t", "message.sent", "-o", self.orch,
                         "--data-file", "-", input='{"stdin": true}')
        eid = json.loads(r.stdout)["eventId"]
        self.assertTrue(a.wait_ids([eid], 5))
        self.assertEqual(a.event(eid)["data"], {"stdin": True})

    def test_stream(self):
        self.start_stack(event_stream="on")
        a = self.connect(self.orch)
        ans = self.publish_cli("-t", "message.received", "-o", self.orch, "--stream")
        self.assertEqual(ans["stream"], "daemon:stream")
        self.assertRegex(ans["entryId"], r"^\d+-\d+$")
        self.assertTrue(a.wait_ids([ans["eventId"]], 5), self.diag())
        self.assertEqual(self.redis.command("XLEN", "daemon:stream"), 1)

    def test_sentinel_names_the_master(self):
        """With `redis sentinel ... master NAME`, publish asks the sentinel
        (a real redis-server --sentinel) for the master's address."""
        port = free_port()
        self.redis = start_redis(self, extra_args=["--port", str(port),
                                                   "--bind", "127.0.0.1"])
        s_port = free_port()
        s_dir = os.path.join(self.tmp, "sentinel")
        os.makedirs(s_dir)
        s_conf = os.path.join(s_dir, "sentinel.conf")
        with open(s_conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor mymaster 127.0.0.1 %d 1\n" % (s_port, s_dir, port))
        sentinel = subprocess.Popen(["redis-server", s_conf, "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)

        def stop_sentinel():
            sentinel.kill()
            sentinel.wait(5)
        self.addCleanup(stop_sentinel)
        # orchd on the unix socket; orchctl's config names the sentinel.
        self.start_stack(redis=False)
        cfg = dict(self.o.config)
        cfg["redis"] = "sentinel 127.0.0.1:%d master mymaster" % s_port
        conf = self.o.write_config(cfg, path=os.path.join(self.tmp, "sentinel-orchctl.conf"))
        a = self.connect(self.orch)

        def publish():
            return subprocess.run([ORCHCTL_BIN, "-c", conf, "--json", "publish", "-t",
                                   "message.received", "-o", self.orch],
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT)
        # The sentinel answers once it has loaded its config.
        r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(publish()), 10)
        self.assertTrue(r, "publish through the sentinel failed: %s" % publish().stderr)
        ans = json.loads(r.stdout)
        self.assertEqual(ans["receivers"], 1, ans)
        self.assertTrue(a.wait_ids([ans["eventId"]], 5), self.diag())
        # The sentinel gone: no master, a clear failure.
        stop_sentinel()
        r = publish()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("sentinel", r.stderr)

    def test_bad_records_are_refused_before_redis(self):
        self.start_stack()
        sub = self.redis.pubsub_listen(channel="daemon:events")
        bad = [
            ["-o", self.orch],                                  # no type
            ["-t", "message.*", "-o", self.orch],               # pattern type
            ["-t", "a.b", "--data", "[1]"],                     # not an object
            ["-t", "a.b", "--data", "{\"a\":"],                 # not JSON
            ["-t", "a.b", "-d", "d-only"],                      # daemon, no orch
            ["-t", "a.b", "-p", "101"],                         # priority range
            ["-t", "a.b", "--timestamp", "yesterday"],
            ["-t", "a.b", "-o", "x" * 64],                      # id over 63 bytes
            ["-t", "a.b", "--data", "{}", "--data-file", "/dev/null"],
            ["-t", "a.b", "--org-channel"],                     # needs -g
        ]
        for args in bad:
            r = self.orchctl("publish", *args, expect=2)
            self.assertTrue(r.stderr.startswith("orchctl: publish: "), (args, r.stderr))
        big = os.path.join(self.tmp, "big.json")
        with open(big, "w") as f:
            f.write('{"x": "%s"}' % ("a" * 70000))
        r = self.orchctl("publish", "-t", "a.b", "--data-file", big, expect=1)
        self.assertIn("over", r.stderr)
        # A good record behind them is the first and only one Redis saw.
        good = self.publish_cli("-t", "a.b")["eventId"]
        self.assertIsNotNone(sub.wait_message(5))
        msgs = sub.all()
        self.assertEqual(len(msgs), 1, "a refused record reached Redis: %s" % msgs)
        self.assertEqual(json.loads(msgs[0][1])["id"], good)

    def test_redis_down_and_redis_override(self):
        self.start_stack()
        # --redis overrides the config: a socket nobody listens on.
        r = self.orchctl("publish", "-t", "a.b", "--redis",
                         os.path.join(self.tmp, "nothing.sock"), expect=1)
        self.assertIn("redis", r.stderr)
        r = self.orchctl("publish", "-t", "a.b", "--redis", "bad:port:x", expect=1)
        # The config's own Redis, stopped.
        self.redis.stop()
        t0 = time.monotonic()
        r = self.orchctl("publish", "-t", "a.b", expect=1)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("redis", r.stderr)


# ============================================================================


class ListenTest(OrchctlTestCase):

    def test_listen_prints_and_acks_and_stops_after_count(self):
        self.start_stack(heartbeat_interval="2s")
        li = self.listen("-o", self.orch, "-d", "d-listen", "--count", "3")
        self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr() + self.diag())
        ids = []
        for i in range(3):
            ids.append(self.publish_cli("-t", "message.received", "-o", self.orch,
                                        "--ack", "--data", '{"i": %d}' % i)["eventId"])
        try:
            li.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("listen --count 3 still running: %s%s" % (li.stderr(), self.diag()))
        self.assertEqual(li.stop(), 0, li.stderr())
        evs = li.events()
        self.assertEqual([e["eventId"] for e in evs], ids)
        self.assertEqual([e["data"] for e in evs], [{"i": 0}, {"i": 1}, {"i": 2}])
        self.assertTrue(all(e["requiresAck"] for e in evs))
        # Acked: the queue is empty.
        self.assertTrue(wait_for(lambda: self.redis.command(
            "ZCARD", QUEUE_EVENTS + self.orch) == 0, 5),
            "still queued: %s" % self.redis.command("ZRANGE", QUEUE_EVENTS + self.orch, 0, -1))

    def test_listen_heartbeats_types_and_sigint(self):
        # Heartbeats every 2 s: without them orchd closes with 4007 after
        # 6 s, and listen would log a reconnect.
        self.start_stack(heartbeat_interval="2s")
        tokfile = os.path.join(self.tmp, "token")
        with open(tokfile, "w") as f:
            f.write(self.token(daemon="d-t", exp_in=600) + "\n")
        li = Listener(self, ["listen", "--url", "ws://127.0.0.1:%d/daemon/ws" % self.o.port,
                             "--token-file", tokfile, "--types", "vp.*,system.fence"])
        self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr())
        # An observation window (nothing to wait for): longer than orchd's
        # three-interval heartbeat timeout.
        time.sleep(7.0)
        e_msg = self.publish_cli("-t", "message.received", "-o", self.orch)["eventId"]
        e_vp = self.publish_cli("-t", "vp.status", "-o", self.orch)["eventId"]
        self.assertTrue(li.wait_ids([e_vp], 5), li.stderr())
        self.assertNotIn(e_msg, li.ids())
        self.assertEqual(li.stderr().count("authenticated"), 1, li.stderr())
        self.assertEqual(li.stop(signal.SIGINT), 0, li.stderr())

    def test_listen_dedupes_events_redelivered_after_a_worker_crash(self):
        """listen is stopped (SIGSTOP) while requiresAck events reach its
        socket, the workers are killed (-9), listen continues: it prints
        the buffered events, its acks go nowhere, and the replay after it
        reconnects sends the events again.  Each is printed once."""
        self.start_stack(queue_max_events=100000)
        li = self.listen("-o", self.orch, "-d", "d-dedupe")
        self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr() + self.diag())
        os.kill(li.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: li.proc.poll() is None and os.kill(li.proc.pid, signal.SIGCONT))
        ids = [self.publish_cli("-t", "message.received", "-o", self.orch, "--ack",
                                "--data", '{"i": %d}' % i)["eventId"] for i in range(20)]
        # Nothing to poll while listen is stopped: time for the events to
        # reach its socket buffer.
        time.sleep(1.0)
        workers = self.o.worker_pids()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        self.assertTrue(wait_for(lambda: not set(workers) & set(self.o.worker_pids())
                                 and len(self.o.worker_pids()) == 2, 10), self.diag())
        os.kill(li.proc.pid, signal.SIGCONT)
        self.assertTrue(li.wait_ids(ids, 30), "missing %s\n%s%s"
                        % (set(ids) - set(li.ids()), li.stderr(), self.diag()))
        self.assertTrue(li.wait_stderr("authenticated", 10))
        got = li.ids()
        self.assertEqual(sorted(set(got)), sorted(ids))
        self.assertEqual(len(got), len(ids), "printed twice: %s" % sorted(
            e for e in set(got) if got.count(e) > 1))
        self.assertTrue(wait_for(lambda: self.redis.command(
            "ZCARD", QUEUE_EVENTS + self.orch) == 0, 10),
            "still queued: %s" % self.redis.command("ZRANGE", QUEUE_EVENTS + self.orch, 0, -1))
        self.assertEqual(li.stop(), 0)
        self.note("listen stderr:\n%s", li.stderr())

    def test_listen_over_tls(self):
        self.start_stack()
        crt = os.path.join(self.tmp, "server.crt")
        key = os.path.join(self.tmp, "server.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-days", "1", "-keyout", key, "-out", crt],
                       check=True, capture_output=True, timeout=RUN_TIMEOUT)
        os.chmod(key, 0o644)
        tls_port = free_port()
        cfg = dict(self.o.config)
        cfg["listen"] = ["127.0.0.1:%d" % self.o.port, "127.0.0.1:%d tls" % tls_port]
        cfg["tls_certificate"] = crt
        cfg["tls_certificate_key"] = key
        self.o.stop()
        self.o.proc = self.o.pid = None
        self.o.write_config(cfg)
        self.o.start()
        self.wait_relay()
        url = "wss://localhost:%d/daemon/ws" % tls_port
        good = self.listen("--url", url, "--cafile", crt, "-o", self.orch, "-d", "d-tls")
        by_ip = self.listen("--url", "wss://127.0.0.1:%d/daemon/ws" % tls_port, "--cafile",
                            crt, "-o", self.orch, "-d", "d-tls-ip")
        # Without the CA the certificate is refused: no session, retries.
        bad = self.listen("--url", url, "-o", self.orch, "-d", "d-untrusted")
        for li in (good, by_ip):
            self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr() + self.diag())
        eid = self.publish_cli("-t", "message.received", "-o", self.orch, "--ack")["eventId"]
        self.assertTrue(good.wait_ids([eid], 10), good.stderr())
        self.assertTrue(by_ip.wait_ids([eid], 10), by_ip.stderr())
        self.assertTrue(bad.wait_stderr("TLS handshake", 10), bad.stderr())
        self.assertNotIn("authenticated", bad.stderr())
        self.assertEqual(bad.ids(), [])
        self.assertEqual(bad.stop(), 0)
        self.assertEqual(good.stop(), 0)

    def test_listen_refreshes_a_minted_token_in_place(self):
        """A token minted from the config (token_lifetime 3s, no leeway) is
        replaced on the live connection before it expires: no 4003, no
        reconnect, events keep coming."""
        self.start_stack(token_lifetime="3s", jwt_leeway="0s")
        li = self.listen("-o", self.orch, "-d", "d-refresh")
        self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr() + self.diag())
        self.assertTrue(wait_for(lambda: li.stderr().count("token refreshed") >= 3, 15),
                        li.stderr() + self.diag())
        eid = self.publish_cli("-t", "message.received", "-o", self.orch, "--ack")["eventId"]
        self.assertTrue(li.wait_ids([eid], 5), li.stderr())
        err = li.stderr()
        self.assertEqual(err.count("connected to"), 1, err)
        self.assertNotIn("4003", err)
        self.assertEqual(li.stop(), 0)

    def test_listen_stops_on_a_refused_token(self):
        self.start_stack()
        li = Listener(self, ["listen", "--url", "ws://127.0.0.1:%d/daemon/ws" % self.o.port,
                             "--token", "not.a.token", "-o", self.orch])
        try:
            li.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("listen with a bad token keeps running: %s" % li.stderr())
        self.assertEqual(li.stop(), 1)
        self.assertIn("AUTH_FAILED", li.stderr())

    def test_listen_survives_orchd_and_redis_restarts_without_losing_ack_events(self):
        """A numbered series of requiresAck events, published with orchctl
        publish every 50 ms while orchd is stopped and started, then
        redis-server is stopped and started (append-only file, so the
        durable queue survives as Redis persistence promises), then orchd is
        killed with SIGKILL and started (nothing published around that
        moment: pub/sub loses what a killed relay had read): every event
        Redis handed to the relay is printed at least once and none twice,
        and all end up acked."""
        self.start_stack(redis_args=["--appendonly", "yes", "--appendfsync", "always"],
                         drain_timeout="2s", drain_reconnect_delay="500ms",
                         heartbeat_interval="5s", redis_timeout="1s",
                         relay_canary_interval="1s", queue_max_events=100000)
        li = self.listen("-o", self.orch, "-d", "d-survivor")
        self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr() + self.diag())
        sent = []          # ids PUBLISHed to at least one subscriber (the relay)
        stop = threading.Event()

        pause = threading.Event()      # set: the publisher holds off
        idle = threading.Event()       # set by the publisher while held off

        def publisher():
            i = 0
            while not stop.is_set():
                if pause.is_set():
                    idle.set()
                    stop.wait(0.02)
                    continue
                idle.clear()
                eid = "n%05d-%s" % (i, self.orch)
                r = subprocess.run([ORCHCTL_BIN, "-c", self.o.conf_path, "--json", "publish",
                                    "-t", "message.received", "-o", self.orch, "--ack",
                                    "-i", eid, "--data", '{"n": %d}' % i],
                                   capture_output=True, text=True, timeout=RUN_TIMEOUT)
                if r.returncode == 0 and json.loads(r.stdout)["receivers"] > 0:
                    sent.append(eid)
                i += 1
                stop.wait(0.05)
        th = threading.Thread(target=publisher, daemon=True)
        th.start()
        self.addCleanup(lambda: (stop.set(), th.join(RUN_TIMEOUT)))

        def progress(n, timeout=20):
            return wait_for(lambda: len(sent) >= n and li.wait_ids(sent[:n], 0.01), timeout)

        self.assertTrue(progress(10), "no progress before the restarts: %s" % li.stderr())

        def restart_orchd(kill):
            # kill: SIGKILL of the whole tree (no reconnect message, acks
            # in flight lost); else a graceful stop (reconnect, then 1001).
            if kill:
                # Pub/sub is at-most-once: a record the relay has read but
                # not yet queued dies with it.  So nothing is published
                # around the kill; what was is printed first (its acks may
                # still be in flight and get lost: the replay sends those
                # events again).
                pause.set()
                self.assertTrue(wait_for(idle.is_set, RUN_TIMEOUT))
                self.assertTrue(progress(len(sent)), li.stderr())
                # Children first: a worker that saw its supervisor die
                # would drain gracefully before its own SIGKILL.
                for pid in reversed(kill_tree_pids(self.o.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            self.o.stop()
            time.sleep(1.0)
            self.o.proc = self.o.pid = None
            self.o.start()
            self.wait_relay(timeout=15)
            pause.clear()

        steps = [("orchd stop/start", lambda: restart_orchd(False)),
                 ("redis-server stop/start", lambda: (self.redis.stop(), time.sleep(1.0),
                                                      self.redis.start(),
                                                      self.wait_relay(timeout=15))),
                 ("orchd kill -9/start", lambda: restart_orchd(True))]
        for name, step in steps:
            step()
            n = len(sent)
            self.assertTrue(progress(n + 10, 90), "no progress after the %s: %s%s"
                            % (name, li.stderr(), self.diag()))
        stop.set()
        th.join(RUN_TIMEOUT)
        want = list(sent)
        ok = li.wait_ids(want, 30)
        got = li.ids()
        missing = [e for e in want if e not in set(got)]
        self.assertTrue(ok, "%d of %d events never printed, e.g. %s\nlisten stderr:\n%s%s"
                        % (len(missing), len(want), missing[:5], li.stderr(), self.diag()))
        dups = sorted(e for e in set(got) if got.count(e) > 1)
        self.assertEqual(dups, [], "printed twice")
        # Every one acked in the end.
        self.assertTrue(wait_for(lambda: self.redis.command(
            "ZCARD", QUEUE_EVENTS + self.orch) == 0, 20),
            "still queued: %s" % self.redis.command("ZRANGE", QUEUE_EVENTS + self.orch, 0, -1))
        self.assertEqual(li.stop(), 0)
        err = li.stderr()
        self.assertGreaterEqual(err.count("authenticated"), 3, err)
        self.assertIn("reconnecting in", err)
        self.note("%d events, %d sessions; listen stderr:\n%s", len(want),
                  err.count("authenticated"), err)


# ============================================================================


class AdminCommandsTest(OrchctlTestCase):

    def start_admin(self, **kw):
        self.sock = os.path.join(self.tmp, "admin.sock")
        self.start_stack(admin_socket=self.sock, **kw)
        self.assertTrue(wait_for(lambda: os.path.exists(self.sock), 5),
                        "no admin socket%s" % self.diag())

    def test_status(self):
        self.start_admin()
        self.connect(self.orch)
        r = self.orchctl("status")
        self.assertIn("connections", r.stdout)
        self.assertIn("relay", r.stdout)
        self.assertIn("database", r.stdout)
        self.assertIn("SLOT", r.stdout)
        doc = json.loads(self.orchctl("--json", "status").stdout)
        self.assertIs(doc["ok"], True)
        st = doc["stats"]
        self.assertEqual(len(st["workers"]), 2, st)
        self.assertGreaterEqual(st["connections"]["authenticated"], 1, st)
        # -s names the socket without the config.
        r = self.orchctl("-s", self.sock, "status", conf=False)
        self.assertIn("relay", r.stdout)
        r = self.orchctl("-s", os.path.join(self.tmp, "none.sock"), "status", conf=False,
                         expect=1)
        self.assertIn("connect", r.stderr)

    def test_connections_filters_and_kick(self):
        self.start_admin()
        other = "orch-x-" + uuid.uuid4().hex[:6]
        a1 = self.connect(self.orch, daemon="d-1")
        a2 = self.connect(self.orch, daemon="d-2")
        x = self.connect(other, daemon="d-x")
        doc = json.loads(self.orchctl("--json", "connections", "-o", self.orch).stdout)
        self.assertEqual(doc["total"], 2, doc)
        self.assertEqual(sorted(c["daemon"] for c in doc["connections"]), ["d-1", "d-2"])
        for c in doc["connections"]:
            self.assertEqual(c["orchestrator"], self.orch)
            self.assertEqual(c["organization"], self.org)
            self.assertRegex(c["id"], r"^\d+:\d+$")
        r = self.orchctl("connections", "-o", self.orch)
        self.assertIn("d-1", r.stdout)
        self.assertIn("2 shown", r.stdout)
        doc = json.loads(self.orchctl("--json", "connections", "-n", "1").stdout)
        self.assertEqual(len(doc["connections"]), 1, doc)
        # kick one daemon: 4006 for it only.
        r = self.orchctl("kick", "-o", self.orch, "-d", "d-2", "-r", "test")
        self.assertIn("1 connection", r.stdout)
        self.assertEqual(a2.pc.ws.expect_close(timeout=5)[0], 4006)
        # kick by connection id
        cid = json.loads(self.orchctl("--json", "connections", "-o", other).stdout)[
            "connections"][0]["id"]
        self.orchctl("kick", "-i", cid)
        self.assertEqual(x.pc.ws.expect_close(timeout=5)[0], 4006)
        self.assertTrue(a1.quiet(0.5))
        self.orchctl("kick", expect=2)
        self.orchctl("kick", "-d", "d-1", expect=2)

    def test_revoke_closes_and_refuses_the_token(self):
        self.start_admin()
        tok = self.token(daemon="d-r", jti="jti-" + self.orch)
        c, _ = self.authed(token=tok, daemon="d-r")
        r = self.orchctl("revoke", "jti-" + self.orch)
        self.assertIn("revoked", r.stdout)
        code, _ = c.ws.expect_close(timeout=5)
        self.assertEqual(code, 4006)
        self.assertTrue(self.redis.command("SISMEMBER", "daemon:tokens:revoked",
                                           "jti-" + self.orch))
        self.auth_fails(tok, "TOKEN_REVOKED", daemon="d-r")
        self.orchctl("revoke", expect=2)
        # A refusal by the server is a failure with its reason.
        r = self.orchctl("revoke", "-t", "60", "x", expect=None)
        if r.returncode != 0:
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertTrue(r.stderr.startswith("orchctl: revoke: "), r.stderr)

    def test_loglevel_and_drain(self):
        self.start_admin()
        self.assertEqual(self.orchctl("loglevel").stdout.strip(), "debug")
        self.assertEqual(self.orchctl("loglevel", "warn").stdout.strip(), "warn")
        self.assertEqual(self.orchctl("loglevel").stdout.strip(), "warn")
        self.orchctl("loglevel", "loud", expect=2)
        before = json.loads(self.orchctl("--json", "status").stdout)["stats"]["workers"]
        pid0 = [w["pid"] for w in before if w["slot"] == 0][0]
        c = self.connect(self.orch)
        doc = json.loads(self.orchctl("--json", "drain", "0").stdout)
        self.assertIn("pid", doc)

        def replaced():
            ws = json.loads(self.orchctl("--json", "status").stdout)["stats"]["workers"]
            return [w["pid"] for w in ws if w["slot"] == 0] not in ([pid0], [])
        self.assertTrue(wait_for(replaced, 15), "worker 0 not replaced%s" % self.diag())
        self.orchctl("drain", "x", expect=2)
        self.orchctl("drain", "63", expect=1)
        del c

    def test_listen_stops_when_kicked(self):
        self.start_admin()
        li = self.listen("-o", self.orch, "-d", "d-kicked")
        self.assertTrue(li.wait_stderr("authenticated", 10), li.stderr())
        self.orchctl("kick", "-o", self.orch)
        try:
            li.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("listen reconnected after a kick: %s" % li.stderr())
        self.assertEqual(li.stop(), 1)
        self.assertIn("4006", li.stderr())


if __name__ == "__main__":
    unittest.main()
