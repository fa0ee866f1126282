"""WebSocket interop: orchd's echo endpoint (ws_echo_path) against clients
that other people wrote.

* Python `websockets` (Debian's python3-websockets, 10.x): text and binary
  messages of 1 byte .. 1 MiB - 1, with and without permessage-deflate, over
  ws:// and wss://, the ping/pong API and a clean close.
* Node.js `ws` (tests/interop/ws-client.js): the same matrix.  A self-check
  runs the same script against the `ws` package's own server
  (tests/interop/ws-echo-server.js), so a failure against orchd is orchd's.
* Headless Chromium driven by playwright-core (tests/interop/browser-test.js
  and page.html): the browser's own WebSocket, which insists on a correct
  handshake, negotiates permessage-deflate and validates every frame.

The npm packages live in tests/interop/node_modules and Chromium is Debian's
/usr/bin/chromium: scripts/interop-deps.sh installs both.  Without them the
node tests and the browser tests FAIL (saying so) rather than skip, unless
ORCHD_SKIP_BROWSER=1 is set, which skips the browser tests.  Without `node`
at all the node and browser tests skip.

TLS tests run for real; they skip only when the server says it has no TLS
(the handshake fails AND the log says "TLS is not available").

Environment, besides the harness's:
    ORCHD_SKIP_BROWSER=1  skip the Chromium tests
    ORCHD_CHROMIUM        Chromium binary (default /usr/bin/chromium)
    ORCHD_NODE            node binary (default: node on PATH)
"""

import asyncio
import functools
import http.server
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from harness import KEEP_TMP, OrchdTestCase, free_port, read_file, tail

try:
    import websockets
    import websockets.exceptions
except ImportError:  # pragma: no cover - reported by the tests that need it
    websockets = None

HERE = os.path.dirname(os.path.abspath(__file__))
# ORCHD_INTEROP_DIR: where the node scripts and their node_modules are (make
# distcheck points it at the source tree, whose node_modules npm filled).
INTEROP_DIR = os.environ.get("ORCHD_INTEROP_DIR") or \
    os.path.normpath(os.path.join(HERE, "..", "interop"))
NODE_MODULES = os.path.join(INTEROP_DIR, "node_modules")
CHROMIUM = os.environ.get("ORCHD_CHROMIUM", "/usr/bin/chromium")
NODE = os.environ.get("ORCHD_NODE") or shutil.which("node")
SKIP_BROWSER = os.environ.get("ORCHD_SKIP_BROWSER") == "1"
DEPS_HINT = "run scripts/interop-deps.sh (as root) to install it"
TLS_UNAVAILABLE = "TLS is not available"

KIB = 1024
MIB = 1024 * 1024
# Bound of one websockets conversation (the 1 MiB messages included).
PY_EXCHANGE_TIMEOUT = 30.0
# Bound of one node script run; the scripts have their own, shorter, timers.
NODE_TIMEOUT = 45.0
BROWSER_TIMEOUT = 60.0


# --------------------------------------------------------------------------
# payloads


def _ascii(rng, n):
    """n bytes of printable ASCII words (compressible, not trivially)."""
    alphabet = b"abcdefghijklmnopqrstuvwxyz     ,.0123456789"
    table = bytes(alphabet[i % len(alphabet)] for i in range(256))
    return rng.randbytes(n).translate(table).decode("ascii")


def payloads():
    """[(name, message)]: str for text messages, bytes for binary ones.
    Sizes are in bytes on the wire (UTF-8 for text)."""
    rng = random.Random(0x0cd)
    utf8 = "h\u00e9llo \u2713 \U0001F680 "  # 2-, 3- and 4-byte sequences
    head = len(utf8.encode("utf-8"))
    return [
        ("text-small", utf8 + "orchd"),
        ("text-64k", utf8 + _ascii(rng, 64 * KIB - head)),
        ("text-1m-1", utf8 + _ascii(rng, MIB - 1 - head)),
        ("binary-small", b"\x00\x01\x02\xfe\xff"),
        ("binary-64k", rng.randbytes(64 * KIB)),
        ("binary-1m-1", rng.randbytes(MIB - 1)),
        # Very compressible: a real ratio through the deflate path.
        ("binary-zeros-256k", bytes(256 * KIB)),
        ("text-empty", ""),
        ("binary-empty", b""),
    ]


def describe(msg):
    kind = "text" if isinstance(msg, str) else "binary"
    n = len(msg.encode("utf-8")) if isinstance(msg, str) else len(msg)
    return "%s (%d bytes)" % (kind, n)


