"""A private PostgreSQL server for one test, and SQL through psql.

Stdlib only.  The cluster is made by initdb in the test's temp dir (trust
authentication, superuser "orchd", --no-sync); the server listens on a
unix socket only (listen_addresses=''), in a private socket directory, with
fsync off.  Every wait is bounded; the server is always stopped in cleanup
("pg_ctl stop -m immediate", i.e. SIGQUIT to the postmaster, then SIGKILL
to its process group if it lingers), whatever the test did.

PostgreSQL refuses to run as root.  When the tests run as root (CI,
scripts/test), initdb and postgres run as the user ORCHD_PG_USER (default
"nobody"): the cluster and socket directories are given to that user, and
the processes are started with subprocess's user=/group=.  The parent
directory (the harness's self.tmp, mode 0755) must be searchable by it.
psql runs as the invoking user: the socket is mode 0777 and root may use
it anyway.

Typical use, in an OrchdTestCase:

    pg = start_postgres(self)              # started, schema applied, cleaned up
    o = self.start_orchd(overrides={"database": pg.conninfo, ...})
    pg.sql("UPDATE users SET status = 'SUSPENDED' WHERE id = 'u-1'")
    pg.query("SELECT id, status FROM users")   # -> [["u-1", "SUSPENDED"]]
    pg.stop(); pg.start()                  # same socket, same data
    pg.kill()                              # abrupt (SIGKILL): crash recovery
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

PG_BINDIR = os.environ.get("ORCHD_PG_BINDIR") or "/usr/lib/postgresql/15/bin"
PG_USER = os.environ.get("ORCHD_PG_USER") or "nobody"
SRCDIR = os.environ.get("ORCHD_SRCDIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMA = os.path.join(SRCDIR, "etc", "schema.sql")
START_TIMEOUT = 20.0
SQL_TIMEOUT = 20.0
# sun_path is 108 bytes; the socket is DIR/.s.PGSQL.5432.
MAX_SOCKET_DIR = 80
PORT = 5432


class PgError(Exception):
    """psql failed (the message holds its stderr)."""


def _tool(name):
    p = os.path.join(PG_BINDIR, name)
    if os.access(p, os.X_OK):
        return p
    found = shutil.which(name)
    if found:
        return found
    raise AssertionError("%s not found in %s or on PATH (set ORCHD_PG_BINDIR)"
                         % (name, PG_BINDIR))


class PgServer:
    """One private PostgreSQL cluster and server on a unix socket."""

    def __init__(self, tmpdir, name="pg"):
        self.dir = os.path.join(tmpdir, name)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.sock_dir = self.dir
        self.own_sock_dir = False
        if len(self.dir.encode()) > MAX_SOCKET_DIR:
            # Long test names make long temp dirs: the socket goes in a short
            # private dir instead (removed in cleanup()).
            self.sock_dir = tempfile.mkdtemp(prefix="orpg-", dir="/tmp")
            os.chmod(self.sock_dir, 0o755)
            self.own_sock_dir = True
        self.run_as = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            self.run_as = (pw.pw_uid, pw.pw_gid)
            for d in (self.dir, self.sock_dir):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self.proc = None
        self.initialized = False

    # ---- addresses --------------------------------------------------------

    @property
    def conninfo(self):
        """The value of orchd's `database` directive (keyword=value form)."""
        return "host=%s port=%d dbname=postgres user=orchd" % (self.sock_dir, PORT)

    @property
    def url(self):
        """The same as a URI (the socket directory percent-encoded)."""
        return "postgresql://orchd@%s:%d/postgres" % (
            self.sock_dir.replace("/", "%2F"), PORT)

    # ---- processes ----------------------------------------------------------

    def _run_kw(self):
        kw = {}
        if self.run_as is not None:
            kw = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        return kw

    def initdb(self):
        env = dict(os.environ, LC_ALL="C")
        with open(os.path.join(self.dir, "initdb.log"), "wb") as log:
            r = subprocess.run([_tool("initdb"), "-D", self.data, "-U", "orchd",
                                "-A", "trust", "--no-sync", "-E", "UTF8",
                                "--locale=C"],
                               cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT,
                               timeout=120, **self._run_kw())
        if r.returncode != 0:
            raise AssertionError("initdb failed (%d):\n%s" % (
                r.returncode, self._tail(os.path.join(self.dir, "initdb.log"))))
        self.initialized = True

    def argv(self):
        return [_tool("postgres"), "-D", self.data, "-k", self.sock_dir,
                "-p", str(PORT),
                "-c", "listen_addresses=",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=100",
                "-c", "shared_buffers=16MB",
                "-c", "unix_socket_permissions=0777"]

    def start(self, timeout=START_TIMEOUT):
        """Start the server (initdb first, the first time); returns once it
        accepts connections."""
        assert not self.running(), "already running"
        if not self.initialized:
            self.initdb()
        # A killed server's lock files name a pid that may live on (a zombie
        # nobody reaps, in a container): no server of ours runs now.
        for p in (os.path.join(self.data, "postmaster.pid"),
                  os.path.join(self.sock_dir, ".s.PGSQL.%d.lock" % PORT),
                  os.path.join(self.sock_dir, ".s.PGSQL.%d" % PORT)):
            try:
                os.unlink(p)
            except OSError:
                pass
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv(), cwd=self.dir,
                                         env=dict(os.environ, LC_ALL="C"),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         start_new_session=True, **self._run_kw())
        finally:
            log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("postgres exited with %s\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            r = subprocess.run([_tool("pg_isready"), "-q", "-h", self.sock_dir,
                                "-p", str(PORT), "-U", "orchd", "-d", "postgres",
                                "-t", "1"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return True
            time.sleep(0.05)
        raise AssertionError("postgres did not accept connections within %.0fs\n%s"
                             % (timeout, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig, group=False):
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
        except OSError:
            pass

    def stop(self, mode="immediate", timeout=10.0):
        """Stop the server like "pg_ctl stop -m MODE" (smart: SIGTERM, fast:
        SIGINT, immediate: SIGQUIT), then SIGKILL its process group if it is
        still there after timeout.  Safe to call several times."""
        if not self.running():
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT,
               "immediate": signal.SIGQUIT}[mode]
        self._signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL, group=True)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        # Backends leave with the postmaster; stragglers go with the group.
        self._signal(signal.SIGKILL, group=True)

    def kill(self):
        """SIGKILL to the whole server (an abrupt outage; the next start
        runs crash recovery)."""
        if self.running():
            self._signal(signal.SIGKILL, group=True)
            self.proc.wait(5.0)

    def restart(self, mode="fast", timeout=START_TIMEOUT):
        """Stop and start again: same socket, same data."""
        self.stop(mode)
        return self.start(timeout)

    def cleanup(self):
        self.stop("immediate")
        if self.own_sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)

    def _tail(self, path, lines=30):
        try:
            with open(path, "r", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no log at %s)" % path

    def log_tail(self, lines=30):
        return self._tail(self.log_path, lines)

    # ---- SQL ----------------------------------------------------------------

    def psql(self, *args, sql=None, timeout=SQL_TIMEOUT):
        """Run psql with args (and sql on stdin); its stdout.  Raises PgError
        when psql fails (ON_ERROR_STOP: the first error stops it)."""
        argv = [_tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.sock_dir, "-p", str(PORT), "-U", "orchd",
                "-d", "postgres"] + list(args)
        r = subprocess.run(argv, input=sql, capture_output=True, text=True,
                           timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        if r.returncode != 0:
            raise PgError("psql %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                       r.stderr.strip()))
        return r.stdout

    def sql(self, text, timeout=SQL_TIMEOUT):
        """Run one or more statements (no result)."""
        self.psql(sql=text, timeout=timeout)

    def query(self, text, timeout=SQL_TIMEOUT):
        """Rows of a query, as lists of strings (NULL is "")."""
        out = self.psql("-F", "\x1f", "-c", text, timeout=timeout)
        return [line.split("\x1f") for line in out.splitlines() if line != ""]

    def apply_schema(self, path=SCHEMA):
        """Apply etc/schema.sql (idempotent: may be applied again)."""
        self.psql("-f", path)

    def notify(self, channel, payload):
        """NOTIFY channel, payload (as pg_notify(), quoting done by SQL)."""
        self.psql("-v", "ch=%s" % channel, "-v", "pl=%s" % payload,
                  sql="SELECT pg_notify(:'ch', :'pl');")

    def terminate_backends(self, application_name=None):
        """pg_terminate_backend() every client session but psql's own (or
        those of application_name); the number ended."""
        cond = "pid <> pg_backend_pid() AND backend_type = 'client backend'"
        args = []
        if application_name is not None:
            cond += " AND application_name = :'app'"
            args = ["-v", "app=%s" % application_name]
        out = self.psql(*args, sql="SELECT count(pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity WHERE %s;" % cond)
        return int(out.strip() or 0)


def start_postgres(testcase, tmpdir=None, name="pg", schema=True):
    """Start a PgServer in testcase.tmp (or tmpdir), with etc/schema.sql
    applied unless schema=False; registers the stop as a cleanup of
    testcase before starting it."""
    pg = PgServer(tmpdir or testcase.tmp, name=name)
    testcase.addCleanup(pg.cleanup)
    pg.start()
    if schema:
        pg.apply_schema()
    return pg
