/*
 * relay: Redis events -> durable queue -> worker pipes.
 *
 * Records are handled in the order the feed hands them over.  A record that
 * needs a Redis step first (a seq, or its place in the durable queue) waits
 * in a FIFO backlog until the reply is in; records leave the backlog only
 * from its head, so the workers see events in the order the relay received
 * them whatever the replies' timing.  Routing reads the registry when a
 * record leaves the backlog, not when it arrives: a daemon that connected
 * meanwhile either finds the event in its queue replay or gets it live (its
 * worker suppresses the duplicate).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ev.h>

#include "orchd/event.h"
#include "orchd/feed.h"
#include "orchd/ipc.h"
#include "orchd/log.h"
#include "orchd/queue.h"
#include "orchd/redis.h"
#include "orchd/registry.h"
#include "orchd/relay.h"
#include "orchd/shm.h"
#include "orchd/util.h"

#define LOG_EVERY_MS 60000 /* repeated warnings: once a minute */

struct relay_pipe {
	int fd; /* -1: free */
	int slot;
	pid_t pid;
	int dirty; /* frames queued this iteration */
	int armed; /* EV_WRITE watcher on */
	ev_io io;
	struct ipc_outq q;
	uint64_t last_drop_log;
};

/* One orchestrator's copy of a broadcast that requires an ack. */
struct pend_orch {
	struct pend *p;
	uint64_t seq;
	int duplicate;
	char orch[REGISTRY_ID_MAX];
};

struct pend {
	struct pend *next;
	struct event ev;
	int invalid;     /* refused: nothing to forward */
	int outstanding; /* Redis replies still due */
	int queued;      /* in the durable queue: not lost if unrouted */
	int duplicate;   /* its id was queued already: not sent again */
	uint64_t seq;
	struct pend_orch *orchs; /* broadcast + requiresAck */
	unsigned norchs;
	char stream_id[FEED_STREAM_ID_MAX + 1]; /* "" for pub/sub */
};

static struct {
	struct ev_loop *loop;
	const struct config *cfg;
	struct shm_relay *st;
	struct registry *registry;
	unsigned generation;
	int ctl_fd;
	ev_io ctl_io;
	ev_prepare flush;
	ev_signal sig_term, sig_usr1;
	struct redis *redis;
	struct queue *queue;
	struct feed *feed;
	struct relay_pipe pipes[RELAY_MAX_PIPES];
	struct pend *head, *tail;
	unsigned backlog;
	uint8_t *frame;   /* IPC_MAX_FRAME bytes */
	char *msg;        /* event messages, grown on demand */
	size_t msg_cap;
	uint64_t last_log[EVENT_NKINDS + 4];
	uint64_t suppressed[EVENT_NKINDS + 4];
} rl;

/* Slots of last_log[] past the event kinds. */
enum { LOG_OVERFLOW = EVENT_NKINDS, LOG_UNQUEUED, LOG_ENCODE };

/*
 * Log the first of a kind of trouble at once, then at most once a minute
 * with the number of times it happened meanwhile.
 */
static int
log_due(int which)
{
	uint64_t now = util_now_ms();

	if (rl.last_log[which] != 0 && now - rl.last_log[which] < LOG_EVERY_MS) {
		rl.suppressed[which]++;
		return 0;
	}
	rl.last_log[which] = now;
	return 1;
}

static unsigned long long
take_suppressed(int which)
{
	unsigned long long n = rl.suppressed[which];

	rl.suppressed[which] = 0;
	return n;
}

/* ---- control socket: pipes from the supervisor ---------------------------- */

int
relay_ctl_send(int sock, const struct relay_ctl *m, int fd)
{
	struct msghdr mh;
	struct iovec iov;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;

	memset(&mh, 0, sizeof(mh));
	iov.iov_base = (void *)m;
	iov.iov_len = sizeof(*m);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(*m)) {
		log_warn("%s: sendmsg", __func__);
		return -1;
	}
	return 0;
}

static void pipe_write_cb(struct ev_loop *loop, ev_io *io, int revents);

