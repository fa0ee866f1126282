/*
 * json: strict JSON reading on top of jsmn, and a bounded writer.
 *
 * jsmn, even with JSMN_STRICT, is a tokenizer rather than a validator: it
 * takes [1 2], {"a" 1}, [1,], 01, -, tru, raw control characters in strings,
 * and stops silently at a NUL byte.  So json_parse() runs in passes: the
 * whole input must be valid UTF-8 (utf8.c), then scan() checks it against
 * the RFC 8259 grammar and the limits and counts its tokens, and only then
 * does jsmn tokenize it into an array of exactly that many tokens.  The two
 * counts must agree.  jsmn's part is the tree (sizes, parent links) used for
 * navigation; its parent of an object member's value is the key token.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define JSMN_STATIC /* jsmn_init/jsmn_parse stay private to this file */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "orchd/json.h"
#include "orchd/utf8.h"
#include "orchd/util.h"

/* clang-format off */
static const char *const errstr[] = {
	[-JSON_OK] = "success",
	[-JSON_E_SYNTAX] = "invalid JSON: unexpected character",
	[-JSON_E_TRUNCATED] = "invalid JSON: unexpected end of input",
	[-JSON_E_TOKENS] = "too many JSON values",
	[-JSON_E_DEPTH] = "JSON nested too deeply",
	[-JSON_E_SIZE] = "JSON text too large",
	[-JSON_E_TRAILING] = "invalid JSON: data after the value",
	[-JSON_E_UTF8] = "invalid UTF-8",
	[-JSON_E_NOT_OBJECT] = "JSON value is not an object",
	[-JSON_E_NUMBER] = "invalid JSON number",
	[-JSON_E_LITERAL] = "invalid JSON literal",
	[-JSON_E_CTRL] = "control character in JSON string",
	[-JSON_E_ESCAPE] = "invalid escape in JSON string",
	[-JSON_E_SURROGATE] = "unpaired surrogate in JSON string",
	[-JSON_E_INTERNAL] = "internal JSON tokenizer error",
	[-JSON_E_NOTFOUND] = "no such JSON value",
	[-JSON_E_TYPE] = "JSON value has the wrong type",
	[-JSON_E_RANGE] = "JSON number out of range",
	[-JSON_E_NOSPACE] = "JSON value too long for its buffer",
	[-JSON_E_NUL] = "JSON string contains U+0000",
};
/* clang-format on */

const char *
json_strerror(int err)
{
	if (err > 0 || err <= -(int)UTIL_NELEM(errstr) || errstr[-err] == NULL)
		return "unknown JSON error";
	return errstr[-err];
}

/* Locale-free character classes (input bytes may be >= 0x80). */
static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
is_alnum(int c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
hexval(int c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* ---- validation -------------------------------------------------------- */

struct scan {
	const uint8_t *s, *p, *end;
	const uint8_t *top_end; /* end of the top-level value */
	size_t ntok, max_tokens;
	unsigned depth, max_depth;
	uint8_t isobj[JSON_MAX_DEPTH_CAP / 8]; /* bit per open container */
};

static void
skip_ws(struct scan *sc)
{
	while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' ||
				   *sc->p == '\r' || *sc->p == '\t'))
		sc->p++;
}

/* Four hex digits at p into *cu; a short input is TRUNCATED if all hex. */
static int
scan_hex4(const uint8_t *p, const uint8_t *end, unsigned *cu)
{
	*cu = 0;
	for (int i = 0; i < 4; i++) {
		if (p + i >= end)
			return JSON_E_TRUNCATED;
		if (hexval(p[i]) < 0)
			return JSON_E_ESCAPE;
		*cu = *cu << 4 | (unsigned)hexval(p[i]);
	}
	return 0;
}

/*
 * sc->p is on the opening quote.  Rejects raw control characters, unknown
 * escapes and \u escapes that are not a scalar value or a proper surrogate
 * pair, so a parsed string always decodes to valid UTF-8.
 */
