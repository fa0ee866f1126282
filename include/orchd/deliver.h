/*
 * deliver: the worker's end of the event pipeline.
 *
 * It reads the relay's pipe (ipc frames), finds the worker's connections an
 * event is for through two indexes -- per orchestrator, and every
 * registered connection for broadcasts -- and queues the event, serialized
 * once by the relay, on each that is subscribed to it (PROTOCOL.md section
 * 6).  It also runs the replay of a connection's durable queue after auth:
 * live events for a connection are held while its replay runs, and an event
 * id replayed is not delivered again live (for DELIVER_DEDUPE_MS after the
 * replay, the time an event the relay queued can still be on its way
 * through the pipe).
 */
#ifndef ORCHD_DELIVER_H
#define ORCHD_DELIVER_H

#include <stdint.h>

struct conn;
struct worker;

#define DELIVER_DEDUPE_MS 10000  /* replayed ids remembered this long */
#define DELIVER_FIRST_PAGE 1000  /* events fetched with the first page */
#define DELIVER_PAGE 500         /* events per later page */
#define DELIVER_PRESUB_MS 10000  /* live events held for a first subscribe */
#define DELIVER_READ_BUDGET (256 * 1024) /* pipe bytes per loop turn */
#define DELIVER_WORK_BUDGET 262144 /* connections looked at per loop turn */

/*
 * Start reading the relay's pipe fd (non-blocking is set here), and the
 * supervisor's control socket ctl_fd, which brings a new pipe whenever a
 * relay starts (either may be -1).
 */
struct deliver *deliver_new(struct worker *w, int fd, int ctl_fd);
void deliver_free(struct deliver *d);

/*
 * Auth accepted c (its registry slot is taken): index it so live events
 * reach it (held for now), and fetch its queue after resume_from (0: all).
 * ready(c, queued, recovered) is called exactly once, unless the connection
 * ends first: then auth_success is sent, and the replay follows.
 */
typedef void (*deliver_ready_fn)(struct conn *c, uint64_t queued,
				 int recovered);
void deliver_conn_start(struct conn *c, int has_resume, uint64_t resume_from,
			deliver_ready_fn ready);
/* The connection is ending: unindex it, cancel its replay. */
void deliver_conn_end(struct conn *c);
/* The daemon subscribed: events held for its first subscribe go out. */
void deliver_conn_subscribed(struct conn *c);
/* Its output queue drained: the replay may go on. */
void deliver_conn_flushed(struct conn *c);

struct deliver_stats {
	uint64_t frames, events, delivered, held, replayed, deduped, hellos;
};
void deliver_get_stats(const struct deliver *d, struct deliver_stats *st);

#endif
