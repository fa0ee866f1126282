/*
 * orchctl: global options, the config, and the command table.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchctl.h"
#include "orchd/config.h"
#include "orchd/log.h"

#ifndef ORCHD_SYSCONFDIR
#define ORCHD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFFILE ORCHD_SYSCONFDIR "/orchd/orchd.conf"

struct command {
	const char *name;
	int (*run)(int argc, char **argv, const struct orchctl_opts *o);
	const char *help;
};

static const struct command commands[] = {
    {"status", orchctl_status, "workers, connections, relay and database"},
    {"connections", orchctl_connections, "list connections (filters)"},
    {"kick", orchctl_kick, "close connections with 4006"},
    {"revoke", orchctl_revoke, "revoke a token id (jti)"},
    {"publish", orchctl_publish, "publish an event record to Redis"},
    {"token", orchctl_token, "mint an access token"},
    {"listen", orchctl_listen, "run a reference daemon client"},
    {"loglevel", orchctl_loglevel, "show or change the log level"},
    {"drain", orchctl_drain, "drain one worker"},
    {"bench", orchctl_bench, "load generator"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *fp)
{
	fprintf(fp,
		"usage: orchctl [-hqV] [--json] [-c file] [-s socket] "
		"command [args]\n"
		"  -c file    orchd's configuration (default %s)\n"
		"  -s socket  the admin socket (default: the config's "
		"admin_socket)\n"
		"  --json     machine-readable output\n"
		"  -q         quiet\n"
		"commands:\n",
		DEFAULT_CONFFILE);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(fp, "  %-12s %s\n", commands[i].name, commands[i].help);
	fprintf(fp, "See orchctl(1); \"orchctl COMMAND -h\" for a "
		    "command's options.\n");
}

/* Config errors are reported once, by the commands that need the config. */
static void
config_error(void *arg, const char *msg)
{
	int *quiet = arg;

	if (!*quiet)
		fprintf(stderr, "orchctl: %s\n", msg);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct orchctl_opts o;
	const struct command *cmd = NULL;
	int ch, conf_given = 0, rc;

	memset(&o, 0, sizeof(o));
	o.conffile = DEFAULT_CONFFILE;
	/* "+": stop at the command, whose options are its own. */
	while ((ch = getopt_long(argc, argv, "+c:hqs:V", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			o.conffile = optarg;
			conf_given = 1;
			break;
		case 's':
			o.admin_socket = optarg;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'q':
			o.quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return ORCHCTL_OK;
		case 'V':
			printf("orchctl %s\n", PACKAGE_VERSION);
			return ORCHCTL_OK;
		default:
			usage(stderr);
			return ORCHCTL_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return ORCHCTL_USAGE;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(argv[0], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		fprintf(stderr, "orchctl: unknown command \"%s\"\n", argv[0]);
		usage(stderr);
		return ORCHCTL_USAGE;
	}

	log_init("orchctl");
	log_configure(LOG_DEST_STDERR, NULL, LOG_WARNING);
	o.cfg = config_new();
	/*
	 * A missing default config is fine for commands that take everything
	 * on their command line (bench, listen with --url/--token); a config
	 * named with -c must load.
	 */
	{
		int quiet = !conf_given;

		if (config_load(o.cfg, o.conffile, config_error, &quiet) != 0) {
			if (conf_given) {
				config_free(o.cfg);
				return ORCHCTL_FAIL;
			}
			config_free(o.cfg);
			o.cfg = NULL;
		}
	}
	/*
	 * Commands run getopt on their own argv.  0, not 1: glibc then starts
	 * afresh, forgetting the "+" (stop at the first operand) used above.
	 */
	optind = 0;
	rc = cmd->run(argc, argv, &o);
	if (o.cfg != NULL)
		config_free(o.cfg);
	return rc;
}
