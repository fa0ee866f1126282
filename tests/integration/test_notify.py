"""systemd readiness notification (NOTIFY_SOCKET, sd_notify protocol).

A unix datagram socket bound by the test stands in for systemd: orchd runs
in the foreground with NOTIFY_SOCKET naming it, and must send READY=1 once
its workers run, RELOADING=1 (+ MONOTONIC_USEC) then READY=1 on HUP,
STOPPING=1 on TERM, with STATUS= summaries, and must not pass the variable
on to its children.
"""

import os
import re
import signal
import socket
import struct
import time

from harness import OrchdTestCase, read_file, wait_for


def parse(msg):
    """A notification datagram -> {KEY: value}."""
    out = {}
    for line in msg.decode("utf-8", "replace").split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


class NotifySocket:
    """A bound SOCK_DGRAM socket that collects the datagrams orchd sends,
    with the sender's pid (SO_PASSCRED), as systemd checks NotifyAccess."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages = []
        self.senders = []

    def close(self):
        self.sock.close()

    def _recv(self):
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        self.messages.append(parse(data))
        self.senders.append(pid)

    def drain(self):
        while True:
            try:
                self._recv()
            except socket.timeout:
                return

    def wait(self, key, timeout=15.0, start=0):
        """The first message at index >= start that sets key; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(start, len(self.messages)):
                if key in self.messages[i]:
                    return i, self.messages[i]
            if time.monotonic() >= deadline:
                return None
            try:
                self._recv()
            except socket.timeout:
                pass


