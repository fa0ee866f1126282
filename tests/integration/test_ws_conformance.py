"""WebSocket conformance of orchd (RFC 6455 + RFC 7692), in the spirit of the
Autobahn|Testsuite fuzzingclient case groups (which cannot run here).

Every case is one row of a table: an Autobahn-style id, a description, the
expected verdict and a function that produces the verdict it got.  Most cases
open a fresh connection to the echo endpoint (`ws_echo_path /echo`), send
some frames and then record everything the server does until TCP closes: data
messages (checked byte for byte against what was sent, and whether they came
compressed), pongs, the close frame (its code, and whether it answered our
close or was the server's own) and the TCP close.  The expected verdict is the
same kind of event list, so "got" and "expected" print side by side.

Each case is a unittest subTest (failures count); a summary table of every
case goes to stderr at the end.  The whole run is bounded by TIME_BUDGET.

Groups: hs (handshake), 1 framing, 2 ping/pong, 3 reserved bits, 4 reserved
opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits and big messages,
10 keepalive pings, 12 permessage-deflate round trips, 13 permessage-deflate
negotiation parameters.
"""

import collections
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import time
import unittest

from harness import ORCHD_BIN, Orchd, OrchdTestCase

import wsclient as w
from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                      WsClient, build_frame, close_payload)

KIB = 1024
MIB = 1024 * 1024
# Hard bound on the whole suite: cases not started by then are failed.
TIME_BUDGET = float(os.environ.get("WS_CONFORMANCE_BUDGET", "160"))
CASE_TIMEOUT = 4.0      # default deadline of one case
TCP_CLOSE_WAIT = 2.0    # after the close frame, the server must close TCP within this

# Limits of the "limit" instance.
LIMIT = 64 * KIB

# The orchd instances the cases run against (name -> config overrides).
TARGETS = collections.OrderedDict([
    # The main echo instance: everything compressed, big messages allowed.
    ("main", {"ws_echo_path": "/echo", "ws_max_message_size": "2m",
              "max_send_queue": "8m", "ws_compression_min_size": 0,
              "ws_close_timeout": "2s"}),
    # A small message limit.
    ("limit", {"ws_echo_path": "/echo", "ws_max_message_size": "64k",
               "ws_compression_min_size": 0}),
    # Compression switched off.
    ("nocomp", {"ws_echo_path": "/echo", "ws_compression": "off"}),
    # Defaults (1m messages, 1m send queue, compression from 64 bytes),
    # plus an Origin allow-list.
    ("defaults", {"ws_echo_path": "/echo",
                  "ws_allowed_origins": "https://good.example https://other.example"}),
    # Nothing WebSocket-specific configured at all (no echo endpoint).
    ("plain", {}),
    # Server pings every second, 1 s to answer.
    ("keepalive", {"ws_echo_path": "/echo", "ws_ping_interval": "1s",
                   "ws_pong_timeout": "1s"}),
])


class Target:
    def __init__(self, name, port, orchd=None):
        self.name = name
        self.port = port
        self.orchd = orchd

    def diagnostics(self):
        return self.orchd.diagnostics(lines=15) if self.orchd else ""


def start_targets(tmpdir):
    """Start one orchd per TARGETS entry.  Returns ({name: Target}, stop)."""
    started = []

    def stop():
        for o in started:
            try:
                o.stop()
            except Exception:  # noqa: BLE001 - best effort
                pass

    targets = {}
    try:
        for name, overrides in TARGETS.items():
            d = os.path.join(tmpdir, name)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
            o = Orchd(d)
            started.append(o)
            o.write_config(o.default_config(**overrides))
            o.start()
            targets[name] = Target(name, o.port, o)
    except BaseException:
        stop()
        raise
    return targets, stop


# --------------------------------------------------------------------------
# payloads

WORDS = ("orchd daemon event push websocket frame message channel presence "
         "orchestrator token heartbeat subscribe queue replay deflate window "
         "context takeover fragment continuation payload mask opcode close "
         "ping pong status redis stream worker relay supervisor lorem ipsum "
         "dolor sit amet consectetur adipiscing elit sed do eiusmod tempor").split()


def _corpus(n, seed):
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n:
        word = rng.choice(WORDS)
        if rng.random() < 0.1:
            word += str(rng.randrange(100000))
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts).encode("ascii")[:n]


_CORPUS = None


def compressible(n, seed=0):
    """n bytes of word-salad ASCII text (compresses ~3:1)."""
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = _corpus(2 * MIB, 1)
    start = (seed * 7919) % (len(_CORPUS) - n) if n < len(_CORPUS) else 0
    return _CORPUS[start:start + n]


_PRINTABLE = bytes(32 + (i % 95) for i in range(256))


def text_payload(n, seed=0):
    """n random printable ASCII bytes (incompressible-ish, valid UTF-8)."""
    return random.Random(seed).randbytes(n).translate(_PRINTABLE)


def bin_payload(n, seed=0):
    return random.Random(seed ^ 0x5EED).randbytes(n)


# --------------------------------------------------------------------------
# events: what a case expects and what it got


def T(p, z=None):
    return ("text", p.encode("utf-8") if isinstance(p, str) else p, z)


def B(p, z=None):
    return ("binary", p, z)


def PONG(p=b""):
    return ("pong", p.encode("utf-8") if isinstance(p, str) else p)


def REPLY(code=1000):
    """The server's close answering a close we sent first, then TCP close."""
    return [("close", code, "client"), ("tcp",)]


def ECHO(*evs, code=1000):
    """Data/pong events, then our close(code) answered, then TCP close."""
    return list(evs) + REPLY(code)


def FAIL(code, *evs):
    """Data/pong events, then the server's own close(code), then TCP close."""
    return list(evs) + [("close", code, "server"), ("tcp",)]


def ev_match(e, g):
    if e[0] != g[0]:
        return False
    if e[0] in ("text", "binary"):
        return e[1] == g[1] and (e[2] is None or e[2] == g[2])
    if e[0] == "pong":
        return e[1] == g[1]
    if e[0] == "close":
        return e[1] == g[1] and e[2] == g[2]
    return True


def events_match(exp, got):
    return len(exp) == len(got) and all(ev_match(e, g) for e, g in zip(exp, got))


def fmt_event(e, ref=None):
    k = e[0]
    if k in ("text", "binary"):
        s = "%s %dB" % (k, len(e[1]))
        show_z = e[2] if ref is None or ref[0] != k else (ref[2] is not None and e[2])
        if ref is not None and ref[0] == k and ref[2] is not None and ref[2] != e[2]:
            s += " z" if e[2] else " plain"
        elif show_z:
            s += " z"
        if ref is not None and ref[0] == k and ref[1] != e[1] and len(ref[1]) == len(e[1]):
            s += " (payload differs)"
        return s
    if k == "pong":
        s = "pong %dB" % len(e[1])
        if ref is not None and ref[0] == "pong" and ref[1] != e[1]:
            s += " (payload differs)"
        return s
    if k == "close":
        code = "-" if e[1] is None else str(e[1])
        return ("close %s" if e[2] == "server" else "close-reply %s") % code
    if k == "tcp":
        return "tcp-closed"
    if k == "abort":
        return "tcp-%s without close" % e[1]
    if k == "timeout":
        return "timeout(%s)" % e[1] if len(e) > 1 else "timeout"
    if k == "violation":
        return "server violation: %s" % e[1]
    if k == "senderr":
        return "send failed: %s" % e[1]
    if k == "hs":
        return "handshake: %s" % e[1]
    return repr(e)


def fmt_events(evs, ref=None):
    parts = []
    for i, e in enumerate(evs):
        r = ref[i] if ref is not None and i < len(ref) else None
        parts.append(fmt_event(e, r))
    # collapse runs: "pong 4B x10"
    out = []
    for p in parts:
        if out and out[-1][0] == p:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return ", ".join(p if n == 1 else "%s x%d" % (p, n) for p, n in out)


def drain(c, expect, timeout=CASE_TIMEOUT):
    """Record what the server does until TCP closes (or the deadline).

    If expect has a close made by the client ('close', code, 'client'), the
    client sends that close once it has seen as many events as expect lists
    before it (unless the case already sent a close).  A server close is
    answered with a close echoing its code."""
    deadline = time.monotonic() + timeout
    idx = next((i for i, e in enumerate(expect) if e[0] == "close"), None)
    client_close = idx is not None and expect[idx][2] == "client"
    got = []
    while True:
        if client_close and not c.close_sent and len(got) >= idx:
            e = expect[idx]
            try:
                c.send_close(raw=e[3] if len(e) > 3 else close_payload(e[1]))
            except OSError as ex:
                got.append(("senderr", "close: %s" % ex))
                c.close_sent = True
        try:
            ev = c.recv_event(deadline=deadline)
        except w.Timeout:
            got.append(("timeout", "no TCP close" if c.close_received else "no close"))
            break
        except w.ConnectionClosed as ex:
            if c.close_received is not None:
                got.append(("tcp",))
            else:
                got.append(("abort", "reset" if ex.reset else "eof"))
            break
        except w.ProtocolViolation as ex:
            got.append(("violation", str(ex)))
            break
        if isinstance(ev, w.Message):
            got.append(("text" if ev.opcode == OP_TEXT else "binary", ev.data, ev.compressed))
            continue
        if ev.opcode == OP_PING:
            if not c.close_sent:
                try:
                    c.pong(ev.payload)
                except OSError:
                    pass
            continue
        if ev.opcode == OP_PONG:
            got.append(("pong", ev.payload))
            continue
        # close
        code, _reason = ev.close_info()
        got.append(("close", code, "client" if c.close_sent else "server"))
        if not c.close_sent:
            try:
                c.send_close(code if code is not None and w.valid_close_code(code) else None)
            except OSError:
                pass
        deadline = min(deadline, time.monotonic() + TCP_CLOSE_WAIT)
    return got


# --------------------------------------------------------------------------
# cases


