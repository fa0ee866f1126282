/*
 * worker: a worker process.
 *
 * Accepts on its own SO_REUSEPORT sockets (inherited from the supervisor),
 * owns its connections outright, and drains on TERM: it stops accepting,
 * closes idle connections, lets in-flight requests finish, and exits when
 * the last connection is gone or the drain timeout fires.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "orchd/api.h"
#include "orchd/conn.h"
#include "orchd/deliver.h"
#include "orchd/directory.h"
#include "orchd/proto.h"
#include "orchd/http.h"
#include "orchd/wsconn.h"
#include "orchd/log.h"
#include "orchd/queue.h"
#include "orchd/redis.h"
#include "orchd/tls.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/worker_admin.h"

#define ACCEPT_RETRY_MS 100

static void worker_maybe_exit(struct worker *w);

static void
worker_accept_pause(struct worker *w, const char *why)
{
	if (w->accept_paused)
		return;
	log_warnx("%s: pausing accept: %s", __func__,
		  why);
	w->accept_paused = 1;
	atomic_fetch_add(&w->stats->accept_paused, 1);
	for (int i = 0; i < w->nlisteners; i++)
		ev_io_stop(w->loop, &w->listeners[i].io);
	/* Resume on the first freed descriptor, or after a short wait. */
	ev_timer_set(&w->accept_resume, ACCEPT_RETRY_MS / 1000.0, 0.);
	ev_timer_start(w->loop, &w->accept_resume);
}

static void
worker_accept_resume(struct worker *w)
{
	if (!w->accept_paused || w->draining)
		return;
	w->accept_paused = 0;
	ev_timer_stop(w->loop, &w->accept_resume);
	for (int i = 0; i < w->nlisteners; i++)
		ev_io_start(w->loop, &w->listeners[i].io);
	log_info("%s: accepting again", __func__);
}

static void
accept_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	worker_accept_resume(t->data);
}

static uint64_t
worker_total_active(const struct worker *w)
{
	uint64_t n = 0;

	for (int i = 0; i < CONFIG_MAX_WORKERS; i++)
		n += atomic_load(&w->shm->workers[i].active);
	return n;
}

/*
 * Refuse a connection before any work: a canned JSON answer, written
 * without waiting (it fits any socket buffer), and close.
 */
static void
worker_refuse(int fd, int status, const char *code)
{
	char body[128], buf[512];
	int blen, n;

	blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":\"%s\"}",
			http_status_text(status), code);
	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: application/json\r\n"
		     "Connection: close\r\n"
		     "%s"
		     "Content-Length: %d\r\n\r\n%s",
		     status, http_status_text(status),
		     status == 429 ? "Retry-After: 1\r\n" : "", blen, body);
	(void)send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	/*
	 * Read what the client already sent (TCP_DEFER_ACCEPT means its
	 * request is usually here): closing with unread input would turn our
	 * FIN into an RST that destroys the answer before it is read.
	 */
	for (int i = 0; i < 4; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	(void)shutdown(fd, SHUT_WR);
	close(fd);
}

static void
accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct worker_listener *l = io->data;
	struct worker *w = l->w;

	/* A budget per wakeup keeps one busy listener from starving I/O. */
	for (int i = 0; i < WORKER_ACCEPT_BUDGET; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		struct conn *c;
		int fd;

		fd = accept4(l->fd, (struct sockaddr *)&peer, &plen,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			switch (errno) {
			case EAGAIN:
#if EAGAIN != EWOULDBLOCK
			case EWOULDBLOCK:
#endif
				return;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				worker_accept_pause(w, strerror(errno));
				return;
			default:
				log_warn("%s: accept4", __func__);
				return;
			}
		}
		if (worker_total_active(w) >= w->cfg->max_connections) {
			atomic_fetch_add(&w->stats->full_refused, 1);
			worker_refuse(fd, 503, "MAX_CONNECTIONS");
			continue;
		}
		if (!addrlimit_allow(&w->addrlimit, &peer,
				     (uint64_t)(ev_now(loop) * 1000.0))) {
			atomic_fetch_add(&w->stats->addr_limited, 1);
			worker_refuse(fd, 429, "RATE_LIMITED");
			continue;
		}
		atomic_fetch_add(&w->stats->accepted, 1);
		atomic_fetch_add(&w->stats->active, 1);
		c = conn_new(w, fd, &peer, l->tls);
		if (c != NULL)
			c->admin = l->admin;
	}
}

void
worker_conn_freed(struct worker *w)
{
	atomic_fetch_sub(&w->stats->active, 1);
	atomic_fetch_add(&w->stats->closed, 1);
	worker_accept_resume(w);
}

