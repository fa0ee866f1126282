/*
 * fuzz_jwt: JWT decoding and verification (HS256 with a fixed secret), and
 * base64url.
 *
 * Input: byte 0 is the mode.
 *   even: the rest is a token, verified as is (the header, base64url and
 *     signature paths: a forged token never verifies).
 *   odd: byte 1 is the length of a header JSON text, then the header, then
 *     the claims JSON text; the token is signed with the secret and
 *     verified, so the header and claims parsers behind the signature
 *     check are reached.
 * Also: the rest of the input is base64url-decoded (strict) and encoded.
 * Invariants: a token that verifies has alg HS256, the claims its payload
 * says (orchestratorId else sub, daemonId, type, exp) and an exp within
 * the leeway; on failure the claims are zeroed and the reason is a
 * NUL-terminated string; a strict decode re-encodes to the same text;
 * encode then decode gives the bytes back.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/json.h"
#include "orchd/jwt.h"

FUZZ_DECLARE(jwt);

#define SECRET "fuzz-secret-0123456789abcdef-0123"
#define NOW 1700000000

static struct jwt_keyring *kr;
static char tok[3 * 8192];

int
FUZZ_INIT(jwt)(int *argc, char ***argv)
{
	kr = jwt_keyring_new();
	if (kr == NULL || jwt_keyring_set_secret(kr, SECRET, strlen(SECRET)))
		abort();
	return 0;
}

/* The payload's string member key, "" if absent or not a string. */
static void
payload_str(const struct json_doc *d, const char *key, char *out, size_t cap)
{
	out[0] = '\0';
	if (json_get_string(d, json_obj_get(d, json_root(d), key), out, cap,
			    NULL) != 0)
		out[0] = '\0';
}

/* A verified token: what jwt_verify() says must be what it carries. */
static void
check_claims(const char *t, size_t len, const struct jwt_claims *cl,
	     const struct jwt_policy *pol)
{
	static uint8_t payload[8192];
	const char *dot1 = memchr(t, '.', len), *dot2;
	struct json_doc d;
	char v[JWT_ID_SIZE];
	int n;

	FUZZ_ASSERT(strcmp(cl->alg, "HS256") == 0);
	FUZZ_ASSERT(cl->orchestrator[0] != '\0');
	FUZZ_ASSERT(cl->exp + (int64_t)pol->leeway >= pol->now);
	FUZZ_ASSERT(strcmp(cl->type, "access") == 0);
	FUZZ_ASSERT(cl->nscopes <= JWT_SCOPES_MAX);
	FUZZ_ASSERT(dot1 != NULL);
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - t));
	FUZZ_ASSERT(dot2 != NULL);
	n = jwt_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload,
			      sizeof(payload));
	FUZZ_ASSERT(n >= 0);
	FUZZ_ASSERT(json_parse(&d, (const char *)payload, (size_t)n, NULL) ==
		    0);
	payload_str(&d, "orchestratorId", v, sizeof(v));
	if (v[0] == '\0')
		payload_str(&d, "sub", v, sizeof(v));
	FUZZ_ASSERT(strcmp(v, cl->orchestrator) == 0);
	payload_str(&d, "daemonId", v, sizeof(v));
	FUZZ_ASSERT(strcmp(v, cl->daemon_id) == 0);
	{
		int64_t exp;
		double dexp;
		int e = json_obj_get(&d, json_root(&d), "exp");

		if (json_get_int64(&d, e, &exp) == 0)
			FUZZ_ASSERT(exp == cl->exp);
		else
			FUZZ_ASSERT(json_get_double(&d, e, &dexp) == 0);
	}
	json_doc_free(&d);
}

static void
verify(const char *t, size_t len)
{
	struct jwt_policy pol;
	struct jwt_claims cl;
	char err[256];
	int rc;

	jwt_policy_init(&pol);
	pol.now = NOW;
	memset(err, 'x', sizeof(err));
	rc = jwt_verify(kr, &pol, t, len, &cl, err, sizeof(err));
	FUZZ_ASSERT(rc >= JWT_OK && rc <= JWT_ECLAIMS);
	FUZZ_ASSERT(jwt_strerror(rc) != NULL);
	if (rc == JWT_OK) {
		check_claims(t, len, &cl, &pol);
	} else {
		static const struct jwt_claims zero;

		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
		FUZZ_ASSERT(memcmp(&cl, &zero, sizeof(cl)) == 0);
	}
}

static void
b64(const uint8_t *p, size_t len)
{
	static uint8_t dec[8192], back[8192];
	static char enc[12000];
	int n, m;

	if (len > 4096)
		return;
	n = jwt_b64url_decode((const char *)p, len, dec, len * 3 / 4 + 1);
	if (n >= 0) {
		m = jwt_b64url_encode(dec, (size_t)n, enc, sizeof(enc));
		FUZZ_ASSERT(m == (int)len && memcmp(enc, p, len) == 0);
	}
	m = jwt_b64url_encode(p, len, enc, sizeof(enc));
	FUZZ_ASSERT(m >= 0 && enc[m] == '\0');
	n = jwt_b64url_decode(enc, (size_t)m, back, sizeof(back));
	FUZZ_ASSERT(n == (int)len && memcmp(back, p, len) == 0);
}

int
FUZZ_ENTRY(jwt)(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (kr == NULL)
		FUZZ_INIT(jwt)(NULL, NULL);
	b64(data + 1, size - 1);
	if ((data[0] & 1) == 0) {
		verify((const char *)data + 1, size - 1);
	} else if (size >= 2) {
		size_t hlen = data[1], clen;
		static char header[256], claims[8192];
		int n;

		if (hlen > size - 2)
			hlen = size - 2;
		clen = size - 2 - hlen;
		if (clen >= sizeof(claims))
			return 0;
		memcpy(header, data + 2, hlen);
		header[hlen] = '\0';
		memcpy(claims, data + 2 + hlen, clen);
		claims[clen] = '\0';
		/* C strings: an embedded NUL ends them (the signer's API). */
		n = jwt_sign_raw("HS256", SECRET, strlen(SECRET), header,
				 claims, tok, sizeof(tok));
		if (n > 0)
			verify(tok, (size_t)n);
	}
	return 0;
}