class Case:
    """One conformance case.

    Generic form: send(c) sends frames on a fresh connection (path, offer);
    then drain() records events, compared with the expected event list.
    Custom form: run(ctx) returns the got string, or (got string, ok)."""

    def __init__(self, cid, desc, expect, send=None, run=None, target="main",
                 path="/echo", offer=None, timeout=CASE_TIMEOUT, alt=None,
                 nonstrict=None):
        self.cid = cid
        self.desc = desc
        self.expect = expect
        self.send = send
        self.run = run
        self.target = target
        self.path = path
        self.offer = offer
        self.timeout = timeout
        self.alt = alt or []  # alternative acceptable event lists
        # acceptable but less than ideal (Autobahn's NON-STRICT), e.g. an echo
        # of a message that preceded a protocol error being dropped
        self.nonstrict = nonstrict or []

    @property
    def group(self):
        return self.cid.split(".")[0]

    def expected_str(self):
        if isinstance(self.expect, str):
            return self.expect
        s = fmt_events(self.expect)
        for a in self.alt:
            s += " | " + fmt_events(a)
        for a in self.nonstrict:
            s += " | (non-strict) " + fmt_events(a)
        return s


class Ctx:
    def __init__(self, targets):
        self.targets = targets

    def port(self, name):
        return self.targets[name].port

    def open(self, target="main", path="/echo", offer=None, **kw):
        return WsClient.open(self.port(target), path, offer=offer, **kw)


def execute(case, ctx):
    """Run a case; returns (got string, verdict): OK, NON-STRICT or FAIL."""
    if case.run is not None:
        res = case.run(ctx)
        if not isinstance(res, tuple):
            res = (res, res == case.expect)
        return res[0], "OK" if res[1] else "FAIL"
    try:
        c = ctx.open(case.target, case.path, case.offer, timeout=case.timeout)
    except w.HandshakeError as e:
        return fmt_event(("hs", str(e))), False
    with c:
        try:
            case.send(c)
            got = drain(c, case.expect, case.timeout)
        except OSError as e:
            # The server may close on us while we still send: read what it said.
            got = [("senderr", str(e))] + drain(c, case.expect, case.timeout)
            if any(events_match(a, got[1:])
                   for a in [case.expect] + case.alt + case.nonstrict):
                got = got[1:]
    if any(events_match(a, got) for a in [case.expect] + case.alt):
        verdict = "OK"
    elif any(events_match(a, got) for a in case.nonstrict):
        verdict = "NON-STRICT"
    else:
        verdict = "FAIL"
    ref = case.expect
    for a in case.alt + case.nonstrict:
        if len(a) == len(got) and len(case.expect) != len(got):
            ref = a
    return fmt_events(got, ref), verdict


# ---- helpers used by the case tables -----------------------------------------


def chopped(c, frame, chop=1, delay=0.0):
    c.send_raw(frame, chop=chop, delay=delay)


def hlen_of(frame):
    n = frame[1] & 0x7F
    return 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if frame[1] & 0x80 else 0)


def send_chopped_frame(c, frame, payload_chop=1):
    """Header one byte at a time (with tiny pauses), payload in payload_chop."""
    h = hlen_of(frame)
    c.send_raw(frame[:h], chop=1, delay=0.001)
    c.send_raw(frame[h:], chop=payload_chop)


