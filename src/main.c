/*
 * orchd: WebSocket event-push daemon for orchestrator daemons.
 *
 * main() parses the command line and the config file; everything else is
 * the supervisor's (and, after fork, the workers').
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchd/config.h"
#include "orchd/log.h"
#include "orchd/supervisor.h"
#include "orchd/tls.h"

#ifndef ORCHD_SYSCONFDIR
#define ORCHD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFFILE ORCHD_SYSCONFDIR "/orchd/orchd.conf"

static void
usage(FILE *fp)
{
	fprintf(fp,
		"usage: orchd [-fhqtTV] [-c file] [-p file]\n"
		"  -c file  configuration file (default %s)\n"
		"  -f       stay in the foreground\n"
		"  -p file  pid file (overrides the pidfile directive)\n"
		"  -q       with -t: print errors only\n"
		"  -t       test the configuration and exit\n"
		"  -T       test the configuration, print it and exit\n"
		"  -V       print the version and exit\n"
		"  -h       this help\n",
		DEFAULT_CONFFILE);
}

static void
print_error(void *arg, const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

int
main(int argc, char *argv[])
{
	struct supervisor_opts opts;
	struct config *cfg;
	char *conffile_abs = NULL;
	int ch, test = 0, dump = 0, quiet = 0, nerr, rc;

	memset(&opts, 0, sizeof(opts));
	opts.conffile = DEFAULT_CONFFILE;
	log_init("orchd");

	while ((ch = getopt(argc, argv, "c:fhp:qtTV")) != -1) {
		switch (ch) {
		case 'c':
			opts.conffile = optarg;
			break;
		case 'f':
			opts.foreground = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'p':
			opts.pidfile = optarg;
			break;
		case 'q':
			quiet = 1;
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			test = dump = 1;
			break;
		case 'V':
			printf("orchd %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "orchd: unexpected argument \"%s\"\n",
			argv[optind]);
		usage(stderr);
		return 2;
	}

	cfg = config_new();
	nerr = config_load(cfg, opts.conffile, print_error, NULL);
	/* Reloads happen after chdir("/"): remember where the file is. */
	if (!test && nerr == 0 &&
	    (conffile_abs = realpath(opts.conffile, NULL)) != NULL)
		opts.conffile = conffile_abs;
	/* A certificate that does not load is a configuration error. */
	if (nerr == 0 && tls_needed(cfg)) {
		void *ctx = tls_ctx_new(cfg);

		if (ctx == NULL)
			nerr++;
		tls_ctx_free(ctx);
	}
	if (test) {
		if (nerr > 0) {
			fprintf(stderr,
				"orchd: configuration file %s test failed "
				"(%d error%s)\n",
				opts.conffile, nerr, nerr == 1 ? "" : "s");
			config_free(cfg);
			return 1;
		}
		if (!quiet) {
			fprintf(stderr,
				"orchd: the configuration file %s syntax is "
				"ok\n",
				opts.conffile);
			fprintf(stderr,
				"orchd: configuration file %s test is "
				"successful\n",
				opts.conffile);
		}
		if (dump)
			config_dump(cfg, stdout);
		config_free(cfg);
		return 0;
	}
	if (nerr > 0) {
		fprintf(stderr, "orchd: %d error%s in %s; not starting\n", nerr,
			nerr == 1 ? "" : "s", opts.conffile);
		config_free(cfg);
		return 2;
	}
	rc = supervisor_run(cfg, &opts);
	free(conffile_abs);
	return rc;
}
