/*
 * ipc: the relay -> worker pipe protocol.
 *
 * The relay writes framed messages to one pipe per worker; it is the only
 * writer of each pipe, so frames only have to be written whole and in order
 * (PIPE_BUF atomicity is not needed).  Relay and workers are forked from the
 * same binary, so the format is private and strict: anything short, unknown
 * or inconsistent is an error the reader treats as fatal for that pipe.
 *
 * Frame: a 16-byte header, then `len` payload bytes.  Integers are
 * little-endian, written and read byte by byte (no alignment needed).
 *
 *   off size
 *     0    4  magic and version: 'O' 'E' IPC_VERSION 0
 *     4    2  type (IPC_HELLO, IPC_EVENT, ...)
 *     6    2  flags: none defined yet, must be 0 for every known type
 *     8    4  len: payload bytes, <= IPC_MAX_PAYLOAD (or the reader's bound)
 *    12    4  reserved, must be 0
 *
 * IPC_EVENT payload: a 40-byte fixed part, then the strings back to back in
 * this order, without terminators (see ipc.c for the offsets):
 *   u64 seq, u64 published_ms, i32 priority, u8 requires_ack (0/1),
 *   u8 target, u16 lengths of event_id, event_type, orchestrator, daemon,
 *   organization, channel, u32 message length, u16 reserved (0).
 * IPC_HELLO payload (12 bytes): u64 generation, u32 relay pid.
 * IPC_PING payload (8 bytes): u64 ms (the relay's CLOCK_MONOTONIC).
 * IPC_KICK payload: a 16-byte fixed part, then the strings back to back
 *   (orchestrator, daemon, jti, reason; no terminators):
 *   u8 match (IPC_KICK_* bits), u8 reserved (0), u16 orchestrator length,
 *   u16 daemon length, u8 jti length, u8 reason length, u64 conn_id.
 * IPC_LOGLEVEL payload (4 bytes): u32 syslog level (LOG_ERR..LOG_DEBUG).
 * IPC_DRAIN payload: the reason sent in the reconnect message (1..64
 *   printable ASCII bytes).
 *
 * The writer keeps a bounded ipc_outq per pipe so a full pipe never blocks
 * the relay; the reader accumulates bytes in an ipc_reader, which never
 * holds more than one maximal frame of partial data.  Writing to a pipe
 * whose reader is gone raises SIGPIPE: the process must ignore it (the
 * supervisor does, for itself and its children) to get EPIPE instead.
 */
#ifndef ORCHD_IPC_H
#define ORCHD_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IPC_VERSION 1
#define IPC_HDR_LEN 16
#define IPC_MAX_PAYLOAD (1024u * 1024u)
#define IPC_MAX_FRAME (IPC_HDR_LEN + IPC_MAX_PAYLOAD)

/* Message types.  0 is never valid, so a zeroed header is caught. */
#define IPC_HELLO 1 /* relay -> worker after the relay (re)starts */
#define IPC_EVENT 2 /* an event to deliver */
#define IPC_PING 3  /* liveness: the relay is alive and its pipe flows */
#define IPC_KICK 4  /* operator: close matching connections with 4006 */
#define IPC_LOGLEVEL 5 /* operator: set the worker's log level */
#define IPC_DRAIN 6    /* operator: drain this worker and exit */

/* Errors (negative) from parse and decode. */
#define IPC_EVERSION (-2)   /* bad magic or version */
#define IPC_ETOOBIG (-3)    /* payload length over the bound */
#define IPC_EMALFORMED (-4) /* short, long or inconsistent payload/header */
#define IPC_ETYPE (-5)      /* decoder called on a frame of another type */

/* Limits on IPC_EVENT fields, in bytes (no terminator). */
#define IPC_EVENT_ID_MAX 128
#define IPC_EVENT_TYPE_MAX 128
#define IPC_EVENT_NAME_MAX 63 /* orchestrator, daemon, organization */
#define IPC_EVENT_CHANNEL_MAX 64
#define IPC_EVENT_FIXED_LEN 40

/* ipc_event.target */
#define IPC_TARGET_ORCH 0 /* one orchestrator (optionally one daemon of it) */
#define IPC_TARGET_ORG 1  /* every orchestrator of organization */
#define IPC_TARGET_ALL 2  /* every orchestrator */

/* A parsed frame; payload points into the caller's buffer. */
struct ipc_frame {
	uint16_t type;
	uint16_t flags;
	uint32_t len;
	const uint8_t *payload;
};