static int
scan_string(struct scan *sc)
{
	const uint8_t *p = sc->p + 1, *end = sc->end;
	unsigned cu, lo;
	int rc;

	for (;;) {
		if (p >= end)
			goto fail_trunc;
		if (*p == '"')
			break;
		if (*p < 0x20) {
			sc->p = p;
			return JSON_E_CTRL;
		}
		if (*p != '\\') {
			p++;
			continue;
		}
		if (p + 1 >= end)
			goto fail_trunc;
		if (p[1] != '\0' && strchr("\"\\/bfnrt", p[1]) != NULL) {
			p += 2;
			continue;
		}
		sc->p = p;
		if (p[1] != 'u')
			return JSON_E_ESCAPE;
		if ((rc = scan_hex4(p + 2, end, &cu)) < 0)
			return rc;
		if (cu >= 0xdc00 && cu <= 0xdfff)
			return JSON_E_SURROGATE;
		p += 6;
		if (cu < 0xd800 || cu > 0xdbff)
			continue;
		/* A high surrogate must be followed by an escaped low one. */
		if (p >= end || (*p == '\\' && p + 1 >= end))
			goto fail_trunc;
		if (p[0] != '\\' || p[1] != 'u')
			return JSON_E_SURROGATE;
		if ((rc = scan_hex4(p + 2, end, &lo)) < 0)
			return rc;
		if (lo < 0xdc00 || lo > 0xdfff)
			return JSON_E_SURROGATE;
		p += 6;
	}
	sc->p = p + 1;
	return 0;
fail_trunc:
	sc->p = p;
	return JSON_E_TRUNCATED;
}

/* RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
scan_number(struct scan *sc)
{
	const uint8_t *p = sc->p, *end = sc->end;

	if (*p == '-')
		p++;
	if (p >= end)
		goto fail_trunc;
	if (*p == '0')
		p++;
	else if (is_digit(*p))
		while (p < end && is_digit(*p))
			p++;
	else
		goto fail;
	if (p < end && *p == '.') {
		if (++p >= end)
			goto fail_trunc;
		if (!is_digit(*p))
			goto fail;
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end)
			goto fail_trunc;
		if (!is_digit(*p))
			goto fail;
		while (p < end && is_digit(*p))
			p++;
	}
	/* What follows must end the number: catches 01, 1.2.3, 1x, 1-2. */
	if (p < end && (is_alnum(*p) || *p == '.' || *p == '+' || *p == '-'))
		goto fail;
	sc->p = p;
	return 0;
fail:
	sc->p = p;
	return JSON_E_NUMBER;
fail_trunc:
	sc->p = p;
	return JSON_E_TRUNCATED;
}

static int
scan_literal(struct scan *sc, const char *lit)
{
	size_t n = strlen(lit), avail = (size_t)(sc->end - sc->p);

	if (memcmp(sc->p, lit, avail < n ? avail : n) != 0)
		return JSON_E_LITERAL;
	if (avail < n) {
		sc->p = sc->end;
		return JSON_E_TRUNCATED;
	}
	sc->p += n;
	if (sc->p < sc->end && is_alnum(*sc->p))
		return JSON_E_LITERAL;
	return 0;
}

static int
in_object(const struct scan *sc)
{
	unsigned i = sc->depth - 1;

	return sc->isobj[i / 8] >> (i % 8) & 1;
}

/*
 * The grammar as a loop over three states instead of recursion, so that
 * depth costs one bit, not one stack frame: "value" (a value is due),
 * "after" (a value just ended: ',' or the closing bracket is due), "key".
 */
