/*
 * jwt: verification of compact JWS access tokens (RFC 7519, RFC 7515).
 *
 * Pure code: no I/O except reading a PEM file in jwt_keyring_add_pem_file()
 * (configuration time).  Every OpenSSL call works in memory and the OpenSSL
 * error queue is left empty on return, so a failed verification cannot
 * confuse a later SSL_get_error() in the same worker.
 *
 * jwt_verify() works in an order that never trusts unauthenticated data:
 * the header is parsed only to pick the algorithm and key, the signature is
 * checked, and only then is the payload parsed and its claims checked.
 *
 * Algorithms: HS256/HS384/HS512 with the shared secret, RS256 with RSA public
 * keys (>= 2048 bits), ES256 with EC P-256 public keys.  An algorithm is
 * accepted only when a key for it is configured; "none" and anything else
 * are always refused, and so is a header with crit (no JWS extension, such
 * as b64:false, is implemented).
 *
 * Keys: HMAC tokens use the one secret (a header kid is ignored).  RS256 and
 * ES256 tokens pick a key of the matching type: by kid when the token has
 * one; without kid, the only key of that type.  A key configured without kid
 * is the default of its type: it also serves tokens whose kid matches no
 * key.  Otherwise a kid miss, or no kid with several keys, is JWT_EKEY.
 *
 * Claim rules (PROTOCOL.md section 8):
 *  - exp is required; exp, nbf and iat must be numbers.  Fractions (PyJWT
 *    with time.time()) are rounded to the stricter side: exp down, nbf and
 *    iat up.  A token is accepted up to and including now == exp + leeway,
 *    and from now == nbf - leeway (likewise iat) on.
 *  - The orchestrator comes from orchestratorId or sub; one is required
 *    (non-empty), and when both are present they must be equal.
 *  - type must equal the expected type (pol->type, "access" when NULL).  A
 *    token without type is accepted as an access token, but never as any
 *    other type; an empty type is a wrong type.
 *  - iss and aud are compared only when the policy names them; aud may be a
 *    string or an array of strings.  Every known claim must have its type
 *    even when it is not compared; unknown claims are ignored.
 *  - Strings never get truncated: a claim longer than its field, or holding
 *    a NUL byte, makes the token invalid.
 *  - A known member present twice (in the header or the payload) makes the
 *    token invalid (RFC 7515 5.2): another parser must not read it otherwise.
 *  - Shape and value checks come before the clock, so JWT_EEXPIRED and
 *    JWT_ENOTYET mean "valid but for the time": the client may refresh.
 */
#ifndef ORCHD_JWT_H
#define ORCHD_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_TOKEN_DEFAULT 8192
#define JWT_LEEWAY_DEFAULT 30

/* Field sizes of struct jwt_claims, including the terminating NUL. */
#define JWT_ID_SIZE 128 /* ids, jti, kid: up to 127 bytes */
#define JWT_ISS_SIZE 256
#define JWT_TYPE_SIZE 32
#define JWT_ALG_SIZE 8
#define JWT_SCOPES_MAX 32
#define JWT_SCOPE_SIZE 65 /* a scope is up to 64 bytes */

enum jwt_result {
	JWT_OK = 0,
	JWT_EMALFORMED, /* not compact JWS, bad base64url, not JSON, too long */
	JWT_EALG,       /* alg none, unknown, not configured, or not a string */
	JWT_EKEY,       /* no key for the token's kid (or kid needed) */
	JWT_ESIG,       /* signature does not verify */
	JWT_EEXPIRED,   /* exp + leeway is in the past */
	JWT_ENOTYET,    /* nbf or iat - leeway is in the future */
	JWT_ECLAIMS,    /* a claim is missing, has the wrong type or value */
};

struct jwt_keyring;

struct jwt_policy {
	unsigned leeway;  /* seconds of clock skew allowed for exp/nbf/iat */
	const char *iss;  /* expected issuer; NULL: not checked */
	const char *aud;  /* expected audience; NULL: not checked */
	const char *type; /* expected "type" claim; NULL: "access" */
	size_t max_len;   /* longer tokens are refused before decoding */
	int64_t now;      /* seconds since the epoch; 0: time(NULL) */
};