static void
pipe_close(struct relay_pipe *p, const char *why)
{
	size_t n;

	if (p->fd < 0)
		return;
	if (p->armed)
		ev_io_stop(rl.loop, &p->io);
	p->armed = 0;
	close(p->fd);
	p->fd = -1;
	n = ipc_outq_reset(&p->q);
	atomic_fetch_add(&rl.st->pipe_resets, 1);
	if (n > 0)
		atomic_fetch_add(&rl.st->dropped, n);
	log_info("pipe: pipe of worker %d (pid %ld) closed: %s; %zu frames "
		 "dropped",
		 p->slot, (long)p->pid, why, n);
}

static void
pipe_add(const struct relay_ctl *m, int fd)
{
	struct relay_pipe *p = NULL;
	struct ipc_hello h;
	uint8_t buf[64];
	int fl, n;

	for (int i = 0; i < RELAY_MAX_PIPES; i++) {
		if (rl.pipes[i].fd >= 0 && rl.pipes[i].pid == m->pid)
			pipe_close(&rl.pipes[i], "replaced");
		if (p == NULL && rl.pipes[i].fd < 0)
			p = &rl.pipes[i];
	}
	if (p == NULL || m->slot < 0 || m->slot >= CONFIG_MAX_WORKERS) {
		log_warnx("pipe: no room for the pipe of worker %d", m->slot);
		close(fd);
		return;
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		log_warn("pipe: fcntl O_NONBLOCK");
	/* A bigger pipe absorbs bursts; the limit for users may refuse it. */
	(void)fcntl(fd, F_SETPIPE_SZ, RELAY_PIPE_SIZE);
	p->fd = fd;
	p->slot = m->slot;
	p->pid = m->pid;
	p->armed = 0;
	p->dirty = 0;
	ev_io_init(&p->io, pipe_write_cb, fd, EV_WRITE);
	p->io.data = p;
	ipc_outq_init(&p->q, (size_t)rl.cfg->relay_pipe_queue);
	h.generation = rl.generation;
	h.pid = (uint32_t)getpid();
	if ((n = ipc_hello_encode(&h, buf, sizeof(buf))) > 0 &&
	    ipc_outq_push(&p->q, buf, (size_t)n) == 0)
		p->dirty = 1;
	log_info("pipe: feeding worker %d (pid %ld)", p->slot, (long)p->pid);
}

ssize_t
relay_ctl_recv(int sock, struct relay_ctl *out, int *fd)
{
	struct relay_ctl m;
	struct msghdr mh;
	struct iovec iov;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = &m;
	iov.iov_len = sizeof(m);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n <= 0)
		return n;
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	if (n != (ssize_t)sizeof(m) || (mh.msg_flags & MSG_CTRUNC)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		errno = EBADMSG;
		return -1;
	}
	if (out != NULL)
		*out = m;
	return n;
}

static void
ctl_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_ctl m;
	ssize_t n;
	int fd = -1;

	(void)revents;
	n = relay_ctl_recv(io->fd, &m, &fd);
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		fatal("control: recvmsg control socket");
	}
	if (n == 0) {
		log_notice("control: the supervisor is gone; exiting");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	switch (m.type) {
	case RELAY_CTL_ADD:
		if (fd < 0)
			fatalx("control: pipe message without a descriptor");
		pipe_add(&m, fd);
		break;
	case RELAY_CTL_DEL:
		if (fd >= 0)
			close(fd);
		for (int i = 0; i < RELAY_MAX_PIPES; i++)
			if (rl.pipes[i].fd >= 0 && rl.pipes[i].pid == m.pid)
				pipe_close(&rl.pipes[i], "worker exited");
		break;
	default:
		fatalx("control: unknown control message %d", m.type);
	}
}

/* ---- writing pipes ---------------------------------------------------------- */

static void
pipe_flush(struct relay_pipe *p)
{
	ssize_t n;

	p->dirty = 0;
	n = ipc_outq_write(&p->q, p->fd);
	if (n < 0) {
		if (errno == EPIPE)
			pipe_close(p, "the worker is gone");
		else
			pipe_close(p, strerror(errno));
		return;
	}
	if (p->q.nframes > 0 && !p->armed) {
		ev_io_start(rl.loop, &p->io);
		p->armed = 1;
	} else if (p->q.nframes == 0 && p->armed) {
		ev_io_stop(rl.loop, &p->io);
		p->armed = 0;
	}
}

