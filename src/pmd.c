/*
 * pmd: permessage-deflate (RFC 7692), server side.
 *
 * Negotiation follows RFC 7692 section 7.1 over the extension grammar of
 * RFC 6455 section 9.1 (token or quoted-string parameter values).
 * Compression is zlib raw deflate with a sync flush per message, the trailing
 * empty stored block stripped on send and appended on receive (7.2.1/7.2.2).
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ZLIB_CONST
#include <zlib.h>

#include "orchd/pmd.h"

static const uint8_t trailer[4] = {0x00, 0x00, 0xff, 0xff};

static int
clamp(int v, int lo, int hi, int dflt)
{
	if (v < lo || v > hi)
		return dflt;
	return v;
}

/* zlib's raw deflate has no 256-byte window: see pmd.h for why 9 is safe. */
static int
deflate_bits(int wbits)
{
	return wbits < 9 ? 9 : wbits;
}

void
pmd_config_default(struct pmd_config *cfg)
{
	cfg->enabled = 1;
	cfg->server_no_context_takeover = 1;
	cfg->client_no_context_takeover = 1;
	cfg->server_max_window_bits = PMD_MAX_WINDOW_BITS;
	cfg->client_max_window_bits = PMD_MAX_WINDOW_BITS;
	cfg->mem_level = 8;
	cfg->level = 6;
}

/* ---- negotiation -------------------------------------------------------- */

struct cursor {
	const char *s;
	size_t i, n;
};

/* RFC 9110 tchar */
static int
is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void
skip_ows(struct cursor *c)
{
	while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
		c->i++;
}

static size_t
take_token(struct cursor *c, const char **start)
{
	size_t b = c->i;

	while (c->i < c->n && is_tchar((unsigned char)c->s[c->i]))
		c->i++;
	*start = c->s + b;
	return c->i - b;
}

/*
 * A parameter value: token or quoted-string, unescaped into buf.  Returns
 * its length, or -1 on a syntax error (no value, unterminated quote).  A
 * value that cannot be valid (longer than cap, or a quoted value that is
 * not a token once unescaped, which 6455 9.1 requires) gives cap + 1, so the
 * caller declines the offer; the cursor is then past the closing quote, so
 * a comma inside the quotes is not mistaken for the end of the offer.
 */
static int
take_value(struct cursor *c, char *buf, size_t cap)
{
	size_t len = 0, tl;
	const char *t;
	int bad = 0;

	if (c->i < c->n && c->s[c->i] == '"') {
		c->i++;
		while (c->i < c->n && c->s[c->i] != '"') {
			unsigned char ch = (unsigned char)c->s[c->i];

			if (ch == '\\') {
				if (++c->i == c->n)
					break;
				ch = (unsigned char)c->s[c->i];
			}
			if (!is_tchar(ch))
				bad = 1;
			if (len < cap)
				buf[len] = (char)ch;
			len++;
			c->i++;
		}
		if (c->i >= c->n)
			return -1; /* unterminated */
		c->i++;
		if (bad || len == 0 || len > cap)
			return (int)cap + 1;
		return (int)len;
	}
	tl = take_token(c, &t);
	if (tl == 0)
		return -1;
	memcpy(buf, t, tl < cap ? tl : cap);
	return tl > cap ? (int)cap + 1 : (int)tl;
}

/* Skip to the next top-level comma (or the end), stepping over quotes. */
static void
skip_element(struct cursor *c)
{
	int inq = 0;

	for (; c->i < c->n; c->i++) {
		char ch = c->s[c->i];

		if (inq && ch == '\\' && c->i + 1 < c->n)
			c->i++;
		else if (ch == '"')
			inq = !inq;
		else if (!inq && ch == ',')
			return;
	}
}

static int
name_is(const char *p, size_t len, const char *name)
{
	return strlen(name) == len && strncasecmp(p, name, len) == 0;
}

/* "8".."15" in decimal, no sign or leading zero (7.1.2.1). */
static int
window_bits_value(const char *v, int len)
{
	if (len == 1 && (v[0] == '8' || v[0] == '9'))
		return v[0] - '0';
	if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
		return 10 + v[1] - '0';
	return -1;
}

