/*
 * relay: Redis events -> durable queue -> worker pipes.
 *
 * Records are handled in the order the feed hands them over.  A record that
 * needs a Redis step first (its place in the durable queue, or a seq when
 * none is at hand) waits in a FIFO backlog until the reply is in; records
 * leave the backlog only from its head, so the workers see events in the
 * order the relay received them whatever the replies' timing.  Routing
 * reads the registry when a record leaves the backlog, not when it arrives:
 * a daemon that connected meanwhile either finds the event in its queue
 * replay or gets it live (its worker suppresses the duplicate).
 *
 * Seqs come from leases.  The relay is the only process that allocates
 * seqs, so it reserves them in blocks, one queue_reserve() (INCRBY on the
 * orchestrator's counter) per block, and gives them out itself, in arrival
 * order: an event that does not require an ack, to a connected
 * orchestrator, takes its seq at once and needs no Redis call at all; an
 * event that is queued takes its seq from the lease too and is queued with
 * it (queue_enqueue_seq()).  A lease fetches its next block when a quarter
 * of the current one is left, so a busy orchestrator's events do not wait;
 * a record that finds no seq at hand waits for the block like any other
 * reply, and the copies behind it for the same orchestrator wait behind
 * it.  Blocks start at LEASE_FIRST seqs and double while they are used up
 * within LEASE_GROW_MS, up to LEASE_BLOCK_MAX: an idle orchestrator
 * reserves little, a busy one rarely calls Redis.  Unused seqs (a relay
 * restart, an evicted lease) are gaps, and seq is "strictly increasing",
 * not contiguous.  A block is dropped once the relay has reconnected to
 * Redis (a restarted Redis may have lost the counter; while Redis is away,
 * the seqs at hand still serve live events) and after half the retention
 * (the counter may have expired).  At most LEASE_MAX
 * orchestrators have a lease; beyond, the least recently used lease that
 * waits for no reply is dropped.
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

#include "orchd/admin.h"
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

#define LEASE_MAX 65536       /* orchestrators with a lease (idle ones) */
#define LEASE_FIRST 16        /* seqs in a new lease's first block */
#define LEASE_BLOCK_MAX 1024  /* seqs in one block at most */
#define LEASE_GROW_MS 5000    /* a block used up sooner: double the next */
#define LEASE_SHRINK_MS 60000 /* one used up later: halve the next */

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

/*
 * One orchestrator's copy of a record that takes a seq: the targeted
 * record itself, or a broadcast's copy when it requires an ack.
 */
struct pend_orch {
	struct pend *p;
	struct pend_orch *wnext; /* waiting for its lease's next block */
	uint64_t seq;            /* 0: none (Redis failed) */
	int enqueue;             /* to be queued with its seq */
	int queued;    /* in the durable queue: not lost if unrouted */
	int duplicate; /* its id was queued already: not sent again */
	char orch[REGISTRY_ID_MAX];
};

struct pend {
	struct pend *next;
	struct event ev;
	int invalid;             /* refused: nothing to forward */
	int outstanding;         /* seqs and Redis replies still due */
	struct pend_orch one;    /* targeted */
	struct pend_orch *orchs; /* broadcast + requiresAck */
	unsigned norchs;
	char stream_id[FEED_STREAM_ID_MAX + 1]; /* "" for pub/sub */
};

/* Seqs [next, end) of an orchestrator's counter. */
struct block {
	uint64_t next, end;
	uint64_t epoch; /* the Redis connection (connect count) it came from */
	uint64_t born_ms; /* when it was reserved */
};

