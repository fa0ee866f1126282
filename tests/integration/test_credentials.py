"""Token issuance from daemon credentials (PROTOCOL.md section 7; issue 6,
item 5): POST /api/daemon/auth and POST /api/daemon/auth/refresh on the real
orchd (2 workers), a private PostgreSQL (pgfix, etc/schema.sql applied) and
a real redis-server (redisfix).

Covered: a credential made here (PBKDF2 hash computed in the test, the
format of include/orchd/credentials.h) gets tokens; the access token
authenticates on the WebSocket; a wrong secret, an unknown key, an inactive
and an expired credential all get the same 401 AUTH_FAILED; last_used_at is
stamped; refresh rotates both tokens; a spent refresh token gets 401
TOKEN_REVOKED; bad bodies get 400; an access token is no refresh token; the
endpoints answer 503 without a database; scripts/orchd-credential writes a
credential that works.

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_credentials -v
"""

import base64
import hashlib
import json
import os
import subprocess
import time
import unittest
import uuid

import tokens
from harness import http_request, wait_for
from pgfix import PG_BINDIR, SRCDIR
from test_proto import ProtoTestCase

HAVE_PG = os.path.exists(os.path.join(PG_BINDIR, "postgres"))
AUTH = "/api/daemon/auth"
REFRESH = "/api/daemon/auth/refresh"


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def pbkdf2_hash(secret, iterations=10000, salt=None):
    salt = salt or os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return "pbkdf2-sha256$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                                       base64.b64encode(dk).decode())


