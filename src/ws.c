/*
 * ws: the WebSocket protocol (RFC 6455) without I/O.
 *
 * The reader is a two-state machine (frame header, frame payload) over a
 * message state (none, text or binary in progress, compressed or not).  It
 * works on whatever piece of the stream the connection has just read: header
 * bytes are gathered in a 14-byte area, payload bytes are unmasked in the
 * caller's buffer and then validated, inflated or copied as they come, so
 * every limit is checked when the offending byte arrives, not at message
 * end.  A message that arrives whole in one read is handed over in place.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "orchd/pmd.h"
#include "orchd/utf8.h"
#include "orchd/ws.h"

/* ---- handshake ---------------------------------------------------------- */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int
is_base64(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
ws_key_valid(const char *key, size_t len)
{
	/* 16 bytes = 5 groups of 3 plus one byte: 22 characters and "==". */
	if (len != 24 || key[22] != '=' || key[23] != '=')
		return 0;
	for (size_t i = 0; i < 22; i++)
		if (!is_base64((unsigned char)key[i]))
			return 0;
	return 1;
}

int
ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1])
{
	unsigned char in[64 + sizeof(ws_guid)];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	out[0] = '\0';
	if (len > 64)
		return -1;
	memcpy(in, key, len);
	memcpy(in + len, ws_guid, sizeof(ws_guid) - 1);
	if (EVP_Digest(in, len + sizeof(ws_guid) - 1, md, &mdlen, EVP_sha1(),
		       NULL) != 1 ||
	    mdlen != 20)
		return -1;
	/* EVP_EncodeBlock writes 28 characters and a NUL for 20 bytes. */
	if (EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen) !=
	    WS_ACCEPT_LEN)
		return -1;
	return 0;
}

/* ---- frames ------------------------------------------------------------- */

static int
frame_parse(const uint8_t *buf, size_t len, unsigned flags, struct ws_frame *f,
	    const char **why)
{
	uint8_t b0, b1, op;
	uint64_t plen;
	size_t need;
	int masked;

	if (len < 1)
		return 0;
	b0 = buf[0];
	op = b0 & 0x0f;
	if (b0 & 0x30) {
		*why = "RSV2 or RSV3 set";
		return -WS_CLOSE_PROTOCOL;
	}
	if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY &&
	    op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG) {
		*why = "reserved opcode";
		return -WS_CLOSE_PROTOCOL;
	}
	if (b0 & 0x40) {
		if (!(flags & WS_PARSE_RSV1)) {
			*why = "RSV1 set without permessage-deflate";
			return -WS_CLOSE_PROTOCOL;
		}
		/* 7692 6.1: only on the first frame of a data message. */
		if (op != WS_OP_TEXT && op != WS_OP_BINARY) {
			*why = "RSV1 set on a continuation or control frame";
			return -WS_CLOSE_PROTOCOL;
		}
	}
	if (WS_OP_IS_CONTROL(op) && !(b0 & 0x80)) {
		*why = "fragmented control frame";
		return -WS_CLOSE_PROTOCOL;
	}
	if (len < 2)
		return 0;
	b1 = buf[1];
	masked = b1 >> 7;
	if (!masked && !(flags & WS_PARSE_CLIENT)) {
		*why = "unmasked client frame";
		return -WS_CLOSE_PROTOCOL;
	}
	if (masked && (flags & WS_PARSE_CLIENT)) {
		*why = "masked server frame";
		return -WS_CLOSE_PROTOCOL;
	}
	plen = b1 & 0x7f;
	need = 2;
	if (plen == 126) {
		need += 2;
		if (len < need)
			return 0;
		plen = (uint64_t)buf[2] << 8 | buf[3];
	} else if (plen == 127) {
		/* Decide on the top bit as soon as its byte is here. */
		if (len >= 3 && (buf[2] & 0x80)) {
			*why = "64-bit payload length with the top bit set";
			return -WS_CLOSE_PROTOCOL;
		}
		need += 8;
		if (len < need)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | buf[2 + i];
	}
	/* On the decoded value: a non-minimal encoding of <= 125 is fine. */
	if (WS_OP_IS_CONTROL(op) && plen > WS_CONTROL_MAX) {
		*why = "control frame payload over 125 bytes";
		return -WS_CLOSE_PROTOCOL;
	}
	if (masked) {
		if (len < need + 4)
			return 0;
		memcpy(f->mask, buf + need, 4);
		need += 4;
	} else {
		memset(f->mask, 0, 4);
	}
	f->len = plen;
	f->opcode = op;
	f->fin = b0 >> 7;
	f->rsv1 = (b0 >> 6) & 1;
	f->masked = (uint8_t)masked;
	f->hlen = (uint8_t)need;
	return (int)need;
}

