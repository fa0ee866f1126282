/* jwt: compact JWS access-token verification (and signing, for issuing). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/log.h"
#include "orchd/util.h"

#define JWT_PEM_MAX (64 * 1024) /* a public key or certificate is ~2 KiB */
#define ES256_COORD 32          /* bytes of r and of s in a P-256 JWS sig */

enum key_kind {
	KIND_HMAC,
	KIND_RSA,
	KIND_EC,
};

struct alg_info {
	const char *name;
	enum key_kind kind;
	const EVP_MD *(*md)(void);
};

/* clang-format off */
static const struct alg_info algs[] = {
	{"HS256", KIND_HMAC, EVP_sha256},
	{"HS384", KIND_HMAC, EVP_sha384},
	{"HS512", KIND_HMAC, EVP_sha512},
	{"RS256", KIND_RSA, EVP_sha256},
	{"ES256", KIND_EC, EVP_sha256},
};
/* clang-format on */

struct jwt_key {
	EVP_PKEY *pkey;
	enum key_kind kind;
	char *kid; /* NULL: the default key of its kind */
};

struct jwt_keyring {
	unsigned char *secret;
	size_t secret_len;
	/*
	 * HMAC contexts keyed once with the secret, one per digest: HMAC()
	 * fetches the algorithm on every call, which costs more than the MAC
	 * itself at thousands of authentications per second.  Each verify
	 * works on a duplicate.
	 */
	EVP_MAC_CTX *hmac[3];
	struct jwt_key *keys;
	unsigned nkeys;
	char error[256];
};

static const char *const kind_names[] = {"HMAC", "RSA", "EC P-256"};

/* ---- error text --------------------------------------------------------- */

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    ORCHD_PRINTF(4, 5);

/* Format the reason into err (if any) and return rc. */
static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/*
 * Copy an untrusted string for an error message: printable ASCII only and
 * short, so that a hostile kid or claim cannot forge log lines.
 */
static const char *
printable(const char *s, char *buf, size_t size)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < size; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] != '\0' && i >= 3)
		memcpy(buf + i - 3, "...", 3);
	buf[i] = '\0';
	return buf;
}

/* Keyring calls return -1 and keep the reason for jwt_keyring_error(). */
#define KR_FAIL(kr, ...) fail((kr)->error, sizeof((kr)->error), -1, __VA_ARGS__)

const char *
jwt_strerror(int rc)
{
	static const char *const names[] = {
	    [JWT_OK] = "ok",
	    [JWT_EMALFORMED] = "malformed token",
	    [JWT_EALG] = "algorithm refused",
	    [JWT_EKEY] = "no matching key",
	    [JWT_ESIG] = "bad signature",
	    [JWT_EEXPIRED] = "token expired",
	    [JWT_ENOTYET] = "token not yet valid",
	    [JWT_ECLAIMS] = "invalid claims",
	};

	if (rc < 0 || (size_t)rc >= UTIL_NELEM(names))
		return "unknown error";
	return names[rc];
}

/* ---- base64url ---------------------------------------------------------- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
jwt_b64url_encode(const void *in, size_t len, char *out, size_t cap)
{
	const unsigned char *p = in;
	size_t need = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0), o = 0, i;
	uint32_t v;

	if (need >= cap || need > INT32_MAX)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
		out[o++] = b64url_alphabet[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)p[i] << 16;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
	} else if (len - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
	return (int)o;
}

static int
b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict: only the url-safe alphabet, no '=' padding, no whitespace, and
 * the unused low bits of the last character must be zero, so that every
 * byte string has exactly one accepted encoding.
 */
int
jwt_b64url_decode(const char *in, size_t len, void *out, size_t cap)
{
	unsigned char *o = out;
	uint32_t acc = 0;
	size_t i, n = 0, rem = len % 4;
	int v, bits = 0;

	if (rem == 1 || len / 4 * 3 + (rem ? rem - 1 : 0) > cap ||
	    len > INT32_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		if ((v = b64url_val((unsigned char)in[i])) < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) /* non-zero leftover bits: a non-canonical encoding */
		return -1;
	return (int)n;
}

/* ---- keyring ------------------------------------------------------------ */

struct jwt_keyring *
jwt_keyring_new(void)
{
	return util_calloc(1, sizeof(struct jwt_keyring));
}

void
jwt_keyring_free(struct jwt_keyring *kr)
{
	unsigned i;

	if (kr == NULL)
		return;
	for (i = 0; i < kr->nkeys; i++) {
		EVP_PKEY_free(kr->keys[i].pkey);
		free(kr->keys[i].kid);
	}
	free(kr->keys);
	for (i = 0; i < 3; i++)
		EVP_MAC_CTX_free(kr->hmac[i]);
	OPENSSL_clear_free(kr->secret, kr->secret_len);
	free(kr);
}

const char *
jwt_keyring_error(const struct jwt_keyring *kr)
{
	return kr->error;
}

unsigned
jwt_keyring_nkeys(const struct jwt_keyring *kr)
{
	return kr->nkeys;
}

static const char *const hmac_digests[3] = {"SHA256", "SHA384", "SHA512"};

/* Key the cached HMAC contexts; a failure just leaves HMAC() to do it. */
static void
hmac_prepare(struct jwt_keyring *kr)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);

	for (int i = 0; i < 3; i++) {
		OSSL_PARAM params[2];

		EVP_MAC_CTX_free(kr->hmac[i]);
		kr->hmac[i] = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
		params[0] = OSSL_PARAM_construct_utf8_string(
			OSSL_MAC_PARAM_DIGEST, (char *)hmac_digests[i], 0);
		params[1] = OSSL_PARAM_construct_end();
		if (kr->hmac[i] != NULL &&
		    EVP_MAC_init(kr->hmac[i], kr->secret, kr->secret_len,
				 params) != 1) {
			EVP_MAC_CTX_free(kr->hmac[i]);
			kr->hmac[i] = NULL;
		}
	}
	EVP_MAC_free(mac);
	ERR_clear_error();
}

