/*
 * fuzz_pmd: permessage-deflate, the inflate side with the size limit, the
 * negotiation of Sec-WebSocket-Extensions offers, and deflate -> inflate.
 *
 * Input: byte 0 is the mode and parameters.
 *   mode 0 (bits 6-7 = 0): inflate.  Bits 0-2: client window bits - 8;
 *     bit 3: client_no_context_takeover; byte 1: the output room offered
 *     per call (1..256).  Then pieces: a control byte (bits 0-5 the piece
 *     length, bit 6 fin), then the piece.  A message's output is bounded
 *     by LIMIT bytes as ws_reader bounds it: past it the message is
 *     abandoned with pmd_inflate_reset().
 *   mode 1: negotiate: the rest is one header value.
 *   mode 2: round trip: the rest is a message, deflated with the shared
 *     deflater and the connection's, and inflated again.
 * Invariants: pmd_inflate never takes more input nor writes more output
 * than offered, always makes progress, consumes all of a PMD_OK piece;
 * the negotiated parameters are in range and the response fits; what
 * pmd_deflate*() produces inflates back to the message.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/pmd.h"

FUZZ_DECLARE(pmd);

#define LIMIT 65536

static uint8_t out[LIMIT + 1];

static void
inflate_mode(struct fuzz_in *in)
{
	uint8_t b = fuzz_byte(in);
	size_t room = (size_t)fuzz_byte(in) + 1, msg = 0;
	struct pmd_config cfg;
	struct pmd_params pp;
	struct pmd_ctx ctx;

	pmd_config_default(&cfg);
	memset(&pp, 0, sizeof(pp));
	pp.server_no_context_takeover = 1;
	pp.server_max_window_bits = 15;
	pp.client_max_window_bits = 8 + (b & 7);
	pp.client_no_context_takeover = (b & 8) != 0;
	pmd_ctx_init(&ctx, &pp, &cfg);
	while (in->len > 0) {
		uint8_t c = fuzz_byte(in);
		int fin = (c & 0x40) != 0, rc;
		size_t n, off = 0;
		const uint8_t *piece = fuzz_take(in, c & 0x3f, &n);

		for (;;) {
			size_t used = 0, got = 0, cap = room;

			if (cap > sizeof(out) - msg)
				cap = sizeof(out) - msg;
			rc = pmd_inflate(&ctx, piece + off, n - off, fin,
					 out + msg, cap, &used, &got);
			FUZZ_ASSERT(used <= n - off && got <= cap);
			off += used;
			msg += got;
			if (rc == PMD_FULL) {
				FUZZ_ASSERT(got == cap);
				if (msg > LIMIT) {
					/* Too big (1009): abandon it. */
					pmd_inflate_reset(&ctx);
					msg = 0;
					break;
				}
				continue;
			}
			if (rc == PMD_OK) {
				FUZZ_ASSERT(!fin && off == n);
			} else if (rc == PMD_DONE) {
				FUZZ_ASSERT(fin && off == n);
				msg = 0;
			} else {
				FUZZ_ASSERT(rc == PMD_EDATA);
				pmd_inflate_reset(&ctx);
				msg = 0;
			}
			break;
		}
	}
	pmd_ctx_free(&ctx);
}

static void
negotiate_mode(struct fuzz_in *in)
{
	struct pmd_config cfg;
	struct pmd_params pp;
	char resp[PMD_RESPONSE_MAX];
	int rc;

	pmd_config_default(&cfg);
	memset(&pp, 0, sizeof(pp));
	rc = pmd_negotiate(&cfg, (const char *)in->p, in->len, &pp, resp,
			   sizeof(resp));
	FUZZ_ASSERT(rc == 0 || rc == 1);
	if (rc == 1) {
		FUZZ_ASSERT(memchr(resp, '\0', sizeof(resp)) != NULL);
		FUZZ_ASSERT(strncmp(resp, "permessage-deflate", 18) == 0);
		FUZZ_ASSERT(pp.server_max_window_bits >= PMD_MIN_WINDOW_BITS &&
			    pp.server_max_window_bits <= PMD_MAX_WINDOW_BITS);
		FUZZ_ASSERT(pp.client_max_window_bits >= PMD_MIN_WINDOW_BITS &&
			    pp.client_max_window_bits <= PMD_MAX_WINDOW_BITS);
		/* The default config asks for both no_context_takeovers. */
		FUZZ_ASSERT(pp.server_no_context_takeover &&
			    pp.client_no_context_takeover);
	}
	/* Too small a response buffer is an error, never an overflow. */
	rc = pmd_negotiate(&cfg, (const char *)in->p, in->len, &pp, resp, 8);
	FUZZ_ASSERT(rc == 0 || rc == -1);
}

/* Inflate z[0..zlen) as one message with ctx: must give back msg. */
static void
inflate_back(struct pmd_ctx *ctx, const uint8_t *z, size_t zlen,
	     const uint8_t *msg, size_t len)
{
	size_t used = 0, got = 0;
	int rc = pmd_inflate(ctx, z, zlen, 1, out, sizeof(out), &used, &got);

	FUZZ_ASSERT(rc == PMD_DONE && used == zlen);
	FUZZ_ASSERT(got == len && (len == 0 || memcmp(out, msg, len) == 0));
}

static void
roundtrip_mode(struct fuzz_in *in)
{
	struct pmd_config cfg;
	struct pmd_params pp;
	struct pmd_ctx def, inf;
	uint8_t *z;
	size_t zlen;

	if (in->len > LIMIT)
		return;
	pmd_config_default(&cfg);
	memset(&pp, 0, sizeof(pp));
	pp.server_max_window_bits = 15;
	pp.client_max_window_bits = 15;
	pmd_ctx_init(&inf, &pp, &cfg);
	/* The inflater here plays the client: its window is the server's. */
	z = pmd_deflate_shared(&cfg, in->p, in->len, 14, &zlen);
	FUZZ_ASSERT(z != NULL);
	inflate_back(&inf, z + 14, zlen, in->p, in->len);
	free(z);
	/* Context takeover: twice through the same streams. */
	pmd_ctx_init(&def, &pp, &cfg);
	for (int i = 0; i < 2; i++) {
		z = pmd_deflate(&def, in->p, in->len, 0, &zlen);
		FUZZ_ASSERT(z != NULL);
		inflate_back(&inf, z, zlen, in->p, in->len);
		free(z);
	}
	pmd_ctx_free(&def);
	pmd_ctx_free(&inf);
}

int
FUZZ_INIT(pmd)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(pmd)(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	unsigned mode;

	if (size < 1)
		return 0;
	mode = data[0] >> 6;
	if (mode == 1) {
		in.p++;
		in.len--;
		negotiate_mode(&in);
	} else if (mode == 2) {
		in.p++;
		in.len--;
		roundtrip_mode(&in);
	} else {
		inflate_mode(&in);
	}
	return 0;
}
