/*
 * notify: the systemd readiness protocol (sd_notify(3)) without libsystemd.
 *
 * A service of Type=notify finds a unix datagram socket in NOTIFY_SOCKET (a
 * path, or "@name" for an abstract socket) and sends it newline-separated
 * "KEY=value" assignments: READY=1, RELOADING=1, STOPPING=1, STATUS=...
 * Without NOTIFY_SOCKET every call here is a no-op.  Send errors are logged
 * and otherwise ignored: readiness reporting never stops the daemon.
 */
#ifndef ORCHD_NOTIFY_H
#define ORCHD_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A message is at most this long; a longer STATUS= text is cut short. */
#define NOTIFY_MSG_MAX 512
#define NOTIFY_STATUS_MAX 200

/*
 * Read NOTIFY_SOCKET and unset it, so that nothing this process starts
 * inherits it.  Returns 1 when notifications are on, 0 when the variable
 * is unset or empty, -1 (logged) when it is unusable: then they stay off.
 */
int notify_init(void);
int notify_enabled(void);

/*
 * Pure: parse a NOTIFY_SOCKET value ("/path" or "@abstract") into *sa and
 * its length.  Returns 0, or -1 for anything else (relative paths, vsock:
 * addresses, names longer than sun_path).
 */
int notify_parse_addr(const char *value, struct sockaddr_un *sa,
		      socklen_t *salen);

/*
 * Pure: render "STATE\n" followed, when given, by "MAINPID=pid\n",
 * "MONOTONIC_USEC=usec\n" and "STATUS=text\n" into buf.  state may be NULL
 * (a STATUS=-only update); pid 0 and usec 0 mean "leave out".  The status
 * text is cut to NOTIFY_STATUS_MAX bytes and its control characters become
 * blanks (a newline would end the assignment).  Returns the length, or -1
 * if buf is too small.
 */
int notify_format(char *buf, size_t size, const char *state, long pid,
		  uint64_t usec, const char *status);

/* Send one rendered message; 0 when sent or notifications are off. */
int notify_send(const char *msg, size_t len);

/* READY=1 (+ MAINPID=), after start-up or a reload. */
void notify_ready(const char *status);
/* RELOADING=1 + MONOTONIC_USEC=, when a reload begins. */
void notify_reloading(const char *status);
/* STOPPING=1, when a stop begins. */
void notify_stopping(const char *status);
/* STATUS= only. */
void notify_status(const char *status);

#endif
