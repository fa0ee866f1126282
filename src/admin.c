/*
 * admin: the admin socket's I/O -- the socket file (supervisor side) and
 * the server in the relay's event loop.  See include/orchd/admin.h.
 *
 * Every client is served in order: a line is parsed and answered before
 * the next one is looked at, and while a reply waits on Redis (revoke,
 * publish) or more than OUT_LOW bytes of replies are unwritten, the client
 * is not read at all, so its requests wait in its socket and not in our
 * memory.  What one client can make us hold is thus one request line and
 * one reply (ADMIN_REPLY_MAX) plus OUT_LOW.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "orchd/admin.h"
#include "orchd/config.h"
#include "orchd/ipc.h"
#include "orchd/log.h"
#include "orchd/metrics.h"
#include "orchd/redis.h"
#include "orchd/registry.h"
#include "orchd/shm.h"
#include "orchd/util.h"

#define OUT_LOW (64 * 1024) /* unwritten reply bytes before we stop reading */
#define IN_CAP (ADMIN_LINE_MAX + 1) /* a maximal line and its newline */
#define ACCEPT_BUDGET 16
#define SMALL_REPLY 1024
#define STATUS_CAP (64 * 1024) /* 64 workers of ~400 bytes, and the rest */
#define KICK_REASON "kicked by an operator"
#define REVOKE_REASON "token revoked"
#define DRAIN_REASON "drain"
#define REVOKED_SET "daemon:tokens:revoked"
#define EVENTS_CHANNEL "daemon:events"

struct admin_client;

/* A Redis reply due to a client (revoke, publish). */
struct admin_pending {
	struct admin_pending *prev, *next;
	struct admin *a;        /* NULL: the server is gone */
	struct admin_client *c; /* NULL: the client is gone */
	enum admin_cmd cmd;
	char jti[JWT_ID_SIZE];
};

struct admin_client {
	struct admin *a;
	int fd; /* -1: free */
	unsigned uid;
	long pid;
	ev_io rio, wio;
	ev_timer idle;
	int reading, writing;
	int eof; /* the client shut its side: answer what came, then close */
	int closing; /* close once the output is written */
	char *in;
	size_t inlen;
	char *out; /* replies; out[outoff..outlen) unwritten */
	size_t outoff, outlen, outcap;
	struct admin_pending *pend;
};

struct admin {
	struct admin_env env;
	int fd;
	ev_io lio;
	struct admin_client clients[ADMIN_MAX_CLIENTS];
	struct admin_pending *pending; /* every reply due */
	uint8_t frame[IPC_HDR_LEN + 1024];
};

/* ---- the socket file (supervisor) ---------------------------------------- */

static int
make_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		log_warnx("admin_listen: %s: path too long for a unix socket",
			  path);
		return -1;
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

int
admin_listen(const char *path, unsigned mode, ino_t *ino)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t omask;
	int fd, rc;

	if (make_addr(path, &sun) == -1)
		return -1;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("%s: %s exists and is not a socket; not "
				  "touching it",
				  __func__, path);
			return -1;
		}
		/*
		 * Non-blocking, so that a live but stuck orchd with a full
		 * backlog (EAGAIN) counts as live instead of hanging us.
		 */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    0);
		if (fd == -1) {
			log_warn("%s: socket", __func__);
			return -1;
		}
		rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
		if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
			close(fd);
			log_warnx("%s: another orchd answers on %s; refusing "
				  "to start",
				  __func__, path);
			return -1;
		}
		if (errno != ECONNREFUSED && errno != ENOENT) {
			log_warn("%s: connect %s", __func__, path);
			close(fd);
			return -1;
		}
		close(fd);
		if (unlink(path) == -1 && errno != ENOENT) {
			log_warn("%s: unlink %s", __func__, path);
			return -1;
		}
		log_notice("%s: removed the stale socket %s", __func__, path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		log_warn("%s: socket", __func__);
		return -1;
	}
	/* Never wider than 0600 between bind and chmod. */
	omask = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(omask);
	if (rc == -1) {
		log_warn("%s: bind %s", __func__, path);
		close(fd);
		return -1;
	}
	if (chmod(path, (mode_t)mode) == -1 ||
	    listen(fd, ADMIN_BACKLOG) == -1 || lstat(path, &st) == -1) {
		log_warn("%s: %s", __func__, path);
		unlink(path);
		close(fd);
		return -1;
	}
	*ino = st.st_ino;
	return fd;
}

