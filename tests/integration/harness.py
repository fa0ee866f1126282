"""Shared harness for the orchd integration suites.

Stdlib only (the suites run under Debian's /usr/bin/python3).  Every test gets
a private temp dir, an ephemeral port and its own orchd process tree, which the
cleanups always tear down, whatever happened.  Every wait in here is bounded:
a test may fail, it never hangs.

Environment:
    ORCHD_BIN       absolute path of the orchd binary under test (required)
    ORCHD_SRCDIR    top of the source tree (informational)
    ORCHD_BUILDDIR  top of the build tree (informational)
    ORCHD_KEEP_TMP  if set (non-empty), keep each test's temp dir and print it
"""

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ORCHD_BIN = os.environ.get("ORCHD_BIN", "")
KEEP_TMP = bool(os.environ.get("ORCHD_KEEP_TMP"))
VERBOSE = bool(os.environ.get("ORCHD_IT_VERBOSE"))

# How long orchd gets to answer its first /healthz after being started.
START_TIMEOUT = 10.0
# Socket timeout of every client request: a stuck server fails the request,
# it does not hang the suite.
CLIENT_TIMEOUT = 5.0


# --------------------------------------------------------------------------
# small utilities


def wait_for(predicate, timeout, interval=0.05):
    """Poll predicate() until it returns a true value or timeout expires.

    Returns the last value predicate() returned (falsy on timeout).
    Exceptions raised by predicate() count as "not yet".
    """
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - "not yet"
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    """An ephemeral TCP port that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def read_file(path, default=""):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def write_file_atomic(path, text, mode=0o644):
    """Write via a temp file + rename so a reader never sees half a file."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def tail(text, lines=40):
    parts = text.splitlines()
    return "\n".join(parts[-lines:])


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid):
    """(state, ppid, pgrp, starttime) of pid, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    try:
        return rest[0], int(rest[1]), int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def proc_alive(pid, starttime=None):
    """True if pid exists, is not a zombie, and (if given) started at starttime."""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[3] == starttime


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def proc_comm(pid):
    return read_file("/proc/%d/comm" % pid).strip()


def children_of(ppid, include_zombies=False):
    """Pids whose parent is ppid (scan of /proc/*/stat)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        st = proc_stat(pid)
        if st is None or st[1] != ppid:
            continue
        if not include_zombies and st[0] in ("Z", "X"):
            continue
        out.append(pid)
    return sorted(out)


def kill_tree(pid):
    """SIGKILL pid and its (living) descendants; for escaped processes."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        if p in seen or p == os.getpid():
            continue
        seen.append(p)
        todo.extend(children_of(p))
    for p in seen:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return seen


# --------------------------------------------------------------------------
# HTTP client (raw sockets: we want to see exactly what orchd sends)


class HttpError(Exception):
    pass


class Response:
    def __init__(self, status, reason, version, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # lower-case name -> value (last one wins)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %s %r %r>" % (self.status, self.headers, self.body[:200])


class RawConn:
    """One TCP connection to orchd with a read buffer (supports keep-alive)."""

    def __init__(self, port, host="127.0.0.1", timeout=CLIENT_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self, head_request=False, max_head=1 << 20):
        """Read one response; raises HttpError on EOF before a full response."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > max_head:
                raise HttpError("response head too large")
            if not self._fill():
                raise HttpError("connection closed before response head "
                                "(got %r)" % self.buf[:200])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise HttpError("bad status line %r" % lines[0])
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        headers = {}
        for line in lines[1:]:
            if ":" not in line:
                raise HttpError("bad header line %r" % line)
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = b""
        no_body = head_request or status in (204, 304) or 100 <= status < 200
        if not no_body:
            if "content-length" in headers:
                n = int(headers["content-length"])
                while len(self.buf) < n:
                    if not self._fill():
                        raise HttpError("connection closed in body "
                                        "(%d of %d bytes)" % (len(self.buf), n))
                body, self.buf = self.buf[:n], self.buf[n:]
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = self._read_chunked()
            else:
                while self._fill():
                    pass
                body, self.buf = self.buf, b""
        return Response(status, reason, version, headers, body, head)

    def _read_chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    raise HttpError("closed in chunk size")
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0].strip(), 16)
            while len(self.buf) < size + 2:
                if not self._fill():
                    raise HttpError("closed in chunk")
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body

    def closed_by_peer(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout with no more data."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
                return False  # unexpected extra bytes
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def request(self, method="GET", path="/healthz", headers=None, body=b"",
                version="HTTP/1.1", close=False):
        hdrs = collections.OrderedDict([("Host", "127.0.0.1")])
        if close:
            hdrs["Connection"] = "close"
        if body:
            hdrs["Content-Length"] = str(len(body))
        for k, v in (headers or {}).items():
            hdrs[k] = v
        req = "%s %s %s\r\n" % (method, path, version)
        req += "".join("%s: %s\r\n" % kv for kv in hdrs.items())
        req += "\r\n"
        self.send(req.encode("latin-1") + body)
        return self.read_response(head_request=(method == "HEAD"))


def http_request(port, method="GET", path="/healthz", headers=None, body=b"",
                 timeout=CLIENT_TIMEOUT):
    """One request on a fresh connection with Connection: close."""
    with RawConn(port, timeout=timeout) as c:
        return c.request(method, path, headers=headers, body=body, close=True)


def send_raw(port, data, timeout=CLIENT_TIMEOUT):
    """Send raw bytes on a fresh connection and read one response."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        return c.read_response()


def port_refuses(port, host="127.0.0.1"):
    """True if nothing accepts TCP connections on host:port."""
    s = socket.socket()
    s.settimeout(2.0)
    try:
        s.connect((host, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def healthz(port, timeout=CLIENT_TIMEOUT):
    """GET /healthz; returns the parsed JSON, raises on anything but 200."""
    r = http_request(port, "GET", "/healthz", timeout=timeout)
    if r.status != 200:
        raise HttpError("/healthz answered %d: %r" % (r.status, r.body[:200]))
    return r.json()


# --------------------------------------------------------------------------
# load generator


class Hammer:
    """Threads doing short GET /healthz requests (Connection: close).

    Either `total` requests split among the threads, or until stop().
    Counts successes, failures (with the first errors kept for messages) and
    which worker slot / pid / generation answered.
    """

    def __init__(self, port, threads=16, total=None, path="/healthz",
                 timeout=CLIENT_TIMEOUT, max_duration=60.0):
        self.port = port
        self.nthreads = threads
        self.total = total
        self.path = path
        self.timeout = timeout
        self.max_duration = max_duration
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.issued = 0
        self.ok = 0
        self.failures = 0
        self.errors = []  # (time, description), first 20
        self.slots = collections.Counter()
        self.pids = collections.Counter()
        self.generations = collections.Counter()
        self.slot_pids = collections.defaultdict(set)
        self.threads = []
        self.started_at = None

    def _take_ticket(self):
        with self.lock:
            if self.stop_event.is_set():
                return False
            if self.total is not None and self.issued >= self.total:
                return False
            self.issued += 1
            return True

    def _one(self):
        try:
            r = http_request(self.port, "GET", self.path, timeout=self.timeout)
            if r.status != 200:
                raise HttpError("status %d body %r" % (r.status, r.body[:120]))
            doc = r.json()
        except Exception as e:  # noqa: BLE001 - every error is a failure
            with self.lock:
                self.failures += 1
                if len(self.errors) < 20:
                    self.errors.append((round(time.monotonic() - self.started_at, 3),
                                        "%s: %s" % (type(e).__name__, e)))
            return
        with self.lock:
            self.ok += 1
            self.slots[doc.get("worker")] += 1
            self.pids[doc.get("pid")] += 1
            self.generations[doc.get("generation")] += 1
            self.slot_pids[doc.get("worker")].add(doc.get("pid"))

    def _run(self):
        deadline = self.started_at + self.max_duration
        while time.monotonic() < deadline and self._take_ticket():
            self._one()

    def start(self):
        self.started_at = time.monotonic()
        for i in range(self.nthreads):
            t = threading.Thread(target=self._run, name="hammer-%d" % i, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def wait_done(self, timeout=None):
        """Wait for the threads (total mode); bounded by max_duration + slack."""
        limit = timeout if timeout is not None else self.max_duration + 2 * self.timeout + 5
        deadline = time.monotonic() + limit
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def stop(self):
        self.stop_event.set()
        return self.wait_done(2 * self.timeout + 5)

    def requests(self):
        with self.lock:
            return self.ok + self.failures

    def summary(self):
        with self.lock:
            return ("ok=%d failures=%d slots=%s generations=%s pids=%d first errors=%s"
                    % (self.ok, self.failures, dict(self.slots),
                       dict(self.generations), len(self.pids), self.errors[:8]))


# --------------------------------------------------------------------------
# the daemon under test


def config_text(cfg):
    """A dict (values: scalar or list for repeatable directives) -> text."""
    if isinstance(cfg, str):
        return cfg
    lines = []
    for key, value in cfg.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            lines.append("%s %s" % (key, v))
    return "\n".join(lines) + "\n"


class Orchd:
    """One orchd instance (supervisor + its children) in a private dir."""

    def __init__(self, tmpdir, config=None, port=None, env=None, binary=None):
        self.dir = tmpdir
        self.bin = binary or ORCHD_BIN
        self.port = port or free_port()
        self.conf_path = os.path.join(tmpdir, "orchd.conf")
        self.log_path = os.path.join(tmpdir, "orchd.log")
        self.pid_path = os.path.join(tmpdir, "orchd.pid")
        self.stdout_path = os.path.join(tmpdir, "stdout.txt")
        self.stderr_path = os.path.join(tmpdir, "stderr.txt")
        self.env = dict(os.environ)
        self.env.pop("DAEMON_JWT_SECRET", None)
        if env:
            self.env.update(env)
        self.proc = None       # Popen of the process we started
        self.pid = None        # supervisor pid (== proc.pid with -f)
        self.daemon = False
        self.exit_code = None
        self.drain_timeout = 3.0
        # Every orchd process we have seen: pid -> starttime.  stop() makes
        # sure none of them survives the test (checking starttime so a reused
        # pid is never signalled).
        self.seen = {}
        self.config = None
        self.write_config(config if config is not None else self.default_config())

    # -- config ------------------------------------------------------------

    def default_config(self, **overrides):
        cfg = collections.OrderedDict([
            ("listen", "127.0.0.1:%d" % self.port),
            ("workers", 2),
            ("user", "nobody"),
            ("pidfile", self.pid_path),
            ("log", self.log_path),
            ("log_level", "debug"),
            ("drain_timeout", "3s"),
        ])
        for k, v in overrides.items():
            cfg[k] = v
        return cfg

    def write_config(self, cfg, path=None):
        """Write cfg (dict or text) to the config file (atomically)."""
        path = path or self.conf_path
        text = config_text(cfg)
        if path == self.conf_path:
            self.config = cfg
            m = re.search(r"^\s*drain_timeout\s+(\d+)(ms|s)?\s*$", text, re.M)
            if m:
                n = int(m.group(1))
                self.drain_timeout = n / 1000.0 if m.group(2) == "ms" else float(n)
        write_file_atomic(path, text)
        return path

    # -- process control ---------------------------------------------------

    def run(self, args, timeout=10.0, env=None):
        """Run orchd with args (not a server): returns CompletedProcess."""
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run([self.bin] + list(args), cwd=self.dir, env=e,
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True, errors="replace")

    def start(self, args=None, foreground=True, wait=True, timeout=START_TIMEOUT):
        """Start orchd (-f -c CONF by default) and wait until /healthz is 200."""
        assert self.proc is None, "already started"
        argv = [self.bin]
        if foreground:
            argv.append("-f")
        argv += ["-c", self.conf_path]
        argv += list(args or [])
        self.argv = argv
        self.daemon = not foreground
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            # Own session: the whole tree is one process group we can clean up.
            self.proc = subprocess.Popen(argv, cwd=self.dir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, start_new_session=True)
        finally:
            out.close()
            err.close()
        self._remember(self.proc.pid)
        if foreground:
            self.pid = self.proc.pid
        else:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError("orchd without -f did not return within %.0fs\n%s"
                                     % (timeout, self.diagnostics()))
            if self.proc.returncode != 0:
                raise AssertionError("orchd without -f exited with %d\n%s"
                                     % (self.proc.returncode, self.diagnostics()))
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.daemon and self.pid is None:
                pid = self.read_pidfile()
                if pid:
                    self.pid = pid
                    self._remember(pid)
            if self.pid is not None and not self.alive():
                raise AssertionError("orchd exited (code %s) before answering /healthz\n%s"
                                     % (self.poll(), self.diagnostics()))
            try:
                doc = healthz(self.port, timeout=2.0)
                if self.pid is not None:
                    self.remember_tree()
                    return doc
            except Exception as e:  # noqa: BLE001
                last = e
            time.sleep(0.05)
        raise AssertionError("orchd did not answer /healthz within %.0fs (last error: %r)\n%s"
                             % (timeout, last, self.diagnostics()))

    def poll(self):
        """Exit code if the supervisor is gone (None if running/unknown)."""
        if self.proc is not None and self.pid == self.proc.pid:
            self.exit_code = self.proc.poll()
            return self.exit_code
        return None

    def alive(self):
        if self.pid is None:
            return False
        if self.proc is not None and self.pid == self.proc.pid:
            return self.proc.poll() is None
        return proc_alive(self.pid, self.seen.get(self.pid))

    def send_signal(self, sig):
        self.remember_tree()
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        """Wait for the supervisor to exit.  Returns the exit code (None for a
        daemon we are not the parent of; raises AssertionError on timeout)."""
        if self.proc is not None and self.pid == self.proc.pid:
            try:
                self.exit_code = self.proc.wait(timeout)
                return self.exit_code
            except subprocess.TimeoutExpired:
                raise AssertionError("orchd (pid %d) still running after %.1fs\n%s"
                                     % (self.pid, timeout, self.diagnostics()))
        if not wait_for(lambda: not self.alive(), timeout):
            raise AssertionError("orchd (pid %d) still running after %.1fs\n%s"
                                 % (self.pid, timeout, self.diagnostics()))
        return None

    def stop(self):
        """TERM, wait, KILL if needed; then make sure no child survives.
        Safe to call several times and whatever state the test left."""
        if self.proc is None:
            return
        self.remember_tree()
        if self.pid is not None and self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass
            if not wait_for(lambda: not self.alive(), self.drain_timeout + 2.0):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
                wait_for(lambda: not self.alive(), 5.0)
        # The process we started (the daemon's launcher without -f).
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        # Leftovers: children still attached, then everything ever seen.
        leftovers = []
        if self.pid is not None:
            leftovers += children_of(self.pid)
        leftovers += [p for p, st in self.seen.items() if proc_alive(p, st)]
        for p in sorted(set(leftovers)):
            if p == os.getpid():
                continue
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        wait_for(lambda: not any(proc_alive(p, self.seen.get(p)) for p in leftovers), 5.0)
        self.leftovers = leftovers

    # -- introspection -----------------------------------------------------

    def _remember(self, pid):
        st = proc_stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            self.seen.setdefault(pid, st[3])

    def remember_tree(self):
        if self.pid is None:
            return
        self._remember(self.pid)
        for p in children_of(self.pid):
            self._remember(p)
            for q in children_of(p):
                self._remember(q)

    def children(self):
        """Living children of the supervisor (workers, relay, old workers)."""
        if self.pid is None:
            return []
        kids = children_of(self.pid)
        for p in kids:
            self._remember(p)
        return kids

    def worker_pids(self):
        """Living children of the supervisor, minus the relay (its process
        name, comm, is orchd-relay)."""
        return [p for p in self.children() if proc_comm(p).strip() != "orchd-relay"]

    def healthz(self, timeout=CLIENT_TIMEOUT):
        doc = healthz(self.port, timeout=timeout)
        pid = doc.get("pid")
        if isinstance(pid, int):
            self._remember(pid)
        return doc

    def read_pidfile(self, path=None):
        text = read_file(path or self.pid_path).strip()
        return int(text) if text.isdigit() else None

    def log_text(self):
        return read_file(self.log_path)

    def wait_log(self, pattern, timeout=5.0, path=None):
        """Wait until the log matches regex pattern; returns the match or None."""
        rx = re.compile(pattern, re.M)
        return wait_for(lambda: rx.search(read_file(path or self.log_path)), timeout)

    def diagnostics(self, lines=40):
        parts = ["---- dir: %s" % self.dir]
        for label, path in (("orchd.log", self.log_path),
                            ("stderr", self.stderr_path),
                            ("stdout", self.stdout_path)):
            text = read_file(path)
            if text:
                parts.append("---- %s (last %d lines):\n%s" % (label, lines, tail(text, lines)))
        return "\n".join(parts)


# --------------------------------------------------------------------------
# base test case


class OrchdTestCase(unittest.TestCase):
    """Gives each test self.tmp (a private dir, removed afterwards unless
    ORCHD_KEEP_TMP is set) and self.new_orchd() whose instances are always
    stopped in cleanup."""

    # A failed assertion prints our message and unittest's own, both.
    longMessage = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not ORCHD_BIN:
            raise unittest.SkipTest("ORCHD_BIN is not set")
        if not (os.path.isfile(ORCHD_BIN) and os.access(ORCHD_BIN, os.X_OK)):
            raise unittest.SkipTest("ORCHD_BIN %s is not an executable file" % ORCHD_BIN)

    def setUp(self):
        super().setUp()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.id().split(".")[-1])
        self.tmp = tempfile.mkdtemp(prefix="orchd-it-%s-" % safe)
        # Unprivileged workers must be able to reach (and reopen) the log.
        os.chmod(self.tmp, 0o755)
        self.addCleanup(self._remove_tmp)
        self.instances = []

    def _remove_tmp(self):
        if KEEP_TMP:
            sys.stderr.write("\n[kept %s for %s]\n" % (self.tmp, self.id()))
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def new_orchd(self, config=None, subdir=None, **kw):
        d = self.tmp
        if subdir:
            d = os.path.join(self.tmp, subdir)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        o = Orchd(d, config=config, **kw)
        self.instances.append(o)
        # Cleanups run LIFO: this runs before _remove_tmp.
        self.addCleanup(o.stop)
        return o

    def start_orchd(self, config=None, overrides=None, args=None,
                    foreground=True, wait=True, **kw):
        """New instance with config (dict or text), or the default config
        with overrides applied; started and (if wait) answering /healthz."""
        o = self.new_orchd(**kw)
        if config is None:
            config = o.default_config(**(overrides or {}))
        o.write_config(config)
        o.start(args=args, foreground=foreground, wait=wait)
        return o

    def note(self, fmt, *args):
        """Extra detail on stderr when ORCHD_IT_VERBOSE is set."""
        if VERBOSE:
            sys.stderr.write("\n  [%s] %s\n" % (self.id().split(".")[-1], fmt % args))

    def diag(self, o=None):
        o = o or (self.instances[-1] if self.instances else None)
        return "\n" + (o.diagnostics() if o else "(no orchd)")
