"""Supervisor behaviour: workers sharing the load, respawn after a crash,
signals (HUP reload, TERM/INT graceful stop, USR1 log reopen) and daemon mode.
"""

import os
import re
import signal
import time
import unittest

from harness import (Hammer, OrchdTestCase, RawConn, config_text, port_refuses,
                     proc_alive, read_file, wait_for)


def slot_pids(o, nslots, timeout=5.0):
    """Poll /healthz until every slot 0..nslots-1 answered; {slot: pid}."""
    seen = {}

    def done():
        doc = o.healthz()
        seen.setdefault(doc["worker"], doc["pid"])
        return all(s in seen for s in range(nslots))

    wait_for(done, timeout, interval=0.0)
    return seen


class LoadTest(OrchdTestCase):

    def test_two_workers_answer_1000_requests_and_share_the_load(self):
        o = self.start_orchd()
        h = Hammer(o.port, threads=16, total=1000).start()
        self.assertTrue(h.wait_done(), "load threads did not finish: " + h.summary())
        self.note("%s", h.summary())
        self.assertEqual(h.failures, 0, h.summary() + self.diag())
        self.assertEqual(h.ok, 1000, h.summary())
        self.assertEqual(set(h.slots), {0, 1},
                         "expected answers from slots 0 and 1: " + h.summary() + self.diag())
        for slot in (0, 1):
            self.assertGreater(h.slots[slot], 0, h.summary())
        self.assertEqual(set(h.generations), {1}, h.summary())
        # The pids that answered are the supervisor's children, one per slot.
        kids = o.worker_pids()
        self.assertEqual(len(h.pids), 2, h.summary())
        for pid in h.pids:
            self.assertIn(pid, kids, "pid %s answered /healthz but is not a child of "
                          "the supervisor %d (children %s)" % (pid, o.pid, kids))
        self.assertNotIn(o.pid, h.pids, "the supervisor itself answered /healthz")
        for slot, pids in h.slot_pids.items():
            self.assertEqual(len(pids), 1, "slot %s answered from several pids %s without "
                             "any crash or reload" % (slot, pids))


class RespawnTest(OrchdTestCase):

    def test_kill9_worker_is_respawned_while_clients_hammer(self):
        o = self.start_orchd()
        before = slot_pids(o, 2)
        self.assertEqual(set(before), {0, 1}, "both slots should answer: %s%s"
                         % (before, self.diag()))
        children_before = set(o.children())
        victim_slot = 0
        victim = before[victim_slot]

        nthreads = 16
        h = Hammer(o.port, threads=nthreads, max_duration=40).start()
        try:
            self.assertTrue(wait_for(lambda: h.requests() >= 200, 10),
                            "hammer made no progress: " + h.summary() + self.diag())
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()

            # A new child appears, the victim is gone.
            new = wait_for(lambda: [p for p in o.worker_pids() if p not in children_before],
                           10)
            self.assertTrue(new, "no new worker within 10s of kill -9 %d (children now %s)%s"
                            % (victim, o.children(), self.diag()))
            self.assertTrue(wait_for(lambda: not proc_alive(victim), 5),
                            "killed worker %d still alive" % victim)
            # The victim's slot answers again, from a new pid.
            respawned = wait_for(lambda: h.slot_pids[victim_slot] - {victim}, 10)
            self.assertTrue(respawned, "slot %d never answered from a new pid after the kill: %s%s"
                            % (victim_slot, h.summary(), self.diag()))
            respawn_time = time.monotonic() - killed_at
            # Keep hammering a little after the respawn.
            mark = h.requests()
            wait_for(lambda: h.requests() >= mark + 300, 10)
        finally:
            self.assertTrue(h.stop(), "load threads did not stop")

        total = h.ok + h.failures
        self.note("respawned in %.3fs; %s", respawn_time, h.summary())
        self.assertLessEqual(h.failures, nthreads,
                             "more failures than in-flight requests (%d threads): %s%s"
                             % (nthreads, h.summary(), self.diag()))
        self.assertGreaterEqual(h.ok, 0.95 * total, h.summary())
        self.assertIn(respawned.pop(), o.worker_pids())
        doc = o.healthz()
        self.assertEqual(doc["generation"], 1, "a respawn is not a reload: %s" % doc)
        self.assertEqual(doc["workers"], 2, doc)
        # The other worker was left alone.
        self.assertTrue(proc_alive(before[1]), "the other worker died too" + self.diag())
        self.assertLess(respawn_time, 10)

    @unittest.skip("a worker exits 2 only if dropping privileges fails after fork, "
                   "which config validation prevents (see test_hup_naming_an_unknown_"
                   "user_is_refused_and_keeps_serving); no clean way to provoke it")
    def test_worker_exit_status_2_is_not_respawned(self):
        pass


