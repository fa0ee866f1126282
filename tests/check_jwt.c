/*
 * Unit tests for jwt.c.  Every key is generated here, in process (RSA 2048
 * and EC P-256, once per run in an unchecked fixture), and every token is
 * signed here, so nothing depends on fixture files or the clock: the
 * policy's now is pinned to NOW.
 */
#include "config.h"

#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "orchd/credentials.h"
#include "orchd/jwt.h"

#define NOW 1800000000LL

static EVP_PKEY *rsa1, *rsa2, *ec1, *ec2;
static char *rsa1_pub, *rsa1_priv, *rsa2_pub, *rsa2_priv;
static char *ec1_pub, *ec1_priv, *ec2_pub, *ec2_priv;
static const char secret[] = "0123456789abcdef0123456789abcdef";

/* Per test (checked fixture): a keyring with every kind, a pinned policy. */
static struct jwt_keyring *kr;
static struct jwt_policy pol;
static struct jwt_claims cl;
static char errbuf[256];

/* ---- helpers ------------------------------------------------------------ */

static char *
pem_of(EVP_PKEY *k, int priv)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *s;
	long n;

	ck_assert_ptr_nonnull(bio);
	if (priv)
		ck_assert_int_eq(
		    PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL),
		    1);
	else
		ck_assert_int_eq(PEM_write_bio_PUBKEY(bio, k), 1);
	n = BIO_get_mem_data(bio, &data);
	s = strndup(data, (size_t)n);
	BIO_free(bio);
	return s;
}

static void
keys_setup(void)
{
	rsa1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ck_assert(rsa1 && rsa2 && ec1 && ec2);
	rsa1_pub = pem_of(rsa1, 0);
	rsa1_priv = pem_of(rsa1, 1);
	rsa2_pub = pem_of(rsa2, 0);
	rsa2_priv = pem_of(rsa2, 1);
	ec1_pub = pem_of(ec1, 0);
	ec1_priv = pem_of(ec1, 1);
	ec2_pub = pem_of(ec2, 0);
	ec2_priv = pem_of(ec2, 1);
}

static void
keys_teardown(void)
{
	EVP_PKEY_free(rsa1);
	EVP_PKEY_free(rsa2);
	EVP_PKEY_free(ec1);
	EVP_PKEY_free(ec2);
	free(rsa1_pub);
	free(rsa1_priv);
	free(rsa2_pub);
	free(rsa2_priv);
	free(ec1_pub);
	free(ec1_priv);
	free(ec2_pub);
	free(ec2_priv);
}

static void
ring_setup(void)
{
	kr = jwt_keyring_new();
	ck_assert_int_eq(jwt_keyring_set_secret(kr, secret, strlen(secret)), 0);
	ck_assert_int_eq(
	    jwt_keyring_add_pem(kr, rsa1_pub, strlen(rsa1_pub), NULL), 0);
	ck_assert_int_eq(
	    jwt_keyring_add_pem(kr, ec1_pub, strlen(ec1_pub), NULL), 0);
	jwt_policy_init(&pol);
	pol.now = NOW;
	memset(&cl, 0xa5, sizeof(cl)); /* so "left zeroed" means something */
	errbuf[0] = '\0';
}

static void
ring_teardown(void)
{
	jwt_keyring_free(kr);
	kr = NULL;
}

/* printf into one of a few rotating static buffers. */
static const char *__attribute__((format(printf, 1, 2))) fmt(const char *f, ...)
{
	static char bufs[4][16384];
	static unsigned i;
	char *b = bufs[i++ % 4];
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(b, sizeof(bufs[0]), f, ap);
	va_end(ap);
	ck_assert(n >= 0 && (size_t)n < sizeof(bufs[0]));
	return b;
}

#define STD_IDS                                                                \
	"\"sub\":\"orch-1\",\"daemonId\":\"d-1\",\"organizationId\":"          \
	"\"org-1\",\"workspaceId\":\"ws-1\",\"jti\":\"jti-1\","                \
	"\"scopes\":[\"messages:read\",\"vp:status\"],\"type\":\"access\""

/* Claims valid at NOW, plus extra members (", ..." or ""). */
static const char *
claims(const char *extra)
{
	return fmt("{" STD_IDS ",\"exp\":%lld,\"iat\":%lld%s}", NOW + 600, NOW,
		   extra);
}

/* The signing key for alg in the default keyring's set. */
static const char *
key_for(const char *alg, size_t *len)
{
	const char *k = strncmp(alg, "HS", 2) == 0  ? secret
			: strcmp(alg, "RS256") == 0 ? rsa1_priv
						    : ec1_priv;

	*len = strlen(k);
	return k;
}

static const char *
mk(const char *alg, const char *kid, const char *claims_json)
{
	static char bufs[4][16384];
	static unsigned i;
	char *b = bufs[i++ % 4];
	const char *key;
	size_t klen;
	int n;

	key = key_for(alg, &klen);
	n = jwt_sign(alg, key, klen, kid, claims_json, b, sizeof(bufs[0]));
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(strlen(b), (size_t)n);
	return b;
}

static const char *
mk_raw(const char *alg, const void *key, size_t klen, const char *header,
       const char *payload)
{
	static char bufs[4][16384];
	static unsigned i;
	char *b = bufs[i++ % 4];

	ck_assert_int_gt(
	    jwt_sign_raw(alg, key, klen, header, payload, b, sizeof(bufs[0])),
	    0);
	return b;
}

static const char *
hs256_raw(const char *header, const char *payload)
{
	return mk_raw("HS256", secret, strlen(secret), header, payload);
}

static int
ver_len(const char *t, size_t len)
{
	return jwt_verify(kr, &pol, t, len, &cl, errbuf, sizeof(errbuf));
}

static int
ver(const char *t)
{
	return ver_len(t, strlen(t));
}

/* Also checks that a failure explains itself and leaves *out zeroed. */
#define CK_VERIFY(t, want)                                                     \
	do {                                                                   \
		int rc_ = ver(t);                                              \
		ck_assert_msg(rc_ == (want),                                   \
			      "%s:%d: got %d (%s: %s), want %d", __FILE__,     \
			      __LINE__, rc_, jwt_strerror(rc_), errbuf,        \
			      (want));                                         \
		if (rc_ != JWT_OK) {                                           \
			ck_assert_str_ne(errbuf, "");                          \
			ck_assert_str_eq(cl.orchestrator, "");                 \
			ck_assert_uint_eq(cl.nscopes, 0);                      \
		}                                                              \
	} while (0)

/*
 * Flip one bit of the decoded bytes of segment seg (0..2) and re-encode, so
 * the result is still valid base64url and only the content changed.
 */
static const char *
flip(const char *tok, int seg, size_t byte, unsigned bit)
{
	static char out[16384];
	unsigned char raw[12288];
	const char *s[3], *e[3];
	size_t o = 0;
	int i, n;

	s[0] = tok;
	e[0] = strchr(s[0], '.');
	s[1] = e[0] + 1;
	e[1] = strchr(s[1], '.');
	s[2] = e[1] + 1;
	e[2] = s[2] + strlen(s[2]);
	for (i = 0; i < 3; i++) {
		if (i > 0)
			out[o++] = '.';
		if (i != seg) {
			memcpy(out + o, s[i], (size_t)(e[i] - s[i]));
			o += (size_t)(e[i] - s[i]);
			continue;
		}
		n = jwt_b64url_decode(s[i], (size_t)(e[i] - s[i]), raw,
				      sizeof(raw));
		ck_assert_int_gt(n, (int)byte);
		raw[byte] ^= (unsigned char)(1u << bit);
		n = jwt_b64url_encode(raw, (size_t)n, out + o, sizeof(out) - o);
		ck_assert_int_ge(n, 0);
		o += (size_t)n;
	}
	out[o] = '\0';
	return out;
}

/* The token with its signature segment replaced by b64url(sig[0..n)). */
static const char *
with_sig(const char *tok, const void *sig, size_t n)
{
	static char out[16384];
	size_t keep = (size_t)(strrchr(tok, '.') - tok) + 1;

	memcpy(out, tok, keep);
	ck_assert_int_ge(
	    jwt_b64url_encode(sig, n, out + keep, sizeof(out) - keep), 0);
	return out;
}