void
admin_unlink(const char *path, ino_t ino)
{
	struct stat st;

	/* Someone else's file now (a second orchd took the path): keep it. */
	if (path == NULL || lstat(path, &st) == -1 || !S_ISSOCK(st.st_mode) ||
	    st.st_ino != ino)
		return;
	if (unlink(path) == -1)
		log_warn("%s: unlink %s", __func__, path);
}

/* ---- clients ------------------------------------------------------------- */

static void client_run(struct admin_client *c);

static void
client_close(struct admin_client *c, const char *why)
{
	struct admin *a = c->a;

	if (c->fd < 0)
		return;
	ev_io_stop(a->env.loop, &c->rio);
	ev_io_stop(a->env.loop, &c->wio);
	ev_timer_stop(a->env.loop, &c->idle);
	close(c->fd);
	c->fd = -1;
	if (c->pend != NULL)
		c->pend->c = NULL; /* its reply finds nobody */
	c->pend = NULL;
	UTIL_FREE(c->in);
	UTIL_FREE(c->out);
	c->inlen = c->outoff = c->outlen = c->outcap = 0;
	log_info("admin: client (uid %u, pid %ld) closed: %s", c->uid, c->pid,
		 why);
}

static void
out_append(struct admin_client *c, const char *s, size_t n)
{
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outlen + n;

		/* Compact first: what was written is gone. */
		if (c->outoff > 0) {
			memmove(c->out, c->out + c->outoff,
				c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
			cap = c->outlen + n;
		}
		if (cap > c->outcap) {
			c->out = util_realloc(c->out, cap);
			c->outcap = cap;
		}
	}
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
}

static void
reply_error(struct admin_client *c, const char *msg)
{
	char buf[SMALL_REPLY];
	size_t n = admin_reply_error(buf, sizeof(buf), msg);

	if (n == 0)
		n = admin_reply_error(buf, sizeof(buf),
				      "error message too long");
	out_append(c, buf, n);
}

static void
reply_small(struct admin_client *c, const char *buf, size_t n)
{
	if (n == 0)
		reply_error(c, "reply too large");
	else
		out_append(c, buf, n);
}

/* ---- commands ------------------------------------------------------------ */

static void
cmd_status(struct admin_client *c)
{
	struct admin *a = c->a;
	const struct config *cfg = a->env.cfg;
	struct metrics_snapshot *s = util_malloc(sizeof(*s));
	unsigned nw = atomic_load(&a->env.shm->nworkers);
	size_t cap, len = 0, n = 0;
	char *stats = NULL, *buf = NULL;
	int db_ready = 0;

	/* The same document as GET /stats; the database is up if any worker's
	 * directory has a connection. */
	for (unsigned i = 0; i < nw && i < CONFIG_MAX_WORKERS; i++)
		db_ready |= atomic_load(&a->env.shm->workers[i].db_ready);
	metrics_snapshot(s, a->env.shm, a->env.registry, cfg,
			 cfg->database_conninfo != NULL, db_ready);
	for (cap = STATUS_CAP; cap <= METRICS_MAX_OUTPUT; cap *= 2) {
		stats = util_realloc(stats, cap);
		if (metrics_render_json(s, stats, cap, &len) == 0)
			break;
		len = 0;
	}
	if (len > 0) {
		buf = util_malloc(len + 128);
		n = admin_render_status(buf, len + 128, stats, len,
					log_get_level());
	}
	reply_small(c, buf, n);
	free(buf);
	free(stats);
	free(s);
}

struct list_arg {
	const struct admin_request *rq;
	struct admin_list *l;
	unsigned matched;
};

static int
list_cb(uint32_t slot, const struct registry_entry *e, void *arg)
{
	struct list_arg *la = arg;

	(void)slot;
	if (admin_entry_matches(la->rq, e)) {
		la->matched++;
		if (la->l != NULL)
			admin_list_add(la->l, e);
	}
	return 0;
}

