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

static const struct alg_info algs[] = {
	{"HS256", KIND_HMAC, EVP_sha256},
	{"HS384", KIND_HMAC, EVP_sha384},
	{"HS512", KIND_HMAC, EVP_sha512},
	{"RS256", KIND_RSA, EVP_sha256},
	{"ES256", KIND_EC, EVP_sha256},
};

struct jwt_key {
	EVP_PKEY *pkey;
	enum key_kind kind;
	char *kid; /* NULL: the default key of its kind */
};

struct jwt_keyring {
	unsigned char *secret;
	size_t secret_len;
	struct jwt_key *keys;
	unsigned nkeys;
	char error[256];
};

static const char *const kind_names[] = {"HMAC", "RSA", "EC P-256"};

/* ---- error text --------------------------------------------------------- */

static int ORCHD_PRINTF(4, 5)
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

static void ORCHD_PRINTF(2, 3)
kr_error(struct jwt_keyring *kr, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(kr->error, sizeof(kr->error), fmt, ap);
	va_end(ap);
}

const char *
jwt_strerror(int rc)
{
	switch (rc) {
	case JWT_OK:
		return "ok";
	case JWT_EMALFORMED:
		return "malformed token";
	case JWT_EALG:
		return "algorithm refused";
	case JWT_EKEY:
		return "no matching key";
	case JWT_ESIG:
		return "bad signature";
	case JWT_EEXPIRED:
		return "token expired";
	case JWT_ENOTYET:
		return "token not yet valid";
	case JWT_ECLAIMS:
		return "invalid claims";
	}
	return "unknown error";
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

int
jwt_keyring_set_secret(struct jwt_keyring *kr, const void *secret,
		       size_t len)
{
	kr->error[0] = '\0';
	if (secret == NULL || len == 0) {
		kr_error(kr, "empty HMAC secret");
		return -1;
	}
	OPENSSL_clear_free(kr->secret, kr->secret_len);
	kr->secret = util_malloc(len);
	memcpy(kr->secret, secret, len);
	kr->secret_len = len;
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
pkey_kind(struct jwt_keyring *kr, EVP_PKEY *pkey, enum key_kind *kind)
{
	char group[64];
	int bits;

	if (EVP_PKEY_is_a(pkey, "RSA")) {
		bits = EVP_PKEY_get_bits(pkey);
		if (bits < 2048) {
			kr_error(kr, "RSA key of %d bits (2048 needed)", bits);
			return -1;
		}
		*kind = KIND_RSA;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group),
					    NULL) != 1 ||
		    strcmp(group, "prime256v1") != 0) {
			kr_error(kr, "EC key not on P-256 (only ES256 is "
				     "supported)");
			return -1;
		}
		*kind = KIND_EC;
		return 0;
	}
	kr_error(kr, "unsupported key type %s (RSA or EC P-256 expected)",
		 EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey)
					       : "?");
	return -1;
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
	if (kid != NULL && (kid[0] == '\0' || strlen(kid) >= JWT_ID_SIZE)) {
		kr_error(kr, "kid must be 1 to %d bytes", JWT_ID_SIZE - 1);
		return -1;
	}
	if (len > JWT_PEM_MAX || (blocks = pem_blocks(pem, len)) == 0) {
		kr_error(kr, "not a PEM public key");
		return -1;
	}
	if (blocks > 1) {
		kr_error(kr, "%u PEM blocks: one key per file", blocks);
		return -1;
	}
	pkey = pem_to_pkey(pem, len);
	ERR_clear_error();
	if (pkey == NULL) {
		kr_error(kr, "no public key in PEM data (a private key or "
			     "garbage?)");
		return -1;
	}
	if (pkey_kind(kr, pkey, &kind) < 0) {
		EVP_PKEY_free(pkey);
		return -1;
	}
	for (i = 0; i < kr->nkeys; i++) {
		const struct jwt_key *k = &kr->keys[i];

		/* Either key would be unselectable by a token. */
		if (kid != NULL && k->kid != NULL && strcmp(kid, k->kid) == 0) {
			kr_error(kr, "duplicate kid \"%s\"", kid);
			EVP_PKEY_free(pkey);
			return -1;
		}
		if (kid == NULL && k->kid == NULL && k->kind == kind) {
			kr_error(kr, "a second %s key without kid",
				 kind_names[kind]);
			EVP_PKEY_free(pkey);
			return -1;
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
	char *buf;
	size_t n;
	FILE *fp;
	int rc;

	kr->error[0] = '\0';
	if ((fp = fopen(path, "re")) == NULL) {
		kr_error(kr, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf = util_malloc(JWT_PEM_MAX + 1);
	n = fread(buf, 1, JWT_PEM_MAX + 1, fp);
	if (ferror(fp) || n > JWT_PEM_MAX) {
		kr_error(kr, "%s: %s", path,
			 ferror(fp) ? "read error" : "file too large");
		fclose(fp);
		free(buf);
		return -1;
	}
	fclose(fp);
	rc = jwt_keyring_add_pem(kr, buf, n, kid);
	free(buf);
	if (rc < 0) {
		char msg[sizeof(kr->error)];

		util_strlcpy(msg, kr->error, sizeof(msg));
		kr_error(kr, "%s: %s", path, msg);
	}
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
		if (HMAC(a->md(), kr->secret, (int)kr->secret_len, msg, msglen,
			 mac, &maclen) == NULL)
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
	struct jwt_keyring tmp;
	size_t n = 0;
	BIO *bio;
	int rc = -1;

	if (pemlen > JWT_PEM_MAX ||
	    (bio = BIO_new_mem_buf(pem, (int)pemlen)) == NULL)
		return -1;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL || pkey_kind(&tmp, pkey, &kind) < 0 || kind != a->kind)
		goto out;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(ctx, NULL, a->md(), NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, msg, msglen) != 1)
		goto out;
	buf = util_malloc(n);
	if (EVP_DigestSign(ctx, buf, &n, msg, msglen) != 1)
		goto out;
	if (kind == KIND_EC) {
		if (cap < 2 * ES256_COORD ||
		    es256_der_to_raw(buf, n, sig) < 0)
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
