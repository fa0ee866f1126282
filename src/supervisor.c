/*
 * supervisor: the master process.
 *
 * Signal handlers only set flags; the main loop sleeps in ppoll() with the
 * handled signals unblocked only there, so a flag is never missed and no
 * work ever runs inside a handler.  The same ppoll() watches the relay's
 * control socket, on which the relay reports an operator's drain (admin.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orchd/admin.h"
#include "orchd/auth.h"
#include "orchd/jwt.h"
#include "orchd/listener.h"
#include "orchd/registry.h"
#include "orchd/relay.h"
#include "orchd/log.h"
#include "orchd/notify.h"
#include "orchd/shm.h"
#include "orchd/supervisor.h"
#include "orchd/tls.h"
#include "orchd/util.h"
#include "orchd/worker.h"

#define MAX_PROCS (CONFIG_MAX_WORKERS * 4)

struct proc {
	pid_t pid; /* 0: free entry */
	int slot;
	unsigned generation;
	int old;           /* replaced by a reload, draining */
	int relay;         /* the relay, not a worker (slot -1) */
	int pipe_w;        /* write end of a worker's event pipe, or -1 */
	int ctl_w;         /* our end of a worker's control socket, or -1 */
	uint64_t kill_at;  /* monotonic ms; 0 = none */
	uint64_t started;  /* monotonic ms */
};

struct slot {
	pid_t pid;           /* current worker, 0 if none */
	uint64_t respawn_at; /* monotonic ms, when pid == 0 */
	unsigned backoff_ms;
	int disabled; /* exited with 2: not respawned */
};

static struct {
	struct config *cfg;
	const struct supervisor_opts *opts;
	char *pidfile;
	struct listener_set ls;
	struct shm_segment *shm;
	void *tls_ctx; /* SSL_CTX * for tls listeners, NULL without */
	struct jwt_keyring *keyring;
	struct registry *registry;
	void *registry_mem;
	size_t registry_len;
	unsigned generation;
	/* The relay: its control socket, respawn and drain bookkeeping. */
	int relay_ctl;        /* our end, -1 when no relay runs */
	pid_t relay_pid;
	uint64_t relay_respawn_at;
	unsigned relay_backoff_ms;
	unsigned relay_starts;
	int relay_stop_sent;
	int relay_ctl_eof; /* the relay closed its end: stop polling it */
	/* The admin socket (admin.h): we keep it for the next relay. */
	int admin_fd; /* -1: none */
	char *admin_path;
	unsigned admin_mode;
	ino_t admin_ino;
	struct proc procs[MAX_PROCS];
	struct slot slots[CONFIG_MAX_WORKERS];
	int stopping;
	int exit_code;
	/* READY=1 is owed to systemd once the current workers run. */
	int ready_pending;
	uint64_t status_at; /* monotonic ms of the next STATUS= refresh */
	char status[NOTIFY_STATUS_MAX]; /* the last STATUS= sent */
	uint64_t stop_deadline;
	pid_t pid;
} sv;

static volatile sig_atomic_t got_term, got_hup, got_usr1, got_chld;

static void
sig_handler(int sig)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
		got_term = 1;
		break;
	case SIGHUP:
		got_hup = 1;
		break;
	case SIGUSR1:
		got_usr1 = 1;
		break;
	case SIGCHLD:
		got_chld = 1;
		break;
	}
}

static const int handled_signals[] = {SIGTERM, SIGINT, SIGQUIT,
				      SIGHUP,  SIGUSR1, SIGCHLD};

