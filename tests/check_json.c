/*
 * Unit tests for json.c.  Inputs are copied into heap buffers of their exact
 * length, so that under ASan a read one byte past the end is caught.
 */
#include "config.h"

#include <check.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/json.h"
#include "orchd/utf8.h"

static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	memcpy(p, s, n);
	return p;
}

/* Parse s[0..n) from an exact-size copy; return the code, discard the doc. */
static int
parse_n(const char *s, size_t n, const struct json_limits *lim, size_t *off)
{
	struct json_doc d;
	char *b = dup_exact(s, n);
	int rc = json_parse(&d, b, n, lim);

	if (rc == 0) {
		ck_assert_int_ge(d.ntoks, 1);
		json_doc_free(&d);
	} else {
		ck_assert_ptr_null(d.toks);
		ck_assert_uint_le(d.err_off, n);
	}
	if (off != NULL)
		*off = d.err_off;
	free(b);
	return rc;
}

static int
parse_s(const char *s)
{
	return parse_n(s, strlen(s), NULL, NULL);
}

/* A parsed document with the exact-size copy it points into. */
struct tdoc {
	struct json_doc d;
	char *buf;
};

static void
tparse(struct tdoc *t, const char *s)
{
	size_t n = strlen(s);
	int rc;

	t->buf = dup_exact(s, n);
	rc = json_parse(&t->d, t->buf, n, NULL);
	ck_assert_msg(rc == 0, "parse '%s': %s at %zu", s, json_strerror(rc),
		      t->d.err_off);
}

static void
tfree(struct tdoc *t)
{
	json_doc_free(&t->d);
	free(t->buf);
}

static void
assert_str(const struct json_doc *d, int tok, const char *want, size_t wlen)
{
	char out[256];
	size_t n = 12345;

	ck_assert_int_eq(json_get_string(d, tok, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, wlen);
	ck_assert_mem_eq(out, want, wlen);
	ck_assert_int_eq(out[n], '\0');
}

/* ---- reading ----------------------------------------------------------- */

START_TEST(test_all_types)
{
	struct tdoc t;
	struct json_doc *d = &t.d;
	int root, a, o, v;
	int64_t i;
	double x;
	bool b;

	tparse(&t, " {\"s\":\"x\",\"i\":42,\"neg\":-7,\"d\":1.5e2,\"t\":true,"
		   "\"f\":false,\"n\":null,\"a\":[1,[2,{}],[]],"
		   "\"o\":{\"k\":\"v\"}} \r\n\t");
	root = json_root(d);
	ck_assert_int_eq(root, 0);
	ck_assert_int_eq(json_type(d, root), JSON_OBJECT);
	ck_assert_int_eq(json_obj_len(d, root), 9);
	ck_assert_int_eq(json_array_len(d, root), -1);
	assert_str(d, json_obj_get(d, root, "s"), "x", 1);
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, root, "i"), &i), 0);
	ck_assert_int_eq(i, 42);
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, root, "neg"), &i),
			 0);
	ck_assert_int_eq(i, -7);
	ck_assert_int_eq(json_get_double(d, json_obj_get(d, root, "d"), &x), 0);
	ck_assert(x == 150.0);
	ck_assert_int_eq(json_get_bool(d, json_obj_get(d, root, "t"), &b), 0);
	ck_assert(b);
	ck_assert_int_eq(json_get_bool(d, json_obj_get(d, root, "f"), &b), 0);
	ck_assert(!b);
	ck_assert(json_is_null(d, json_obj_get(d, root, "n")));
	ck_assert(!json_is_null(d, json_obj_get(d, root, "f")));
	ck_assert(!json_is_null(d, json_obj_get(d, root, "missing")));
	a = json_obj_get(d, root, "a");
	ck_assert_int_eq(json_type(d, a), JSON_ARRAY);
	ck_assert_int_eq(json_array_len(d, a), 3);
	ck_assert_int_eq(json_type(d, json_array_get(d, a, 0)), JSON_NUMBER);
	v = json_array_get(d, a, 1);
	ck_assert_int_eq(json_type(d, v), JSON_ARRAY);
	ck_assert_int_eq(json_array_len(d, v), 2);
	ck_assert_int_eq(json_obj_len(d, json_array_get(d, v, 1)), 0);
	ck_assert_int_eq(json_array_len(d, json_array_get(d, a, 2)), 0);
	ck_assert_int_eq(json_array_get(d, a, 3), -1);
	ck_assert_int_eq(json_array_get(d, a, -1), -1);
	o = json_obj_get(d, root, "o");
	ck_assert_int_eq(json_type(d, o), JSON_OBJECT);
	assert_str(d, json_obj_get(d, o, "k"), "v", 1);
	/* Types of each kind, and the JSON_NONE / -1 conventions. */
	ck_assert_int_eq(json_type(d, json_obj_get(d, root, "s")), JSON_STRING);
	ck_assert_int_eq(json_type(d, json_obj_get(d, root, "t")), JSON_BOOL);
	ck_assert_int_eq(json_type(d, json_obj_get(d, root, "n")), JSON_NULL);
	ck_assert_int_eq(json_type(d, -1), JSON_NONE);
	ck_assert_int_eq(json_type(d, d->ntoks), JSON_NONE);
	ck_assert_int_eq(json_obj_get(d, a, "x"), -1);
	ck_assert_int_eq(json_obj_get(d, -1, "x"), -1);
	/* Wrong types. */
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, root, "s"), &i),
			 JSON_E_TYPE);
	ck_assert_int_eq(json_get_bool(d, json_obj_get(d, root, "n"), &b),
			 JSON_E_TYPE);
	ck_assert_int_eq(json_get_double(d, json_obj_get(d, root, "t"), &x),
			 JSON_E_TYPE);
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, root, "zz"), &i),
			 JSON_E_NOTFOUND);
	ck_assert_int_eq(json_get_bool(d, -1, &b), JSON_E_NOTFOUND);
	tfree(&t);
}
END_TEST

START_TEST(test_top_level_scalars)
{
	static const struct {
		const char *s;
		enum json_type ty;
		const char *raw;
	} c[] = {
	    {"1", JSON_NUMBER, "1"},     {" -0.5e-3 ", JSON_NUMBER, "-0.5e-3"},
	    {"true", JSON_BOOL, "true"}, {"\tfalse\n", JSON_BOOL, "false"},
	    {"null", JSON_NULL, "null"}, {"\"s\"", JSON_STRING, "\"s\""},
	    {" [] ", JSON_ARRAY, "[]"},  {"{}", JSON_OBJECT, "{}"},
	};

	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		struct tdoc t;
		const char *p;
		size_t n;

		tparse(&t, c[k].s);
		ck_assert_int_eq(t.d.ntoks, 1);
		ck_assert_int_eq(json_type(&t.d, 0), c[k].ty);
		ck_assert_int_eq(json_tok_raw(&t.d, 0, &p, &n), 0);
		ck_assert_uint_eq(n, strlen(c[k].raw));
		ck_assert_mem_eq(p, c[k].raw, n);
		ck_assert_int_eq(json_first(&t.d, 0), -1);
		ck_assert_int_eq(json_next(&t.d, 0), -1);
		tfree(&t);
	}
}
END_TEST

START_TEST(test_string_escapes)
{
	struct tdoc t;
	struct json_doc *d = &t.d;

	tparse(&t,
	       "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u20AC\","
	       "\"\\ud83d\\ude00\", \"\\uD834\\uDD1E\", \"\\udbff\\udfff\","
	       "\"caf\xc3\xa9 \xf0\x9f\x98\x80\x7f\", \"\", \"a\\u0000b\"]");
	assert_str(d, json_array_get(d, 0, 0), "\"\\/\b\f\n\r\t", 8);
	assert_str(d, json_array_get(d, 0, 1), "A\xc3\xa9\xe2\x82\xac", 6);
	assert_str(d, json_array_get(d, 0, 2), "\xf0\x9f\x98\x80", 4);
	assert_str(d, json_array_get(d, 0, 3), "\xf0\x9d\x84\x9e", 4);
	assert_str(d, json_array_get(d, 0, 4), "\xf4\x8f\xbf\xbf", 4);
	assert_str(d, json_array_get(d, 0, 5),
		   "caf\xc3\xa9 \xf0\x9f\x98\x80\x7f", 11);
	assert_str(d, json_array_get(d, 0, 6), "", 0);
	/* A C string cannot hold U+0000: refused, not truncated. */
	{
		char out[16] = "junk";

		ck_assert_int_eq(json_get_string(d, json_array_get(d, 0, 7),
						 out, sizeof(out), NULL),
				 JSON_E_NUL);
		ck_assert_str_eq(out, "");
	}
	tfree(&t);
}
END_TEST

