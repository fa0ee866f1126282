/*
 * deliver: events from the relay's pipe to the worker's connections, and the
 * replay of a connection's durable queue after auth.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "orchd/conn.h"
#include "orchd/deliver.h"
#include "orchd/directory.h"
#include "orchd/event.h"
#include "orchd/ipc.h"
#include "orchd/log.h"
#include "orchd/outq.h"
#include "orchd/proto.h"
#include "orchd/proto_int.h"
#include "orchd/queue.h"
#include "orchd/relay.h"
#include "orchd/sub.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/worker_ctl.h"
#include "orchd/ws.h"
#include "orchd/wsconn.h"

/* One orchestrator with connections on this worker. */
struct deliver_orch {
	struct deliver_orch *next; /* hash chain */
	struct conn *head;
	unsigned n;
	char name[REGISTRY_ID_MAX];
};

/* A live event that arrived while its connection's replay ran. */
struct held_event {
	struct held_event *next;
	struct outbuf *msg; /* the event message, shared by every holder */
	uint64_t id_hash;
	uint64_t published_ms; /* for the delivery latency */
	int prio;
	char type[EVENT_TYPE_MAX];
	char channel[EVENT_CHANNEL_MAX];
};

/* A replayed event waiting for room in the connection's output queue. */
struct replay_item {
	struct outbuf *msg;
	int prio;
};

struct deliver_replay {
	struct conn *c;
	int cancelled;  /* the connection ended with a fetch in flight */
	int in_flight;  /* a queue fetch is pending */
	int active;     /* live events are held: the replay runs */
	/*
	 * Replay over, but the daemon has not subscribed yet: live events are
	 * still held (until presub_until), so that the events published
	 * between auth_success and the daemon's first subscribe are not lost
	 * to a daemon that then resumes past their seq.
	 */
	int presub;
	uint64_t presub_until;
	int more;       /* pages after the current one */
	int has_resume;
	uint64_t after_seq;
	deliver_ready_fn ready;
	/* Events of the current page not yet queued. */
	struct replay_item *items;
	size_t nitems, next_item;
	/* Ids replayed: sorted once the replay is done. */
	uint64_t *ids;
	size_t nids, capids;
	uint64_t dedupe_until; /* monotonic ms; 0 while active */
	struct held_event *held, **held_tail;
	size_t held_bytes;
};

/*
 * A pipe from the relay.  A relay restart brings a fresh pipe (passed by
 * the supervisor over the control socket); the old one is read to its end,
 * where a frame the dead relay left half written is discarded.
 */
struct deliver_pipe {
	struct deliver *d;
	int fd; /* -1: free */
	ev_io io;
	ev_idle more; /* the work budget ran out with frames left */
	struct ipc_reader rd;
};

#define DELIVER_MAX_PIPES 4

struct deliver {
	struct worker *w;
	int ctl_fd;
	ev_io ctl_io;
	struct deliver_pipe pipes[DELIVER_MAX_PIPES];
	struct deliver_orch **buckets;
	size_t nbuckets, norchs;
	struct conn *all; /* every indexed connection */
	struct conn **targets;
	size_t cap_targets;
	size_t work; /* connections looked at in this turn of the loop */
	struct deliver_stats st;
};

/* ---- metrics ------------------------------------------------------------- */

/*
 * n live events published at published_ms (the relay's wall clock) were
 * just queued on sockets: count them and their latency.  A clock that went
 * back counts as 0.
 */
static void
count_delivered(struct deliver *d, uint64_t published_ms, uint64_t n)
{
	struct shm_worker *sw = d->w->stats;
	uint64_t now = util_wall_ms();

	if (n == 0)
		return;
	d->st.delivered += n;
	atomic_fetch_add_explicit(&sw->events_delivered, n,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&sw->msg_out[shm_msg_out_index("event", 5)],
				  n, memory_order_relaxed);
	shm_hist_observe(&sw->delivery_latency,
			 now > published_ms ? (now - published_ms) * 1000 : 0,
			 n);
}

/* ---- ids ----------------------------------------------------------------- */