/* ---- base64url ---------------------------------------------------------- */

START_TEST(test_b64url_vectors)
{
	/* RFC 4648 section 10, without padding. */
	static const char *const vec[][2] = {
	    {"", ""},
	    {"f", "Zg"},
	    {"fo", "Zm8"},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg"},
	    {"fooba", "Zm9vYmE"},
	    {"foobar", "Zm9vYmFy"},
	};
	unsigned char raw[16];
	char enc[16];
	size_t i;
	int n;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		n = jwt_b64url_encode(vec[i][0], strlen(vec[i][0]), enc,
				      sizeof(enc));
		ck_assert_int_eq(n, (int)strlen(vec[i][1]));
		ck_assert_str_eq(enc, vec[i][1]);
		n = jwt_b64url_decode(vec[i][1], strlen(vec[i][1]), raw,
				      sizeof(raw));
		ck_assert_int_eq(n, (int)strlen(vec[i][0]));
		ck_assert(memcmp(raw, vec[i][0], (size_t)n) == 0);
	}
	/* The url-safe alphabet: 0xfb 0xff is "+/8" in plain base64. */
	raw[0] = 0xfb;
	raw[1] = 0xff;
	ck_assert_int_eq(jwt_b64url_encode(raw, 2, enc, sizeof(enc)), 3);
	ck_assert_str_eq(enc, "-_8");
	ck_assert_int_eq(jwt_b64url_decode("-_8", 3, raw, sizeof(raw)), 2);
	ck_assert_uint_eq(raw[0], 0xfb);
	ck_assert_uint_eq(raw[1], 0xff);
	/* Room for the NUL is needed. */
	ck_assert_int_eq(jwt_b64url_encode("foo", 3, enc, 4), -1);
	ck_assert_int_eq(jwt_b64url_encode("foo", 3, enc, 5), 4);
	ck_assert_int_eq(jwt_b64url_decode("Zm9v", 4, raw, 2), -1);
}
END_TEST

START_TEST(test_b64url_strict)
{
	static const char *const bad[] = {
	    "Zg==",    "Zm8=", "Zm+v",  "Zm/v", "Zm 9v",
	    "Zm9v\n",  "Z",    "Zm9vY", /* length 1 mod 4: not an encoding */
	    "Zh",      "Zm9",           /* unused low bits set: non-canonical */
	    "Zm9\x80",
	};
	unsigned char raw[16];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(jwt_b64url_decode(bad[i], strlen(bad[i]), raw,
						sizeof(raw)) == -1,
			      "accepted \"%s\"", bad[i]);
	/* The canonical forms of the last two are fine. */
	ck_assert_int_eq(jwt_b64url_decode("Zg", 2, raw, sizeof(raw)), 1);
	ck_assert_int_eq(jwt_b64url_decode("Zm8", 3, raw, sizeof(raw)), 2);
	ck_assert_int_eq(jwt_b64url_decode("Zm\0v", 4, raw, sizeof(raw)), -1);
}
END_TEST

/* ---- valid tokens ------------------------------------------------------- */

static void
check_std_claims(const char *alg)
{
	ck_assert_str_eq(cl.orchestrator, "orch-1");
	ck_assert_str_eq(cl.daemon_id, "d-1");
	ck_assert_str_eq(cl.organization_id, "org-1");
	ck_assert_str_eq(cl.workspace_id, "ws-1");
	ck_assert_str_eq(cl.jti, "jti-1");
	ck_assert_str_eq(cl.type, "access");
	ck_assert_str_eq(cl.alg, alg);
	ck_assert_uint_eq(cl.nscopes, 2);
	ck_assert_str_eq(cl.scopes[0], "messages:read");
	ck_assert_str_eq(cl.scopes[1], "vp:status");
	ck_assert_int_eq(cl.exp, NOW + 600);
	ck_assert(cl.has_iat);
	ck_assert_int_eq(cl.iat, NOW);
	ck_assert(!cl.has_nbf);
}

START_TEST(test_valid_all_algs)
{
	static const char *const alg[] = {"HS256", "HS384", "HS512", "RS256",
					  "ES256"};
	static const size_t siglen[] = {32, 48, 64, 256, 64};
	unsigned char sig[512];
	const char *t;
	size_t i;

	for (i = 0; i < sizeof(alg) / sizeof(alg[0]); i++) {
		t = mk(alg[i], NULL, claims(""));
		CK_VERIFY(t, JWT_OK);
		check_std_claims(alg[i]);
		ck_assert_str_eq(cl.kid, "");
		ck_assert_str_eq(errbuf, "");
		/* The signature has the size the JWA says. */
		ck_assert_int_eq(jwt_b64url_decode(strrchr(t, '.') + 1,
						   strlen(strrchr(t, '.') + 1),
						   sig, sizeof(sig)),
				 (int)siglen[i]);
	}
}
END_TEST

START_TEST(test_valid_sign_hs256_helper)
{
	char t[1024];
	int n;

	n = jwt_sign_hs256(secret, strlen(secret), claims(""), t, sizeof(t));
	ck_assert_int_gt(n, 0);
	CK_VERIFY(t, JWT_OK);
	check_std_claims("HS256");
	/* The header is the canonical {"alg":"HS256","typ":"JWT"}. */
	ck_assert(strncmp(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
	/* Too small a buffer is an error, not a truncated token. */
	ck_assert_int_eq(
	    jwt_sign_hs256(secret, strlen(secret), claims(""), t, (size_t)n),
	    -1);
	ck_assert_int_eq(jwt_sign_hs256(secret, strlen(secret), claims(""), t,
					(size_t)n + 1),
			 n);
}
END_TEST

START_TEST(test_valid_escapes_and_orchestrator_id)
{
	/* Strings are compared and stored unescaped. */
	CK_VERIFY(mk("HS256", NULL,
		     fmt("{\"orchestratorId\":\"orch\\u002d1\",\"exp\":%lld}",
			 NOW + 60)),
		  JWT_OK);
	ck_assert_str_eq(cl.orchestrator, "orch-1");
	ck_assert_str_eq(cl.type, "access"); /* missing type = access */
	ck_assert_uint_eq(cl.nscopes, 0);
	ck_assert(!cl.has_iat);
	/* Both spellings, equal: fine. */
	CK_VERIFY(mk("HS256", NULL,
		     fmt("{\"sub\":\"o\",\"orchestratorId\":\"o\",\"exp\":%lld"
			 ",\"scopes\":[]}",
			 NOW + 60)),
		  JWT_OK);
	ck_assert_str_eq(cl.orchestrator, "o");
	/* Unknown claims and header parameters are ignored. */
	CK_VERIFY(mk_raw("HS256", secret, strlen(secret),
			 "{\"typ\":\"at+jwt\",\"alg\":\"HS256\",\"x\":[1]}",
			 claims(",\"custom\":{\"a\":[null,true]}")),
		  JWT_OK);
}
END_TEST

START_TEST(test_clock_default_now)
{
	time_t t = time(NULL);

	pol.now = 0; /* the real clock */
	CK_VERIFY(mk("HS256", NULL,
		     fmt("{\"sub\":\"o\",\"exp\":%lld}", (long long)t + 600)),
		  JWT_OK);
	CK_VERIFY(mk("HS256", NULL,
		     fmt("{\"sub\":\"o\",\"exp\":%lld}", (long long)t - 3600)),
		  JWT_EEXPIRED);
}
END_TEST

/* ---- tampering ---------------------------------------------------------- */

START_TEST(test_tamper_each_segment)
{
	static const char *const alg[] = {"HS256", "HS512", "RS256", "ES256"};
	const char *t;
	size_t i;

	for (i = 0; i < sizeof(alg) / sizeof(alg[0]); i++) {
		t = mk(alg[i], NULL, claims(""));
		CK_VERIFY(t, JWT_OK);
		/* "typ":"JWT" -> "JWU": the header still parses. */
		CK_VERIFY(
		    flip(t, 0, strlen("{\"alg\":\"HS256\",\"typ\":\"JW"), 0),
		    JWT_ESIG);
		/* "orch-1" -> "orch-0". */
		CK_VERIFY(flip(t, 1, strlen("{\"sub\":\"orch-"), 0), JWT_ESIG);
		/* exp's last digit: 1800000600 -> 1800000602. */
		CK_VERIFY(flip(t, 1, strlen(claims("")) - 19, 1), JWT_ESIG);
		CK_VERIFY(flip(t, 2, 0, 7), JWT_ESIG);
		CK_VERIFY(flip(t, 2, 20, 0), JWT_ESIG);
	}
}
END_TEST

START_TEST(test_tamper_raw_chars)
{
	char t[2048];
	size_t i, n;
	int rc;

	/* Any one-bit change of any character of the text is refused. */
	snprintf(t, sizeof(t), "%s", mk("HS256", NULL, claims("")));
	n = strlen(t);
	for (i = 0; i < n; i++) {
		unsigned b;

		for (b = 0; b < 7; b++) {
			t[i] ^= (char)(1u << b);
			rc = ver(t);
			ck_assert_msg(rc != JWT_OK, "bit %u of char %zu", b, i);
			t[i] ^= (char)(1u << b);
		}
	}
	CK_VERIFY(t, JWT_OK);
}
END_TEST

START_TEST(test_signature_checked_before_claims)
{
	/*
	 * A payload that is not even JSON, and an expired one, under a bad
	 * signature: the answer is "bad signature", proof that nothing in
	 * the payload was looked at first.
	 */
	const char *junk =
	    mk_raw("HS256", "other", 5, "{\"alg\":\"HS256\"}", "not json");
	const char *old = mk_raw("HS256", "other", 5, "{\"alg\":\"HS256\"}",
				 fmt("{\"sub\":\"o\",\"exp\":1}"));

	CK_VERIFY(junk, JWT_ESIG);
	CK_VERIFY(old, JWT_ESIG);
	/* With the right key they fail on their content. */
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"}", "not json"), JWT_EMALFORMED);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"}", "[1,2]"), JWT_EMALFORMED);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"}", "null"), JWT_EMALFORMED);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"}", "{\"sub\":\"o\",\"exp\":1}"),
		  JWT_EEXPIRED);
}
END_TEST

