/*
 * config_auth: the authentication directives of orchd.conf(5) -- the JWT
 * secret (file or DAEMON_JWT_SECRET), the public keys, the expected issuer
 * and audience, the scopes a token needs to connect.
 *
 * These are the directives whose values are more than a word checked against
 * a range: files read or checked at load, lists that add up across lines and
 * must stay free of duplicates, a secret that must not linger in memory.
 * src/config.c holds the table that points here, and parses the plainer
 * directives of the same family (jwt_leeway, revocation_check) itself.
 *
 * The keys are only checked to be readable regular files: the auth module
 * parses them (and reports a key it cannot use) when it builds its keyring.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/util.h"

#define SECRET_MAX 4096 /* jwt secret, from a file or the environment */

/* ---- files -------------------------------------------------------------- */

/*
 * Open path for reading and require a regular file: a FIFO, a device or a
 * directory would block, never end or make no sense.  O_NONBLOCK keeps the
 * open() of a FIFO without a writer from hanging "orchd -t"; it changes
 * nothing for a regular file.  Returns the descriptor, or -1 once the error
 * is reported.
 */
int
cfga_open_regular(struct pctx *c, const struct directive *d, const char *path)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		cfgp_derr(c, d, "cannot read %s: %s", cfgp_show(c, path),
			  strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		cfgp_derr(c, d, "%s is not a regular file", cfgp_show(c, path));
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- the shared secret -------------------------------------------------- */

/* Overwrite before free: a secret should not linger in freed heap. */
static void
wipe_free(char *p, size_t n)
{
	volatile char *v = p;

	if (p == NULL)
		return;
	while (n-- > 0)
		*v++ = 0;
	free(p);
}

static void
set_secret(struct config *cfg, const char *s, size_t n, int from_env)
{
	wipe_free(cfg->jwt_secret, cfg->jwt_secret_len);
	cfg->jwt_secret = util_malloc(n + 1);
	memcpy(cfg->jwt_secret, s, n);
	cfg->jwt_secret[n] = '\0';
	cfg->jwt_secret_len = n;
	cfg->jwt_secret_from_env = from_env;
}

/*
 * Read a small secret file (a regular file, see cfga_open_regular()) into
 * buf[0..cap): its length without one final newline (and CR), or -1
 * (reported).  More than max bytes is an error; cap must be > max + 1 so
 * that an over-long file is seen as such.
 */
ssize_t
cfga_read_secret(struct pctx *c, const struct directive *d, const char *path,
		 char *buf, size_t cap, size_t max)
{
	size_t n = 0;
	int fd;

	if ((fd = cfga_open_regular(c, d, path)) == -1)
		return -1;
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			cfgp_derr(c, d, "cannot read %s: %s",
				  cfgp_show(c, path), strerror(errno));
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	/* Editors add a final newline; it is never part of the secret. */
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n > max) {
		cfgp_derr(c, d, "%s is larger than %zu bytes",
			  cfgp_show(c, path), max);
		return -1;
	}
	return (ssize_t)n;
}

/* jwt_secret_file: read the secret now, as the user who will run -t. */
int
cfga_load_jwt_secret(struct pctx *c, const struct directive *d,
		     const char *path)
{
	char buf[SECRET_MAX + 2];
	ssize_t n;
	int rc = -1;

	if (c->defaults)
		return 0;
	n = cfga_read_secret(c, d, path, buf, sizeof(buf), SECRET_MAX);
	if (n == 0)
		cfgp_derr(c, d, "%s is empty", cfgp_show(c, path));
	if (n > 0) {
		set_secret(c->cfg, buf, (size_t)n, 0);
		rc = 0;
	}
	for (volatile char *v = buf; v < buf + sizeof(buf); v++)
		*v = 0;
	return rc;
}

/* The path may be shown; the secret never is. */
void
cfga_dump_jwt_secret(const struct directive *d, const struct config *cfg,
		     FILE *fp)
{
	if (cfg->jwt_secret_file != NULL) {
		fprintf(fp, "%s ", d->name);
		cfgv_dump_word(fp, cfg->jwt_secret_file);
		fputc('\n', fp);
	} else {
		fprintf(fp, "# %s (not set)\n", d->name);
	}
	if (cfg->jwt_secret_from_env)
		fprintf(fp, "# jwt secret: from environment DAEMON_JWT_SECRET "
			    "(hidden)\n");
}

void
cfga_apply_env(struct pctx *c)
{
	const char *v = getenv("DAEMON_JWT_SECRET");
	size_t n;

	/* Empty counts as unset, as it did for the service. */
	if (v == NULL || *v == '\0')
		return;
	n = strlen(v);
	c->envname = "DAEMON_JWT_SECRET";
	if (n > SECRET_MAX)
		cfgp_derr(c, NULL, "longer than %d bytes", SECRET_MAX);
	else
		set_secret(c->cfg, v, n, 1);
	c->envname = NULL;
}

/* ---- public keys -------------------------------------------------------- */