/* FNV-1a 64: a false match would hide one live event, odds 2^-64. */
static uint64_t
id_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
replay_seen(const struct deliver_replay *r, uint64_t h)
{
	if (r->active) {
		for (size_t i = 0; i < r->nids; i++)
			if (r->ids[i] == h)
				return 1;
		return 0;
	}
	return r->nids > 0 &&
	       bsearch(&h, r->ids, r->nids, sizeof(h), cmp_u64) != NULL;
}

/* ---- indexes ------------------------------------------------------------- */

static size_t
bucket_of(const struct deliver *d, const char *name)
{
	return (size_t)id_hash(name, strlen(name)) & (d->nbuckets - 1);
}

static struct deliver_orch *
orch_find(const struct deliver *d, const char *name)
{
	struct deliver_orch *o = d->buckets[bucket_of(d, name)];

	while (o != NULL && strcmp(o->name, name) != 0)
		o = o->next;
	return o;
}

static void
orch_grow(struct deliver *d)
{
	size_t n = d->nbuckets * 2;
	struct deliver_orch **nb = util_calloc(n, sizeof(*nb));

	for (size_t i = 0; i < d->nbuckets; i++) {
		struct deliver_orch *o = d->buckets[i], *next;

		for (; o != NULL; o = next) {
			size_t b = (size_t)id_hash(o->name, strlen(o->name)) &
				   (n - 1);

			next = o->next;
			o->next = nb[b];
			nb[b] = o;
		}
	}
	free(d->buckets);
	d->buckets = nb;
	d->nbuckets = n;
}

static void
conn_index(struct deliver *d, struct conn *c)
{
	struct proto_conn *p = c->proto;
	struct deliver_orch *o = orch_find(d, p->orch);

	if (o == NULL) {
		size_t b;

		if (d->norchs >= d->nbuckets)
			orch_grow(d);
		o = util_calloc(1, sizeof(*o));
		util_strlcpy(o->name, p->orch, sizeof(o->name));
		b = bucket_of(d, o->name);
		o->next = d->buckets[b];
		d->buckets[b] = o;
		d->norchs++;
	}
	p->orch_entry = o;
	p->orch_prev = NULL;
	p->orch_next = o->head;
	if (o->head != NULL)
		o->head->proto->orch_prev = c;
	o->head = c;
	o->n++;
	p->all_prev = NULL;
	p->all_next = d->all;
	if (d->all != NULL)
		d->all->proto->all_prev = c;
	d->all = c;
	p->indexed = 1;
}

static void
conn_unindex(struct deliver *d, struct conn *c)
{
	struct proto_conn *p = c->proto;
	struct deliver_orch *o = p->orch_entry;

	if (!p->indexed)
		return;
	if (p->orch_prev != NULL)
		p->orch_prev->proto->orch_next = p->orch_next;
	else
		o->head = p->orch_next;
	if (p->orch_next != NULL)
		p->orch_next->proto->orch_prev = p->orch_prev;
	if (--o->n == 0) {
		struct deliver_orch **pp = &d->buckets[bucket_of(d, o->name)];

		while (*pp != o)
			pp = &(*pp)->next;
		*pp = o->next;
		d->norchs--;
		free(o);
	}
	if (p->all_prev != NULL)
		p->all_prev->proto->all_next = p->all_next;
	else
		d->all = p->all_next;
	if (p->all_next != NULL)
		p->all_next->proto->all_prev = p->all_prev;
	p->orch_entry = NULL;
	p->orch_prev = p->orch_next = p->all_prev = p->all_next = NULL;
	p->indexed = 0;
}

/* ---- replay state -------------------------------------------------------- */

static void
replay_free_items(struct deliver_replay *r)
{
	for (size_t i = r->next_item; i < r->nitems; i++)
		outbuf_unref(r->items[i].msg);
	UTIL_FREE(r->items);
	r->nitems = r->next_item = 0;
}

static void
replay_free(struct deliver_replay *r)
{
	struct held_event *h, *next;

	replay_free_items(r);
	for (h = r->held; h != NULL; h = next) {
		next = h->next;
		outbuf_unref(h->msg);
		free(h);
	}
	free(r->ids);
	free(r);
}

/* Drop the replay state of c once its dedupe window is over. */
static void
replay_expire(struct conn *c, uint64_t now)
{
	struct deliver_replay *r = c->proto->replay;

	if (r != NULL && !r->active && !r->presub && !r->in_flight &&
	    now >= r->dedupe_until) {
		replay_free(r);
		c->proto->replay = NULL;
	}
}

