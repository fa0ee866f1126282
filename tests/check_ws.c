/*
 * Unit tests for the WebSocket codec: handshake helpers, frame headers,
 * unmasking, UTF-8 validation, close payloads and the message reader.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/utf8.h"
#include "orchd/ws.h"

static const uint8_t test_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Deterministic xorshift so a failure can be replayed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static size_t
rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* ---- event capture ------------------------------------------------------ */

struct rec {
	int type;
	unsigned code;
	const char *err;
	uint8_t *data;
	size_t len;
};

struct recs {
	struct rec *v;
	size_t n, cap;
};

static void
recs_add(struct recs *rs, int type, unsigned code, const uint8_t *data,
	 size_t len)
{
	struct rec *r;

	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 16;
		rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
		ck_assert_ptr_nonnull(rs->v);
	}
	r = &rs->v[rs->n++];
	r->type = type;
	r->code = code;
	r->err = NULL;
	r->len = len;
	r->data = malloc(len + 1);
	ck_assert_ptr_nonnull(r->data);
	if (len)
		memcpy(r->data, data, len);
}

static void
recs_free(struct recs *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->v[i].data);
	free(rs->v);
	memset(rs, 0, sizeof(*rs));
}

/*
 * Feed stream[0..len) to r as a connection would, revealing it in chunks of
 * chunk bytes (0: all at once, SIZE_MAX: random sizes), recording every
 * event.  Stops after an error.  The stream is unmasked in place.
 */
static void
feed_stream(struct ws_reader *r, uint8_t *stream, size_t len, size_t chunk,
	    struct recs *out)
{
	size_t off = 0, avail = 0;

	while (off < len || avail < len) {
		struct ws_event ev;
		size_t used;
		int t;

		if (chunk == 0)
			avail = len;
		else if (chunk == SIZE_MAX)
			avail += 1 + rnd_below(3000);
		else
			avail += chunk;
		if (avail > len)
			avail = len;
		for (;;) {
			t = ws_reader_feed(r, stream + off, avail - off, &used,
					   &ev);
			/*
			 * Plain checks: a ck_assert costs a pipe write, and
			 * this runs millions of times byte by byte.
			 */
			if (t != (int)ev.type || used > avail - off)
				ck_abort_msg("bad feed result %d/%d used %zu",
					     t, ev.type, used);
			off += used;
			if (t == WS_EV_NEED_MORE) {
				if (off != avail)
					ck_abort_msg("NEED_MORE left %zu bytes",
						     avail - off);
				break;
			}
			recs_add(out, t, ev.code, ev.data, ev.len);
			out->v[out->n - 1].err = ev.err;
			if (t == WS_EV_ERROR)
				return;
		}
		if (avail == len)
			break;
	}
}

static size_t
mkframe(uint8_t *out, size_t cap, unsigned op, unsigned flags, const void *p,
	size_t len)
{
	size_t n = ws_frame_encode(out, cap, op, flags, p, len, test_mask);

	ck_assert_uint_gt(n, 0);
	return n;
}

/* Feed one whole buffer, return the first event (copied into *rec). */
static int
feed_one(const struct ws_reader_limits *lim, const uint8_t *bytes, size_t len,
	 struct rec *out)
{
	struct ws_reader r;
	struct recs rs = {0};
	uint8_t *copy = malloc(len + 1);
	int t;

	memcpy(copy, bytes, len);
	ws_reader_init(&r, lim, NULL);
	feed_stream(&r, copy, len, 0, &rs);
	ws_reader_free(&r);
	free(copy);
	if (rs.n == 0) {
		recs_free(&rs);
		out->type = WS_EV_NEED_MORE;
		out->data = NULL;
		return WS_EV_NEED_MORE;
	}
	*out = rs.v[0];
	for (size_t i = 1; i < rs.n; i++)
		free(rs.v[i].data);
	free(rs.v);
	t = out->type;
	return t;
}

/* ---- handshake ---------------------------------------------------------- */

START_TEST(test_accept_key)
{
	char out[WS_ACCEPT_LEN + 1];
	const char *k1 = "dGhlIHNhbXBsZSBub25jZQ==";
	const char *k2 = "x3JJHMbDL1EzLkh9GBhXDw==";
	char big[80];

	ck_assert_int_eq(ws_accept_key(k1, strlen(k1), out), 0);
	/* RFC 6455 section 1.3 (the value in some briefs, "...9kGjzrYm...",
	 * is a typo; Python's hashlib and MDN agree with this one). */
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	ck_assert_int_eq(ws_accept_key(k2, strlen(k2), out), 0);
	ck_assert_str_eq(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
	memset(big, 'A', sizeof(big));
	ck_assert_int_eq(ws_accept_key(big, sizeof(big), out), -1);
}
END_TEST

START_TEST(test_key_valid)
{
	static const char *good[] = {
	    "dGhlIHNhbXBsZSBub25jZQ==",
	    "x3JJHMbDL1EzLkh9GBhXDw==",
	    "AAAAAAAAAAAAAAAAAAAAAA==",
	    "++++++++++++++++++++//==",
	};
	static const char *bad[] = {
	    "",
	    "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 chars */
	    "dGhlIHNhbXBsZSBub25jZQ===",    /* 25 chars */
	    "dGhlIHNhbXBsZSBub25jZQAA",     /* no padding */
	    "dGhlIHNhbXBsZSBub25jZ===",     /* 15 bytes + '=' */
	    "dGhlIHNhbXBs=SBub25jZQ==",     /* '=' inside */
	    "dGhlIHNhbXBsZSBub25j ZQ==",    /* space */
	    "dGhlIHNhbXBsZSBub25j-Q==",     /* url-safe alphabet */
	    "dGhlIHNhbXBsZSBub25jZQ==AAAA", /* 20 bytes */
	    "dGhlIHNhbXBsZSBub25jZSE=",     /* 17 bytes */
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(ws_key_valid(good[i], strlen(good[i])), "%s",
			      good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!ws_key_valid(bad[i], strlen(bad[i])), "%s",
			      bad[i]);
}
END_TEST

/* ---- frame headers ------------------------------------------------------ */

START_TEST(test_parse_rfc_examples)
{
	/* RFC 6455 5.7: masked "Hello". */
	static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
					0x7f, 0x9f, 0x4d, 0x51, 0x58};
	struct ws_frame f;
	uint8_t payload[5];

	ck_assert_int_eq(ws_frame_parse(hello, sizeof(hello), 0, &f), 6);
	ck_assert_uint_eq(f.opcode, WS_OP_TEXT);
	ck_assert_uint_eq(f.fin, 1);
	ck_assert_uint_eq(f.rsv1, 0);
	ck_assert_uint_eq(f.masked, 1);
	ck_assert_uint_eq(f.len, 5);
	ck_assert_uint_eq(f.hlen, 6);
	ck_assert_mem_eq(f.mask, test_mask, 4);
	memcpy(payload, hello + 6, 5);
	ws_unmask(payload, 5, f.mask, 0);
	ck_assert_mem_eq(payload, "Hello", 5);
}
END_TEST

START_TEST(test_parse_lengths)
{
	static const uint64_t lens[] = {
	    0,     1,     125,      126,        127,
	    65535, 65536, 1u << 20, 1ull << 32, (1ull << 63) - 1};
	uint8_t h[WS_HEADER_MAX];
	struct ws_frame f;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = ws_frame_header_encode(h, WS_OP_BINARY, WS_FRAME_FIN,
						  lens[i], test_mask);

		ck_assert_uint_eq(n, ws_frame_header_size(lens[i], 1));
		ck_assert_uint_eq(n, lens[i] < 126       ? 6
				     : lens[i] <= 0xffff ? 8
							 : 14);
		ck_assert_int_eq(ws_frame_parse(h, n, 0, &f), (int)n);
		ck_assert_uint_eq(f.len, lens[i]);
		ck_assert_uint_eq(f.opcode, WS_OP_BINARY);
		/* Every strict prefix needs more. */
		for (size_t k = 0; k < n; k++)
			ck_assert_int_eq(ws_frame_parse(h, k, 0, &f), 0);
		/* Unmasked (server) header, parsed in client mode. */
		n = ws_frame_header_encode(h, WS_OP_TEXT, WS_FRAME_FIN, lens[i],
					   NULL);
		ck_assert_uint_eq(n, ws_frame_header_size(lens[i], 0));
		ck_assert_int_eq(ws_frame_parse(h, n, WS_PARSE_CLIENT, &f),
				 (int)n);
		ck_assert_uint_eq(f.len, lens[i]);
		ck_assert_uint_eq(f.masked, 0);
	}
}
END_TEST

