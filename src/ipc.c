/*
 * ipc: the relay -> worker pipe protocol (frames, codecs, output queue,
 * reader).  See include/orchd/ipc.h for the format.
 *
 * Everything here is pure code over caller buffers except the two I/O
 * helpers, ipc_outq_write() and ipc_reader_read(), which do one job each on
 * a non-blocking fd and never wait.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#include "orchd/ipc.h"
#include "orchd/util.h"

/* Frame header offsets. */
#define HDR_MAGIC 0
#define HDR_TYPE 4
#define HDR_FLAGS 6
#define HDR_LEN 8
#define HDR_RESERVED 12

/* IPC_EVENT fixed part offsets; the strings start at IPC_EVENT_FIXED_LEN. */
#define EV_SEQ 0
#define EV_PUBLISHED 8
#define EV_PRIORITY 16
#define EV_ACK 20
#define EV_TARGET 21
#define EV_LENS 22 /* six u16: id, type, orchestrator, daemon, org, channel */
#define EV_MSGLEN 34
#define EV_RESERVED 38

#define HELLO_LEN 12
#define PING_LEN 8
#define LOGLEVEL_LEN 4

/* IPC_KICK fixed part offsets. */
#define KICK_MATCH 0
#define KICK_RESERVED 1
#define KICK_ORCH_LEN 2
#define KICK_DAEMON_LEN 4
#define KICK_JTI_LEN 6
#define KICK_REASON_LEN 7
#define KICK_CONN_ID 8
#define KICK_KNOWN                                                             \
	(IPC_KICK_ORCH | IPC_KICK_DAEMON | IPC_KICK_CONN | IPC_KICK_JTI)

/* iovecs per writev(): a pipe holds 64 KiB by default, so more is waste. */
#define OUTQ_IOV 64
/* A reader's first buffer: one default pipe's worth, drained in one read. */
#define READER_INIT_CAP 65536

static const uint8_t ipc_magic[4] = {'O', 'E', IPC_VERSION, 0};

struct ipc_outq_frame {
	struct ipc_outq_frame *next;
	size_t len;
	uint8_t data[];
};

/*
 * Little-endian byte access.  Byte by byte, so no alignment or aliasing
 * question arises; compilers turn these into single loads and stores.
 */
static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Two's complement back to int32_t without implementation-defined casts. */
static int32_t
u32_to_i32(uint32_t v)
{
	if (v <= INT32_MAX)
		return (int32_t)v;
	return -(int32_t)(~v) - 1;
}

static void
put_header(uint8_t *out, uint16_t type, uint32_t len)
{
	memcpy(out + HDR_MAGIC, ipc_magic, sizeof(ipc_magic));
	put16(out + HDR_TYPE, type);
	put16(out + HDR_FLAGS, 0);
	put32(out + HDR_LEN, len);
	put32(out + HDR_RESERVED, 0);
}

