/* Unit tests for notify.c: address parsing, message rendering, and real
 * datagrams to a socket bound by the test (path and abstract). */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/notify.h"

START_TEST(test_parse_path)
{
	struct sockaddr_un sa;
	socklen_t len = 0;

	ck_assert_int_eq(notify_parse_addr("/run/systemd/notify", &sa, &len),
			 0);
	ck_assert_int_eq(sa.sun_family, AF_UNIX);
	ck_assert_str_eq(sa.sun_path, "/run/systemd/notify");
	ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) +
				   strlen("/run/systemd/notify") + 1);
}
END_TEST

START_TEST(test_parse_abstract)
{
	struct sockaddr_un sa;
	socklen_t len = 0;

	ck_assert_int_eq(notify_parse_addr("@orchd/notify", &sa, &len), 0);
	ck_assert_int_eq(sa.sun_path[0], '\0');
	ck_assert_int_eq(memcmp(sa.sun_path + 1, "orchd/notify", 12), 0);
	/* No terminating NUL in an abstract address length. */
	ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) + 13);
}
END_TEST

START_TEST(test_parse_bad)
{
	struct sockaddr_un sa;
	socklen_t len = 0;
	char longpath[200];

	ck_assert_int_eq(notify_parse_addr(NULL, &sa, &len), -1);
	ck_assert_int_eq(notify_parse_addr("", &sa, &len), -1);
	ck_assert_int_eq(notify_parse_addr("relative/sock", &sa, &len), -1);
	ck_assert_int_eq(notify_parse_addr("vsock:2:1234", &sa, &len), -1);
	ck_assert_int_eq(notify_parse_addr("@", &sa, &len), -1);
	ck_assert_int_eq(notify_parse_addr("/", &sa, &len), -1);
	/* sun_path holds 108 bytes: 107 + NUL for a path, 108 abstract. */
	memset(longpath, 'a', sizeof(longpath));
	longpath[0] = '/';
	longpath[sizeof(sa.sun_path)] = '\0';
	ck_assert_int_eq(notify_parse_addr(longpath, &sa, &len), -1);
	longpath[sizeof(sa.sun_path) - 1] = '\0';
	ck_assert_int_eq(notify_parse_addr(longpath, &sa, &len), 0);
	longpath[0] = '@';
	memset(longpath + 1, 'b', sizeof(sa.sun_path) - 1);
	longpath[sizeof(sa.sun_path)] = '\0';
	ck_assert_int_eq(notify_parse_addr(longpath, &sa, &len), 0);
	ck_assert_uint_eq(len, sizeof(struct sockaddr_un));
}
END_TEST

START_TEST(test_format)
{
	char buf[NOTIFY_MSG_MAX];
	char big[NOTIFY_STATUS_MAX + 50];
	int n;

	n = notify_format(buf, sizeof(buf), "READY=1", 42, 0, "up");
	ck_assert_str_eq(buf, "READY=1\nMAINPID=42\nSTATUS=up\n");
	ck_assert_int_eq(n, (int)strlen(buf));

	notify_format(buf, sizeof(buf), "RELOADING=1", 0, 1234567, NULL);
	ck_assert_str_eq(buf, "RELOADING=1\nMONOTONIC_USEC=1234567\n");

	notify_format(buf, sizeof(buf), NULL, 0, 0, "a\nb\tc");
	ck_assert_str_eq(buf, "STATUS=a b c\n");

	/* A long status is cut, not refused. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = notify_format(buf, sizeof(buf), "STOPPING=1", 0, 0, big);
	ck_assert_int_eq(
	    n, (int)(strlen("STOPPING=1\nSTATUS=\n") + NOTIFY_STATUS_MAX));

	/* Too small a buffer is an error, never an overflow. */
	ck_assert_int_eq(notify_format(buf, 8, "READY=1", 1, 0, NULL), -1);
	ck_assert_int_eq(notify_format(buf, 12, "READY=1", 0, 0, "status"), -1);
	ck_assert_int_eq(notify_format(buf, 0, "READY=1", 0, 0, NULL), -1);
}
END_TEST

/* A datagram socket bound at name ("/path" or "@abstract"). */
static int
bind_dgram(const char *name)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd;

	ck_assert_int_eq(notify_parse_addr(name, &sa, &len), 0);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

static void
expect_msg(int fd, const char *want)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char buf[NOTIFY_MSG_MAX + 1];
	ssize_t n;

	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(test_send_path)
{
	char dir[] = "/tmp/check_notify.XXXXXX", path[128], want[128];
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	fd = bind_dgram(path);

	setenv("NOTIFY_SOCKET", path, 1);
	ck_assert_int_eq(notify_init(), 1);
	ck_assert_int_eq(notify_enabled(), 1);
	/* Children must not inherit it. */
	ck_assert_ptr_null(getenv("NOTIFY_SOCKET"));

	notify_ready("ready: test");
	snprintf(want, sizeof(want),
		 "READY=1\nMAINPID=%ld\nSTATUS=ready: "
		 "test\n",
		 (long)getpid());
	expect_msg(fd, want);
	notify_stopping(NULL);
	expect_msg(fd, "STOPPING=1\n");
	notify_status("x");
	expect_msg(fd, "STATUS=x\n");

	/* The listener is gone: logged, not fatal. */
	close(fd);
	unlink(path);
	ck_assert_int_eq(notify_send("READY=1\n", 8), -1);
	rmdir(dir);
}
END_TEST

START_TEST(test_send_abstract)
{
	char name[64];
	char buf[NOTIFY_MSG_MAX + 1];
	struct pollfd pfd;
	ssize_t n;
	int fd;

	snprintf(name, sizeof(name), "@orchd-check-notify-%ld", (long)getpid());
	fd = bind_dgram(name);
	setenv("NOTIFY_SOCKET", name, 1);
	ck_assert_int_eq(notify_init(), 1);
	notify_reloading("reloading");
	pfd.fd = fd;
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_eq(strstr(buf, "RELOADING=1\nMONOTONIC_USEC="), buf);
	ck_assert_ptr_nonnull(strstr(buf, "\nSTATUS=reloading\n"));
	close(fd);
}
END_TEST

START_TEST(test_unset_and_bad)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(notify_init(), 0);
	ck_assert_int_eq(notify_enabled(), 0);
	/* Off: a no-op that succeeds. */
	ck_assert_int_eq(notify_send("READY=1\n", 8), 0);
	notify_ready("ignored");

	setenv("NOTIFY_SOCKET", "", 1);
	ck_assert_int_eq(notify_init(), 0);
	ck_assert_ptr_null(getenv("NOTIFY_SOCKET"));

	setenv("NOTIFY_SOCKET", "vsock:2:99", 1);
	ck_assert_int_eq(notify_init(), -1);
	ck_assert_int_eq(notify_enabled(), 0);
	ck_assert_ptr_null(getenv("NOTIFY_SOCKET"));
}
END_TEST

static Suite *
notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("core");

	log_init("check_notify");
	tcase_add_test(tc, test_parse_path);
	tcase_add_test(tc, test_parse_abstract);
	tcase_add_test(tc, test_parse_bad);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_send_path);
	tcase_add_test(tc, test_send_abstract);
	tcase_add_test(tc, test_unset_and_bad);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(notify_suite());
}
