"""The PostgreSQL directory on auth (orchd.conf(5), "Directory"; issue 6,
"On auth" and "Failure policy"): the real orchd (2 workers), a private
PostgreSQL (pgfix, etc/schema.sql applied), a real redis-server (redisfix).

Covered: an unknown orchestrator and a suspended user are refused with
ORCHESTRATOR_DISABLED / 4001; the organization comes from the database,
not from the token (the session key in Redis); a users UPDATE closes the
live connections of that user's orchestrators with 4006 within a second,
on both workers, and leaves other users' alone; with PostgreSQL stopped,
fail-closed refuses new auths with UNAVAILABLE while authenticated
connections keep working and /readyz answers 503 naming the database;
cached lets a recently seen orchestrator in; PostgreSQL back, auth works
again.

Channel membership (issue 6, item 4): a channel event reaches only the
orchestrators whose user is a member of the channel, on both workers; an
INSERT into channel_members lets the next channel event reach the new
member without reconnecting, an UPDATE of left_at stops them, and events
without a channel reach everyone throughout.

The HTTP endpoints that take an access token (POST /api/daemon/heartbeat,
GET and DELETE /api/daemon/events): a suspended user's orchestrator and an
unknown one get 403 ORCHESTRATOR_DISABLED, PostgreSQL down under
fail-closed 503 UNAVAILABLE (and 200 again once it is back), the heartbeat
notice goes to the database's organization, and clients that go away
during the look-up do no harm.

Needs PostgreSQL 15 (initdb/postgres/psql), redis-server and openssl.
Every wait is bounded; cleanup always stops orchd, redis and postgres.

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_directory -v
"""

import json
import os
import time
import unittest
import uuid

from harness import RawConn, http_request, wait_for
from pgfix import PG_BINDIR
from test_events import EventTestCase, record
from test_proto import ProtoClient, ProtoTestCase

HAVE_PG = os.path.exists(os.path.join(PG_BINDIR, "postgres"))


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


class DirectoryFixtures:
    """Rows of the directory (self.pg: a pgfix server)."""

    def add_org(self, org):
        self.pg.sql("INSERT INTO organizations (id, slug) VALUES (%s, %s);"
                    % (sql_str(org), sql_str(org)))

    def add_user(self, user, status="ACTIVE"):
        self.pg.sql("INSERT INTO users (id, status) VALUES (%s, %s);"
                    % (sql_str(user), sql_str(status)))

    def add_vps(self, vps, user, org, status="ACTIVE", workspace=None):
        self.pg.sql("INSERT INTO vps (id, user_id, organization_id, workspace_id, status) "
                    "VALUES (%s, %s, %s, %s, %s);"
                    % (sql_str(vps), sql_str(user), sql_str(org),
                       sql_str(workspace) if workspace else "NULL", sql_str(status)))