/* ---- algorithms and keys ------------------------------------------------ */

START_TEST(test_alg_none)
{
	const char *p = claims("");

	/* The unsecured JWS form: empty signature segment. */
	CK_VERIFY(mk_raw("none", "", 0, "{\"alg\":\"none\"}", p), JWT_EALG);
	ck_assert_str_eq(errbuf, "alg none refused");
	CK_VERIFY(
	    mk_raw("none", "", 0, "{\"alg\":\"none\",\"typ\":\"JWT\"}", p),
	    JWT_EALG);
	/* With a signature (an HMAC made with the real secret). */
	CK_VERIFY(
	    mk_raw("HS256", secret, strlen(secret), "{\"alg\":\"none\"}", p),
	    JWT_EALG);
	/* Other spellings are merely unknown, and refused too. */
	CK_VERIFY(hs256_raw("{\"alg\":\"None\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"NONE\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"none \"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"hs256\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\\u0000\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"RS512\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"PS256\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":\"a-very-long-algorithm-name\"}", p),
		  JWT_EALG);
}
END_TEST

START_TEST(test_alg_not_string)
{
	const char *p = claims("");

	CK_VERIFY(hs256_raw("{}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"typ\":\"JWT\"}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":256}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":null}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":[\"HS256\"]}", p), JWT_EALG);
	CK_VERIFY(hs256_raw("{\"alg\":{\"HS256\":1}}", p), JWT_EALG);
}
END_TEST

START_TEST(test_alg_not_configured)
{
	struct jwt_keyring *k = kr;
	const char *rs = mk("RS256", NULL, claims(""));
	const char *es = mk("ES256", NULL, claims(""));
	const char *hs = mk("HS256", NULL, claims(""));

	/* Secret only: RS256 and ES256 refused. */
	kr = jwt_keyring_new();
	jwt_keyring_set_secret(kr, secret, strlen(secret));
	CK_VERIFY(rs, JWT_EALG);
	CK_VERIFY(es, JWT_EALG);
	CK_VERIFY(hs, JWT_OK);
	jwt_keyring_free(kr);
	/* RSA only: ES256 and every HS* refused. */
	kr = jwt_keyring_new();
	jwt_keyring_add_pem(kr, rsa1_pub, strlen(rsa1_pub), NULL);
	CK_VERIFY(rs, JWT_OK);
	CK_VERIFY(es, JWT_EALG);
	CK_VERIFY(hs, JWT_EALG);
	CK_VERIFY(mk("HS512", NULL, claims("")), JWT_EALG);
	jwt_keyring_free(kr);
	/* Empty keyring: nothing at all. */
	kr = jwt_keyring_new();
	CK_VERIFY(rs, JWT_EALG);
	CK_VERIFY(hs, JWT_EALG);
	jwt_keyring_free(kr);
	kr = k;
}
END_TEST

START_TEST(test_alg_confusion)
{
	/*
	 * The classic attack: sign HS256 with the RSA public key (which is
	 * public) as the HMAC secret, hoping the verifier feeds its RSA key
	 * to HMAC.
	 */
	const char *t = mk_raw("HS256", rsa1_pub, strlen(rsa1_pub),
			       "{\"alg\":\"HS256\"}", claims(""));
	const char *tk =
	    mk_raw("HS256", rsa1_pub, strlen(rsa1_pub),
		   "{\"alg\":\"HS256\",\"kid\":\"r1\"}", claims(""));
	struct jwt_keyring *k = kr;

	/* With a secret configured, the HMAC uses it and fails. */
	CK_VERIFY(t, JWT_ESIG);
	/* With no secret, HS256 is not even an allowed algorithm. */
	kr = jwt_keyring_new();
	jwt_keyring_add_pem(kr, rsa1_pub, strlen(rsa1_pub), "r1");
	CK_VERIFY(t, JWT_EALG);
	CK_VERIFY(tk, JWT_EALG);
	jwt_keyring_free(kr);
	kr = k;
	/* An ES256 token naming an RSA key by kid, and the reverse. */
	kr = jwt_keyring_new();
	jwt_keyring_add_pem(kr, rsa1_pub, strlen(rsa1_pub), "r1");
	jwt_keyring_add_pem(kr, ec1_pub, strlen(ec1_pub), "e1");
	CK_VERIFY(mk("ES256", "r1", claims("")), JWT_EALG);
	CK_VERIFY(mk("RS256", "e1", claims("")), JWT_EALG);
	CK_VERIFY(mk("ES256", "e1", claims("")), JWT_OK);
	CK_VERIFY(mk("RS256", "r1", claims("")), JWT_OK);
	jwt_keyring_free(kr);
	kr = k;
}
END_TEST

START_TEST(test_wrong_key)
{
	size_t n = strlen(rsa2_priv);

	CK_VERIFY(
	    mk_raw("RS256", rsa2_priv, n, "{\"alg\":\"RS256\"}", claims("")),
	    JWT_ESIG);
	CK_VERIFY(mk_raw("ES256", ec2_priv, strlen(ec2_priv),
			 "{\"alg\":\"ES256\"}", claims("")),
		  JWT_ESIG);
	CK_VERIFY(mk_raw("HS256", "another secret", 14, "{\"alg\":\"HS256\"}",
			 claims("")),
		  JWT_ESIG);
	/* A prefix of the secret is another secret. */
	CK_VERIFY(mk_raw("HS256", secret, strlen(secret) - 1,
			 "{\"alg\":\"HS256\"}", claims("")),
		  JWT_ESIG);
	/* Right secret, wrong hash: an HS384 MAC labelled HS512. */
	CK_VERIFY(mk_raw("HS384", secret, strlen(secret), "{\"alg\":\"HS512\"}",
			 claims("")),
		  JWT_ESIG);
}
END_TEST

