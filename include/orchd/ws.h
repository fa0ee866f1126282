/*
 * ws: the WebSocket protocol (RFC 6455) without I/O.
 *
 * Handshake helpers, the frame header codec, payload unmasking, close
 * payloads, and struct ws_reader: the state machine a connection feeds the
 * bytes it reads and that hands back whole, validated messages and control
 * frames one event at a time.  Nothing here touches a socket or a loop; the
 * reader allocates only its reassembly buffer, bounded by its limits.
 */
#ifndef ORCHD_WS_H
#define ORCHD_WS_H

#include <stddef.h>
#include <stdint.h>

struct pmd_ctx;

/* Opcodes (RFC 6455 5.2). */
#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xa
#define WS_OP_IS_CONTROL(op) (((op)&0x8) != 0)

/* Close codes (RFC 6455 7.4.1) and orchd's own (PROTOCOL.md section 5). */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_NO_STATUS 1005 /* never on the wire: empty close payload */
#define WS_CLOSE_ABNORMAL 1006  /* never on the wire: no close at all */
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_EXTENSION 1010
#define WS_CLOSE_INTERNAL 1011

/* ---- handshake ---------------------------------------------------------- */

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/*
 * Is key[0..len) a valid Sec-WebSocket-Key, the base64 of exactly 16 bytes
 * (24 characters ending in "==")?  1 yes, 0 no.  The unused low bits of the
 * last character are not required to be zero: no client relies on that and
 * being strict there only breaks interoperability.
 */
int ws_key_valid(const char *key, size_t len);

/*
 * Sec-WebSocket-Accept for key: base64(SHA-1(key ++ GUID)), written to out as
 * WS_ACCEPT_LEN characters and a NUL.  Returns 0, or -1 if key is longer than
 * 64 bytes or the digest fails.
 */
int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

/* ---- frames ------------------------------------------------------------- */

#define WS_HEADER_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_CONTROL_MAX 125

/* ws_frame_parse() flags */
#define WS_PARSE_RSV1 0x1   /* permessage-deflate negotiated */
#define WS_PARSE_CLIENT 0x2 /* we are the client: frames must be unmasked */

struct ws_frame {
	uint64_t len; /* payload length */
	uint8_t opcode;
	uint8_t fin;
	uint8_t rsv1; /* "compressed" on a first data frame */
	uint8_t masked;
	uint8_t mask[4];
	uint8_t hlen; /* header length: 2..14 */
};

/*
 * Parse a frame header from buf[0..len).  Returns the header length (> 0)
 * when complete, 0 when more bytes are needed, or -close_code (-1002) when
 * the header breaks a rule; an error is reported as soon as the byte that
 * shows it is present, even if the header is incomplete.  Rules (server
 * side): the frame must be masked; RSV2 and RSV3 must be clear; RSV1 only
 * with WS_PARSE_RSV1 and only on a text or binary frame (the first frame of
 * a message; continuation and control frames never carry it); reserved
 * opcodes are refused; a control frame must have FIN and at most 125 bytes;
 * a 64-bit length must have its top bit clear.  Non-minimal length
 * encodings are accepted (RFC 6455 does not forbid receiving them), control
 * frames included: their limit applies to the decoded length.
 */
int ws_frame_parse(const uint8_t *buf, size_t len, unsigned flags,
		   struct ws_frame *f);

/* ws_frame_header_encode() flags */
#define WS_FRAME_FIN 0x80
#define WS_FRAME_RSV1 0x40

/* Header length for a payload of len bytes (2, 4 or 10, plus 4 if masked). */
size_t ws_frame_header_size(uint64_t len, int masked);

/*
 * Write a frame header to out (room for WS_HEADER_MAX bytes) with the
 * minimal length encoding; mask NULL for a server frame, else the 4-byte key
 * to put in the header (the payload must be masked separately with
 * ws_unmask(), which is its own inverse).  Returns the header length.
 */
