"""Shared plumbing for orchd's benchmark scripts (ws-idle-memory,
ws-echo-throughput, auth-connect, auth-connect-directory, event-fanout): a
scratch directory, the load generator (`orchctl bench`, see
orchctl(1), section BENCH), orchd and Node `ws` servers, /proc readings, and a
cleanup that ends every process these scripts started (and only those)
however the script exits.

Debian's /usr/bin/python3, standard library only.
"""

import atexit
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(BENCH_DIR))
WS_VERSION = "8"  # npm range for `ws` when it must be installed


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- /proc readings -------------------------------------------------------

def proc_stat(pid):
    """(ppid, utime+stime ticks, starttime) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15,
    # starttime 22.
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19])


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st is not None and st[0] == ppid:
                out.append(int(d))
    return sorted(out)


ROLLUP_KEYS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous")


def smaps_rollup(pid):
    r = dict.fromkeys(ROLLUP_KEYS, 0)
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in r:
                r[k] = int(v.split()[0])  # kB
    return r


def mem_snapshot(pids):
    """Sum of smaps_rollup over pids, in kB, plus the per-process figures."""
    total = dict.fromkeys(ROLLUP_KEYS, 0)
    per = {}
    for pid in pids:
        r = smaps_rollup(pid)
        per[pid] = r
        for k in ROLLUP_KEYS:
            total[k] += r[k]
    total["Private"] = total["Private_Clean"] + total["Private_Dirty"]
    total["per_process"] = per
    return total


def sockstat():
    """TCP line of /proc/net/sockstat (mem is in pages)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                v = line.split()[1:]
                return {v[i]: int(v[i + 1]) for i in range(0, len(v), 2)}
    return {}


def meminfo(keys=("Slab", "SReclaimable", "SUnreclaim", "MemAvailable")):
    r = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                r[k] = int(v.split()[0])
    return r


def count_sockets(pid):
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def cpu_ticks(pids):
    t = 0
    for pid in pids:
        st = proc_stat(pid)
        if st is not None:
            t += st[1]
    return t


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_busy_ticks():
    """(busy, softirq) ticks of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[6]


def process_ticks(exclude):
    """{pid: utime+stime} of every user process not in exclude (kernel
    threads left out).  A lower bound of what the rest of the box used:
    processes that end within the window are missed (their parents'
    cutime would charge their whole life at once, so it is not used)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        if int(d) == 2 or int(rest[1]) == 2:
            continue  # kthreadd and kernel threads
        out[int(d)] = int(rest[11]) + int(rest[12])
    return out


def other_cpu_ticks(before, after):
    return sum(max(0, t - before.get(pid, 0)) for pid, t in after.items())


def wait_quiet(max_busy=0.25, hold=3, timeout=0):
    """Wait (at most timeout s) until the machine has been using less than
    max_busy cores for hold consecutive seconds: other people's builds
    skew a CPU-bound benchmark on a 2-core box.  Returns the seconds
    waited, or -1 if it timed out."""
    if timeout <= 0:
        return 0
    t0 = time.time()
    quiet_since = None
    prev = cpu_busy_ticks()[0]
    while time.time() - t0 < timeout:
        time.sleep(1)
        cur = cpu_busy_ticks()[0]
        busy = (cur - prev) / CLK_TCK
        prev = cur
        if busy < max_busy:
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since >= hold:
                return round(time.time() - t0, 1)
        else:
            quiet_since = None
    log(f"machine still busy after {timeout} s; going on")
    return -1