/*
 * A kid is compared byte for byte with the token header's: 1 to
 * CONFIG_KID_MAX printable ASCII characters (space included), so that it
 * always fits the auth module's buffers and prints safely in its logs.
 */
static int
check_kid(struct pctx *c, const struct directive *d, const char *kid)
{
	size_t n = strlen(kid);

	if (n == 0) {
		cfgp_derr(c, d, "empty kid");
		return -1;
	}
	if (n > CONFIG_KID_MAX) {
		cfgp_derr(c, d, "kid %s is longer than %d characters",
			  cfgp_show(c, kid), CONFIG_KID_MAX);
		return -1;
	}
	for (const char *p = kid; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			cfgp_derr(c, d,
				  "kid %s holds a character that is not "
				  "printable ASCII",
				  cfgp_show(c, kid));
			return -1;
		}
	}
	return 0;
}

/*
 * jwt_public_key PATH [KID]: kids are unique, and at most one key lacks one
 * (the key a token without kid is checked with, when the algorithm alone
 * does not tell).  The file must be readable now; its contents are the auth
 * module's business.
 */
void
cfga_add_public_key(struct pctx *c, const struct directive *d, char **argv,
		    int argc)
{
	struct config *cfg = c->cfg;
	const char *path = argv[0], *kid = argc > 1 ? argv[1] : NULL;
	size_t n = cfg->njwt_public_keys;
	int fd;

	if (path[0] != '/') {
		cfgp_derr(c, d, "%s is not an absolute path",
			  cfgp_show(c, path));
		return;
	}
	if (kid != NULL && check_kid(c, d, kid) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *k = cfg->jwt_public_key_kids[i];

		if (kid == NULL && k == NULL) {
			cfgp_derr(c, d,
				  "a second key without kid (the first is at "
				  "%s:%d); at most one key may lack a kid",
				  c->key_at[i].file, c->key_at[i].line);
			return;
		}
		if (kid != NULL && k != NULL && strcmp(kid, k) == 0) {
			cfgp_derr(c, d,
				  "duplicate kid %s (first given at %s:%d)",
				  cfgp_show(c, kid), c->key_at[i].file,
				  c->key_at[i].line);
			return;
		}
	}
	if (n == CONFIG_MAX_JWT_KEYS) {
		cfgp_derr(c, d, "too many keys (at most %d)",
			  CONFIG_MAX_JWT_KEYS);
		return;
	}
	if (!c->defaults) {
		if ((fd = cfga_open_regular(c, d, path)) == -1)
			return;
		close(fd);
	}
	cfg->jwt_public_keys = util_realloc(
	    cfg->jwt_public_keys, (n + 1) * sizeof(*cfg->jwt_public_keys));
	cfg->jwt_public_key_kids =
	    util_realloc(cfg->jwt_public_key_kids,
			 (n + 1) * sizeof(*cfg->jwt_public_key_kids));
	cfg->jwt_public_keys[n] = util_strdup(path);
	cfg->jwt_public_key_kids[n] = kid != NULL ? util_strdup(kid) : NULL;
	c->key_at[n].file = c->file;
	c->key_at[n].line = c->line;
	cfg->njwt_public_keys = n + 1;
}

/* One key a line, in the order given (the order the keyring tries them). */
void
cfga_dump_public_keys(const struct directive *d, const struct config *cfg,
		      FILE *fp)
{
	if (cfg->njwt_public_keys == 0)
		fprintf(fp, "# %s (not set)\n", d->name);
	for (size_t i = 0; i < cfg->njwt_public_keys; i++) {
		fprintf(fp, "%s ", d->name);
		cfgv_dump_word(fp, cfg->jwt_public_keys[i]);
		if (cfg->jwt_public_key_kids[i] != NULL) {
			fputc(' ', fp);
			cfgv_dump_word(fp, cfg->jwt_public_key_kids[i]);
		}
		fputc('\n', fp);
	}
}

/* ---- expected claims ---------------------------------------------------- */

/*
 * jwt_issuer, jwt_audience: compared with a claim of at most
 * CONFIG_CLAIM_MAX bytes; a longer value could never match.  Control
 * characters are refused: no issuer has them, a quoting mistake does.
 */
int
cfga_check_claim(struct pctx *c, const struct directive *d, const char *v)
{
	if (strlen(v) > CONFIG_CLAIM_MAX) {
		cfgp_derr(c, d, "%s is longer than %d bytes", cfgp_show(c, v),
			  CONFIG_CLAIM_MAX);
		return -1;
	}
	for (const char *p = v; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			cfgp_derr(c, d, "%s holds a control character",
				  cfgp_show(c, v));
			return -1;
		}
	}
	return 0;
}

/* ---- auth_failure_limit ---------------------------------------------------
 */

#define FAILURE_WINDOW_MIN CFG_MS_SECOND
#define FAILURE_WINDOW_MAX CFG_MS_DAY