START_TEST(test_parse_nonminimal)
{
	/* 5 in a 16-bit and in a 64-bit length field: accepted. */
	static const uint8_t h16[] = {0x81, 0xfe, 0, 5, 1, 2, 3, 4};
	static const uint8_t h64[] = {0x82, 0xff, 0, 0, 0, 0, 0,
				      0,    0,    5, 1, 2, 3, 4};
	struct ws_frame f;

	ck_assert_int_eq(ws_frame_parse(h16, sizeof(h16), 0, &f), 8);
	ck_assert_uint_eq(f.len, 5);
	ck_assert_int_eq(ws_frame_parse(h64, sizeof(h64), 0, &f), 14);
	ck_assert_uint_eq(f.len, 5);
}
END_TEST

struct bad_hdr {
	uint8_t b[14];
	size_t len; /* bytes needed to detect the error */
	unsigned flags;
	const char *what;
};

START_TEST(test_parse_errors)
{
	static const struct bad_hdr v[] = {
	    {{0x81, 0x05}, 2, 0, "unmasked"},
	    {{0x81, 0x85}, 2, WS_PARSE_CLIENT, "masked to a client"},
	    {{0xa1}, 1, 0, "RSV2"},
	    {{0x91}, 1, 0, "RSV3"},
	    {{0xf1}, 1, WS_PARSE_RSV1, "RSV1+2+3"},
	    {{0xc1}, 1, 0, "RSV1 without pmd"},
	    {{0xc2}, 1, 0, "RSV1 binary without pmd"},
	    {{0xc0}, 1, WS_PARSE_RSV1, "RSV1 on continuation"},
	    {{0x40}, 1, WS_PARSE_RSV1, "RSV1 on non-final continuation"},
	    {{0xc9}, 1, WS_PARSE_RSV1, "RSV1 on ping"},
	    {{0xca}, 1, WS_PARSE_RSV1, "RSV1 on pong"},
	    {{0xc8}, 1, WS_PARSE_RSV1, "RSV1 on close"},
	    {{0x83}, 1, 0, "opcode 3"},
	    {{0x84}, 1, 0, "opcode 4"},
	    {{0x85}, 1, 0, "opcode 5"},
	    {{0x86}, 1, 0, "opcode 6"},
	    {{0x87}, 1, 0, "opcode 7"},
	    {{0x8b}, 1, 0, "opcode 11"},
	    {{0x8c}, 1, 0, "opcode 12"},
	    {{0x8d}, 1, 0, "opcode 13"},
	    {{0x8e}, 1, 0, "opcode 14"},
	    {{0x8f}, 1, 0, "opcode 15"},
	    {{0x03}, 1, 0, "opcode 3 no FIN"},
	    {{0x09}, 1, 0, "fragmented ping"},
	    {{0x0a}, 1, 0, "fragmented pong"},
	    {{0x08}, 1, 0, "fragmented close"},
	    {{0x89, 0xfe, 0x00, 0x7e}, 4, 0, "ping of 126 (16-bit)"},
	    {{0x89, 0xfe, 0xff, 0xff}, 4, 0, "ping of 65535"},
	    {{0x8a, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x7e},
	     10,
	     0,
	     "pong of 126 (64-bit)"},
	    {{0x88, 0xfe, 0x01, 0x00}, 4, 0, "close of 256"},
	    {{0x89, 0xff, 0x80}, 3, 0, "ping, 64-bit top bit"},
	    {{0x82, 0xff, 0x80}, 3, 0, "64-bit length, top bit"},
	    {{0x82, 0xff, 0xff}, 3, 0, "64-bit length, all ones"},
	};
	struct ws_frame f;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		/* Detected with exactly the bytes that show it... */
		ck_assert_msg(ws_frame_parse(v[i].b, v[i].len, v[i].flags,
					     &f) == -WS_CLOSE_PROTOCOL,
			      "%s", v[i].what);
		/* ...and with a whole header too. */
		ck_assert_msg(ws_frame_parse(v[i].b, 14, v[i].flags, &f) ==
				  -WS_CLOSE_PROTOCOL,
			      "%s (14 bytes)", v[i].what);
	}
}
END_TEST

