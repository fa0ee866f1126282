/*
 * orchctl bench: the publisher.  PUBLISH on the events channel, pipelined
 * on one Redis connection (unix socket or loopback TCP), either at a fixed
 * rate (late records go out at once, in a batch of at most 1,000) or as
 * fast as Redis answers with at most --window commands unanswered.  Each
 * record is
 *
 *   {"id":"e-<pid>-<k>","type":"message.received",["orchestratorId":
 *    "<prefix><k % norch>",]"payload":{"t":<CLOCK_REALTIME ns>},
 *    "requiresAck":false,"priority":0}
 *
 * so a receiver gets its latency from data.t and checks the order with k.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define PUB_RBUF (64 * 1024)
#define PUB_OBUF (1024 * 1024) /* one batch: 1,000 records of < 1 KiB */
#define PUB_BATCH 1000

struct pub {
	int fd;
	char rbuf[PUB_RBUF];
	size_t rlen;
	struct bench_pub_result *r;
	int dead;
};

/* Integer replies (":N\r\n") count receivers; anything else is an error. */
static void
parse_replies(struct pub *p)
{
	size_t off = 0;

	for (;;) {
		char *nl = memchr(p->rbuf + off, '\n', p->rlen - off);

		if (nl == NULL)
			break;
		if (p->rbuf[off] == ':') {
			p->r->receivers +=
			    strtoull(p->rbuf + off + 1, NULL, 10);
		} else {
			if (p->r->errors < 3)
				fprintf(stderr, "orchctl: bench: redis: %.*s\n",
					(int)(nl - (p->rbuf + off)),
					p->rbuf + off);
			p->r->errors++;
		}
		p->r->replies++;
		off = (size_t)(nl - p->rbuf) + 1;
	}
	if (off == 0 && p->rlen == sizeof(p->rbuf)) {
		/* a reply line longer than the buffer: not a PUBLISH reply */
		p->dead = 1;
		return;
	}
	memmove(p->rbuf, p->rbuf + off, p->rlen - off);
	p->rlen -= off;
}

static void
read_some(struct pub *p, int wait_ms)
{
	struct pollfd pf = {.fd = p->fd, .events = POLLIN};
	ssize_t r;

	if (p->dead || poll(&pf, 1, wait_ms) <= 0)
		return;
	r = read(p->fd, p->rbuf + p->rlen, sizeof(p->rbuf) - p->rlen);
	if (r <= 0) {
		if (r < 0 && errno == EINTR)
			return;
		fprintf(stderr,
			"orchctl: bench: redis closed the connection\n");
		p->dead = 1;
		return;
	}
	p->rlen += (size_t)r;
	parse_replies(p);
}

static void
write_all(struct pub *p, const char *b, size_t n)
{
	while (n > 0 && !p->dead) {
		ssize_t w = write(p->fd, b, n);

		if (w < 0) {
			struct pollfd pf = {.fd = p->fd,
					    .events = POLLOUT | POLLIN};

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				fprintf(stderr,
					"orchctl: bench: redis: "
					"write: %s\n",
					strerror(errno));
				p->dead = 1;
				return;
			}
			/* Redis is slow to read: take its replies meanwhile */
			(void)poll(&pf, 1, 100);
			if (pf.revents & POLLIN)
				read_some(p, 0);
			continue;
		}
		b += w;
		n -= (size_t)w;
	}
}

static int
pub_connect(const struct bench_opts *o)
{
	int fd;

	if (o->redis_unix != NULL) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		if (strlen(o->redis_unix) >= sizeof(sun.sun_path))
			return -1;
		strcpy(sun.sun_path, o->redis_unix);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1 ||
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
			fprintf(stderr, "orchctl: bench: redis %s: %s\n",
				o->redis_unix, strerror(errno));
			if (fd != -1)
				close(fd);
			return -1;
		}
	} else {
		struct sockaddr_in sin = {.sin_family = AF_INET};

		sin.sin_addr.s_addr = htonl(o->redis_addr);
		sin.sin_port = htons((uint16_t)o->redis_port);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1 ||
		    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
			fprintf(stderr, "orchctl: bench: redis port %d: %s\n",
				o->redis_port, strerror(errno));
			if (fd != -1)
				close(fd);
			return -1;
		}
	}
	/* non-blocking writes, so that replies are read while Redis lags */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

