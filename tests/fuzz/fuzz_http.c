/*
 * fuzz_http: the HTTP/1.1 request-head parser (http_parse_request) and the
 * helpers that read a parsed head: header look-up, token lists, the query
 * parameters and percent-decoding.
 *
 * Input: byte 0 picks the head size limit, the rest is the request.
 * Invariants: a complete head is never longer than the input or the limit;
 * every string of the parsed head lies inside the input; every shorter
 * prefix of an accepted head asks for more bytes; the head parses the
 * same from exactly its own bytes; a decoded string fits its buffer
 * and is NUL-terminated at the length returned.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/http.h"

FUZZ_DECLARE(http);

static void
in_buf(const struct http_str *s, const char *buf, size_t len)
{
	if (s->len == 0)
		return;
	FUZZ_ASSERT(s->p >= buf && s->p + s->len <= buf + len);
}

static void
check_decode(const struct http_str *s)
{
	char out[256];
	int n;

	for (int plus = 0; plus <= 1; plus++) {
		n = http_percent_decode(s, out, sizeof(out), plus);
		FUZZ_ASSERT(n >= -1 && n < (int)sizeof(out));
		if (n >= 0) {
			FUZZ_ASSERT(out[n] == '\0');
			FUZZ_ASSERT(strlen(out) == (size_t)n);
		}
	}
}

int
FUZZ_INIT(http)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(http)(const uint8_t *data, size_t size)
{
	static const char *const params[] = {"limit", "since", "token", ""};
	static const char *const names[] = {"Host",
					    "Connection",
					    "Upgrade",
					    "Sec-WebSocket-Key",
					    "Sec-WebSocket-Version",
					    "Sec-WebSocket-Extensions",
					    "Authorization",
					    "Content-Length",
					    "Transfer-Encoding",
					    "Origin"};
	struct http_request req;
	const char *buf;
	size_t len, max_head;
	int rc;

	if (size < 1)
		return 0;
	/* 64..8192, the daemon's own limit most often. */
	max_head =
	    data[0] < 128 ? HTTP_MAX_HEAD_SIZE : 64 + (data[0] - 128) * 64;
	buf = (const char *)data + 1;
	len = size - 1;
	memset(&req, 0, sizeof(req));
	rc = http_parse_request(buf, len, max_head, &req);
	if (rc <= 0) {
		/* A refusal is an HTTP status the connection can answer. */
		FUZZ_ASSERT(rc == 0 || (rc <= -400 && rc >= -599));
		if (rc < 0)
			FUZZ_ASSERT(http_status_text(-rc) != NULL);
		return 0;
	}
	FUZZ_ASSERT((size_t)rc <= len && (size_t)rc <= max_head);
	FUZZ_ASSERT(req.nheaders >= 0 && req.nheaders <= HTTP_MAX_HEADERS);
	in_buf(&req.method_str, buf, len);
	in_buf(&req.target, buf, len);
	in_buf(&req.path, buf, len);
	in_buf(&req.query, buf, len);
	for (int i = 0; i < req.nheaders; i++) {
		in_buf(&req.headers[i].name, buf, len);
		in_buf(&req.headers[i].value, buf, len);
		check_decode(&req.headers[i].value);
	}
	check_decode(&req.path);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct http_str *v = http_header_get(&req, names[i]);

		if (v != NULL) {
			in_buf(v, buf, len);
			(void)http_token_list_has(v, "upgrade");
			(void)http_token_list_has(v, "permessage-deflate");
			(void)http_str_eq(v, "websocket");
		}
	}
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		char out[64];
		int n = http_query_param(&req, params[i], out, sizeof(out));

		FUZZ_ASSERT(n >= -2 && n < (int)sizeof(out));
		if (n >= 0)
			FUZZ_ASSERT(out[n] == '\0' && strlen(out) == (size_t)n);
	}
	/*
	 * Bytes arrive a read at a time: every shorter prefix of a head the
	 * parser accepts asks for more, it is neither refused nor taken for
	 * a shorter head.
	 */
	for (size_t k = 0; k < (size_t)rc; k += 1 + k / 4) {
		struct http_request part;
		int prc;

		memset(&part, 0, sizeof(part));
		prc = http_parse_request(buf, k, max_head, &part);
		FUZZ_ASSERT(prc == 0);
	}
	/* The head is self-delimiting: its own bytes parse the same. */
	{
		struct http_request again;

		memset(&again, 0, sizeof(again));
		FUZZ_ASSERT(http_parse_request(buf, (size_t)rc, max_head,
					       &again) == rc);
		FUZZ_ASSERT(again.nheaders == req.nheaders &&
			    again.method == req.method &&
			    again.content_length == req.content_length &&
			    again.keep_alive == req.keep_alive);
	}
	return 0;
}