START_TEST(test_parse_allowed)
{
	/* The same bytes are fine under the right conditions. */
	static const uint8_t rsv1_text[] = {0xc1, 0x80, 1, 2, 3, 4};
	static const uint8_t rsv1_bin[] = {0x42, 0x80, 1, 2, 3, 4};
	static const uint8_t ping125[] = {0x89, 0xfd, 1, 2, 3, 4};
	static const uint8_t cont[] = {0x00, 0x80, 1, 2, 3, 4};
	/* Control frames with non-minimal encodings of <= 125. */
	static const uint8_t ping16[] = {0x89, 0xfe, 0, 125, 1, 2, 3, 4};
	static const uint8_t close64[] = {0x88, 0xff, 0, 0, 0, 0, 0,
					  0,    0,    2, 1, 2, 3, 4};
	static const uint8_t top63[] = {0x82, 0xff, 0x7f, 0xff, 0xff,
					0xff, 0xff, 0xff, 0xff, 0xff,
					1,    2,    3,    4};
	struct ws_frame f;

	ck_assert_int_eq(ws_frame_parse(rsv1_text, 6, WS_PARSE_RSV1, &f), 6);
	ck_assert_uint_eq(f.rsv1, 1);
	ck_assert_int_eq(ws_frame_parse(rsv1_bin, 6, WS_PARSE_RSV1, &f), 6);
	ck_assert_uint_eq(f.fin, 0);
	ck_assert_int_eq(ws_frame_parse(ping125, 6, 0, &f), 6);
	ck_assert_uint_eq(f.len, 125);
	ck_assert_int_eq(ws_frame_parse(cont, 6, 0, &f), 6);
	ck_assert_int_eq(ws_frame_parse(ping16, 8, 0, &f), 8);
	ck_assert_uint_eq(f.len, 125);
	ck_assert_int_eq(ws_frame_parse(close64, 14, 0, &f), 14);
	ck_assert_uint_eq(f.len, 2);
	ck_assert_int_eq(ws_frame_parse(top63, 14, 0, &f), 14);
	ck_assert_uint_eq(f.len, (1ull << 63) - 1);
}
END_TEST

START_TEST(test_encode_frame)
{
	uint8_t out[64], small[4];
	size_t n;

	/* Server frame: RFC 6455 5.7 unmasked "Hello". */
	n = ws_frame_encode(out, sizeof(out), WS_OP_TEXT, WS_FRAME_FIN,
			    (const uint8_t *)"Hello", 5, NULL);
	ck_assert_uint_eq(n, 7);
	ck_assert_mem_eq(out, "\x81\x05Hello", 7);
	/* Masked: RFC 6455 5.7 masked "Hello". */
	n = ws_frame_encode(out, sizeof(out), WS_OP_TEXT, WS_FRAME_FIN,
			    (const uint8_t *)"Hello", 5, test_mask);
	ck_assert_uint_eq(n, 11);
	ck_assert_mem_eq(out, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
			 11);
	/* Unmasked ping with "Hello"; RSV1 flag; too small a buffer. */
	n = ws_frame_encode(out, sizeof(out), WS_OP_PING, WS_FRAME_FIN,
			    (const uint8_t *)"Hello", 5, NULL);
	ck_assert_mem_eq(out, "\x89\x05Hello", 7);
	n = ws_frame_header_encode(out, WS_OP_TEXT,
				   WS_FRAME_RSV1 | WS_FRAME_FIN, 256, NULL);
	ck_assert_uint_eq(n, 4);
	ck_assert_mem_eq(out, "\xc1\x7e\x01\x00", 4);
	n = ws_frame_header_encode(out, WS_OP_BINARY, 0, 65536, NULL);
	ck_assert_uint_eq(n, 10);
	ck_assert_mem_eq(out, "\x02\x7f\0\0\0\0\0\x01\0\0", 10);
	ck_assert_uint_eq(ws_frame_encode(small, sizeof(small), WS_OP_TEXT,
					  WS_FRAME_FIN, (const uint8_t *)"abc",
					  3, NULL),
			  0);
}
END_TEST

/* ---- unmasking ---------------------------------------------------------- */

static void
unmask_ref(uint8_t *b, size_t len, const uint8_t m[4], uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		b[i] ^= m[(off + i) % 4];
}

START_TEST(test_unmask_vs_reference)
{
	uint8_t a[1100], b[1100], m[4];

	for (int iter = 0; iter < 3000; iter++) {
		size_t len = rnd_below(1025), start = rnd_below(16);
		uint64_t off = rnd_below(64);

		for (size_t i = 0; i < sizeof(a); i++)
			a[i] = b[i] = (uint8_t)rnd();
		for (int i = 0; i < 4; i++)
			m[i] = (uint8_t)rnd();
		/* Misaligned start on purpose. */
		ws_unmask(a + start, len, m, off);
		unmask_ref(b + start, len, m, off);
		ck_assert_mem_eq(a, b, sizeof(a));
	}
}
END_TEST

START_TEST(test_unmask_in_pieces)
{
	uint8_t orig[3000], a[3000], b[3000], m[4] = {0xde, 0xad, 0xbe, 0xef};

	for (size_t i = 0; i < sizeof(orig); i++)
		orig[i] = (uint8_t)rnd();
	for (int iter = 0; iter < 300; iter++) {
		size_t pos = 0;

		memcpy(a, orig, sizeof(a));
		memcpy(b, orig, sizeof(b));
		unmask_ref(b, sizeof(b), m, 0);
		while (pos < sizeof(a)) {
			size_t n = 1 + rnd_below(40);

			if (n > sizeof(a) - pos)
				n = sizeof(a) - pos;
			ws_unmask(a + pos, n, m, pos);
			pos += n;
		}
		ck_assert_mem_eq(a, b, sizeof(a));
	}
	/* Masking twice is the identity. */
	memcpy(a, orig, sizeof(a));
	ws_unmask(a, sizeof(a), m, 3);
	ck_assert(memcmp(a, orig, sizeof(a)) != 0);
	ws_unmask(a, sizeof(a), m, 3);
	ck_assert_mem_eq(a, orig, sizeof(a));
}
END_TEST

/* ---- UTF-8 -------------------------------------------------------------- */

#define S(x) (const uint8_t *)(x), sizeof(x) - 1

START_TEST(test_utf8_vectors)
{
	static const struct {
		const char *s;
		size_t len;
		int valid;
	} v[] = {
	    {"", 0, 1},
	    {"hello", 5, 1},
	    /* Autobahn 6.2: "kosme" in Greek */
	    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 1},
	    /* boundaries: U+0000, 007F, 0080, 07FF, 0800, FFFF */
	    {"\x00", 1, 1},
	    {"\x7f", 1, 1},
	    {"\xc2\x80", 2, 1},
	    {"\xdf\xbf", 2, 1},
	    {"\xe0\xa0\x80", 3, 1},
	    {"\xef\xbf\xbf", 3, 1},
	    /* U+D7FF, U+E000 around the surrogates, U+FFFD */
	    {"\xed\x9f\xbf", 3, 1},
	    {"\xee\x80\x80", 3, 1},
	    {"\xef\xbf\xbd", 3, 1},
	    /* U+10000, U+10FFFF */
	    {"\xf0\x90\x80\x80", 4, 1},
	    {"\xf4\x8f\xbf\xbf", 4, 1},
	    {"\xf3\xbf\xbf\xbf", 4, 1},
	    /* surrogates U+D800, U+DBFF, U+DC00, U+DFFF, a pair */
	    {"\xed\xa0\x80", 3, 0},
	    {"\xed\xad\xbf", 3, 0},
	    {"\xed\xb0\x80", 3, 0},
	    {"\xed\xbf\xbf", 3, 0},
	    {"\xed\xa0\x80\xed\xb0\x80", 6, 0},
	    /* above U+10FFFF */
	    {"\xf4\x90\x80\x80", 4, 0},
	    {"\xf7\xbf\xbf\xbf", 4, 0},
	    {"\xf8\x88\x80\x80\x80", 5, 0},
	    {"\xfc\x84\x80\x80\x80\x80", 6, 0},
	    /* overlongs */
	    {"\xc0\xaf", 2, 0},
	    {"\xc0\x80", 2, 0},
	    {"\xc1\xbf", 2, 0},
	    {"\xe0\x80\xaf", 3, 0},
	    {"\xe0\x9f\xbf", 3, 0},
	    {"\xf0\x80\x80\xaf", 4, 0},
	    {"\xf0\x8f\xbf\xbf", 4, 0},
	    /* lone continuation bytes, bad bytes */
	    {"\x80", 1, 0},
	    {"\xbf", 1, 0},
	    {"a\x80z", 3, 0},
	    {"\xfe", 1, 0},
	    {"\xff", 1, 0},
	    /* truncated sequences */
	    {"\xc2", 1, 0},
	    {"\xe0\xa0", 2, 0},
	    {"\xf0\x90\x80", 3, 0},
	    {"\xce\xba\xe1\xbd", 4, 0},
	    /* lead byte followed by ASCII */
	    {"\xc2\x41", 2, 0},
	    {"\xe1\x80\x41", 3, 0},
	    /* Autobahn 6.4.x style: valid then invalid */
	    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
	     "edited",
	     20, 0},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		ck_assert_msg(utf8_valid((const uint8_t *)v[i].s, v[i].len) ==
				  v[i].valid,
			      "vector %zu", i);
}
END_TEST

