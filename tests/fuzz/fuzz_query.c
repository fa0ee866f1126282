/*
 * fuzz_query: the query of GET /api/daemon/events as api.c reads it
 * (events_query(), static there): http_query_param() for "limit" and
 * "since", util_parse_u64() in 1..QUEUE_BATCH_MAX, and
 * json_parse_iso8601_ms().
 *
 * Input: the query string (after the '?'), put in a request line that
 * http_parse_request() must accept (the daemon never sees another); the
 * same bytes also go to the two value parsers directly.
 * Invariants: a decoded parameter fits its buffer and is NUL-terminated at
 * the length returned; an accepted limit is in range and prints back to
 * the same number; an accepted time is one that util_iso8601_ms() renders
 * back to the same milliseconds.
 */
#include "fuzz.h"

#include <inttypes.h>
#include <string.h>

#include "orchd/http.h"
#include "orchd/json.h"
#include "orchd/queue.h"
#include "orchd/util.h"

FUZZ_DECLARE(query);

#define MAX_QUERY 1024

int
FUZZ_INIT(query)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(query)(const uint8_t *data, size_t size)
{
	static char line[MAX_QUERY + 64];
	struct http_request req;
	char v[64], back[64];
	uint64_t u, ms, ms2;
	int n;

	if (size > MAX_QUERY)
		return 0;
	/* The query as it reaches api.c: inside a request the parser took. */
	n = snprintf(line, sizeof(line),
		     "GET /api/daemon/events?%.*s HTTP/1.1"
		     "\r\nHost: h\r\n\r\n",
		     (int)size, (const char *)data);
	memset(&req, 0, sizeof(req));
	if (memchr(data, '\0', size) != NULL ||
	    http_parse_request(line, (size_t)n, sizeof(line), &req) != n)
		goto raw;
	n = http_query_param(&req, "limit", v, sizeof(v));
	FUZZ_ASSERT(n >= -2 && n < (int)sizeof(v));
	if (n >= 0) {
		FUZZ_ASSERT(v[n] == '\0' && strlen(v) == (size_t)n);
		if (util_parse_u64(v, 1, QUEUE_BATCH_MAX, &u) == 0) {
			FUZZ_ASSERT(u >= 1 && u <= QUEUE_BATCH_MAX);
			snprintf(back, sizeof(back), "%" PRIu64, u);
			FUZZ_ASSERT(util_parse_u64(back, 1, QUEUE_BATCH_MAX,
						   &ms2) == 0 &&
				    ms2 == u);
		}
	}
	n = http_query_param(&req, "since", v, sizeof(v));
	FUZZ_ASSERT(n >= -2 && n < (int)sizeof(v));
	if (n >= 0) {
		FUZZ_ASSERT(v[n] == '\0' && strlen(v) == (size_t)n);
		if (json_parse_iso8601_ms(v, &ms) == 0) {
			util_iso8601_ms(ms, back, sizeof(back));
			FUZZ_ASSERT(json_parse_iso8601_ms(back, &ms2) == 0);
			FUZZ_ASSERT(ms2 == ms);
		}
	}
raw:
	/* The parsers alone, on the raw bytes as a C string. */
	if (size < sizeof(v)) {
		memcpy(v, data, size);
		v[size] = '\0';
		if (json_parse_iso8601_ms(v, &ms) == 0) {
			util_iso8601_ms(ms, back, sizeof(back));
			FUZZ_ASSERT(json_parse_iso8601_ms(back, &ms2) == 0 &&
				    ms2 == ms);
		}
		if (util_parse_u64(v, 0, UINT64_MAX, &u) == 0) {
			snprintf(back, sizeof(back), "%" PRIu64, u);
			FUZZ_ASSERT(strcmp(back, v) == 0 ||
				    (v[0] == '0' || v[0] == '+'));
		}
	}
	return 0;
}
