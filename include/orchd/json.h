/*
 * json: strict JSON (RFC 8259) reading and bounded writing.  Pure code, no
 * I/O (except getrandom(2) for json_uuid_v4()).
 *
 * Reading: json_parse() validates the whole text first (grammar, numbers,
 * literals, escapes, surrogate pairs, UTF-8, limits), then lets jsmn build a
 * flat token array over it.  Values are named by token index (int); index
 * -1 means "absent", and every getter accepts it (returning JSON_E_NOTFOUND
 * or JSON_NONE), so look-ups can be chained without intermediate checks:
 *
 *	int p = json_obj_get(&d, json_root(&d), "payload");
 *	rc = json_get_string(&d, json_obj_get(&d, p, "daemonId"), id,
 *			     sizeof(id), NULL);
 *
 * The document points into the caller's buffer: keep it alive and
 * unchanged until json_doc_free().
 *
 * Writing: struct json_writer appends to a caller buffer of fixed capacity.
 * Any error (no room, misuse such as a value where a key is due, non-finite
 * double) is sticky; json_w_finish() reports it.  Nothing is ever written
 * past the capacity.  The output is not NUL-terminated.
 *
 * Numbers are converted with strtod()/snprintf(), which follow LC_NUMERIC:
 * orchd never calls setlocale(), so that is always "C".
 */
#ifndef ORCHD_JSON_H
#define ORCHD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes: 0 is success, all errors are negative. */
enum json_err {
	JSON_OK = 0,
	/* json_parse() */
	JSON_E_SYNTAX = -1,     /* unexpected character */
	JSON_E_TRUNCATED = -2,  /* input ends inside a value (or is empty) */
	JSON_E_TOKENS = -3,     /* more than max_tokens values and keys */
	JSON_E_DEPTH = -4,      /* nesting deeper than max_depth */
	JSON_E_SIZE = -5,       /* input longer than max_size */
	JSON_E_TRAILING = -6,   /* data after the top-level value */
	JSON_E_UTF8 = -7,       /* input is not valid UTF-8 */
	JSON_E_NOT_OBJECT = -8, /* JSON_REQUIRE_OBJECT and the top is not {} */
	JSON_E_NUMBER = -9,     /* malformed number (01, -, 1., .5, 1e) */
	JSON_E_LITERAL = -10,   /* not exactly true, false or null */
	JSON_E_CTRL = -11,      /* raw control character inside a string */
	JSON_E_ESCAPE = -12,    /* backslash escape not allowed by RFC 8259 */
	JSON_E_SURROGATE = -13, /* \uD800-\uDFFF escape not in a valid pair */
	JSON_E_INTERNAL = -14,  /* tokenizer disagrees with validator (bug) */
	/* getters */
	JSON_E_NOTFOUND = -15, /* token -1: missing key, index out of range */
	JSON_E_TYPE = -16,     /* value has another type */
	JSON_E_RANGE = -17,    /* number does not fit the requested type */
	JSON_E_NOSPACE = -18,  /* output buffer too small */
	JSON_E_NUL = -19,      /* string contains \u0000: not a C string */
};

/* Human-readable text for an enum json_err value (never NULL). */
const char *json_strerror(int err);

enum json_type {
	JSON_NONE = 0, /* token -1 or out of range */
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING,
	JSON_NUMBER,
	JSON_BOOL,
	JSON_NULL,
};

#define JSON_DEFAULT_MAX_SIZE (1024 * 1024)
#define JSON_DEFAULT_MAX_TOKENS 1024
#define JSON_DEFAULT_MAX_DEPTH 32
/* Hard ceiling for max_depth: the validator's container stack is a bitmap. */
#define JSON_MAX_DEPTH_CAP 1024

/* json_limits.flags */
#define JSON_REQUIRE_OBJECT 0x1u /* the top-level value must be an object */