/*
 * An event.  Strings are (pointer, length) pairs, not NUL-terminated, and
 * may not contain NUL; a pointer may be NULL when its length is 0.  After
 * ipc_event_decode() they point into the frame (zero copy), so they live as
 * long as the frame's buffer.
 *
 * Required: event_id, event_type, message non-empty; for IPC_TARGET_ORCH a
 * non-empty orchestrator; for IPC_TARGET_ORG a non-empty organization and an
 * empty orchestrator; for _ORG and _ALL an empty daemon.
 */
struct ipc_event {
	uint64_t seq;          /* per-orchestrator sequence, 0 if none */
	uint64_t published_ms; /* wall clock when the relay got it */
	int32_t priority;
	uint8_t requires_ack; /* 0 or 1 */
	uint8_t target;       /* IPC_TARGET_* */
	const char *event_id;
	size_t event_id_len; /* 1..IPC_EVENT_ID_MAX */
	const char *event_type;
	size_t event_type_len; /* 1..IPC_EVENT_TYPE_MAX */
	const char *orchestrator;
	size_t orchestrator_len; /* <= IPC_EVENT_NAME_MAX, 0 for org/all */
	const char *daemon;
	size_t daemon_len; /* <= IPC_EVENT_NAME_MAX, 0 = every daemon */
	const char *organization;
	size_t organization_len; /* <= IPC_EVENT_NAME_MAX */
	const char *channel;
	size_t channel_len; /* <= IPC_EVENT_CHANNEL_MAX, 0 = none */
	/* The serialized server `event` message, sent to daemons as is. */
	const char *message;
	size_t message_len; /* >= 1, the frame must fit IPC_MAX_FRAME */
};

/*
 * ipc_kick.match: what a connection must match to be closed (every bit set
 * must match).  IPC_KICK_DAEMON needs IPC_KICK_ORCH (daemon ids are only
 * unique within their orchestrator).
 */
#define IPC_KICK_ORCH 0x01u
#define IPC_KICK_DAEMON 0x02u
#define IPC_KICK_CONN 0x04u /* the registry conn_id */
#define IPC_KICK_JTI 0x08u  /* the jti of the token it authenticated with */
#define IPC_KICK_FIXED_LEN 16
#define IPC_KICK_JTI_MAX 127    /* JWT_ID_SIZE - 1 */
#define IPC_KICK_REASON_MAX 123 /* what fits a WebSocket close frame */
#define IPC_DRAIN_REASON_MAX 64

/* A kick; strings as in struct ipc_event (not NUL-terminated). */
struct ipc_kick {
	unsigned match; /* IPC_KICK_* */
	uint64_t conn_id;
	const char *orchestrator;
	size_t orchestrator_len; /* 1..IPC_EVENT_NAME_MAX with _ORCH, else 0 */
	const char *daemon;
	size_t daemon_len; /* 1..IPC_EVENT_NAME_MAX with _DAEMON, else 0 */
	const char *jti;
	size_t jti_len; /* 1..IPC_KICK_JTI_MAX with _JTI, else 0 */
	const char *reason;
	size_t reason_len; /* 0..IPC_KICK_REASON_MAX; 0: a default reason */
};

struct ipc_hello {
	uint64_t generation; /* bumped by the supervisor at each relay start */
	uint32_t pid;        /* the relay's pid */
};

/*
 * Encoders write one whole frame into out[0..cap) and return its length, or
 * -1 with errno EINVAL (bad field), EMSGSIZE (over IPC_MAX_FRAME) or
 * ENOBUFS (cap too small; nothing useful is left in out).
 */
int ipc_frame_encode(uint16_t type, const void *payload, size_t len,
		     uint8_t *out, size_t cap);
int ipc_event_encode(const struct ipc_event *ev, uint8_t *out, size_t cap);
int ipc_hello_encode(const struct ipc_hello *h, uint8_t *out, size_t cap);
int ipc_ping_encode(uint64_t ms, uint8_t *out, size_t cap);
int ipc_kick_encode(const struct ipc_kick *k, uint8_t *out, size_t cap);
/* level: LOG_ERR..LOG_DEBUG (syslog.h). */
int ipc_loglevel_encode(int level, uint8_t *out, size_t cap);
int ipc_drain_encode(const char *reason, uint8_t *out, size_t cap);
/* Exact frame length ipc_event_encode() needs, or 0 if ev is invalid. */
size_t ipc_event_frame_len(const struct ipc_event *ev);

/*
 * Look for one frame at the start of buf: > 0 its whole length (header and
 * payload), 0 when more bytes are needed, < 0 an IPC_E* error.  The magic
 * is checked as soon as 4 bytes are there, so a desynchronized stream fails
 * without waiting for a whole header.  The type is not checked: the caller
 * dispatches on it and treats an unknown one as fatal.  The _max variant
 * takes the payload bound (clamped to IPC_MAX_PAYLOAD).
 */