static void
replay_add_id(struct deliver_replay *r, uint64_t h)
{
	if (r->nids == r->capids) {
		r->capids = r->capids ? 2 * r->capids : 64;
		r->ids = util_realloc(r->ids, r->capids * sizeof(*r->ids));
	}
	r->ids[r->nids++] = h;
}

/* ---- sending ------------------------------------------------------------- */

/* May c get an event of this type, channel and daemon target at all? */
static int
conn_may_get(const struct conn *c, const char *type, const char *daemon)
{
	const struct proto_conn *p = c->proto;

	if (c->state != CONN_WS_OPEN || p == NULL || p->ended)
		return 0;
	if (daemon[0] != '\0' && strcmp(daemon, p->daemon) != 0)
		return 0;
	return proto_may_receive(p, type);
}

/*
 * With the directory on, an event of a channel reaches c only when c's user
 * is a member of that channel (as its loaded set says).
 */
static int
member_ok(const struct conn *c, const char *channel)
{
	const struct proto_conn *p = c->proto;

	if (channel[0] == '\0' || c->w->dir == NULL)
		return 1;
	return p->members != NULL &&
	       directory_members_has(p->members, channel);
}

static void
send_held(struct deliver *d, struct conn *c)
{
	struct deliver_replay *r = c->proto->replay;
	struct held_event *h;

	while ((h = r->held) != NULL) {
		r->held = h->next;
		if (c->state == CONN_WS_OPEN && !replay_seen(r, h->id_hash) &&
		    member_ok(c, h->channel) &&
		    sub_wants(&c->proto->sub, h->type,
			      h->channel[0] != '\0' ? h->channel : NULL)) {
			if (wsconn_send(c, WS_OP_TEXT, h->msg->data, h->msg->len,
					h->prio) == 0)
				count_delivered(d, h->published_ms, 1);
		} else {
			d->st.deduped += replay_seen(r, h->id_hash);
		}
		outbuf_unref(h->msg);
		free(h);
	}
	r->held_tail = &r->held;
	r->held_bytes = 0;
}

static void fetch_page(struct conn *c);
static void presub_end(struct deliver *d, struct conn *c, int send);

/* The replay is over: live events flow again, seen ids stay a while. */
static void
replay_done(struct deliver *d, struct conn *c)
{
	struct deliver_replay *r = c->proto->replay;

	r->active = 0;
	if (r->nids > 1)
		qsort(r->ids, r->nids, sizeof(*r->ids), cmp_u64);
	r->dedupe_until = util_now_ms() + DELIVER_DEDUPE_MS;
	if (c->proto->sub.types.n == 0) {
		r->presub = 1;
		r->presub_until = util_now_ms() + DELIVER_PRESUB_MS;
		return;
	}
	send_held(d, c);
	if (c->proto != NULL)
		replay_expire(c, util_now_ms());
}

/*
 * Queue replayed events while the output queue has room (half the bound:
 * live events still fit behind them); the rest waits for it to drain.
 */
static void
replay_pump(struct conn *c)
{
	struct deliver *d = c->w->deliver;
	struct deliver_replay *r = c->proto->replay;
	size_t room = c->w->cfg->max_send_queue / 2;

	while (r->next_item < r->nitems && c->state == CONN_WS_OPEN &&
	       c->q.bytes < room) {
		struct replay_item *it = &r->items[r->next_item++];

		if (wsconn_send(c, WS_OP_TEXT, it->msg->data, it->msg->len,
				it->prio) == 0) {
			d->st.replayed++;
			atomic_fetch_add_explicit(&c->w->stats->events_replayed,
						  1, memory_order_relaxed);
			atomic_fetch_add_explicit(
			    &c->w->stats
				 ->msg_out[shm_msg_out_index("event", 5)],
			    1, memory_order_relaxed);
		}
		outbuf_unref(it->msg);
	}
	if (c->state != CONN_WS_OPEN)
		return;
	if (r->next_item < r->nitems)
		return; /* deliver_conn_flushed() goes on */
	replay_free_items(r);
	if (r->more)
		fetch_page(c);
	else
		replay_done(d, c);
}