class NotifyTest(OrchdTestCase):

    def start_notified(self, address, env_value):
        ns = NotifySocket(address)
        self.addCleanup(ns.close)
        o = self.new_orchd(env={"NOTIFY_SOCKET": env_value})
        o.start(wait=False)
        return o, ns

    def check_lifecycle(self, o, ns):
        got = ns.wait("READY")
        self.assertIsNotNone(got, "no READY=1 within 15 s: %r%s"
                             % (ns.messages, self.diag(o)))
        i, msg = got
        self.assertEqual(msg["READY"], "1")
        self.assertEqual(msg.get("MAINPID"), str(o.pid))
        self.assertIn("STATUS", msg)
        self.assertRegex(msg["STATUS"], r"^ready: generation 1, workers 2, connections 0$")
        # READY means the workers run: /healthz answers at once.
        doc = o.healthz()
        self.assertEqual(doc["generation"], 1)
        self.assertEqual(len(o.worker_pids()), 2, self.diag(o))

        self.assertIsNone(o.wait_log(r"NOTIFY_SOCKET", timeout=0.2),
                          "NOTIFY_SOCKET was reported as unusable" + self.diag(o))

        # HUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 once the new
        # generation runs.
        t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        o.send_signal(signal.SIGHUP)
        got = ns.wait("RELOADING", start=i + 1)
        self.assertIsNotNone(got, "no RELOADING=1 after HUP: %r%s"
                             % (ns.messages, self.diag(o)))
        j, msg = got
        self.assertEqual(msg["RELOADING"], "1")
        usec = int(msg["MONOTONIC_USEC"])
        t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
        self.assertGreaterEqual(usec, int(t0 * 1e6) - 1000)
        self.assertLessEqual(usec, int(t1 * 1e6) + 1000)
        got = ns.wait("READY", start=j + 1)
        self.assertIsNotNone(got, "no READY=1 after the reload: %r%s"
                             % (ns.messages, self.diag(o)))
        k, msg = got
        self.assertRegex(msg.get("STATUS", ""), r"^ready: generation 2, workers 2, connections \d+$")
        self.assertTrue(wait_for(lambda: o.healthz()["generation"] == 2, 5.0),
                        self.diag(o))

        # A refused reload still ends the RELOADING state with READY=1.
        good = read_file(o.conf_path)
        with open(o.conf_path, "a") as f:
            f.write("no_such_directive 1\n")
        o.send_signal(signal.SIGHUP)
        got = ns.wait("RELOADING", start=k + 1)
        self.assertIsNotNone(got, "no RELOADING=1 after the second HUP: %r%s"
                             % (ns.messages, self.diag(o)))
        got = ns.wait("READY", start=got[0] + 1)
        self.assertIsNotNone(got, "no READY=1 after a refused reload: %r%s"
                             % (ns.messages, self.diag(o)))
        k, msg = got
        self.assertRegex(msg.get("STATUS", ""), r"refused.*generation 2")
        with open(o.conf_path, "w") as f:
            f.write(good)

        # TERM: STOPPING=1, then a clean exit.
        o.send_signal(signal.SIGTERM)
        got = ns.wait("STOPPING", start=k + 1)
        self.assertIsNotNone(got, "no STOPPING=1 after TERM: %r%s"
                             % (ns.messages, self.diag(o)))
        self.assertEqual(got[1]["STOPPING"], "1")
        self.assertEqual(o.wait_exit(o.drain_timeout + 10.0), 0, self.diag(o))
        # Every datagram came from the supervisor itself (systemd's
        # NotifyAccess=main drops any other sender's), never from a worker or
        # the relay; and nothing but the documented keys.
        ns.drain()
        self.assertEqual(set(ns.senders), {o.pid},
                         "senders %r, supervisor %d" % (ns.senders, o.pid))
        keys = set()
        for m in ns.messages:
            keys.update(m)
        self.assertLessEqual(keys, {"READY", "RELOADING", "STOPPING", "STATUS",
                                    "MAINPID", "MONOTONIC_USEC"}, ns.messages)

    def test_path_socket(self):
        path = os.path.join(self.tmp, "notify.sock")
        o, ns = self.start_notified(path, path)
        self.check_lifecycle(o, ns)

    def test_abstract_socket(self):
        name = "orchd-it-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        o, ns = self.start_notified("\0" + name, "@" + name)
        self.check_lifecycle(o, ns)

    def test_status_refresh_counts_connections(self):
        # Every 10 s, STATUS= is sent again if it changed: an open
        # connection shows in it.
        path = os.path.join(self.tmp, "notify.sock")
        ns = NotifySocket(path)
        self.addCleanup(ns.close)
        o = self.new_orchd(env={"NOTIFY_SOCKET": path})
        o.write_config(o.default_config(handshake_timeout="60s"))
        o.start(wait=False)
        got = ns.wait("READY")
        self.assertIsNotNone(got, "no READY=1: %r%s" % (ns.messages, self.diag(o)))
        conn = socket.create_connection(("127.0.0.1", o.port), timeout=5)
        self.addCleanup(conn.close)
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:
            got = ns.wait("STATUS", timeout=1.0, start=len(ns.messages))
            if got and got[1]["STATUS"].endswith("connections 1"):
                seen = got[1]
                break
        self.assertIsNotNone(seen, "no STATUS= with the open connection within "
                             "30 s: %r%s" % (ns.messages, self.diag(o)))
        self.assertEqual(set(seen), {"STATUS"}, seen)
        self.assertEqual(seen["STATUS"], "generation 1, workers 2, connections 1")

    def test_daemon_mode_reports_the_daemon_pid(self):
        path = os.path.join(self.tmp, "notify.sock")
        ns = NotifySocket(path)
        self.addCleanup(ns.close)
        o = self.new_orchd(env={"NOTIFY_SOCKET": path})
        o.start(foreground=False)
        got = ns.wait("READY")
        self.assertIsNotNone(got, "no READY=1: %r%s" % (ns.messages, self.diag(o)))
        self.assertEqual(got[1]["MAINPID"], str(o.read_pidfile()))
        self.assertEqual(ns.senders[got[0]], o.read_pidfile())

    def test_unusable_socket_is_logged_not_fatal(self):
        o = self.new_orchd(env={"NOTIFY_SOCKET": "relative/notify.sock"})
        o.start()
        self.assertTrue(o.wait_log(r"unusable NOTIFY_SOCKET"), self.diag(o))
        self.assertEqual(o.healthz()["status"], "ok")

    def test_vanished_socket_is_logged_not_fatal(self):
        path = os.path.join(self.tmp, "gone.sock")
        o = self.new_orchd(env={"NOTIFY_SOCKET": path})
        o.start()
        self.assertTrue(o.wait_log(r"notify_send: sendto NOTIFY_SOCKET"),
                        self.diag(o))
        o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: o.healthz()["generation"] == 2, 10.0),
                        self.diag(o))
        self.assertTrue(o.alive())