/* HMAC of msg with the secret and md; 0 and *len, or -1. */
static int
hmac_compute(const struct jwt_keyring *kr, const EVP_MD *md,
	     const unsigned char *msg, size_t msglen, unsigned char *out,
	     unsigned *len)
{
	int i = EVP_MD_get_size(md) == 32 ? 0 : EVP_MD_get_size(md) == 48 ? 1 : 2;
	EVP_MAC_CTX *c;
	size_t outl = 0;

	if (kr->hmac[i] == NULL || (c = EVP_MAC_CTX_dup(kr->hmac[i])) == NULL)
		return HMAC(md, kr->secret, (int)kr->secret_len, msg, msglen,
			    out, len) == NULL
			       ? -1
			       : 0;
	if (EVP_MAC_update(c, msg, msglen) != 1 ||
	    EVP_MAC_final(c, out, &outl, EVP_MAX_MD_SIZE) != 1) {
		EVP_MAC_CTX_free(c);
		return -1;
	}
	EVP_MAC_CTX_free(c);
	*len = (unsigned)outl;
	return 0;
}

int
jwt_keyring_set_secret(struct jwt_keyring *kr, const void *secret, size_t len)
{
	kr->error[0] = '\0';
	if (secret == NULL || len == 0)
		return KR_FAIL(kr, "empty HMAC secret");
	OPENSSL_clear_free(kr->secret, kr->secret_len);
	kr->secret = util_malloc(len);
	memcpy(kr->secret, secret, len);
	kr->secret_len = len;
	hmac_prepare(kr);
	return 0;
}

/*
 * Decode one public key: SubjectPublicKeyInfo or PKCS#1 "RSA PUBLIC KEY"
 * through the decoder, else the public key of an X.509 certificate.  The
 * decoder is asked for public keys only, so a private key file is refused
 * rather than silently reduced to its public half.
 */
static EVP_PKEY *
pem_to_pkey(const char *pem, size_t len)
{
	OSSL_DECODER_CTX *dctx;
	const unsigned char *p = (const unsigned char *)pem;
	size_t left = len;
	EVP_PKEY *pkey = NULL;
	X509 *x509;
	BIO *bio;

	dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL,
					     EVP_PKEY_PUBLIC_KEY, NULL, NULL);
	if (dctx != NULL && OSSL_DECODER_from_data(dctx, &p, &left) == 1 &&
	    pkey != NULL) {
		OSSL_DECODER_CTX_free(dctx);
		return pkey;
	}
	OSSL_DECODER_CTX_free(dctx);
	EVP_PKEY_free(pkey);
	pkey = NULL;
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		return NULL;
	if ((x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		pkey = X509_get_pubkey(x509);
		X509_free(x509);
	}
	BIO_free(bio);
	return pkey;
}

static int
pkey_kind(EVP_PKEY *pkey, enum key_kind *kind, char *err, size_t errlen)
{
	const char *type = EVP_PKEY_get0_type_name(pkey);
	char group[64];
	int bits;

	if (EVP_PKEY_is_a(pkey, "RSA")) {
		/* RFC 7518 3.3: 2048 bits or larger MUST be used. */
		if ((bits = EVP_PKEY_get_bits(pkey)) < 2048)
			return fail(err, errlen, -1,
				    "RSA key of %d bits (2048 needed)", bits);
		*kind = KIND_RSA;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) !=
			1 ||
		    strcmp(group, "prime256v1") != 0)
			return fail(err, errlen, -1,
				    "EC key not on P-256 (only ES256 is "
				    "supported)");
		*kind = KIND_EC;
		return 0;
	}
	return fail(err, errlen, -1,
		    "unsupported key type %s (RSA or EC P-256 expected)",
		    type != NULL ? type : "?");
}