def send_compressed_parts(c, op, data, nparts):
    """Compress data as one message and send it in nparts fragments."""
    z = c.deflater.compress(data)
    step = max(1, -(-len(z) // nparts))
    pieces = [z[i:i + step] for i in range(0, len(z), step)] or [b""]
    for i, piece in enumerate(pieces):
        c.send_frame(op if i == 0 else OP_CONT, piece, rsv1=(i == 0),
                     fin=(i == len(pieces) - 1))


def _cont_rsv1_compressed(c):
    z = c.deflater.compress(b"hello hello hello")
    c.send_frame(OP_TEXT, z[:3], rsv1=True, fin=False)
    c.send_frame(OP_CONT, z[3:], rsv1=True)


def seq(*fns):
    def send(c):
        for f in fns:
            f(c)
    return send


def frame(op, payload=b"", **kw):
    return lambda c: c.send_frame(op, payload, **kw)


def msg(op, payload, **kw):
    return lambda c: c.send_message(op, payload, **kw)


def raw(data):
    return lambda c: c.send_raw(data)


CASES = []


def add(*a, **kw):
    CASES.append(Case(*a, **kw))


# ---- hs: handshake --------------------------------------------------------------


def http_case(target, request_fn, want_status, want_headers=None, want_json=True,
              path="/echo"):
    """A custom run: send a raw upgrade request; check status, JSON error
    body + Connection: close (errors), and extra headers."""

    def run(ctx):
        c = WsClient(ctx.port(target), path=path, timeout=CASE_TIMEOUT)
        try:
            c.connect()
            req = request_fn(c)
            try:
                r = c.handshake(raw_request=req, validate=(want_status == 101))
            except w.HandshakeError as e:
                return "bad 101: %s" % e, False
            except (w.Timeout, w.ConnectionClosed) as e:
                return "no response (%s)" % e, False
            notes = []
            if r.status != 101 and want_json and r.status >= 400:
                if not r.header("content-type", "").startswith("application/json"):
                    notes.append("content-type %r" % r.header("content-type"))
                try:
                    import json
                    doc = json.loads(r.body.decode("utf-8"))
                    if not isinstance(doc, dict) or "error" not in doc:
                        notes.append("body %r" % r.body[:60])
                except ValueError:
                    notes.append("body not JSON %r" % r.body[:60])
                if r.header("connection", "").lower() != "close":
                    notes.append("no Connection: close")
            for k, v in (want_headers or {}).items():
                if (r.header(k) or "").lower() != v.lower():
                    notes.append("%s: %r" % (k, r.header(k)))
            if r.status == 101:
                # prove the connection works
                try:
                    m = c.echo(OP_TEXT, b"hello", timeout=2.0)
                    if m.data != b"hello":
                        notes.append("echo %r" % m.data)
                except Exception as e:  # noqa: BLE001
                    notes.append("no echo after 101 (%s)" % e)
            got = str(r.status) + ("" if not notes else " (" + "; ".join(notes) + ")")
            want = want_status if isinstance(want_status, tuple) else (want_status,)
            return got, (r.status in want and not notes)
        finally:
            c.close()
    return run


def req(path="/echo", **kw):
    return lambda c: c.build_request(path=path, **kw)


def raw_req(text):
    return lambda c: text.replace("{KEY}", w.make_key()).encode("latin-1")


def build_hs():
    add("hs.1", "valid upgrade on ws_echo_path (accept key, Upgrade, Connection)", "101",
        run=http_case("main", req(), 101))
    add("hs.2", "valid upgrade on ws_path /daemon/ws", "101",
        run=lambda ctx: _upgrade_only(ctx, "main", "/daemon/ws"))
    add("hs.3", "Upgrade: WebSocket (mixed case), Connection: keep-alive, Upgrade", "101",
        run=http_case("main", req(upgrade="WebSocket", connection="keep-alive, Upgrade"), 101))
    add("hs.4", "Connection token in upper case: 'UPGRADE'", "101",
        run=http_case("main", req(connection="UPGRADE"), 101))
    add("hs.5", "query string on the echo path (/echo?x=1)", "101",
        run=http_case("main", req("/echo?x=1"), 101))
    add("hs.6", "Sec-WebSocket-Version: 8 -> 426 + Sec-WebSocket-Version: 13", "426",
        run=http_case("main", req(version="8"), 426, {"sec-websocket-version": "13"}))
    add("hs.7", "no Sec-WebSocket-Version -> 426 + Sec-WebSocket-Version: 13", "426",
        run=http_case("main", req(omit=("Sec-WebSocket-Version",)), 426,
                      {"sec-websocket-version": "13"}))
    add("hs.8", "no Sec-WebSocket-Key -> 400", "400",
        run=http_case("main", req(omit=("Sec-WebSocket-Key",)), 400))
    add("hs.9", "Sec-WebSocket-Key 'abc' -> 400", "400",
        run=http_case("main", req(key="abc"), 400))
    add("hs.10", "Sec-WebSocket-Key base64 of 15 bytes -> 400", "400",
        run=http_case("main", req(key=w.make_key(15)), 400))
    add("hs.11", "Sec-WebSocket-Key base64 of 17 bytes -> 400", "400",
        run=http_case("main", req(key=w.make_key(17)), 400))
    add("hs.12", "Sec-WebSocket-Key with non-base64 characters -> 400", "400",
        run=http_case("main", req(key="!!!!!!!!!!!!!!!!!!!!!!=="), 400))
    add("hs.13", "no Host -> 400", "400",
        run=http_case("main", req(omit=("Host",)), 400))
    add("hs.14", "POST with upgrade headers -> 405", "405",
        run=http_case("main", req(method="POST", headers=[("Content-Length", "0")]), 405))
    add("hs.15", "upgrade request to an unknown path -> 404", "404",
        run=http_case("main", req("/nope"), 404))
    add("hs.16", "plain GET (no Upgrade) to /daemon/ws -> 426", "426",
        run=http_case("main", raw_req("GET /daemon/ws HTTP/1.1\r\nHost: x\r\n\r\n"), 426))
    add("hs.17", "Upgrade: websocket but Connection: keep-alive only -> 400/426", "400|426",
        run=http_case("main", req(connection="keep-alive"), (400, 426)))
    add("hs.18", "Connection: upgraded (not the token 'upgrade') -> 400/426", "400|426",
        run=http_case("main", req(connection="upgraded"), (400, 426)))
    add("hs.19", "Upgrade: h2c instead of websocket -> 400/426", "400|426",
        run=http_case("main", req(upgrade="h2c"), (400, 426)))
    add("hs.20", "Origin not in ws_allowed_origins -> 403", "403",
        run=http_case("defaults", req(origin="https://evil.example"), 403))
    add("hs.21", "Origin in ws_allowed_origins -> 101", "101",
        run=http_case("defaults", req(origin="https://other.example"), 101))
    add("hs.22", "no Origin with ws_allowed_origins set -> 101", "101",
        run=http_case("defaults", req(), 101))
    add("hs.23", "/echo without ws_echo_path configured -> 404", "404",
        run=http_case("plain", req("/echo"), 404))
    add("hs.24", "Sec-WebSocket-Protocol offered: 101 without selecting one", "101",
        run=http_case("main", req(protocols="chat, superchat"), 101))
    add("hs.25", "request head chopped into 1-byte writes", "101",
        run=_chopped_handshake)
    add("hs.26", "first frame in the same write as the request head", "text 5B",
        run=_pipelined_first_frame)
    add("hs.27", "binary message on /daemon/ws -> close 1003", "close 1003, tcp-closed",
        run=_binary_on_daemon_path)


def _upgrade_only(ctx, target, path):
    c = WsClient(ctx.port(target), path=path, timeout=CASE_TIMEOUT)
    try:
        c.connect()
        r = c.handshake()
        return str(r.status), r.status == 101
    except w.HandshakeError as e:
        return "bad 101: %s" % e, False
    finally:
        c.close()


def _chopped_handshake(ctx):
    c = WsClient(ctx.port("main"), timeout=CASE_TIMEOUT)
    with c:
        c.connect()
        r = c.handshake(chop=1, delay=0.002)
        if r.status != 101:
            return str(r.status), False
        m = c.echo(OP_TEXT, "hello")
        return str(r.status), m.data == b"hello"


def _pipelined_first_frame(ctx):
    c = WsClient(ctx.port("main"), timeout=CASE_TIMEOUT)
    with c:
        c.connect()
        r = c.handshake(trailing=build_frame(OP_TEXT, b"hello"))
        if r.status != 101:
            return str(r.status), False
        try:
            m = c.recv_message(2.0)
        except Exception as e:  # noqa: BLE001
            return "no echo (%s)" % e, False
        return fmt_event(("text", m.data, None)), m.data == b"hello"


def _binary_on_daemon_path(ctx):
    c = ctx.open("main", "/daemon/ws")
    with c:
        c.send_binary(b"\x00\x01\x02")
        got = drain(c, FAIL(1003))
    return fmt_events(got), events_match(FAIL(1003), got)


# ---- 1: framing -------------------------------------------------------------------

SIZES = [0, 125, 126, 127, 128, 65535, 65536, 65537, MIB - 1]


def build_1():
    for gi, (op, kind, gen, mk) in enumerate([(OP_TEXT, "text", text_payload, T),
                                              (OP_BINARY, "binary", bin_payload, B)]):
        g = "1.%d" % (gi + 1)
        for i, n in enumerate(SIZES):
            p = gen(n, n)
            big = n > 70000
            add("%s.%d" % (g, i + 1), "%s, %d bytes, one write" % (kind, n), ECHO(mk(p)),
                send=frame(op, p), timeout=15 if big else CASE_TIMEOUT)
        for i, n in enumerate(SIZES):
            p = gen(n, n + 1)
            big = n > 70000
            add("%s.%d" % (g, len(SIZES) + i + 1),
                "%s, %d bytes, chopped (%s)" % (kind, n, "1-byte writes" if not big
                                                 else "header 1-byte, payload 997-byte"),
                ECHO(mk(p)),
                send=(lambda op, p, big: lambda c: send_chopped_frame(
                    c, build_frame(op, p), 997 if big else 1))(op, p, big),
                timeout=20 if big else 10)
    # masking and framing odds and ends
    add("1.3.1", "unmasked text frame -> 1002", FAIL(1002),
        send=frame(OP_TEXT, b"hello", mask=False))
    add("1.3.2", "unmasked binary frame -> 1002", FAIL(1002),
        send=frame(OP_BINARY, b"\x00\x01", mask=False))
    add("1.3.3", "unmasked ping -> 1002 (no pong)", FAIL(1002),
        send=frame(OP_PING, b"x", mask=False))
    add("1.3.4", "unmasked close -> 1002", FAIL(1002),
        send=frame(OP_CLOSE, close_payload(1000), mask=False))
    add("1.3.5", "all-zero masking key is a valid mask", ECHO(T("zero-mask")),
        send=frame(OP_TEXT, b"zero-mask", mask_key=b"\0\0\0\0"))
    add("1.3.6", "text, 2 bytes, in one write with 125-byte binary", ECHO(T("hi"), B(bin_payload(125))),
        send=lambda c: c.send_raw(build_frame(OP_TEXT, b"hi") +
                                  build_frame(OP_BINARY, bin_payload(125))))
    msgs = [text_payload(1 + (i * 37) % 300, i) for i in range(100)]
    add("1.3.7", "100 small text messages pipelined in one write, echoed in order",
        ECHO(*[T(m) for m in msgs]),
        send=lambda c: c.send_raw(b"".join(build_frame(OP_TEXT, m) for m in msgs)))
    add("1.3.8", "16-bit length form carrying 200 bytes, masked, chopped 3 bytes",
        ECHO(B(bin_payload(200, 3))),
        send=lambda c: c.send_raw(build_frame(OP_BINARY, bin_payload(200, 3)), chop=3))
    add("1.3.9", "64-bit length form carrying 70000 bytes", ECHO(B(bin_payload(70000, 4))),
        send=frame(OP_BINARY, bin_payload(70000, 4)))


# ---- 2: ping / pong ---------------------------------------------------------------


def build_2():
    add("2.1", "ping, empty payload", ECHO(PONG(b"")), send=frame(OP_PING, b""))
    add("2.2", "ping, small text payload", ECHO(PONG("Hello, world!")),
        send=frame(OP_PING, b"Hello, world!"))
    add("2.3", "ping, binary payload 0x00..0x7c", ECHO(PONG(bytes(range(8)) + b"\xff\xfe")),
        send=frame(OP_PING, bytes(range(8)) + b"\xff\xfe"))
    add("2.4", "ping, 125-byte binary payload", ECHO(PONG(bin_payload(125, 24))),
        send=frame(OP_PING, bin_payload(125, 24)))
    add("2.5", "ping, 126-byte payload -> 1002", FAIL(1002),
        send=frame(OP_PING, bin_payload(126, 25)))
    add("2.6", "ping, 125 bytes, chopped into 1-byte writes", ECHO(PONG(bin_payload(125, 26))),
        send=lambda c: send_chopped_frame(c, build_frame(OP_PING, bin_payload(125, 26))))
    add("2.7", "unsolicited pong, empty, is ignored", ECHO(T("after")),
        send=seq(frame(OP_PONG, b""), frame(OP_TEXT, b"after")))
    add("2.8", "unsolicited pong with payload is ignored", ECHO(T("after")),
        send=seq(frame(OP_PONG, b"unsolicited"), frame(OP_TEXT, b"after")))
    add("2.9", "unsolicited pong, then ping: one pong for the ping", ECHO(PONG("ping-2.9")),
        send=seq(frame(OP_PONG, b"unsolicited"), frame(OP_PING, b"ping-2.9")))
    pings = [("ping-%d" % i).encode() for i in range(10)]
    add("2.10", "10 pings in a row -> 10 pongs in order", ECHO(*[PONG(p) for p in pings]),
        send=seq(*[frame(OP_PING, p) for p in pings]))
    add("2.11", "10 pings in a row, chopped into 1-byte writes",
        ECHO(*[PONG(p) for p in pings]),
        send=lambda c: c.send_raw(b"".join(build_frame(OP_PING, p) for p in pings), chop=1))
    add("2.12", "pong with a 126-byte payload -> 1002", FAIL(1002),
        send=frame(OP_PONG, bin_payload(126, 212)))
    add("2.13", "ping with 16-bit length form (126 bytes announced) -> 1002", FAIL(1002),
        send=frame(OP_PING, bin_payload(126, 213), length_form=16))


# ---- 3: reserved bits -------------------------------------------------------------


def build_3():
    after = frame(OP_PING, b"must-not-pong")
    cases = [
        ("text RSV1 (no extension)", frame(OP_TEXT, b"hello", rsv1=True)),
        ("text RSV2", frame(OP_TEXT, b"hello", rsv2=True)),
        ("text RSV3", frame(OP_TEXT, b"hello", rsv3=True)),
        ("text RSV1+RSV2+RSV3", frame(OP_TEXT, b"hello", rsv1=True, rsv2=True, rsv3=True)),
        ("binary RSV1 (no extension)", frame(OP_BINARY, b"\x00\xff", rsv1=True)),
        ("binary RSV2", frame(OP_BINARY, b"\x00\xff", rsv2=True)),
        ("binary RSV3", frame(OP_BINARY, b"\x00\xff", rsv3=True)),
        ("ping RSV1", frame(OP_PING, b"p", rsv1=True)),
        ("ping RSV2", frame(OP_PING, b"p", rsv2=True)),
        ("ping RSV3", frame(OP_PING, b"p", rsv3=True)),
        ("pong RSV2", frame(OP_PONG, b"p", rsv2=True)),
        ("close RSV1", frame(OP_CLOSE, close_payload(1000), rsv1=True)),
        ("continuation RSV1", seq(frame(OP_TEXT, b"he", fin=False),
                                  frame(OP_CONT, b"llo", rsv1=True))),
    ]
    for i, (d, f) in enumerate(cases):
        add("3.1.%d" % (i + 1), d + " -> 1002 (no pong for the ping after)", FAIL(1002),
            send=seq(f, after))
    add("3.1.%d" % (len(cases) + 1), "text echoed, then text RSV2, then ping -> echo, 1002",
        FAIL(1002, T("first")), nonstrict=[FAIL(1002)],
        send=seq(frame(OP_TEXT, b"first"), frame(OP_TEXT, b"second", rsv2=True), after))

    pmd = "permessage-deflate"

    def comp(op, data, **kw):
        return lambda c: c.send_frame(op, c.deflater.compress(data), **kw)

    add("3.2.1", "[deflate] text RSV1 compressed -> echo", ECHO(T("hello hello hello", True)),
        send=comp(OP_TEXT, b"hello hello hello", rsv1=True), offer=pmd)
    add("3.2.2", "[deflate] binary RSV1 compressed -> echo",
        ECHO(B(b"\x00\x01" * 50, True)), send=comp(OP_BINARY, b"\x00\x01" * 50, rsv1=True),
        offer=pmd)
    add("3.2.3", "[deflate] text uncompressed (RSV1 clear) -> echo",
        ECHO(T("plain text", True)), send=frame(OP_TEXT, b"plain text"), offer=pmd)
    bad = [
        ("text RSV2", comp(OP_TEXT, b"hello", rsv2=True)),
        ("text RSV3", comp(OP_TEXT, b"hello", rsv3=True)),
        ("text RSV1+RSV2", comp(OP_TEXT, b"hello", rsv1=True, rsv2=True)),
        ("binary RSV2", comp(OP_BINARY, b"hello", rsv2=True)),
        ("binary RSV3", comp(OP_BINARY, b"hello", rsv3=True)),
        ("ping RSV1", frame(OP_PING, b"p", rsv1=True)),
        ("ping RSV2", frame(OP_PING, b"p", rsv2=True)),
        ("ping RSV3", frame(OP_PING, b"p", rsv3=True)),
        ("pong RSV1", frame(OP_PONG, b"p", rsv1=True)),
        ("close RSV1", frame(OP_CLOSE, close_payload(1000), rsv1=True)),
        ("continuation RSV1 (compressed message)", _cont_rsv1_compressed),
        ("continuation RSV1 (uncompressed message)",
         seq(frame(OP_TEXT, b"he", fin=False), frame(OP_CONT, b"llo", rsv1=True))),
    ]
    for i, (d, f) in enumerate(bad):
        add("3.2.%d" % (i + 4), "[deflate] " + d + " -> 1002", FAIL(1002),
            send=seq(f, after), offer=pmd)
    add("3.3.1", "[compression off] offer accepted? no; text RSV1 -> 1002", FAIL(1002),
        send=seq(frame(OP_TEXT, w.raw_deflate(b"hello"), rsv1=True), after),
        target="nocomp", offer=pmd)


# ---- 4: reserved opcodes ----------------------------------------------------------


def build_4():
    after = frame(OP_PING, b"must-not-pong")
    for i, op in enumerate([3, 4, 5, 6, 7]):
        add("4.1.%d" % (i + 1), "reserved non-control opcode %d -> 1002" % op, FAIL(1002),
            send=seq(frame(op, b""), after))
    add("4.1.6", "text echoed, then opcode 5 with payload, then ping", FAIL(1002, T("first")),
        nonstrict=[FAIL(1002)],
        send=seq(frame(OP_TEXT, b"first"), frame(5, b"reserved"), after))
    add("4.1.7", "opcode 3 with FIN clear -> 1002", FAIL(1002),
        send=seq(frame(3, b"x", fin=False), after))
    for i, op in enumerate([11, 12, 13, 14, 15]):
        add("4.2.%d" % (i + 1), "reserved control opcode %d -> 1002" % op, FAIL(1002),
            send=seq(frame(op, b""), after))
    add("4.2.6", "text echoed, then opcode 13 with payload, then ping", FAIL(1002, T("first")),
        nonstrict=[FAIL(1002)],
        send=seq(frame(OP_TEXT, b"first"), frame(13, b"reserved"), after))
    add("4.2.7", "reserved opcode 11 inside a fragmented message -> 1002", FAIL(1002),
        send=seq(frame(OP_TEXT, b"frag", fin=False), frame(11, b""), after))


# ---- 5: fragmentation -------------------------------------------------------------


def build_5():
    after = frame(OP_PING, b"must-not-pong")
    F = lambda op, p, fin: frame(op, p, fin=fin)  # noqa: E731
    add("5.1", "ping fragmented into 2 frames -> 1002", FAIL(1002),
        send=seq(F(OP_PING, b"frag", False), F(OP_CONT, b"ment", True), after))
    add("5.2", "pong fragmented into 2 frames -> 1002", FAIL(1002),
        send=seq(F(OP_PONG, b"frag", False), F(OP_CONT, b"ment", True), after))
    add("5.3", "text in 2 fragments", ECHO(T("fragment1fragment2")),
        send=seq(F(OP_TEXT, b"fragment1", False), F(OP_CONT, b"fragment2", True)))
    add("5.4", "text in 2 fragments, 1-byte writes", ECHO(T("fragment1fragment2")),
        send=lambda c: c.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False) +
                                  build_frame(OP_CONT, b"fragment2"), chop=1, delay=0.0005))
    add("5.5", "binary in 2 fragments", ECHO(B(b"\x00\x01\x02\x03")),
        send=seq(F(OP_BINARY, b"\x00\x01", False), F(OP_CONT, b"\x02\x03", True)))
    add("5.6", "text in 2 fragments, ping in between -> pong, echo",
        ECHO(PONG("between"), T("fragment1fragment2")),
        send=seq(F(OP_TEXT, b"fragment1", False), F(OP_PING, b"between", True),
                 F(OP_CONT, b"fragment2", True)))
    add("5.7", "as 5.6, 1-byte writes", ECHO(PONG("between"), T("fragment1fragment2")),
        send=lambda c: c.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False) +
                                  build_frame(OP_PING, b"between") +
                                  build_frame(OP_CONT, b"fragment2"), chop=1))
    add("5.8", "text in 2 fragments, unsolicited pong in between", ECHO(T("fragment1fragment2")),
        send=seq(F(OP_TEXT, b"fragment1", False), F(OP_PONG, b"between", True),
                 F(OP_CONT, b"fragment2", True)))
    add("5.9", "orphan continuation (FIN set) -> 1002", FAIL(1002),
        send=seq(F(OP_CONT, b"orphan", True), frame(OP_TEXT, b"after"), after))
    add("5.10", "orphan continuation (FIN clear) -> 1002", FAIL(1002),
        send=seq(F(OP_CONT, b"orphan", False), F(OP_CONT, b"more", True), after))
    add("5.11", "orphan continuation, 1-byte writes -> 1002", FAIL(1002),
        send=lambda c: c.send_raw(build_frame(OP_CONT, b"orphan"), chop=1))
    add("5.12", "text echoed, then orphan continuation -> echo, 1002", FAIL(1002, T("whole")),
        nonstrict=[FAIL(1002)],
        send=seq(frame(OP_TEXT, b"whole"), F(OP_CONT, b"orphan", True), after))
    add("5.13", "text FIN clear, then text FIN set (new data frame mid-message) -> 1002",
        FAIL(1002), send=seq(F(OP_TEXT, b"frag1", False), F(OP_TEXT, b"new", True), after))
    add("5.14", "text FIN clear, then binary -> 1002", FAIL(1002),
        send=seq(F(OP_TEXT, b"frag1", False), F(OP_BINARY, b"new", True), after))
    add("5.15", "binary FIN clear, then text FIN clear -> 1002", FAIL(1002),
        send=seq(F(OP_BINARY, b"frag1", False), F(OP_TEXT, b"new", False), after))
    add("5.16", "text, cont(FIN), cont(no FIN), text(no FIN) -> echo, 1002",
        FAIL(1002, T("fragment1fragment2")), nonstrict=[FAIL(1002)],
        send=seq(F(OP_TEXT, b"fragment1", False), F(OP_CONT, b"fragment2", True),
                 F(OP_CONT, b"fragment3", False), F(OP_TEXT, b"fragment4", False), after))
    parts = [b"frag%d-" % i for i in range(5)]
    add("5.17", "text in 5 fragments with a ping before each continuation",
        ECHO(*[PONG(b"p%d" % i) for i in range(1, 5)], T(b"".join(parts))),
        send=seq(F(OP_TEXT, parts[0], False),
                 *[f for i in range(1, 5) for f in
                   (frame(OP_PING, b"p%d" % i),
                    F(OP_CONT, parts[i], i == 4))]))
    tiny = text_payload(1000, 517)
    add("5.18", "text in 1000 one-byte fragments", ECHO(T(tiny)),
        send=lambda c: c.send_raw(b"".join(
            build_frame(OP_TEXT if i == 0 else OP_CONT, tiny[i:i + 1], fin=(i == 999))
            for i in range(1000))))
    add("5.19", "empty fragments around data: '', '', 'abc', ''", ECHO(T("abc")),
        send=seq(F(OP_TEXT, b"", False), F(OP_CONT, b"", False), F(OP_CONT, b"abc", False),
                 F(OP_CONT, b"", True)))
    add("5.20", "empty text in 3 empty fragments", ECHO(T("")),
        send=seq(F(OP_TEXT, b"", False), F(OP_CONT, b"", False), F(OP_CONT, b"", True)))
    big = bin_payload(64 * KIB, 520)
    add("5.21", "binary 64 x 1 KiB fragments, ping every 8 -> 8 pongs, echo",
        ECHO(*[PONG(b"p%d" % i) for i in range(8)], B(big)),
        send=lambda c: c.send_raw(b"".join(
            (build_frame(OP_PING, b"p%d" % (i // 8)) if i % 8 == 0 else b"") +
            build_frame(OP_BINARY if i == 0 else OP_CONT, big[i * KIB:(i + 1) * KIB],
                        fin=(i == 63)) for i in range(64))))
    add("5.22", "text fragment, then close 1000 mid-message -> close answered, no echo",
        REPLY(1000), send=seq(F(OP_TEXT, b"unfinished", False),
                              lambda c: c.send_close(1000)))
    add("5.23", "empty ping with FIN clear -> 1002", FAIL(1002),
        send=seq(F(OP_PING, b"", False), after))
    add("5.24", "fragments each chopped with small pauses", ECHO(T("fragment1fragment2")),
        send=lambda c: [c.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False),
                                   chop=2, delay=0.002),
                        c.send_raw(build_frame(OP_CONT, b"fragment2"), chop=2, delay=0.002)])


# ---- 6: UTF-8 -----------------------------------------------------------------------

KOSME = "κόσμε".encode("utf-8")

VALID_UTF8 = [
    ("ASCII and Latin-1 mix", "Hello-µ@ßöäüàá-UTF-8!!"),
    ("Greek", "κόσμε Γειά σου Κόσμε"),
    ("Japanese", "こんにちは世界、日本語のテキスト"),
    ("Chinese", "你好，世界"),
    ("Korean", "안녕하세요 세계"),
    ("Cyrillic", "Привет, мир"),
    ("Arabic", "مرحبا بالعالم"),
    ("Hebrew", "שלום עולם"),
    ("Hindi", "नमस्ते दुनिया"),
    ("emoji and astral symbols", "🎉🚀 emoji 𝄞 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
    ("combining marks", "Z͑ͫ̓ͪ̂ͫ̽͏̴̙̤̞͉͚̯̞̠͍A̴̵̜̰͔ͫ͗͢L̠ͨͧͩ͘G̴̻͈͍͔̹̑͗̎̅͛́Ǫ̵̹̻̝̳͂̌̌͘"),
    ("U+0000", "a\u0000b"),
    ("U+007F (last 1-byte)", "\u007f"),
    ("U+0080 (first 2-byte)", "\u0080"),
    ("U+07FF (last 2-byte)", "\u07ff"),
    ("U+0800 (first 3-byte)", "\u0800"),
    ("U+D7FF (before surrogates)", "\ud7ff"),
    ("U+E000 (after surrogates)", "\ue000"),
    ("U+FFFD", "\ufffd"),
    ("U+FFFE (noncharacter, valid)", "\ufffe"),
    ("U+FFFF (last 3-byte)", "\uffff"),
    ("U+FDD0 (noncharacter, valid)", "\ufdd0"),
    ("U+10000 (first 4-byte)", "\U00010000"),
    ("U+10FFFF (last code point)", "\U0010ffff"),
    ("all boundaries in one message",
     "\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff"),
]

# (description, bytes, at_end): at_end = the sequence ends the message (it is
# truncated, so nothing may follow it).
INVALID_UTF8 = [
    ("overlong NUL C0 80", b"\xc0\x80", False),
    ("overlong C1 BF", b"\xc1\xbf", False),
    ("overlong '/' C0 AF", b"\xc0\xaf", False),
    ("overlong 3-byte E0 80 80", b"\xe0\x80\x80", False),
    ("overlong 3-byte E0 9F BF", b"\xe0\x9f\xbf", False),
    ("overlong '/' E0 80 AF", b"\xe0\x80\xaf", False),
    ("overlong 4-byte F0 80 80 80", b"\xf0\x80\x80\x80", False),
    ("overlong 4-byte F0 8F BF BF", b"\xf0\x8f\xbf\xbf", False),
    ("overlong 5-byte F8 80 80 80 AF", b"\xf8\x80\x80\x80\xaf", False),
    ("overlong 6-byte FC 80 80 80 80 AF", b"\xfc\x80\x80\x80\x80\xaf", False),
    ("surrogate U+D800", b"\xed\xa0\x80", False),
    ("surrogate U+DB7F", b"\xed\xad\xbf", False),
    ("surrogate U+DBFF", b"\xed\xaf\xbf", False),
    ("surrogate U+DC00", b"\xed\xb0\x80", False),
    ("surrogate U+DFFF", b"\xed\xbf\xbf", False),
    ("surrogate pair U+D800 U+DC00", b"\xed\xa0\x80\xed\xb0\x80", False),
    ("U+110000 F4 90 80 80", b"\xf4\x90\x80\x80", False),
    ("F5 80 80 80", b"\xf5\x80\x80\x80", False),
    ("F7 BF BF BF", b"\xf7\xbf\xbf\xbf", False),
    ("5-byte F8 88 80 80 80", b"\xf8\x88\x80\x80\x80", False),
    ("6-byte FD BF BF BF BF BF", b"\xfd\xbf\xbf\xbf\xbf\xbf", False),
    ("lone continuation 80", b"\x80", False),
    ("lone continuation BF", b"\xbf", False),
    ("continuations 80 BF 80 BF", b"\x80\xbf\x80\xbf", False),
    ("impossible byte FE", b"\xfe", False),
    ("impossible byte FF", b"\xff", False),
    ("FE FE FF FF", b"\xfe\xfe\xff\xff", False),
    ("lonely start C0 + space", b"\xc0 ", False),
    ("lonely start DF + space", b"\xdf ", False),
    ("lonely start E0 + space", b"\xe0 ", False),
    ("lonely start F0 + space", b"\xf0 ", False),
    ("2-byte missing last byte, then ASCII", b"\xc2A", False),
    ("3-byte missing last byte, then ASCII", b"\xe0\xa0A", False),
    ("4-byte missing last byte, then ASCII", b"\xf0\x90\x80A", False),
    ("truncated 2-byte C2 at end", b"\xc2", True),
    ("truncated 3-byte E1 80 at end", b"\xe1\x80", True),
    ("truncated 4-byte F0 90 80 at end", b"\xf0\x90\x80", True),
    ("truncated 4-byte F4 8F BF at end", b"\xf4\x8f\xbf", True),
]


def one_byte_fragments(payload):
    if not payload:
        return build_frame(OP_TEXT, b"")
    return b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, payload[i:i + 1],
                                fin=(i == len(payload) - 1)) for i in range(len(payload)))


