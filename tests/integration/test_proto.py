"""The daemon protocol (PROTOCOL.md sections 2-5 and 8) end to end: the real
orchd (2 workers), a real redis-server (redisfix), tokens minted here
(tokens.py: HS256/384/512, RS256 and ES256 through the openssl CLI).

Covered: every close code with its scenario (4001 with each auth_error
code, 4002, 4003, 4004, 4005, 4007, 1003), token refresh in place, the
heartbeat keys and notices in Redis (and the HTTP heartbeat), session keys
and their cleanup (client close, 4007, kill -9 of the worker), the
per-orchestrator quota across workers (50 concurrent auths, then kill -9),
message validation (NOT_AUTHENTICATED, INVALID_MESSAGE with details.field,
LIMIT_EXCEEDED, INSUFFICIENT_SCOPE), and a reference daemon written with
python3-websockets the way the TypeScript service's clients behave.
Beyond the issue's list: malformed tokens, id lengths, JSON escaping of ids
in what orchd writes to Redis, deep JSON, unknown fields, a Redis restart,
and big (but legal) heartbeats and subscriptions.

Needs redis-server and openssl on PATH.  Every wait is bounded; every test
has its own orchd, redis-server and temp dir.  Run:

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_proto -v
"""

import asyncio
import datetime
import hmac
import json
import os
import re
import signal
import threading
import time
import unittest
import uuid

from harness import OrchdTestCase, http_request, wait_for
from redisfix import start_redis
import tokens
from wsclient import CloseReceived, ConnectionClosed, Timeout, WsClient

try:
    import websockets
    import websockets.exceptions
except ImportError:  # pragma: no cover - reported by the test that needs it
    websockets = None

WS_PATH = "/daemon/ws"
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ALL_SCOPES = ["messages:read", "channels:read", "presence:read", "vp:status", "calls:join"]
REVOKED_SET = "daemon:tokens:revoked"


# --------------------------------------------------------------------------
# helpers


def to_ms(v):
    """A server time (ISO 8601 string or epoch number in s or ms) -> epoch ms."""
    if isinstance(v, bool) or v is None:
        raise ValueError("not a time: %r" % (v,))
    if isinstance(v, (int, float)):
        return float(v) if v > 1e11 else float(v) * 1000.0
    if isinstance(v, str):
        s = v.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        dt = datetime.datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp() * 1000.0
    raise ValueError("not a time: %r" % (v,))


def now_ms():
    return time.time() * 1000.0