START_TEST(test_get_string_bounds)
{
	struct tdoc t;
	char out[8];
	size_t n = 0;

	tparse(&t, "\"ab\\u00e9\"");
	/* "abé" is 4 bytes: needs cap 5. */
	ck_assert_int_eq(json_get_string(&t.d, 0, out, 4, &n), JSON_E_NOSPACE);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(json_get_string(&t.d, 0, NULL, 0, &n), JSON_E_NOSPACE);
	ck_assert_uint_eq(n, 4);
	memset(out, 'X', sizeof(out));
	ck_assert_int_eq(json_get_string(&t.d, 0, out, 5, &n), 0);
	ck_assert_str_eq(out, "ab\xc3\xa9");
	ck_assert_int_eq(out[5], 'X'); /* nothing written past cap */
	ck_assert_int_eq(json_get_string(&t.d, -1, out, 5, &n),
			 JSON_E_NOTFOUND);
	tfree(&t);

	/* Every capacity, in exact-size heap buffers: ASan sees overflows. */
	tparse(&t, "\"plain run \\u00e9\\n\\ud83d\\ude00 another run\"");
	for (size_t cap = 0; cap <= 32; cap++) {
		char *o = cap ? malloc(cap) : NULL;
		int rc = json_get_string(&t.d, 0, o, cap, &n);

		ck_assert_uint_eq(n, 29);
		if (cap <= 29) {
			ck_assert_int_eq(rc, JSON_E_NOSPACE);
			ck_assert(cap == 0 || o[0] == '\0');
		} else {
			ck_assert_int_eq(rc, 0);
			ck_assert_str_eq(o, "plain run \xc3\xa9\n"
					    "\xf0\x9f\x98\x80 another run");
		}
		free(o);
	}
	tfree(&t);

	tparse(&t, "[12]");
	ck_assert_int_eq(json_get_string(&t.d, 1, out, sizeof(out), &n),
			 JSON_E_TYPE);
	ck_assert_int_eq(json_get_string(&t.d, 0, out, sizeof(out), &n),
			 JSON_E_TYPE);
	tfree(&t);
}
END_TEST

START_TEST(test_obj_get_keys)
{
	struct tdoc t;
	struct json_doc *d = &t.d;
	int64_t v;

	tparse(&t, "{\"a\\u0063\":0,\"a\\u0062\":1,\"dup\":2,\"dup\":3,\"\":4,"
		   "\"n\":{\"ab\":5},"
		   "\"\\u00e9\":6,\"x\\u0000y\":7,\"ab\":8}");
	/* Escaped key matches after unescaping; first of two "ab" wins. */
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, 0, "ab"), &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, 0, "dup"), &v), 0);
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, 0, ""), &v), 0);
	ck_assert_int_eq(v, 4);
	ck_assert_int_eq(json_get_int64(d, json_obj_get(d, 0, "\xc3\xa9"), &v),
			 0);
	ck_assert_int_eq(v, 6);
	/* Nested keys are not top-level keys; prefixes do not match. */
	ck_assert_int_eq(
	    json_get_int64(d, json_obj_get(d, json_obj_get(d, 0, "n"), "ab"),
			   &v),
	    0);
	ck_assert_int_eq(v, 5);
	ck_assert_int_eq(json_obj_get(d, 0, "a"), -1);
	ck_assert_int_eq(json_obj_get(d, 0, "abc"), -1);
	ck_assert_int_eq(json_obj_get(d, 0, "x"), -1);
	ck_assert_int_eq(json_obj_get(d, 0, "\xc3"), -1);
	ck_assert(json_str_eq(d, 1, "ac"));
	ck_assert(!json_str_eq(d, 1, "ab"));
	ck_assert(json_str_eq(d, 3, "ab"));
	ck_assert(!json_str_eq(d, 3, "a"));
	ck_assert(!json_str_eq(d, 3, "abc"));
	ck_assert(!json_str_eq(d, 0, "ab"));
	tfree(&t);
}
END_TEST

START_TEST(test_iteration)
{
	struct tdoc t;
	struct json_doc *d = &t.d;
	static const char *keys[] = {"a", "b", "c", "d"};
	int k, v, i, a;
	int64_t x;

	tparse(&t, "{\"a\":{\"x\":[1,{\"y\":2}]},\"b\":[],\"c\":\"s\","
		   "\"d\":[10,[20,[30]],{\"e\":40},50]}");
	i = 0;
	for (k = json_first(d, 0); k >= 0; k = json_next(d, k), i++) {
		ck_assert_int_lt(i, 4);
		ck_assert(json_str_eq(d, k, keys[i]));
		v = json_obj_value(d, k);
		ck_assert_int_eq(v, json_obj_get(d, 0, keys[i]));
		/* A member's value has no siblings; a value is not a key. */
		ck_assert_int_eq(json_next(d, v), -1);
		ck_assert_int_eq(json_obj_value(d, v), -1);
	}
	ck_assert_int_eq(i, 4);
	a = json_obj_get(d, 0, "d");
	i = 0;
	for (v = json_first(d, a); v >= 0; v = json_next(d, v), i++)
		ck_assert_int_eq(v, json_array_get(d, a, i));
	ck_assert_int_eq(i, 4);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, a, 3), &x), 0);
	ck_assert_int_eq(x, 50);
	ck_assert_int_eq(json_first(d, json_obj_get(d, 0, "b")), -1);
	ck_assert_int_eq(json_first(d, json_obj_get(d, 0, "c")), -1);
	ck_assert_int_eq(json_next(d, -1), -1);
	ck_assert_int_eq(json_next(d, 0), -1);
	ck_assert_int_eq(json_obj_value(d, 0), -1);
	ck_assert_int_eq(json_obj_value(d, -1), -1);
	tfree(&t);
}
END_TEST

START_TEST(test_numbers)
{
	struct tdoc t;
	struct json_doc *d = &t.d;
	int64_t i;
	uint64_t u;
	double x;
	char big[200];

	tparse(&t, "[9223372036854775807,-9223372036854775808,"
		   "9223372036854775808,-9223372036854775809,"
		   "18446744073709551615,18446744073709551616,"
		   "1.0,1e3,-0,0,1e400,-1e400,1e-400,"
		   "123456789012345678901234567890]");
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 0), &i), 0);
	ck_assert(i == INT64_MAX);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 1), &i), 0);
	ck_assert(i == INT64_MIN);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 2), &i),
			 JSON_E_RANGE);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 3), &i),
			 JSON_E_RANGE);
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 2), &x), 0);
	ck_assert(x == 9223372036854775808.0);
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 3), &x), 0);
	ck_assert(x == -9223372036854775808.0);
	ck_assert_int_eq(json_get_uint64(d, json_array_get(d, 0, 4), &u), 0);
	ck_assert(u == UINT64_MAX);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 4), &i),
			 JSON_E_RANGE);
	ck_assert_int_eq(json_get_uint64(d, json_array_get(d, 0, 5), &u),
			 JSON_E_RANGE);
	ck_assert_int_eq(json_get_uint64(d, json_array_get(d, 0, 1), &u),
			 JSON_E_RANGE);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 6), &i),
			 JSON_E_TYPE);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 7), &i),
			 JSON_E_TYPE);
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 7), &x), 0);
	ck_assert(x == 1000.0);
	ck_assert_int_eq(json_get_int64(d, json_array_get(d, 0, 8), &i), 0);
	ck_assert_int_eq(i, 0);
	ck_assert_int_eq(json_get_uint64(d, json_array_get(d, 0, 8), &u), 0);
	ck_assert(u == 0);
	ck_assert_int_eq(json_get_uint64(d, json_array_get(d, 0, 9), &u), 0);
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 10), &x),
			 JSON_E_RANGE);
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 11), &x),
			 JSON_E_RANGE);
	x = 1;
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 12), &x), 0);
	ck_assert(x == 0.0);
	ck_assert_int_eq(json_get_double(d, json_array_get(d, 0, 13), &x), 0);
	ck_assert(x == 123456789012345678901234567890.0);
	tfree(&t);

	/* A number longer than the getter's stack buffer. */
	memset(big, '0', sizeof(big) - 1);
	big[0] = '[';
	big[1] = '1';
	big[2] = '.';
	big[sizeof(big) - 3] = '5';
	big[sizeof(big) - 2] = ']';
	big[sizeof(big) - 1] = '\0';
	tparse(&t, big);
	ck_assert_int_eq(json_get_double(&t.d, 1, &x), 0);
	ck_assert(x == 1.0);
	tfree(&t);
}
END_TEST