/* Returns the frame length, or -1 with errno, before anything is written. */
static int
frame_room(size_t payload_len, size_t cap)
{
	if (payload_len > IPC_MAX_PAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	if (cap < IPC_HDR_LEN + payload_len) {
		errno = ENOBUFS;
		return -1;
	}
	return (int)(IPC_HDR_LEN + payload_len);
}

int
ipc_frame_encode(uint16_t type, const void *payload, size_t len, uint8_t *out,
		 size_t cap)
{
	int n;

	if (type == 0 || (payload == NULL && len > 0)) {
		errno = EINVAL;
		return -1;
	}
	if ((n = frame_room(len, cap)) < 0)
		return -1;
	put_header(out, type, (uint32_t)len);
	if (len > 0)
		memcpy(out + IPC_HDR_LEN, payload, len);
	return n;
}

/* A string field: within its limits, present if non-empty, NUL-free. */
static int
str_ok(const char *s, size_t len, size_t min, size_t max)
{
	if (len < min || len > max)
		return 0;
	if (len == 0)
		return 1;
	return s != NULL && memchr(s, '\0', len) == NULL;
}

/*
 * The one validity rule for events, applied by the encoder to what the
 * relay hands it and by the decoder to what came down the pipe, so both
 * ends agree on what an event may look like.  The target rules keep the
 * worker's routing simple: it never has to guess what an orchestrator on an
 * org-wide event means.  The message is JSON, which cannot hold a raw NUL
 * (RFC 8259 escapes control characters), so one there is corruption too.
 */
static int
event_ok(const struct ipc_event *ev)
{
	if (!str_ok(ev->event_id, ev->event_id_len, 1, IPC_EVENT_ID_MAX) ||
	    !str_ok(ev->event_type, ev->event_type_len, 1,
		    IPC_EVENT_TYPE_MAX) ||
	    !str_ok(ev->orchestrator, ev->orchestrator_len, 0,
		    IPC_EVENT_NAME_MAX) ||
	    !str_ok(ev->daemon, ev->daemon_len, 0, IPC_EVENT_NAME_MAX) ||
	    !str_ok(ev->organization, ev->organization_len, 0,
		    IPC_EVENT_NAME_MAX) ||
	    !str_ok(ev->channel, ev->channel_len, 0, IPC_EVENT_CHANNEL_MAX) ||
	    !str_ok(ev->message, ev->message_len, 1, IPC_MAX_PAYLOAD))
		return 0;
	if (ev->requires_ack > 1)
		return 0;
	switch (ev->target) {
	case IPC_TARGET_ORCH:
		return ev->orchestrator_len > 0;
	case IPC_TARGET_ORG:
		return ev->organization_len > 0 && ev->orchestrator_len == 0 &&
		       ev->daemon_len == 0;
	case IPC_TARGET_ALL:
		return ev->orchestrator_len == 0 && ev->daemon_len == 0;
	default:
		return 0;
	}
}

/* Payload bytes of a valid event (cannot overflow: every part is bounded). */
static size_t
event_payload_len(const struct ipc_event *ev)
{
	return IPC_EVENT_FIXED_LEN + ev->event_id_len + ev->event_type_len +
	       ev->orchestrator_len + ev->daemon_len + ev->organization_len +
	       ev->channel_len + ev->message_len;
}

size_t
ipc_event_frame_len(const struct ipc_event *ev)
{
	size_t n;

	if (!event_ok(ev))
		return 0;
	n = event_payload_len(ev);
	return n > IPC_MAX_PAYLOAD ? 0 : IPC_HDR_LEN + n;
}

static uint8_t *
put_str(uint8_t *p, const char *s, size_t len)
{
	if (len > 0)
		memcpy(p, s, len);
	return p + len;
}

int
ipc_event_encode(const struct ipc_event *ev, uint8_t *out, size_t cap)
{
	uint8_t *p;
	size_t plen;
	int n;

	if (!event_ok(ev)) {
		errno = EINVAL;
		return -1;
	}
	plen = event_payload_len(ev);
	if ((n = frame_room(plen, cap)) < 0)
		return -1;
	put_header(out, IPC_EVENT, (uint32_t)plen);
	p = out + IPC_HDR_LEN;
	put64(p + EV_SEQ, ev->seq);
	put64(p + EV_PUBLISHED, ev->published_ms);
	put32(p + EV_PRIORITY, (uint32_t)ev->priority);
	p[EV_ACK] = ev->requires_ack;
	p[EV_TARGET] = ev->target;
	/* Every string but the message is <= 128 bytes: u16 leaves headroom. */
	put16(p + EV_LENS, (uint16_t)ev->event_id_len);
	put16(p + EV_LENS + 2, (uint16_t)ev->event_type_len);
	put16(p + EV_LENS + 4, (uint16_t)ev->orchestrator_len);
	put16(p + EV_LENS + 6, (uint16_t)ev->daemon_len);
	put16(p + EV_LENS + 8, (uint16_t)ev->organization_len);
	put16(p + EV_LENS + 10, (uint16_t)ev->channel_len);
	put32(p + EV_MSGLEN, (uint32_t)ev->message_len);
	put16(p + EV_RESERVED, 0);
	p += IPC_EVENT_FIXED_LEN;
	p = put_str(p, ev->event_id, ev->event_id_len);
	p = put_str(p, ev->event_type, ev->event_type_len);
	p = put_str(p, ev->orchestrator, ev->orchestrator_len);
	p = put_str(p, ev->daemon, ev->daemon_len);
	p = put_str(p, ev->organization, ev->organization_len);
	p = put_str(p, ev->channel, ev->channel_len);
	put_str(p, ev->message, ev->message_len);
	return n;
}

int
ipc_hello_encode(const struct ipc_hello *h, uint8_t *out, size_t cap)
{
	uint8_t pl[HELLO_LEN];

	put64(pl, h->generation);
	put32(pl + 8, h->pid);
	return ipc_frame_encode(IPC_HELLO, pl, sizeof(pl), out, cap);
}

int
ipc_ping_encode(uint64_t ms, uint8_t *out, size_t cap)
{
	uint8_t pl[PING_LEN];

	put64(pl, ms);
	return ipc_frame_encode(IPC_PING, pl, sizeof(pl), out, cap);
}

/*
 * A kick selects something, and each string is there exactly when its bit
 * says so: a kick that matched every connection by accident (an empty
 * selector) would be the worst possible corruption.
 */
static int
kick_ok(const struct ipc_kick *k)
{
	if (k->match == 0 || (k->match & ~KICK_KNOWN) != 0)
		return 0;
	if ((k->match & IPC_KICK_DAEMON) && !(k->match & IPC_KICK_ORCH))
		return 0;
	if (!str_ok(k->orchestrator, k->orchestrator_len,
		    (k->match & IPC_KICK_ORCH) ? 1 : 0,
		    (k->match & IPC_KICK_ORCH) ? IPC_EVENT_NAME_MAX : 0) ||
	    !str_ok(k->daemon, k->daemon_len,
		    (k->match & IPC_KICK_DAEMON) ? 1 : 0,
		    (k->match & IPC_KICK_DAEMON) ? IPC_EVENT_NAME_MAX : 0) ||
	    !str_ok(k->jti, k->jti_len, (k->match & IPC_KICK_JTI) ? 1 : 0,
		    (k->match & IPC_KICK_JTI) ? IPC_KICK_JTI_MAX : 0) ||
	    !str_ok(k->reason, k->reason_len, 0, IPC_KICK_REASON_MAX))
		return 0;
	return 1;
}

int
ipc_kick_encode(const struct ipc_kick *k, uint8_t *out, size_t cap)
{
	uint8_t *p;
	size_t plen;
	int n;

	if (!kick_ok(k)) {
		errno = EINVAL;
		return -1;
	}
	plen = IPC_KICK_FIXED_LEN + k->orchestrator_len + k->daemon_len +
	       k->jti_len + k->reason_len;
	if ((n = frame_room(plen, cap)) < 0)
		return -1;
	put_header(out, IPC_KICK, (uint32_t)plen);
	p = out + IPC_HDR_LEN;
	p[KICK_MATCH] = (uint8_t)k->match;
	p[KICK_RESERVED] = 0;
	put16(p + KICK_ORCH_LEN, (uint16_t)k->orchestrator_len);
	put16(p + KICK_DAEMON_LEN, (uint16_t)k->daemon_len);
	p[KICK_JTI_LEN] = (uint8_t)k->jti_len;
	p[KICK_REASON_LEN] = (uint8_t)k->reason_len;
	put64(p + KICK_CONN_ID, k->conn_id);
	p += IPC_KICK_FIXED_LEN;
	p = put_str(p, k->orchestrator, k->orchestrator_len);
	p = put_str(p, k->daemon, k->daemon_len);
	p = put_str(p, k->jti, k->jti_len);
	put_str(p, k->reason, k->reason_len);
	return n;
}

static int
level_ok(int level)
{
	return level >= LOG_ERR && level <= LOG_DEBUG;
}

int
ipc_loglevel_encode(int level, uint8_t *out, size_t cap)
{
	uint8_t pl[LOGLEVEL_LEN];

	if (!level_ok(level)) {
		errno = EINVAL;
		return -1;
	}
	put32(pl, (uint32_t)level);
	return ipc_frame_encode(IPC_LOGLEVEL, pl, sizeof(pl), out, cap);
}

/* The reason goes into a JSON string: printable ASCII keeps that simple. */
static int
reason_ok(const char *s, size_t len)
{
	if (s == NULL || len == 0 || len > IPC_DRAIN_REASON_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return 1;
}

int
ipc_drain_encode(const char *reason, uint8_t *out, size_t cap)
{
	size_t len = reason != NULL ? strlen(reason) : 0;

	if (!reason_ok(reason, len)) {
		errno = EINVAL;
		return -1;
	}
	return ipc_frame_encode(IPC_DRAIN, reason, len, out, cap);
}

int
ipc_frame_parse_max(const uint8_t *buf, size_t len, size_t max_payload,
		    struct ipc_frame *f)
{
	size_t n = len < sizeof(ipc_magic) ? len : sizeof(ipc_magic);
	uint32_t plen;

	if (max_payload > IPC_MAX_PAYLOAD)
		max_payload = IPC_MAX_PAYLOAD;
	/*
	 * Check the magic on whatever prefix is there: a stream that lost
	 * sync fails now instead of waiting for bytes that may never come.
	 */
	if (n > 0 && memcmp(buf, ipc_magic, n) != 0)
		return IPC_EVERSION;
	if (len < IPC_HDR_LEN)
		return 0;
	if (get32(buf + HDR_RESERVED) != 0)
		return IPC_EMALFORMED;
	plen = get32(buf + HDR_LEN);
	if (plen > max_payload)
		return IPC_ETOOBIG;
	if (len - IPC_HDR_LEN < plen)
		return 0;
	f->type = get16(buf + HDR_TYPE);
	f->flags = get16(buf + HDR_FLAGS);
	f->len = plen;
	f->payload = buf + IPC_HDR_LEN;
	return (int)(IPC_HDR_LEN + plen);
}

int
ipc_frame_parse(const uint8_t *buf, size_t len, struct ipc_frame *f)
{
	return ipc_frame_parse_max(buf, len, IPC_MAX_PAYLOAD, f);
}

/* Common checks of a frame handed to a typed decoder. */
static int
frame_check(const struct ipc_frame *f, uint16_t type)
{
	if (f->type != type)
		return IPC_ETYPE;
	if (f->flags != 0 || f->len > IPC_MAX_PAYLOAD)
		return IPC_EMALFORMED;
	return 0;
}

int
ipc_event_decode(const struct ipc_frame *f, struct ipc_event *ev)
{
	const uint8_t *p = f->payload;
	const char *s;
	size_t lens[6], sum;
	int rc;

	if ((rc = frame_check(f, IPC_EVENT)) != 0)
		return rc;
	if (f->len < IPC_EVENT_FIXED_LEN || get16(p + EV_RESERVED) != 0)
		return IPC_EMALFORMED;
	memset(ev, 0, sizeof(*ev));
	ev->seq = get64(p + EV_SEQ);
	ev->published_ms = get64(p + EV_PUBLISHED);
	ev->priority = u32_to_i32(get32(p + EV_PRIORITY));
	ev->requires_ack = p[EV_ACK];
	ev->target = p[EV_TARGET];
	ev->message_len = get32(p + EV_MSGLEN);
	/*
	 * The lengths must add up to the payload exactly: a frame with bytes
	 * left over is as wrong as one that is short.  The message length is
	 * held to the payload first, so the sum cannot wrap even in a 32-bit
	 * size_t.
	 */
	if (ev->message_len > f->len)
		return IPC_EMALFORMED;
	sum = IPC_EVENT_FIXED_LEN + ev->message_len;
	for (int i = 0; i < 6; i++) {
		lens[i] = get16(p + EV_LENS + 2 * i);
		sum += lens[i];
	}
	if (sum != f->len)
		return IPC_EMALFORMED;
	{
		/* The six strings, in wire order, back to back. */
		const char **ptrs[6] = {&ev->event_id,     &ev->event_type,
					&ev->orchestrator, &ev->daemon,
					&ev->organization, &ev->channel};
		size_t *plens[6] = {&ev->event_id_len,	   &ev->event_type_len,
				    &ev->orchestrator_len, &ev->daemon_len,
				    &ev->organization_len, &ev->channel_len};

		s = (const char *)p + IPC_EVENT_FIXED_LEN;
		for (int i = 0; i < 6; i++) {
			*ptrs[i] = s;
			*plens[i] = lens[i];
			s += lens[i];
		}
	}
	ev->message = s;
	return event_ok(ev) ? 0 : IPC_EMALFORMED;
}

int
ipc_hello_decode(const struct ipc_frame *f, struct ipc_hello *h)
{
	int rc;

	if ((rc = frame_check(f, IPC_HELLO)) != 0)
		return rc;
	if (f->len != HELLO_LEN)
		return IPC_EMALFORMED;
	h->generation = get64(f->payload);
	h->pid = get32(f->payload + 8);
	return 0;
}

int
ipc_ping_decode(const struct ipc_frame *f, uint64_t *ms)
{
	int rc;

	if ((rc = frame_check(f, IPC_PING)) != 0)
		return rc;
	if (f->len != PING_LEN)
		return IPC_EMALFORMED;
	*ms = get64(f->payload);
	return 0;
}

int
ipc_kick_decode(const struct ipc_frame *f, struct ipc_kick *k)
{
	const uint8_t *p = f->payload;
	const char *s;
	int rc;

	if ((rc = frame_check(f, IPC_KICK)) != 0)
		return rc;
	if (f->len < IPC_KICK_FIXED_LEN || p[KICK_RESERVED] != 0)
		return IPC_EMALFORMED;
	memset(k, 0, sizeof(*k));
	k->match = p[KICK_MATCH];
	k->orchestrator_len = get16(p + KICK_ORCH_LEN);
	k->daemon_len = get16(p + KICK_DAEMON_LEN);
	k->jti_len = p[KICK_JTI_LEN];
	k->reason_len = p[KICK_REASON_LEN];
	k->conn_id = get64(p + KICK_CONN_ID);
	if ((size_t)f->len != IPC_KICK_FIXED_LEN + k->orchestrator_len +
				  k->daemon_len + k->jti_len + k->reason_len)
		return IPC_EMALFORMED;
	s = (const char *)p + IPC_KICK_FIXED_LEN;
	k->orchestrator = s;
	s += k->orchestrator_len;
	k->daemon = s;
	s += k->daemon_len;
	k->jti = s;
	s += k->jti_len;
	k->reason = s;
	return kick_ok(k) ? 0 : IPC_EMALFORMED;
}

int
ipc_loglevel_decode(const struct ipc_frame *f, int *level)
{
	uint32_t v;
	int rc;

	if ((rc = frame_check(f, IPC_LOGLEVEL)) != 0)
		return rc;
	if (f->len != LOGLEVEL_LEN)
		return IPC_EMALFORMED;
	v = get32(f->payload);
	if (v > (uint32_t)LOG_DEBUG || !level_ok((int)v))
		return IPC_EMALFORMED;
	*level = (int)v;
	return 0;
}

int
ipc_drain_decode(const struct ipc_frame *f, char *reason, size_t cap)
{
	int rc;

	if ((rc = frame_check(f, IPC_DRAIN)) != 0)
		return rc;
	if (!reason_ok((const char *)f->payload, f->len))
		return IPC_EMALFORMED;
	if (cap <= f->len)
		return IPC_ETOOBIG;
	memcpy(reason, f->payload, f->len);
	reason[f->len] = '\0';
	return 0;
}

const char *
ipc_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case IPC_EVERSION:
		return "bad magic or version";
	case IPC_ETOOBIG:
		return "frame too big";
	case IPC_EMALFORMED:
		return "malformed frame";
	case IPC_ETYPE:
		return "unexpected frame type";
	default:
		return "unknown error";
	}
}

