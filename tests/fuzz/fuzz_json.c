/*
 * fuzz_json: the strict JSON reader (json_parse on jsmn, the getters) and
 * the bounded writer, which everything else parses with.
 *
 * Input: byte 0 picks the limits (bit 0: top must be an object; bits 1-3:
 * depth limit; bits 4-5: token limit), the rest is the text.  With bit 6
 * of byte 0 set, the rest is instead written as a string by the writer.
 * Invariants: an error has an offset inside the input; a parsed document's
 * values walk consistently (lengths match iteration, a key look-up finds
 * the first such key, every string decodes to valid UTF-8 of the length
 * measured first); the document rewritten through the writer parses again
 * to the same number of tokens, and once its numbers are in normal form
 * rewriting gives the same bytes again.  A string written from any bytes
 * is valid JSON and valid UTF-8, equal to them when they were valid UTF-8,
 * else with U+FFFD in place of what was not.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/json.h"
#include "orchd/utf8.h"

FUZZ_DECLARE(json);

#define MAX_INPUT 65536

static char sbuf[MAX_INPUT + 1];

static void walk(const struct json_doc *d, int tok, struct json_writer *w);

/* Decode string tok into sbuf: measured length first, then the copy. */
static int
get_str(const struct json_doc *d, int tok, size_t *len)
{
	size_t need = 0, got = 0;
	int rc = json_get_string(d, tok, sbuf, 0, &need);

	if (rc == JSON_E_NUL)
		return -1;
	FUZZ_ASSERT(rc == JSON_E_NOSPACE || (rc == 0 && need == 0));
	FUZZ_ASSERT(need < sizeof(sbuf));
	FUZZ_ASSERT(json_get_string(d, tok, sbuf, need + 1, &got) == 0);
	FUZZ_ASSERT(got == need && sbuf[got] == '\0');
	FUZZ_ASSERT(strlen(sbuf) == got);
	FUZZ_ASSERT(utf8_valid((const uint8_t *)sbuf, got));
	if (need > 0)
		FUZZ_ASSERT(json_get_string(d, tok, sbuf, need, NULL) ==
				JSON_E_NOSPACE &&
			    sbuf[0] == '\0');
	/* Restore it for the caller. */
	json_get_string(d, tok, sbuf, need + 1, NULL);
	FUZZ_ASSERT(json_str_eq(d, tok, sbuf));
	*len = got;
	return 0;
}

static void
walk_obj(const struct json_doc *d, int tok, struct json_writer *w)
{
	int n = 0;

	json_w_obj_begin(w);
	for (int k = json_first(d, tok); k >= 0; k = json_next(d, k)) {
		size_t len;
		int v = json_obj_value(d, k);

		n++;
		FUZZ_ASSERT(json_type(d, k) == JSON_STRING && v >= 0);
		if (get_str(d, k, &len) == 0) {
			int first = json_obj_get(d, tok, sbuf);

			/* The first key with this text, never a later one. */
			FUZZ_ASSERT(first >= 0 && first <= v);
			json_w_keyn(w, sbuf, len);
		} else {
			json_w_key(w, "");
		}
		walk(d, v, w);
	}
	FUZZ_ASSERT(json_obj_len(d, tok) == n);
	json_w_obj_end(w);
}

static void
walk(const struct json_doc *d, int tok, struct json_writer *w)
{
	const char *raw;
	size_t rlen;
	int64_t i;
	uint64_t u;
	double x;
	bool b;

	FUZZ_ASSERT(json_tok_raw(d, tok, &raw, &rlen) == 0);
	FUZZ_ASSERT(raw >= d->buf && raw + rlen <= d->buf + d->len);
	switch (json_type(d, tok)) {
	case JSON_OBJECT:
		walk_obj(d, tok, w);
		break;
	case JSON_ARRAY: {
		int n = 0;

		json_w_arr_begin(w);
		for (int e = json_first(d, tok); e >= 0; e = json_next(d, e)) {
			if (n < 3)
				FUZZ_ASSERT(json_array_get(d, tok, n) == e);
			n++;
			walk(d, e, w);
		}
		FUZZ_ASSERT(json_array_len(d, tok) == n);
		FUZZ_ASSERT(json_array_get(d, tok, n) == -1);
		json_w_arr_end(w);
		break;
	}
	case JSON_STRING: {
		size_t len;

		if (get_str(d, tok, &len) == 0)
			json_w_strn(w, sbuf, len);
		else
			json_w_null(w);
		break;
	}
	case JSON_NUMBER: {
		int ri = json_get_int64(d, tok, &i);
		int ru = json_get_uint64(d, tok, &u);
		int rd = json_get_double(d, tok, &x);

		FUZZ_ASSERT(rd == 0 || rd == JSON_E_RANGE);
		if (ri == 0 && ru == 0)
			FUZZ_ASSERT(i >= 0 && (uint64_t)i == u);
		if (ri == 0)
			json_w_int(w, i);
		else if (ru == 0)
			json_w_uint(w, u);
		else if (rd == 0)
			json_w_double(w, x);
		else
			json_w_raw(w, raw, rlen);
		break;
	}
	case JSON_BOOL:
		FUZZ_ASSERT(json_get_bool(d, tok, &b) == 0);
		json_w_bool(w, b);
		break;
	case JSON_NULL:
		FUZZ_ASSERT(json_is_null(d, tok));
		json_w_null(w);
		break;
	default:
		FUZZ_ASSERT(0);
	}
}

