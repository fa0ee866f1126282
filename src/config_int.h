/*
 * config_int.h: what the three parts of the orchd.conf(5) parser share.  Not
 * a public API: other modules include orchd/config.h only.
 *
 *  - src/config.c: the directive table, the reader, the cross-checks and the
 *    dump;
 *  - src/config_auth.c: the handlers of the authentication directives (the
 *    JWT secret, public keys, expected claims, required scopes), which need
 *    the parse context to report errors and remember where values came from;
 *  - src/config_db.c: the handlers of the PostgreSQL directives (the
 *    conninfo, given inline or in a file, checked with libpq);
 *  - src/config_value.c: the value parsers.
 *
 * The value parsers are pure: text in, value or reason out, no context, no
 * error reporting.  Those that can fail in several ways return NULL on
 * success or why the text is not valid, a constant the caller quotes after
 * the whole text, so the reason needs no formatting.
 */
#ifndef ORCHD_CONFIG_INT_H
#define ORCHD_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "orchd/config.h"
#include "orchd/log.h" /* ORCHD_PRINTF */

/* Words stored per line by cfgv_tokenize(); more are only counted. */
#define CFGV_MAX_ARGS 32
/* Longest line of a config file (a longer one ends the file's parse). */
#define CFGV_LINE_MAX 65536

#define CFG_MS_SECOND 1000ULL
#define CFG_MS_MINUTE (60 * CFG_MS_SECOND)
#define CFG_MS_HOUR (60 * CFG_MS_MINUTE)
#define CFG_MS_DAY (24 * CFG_MS_HOUR)

#define CFG_KIB 1024ULL
#define CFG_MIB (1024 * CFG_KIB)
#define CFG_GIB (1024 * CFG_MIB)

/* Where the lines come from: a file, or a string when fp is NULL. */
struct cfgv_src {
	FILE *fp;
	const char *text;
};

/*
 * The next line, without its newline, into buf (CFGV_LINE_MAX + 1 bytes).
 * Returns its length, -1 at the end, -2 when it is too long.
 */
ssize_t cfgv_getline(struct cfgv_src *s, char *buf);

/*
 * Split a line into words: blanks separate, '#' outside quotes starts a
 * comment, "..." may hold blanks and '#' (with \" and \\ escapes) and may be
 * glued to unquoted text like in sh.  Words go to buf (at least strlen(line)
 * + 2 bytes), pointers to them to argv[CFGV_MAX_ARGS].  Returns the word
 * count, which can exceed CFGV_MAX_ARGS (the extra words are counted but not
 * stored), or -1 on an unterminated quote.
 */
int cfgv_tokenize(const char *line, char *buf, char **argv);

/* Write v so that cfgv_tokenize() reads it back as one word. */
void cfgv_dump_word(FILE *fp, const char *v);

/* Levenshtein distance, for "did you mean"; long words are never close. */
size_t cfgv_edit_distance(const char *a, const char *b);

/* Strict decimal, digits only: 0 ok, -1 not a number, -2 overflow. */
int cfgv_parse_u64(const char *s, uint64_t *out);

/* In the largest exact unit: 30000 -> "30s", 1500 -> "1500ms", 0 -> "0s". */
void cfgv_fmt_duration(uint64_t ms, char *buf, size_t len);

/* In the largest exact unit: 8192 -> "8k", 1000 -> "1000", 0 -> "0". */
void cfgv_fmt_size(uint64_t n, char *buf, size_t len);

/* A word of an enumeration (on|off, the log levels); lists end with NULL. */
struct enumval {
	const char *name;
	int value;
};

/* The value of word v in e: 0 ok, -1 not one of them. */
int cfgv_find_enum(const struct enumval *e, const char *v, int *out);
/* The word of value in e, NULL if none. */
const char *cfgv_enum_name(const struct enumval *e, int value);
/* The words of e for a message: "error, warn, notice, info or debug". */
void cfgv_enum_list(const struct enumval *e, char *buf, size_t len);

/* "ADDR:PORT" of a listen directive into *out (text set, tls 0). */
const char *cfgv_listen(const char *s, struct config_listen *out);

/* A redis address into *out, whose strings the caller frees. */
const char *cfgv_redis(const char *s, struct config_redis *out);

/*
 * An origin, "scheme://host[:port]" or "*", normalized into out (at least
 * CONFIG_ORIGIN_MAX bytes): scheme and host in lower case, IPv6 in RFC 5952
 * form, no default port (80 for http and ws, 443 for https and wss).
 */
const char *cfgv_origin(const char *s, char *out);

