/*
 * fuzz_ws: client -> server WebSocket frames, as a worker reads them.
 *
 * Input: byte 0 flags (bit 0: permessage-deflate negotiated, bit 1: its
 * client_no_context_takeover, bit 2: reject binary, bits 3-4: the message
 * size limit, bit 5: a client's reader, as orchctl listen's, which takes
 * unmasked frames), byte 1 the read size (0: everything at once), then
 * the bytes of the stream.  The stream goes through ws_frame_parse() (the
 * header at its start) and through a struct ws_reader with the server's
 * rules, fed one read at a time as a connection does.
 *
 * Invariants: a header never claims more bytes than it was given and
 * re-encodes to the same frame; the reader never consumes more than it
 * was given and consumes everything when it asks for more; a text message
 * or a close reason is valid UTF-8; a message is within the size limit; a
 * control payload is within 125 bytes; a close code is one that may be on
 * the wire (or 1005); an error is sticky, with a close code a server
 * sends.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/pmd.h"
#include "orchd/utf8.h"
#include "orchd/ws.h"

FUZZ_DECLARE(ws);

static void
check_header(const uint8_t *buf, size_t len, unsigned flags)
{
	struct ws_frame f, g;
	uint8_t out[WS_HEADER_MAX];
	size_t n;
	int rc;

	memset(&f, 0, sizeof(f));
	rc = ws_frame_parse(buf, len, flags, &f);
	if (rc <= 0) {
		FUZZ_ASSERT(rc == 0 || rc == -WS_CLOSE_PROTOCOL);
		return;
	}
	FUZZ_ASSERT((size_t)rc <= len && rc >= 2 && rc <= WS_HEADER_MAX);
	FUZZ_ASSERT(rc == f.hlen && f.masked);
	FUZZ_ASSERT(!WS_OP_IS_CONTROL(f.opcode) ||
		    (f.fin && f.len <= WS_CONTROL_MAX));
	FUZZ_ASSERT(f.len < (1ull << 63));
	/* The minimal encoding of the same frame parses back to it. */
	n = ws_frame_header_encode(out, f.opcode,
				   (f.fin ? WS_FRAME_FIN : 0) |
				       (f.rsv1 ? WS_FRAME_RSV1 : 0),
				   f.len, f.mask);
	FUZZ_ASSERT(n == ws_frame_header_size(f.len, 1) && n <= (size_t)rc);
	memset(&g, 0, sizeof(g));
	FUZZ_ASSERT(ws_frame_parse(out, n, flags, &g) == (int)n);
	FUZZ_ASSERT(g.len == f.len && g.opcode == f.opcode && g.fin == f.fin &&
		    g.rsv1 == f.rsv1 && memcmp(g.mask, f.mask, 4) == 0);
}

static void
check_event(const struct ws_event *ev, size_t max_msg)
{
	switch (ev->type) {
	case WS_EV_TEXT:
		FUZZ_ASSERT(utf8_valid(ev->data, ev->len));
		/* fall through */
	case WS_EV_BINARY:
		FUZZ_ASSERT(ev->len <= max_msg);
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
		FUZZ_ASSERT(ev->len <= WS_CONTROL_MAX);
		break;
	case WS_EV_CLOSE:
		FUZZ_ASSERT(ev->len <= WS_CONTROL_MAX - 2);
		FUZZ_ASSERT(utf8_valid(ev->data, ev->len));
		FUZZ_ASSERT(ev->code == WS_CLOSE_NO_STATUS ||
			    ws_close_code_valid(ev->code));
		FUZZ_ASSERT(ev->code != WS_CLOSE_NO_STATUS || ev->len == 0);
		break;
	case WS_EV_ERROR:
		FUZZ_ASSERT(ev->err != NULL);
		FUZZ_ASSERT(ev->code == WS_CLOSE_PROTOCOL ||
			    ev->code == WS_CLOSE_UNSUPPORTED ||
			    ev->code == WS_CLOSE_INVALID_DATA ||
			    ev->code == WS_CLOSE_TOO_BIG ||
			    ev->code == WS_CLOSE_INTERNAL);
		break;
	default:
		FUZZ_ASSERT(0);
	}
	/* Touch every byte handed out: ASan checks that it is still there. */
	if (ev->len > 0) {
		volatile uint8_t sink = 0;

		for (size_t i = 0; i < ev->len; i++)
			sink ^= ev->data[i];
		(void)sink;
	}
}

int
FUZZ_INIT(ws)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(ws)(const uint8_t *data, size_t size)
{
	static const size_t limits[] = {WS_DEFAULT_MAX_MESSAGE, 125, 1024,
					65536};
	struct ws_reader_limits lim;
	struct pmd_config cfg;
	struct pmd_params pp;
	struct pmd_ctx pmd;
	struct ws_reader r;
	uint8_t flags, *buf;
	size_t chunk, len, pos = 0, avail = 0;
	int failed = 0, closed = 0;

	if (size < 2)
		return 0;
	flags = data[0];
	chunk = data[1];
	data += 2;
	size -= 2;
	check_header(data, size, 0);
	check_header(data, size, WS_PARSE_RSV1);

	memset(&lim, 0, sizeof(lim));
	lim.max_message_size = limits[(flags >> 3) & 3];
	lim.reject_binary = (flags & 4) != 0;
	pmd_config_default(&cfg);
	memset(&pp, 0, sizeof(pp));
	pp.server_no_context_takeover = 1;
	pp.client_no_context_takeover = (flags & 2) != 0;
	pp.server_max_window_bits = 15;
	pp.client_max_window_bits = 15;
	pmd_ctx_init(&pmd, &pp, &cfg);
	ws_reader_init(&r, &lim, (flags & 1) ? &pmd : NULL);
	/* orchctl listen's reader: unmasked frames from a server. */
	if (flags & 0x20)
		ws_reader_set_client(&r);

	/* The reader unmasks in place: give it a private copy. */
	len = size;
	buf = malloc(len + 1);
	if (buf == NULL)
		abort();
	memcpy(buf, data, len);
	if (chunk == 0)
		chunk = len;
	while (pos < len && !failed) {
		avail = avail + chunk < len ? avail + chunk : len;
		while (pos < avail) {
			struct ws_event ev;
			size_t consumed = 0;
			int t;

			memset(&ev, 0, sizeof(ev));
			t = ws_reader_feed(&r, buf + pos, avail - pos,
					   &consumed, &ev);
			FUZZ_ASSERT(t == (int)ev.type);
			FUZZ_ASSERT(consumed <= avail - pos);
			if (t == WS_EV_NEED_MORE) {
				FUZZ_ASSERT(consumed == avail - pos);
				pos = avail;
				break;
			}
			/* Nothing but NEED_MORE after a close. */
			FUZZ_ASSERT(!closed);
			check_event(&ev, lim.max_message_size);
			pos += consumed;
			if (t == WS_EV_CLOSE)
				closed = 1;
			if (t == WS_EV_ERROR) {
				unsigned code = ev.code;
				size_t again = 1;

				/* Sticky, and consumes nothing more. */
				memset(&ev, 0, sizeof(ev));
				FUZZ_ASSERT(ws_reader_feed(&r, buf + pos,
							   avail - pos, &again,
							   &ev) == WS_EV_ERROR);
				FUZZ_ASSERT(ev.code == code && again == 0);
				failed = 1;
				break;
			}
			if ((t == WS_EV_TEXT || t == WS_EV_BINARY) && (pos & 1))
				ws_reader_release(&r);
		}
	}
	ws_reader_free(&r);
	pmd_ctx_free(&pmd);
	free(buf);
	return 0;
}