# --------------------------------------------------------------------------
# helpers


def make_cert(directory):
    """Self-signed certificate for localhost / 127.0.0.1 -> (cert, key)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-days", "1", "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl req failed (%d): %s" % (p.returncode, p.stderr))
    # The workers run as nobody: keep both readable whoever loads them.
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    return cert, key


def run_bounded(argv, timeout, cwd=None):
    """Run argv in its own process group; kill the whole group afterwards
    (Chromium leaves helpers behind if its driver dies).  Returns
    (returncode or None on timeout, stdout, stderr)."""
    p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = None
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    return (rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def last_json_line(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class PageServer:
    """tests/interop served over plain HTTP on 127.0.0.1 from a thread."""

    def __init__(self, directory):
        handler = functools.partial(_QuietHandler, directory=directory)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       name="page-server", daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --------------------------------------------------------------------------
# base


class InteropCase(OrchdTestCase):
    """Starts orchd with the echo endpoint, optionally a TLS listener too."""

    def start_echo(self, tls=False, compression=True, **extra):
        """orchd with /echo on a plain listener (self.o.port, also used for
        /healthz) and, if tls, a TLS listener on self.tls_port."""
        o = self.new_orchd()
        listen = ["127.0.0.1:%d" % o.port]
        self.tls_port = None
        self.cert = self.key = None
        over = {
            "ws_echo_path": "/echo",
            "ws_max_message_size": "2m",
            # max_send_queue stays at its default (1m), below the 1 MiB + 9
            # byte frame that echoes a 1 MiB - 1 message: a lone frame on an
            # empty queue must still go out (see
            # test_echo_of_largest_default_message_with_default_send_queue).
            "ws_compression": "on" if compression else "off",
        }
        if tls:
            self.cert, self.key = make_cert(self.tmp)
            self.tls_port = free_port()
            while self.tls_port == o.port:
                self.tls_port = free_port()
            listen.append("127.0.0.1:%d tls" % self.tls_port)
            over["tls_certificate"] = self.cert
            over["tls_certificate_key"] = self.key
        over["listen"] = listen
        over.update(extra)
        o.write_config(o.default_config(**over))
        try:
            o.start()
        except AssertionError:
            if tls:
                self.skip_if_tls_unavailable(o, "orchd did not start")
            raise
        self.o = o
        return o

    # -- TLS ---------------------------------------------------------------

    def skip_if_tls_unavailable(self, o, what):
        """After a TLS failure: skip if (and only if) orchd says it has no TLS."""
        found = o.wait_log(TLS_UNAVAILABLE, timeout=2.0) or \
            TLS_UNAVAILABLE in read_file(o.stderr_path)
        if found:
            self.skipTest("%s: orchd says %r (this build has no TLS)" % (what, TLS_UNAVAILABLE))

    def client_ssl_context(self):
        """Verifies orchd's certificate for real (CA = the self-signed cert)."""
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = True
        return ctx

    def require_tls(self):
        """A plain TLS handshake with the TLS listener (certificate verified,
        ALPN http/1.1 offered) -> (TLS version, ALPN protocol chosen).  Skips
        if orchd has no TLS, fails with diagnostics on any other failure."""
        ctx = self.client_ssl_context()
        ctx.set_alpn_protocols(["http/1.1"])
        err = None
        for attempt in range(3):
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as s:
                    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                        return t.version(), t.selected_alpn_protocol()
            except (OSError, ssl.SSLError) as e:
                err = e
                time.sleep(0.2)
        self.skip_if_tls_unavailable(self.o, "TLS handshake failed (%r)" % (err,))
        self.fail("TLS handshake with 127.0.0.1:%d failed: %r%s"
                  % (self.tls_port, err, self.diag()))

    def url(self, tls=False, path="/echo"):
        if tls:
            return "wss://127.0.0.1:%d%s" % (self.tls_port, path)
        return "ws://127.0.0.1:%d%s" % (self.o.port, path)

    def assertServerAlive(self):
        self.assertEqual(self.o.healthz()["status"], "ok", self.diag())


# --------------------------------------------------------------------------
# Python websockets


def counting_protocol():
    """websockets' client protocol, counting the bytes it receives (after
    TLS): tells whether orchd really compressed what it sent."""
    base = websockets.WebSocketClientProtocol

    class Counting(base):
        rx_bytes = 0

        def data_received(self, data):
            self.rx_bytes += len(data)
            super().data_received(data)

    return Counting