class NoDatabaseTest(ProtoTestCase):

    def test_no_database_503(self):
        self.start_stack()
        for path, body in ((AUTH, {"apiKey": "k", "apiSecret": "s"}),
                           (REFRESH, {"refreshToken": "x.y.z"})):
            r = http_request(self.o.port, "POST", path, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 503, r.body)
            self.assertEqual(r.json()["code"], "UNAVAILABLE")
        r = http_request(self.o.port, "GET", AUTH)
        self.assertEqual(r.status, 405)


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class CredentialsTest(ProtoTestCase):

    def setUp(self):
        super().setUp()
        from pgfix import start_postgres
        self.pg = start_postgres(self)
        self.user = "user-" + uuid.uuid4().hex[:8]
        self.db_org = "org-db-" + uuid.uuid4().hex[:6]
        self.pg.sql("INSERT INTO organizations (id, slug) VALUES (%s, %s);"
                    % (sql_str(self.db_org), sql_str(self.db_org)))
        self.pg.sql("INSERT INTO users (id, status) VALUES (%s, 'ACTIVE');"
                    % sql_str(self.user))
        self.add_vps(self.orch)
        self.start_stack(database='"%s"' % self.pg.conninfo, database_timeout="2s",
                         token_lifetime="5m", refresh_token_lifetime="1h")

    def add_vps(self, vps, status="ACTIVE"):
        self.pg.sql("INSERT INTO vps (id, user_id, organization_id, status) "
                    "VALUES (%s, %s, %s, %s);"
                    % (sql_str(vps), sql_str(self.user), sql_str(self.db_org),
                       sql_str(status)))

    def add_credential(self, vps=None, active=True, expires="NULL"):
        key = "ak_" + uuid.uuid4().hex
        secret = os.urandom(24).hex()
        self.pg.sql("INSERT INTO daemon_credentials (api_key, api_secret_hash, vp_id, "
                    "is_active, expires_at) VALUES (%s, %s, %s, %s, %s);"
                    % (sql_str(key), sql_str(pbkdf2_hash(secret)), sql_str(vps or self.orch),
                       "true" if active else "false", expires))
        return key, secret

    def post(self, path, body):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http_request(self.o.port, "POST", path, body=raw,
                            headers={"Content-Type": "application/json"})

    def login(self, key, secret):
        r = self.post(AUTH, {"apiKey": key, "apiSecret": secret})
        self.assertEqual(r.status, 200, "%s %s%s" % (r.status, r.body, self.diag()))
        return r.json()

    def assert_code(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.json().get("code"), code, r.body)

    # ---- tests ------------------------------------------------------------

    def test_auth_tokens_work_on_websocket(self):
        key, secret = self.add_credential()
        t0 = time.time()
        got = self.login(key, secret)
        for k in ("accessToken", "refreshToken", "expiresAt", "sessionId"):
            self.assertIn(k, got)
        _, cl = tokens.decode_unverified(got["accessToken"])
        self.assertEqual(cl["sub"], self.orch)
        self.assertEqual(cl["type"], "access")
        self.assertEqual(cl["organizationId"], self.db_org)
        self.assertAlmostEqual(cl["exp"], t0 + 300, delta=5)
        self.assertIn("messages:read", cl["scopes"])
        _, rcl = tokens.decode_unverified(got["refreshToken"])
        self.assertEqual(rcl["type"], "refresh")
        self.assertAlmostEqual(rcl["exp"], t0 + 3600, delta=5)
        self.assertEqual(self.redis.command("EXISTS", "daemon:refresh:" + rcl["jti"]), 1)
        # The access token connects (both workers: several connections).
        for _ in range(4):
            c = self.client()
            msg = c.auth(got["accessToken"], self.daemon, self.orch)
            self.assertEqual(msg["type"], "auth_success", json.dumps(msg) + self.diag())
            c.heartbeat()
        # And it is a Bearer token for the HTTP API.
        r = http_request(self.o.port, "GET", "/api/daemon/events",
                         headers={"Authorization": "Bearer " + got["accessToken"]})
        self.assertEqual(r.status, 200, r.body)
        # last_used_at stamped (fire and forget: soon).
        ok = wait_for(lambda: self.pg.query(
            "SELECT last_used_at IS NOT NULL FROM daemon_credentials WHERE api_key = %s"
            % sql_str(key)) == [["t"]], 5.0, 0.1)
        self.assertTrue(ok, self.diag())

    def test_failures_are_all_auth_failed(self):
        key, secret = self.add_credential()
        ikey, isecret = self.add_credential(active=False)
        ekey, esecret = self.add_credential(expires="now() - interval '1 minute'")
        fkey, fsecret = self.add_credential(expires="now() + interval '1 hour'")
        cases = [(key, secret + "x"), ("ak_nobody_" + uuid.uuid4().hex, secret),
                 (ikey, isecret), (ekey, esecret)]
        bodies = set()
        for k, s in cases:
            r = self.post(AUTH, {"apiKey": k, "apiSecret": s})
            self.assert_code(r, 401, "AUTH_FAILED")
            bodies.add(r.body)
        self.assertEqual(len(bodies), 1, bodies)  # one answer for all
        self.login(fkey, fsecret)  # a future expiry is fine
        self.login(key, secret)
        self.assertEqual(self.pg.query(
            "SELECT count(*) FROM daemon_credentials WHERE last_used_at IS NOT NULL "
            "AND api_key IN (%s, %s)" % (sql_str(ikey), sql_str(ekey))), [["0"]])

    def test_disabled_orchestrator(self):
        v2 = "orch-s-" + uuid.uuid4().hex[:6]
        self.add_vps(v2, status="SUSPENDED")
        key, secret = self.add_credential(vps=v2)
        self.assert_code(self.post(AUTH, {"apiKey": key, "apiSecret": secret}), 403,
                         "ORCHESTRATOR_DISABLED")

    def test_bad_bodies_400(self):
        for body in (b"", b"[]", b"{", {"apiKey": "k"}, {"apiKey": 1, "apiSecret": "s"},
                     {"apiKey": "", "apiSecret": "s"}, {"apiKey": "k" * 300, "apiSecret": "s"}):
            self.assert_code(self.post(AUTH, body), 400, "INVALID_MESSAGE")
        for body in (b"{}", {"refreshToken": 5}):
            self.assert_code(self.post(REFRESH, body), 400, "INVALID_MESSAGE")

    def test_refresh_rotates_and_spent_token_revoked(self):
        key, secret = self.add_credential()
        got = self.login(key, secret)
        r = self.post(REFRESH, {"refreshToken": got["refreshToken"]})
        self.assertEqual(r.status, 200, "%s%s" % (r.body, self.diag()))
        new = r.json()
        for k in ("accessToken", "refreshToken", "expiresAt"):
            self.assertIn(k, new)
        self.assertNotEqual(new["refreshToken"], got["refreshToken"])
        self.assertEqual(new["sessionId"], got["sessionId"])
        c = self.client()
        msg = c.auth(new["accessToken"], self.daemon, self.orch)
        self.assertEqual(msg["type"], "auth_success", json.dumps(msg))
        # The spent one: refused, every time, on either worker.
        for _ in range(3):
            self.assert_code(self.post(REFRESH, {"refreshToken": got["refreshToken"]}),
                             401, "TOKEN_REVOKED")
        # The new one works once.
        r = self.post(REFRESH, {"refreshToken": new["refreshToken"]})
        self.assertEqual(r.status, 200, r.body)
        self.assert_code(self.post(REFRESH, {"refreshToken": new["refreshToken"]}),
                         401, "TOKEN_REVOKED")

    def test_refresh_refuses_access_token_forgery_and_dead_credential(self):
        key, secret = self.add_credential()
        got = self.login(key, secret)
        self.assert_code(self.post(REFRESH, {"refreshToken": got["accessToken"]}),
                         401, "AUTH_FAILED")
        self.assert_code(self.post(REFRESH, {"refreshToken": tokens.tamper(got["refreshToken"])}),
                         401, "AUTH_FAILED")
        # Signed with the secret but never issued: no stored id.
        forged = self.token(typ="refresh")
        self.assert_code(self.post(REFRESH, {"refreshToken": forged}), 401, "TOKEN_REVOKED")
        # The refresh token of a credential deactivated since: refused,
        # and an access token is no Bearer for the refresh.
        self.pg.sql("UPDATE daemon_credentials SET is_active = false WHERE api_key = %s;"
                    % sql_str(key))
        self.assert_code(self.post(REFRESH, {"refreshToken": got["refreshToken"]}),
                         401, "AUTH_FAILED")

    def test_orchd_credential_script(self):
        script = os.path.join(SRCDIR, "scripts", "orchd-credential")
        env = dict(os.environ, PSQL=os.path.join(PG_BINDIR, "psql"))
        p = subprocess.run([script, self.orch, self.pg.conninfo], capture_output=True,
                           text=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        vals = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
        got = self.login(vals["ORCHD_API_KEY"], vals["ORCHD_API_SECRET"])
        self.assertIn("accessToken", got)


if __name__ == "__main__":
    unittest.main()