def build_6():
    add("6.1.1", "empty text message", ECHO(T("")), send=frame(OP_TEXT, b""))
    n = 1
    for d, s in VALID_UTF8:
        p = s.encode("utf-8")
        add("6.2.%d" % n, "valid: %s, one frame" % d, ECHO(T(p)), send=frame(OP_TEXT, p))
        n += 1
    n = 1
    for d, s in VALID_UTF8:
        p = s.encode("utf-8")
        add("6.3.%d" % n, "valid: %s, 1-byte fragments" % d, ECHO(T(p)),
            send=(lambda p: lambda c: c.send_raw(one_byte_fragments(p)))(p))
        n += 1
    after = frame(OP_PING, b"must-not-pong")
    n = 1
    for d, b, at_end in INVALID_UTF8:
        p = KOSME + b + (b"" if at_end else b"edited")
        add("6.5.%d" % n, "invalid: %s, one frame -> 1007" % d, FAIL(1007),
            send=seq(frame(OP_TEXT, p), after))
        n += 1
    n = 1
    for d, b, at_end in INVALID_UTF8:
        p = KOSME + b + (b"" if at_end else b"edited")
        add("6.6.%d" % n, "invalid: %s, 1-byte fragments -> 1007" % d, FAIL(1007),
            send=(lambda p: lambda c: c.send_raw(one_byte_fragments(p)))(p))
        n += 1
    add("6.7.1", "invalid UTF-8 split across 2 fragments (F4 | 90 80 80) -> 1007", FAIL(1007),
        send=seq(frame(OP_TEXT, KOSME + b"\xf4", fin=False),
                 frame(OP_CONT, b"\x90\x80\x80edited")))
    add("6.7.2", "valid 4-byte char split across 3 fragments", ECHO(T("a\U0001f389b")),
        send=seq(frame(OP_TEXT, b"a\xf0\x9f", fin=False), frame(OP_CONT, b"\x8e", fin=False),
                 frame(OP_CONT, b"\x89b")))
    add("6.7.3", "text message ending inside a char (F0 9F | end) -> 1007", FAIL(1007),
        send=seq(frame(OP_TEXT, b"a\xf0\x9f", fin=False), frame(OP_CONT, b"")))
    add("6.7.4", "binary message with invalid UTF-8 is fine", ECHO(B(b"\xff\xfe\xc0\x80")),
        send=frame(OP_BINARY, b"\xff\xfe\xc0\x80"))

    # fail fast: the close must arrive before the message is complete
    ff = [
        ("6.4.1", "invalid code point in fragment 1 of 2 (F4 90 80 80)",
         [build_frame(OP_TEXT, KOSME + b"\xf4\x90\x80\x80", fin=False)],
         build_frame(OP_CONT, b"edited")),
        ("6.4.2", "invalid sequence completed in fragment 2 of 3 (F4 | 90 80 80)",
         [build_frame(OP_TEXT, KOSME + b"\xf4", fin=False),
          build_frame(OP_CONT, b"\x90\x80\x80", fin=False)],
         build_frame(OP_CONT, b"edited")),
        ("6.4.3", "one frame, payload sent in 3 writes; invalid bytes in write 2",
         "split:" + str(len(KOSME)) + ":4", None),
        ("6.4.4", "one frame, only F4 90 of the invalid sequence sent so far",
         "split:" + str(len(KOSME)) + ":2", None),
        ("6.4.5", "overlong C0 AF in fragment 1 of 2",
         [build_frame(OP_TEXT, b"abc\xc0\xaf", fin=False)], build_frame(OP_CONT, b"def")),
        ("6.4.6", "surrogate ED A0 80 in fragment 1 of 2",
         [build_frame(OP_TEXT, b"abc\xed\xa0\x80", fin=False)], build_frame(OP_CONT, b"def")),
        ("6.4.7", "lone continuation byte in fragment 1 of 2, 1-byte writes",
         [build_frame(OP_TEXT, b"abc\x80", fin=False)], build_frame(OP_CONT, b"def")),
    ]
    for cid, d, first, final in ff:
        add(cid, "fail fast: " + d, "close 1007 before the final fragment, tcp-closed",
            run=(lambda first, final, cid: lambda ctx: _fail_fast(ctx, first, final, cid))(
                first, final, cid))