const char *
ipc_type_name(uint16_t type)
{
	switch (type) {
	case IPC_HELLO:
		return "hello";
	case IPC_EVENT:
		return "event";
	case IPC_PING:
		return "ping";
	case IPC_KICK:
		return "kick";
	case IPC_LOGLEVEL:
		return "loglevel";
	case IPC_DRAIN:
		return "drain";
	default:
		return "unknown";
	}
}

/* ---- writer side ------------------------------------------------------- */

void
ipc_outq_init(struct ipc_outq *q, size_t max_bytes)
{
	memset(q, 0, sizeof(*q));
	q->max_bytes = max_bytes;
}

int
ipc_outq_push(struct ipc_outq *q, const uint8_t *frame, size_t len)
{
	struct ipc_outq_frame *fr;
	struct ipc_frame f;

	/*
	 * Only whole, valid frames go in: the queue's promise that the
	 * reader always resumes at a frame boundary rests on it.
	 */
	if (len < IPC_HDR_LEN || ipc_frame_parse(frame, len, &f) != (int)len) {
		errno = EINVAL;
		return -1;
	}
	/* Tail drop: the frames already queued may be partly written. */
	if (q->bytes > q->max_bytes || len > q->max_bytes - q->bytes) {
		q->dropped++;
		q->dropped_bytes += len;
		errno = ENOBUFS;
		return -1;
	}
	fr = util_malloc(sizeof(*fr) + len);
	fr->next = NULL;
	fr->len = len;
	memcpy(fr->data, frame, len);
	if (q->tail != NULL)
		q->tail->next = fr;
	else
		q->head = fr;
	q->tail = fr;
	q->bytes += len;
	q->nframes++;
	return 0;
}