static void
pipe_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	pipe_flush(io->data);
}

/* Before the loop blocks: write what this iteration queued, in one go. */
static void
flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	for (int i = 0; i < RELAY_MAX_PIPES; i++)
		if (rl.pipes[i].fd >= 0 && rl.pipes[i].dirty &&
		    !rl.pipes[i].armed)
			pipe_flush(&rl.pipes[i]);
}

/* ---- forwarding -------------------------------------------------------------- */

/* Write one event to the pipes of the workers in mask. */
static void
send_frame(const struct event *ev, const char *orch, uint64_t seq,
	   uint8_t target, uint64_t mask)
{
	struct ipc_event ie;
	struct event tmp;
	size_t need = event_message_size_hint(ev) + strlen(orch) + 64, mlen;
	unsigned nframes = 0;
	int n;

	if (need > rl.msg_cap) {
		rl.msg_cap = need;
		rl.msg = util_realloc(rl.msg, need);
	}
	/* A broadcast's per-orchestrator copy names its orchestrator. */
	tmp = *ev;
	util_strlcpy(tmp.orch, orch, sizeof(tmp.orch));
	mlen = event_message(&tmp, seq, rl.msg, rl.msg_cap);
	memset(&ie, 0, sizeof(ie));
	ie.seq = seq;
	ie.published_ms = util_wall_ms();
	ie.priority = ev->priority;
	ie.requires_ack = ev->requires_ack ? 1 : 0;
	ie.target = target;
	ie.event_id = ev->id;
	ie.event_id_len = strlen(ev->id);
	ie.event_type = ev->type;
	ie.event_type_len = strlen(ev->type);
	ie.orchestrator = orch;
	ie.orchestrator_len = target == IPC_TARGET_ORCH ? strlen(orch) : 0;
	ie.daemon = ev->daemon;
	ie.daemon_len = target == IPC_TARGET_ORCH ? strlen(ev->daemon) : 0;
	ie.organization = ev->org;
	ie.organization_len = target == IPC_TARGET_ALL ? 0 : strlen(ev->org);
	ie.channel = ev->channel;
	ie.channel_len = strlen(ev->channel);
	ie.message = rl.msg;
	ie.message_len = mlen;
	if (mlen == 0 ||
	    (n = ipc_event_encode(&ie, rl.frame, IPC_MAX_FRAME)) < 0) {
		if (log_due(LOG_ENCODE))
			log_warnx("route: event %s cannot be framed (%s); "
				  "dropped (%llu more since the last report)",
				  ev->id, strerror(errno),
				  take_suppressed(LOG_ENCODE));
		atomic_fetch_add(&rl.st->overflow, 1);
		return;
	}
	for (int i = 0; i < RELAY_MAX_PIPES; i++) {
		struct relay_pipe *p = &rl.pipes[i];

		if (p->fd < 0 || !(mask & ((uint64_t)1 << p->slot)))
			continue;
		if (ipc_outq_push(&p->q, rl.frame, (size_t)n) != 0) {
			uint64_t now = util_now_ms();

			atomic_fetch_add(&rl.st->dropped, 1);
			if (now - p->last_drop_log >= LOG_EVERY_MS) {
				p->last_drop_log = now;
				log_warnx("route: pipe of worker %d full "
					  "(relay_pipe_queue); dropping events "
					  "(%llu so far)",
					  p->slot,
					  (unsigned long long)p->q.dropped);
			}
			continue;
		}
		p->dirty = 1;
		nframes++;
	}
	log_debug("route: event %s seq %llu to %s: mask %#llx, %u frames",
		  ev->id, (unsigned long long)seq, orch,
		  (unsigned long long)mask, nframes);
	if (nframes > 0) {
		atomic_fetch_add(&rl.st->routed, 1);
		atomic_fetch_add(&rl.st->frames, nframes);
	} else {
		atomic_fetch_add(&rl.st->unrouted, 1);
	}
}