/* Reference: decode and range-check each code point. */
static int
utf8_ref(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint32_t c = s[i], min;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			c &= 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			c &= 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			c &= 0x07;
			min = 0x10000;
		} else {
			return 0;
		}
		if (len - i - 1 < n)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (s[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

START_TEST(test_utf8_exhaustive)
{
	uint8_t b[4];
	unsigned long bad = 0, checked = 0;

	/* Every 1-, 2- and 3-byte string (one assertion at the end: fast). */
	for (unsigned x = 0; x < 256; x++) {
		b[0] = (uint8_t)x;
		bad += utf8_valid(b, 1) != utf8_ref(b, 1);
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (uint8_t)y;
			bad += utf8_valid(b, 2) != utf8_ref(b, 2);
			for (unsigned z = 0; z < 256; z++) {
				b[2] = (uint8_t)z;
				bad += utf8_valid(b, 3) != utf8_ref(b, 3);
				checked++;
			}
		}
	}
	/* 4-byte strings from F0..F7 with tails around 80..BF. */
	for (unsigned x = 0xf0; x < 0xf8; x++)
		for (unsigned y = 0x70; y < 0xd0; y++)
			for (unsigned z = 0x70; z < 0xd0; z += 3)
				for (unsigned w = 0x70; w < 0xd0; w += 5) {
					b[0] = (uint8_t)x;
					b[1] = (uint8_t)y;
					b[2] = (uint8_t)z;
					b[3] = (uint8_t)w;
					bad +=
					    utf8_valid(b, 4) != utf8_ref(b, 4);
					checked++;
				}
	ck_assert_uint_eq(checked, 16777216ul + 8ul * 96 * 32 * 20);
	ck_assert_msg(bad == 0, "%lu mismatches with the reference", bad);
}
END_TEST

START_TEST(test_utf8_fail_fast)
{
	static const uint8_t s[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"
				   "\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
	uint32_t st = UTF8_ACCEPT;

	/* Byte at a time: rejected at the A0 after ED, index 12. */
	for (size_t i = 0; i < sizeof(s) - 1; i++) {
		st = utf8_validate(st, s + i, 1);
		if (i < 12)
			ck_assert_uint_ne(st, UTF8_REJECT);
		else
			ck_assert_uint_eq(st, UTF8_REJECT);
	}
	/* Prefix up to the bad byte is not rejected, with it is. */
	ck_assert_uint_ne(utf8_validate(UTF8_ACCEPT, s, 12), UTF8_REJECT);
	ck_assert_uint_eq(utf8_validate(UTF8_ACCEPT, s, 13), UTF8_REJECT);
	/* A valid character split across calls. */
	st = utf8_validate(UTF8_ACCEPT, S("ab\xf0\x9f"));
	ck_assert_uint_ne(st, UTF8_ACCEPT);
	ck_assert_uint_ne(st, UTF8_REJECT);
	st = utf8_validate(st, S("\x98\x80"
				 "cd"));
	ck_assert_uint_eq(st, UTF8_ACCEPT);
	/* Reject is sticky; a long ASCII run after it changes nothing. */
	st = utf8_validate(UTF8_ACCEPT, S("\xff"));
	st = utf8_validate(st, S("aaaaaaaaaaaaaaaaaaaaaaaaa"));
	ck_assert_uint_eq(st, UTF8_REJECT);
	/* Bad byte after a long ASCII run (word fast path). */
	ck_assert(!utf8_valid(S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x80")));
	ck_assert(utf8_valid(S("aaaaaaaaaaaaaaaa\xc3\xa9"
			       "aaaaaaaaaaaaa")));
}
END_TEST

START_TEST(test_utf8_positions)
{
	/* A bad byte, or a good character, at every offset of a long ASCII
	 * run: exercises each lane of the 8-byte fast path. */
	uint8_t b[64];

	for (size_t pos = 0; pos + 4 <= sizeof(b); pos++) {
		memset(b, 'a', sizeof(b));
		b[pos] = 0x80;
		ck_assert_msg(!utf8_valid(b, sizeof(b)), "0x80 at %zu", pos);
		b[pos] = 0xff;
		ck_assert_msg(!utf8_valid(b, sizeof(b)), "0xff at %zu", pos);
		b[pos] = 0xc3;
		ck_assert_msg(!utf8_valid(b, sizeof(b)), "lone C3 at %zu", pos);
		b[pos + 1] = 0xa9;
		ck_assert_msg(utf8_valid(b, sizeof(b)), "C3 A9 at %zu", pos);
		memcpy(b + pos, "\xf0\x9f\x98\x80", 4);
		ck_assert_msg(utf8_valid(b, sizeof(b)), "U+1F600 at %zu", pos);
		b[pos + 3] = 'a';
		ck_assert_msg(!utf8_valid(b, sizeof(b)), "cut 4-byte at %zu",
			      pos);
	}
}
END_TEST

START_TEST(test_utf8_boundary)
{
	ck_assert_uint_eq(utf8_boundary(S("")), 0);
	ck_assert_uint_eq(utf8_boundary(S("abc")), 3);
	ck_assert_uint_eq(utf8_boundary(S("ab\xc3\xa9")), 4);
	ck_assert_uint_eq(utf8_boundary(S("ab\xc3")), 2);
	ck_assert_uint_eq(utf8_boundary(S("a\xe2\x82")), 1);
	ck_assert_uint_eq(utf8_boundary(S("a\xe2\x82\xac")), 4);
	ck_assert_uint_eq(utf8_boundary(S("a\xf0\x9f\x98")), 1);
	ck_assert_uint_eq(utf8_boundary(S("a\xf0\x9f\x98\x80")), 5);
}
END_TEST

/* ---- close -------------------------------------------------------------- */

START_TEST(test_close_codes)
{
	static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008,
					 1009, 1010, 1011, 1012, 1013, 1014,
					 3000, 3999, 4000, 4001, 4007, 4999};
	static const unsigned invalid[] = {0,    1,    999,  1004, 1005,
					   1006, 1015, 1016, 1100, 2000,
					   2999, 5000, 65535};

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		ck_assert_msg(ws_close_code_valid(valid[i]), "%u", valid[i]);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		ck_assert_msg(!ws_close_code_valid(invalid[i]), "%u",
			      invalid[i]);
}
END_TEST

START_TEST(test_close_payload)
{
	uint8_t out[WS_CLOSE_FRAME_MAX];
	char reason[200];
	size_t n;

	ck_assert_uint_eq(ws_close_payload(out, 1000, NULL), 2);
	ck_assert_mem_eq(out, "\x03\xe8", 2);
	ck_assert_uint_eq(ws_close_payload(out, 4001, "auth"), 6);
	ck_assert_mem_eq(out,
			 "\x0f\xa1"
			 "auth",
			 6);
	ck_assert_uint_eq(ws_close_payload(out, WS_CLOSE_NO_STATUS, "x"), 0);
	ck_assert_uint_eq(ws_close_payload(out, 0, NULL), 0);
	/* 122 ASCII + a 2-byte character = 124 bytes: cut to 122. */
	memset(reason, 'a', 122);
	memcpy(reason + 122, "\xc3\xa9", 3);
	ck_assert_uint_eq(ws_close_payload(out, 1000, reason), 2 + 122);
	/* 121 ASCII + 2-byte character = 123 bytes: fits exactly. */
	memset(reason, 'a', 121);
	memcpy(reason + 121, "\xc3\xa9", 3);
	ck_assert_uint_eq(ws_close_payload(out, 1000, reason), 2 + 123);
	/* Long ASCII: cut to 123. */
	memset(reason, 'b', 199);
	reason[199] = '\0';
	n = ws_close_payload(out, 1001, reason);
	ck_assert_uint_eq(n, 125);
	ck_assert(utf8_valid(out + 2, n - 2));
	/* Whole frame. */
	n = ws_close_frame(out, 1000, "bye");
	ck_assert_uint_eq(n, 7);
	ck_assert_mem_eq(out,
			 "\x88\x05\x03\xe8"
			 "bye",
			 7);
	n = ws_close_frame(out, WS_CLOSE_NO_STATUS, NULL);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "\x88\x00", 2);
}
END_TEST

/* ---- reader ------------------------------------------------------------- */

START_TEST(test_reader_hello_in_place)
{
	uint8_t b[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
		       0x7f, 0x9f, 0x4d, 0x51, 0x58};
	struct ws_reader r;
	struct ws_event ev;
	size_t used;

	ws_reader_init(&r, NULL, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, b, sizeof(b), &used, &ev),
			 WS_EV_TEXT);
	ck_assert_uint_eq(used, sizeof(b));
	ck_assert_uint_eq(ev.len, 5);
	/* Handed over in place: no copy, no buffer. */
	ck_assert_ptr_eq(ev.data, b + 6);
	ck_assert_mem_eq(ev.data, "Hello", 5);
	ck_assert_ptr_null(r.buf);
	ck_assert_int_eq(ws_reader_feed(&r, b + used, 0, &used, &ev),
			 WS_EV_NEED_MORE);
	ws_reader_free(&r);
}
END_TEST

START_TEST(test_reader_fragmented_with_ping)
{
	uint8_t s[128];
	size_t n = 0;
	struct ws_reader r;
	struct recs rs = {0};

	n += mkframe(s + n, sizeof(s) - n, WS_OP_TEXT, 0, "Hel", 3);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_PING, WS_FRAME_FIN, "p1", 2);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CONT, 0, "", 0);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_PONG, WS_FRAME_FIN, "", 0);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CONT, WS_FRAME_FIN, "lo", 2);
	ws_reader_init(&r, NULL, NULL);
	feed_stream(&r, s, n, 0, &rs);
	ck_assert_uint_eq(rs.n, 3);
	ck_assert_int_eq(rs.v[0].type, WS_EV_PING);
	ck_assert_uint_eq(rs.v[0].len, 2);
	ck_assert_mem_eq(rs.v[0].data, "p1", 2);
	ck_assert_int_eq(rs.v[1].type, WS_EV_PONG);
	ck_assert_uint_eq(rs.v[1].len, 0);
	ck_assert_int_eq(rs.v[2].type, WS_EV_TEXT);
	ck_assert_uint_eq(rs.v[2].len, 5);
	ck_assert_mem_eq(rs.v[2].data, "Hello", 5);
	/* The reassembly buffer is released by the next feed. */
	ck_assert_ptr_null(r.buf);
	ws_reader_free(&r);
	recs_free(&rs);
}
END_TEST

