/* Unit tests for util.c and log.c. */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/util.h"

START_TEST(test_parse_u64)
{
	uint64_t v = 0;

	ck_assert_int_eq(util_parse_u64("0", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(util_parse_u64("10", 0, 10, &v), 0);
	ck_assert_uint_eq(v, 10);
	ck_assert_int_eq(util_parse_u64("11", 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64("4", 5, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64("", 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64(NULL, 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64("-1", 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64("+1", 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64(" 1", 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64("1x", 0, 10, &v), -1);
	ck_assert_int_eq(util_parse_u64("18446744073709551615", 0, UINT64_MAX,
					&v),
			 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	ck_assert_int_eq(util_parse_u64("18446744073709551616", 0, UINT64_MAX,
					&v),
			 -1);
}
END_TEST

START_TEST(test_iso8601)
{
	char buf[32];

	util_iso8601_ms(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
	util_iso8601_ms(1795696496789ULL, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2026-11-26T12:34:56.789Z");
}
END_TEST

START_TEST(test_strlcpy)
{
	char buf[4];

	ck_assert_uint_eq(util_strlcpy(buf, "abcdef", sizeof(buf)), 6);
	ck_assert_str_eq(buf, "abc");
	ck_assert_uint_eq(util_strlcpy(buf, "ab", sizeof(buf)), 2);
	ck_assert_str_eq(buf, "ab");
}
END_TEST

START_TEST(test_time_monotonic)
{
	uint64_t a = util_now_ms(), b = util_now_ms();

	ck_assert(b >= a);
	ck_assert(util_wall_ms() > 1600000000000ULL);
	ck_assert_int_ge(util_ncpu(), 1);
}
END_TEST

/* log.c writes whole lines with the process name and errno text. */
START_TEST(test_log_file)
{
	char path[] = "/tmp/orchd-logtest-XXXXXX", buf[4096];
	int fd = mkstemp(path);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	close(fd);
	log_init("unit");
	ck_assert_int_eq(log_configure(LOG_DEST_FILE, path, LOG_INFO), 0);
	log_info("%s: hello %d", "test_log_file", 42);
	log_debug("not shown at info");
	errno = ENOENT;
	log_warn("%s: open %s", "test_log_file", "/nonexistent");
	log_set_procname("worker 3");
	log_warnx("after rename");
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "]: unit: test_log_file: hello 42\n"));
	ck_assert_ptr_null(strstr(buf, "not shown"));
	ck_assert_ptr_nonnull(strstr(
		buf, "unit: test_log_file: open /nonexistent: No such file or "
		     "directory\n"));
	ck_assert_ptr_nonnull(strstr(buf, "worker 3: after rename\n"));
	/* Reopen after rotation creates a fresh file. */
	{
		char rotated[64];

		snprintf(rotated, sizeof(rotated), "%s.1", path);
		ck_assert_int_eq(rename(path, rotated), 0);
		ck_assert_int_eq(log_reopen(), 0);
		log_info("fresh");
		fd = open(path, O_RDONLY);
		ck_assert_int_ge(fd, 0);
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[n > 0 ? n : 0] = '\0';
		ck_assert_ptr_nonnull(strstr(buf, "fresh\n"));
		ck_assert_ptr_null(strstr(buf, "hello"));
		unlink(rotated);
	}
	log_configure(LOG_DEST_STDERR, NULL, LOG_INFO);
	unlink(path);
}
END_TEST

START_TEST(test_log_bad_file)
{
	log_init("unit");
	ck_assert_int_eq(log_configure(LOG_DEST_FILE, "/nonexistent/dir/x.log",
				       LOG_INFO),
			 -1);
}
END_TEST

static Suite *
util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_parse_u64);
	tcase_add_test(tc, test_iso8601);
	tcase_add_test(tc, test_strlcpy);
	tcase_add_test(tc, test_time_monotonic);
	tcase_add_test(tc, test_log_file);
	tcase_add_test(tc, test_log_bad_file);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(util_suite());
}