/*
 * Limits for json_parse(); NULL or a zero field means the default.  A token
 * is one value or one object key, so {"a":[1,2]} is 5 tokens.  Depth counts
 * containers: [] is depth 1, [[]] depth 2.
 */
struct json_limits {
	size_t max_size;     /* bytes; default 1 MiB, never above INT_MAX */
	unsigned max_tokens; /* default 1024 */
	unsigned max_depth;  /* default 32, clamped to JSON_MAX_DEPTH_CAP */
	unsigned flags;      /* JSON_REQUIRE_OBJECT */
};

/* A parsed document.  Fields are read-only for callers. */
struct json_doc {
	const char *buf; /* the parsed text (not copied) */
	size_t len;
	void *toks; /* private: jsmn token array, malloc'ed */
	int ntoks;
	size_t err_off; /* after a failed json_parse(): byte offset of error */
};

/*
 * Parse buf[0..len) (need not be NUL-terminated).  Returns 0, or a negative
 * enum json_err with d->err_off set; d needs no initialisation and, on
 * error, owns nothing.  The token array is sized exactly to the document
 * (at most max_tokens * 20 bytes).  Leading and trailing JSON whitespace is
 * allowed.  Besides the grammar, parsing rejects escapes that decode to a
 * lone UTF-16 surrogate, so every string of a parsed document decodes to
 * valid UTF-8.
 */
int json_parse(struct json_doc *d, const char *buf, size_t len,
	       const struct json_limits *lim);
/* Free the token array; d may be parsed again.  Safe on a failed parse. */
void json_doc_free(struct json_doc *d);

/* Root token (0), or -1 if d holds no document. */
int json_root(const struct json_doc *d);
enum json_type json_type(const struct json_doc *d, int tok);

/*
 * Value of key in object obj (the key compared after unescaping, exact
 * bytes, so "a\u0062" matches "ab").  With duplicate keys the FIRST one
 * wins.  -1 if obj is not an object or has no such key.  Linear in the size
 * of obj.
 */
int json_obj_get(const struct json_doc *d, int obj, const char *key);

/*
 * Iteration in document order.  json_first() gives the first element of an
 * array or the first KEY of an object (-1 if empty or not a container);
 * json_next() the next element or key of the same container (-1 at the
 * end); json_obj_value() the value of a key token.  A whole walk is linear.
 *
 *	for (int k = json_first(d, obj); k >= 0; k = json_next(d, k))
 *		use(k, json_obj_value(d, k));
 */
int json_first(const struct json_doc *d, int container);
int json_next(const struct json_doc *d, int tok);
int json_obj_value(const struct json_doc *d, int key);
/* Number of elements of an array / keys of an object; -1 if not one. */
int json_array_len(const struct json_doc *d, int arr);
int json_obj_len(const struct json_doc *d, int obj);
/* Element i of arr, or -1.  Linear in i: prefer json_first/json_next. */
int json_array_get(const struct json_doc *d, int arr, int i);

/*
 * Unescape string token tok into out as UTF-8 and NUL-terminate it.  *len
 * (if len is not NULL) receives the decoded length without the NUL; on
 * JSON_E_NOSPACE it receives the length that was needed, so cap 0 measures.
 * A string containing \u0000 is refused (JSON_E_NUL) rather than silently
 * truncated.  Works on object keys too.  On error out holds "" if cap > 0.
 * out must not overlap the parsed text.
 */
int json_get_string(const struct json_doc *d, int tok, char *out, size_t cap,
		    size_t *len);
/* 1 if tok is a string equal to s after unescaping, else 0.  No copy. */
int json_str_eq(const struct json_doc *d, int tok, const char *s);
/*
 * Integers: only -?[0-9]+ (no fraction or exponent, so 1.0 and 1e3 are
 * JSON_E_TYPE); JSON_E_RANGE outside the type's range.
 */