size_t ws_frame_header_encode(uint8_t *out, unsigned opcode, unsigned flags,
			      uint64_t len, const uint8_t *mask);

/*
 * Header and payload in one go, masked when mask is not NULL (test clients,
 * a future client).  Returns the frame length, or 0 if cap is too small.
 */
size_t ws_frame_encode(uint8_t *out, size_t cap, unsigned opcode,
		       unsigned flags, const uint8_t *payload, size_t len,
		       const uint8_t *mask);

/*
 * XOR buf[0..len) with the masking key in place.  offset is the position of
 * buf[0] within the frame's payload, so a payload can be unmasked piece by
 * piece as it arrives.  Works 8 bytes at a time.
 */
void ws_unmask(uint8_t *buf, size_t len, const uint8_t mask[4],
	       uint64_t offset);

/* ---- close -------------------------------------------------------------- */

/*
 * May code appear in a close frame on the wire?  1000-1003, 1007-1014
 * (1012-1014 are IANA-registered: service restart, try again later, bad
 * gateway) and 3000-4999.  1004-1006, 1015 and everything else are not.
 */
int ws_close_code_valid(unsigned code);

/*
 * Close payload for code and reason into out (room for WS_CONTROL_MAX).
 * code 0 or WS_CLOSE_NO_STATUS gives an empty payload (the reply to an empty
 * close).  The reason (may be NULL) is cut to 123 bytes on a UTF-8
 * character boundary.  Returns the payload length.
 */
size_t ws_close_payload(uint8_t *out, unsigned code, const char *reason);

#define WS_CLOSE_FRAME_MAX (2 + WS_CONTROL_MAX)
/* A whole unmasked close frame (header + ws_close_payload()); its length. */
size_t ws_close_frame(uint8_t *out, unsigned code, const char *reason);

/* ---- message reader ----------------------------------------------------- */

/* Default and ceiling of ws_reader_limits.max_message_size. */
#define WS_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define WS_MAX_MESSAGE_CEILING (1024 * 1024 * 1024)

struct ws_reader_limits {
	/*
	 * Largest message payload, after reassembly and inflation; 0 means
	 * WS_DEFAULT_MAX_MESSAGE, values above WS_MAX_MESSAGE_CEILING are
	 * cut to it.  Enforced early, before the bytes are buffered:
	 *   - uncompressed: as soon as a frame header announces a length
	 *     that would take the message past the limit -> 1009;
	 *   - compressed: the inflater is given room for at most one byte
	 *     more than the limit, so a zip bomb costs at most limit + 1
	 *     bytes of buffer and the inflate work to fill it -> 1009.
	 *     The compressed bytes on the wire are bounded too, by
	 *     limit + limit / 4 + 1024 (room for deflate's worst case
	 *     expansion), so a message cannot stream forever -> 1009.
	 * Control frames are limited to 125 bytes by the protocol (-> 1002).
	 */
	size_t max_message_size;
	/* Binary data messages are refused with 1003 at their first header. */
	int reject_binary;
};

enum ws_event_type {
	WS_EV_NEED_MORE = 0, /* everything given was consumed; read more */
	WS_EV_TEXT,          /* data/len: a whole text message, valid UTF-8 */
	WS_EV_BINARY,        /* data/len: a whole binary message */
	WS_EV_PING,          /* data/len: payload to echo in a pong */
	WS_EV_PONG,          /* data/len: payload */
	WS_EV_CLOSE,         /* code (1005 if none), data/len: reason (UTF-8) */
	WS_EV_ERROR,         /* code: close code to send; err: why (for logs) */
};

struct ws_event {
	enum ws_event_type type;
	unsigned code;
	const uint8_t *data;
	size_t len;
	const char *err; /* static string, WS_EV_ERROR only */
};

