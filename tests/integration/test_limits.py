"""Resource limits: a worker out of file descriptors pauses accepting
instead of spinning, and resumes as soon as descriptors free up; requests
over max_connections are refused with 503."""

import os
import re
import socket
import time

from harness import ORCHD_BIN, OrchdTestCase, http_request, read_file, wait_for


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class FdExhaustionTest(OrchdTestCase):

    def test_emfile_pauses_accept_without_spinning_and_resumes(self):
        # Run orchd under a tiny descriptor limit (soft = hard, so the
        # supervisor cannot raise it).
        wrapper = os.path.join(self.tmp, "orchd-limited")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nulimit -n 40\nexec "%s" "$@"\n' % ORCHD_BIN)
        os.chmod(wrapper, 0o755)
        o = self.new_orchd(binary=wrapper)
        o.write_config(o.default_config(workers=1))
        o.start()
        worker = o.worker_pids()[0]

        # Hold many connections that each sent half a request head, so the
        # worker keeps them open (head timeout is 10 s).
        held = []
        for _ in range(60):
            s = socket.socket()
            s.settimeout(2)
            s.connect(("127.0.0.1", o.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            held.append(s)
        self.assertTrue(wait_for(lambda: "pausing accept" in read_file(o.log_path), 5),
                        "worker never paused accepting" + self.diag())
        # Paused, not spinning: ~1 s of wall time costs (almost) no CPU.
        t0 = cpu_ticks(worker)
        time.sleep(1.0)
        used = cpu_ticks(worker) - t0
        self.assertLess(used, 20, "worker burnt %d ticks/s while out of fds" % used)

        # Finish the held requests: descriptors free up, accepting resumes,
        # and the connections still queued in the backlog are served.
        for s in held:
            try:
                s.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
        answered = 0
        for s in held:
            try:
                data = s.recv(4096)
                if data.startswith(b"HTTP/1.1 200"):
                    answered += 1
            except OSError:
                pass
            s.close()
        self.assertEqual(answered, len(held),
                         "every held connection is eventually served" + self.diag())
        self.assertIn("accepting again", read_file(o.log_path))
        self.assertEqual(o.healthz()["status"], "ok")


class MaxConnectionsTest(OrchdTestCase):

    def test_over_max_connections_gets_503(self):
        o = self.start_orchd(overrides={"workers": 1, "max_connections": 5})
        held = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", o.port), timeout=2)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            held.append(s)
        # The held ones may still be on their way into the worker on a busy
        # machine: retry a little, but a server that never refuses fails.
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            s = socket.create_connection(("127.0.0.1", o.port), timeout=2)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(4096)
            s.close()
            if data.startswith(b"HTTP/1.1 503"):
                break
            time.sleep(0.2)
        self.assertTrue(data.startswith(b"HTTP/1.1 503"), data)
        self.assertIn(b'"code":"MAX_CONNECTIONS"', data)
        for s in held:
            s.close()
        self.assertTrue(wait_for(lambda: o.healthz()["status"] == "ok", 5))
        # Each refusal is counted for the operator.
        r = http_request(o.port, "GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        m = re.search(rb'^orchd_connections_refused_full_total\{worker="0"\} (\d+)$',
                      r.body, re.M)
        self.assertIsNotNone(m, r.body[:2000])
        self.assertGreaterEqual(int(m.group(1)), 1)


class ConnectionRateTest(OrchdTestCase):

    def test_connection_rate_per_address_answers_429(self):
        # 10 per second per address over 1 worker: a burst of 40 new
        # connections from 127.0.0.1 gets some 429s; another address is
        # not affected.
        o = self.start_orchd(overrides={"workers": 1,
                                        "connection_rate_per_address": 10})
        statuses = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", o.port), timeout=2)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            statuses.append(int(data.split(b" ", 2)[1]))
        self.assertIn(429, statuses, statuses)
        self.assertIn(200, statuses, statuses)
        self.assertLessEqual(statuses.count(200), 15, statuses)
        s = socket.create_connection(("127.0.0.1", o.port), timeout=2,
                                     source_address=("127.0.0.9", 0))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        s.close()