def _fail_fast(ctx, first, final, cid):
    c = ctx.open("main")
    with c:
        if isinstance(first, str):
            # one frame whose payload we send in parts
            _, prefix_len, bad_len = first.split(":")
            prefix_len, bad_len = int(prefix_len), int(bad_len)
            payload = KOSME + b"\xf4\x90\x80\x80" + b"edited"
            fr = build_frame(OP_TEXT, payload)
            h = hlen_of(fr)
            c.send_raw(fr[:h + prefix_len])
            time.sleep(0.05)
            c.send_raw(fr[h + prefix_len:h + prefix_len + bad_len])
            final = fr[h + prefix_len + bad_len:]
        else:
            for f in first:
                c.send_raw(f, chop=1 if cid == "6.4.7" else None)
        try:
            ev = c.recv_event(timeout=2.0)
        except w.Timeout:
            ev = None
        except w.ConnectionClosed as e:
            return "tcp-%s without close frame" % ("reset" if e.reset else "eof"), False
        except w.ProtocolViolation as e:
            return "server violation: %s" % e, False
        if ev is None:
            # not failed fast: finish the message and see what happens
            try:
                c.send_raw(final)
            except OSError:
                pass
            got = drain(c, FAIL(1007))
            return "nothing within 2 s; after the final fragment: " + fmt_events(got), False
        if isinstance(ev, w.Frame) and ev.opcode == OP_CLOSE:
            code = ev.close_info()[0]
            c.send_close(code if code and w.valid_close_code(code) else None)
            tcp = c.wait_tcp_close(TCP_CLOSE_WAIT)
            got = "close %s before the final fragment, %s" % (
                code, "tcp-closed" if tcp else "TCP left open")
            return got, code == 1007 and bool(tcp)
        return "unexpected %r" % (ev,), False