struct offer {
	int ok;
	int snct, cnct;
	int smwb; /* -1 absent, else 8..15 */
	int cmwb; /* -1 absent, 0 present without value, else 8..15 */
};

static void
offer_param(struct offer *o, const char *name, size_t nlen, const char *val,
	    int vlen)
{
	int has = vlen >= 0, bits = has ? window_bits_value(val, vlen) : -1;

	if (name_is(name, nlen, "server_no_context_takeover")) {
		if (o->snct || has)
			o->ok = 0;
		o->snct = 1;
	} else if (name_is(name, nlen, "client_no_context_takeover")) {
		if (o->cnct || has)
			o->ok = 0;
		o->cnct = 1;
	} else if (name_is(name, nlen, "server_max_window_bits")) {
		/* The offer must carry a value here (7.1.2.1). */
		if (o->smwb >= 0 || bits < 0)
			o->ok = 0;
		o->smwb = bits < 0 ? 15 : bits;
	} else if (name_is(name, nlen, "client_max_window_bits")) {
		if (o->cmwb >= 0 || (has && bits < 0))
			o->ok = 0;
		o->cmwb = has ? (bits < 0 ? 15 : bits) : 0;
	} else {
		o->ok = 0; /* unknown parameter: decline (7.1) */
	}
}

/* Turn an acceptable offer into parameters and the response value. */
static int
accept_offer(const struct pmd_config *cfg, const struct offer *o,
	     struct pmd_params *out, char *resp, size_t resp_size)
{
	int sbits = clamp(cfg->server_max_window_bits, PMD_MIN_WINDOW_BITS,
			  PMD_MAX_WINDOW_BITS, PMD_MAX_WINDOW_BITS);
	int cbits = clamp(cfg->client_max_window_bits, PMD_MIN_WINDOW_BITS,
			  PMD_MAX_WINDOW_BITS, PMD_MAX_WINDOW_BITS);
	int n, send_sbits, send_cbits;

	out->server_no_context_takeover =
	    o->snct || cfg->server_no_context_takeover;
	out->client_no_context_takeover =
	    o->cnct || cfg->client_no_context_takeover;
	/* The client's limit on our window binds us; we may go lower. */
	if (o->smwb >= 0 && o->smwb < sbits)
		sbits = o->smwb;
	send_sbits = o->smwb >= 0 || sbits < PMD_MAX_WINDOW_BITS;
	/*
	 * Only a client that announced client_max_window_bits can be told a
	 * window; one that gave a value will not exceed it even if we are
	 * silent, and we state it so both sides agree explicitly.
	 */
	if (o->cmwb < 0) {
		cbits = PMD_MAX_WINDOW_BITS;
		send_cbits = 0;
	} else {
		if (o->cmwb > 0 && o->cmwb < cbits)
			cbits = o->cmwb;
		send_cbits = o->cmwb > 0 || cbits < PMD_MAX_WINDOW_BITS;
	}
	out->server_max_window_bits = sbits;
	out->client_max_window_bits = cbits;

	n = snprintf(resp, resp_size, "permessage-deflate%s%s",
		     out->server_no_context_takeover ?
			     "; server_no_context_takeover" : "",
		     out->client_no_context_takeover ?
			     "; client_no_context_takeover" : "");
	if (n >= 0 && (size_t)n < resp_size && send_sbits)
		n += snprintf(resp + n, resp_size - (size_t)n,
			      "; server_max_window_bits=%d", sbits);
	if (n >= 0 && (size_t)n < resp_size && send_cbits)
		n += snprintf(resp + n, resp_size - (size_t)n,
			      "; client_max_window_bits=%d", cbits);
	if (n < 0 || (size_t)n >= resp_size)
		return -1;
	return 1;
}

int
pmd_negotiate(const struct pmd_config *cfg, const char *value, size_t len,
	      struct pmd_params *out, char *resp, size_t resp_size)
{
	struct cursor c = {value, 0, len};