START_TEST(test_reader_release)
{
	uint8_t s[128];
	size_t n = 0, used;
	struct ws_reader r;
	struct ws_event ev;

	n += mkframe(s + n, sizeof(s) - n, WS_OP_BINARY, 0, "ab", 2);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CONT, WS_FRAME_FIN, "cd", 2);
	ws_reader_init(&r, NULL, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, s, n, &used, &ev), WS_EV_BINARY);
	ck_assert_uint_eq(used, n);
	ck_assert_ptr_eq(ev.data, r.buf);
	ck_assert_mem_eq(ev.data, "abcd", 4);
	ck_assert_ptr_nonnull(r.buf);
	ws_reader_release(&r);
	ck_assert_ptr_null(r.buf);
	ck_assert_uint_eq(r.cap, 0);
	/* A message in progress is not released. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, "xy", 2);
	ck_assert_int_eq(ws_reader_feed(&r, s, n, &used, &ev), WS_EV_NEED_MORE);
	ws_reader_release(&r);
	ck_assert_ptr_nonnull(r.buf);
	ws_reader_free(&r);
	ck_assert_ptr_null(r.buf);
}
END_TEST

START_TEST(test_reader_empty_messages)
{
	uint8_t s[128];
	size_t n = 0;
	struct ws_reader r;
	struct recs rs = {0};

	n += mkframe(s + n, sizeof(s) - n, WS_OP_TEXT, WS_FRAME_FIN, "", 0);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_TEXT, 0, "", 0);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CONT, WS_FRAME_FIN, "", 0);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_BINARY, WS_FRAME_FIN, "", 0);
	ws_reader_init(&r, NULL, NULL);
	feed_stream(&r, s, n, 1, &rs);
	ck_assert_uint_eq(rs.n, 3);
	ck_assert_int_eq(rs.v[0].type, WS_EV_TEXT);
	ck_assert_int_eq(rs.v[1].type, WS_EV_TEXT);
	ck_assert_int_eq(rs.v[2].type, WS_EV_BINARY);
	for (size_t i = 0; i < 3; i++)
		ck_assert_uint_eq(rs.v[i].len, 0);
	ws_reader_free(&r);
	recs_free(&rs);
}
END_TEST

static void
expect_error(const struct ws_reader_limits *lim, const uint8_t *s, size_t n,
	     unsigned code)
{
	struct rec e;

	ck_assert_int_eq(feed_one(lim, s, n, &e), WS_EV_ERROR);
	ck_assert_uint_eq(e.code, code);
	free(e.data);
}

START_TEST(test_reader_sequence_errors)
{
	uint8_t s[256], big[125];
	size_t n;

	/* Continuation with no message in progress. */
	n = mkframe(s, sizeof(s), WS_OP_CONT, WS_FRAME_FIN, "x", 1);
	expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	/* A text frame while a message is in progress. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, "a", 1);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_TEXT, WS_FRAME_FIN, "b", 1);
	expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	/* A binary frame while a text message is in progress. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, "a", 1);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_BINARY, 0, "b", 1);
	expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	/* RSV1 without permessage-deflate. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, "a",
		    1);
	expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	/* Unmasked client frame. */
	n = ws_frame_encode(s, sizeof(s), WS_OP_TEXT, WS_FRAME_FIN,
			    (const uint8_t *)"a", 1, NULL);
	expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	/* Reserved opcode; ping with 126 bytes. */
	s[0] = 0x83;
	s[1] = 0x80;
	expect_error(NULL, s, 6, WS_CLOSE_PROTOCOL);
	memset(big, 'p', sizeof(big));
	n = mkframe(s, sizeof(s), WS_OP_PING, WS_FRAME_FIN, big, 125);
	s[1] = 0x80 | 126;
	expect_error(NULL, s, 8, WS_CLOSE_PROTOCOL);
}
END_TEST