class PythonWebsocketsInterop(InteropCase):

    def setUp(self):
        super().setUp()
        if websockets is None:
            self.fail("python3-websockets is not installed for /usr/bin/python3 "
                      "(scripts/deps.sh installs it)")

    async def _exchange(self, uri, ssl_ctx, compression, messages):
        """One connection: every message echoed, ping, close.  Returns a dict."""
        out = {"extensions": None, "echoed": [], "pong": False,
               "close_code": None, "close_rcvd": None}
        async with websockets.connect(
                uri, ssl=ssl_ctx, compression=compression, max_size=4 * MIB,
                open_timeout=10, close_timeout=5, ping_interval=None,
                create_protocol=counting_protocol()) as ws:
            out["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions")
            rx_start = ws.rx_bytes  # the handshake response
            out["client_extensions"] = [type(e).__name__ for e in ws.extensions]
            for name, msg in messages:
                await ws.send(msg)
                echo = await asyncio.wait_for(ws.recv(), 10)
                out["echoed"].append(name)
                out["payload_bytes"] = out.get("payload_bytes", 0) + len(
                    msg.encode("utf-8") if isinstance(msg, str) else msg)
                self.assertIs(type(echo), type(msg),
                              "%s: sent %s, echo is %s" % (name, describe(msg), describe(echo)))
                if echo != msg:
                    self.fail("%s: echo differs: sent %s, got %s"
                              % (name, describe(msg), describe(echo)))
            out["rx_bytes"] = ws.rx_bytes - rx_start
            # The ping/pong API: the waiter resolves when the matching pong
            # arrives.
            waiter = await ws.ping(b"orchd-interop-ping")
            await asyncio.wait_for(waiter, 5)
            out["pong"] = True
            # A ping without payload as well.
            waiter = await ws.ping()
            await asyncio.wait_for(waiter, 5)
            await ws.close(1000, "bye")
            out["close_code"] = ws.close_code
            out["close_rcvd"] = ws.close_rcvd
            out["close_rcvd_then_sent"] = ws.close_rcvd_then_sent
        return out

    def exchange(self, tls, compression, messages=None):
        ssl_ctx = self.client_ssl_context() if tls else None
        uri = self.url(tls)
        messages = payloads() if messages is None else messages
        try:
            return asyncio.run(asyncio.wait_for(
                self._exchange(uri, ssl_ctx, compression, messages),
                PY_EXCHANGE_TIMEOUT))
        except asyncio.TimeoutError:
            self.fail("websockets conversation with %s took over %.0fs%s"
                      % (uri, PY_EXCHANGE_TIMEOUT, self.diag()))
        except websockets.exceptions.ConnectionClosed as e:
            self.fail("%s: connection closed during the exchange: %s%s"
                      % (uri, e, self.diag()))
        except (OSError, ssl.SSLError, websockets.exceptions.InvalidHandshake) as e:
            self.fail("%s: %s: %s%s" % (uri, type(e).__name__, e, self.diag()))

    def check_result(self, res, compression):
        names = [n for n, _ in payloads()]
        self.assertEqual(res["echoed"], names)
        self.assertTrue(res["pong"])
        # The close handshake: we sent 1000, orchd answered with 1000.
        self.assertIsNotNone(res["close_rcvd"], "no close frame from orchd")
        self.assertEqual(res["close_code"], 1000, res)
        self.assertIs(res["close_rcvd_then_sent"], False, res)
        if compression:
            self.assertIn("permessage-deflate", res["extensions"] or "",
                          "permessage-deflate not negotiated")
            self.assertEqual(res["client_extensions"], ["PerMessageDeflate"], res)
            # The echoes were really compressed: of the 2.4 MB, the 256 KiB of
            # zeros shrink to almost nothing and the ASCII texts by about a
            # fifth (level 1); about 76% goes over the wire.
            self.assertLess(res["rx_bytes"], 0.9 * res["payload_bytes"],
                            "orchd's echoes were not compressed "
                            "(%(rx_bytes)d bytes received for %(payload_bytes)d)" % res)
        else:
            self.assertIsNone(res["extensions"],
                              "extension answered to a client that offered none")
            self.assertEqual(res["client_extensions"], [], res)
            self.assertGreaterEqual(res["rx_bytes"], res["payload_bytes"], res)
        self.note("received %d bytes on the wire for %d bytes of echoes",
                  res["rx_bytes"], res["payload_bytes"])
        self.assertServerAlive()

    def test_plain_without_compression(self):
        self.start_echo()
        self.check_result(self.exchange(False, None), False)

    def test_plain_with_deflate(self):
        self.start_echo()
        res = self.exchange(False, "deflate")
        self.check_result(res, True)
        # What orchd documents answering (RFC 7692 lets a server add both).
        self.assertIn("server_no_context_takeover", res["extensions"])
        self.assertIn("client_no_context_takeover", res["extensions"])

    def test_tls_without_compression(self):
        self.start_echo(tls=True)
        self.require_tls()
        self.check_result(self.exchange(True, None), False)

    def test_tls_with_deflate(self):
        self.start_echo(tls=True)
        version, alpn = self.require_tls()
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertIn(alpn, (None, "http/1.1"))
        self.check_result(self.exchange(True, "deflate"), True)

    def test_server_compression_off_declines_deflate(self):
        # The client offers permessage-deflate, orchd is told not to use it:
        # no extension in the answer, and the exchange still works.
        self.start_echo(compression=False)
        self.check_result(self.exchange(False, "deflate"), False)

    def test_echo_of_largest_default_message_with_default_send_queue(self):
        # Defaults only (ws_max_message_size 1m, max_send_queue 1m): a
        # 1 MiB - 1 byte message is accepted, so its echo must come back
        # rather than the connection being closed for a full send queue.
        o = self.new_orchd()
        o.write_config(o.default_config(ws_echo_path="/echo"))
        o.start()
        self.o = o
        self.tls_port = None
        rng = random.Random(7)
        msgs = [("binary-1m-1", rng.randbytes(MIB - 1)),
                ("text-1m-1", _ascii(rng, MIB - 1))]
        for compression in (None, "deflate"):
            with self.subTest(compression=compression):
                res = self.exchange(False, compression, msgs)
                self.assertEqual(res["echoed"], [n for n, _ in msgs])


