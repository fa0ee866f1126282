/*
 * worker_ctl: a worker's side of the operator commands that reach it as
 * frames on the relay's pipe (admin.h, ipc.h): kick, log level, drain.
 */
#ifndef ORCHD_WORKER_CTL_H
#define ORCHD_WORKER_CTL_H

struct ipc_kick;
struct worker;

/*
 * Close with 4006 (PROTOCOL.md section 5) every authenticated connection
 * of this worker that matches k; returns how many.
 */
unsigned worker_ctl_kick(struct worker *w, const struct ipc_kick *k);
/*
 * Was jti revoked by an operator in the last minute?  auth_complete()
 * asks, for an auth whose Redis check came before the revocation.
 */
int worker_ctl_revoked(const struct worker *w, const char *jti);
/* Set this process's log level (LOG_ERR..LOG_DEBUG). */
void worker_ctl_loglevel(struct worker *w, int level);
/* Drain as on reload, with reason in the reconnect messages, and exit. */
void worker_ctl_drain(struct worker *w, const char *reason);

#endif