int json_get_int64(const struct json_doc *d, int tok, int64_t *out);
int json_get_uint64(const struct json_doc *d, int tok, uint64_t *out);
/* Any number; JSON_E_RANGE if it overflows to infinity (1e400). */
int json_get_double(const struct json_doc *d, int tok, double *out);
int json_get_bool(const struct json_doc *d, int tok, bool *out);
bool json_is_null(const struct json_doc *d, int tok);
/*
 * The exact source text of a value (strings with their quotes, containers
 * with their brackets), to forward it verbatim with json_w_raw().
 */
int json_tok_raw(const struct json_doc *d, int tok, const char **ptr,
		 size_t *len);

/* ---- writer ------------------------------------------------------------ */

#define JSON_W_MAX_DEPTH 64

/* Fields are private; the struct is public so it can live on the stack. */
struct json_writer {
	char *buf;
	size_t cap;
	size_t len;
	uint64_t kinds; /* bit i set: container at depth i+1 is an object */
	unsigned depth;
	bool err;   /* sticky */
	bool comma; /* current container already has a member */
	bool key;   /* in an object: key written, value due */
	bool done;  /* the top-level value is complete */
};

void json_w_init(struct json_writer *w, char *buf, size_t cap);
/*
 * Every call returns 0, or -1 once the writer is in error (a call that
 * fails leaves the buffer partially written; only json_w_finish() matters).
 * Commas and colons are inserted automatically; calling a value function
 * where a key is due (or json_w_key() where a value is due) is an error.
 */
int json_w_obj_begin(struct json_writer *w);
int json_w_obj_end(struct json_writer *w);
int json_w_arr_begin(struct json_writer *w);
int json_w_arr_end(struct json_writer *w);
int json_w_key(struct json_writer *w, const char *k);
int json_w_keyn(struct json_writer *w, const char *k, size_t len);
/*
 * Strings: '"', '\\' and control characters are escaped (\n, \t, ... or
 * \u00XX); valid UTF-8 passes through; each maximal invalid UTF-8 subpart
 * is replaced with U+FFFD (as WHATWG decoders do) so the output is always
 * valid UTF-8 and thus a valid WebSocket text frame.  json_w_strn() may
 * contain NUL bytes (written as \u0000).
 */
int json_w_str(struct json_writer *w, const char *s);
int json_w_strn(struct json_writer *w, const char *s, size_t len);
int json_w_int(struct json_writer *w, int64_t v);
int json_w_uint(struct json_writer *w, uint64_t v);
/* Finite values only (NaN/Inf are an error); shortest text that round-trips. */
int json_w_double(struct json_writer *w, double v);
int json_w_bool(struct json_writer *w, bool v);
int json_w_null(struct json_writer *w);
/* Trusted, complete JSON value inserted verbatim (not validated). */
int json_w_raw(struct json_writer *w, const char *text, size_t len);
/* "2026-11-26T12:34:56.789Z" from wall-clock ms (util_iso8601_ms()). */
int json_w_timestamp(struct json_writer *w, uint64_t wall_ms);
/*
 * 0 and the output length if exactly one complete value was written and no
 * error occurred; -1 otherwise (error, unbalanced, or nothing written).
 */
int json_w_finish(struct json_writer *w, size_t *len);

/* ---- helpers ----------------------------------------------------------- */

/*
 * Random (RFC 4122 version 4) UUID from getrandom(2), lower-case,
 * "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx" + NUL.  0, or -1 with errno
 * if the kernel gives no randomness (out is then "").
 */
int json_uuid_v4(char out[37]);

/*
 * RFC 3339 time "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)" to ms since
 * the epoch (fraction truncated to ms).  't' and 'z' are accepted, and a
 * space in place of the offset's '+' (an unencoded '+' in a query string
 * arrives as a space).  Leap seconds (:60) and times before 1970 are
 * refused.  0 or -1.
 */
int json_parse_iso8601_ms(const char *s, uint64_t *out);

#endif