static int
scan(struct scan *sc)
{
	int rc, obj;

	skip_ws(sc);
value:
	if (sc->p >= sc->end)
		return JSON_E_TRUNCATED;
	if (++sc->ntok > sc->max_tokens)
		return JSON_E_TOKENS;
	switch (*sc->p) {
	case '{':
	case '[':
		if (sc->depth >= sc->max_depth)
			return JSON_E_DEPTH;
		obj = *sc->p == '{';
		if (obj)
			sc->isobj[sc->depth / 8] |= 1u << (sc->depth % 8);
		else
			sc->isobj[sc->depth / 8] &= ~(1u << (sc->depth % 8));
		sc->depth++;
		sc->p++;
		skip_ws(sc);
		if (sc->p < sc->end && *sc->p == (obj ? '}' : ']')) {
			sc->p++;
			sc->depth--;
			goto after;
		}
		if (obj)
			goto key;
		goto value;
	case '"':
		rc = scan_string(sc);
		break;
	case 't':
		rc = scan_literal(sc, "true");
		break;
	case 'f':
		rc = scan_literal(sc, "false");
		break;
	case 'n':
		rc = scan_literal(sc, "null");
		break;
	case '+':
	case '.':
		return JSON_E_NUMBER;
	default:
		if (*sc->p != '-' && !is_digit(*sc->p))
			return JSON_E_SYNTAX;
		rc = scan_number(sc);
		break;
	}
	if (rc < 0)
		return rc;
after:
	if (sc->depth == 0) {
		sc->top_end = sc->p;
		skip_ws(sc);
		return sc->p < sc->end ? JSON_E_TRAILING : 0;
	}
	obj = in_object(sc);
	skip_ws(sc);
	if (sc->p >= sc->end)
		return JSON_E_TRUNCATED;
	if (*sc->p == ',') {
		sc->p++;
		skip_ws(sc);
		if (obj)
			goto key;
		goto value;
	}
	if (*sc->p != (obj ? '}' : ']'))
		return JSON_E_SYNTAX;
	sc->p++;
	sc->depth--;
	goto after;
key:
	if (sc->p >= sc->end)
		return JSON_E_TRUNCATED;
	if (*sc->p != '"')
		return JSON_E_SYNTAX;
	if (++sc->ntok > sc->max_tokens)
		return JSON_E_TOKENS;
	if ((rc = scan_string(sc)) < 0)
		return rc;
	skip_ws(sc);
	if (sc->p >= sc->end)
		return JSON_E_TRUNCATED;
	if (*sc->p != ':')
		return JSON_E_SYNTAX;
	sc->p++;
	skip_ws(sc);
	goto value;
}

/* Offset of the first byte that makes s invalid UTF-8 (cold path). */
static size_t
utf8_err_off(const uint8_t *s, size_t len)
{
	uint32_t st = UTF8_ACCEPT;
	size_t seq = 0;

	for (size_t i = 0; i < len; i++) {
		if (st == UTF8_ACCEPT)
			seq = i;
		st = utf8_validate(st, s + i, 1);
		if (st == UTF8_REJECT)
			return i;
	}
	return seq; /* cut short: where the last sequence began */
}

int
json_parse(struct json_doc *d, const char *buf, size_t len,
	   const struct json_limits *lim)
{
	struct scan sc;
	jsmn_parser jp;
	jsmntok_t *toks;
	size_t max_size = JSON_DEFAULT_MAX_SIZE;
	int rc, r;

	memset(d, 0, sizeof(*d));
	memset(&sc, 0, sizeof(sc));
	sc.max_tokens = JSON_DEFAULT_MAX_TOKENS;
	sc.max_depth = JSON_DEFAULT_MAX_DEPTH;
	if (lim != NULL) {
		if (lim->max_size > 0)
			max_size = lim->max_size;
		if (lim->max_tokens > 0)
			sc.max_tokens = lim->max_tokens;
		if (lim->max_depth > 0)
			sc.max_depth = lim->max_depth;
	}
	/* jsmn keeps offsets and counts in int. */
	if (max_size > INT_MAX)
		max_size = INT_MAX;
	if (sc.max_tokens > INT_MAX)
		sc.max_tokens = INT_MAX;
	if (sc.max_depth > JSON_MAX_DEPTH_CAP)
		sc.max_depth = JSON_MAX_DEPTH_CAP;

	if (len > max_size) {
		d->err_off = max_size;
		return JSON_E_SIZE;
	}
	if (buf == NULL || len == 0) {
		d->err_off = 0;
		return JSON_E_TRUNCATED; /* nothing is not a JSON text */
	}
	sc.s = sc.p = (const uint8_t *)buf;
	sc.end = sc.s + len;
	if (!utf8_valid(sc.s, len)) {
		d->err_off = utf8_err_off(sc.s, len);
		return JSON_E_UTF8;
	}
	skip_ws(&sc);
	/* Fail fast, before spending work on a body the caller will refuse. */
	if (lim != NULL && (lim->flags & JSON_REQUIRE_OBJECT) &&
	    sc.p < sc.end && *sc.p != '{') {
		d->err_off = (size_t)(sc.p - sc.s);
		return JSON_E_NOT_OBJECT;
	}
	if ((rc = scan(&sc)) < 0) {
		d->err_off = (size_t)(sc.p - sc.s);
		return rc;
	}

	toks = util_calloc(sc.ntok, sizeof(*toks));
	sc.p = sc.s;
	skip_ws(&sc);
	if (*sc.p == '{' || *sc.p == '[' || *sc.p == '"') {
		jsmn_init(&jp);
		r = jsmn_parse(&jp, buf, len, toks, (unsigned)sc.ntok);
	} else {
		/*
		 * Strict jsmn wants a delimiter after every primitive, so it
		 * refuses a bare top-level 1 or true (JSMN_ERROR_PART).  That
		 * document is one token: build it here.
		 */
		toks[0].type = JSMN_PRIMITIVE;
		toks[0].start = (int)(sc.p - sc.s);
		toks[0].end = (int)(sc.top_end - sc.s);
		toks[0].size = 0;
		toks[0].parent = -1;
		r = 1;
	}
	if (r < 0 || (size_t)r != sc.ntok) {
		free(toks);
		return JSON_E_INTERNAL;
	}
	d->buf = buf;
	d->len = len;
	d->toks = toks;
	d->ntoks = r;
	return 0;
}

