/*
 * Unit tests for the relay -> worker pipe protocol.
 *
 * The codec tests build frames by hand from the layout documented in
 * ipc.h (build_event_payload(), build_frame()), independently of the
 * encoder, so a bug shared by encoder and decoder still shows.  Every
 * buffer handed to a parser or decoder is malloc()ed to its exact size, so
 * that ASan catches any read past the frame.  The queue and reader tests
 * use real non-blocking pipes, as the relay and the workers do.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "orchd/ipc.h"

/*
 * Check records every passing ck_assert (a message to the runner), which
 * dominates loops of many thousand checks: those use REQUIRE, which costs
 * nothing until it fails.
 */
#define REQUIRE(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond))                                                   \
			ck_abort_msg(__VA_ARGS__);                             \
	} while (0)

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

/* xorshift64*: reproducible across libcs, unlike rand(). */
static uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t
rnd_range(size_t lo, size_t hi)
{
	return lo + (size_t)(rnd() % (hi - lo + 1));
}

/* A length in [lo, hi], with the bounds themselves drawn often. */
static size_t
pick_len(size_t lo, size_t hi)
{
	switch (rnd() % 4) {
	case 0:
		return lo;
	case 1:
		return hi;
	default:
		return rnd_range(lo, hi);
	}
}