class DirectoryStack(DirectoryFixtures, ProtoTestCase):
    """orchd with a database: self.orch is an ACTIVE vps of an ACTIVE user
    in self.db_org.  No tests of its own."""

    def setUp(self):
        super().setUp()
        from pgfix import start_postgres
        self.pg = start_postgres(self)
        self.user = "user-" + uuid.uuid4().hex[:8]
        self.db_org = "org-db-" + uuid.uuid4().hex[:6]
        self.add_user(self.user)
        self.add_org(self.db_org)
        self.add_vps(self.orch, self.user, self.db_org)

    def pg_down(self):
        # pgfix runs with synchronous_commit=off: without a checkpoint an
        # immediate stop may lose the rows written just before it.
        self.pg.sql("CHECKPOINT;")
        self.pg.stop("immediate")

    def start(self, **overrides):
        cfg = {"database": '"%s"' % self.pg.conninfo, "database_timeout": "1s"}
        cfg.update(overrides)
        o = self.start_stack(**cfg)
        self.wait_readyz(200)
        return o

    def readyz_all(self):
        """(status, body) of /readyz from several requests (both workers
        answer, SO_REUSEPORT spreads them)."""
        out = []
        for _ in range(6):
            r = http_request(self.o.port, "GET", "/readyz")
            out.append((r.status, r.json()))
        return out

    def wait_readyz(self, status, timeout=10.0):
        def ok():
            got = self.readyz_all()
            return got if all(s == status for s, _ in got) else None
        got = wait_for(ok, timeout, 0.1)
        self.assertTrue(got, "/readyz never answered %d from every worker: %s%s"
                        % (status, self.readyz_all(), self.diag()))
        return got

    def auth_msg(self, orch=None, daemon=None, **tok):
        orch = orch or self.orch
        daemon = daemon or "daemon-" + uuid.uuid4().hex[:8]
        c = self.client()
        msg = c.auth(self.token(orch=orch, daemon=daemon, **tok), daemon, orch)
        return c, msg

    def authed_to(self, orch, **tok):
        c, msg = self.auth_msg(orch=orch, **tok)
        self.assertEqual(msg["type"], "auth_success", json.dumps(msg) + self.diag())
        return c, msg["payload"]


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class DirectoryTest(DirectoryStack):

    def test_unknown_orchestrator_refused(self):
        self.start()
        c, msg = self.auth_msg(orch="orch-nobody-" + uuid.uuid4().hex[:6])
        self.assert_auth_error(c, msg, "ORCHESTRATOR_DISABLED")

    def test_suspended_user_and_inactive_vps_refused(self):
        self.start()
        u2, v2 = "user-s-" + uuid.uuid4().hex[:6], "orch-s-" + uuid.uuid4().hex[:6]
        self.add_user(u2, "SUSPENDED")
        self.add_vps(v2, u2, self.db_org)
        c, msg = self.auth_msg(orch=v2)
        self.assert_auth_error(c, msg, "ORCHESTRATOR_DISABLED")
        v3 = "orch-i-" + uuid.uuid4().hex[:6]
        self.add_vps(v3, self.user, self.db_org, status="SUSPENDED")
        c, msg = self.auth_msg(orch=v3)
        self.assert_auth_error(c, msg, "ORCHESTRATOR_DISABLED")
        # The known, active one gets in.
        self.authed_to(self.orch)

    def test_organization_from_database(self):
        self.start()
        c, p = self.authed_to(self.orch, org="org-from-token")

        def org():
            return self.session(p["connectionId"]).get("organizationId")
        got = wait_for(org, 5.0)
        self.assertEqual(got, self.db_org, "session organization %r, want the database's %r"
                         % (got, self.db_org))
        c.heartbeat()

    def test_user_suspended_closes_connections_4006(self):
        self.start()
        v2 = "orch-b-" + uuid.uuid4().hex[:6]
        self.add_vps(v2, self.user, self.db_org)
        other_user, other_vps = "user-o-" + uuid.uuid4().hex[:6], "orch-o-" + uuid.uuid4().hex[:6]
        self.add_user(other_user)
        self.add_vps(other_vps, other_user, self.db_org)
        victims = [self.authed_to(o)[0] for o in (self.orch, self.orch, v2, v2, self.orch, v2)]
        bystander, _ = self.authed_to(other_vps)
        self.pg.sql("UPDATE users SET status = 'SUSPENDED' WHERE id = %s;" % sql_str(self.user))
        t0 = time.monotonic()
        for c in victims:
            code, reason = c.expect_close(timeout=max(0.05, 1.0 - (time.monotonic() - t0)))
            self.assertEqual(code, 4006, "close %s %r" % (code, reason))
        self.assertLess(time.monotonic() - t0, 1.0)
        bystander.heartbeat()
        # Suspended: a new auth is refused.
        c, msg = self.auth_msg(orch=self.orch)
        self.assert_auth_error(c, msg, "ORCHESTRATOR_DISABLED")
        # Active again: in again (the notice dropped the cached answer).
        self.pg.sql("UPDATE users SET status = 'ACTIVE' WHERE id = %s;" % sql_str(self.user))
        ok = wait_for(lambda: self.auth_msg(orch=self.orch)[1]["type"] == "auth_success",
                      3.0, 0.1)
        self.assertTrue(ok, self.diag())

    def test_suspension_missed_while_not_listening_closes_4006(self):
        self.start()
        live = [self.authed_to(self.orch)[0] for _ in range(4)]
        # The listening connections go and the suspension lands before
        # they are back (reconnects wait 100ms at least): its notice is
        # lost, and LISTEN in effect again re-checks the live connections.
        self.pg.sql("SELECT pg_terminate_backend(pid, 3000) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid(); "
                    "UPDATE users SET status = 'SUSPENDED' WHERE id = %s;"
                    % sql_str(self.user))
        for c in live:
            code, reason = c.expect_close(timeout=3.0)
            self.assertEqual(code, 4006, reason)

    def test_vps_deleted_closes_4006(self):
        self.start()
        c, _ = self.authed_to(self.orch)
        self.pg.sql("DELETE FROM vps WHERE id = %s;" % sql_str(self.orch))
        code, reason = c.expect_close(timeout=1.5)
        self.assertEqual(code, 4006, reason)

    def test_fail_closed_database_down(self):
        self.start(database_failure="fail-closed")
        live = [self.authed_to(self.orch)[0] for _ in range(4)]
        self.pg_down()
        got = self.wait_readyz(503)
        for _, body in got:
            self.assertIn("database", body.get("reason", ""), body)
            self.assertEqual(body.get("database"), {"ready": False}, body)
        c, msg = self.auth_msg(orch=self.orch)
        self.assert_auth_error(c, msg, "UNAVAILABLE")
        for lc in live:
            lc.heartbeat()
        self.pg.start()
        got = self.wait_readyz(200, timeout=15.0)
        for _, body in got:
            self.assertEqual(body.get("database"), {"ready": True}, body)
        ok = wait_for(lambda: self.auth_msg(orch=self.orch)[1]["type"] == "auth_success",
                      5.0, 0.2)
        self.assertTrue(ok, self.diag())
        for lc in live:
            lc.heartbeat()

    def test_cached_database_down(self):
        # TTL 0: every auth asks, so the answer below comes from the
        # cache's fallback, not from a fresh entry.
        self.start(database_failure="cached", database_cache_ttl="0s")
        # Both workers must have it cached; SO_REUSEPORT spreads
        # connections at random, so enough of them that one worker
        # missing out is odds of 2^-23.
        for _ in range(24):
            c, _ = self.authed_to(self.orch)
            c.close()
        never = "orch-never-" + uuid.uuid4().hex[:6]
        self.add_vps(never, self.user, self.db_org)
        self.pg_down()
        self.wait_readyz(503)
        for _ in range(4):
            c, msg = self.auth_msg(orch=self.orch)
            self.assertEqual(msg["type"], "auth_success", json.dumps(msg) + self.diag())
            c.close()
        c, msg = self.auth_msg(orch=never)
        self.assert_auth_error(c, msg, "UNAVAILABLE")
        self.pg.start()
        self.wait_readyz(200, timeout=15.0)
        ok = wait_for(lambda: self.auth_msg(orch=never)[1]["type"] == "auth_success",
                      5.0, 0.2)
        self.assertTrue(ok, self.diag())


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class DirectoryApiTest(DirectoryStack):
    """The HTTP endpoints that take an access token (POST heartbeat, GET
    and DELETE events) look the token's orchestrator up as WebSocket auth
    does: 403 ORCHESTRATOR_DISABLED for an unknown one or a suspended user,
    503 UNAVAILABLE with PostgreSQL down under fail-closed; the heartbeat
    notice goes to the database's organization, not the token's."""

    HB_BODY = json.dumps({"status": "active"}).encode()

    def hdrs(self, orch, **tok):
        return {"Authorization": "Bearer " + self.token(orch=orch, daemon=self.daemon, **tok),
                "Content-Type": "application/json"}

    def heartbeat(self, orch, **tok):
        return http_request(self.o.port, "POST", "/api/daemon/heartbeat",
                            headers=self.hdrs(orch, **tok), body=self.HB_BODY)

    def events_get(self, orch):
        return http_request(self.o.port, "GET", "/api/daemon/events", headers=self.hdrs(orch))

    def events_delete(self, orch):
        return http_request(self.o.port, "DELETE", "/api/daemon/events", headers=self.hdrs(orch),
                            body=json.dumps({"eventIds": ["ev-1"]}).encode())

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, "%r%s" % (r, self.diag()))
        doc = r.json()
        self.assertEqual(doc.get("code"), code, doc)
        self.assertIsInstance(doc.get("error"), str, doc)

    def all_endpoints(self, orch):
        # Several of each: both workers answer (SO_REUSEPORT).
        for _ in range(3):
            yield "heartbeat", self.heartbeat(orch)
            yield "GET events", self.events_get(orch)
            yield "DELETE events", self.events_delete(orch)

    def test_suspended_user_refused(self):
        self.start()
        u2, v2 = "user-s-" + uuid.uuid4().hex[:6], "orch-s-" + uuid.uuid4().hex[:6]
        self.add_user(u2, "SUSPENDED")
        self.add_vps(v2, u2, self.db_org)
        for what, r in self.all_endpoints(v2):
            with self.subTest(what):
                self.assert_error(r, 403, "ORCHESTRATOR_DISABLED")
        self.assertFalse(self.redis.command("EXISTS", "daemon:heartbeat:%s" % v2),
                         "a refused heartbeat was recorded")
        # The known, active one is served.
        for what, r in self.all_endpoints(self.orch):
            with self.subTest(what):
                self.assertEqual(r.status, 200, "%r%s" % (r, self.diag()))

    def test_unknown_orchestrator_refused(self):
        self.start()
        nobody = "orch-nobody-" + uuid.uuid4().hex[:6]
        for what, r in self.all_endpoints(nobody):
            with self.subTest(what):
                self.assert_error(r, 403, "ORCHESTRATOR_DISABLED")

    def test_heartbeat_organization_from_database(self):
        self.start()
        sub_db = self.redis.pubsub_listen("daemon:heartbeats:%s" % self.db_org)
        sub_tok = self.redis.pubsub_listen("daemon:heartbeats:org-from-token")
        r = self.heartbeat(self.orch, org="org-from-token")
        self.assertEqual(r.status, 200, "%r%s" % (r, self.diag()))
        msg = sub_db.wait_message(timeout=3)
        self.assertIsNotNone(msg, "no notice on daemon:heartbeats:%s" % self.db_org)
        self.assertEqual(json.loads(msg[1]).get("organizationId"), self.db_org, msg)
        self.assertIsNone(sub_tok.wait_message(timeout=0.3),
                          "a notice went to the token's organization")

    def test_client_gone_during_lookup(self):
        self.start()
        for _ in range(20):
            c = RawConn(self.o.port)
            c.send(("GET /api/daemon/events HTTP/1.1\r\nHost: x\r\n"
                    "Authorization: Bearer %s\r\n\r\n"
                    % self.token(orch=self.orch, daemon=self.daemon)).encode())
            c.close()
        for what, r in self.all_endpoints(self.orch):
            with self.subTest(what):
                self.assertEqual(r.status, 200, "%r%s" % (r, self.diag()))

    def test_fail_closed_database_down(self):
        self.start(database_failure="fail-closed")
        self.assertEqual(self.heartbeat(self.orch).status, 200)
        self.pg_down()
        self.wait_readyz(503)
        for what, r in self.all_endpoints(self.orch):
            with self.subTest(what):
                self.assert_error(r, 503, "UNAVAILABLE")
        self.pg.start()
        self.wait_readyz(200, timeout=15.0)
        ok = wait_for(lambda: self.heartbeat(self.orch).status == 200, 5.0, 0.2)
        self.assertTrue(ok, self.diag())
        for what, r in self.all_endpoints(self.orch):
            with self.subTest(what):
                self.assertEqual(r.status, 200, "%r%s" % (r, self.diag()))


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class ChannelStack(DirectoryFixtures, EventTestCase):
    """Two orchestrators of two users; user 1 is a member of self.chan,
    user 2 of nothing."""

    def setUp(self):
        super().setUp()
        from pgfix import start_postgres
        self.pg = start_postgres(self)
        self.db_org = "org-db-" + uuid.uuid4().hex[:6]
        self.add_org(self.db_org)
        self.u1, self.u2 = ("user-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in (1, 2))
        self.o1, self.o2 = ("orch-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in (1, 2))
        self.chan = "chan-" + uuid.uuid4().hex[:8]
        for u, o in ((self.u1, self.o1), (self.u2, self.o2)):
            self.add_user(u)
            self.add_vps(o, u, self.db_org)
        self.join(self.chan, self.u1)

    def join(self, chan, user):
        self.pg.sql("INSERT INTO channel_members (channel_id, user_id) VALUES (%s, %s);"
                    % (sql_str(chan), sql_str(user)))

    def leave(self, chan, user):
        self.pg.sql("UPDATE channel_members SET left_at = now() WHERE channel_id = %s "
                    "AND user_id = %s AND left_at IS NULL;" % (sql_str(chan), sql_str(user)))

    def start_db(self, **overrides):
        cfg = {"database": '"%s"' % self.pg.conninfo, "database_timeout": "1s"}
        cfg.update(overrides)
        return self.start_stack(**cfg)

    def reaches(self, c, others, timeout=1.5):
        """Publish channel events (global, then fenced) until one reaches
        c; True if one did within timeout.  others are drained too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = record("channel.message", channel=self.chan)
            self.publish(e)
            self.fence([c] + others)
            if e["id"] in c.ids():
                return True
            time.sleep(0.05)
        return False

    def stops(self, c, others, timeout=1.5):
        """Publish channel events until one does not reach c."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = record("channel.message", channel=self.chan)
            self.publish(e)
            self.fence([c] + others)
            if e["id"] not in c.ids():
                return True
            time.sleep(0.05)
        return False



class ChannelMembershipTest(ChannelStack):

    def test_channel_event_reaches_members_only(self):
        self.start_db()
        m, _ = self.connect_spread(self.o1, 2)
        n, _ = self.connect_spread(self.o2, 2)
        # Published at once: a member's first connection waited for its
        # channels before auth_success.
        bcast = record("channel.message", channel=self.chan)
        to_o1 = record("message.received", self.o1, channel=self.chan)
        to_o2 = record("message.received", self.o2, channel=self.chan)
        other = record("message.received", channel="chan-nobody-" + uuid.uuid4().hex[:6])
        plain = record("message.received")
        plain_o2 = record("message.received", self.o2)
        for e in (bcast, to_o1, to_o2, other, plain, plain_o2):
            self.publish(e)
        self.fence(m + n)
        for c in m:
            self.assert_got(c, [bcast["id"], to_o1["id"], plain["id"]])
            self.check_event(c, bcast, seq="none")
        for c in n:
            self.assert_got(c, [plain["id"], plain_o2["id"]])

    def test_channel_filter_still_applies_on_top(self):
        self.start_db()
        other = "chan-o-" + uuid.uuid4().hex[:6]
        self.join(other, self.u1)
        narrow = self.connect(self.o1, channels=[other], name="narrow")
        wide = self.connect(self.o1, name="wide")
        e1 = record("channel.message", channel=self.chan)
        e2 = record("channel.message", channel=other)
        for e in (e1, e2):
            self.publish(e)
        self.fence([narrow, wide])
        self.assert_got(narrow, [e2["id"]])
        self.assert_got(wide, [e1["id"], e2["id"]])

    def test_join_and_leave_without_reconnecting(self):
        self.start_db()
        m, _ = self.connect_spread(self.o1, 2)
        n, _ = self.connect_spread(self.o2, 2)
        e = record("channel.message", channel=self.chan)
        self.publish(e)
        self.fence(m + n)
        for c in n:
            self.assertNotIn(e["id"], c.ids())
        # Joins: the next channel event reaches it, on both workers.
        self.join(self.chan, self.u2)
        t0 = time.monotonic()
        for c in n:
            self.assertTrue(self.reaches(c, m + n, max(0.1, 1.5 - (time.monotonic() - t0))),
                            "%r not reached after joining%s" % (c, self.diag()))
        self.assertLess(time.monotonic() - t0, 1.5)
        # Leaves (left_at set): they stop.
        self.leave(self.chan, self.u2)
        t0 = time.monotonic()
        for c in n:
            self.assertTrue(self.stops(c, m + n, max(0.1, 1.5 - (time.monotonic() - t0))),
                            "%r still reached after leaving%s" % (c, self.diag()))
        e = record("channel.message", channel=self.chan)
        plain = record("presence.changed")
        self.publish(e)
        self.publish(plain)
        self.fence(m + n)
        for c in n:
            self.assertNotIn(e["id"], c.ids())
            self.assertIn(plain["id"], c.ids())
        for c in m:
            self.assertIn(e["id"], c.ids())
            self.assertIn(plain["id"], c.ids())
        # DELETE of user 1's row: user 1 stops too.
        self.pg.sql("DELETE FROM channel_members WHERE user_id = %s;" % sql_str(self.u1))
        t0 = time.monotonic()
        for c in m:
            self.assertTrue(self.stops(c, m + n, max(0.1, 1.5 - (time.monotonic() - t0))),
                            "%r still reached after the DELETE%s" % (c, self.diag()))

    def test_notices_missed_while_not_listening(self):
        self.start_db()
        n, _ = self.connect_spread(self.o2, 2)
        # The listening connections go; the join lands before they are
        # back (reconnects wait 100ms at least), so its notice is lost:
        # LISTEN in effect again loads every set again.
        self.pg.sql("SELECT pg_terminate_backend(pid, 3000) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid(); "
                    "INSERT INTO channel_members (channel_id, user_id) VALUES (%s, %s);"
                    % (sql_str(self.chan), sql_str(self.u2)))
        t0 = time.monotonic()
        for c in n:
            self.assertTrue(self.reaches(c, n, max(0.1, 3.0 - (time.monotonic() - t0))),
                            "%r not reached after the listener came back%s"
                            % (c, self.diag()))



class OutageUnderLoadTest(ChannelStack):
    """PostgreSQL stopped and restarted while events flow to connected
    daemons and new daemons keep trying to authenticate: the connected ones
    get every event throughout, under both failure policies, and new auths
    follow the policy."""

    def auth_once(self, orch):
        pc = ProtoClient(self, self.o.port)
        try:
            msg = pc.auth(self.token(orch=orch, org=self.org, exp_in=3600),
                          "d-" + uuid.uuid4().hex[:8], orch)
        finally:
            pc.close()
        if msg["type"] == "auth_success":
            return "ok"
        return msg.get("payload", {}).get("code") or json.dumps(msg)

    def run_outage(self, policy):
        self.start_db(database_failure=policy, database_cache_ttl="0s")
        readers, _ = self.connect_spread(self.o1, 4)
        sent = []

        def burst(n):
            got = []
            for _ in range(n):
                e = record("presence.changed", payload={"i": len(sent)})
                self.publish(e)
                sent.append(e["id"])
                got.append(self.auth_once(self.o1))
            return got

        before = burst(10)
        self.pg.sql("CHECKPOINT;")
        self.pg.stop("immediate")
        during = burst(20)
        self.pg.start()
        ok = wait_for(lambda: all(http_request(self.o.port, "GET", "/readyz").status == 200
                                  for _ in range(12)), 15.0, 0.1)
        self.assertTrue(ok, "/readyz not 200 after the restart" + self.diag())
        after = burst(10)
        self.fence(readers)
        for c in readers:
            self.assert_got(c, sent, exact=False)
        return before, during, after

    def test_outage_fail_closed(self):
        before, during, after = self.run_outage("fail-closed")
        self.assertEqual(before, ["ok"] * 10, before)
        self.assertEqual(during, ["UNAVAILABLE"] * 20, during)
        self.assertEqual(after, ["ok"] * 10, after)

    def test_outage_cached(self):
        before, during, after = self.run_outage("cached")
        # A known orchestrator keeps authenticating from the cache.
        self.assertEqual(before + during + after, ["ok"] * 40,
                         (before, during, after))


if __name__ == "__main__":
    unittest.main()
