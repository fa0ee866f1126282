/* Unit tests for the HTTP/1.1 request-head parser and response formatter. */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/http.h"

static int
parse(const char *s, struct http_request *req)
{
	return http_parse_request(s, strlen(s), HTTP_MAX_HEAD_SIZE, req);
}

START_TEST(test_simple_get)
{
	struct http_request req;
	const char *s = "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";

	ck_assert_int_eq(parse(s, &req), (int)strlen(s));
	ck_assert_int_eq(req.method, HTTP_METHOD_GET);
	ck_assert(http_str_eq(&req.path, "/healthz"));
	ck_assert(http_str_eq(&req.query, "x=1"));
	ck_assert_int_eq(req.version_minor, 1);
	ck_assert_int_eq(req.keep_alive, 1);
	ck_assert_int_eq(req.nheaders, 1);
}
END_TEST

START_TEST(test_incomplete)
{
	struct http_request req;
	const char *full = "GET / HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n";

	/* Every strict prefix needs more bytes. */
	for (size_t i = 0; i < strlen(full); i++)
		ck_assert_msg(http_parse_request(full, i, HTTP_MAX_HEAD_SIZE,
						 &req) == 0,
			      "prefix %zu", i);
	ck_assert_int_eq(parse(full, &req), (int)strlen(full));
}
END_TEST

START_TEST(test_bare_lf_and_leading_crlf)
{
	struct http_request req;
	const char *s = "\r\n\nGET / HTTP/1.1\nHost: a\n\n";

	ck_assert_int_eq(parse(s, &req), (int)strlen(s));
	ck_assert(http_str_eq(&req.path, "/"));
}
END_TEST

START_TEST(test_header_case_and_trim)
{
	struct http_request req;
	const struct http_str *v;

	ck_assert_int_gt(parse("GET / HTTP/1.1\r\nhOsT: a\r\n"
			       "X-Thing: \t value with space \t\r\n\r\n",
			       &req),
			 0);
	v = http_header_get(&req, "x-thing");
	ck_assert_ptr_nonnull(v);
	ck_assert(http_str_eq(v, "value with space"));
	ck_assert_ptr_null(http_header_get(&req, "X-Absent"));
}
END_TEST

START_TEST(test_connection_rules)
{
	struct http_request req;

	ck_assert_int_gt(parse("GET / HTTP/1.1\r\nHost: a\r\n"
			       "Connection: keep-alive, Close\r\n\r\n",
			       &req),
			 0);
	ck_assert_int_eq(req.keep_alive, 0);
	ck_assert_int_gt(parse("GET / HTTP/1.0\r\n\r\n", &req), 0);
	ck_assert_int_eq(req.keep_alive, 0);
	ck_assert_int_gt(
		parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
		      &req),
		0);
	ck_assert_int_eq(req.keep_alive, 1);
}
END_TEST

START_TEST(test_token_list)
{
	struct http_str v = {"Upgrade , keep-alive", 20};

	ck_assert(http_token_list_has(&v, "upgrade"));
	ck_assert(http_token_list_has(&v, "KEEP-ALIVE"));
	ck_assert(!http_token_list_has(&v, "keep"));
	ck_assert(!http_token_list_has(&v, "close"));
}
END_TEST