static void
signals_setup(sigset_t *waitmask)
{
	struct sigaction sa;
	sigset_t block;

	sigemptyset(&block);
	for (size_t i = 0; i < UTIL_NELEM(handled_signals); i++)
		sigaddset(&block, handled_signals[i]);
	if (sigprocmask(SIG_BLOCK, &block, waitmask) == -1)
		fatal("%s: sigprocmask", __func__);
	for (size_t i = 0; i < UTIL_NELEM(handled_signals); i++)
		sigdelset(waitmask, handled_signals[i]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_handler;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < UTIL_NELEM(handled_signals); i++)
		if (sigaction(handled_signals[i], &sa, NULL) == -1)
			fatal("%s: sigaction", __func__);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* In a child: back to default dispositions and an empty mask. */
static void
signals_reset(void)
{
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < UTIL_NELEM(handled_signals); i++)
		sigaction(handled_signals[i], &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL); /* reload is the supervisor's business */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Resolve the unprivileged identity; 0 ok, -1 (logged) on error. */
static int
resolve_user(const struct config *cfg, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;
	struct group *gr;

	if ((pw = getpwnam(cfg->user)) == NULL) {
		log_warnx("%s: unknown user \"%s\"", __func__, cfg->user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (cfg->group != NULL) {
		if ((gr = getgrnam(cfg->group)) == NULL) {
			log_warnx("%s: unknown group \"%s\"", __func__,
				  cfg->group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

/* Drop root in a child; the supervisor keeps it for binds on reload. */
static int
drop_privileges(const struct config *cfg)
{
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0 || cfg->user == NULL)
		return 0;
	if (resolve_user(cfg, &uid, &gid) == -1)
		return -1;
	if (setgroups(1, &gid) == -1) {
		log_warn("%s: setgroups", __func__);
		return -1;
	}
	if (setresgid(gid, gid, gid) == -1) {
		log_warn("%s: setresgid %u", __func__, (unsigned)gid);
		return -1;
	}
	if (setresuid(uid, uid, uid) == -1) {
		log_warn("%s: setresuid %u", __func__, (unsigned)uid);
		return -1;
	}
	/* setresuid resets it; children die with us. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	return 0;
}

static struct proc *
proc_alloc(void)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (sv.procs[i].pid == 0)
			return &sv.procs[i];
	return NULL;
}

static struct proc *
proc_find(pid_t pid)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (sv.procs[i].pid == pid)
			return &sv.procs[i];
	return NULL;
}

static int
nprocs(void)
{
	int n = 0;

	for (int i = 0; i < MAX_PROCS; i++)
		n += sv.procs[i].pid != 0;
	return n;
}

static int
nworkers_alive(void)
{
	int n = 0;

	for (int i = 0; i < MAX_PROCS; i++)
		n += sv.procs[i].pid != 0 && !sv.procs[i].relay;
	return n;
}

/* In a child: the event pipes' write ends belong to the relay alone. */
static void
close_pipe_ends(void)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		if (sv.procs[i].pid == 0)
			continue;
		if (sv.procs[i].pipe_w >= 0)
			close(sv.procs[i].pipe_w);
		if (sv.procs[i].ctl_w >= 0)
			close(sv.procs[i].ctl_w);
	}
	if (sv.relay_ctl >= 0)
		close(sv.relay_ctl);
}

static void
relay_send_pipe(const struct proc *p)
{
	struct relay_ctl m;

	if (sv.relay_ctl < 0 || p->pipe_w < 0)
		return;
	memset(&m, 0, sizeof(m));
	m.type = RELAY_CTL_ADD;
	m.slot = p->slot;
	m.pid = p->pid;
	m.generation = p->generation;
	relay_ctl_send(sv.relay_ctl, &m, p->pipe_w);
}

static void
spawn_relay(void)
{
	struct relay_args args;
	struct proc *p = proc_alloc();
	int sp[2];
	pid_t pid;

	sv.relay_respawn_at = util_now_ms() + 1000; /* if this fails */
	if (p == NULL) {
		log_warnx("%s: process table full, relay not started",
			  __func__);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("%s: socketpair", __func__);
		return;
	}
	memset(&args, 0, sizeof(args));
	args.cfg = sv.cfg;
	args.shm = sv.shm;
	args.registry = sv.registry;
	args.ctl_fd = sp[1];
	args.admin_fd = sv.admin_fd;
	args.generation = ++sv.relay_starts;
	pid = fork();
	if (pid == -1) {
		log_warn("%s: fork", __func__);
		close(sp[0]);
		close(sp[1]);
		return;
	}
	if (pid == 0) {
		signals_reset();
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != sv.pid)
			_exit(0);
		close(sp[0]);
		close_pipe_ends();
		listener_set_close(&sv.ls);
		if (drop_privileges(sv.cfg) == -1)
			_exit(2);
		relay_run(&args);
	}
	close(sp[1]);
	if (sv.relay_ctl >= 0)
		close(sv.relay_ctl);
	sv.relay_ctl = sp[0];
	sv.relay_ctl_eof = 0;
	sv.relay_pid = pid;
	sv.relay_stop_sent = 0;
	p->pid = pid;
	p->slot = -1;
	p->relay = 1;
	p->pipe_w = -1;
	p->ctl_w = -1;
	p->generation = sv.relay_starts;
	p->old = 0;
	p->kill_at = 0;
	p->started = util_now_ms();
	log_info("%s: relay started, pid %ld", __func__, (long)pid);
	/*
	 * Every worker alive gets a fresh pipe to this relay: the old one may
	 * end in a frame the dead relay left half written, which the worker
	 * discards when it reads that pipe's end.
	 */
	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *w = &sv.procs[i];
		struct relay_ctl m;
		int ep[2];

		if (w->pid == 0 || w->relay)
			continue;
		if (w->ctl_w >= 0 && pipe2(ep, O_CLOEXEC) == 0) {
			memset(&m, 0, sizeof(m));
			m.type = RELAY_CTL_ADD;
			m.slot = w->slot;
			m.pid = w->pid;
			if (relay_ctl_send(w->ctl_w, &m, ep[0]) == 0) {
				if (w->pipe_w >= 0)
					close(w->pipe_w);
				w->pipe_w = ep[1];
			} else {
				close(ep[1]);
			}
			close(ep[0]);
		}
		relay_send_pipe(w);
	}
}

static void
spawn_worker(int slot)
{
	struct worker_args args;
	struct proc *p = proc_alloc();
	int ep[2], wp[2];
	pid_t pid;

	if (p == NULL) {
		log_warnx("%s: process table full, slot %d not started",
			  __func__, slot);
		sv.slots[slot].respawn_at = util_now_ms() + 1000;
		return;
	}
	/* A fresh pipe per worker process: a restart never inherits junk. */
	if (pipe2(ep, O_CLOEXEC) == -1) {
		log_warn("%s: pipe2", __func__);
		sv.slots[slot].respawn_at = util_now_ms() + 1000;
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, wp) == -1) {
		log_warn("%s: socketpair", __func__);
		close(ep[0]);
		close(ep[1]);
		sv.slots[slot].respawn_at = util_now_ms() + 1000;
		return;
	}
	memset(&args, 0, sizeof(args));
	args.cfg = sv.cfg;
	args.shm = sv.shm;
	args.slot = slot;
	args.generation = sv.generation;
	for (int i = 0; i < sv.ls.n; i++) {
		args.fds[i] = sv.ls.l[i].fds[slot];
		args.tls[i] = sv.ls.l[i].addr.tls;
		args.admin[i] = sv.ls.l[i].addr.admin;
	}
	args.nfds = sv.ls.n;
	args.tls_ctx = sv.tls_ctx;
	args.keyring = sv.keyring;
	args.registry = sv.registry;
	args.relay_fd = ep[0];
	args.ctl_fd = wp[1];

	pid = fork();
	if (pid == -1) {
		log_warn("%s: fork", __func__);
		close(ep[0]);
		close(ep[1]);
		close(wp[0]);
		close(wp[1]);
		sv.slots[slot].respawn_at = util_now_ms() + 1000;
		return;
	}
	if (pid == 0) {
		signals_reset();
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != sv.pid)
			_exit(0); /* the supervisor died before we got here */
		/* Keep only this slot's sockets. */
		for (int i = 0; i < sv.ls.n; i++)
			for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
				if (s != slot && sv.ls.l[i].fds[s] != -1)
					close(sv.ls.l[i].fds[s]);
		close(ep[1]);
		close(wp[0]);
		close_pipe_ends();
		/* Only the relay serves the admin socket. */
		if (sv.admin_fd >= 0)
			close(sv.admin_fd);
		if (drop_privileges(sv.cfg) == -1)
			_exit(2); /* fatal configuration: not respawned */
		worker_run(&args);
	}
	close(ep[0]);
	close(wp[1]);
	p->ctl_w = wp[0];
	p->pid = pid;
	p->slot = slot;
	p->relay = 0;
	p->pipe_w = ep[1];
	p->generation = sv.generation;
	p->old = 0;
	p->kill_at = 0;
	p->started = util_now_ms();
	sv.slots[slot].pid = pid;
	log_info("%s: worker %d started, pid %ld, generation %u", __func__,
		 slot, (long)pid, sv.generation);
	relay_send_pipe(p);
}

static void
signal_all(int sig)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (sv.procs[i].pid != 0 && kill(sv.procs[i].pid, sig) == -1 &&
		    errno != ESRCH)
			log_warn("%s: kill %ld", __func__,
				 (long)sv.procs[i].pid);
}