static void
cmd_connections(struct admin_client *c, const struct admin_request *rq)
{
	struct admin_list l;
	struct list_arg la = {rq, &l, 0};
	size_t cap = 1024 + (size_t)rq->limit * 512, len;
	char *buf;
	long off;

	if (cap > ADMIN_REPLY_MAX)
		cap = ADMIN_REPLY_MAX;
	buf = util_malloc(cap);
	admin_list_begin(&l, buf, cap, rq->limit);
	registry_foreach(c->a->env.registry, list_cb, &la);
	if ((off = admin_list_end(&l, &len)) < 0) {
		reply_error(c, "reply too large");
	} else if (c->outlen == c->outoff) {
		/* Nothing else queued: the listing becomes the output. */
		free(c->out);
		c->out = buf;
		c->outcap = cap;
		c->outoff = (size_t)off;
		c->outlen = (size_t)off + len;
		return;
	} else {
		out_append(c, buf + off, len);
	}
	free(buf);
}

static void
cmd_kick(struct admin_client *c, const struct admin_request *rq)
{
	struct admin *a = c->a;
	struct list_arg la = {rq, NULL, 0};
	struct ipc_kick k;
	char buf[SMALL_REPLY];
	unsigned pipes;
	int n;

	registry_foreach(a->env.registry, list_cb, &la);
	memset(&k, 0, sizeof(k));
	if (rq->has & ADMIN_HAS_ORCH) {
		k.match |= IPC_KICK_ORCH;
		k.orchestrator = rq->orchestrator;
		k.orchestrator_len = strlen(rq->orchestrator);
	}
	if (rq->has & ADMIN_HAS_DAEMON) {
		k.match |= IPC_KICK_DAEMON;
		k.daemon = rq->daemon;
		k.daemon_len = strlen(rq->daemon);
	}
	if (rq->has & ADMIN_HAS_CONN) {
		k.match |= IPC_KICK_CONN;
		k.conn_id = rq->conn_id;
	}
	k.reason = (rq->has & ADMIN_HAS_REASON) ? rq->reason : KICK_REASON;
	k.reason_len = strlen(k.reason);
	if ((n = ipc_kick_encode(&k, a->frame, sizeof(a->frame))) < 0) {
		reply_error(c, "cannot encode the kick");
		return;
	}
	pipes = a->env.send(
	    a->frame, (size_t)n,
	    (rq->has & ADMIN_HAS_CONN) ? (int)rq->conn_worker : -1, 0);
	log_notice("admin: uid %u kicks orchestrator %s daemon %s connection "
		   "%s: %u registered connections match, %u workers told",
		   c->uid, (rq->has & ADMIN_HAS_ORCH) ? rq->orchestrator : "*",
		   (rq->has & ADMIN_HAS_DAEMON) ? rq->daemon : "*",
		   (rq->has & ADMIN_HAS_CONN) ? "given" : "*", la.matched,
		   pipes);
	if (la.matched > 0 && pipes == 0) {
		reply_error(c, "no worker could be told (pipes full or gone)");
		return;
	}
	reply_small(c, buf,
		    admin_reply_uint(buf, sizeof(buf), "matched", la.matched));
}

static struct admin_pending *
pending_new(struct admin_client *c, enum admin_cmd cmd)
{
	struct admin *a = c->a;
	struct admin_pending *p = util_calloc(1, sizeof(*p));

	p->a = a;
	p->c = c;
	p->cmd = cmd;
	p->next = a->pending;
	if (a->pending != NULL)
		a->pending->prev = p;
	a->pending = p;
	return p;
}

static void
pending_free(struct admin_pending *p)
{
	if (p->a != NULL) {
		if (p->prev != NULL)
			p->prev->next = p->next;
		else
			p->a->pending = p->next;
		if (p->next != NULL)
			p->next->prev = p->prev;
	}
	if (p->c != NULL)
		p->c->pend = NULL;
	free(p);
}

/* The reply the client waited for is in: go on with its next request. */
static void
pending_done(struct admin_pending *p, const char *line, size_t n,
	     const char *err)
{
	struct admin_client *c = p->c;

	pending_free(p);
	if (c == NULL)
		return;
	if (err != NULL)
		reply_error(c, err);
	else
		reply_small(c, line, n);
	client_run(c);
}

static const char *
redis_failure(const redisReply *r)
{
	if (r == NULL)
		return "Redis unavailable (no reply)";
	if (r->type == REDIS_REPLY_ERROR)
		return "Redis refused the command";
	if (r->type != REDIS_REPLY_INTEGER)
		return "unexpected reply from Redis";
	return NULL;
}

