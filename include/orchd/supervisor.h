/*
 * supervisor: the master process.  Owns the config, the listening sockets,
 * the shared memory and the pid file; forks, reaps and respawns workers;
 * turns signals into stop, reload and log reopen.
 */
#ifndef ORCHD_SUPERVISOR_H
#define ORCHD_SUPERVISOR_H

#include "orchd/config.h"

#define SUPERVISOR_BACKOFF_MIN_MS 100
#define SUPERVISOR_BACKOFF_MAX_MS 30000
#define SUPERVISOR_STABLE_MS 10000 /* uptime that resets the backoff */
#define SUPERVISOR_KILL_GRACE_MS 1000

struct supervisor_opts {
	const char *conffile;
	const char *pidfile; /* -p, overrides the directive; may be NULL */
	int foreground;
};

/* Run until stopped; takes ownership of cfg.  Returns the exit status. */
int supervisor_run(struct config *cfg, const struct supervisor_opts *opts);

#endif