static void
reap_relay(struct proc *p, int status)
{
	uint64_t now = util_now_ms(), up = now - p->started;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

	if (WIFSIGNALED(status))
		log_warnx("%s: relay (pid %ld) killed by signal %d", __func__,
			  (long)p->pid, WTERMSIG(status));
	else if (code != 0 || !sv.stopping)
		log_info("%s: relay (pid %ld) exited with %d", __func__,
			 (long)p->pid, code);
	if (sv.relay_pid == p->pid) {
		sv.relay_pid = 0;
		if (sv.relay_ctl >= 0)
			close(sv.relay_ctl);
		sv.relay_ctl = -1;
		if (p->old || up >= SUPERVISOR_STABLE_MS)
			sv.relay_backoff_ms = 0; /* replaced on purpose, or ran well */
		else if (sv.relay_backoff_ms == 0)
			sv.relay_backoff_ms = SUPERVISOR_BACKOFF_MIN_MS;
		else if (sv.relay_backoff_ms < SUPERVISOR_BACKOFF_MAX_MS / 2)
			sv.relay_backoff_ms *= 2;
		else
			sv.relay_backoff_ms = SUPERVISOR_BACKOFF_MAX_MS;
		sv.relay_respawn_at = now + sv.relay_backoff_ms;
		if (!sv.stopping) {
			atomic_fetch_add(&sv.shm->relay.restarts, 1);
			if (sv.relay_backoff_ms > 0)
				log_notice("%s: respawning the relay in %u ms",
					   __func__, sv.relay_backoff_ms);
		}
		atomic_store(&sv.shm->relay.subscribed, 0);
	}
	{
		int expect = (int)p->pid; /* as for workers: no dead pid */

		atomic_compare_exchange_strong(&sv.shm->relay.pid, &expect, 0);
	}
	memset(p, 0, sizeof(*p));
}