# ---- 7: close -----------------------------------------------------------------------


def build_7():
    add("7.1.1", "text echoed, then close 1000", ECHO(T("hello"), code=1000),
        send=frame(OP_TEXT, b"hello"))
    add("7.1.2", "close 1000 sent twice: the second is ignored", REPLY(1000),
        send=seq(lambda c: c.send_close(1000), frame(OP_CLOSE, close_payload(1000))))
    add("7.1.3", "ping after close: no pong", REPLY(1000),
        send=seq(lambda c: c.send_close(1000), frame(OP_PING, b"late")))
    add("7.1.4", "text after close: not echoed", REPLY(1000),
        send=seq(lambda c: c.send_close(1000), frame(OP_TEXT, b"late")))
    add("7.1.5", "fragment, close, continuation: nothing echoed", REPLY(1000),
        send=seq(frame(OP_TEXT, b"frag1", fin=False), lambda c: c.send_close(1000),
                 frame(OP_CONT, b"frag2")))
    big = text_payload(256 * KIB, 716)
    add("7.1.6", "256 KiB text then close in the same write: echo, then close",
        [T(big), ("close", 1000, "client"), ("tcp",)], nonstrict=[REPLY(1000)],
        send=lambda c: [c.send_raw(build_frame(OP_TEXT, big) +
                                   build_frame(OP_CLOSE, close_payload(1000))),
                        setattr(c, "close_sent", True)], timeout=10)
    add("7.2.1", "server closes TCP promptly (< 1 s) after the close exchange",
        "tcp-closed < 1 s", run=_tcp_close_after_exchange)
    add("7.2.2", "server-initiated close (1002), client never answers: TCP closed "
        "within ws_close_timeout (2 s) + 1.5 s", "tcp-closed within 3.5 s",
        run=_close_timeout)
    add("7.3.1", "empty close -> empty close", REPLY(None), send=lambda c: c.send_close())
    add("7.3.2", "1-byte close payload -> 1002", REPLY(1002),
        send=lambda c: c.send_close(raw=b"\x03"))
    add("7.3.3", "close 1000, no reason", REPLY(1000), send=lambda c: c.send_close(1000))
    add("7.3.4", "close 1000 with reason 'Hello World!'", REPLY(1000),
        send=lambda c: c.send_close(1000, b"Hello World!"))
    add("7.3.5", "close 1000 with a 123-byte reason", REPLY(1000),
        send=lambda c: c.send_close(1000, b"*" * 123))
    add("7.3.6", "close 1000 with a 124-byte reason (126-byte payload) -> 1002", REPLY(1002),
        send=lambda c: c.send_close(1000, b"*" * 124))
    add("7.3.7", "close 1000 with a multi-byte UTF-8 reason", REPLY(1000),
        send=lambda c: c.send_close(1000, "κόσμε — 🎉".encode("utf-8")))
    add("7.5.1", "close with an invalid UTF-8 reason (surrogate) -> 1007", REPLY(1007),
        send=lambda c: c.send_close(1000, KOSME + b"\xed\xa0\x80edited"))
    add("7.5.2", "close with a reason of one lone continuation byte -> 1007", REPLY(1007),
        send=lambda c: c.send_close(1000, b"\x80"))
    add("7.5.3", "close with a reason truncated mid-character -> 1007", REPLY(1007),
        send=lambda c: c.send_close(1000, b"abc\xe2\x82"))
    for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                              3000, 3999, 4000, 4999]):
        add("7.7.%d" % (i + 1), "close with valid code %d is echoed" % code, REPLY(code),
            send=(lambda code: lambda c: c.send_close(code, b"reason"))(code))
    for i, code in enumerate([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]):
        add("7.9.%d" % (i + 1), "close with invalid code %d -> 1002" % code, REPLY(1002),
            send=(lambda code: lambda c: c.send_close(raw=struct.pack("!H", code)))(code))


def _tcp_close_after_exchange(ctx):
    c = ctx.open("main")
    with c:
        c.send_close(1000)
        try:
            code, _ = c.expect_close(timeout=2.0)
        except w.WsError as e:
            return "no close reply (%s)" % e, False
        t0 = time.monotonic()
        tcp = c.wait_tcp_close(3.0)
        dt = time.monotonic() - t0
        if not tcp:
            return "close-reply %s, TCP still open after 3 s" % code, False
        return ("tcp-closed < 1 s" if dt < 1.0 else "tcp-closed after %.2f s" % dt), dt < 1.0


def _close_timeout(ctx):
    c = ctx.open("main")
    with c:
        c.send_frame(OP_TEXT, b"x", rsv2=True)
        try:
            code, _ = c.expect_close(timeout=2.0, reply=False)
        except w.WsError as e:
            return "no close (%s)" % e, False
        t0 = time.monotonic()
        tcp = c.wait_tcp_close(6.0)
        dt = time.monotonic() - t0
        if not tcp:
            return "close %s, TCP still open 6 s later" % code, False
        ok = dt < 3.5 and code == 1002
        return ("tcp-closed within 3.5 s" if ok
                else "close %s, tcp-closed after %.2f s" % (code, dt)), ok


# ---- 9: big messages and limits ------------------------------------------------------


def build_9():
    tp = text_payload(MIB, 91)
    bp = bin_payload(MIB, 92)
    add("9.1.1", "1 MiB text in one frame", ECHO(T(tp)), send=frame(OP_TEXT, tp), timeout=20)
    add("9.1.2", "1 MiB binary in one frame", ECHO(B(bp)), send=frame(OP_BINARY, bp),
        timeout=20)
    add("9.2.1", "1 MiB text in 64 KiB fragments", ECHO(T(tp)),
        send=msg(OP_TEXT, tp, fragment=64 * KIB), timeout=20)
    add("9.2.2", "1 MiB binary in 64 KiB fragments", ECHO(B(bp)),
        send=msg(OP_BINARY, bp, fragment=64 * KIB), timeout=20)
    add("9.3.1", "1 MiB text in 1 KiB fragments", ECHO(T(tp)),
        send=lambda c: c.send_raw(b"".join(c.frames_for(OP_TEXT, tp, fragment=KIB))),
        timeout=20)
    add("9.3.2", "1 MiB binary in 1 KiB fragments", ECHO(B(bp)),
        send=lambda c: c.send_raw(b"".join(c.frames_for(OP_BINARY, bp, fragment=KIB))),
        timeout=20)
    cp = compressible(MIB, 93)
    add("9.4.1", "[deflate] 1 MiB text compressed, one frame", ECHO(T(cp, True)),
        send=msg(OP_TEXT, cp), offer="permessage-deflate", timeout=20)
    add("9.4.2", "[deflate] 1 MiB binary compressed, 1 KiB fragments", ECHO(B(cp, True)),
        send=lambda c: c.send_raw(b"".join(c.frames_for(OP_BINARY, cp, fragment=KIB))),
        offer="permessage-deflate", timeout=20)

    L = LIMIT
    add("9.6.1", "[limit 64k] text of limit-1 bytes", ECHO(T(text_payload(L - 1, 961))),
        send=frame(OP_TEXT, text_payload(L - 1, 961)), target="limit")
    add("9.6.2", "[limit 64k] text of exactly the limit", ECHO(T(text_payload(L, 962))),
        send=frame(OP_TEXT, text_payload(L, 962)), target="limit")
    add("9.6.3", "[limit 64k] text of limit+1 -> 1009", FAIL(1009),
        send=frame(OP_TEXT, text_payload(L + 1, 963)), target="limit")
    add("9.6.4", "[limit 64k] binary of limit+1 -> 1009", FAIL(1009),
        send=frame(OP_BINARY, bin_payload(L + 1, 964)), target="limit")
    add("9.6.5", "[limit 64k] 4 x 16 KiB fragments + a 1-byte fragment -> 1009", FAIL(1009),
        send=msg(OP_TEXT, text_payload(L + 1, 965), fragment=[16 * KIB] * 4),
        target="limit")
    add("9.6.6", "[limit 64k] 1 KiB binary fragments, limit+1 in total -> 1009", FAIL(1009),
        send=msg(OP_BINARY, bin_payload(L + 1, 966), fragment=KIB), target="limit")
    add("9.6.7", "[limit 64k] 1 KiB fragments adding up to exactly the limit",
        ECHO(B(bin_payload(L, 967))), send=msg(OP_BINARY, bin_payload(L, 967), fragment=KIB),
        target="limit")
    add("9.6.8", "[limit 64k] header announcing limit+1: close 1009 before the payload",
        "close 1009 before the payload, tcp-closed", run=_fail_fast_length(L + 1))
    add("9.6.9", "[limit 64k] header announcing 2^63-1 bytes: close 1009 before the payload",
        "close 1009 before the payload, tcp-closed", run=_fail_fast_length((1 << 63) - 1))
    add("9.6.10", "[limit 64k] 64-bit length with the top bit set -> 1002 (or 1009)",
        FAIL(1002), alt=[FAIL(1009)], target="limit",
        send=lambda c: c.send_raw(b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"\0\0\0\0"))
    add("9.6.11", "[limit 64k][deflate] compressed message inflating to limit+1 -> 1009",
        FAIL(1009), send=msg(OP_TEXT, compressible(L + 1, 9611)), target="limit",
        offer="permessage-deflate")
    add("9.6.12", "[limit 64k][deflate] compressed message inflating to exactly the limit",
        ECHO(T(compressible(L, 9612), True)), send=msg(OP_TEXT, compressible(L, 9612)),
        target="limit", offer="permessage-deflate")
    add("9.6.13", "[defaults 1m] text of exactly 1 MiB (max message, max send queue)",
        ECHO(T(tp)), send=frame(OP_TEXT, tp), target="defaults", timeout=20)
    add("9.6.14", "[defaults 1m] text of 1 MiB + 1 -> 1009", FAIL(1009),
        send=frame(OP_TEXT, tp + b"x"), target="defaults", timeout=20)