void
json_doc_free(struct json_doc *d)
{
	UTIL_FREE(d->toks);
	d->ntoks = 0;
}

/* ---- navigation -------------------------------------------------------- */

static const jsmntok_t *
tok_at(const struct json_doc *d, int t)
{
	if (d == NULL || d->toks == NULL || t < 0 || t >= d->ntoks)
		return NULL;
	return (const jsmntok_t *)d->toks + t;
}

int
json_root(const struct json_doc *d)
{
	return tok_at(d, 0) != NULL ? 0 : -1;
}

enum json_type
json_type(const struct json_doc *d, int tok)
{
	const jsmntok_t *t = tok_at(d, tok);

	if (t == NULL)
		return JSON_NONE;
	if (t->type == JSMN_OBJECT)
		return JSON_OBJECT;
	if (t->type == JSMN_ARRAY)
		return JSON_ARRAY;
	if (t->type == JSMN_STRING)
		return JSON_STRING;
	if (d->buf[t->start] == 'n')
		return JSON_NULL;
	if (d->buf[t->start] == 't' || d->buf[t->start] == 'f')
		return JSON_BOOL;
	return JSON_NUMBER;
}

/*
 * Index just past the subtree of token t.  Tokens are in document order and
 * every descendant starts before its ancestor's end offset.
 */
static int
skip_subtree(const struct json_doc *d, int t)
{
	const jsmntok_t *toks = d->toks;
	int end = toks[t].end, j = t + 1;

	while (j < d->ntoks && toks[j].start < end)
		j++;
	return j;
}

int
json_first(const struct json_doc *d, int container)
{
	const jsmntok_t *t = tok_at(d, container);

	if (t == NULL || (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY) ||
	    t->size == 0)
		return -1;
	return container + 1;
}

int
json_next(const struct json_doc *d, int tok)
{
	const jsmntok_t *t = tok_at(d, tok), *par;
	int j;

	if (t == NULL || (par = tok_at(d, t->parent)) == NULL)
		return -1;
	if (par->type == JSMN_OBJECT)
		j = skip_subtree(d, tok + 1); /* a key: step over its value */
	else if (par->type == JSMN_ARRAY)
		j = skip_subtree(d, tok);
	else
		return -1; /* a member's value has no siblings */
	if (j < d->ntoks && ((const jsmntok_t *)d->toks)[j].parent == t->parent)
		return j;
	return -1;
}

int
json_obj_value(const struct json_doc *d, int key)
{
	const jsmntok_t *t = tok_at(d, key), *par;

	if (t == NULL || t->type != JSMN_STRING ||
	    (par = tok_at(d, t->parent)) == NULL || par->type != JSMN_OBJECT)
		return -1;
	return key + 1;
}

static int
container_len(const struct json_doc *d, int tok, jsmntype_t type)
{
	const jsmntok_t *t = tok_at(d, tok);

	return t != NULL && t->type == type ? t->size : -1;
}

int
json_array_len(const struct json_doc *d, int arr)
{
	return container_len(d, arr, JSMN_ARRAY);
}