static void
reap_children(void)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct proc *p = proc_find(pid);
		struct slot *s;
		uint64_t now = util_now_ms(), up;
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

		if (p == NULL)
			continue;
		if (p->relay) {
			reap_relay(p, status);
			continue;
		}
		if (p->ctl_w >= 0) {
			close(p->ctl_w);
			p->ctl_w = -1;
		}
		if (p->pipe_w >= 0) {
			struct relay_ctl m;

			close(p->pipe_w);
			p->pipe_w = -1;
			memset(&m, 0, sizeof(m));
			m.type = RELAY_CTL_DEL;
			m.slot = p->slot;
			m.pid = pid;
			if (sv.relay_ctl >= 0)
				relay_ctl_send(sv.relay_ctl, &m, -1);
		}
		/* Whatever the child held in the registry is free again. */
		if (sv.registry != NULL) {
			unsigned n = registry_reap_worker(
				sv.registry, (unsigned)p->slot, pid);

			if (n > 0)
				log_info("%s: freed %u registry slots of "
					 "worker %d (pid %ld)",
					 __func__, n, p->slot, (long)pid);
		}
		if (WIFSIGNALED(status))
			log_warnx("%s: worker %d (pid %ld) killed by signal %d",
				  __func__, p->slot, (long)pid,
				  WTERMSIG(status));
		else if (code != 0 || !p->old)
			log_info("%s: worker %d (pid %ld) exited with %d",
				 __func__, p->slot, (long)pid, code);
		/*
		 * A worker that did not drain may have died holding gauges
		 * (shm.h); with no other process of its slot alive, what is
		 * left in them is its share only.
		 */
		{
			/* /stats must not name a dead process as the slot's. */
			int expect = (int)pid;

			atomic_compare_exchange_strong(
			    &sv.shm->workers[p->slot].pid, &expect, 0);
		}
		if (WIFSIGNALED(status) || code != 0) {
			int others = 0;

			for (int i = 0; i < MAX_PROCS; i++)
				if (&sv.procs[i] != p && sv.procs[i].pid != 0 &&
				    !sv.procs[i].relay &&
				    sv.procs[i].slot == p->slot)
					others = 1;
			if (!others)
				shm_worker_reset_gauges(
				    &sv.shm->workers[p->slot]);
		}
		up = now - p->started;
		s = &sv.slots[p->slot];
		if (!p->old && s->pid == pid) {
			s->pid = 0;
			if (code == 2) {
				log_warnx("%s: worker %d failed with a fatal "
					  "configuration error; not respawning",
					  __func__, p->slot);
				s->disabled = 1;
			} else if (!sv.stopping) {
				/*
				 * Exit 0 is a finished drain (an operator's,
				 * admin.h), not a crash: refill the slot at
				 * once, whatever the uptime.
				 */
				if (up >= SUPERVISOR_STABLE_MS || code == 0)
					s->backoff_ms = 0;
				else if (s->backoff_ms == 0)
					s->backoff_ms = SUPERVISOR_BACKOFF_MIN_MS;
				else if (s->backoff_ms <
					 SUPERVISOR_BACKOFF_MAX_MS / 2)
					s->backoff_ms *= 2;
				else
					s->backoff_ms = SUPERVISOR_BACKOFF_MAX_MS;
				s->respawn_at = now + s->backoff_ms;
				atomic_fetch_add(&sv.shm->workers[p->slot].restarts,
						 1);
				if (s->backoff_ms > 0)
					log_notice("%s: respawning worker %d in "
						   "%u ms",
						   __func__, p->slot,
						   s->backoff_ms);
			}
		}
		memset(p, 0, sizeof(*p));
	}
}

static void
pidfile_remove(void)
{
	if (sv.pidfile != NULL && unlink(sv.pidfile) == -1 && errno != ENOENT)
		log_warn("%s: unlink %s", __func__, sv.pidfile);
}

/* Refuse to start over a live orchd: SO_REUSEPORT would let us share. */
static int
pidfile_check(const char *path)
{
	char buf[32];
	ssize_t n;
	long pid;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) == 0) {
		log_warnx("%s: orchd is already running with pid %ld (%s)",
			  __func__, pid, path);
		return -1;
	}
	return 0;
}

