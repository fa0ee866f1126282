/*
 * pmd: permessage-deflate (RFC 7692), server side.
 *
 * Negotiation turns a client's Sec-WebSocket-Extensions offers into the
 * parameters both ends will use plus the response header value.  A pmd_ctx
 * then compresses outgoing messages and inflates incoming ones for one
 * connection, using zlib raw deflate (negative windowBits).
 *
 * Memory, per connection (zlib 1.2.x figures, W = window bits, M = memLevel):
 *   - struct pmd_ctx itself: under 100 bytes, no allocation until used.
 *   - Inflate (client -> server): about 7 KiB of state plus a 2^W window,
 *     allocated at the first compressed message.  With
 *     client_no_context_takeover it is freed again at the end of every
 *     message, so an idle connection holds none; otherwise it lives as long
 *     as the connection (about 39 KiB at W = 15).
 *   - Deflate (server -> client): 2^(W+2) + 2^(M+9) bytes, 256 KiB at
 *     W = 15, M = 8.  With server_no_context_takeover the connection holds
 *     none: every message is compressed by one process-wide scratch stream
 *     that is reset after each use.  With context takeover the stream is the
 *     connection's own and lives as long as it.  That is why the default
 *     configuration requests server_no_context_takeover: it costs some ratio
 *     and lets one compressed event be shared by many connections.
 *
 * zlib refuses windowBits 8 for raw deflate.  When 8 is negotiated for the
 * server's window, the deflater runs with 9, as other implementations do.
 * That is safe: zlib never emits a distance larger than
 * 2^W - 262 (MAX_DIST), i.e. 250 bytes at W = 9, which fits the peer's
 * 256-byte window.  Inflate accepts 8 as is.
 *
 * Not thread-safe (the scratch deflater is process-wide); orchd's workers are
 * single-threaded.
 */
#ifndef ORCHD_PMD_H
#define ORCHD_PMD_H

#include <stddef.h>
#include <stdint.h>

#define PMD_MIN_WINDOW_BITS 8
#define PMD_MAX_WINDOW_BITS 15
/* Longest response value pmd_negotiate() can write, NUL included. */
#define PMD_RESPONSE_MAX 160

/* Server configuration; see pmd_config_default() for the defaults. */
struct pmd_config {
	int enabled; /* 0: never negotiate */
	/*
	 * Ask for server_no_context_takeover even when the client did not
	 * offer it (RFC 7692 7.1.1.1 allows it): no per-connection deflater
	 * and shareable compressed events.  Default 1.
	 */
	int server_no_context_takeover;
	/*
	 * Ask for client_no_context_takeover (always allowed, 7.1.1.2): the
	 * inflater is freed between messages.  Default 1.  Echoed anyway when
	 * the client offers it.
	 */
	int client_no_context_takeover;
	/*
	 * Our deflate window, 8..15, default 15.  Announced as
	 * server_max_window_bits when below 15; a client may ask for less.
	 */
	int server_max_window_bits;
	/*
	 * Window asked of clients that announced client_max_window_bits (never
	 * of others: 7.1.2.2 forbids it).  Smaller saves inflate memory.
	 * 8..15, default 15.
	 */
	int client_max_window_bits;
	int mem_level; /* deflateInit2 memLevel 1..9, default 8 */
	int level;     /* compression level 1..9, default 6 */
};

/* The parameters in force on one connection, after negotiation. */
struct pmd_params {
	int server_no_context_takeover;
	int client_no_context_takeover;
	int server_max_window_bits; /* 8..15, as negotiated (8 deflates as 9) */
	int client_max_window_bits; /* 8..15: client's window = our inflate's */
};

void pmd_config_default(struct pmd_config *cfg);

/*
 * Negotiate from one Sec-WebSocket-Extensions header value (value[0..len),
 * need not be NUL-terminated).  Offers are examined in order; the first
 * permessage-deflate offer whose parameters are all known, well-formed,
 * not duplicated and within range is accepted.  A malformed offer is
 * declined and the next one tried; other extensions are ignored.
 *
 * Returns 1 and fills *out and resp (NUL-terminated value for the response's
 * Sec-WebSocket-Extensions header) when an offer is accepted, 0 when none is
 * (or cfg->enabled is 0), -1 when resp_size is too small (PMD_RESPONSE_MAX
 * always suffices).  If the request has several Sec-WebSocket-Extensions
 * lines, call it on each in order until it returns 1: offers keep their
 * order across lines.
 */