/* Forget n written bytes from the front, freeing finished frames. */
static void
outq_consume(struct ipc_outq *q, size_t n)
{
	struct ipc_outq_frame *fr;

	q->bytes -= n;
	while (n > 0) {
		fr = q->head;
		if (n < fr->len - q->off) {
			q->off += n;
			return;
		}
		n -= fr->len - q->off;
		q->off = 0;
		q->head = fr->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->nframes--;
		free(fr);
	}
}

ssize_t
ipc_outq_write(struct ipc_outq *q, int fd)
{
	struct iovec iov[OUTQ_IOV];
	struct ipc_outq_frame *fr;
	size_t total = 0, want;
	ssize_t n;
	int niov;

	while (q->head != NULL) {
		niov = 0;
		want = 0;
		for (fr = q->head; fr != NULL && niov < OUTQ_IOV;
		     fr = fr->next) {
			size_t off = fr == q->head ? q->off : 0;

			iov[niov].iov_base = fr->data + off;
			iov[niov].iov_len = fr->len - off;
			want += fr->len - off;
			niov++;
		}
		n = writev(fd, iov, niov);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		outq_consume(q, (size_t)n);
		total += (size_t)n;
		/* A short write means a full pipe: a retry would be EAGAIN. */
		if ((size_t)n < want)
			break;
	}
	return (ssize_t)total;
}

