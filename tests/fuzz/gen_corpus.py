#!/usr/bin/python3
"""Write the seed corpora of tests/fuzz/corpus/<target>/ (stdlib only).

    tests/fuzz/gen_corpus.py [DIR]      DIR defaults to tests/fuzz/corpus

Seeds are a few small valid and invalid inputs per target, in each
target's input format (see the comment at the top of tests/fuzz/fuzz_*.c).
Reproducers of fixed bugs are committed next to them by hand (named
crash-*, leak-*, timeout-*); this script never removes files.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import zlib

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "corpus")
SECRET = b"fuzz-secret-0123456789abcdef-0123"
NOW = 1700000000


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- http: byte 0 the head limit, then the request -------------------------
UPGRADE = ("GET /ws?x=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           "Connection: keep-alive, Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; "
           "client_max_window_bits\r\n\r\n")
put("http", "upgrade", b"\x00" + UPGRADE.encode())
put("http", "events", b"\x00GET /api/daemon/events?limit=10&since="
    b"2026-11-26T12:00:00%2B01:00 HTTP/1.1\r\nHost: h\r\n"
    b"Authorization: Bearer abc.def.ghi\r\n\r\n")
put("http", "post", b"\x00POST /api/daemon/heartbeat HTTP/1.0\r\n"
    b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}")
put("http", "chunked", b"\x00POST /x HTTP/1.1\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n")
put("http", "bad-version", b"\x00GET / HTTP/2.0\r\n\r\n")
put("http", "small-limit", b"\x90GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n")
put("http", "folded", b"\x00GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
put("http", "bare-lf", b"\x00GET /%41%zz HTTP/1.1\nHost: x\n\n")

# ---- ws: flags, read size, then frames ------------------------------------
MASK = bytes([0x37, 0xfa, 0x21, 0x3d])


def frame(op, payload, fin=True, rsv1=False, mask=MASK):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    if n < 126:
        h = bytes([b0, 0x80 | n])
    elif n < 65536:
        h = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return h + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def deflate(msg):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    z = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
    assert z.endswith(b"\x00\x00\xff\xff")
    return z[:-4]


put("ws", "text", b"\x00\x00" + frame(1, b'{"type":"heartbeat"}'))
put("ws", "fragments", b"\x00\x03" + frame(1, b"Hel", fin=False) +
    frame(9, b"ping") + frame(0, "lo \u00e9".encode()))
put("ws", "close", b"\x00\x00" + frame(8, struct.pack(">H", 1000) + b"bye"))
put("ws", "binary-rejected", b"\x04\x00" + frame(2, b"\x00\x01"))
put("ws", "len16", b"\x00\x07" + frame(1, b"a" * 300))
put("ws", "compressed", b"\x01\x00" + frame(1, deflate(b'{"type":"x"}' * 4),
                                              rsv1=True))
put("ws", "compressed-split", b"\x03\x05" +
    frame(1, deflate(b"hello hello hello")[:5], fin=False, rsv1=True) +
    frame(0, deflate(b"hello hello hello")[5:]))
put("ws", "bad-utf8", b"\x00\x00" + frame(1, b"\xc3\x28"))
put("ws", "unmasked", b"\x00\x00\x81\x02hi")
put("ws", "toobig", b"\x08\x00" + frame(1, b"x" * 200))
put("ws", "client-unmasked", b"\x20\x00\x81\x05hello\x89\x00"
    b"\x88\x02\x03\xe8")

# ---- pmd -------------------------------------------------------------------
z = deflate(b"the quick brown fox jumps over the lazy dog " * 3)
pieces = b""
rest = z
while rest:
    p, rest = rest[:40], rest[40:]
    pieces += bytes([len(p) | (0x40 if not rest else 0)]) + p
put("pmd", "inflate", b"\x07\x40" + pieces)
put("pmd", "inflate-small-room", b"\x0f\x00" + pieces)
put("pmd", "inflate-empty", b"\x07\x40\x40")
put("pmd", "inflate-garbage", b"\x07\x40\x45\xff\xff\xff\xff\xff")
bomb = deflate(b"\x00" * 200000)
put("pmd", "inflate-bomb", b"\x07\xff" + b"".join(
    bytes([len(bomb[i:i + 63]) | (0x40 if i + 63 >= len(bomb) else 0)]) +
    bomb[i:i + 63] for i in range(0, len(bomb), 63)))
put("pmd", "negotiate", b"\x40permessage-deflate; client_max_window_bits, "
    b"permessage-deflate; server_max_window_bits=10")
put("pmd", "negotiate-bad", b"\x40permessage-deflate; "
    b"server_max_window_bits=7; server_max_window_bits=9, x-webkit")
put("pmd", "negotiate-quoted", b'\x40permessage-deflate; '
    b'client_max_window_bits="12"; server_no_context_takeover')
put("pmd", "roundtrip", b"\x80" + "h\u00e9llo wor\u00ebld".encode() * 5)

# ---- utf8 ------------------------------------------------------------------
put("utf8", "ascii", b"\x00hello")
put("utf8", "mixed", b"\x03" + "a\u00e9\u20ac\U0001f600z".encode())
put("utf8", "overlong", b"\x01\xc0\xaf\xe0\x80\xaf")
put("utf8", "surrogate", b"\x02\xed\xa0\x80")
put("utf8", "too-high", b"\x04\xf4\x90\x80\x80")
put("utf8", "truncated", b"\x05ab\xe2\x82")

# ---- json ------------------------------------------------------------------
put("json", "object", b'\x01{"a":[1,2.5,-3e2,true,false,null],"b":{"c":"d"}}')
put("json", "escapes", b'\x00["\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/"]')
put("json", "dupkeys", b'\x01{"a":1,"a\\u0062":2,"ab":3}')
put("json", "numbers", b'\x00[0,-0,1e400,18446744073709551615,'
    b'-9223372036854775808,9223372036854775808,0.1e-5]')
put("json", "bad", b'\x00{"a":01}')
put("json", "deep", b"\x02" + b"[" * 20 + b"]" * 20)
put("json", "nul", b'\x00"a\\u0000b"')
put("json", "lone-surrogate", b'\x00"\\ud800"')

# ---- proto -----------------------------------------------------------------
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256(claims, header=None):
    h = b64u(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64u(json.dumps(claims).encode())
    sig = hmac.new(SECRET, (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64u(sig)


CLAIMS = {"orchestratorId": "o1", "daemonId": "d1", "exp": NOW + 3600,
          "iat": NOW - 10, "scopes": ["messages", "channels"],
          "jti": "j1", "type": "access"}
TOKEN = hs256(CLAIMS)
put("proto", "auth", json.dumps({"type": "auth", "id": "1", "payload": {
    "accessToken": TOKEN, "orchestratorId": "o1", "daemonId": "d1",
    "resumeFrom": 5}}))
put("proto", "heartbeat", json.dumps({"type": "heartbeat", "payload": {
    "status": "busy", "metrics": {"uptimeSeconds": 3, "custom": {
        "q": 1, "s": "x"}}}}))
put("proto", "subscribe", json.dumps({"type": "subscribe", "payload": {
    "eventTypes": ["message.created", "channel.*", "*"],
    "channelIds": ["c1", "c2"]}}))
put("proto", "unsubscribe", json.dumps({"type": "unsubscribe", "payload": {
    "eventTypes": ["channel.*", "channel.*"]}}))
put("proto", "ack", json.dumps({"type": "ack", "payload": {
    "eventIds": ["e1", "e2"]}}))
put("proto", "bad-payload", '{"type":"subscribe","payload":[]}')
put("proto", "bad-type", '{"type":1}')

# ---- jwt: even = token as is; odd = hlen, header, claims (signed) --------
put("jwt", "token", b"\x00" + TOKEN.encode())
put("jwt", "token-forged", b"\x00" + TOKEN[:-3].encode() + b"AAA")
put("jwt", "token-none", b"\x00" + (b64u(b'{"alg":"none"}') + "." +
                                    b64u(b'{"sub":"x"}') + ".").encode())
hdr = json.dumps({"alg": "HS256", "kid": "k1"}).encode()
put("jwt", "signed", b"\x01" + bytes([len(hdr)]) + hdr +
    json.dumps(CLAIMS).encode())
put("jwt", "signed-sub", b"\x01" + bytes([len(hdr)]) + hdr + json.dumps({
    "sub": "o2", "exp": NOW + 0.5, "nbf": NOW - 1.5, "aud": ["a", "b"],
    "iss": "me"}).encode())
put("jwt", "signed-expired", b"\x01" + bytes([len(hdr)]) + hdr + json.dumps({
    "sub": "o2", "exp": NOW - 100}).encode())
hdr2 = b'{"alg":"HS256","crit":["b64"]}'
put("jwt", "signed-crit", b"\x01" + bytes([len(hdr2)]) + hdr2 +
    b'{"sub":"o","exp":1800000000}')
put("jwt", "signed-dup", b"\x01" + bytes([len(hdr)]) + hdr +
    b'{"sub":"o","sub":"p","exp":1800000000}')

# ---- event: byte 0 channel/limit, then the record -------------------------
REC = {"id": "ev-1", "type": "message.created", "orchestratorId": "o1",
       "daemonId": "d1", "organizationId": "acme", "workspaceId": "w",
       "channelId": "c1", "payload": {"text": "hi", "n": [1, 2]},
       "timestamp": "2026-11-26T12:00:00.123Z", "requiresAck": True,
       "priority": -5}
put("event", "full", b"\x01" + json.dumps(REC).encode())
put("event", "broadcast", b'\x00{"id":"b","type":"presence.update",'
    b'"orchestratorId":"*","payload":{}}')
put("event", "org", b'\x01{"id":"o","type":"x","payload":{"a":null},'
    b'"organizationId":null}')
put("event", "bad-org", b'\x01{"id":"o","type":"x","payload":{},'
    b'"organizationId":"other"}')
put("event", "daemon-no-orch", b'\x00{"id":"o","type":"x","payload":{},'
    b'"daemonId":"d"}')
put("event", "small-limit", b"\x02" + json.dumps(REC).encode())
put("event", "bad-time", b'\x00{"id":"t","type":"x","payload":{},'
    b'"timestamp":"2026-02-30T00:00:00Z"}')

# ---- ipc: read size, payload bound, then frames ---------------------------
def ipc(typ, payload, flags=0):
    return b"OE\x01\x00" + struct.pack("<HHII", typ, flags, len(payload),
                                       0) + payload


def ipc_event(eid, etype, orch, daemon, org, chan, msg, target=0):
    s = [x.encode() for x in (eid, etype, orch, daemon, org, chan)]
    fixed = struct.pack("<QQiBB6HIH", 7, 1700000000000, -3, 1, target,
                        *[len(x) for x in s], len(msg), 0)
    assert len(fixed) == 40
    return ipc(2, fixed + b"".join(s) + msg)


def ipc_kick(match, orch, daemon, jti, reason, conn_id):
    fixed = struct.pack("<BBHHBBQ", match, 0, len(orch), len(daemon),
                        len(jti), len(reason), conn_id)
    return ipc(4, fixed + orch + daemon + jti + reason)


EVMSG = b'{"type":"event","payload":{}}'
put("ipc", "stream", b"\x00\x00" + ipc(1, struct.pack("<QI", 3, 1234)) +
    ipc(3, struct.pack("<Q", 99)) +
    ipc_event("e1", "message.created", "o1", "d1", "acme", "c1", EVMSG) +
    ipc(5, struct.pack("<I", 6)) + ipc(6, b"upgrade"))
put("ipc", "split", b"\x05\x00" + ipc_event("e2", "x", "", "", "acme", "",
                                            EVMSG, 1) +
    ipc_kick(0x0d, b"o1", b"", b"jti-1", b"bye", 42))
put("ipc", "kick-daemon", b"\x00\x00" + ipc_kick(0x03, b"o1", b"d1", b"",
                                                 b"", 0))
put("ipc", "bad-magic", b"\x00\x00XE\x01\x00" + b"\x00" * 12)
put("ipc", "too-big", b"\x00\x01" + b"OE\x01\x00" +
    struct.pack("<HHII", 2, 0, 100000, 0))
put("ipc", "unknown-type", b"\x00\x00" + ipc(77, b"abc"))
put("ipc", "bad-level", b"\x00\x00" + ipc(5, struct.pack("<I", 1)))

# ---- config ----------------------------------------------------------------
put("config", "basic", """# orchd.conf
listen 127.0.0.1:8080
listen [::1]:8443 tls
workers 2
ws_path /ws
heartbeat_interval 30s
max_message_size 64k
redis_url redis://127.0.0.1:6379/0
log syslog
""")
put("config", "quotes", 'ws_path "/a b"\nlog_level debug # trailing\n'
    "admin_socket /run/orchd/admin.sock 0660\n")
put("config", "errors", "workers -1\nunknown_directive x\nlisten nope\n"
    'ws_path "unterminated\n')
put("config", "include", "include conf.d/*.conf\ninclude /nonexistent/x\n")
put("config", "sizes", "max_message_size 99999999999999999999g\n"
    "heartbeat_interval 0ms\nauth_timeout 2d\n")

# ---- admin -----------------------------------------------------------------
for name, rq in [
        ("status", {"cmd": "status"}),
        ("connections", {"cmd": "connections", "orchestrator": "o1",
                         "daemon": "d1", "worker": 1, "limit": 10}),
        ("kick", {"cmd": "kick", "connection": "0:42", "reason": "bye"}),
        ("revoke", {"cmd": "revoke", "jti": "j1", "ttl": 60}),
        ("publish", {"cmd": "publish", "event": REC}),
        ("loglevel", {"cmd": "loglevel", "level": "debug"}),
        ("drain", {"cmd": "drain", "worker": 0, "reason": "upgrade"}),
        ("unknown-field", {"cmd": "kick", "orchestrator": "o",
                           "orchestrater": "x"})]:
    put("admin", name, json.dumps(rq))
put("admin", "not-json", "status\n")
put("admin", "long-cmd", '{"cmd":"' + "\u00e9" * 40 + '"}')

# ---- query -----------------------------------------------------------------
put("query", "both", "limit=10&since=2026-11-26T12:00:00.5%2B01:00")
put("query", "plus-space", "since=2026-11-26T12:00:00+01:00&limit=1000")
put("query", "bad", "limit=0&limit=5&since=%zz")
put("query", "raw-time", "2026-01-31T23:59:59.999999Z")

# ---- orchctl: byte 0 picks the parser --------------------------------------
put("orchctl", "event", b"\x00" + json.dumps({
    "type": "event", "id": "u", "timestamp": "t", "payload": {
        "eventId": "e1", "seq": 3, "requiresAck": True,
        "payload": {"a": 1}}}).encode())
put("orchctl", "auth-success", b"\x00" + json.dumps({
    "type": "auth_success", "payload": {"heartbeatInterval": 30000}})
    .encode())
put("orchctl", "reconnect", b"\x00" + json.dumps({
    "type": "reconnect", "payload": {"reason": "drain", "delayMs": 100}})
    .encode())
put("orchctl", "reply-ok", b'\x01{"ok":true,"closed":2}')
put("orchctl", "reply-err", b'\x01{"ok":false,"error":"no such worker"}')
put("orchctl", "status", b'\x02{"ok":true,"log_level":"info","stats":'
    b'{"workers":[{"pid":1,"connections":2}],"relay":{"redis":"up"}}}')
put("orchctl", "connections", b'\x03{"ok":true,"total":1,"connections":'
    b'[{"connection":"0:1","orchestrator":"o","daemon":"d",'
    b'"connected_ms":1699999999000}]}')
put("orchctl", "upgrade", b"\x04HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
put("orchctl", "url", b"\x05wss://[::1]:8443/ws?x=1")
put("orchctl", "url2", b"\x05ws://example.org")
put("orchctl", "compact-peek", b"\x06" + TOKEN.encode())
put("orchctl", "compact", b'\x06 { "a" : [ 1 , "b c" ] }\n')
print("corpus written to", OUT)