int pmd_negotiate(const struct pmd_config *cfg, const char *value, size_t len,
		  struct pmd_params *out, char *resp, size_t resp_size);

struct z_stream_s;

/* Per-connection state.  Embed it; pmd_ctx_init() does not allocate. */
struct pmd_ctx {
	struct pmd_params params;
	int level, mem_level;
	struct z_stream_s *def; /* own deflater, context takeover only */
	struct z_stream_s *inf; /* inflater, NULL between uses */
	uint8_t trailer;        /* bytes of 00 00 ff ff fed this message */
	uint8_t inf_any;        /* any payload byte this message */
	uint8_t inf_end;        /* BFINAL block seen this message */
	uint8_t def_broken;     /* deflate failed mid-stream: unusable */
};

void pmd_ctx_init(struct pmd_ctx *p, const struct pmd_params *params,
		  const struct pmd_config *cfg);
/* Frees both streams; p may be re-initialised afterwards. */
void pmd_ctx_free(struct pmd_ctx *p);

/* pmd_inflate() results */
#define PMD_OK 0        /* input consumed; message not finished */
#define PMD_DONE 1      /* fin: message complete, all output given */
#define PMD_FULL 2      /* out is full: call again with more room */
#define PMD_EDATA (-1)  /* corrupt compressed data (close 1007) */
#define PMD_ENOMEM (-2) /* allocation failed (close 1011) */

/*
 * Inflate the next piece of a compressed message.  in[0..inlen) are payload
 * bytes as they arrive (already unmasked); fin = 1 says the message ends
 * after them (the 00 00 ff ff trailer is then appended internally).  At most
 * outcap bytes are written to out; *in_used and *out_len say how much was
 * taken and produced.  On PMD_FULL call again with the unused input and
 * fresh room (possibly no input at all: output may be pending).  The output
 * is bounded by outcap, so the caller bounds a message's inflated size
 * (zip bombs) by the room it offers.  After PMD_DONE the next call starts a
 * new message; after an error, call pmd_inflate_reset() or free.
 *
 * A message that does not end on a deflate block boundary is PMD_EDATA: a
 * sender always ends one there (sync flush or BFINAL), and carrying on would
 * desynchronise the next message.  An empty payload is an empty message.
 */
int pmd_inflate(struct pmd_ctx *p, const uint8_t *in, size_t inlen, int fin,
		uint8_t *out, size_t outcap, size_t *in_used, size_t *out_len);

/* Abandon the message being inflated and free the inflater. */
void pmd_inflate_reset(struct pmd_ctx *p);

/*
 * Compress one whole message for this connection, honouring context
 * takeover.  Returns a malloc'd buffer of headroom + *out_len bytes: the
 * first headroom bytes are left for the caller (room for the frame header,
 * so header and payload go out as one buffer), then the compressed payload
 * with the trailing 00 00 ff ff already stripped (RFC 7692 7.2.1).  Send it
 * with RSV1 set.  The caller frees it.  NULL on failure; with context
 * takeover the stream is then unusable (every later call fails too) and the
 * connection should be closed with 1011.
 */
uint8_t *pmd_deflate(struct pmd_ctx *p, const uint8_t *in, size_t len,
		     size_t headroom, size_t *out_len);

/*
 * Compress a message once, with no context, for every connection for which
 * pmd_can_share() says yes: the output depends only on the input and cfg's
 * window bits, level and memLevel.  Same buffer contract as pmd_deflate().
 */
uint8_t *pmd_deflate_shared(const struct pmd_config *cfg, const uint8_t *in,
			    size_t len, size_t headroom, size_t *out_len);

/*
 * Can this connection be sent pmd_deflate_shared(cfg, ...) output?  Yes when
 * it negotiated server_no_context_takeover and its window is not smaller than
 * cfg's (the client did not ask for less).
 */
int pmd_can_share(const struct pmd_params *params,
		  const struct pmd_config *cfg);

/* Free the process-wide scratch deflater (tests, leak checkers, exit). */
void pmd_cleanup(void);

#endif