/* Answer a small JSON body (GET or HEAD). */
static void
send_json(struct conn *c, const struct http_request *req, int status,
	  const char *body, size_t blen)
{
	char resp[2048];
	int n;

	n = http_format_response(resp, sizeof(resp), status, "application/json",
				 NULL, body, blen,
				 req->keep_alive && !c->w->draining,
				 req->method == HTTP_METHOD_HEAD);
	if (n < 0) {
		conn_send_error(c, 500, NULL);
		return;
	}
	conn_send(c, resp, (size_t)n, req->keep_alive);
}

static void
worker_healthz(struct conn *c, const struct http_request *req)
{
	char body[256];
	int blen;

	blen = snprintf(body, sizeof(body),
			"{\"status\":\"ok\",\"workers\":%d,\"worker\":%d,"
			"\"pid\":%ld,\"generation\":%u}\n",
			c->w->cfg->workers, c->w->slot, (long)getpid(),
			c->w->generation);
	send_json(c, req, 200, body, (size_t)blen);
}

/*
 * Ready when the relay is subscribed to Redis: until then no event can
 * reach a daemon; and, with the directory on, when this worker has a
 * connection to the database: until then no daemon can authenticate
 * (under database_failure fail-closed).  The body carries the relay's
 * counters for operators and tests.
 */
static void
worker_readyz(struct conn *c, const struct http_request *req)
{
	const struct shm_relay *r = &c->w->shm->relay;
	int subscribed = atomic_load(&r->subscribed) != 0;
	int dir_on = c->w->dir != NULL;
	int db_up = dir_on && directory_ready(c->w->dir);
	int ready = subscribed && (!dir_on || db_up);
	const char *reason = "";
	char body[1200], dbpart[64] = "";
	int blen;

	if (!subscribed)
		reason = "\"reason\":\"the relay is not subscribed to Redis\",";
	else if (!ready)
		reason = "\"reason\":\"the database is not connected\",";
	if (dir_on)
		snprintf(dbpart, sizeof(dbpart), ",\"database\":{\"ready\":%s}",
			 db_up ? "true" : "false");
	blen = snprintf(
		body, sizeof(body),
		"{\"status\":\"%s\",%s\"relay\":{\"subscribed\":%s,"
		"\"pid\":%d,\"restarts\":%llu,\"received\":%llu,"
		"\"invalid\":%llu,\"routed\":%llu,\"queued\":%llu,"
		"\"evicted\":%llu,\"unqueued\":%llu,\"unrouted\":%llu,"
		"\"dropped\":%llu,\"overflow\":%llu,\"reconnects\":%llu,"
		"\"backlog\":%llu}%s}\n",
		ready ? "ready" : "not ready", reason,
		subscribed ? "true" : "false", atomic_load(&r->pid),
		(unsigned long long)atomic_load(&r->restarts),
		(unsigned long long)atomic_load(&r->received),
		(unsigned long long)atomic_load(&r->invalid),
		(unsigned long long)atomic_load(&r->routed),
		(unsigned long long)atomic_load(&r->queued),
		(unsigned long long)atomic_load(&r->evicted),
		(unsigned long long)atomic_load(&r->unqueued),
		(unsigned long long)atomic_load(&r->unrouted),
		(unsigned long long)atomic_load(&r->dropped),
		(unsigned long long)atomic_load(&r->overflow),
		(unsigned long long)atomic_load(&r->reconnects),
		(unsigned long long)atomic_load(&r->backlog), dbpart);
	send_json(c, req, ready ? 200 : 503, body, (size_t)blen);
}

int
worker_tls_attach(struct worker *w, struct conn *c)
{
	return tls_conn_attach(w->tls_ctx, c);
}

int
worker_wants_body(const struct http_request *req)
{
	char path[1024];

	return http_percent_decode(&req->path, path, sizeof(path), 0) >= 0 &&
	       api_handles(path);
}

