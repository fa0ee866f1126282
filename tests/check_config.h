/*
 * check_config.h: the helpers of the config test suite, shared by its source
 * files (tests/check_config.c, which holds them and main(), and
 * tests/check_config_protocol.c).  One test program: tests/check_config.
 */
#ifndef ORCHD_CHECK_CONFIG_H
#define ORCHD_CHECK_CONFIG_H

#include <check.h>
#include <stddef.h>

#include "orchd/config.h"

#ifndef TEST_SRCDIR
#error "TEST_SRCDIR must be defined (the tests/ source directory)"
#endif

#define DATA TEST_SRCDIR "/data/config"
#define MAX_ERRS 128

/* A private directory for the files a test writes, removed at the end. */
extern char tmpdir[];

/* The errors of one parse, as reported through the callback. */
struct errs {
	int n;
	char *msg[MAX_ERRS];
};

void errs_free(struct errs *e);
int has_prefix(const char *s, const char *prefix);

/* Parse text as "t.conf" (or the file path); the caller frees both. */
int load_text(struct config **cfgp, const char *text, struct errs *e);
int load_file(struct config **cfgp, const char *path, struct errs *e);

/*
 * Assert the parse of text reports exactly nerr errors, the first starting
 * with prefix and containing substr.
 */
#define EXPECT1(text, prefix, substr)                                          \
	expectn(__LINE__, text, 1, prefix, substr)
#define EXPECTN(text, nerr, prefix, substr)                                    \
	expectn(__LINE__, text, nerr, prefix, substr)
void expectn(int line, const char *text, int nerr, const char *prefix,
	     const char *substr);

/* Assert text parses without error. */
#define EXPECT0(text) expect0(__LINE__, text)
void expect0(int line, const char *text);

/* Write a file in tmpdir; its path goes to out. */
void write_tmp(char *out, size_t len, const char *name, const char *data,
	       size_t n);

/* config_dump() into a string the caller frees. */
char *dump_text(const struct config *cfg);

/* Every field but path (which names the source) is the same. */
void assert_same(const struct config *a, const struct config *b);
/* Dump cfg, parse the dump, and require the very same config back. */
void assert_round_trip(const struct config *cfg);

/* Each bad form of a number, size or duration, and both ends of its range. */
struct range_case {
	const char *name;
	const char *lo, *hi;       /* accepted, in the form -T writes */
	const char *below, *above; /* refused; below NULL: range starts at 0 */
	const char *range;         /* as the message writes it */
};

/* notword: the "is not a ..." of a malformed value (size, duration...). */
void check_range(const struct range_case *rc, const char *notword,
		 const char *const *malformed, size_t nmalformed,
		 const char *overflow);

/* tests/check_config_protocol.c: the daemon protocol directives. */
void add_protocol_tests(Suite *s);
/* tests/check_config_admin.c: admin_allow, admin_token_file, listen admin. */
void add_admin_tests(Suite *s);

#endif