	if (!cfg->enabled)
		return 0;
	for (;;) {
		struct offer o = {1, 0, 0, -1, -1};
		const char *name;
		size_t nlen;
		int is_pmd, syntax_ok = 1;

		skip_ows(&c);
		if (c.i == c.n)
			break;
		if (c.s[c.i] == ',') { /* empty list element */
			c.i++;
			continue;
		}
		nlen = take_token(&c, &name);
		is_pmd = nlen > 0 && name_is(name, nlen, "permessage-deflate");
		if (nlen == 0)
			syntax_ok = 0;
		while (syntax_ok) {
			const char *pname;
			size_t plen;
			char val[4];
			int vlen = -1;

			skip_ows(&c);
			if (c.i == c.n || c.s[c.i] == ',')
				break;
			if (c.s[c.i] != ';') {
				syntax_ok = 0;
				break;
			}
			c.i++;
			skip_ows(&c);
			plen = take_token(&c, &pname);
			if (plen == 0) {
				syntax_ok = 0;
				break;
			}
			skip_ows(&c);
			if (c.i < c.n && c.s[c.i] == '=') {
				c.i++;
				skip_ows(&c);
				vlen = take_value(&c, val, sizeof(val) - 1);
				if (vlen < 0) {
					syntax_ok = 0;
					break;
				}
			}
			if (is_pmd)
				offer_param(&o, pname, plen, val, vlen);
		}
		if (!syntax_ok) {
			skip_element(&c);
			continue;
		}
		if (is_pmd && o.ok)
			return accept_offer(cfg, &o, out, resp, resp_size);
	}
	return 0;
}

/* ---- per-connection context -------------------------------------------- */

void
pmd_ctx_init(struct pmd_ctx *p, const struct pmd_params *params,
	     const struct pmd_config *cfg)
{
	memset(p, 0, sizeof(*p));
	p->params = *params;
	p->params.server_max_window_bits =
	    clamp(params->server_max_window_bits, PMD_MIN_WINDOW_BITS,
		  PMD_MAX_WINDOW_BITS, PMD_MAX_WINDOW_BITS);
	p->params.client_max_window_bits =
	    clamp(params->client_max_window_bits, PMD_MIN_WINDOW_BITS,
		  PMD_MAX_WINDOW_BITS, PMD_MAX_WINDOW_BITS);
	p->level = clamp(cfg->level, 1, 9, 6);
	p->mem_level = clamp(cfg->mem_level, 1, MAX_MEM_LEVEL, 8);
}

static void
inflater_free(struct pmd_ctx *p)
{
	if (p->inf) {
		inflateEnd(p->inf);
		free(p->inf);
		p->inf = NULL;
	}
	p->trailer = 0;
	p->inf_any = 0;
	p->inf_end = 0;
}

static void
deflater_free(struct pmd_ctx *p)
{
	if (p->def) {
		deflateEnd(p->def);
		free(p->def);
		p->def = NULL;
	}
}

void
pmd_ctx_free(struct pmd_ctx *p)
{
	inflater_free(p);
	deflater_free(p);
}

void
pmd_inflate_reset(struct pmd_ctx *p)
{
	inflater_free(p);
}

/* ---- inflate ------------------------------------------------------------ */

static uInt
clamp_uint(size_t n)
{
	return n > UINT_MAX ? UINT_MAX : (uInt)n;
}

/* End of a message: drop or reset the stream as the parameters say. */
static void
inflate_message_done(struct pmd_ctx *p)
{
	if (p->inf && p->params.client_no_context_takeover) {
		inflater_free(p);
		return;
	}
	/* After a BFINAL block the sender starts a new stream. */
	if (p->inf && p->inf_end)
		inflateReset(p->inf);
	p->trailer = 0;
	p->inf_any = 0;
	p->inf_end = 0;
}