/* Turn a fetched page into messages for c (filtered by daemon and scope). */
static size_t
take_page(struct conn *c, const struct queue_fetch_result *res)
{
	struct deliver_replay *r = c->proto->replay;
	const struct config *cfg = c->w->cfg;
	struct event ev;
	char err[128];
	size_t n = 0;

	r->items = util_calloc(res->n > 0 ? res->n : 1, sizeof(*r->items));
	r->nitems = r->next_item = 0;
	for (size_t i = 0; i < res->n; i++) {
		const struct queue_item *qi = &res->items[i];
		size_t cap, len;
		struct outbuf *b;

		r->after_seq = qi->seq;
		if (event_parse_queue_body(&ev, qi->body, qi->body_len,
					   cfg->max_event_size, err,
					   sizeof(err)) != EVENT_OK) {
			log_warnx("deliver: queued event %s of %s unreadable "
				  "(%s); skipped",
				  qi->id, c->proto->orch, err);
			continue;
		}
		if (conn_may_get(c, ev.type, ev.daemon) &&
		    member_ok(c, ev.channel)) {
			cap = event_message_size_hint(&ev);
			b = outbuf_new(cap);
			len = event_message(&ev, qi->seq, (char *)b->data, cap);
			if (len == 0) {
				outbuf_unref(b);
			} else {
				b->len = len;
				r->items[r->nitems].msg = b;
				r->items[r->nitems++].prio = ev.priority;
				replay_add_id(r, id_hash(ev.id, strlen(ev.id)));
				n++;
			}
		}
		event_free(&ev);
	}
	return n;
}

static void
fetch_reply(struct queue *q, int status, const struct queue_fetch_result *res,
	    void *arg)
{
	struct deliver_replay *r = arg;
	struct conn *c = r->c;
	struct deliver *d;
	int first;

	(void)q;
	c->refs--;
	r->in_flight = 0;
	if (r->cancelled) {
		replay_free(r);
		return;
	}
	d = c->w->deliver;
	first = r->ready != NULL;
	if (status != QUEUE_OK) {
		log_warnx("deliver: %s/%s: queue %s unavailable; %s",
			  c->proto->orch, c->proto->daemon,
			  first ? "replay" : "replay page",
			  first ? "nothing replayed" : "replay cut short");
		if (first) {
			deliver_ready_fn ready = r->ready;

			r->ready = NULL;
			ready(c, 0, 0);
		}
		if (c->state == CONN_WS_OPEN && c->proto->replay == r)
			replay_done(d, c);
		return;
	}
	if (first && r->has_resume && r->after_seq > res->last_seq) {
		/* Not a seq of this counter: everything is news to it. */
		log_info("deliver: %s/%s: resumeFrom %llu is past the last "
			 "seq %llu; replaying the whole queue",
			 c->proto->orch, c->proto->daemon,
			 (unsigned long long)r->after_seq,
			 (unsigned long long)res->last_seq);
		r->has_resume = 0;
		r->after_seq = 0;
		fetch_page(c);
		return;
	}
	{
		size_t taken = take_page(c, res);

		r->more = res->n > 0 && res->total > res->n;
		if (first) {
			deliver_ready_fn ready = r->ready;
			/* Events left for later pages count as replayed. */
			uint64_t queued = taken + (res->total - res->n);
			/*
			 * A full queue after resumeFrom may have lost its
			 * oldest events to the cap: do not claim recovery.
			 */
			int recovered =
				res->total < c->w->cfg->queue_max_events;

			r->ready = NULL;
			ready(c, queued, recovered);
		}
	}
	if (c->state == CONN_WS_OPEN && c->proto != NULL &&
	    c->proto->replay == r)
		replay_pump(c);
}

static void
fetch_page(struct conn *c)
{
	struct deliver_replay *r = c->proto->replay;
	unsigned limit = r->ready != NULL ? DELIVER_FIRST_PAGE : DELIVER_PAGE;

	if (queue_fetch(c->w->queue, c->proto->orch, r->after_seq, limit,
			fetch_reply, r) == 0) {
		c->refs++;
		r->in_flight = 1;
		return;
	}
	log_warnx("deliver: %s/%s: Redis unavailable; queue not replayed",
		  c->proto->orch, c->proto->daemon);
	if (r->ready != NULL) {
		deliver_ready_fn ready = r->ready;

		r->ready = NULL;
		ready(c, 0, 0);
	}
	if (c->state == CONN_WS_OPEN && c->proto != NULL &&
	    c->proto->replay == r)
		replay_done(c->w->deliver, c);
}

