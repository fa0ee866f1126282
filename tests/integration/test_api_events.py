"""GET and DELETE /api/daemon/events (PROTOCOL.md section 7) end to end:
the real orchd (2 workers) and a real redis-server (redisfix).

The relay that fills the durable queue is tested elsewhere; here the queue
is written straight into Redis in queue.c's layout (daemon:events:{orch}
id -> seq, daemon:eventbodies:{orch} id -> event_queue_body() JSON,
daemon:eventtimes:{orch} id -> timestamp ms, daemon:seq:{orch}), so these
tests pin that layout too.

Covered: the payloads (every section 4 field, exactly), seq order without
since, timestamp order and >= with since, limit, the token's filters
(daemonId, scopes) with paging past filtered events, stored bodies that do
not parse, DELETE (exactly the listed ids leave all three keys), every 400,
401 (no, bad, expired, revoked, refresh token), 403 (required_scopes), 405,
503 with Redis down, keep-alive, a 1000-event answer, and a client that
goes away while the queue is being read.

    cd tests/integration && ORCHD_BIN=.../orchd python3 -m unittest test_api_events -v
"""

import datetime
import json
import signal
import socket
import time
import unittest
import urllib.parse
import uuid

from harness import RawConn, http_request, wait_for
import tokens
from test_proto import REVOKED_SET, ProtoTestCase

PATH = "/api/daemon/events"
BASE_MS = 1795696496789  # 2026-11-26T12:34:56.789Z


def iso(ms):
    """Epoch ms -> '2026-11-26T12:34:56.789Z' (what orchd writes)."""
    dt = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def queue_body(ev):
    """event_queue_body(): the record in normal form, key order included."""
    out = {"id": ev["id"], "type": ev["type"], "orchestratorId": ev.get("orchestratorId", "")}
    for k in ("daemonId", "organizationId", "workspaceId", "channelId"):
        if ev.get(k):
            out[k] = ev[k]
    out["payload"] = ev.get("payload", {})
    out["timestamp"] = iso(ev["ts"])
    out["requiresAck"] = ev.get("requiresAck", False)
    out["priority"] = ev.get("priority", 0)
    return json.dumps(out, separators=(",", ":"))


def expected_payload(ev, seq):
    """The `event` message's payload for ev (section 4 + extensions)."""
    p = {"eventId": ev["id"], "eventType": ev["type"], "data": ev.get("payload", {}),
         "requiresAck": ev.get("requiresAck", False), "seq": seq,
         "priority": ev.get("priority", 0)}
    if ev.get("channelId"):
        p["channelId"] = ev["channelId"]
    p["occurredAt"] = iso(ev["ts"])
    for k in ("orchestratorId", "organizationId", "workspaceId", "daemonId"):
        if ev.get(k):
            p[k] = ev[k]
    return p


