/*
 * orchctl bench: the load generator behind docs/BENCHMARKS.md.
 *
 * bench.c       command line, forked client processes, phases, RSS
 *               sampling, the report (human or --json)
 * bench_client.c one client process: epoll, connect (bind to a source
 *               address first), upgrade, auth, subscribe, echo traffic,
 *               event counting; its figures go to the parent over a pipe
 * bench_proto.c pure pieces: histogram, frames, tokens, JSON scanning,
 *               merging and rendering the figures
 * bench_publish.c the Redis publisher (PUBLISH pipelined at a rate or flat
 *               out)
 */
#ifndef ORCHCTL_BENCH_H
#define ORCHCTL_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum bench_scenario {
	BENCH_IDLE,    /* open N WebSockets and hold them */
	BENCH_ECHO,    /* echo traffic at a pipeline depth */
	BENCH_AUTH,    /* connect + authenticate, then hold */
	BENCH_FANOUT,  /* authenticated, subscribed receivers + a publisher */
	BENCH_PUBLISH, /* the publisher alone */
};

/* Latency histogram: microseconds, log-linear, 128 sub-buckets per octave
 * (< 0.8% error), so that processes' histograms merge exactly. */
#define BENCH_H_SUB 128
#define BENCH_H_LINEAR 256
#define BENCH_H_SIZE (BENCH_H_LINEAR + 57 * BENCH_H_SUB)

struct bench_hist {
	uint64_t count;
	uint64_t max;
	uint64_t b[BENCH_H_SIZE];
};

void bench_hist_add(struct bench_hist *h, uint64_t us);
uint64_t bench_hist_pct(const struct bench_hist *h, double q);
uint64_t bench_hist_value(int idx);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *h);

enum bench_fail {
	BF_CONNECT,   /* socket/bind/connect or SO_ERROR */
	BF_STATUS,    /* the upgrade answer was not 101 */
	BF_EOF,       /* closed before it was ready */
	BF_TIMEOUT,   /* not ready within --connect-timeout */
	BF_PROTOCOL,  /* bad frame, bad echo */
	BF_AUTH,      /* auth_error */
	BF_SUBSCRIBE, /* subscribe answered with an error */
	BF_N
};
extern const char *const bench_fail_names[BF_N];

#define BENCH_NCODES 8 /* distinct close codes counted; more go to "other" */

/* What one client process measured; the parent sums them. */
struct bench_stats {
	uint64_t requested, started, ready, failed;
	uint64_t open;   /* still open at the report */
	uint64_t closed; /* were ready, then closed by the server or an error */
	uint64_t fail[BF_N];
	uint64_t pmd; /* permessage-deflate accepted */
	uint64_t close_code[BENCH_NCODES][2];
	uint64_t close_other;
	int first_errno;
	double ready_s;  /* from the first connect until every one settled */
	double window_s; /* the measured window */
	uint64_t msgs_window; /* echoes or events in the window */
	uint64_t msgs_total;  /* since ready */
	uint64_t per_conn_min, per_conn_max; /* in the window, open conns */
	uint64_t proto_errors, seq_errors, order_errors;
	uint64_t no_latency, clock_neg, other_msgs;
	uint64_t expected_missing; /* fanout: events short of what was sent */
	struct bench_hist lat;     /* µs: echo round trip, publish->receive,
				    * or connect->auth_success */
};

void bench_stats_init(struct bench_stats *s);
void bench_stats_merge(struct bench_stats *into, const struct bench_stats *s);
void bench_stats_close_code(struct bench_stats *s, unsigned code);

