/*
 * Unit tests for permessage-deflate: negotiation, compression with each
 * negotiated parameter, inflation through the message reader (limits, UTF-8,
 * corrupt data, zip bombs) and the per-connection memory rules.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include "orchd/pmd.h"
#include "orchd/ws.h"

static const uint8_t tail4[4] = {0x00, 0x00, 0xff, 0xff};

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

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

/* JSON-ish text: compressible, like the real traffic. */
static size_t
gen_text(uint8_t *out, size_t len)
{
	static const char *words[] = {
	    "{\"type\":\"event\",", "\"eventId\":", "\"9b2f\",",
	    "\"payload\":{",        "\"seq\":",     "12345,",
	    "\"data\":\"",          "caf\xc3\xa9 ", "\xe2\x82\xac ",
	    "\xf0\x9f\x98\x80",     "heartbeat",    "}}",
	};
	size_t n = 0;

	while (n < len) {
		const char *w =
		    words[rnd_below(sizeof(words) / sizeof(*words))];
		size_t wl = strlen(w);

		if (wl > len - n)
			break;
		memcpy(out + n, w, wl);
		n += wl;
	}
	while (n < len)
		out[n++] = ' ';
	return n;
}

static void
cfg_default(struct pmd_config *c)
{
	pmd_config_default(c);
}

/* ---- negotiation -------------------------------------------------------- */

static int
neg(const struct pmd_config *cfg, const char *offer, struct pmd_params *p,
    char *resp)
{
	return pmd_negotiate(cfg, offer, strlen(offer), p, resp,
			     PMD_RESPONSE_MAX);
}

START_TEST(test_neg_browsers)
{
	struct pmd_config cfg;
	struct pmd_params p;
	char resp[PMD_RESPONSE_MAX];

	cfg_default(&cfg);
	/* Chromium */
	ck_assert_int_eq(
	    neg(&cfg, "permessage-deflate; client_max_window_bits", &p, resp),
	    1);
	ck_assert_str_eq(resp, "permessage-deflate; server_no_context_takeover"
			       "; client_no_context_takeover");
	ck_assert_int_eq(p.server_no_context_takeover, 1);
	ck_assert_int_eq(p.client_no_context_takeover, 1);
	ck_assert_int_eq(p.server_max_window_bits, 15);
	ck_assert_int_eq(p.client_max_window_bits, 15);
	/* Firefox */
	ck_assert_int_eq(neg(&cfg, "permessage-deflate", &p, resp), 1);
	ck_assert_str_eq(resp, "permessage-deflate; server_no_context_takeover"
			       "; client_no_context_takeover");
	/* Safari/old WebKit adds x-webkit-deflate-frame first. */
	ck_assert_int_eq(neg(&cfg,
			     "x-webkit-deflate-frame, permessage-deflate; "
			     "client_max_window_bits",
			     &p, resp),
			 1);
	/* Context takeover allowed both ways: the bare extension. */
	cfg.server_no_context_takeover = 0;
	cfg.client_no_context_takeover = 0;
	ck_assert_int_eq(neg(&cfg, "permessage-deflate", &p, resp), 1);
	ck_assert_str_eq(resp, "permessage-deflate");
	ck_assert_int_eq(p.server_no_context_takeover, 0);
	ck_assert_int_eq(p.client_no_context_takeover, 0);
	/* Disabled: never. */
	cfg.enabled = 0;
	ck_assert_int_eq(neg(&cfg, "permessage-deflate", &p, resp), 0);
}
END_TEST

START_TEST(test_neg_window_bits)
{
	struct pmd_config cfg;
	struct pmd_params p;
	char resp[PMD_RESPONSE_MAX];

	cfg_default(&cfg);
	cfg.server_no_context_takeover = 0;
	cfg.client_no_context_takeover = 0;
	/* Client limits our window. */
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; server_max_window_bits=10",
			     &p, resp),
			 1);
	ck_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10");
	ck_assert_int_eq(p.server_max_window_bits, 10);
	/* We use less than the client allows. */
	cfg.server_max_window_bits = 9;
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; server_max_window_bits=12",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.server_max_window_bits, 9);
	ck_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=9");
	/* ...and announce it unasked. */
	ck_assert_int_eq(neg(&cfg, "permessage-deflate", &p, resp), 1);
	ck_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=9");
	/* 8 is negotiable. */
	cfg.server_max_window_bits = 15;
	ck_assert_int_eq(
	    neg(&cfg, "permessage-deflate; server_max_window_bits=8", &p, resp),
	    1);
	ck_assert_int_eq(p.server_max_window_bits, 8);
	/* Client window: a value given is echoed (we cannot exceed it). */
	ck_assert_int_eq(
	    neg(&cfg, "permessage-deflate; client_max_window_bits=9", &p, resp),
	    1);
	ck_assert_str_eq(resp, "permessage-deflate; client_max_window_bits=9");
	ck_assert_int_eq(p.client_max_window_bits, 9);
	/* We ask for less when the client announced support. */
	cfg.client_max_window_bits = 10;
	ck_assert_int_eq(
	    neg(&cfg, "permessage-deflate; client_max_window_bits", &p, resp),
	    1);
	ck_assert_str_eq(resp, "permessage-deflate; client_max_window_bits=10");
	ck_assert_int_eq(p.client_max_window_bits, 10);
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; client_max_window_bits=12",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.client_max_window_bits, 10);
	ck_assert_int_eq(
	    neg(&cfg, "permessage-deflate; client_max_window_bits=8", &p, resp),
	    1);
	ck_assert_int_eq(p.client_max_window_bits, 8);
	/* Not announced: we must not send it (7.1.2.2), window stays 15. */
	ck_assert_int_eq(neg(&cfg, "permessage-deflate", &p, resp), 1);
	ck_assert_str_eq(resp, "permessage-deflate");
	ck_assert_int_eq(p.client_max_window_bits, 15);
	/* Everything at once, client's no-context requests echoed. */
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; client_no_context_takeover; "
			     "server_no_context_takeover; "
			     "server_max_window_bits=11; "
			     "client_max_window_bits",
			     &p, resp),
			 1);
	ck_assert_str_eq(resp, "permessage-deflate; server_no_context_takeover"
			       "; client_no_context_takeover"
			       "; server_max_window_bits=11"
			       "; client_max_window_bits=10");
	ck_assert_int_eq(p.server_no_context_takeover, 1);
	ck_assert_int_eq(p.client_no_context_takeover, 1);
}
END_TEST

