/*
 * tpool: thread pools answered on a libev loop (include/orchd/tpool.h).
 *
 * A job lives in one allocation shared by the loop and, while its work
 * runs, one pool thread.  One process-wide mutex guards every pool's queue
 * and every job's state (hold times are a few pointer moves; the work runs
 * unlocked); the loop side owns the job's ev_async.
 *
 *   QUEUED  --a thread takes it-->  RUNNING  --work returns-->  DONE
 *
 * The thread that finishes a job sends its ev_async while holding the
 * mutex, so a cancel (which takes the mutex) either finds it DONE and frees
 * it, or marks a RUNNING job orphaned, after which the thread releases the
 * argument and frees the job without touching the loop.  A cancelled
 * QUEUED job is unlinked and freed at once.  No path touches a job or a
 * loop after the other side let go of it.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/log.h"
#include "orchd/tpool.h"
#include "orchd/util.h"

enum jstate { J_QUEUED, J_RUNNING, J_DONE };

struct tpool_job {
	struct tpool_job *next; /* the queue */
	struct tpool *p;
	struct ev_loop *loop;
	ev_async async; /* DONE */
	tpool_work_fn work;
	tpool_done_fn done;
	tpool_release_fn release;
	void *arg;
	enum jstate state; /* under mu */
	int orphan;        /* under mu: the loop let go of it */
};

struct tpool {
	struct tpool *all_next; /* every pool of the process (fork) */
	char name[32];
	int max_threads, max_queued;
	pthread_cond_t cv;
	/* Under mu. */
	int nthreads; /* started, all alive */
	int nidle;    /* waiting on cv */
	int nrunning; /* in work(), orphans included */
	int nqueued;
	struct tpool_job *head, *tail;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct tpool *all_pools; /* under mu */

/*
 * fork() copies the pools' state but not their threads: in the child every
 * pool is empty (and the mutex free).  Jobs queued in the parent are the
 * parent's; the child never sees them.
 */
static void
atfork_prepare(void)
{
	pthread_mutex_lock(&mu);
}

static void
atfork_parent(void)
{
	pthread_mutex_unlock(&mu);
}

static void
atfork_child(void)
{
	for (struct tpool *p = all_pools; p != NULL; p = p->all_next) {
		p->nthreads = p->nidle = p->nrunning = p->nqueued = 0;
		p->head = p->tail = NULL;
		pthread_cond_init(&p->cv, NULL);
	}
	pthread_mutex_unlock(&mu);
}

static void
init_once(void)
{
	(void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

struct tpool *
tpool_new(const char *name, int max_threads, int max_queued)
{
	struct tpool *p = util_calloc(1, sizeof(*p));

	pthread_once(&once, init_once);
	util_strlcpy(p->name, name, sizeof(p->name));
	p->max_threads = max_threads < 1                   ? 1
			 : max_threads > TPOOL_THREADS_MAX ? TPOOL_THREADS_MAX
							   : max_threads;
	p->max_queued = max_queued < 1                  ? 1
			: max_queued > TPOOL_QUEUED_MAX ? TPOOL_QUEUED_MAX
							: max_queued;
	pthread_cond_init(&p->cv, NULL);
	pthread_mutex_lock(&mu);
	p->all_next = all_pools;
	all_pools = p;
	pthread_mutex_unlock(&mu);
	return p;
}

static void *
thread_main(void *parg)
{
	struct tpool *p = parg;

	pthread_mutex_lock(&mu);
	for (;;) {
		struct tpool_job *j;

		while (p->head == NULL) {
			p->nidle++;
			pthread_cond_wait(&p->cv, &mu);
			p->nidle--;
		}
		j = p->head;
		p->head = j->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->nqueued--;
		j->next = NULL;
		j->state = J_RUNNING;
		p->nrunning++;
		pthread_mutex_unlock(&mu);

		j->work(j->arg);

		pthread_mutex_lock(&mu);
		if (j->orphan) {
			/* Unlocked: release may take its time. */
			pthread_mutex_unlock(&mu);
			if (j->release != NULL)
				j->release(j->arg);
			free(j);
			pthread_mutex_lock(&mu);
			p->nrunning--;
		} else {
			p->nrunning--;
			j->state = J_DONE;
			/* Under mu: a cancel cannot free j or stop the loop's
			 * interest in it meanwhile. */
			ev_async_send(j->loop, &j->async);
		}
	}
	return NULL;
}

/* Under mu.  0, or -1 when no thread could be started and none exists. */
static int
spawn_if_needed(struct tpool *p)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (p->nqueued <= p->nidle || p->nthreads >= p->max_threads)
		return 0;
	/* Signals stay with the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, thread_main, p);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_warnx("%s: %s: pthread_create: %s", __func__, p->name,
			  strerror(rc));
		return p->nthreads > 0 ? 0 : -1;
	}
	p->nthreads++;
	return 0;
}

/* Under mu. */
static void
unqueue(struct tpool_job *j)
{
	struct tpool *p = j->p;
	struct tpool_job **pp = &p->head, *prev = NULL;

	for (; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp != j)
			continue;
		*pp = j->next;
		if (p->tail == j)
			p->tail = prev;
		p->nqueued--;
		j->next = NULL;
		return;
	}
}

static void
async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct tpool_job *j = w->data;
	tpool_done_fn done = j->done;
	void *arg = j->arg;
	int isdone;

	(void)revents;
	pthread_mutex_lock(&mu);
	isdone = j->state == J_DONE;
	if (isdone)
		ev_async_stop(loop, &j->async);
	pthread_mutex_unlock(&mu);
	if (!isdone)
		return;
	/* DONE is final: no thread refers to j any more. */
	free(j);
	done(arg);
}

enum tpool_status
tpool_submit(struct tpool *p, struct ev_loop *loop, tpool_work_fn work,
	     tpool_done_fn done, tpool_release_fn release, void *arg,
	     struct tpool_job **jobp)
{
	struct tpool_job *j = util_calloc(1, sizeof(*j));

