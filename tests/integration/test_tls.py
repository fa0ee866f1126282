"""TLS listeners: protocol versions, ALPN, handshake timeout, and the
certificate reloaded on HUP (a broken new certificate keeps the old one)."""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time
import warnings

from harness import OrchdTestCase, read_file, wait_for, free_port


def make_cert(dirpath, name, cn):
    key = os.path.join(dirpath, name + ".key")
    crt = os.path.join(dirpath, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=" + cn, "-days", "1", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return crt, key


def peer_fingerprint(port, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            der = t.getpeercert(binary_form=True)
            return hashlib.sha256(der).hexdigest(), t.version(), t.selected_alpn_protocol()


def https_get(port, path="/healthz"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            while True:
                chunk = t.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data


def fingerprint_of(crt):
    der = ssl.PEM_cert_to_DER_cert(open(crt).read())
    return hashlib.sha256(der).hexdigest()


class TlsTest(OrchdTestCase):

    def start_tls(self, **over):
        crt, key = make_cert(self.tmp, "a", "first")
        self.crt_path = os.path.join(self.tmp, "server.crt")
        self.key_path = os.path.join(self.tmp, "server.key")
        os.replace(crt, self.crt_path)
        os.replace(key, self.key_path)
        self.tls_port = free_port()
        o = self.new_orchd()
        cfg = o.default_config(**over)
        text = "".join("%s %s\n" % (k, v) for k, v in cfg.items())
        text += "listen 127.0.0.1:%d tls\n" % self.tls_port
        text += "tls_certificate %s\ntls_certificate_key %s\n" % (self.crt_path,
                                                                 self.key_path)
        o.write_config(text)
        o.start()
        return o

    def test_tls12_and_tls13_with_alpn(self):
        o = self.start_tls()
        fp, ver, alpn = peer_fingerprint(self.tls_port,
                                         minimum_version=ssl.TLSVersion.TLSv1_3)
        self.assertEqual(ver, "TLSv1.3")
        fp, ver, alpn = peer_fingerprint(self.tls_port,
                                         maximum_version=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(ver, "TLSv1.2")
        self.assertIn(b"HTTP/1.1 200", https_get(self.tls_port))
        # TLS 1.1 and older are refused.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with self.assertRaises(ssl.SSLError):
                peer_fingerprint(self.tls_port, minimum_version=ssl.TLSVersion.TLSv1,
                                 maximum_version=ssl.TLSVersion.TLSv1_1)
        # ALPN http/1.1 is selected when offered.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                self.assertEqual(t.selected_alpn_protocol(), "http/1.1")
        self.assertTrue(o.alive())

    def test_handshake_timeout_closes_silent_tls_client(self):
        self.start_tls(handshake_timeout="1s")
        s = socket.create_connection(("127.0.0.1", self.tls_port), timeout=5)
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        t0 = time.monotonic()
        s.settimeout(5)
        data = s.recv(100)
        self.assertEqual(data, b"")
        self.assertLess(time.monotonic() - t0, 3.0)
        s.close()

    def test_hup_reloads_certificate_and_broken_one_keeps_old(self):
        o = self.start_tls()
        first = fingerprint_of(self.crt_path)
        self.assertEqual(peer_fingerprint(self.tls_port)[0], first)
        # A renewed certificate is picked up on HUP.
        crt, key = make_cert(self.tmp, "b", "second")
        os.replace(crt, self.crt_path)
        os.replace(key, self.key_path)
        second = fingerprint_of(self.crt_path)
        nworkers = len(o.worker_pids())
        o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: peer_fingerprint(self.tls_port)[0] == second, 10),
                        "new certificate not served after HUP" + self.diag())
        # The old workers may accept until their drain signal lands.
        self.assertTrue(wait_for(lambda: len(o.worker_pids()) == nworkers, 10), self.diag())
        # A broken one is refused and the running one keeps serving.
        with open(self.crt_path, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                    "-----END CERTIFICATE-----\n")
        gen = o.healthz()["generation"]
        o.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "cannot load the TLS certificate"
                                 in read_file(o.log_path), 5), self.diag())
        self.assertEqual(peer_fingerprint(self.tls_port)[0], second)
        self.assertEqual(o.healthz()["generation"], gen)
        self.assertIn(b"HTTP/1.1 200", https_get(self.tls_port))

    def test_t_refuses_unloadable_certificate(self):
        crt, key = make_cert(self.tmp, "c", "x")
        _, otherkey = make_cert(self.tmp, "d", "y")
        o = self.new_orchd()
        port = free_port()
        o.write_config("listen 127.0.0.1:%d tls\ntls_certificate %s\n"
                       "tls_certificate_key %s\nlog %s\npidfile %s\n"
                       % (port, crt, otherkey, o.log_path, o.pid_path))
        r = o.run(["-t", "-c", o.conf_path])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, "mismatch|does not match")