START_TEST(test_neg_invalid_offers)
{
	static const char *bad[] = {
	    "permessage-deflate; foo",
	    "permessage-deflate; foo=1",
	    "permessage-deflate; server_no_context_takeover; "
	    "server_no_context_takeover",
	    "permessage-deflate; client_no_context_takeover; "
	    "client_no_context_takeover",
	    "permessage-deflate; server_max_window_bits=10; "
	    "server_max_window_bits=10",
	    "permessage-deflate; client_max_window_bits; "
	    "client_max_window_bits=10",
	    "permessage-deflate; server_no_context_takeover=1",
	    "permessage-deflate; client_no_context_takeover=\"x\"",
	    "permessage-deflate; server_max_window_bits",
	    "permessage-deflate; server_max_window_bits=7",
	    "permessage-deflate; server_max_window_bits=16",
	    "permessage-deflate; server_max_window_bits=08",
	    "permessage-deflate; server_max_window_bits=010",
	    "permessage-deflate; server_max_window_bits=1a",
	    "permessage-deflate; server_max_window_bits=-9",
	    "permessage-deflate; server_max_window_bits=100000000000000",
	    "permessage-deflate; client_max_window_bits=0",
	    "permessage-deflate; client_max_window_bits=7",
	    "permessage-deflate; client_max_window_bits=\"\"",
	    "permessage-deflate; client_max_window_bits=\"1 0\"",
	    "permessage-deflate; client_max_window_bits=\"10",
	    "permessage-deflate; client_max_window_bits=",
	    "permessage-deflate;",
	    "permessage-deflate; ;",
	    "permessage-deflate x",
	    "permessage-deflate; a b",
	    "permessage-deflate/1",
	    "x-webkit-deflate-frame",
	    "deflate-frame",
	    "permessage-deflater",
	    "",
	    " , ,",
	};
	struct pmd_config cfg;
	struct pmd_params p;
	char resp[PMD_RESPONSE_MAX];

	cfg_default(&cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(neg(&cfg, bad[i], &p, resp) == 0, "accepted: %s",
			      bad[i]);
}
END_TEST

START_TEST(test_neg_multiple_and_syntax)
{
	struct pmd_config cfg;
	struct pmd_params p;
	char resp[PMD_RESPONSE_MAX], small[20];

	cfg_default(&cfg);
	cfg.server_no_context_takeover = 0;
	cfg.client_no_context_takeover = 0;
	/* The first acceptable offer wins; bad ones are skipped. */
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; foo, permessage-deflate; "
			     "server_max_window_bits=12, permessage-deflate",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.server_max_window_bits, 12);
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; server_max_window_bits=20, "
			     "permessage-deflate; client_max_window_bits=11",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.server_max_window_bits, 15);
	ck_assert_int_eq(p.client_max_window_bits, 11);
	/* A syntax error only costs its own offer. */
	ck_assert_int_eq(neg(&cfg,
			     "permessage-deflate; =x, permessage-deflate; "
			     "server_max_window_bits=13",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.server_max_window_bits, 13);
	/* A comma inside quotes does not split an offer. */
	ck_assert_int_eq(neg(&cfg,
			     "foo; bar=\"a,b\", permessage-deflate; "
			     "server_max_window_bits=\"14\"",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.server_max_window_bits, 14);
	ck_assert_int_eq(
	    neg(&cfg,
		"permessage-deflate; server_max_window_bits=\"1,2\""
		", permessage-deflate; server_max_window_bits=10",
		&p, resp),
	    1);
	ck_assert_int_eq(p.server_max_window_bits, 10);
	/* Quoted values, escapes, whitespace, case, empty elements. */
	ck_assert_int_eq(neg(&cfg,
			     " , ,PerMessage-Deflate ;\tSERVER_MAX_WINDOW_BITS"
			     " = \"1\\1\" ; Client_Max_Window_Bits ,",
			     &p, resp),
			 1);
	ck_assert_int_eq(p.server_max_window_bits, 11);
	ck_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=11");
	/* Resync after a syntax error steps over quoted commas: splitting
	 * inside these quotes would reveal an acceptable offer. */
	ck_assert_int_eq(neg(&cfg,
			     "foo bar=\", permessage-deflate; "
			     "server_max_window_bits=9, x\"",
			     &p, resp),
			 0);
	/* Unterminated quote in an earlier offer swallows the rest. */
	ck_assert_int_eq(neg(&cfg, "foo; a=\"x, permessage-deflate", &p, resp),
			 0);
	/* Not NUL-terminated: only len bytes are read. */
	ck_assert_int_eq(pmd_negotiate(&cfg, "permessage-deflate; foo", 18, &p,
				       resp, sizeof(resp)),
			 1);
	/* Response buffer too small. */
	{
		const char *o = "permessage-deflate; server_max_window_bits=9";

		ck_assert_int_eq(
		    pmd_negotiate(&cfg, o, strlen(o), &p, small, sizeof(small)),
		    -1);
		ck_assert_int_eq(
		    pmd_negotiate(&cfg, o, strlen(o), &p, resp, sizeof(resp)),
		    1);
	}
}
END_TEST

/* ---- compression (server -> client) ------------------------------------- */

/* The client's inflater: append the trailer, inflate, return the length. */
static int
client_inflate(z_stream *zs, const uint8_t *in, size_t len, uint8_t *out,
	       size_t cap, size_t *out_len)
{
	int rc;

	zs->next_out = out;
	zs->avail_out = (uInt)cap;
	zs->next_in = in;
	zs->avail_in = (uInt)len;
	rc = inflate(zs, Z_SYNC_FLUSH);
	if (rc != Z_OK && rc != Z_BUF_ERROR)
		return -1;
	zs->next_in = tail4;
	zs->avail_in = 4;
	rc = inflate(zs, Z_SYNC_FLUSH);
	if ((rc != Z_OK && rc != Z_BUF_ERROR) || zs->avail_in != 0)
		return -1;
	*out_len = cap - zs->avail_out;
	return 0;
}

START_TEST(test_deflate_roundtrip_params)
{
	static uint8_t msg[5][20000], out[30000];
	size_t lens[5];

	for (int i = 0; i < 5; i++) {
		lens[i] =
		    i == 2 ? 0 : gen_text(msg[i], 1000 + 4000 * (size_t)i);
		if (i == 4)
			for (size_t k = 0; k < lens[i]; k += 7)
				msg[i][k] = (uint8_t)rnd();
	}
	for (int snct = 0; snct <= 1; snct++) {
		for (int bits = 8; bits <= 15; bits++) {
			struct pmd_config cfg;
			struct pmd_params pp = {snct, 0, bits, 15};
			struct pmd_ctx ctx;
			z_stream keep = {0};

			cfg_default(&cfg);
			pmd_ctx_init(&ctx, &pp, &cfg);
			ck_assert_int_eq(inflateInit2(&keep, -bits), Z_OK);
			for (int i = 0; i < 5; i++) {
				size_t n, got;
				uint8_t *c =
				    pmd_deflate(&ctx, msg[i], lens[i], 10, &n);

				ck_assert_ptr_nonnull(c);
				/* Trailer stripped. */
				ck_assert(n < 4 || memcmp(c + 10 + n - 4, tail4,
							  4) != 0);
				ck_assert_int_eq(
				    client_inflate(&keep, c + 10, n, out,
						   sizeof(out), &got),
				    0);
				ck_assert_uint_eq(got, lens[i]);
				ck_assert(got == 0 ||
					  memcmp(out, msg[i], got) == 0);
				if (snct) {
					/* Decodable with no history. */
					z_stream fresh = {0};

					ck_assert_int_eq(
					    inflateInit2(&fresh, -bits), Z_OK);
					ck_assert_int_eq(
					    client_inflate(&fresh, c + 10, n,
							   out, sizeof(out),
							   &got),
					    0);
					ck_assert_uint_eq(got, lens[i]);
					inflateEnd(&fresh);
					/* No per-connection deflater. */
					ck_assert_ptr_null(ctx.def);
				} else {
					ck_assert_ptr_nonnull(ctx.def);
				}
				free(c);
			}
			inflateEnd(&keep);
			pmd_ctx_free(&ctx);
			ck_assert_ptr_null(ctx.def);
		}
	}
	pmd_cleanup();
}
END_TEST

START_TEST(test_deflate_context_takeover)
{
	static uint8_t msg[4000];
	struct pmd_config cfg;
	struct pmd_params keep = {0, 0, 15, 15}, reset = {1, 0, 15, 15};
	struct pmd_ctx a, b;
	size_t n1, n2, m1, m2;
	uint8_t *x1, *x2, *y1, *y2;

	gen_text(msg, sizeof(msg));
	cfg_default(&cfg);
	pmd_ctx_init(&a, &keep, &cfg);
	pmd_ctx_init(&b, &reset, &cfg);
	x1 = pmd_deflate(&a, msg, sizeof(msg), 0, &n1);
	x2 = pmd_deflate(&a, msg, sizeof(msg), 0, &n2);
	y1 = pmd_deflate(&b, msg, sizeof(msg), 0, &m1);
	y2 = pmd_deflate(&b, msg, sizeof(msg), 0, &m2);
	ck_assert_ptr_nonnull(x1);
	ck_assert_ptr_nonnull(x2);
	ck_assert_ptr_nonnull(y1);
	ck_assert_ptr_nonnull(y2);
	/* With context the repeat is a few back-references. */
	ck_assert_uint_lt(n2 * 10, n1);
	/* Without, every message compresses the same. */
	ck_assert_uint_eq(m1, m2);
	ck_assert_mem_eq(y1, y2, m1);
	ck_assert_uint_eq(m1, n1);
	free(x1);
	free(x2);
	free(y1);
	free(y2);
	pmd_ctx_free(&a);
	pmd_ctx_free(&b);
	pmd_cleanup();
}
END_TEST

START_TEST(test_deflate_empty)
{
	struct pmd_config cfg;
	struct pmd_params keep = {0, 0, 15, 15};
	struct pmd_ctx ctx;
	z_stream zs = {0};
	uint8_t out[64];
	size_t n, got;
	uint8_t *c;

	cfg_default(&cfg);
	pmd_ctx_init(&ctx, &keep, &cfg);
	ck_assert_int_eq(inflateInit2(&zs, -15), Z_OK);
	/* msg, empty, msg, empty, empty, msg through one inflater. */
	for (int i = 0; i < 6; i++) {
		int empty = i == 1 || i == 3 || i == 4;

		c = pmd_deflate(&ctx, (const uint8_t *)"hello hello",
				empty ? 0 : 11, 2, &n);
		ck_assert_ptr_nonnull(c);
		if (empty) {
			/* RFC 7692 7.2.3.6 */
			ck_assert_uint_eq(n, 1);
			ck_assert_uint_eq(c[2], 0x00);
		}
		ck_assert_int_eq(
		    client_inflate(&zs, c + 2, n, out, sizeof(out), &got), 0);
		ck_assert_uint_eq(got, empty ? 0 : 11);
		free(c);
	}
	inflateEnd(&zs);
	pmd_ctx_free(&ctx);
}
END_TEST

START_TEST(test_deflate_shared)
{
	static uint8_t msg[8000], out[9000];
	struct pmd_config cfg;
	struct pmd_params pp = {1, 1, 12, 15};
	struct pmd_ctx ctx;
	z_stream zs = {0};
	size_t n, m, got;
	uint8_t *s1, *s2, *c;

	gen_text(msg, sizeof(msg));
	cfg_default(&cfg);
	cfg.server_max_window_bits = 12;
	s1 = pmd_deflate_shared(&cfg, msg, sizeof(msg), 14, &n);
	s2 = pmd_deflate_shared(&cfg, msg, sizeof(msg), 14, &m);
	ck_assert_ptr_nonnull(s1);
	ck_assert_ptr_nonnull(s2);
	/* Pure: same input, same bytes; same as a no-context connection. */
	ck_assert_uint_eq(n, m);
	ck_assert_mem_eq(s1 + 14, s2 + 14, n);
	pmd_ctx_init(&ctx, &pp, &cfg);
	c = pmd_deflate(&ctx, msg, sizeof(msg), 0, &m);
	ck_assert_uint_eq(n, m);
	ck_assert_mem_eq(s1 + 14, c, n);
	ck_assert_int_eq(inflateInit2(&zs, -12), Z_OK);
	ck_assert_int_eq(
	    client_inflate(&zs, s1 + 14, n, out, sizeof(out), &got), 0);
	ck_assert_uint_eq(got, sizeof(msg));
	ck_assert_mem_eq(out, msg, got);
	inflateEnd(&zs);
	free(s1);
	free(s2);
	free(c);
	pmd_ctx_free(&ctx);
	/* Who may receive it. */
	{
		struct pmd_params ok = {1, 0, 12, 15}, big = {1, 1, 15, 8},
				  ctxt = {0, 1, 15, 15}, small = {1, 1, 11, 15};

		ck_assert(pmd_can_share(&ok, &cfg));
		ck_assert(pmd_can_share(&big, &cfg));
		ck_assert(!pmd_can_share(&ctxt, &cfg));
		ck_assert(!pmd_can_share(&small, &cfg));
		/* 8 and 9 both deflate with 9. */
		cfg.server_max_window_bits = 9;
		small.server_max_window_bits = 8;
		ck_assert(pmd_can_share(&small, &cfg));
	}
	pmd_cleanup();
}
END_TEST

START_TEST(test_window_bits_8)
{
	/* Words repeating at distances around 256 bytes. */
	static uint8_t msg[200000], out[200000];
	struct pmd_config cfg;
	struct pmd_params pp = {0, 0, 8, 15};
	struct pmd_ctx ctx;
	z_stream zs = {0}, d8 = {0};
	size_t n, got;
	uint8_t *c;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)('a' + (i * 7 + (i / 250) % 3) % 26);
	/* The premise: zlib refuses a raw deflate window of 8 bits. */
	ck_assert_int_ne(
	    deflateInit2(&d8, 6, Z_DEFLATED, -8, 8, Z_DEFAULT_STRATEGY), Z_OK);
	cfg_default(&cfg);
	pmd_ctx_init(&ctx, &pp, &cfg);
	ck_assert_int_eq(inflateInit2(&zs, -8), Z_OK);
	for (int round = 0; round < 3; round++) {
		c = pmd_deflate(&ctx, msg, sizeof(msg), 0, &n);
		ck_assert_ptr_nonnull(c);
		ck_assert_uint_lt(n, sizeof(msg) / 4); /* it did compress */
		/* A peer with a 256-byte window decodes it. */
		ck_assert_int_eq(
		    client_inflate(&zs, c, n, out, sizeof(out), &got), 0);
		ck_assert_uint_eq(got, sizeof(msg));
		ck_assert_mem_eq(out, msg, got);
		free(c);
	}
	inflateEnd(&zs);
	pmd_ctx_free(&ctx);
}
END_TEST