/* Count "-----BEGIN " lines: one file, one key, so a bundle is an error. */
static unsigned
pem_blocks(const char *pem, size_t len)
{
	static const char tag[] = "-----BEGIN ";
	const char *p = pem, *end = pem + len;
	unsigned n = 0;

	while ((p = memmem(p, (size_t)(end - p), tag, sizeof(tag) - 1)) !=
	       NULL) {
		n++;
		p += sizeof(tag) - 1;
	}
	return n;
}

int
jwt_keyring_add_pem(struct jwt_keyring *kr, const char *pem, size_t len,
		    const char *kid)
{
	enum key_kind kind;
	EVP_PKEY *pkey;
	unsigned i, blocks;

	kr->error[0] = '\0';
	if (kid != NULL && (kid[0] == '\0' || strlen(kid) >= JWT_ID_SIZE))
		return KR_FAIL(kr, "kid must be 1 to %d bytes",
			       JWT_ID_SIZE - 1);
	if (len > JWT_PEM_MAX || (blocks = pem_blocks(pem, len)) == 0)
		return KR_FAIL(kr, "not a PEM public key");
	if (blocks > 1)
		return KR_FAIL(kr, "%u PEM blocks: one key per file", blocks);
	pkey = pem_to_pkey(pem, len);
	ERR_clear_error();
	if (pkey == NULL)
		return KR_FAIL(kr, "no public key in PEM data (a private key "
				   "or garbage?)");
	if (pkey_kind(pkey, &kind, kr->error, sizeof(kr->error)) < 0) {
		EVP_PKEY_free(pkey);
		return -1;
	}
	for (i = 0; i < kr->nkeys; i++) {
		const struct jwt_key *k = &kr->keys[i];

		/* Either key would be unselectable by a token. */
		if (kid != NULL && k->kid != NULL && strcmp(kid, k->kid) == 0) {
			EVP_PKEY_free(pkey);
			return KR_FAIL(kr, "duplicate kid \"%s\"", kid);
		}
		if (kid == NULL && k->kid == NULL && k->kind == kind) {
			EVP_PKEY_free(pkey);
			return KR_FAIL(kr, "a second %s key without kid",
				       kind_names[kind]);
		}
	}
	kr->keys = util_realloc(kr->keys, (kr->nkeys + 1) * sizeof(*kr->keys));
	kr->keys[kr->nkeys].pkey = pkey;
	kr->keys[kr->nkeys].kind = kind;
	kr->keys[kr->nkeys].kid = kid != NULL ? util_strdup(kid) : NULL;
	kr->nkeys++;
	return 0;
}

int
jwt_keyring_add_pem_file(struct jwt_keyring *kr, const char *path,
			 const char *kid)
{
	char *buf, msg[sizeof(kr->error)];
	size_t n;
	FILE *fp;
	int rc;

	kr->error[0] = '\0';
	if ((fp = fopen(path, "re")) == NULL)
		return KR_FAIL(kr, "%s: %s", path, strerror(errno));
	buf = util_malloc(JWT_PEM_MAX + 1);
	n = fread(buf, 1, JWT_PEM_MAX + 1, fp);
	if (ferror(fp) || n > JWT_PEM_MAX) {
		rc = KR_FAIL(kr, "%s: %s", path,
			     ferror(fp) ? "read error" : "file too large");
	} else if ((rc = jwt_keyring_add_pem(kr, buf, n, kid)) < 0) {
		util_strlcpy(msg, kr->error, sizeof(msg));
		KR_FAIL(kr, "%s: %s", path, msg);
	}
	fclose(fp);
	free(buf);
	return rc;
}

/* ---- signatures --------------------------------------------------------- */

static const struct alg_info *
alg_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_NELEM(algs); i++)
		if (strcmp(algs[i].name, name) == 0)
			return &algs[i];
	return NULL;
}

/* A JWS ES256 signature is r||s; OpenSSL wants an ASN.1 ECDSA-Sig-Value. */
static int
es256_raw_to_der(const unsigned char *raw, unsigned char **der)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r, *s;
	int n;

	if (sig == NULL)
		return -1;
	r = BN_bin2bn(raw, ES256_COORD, NULL);
	s = BN_bin2bn(raw + ES256_COORD, ES256_COORD, NULL);
	if (r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(sig);
		return -1;
	}
	*der = NULL;
	n = i2d_ECDSA_SIG(sig, der);
	ECDSA_SIG_free(sig);
	return n;
}

static int
es256_der_to_raw(const unsigned char *der, size_t len, unsigned char *raw)
{
	const BIGNUM *r, *s;
	ECDSA_SIG *sig;
	int ok;

	if ((sig = d2i_ECDSA_SIG(NULL, &der, (long)len)) == NULL)
		return -1;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, raw, ES256_COORD) == ES256_COORD &&
	     BN_bn2binpad(s, raw + ES256_COORD, ES256_COORD) == ES256_COORD;
	ECDSA_SIG_free(sig);
	return ok ? 0 : -1;
}