START_TEST(test_kid_selection)
{
	const char *p = claims("");
	size_t n2 = strlen(rsa2_priv);

	ring_teardown();
	kr = jwt_keyring_new();
	ck_assert_int_eq(
	    jwt_keyring_add_pem(kr, rsa1_pub, strlen(rsa1_pub), "a"), 0);
	/* A lone key is used for a token without kid ... */
	CK_VERIFY(mk("RS256", NULL, p), JWT_OK);
	ck_assert_str_eq(cl.kid, "");
	CK_VERIFY(mk("RS256", "a", p), JWT_OK);
	ck_assert_str_eq(cl.kid, "a");
	/* ... but not for a token naming another kid. */
	CK_VERIFY(mk("RS256", "b", p), JWT_EKEY);
	CK_VERIFY(mk("RS256", "A", p), JWT_EKEY);
	CK_VERIFY(mk("RS256", "", p), JWT_EKEY);

	/* Two keys: chosen by kid; a token without kid is ambiguous. */
	ck_assert_int_eq(
	    jwt_keyring_add_pem(kr, rsa2_pub, strlen(rsa2_pub), "b"), 0);
	CK_VERIFY(mk_raw("RS256", rsa2_priv, n2,
			 "{\"alg\":\"RS256\",\"kid\":\"b\"}", p),
		  JWT_OK);
	ck_assert_str_eq(cl.kid, "b");
	CK_VERIFY(mk("RS256", "a", p), JWT_OK);
	ck_assert_str_eq(cl.kid, "a");
	/* Key 2's token claiming to be key a's. */
	CK_VERIFY(mk_raw("RS256", rsa2_priv, n2,
			 "{\"alg\":\"RS256\",\"kid\":\"a\"}", p),
		  JWT_ESIG);
	CK_VERIFY(mk("RS256", NULL, p), JWT_EKEY);
	CK_VERIFY(mk("RS256", "c", p), JWT_EKEY);
	/* Header kid of the wrong type or absurd length. */
	CK_VERIFY(mk_raw("RS256", rsa1_priv, strlen(rsa1_priv),
			 "{\"alg\":\"RS256\",\"kid\":1}", p),
		  JWT_EMALFORMED);
	CK_VERIFY(mk_raw("RS256", rsa1_priv, strlen(rsa1_priv),
			 fmt("{\"alg\":\"RS256\",\"kid\":\"%0300d\"}", 0), p),
		  JWT_EKEY);

	/* A kid-less third key becomes the default for unknown kids. */
	ck_assert_int_eq(
	    jwt_keyring_add_pem(kr, ec1_pub, strlen(ec1_pub), NULL), 0);
	CK_VERIFY(mk("ES256", NULL, p), JWT_OK);
	CK_VERIFY(mk("ES256", "whatever", p), JWT_OK);
	CK_VERIFY(mk("RS256", NULL, p), JWT_EKEY); /* still ambiguous */
}
END_TEST

START_TEST(test_hmac_ignores_kid)
{
	CK_VERIFY(mk("HS256", "any", claims("")), JWT_OK);
	ck_assert_str_eq(cl.kid, "any");
}
END_TEST

START_TEST(test_es256_signature_length)
{
	const char *t = mk("ES256", NULL, claims(""));
	const char *dot = strrchr(t, '.');
	unsigned char raw[80], der[80];
	size_t derlen = sizeof(der);
	EVP_MD_CTX *ctx;
	int n;

	n = jwt_b64url_decode(dot + 1, strlen(dot + 1), raw, sizeof(raw));
	ck_assert_int_eq(n, 64);
	CK_VERIFY(with_sig(t, raw, 64), JWT_OK);
	CK_VERIFY(with_sig(t, raw, 63), JWT_ESIG);
	raw[64] = 0;
	CK_VERIFY(with_sig(t, raw, 65), JWT_ESIG);
	CK_VERIFY(with_sig(t, raw, 0), JWT_ESIG);
	/* r = 0, s = 0 is never a valid signature. */
	memset(raw, 0, 64);
	CK_VERIFY(with_sig(t, raw, 64), JWT_ESIG);

	/* A genuine signature in DER form (a common issuer bug) is refused. */
	ctx = EVP_MD_CTX_new();
	ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ec1),
			 1);
	ck_assert_int_eq(EVP_DigestSign(ctx, der, &derlen,
					(const unsigned char *)t,
					(size_t)(dot - t)),
			 1);
	EVP_MD_CTX_free(ctx);
	CK_VERIFY(with_sig(t, der, derlen), JWT_ESIG);

	/* RS256 and HMAC signatures of the wrong length, likewise. */
	t = mk("RS256", NULL, claims(""));
	CK_VERIFY(with_sig(t, raw, 64), JWT_ESIG);
	t = mk("HS256", NULL, claims(""));
	CK_VERIFY(with_sig(t, raw, 31), JWT_ESIG);
	CK_VERIFY(with_sig(t, raw, 0), JWT_ESIG);
}
END_TEST

/* ---- time --------------------------------------------------------------- */

static const char *
timed(const char *fields)
{
	return mk("HS256", NULL, fmt("{\"sub\":\"o\",%s}", fields));
}

START_TEST(test_exp)
{
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW - 3600)), JWT_EEXPIRED);
	ck_assert_ptr_nonnull(strstr(errbuf, "3600"));
	/* Default leeway 30: the edge passes, one second more fails. */
	ck_assert_uint_eq(pol.leeway, 30);
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW - 30)), JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW - 31)), JWT_EEXPIRED);
	pol.leeway = 0;
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW)), JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW - 1)), JWT_EEXPIRED);
	pol.leeway = 300;
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW - 300)), JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld", NOW - 301)), JWT_EEXPIRED);
	/* Extremes do not overflow (UBSan watches). */
	CK_VERIFY(timed("\"exp\":-9223372036854775808"), JWT_EEXPIRED);
	CK_VERIFY(timed("\"exp\":9223372036854775807"), JWT_OK);
	CK_VERIFY(timed("\"exp\":0"), JWT_EEXPIRED);
}
END_TEST

START_TEST(test_exp_shape)
{
	CK_VERIFY(timed("\"iat\":1"), JWT_ECLAIMS); /* missing */
	CK_VERIFY(timed(fmt("\"exp\":\"%lld\"", NOW + 60)), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":true"), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":null"), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":[1]"), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":9223372036854775808"), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":1e400"), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":1e300"), JWT_ECLAIMS);
	/* Fractions pass, rounded toward the stricter side. */
	CK_VERIFY(timed(fmt("\"exp\":%lld.9", NOW + 60)), JWT_OK);
	ck_assert_int_eq(cl.exp, NOW + 60);
	CK_VERIFY(timed("\"exp\":1.8000006e9"), JWT_OK);
	ck_assert_int_eq(cl.exp, 1800000600);
	pol.leeway = 0;
	CK_VERIFY(timed(fmt("\"exp\":%lld.5", NOW - 1)), JWT_EEXPIRED);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":%lld.5", NOW + 60, NOW)),
		  JWT_ENOTYET);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":%lld.5", NOW + 60, NOW - 1)),
		  JWT_OK);
	ck_assert_int_eq(cl.nbf, NOW);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"exp\":%lld", NOW + 60, NOW + 60)),
		  JWT_ECLAIMS); /* duplicate */
}
END_TEST

START_TEST(test_nbf_iat)
{
	long long e = NOW + 600;

	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":%lld", e, NOW + 3600)),
		  JWT_ENOTYET);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":%lld", e, NOW + 30)), JWT_OK);
	ck_assert(cl.has_nbf);
	ck_assert_int_eq(cl.nbf, NOW + 30);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":%lld", e, NOW + 31)),
		  JWT_ENOTYET);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"iat\":%lld", e, NOW + 30)), JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"iat\":%lld", e, NOW + 31)),
		  JWT_ENOTYET);
	pol.leeway = 0;
	CK_VERIFY(
	    timed(fmt("\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld", e, NOW, NOW)),
	    JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":%lld", e, NOW + 1)),
		  JWT_ENOTYET);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"iat\":%lld", e, NOW + 1)),
		  JWT_ENOTYET);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":9223372036854775807", e)),
		  JWT_ENOTYET);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":-9223372036854775808", e)),
		  JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"nbf\":\"0\"", e)), JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"iat\":{}", e)), JWT_ECLAIMS);
}
END_TEST

