/*
 * event-publish: publish small event records on a Redis pub/sub channel,
 * pipelined, for orchd's event benchmarks (scripts/bench/event-fanout).
 *
 *	gcc -O2 -o event-publish scripts/bench/event-publish.c
 *
 *   event-publish -s REDIS_UNIX_SOCKET [-C CHANNEL] [-r RATE] [-d SECONDS]
 *                 [-W WINDOW] [-m broadcast|targeted] [-O N_ORCH]
 *                 [-x EXTRA_PAYLOAD_BYTES]
 *
 * Each record is
 *
 *   {"id":"e-<pid>-<k>","type":"message.received",["orchestratorId":
 *    "orch-<k % N_ORCH>",]"payload":{"t":<CLOCK_REALTIME ns>},
 *    "requiresAck":false,"priority":0}
 *
 * with t taken just before the command is written.  -m broadcast (default)
 * leaves orchestratorId out: every orchestrator gets it.  -m targeted
 * names the orchestrators orch-0 .. orch-(N_ORCH-1) in turn.
 *
 * -r 0 (default): as fast as Redis takes them, with at most WINDOW
 * (default 256) PUBLISH commands unanswered.  -r RATE: RATE records per
 * second on a fixed schedule (late ones are sent at once, in a batch).
 * Stops after SECONDS (default 10) or on SIGTERM/SIGINT, reads the
 * outstanding replies and prints one JSON line: published, the rate, and
 * the sum of the PUBLISH replies (subscribers that got them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static char rbuf[1 << 16];
static size_t rlen;
static uint64_t replies, receivers, errors;

static void
on_signal(int s)
{
	(void)s;
	stop = 1;
}

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Parse the integer replies in rbuf. */
static void
parse_replies(void)
{
	size_t off = 0;

	for (;;) {
		char *nl = memchr(rbuf + off, '\n', rlen - off);

		if (nl == NULL)
			break;
		if (rbuf[off] == ':')
			receivers += strtoull(rbuf + off + 1, NULL, 10);
		else {
			if (errors < 3)
				fprintf(stderr, "event-publish: %.*s\n",
					(int)(nl - (rbuf + off)), rbuf + off);
			errors++;
		}
		replies++;
		off = (size_t)(nl - rbuf) + 1;
	}
	memmove(rbuf, rbuf + off, rlen - off);
	rlen -= off;
}

static int
read_some(int fd, int block)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t r;

	if (poll(&p, 1, block ? 100 : 0) <= 0)
		return 0;
	r = read(fd, rbuf + rlen, sizeof(rbuf) - rlen);
	if (r <= 0) {
		fprintf(stderr, "event-publish: redis closed the connection\n");
		exit(1);
	}
	rlen += (size_t)r;
	parse_replies();
	return 1;
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = {.fd = fd,
						    .events = POLLOUT | POLLIN};

				poll(&pf, 1, 100);
				if (pf.revents & POLLIN)
					read_some(fd, 0);
				continue;
			}
			perror("event-publish: write");
			exit(1);
		}
		p += w;
		n -= (size_t)w;
	}
}

int
main(int argc, char **argv)
{
	const char *path = NULL, *channel = "daemon:events";
	double rate = 0, secs = 10;
	int window = 256, targeted = 0, norch = 1000, extra = 0, ch, fd;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	static char out[1 << 20];
	char rec[2048], pad[1100];
	uint64_t k = 0, t0, end;
	size_t olen;
	struct sigaction sa;

	while ((ch = getopt(argc, argv, "s:C:r:d:W:m:O:x:")) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		case 'C': channel = optarg; break;
		case 'r': rate = atof(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'W': window = atoi(optarg); break;
		case 'm': targeted = strcmp(optarg, "targeted") == 0; break;
		case 'O': norch = atoi(optarg); break;
		case 'x': extra = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (path == NULL || window <= 0 || norch <= 0 || extra < 0 ||
	    extra > 1024 || strlen(path) >= sizeof(sun.sun_path)) {
usage:
		fprintf(stderr,
			"usage: event-publish -s SOCKET [-C CHANNEL] [-r RATE] "
			"[-d SECONDS] [-W WINDOW]\n"
			"         [-m broadcast|targeted] [-O N_ORCH] "
			"[-x EXTRA_BYTES]\n");
		return 2;
	}
	memset(pad, 'x', (size_t)extra);
	pad[extra] = '\0';
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		perror(path);
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	t0 = mono_ns();
	end = t0 + (uint64_t)(secs * 1e9);
	while (!stop) {
		uint64_t now = mono_ns(), due;
		int batch;

		if (now >= end)
			break;
		if (rate > 0) {
			due = (uint64_t)((double)(now - t0) * rate / 1e9) + 1;
			if (k >= due) {
				/* sleep until the next one is due */
				uint64_t at = t0 + (uint64_t)((double)k * 1e9 /
							      rate);
				struct timespec ts;

				read_some(fd, 0);
				if (at > now) {
					ts.tv_sec = (time_t)((at - now) /
							     1000000000ULL);
					ts.tv_nsec = (long)((at - now) %
							    1000000000ULL);
					nanosleep(&ts, NULL);
				}
				continue;
			}
			batch = (int)(due - k);
			if (batch > 1000)
				batch = 1000;
		} else {
			while (k - replies >= (uint64_t)window)
				read_some(fd, 1);
			batch = window - (int)(k - replies);
		}
		olen = 0;
		for (int i = 0; i < batch; i++) {
			int rl;

			if (targeted)
				rl = snprintf(rec, sizeof(rec),
					      "{\"id\":\"e-%d-%llu\",\"type\":"
					      "\"message.received\","
					      "\"orchestratorId\":\"orch-%llu\","
					      "\"payload\":{\"t\":%llu%s%s%s},"
					      "\"requiresAck\":false,"
					      "\"priority\":0}",
					      (int)getpid(),
					      (unsigned long long)k,
					      (unsigned long long)(k % (uint64_t)norch),
					      (unsigned long long)real_ns(),
					      extra ? ",\"x\":\"" : "", pad,
					      extra ? "\"" : "");
			else
				rl = snprintf(rec, sizeof(rec),
					      "{\"id\":\"e-%d-%llu\",\"type\":"
					      "\"message.received\","
					      "\"payload\":{\"t\":%llu%s%s%s},"
					      "\"requiresAck\":false,"
					      "\"priority\":0}",
					      (int)getpid(),
					      (unsigned long long)k,
					      (unsigned long long)real_ns(),
					      extra ? ",\"x\":\"" : "", pad,
					      extra ? "\"" : "");
			olen += (size_t)snprintf(
				out + olen, sizeof(out) - olen,
				"*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n",
				strlen(channel), channel, rl, rec);
			k++;
		}
		write_all(fd, out, olen);
		read_some(fd, 0);
	}
	{
		double dur = (double)(mono_ns() - t0) / 1e9;
		uint64_t wait_end = mono_ns() + 5000000000ULL;

		while (replies < k && mono_ns() < wait_end)
			read_some(fd, 1);
		printf("{\"published\":%llu,\"replies\":%llu,\"receivers\":%llu,"
		       "\"errors\":%llu,\"seconds\":%.3f,\"rate\":%.1f}\n",
		       (unsigned long long)k, (unsigned long long)replies,
		       (unsigned long long)receivers,
		       (unsigned long long)errors, dur, (double)k / dur);
	}
	return 0;
}