/* 1: the signature verifies; 0: it does not (or OpenSSL failed). */
static int
pkey_verify(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *msg,
	    size_t msglen, const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	/* For an RSA key the default padding is PKCS#1 v1.5: RS256. */
	ok = ctx != NULL &&
	     EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
	     EVP_DigestVerify(ctx, sig, siglen, msg, msglen) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static int
verify_sig(const struct jwt_keyring *kr, const struct alg_info *a,
	   const struct jwt_key *key, const unsigned char *msg, size_t msglen,
	   const unsigned char *sig, size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE], *der = NULL;
	unsigned maclen = 0;
	int n, ok = 0;

	switch (a->kind) {
	case KIND_HMAC:
		if (hmac_compute(kr, a->md(), msg, msglen, mac, &maclen) != 0)
			break;
		/* Constant time: no timing oracle for forging byte by byte. */
		ok = siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
		OPENSSL_cleanse(mac, sizeof(mac));
		break;
	case KIND_RSA:
		ok = siglen == (size_t)EVP_PKEY_get_size(key->pkey) &&
		     pkey_verify(key->pkey, a->md(), msg, msglen, sig, siglen);
		break;
	case KIND_EC:
		if (siglen != 2 * ES256_COORD)
			break;
		if ((n = es256_raw_to_der(sig, &der)) <= 0)
			break;
		ok = pkey_verify(key->pkey, a->md(), msg, msglen, der,
				 (size_t)n);
		OPENSSL_free(der);
		break;
	}
	ERR_clear_error();
	return ok;
}

/*
 * The key for a token: by kid when the token names one, else the only key
 * of the algorithm's kind, else the kind's default (kid-less) key.  A kid
 * no configured key has still selects a lone kid-less key, so that an
 * issuer that starts sending kids does not break a single-key setup.
 */
static int
pick_key(const struct jwt_keyring *kr, const struct alg_info *a,
	 const char *kid, const struct jwt_key **out, char *err, size_t errlen)
{
	const struct jwt_key *only = NULL, *dflt = NULL;
	unsigned i, n = 0;
	char q[48];

	for (i = 0; i < kr->nkeys; i++) {
		const struct jwt_key *k = &kr->keys[i];

		if (kid != NULL && k->kid != NULL && strcmp(k->kid, kid) == 0) {
			if (k->kind != a->kind)
				return fail(err, errlen, JWT_EALG,
					    "kid \"%s\" is an %s key, token "
					    "says %s",
					    printable(kid, q, sizeof(q)),
					    kind_names[k->kind], a->name);
			*out = k;
			return JWT_OK;
		}
		if (k->kind == a->kind) {
			n++;
			only = k;
			if (k->kid == NULL)
				dflt = k;
		}
	}
	if (kid == NULL && n == 1)
		*out = only;
	else if (dflt != NULL)
		*out = dflt;
	else if (kid != NULL)
		return fail(err, errlen, JWT_EKEY, "no %s key with kid \"%s\"",
			    kind_names[a->kind], printable(kid, q, sizeof(q)));
	else
		return fail(err, errlen, JWT_EKEY,
			    "token has no kid and %u %s keys are configured", n,
			    kind_names[a->kind]);
	return JWT_OK;
}

/* ---- signing ------------------------------------------------------------ */

/* Sign msg with a private key PEM of the alg's kind; returns sig length. */
static int
pkey_sign(const struct alg_info *a, const void *pem, size_t pemlen,
	  const unsigned char *msg, size_t msglen, unsigned char *sig,
	  size_t cap)
{
	unsigned char *buf = NULL;
	EVP_MD_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	enum key_kind kind;
	size_t n = 0;
	BIO *bio;
	int rc = -1;

	if (pemlen > JWT_PEM_MAX ||
	    (bio = BIO_new_mem_buf(pem, (int)pemlen)) == NULL)
		return -1;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL || pkey_kind(pkey, &kind, NULL, 0) < 0 ||
	    kind != a->kind)
		goto out;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(ctx, NULL, a->md(), NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, msg, msglen) != 1)
		goto out;
	buf = util_malloc(n);
	if (EVP_DigestSign(ctx, buf, &n, msg, msglen) != 1)
		goto out;
	if (kind == KIND_EC) {
		if (cap < 2 * ES256_COORD || es256_der_to_raw(buf, n, sig) < 0)
			goto out;
		rc = 2 * ES256_COORD;
	} else if (n <= cap) {
		memcpy(sig, buf, n);
		rc = (int)n;
	}
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}