int
pmd_inflate(struct pmd_ctx *p, const uint8_t *in, size_t inlen, int fin,
	    uint8_t *out, size_t outcap, size_t *in_used, size_t *out_len)
{
	z_stream *zs;
	size_t used = 0;
	int rc;

	*in_used = 0;
	*out_len = 0;
	if (inlen > 0)
		p->inf_any = 1;
	if (fin && !p->inf_any) {
		/* Empty payload: an empty message, leave the stream alone. */
		inflate_message_done(p);
		return PMD_DONE;
	}
	if (!p->inf) {
		if (inlen == 0 && !fin)
			return PMD_OK;
		zs = calloc(1, sizeof(*zs));
		if (zs == NULL)
			return PMD_ENOMEM;
		if (inflateInit2(zs, -p->params.client_max_window_bits) !=
		    Z_OK) {
			free(zs);
			return PMD_ENOMEM;
		}
		p->inf = zs;
	}
	zs = p->inf;
	zs->next_out = out;
	zs->avail_out = clamp_uint(outcap);
	for (;;) {
		const uint8_t *src = NULL;
		size_t n = 0, took;
		int is_trailer = 0;

		if (used < inlen) {
			if (p->inf_end)
				goto edata; /* data after the final block */
			src = in + used;
			n = inlen - used;
		} else if (fin && p->trailer < sizeof(trailer) && !p->inf_end) {
			src = trailer + p->trailer;
			n = sizeof(trailer) - p->trailer;
			is_trailer = 1;
		}
		if (p->inf_end && n == 0) {
			/* Stream ended: nothing further can be produced. */
			break;
		}
		zs->next_in = src;
		zs->avail_in = clamp_uint(n);
		rc = inflate(zs, Z_SYNC_FLUSH);
		took = clamp_uint(n) - zs->avail_in;
		if (is_trailer)
			p->trailer += (uint8_t)took;
		else
			used += took;
		if (rc == Z_STREAM_END) {
			p->inf_end = 1;
			continue;
		}
		if (rc == Z_MEM_ERROR)
			goto enomem;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			goto edata;
		if (zs->avail_out == 0)
			goto full;
		/* Room left, yet input refused: cannot happen, never spin. */
		if (took == 0 && n > 0)
			goto edata;
		/* Room left: zlib has taken all it could of src. */
		if (used < inlen)
			continue; /* only when n was clamped */
		if (fin && p->trailer < sizeof(trailer))
			continue;
		break;
	}
	*in_used = used;
	*out_len = (size_t)(zs->next_out - out);
	if (!fin)
		return PMD_OK;
	/*
	 * The message must end between blocks (data_type bit 7 after the
	 * appended empty stored block); otherwise its tail is a partial block
	 * and the next message would be decoded from the middle of it.
	 */
	if (!p->inf_end && !(zs->data_type & 128))
		return PMD_EDATA;
	inflate_message_done(p);
	return PMD_DONE;

full:
	*in_used = used;
	*out_len = (size_t)(zs->next_out - out);
	return PMD_FULL;
edata:
	*in_used = used;
	*out_len = (size_t)(zs->next_out - out);
	return PMD_EDATA;
enomem:
	*in_used = used;
	*out_len = (size_t)(zs->next_out - out);
	return PMD_ENOMEM;
}

/* ---- deflate ------------------------------------------------------------ */

/*
 * One process-wide deflater for every compression without context takeover,
 * reset after each message, so connections need none of their own.
 */
static struct {
	z_stream zs;
	int ready;
	int wbits, level, mem_level;
} scratch;