static int
pidfile_write(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1) {
		log_warn("%s: open %s", __func__, path);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		log_warn("%s: write %s", __func__, path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static const char *
effective_pidfile(const struct config *cfg)
{
	return sv.opts->pidfile != NULL ? sv.opts->pidfile : cfg->pidfile;
}

static int
log_apply(const struct config *cfg)
{
	enum log_dest d = cfg->log_target == CONFIG_LOG_FILE ? LOG_DEST_FILE
			  : cfg->log_target == CONFIG_LOG_STDERR
				  ? LOG_DEST_STDERR
				  : LOG_DEST_SYSLOG;
	uid_t uid;
	gid_t gid;

	if (log_configure(d, cfg->log_file, cfg->log_level) == -1)
		return -1;
	/* Workers reopen the file on USR1 after they dropped root. */
	if (geteuid() == 0 && cfg->user != NULL &&
	    resolve_user(cfg, &uid, &gid) == 0)
		log_chown(uid, gid);
	return 0;
}

static void
log_config_error(void *arg, const char *msg)
{
	log_warnx("reload: %s", msg);
}

/* ---- the admin socket -------------------------------------------------- */

static void
admin_close(void)
{
	if (sv.admin_fd < 0)
		return;
	close(sv.admin_fd);
	sv.admin_fd = -1;
	admin_unlink(sv.admin_path, sv.admin_ino);
	UTIL_FREE(sv.admin_path);
}

static int
admin_open(const struct config *cfg)
{
	ino_t ino;
	int fd;

	if (cfg->admin_socket == NULL)
		return 0;
	if ((fd = admin_listen(cfg->admin_socket, cfg->admin_socket_mode,
			       &ino)) == -1)
		return -1;
	sv.admin_fd = fd;
	sv.admin_path = util_strdup(cfg->admin_socket);
	sv.admin_mode = cfg->admin_socket_mode;
	sv.admin_ino = ino;
	log_info("%s: admin socket %s (mode %04o)", __func__, sv.admin_path,
		 sv.admin_mode);
	return 0;
}

/*
 * Reload: a new path makes a new socket (the old one goes once the new one
 * is there; if it cannot be made, the old one stays); a new mode is a
 * chmod.  The relay gets the new descriptor on its control socket.
 */
static void
admin_reload(const struct config *ncfg)
{
	const char *np = ncfg->admin_socket;
	int oldfd = sv.admin_fd;
	struct relay_ctl m;

	if (np != NULL && sv.admin_path != NULL &&
	    strcmp(np, sv.admin_path) == 0) {
		if (ncfg->admin_socket_mode != sv.admin_mode) {
			if (chmod(sv.admin_path,
				  (mode_t)ncfg->admin_socket_mode) == -1)
				log_warn("%s: chmod %s", __func__,
					 sv.admin_path);
			else
				sv.admin_mode = ncfg->admin_socket_mode;
		}
		return;
	}
	if (np == NULL && oldfd < 0)
		return;
	if (np != NULL) {
		char *opath = sv.admin_path;
		ino_t oino = sv.admin_ino;

		sv.admin_path = NULL;
		if (admin_open(ncfg) == -1) {
			log_warnx("%s: keeping the admin socket %s", __func__,
				  opath != NULL ? opath : "(none)");
			sv.admin_fd = oldfd;
			sv.admin_path = opath;
			return;
		}
		if (oldfd >= 0) {
			close(oldfd);
			admin_unlink(opath, oino);
		}
		free(opath);
	} else {
		admin_close();
		log_info("%s: admin socket removed", __func__);
	}
	if (sv.relay_ctl >= 0) {
		memset(&m, 0, sizeof(m));
		m.type = RELAY_CTL_ADMIN;
		relay_ctl_send(sv.relay_ctl, &m, sv.admin_fd);
	}
}

/*
 * The relay says an operator drains a worker: it is the old one of its
 * slot now, and the slot is refilled at once (the two share the listening
 * sockets, as on reload).
 */
static void
relay_ctl_read(void)
{
	struct relay_ctl m;
	ssize_t n;
	int fd;

	while ((n = relay_ctl_recv(sv.relay_ctl, &m, &fd)) != 0) {
		uint64_t now = util_now_ms();
		struct proc *p;

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("%s: recvmsg", __func__);
			if (errno == EBADMSG)
				continue;
			return;
		}
		if (fd >= 0)
			close(fd);
		if (m.type != RELAY_CTL_DRAIN) {
			log_warnx("%s: unexpected message %d from the relay",
				  __func__, m.type);
			continue;
		}
		p = proc_find(m.pid);
		if (p == NULL || p->relay || p->old || p->slot != m.slot ||
		    sv.stopping)
			continue;
		p->old = 1;
		p->kill_at =
		    now + sv.cfg->drain_timeout_ms + SUPERVISOR_KILL_GRACE_MS;
		sv.slots[p->slot].pid = 0;
		sv.slots[p->slot].respawn_at = 0;
		sv.slots[p->slot].backoff_ms = 0;
		log_notice("%s: worker %d (pid %ld) drains on an operator's "
			   "request; starting its successor",
			   __func__, p->slot, (long)p->pid);
	}
	sv.relay_ctl_eof = 1; /* the relay is gone; the reaper follows */
}

static void
start_slots(void)
{
	uint64_t now = util_now_ms();

	if (sv.relay_pid == 0 && now >= sv.relay_respawn_at)
		spawn_relay();

	for (int s = 0; s < sv.cfg->workers; s++)
		if (sv.slots[s].pid == 0 && !sv.slots[s].disabled &&
		    now >= sv.slots[s].respawn_at)
			spawn_worker(s);
}

/* 0: a new generation is starting; -1: the old one keeps running. */
static int
reload(void)
{
	struct config *ncfg = config_new();
	struct listener_set nls;
	void *ntls = NULL;
	struct jwt_keyring *nkr = NULL;
	const char *path = sv.opts->conffile;
	int nerr;
	uint64_t now = util_now_ms();

	log_notice("%s: reloading %s", __func__, path);
	nerr = config_load(ncfg, path, log_config_error, NULL);
	if (nerr > 0) {
		log_warnx("%s: %d error(s) in %s; keeping the running "
			  "configuration",
			  __func__, nerr, path);
		config_free(ncfg);
		return -1;
	}
	/* Certificates are re-read on every reload (renewals). */
	if (tls_needed(ncfg) && (ntls = tls_ctx_new(ncfg)) == NULL) {
		log_warnx("%s: cannot load the TLS certificate; keeping the "
			  "running configuration",
			  __func__);
		config_free(ncfg);
		return -1;
	}
	if (auth_keyring_load(ncfg, &nkr) == -1) {
		log_warnx("%s: cannot load the token keys; keeping the running "
			  "configuration",
			  __func__);
		tls_ctx_free(ntls);
		config_free(ncfg);
		return -1;
	}
	if (listener_set_build(&nls, &sv.ls, ncfg) == -1) {
		jwt_keyring_free(nkr);
		tls_ctx_free(ntls);
		log_warnx("%s: cannot open the new listeners; keeping the "
			  "running configuration",
			  __func__);
		config_free(ncfg);
		return -1;
	}
	if (log_apply(ncfg) == -1)
		log_warnx("%s: cannot apply the new log setting; keeping the "
			  "old one",
			  __func__);
	admin_reload(ncfg);
	/* An operator's log level lasts until the reload. */
	if (sv.relay_ctl >= 0) {
		struct relay_ctl m;

		memset(&m, 0, sizeof(m));
		m.type = RELAY_CTL_LOGLEVEL;
		m.arg = ncfg->log_level;
		relay_ctl_send(sv.relay_ctl, &m, -1);
	}
	if (sv.opts->pidfile == NULL &&
	    strcmp(ncfg->pidfile, sv.cfg->pidfile) != 0) {
		pidfile_remove();
		free(sv.pidfile);
		sv.pidfile = util_strdup(ncfg->pidfile);
		if (pidfile_write(sv.pidfile) == -1)
			UTIL_FREE(sv.pidfile);
	}

	/*
	 * Old workers drain while new ones start on the same sockets: a
	 * connection queued on a socket is accepted by whichever process
	 * calls accept first, so none is refused.
	 */
	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *p = &sv.procs[i];

		if (p->pid == 0 || p->old)
			continue;
		if (p->relay) {
			/* Replaced only when what it uses changed. */
			if (relay_config_changed(sv.cfg, ncfg)) {
				p->old = 1;
				p->kill_at = now + SUPERVISOR_KILL_GRACE_MS;
			}
			continue;
		}
		p->old = 1;
		p->kill_at = now + ncfg->drain_timeout_ms +
			     SUPERVISOR_KILL_GRACE_MS;
	}
	/* Old workers keep their (reference-counted) copy until they exit. */
	tls_ctx_free(sv.tls_ctx);
	sv.tls_ctx = ntls;
	jwt_keyring_free(sv.keyring);
	sv.keyring = nkr;
	if (ncfg->max_connections != sv.cfg->max_connections)
		log_warnx("%s: max_connections changes take effect at the next "
			  "restart (the registry keeps %u slots)",
			  __func__, sv.cfg->max_connections);
	listener_set_close(&sv.ls); /* only what nls did not take over */
	sv.ls = nls;
	config_free(sv.cfg);
	sv.cfg = ncfg;
	sv.generation++;
	atomic_store(&sv.shm->generation, sv.generation);
	atomic_store(&sv.shm->nworkers, (unsigned)ncfg->workers);
	for (int s = 0; s < CONFIG_MAX_WORKERS; s++) {
		sv.slots[s].pid = 0;
		sv.slots[s].respawn_at = 0;
		sv.slots[s].backoff_ms = 0;
		sv.slots[s].disabled = 0;
	}
	start_slots();
	/*
	 * Old workers drain with reason "reload" (USR2); a relay whose
	 * configuration changed stops, and the reaper starts the new one at
	 * once (pub/sub records published in between are lost to it).
	 */
	for (int i = 0; i < MAX_PROCS; i++)
		if (sv.procs[i].pid != 0 && sv.procs[i].old)
			kill(sv.procs[i].pid,
			     sv.procs[i].relay ? SIGTERM : SIGUSR2);
	log_notice("%s: generation %u running with %d workers", __func__,
		   sv.generation, ncfg->workers);
	return 0;
}