/* ---- inflation through the reader (client -> server) --------------------- */

static const uint8_t tmask[4] = {0xa1, 0xb2, 0xc3, 0xd4};

/* Client-side compressor: sync flush (or BFINAL), trailer stripped. */
static size_t
client_deflate(z_stream *zs, const uint8_t *in, size_t len, uint8_t *out,
	       size_t cap, int finish)
{
	size_t n;
	int rc;

	if (len == 0 && !finish) {
		out[0] = 0x00;
		return 1;
	}
	zs->next_in = in;
	zs->avail_in = (uInt)len;
	zs->next_out = out;
	zs->avail_out = (uInt)cap;
	rc = deflate(zs, finish ? Z_FINISH : Z_SYNC_FLUSH);
	ck_assert(rc == Z_OK || rc == Z_STREAM_END);
	ck_assert_uint_eq(zs->avail_in, 0);
	ck_assert_uint_gt(zs->avail_out, 0);
	n = cap - zs->avail_out;
	if (!finish) {
		ck_assert_uint_ge(n, 4);
		ck_assert_mem_eq(out + n - 4, tail4, 4);
		n -= 4;
	}
	return n;
}

struct stream {
	uint8_t *b;
	size_t n, cap;
};

static void
put_frame(struct stream *s, unsigned op, unsigned flags, const uint8_t *p,
	  size_t len)
{
	size_t need = len + WS_HEADER_MAX;

	if (s->cap - s->n < need) {
		s->cap = (s->cap + need) * 2;
		s->b = realloc(s->b, s->cap);
		ck_assert_ptr_nonnull(s->b);
	}
	s->n += ws_frame_encode(s->b + s->n, s->cap - s->n, op, flags, p, len,
				tmask);
}