def _fail_fast_length(n):
    def run(ctx):
        c = ctx.open("limit")
        with c:
            c.send_raw(b"\x82\xff" + struct.pack("!Q", n) + b"\x01\x02\x03\x04")
            try:
                ev = c.recv_event(timeout=2.0)
            except w.Timeout:
                return "nothing within 2 s (server waits for the payload)", False
            except w.ConnectionClosed as e:
                return "tcp-%s without close frame" % ("reset" if e.reset else "eof"), False
            if isinstance(ev, w.Frame) and ev.opcode == OP_CLOSE:
                code = ev.close_info()[0]
                c.send_close(code if code and w.valid_close_code(code) else None)
                tcp = c.wait_tcp_close(TCP_CLOSE_WAIT)
                return ("close %s before the payload, %s" % (code, "tcp-closed" if tcp
                                                             else "TCP left open"),
                        code == 1009 and bool(tcp))
            return "unexpected %r" % (ev,), False
    return run


# ---- 10: keepalive pings -----------------------------------------------------------


def build_10():
    add("10.1", "[ping 1s] server pings within ws_ping_interval (+1 s)", "ping",
        run=_server_pings)
    add("10.2", "[ping 1s] answering pongs keeps the connection open 4 s", "alive",
        run=_pong_keeps_alive)
    add("10.3", "[ping 1s, pong 1s] never answering: closed within 2 s + 2 s slack",
        "closed", run=_no_pong_closes)


def _server_pings(ctx):
    c = ctx.open("keepalive")
    with c:
        try:
            f = c.recv_frame(timeout=2.0)
        except w.WsError as e:
            return "no ping (%s)" % e, False
        return ("ping" if f.opcode == OP_PING else repr(f)), f.opcode == OP_PING


def _pong_keeps_alive(ctx):
    c = ctx.open("keepalive")
    with c:
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            try:
                c.recv_message(timeout=end - time.monotonic())
            except w.Timeout:
                break
            except w.WsError as e:
                return "closed after %d pings (%s)" % (len(c.pings), e), False
        try:
            m = c.echo(OP_TEXT, b"still here", timeout=2.0)
        except w.WsError as e:
            return "dead after 4 s (%s)" % e, False
        ok = m.data == b"still here" and len(c.pings) >= 2
        return ("alive" if ok else "alive but %d pings" % len(c.pings)), ok


def _no_pong_closes(ctx):
    c = ctx.open("keepalive")
    with c:
        c.auto_pong = False
        t0 = time.monotonic()
        code = None
        try:
            while True:
                f = c.recv_frame(deadline=t0 + 6.0)
                if f.opcode == OP_CLOSE:
                    code = f.close_info()[0]
                    c.send_close(code if code and w.valid_close_code(code) else None)
        except w.ConnectionClosed:
            dt = time.monotonic() - t0
            return ("closed" if dt < 4.0 else "closed after %.1f s" % dt), dt < 4.0
        except w.Timeout:
            return "still open after 6 s (close %s)" % code, False
        except w.ProtocolViolation as e:
            return "server violation: %s" % e, False


# ---- 12: permessage-deflate round trips ------------------------------------------------

PMD_SIZES = [16, 64, KIB, 64 * KIB, 256 * KIB]


def roundtrip_run(target, offer, op, size, count=10, check=None, fragment=None):
    """Send count messages of size (compressible, similar content, so context
    takeover matters), one at a time, each echoed compressed."""

    def run(ctx):
        try:
            c = ctx.open(target, offer=offer, timeout=10)
        except w.HandshakeError as e:
            return "handshake: %s" % e, False
        with c:
            if c.pmd is None:
                return "not negotiated (%s)" % c.response.header("sec-websocket-extensions"), \
                    False
            if check:
                err = check(c)
                if err:
                    return err, False
            plain = 0
            for i in range(count):
                p = compressible(size, size + i)
                try:
                    m = c.echo(op, p, timeout=10, fragment=fragment)
                except w.WsError as e:
                    return "message %d: %s" % (i + 1, e), False
                if m.opcode != op or m.data != p:
                    return "message %d: wrong echo %r" % (i + 1, m), False
                if not m.compressed:
                    plain += 1
            try:
                code, _, tcp = c.close_handshake(timeout=4)
            except w.WsError as e:
                return "close: %s" % e, False
            got = "%d echoes%s, close-reply %s%s" % (
                count, "" if not plain else " (%d uncompressed)" % plain, code,
                "" if tcp else ", TCP left open")
            return got, plain == 0 and code == 1000 and bool(tcp)
    return run


def build_12():
    pmd = "permessage-deflate"
    for gi, (op, kind) in enumerate([(OP_TEXT, "text"), (OP_BINARY, "binary")]):
        for i, size in enumerate(PMD_SIZES):
            add("12.%d.%d" % (gi + 1, i + 1),
                "[deflate] %s %d B x10, compressed both ways" % (kind, size),
                "10 echoes, close-reply 1000",
                run=roundtrip_run("main", pmd, op, size), timeout=20)
    cp = compressible(64 * KIB, 123)
    add("12.3.1", "[deflate] 64 KiB compressed text in 4 fragments", ECHO(T(cp, True)),
        send=lambda c: send_compressed_parts(c, OP_TEXT, cp, 4), offer=pmd)
    add("12.3.2", "[deflate] 64 KiB compressed text in 1-byte fragments", ECHO(T(cp, True)),
        send=lambda c: c.send_raw(b"".join(c.frames_for(OP_TEXT, cp, fragment=1))),
        offer=pmd, timeout=15)
    add("12.3.3", "[deflate] compressed fragments with a ping in between",
        ECHO(PONG("mid"), T(cp, True)),
        send=lambda c: (lambda fs: [c.send_raw(fs[0]), c.ping(b"mid"),
                                    c.send_raw(b"".join(fs[1:]))])(
            c.frames_for(OP_TEXT, cp, fragment=2048)), offer=pmd)
    mixed = [compressible(500 + i * 100, 1240 + i) for i in range(10)]
    add("12.3.4", "[deflate] 10 messages alternating compressed and uncompressed",
        ECHO(*[T(m, True) for m in mixed]),
        send=lambda c: [c.send_text(m, compress=(i % 2 == 0)) for i, m in enumerate(mixed)],
        offer=pmd)
    add("12.3.5", "[deflate] compressed empty message", ECHO(T(b"")),
        send=lambda c: c.send_text(b"", compress=True), offer=pmd)
    add("12.4.1", "[deflate] zip bomb: 16 MiB of zeros in ~16 KiB -> 1009", FAIL(1009),
        send=lambda c: c.send_binary(b"\0" * (16 * MIB), compress=True), offer=pmd,
        timeout=10)
    add("12.4.2", "[deflate] zip bomb in 1 KiB fragments -> 1009", FAIL(1009),
        send=lambda c: c.send_raw(b"".join(c.frames_for(OP_TEXT, b" " * (16 * MIB),
                                                        fragment=KIB))),
        offer=pmd, timeout=10)
    add("12.4.3", "[limit 64k][deflate] zip bomb: 1 MiB of zeros -> 1009", FAIL(1009),
        send=lambda c: c.send_binary(b"\0" * MIB, compress=True), offer=pmd, target="limit")
    add("12.4.4", "[deflate] RSV1 message that is not valid deflate -> close (1007/1002)",
        FAIL(1007), alt=[FAIL(1002)],
        send=lambda c: c.send_frame(OP_TEXT, b"\xff\xff\xff\xff garbage", rsv1=True),
        offer=pmd)
    add("12.5.1", "[defaults, min size 64] 63-byte text echoed uncompressed",
        ECHO(T(compressible(63, 1251), False)), send=lambda c: c.send_text(
            compressible(63, 1251)), target="defaults", offer=pmd)
    add("12.5.2", "[defaults, min size 64] 64-byte text echoed compressed",
        ECHO(T(compressible(64, 1252), True)), send=lambda c: c.send_text(
            compressible(64, 1252)), target="defaults", offer=pmd)
    add("12.5.3", "[defaults, min size 64] 1 KiB binary echoed compressed",
        ECHO(B(compressible(KIB, 1253), True)), send=lambda c: c.send_binary(
            compressible(KIB, 1253)), target="defaults", offer=pmd)
    add("12.6.1", "[ws_compression off] offer permessage-deflate: not negotiated, echo works",
        "no extension, echo", run=_negotiation("nocomp", pmd, None))
    add("12.6.2", "[ws_compression off] text RSV1 -> 1002", FAIL(1002),
        send=frame(OP_TEXT, w.raw_deflate(b"hello"), rsv1=True), target="nocomp", offer=pmd)


# ---- 13: permessage-deflate parameters ------------------------------------------------