def find_values(obj, key):
    """Every value of key anywhere inside a JSON value."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.append(v)
            out.extend(find_values(v, key))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_values(v, key))
    return out


def check_envelope(testcase, msg, raw=""):
    """Section 2: type, id (uuid v4), timestamp (ISO ms Z), payload object."""
    testcase.assertIsInstance(msg, dict, raw)
    testcase.assertIsInstance(msg.get("type"), str, raw)
    testcase.assertRegex(str(msg.get("id")), UUID4_RE, "id is not a uuid v4: %s" % raw)
    testcase.assertRegex(str(msg.get("timestamp")), TS_RE,
                         "timestamp is not ISO 8601 ms Z: %s" % raw)
    testcase.assertIsInstance(msg.get("payload"), dict, raw)


class ProtoClient:
    """A raw WebSocket (wsclient.WsClient) speaking the daemon protocol."""

    def __init__(self, testcase, port, path=WS_PATH, timeout=5.0):
        self.t = testcase
        self.ws = WsClient.open(port, path=path, timeout=timeout)
        self.log = []  # every message received, parsed

    def close(self):
        self.ws.close()

    def send_text(self, text):
        self.ws.send_text(text if isinstance(text, (bytes, str)) else json.dumps(text))

    def send(self, type_, payload=None, with_id=True, extra_top=None):
        msg = {"type": type_}
        if with_id:
            msg["id"] = str(uuid.uuid4())
            msg["timestamp"] = datetime.datetime.now(datetime.timezone.utc) \
                .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if payload is not None:
            msg["payload"] = payload
        msg.update(extra_top or {})
        self.ws.send_text(json.dumps(msg))
        return msg

    def recv(self, timeout=5.0):
        """The next server message, parsed and envelope-checked.  Raises
        CloseReceived if a close frame comes instead."""
        m = self.ws.recv_message(timeout=timeout)
        self.t.assertEqual(m.opcode, 1, "server sent a non-text message: %r" % m)
        raw = m.data.decode("utf-8")
        try:
            msg = json.loads(raw)
        except ValueError:
            self.t.fail("server sent invalid JSON: %r" % raw[:300])
        check_envelope(self.t, msg, raw[:500])
        self.log.append(msg)
        return msg

    def expect(self, type_, timeout=5.0):
        """The next message, which must be of type_; returns its payload."""
        try:
            msg = self.recv(timeout)
        except CloseReceived as e:
            self.t.fail("expected %s, got close %s %r" % (type_, e.code, e.reason))
        self.t.assertEqual(msg["type"], type_, "expected %s, got %s" % (type_, json.dumps(msg)))
        return msg["payload"]

    def quiet(self, seconds):
        """True if no data message arrives within seconds (pings answered)."""
        try:
            m = self.ws.recv_message(timeout=seconds)
        except Timeout:
            return True
        self.log.append(m.data)
        return False

    def auth(self, token, daemon, orch, resume=None, orch_key="orchestratorId", **extra):
        p = {"accessToken": token, "daemonId": daemon, orch_key: orch}
        if resume is not None:
            p["resumeFrom"] = resume
        p.update(extra)
        self.send("auth", p)
        return self.recv()

    def heartbeat(self, status="active", metrics=None):
        p = {"status": status}
        if metrics is not None:
            p["metrics"] = metrics
        self.send("heartbeat", p)
        return self.expect("heartbeat_ack")

    def close_handshake(self, timeout=3.0):
        """Client close 1000, wait for the server's close and its TCP close,
        then close our socket as a real client does.  Returns the server's
        close code."""
        code, _, _ = self.ws.close_handshake(timeout=timeout)
        self.ws.close()
        return code

    def finish(self, timeout=3.0):
        """After a server close: wait for the server's TCP close, then close
        our socket as a real client does.  Returns 'eof', 'reset' or None."""
        how = self.ws.wait_tcp_close(timeout=timeout)
        self.ws.close()
        return how

    def expect_close(self, timeout=5.0):
        """(code, reason) of the server's close; data before it is kept in
        self.ws.discarded."""
        try:
            return self.ws.expect_close(timeout=timeout)
        except Timeout:
            self.t.fail("no close frame within %.1fs (messages: %s)"
                        % (timeout, self.log[-5:]))
        except ConnectionClosed as e:
            self.t.fail("TCP closed without a close frame: %s" % e)


class ProtoTestCase(OrchdTestCase):
    """Starts a redis-server + orchd pair and mints tokens for it."""

    def setUp(self):
        super().setUp()
        self.secret = os.urandom(24).hex()
        self.secret_path = tokens.write_secret(os.path.join(self.tmp, "jwt.secret"),
                                               self.secret)
        self.orch = "orch-" + uuid.uuid4().hex[:8]
        self.daemon = "daemon-" + uuid.uuid4().hex[:8]
        self.org = "org-" + uuid.uuid4().hex[:8]
        self.redis = None
        self.o = None

    def start_stack(self, redis=True, **overrides):
        """redis-server (unless redis=False) then orchd with 2 workers.
        overrides: config directives (None removes one)."""
        if redis:
            self.redis = start_redis(self)
        cfg = {
            "workers": 2,
            "drain_timeout": "1s",
            "redis": self.redis.url if self.redis else "unix:" + os.path.join(self.tmp,
                                                                             "no-redis.sock"),
            "redis_timeout": "2s",
            "jwt_secret_file": self.secret_path,
        }
        cfg.update(overrides)
        self.o = self.start_orchd(overrides=cfg)
        return self.o

    def token(self, orch=None, daemon=None, scopes=ALL_SCOPES, alg="HS256", secret=None,
              **kw):
        c = tokens.claims(orch or self.orch, daemon=daemon, org=kw.pop("org", self.org),
                          scopes=scopes, **kw)
        return tokens.hs_token(c, secret if secret is not None else self.secret, alg)

    def client(self, **kw):
        c = ProtoClient(self, self.o.port, **kw)
        self.addCleanup(c.close)
        return c

    def authed(self, token=None, daemon=None, orch=None, **kw):
        """A client that got auth_success; returns (client, payload)."""
        c = self.client()
        msg = c.auth(token or self.token(daemon=daemon), daemon or self.daemon,
                     orch or self.orch, **kw)
        self.assertEqual(msg["type"], "auth_success", "%s%s" % (json.dumps(msg), self.diag()))
        return c, msg["payload"]

    def assert_auth_error(self, c, msg, code, close_code=4001):
        """msg is auth_error with code, then the server closes with close_code."""
        self.assertEqual(msg["type"], "auth_error", json.dumps(msg))
        self.assertEqual(msg["payload"].get("code"), code, json.dumps(msg))
        self.assertIsInstance(msg["payload"].get("message"), str, json.dumps(msg))
        got, reason = c.expect_close(timeout=5)
        self.assertEqual(got, close_code, "close code after auth_error %s (reason %r)"
                         % (code, reason))
        self.assertEqual([d for d in c.ws.discarded if not hasattr(d, "opcode")
                          or d.opcode in (1, 2)], [],
                         "data between auth_error and close")
        self.assertIn(c.ws.wait_tcp_close(timeout=3), ("eof", "reset"))

    def auth_fails(self, token, code, close_code=4001, daemon=None, orch=None):
        c = self.client()
        msg = c.auth(token, daemon or self.daemon, orch or self.orch)
        self.assert_auth_error(c, msg, code, close_code)

    def assert_error(self, msg, code, field=None, prefix=False):
        self.assertEqual(msg["type"], "error", json.dumps(msg))
        p = msg["payload"]
        self.assertEqual(p.get("code"), code, json.dumps(msg))
        self.assertIsInstance(p.get("message"), str, json.dumps(msg))
        if field is not None:
            details = p.get("details")
            self.assertIsInstance(details, dict, "no details: %s" % json.dumps(msg))
            got = details.get("field")
            if prefix:
                self.assertIsInstance(got, str, json.dumps(msg))
                self.assertTrue(got.startswith(field),
                                "details.field %r does not start with %r" % (got, field))
            else:
                self.assertEqual(got, field, json.dumps(msg))

    def worker_pid_of(self, worker):
        """The pid of the worker named by a session's `worker` field (a pid
        or a slot number answered by /healthz)."""
        try:
            n = int(worker)
        except (TypeError, ValueError):
            self.fail("session worker field %r is not a number" % (worker,))
        pids = self.o.worker_pids()
        if n in pids:
            return n

        def probe():
            d = self.o.healthz()
            return d["pid"] if d.get("worker") == n else None
        pid = wait_for(probe, 5.0, 0.0)
        self.assertTrue(pid, "no /healthz answer from worker slot %r (workers %s)" % (n, pids))
        return pid

    def session(self, connection_id):
        h = self.redis.command("HGETALL", "ws:connection:%s" % connection_id)
        return dict(zip(h[0::2], h[1::2]))


# --------------------------------------------------------------------------
# authentication (4001, 4005, section 8)


class AuthTest(ProtoTestCase):

    def test_auth_success_payload(self):
        self.start_stack(heartbeat_interval="7s")
        tok = self.token(daemon=self.daemon, scopes=["messages:read", "vp:status"],
                         exp_in=600)
        exp = tokens.decode_unverified(tok)[1]["exp"]
        c = self.client()
        t0 = now_ms()
        msg = c.auth(tok, self.daemon, self.orch)
        self.assertEqual(msg["type"], "auth_success", json.dumps(msg) + self.diag())
        p = msg["payload"]
        self.assertIsInstance(p.get("sessionId"), str)
        self.assertTrue(p["sessionId"])
        self.assertEqual(p.get("scopes"), ["messages:read", "vp:status"], p)
        self.assertLess(abs(to_ms(p["serverTime"]) - t0), 5000, p)
        self.assertEqual(p.get("heartbeatIntervalMs"), 7000, p)
        self.assertIsInstance(p.get("connectionId"), str)
        self.assertTrue(p["connectionId"])
        self.assertEqual(p.get("protocolVersion"), 1, p)
        # An empty queue, read: nothing after resumeFrom is missing.
        self.assertIs(p.get("recovered"), True, p)
        self.assertEqual(p.get("queued"), 0, p)
        self.assertLess(abs(to_ms(p["tokenExpiresAt"]) - exp * 1000.0), 1000, p)
        # The connection stays: a heartbeat is answered.
        c.heartbeat()

    def test_auth_accepted_forms(self):
        """vpId alias, orchestratorId claim instead of sub, HS384/HS512, no
        daemonId claim, a message without id/timestamp, resumeFrom 0."""
        self.start_stack(max_connections_per_orchestrator=20)
        cases = [
            ("vpId alias", dict(), dict(orch_key="vpId")),
            ("orchestratorId claim", dict(sub=False), {}),
            ("HS384", dict(alg="HS384"), {}),
            ("HS512", dict(alg="HS512"), {}),
            ("daemonId claim", dict(daemon=self.daemon), {}),
            ("resumeFrom 0", dict(), dict(resume=0)),
            ("jti absent", dict(jti=False), {}),
        ]
        for name, tkw, akw in cases:
            with self.subTest(name):
                c = self.client()
                msg = c.auth(self.token(**tkw), self.daemon, self.orch, **akw)
                self.assertEqual(msg["type"], "auth_success", json.dumps(msg))
                self.assertEqual(c.close_handshake(), 1000)
        with self.subTest("no id/timestamp"):
            c = self.client()
            c.send("auth", {"accessToken": self.token(), "daemonId": self.daemon,
                            "orchestratorId": self.orch}, with_id=False)
            c.expect("auth_success")

    def test_auth_failed_variants_close_4001(self):
        self.start_stack()
        good = self.token(daemon=self.daemon)
        other_secret = os.urandom(24).hex()
        cases = [
            ("bad signature", tokens.tamper(good), None, None),
            ("garbage", "not-a-jwt", None, None),
            ("three garbage parts", "a.b.c", None, None),
            ("wrong secret", self.token(secret=other_secret), None, None),
            ("wrong orchestrator", self.token(orch="orch-other"), None, None),
            ("orchestrator mismatch in auth", self.token(), None, "orch-somebody-else"),
            ("wrong daemon", self.token(daemon="daemon-other"), None, None),
            ("alg none", tokens.none_token(tokens.claims(self.orch, org=self.org)), None, None),
            ("alg None", tokens.none_token(tokens.claims(self.orch, org=self.org), "None"),
             None, None),
            ("alg none with a signature",
             tokens.none_token(tokens.claims(self.orch, org=self.org)) + "c2ln", None, None),
            ("refresh token", self.token(typ="refresh"), None, None),
            ("no exp", self.token(exp_in=None), None, None),
            ("no sub", tokens.hs_token(tokens.claims(self.orch, org=self.org,
                                                     subject=None), self.secret),
             None, None),
            ("nbf in the future", self.token(nbf=int(time.time()) + 3600), None, None),
            ("unconfigured alg RS256 with HMAC",
             tokens.hs_token(tokens.claims(self.orch, org=self.org), self.secret,
                             header={"alg": "RS256"}), None, None),
        ]
        for name, tok, daemon, orch in cases:
            with self.subTest(name):
                self.auth_fails(tok, "AUTH_FAILED", daemon=daemon, orch=orch)
        # The server is fine afterwards.
        self.authed()

    def test_token_expired_4001_and_leeway(self):
        self.start_stack(jwt_leeway="30s")
        with self.subTest("expired beyond the leeway"):
            self.auth_fails(self.token(exp_in=-120), "TOKEN_EXPIRED")
        with self.subTest("expired within the leeway"):
            self.authed(self.token(exp_in=-5))

    def test_token_revoked_4001(self):
        self.start_stack()
        jti = str(uuid.uuid4())
        self.assertEqual(self.redis.command("SADD", REVOKED_SET, jti), 1)
        self.auth_fails(self.token(jti=jti), "TOKEN_REVOKED")
        # Another jti of the same orchestrator is fine.
        self.authed(self.token(jti=str(uuid.uuid4())))

    def test_insufficient_scope_4005(self):
        self.start_stack(required_scopes="daemon:connect messages:read")
        self.auth_fails(self.token(scopes=["messages:read"]), "INSUFFICIENT_SCOPE", 4005)
        self.auth_fails(self.token(scopes=None), "INSUFFICIENT_SCOPE", 4005)
        self.authed(self.token(scopes=["messages:read", "daemon:connect"]))

    def test_no_verification_key_unavailable_4001(self):
        self.start_stack(jwt_secret_file=None)
        self.auth_fails(self.token(), "UNAVAILABLE")

    def test_redis_down_strict_unavailable_4001(self):
        self.start_stack(revocation_check="strict", redis_timeout="1s")
        self.authed()  # Redis up: fine
        self.redis.stop()
        c = self.client()
        t0 = time.monotonic()
        msg = c.auth(self.token(), self.daemon, self.orch)
        self.assertLess(time.monotonic() - t0, 3.0, "auth answered after redis_timeout")
        self.assert_auth_error(c, msg, "UNAVAILABLE")

    def test_redis_hung_strict_unavailable_4001(self):
        self.start_stack(revocation_check="strict", redis_timeout="1s")
        self.authed()
        self.redis.debug_sleep(4)
        time.sleep(0.1)
        c = self.client()
        t0 = time.monotonic()
        c.send("auth", {"accessToken": self.token(), "daemonId": self.daemon,
                        "orchestratorId": self.orch})
        msg = c.recv(timeout=4)
        self.assertLess(time.monotonic() - t0, 2.5, "auth not answered at redis_timeout")
        self.assert_auth_error(c, msg, "UNAVAILABLE")

    def test_redis_restart_recovers(self):
        """After a Redis restart (same socket) workers reconnect: strict
        auth works again and heartbeats are recorded again; a connection
        authenticated before the outage survives it."""
        self.start_stack(revocation_check="strict", heartbeat_interval="10s")
        c, _ = self.authed()
        self.redis.restart()
        c.heartbeat()

        def auth_ok():
            c2 = ProtoClient(self, self.o.port)
            self.addCleanup(c2.close)
            m = c2.auth(self.token(), self.daemon + "-2", self.orch)
            c2.close()
            return m["type"] == "auth_success"
        self.assertTrue(wait_for(auth_ok, 8.0, 0.3),
                        "strict auth still failing after Redis came back%s" % self.diag())
        key = "daemon:heartbeat:%s" % self.orch

        def recorded():
            c.heartbeat()
            return self.redis.command("EXISTS", key)
        self.assertTrue(wait_for(recorded, 5.0, 0.3), "heartbeats not recorded after restart")
        jti = str(uuid.uuid4())
        self.redis.command("SADD", REVOKED_SET, jti)
        self.auth_fails(self.token(jti=jti), "TOKEN_REVOKED")

    def test_redis_down_strict_without_jti_succeeds(self):
        self.start_stack(revocation_check="strict")
        self.redis.stop()
        self.authed(self.token(jti=False))

    def test_redis_down_best_effort_succeeds(self):
        self.start_stack(revocation_check="best-effort", redis_timeout="1s")
        self.redis.stop()
        c, p = self.authed()
        c.heartbeat()

    def test_revocation_check_off_ignores_revoked_set(self):
        self.start_stack(revocation_check="off")
        jti = str(uuid.uuid4())
        self.redis.command("SADD", REVOKED_SET, jti)
        self.authed(self.token(jti=jti))

    def test_issuer_and_audience(self):
        self.start_stack(jwt_issuer="https://issuer.example", jwt_audience="orchd")
        ok = dict(iss="https://issuer.example", aud="orchd")
        self.authed(self.token(**ok))
        with self.subTest("aud array containing the audience"):
            self.authed(self.token(iss="https://issuer.example", aud=["x", "orchd"]))
        for name, kw in [("wrong iss", dict(iss="https://evil.example", aud="orchd")),
                         ("no iss", dict(aud="orchd")),
                         ("wrong aud", dict(iss="https://issuer.example", aud="other")),
                         ("no aud", dict(iss="https://issuer.example")),
                         ("aud array without it", dict(iss="https://issuer.example",
                                                       aud=["a", "b"]))]:
            with self.subTest(name):
                self.auth_fails(self.token(**kw), "AUTH_FAILED")

    def test_rs256_es256_with_kid_selection(self):
        rsa1 = tokens.RsaKey(self.tmp, "rsa1")
        rsa2 = tokens.RsaKey(self.tmp, "rsa2")
        ec1 = tokens.EcKey(self.tmp, "ec1")
        ec_unknown = tokens.EcKey(self.tmp, "ec-unknown")
        self.start_stack(jwt_public_key=["%s k-rsa1" % rsa1.public_pem,
                                         "%s k-rsa2" % rsa2.public_pem,
                                         "%s k-ec1" % ec1.public_pem])
        cl = lambda: tokens.claims(self.orch, daemon=self.daemon, org=self.org,  # noqa: E731
                                   scopes=ALL_SCOPES)
        for name, tok in [("RS256 k-rsa1", rsa1.token(cl(), kid="k-rsa1")),
                          ("RS256 k-rsa2", rsa2.token(cl(), kid="k-rsa2")),
                          ("ES256 k-ec1", ec1.token(cl(), kid="k-ec1")),
                          ("HS256 secret beside public keys", self.token())]:
            with self.subTest(name):
                c, p = self.authed(tok)
                self.assertEqual(c.close_handshake(), 1000)
        with open(rsa1.public_pem, "rb") as f:
            pem = f.read()
        for name, tok in [
                ("RS256 signed by rsa1, kid k-rsa2", rsa1.token(cl(), kid="k-rsa2")),
                ("RS256 unknown kid", rsa1.token(cl(), kid="k-nope")),
                ("ES256 unknown key", ec_unknown.token(cl(), kid="k-ec1")),
                ("ES256 kid of an RSA key", ec1.token(cl(), kid="k-rsa1")),
                ("RS256 tampered", tokens.tamper(rsa1.token(cl(), kid="k-rsa1"))),
                ("ES256 tampered", tokens.tamper(ec1.token(cl(), kid="k-ec1"))),
                ("HS256 keyed with the RSA public key (key confusion)",
                 tokens.hs_token(cl(), pem, "HS256", kid="k-rsa1")),
                ("ES256 DER signature instead of r||s",
                 (lambda si: si + "." + tokens.b64url(ec1.sign_bytes(si.encode())))(
                     tokens.signing_input({"alg": "ES256", "kid": "k-ec1"}, cl())))]:
            with self.subTest(name):
                self.auth_fails(tok, "AUTH_FAILED")

    def test_malformed_tokens(self):
        """Tokens that are well signed but malformed inside, and shapes that
        are not a JWS compact token: AUTH_FAILED, and nothing breaks."""
        self.start_stack()
        sec = self.secret.encode()
        good = tokens.claims(self.orch, org=self.org, scopes=ALL_SCOPES)

        def signed(header_text, claims_text, alg="HS256"):
            si = tokens.b64url(header_text) + "." + tokens.b64url(claims_text)
            sig = hmac.new(sec, si.encode(), tokens.HS_HASHES[alg]).digest()
            return si + "." + tokens.b64url(sig)
        hdr = '{"alg":"HS256","typ":"JWT"}'
        cases = [
            ("header not JSON", signed("{", json.dumps(good))),
            ("header an array", signed('["HS256"]', json.dumps(good))),
            ("header without alg", signed('{"typ":"JWT"}', json.dumps(good))),
            ("alg lower case", signed('{"alg":"hs256"}', json.dumps(good))),
            ("alg not a string", signed('{"alg":256}', json.dumps(good))),
            ("claims not JSON", signed(hdr, '{"sub":')),
            ("claims an array", signed(hdr, "[1]")),
            ("exp a string", signed(hdr, json.dumps(dict(good, exp=str(good["exp"]))))),
            ("exp a boolean", signed(hdr, json.dumps(dict(good, exp=True)))),
            ("sub a number", signed(hdr, json.dumps(dict(good, sub=12345)))),
            ("four segments", tokens.hs_token(good, self.secret) + ".x"),
            ("two segments", tokens.hs_token(good, self.secret).rsplit(".", 1)[0]),
            ("signature truncated", tokens.hs_token(good, self.secret)[:-4]),
            ("signature empty", tokens.hs_token(good, self.secret).rsplit(".", 1)[0] + "."),
            ("non-base64 characters", "e$y.e$y.s$ig"),
        ]
        for name, tok in cases:
            with self.subTest(name):
                self.auth_fails(tok, "AUTH_FAILED")
        with self.subTest("NUL inside"):
            # Refused either as a bad token or as an invalid accessToken.
            c = self.client()
            msg = c.auth(tokens.hs_token(good, self.secret).replace(".", "\u0000.", 1),
                         self.daemon, self.orch)
            if msg["type"] == "error":
                self.assert_error(msg, "INVALID_MESSAGE", "payload.accessToken")
            else:
                self.assert_auth_error(c, msg, "AUTH_FAILED")
        with self.subTest("huge token"):
            c = self.client()
            msg = c.auth("x" * 200000, self.daemon, self.orch)
            self.assertIn(msg["type"], ("auth_error", "error"), json.dumps(msg)[:300])
        workers = sorted(self.o.worker_pids())
        self.authed()
        self.assertEqual(sorted(self.o.worker_pids()), workers, "a worker was replaced")

    def test_id_lengths(self):
        """Ids of 63 bytes work; longer ones are refused without harm."""
        self.start_stack()
        orch63 = "o" * 63
        c, _ = self.authed(self.token(orch=orch63), daemon="d" * 63, orch=orch63)
        c.heartbeat()
        for name, orch, daemon in [("orchestratorId 200 bytes", "o" * 200, self.daemon),
                                   ("daemonId 200 bytes", self.orch, "d" * 200)]:
            with self.subTest(name):
                c = self.client()
                msg = c.auth(self.token(orch=orch), daemon, orch)
                self.assertIn(msg["type"], ("auth_error", "error"), json.dumps(msg))
        with self.subTest("organizationId claim 200 bytes"):
            c = self.client()
            msg = c.auth(self.token(org="g" * 200), self.daemon, self.orch)
            if msg["type"] == "auth_success":
                c.heartbeat()
            else:
                self.assertEqual(msg["type"], "auth_error", json.dumps(msg))
        self.authed()

    def test_hs_token_refused_without_secret(self):
        rsa1 = tokens.RsaKey(self.tmp, "rsa1")
        self.start_stack(jwt_secret_file=None, jwt_public_key=rsa1.public_pem)
        self.authed(rsa1.token(tokens.claims(self.orch, org=self.org, scopes=ALL_SCOPES)))
        self.auth_fails(self.token(), "AUTH_FAILED")


# --------------------------------------------------------------------------
# connection lifecycle: 4002, 4003, refresh, 4004, 4007, 1003


class LifecycleTest(ProtoTestCase):

    def test_auth_timeout_4002(self):
        self.start_stack(auth_timeout="1s")
        c = self.client()
        t0 = time.monotonic()
        # A message that is not auth neither authenticates nor resets the timer.
        c.send("heartbeat", {"status": "active"})
        self.assert_error(c.recv(), "NOT_AUTHENTICATED")
        code, reason = c.expect_close(timeout=5)
        dt = time.monotonic() - t0
        self.assertEqual(code, 4002, reason)
        self.assertGreater(dt, 0.8, "closed before auth_timeout")
        self.assertLess(dt, 3.0, "closed long after auth_timeout")
        self.assertIn(c.ws.wait_tcp_close(timeout=3), ("eof", "reset"))

    def test_authenticated_connection_outlives_auth_timeout(self):
        self.start_stack(auth_timeout="1s")
        c, _ = self.authed()
        self.assertTrue(c.quiet(1.8), "unexpected message: %s" % c.log[-1:])
        c.heartbeat()

    def test_token_expiry_4003(self):
        self.start_stack(jwt_leeway="0s")
        tok = self.token(exp_in=3)
        exp_ms = tokens.decode_unverified(tok)[1]["exp"] * 1000.0
        c, p = self.authed(tok)
        self.assertLess(abs(to_ms(p["tokenExpiresAt"]) - exp_ms), 1000, p)
        code, reason = c.expect_close(timeout=6)
        late = now_ms() - exp_ms
        self.assertEqual(code, 4003, reason)
        self.assertGreater(late, -500, "closed %.0f ms before the token expired" % -late)
        self.assertLess(late, 2000, "closed %.0f ms after the token expired" % late)

    def test_token_refresh_extends_connection(self):
        self.start_stack(jwt_leeway="0s", heartbeat_interval="1s")
        first = self.token(daemon=self.daemon, exp_in=3)
        exp1 = tokens.decode_unverified(first)[1]["exp"]
        c, p1 = self.authed(first)
        t0 = time.monotonic()
        c.heartbeat()
        time.sleep(1.0)
        second = self.token(daemon=self.daemon, exp_in=60)
        exp2 = tokens.decode_unverified(second)[1]["exp"]
        msg = c.auth(second, self.daemon, self.orch)
        self.assertEqual(msg["type"], "auth_success", json.dumps(msg) + self.diag())
        p2 = msg["payload"]
        self.assertLess(abs(to_ms(p2["tokenExpiresAt"]) - exp2 * 1000.0), 1000, p2)
        # Heartbeat through the first token's expiry, to +5 s.
        while time.monotonic() - t0 < 5.2:
            c.heartbeat()
            time.sleep(0.6)
        self.assertGreater(time.time(), exp1 + 1)
        c.heartbeat()
        self.assertTrue(c.quiet(0.3))

    def test_refresh_does_not_take_a_second_quota_slot(self):
        self.start_stack(max_connections_per_orchestrator=1)
        c, _ = self.authed()
        for _ in range(3):
            msg = c.auth(self.token(exp_in=120), self.daemon, self.orch)
            self.assertEqual(msg["type"], "auth_success", json.dumps(msg))
        c.heartbeat()
        # The one slot is still taken by c.
        self.auth_fails(self.token(), "MAX_CONNECTIONS")

    def test_rate_limit_warning_then_4004(self):
        self.start_stack(rate_limit_messages=10, rate_limit_burst=3, rate_limit_grace="1s")
        c, _ = self.authed()
        accepted = 0
        warning = None
        for i in range(8):
            c.send("subscribe", {"eventTypes": ["system.t%d" % i]})
            msg = c.recv(timeout=3)
            if msg["type"] == "subscribed":
                accepted += 1
                continue
            self.assertEqual(msg["type"], "rate_limit", json.dumps(msg))
            warning = msg["payload"]
            break
        self.assertIsNotNone(warning, "no rate_limit after 8 messages (burst 3)")
        self.assertIn(accepted, (2, 3), "messages accepted before the warning")
        self.assertIsInstance(warning.get("action"), str, warning)
        self.assertIsInstance(warning.get("retryAfter"), (int, float), warning)
        self.assertGreater(warning["retryAfter"], 0, warning)
        self.assertIsInstance(warning.get("currentRate"), (int, float), warning)
        self.assertEqual(warning.get("maxRate"), 10, warning)
        # Keep going: dropped messages get no answer, and past the grace
        # the connection is closed with 4004.
        t0 = time.monotonic()
        code = None
        while time.monotonic() - t0 < 4.0:
            try:
                c.send("subscribe", {"eventTypes": ["system.more"]})
            except OSError:
                break
            try:
                msg = c.recv(timeout=0.15)
                self.assertNotEqual(msg["type"], "subscribed",
                                    "a message over the rate was processed")
            except Timeout:
                pass
            except CloseReceived as e:
                code = e.code
                break
        if code is None:
            code, _ = c.expect_close(timeout=2)
        dt = time.monotonic() - t0
        self.assertEqual(code, 4004)
        self.assertLess(dt, 3.0, "4004 came %.1fs after the warning (grace 1s)" % dt)

    def test_rate_limit_backoff_keeps_connection(self):
        self.start_stack(rate_limit_messages=120, rate_limit_burst=2, rate_limit_grace="1s")
        c, _ = self.authed()
        types = []
        for i in range(4):
            c.send("subscribe", {"eventTypes": ["system.b%d" % i]})
            types.append(c.recv(timeout=3)["type"])
        self.assertIn("rate_limit", types, types)
        # Back off past the grace (2 tokens per second refill): not closed.
        time.sleep(2.0)
        c.send("subscribe", {"eventTypes": ["system.after"]})
        p = c.expect("subscribed")
        self.assertIn("system.after", p["eventTypes"])
        self.assertTrue(c.quiet(1.2))
        c.heartbeat()

    def test_fast_heartbeats_count_against_rate_limit(self):
        self.start_stack(rate_limit_messages=10, rate_limit_burst=3, rate_limit_grace="5s")
        c, _ = self.authed()
        types = []
        for _ in range(6):
            c.send("heartbeat", {"status": "active"})
            try:
                types.append(c.recv(timeout=1)["type"])
            except Timeout:
                types.append(None)
        self.assertIn("rate_limit", types, types)

    def test_heartbeat_timeout_4007(self):
        self.start_stack(heartbeat_interval="1s")
        c, p = self.authed()
        self.assertEqual(p["heartbeatIntervalMs"], 1000)
        t0 = time.monotonic()
        code, reason = c.expect_close(timeout=6)
        dt = time.monotonic() - t0
        self.assertEqual(code, 4007, reason)
        self.assertGreater(dt, 2.5, "closed after %.1fs, before 3 intervals" % dt)
        self.assertLess(dt, 4.5, "closed after %.1fs, well after 3 intervals" % dt)

    def test_binary_frame_1003(self):
        self.start_stack()
        with self.subTest("before auth"):
            c = self.client()
            c.ws.send_binary(b'{"type":"auth"}')
            code, _ = c.expect_close(timeout=3)
            self.assertEqual(code, 1003)
        with self.subTest("after auth"):
            c, _ = self.authed()
            c.ws.send_binary(b"\x00\x01\x02")
            code, _ = c.expect_close(timeout=3)
            self.assertEqual(code, 1003)


# --------------------------------------------------------------------------
# messages and their validation (sections 2-4)


class MessageTest(ProtoTestCase):

    def test_not_authenticated(self):
        self.start_stack(rate_limit_messages=1000)
        c = self.client()
        for type_, payload in [("heartbeat", {"status": "active"}),
                               ("subscribe", {"eventTypes": ["*"]}),
                               ("unsubscribe", {"eventTypes": ["*"]}),
                               ("ack", {"eventIds": ["e1"]})]:
            with self.subTest(type_):
                c.send(type_, payload)
                self.assert_error(c.recv(), "NOT_AUTHENTICATED")
        # Still open, and auth works.
        c.auth(self.token(), self.daemon, self.orch)
        self.assertEqual(c.log[-1]["type"], "auth_success")

    def test_invalid_auth_messages(self):
        self.start_stack(rate_limit_messages=1000)
        c = self.client()
        tok = self.token()
        good = {"accessToken": tok, "daemonId": self.daemon, "orchestratorId": self.orch}

        def without(k):
            return {kk: v for kk, v in good.items() if kk != k}
        cases = [
            ("not JSON", "{nope", None),
            ("array", "[1,2]", None),
            ("string", '"auth"', None),
            ("no type", json.dumps({"payload": good}), "type"),
            ("type not a string", json.dumps({"type": 1, "payload": good}), "type"),
            ("payload array", json.dumps({"type": "auth", "payload": []}), "payload"),
            ("payload string", json.dumps({"type": "auth", "payload": "x"}), "payload"),
            ("no accessToken", json.dumps({"type": "auth", "payload": without("accessToken")}),
             "payload.accessToken"),
            ("accessToken number", json.dumps({"type": "auth", "payload":
                                               dict(good, accessToken=5)}),
             "payload.accessToken"),
            ("no daemonId", json.dumps({"type": "auth", "payload": without("daemonId")}),
             "payload.daemonId"),
            ("no orchestratorId", json.dumps({"type": "auth",
                                              "payload": without("orchestratorId")}),
             "payload.orchestratorId"),
            ("resumeFrom negative", json.dumps({"type": "auth",
                                                "payload": dict(good, resumeFrom=-1)}),
             "payload.resumeFrom"),
            ("resumeFrom string", json.dumps({"type": "auth",
                                              "payload": dict(good, resumeFrom="3")}),
             "payload.resumeFrom"),
            ("resumeFrom fraction", json.dumps({"type": "auth",
                                                "payload": dict(good, resumeFrom=1.5)}),
             "payload.resumeFrom"),
        ]
        for name, text, field in cases:
            with self.subTest(name):
                c.send_text(text)
                self.assert_error(c.recv(), "INVALID_MESSAGE", field)
        c.send("auth", good)
        c.expect("auth_success")

    def test_invalid_messages_after_auth(self):
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed()
        hb = lambda p: json.dumps({"type": "heartbeat", "payload": p})  # noqa: E731
        sub = lambda p: json.dumps({"type": "subscribe", "payload": p})  # noqa: E731
        cases = [
            ("not JSON", "}", None, False),
            ("number", "42", None, False),
            ("no type", "{}", "type", False),
            ("type null", json.dumps({"type": None, "payload": {}}), "type", False),
            ("unknown type", json.dumps({"type": "bogus", "payload": {}}), "type", False),
            ("payload array", json.dumps({"type": "heartbeat", "payload": [1]}), "payload",
             False),
            ("payload number", json.dumps({"type": "subscribe", "payload": 3}), "payload",
             False),
            ("heartbeat bad status", hb({"status": "sleeping"}), "payload.status", False),
            ("heartbeat no status", hb({}), "payload.status", False),
            ("heartbeat status number", hb({"status": 1}), "payload.status", False),
            ("heartbeat metrics string", hb({"status": "idle", "metrics": "x"}),
             "payload.metrics", False),
            ("heartbeat metric not a number", hb({"status": "idle",
                                                  "metrics": {"uptimeSeconds": "long"}}),
             "payload.metrics", True),
            ("heartbeat custom metric array", hb({"status": "idle",
                                                  "metrics": {"custom": {"a": [1]}}}),
             "payload.metrics", True),
            ("subscribe no eventTypes", sub({}), "payload.eventTypes", False),
            ("subscribe empty eventTypes", sub({"eventTypes": []}), "payload.eventTypes",
             False),
            ("subscribe eventTypes string", sub({"eventTypes": "message.*"}),
             "payload.eventTypes", False),
            ("subscribe eventTypes number", sub({"eventTypes": [1]}), "payload.eventTypes",
             True),
            ("subscribe channelIds string", sub({"eventTypes": ["*"], "channelIds": "c"}),
             "payload.channelIds", False),
            ("subscribe channelIds number", sub({"eventTypes": ["*"], "channelIds": [1]}),
             "payload.channelIds", True),
            ("unsubscribe no eventTypes", json.dumps({"type": "unsubscribe", "payload": {}}),
             "payload.eventTypes", False),
            ("ack no eventIds", json.dumps({"type": "ack", "payload": {}}),
             "payload.eventIds", False),
            ("ack empty eventIds", json.dumps({"type": "ack", "payload": {"eventIds": []}}),
             "payload.eventIds", False),
            ("ack eventIds number", json.dumps({"type": "ack", "payload": {"eventIds": [7]}}),
             "payload.eventIds", True),
        ]
        for name, text, field, prefix in cases:
            with self.subTest(name):
                c.send_text(text)
                self.assert_error(c.recv(), "INVALID_MESSAGE", field, prefix)
        with self.subTest("ack 1001 eventIds"):
            c.send("ack", {"eventIds": ["e%d" % i for i in range(1001)]})
            msg = c.recv()
            self.assertEqual(msg["type"], "error", json.dumps(msg))
            self.assertIn(msg["payload"].get("code"), ("INVALID_MESSAGE", "LIMIT_EXCEEDED"),
                          json.dumps(msg))
            self.assertEqual((msg["payload"].get("details") or {}).get("field"),
                             "payload.eventIds", json.dumps(msg))
        # Nothing closed the connection.
        c.heartbeat()

    def test_unknown_fields_are_ignored(self):
        """Extensions are additive: unknown envelope and payload fields are
        accepted."""
        self.start_stack(rate_limit_messages=1000)
        c = self.client()
        c.send("auth", {"accessToken": self.token(), "daemonId": self.daemon,
                        "orchestratorId": self.orch, "clientVersion": "9.9", "x": {"y": [1]}},
               extra_top={"a": 1})
        c.expect("auth_success")
        c.send("heartbeat", {"status": "idle", "future": True,
                             "metrics": {"uptimeSeconds": 3, "custom": {"s": "v", "n": 1.5}}})
        c.expect("heartbeat_ack")
        c.send("subscribe", {"eventTypes": ["system.*"], "filter": "later"})
        c.expect("subscribed")

    def test_deeply_nested_json(self):
        """A very deep message neither crashes a worker nor passes."""
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed()
        workers = sorted(self.o.worker_pids())
        depth = 100000
        c.send_text('{"type":"heartbeat","payload":{"status":"idle","metrics":{"custom":'
                    + "[" * depth + "]" * depth + "}}}")
        try:
            msg = c.recv(timeout=5)
            self.assert_error(msg, "INVALID_MESSAGE")
            c.heartbeat()
        except CloseReceived as e:
            self.assertIn(e.code, (1008, 1009), "closed with %s" % e.code)
        self.assertEqual(sorted(self.o.worker_pids()), workers, "a worker was replaced")
        self.authed(daemon="after-deep")

    def test_json_escaping_of_ids(self):
        """Ids with quotes, backslashes, control characters and non-ASCII
        come back intact from every place orchd writes them (JSON in Redis,
        the notice on daemon:heartbeats, the session hash)."""
        self.start_stack(heartbeat_interval="10s")
        orch = 'orch "q" \\ \u00fc\t/</x>'
        daemon = 'd\u00e6mon\n"1"'
        org = 'org "\\"'
        sub = self.redis.pubsub_listen("daemon:heartbeats:%s" % org)
        c, p = self.authed(self.token(orch=orch, org=org), daemon=daemon, orch=orch)
        c.heartbeat("busy", {"uptimeSeconds": 1, "custom": {"k\"ey": "v\\al\u00e9"}})
        val = wait_for(lambda: self.redis.command("GET", "daemon:heartbeat:%s" % orch), 2.0)
        self.assertIsNotNone(val, "no daemon:heartbeat:{orch} for an id with quotes")
        doc = json.loads(val)
        self.assertIn("busy", find_values(doc, "status"), doc)
        for key, want in (("orchestratorId", orch), ("daemonId", daemon)):
            vals = find_values(doc, key)
            if vals:
                self.assertIn(want, vals, doc)
        entry = json.loads(wait_for(lambda: self.redis.command(
            "LINDEX", "daemon:metrics:%s" % orch, 0), 2.0) or "null")
        self.assertIsInstance(entry, dict)
        msg = sub.wait_message(timeout=3)
        self.assertIsNotNone(msg, "no notice published for org %r" % org)
        notice = json.loads(msg[1])
        for key, want in (("orchestratorId", orch), ("daemonId", daemon)):
            vals = find_values(notice, key)
            if vals:
                self.assertIn(want, vals, notice)
        h = wait_for(lambda: self.session(p["connectionId"]), 2.0) or {}
        self.assertEqual(h.get("orchestratorId"), orch, h)
        self.assertEqual(h.get("daemonId"), daemon, h)
        self.assertEqual(h.get("organizationId"), org, h)

    def test_ack_is_not_answered(self):
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed()
        c.send("ack", {"eventIds": ["e1", str(uuid.uuid4())]})
        c.send("ack", {"eventIds": ["e%d" % i for i in range(1000)]})
        # The next message is the heartbeat's ack: the acks got no reply.
        c.heartbeat()

    def test_subscribe_unsubscribe(self):
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed()
        c.send("subscribe", {"eventTypes": ["message.*", "system.maintenance"],
                             "channelIds": ["c1", "c2"]})
        p = c.expect("subscribed")
        self.assertEqual(set(p["eventTypes"]), {"message.*", "system.maintenance"}, p)
        self.assertEqual(set(p.get("channelIds") or []), {"c1", "c2"}, p)
        c.send("subscribe", {"eventTypes": ["presence.updated", "message.*"]})
        p = c.expect("subscribed")
        self.assertEqual(set(p["eventTypes"]),
                         {"message.*", "system.maintenance", "presence.updated"}, p)
        self.assertEqual(len(p["eventTypes"]), 3, "duplicates in %s" % p)
        c.send("unsubscribe", {"eventTypes": ["message.*", "not.subscribed"]})
        p = c.expect("subscribed")
        self.assertEqual(set(p["eventTypes"]), {"system.maintenance", "presence.updated"}, p)
        c.send("subscribe", {"eventTypes": ["*"]})
        p = c.expect("subscribed")
        self.assertIn("*", p["eventTypes"])

    def test_subscribe_many_channel_ids(self):
        """A daemon in 250 channels (uuid ids) subscribes with all of them:
        the answer is `subscribed` with the whole set, and the subscription
        can still be changed and reported afterwards."""
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed()
        chans = [str(uuid.uuid4()) for _ in range(250)]
        c.send("subscribe", {"eventTypes": ["message.*"], "channelIds": chans})
        msg = c.recv()
        self.assertEqual(msg["type"], "subscribed",
                         "subscribe with 250 channel ids: %s" % json.dumps(msg)[:400])
        self.assertEqual(set(msg["payload"]["channelIds"]), set(chans))
        c.send("unsubscribe", {"eventTypes": ["message.*"]})
        msg = c.recv()
        self.assertEqual(msg["type"], "subscribed",
                         "unsubscribe afterwards: %s" % json.dumps(msg)[:400])
        self.assertEqual(msg["payload"]["eventTypes"], [])

    def test_subscribe_limit_exceeded(self):
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed()
        with self.subTest("51 in one message"):
            c.send("subscribe", {"eventTypes": ["system.t%d" % i for i in range(51)]})
            self.assert_error(c.recv(), "LIMIT_EXCEEDED")
        c.send("subscribe", {"eventTypes": ["system.t%d" % i for i in range(30)]})
        self.assertEqual(len(c.expect("subscribed")["eventTypes"]), 30)
        with self.subTest("30 + 21 > 50"):
            c.send("subscribe", {"eventTypes": ["system.u%d" % i for i in range(21)]})
            self.assert_error(c.recv(), "LIMIT_EXCEEDED")
        with self.subTest("30 + 20 = 50 and re-subscribing is not counted twice"):
            c.send("subscribe", {"eventTypes": ["system.u%d" % i for i in range(20)]
                                 + ["system.t0"]})
            self.assertEqual(len(c.expect("subscribed")["eventTypes"]), 50)
        with self.subTest("51st"):
            c.send("subscribe", {"eventTypes": ["system.extra"]})
            self.assert_error(c.recv(), "LIMIT_EXCEEDED")
        c.send("unsubscribe", {"eventTypes": ["system.t0"]})
        self.assertEqual(len(c.expect("subscribed")["eventTypes"]), 49)

    def test_subscribe_insufficient_scope(self):
        self.start_stack(rate_limit_messages=1000)
        c, _ = self.authed(self.token(scopes=["messages:read"]))
        c.send("subscribe", {"eventTypes": ["message.*"]})
        self.assertEqual(c.expect("subscribed")["eventTypes"], ["message.*"])
        for types in (["channel.*"], ["presence.updated"], ["vp.*"], ["call.started"],
                      ["system.*", "channel.joined"]):
            with self.subTest(types):
                c.send("subscribe", {"eventTypes": types})
                self.assert_error(c.recv(), "INSUFFICIENT_SCOPE")
        # Nothing changed: system.* (no scope needed) was not added above.
        c.send("subscribe", {"eventTypes": ["system.*", "*"]})
        self.assertEqual(set(c.expect("subscribed")["eventTypes"]),
                         {"message.*", "system.*", "*"})
        for scope, family in [("channels:read", "channel.*"), ("presence:read", "presence.*"),
                              ("vp:status", "vp.*"), ("calls:join", "call.*")]:
            with self.subTest(scope):
                c2, _ = self.authed(self.token(scopes=[scope]),
                                    daemon="d-" + scope.replace(":", "-"))
                c2.send("subscribe", {"eventTypes": [family]})
                self.assertEqual(c2.expect("subscribed")["eventTypes"], [family])
                self.assertEqual(c2.close_handshake(), 1000)


# --------------------------------------------------------------------------
# heartbeats and Redis (section 3, heartbeat keys)


class HeartbeatTest(ProtoTestCase):

    def test_heartbeat_ack_keys_and_publish(self):
        self.start_stack(heartbeat_interval="10s")
        c, p = self.authed(self.token(daemon=self.daemon))
        sub = self.redis.pubsub_listen("daemon:heartbeats:%s" % self.org)
        metrics = {"memoryUsageBytes": 123456, "uptimeSeconds": 42, "messagesSent": 7,
                   "messagesReceived": 8, "errors": 0, "apiCalls": 3,
                   "avgResponseTimeMs": 12.5, "custom": {"queue": 4, "mode": "fast"}}
        t0 = now_ms()
        ack = c.heartbeat("busy", metrics)
        st = to_ms(ack["serverTime"])
        self.assertLess(abs(st - t0), 5000, ack)
        self.assertAlmostEqual(to_ms(ack["nextHeartbeat"]) - st, 10000, delta=1000,
                               msg="nextHeartbeat is not serverTime + interval: %s" % ack)
        key = "daemon:heartbeat:%s" % self.orch
        val = wait_for(lambda: self.redis.command("GET", key), 2.0)
        self.assertIsNotNone(val, "no %s%s" % (key, self.diag()))
        doc = json.loads(val)
        self.assertIn("busy", find_values(doc, "status"), doc)
        pttl = self.redis.command("PTTL", key)
        self.assertGreater(pttl, 25000, "TTL of %s: %d ms (3 x 10 s expected)" % (key, pttl))
        self.assertLessEqual(pttl, 30000, "TTL of %s: %d ms" % (key, pttl))
        mkey = "daemon:metrics:%s" % self.orch
        self.assertTrue(wait_for(lambda: self.redis.command("TTL", mkey) > 0, 2.0),
                        "no %s with a TTL" % mkey)
        self.assertEqual(self.redis.command("TYPE", mkey), "list")
        self.assertEqual(self.redis.command("LLEN", mkey), 1)
        entry = json.loads(self.redis.command("LINDEX", mkey, 0))
        self.assertIn(123456, find_values(entry, "memoryUsageBytes"), entry)
        ttl = self.redis.command("TTL", mkey)
        self.assertGreater(ttl, 86000, "TTL of %s" % mkey)
        self.assertLessEqual(ttl, 86400, "TTL of %s" % mkey)
        msg = sub.wait_message(timeout=3)
        self.assertIsNotNone(msg, "nothing published on daemon:heartbeats:%s" % self.org)
        self.assertEqual(msg[0], "daemon:heartbeats:%s" % self.org)
        self.assertIn(self.orch, msg[1], msg)
        json.loads(msg[1])
        # Each status is accepted.
        for status in ("active", "idle"):
            c.heartbeat(status)

    def test_large_metrics_recorded_or_refused(self):
        """A heartbeat whose metrics are big (700 custom entries, ~12 KiB,
        far below ws_max_message_size) is either refused with an error or
        recorded: never acknowledged and silently dropped, which would let
        daemon:heartbeat:{orch} expire under a heartbeating daemon."""
        self.start_stack(heartbeat_interval="10s")
        sub = self.redis.pubsub_listen("daemon:heartbeats:%s" % self.org)
        c, _ = self.authed()
        custom = {"metric_%03d" % i: i for i in range(700)}
        c.send("heartbeat", {"status": "busy", "metrics": {"uptimeSeconds": 4242,
                                                           "custom": custom}})
        msg = c.recv()
        if msg["type"] == "error":
            self.assert_error(msg, "INVALID_MESSAGE")
            return
        self.assertEqual(msg["type"], "heartbeat_ack", json.dumps(msg))
        key = "daemon:heartbeat:%s" % self.orch
        val = wait_for(lambda: self.redis.command("GET", key), 2.0)
        self.assertIsNotNone(val, "heartbeat with ~12 KiB of metrics acknowledged but %s "
                             "not written (nor refreshed)" % key)
        self.assertIn(4242, find_values(json.loads(val), "uptimeSeconds"))
        self.assertTrue(wait_for(lambda: self.redis.command(
            "LLEN", "daemon:metrics:%s" % self.orch) == 1, 2.0))
        self.assertIsNotNone(sub.wait_message(timeout=2), "no notice published")

    def test_http_large_metrics_recorded_or_refused(self):
        """The same through POST /api/daemon/heartbeat: 500 custom entries
        (~15 KiB) are either refused (400/413) or recorded, not answered
        200 and dropped."""
        self.start_stack(heartbeat_interval="10s")
        custom = {"metric_with_a_longer_name_%03d" % i: i for i in range(500)}
        body = json.dumps({"status": "busy", "metrics": {"uptimeSeconds": 4242,
                                                         "custom": custom}}).encode()
        r = http_request(self.o.port, "POST", "/api/daemon/heartbeat", body=body,
                         headers={"Authorization": "Bearer " + self.token(daemon=self.daemon),
                                  "Content-Type": "application/json"})
        if r.status in (400, 413):
            return
        self.assertEqual(r.status, 200, r)
        key = "daemon:heartbeat:%s" % self.orch
        self.assertIsNotNone(wait_for(lambda: self.redis.command("GET", key), 2.0),
                             "200 success but %s not written" % key)

    def test_metrics_list_capped_at_100(self):
        self.start_stack(heartbeat_interval="30s", rate_limit_messages=100000,
                         rate_limit_burst=100000)
        c, _ = self.authed()
        for i in range(1, 106):
            c.heartbeat("active", {"messagesSent": i, "uptimeSeconds": i})
        mkey = "daemon:metrics:%s" % self.orch

        def settled():
            # The last heartbeat is in (LPUSH puts it first), and trimmed.
            head = self.redis.command("LRANGE", mkey, 0, 0)
            return (self.redis.command("LLEN", mkey) == 100 and head
                    and 105 in find_values(json.loads(head[0]), "messagesSent"))
        self.assertTrue(wait_for(settled, 5.0),
                        "LLEN %s = %s" % (mkey, self.redis.command("LLEN", mkey)))
        entries = [json.loads(e) for e in self.redis.command("LRANGE", mkey, 0, -1)]
        seqs = set()
        for e in entries:
            seqs.update(find_values(e, "messagesSent"))
        self.assertEqual(seqs, set(range(6, 106)), "the list keeps the newest 100")

    def test_http_heartbeat(self):
        self.start_stack(heartbeat_interval="10s")
        sub = self.redis.pubsub_listen("daemon:heartbeats:%s" % self.org)
        tok = self.token(daemon=self.daemon)
        body = json.dumps({"status": "idle", "metrics": {"memoryUsageBytes": 99,
                                                         "custom": {"k": "v"}}}).encode()
        hdrs = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
        r = http_request(self.o.port, "POST", "/api/daemon/heartbeat", headers=hdrs, body=body)
        self.assertEqual(r.status, 200, r)
        self.assertIn("application/json", r.header("content-type", ""))
        doc = r.json()
        self.assertIs(doc.get("success"), True, doc)
        self.assertEqual(doc.get("heartbeatIntervalMs"), 10000, doc)
        st = to_ms(doc["serverTime"])
        self.assertAlmostEqual(to_ms(doc["nextHeartbeat"]) - st, 10000, delta=1000, msg=doc)
        key = "daemon:heartbeat:%s" % self.orch
        self.assertTrue(wait_for(lambda: self.redis.command("EXISTS", key), 2.0))
        self.assertIn("idle", find_values(json.loads(self.redis.command("GET", key)),
                                          "status"))
        self.assertGreater(self.redis.command("PTTL", key), 25000)
        mkey = "daemon:metrics:%s" % self.orch
        self.assertTrue(wait_for(lambda: self.redis.command("TTL", mkey) > 0, 2.0),
                        "no %s with a TTL" % mkey)
        self.assertEqual(self.redis.command("LLEN", mkey), 1)
        self.assertGreater(self.redis.command("TTL", mkey), 86000)
        self.assertIsNotNone(sub.wait_message(timeout=3), "no heartbeat notice published")

    def test_http_heartbeat_errors(self):
        self.start_stack()
        tok = self.token(daemon=self.daemon)
        body = json.dumps({"status": "active"}).encode()
        revoked = str(uuid.uuid4())
        self.redis.command("SADD", REVOKED_SET, revoked)
        for name, auth in [("no Authorization", None),
                           ("revoked jti", "Bearer " + self.token(jti=revoked)),
                           ("empty Bearer", "Bearer "),
                           ("not Bearer", "Basic " + tokens.b64url("a:b")),
                           ("garbage token", "Bearer garbage"),
                           ("bad signature", "Bearer " + tokens.tamper(tok)),
                           ("expired", "Bearer " + self.token(exp_in=-300)),
                           ("refresh token", "Bearer " + self.token(typ="refresh"))]:
            with self.subTest(name):
                hdrs = {"Content-Type": "application/json"}
                if auth:
                    hdrs["Authorization"] = auth
                r = http_request(self.o.port, "POST", "/api/daemon/heartbeat",
                                 headers=hdrs, body=body)
                self.assertEqual(r.status, 401, r)
                doc = r.json()
                self.assertIsInstance(doc.get("error"), str, doc)
                self.assertIsInstance(doc.get("code"), str, doc)
        hdrs = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
        for name, raw, field in [("not JSON", b"{nope", None),
                                 ("array", b"[]", None),
                                 ("bad status", json.dumps({"status": "sleeping"}).encode(),
                                  "status"),
                                 ("no status", b"{}", "status"),
                                 ("metrics not an object",
                                  json.dumps({"status": "idle", "metrics": 1}).encode(),
                                  "metrics")]:
            with self.subTest(name):
                r = http_request(self.o.port, "POST", "/api/daemon/heartbeat",
                                 headers=hdrs, body=raw)
                self.assertEqual(r.status, 400, r)
                doc = r.json()
                self.assertIsInstance(doc.get("error"), str, doc)
                self.assertIsInstance(doc.get("code"), str, doc)
                if field:
                    self.assertIn(field, r.body.decode(), "field not named: %s" % doc)
        self.assertFalse(self.redis.command("EXISTS", "daemon:heartbeat:%s" % self.orch))


# --------------------------------------------------------------------------
# sessions in Redis


class SessionTest(ProtoTestCase):

    def conn_keys(self, cid):
        return "ws:connection:%s" % cid, "ws:vp:%s:connections" % self.orch

    def assert_session(self, p, ttl_ms, daemon=None):
        cid = p["connectionId"]
        hkey, skey = self.conn_keys(cid)
        # Written right after auth_success (several commands, not atomic).
        self.assertTrue(wait_for(lambda: self.redis.command("PTTL", hkey) > 0
                                 and self.redis.command("SISMEMBER", skey, cid), 2.0),
                        "no %s with a TTL, or %s not in %s%s" % (hkey, cid, skey, self.diag()))
        h = self.session(cid)
        for f in ("orchestratorId", "daemonId", "organizationId", "sessionId", "worker",
                  "remoteAddress", "connectedAt", "lastSeen"):
            self.assertIn(f, h, "field %s missing from %s: %s" % (f, hkey, h))
        self.assertEqual(h["orchestratorId"], self.orch)
        self.assertEqual(h["daemonId"], daemon or self.daemon)
        self.assertEqual(h["organizationId"], self.org)
        self.assertEqual(h["sessionId"], p["sessionId"])
        self.assertIn("127.0.0.1", h["remoteAddress"])
        pttl = self.redis.command("PTTL", hkey)
        self.assertGreater(pttl, ttl_ms - 2000, "PTTL %s = %d, want ~%d" % (hkey, pttl, ttl_ms))
        self.assertLessEqual(pttl, ttl_ms, "PTTL %s = %d, want ~%d" % (hkey, pttl, ttl_ms))
        self.assertEqual(self.redis.command("SISMEMBER", skey, cid), 1,
                         "%s not in %s" % (cid, skey))
        return h

    def assert_gone(self, cid, timeout=1.5):
        hkey, skey = self.conn_keys(cid)
        gone = wait_for(lambda: not self.redis.command("EXISTS", hkey)
                        and not self.redis.command("SISMEMBER", skey, cid), timeout)
        self.assertTrue(gone, "session of %s still in Redis after %.1fs: %s, member %s"
                        % (cid, timeout, self.session(cid),
                           self.redis.command("SISMEMBER", skey, cid)))

    def test_session_created_and_removed_on_client_close(self):
        self.start_stack(heartbeat_interval="4s")
        c, p = self.authed(self.token(daemon=self.daemon))
        c2, p2 = self.authed(daemon=self.daemon + "-2")
        self.assertNotEqual(p["connectionId"], p2["connectionId"])
        self.assertNotEqual(p["sessionId"], p2["sessionId"])
        self.assert_session(p, 12000)
        self.assert_session(p2, 12000, daemon=self.daemon + "-2")
        self.assertEqual(c.close_handshake(), 1000)
        self.assert_gone(p["connectionId"])
        # The other connection's session is untouched.
        _, skey = self.conn_keys(p2["connectionId"])
        self.assertEqual(self.redis.command("SMEMBERS", skey), [p2["connectionId"]])
        # An abrupt TCP close (no close frame) cleans up too.
        c2.close()
        self.assert_gone(p2["connectionId"])

    def test_session_ttl_directive(self):
        self.start_stack(heartbeat_interval="2s", session_ttl="7s")
        c, p = self.authed()
        self.assert_session(p, 7000)

    def test_session_refreshed_by_heartbeats(self):
        self.start_stack(heartbeat_interval="1s")
        c, p = self.authed()
        h0 = self.assert_session(p, 3000)
        hkey, skey = self.conn_keys(p["connectionId"])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            c.heartbeat()
            time.sleep(0.7)
        self.assertTrue(self.redis.command("EXISTS", hkey),
                        "session expired under a heartbeating connection%s" % self.diag())
        # The last heartbeat was at most ~0.8 s ago: its EXPIRE 3 s holds.
        self.assertGreater(self.redis.command("PTTL", hkey), 1500,
                           "session TTL not refreshed by the last heartbeats%s" % self.diag())
        self.assertEqual(self.redis.command("SISMEMBER", skey, p["connectionId"]), 1)
        self.assertNotEqual(self.session(p["connectionId"])["lastSeen"], h0["lastSeen"],
                            "lastSeen not updated by heartbeats")

    def test_session_removed_after_heartbeat_timeout(self):
        self.start_stack(heartbeat_interval="1s", session_ttl="30s")
        c, p = self.authed()
        self.assert_session(p, 30000)
        code, _ = c.expect_close(timeout=6)
        self.assertEqual(code, 4007)
        self.assertIn(c.finish(), ("eof", "reset"))
        self.assert_gone(p["connectionId"])

    def test_session_expires_after_worker_kill(self):
        self.start_stack(heartbeat_interval="1s", session_ttl="3s")
        c, p = self.authed()
        h = self.assert_session(p, 3000)
        pid = self.worker_pid_of(h["worker"])
        os.kill(pid, signal.SIGKILL)
        self.assertIn(c.ws.wait_tcp_close(timeout=3), ("eof", "reset"),
                      "connection survived kill -9 of its worker %d" % pid)
        # Nobody can delete the keys of a killed worker's connection (unless
        # the supervisor does): they must go by TTL.
        self.assert_gone(p["connectionId"], timeout=5.0)


# --------------------------------------------------------------------------
# the per-orchestrator quota across workers


class QuotaTest(ProtoTestCase):

    def concurrent_auth(self, n, orch=None):
        """n connections opened first, then n auths sent at once; returns
        [(client, reply)]."""
        clients = [self.client() for _ in range(n)]
        barrier = threading.Barrier(n, timeout=10)
        results = [None] * n
        tok = self.token(orch=orch, exp_in=600)

        def run(i):
            c = clients[i]
            try:
                barrier.wait()
                c.send("auth", {"accessToken": tok, "daemonId": "d-%d" % i,
                                "orchestratorId": orch or self.orch})
                m = c.ws.recv_message(timeout=10)
                results[i] = json.loads(m.data)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = {"type": "exception", "error": repr(e)}
        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        return list(zip(clients, results))

    def test_quota_50_concurrent_then_kill_workers(self):
        self.start_stack(max_connections_per_orchestrator=5, heartbeat_interval="30s",
                         auth_timeout="20s")
        res = self.concurrent_auth(50)
        ok = [(c, r) for c, r in res if r and r.get("type") == "auth_success"]
        refused = [(c, r) for c, r in res if r and r.get("type") == "auth_error"
                   and r["payload"].get("code") == "MAX_CONNECTIONS"]
        other = [r for c, r in res if (c, r) not in ok and (c, r) not in refused]
        self.assertEqual(other, [], "neither success nor MAX_CONNECTIONS")
        self.assertEqual(len(ok), 5, "successes: %d%s" % (len(ok), self.diag()))
        self.assertEqual(len(refused), 45)
        for c, _ in refused:
            code, _ = c.expect_close(timeout=5)
            self.assertEqual(code, 4001)
        # Which workers hold the 5?
        holders = {}
        for c, r in ok:
            cid = r["payload"]["connectionId"]
            # Session keys are written right after auth_success, not before.
            h = wait_for(lambda: self.session(cid), 3.0) or {}
            self.assertIn("worker", h, "session of %s: %s" % (cid, h))
            holders.setdefault(self.worker_pid_of(h["worker"]), []).append(c)
        self.note("the 5 connections are on workers %s",
                  {p: len(cs) for p, cs in holders.items()})
        # A sixth, now, is still refused.
        self.auth_fails(self.token(), "MAX_CONNECTIONS", daemon="d-late")
        # kill -9 every worker holding one: all slots come back.
        for pid in holders:
            os.kill(pid, signal.SIGKILL)
        for c, _ in ok:
            self.assertIn(c.ws.wait_tcp_close(timeout=5), ("eof", "reset"),
                          "connection survived the kill of its worker")

        def first_new():
            c = ProtoClient(self, self.o.port)
            self.addCleanup(c.close)
            m = c.auth(self.token(exp_in=600), "d-new-0", self.orch)
            if m["type"] == "auth_success":
                return c
            c.close()
            return None
        self.assertTrue(wait_for(first_new, 10.0, 0.2),
                        "no connection for the orchestrator succeeds after kill -9 of "
                        "the workers holding its slots%s" % self.diag())
        for i in range(1, 5):
            c, _ = self.authed(self.token(exp_in=600), daemon="d-new-%d" % i)
        self.auth_fails(self.token(), "MAX_CONNECTIONS", daemon="d-new-6")

    def test_quota_is_per_orchestrator_and_freed_on_close(self):
        self.start_stack(max_connections_per_orchestrator=2)
        c1, _ = self.authed(daemon="d1")
        c2, p2 = self.authed(daemon="d2")
        self.auth_fails(self.token(), "MAX_CONNECTIONS", daemon="d3")
        # Another orchestrator has its own quota.
        other = "orch-other-" + uuid.uuid4().hex[:6]
        self.authed(self.token(orch=other), daemon="d1", orch=other)
        # Closing one frees its slot.
        self.assertEqual(c2.close_handshake(), 1000)

        def retry():
            c = ProtoClient(self, self.o.port)
            self.addCleanup(c.close)
            m = c.auth(self.token(), "d4", self.orch)
            return m["type"] == "auth_success"
        self.assertTrue(wait_for(retry, 1.0, 0.1), "slot not freed by a close")


# --------------------------------------------------------------------------
# the reference client (python3-websockets, as the TypeScript service's
# clients behave)


class ReferenceClientTest(ProtoTestCase):

    async def daemon_loop(self, port, token, duration):
        report = {"acks": 0, "heartbeats": 0, "unexpected": [], "close": None,
                  "ack_delays": []}
        uri = "ws://127.0.0.1:%d%s" % (port, WS_PATH)

        def envelope(type_, payload):
            return json.dumps({"type": type_, "id": str(uuid.uuid4()),
                               "timestamp": datetime.datetime.now(datetime.timezone.utc)
                               .isoformat().replace("+00:00", "Z"),
                               "payload": payload})
        async with websockets.connect(uri, open_timeout=5, close_timeout=3) as ws:
            await ws.send(envelope("auth", {"accessToken": token, "daemonId": self.daemon,
                                            "orchestratorId": self.orch}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            report["auth"] = msg
            if msg["type"] != "auth_success":
                return report
            interval = msg["payload"]["heartbeatIntervalMs"] / 1000.0
            await ws.send(envelope("subscribe", {"eventTypes": ["message.*", "system.*"],
                                                 "channelIds": ["chan-1"]}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            report["subscribed"] = msg
            await ws.send(envelope("ack", {"eventIds": [str(uuid.uuid4())]}))
            start = time.monotonic()
            nxt = start
            pending = None
            try:
                while time.monotonic() - start < duration:
                    now = time.monotonic()
                    if now >= nxt:
                        if pending is not None:
                            report["unexpected"].append("heartbeat not acked before the "
                                                        "next one was due")
                        await ws.send(envelope("heartbeat", {
                            "status": "active",
                            "metrics": {"memoryUsageBytes": 1 << 20,
                                        "uptimeSeconds": now - start,
                                        "messagesSent": report["heartbeats"],
                                        "custom": {"role": "reference"}}}))
                        report["heartbeats"] += 1
                        pending = now
                        nxt += interval
                    try:
                        raw = await asyncio.wait_for(ws.recv(),
                                                     max(0.01, nxt - time.monotonic()))
                    except asyncio.TimeoutError:
                        continue
                    msg = json.loads(raw)
                    if msg["type"] == "heartbeat_ack" and pending is not None:
                        report["acks"] += 1
                        report["ack_delays"].append(time.monotonic() - pending)
                        pending = None
                    else:
                        report["unexpected"].append(msg)
            except websockets.exceptions.ConnectionClosed as e:
                report["close"] = (e.rcvd.code if e.rcvd else None,
                                   e.rcvd.reason if e.rcvd else None)
                return report
            await ws.close(1000, "done")
            report["final_close"] = ws.close_code
        return report

    def test_reference_daemon_loop(self):
        if websockets is None:
            self.fail("python3-websockets is not installed")
        self.start_stack(heartbeat_interval="1s")
        report = asyncio.run(asyncio.wait_for(
            self.daemon_loop(self.o.port, self.token(daemon=self.daemon), 3.5), 20))
        self.assertEqual(report["auth"]["type"], "auth_success", report)
        self.assertEqual(report["auth"]["payload"]["heartbeatIntervalMs"], 1000)
        self.assertEqual(report["subscribed"]["type"], "subscribed", report)
        self.assertIsNone(report["close"], "server closed the connection: %s" % report)
        self.assertEqual(report["unexpected"], [], report)
        self.assertGreaterEqual(report["heartbeats"], 4, report)
        self.assertEqual(report["acks"], report["heartbeats"], report)
        self.assertLess(max(report["ack_delays"]), 0.8, report)
        self.assertEqual(report.get("final_close"), 1000, report)


if __name__ == "__main__":
    unittest.main()
