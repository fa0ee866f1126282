"""A private redis-server for one test, and a tiny synchronous RESP client.

Stdlib only.  The server listens on a unix socket only (`--port 0`), keeps
its files in the test's temp dir, never saves (`--save ''`, `--appendonly
no`) and allows DEBUG (`--enable-debug-command yes`, e.g. DEBUG SLEEP to
make it unresponsive).  Every wait is bounded; the server is always stopped
in cleanup, whatever the test did.

Typical use, in an OrchdTestCase:

    r = start_redis(self)                  # started, answering PING, cleaned up
    o = self.start_orchd(overrides={"redis": "unix:" + r.socket_path, ...})
    r.command("SADD", "daemon:tokens:revoked", "jti-1")      # -> 1
    sub = r.pubsub_listen("daemon:heartbeats:org-1")
    msg = sub.wait_message(timeout=3)      # (channel, data) or None
    r.stop(); r.restart()                  # same socket path
"""

import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

REDIS_SERVER = os.environ.get("ORCHD_REDIS_SERVER") or shutil.which("redis-server") \
    or "/usr/bin/redis-server"
START_TIMEOUT = 10.0
CLIENT_TIMEOUT = 5.0
# sun_path is 108 bytes; keep a margin.
MAX_SOCKET_PATH = 100


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


class RespProtocolError(Exception):
    """The server sent something that is not RESP2."""


# --------------------------------------------------------------------------
# RESP2


def encode_command(args):
    """argv -> RESP array of bulk strings (bytes)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode("utf-8")
        elif isinstance(a, (int, float)):
            b = str(a).encode("ascii")
        else:
            raise TypeError("cannot send %r to Redis" % (a,))
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class RespConn:
    """One blocking connection to Redis (unix socket path or (host, port)).

    command() returns the parsed reply: str for simple strings, int for
    integers, bytes for bulk strings (decode=False) or str (decode=True,
    the default: invalid UTF-8 stays bytes), list for arrays, None for
    nil; an error reply is returned as a RedisError instance inside arrays
    and raised at top level."""

    def __init__(self, address, timeout=CLIENT_TIMEOUT, decode=True):
        self.address = address
        self.timeout = timeout
        self.decode = decode
        self.buf = bytearray()
        if isinstance(address, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(address)
        except BaseException:
            s.close()
            raise
        self.sock = s

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

    def send(self, *args):
        self.sock.sendall(encode_command(args))

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for a Redis reply")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buf += chunk

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill(deadline)

    def _bulk(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        if self.buf[n:n + 2] != b"\r\n":
            raise RespProtocolError("bulk string not followed by CRLF")
        del self.buf[:n + 2]
        return data

    def _decode(self, b):
        if not self.decode:
            return b
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b

    def _parse(self, deadline):
        line = self._line(deadline)
        if not line:
            raise RespProtocolError("empty reply line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self._decode(self._bulk(n, deadline))
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._parse(deadline) for _ in range(n)]
        raise RespProtocolError("unknown reply type %r" % line[:40])

    def read_reply(self, timeout=None):
        """One reply; raises RedisError for a top-level error reply."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        r = self._parse(deadline)
        if isinstance(r, RedisError):
            raise r
        return r

    def command(self, *args, timeout=None):
        self.send(*args)
        return self.read_reply(timeout)

    def pipeline(self, commands, timeout=None):
        """Send several commands at once; list of replies (errors as values)."""
        self.sock.sendall(b"".join(encode_command(c) for c in commands))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return [self._parse(deadline) for _ in commands]


# --------------------------------------------------------------------------
# pub/sub listener