class EventsApiTest(ProtoTestCase):

    # ---- helpers ------------------------------------------------------

    def keys(self, orch=None):
        o = orch or self.orch
        return ("daemon:events:" + o, "daemon:eventbodies:" + o,
                "daemon:eventtimes:" + o, "daemon:seq:" + o)

    def enqueue(self, ev, seq, orch=None, body=None):
        """Queue ev (a dict: id, type, ts and record fields) with seq, as
        queue_enqueue() would have."""
        z, h, t, s = self.keys(orch)
        self.redis.command("ZADD", z, seq, ev["id"])
        self.redis.command("HSET", h, ev["id"], body if body is not None else queue_body(ev))
        self.redis.command("ZADD", t, ev["ts"], ev["id"])
        cur = int(self.redis.command("GET", s) or 0)
        if seq > cur:
            self.redis.command("SET", s, seq)

    def event(self, i, **kw):
        ev = {"id": "evt-%04d" % i, "type": "message.received", "ts": BASE_MS + 1000 * i,
              "orchestratorId": self.orch, "organizationId": self.org,
              "payload": {"n": i, "text": "hello \u00e9 \"%d\"" % i}}
        ev.update(kw)
        return ev

    def get(self, query=None, token=None, headers=None, expect=200):
        path = PATH
        if query:
            path += "?" + (query if isinstance(query, str) else urllib.parse.urlencode(query))
        hdrs = {}
        if token is not False:
            hdrs["Authorization"] = "Bearer " + (token or self.token())
        hdrs.update(headers or {})
        r = http_request(self.o.port, "GET", path, headers=hdrs)
        self.assertEqual(r.status, expect, "%r%s" % (r, self.diag() if r.status == 500 else ""))
        self.assertIn("application/json", r.header("content-type", ""), r)
        return r.json()

    def delete(self, body, token=None, expect=200):
        hdrs = {"Content-Type": "application/json"}
        if token is not False:
            hdrs["Authorization"] = "Bearer " + (token or self.token())
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        r = http_request(self.o.port, "DELETE", PATH, headers=hdrs, body=body)
        self.assertEqual(r.status, expect, r)
        self.assertIn("application/json", r.header("content-type", ""), r)
        return r.json()

    def assert_error_doc(self, doc, code=None, mentions=None):
        self.assertIsInstance(doc.get("error"), str, doc)
        self.assertIsInstance(doc.get("code"), str, doc)
        if code:
            self.assertEqual(doc["code"], code, doc)
        if mentions:
            self.assertIn(mentions, doc["error"], doc)

    def ids(self, doc):
        self.assertEqual(list(doc), ["events"], doc)
        return [e["eventId"] for e in doc["events"]]

    # ---- GET ----------------------------------------------------------

    def test_payloads_in_seq_order(self):
        self.start_stack()
        evs = [
            self.event(1, daemonId="d-1", workspaceId="ws-1", channelId="C1",
                       requiresAck=True, priority=-7,
                       payload={"nested": {"a": [1, 2.5, None, True]}, "s": "\u2028\n"}),
            self.event(2, type="system.notice", orchestratorId="", organizationId="",
                       payload={}),
            self.event(3, type="vp.online", priority=100),
            self.event(4, type="presence.updated", ts=BASE_MS - 5000),  # older: seq decides
        ]
        seqs = [5001, 5002, 5010, 5011]
        for ev, seq in zip(evs, seqs):
            self.enqueue(ev, seq)
        doc = self.get()
        self.assertEqual(doc, {"events": [expected_payload(e, s) for e, s in zip(evs, seqs)]})
        # A broadcast's empty target ids are left out, not written empty.
        self.assertNotIn("orchestratorId", doc["events"][1])
        self.assertNotIn("channelId", doc["events"][1])
        # The queue is only read.
        self.assertEqual(self.redis.command("ZCARD", self.keys()[0]), 4)

    def test_empty_queue(self):
        self.start_stack()
        self.assertEqual(self.get(), {"events": []})
        self.assertEqual(self.get({"since": iso(BASE_MS)}), {"events": []})

    def test_since_and_limit(self):
        self.start_stack()
        # seq order differs from time order: since= sorts by time.
        evs = [self.event(i, ts=BASE_MS + 1000 * (10 - i)) for i in range(10)]
        for i, ev in enumerate(evs):
            self.enqueue(ev, 100 + i)
        by_time = [e["id"] for e in sorted(evs, key=lambda e: e["ts"])]
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS)})), by_time)
        # >= since: the event at exactly since is in.
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS + 4000)})), by_time[3:])
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS + 4001)})), by_time[4:])
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS + 60000)})), [])
        # Limit, with and without since.
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS + 4000), "limit": 2})),
                         by_time[3:5])
        self.assertEqual(self.ids(self.get({"limit": 3})), [e["id"] for e in evs[:3]])
        self.assertEqual(self.ids(self.get({"limit": 1})), [evs[0]["id"]])
        self.assertEqual(len(self.get({"limit": 1000})["events"]), 10)
        # Other forms of the same instant: offset (its '+' as %2B or as a
        # bare '+', which a query string turns into a space), lower-case
        # letters, microseconds.
        t = BASE_MS + 4000
        dt = datetime.datetime.fromtimestamp(t / 1000, datetime.timezone.utc)
        local = dt.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
        text = local.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+02:00"
        for q in ("since=" + urllib.parse.quote(text, safe=""), "since=" + text,
                  "since=" + iso(t).lower(), "since=" + iso(t)[:-1] + "000Z"):
            with self.subTest(q):
                self.assertEqual(self.ids(self.get(q)), by_time[3:])
        # Unknown parameters are ignored; the first of a repeated one wins.
        self.assertEqual(self.ids(self.get("limit=2&limit=5&x=y")), [e["id"] for e in evs[:2]])

    def test_same_time_paging_order(self):
        """Events of one millisecond come in id order (the time index's)."""
        self.start_stack()
        evs = [self.event(i, ts=BASE_MS, id="same-%02d" % (20 - i)) for i in range(20)]
        for i, ev in enumerate(evs):
            self.enqueue(ev, 10 + i)
        got = self.ids(self.get({"since": iso(BASE_MS)}))
        self.assertEqual(got, sorted(e["id"] for e in evs))

    def test_bad_query(self):
        self.start_stack()
        for q in ("since=", "since=yesterday", "since=2026-11-26", "since=2026-13-01T00:00:00Z",
                  "since=2026-11-26T12:34:56", "since=1795696496789", "since=%zz",
                  "since=" + "9" * 100,
                  "limit=", "limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1.5",
                  "limit=+5", "limit=99999999999999999999999"):
            with self.subTest(q):
                doc = self.get(q, expect=400)
                self.assert_error_doc(doc, "INVALID_MESSAGE",
                                      "since" if q.startswith("since") else "limit")
        # 401 comes before 400: the query says nothing to an unknown caller.
        self.get("limit=0", token=False, expect=401)

    def test_daemon_and_scope_filters(self):
        self.start_stack()
        evs = [
            self.event(1),                                   # messages:read, no daemon
            self.event(2, daemonId=self.daemon),             # mine
            self.event(3, daemonId="other-daemon"),          # a sibling's
            self.event(4, type="channel.created"),           # channels:read
            self.event(5, type="system.maintenance"),        # no scope needed
            self.event(6, type="call.started", daemonId=self.daemon),  # calls:join
        ]
        for i, ev in enumerate(evs):
            self.enqueue(ev, 1 + i)
        every = [e["id"] for e in evs]
        # A token without daemonId is the whole orchestrator's.
        self.assertEqual(self.ids(self.get()), every)
        mine = self.token(daemon=self.daemon)
        self.assertEqual(self.ids(self.get(token=mine)),
                         ["evt-0001", "evt-0002", "evt-0004", "evt-0005", "evt-0006"])
        few = self.token(daemon=self.daemon, scopes=["messages:read"])
        self.assertEqual(self.ids(self.get(token=few)), ["evt-0001", "evt-0002", "evt-0005"])
        none = self.token(scopes=[])
        self.assertEqual(self.ids(self.get(token=none)), ["evt-0005"])
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS)}, token=few)),
                         ["evt-0001", "evt-0002", "evt-0005"])

    def test_filtered_events_do_not_starve(self):
        """A queue head of a sibling's events: the limit counts what the
        token may see, read past the others (both orders)."""
        self.start_stack()
        for i in range(1500):
            self.enqueue(self.event(i, daemonId="sibling", ts=BASE_MS + i), 10 + i)
        self.enqueue(self.event(9000, daemonId=self.daemon, ts=BASE_MS + 1600), 9000)
        self.enqueue(self.event(9001, ts=BASE_MS + 1601), 9001)
        tok = self.token(daemon=self.daemon)
        self.assertEqual(self.ids(self.get({"limit": 1}, token=tok)), ["evt-9000"])
        self.assertEqual(self.ids(self.get({"limit": 10}, token=tok)), ["evt-9000", "evt-9001"])
        self.assertEqual(self.ids(self.get({"limit": 10, "since": iso(BASE_MS)}, token=tok)),
                         ["evt-9000", "evt-9001"])
        # Many events of one millisecond, across the first page's end (the
        # next page starts again at that millisecond; more than a page of
        # one millisecond cannot be read past: queue_fetch_since() has no
        # offset).
        for i in range(900):
            self.enqueue(self.event(20000 + i, daemonId="sibling", ts=BASE_MS + 50000,
                                    id="t-%05d" % i), 20000 + i)
        self.enqueue(self.event(30000, ts=BASE_MS + 50000, id="u-mine"), 30000)
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS + 50000)}, token=tok)),
                         ["u-mine"])

    def test_bodies_that_do_not_parse_are_skipped(self):
        self.start_stack()
        evs = [self.event(i) for i in range(1, 6)]
        for i, ev in enumerate(evs):
            body = None
            if i == 1:
                body = "{not json"
            elif i == 3:
                body = json.dumps({"id": ev["id"], "type": "*", "payload": {}})
            self.enqueue(ev, 1 + i, body=body)
        want = ["evt-0001", "evt-0003", "evt-0005"]
        self.assertEqual(self.ids(self.get()), want)
        self.assertEqual(self.ids(self.get({"since": iso(BASE_MS)})), want)
        self.assertEqual(self.ids(self.get({"limit": 2})), want[:2])
        # Logged at warn level once per worker, the id named.
        log = self.o.log_text()
        self.assertRegex(log, r"queued event evt-000[24] of %s does not parse" % self.orch)
        warns = [line for line in log.splitlines()
                 if "does not parse" in line and "further ones" in line]
        self.assertLessEqual(len(warns), 2, "\n".join(warns))  # 2 workers

    def test_large_answer(self):
        self.start_stack()
        blob = "x" * 1000
        for i in range(1000):
            self.enqueue(self.event(i, payload={"blob": blob, "i": i}), 1 + i)
        r = http_request(self.o.port, "GET", PATH + "?limit=1000",
                         headers={"Authorization": "Bearer " + self.token()}, timeout=15)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(int(r.header("content-length")), len(r.body))
        evs = r.json()["events"]
        self.assertEqual(len(evs), 1000)
        self.assertEqual([e["data"]["i"] for e in evs], list(range(1000)))
        self.assertEqual(len(self.get()["events"]), 100)  # the default limit

    def test_keep_alive(self):
        self.start_stack()
        self.enqueue(self.event(1), 1)
        hdrs = {"Authorization": "Bearer " + self.token()}
        with RawConn(self.o.port) as c:
            for _ in range(3):
                r = c.request("GET", PATH, headers=hdrs)
                self.assertEqual(r.status, 200, r)
                self.assertNotEqual(r.header("connection", ""), "close", r)
                self.assertEqual(self.ids(r.json()), ["evt-0001"])
            body = json.dumps({"eventIds": ["evt-0001"]}).encode()
            r = c.request("DELETE", PATH, headers=hdrs, body=body)
            self.assertEqual(r.json(), {"success": True, "acknowledged": 1})
            # Pipelined: the second waits for the first's queue read.
            c.send(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                    % (PATH, self.token())) * 2)
            for _ in range(2):
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), {"events": []})

    # ---- DELETE -------------------------------------------------------

    def test_delete_removes_exactly_the_listed_ids(self):
        self.start_stack()
        evs = [self.event(i) for i in range(1, 6)]
        for i, ev in enumerate(evs):
            self.enqueue(ev, 1 + i)
        z, h, t, _ = self.keys()
        doc = self.delete({"eventIds": ["evt-0002", "evt-0004", "nope", "evt-0002"]})
        self.assertEqual(doc, {"success": True, "acknowledged": 2})
        left = ["evt-0001", "evt-0003", "evt-0005"]
        self.assertEqual(self.redis.command("ZRANGE", z, 0, -1), left)
        self.assertEqual(sorted(self.redis.command("HKEYS", h)), left)
        self.assertEqual(self.redis.command("ZRANGE", t, 0, -1), left)
        self.assertEqual(self.ids(self.get()), left)
        # Again: unknown now, counted 0, no error.
        self.assertEqual(self.delete({"eventIds": ["evt-0002"]}),
                         {"success": True, "acknowledged": 0})
        # Another orchestrator's token acks in its own queue only.
        other = self.token(orch="orch-other")
        self.assertEqual(self.delete({"eventIds": left}, token=other),
                         {"success": True, "acknowledged": 0})
        self.assertEqual(self.redis.command("ZCARD", z), 3)
        # Unknown members are ignored; a full batch at the maximum.
        ids = left + ["x-%d" % i for i in range(997)]
        self.assertEqual(self.delete({"eventIds": ids, "extra": [1]}),
                         {"success": True, "acknowledged": 3})
        self.assertEqual(self.redis.command("ZCARD", z), 0)
        self.assertEqual(self.redis.command("HLEN", h), 0)

    def test_delete_bad_bodies(self):
        self.start_stack()
        self.enqueue(self.event(1), 1)
        cases = [
            ("empty", b"", None),
            ("not JSON", b"{nope", None),
            ("array", b"[\"evt-0001\"]", None),
            ("no eventIds", {}, "eventIds"),
            ("eventIds null", {"eventIds": None}, "eventIds"),
            ("eventIds a string", {"eventIds": "evt-0001"}, "eventIds"),
            ("eventIds an object", {"eventIds": {"a": "evt-0001"}}, "eventIds"),
            ("empty array", {"eventIds": []}, "eventIds"),
            ("1001 ids", {"eventIds": ["e%d" % i for i in range(1001)]}, "eventIds"),
            ("a number", {"eventIds": ["evt-0001", 7]}, "eventIds[1]"),
            ("null entry", {"eventIds": [None]}, "eventIds[0]"),
            ("empty id", {"eventIds": ["evt-0001", ""]}, "eventIds[1]"),
            ("129 bytes", {"eventIds": ["a" * 129]}, "eventIds[0]"),
            ("NUL", {"eventIds": ["evt\u00000001"]}, "eventIds[0]"),
            ("nested", {"eventIds": [["evt-0001"]]}, "eventIds[0]"),
        ]
        for name, body, field in cases:
            with self.subTest(name):
                doc = self.delete(body, expect=400)
                self.assert_error_doc(doc, mentions=field)
                self.assertIn(doc["code"], ("INVALID_MESSAGE", "LIMIT_EXCEEDED"), doc)
        self.assertEqual(self.delete({"eventIds": ["a" * 128]}),
                         {"success": True, "acknowledged": 0})
        self.assertEqual(self.redis.command("ZCARD", self.keys()[0]), 1)

    # ---- auth, methods, outages ---------------------------------------

    def test_auth_errors(self):
        self.start_stack()
        self.enqueue(self.event(1), 1)
        revoked = str(uuid.uuid4())
        self.redis.command("SADD", REVOKED_SET, revoked)
        tok = self.token()
        for name, auth, code in [
                ("no Authorization", None, "AUTH_FAILED"),
                ("empty Bearer", "Bearer ", "AUTH_FAILED"),
                ("not Bearer", "Basic " + tokens.b64url("a:b"), "AUTH_FAILED"),
                ("garbage token", "Bearer garbage", "AUTH_FAILED"),
                ("bad signature", "Bearer " + tokens.tamper(tok), "AUTH_FAILED"),
                ("other secret", "Bearer " + self.token(secret="nope" * 8), "AUTH_FAILED"),
                ("expired", "Bearer " + self.token(exp_in=-300), "TOKEN_EXPIRED"),
                ("refresh token", "Bearer " + self.token(typ="refresh"), "AUTH_FAILED"),
                ("revoked jti", "Bearer " + self.token(jti=revoked), "TOKEN_REVOKED"),
                ("orchestrator id of 64 bytes", "Bearer " + self.token(orch="o" * 64),
                 "AUTH_FAILED")]:
            for method in ("GET", "DELETE"):
                with self.subTest(name, method=method):
                    hdrs = {"Content-Type": "application/json"}
                    if auth:
                        hdrs["Authorization"] = auth
                    r = http_request(self.o.port, method, PATH, headers=hdrs,
                                     body=json.dumps({"eventIds": ["evt-0001"]}).encode()
                                     if method == "DELETE" else b"")
                    self.assertEqual(r.status, 401, r)
                    self.assertEqual(r.header("www-authenticate"), "Bearer", r)
                    self.assert_error_doc(r.json(), code)
        self.assertEqual(self.redis.command("ZCARD", self.keys()[0]), 1)

    def test_required_scopes(self):
        self.start_stack(required_scopes="messages:read vp:status")
        self.enqueue(self.event(1), 1)
        lacking = self.token(scopes=["messages:read"])
        doc = self.get(token=lacking, expect=403)
        self.assert_error_doc(doc, "INSUFFICIENT_SCOPE", "vp:status")
        doc = self.delete({"eventIds": ["evt-0001"]}, token=lacking, expect=403)
        self.assert_error_doc(doc, "INSUFFICIENT_SCOPE")
        self.assertEqual(self.ids(self.get()), ["evt-0001"])

    def test_methods(self):
        self.start_stack()
        hdrs = {"Authorization": "Bearer " + self.token()}
        for method in ("POST", "PUT", "PATCH", "HEAD", "OPTIONS"):
            with self.subTest(method):
                r = http_request(self.o.port, method, PATH, headers=hdrs,
                                 body=b"{}" if method in ("POST", "PUT", "PATCH") else b"")
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header("allow"), "GET, DELETE", r)
        # The path is exact; a trailing slash is another resource.
        r = http_request(self.o.port, "GET", PATH + "/", headers=hdrs)
        self.assertEqual(r.status, 404, r)
        # Percent-encoded path: the same route.
        r = http_request(self.o.port, "GET", "/api/daemon/%65vents", headers=hdrs)
        self.assertEqual(r.status, 200, r)

    def test_body_too_large(self):
        self.start_stack(http_max_body_size="4k")
        body = json.dumps({"eventIds": ["e%05d" % i for i in range(1000)]}).encode()
        r = http_request(self.o.port, "DELETE", PATH, body=body,
                         headers={"Authorization": "Bearer " + self.token()})
        self.assertEqual(r.status, 413, r)

    def test_redis_down(self):
        self.start_stack(revocation_check="best-effort")
        self.enqueue(self.event(1), 1)
        self.redis.stop()
        # With a jti (the revocation check is skipped, best-effort) and
        # without: the queue itself is unavailable.
        for name, tok in (("jti", self.token()), ("no jti", self.token(jti=False))):
            with self.subTest(name):
                doc = self.get(token=tok, expect=503)
                self.assert_error_doc(doc, "UNAVAILABLE", "queue")
                doc = self.delete({"eventIds": ["evt-0001"]}, token=tok, expect=503)
                self.assert_error_doc(doc, "UNAVAILABLE", "queue")
                # Still checked first: a bad request is a 400.
                doc = self.get("limit=0", token=tok, expect=400)

    def test_redis_down_strict(self):
        self.start_stack()
        self.redis.stop()
        for method in ("GET", "DELETE"):
            with self.subTest(method):
                if method == "GET":
                    doc = self.get(expect=503)
                else:
                    doc = self.delete({"eventIds": ["a"]}, expect=503)
                self.assert_error_doc(doc, "UNAVAILABLE")

    def test_redis_returns(self):
        self.start_stack()
        self.redis.stop()
        self.get(expect=503)
        self.redis.start()
        self.enqueue(self.event(1), 1)
        self.assertTrue(wait_for(lambda: http_request(
            self.o.port, "GET", PATH,
            headers={"Authorization": "Bearer " + self.token()}).status == 200, 10.0),
            "no 200 after Redis came back" + self.diag())
        self.assertEqual(self.ids(self.get()), ["evt-0001"])

    def test_client_gone_while_reading(self):
        """Clients reset their connections while the queue read is in
        flight: the answers go nowhere; the worker lives on."""
        self.start_stack(revocation_check="off")
        self.enqueue(self.event(1), 1)
        pids = sorted(self.o.worker_pids())
        socks = self.requests_in_flight(8)
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST
        time.sleep(1.5)
        self.assertEqual(self.ids(self.get()), ["evt-0001"])
        self.assertEqual(sorted(self.o.worker_pids()), pids, "a worker died" + self.diag())

    def test_connection_closed_before_the_queue_answers(self):
        """A reload drains the old workers: at the drain timeout their
        connections close while queue reads (and a revocation check) are
        still pending; the replies then find them closed."""
        for policy in ("off", "strict"):  # queue reads, revocation checks
            with self.subTest(revocation_check=policy):
                self.closed_while_pending(policy)

    def closed_while_pending(self, policy):
        self.start_stack(drain_timeout="1s", redis_timeout="5s", revocation_check=policy)
        self.enqueue(self.event(1), 1)
        socks = self.requests_in_flight(6, sleep=3.0)
        old = sorted(self.o.worker_pids())
        self.o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.o.log_text().count("drain timeout, closing") >= 1,
                                 5.0), "no drain timeout" + self.diag())
        for s in socks:
            s.close()
        time.sleep(2.5)  # Redis wakes up
        self.assertTrue(wait_for(lambda: not set(old) & set(self.o.worker_pids()), 5.0),
                        "old workers still running" + self.diag())
        self.assertEqual(self.ids(self.get()), ["evt-0001"])
        log = self.o.log_text()
        self.assertNotIn("killed by signal", log, self.diag())
        self.assertNotRegex(log, r"exited with [1-9]", self.diag())
        self.o.stop()

    def requests_in_flight(self, n, sleep=1.0):
        """n GETs and a DELETE sent while Redis sleeps (DEBUG SLEEP)."""
        self.redis.debug_sleep(sleep)
        time.sleep(0.1)
        socks = []
        for i in range(n + 1):
            s = socket.create_connection(("127.0.0.1", self.o.port), timeout=5)
            self.addCleanup(s.close)
            if i < n:
                s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                           % (PATH, self.token())).encode())
            else:
                s.sendall(("DELETE %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                           "Content-Length: 24\r\n\r\n{\"eventIds\":[\"nothing\"]}"
                           % (PATH, self.token())).encode())
            socks.append(s)
        time.sleep(0.2)
        return socks

if __name__ == "__main__":
    unittest.main()