static void
revoke_reply(struct redis *r, redisReply *reply, void *arg)
{
	struct admin_pending *p = arg;
	struct admin *a = p->a;
	const char *err = redis_failure(reply);
	char buf[SMALL_REPLY];
	struct ipc_kick k;
	unsigned pipes = 0;
	size_t n = 0;
	int fl;

	(void)r;
	if (a == NULL) {
		pending_free(p);
		return;
	}
	if (err == NULL) {
		/* In the set now: new auths fail; close the live ones. */
		memset(&k, 0, sizeof(k));
		k.match = IPC_KICK_JTI;
		k.jti = p->jti;
		k.jti_len = strlen(p->jti);
		k.reason = REVOKE_REASON;
		k.reason_len = strlen(REVOKE_REASON);
		if ((fl = ipc_kick_encode(&k, a->frame, sizeof(a->frame))) > 0)
			pipes = a->env.send(a->frame, (size_t)fl, -1, 0);
		log_notice("admin: token %s revoked (%s); %u workers told to "
			   "close its connections",
			   p->jti,
			   reply->integer > 0 ? "added" : "already there",
			   pipes);
		n = admin_reply_revoke(buf, sizeof(buf), pipes,
				       reply->integer > 0);
	} else {
		log_warnx("admin: revoke %s: %s", p->jti, err);
	}
	pending_done(p, buf, n, err);
}

static void
publish_reply(struct redis *r, redisReply *reply, void *arg)
{
	struct admin_pending *p = arg;
	const char *err = redis_failure(reply);
	char buf[SMALL_REPLY];
	size_t n = 0;

	(void)r;
	if (p->a == NULL) {
		pending_free(p);
		return;
	}
	if (err == NULL)
		n = admin_reply_uint(
		    buf, sizeof(buf), "receivers",
		    (uint64_t)(reply->integer > 0 ? reply->integer : 0));
	else
		log_warnx("admin: publish: %s", err);
	pending_done(p, buf, n, err);
}

static void
cmd_revoke(struct admin_client *c, const struct admin_request *rq)
{
	struct admin_pending *p = pending_new(c, ADMIN_REVOKE);

	util_strlcpy(p->jti, rq->jti, sizeof(p->jti));
	if (redis_command(c->a->env.redis, revoke_reply, p,
			  "SADD " REVOKED_SET " %s", rq->jti) != 0) {
		pending_free(p);
		reply_error(c, "Redis unavailable");
		return;
	}
	c->pend = p;
}

static void
cmd_publish(struct admin_client *c, const struct admin_request *rq)
{
	struct admin_pending *p = pending_new(c, ADMIN_PUBLISH);
	const char *argv[3] = {"PUBLISH", EVENTS_CHANNEL, rq->event};
	size_t lens[3] = {7, sizeof(EVENTS_CHANNEL) - 1, rq->event_len};

	if (redis_command_argv(c->a->env.redis, publish_reply, p, 3, argv,
			       lens) != 0) {
		pending_free(p);
		reply_error(c, "Redis unavailable");
		return;
	}
	log_info("admin: uid %u publishes an event (%zu bytes)", c->uid,
		 rq->event_len);
	c->pend = p;
}

static void
cmd_loglevel(struct admin_client *c, const struct admin_request *rq)
{
	struct admin *a = c->a;
	char buf[SMALL_REPLY];
	unsigned pipes;
	int n;

	if (rq->has & ADMIN_HAS_LEVEL) {
		if ((n = ipc_loglevel_encode(rq->level, a->frame,
					     sizeof(a->frame))) < 0) {
			reply_error(c, "cannot encode the level");
			return;
		}
		log_set_level(rq->level);
		pipes = a->env.send(a->frame, (size_t)n, -1, 0);
		log_notice("admin: uid %u sets the log level to %s (relay and "
			   "%u workers)",
			   c->uid, admin_level_name(rq->level), pipes);
	}
	reply_small(c, buf,
		    admin_reply_level(buf, sizeof(buf), log_get_level()));
}