/*
 * The first load of the user's channels is over (loaded or failed): the
 * replay starts.  Live events were held meanwhile (r->active).
 */
static void
members_ready(void *arg)
{
	struct deliver_replay *r = arg;
	struct conn *c = r->c;

	c->refs--;
	r->in_flight = 0;
	if (r->cancelled) {
		replay_free(r);
		return;
	}
	fetch_page(c);
}

void
deliver_conn_start(struct conn *c, int has_resume, uint64_t resume_from,
		   deliver_ready_fn ready)
{
	struct worker *w = c->w;
	struct proto_conn *p = c->proto;
	struct deliver_replay *r;

	if (w->deliver != NULL && !p->indexed)
		conn_index(w->deliver, c);
	if (w->dir != NULL && p->members == NULL && p->user[0] != '\0')
		p->members = directory_members_get(w->dir, p->user);
	if (w->queue == NULL) {
		ready(c, 0, 0);
		return;
	}
	if (p->replay != NULL) { /* a finished one, still deduping */
		replay_free(p->replay);
		p->replay = NULL;
	}
	r = util_calloc(1, sizeof(*r));
	r->c = c;
	r->active = 1;
	r->ready = ready;
	r->has_resume = has_resume;
	r->after_seq = has_resume ? resume_from : 0;
	r->held_tail = &r->held;
	p->replay = r;
	/*
	 * The user's first connection here: auth_success (and the replay)
	 * wait for its channels, so that no channel event published after
	 * auth_success is refused for want of them.
	 */
	if (p->members != NULL &&
	    directory_members_wait(p->members, members_ready, r)) {
		c->refs++;
		r->in_flight = 1;
		return;
	}
	fetch_page(c);
}

void
deliver_conn_end(struct conn *c)
{
	struct proto_conn *p = c->proto;
	struct deliver *d = c->w->deliver;

	if (p == NULL)
		return;
	if (d != NULL)
		conn_unindex(d, c);
	if (p->members != NULL) {
		directory_members_put(c->w->dir, p->members);
		p->members = NULL;
	}
	if (p->replay != NULL) {
		if (p->replay->in_flight)
			p->replay->cancelled = 1; /* fetch_reply frees it */
		else
			replay_free(p->replay);
		p->replay = NULL;
	}
}

void
deliver_conn_flushed(struct conn *c)
{
	struct deliver_replay *r;

	if (c->proto == NULL || (r = c->proto->replay) == NULL)
		return;
	if (r->active && !r->in_flight && r->next_item < r->nitems)
		replay_pump(c);
}

/* ---- live events ---------------------------------------------------------- */

/* A NUL-terminated copy of an ipc string (lengths are checked by decode). */
static void
cstr(char *out, size_t cap, const char *s, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	if (len > 0)
		memcpy(out, s, len);
	out[len] = '\0';
}

static void
hold(struct deliver *d, struct conn *c, const struct ipc_event *ev,
     struct outbuf **msg, uint64_t h, const char *type, const char *channel)
{
	struct deliver_replay *r = c->proto->replay;
	struct held_event *he;

	if (r->presub &&
	    r->held_bytes + ev->message_len > c->w->cfg->max_send_queue / 2) {
		/* No subscribe while this much came: stop holding, drop it. */
		presub_end(d, c, 0);
		return;
	}
	if (r->held_bytes + ev->message_len > c->w->cfg->max_send_queue) {
		log_info("deliver: %s/%s: live events held during the replay "
			 "exceed max_send_queue; closing as a slow consumer",
			 c->proto->orch, c->proto->daemon);
		atomic_fetch_add(&c->w->stats->slow_consumers, 1);
		wsconn_close(c, WS_CLOSE_POLICY, "send queue limit exceeded");
		return;
	}
	if (*msg == NULL)
		*msg = outbuf_from(ev->message, ev->message_len);
	he = util_calloc(1, sizeof(*he));
	outbuf_ref(*msg);
	he->msg = *msg;
	he->id_hash = h;
	he->published_ms = ev->published_ms;
	he->prio = ev->priority;
	util_strlcpy(he->type, type, sizeof(he->type));
	util_strlcpy(he->channel, channel, sizeof(he->channel));
	*r->held_tail = he;
	r->held_tail = &he->next;
	r->held_bytes += ev->message_len;
	d->st.held++;
	log_debug("deliver: event %.*s held for %s/%s during its replay",
		  (int)ev->event_id_len, ev->event_id, c->proto->orch,
		  c->proto->daemon);
}