START_TEST(test_reader_binary_rejected)
{
	struct ws_reader_limits lim = {0, 1};
	uint8_t s[64];
	size_t n;
	struct rec e;

	/* Refused at the header: the payload is not needed. */
	n = mkframe(s, sizeof(s), WS_OP_BINARY, WS_FRAME_FIN, "abcdef", 6);
	expect_error(&lim, s, 6, WS_CLOSE_UNSUPPORTED);
	expect_error(&lim, s, n, WS_CLOSE_UNSUPPORTED);
	/* Text is still fine, and binary without the option. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, WS_FRAME_FIN, "abc", 3);
	ck_assert_int_eq(feed_one(&lim, s, n, &e), WS_EV_TEXT);
	free(e.data);
	n = mkframe(s, sizeof(s), WS_OP_BINARY, WS_FRAME_FIN, "abc", 3);
	ck_assert_int_eq(feed_one(NULL, s, n, &e), WS_EV_BINARY);
	free(e.data);
}
END_TEST

START_TEST(test_reader_close)
{
	uint8_t s[256], p[130];
	size_t n, used;
	struct rec e;
	struct ws_reader r;
	struct ws_event ev;

	/* Empty: no status, 1005. */
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN, "", 0);
	ck_assert_int_eq(feed_one(NULL, s, n, &e), WS_EV_CLOSE);
	ck_assert_uint_eq(e.code, WS_CLOSE_NO_STATUS);
	ck_assert_uint_eq(e.len, 0);
	free(e.data);
	/* One byte: protocol error (0x0f: any second byte would make a
	 * valid 3840..4095, so only the length rule can catch it). */
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN, "\x0f", 1);
	expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	/* Code and reason. */
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN,
		    "\x0f\xa0\xce\xba"
		    "bye",
		    7);
	ck_assert_int_eq(feed_one(NULL, s, n, &e), WS_EV_CLOSE);
	ck_assert_uint_eq(e.code, 4000);
	ck_assert_uint_eq(e.len, 5);
	ck_assert_mem_eq(e.data,
			 "\xce\xba"
			 "bye",
			 5);
	free(e.data);
	/* Code only, the largest reason. */
	memcpy(p, "\x03\xe8", 2);
	memset(p + 2, 'r', 123);
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN, p, 125);
	ck_assert_int_eq(feed_one(NULL, s, n, &e), WS_EV_CLOSE);
	ck_assert_uint_eq(e.len, 123);
	free(e.data);
	/* Invalid codes. */
	static const unsigned bad[] = {0,    999,  1004, 1005, 1006, 1015,
				       1016, 2000, 2999, 5000, 65535};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p[0] = (uint8_t)(bad[i] >> 8);
		p[1] = (uint8_t)bad[i];
		n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN, p, 2);
		expect_error(NULL, s, n, WS_CLOSE_PROTOCOL);
	}
	/* Invalid UTF-8 reason (surrogate), truncated reason. */
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN,
		    "\x03\xe8\xed\xa0\x80", 5);
	expect_error(NULL, s, n, WS_CLOSE_INVALID_DATA);
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN,
		    "\x03\xe8"
		    "ab\xce",
		    5);
	expect_error(NULL, s, n, WS_CLOSE_INVALID_DATA);
	/* After a close, everything is consumed and ignored. */
	ws_reader_init(&r, NULL, NULL);
	n = mkframe(s, sizeof(s), WS_OP_CLOSE, WS_FRAME_FIN, "\x03\xe8", 2);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_TEXT, WS_FRAME_FIN, "x", 1);
	ck_assert_int_eq(ws_reader_feed(&r, s, n, &used, &ev), WS_EV_CLOSE);
	ck_assert_uint_eq(ev.code, 1000);
	ck_assert_uint_lt(used, n);
	ck_assert_int_eq(ws_reader_feed(&r, s + used, n - used, &used, &ev),
			 WS_EV_NEED_MORE);
	ws_reader_free(&r);
	/* A close between fragments drops the half message. */
	ws_reader_init(&r, NULL, NULL);
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, "half", 4);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CLOSE, WS_FRAME_FIN, "", 0);
	ck_assert_int_eq(ws_reader_feed(&r, s, n, &used, &ev), WS_EV_CLOSE);
	ck_assert_ptr_null(r.buf);
	ws_reader_free(&r);
}
END_TEST