static const struct bad {
	const char *s;
	size_t n; /* 0: strlen(s) */
	int err;
} bad[] = {
    /* numbers */
    {"01", 0, JSON_E_NUMBER},
    {"[01]", 0, JSON_E_NUMBER},
    {"[-01]", 0, JSON_E_NUMBER},
    {"[00]", 0, JSON_E_NUMBER},
    {"-", 0, JSON_E_TRUNCATED},
    {"[-]", 0, JSON_E_NUMBER},
    {"[- 1]", 0, JSON_E_NUMBER},
    {"1.", 0, JSON_E_TRUNCATED},
    {"[1.]", 0, JSON_E_NUMBER},
    {"[1.e5]", 0, JSON_E_NUMBER},
    {".5", 0, JSON_E_NUMBER},
    {"[.5]", 0, JSON_E_NUMBER},
    {"1e", 0, JSON_E_TRUNCATED},
    {"[1e]", 0, JSON_E_NUMBER},
    {"[1e+]", 0, JSON_E_NUMBER},
    {"[1E-x]", 0, JSON_E_NUMBER},
    {"+1", 0, JSON_E_NUMBER},
    {"[1.2.3]", 0, JSON_E_NUMBER},
    {"[0x10]", 0, JSON_E_NUMBER},
    {"[1-2]", 0, JSON_E_NUMBER},
    {"[1a]", 0, JSON_E_NUMBER},
    {"NaN", 0, JSON_E_SYNTAX},
    {"[NaN]", 0, JSON_E_SYNTAX},
    {"Infinity", 0, JSON_E_SYNTAX},
    {"[-Infinity]", 0, JSON_E_NUMBER},
    /* literals */
    {"tru", 0, JSON_E_TRUNCATED},
    {"[tru]", 0, JSON_E_LITERAL},
    {"[truex]", 0, JSON_E_LITERAL},
    {"[nul]", 0, JSON_E_LITERAL},
    {"[nulL]", 0, JSON_E_LITERAL},
    {"[fals]", 0, JSON_E_LITERAL},
    {"[True]", 0, JSON_E_SYNTAX},
    {"[undefined]", 0, JSON_E_SYNTAX},
    /* strings */
    {"\"\\x\"", 0, JSON_E_ESCAPE},
    {"\"\\'\"", 0, JSON_E_ESCAPE},
    {"\"\\U0041\"", 0, JSON_E_ESCAPE},
    {"\"\\u12G4\"", 0, JSON_E_ESCAPE},
    {"\"\\u12\"", 0, JSON_E_ESCAPE},
    {"\"\\ud800\"", 0, JSON_E_SURROGATE},
    {"\"\\udc00\"", 0, JSON_E_SURROGATE},
    {"\"\\udfff\\udfff\"", 0, JSON_E_SURROGATE},
    {"\"\\ud800\\u0041\"", 0, JSON_E_SURROGATE},
    {"\"\\ud800\\ud800\"", 0, JSON_E_SURROGATE},
    {"\"\\ud800\\ue000\"", 0, JSON_E_SURROGATE},
    {"\"\\ud800\\n\"", 0, JSON_E_SURROGATE},
    {"\"\\ud800x\"", 0, JSON_E_SURROGATE},
    {"[\"\\ud83d\"]", 0, JSON_E_SURROGATE},
    {"\"a\tb\"", 0, JSON_E_CTRL},
    {"\"a\nb\"", 0, JSON_E_CTRL},
    {"\"\x1f\"", 0, JSON_E_CTRL},
    {"\"a\0b\"", 5, JSON_E_CTRL},
    {"'a'", 0, JSON_E_SYNTAX},
    {"\"abc", 0, JSON_E_TRUNCATED},
    {"[\"a", 0, JSON_E_TRUNCATED},
    {"\"\\", 0, JSON_E_TRUNCATED},
    {"\"\\u00", 0, JSON_E_TRUNCATED},
    {"\"\\ud800", 0, JSON_E_TRUNCATED},
    {"\"\\ud800\\", 0, JSON_E_TRUNCATED},
    {"\"\\ud800\\udc", 0, JSON_E_TRUNCATED},
    /* structure */
    {"[1,]", 0, JSON_E_SYNTAX},
    {"{\"a\":1,}", 0, JSON_E_SYNTAX},
    {"[,1]", 0, JSON_E_SYNTAX},
    {"[1,,2]", 0, JSON_E_SYNTAX},
    {"[1 2]", 0, JSON_E_SYNTAX},
    {"{\"a\" 1}", 0, JSON_E_SYNTAX},
    {"{\"a\":1 \"b\":2}", 0, JSON_E_SYNTAX},
    {"{'a':1}", 0, JSON_E_SYNTAX},
    {"['a']", 0, JSON_E_SYNTAX},
    {"{a:1}", 0, JSON_E_SYNTAX},
    {"{\"a\"}", 0, JSON_E_SYNTAX},
    {"{:1}", 0, JSON_E_SYNTAX},
    {"{\"a\":}", 0, JSON_E_SYNTAX},
    {"{\"a\"::1}", 0, JSON_E_SYNTAX},
    {"{1:2}", 0, JSON_E_SYNTAX},
    {"{null:2}", 0, JSON_E_SYNTAX},
    {"[1:2]", 0, JSON_E_SYNTAX},
    {"{\"a\":1:2}", 0, JSON_E_SYNTAX},
    {"[}", 0, JSON_E_SYNTAX},
    {"{]", 0, JSON_E_SYNTAX},
    {"[[]}", 0, JSON_E_SYNTAX},
    {"]", 0, JSON_E_SYNTAX},
    {"}", 0, JSON_E_SYNTAX},
    {",", 0, JSON_E_SYNTAX},
    {":", 0, JSON_E_SYNTAX},
    {"/*c*/{}", 0, JSON_E_SYNTAX},
    {"[1,/*c*/2]", 0, JSON_E_SYNTAX},
    {"{\"a\":{\"b\":[}}", 0, JSON_E_SYNTAX},
    {"[\v1]", 0, JSON_E_SYNTAX},
    {"[\f1]", 0, JSON_E_SYNTAX},
    {"\xef\xbb\xbf{}", 0, JSON_E_SYNTAX}, /* BOM */
    {"[\"a\"\xc3\xa9]", 0, JSON_E_SYNTAX},
    {"", 0, JSON_E_TRUNCATED},
    {" \n\t\r ", 0, JSON_E_TRUNCATED},
    {"[", 0, JSON_E_TRUNCATED},
    {"{", 0, JSON_E_TRUNCATED},
    {"{\"a\"", 0, JSON_E_TRUNCATED},
    {"{\"a\":", 0, JSON_E_TRUNCATED},
    {"[1", 0, JSON_E_TRUNCATED},
    {"[[1]", 0, JSON_E_TRUNCATED},
    /* trailing garbage */
    {"{\"a\":1}//c", 0, JSON_E_TRAILING},
    {"{\"a\":1} x", 0, JSON_E_TRAILING},
    {"{} {}", 0, JSON_E_TRAILING},
    {"[]]", 0, JSON_E_TRAILING},
    {"{\"a\":1}}", 0, JSON_E_TRAILING},
    {"1 2", 0, JSON_E_TRAILING},
    {"\"a\"\"b\"", 0, JSON_E_TRAILING},
    {"{\"a\":1}\0", 8, JSON_E_TRAILING},
    {"[1]\xc2\xa0", 0, JSON_E_TRAILING}, /* NBSP is not whitespace */
    /* UTF-8 */
    {"\"\xff\"", 0, JSON_E_UTF8},
    {"\"\xc3\"", 0, JSON_E_UTF8},
    {"\"\xc0\xaf\"", 0, JSON_E_UTF8},
    {"\"\xe0\x80\xaf\"", 0, JSON_E_UTF8},
    {"\"\xed\xa0\x80\"", 0, JSON_E_UTF8},
    {"\"\xf4\x90\x80\x80\"", 0, JSON_E_UTF8},
    {"\"\xf0\x9f\x98\"", 0, JSON_E_UTF8},
    {"[1]\xff", 0, JSON_E_UTF8},
    {"{\"\xe9\":1}", 0, JSON_E_UTF8},
    {"\x80", 0, JSON_E_UTF8},
};

