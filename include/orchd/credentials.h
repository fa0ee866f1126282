/*
 * credentials: daemon API keys and secrets (PostgreSQL daemon_credentials),
 * for POST /api/daemon/auth (PROTOCOL.md section 7).
 *
 * Secret hashes.  daemon_credentials.api_secret_hash holds
 *
 *     pbkdf2-sha256$ITER$SALT$HASH
 *
 * PBKDF2-HMAC-SHA256 (RFC 8018) of the secret's bytes, ITER iterations
 * (decimal, CRED_ITER_MIN..CRED_ITER_MAX), SALT the random salt (16 bytes
 * when made here) and HASH the 32-byte derived key, both in standard base64
 * with padding (RFC 4648 section 4).  scripts/orchd-credential writes the
 * same format (python3 hashlib.pbkdf2_hmac).  The check of POST
 * /api/daemon/auth runs off the loop, on the worker's key-derivation pool
 * (cred_verify_start(): CRED_KDF_THREADS threads, CRED_KDF_QUEUE waiting
 * checks, beyond which the caller answers 503): CRED_ITER_DEFAULT
 * iterations cost a few milliseconds of CPU and CRED_ITER_MAX about a
 * second, which would otherwise stall every connection of the worker.
 * The comparison is constant-time (CRYPTO_memcmp), and an unknown key costs
 * a verification against a dummy hash, so timing does not tell a known key.
 *
 * Look-ups.  Each worker has one db client of its own for these queries
 * (one connection), made on first use; until it is connected, a look-up
 * waits for it (bounded by database_timeout).
 */
#ifndef ORCHD_CREDENTIALS_H
#define ORCHD_CREDENTIALS_H

#include <stddef.h>

struct worker;
struct cred_store;

#define CRED_ITER_DEFAULT 10000
#define CRED_ITER_MIN 1000
#define CRED_ITER_MAX 1000000
#define CRED_SALT_LEN 16
#define CRED_HASH_LEN 32
#define CRED_KEY_MAX 255    /* bytes of an api key */
#define CRED_SECRET_MAX 255 /* bytes of an api secret */
#define CRED_HASH_TEXT_MAX 256
#define CRED_VP_MAX 128 /* bytes of a vp id, NUL included */
/*
 * The key-derivation pool of each worker (tpool.h).  Two threads: a worker
 * never takes more than two cores for checks, whatever the request rate.
 * 64 waiting: at the default cost they drain in well under a second, and
 * even at CRED_ITER_MAX (about 0.3 s each here) in about 10 s, within the
 * 30 s an HTTP answer may take (WORKER_WRITE_TIMEOUT_MS).
 */
#define CRED_KDF_THREADS 2 /* checks running at once */
#define CRED_KDF_QUEUE 64  /* checks waiting; beyond: cred_verify_start -1 */

#define CRED_STATEMENT "orchd_credential_by_key"
#define CRED_LOOKUP_SQL                                                       \
	"SELECT api_secret_hash, vp_id, is_active, "                         \
	"(expires_at IS NOT NULL AND expires_at <= now()) "                   \
	"FROM daemon_credentials WHERE api_key = $1"
#define CRED_TOUCH_STATEMENT "orchd_credential_touch"
#define CRED_TOUCH_SQL                                                        \
	"UPDATE daemon_credentials SET last_used_at = now() "                 \
	"WHERE api_key = $1"

enum cred_status {
	CRED_OK = 0,      /* row found: see struct cred_row */
	CRED_UNKNOWN,     /* no such api key */
	CRED_UNAVAILABLE, /* no answer from the database */
};

struct cred_row {
	char hash[CRED_HASH_TEXT_MAX]; /* "" if longer: never matches */
	char vp_id[CRED_VP_MAX];
	int active;  /* is_active */
	int expired; /* expires_at has passed */
};

/* row is set with CRED_OK only, valid during the call. */
typedef void (*cred_fn)(enum cred_status st, const struct cred_row *row,
			void *arg);

/*
 * The worker's store (made on first call); NULL when no database is
 * configured.
 */
struct cred_store *cred_store(struct worker *w);
/* Look api_key up; cb is called exactly once, never from within. */
void cred_lookup(struct cred_store *s, const char *api_key, cred_fn cb,
		 void *arg);
/* Stamp last_used_at (fire and forget: a failure is only logged). */
void cred_touch(struct cred_store *s, const char *api_key);

/*
 * Hash secret with iter iterations and a fresh random salt into out (the
 * format above).  Returns 0, or -1 (bad iter, cap too small, no entropy).
 */
int cred_hash(const char *secret, size_t len, unsigned iter, char *out,
	      size_t cap);
/*
 * 1 when secret matches encoded, 0 when not or when encoded is not a hash
 * of ours (a malformed hash still costs a default-iteration derivation).
 */
int cred_verify(const char *secret, size_t len, const char *encoded);

struct cred_check;
/* ok as cred_verify() returns it; called on the store's loop. */
typedef void (*cred_check_fn)(int ok, void *arg);
/*
 * cred_verify() on the store's key-derivation pool; fn runs on the loop
 * afterwards (never from within).  secret and encoded (NULL: an unknown
 * key, checked against the dummy) are copied.  0 and *chk, for
 * cred_verify_cancel() until fn runs; -1 when CRED_KDF_QUEUE checks wait
 * already (or no thread can start): fn will not run.
 */
int cred_verify_start(struct cred_store *s, const char *secret, size_t len,
		      const char *encoded, cred_check_fn fn, void *arg,
		      struct cred_check **chk);
/* fn never runs; a derivation under way finishes on its thread. */
void cred_verify_cancel(struct cred_check *chk);

#endif