/* Random bytes without NUL (everything else, high bytes included). */
static void
fill(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		s[i] = (char)rnd_range(1, 255);
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A frame per the documented header layout, with every field chosen. */
static uint8_t *
build_frame(uint16_t type, uint16_t flags, uint32_t reserved, uint32_t len,
	    const void *payload, size_t payload_len, size_t *out_len)
{
	uint8_t *f = malloc(IPC_HDR_LEN + payload_len);

	ck_assert_ptr_nonnull(f);
	memcpy(f, "OE\x01\x00", 4);
	put_le(f + 4, type, 2);
	put_le(f + 6, flags, 2);
	put_le(f + 8, len, 4);
	put_le(f + 12, reserved, 4);
	if (payload_len > 0)
		memcpy(f + IPC_HDR_LEN, payload, payload_len);
	*out_len = IPC_HDR_LEN + payload_len;
	return f;
}

/* An IPC_EVENT payload per the documented layout, without any checks. */
static size_t
build_event_payload(uint8_t *p, const struct ipc_event *ev)
{
	const char *s[7] = {ev->event_id, ev->event_type,   ev->orchestrator,
			    ev->daemon,   ev->organization, ev->channel,
			    ev->message};
	size_t l[7] = {ev->event_id_len,     ev->event_type_len,
		       ev->orchestrator_len, ev->daemon_len,
		       ev->organization_len, ev->channel_len,
		       ev->message_len};
	size_t off = 40;

	put_le(p, ev->seq, 8);
	put_le(p + 8, ev->published_ms, 8);
	put_le(p + 16, (uint32_t)ev->priority, 4);
	p[20] = ev->requires_ack;
	p[21] = ev->target;
	for (int i = 0; i < 6; i++)
		put_le(p + 22 + 2 * i, l[i], 2);
	put_le(p + 34, l[6], 4);
	put_le(p + 38, 0, 2);
	for (int i = 0; i < 7; i++) {
		if (l[i] > 0)
			memcpy(p + off, s[i], l[i]);
		off += l[i];
	}
	return off;
}

/* Storage behind a random event. */
struct ev_store {
	char id[IPC_EVENT_ID_MAX], type[IPC_EVENT_TYPE_MAX];
	char orch[IPC_EVENT_NAME_MAX], daemon[IPC_EVENT_NAME_MAX];
	char org[IPC_EVENT_NAME_MAX], chan[IPC_EVENT_CHANNEL_MAX];
	char *msg;
};

/* A random valid event; an empty string is NULL half of the time. */
static void
random_event(struct ipc_event *ev, struct ev_store *st, size_t msg_max)
{
	size_t orch = 0, daemon = 0, org = 0, chan;

	memset(ev, 0, sizeof(*ev));
	ev->seq = rnd();
	ev->published_ms = rnd();
	ev->priority = (int32_t)(rnd() % 2001) - 1000;
	if (rnd() % 8 == 0)
		ev->priority = rnd() % 2 ? INT32_MIN : INT32_MAX;
	ev->requires_ack = (uint8_t)(rnd() % 2);
	ev->target = (uint8_t)(rnd() % 3);
	switch (ev->target) {
	case IPC_TARGET_ORCH:
		orch = pick_len(1, IPC_EVENT_NAME_MAX);
		daemon = pick_len(0, IPC_EVENT_NAME_MAX);
		org = pick_len(0, IPC_EVENT_NAME_MAX);
		break;
	case IPC_TARGET_ORG:
		org = pick_len(1, IPC_EVENT_NAME_MAX);
		break;
	default:
		org = pick_len(0, IPC_EVENT_NAME_MAX);
		break;
	}
	chan = pick_len(0, IPC_EVENT_CHANNEL_MAX);
	ev->event_id_len = pick_len(1, IPC_EVENT_ID_MAX);
	ev->event_type_len = pick_len(1, IPC_EVENT_TYPE_MAX);
	ev->orchestrator_len = orch;
	ev->daemon_len = daemon;
	ev->organization_len = org;
	ev->channel_len = chan;
	ev->message_len = pick_len(1, msg_max);
	st->msg = malloc(ev->message_len);
	ck_assert_ptr_nonnull(st->msg);
	fill(st->id, ev->event_id_len);
	fill(st->type, ev->event_type_len);
	fill(st->orch, orch);
	fill(st->daemon, daemon);
	fill(st->org, org);
	fill(st->chan, chan);
	fill(st->msg, ev->message_len);
	ev->event_id = st->id;
	ev->event_type = st->type;
	ev->orchestrator = orch || rnd() % 2 ? st->orch : NULL;
	ev->daemon = daemon || rnd() % 2 ? st->daemon : NULL;
	ev->organization = org || rnd() % 2 ? st->org : NULL;
	ev->channel = chan || rnd() % 2 ? st->chan : NULL;
	ev->message = st->msg;
}

static int
str_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static int
ev_eq(const struct ipc_event *a, const struct ipc_event *b)
{
	return a->seq == b->seq && a->published_ms == b->published_ms &&
	       a->priority == b->priority &&
	       a->requires_ack == b->requires_ack && a->target == b->target &&
	       str_eq(a->event_id, a->event_id_len, b->event_id,
		      b->event_id_len) &&
	       str_eq(a->event_type, a->event_type_len, b->event_type,
		      b->event_type_len) &&
	       str_eq(a->orchestrator, a->orchestrator_len, b->orchestrator,
		      b->orchestrator_len) &&
	       str_eq(a->daemon, a->daemon_len, b->daemon, b->daemon_len) &&
	       str_eq(a->organization, a->organization_len, b->organization,
		      b->organization_len) &&
	       str_eq(a->channel, a->channel_len, b->channel, b->channel_len) &&
	       str_eq(a->message, a->message_len, b->message, b->message_len);
}

/* A string of the decoded event lies inside the frame (zero copy). */
static int
inside(const void *s, size_t len, const uint8_t *buf, size_t n)
{
	const uint8_t *p = s;

	return p >= buf + IPC_HDR_LEN && p + len <= buf + n;
}

/* A fixed, valid orchestrator-targeted event. */
static void
base_event(struct ipc_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->seq = 42;
	ev->published_ms = 1764160000123ull;
	ev->priority = -3;
	ev->requires_ack = 1;
	ev->target = IPC_TARGET_ORCH;
	ev->event_id = "evt-1";
	ev->event_id_len = 5;
	ev->event_type = "message.received";
	ev->event_type_len = 16;
	ev->orchestrator = "orch-a";
	ev->orchestrator_len = 6;
	ev->daemon = "d1";
	ev->daemon_len = 2;
	ev->organization = "org-x";
	ev->organization_len = 5;
	ev->channel = "chan";
	ev->channel_len = 4;
	ev->message = "{\"type\":\"event\"}";
	ev->message_len = 16;
}

/* Encode into an exact-size heap buffer. */
static uint8_t *
encode_exact(const struct ipc_event *ev, size_t *len)
{
	size_t n = ipc_event_frame_len(ev);
	uint8_t *buf;

	ck_assert_uint_gt(n, 0);
	buf = malloc(n);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(ipc_event_encode(ev, buf, n), (int)n);
	*len = n;
	return buf;
}

/* Parse a whole buffer as one frame, then decode it as an event. */
static int
decode_buf(const uint8_t *buf, size_t n, struct ipc_event *ev)
{
	struct ipc_frame f;

	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
	return ipc_event_decode(&f, ev);
}

static void
mkpipe(int fds[2])
{
	ck_assert_int_eq(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

/* ---- codec -------------------------------------------------------------- */

START_TEST(test_header_layout)
{
	uint8_t buf[64];
	static const uint8_t want[] = {
	    'O', 'E', 1, 0, 3,    0,    0,    0,    8,    0,    0,    0,
	    0,   0,   0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
	struct ipc_event ev;
	uint8_t raw[256];
	uint8_t *enc, *ref;
	size_t n, rn, pl;

	ck_assert_int_eq(
	    ipc_ping_encode(0x1122334455667788ull, buf, sizeof(buf)),
	    (int)sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));

	/* The event encoder writes exactly the documented layout. */
	base_event(&ev);
	enc = encode_exact(&ev, &n);
	pl = build_event_payload(raw, &ev);
	ref = build_frame(IPC_EVENT, 0, 0, (uint32_t)pl, raw, pl, &rn);
	ck_assert_uint_eq(n, rn);
	ck_assert_mem_eq(enc, ref, n);
	ck_assert_uint_eq(n, IPC_HDR_LEN + IPC_EVENT_FIXED_LEN + 5 + 16 + 6 +
				 2 + 5 + 4 + 16);
	free(enc);
	free(ref);
}
END_TEST

START_TEST(test_event_roundtrip_random)
{
	rng_seed(0x1234abcdull);
	for (int i = 0; i < 4000; i++) {
		struct ipc_event ev, out;
		struct ev_store st;
		uint8_t *buf;
		size_t n;

		random_event(&ev, &st, i % 100 == 0 ? 200000 : 2048);
		n = ipc_event_frame_len(&ev);
		REQUIRE(n > 0, "event %d refused", i);
		buf = malloc(n);
		REQUIRE(ipc_event_encode(&ev, buf, n) == (int)n, "encode %d",
			i);
		/* A buffer one byte short is refused, not overrun. */
		errno = 0;
		REQUIRE(ipc_event_encode(&ev, buf, n - 1) == -1 &&
			    errno == ENOBUFS,
			"short cap %d", i);
		REQUIRE(decode_buf(buf, n, &out) == 0, "decode %d", i);
		REQUIRE(ev_eq(&ev, &out), "round trip %d differs", i);
		REQUIRE(inside(out.event_id, out.event_id_len, buf, n) &&
			    inside(out.message, out.message_len, buf, n) &&
			    inside(out.channel, out.channel_len, buf, n),
			"event %d not zero copy", i);
		free(buf);
		free(st.msg);
	}
}
END_TEST

START_TEST(test_event_max_size)
{
	struct ipc_event ev;
	size_t fixed, n;
	uint8_t *buf;
	char *msg;
	struct ipc_event out;

	base_event(&ev);
	fixed = IPC_HDR_LEN + IPC_EVENT_FIXED_LEN + ev.event_id_len +
		ev.event_type_len + ev.orchestrator_len + ev.daemon_len +
		ev.organization_len + ev.channel_len;
	msg = malloc(IPC_MAX_FRAME);
	ck_assert_ptr_nonnull(msg);
	memset(msg, 'm', IPC_MAX_FRAME);
	ev.message = msg;
	ev.message_len = IPC_MAX_FRAME - fixed;
	buf = encode_exact(&ev, &n);
	ck_assert_uint_eq(n, IPC_MAX_FRAME);
	ck_assert_int_eq(decode_buf(buf, n, &out), 0);
	ck_assert(ev_eq(&ev, &out));
	free(buf);

	/* One byte more does not fit a frame, whatever the buffer. */
	ev.message_len++;
	ck_assert_uint_eq(ipc_event_frame_len(&ev), 0);
	buf = malloc(2 * IPC_MAX_FRAME);
	errno = 0;
	ck_assert_int_eq(ipc_event_encode(&ev, buf, 2 * IPC_MAX_FRAME), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	errno = 0;
	ck_assert_int_eq(ipc_frame_encode(77, msg, IPC_MAX_PAYLOAD + 1, buf,
					  2 * IPC_MAX_FRAME),
			 -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert_int_eq(
	    ipc_frame_encode(77, msg, IPC_MAX_PAYLOAD, buf, 2 * IPC_MAX_FRAME),
	    IPC_MAX_FRAME);
	free(buf);
	free(msg);
}
END_TEST

/*
 * Each case makes base_event() invalid in one way.  The encoder must refuse
 * it, and the decoder must refuse the same event built by hand.
 */
#define NBAD 26

static int
bad_event(int c, struct ipc_event *ev, char *big)
{
	base_event(ev);
	switch (c) {
	case 0:
		ev->event_id_len = 0;
		break;
	case 1:
		ev->event_id = big;
		ev->event_id_len = IPC_EVENT_ID_MAX + 1;
		break;
	case 2:
		ev->event_type_len = 0;
		break;
	case 3:
		ev->event_type = big;
		ev->event_type_len = IPC_EVENT_TYPE_MAX + 1;
		break;
	case 4:
		ev->orchestrator = big;
		ev->orchestrator_len = IPC_EVENT_NAME_MAX + 1;
		break;
	case 5:
		ev->daemon = big;
		ev->daemon_len = IPC_EVENT_NAME_MAX + 1;
		break;
	case 6:
		ev->organization = big;
		ev->organization_len = IPC_EVENT_NAME_MAX + 1;
		break;
	case 7:
		ev->channel = big;
		ev->channel_len = IPC_EVENT_CHANNEL_MAX + 1;
		break;
	case 8:
		ev->message_len = 0;
		break;
	case 9:
		ev->requires_ack = 2;
		break;
	case 10:
		ev->target = 3;
		break;
	case 11: /* an orchestrator event without one */
		ev->orchestrator_len = 0;
		break;
	case 12:
		ev->target = IPC_TARGET_ORG;
		ev->daemon_len = 0;
		break;
	case 13:
		ev->target = IPC_TARGET_ORG;
		ev->orchestrator_len = 0;
		ev->daemon_len = 0;
		ev->organization_len = 0;
		break;
	case 14:
		ev->target = IPC_TARGET_ORG;
		ev->orchestrator_len = 0;
		break;
	case 15:
		ev->target = IPC_TARGET_ALL;
		ev->daemon_len = 0;
		break;
	case 16:
		ev->target = IPC_TARGET_ALL;
		ev->orchestrator_len = 0;
		break;
	case 17:
		ev->event_id = "ev\0t1";
		break;
	case 18:
		ev->event_type = "message.\0eceived";
		break;
	case 19:
		ev->orchestrator = "orch-\0";
		break;
	case 20:
		ev->daemon = "\0d";
		break;
	case 21:
		ev->organization = "o\0g-x";
		break;
	case 22:
		ev->channel = "ch\0n";
		break;
	case 23:
		ev->message = "{\"type\":\"ev\0nt\"}";
		break;
	case 24:
		ev->target = 255;
		break;
	/* Encoder only: a NULL string with a length. */
	case 25:
		ev->daemon = NULL;
		return 0;
	}
	return 1;
}

START_TEST(test_event_invalid)
{
	static char big[256];
	uint8_t buf[1024], raw[1024];
	struct ipc_event ev, out;

	memset(big, 'b', sizeof(big));
	for (int c = 0; c < NBAD; c++) {
		int raw_too = bad_event(c, &ev, big);
		uint8_t *f;
		size_t pl, n;

		errno = 0;
		REQUIRE(ipc_event_encode(&ev, buf, sizeof(buf)) == -1 &&
			    errno == EINVAL,
			"case %d encoded", c);
		REQUIRE(ipc_event_frame_len(&ev) == 0, "case %d sized", c);
		if (!raw_too)
			continue;
		pl = build_event_payload(raw, &ev);
		f = build_frame(IPC_EVENT, 0, 0, (uint32_t)pl, raw, pl, &n);
		REQUIRE(decode_buf(f, n, &out) == IPC_EMALFORMED,
			"case %d decoded", c);
		free(f);
	}
	/* The limits themselves are fine. */
	base_event(&ev);
	ev.event_id = big;
	ev.event_id_len = IPC_EVENT_ID_MAX;
	ev.event_type = big;
	ev.event_type_len = IPC_EVENT_TYPE_MAX;
	ev.orchestrator = ev.daemon = ev.organization = big;
	ev.orchestrator_len = ev.daemon_len = IPC_EVENT_NAME_MAX;
	ev.organization_len = IPC_EVENT_NAME_MAX;
	ev.channel = big;
	ev.channel_len = IPC_EVENT_CHANNEL_MAX;
	ck_assert_int_gt(ipc_event_encode(&ev, buf, sizeof(buf)), 0);
	/* Org- and all-wide events with what they may carry. */
	base_event(&ev);
	ev.target = IPC_TARGET_ORG;
	ev.orchestrator_len = ev.daemon_len = 0;
	ck_assert_int_gt(ipc_event_encode(&ev, buf, sizeof(buf)), 0);
	ev.target = IPC_TARGET_ALL;
	ev.organization_len = 0;
	ck_assert_int_gt(ipc_event_encode(&ev, buf, sizeof(buf)), 0);
}
END_TEST

/* Every prefix of a frame, down to the empty one, asks for more. */
START_TEST(test_parse_truncated)
{
	struct ipc_event ev;
	struct ipc_frame f;
	size_t n;
	uint8_t *buf;

	base_event(&ev);
	buf = encode_exact(&ev, &n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = malloc(i ? i : 1);

		memcpy(p, buf, i);
		REQUIRE(ipc_frame_parse(p, i, &f) == 0, "prefix %zu", i);
		free(p);
	}
	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
	ck_assert_uint_eq(f.type, IPC_EVENT);
	ck_assert_uint_eq(f.flags, 0);
	ck_assert_uint_eq(f.len, n - IPC_HDR_LEN);
	ck_assert_ptr_eq(f.payload, buf + IPC_HDR_LEN);
	ck_assert_int_eq(ipc_frame_parse(NULL, 0, &f), 0);
	free(buf);
}
END_TEST

/*
 * A header that claims fewer payload bytes than the event needs (every
 * count from 0), or more, is a whole frame to the parser and a malformed
 * event to the decoder.
 */
START_TEST(test_decode_short_payload)
{
	struct ipc_event ev, out;
	size_t n, pl, fn;
	uint8_t raw[512], *f;

	base_event(&ev);
	pl = build_event_payload(raw, &ev);
	for (size_t k = 0; k < pl; k++) {
		f = build_frame(IPC_EVENT, 0, 0, (uint32_t)k, raw, k, &n);
		REQUIRE(decode_buf(f, n, &out) == IPC_EMALFORMED,
			"payload of %zu/%zu decoded", k, pl);
		free(f);
	}
	raw[pl] = 'x';
	f = build_frame(IPC_EVENT, 0, 0, (uint32_t)pl + 1, raw, pl + 1, &fn);
	ck_assert_int_eq(decode_buf(f, fn, &out), IPC_EMALFORMED);
	free(f);
	f = build_frame(IPC_EVENT, 0, 0, (uint32_t)pl, raw, pl, &fn);
	ck_assert_int_eq(decode_buf(f, fn, &out), 0);
	free(f);
}
END_TEST

/* Each length field made larger (or smaller) than what the payload holds. */
START_TEST(test_decode_bad_lengths)
{
	static const uint64_t deltas[] = {1, 2, 100, 0xffff, 0xffffffffull};
	struct ipc_event ev, out;
	size_t n;
	uint8_t *buf;

	base_event(&ev);
	buf = encode_exact(&ev, &n);
	for (int field = 0; field < 7; field++) {
		uint8_t *p = buf + IPC_HDR_LEN + 22 + 2 * field;
		int width = field < 6 ? 2 : 4;
		uint64_t orig = get_le(p, width);

		for (size_t d = 0; d < sizeof(deltas) / sizeof(deltas[0]);
		     d++) {
			uint64_t mask = width == 2 ? 0xffff : 0xffffffff;

			put_le(p, (orig + deltas[d]) & mask, width);
			REQUIRE(decode_buf(buf, n, &out) == IPC_EMALFORMED,
				"field %d +%llu decoded", field,
				(unsigned long long)deltas[d]);
			put_le(p, (orig - 1) & mask, width);
			REQUIRE(decode_buf(buf, n, &out) == IPC_EMALFORMED,
				"field %d -1 decoded", field);
		}
		put_le(p, orig, width);
	}
	/* Reserved bytes of the fixed part. */
	buf[IPC_HDR_LEN + 39] = 1;
	ck_assert_int_eq(decode_buf(buf, n, &out), IPC_EMALFORMED);
	buf[IPC_HDR_LEN + 39] = 0;
	ck_assert_int_eq(decode_buf(buf, n, &out), 0);
	free(buf);
}
END_TEST

/* A NUL at every position of every string of an encoded event. */
START_TEST(test_decode_nul_everywhere)
{
	struct ipc_event ev, out;
	size_t n, off;
	uint8_t *buf;

	base_event(&ev);
	buf = encode_exact(&ev, &n);
	for (off = IPC_HDR_LEN + IPC_EVENT_FIXED_LEN; off < n; off++) {
		uint8_t save = buf[off];

		buf[off] = 0;
		REQUIRE(decode_buf(buf, n, &out) == IPC_EMALFORMED,
			"NUL at %zu decoded", off);
		buf[off] = save;
	}
	ck_assert_int_eq(decode_buf(buf, n, &out), 0);
	free(buf);
}
END_TEST

START_TEST(test_parse_bad_magic)
{
	struct ipc_event ev;
	struct ipc_frame f;
	size_t n;
	uint8_t *buf;

	base_event(&ev);
	buf = encode_exact(&ev, &n);
	for (int i = 0; i < 4; i++) {
		static const uint8_t bad[] = {'o', 'e', 2, 1};
		uint8_t save = buf[i];

		buf[i] = bad[i];
		/* Caught as soon as the bad byte is there. */
		for (size_t len = (size_t)i + 1; len <= n; len++)
			REQUIRE(ipc_frame_parse(buf, len, &f) == IPC_EVERSION,
				"byte %d, %zu bytes", i, len);
		for (size_t len = 0; len <= (size_t)i; len++)
			REQUIRE(ipc_frame_parse(buf, len, &f) == 0,
				"byte %d, prefix %zu", i, len);
		buf[i] = save;
	}
	/* Version 0 and 255 too. */
	buf[2] = 0;
	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), IPC_EVERSION);
	buf[2] = 255;
	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), IPC_EVERSION);
	buf[2] = IPC_VERSION;
	/* Reserved header word. */
	for (int i = 12; i < 16; i++) {
		buf[i] = 0x80;
		ck_assert_int_eq(ipc_frame_parse(buf, n, &f), IPC_EMALFORMED);
		buf[i] = 0;
	}
	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
	free(buf);
}
END_TEST

/* An oversized length fails on the header alone, before any payload. */
START_TEST(test_parse_oversized)
{
	struct ipc_frame f;
	uint8_t *h;
	size_t n;

	h = build_frame(IPC_EVENT, 0, 0, IPC_MAX_PAYLOAD + 1, NULL, 0, &n);
	ck_assert_int_eq(ipc_frame_parse(h, n, &f), IPC_ETOOBIG);
	put_le(h + 8, 0xffffffffu, 4);
	ck_assert_int_eq(ipc_frame_parse(h, n, &f), IPC_ETOOBIG);
	put_le(h + 8, IPC_MAX_PAYLOAD, 4);
	ck_assert_int_eq(ipc_frame_parse(h, n, &f), 0);
	/* A caller's smaller bound, and one above the maximum, clamped. */
	put_le(h + 8, 101, 4);
	ck_assert_int_eq(ipc_frame_parse_max(h, n, 100, &f), IPC_ETOOBIG);
	put_le(h + 8, 100, 4);
	ck_assert_int_eq(ipc_frame_parse_max(h, n, 100, &f), 0);
	put_le(h + 8, IPC_MAX_PAYLOAD + 1, 4);
	ck_assert_int_eq(ipc_frame_parse_max(h, n, SIZE_MAX, &f), IPC_ETOOBIG);
	free(h);
}
END_TEST

/*
 * Unknown types parse (the dispatcher decides), and every typed decoder
 * refuses a frame of another type.
 */
START_TEST(test_types)
{
	uint8_t buf[128];
	struct ipc_frame f;
	struct ipc_event ev;
	struct ipc_hello h = {7, 1234}, h2;
	uint64_t ms;
	int n;

	n = ipc_frame_encode(999, "abc", 3, buf, sizeof(buf));
	ck_assert_int_eq(n, IPC_HDR_LEN + 3);
	ck_assert_int_eq(ipc_frame_parse(buf, (size_t)n, &f), n);
	ck_assert_uint_eq(f.type, 999);
	ck_assert_str_eq(ipc_type_name(f.type), "unknown");
	ck_assert_int_eq(ipc_event_decode(&f, &ev), IPC_ETYPE);
	ck_assert_int_eq(ipc_hello_decode(&f, &h2), IPC_ETYPE);
	ck_assert_int_eq(ipc_ping_decode(&f, &ms), IPC_ETYPE);
	/* Type 0 is never sent. */
	errno = 0;
	ck_assert_int_eq(ipc_frame_encode(0, "abc", 3, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EINVAL);

	n = ipc_hello_encode(&h, buf, sizeof(buf));
	ck_assert_int_eq(n, IPC_HDR_LEN + 12);
	ck_assert_int_eq(ipc_frame_parse(buf, (size_t)n, &f), n);
	ck_assert_str_eq(ipc_type_name(f.type), "hello");
	ck_assert_int_eq(ipc_event_decode(&f, &ev), IPC_ETYPE);
	ck_assert_int_eq(ipc_ping_decode(&f, &ms), IPC_ETYPE);
	ck_assert_int_eq(ipc_hello_decode(&f, &h2), 0);
	ck_assert_uint_eq(h2.generation, 7);
	ck_assert_uint_eq(h2.pid, 1234);

	n = ipc_ping_encode(UINT64_MAX - 1, buf, sizeof(buf));
	ck_assert_int_eq(ipc_frame_parse(buf, (size_t)n, &f), n);
	ck_assert_int_eq(ipc_hello_decode(&f, &h2), IPC_ETYPE);
	ck_assert_int_eq(ipc_ping_decode(&f, &ms), 0);
	ck_assert_uint_eq(ms, UINT64_MAX - 1);
	ck_assert_str_eq(ipc_strerror(IPC_ETYPE), "unexpected frame type");
	ck_assert_str_eq(ipc_type_name(IPC_KICK), "kick");
}
END_TEST

/* Fixed-size messages refuse any other size, and unknown flags. */
START_TEST(test_hello_ping_malformed)
{
	uint8_t pl[32] = {0}, raw[256];
	struct ipc_frame f;
	struct ipc_hello h;
	struct ipc_event ev;
	uint64_t ms;
	uint8_t *buf;
	size_t n, rl;

	for (uint32_t len = 0; len < sizeof(pl); len++) {
		buf = build_frame(IPC_HELLO, 0, 0, len, pl, len, &n);
		ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
		REQUIRE(ipc_hello_decode(&f, &h) ==
			    (len == 12 ? 0 : IPC_EMALFORMED),
			"hello of %u", len);
		free(buf);
		buf = build_frame(IPC_PING, 0, 0, len, pl, len, &n);
		ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
		REQUIRE(ipc_ping_decode(&f, &ms) ==
			    (len == 8 ? 0 : IPC_EMALFORMED),
			"ping of %u", len);
		free(buf);
	}
	buf = build_frame(IPC_PING, 1, 0, 8, pl, 8, &n);
	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
	ck_assert_int_eq(ipc_ping_decode(&f, &ms), IPC_EMALFORMED);
	free(buf);
	buf = build_frame(IPC_HELLO, 0x8000, 0, 12, pl, 12, &n);
	ck_assert_int_eq(ipc_frame_parse(buf, n, &f), (int)n);
	ck_assert_int_eq(ipc_hello_decode(&f, &h), IPC_EMALFORMED);
	free(buf);
	/* And an event with a flag set. */
	base_event(&ev);
	rl = build_event_payload(raw, &ev);
	buf = build_frame(IPC_EVENT, 2, 0, (uint32_t)rl, raw, rl, &n);
	ck_assert_int_eq(decode_buf(buf, n, &ev), IPC_EMALFORMED);
	free(buf);
}
END_TEST

/* ---- operator frames: kick, loglevel, drain ---------------------------- */

/* A kick payload per the documented layout, built by hand. */
static size_t
build_kick_payload(uint8_t *p, unsigned match, const char *orch,
		   const char *daemon, const char *jti, const char *reason,
		   uint64_t conn_id)
{
	size_t lo = strlen(orch), ld = strlen(daemon), lj = strlen(jti),
	       lr = strlen(reason), off = IPC_KICK_FIXED_LEN;

	p[0] = (uint8_t)match;
	p[1] = 0;
	p[2] = (uint8_t)lo;
	p[3] = (uint8_t)(lo >> 8);
	p[4] = (uint8_t)ld;
	p[5] = (uint8_t)(ld >> 8);
	p[6] = (uint8_t)lj;
	p[7] = (uint8_t)lr;
	for (int i = 0; i < 8; i++)
		p[8 + i] = (uint8_t)(conn_id >> (8 * i));
	memcpy(p + off, orch, lo);
	off += lo;
	memcpy(p + off, daemon, ld);
	off += ld;
	memcpy(p + off, jti, lj);
	off += lj;
	memcpy(p + off, reason, lr);
	return off + lr;
}

static int
decode_kick_buf(const uint8_t *buf, size_t n, struct ipc_kick *k)
{
	struct ipc_frame f;
	int rc = ipc_frame_parse(buf, n, &f);

	if (rc != (int)n)
		return rc < 0 ? rc : -100;
	return ipc_kick_decode(&f, k);
}

START_TEST(test_kick_roundtrip)
{
	uint8_t out[512], hand[512];
	char jti[IPC_KICK_JTI_MAX + 1];
	struct ipc_kick k, d;
	size_t hl, fl;
	uint8_t *buf;
	int n;

	memset(&k, 0, sizeof(k));
	k.match = IPC_KICK_ORCH | IPC_KICK_DAEMON | IPC_KICK_CONN;
	k.orchestrator = "vp-1";
	k.orchestrator_len = 4;
	k.daemon = "d-22";
	k.daemon_len = 4;
	k.conn_id = 0x0102030405060708ULL;
	k.reason = "kicked";
	k.reason_len = 6;
	n = ipc_kick_encode(&k, out, sizeof(out));
	ck_assert_int_gt(n, 0);
	/* The encoder writes exactly the documented layout. */
	hl = build_kick_payload(hand, k.match, "vp-1", "d-22", "", "kicked",
				k.conn_id);
	ck_assert_int_eq(n, (int)(IPC_HDR_LEN + hl));
	ck_assert_int_eq(memcmp(out + IPC_HDR_LEN, hand, hl), 0);
	buf = malloc((size_t)n);
	memcpy(buf, out, (size_t)n);
	ck_assert_int_eq(decode_kick_buf(buf, (size_t)n, &d), 0);
	ck_assert_uint_eq(d.match, k.match);
	ck_assert_uint_eq(d.conn_id, k.conn_id);
	ck_assert_uint_eq(d.orchestrator_len, 4);
	ck_assert_int_eq(memcmp(d.orchestrator, "vp-1", 4), 0);
	ck_assert_int_eq(memcmp(d.daemon, "d-22", 4), 0);
	ck_assert_uint_eq(d.jti_len, 0);
	ck_assert_int_eq(memcmp(d.reason, "kicked", 6), 0);
	free(buf);

	/* jti only, maximal, no reason. */
	{
		memset(jti, 'j', IPC_KICK_JTI_MAX);
		jti[IPC_KICK_JTI_MAX] = '\0';
		memset(&k, 0, sizeof(k));
		k.match = IPC_KICK_JTI;
		k.jti = jti;
		k.jti_len = IPC_KICK_JTI_MAX;
		n = ipc_kick_encode(&k, out, sizeof(out));
		ck_assert_int_eq(n, IPC_HDR_LEN + IPC_KICK_FIXED_LEN +
					IPC_KICK_JTI_MAX);
		fl = (size_t)n;
		buf = malloc(fl);
		memcpy(buf, out, fl);
		ck_assert_int_eq(decode_kick_buf(buf, fl, &d), 0);
		ck_assert_uint_eq(d.jti_len, IPC_KICK_JTI_MAX);
		ck_assert_int_eq(memcmp(d.jti, jti, IPC_KICK_JTI_MAX), 0);
		ck_assert_uint_eq(d.reason_len, 0);
		free(buf);
		/* One byte more is refused. */
		k.jti_len = IPC_KICK_JTI_MAX + 1;
		errno = 0;
		ck_assert_int_eq(ipc_kick_encode(&k, out, sizeof(out)), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	/* Too small a buffer. */
	k.jti_len = 3;
	errno = 0;
	ck_assert_int_eq(ipc_kick_encode(&k, out, IPC_HDR_LEN + 4), -1);
	ck_assert_int_eq(errno, ENOBUFS);
}
END_TEST

/* Kicks that must never be encoded nor decoded. */
START_TEST(test_kick_invalid)
{
	static const struct {
		unsigned match;
		const char *orch, *daemon, *jti, *reason;
	} bad[] = {
	    {0, "", "", "", ""},                /* selects nothing */
	    {0x10, "", "", "", ""},             /* unknown bit */
	    {IPC_KICK_ORCH, "", "", "", ""},    /* empty orch */
	    {IPC_KICK_DAEMON, "", "d", "", ""}, /* daemon alone */
	    {IPC_KICK_JTI, "", "", "", ""},     /* empty jti */
	    {IPC_KICK_CONN, "o", "", "", ""},   /* orch, no bit */
	    {IPC_KICK_ORCH, "o", "d", "", ""},  /* daemon, no bit */
	    {IPC_KICK_ORCH, "o", "", "j", ""},  /* jti, no bit */
	    {IPC_KICK_ORCH,
	     "0123456789012345678901234567890123456789012345678901234567890123",
	     "", "", ""}, /* 64 bytes */
	};
	uint8_t out[512], pl[512];
	struct ipc_kick k, d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t pn;
		uint8_t *buf;
		size_t n;

		memset(&k, 0, sizeof(k));
		k.match = bad[i].match;
		k.orchestrator = bad[i].orch;
		k.orchestrator_len = strlen(bad[i].orch);
		k.daemon = bad[i].daemon;
		k.daemon_len = strlen(bad[i].daemon);
		k.jti = bad[i].jti;
		k.jti_len = strlen(bad[i].jti);
		k.reason = bad[i].reason;
		k.reason_len = strlen(bad[i].reason);
		errno = 0;
		ck_assert_msg(ipc_kick_encode(&k, out, sizeof(out)) == -1,
			      "bad kick %zu encoded", i);
		ck_assert_int_eq(errno, EINVAL);
		pn = build_kick_payload(pl, bad[i].match, bad[i].orch,
					bad[i].daemon, bad[i].jti,
					bad[i].reason, 1);
		buf = build_frame(IPC_KICK, 0, 0, (uint32_t)pn, pl, pn, &n);
		ck_assert_msg(decode_kick_buf(buf, n, &d) == IPC_EMALFORMED,
			      "bad kick %zu decoded", i);
		free(buf);
	}
}
END_TEST

/* Lengths that disagree with the payload, a NUL, reserved bits. */
START_TEST(test_kick_malformed)
{
	uint8_t pl[256], *buf;
	struct ipc_kick d;
	size_t pn, n;

	pn = build_kick_payload(pl, IPC_KICK_ORCH, "orch", "", "", "why", 0);
	/* Every truncation and one byte too many. */
	for (size_t len = 0; len <= pn + 1; len++) {
		buf = build_frame(IPC_KICK, 0, 0, (uint32_t)len, pl, len, &n);
		REQUIRE(decode_kick_buf(buf, n, &d) ==
			    (len == pn ? 0 : IPC_EMALFORMED),
			"kick of %zu bytes", len);
		free(buf);
	}
	pl[1] = 1; /* reserved */
	buf = build_frame(IPC_KICK, 0, 0, (uint32_t)pn, pl, pn, &n);
	ck_assert_int_eq(decode_kick_buf(buf, n, &d), IPC_EMALFORMED);
	free(buf);
	pl[1] = 0;
	pl[IPC_KICK_FIXED_LEN + 1] = '\0'; /* a NUL in the orchestrator */
	buf = build_frame(IPC_KICK, 0, 0, (uint32_t)pn, pl, pn, &n);
	ck_assert_int_eq(decode_kick_buf(buf, n, &d), IPC_EMALFORMED);
	free(buf);
	pl[IPC_KICK_FIXED_LEN + 1] = 'r';
	buf = build_frame(IPC_KICK, 4, 0, (uint32_t)pn, pl, pn, &n); /* flags */
	ck_assert_int_eq(decode_kick_buf(buf, n, &d), IPC_EMALFORMED);
	free(buf);
	buf = build_frame(IPC_HELLO, 0, 0, (uint32_t)pn, pl, pn, &n);
	ck_assert_int_eq(decode_kick_buf(buf, n, &d), IPC_ETYPE);
	free(buf);
}
END_TEST

START_TEST(test_loglevel_drain)
{
	uint8_t out[256], pl[80], *buf;
	struct ipc_frame f;
	char reason[IPC_DRAIN_REASON_MAX + 1];
	int n, level;
	size_t fl;

	for (int lv = 0; lv <= 8; lv++) {
		int ok = lv >= LOG_ERR && lv <= LOG_DEBUG;

		n = ipc_loglevel_encode(lv, out, sizeof(out));
		REQUIRE(ok ? n == IPC_HDR_LEN + 4 : n == -1, "level %d", lv);
		/* Decoders check the same range, on a hand-built frame. */
		pl[0] = (uint8_t)lv;
		pl[1] = pl[2] = pl[3] = 0;
		buf = build_frame(IPC_LOGLEVEL, 0, 0, 4, pl, 4, &fl);
		ck_assert_int_eq(ipc_frame_parse(buf, fl, &f), (int)fl);
		level = -1;
		REQUIRE(ipc_loglevel_decode(&f, &level) ==
				(ok ? 0 : IPC_EMALFORMED) &&
			    (!ok || level == lv),
			"decode level %d", lv);
		free(buf);
	}
	pl[3] = 1; /* 2^24 + 7 */
	pl[0] = LOG_DEBUG;
	buf = build_frame(IPC_LOGLEVEL, 0, 0, 4, pl, 4, &fl);
	ck_assert_int_eq(ipc_frame_parse(buf, fl, &f), (int)fl);
	ck_assert_int_eq(ipc_loglevel_decode(&f, &level), IPC_EMALFORMED);
	free(buf);
	buf = build_frame(IPC_LOGLEVEL, 0, 0, 3, pl, 3, &fl);
	ck_assert_int_eq(ipc_frame_parse(buf, fl, &f), (int)fl);
	ck_assert_int_eq(ipc_loglevel_decode(&f, &level), IPC_EMALFORMED);
	free(buf);

	n = ipc_drain_encode("drain", out, sizeof(out));
	ck_assert_int_eq(n, IPC_HDR_LEN + 5);
	ck_assert_int_eq(ipc_frame_parse(out, (size_t)n, &f), n);
	ck_assert_str_eq(ipc_type_name(f.type), "drain");
	ck_assert_int_eq(ipc_drain_decode(&f, reason, sizeof(reason)), 0);
	ck_assert_str_eq(reason, "drain");
	ck_assert_int_eq(ipc_loglevel_decode(&f, &level), IPC_ETYPE);
	errno = 0;
	ck_assert_int_eq(ipc_drain_encode("", out, sizeof(out)), -1);
	ck_assert_int_eq(ipc_drain_encode("a\nb", out, sizeof(out)), -1);
	memset(pl, 'x', sizeof(pl));
	pl[IPC_DRAIN_REASON_MAX + 1] = '\0';
	ck_assert_int_eq(ipc_drain_encode((char *)pl, out, sizeof(out)), -1);
	pl[IPC_DRAIN_REASON_MAX] = '\0';
	ck_assert_int_gt(ipc_drain_encode((char *)pl, out, sizeof(out)), 0);
	/* Hand-built: empty, a control byte. */
	buf = build_frame(IPC_DRAIN, 0, 0, 0, pl, 0, &fl);
	ck_assert_int_eq(ipc_frame_parse(buf, fl, &f), (int)fl);
	ck_assert_int_eq(ipc_drain_decode(&f, reason, sizeof(reason)),
			 IPC_EMALFORMED);
	free(buf);
	pl[0] = 0x7f;
	buf = build_frame(IPC_DRAIN, 0, 0, 3, pl, 3, &fl);
	ck_assert_int_eq(ipc_frame_parse(buf, fl, &f), (int)fl);
	ck_assert_int_eq(ipc_drain_decode(&f, reason, sizeof(reason)),
			 IPC_EMALFORMED);
	free(buf);
	ck_assert_str_eq(ipc_type_name(IPC_LOGLEVEL), "loglevel");
}
END_TEST

/* ---- writer queue ------------------------------------------------------- */

/* Frames numbered by seq, of sizes around the pipe's interesting ones. */
static uint8_t **
make_frames(int count, size_t *lens, uint64_t seed)
{
	uint8_t **frames = calloc((size_t)count, sizeof(*frames));

	ck_assert_ptr_nonnull(frames);
	rng_seed(seed);
	for (int i = 0; i < count; i++) {
		struct ipc_event ev;
		struct ev_store st;
		size_t max;

		switch (rnd() % 10) {
		case 0:
			max = 150000; /* larger than a default pipe */
			break;
		case 1:
		case 2:
			max = 5000; /* around PIPE_BUF */
			break;
		default:
			max = 300;
			break;
		}
		random_event(&ev, &st, max);
		ev.seq = (uint64_t)i;
		frames[i] = encode_exact(&ev, &lens[i]);
		free(st.msg);
	}
	return frames;
}

static void
free_frames(uint8_t **frames, int count)
{
	for (int i = 0; i < count; i++)
		free(frames[i]);
	free(frames);
}

/* Read sizes that never line up with frames or pages. */
static const size_t odd_chunks[] = {1, 7, 13, 4093, 3, 65521, 509, 2};

/* Whatever is readable now, in odd-sized reads, appended to out. */
static void
drain_odd(int fd, uint8_t *out, size_t cap, size_t *got, unsigned *ci)
{
	for (;;) {
		size_t want = odd_chunks[(*ci)++ % (sizeof(odd_chunks) /
						    sizeof(odd_chunks[0]))];
		ssize_t n;

		if (want > cap - *got)
			want = cap - *got;
		if (want == 0)
			return;
		n = read(fd, out + *got, want);
		if (n < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			return;
		}
		ck_assert_int_gt(n, 0);
		*got += (size_t)n;
	}
}

/* The stream holds exactly frames[first..count), whole and in order. */
static void
check_stream(const uint8_t *s, size_t len, uint8_t **frames, const size_t *lens,
	     int first, int count)
{
	struct ipc_frame f;
	struct ipc_event ev;
	size_t off = 0;

	for (int i = first; i < count; i++) {
		int n = ipc_frame_parse(s + off, len - off, &f);

		REQUIRE(n == (int)lens[i], "frame %d: parse %d", i, n);
		REQUIRE(memcmp(s + off, frames[i], lens[i]) == 0,
			"frame %d differs", i);
		REQUIRE(ipc_event_decode(&f, &ev) == 0 && ev.seq == (uint64_t)i,
			"frame %d out of order", i);
		off += lens[i];
	}
	ck_assert_uint_eq(off, len);
}

START_TEST(test_outq_pipe_fill)
{
	enum { N = 300 };
	size_t lens[N], total = 0, got = 0;
	uint8_t **frames = make_frames(N, lens, 77);
	struct ipc_outq q;
	int fds[2], full = 0, mid = 0, rounds = 0;
	unsigned ci = 0;
	uint8_t *out;
	ssize_t w;

	mkpipe(fds);
	ipc_outq_init(&q, 64u << 20);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(ipc_outq_push(&q, frames[i], lens[i]), 0);
		total += lens[i];
	}
	ck_assert_uint_eq(q.bytes, total);
	ck_assert_uint_eq(q.nframes, N);
	ck_assert_uint_gt(total, 4 * (size_t)fcntl(fds[1], F_GETPIPE_SZ));
	out = malloc(total);

	/* Fill the pipe: within a few calls the writer hits EAGAIN (0). */
	w = ipc_outq_write(&q, fds[1]);
	ck_assert_int_gt(w, 0);
	ck_assert_int_le(w, fcntl(fds[1], F_GETPIPE_SZ));
	for (int i = 0; i < 4 && w != 0; i++)
		w = ipc_outq_write(&q, fds[1]);
	ck_assert_int_eq(w, 0);
	ck_assert_ptr_nonnull(q.head);

	while (got < total) {
		REQUIRE(++rounds < 100000, "no progress");
		drain_odd(fds[0], out, total, &got, &ci);
		w = ipc_outq_write(&q, fds[1]);
		REQUIRE(w >= 0, "write: %s", strerror(errno));
		if (q.head != NULL) {
			full++;
			mid += ipc_outq_mid_frame(&q);
		}
	}
	ck_assert_ptr_null(q.head);
	ck_assert_uint_eq(q.bytes, 0);
	ck_assert_uint_eq(q.nframes, 0);
	ck_assert_uint_eq(q.dropped, 0);
	/* The pipe was full many times, often in the middle of a frame. */
	ck_assert_int_gt(full, 10);
	ck_assert_int_gt(mid, 0);
	check_stream(out, got, frames, lens, 0, N);
	close(fds[0]);
	close(fds[1]);
	free(out);
	free_frames(frames, N);
}
END_TEST

/* An event frame numbered seq with a message of msg_len bytes. */
static uint8_t *
seq_frame(uint64_t seq, size_t msg_len, size_t *len)
{
	struct ipc_event ev;
	char *msg = malloc(msg_len);
	uint8_t *f;

	ck_assert_ptr_nonnull(msg);
	memset(msg, 'a' + (int)(seq % 26), msg_len);
	base_event(&ev);
	ev.seq = seq;
	ev.message = msg;
	ev.message_len = msg_len;
	f = encode_exact(&ev, len);
	free(msg);
	return f;
}

/* Parse a stream of event frames; return how many, their seqs in seqs. */
static size_t
stream_seqs(const uint8_t *s, size_t len, uint64_t *seqs, size_t max)
{
	struct ipc_frame f;
	struct ipc_event ev;
	size_t off = 0, n = 0;
	int rc;

	while (off < len) {
		rc = ipc_frame_parse(s + off, len - off, &f);
		ck_assert_int_gt(rc, 0);
		ck_assert_int_eq(ipc_event_decode(&f, &ev), 0);
		ck_assert_uint_lt(n, max);
		seqs[n++] = ev.seq;
		off += (size_t)rc;
	}
	return n;
}

START_TEST(test_outq_bound)
{
	enum { N = 8 };
	size_t len[N], got = 0, pipe_sz, n;
	uint8_t *fr[N], junk[IPC_HDR_LEN + 4], *out;
	uint64_t seqs[N];
	struct ipc_outq q;
	unsigned ci = 0;
	int fds[2];

	mkpipe(fds);
	pipe_sz = (size_t)fcntl(fds[1], F_GETPIPE_SZ);
	for (int i = 0; i < N; i++)
		fr[i] = seq_frame((uint64_t)i, 200, &len[i]);
	out = malloc(8u << 20);

	/* Room for frames 0-2 exactly: 3 is dropped, counted, not queued. */
	ipc_outq_init(&q, 3 * len[0]);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ipc_outq_push(&q, fr[i], len[i]), 0);
	errno = 0;
	ck_assert_int_eq(ipc_outq_push(&q, fr[3], len[3]), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	ck_assert_uint_eq(q.dropped, 1);
	ck_assert_uint_eq(q.dropped_bytes, len[3]);
	ck_assert_uint_eq(q.bytes, 3 * len[0]);
	ck_assert_uint_eq(q.nframes, 3);

	/* Not one whole frame: refused, but not a drop. */
	memcpy(junk, fr[0], sizeof(junk));
	errno = 0;
	ck_assert_int_eq(ipc_outq_push(&q, junk, sizeof(junk)), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ipc_outq_push(&q, fr[0], len[0] - 1), -1);
	ck_assert_int_eq(ipc_outq_push(&q, fr[0], 3), -1);
	ck_assert_uint_eq(q.dropped, 1);
	ck_assert_uint_eq(q.nframes, 3);

	/* Written bytes free their room: 4 goes in once 0-2 are out. */
	ck_assert_int_eq(ipc_outq_write(&q, fds[1]), (ssize_t)(3 * len[0]));
	ck_assert_uint_eq(q.bytes, 0);
	ck_assert_int_eq(ipc_outq_push(&q, fr[4], len[4]), 0);
	/* A bound lowered under what is queued refuses everything new. */
	q.max_bytes = 1;
	ck_assert_int_eq(ipc_outq_push(&q, fr[5], len[5]), -1);
	ck_assert_uint_eq(q.dropped, 2);
	ck_assert_int_eq(ipc_outq_write(&q, fds[1]), (ssize_t)len[4]);
	drain_odd(fds[0], out, 8u << 20, &got, &ci);
	n = stream_seqs(out, got, seqs, N);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(seqs[0], 0);
	ck_assert_uint_eq(seqs[1], 1);
	ck_assert_uint_eq(seqs[2], 2);
	ck_assert_uint_eq(seqs[3], 4);
	for (int i = 0; i < N; i++)
		free(fr[i]);

	/*
	 * Only unwritten bytes count: with a big frame partly in the pipe,
	 * a frame that fits next to its remainder is taken.
	 */
	fr[0] = seq_frame(10, pipe_sz + 1000, &len[0]);
	fr[1] = seq_frame(11, 100, &len[1]);
	got = 0;
	ipc_outq_init(&q, len[0] + len[1] / 2);
	ck_assert_int_eq(ipc_outq_push(&q, fr[0], len[0]), 0);
	ck_assert_int_eq(ipc_outq_push(&q, fr[1], len[1]), -1);
	ck_assert_int_gt(ipc_outq_write(&q, fds[1]), 0);
	ck_assert(ipc_outq_mid_frame(&q));
	ck_assert_uint_lt(q.bytes + len[1], q.max_bytes);
	ck_assert_int_eq(ipc_outq_push(&q, fr[1], len[1]), 0);
	ck_assert_uint_eq(q.dropped, 1);
	while (q.head != NULL) {
		ck_assert_int_ge(ipc_outq_write(&q, fds[1]), 0);
		drain_odd(fds[0], out, 8u << 20, &got, &ci);
	}
	drain_odd(fds[0], out, 8u << 20, &got, &ci);
	n = stream_seqs(out, got, seqs, N);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(seqs[0], 10);
	ck_assert_uint_eq(seqs[1], 11);
	free(fr[0]);
	free(fr[1]);
	free(out);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/*
 * Read frames with ipc_reader from fd until the write side is done and
 * nothing is pending; they must be frames[first..count) exactly.
 */
static void
read_all_frames(int rfd, struct ipc_outq *q, int wfd, uint8_t **frames,
		const size_t *lens, int first, int count)
{
	struct ipc_reader r;
	struct ipc_frame f;
	int next = first, rounds = 0, rc;

	ipc_reader_init(&r, 0);
	while (next < count) {
		ssize_t n;

		REQUIRE(++rounds < 100000, "no progress");
		REQUIRE(ipc_outq_write(q, wfd) >= 0, "write");
		n = ipc_reader_read(&r, rfd);
		REQUIRE(n > 0 || (n < 0 && errno == EAGAIN), "read %zd", n);
		while ((rc = ipc_reader_next(&r, &f)) > 0) {
			REQUIRE(next < count, "extra frame");
			REQUIRE((size_t)rc == lens[next] &&
				    memcmp(f.payload - IPC_HDR_LEN,
					   frames[next], lens[next]) == 0,
				"frame %d differs", next);
			next++;
		}
		REQUIRE(rc == 0, "reader: %s", ipc_strerror(rc));
	}
	ck_assert_uint_eq(ipc_reader_pending(&r), 0);
	ck_assert_ptr_null(q->head);
	ck_assert_int_le(r.cap, IPC_MAX_FRAME);
	ipc_reader_free(&r);
}

/* Start a big frame into pipe A, so the queue is mid-frame. */
static void
start_mid_frame(struct ipc_outq *q, int wfd, uint8_t **frames,
		const size_t *lens, int count)
{
	int big = -1;

	for (int i = 0; i < count; i++)
		if (lens[i] > 100000 && big < 0)
			big = i;
	ck_assert_int_ge(big, 0);
	ck_assert_int_eq(ipc_outq_push(q, frames[big], lens[big]), 0);
	ck_assert_int_eq(ipc_outq_push(q, frames[0], lens[0]), 0);
	ck_assert_int_gt(ipc_outq_write(q, wfd), 0);
	ck_assert(ipc_outq_mid_frame(q));
	ck_assert_ptr_nonnull(q->head);
}

/* The worker died: EPIPE, reset, and a fresh pipe starts clean. */
START_TEST(test_outq_epipe_reset)
{
	enum { N = 40 };
	size_t lens[N];
	uint8_t **frames = make_frames(N, lens, 31337);
	struct ipc_outq q;
	int a[2], b[2];

	signal(SIGPIPE, SIG_IGN);
	mkpipe(a);
	ipc_outq_init(&q, 64u << 20);
	start_mid_frame(&q, a[1], frames, lens, N);
	close(a[0]);
	errno = 0;
	ck_assert_int_eq(ipc_outq_write(&q, a[1]), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert_uint_eq(ipc_outq_reset(&q), 2);
	ck_assert(!ipc_outq_mid_frame(&q));
	ck_assert_ptr_null(q.head);
	ck_assert_uint_eq(q.bytes, 0);
	ck_assert_uint_eq(q.dropped, 0);
	close(a[1]);

	mkpipe(b);
	for (int i = 1; i < N; i++)
		ck_assert_int_eq(ipc_outq_push(&q, frames[i], lens[i]), 0);
	read_all_frames(b[0], &q, b[1], frames, lens, 1, N);
	close(b[0]);
	close(b[1]);
	ck_assert_uint_eq(ipc_outq_reset(&q), 0);
	free_frames(frames, N);
}
END_TEST

/* The pipe is replaced while the old reader still holds a partial frame. */
START_TEST(test_outq_reset_mid_frame)
{
	enum { N = 40 };
	size_t lens[N];
	uint8_t **frames = make_frames(N, lens, 4242);
	struct ipc_outq q;
	struct ipc_reader old;
	struct ipc_frame f;
	int a[2], b[2];

	mkpipe(a);
	ipc_outq_init(&q, 64u << 20);
	start_mid_frame(&q, a[1], frames, lens, N);
	/* The old reader has a partial frame and can never complete it. */
	ipc_reader_init(&old, 0);
	ck_assert_int_gt(ipc_reader_read(&old, a[0]), 0);
	ck_assert_int_eq(ipc_reader_next(&old, &f), 0);
	ck_assert_uint_gt(ipc_reader_pending(&old), 0);
	ipc_reader_free(&old);
	ck_assert_uint_eq(ipc_outq_reset(&q), 2);
	close(a[0]);
	close(a[1]);

	mkpipe(b);
	for (int i = 1; i < N; i++)
		ck_assert_int_eq(ipc_outq_push(&q, frames[i], lens[i]), 0);
	read_all_frames(b[0], &q, b[1], frames, lens, 1, N);
	close(b[0]);
	close(b[1]);
	free_frames(frames, N);
}
END_TEST

/* More frames than one writev() takes, all small: batching in order. */
START_TEST(test_outq_many_small)
{
	enum { N = 1000 };
	uint8_t frame[N][IPC_HDR_LEN + 8];
	size_t lens[N], got = 0;
	uint8_t *ptrs[N], out[N * (IPC_HDR_LEN + 8)];
	struct ipc_outq q;
	struct ipc_frame f;
	unsigned ci = 0;
	int fds[2];

	mkpipe(fds);
	ipc_outq_init(&q, sizeof(out));
	for (int i = 0; i < N; i++) {
		lens[i] = (size_t)ipc_ping_encode((uint64_t)i, frame[i],
						  sizeof(frame[i]));
		ptrs[i] = frame[i];
		ck_assert_int_eq(ipc_outq_push(&q, ptrs[i], lens[i]), 0);
	}
	while (got < sizeof(out)) {
		ck_assert_int_ge(ipc_outq_write(&q, fds[1]), 0);
		drain_odd(fds[0], out, sizeof(out), &got, &ci);
	}
	for (int i = 0; i < N; i++) {
		uint64_t ms;

		ck_assert_int_eq(
		    ipc_frame_parse(out + i * lens[0], lens[0], &f),
		    (int)lens[0]);
		ck_assert_int_eq(ipc_ping_decode(&f, &ms), 0);
		REQUIRE(ms == (uint64_t)i, "ping %d out of order", i);
	}
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* ---- reader ------------------------------------------------------------- */

/* A stream of assorted frames and the frame boundaries inside it. */
struct stream {
	uint8_t *buf;
	size_t len;
	size_t off[8], flen[8];
	int n;
};

static void
stream_add(struct stream *s, const uint8_t *f, size_t len)
{
	s->buf = realloc(s->buf, s->len + len);
	ck_assert_ptr_nonnull(s->buf);
	memcpy(s->buf + s->len, f, len);
	s->off[s->n] = s->len;
	s->flen[s->n] = len;
	s->n++;
	s->len += len;
}

static void
make_stream(struct stream *s)
{
	struct ipc_hello h = {3, 999};
	struct ipc_event ev;
	struct ev_store st;
	static char bigmsg[3000];
	uint8_t tmp[64], *f;
	size_t n;

	memset(s, 0, sizeof(*s));
	base_event(&ev);
	f = encode_exact(&ev, &n);
	stream_add(s, f, n);
	free(f);
	stream_add(s, tmp, (size_t)ipc_hello_encode(&h, tmp, sizeof(tmp)));
	stream_add(s, tmp, (size_t)ipc_ping_encode(5, tmp, sizeof(tmp)));
	stream_add(s, tmp,
		   (size_t)ipc_frame_encode(77, NULL, 0, tmp, sizeof(tmp)));
	rng_seed(99);
	random_event(&ev, &st, 10);
	memset(bigmsg, 'z', sizeof(bigmsg));
	ev.message = bigmsg;
	ev.message_len = sizeof(bigmsg);
	f = encode_exact(&ev, &n);
	stream_add(s, f, n);
	free(f);
	free(st.msg);
	stream_add(s, tmp,
		   (size_t)ipc_frame_encode(9, "hello", 5, tmp, sizeof(tmp)));
}

/* Hand out every frame available; each must be the next one expected. */
static void
drain_reader(struct ipc_reader *r, const struct stream *s, int *next)
{
	struct ipc_frame f;
	int rc;

	while ((rc = ipc_reader_next(r, &f)) > 0) {
		const uint8_t *want = s->buf + s->off[*next];

		REQUIRE(*next < s->n, "extra frame");
		REQUIRE((size_t)rc == s->flen[*next] &&
			    f.len == s->flen[*next] - IPC_HDR_LEN &&
			    f.type == get_le(want + 4, 2) &&
			    memcmp(f.payload, want + IPC_HDR_LEN, f.len) == 0,
			"frame %d differs", *next);
		(*next)++;
	}
	REQUIRE(rc == 0, "reader: %s", ipc_strerror(rc));
}

/* Feed all of buf, draining whenever the reader is full. */
static void
feed_all(struct ipc_reader *r, const uint8_t *buf, size_t len,
	 const struct stream *s, int *next)
{
	while (len > 0) {
		size_t n = ipc_reader_feed(r, buf, len);

		buf += n;
		len -= n;
		drain_reader(r, s, next);
		REQUIRE(n > 0 || len == 0, "reader stuck");
	}
}

START_TEST(test_reader_split_everywhere)
{
	struct stream s;

	make_stream(&s);
	for (size_t cut = 0; cut <= s.len; cut++) {
		struct ipc_reader r;
		int next = 0;

		ipc_reader_init(&r, 0);
		feed_all(&r, s.buf, cut, &s, &next);
		/* Only frames wholly before the cut came out. */
		for (int i = 0; i < s.n; i++)
			REQUIRE((s.off[i] + s.flen[i] <= cut) == (i < next),
				"cut %zu: %d frames out", cut, next);
		feed_all(&r, s.buf + cut, s.len - cut, &s, &next);
		REQUIRE(next == s.n, "cut %zu: %d frames", cut, next);
		REQUIRE(ipc_reader_pending(&r) == 0, "cut %zu left bytes", cut);
		ipc_reader_free(&r);
	}
	free(s.buf);
}
END_TEST

START_TEST(test_reader_byte_at_a_time)
{
	struct stream s;
	struct ipc_reader r;
	int next = 0;

	make_stream(&s);
	ipc_reader_init(&r, 0);
	for (size_t i = 0; i < s.len; i++) {
		ck_assert_uint_eq(ipc_reader_feed(&r, s.buf + i, 1), 1);
		drain_reader(&r, &s, &next);
	}
	ck_assert_int_eq(next, s.n);
	ipc_reader_free(&r);
	free(s.buf);
}
END_TEST

/* The buffer never exceeds the caller's bound, and full means full. */
START_TEST(test_reader_bounds)
{
	struct ipc_reader r;
	struct ipc_frame f;
	uint8_t pl[1001] = {0}, *buf, *big;
	size_t n, off;
	int fds[2], count;

	/* A frame of exactly the bound passes; one byte more does not. */
	ipc_reader_init(&r, 1000);
	buf = build_frame(77, 0, 0, 1000, pl, 1000, &n);
	ck_assert_uint_eq(ipc_reader_feed(&r, buf, n), n);
	ck_assert_int_eq(ipc_reader_next(&r, &f), (int)n);
	ck_assert_uint_le(r.cap, IPC_HDR_LEN + 1000);
	free(buf);
	buf = build_frame(77, 0, 0, 1001, pl, 1001, &n);
	ck_assert_uint_gt(ipc_reader_feed(&r, buf, n), 0);
	ck_assert_int_eq(ipc_reader_next(&r, &f), IPC_ETOOBIG);
	ck_assert_uint_eq(ipc_reader_feed(&r, buf, n), 0);
	ck_assert_uint_le(r.cap, IPC_HDR_LEN + 1000);
	free(buf);
	ipc_reader_free(&r);

	/* Whole frames filling the buffer: feed stops until they go. */
	ipc_reader_init(&r, 100);
	buf = build_frame(77, 0, 0, 0, NULL, 0, &n);
	for (count = 0; ipc_reader_feed(&r, buf, n) == n; count++)
		ck_assert_int_lt(count, 100);
	ck_assert_uint_eq(ipc_reader_feed(&r, buf, n), 0);
	mkpipe(fds);
	ck_assert_int_eq(write(fds[1], buf, n), (ssize_t)n);
	errno = 0;
	ck_assert_int_eq(ipc_reader_read(&r, fds[0]), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	for (int i = 0; i < count; i++)
		ck_assert_int_eq(ipc_reader_next(&r, &f), (int)n);
	/* The tail of the partial frame fits now, and so does the pipe's. */
	ck_assert_uint_gt(ipc_reader_feed(&r, buf, n), 0);
	ck_assert_int_gt(ipc_reader_read(&r, fds[0]), 0);
	ck_assert_uint_le(r.cap, IPC_HDR_LEN + 100);
	free(buf);
	ipc_reader_free(&r);

	/* The largest frame, in odd pieces: the buffer stops at its size. */
	big = calloc(1, IPC_MAX_PAYLOAD);
	buf = build_frame(77, 0, 0, IPC_MAX_PAYLOAD, big, IPC_MAX_PAYLOAD, &n);
	ipc_reader_init(&r, 0);
	for (off = 0; off < n;) {
		size_t k = n - off < 4093 ? n - off : 4093;

		ck_assert_uint_eq(ipc_reader_feed(&r, buf + off, k), k);
		off += k;
		if (off < n)
			REQUIRE(ipc_reader_next(&r, &f) == 0, "early frame");
	}
	ck_assert_int_eq(ipc_reader_next(&r, &f), (int)IPC_MAX_FRAME);
	ck_assert_uint_eq(r.cap, IPC_MAX_FRAME);
	ipc_reader_free(&r);
	free(buf);
	free(big);

	/* A bad stream is refused from its first byte, and read says so. */
	ipc_reader_init(&r, 0);
	ck_assert_int_eq(write(fds[1], "X", 1), 1);
	while (ipc_reader_read(&r, fds[0]) > 0)
		;
	ck_assert_int_eq(ipc_reader_next(&r, &f), IPC_EVERSION);
	ck_assert_int_eq(write(fds[1], "Y", 1), 1);
	errno = 0;
	ck_assert_int_eq(ipc_reader_read(&r, fds[0]), -1);
	ck_assert_int_eq(errno, EBADMSG);
	ipc_reader_free(&r);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* EAGAIN and EOF come through read(2)'s way. */
START_TEST(test_reader_eof)
{
	struct ipc_reader r;
	struct ipc_frame f;
	uint8_t frame[64];
	int fds[2], n;

	mkpipe(fds);
	ipc_reader_init(&r, 0);
	errno = 0;
	ck_assert_int_eq(ipc_reader_read(&r, fds[0]), -1);
	ck_assert_int_eq(errno, EAGAIN);
	n = ipc_ping_encode(1, frame, sizeof(frame));
	ck_assert_int_eq(write(fds[1], frame, (size_t)n), n);
	close(fds[1]);
	ck_assert_int_eq(ipc_reader_read(&r, fds[0]), n);
	ck_assert_int_eq(ipc_reader_read(&r, fds[0]), 0);
	ck_assert_int_eq(ipc_reader_next(&r, &f), n);
	ck_assert_int_eq(ipc_reader_next(&r, &f), 0);
	ipc_reader_free(&r);
	close(fds[0]);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ipc");
	TCase *codec = tcase_create("codec");
	TCase *outq = tcase_create("outq");
	TCase *reader = tcase_create("reader");
	SRunner *sr;
	int failed;

	tcase_add_test(codec, test_header_layout);
	tcase_add_test(codec, test_event_roundtrip_random);
	tcase_add_test(codec, test_event_max_size);
	tcase_add_test(codec, test_event_invalid);
	tcase_add_test(codec, test_parse_truncated);
	tcase_add_test(codec, test_decode_short_payload);
	tcase_add_test(codec, test_decode_bad_lengths);
	tcase_add_test(codec, test_decode_nul_everywhere);
	tcase_add_test(codec, test_parse_bad_magic);
	tcase_add_test(codec, test_parse_oversized);
	tcase_add_test(codec, test_types);
	tcase_add_test(codec, test_hello_ping_malformed);
	tcase_add_test(codec, test_kick_roundtrip);
	tcase_add_test(codec, test_kick_invalid);
	tcase_add_test(codec, test_kick_malformed);
	tcase_add_test(codec, test_loglevel_drain);
	tcase_add_test(outq, test_outq_pipe_fill);
	tcase_add_test(outq, test_outq_bound);
	tcase_add_test(outq, test_outq_epipe_reset);
	tcase_add_test(outq, test_outq_reset_mid_frame);
	tcase_add_test(outq, test_outq_many_small);
	tcase_add_test(reader, test_reader_split_everywhere);
	tcase_add_test(reader, test_reader_byte_at_a_time);
	tcase_add_test(reader, test_reader_bounds);
	tcase_add_test(reader, test_reader_eof);
	/* Sanitizer builds are slow; the pipe tests move megabytes. */
	tcase_set_timeout(outq, 60);
	tcase_set_timeout(reader, 60);
	tcase_set_timeout(codec, 60);
	suite_add_tcase(s, codec);
	suite_add_tcase(s, outq);
	suite_add_tcase(s, reader);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