int
bench_publish_run(const struct bench_opts *o, double seconds,
		  volatile int *stop, struct bench_pub_result *r)
{
	static char out[PUB_OBUF];
	static struct pub p;
	char rec[2048], pad[1025];
	size_t chl = strlen(o->channel);
	uint64_t k = 0, t0, end;
	int pid = (int)getpid();

	memset(r, 0, sizeof(*r));
	memset(&p, 0, sizeof(p));
	p.r = r;
	p.fd = pub_connect(o);
	if (p.fd == -1)
		return -1;
	memset(pad, 'x', (size_t)o->extra);
	pad[o->extra] = '\0';
	t0 = bench_mono_ns();
	end = t0 + (uint64_t)(seconds * 1e9);
	while (!*stop && !p.dead) {
		uint64_t now = bench_mono_ns(), due;
		size_t olen = 0;
		int batch;

		if (now >= end ||
		    (o->max_events > 0 && k >= (uint64_t)o->max_events))
			break;
		if (o->rate > 0) {
			due =
			    (uint64_t)((double)(now - t0) * o->rate / 1e9) + 1;
			if (k >= due) {
				uint64_t at =
				    t0 + (uint64_t)((double)k * 1e9 / o->rate);
				int ms =
				    at > now ? (int)((at - now) / 1000000) : 0;

				/* wait for the next one, reading replies */
				read_some(&p, ms > 100 ? 100 : ms);
				if (ms == 0 && at > now) {
					struct timespec ts = {0,
							      (long)(at - now)};

					nanosleep(&ts, NULL);
				}
				continue;
			}
			batch = (int)(due - k);
			if (batch > PUB_BATCH)
				batch = PUB_BATCH;
		} else {
			while (k - r->replies >= (uint64_t)o->window && !p.dead)
				read_some(&p, 100);
			batch = o->window - (int)(k - r->replies);
			if (batch > PUB_BATCH)
				batch = PUB_BATCH;
		}
		if (o->max_events > 0 &&
		    (uint64_t)batch > (uint64_t)o->max_events - k)
			batch = (int)((uint64_t)o->max_events - k);
		for (int i = 0; i < batch; i++) {
			char orch[128] = "";
			int rl, n;

			if (o->targeted)
				snprintf(
				    orch, sizeof(orch),
				    "\"orchestratorId\":\"%s%llu\",",
				    o->orch_prefix,
				    (unsigned long long)(k %
							 (uint64_t)o->norch));
			rl = snprintf(rec, sizeof(rec),
				      "{\"id\":\"e-%d-%llu\",\"type\":"
				      "\"message.received\",%s"
				      "\"payload\":{\"t\":%llu%s%s%s},"
				      "\"requiresAck\":false,\"priority\":0}",
				      pid, (unsigned long long)k, orch,
				      (unsigned long long)bench_real_ns(),
				      o->extra ? ",\"x\":\"" : "", pad,
				      o->extra ? "\"" : "");
			if (rl < 0 || (size_t)rl >= sizeof(rec))
				break;
			n = snprintf(out + olen, sizeof(out) - olen,
				     "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n"
				     "$%d\r\n%s\r\n",
				     chl, o->channel, rl, rec);
			if (n < 0 || (size_t)n >= sizeof(out) - olen)
				break;
			olen += (size_t)n;
			k++;
		}
		write_all(&p, out, olen);
		read_some(&p, 0);
	}
	r->published = k;
	r->seconds = (double)(bench_mono_ns() - t0) / 1e9;
	{
		/* the replies of what is still in flight, bounded */
		uint64_t wait_end = bench_mono_ns() + 5000000000ULL;

		while (r->replies < k && !p.dead && bench_mono_ns() < wait_end)
			read_some(&p, 100);
	}
	close(p.fd);
	return p.dead && r->published == 0 ? -1 : 0;
}
