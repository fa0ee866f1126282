/*
 * http: HTTP/1.1 request-head parsing (RFC 9112) and response formatting.
 *
 * The parser is strict where leniency has bitten servers before: bare LF is
 * accepted as a line end (RFC 9112 section 2.2 allows it) but a bare CR is
 * not, obsolete line folding is refused, whitespace before the colon is
 * refused (request smuggling), and Content-Length must be one decimal value
 * (duplicates must agree).  It never reads past len and never writes to the
 * buffer.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "orchd/http.h"

static const struct {
	const char *name;
	enum http_method m;
} methods[] = {
	{"GET", HTTP_METHOD_GET},       {"HEAD", HTTP_METHOD_HEAD},
	{"POST", HTTP_METHOD_POST},     {"PUT", HTTP_METHOD_PUT},
	{"DELETE", HTTP_METHOD_DELETE}, {"OPTIONS", HTTP_METHOD_OPTIONS},
};

/* RFC 9110 tchar */
static int
is_tchar(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

/* Find the end of the line starting at p; returns pointer to '\n' or NULL. */
static const char *
find_eol(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl;
}

int
http_str_eq(const struct http_str *s, const char *c)
{
	size_t n = strlen(c);

	return s->len == n && memcmp(s->p, c, n) == 0;
}

static int
str_ieq(const struct http_str *s, const char *c)
{
	size_t n = strlen(c);

	return s->len == n && strncasecmp(s->p, c, n) == 0;
}

const struct http_str *
http_header_get(const struct http_request *req, const char *name)
{
	for (int i = 0; i < req->nheaders; i++)
		if (str_ieq(&req->headers[i].name, name))
			return &req->headers[i].value;
	return NULL;
}

int
http_token_list_has(const struct http_str *value, const char *token)
{
	size_t tlen = strlen(token);
	const char *p = value->p, *end = value->p + value->len;

	while (p < end) {
		const char *q, *e;

		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		q = p;
		while (q < end && *q != ',')
			q++;
		e = q;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == tlen && strncasecmp(p, token, tlen) == 0)
			return 1;
		p = q;
	}
	return 0;
}

static int
parse_request_line(const char *p, const char *eol, struct http_request *req)
{
	const char *sp1, *sp2, *v;

	sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (sp1 == NULL || sp1 == p)
		return -400;
	for (const char *q = p; q < sp1; q++)
		if (!is_tchar((unsigned char)*q))
			return -400;
	req->method_str.p = p;
	req->method_str.len = (size_t)(sp1 - p);
	req->method = HTTP_METHOD_OTHER;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (http_str_eq(&req->method_str, methods[i].name))
			req->method = methods[i].m;

	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (sp2 == NULL || sp2 == sp1 + 1)
		return -400;
	req->target.p = sp1 + 1;
	req->target.len = (size_t)(sp2 - sp1 - 1);
	for (size_t i = 0; i < req->target.len; i++) {
		unsigned char c = (unsigned char)req->target.p[i];

		if (c <= 0x20 || c >= 0x7f)
			return -400;
	}
	if (req->target.p[0] != '/' &&
	    !(req->target.len == 1 && req->target.p[0] == '*'))
		return -400; /* absolute-form is for proxies */

	/* HTTP-version is exactly "HTTP/" DIGIT "." DIGIT. */
	v = sp2 + 1;
	if (eol - v != 8 || memcmp(v, "HTTP/", 5) != 0 ||
	    !isdigit((unsigned char)v[5]) || v[6] != '.' ||
	    !isdigit((unsigned char)v[7]))
		return -400;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return -505;
	req->version_minor = v[7] - '0';

	req->path.p = req->target.p;
	req->path.len = req->target.len;
	req->query.p = req->target.p + req->target.len;
	req->query.len = 0;
	{
		const char *qm = memchr(req->target.p, '?', req->target.len);

		if (qm != NULL) {
			req->path.len = (size_t)(qm - req->target.p);
			req->query.p = qm + 1;
			req->query.len =
				req->target.len - req->path.len - 1;
		}
	}
	return 0;
}

static int
parse_header(const char *p, const char *eol, struct http_request *req)
{
	const char *colon, *vs, *ve;
	struct http_header *h;

	if (*p == ' ' || *p == '\t')
		return -400; /* obsolete line folding */
	colon = memchr(p, ':', (size_t)(eol - p));
	if (colon == NULL || colon == p)
		return -400;
	for (const char *q = p; q < colon; q++)
		if (!is_tchar((unsigned char)*q))
			return -400;
	vs = colon + 1;
	ve = eol;
	while (vs < ve && (*vs == ' ' || *vs == '\t'))
		vs++;
	while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	for (const char *q = vs; q < ve; q++) {
		unsigned char c = (unsigned char)*q;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -400;
	}
	if (req->nheaders >= HTTP_MAX_HEADERS)
		return -431;
	h = &req->headers[req->nheaders++];
	h->name.p = p;
	h->name.len = (size_t)(colon - p);
	h->value.p = vs;
	h->value.len = (size_t)(ve - vs);
	return 0;
}

