/*
 * relay: the one process that reads events from Redis (feed.c), queues
 * them durably when PROTOCOL.md section 6 says so (queue.c), and writes
 * each to the pipes of the workers that hold connections it is for (found
 * in the shared registry).
 *
 * The supervisor creates every worker's pipe and hands the write end to the
 * relay over a unix control socket (SCM_RIGHTS), at the relay's start for
 * the workers alive then and at each worker start; it says when a worker is
 * gone.  A worker restart therefore changes nothing for the relay but one
 * pipe, and a relay restart nothing for the workers but a hello frame.
 */
#ifndef ORCHD_RELAY_H
#define ORCHD_RELAY_H

#include <sys/types.h>

#include "orchd/config.h"

struct shm_segment;
struct registry;

#define RELAY_BACKLOG_MAX 65536 /* records waiting on Redis replies */
#define RELAY_MAX_PIPES (CONFIG_MAX_WORKERS * 4)
#define RELAY_PIPE_SIZE (1024 * 1024) /* F_SETPIPE_SZ asked for */

/* Control messages, supervisor -> relay. */
#define RELAY_CTL_ADD 1 /* a worker's pipe write end rides along */
#define RELAY_CTL_DEL 2 /* that worker is gone */
/* The admin socket changed (reload): its new fd rides along, or none. */
#define RELAY_CTL_ADMIN 3
/* Reload: back to the configuration's log level (arg). */
#define RELAY_CTL_LOGLEVEL 4
/*
 * Relay -> supervisor: an operator drains worker (slot, pid); start its
 * successor now (admin.h).
 */
#define RELAY_CTL_DRAIN 5

struct relay_ctl {
	int type;
	int slot;
	pid_t pid;
	unsigned generation;
	int arg; /* RELAY_CTL_LOGLEVEL: the level */
};

/*
 * Send one control message on the SOCK_SEQPACKET socket (fd: the pipe for
 * RELAY_CTL_ADD, else -1).  0, or -1 (logged).
 */
int relay_ctl_send(int sock, const struct relay_ctl *m, int fd);
/*
 * Receive one: > 0 the bytes (m filled unless NULL; *fd the descriptor
 * that came along, or -1), 0 the peer closed, -1 with errno.  A message
 * that is not exactly one struct relay_ctl is -1 with EBADMSG.
 */
ssize_t relay_ctl_recv(int sock, struct relay_ctl *m, int *fd);

struct relay_args {
	const struct config *cfg;
	struct shm_segment *shm;
	struct registry *registry;
	int ctl_fd;          /* the relay's end of the control socket */
	int admin_fd;        /* the admin socket, listening; -1: none */
	unsigned generation; /* counts relay starts */
};

/* Run the relay process; never returns (exit 0 on TERM, 1 on failure). */
__attribute__((noreturn)) void relay_run(const struct relay_args *a);

/* Do two configurations differ in what the relay uses? */
int relay_config_changed(const struct config *a, const struct config *b);

#endif