	j->p = p;
	j->loop = loop;
	j->work = work;
	j->done = done;
	j->release = release;
	j->arg = arg;
	ev_async_init(&j->async, async_cb);
	j->async.data = j;
	ev_async_start(loop, &j->async);

	pthread_mutex_lock(&mu);
	if (p->nqueued >= p->max_queued) {
		ev_async_stop(loop, &j->async);
		pthread_mutex_unlock(&mu);
		free(j);
		return TPOOL_FULL;
	}
	j->state = J_QUEUED;
	if (p->tail != NULL)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->nqueued++;
	if (spawn_if_needed(p) < 0) {
		unqueue(j);
		ev_async_stop(loop, &j->async);
		pthread_mutex_unlock(&mu);
		free(j);
		return TPOOL_NOTHREAD;
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&mu);
	*jobp = j;
	return TPOOL_OK;
}

enum tpool_cancelled
tpool_cancel(struct tpool_job *j)
{
	enum tpool_cancelled r;

	if (j == NULL)
		return TPOOL_CANCEL_UNRUN;
	pthread_mutex_lock(&mu);
	ev_async_stop(j->loop, &j->async);
	switch (j->state) {
	case J_QUEUED:
		unqueue(j);
		r = TPOOL_CANCEL_UNRUN;
		break;
	case J_RUNNING:
		j->orphan = 1;
		r = TPOOL_CANCEL_ORPHANED;
		break;
	default:
		r = TPOOL_CANCEL_DONE;
		break;
	}
	pthread_mutex_unlock(&mu);
	if (r != TPOOL_CANCEL_ORPHANED)
		free(j);
	return r;
}

static int
count(struct tpool *p, const int *field)
{
	int n;

	(void)p;
	pthread_mutex_lock(&mu);
	n = *field;
	pthread_mutex_unlock(&mu);
	return n;
}

int
tpool_running(struct tpool *p)
{
	return count(p, &p->nrunning);
}

int
tpool_queued(struct tpool *p)
{
	return count(p, &p->nqueued);
}

int
tpool_threads(struct tpool *p)
{
	return count(p, &p->nthreads);
}
