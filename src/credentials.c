/*
 * credentials: daemon API key look-ups and secret hashes
 * (include/orchd/credentials.h).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "orchd/credentials.h"
#include "orchd/db.h"
#include "orchd/log.h"
#include "orchd/tpool.h"
#include "orchd/util.h"
#include "orchd/worker.h"

#define CRED_PREFIX "pbkdf2-sha256$"
#define CRED_POLL 0.01 /* seconds between checks while not connected */

/* ---- hashes -------------------------------------------------------------- */

static int
b64_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
	if (cap < 4 * ((len + 2) / 3) + 1)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Standard base64 with padding; the decoded length, or -1. */
static int
b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	size_t pad = 0;
	int n;

	if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = in[i];

		if (ch == '=') {
			if (i < len - 2)
				return -1;
			pad++;
		} else if (pad > 0 ||
			   !((ch >= 'A' && ch <= 'Z') ||
			     (ch >= 'a' && ch <= 'z') ||
			     (ch >= '0' && ch <= '9') || ch == '+' ||
			     ch == '/')) {
			return -1;
		}
	}
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n < pad)
		return -1;
	return n - (int)pad;
}

static int
derive(const char *secret, size_t len, const unsigned char *salt,
       size_t saltlen, unsigned iter, unsigned char *dk)
{
	if (PKCS5_PBKDF2_HMAC(secret, (int)len, salt, (int)saltlen, (int)iter,
			      EVP_sha256(), CRED_HASH_LEN, dk) != 1) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int
cred_hash(const char *secret, size_t len, unsigned iter, char *out,
	  size_t cap)
{
	unsigned char salt[CRED_SALT_LEN], dk[CRED_HASH_LEN];
	char salt64[32], dk64[64];
	int n;

	if (iter < CRED_ITER_MIN || iter > CRED_ITER_MAX)
		return -1;
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		ERR_clear_error();
		return -1;
	}
	if (derive(secret, len, salt, sizeof(salt), iter, dk) != 0 ||
	    b64_encode(salt, sizeof(salt), salt64, sizeof(salt64)) < 0 ||
	    b64_encode(dk, sizeof(dk), dk64, sizeof(dk64)) < 0)
		return -1;
	n = snprintf(out, cap, CRED_PREFIX "%u$%s$%s", iter, salt64, dk64);
	OPENSSL_cleanse(dk, sizeof(dk));
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Split encoded; 0 with the parts, or -1. */
static int
parse_hash(const char *encoded, unsigned *iter, unsigned char *salt,
	   size_t *saltlen, unsigned char *dk)
{
	const char *p, *s1, *s2;
	uint64_t u;
	char num[16];
	int n;

	if (strncmp(encoded, CRED_PREFIX, strlen(CRED_PREFIX)) != 0)
		return -1;
	p = encoded + strlen(CRED_PREFIX);
	if ((s1 = strchr(p, '$')) == NULL || (s2 = strchr(s1 + 1, '$')) == NULL ||
	    (size_t)(s1 - p) >= sizeof(num) || s1 == p)
		return -1;
	memcpy(num, p, (size_t)(s1 - p));
	num[s1 - p] = '\0';
	if (util_parse_u64(num, CRED_ITER_MIN, CRED_ITER_MAX, &u) != 0)
		return -1;
	*iter = (unsigned)u;
	n = b64_decode(s1 + 1, (size_t)(s2 - s1 - 1), salt, 64);
	if (n < 8)
		return -1;
	*saltlen = (size_t)n;
	{
		unsigned char buf[CRED_HASH_LEN + 3];

		n = b64_decode(s2 + 1, strlen(s2 + 1), buf, sizeof(buf));
		if (n != CRED_HASH_LEN)
			return -1;
		memcpy(dk, buf, CRED_HASH_LEN);
	}
	return 0;
}

int
cred_verify(const char *secret, size_t len, const char *encoded)
{
	unsigned char salt[64], want[CRED_HASH_LEN], got[CRED_HASH_LEN];
	size_t saltlen = 0;
	unsigned iter = 0;
	int ok = 1;

	if (encoded == NULL ||
	    parse_hash(encoded, &iter, salt, &saltlen, want) != 0) {
		/* Same cost as a real check: timing must not tell. */
		memset(salt, 0, sizeof(salt));
		memset(want, 0, sizeof(want));
		saltlen = CRED_SALT_LEN;
		iter = CRED_ITER_DEFAULT;
		ok = 0;
	}
	if (derive(secret, len, salt, saltlen, iter, got) != 0)
		return 0;
	ok = ok && CRYPTO_memcmp(got, want, CRED_HASH_LEN) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	return ok;
}

/* ---- look-ups ------------------------------------------------------------ */

struct cred_req {
	struct cred_store *s;
	struct cred_req *next; /* waiting list */
	cred_fn cb;
	void *arg;
	uint64_t deadline_ms; /* monotonic */
	int failed;           /* answer CRED_UNAVAILABLE on the next tick */
	char key[CRED_KEY_MAX + 1];
};

struct cred_store {
	struct worker *w;
	struct db *db;
	struct cred_req *waiting;
	ev_timer tick;
	struct tpool *kdf; /* made on first use, lives with the process */
};

static struct cred_store *the_store; /* per worker process */

static void
answer(struct cred_req *r, enum cred_status st, const struct cred_row *row)
{
	r->cb(st, st == CRED_OK ? row : NULL, r->arg);
	free(r);
}

static void
lookup_reply(struct db *db, enum db_status st, const PGresult *res, void *arg)
{
	struct cred_req *r = arg;
	struct cred_row row;

	(void)db;
	if (st != DB_OK) {
		if (st == DB_ERROR)
			log_warnx("credentials: look-up failed: %s",
				  PQresultErrorMessage(res));
		answer(r, CRED_UNAVAILABLE, NULL);
		return;
	}
	if (PQntuples(res) == 0 || PQnfields(res) < 4) {
		answer(r, CRED_UNKNOWN, NULL);
		return;
	}
	memset(&row, 0, sizeof(row));
	if (!PQgetisnull(res, 0, 0) &&
	    (size_t)PQgetlength(res, 0, 0) < sizeof(row.hash))
		util_strlcpy(row.hash, PQgetvalue(res, 0, 0), sizeof(row.hash));
	if (PQgetisnull(res, 0, 1) ||
	    (size_t)PQgetlength(res, 0, 1) >= sizeof(row.vp_id)) {
		log_warnx("credentials: a credential's vp_id is longer than "
			  "%d bytes: treated as unknown",
			  CRED_VP_MAX - 1);
		answer(r, CRED_UNKNOWN, NULL);
		return;
	}
	util_strlcpy(row.vp_id, PQgetvalue(res, 0, 1), sizeof(row.vp_id));
	row.active = !PQgetisnull(res, 0, 2) && PQgetvalue(res, 0, 2)[0] == 't';
	row.expired =
	    PQgetisnull(res, 0, 3) || PQgetvalue(res, 0, 3)[0] != 'f';
	answer(r, CRED_OK, &row);
}

static int
send_lookup(struct cred_req *r)
{
	const char *values[1] = {r->key};

	return db_query(r->s->db, CRED_STATEMENT, 1, values, lookup_reply, r);
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct cred_store *s = t->data;
	struct cred_req *list = s->waiting, *keep = NULL;
	uint64_t now = util_now_ms();

	(void)revents;
	s->waiting = NULL;
	while (list != NULL) {
		struct cred_req *r = list;

		list = r->next;
		if (!r->failed && db_ready(s->db) && send_lookup(r) == 0)
			continue;
		if (r->failed || now >= r->deadline_ms ||
		    (db_ready(s->db) && errno != ENOTCONN)) {
			answer(r, CRED_UNAVAILABLE, NULL);
			continue;
		}
		r->next = keep;
		keep = r;
	}
	/* Answers may have added requests meanwhile. */
	while (keep != NULL) {
		struct cred_req *r = keep;

		keep = r->next;
		r->next = s->waiting;
		s->waiting = r;
	}
	if (s->waiting == NULL)
		ev_timer_stop(loop, t);
}

static void
wait_for_db(struct cred_store *s, struct cred_req *r)
{
	r->next = s->waiting;
	s->waiting = r;
	if (!ev_is_active(&s->tick)) {
		ev_timer_set(&s->tick, r->failed ? 0. : CRED_POLL, CRED_POLL);
		ev_timer_start(s->w->loop, &s->tick);
	}
}

void
cred_lookup(struct cred_store *s, const char *api_key, cred_fn cb, void *arg)
{
	struct cred_req *r = util_calloc(1, sizeof(*r));

	r->s = s;
	r->cb = cb;
	r->arg = arg;
	r->deadline_ms = util_now_ms() + s->w->cfg->database_timeout_ms;
	util_strlcpy(r->key, api_key, sizeof(r->key));
	if (send_lookup(r) == 0)
		return;
	/* Not connected yet (or any more): wait a little for it. */
	r->failed = errno != ENOTCONN;
	wait_for_db(s, r);
}

static void
touch_reply(struct db *db, enum db_status st, const PGresult *res, void *arg)
{
	(void)db;
	(void)arg;
	if (st == DB_ERROR)
		log_warnx("credentials: last_used_at not updated: %s",
			  PQresultErrorMessage(res));
	else if (st != DB_OK)
		log_debug("credentials: last_used_at not updated: database "
			  "unavailable");
}

void
cred_touch(struct cred_store *s, const char *api_key)
{
	const char *values[1] = {api_key};

	if (db_query(s->db, CRED_TOUCH_STATEMENT, 1, values, touch_reply,
		     NULL) != 0)
		log_debug("credentials: last_used_at not updated: %s",
			  strerror(errno));
}

struct cred_store *
cred_store(struct worker *w)
{
	const struct config *cfg = w->cfg;
	struct cred_store *s;

	if (the_store != NULL && the_store->w == w)
		return the_store;
	if (cfg->database_conninfo == NULL)
		return NULL;
	/* the_store of another worker struct is not ours: a new process. */
	s = util_calloc(1, sizeof(*s));
	s->w = w;
	ev_init(&s->tick, tick_cb);
	s->tick.data = s;
	s->db = db_new(w->loop, cfg->database_conninfo, 1,
		       cfg->database_timeout_ms, "credentials database");
	if (db_prepare(s->db, CRED_STATEMENT, CRED_LOOKUP_SQL, 1) != 0 ||
	    db_prepare(s->db, CRED_TOUCH_STATEMENT, CRED_TOUCH_SQL, 1) != 0)
		fatalx("%s: cannot register the credential statements",
		       __func__);
	db_start(s->db);
	the_store = s;
	return s;
}

/* ---- checks off the loop ------------------------------------------------- */

struct cred_check {
	struct tpool_job *job;
	cred_check_fn fn;
	void *arg;
	int have_hash; /* else the dummy */
	int ok;        /* the thread's until done */
	size_t len;
	char secret[CRED_SECRET_MAX + 1];
	char hash[CRED_HASH_TEXT_MAX];
};

static void
check_free(void *arg)
{
	struct cred_check *k = arg;

	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

/* On a pool thread: OpenSSL's PBKDF2 is thread-safe. */
static void
check_work(void *arg)
{
	struct cred_check *k = arg;

	k->ok = cred_verify(k->secret, k->len, k->have_hash ? k->hash : NULL);
}

static void
check_done(void *arg)
{
	struct cred_check *k = arg;
	cred_check_fn fn = k->fn;
	void *fnarg = k->arg;
	int ok = k->ok;

	check_free(k);
	fn(ok, fnarg);
}

int
cred_verify_start(struct cred_store *s, const char *secret, size_t len,
		  const char *encoded, cred_check_fn fn, void *arg,
		  struct cred_check **chk)
{
	struct cred_check *k;

	if (len > CRED_SECRET_MAX ||
	    (encoded != NULL && strlen(encoded) >= CRED_HASH_TEXT_MAX)) {
		errno = EINVAL;
		return -1;
	}
	if (s->kdf == NULL)
		s->kdf = tpool_new("kdf", CRED_KDF_THREADS, CRED_KDF_QUEUE);
	k = util_calloc(1, sizeof(*k));
	k->fn = fn;
	k->arg = arg;
	k->len = len;
	memcpy(k->secret, secret, len);
	if (encoded != NULL) {
		util_strlcpy(k->hash, encoded, sizeof(k->hash));
		k->have_hash = 1;
	}
	if (tpool_submit(s->kdf, s->w->loop, check_work, check_done, check_free,
			 k, &k->job) != TPOOL_OK) {
		check_free(k);
		errno = EBUSY;
		return -1;
	}
	*chk = k;
	return 0;
}

void
cred_verify_cancel(struct cred_check *k)
{
	if (k != NULL && tpool_cancel(k->job) != TPOOL_CANCEL_ORPHANED)
		check_free(k);
}