START_TEST(test_methods)
{
	struct http_request req;

	ck_assert_int_gt(parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	ck_assert_int_eq(req.method, HTTP_METHOD_HEAD);
	ck_assert_int_gt(parse("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", &req),
			 0);
	ck_assert_int_eq(req.method, HTTP_METHOD_DELETE);
	ck_assert_int_gt(parse("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", &req), 0);
	ck_assert_int_eq(req.method, HTTP_METHOD_OTHER);
	ck_assert(http_str_eq(&req.method_str, "BREW"));
}
END_TEST

/* Malformed heads and the status each must get. */
static const struct {
	const char *in;
	int status;
} bad[] = {
	{"garbage\r\n\r\n", 400},
	{"GET\r\n\r\n", 400},
	{"GET /\r\n\r\n", 400},
	{" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
	{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
	{"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400},
	{"GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\n\r\n", 400}, /* no Host */
	{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nNoColon\r\nHost: a\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
	 "Content-Length: 2\r\n\r\n",
	 400},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: "
	 "99999999999999999999\r\n\r\n",
	 413},
	{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	 411},
	{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
	 501},
	{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	 "Content-Length: 3\r\n\r\n",
	 400},
	{"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
};

START_TEST(test_bad_heads)
{
	struct http_request req;

	ck_assert_msg(parse(bad[_i].in, &req) == -bad[_i].status,
		      "case %d: got %d, want %d", _i, parse(bad[_i].in, &req),
		      -bad[_i].status);
}
END_TEST

START_TEST(test_limits)
{
	struct http_request req;
	char *big = malloc(HTTP_MAX_HEAD_SIZE + 64);
	size_t n;

	/* A request line that never ends: 414. */
	memset(big, 'a', HTTP_MAX_HEAD_SIZE + 10);
	memcpy(big, "GET /", 5);
	ck_assert_int_eq(http_parse_request(big, HTTP_MAX_HEAD_SIZE + 10,
					    HTTP_MAX_HEAD_SIZE, &req),
			 -414);
	/* Headers past the limit: 431. */
	n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(big + n, 'b', HTTP_MAX_HEAD_SIZE);
	ck_assert_int_eq(http_parse_request(big, n + HTTP_MAX_HEAD_SIZE,
					    HTTP_MAX_HEAD_SIZE, &req),
			 -431);
	free(big);

	/* More than HTTP_MAX_HEADERS headers: 431. */
	{
		char buf[4096];
		size_t off = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");

		for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
			off += (size_t)sprintf(buf + off, "H%d: v\r\n", i);
		off += (size_t)sprintf(buf + off, "\r\n");
		ck_assert_int_eq(http_parse_request(buf, off, sizeof(buf),
						    &req),
				 -431);
	}
}
END_TEST

START_TEST(test_pipelined)
{
	struct http_request req;
	const char *s = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
			"GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
	int n = parse(s, &req);

	ck_assert_int_eq(n, (int)strlen(s) / 2);
	ck_assert(http_str_eq(&req.path, "/a"));
	ck_assert_int_eq(parse(s + n, &req), n);
	ck_assert(http_str_eq(&req.path, "/b"));
}
END_TEST

START_TEST(test_content_length)
{
	struct http_request req;

	ck_assert_int_gt(parse("POST / HTTP/1.1\r\nHost: a\r\n"
			       "Content-Length: 12\r\nContent-Length: 12\r\n\r\n",
			       &req),
			 0);
	ck_assert_int_eq(req.has_content_length, 1);
	ck_assert_uint_eq(req.content_length, 12);
}
END_TEST

START_TEST(test_format_response)
{
	char buf[512];
	int n = http_format_response(buf, sizeof(buf), 200, "text/plain",
				     "X-A: b\r\n", "hello", 5, 1, 0);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	ck_assert_ptr_nonnull(strstr(buf, "Content-Length: 5\r\n"));
	ck_assert_ptr_nonnull(strstr(buf, "X-A: b\r\n"));
	ck_assert_ptr_null(strstr(buf, "Connection: close"));
	ck_assert(memcmp(buf + n - 9, "\r\n\r\nhello", 9) == 0);

	n = http_format_response(buf, sizeof(buf), 404, "text/plain", NULL,
				 "hello", 5, 0, 1);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "Connection: close\r\n"));
	ck_assert_ptr_nonnull(strstr(buf, "Content-Length: 5\r\n"));
	ck_assert(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0); /* HEAD */

	ck_assert_int_eq(http_format_response(buf, 20, 200, "text/plain",
					      NULL, "x", 1, 1, 0),
			 -1);
}
END_TEST

START_TEST(test_error_body)
{
	char buf[128];
	int n = http_error_body(buf, sizeof(buf), 404);

	ck_assert_int_gt(n, 0);
	ck_assert_str_eq(buf, "{\"error\":\"Not Found\",\"code\":\"NOT_FOUND\"}");
	ck_assert_str_eq(http_status_text(431),
			 "Request Header Fields Too Large");
}
END_TEST

START_TEST(test_percent_decode)
{
	char out[64];
	struct http_str a = {"/daemon%2Fws%20x", 16};
	struct http_str bad1 = {"/a%2", 4}, bad2 = {"/a%zz", 5};
	struct http_str nul = {"/a%00b", 6}, plus = {"a+b%2B", 6};

	ck_assert_int_eq(http_percent_decode(&a, out, sizeof(out), 0), 12);
	ck_assert_str_eq(out, "/daemon/ws x");
	ck_assert_int_eq(http_percent_decode(&bad1, out, sizeof(out), 0), -1);
	ck_assert_int_eq(http_percent_decode(&bad2, out, sizeof(out), 0), -1);
	ck_assert_int_eq(http_percent_decode(&nul, out, sizeof(out), 0), -1);
	ck_assert_int_eq(http_percent_decode(&plus, out, sizeof(out), 1), 4);
	ck_assert_str_eq(out, "a b+");
	ck_assert_int_eq(http_percent_decode(&plus, out, sizeof(out), 0), 4);
	ck_assert_str_eq(out, "a+b+");
	ck_assert_int_eq(http_percent_decode(&a, out, 5, 0), -1); /* no room */
}
END_TEST

START_TEST(test_query_param)
{
	struct http_request req;
	char out[64];

	ck_assert_int_gt(parse("GET /e?since=2026-01-01T00%3A00%3A00Z&limit=5"
			       "&x&empty= HTTP/1.1\r\nHost: a\r\n\r\n",
			       &req),
			 0);
	ck_assert_int_eq(http_query_param(&req, "since", out, sizeof(out)), 20);
	ck_assert_str_eq(out, "2026-01-01T00:00:00Z");
	ck_assert_int_eq(http_query_param(&req, "limit", out, sizeof(out)), 1);
	ck_assert_str_eq(out, "5");
	ck_assert_int_eq(http_query_param(&req, "x", out, sizeof(out)), 0);
	ck_assert_int_eq(http_query_param(&req, "empty", out, sizeof(out)), 0);
	ck_assert_int_eq(http_query_param(&req, "nope", out, sizeof(out)), -2);
}
END_TEST

/* Random bytes never crash the parser or make it read out of bounds. */
START_TEST(test_fuzz_random)
{
	struct http_request req;
	unsigned seed = 12345;
	char buf[512];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
		char *copy;
		int rc;

		for (size_t i = 0; i < len; i++)
			buf[i] = "GET /HTP1.\r\n: aHost"[rand_r(&seed) % 20];
		copy = malloc(len ? len : 1); /* exact size: ASan sees overruns */
		memcpy(copy, buf, len);
		rc = http_parse_request(copy, len, HTTP_MAX_HEAD_SIZE, &req);
		ck_assert(rc <= (int)len);
		free(copy);
	}
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_simple_get);
	tcase_add_test(tc, test_incomplete);
	tcase_add_test(tc, test_bare_lf_and_leading_crlf);
	tcase_add_test(tc, test_header_case_and_trim);
	tcase_add_test(tc, test_connection_rules);
	tcase_add_test(tc, test_token_list);
	tcase_add_test(tc, test_methods);
	tcase_add_loop_test(tc, test_bad_heads, 0,
			    (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_pipelined);
	tcase_add_test(tc, test_content_length);
	tcase_add_test(tc, test_format_response);
	tcase_add_test(tc, test_error_body);
	tcase_add_test(tc, test_percent_decode);
	tcase_add_test(tc, test_query_param);
	tcase_add_test(tc, test_fuzz_random);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(http_suite());
}