static void
cmd_drain(struct admin_client *c, const struct admin_request *rq)
{
	struct admin *a = c->a;
	char buf[SMALL_REPLY];
	int slot = (int)rq->worker, n;
	pid_t pid;

	if (rq->worker >= (unsigned)a->env.cfg->workers) {
		snprintf(buf, sizeof(buf), "no worker %u (workers 0..%d)",
			 rq->worker, a->env.cfg->workers - 1);
		reply_error(c, buf);
		return;
	}
	if ((pid = a->env.worker_pid(slot)) <= 0) {
		snprintf(buf, sizeof(buf), "worker %u is not running",
			 rq->worker);
		reply_error(c, buf);
		return;
	}
	if ((n = ipc_drain_encode(DRAIN_REASON, a->frame, sizeof(a->frame))) <
		0 ||
	    a->env.send(a->frame, (size_t)n, slot, pid) == 0) {
		snprintf(buf, sizeof(buf),
			 "worker %u (pid %ld) cannot be told (no pipe)",
			 rq->worker, (long)pid);
		reply_error(c, buf);
		return;
	}
	/* The supervisor starts its successor now, not when it exits. */
	if (a->env.drain(slot, pid) != 0)
		log_warnx("admin: the supervisor was not told of the drain "
			  "of worker %d; it refills the slot when the worker "
			  "exits",
			  slot);
	log_notice("admin: uid %u drains worker %d (pid %ld)", c->uid, slot,
		   (long)pid);
	reply_small(c, buf,
		    admin_reply_uint(buf, sizeof(buf), "pid", (uint64_t)pid));
}

static void
handle_line(struct admin_client *c, const char *line, size_t len)
{
	struct admin_request rq;
	char err[256];

	if (admin_request_parse(line, len, c->a->env.cfg->max_event_size, &rq,
				err, sizeof(err)) != 0) {
		log_info("admin: uid %u: bad request: %s", c->uid, err);
		reply_error(c, err);
		return;
	}
	switch (rq.cmd) {
	case ADMIN_STATUS:
		cmd_status(c);
		break;
	case ADMIN_CONNECTIONS:
		cmd_connections(c, &rq);
		break;
	case ADMIN_KICK:
		cmd_kick(c, &rq);
		break;
	case ADMIN_REVOKE:
		cmd_revoke(c, &rq);
		break;
	case ADMIN_PUBLISH:
		cmd_publish(c, &rq);
		break;
	case ADMIN_LOGLEVEL:
		cmd_loglevel(c, &rq);
		break;
	case ADMIN_DRAIN:
		cmd_drain(c, &rq);
		break;
	}
}

/* ---- client I/O ---------------------------------------------------------- */

static int
blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

/* Answer the complete lines held, while nothing holds the client back. */
static void
process_lines(struct admin_client *c)
{
	while (c->pend == NULL && !c->closing &&
	       c->outlen - c->outoff <= OUT_LOW && c->inlen > 0) {
		char *nl = memchr(c->in, '\n', c->inlen);
		size_t len, used;

		if (nl == NULL) {
			if (c->inlen > ADMIN_LINE_MAX) {
				reply_error(c, "line too long");
				c->closing = 1;
				log_info("admin: uid %u: request line over %d "
					 "bytes",
					 c->uid, ADMIN_LINE_MAX);
				return;
			}
			if (!c->eof)
				return;
			len = used = c->inlen; /* a last line without \n */
		} else {
			len = (size_t)(nl - c->in);
			used = len + 1;
		}
		if (len > ADMIN_LINE_MAX) {
			reply_error(c, "line too long");
			c->closing = 1;
			return;
		}
		if (len > 0 && c->in[len - 1] == '\r')
			len--;
		if (!blank(c->in, len))
			handle_line(c, c->in, len);
		if (c->fd < 0)
			return;
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
	}
}

static void
set_watchers(struct admin_client *c)
{
	struct ev_loop *loop = c->a->env.loop;
	int want_read = !c->eof && !c->closing && c->pend == NULL &&
			c->outlen - c->outoff <= OUT_LOW && c->inlen < IN_CAP;
	int want_write = c->outlen > c->outoff;

	if (want_read != c->reading) {
		if (want_read)
			ev_io_start(loop, &c->rio);
		else
			ev_io_stop(loop, &c->rio);
		c->reading = want_read;
	}
	if (want_write != c->writing) {
		if (want_write)
			ev_io_start(loop, &c->wio);
		else
			ev_io_stop(loop, &c->wio);
		c->writing = want_write;
	}
}

/* Write what can be written now; -1 if the client is gone. */
static int
flush_out(struct admin_client *c)
{
	while (c->outlen > c->outoff) {
		ssize_t n =
		    send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
			 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			client_close(c, strerror(errno));
			return -1;
		}
		c->outoff += (size_t)n;
		ev_timer_again(c->a->env.loop, &c->idle);
	}
	c->outoff = c->outlen = 0;
	/* A big listing's buffer goes once written. */
	if (c->outcap > OUT_LOW) {
		UTIL_FREE(c->out);
		c->outcap = 0;
	}
	return 0;
}