/* How often STATUS= is refreshed for systemd (when it changed). */
#define SUPERVISOR_STATUS_MS 10000
/* How often, while READY=1 is owed, the workers are looked at. */
#define SUPERVISOR_READY_POLL_MS 20

/*
 * True when every enabled slot of the current generation has a worker that
 * reached worker_run(): it stores its pid in its counter block just before
 * it starts accepting (the listening sockets queue connections until then).
 * Slots disabled by a fatal error do not count; the relay does not either,
 * so a Redis that is down never holds a start up (see /readyz for that).
 */
static int
workers_up(void)
{
	int n = 0;

	for (int s = 0; s < sv.cfg->workers; s++) {
		pid_t pid = sv.slots[s].pid;

		if (sv.slots[s].disabled)
			continue;
		if (pid == 0 || atomic_load(&sv.shm->workers[s].pid) != (int)pid)
			return 0;
		n++;
	}
	return n > 0;
}

/* The one-line summary systemctl status shows. */
static void
status_text(char *buf, size_t len, const char *prefix)
{
	unsigned long long open = 0;

	for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
		open += atomic_load(&sv.shm->workers[s].active);
	snprintf(buf, len, "%sgeneration %u, workers %d, connections %llu",
		 prefix, sv.generation, sv.cfg->workers, open);
}

/* READY=1 once the workers run; then a STATUS= line now and then. */
static void
notify_progress(void)
{
	char text[NOTIFY_STATUS_MAX];
	uint64_t now;

	if (!notify_enabled() || sv.stopping)
		return;
	now = util_now_ms();
	if (sv.ready_pending) {
		if (!workers_up())
			return;
		sv.ready_pending = 0;
		status_text(text, sizeof(text), "ready: ");
		notify_ready(text);
		sv.status_at = now + SUPERVISOR_STATUS_MS;
		return;
	}
	if (now >= sv.status_at) {
		status_text(text, sizeof(text), "");
		if (strcmp(text, sv.status) != 0) {
			notify_status(text);
			memcpy(sv.status, text, sizeof(sv.status));
		}
		sv.status_at = now + SUPERVISOR_STATUS_MS;
	}
}