/* ---- the directive table and the parse context ------------------------ */

#define CFG_MAX_DIRECTIVES 96 /* size of the per-parse bookkeeping */

enum dtype {
	DT_STRING,   /* char *: any non-empty word */
	DT_PATH,     /* char *: an absolute path */
	DT_UINT,     /* unsigned: min..max */
	DT_DURATION, /* uint64_t milliseconds: min..max */
	DT_SIZE,     /* uint64_t bytes: min..max */
	DT_BOOL,     /* int: on|off */
	DT_ENUM,     /* int: one of enums[] */
	DT_LISTEN,   /* cfg->listen[]: ADDR:PORT [tls] */
	DT_REDIS,    /* cfg->redis and cfg->redis_text */
	DT_CUSTOM,   /* set() does it all */
	DT_INCLUDE,  /* handled by the reader itself */
};

#define D_REPEAT 0x1   /* may be given more than once */
#define D_READABLE 0x2 /* DT_PATH: readable by the invoking user right now */
#define D_SECONDS 0x4  /* DT_DURATION: a whole number of seconds */

struct pctx;
struct directive;

/*
 * check: extra validation (and side effects, like loading the jwt secret) of
 * a string or path value, after the generic checks.  Reports its own error
 * and returns -1 to keep the value out of the config.
 */
typedef int (*dir_check_fn)(struct pctx *c, const struct directive *d,
			    const char *v);
typedef void (*dir_set_fn)(struct pctx *c, const struct directive *d,
			   char **argv, int argc);
typedef void (*dir_dump_fn)(const struct directive *d, const struct config *cfg,
			    FILE *fp);

struct directive {
	const char *name;
	enum dtype type;
	unsigned flags;
	size_t off;      /* into struct config (typed by .type) */
	const char *def; /* default, parsed at config_new(); NULL: unset */
	uint64_t min;    /* DT_UINT, DT_DURATION (ms), DT_SIZE, workers */
	uint64_t max;
	int maxargs; /* values allowed (at least one is required); 0: 1 */
	const struct enumval *enums;
	dir_check_fn check;
	dir_set_fn set;   /* DT_CUSTOM */
	dir_dump_fn dump; /* overrides the generic dump of the type */
	const char *syntax;
	const char *help;
};

/*
 * Where a directive was written; file == NULL: never given.  env: the
 * environment variable that overrode it, if any.
 */
struct where {
	const char *file;
	int line;
	const char *env;
};

/* A file being read, for include loop detection. */
struct pfile {
	const char *name;
	dev_t dev;
	ino_t ino;
	int have_id; /* 0: the in-memory text of config_load_string() */
};

struct pctx {
	struct config *cfg;
	config_error_fn errfn;
	void *arg;
	int nerr;
	int defaults; /* parsing the built-in defaults: no file-system checks */

	/* Where the directive being applied comes from. */
	const char *file;
	int line;
	const char *envname; /* non-NULL: an environment override */
	int ms_bare;         /* a bare integer duration is ms (environment) */
	int semicolon;       /* the line's last word ends with ';' */

	struct pfile stack[CONFIG_MAX_INCLUDE_DEPTH + 1];
	int depth;

	struct where first[CFG_MAX_DIRECTIVES];
	struct where listen_at[CONFIG_MAX_LISTEN];
	struct where origin_at[CONFIG_MAX_ORIGINS];
	struct where key_at[CONFIG_MAX_JWT_KEYS];
	struct where scope_at[CONFIG_MAX_SCOPES];

	char **names; /* the file names the struct where above point to */
	size_t nnames;

	char show[2][320];
	unsigned nshow;
};

/* An error, as is (the caller wrote the "file:line: " part). */
void cfgp_report(struct pctx *c, const char *fmt, ...) ORCHD_PRINTF(2, 3);
/*
 * An error about the line being applied: "file:line: directive: msg"
 * ("file:line: msg" when d is NULL), or "environment: NAME: msg".
 */
void cfgp_derr(struct pctx *c, const struct directive *d, const char *fmt, ...)
    ORCHD_PRINTF(3, 4);
/* A value quoted for a message, shortened; two may be live at once. */
const char *cfgp_show(struct pctx *c, const char *v);

/* ---- config_auth.c: the authentication directives ---------------------- */

/*
 * Open path for reading, refusing anything but a regular file (a FIFO
 * would hang "orchd -t").  The descriptor, or -1 once reported.
 */
int cfga_open_regular(struct pctx *c, const struct directive *d,
		      const char *path);