/* An orchestrator's seq lease (see the head comment). */
struct lease {
	struct lease *hnext;         /* hash chain */
	struct lease *lprev, *lnext; /* LRU list: leases waiting for nothing */
	struct pend_orch *whead, *wtail; /* copies waiting for a block, FIFO */
	unsigned nwait;
	struct block cur, spare; /* spare: the block after cur, fetched early */
	unsigned size;           /* the next block's size */
	unsigned asked;          /* the size of the block being reserved */
	int reserving;           /* a queue_reserve() is in flight */
	uint64_t reserved_ms;    /* when the last one was sent */
	char orch[REGISTRY_ID_MAX];
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
	struct admin *admin;
	struct shm_segment *shm;
	struct relay_pipe pipes[RELAY_MAX_PIPES];
	struct pend *head, *tail;
	unsigned backlog;
	struct lease **lbuckets; /* lease index by orchestrator */
	size_t nlbuckets, nleases;
	struct lease *lru_head, *lru_tail; /* least recently used first */
	uint64_t lease_ttl_ms;
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
	if (n > 0) {
		atomic_fetch_add(&rl.st->dropped, n);
		atomic_fetch_add(&rl.st->pipe_dropped[p->slot], n);
	}
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
	case RELAY_CTL_ADMIN:
		if (rl.admin != NULL)
			admin_set_listener(rl.admin, fd);
		else if (fd >= 0)
			close(fd);
		break;
	case RELAY_CTL_LOGLEVEL:
		if (fd >= 0)
			close(fd);
		if (m.arg >= LOG_ERR && m.arg <= LOG_DEBUG)
			log_set_level(m.arg);
		break;
	default:
		fatalx("control: unknown control message %d", m.type);
	}
}

/* ---- the admin socket's view of the pipes -------------------------------- */

/* admin_env.send: queue a frame on the pipes of slot (-1: all), pid. */
static unsigned
admin_send(const uint8_t *frame, size_t len, int slot, pid_t pid)
{
	unsigned n = 0;

	for (int i = 0; i < RELAY_MAX_PIPES; i++) {
		struct relay_pipe *p = &rl.pipes[i];

		if (p->fd < 0 || (slot >= 0 && p->slot != slot) ||
		    (pid != 0 && p->pid != pid))
			continue;
		if (ipc_outq_push(&p->q, frame, len) != 0) {
			log_warnx("admin: pipe of worker %d full; command "
				  "frame dropped",
				  p->slot);
			continue;
		}
		p->dirty = 1;
		n++;
	}
	return n;
}

static pid_t
admin_worker_pid(int slot)
{
	if (slot < 0 || slot >= CONFIG_MAX_WORKERS)
		return 0;
	return (pid_t)atomic_load(&rl.shm->workers[slot].pid);
}