START_TEST(test_expired_checked_last)
{
	/* An expired token with bad claims is a claims error, not expiry. */
	CK_VERIFY(timed("\"exp\":1,\"type\":\"refresh\""), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":1,\"scopes\":\"a\""), JWT_ECLAIMS);
	CK_VERIFY(timed("\"exp\":1"), JWT_EEXPIRED);
}
END_TEST

/* ---- claims ------------------------------------------------------------- */

START_TEST(test_iss_aud)
{
	pol.iss = "https://auth.example";
	CK_VERIFY(
	    mk("HS256", NULL, claims(",\"iss\":\"https://auth.example\"")),
	    JWT_OK);
	ck_assert_str_eq(cl.iss, "https://auth.example");
	CK_VERIFY(
	    mk("HS256", NULL, claims(",\"iss\":\"https://evil.example\"")),
	    JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"iss\":\"https://auth.exampl\"")),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims("")), JWT_ECLAIMS); /* missing */
	CK_VERIFY(mk("HS256", NULL,
		     claims(",\"iss\":[\"https://auth.example"
			    "\"]")),
		  JWT_ECLAIMS);
	pol.iss = NULL;
	CK_VERIFY(mk("HS256", NULL, claims(",\"iss\":\"anyone\"")), JWT_OK);
	CK_VERIFY(mk("HS256", NULL, claims(",\"iss\":7")), JWT_ECLAIMS);

	pol.aud = "orchd";
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":\"orchd\"")), JWT_OK);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":[\"api\",\"orchd\"]")),
		  JWT_OK);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":[\"api\",\"web\"]")),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":[]")), JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":\"orchd2\"")),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":\"orch\"")), JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims("")), JWT_ECLAIMS); /* missing */
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":[\"orchd\",1]")),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":{\"orchd\":1}")),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":\"x\",\"aud\":\"orchd\"")),
		  JWT_ECLAIMS);
	pol.aud = NULL;
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":[\"x\",\"y\"]")), JWT_OK);
	/* Duplicates are refused even when aud is not compared. */
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":\"x\",\"aud\":\"y\"")),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, claims(",\"aud\":[\"x\",false]")),
		  JWT_ECLAIMS);
}
END_TEST

START_TEST(test_type)
{
	char id[64];

	snprintf(id, sizeof(id), "\"sub\":\"o\",\"exp\":%lld", NOW + 60);

	CK_VERIFY(mk("HS256", NULL, fmt("{%s,\"type\":\"refresh\"}", id)),
		  JWT_ECLAIMS);
	ck_assert_ptr_nonnull(strstr(errbuf, "refresh"));
	CK_VERIFY(mk("HS256", NULL, fmt("{%s,\"type\":\"Access\"}", id)),
		  JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, fmt("{%s,\"type\":\"\"}", id)),
		  JWT_ECLAIMS); /* present, and not "access" */
	CK_VERIFY(mk("HS256", NULL, fmt("{%s,\"type\":1}", id)), JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, fmt("{%s}", id)), JWT_OK);
	ck_assert_str_eq(cl.type, "access");
	/* A refresh endpoint asks for refresh tokens, which must say so. */
	pol.type = "refresh";
	CK_VERIFY(mk("HS256", NULL, fmt("{%s,\"type\":\"refresh\"}", id)),
		  JWT_OK);
	ck_assert_str_eq(cl.type, "refresh");
	CK_VERIFY(mk("HS256", NULL, fmt("{%s}", id)), JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, fmt("{%s,\"type\":\"access\"}", id)),
		  JWT_ECLAIMS);
}
END_TEST

START_TEST(test_orchestrator)
{
	long long e = NOW + 60;

	CK_VERIFY(mk("HS256", NULL, fmt("{\"exp\":%lld}", e)), JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL, fmt("{\"sub\":\"\",\"exp\":%lld}", e)),
		  JWT_ECLAIMS);
	CK_VERIFY(
	    mk("HS256", NULL,
	       fmt("{\"sub\":\"a\",\"orchestratorId\":\"b\",\"exp\":%lld}", e)),
	    JWT_ECLAIMS);
	CK_VERIFY(
	    mk("HS256", NULL,
	       fmt("{\"sub\":\"\",\"orchestratorId\":\"b\",\"exp\":%lld}", e)),
	    JWT_OK);
	ck_assert_str_eq(cl.orchestrator, "b");
	CK_VERIFY(mk("HS256", NULL, fmt("{\"sub\":5,\"exp\":%lld}", e)),
		  JWT_ECLAIMS);
	CK_VERIFY(
	    mk("HS256", NULL,
	       fmt("{\"orchestratorId\":null,\"sub\":\"a\",\"exp\":%lld}", e)),
	    JWT_ECLAIMS);
	CK_VERIFY(mk("HS256", NULL,
		     fmt("{\"sub\":\"a\",\"sub\":\"b\",\"exp\":%lld}", e)),
		  JWT_ECLAIMS);
	CK_VERIFY(
	    mk("HS256", NULL, fmt("{\"sub\":\"a\\u0000b\",\"exp\":%lld}", e)),
	    JWT_ECLAIMS);
}
END_TEST

START_TEST(test_id_claim_types)
{
	static const char *const name[] = {"daemonId", "organizationId",
					   "workspaceId", "jti"};
	size_t i;

	for (i = 0; i < sizeof(name) / sizeof(name[0]); i++) {
		CK_VERIFY(mk("HS256", NULL,
			     fmt("{\"sub\":\"o\",\"exp\":%lld,\"%s\":\"v\"}",
				 NOW + 60, name[i])),
			  JWT_OK);
		CK_VERIFY(mk("HS256", NULL,
			     fmt("{\"sub\":\"o\",\"exp\":%lld,\"%s\":7}",
				 NOW + 60, name[i])),
			  JWT_ECLAIMS);
		CK_VERIFY(mk("HS256", NULL,
			     fmt("{\"sub\":\"o\",\"exp\":%lld,\"%s\":[\"v\"]}",
				 NOW + 60, name[i])),
			  JWT_ECLAIMS);
	}
}
END_TEST

START_TEST(test_scopes)
{
	char many[4096];
	size_t o;
	int i;

	CK_VERIFY(
	    timed(fmt("\"exp\":%lld,\"scopes\":\"messages:read\"", NOW + 60)),
	    JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"scopes\":{}", NOW + 60)),
		  JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"scopes\":[\"a\",1]", NOW + 60)),
		  JWT_ECLAIMS);
	CK_VERIFY(
	    timed(fmt("\"exp\":%lld,\"scopes\":[\"a\",[\"b\"]]", NOW + 60)),
	    JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"scopes\":[null]", NOW + 60)),
		  JWT_ECLAIMS);
	CK_VERIFY(
	    timed(fmt("\"exp\":%lld,\"scopes\":[\"a\\u0000\"]", NOW + 60)),
	    JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"scopes\":[]", NOW + 60)), JWT_OK);
	ck_assert_uint_eq(cl.nscopes, 0);

	/* 32 scopes pass, 33 do not. */
	o = (size_t)snprintf(many, sizeof(many), "\"exp\":%lld,\"scopes\":[",
			     NOW + 60);
	for (i = 0; i < 33; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%s\"s%d\"",
				      i ? "," : "", i);
	snprintf(many + o, sizeof(many) - o, "]");
	CK_VERIFY(timed(many), JWT_ECLAIMS);
	o = strlen(many); /* drop ,"s32" */
	many[o - 7] = ']';
	many[o - 6] = '\0';
	CK_VERIFY(timed(many), JWT_OK);
	ck_assert_uint_eq(cl.nscopes, 32);
	ck_assert_str_eq(cl.scopes[31], "s31");

	/* A scope of 64 bytes passes, 65 does not. */
	CK_VERIFY(
	    timed(fmt("\"exp\":%lld,\"scopes\":[\"%064d\"]", NOW + 60, 0)),
	    JWT_OK);
	ck_assert_uint_eq(strlen(cl.scopes[0]), 64);
	CK_VERIFY(
	    timed(fmt("\"exp\":%lld,\"scopes\":[\"%065d\"]", NOW + 60, 0)),
	    JWT_ECLAIMS);
}
END_TEST