START_TEST(test_malformed)
{
	const struct bad *b = &bad[_i];
	size_t n = b->n ? b->n : strlen(b->s);
	int rc = parse_n(b->s, n, NULL, NULL);

	ck_assert_msg(rc == b->err, "'%s': got %d (%s), want %d (%s)", b->s, rc,
		      json_strerror(rc), b->err, json_strerror(b->err));
	ck_assert_str_ne(json_strerror(rc), "unknown JSON error");
}
END_TEST

START_TEST(test_valid_edge_cases)
{
	static const char *ok[] = {
	    "0",
	    "-0",
	    "0.0",
	    "-0.0e-0",
	    "1E+2",
	    "1e-02",
	    "[0,1,-1]",
	    "123456789",
	    "\"\x7f\"",
	    "\"\\u0000\"",
	    "\"/\"",
	    "{\"\":\"\"}",
	    "[[[[[]]]]]",
	    "{\"a\":{\"a\":{\"a\":{}}}}",
	    "[true,false,null]",
	    "{\"a\":null}",
	    " \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n",
	    "{ \"a\" : 1 , \"b\" : [ ] }",
	    "\"\xf4\x8f\xbf\xbf\"",
	    "\"\xe2\x80\xa8\"",
	    "\"\\ud7ff\\ue000\\uffff\"",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(parse_s(ok[i]) == 0, "'%s' refused", ok[i]);
}
END_TEST

START_TEST(test_error_offsets)
{
	static const struct {
		const char *s;
		size_t off;
	} c[] = {
	    {"[1, 01]", 5},        {"{\"a\":1,}", 7},  {"\"ab\\x\"", 3},
	    {"[1]\xff", 3},        {"[\"\xc3(\"]", 3}, {"[1 2]", 3},
	    {"{} x", 3},           {"[\"a\tb\"]", 3},  {"[truex]", 5},
	    {"[\"\\ud800x\"]", 2},
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		size_t off = 999;

		ck_assert_int_lt(parse_n(c[i].s, strlen(c[i].s), NULL, &off),
				 0);
		ck_assert_msg(off == c[i].off, "'%s': offset %zu, want %zu",
			      c[i].s, off, c[i].off);
	}
}
END_TEST

/* A document using every construct; no proper prefix of it is JSON. */
static const char full_doc[] =
    "{\"type\":\"event\",\"id\":\"0b9e\\u00e9\\ud83d\\ude00\","
    "\"n\":[0,-1,2.5e-3,1E+10,true,false,null,[],{}],"
    "\"s\":\"caf\xc3\xa9 \xf0\x9f\x98\x80 \\\"q\\\" \\\\ \\/ \\n\","
    "\"payload\":{\"a\":{\"b\":[1,[2,[3]]]}}}";

START_TEST(test_truncated_prefixes)
{
	size_t len = strlen(full_doc);

	ck_assert_int_eq(parse_n(full_doc, len, NULL, NULL), 0);
	for (size_t n = 0; n < len; n++) {
		int rc = parse_n(full_doc, n, NULL, NULL);

		/* Cut inside a multi-byte character: invalid UTF-8 first. */
		ck_assert_msg(rc == JSON_E_TRUNCATED || rc == JSON_E_UTF8,
			      "prefix %zu: %d (%s)", n, rc, json_strerror(rc));
		if (rc == JSON_E_UTF8)
			ck_assert(!utf8_valid((const uint8_t *)full_doc, n));
	}
}
END_TEST

static char *
nested(unsigned depth, const char *open, const char *close)
{
	size_t lo = strlen(open), lc = strlen(close);
	char *s = malloc(depth * (lo + lc) + 1), *p = s;

	ck_assert_ptr_nonnull(s);
	for (unsigned i = 0; i < depth; i++, p += lo)
		memcpy(p, open, lo);
	for (unsigned i = 0; i < depth; i++, p += lc)
		memcpy(p, close, lc);
	*p = '\0';
	return s;
}

START_TEST(test_depth)
{
	struct json_limits lim = {.max_depth = 2};
	char *s;

	s = nested(JSON_DEFAULT_MAX_DEPTH, "[", "]");
	ck_assert_int_eq(parse_s(s), 0);
	free(s);
	s = nested(JSON_DEFAULT_MAX_DEPTH + 1, "[", "]");
	ck_assert_int_eq(parse_s(s), JSON_E_DEPTH);
	free(s);
	s = nested(JSON_DEFAULT_MAX_DEPTH + 1, "{\"k\":", "}");
	ck_assert_int_eq(parse_s(s), JSON_E_DEPTH);
	free(s);
	/* Deep but unterminated: the depth limit still trips first. */
	s = nested(100000, "[", "");
	ck_assert_int_eq(parse_s(s), JSON_E_DEPTH);
	free(s);

	ck_assert_int_eq(parse_n("[{}]", 4, &lim, NULL), 0);
	ck_assert_int_eq(parse_n("[{\"a\":[]}]", 10, &lim, NULL), JSON_E_DEPTH);
	ck_assert_int_eq(parse_n("[1,[2],3]", 9, &lim, NULL), 0);

	/* max_depth is clamped to JSON_MAX_DEPTH_CAP. */
	lim.max_depth = 100000;
	lim.max_tokens = 100000;
	s = nested(JSON_MAX_DEPTH_CAP, "[", "]");
	ck_assert_int_eq(parse_n(s, strlen(s), &lim, NULL), 0);
	free(s);
	s = nested(JSON_MAX_DEPTH_CAP + 1, "[", "]");
	ck_assert_int_eq(parse_n(s, strlen(s), &lim, NULL), JSON_E_DEPTH);
	free(s);
}
END_TEST

START_TEST(test_tokens)
{
	struct json_limits lim = {.max_tokens = 5};
	char *s = malloc(4 * 1024 + 8), *p;
	size_t off;

	/* {"a":[1,2]}: object, key, array, 1, 2. */
	ck_assert_int_eq(parse_n("{\"a\":[1,2]}", 11, &lim, NULL), 0);
	lim.max_tokens = 4;
	ck_assert_int_eq(parse_n("{\"a\":[1,2]}", 11, &lim, NULL),
			 JSON_E_TOKENS);
	/* The key is the token over the limit: the error points at it. */
	lim.max_tokens = 1;
	ck_assert_int_eq(parse_n("{\"a\":1}", 7, &lim, &off), JSON_E_TOKENS);
	ck_assert_uint_eq(off, 1);

	/* Default 1024: an array of 1023 elements fits, 1024 does not. */
	ck_assert_ptr_nonnull(s);
	p = s;
	*p++ = '[';
	for (int i = 0; i < 1023; i++)
		p += sprintf(p, "%s1", i ? "," : "");
	*p++ = ']';
	ck_assert_int_eq(parse_n(s, (size_t)(p - s), NULL, NULL), 0);
	p[-1] = ',';
	*p++ = '1';
	*p++ = ']';
	ck_assert_int_eq(parse_n(s, (size_t)(p - s), NULL, NULL),
			 JSON_E_TOKENS);
	free(s);
}
END_TEST

START_TEST(test_size_and_object)
{
	struct json_limits lim = {.max_size = 8};
	size_t off;

	ck_assert_int_eq(parse_n("[1,2,3] ", 8, &lim, NULL), 0);
	ck_assert_int_eq(parse_n("[1,2,3]  ", 9, &lim, &off), JSON_E_SIZE);
	ck_assert_uint_eq(off, 8);
	ck_assert_int_eq(parse_n("\"", 1, &lim, NULL), JSON_E_TRUNCATED);
	{
		struct json_doc d;

		ck_assert_int_eq(json_parse(&d, NULL, 5, NULL),
				 JSON_E_TRUNCATED);
	}

	lim.max_size = 0;
	lim.flags = JSON_REQUIRE_OBJECT;
	ck_assert_int_eq(parse_n(" {}", 3, &lim, NULL), 0);
	ck_assert_int_eq(parse_n("[1]", 3, &lim, NULL), JSON_E_NOT_OBJECT);
	ck_assert_int_eq(parse_n("\"x\"", 3, &lim, NULL), JSON_E_NOT_OBJECT);
	ck_assert_int_eq(parse_n(" 1", 2, &lim, &off), JSON_E_NOT_OBJECT);
	ck_assert_uint_eq(off, 1);
	ck_assert_int_eq(parse_n("", 0, &lim, NULL), JSON_E_TRUNCATED);
	ck_assert_int_eq(parse_n("{", 1, &lim, NULL), JSON_E_TRUNCATED);
	lim.flags = 0;
	ck_assert_int_eq(parse_n("[1]", 3, &lim, NULL), 0);
}
END_TEST

START_TEST(test_tok_raw)
{
	struct tdoc t;
	const char *p;
	size_t n;
	int pl;

	tparse(&t, "{\"type\":\"x\",\"payload\": {\"a\": [1, \"\\n\"], "
		   "\"b\":{}} ,\"n\":-1.5}");
	pl = json_obj_get(&t.d, 0, "payload");
	ck_assert_int_eq(json_tok_raw(&t.d, pl, &p, &n), 0);
	ck_assert_uint_eq(n, strlen("{\"a\": [1, \"\\n\"], \"b\":{}}"));
	ck_assert_mem_eq(p, "{\"a\": [1, \"\\n\"], \"b\":{}}", n);
	ck_assert_int_eq(
	    json_tok_raw(&t.d, json_obj_get(&t.d, 0, "type"), &p, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(p, "\"x\"", 3);
	ck_assert_int_eq(json_tok_raw(&t.d, json_obj_get(&t.d, 0, "n"), &p, &n),
			 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_mem_eq(p, "-1.5", 4);
	ck_assert_int_eq(json_tok_raw(&t.d, -1, &p, &n), JSON_E_NOTFOUND);
	tfree(&t);
}
END_TEST

START_TEST(test_strerror)
{
	ck_assert_str_eq(json_strerror(0), "success");
	ck_assert_str_eq(json_strerror(JSON_E_DEPTH), "JSON nested too deeply");
	for (int e = JSON_E_SYNTAX; e >= JSON_E_NUL; e--)
		ck_assert_str_ne(json_strerror(e), "unknown JSON error");
	ck_assert_str_eq(json_strerror(JSON_E_NUL - 1), "unknown JSON error");
	ck_assert_str_eq(json_strerror(1), "unknown JSON error");
	ck_assert_str_eq(json_strerror(-2147483647 - 1), "unknown JSON error");
}
END_TEST

/* ---- writer ------------------------------------------------------------ */

static void
assert_written(struct json_writer *w, const char *want)
{
	size_t n = 0;

	ck_assert_int_eq(json_w_finish(w, &n), 0);
	ck_assert_msg(n == strlen(want) && memcmp(w->buf, want, n) == 0,
		      "wrote '%.*s', want '%s'", (int)n, w->buf, want);
}

START_TEST(test_writer_basic)
{
	struct json_writer w;
	char buf[512];

	json_w_init(&w, buf, sizeof(buf));
	json_w_obj_begin(&w);
	json_w_key(&w, "type");
	json_w_str(&w, "event");
	json_w_key(&w, "payload");
	json_w_obj_begin(&w);
	json_w_key(&w, "a");
	json_w_arr_begin(&w);
	json_w_int(&w, -5);
	json_w_uint(&w, UINT64_MAX);
	json_w_bool(&w, true);
	json_w_bool(&w, false);
	json_w_null(&w);
	json_w_arr_begin(&w);
	json_w_arr_end(&w);
	json_w_obj_begin(&w);
	json_w_obj_end(&w);
	json_w_raw(&w, "{\"x\":1}", 7);
	json_w_double(&w, 0.1);
	json_w_arr_end(&w);
	json_w_key(&w, "t");
	json_w_timestamp(&w, 1795696496789ULL);
	json_w_obj_end(&w);
	json_w_keyn(&w, "k\0z", 3);
	json_w_strn(&w, "a\0b", 3);
	json_w_obj_end(&w);
	assert_written(&w, "{\"type\":\"event\",\"payload\":{\"a\":[-5,"
			   "18446744073709551615,true,false,null,[],{},"
			   "{\"x\":1},0.1],\"t\":\"2026-11-26T12:34:56.789Z\"},"
			   "\"k\\u0000z\":\"a\\u0000b\"}");

	json_w_init(&w, buf, sizeof(buf));
	json_w_str(&w, "top");
	assert_written(&w, "\"top\"");
	json_w_init(&w, buf, sizeof(buf));
	json_w_int(&w, INT64_MIN);
	assert_written(&w, "-9223372036854775808");
}
END_TEST

START_TEST(test_writer_escapes)
{
	struct json_writer w;
	char buf[64], in[2], want[16];

	for (int c = 0; c < 0x80; c++) {
		in[0] = (char)c;
		json_w_init(&w, buf, sizeof(buf));
		json_w_strn(&w, in, 1);
		switch (c) {
		case '"':
			strcpy(want, "\"\\\"\"");
			break;
		case '\\':
			strcpy(want, "\"\\\\\"");
			break;
		case '\b':
			strcpy(want, "\"\\b\"");
			break;
		case '\f':
			strcpy(want, "\"\\f\"");
			break;
		case '\n':
			strcpy(want, "\"\\n\"");
			break;
		case '\r':
			strcpy(want, "\"\\r\"");
			break;
		case '\t':
			strcpy(want, "\"\\t\"");
			break;
		default:
			if (c < 0x20)
				snprintf(want, sizeof(want), "\"\\u%04x\"", c);
			else
				snprintf(want, sizeof(want), "\"%c\"", c);
		}
		assert_written(&w, want);
	}
}
END_TEST

START_TEST(test_writer_utf8)
{
	static const struct {
		const char *in, *out;
	} c[] = {
	    {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
	    {"\xf0\x9f\x98\x80\xe2\x82\xac",
	     "\"\xf0\x9f\x98\x80\xe2\x82\xac\""},
	    {"\xff", "\"\xef\xbf\xbd\""},
	    {"a\xc3"
	     "A",
	     "\"a\xef\xbf\xbd"
	     "A\""},
	    {"\xe2\x82", "\"\xef\xbf\xbd\""},
	    {"\xf0\x9f\x98x", "\"\xef\xbf\xbdx\""},
	    {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xc3\xc3\xa9", "\"\xef\xbf\xbd\xc3\xa9\""},
	    {"\x80\"", "\"\xef\xbf\xbd\\\"\""},
	};
	struct json_writer w;
	char buf[64];
	size_t n;

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		json_w_init(&w, buf, sizeof(buf));
		json_w_str(&w, c[i].in);
		assert_written(&w, c[i].out);
		ck_assert_int_eq(json_w_finish(&w, &n), 0);
		ck_assert(utf8_valid((const uint8_t *)buf, n));
	}
}
END_TEST

START_TEST(test_writer_numbers)
{
	static const double dv[] = {0.1,      1.0 / 3, 1e300,  -1e-300,
				    DBL_MAX,  DBL_MIN, 5e-324, -0.0,
				    123456.0, 2.5e-3,  1e21,   -17.0};
	struct json_writer w;
	char buf[64];
	size_t n;

	json_w_init(&w, buf, sizeof(buf));
	json_w_double(&w, 0.1);
	assert_written(&w, "0.1");
	json_w_init(&w, buf, sizeof(buf));
	json_w_double(&w, -0.0);
	assert_written(&w, "-0");
	json_w_init(&w, buf, sizeof(buf));
	json_w_double(&w, 1e21);
	assert_written(&w, "1e+21");
	json_w_init(&w, buf, sizeof(buf));
	json_w_uint(&w, 0);
	assert_written(&w, "0");

	/* Every double reads back bit-identical through the parser. */
	for (size_t i = 0; i < sizeof(dv) / sizeof(dv[0]); i++) {
		struct json_doc d;
		double x;

		json_w_init(&w, buf, sizeof(buf));
		json_w_double(&w, dv[i]);
		ck_assert_int_eq(json_w_finish(&w, &n), 0);
		ck_assert_int_eq(json_parse(&d, buf, n, NULL), 0);
		ck_assert_int_eq(json_get_double(&d, 0, &x), 0);
		ck_assert(memcmp(&x, &dv[i], sizeof(x)) == 0);
		json_doc_free(&d);
	}

	json_w_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(json_w_double(&w, NAN), -1);
	ck_assert_int_eq(json_w_finish(&w, &n), -1);
	json_w_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(json_w_double(&w, -INFINITY), -1);
	ck_assert_int_eq(json_w_finish(&w, &n), -1);
}
END_TEST

START_TEST(test_writer_misuse)
{
	struct json_writer w;
	char buf[256];
	size_t n, before;

	json_w_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(json_w_finish(&w, &n), -1); /* nothing written */

	json_w_init(&w, buf, sizeof(buf));
	json_w_obj_begin(&w);
	ck_assert_int_eq(json_w_int(&w, 1), -1); /* value where key due */
	ck_assert_int_eq(json_w_finish(&w, &n), -1);

	json_w_init(&w, buf, sizeof(buf));
	json_w_arr_begin(&w);
	ck_assert_int_eq(json_w_key(&w, "k"), -1); /* key in array */

	json_w_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(json_w_key(&w, "k"), -1); /* key at top */

	json_w_init(&w, buf, sizeof(buf));
	json_w_obj_begin(&w);
	json_w_key(&w, "k");
	ck_assert_int_eq(json_w_key(&w, "k2"), -1); /* two keys */

	json_w_init(&w, buf, sizeof(buf));
	json_w_obj_begin(&w);
	json_w_key(&w, "k");
	ck_assert_int_eq(json_w_obj_end(&w), -1); /* key without value */

	json_w_init(&w, buf, sizeof(buf));
	json_w_obj_begin(&w);
	ck_assert_int_eq(json_w_arr_end(&w), -1); /* mismatched */

	json_w_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(json_w_arr_end(&w), -1); /* nothing open */

	json_w_init(&w, buf, sizeof(buf));
	json_w_arr_begin(&w);
	ck_assert_int_eq(json_w_finish(&w, &n), -1); /* unbalanced */

	json_w_init(&w, buf, sizeof(buf));
	json_w_int(&w, 1);
	ck_assert_int_eq(json_w_int(&w, 2), -1); /* two top-level values */
	ck_assert_int_eq(json_w_finish(&w, &n), -1);

	json_w_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(json_w_raw(&w, "", 0), -1);

	/* Depth limit. */
	json_w_init(&w, buf, sizeof(buf));
	for (int i = 0; i < JSON_W_MAX_DEPTH; i++)
		ck_assert_int_eq(json_w_arr_begin(&w), 0);
	ck_assert_int_eq(json_w_arr_begin(&w), -1);

	/* Sticky: nothing more is written after an error. */
	json_w_init(&w, buf, sizeof(buf));
	json_w_arr_begin(&w);
	json_w_key(&w, "bad");
	before = w.len;
	ck_assert_int_eq(json_w_str(&w, "more"), -1);
	ck_assert_int_eq(json_w_arr_end(&w), -1);
	ck_assert_uint_eq(w.len, before);
	ck_assert_int_eq(json_w_finish(&w, &n), -1);
}
END_TEST

/* Every writer call, in one document. */
static void
build_doc(struct json_writer *w)
{
	json_w_obj_begin(w);
	json_w_key(w, "type");
	json_w_str(w, "event");
	json_w_key(w, "id");
	json_w_str(w, "6f1c2a4e-2b1d-4c8a-9d3e-0a1b2c3d4e5f");
	json_w_key(w, "timestamp");
	json_w_timestamp(w, 1795696496789ULL);
	json_w_key(w, "payload");
	json_w_obj_begin(w);
	json_w_key(w, "esc\"\\\n");
	json_w_strn(w,
		    "\x01\x1f\"\\/\b\f\n\r\t\0caf\xc3\xa9\xf0\x9f\x98\x80"
		    "\xff\xc3",
		    22);
	json_w_keyn(w, "list", 4);
	json_w_arr_begin(w);
	json_w_int(w, INT64_MIN);
	json_w_uint(w, UINT64_MAX);
	json_w_double(w, 1.0 / 3);
	json_w_bool(w, true);
	json_w_bool(w, false);
	json_w_null(w);
	json_w_raw(w, "{\"r\":[1,2]}", 11);
	json_w_arr_begin(w);
	json_w_arr_end(w);
	json_w_obj_begin(w);
	json_w_obj_end(w);
	json_w_arr_end(w);
	json_w_obj_end(w);
	json_w_obj_end(w);
}

START_TEST(test_writer_roundtrip)
{
	struct json_writer w;
	struct json_doc d;
	char buf[1024], s[128];
	size_t n, sl;
	int pl, li, k;
	int64_t i;
	uint64_t u;
	double x;
	bool b;
	const char *raw;

	json_w_init(&w, buf, sizeof(buf));
	build_doc(&w);
	ck_assert_int_eq(json_w_finish(&w, &n), 0);
	ck_assert(utf8_valid((const uint8_t *)buf, n));
	ck_assert_int_eq(json_parse(&d, buf, n, NULL), 0);
	ck_assert(json_str_eq(&d, json_obj_get(&d, 0, "type"), "event"));
	ck_assert(json_str_eq(&d, json_obj_get(&d, 0, "timestamp"),
			      "2026-11-26T12:34:56.789Z"));
	pl = json_obj_get(&d, 0, "payload");
	k = json_first(&d, pl);
	assert_str(&d, k, "esc\"\\\n", 6);
	/* The \0 makes it unreadable as a C string; check the raw text. */
	ck_assert_int_eq(
	    json_get_string(&d, json_obj_value(&d, k), s, sizeof(s), &sl),
	    JSON_E_NUL);
	ck_assert_int_eq(json_tok_raw(&d, json_obj_value(&d, k), &raw, &sl), 0);
	{
		static const char want[] =
		    "\"\\u0001\\u001f\\\"\\\\/\\b\\f\\n\\r\\t\\u0000"
		    "caf\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbd\xef\xbf\xbd\"";

		ck_assert_uint_eq(sl, sizeof(want) - 1);
		ck_assert_mem_eq(raw, want, sl);
	}
	li = json_obj_get(&d, pl, "list");
	ck_assert_int_eq(json_array_len(&d, li), 9);
	ck_assert_int_eq(json_get_int64(&d, json_array_get(&d, li, 0), &i), 0);
	ck_assert(i == INT64_MIN);
	ck_assert_int_eq(json_get_uint64(&d, json_array_get(&d, li, 1), &u), 0);
	ck_assert(u == UINT64_MAX);
	ck_assert_int_eq(json_get_double(&d, json_array_get(&d, li, 2), &x), 0);
	ck_assert(x == 1.0 / 3);
	ck_assert_int_eq(json_get_bool(&d, json_array_get(&d, li, 3), &b), 0);
	ck_assert(b);
	ck_assert_int_eq(json_get_bool(&d, json_array_get(&d, li, 4), &b), 0);
	ck_assert(!b);
	ck_assert(json_is_null(&d, json_array_get(&d, li, 5)));
	ck_assert_int_eq(json_tok_raw(&d, json_array_get(&d, li, 6), &raw, &sl),
			 0);
	ck_assert_uint_eq(sl, 11);
	ck_assert_mem_eq(raw, "{\"r\":[1,2]}", 11);
	ck_assert_int_eq(json_array_len(&d, json_array_get(&d, li, 7)), 0);
	ck_assert_int_eq(json_obj_len(&d, json_array_get(&d, li, 8)), 0);
	json_doc_free(&d);

	/* Every string of 1 or 2 bytes survives write -> parse -> read. */
	for (int c1 = 1; c1 < 256; c1++) {
		for (int c2 = 0; c2 < 256; c2 += 7) {
			char in[2] = {(char)c1, (char)c2};
			size_t il = c2 ? 2 : 1;

			if (!utf8_valid((const uint8_t *)in, il))
				continue;
			json_w_init(&w, buf, sizeof(buf));
			json_w_strn(&w, in, il);
			ck_assert_int_eq(json_w_finish(&w, &n), 0);
			ck_assert_int_eq(json_parse(&d, buf, n, NULL), 0);
			assert_str(&d, 0, in, il);
			json_doc_free(&d);
		}
	}
}
END_TEST

START_TEST(test_writer_overflow)
{
	struct json_writer w;
	char full[1024], *buf;
	size_t len, n;

	json_w_init(&w, full, sizeof(full));
	build_doc(&w);
	ck_assert_int_eq(json_w_finish(&w, &len), 0);
	for (size_t cap = 0; cap <= len; cap++) {
		/* Exact-size heap buffer: any overflow is an ASan report. */
		buf = cap ? malloc(cap) : NULL;
		json_w_init(&w, buf, cap);
		build_doc(&w);
		ck_assert_uint_le(w.len, cap);
		if (cap < len) {
			ck_assert_msg(json_w_finish(&w, &n) == -1, "cap %zu",
				      cap);
			ck_assert(w.err);
			/* What was written is a prefix of the real output. */
			ck_assert(w.len == 0 || memcmp(buf, full, w.len) == 0);
		} else {
			ck_assert_int_eq(json_w_finish(&w, &n), 0);
			ck_assert_uint_eq(n, len);
			ck_assert_mem_eq(buf, full, len);
		}
		free(buf);
	}
}
END_TEST

/* ---- helpers ----------------------------------------------------------- */

static int
cmp_uuid(const void *a, const void *b)
{
	return memcmp(a, b, 37);
}

START_TEST(test_uuid)
{
	enum { N = 10000 };
	char(*u)[37] = malloc(N * sizeof(*u));
	unsigned seen[36][16];

	ck_assert_ptr_nonnull(u);
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(json_uuid_v4(u[i]), 0);
		ck_assert_uint_eq(strlen(u[i]), 36);
		for (int j = 0; j < 36; j++) {
			char c = u[i][j];

			if (j == 8 || j == 13 || j == 18 || j == 23) {
				ck_assert_int_eq(c, '-');
				continue;
			}
			ck_assert_msg((c >= '0' && c <= '9') ||
					  (c >= 'a' && c <= 'f'),
				      "%s", u[i]);
			seen[j][c <= '9' ? c - '0' : c - 'a' + 10]++;
		}
		ck_assert_int_eq(u[i][14], '4');
		ck_assert_ptr_nonnull(strchr("89ab", u[i][19]));
	}
	/* Random positions take every hex value; fixed ones do not. */
	for (int j = 0; j < 36; j++) {
		int distinct = 0;

		if (j == 8 || j == 13 || j == 18 || j == 23)
			continue;
		for (int v = 0; v < 16; v++)
			distinct += seen[j][v] > 0;
		ck_assert_int_eq(distinct, j == 14 ? 1 : j == 19 ? 4 : 16);
	}
	qsort(u, N, sizeof(*u), cmp_uuid);
	for (int i = 1; i < N; i++)
		ck_assert_str_ne(u[i - 1], u[i]);
	free(u);
}
END_TEST

START_TEST(test_iso8601)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} ok[] = {
	    {"1970-01-01T00:00:00Z", 0},
	    {"1970-01-01T00:00:00.001Z", 1},
	    {"2026-11-26T12:34:56.789Z", 1795696496789ULL},
	    {"2026-11-26t12:34:56.789z", 1795696496789ULL},
	    {"2026-11-26T14:34:56.789+02:00", 1795696496789ULL},
	    {"2026-11-26T14:34:56.789 02:00", 1795696496789ULL},
	    {"2026-11-26T07:04:56.789-05:30", 1795696496789ULL},
	    {"2026-11-26T12:34:56.7Z", 1795696496700ULL},
	    {"2026-11-26T12:34:56.78999999Z", 1795696496789ULL},
	    {"2026-11-26T12:34:56Z", 1795696496000ULL},
	    {"2024-02-29T00:00:00Z", 1709164800000ULL},
	    {"2000-02-29T00:00:00Z", 951782400000ULL},
	    {"1999-12-31T23:59:59.999Z", 946684799999ULL},
	    {"9999-12-31T23:59:59.999Z", 253402300799999ULL},
	    {"1970-01-01T01:00:00+01:00", 0},
	};
	static const char *bad_ts[] = {
	    "",
	    "2026",
	    "2026-11-26",
	    "2026-11-26T12:34:56",
	    "2026-11-26T12:34:56.Z",
	    "2026-11-26T12:34:56.789",
	    "2026-11-26T12:34:56+0200",
	    "2026-11-26T12:34:56+02",
	    "2026-11-26T12:34:56Zx",
	    "2026-11-26 12:34:56Z",
	    "2026-13-01T00:00:00Z",
	    "2026-00-01T00:00:00Z",
	    "2026-11-31T00:00:00Z",
	    "2026-11-00T00:00:00Z",
	    "2023-02-29T00:00:00Z",
	    "1900-02-29T00:00:00Z",
	    "2026-11-26T24:00:00Z",
	    "2026-11-26T12:60:00Z",
	    "2026-11-26T12:34:60Z",
	    "2026-11-26T12:34:56+24:00",
	    "2026-11-26T12:34:56+02:60",
	    "1969-12-31T23:59:59.999Z",
	    "1970-01-01T00:30:00+01:00",
	    "+02026-11-26T12:34:56Z",
	    "2026-1-26T12:34:56Z",
	    "2026-11-26T12:34:5Z",
	    "2026-11-26T12:34:56,789Z",
	    " 2026-11-26T12:34:56Z",
	};
	uint64_t v;
	char tmp[40], ts[40];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 42;
		ck_assert_msg(json_parse_iso8601_ms(ok[i].s, &v) == 0, "%s",
			      ok[i].s);
		ck_assert_msg(v == ok[i].ms, "%s: %" PRIu64, ok[i].s, v);
	}
	for (size_t i = 0; i < sizeof(bad_ts) / sizeof(bad_ts[0]); i++)
		ck_assert_msg(json_parse_iso8601_ms(bad_ts[i], &v) == -1, "%s",
			      bad_ts[i]);
	ck_assert_int_eq(json_parse_iso8601_ms(NULL, &v), -1);
	/* Every proper prefix of a valid time is refused (from the heap). */
	{
		const char *s = "2026-11-26T12:34:56.789+02:00";

		for (size_t n = 0; n < strlen(s); n++) {
			char *p = malloc(n + 1);

			memcpy(p, s, n);
			p[n] = '\0';
			ck_assert_msg(json_parse_iso8601_ms(p, &v) == -1, "%s",
				      p);
			free(p);
		}
	}
	/* Round trip with the writer's timestamps, over a range of times. */
	for (uint64_t ms = 0; ms < 253402300799999ULL; ms = ms * 3 + 12345677) {
		struct json_writer w;
		struct json_doc d;
		size_t n;

		json_w_init(&w, tmp, sizeof(tmp));
		json_w_timestamp(&w, ms);
		ck_assert_int_eq(json_w_finish(&w, &n), 0);
		ck_assert_uint_eq(n, 26);
		ck_assert_int_eq(json_parse(&d, tmp, n, NULL), 0);
		ck_assert_int_eq(json_get_string(&d, 0, ts, sizeof(ts), NULL),
				 0);
		json_doc_free(&d);
		ck_assert_int_eq(json_parse_iso8601_ms(ts, &v), 0);
		ck_assert_msg(v == ms, "%s: %" PRIu64 " != %" PRIu64, ts, v,
			      ms);
	}
}
END_TEST