void
worker_dispatch_http(struct conn *c, const struct http_request *req)
{
	const struct config *cfg = c->w->cfg;
	const char *extra = NULL;
	char path[1024];
	int status;

	atomic_fetch_add_explicit(&c->w->stats->requests, 1,
				  memory_order_relaxed);
	if (cfg->keepalive_timeout_ms == 0)
		c->keep_alive = 0;
	/* Routes compare decoded paths: "/daemon%2Fws" is "/daemon/ws". */
	if (http_percent_decode(&req->path, path, sizeof(path), 0) < 0) {
		conn_send_error(c, req->path.len >= sizeof(path) ? 414 : 400,
				NULL);
		return;
	}
	if (strcmp(path, cfg->ws_path) == 0 ||
	    (cfg->ws_echo_path != NULL &&
	     strcmp(path, cfg->ws_echo_path) == 0)) {
		enum wsconn_endpoint ep = strcmp(path, cfg->ws_path) == 0
						  ? WSCONN_DAEMON
						  : WSCONN_ECHO;

		if (c->w->draining) {
			conn_send_error(c, 503, NULL);
			return;
		}
		status = wsconn_upgrade(c, req, ep, &extra);
		if (status != 0)
			conn_send_error(c, status, extra);
		return;
	}
	if (api_handles(path)) {
		api_dispatch(c, req, path);
		return;
	}
	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
		if (req->method != HTTP_METHOD_GET &&
		    req->method != HTTP_METHOD_HEAD) {
			conn_send_error(c, 405, "Allow: GET, HEAD\r\n");
			return;
		}
		if (path[1] == 'h')
			worker_healthz(c, req);
		else
			worker_readyz(c, req);
		return;
	}
	if (worker_admin_handles(path)) {
		worker_admin_dispatch(c, req, path);
		return;
	}
	conn_send_error(c, 404, NULL);
}

static void
reaper_cb(struct ev_loop *loop, ev_prepare *chk, int revents)
{
	struct worker *w = chk->data;

	conn_flush_pending(w);
	conn_reap(w);
	if (w->draining)
		worker_maybe_exit(w);
}

static void
worker_maybe_exit(struct worker *w)
{
	if (w->exiting || w->conns != NULL || w->dead != NULL)
		return;
	w->exiting = 1;
	log_info("%s: drained, exiting", __func__);
	ev_break(w->loop, EVBREAK_ALL);
}

/*
 * The drain deadline is near: daemons that did not leave after their
 * reconnect message get a close frame (1001) while there is time for the
 * handshake; the rest is cut at the deadline itself.
 */
static void
drain_close_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	struct conn *c, *next;
	unsigned n = 0;

	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == CONN_WS_OPEN) {
			wsconn_close(c, WS_CLOSE_GOING_AWAY,
				     "server shutting down");
			n++;
		}
	}
	if (n > 0)
		log_info("%s: closing %u connections with 1001", __func__, n);
}

static void
drain_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	struct conn *c, *next;

	log_notice("%s: drain timeout, closing %llu connections", __func__,
		   (unsigned long long)w->nconns);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		conn_close(c, "drain timeout");
	}
	conn_reap(w);
	ev_break(w->loop, EVBREAK_ALL);
}

void
worker_drain(struct worker *w, const char *reason)
{
	const struct config *cfg = w->cfg;
	struct conn *c, *next;
	uint64_t close_at;
	unsigned asked = 0;

	if (w->draining)
		return;
	w->draining = 1;
	log_info("%s: draining %llu connections", __func__,
		 (unsigned long long)w->nconns);
	for (int i = 0; i < w->nlisteners; i++) {
		ev_io_stop(w->loop, &w->listeners[i].io);
		/* The supervisor keeps the socket; only our copy goes. */
		close(w->listeners[i].fd);
		w->listeners[i].fd = -1;
	}
	ev_timer_stop(w->loop, &w->accept_resume);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		conn_account_draining(c);
		if (conn_is_idle(c)) {
			conn_close(c, "draining");
		} else if (c->state == CONN_WS_OPEN) {
			/*
			 * An authenticated daemon is asked to come back after
			 * a random delay, so that a fleet does not return at
			 * once; it is closed (1001) near the deadline if it
			 * stays.  Anything else goes now.
			 */
			uint64_t delay =
				cfg->drain_reconnect_delay_ms > 0
					? arc4random_uniform((uint32_t)(cfg->drain_reconnect_delay_ms + 1))
					: 0;

			if (proto_send_reconnect(c, reason, delay) == 0)
				asked++;
			else
				wsconn_close(c, WS_CLOSE_GOING_AWAY,
					     "server shutting down");
		}
	}
	if (asked > 0)
		log_info("%s: %u daemons asked to reconnect (%s)", __func__,
			 asked, reason);
	/* Room for the close handshake before the deadline. */
	close_at = cfg->drain_timeout_ms > 2000 ? cfg->drain_timeout_ms - 1000
						: cfg->drain_timeout_ms / 2;
	ev_timer_set(&w->drain_close_timer, (double)close_at / 1000., 0.);
	ev_timer_start(w->loop, &w->drain_close_timer);
	ev_timer_set(&w->drain_timer, (double)cfg->drain_timeout_ms / 1000.,
		     0.);
	ev_timer_start(w->loop, &w->drain_timer);
	worker_maybe_exit(w);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
	struct worker *w = s->data;

	switch (s->signum) {
	case SIGTERM:
		worker_drain(w, "shutdown");
		break;
	case SIGUSR2:
		worker_drain(w, "reload");
		break;
	case SIGUSR1:
		log_reopen();
		break;
	}
}

