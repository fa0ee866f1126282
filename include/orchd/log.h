/*
 * log: OpenBSD-style logging to syslog, stderr or a file.
 *
 * Messages start with the calling function (log_warn("%s: open %s",
 * __func__, path)); the *_warn variants append ": strerror(errno)".
 * Every line carries the process name ("supervisor", "worker 1").
 */
#ifndef ORCHD_LOG_H
#define ORCHD_LOG_H

#include <stdarg.h>
#include <syslog.h>

#define ORCHD_PRINTF(f, a) __attribute__((format(printf, f, a)))

enum log_dest {
	LOG_DEST_STDERR = 0,
	LOG_DEST_SYSLOG,
	LOG_DEST_FILE,
};

/* Start logging to stderr at LOG_INFO: usable before any config is read. */
void log_init(const char *procname);
/* Switch destination and level; returns -1 (and keeps the old one) on error. */
int log_configure(enum log_dest dest, const char *file, int level);
/* Reopen the log file (USR1); no-op for syslog/stderr. */
int log_reopen(void);
/* Change ownership of the open log file (so unprivileged children can reopen). */
void log_chown(unsigned uid, unsigned gid);
void log_set_procname(const char *procname);
void log_set_level(int level);
int log_get_level(void);
int log_get_fd(void);

void log_warn(const char *fmt, ...) ORCHD_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) ORCHD_PRINTF(1, 2);
void log_info(const char *fmt, ...) ORCHD_PRINTF(1, 2);
void log_notice(const char *fmt, ...) ORCHD_PRINTF(1, 2);
void log_debug_impl(const char *fmt, ...) ORCHD_PRINTF(1, 2);
/*
 * Debug lines are the ones on hot paths (per connection, per message):
 * their arguments are not even evaluated unless debug logging is on.
 */
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_get_level() >= LOG_DEBUG)                              \
			log_debug_impl(__VA_ARGS__);                           \
	} while (0)
void log_vmsg(int pri, int with_errno, const char *fmt, va_list ap)
	ORCHD_PRINTF(3, 0);
__attribute__((noreturn)) void fatal(const char *fmt, ...) ORCHD_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) ORCHD_PRINTF(1, 2);

#endif
