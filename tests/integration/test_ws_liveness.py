"""WebSocket liveness and drain: server pings at ws_ping_interval, a missing
pong closes the connection after ws_pong_timeout, a peer that never answers
our close is dropped at ws_close_timeout, and TERM closes WebSockets with
1001."""

import signal
import time

from harness import OrchdTestCase
from wsclient import OP_PING, Frame, WsClient


class LivenessTest(OrchdTestCase):

    def start(self, **over):
        cfg = {"workers": 1, "ws_echo_path": "/echo", "ws_ping_interval": "1s",
               "ws_pong_timeout": "1s", "ws_close_timeout": "1s"}
        cfg.update(over)
        return self.start_orchd(overrides=cfg)

    def test_server_pings_idle_connection_and_pong_keeps_it(self):
        o = self.start()
        with WsClient.open(o.port) as c:
            t0 = time.monotonic()
            f = c.recv_event(timeout=5)
            self.assertIsInstance(f, Frame)
            self.assertEqual(f.opcode, OP_PING, f)
            self.assertGreater(time.monotonic() - t0, 0.5, "pinged too early")
            c.pong(f.payload)
            # Answered: the connection survives past the pong timeout and
            # keeps being pinged and echoing.
            f2 = c.recv_event(timeout=5)
            self.assertEqual(f2.opcode, OP_PING, f2)
            c.pong(f2.payload)
            m = c.echo(1, b"still here", timeout=3)
            self.assertEqual(m.data, b"still here")

    def test_missing_pong_closes_with_1001(self):
        o = self.start()
        with WsClient.open(o.port) as c:
            c.auto_pong = False
            f = c.recv_event(timeout=5)
            self.assertEqual(f.opcode, OP_PING)
            t0 = time.monotonic()
            code, reason = c.expect_close(timeout=5)
            self.assertEqual(code, 1001, reason)
            self.assertIn(b"pong", reason)
            self.assertLess(time.monotonic() - t0, 3.0)
            self.assertIn(c.wait_tcp_close(timeout=3), ("eof", "reset"))

    def test_ping_interval_zero_never_pings(self):
        o = self.start(ws_ping_interval="0")
        with WsClient.open(o.port) as c:
            self.assertFalse(c.readable(timeout=2.5), "unexpected frame")

    def test_close_timeout_drops_a_peer_that_never_answers(self):
        # The server starts a clean close (drain on TERM); the peer never
        # answers: TCP is closed at ws_close_timeout, long before the
        # drain timeout, and the worker exits right after.
        o = self.start(ws_ping_interval="0", ws_close_timeout="1s", drain_timeout="20s")
        with WsClient.open(o.port) as c:
            self.assertEqual(c.echo(1, b"x", timeout=3).data, b"x")
            t0 = time.monotonic()
            o.send_signal(signal.SIGTERM)
            code, _ = c.expect_close(timeout=3, reply=False)
            self.assertEqual(code, 1001)
            self.assertIn(c.wait_tcp_close(timeout=5), ("eof", "reset"))
            self.assertLess(time.monotonic() - t0, 4.0)
            self.assertEqual(o.wait_exit(5), 0)
            self.assertLess(time.monotonic() - t0, 6.0)

    def test_protocol_error_closes_tcp_without_waiting(self):
        o = self.start(ws_ping_interval="0", ws_close_timeout="10s")
        with WsClient.open(o.port) as c:
            c.send_frame(0x3, b"")  # reserved opcode
            t0 = time.monotonic()
            code, _ = c.expect_close(timeout=3, reply=False)
            self.assertEqual(code, 1002)
            self.assertIn(c.wait_tcp_close(timeout=4), ("eof", "reset"))
            self.assertLess(time.monotonic() - t0, 3.0)

    def test_term_closes_websockets_with_1001_and_exits(self):
        o = self.start(ws_ping_interval="0", drain_timeout="5s")
        c = WsClient.open(o.port)
        self.addCleanup(c.close)
        self.assertEqual(c.echo(1, b"x", timeout=3).data, b"x")
        o.send_signal(signal.SIGTERM)
        code, _ = c.expect_close(timeout=3)
        self.assertEqual(code, 1001)
        self.assertIn(c.wait_tcp_close(timeout=3), ("eof", "reset"))
        self.assertEqual(o.wait_exit(5), 0)
