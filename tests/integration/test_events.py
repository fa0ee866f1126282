"""The event pipeline (PROTOCOL.md sections 4, 6 and 7) end to end, in normal
operation: the real orchd (2 workers and its relay process), a private
redis-server (redisfix), tokens minted here.

A publisher puts event records on Redis (PUBLISH daemon:events /
daemon:events:ORG, or XADD daemon:stream with event_stream on); the relay
routes them to the workers holding the target's connections, queues them in
the durable per-orchestrator queue when section 6 says so; daemons get them
as `event` messages, replayed after auth_success when queued.

Covered: targeted events reach exactly the subscribed connections of their
orchestrator on both workers; organization broadcasts (channel and
organizationId) and global broadcasts; daemonId targeting; channel filters;
`*`, `family.*` and exact subscriptions, unsubscribe; scope filtering (live
and replay); the event message's fields; priorities jumping a full send
queue; offline queueing and replay (queued, recovered, resumeFrom), replay
before live events, replay filtered by scope and daemonId but not by
subscription; queue cap and TTL; acks over WebSocket and HTTP (GET and
DELETE /api/daemon/events); duplicate suppression; bad records counted in
/readyz and skipped; seq strictly increasing per orchestrator; the relay
process; the stream; drain on TERM and HUP (reconnect, then 1001).

How "exactly" is checked without sleeping: after the events under test, a
global broadcast "system.fence" is published; live events reach one
connection in the order the relay received them (equal priorities), so once
a connection has the fence it would have had every earlier event meant for
it.  Every subscription made through EventTestCase.connect() includes
system.fence.

Every wait is bounded; every test has its own orchd, redis-server and temp
dir.  Run:

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_events -v
"""

import datetime
import json
import os
import re
import signal
import sys
import time
import unittest
import uuid

from harness import http_request, proc_comm, proc_stat, wait_for
from test_proto import ALL_SCOPES, WS_PATH, ProtoClient, ProtoTestCase, to_ms
from wsclient import CloseReceived, ConnectionClosed, Timeout, WsClient

FENCE = "system.fence"
QUEUE_EVENTS = "daemon:events:"
QUEUE_BODIES = "daemon:eventbodies:"


def iso(t=None):
    """Epoch seconds (default now) -> ISO 8601 ms Z."""
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id(prefix="ev"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:16])


def record(type_, orch=None, payload=None, **kw):
    """An event record.  kw: daemon, org, workspace, channel, ack, priority,
    timestamp, id; raw=dict of fields set as given (None removes one)."""
    rec = {"id": kw.pop("id", None) or new_id(), "type": type_}
    if orch is not None:
        rec["orchestratorId"] = orch
    names = {"daemon": "daemonId", "org": "organizationId", "workspace": "workspaceId",
             "channel": "channelId", "ack": "requiresAck", "priority": "priority",
             "timestamp": "timestamp"}
    for k, field in names.items():
        if k in kw:
            v = kw.pop(k)
            if v is not None:
                rec[field] = v
    rec.setdefault("timestamp", iso())
    rec["payload"] = payload if payload is not None else {"n": uuid.uuid4().hex[:8],
                                                           "nested": {"a": [1, 2.5, "x"]}}
    for k, v in kw.pop("raw", {}).items():
        if v is None:
            rec.pop(k, None)
        else:
            rec[k] = v
    assert not kw, "unknown record fields %r" % kw
    return rec