/* ---- fuzz -------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t
rng(void)
{
	/* xorshift64*: reproducible from the seed printed on failure. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Re-serialize token t and everything under it. */
static void
reserialize(const struct json_doc *d, int t, struct json_writer *w)
{
	char s[512];
	const char *raw;
	size_t n;
	int64_t i;
	uint64_t u;
	double x;
	bool b;
	int rc;

	switch (json_type(d, t)) {
	case JSON_OBJECT:
		json_w_obj_begin(w);
		for (int k = json_first(d, t); k >= 0; k = json_next(d, k)) {
			rc = json_get_string(d, k, s, sizeof(s), &n);
			ck_assert(rc == 0 || rc == JSON_E_NUL ||
				  rc == JSON_E_NOSPACE);
			if (rc == 0)
				json_w_keyn(w, s, n);
			else
				json_w_key(w, "?");
			reserialize(d, json_obj_value(d, k), w);
		}
		json_w_obj_end(w);
		break;
	case JSON_ARRAY:
		ck_assert_int_ge(json_array_len(d, t), 0);
		json_w_arr_begin(w);
		for (int v = json_first(d, t); v >= 0; v = json_next(d, v))
			reserialize(d, v, w);
		json_w_arr_end(w);
		break;
	case JSON_STRING:
		rc = json_get_string(d, t, s, sizeof(s), &n);
		if (rc == 0) {
			ck_assert(utf8_valid((const uint8_t *)s, n));
			json_w_strn(w, s, n);
			break;
		}
		ck_assert(rc == JSON_E_NUL || rc == JSON_E_NOSPACE);
		ck_assert_int_eq(json_tok_raw(d, t, &raw, &n), 0);
		json_w_raw(w, raw, n);
		break;
	case JSON_NUMBER:
		/* Exercise the getters; the text is copied verbatim. */
		(void)json_get_int64(d, t, &i);
		(void)json_get_uint64(d, t, &u);
		rc = json_get_double(d, t, &x);
		ck_assert(rc == 0 || rc == JSON_E_RANGE);
		ck_assert_int_eq(json_tok_raw(d, t, &raw, &n), 0);
		json_w_raw(w, raw, n);
		break;
	case JSON_BOOL:
		ck_assert_int_eq(json_get_bool(d, t, &b), 0);
		json_w_bool(w, b);
		break;
	case JSON_NULL:
		json_w_null(w);
		break;
	default:
		ck_abort_msg("token %d has no type", t);
	}
}