/*
 * HUP: RELOADING=1, then READY=1 when the new workers run, or at once if the
 * reload was refused: systemd waits for a READY=1 either way.
 */
static void
reload_notified(void)
{
	char text[NOTIFY_STATUS_MAX];

	notify_reloading("reloading the configuration");
	if (reload() == 0) {
		sv.ready_pending = 1;
		return;
	}
	status_text(text, sizeof(text),
		    "reload refused (see the log), still running ");
	if (sv.ready_pending)
		notify_status(text);
	else
		notify_ready(text);
}

static void
begin_stop(void)
{
	char text[NOTIFY_STATUS_MAX];

	if (sv.stopping)
		return;
	sv.stopping = 1;
	sv.ready_pending = 0;
	sv.stop_deadline =
		util_now_ms() + sv.cfg->drain_timeout_ms + SUPERVISOR_KILL_GRACE_MS / 2;
	snprintf(text, sizeof(text), "stopping: draining for up to %llu ms",
		 (unsigned long long)sv.cfg->drain_timeout_ms);
	notify_stopping(text);
	log_notice("%s: stopping, draining for up to %llu ms", __func__,
		   (unsigned long long)sv.cfg->drain_timeout_ms);
	/* The relay goes last: draining workers still deliver events. */
	for (int i = 0; i < MAX_PROCS; i++)
		if (sv.procs[i].pid != 0 && !sv.procs[i].relay &&
		    kill(sv.procs[i].pid, SIGTERM) == -1 && errno != ESRCH)
			log_warn("%s: kill %ld", __func__,
				 (long)sv.procs[i].pid);
}

static void
reopen_logs(void)
{
	log_info("%s: reopening log", __func__);
	log_reopen();
	if (geteuid() == 0 && sv.cfg->user != NULL) {
		uid_t uid;
		gid_t gid;

		if (resolve_user(sv.cfg, &uid, &gid) == 0)
			log_chown(uid, gid);
	}
	signal_all(SIGUSR1);
}

static int64_t
next_timeout_ms(void)
{
	uint64_t now = util_now_ms(), next = now + 1000;

	if (sv.stopping && sv.stop_deadline < next)
		next = sv.stop_deadline;
	if (notify_enabled() && !sv.stopping) {
		if (sv.ready_pending && now + SUPERVISOR_READY_POLL_MS < next)
			next = now + SUPERVISOR_READY_POLL_MS;
		if (!sv.ready_pending && sv.status_at < next)
			next = sv.status_at;
	}
	if (!sv.stopping && sv.relay_pid == 0 && sv.relay_respawn_at < next)
		next = sv.relay_respawn_at;
	for (int s = 0; !sv.stopping && s < sv.cfg->workers; s++)
		if (sv.slots[s].pid == 0 && !sv.slots[s].disabled &&
		    sv.slots[s].respawn_at < next)
			next = sv.slots[s].respawn_at;
	for (int i = 0; i < MAX_PROCS; i++)
		if (sv.procs[i].pid != 0 && sv.procs[i].kill_at != 0 &&
		    sv.procs[i].kill_at < next)
			next = sv.procs[i].kill_at;
	return next > now ? (int64_t)(next - now) : 0;
}

static void
kill_overdue(void)
{
	uint64_t now = util_now_ms();

	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *p = &sv.procs[i];

		if (p->pid == 0)
			continue;
		if ((p->kill_at != 0 && now >= p->kill_at) ||
		    (sv.stopping && now >= sv.stop_deadline)) {
			if (p->relay)
				log_warnx("%s: relay (pid %ld) did not stop in "
					  "time, killing it",
					  __func__, (long)p->pid);
			else
				log_warnx("%s: worker %d (pid %ld) did not "
					  "drain in time, killing it",
					  __func__, p->slot, (long)p->pid);
			kill(p->pid, SIGKILL);
			p->kill_at = 0;
			if (sv.stopping)
				sv.stop_deadline = UINT64_MAX;
		}
	}
}

static int
all_disabled(void)
{
	for (int s = 0; s < sv.cfg->workers; s++)
		if (!sv.slots[s].disabled)
			return 0;
	return 1;
}

/*
 * Detach from the terminal.  The parent waits on a pipe until the child
 * has written the pid file, so that "orchd && cat pidfile" works and a
 * start-up failure is the parent's exit status.
 */
static int
daemonize(int *notify_fd)
{
	int p[2], fd;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC) == -1)
		fatal("%s: pipe2", __func__);
	if ((pid = fork()) == -1)
		fatal("%s: fork", __func__);
	if (pid > 0) {
		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 && c == 0 ? 0 : 1);
	}
	close(p[0]);
	if (setsid() == -1)
		fatal("%s: setsid", __func__);
	if (chdir("/") == -1)
		fatal("%s: chdir /", __func__);
	umask(022);
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		/* stderr stays until start-up has been reported. */
		if (fd > STDERR_FILENO)
			close(fd);
	}
	*notify_fd = p[1];
	return 0;
}