/* The options of one run (command line, then the config's defaults). */
struct bench_opts {
	enum bench_scenario scenario;
	uint32_t dst_addr; /* host order, 127.0.0.0/8 */
	int port;
	const char *path; /* upgrade path */
	int conns;        /* total over all processes */
	int procs;
	uint32_t src_first, src_count; /* host order; count 0: the kernel's */
	int inflight;                  /* handshakes in flight per process */
	double connect_timeout_s;
	double hold_s;     /* idle/auth: hold after ready (0: until signal) */
	double duration_s; /* echo/fanout/publish: measured window */
	double warmup_s;
	double timeout_s; /* hard limit on the whole run */
	double drain_s;   /* fanout: wait for stragglers after publishing */
	int64_t start_at_ms;
	const char *ready_file;
	const char *dump; /* per-connection counts: DUMP.<proc>.<window> */
	int deflate;      /* idle: offer permessage-deflate */
	int depth, size;
	/* auth/fanout */
	const char *secret;
	size_t secret_len;
	const char *orch_prefix;   /* orchestrator ids: PREFIX<k> */
	const char *daemon_prefix; /* daemon ids: PREFIX<first_id + i> */
	int first_id;              /* id of the first connection */
	int per_orch;              /* connections per orchestrator */
	const char *scope;
	/* publisher */
	int publish;            /* fanout: run the publisher too */
	const char *redis_unix; /* else redis_host:redis_port */
	uint32_t redis_addr;
	int redis_port;
	const char *channel;
	double rate; /* events/s, 0: as fast as Redis takes them */
	int targeted;
	int norch;            /* targeted: orchestrators named in turn */
	int window;           /* flood: PUBLISH commands unanswered at most */
	int extra;            /* bytes of padding in each record (0..1024) */
	int64_t max_events;   /* publish: stop after this many (0: duration) */
	uint64_t until_count; /* fanout: stop once every open connection has
			       * this many events (0: no such stop) */
	/* memory sampling */
	int rss_pids[16];
	int nrss_pids;
	int rss_by_name; /* every process named orchd* */
	double sample_s;
	int json, quiet;
};

/* ---- bench_proto.c: pure pieces ---- */
uint64_t bench_prng(uint64_t *state);
/* CLOCK_MONOTONIC and CLOCK_REALTIME in ns. */
uint64_t bench_mono_ns(void);
uint64_t bench_real_ns(void);
/* One masked client frame into out (cap bytes); its length or 0. */
size_t bench_frame(uint8_t *out, size_t cap, unsigned opcode,
		   const void *payload, size_t len, uint32_t mask);
/* A server frame header at p (avail bytes): 1 with hlen, plen, op, rsv set
 * when complete, 0 when more bytes are needed, -1 when it is invalid
 * (masked, fragmented, or over max). */
int bench_frame_parse(const uint8_t *p, size_t avail, size_t max, size_t *hlen,
		      uint64_t *plen, unsigned *op, unsigned *rsv);
int bench_msg_type_is(const uint8_t *p, size_t len, const char *type);
uint64_t bench_num_after(const uint8_t *p, size_t len, const char *key,
			 int *found);
/* The publisher's counter K of "eventId":"e-PID-K"; -1 if absent. */
int64_t bench_event_counter(const uint8_t *p, size_t len);
/* An HS256 access token for orchestrator ORCH / daemon DAEMON. */
int bench_token(const struct bench_opts *o, const char *orch,
		const char *daemon, uint64_t nonce, char *out, size_t cap);
/* Render the merged figures as one JSON object / as text. */
void bench_render_json(FILE *fp, const struct bench_opts *o,
		       const struct bench_stats *s, const char *kind,
		       const char *extra);
void bench_render_text(FILE *fp, const struct bench_opts *o,
		       const struct bench_stats *s, const char *extra_text);
const char *bench_scenario_name(enum bench_scenario sc);
/* Parse "A", "A-B" or "A/N" (IPv4, 127.0.0.0/8) into first and count. */
int bench_parse_sources(const char *s, uint32_t *first, uint32_t *count);
int bench_is_loopback(uint32_t addr);

/* ---- bench_client.c ---- */
/* Control commands the parent writes on a client's pipe. */
#define BENCH_CMD_START 'S'  /* + int64 wall ms: echo traffic starts */
#define BENCH_CMD_WINDOW 'W' /* a window starts */
#define BENCH_CMD_END 'E'    /* the window ends: report it */
#define BENCH_CMD_DRAIN 'D'  /* + int64 published, double seconds */
#define BENCH_CMD_QUIT 'Q'   /* final report and exit */
/* Reports a client writes: one byte of kind, then struct bench_stats. */
#define BENCH_REP_READY 'R'
#define BENCH_REP_WINDOW 'W'
#define BENCH_REP_FINAL 'F'
/* Run connections [first, first + n) of the run; returns the exit status. */
int bench_client_run(const struct bench_opts *o, int idx, int first, int n,
		     int ctl_fd, int rep_fd);

/* ---- bench_publish.c ---- */
struct bench_pub_result {
	uint64_t published, replies, receivers, errors;
	double seconds;
};
/* Publish until duration (or max_events, or *stop); 0 or -1 (message on
 * stderr). */
int bench_publish_run(const struct bench_opts *o, double seconds,
		      volatile int *stop, struct bench_pub_result *r);

#endif
