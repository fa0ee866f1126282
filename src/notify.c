/*
 * notify: sd_notify(3) without libsystemd.
 *
 * One short-lived datagram socket per message, as sd_notify() does: the
 * supervisor keeps no descriptor its children could inherit, and messages
 * are few (start, reload, stop, a periodic status line).
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/notify.h"

static struct {
	int on;
	struct sockaddr_un sa;
	socklen_t salen;
} nt;

int
notify_parse_addr(const char *value, struct sockaddr_un *sa, socklen_t *salen)
{
	size_t len;

	if (value == NULL || (value[0] != '/' && value[0] != '@'))
		return -1;
	len = strlen(value);
	/* An abstract name needs no terminating NUL; a path does. */
	if (len < 2 || len > sizeof(sa->sun_path) - (value[0] == '/'))
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, value, len);
	if (value[0] == '@')
		sa->sun_path[0] = '\0';
	*salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
			     (value[0] == '/'));
	return 0;
}

int
notify_init(void)
{
	const char *v = getenv("NOTIFY_SOCKET");
	int rc = 0;

	nt.on = 0;
	if (v == NULL || *v == '\0') {
		unsetenv("NOTIFY_SOCKET");
		return 0;
	}
	if (notify_parse_addr(v, &nt.sa, &nt.salen) == 0) {
		nt.on = 1;
		rc = 1;
	} else {
		log_warnx("%s: unusable NOTIFY_SOCKET \"%.*s\" (want an "
			  "absolute path or @name); not notifying",
			  __func__, 120, v);
		rc = -1;
	}
	unsetenv("NOTIFY_SOCKET");
	return rc;
}

int
notify_enabled(void)
{
	return nt.on;
}

int
notify_format(char *buf, size_t size, const char *state, long pid,
	      uint64_t usec, const char *status)
{
	size_t off = 0;
	int n;

	if (size == 0)
		return -1;
	buf[0] = '\0';
	if (state != NULL) {
		n = snprintf(buf, size, "%s\n", state);
		if (n < 0 || (size_t)n >= size)
			return -1;
		off = (size_t)n;
	}
	if (pid > 0) {
		n = snprintf(buf + off, size - off, "MAINPID=%ld\n", pid);
		if (n < 0 || (size_t)n >= size - off)
			return -1;
		off += (size_t)n;
	}
	if (usec > 0) {
		n = snprintf(buf + off, size - off, "MONOTONIC_USEC=%llu\n",
			     (unsigned long long)usec);
		if (n < 0 || (size_t)n >= size - off)
			return -1;
		off += (size_t)n;
	}
	if (status != NULL) {
		size_t len = strnlen(status, NOTIFY_STATUS_MAX);

		/* "STATUS=" + text + "\n" + NUL */
		if (off + 7 + len + 2 > size)
			return -1;
		memcpy(buf + off, "STATUS=", 7);
		off += 7;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)status[i];

			buf[off++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		}
		buf[off++] = '\n';
		buf[off] = '\0';
	}
	return (int)off;
}

int
notify_send(const char *msg, size_t len)
{
	int fd;
	ssize_t n;

	if (!nt.on || len == 0)
		return 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("%s: socket", __func__);
		return -1;
	}
	do
		n = sendto(fd, msg, len, MSG_NOSIGNAL,
			   (const struct sockaddr *)&nt.sa, nt.salen);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		log_warn("%s: sendto NOTIFY_SOCKET", __func__);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

static void
notify_msg(const char *state, long pid, uint64_t usec, const char *status)
{
	char buf[NOTIFY_MSG_MAX];
	int n;

	if (!nt.on)
		return;
	n = notify_format(buf, sizeof(buf), state, pid, usec, status);
	if (n < 0) {
		log_warnx("%s: message too long", __func__);
		return;
	}
	log_debug("%s: %s", __func__, state != NULL ? state : "STATUS");
	notify_send(buf, (size_t)n);
}

void
notify_ready(const char *status)
{
	notify_msg("READY=1", (long)getpid(), 0, status);
}

void
notify_reloading(const char *status)
{
	struct timespec ts;
	uint64_t usec = 0;

	/* systemd matches a reload to its request by this timestamp. */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		usec = (uint64_t)ts.tv_sec * 1000000u +
		       (uint64_t)ts.tv_nsec / 1000u;
	notify_msg("RELOADING=1", 0, usec, status);
}

void
notify_stopping(const char *status)
{
	notify_msg("STOPPING=1", 0, 0, status);
}

void
notify_status(const char *status)
{
	notify_msg(NULL, 0, 0, status);
}