class Subscriber:
    """A second connection that SUBSCRIBEs (or PSUBSCRIBEs) and collects the
    messages in a background thread.  messages: list of (channel, data)."""

    def __init__(self, address, channels=(), patterns=(), timeout=CLIENT_TIMEOUT):
        self.conn = RespConn(address, timeout=timeout)
        self.queue = queue.Queue()
        self.messages = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error = None
        # Subscribe synchronously: once this returns, no message is missed.
        for ch in channels:
            r = self.conn.command("SUBSCRIBE", ch)
            if not (isinstance(r, list) and r and r[0] == "subscribe"):
                raise RespProtocolError("SUBSCRIBE answered %r" % (r,))
        for p in patterns:
            r = self.conn.command("PSUBSCRIBE", p)
            if not (isinstance(r, list) and r and r[0] == "psubscribe"):
                raise RespProtocolError("PSUBSCRIBE answered %r" % (r,))
        self.thread = threading.Thread(target=self._run, name="redis-sub", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                r = self.conn._parse(time.monotonic() + 0.2)
            except socket.timeout:
                continue
            except Exception as e:  # noqa: BLE001 - connection gone
                if not self.stopping.is_set():
                    self.error = e
                return
            if isinstance(r, list) and len(r) == 3 and r[0] == "message":
                item = (r[1], r[2])
            elif isinstance(r, list) and len(r) == 4 and r[0] == "pmessage":
                item = (r[2], r[3])
            else:
                continue
            with self.lock:
                self.messages.append(item)
            self.queue.put(item)

    def wait_message(self, timeout=3.0, predicate=None):
        """The next (channel, data) (matching predicate, if given) within
        timeout, or None.  Non-matching messages are consumed (they stay in
        self.messages)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                item = self.queue.get(timeout=remaining)
            except queue.Empty:
                return None
            if predicate is None or predicate(item):
                return item

    def all(self):
        with self.lock:
            return list(self.messages)

    def stop(self):
        self.stopping.set()
        self.thread.join(2.0)
        self.conn.close()


# --------------------------------------------------------------------------
# the server


class RedisServer:
    """One private redis-server on a unix socket."""

    def __init__(self, tmpdir, name="redis", extra_args=()):
        self.dir = os.path.join(tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.sock_dir = None
        path = os.path.join(self.dir, "redis.sock")
        if len(path.encode()) > MAX_SOCKET_PATH:
            # Long test names make long temp dirs: the socket goes in a short
            # private dir instead (removed in stop()).
            self.sock_dir = tempfile.mkdtemp(prefix="ordr-", dir="/tmp")
            os.chmod(self.sock_dir, 0o755)
            path = os.path.join(self.sock_dir, "redis.sock")
        self.socket_path = path
        self.log_path = os.path.join(self.dir, "redis.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self._client = None
        self.subscribers = []

    @property
    def url(self):
        """The value of orchd's `redis` directive."""
        return "unix:" + self.socket_path

    def argv(self):
        return [REDIS_SERVER,
                "--port", "0",
                "--unixsocket", self.socket_path,
                "--unixsocketperm", "777",
                "--dir", self.dir,
                "--save", "",
                "--appendonly", "no",
                "--enable-debug-command", "yes",
                "--daemonize", "no",
                "--logfile", self.log_path,
                "--databases", "1",
                ] + self.extra_args

    def start(self, timeout=START_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        self.proc = subprocess.Popen(self.argv(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited with %s\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                with RespConn(self.socket_path, timeout=1.0) as c:
                    if c.command("PING") == "PONG":
                        return True
            except Exception as e:  # noqa: BLE001 - not yet
                last = e
            time.sleep(0.02)
        raise AssertionError("redis-server did not answer PING within %.0fs (%r)\n%s"
                             % (timeout, last, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no redis log)"

    def client(self):
        """A shared connection (reconnected after restart())."""
        if self._client is None:
            self._client = RespConn(self.socket_path)
        return self._client

    def connect(self, **kw):
        """A new, private connection (the caller closes it)."""
        return RespConn(self.socket_path, **kw)

    def command(self, *args, timeout=None):
        """One command on the shared connection (reconnects once if the
        connection was lost)."""
        try:
            return self.client().command(*args, timeout=timeout)
        except OSError as e:
            # Either way the connection is unusable: a late reply would be
            # taken for the next command's.
            self._drop_client()
            if isinstance(e, socket.timeout):
                raise
            return self.client().command(*args, timeout=timeout)

    def _drop_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def pubsub_listen(self, channel=None, pattern=None):
        """A Subscriber on channel (and/or pattern), stopped with the server."""
        s = Subscriber(self.socket_path, channels=[channel] if channel else [],
                       patterns=[pattern] if pattern else [])
        self.subscribers.append(s)
        return s

    def debug_sleep(self, seconds):
        """Make the server unresponsive for seconds (DEBUG SLEEP on a
        throw-away connection; returns at once)."""
        c = RespConn(self.socket_path)
        c.send("DEBUG", "SLEEP", str(seconds))
        # Leave the reply unread; the connection closes with the thread.
        t = threading.Thread(target=lambda: (time.sleep(seconds + 1), c.close()),
                             daemon=True)
        t.start()

    def stop(self, timeout=5.0):
        """Stop the server (TERM, then KILL).  Safe to call several times."""
        for s in self.subscribers:
            s.stop()
        self.subscribers = []
        self._drop_client()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    self.proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    pass
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass

    def kill(self):
        """SIGKILL (an abrupt outage)."""
        for s in self.subscribers:
            s.stop()
        self.subscribers = []
        self._drop_client()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(5.0)

    def restart(self, timeout=START_TIMEOUT):
        """Stop and start again on the same socket path (data is lost)."""
        self.stop()
        return self.start(timeout)

    def cleanup(self):
        self.stop()
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)


def start_redis(testcase, tmpdir=None, name="redis", extra_args=()):
    """Start a RedisServer in testcase.tmp (or tmpdir); registers the stop
    as a cleanup of testcase before returning."""
    r = RedisServer(tmpdir or testcase.tmp, name=name, extra_args=extra_args)
    testcase.addCleanup(r.cleanup)
    r.start()
    return r