static int
admin_drain(int slot, pid_t pid)
{
	struct relay_ctl m;

	memset(&m, 0, sizeof(m));
	m.type = RELAY_CTL_DRAIN;
	m.slot = slot;
	m.pid = pid;
	return relay_ctl_send(rl.ctl_fd, &m, -1);
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

/*
 * The pipe queue gauges, per worker slot (an old and a new worker of a
 * slot during a reload add up).  The relay is their only writer: stores.
 */
static void
pipe_gauges(void)
{
	static uint64_t last[CONFIG_MAX_WORKERS];
	uint64_t now[CONFIG_MAX_WORKERS] = {0};

	for (int i = 0; i < RELAY_MAX_PIPES; i++)
		if (rl.pipes[i].fd >= 0)
			now[rl.pipes[i].slot] += rl.pipes[i].q.bytes;
	for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
		if (now[s] != last[s]) {
			atomic_store_explicit(&rl.st->pipe_queue_bytes[s],
					      now[s], memory_order_relaxed);
			last[s] = now[s];
		}
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
	pipe_gauges();
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
			atomic_fetch_add(&rl.st->pipe_dropped[p->slot], 1);
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
		if (p->one.duplicate)
			break;
		registry_workers_for(rl.registry, ev->orch, &mask);
		if (mask != 0)
			send_frame(ev, ev->orch, p->one.seq, IPC_TARGET_ORCH,
				   mask);
		else if (!p->one.queued)
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
		if (!p->invalid)
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

static void
enqueue_reply(struct queue *q, int status,
	      const struct queue_enqueue_result *res, void *arg)
{
	struct pend_orch *po = arg;

	(void)q;
	if (status != QUEUE_OK) {
		note_unqueued(po->p, po->orch);
	} else {
		if (!res->duplicate)
			atomic_fetch_add(&rl.st->queued, 1);
		atomic_fetch_add(&rl.st->evicted, res->evicted);
		po->seq = res->seq;
		po->queued = 1;
		/*
		 * Queued already and not acked: the daemons got it live or
		 * get it from their replay; publishing it again changes
		 * nothing (idempotent by event id).  The seq we brought is
		 * left unused.
		 */
		po->duplicate = res->duplicate;
	}
	po->p->outstanding--;
	drain();
}

/*
 * po has its seq (0: none could be had): queue it if it is to be queued,
 * else it is ready.  An event that cannot be queued goes out live, with
 * its seq if it has one.
 */
static void
copy_seq(struct pend_orch *po, uint64_t seq)
{
	po->seq = seq;
	if (po->enqueue) {
		if (seq != 0 &&
		    queue_enqueue_seq(rl.queue, &po->p->ev, po->orch, seq,
				      enqueue_reply, po) == 0)
			return; /* still outstanding */
		note_unqueued(po->p, po->orch);
	}
	po->p->outstanding--;
}

/* ---- seq leases ------------------------------------------------------- */

/* FNV-1a 64. */
static size_t
lease_bucket(const char *orch, size_t nbuckets)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *orch != '\0'; orch++) {
		h ^= (uint8_t)*orch;
		h *= 0x100000001b3ULL;
	}
	return (size_t)h & (nbuckets - 1);
}

static void
lru_unlink(struct lease *l)
{
	if (l->lprev != NULL)
		l->lprev->lnext = l->lnext;
	else if (rl.lru_head == l)
		rl.lru_head = l->lnext;
	else
		return; /* not in the list */
	if (l->lnext != NULL)
		l->lnext->lprev = l->lprev;
	else
		rl.lru_tail = l->lprev;
	l->lprev = l->lnext = NULL;
}

static void
lru_append(struct lease *l)
{
	l->lprev = rl.lru_tail;
	l->lnext = NULL;
	if (rl.lru_tail != NULL)
		rl.lru_tail->lnext = l;
	else
		rl.lru_head = l;
	rl.lru_tail = l;
}

static void
lease_grow(void)
{
	size_t n = rl.nlbuckets * 2;
	struct lease **nb = util_calloc(n, sizeof(*nb));

	for (size_t i = 0; i < rl.nlbuckets; i++) {
		struct lease *l = rl.lbuckets[i], *next;

		for (; l != NULL; l = next) {
			size_t b = lease_bucket(l->orch, n);

			next = l->hnext;
			l->hnext = nb[b];
			nb[b] = l;
		}
	}
	free(rl.lbuckets);
	rl.lbuckets = nb;
	rl.nlbuckets = n;
}

/* Drop an idle lease (in the LRU list, waiting for no reply). */
static void
lease_drop(struct lease *l)
{
	struct lease **pp = &rl.lbuckets[lease_bucket(l->orch, rl.nlbuckets)];

	while (*pp != l)
		pp = &(*pp)->hnext;
	*pp = l->hnext;
	lru_unlink(l);
	rl.nleases--;
	free(l);
}

/*
 * orch's lease, made if need be; it becomes the most recently used.  A
 * lease waiting for a reply is never dropped (its reply would find it
 * gone), so the index may pass LEASE_MAX by as many leases as there are
 * replies due, which the Redis client bounds.
 */