static void
forward(struct pend *p)
{
	struct event *ev = &p->ev;
	uint64_t mask = 0;

	switch (ev->target) {
	case EVENT_TARGET_ORCHESTRATOR:
		registry_workers_for(rl.registry, ev->orch, &mask);
		if (mask != 0)
			send_frame(ev, ev->orch, p->seq, IPC_TARGET_ORCH, mask);
		else if (!p->queued)
			atomic_fetch_add(&rl.st->unrouted, 1);
		break;
	case EVENT_TARGET_ORGANIZATION:
	case EVENT_TARGET_ALL:
		if (p->orchs != NULL) {
			for (unsigned i = 0; i < p->norchs; i++) {
				if (p->orchs[i].duplicate)
					continue;
				mask = 0;
				registry_workers_for(rl.registry,
						     p->orchs[i].orch, &mask);
				if (mask != 0)
					send_frame(ev, p->orchs[i].orch,
						   p->orchs[i].seq,
						   IPC_TARGET_ORCH, mask);
			}
			break;
		}
		if (ev->target == EVENT_TARGET_ORGANIZATION)
			registry_workers_for_org(rl.registry, ev->org, &mask);
		else
			registry_workers_all(rl.registry, &mask);
		if (mask != 0)
			send_frame(ev, "", 0,
				   ev->target == EVENT_TARGET_ORGANIZATION
					   ? IPC_TARGET_ORG
					   : IPC_TARGET_ALL,
				   mask);
		else
			atomic_fetch_add(&rl.st->unrouted, 1);
		break;
	}
}

static void
pend_free(struct pend *p)
{
	event_free(&p->ev);
	free(p->orchs);
	free(p);
}

/* Forward every record at the head of the backlog whose replies are in. */
static void
drain(void)
{
	struct pend *p;

	while ((p = rl.head) != NULL && p->outstanding == 0) {
		rl.head = p->next;
		if (rl.head == NULL)
			rl.tail = NULL;
		if (!p->invalid && !p->duplicate)
			forward(p);
		if (p->stream_id[0] != '\0' && rl.feed != NULL)
			feed_stream_commit(rl.feed, p->stream_id);
		rl.backlog--;
		pend_free(p);
	}
	atomic_store(&rl.st->backlog, rl.backlog);
}

static void
note_unqueued(const struct pend *p, const char *orch)
{
	atomic_fetch_add(&rl.st->unqueued, 1);
	if (log_due(LOG_UNQUEUED))
		log_warnx("queue: event %s for %s not queued: Redis "
			  "unavailable; delivered live only (%llu more since "
			  "the last report)",
			  p->ev.id, orch, take_suppressed(LOG_UNQUEUED));
}

/* Account one enqueue reply; 1 if the event is in the queue. */
static int
enqueue_result(int status, const struct queue_enqueue_result *res,
	       const struct pend *p, const char *orch)
{
	if (status != QUEUE_OK) {
		note_unqueued(p, orch);
		return 0;
	}
	if (!res->duplicate)
		atomic_fetch_add(&rl.st->queued, 1);
	atomic_fetch_add(&rl.st->evicted, res->evicted);
	return 1;
}

static void
enqueue_reply(struct queue *q, int status,
	      const struct queue_enqueue_result *res, void *arg)
{
	struct pend *p = arg;

	(void)q;
	if (enqueue_result(status, res, p, p->ev.orch)) {
		p->seq = res->seq;
		p->queued = 1;
		/*
		 * Queued already and not acked: the daemons got it live or
		 * get it from their replay; publishing it again changes
		 * nothing (idempotent by event id).
		 */
		p->duplicate = res->duplicate;
	}
	p->outstanding--;
	drain();
}

static void
enqueue_orch_reply(struct queue *q, int status,
		   const struct queue_enqueue_result *res, void *arg)
{
	struct pend_orch *po = arg;

	(void)q;
	if (enqueue_result(status, res, po->p, po->orch)) {
		po->seq = res->seq;
		po->duplicate = res->duplicate;
	}
	po->p->outstanding--;
	drain();
}

static void
seq_reply(struct queue *q, int status, uint64_t n, void *arg)
{
	struct pend *p = arg;

	(void)q;
	if (status == QUEUE_OK)
		p->seq = n;
	p->outstanding--;
	drain();
}