int
jwt_sign_raw(const char *alg, const void *key, size_t keylen,
	     const char *header_json, const char *claims_json, char *out,
	     size_t cap)
{
	const struct alg_info *a = alg_lookup(alg);
	unsigned char sig[1024];
	unsigned siglen = 0;
	int n, m, s;

	if (a == NULL && strcmp(alg, "none") != 0)
		return -1;
	if ((n = jwt_b64url_encode(header_json, strlen(header_json), out,
				   cap)) < 0 ||
	    (size_t)n + 1 >= cap)
		return -1;
	out[n++] = '.';
	if ((m = jwt_b64url_encode(claims_json, strlen(claims_json), out + n,
				   cap - (size_t)n)) < 0 ||
	    (size_t)(n + m) + 1 >= cap)
		return -1;
	n += m;
	if (a == NULL) {
		siglen = 0;
	} else if (a->kind == KIND_HMAC) {
		if (keylen == 0 ||
		    HMAC(a->md(), key, (int)keylen, (unsigned char *)out,
			 (size_t)n, sig, &siglen) == NULL)
			return -1;
	} else {
		if ((s = pkey_sign(a, key, keylen, (unsigned char *)out,
				   (size_t)n, sig, sizeof(sig))) < 0)
			return -1;
		siglen = (unsigned)s;
	}
	out[n++] = '.';
	if ((m = jwt_b64url_encode(sig, siglen, out + n, cap - (size_t)n)) < 0)
		return -1;
	OPENSSL_cleanse(sig, sizeof(sig));
	return n + m;
}

int
jwt_sign(const char *alg, const void *key, size_t keylen, const char *kid,
	 const char *claims_json, char *out, size_t cap)
{
	char hdr[64 + JWT_ID_SIZE];
	const char *p;

	if (alg_lookup(alg) == NULL)
		return -1;
	if (kid != NULL) {
		/* Refuse what would need escaping rather than escape it. */
		if (strlen(kid) >= JWT_ID_SIZE)
			return -1;
		for (p = kid; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
				return -1;
		snprintf(hdr, sizeof(hdr),
			 "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg,
			 kid);
	} else {
		snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
			 alg);
	}
	return jwt_sign_raw(alg, key, keylen, hdr, claims_json, out, cap);
}

int
jwt_sign_hs256(const void *secret, size_t len, const char *claims_json,
	       char *out, size_t cap)
{
	return jwt_sign("HS256", secret, len, NULL, claims_json, out, cap);
}

/* ---- verification ------------------------------------------------------- */

void
jwt_policy_init(struct jwt_policy *pol)
{
	memset(pol, 0, sizeof(*pol));
	pol->leeway = JWT_LEEWAY_DEFAULT;
	pol->max_len = JWT_MAX_TOKEN_DEFAULT;
}

/*
 * The value of member name of object obj; -1 if absent, -2 if the name
 * appears more than once.  json_obj_get() lets the first duplicate win,
 * but RFC 7515 section 5.2 wants duplicates rejected (or the last one
 * used): another parser reading the same token must not see another value.
 */
static int
member(const struct json_doc *d, int obj, const char *name)
{
	int k, found = -1;

	for (k = json_first(d, obj); k >= 0; k = json_next(d, k)) {
		if (!json_str_eq(d, k, name))
			continue;
		if (found >= 0)
			return -2;
		found = json_obj_value(d, k);
	}
	return found;
}

/* Header: alg (chosen by the token, allowed by the keyring) and kid. */
static int
parse_header(const struct json_doc *d, const struct alg_info **ap, char *alg,
	     char *kid, bool *has_kid, char *err, size_t errlen)
{
	int root = json_root(d), tok, rc;
	char q[48];

	if ((tok = member(d, root, "alg")) == -2 ||
	    member(d, root, "kid") == -2 || member(d, root, "crit") == -2)
		return fail(err, errlen, JWT_EMALFORMED,
			    "duplicate header parameter");
	if (json_type(d, tok) != JSON_STRING)
		return fail(err, errlen, JWT_EALG,
			    "header alg missing or not a string");
	rc = json_get_string(d, tok, alg, JWT_ALG_SIZE, NULL);
	if (rc == 0 && strcmp(alg, "none") == 0)
		return fail(err, errlen, JWT_EALG, "alg none refused");
	if (rc != 0 || (*ap = alg_lookup(alg)) == NULL)
		return fail(err, errlen, JWT_EALG, "unsupported alg \"%s\"",
			    rc == 0 ? printable(alg, q, sizeof(q)) : "(long)");
	/*
	 * crit lists extensions the verifier must understand (RFC 7515
	 * 4.1.11), such as b64:false; none are implemented, so refuse.
	 */
	if (member(d, root, "crit") >= 0)
		return fail(err, errlen, JWT_EMALFORMED,
			    "header crit not supported");
	*has_kid = false;
	if ((tok = member(d, root, "kid")) < 0)
		return JWT_OK;
	if (json_type(d, tok) != JSON_STRING)
		return fail(err, errlen, JWT_EMALFORMED,
			    "header kid not a string");
	rc = json_get_string(d, tok, kid, JWT_ID_SIZE, NULL);
	if (rc == JSON_E_NOSPACE) /* configured kids are shorter */
		return fail(err, errlen, JWT_EKEY, "header kid too long");
	if (rc != 0)
		return fail(err, errlen, JWT_EMALFORMED, "header kid: %s",
			    json_strerror(rc));
	*has_kid = true;
	return JWT_OK;
}