START_TEST(test_reader_too_big)
{
	struct ws_reader_limits lim = {1000, 0};
	uint8_t *s = malloc(4096), *p = malloc(2000);
	size_t n, used;
	struct ws_reader r;
	struct ws_event ev;
	struct rec e;

	memset(p, 'x', 2000);
	/* Exactly the limit: fine. */
	n = mkframe(s, 4096, WS_OP_TEXT, WS_FRAME_FIN, p, 1000);
	ck_assert_int_eq(feed_one(&lim, s, n, &e), WS_EV_TEXT);
	ck_assert_uint_eq(e.len, 1000);
	free(e.data);
	/* One more: 1009 on the header alone, nothing buffered. */
	n = mkframe(s, 4096, WS_OP_TEXT, WS_FRAME_FIN, p, 1001);
	ws_reader_init(&r, &lim, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, s, 8, &used, &ev), WS_EV_ERROR);
	ck_assert_uint_eq(ev.code, WS_CLOSE_TOO_BIG);
	ck_assert_ptr_null(r.buf);
	/* Sticky: same error, nothing consumed. */
	ck_assert_int_eq(ws_reader_feed(&r, s + 8, n - 8, &used, &ev),
			 WS_EV_ERROR);
	ck_assert_uint_eq(ev.code, WS_CLOSE_TOO_BIG);
	ck_assert_uint_eq(used, 0);
	ws_reader_free(&r);
	/* Fragments: 600 + 401 fails at the second header. */
	n = mkframe(s, 4096, WS_OP_BINARY, 0, p, 600);
	n += mkframe(s + n, 4096 - n, WS_OP_CONT, WS_FRAME_FIN, p, 401);
	ws_reader_init(&r, &lim, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, s, 608 + 8, &used, &ev),
			 WS_EV_ERROR);
	ck_assert_uint_eq(ev.code, WS_CLOSE_TOO_BIG);
	ws_reader_free(&r);
	/* A huge announced length with no payload at all. */
	n = ws_frame_header_encode(s, WS_OP_TEXT, WS_FRAME_FIN, 1ull << 40,
				   test_mask);
	expect_error(&lim, s, n, WS_CLOSE_TOO_BIG);
	free(s);
	free(p);
}
END_TEST

START_TEST(test_reader_utf8_fail_fast)
{
	uint8_t s[256], p[200];
	size_t n, used;
	struct ws_reader r;
	struct ws_event ev;

	/* Non-final fragment of 200 bytes, invalid at byte 3. */
	memset(p, 'a', sizeof(p));
	p[3] = 0xff;
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, p, sizeof(p));
	ws_reader_init(&r, NULL, NULL);
	/* Only the header and four payload bytes have arrived. */
	ck_assert_int_eq(ws_reader_feed(&r, s, 4 + 4 + 4, &used, &ev),
			 WS_EV_ERROR);
	ck_assert_uint_eq(ev.code, WS_CLOSE_INVALID_DATA);
	ck_assert_ptr_nonnull(ev.err);
	ws_reader_free(&r);
	(void)n;
	/* Character split across fragments: valid. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, "a\xf0\x9f", 3);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CONT, 0, "\x98", 1);
	n +=
	    mkframe(s + n, sizeof(s) - n, WS_OP_CONT, WS_FRAME_FIN, "\x80z", 2);
	ws_reader_init(&r, NULL, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, s, n, &used, &ev), WS_EV_TEXT);
	ck_assert_mem_eq(ev.data, "a\xf0\x9f\x98\x80z", 6);
	ws_reader_free(&r);
	/* Truncated at message end: 1007 at the final frame. */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, 0, "a\xf0\x9f", 3);
	n += mkframe(s + n, sizeof(s) - n, WS_OP_CONT, WS_FRAME_FIN, "", 0);
	expect_error(NULL, s, n, WS_CLOSE_INVALID_DATA);
	/* Whole single frame, invalid (in-place path). */
	n = mkframe(s, sizeof(s), WS_OP_TEXT, WS_FRAME_FIN, "\xc0\xaf", 2);
	expect_error(NULL, s, n, WS_CLOSE_INVALID_DATA);
	/* Binary is not validated. */
	n = mkframe(s, sizeof(s), WS_OP_BINARY, WS_FRAME_FIN, "\xc0\xaf", 2);
	ws_reader_init(&r, NULL, NULL);
	ck_assert_int_eq(ws_reader_feed(&r, s, n, &used, &ev), WS_EV_BINARY);
	ws_reader_free(&r);
}
END_TEST

/* ---- random round trip -------------------------------------------------- */

struct gen {
	uint8_t *s; /* encoded stream */
	size_t n, cap;
	struct recs exp;
};

static void
gen_put(struct gen *g, unsigned op, unsigned flags, const uint8_t *p,
	size_t len)
{
	uint8_t m[4];
	size_t need = len + WS_HEADER_MAX, h;

	if (g->cap - g->n < need) {
		g->cap = (g->cap + need) * 2;
		g->s = realloc(g->s, g->cap);
		ck_assert_ptr_nonnull(g->s);
	}
	for (int i = 0; i < 4; i++)
		m[i] = (uint8_t)rnd();
	if (rnd_below(8) == 0 && len < 126) {
		/* Non-minimal 64-bit length, which receivers accept. */
		uint8_t *o = g->s + g->n;

		o[0] = (uint8_t)(flags | op);
		o[1] = 0x80 | 127;
		memset(o + 2, 0, 7);
		o[9] = (uint8_t)len;
		memcpy(o + 10, m, 4);
		memcpy(o + 14, p, len);
		ws_unmask(o + 14, len, m, 0);
		g->n += 14 + len;
		return;
	}
	h = ws_frame_encode(g->s + g->n, g->cap - g->n, op, flags, p, len, m);
	ck_assert_uint_gt(h, 0);
	g->n += h;
}

static size_t
gen_utf8(uint8_t *out, size_t len)
{
	size_t n = 0;

	while (n + 4 <= len) {
		uint32_t c;

		switch (rnd_below(4)) {
		case 0:
			c = (uint32_t)rnd_below(0x80);
			break;
		case 1:
			c = 0x80 + (uint32_t)rnd_below(0x800 - 0x80);
			break;
		case 2:
			c = 0x800 + (uint32_t)rnd_below(0x10000 - 0x800);
			if (c >= 0xd800 && c <= 0xdfff)
				c = 'x';
			break;
		default:
			c = 0x10000 + (uint32_t)rnd_below(0x110000 - 0x10000);
			break;
		}
		if (c < 0x80) {
			out[n++] = (uint8_t)c;
		} else if (c < 0x800) {
			out[n++] = (uint8_t)(0xc0 | c >> 6);
			out[n++] = (uint8_t)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[n++] = (uint8_t)(0xe0 | c >> 12);
			out[n++] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
			out[n++] = (uint8_t)(0x80 | (c & 0x3f));
		} else {
			out[n++] = (uint8_t)(0xf0 | c >> 18);
			out[n++] = (uint8_t)(0x80 | (c >> 12 & 0x3f));
			out[n++] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
			out[n++] = (uint8_t)(0x80 | (c & 0x3f));
		}
	}
	while (n < len)
		out[n++] = 'a';
	return n;
}