size_t
ipc_outq_reset(struct ipc_outq *q)
{
	struct ipc_outq_frame *fr, *next;
	size_t n = q->nframes;

	for (fr = q->head; fr != NULL; fr = next) {
		next = fr->next;
		free(fr);
	}
	q->head = q->tail = NULL;
	q->off = 0;
	q->bytes = 0;
	q->nframes = 0;
	return n;
}

int
ipc_outq_mid_frame(const struct ipc_outq *q)
{
	return q->off > 0;
}

/* ---- reader side ------------------------------------------------------- */

void
ipc_reader_init(struct ipc_reader *r, size_t max_payload)
{
	memset(r, 0, sizeof(*r));
	if (max_payload == 0 || max_payload > IPC_MAX_PAYLOAD)
		max_payload = IPC_MAX_PAYLOAD;
	r->max_payload = max_payload;
}

void
ipc_reader_free(struct ipc_reader *r)
{
	UTIL_FREE(r->buf);
	r->cap = r->start = r->end = 0;
}

/*
 * Make room for more input and return how much there is, or -1 when the
 * bytes held do not start a valid frame (ipc_reader_next() reports why).
 *
 * Unconsumed bytes move to the front first, so a frame always sits whole in
 * the buffer and the frames handed out before this call are invalidated
 * only here, when the caller asks for more input.  The buffer then grows to
 * the size the pending header announces, which the parser has already held
 * to max_payload: the reader never holds more than one maximal frame.
 */
