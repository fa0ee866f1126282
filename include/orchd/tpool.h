/*
 * tpool: blocking or CPU-heavy work off the loop, answered on a libev loop.
 *
 * A job is a work function run on one of the pool's threads and a done
 * function run afterwards on the submitting loop (through an ev_async:
 * always from the loop, never from inside tpool_submit()).  Jobs start in
 * submission order; at most max_threads run at once (threads are started
 * on demand and then wait for work for the life of the process), and at
 * most max_queued have not been taken by a thread yet: beyond that
 * tpool_submit() refuses the job with TPOOL_FULL and the caller answers
 * "busy" its own way.
 *
 * tpool_cancel() means done never runs.  A queued job is dropped, a
 * finished one discarded; a running job cannot be stopped: it is orphaned,
 * its thread finishes the work and then calls the job's release function
 * on its argument, without touching the loop.
 *
 * Pools are separate instances (one slow kind of work cannot starve
 * another), each private to the process that made it: threads block every
 * signal, and a child forked afterwards sees every pool empty and starts
 * its own threads (jobs of the parent are the parent's).  A pool lives as
 * long as its process.
 */
#ifndef ORCHD_TPOOL_H
#define ORCHD_TPOOL_H

#include <ev.h>

#define TPOOL_THREADS_MAX 64  /* max_threads is clamped to 1..this */
#define TPOOL_QUEUED_MAX 4096 /* max_queued is clamped to 1..this */

enum tpool_status {
	TPOOL_OK = 0,
	TPOOL_FULL,     /* max_queued jobs already wait for a thread */
	TPOOL_NOTHREAD, /* no thread could be started and none exists */
};

/* What tpool_cancel() found. */
enum tpool_cancelled {
	TPOOL_CANCEL_UNRUN,    /* was queued: work never ran; arg is yours */
	TPOOL_CANCEL_DONE,     /* work had finished: arg (results) is yours */
	TPOOL_CANCEL_ORPHANED, /* work runs: its thread will release(arg) */
};

struct tpool;
struct tpool_job;

typedef void (*tpool_work_fn)(void *arg);    /* on a pool thread */
typedef void (*tpool_done_fn)(void *arg);    /* on the loop, job gone */
typedef void (*tpool_release_fn)(void *arg); /* on a thread: orphans */

/* name is for log lines ("kdf"); never NULL (out of memory is fatal). */
struct tpool *tpool_new(const char *name, int max_threads, int max_queued);
/*
 * Queue work(arg) and, once it returned, done(arg) on loop.  TPOOL_OK and
 * *job (for tpool_cancel() until done runs), or another status (nothing
 * queued, done will not run).  release may be NULL: then an orphaned arg
 * is left alone (the caller must not need it freed).
 */
enum tpool_status tpool_submit(struct tpool *p, struct ev_loop *loop,
			       tpool_work_fn work, tpool_done_fn done,
			       tpool_release_fn release, void *arg,
			       struct tpool_job **job);
/* From the loop, before done ran: done never will.  NULL is accepted. */
enum tpool_cancelled tpool_cancel(struct tpool_job *job);

/* Jobs whose work runs now, orphans included (tests, metrics). */
int tpool_running(struct tpool *p);
/* Jobs waiting for a thread. */
int tpool_queued(struct tpool *p);
/* Threads started (they never exit). */
int tpool_threads(struct tpool *p);

#endif