# --------------------------------------------------------------------------
# Node.js ws


class NodeWsInterop(InteropCase):

    def setUp(self):
        super().setUp()
        if not NODE:
            self.skipTest("node is not installed (%s)" % DEPS_HINT)
        if not os.path.isfile(os.path.join(NODE_MODULES, "ws", "package.json")):
            self.fail("the npm package ws is missing from %s: %s" % (NODE_MODULES, DEPS_HINT))

    def run_client(self, url, deflate, ca=None):
        argv = [NODE, os.path.join(INTEROP_DIR, "ws-client.js"), url,
                "--timeout", "30000"]
        if deflate:
            argv.append("--deflate")
        if ca:
            argv += ["--ca", ca]
        rc, out, err = run_bounded(argv, NODE_TIMEOUT, cwd=INTEROP_DIR)
        doc = last_json_line(out)
        ctx = "ws-client.js %s (deflate=%s): rc=%s\nstdout: %s\nstderr: %s" % (
            url, deflate, rc, tail(out, 5)[:3000], tail(err, 20))
        self.assertIsNotNone(rc, "timed out after %.0fs; %s" % (NODE_TIMEOUT, ctx))
        self.assertIsNotNone(doc, "no JSON result; " + ctx)
        return rc, doc, ctx

    def check_client(self, rc, doc, ctx, deflate, against_orchd=True):
        bad = [m for m in doc["messages"] if not m.get("ok")]
        self.assertEqual(bad, [], ctx + (self.diag() if against_orchd else ""))
        self.assertEqual(doc["errors"], [], ctx + (self.diag() if against_orchd else ""))
        self.assertEqual(len(doc["messages"]), 9, ctx)
        self.assertTrue(doc["pong"], ctx)
        self.assertEqual(doc["closeCode"], 1000, ctx)
        if deflate:
            self.assertIn("permessage-deflate", doc["extensions"], ctx)
            self.assertEqual(doc["negotiated"], "permessage-deflate", ctx)
        else:
            self.assertEqual(doc["extensions"], "", ctx)
            self.assertEqual(doc["negotiated"], "", ctx)
        self.assertTrue(doc["ok"], ctx)
        self.assertEqual(rc, 0, ctx)

    def _test(self, tls, deflate):
        self.start_echo(tls=tls)
        if tls:
            self.require_tls()
        rc, doc, ctx = self.run_client(self.url(tls), deflate, ca=self.cert if tls else None)
        self.check_client(rc, doc, ctx, deflate)
        self.assertServerAlive()

    def test_plain_without_compression(self):
        self._test(False, False)

    def test_plain_with_deflate(self):
        self._test(False, True)

    def test_tls_without_compression(self):
        self._test(True, False)

    def test_tls_with_deflate(self):
        self._test(True, True)

    def test_client_script_against_reference_server(self):
        # Self-check of ws-client.js against the ws package's own server (TLS
        # and deflate on): if this passes and an orchd test fails, the
        # difference is orchd's.
        cert, key = make_cert(self.tmp)
        p = subprocess.Popen([NODE, os.path.join(INTEROP_DIR, "ws-echo-server.js"),
                              "--cert", cert, "--key", key, "--lifetime", "40000"],
                             cwd=INTEROP_DIR, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)

        def stop():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.communicate(timeout=10)
        self.addCleanup(stop)
        box = {}
        reader = threading.Thread(target=lambda: box.setdefault("line", p.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(15)
        line = box.get("line", b"")
        self.assertTrue(line, "ws-echo-server.js did not start")
        port = json.loads(line)["port"]
        rc, doc, ctx = self.run_client("wss://127.0.0.1:%d/echo" % port, True, ca=cert)
        self.check_client(rc, doc, ctx, True, against_orchd=False)


# --------------------------------------------------------------------------
# Chromium


class ChromiumInterop(InteropCase):

    def setUp(self):
        super().setUp()
        if SKIP_BROWSER:
            self.skipTest("ORCHD_SKIP_BROWSER=1")
        if not NODE:
            self.skipTest("node is not installed (%s)" % DEPS_HINT)
        missing = []
        if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
            missing.append("Chromium (%s)" % CHROMIUM)
        if not os.path.isfile(os.path.join(NODE_MODULES, "playwright-core", "package.json")):
            missing.append("the npm package playwright-core (in %s)" % NODE_MODULES)
        if missing:
            self.fail("%s missing: %s, or set ORCHD_SKIP_BROWSER=1 to skip the "
                      "browser tests" % (" and ".join(missing), DEPS_HINT))
        self.pages = PageServer(INTEROP_DIR)
        self.addCleanup(self.pages.close)

    def run_page(self, ws_url, ignore_cert, label):
        page = "http://127.0.0.1:%d/page.html?ws=%s" % (self.pages.port, ws_url)
        profile = os.path.join(self.tmp, "chromium-profile-%s" % label)
        os.makedirs(profile)
        shot = os.path.join(self.tmp, "chromium-%s.png" % label)
        argv = [NODE, os.path.join(INTEROP_DIR, "browser-test.js"),
                "--page", page, "--user-data-dir", profile,
                "--screenshot", shot, "--chromium", CHROMIUM,
                "--timeout", "45000"]
        if ignore_cert:
            argv.append("--ignore-cert")
        rc, out, err = run_bounded(argv, BROWSER_TIMEOUT, cwd=INTEROP_DIR)
        doc = last_json_line(out)
        ctx = "browser-test.js %s: rc=%s\nstdout: %s\nstderr: %s" % (
            page, rc, tail(out, 5)[:4000], tail(err, 20))
        self.assertIsNotNone(rc, "timed out after %.0fs; %s%s" % (BROWSER_TIMEOUT, ctx, self.diag()))
        self.assertIsNotNone(doc, "no JSON result; " + ctx + self.diag())
        self.note("%s: browser %s, screenshot %s", label, doc.get("browserVersion"), shot)
        if KEEP_TMP:
            print("\n[screenshot %s]" % shot)
        return rc, doc, ctx, shot

    def check_page(self, rc, doc, ctx, shot):
        res = doc.get("result") or {}
        self.assertEqual(doc.get("errors"), [], ctx + self.diag())
        self.assertEqual(res.get("errors"), [], ctx + self.diag())
        self.assertIn("permessage-deflate", res.get("extensions") or "", ctx)
        self.assertEqual(res.get("textsSent"), 100, ctx)
        self.assertEqual(res.get("textsOk"), 100, ctx)
        self.assertTrue(res.get("binaryOk"), ctx)
        self.assertEqual(res.get("closeCode"), 1000, ctx)
        self.assertIs(res.get("closeWasClean"), True, ctx)
        self.assertTrue(res.get("ok"), ctx)
        self.assertEqual(rc, 0, ctx)
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG")
        self.assertGreater(os.path.getsize(shot), 1000)
        self.assertServerAlive()

    def test_chromium_ws(self):
        self.start_echo()
        self.check_page(*self.run_page(self.url(False), False, "ws"))

    def test_chromium_wss(self):
        self.start_echo(tls=True)
        self.require_tls()
        self.check_page(*self.run_page(self.url(True), True, "wss"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