struct jwt_claims {
	char orchestrator[JWT_ID_SIZE]; /* orchestratorId, else sub */
	char daemon_id[JWT_ID_SIZE];    /* "" when absent */
	char organization_id[JWT_ID_SIZE];
	char workspace_id[JWT_ID_SIZE];
	char jti[JWT_ID_SIZE];
	char iss[JWT_ISS_SIZE];
	char type[JWT_TYPE_SIZE]; /* "access" when the token had none */
	char kid[JWT_ID_SIZE];    /* header kid, "" when absent */
	char alg[JWT_ALG_SIZE];   /* header alg that was verified */
	char scopes[JWT_SCOPES_MAX][JWT_SCOPE_SIZE];
	unsigned nscopes;
	int64_t exp;
	int64_t nbf; /* valid only when has_nbf */
	int64_t iat; /* valid only when has_iat */
	bool has_nbf, has_iat;
};

/* Defaults: leeway 30 s, max_len 8192, nothing else checked, now = clock. */
void jwt_policy_init(struct jwt_policy *pol);

struct jwt_keyring *jwt_keyring_new(void);
void jwt_keyring_free(struct jwt_keyring *kr);
/*
 * The HMAC secret for HS256/384/512 (copied; replaces an earlier one).
 * RFC 7518 wants at least as many bytes as the hash output (32 for HS256);
 * shorter secrets are accepted for compatibility, the caller may warn.
 * Returns 0, or -1 for an empty secret.
 */
int jwt_keyring_set_secret(struct jwt_keyring *kr, const void *secret,
			   size_t len);
/*
 * One public key in PEM ("PUBLIC KEY", "RSA PUBLIC KEY" or a "CERTIFICATE"):
 * RSA of at least 2048 bits (RS256) or EC P-256 (ES256).  kid may be NULL;
 * kids are unique in a keyring, and at most one key per algorithm may lack
 * one.  Returns 0, or -1 with the reason in jwt_keyring_error().
 */
int jwt_keyring_add_pem(struct jwt_keyring *kr, const char *pem, size_t len,
			const char *kid);
int jwt_keyring_add_pem_file(struct jwt_keyring *kr, const char *path,
			     const char *kid);
/* Why the last jwt_keyring_* call failed; "" if it did not. */
const char *jwt_keyring_error(const struct jwt_keyring *kr);
/* Number of public keys configured (the secret not counted). */
unsigned jwt_keyring_nkeys(const struct jwt_keyring *kr);

/*
 * Verify token[0..len) and fill *out.  Returns a jwt_result; on failure err
 * gets a one-line reason (safe to log: it never holds the token or secret,
 * though it may quote a claim value) and *out is left zeroed.
 */
int jwt_verify(const struct jwt_keyring *kr, const struct jwt_policy *pol,
	       const char *token, size_t len, struct jwt_claims *out, char *err,
	       size_t errlen);
/* Short name of a jwt_result ("expired"). */
const char *jwt_strerror(int rc);

/*
 * Signing, for issuing tokens (POST /api/daemon/auth), orchctl and tests.
 * claims_json is put in the payload as given (the caller makes it valid
 * JSON).  key is the HMAC secret for HS*, a private key PEM for RS256/ES256.
 * kid may be NULL; it must not need JSON escaping.  The token is written to
 * out NUL-terminated; returns its length, or -1 (bad alg or key, or cap too
 * small).
 */
int jwt_sign(const char *alg, const void *key, size_t keylen, const char *kid,
	     const char *claims_json, char *out, size_t cap);
int jwt_sign_hs256(const void *secret, size_t len, const char *claims_json,
		   char *out, size_t cap);
/*
 * Like jwt_sign() with a header given verbatim: the signature uses alg
 * whatever the header says ("none" gives an empty signature).  For tests
 * that need hostile tokens.
 */
int jwt_sign_raw(const char *alg, const void *key, size_t keylen,
		 const char *header_json, const char *claims_json, char *out,
		 size_t cap);

/*
 * Base64url without padding (RFC 7515 section 2).  encode: returns the length
 * written (NUL-terminated) or -1 if cap is too small.  decode: strict (no
 * padding, no whitespace, unused trailing bits zero); returns the length or
 * -1.  A decode buffer of len * 3 / 4 + 1 bytes is always enough.
 */
int jwt_b64url_encode(const void *in, size_t len, char *out, size_t cap);
int jwt_b64url_decode(const char *in, size_t len, void *out, size_t cap);

#endif