static struct lease *
lease_get(const char *orch)
{
	struct lease *l;
	size_t b;

	if (rl.lbuckets == NULL) {
		rl.nlbuckets = 1024;
		rl.lbuckets = util_calloc(rl.nlbuckets, sizeof(*rl.lbuckets));
	}
	b = lease_bucket(orch, rl.nlbuckets);
	for (l = rl.lbuckets[b]; l != NULL; l = l->hnext) {
		if (strcmp(l->orch, orch) == 0) {
			if (!l->reserving && l != rl.lru_tail) {
				lru_unlink(l);
				lru_append(l);
			}
			return l;
		}
	}
	if (rl.nleases >= LEASE_MAX && rl.lru_head != NULL)
		lease_drop(rl.lru_head);
	if (rl.nleases >= rl.nlbuckets)
		lease_grow();
	l = util_calloc(1, sizeof(*l));
	util_strlcpy(l->orch, orch, sizeof(l->orch));
	l->size = LEASE_FIRST;
	b = lease_bucket(orch, rl.nlbuckets);
	l->hnext = rl.lbuckets[b];
	rl.lbuckets[b] = l;
	lru_append(l);
	rl.nleases++;
	return l;
}

static uint64_t
redis_epoch(void)
{
	struct redis_stats rs;

	redis_get_stats(rl.redis, &rs);
	return rs.connects;
}

static int
block_ok(const struct block *bk, uint64_t epoch, uint64_t now)
{
	return bk->next < bk->end && bk->epoch == epoch &&
	       now - bk->born_ms < rl.lease_ttl_ms;
}

static void lease_reply(struct queue *q, int status, uint64_t last, void *arg);

/* Ask for the next block; -1 if the queue refused. */
static int
lease_reserve(struct lease *l)
{
	uint64_t now = util_now_ms();
	unsigned n;

	if (l->reserved_ms != 0 && now - l->reserved_ms < LEASE_GROW_MS)
		l->size = l->size * 2 < LEASE_BLOCK_MAX ? l->size * 2
							: LEASE_BLOCK_MAX;
	else if (l->reserved_ms != 0 && now - l->reserved_ms > LEASE_SHRINK_MS)
		l->size = l->size / 2 > LEASE_FIRST ? l->size / 2 : LEASE_FIRST;
	/* Enough for the copies waiting, if the bound allows. */
	n = l->nwait > l->size ? l->nwait : l->size;
	if (n > LEASE_BLOCK_MAX)
		n = LEASE_BLOCK_MAX;
	if (queue_reserve(rl.queue, l->orch, n, lease_reply, l) != 0)
		return -1;
	l->asked = n;
	l->reserving = 1;
	l->reserved_ms = now;
	lru_unlink(l); /* not to be dropped before the reply */
	return 0;
}

/*
 * The next seq of the lease, or 0 when it has none at hand.  Fetches the
 * next block when a quarter of this one is left.
 */
static uint64_t
lease_take(struct lease *l)
{
	uint64_t epoch = redis_epoch(), now = util_now_ms(), seq;

	if (!block_ok(&l->cur, epoch, now)) {
		l->cur = l->spare;
		memset(&l->spare, 0, sizeof(l->spare));
		if (!block_ok(&l->cur, epoch, now)) {
			memset(&l->cur, 0, sizeof(l->cur));
			return 0;
		}
	}
	seq = l->cur.next++;
	if (!l->reserving && !block_ok(&l->spare, epoch, now) &&
	    l->cur.end - l->cur.next <= l->size / 4)
		(void)lease_reserve(l); /* refused: the next take asks again */
	return seq;
}

/* No seq to be had: the waiting copies go on without one. */
static void
lease_fail(struct lease *l)
{
	struct pend_orch *po;

	while ((po = l->whead) != NULL) {
		l->whead = po->wnext;
		po->wnext = NULL;
		copy_seq(po, 0);
	}
	l->wtail = NULL;
	l->nwait = 0;
}

