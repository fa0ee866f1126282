/*
 * worker: one worker process, a libev loop that owns its connections.
 */
#ifndef ORCHD_WORKER_H
#define ORCHD_WORKER_H

#include <ev.h>
#include <stdint.h>

#include "orchd/config.h"
#include "orchd/http.h"
#include "orchd/shm.h"

#define WORKER_ACCEPT_BUDGET 64       /* accepts per listener per wakeup */
#define WORKER_HEAD_TIMEOUT_MS 10000  /* a request head must arrive in this */
#define WORKER_IDLE_TIMEOUT_MS 60000  /* keep-alive idle */
#define WORKER_WRITE_TIMEOUT_MS 30000 /* a response must drain in this */
#define WORKER_LINGER_TIMEOUT_MS 2000
#define WORKER_MAX_BODY 65536         /* request bodies we will discard */

struct conn;

struct worker_listener {
	ev_io io;
	int fd;
	int tls;
	struct worker *w;
};

struct worker {
	struct ev_loop *loop;
	const struct config *cfg;
	struct shm_segment *shm;
	struct shm_worker *stats;
	int slot;
	unsigned generation;

	struct worker_listener listeners[CONFIG_MAX_LISTEN];
	int nlisteners;
	int accept_paused;
	ev_timer accept_resume;

	struct conn *conns; /* live list */
	struct conn *dead;  /* closed, freed by conn_reap() */
	uint64_t nconns;

	int draining;
	int exiting;
	ev_timer drain_timer;
	ev_prepare reaper; /* runs before the loop blocks */
	ev_signal sig_term, sig_usr1;
};

struct worker_args {
	const struct config *cfg;
	struct shm_segment *shm;
	int slot;
	unsigned generation;
	int fds[CONFIG_MAX_LISTEN];
	int tls[CONFIG_MAX_LISTEN];
	int nfds;
};

/* Run a worker process; exits the process (0 on drain, 1 on failure). */
__attribute__((noreturn)) void worker_run(const struct worker_args *args);

/* Called by conn for each complete request head. */
void worker_dispatch_http(struct conn *c, const struct http_request *req);
/* Called by conn when a connection is freed (accounting, accept resume). */
void worker_conn_freed(struct worker *w);

#endif
