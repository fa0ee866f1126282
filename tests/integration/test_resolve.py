"""Host names resolved off the event loops (orchd.conf(5), database and
redis: "resolved asynchronously"; issue 6: "a look-up never blocks a loop").

The real orchd, a real PostgreSQL (pgfix, on TCP 127.0.0.1) and a real
redis-server (redisfix).

Covered:
  - `database "host=localhost ..."` and `redis localhost:PORT` (names, not
    numbers): auth against the directory works and an event is delivered;
    the log shows orchd handed libpq the address it resolved (hostaddr).
  - A slow name server (a UDP DNS server in this file, named by a
    bind-mounted /etc/resolv.conf inside `unshare --mount`) that answers
    db.slow.test only after 3 s: meanwhile /healthz and a WebSocket
    handshake + ping on the (single) worker keep answering quickly; when
    the answer comes, the database connects.
  - A name server that never answers: the look-up fails at database_timeout
    with "resolve: db.slow.test: timed out after 1.0 s", the next reconnect
    asks again (re-resolved, not cached), and the worker keeps answering.
  - `redis redis.slow.test:PORT` with the same never-answering server:
    "resolve: redis.slow.test: timed out" at redis_timeout, the worker
    keeps answering.

The slow-resolver tests skip when `unshare --mount` (or the bind mount, or
binding UDP port 53) is not permitted.  The names used there are under
.test (RFC 6761) and independent of /etc/hosts.

    ORCHD_BIN=.../orchd python3 -m unittest test_resolve -v
"""

import os
import random
import socket
import struct
import subprocess
import threading
import time
import unittest
import uuid
from unittest import mock

import pgfix
from harness import free_port, wait_for
from pgfix import PG_BINDIR
from test_directory import DirectoryFixtures
from test_events import EventTestCase, record
from test_proto import WS_PATH
from wsclient import OP_PONG, WsClient

HAVE_PG = os.path.exists(os.path.join(PG_BINDIR, "postgres"))

# What "keeps answering" means on a loaded 2-core box: a request to a loop
# blocked by a look-up would take the whole stall (3 s).
FAST = 0.5