int ipc_frame_parse(const uint8_t *buf, size_t len, struct ipc_frame *f);
int ipc_frame_parse_max(const uint8_t *buf, size_t len, size_t max_payload,
			struct ipc_frame *f);

/* Decoders: 0 or an IPC_E* error; ev/h point into f's payload. */
int ipc_event_decode(const struct ipc_frame *f, struct ipc_event *ev);
int ipc_hello_decode(const struct ipc_frame *f, struct ipc_hello *h);
int ipc_ping_decode(const struct ipc_frame *f, uint64_t *ms);
int ipc_kick_decode(const struct ipc_frame *f, struct ipc_kick *k);
int ipc_loglevel_decode(const struct ipc_frame *f, int *level);
/* reason: out[0..cap) NUL-terminated (cap > IPC_DRAIN_REASON_MAX). */
int ipc_drain_decode(const struct ipc_frame *f, char *reason, size_t cap);

const char *ipc_strerror(int err);
const char *ipc_type_name(uint16_t type); /* "unknown" for the unknown */

/*
 * Writer side: a bounded FIFO of whole frames for one pipe.
 *
 * ipc_outq_push() copies a frame in unless that would take the unwritten
 * bytes over max_bytes; then the frame is dropped, counted in dropped, and
 * -1 is returned (also, without counting, for a buffer that is not exactly
 * one valid frame).  ipc_outq_write() writes what the non-blocking fd takes
 * with writev(): a partly written frame is always finished first, so frames
 * are never interleaved.  It returns the bytes written (0 if the pipe is
 * full or the queue empty) or -1 with errno (EPIPE: the reader is gone).
 * After -1, or when the pipe is replaced by a restarted worker's, call
 * ipc_outq_reset(): it drops every queued frame, the partly written one
 * included, so the next reader starts at a frame boundary.
 */
struct ipc_outq_frame;

struct ipc_outq {
	struct ipc_outq_frame *head, *tail;
	size_t off;       /* bytes of head already written */
	size_t bytes;     /* unwritten bytes queued */
	size_t max_bytes; /* the bound on bytes */
	size_t nframes;
	uint64_t dropped;       /* frames refused because of max_bytes */
	uint64_t dropped_bytes; /* their bytes */
};

void ipc_outq_init(struct ipc_outq *q, size_t max_bytes);
int ipc_outq_push(struct ipc_outq *q, const uint8_t *frame, size_t len);
ssize_t ipc_outq_write(struct ipc_outq *q, int fd);
/* Drop everything; returns the frames dropped (partly written included). */
size_t ipc_outq_reset(struct ipc_outq *q);
/* True while a frame is partly written (the reader is mid-frame). */
int ipc_outq_mid_frame(const struct ipc_outq *q);

/*
 * Reader side: accumulate bytes, hand out whole frames.
 *
 * Typical use, on a readable pipe: n = ipc_reader_read(r, fd) (0 is EOF:
 * the relay is gone; -1 with EAGAIN is nothing to read), then
 * while ((rc = ipc_reader_next(r, &f)) > 0) dispatch(&f); and rc < 0 is
 * fatal.  Frames handed out by ipc_reader_next() stay valid until the next
 * ipc_reader_read/feed/free, which may move or overwrite the buffer.  The
 * buffer starts small, grows to the largest frame seen, and never past
 * IPC_HDR_LEN + max_payload.
 */
struct ipc_reader {
	uint8_t *buf;
	size_t cap;         /* allocated bytes */
	size_t start, end;  /* unconsumed bytes are buf[start..end) */
	size_t max_payload; /* <= IPC_MAX_PAYLOAD */
};

void ipc_reader_init(struct ipc_reader *r, size_t max_payload); /* 0: max */
void ipc_reader_free(struct ipc_reader *r);
/*
 * One read(2): bytes read, 0 on EOF, -1 with errno: EAGAIN as read(2),
 * EBADMSG when the bytes held are not a valid frame (_next says why),
 * ENOBUFS when whole frames fill the buffer (call _next first).
 */
ssize_t ipc_reader_read(struct ipc_reader *r, int fd);
/* Copy in up to len bytes; returns how many fit (0: call _next first). */
size_t ipc_reader_feed(struct ipc_reader *r, const void *data, size_t len);
/* > 0 a frame's length and *f filled, 0 need more, < 0 IPC_E*. */
int ipc_reader_next(struct ipc_reader *r, struct ipc_frame *f);
/* Bytes held that are not yet handed out as frames. */
size_t ipc_reader_pending(const struct ipc_reader *r);

#endif
