/*
 * worker: one worker process, a libev loop that owns its connections.
 */
#ifndef ORCHD_WORKER_H
#define ORCHD_WORKER_H

#include <ev.h>
#include <stdint.h>

#include "orchd/addrlimit.h"
#include "orchd/authlimit.h"
#include "orchd/config.h"
#include "orchd/http.h"
#include "orchd/pmd.h"
#include "orchd/shm.h"

#define WORKER_ACCEPT_BUDGET 64       /* accepts per listener per wakeup */
#define WORKER_WRITE_TIMEOUT_MS 30000 /* an HTTP response must drain in this */
#define WORKER_LINGER_TIMEOUT_MS 2000
#define WORKER_SCRATCH_MIN 65536 /* shared read buffer */

struct conn;
struct jwt_keyring;
struct queue;
struct redis;
struct registry;
struct deliver;
struct directory;

struct worker_listener {
	ev_io io;
	int fd;
	int tls;
	int admin; /* listen ... admin */
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

	/* Every read lands here first: connections keep only leftovers. */
	uint8_t *scratch;
	size_t scratch_size;
	struct pmd_config pmdcfg;
	void *tls_ctx; /* SSL_CTX * when a listener is tls */
	struct redis *redis;
	struct queue *queue;     /* the durable event queue (replay, acks) */
	struct deliver *deliver; /* events from the relay's pipe */
	struct directory *dir;   /* PostgreSQL directory; NULL: off */
	struct jwt_keyring *keyring;
	struct registry *registry;
	uint64_t conn_seq;
	struct addrlimit addrlimit;
	struct authlimit authlimit; /* token endpoints' failed attempts */

	struct conn *conns; /* live list */
	struct conn *dead;  /* closed, freed by conn_reap() */
	struct conn *flush_list; /* queued output this iteration */
	uint64_t nconns;

	int draining;
	int exiting;
	ev_timer drain_timer;
	ev_timer drain_close_timer; /* 1001 to daemons that stayed */
	ev_prepare reaper; /* runs before the loop blocks */
	ev_signal sig_term, sig_usr1, sig_usr2;
};

struct worker_args {
	const struct config *cfg;
	struct shm_segment *shm;
	int slot;
	unsigned generation;
	int fds[CONFIG_MAX_LISTEN];
	int tls[CONFIG_MAX_LISTEN];
	int admin[CONFIG_MAX_LISTEN];
	int nfds;
	void *tls_ctx; /* SSL_CTX *, built by the supervisor */
	struct jwt_keyring *keyring; /* built by the supervisor */
	struct registry *registry;   /* in shared memory */
	int relay_fd;                /* read end of the relay's event pipe */
	int ctl_fd;                  /* control socket: new pipes */
};

/* Run a worker process; exits the process (0 on drain, 1 on failure). */
__attribute__((noreturn)) void worker_run(const struct worker_args *args);

/*
 * Stop accepting, ask authenticated daemons to reconnect (reason), close
 * the rest, and exit once empty or at drain_timeout.  Idempotent.
 */
void worker_drain(struct worker *w, const char *reason);
/* Does the endpoint of this request read its body (else it is discarded)? */
int worker_wants_body(const struct http_request *req);
/* Called by conn for each complete request head (and body, if wanted). */
void worker_dispatch_http(struct conn *c, const struct http_request *req);
/* Called by conn when a connection is freed (accounting, accept resume). */
void worker_conn_freed(struct worker *w);
/* Give a new connection on a tls listener its TLS transport; -1 on error. */
int worker_tls_attach(struct worker *w, struct conn *c);

#endif
