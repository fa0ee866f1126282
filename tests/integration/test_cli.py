"""Command line: -V, -t, -T, bad flags, starting with a bad config, and
secrets never leaking into -T output or the log."""

import os
import re
import signal
import subprocess
import unittest

from harness import (OrchdTestCase, config_text, kill_tree, port_refuses,
                     read_file, wait_for)

ENV_SECRET = "supersecret-xyz"
FILE_SECRET = "filesecret-0123456789abcdef"


class CliTest(OrchdTestCase):

    def setUp(self):
        super().setUp()
        self.o = self.new_orchd()

    def run_orchd(self, *args, env=None, timeout=10.0):
        try:
            return self.o.run(list(args), env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("orchd %s did not exit within %.0fs" % (" ".join(args), timeout))

    def bad_config(self):
        """Default config + three bad lines; returns (path, {line: expected})."""
        good = config_text(self.o.default_config())
        n = len(good.splitlines())
        text = good + "bogus_directive 1\nworkers banana\nlog_level loud\n"
        path = self.o.write_config(text)
        return path, {
            n + 1: '%s:%d: unknown directive "bogus_directive"' % (path, n + 1),
            n + 2: "%s:%d: " % (path, n + 2),
            n + 3: "%s:%d: " % (path, n + 3),
        }

    # ---- -V and flags -------------------------------------------------------

    def test_V_prints_version_and_exits_0(self):
        r = self.run_orchd("-V")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"\d+\.\d+", "no version on stdout: %r / %r"
                         % (r.stdout, r.stderr))

    def test_bad_flag_exits_2(self):
        for args in (["-Z"], ["--no-such-option"], ["-c"]):
            r = self.run_orchd(*args)
            self.assertEqual(r.returncode, 2, "orchd %s: %r / %r" % (args, r.stdout, r.stderr))
            self.assertTrue(r.stderr.strip(), "orchd %s: no usage/diagnostic on stderr" % args)

    # ---- -t -----------------------------------------------------------------

    def test_t_good_config_exits_0_and_starts_nothing(self):
        r = self.run_orchd("-t", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 0, "stdout %r stderr %r" % (r.stdout, r.stderr))
        self.assertFalse(os.path.exists(self.o.pid_path), "-t wrote a pid file")
        self.assertTrue(port_refuses(self.o.port), "-t left something listening")

    def test_t_reports_every_error_as_file_line_and_exits_1(self):
        path, expected = self.bad_config()
        r = self.run_orchd("-t", "-c", path)
        self.assertEqual(r.returncode, 1, "stdout %r stderr %r" % (r.stdout, r.stderr))
        for line, text in sorted(expected.items()):
            self.assertIn(text, r.stderr, "error for line %d missing from stderr:\n%s"
                          % (line, r.stderr))
        # Each error is a line of its own that starts with file:line:
        # (a summary line such as "... test failed" may follow).
        errors = [l for l in r.stderr.splitlines()
                  if re.search(r"%s:\d+:" % re.escape(path), l)]
        self.assertEqual(len(errors), len(expected), r.stderr)
        for line in errors:
            self.assertRegex(line, r"^%s:\d+: \S" % re.escape(path))

    def test_t_error_in_included_file_names_that_file(self):
        inc = os.path.join(self.o.dir, "extra.conf")
        with open(inc, "w") as f:
            f.write("# included\nnope_directive yes\n")
        good = config_text(self.o.default_config())
        self.o.write_config(good + "include %s\n" % inc)
        r = self.run_orchd("-t", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('%s:2: unknown directive "nope_directive"' % inc, r.stderr)

        # And a good include is accepted (and applied: see -T).
        with open(inc, "w") as f:
            f.write("# included\nworkers 3\n")
        good_no_workers = config_text(self.o.default_config(workers=None))
        self.o.write_config(good_no_workers + "include %s\n" % inc)
        r = self.run_orchd("-t", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.run_orchd("-T", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^\s*workers\s+3\s*;?\s*$", r.stdout)

    def test_t_unknown_user_is_a_config_error(self):
        cfg = self.o.default_config(user="no_such_user_orchd_it")
        line = list(cfg).index("user") + 1
        self.o.write_config(cfg)
        r = self.run_orchd("-t", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d: " % (self.o.conf_path, line), r.stderr)

    def test_t_missing_file_exits_1(self):
        missing = os.path.join(self.o.dir, "missing.conf")
        r = self.run_orchd("-t", "-c", missing)
        self.assertEqual(r.returncode, 1, "stdout %r stderr %r" % (r.stdout, r.stderr))
        self.assertIn(missing, r.stderr)

    # ---- -T -----------------------------------------------------------------

    def test_T_prints_effective_config_without_env_secret(self):
        r = self.run_orchd("-T", "-c", self.o.conf_path,
                           env={"DAEMON_JWT_SECRET": ENV_SECRET})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^\s*listen\s+127\.0\.0\.1:%d\b" % self.o.port, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^\s*workers\s+2\s*;?\s*$", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^\s*drain_timeout\s+", r.stdout)
        self.assertNotIn(ENV_SECRET, r.stdout + r.stderr, "-T leaks DAEMON_JWT_SECRET")

    def test_T_does_not_print_the_secret_file_content(self):
        secret = os.path.join(self.o.dir, "jwt.secret")
        with open(secret, "w") as f:
            f.write(FILE_SECRET + "\n")
        os.chmod(secret, 0o600)
        self.o.write_config(self.o.default_config(jwt_secret_file=secret))
        r = self.run_orchd("-T", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(FILE_SECRET, r.stdout + r.stderr, "-T leaks the jwt secret file")

    def test_T_output_is_itself_a_valid_config(self):
        r = self.run_orchd("-T", "-c", self.o.conf_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        dumped = os.path.join(self.o.dir, "dumped.conf")
        with open(dumped, "w") as f:
            f.write(r.stdout)
        r2 = self.run_orchd("-t", "-c", dumped)
        self.assertEqual(r2.returncode, 0, "-T output does not pass -t:\n%s\n---\n%s"
                         % (r2.stderr, r.stdout))

    # ---- starting ---------------------------------------------------------------

    def test_start_with_bad_config_exits_2_with_file_line(self):
        path, expected = self.bad_config()
        for fg in (True, False):
            argv = [self.o.bin] + (["-f"] if fg else []) + ["-c", path]
            try:
                r = subprocess.run(argv, cwd=self.o.dir, env=self.o.env,
                                   stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, timeout=10, start_new_session=True)
            except subprocess.TimeoutExpired:
                self.fail("%s with a bad config did not exit within 10s" % argv)
            finally:
                escaped = self.o.read_pidfile()
                if escaped:
                    kill_tree(escaped)
            self.assertEqual(r.returncode, 2, "%s: stdout %r stderr %r"
                             % (argv, r.stdout, r.stderr))
            first = min(expected)
            self.assertIn(expected[first], r.stderr, argv)
            self.assertFalse(os.path.exists(self.o.pid_path), "pid file written")
            self.assertTrue(port_refuses(self.o.port))

    def test_secret_never_reaches_the_log(self):
        o = self.o
        o.env["DAEMON_JWT_SECRET"] = ENV_SECRET
        o.start()
        for _ in range(5):
            o.healthz()
        o.write_config(o.default_config(workers=3))
        o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: o.healthz()["generation"] == 2, 10),
                        "reload did not happen" + self.diag())
        o.send_signal(signal.SIGTERM)
        self.assertEqual(o.wait_exit(o.drain_timeout + 1.5), 0, self.diag())
        for path in (o.log_path, o.stdout_path, o.stderr_path):
            self.assertNotIn(ENV_SECRET, read_file(path), "secret found in %s" % path)
        self.assertTrue(read_file(o.log_path), "log is empty at log_level debug")


if __name__ == "__main__":
    unittest.main(verbosity=2)