int
json_obj_len(const struct json_doc *d, int obj)
{
	return container_len(d, obj, JSMN_OBJECT);
}

int
json_array_get(const struct json_doc *d, int arr, int i)
{
	int v;

	if (i < 0 || i >= json_array_len(d, arr))
		return -1;
	for (v = json_first(d, arr); v >= 0 && i > 0; i--)
		v = json_next(d, v);
	return v;
}

/* ---- strings ----------------------------------------------------------- */

static size_t
utf8_encode(unsigned cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static unsigned
hex4(const char *p)
{
	return (unsigned)(hexval(p[0]) << 12 | hexval(p[1]) << 8 |
			  hexval(p[2]) << 4 | hexval(p[3]));
}

/*
 * Decode the escape at *pp (which is on the backslash) into out and advance
 * past it.  The text was validated by scan_string(): the escape is complete
 * and surrogates come in pairs.
 */
static size_t
unescape_one(const char **pp, char out[4])
{
	static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
	const char *p = *pp, *m;
	unsigned cp;

	*pp = p + 2;
	if (p[1] != 'u') {
		m = strchr(from, p[1]);
		out[0] = m != NULL ? to[m - from] : p[1]; /* or " \ / */
		return 1;
	}
	cp = hex4(p + 2);
	*pp = p + 6;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(p + 8) - 0xdc00);
		*pp = p + 12;
	}
	return utf8_encode(cp, out);
}

static int
str_span(const struct json_doc *d, int tok, const char **p, const char **e)
{
	const jsmntok_t *t = tok_at(d, tok);

	if (t == NULL)
		return JSON_E_NOTFOUND;
	if (t->type != JSMN_STRING)
		return JSON_E_TYPE;
	*p = d->buf + t->start;
	*e = d->buf + t->end;
	return 0;
}

int
json_get_string(const struct json_doc *d, int tok, char *out, size_t cap,
		size_t *len)
{
	const char *p, *e, *bs;
	size_t n = 0, run, k;
	char u[4];
	int rc;

	if (cap > 0)
		out[0] = '\0';
	if ((rc = str_span(d, tok, &p, &e)) < 0)
		return rc;
	/*
	 * Copy runs between backslashes.  Once something does not fit, n only
	 * grows, so nothing later is written either; we keep going only to
	 * report the length needed.
	 */
	while (p < e) {
		bs = memchr(p, '\\', (size_t)(e - p));
		run = (size_t)((bs != NULL ? bs : e) - p);
		if (n + run < cap)
			memcpy(out + n, p, run);
		n += run;
		p += run;
		if (bs == NULL)
			break;
		k = unescape_one(&p, u);
		if (k == 1 && u[0] == '\0') {
			if (cap > 0)
				out[0] = '\0';
			return JSON_E_NUL;
		}
		if (n + k < cap)
			memcpy(out + n, u, k);
		n += k;
	}
	if (len != NULL)
		*len = n;
	if (n >= cap) {
		if (cap > 0)
			out[0] = '\0';
		return JSON_E_NOSPACE;
	}
	out[n] = '\0';
	return 0;
}

int
json_str_eq(const struct json_doc *d, int tok, const char *s)
{
	const char *p, *e;
	size_t slen = strlen(s), i = 0, k;
	char u[4];

	if (str_span(d, tok, &p, &e) < 0)
		return 0;
	if (memchr(p, '\\', (size_t)(e - p)) == NULL)
		return (size_t)(e - p) == slen && memcmp(p, s, slen) == 0;
	while (p < e) {
		if (*p != '\\') {
			if (i >= slen || s[i] != *p)
				return 0;
			i++;
			p++;
			continue;
		}
		k = unescape_one(&p, u);
		if (k > slen - i || memcmp(s + i, u, k) != 0)
			return 0;
		i += k;
	}
	return i == slen;
}

int
json_obj_get(const struct json_doc *d, int obj, const char *key)
{
	if (json_type(d, obj) != JSON_OBJECT)
		return -1;
	for (int k = json_first(d, obj); k >= 0; k = json_next(d, k))
		if (json_str_eq(d, k, key))
			return k + 1;
	return -1;
}

/* ---- scalars ----------------------------------------------------------- */