/* A string claim copied whole into out[cap]; "" when absent. */
static int
claim_str(const struct json_doc *d, int obj, const char *name, char *out,
	  size_t cap, char *err, size_t errlen)
{
	int tok = member(d, obj, name), rc;
	size_t n = 0;

	out[0] = '\0';
	if (tok == -2)
		return fail(err, errlen, JWT_ECLAIMS, "duplicate claim %s",
			    name);
	if (tok == -1)
		return JWT_OK;
	if (json_type(d, tok) != JSON_STRING)
		return fail(err, errlen, JWT_ECLAIMS, "claim %s not a string",
			    name);
	rc = json_get_string(d, tok, out, cap, &n);
	if (rc == JSON_E_NOSPACE)
		return fail(err, errlen, JWT_ECLAIMS,
			    "claim %s of %zu bytes (max %zu)", name, n,
			    cap - 1);
	if (rc != 0)
		return fail(err, errlen, JWT_ECLAIMS, "claim %s: %s", name,
			    json_strerror(rc));
	return JWT_OK;
}

/*
 * A NumericDate.  Issuers such as PyJWT with time.time() write fractions:
 * they are accepted and rounded toward the stricter side (exp down, nbf and
 * iat up), so rounding never extends a token's life.
 */
static int
claim_time(const struct json_doc *d, int obj, const char *name, bool round_up,
	   int64_t *out, bool *present, char *err, size_t errlen)
{
	int tok = member(d, obj, name), rc;
	double v;

	*present = false;
	if (tok == -2)
		return fail(err, errlen, JWT_ECLAIMS, "duplicate claim %s",
			    name);
	if (tok == -1)
		return JWT_OK;
	if (json_type(d, tok) != JSON_NUMBER)
		return fail(err, errlen, JWT_ECLAIMS, "claim %s not a number",
			    name);
	rc = json_get_int64(d, tok, out);
	if (rc == JSON_E_TYPE && json_get_double(d, tok, &v) == 0 &&
	    v > -1e15 && v < 1e15) {
		*out = (int64_t)v; /* truncates toward zero */
		if (round_up && (double)*out < v)
			(*out)++;
		else if (!round_up && (double)*out > v)
			(*out)--;
		rc = 0;
	}
	if (rc != 0)
		return fail(err, errlen, JWT_ECLAIMS, "claim %s out of range",
			    name);
	*present = true;
	return JWT_OK;
}

/* aud: a string or an array of strings; matched against want if set. */
static int
claim_aud(const struct json_doc *d, int obj, const char *want, char *err,
	  size_t errlen)
{
	int tok = member(d, obj, "aud"), el;
	bool match = false;

	if (tok == -2)
		return fail(err, errlen, JWT_ECLAIMS, "duplicate claim aud");
	switch (json_type(d, tok)) {
	case JSON_NONE:
		break;
	case JSON_STRING:
		match = want != NULL && json_str_eq(d, tok, want);
		break;
	case JSON_ARRAY:
		for (el = json_first(d, tok); el >= 0; el = json_next(d, el)) {
			if (json_type(d, el) != JSON_STRING)
				return fail(err, errlen, JWT_ECLAIMS,
					    "claim aud holds a non-string");
			if (want != NULL && json_str_eq(d, el, want))
				match = true;
		}
		break;
	default:
		return fail(err, errlen, JWT_ECLAIMS,
			    "claim aud not a string or array");
	}
	if (want != NULL && !match)
		return fail(err, errlen, JWT_ECLAIMS, "audience mismatch");
	return JWT_OK;
}

static int
claim_scopes(const struct json_doc *d, int obj, struct jwt_claims *c, char *err,
	     size_t errlen)
{
	int tok = member(d, obj, "scopes"), el, rc;
	size_t n = 0;

	if (tok == -2)
		return fail(err, errlen, JWT_ECLAIMS, "duplicate claim scopes");
	if (tok == -1)
		return JWT_OK;
	if (json_type(d, tok) != JSON_ARRAY)
		return fail(err, errlen, JWT_ECLAIMS,
			    "claim scopes not an array");
	if (json_array_len(d, tok) > JWT_SCOPES_MAX)
		return fail(err, errlen, JWT_ECLAIMS, "%d scopes (max %d)",
			    json_array_len(d, tok), JWT_SCOPES_MAX);
	for (el = json_first(d, tok); el >= 0; el = json_next(d, el)) {
		if (json_type(d, el) != JSON_STRING)
			return fail(err, errlen, JWT_ECLAIMS,
				    "claim scopes holds a non-string");
		rc = json_get_string(d, el, c->scopes[c->nscopes],
				     JWT_SCOPE_SIZE, &n);
		if (rc != 0)
			return fail(err, errlen, JWT_ECLAIMS, "scope %u: %s",
				    c->nscopes,
				    rc == JSON_E_NOSPACE ? "too long"
							 : json_strerror(rc));
		c->nscopes++;
	}
	return JWT_OK;
}

