/*
 * http: HTTP/1.1 request-head parsing and response formatting.
 *
 * Pure code, no I/O: the caller hands in the bytes it has and gets back
 * either "need more", a parsed head, or the HTTP status to answer with.
 */
#ifndef ORCHD_HTTP_H
#define ORCHD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_HEAD_SIZE 8192

enum http_method {
	HTTP_METHOD_OTHER = 0,
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_POST,
	HTTP_METHOD_PUT,
	HTTP_METHOD_DELETE,
	HTTP_METHOD_OPTIONS,
};

struct http_str {
	const char *p; /* points into the caller's buffer; not NUL-terminated */
	size_t len;
};

struct http_header {
	struct http_str name;
	struct http_str value; /* leading/trailing whitespace trimmed */
};

struct http_request {
	enum http_method method;
	struct http_str method_str;
	struct http_str target; /* raw request-target */
	struct http_str path;   /* target up to '?' (not decoded) */
	struct http_str query;  /* after '?', may be empty */
	int version_minor;      /* HTTP/1.<minor> */
	struct http_header headers[HTTP_MAX_HEADERS];
	int nheaders;
	int keep_alive;          /* after Connection and version rules */
	uint64_t content_length; /* 0 when absent */
	int has_content_length;
	int chunked;
	/* Set by the connection, not the parser: the whole body, if held. */
	const uint8_t *body;
	size_t body_len;
};

/*
 * Parse one request head from buf[0..len).  Returns the head's length in
 * bytes (> 0) when complete, 0 when more bytes are needed, or -status (for
 * example -400, -431, -501) when the request must be refused.  max_head is
 * the limit on the head's size (431 beyond it).
 */
int http_parse_request(const char *buf, size_t len, size_t max_head,
		       struct http_request *req);

/* Case-insensitive header look-up; NULL if absent. */
const struct http_str *http_header_get(const struct http_request *req,
				       const char *name);

/* Does a comma-separated header value contain token (case-insensitive)? */
int http_token_list_has(const struct http_str *value, const char *token);

/* Does s equal the NUL-terminated c (case-sensitive)? */
int http_str_eq(const struct http_str *s, const char *c);

/*
 * Percent-decode in into out (NUL-terminated, size bytes with the NUL);
 * '+' becomes a space when plus_is_space (query strings).  Returns the
 * decoded length, or -1 on a malformed escape, an encoded NUL, or no room.
 */
int http_percent_decode(const struct http_str *in, char *out, size_t size,
			int plus_is_space);

/*
 * The decoded value of query parameter name (first occurrence) into out.
 * Returns its length, -1 if malformed or too long, -2 if absent.
 */
int http_query_param(const struct http_request *req, const char *name,
		     char *out, size_t size);

const char *http_status_text(int status);

/*
 * Format a whole response into buf (size bytes): status line, Date-less
 * minimal headers, Content-Type and Content-Length, extra_headers (each
 * line ending in CRLF, or NULL), Connection: close when !keep_alive, then body (omitted when head_only).  Returns the length, or
 * -1 if it does not fit.
 */
int http_format_response(char *buf, size_t size, int status,
			 const char *content_type, const char *extra_headers,
			 const char *body, size_t body_len, int keep_alive,
			 int head_only);

/*
 * The JSON error body used for every HTTP error:
 * {"error":"<text>","code":"<CODE>"}.  Returns the length or -1.
 */
int http_error_body(char *buf, size_t size, int status);

#endif
