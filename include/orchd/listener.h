/*
 * listener: the listening sockets, owned by the supervisor.
 *
 * Each `listen` address gets one SO_REUSEPORT socket per worker slot, so the
 * kernel spreads connections over the workers and a respawned worker
 * inherits its predecessor's accept queue.  A set is rebuilt on reload by
 * reusing the sockets of unchanged addresses, which is what keeps a reload
 * from refusing connections.
 */
#ifndef ORCHD_LISTENER_H
#define ORCHD_LISTENER_H

#include "orchd/config.h"

#define LISTENER_BACKLOG 4096

struct listener {
	struct config_listen addr;
	int fds[CONFIG_MAX_WORKERS]; /* -1 when unused */
	int nslots;
};

struct listener_set {
	struct listener l[CONFIG_MAX_LISTEN];
	int n;
};

void listener_set_init(struct listener_set *set);

/*
 * Build next for cfg, reusing matching sockets of cur (which may be NULL or
 * empty).  Sockets taken over from cur are set to -1 in cur, so that
 * listener_set_close(cur) afterwards closes only what next does not use.
 * On failure nothing in cur is touched, what was opened is closed, and -1
 * is returned (logged).
 */
int listener_set_build(struct listener_set *next, struct listener_set *cur,
		       const struct config *cfg);
void listener_set_close(struct listener_set *set);

/* Open one listening socket (non-blocking, close-on-exec); -1 on error. */
int listener_open(const struct config_listen *addr);

#endif