static int
num_span(const struct json_doc *d, int tok, const char **p, size_t *n)
{
	enum json_type ty = json_type(d, tok);
	const jsmntok_t *t;

	if (ty == JSON_NONE)
		return JSON_E_NOTFOUND;
	if (ty != JSON_NUMBER)
		return JSON_E_TYPE;
	t = tok_at(d, tok);
	*p = d->buf + t->start;
	*n = (size_t)(t->end - t->start);
	return 0;
}

/* Magnitude of an integer token; *neg set for a leading '-'. */
static int
get_magnitude(const struct json_doc *d, int tok, uint64_t *mag, bool *neg)
{
	const char *p;
	size_t n, i;
	uint64_t v = 0;
	int rc;

	if ((rc = num_span(d, tok, &p, &n)) < 0)
		return rc;
	*neg = p[0] == '-';
	i = *neg ? 1 : 0;
	for (size_t j = i; j < n; j++)
		if (!is_digit(p[j]))
			return JSON_E_TYPE; /* fraction or exponent */
	for (; i < n; i++) {
		unsigned dg = (unsigned)(p[i] - '0');

		if (v > (UINT64_MAX - dg) / 10)
			return JSON_E_RANGE;
		v = v * 10 + dg;
	}
	*mag = v;
	return 0;
}

