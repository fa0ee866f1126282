/*
 * tpool: real threads, a real libev loop.  Jobs that must stay running
 * wait on a gate the test opens; every wait is bounded.
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orchd/tpool.h"

static pthread_mutex_t gmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gcv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void
gate_set(int open)
{
	pthread_mutex_lock(&gmu);
	gate_open = open;
	pthread_cond_broadcast(&gcv);
	pthread_mutex_unlock(&gmu);
}

struct job {
	int id;
	int gated;           /* wait for the gate */
	atomic_int worked;   /* work ran (count) */
	atomic_int released; /* release ran */
	int done;            /* done ran (loop thread only) */
	pthread_t done_thread;
	int sigs_blocked; /* work saw SIGTERM and SIGINT blocked */
};

static int order[8192];
static atomic_int norder;

static void
work(void *arg)
{
	struct job *j = arg;
	sigset_t cur;

	if (j->gated) {
		pthread_mutex_lock(&gmu);
		while (!gate_open)
			pthread_cond_wait(&gcv, &gmu);
		pthread_mutex_unlock(&gmu);
	}
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	j->sigs_blocked =
	    sigismember(&cur, SIGTERM) && sigismember(&cur, SIGINT);
	order[atomic_fetch_add(&norder, 1) % 8192] = j->id;
	atomic_fetch_add(&j->worked, 1);
}

static void
done(void *arg)
{
	struct job *j = arg;

	j->done++;
	j->done_thread = pthread_self();
}

static void
rel(void *arg)
{
	struct job *j = arg;

	atomic_fetch_add(&j->released, 1);
}

/* Run loop until *flag or secs pass. */
static void
run_until(struct ev_loop *loop, const int *flag, double secs)
{
	double end = ev_time() + secs;

	while (*flag == 0 && ev_time() < end)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(1000);
}

static void
wait_running(struct tpool *p, int n, double secs)
{
	double end = ev_time() + secs;

	while (tpool_running(p) != n && ev_time() < end)
		usleep(1000);
}