static void
client_run(struct admin_client *c)
{
	for (;;) {
		size_t before = c->inlen;

		process_lines(c);
		if (c->fd < 0 || flush_out(c) == -1)
			return;
		/* Output written may let more lines through. */
		if (c->inlen == before || c->pend != NULL || c->closing ||
		    c->outlen - c->outoff > OUT_LOW)
			break;
	}
	if ((c->closing || (c->eof && c->inlen == 0 && c->pend == NULL)) &&
	    c->outlen == c->outoff) {
		client_close(c, c->closing ? "line too long" : "done");
		return;
	}
	set_watchers(c);
}

static void
read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct admin_client *c = io->data;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (c->in == NULL)
		c->in = util_malloc(IN_CAP);
	n = recv(c->fd, c->in + c->inlen, IN_CAP - c->inlen, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		client_close(c, strerror(errno));
		return;
	}
	ev_timer_again(c->a->env.loop, &c->idle);
	if (n == 0)
		c->eof = 1;
	c->inlen += (size_t)n;
	client_run(c);
}

static void
write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	client_run(io->data);
}

static void
idle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct admin_client *c = t->data;

	(void)loop;
	(void)revents;
	if (c->pend != NULL) {
		ev_timer_again(c->a->env.loop, &c->idle); /* Redis times out */
		return;
	}
	client_close(c, c->outlen > c->outoff ? "not reading its replies"
					      : "idle");
}

static void
refuse(int fd)
{
	char buf[SMALL_REPLY];
	size_t n =
	    admin_reply_error(buf, sizeof(buf), "too many admin clients");

	(void)send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void
accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct admin *a = io->data;

	(void)revents;
	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		struct admin_client *c = NULL;
		struct ucred cr;
		socklen_t crlen = sizeof(cr);
		int fd =
		    accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_warn("admin: accept4");
			return;
		}
		for (int k = 0; k < ADMIN_MAX_CLIENTS && c == NULL; k++)
			if (a->clients[k].fd < 0)
				c = &a->clients[k];
		if (c == NULL) {
			log_warnx("admin: %d clients already; refusing one",
				  ADMIN_MAX_CLIENTS);
			refuse(fd);
			continue;
		}
		memset(c, 0, sizeof(*c));
		c->a = a;
		c->fd = fd;
		c->uid = (unsigned)-1;
		c->pid = -1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0) {
			c->uid = cr.uid;
			c->pid = (long)cr.pid;
		}
		ev_io_init(&c->rio, read_cb, fd, EV_READ);
		c->rio.data = c;
		ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
		c->wio.data = c;
		ev_init(&c->idle, idle_cb);
		c->idle.repeat = ADMIN_IDLE_MS / 1000.0;
		c->idle.data = c;
		ev_timer_again(loop, &c->idle);
		log_info("admin: client connected (uid %u, pid %ld)", c->uid,
			 c->pid);
		set_watchers(c);
	}
}

/* ---- server -------------------------------------------------------------- */

struct admin *
admin_new(const struct admin_env *env, int fd)
{
	struct admin *a = util_calloc(1, sizeof(*a));

	a->env = *env;
	a->fd = -1;
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		a->clients[i].fd = -1;
	admin_set_listener(a, fd);
	return a;
}

void
admin_set_listener(struct admin *a, int fd)
{
	if (a->fd >= 0) {
		ev_io_stop(a->env.loop, &a->lio);
		close(a->fd);
	}
	a->fd = fd;
	if (fd < 0)
		return;
	/* Inherited or passed: make sure accept never blocks. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ev_io_init(&a->lio, accept_cb, fd, EV_READ);
	a->lio.data = a;
	ev_io_start(a->env.loop, &a->lio);
	log_info("admin: serving the admin socket");
}

void
admin_free(struct admin *a)
{
	struct admin_pending *p;

	if (a == NULL)
		return;
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		client_close(&a->clients[i], "shutting down");
	/* Replies still due free themselves when they come. */
	for (p = a->pending; p != NULL; p = p->next)
		p->a = NULL;
	admin_set_listener(a, -1);
	free(a);
}