int
ws_frame_parse(const uint8_t *buf, size_t len, unsigned flags,
	       struct ws_frame *f)
{
	const char *why;

	return frame_parse(buf, len, flags, f, &why);
}

size_t
ws_frame_header_size(uint64_t len, int masked)
{
	size_t n = len < 126 ? 2 : len <= 0xffff ? 4 : 10;

	return masked ? n + 4 : n;
}

size_t
ws_frame_header_encode(uint8_t *out, unsigned opcode, unsigned flags,
		       uint64_t len, const uint8_t *mask)
{
	uint8_t m = mask ? 0x80 : 0;
	size_t n;

	out[0] = (uint8_t)((flags & (WS_FRAME_FIN | WS_FRAME_RSV1)) |
			   (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)(m | len);
		n = 2;
	} else if (len <= 0xffff) {
		out[1] = m | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = m | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

size_t
ws_frame_encode(uint8_t *out, size_t cap, unsigned opcode, unsigned flags,
		const uint8_t *payload, size_t len, const uint8_t *mask)
{
	size_t h = ws_frame_header_size(len, mask != NULL);

	if (cap < h || cap - h < len)
		return 0;
	ws_frame_header_encode(out, opcode, flags, len, mask);
	if (len > 0)
		memcpy(out + h, payload, len);
	if (mask)
		ws_unmask(out + h, len, mask, 0);
	return h + len;
}

void
ws_unmask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset)
{
	uint8_t k[8];
	uint64_t kw, w;
	size_t i = 0;
	unsigned o = (unsigned)(offset & 3);

	/* The key rotated so that k[0] applies to buf[0], twice over. */
	for (int j = 0; j < 8; j++)
		k[j] = mask[(o + (unsigned)j) & 3];
	memcpy(&kw, k, 8);
	for (; len - i >= 8; i += 8) {
		memcpy(&w, buf + i, 8);
		w ^= kw;
		memcpy(buf + i, &w, 8);
	}
	for (; i < len; i++)
		buf[i] ^= k[i & 3];
}

/* ---- close -------------------------------------------------------------- */

int
ws_close_code_valid(unsigned code)
{
	if (code >= 3000 && code <= 4999)
		return 1;
	if (code >= 1000 && code <= 1003)
		return 1;
	return code >= 1007 && code <= 1014;
}

size_t
ws_close_payload(uint8_t *out, unsigned code, const char *reason)
{
	size_t rl;

	if (code == 0 || code == WS_CLOSE_NO_STATUS)
		return 0;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (reason == NULL)
		return 2;
	rl = strlen(reason);
	if (rl > WS_CONTROL_MAX - 2)
		rl = utf8_boundary((const uint8_t *)reason, WS_CONTROL_MAX - 2);
	memcpy(out + 2, reason, rl);
	return 2 + rl;
}

size_t
ws_close_frame(uint8_t *out, unsigned code, const char *reason)
{
	size_t n = ws_close_payload(out + 2, code, reason);

	ws_frame_header_encode(out, WS_OP_CLOSE, WS_FRAME_FIN, n, NULL);
	return 2 + n;
}

/* ---- message reader ----------------------------------------------------- */

enum { RS_HEADER, RS_PAYLOAD, RS_FAILED, RS_CLOSED };

#define RD_MIN_BUF 512

void
ws_reader_init(struct ws_reader *r, const struct ws_reader_limits *lim,
	       struct pmd_ctx *pmd)
{
	size_t max = lim ? lim->max_message_size : 0;

	memset(r, 0, sizeof(*r));
	if (max == 0)
		max = WS_DEFAULT_MAX_MESSAGE;
	if (max > WS_MAX_MESSAGE_CEILING)
		max = WS_MAX_MESSAGE_CEILING;
	r->pmd = pmd;
	r->max_msg = max;
	r->max_wire = (uint64_t)max + max / 4 + 1024;
	r->reject_binary = lim ? lim->reject_binary : 0;
	r->client = 0;
	r->state = RS_HEADER;
	r->utf8 = UTF8_ACCEPT;
}

static void
buf_free(struct ws_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->len = 0;
	r->cap = 0;
	r->handed = 0;
}

void
ws_reader_release(struct ws_reader *r)
{
	if (r->handed)
		buf_free(r);
}

/* Drop the message in progress, and the inflater's half-read stream. */
static void
msg_abandon(struct ws_reader *r)
{
	if (r->msg_deflated && r->pmd)
		pmd_inflate_reset(r->pmd);
	buf_free(r);
	r->msg_op = 0;
	r->msg_deflated = 0;
	r->msg_wire = 0;
	r->utf8 = UTF8_ACCEPT;
}

void
ws_reader_free(struct ws_reader *r)
{
	msg_abandon(r);
}

/*
 * The reader's helpers return 0 to carry on, or WS_EV_ERROR once fail() has
 * filled the event and made the failure sticky.
 */
static int
fail(struct ws_reader *r, struct ws_event *ev, unsigned code, const char *why)
{
	msg_abandon(r);
	r->state = RS_FAILED;
	r->err_code = code;
	r->err = why;
	ev->type = WS_EV_ERROR;
	ev->code = code;
	ev->err = why;
	ev->data = NULL;
	ev->len = 0;
	return WS_EV_ERROR;
}

/* Make room for need bytes in the message buffer (need <= max_msg + 1). */
static int
reserve(struct ws_reader *r, size_t need)
{
	size_t ncap;
	uint8_t *nb;

	if (need <= r->cap)
		return 0;
	ncap = r->cap ? r->cap : RD_MIN_BUF;
	while (ncap < need)
		ncap *= 2;
	if (ncap > r->max_msg + 1)
		ncap = r->max_msg + 1;
	nb = realloc(r->buf, ncap);
	if (nb == NULL)
		return -1;
	r->buf = nb;
	r->cap = ncap;
	return 0;
}

/* Checks that need a complete header and the message state. */
static int
frame_begin(struct ws_reader *r, struct ws_event *ev)
{
	uint8_t op = r->f.opcode;

	if (WS_OP_IS_CONTROL(op))
		return 0;
	if (op == WS_OP_CONT) {
		if (!r->msg_op)
			return fail(r, ev, WS_CLOSE_PROTOCOL,
				    "continuation frame without a message");
	} else {
		if (r->msg_op)
			return fail(r, ev, WS_CLOSE_PROTOCOL,
				    "data frame inside a fragmented message");
		if (op == WS_OP_BINARY && r->reject_binary)
			return fail(r, ev, WS_CLOSE_UNSUPPORTED,
				    "binary message");
		r->msg_op = op;
		r->msg_deflated = r->f.rsv1;
		r->utf8 = UTF8_ACCEPT;
		r->msg_wire = 0;
		r->len = 0;
	}
	/* f.len < 2^63 and msg_wire <= max_wire: no overflow. */
	r->msg_wire += r->f.len;
	if (r->msg_deflated) {
		if (r->msg_wire > r->max_wire)
			return fail(r, ev, WS_CLOSE_TOO_BIG,
				    "compressed message too big");
	} else if (r->msg_wire > r->max_msg) {
		return fail(r, ev, WS_CLOSE_TOO_BIG, "message too big");
	}
	return 0;
}

/*
 * Inflate a piece of the message into the buffer, validating and counting
 * the output as it comes.  The buffer never grows past max_msg + 1, so the
 * inflater cannot produce more than that before we notice.
 */
static int
inflate_piece(struct ws_reader *r, const uint8_t *in, size_t n, int fin,
	      struct ws_event *ev)
{
	for (;;) {
		size_t used, out;
		int rc;

		if (r->cap == r->len && reserve(r, r->len + 1) < 0)
			return fail(r, ev, WS_CLOSE_INTERNAL, "out of memory");
		rc = pmd_inflate(r->pmd, in, n, fin, r->buf + r->len,
				 r->cap - r->len, &used, &out);
		if (rc == PMD_ENOMEM)
			return fail(r, ev, WS_CLOSE_INTERNAL, "out of memory");
		if (rc == PMD_EDATA)
			return fail(r, ev, WS_CLOSE_INVALID_DATA,
				    "invalid compressed data");
		if (r->len + out > r->max_msg)
			return fail(r, ev, WS_CLOSE_TOO_BIG,
				    "message too big once inflated");
		if (r->msg_op == WS_OP_TEXT && out > 0) {
			r->utf8 = utf8_validate(r->utf8, r->buf + r->len, out);
			if (r->utf8 == UTF8_REJECT)
				return fail(r, ev, WS_CLOSE_INVALID_DATA,
					    "invalid UTF-8 in text message");
		}
		r->len += out;
		/* in is NULL at the end of a message: no NULL + 0 (C UB). */
		if (used > 0) {
			in += used;
			n -= used;
		}
		if (rc != PMD_FULL)
			return 0;
	}
}

static int
data_piece(struct ws_reader *r, const uint8_t *p, size_t n, struct ws_event *ev)
{
	if (n == 0)
		return 0;
	if (r->msg_deflated)
		return inflate_piece(r, p, n, 0, ev);
	if (r->msg_op == WS_OP_TEXT) {
		r->utf8 = utf8_validate(r->utf8, p, n);
		if (r->utf8 == UTF8_REJECT)
			return fail(r, ev, WS_CLOSE_INVALID_DATA,
				    "invalid UTF-8 in text message");
	}
	if (reserve(r, r->len + n) < 0)
		return fail(r, ev, WS_CLOSE_INTERNAL, "out of memory");
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return 0;
}

static int
message_done(struct ws_reader *r, struct ws_event *ev)
{
	if (r->msg_deflated && inflate_piece(r, NULL, 0, 1, ev) != 0)
		return WS_EV_ERROR;
	if (r->msg_op == WS_OP_TEXT && r->utf8 != UTF8_ACCEPT)
		return fail(r, ev, WS_CLOSE_INVALID_DATA,
			    "truncated UTF-8 sequence at message end");
	ev->type = r->msg_op == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY;
	/* Never a NULL pointer, even for an empty message. */
	ev->data = r->buf ? r->buf : r->ctrl;
	ev->len = r->len;
	r->handed = 1;
	r->msg_op = 0;
	r->msg_deflated = 0;
	r->msg_wire = 0;
	r->utf8 = UTF8_ACCEPT;
	return ev->type;
}

static int
control_done(struct ws_reader *r, struct ws_event *ev)
{
	size_t n = (size_t)r->f.len;
	unsigned code;

	ev->data = r->ctrl;
	ev->len = n;
	switch (r->f.opcode) {
	case WS_OP_PING:
		ev->type = WS_EV_PING;
		break;
	case WS_OP_PONG:
		ev->type = WS_EV_PONG;
		break;
	default: /* WS_OP_CLOSE */
		if (n == 1)
			return fail(r, ev, WS_CLOSE_PROTOCOL,
				    "close payload of 1 byte");
		if (n == 0) {
			code = WS_CLOSE_NO_STATUS;
		} else {
			code = (unsigned)r->ctrl[0] << 8 | r->ctrl[1];
			if (!ws_close_code_valid(code))
				return fail(r, ev, WS_CLOSE_PROTOCOL,
					    "invalid close code");
			if (!utf8_valid(r->ctrl + 2, n - 2))
				return fail(r, ev, WS_CLOSE_INVALID_DATA,
					    "invalid UTF-8 in close reason");
			ev->data = r->ctrl + 2;
			ev->len = n - 2;
		}
		/* Nothing follows a close; drop any half message now. */
		msg_abandon(r);
		r->state = RS_CLOSED;
		ev->type = WS_EV_CLOSE;
		ev->code = code;
		break;
	}
	return ev->type;
}

static int
feed(struct ws_reader *r, uint8_t *buf, size_t len, size_t *posp,
     struct ws_event *ev)
{
	unsigned flags =
	    (r->pmd ? WS_PARSE_RSV1 : 0) | (r->client ? WS_PARSE_CLIENT : 0);
	size_t pos = *posp;
	int rc = WS_EV_NEED_MORE;

	for (;;) {
		if (r->state == RS_HEADER) {
			size_t take;
			const char *why = NULL;
			int h;

			if (pos == len)
				break;
			take = WS_HEADER_MAX - r->hdr_len;
			if (take > len - pos)
				take = len - pos;
			memcpy(r->hdr + r->hdr_len, buf + pos, take);
			h = frame_parse(r->hdr, r->hdr_len + take, flags, &r->f,
					&why);
			if (h < 0) {
				rc = fail(r, ev, (unsigned)-h, why);
				break;
			}
			if (h == 0) {
				/* Incomplete: we took all there was. */
				r->hdr_len = (uint8_t)(r->hdr_len + take);
				pos += take;
				break;
			}
			pos += (size_t)h - r->hdr_len;
			r->hdr_len = 0;
			if (frame_begin(r, ev) != 0) {
				rc = WS_EV_ERROR;
				break;
			}
			r->state = RS_PAYLOAD;
			r->frame_pos = 0;
			/*
			 * A whole unfragmented, uncompressed message in buf:
			 * hand it over where it lies.
			 */
			if (!WS_OP_IS_CONTROL(r->f.opcode) &&
			    r->f.opcode != WS_OP_CONT && r->f.fin &&
			    !r->f.rsv1 && r->f.len <= len - pos) {
				uint8_t *p = buf + pos;
				size_t n = (size_t)r->f.len;

				ws_unmask(p, n, r->f.mask, 0);
				if (r->f.opcode == WS_OP_TEXT &&
				    !utf8_valid(p, n)) {
					rc = fail(r, ev, WS_CLOSE_INVALID_DATA,
						  "invalid UTF-8 in text "
						  "message");
					break;
				}
				pos += n;
				r->state = RS_HEADER;
				r->msg_op = 0;
				r->msg_wire = 0;
				ev->type = r->f.opcode == WS_OP_TEXT
					       ? WS_EV_TEXT
					       : WS_EV_BINARY;
				ev->data = p;
				ev->len = n;
				rc = ev->type;
				break;
			}
		}
		/* RS_PAYLOAD */
		{
			uint64_t left = r->f.len - r->frame_pos;
			size_t n = left < len - pos ? (size_t)left : len - pos;
			uint8_t *p = buf + pos;

			if (r->f.masked)
				ws_unmask(p, n, r->f.mask, r->frame_pos);
			if (WS_OP_IS_CONTROL(r->f.opcode)) {
				if (n > 0)
					memcpy(r->ctrl + r->frame_pos, p, n);
			} else if (data_piece(r, p, n, ev) != 0) {
				rc = WS_EV_ERROR;
				break;
			}
			r->frame_pos += n;
			pos += n;
			if (r->frame_pos < r->f.len)
				break; /* all of buf consumed */
			r->state = RS_HEADER;
			if (WS_OP_IS_CONTROL(r->f.opcode)) {
				rc = control_done(r, ev);
				break;
			}
			if (r->f.fin) {
				rc = message_done(r, ev);
				break;
			}
		}
	}
	*posp = pos;
	return rc;
}

void
ws_reader_set_client(struct ws_reader *r)
{
	r->client = 1;
}

int
ws_reader_feed(struct ws_reader *r, uint8_t *buf, size_t len, size_t *consumed,
	       struct ws_event *ev)
{
	size_t pos = 0;
	int rc;

	memset(ev, 0, sizeof(*ev));
	*consumed = 0;
	ws_reader_release(r);
	if (r->state == RS_FAILED) {
		ev->type = WS_EV_ERROR;
		ev->code = r->err_code;
		ev->err = r->err;
		return WS_EV_ERROR;
	}
	if (r->state == RS_CLOSED) {
		*consumed = len;
		return WS_EV_NEED_MORE;
	}
	rc = feed(r, buf, len, &pos, ev);
	*consumed = pos;
	ev->type = (enum ws_event_type)rc;
	return rc;
}