/* Rewrite d into out; its length, or -1 if the writer refused. */
static long
rewrite(const struct json_doc *d, char *out, size_t cap)
{
	struct json_writer w;
	size_t len;

	json_w_init(&w, out, cap);
	walk(d, json_root(d), &w);
	if (json_w_finish(&w, &len) != 0)
		return -1;
	return (long)len;
}

int
FUZZ_INIT(json)(int *argc, char ***argv)
{
	return 0;
}

/*
 * The writer on arbitrary bytes: json_w_strn() must give a valid JSON
 * string whose text is valid UTF-8, equal to the input when the input is
 * valid UTF-8, else with each invalid part replaced by U+FFFD.
 */
static void
write_bytes(const uint8_t *p, size_t len)
{
	static char out[8 * MAX_INPUT + 16];
	struct json_writer w;
	struct json_doc d;
	size_t n, got;

	json_w_init(&w, out, sizeof(out));
	json_w_strn(&w, (const char *)p, len);
	FUZZ_ASSERT(json_w_finish(&w, &n) == 0);
	FUZZ_ASSERT(utf8_valid((const uint8_t *)out, n));
	FUZZ_ASSERT(
	    json_parse(&d, out, n,
		       &(struct json_limits){.max_size = sizeof(out)}) == 0);
	FUZZ_ASSERT(json_type(&d, 0) == JSON_STRING);
	if (memchr(p, '\0', len) == NULL) {
		FUZZ_ASSERT(json_get_string(&d, 0, sbuf, 0, &got) ==
				JSON_E_NOSPACE ||
			    got == 0);
		if (got < sizeof(sbuf)) {
			FUZZ_ASSERT(json_get_string(&d, 0, sbuf, sizeof(sbuf),
						    &got) == 0);
			if (utf8_valid(p, len))
				FUZZ_ASSERT(got == len &&
					    memcmp(sbuf, p, len) == 0);
			else
				FUZZ_ASSERT(strstr(sbuf, "\xef\xbf\xbd") !=
					    NULL);
		}
	}
	json_doc_free(&d);
}

int
FUZZ_ENTRY(json)(const uint8_t *data, size_t size)
{
	static char out1[4 * MAX_INPUT], out2[4 * MAX_INPUT];
	struct json_limits lim;
	struct json_doc d, d2;
	long n1, n2;
	int rc;

	if (size < 1 || size > MAX_INPUT)
		return 0;
	if (data[0] & 0x40) {
		write_bytes(data + 1, size - 1);
		return 0;
	}
	memset(&lim, 0, sizeof(lim));
	lim.flags = (data[0] & 1) ? JSON_REQUIRE_OBJECT : 0;
	lim.max_depth = ((data[0] >> 1) & 7) * 8; /* 0: the default, 32 */
	lim.max_tokens = ((data[0] >> 4) & 3) * 512;
	rc = json_parse(&d, (const char *)data + 1, size - 1, &lim);
	if (rc != 0) {
		FUZZ_ASSERT(rc < 0 && json_strerror(rc) != NULL);
		FUZZ_ASSERT(rc != JSON_E_INTERNAL);
		FUZZ_ASSERT(d.err_off <= size - 1);
		json_doc_free(&d);
		return 0;
	}
	FUZZ_ASSERT(json_root(&d) == 0 && d.ntoks >= 1);
	FUZZ_ASSERT(!(lim.flags & JSON_REQUIRE_OBJECT) ||
		    json_type(&d, 0) == JSON_OBJECT);
	n1 = rewrite(&d, out1, sizeof(out1));
	if (n1 >= 0) {
		struct json_limits big = {.max_size = sizeof(out1),
					  .max_tokens = 1u << 20,
					  .max_depth = JSON_MAX_DEPTH_CAP};

		rc = json_parse(&d2, out1, (size_t)n1, &big);
		FUZZ_ASSERT(rc == 0);
		FUZZ_ASSERT(d2.ntoks == d.ntoks);
		/*
		 * The first rewrite normalises numbers (an underflow to -0.0
		 * prints "-0", which reads back as the integer 0); from the
		 * second on the text must not change.
		 */
		n2 = rewrite(&d2, out2, sizeof(out2));
		FUZZ_ASSERT(n2 >= 0);
		json_doc_free(&d2);
		rc = json_parse(&d2, out2, (size_t)n2, &big);
		FUZZ_ASSERT(rc == 0 && d2.ntoks == d.ntoks);
		n1 = rewrite(&d2, out1, sizeof(out1));
		FUZZ_ASSERT(n1 == n2 && memcmp(out1, out2, (size_t)n1) == 0);
		json_doc_free(&d2);
	}
	json_doc_free(&d);
	return 0;
}