START_TEST(done_from_loop_never_inside_submit)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tpool *p = tpool_new("t", 2, 8);
	struct job j = {.id = 1};
	struct tpool_job *tj = NULL;

	ck_assert_int_eq(tpool_submit(p, loop, work, done, rel, &j, &tj),
			 TPOOL_OK);
	ck_assert_ptr_nonnull(tj);
	/* The work may well be over: done still waits for the loop. */
	for (int i = 0; i < 2000 && atomic_load(&j.worked) == 0; i++)
		usleep(1000);
	ck_assert_int_eq(atomic_load(&j.worked), 1);
	usleep(20000);
	ck_assert_int_eq(j.done, 0);
	run_until(loop, &j.done, 10);
	ck_assert_int_eq(j.done, 1);
	ck_assert(pthread_equal(j.done_thread, pthread_self()));
	ck_assert_int_eq(j.sigs_blocked, 1);
	ck_assert_int_eq(atomic_load(&j.released), 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(order_of_submission)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tpool *p = tpool_new("t", 1, 64);
	struct job j[32];
	struct tpool_job *tj;
	int all = 0;

	memset(j, 0, sizeof(j));
	atomic_store(&norder, 0);
	gate_set(0);
	for (int i = 0; i < 32; i++) {
		j[i].id = i;
		j[i].gated = i == 0; /* the rest queue up behind it */
		ck_assert_int_eq(
		    tpool_submit(p, loop, work, done, rel, &j[i], &tj),
		    TPOOL_OK);
	}
	gate_set(1);
	for (double end = ev_time() + 20; !all && ev_time() < end;) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
		all = 1;
		for (int i = 0; i < 32; i++)
			all = all && j[i].done == 1;
	}
	ck_assert_int_eq(all, 1);
	ck_assert_int_eq(atomic_load(&norder), 32);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(order[i], i);
	ck_assert_int_eq(tpool_threads(p), 1);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(limits)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tpool *p = tpool_new("t", 2, 3);
	struct job j[6];
	struct tpool_job *tj;

	memset(j, 0, sizeof(j));
	gate_set(0);
	for (int i = 0; i < 2; i++) {
		j[i].gated = 1;
		ck_assert_int_eq(
		    tpool_submit(p, loop, work, done, rel, &j[i], &tj),
		    TPOOL_OK);
	}
	wait_running(p, 2, 10);
	ck_assert_int_eq(tpool_running(p), 2);
	/* Two threads busy: three may wait, the fourth is refused. */
	for (int i = 2; i < 5; i++)
		ck_assert_int_eq(
		    tpool_submit(p, loop, work, done, rel, &j[i], &tj),
		    TPOOL_OK);
	ck_assert_int_eq(tpool_queued(p), 3);
	ck_assert_int_eq(tpool_submit(p, loop, work, done, rel, &j[5], &tj),
			 TPOOL_FULL);
	ck_assert_int_eq(tpool_threads(p), 2);
	ck_assert_int_eq(tpool_running(p), 2);
	gate_set(1);
	run_until(loop, &j[4].done, 20);
	for (int i = 0; i < 5; i++) {
		run_until(loop, &j[i].done, 10);
		ck_assert_int_eq(j[i].done, 1);
	}
	ck_assert_int_eq(j[5].done, 0);
	ck_assert_int_eq(atomic_load(&j[5].worked), 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(cancel_queued_running_done)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tpool *p = tpool_new("t", 1, 8);
	struct job run = {.gated = 1}, queued = {0}, fin = {0};
	struct tpool_job *trun, *tq, *tfin;

	gate_set(0);
	ck_assert_int_eq(tpool_submit(p, loop, work, done, rel, &run, &trun),
			 TPOOL_OK);
	wait_running(p, 1, 10);
	ck_assert_int_eq(tpool_submit(p, loop, work, done, rel, &queued, &tq),
			 TPOOL_OK);
	ck_assert_int_eq(tpool_cancel(tq), TPOOL_CANCEL_UNRUN);
	ck_assert_int_eq(tpool_queued(p), 0);
	ck_assert_int_eq(tpool_cancel(trun), TPOOL_CANCEL_ORPHANED);
	gate_set(1);
	/* The orphan's thread releases it. */
	for (double end = ev_time() + 10;
	     atomic_load(&run.released) == 0 && ev_time() < end;)
		usleep(1000);
	ck_assert_int_eq(atomic_load(&run.released), 1);
	wait_running(p, 0, 10);
	ck_assert_int_eq(tpool_running(p), 0);

	/* Finished, done not run yet: cancelled, the result is ours. */
	ck_assert_int_eq(tpool_submit(p, loop, work, done, rel, &fin, &tfin),
			 TPOOL_OK);
	for (double end = ev_time() + 10;
	     (atomic_load(&fin.worked) == 0 || tpool_running(p) != 0) &&
	     ev_time() < end;)
		usleep(1000);
	ck_assert_int_eq(tpool_cancel(tfin), TPOOL_CANCEL_DONE);
	ck_assert_int_eq(tpool_cancel(NULL), TPOOL_CANCEL_UNRUN);

	/* Nothing more reaches the loop. */
	for (int i = 0; i < 50; i++) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(2000);
	}
	ck_assert_int_eq(run.done + queued.done + fin.done, 0);
	ck_assert_int_eq(atomic_load(&queued.worked), 0);
	ck_assert_int_eq(atomic_load(&run.worked), 1);
	ck_assert_int_eq(
	    atomic_load(&queued.released) + atomic_load(&fin.released), 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(many_jobs)
{
	enum { N = 5000 };
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tpool *p = tpool_new("t", 4, 256);
	struct job *j = calloc(N, sizeof(*j));
	struct tpool_job *tj;
	int submitted = 0, ndone;

	ck_assert_ptr_nonnull(j);
	for (double end = ev_time() + 60; ev_time() < end;) {
		while (submitted < N) {
			enum tpool_status st = tpool_submit(
			    p, loop, work, done, rel, &j[submitted], &tj);

			if (st == TPOOL_FULL)
				break;
			ck_assert_int_eq(st, TPOOL_OK);
			/* Every fifth is cancelled, at whatever stage. */
			if (submitted % 5 == 4)
				(void)tpool_cancel(tj);
			submitted++;
		}
		ev_run(loop, EVRUN_NOWAIT);
		ndone = 0;
		for (int i = 0; i < N; i++)
			ndone += j[i].done;
		if (submitted == N && ndone == N - N / 5)
			break;
	}
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(j[i].done, i % 5 == 4 ? 0 : 1);
	ck_assert_int_le(tpool_threads(p), 4);
	wait_running(p, 0, 10);
	/* Orphans released once; nothing else released. */
	for (int i = 0; i < N; i++)
		ck_assert_int_le(atomic_load(&j[i].released),
				 i % 5 == 4 ? 1 : 0);
	free(j);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(fork_child_starts_afresh)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tpool *p = tpool_new("t", 1, 8);
	struct job run = {.gated = 1};
	struct tpool_job *tj;
	pid_t pid;
	int status;

	gate_set(0);
	ck_assert_int_eq(tpool_submit(p, loop, work, done, rel, &run, &tj),
			 TPOOL_OK);
	wait_running(p, 1, 10);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct ev_loop *l2 = ev_loop_new(EVFLAG_AUTO);
		struct job cj = {0};

		/* The parent's busy thread is not ours: a new one runs it. */
		if (tpool_running(p) != 0 || tpool_threads(p) != 0 ||
		    tpool_submit(p, l2, work, done, rel, &cj, &tj) != TPOOL_OK)
			_exit(2);
		run_until(l2, &cj.done, 10);
		_exit(cj.done == 1 ? 0 : 3);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	gate_set(1);
	run_until(loop, &run.done, 10);
	ck_assert_int_eq(run.done, 1);
	ev_loop_destroy(loop);
}
END_TEST

static Suite *
tpool_suite(void)
{
	Suite *s = suite_create("tpool");
	TCase *tc = tcase_create("tpool");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, done_from_loop_never_inside_submit);
	tcase_add_test(tc, order_of_submission);
	tcase_add_test(tc, limits);
	tcase_add_test(tc, cancel_queued_running_done);
	tcase_add_test(tc, many_jobs);
	tcase_add_test(tc, fork_child_starts_afresh);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(tpool_suite());
}
