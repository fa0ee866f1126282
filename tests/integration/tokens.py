"""Mint JWTs (RFC 7519, compact form) for the tests.

HS256/384/512 with the stdlib (hmac, hashlib); RS256 and ES256 with the
`openssl` command-line tool: keys come from `openssl genpkey`, signatures
from `openssl dgst -sha256 -sign`, and ES256's DER (ECDSA-Sig-Value)
signature is converted to the JOSE form, raw r || s (32 bytes each).

    secret = b"s3cret..."
    tok = hs_token(claims("orch-1", daemon="d-1", scopes=["messages:read"]), secret)
    rsa = RsaKey(tmpdir)           # rsa.public_pem is a path for jwt_public_key
    tok = rsa.token(claims("orch-1"), kid="k1")
    ec = EcKey(tmpdir)
    tok = ec.token(claims("orch-1"), kid="k2")
    tok = none_token(claims("orch-1"))   # alg "none", empty signature
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid

OPENSSL = "openssl"
HS_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    text += "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text.encode("ascii"))


def _json(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


def signing_input(header, claims_obj):
    """'b64(header).b64(claims)' (str); header/claims may already be text."""
    h = header if isinstance(header, (str, bytes)) else _json(header)
    c = claims_obj if isinstance(claims_obj, (str, bytes)) else _json(claims_obj)
    return b64url(h) + "." + b64url(c)


def claims(orch, daemon=None, org="org-1", scopes=None, exp_in=300, jti=True,
           workspace=None, sub=True, typ=None, subject=True, **extra):
    """A claims dict: sub (or orchestratorId if sub=False; neither if
    subject=None), exp = now +
    exp_in (None: no exp), iat, daemonId, organizationId, scopes, jti (a
    fresh uuid if True; a given string; none if False/None), type, and any
    extra claims (a value of None removes the claim)."""
    now = int(time.time())
    c = {}
    if subject is None:
        pass  # neither sub nor orchestratorId
    elif sub:
        c["sub"] = orch
    else:
        c["orchestratorId"] = orch
    c["iat"] = now
    if exp_in is not None:
        c["exp"] = now + exp_in
    if daemon is not None:
        c["daemonId"] = daemon
    if org is not None:
        c["organizationId"] = org
    if workspace is not None:
        c["workspaceId"] = workspace
    if scopes is not None:
        c["scopes"] = list(scopes)
    if jti is True:
        c["jti"] = str(uuid.uuid4())
    elif jti:
        c["jti"] = jti
    if typ is not None:
        c["type"] = typ
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def hs_token(claims_obj, secret, alg="HS256", kid=None, header=None):
    """An HMAC-signed token.  header overrides/extends the JOSE header."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    h = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        h["kid"] = kid
    if header:
        h.update(header)
    si = signing_input(h, claims_obj)
    digest = HS_HASHES[alg]
    sig = hmac.new(secret, si.encode("ascii"), digest).digest()
    return si + "." + b64url(sig)


def none_token(claims_obj, alg="none"):
    """An unsecured token (alg none, empty signature part)."""
    return signing_input({"alg": alg, "typ": "JWT"}, claims_obj) + "."


def tamper(token):
    """The token with one byte of its signature changed."""
    head, _, sig = token.rpartition(".")
    raw = bytearray(b64url_decode(sig))
    if not raw:
        return token + "x"
    raw[len(raw) // 2] ^= 0x01
    return head + "." + b64url(bytes(raw))


def decode_unverified(token):
    """(header, claims) dicts."""
    h, c, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(c))


# --------------------------------------------------------------------------
# asymmetric keys through the openssl CLI


def _openssl(args, data=None, timeout=30):
    p = subprocess.run([OPENSSL] + list(args), input=data, capture_output=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s"
                           % (" ".join(args), p.returncode,
                              p.stderr.decode("utf-8", "replace")))
    return p.stdout


def der_to_raw_ecdsa(der, size=32):
    """DER ECDSA-Sig-Value (SEQUENCE { INTEGER r, INTEGER s }) -> r || s,
    each left-padded to size bytes."""

    def read_len(buf, pos):
        n = buf[pos]
        pos += 1
        if n < 0x80:
            return n, pos
        k = n & 0x7F
        if k == 0 or k > 4:
            raise ValueError("bad DER length")
        n = int.from_bytes(buf[pos:pos + k], "big")
        return n, pos + k

    if not der or der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    seqlen, pos = read_len(der, 1)
    if pos + seqlen != len(der):
        raise ValueError("DER SEQUENCE length mismatch")
    out = b""
    for _ in range(2):
        if der[pos] != 0x02:
            raise ValueError("expected DER INTEGER")
        n, pos = read_len(der, pos + 1)
        v = der[pos:pos + n]
        pos += n
        v = v.lstrip(b"\x00")
        if len(v) > size:
            raise ValueError("ECDSA integer too large")
        out += v.rjust(size, b"\x00")
    if pos != len(der):
        raise ValueError("trailing bytes after the DER integers")
    return out


class _AsymKey:
    alg = None

    def __init__(self, tmpdir, name=None):
        name = name or self.default_name
        self.private_pem = os.path.join(tmpdir, name + ".key.pem")
        self.public_pem = os.path.join(tmpdir, name + ".pub.pem")
        self._generate()
        _openssl(["pkey", "-in", self.private_pem, "-pubout", "-out", self.public_pem])
        os.chmod(self.public_pem, 0o644)

    def sign_bytes(self, data):
        return _openssl(["dgst", "-sha256", "-sign", self.private_pem], data=data)

    def token(self, claims_obj, kid=None, header=None, alg=None):
        h = {"alg": alg or self.alg, "typ": "JWT"}
        if kid is not None:
            h["kid"] = kid
        if header:
            h.update(header)
        si = signing_input(h, claims_obj)
        sig = self.jose_signature(self.sign_bytes(si.encode("ascii")))
        return si + "." + b64url(sig)


class RsaKey(_AsymKey):
    alg = "RS256"
    default_name = "rsa"

    def __init__(self, tmpdir, name=None, bits=2048):
        self.bits = bits
        super().__init__(tmpdir, name)

    def _generate(self):
        _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt",
                  "rsa_keygen_bits:%d" % self.bits, "-out", self.private_pem])

    def jose_signature(self, sig):
        return sig


class EcKey(_AsymKey):
    alg = "ES256"
    default_name = "ec"

    def _generate(self):
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", self.private_pem])

    def jose_signature(self, sig):
        return der_to_raw_ecdsa(sig, 32)


def write_secret(path, secret):
    """The HS secret file for jwt_secret_file (mode 0644: workers read it
    as nobody, or the supervisor loads it; either way it must be readable)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    with open(path, "wb") as f:
        f.write(secret)
    os.chmod(path, 0o644)
    return path