class EvClient:
    """An authenticated ProtoClient plus what it received."""

    def __init__(self, testcase, pc, auth_payload, orch, daemon, org, name=None):
        self.t = testcase
        self.pc = pc
        self.auth = auth_payload
        self.orch = orch
        self.daemon = daemon
        self.org = org
        self.name = name or daemon
        self.msgs = []     # every message, parsed
        self.events = []   # payloads of the `event` messages, in order
        self.closed = None

    def __repr__(self):
        return "<EvClient %s orch=%s>" % (self.name, self.orch)

    @property
    def ws(self):
        return self.pc.ws

    def read(self, timeout):
        """One message (recorded), or None on timeout.  A close is
        recorded in self.closed and re-raised."""
        try:
            msg = self.pc.recv(timeout)
        except Timeout:
            return None
        except CloseReceived as e:
            self.closed = (e.code, e.reason)
            raise
        self.msgs.append(msg)
        if msg["type"] == "event":
            self.events.append(msg["payload"])
        return msg

    def read_until(self, pred, timeout):
        """Read until pred(msg) holds for a message just read (or already
        read when pred is checked against self.msgs first is wanted, see
        wait_ids); returns that message or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            msg = self.read(remaining)
            if msg is not None and pred(msg):
                return msg

    def ids(self, fence=False):
        return [e.get("eventId") for e in self.events
                if fence or e.get("eventType") != FENCE]

    def event(self, eid):
        for e in self.events:
            if e.get("eventId") == eid:
                return e
        return None

    def wait_ids(self, ids, timeout=5.0):
        """True once every id in ids has been received."""
        want = set(ids)
        deadline = time.monotonic() + timeout
        while not want <= set(self.ids(fence=True)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.read(remaining)
        return True

    def subscribe(self, types, channels=None, fence=True, timeout=5.0):
        types = list(types)
        if fence and FENCE not in types and "*" not in types:
            types.append(FENCE)
        p = {"eventTypes": types}
        if channels is not None:
            p["channelIds"] = list(channels)
        self.pc.send("subscribe", p)
        msg = self.read_until(lambda m: m["type"] in ("subscribed", "error"), timeout)
        self.t.assertIsNotNone(msg, "no answer to subscribe %s" % p)
        self.t.assertEqual(msg["type"], "subscribed", json.dumps(msg))
        return msg["payload"]

    def unsubscribe(self, types, timeout=5.0):
        self.pc.send("unsubscribe", {"eventTypes": list(types)})
        msg = self.read_until(lambda m: m["type"] in ("subscribed", "error"), timeout)
        self.t.assertIsNotNone(msg, "no answer to unsubscribe")
        self.t.assertEqual(msg["type"], "subscribed", json.dumps(msg))
        return msg["payload"]

    def ack(self, ids):
        self.pc.send("ack", {"eventIds": list(ids)})

    def quiet(self, seconds):
        """True if no message at all arrives within seconds."""
        try:
            msg = self.read(seconds)
        except CloseReceived:
            return False
        return msg is None

    def close(self):
        self.pc.close()


class EventTestCase(ProtoTestCase):
    """ProtoTestCase with the event helpers (no tests of its own).

    After each test the log must show no child killed by a signal other
    than the SIGKILLs a test sends itself: a worker or relay that crashes
    and is respawned would otherwise go unnoticed."""

    CRASH_RE = re.compile(r"^.*\b(worker \d+|relay) \(pid \d+\) killed by signal "
                          r"(?!9\b)\d+.*$", re.M)

    def tearDown(self):
        if self.o is not None:
            lines = [m.group(0) for m in self.CRASH_RE.finditer(self.o.log_text())]
            if lines:
                self.fail("orchd children crashed during the test:\n%s%s"
                          % ("\n".join(lines), self.diag()))
        super().tearDown()

    def start_stack(self, redis=True, redis_args=(), wait_relay=True, **overrides):
        cfg = {"heartbeat_interval": "30s",
               "rate_limit_messages": 100000,
               "max_connections_per_orchestrator": 30,
               "ws_compression": "off"}
        cfg.update(overrides)
        if redis and redis_args:
            from redisfix import start_redis
            self.redis = start_redis(self, extra_args=redis_args)
            redis = False
        o = super().start_stack(redis=redis, **cfg)
        if wait_relay:
            self.wait_relay()
        return o

    # -- /readyz and the relay -------------------------------------------------

    def readyz(self, timeout=3.0):
        """(status, parsed body or None)."""
        r = http_request(self.o.port, "GET", "/readyz", timeout=timeout)
        try:
            doc = r.json()
        except ValueError:
            doc = None
        return r.status, doc

    def wait_relay(self, timeout=10.0, not_pid=None):
        """Wait for /readyz 200 with relay.subscribed (and relay.pid !=
        not_pid); returns the document."""
        last = []

        def ready():
            st, doc = self.readyz()
            last[:] = [st, doc]
            if st != 200 or not isinstance(doc, dict):
                return None
            relay = doc.get("relay") or {}
            if relay.get("subscribed") is not True:
                return None
            if not_pid is not None and relay.get("pid") == not_pid:
                return None
            return doc
        doc = wait_for(ready, timeout, 0.05)
        self.assertTrue(doc, "/readyz not ready (relay subscribed%s) within %.0fs; last "
                        "answer %s%s" % (" with a new pid" if not_pid else "", timeout,
                                         last, self.diag()))
        return doc

    def relay_stats(self):
        st, doc = self.readyz()
        self.assertIsInstance(doc, dict, "/readyz body is not JSON (status %s)" % st)
        self.assertIsInstance(doc.get("relay"), dict, "/readyz without relay: %s" % doc)
        return doc["relay"]

    # -- publishing ---------------------------------------------------------------

    def publish(self, rec, org=None, expect_receivers=True):
        """PUBLISH rec (dict -> JSON; str/bytes as is) on daemon:events or
        daemon:events:ORG.  Returns the number of receivers."""
        ch = "daemon:events" + (":" + org if org else "")
        data = rec if isinstance(rec, (str, bytes)) else json.dumps(rec)
        n = self.redis.command("PUBLISH", ch, data)
        if expect_receivers:
            self.assertGreaterEqual(n, 1, "nobody subscribed to %s%s" % (ch, self.diag()))
        return n

    def publish_many(self, recs, org=None):
        ch = "daemon:events" + (":" + org if org else "")
        cmds = [("PUBLISH", ch, r if isinstance(r, (str, bytes)) else json.dumps(r))
                for r in recs]
        out = []
        for i in range(0, len(cmds), 100):
            out += self.redis.client().pipeline(cmds[i:i + 100], timeout=10)
        return out

    def xadd(self, rec, key="daemon:stream"):
        data = rec if isinstance(rec, (str, bytes)) else json.dumps(rec)
        return self.redis.command("XADD", key, "*", "event", data)

    def fence(self, clients, timeout=5.0):
        """Publish a global system.fence and wait until every client got it."""
        f = record(FENCE)
        self.publish(f)
        for c in clients:
            self.assertTrue(c.wait_ids([f["id"]], timeout),
                            "%r did not get the fence %s within %.0fs; got %s%s"
                            % (c, f["id"], timeout, c.ids(fence=True), self.diag()))
        return f["id"]

    # -- connections ----------------------------------------------------------------

    def connect(self, orch, daemon=None, org=None, scopes=ALL_SCOPES, types=("*",),
                channels=None, resume=None, token=None, expect_queued=None, name=None):
        """An authenticated EvClient, subscribed to types (+ the fence)
        unless types is None."""
        daemon = daemon or "d-" + uuid.uuid4().hex[:10]
        org = org or self.org
        tok = token or self.token(orch=orch, scopes=scopes, org=org, exp_in=3600)
        pc = ProtoClient(self, self.o.port)
        self.addCleanup(pc.close)
        msg = pc.auth(tok, daemon, orch, resume=resume)
        self.assertEqual(msg["type"], "auth_success", "%s%s" % (json.dumps(msg), self.diag()))
        c = EvClient(self, pc, msg["payload"], orch, daemon, org, name)
        if expect_queued is not None:
            self.assertEqual(c.auth.get("queued"), expect_queued, "auth_success %s" % c.auth)
        if types is not None:
            c.subscribe(types, channels)
        return c

    def worker_of(self, c, timeout=3.0):
        """The `worker` field of c's session in Redis (written just after
        auth_success)."""
        cid = c.auth["connectionId"]
        w = wait_for(lambda: self.session(cid).get("worker"), timeout)
        self.assertTrue(w, "no session (worker) for %s%s" % (cid, self.diag()))
        return w

    def connect_spread(self, orch, n, max_tries=16, **kw):
        """At least n connections of orch, on both workers (more are opened
        while they all land on one worker).  Returns (clients, {worker: [c]})."""
        clients, by_worker = [], {}
        while len(clients) < n or (len(by_worker) < 2 and len(clients) < max_tries):
            c = self.connect(orch, **kw)
            clients.append(c)
            by_worker.setdefault(self.worker_of(c), []).append(c)
        self.assertEqual(len(by_worker), 2, "%d connections of %s all on one worker %s"
                         % (len(clients), orch, list(by_worker)))
        return clients, by_worker

    # -- the durable queue ------------------------------------------------------------

    def zcard(self, orch):
        return self.redis.command("ZCARD", QUEUE_EVENTS + orch)

    def queued_ids(self, orch):
        return self.redis.command("ZRANGE", QUEUE_EVENTS + orch, 0, -1)

    def wait_zcard(self, orch, n, timeout=3.0):
        got = wait_for(lambda: self.zcard(orch) == n, timeout)
        self.assertTrue(got, "ZCARD %s%s = %s, want %d%s"
                        % (QUEUE_EVENTS, orch, self.zcard(orch), n, self.diag()))

    # -- checks ---------------------------------------------------------------------------

    def check_event(self, c, rec, seq="any", org=None):
        """c received rec exactly once, with the fields of section 4.
        seq: "any" (targeted: an int > 0), "none" (must be absent), or
        "present"."""
        got = [e for e in c.events if e.get("eventId") == rec["id"]]
        self.assertEqual(len(got), 1, "%r got %s %d times" % (c, rec["id"], len(got)))
        p = got[0]
        ctx = json.dumps(p)[:600]
        self.assertEqual(p.get("eventType"), rec["type"], ctx)
        self.assertEqual(p.get("data"), rec["payload"], ctx)
        self.assertIs(p.get("requiresAck"), bool(rec.get("requiresAck", False)), ctx)
        self.assertEqual(p.get("priority"), rec.get("priority", 0), ctx)
        if rec.get("channelId"):
            self.assertEqual(p.get("channelId"), rec["channelId"], ctx)
        else:
            self.assertIn(p.get("channelId"), (None, ""), ctx)
        self.assertIn("occurredAt", p, ctx)
        if "timestamp" in rec:
            self.assertLess(abs(to_ms(p["occurredAt"]) - to_ms(rec["timestamp"])), 1.5, ctx)
        orch = rec.get("orchestratorId")
        if orch and orch != "*":
            self.assertEqual(p.get("orchestratorId"), orch, ctx)
        else:
            self.assertIn(p.get("orchestratorId"), (None, ""), ctx)
        want_org = rec.get("organizationId") or org
        if want_org:
            self.assertEqual(p.get("organizationId"), want_org, ctx)
        for f in ("workspaceId", "daemonId"):
            if rec.get(f):
                self.assertEqual(p.get(f), rec[f], ctx)
            else:
                self.assertIn(p.get(f), (None, ""), ctx)
        if seq == "none":
            self.assertNotIn("seq", p, "non-ack broadcast with a seq: %s" % ctx)
        elif seq in ("any", "present"):
            self.assertIsInstance(p.get("seq"), int, "no integer seq: %s" % ctx)
            self.assertGreater(p["seq"], 0, ctx)
        return p

    def assert_got(self, c, ids, exact=True):
        """c's events (fence excepted) are ids, each once (order free)."""
        got = c.ids()
        if exact:
            self.assertEqual(sorted(got), sorted(ids), "%r: got %s, want %s"
                             % (c, got, list(ids)))
        else:
            for i in ids:
                self.assertEqual(got.count(i), 1, "%r: %s received %d times (got %s)"
                                 % (c, i, got.count(i), got))

    def event_msgs(self, c):
        return [m for m in c.msgs if m["type"] == "event"]

    def workers(self):
        """The supervisor's children minus the relay (harness.worker_pids()
        matches "relay" anywhere in the command line, and the config path
        holds the test's name)."""
        return [p for p in self.o.children() if proc_comm(p) != "orchd-relay"]


