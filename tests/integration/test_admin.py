"""The admin unix socket (admin_socket; orchd.8, ADMIN SOCKET) end to end:
the real orchd (2 workers and its relay), a private redis-server
(redisfix), real WebSocket daemons (wsclient), and a client on the unix
socket written here.

Every command's effect is checked where it shows: kicked and revoked
daemons get close 4006 while the others stay (checked with a fence event
they must still receive); a revoked token is refused at the next auth; a
published event reaches a daemon; debug lines come and go in the log file;
a drained worker's daemons get `reconnect` then a close, its pid changes
and the new worker accepts.  Also: the connections listing and its
filters, bad requests (ok:false, the connection stays usable), a line too
long, the client bound, the socket's mode, a second orchd refused on the
same socket, a stale socket file replaced, the file removed on stop, and
`orchd -t` checks.

Every wait is bounded.  Run:

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_admin -v
"""

import json
import os
import signal
import socket
import stat
import time
import unittest
import uuid

from harness import proc_alive, read_file, wait_for
from test_events import EventTestCase, record
from wsclient import CloseReceived, ConnectionClosed

LINE_MAX = 64 * 1024
MAX_CLIENTS = 16


class AdminClient:
    """One connection to the admin socket: JSON lines out and in."""

    def __init__(self, path, timeout=5.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def send(self, obj):
        self.send_raw(json.dumps(obj) + "\n")

    def recv(self, timeout=10.0):
        """One reply line, parsed; None if the server closed first."""
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.decode())

    def request(self, obj, timeout=10.0):
        self.send(obj)
        return self.recv(timeout)

    def closed_by_server(self, timeout=5.0):
        """True once the server has closed (EOF), after any pending data."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True  # closed with our unread request bytes in it
        except (socket.timeout, OSError):
            return False


class AdminTestCase(EventTestCase):

    def setUp(self):
        super().setUp()
        self.sock = os.path.join(self.tmp, "orchd.sock")

    def start_admin(self, **overrides):
        cfg = {"admin_socket": self.sock}
        cfg.update(overrides)
        return self.start_stack(**cfg)

    def admin(self):
        a = AdminClient(self.sock)
        self.addCleanup(a.close)
        return a

    def ok(self, a, req, timeout=10.0):
        r = a.request(req, timeout)
        self.assertIsNotNone(r, "admin socket closed on %s%s" % (req, self.diag()))
        self.assertIs(r.get("ok"), True, "%s -> %s%s" % (req, r, self.diag()))
        return r

    def fails(self, a, req, contains=None):
        r = a.request(req) if not isinstance(req, (bytes, str)) else (
            a.send_raw(req), a.recv())[1]
        self.assertIsNotNone(r, "admin socket closed on %r" % (req,))
        self.assertIs(r.get("ok"), False, "%r -> %s" % (req, r))
        self.assertIsInstance(r.get("error"), str, r)
        if contains:
            self.assertIn(contains, r["error"], r)
        return r

    def wait_close(self, c, timeout=5.0):
        """The close code c gets (reading and recording messages before it)."""
        try:
            c.read_until(lambda m: False, timeout)
        except CloseReceived as e:
            return e.code
        except ConnectionClosed as e:
            self.fail("%r: TCP closed without a close frame: %s" % (c, e))
        self.fail("%r: not closed within %.1fs%s" % (c, timeout, self.diag()))

    def conn_id(self, a, c):
        """The admin connection id of EvClient c (orchestrator + daemon)."""
        r = self.ok(a, {"cmd": "connections", "orchestrator": c.orch})
        ids = [x["id"] for x in r["connections"] if x["daemon"] == c.daemon]
        self.assertEqual(len(ids), 1, "connections of %s: %s" % (c.daemon, r))
        return ids[0]

    def status(self, a):
        return self.ok(a, {"cmd": "status"})["stats"]


class KickTest(AdminTestCase):

    def test_kick_by_orchestrator_daemon_and_connection(self):
        self.start_admin()
        a = self.admin()
        orch_a, orch_b = "orch-a-" + uuid.uuid4().hex[:6], "orch-b-" + uuid.uuid4().hex[:6]
        a1 = self.connect(orch_a, name="a1")
        a2 = self.connect(orch_a, name="a2")
        a3 = self.connect(orch_a, name="a3")
        b1 = self.connect(orch_b, name="b1")

        # daemon (with its orchestrator): only that one.
        r = self.ok(a, {"cmd": "kick", "orchestrator": orch_a, "daemon": a1.daemon})
        self.assertEqual(r["matched"], 1, r)
        self.assertEqual(self.wait_close(a1), 4006)
        self.fence([a2, a3, b1])

        # connection id "<worker>:<conn_id>", with a reason.
        cid = self.conn_id(a, a2)
        r = self.ok(a, {"cmd": "kick", "connection": cid, "reason": "bye now"})
        self.assertEqual(r["matched"], 1, r)
        try:
            a2.read_until(lambda m: False, 5.0)
            self.fail("a2 not closed")
        except CloseReceived as e:
            self.assertEqual((e.code, e.reason), (4006, b"bye now"))
        self.fence([a3, b1])

        # orchestrator: every connection of it, none of the other.
        a4 = self.connect(orch_a, name="a4")
        r = self.ok(a, {"cmd": "kick", "orchestrator": orch_a})
        self.assertEqual(r["matched"], 2, r)
        self.assertEqual(self.wait_close(a3), 4006)
        self.assertEqual(self.wait_close(a4), 4006)
        self.fence([b1])
        # The registry lets go of them.
        self.assertTrue(wait_for(lambda: self.ok(a, {"cmd": "connections",
                                                     "orchestrator": orch_a})["total"] == 0,
                                 5.0), "kicked connections still listed")
        # Nothing matches: 0, and b1 is still there.
        r = self.ok(a, {"cmd": "kick", "orchestrator": "nobody-" + uuid.uuid4().hex[:6]})
        self.assertEqual(r["matched"], 0, r)
        r = self.ok(a, {"cmd": "kick", "connection": "0:12345"})
        self.assertEqual(r["matched"], 0, r)
        self.fence([b1])


class ConnectionsTest(AdminTestCase):

    def test_listing_and_filters(self):
        self.start_admin()
        a = self.admin()
        org2 = "org2-" + uuid.uuid4().hex[:6]
        orch_a, orch_b = "orch-a-" + uuid.uuid4().hex[:6], "orch-b-" + uuid.uuid4().hex[:6]
        clients, by_worker = self.connect_spread(orch_a, 3)
        b1 = self.connect(orch_b, org=org2, name="b1")
        t0 = int(time.time() * 1000)

        r = self.ok(a, {"cmd": "connections"})
        self.assertEqual(r["total"], len(clients) + 1, r)
        self.assertIs(r["truncated"], False, r)
        for x in r["connections"]:
            for f in ("id", "worker", "pid", "orchestrator", "daemon", "organization",
                      "state", "connected_ms", "last_seen_ms"):
                self.assertIn(f, x)
            self.assertEqual(x["id"].split(":")[0], str(x["worker"]), x)
            self.assertEqual(x["state"], "active", x)
            self.assertTrue(proc_alive(x["pid"]), x)
            self.assertLessEqual(x["connected_ms"], t0 + 1000, x)
            self.assertGreater(x["connected_ms"], t0 - 120000, x)
        self.assertEqual(len({x["id"] for x in r["connections"]}), len(r["connections"]))

        r = self.ok(a, {"cmd": "connections", "orchestrator": orch_a})
        self.assertEqual(sorted(x["daemon"] for x in r["connections"]),
                         sorted(c.daemon for c in clients))
        r = self.ok(a, {"cmd": "connections", "organization": org2})
        self.assertEqual([x["daemon"] for x in r["connections"]], [b1.daemon])
        for w, cs in by_worker.items():
            r = self.ok(a, {"cmd": "connections", "orchestrator": orch_a, "worker": int(w)})
            self.assertEqual(sorted(x["daemon"] for x in r["connections"]),
                             sorted(c.daemon for c in cs), "worker %s" % w)
        r = self.ok(a, {"cmd": "connections", "limit": 1})
        self.assertEqual((r["total"], len(r["connections"]), r["truncated"]),
                         (len(clients) + 1, 1, True), r)
        r = self.ok(a, {"cmd": "connections", "orchestrator": "none-" + uuid.uuid4().hex})
        self.assertEqual((r["total"], r["connections"], r["truncated"]), (0, [], False))

    def test_status(self):
        self.start_admin()
        a = self.admin()
        clients, _ = self.connect_spread(self.orch, 2)
        st = self.status(a)
        self.assertEqual(st["connections"]["authenticated"], len(clients), st)
        self.assertGreaterEqual(st["connections"]["open"], len(clients), st)
        self.assertEqual(st["connections"]["orchestrators"], 1, st)
        self.assertEqual(len(st["workers"]), 2, st)
        self.assertEqual(sorted(w["pid"] for w in st["workers"]),
                         sorted(self.o.worker_pids()), st)
        self.assertEqual(sum(w["authenticated"] for w in st["workers"]), len(clients), st)
        self.assertEqual(st["relay"]["redis"], "up", st)
        self.assertEqual(st["relay"]["pid"], self.relay_stats()["pid"], st)
        self.assertIsInstance(st["version"], str)


class RevokeTest(AdminTestCase):

    def test_revoke_closes_live_and_refuses_new(self):
        self.start_admin()
        a = self.admin()
        jti = "jti-" + uuid.uuid4().hex
        tok = self.token(jti=jti, exp_in=3600)
        victim = self.connect(self.orch, token=tok, name="victim")
        other = self.connect(self.orch, name="other")
        r = self.ok(a, {"cmd": "revoke", "jti": jti})
        self.assertIs(r["added"], True, r)
        self.assertEqual(r["closed"], 2, r)  # workers told
        self.assertEqual(self.wait_close(victim), 4006)
        self.fence([other])
        self.assertEqual(self.redis.command("SISMEMBER", "daemon:tokens:revoked", jti), 1)
        # A new auth with the token is refused.
        self.auth_fails(tok, "TOKEN_REVOKED")
        # Again: already there.
        r = self.ok(a, {"cmd": "revoke", "jti": jti})
        self.assertIs(r["added"], False, r)
        self.fails(a, {"cmd": "revoke", "jti": jti, "ttl": 60}, "ttl")
        self.fails(a, {"cmd": "revoke"}, "jti")

    def test_revoke_without_redis_fails_cleanly(self):
        self.start_admin()
        a = self.admin()
        self.redis.stop()
        r = wait_for(lambda: (lambda x: x if x and x.get("ok") is False else None)(
            a.request({"cmd": "revoke", "jti": "j-1"})), 15.0, 0.2)
        self.assertTrue(r, "revoke did not fail with Redis down")
        self.assertIn("Redis", r["error"])
        self.ok(a, {"cmd": "status"})


class PublishTest(AdminTestCase):

    def test_publish_reaches_a_daemon(self):
        self.start_admin()
        a = self.admin()
        c = self.connect(self.orch)
        rec = record("message.received", self.orch, payload={"hello": "admin"})
        r = self.ok(a, {"cmd": "publish", "event": rec})
        self.assertGreaterEqual(r["receivers"], 1, r)
        self.assertTrue(c.wait_ids([rec["id"]], 5.0), "event not received%s" % self.diag())
        self.assertEqual(c.event(rec["id"])["data"], {"hello": "admin"})

    def test_bad_record_is_refused(self):
        self.start_admin()
        a = self.admin()
        received = self.relay_stats()["received"]
        self.fails(a, {"cmd": "publish", "event": {"type": "x.y", "payload": {}}}, "id")
        self.fails(a, {"cmd": "publish", "event": {"id": "e1", "type": "x.y"}}, "payload")
        self.fails(a, {"cmd": "publish", "event": "text"}, "event")
        self.fails(a, {"cmd": "publish"}, "event")
        # Nothing went to Redis.
        self.assertEqual(self.relay_stats()["received"], received)


class LogLevelTest(AdminTestCase):

    def test_debug_on_and_off_and_reload_resets(self):
        self.start_admin(log_level="info")
        a = self.admin()
        c = self.connect(self.orch)
        self.assertEqual(self.ok(a, {"cmd": "loglevel"})["level"], "info")
        rec = record("message.received", self.orch)
        self.publish(rec)
        self.assertTrue(c.wait_ids([rec["id"]]))
        self.assertNotIn(rec["id"], self.o.log_text())

        self.assertEqual(self.ok(a, {"cmd": "loglevel", "level": "debug"})["level"], "debug")
        rec = record("message.received", self.orch)
        self.publish(rec)
        self.assertTrue(c.wait_ids([rec["id"]]))
        # The relay routes it and the worker delivers it, both at debug.
        self.assertTrue(self.o.wait_log(r"route: event %s" % rec["id"], 5.0),
                        "no relay debug line%s" % self.diag())
        self.assertTrue(self.o.wait_log(r"deliver: event %s" % rec["id"], 5.0),
                        "no worker debug line%s" % self.diag())
        self.assertEqual(self.ok(a, {"cmd": "loglevel"})["level"], "debug")

        self.assertEqual(self.ok(a, {"cmd": "loglevel", "level": "info"})["level"], "info")
        rec = record("message.received", self.orch)
        self.publish(rec)
        self.assertTrue(c.wait_ids([rec["id"]]))
        self.fence([c])
        self.assertNotIn(rec["id"], self.o.log_text())

        # Reload: back to the configuration's level.
        self.ok(a, {"cmd": "loglevel", "level": "debug"})
        self.o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.ok(a, {"cmd": "loglevel"})["level"] == "info",
                                 5.0), "the level did not go back to info on reload")
        self.fails(a, {"cmd": "loglevel", "level": "loud"}, "level")


class DrainTest(AdminTestCase):

    def test_drain_one_worker(self):
        self.start_admin(drain_timeout="2s", drain_reconnect_delay="1s")
        a = self.admin()
        clients, by_worker = self.connect_spread(self.orch, 2)
        st = self.status(a)
        pids = {w["slot"]: w["pid"] for w in st["workers"]}
        slot = int(sorted(by_worker)[0])
        mine, others = by_worker[sorted(by_worker)[0]], by_worker[sorted(by_worker)[1]]
        r = self.ok(a, {"cmd": "drain", "worker": slot})
        self.assertEqual(r["pid"], pids[slot], r)
        # The supervisor heard it from the relay and starts the successor
        # while the old worker drains.
        self.assertTrue(self.o.wait_log(r"worker %d \(pid %d\) drains on an operator's "
                                        r"request; starting its successor"
                                        % (slot, pids[slot]), 5.0),
                        "the supervisor was not told%s" % self.diag())
        for c in mine:
            msg = c.read_until(lambda m: m["type"] == "reconnect", 3.0)
            self.assertIsNotNone(msg, "%r: no reconnect%s" % (c, self.diag()))
            self.assertEqual(msg["payload"].get("reason"), "drain", msg)
            self.assertIn(self.wait_close(c, 4.0), (1001,))
        # The other worker's daemons stay.
        self.fence(others)
        # A new worker in the slot, and the old one gone.
        new = wait_for(lambda: (lambda p: p if p and p != pids[slot] and proc_alive(p)
                                else None)(
            {w["slot"]: w["pid"] for w in self.status(a)["workers"]}[slot]), 10.0)
        self.assertTrue(new, "no new worker in slot %d%s" % (slot, self.diag()))
        self.assertTrue(wait_for(lambda: not proc_alive(pids[slot]), 10.0),
                        "the drained worker did not exit")
        self.assertIn(new, self.o.worker_pids())
        # It accepts: connections land on it again.
        _, by_worker = self.connect_spread(self.orch, 2)
        self.assertIn(str(slot), [str(w) for w in by_worker])
        # Started at once, not after a back-off.
        self.assertNotRegex(self.o.log_text(), r"respawning worker %d in" % slot)
        self.fails(a, {"cmd": "drain", "worker": 7}, "no worker")
        self.fails(a, {"cmd": "drain"}, "worker")


class ProtocolTest(AdminTestCase):

    def test_bad_requests_keep_the_connection(self):
        self.start_admin()
        a = self.admin()
        self.fails(a, "not json\n", "JSON")
        self.fails(a, "[1,2]\n", "JSON")
        self.fails(a, {"cmd": "frobnicate"}, "unknown cmd")
        self.fails(a, {"nocmd": 1}, "cmd")
        self.fails(a, {"cmd": "kick"}, "needs")
        self.fails(a, {"cmd": "kick", "daemon": "d1"}, "orchestrator")
        self.fails(a, {"cmd": "kick", "orchestrator": "o", "deamon": "d"}, "unknown field")
        self.fails(a, {"cmd": "kick", "connection": "x:1"}, "connection")
        self.fails(a, {"cmd": "kick", "orchestrator": "o" * 64}, "orchestrator")
        self.fails(a, {"cmd": "connections", "limit": 0}, "limit")
        self.fails(a, {"cmd": "connections", "limit": 100001}, "limit")
        self.fails(a, {"cmd": "connections", "worker": "1"}, "worker")
        self.fails(a, {"cmd": "status", "cmd2": 1}, "unknown field")
        # Still usable; blank lines are skipped; pipelined requests are
        # answered in order.
        a.send_raw("\n\r\n" + json.dumps({"cmd": "connections"}) + "\n" +
                   json.dumps({"cmd": "loglevel"}) + "\n" +
                   json.dumps({"cmd": "bogus"}) + "\r\n" + json.dumps({"cmd": "status"}) + "\n")
        r0, r1, r2, r3 = a.recv(), a.recv(), a.recv(), a.recv()
        self.assertEqual((r0.get("ok"), r0.get("total")), (True, 0), r0)
        self.assertEqual(r1.get("level"), "debug", r1)
        self.assertIs(r2.get("ok"), False, r2)
        self.assertIn("stats", r3)
        # A last request without a newline is answered at EOF.
        b = self.admin()
        b.send_raw(json.dumps({"cmd": "loglevel"}))
        b.s.shutdown(socket.SHUT_WR)
        self.assertIs(b.recv().get("ok"), True)
        self.assertTrue(b.closed_by_server())

    def test_line_too_long(self):
        self.start_admin()
        a = self.admin()
        a.send_raw(b'{"cmd":"status","x":"' + b"y" * LINE_MAX)
        r = a.recv()
        self.assertEqual(r, {"ok": False, "error": "line too long"})
        self.assertTrue(a.closed_by_server(), "not closed after a line too long")
        # Exactly LINE_MAX bytes is fine (and a bad field).
        b = self.admin()
        line = '{"cmd":"status","x":"%s"}'
        line = line % ("y" * (LINE_MAX - len(line) + 2))
        self.assertEqual(len(line), LINE_MAX)
        self.fails(b, line + "\n", "unknown field")
        self.ok(b, {"cmd": "status"})

    def test_client_bound(self):
        self.start_admin()
        clients = [self.admin() for _ in range(MAX_CLIENTS)]
        for c in clients:
            self.ok(c, {"cmd": "loglevel"})
        extra = self.admin()
        r = extra.recv()
        self.assertEqual(r, {"ok": False, "error": "too many admin clients"})
        self.assertTrue(extra.closed_by_server())
        clients[0].close()
        # A slot is free again once the server has seen the close.
        def fresh():
            c = AdminClient(self.sock)
            try:
                return c.request({"cmd": "loglevel"}).get("ok") is True
            finally:
                c.close()
        self.assertTrue(wait_for(fresh, 5.0))

    def test_client_that_does_not_read_does_not_stall_the_relay(self):
        self.start_admin()
        c = self.connect(self.orch)
        hog = self.admin()
        hog.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Many status requests, never read: the relay stops reading us.
        try:
            hog.s.settimeout(2.0)
            for _ in range(2000):
                hog.send_raw((json.dumps({"cmd": "status"}) + "\n") * 10)
        except (socket.timeout, BlockingIOError):
            pass
        # Events still flow and other admin clients are served.
        self.fence([c])
        self.ok(self.admin(), {"cmd": "status"})


class SocketFileTest(AdminTestCase):

    def test_mode_refusal_stale_and_removal(self):
        self.start_admin()
        st = os.lstat(self.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.ok(self.admin(), {"cmd": "status"})

        # A second orchd on the same socket refuses to start.
        o2 = self.new_orchd(subdir="second")
        cfg = o2.default_config(admin_socket=self.sock, redis=self.redis.url,
                                jwt_secret_file=self.secret_path)
        o2.write_config(cfg)
        o2.start(wait=False)
        code = o2.wait_exit(10.0)
        self.assertNotEqual(code, 0)
        self.assertIn("another orchd answers on %s" % self.sock,
                      read_file(o2.stderr_path) + o2.log_text())
        self.ok(self.admin(), {"cmd": "status"})

        # Stop removes the file.
        self.o.stop()
        self.assertFalse(os.path.exists(self.sock), "socket file left after stop")

        # A stale socket file (nobody listening) is replaced.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.sock)
        s.close()
        o3 = self.start_orchd(subdir="third", overrides={
            "admin_socket": self.sock + " 0660", "redis": self.redis.url,
            "jwt_secret_file": self.secret_path})
        st = os.lstat(self.sock)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.ok(self.admin(), {"cmd": "status"})
        o3.stop()

    def test_reload_moves_the_socket(self):
        self.start_admin()
        a = self.admin()
        moved = os.path.join(self.tmp, "moved.sock")
        cfg = dict(self.o.config)
        cfg["admin_socket"] = moved + " 0640"
        self.o.write_config(cfg)
        self.o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: os.path.exists(moved) and
                                 not os.path.exists(self.sock), 5.0),
                        "socket not moved on reload%s" % self.diag())
        self.assertEqual(stat.S_IMODE(os.lstat(moved).st_mode), 0o640)
        self.ok(a, {"cmd": "status"})  # connected clients stay
        b = AdminClient(moved)
        self.addCleanup(b.close)
        self.assertTrue(wait_for(lambda: b.request({"cmd": "status"}).get("ok"), 5.0))
        # Only the mode: chmod in place.
        cfg["admin_socket"] = moved + " 0600"
        self.o.write_config(cfg)
        self.o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: stat.S_IMODE(os.lstat(moved).st_mode) == 0o600, 5.0))
        # Removed from the configuration: the file goes, nobody answers.
        del cfg["admin_socket"]
        self.o.write_config(cfg)
        self.o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: not os.path.exists(moved), 5.0),
                        "socket left after admin_socket was removed%s" % self.diag())
        self.wait_relay()
        self.ok(a, {"cmd": "status"})  # still connected clients are served

    def test_a_restarted_relay_serves_the_socket(self):
        self.start_admin()
        a = self.admin()
        old = self.status(a)["relay"]["pid"]
        os.kill(old, signal.SIGKILL)
        # Its clients lose their connection; the socket file stays, and the
        # next relay (which inherits the listening socket) answers.
        self.assertTrue(a.closed_by_server(5.0))
        self.assertTrue(os.path.exists(self.sock))
        self.wait_relay(not_pid=old)

        def served():
            b = AdminClient(self.sock)
            try:
                st = b.request({"cmd": "status"})["stats"]
                return st["relay"]["pid"] != old
            finally:
                b.close()
        self.assertTrue(wait_for(served, 10.0), "no new relay on the socket%s" % self.diag())

    def test_not_a_socket_is_left_alone(self):
        with open(self.sock, "w") as f:
            f.write("precious\n")
        o = self.new_orchd()
        o.write_config(o.default_config(admin_socket=self.sock))
        o.start(wait=False)
        self.assertNotEqual(o.wait_exit(10.0), 0)
        self.assertEqual(read_file(self.sock), "precious\n")

    def test_config_check(self):
        o = self.new_orchd()
        for value, msg in (("/nonexistent-%s/orchd.sock" % uuid.uuid4().hex, "directory"),
                           ("relative.sock", "absolute"),
                           (self.sock + " 0999", "octal"),
                           (self.sock + " 0400", "owner"),
                           ("/" + "x" * 120, "longer")):
            o.write_config(o.default_config(admin_socket=value))
            r = o.run(["-t", "-c", o.conf_path])
            self.assertNotEqual(r.returncode, 0, value)
            self.assertIn(msg, r.stderr, "%s: %s" % (value, r.stderr))
        o.write_config(o.default_config(admin_socket=self.sock + " 0660"))
        r = o.run(["-t", "-c", o.conf_path])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = o.run(["-T", "-c", o.conf_path])
        self.assertIn("admin_socket %s 0660" % self.sock, r.stdout)


if __name__ == "__main__":
    unittest.main()