class ReloadTest(OrchdTestCase):

    def test_hup_with_broken_config_keeps_serving_and_logs_file_line(self):
        o = self.start_orchd()
        first = o.healthz()
        self.assertEqual(first["generation"], 1, first)
        serving_before = set(slot_pids(o, 2).values())

        good = config_text(o.default_config())
        nlines = len(good.splitlines())
        bad = good + "bogus_directive 1\nworkers banana\n"
        o.write_config(bad)

        h = Hammer(o.port, threads=4, max_duration=30).start()
        try:
            o.send_signal(signal.SIGHUP)
            line1 = '%s:%d: unknown directive "bogus_directive"' % (o.conf_path, nlines + 1)
            line2 = "%s:%d: " % (o.conf_path, nlines + 2)
            self.assertTrue(o.wait_log(re.escape(line1), 5),
                            "log does not show %r after HUP%s" % (line1, self.diag()))
            self.assertTrue(o.wait_log(re.escape(line2), 2),
                            "log shows only the first error; missing %r%s" % (line2, self.diag()))
            time.sleep(0.5)
        finally:
            self.assertTrue(h.stop(), "load threads did not stop")

        self.note("%s", h.summary())
        self.assertTrue(o.alive(), "supervisor died on a bad reload" + self.diag())
        self.assertEqual(h.failures, 0, h.summary() + self.diag())
        self.assertGreater(h.ok, 0, h.summary())
        self.assertEqual(set(h.generations), {1}, h.summary())
        for _ in range(10):
            doc = o.healthz()
            self.assertEqual(doc["generation"], 1, "failed reload changed generation: %s" % doc)
            self.assertEqual(doc["workers"], 2, doc)
            self.assertIn(doc["pid"], serving_before,
                          "a new worker answers after a failed reload: %s" % doc)

        # A failed reload must not spoil the next good one.
        o.write_config(o.default_config())
        o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: o.healthz()["generation"] == 2, 10),
                        "good reload after a failed one did not happen" + self.diag())

    def test_hup_with_good_config_changes_workers_2_to_3_without_failures(self):
        o = self.start_orchd()
        old = set(slot_pids(o, 2).values())
        self.assertEqual(len(old), 2)

        h = Hammer(o.port, threads=16, max_duration=40).start()
        try:
            self.assertTrue(wait_for(lambda: h.requests() >= 200, 10),
                            "hammer made no progress: " + h.summary() + self.diag())
            o.write_config(o.default_config(workers=3))
            o.send_signal(signal.SIGHUP)

            def reloaded():
                docs = [o.healthz() for _ in range(10)]
                return all(d["generation"] == 2 and d["workers"] == 3 for d in docs)

            self.assertTrue(wait_for(reloaded, 10),
                            "healthz does not report generation 2 / workers 3 "
                            "within 10s of HUP: %s%s" % (h.summary(), self.diag()))
            slots = {}

            def three_slots():
                doc = o.healthz()
                if doc["generation"] == 2:
                    slots.setdefault(doc["worker"], doc["pid"])
                return set(slots) == {0, 1, 2}

            self.assertTrue(wait_for(three_slots, 10, interval=0.0),
                            "after reload to 3 workers only slots %s answered%s"
                            % (sorted(slots), self.diag()))
            mark = h.requests()
            wait_for(lambda: h.requests() >= mark + 200, 10)
        finally:
            self.assertTrue(h.stop(), "load threads did not stop")

        self.note("%s", h.summary())
        self.assertEqual(h.failures, 0, "requests failed during the reload: "
                         + h.summary() + self.diag())
        self.assertIn(2, h.generations, h.summary())
        self.assertEqual(len(set(slots.values())), 3, slots)
        self.assertFalse(old & set(slots.values()),
                         "an old-generation worker answers as generation 2: %s %s"
                         % (old, slots))
        # The old workers drain and exit.
        self.assertTrue(wait_for(lambda: not any(proc_alive(p) for p in old),
                                 o.drain_timeout + 2),
                        "old workers %s still alive %.0fs after the reload%s"
                        % ([p for p in old if proc_alive(p)], o.drain_timeout + 2, self.diag()))
        self.assertTrue(o.alive())

    def test_old_worker_answers_inflight_request_then_exits_promptly(self):
        o = self.start_orchd(overrides={"drain_timeout": "6s"})
        # A request in flight: head started, not finished.
        c = RawConn(o.port)
        self.addCleanup(c.close)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        old = set(o.worker_pids())
        o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: o.healthz()["generation"] == 2, 5),
                        "reload did not happen" + self.diag())
        c.send(b"\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200, "in-flight request lost in the reload: %r" % r)
        doc = r.json()
        self.assertEqual(doc["generation"], 1, "in-flight request served by: %s" % doc)
        self.assertIn(doc["pid"], old)
        c.close()
        closed_at = time.monotonic()
        # Its worker has nothing left to do: it must exit now, not when
        # drain_timeout (6s) expires.
        gone = wait_for(lambda: not any(proc_alive(p) for p in old), o.drain_timeout + 2)
        elapsed = time.monotonic() - closed_at
        self.note("old workers gone %.2fs after their last connection closed", elapsed)
        self.assertTrue(gone, "old workers %s outlive drain_timeout%s"
                        % ([p for p in old if proc_alive(p)], self.diag()))
        self.assertLess(elapsed, 2.0,
                        "old worker exited %.2fs after its last connection closed "
                        "(drain_timeout %.0fs): it waited for the drain timer instead of "
                        "exiting when drained%s" % (elapsed, o.drain_timeout, self.diag()))

    def test_hup_naming_an_unknown_user_is_refused_and_keeps_serving(self):
        # The one way a worker would exit with status 2 (and never be
        # respawned) is failing to drop privileges; a reload must refuse such
        # a config up front instead of starting workers that die.
        o = self.start_orchd()
        before = set(slot_pids(o, 2).values())
        good = o.default_config()
        user_line = list(good).index("user") + 1
        o.write_config(o.default_config(user="no_such_user_orchd_it"))
        o.send_signal(signal.SIGHUP)
        self.assertTrue(o.wait_log(re.escape("%s:%d: " % (o.conf_path, user_line)), 5),
                        "unknown user not reported as file:line" + self.diag())
        time.sleep(0.5)
        for _ in range(10):
            doc = o.healthz()
            self.assertEqual(doc["generation"], 1, doc)
            self.assertIn(doc["pid"], before, doc)
        self.assertEqual(set(o.worker_pids()), before, "workers changed" + self.diag())


class StopTest(OrchdTestCase):

    def _graceful_stop(self, sig):
        o = self.start_orchd(overrides={"drain_timeout": "2s"})
        self.assertEqual(o.read_pidfile(), o.pid,
                         "pid file %s should hold the supervisor pid" % o.pid_path)
        kids = o.children()
        self.assertTrue(kids, "supervisor has no children" + self.diag())
        # An idle keep-alive client must not hold the stop past drain_timeout.
        idle = RawConn(o.port)
        self.addCleanup(idle.close)
        self.assertEqual(idle.request().status, 200)

        started = time.monotonic()
        o.send_signal(sig)
        code = o.wait_exit(o.drain_timeout + 1.5)
        elapsed = time.monotonic() - started
        self.note("%s: exit %s after %.3fs", sig.name, code, elapsed)
        self.assertEqual(code, 0, "exit status after %s%s" % (sig.name, self.diag()))
        self.assertFalse(os.path.exists(o.pid_path),
                         "pid file left behind after %s" % sig.name)
        self.assertTrue(wait_for(lambda: not any(proc_alive(p) for p in kids), 3),
                        "children %s survive the supervisor"
                        % [p for p in kids if proc_alive(p)])
        self.assertTrue(port_refuses(o.port), "port still accepts after exit")
        self.assertLessEqual(elapsed, o.drain_timeout + 1.5)

    def test_term_exits_0_within_drain_timeout_and_removes_pidfile(self):
        self._graceful_stop(signal.SIGTERM)

    def test_int_exits_0_within_drain_timeout_and_removes_pidfile(self):
        self._graceful_stop(signal.SIGINT)

    def test_term_answers_inflight_request_then_exits_promptly(self):
        o = self.start_orchd(overrides={"drain_timeout": "6s"})
        c = RawConn(o.port)
        self.addCleanup(c.close)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        o.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        c.send(b"\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200, "in-flight request lost on TERM: %r" % r)
        self.assertEqual(r.header("connection", "").lower(), "close",
                         "a draining worker must close after the response: %r" % r.headers)
        c.close()
        closed_at = time.monotonic()
        code = o.wait_exit(o.drain_timeout + 1.5)
        elapsed = time.monotonic() - closed_at
        self.note("TERM: exit %s %.2fs after the last connection closed", code, elapsed)
        self.assertEqual(code, 0, self.diag())
        self.assertFalse(os.path.exists(o.pid_path), "pid file left behind")
        self.assertLess(elapsed, 2.0,
                        "orchd exited %.2fs after its last connection closed "
                        "(drain_timeout %.0fs): the worker waited for the drain timer "
                        "instead of exiting when drained%s"
                        % (elapsed, o.drain_timeout, self.diag()))

    def test_dash_p_overrides_the_pidfile(self):
        o = self.new_orchd()
        alt = os.path.join(o.dir, "alt.pid")
        o.start(args=["-p", alt])
        self.assertEqual(o.read_pidfile(alt), o.pid,
                         "-p %s should hold the supervisor pid" % alt)
        self.assertFalse(os.path.exists(o.pid_path),
                         "the config's pidfile was written despite -p")
        o.send_signal(signal.SIGTERM)
        self.assertEqual(o.wait_exit(o.drain_timeout + 1.5), 0, self.diag())
        self.assertFalse(os.path.exists(alt), "-p pid file left behind")


class LogReopenTest(OrchdTestCase):

    def _holders_of(self, o, path):
        """Pids in the orchd tree with an fd open on path."""
        holders = []
        for pid in [o.pid] + o.children():
            fddir = "/proc/%d/fd" % pid
            try:
                fds = os.listdir(fddir)
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(os.path.join(fddir, fd))
                except OSError:
                    continue
                if target == path or target == path + " (deleted)":
                    holders.append(pid)
                    break
        return holders

    def test_usr1_reopens_the_log(self):
        o = self.start_orchd()
        self.assertTrue(wait_for(lambda: os.path.getsize(o.log_path) > 0, 5),
                        "nothing logged at log_level debug" + self.diag())
        rotated = o.log_path + ".1"
        os.rename(o.log_path, rotated)
        o.send_signal(signal.SIGUSR1)
        self.assertTrue(wait_for(lambda: os.path.exists(o.log_path), 5),
                        "USR1 did not recreate %s%s" % (o.log_path, self.diag()))
        # No process of the tree keeps writing to the rotated file.
        released = wait_for(lambda: not self._holders_of(o, rotated), 5)
        self.assertTrue(released, "processes %s still hold %s open 5s after USR1 (tree: %d %s)"
                        % (self._holders_of(o, rotated), rotated, o.pid, o.children()))

        # A supervisor line provoked now lands in the new file.
        good = config_text(o.default_config())
        n = len(good.splitlines()) + 1
        o.write_config(good + "bogus_after_rotate 1\n")
        o.send_signal(signal.SIGHUP)
        marker = '%s:%d: unknown directive "bogus_after_rotate"' % (o.conf_path, n)
        self.assertTrue(o.wait_log(re.escape(marker), 5),
                        "new log lacks %r; rotated log tail:\n%s%s"
                        % (marker, read_file(rotated)[-2000:], self.diag()))
        self.assertNotIn(marker, read_file(rotated), "line written to the rotated log")
        self.assertEqual(o.healthz()["status"], "ok")

    def test_log_lines_have_the_documented_format(self):
        o = self.start_orchd()
        for _ in range(5):
            o.healthz()
        o.send_signal(signal.SIGTERM)
        self.assertEqual(o.wait_exit(o.drain_timeout + 1.5), 0, self.diag())
        rx = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z orchd\[(\d+)\]: "
                        r"(supervisor|worker \d+|relay): [A-Za-z_][A-Za-z0-9_]*: \S")
        lines = o.log_text().splitlines()
        self.assertTrue(lines, "empty log")
        bad = [l for l in lines if not rx.match(l)]
        self.assertFalse(bad, "log lines not in the documented format:\n%s"
                         % "\n".join(bad[:10]))
        sup = [l for l in lines if rx.match(l).group(2) == "supervisor"]
        self.assertTrue(sup, "no supervisor lines")
        for l in sup:
            self.assertEqual(int(rx.match(l).group(1)), o.pid,
                             "supervisor line with another pid: %s" % l)


class DaemonModeTest(OrchdTestCase):

    def test_without_f_daemonizes_writes_pidfile_and_stops_on_term(self):
        o = self.new_orchd()
        started = time.monotonic()
        o.start(foreground=False, wait=False)  # asserts the launcher returns 0
        self.assertEqual(o.proc.returncode, 0)
        self.assertLess(time.monotonic() - started, 10)
        # Init scripts read the pid file as soon as the launcher returns.
        pid = o.read_pidfile()
        self.assertIsNotNone(pid, "no pid file %s when the launcher returned%s"
                             % (o.pid_path, self.diag()))
        o.wait_healthy()
        self.assertIsNotNone(pid, "no pid file %s" % o.pid_path)
        self.assertNotEqual(pid, o.proc.pid, "pid file holds the launcher's pid")
        self.assertTrue(proc_alive(pid), "pid file holds %d which is not running" % pid)
        self.assertEqual(o.pid, pid)
        # The pid file names the supervisor: the worker that answers is its child.
        doc = o.healthz()
        self.assertIn(doc["pid"], o.children(),
                      "worker %s is not a child of pid-file pid %d" % (doc["pid"], pid))
        # Detached: its own session, not ours.
        with open("/proc/%d/stat" % pid) as f:
            sid = int(f.read().rsplit(")", 1)[1].split()[3])
        self.assertNotEqual(sid, os.getsid(0), "daemon did not leave our session")

        kids = o.children()
        os.kill(pid, signal.SIGTERM)
        o.wait_exit(o.drain_timeout + 1.5)
        self.assertTrue(wait_for(lambda: not os.path.exists(o.pid_path), 2),
                        "pid file left behind" + self.diag())
        self.assertTrue(wait_for(lambda: not any(proc_alive(p) for p in kids), 3),
                        "children survive the daemon")
        self.assertTrue(port_refuses(o.port))


if __name__ == "__main__":
    unittest.main(verbosity=2)
