/*
 * log: OpenBSD-style logging.
 *
 * One line per message: "<time> orchd[pid]: <procname>: <message>" to a file
 * or stderr, or "<procname>: <message>" to syslog (which adds the rest).
 * Writes are single write(2) calls of whole lines so that the supervisor and
 * its workers can share one O_APPEND file descriptor without interleaving.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/util.h"

static struct {
	enum log_dest dest;
	int level;
	int fd; /* for LOG_DEST_FILE; stderr otherwise */
	char file[4096];
	char procname[32];
	int syslog_open;
} lg = {LOG_DEST_STDERR, LOG_INFO, -1, "", "orchd", 0};

void
log_init(const char *procname)
{
	lg.dest = LOG_DEST_STDERR;
	lg.level = LOG_INFO;
	lg.fd = -1;
	log_set_procname(procname);
}

void
log_set_procname(const char *procname)
{
	util_strlcpy(lg.procname, procname, sizeof(lg.procname));
}

void
log_set_level(int level)
{
	lg.level = level;
}

int
log_get_level(void)
{
	return lg.level;
}

int
log_get_fd(void)
{
	return lg.dest == LOG_DEST_FILE ? lg.fd : -1;
}

static int
log_open_file(const char *file)
{
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	return fd;
}

int
log_configure(enum log_dest dest, const char *file, int level)
{
	int fd = -1;

	if (dest == LOG_DEST_FILE) {
		if ((fd = log_open_file(file)) == -1) {
			log_warn("%s: open %s", __func__, file);
			return -1;
		}
	}
	if (lg.fd != -1)
		close(lg.fd);
	lg.fd = fd;
	lg.dest = dest;
	lg.level = level;
	lg.file[0] = '\0';
	if (dest == LOG_DEST_FILE)
		util_strlcpy(lg.file, file, sizeof(lg.file));
	if (dest == LOG_DEST_SYSLOG && !lg.syslog_open) {
		openlog("orchd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		lg.syslog_open = 1;
	}
	return 0;
}

int
log_reopen(void)
{
	int fd;

	if (lg.dest != LOG_DEST_FILE)
		return 0;
	if ((fd = log_open_file(lg.file)) == -1) {
		log_warn("%s: open %s", __func__, lg.file);
		return -1;
	}
	close(lg.fd);
	lg.fd = fd;
	return 0;
}

void
log_chown(unsigned uid, unsigned gid)
{
	if (lg.dest == LOG_DEST_FILE && lg.fd != -1 &&
	    fchown(lg.fd, (uid_t)uid, (gid_t)gid) == -1)
		log_warn("%s: fchown %s", __func__, lg.file);
}

void
log_vmsg(int pri, int with_errno, const char *fmt, va_list ap)
{
	char msg[2048], line[2300], ts[32];
	int saved = errno, n;

	if (pri > lg.level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		size_t l = strlen(msg);

		snprintf(msg + l, sizeof(msg) - l, ": %s", strerror(saved));
	}
	if (lg.dest == LOG_DEST_SYSLOG) {
		syslog(pri, "%s: %s", lg.procname, msg);
		errno = saved;
		return;
	}
	util_iso8601_ms(util_wall_ms(), ts, sizeof(ts));
	n = snprintf(line, sizeof(line), "%s orchd[%ld]: %s: %s\n", ts,
		     (long)getpid(), lg.procname, msg);
	if (n > (int)sizeof(line) - 1) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(lg.dest == LOG_DEST_FILE ? lg.fd : STDERR_FILENO, line,
		  (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
	errno = saved;
}

#define LOG_FN(name, pri, err)                                                 \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_vmsg(pri, err, fmt, ap);                                   \
		va_end(ap);                                                    \
	}

LOG_FN(log_warn, LOG_WARNING, 1)
LOG_FN(log_warnx, LOG_WARNING, 0)
LOG_FN(log_notice, LOG_NOTICE, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_debug_impl, LOG_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