struct collect {
	struct pend *p;
	unsigned cap;
};

/* registry_foreach: the distinct orchestrators a broadcast reaches now. */
static int
collect_cb(uint32_t slot, const struct registry_entry *e, void *arg)
{
	struct collect *cl = arg;
	struct pend *p = cl->p;

	(void)slot;
	if (!event_targets_orchestrator(&p->ev, e->orchestrator,
					e->organization))
		return 0;
	for (unsigned i = 0; i < p->norchs; i++)
		if (strcmp(p->orchs[i].orch, e->orchestrator) == 0)
			return 0;
	if (p->norchs == cl->cap) {
		cl->cap = cl->cap ? 2 * cl->cap : 16;
		p->orchs = util_realloc(p->orchs, cl->cap * sizeof(*p->orchs));
	}
	memset(&p->orchs[p->norchs], 0, sizeof(p->orchs[0]));
	p->orchs[p->norchs].p = p;
	util_strlcpy(p->orchs[p->norchs].orch, e->orchestrator,
		     sizeof(p->orchs[0].orch));
	p->norchs++;
	return 0;
}

/* Start the Redis steps a valid record needs (PROTOCOL.md section 6). */
static void
plan(struct pend *p)
{
	struct event *ev = &p->ev;

	if (ev->target == EVENT_TARGET_ORCHESTRATOR) {
		/*
		 * requiresAck: queued before it is delivered.  Otherwise
		 * queued only when the orchestrator has no connection, and
		 * given a seq from the same counter when it has.
		 */
		if (ev->requires_ack || registry_count(rl.registry, ev->orch) == 0) {
			if (queue_enqueue(rl.queue, ev, ev->orch, enqueue_reply,
					  p) == 0)
				p->outstanding++;
			else
				note_unqueued(p, ev->orch);
		} else if (queue_next_seq(rl.queue, ev->orch, seq_reply, p) ==
			   0) {
			p->outstanding++;
		}
		return;
	}
	if (!ev->requires_ack)
		return; /* live only, no seq: orchd cannot know who is offline */
	{
		struct collect cl = {p, 0};

		registry_foreach(rl.registry, collect_cb, &cl);
		for (unsigned i = 0; i < p->norchs; i++) {
			if (queue_enqueue(rl.queue, ev, p->orchs[i].orch,
					  enqueue_orch_reply,
					  &p->orchs[i]) == 0)
				p->outstanding++;
			else
				note_unqueued(p, p->orchs[i].orch);
		}
		if (p->norchs == 0) { /* nobody to queue it for */
			free(p->orchs);
			p->orchs = NULL;
		}
	}
}

static void
on_record(void *arg, const char *org, const char *buf, size_t len,
	  const char *stream_id)
{
	struct pend *p;
	char err[160];
	int rc;

	(void)arg;
	atomic_fetch_add(&rl.st->received, 1);
	if (rl.backlog >= RELAY_BACKLOG_MAX) {
		atomic_fetch_add(&rl.st->overflow, 1);
		if (log_due(LOG_OVERFLOW))
			log_warnx("backlog: %u records wait on Redis replies; "
				  "dropping records (%llu more since the last "
				  "report)",
				  rl.backlog, take_suppressed(LOG_OVERFLOW));
		return;
	}
	p = util_calloc(1, sizeof(*p));
	if (stream_id != NULL)
		util_strlcpy(p->stream_id, stream_id, sizeof(p->stream_id));
	rc = event_parse_ctx(&p->ev, buf, len, (size_t)rl.cfg->max_event_size,
			     org, err, sizeof(err));
	if (rc != EVENT_OK) {
		p->invalid = 1;
		atomic_fetch_add(&rl.st->invalid, 1);
		if (rc > 0 && rc < 16)
			atomic_fetch_add(&rl.st->invalid_kind[rc], 1);
		if (rc > 0 && rc < EVENT_NKINDS && log_due(rc))
			log_warnx("record: invalid event record (%s) on %s%s: "
				  "%s; skipped (%llu more of this kind since "
				  "the last report)",
				  event_kind_name(rc),
				  stream_id != NULL ? "the stream"
				  : org != NULL	    ? "daemon:events:"
						    : "daemon:events",
				  stream_id == NULL && org != NULL ? org : "",
				  err, take_suppressed(rc));
	} else {
		plan(p);
	}
	if (rl.tail != NULL)
		rl.tail->next = p;
	else
		rl.head = p;
	rl.tail = p;
	rl.backlog++;
	drain();
}

