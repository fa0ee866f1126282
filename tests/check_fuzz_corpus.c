/*
 * check_fuzz_corpus: every libFuzzer target of tests/fuzz/, built with the
 * normal compiler (no libFuzzer), replays each file of its corpus
 * (tests/fuzz/corpus/<target>/): the seeds, and the reproducers of the
 * bugs the fuzzers found.  A target aborts on a broken invariant, and
 * the ASan+UBSan build sees memory errors, UB and leaks, so each committed
 * reproducer is a regression test of make check.  One test per target;
 * the entry points are named fuzz_<target>_one (FUZZ_REPLAY, fuzz.h).
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TARGETS(X)                                                             \
	X(admin)                                                               \
	X(config)                                                              \
	X(event)                                                               \
	X(http)                                                                \
	X(ipc)                                                                 \
	X(json)                                                                \
	X(jwt)                                                                 \
	X(orchctl)                                                             \
	X(pmd)                                                                 \
	X(proto)                                                               \
	X(query)                                                               \
	X(utf8)                                                                \
	X(ws)

#define DECLARE(t)                                                             \
	int fuzz_##t##_one(const uint8_t *data, size_t size);                  \
	int fuzz_##t##_init(int *argc, char ***argv);
TARGETS(DECLARE)

struct target {
	const char *name;
	int (*one)(const uint8_t *, size_t);
	int (*init)(int *, char ***);
};

#define ENTRY(t) {#t, fuzz_##t##_one, fuzz_##t##_init},
static const struct target targets[] = {TARGETS(ENTRY)};

/* A whole file into a buffer of exactly its size (ASan sees overreads). */
static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf;
	long n;

	ck_assert_msg(fp != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	ck_assert_int_ge(n, 0);
	rewind(fp);
	buf = malloc(n > 0 ? (size_t)n : 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

START_TEST(test_replay)
{
	const struct target *t = &targets[_i];
	char dir[1024], path[2048];
	struct dirent *de;
	unsigned files = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", TEST_SRCDIR, t->name);
	d = opendir(dir);
	ck_assert_msg(d != NULL, "no corpus %s", dir);
	t->init(NULL, NULL);
	while ((de = readdir(d)) != NULL) {
		uint8_t *buf;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		buf = slurp(path, &len);
		/* On a failure the last line printed names the input. */
		fprintf(stderr, "%s: %s\n", t->name, de->d_name);
		ck_assert_int_eq(t->one(buf, len), 0);
		free(buf);
		files++;
	}
	closedir(d);
	ck_assert_msg(files > 0, "empty corpus %s", dir);
}
END_TEST

static Suite *
fuzz_corpus_suite(void)
{
	Suite *s = suite_create("fuzz_corpus");
	TCase *tc = tcase_create("replay");

	/* The sanitizer build is slow; a corpus is a few hundred inputs. */
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_replay, 0,
			    (int)(sizeof(targets) / sizeof(targets[0])));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(fuzz_corpus_suite());
}