/* The wait for the first subscribe is over: send (or drop) what it held. */
static void
presub_end(struct deliver *d, struct conn *c, int send)
{
	struct deliver_replay *r = c->proto->replay;
	struct held_event *h, *next;

	r->presub = 0;
	if (send) {
		send_held(d, c);
	} else {
		for (h = r->held; h != NULL; h = next) {
			next = h->next;
			outbuf_unref(h->msg);
			free(h);
		}
		r->held = NULL;
		r->held_tail = &r->held;
		r->held_bytes = 0;
	}
	if (c->proto != NULL)
		replay_expire(c, util_now_ms());
}

void
deliver_conn_subscribed(struct conn *c)
{
	struct deliver_replay *r;

	if (c->proto == NULL || (r = c->proto->replay) == NULL || !r->presub)
		return;
	presub_end(c->w->deliver, c, 1);
}

static void
add_target(struct deliver *d, size_t *n, struct conn *c)
{
	if (*n == d->cap_targets) {
		d->cap_targets = d->cap_targets ? 2 * d->cap_targets : 256;
		d->targets = util_realloc(d->targets,
					  d->cap_targets * sizeof(*d->targets));
	}
	d->targets[(*n)++] = c;
}

/* Should c get ev now (1), later (held), or not at all (0)? */
static void
consider(struct deliver *d, struct conn *c, const struct ipc_event *ev,
	 const char *type, const char *channel, const char *daemon, uint64_t h,
	 struct outbuf **msg, size_t *n, uint64_t now)
{
	struct proto_conn *p = c->proto;
	struct deliver_replay *r;

	if (!conn_may_get(c, type, daemon))
		return;
	if ((r = p->replay) != NULL) {
		if (r->presub && now >= r->presub_until) {
			/* No subscribe came: what was held was not wanted. */
			presub_end(d, c, 0);
			r = p->replay;
		}
	}
	if (r != NULL) {
		if (r->active || r->presub) {
			hold(d, c, ev, msg, h, type, channel);
			return;
		}
		if (replay_seen(r, h)) {
			d->st.deduped++;
			return;
		}
		replay_expire(c, now);
	}
	if (p->state != PROTO_AUTHED || !member_ok(c, channel) ||
	    !sub_wants(&p->sub, type, channel[0] != '\0' ? channel : NULL))
		return;
	add_target(d, n, c);
}

static void
deliver_event(struct deliver *d, const struct ipc_event *ev)
{
	char type[EVENT_TYPE_MAX], channel[EVENT_CHANNEL_MAX];
	char orch[REGISTRY_ID_MAX], daemon[REGISTRY_ID_MAX], org[REGISTRY_ID_MAX];
	struct outbuf *msg = NULL;
	uint64_t h = id_hash(ev->event_id, ev->event_id_len);
	uint64_t now = util_now_ms();
	size_t n = 0;
	struct conn *c, *next;

	cstr(type, sizeof(type), ev->event_type, ev->event_type_len);
	cstr(channel, sizeof(channel), ev->channel, ev->channel_len);
	cstr(orch, sizeof(orch), ev->orchestrator, ev->orchestrator_len);
	cstr(daemon, sizeof(daemon), ev->daemon, ev->daemon_len);
	cstr(org, sizeof(org), ev->organization, ev->organization_len);
	d->st.events++;
	atomic_fetch_add_explicit(&d->w->stats->events_received, 1,
				  memory_order_relaxed);
	if (ev->target == IPC_TARGET_ORCH) {
		struct deliver_orch *o = orch_find(d, orch);

		/* A targeted event with an organization must match it. */
		for (c = o != NULL ? o->head : NULL; c != NULL; c = next) {
			next = c->proto->orch_next;
			d->work++;
			if (org[0] != '\0' && c->proto->org[0] != '\0' &&
			    strcmp(org, c->proto->org) != 0)
				continue;
			consider(d, c, ev, type, channel, daemon, h, &msg, &n,
				 now);
		}
	} else {
		for (c = d->all; c != NULL; c = next) {
			next = c->proto->all_next;
			d->work++;
			if (ev->target == IPC_TARGET_ORG &&
			    strcmp(org, c->proto->org) != 0)
				continue;
			consider(d, c, ev, type, channel, daemon, h, &msg, &n,
				 now);
		}
	}
	log_debug("deliver: event %.*s seq %llu: %zu connections now",
		  (int)ev->event_id_len, ev->event_id,
		  (unsigned long long)ev->seq, n);
	if (n > 0)
		count_delivered(d, ev->published_ms,
				wsconn_broadcast(d->targets, n, WS_OP_TEXT,
						 ev->message, ev->message_len,
						 ev->priority));
	outbuf_unref(msg);
}