START_TEST(test_huge_strings)
{
	long long e = NOW + 60;

	/* 127 bytes fit an id field, 128 do not: refused, never cut. */
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"jti\":\"%0127d\"", e, 0)), JWT_OK);
	ck_assert_uint_eq(strlen(cl.jti), 127);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"jti\":\"%0128d\"", e, 0)),
		  JWT_ECLAIMS);
	ck_assert_ptr_nonnull(strstr(errbuf, "jti of 128 bytes (max 127)"));
	CK_VERIFY(
	    mk("HS256", NULL, fmt("{\"sub\":\"%0127d\",\"exp\":%lld}", 0, e)),
	    JWT_OK);
	CK_VERIFY(
	    mk("HS256", NULL, fmt("{\"sub\":\"%0128d\",\"exp\":%lld}", 0, e)),
	    JWT_ECLAIMS);
	CK_VERIFY(
	    mk("HS256", NULL,
	       fmt("{\"orchestratorId\":\"%05000d\",\"exp\":%lld}", 0, e)),
	    JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"daemonId\":\"%0200d\"", e, 0)),
		  JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"iss\":\"%0255d\"", e, 0)), JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"iss\":\"%0256d\"", e, 0)),
		  JWT_ECLAIMS);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"type\":\"%040d\"", e, 0)),
		  JWT_ECLAIMS);
	/* An escape that expands past the field counts decoded bytes. */
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"jti\":\"%0125d\\u00e9\"", e, 0)),
		  JWT_OK); /* 125 + 2 bytes of UTF-8 */
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"jti\":\"%0126d\\u00e9\"", e, 0)),
		  JWT_ECLAIMS);
	/* An unknown claim may be large; the token limit bounds it. */
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"pad\":\"%05000d\"", e, 0)), JWT_OK);
}
END_TEST

/* ---- malformed ---------------------------------------------------------- */

START_TEST(test_garbage)
{
	char t[8192], h[2048], p[2048], s[2048];
	const char *v = mk("HS256", NULL, claims(""));
	const char *d1 = strchr(v, '.'), *d2 = strrchr(v, '.');
	static const char *const junk[] = {
	    "",         ".",
	    "..",       "...",
	    "a",        "a.b",
	    "abc.def",  "a.b.c.d",
	    "eyJ.eyJ.", ".eyJhIjoxfQ.",
	    " ",        "\xff.\xff.\xff",
	};
	size_t i;

	CK_VERIFY(v, JWT_OK);
	snprintf(h, sizeof(h), "%.*s", (int)(d1 - v), v);
	snprintf(p, sizeof(p), "%.*s", (int)(d2 - d1 - 1), d1 + 1);
	snprintf(s, sizeof(s), "%s", d2 + 1);

	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		CK_VERIFY(junk[i], JWT_EMALFORMED);

		/* Padding, the other alphabet, whitespace: in each segment. */
#define BAD(...)                                                               \
	do {                                                                   \
		snprintf(t, sizeof(t), __VA_ARGS__);                           \
		CK_VERIFY(t, JWT_EMALFORMED);                                  \
	} while (0)
	BAD("%s=.%s.%s", h, p, s);
	BAD("%s.%s==.%s", h, p, s);
	BAD("%s.%s.%s=", h, p, s);
	BAD("%s.%s.%s==", h, p, s);
	BAD("+%s.%s.%s", h + 1, p, s);
	BAD("%s.%s./%s", h, p, s + 1);
	BAD("%s.%s.%s ", h, p, s);
	BAD(" %s.%s.%s", h, p, s);
	BAD("%s. %s.%s", h, p, s);
	BAD("%s.%s.%s\n", h, p, s);
	BAD("%s..%s", h, s);            /* empty payload */
	BAD(".%s.%s", p, s);            /* empty header */
	BAD("%s.%s", h, p);             /* two segments */
	BAD("%s.%s.%s.%s", h, p, s, s); /* four */
	BAD("%s.%s.%s.", h, p, s);
	BAD("%s.%s.%sAA", h, p, s);          /* 43 + 2 chars: 1 mod 4 */
	BAD("%s.%s.%s", "bm90anNvbg", p, s); /* header "notjson" */
	BAD("%s.%s.%s", "W10", p, s);        /* header [] */
	BAD("%s.%s.%s", "IkhTMjU2Ig", p, s); /* header "HS256" */
#undef BAD
	/* The empty signature of an HS256 token is a bad signature. */
	snprintf(t, sizeof(t), "%s.%s.", h, p);
	CK_VERIFY(t, JWT_ESIG);
	/* An embedded NUL inside the counted length. */
	snprintf(t, sizeof(t), "%s", v);
	t[5] = '\0';
	ck_assert_int_eq(ver_len(t, strlen(v)), JWT_EMALFORMED);
	/* Headers: not JSON, duplicate alg, crit. */
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"", claims("")), JWT_EMALFORMED);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"} x", claims("")),
		  JWT_EMALFORMED);
	CK_VERIFY(
	    hs256_raw("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", claims("")),
	    JWT_EMALFORMED);
	CK_VERIFY(
	    hs256_raw("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims("")),
	    JWT_EMALFORMED);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\",\"b64\":false,\"crit\":"
			    "[\"b64\"]}",
			    claims("")),
		  JWT_EMALFORMED);
	CK_VERIFY(hs256_raw("{\"alg\":\"HS256\"}", "{\"a\":\"\xff\"}"),
		  JWT_EMALFORMED); /* not UTF-8 */
	/* NULL and empty inputs. */
	ck_assert_int_eq(
	    jwt_verify(kr, &pol, NULL, 0, &cl, errbuf, sizeof(errbuf)),
	    JWT_EMALFORMED);
	ck_assert_int_eq(jwt_verify(kr, &pol, v, 0, &cl, NULL, 0),
			 JWT_EMALFORMED);
}
END_TEST

START_TEST(test_oversized)
{
	const char *v = mk("HS256", NULL, claims(""));
	size_t n = strlen(v);
	char *big;

	/* The limit is inclusive. */
	pol.max_len = n;
	CK_VERIFY(v, JWT_OK);
	pol.max_len = n - 1;
	CK_VERIFY(v, JWT_EMALFORMED);
	ck_assert_ptr_nonnull(strstr(errbuf, "bytes"));

	/* Default 8192, checked before looking at a single byte. */
	jwt_policy_init(&pol);
	pol.now = NOW;
	ck_assert_uint_eq(pol.max_len, 8192);
	big = malloc(8193);
	memset(big, 'A', 8193);
	ck_assert_int_eq(ver_len(big, 8193), JWT_EMALFORMED);
	ck_assert_ptr_nonnull(strstr(errbuf, "8193"));
	/* Not a token at 8192 either, but refused for another reason. */
	ck_assert_int_eq(ver_len(big, 8192), JWT_EMALFORMED);
	ck_assert_ptr_null(strstr(errbuf, "8192"));
	free(big);
	/* A valid token near the limit still works. */
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"pad\":\"%05900d\"", NOW + 60, 0)),
		  JWT_OK);
	CK_VERIFY(timed(fmt("\"exp\":%lld,\"pad\":\"%06200d\"", NOW + 60, 0)),
		  JWT_EMALFORMED);
}
END_TEST

START_TEST(test_null_policy)
{
	/* NULL policy: the defaults and the real clock. */
	const char *t =
	    mk("HS256", NULL,
	       fmt("{\"sub\":\"o\",\"exp\":%lld}", (long long)time(NULL) + 60));

	ck_assert_int_eq(
	    jwt_verify(kr, NULL, t, strlen(t), &cl, errbuf, sizeof(errbuf)),
	    JWT_OK);
	ck_assert_str_eq(cl.orchestrator, "o");
}
END_TEST

/* ---- keyring and signing ------------------------------------------------ */