def machine_info(orchd_bin):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memtotal = int(f.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(memtotal / 1024 / 1024, 1),
        "kernel": platform.release(),
        "orchd": out([orchd_bin, "-V"]),
        "node": out(["node", "-v"]),
        "nofile": out(["sh", "-c", "ulimit -Hn"]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


# ---- the run --------------------------------------------------------------

class Bench:
    def __init__(self, keep=False):
        self.tmp = tempfile.mkdtemp(prefix="orchd-bench.")
        os.chmod(self.tmp, 0o755)  # workers run as nobody
        self.keep = keep
        self.procs = []       # Popen objects we started, in order
        self.orchds = []      # Orchd objects still running
        self.client = None
        self.node_path = None
        self.orchd_bin = os.environ.get(
            "ORCHD_BIN", os.path.join(REPO, "build-plain", "orchd"))
        atexit.register(self.cleanup)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig, frame):
        log(f"signal {sig}: cleaning up")
        raise SystemExit(128 + sig)

    # -- tools --

    def find_orchctl(self, path=None):
        """The load generator: `orchctl bench`, from --orchctl PATH, else
        $ORCHCTL_BIN, else the orchctl next to the orchd binary used, else
        the build tree's (build-plain), else PATH's.  A private copy is
        run: the build tree may be rebuilt while a benchmark runs."""
        self.client = copy_orchctl(path, self.orchd_bin, self.tmp)
        return self.client

    def ensure_ws(self):
        """A NODE_PATH holding `ws`: the interop tests' copy or a fresh one."""
        if self.node_path:
            return self.node_path
        interop = os.path.join(REPO, "tests", "interop", "node_modules")
        if os.path.isdir(os.path.join(interop, "ws")):
            self.node_path = interop
        else:
            d = os.path.join(self.tmp, "node")
            os.makedirs(d)
            log(f"installing ws@{WS_VERSION} with npm into {d}")
            subprocess.run(["npm", "install", "--prefix", d, "--no-audit",
                            "--no-fund", "--silent", f"ws@{WS_VERSION}"],
                           check=True, stdout=subprocess.DEVNULL)
            self.node_path = os.path.join(d, "node_modules")
        with open(os.path.join(self.node_path, "ws", "package.json")) as f:
            self.ws_version = json.load(f)["version"]
        return self.node_path

    @staticmethod
    def free_port():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    # -- servers --

    def start_orchd(self, workers, name="orchd", extra=None):
        port = self.free_port()
        d = os.path.join(self.tmp, f"{name}-{port}")
        os.makedirs(d)
        os.chmod(d, 0o755)
        conf = os.path.join(d, "orchd.conf")
        lines = [
            f"listen 127.0.0.1:{port}",
            f"workers {workers}",
            "user nobody",
            f"log {d}/orchd.log",
            "log_level notice",
            f"pidfile {d}/orchd.pid",
            "ws_echo_path /echo",
            "ws_ping_interval 0",
            "max_connections 100000",
            "drain_timeout 2s",
        ] + list(extra or [])
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.spawn([self.orchd_bin, "-f", "-c", conf],
                       stdout=subprocess.DEVNULL,
                       stderr=open(os.path.join(d, "stderr"), "w"))
        o = Server("orchd", p, port, d)
        o.conf_lines = lines
        self.orchds.append(o)
        deadline = time.time() + 15
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"orchd exited ({p.returncode}); see {d}")
            if healthz(port) and len(children(p.pid)) >= workers:
                break
            if time.time() > deadline:
                raise RuntimeError(f"orchd did not come up; see {d}")
            time.sleep(0.1)
        o.workers = children(p.pid)
        o.remember_workers()
        return o

    def start_node(self, pmd=False):
        node_path = self.ensure_ws()
        port = self.free_port()
        argv = ["node", os.path.join(BENCH_DIR, "node-echo-server.js"),
                "--port", str(port)]
        if pmd:
            argv.append("--pmd")
        env = dict(os.environ, NODE_PATH=node_path)
        p = self.spawn(argv, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
        line = p.stdout.readline()
        if not line.startswith("listening"):
            raise RuntimeError("node-echo-server did not start")
        s = Server("node", p, port, None)
        s.workers = []
        return s

    def stop(self, server):
        p = server.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._reap_workers(server)
        if server in self.orchds:
            self.orchds.remove(server)

    @staticmethod
    def _reap_workers(server):
        # Workers die with the supervisor (PDEATHSIG); make sure of it, for
        # exactly the worker pids we saw (checking their start time, so a
        # recycled pid is never touched).
        for pid, start in getattr(server, "worker_starts", {}).items():
            deadline = time.time() + 5
            while True:
                st = proc_stat(pid)
                if st is None or st[2] != start:
                    break
                if time.time() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.05)

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for o in list(self.orchds):
            self._reap_workers(o)
        self.orchds = []
        self.procs = []
        if not self.keep and os.path.isdir(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- clients --

    def clients(self, mode, server, total, nprocs, args, subnet):
        """One `orchctl bench MODE` run: nprocs client processes sharing
        `total` connections over 4 source addresses each,
        127.<subnet>.1.1 and on.  Returns [the orchctl process] (its
        report is the merged figures of its client processes)."""
        ready = os.path.join(self.tmp, f"ready.{server.port}.{subnet}")
        if os.path.exists(ready):
            os.unlink(ready)  # an earlier round's
        argv = bench_argv(self.client, mode, server.port, total, nprocs,
                          f"127.{subnet}.1.1/{4 * nprocs}", ready) + args
        p = self.spawn(argv, stdout=subprocess.PIPE, text=True)
        p.ready_file = ready
        return [p]


class Server:
    def __init__(self, kind, proc, port, d):
        self.kind = kind
        self.proc = proc
        self.port = port
        self.dir = d
        self.workers = []

    @property
    def pids(self):
        return [self.proc.pid] + list(self.workers)

    def remember_workers(self):
        self.worker_starts = {}
        for pid in self.workers:
            st = proc_stat(pid)
            if st is not None:
                self.worker_starts[pid] = st[2]

    def log_summary(self):
        """Counts of log lines by level word, and the non-notice lines."""
        if self.dir is None:
            return {}, []
        path = os.path.join(self.dir, "orchd.log")
        if not os.path.exists(path):
            return {}, []
        odd = []
        redis = 0
        with open(path) as f:
            for line in f:
                if ("starting" in line or "stopping" in line or
                        "stopped" in line or "begin_stop" in line):
                    continue
                if "on_connect" in line and "connect failed" in line:
                    redis += 1  # no Redis on the bench: expected
                    continue
                odd.append(line.rstrip())
        return {"lines": len(odd), "redis_connect_failed": redis}, odd[:20]


def bench_argv(orchctl, mode, port, total, nprocs, sources, ready=None):
    """The command line of an `orchctl bench` run on loopback."""
    argv = [orchctl, "-q", "--json", "bench", mode, "--port", str(port),
            "-n", str(total), "--procs", str(nprocs), "--sources", sources]
    if ready:
        argv += ["--ready-file", ready]
    return argv


def find_orchctl(path=None, orchd_bin=None):
    cands = [path, os.environ.get("ORCHCTL_BIN")]
    if orchd_bin:
        cands.append(os.path.join(os.path.dirname(orchd_bin), "orchctl"))
    cands += [os.path.join(REPO, "build-plain", "orchctl"),
              shutil.which("orchctl")]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
        if c and c == path:
            break  # named, but not there: say so
    sys.exit(f"no orchctl binary ({path or 'build-plain/orchctl, PATH'}): "
             "build it, or give --orchctl PATH or ORCHCTL_BIN")


def copy_orchctl(path, orchd_bin, tmp):
    src = find_orchctl(path, orchd_bin)
    dst = os.path.join(tmp, "orchctl")
    shutil.copy2(src, dst)
    log(f"load generator: {src} bench")
    return dst


def client_pids(procs):
    """The pids of orchctl bench runs and of their client processes."""
    out = []
    for p in procs:
        out.append(p.pid)
        out += children(p.pid)
    return out


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                    timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait_ready(procs, timeout):
    """Wait for every client's ready file; returns their JSON."""
    deadline = time.time() + timeout
    while True:
        if all(os.path.exists(p.ready_file) for p in procs):
            out = []
            for p in procs:
                for _ in range(50):
                    with open(p.ready_file) as f:
                        s = f.read()
                    if s.endswith("\n"):
                        break
                    time.sleep(0.02)
                out.append(json.loads(s))
            return out
        for p in procs:
            if p.poll() is not None and not os.path.exists(p.ready_file):
                raise RuntimeError(f"orchctl bench {p.pid} exited "
                                   f"({p.returncode})"
                                   " before its connections were up")
        if time.time() > deadline:
            raise RuntimeError("clients not ready in time")
        time.sleep(0.2)


def collect(procs, timeout=60):
    out = []
    for p in procs:
        so, _ = p.communicate(timeout=timeout)
        line = so.strip().splitlines()[-1] if so.strip() else "{}"
        out.append(json.loads(line))
    return out


def merge_hist(reports):
    h = {}
    for r in reports:
        for v, c in r.get("hist", []):
            h[v] = h.get(v, 0) + c
    return sorted(h.items())


def pct(hist, q):
    total = sum(c for _, c in hist)
    if total == 0:
        return 0
    want = max(1, int(q * total))
    acc = 0
    for v, c in hist:
        acc += c
        if acc >= want:
            return v
    return hist[-1][0]


def table(headers, rows):
    """A Markdown table with aligned columns."""
    cols = [list(map(str, c)) for c in zip(headers, *rows)]
    w = [max(len(x) for x in c) for c in cols]
    right = [all(_numeric(x) for x in c[1:]) for c in cols]

    def fmt(cells):
        return "| " + " | ".join(
            (x.rjust(w[i]) if right[i] else x.ljust(w[i]))
            for i, x in enumerate(cells)) + " |"
    lines = [fmt(list(map(str, headers)))]
    lines.append("|" + "|".join(
        ("-" * (w[i] + 1) + ":") if right[i] else ("-" * (w[i] + 2))
        for i in range(len(w))) + "|")
    for r in rows:
        lines.append(fmt(list(map(str, r))))
    return "\n".join(lines)


def _numeric(s):
    s = s.replace(",", "").replace("%", "").replace(" ", "")
    try:
        float(s.lstrip("+-~"))
        return True
    except ValueError:
        return s in ("-", "")