static void
lease_reply(struct queue *q, int status, uint64_t last, void *arg)
{
	struct lease *l = arg;
	struct pend_orch *po;
	uint64_t seq = 0;

	(void)q;
	l->reserving = 0;
	if (status == QUEUE_OK) {
		struct block bk = {last - l->asked + 1, last + 1, redis_epoch(),
				   util_now_ms()};

		/* Blocks come in counter order: this one is after cur. */
		if (block_ok(&l->cur, bk.epoch, bk.born_ms))
			l->spare = bk;
		else
			l->cur = bk;
	}
	/* In arrival order; a take may send the next reservation. */
	while ((po = l->whead) != NULL &&
	       (status != QUEUE_OK || (seq = lease_take(l)) != 0)) {
		l->whead = po->wnext;
		if (l->whead == NULL)
			l->wtail = NULL;
		po->wnext = NULL;
		l->nwait--;
		copy_seq(po, seq);
	}
	if (l->whead != NULL && !l->reserving && lease_reserve(l) != 0)
		lease_fail(l);
	if (!l->reserving)
		lru_append(l);
	drain();
}

/*
 * Give po a seq from its orchestrator's lease, now if one is at hand (and
 * no copy waits before it), else when the lease's next block comes.
 */
static void
want_seq(struct pend_orch *po)
{
	struct lease *l = lease_get(po->orch);
	uint64_t seq;

	po->p->outstanding++;
	if (l->whead == NULL && (seq = lease_take(l)) != 0) {
		copy_seq(po, seq);
		return;
	}
	po->wnext = NULL;
	if (l->wtail != NULL)
		l->wtail->wnext = po;
	else
		l->whead = po;
	l->wtail = po;
	l->nwait++;
	if (!l->reserving && lease_reserve(l) != 0)
		lease_fail(l);
}

/* ---- records ---------------------------------------------------------- */

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
	p->orchs[p->norchs].enqueue = 1;
	util_strlcpy(p->orchs[p->norchs].orch, e->orchestrator,
		     sizeof(p->orchs[0].orch));
	p->norchs++;
	return 0;
}

/* Start the seqs and Redis steps a valid record needs (PROTOCOL.md 6). */
static void
plan(struct pend *p)
{
	struct event *ev = &p->ev;

	if (ev->target == EVENT_TARGET_ORCHESTRATOR) {
		/*
		 * requiresAck: queued before it is delivered.  Otherwise
		 * queued only when the orchestrator has no connection.
		 * Either way it takes a seq from the lease.
		 */
		p->one.p = p;
		util_strlcpy(p->one.orch, ev->orch, sizeof(p->one.orch));
		p->one.enqueue = ev->requires_ack ||
				 registry_count(rl.registry, ev->orch) == 0;
		want_seq(&p->one);
		return;
	}
	if (!ev->requires_ack)
		return; /* live only, no seq: orchd cannot know who is offline */
	{
		struct collect cl = {p, 0};

		registry_foreach(rl.registry, collect_cb, &cl);
		/* The array is complete: the copies' addresses hold. */
		for (unsigned i = 0; i < p->norchs; i++)
			want_seq(&p->orchs[i]);
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
	rl.shm = a->shm;
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
	/* A dead predecessor's pipes are gone with it. */
	for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
		atomic_store(&rl.st->pipe_queue_bytes[s], 0);

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
	rl.lease_ttl_ms = rl.cfg->queue_retention_ms / 2;
	rl.feed = feed_new(rl.loop, rl.cfg, &cb, NULL);
	{
		struct admin_env env = {
		    rl.loop,  rl.cfg,     rl.shm,           rl.registry,
		    rl.redis, admin_send, admin_worker_pid, admin_drain};

		rl.admin = admin_new(&env, a->admin_fd);
	}
	log_info("%s: started (start %u)", __func__, rl.generation);
	ev_run(rl.loop, 0);

	admin_free(rl.admin);
	rl.admin = NULL;
	atomic_store(&rl.st->subscribed, 0);
	feed_free(rl.feed);
	rl.feed = NULL;
	queue_free(rl.queue);
	redis_free(rl.redis);
	exit(0);
}