static char *
encode_pub(EVP_PKEY *k, const char *structure)
{
	OSSL_ENCODER_CTX *ectx;
	unsigned char *data = NULL;
	size_t len = 0;
	char *s;

	ectx = OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_PUBLIC_KEY, "PEM",
					     structure, NULL);
	ck_assert_ptr_nonnull(ectx);
	ck_assert_int_eq(OSSL_ENCODER_to_data(ectx, &data, &len), 1);
	OSSL_ENCODER_CTX_free(ectx);
	s = strndup((char *)data, len);
	OPENSSL_free(data);
	return s;
}

static char *
self_signed_cert(EVP_PKEY *k)
{
	X509 *x = X509_new();
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *s;
	long n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"jwt", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	ck_assert_int_gt(X509_sign(x, k, EVP_sha256()), 0);
	PEM_write_bio_X509(bio, x);
	n = BIO_get_mem_data(bio, &data);
	s = strndup(data, (size_t)n);
	BIO_free(bio);
	X509_free(x);
	return s;
}

static int
add(struct jwt_keyring *k, const char *pem, const char *kid)
{
	return jwt_keyring_add_pem(k, pem, strlen(pem), kid);
}

START_TEST(test_keyring_formats)
{
	struct jwt_keyring *k = jwt_keyring_new();
	char *pkcs1 = encode_pub(rsa1, "type-specific");
	char *cert = self_signed_cert(ec1);
	char *both = malloc(strlen(rsa1_pub) + strlen(rsa2_pub) + 1);

	ck_assert_ptr_nonnull(strstr(pkcs1, "BEGIN RSA PUBLIC KEY"));
	ck_assert_int_eq(add(k, pkcs1, "pkcs1"), 0);
	ck_assert_int_eq(add(k, cert, "cert"), 0);
	ck_assert_uint_eq(jwt_keyring_nkeys(k), 2);
	ck_assert_str_eq(jwt_keyring_error(k), "");
	jwt_keyring_free(kr);
	kr = k;
	CK_VERIFY(mk("RS256", "pkcs1", claims("")), JWT_OK);
	CK_VERIFY(mk("ES256", "cert", claims("")), JWT_OK);
	CK_VERIFY(mk("ES256", "pkcs1", claims("")), JWT_EALG);

	/* Two keys in one PEM text: refused, not first-one-wins. */
	strcpy(both, rsa1_pub);
	strcat(both, rsa2_pub);
	ck_assert_int_eq(add(k, both, "both"), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "PEM"));
	ck_assert_uint_eq(jwt_keyring_nkeys(k), 2);
	free(both);
	free(pkcs1);
	free(cert);
}
END_TEST

START_TEST(test_keyring_refusals)
{
	struct jwt_keyring *k = jwt_keyring_new();
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	char *weak_pub = pem_of(weak, 0), *p384_pub = pem_of(p384, 0);
	char *ed_pub = pem_of(ed, 0);
	char kid[200];

	ck_assert_int_eq(add(k, weak_pub, NULL), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "1024"));
	ck_assert_int_eq(add(k, p384_pub, NULL), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "P-256"));
	ck_assert_int_eq(add(k, ed_pub, NULL), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "unsupported"));
	/* A private key is not silently turned into its public half. */
	ck_assert_int_eq(add(k, rsa1_priv, NULL), -1);
	ck_assert_int_eq(add(k, "garbage", NULL), -1);
	ck_assert_int_eq(add(k,
			     "-----BEGIN PUBLIC KEY-----\nAAAA\n"
			     "-----END PUBLIC KEY-----\n",
			     NULL),
			 -1);
	ck_assert_int_eq(jwt_keyring_add_pem(k, rsa1_pub, 100, NULL), -1);
	ck_assert_uint_eq(jwt_keyring_nkeys(k), 0);
	/* kids: unique, 1..127 bytes; one kid-less key per kind. */
	memset(kid, 'k', sizeof(kid));
	kid[127] = '\0';
	ck_assert_int_eq(add(k, rsa1_pub, kid), 0);
	kid[127] = 'k';
	kid[128] = '\0';
	ck_assert_int_eq(add(k, rsa2_pub, kid), -1);
	ck_assert_int_eq(add(k, rsa2_pub, ""), -1);
	ck_assert_int_eq(add(k, rsa2_pub, NULL), 0);
	ck_assert_int_eq(add(k, rsa1_pub, NULL), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "without kid"));
	ck_assert_int_eq(add(k, ec1_pub, NULL), 0); /* other kind: fine */
	ck_assert_int_eq(add(k, ec2_pub, "x"), 0);
	ck_assert_int_eq(add(k, rsa1_pub, "x"), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "duplicate"));
	ck_assert_uint_eq(jwt_keyring_nkeys(k), 4);
	/* An error is cleared by the next success. */
	ck_assert_int_eq(add(k, rsa1_pub, "y"), 0);
	ck_assert_str_eq(jwt_keyring_error(k), "");
	/* Secrets. */
	ck_assert_int_eq(jwt_keyring_set_secret(k, "", 0), -1);
	ck_assert_int_eq(jwt_keyring_set_secret(k, NULL, 5), -1);
	ck_assert_int_eq(jwt_keyring_set_secret(k, "s1", 2), 0);
	ck_assert_int_eq(jwt_keyring_set_secret(k, "s2", 2), 0);
	jwt_keyring_free(kr);
	kr = k;
	CK_VERIFY(mk_raw("HS256", "s2", 2, "{\"alg\":\"HS256\"}", claims("")),
		  JWT_OK);
	CK_VERIFY(mk_raw("HS256", "s1", 2, "{\"alg\":\"HS256\"}", claims("")),
		  JWT_ESIG);

	jwt_keyring_free(NULL);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(ed);
	free(weak_pub);
	free(p384_pub);
	free(ed_pub);
}
END_TEST

START_TEST(test_keyring_file)
{
	char path[] = "/tmp/check_jwt.XXXXXX";
	struct jwt_keyring *k = jwt_keyring_new();
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, ec1_pub, strlen(ec1_pub)),
			 (ssize_t)strlen(ec1_pub));
	close(fd);
	ck_assert_int_eq(jwt_keyring_add_pem_file(k, path, "f"), 0);
	ck_assert_uint_eq(jwt_keyring_nkeys(k), 1);
	/* The error names the file. */
	ck_assert_int_eq(jwt_keyring_add_pem_file(k, path, "f"), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), path));
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), "duplicate"));
	unlink(path);
	ck_assert_int_eq(jwt_keyring_add_pem_file(k, path, "g"), -1);
	ck_assert_ptr_nonnull(strstr(jwt_keyring_error(k), path));
	ck_assert_int_eq(jwt_keyring_add_pem_file(k, "/dev/null", "g"), -1);
	jwt_keyring_free(kr);
	kr = k;
	CK_VERIFY(mk("ES256", "f", claims("")), JWT_OK);
}
END_TEST

START_TEST(test_sign_refusals)
{
	char t[4096];
	size_t n = strlen(ec1_priv);

	ck_assert_int_eq(jwt_sign("none", "", 0, NULL, "{}", t, sizeof(t)), -1);
	ck_assert_int_eq(jwt_sign("HS999", secret, 3, NULL, "{}", t, sizeof(t)),
			 -1);
	ck_assert_int_eq(jwt_sign("HS256", "", 0, NULL, "{}", t, sizeof(t)),
			 -1);
	ck_assert_int_eq(
	    jwt_sign("HS256", secret, 3, "a\"b", "{}", t, sizeof(t)), -1);
	ck_assert_int_eq(
	    jwt_sign("HS256", secret, 3, "a\\b", "{}", t, sizeof(t)), -1);
	ck_assert_int_eq(
	    jwt_sign("HS256", secret, 3, "a\nb", "{}", t, sizeof(t)), -1);
	/* Key of the wrong kind, public instead of private, garbage. */
	ck_assert_int_eq(
	    jwt_sign("RS256", ec1_priv, n, NULL, "{}", t, sizeof(t)), -1);
	ck_assert_int_eq(jwt_sign("ES256", rsa1_priv, strlen(rsa1_priv), NULL,
				  "{}", t, sizeof(t)),
			 -1);
	ck_assert_int_eq(jwt_sign("ES256", ec1_pub, strlen(ec1_pub), NULL, "{}",
				  t, sizeof(t)),
			 -1);
	ck_assert_int_eq(jwt_sign("ES256", "x", 1, NULL, "{}", t, sizeof(t)),
			 -1);
	/* Short buffers at every stage. */
	ck_assert_int_eq(jwt_sign("ES256", ec1_priv, n, NULL, "{}", t, 10), -1);
	ck_assert_int_eq(jwt_sign("ES256", ec1_priv, n, NULL, "{}", t, 40), -1);
	ck_assert_int_eq(jwt_sign("ES256", ec1_priv, n, NULL, "{}", t, 60), -1);
	ck_assert_int_gt(
	    jwt_sign("ES256", ec1_priv, n, NULL, "{}", t, sizeof(t)), 0);
}
END_TEST