static void
gen_control(struct gen *g)
{
	uint8_t p[125];
	size_t len = rnd_below(126);
	int ping = rnd_below(2) == 0;

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)rnd();
	gen_put(g, ping ? WS_OP_PING : WS_OP_PONG, WS_FRAME_FIN, p, len);
	recs_add(&g->exp, ping ? WS_EV_PING : WS_EV_PONG, 0, p, len);
}

static void
gen_stream(struct gen *g, int nmsg)
{
	static uint8_t msg[80000];

	for (int k = 0; k < nmsg; k++) {
		size_t len, off = 0;
		int text = rnd_below(3) != 0;
		unsigned op;

		if (rnd_below(5) == 0) {
			gen_control(g);
			continue;
		}
		switch (rnd_below(10)) {
		case 0:
			len = 66000 + rnd_below(sizeof(msg) - 66000);
			break;
		case 1:
		case 2:
			len = rnd_below(2000);
			break;
		default:
			len = rnd_below(130);
			break;
		}
		if (text)
			gen_utf8(msg, len);
		else
			for (size_t i = 0; i < len; i++)
				msg[i] = (uint8_t)rnd();
		op = text ? WS_OP_TEXT : WS_OP_BINARY;
		/* Split at random points, controls between fragments. */
		do {
			size_t fl = rnd_below(4) == 0
					? len - off
					: rnd_below(len - off + 1);
			int last = off + fl == len && rnd_below(3) != 0;

			gen_put(g, op, last ? WS_FRAME_FIN : 0, msg + off, fl);
			off += fl;
			op = WS_OP_CONT;
			if (last)
				break;
			if (rnd_below(4) == 0)
				gen_control(g);
		} while (1);
		recs_add(&g->exp, text ? WS_EV_TEXT : WS_EV_BINARY, 0, msg,
			 len);
	}
	gen_put(g, WS_OP_CLOSE, WS_FRAME_FIN, (const uint8_t *)"\x03\xe8ok", 4);
	recs_add(&g->exp, WS_EV_CLOSE, 1000, (const uint8_t *)"ok", 2);
}

static void
check_recs(const struct recs *got, const struct recs *exp, const char *how)
{
	ck_assert_msg(
	    got->n == exp->n,
	    "%s: %zu events, expected %zu (last: type %d code %u %s)", how,
	    got->n, exp->n, got->n ? got->v[got->n - 1].type : -1,
	    got->n ? got->v[got->n - 1].code : 0,
	    got->n && got->v[got->n - 1].err ? got->v[got->n - 1].err : "");
	for (size_t i = 0; i < exp->n; i++) {
		ck_assert_msg(got->v[i].type == exp->v[i].type,
			      "%s: event %zu type %d, expected %d", how, i,
			      got->v[i].type, exp->v[i].type);
		ck_assert_msg(got->v[i].len == exp->v[i].len,
			      "%s: event %zu len %zu, expected %zu", how, i,
			      got->v[i].len, exp->v[i].len);
		ck_assert_msg(exp->v[i].len == 0 ||
				  memcmp(got->v[i].data, exp->v[i].data,
					 exp->v[i].len) == 0,
			      "%s: event %zu data", how, i);
		if (exp->v[i].type == WS_EV_CLOSE)
			ck_assert_uint_eq(got->v[i].code, exp->v[i].code);
	}
}

START_TEST(test_reader_random_roundtrip)
{
	static const size_t chunks[] = {0, 1, SIZE_MAX, 7, 4096};
	static const char *names[] = {"whole", "byte at a time", "random",
				      "7-byte chunks", "4 KiB chunks"};

	for (int round = 0; round < 6; round++) {
		struct gen g = {0};

		gen_stream(&g, 40);
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]);
		     c++) {
			uint8_t *copy = malloc(g.n);
			struct ws_reader r;
			struct recs got = {0};

			memcpy(copy, g.s, g.n);
			ws_reader_init(&r, NULL, NULL);
			feed_stream(&r, copy, g.n, chunks[c], &got);
			check_recs(&got, &g.exp, names[c]);
			/* Closed: no buffer left behind. */
			ck_assert_ptr_null(r.buf);
			ws_reader_free(&r);
			recs_free(&got);
			free(copy);
		}
		free(g.s);
		recs_free(&g.exp);
	}
}
END_TEST

START_TEST(test_reader_garbage_never_crashes)
{
	/* Random bytes: any outcome but a crash or a leak (ASan). */
	for (int iter = 0; iter < 2000; iter++) {
		size_t len = rnd_below(300);
		uint8_t *b = malloc(len + 1);
		struct ws_reader r;
		struct recs got = {0};

		for (size_t i = 0; i < len; i++)
			b[i] = (uint8_t)rnd();
		if (len > 1 && rnd_below(2))
			b[1] |= 0x80; /* often masked, to go deeper */
		ws_reader_init(&r, NULL, NULL);
		feed_stream(&r, b, len, rnd_below(2) ? 1 : 0, &got);
		ws_reader_free(&r);
		recs_free(&got);
		free(b);
	}
}
END_TEST

static Suite *
ws_suite(void)
{
	Suite *s = suite_create("ws");
	TCase *tc;

	tc = tcase_create("handshake");
	tcase_add_test(tc, test_accept_key);
	tcase_add_test(tc, test_key_valid);
	suite_add_tcase(s, tc);

	tc = tcase_create("frame");
	tcase_add_test(tc, test_parse_rfc_examples);
	tcase_add_test(tc, test_parse_lengths);
	tcase_add_test(tc, test_parse_nonminimal);
	tcase_add_test(tc, test_parse_errors);
	tcase_add_test(tc, test_parse_allowed);
	tcase_add_test(tc, test_encode_frame);
	tcase_add_test(tc, test_unmask_vs_reference);
	tcase_add_test(tc, test_unmask_in_pieces);
	suite_add_tcase(s, tc);

	tc = tcase_create("utf8");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_utf8_vectors);
	tcase_add_test(tc, test_utf8_exhaustive);
	tcase_add_test(tc, test_utf8_fail_fast);
	tcase_add_test(tc, test_utf8_positions);
	tcase_add_test(tc, test_utf8_boundary);
	suite_add_tcase(s, tc);

	tc = tcase_create("close");
	tcase_add_test(tc, test_close_codes);
	tcase_add_test(tc, test_close_payload);
	suite_add_tcase(s, tc);

	tc = tcase_create("reader");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_reader_hello_in_place);
	tcase_add_test(tc, test_reader_fragmented_with_ping);
	tcase_add_test(tc, test_reader_release);
	tcase_add_test(tc, test_reader_empty_messages);
	tcase_add_test(tc, test_reader_sequence_errors);
	tcase_add_test(tc, test_reader_binary_rejected);
	tcase_add_test(tc, test_reader_close);
	tcase_add_test(tc, test_reader_too_big);
	tcase_add_test(tc, test_reader_utf8_fail_fast);
	tcase_add_test(tc, test_reader_random_roundtrip);
	tcase_add_test(tc, test_reader_garbage_never_crashes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ws_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
