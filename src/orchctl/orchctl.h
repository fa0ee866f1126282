/*
 * orchctl: the operator's command-line tool (orchctl(1)).
 *
 * main.c parses the global options and the config, then hands the rest of
 * the command line to one command function.  Each returns the process exit
 * status: ORCHCTL_OK, ORCHCTL_FAIL or ORCHCTL_USAGE.
 */
#ifndef ORCHCTL_H
#define ORCHCTL_H

#include <stddef.h>
#include <stdint.h>

#include "orchd/config.h"

#define ORCHCTL_OK 0
#define ORCHCTL_FAIL 1
#define ORCHCTL_USAGE 2

struct orchctl_opts {
	const char *conffile;     /* -c */
	const char *admin_socket; /* -s, else the config's admin_socket */
	int json;                 /* --json: machine-readable output */
	int quiet;                /* -q */
	/* The parsed config; NULL if it could not be loaded (commands that
	 * need it say so). */
	struct config *cfg;
};

/*
 * Mint an access token (ctl_token.c), shared by "token" and "listen".
 * scopes NULL: the default set (the five protocol scopes and the config's
 * required_scopes).  key_file NULL: HMAC with the config's jwt_secret.
 * Writes the token to out and its claims to claims; 0, or -1 after printing
 * why (prefixed with cmd).
 */
struct orchctl_mint {
	const char *orch, *daemon, *org, *workspace, *jti;
	char *scopes;    /* comma-separated, split in place; NULL: default */
	uint64_t ttl;    /* seconds; 0: the config's token_lifetime */
	const char *alg; /* NULL: HS256, or RS256/ES256 with key_file */
	const char *key_file;
	const char *kid;
};
int orchctl_mint_token(const struct orchctl_opts *o, const char *cmd,
		       const struct orchctl_mint *m, char *out, size_t cap,
		       char *claims, size_t claims_cap);

/* Admin socket commands (ctl_admin.c). */
int orchctl_status(int argc, char **argv, const struct orchctl_opts *o);
int orchctl_connections(int argc, char **argv, const struct orchctl_opts *o);
int orchctl_kick(int argc, char **argv, const struct orchctl_opts *o);
int orchctl_revoke(int argc, char **argv, const struct orchctl_opts *o);
int orchctl_loglevel(int argc, char **argv, const struct orchctl_opts *o);
int orchctl_drain(int argc, char **argv, const struct orchctl_opts *o);
/* Straight to Redis (ctl_publish.c). */
int orchctl_publish(int argc, char **argv, const struct orchctl_opts *o);
/* Mint a token (ctl_token.c). */
int orchctl_token(int argc, char **argv, const struct orchctl_opts *o);
/* The reference daemon client (ctl_listen.c). */
int orchctl_listen(int argc, char **argv, const struct orchctl_opts *o);
/* The load generator behind docs/BENCHMARKS.md (bench.c). */
int orchctl_bench(int argc, char **argv, const struct orchctl_opts *o);

#endif