static int
finish_head(struct http_request *req)
{
	const struct http_str *conn;
	int seen_cl = 0;

	if (req->version_minor == 1 && http_header_get(req, "Host") == NULL)
		return -400;
	for (int i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];

		if (str_ieq(&h->name, "Content-Length")) {
			uint64_t v = 0;

			if (h->value.len == 0 || h->value.len > 18)
				return h->value.len > 18 ? -413 : -400;
			for (size_t k = 0; k < h->value.len; k++) {
				if (!isdigit((unsigned char)h->value.p[k]))
					return -400;
				v = v * 10 + (uint64_t)(h->value.p[k] - '0');
			}
			if (seen_cl && v != req->content_length)
				return -400;
			seen_cl = 1;
			req->content_length = v;
		} else if (str_ieq(&h->name, "Transfer-Encoding")) {
			/*
			 * We take no chunked bodies: 411 asks for a length;
			 * any other coding is one we don't know (501).
			 */
			req->chunked = http_token_list_has(&h->value, "chunked")
					       ? 1
					       : 2;
		} else if (str_ieq(&h->name, "Host")) {
			/* Two Host headers are a smuggling vector. */
			for (int j = i + 1; j < req->nheaders; j++)
				if (str_ieq(&req->headers[j].name, "Host"))
					return -400;
		}
	}
	req->has_content_length = seen_cl;
	if (req->chunked && seen_cl)
		return -400;
	if (req->chunked)
		return req->chunked == 1 ? -411 : -501;

	conn = http_header_get(req, "Connection");
	if (req->version_minor == 1)
		req->keep_alive =
			!(conn != NULL && http_token_list_has(conn, "close"));
	else
		req->keep_alive =
			conn != NULL && http_token_list_has(conn, "keep-alive");
	return 0;
}

int
http_parse_request(const char *buf, size_t len, size_t max_head,
		   struct http_request *req)
{
	const char *p = buf, *end, *eol;
	int rc, first = 1;

	memset(req, 0, sizeof(*req));
	end = buf + (len < max_head ? len : max_head);

	/* RFC 9112 2.2: ignore at least one empty line before the request. */
	while (p < end && (*p == '\r' || *p == '\n')) {
		if (*p == '\r' && (p + 1 >= end || p[1] != '\n'))
			return p + 1 >= end ? 0 : -400;
		p += (*p == '\r') ? 2 : 1;
	}

	for (;;) {
		const char *line_end;

		eol = find_eol(p, end);
		if (eol == NULL) {
			if (len >= max_head)
				return first ? -414 : -431;
			/* A request line can't be this weird: fail early. */
			for (const char *q = p; q < end; q++)
				if (*q == '\0')
					return -400;
			return 0;
		}
		line_end = eol;
		if (line_end > p && line_end[-1] == '\r')
			line_end--;
		for (const char *q = p; q < line_end; q++)
			if (*q == '\r' || *q == '\0')
				return -400;
		if (first) {
			if ((rc = parse_request_line(p, line_end, req)) < 0)
				return rc;
			first = 0;
		} else if (line_end == p) {
			if ((rc = finish_head(req)) < 0)
				return rc;
			return (int)(eol + 1 - buf);
		} else if ((rc = parse_header(p, line_end, req)) < 0) {
			return rc;
		}
		p = eol + 1;
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
http_percent_decode(const struct http_str *in, char *out, size_t size,
		    int plus_is_space)
{
	size_t o = 0;

	for (size_t i = 0; i < in->len; i++) {
		char c = in->p[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= in->len)
				return -1;
			hi = hexval(in->p[i + 1]);
			lo = hexval(in->p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi << 4 | lo);
			if (c == '\0')
				return -1; /* NUL never reaches a C string */
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (o + 1 >= size)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (int)o;
}

int
http_query_param(const struct http_request *req, const char *name, char *out,
		 size_t size)
{
	const char *p = req->query.p, *end = req->query.p + req->query.len;
	size_t nlen = strlen(name);

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp != NULL ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		struct http_str key = {p, (size_t)((eq != NULL ? eq : e) - p)};
		char kbuf[128];

		if (http_percent_decode(&key, kbuf, sizeof(kbuf), 1) ==
			    (int)nlen &&
		    memcmp(kbuf, name, nlen) == 0) {
			struct http_str v = {eq != NULL ? eq + 1 : e,
					     eq != NULL ? (size_t)(e - eq - 1)
							: 0};

			return http_percent_decode(&v, out, size, 1);
		}
		p = e + 1;
	}
	return -2;
}

const char *
http_status_text(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

static const char *
status_code_name(int status)
{
	switch (status) {
	case 400: return "BAD_REQUEST";
	case 401: return "UNAUTHORIZED";
	case 403: return "FORBIDDEN";
	case 404: return "NOT_FOUND";
	case 405: return "METHOD_NOT_ALLOWED";
	case 408: return "REQUEST_TIMEOUT";
	case 411: return "LENGTH_REQUIRED";
	case 413: return "PAYLOAD_TOO_LARGE";
	case 414: return "URI_TOO_LONG";
	case 426: return "UPGRADE_REQUIRED";
	case 429: return "RATE_LIMITED";
	case 431: return "HEADERS_TOO_LARGE";
	case 501: return "NOT_IMPLEMENTED";
	case 503: return "UNAVAILABLE";
	case 505: return "VERSION_NOT_SUPPORTED";
	default: return "INTERNAL_ERROR";
	}
}

int
http_error_body(char *buf, size_t size, int status)
{
	int n = snprintf(buf, size, "{\"error\":\"%s\",\"code\":\"%s\"}",
			 http_status_text(status), status_code_name(status));

	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

int
http_format_response(char *buf, size_t size, int status,
		     const char *content_type, const char *extra_headers,
		     const char *body, size_t body_len, int keep_alive,
		     int head_only)
{
	int n;

	n = snprintf(buf, size,
		     "HTTP/1.1 %d %s\r\n"
		     "Server: orchd\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n"
		     "%s%s"
		     "\r\n",
		     status, http_status_text(status), content_type, body_len,
		     extra_headers ? extra_headers : "",
		     keep_alive ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= size)
		return -1;
	if (!head_only && body_len > 0) {
		if ((size_t)n + body_len > size)
			return -1;
		memcpy(buf + n, body, body_len);
		n += (int)body_len;
	}
	return n;
}