static z_stream *
scratch_get(int wbits, int level, int mem_level)
{
	if (scratch.ready &&
	    (scratch.wbits != wbits || scratch.level != level ||
	     scratch.mem_level != mem_level)) {
		deflateEnd(&scratch.zs);
		scratch.ready = 0;
	}
	if (!scratch.ready) {
		memset(&scratch.zs, 0, sizeof(scratch.zs));
		if (deflateInit2(&scratch.zs, level, Z_DEFLATED, -wbits,
				 mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
			return NULL;
		scratch.ready = 1;
		scratch.wbits = wbits;
		scratch.level = level;
		scratch.mem_level = mem_level;
	}
	return &scratch.zs;
}

void
pmd_cleanup(void)
{
	if (scratch.ready) {
		deflateEnd(&scratch.zs);
		scratch.ready = 0;
	}
}

/*
 * Compress in[0..len) with a sync flush into a fresh buffer (headroom bytes
 * reserved in front) and strip the 00 00 ff ff the flush ends with.
 */
static uint8_t *
deflate_msg(z_stream *zs, const uint8_t *in, size_t len, size_t headroom,
	    size_t *out_len)
{
	uint8_t *buf, *nb;
	size_t cap, off, produced;
	int rc;

	*out_len = 0;
	if (headroom > SIZE_MAX / 4 || len > SIZE_MAX / 4)
		return NULL;
	if (len == 0) {
		/*
		 * 7.2.3.6: an empty message is the single byte 00 (an empty
		 * stored block, its 00 00 ff ff stripped).  Our stream is
		 * byte-aligned after the previous flush, so this is valid
		 * with context takeover as well, and zlib, which refuses a
		 * second flush with no new input, is not involved.
		 */
		buf = malloc(headroom + 1);
		if (buf == NULL)
			return NULL;
		buf[headroom] = 0x00;
		*out_len = 1;
		return buf;
	}
	cap = headroom + deflateBound(zs, len) + 16;
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	zs->next_out = buf + headroom;
	zs->avail_out = clamp_uint(cap - headroom);
	while (len > 0) {
		uInt chunk = clamp_uint(len);
		int flush = chunk == len ? Z_SYNC_FLUSH : Z_NO_FLUSH;

		zs->next_in = in;
		zs->avail_in = chunk;
		for (;;) {
			off = (size_t)(zs->next_out - buf);
			if (off == cap) {
				nb = realloc(buf, cap * 2);
				if (nb == NULL)
					goto fail;
				buf = nb;
				cap *= 2;
			}
			zs->next_out = buf + off;
			zs->avail_out = clamp_uint(cap - off);
			rc = deflate(zs, flush);
			if (rc != Z_OK && rc != Z_BUF_ERROR)
				goto fail;
			if (zs->avail_in == 0 &&
			    (flush == Z_NO_FLUSH || zs->avail_out != 0))
				break;
		}
		in += chunk;
		len -= chunk;
	}
	produced = (size_t)(zs->next_out - buf) - headroom;
	if (produced < sizeof(trailer) ||
	    memcmp(buf + headroom + produced - sizeof(trailer), trailer,
		   sizeof(trailer)) != 0)
		goto fail;
	*out_len = produced - sizeof(trailer);
	return buf;
fail:
	free(buf);
	return NULL;
}

uint8_t *
pmd_deflate(struct pmd_ctx *p, const uint8_t *in, size_t len, size_t headroom,
	    size_t *out_len)
{
	int wbits = deflate_bits(p->params.server_max_window_bits);
	uint8_t *out;
	z_stream *zs;

	*out_len = 0;
	if (p->params.server_no_context_takeover) {
		zs = scratch_get(wbits, p->level, p->mem_level);
		if (zs == NULL)
			return NULL;
		out = deflate_msg(zs, in, len, headroom, out_len);
		deflateReset(zs);
		return out;
	}
	if (p->def_broken)
		return NULL;
	if (p->def == NULL) {
		zs = calloc(1, sizeof(*zs));
		if (zs == NULL)
			return NULL;
		if (deflateInit2(zs, p->level, Z_DEFLATED, -wbits, p->mem_level,
				 Z_DEFAULT_STRATEGY) != Z_OK) {
			free(zs);
			return NULL;
		}
		p->def = zs;
	}
	out = deflate_msg(p->def, in, len, headroom, out_len);
	if (out == NULL && len > 0) {
		/* The peer's window no longer matches ours. */
		p->def_broken = 1;
		deflater_free(p);
	}
	return out;
}

uint8_t *
pmd_deflate_shared(const struct pmd_config *cfg, const uint8_t *in, size_t len,
		   size_t headroom, size_t *out_len)
{
	int wbits = deflate_bits(clamp(cfg->server_max_window_bits,
				       PMD_MIN_WINDOW_BITS, PMD_MAX_WINDOW_BITS,
				       PMD_MAX_WINDOW_BITS));
	uint8_t *out;
	z_stream *zs;

	*out_len = 0;
	zs = scratch_get(wbits, clamp(cfg->level, 1, 9, 6),
			 clamp(cfg->mem_level, 1, MAX_MEM_LEVEL, 8));
	if (zs == NULL)
		return NULL;
	out = deflate_msg(zs, in, len, headroom, out_len);
	deflateReset(zs);
	return out;
}

int
pmd_can_share(const struct pmd_params *params, const struct pmd_config *cfg)
{
	int shared = deflate_bits(clamp(cfg->server_max_window_bits,
					PMD_MIN_WINDOW_BITS,
					PMD_MAX_WINDOW_BITS,
					PMD_MAX_WINDOW_BITS));

	return params->server_no_context_takeover &&
	       deflate_bits(params->server_max_window_bits) >= shared;
}