static void
on_state(void *arg, int subscribed)
{
	(void)arg;
	if (!subscribed && atomic_load(&rl.st->subscribed))
		atomic_fetch_add(&rl.st->reconnects, 1);
	atomic_store(&rl.st->subscribed, subscribed ? 1 : 0);
	log_notice("feed: %s", subscribed ? "subscribed to Redis"
					   : "Redis subscription lost");
}

static void
signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
	(void)revents;
	if (s->signum == SIGUSR1) {
		log_reopen();
		return;
	}
	log_info("signal: stopping");
	ev_break(loop, EVBREAK_ALL);
}

int
relay_config_changed(const struct config *a, const struct config *b)
{
	const char *ra = a->redis_text ? a->redis_text : "";
	const char *rb = b->redis_text ? b->redis_text : "";
	const char *sa = a->event_stream_key ? a->event_stream_key : "";
	const char *sb = b->event_stream_key ? b->event_stream_key : "";

	return strcmp(ra, rb) != 0 || strcmp(sa, sb) != 0 ||
	       a->event_stream != b->event_stream ||
	       a->redis_timeout_ms != b->redis_timeout_ms ||
	       a->max_event_size != b->max_event_size ||
	       a->queue_max_events != b->queue_max_events ||
	       a->queue_retention_ms != b->queue_retention_ms ||
	       a->relay_canary_interval_ms != b->relay_canary_interval_ms ||
	       a->relay_pipe_queue != b->relay_pipe_queue;
}

void
relay_run(const struct relay_args *a)
{
	static const struct feed_callbacks cb = {on_record, on_state};

	log_set_procname("relay");
	prctl(PR_SET_NAME, "orchd-relay");
	memset(&rl, 0, sizeof(rl));
	rl.loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (rl.loop == NULL)
		fatalx("%s: ev_default_loop failed", __func__);
	rl.cfg = a->cfg;
	rl.st = &a->shm->relay;
	rl.registry = a->registry;
	rl.generation = a->generation;
	rl.ctl_fd = a->ctl_fd;
	rl.frame = util_malloc(IPC_MAX_FRAME);
	for (int i = 0; i < RELAY_MAX_PIPES; i++)
		rl.pipes[i].fd = -1;
	atomic_store(&rl.st->pid, (int)getpid());
	atomic_store(&rl.st->subscribed, 0);
	atomic_store(&rl.st->started_ms, util_wall_ms());

	ev_io_init(&rl.ctl_io, ctl_cb, rl.ctl_fd, EV_READ);
	ev_io_start(rl.loop, &rl.ctl_io);
	ev_prepare_init(&rl.flush, flush_cb);
	ev_prepare_start(rl.loop, &rl.flush);
	ev_signal_init(&rl.sig_term, signal_cb, SIGTERM);
	ev_signal_start(rl.loop, &rl.sig_term);
	ev_signal_init(&rl.sig_usr1, signal_cb, SIGUSR1);
	ev_signal_start(rl.loop, &rl.sig_usr1);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);

	rl.redis = redis_new(rl.loop, &rl.cfg->redis, rl.cfg->redis_timeout_ms,
			     "redis");
	rl.queue = queue_new(rl.redis, rl.cfg->queue_max_events,
			     rl.cfg->queue_retention_ms / 1000);
	rl.feed = feed_new(rl.loop, rl.cfg, &cb, NULL);
	log_info("%s: started (start %u)", __func__, rl.generation);
	ev_run(rl.loop, 0);

	atomic_store(&rl.st->subscribed, 0);
	feed_free(rl.feed);
	rl.feed = NULL;
	queue_free(rl.queue);
	redis_free(rl.redis);
	exit(0);
}