/*
 * true when t lies more than leeway seconds before ref.  The difference is
 * taken in unsigned arithmetic, where it cannot overflow whatever the
 * token's numbers are.
 */
static bool
before_by_more(int64_t t, int64_t ref, unsigned leeway)
{
	return t < ref && (uint64_t)ref - (uint64_t)t > leeway;
}

/*
 * The payload of a token whose signature verified.  Shape and value checks
 * come first and the clock last, so JWT_EEXPIRED means "valid but for its
 * age" and a client may answer it by refreshing.
 */
static int
check_claims(const struct json_doc *d, const struct jwt_policy *pol,
	     int64_t now, struct jwt_claims *c, char *err, size_t errlen)
{
	const char *want_type = pol->type != NULL ? pol->type : "access";
	char sub[JWT_ID_SIZE], oid[JWT_ID_SIZE], q[48];
	const struct {
		const char *name;
		char *out;
		size_t cap;
	} strs[] = {
	    {"sub", sub, sizeof(sub)},
	    {"orchestratorId", oid, sizeof(oid)},
	    {"daemonId", c->daemon_id, sizeof(c->daemon_id)},
	    {"organizationId", c->organization_id, sizeof(c->organization_id)},
	    {"workspaceId", c->workspace_id, sizeof(c->workspace_id)},
	    {"jti", c->jti, sizeof(c->jti)},
	    {"iss", c->iss, sizeof(c->iss)},
	    {"type", c->type, sizeof(c->type)},
	};
	int root = json_root(d), rc;
	bool has_exp;
	size_t i;

	for (i = 0; i < UTIL_NELEM(strs); i++)
		if ((rc = claim_str(d, root, strs[i].name, strs[i].out,
				    strs[i].cap, err, errlen)) != 0)
			return rc;
	if ((rc = claim_time(d, root, "exp", false, &c->exp, &has_exp, err,
			     errlen)) != 0 ||
	    (rc = claim_time(d, root, "nbf", true, &c->nbf, &c->has_nbf, err,
			     errlen)) != 0 ||
	    (rc = claim_time(d, root, "iat", true, &c->iat, &c->has_iat, err,
			     errlen)) != 0 ||
	    (rc = claim_aud(d, root, pol->aud, err, errlen)) != 0 ||
	    (rc = claim_scopes(d, root, c, err, errlen)) != 0)
		return rc;
	if (!has_exp)
		return fail(err, errlen, JWT_ECLAIMS, "claim exp missing");

	/* Two spellings of one claim: if both, they must agree. */
	if (sub[0] != '\0' && oid[0] != '\0' && strcmp(sub, oid) != 0)
		return fail(err, errlen, JWT_ECLAIMS,
			    "claims sub and orchestratorId differ");
	if (sub[0] == '\0' && oid[0] == '\0')
		return fail(err, errlen, JWT_ECLAIMS,
			    "no orchestrator (sub or orchestratorId)");
	util_strlcpy(c->orchestrator, oid[0] != '\0' ? oid : sub,
		     sizeof(c->orchestrator));

	/*
	 * Issuers that do not set type are common, so a missing type passes
	 * as "access", but as nothing else: a token for any other use (a
	 * refresh token) must say what it is.
	 */
	if (c->type[0] == '\0' && member(d, root, "type") < 0 &&
	    strcmp(want_type, "access") == 0)
		util_strlcpy(c->type, "access", sizeof(c->type));
	if (strcmp(c->type, want_type) != 0)
		return fail(err, errlen, JWT_ECLAIMS,
			    "token type \"%s\" (expected \"%s\")",
			    printable(c->type, q, sizeof(q)), want_type);
	if (pol->iss != NULL && strcmp(c->iss, pol->iss) != 0)
		return fail(err, errlen, JWT_ECLAIMS, "issuer mismatch");

	if (before_by_more(c->exp, now, pol->leeway))
		return fail(err, errlen, JWT_EEXPIRED, "expired %lld s ago",
			    (long long)((uint64_t)now - (uint64_t)c->exp));
	if (c->has_nbf && before_by_more(now, c->nbf, pol->leeway))
		return fail(err, errlen, JWT_ENOTYET, "nbf in the future");
	if (c->has_iat && before_by_more(now, c->iat, pol->leeway))
		return fail(err, errlen, JWT_ENOTYET, "iat in the future");
	return JWT_OK;
}