class DnsServer:
    """A UDP DNS server on ADDR:53 (stdlib only).  names: name -> IPv4
    address.  A query for a known name is answered after delay seconds
    (never when delay is None; AAAA gets an empty answer); any other name
    gets NXDOMAIN at once.  Records (monotonic time, name, qtype) of every
    query."""

    def __init__(self, addr, names, delay):
        self.addr = addr
        self.names = {k.lower(): v for k, v in names.items()}
        self.delay = delay
        self.queries = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.1)
        self.stopping = False
        self.timers = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _question(data):
        """(name, qtype, end offset of the question)."""
        pos, labels = 12, []
        while data[pos] != 0:
            n = data[pos]
            labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        qtype = struct.unpack("!H", data[pos + 1:pos + 3])[0]
        return ".".join(labels).lower(), qtype, pos + 5

    def _answer(self, data, name, qtype, qend):
        ip = self.names.get(name)
        if ip is None:
            flags, answers = 0x8183, b""  # NXDOMAIN
        elif qtype == 1:
            flags = 0x8180
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(ip)
        else:
            flags, answers = 0x8180, b""
        head = data[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        return head + data[12:qend] + answers

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def _run(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                name, qtype, qend = self._question(data)
            except (IndexError, struct.error):
                continue
            with self.lock:
                self.queries.append((time.monotonic(), name, qtype))
            reply = self._answer(data, name, qtype, qend)
            if name not in self.names:
                self._send(reply, peer)
            elif self.delay is not None:
                t = threading.Timer(self.delay, self._send, (reply, peer))
                t.daemon = True
                self.timers.append(t)
                t.start()

    def asked(self, name):
        """Monotonic times of the queries for name (A or AAAA, one per
        look-up: the A query)."""
        with self.lock:
            return [t for t, n, q in self.queries if n == name and q == 1]

    def stop(self):
        self.stopping = True
        for t in self.timers:
            t.cancel()
        self.thread.join(2.0)
        self.sock.close()


def unshare_problem(tmp):
    """None if `unshare --mount` with a bind mount over /etc/resolv.conf
    works here, else why not."""
    probe = os.path.join(tmp, "resolv.probe")
    with open(probe, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    try:
        r = subprocess.run(["unshare", "--mount", "--", "/bin/sh", "-c",
                            'mount --bind "$0" /etc/resolv.conf', probe],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unshare --mount: %s" % e
    if r.returncode != 0:
        return "unshare --mount + bind mount not permitted: %s" % r.stderr.strip()
    return None


class ResolveStack(DirectoryFixtures, EventTestCase):
    """A directory (PostgreSQL on TCP 127.0.0.1, self.pg_port) with
    self.orch an ACTIVE vps; self.binary (when set) starts orchd."""

    binary = None

    def setUp(self):
        super().setUp()
        # pgfix uses one port for its socket name and, here, for TCP: a
        # free one, for this test only.
        self.pg_port = free_port()
        patch = mock.patch.object(pgfix, "PORT", self.pg_port)
        patch.start()
        self.addCleanup(patch.stop)
        self.pg = pgfix.PgServer(self.tmp)
        self.pg.argv = self._pg_argv
        self.addCleanup(self.pg.cleanup)
        self.pg.start()
        self.pg.apply_schema()
        self.user = "user-" + uuid.uuid4().hex[:8]
        self.db_org = "org-db-" + uuid.uuid4().hex[:6]
        self.add_user(self.user)
        self.add_org(self.db_org)
        self.add_vps(self.orch, self.user, self.db_org)

    def _pg_argv(self):
        argv = pgfix.PgServer.argv(self.pg)
        return [("listen_addresses=127.0.0.1" if a == "listen_addresses=" else a)
                for a in argv]

    def start_orchd(self, config=None, overrides=None, args=None, foreground=True,
                    wait=True, **kw):
        if self.binary:
            kw.setdefault("binary", self.binary)
        return super().start_orchd(config=config, overrides=overrides, args=args,
                                   foreground=foreground, wait=wait, **kw)

    def start(self, redis_addr=None, wait_relay=True, **overrides):
        """orchd (EventTestCase's settings) with redis at redis_addr (the
        unix socket of a fresh redisfix server when None)."""
        if redis_addr is None:
            from redisfix import start_redis
            self.redis = start_redis(self)
            redis_addr = self.redis.url
        cfg = {"workers": 2, "drain_timeout": "1s", "redis": redis_addr,
               "redis_timeout": "2s", "jwt_secret_file": self.secret_path,
               "heartbeat_interval": "30s", "rate_limit_messages": 100000,
               "ws_compression": "off"}
        cfg.update(overrides)
        self.o = self.start_orchd(overrides=cfg)
        if wait_relay:
            self.wait_relay(timeout=15.0)
        return self.o

    def conninfo(self, host):
        return '"host=%s port=%d dbname=postgres user=orchd"' % (host, self.pg_port)

    def readyz_ok(self):
        st, doc = self.readyz()
        return doc if st == 200 else None


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class NamesEndToEndTest(ResolveStack):

    def test_localhost_names_for_database_and_redis(self):
        rport = free_port()
        from redisfix import start_redis
        self.redis = start_redis(self, extra_args=["--port", str(rport),
                                                   "--bind", "127.0.0.1"])
        self.start("localhost:%d" % rport, database=self.conninfo("localhost"),
                   database_timeout="2s")
        # libpq got the address orchd resolved, not the name to look up.
        self.o.wait_log(r"resolved_all: .*host=localhost(,localhost)* "
                        r"hostaddr=[0-9a-f.:,]+", timeout=10.0)
        self.o.wait_log(r"on_lookup: .*connecting to 127\.0\.0\.1 port %d" % rport,
                        timeout=10.0)
        log = self.o.log_text()
        self.assertNotIn("synchronously", log)
        # Auth against the directory (the vps row), then an event.
        c = self.connect(self.orch)
        ev = record("message.received", self.orch)
        self.publish(ev)
        self.fence([c])
        self.assert_got(c, [ev["id"]])
        self.check_event(c, ev)


    def test_sentinel_by_name_names_the_master_by_name(self):
        """`redis sentinel localhost:PORT`, and a sentinel that announces
        the master as "localhost" (announce-hostnames): both names are
        resolved by orchd, in the relay and the worker."""
        port = free_port()
        from redisfix import start_redis
        self.redis = start_redis(self, extra_args=["--port", str(port),
                                                   "--bind", "127.0.0.1"])
        s_port = free_port()
        s_dir = os.path.join(self.tmp, "sentinel")
        os.makedirs(s_dir)
        s_conf = os.path.join(s_dir, "sentinel.conf")
        with open(s_conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel resolve-hostnames yes\n"
                    "sentinel announce-hostnames yes\n"
                    "sentinel monitor mymaster localhost %d 1\n" % (s_port, s_dir, port))
        sentinel = subprocess.Popen(["redis-server", s_conf, "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)

        def stop_sentinel():
            sentinel.kill()
            sentinel.wait(5)
        self.addCleanup(stop_sentinel)
        self.start("sentinel localhost:%d master mymaster" % s_port,
                   database=self.conninfo("localhost"))
        self.o.wait_log(r"on_resolved: .*master mymaster is localhost:%d" % port,
                        timeout=10.0)
        self.o.wait_log(r"on_lookup: .*connecting to 127\.0\.0\.1 port %d" % port,
                        timeout=10.0)
        c = self.connect(self.orch)
        ev = record("message.received", self.orch)
        self.publish(ev)
        self.fence([c])
        self.assert_got(c, [ev["id"]])


@unittest.skipUnless(HAVE_PG, "PostgreSQL server binaries not found in %s" % PG_BINDIR)
class SlowResolverTest(ResolveStack):
    """orchd in its own mount namespace, whose /etc/resolv.conf names
    self.dns only."""

    def setUp(self):
        super().setUp()
        why = unshare_problem(self.tmp)
        if why:
            self.skipTest(why)
        self.dns_addr = "127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
        self.resolv = os.path.join(self.tmp, "resolv.conf")
        self.binary = os.path.join(self.tmp, "orchd-ns.sh")
        with open(self.binary, "w") as f:
            f.write('#!/bin/sh\n'
                    '# orchd in a mount namespace with the test\'s resolv.conf.\n'
                    'exec unshare --mount -- /bin/sh -c '
                    '\'mount --bind "$0" /etc/resolv.conf && exec "$@"\' '
                    '"%s" "%s" "$@"\n' % (self.resolv, os.environ["ORCHD_BIN"]))
        os.chmod(self.binary, 0o755)
        self.dns = None

    def start_dns(self, delay, resolver_timeout):
        """The name server, and a resolv.conf with glibc's per-query
        timeout (which bounds how long a timed-out look-up's thread
        lingers)."""
        with open(self.resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:%d attempts:1\n"
                    % (self.dns_addr, resolver_timeout))
        os.chmod(self.resolv, 0o644)
        try:
            self.dns = DnsServer(self.dns_addr, {"db.slow.test": "127.0.0.1",
                                                 "redis.slow.test": "127.0.0.1"}, delay)
        except OSError as e:
            self.skipTest("cannot bind %s:53/udp: %s" % (self.dns_addr, e))
        self.addCleanup(self.dns.stop)

    def probe(self):
        """Latencies (s) of one /healthz and of one WebSocket handshake +
        ping/pong on the worker."""
        t0 = time.monotonic()
        r = self.o.healthz(timeout=5.0)
        t1 = time.monotonic()
        self.assertTrue(r)
        ws = WsClient.open(self.o.port, path=WS_PATH, timeout=5.0)
        try:
            ws.ping(b"p")
            f = ws.recv_frame(timeout=5.0)
            self.assertEqual(f.opcode, OP_PONG)
        finally:
            ws.close()
        return t1 - t0, time.monotonic() - t1

    def probe_until(self, until, interval=0.05):
        """Probe every interval until until() is true (at most 15 s);
        returns (healthz latencies, ws latencies)."""
        hz, ws = [], []
        deadline = time.monotonic() + 15.0
        while not until() and time.monotonic() < deadline:
            a, b = self.probe()
            hz.append(a)
            ws.append(b)
            time.sleep(interval)
        return hz, ws

    def report(self, what, hz, ws):
        self.note("%s: %d probes, /healthz max %.1f ms, ws handshake+ping max %.1f ms",
                  what, len(hz), 1000 * max(hz), 1000 * max(ws))
        self.assertLess(max(hz), FAST, "/healthz took %.3f s during the look-up%s"
                        % (max(hz), self.diag()))
        self.assertLess(max(ws), FAST, "ws handshake+ping took %.3f s during the "
                        "look-up%s" % (max(ws), self.diag()))

    def test_slow_answer_does_not_block_the_worker(self):
        self.start_dns(delay=3.0, resolver_timeout=5)
        self.start(workers=1, wait_relay=False,
                   database=self.conninfo("db.slow.test"), database_timeout="5s")
        first = wait_for(lambda: self.dns.asked("db.slow.test"), 10.0)
        self.assertTrue(first, "orchd never asked for db.slow.test" + self.diag())
        t_first = first[0]
        # The whole stall: until the answer (3 s after the first query).
        hz, ws = self.probe_until(lambda: time.monotonic() > t_first + 3.2)
        self.assertGreaterEqual(len(hz), 10, "too few probes during the stall")
        self.report("3 s DNS stall", hz, ws)
        # The answer came: the directory connects and auth works.
        self.assertTrue(wait_for(self.readyz_ok, 10.0, 0.1),
                        "not ready after the answer%s" % self.diag())
        self.o.wait_log(r"host=db\.slow\.test hostaddr=127\.0\.0\.1", timeout=5.0)
        c = self.connect(self.orch)
        ev = record("message.received", self.orch)
        self.publish(ev)
        self.fence([c])
        self.assert_got(c, [ev["id"]])

    def test_no_answer_times_out_and_resolves_again(self):
        self.start_dns(delay=None, resolver_timeout=2)
        self.start(workers=1, wait_relay=False,
                   database=self.conninfo("db.slow.test"), database_timeout="1s")
        self.assertTrue(wait_for(lambda: self.dns.asked("db.slow.test"), 10.0),
                        "orchd never asked for db.slow.test" + self.diag())
        hz, ws = self.probe_until(
            lambda: "resolve: db.slow.test: timed out after 1.0 s" in self.o.log_text())
        self.assertIn("resolve: db.slow.test: timed out after 1.0 s", self.o.log_text(),
                      self.diag())
        # Reconnects ask again: nothing is cached.
        n0 = len(self.dns.asked("db.slow.test"))
        more, more_ws = self.probe_until(
            lambda: len(self.dns.asked("db.slow.test")) > n0)
        self.assertGreater(len(self.dns.asked("db.slow.test")), n0,
                           "no new look-up after the timeout" + self.diag())
        self.report("resolver down", hz + more, ws + more_ws)
        st, doc = self.readyz()
        self.assertEqual(st, 503, "ready without a database? %s" % doc)

    def test_redis_name_times_out_without_blocking(self):
        rport = free_port()
        from redisfix import start_redis
        self.redis = start_redis(self, extra_args=["--port", str(rport),
                                                   "--bind", "127.0.0.1"])
        self.start_dns(delay=None, resolver_timeout=2)
        self.start("redis.slow.test:%d" % rport, workers=1, wait_relay=False,
                   redis_timeout="1s", database=self.conninfo("127.0.0.1"))
        self.assertTrue(wait_for(lambda: self.dns.asked("redis.slow.test"), 10.0),
                        "orchd never asked for redis.slow.test" + self.diag())
        hz, ws = self.probe_until(
            lambda: "resolve: redis.slow.test: timed out after 1.0 s" in self.o.log_text())
        self.assertIn("resolve: redis.slow.test: timed out after 1.0 s",
                      self.o.log_text(), self.diag())
        self.report("redis name, resolver down", hz, ws)


if __name__ == "__main__":
    unittest.main()