# ============================================================================
# routing


class RoutingTest(EventTestCase):

    def test_targeted_event_reaches_exactly_the_subscribed_connections_on_both_workers(self):
        self.start_stack()
        a, b, cc = "orch-a-" + self.orch, "orch-b-" + self.orch, "orch-c-" + self.orch
        a_subs, a_by_worker = self.connect_spread(a, 5)
        a_presence = self.connect(a, types=["presence.*"], name="a-presence")
        a_unsub = self.connect(a, types=None, name="a-unsubscribed")
        b_subs, _ = self.connect_spread(b, 3)
        c_subs = [self.connect(cc), self.connect(cc)]
        self.note("orch a: %d subscribed connections on workers %s", len(a_subs),
                  {w: len(v) for w, v in a_by_worker.items()})
        evs = [record("message.received", a, workspace="ws-1", channel="chan-x"),
               record("message.received", a, priority=5),
               record("message.deleted", a)]
        for e in evs:
            self.publish(e)
        eb = record("message.received", b)
        self.publish(eb)
        everybody = a_subs + [a_presence] + b_subs + c_subs
        self.fence(everybody)
        for c in a_subs:
            self.assert_got(c, [e["id"] for e in evs])
            for e in evs:
                self.check_event(c, e)
            # Arrival order = publish order, but evs[1] (priority 5) may jump.
            self.assertEqual([i for i in c.ids() if i != evs[1]["id"]],
                             [evs[0]["id"], evs[2]["id"]])
        # One event, one seq, the same on every connection of the orchestrator.
        for e in evs:
            seqs = {c.event(e["id"])["seq"] for c in a_subs}
            self.assertEqual(len(seqs), 1, "one event, different seqs: %s" % seqs)
        self.assert_got(a_presence, [])
        for c in b_subs:
            self.assert_got(c, [eb["id"]])
            self.check_event(c, eb)
        for c in c_subs:
            self.assert_got(c, [])
        self.assertTrue(a_unsub.quiet(0.3), "an unsubscribed connection got %s"
                        % a_unsub.msgs[-1:])
        # Targeted non-ack events to a connected orchestrator are not queued.
        self.assertEqual(self.zcard(a), 0, "live non-ack events were queued")

    def test_organization_broadcast_and_global_broadcast(self):
        self.start_stack()
        org1, org2 = "org1-" + self.org, "org2-" + self.org
        a1, a2 = self.connect("orch-a", org=org1), self.connect("orch-a", org=org1)
        b = self.connect("orch-b", org=org1)
        c = self.connect("orch-c", org=org2)
        d = self.connect("orch-d", org=org2, types=["presence.*"])
        everybody = [a1, a2, b, c, d]
        on_org1_channel = record("channel.created")                      # org from channel
        star_org1 = record("channel.updated", "*")                       # "*" = broadcast
        org2_field = record("message.received", org=org2)                # global channel
        empty_org2 = record("message.received", "", org=org2)            # "" = broadcast
        targeted_on_org1 = record("message.received", "orch-a")          # targeted
        everyone = record("system.maintenance", workspace="ws-9")        # global
        self.publish(on_org1_channel, org=org1)
        self.publish(star_org1, org=org1)
        self.publish(org2_field)
        self.publish(empty_org2, org=org2)
        self.publish(targeted_on_org1, org=org1)
        self.publish(everyone)
        self.fence(everybody)
        with self.subTest("organization 1"):
            for cl in (a1, a2):
                self.assert_got(cl, [on_org1_channel["id"], star_org1["id"],
                                     targeted_on_org1["id"], everyone["id"]])
            self.assert_got(b, [on_org1_channel["id"], star_org1["id"], everyone["id"]])
            for cl in (a1, a2, b):
                self.check_event(cl, on_org1_channel, seq="none", org=org1)
                self.check_event(cl, star_org1, seq="none", org=org1)
                self.check_event(cl, everyone, seq="none")
            self.check_event(a1, targeted_on_org1, seq="any", org=org1)
        with self.subTest("organization 2"):
            self.assert_got(c, [org2_field["id"], empty_org2["id"], everyone["id"]])
            self.check_event(c, org2_field, seq="none", org=org2)
            self.check_event(c, empty_org2, seq="none", org=org2)
            self.assert_got(d, [])   # subscribed to presence.* only
        # Non-ack broadcasts are never queued.
        for orch in ("orch-a", "orch-b", "orch-c", "orch-d"):
            self.assertEqual(self.zcard(orch), 0, "non-ack broadcast queued for %s" % orch)

    def test_daemon_targeting(self):
        self.start_stack()
        a = "orch-a-" + self.orch
        d1 = self.connect(a, daemon="daemon-1")
        d1b = self.connect(a, daemon="daemon-1", name="daemon-1 second connection")
        d2 = self.connect(a, daemon="daemon-2")
        other = self.connect("orch-b", daemon="daemon-1")
        to_d1 = record("vp.status_changed", a, daemon="daemon-1")
        to_d2 = record("message.received", a, daemon="daemon-2")
        to_all = record("message.received", a)
        wrong_orch = record("message.received", "orch-nobody", daemon="daemon-1")
        for e in (to_d1, to_d2, to_all, wrong_orch):
            self.publish(e)
        self.fence([d1, d1b, d2, other])
        for c in (d1, d1b):
            self.assert_got(c, [to_d1["id"], to_all["id"]])
            self.check_event(c, to_d1)
        self.assert_got(d2, [to_d2["id"], to_all["id"]])
        self.check_event(d2, to_d2)
        self.assert_got(other, [])

    def test_channel_filters(self):
        self.start_stack()
        a = self.orch
        only1 = self.connect(a, types=["*"], channels=["chan-1"], name="chan-1")
        all_ch = self.connect(a, types=["*"], name="all channels")
        one_two = self.connect(a, types=["message.*"], channels=["chan-1", "chan-2"],
                               name="chan-1,2 messages")
        e1 = record("message.received", a, channel="chan-1")
        e2 = record("message.received", a, channel="chan-2")
        e3 = record("message.received", a)
        e4 = record("channel.member_joined", a, channel="chan-3")
        e5 = record("message.edited", org=self.org, channel="chan-1")   # org broadcast
        for e in (e1, e2, e3, e4):
            self.publish(e)
        self.publish(e5, org=self.org)
        self.fence([only1, all_ch, one_two])
        self.assert_got(only1, [e1["id"], e3["id"], e5["id"]])
        self.assert_got(all_ch, [e1["id"], e2["id"], e3["id"], e4["id"], e5["id"]])
        self.assert_got(one_two, [e1["id"], e2["id"], e3["id"], e5["id"]])
        self.check_event(only1, e1)
        self.check_event(all_ch, e4)
        self.check_event(one_two, e3)
        self.check_event(all_ch, e5, seq="none")

    def test_subscription_patterns_and_unsubscribe(self):
        self.start_stack()
        a = self.orch
        star = self.connect(a, types=["*"], name="*")
        fam = self.connect(a, types=["message.*"], name="message.*")
        exact = self.connect(a, types=["message.received"], name="message.received")
        mixed = self.connect(a, types=["presence.*", "channel.created"], name="mixed")
        system = self.connect(a, types=["system.*"], name="system.*")
        none = self.connect(a, types=None, name="not subscribed")
        evs = {t: record(t, a) for t in ("message.received", "message.deleted",
                                           "presence.updated", "channel.created",
                                           "channel.deleted", "vp.status_changed",
                                           "call.started", "system.maintenance",
                                           "messages.received")}
        for e in evs.values():
            self.publish(e)
        self.fence([star, fam, exact, mixed, system])
        ids = lambda *types: [evs[t]["id"] for t in types]  # noqa: E731
        self.assert_got(star, ids(*evs))
        self.assert_got(fam, ids("message.received", "message.deleted"))
        self.assert_got(exact, ids("message.received"))
        self.assert_got(mixed, ids("presence.updated", "channel.created"))
        self.assert_got(system, ids("system.maintenance"))
        self.assertTrue(none.quiet(0.3), "unsubscribed connection got %s" % none.msgs[-1:])
        # unsubscribe stops delivery; what remains still works.
        fam.unsubscribe(["message.*"])
        star.unsubscribe(["*"])
        star.subscribe(["call.*"])
        later = [record("message.received", a), record("call.ended", a)]
        for e in later:
            self.publish(e)
        self.fence([fam, star, exact])
        self.assert_got(fam, ids("message.received", "message.deleted"))
        self.assert_got(star, ids(*evs) + [later[1]["id"]])
        self.assert_got(exact, ids("message.received") + [later[0]["id"]])

    def test_scope_filtering(self):
        self.start_stack()
        a = self.orch
        msg_only = self.connect(a, scopes=["messages:read"], name="messages:read")
        no_scope = self.connect(a, scopes=[], name="no scopes")
        all_s = self.connect(a, name="all scopes")
        fams = ["message.received", "channel.created", "presence.updated",
                "vp.status_changed", "call.started", "system.notice"]
        evs = {t: record(t, a) for t in fams}
        bcast = {t: record(t, org=self.org) for t in fams}
        for e in evs.values():
            self.publish(e)
        for e in bcast.values():
            self.publish(e, org=self.org)
        self.fence([msg_only, no_scope, all_s])
        pick = lambda *ts: [evs[t]["id"] for t in ts] + [bcast[t]["id"] for t in ts]  # noqa
        self.assert_got(all_s, pick(*fams))
        self.assert_got(msg_only, pick("message.received", "system.notice"))
        self.assert_got(no_scope, pick("system.notice"))

    def test_global_broadcast_reaches_every_orchestrator_on_both_workers(self):
        self.start_stack()
        clients = []
        for i in range(4):
            cs, _ = self.connect_spread("orch-%d" % i, 2, org="org-%d" % (i % 2))
            clients += cs
        workers = {self.worker_of(c) for c in clients}
        self.assertEqual(len(workers), 2, workers)
        evs = [record("system.maintenance"), record("message.received", "*"),
               record("presence.updated", "", channel="chan-1")]
        for e in evs:
            self.publish(e)
        self.fence(clients)
        for c in clients:
            self.assert_got(c, [e["id"] for e in evs])
            for e in evs:
                self.check_event(c, e, seq="none")