static void
daemon_ready(int notify_fd)
{
	char ok = 0;
	int fd;

	if (notify_fd == -1)
		return;
	if (write(notify_fd, &ok, 1) != 1)
		log_warn("%s: write", __func__);
	close(notify_fd);
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("%s: setrlimit", __func__);
	}
}

int
supervisor_run(struct config *cfg, const struct supervisor_opts *opts)
{
	sigset_t waitmask;
	int notify_fd = -1;

	memset(&sv, 0, sizeof(sv));
	sv.cfg = cfg;
	sv.opts = opts;
	sv.generation = 1;
	sv.relay_ctl = -1;
	sv.admin_fd = -1;
	log_set_procname("supervisor");
	raise_nofile();

	if (pidfile_check(effective_pidfile(cfg)) == -1)
		return 1;
	if (geteuid() == 0 && cfg->user != NULL) {
		uid_t uid;
		gid_t gid;

		if (resolve_user(cfg, &uid, &gid) == -1)
			return 2;
	}
	if (tls_needed(cfg) && (sv.tls_ctx = tls_ctx_new(cfg)) == NULL)
		return 1;
	if (auth_keyring_load(cfg, &sv.keyring) == -1)
		return 2;
	if (listener_set_build(&sv.ls, NULL, cfg) == -1)
		return 1;
	/* Before daemonizing: "another orchd answers" must reach stderr. */
	if (admin_open(cfg) == -1)
		return 1;
	if (!opts->foreground)
		daemonize(&notify_fd);
	sv.pid = getpid();
	if (log_apply(cfg) == -1) {
		admin_close();
		return 1;
	}
	sv.pidfile = util_strdup(effective_pidfile(cfg));
	if (pidfile_write(sv.pidfile) == -1) {
		admin_close();
		return 1;
	}
	if ((sv.shm = shm_create()) == NULL) {
		pidfile_remove();
		admin_close();
		return 1;
	}
	atomic_store(&sv.shm->supervisor_pid, (int)sv.pid);
	atomic_store(&sv.shm->started_ms, util_wall_ms());
	sv.registry_len = registry_size(cfg->max_connections);
	if ((sv.registry_mem = shm_map(sv.registry_len, "registry")) == NULL ||
	    (sv.registry = registry_init(sv.registry_mem, sv.registry_len,
					 cfg->max_connections)) == NULL) {
		log_warnx("%s: cannot create the connection registry", __func__);
		pidfile_remove();
		admin_close();
		return 1;
	}
	atomic_store(&sv.shm->generation, sv.generation);
	atomic_store(&sv.shm->nworkers, (unsigned)cfg->workers);
	signals_setup(&waitmask);
	log_notice("%s: orchd %s starting: %d workers, %d listeners", __func__,
		   PACKAGE_VERSION, cfg->workers, cfg->nlisten);
	for (int i = 0; i < cfg->nlisten; i++)
		log_info("%s: listening on %s%s", __func__,
			 cfg->listen[i].text, cfg->listen[i].tls ? " tls" : "");
	/* Before the fork: workers must not inherit the caller's stderr. */
	daemon_ready(notify_fd);
	/* Before the fork too: no child may inherit NOTIFY_SOCKET. */
	notify_init();
	start_slots();
	sv.ready_pending = 1;

	for (;;) {
		struct timespec ts;
		int64_t ms;

		if (got_chld) {
			got_chld = 0;
			reap_children();
		}
		if (got_term) {
			got_term = 0;
			begin_stop();
		}
		if (got_hup) {
			got_hup = 0;
			if (!sv.stopping)
				reload_notified();
		}
		if (got_usr1) {
			got_usr1 = 0;
			reopen_logs();
		}
		if (!sv.stopping) {
			start_slots();
			if (all_disabled()) {
				log_warnx("%s: every worker failed with a "
					  "fatal error; stopping",
					  __func__);
				sv.exit_code = 1;
				begin_stop();
			}
		}
		if (sv.stopping && nworkers_alive() == 0 && sv.relay_pid != 0 &&
		    !sv.relay_stop_sent) {
			sv.relay_stop_sent = 1;
			kill(sv.relay_pid, SIGTERM);
		}
		kill_overdue();
		notify_progress();
		if (sv.stopping && nprocs() == 0)
			break;
		ms = next_timeout_ms();
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (ms % 1000) * 1000000;
		{
			/* The relay's messages (an operator's drain). */
			struct pollfd pfd = {sv.relay_ctl, POLLIN, 0};
			nfds_t nfd = sv.relay_ctl >= 0 && !sv.relay_ctl_eof;
			int rc = ppoll(&pfd, nfd, &ts, &waitmask);

			if (rc == -1 && errno != EINTR)
				log_warn("%s: ppoll", __func__);
			else if (rc > 0 && pfd.revents != 0)
				relay_ctl_read();
		}
	}

	log_notice("%s: stopped", __func__);
	pidfile_remove();
	admin_close();
	listener_set_close(&sv.ls);
	shm_destroy(sv.shm);
	shm_unmap(sv.registry_mem, sv.registry_len);
	tls_ctx_free(sv.tls_ctx);
	jwt_keyring_free(sv.keyring);
	config_free(sv.cfg);
	UTIL_FREE(sv.pidfile);
	return sv.exit_code;
}