int
json_get_int64(const struct json_doc *d, int tok, int64_t *out)
{
	uint64_t v;
	bool neg;
	int rc;

	if ((rc = get_magnitude(d, tok, &v, &neg)) < 0)
		return rc;
	if (v > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return JSON_E_RANGE;
	if (neg)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return 0;
}

int
json_get_uint64(const struct json_doc *d, int tok, uint64_t *out)
{
	uint64_t v;
	bool neg;
	int rc;

	if ((rc = get_magnitude(d, tok, &v, &neg)) < 0)
		return rc;
	if (neg && v != 0)
		return JSON_E_RANGE;
	*out = v;
	return 0;
}

int
json_get_double(const struct json_doc *d, int tok, double *out)
{
	const char *p;
	char tmp[64], *buf = tmp, *end;
	size_t n;
	double v;
	int rc;

	if ((rc = num_span(d, tok, &p, &n)) < 0)
		return rc;
	/* strtod needs a terminator; the token may end the buffer. */
	if (n >= sizeof(tmp))
		buf = util_malloc(n + 1);
	memcpy(buf, p, n);
	buf[n] = '\0';
	v = strtod(buf, &end);
	rc = end == buf + n && isfinite(v) ? 0 : JSON_E_RANGE;
	if (buf != tmp)
		free(buf);
	if (rc == 0)
		*out = v; /* underflow to 0 or a subnormal is fine */
	return rc;
}

int
json_get_bool(const struct json_doc *d, int tok, bool *out)
{
	enum json_type ty = json_type(d, tok);

	if (ty == JSON_NONE)
		return JSON_E_NOTFOUND;
	if (ty != JSON_BOOL)
		return JSON_E_TYPE;
	*out = d->buf[tok_at(d, tok)->start] == 't';
	return 0;
}

bool
json_is_null(const struct json_doc *d, int tok)
{
	return json_type(d, tok) == JSON_NULL;
}

int
json_tok_raw(const struct json_doc *d, int tok, const char **ptr, size_t *len)
{
	const jsmntok_t *t = tok_at(d, tok);
	int q;

	if (t == NULL)
		return JSON_E_NOTFOUND;
	q = t->type == JSMN_STRING; /* jsmn's span excludes the quotes */
	*ptr = d->buf + t->start - q;
	*len = (size_t)(t->end - t->start + 2 * q);
	return 0;
}

/* ---- writer ------------------------------------------------------------ */

void
json_w_init(struct json_writer *w, char *buf, size_t cap)
{
	memset(w, 0, sizeof(*w));
	w->buf = buf;
	w->cap = buf != NULL ? cap : 0;
}

static int
w_fail(struct json_writer *w)
{
	w->err = true;
	return -1;
}

static int
w_put(struct json_writer *w, const void *s, size_t n)
{
	if (w->err)
		return -1;
	if (n > w->cap - w->len)
		return w_fail(w);
	if (n > 0)
		memcpy(w->buf + w->len, s, n);
	w->len += n;
	return 0;
}

static int
w_putc(struct json_writer *w, char c)
{
	return w_put(w, &c, 1);
}

static int
w_in_obj(const struct json_writer *w)
{
	return w->depth > 0 && (w->kinds >> (w->depth - 1) & 1);
}

/* Before any value: check it is allowed here and write the comma. */
static int
w_pre(struct json_writer *w)
{
	if (w->err)
		return -1;
	if (w->depth == 0)
		return w->done ? w_fail(w) : 0;
	if (w_in_obj(w)) {
		if (!w->key)
			return w_fail(w);
		w->key = false;
		return 0;
	}
	return w->comma ? w_putc(w, ',') : 0;
}

/* After a complete value. */
static int
w_post(struct json_writer *w)
{
	if (w->err)
		return -1;
	if (w->depth == 0)
		w->done = true;
	else
		w->comma = true;
	return 0;
}

static int
w_scalar(struct json_writer *w, const char *text, size_t n)
{
	if (w_pre(w) < 0 || w_put(w, text, n) < 0)
		return -1;
	return w_post(w);
}

static int
w_begin(struct json_writer *w, int obj)
{
	if (w_pre(w) < 0)
		return -1;
	if (w->depth >= JSON_W_MAX_DEPTH)
		return w_fail(w);
	if (w_putc(w, obj ? '{' : '[') < 0)
		return -1;
	if (obj)
		w->kinds |= UINT64_C(1) << w->depth;
	else
		w->kinds &= ~(UINT64_C(1) << w->depth);
	w->depth++;
	w->comma = false;
	w->key = false;
	return 0;
}

static int
w_end(struct json_writer *w, int obj)
{
	if (w->err)
		return -1;
	if (w->depth == 0 || w_in_obj(w) != obj || w->key)
		return w_fail(w);
	if (w_putc(w, obj ? '}' : ']') < 0)
		return -1;
	w->depth--;
	return w_post(w);
}

int
json_w_obj_begin(struct json_writer *w)
{
	return w_begin(w, 1);
}

int
json_w_obj_end(struct json_writer *w)
{
	return w_end(w, 1);
}

int
json_w_arr_begin(struct json_writer *w)
{
	return w_begin(w, 0);
}

int
json_w_arr_end(struct json_writer *w)
{
	return w_end(w, 0);
}

/*
 * Copy the UTF-8 sequence starting at s[i] (a byte >= 0x80) if it is valid,
 * else write U+FFFD for its maximal invalid subpart.  Returns the index to
 * continue from: a byte that broke a sequence is examined again, as the
 * start of the next one.
 */
static size_t
w_utf8_seq(struct json_writer *w, const uint8_t *s, size_t i, size_t n)
{
	uint32_t st = UTF8_ACCEPT;
	size_t j = i;

	while (j < n) {
		st = utf8_validate(st, s + j, 1);
		if (st == UTF8_REJECT)
			break;
		j++;
		if (st == UTF8_ACCEPT) {
			w_put(w, s + i, j - i);
			return j;
		}
	}
	w_put(w, "\xef\xbf\xbd", 3);
	return j > i ? j : i + 1;
}

static int
w_string(struct json_writer *w, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	const uint8_t *s = (const uint8_t *)str;
	const char *m;
	size_t i = 0, run;
	char esc[6] = {'\\', 'u', '0', '0'};

	w_putc(w, '"');
	while (i < n && !w->err) {
		for (run = i; run < n && s[run] >= 0x20 && s[run] < 0x80 &&
			      s[run] != '"' && s[run] != '\\';
		     run++)
			;
		w_put(w, s + i, run - i);
		if ((i = run) == n)
			break;
		if (s[i] >= 0x80) {
			i = w_utf8_seq(w, s, i, n);
		} else if (s[i] != 0 && (m = strchr(from, s[i])) != NULL) {
			char e2[2] = {'\\', to[m - from]};

			w_put(w, e2, 2);
			i++;
		} else {
			esc[4] = hex[s[i] >> 4];
			esc[5] = hex[s[i] & 0xf];
			w_put(w, esc, 6);
			i++;
		}
	}
	return w_putc(w, '"');
}

int
json_w_keyn(struct json_writer *w, const char *k, size_t len)
{
	if (w->err)
		return -1;
	if (!w_in_obj(w) || w->key)
		return w_fail(w);
	if (w->comma && w_putc(w, ',') < 0)
		return -1;
	if (w_string(w, k, len) < 0 || w_putc(w, ':') < 0)
		return -1;
	w->key = true;
	return 0;
}

int
json_w_key(struct json_writer *w, const char *k)
{
	return json_w_keyn(w, k, strlen(k));
}

int
json_w_strn(struct json_writer *w, const char *s, size_t len)
{
	if (w_pre(w) < 0 || w_string(w, s, len) < 0)
		return -1;
	return w_post(w);
}

int
json_w_str(struct json_writer *w, const char *s)
{
	return json_w_strn(w, s, strlen(s));
}

int
json_w_int(struct json_writer *w, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

	return w_scalar(w, tmp, (size_t)n);
}

int
json_w_uint(struct json_writer *w, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

	return w_scalar(w, tmp, (size_t)n);
}

int
json_w_double(struct json_writer *w, double v)
{
	char tmp[40];
	int n = 0;

	if (!isfinite(v))
		return w_fail(w);
	/* Fewest significant digits that read back as the same double. */
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	return w_scalar(w, tmp, (size_t)n);
}

int
json_w_bool(struct json_writer *w, bool v)
{
	return v ? w_scalar(w, "true", 4) : w_scalar(w, "false", 5);
}

int
json_w_null(struct json_writer *w)
{
	return w_scalar(w, "null", 4);
}

int
json_w_raw(struct json_writer *w, const char *text, size_t len)
{
	if (len == 0)
		return w_fail(w);
	return w_scalar(w, text, len);
}

int
json_w_timestamp(struct json_writer *w, uint64_t wall_ms)
{
	char tmp[32];

	util_iso8601_ms(wall_ms, tmp, sizeof(tmp));
	return json_w_str(w, tmp);
}

int
json_w_finish(struct json_writer *w, size_t *len)
{
	if (len != NULL)
		*len = w->len;
	return w->err || w->depth != 0 || !w->done ? -1 : 0;
}

/* ---- helpers ----------------------------------------------------------- */

int
json_uuid_v4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t got = 0;
	char *o = out;

	out[0] = '\0';
	while (got < sizeof(b)) {
		ssize_t r = getrandom(b + got, sizeof(b) - got, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10xx */
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0xf];
	}
	*o = '\0';
	return 0;
}