START_TEST(test_strerror)
{
	int rc;

	for (rc = JWT_OK; rc <= JWT_ECLAIMS; rc++)
		ck_assert_str_ne(jwt_strerror(rc), "unknown error");
	ck_assert_str_eq(jwt_strerror(99), "unknown error");
	ck_assert_str_eq(jwt_strerror(JWT_EEXPIRED), "token expired");
}
END_TEST

START_TEST(test_err_sanitized)
{
	/* Hostile strings reach the log only as printable ASCII. */
	ring_teardown();
	kr = jwt_keyring_new();
	ck_assert_int_eq(add(kr, rsa1_pub, "a"), 0);
	CK_VERIFY(mk_raw("RS256", rsa1_priv, strlen(rsa1_priv),
			 "{\"alg\":\"RS256\",\"kid\":\"evil\\n[crit] "
			 "forged\\u0007\"}",
			 claims("")),
		  JWT_EKEY);
	ck_assert_ptr_null(strchr(errbuf, '\n'));
	ck_assert_ptr_null(strchr(errbuf, '\a'));
	CK_VERIFY(hs256_raw("{\"alg\":\"X\\r\\n\"}", claims("")), JWT_EALG);
	ck_assert_ptr_nonnull(strstr(errbuf, "X??"));
	ck_assert_ptr_null(strchr(errbuf, '\r'));
	/* A short err buffer is filled, not overrun (ASan watches). */
	ck_assert_int_eq(jwt_verify(kr, &pol, "a.b", 3, &cl, errbuf, 4),
			 JWT_EMALFORMED);
	ck_assert_uint_eq(strlen(errbuf), 3);
}
END_TEST

/* ---- issued tokens and credential hashes (POST /api/daemon/auth) -------- */

/* A refresh token as api.c issues it: accepted only as type refresh. */
START_TEST(test_issued_refresh_token)
{
	char tok[1024];
	const char *c = "{\"sub\":\"vp-1\",\"orchestratorId\":\"vp-1\","
			"\"type\":\"refresh\",\"sessionId\":\"s-1\","
			"\"jti\":\"j-1\",\"iat\":1800000000,"
			"\"exp\":1800003600}";
	int n = jwt_sign_hs256(secret, strlen(secret), c, tok, sizeof(tok));

	ck_assert_int_gt(n, 0);
	pol.type = "refresh";
	ck_assert_int_eq(jwt_verify(kr, &pol, tok, (size_t)n, &cl, errbuf,
				    sizeof(errbuf)),
			 JWT_OK);
	ck_assert_str_eq(cl.orchestrator, "vp-1");
	ck_assert_str_eq(cl.jti, "j-1");
	ck_assert_str_eq(cl.type, "refresh");
	pol.type = NULL; /* not an access token */
	ck_assert_int_eq(jwt_verify(kr, &pol, tok, (size_t)n, &cl, errbuf,
				    sizeof(errbuf)),
			 JWT_ECLAIMS);
}
END_TEST

START_TEST(test_credential_hash)
{
	/* From python3 hashlib.pbkdf2_hmac (scripts/orchd-credential). */
	static const char py[] =
	    "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=";
	char h[CRED_HASH_TEXT_MAX], h2[CRED_HASH_TEXT_MAX];

	ck_assert_int_eq(cred_verify("secret", 6, py), 1);
	ck_assert_int_eq(cred_verify("secreT", 6, py), 0);
	ck_assert_int_eq(cred_verify("secret", 5, py), 0);
	ck_assert_int_eq(cred_hash("s3cr3t", 6, CRED_ITER_DEFAULT, h,
				   sizeof(h)),
			 0);
	ck_assert_int_eq(strncmp(h, "pbkdf2-sha256$10000$", 20), 0);
	ck_assert_int_eq(cred_verify("s3cr3t", 6, h), 1);
	ck_assert_int_eq(cred_verify("s3cr3", 5, h), 0);
	/* A fresh salt every time. */
	ck_assert_int_eq(cred_hash("s3cr3t", 6, CRED_ITER_MIN, h2,
				   sizeof(h2)),
			 0);
	ck_assert_str_ne(h, h2);
	ck_assert_int_eq(cred_verify("s3cr3t", 6, h2), 1);
	/* Refusals. */
	ck_assert_int_eq(cred_hash("x", 1, CRED_ITER_MIN - 1, h, sizeof(h)),
			 -1);
	ck_assert_int_eq(cred_hash("x", 1, CRED_ITER_DEFAULT, h, 20), -1);
	/* Malformed hashes never match (and never crash). */
	static const char *const bad[] = {
	    "",
	    "secret",
	    "pbkdf2-sha256$",
	    "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg==",
	    "pbkdf2-sha256$999$MDEyMzQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=",
	    "pbkdf2-sha256$x$MDEyMzQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=",
	    "pbkdf2-sha1$10000$MDEyMzQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=",
	    "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=",
	    "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPI",
	    "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=$",
	    "pbkdf2-sha256$10000$MDEy=zQ1Njc4OWFiY2RlZg==$"
	    "6umsHhz0yhb+YIJ/FUgCrsOB+tK+gGdB+tvI2KPIHns=",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(cred_verify("secret", 6, bad[i]) == 0, "%s",
			      bad[i]);
	ck_assert_int_eq(cred_verify("secret", 6, NULL), 0);
}
END_TEST

static Suite *
jwt_suite(void)
{
	Suite *s = suite_create("jwt");
	TCase *tc = tcase_create("core");

	/* Keys once (RSA keygen is slow under ASan); keyring per test. */
	tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
	tcase_add_checked_fixture(tc, ring_setup, ring_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_b64url_vectors);
	tcase_add_test(tc, test_b64url_strict);
	tcase_add_test(tc, test_valid_all_algs);
	tcase_add_test(tc, test_valid_sign_hs256_helper);
	tcase_add_test(tc, test_valid_escapes_and_orchestrator_id);
	tcase_add_test(tc, test_clock_default_now);
	tcase_add_test(tc, test_tamper_each_segment);
	tcase_add_test(tc, test_tamper_raw_chars);
	tcase_add_test(tc, test_signature_checked_before_claims);
	tcase_add_test(tc, test_alg_none);
	tcase_add_test(tc, test_alg_not_string);
	tcase_add_test(tc, test_alg_not_configured);
	tcase_add_test(tc, test_alg_confusion);
	tcase_add_test(tc, test_wrong_key);
	tcase_add_test(tc, test_kid_selection);
	tcase_add_test(tc, test_hmac_ignores_kid);
	tcase_add_test(tc, test_es256_signature_length);
	tcase_add_test(tc, test_exp);
	tcase_add_test(tc, test_exp_shape);
	tcase_add_test(tc, test_nbf_iat);
	tcase_add_test(tc, test_expired_checked_last);
	tcase_add_test(tc, test_iss_aud);
	tcase_add_test(tc, test_type);
	tcase_add_test(tc, test_orchestrator);
	tcase_add_test(tc, test_id_claim_types);
	tcase_add_test(tc, test_scopes);
	tcase_add_test(tc, test_huge_strings);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_oversized);
	tcase_add_test(tc, test_null_policy);
	tcase_add_test(tc, test_keyring_formats);
	tcase_add_test(tc, test_keyring_refusals);
	tcase_add_test(tc, test_keyring_file);
	tcase_add_test(tc, test_sign_refusals);
	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_err_sanitized);
	tcase_add_test(tc, test_issued_refresh_token);
	tcase_add_test(tc, test_credential_hash);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(jwt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