static void
dispatch(struct deliver *d, const struct ipc_frame *f)
{
	struct ipc_event ev;
	struct ipc_hello hello;
	uint64_t ms;
	int rc;

	d->st.frames++;
	switch (f->type) {
	case IPC_EVENT:
		if ((rc = ipc_event_decode(f, &ev)) != 0)
			fatalx("deliver: bad event frame from the relay: %s",
			       ipc_strerror(rc));
		deliver_event(d, &ev);
		break;
	case IPC_HELLO:
		if ((rc = ipc_hello_decode(f, &hello)) != 0)
			fatalx("deliver: bad hello frame from the relay: %s",
			       ipc_strerror(rc));
		d->st.hellos++;
		log_info("deliver: relay pid %u (start %llu) is feeding us",
			 hello.pid, (unsigned long long)hello.generation);
		break;
	case IPC_PING:
		if ((rc = ipc_ping_decode(f, &ms)) != 0)
			fatalx("deliver: bad ping frame from the relay: %s",
			       ipc_strerror(rc));
		break;
	case IPC_KICK: {
		struct ipc_kick k;

		if ((rc = ipc_kick_decode(f, &k)) != 0)
			fatalx("deliver: bad kick frame from the relay: %s",
			       ipc_strerror(rc));
		worker_ctl_kick(d->w, &k);
		break;
	}
	case IPC_LOGLEVEL: {
		int level;

		if ((rc = ipc_loglevel_decode(f, &level)) != 0)
			fatalx("deliver: bad loglevel frame from the relay: %s",
			       ipc_strerror(rc));
		worker_ctl_loglevel(d->w, level);
		break;
	}
	case IPC_DRAIN: {
		char reason[IPC_DRAIN_REASON_MAX + 1];

		if ((rc = ipc_drain_decode(f, reason, sizeof(reason))) != 0)
			fatalx("deliver: bad drain frame from the relay: %s",
			       ipc_strerror(rc));
		worker_ctl_drain(d->w, reason);
		break;
	}
	default:
		/* Same binary on both ends: an unknown type is a bug. */
		fatalx("deliver: unknown frame type %u from the relay",
		       (unsigned)f->type);
	}
}

static void
pipe_close(struct deliver_pipe *dp)
{
	size_t left = ipc_reader_pending(&dp->rd);

	if (left > 0)
		log_warnx("deliver: %zu bytes of a frame the relay did not "
			  "finish discarded",
			  left);
	ev_io_stop(dp->d->w->loop, &dp->io);
	ev_idle_stop(dp->d->w->loop, &dp->more);
	close(dp->fd);
	dp->fd = -1;
	ipc_reader_free(&dp->rd);
}

/*
 * Deliver what the pipe holds, within a budget of work per turn of the
 * loop: a broadcast to thousands of connections costs thousands of queue
 * operations, and a turn that ran for seconds would starve every socket's
 * writes (and every timer) meanwhile.  Past the budget, an idle watcher
 * brings us back once the loop has written what was queued; the pipe (and
 * behind it the relay's bounded queue) holds the rest.
 */