static bool
alg_configured(const struct jwt_keyring *kr, const struct alg_info *a)
{
	unsigned i;

	if (kr == NULL)
		return false;
	if (a->kind == KIND_HMAC)
		return kr->secret != NULL;
	for (i = 0; i < kr->nkeys; i++)
		if (kr->keys[i].kind == a->kind)
			return true;
	return false;
}

int
jwt_verify(const struct jwt_keyring *kr, const struct jwt_policy *pol,
	   const char *token, size_t len, struct jwt_claims *out, char *err,
	   size_t errlen)
{
	static const struct json_limits hlim = {
	    .max_tokens = 64,
	    .max_depth = 8,
	    .flags = JSON_REQUIRE_OBJECT,
	};
	static const struct json_limits plim = {
	    .flags = JSON_REQUIRE_OBJECT,
	};
	const struct alg_info *a = NULL;
	const struct jwt_key *key = NULL;
	const char *dot1, *dot2, *end;
	struct json_doc hd, pd;
	struct jwt_policy defpol;
	struct jwt_claims c;
	size_t hlen, plen, slen, max;
	unsigned char *buf = NULL, *hdr, *pay, *sig;
	int hn, pn, sn, rc;
	bool has_kid = false;
	int64_t now;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	memset(&hd, 0, sizeof(hd));
	memset(&pd, 0, sizeof(pd));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (pol == NULL) {
		jwt_policy_init(&defpol);
		pol = &defpol;
	}
	max = pol->max_len ? pol->max_len : JWT_MAX_TOKEN_DEFAULT;
	if (token == NULL || len == 0)
		return fail(err, errlen, JWT_EMALFORMED, "empty token");
	/* Before any decoding: a huge token costs nothing but this test. */
	if (len > max)
		return fail(err, errlen, JWT_EMALFORMED,
			    "token of %zu bytes (max %zu)", len, max);
	end = token + len;

	if ((dot1 = memchr(token, '.', len)) == NULL ||
	    (dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1))) == NULL ||
	    memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL)
		return fail(err, errlen, JWT_EMALFORMED,
			    "not three dot-separated segments");
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	slen = (size_t)(end - dot2 - 1);
	if (hlen == 0 || plen == 0)
		return fail(err, errlen, JWT_EMALFORMED,
			    "empty header or payload");

	/* Each decoded segment is shorter than its text: len bytes suffice. */
	buf = util_malloc(len);
	hdr = buf;
	pay = hdr + hlen;
	sig = pay + plen;
	if ((hn = jwt_b64url_decode(token, hlen, hdr, hlen)) < 0 ||
	    (pn = jwt_b64url_decode(dot1 + 1, plen, pay, plen)) < 0 ||
	    (sn = jwt_b64url_decode(dot2 + 1, slen, sig, slen)) < 0) {
		rc = fail(err, errlen, JWT_EMALFORMED, "bad base64url");
		goto out;
	}

	if ((rc = json_parse(&hd, (char *)hdr, (size_t)hn, &hlim)) != 0) {
		rc = fail(err, errlen, JWT_EMALFORMED,
			  "header not a JSON object: %s", json_strerror(rc));
		goto out;
	}
	if ((rc = parse_header(&hd, &a, c.alg, c.kid, &has_kid, err, errlen)) !=
	    0)
		goto out;
	if (!alg_configured(kr, a)) {
		rc = fail(err, errlen, JWT_EALG, "alg %s not configured",
			  a->name);
		goto out;
	}
	/* The single HMAC secret needs no kid; a kid there is ignored. */
	if (a->kind != KIND_HMAC &&
	    (rc = pick_key(kr, a, has_kid ? c.kid : NULL, &key, err, errlen)) !=
		0)
		goto out;
	if (!verify_sig(kr, a, key, (const unsigned char *)token,
			(size_t)(dot2 - token), sig, (size_t)sn)) {
		rc = fail(err, errlen, JWT_ESIG, "bad %s signature", a->name);
		goto out;
	}

	/* Only now is the payload authentic enough to be parsed. */
	if ((rc = json_parse(&pd, (char *)pay, (size_t)pn, &plim)) != 0) {
		rc = fail(err, errlen, JWT_EMALFORMED,
			  "payload not a JSON object: %s", json_strerror(rc));
		goto out;
	}
	now = pol->now != 0 ? pol->now : (int64_t)time(NULL);
	if ((rc = check_claims(&pd, pol, now, &c, err, errlen)) != 0)
		goto out;
	*out = c;
	rc = JWT_OK;
out:
	json_doc_free(&hd);
	json_doc_free(&pd);
	free(buf);
	return rc;
}