/* A small secret file, without its final newline: length, or -1. */
ssize_t cfga_read_secret(struct pctx *c, const struct directive *d,
			 const char *path, char *buf, size_t cap, size_t max);
/* jwt_secret_file: load the secret now (check of a DT_PATH). */
int cfga_load_jwt_secret(struct pctx *c, const struct directive *d,
			 const char *path);
void cfga_dump_jwt_secret(const struct directive *d, const struct config *cfg,
			  FILE *fp);
/* jwt_public_key PATH [KID] */
void cfga_add_public_key(struct pctx *c, const struct directive *d, char **argv,
			 int argc);
void cfga_dump_public_keys(const struct directive *d, const struct config *cfg,
			   FILE *fp);
/* jwt_issuer, jwt_audience (check of a DT_STRING) */
int cfga_check_claim(struct pctx *c, const struct directive *d, const char *v);
/* required_scopes SCOPE... */
void cfga_add_scopes(struct pctx *c, const struct directive *d, char **argv,
		     int argc);
void cfga_dump_scopes(const struct directive *d, const struct config *cfg,
		      FILE *fp);
/* auth_failure_limit N per DURATION | 0 */
void cfga_set_failure_limit(struct pctx *c, const struct directive *d,
			    char **argv, int argc);
void cfga_dump_failure_limit(const struct directive *d,
			     const struct config *cfg, FILE *fp);
/* DAEMON_JWT_SECRET, after the file. */
void cfga_apply_env(struct pctx *c);
/* What the above allocated (the DT_STRING and DT_PATH fields excepted). */
void cfga_free(struct config *cfg);

/* ---- config_sock.c: the admin socket ----------------------------------- */

/* config_core.c: the core directives' handlers (see the table). */
int cfgc_check_user(struct pctx *c, const struct directive *d, const char *v);
int cfgc_check_group(struct pctx *c, const struct directive *d, const char *v);
int cfgc_check_ws_path(struct pctx *c, const struct directive *d,
		       const char *v);
void cfgc_set_workers(struct pctx *c, const struct directive *d, char **argv,
		      int argc);
void cfgc_set_log(struct pctx *c, const struct directive *d, char **argv,
		  int argc);
void cfgc_add_listen(struct pctx *c, const struct directive *d, char **argv,
		     int argc);
void cfgc_set_redis(struct pctx *c, const struct directive *d, char **argv,
		    int argc);
void cfgc_add_origins(struct pctx *c, const struct directive *d, char **argv,
		      int argc);
void cfgc_dump_workers(const struct directive *d, const struct config *cfg,
		       FILE *fp);
void cfgc_dump_log(const struct directive *d, const struct config *cfg,
		   FILE *fp);
void cfgc_dump_burst(const struct directive *d, const struct config *cfg,
		     FILE *fp);
void cfgc_dump_session_ttl(const struct directive *d, const struct config *cfg,
			   FILE *fp);
void cfgc_dump_origins(const struct directive *d, const struct config *cfg,
		       FILE *fp);

/* admin_socket PATH [MODE] (DT_CUSTOM). */
void cfgs_set_admin_socket(struct pctx *c, const struct directive *d,
			   char **argv, int argc);
void cfgs_dump_admin_socket(const struct directive *d, const struct config *cfg,
			    FILE *fp);
void cfgs_free(struct config *cfg);

/* ---- config_db.c: the PostgreSQL directory ----------------------------- */

/* database CONNINFO (DT_CUSTOM). */
void cfgd_set_database(struct pctx *c, const struct directive *d, char **argv,
		       int argc);
/* -T says whether it is set, never what it is. */
void cfgd_dump_database(const struct directive *d, const struct config *cfg,
			FILE *fp);
/* database_file: load and check the conninfo now (check of a DT_PATH). */
int cfgd_load_database_file(struct pctx *c, const struct directive *d,
			    const char *path);
/* What the above allocated (database_file excepted: a DT_PATH). */
void cfgd_free(struct config *cfg);

/* ---- config_admin.c: who may read /metrics, /stats, /status ------------ */

/* admin_allow ADDR[/PREFIX]... | none (DT_CUSTOM, repeatable). */
void cfgadm_set_allow(struct pctx *c, const struct directive *d, char **argv,
		      int argc);
void cfgadm_dump_allow(const struct directive *d, const struct config *cfg,
		       FILE *fp);
/* admin_token_file: load the token now (check of a DT_PATH). */
int cfgadm_load_token(struct pctx *c, const struct directive *d,
		      const char *path);
/* What the above allocated (admin_token_file excepted: a DT_PATH). */
void cfgadm_free(struct config *cfg);

#endif
