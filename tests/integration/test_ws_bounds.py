"""Resource bounds of the WebSocket side of orchd: slowloris connections are
cut at handshake_timeout while normal clients keep being served; a client
that never reads is closed once its send queue passes max_send_queue, with
worker memory bounded; oversized request heads get 431 and oversized
messages close 1009.

The slowloris runs in a child Python process (this file with --slowloris),
driven by one selector, so that it does not steal the GIL from the normal
clients whose latency the test measures.
"""

import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from harness import OrchdTestCase, RawConn, read_file

import wsclient as w
from wsclient import OP_BINARY, OP_CLOSE, OP_TEXT, WsClient, build_frame

KIB = 1024
MIB = 1024 * 1024

SLOWLORIS_N = int(os.environ.get("WS_SLOWLORIS_N", "5000"))
HANDSHAKE_TIMEOUT = 2.0

SLOW_HEAD = (b"GET /daemon/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Slow: " + b"s" * 400)


def vmrss_kib(pid):
    for line in read_file("/proc/%d/status" % pid).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------
# the slowloris child process


def slowloris_main(port, n, hs_timeout, interval=0.5, batch=250, batch_gap=0.02):
    """Open n connections that never finish their request head: half trickle
    one byte every ~interval s, half send half a head and go silent.
    Prints 'CONNECTED <n> <failed>' once all connects completed, then
    'RESULT <json>' when every connection is closed or the deadline passed."""
    import heapq
    import selectors

    sel = selectors.DefaultSelector()
    addr = ("127.0.0.1", port)
    rng = random.Random(1)
    states = {}
    timers = []
    started = 0
    connected = 0
    failed = []
    closed = 0
    next_batch = 0.0
    announced = False
    t_start = time.monotonic()
    last_connect = None
    hard_deadline = None

    class St:
        __slots__ = ("sock", "mode", "pos", "t_conn", "t_closed", "how", "rx", "phase")

    def close_st(st, how, now):
        nonlocal closed
        if st.t_closed is not None:
            return
        st.t_closed = now
        st.how = how
        closed += 1
        try:
            sel.unregister(st.sock)
        except (KeyError, ValueError):
            pass
        st.sock.close()

    while True:
        now = time.monotonic()
        if started < n and now >= next_batch:
            for _ in range(min(batch, n - started)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = s.connect_ex(addr)
                st = St()
                st.sock, st.pos, st.t_conn, st.t_closed, st.how, st.rx = s, 0, None, None, None, 0
                st.mode = "trickle" if started % 2 == 0 else "half"
                st.phase = "connecting"
                if err not in (0, 115):  # EINPROGRESS
                    failed.append(os.strerror(err))
                    s.close()
                else:
                    states[s.fileno()] = st
                    sel.register(s, selectors.EVENT_WRITE, st)
                started += 1
            next_batch = now + batch_gap
        wait = 0.05
        if timers:
            wait = max(0.0, min(wait, timers[0][0] - now))
        for key, mask in sel.select(wait):
            st = key.data
            now = time.monotonic()
            if st.phase == "connecting":
                err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    failed.append(os.strerror(err))
                    st.phase = "failed"
                    sel.unregister(st.sock)
                    st.sock.close()
                    continue
                st.phase = "open"
                st.t_conn = now
                connected += 1
                last_connect = now
                try:
                    if st.mode == "half":
                        st.sock.send(SLOW_HEAD[:len(SLOW_HEAD) // 2])
                    else:
                        st.sock.send(SLOW_HEAD[:1])
                        st.pos = 1
                        heapq.heappush(timers, (now + interval * (0.5 + rng.random()),
                                                st.sock.fileno(), st))
                except OSError:
                    close_st(st, "send-error", now)
                    continue
                sel.modify(st.sock, selectors.EVENT_READ, st)
            else:
                try:
                    data = st.sock.recv(65536)
                except ConnectionResetError:
                    close_st(st, "reset", now)
                    continue
                except BlockingIOError:
                    continue
                if not data:
                    close_st(st, "eof", now)
                else:
                    st.rx += len(data)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, st = heapq.heappop(timers)
            if st.t_closed is not None:
                continue
            try:
                st.sock.send(SLOW_HEAD[st.pos:st.pos + 1])
                st.pos += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                close_st(st, "send-error", now)
                continue
            heapq.heappush(timers, (now + interval * (0.8 + 0.4 * rng.random()),
                                    st.sock.fileno(), st))
        if not announced and started == n and connected + len(failed) >= n:
            announced = True
            hard_deadline = now + hs_timeout + 6.0
            sys.stdout.write("CONNECTED %d %d %.3f\n" % (connected, len(failed),
                                                         now - t_start))
            sys.stdout.flush()
        if announced and (closed >= connected or now > hard_deadline):
            break
        if not announced and now - t_start > 30:
            break

    delays = sorted(st.t_closed - st.t_conn for st in states.values()
                    if st.t_closed is not None and st.t_conn is not None)
    still_open = [st for st in states.values() if st.phase == "open" and st.t_closed is None]
    hows = {}
    for st in states.values():
        if st.how:
            hows[st.how] = hows.get(st.how, 0) + 1

    def pct(p):
        return round(delays[min(len(delays) - 1, int(p * len(delays)))], 3) if delays else None

    res = {
        "n": n, "connected": connected, "failed_connects": len(failed),
        "failed_examples": failed[:5], "closed_by_server": len(delays),
        "still_open": len(still_open), "how": hows,
        "delay_min": pct(0.0), "delay_p50": pct(0.5), "delay_p99": pct(0.99),
        "delay_max": round(delays[-1], 3) if delays else None,
        "late": sum(1 for d in delays if d > hs_timeout + 2.0),
        "early": sum(1 for d in delays if d < hs_timeout * 0.5),
        "bytes_received": sum(st.rx for st in states.values()),
        "connect_spread": round((last_connect or t_start) - t_start, 3),
        "by_mode": {m: [round(st.t_closed - st.t_conn, 3) if st.t_closed else None
                        for st in states.values() if st.mode == m and st.t_conn][:3]
                    for m in ("trickle", "half")},
    }
    sys.stdout.write("RESULT %s\n" % json.dumps(res))
    sys.stdout.flush()


# --------------------------------------------------------------------------
# helpers


class EchoProbe(threading.Thread):
    """Keeps one connection echoing 1 KiB messages every `period` seconds,
    recording failures and the worst latency."""

    def __init__(self, port, period=0.02):
        super().__init__(daemon=True)
        self.port = port
        self.period = period
        self.stop_event = threading.Event()
        self.count = 0
        self.errors = []
        self.max_latency = 0.0

    def run(self):
        try:
            c = WsClient.open(self.port, "/echo", timeout=3.0)
        except Exception as e:  # noqa: BLE001
            self.errors.append("open: %s" % e)
            return
        with c:
            i = 0
            while not self.stop_event.is_set():
                p = ("probe-%d-" % i).encode() + b"x" * 1000
                t0 = time.monotonic()
                try:
                    m = c.echo(OP_TEXT, p, timeout=3.0)
                except Exception as e:  # noqa: BLE001
                    self.errors.append("echo %d: %s" % (i, e))
                    return
                dt = time.monotonic() - t0
                self.max_latency = max(self.max_latency, dt)
                if m.data != p:
                    self.errors.append("echo %d: wrong data" % i)
                    return
                self.count += 1
                i += 1
                self.stop_event.wait(self.period)
            try:
                c.close_handshake(timeout=3.0)
            except Exception as e:  # noqa: BLE001
                self.errors.append("close: %s" % e)

    def stop(self):
        self.stop_event.set()
        self.join(10)


def normal_client(port, i):
    """Upgrade, echo, close.  Returns (latency of upgrade+echo, error)."""
    t0 = time.monotonic()
    try:
        c = WsClient.open(port, "/echo", timeout=3.0)
        with c:
            p = ("normal-%d" % i).encode()
            m = c.echo(OP_TEXT, p, timeout=3.0)
            dt = time.monotonic() - t0
            if m.data != p:
                return dt, "wrong echo"
            c.close_handshake(timeout=3.0)
            return dt, None
    except Exception as e:  # noqa: BLE001
        return time.monotonic() - t0, "%s: %s" % (type(e).__name__, e)


class WsBoundsTest(OrchdTestCase):

    def start_ws(self, **overrides):
        cfg = {"ws_echo_path": "/echo", "log_level": "info"}
        cfg.update(overrides)
        o = self.start_orchd(overrides=cfg)
        self.workers_before = set(o.worker_pids())
        return o

    def assertServerHealthy(self, o):
        self.assertEqual(o.healthz()["status"], "ok")
        self.assertEqual(set(o.worker_pids()), self.workers_before,
                         "worker set changed (a worker crashed?)" + self.diag(o))

    # ---- slowloris ------------------------------------------------------------

    def test_slowloris_closed_at_handshake_timeout_while_normal_clients_served(self):
        o = self.start_ws(handshake_timeout="%ds" % HANDSHAKE_TIMEOUT)
        child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--slowloris", str(o.port),
             str(SLOWLORIS_N), str(HANDSHAKE_TIMEOUT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def reap():
            if child.poll() is None:
                child.kill()
            child.wait(5)
            child.stdout.close()
            child.stderr.close()
        self.addCleanup(reap)

        def read_line(timeout):
            r, _, _ = select.select([child.stdout], [], [], timeout)
            return child.stdout.readline() if r else ""

        line = read_line(40)
        self.assertTrue(line.startswith("CONNECTED"),
                        "slowloris never connected: %r %s%s"
                        % (line, child.stderr.read() if child.poll() is not None else "",
                           self.diag(o)))
        _, nconn, nfail, spread = line.split()
        self.note("slowloris: %s connected, %s failed in %ss", nconn, nfail, spread)

        # 200 normal clients during the slowloris window: 10 threads x 20,
        # spread over ~2 s so they straddle the moment the slow ones are cut.
        results = []
        lock = threading.Lock()

        def worker(k):
            for j in range(20):
                r = normal_client(o.port, k * 100 + j)
                with lock:
                    results.append(r)
                time.sleep(0.1)

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

        line = read_line(HANDSHAKE_TIMEOUT + 15)
        self.assertTrue(line.startswith("RESULT "), "slowloris gave no result: %r" % line)
        res = json.loads(line[len("RESULT "):])
        sys.stderr.write("\n  slowloris: %s\n" % json.dumps(res, sort_keys=True))

        errors = [e for _, e in results if e]
        lat = sorted(d for d, _ in results)
        sys.stderr.write("  normal clients: %d done, %d errors, latency p50 %.3f s max %.3f s\n"
                         % (len(results), len(errors), lat[len(lat) // 2] if lat else -1,
                            lat[-1] if lat else -1))
        self.assertEqual(len(results), 200)
        self.assertEqual(errors, [], "normal clients failed during the slowloris: %s%s"
                         % (errors[:5], self.diag(o)))
        self.assertLess(lat[-1], 1.0, "a normal client took %.3f s" % lat[-1])

        self.assertEqual(res["connected"], SLOWLORIS_N, "slowloris connects failed: %s" % res)
        self.assertEqual(res["still_open"], 0,
                         "%d slow connections still open %.0f s after connecting: %s%s"
                         % (res["still_open"], HANDSHAKE_TIMEOUT + 6, res, self.diag(o)))
        self.assertEqual(res["late"], 0, "slow connections closed after handshake_timeout "
                         "+ 2 s: %s" % res)
        self.assertEqual(res["early"], 0, "slow connections closed before half of "
                         "handshake_timeout: %s" % res)
        self.assertServerHealthy(o)

    # ---- a client that never reads -------------------------------------------

    def flood_without_reading(self, o, frame, seconds, rss_guard_mib=256):
        """Upgrade a connection with a tiny receive buffer and send frame
        over and over without ever reading, for at most `seconds` or until
        the server closes it, sampling the workers' VmRSS.  Stops early if a
        worker grows by rss_guard_mib (so a leak cannot take the machine).
        Returns a dict with what happened."""
        workers = o.worker_pids()
        base = {p: vmrss_kib(p) for p in workers}
        peak = dict(base)
        c = WsClient(o.port, path="/echo", rcvbuf=4096, timeout=5.0)
        c.connect()
        self.addCleanup(c.close)
        r = c.handshake()
        self.assertEqual(r.status, 101, r)
        sock = c.sock
        sock.setblocking(False)
        blob = frame * max(1, (64 * KIB) // len(frame))
        sent = 0
        t0 = time.monotonic()
        closed_how = None
        guard_hit = False
        pending = memoryview(b"")
        last_sample = 0.0
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now - last_sample > 0.05:
                last_sample = now
                for p in workers:
                    peak[p] = max(peak[p], vmrss_kib(p))
                if max(peak[p] - base[p] for p in workers) > rss_guard_mib * 1024:
                    guard_hit = True
                    break
            st = c.tcp_state()
            if st != "ESTABLISHED":
                closed_how = "tcp state %s" % st
                break
            if not pending:
                pending = memoryview(blob)
            _, wr, _ = select.select([], [sock], [], 0.1)
            if not wr:
                continue
            try:
                k = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                continue
            except (BrokenPipeError, ConnectionResetError) as e:
                closed_how = "send: %s" % type(e).__name__
                break
            sent += k
            pending = pending[k:]
        elapsed = time.monotonic() - t0
        for p in workers:
            peak[p] = max(peak[p], vmrss_kib(p))
        # What did the server say?  Read what is buffered (if anything).
        code = None
        if closed_how is not None:
            sock.setblocking(True)
            try:
                code = c.expect_close(timeout=2.0, reply=False)[0]
            except (w.WsError, OSError):
                pass
        c.close()
        return {"closed": closed_how, "elapsed": round(elapsed, 2), "sent_kib": sent // 1024,
                "close_code": code, "guard_hit": guard_hit,
                "rss_growth_mib": {p: (peak[p] - base[p]) // 1024 for p in workers},
                "max_growth_kib": max(peak[p] - base[p] for p in workers)}

    def test_never_reading_client_is_closed_at_max_send_queue(self):
        o = self.start_ws(max_send_queue="256k", ws_compression="off")
        probe = EchoProbe(o.port)
        probe.start()
        self.addCleanup(probe.stop)
        res = self.flood_without_reading(o, build_frame(OP_BINARY, os.urandom(64 * KIB)), 20.0)
        time.sleep(0.3)
        probe.stop()
        sys.stderr.write("\n  never-reader (64 KiB messages): %s; probe %d echoes, max %.3f s, "
                         "errors %s\n" % (json.dumps(res, sort_keys=True), probe.count,
                                           probe.max_latency, probe.errors[:3]))
        self.assertFalse(res["guard_hit"], "worker RSS grew past the guard: %s" % res)
        self.assertIsNotNone(res["closed"], "client that never reads was not closed within "
                             "20 s: %s%s" % (res, self.diag(o)))
        # ws_close_timeout (5 s by default) may be spent waiting for the close
        # reply that a client which never reads cannot send.
        self.assertLess(res["elapsed"], 8.0, "closing the never-reader took too long: %s" % res)
        if res["close_code"] is not None:
            self.assertEqual(res["close_code"], 1008, res)
        self.assertIn("send queue", o.log_text(), "no slow-consumer close logged" + self.diag(o))
        self.assertLess(res["max_growth_kib"], 64 * 1024, "worker RSS grew: %s" % res)
        self.assertEqual(probe.errors, [], "echo probe failed: %s" % probe.errors)
        self.assertGreater(probe.count, 10)
        self.assertLess(probe.max_latency, 1.0)
        self.assertServerHealthy(o)

    def test_never_reading_client_flooding_pings_is_bounded(self):
        # Every ping asks for a pong.  A client that never reads must not
        # make the worker queue pongs without bound: max_send_queue applies
        # (close 1008), or pongs are coalesced (RFC 6455 5.5.3); either way
        # memory stays bounded.
        o = self.start_ws(max_send_queue="256k", ws_compression="off")
        probe = EchoProbe(o.port)
        probe.start()
        self.addCleanup(probe.stop)
        res = self.flood_without_reading(o, build_frame(w.OP_PING, os.urandom(125)), 4.0)
        time.sleep(0.3)
        probe.stop()
        sys.stderr.write("\n  never-reader (125-byte pings): %s; probe %d echoes, max %.3f s, "
                         "errors %s\n" % (json.dumps(res, sort_keys=True), probe.count,
                                           probe.max_latency, probe.errors[:3]))
        self.assertFalse(res["guard_hit"], "worker RSS grew by more than 256 MiB within %.1f s "
                         "of a ping flood from one client that never reads (pongs queued "
                         "without bound?): %s" % (res["elapsed"], res))
        self.assertLess(res["max_growth_kib"], 64 * 1024, "worker RSS grew: %s" % res)
        if res["close_code"] is not None:
            self.assertEqual(res["close_code"], 1008, res)
        self.assertEqual(probe.errors, [], "echo probe failed: %s" % probe.errors)
        self.assertServerHealthy(o)

    # ---- oversized head / message ---------------------------------------------

    def _upgrade_with(self, port, extra_headers, path="/echo"):
        c = WsClient(port, path=path, timeout=5.0)
        c.connect()
        try:
            try:
                return c.handshake(headers=extra_headers, validate=False)
            except (w.ConnectionClosed, BrokenPipeError, ConnectionResetError) as e:
                return e
        finally:
            c.close()

    def test_oversized_request_head_is_431(self):
        o = self.start_ws(http_max_header_size="8k")
        cases = [
            ("one 9 KiB header", [("X-Pad", "a" * (9 * KIB))], 431),
            ("200 headers of 60 bytes", [("X-Pad-%d" % i, "b" * 50) for i in range(200)], 431),
            ("one 6 KiB header (under the limit)", [("X-Pad", "c" * (6 * KIB))], 101),
        ]
        for name, hdrs, want in cases:
            with self.subTest(name):
                r = self._upgrade_with(o.port, hdrs)
                self.assertIsInstance(r, w.HttpResponse, "%s: no response (%r)%s"
                                      % (name, r, self.diag(o)))
                self.assertEqual(r.status, want, "%s: %r" % (name, r))
                if want != 101:
                    self.assertEqual(r.header("connection", "").lower(), "close", r.headers)
                    doc = json.loads(r.body.decode("utf-8"))
                    self.assertIsInstance(doc.get("error"), str, doc)
        with self.subTest("12 KiB head written in 1 KiB pieces"):
            c = WsClient(o.port, path="/echo", timeout=5.0)
            c.connect()
            with c:
                req = c.build_request(headers=[("X-Pad", "e" * (12 * KIB))])
                try:
                    c.send_raw(req, chop=KIB, delay=0.01)
                except OSError:
                    pass  # closed on us mid-head: the answer must be buffered
                try:
                    r = c.read_http_response()
                except w.WsError as e:
                    self.fail("no 431 for a head arriving in pieces: %s%s" % (e, self.diag(o)))
                self.assertEqual(r.status, 431, r)
        with self.subTest("plain GET /healthz with a 9 KiB header"):
            with RawConn(o.port) as rc:
                rc.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % ("d" * 9 * KIB))
                r = rc.read_response()
                self.assertEqual(r.status, 431, r)
        self.assertServerHealthy(o)

    def test_oversized_message_is_1009(self):
        o = self.start_ws(ws_max_message_size="64k", ws_compression_min_size=0)
        cases = [
            ("one frame of 64k+1", lambda c: c.send_binary(os.urandom(64 * KIB + 1))),
            ("fragments adding up to 64k+1",
             lambda c: c.send_binary(os.urandom(64 * KIB + 1), fragment=8 * KIB)),
            ("header announcing 1 GiB only",
             lambda c: c.send_raw(b"\x82\xff" + struct.pack("!Q", 1 << 30) + b"abcd")),
            ("compressed 4 MiB of zeros",
             lambda c: c.send_binary(b"\0" * (4 * MIB), compress=True)),
        ]
        for name, fn in cases:
            with self.subTest(name):
                c = WsClient.open(o.port, "/echo", offer="permessage-deflate", timeout=5.0)
                with c:
                    try:
                        fn(c)
                    except OSError:
                        pass
                    try:
                        code, _ = c.expect_close(timeout=3.0)
                    except w.WsError as e:
                        self.fail("%s: no close (%s)%s" % (name, e, self.diag(o)))
                    self.assertEqual(code, 1009, name)
                    self.assertTrue(c.wait_tcp_close(3.0), "%s: TCP left open" % name)
        # the limit itself is fine
        c = WsClient.open(o.port, "/echo", timeout=5.0)
        with c:
            p = os.urandom(64 * KIB)
            self.assertEqual(c.echo(OP_BINARY, p).data, p)
        self.assertServerHealthy(o)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--slowloris":
        slowloris_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        unittest.main()