static void
pipe_run(struct deliver_pipe *dp)
{
	struct deliver *d = dp->d;
	size_t bytes = 0;
	struct ipc_frame f;
	ssize_t n;
	int rc = 0;

	d->work = 0;
	for (;;) {
		while (d->work < DELIVER_WORK_BUDGET &&
		       (rc = ipc_reader_next(&dp->rd, &f)) > 0)
			dispatch(d, &f);
		if (rc < 0)
			fatalx("deliver: relay pipe out of sync: %s",
			       ipc_strerror(rc));
		if (d->work >= DELIVER_WORK_BUDGET ||
		    bytes >= DELIVER_READ_BUDGET) {
			ev_idle_start(d->w->loop, &dp->more);
			return;
		}
		n = ipc_reader_read(&dp->rd, dp->fd);
		if (n == 0) {
			/* The relay that wrote here is gone (restarted). */
			pipe_close(dp);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			if (errno != ENOBUFS && errno != EBADMSG)
				fatal("deliver: read relay pipe");
			continue; /* _next() consumes, or reports the error */
		}
		bytes += (size_t)n;
	}
	ev_idle_stop(d->w->loop, &dp->more);
}

static void
pipe_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	pipe_run(io->data);
}

static void
more_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
	(void)loop;
	(void)revents;
	pipe_run(idle->data);
}

static void
pipe_add(struct deliver *d, int fd)
{
	struct deliver_pipe *dp = NULL;
	int fl;

	for (int i = 0; i < DELIVER_MAX_PIPES && dp == NULL; i++)
		if (d->pipes[i].fd < 0)
			dp = &d->pipes[i];
	if (dp == NULL) {
		/* Relays restarting faster than we read: the oldest goes. */
		log_warnx("deliver: too many relay pipes; dropping the oldest");
		pipe_close(&d->pipes[0]);
		dp = &d->pipes[0];
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		log_warn("deliver: fcntl O_NONBLOCK on the relay pipe");
	dp->d = d;
	dp->fd = fd;
	ipc_reader_init(&dp->rd, 0);
	ev_io_init(&dp->io, pipe_cb, fd, EV_READ);
	dp->io.data = dp;
	ev_io_start(d->w->loop, &dp->io);
	ev_idle_init(&dp->more, more_cb);
	dp->more.data = dp;
}

/* A new pipe from the supervisor (a relay (re)started). */
static void
ctl_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct deliver *d = io->data;
	int fd = -1;
	ssize_t n;

	(void)loop;
	(void)revents;
	n = relay_ctl_recv(d->ctl_fd, NULL, &fd);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		if (n < 0)
			log_warn("deliver: recvmsg control socket");
		ev_io_stop(d->w->loop, &d->ctl_io);
		return;
	}
	if (n > 0 && fd >= 0)
		pipe_add(d, fd);
}

struct deliver *
deliver_new(struct worker *w, int fd, int ctl_fd)
{
	struct deliver *d = util_calloc(1, sizeof(*d));

	d->w = w;
	d->nbuckets = 256;
	d->buckets = util_calloc(d->nbuckets, sizeof(*d->buckets));
	for (int i = 0; i < DELIVER_MAX_PIPES; i++)
		d->pipes[i].fd = -1;
	if (fd >= 0)
		pipe_add(d, fd);
	d->ctl_fd = ctl_fd;
	if (ctl_fd >= 0) {
		ev_io_init(&d->ctl_io, ctl_cb, ctl_fd, EV_READ);
		d->ctl_io.data = d;
		ev_io_start(w->loop, &d->ctl_io);
	}
	return d;
}

void
deliver_free(struct deliver *d)
{
	if (d == NULL)
		return;
	for (int i = 0; i < DELIVER_MAX_PIPES; i++)
		if (d->pipes[i].fd >= 0) {
			ev_io_stop(d->w->loop, &d->pipes[i].io);
			ev_idle_stop(d->w->loop, &d->pipes[i].more);
			close(d->pipes[i].fd);
			ipc_reader_free(&d->pipes[i].rd);
		}
	if (d->ctl_fd >= 0) {
		ev_io_stop(d->w->loop, &d->ctl_io);
		close(d->ctl_fd);
	}
	for (size_t i = 0; i < d->nbuckets; i++) {
		struct deliver_orch *o, *next;

		for (o = d->buckets[i]; o != NULL; o = next) {
			next = o->next;
			free(o);
		}
	}
	free(d->buckets);
	free(d->targets);
	free(d);
}

void
deliver_get_stats(const struct deliver *d, struct deliver_stats *st)
{
	*st = d->st;
}