# ============================================================================
# the event message, seq, priorities


class SequenceTest(EventTestCase):

    def test_seq_strictly_increasing_per_orchestrator(self):
        self.start_stack()
        x, y = "orch-x-" + self.orch, "orch-y-" + self.orch
        xs, _ = self.connect_spread(x, 2)
        ys = [self.connect(y)]
        recs = []
        for i in range(40):
            k = i % 5
            if k == 0:
                recs.append(record("message.received", x))
            elif k == 1:
                recs.append(record("message.received", x, ack=True))
            elif k == 2:
                recs.append(record("message.received", y, ack=(i % 2 == 0)))
            elif k == 3:
                recs.append(record("system.notice", ack=True))        # ack broadcast
            else:
                recs.append(record("system.notice"))                  # non-ack broadcast
        self.publish_many(recs)
        self.fence(xs + ys)
        for c in xs + ys:
            evs = [e for e in c.events if e.get("eventType") != FENCE]
            seqs = [e["seq"] for e in evs if "seq" in e]
            self.assertEqual(len(seqs), len([e for e in evs if e.get("requiresAck")
                                             or e.get("orchestratorId")]),
                             "%r: targeted or ack events without seq: %s" % (c, evs[:5]))
            self.assertTrue(all(b > a for a, b in zip(seqs, seqs[1:])),
                            "%r: seqs not strictly increasing: %s" % (c, seqs))
            for e in evs:
                if e.get("eventType") == "system.notice" and not e.get("requiresAck"):
                    self.assertNotIn("seq", e, "non-ack broadcast with seq: %s" % e)
        # Both connections of x: same events, same seqs.
        self.assertEqual([(e["eventId"], e.get("seq")) for e in xs[0].events],
                         [(e["eventId"], e.get("seq")) for e in xs[1].events])
        # Queued: x's and y's ack events and the ack broadcasts, each
        # orchestrator with its own seq for a broadcast.
        ack_b = [r["id"] for r in recs if r["type"] == "system.notice" and r.get("requiresAck")]
        for orch, conns in ((x, xs), (y, ys)):
            q = self.redis.command("ZRANGE", QUEUE_EVENTS + orch, 0, -1, "WITHSCORES")
            scores = dict(zip(q[0::2], (int(float(s)) for s in q[1::2])))
            for eid in ack_b:
                self.assertIn(eid, scores, "ack broadcast %s not queued for %s" % (eid, orch))
                self.assertEqual(conns[0].event(eid)["seq"], scores[eid],
                                 "delivered seq != queued seq for %s" % eid)


