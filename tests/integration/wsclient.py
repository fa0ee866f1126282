"""A small raw-socket WebSocket client (RFC 6455 + RFC 7692) for the tests.

Stdlib only.  Unlike a normal client library it lets a test send anything:
any opcode, RSV bits, FIN, masked or unmasked frames, lying lengths,
fragmented messages, byte-at-a-time (chopped) writes, permessage-deflate
compressed frames; and it checks everything the server sends (server frames
must be unmasked, RSV bits only as negotiated, control frames short and
final, text valid UTF-8, close codes valid, compressed payloads inflating
within the negotiated window).

Every read has a deadline: a call may raise Timeout, it never hangs.

Typical use:

    c = WsClient.open(port, "/echo", offer="permessage-deflate")
    c.send_text("hello", compress=True)
    msg = c.recv_message()              # Message(opcode, data, compressed)
    code, reason = c.close_handshake()  # send close 1000, wait close + EOF
"""

import base64
import hashlib
import os
import re
import select
import socket
import struct
import time
import zlib

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

OPCODE_NAMES = {OP_CONT: "cont", OP_TEXT: "text", OP_BINARY: "binary",
                OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TIMEOUT = 5.0
# The most a client inflates for one server message (zip-bomb guard).
MAX_INFLATE = 64 << 20
TAIL = b"\x00\x00\xff\xff"

# TCP states (include/net/tcp_states.h), first byte of struct tcp_info.
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
              5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
              9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


# --------------------------------------------------------------------------
# errors


class WsError(Exception):
    pass


class Timeout(WsError):
    """Nothing (or not enough) arrived before the deadline."""


class ConnectionClosed(WsError):
    """The TCP connection ended: EOF (reset=False) or reset (reset=True)."""

    def __init__(self, msg, reset=False):
        super().__init__(msg)
        self.reset = reset


class ProtocolViolation(WsError):
    """The server sent something RFC 6455 / 7692 forbid."""


class HandshakeError(WsError):
    def __init__(self, msg, response=None):
        super().__init__(msg)
        self.response = response


class CloseReceived(WsError):
    """recv_message() met a close frame."""

    def __init__(self, code, reason):
        super().__init__("close %s %r" % (code, reason))
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------
# handshake helpers


def make_key(nbytes=16):
    return base64.b64encode(os.urandom(nbytes)).decode("ascii")


def accept_for(key):
    digest = hashlib.sha1((key + GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_extensions(value):
    """'a; x=1; y, b' -> [('a', [('x', '1'), ('y', None)]), ('b', [])].

    Quoted values are unquoted.  Raises ValueError on malformed input."""
    out = []
    if value is None:
        return out
    for element in _split_outside_quotes(value, ","):
        element = element.strip()
        if not element:
            continue
        parts = _split_outside_quotes(element, ";")
        name = parts[0].strip()
        if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name):
            raise ValueError("bad extension name %r" % name)
        params = []
        for p in parts[1:]:
            p = p.strip()
            if not p:
                raise ValueError("empty parameter in %r" % element)
            if "=" in p:
                k, v = p.split("=", 1)
                k, v = k.strip(), v.strip()
                if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                    v = v[1:-1]
                params.append((k, v))
            else:
                params.append((p, None))
        out.append((name, params))
    return out


def _split_outside_quotes(s, sep):
    parts, cur, quoted = [], [], False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


class PmdParams:
    """Negotiated permessage-deflate parameters (from the server response)."""

    def __init__(self, server_no_context_takeover=False, client_no_context_takeover=False,
                 server_max_window_bits=15, client_max_window_bits=15, raw=""):
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.raw = raw

    def __repr__(self):
        return "<PmdParams %s>" % self.raw


def pmd_from_response(params, offered_params):
    """Validate the server's accepted permessage-deflate params (RFC 7692
    section 7.1) against what we offered; return PmdParams or raise
    ProtocolViolation."""
    offered_names = {k for k, _ in offered_params}
    seen = set()
    p = PmdParams()
    for k, v in params:
        if k in seen:
            raise ProtocolViolation("duplicate parameter %s in response" % k)
        seen.add(k)
        if k == "server_no_context_takeover":
            if v is not None:
                raise ProtocolViolation("server_no_context_takeover with a value")
            p.server_no_context_takeover = True
        elif k == "client_no_context_takeover":
            if v is not None:
                raise ProtocolViolation("client_no_context_takeover with a value")
            p.client_no_context_takeover = True
        elif k in ("server_max_window_bits", "client_max_window_bits"):
            if v is None or not re.match(r"^[1-9][0-9]?$", v) or not 8 <= int(v) <= 15:
                raise ProtocolViolation("%s=%r is invalid in a response" % (k, v))
            if k == "client_max_window_bits":
                if k not in offered_names:
                    raise ProtocolViolation("client_max_window_bits in the response "
                                            "but not offered")
                p.client_max_window_bits = int(v)
            else:
                offered = dict(offered_params).get(k)
                if offered is not None and int(v) > int(offered):
                    raise ProtocolViolation("server_max_window_bits=%s above the "
                                            "offered %s" % (v, offered))
                p.server_max_window_bits = int(v)
        else:
            raise ProtocolViolation("unknown permessage-deflate parameter %r" % k)
    if "server_max_window_bits" in offered_names and "server_max_window_bits" not in seen:
        # RFC 7692 7.1.2.1: the server must answer an offered
        # server_max_window_bits with the parameter (the offer is a limit the
        # client needs honoured).
        raise ProtocolViolation("server_max_window_bits offered but not in the response")
    return p


class HttpResponse:
    def __init__(self, status, reason, headers, header_list, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers          # lower-case name -> last value
        self.header_list = header_list  # [(name, value)] in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def all(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def __repr__(self):
        return "<HttpResponse %d %r body=%r>" % (self.status, self.headers, self.body[:200])


# --------------------------------------------------------------------------
# frames


def build_frame(opcode, payload=b"", fin=True, rsv1=False, rsv2=False, rsv3=False,
                mask=True, mask_key=None, length=None, length_form=None):
    """The bytes of one frame.

    length overrides the announced payload length (to lie); length_form
    forces the 7, 16 or 64-bit length encoding (non-minimal encodings)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) \
        | (0x10 if rsv3 else 0) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    form = length_form
    if form is None:
        form = 7 if n <= 125 else (16 if n <= 0xFFFF else 64)
    mbit = 0x80 if mask else 0
    if form == 7:
        head = struct.pack("!BB", b0, mbit | n)
    elif form == 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(data, key):
    if not data:
        return b""
    n = len(data)
    # XOR with a repeated key through big integers: fast for large payloads.
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def valid_close_code(code):
    """Codes an endpoint may put on the wire (RFC 6455 7.4)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                    1013, 1014) or 3000 <= code <= 4999


class Frame:
    def __init__(self, fin, rsv1, rsv2, rsv3, opcode, masked, payload, header=b""):
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.masked = masked
        self.payload = payload
        self.header = header

    @property
    def is_control(self):
        return bool(self.opcode & 0x8)

    def close_info(self):
        """(code or None, reason bytes) of a close frame."""
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0], self.payload[2:]
        return None, b""

    def __repr__(self):
        return "<Frame %s fin=%d rsv=%d%d%d %dB>" % (
            OPCODE_NAMES.get(self.opcode, hex(self.opcode)), self.fin, self.rsv1,
            self.rsv2, self.rsv3, len(self.payload))


class Message:
    """One complete data message as received (inflated if compressed)."""

    def __init__(self, opcode, data, compressed, nframes):
        self.opcode = opcode
        self.data = data
        self.compressed = compressed
        self.nframes = nframes

    @property
    def text(self):
        return self.data.decode("utf-8")

    def __repr__(self):
        return "<Message %s %dB%s frames=%d>" % (
            OPCODE_NAMES.get(self.opcode), len(self.data),
            " compressed" if self.compressed else "", self.nframes)


# --------------------------------------------------------------------------
# permessage-deflate codecs


class Deflater:
    """Client-side compressor: raw deflate, sync flush, tail stripped."""

    def __init__(self, window_bits=15, no_context_takeover=False, level=6):
        # zlib refuses raw deflate with 8-bit windows; 9 is what it does anyway.
        self.window_bits = max(9, window_bits)
        self.no_context_takeover = no_context_takeover
        self.level = level
        self.obj = None

    def compress(self, data):
        if self.obj is None or self.no_context_takeover:
            self.obj = zlib.compressobj(self.level, zlib.DEFLATED, -self.window_bits)
        out = self.obj.compress(data) + self.obj.flush(zlib.Z_SYNC_FLUSH)
        if out.endswith(TAIL):
            out = out[:-4]
        return out


def raw_deflate(data, level=9, window_bits=15):
    """One-shot compress as a first message with a fresh context."""
    return Deflater(window_bits, True, level).compress(data)


class Inflater:
    """Client-side decompressor for server messages."""

    def __init__(self, window_bits=15, no_context_takeover=False, max_size=MAX_INFLATE):
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.max_size = max_size
        self.obj = None

    def inflate(self, data):
        if self.obj is None or self.no_context_takeover:
            self.obj = zlib.decompressobj(-self.window_bits)
        try:
            if self.window_bits >= 15:
                out = self.obj.decompress(data + TAIL, self.max_size + 1)
            else:
                # zlib only rejects a distance beyond what it has seen, and
                # output of the current call counts: inflate in small output
                # steps so a reference past the negotiated window fails.
                parts, total, buf = [], 0, data + TAIL
                while True:
                    chunk = self.obj.decompress(buf, 256)
                    parts.append(chunk)
                    total += len(chunk)
                    buf = self.obj.unconsumed_tail
                    if total > self.max_size or (not buf and len(chunk) < 256):
                        break
                out = b"".join(parts)
        except zlib.error as e:
            raise ProtocolViolation("server sent a compressed message that does not "
                                    "inflate (window %d bits, context %s): %s"
                                    % (self.window_bits,
                                       "reset" if self.no_context_takeover else "kept", e))
        if len(out) > self.max_size or self.obj.unconsumed_tail:
            raise ProtocolViolation("server message inflates beyond %d bytes" % self.max_size)
        if self.obj.eof:
            # A BFINAL block (RFC 7692 7.2.3.3) ends the deflate stream: the
            # next message starts a fresh one.
            self.obj = None
        return out


# --------------------------------------------------------------------------
# the client


class WsClient:
    """One WebSocket client connection.  Not thread-safe."""

    def __init__(self, port, host="127.0.0.1", path="/echo", timeout=DEFAULT_TIMEOUT,
                 rcvbuf=None, sndbuf=None, nodelay=True):
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self.rcvbuf = rcvbuf
        self.sndbuf = sndbuf
        self.nodelay = nodelay
        self.sock = None
        self.buf = bytearray()
        self.response = None
        self.key = None
        self.pmd = None            # PmdParams when negotiated
        self.deflater = None
        self.inflater = None
        self.auto_pong = True      # answer server pings while waiting for messages
        self.pings = []            # payloads of server pings seen
        self.pongs = []            # payloads of pongs seen by recv_message()
        self.close_sent = False
        self.close_received = None  # (code, reason) once a close frame arrived
        self.eof = False
        # message reassembly state
        self._msg_op = None
        self._msg_parts = []
        self._msg_compressed = False
        self._msg_frames = 0
        self.strict_length = True  # server length encodings must be minimal

    # -- connection ----------------------------------------------------------

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        if self.sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        if self.nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.timeout)
        try:
            s.connect((self.host, self.port))
        except BaseException:
            s.close()
            raise
        self.sock = s
        return self

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def open(cls, port, path="/echo", offer=None, headers=None, timeout=DEFAULT_TIMEOUT,
             **kw):
        """Connect and upgrade; raises HandshakeError unless 101."""
        c = cls(port, path=path, timeout=timeout, **kw)
        c.connect()
        try:
            r = c.handshake(extensions=offer, headers=headers)
            if r.status != 101:
                raise HandshakeError("upgrade answered %d: %r" % (r.status, r.body[:200]), r)
        except BaseException:
            c.close()
            raise
        return c

    def build_request(self, path=None, headers=None, extensions=None, key=None,
                      version="13", host="127.0.0.1", origin=None, method="GET",
                      omit=(), http_version="HTTP/1.1", upgrade="websocket",
                      connection="Upgrade", protocols=None):
        """The request head.  headers (list of pairs or dict) are added after
        the standard ones; omit names standard headers to leave out."""
        self.key = key if key is not None else make_key()
        std = [("Host", host), ("Upgrade", upgrade), ("Connection", connection),
               ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", version)]
        if origin is not None:
            std.append(("Origin", origin))
        if extensions is not None:
            std.append(("Sec-WebSocket-Extensions", extensions))
        if protocols is not None:
            std.append(("Sec-WebSocket-Protocol", protocols))
        omit_l = {o.lower() for o in omit}
        lines = ["%s %s %s" % (method, path or self.path, http_version)]
        for k, v in std:
            if k.lower() in omit_l or v is None:
                continue
            lines.append("%s: %s" % (k, v))
        extra = headers.items() if isinstance(headers, dict) else (headers or [])
        for k, v in extra:
            lines.append("%s: %s" % (k, v))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def handshake(self, raw_request=None, chop=None, delay=0.0, trailing=b"",
                  validate=True, **kw):
        """Send the upgrade request (built from kw unless raw_request) and read
        the response.  On 101 the response is validated (accept key, Upgrade,
        Connection, extensions) and the connection is open for frames; bytes
        after the response head stay buffered as frame data.  trailing is sent
        right behind the request (e.g. a first frame in the same segment)."""
        if raw_request is None:
            raw_request = self.build_request(**kw)
        self.offered_ext = kw.get("extensions")
        self.send_raw(raw_request + trailing, chop=chop, delay=delay)
        r = self.read_http_response()
        self.response = r
        if r.status == 101 and validate:
            self._validate_101(r)
        return r

    def read_http_response(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise HandshakeError("response head too large")
            self._fill(deadline, "HTTP response head")
        idx = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:idx])
        del self.buf[:idx + 4]
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise HandshakeError("bad status line %r" % lines[0])
        status, reason = int(m.group(1)), m.group(2) or ""
        headers, header_list = {}, []
        for line in lines[1:]:
            if ":" not in line:
                raise HandshakeError("bad header line %r" % line)
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
            header_list.append((k.strip(), v.strip()))
        body = b""
        if status != 101 and not 100 <= status < 200 and status not in (204, 304):
            if "content-length" in headers:
                n = int(headers["content-length"])
                while len(self.buf) < n:
                    self._fill(deadline, "HTTP response body")
                body = bytes(self.buf[:n])
                del self.buf[:n]
            elif "chunked" not in headers.get("transfer-encoding", "").lower():
                # read to EOF (bounded by the deadline)
                try:
                    while True:
                        self._fill(deadline, "HTTP response body")
                except ConnectionClosed:
                    pass
                body = bytes(self.buf)
                self.buf.clear()
        return HttpResponse(status, reason, headers, header_list, body, head)

    def _validate_101(self, r):
        up = r.header("upgrade", "")
        if up.lower() != "websocket":
            raise HandshakeError("101 with Upgrade %r" % up, r)
        conn = [t.strip().lower() for t in r.header("connection", "").split(",")]
        if "upgrade" not in conn:
            raise HandshakeError("101 with Connection %r" % r.header("connection"), r)
        want = accept_for(self.key)
        if r.header("sec-websocket-accept") != want:
            raise HandshakeError("Sec-WebSocket-Accept %r, want %r"
                                 % (r.header("sec-websocket-accept"), want), r)
        exts = r.all("sec-websocket-extensions")
        self.pmd = None
        if exts:
            try:
                parsed = parse_extensions(", ".join(exts))
            except ValueError as e:
                raise HandshakeError("bad Sec-WebSocket-Extensions %r: %s" % (exts, e), r)
            offered = parse_extensions(self.offered_ext) if self.offered_ext else []
            offered_names = {n for n, _ in offered}
            if len(parsed) != 1 or parsed[0][0] != "permessage-deflate":
                raise HandshakeError("unexpected extensions in the response: %r" % exts, r)
            if "permessage-deflate" not in offered_names:
                raise HandshakeError("extension accepted that was not offered: %r" % exts, r)
            # The response answers one of our offers: valid if it is a valid
            # answer to at least one of them.
            errors = []
            for n, ps in offered:
                if n != "permessage-deflate":
                    continue
                try:
                    self.pmd = pmd_from_response(parsed[0][1], ps)
                    break
                except ProtocolViolation as e:
                    errors.append(str(e))
            if self.pmd is None:
                raise HandshakeError("bad permessage-deflate response %r: %s"
                                     % (exts, "; ".join(errors)), r)
            self.pmd.raw = ", ".join(exts)
            self.deflater = Deflater(self.pmd.client_max_window_bits,
                                     self.pmd.client_no_context_takeover)
            self.inflater = Inflater(self.pmd.server_max_window_bits,
                                     self.pmd.server_no_context_takeover)
        if r.header("sec-websocket-protocol") is not None:
            raise HandshakeError("server selected a subprotocol nobody offered: %r"
                                 % r.header("sec-websocket-protocol"), r)

    # -- sending -------------------------------------------------------------

    def send_raw(self, data, chop=None, delay=0.0):
        """Write data; chop=N writes N bytes at a time (each its own segment,
        TCP_NODELAY), with delay seconds between writes."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        if not chop:
            self.sock.sendall(data)
            return
        mv = memoryview(data)
        for i in range(0, len(data), chop):
            self.sock.sendall(mv[i:i + chop])
            if delay:
                time.sleep(delay)

    def send_frame(self, opcode, payload=b"", fin=True, rsv1=False, rsv2=False, rsv3=False,
                   mask=True, mask_key=None, length=None, length_form=None, chop=None,
                   delay=0.0):
        data = build_frame(opcode, payload, fin, rsv1, rsv2, rsv3, mask, mask_key,
                           length, length_form)
        self.send_raw(data, chop=chop, delay=delay)
        return data

    def frames_for(self, opcode, payload, compress=None, fragment=None):
        """The frames (bytes) of one data message.

        compress: None = iff permessage-deflate was negotiated.  fragment:
        None (one frame), an int (fragment size in bytes of the wire payload),
        or a list of sizes (the rest goes in a last fragment)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if compress is None:
            compress = self.pmd is not None
        if compress:
            if self.deflater is None:
                self.deflater = Deflater()
            wire = self.deflater.compress(payload)
        else:
            wire = payload
        if fragment is None:
            pieces = [wire]
        else:
            if isinstance(fragment, int):
                sizes = [fragment] * max(1, (len(wire) + fragment - 1) // fragment)
            else:
                sizes = list(fragment)
            pieces, pos = [], 0
            for s in sizes:
                pieces.append(wire[pos:pos + s])
                pos += s
            if pos < len(wire):
                pieces.append(wire[pos:])
        out = []
        for i, piece in enumerate(pieces):
            out.append(build_frame(opcode if i == 0 else OP_CONT, piece,
                                   fin=(i == len(pieces) - 1),
                                   rsv1=bool(compress and i == 0)))
        return out

    def send_message(self, opcode, payload, compress=None, fragment=None, chop=None,
                     delay=0.0):
        for f in self.frames_for(opcode, payload, compress, fragment):
            self.send_raw(f, chop=chop, delay=delay)

    def send_text(self, payload, **kw):
        self.send_message(OP_TEXT, payload, **kw)

    def send_binary(self, payload, **kw):
        self.send_message(OP_BINARY, payload, **kw)

    def ping(self, payload=b"", **kw):
        return self.send_frame(OP_PING, payload, **kw)

    def pong(self, payload=b"", **kw):
        return self.send_frame(OP_PONG, payload, **kw)

    def send_close(self, code=None, reason=b"", raw=None, **kw):
        payload = raw if raw is not None else close_payload(code, reason)
        self.close_sent = True
        return self.send_frame(OP_CLOSE, payload, **kw)

    # -- receiving -----------------------------------------------------------

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline, what="data"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("timed out waiting for %s" % what)
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise Timeout("timed out waiting for %s" % what)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            raise ConnectionClosed("connection reset (%s) while waiting for %s" % (e, what),
                                   reset=True)
        if not chunk:
            self.eof = True
            raise ConnectionClosed("EOF while waiting for %s" % what)
        self.buf += chunk

    def recv_frame(self, timeout=None, deadline=None):
        """One server frame, checked against RFC 6455 (not reassembled)."""
        if deadline is None:
            deadline = self._deadline(timeout)
        while len(self.buf) < 2:
            self._fill(deadline, "a frame header")
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        hlen = 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if b1 & 0x80 else 0)
        while len(self.buf) < hlen:
            self._fill(deadline, "a frame header")
        pos = 2
        if n == 126:
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
            if self.strict_length and n <= 125:
                raise ProtocolViolation("server used a 16-bit length for %d bytes" % n)
        elif n == 127:
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
            if n >> 63:
                raise ProtocolViolation("server frame length has its top bit set")
            if self.strict_length and n <= 0xFFFF:
                raise ProtocolViolation("server used a 64-bit length for %d bytes" % n)
        masked = bool(b1 & 0x80)
        if masked:
            raise ProtocolViolation("server frame is masked (header %s)"
                                    % bytes(self.buf[:hlen]).hex())
        while len(self.buf) < hlen + n:
            self._fill(deadline, "a frame payload (%d of %d bytes)"
                       % (len(self.buf) - hlen, n))
        header = bytes(self.buf[:hlen])
        payload = bytes(self.buf[hlen:hlen + n])
        del self.buf[:hlen + n]
        f = Frame(bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10),
                  b0 & 0x0F, masked, payload, header)
        self._check_frame(f)
        return f

    def _check_frame(self, f):
        if f.rsv2 or f.rsv3:
            raise ProtocolViolation("server frame with RSV2/RSV3: %r" % f)
        if f.opcode not in OPCODE_NAMES:
            raise ProtocolViolation("server frame with reserved opcode %#x" % f.opcode)
        if f.is_control:
            if len(f.payload) > 125:
                raise ProtocolViolation("server control frame of %d bytes" % len(f.payload))
            if not f.fin:
                raise ProtocolViolation("server sent a fragmented control frame")
            if f.rsv1:
                raise ProtocolViolation("server control frame with RSV1")
        if f.rsv1:
            if self.pmd is None:
                raise ProtocolViolation("server frame with RSV1 but no extension negotiated")
            if f.opcode == OP_CONT:
                raise ProtocolViolation("server continuation frame with RSV1")
        if f.opcode == OP_CLOSE:
            if len(f.payload) == 1:
                raise ProtocolViolation("server close frame with a 1-byte payload")
            code, reason = f.close_info()
            if code is not None and not valid_close_code(code):
                raise ProtocolViolation("server close frame with code %d" % code)
            try:
                reason.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation("server close reason is not UTF-8: %r" % reason)

    def recv_event(self, timeout=None, deadline=None):
        """The next event: a Message (data, reassembled and inflated) or a
        control Frame (ping, pong, close).  Records a close in close_received.
        Raises Timeout, ConnectionClosed, ProtocolViolation."""
        if deadline is None:
            deadline = self._deadline(timeout)
        while True:
            f = self.recv_frame(deadline=deadline)
            if f.is_control:
                if f.opcode == OP_CLOSE:
                    self.close_received = f.close_info()
                elif f.opcode == OP_PING:
                    self.pings.append(f.payload)
                return f
            if f.opcode == OP_CONT:
                if self._msg_op is None:
                    raise ProtocolViolation("server continuation frame without a message")
            else:
                if self._msg_op is not None:
                    raise ProtocolViolation("server started a new message inside a "
                                            "fragmented one")
                self._msg_op = f.opcode
                self._msg_parts = []
                self._msg_compressed = f.rsv1
                self._msg_frames = 0
            self._msg_parts.append(f.payload)
            self._msg_frames += 1
            if not f.fin:
                continue
            data = b"".join(self._msg_parts)
            op, compressed, nframes = self._msg_op, self._msg_compressed, self._msg_frames
            self._msg_op = None
            self._msg_parts = []
            if compressed:
                data = self.inflater.inflate(data)
            if op == OP_TEXT:
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ProtocolViolation("server text message is not UTF-8: %s" % e)
            return Message(op, data, compressed, nframes)

    def recv_message(self, timeout=None):
        """The next data Message; pings are answered (if auto_pong), pongs
        recorded in self.pongs, a close raises CloseReceived."""
        deadline = self._deadline(timeout)
        while True:
            ev = self.recv_event(deadline=deadline)
            if isinstance(ev, Message):
                return ev
            if ev.opcode == OP_PING:
                if self.auto_pong and not self.close_sent:
                    self.pong(ev.payload)
            elif ev.opcode == OP_PONG:
                self.pongs.append(ev.payload)
            elif ev.opcode == OP_CLOSE:
                raise CloseReceived(*ev.close_info())

    def echo(self, opcode, payload, timeout=None, **kw):
        """Send one message and return the next data Message."""
        self.send_message(opcode, payload, **kw)
        return self.recv_message(timeout)

    def expect_close(self, timeout=None, reply=True):
        """Read until a close frame arrives (data and pongs are kept in
        self.discarded); reply with a close echoing its code unless reply is
        False or we already sent one.  Returns (code, reason); code None for
        an empty close.  Raises Timeout / ConnectionClosed."""
        deadline = self._deadline(timeout)
        self.discarded = []
        while True:
            ev = self.recv_event(deadline=deadline)
            if isinstance(ev, Frame) and ev.opcode == OP_CLOSE:
                code, reason = ev.close_info()
                if reply and not self.close_sent:
                    try:
                        self.send_close(code if code is not None and valid_close_code(code)
                                        else None)
                    except OSError:
                        pass
                return code, reason
            if isinstance(ev, Frame) and ev.opcode == OP_PING and self.auto_pong \
                    and not self.close_sent:
                try:
                    self.pong(ev.payload)
                except OSError:
                    pass
            self.discarded.append(ev)

    def wait_tcp_close(self, timeout=None):
        """Wait for EOF or reset, discarding anything that arrives.
        Returns 'eof', 'reset', or None on timeout."""
        if self.eof:
            return "eof"
        deadline = self._deadline(timeout)
        while True:
            try:
                self._fill(deadline, "TCP close")
            except Timeout:
                return None
            except ConnectionClosed as e:
                return "reset" if e.reset else "eof"
            self.buf.clear()

    def close_handshake(self, code=1000, reason=b"", timeout=None):
        """Client-initiated close: send close(code), wait for the server's
        close and for TCP close.  Returns (code, reason, tcp) where tcp is
        'eof', 'reset' or None (server left TCP open)."""
        deadline = self._deadline(timeout)
        self.send_close(code, reason)
        got = self.expect_close(timeout=max(0.0, deadline - time.monotonic()))
        tcp = self.wait_tcp_close(max(0.0, deadline - time.monotonic()))
        return got[0], got[1], tcp

    # -- introspection ---------------------------------------------------------

    def tcp_state(self):
        """Kernel TCP state of our socket (e.g. 'ESTABLISHED', 'CLOSE_WAIT'
        once the peer sent FIN, 'CLOSE' after a reset) without reading."""
        if self.sock is None:
            return "CLOSED"
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return "UNKNOWN"
        return TCP_STATES.get(info[0], str(info[0]))

    def readable(self, timeout=0.0):
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)