PMD_VARIANTS = [
    ("permessage-deflate", "no parameters"),
    ("permessage-deflate; server_no_context_takeover", "server_no_context_takeover"),
    ("permessage-deflate; client_no_context_takeover", "client_no_context_takeover"),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "both no_context_takeover"),
    ("permessage-deflate; client_max_window_bits", "client_max_window_bits (no value)"),
    ("permessage-deflate; client_max_window_bits=10", "client_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=10", "server_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9; "
     "server_no_context_takeover; client_no_context_takeover", "everything"),
]


def _accepted_as_offered(offer):
    """A check(c) for a negotiated connection: the response must carry
    every offered parameter (client_max_window_bits without a value may be
    answered with any value or left out) and nothing that changes the
    meaning (values no larger than offered)."""
    offered = dict(w.parse_extensions(offer)[0][1])

    def check(c):
        got = dict(w.parse_extensions(c.pmd.raw)[0][1])
        for k, v in offered.items():
            if k == "client_max_window_bits" and v is None:
                continue
            if k not in got:
                return "response %r lacks %s" % (c.pmd.raw, k)
            if v is not None and int(got[k]) > int(v):
                return "response %r: %s above the offered %s" % (c.pmd.raw, k, v)
        for k in got:
            if k not in offered and k not in ("server_no_context_takeover",
                                               "client_no_context_takeover",
                                               "server_max_window_bits"):
                return "response %r adds %s" % (c.pmd.raw, k)
        return None
    return check


def _negotiation(target, offer, want, check=None):
    """Custom run: handshake with offer; want = None (declined) or the
    offer that must have been accepted; then a short echo."""

    def run(ctx):
        try:
            c = ctx.open(target, offer=offer)
        except w.HandshakeError as e:
            return "handshake: %s" % e, False
        with c:
            ext = c.response.header("sec-websocket-extensions")
            if want is None and ext is not None:
                return "accepted %r" % ext, False
            if want is not None:
                if c.pmd is None:
                    return "no extension", False
                err = (check or _accepted_as_offered(want))(c)
                if err:
                    return err, False
            p = compressible(200, 13)
            try:
                m = c.echo(OP_TEXT, p, timeout=3)
            except w.WsError as e:
                return "extension %r, no echo: %s" % (ext, e), False
            if m.data != p:
                return "wrong echo", False
            if want is None:
                return ("no extension, echo", True) if not m.compressed else \
                    ("compressed echo without extension", False)
            return ("%s, echo" % ext, True)
    return run


def build_13():
    for vi, (offer, d) in enumerate(PMD_VARIANTS):
        g = "13.%d" % (vi + 1)
        add(g + ".0", "[%s] response accepts every offered parameter" % d,
            "%s (+ optional no_context_takeover flags), echo" % offer,
            run=_negotiation("main", offer, offer))
        for si, size in enumerate(PMD_SIZES):
            op = OP_TEXT if si % 2 == 0 else OP_BINARY
            add("%s.%d" % (g, si + 1), "[%s] %s %d B x10" % (
                d, "text" if op == OP_TEXT else "binary", size),
                "10 echoes, close-reply 1000",
                run=roundtrip_run("main", offer, op, size, check=_accepted_as_offered(offer)),
                timeout=20)
    declined = [
        ("permessage-deflate; server_max_window_bits=7", "server_max_window_bits=7"),
        ("permessage-deflate; server_max_window_bits=16", "server_max_window_bits=16"),
        ("permessage-deflate; server_max_window_bits", "server_max_window_bits without value"),
        ("permessage-deflate; client_max_window_bits=foo", "client_max_window_bits=foo"),
        ("permessage-deflate; client_max_window_bits=0", "client_max_window_bits=0"),
        ("permessage-deflate; unknown_param", "unknown parameter"),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover",
         "duplicate parameter"),
        ("permessage-deflate; server_no_context_takeover=1", "value on a flag parameter"),
        ("x-webkit-deflate-frame", "unknown extension"),
    ]
    for i, (offer, d) in enumerate(declined):
        add("13.9.%d" % (i + 1), "invalid offer declined: %s" % d, "no extension, echo",
            run=_negotiation("main", offer, None))
    add("13.9.%d" % (len(declined) + 1),
        "fallback: invalid first offer, plain second offer -> second accepted",
        "permessage-deflate, echo",
        run=_negotiation("main", "permessage-deflate; server_max_window_bits=7, "
                         "permessage-deflate", "permessage-deflate"))
    add("13.9.%d" % (len(declined) + 2),
        "server_max_window_bits=8: declined, or honoured (inflatable with a 256 B window)",
        "declined or round trips OK", run=_window_bits_8)


def _window_bits_8(ctx):
    offer = "permessage-deflate; server_max_window_bits=8"
    try:
        c = ctx.open("main", offer=offer)
    except w.HandshakeError as e:
        return "handshake: %s" % e, False
    with c:
        if c.pmd is None:
            m = c.echo(OP_TEXT, b"hello", timeout=3)
            return ("declined, echo", True) if m.data == b"hello" else \
                ("declined, bad echo", False)
        for i in range(3):
            p = compressible(64 * KIB, 80 + i)
            try:
                m = c.echo(OP_TEXT, p, timeout=5)
            except w.WsError as e:
                return "accepted %r but: %s" % (c.pmd.raw, e), False
            if m.data != p:
                return "accepted, wrong echo", False
        return "accepted %r, 3 x 64 KiB inflated with an 8-bit window" % c.pmd.raw, True


def build_all():
    if CASES:
        return
    for b in (build_hs, build_1, build_2, build_3, build_4, build_5, build_6, build_7,
              build_9, build_10, build_12, build_13):
        b()


# --------------------------------------------------------------------------
# the unittest side

RESULTS = []


def print_summary(stream=sys.stderr):
    if not RESULTS:
        return
    wid = max(len(r[0]) for r in RESULTS)
    lines = ["", "=" * 100, "WebSocket conformance summary (%d cases)" % len(RESULTS),
             "=" * 100]
    by_group = collections.OrderedDict()
    for cid, desc, exp, got, verdict, dt in RESULTS:
        g = by_group.setdefault(cid.split(".")[0], collections.Counter())
        g[verdict] += 1
        lines.append("%-*s  %-10s %5.2fs  %s" % (wid, cid, verdict, dt, desc))
        lines.append("%-*s  expected: %s" % (wid, "", _clip(exp)))
        lines.append("%-*s  got:      %s" % (wid, "", _clip(got)))
    lines.append("-" * 100)
    total = collections.Counter()
    for g, cnt in by_group.items():
        total.update(cnt)
        lines.append("group %-4s %4d cases  %4d OK  %4d NON-STRICT  %4d FAIL"
                     % (g, sum(cnt.values()), cnt["OK"], cnt["NON-STRICT"], cnt["FAIL"]))
    lines.append("total      %4d cases  %4d OK  %4d NON-STRICT  %4d FAIL"
                 % (sum(total.values()), total["OK"], total["NON-STRICT"], total["FAIL"]))
    stream.write("\n".join(lines) + "\n")
    stream.flush()


def _clip(s, n=300):
    return s if len(s) <= n else s[:n] + "..."


class WsConformanceTest(OrchdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        build_all()
        cls.ctmp = tempfile.mkdtemp(prefix="orchd-it-wsconf-")
        os.chmod(cls.ctmp, 0o755)
        cls.started = time.monotonic()
        try:
            cls.targets, cls._stop_targets = start_targets(cls.ctmp)
        except BaseException:
            shutil.rmtree(cls.ctmp, ignore_errors=True)
            raise
        cls.ctx = Ctx(cls.targets)
        del RESULTS[:]

    @classmethod
    def tearDownClass(cls):
        try:
            print_summary()
            cls._stop_targets()
        finally:
            if os.environ.get("ORCHD_KEEP_TMP"):
                sys.stderr.write("[kept %s]\n" % cls.ctmp)
            else:
                shutil.rmtree(cls.ctmp, ignore_errors=True)
            super().tearDownClass()

    def run_group(self, group):
        cases = [c for c in CASES if c.group == group]
        self.assertTrue(cases, "no cases in group %s" % group)
        for case in cases:
            with self.subTest(case=case.cid):
                t0 = time.monotonic()
                if t0 - self.started > TIME_BUDGET:
                    got, verdict = ("not run: suite time budget (%.0f s) exhausted"
                                    % TIME_BUDGET), "FAIL"
                else:
                    try:
                        got, verdict = execute(case, self.ctx)
                    except Exception as e:  # noqa: BLE001 - a case error is a failure
                        got, verdict = "error: %s: %s" % (type(e).__name__, e), "FAIL"
                dt = time.monotonic() - t0
                RESULTS.append((case.cid, case.desc, case.expected_str(), got, verdict, dt))
                if verdict == "FAIL":
                    t = self.targets.get(case.target)
                    self.fail("%s %s\n  expected: %s\n  got:      %s\n%s" % (
                        case.cid, case.desc, _clip(case.expected_str()), _clip(got),
                        t.diagnostics() if t else ""))
        # The servers must still be alive after the group.
        for t in self.targets.values():
            if t.orchd is not None:
                self.assertTrue(t.orchd.alive(), "orchd %s died\n%s" % (t.name,
                                                                         t.diagnostics()))

    def test_00_hs_handshake(self):
        self.run_group("hs")

    def test_01_framing(self):
        self.run_group("1")

    def test_02_ping_pong(self):
        self.run_group("2")

    def test_03_reserved_bits(self):
        self.run_group("3")

    def test_04_reserved_opcodes(self):
        self.run_group("4")

    def test_05_fragmentation(self):
        self.run_group("5")

    def test_06_utf8(self):
        self.run_group("6")

    def test_07_close(self):
        self.run_group("7")

    def test_09_limits(self):
        self.run_group("9")

    def test_10_keepalive(self):
        self.run_group("10")

    def test_12_deflate(self):
        self.run_group("12")

    def test_13_deflate_params(self):
        self.run_group("13")


if __name__ == "__main__":
    unittest.main()