/* Parse; if valid, write it back and check that the result is stable. */
static int
fuzz_one(const char *in, size_t len)
{
	static char out1[65536], out2[65536];
	struct json_writer w;
	struct json_doc d, d2;
	char *b = dup_exact(in, len);
	size_t n1, n2;
	int rc = json_parse(&d, b, len, NULL);

	ck_assert(rc <= 0 && rc >= JSON_E_SURROGATE);
	ck_assert(rc != JSON_E_INTERNAL && rc != JSON_E_NOT_OBJECT);
	if (rc < 0) {
		ck_assert_uint_le(d.err_off, len);
		free(b);
		return rc;
	}
	ck_assert(utf8_valid((const uint8_t *)b, len));
	json_w_init(&w, out1, sizeof(out1));
	reserialize(&d, 0, &w);
	ck_assert_int_eq(json_w_finish(&w, &n1), 0);
	json_doc_free(&d);
	free(b);

	ck_assert_int_eq(json_parse(&d2, out1, n1, NULL), 0);
	json_w_init(&w, out2, sizeof(out2));
	reserialize(&d2, 0, &w);
	ck_assert_int_eq(json_w_finish(&w, &n2), 0);
	ck_assert(n1 == n2 && memcmp(out1, out2, n1) == 0);
	json_doc_free(&d2);
	return 0;
}