void
worker_run(const struct worker_args *a)
{
	static struct worker wk;
	struct worker *w = &wk;
	char name[32];

	snprintf(name, sizeof(name), "worker %d", a->slot);
	log_set_procname(name);

	memset(w, 0, sizeof(*w));
	w->loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (w->loop == NULL)
		fatalx("%s: ev_default_loop failed", __func__);
	w->cfg = a->cfg;
	w->shm = a->shm;
	w->slot = a->slot;
	w->generation = a->generation;
	w->stats = &a->shm->workers[a->slot];
	atomic_store(&w->stats->pid, (int)getpid());
	atomic_store(&w->stats->generation, a->generation);
	atomic_store(&w->stats->started_ms, util_wall_ms());

	w->scratch_size = w->cfg->http_max_header_size > WORKER_SCRATCH_MIN
				  ? (size_t)w->cfg->http_max_header_size
				  : WORKER_SCRATCH_MIN;
	w->scratch = util_malloc(w->scratch_size);
	w->tls_ctx = a->tls_ctx;
	w->keyring = a->keyring;
	w->registry = a->registry;
	/*
	 * Connection ids are "<slot>:<conn_id>" to operators; during an
	 * operator's drain the old and the new worker of a slot share the
	 * generation, so the sequence starts from the pid to keep them apart
	 * (unless the pids agree mod 256); 2^32 connections fit before the
	 * sequence nears the generation's bits.
	 */
	w->conn_seq = (uint64_t)(getpid() & 0xff) << 32;
	/* The process name already prefixes every line. */
	w->redis = redis_new(w->loop, &w->cfg->redis, w->cfg->redis_timeout_ms,
			     "redis");
	w->queue = queue_new(w->redis, w->cfg->queue_max_events,
			     w->cfg->queue_retention_ms / 1000);
	w->deliver = deliver_new(w, a->relay_fd, a->ctl_fd);
	w->dir = directory_new(w); /* NULL: no database configured */
	addrlimit_init(&w->addrlimit, w->cfg->connection_rate_per_address,
		       w->cfg->workers);
	{
		uint64_t seed = util_now_ms() ^ ((uint64_t)getpid() << 40);

		/* The seed only spreads the sets; a weak one is no hole. */
		if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1)
			ERR_clear_error();
		authlimit_init(&w->authlimit, w->cfg->auth_failure_limit,
			       w->cfg->auth_failure_window_ms, seed);
	}
	pmd_config_default(&w->pmdcfg);
	w->pmdcfg.enabled = w->cfg->ws_compression;
	w->pmdcfg.level = (int)w->cfg->ws_compression_level;

	for (int i = 0; i < a->nfds; i++) {
		struct worker_listener *l = &w->listeners[i];

		l->fd = a->fds[i];
		l->tls = a->tls[i];
		l->admin = a->admin[i];
		l->w = w;
		ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
		l->io.data = l;
		ev_io_start(w->loop, &l->io);
	}
	w->nlisteners = a->nfds;

	ev_init(&w->accept_resume, accept_resume_cb);
	w->accept_resume.data = w;
	ev_init(&w->drain_timer, drain_timeout_cb);
	w->drain_timer.data = w;
	ev_init(&w->drain_close_timer, drain_close_cb);
	w->drain_close_timer.data = w;
	ev_prepare_init(&w->reaper, reaper_cb);
	w->reaper.data = w;
	ev_prepare_start(w->loop, &w->reaper);

	ev_signal_init(&w->sig_term, signal_cb, SIGTERM);
	ev_signal_init(&w->sig_usr1, signal_cb, SIGUSR1);
	ev_signal_init(&w->sig_usr2, signal_cb, SIGUSR2);
	w->sig_term.data = w->sig_usr1.data = w->sig_usr2.data = w;
	ev_signal_start(w->loop, &w->sig_usr2);
	ev_signal_start(w->loop, &w->sig_term);
	/*
	 * Ctrl-C and QUIT reach the whole process group: only the supervisor
	 * acts on them (it drains us with TERM), so stops stay orderly.
	 */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	ev_signal_start(w->loop, &w->sig_usr1);

	log_info("%s: started (generation %u), %d listeners", __func__,
		 w->generation, w->nlisteners);
	ev_run(w->loop, 0);
	directory_free(w->dir);
	deliver_free(w->deliver);
	queue_free(w->queue);
	redis_free(w->redis);
	exit(0);
}
