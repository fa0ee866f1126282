"""The status page (GET /status) in a real browser against a real orchd.

Debian's headless Chromium, driven by playwright-core
(tests/interop/status-test.js), opens http://127.0.0.1:PORT/status on an
orchd with 2 workers, its relay and a private redis-server.  The page polls
/stats; the test checks that what the page *displays* (read from its DOM)
matches the server, then connects authenticated daemons and publishes events
and checks that the displayed numbers follow.  The screenshot is kept as a
test artefact in $ORCHD_BUILDDIR/test-artifacts/status-page.png.

Also checked without a browser: the page is self-contained (no reference to
another origin), /status answers 403 to an address admin_allow does not
cover, HEAD works, and POST gets 405.

Needs Chromium, node and tests/interop/node_modules (scripts/interop-deps.sh
installs them; scripts/deps.sh runs it); a missing piece fails the test
unless ORCHD_SKIP_BROWSER=1 says to skip it.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import unittest

from harness import http_request
from test_events import EventTestCase, record

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP_DIR = os.environ.get("ORCHD_INTEROP_DIR") or \
    os.path.normpath(os.path.join(HERE, "..", "interop"))
NODE_MODULES = os.path.join(INTEROP_DIR, "node_modules")
CHROMIUM = os.environ.get("ORCHD_CHROMIUM", "/usr/bin/chromium")
NODE = os.environ.get("ORCHD_NODE") or shutil.which("node")
SKIP_BROWSER = os.environ.get("ORCHD_SKIP_BROWSER") == "1"
BROWSER_TIMEOUT = 90.0


def artefact_dir():
    base = os.environ.get("ORCHD_BUILDDIR") or os.getcwd()
    d = os.path.join(base, "test-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def raw_get(port, path, source="127.0.0.1", method="GET"):
    """(status, body) of one request made from a chosen source address."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                 source_address=(source, 0))
    try:
        s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % (method, path)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


class StatusPageTest(EventTestCase):

    def need_browser(self):
        missing = []
        if NODE is None:
            missing.append("node")
        if not os.path.exists(CHROMIUM):
            missing.append(CHROMIUM)
        if not os.path.isdir(os.path.join(NODE_MODULES, "playwright-core")):
            missing.append("playwright-core in %s" % NODE_MODULES)
        if missing:
            msg = "%s missing: run scripts/interop-deps.sh" % ", ".join(missing)
            if SKIP_BROWSER:
                self.skipTest(msg)
            self.fail(msg)

    def test_page_is_self_contained_and_admin_only(self):
        self.start_stack(admin_allow="127.0.0.1")
        r = http_request(self.o.port, "GET", "/status")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type", "").startswith("text/html"), r)
        page = r.body.decode("utf-8")
        self.assertIn("<title>orchd status</title>", page)
        # No external asset: every src/href is a fragment, data: or local.
        for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
            self.assertFalse(re.match(r"^(https?:)?//", ref), ref)
        self.assertIsNone(re.search(r"@import|url\(\s*['\"]?https?:", page))
        r = http_request(self.o.port, "HEAD", "/status")
        self.assertEqual(r.status, 200, r)
        r = http_request(self.o.port, "POST", "/status")
        self.assertEqual(r.status, 405, r)
        # 127.0.0.2 is loopback but not in admin_allow.
        status, _ = raw_get(self.o.port, "/status", source="127.0.0.2")
        self.assertEqual(status, 403)
        status, _ = raw_get(self.o.port, "/stats", source="127.0.0.2")
        self.assertEqual(status, 403)

    def test_page_shows_live_numbers_in_chromium(self):
        self.need_browser()
        o = self.start_stack(workers=2)
        shot = os.path.join(artefact_dir(), "status-page.png")
        if os.path.exists(shot):
            os.unlink(shot)
        udd = os.path.join(self.tmp, "chromium-profile")
        os.makedirs(udd)
        env = dict(os.environ, NODE_PATH=NODE_MODULES)
        p = subprocess.Popen(
            [NODE, os.path.join(INTEROP_DIR, "status-test.js"),
             "--page", "http://127.0.0.1:%d/status" % o.port,
             "--user-data-dir", udd, "--chromium", CHROMIUM,
             "--screenshot", shot, "--timeout", str(int(BROWSER_TIMEOUT * 1000) - 5000)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=INTEROP_DIR, text=True)
        killer = threading.Timer(BROWSER_TIMEOUT, p.kill)
        killer.start()
        self.addCleanup(killer.cancel)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        line = p.stdout.readline()
        if not line:  # it ended: its stderr says why (read only then: it blocks)
            self.fail("status-test.js printed nothing: %s" % p.stderr.read()[-2000:])
        ready = json.loads(line)
        self.assertEqual(ready.get("phase"), "ready", ready)
        before = ready["shown"]
        stats = http_request(o.port, "GET", "/stats").json()
        # What the page shows is what /stats says (nothing moved meanwhile).
        self.assertEqual(before["authenticated"], stats["connections"]["authenticated"], before)
        self.assertEqual(before["workerRows"], len(stats["workers"]), before)
        self.assertEqual(before["redis"], "up", before)
        self.assertEqual(before["live"], "live", before)

        # 12 daemons of 3 orchestrators, and events for them.
        clients = []
        for i in range(12):
            clients.append(self.connect("vp-status-%d" % (i % 3)))
        by_orch = {}
        for i in range(5):
            orch = "vp-status-%d" % (i % 3)
            rec = record("status.test", orch=orch)
            self.publish(rec)
            by_orch.setdefault(orch, []).append(rec["id"])
        want = before["authenticated"] + 12
        try:
            p.stdin.write(json.dumps({"authenticated": want, "workers": 2,
                                      "received": before["received"] + 5}) + "\n")
            p.stdin.flush()
        except BrokenPipeError:
            pass  # status-test.js ended early: its output says why
        out, err = p.communicate(timeout=BROWSER_TIMEOUT)
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        done = json.loads(last)
        self.assertTrue(done.get("ok"), "%s\nstderr: %s" % (json.dumps(done, indent=1), err[-2000:]))
        shown = done["shown"]
        self.assertGreaterEqual(shown["authenticated"], want, shown)
        self.assertGreaterEqual(shown["orchestrators"], 3, shown)
        self.assertGreaterEqual(shown["received"], before["received"] + 5, shown)
        for c in clients:
            self.assertTrue(c.wait_ids(by_orch[c.orch], timeout=10.0), c)
        self.assertGreaterEqual(shown["orchestratorRows"], 3, shown)
        self.assertEqual(sorted(shown["workerPids"]), sorted(str(pid) for pid in o.worker_pids()),
                         shown)
        self.assertGreaterEqual(done["samples"], 2, done)
        self.assertTrue(os.path.getsize(shot) > 10000, "screenshot %s" % shot)


if __name__ == "__main__":
    unittest.main()