/* A message's payload split into 1..4 frames, RSV1 on the first. */
static void
put_message(struct stream *s, unsigned op, int compressed, const uint8_t *p,
	    size_t len, int ping_between)
{
	size_t off = 0;
	int first = 1;

	do {
		size_t fl = rnd_below(3) ? len - off : rnd_below(len - off + 1);
		unsigned flags = off + fl == len ? WS_FRAME_FIN : 0;

		if (first && compressed)
			flags |= WS_FRAME_RSV1;
		put_frame(s, first ? op : WS_OP_CONT, flags, p + off, fl);
		off += fl;
		first = 0;
		if (!(flags & WS_FRAME_FIN) && ping_between)
			put_frame(s, WS_OP_PING, WS_FRAME_FIN,
				  (const uint8_t *)"pi", 2);
		if (flags & WS_FRAME_FIN)
			break;
	} while (1);
}

struct result {
	int type;
	unsigned code;
	size_t n_events, n_pings;
	size_t consumed;
	size_t max_cap;
	uint8_t *last; /* copy of the last message */
	size_t last_len;
	int inf_after_msg; /* pmd->inf != NULL after the last message */
};

/*
 * Feed the stream in chunks (0 = whole, SIZE_MAX = random), checking each
 * message against expected[] in order (expected NULL: no check).  Returns
 * at the first error or at the end.
 */
static void
run_reader(struct ws_reader *r, struct pmd_ctx *pmd, struct stream *s,
	   size_t chunk, uint8_t **expected, size_t *exp_len, size_t nexp,
	   struct result *res)
{
	size_t off = 0, avail = 0, msgs = 0;

