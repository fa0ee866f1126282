/*
 * fuzz_ipc: the relay -> worker pipe protocol as a worker reads it.
 *
 * Input: byte 0 is the read size (0: all at once) and byte 1 the payload
 * bound (0: IPC_MAX_PAYLOAD, else byte * 64); the rest is the pipe's
 * bytes, fed to an ipc_reader one read at a time; each frame handed out is
 * decoded by its type's decoder.
 * Invariants: ipc_frame_parse_max() never claims more than it was given
 * nor a payload over the bound, and agrees with the reader; a frame that
 * decodes re-encodes to exactly its own bytes (encode(decode(x)) == x);
 * the reader never holds more than one maximal frame; an error is
 * sticky.
 */
#include "fuzz.h"

#include <string.h>
#include <syslog.h>

#include "orchd/ipc.h"

FUZZ_DECLARE(ipc);

static uint8_t enc[IPC_MAX_FRAME];

static void
same_bytes(int n, const uint8_t *frame, size_t len)
{
	FUZZ_ASSERT(n == (int)len && memcmp(enc, frame, len) == 0);
}

static void
decode(const struct ipc_frame *f, const uint8_t *frame, size_t len)
{
	int rc;

	FUZZ_ASSERT(ipc_type_name(f->type) != NULL);
	switch (f->type) {
	case IPC_EVENT: {
		struct ipc_event ev;

		if ((rc = ipc_event_decode(f, &ev)) != 0)
			break;
		FUZZ_ASSERT(ev.event_id_len >= 1 &&
			    ev.event_id_len <= IPC_EVENT_ID_MAX);
		FUZZ_ASSERT(ev.event_type_len >= 1 &&
			    ev.event_type_len <= IPC_EVENT_TYPE_MAX);
		FUZZ_ASSERT(ev.message_len >= 1 && ev.requires_ack <= 1);
		FUZZ_ASSERT(ipc_event_frame_len(&ev) == len);
		same_bytes(ipc_event_encode(&ev, enc, sizeof(enc)), frame, len);
		break;
	}
	case IPC_HELLO: {
		struct ipc_hello h;

		if ((rc = ipc_hello_decode(f, &h)) != 0)
			break;
		same_bytes(ipc_hello_encode(&h, enc, sizeof(enc)), frame, len);
		break;
	}
	case IPC_PING: {
		uint64_t ms;

		if ((rc = ipc_ping_decode(f, &ms)) != 0)
			break;
		same_bytes(ipc_ping_encode(ms, enc, sizeof(enc)), frame, len);
		break;
	}
	case IPC_KICK: {
		struct ipc_kick k;

		if ((rc = ipc_kick_decode(f, &k)) != 0)
			break;
		FUZZ_ASSERT(k.reason_len <= IPC_KICK_REASON_MAX &&
			    k.jti_len <= IPC_KICK_JTI_MAX);
		same_bytes(ipc_kick_encode(&k, enc, sizeof(enc)), frame, len);
		break;
	}
	case IPC_LOGLEVEL: {
		int level;

		if ((rc = ipc_loglevel_decode(f, &level)) != 0)
			break;
		FUZZ_ASSERT(level >= LOG_ERR && level <= LOG_DEBUG);
		same_bytes(ipc_loglevel_encode(level, enc, sizeof(enc)), frame,
			   len);
		break;
	}
	case IPC_DRAIN: {
		char reason[IPC_DRAIN_REASON_MAX + 1];

		if ((rc = ipc_drain_decode(f, reason, sizeof(reason))) != 0)
			break;
		FUZZ_ASSERT(strlen(reason) == f->len);
		same_bytes(ipc_drain_encode(reason, enc, sizeof(enc)), frame,
			   len);
		break;
	}
	default:
		/* Another type's decoder refuses it. */
		FUZZ_ASSERT(ipc_ping_decode(f, &(uint64_t){0}) == IPC_ETYPE);
		return;
	}
}

int
FUZZ_INIT(ipc)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(ipc)(const uint8_t *data, size_t size)
{
	struct ipc_reader r;
	size_t chunk, max, pos = 0;
	int failed = 0;

	if (size < 2)
		return 0;
	chunk = data[0] ? data[0] : size;
	max = data[1] ? (size_t)data[1] * 64 : IPC_MAX_PAYLOAD;
	data += 2;
	size -= 2;
	ipc_reader_init(&r, max);
	while (pos < size && !failed) {
		size_t n = size - pos < chunk ? size - pos : chunk;
		size_t took = ipc_reader_feed(&r, data + pos, n);
		struct ipc_frame f;
		int rc;

		FUZZ_ASSERT(took <= n);
		pos += took;
		FUZZ_ASSERT(r.cap <= IPC_HDR_LEN + max);
		while ((rc = ipc_reader_next(&r, &f)) > 0) {
			const uint8_t *frame = f.payload - IPC_HDR_LEN;
			struct ipc_frame g;

			FUZZ_ASSERT((size_t)rc == IPC_HDR_LEN + f.len &&
				    f.len <= max);
			/* The same frame, parsed in place. */
			FUZZ_ASSERT(ipc_frame_parse_max(frame, (size_t)rc, max,
							&g) == rc);
			FUZZ_ASSERT(g.type == f.type && g.len == f.len &&
				    g.payload == f.payload);
			decode(&f, frame, (size_t)rc);
		}
		if (rc < 0) {
			FUZZ_ASSERT(ipc_strerror(rc) != NULL);
			FUZZ_ASSERT(ipc_reader_next(&r, &f) == rc);
			failed = 1;
		} else if (took == 0 && n > 0) {
			/* Room is only missing while frames are due. */
			FUZZ_ASSERT(0);
		}
	}
	ipc_reader_free(&r);
	/* The parser alone, on the raw bytes. */
	{
		struct ipc_frame f;
		int rc = ipc_frame_parse_max(data, size, max, &f);

		FUZZ_ASSERT(rc <= (int)size);
		if (rc > 0)
			FUZZ_ASSERT(f.len <= max &&
				    (size_t)rc == IPC_HDR_LEN + f.len);
	}
	return 0;
}