void
cfga_set_failure_limit(struct pctx *c, const struct directive *d, char **argv,
		       int argc)
{
	struct config *cfg = c->cfg;
	uint64_t n, ms;
	char a[32], b[32];
	int r;

	if ((r = cfgv_parse_u64(argv[0], &n)) == -1) {
		cfgp_derr(c, d, "%s is not a number", cfgp_show(c, argv[0]));
		return;
	}
	if (r == -2 || n < d->min || n > d->max) {
		cfgp_derr(c, d, "%s is out of range (%llu..%llu)",
			  cfgp_show(c, argv[0]), (unsigned long long)d->min,
			  (unsigned long long)d->max);
		return;
	}
	if (argc == 1 && n == 0) {
		cfg->auth_failure_limit = 0;
		return;
	}
	if (argc != 3 || strcmp(argv[1], "per") != 0) {
		cfgp_derr(c, d,
			  "expected N per DURATION (e.g. 10 per 1m), "
			  "or 0 for no limit");
		return;
	}
	if ((r = config_parse_duration_ms(argv[2], &ms)) != 0 ||
	    ms < FAILURE_WINDOW_MIN || ms > FAILURE_WINDOW_MAX) {
		cfgv_fmt_duration(FAILURE_WINDOW_MIN, a, sizeof(a));
		cfgv_fmt_duration(FAILURE_WINDOW_MAX, b, sizeof(b));
		cfgp_derr(c, d, "%s is not a duration in %s..%s",
			  cfgp_show(c, argv[2]), a, b);
		return;
	}
	cfg->auth_failure_limit = (unsigned)n;
	cfg->auth_failure_window_ms = ms;
}

void
cfga_dump_failure_limit(const struct directive *d, const struct config *cfg,
			FILE *fp)
{
	char buf[32];

	if (cfg->auth_failure_limit == 0) {
		fprintf(fp, "%s 0\n", d->name);
		return;
	}
	cfgv_fmt_duration(cfg->auth_failure_window_ms, buf, sizeof(buf));
	fprintf(fp, "%s %u per %s\n", d->name, cfg->auth_failure_limit, buf);
}

/* ---- required scopes ---------------------------------------------------- */

static int
scope_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_' || ch == ':' ||
	       ch == '.' || ch == '-';
}

static int
valid_scope(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_SCOPE_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (!scope_char(*s))
			return 0;
	return 1;
}

/* required_scopes: each value adds one scope; the lines add up. */
void
cfga_add_scopes(struct pctx *c, const struct directive *d, char **argv,
		int argc)
{
	struct config *cfg = c->cfg;

	for (int i = 0; i < argc; i++) {
		size_t j, n = cfg->nrequired_scopes;

		if (!valid_scope(argv[i])) {
			cfgp_derr(c, d,
				  "%s is not a scope (1 to %d characters "
				  "among A-Z, a-z, 0-9, \"_\", \":\", \".\" "
				  "and \"-\")",
				  cfgp_show(c, argv[i]), CONFIG_SCOPE_MAX);
			continue;
		}
		for (j = 0; j < n; j++)
			if (strcmp(cfg->required_scopes[j], argv[i]) == 0)
				break;
		if (j < n) {
			cfgp_derr(c, d,
				  "duplicate scope %s (first given at %s:%d)",
				  cfgp_show(c, argv[i]), c->scope_at[j].file,
				  c->scope_at[j].line);
			continue;
		}
		if (n == CONFIG_MAX_SCOPES) {
			cfgp_derr(c, d, "too many scopes (at most %d)",
				  CONFIG_MAX_SCOPES);
			return;
		}
		cfg->required_scopes =
		    util_realloc(cfg->required_scopes,
				 (n + 1) * sizeof(*cfg->required_scopes));
		cfg->required_scopes[n] = util_strdup(argv[i]);
		c->scope_at[n].file = c->file;
		c->scope_at[n].line = c->line;
		cfg->nrequired_scopes = n + 1;
	}
}

/* One scope a line: any number of them reads back the same. */
void
cfga_dump_scopes(const struct directive *d, const struct config *cfg, FILE *fp)
{
	if (cfg->nrequired_scopes == 0)
		fprintf(fp, "# %s (not set: no scope required)\n", d->name);
	for (size_t i = 0; i < cfg->nrequired_scopes; i++)
		fprintf(fp, "%s %s\n", d->name, cfg->required_scopes[i]);
}

/* ---- freeing ------------------------------------------------------------ */

void
cfga_free(struct config *cfg)
{
	wipe_free(cfg->jwt_secret, cfg->jwt_secret_len);
	cfg->jwt_secret = NULL;
	for (size_t i = 0; i < cfg->njwt_public_keys; i++) {
		free(cfg->jwt_public_keys[i]);
		free(cfg->jwt_public_key_kids[i]);
	}
	UTIL_FREE(cfg->jwt_public_keys);
	UTIL_FREE(cfg->jwt_public_key_kids);
	cfg->njwt_public_keys = 0;
	for (size_t i = 0; i < cfg->nrequired_scopes; i++)
		free(cfg->required_scopes[i]);
	UTIL_FREE(cfg->required_scopes);
	cfg->nrequired_scopes = 0;
}