	memset(res, 0, sizeof(*res));
	while (avail < s->n) {
		avail = chunk == 0          ? s->n
			: chunk == SIZE_MAX ? avail + 1 + rnd_below(2000)
					    : avail + chunk;
		if (avail > s->n)
			avail = s->n;
		for (;;) {
			struct ws_event ev;
			size_t used;
			int t = ws_reader_feed(r, s->b + off, avail - off,
					       &used, &ev);

			off += used;
			res->consumed = off;
			if (r->cap > res->max_cap)
				res->max_cap = r->cap;
			if (t == WS_EV_NEED_MORE)
				break;
			res->n_events++;
			res->type = t;
			res->code = ev.code;
			if (t == WS_EV_ERROR)
				return;
			if (t == WS_EV_PING) {
				res->n_pings++;
				continue;
			}
			if (t != WS_EV_TEXT && t != WS_EV_BINARY)
				continue;
			if (expected == NULL) /* anything goes (garbage) */
				continue;
			if (msgs >= nexp)
				ck_abort_msg("more messages than expected");
			if (ev.len != exp_len[msgs] ||
			    (ev.len &&
			     memcmp(ev.data, expected[msgs], ev.len) != 0))
				ck_abort_msg("message %zu differs (len %zu, "
					     "expected %zu)",
					     msgs, ev.len, exp_len[msgs]);
			free(res->last);
			res->last = malloc(ev.len + 1);
			memcpy(res->last, ev.data, ev.len);
			res->last_len = ev.len;
			res->inf_after_msg = pmd && pmd->inf != NULL;
			msgs++;
		}
	}
	if (expected != NULL && msgs != nexp)
		ck_abort_msg("%zu messages, expected %zu", msgs, nexp);
}

START_TEST(test_reader_inflate_params)
{
	static const size_t chunks[] = {0, 1, SIZE_MAX};
	enum { NMSG = 12 };
	uint8_t *msg[NMSG];
	size_t len[NMSG];
	static uint8_t comp[70000];

	for (int i = 0; i < NMSG; i++) {
		len[i] = i == 3 ? 0 : rnd_below(i == 5 ? 60000 : 3000);
		msg[i] = malloc(len[i] + 1);
		gen_text(msg[i], len[i]);
	}
	for (int cnct = 0; cnct <= 1; cnct++) {
		for (int bits = 8; bits <= 15; bits++) {
			struct pmd_config cfg;
			struct pmd_params pp = {1, cnct, 15, bits};
			struct stream s = {0};
			z_stream cz = {0};

			cfg_default(&cfg);
			ck_assert_int_eq(deflateInit2(&cz, 6, Z_DEFLATED,
						      -(bits < 9 ? 9 : bits), 8,
						      Z_DEFAULT_STRATEGY),
					 Z_OK);
			for (int i = 0; i < NMSG; i++) {
				int compress = i % 4 != 1; /* some plain */
				unsigned op =
				    i % 3 == 2 ? WS_OP_BINARY : WS_OP_TEXT;

				if (!compress) {
					put_message(&s, op, 0, msg[i], len[i],
						    i & 1);
					continue;
				}
				size_t n = client_deflate(
				    &cz, msg[i], len[i], comp, sizeof(comp), 0);
				put_message(&s, op, 1, comp, n, i & 1);
				if (cnct)
					deflateReset(&cz);
			}
			deflateEnd(&cz);
			for (size_t c = 0; c < 3; c++) {
				struct ws_reader r;
				struct pmd_ctx pmd;
				struct result res;
				uint8_t *copy = malloc(s.n);
				struct stream sc = {copy, s.n, s.n};

				memcpy(copy, s.b, s.n);
				pmd_ctx_init(&pmd, &pp, &cfg);
				ws_reader_init(&r, NULL, &pmd);
				run_reader(&r, &pmd, &sc, chunks[c], msg, len,
					   NMSG, &res);
				ck_assert_msg(res.type != WS_EV_ERROR,
					      "cnct %d bits %d chunk %zu: "
					      "error %u",
					      cnct, bits, chunks[c], res.code);
				/* Without context takeover the inflater is
				 * gone between messages; with it, kept. */
				ck_assert_int_eq(res.inf_after_msg, !cnct);
				ws_reader_free(&r);
				pmd_ctx_free(&pmd);
				free(res.last);
				free(copy);
			}
			free(s.b);
		}
	}
	for (int i = 0; i < NMSG; i++)
		free(msg[i]);
}
END_TEST

/* Build one compressed message and feed it; return the result. */
static void
one_compressed(const struct pmd_params *pp, size_t limit, unsigned op,
	       const uint8_t *p, size_t len, struct result *res)
{
	static uint8_t comp[300000];
	struct pmd_config cfg;
	struct pmd_ctx pmd;
	struct ws_reader r;
	struct ws_reader_limits lim = {limit, 0};
	struct stream s = {0};
	z_stream cz = {0};
	size_t n;
	uint8_t *exp[1] = {(uint8_t *)p};

	cfg_default(&cfg);
	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	n = client_deflate(&cz, p, len, comp, sizeof(comp), 0);
	deflateEnd(&cz);
	put_message(&s, op, 1, comp, n, 0);
	pmd_ctx_init(&pmd, pp, &cfg);
	ws_reader_init(&r, &lim, &pmd);
	run_reader(&r, &pmd, &s, 0, exp, &len, 1, res);
	ws_reader_free(&r);
	pmd_ctx_free(&pmd);
	free(s.b);
}

START_TEST(test_reader_inflate_limit)
{
	static uint8_t msg[5000];
	struct pmd_params pp = {1, 1, 15, 15};
	struct result res;

	memset(msg, 'z', sizeof(msg));
	/* Inflates to exactly the limit: fine. */
	one_compressed(&pp, sizeof(msg), WS_OP_TEXT, msg, sizeof(msg), &res);
	ck_assert_int_eq(res.type, WS_EV_TEXT);
	ck_assert_uint_eq(res.last_len, sizeof(msg));
	ck_assert_uint_le(res.max_cap, sizeof(msg) + 1);
	free(res.last);
	/* One byte over: 1009, though it is tiny on the wire. */
	one_compressed(&pp, sizeof(msg) - 1, WS_OP_BINARY, msg, sizeof(msg),
		       &res);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_TOO_BIG);
	ck_assert_uint_le(res.max_cap, sizeof(msg));
	free(res.last);
}
END_TEST