class PriorityTest(EventTestCase):

    def test_high_priority_jumps_a_full_send_queue(self):
        try:
            with open("/proc/sys/net/ipv4/tcp_wmem") as f:
                wmem_max = int(f.read().split()[2])
        except (OSError, ValueError, IndexError):
            wmem_max = 4 << 20
        if wmem_max > (16 << 20):
            self.skipTest("tcp_wmem max %d: the kernel could hold the whole backlog" % wmem_max)
        self.start_stack(max_send_queue="128m", max_event_size="64k")
        a = self.orch
        size = 16 * 1024
        # The backlog must exceed what the kernel can buffer (server send
        # buffer <= tcp_wmem max, a 4 KiB receive buffer) by a margin of
        # >= 3 MiB that can only sit in orchd's send queue.
        n = (wmem_max + (3 << 20)) // size + 1
        pc = ProtoClient.__new__(ProtoClient)
        pc.t, pc.log = self, []
        pc.ws = WsClient.open(self.o.port, path=WS_PATH, timeout=5.0, rcvbuf=4096)
        self.addCleanup(pc.ws.close)
        msg = pc.auth(self.token(orch=a), "d-slow", a)
        self.assertEqual(msg["type"], "auth_success", json.dumps(msg))
        slow = EvClient(self, pc, msg["payload"], a, "d-slow", self.org, "slow reader")
        slow.subscribe(["*"])
        lows = [record("message.received", a, priority=-50,
                       payload={"i": i, "blob": os.urandom(size // 2).hex()})
                for i in range(n)]
        t0 = time.monotonic()
        self.publish_many(lows)
        # Let the relay and the worker queue all of them (the client reads nothing).
        time.sleep(1.5)
        high = record("message.received", a, priority=90, payload={"urgent": True})
        self.publish(high)
        time.sleep(0.5)
        self.assertTrue(slow.wait_ids([e["id"] for e in lows] + [high["id"]], 60),
                        "not every event arrived (got %d of %d)%s"
                        % (len(slow.events), n + 1, self.diag()))
        order = slow.ids()
        pos = order.index(high["id"])
        after = len(order) - 1 - pos
        sys.stderr.write("\n  priority: %d low events of %d KiB (%.1f MiB), the high one "
                         "arrived at position %d (%d low events after it), %.1fs\n"
                         % (n, size // 1024, n * size / 1048576.0, pos, after,
                            time.monotonic() - t0))
        self.check_event(slow, high)
        # Lows stay in publish order.
        lo = [i for i in order if i != high["id"]]
        self.assertEqual(lo, [e["id"] for e in lows], "low-priority events reordered")
        self.assertGreaterEqual(after, (3 << 20) // size // 2,
                                "the priority-90 event did not jump the send queue: "
                                "%d of %d low events came after it" % (after, n))


# ============================================================================
# the durable queue and replay


class QueueTest(EventTestCase):

    def test_offline_queue_then_replay_before_live_then_resume_from(self):
        self.start_stack()
        a = self.orch
        acks = [record("message.received", a, ack=True) for i in range(4)]
        plain = record("message.received", a)          # no ack, queued (no connection)
        for e in acks[:2] + [plain] + acks[2:]:
            self.publish(e)
        order = [e["id"] for e in acks[:2] + [plain] + acks[2:]]
        self.wait_zcard(a, 5)
        self.assertEqual(self.queued_ids(a), order, "queue not in publish (seq) order")
        self.assertEqual(self.redis.command("HLEN", QUEUE_BODIES + a), 5)
        ttl = self.redis.command("TTL", QUEUE_EVENTS + a)
        self.assertGreater(ttl, 6 * 86400, "queue TTL %s, want ~7 days" % ttl)
        # Reconnect: replay of all 5, in seq order, before a live event.
        c = self.connect(a, types=None, expect_queued=5)
        self.assertIs(c.auth.get("recovered"), True, c.auth)
        c.subscribe(["*"])   # replayed events may come before or after `subscribed`
        live = record("message.received", a)
        self.publish(live)
        self.assertTrue(c.wait_ids(order + [live["id"]], 5),
                        "replay + live: got %s%s" % (c.ids(), self.diag()))
        self.assertEqual(c.ids(), order + [live["id"]], "replay not first, or not in seq order")
        seqs = [e["seq"] for e in c.events]
        self.assertTrue(all(b > a_ for a_, b in zip(seqs, seqs[1:])), seqs)
        for e in acks:
            self.check_event(c, e)
        self.check_event(c, plain)
        # The live one was not queued (a connection existed).
        self.assertNotIn(live["id"], self.queued_ids(a))
        # Ack the first two: they leave the queue.
        c.ack([acks[0]["id"], acks[1]["id"]])
        self.assertTrue(c.quiet(0.3), "ack was answered: %s" % c.msgs[-1:])
        self.assertTrue(wait_for(lambda: not ({acks[0]["id"], acks[1]["id"]}
                                              & set(self.queued_ids(a))), 3.0),
                        "acked events still queued: %s" % self.queued_ids(a))
        c.pc.close()
        # resumeFrom = seq of acks[2]: only acks[3] is replayed.
        resume = c.event(acks[2]["id"])["seq"]
        c2 = self.connect(a, types=None, resume=resume, expect_queued=1)
        self.assertTrue(c2.wait_ids([acks[3]["id"]], 5), "resume: got %s" % c2.ids())
        self.assertTrue(c2.quiet(0.3), "more than the events after resumeFrom: %s"
                        % c2.msgs[-1:])
        self.assertEqual(c2.ids(), [acks[3]["id"]])
        self.assertEqual(c2.events[0]["seq"], c.event(acks[3]["id"])["seq"])
        # resumeFrom 0 (or absent): everything still queued.
        still = [i for i in self.queued_ids(a)]
        c3 = self.connect(a, types=None, resume=0, expect_queued=len(still))
        self.assertTrue(c3.wait_ids(still, 5))
        self.assertEqual(c3.ids(), still)

    def test_replay_filtered_by_scope_and_daemon_not_by_subscription(self):
        self.start_stack()
        a = self.orch
        m = record("message.received", a, ack=True)
        ch = record("channel.created", a, ack=True)
        to_d1 = record("presence.updated", a, ack=True, daemon="daemon-1")
        sysn = record("system.notice", a, ack=True)
        for e in (m, ch, to_d1, sysn):
            self.publish(e)
        self.wait_zcard(a, 4)
        # messages:read only, daemon-2: message + system (no subscription at all).
        c = self.connect(a, daemon="daemon-2", scopes=["messages:read"], types=None)
        self.assertTrue(c.wait_ids([m["id"], sysn["id"]], 5), "got %s" % c.ids())
        self.assertTrue(c.quiet(0.3), "replay not filtered: %s" % c.ids())
        self.assertEqual(c.ids(), [m["id"], sysn["id"]])
        self.assertEqual(c.auth.get("queued"), 2, "queued should count what is replayed: %s"
                         % c.auth)
        # daemon-1 with every scope: all four.
        c1 = self.connect(a, daemon="daemon-1", types=None, expect_queued=4)
        self.assertTrue(c1.wait_ids([e["id"] for e in (m, ch, to_d1, sysn)], 5),
                        "got %s" % c1.ids())
        self.check_event(c1, to_d1)
        # Replay acked nothing.
        self.assertEqual(self.zcard(a), 4)

    def test_non_ack_targeted_queued_only_without_connection(self):
        self.start_stack()
        a, b = "orch-on-" + self.orch, "orch-off-" + self.orch
        ca = self.connect(a)
        ea, eb = record("message.received", a), record("message.received", b)
        self.publish(ea)
        self.publish(eb)
        self.fence([ca])
        self.assert_got(ca, [ea["id"]])
        self.wait_zcard(b, 1)
        self.assertEqual(self.zcard(a), 0, "non-ack event for a connected orchestrator queued")
        # Ack broadcast: queued for the connected orchestrator only.
        bc = record("system.notice", ack=True)
        self.publish(bc)
        self.fence([ca])
        self.assertEqual(self.queued_ids(a), [bc["id"]])
        self.assertEqual(self.queued_ids(b), [eb["id"]],
                         "ack broadcast queued for an orchestrator with no connection")
        cb = self.connect(b, types=None, expect_queued=1)
        self.assertTrue(cb.wait_ids([eb["id"]], 5))
        self.check_event(cb, eb)

    def test_queue_cap_evicts_oldest(self):
        self.start_stack(queue_max_events=5)
        a = self.orch
        evs = [record("message.received", a, ack=(i % 2 == 0)) for i in range(8)]
        for e in evs:
            self.publish(e)
        self.assertTrue(wait_for(lambda: self.queued_ids(a) == [e["id"] for e in evs[3:]],
                                 3.0), "queue %s, want the last 5 %s%s"
                        % (self.queued_ids(a), [e["id"] for e in evs[3:]], self.diag()))
        self.assertEqual(sorted(self.redis.command("HKEYS", QUEUE_BODIES + a)),
                         sorted(e["id"] for e in evs[3:]))
        c = self.connect(a, types=None, expect_queued=5)
        self.assertTrue(c.wait_ids([e["id"] for e in evs[3:]], 5))
        self.assertTrue(c.quiet(0.3))
        self.assertEqual(c.ids(), [e["id"] for e in evs[3:]])

    def test_queue_retention_expires_the_keys(self):
        self.start_stack(queue_retention="2s")
        a = self.orch
        for i in range(3):
            self.publish(record("message.received", a, ack=True))
        self.wait_zcard(a, 3)
        for k in (QUEUE_EVENTS + a, QUEUE_BODIES + a):
            ttl = self.redis.command("PTTL", k)
            self.assertTrue(0 < ttl <= 2000, "PTTL %s = %s, want (0, 2000]" % (k, ttl))
        gone = wait_for(lambda: self.redis.command("EXISTS", QUEUE_EVENTS + a,
                                                   QUEUE_BODIES + a) == 0, 4.0, 0.1)
        self.assertTrue(gone, "queue keys still there after their retention: %s"
                        % self.redis.command("KEYS", "daemon:*"))
        c = self.connect(a, types=None, expect_queued=0)
        self.assertTrue(c.quiet(0.3))

    def test_ack_over_websocket(self):
        self.start_stack()
        a = self.orch
        c, c2 = self.connect(a), self.connect(a)
        evs = [record("message.received", a, ack=True) for _ in range(6)]
        for e in evs:
            self.publish(e)
        self.assertTrue(c.wait_ids([e["id"] for e in evs], 5))
        self.assertTrue(c2.wait_ids([e["id"] for e in evs], 5))
        for e in evs:
            self.check_event(c, e)
        self.assertEqual(self.queued_ids(a), [e["id"] for e in evs],
                         "requiresAck events not queued before delivery")
        # One connection acks 4 (and an unknown id): gone for the orchestrator.
        c.ack([e["id"] for e in evs[:4]] + ["never-published"])
        self.assertTrue(c.quiet(0.3), "ack was answered: %s" % c.msgs[-1:])
        self.assertTrue(wait_for(lambda: self.queued_ids(a) == [e["id"] for e in evs[4:]],
                                 3.0), "after ack: %s" % self.queued_ids(a))
        self.assertEqual(sorted(self.redis.command("HKEYS", QUEUE_BODIES + a)),
                         sorted(e["id"] for e in evs[4:]))
        c2.ack([e["id"] for e in evs[4:]])
        self.wait_zcard(a, 0)
        self.assertEqual(self.redis.command("HLEN", QUEUE_BODIES + a), 0)
        # Nothing is replayed afterwards.
        c3 = self.connect(a, types=None, expect_queued=0)
        self.assertTrue(c3.quiet(0.3))

    def test_http_get_and_delete_events(self):
        self.start_stack()
        a = self.orch
        now = time.time()
        evs = [record("message.received", a, ack=True, timestamp=iso(now - 30 + 10 * i))
               for i in range(3)]
        for e in evs:
            self.publish(e)
        self.wait_zcard(a, 3)
        tok = self.token(orch=a)
        hdrs = {"Authorization": "Bearer " + tok}

        def get(query):
            r = http_request(self.o.port, "GET", "/api/daemon/events" + query, headers=hdrs)
            self.assertEqual(r.status, 200, "%s: %r%s" % (query, r.body[:300], self.diag()))
            doc = r.json()
            self.assertIsInstance(doc.get("events"), list, doc)
            return doc["events"]
        with self.subTest("GET since"):
            got = get("?since=%s&limit=10" % iso(now - 25))
            self.assertEqual([e.get("eventId") for e in got], [evs[1]["id"], evs[2]["id"]],
                             json.dumps(got)[:500])
            for p, e in zip(got, evs[1:]):
                self.assertEqual(p.get("eventType"), e["type"])
                self.assertEqual(p.get("data"), e["payload"])
                self.assertIs(p.get("requiresAck"), True)
                self.assertIsInstance(p.get("seq"), int)
                self.assertLess(abs(to_ms(p["occurredAt"]) - to_ms(e["timestamp"])), 1.5)
        with self.subTest("GET limit"):
            got = get("?since=%s&limit=1" % iso(now - 3600))
            self.assertEqual(len(got), 1, got)
            self.assertEqual(got[0].get("eventId"), evs[0]["id"])
        with self.subTest("GET without a token"):
            r = http_request(self.o.port, "GET", "/api/daemon/events?since=%s" % iso(now - 60))
            self.assertEqual(r.status, 401, r)
        with self.subTest("GET another orchestrator's token"):
            r = http_request(self.o.port, "GET", "/api/daemon/events?since=%s" % iso(now - 60),
                             headers={"Authorization": "Bearer " + self.token(orch="other")})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json().get("events"), [])
        with self.subTest("DELETE"):
            body = json.dumps({"eventIds": [evs[0]["id"], evs[2]["id"]]}).encode()
            r = http_request(self.o.port, "DELETE", "/api/daemon/events", body=body,
                             headers=dict(hdrs, **{"Content-Type": "application/json"}))
            self.assertEqual(r.status, 200, "%r%s" % (r.body[:300], self.diag()))
            self.assertEqual(r.json(), {"success": True, "acknowledged": 2})
            self.assertEqual(self.queued_ids(a), [evs[1]["id"]])
        with self.subTest("DELETE without a token"):
            body = json.dumps({"eventIds": [evs[1]["id"]]}).encode()
            r = http_request(self.o.port, "DELETE", "/api/daemon/events", body=body,
                             headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 401, r)
            self.assertEqual(self.queued_ids(a), [evs[1]["id"]])
        with self.subTest("DELETE bad body"):
            r = http_request(self.o.port, "DELETE", "/api/daemon/events", body=b'{"eventIds":3}',
                             headers=dict(hdrs, **{"Content-Type": "application/json"}))
            self.assertEqual(r.status, 400, r)

    def test_same_event_published_twice(self):
        """A requiresAck record published again while it is queued changes
        nothing: one delivery, one seq.  A record without requiresAck has
        no id memory behind it (it is not queued while its orchestrator is
        connected): each publication is a delivery, with a seq of its own
        (docs/PROTOCOL.md, "Duplicates")."""
        self.start_stack()
        a = self.orch
        c = self.connect(a)
        for name, e, want in (("without requiresAck", record("message.received", a), 2),
                              ("with requiresAck", record("message.received", a, ack=True),
                               1)):
            with self.subTest(name):
                self.publish(e)
                self.publish(e)
                self.fence([c])
                seqs = [m.get("seq") for m in c.events if m.get("eventId") == e["id"]]
                self.assertEqual(len(seqs), want, "%s published twice, received %s"
                                 % (e["id"], [(m.get("eventId"), m.get("seq"))
                                              for m in c.events]))
                self.assertEqual(len(set(seqs)), want, seqs)

    def test_replayed_event_republished_live_delivered_once(self):
        self.start_stack()
        b = "orch-b-" + self.orch
        q = record("message.received", b, ack=True)
        self.publish(q)
        self.wait_zcard(b, 1)
        cb = self.connect(b, types=["*"])
        self.publish(q)
        self.fence([cb])
        self.assertTrue(cb.quiet(0.3))
        self.assert_got(cb, [q["id"]])


# ============================================================================
# bad records, /readyz, the relay process, the stream


class RelayTest(EventTestCase):

    def test_bad_records_counted_logged_once_per_kind_and_skipped(self):
        self.start_stack(max_event_size="4k")
        a = self.orch
        c = self.connect(a)
        before = self.relay_stats()
        self.assertEqual(before.get("invalid"), 0, before)
        other_org = "org-other-" + uuid.uuid4().hex[:6]
        good = lambda **kw: record("message.received", a, **kw)  # noqa: E731
        bad = [
            ("too_big", good(payload={"x": "y" * 5000}), None),
            ("too_big", json.dumps(good()) + " " * 5000, None),
            ("json", "not json {", None),
            ("json", "[1, 2, 3]", None),
            ("id", good(raw={"id": None}), None),
            ("id", good(raw={"id": ""}), None),
            ("type", good(raw={"type": None}), None),
            ("type", good(raw={"type": "message.*"}), None),
            ("target", record("message.received", None, daemon="daemon-1"), None),
            ("target", good(org=other_org), self.org),       # org != channel's org
            ("payload", good(raw={"payload": None}), None),
            ("payload", good(raw={"payload": "text"}), None),
            ("field", good(priority=1000), None),
            ("field", good(raw={"requiresAck": "yes"}), None),
        ]
        for kind, rec, org in bad:
            self.publish(rec, org=org)
        ok = good(ack=True)
        self.publish(ok)
        self.fence([c])
        self.assert_got(c, [ok["id"]])
        self.check_event(c, ok)
        # Nothing of the bad ones was queued either.
        self.assertEqual(self.queued_ids(a), [ok["id"]])
        stats = wait_for(lambda: (lambda s: s if s.get("invalid") == len(bad) else None)(
            self.relay_stats()), 3.0) or self.relay_stats()
        self.assertEqual(stats.get("invalid"), len(bad), "relay counters %s" % stats)
        self.assertGreaterEqual(stats.get("received", 0) - before.get("received", 0),
                                len(bad) + 2, stats)
        lines = [ln for ln in self.o.log_text().splitlines() if "invalid event record" in ln]
        kinds = {k for k, _, _ in bad}
        self.assertGreaterEqual(len(lines), 1, "no 'invalid event record' logged" + self.diag())
        self.assertLessEqual(len(lines), len(kinds), "logged more than once per kind:\n%s"
                             % "\n".join(lines))
        # The record's text is never quoted.
        self.assertNotIn("not json {", "\n".join(lines))

    def test_readyz_and_relay_process(self):
        self.start_stack()
        st, doc = self.readyz()
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc.get("status"), "ready", doc)
        relay = doc.get("relay")
        for f in ("subscribed", "pid", "received", "invalid", "routed", "queued", "dropped",
                  "reconnects"):
            self.assertIn(f, relay, "relay.%s missing: %s" % (f, doc))
        for f in ("pid", "received", "invalid", "routed", "queued", "dropped", "reconnects"):
            self.assertIsInstance(relay[f], int, "relay.%s: %s" % (f, doc))
        pid = relay["pid"]
        self.assertIn(pid, self.o.children(), "relay pid %d is not a child of the supervisor"
                      % pid)
        self.assertEqual(proc_comm(pid), "orchd-relay")
        self.assertNotIn(pid, self.workers())
        self.assertEqual(len(self.workers()), 2, "workers: %s" % self.workers())
        self.assertEqual(proc_stat(pid)[1], self.o.pid)
        # Counters move.
        c = self.connect(self.orch)
        e = record("message.received", self.orch, ack=True)
        self.publish(e)
        self.fence([c])
        after = wait_for(lambda: (lambda r: r if r["routed"] >= relay["routed"] + 2
                                  and r["queued"] >= relay["queued"] + 1 else None)(
            self.relay_stats()), 3.0) or self.relay_stats()
        self.assertGreaterEqual(after["received"], relay["received"] + 2, after)
        self.assertGreaterEqual(after["routed"], relay["routed"] + 2, after)
        self.assertGreaterEqual(after["queued"], relay["queued"] + 1, after)
        self.assertEqual(after["dropped"], 0, after)

    def test_stream_events(self):
        self.start_stack(event_stream="on")
        a = self.orch
        c = self.connect(a)
        evs = [record("message.received", a, ack=(i == 1)) for i in range(3)]
        for e in evs:
            self.xadd(e)
        bc = record("system.notice", org=self.org)
        self.xadd(bc)
        self.assertTrue(c.wait_ids([e["id"] for e in evs] + [bc["id"]], 5),
                        "stream events: got %s%s" % (c.ids(), self.diag()))
        for e in evs:
            self.check_event(c, e)
        self.check_event(c, bc, seq="none")
        # Pub/sub still works beside the stream.
        p = record("message.received", a)
        self.publish(p)
        self.fence([c])
        self.assert_got(c, [e["id"] for e in evs] + [bc["id"], p["id"]])
        # Offline: queued from the stream too.
        off = "orch-off-" + self.orch
        q = record("message.received", off, ack=True)
        self.xadd(q)
        self.wait_zcard(off, 1)
        self.assertTrue(wait_for(lambda: self.redis.command(
            "EXISTS", "daemon:stream:orchd-last-id"), 3.0),
            "no daemon:stream:orchd-last-id: %s" % self.redis.command("KEYS", "*"))


# ============================================================================
# drain (TERM, HUP)


class DrainTest(EventTestCase):

    def read_reconnect(self, c, timeout):
        msg = c.read_until(lambda m: m["type"] == "reconnect", timeout)
        self.assertIsNotNone(msg, "%r: no reconnect message within %.1fs (got %s)%s"
                             % (c, timeout, [m["type"] for m in c.msgs], self.diag()))
        return msg["payload"]

    def wait_close(self, c, timeout):
        try:
            c.read_until(lambda m: False, timeout)
        except CloseReceived as e:
            return e.code
        except ConnectionClosed as e:
            self.fail("%r: TCP closed without a close frame: %s" % (c, e))
        self.fail("%r: not closed within %.1fs" % (c, timeout))

    def test_term_sends_reconnect_then_closes_1001(self):
        self.start_stack(drain_timeout="2s", drain_reconnect_delay="1500ms")
        clients, _ = self.connect_spread(self.orch, 4)
        leaver = clients[0]
        t0 = time.monotonic()
        self.o.send_signal(signal.SIGTERM)
        delays = []
        for c in clients:
            p = self.read_reconnect(c, 2.0)
            self.assertEqual(p.get("reason"), "shutdown", p)
            self.assertIsInstance(p.get("delay"), int, p)
            self.assertTrue(0 <= p["delay"] <= 1500, "delay %s not in [0, 1500]" % p)
            delays.append(p["delay"])
        # One leaves at once: normal close.
        self.assertEqual(leaver.pc.close_handshake(), 1000)
        for c in clients[1:]:
            code = self.wait_close(c, 4.0)
            self.assertEqual(code, 1001)
            # The 1001 may come before the deadline (room for the close
            # handshake) but not at once: the daemon had time to leave.
            self.assertGreater(time.monotonic() - t0, 0.8, "closed before it could leave")
            self.assertLess(time.monotonic() - t0, 3.0, "closed after drain_timeout")
        self.o.wait_exit(5.0)
        self.note("reconnect delays %s", delays)

    def test_hup_reload_drains_old_workers_with_reason_reload(self):
        self.start_stack(drain_timeout="2s", drain_reconnect_delay="1s")
        old, _ = self.connect_spread(self.orch, 3)
        old_workers = set(self.o.worker_pids())
        self.o.send_signal(signal.SIGHUP)
        for c in old:
            p = self.read_reconnect(c, 3.0)
            self.assertEqual(p.get("reason"), "reload", p)
            self.assertTrue(0 <= p.get("delay", -1) <= 1000, p)
        # New workers take new connections, and the relay routes to them.
        self.assertTrue(wait_for(lambda: len(set(self.o.worker_pids()) - old_workers) >= 2,
                                 5.0), "no new workers after HUP%s" % self.diag())
        new = self.connect(self.orch, name="after reload")
        self.wait_relay()
        e = record("message.received", self.orch)
        self.publish(e)
        self.assertTrue(new.wait_ids([e["id"]], 3.0), "no event on a post-reload connection%s"
                        % self.diag())
        for c in old:
            self.assertEqual(self.wait_close(c, 4.0), 1001)


if __name__ == "__main__":
    unittest.main()