START_TEST(test_fuzz)
{
	static const char alphabet[] = "{}[]\",:\\ \t\n0123456789-+.eEtrufalsn"
				       "ud8c0Ab/\x01\x7f\xc3\xa9\xf0\x9f\xff";
	static const char *corpus[] = {
	    full_doc,
	    "{\"type\":\"auth\",\"payload\":{\"accessToken\":\"x.y.z\","
	    "\"daemonId\":\"d1\",\"orchestratorId\":\"o1\",\"resumeFrom\":"
	    "42}}",
	    "[1,-2.5e+3,true,false,null,\"\\u00e9\\ud83d\\ude00\",{},[]]",
	    "{\"a\":{\"b\":{\"c\":[[[\"deep\"]]]}}}",
	};
	const char *seed_env = getenv("ORCHD_FUZZ_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : 0x5eed1234;
	char buf[256];
	int valid = 0, iters = 20000;

	rng_state = seed ? seed : 1;
	/* Random strings over a JSON-ish alphabet, and raw random bytes. */
	for (int it = 0; it < iters; it++) {
		size_t len = rng() % 48;

		for (size_t i = 0; i < len; i++)
			buf[i] = it % 4 == 0
				     ? (char)rng()
				     : alphabet[rng() % (sizeof(alphabet) - 1)];
		valid += fuzz_one(buf, len) == 0;
	}
	/* Mutations of valid documents: replace, insert, delete bytes. */
	for (int it = 0; it < iters; it++) {
		const char *src =
		    corpus[rng() % (sizeof(corpus) / sizeof(corpus[0]))];
		size_t len = strlen(src);
		int nmut = 1 + (int)(rng() % 3);

		memcpy(buf, src, len);
		for (int m = 0; m < nmut && len > 0; m++) {
			size_t pos = rng() % len;
			char c = rng() % 2
				     ? alphabet[rng() % (sizeof(alphabet) - 1)]
				     : (char)rng();

			switch (rng() % 3) {
			case 0:
				buf[pos] = c;
				break;
			case 1:
				if (len < sizeof(buf)) {
					memmove(buf + pos + 1, buf + pos,
						len - pos);
					buf[pos] = c;
					len++;
				}
				break;
			default:
				memmove(buf + pos, buf + pos + 1,
					len - pos - 1);
				len--;
			}
		}
		valid += fuzz_one(buf, len) == 0;
	}
	/* The loop must reach the valid path, not just the error paths. */
	ck_assert_msg(valid > 100, "only %d valid inputs (seed %" PRIu64 ")",
		      valid, seed);
}
END_TEST

static Suite *
json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("read");
	TCase *tw = tcase_create("write");
	TCase *th = tcase_create("helpers");
	TCase *tf = tcase_create("fuzz");

	tcase_add_test(tc, test_all_types);
	tcase_add_test(tc, test_top_level_scalars);
	tcase_add_test(tc, test_string_escapes);
	tcase_add_test(tc, test_get_string_bounds);
	tcase_add_test(tc, test_obj_get_keys);
	tcase_add_test(tc, test_iteration);
	tcase_add_test(tc, test_numbers);
	tcase_add_loop_test(tc, test_malformed, 0,
			    (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_valid_edge_cases);
	tcase_add_test(tc, test_error_offsets);
	tcase_add_test(tc, test_truncated_prefixes);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_tokens);
	tcase_add_test(tc, test_size_and_object);
	tcase_add_test(tc, test_tok_raw);
	tcase_add_test(tc, test_strerror);
	suite_add_tcase(s, tc);

	tcase_add_test(tw, test_writer_basic);
	tcase_add_test(tw, test_writer_escapes);
	tcase_add_test(tw, test_writer_utf8);
	tcase_add_test(tw, test_writer_numbers);
	tcase_add_test(tw, test_writer_misuse);
	tcase_add_test(tw, test_writer_roundtrip);
	tcase_add_test(tw, test_writer_overflow);
	suite_add_tcase(s, tw);

	tcase_add_test(th, test_uuid);
	tcase_add_test(th, test_iso8601);
	suite_add_tcase(s, th);

	tcase_set_timeout(tf, 120);
	tcase_add_test(tf, test_fuzz);
	suite_add_tcase(s, tf);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