START_TEST(test_reader_inflate_wire_bound)
{
	/*
	 * Empty stored blocks inflate to nothing: the compressed size is
	 * bounded by limit + limit / 4 + 1024 (2274 for 1000) so such a
	 * message cannot stream forever.
	 */
	static uint8_t pad[3000];
	struct pmd_config cfg;
	struct pmd_params pp = {1, 1, 15, 15};
	struct pmd_ctx pmd;
	struct ws_reader r;
	struct ws_reader_limits lim = {1000, 0};
	struct stream s = {0};
	struct result res;

	for (size_t i = 0; i + 5 <= sizeof(pad); i += 5)
		memcpy(pad + i, "\x00\x00\x00\xff\xff", 5);
	cfg_default(&cfg);
	/*
	 * Within the bound: an empty message.  It must end with the lone 00
	 * a sender's stripped sync flush leaves after byte-aligned data (the
	 * header byte of the empty stored block the receiver completes).
	 */
	put_frame(&s, WS_OP_TEXT, WS_FRAME_RSV1, pad, 1000);
	pad[1265] = 0x00;
	put_frame(&s, WS_OP_CONT, WS_FRAME_FIN, pad, 1266);
	pmd_ctx_init(&pmd, &pp, &cfg);
	ws_reader_init(&r, &lim, &pmd);
	{
		uint8_t *exp[1] = {(uint8_t *)""};
		size_t exp_len[1] = {0};

		run_reader(&r, &pmd, &s, 0, exp, exp_len, 1, &res);
	}
	ck_assert_msg(res.type == WS_EV_TEXT, "type %d code %u", res.type,
		      res.code);
	free(res.last);
	ws_reader_free(&r);
	pmd_ctx_free(&pmd);
	/* Past it: 1009 at the third frame's header. */
	s.n = 0;
	put_frame(&s, WS_OP_TEXT, WS_FRAME_RSV1, pad, 1000);
	put_frame(&s, WS_OP_CONT, 0, pad, 1000);
	put_frame(&s, WS_OP_CONT, WS_FRAME_FIN, pad, 1000);
	pmd_ctx_init(&pmd, &pp, &cfg);
	ws_reader_init(&r, &lim, &pmd);
	run_reader(&r, &pmd, &s, 0, NULL, NULL, 0, &res);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_TOO_BIG);
	ck_assert_uint_eq(res.consumed, 2 * (1000 + 8) + 8);
	ws_reader_free(&r);
	pmd_ctx_free(&pmd);
	free(s.b);
}
END_TEST

START_TEST(test_zip_bomb)
{
	/* 100 MB of zeros compress to about 100 KB. */
	const size_t total = 100u * 1000 * 1000, limit = 1024 * 1024;
	uint8_t *zeros = calloc(1, 1 << 20), *comp = malloc(1 << 20);
	struct pmd_config cfg;
	struct pmd_params pp = {1, 1, 15, 15};
	struct pmd_ctx pmd;
	struct ws_reader r;
	struct ws_reader_limits lim = {limit, 0};
	struct stream s = {0};
	struct result res;
	z_stream cz = {0};
	size_t n;

	ck_assert_int_eq(
	    deflateInit2(&cz, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	cz.next_out = comp;
	cz.avail_out = 1 << 20;
	for (size_t done = 0; done < total; done += 1 << 20) {
		cz.next_in = zeros;
		cz.avail_in = 1 << 20;
		ck_assert_int_eq(deflate(&cz, done + (1 << 20) >= total
						  ? Z_SYNC_FLUSH
						  : Z_NO_FLUSH),
				 Z_OK);
		ck_assert_uint_eq(cz.avail_in, 0);
	}
	n = (1 << 20) - cz.avail_out - 4;
	deflateEnd(&cz);
	ck_assert_uint_lt(n, 200000);
	/* One frame, and the same bomb in many small fragments. */
	for (int frag = 0; frag <= 1; frag++) {
		s.n = 0;
		if (frag) {
			for (size_t off = 0; off < n; off += 1000) {
				size_t fl = n - off < 1000 ? n - off : 1000;
				unsigned fl_flags =
				    (off == 0 ? WS_FRAME_RSV1 : 0) |
				    (off + fl == n ? WS_FRAME_FIN : 0);

				put_frame(&s, off ? WS_OP_CONT : WS_OP_TEXT,
					  fl_flags, comp + off, fl);
			}
		} else {
			put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1,
				  comp, n);
		}
		cfg_default(&cfg);
		pmd_ctx_init(&pmd, &pp, &cfg);
		ws_reader_init(&r, &lim, &pmd);
		run_reader(&r, &pmd, &s, 4096, NULL, NULL, 0, &res);
		ck_assert_int_eq(res.type, WS_EV_ERROR);
		ck_assert_uint_eq(res.code, WS_CLOSE_TOO_BIG);
		/* Buffer never beyond limit + 1 ... */
		ck_assert_uint_le(res.max_cap, limit + 1);
		/* ... and stopped after ~1 MiB of output, not 100 MB:
		 * only a sliver of the compressed bytes was read. */
		ck_assert_uint_lt(res.consumed, s.n / 10);
		ck_assert_ptr_null(r.buf);
		ws_reader_free(&r);
		pmd_ctx_free(&pmd);
	}
	free(s.b);
	free(zeros);
	free(comp);
}
END_TEST

START_TEST(test_reader_inflate_utf8_fail_fast)
{
	static uint8_t msg[200000], comp[210000];
	struct pmd_config cfg;
	struct pmd_params pp = {1, 1, 15, 15};
	struct pmd_ctx pmd;
	struct ws_reader r;
	struct stream s = {0};
	struct result res;
	z_stream cz = {0};
	size_t n;

	/* Early invalid byte, then lots of incompressible-ish text. */
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)('a' + rnd_below(26));
	msg[10] = 0xff;
	cfg_default(&cfg);
	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	n = client_deflate(&cz, msg, sizeof(msg), comp, sizeof(comp), 0);
	deflateEnd(&cz);
	/* A non-final first fragment; the message never ends. */
	put_frame(&s, WS_OP_TEXT, WS_FRAME_RSV1, comp, n);
	/* Only the first half of the frame arrives. */
	s.n /= 2;
	pmd_ctx_init(&pmd, &pp, &cfg);
	ws_reader_init(&r, NULL, &pmd);
	run_reader(&r, &pmd, &s, 1000, NULL, NULL, 0, &res);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_INVALID_DATA);
	ck_assert_uint_lt(res.consumed, s.n);
	ws_reader_free(&r);
	pmd_ctx_free(&pmd);
	free(s.b);
	/* Valid UTF-8 split inside the compressed stream is fine. */
	{
		static const uint8_t ok[] = "caf\xc3\xa9 \xf0\x9f\x98\x80";

		one_compressed(&pp, 0, WS_OP_TEXT, ok, sizeof(ok) - 1, &res);
		ck_assert_int_eq(res.type, WS_EV_TEXT);
		free(res.last);
		/* Truncated at message end. */
		one_compressed(&pp, 0, WS_OP_TEXT, ok, sizeof(ok) - 2, &res);
		ck_assert_int_eq(res.type, WS_EV_ERROR);
		ck_assert_uint_eq(res.code, WS_CLOSE_INVALID_DATA);
		free(res.last);
	}
}
END_TEST

