/*
 * orchctl: the operator's command-line tool (orchctl(1)).
 *
 * main.c parses the global options and the config, then hands the rest of
 * the command line to one command function.  Each returns the process exit
 * status: ORCHCTL_OK, ORCHCTL_FAIL or ORCHCTL_USAGE.
 */
#ifndef ORCHCTL_H
#define ORCHCTL_H

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
