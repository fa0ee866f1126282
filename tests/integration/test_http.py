"""The plain-HTTP surface of a worker: /healthz, error responses, keep-alive,
and robustness against garbage request heads."""

import http.client
import os
import socket
import unittest

from harness import (CLIENT_TIMEOUT, HttpError, OrchdTestCase, RawConn,
                     http_request)


class HttpTest(OrchdTestCase):

    def setUp(self):
        super().setUp()
        self.o = self.start_orchd()
        self.workers_before = set(self.o.worker_pids())

    def assertNoWorkerDied(self):
        # Nothing sent by a client may crash a worker.
        self.assertEqual(self.o.healthz()["status"], "ok")
        self.assertEqual(set(self.o.worker_pids()), self.workers_before,
                         "worker set changed (a worker crashed?)" + self.diag())

    def assertJsonError(self, r, status, what):
        self.assertEqual(r.status, status, "%s: %r%s" % (what, r, self.diag()))
        ctype = r.header("content-type", "")
        self.assertTrue(ctype.startswith("application/json"),
                        "%s: Content-Type %r" % (what, ctype))
        try:
            doc = r.json()
        except ValueError as e:
            self.fail("%s: body is not JSON (%s): %r" % (what, e, r.body))
        self.assertIsInstance(doc, dict, what)
        self.assertIsInstance(doc.get("error"), str, "%s: %r" % (what, doc))
        self.assertIsInstance(doc.get("code"), str, "%s: %r" % (what, doc))
        self.assertTrue(doc["error"] and doc["code"], "%s: %r" % (what, doc))
        self.assertEqual(r.header("connection", "").lower(), "close",
                         "%s: no Connection: close header: %r" % (what, r.headers))
        if "content-length" in r.headers:
            self.assertEqual(int(r.header("content-length")), len(r.body), what)
        return doc

    # ---- /healthz ---------------------------------------------------------

    def test_healthz_body_and_headers(self):
        r = http_request(self.o.port, "GET", "/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type", "").startswith("application/json"),
                        r.headers)
        doc = r.json()
        self.assertEqual(set(doc), {"status", "workers", "worker", "pid", "generation"},
                         doc)
        self.assertEqual(doc["status"], "ok")
        self.assertEqual(doc["workers"], 2)
        self.assertIn(doc["worker"], (0, 1))
        self.assertEqual(doc["generation"], 1)
        self.assertIn(doc["pid"], self.o.worker_pids(), "pid is not a worker: %s" % doc)
        self.assertIn(r.version, ("HTTP/1.1", "HTTP/1.0"))

    def test_head_healthz_has_no_body(self):
        with RawConn(self.o.port) as c:
            r = c.request("HEAD", "/healthz", close=True)
            self.assertEqual(r.status, 200, r)
            # A body after a HEAD response would show up as extra bytes here.
            self.assertTrue(c.closed_by_peer(), "connection not closed after HEAD "
                            "with Connection: close")
            self.assertEqual(c.buf, b"", "HEAD response carried a body: %r" % c.buf[:200])

    # ---- errors -------------------------------------------------------------

    def test_unknown_path_is_404_json_and_closes(self):
        for path in ("/nope", "/", "/healthz/extra", "/%2e%2e/etc/passwd"):
            with RawConn(self.o.port) as c:
                # No Connection: close from us: the server must add it and close.
                r = c.request("GET", path)
                self.assertJsonError(r, 404, "GET %s" % path)
                self.assertTrue(c.closed_by_peer(), "GET %s: connection left open" % path)
        self.assertNoWorkerDied()

    def test_wrong_method_on_healthz_is_405_json_and_closes(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with RawConn(self.o.port) as c:
                r = c.request(method, "/healthz", headers={"Content-Length": "0"})
                self.assertJsonError(r, 405, "%s /healthz" % method)
                self.assertTrue(c.closed_by_peer(), "%s: connection left open" % method)
        self.assertNoWorkerDied()

    def test_malformed_request_lines_get_400_not_a_hang(self):
        garbage = [
            b"GARBAGE\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nno colon header\r\n\r\n",
            b" / HTTP/1.1\r\n\r\n",
            b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64) + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n",
        ]
        for data in garbage:
            with RawConn(self.o.port) as c:
                c.send(data)
                try:
                    r = c.read_response()
                except socket.timeout:
                    self.fail("no answer within %.0fs to %r%s"
                              % (CLIENT_TIMEOUT, data[:40], self.diag()))
                except (HttpError, ConnectionResetError) as e:
                    self.fail("no 400 for %r: %s%s" % (data[:40], e, self.diag()))
                self.assertJsonError(r, 400, repr(data[:40]))
                self.assertTrue(c.closed_by_peer(), "%r: connection left open" % data[:40])
        self.assertNoWorkerDied()

    def test_oversized_request_head_is_refused_not_a_hang(self):
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n"
        with RawConn(self.o.port) as c:
            try:
                c.send(big)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closing on us mid-send is a fine answer
            try:
                r = c.read_response()
                self.assertTrue(400 <= r.status < 500, "oversized head answered %r" % r)
                self.assertEqual(r.header("connection", "").lower(), "close", r.headers)
            except socket.timeout:
                self.fail("oversized request head: no answer and no close within %.0fs"
                          % CLIENT_TIMEOUT)
            except (HttpError, ConnectionResetError, BrokenPipeError):
                pass  # closed without a response: acceptable
        self.assertNoWorkerDied()

    # ---- keep-alive ---------------------------------------------------------

    def test_keep_alive_two_requests_on_one_connection(self):
        with RawConn(self.o.port) as c:
            r1 = c.request("GET", "/healthz")
            self.assertEqual(r1.status, 200, r1)
            self.assertNotEqual(r1.header("connection", "").lower(), "close", r1.headers)
            r2 = c.request("GET", "/healthz")
            self.assertEqual(r2.status, 200, r2)
            # Same connection, so the same worker answered both.
            self.assertEqual(r1.json()["pid"], r2.json()["pid"])
            r3 = c.request("GET", "/healthz", close=True)
            self.assertEqual(r3.status, 200, r3)
            self.assertTrue(c.closed_by_peer(), "Connection: close not honoured")

    def test_keep_alive_with_http_client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.o.port, timeout=CLIENT_TIMEOUT)
        self.addCleanup(conn.close)
        ctypes = []
        sock = None
        for i in range(5):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 200, body)
            self.assertFalse(resp.will_close, "server closes a keep-alive connection")
            if sock is None:
                sock = conn.sock
            self.assertIs(conn.sock, sock, "http.client had to reconnect (request %d)" % i)
            ctypes.append(resp.getheader("Content-Type"))
        self.assertTrue(all(p and p.startswith("application/json") for p in ctypes), ctypes)

    def test_pipelined_requests_are_answered_in_order(self):
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        with RawConn(self.o.port) as c:
            c.send(req + req + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            r1 = c.read_response()
            r2 = c.read_response()
            r3 = c.read_response()
            self.assertEqual([r1.status, r2.status, r3.status], [200, 200, 404])
            self.assertTrue(c.closed_by_peer())

    def test_http10_closes_after_response(self):
        with RawConn(self.o.port) as c:
            r = c.request("GET", "/healthz", version="HTTP/1.0")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(c.closed_by_peer(), "HTTP/1.0 without keep-alive left open")


if __name__ == "__main__":
    unittest.main(verbosity=2)