static void
feed_raw(const struct pmd_params *pp, struct stream *s, struct result *res,
	 size_t nexp, uint8_t **exp, size_t *exp_len)
{
	struct pmd_config cfg;
	struct pmd_ctx pmd;
	struct ws_reader r;

	cfg_default(&cfg);
	pmd_ctx_init(&pmd, pp, &cfg);
	ws_reader_init(&r, NULL, &pmd);
	run_reader(&r, &pmd, s, 0, exp, exp_len, nexp, res);
	ws_reader_free(&r);
	pmd_ctx_free(&pmd);
}

START_TEST(test_reader_inflate_corrupt)
{
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
	static uint8_t msg[4000], comp[5000];
	struct pmd_params pp = {1, 0, 15, 15};
	struct stream s = {0};
	struct result res;
	z_stream cz = {0};
	size_t n;

	/* Not deflate data. */
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, junk,
		  sizeof(junk));
	feed_raw(&pp, &s, &res, 0, NULL, NULL);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_INVALID_DATA);
	/* A message cut in the middle of a block. */
	gen_text(msg, sizeof(msg));
	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	n = client_deflate(&cz, msg, sizeof(msg), comp, sizeof(comp), 0);
	deflateEnd(&cz);
	s.n = 0;
	put_frame(&s, WS_OP_BINARY, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n / 2);
	feed_raw(&pp, &s, &res, 0, NULL, NULL);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_INVALID_DATA);
	free(s.b);
}
END_TEST

START_TEST(test_reader_inflate_bfinal_and_empty)
{
	static const uint8_t m1[] = "first message, first message";
	static const uint8_t m2[] = "second message";
	static uint8_t comp[256];
	struct pmd_params pp = {1, 0, 15, 15};
	struct stream s = {0};
	struct result res;
	z_stream cz = {0};
	uint8_t *exp[5] = {(uint8_t *)m1, (uint8_t *)"", (uint8_t *)"",
			   (uint8_t *)m2, (uint8_t *)m1};
	size_t exp_len[5] = {sizeof(m1) - 1, 0, 0, sizeof(m2) - 1,
			     sizeof(m1) - 1};
	size_t n;

	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	/* 7.2.3.3: a message ending in a BFINAL block... */
	n = client_deflate(&cz, m1, sizeof(m1) - 1, comp, sizeof(comp), 1);
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n);
	/* ...an empty compressed payload and the 7.2.3.6 form 00... */
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, 0);
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1,
		  (const uint8_t *)"", 1);
	/* ...then a new stream, with context takeover, twice. */
	deflateReset(&cz);
	n = client_deflate(&cz, m2, sizeof(m2) - 1, comp, sizeof(comp), 0);
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n);
	n = client_deflate(&cz, m1, sizeof(m1) - 1, comp, sizeof(comp), 0);
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n);
	feed_raw(&pp, &s, &res, 5, exp, exp_len);
	ck_assert_int_eq(res.type, WS_EV_TEXT);
	free(res.last);
	/* Data after a BFINAL block in the same message: corrupt. */
	s.n = 0;
	deflateReset(&cz);
	n = client_deflate(&cz, m1, sizeof(m1) - 1, comp, sizeof(comp), 1);
	comp[n] = 0x00; /* an empty stored block's first byte */
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n + 1);
	feed_raw(&pp, &s, &res, 0, NULL, NULL);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_INVALID_DATA);
	deflateEnd(&cz);
	free(s.b);
}
END_TEST

START_TEST(test_reader_no_context_enforced)
{
	/* We asked for client_no_context_takeover; a client that keeps its
	 * context anyway refers to history we dropped: 1007. */
	static const uint8_t m[] = "the very same words, the very same words";
	static uint8_t comp[256];
	struct pmd_params pp = {1, 1, 15, 15};
	struct stream s = {0};
	struct result res;
	z_stream cz = {0};
	uint8_t *exp[2] = {(uint8_t *)m, (uint8_t *)m};
	size_t exp_len[2] = {sizeof(m) - 1, sizeof(m) - 1};
	size_t n;

	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	n = client_deflate(&cz, m, sizeof(m) - 1, comp, sizeof(comp), 0);
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n);
	n = client_deflate(&cz, m, sizeof(m) - 1, comp, sizeof(comp), 0);
	put_frame(&s, WS_OP_TEXT, WS_FRAME_FIN | WS_FRAME_RSV1, comp, n);
	deflateEnd(&cz);
	/* With context takeover negotiated, both decode. */
	pp.client_no_context_takeover = 0;
	{
		uint8_t *copy = malloc(s.n);
		struct stream sc = {copy, s.n, s.n};

		memcpy(copy, s.b, s.n);
		feed_raw(&pp, &sc, &res, 2, exp, exp_len);
		ck_assert_int_eq(res.type, WS_EV_TEXT);
		free(res.last);
		free(copy);
	}
	pp.client_no_context_takeover = 1;
	feed_raw(&pp, &s, &res, 1, exp, exp_len);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_INVALID_DATA);
	free(res.last);
	free(s.b);
}
END_TEST