static ssize_t
reader_room(struct ipc_reader *r)
{
	size_t have = r->end - r->start, need, limit, cap;
	struct ipc_frame f;

	if (r->start > 0) {
		if (have > 0)
			memmove(r->buf, r->buf + r->start, have);
		r->start = 0;
		r->end = have;
	}
	if (have > 0 &&
	    ipc_frame_parse_max(r->buf, have, r->max_payload, &f) < 0)
		return -1;
	limit = IPC_HDR_LEN + r->max_payload;
	need = READER_INIT_CAP < limit ? READER_INIT_CAP : limit;
	if (have >= IPC_HDR_LEN && IPC_HDR_LEN + get32(r->buf + HDR_LEN) > need)
		need = IPC_HDR_LEN + get32(r->buf + HDR_LEN);
	if (r->cap < need) {
		/* Double, so a run of growing frames costs few reallocs. */
		cap = r->cap > 0 ? r->cap : need;
		while (cap < need)
			cap = cap > limit / 2 ? limit : cap * 2;
		r->buf = util_realloc(r->buf, cap);
		r->cap = cap;
	}
	return (ssize_t)(r->cap - r->end);
}

ssize_t
ipc_reader_read(struct ipc_reader *r, int fd)
{
	ssize_t room, n;

	if ((room = reader_room(r)) < 0) {
		errno = EBADMSG;
		return -1;
	}
	if (room == 0) {
		errno = ENOBUFS;
		return -1;
	}
	do
		n = read(fd, r->buf + r->end, (size_t)room);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		r->end += (size_t)n;
	return n;
}

size_t
ipc_reader_feed(struct ipc_reader *r, const void *data, size_t len)
{
	ssize_t room;

	if (len == 0 || (room = reader_room(r)) <= 0)
		return 0;
	if (len > (size_t)room)
		len = (size_t)room;
	memcpy(r->buf + r->end, data, len);
	r->end += len;
	return len;
}

int
ipc_reader_next(struct ipc_reader *r, struct ipc_frame *f)
{
	int rc;

	if (r->end == r->start)
		return 0;
	rc = ipc_frame_parse_max(r->buf + r->start, r->end - r->start,
				 r->max_payload, f);
	if (rc > 0)
		r->start += (size_t)rc;
	return rc;
}

size_t
ipc_reader_pending(const struct ipc_reader *r)
{
	return r->end - r->start;
}