/* Opaque to callers; embedded so a connection needs no extra allocation. */
struct ws_reader {
	struct pmd_ctx *pmd; /* borrowed, NULL without permessage-deflate */
	size_t max_msg;
	uint64_t max_wire; /* compressed bytes bound */
	int reject_binary;
	int client;
	int state;
	unsigned err_code;
	const char *err;
	/* current frame */
	struct ws_frame f;
	uint64_t frame_pos; /* payload bytes of f consumed */
	uint8_t hdr[WS_HEADER_MAX];
	uint8_t hdr_len; /* header bytes buffered in hdr */
	/* current data message */
	uint8_t msg_op; /* 0: none, else WS_OP_TEXT/BINARY */
	uint8_t msg_deflated;
	uint8_t handed; /* buf was handed to the caller in an event */
	uint32_t utf8;
	uint64_t msg_wire; /* payload bytes on the wire so far */
	uint8_t *buf;      /* reassembly / inflate output */
	size_t len, cap;
	/* control frame payload, unmasked */
	uint8_t ctrl[WS_CONTROL_MAX];
};

/*
 * pmd: the connection's permessage-deflate context when the extension was
 * negotiated (RSV1 is then allowed and compressed messages are inflated), or
 * NULL.  The reader borrows it; the caller frees it.  Does not allocate.
 */
void ws_reader_init(struct ws_reader *r, const struct ws_reader_limits *lim,
		    struct pmd_ctx *pmd);

/*
 * Make r a client's reader (orchctl listen): frames must then come unmasked
 * (WS_PARSE_CLIENT) and a masked one is an error (1002).  Call it after
 * ws_reader_init().
 */
void ws_reader_set_client(struct ws_reader *r);

/*
 * Feed the bytes read from the connection.  Consumes from buf[0..len),
 * unmasking the payload in place, and stops at the first event; *consumed
 * says how many bytes were taken (the rest must be fed again, with more
 * appended).  Call it in a loop until it returns WS_EV_NEED_MORE, which
 * means all of buf was consumed.  Returns ev->type.
 *
 * Ownership: ev->data points either into buf (an unfragmented, uncompressed
 * message that arrived whole: no copy), or into the reader's ctrl area or
 * reassembly buffer.  It stays valid until the next ws_reader_feed(),
 * ws_reader_release() or ws_reader_free() call, and only as long as the
 * caller leaves buf[0..*consumed) alone (do not compact or reuse the read
 * buffer before handling the event).  Copy whatever must outlive that.
 * Nothing in buf is referenced once WS_EV_NEED_MORE is returned: a partial
 * header is copied into the reader and a partial message into its buffer,
 * so the read buffer may be shared by every connection of a worker.
 *
 * Errors (WS_EV_ERROR, ev->code is the close code to send):
 *   1002: a header rule of ws_frame_parse(); a continuation frame with no
 *         message in progress; a text/binary frame while one is in
 *         progress; a close payload of 1 byte or an invalid close code.
 *   1003: a binary message when limits->reject_binary.
 *   1007: invalid UTF-8 in a text message (reported at the offending
 *         byte, even mid-fragment; a truncated character at message end)
 *         or in a close reason; corrupt compressed data.
 *   1009: see ws_reader_limits.max_message_size.
 *   1011: out of memory.
 * After an error the reader stays failed (each later call returns the same
 * error without consuming) and has freed its buffer.  After WS_EV_CLOSE the
 * reader ignores (consumes) everything: nothing may follow a close frame.
 * Control frames may arrive between the fragments of a message.
 */
int ws_reader_feed(struct ws_reader *r, uint8_t *buf, size_t len,
		   size_t *consumed, struct ws_event *ev);

/*
 * Free the buffer of the message last handed over.  Optional: the next
 * ws_reader_feed() does it too.  An idle reader (no message in progress,
 * nothing handed over) holds no heap memory.
 */
void ws_reader_release(struct ws_reader *r);

/*
 * Free everything the reader holds (not the pmd context).  Call it before
 * pmd_ctx_free(): a half-inflated message is abandoned through the context.
 * The reader may be initialised again afterwards.
 */
void ws_reader_free(struct ws_reader *r);

#endif