START_TEST(test_reader_rsv1_rules)
{
	static uint8_t comp[64];
	struct pmd_params pp = {1, 1, 15, 15};
	struct stream s = {0};
	struct result res;
	z_stream cz = {0};
	size_t n;

	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	n = client_deflate(&cz, (const uint8_t *)"abcdef", 6, comp,
			   sizeof(comp), 0);
	deflateEnd(&cz);
	/* RSV1 on a continuation frame. */
	put_frame(&s, WS_OP_TEXT, WS_FRAME_RSV1, comp, 2);
	put_frame(&s, WS_OP_CONT, WS_FRAME_FIN | WS_FRAME_RSV1, comp + 2,
		  n - 2);
	feed_raw(&pp, &s, &res, 0, NULL, NULL);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_PROTOCOL);
	/* RSV1 on a ping. */
	s.n = 0;
	put_frame(&s, WS_OP_PING, WS_FRAME_FIN | WS_FRAME_RSV1, comp, 2);
	feed_raw(&pp, &s, &res, 0, NULL, NULL);
	ck_assert_int_eq(res.type, WS_EV_ERROR);
	ck_assert_uint_eq(res.code, WS_CLOSE_PROTOCOL);
	free(s.b);
}
END_TEST

START_TEST(test_pmd_inflate_direct)
{
	/* One output byte at a time: FULL until DONE, nothing lost. */
	static uint8_t msg[3000], comp[4000], out[3001];
	struct pmd_config cfg;
	struct pmd_params pp = {1, 1, 15, 15};
	struct pmd_ctx pmd;
	z_stream cz = {0};
	size_t n, off = 0, pos = 0, used, got;
	int rc, fulls = 0;

	gen_text(msg, sizeof(msg));
	ck_assert_int_eq(
	    deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	n = client_deflate(&cz, msg, sizeof(msg), comp, sizeof(comp), 0);
	deflateEnd(&cz);
	cfg_default(&cfg);
	pmd_ctx_init(&pmd, &pp, &cfg);
	ck_assert_ptr_null(pmd.inf);
	do {
		ck_assert_uint_le(pos, sizeof(msg));
		rc = pmd_inflate(&pmd, comp + off, n - off, 1, out + pos, 1,
				 &used, &got);
		ck_assert_int_ge(rc, 0);
		off += used;
		pos += got;
		fulls += rc == PMD_FULL;
	} while (rc != PMD_DONE);
	ck_assert_uint_eq(off, n);
	ck_assert_uint_eq(pos, sizeof(msg));
	ck_assert_mem_eq(out, msg, pos);
	ck_assert_int_ge(fulls, (int)sizeof(msg) - 1);
	/* client_no_context_takeover: freed at message end. */
	ck_assert_ptr_null(pmd.inf);
	/* Nothing allocated for input that is not there yet. */
	ck_assert_int_eq(
	    pmd_inflate(&pmd, NULL, 0, 0, out, sizeof(out), &used, &got),
	    PMD_OK);
	ck_assert_ptr_null(pmd.inf);
	pmd_ctx_free(&pmd);
}
END_TEST

START_TEST(test_garbage_never_crashes)
{
	static const char alphabet[] = "permessage-deflate;,= \t\"\\_"
				       "server_max_window_bits0123456789";
	struct pmd_config cfg;
	struct pmd_params p;
	char resp[PMD_RESPONSE_MAX], in[120];

	cfg_default(&cfg);
	/* Negotiation over random mixes of the grammar's characters. */
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rnd_below(sizeof(in));

		for (size_t i = 0; i < len; i++)
			in[i] = rnd_below(8)
				    ? alphabet[rnd_below(sizeof(alphabet) - 1)]
				    : (char)rnd();
		ck_assert_int_ge(
		    pmd_negotiate(&cfg, in, len, &p, resp, sizeof(resp)), 0);
	}
	/* Random compressed payloads, fragmented, small limit. */
	for (int iter = 0; iter < 3000; iter++) {
		struct pmd_params pp = {1, (int)rnd_below(2), 15,
					8 + (int)rnd_below(8)};
		struct stream s = {0};
		struct result res;
		uint8_t junk[300];
		size_t len = rnd_below(sizeof(junk)), off = 0;

		for (size_t i = 0; i < len; i++)
			junk[i] = (uint8_t)rnd();
		while (off < len || off == 0) {
			size_t fl = rnd_below(len - off + 1);
			unsigned fl_flags =
			    (off == 0 ? WS_FRAME_RSV1 : 0) |
			    (off + fl == len ? WS_FRAME_FIN : 0);

			put_frame(&s, off ? WS_OP_CONT : WS_OP_BINARY, fl_flags,
				  junk + off, fl);
			off += fl;
			if (off == len && (fl_flags & WS_FRAME_FIN))
				break;
		}
		{
			struct pmd_ctx pmd;
			struct ws_reader r;
			struct ws_reader_limits lim = {4096, 0};

			pmd_ctx_init(&pmd, &pp, &cfg);
			ws_reader_init(&r, &lim, &pmd);
			run_reader(&r, &pmd, &s, rnd_below(2) ? 1 : 0, NULL,
				   NULL, 0, &res);
			ck_assert_uint_le(res.max_cap, 4097);
			ws_reader_free(&r);
			pmd_ctx_free(&pmd);
		}
		free(s.b);
	}
}
END_TEST

static Suite *
pmd_suite(void)
{
	Suite *s = suite_create("pmd");
	TCase *tc;

	tc = tcase_create("negotiate");
	tcase_add_test(tc, test_neg_browsers);
	tcase_add_test(tc, test_neg_window_bits);
	tcase_add_test(tc, test_neg_invalid_offers);
	tcase_add_test(tc, test_neg_multiple_and_syntax);
	suite_add_tcase(s, tc);

	tc = tcase_create("deflate");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_deflate_roundtrip_params);
	tcase_add_test(tc, test_deflate_context_takeover);
	tcase_add_test(tc, test_deflate_empty);
	tcase_add_test(tc, test_deflate_shared);
	tcase_add_test(tc, test_window_bits_8);
	suite_add_tcase(s, tc);

	tc = tcase_create("inflate");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_reader_inflate_params);
	tcase_add_test(tc, test_reader_inflate_limit);
	tcase_add_test(tc, test_zip_bomb);
	tcase_add_test(tc, test_reader_inflate_wire_bound);
	tcase_add_test(tc, test_reader_inflate_utf8_fail_fast);
	tcase_add_test(tc, test_reader_inflate_corrupt);
	tcase_add_test(tc, test_reader_inflate_bfinal_and_empty);
	tcase_add_test(tc, test_reader_no_context_enforced);
	tcase_add_test(tc, test_reader_rsv1_rules);
	tcase_add_test(tc, test_pmd_inflate_direct);
	tcase_add_test(tc, test_garbage_never_crashes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pmd_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	pmd_cleanup();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