/* Exactly n ASCII digits; stops at a NUL, so never reads past the string. */
static int
digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int y, int m, int d)
{
	int era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int64_t)era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
	static const int dim[] = {31, 28, 31, 30, 31, 30,
				  31, 31, 30, 31, 30, 31};

	if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		return 29;
	return dim[m - 1];
}

int
json_parse_iso8601_ms(const char *s, uint64_t *out)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0, ms = 0, nd = 0;
	const char *p;
	int64_t t;

	if (s == NULL || digits(s, 4, &y) < 0 || s[4] != '-' ||
	    digits(s + 5, 2, &mo) < 0 || s[7] != '-' ||
	    digits(s + 8, 2, &d) < 0 || (s[10] != 'T' && s[10] != 't') ||
	    digits(s + 11, 2, &h) < 0 || s[13] != ':' ||
	    digits(s + 14, 2, &mi) < 0 || s[16] != ':' ||
	    digits(s + 17, 2, &sec) < 0)
		return -1;
	p = s + 19;
	if (*p == '.') {
		/* Any number of digits; milliseconds are truncated. */
		for (p++; is_digit(*p); p++, nd++)
			if (nd < 3)
				ms = ms * 10 + (*p - '0');
		if (nd == 0)
			return -1;
		for (; nd < 3; nd++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-' || *p == ' ') {
		sign = *p == '-' ? -1 : 1;
		if (digits(p + 1, 2, &oh) < 0 || p[3] != ':' ||
		    digits(p + 4, 2, &om) < 0)
			return -1;
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 ||
	    d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 ||
	    oh > 23 || om > 59)
		return -1;
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	    sign * (oh * 3600 + om * 60);
	if (t < 0)
		return -1;
	*out = (uint64_t)t * 1000 + (uint64_t)ms;
	return 0;
}
