/*
 * orchctl bench SCENARIO [options]: the load generator behind
 * docs/BENCHMARKS.md (orchctl(1), section BENCH documents it).
 *
 * The parent forks --procs client processes (bench_client.c), each with a
 * share of the connections, and drives them over pipes: it waits until
 * every one has settled (all connections ready or failed), writes the
 * --ready-file, runs the scenario's phases (hold, echo window, publisher
 * and window, or windows on SIGUSR1/SIGUSR2), samples the RSS of the
 * server's processes meanwhile, then merges the children's figures into
 * one report.  Every run ends by itself: --hold / --duration / --events,
 * and --timeout over everything.  Loopback addresses only.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "orchctl.h"

#define BENCH_MAX_PROCS 64
#define BENCH_MAX_CONNS 1000000
#define BENCH_MAX_SECRET 4096
#define BENCH_MAX_SCAN_PIDS 4096 /* /proc entries looked at per sample */
#define BENCH_REP_NONE 0         /* wait_reports(): no report, only the time */

struct child {
	pid_t pid;
	int ctl, rep; /* parent's ends */
	int first, n;
	int have_ready, have_window, have_final, dead;
	struct bench_stats ready, window, final;
};

struct rss {
	int samples;
	uint64_t before, at_ready, max, last;
	int npids;
};

static volatile sig_atomic_t sig_term, sig_usr1, sig_usr2;

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		sig_usr1 = 1;
	else if (sig == SIGUSR2)
		sig_usr2 = 1;
	else
		sig_term = 1;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
read_full(int fd, void *p, size_t n)
{
	char *b = p;

	while (n > 0) {
		ssize_t r = read(fd, b, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
ctl_send(struct child *ch, int nch, const void *msg, size_t len)
{
	for (int i = 0; i < nch; i++) {
		if (ch[i].dead)
			continue;
		/* a few bytes into an empty pipe: never short, never blocks */
		if (write(ch[i].ctl, msg, len) != (ssize_t)len)
			ch[i].dead = 1;
	}
}

/* ---- memory sampling ---- */

static uint64_t
rss_of(pid_t pid)
{
	char path[64];
	unsigned long size, res;
	FILE *fp;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	ok = fscanf(fp, "%lu %lu", &size, &res) == 2;
	fclose(fp);
	return ok ? (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* comm and ppid of pid; -1 if it is gone */
static int
proc_info(pid_t pid, char *comm, size_t cap, pid_t *ppid)
{
	char path[64], buf[512], *l, *r;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	l = strchr(buf, '(');
	r = strrchr(buf, ')');
	if (l == NULL || r == NULL || r[1] == '\0')
		return -1;
	snprintf(comm, cap, "%.*s", (int)(r - l - 1), l + 1);
	*ppid = (pid_t)atoi(r + 4); /* ") S PPID" */
	return 0;
}

/* The sum of the RSS of the pids given (and their descendants), or of
 * every process whose name starts with "orchd". */
static uint64_t
rss_sample(const struct bench_opts *o, int *npids)
{
	pid_t pids[BENCH_MAX_SCAN_PIDS], ppids[BENCH_MAX_SCAN_PIDS];
	int in[BENCH_MAX_SCAN_PIDS];
	int n = 0, changed = 1;
	uint64_t sum = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;

	*npids = 0;
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < BENCH_MAX_SCAN_PIDS) {
		char comm[64];
		pid_t pid, pp;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)atoi(e->d_name);
		if (proc_info(pid, comm, sizeof(comm), &pp) == -1)
			continue;
		pids[n] = pid;
		ppids[n] = pp;
		in[n] = o->rss_by_name && strncmp(comm, "orchd", 5) == 0;
		for (int i = 0; i < o->nrss_pids; i++)
			if (o->rss_pids[i] == pid)
				in[n] = 1;
		n++;
	}
	closedir(d);
	/* descendants of the pids given: the workers and the relay */
	while (changed && o->nrss_pids > 0) {
		changed = 0;
		for (int i = 0; i < n; i++) {
			if (in[i])
				continue;
			for (int j = 0; j < n; j++)
				if (in[j] && pids[j] == ppids[i]) {
					in[i] = changed = 1;
					break;
				}
		}
	}
	for (int i = 0; i < n; i++)
		if (in[i]) {
			sum += rss_of(pids[i]);
			(*npids)++;
		}
	return sum;
}

static void
rss_take(const struct bench_opts *o, struct rss *r)
{
	uint64_t v;
	int np;

	if (o->nrss_pids == 0 && !o->rss_by_name)
		return;
	v = rss_sample(o, &np);
	if (r->samples == 0)
		r->before = v;
	r->samples++;
	r->last = v;
	r->npids = np;
	if (v > r->max)
		r->max = v;
}

/* ---- options ---- */

static void
usage(FILE *fp)
{
	fprintf(
	    fp,
	    "usage: orchctl bench idle|echo|auth|fanout|publish [options]\n"
	    "  -n, --connections N   connections in all (default 1000)\n"
	    "  --procs N             client processes (default 1)\n"
	    "  --host ADDR --port N  orchd (default: the config's first "
	    "listen)\n"
	    "  --path PATH           /echo (idle, echo) or /daemon/ws\n"
	    "  --sources A-B|A/N     source addresses (127.0.0.0/8)\n"
	    "  --inflight N          handshakes in flight per process\n"
	    "  --connect-timeout S   --hold S --duration S --warmup S\n"
	    "  --timeout S           hard limit of the run (default 600)\n"
	    "  --ready-file FILE     JSON written once all are ready\n"
	    "  --dump PREFIX         per-connection counts after each "
	    "window\n"
	    "  --start-at MS         echo: traffic starts at this wall "
	    "time\n"
	    "  --deflate             idle: offer permessage-deflate\n"
	    "  --depth D --size B    echo: pipeline depth, message size\n"
	    "  --secret-file FILE    auth, fanout: the HS256 secret\n"
	    "  --per-orch K --orch-prefix P --daemon-prefix P --first-id N\n"
	    "  --scope S\n"
	    "  --redis PATH|ADDR:PORT --channel C --rate R|max\n"
	    "  --targeted --orchestrators N --window N --events N "
	    "--extra B\n"
	    "  --no-publish --drain S --until-count N\n"
	    "  --pid PID|orchd       sample this server's RSS (repeatable)\n"
	    "  --sample-interval S   (default 0.5)\n"
	    "  --json                a JSON report\n");
}

static int
parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static int
load_secret(struct bench_opts *o, const char *path, char *buf)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	if (fp == NULL) {
		fprintf(stderr, "orchctl: bench: %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	n = fread(buf, 1, BENCH_MAX_SECRET, fp);
	fclose(fp);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0 || n >= BENCH_MAX_SECRET) {
		fprintf(stderr, "orchctl: bench: %s: empty or over %d bytes\n",
			path, BENCH_MAX_SECRET - 1);
		return -1;
	}
	o->secret = buf;
	o->secret_len = n;
	return 0;
}

static int
parse_redis(struct bench_opts *o, const char *s)
{
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];
	struct in_addr a;
	double port;

	if (s[0] == '/') {
		o->redis_unix = s;
		return 0;
	}
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host) ||
	    parse_num(colon + 1, 1, 65535, &port) == -1)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &a) != 1 ||
	    !bench_is_loopback(ntohl(a.s_addr)))
		return -1;
	o->redis_unix = NULL;
	o->redis_addr = ntohl(a.s_addr);
	o->redis_port = (int)port;
	return 0;
}

/* Defaults from orchd's config: the first plain IPv4 listener on loopback
 * or the wildcard, the Redis address, the JWT secret. */
static void
config_defaults(struct bench_opts *o, const struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (int i = 0; i < cfg->nlisten && o->port == 0; i++) {
		const struct sockaddr_in *sin =
		    (const struct sockaddr_in *)&cfg->listen[i].addr;
		uint32_t a;

		if (cfg->listen[i].tls || sin->sin_family != AF_INET)
			continue;
		a = ntohl(sin->sin_addr.s_addr);
		if (a != INADDR_ANY && !bench_is_loopback(a))
			continue;
		o->port = ntohs(sin->sin_port);
		if (a != INADDR_ANY)
			o->dst_addr = a;
	}
	if (o->secret == NULL && cfg->jwt_secret != NULL) {
		o->secret = cfg->jwt_secret;
		o->secret_len = cfg->jwt_secret_len;
	}
	if (o->redis_unix == NULL && o->redis_port == 0) {
		if (cfg->redis.unix_path != NULL) {
			o->redis_unix = cfg->redis.unix_path;
		} else if (cfg->redis.host != NULL) {
			char buf[300];

			snprintf(buf, sizeof(buf), "%s:%d", cfg->redis.host,
				 cfg->redis.port);
			(void)parse_redis(o, buf);
		}
	}
}

enum {
	OPT_PROCS = 256,
	OPT_HOST,
	OPT_PORT,
	OPT_PATH,
	OPT_SOURCES,
	OPT_INFLIGHT,
	OPT_CTIMEOUT,
	OPT_HOLD,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_TIMEOUT,
	OPT_DRAIN,
	OPT_READY,
	OPT_DUMP,
	OPT_START_AT,
	OPT_DEFLATE,
	OPT_DEPTH,
	OPT_SIZE,
	OPT_SECRET,
	OPT_PREFIX,
	OPT_FIRST,
	OPT_DPREFIX,
	OPT_PER_ORCH,
	OPT_SCOPE,
	OPT_NOPUB,
	OPT_REDIS,
	OPT_CHANNEL,
	OPT_RATE,
	OPT_TARGETED,
	OPT_NORCH,
	OPT_WINDOW,
	OPT_EVENTS,
	OPT_UNTIL,
	OPT_EXTRA,
	OPT_PID,
	OPT_SAMPLE,
	OPT_JSON,
};

static const struct option longopts[] = {
    {"connections", required_argument, NULL, 'n'},
    {"procs", required_argument, NULL, OPT_PROCS},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"path", required_argument, NULL, OPT_PATH},
    {"sources", required_argument, NULL, OPT_SOURCES},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"connect-timeout", required_argument, NULL, OPT_CTIMEOUT},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"ready-file", required_argument, NULL, OPT_READY},
    {"dump", required_argument, NULL, OPT_DUMP},
    {"start-at", required_argument, NULL, OPT_START_AT},
    {"deflate", no_argument, NULL, OPT_DEFLATE},
    {"depth", required_argument, NULL, OPT_DEPTH},
    {"size", required_argument, NULL, OPT_SIZE},
    {"secret-file", required_argument, NULL, OPT_SECRET},
    {"orch-prefix", required_argument, NULL, OPT_PREFIX},
    {"first-id", required_argument, NULL, OPT_FIRST},
    {"daemon-prefix", required_argument, NULL, OPT_DPREFIX},
    {"per-orch", required_argument, NULL, OPT_PER_ORCH},
    {"scope", required_argument, NULL, OPT_SCOPE},
    {"no-publish", no_argument, NULL, OPT_NOPUB},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"rate", required_argument, NULL, OPT_RATE},
    {"targeted", no_argument, NULL, OPT_TARGETED},
    {"orchestrators", required_argument, NULL, OPT_NORCH},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"events", required_argument, NULL, OPT_EVENTS},
    {"until-count", required_argument, NULL, OPT_UNTIL},
    {"extra", required_argument, NULL, OPT_EXTRA},
    {"pid", required_argument, NULL, OPT_PID},
    {"sample-interval", required_argument, NULL, OPT_SAMPLE},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parse the command line into o; ORCHCTL_OK or ORCHCTL_USAGE. */
static int
parse_opts(int argc, char **argv, struct bench_opts *o, char *secret_buf)
{
	static const char *const names[] = {"idle", "echo", "auth", "fanout",
					    "publish"};
	const char *secret_file = NULL, *host = NULL;
	int ch, sc = -1;
	double v;

	if (argc < 2) {
		usage(stderr);
		return ORCHCTL_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return -1;
	}
	for (int i = 0; i < 5; i++)
		if (strcmp(argv[1], names[i]) == 0)
			sc = i;
	if (sc < 0) {
		fprintf(stderr, "orchctl: bench: unknown scenario \"%s\"\n",
			argv[1]);
		usage(stderr);
		return ORCHCTL_USAGE;
	}
	o->scenario = (enum bench_scenario)sc;
	o->dst_addr = INADDR_LOOPBACK;
	o->conns = 1000;
	o->procs = 1;
	o->inflight = sc == BENCH_AUTH ? 1000 : 256;
	o->connect_timeout_s = 60;
	o->duration_s = 10;
	/* idle, auth: 0 holds until a signal (or --timeout); echo: how long
	 * the clients stay (idle) after the window, so that whoever measures
	 * their CPU over the window still finds them */
	o->hold_s = sc == BENCH_IDLE || sc == BENCH_AUTH ? 2 : 0;
	o->warmup_s = sc == BENCH_ECHO || sc == BENCH_FANOUT ? 1 : 0;
	o->timeout_s = 600;
	o->drain_s = 10;
	o->depth = 1;
	o->size = 32;
	o->orch_prefix = sc == BENCH_AUTH ? "bench-" : "orch-";
	o->daemon_prefix = "d-";
	o->per_orch = sc == BENCH_AUTH ? 5 : 1;
	o->scope = "messages:read";
	o->publish = 1;
	o->channel = "daemon:events";
	o->window = 256;
	o->sample_s = 0.5;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "hn:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			if (parse_num(optarg, 1, BENCH_MAX_CONNS, &v) == -1)
				goto bad;
			o->conns = (int)v;
			break;
		case OPT_PROCS:
			if (parse_num(optarg, 1, BENCH_MAX_PROCS, &v) == -1)
				goto bad;
			o->procs = (int)v;
			break;
		case OPT_HOST:
			host = optarg;
			break;
		case OPT_PORT:
			if (parse_num(optarg, 1, 65535, &v) == -1)
				goto bad;
			o->port = (int)v;
			break;
		case OPT_PATH:
			if (optarg[0] != '/' || strlen(optarg) > 512 ||
			    strpbrk(optarg, " \r\n") != NULL)
				goto bad;
			o->path = optarg;
			break;
		case OPT_SOURCES:
			if (bench_parse_sources(optarg, &o->src_first,
						&o->src_count) == -1)
				goto bad;
			break;
		case OPT_INFLIGHT:
			if (parse_num(optarg, 1, 100000, &v) == -1)
				goto bad;
			o->inflight = (int)v;
			break;
		case OPT_CTIMEOUT:
			if (parse_num(optarg, 0.1, 3600, &o->connect_timeout_s))
				goto bad;
			break;
		case OPT_HOLD:
			if (parse_num(optarg, 0, 86400, &o->hold_s))
				goto bad;
			break;
		case OPT_DURATION:
			if (parse_num(optarg, 0.1, 86400, &o->duration_s))
				goto bad;
			break;
		case OPT_WARMUP:
			if (parse_num(optarg, 0, 3600, &o->warmup_s))
				goto bad;
			break;
		case OPT_TIMEOUT:
			if (parse_num(optarg, 1, 86400, &o->timeout_s))
				goto bad;
			break;
		case OPT_DRAIN:
			if (parse_num(optarg, 0, 3600, &o->drain_s))
				goto bad;
			break;
		case OPT_READY:
			o->ready_file = optarg;
			break;
		case OPT_DUMP:
			o->dump = optarg;
			break;
		case OPT_START_AT:
			if (parse_num(optarg, 1, 1e14, &v) == -1)
				goto bad;
			o->start_at_ms = (int64_t)v;
			break;
		case OPT_DEFLATE:
			o->deflate = 1;
			break;
		case OPT_DEPTH:
			if (parse_num(optarg, 1, 256, &v) == -1)
				goto bad;
			o->depth = (int)v;
			break;
		case OPT_SIZE:
			if (parse_num(optarg, 32, 1024, &v) == -1)
				goto bad;
			o->size = (int)v;
			break;
		case OPT_SECRET:
			secret_file = optarg;
			break;
		case OPT_PREFIX:
			if (strlen(optarg) > 64 ||
			    strpbrk(optarg, "\"\\") != NULL)
				goto bad;
			o->orch_prefix = optarg;
			break;
		case OPT_DPREFIX:
			if (strlen(optarg) > 64 ||
			    strpbrk(optarg, "\"\\") != NULL)
				goto bad;
			o->daemon_prefix = optarg;
			break;
		case OPT_FIRST:
			if (parse_num(optarg, 0, 1e9, &v) == -1)
				goto bad;
			o->first_id = (int)v;
			break;
		case OPT_PER_ORCH:
			if (parse_num(optarg, 1, 1e6, &v) == -1)
				goto bad;
			o->per_orch = (int)v;
			break;
		case OPT_SCOPE:
			if (strlen(optarg) > 64 ||
			    strpbrk(optarg, "\"\\") != NULL)
				goto bad;
			o->scope = optarg;
			break;
		case OPT_NOPUB:
			o->publish = 0;
			break;
		case OPT_REDIS:
			if (parse_redis(o, optarg) == -1)
				goto bad;
			break;
		case OPT_CHANNEL:
			if (strlen(optarg) > 256)
				goto bad;
			o->channel = optarg;
			break;
		case OPT_RATE:
			if (strcmp(optarg, "max") == 0)
				o->rate = 0;
			else if (parse_num(optarg, 0, 1e8, &o->rate) == -1)
				goto bad;
			break;
		case OPT_TARGETED:
			o->targeted = 1;
			break;
		case OPT_NORCH:
			if (parse_num(optarg, 1, 1e7, &v) == -1)
				goto bad;
			o->norch = (int)v;
			break;
		case OPT_WINDOW:
			if (parse_num(optarg, 1, 100000, &v) == -1)
				goto bad;
			o->window = (int)v;
			break;
		case OPT_EVENTS:
			if (parse_num(optarg, 1, 1e12, &v) == -1)
				goto bad;
			o->max_events = (int64_t)v;
			break;
		case OPT_UNTIL:
			if (parse_num(optarg, 1, 1e12, &v) == -1)
				goto bad;
			o->until_count = (uint64_t)v;
			break;
		case OPT_EXTRA:
			if (parse_num(optarg, 0, 1024, &v) == -1)
				goto bad;
			o->extra = (int)v;
			break;
		case OPT_PID:
			if (strcmp(optarg, "orchd") == 0) {
				o->rss_by_name = 1;
				break;
			}
			if (parse_num(optarg, 1, 1e9, &v) == -1 ||
			    o->nrss_pids >= 16)
				goto bad;
			o->rss_pids[o->nrss_pids++] = (int)v;
			break;
		case OPT_SAMPLE:
			if (parse_num(optarg, 0.05, 60, &o->sample_s))
				goto bad;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return ORCHCTL_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "orchctl: bench: unexpected \"%s\"\n",
			argv[optind]);
		return ORCHCTL_USAGE;
	}
	if (host != NULL) {
		struct in_addr a;

		if (inet_pton(AF_INET, host, &a) != 1 ||
		    !bench_is_loopback(ntohl(a.s_addr))) {
			fprintf(stderr,
				"orchctl: bench: --host %s: only "
				"loopback IPv4 addresses (127.0.0.0/8)\n",
				host);
			return ORCHCTL_USAGE;
		}
		o->dst_addr = ntohl(a.s_addr);
	}
	if (secret_file != NULL && load_secret(o, secret_file, secret_buf))
		return ORCHCTL_USAGE;
	return ORCHCTL_OK;
bad:
	fprintf(stderr, "orchctl: bench: bad value for --%s: \"%s\"\n",
		ch == 'n' ? "connections" : longopts[ch - OPT_PROCS + 1].name,
		optarg);
	return ORCHCTL_USAGE;
}

/* Checks after the config's defaults are in. */
static int
check_opts(struct bench_opts *o)
{
	struct rlimit rl;
	int per = (o->conns + o->procs - 1) / o->procs;

	if (o->path == NULL)
		o->path = o->scenario == BENCH_IDLE || o->scenario == BENCH_ECHO
			      ? "/echo"
			      : "/daemon/ws";
	if (o->norch == 0)
		o->norch = (o->conns + o->per_orch - 1) / o->per_orch;
	if (o->scenario != BENCH_PUBLISH && o->port == 0) {
		fprintf(stderr, "orchctl: bench: no --port, and no loopback "
				"listen in the config\n");
		return ORCHCTL_USAGE;
	}
	if ((o->scenario == BENCH_AUTH || o->scenario == BENCH_FANOUT) &&
	    o->secret == NULL) {
		fprintf(stderr,
			"orchctl: bench: %s needs --secret-file (or "
			"the config's jwt_secret)\n",
			bench_scenario_name(o->scenario));
		return ORCHCTL_USAGE;
	}
	if ((o->scenario == BENCH_PUBLISH ||
	     (o->scenario == BENCH_FANOUT && o->publish)) &&
	    o->redis_unix == NULL && o->redis_port == 0) {
		fprintf(stderr, "orchctl: bench: no --redis, and no redis in "
				"the config\n");
		return ORCHCTL_USAGE;
	}
	if (o->deflate && o->scenario != BENCH_IDLE) {
		fprintf(stderr, "orchctl: bench: --deflate is for idle only "
				"(echoes are not inflated)\n");
		return ORCHCTL_USAGE;
	}
	if (o->scenario == BENCH_PUBLISH)
		return ORCHCTL_OK;
	if (o->procs > o->conns)
		o->procs = o->conns;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur != RLIM_INFINITY &&
		    (rlim_t)per + 32 > rl.rlim_cur) {
			fprintf(stderr,
				"orchctl: bench: %d connections per process "
				"is over the open-file limit %llu: raise "
				"--procs\n",
				per, (unsigned long long)rl.rlim_cur);
			return ORCHCTL_USAGE;
		}
	}
	return ORCHCTL_OK;
}

/* ---- the run ---- */

struct run {
	struct bench_opts *o;
	struct child ch[BENCH_MAX_PROCS];
	int nch;
	struct rss rss;
	uint64_t next_sample, deadline;
	pid_t pub_pid;
	int pub_fd;
	int have_pub;
	struct bench_pub_result pub;
	volatile int pub_stop;
};

static void
publisher_child(struct bench_opts *o, int fd, volatile int *stop)
{
	struct bench_pub_result r;
	double secs =
	    o->max_events > 0 ? o->timeout_s : o->warmup_s + o->duration_s;
	int rc = bench_publish_run(o, secs, stop, &r);

	if (rc == 0 && write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		rc = -1;
	_exit(rc == 0 ? 0 : 1);
}

static volatile int child_stop;

static void
on_child_term(int sig)
{
	(void)sig;
	child_stop = 1;
}

static int
start_publisher(struct run *R)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) == -1)
		return -1;
	R->pub_pid = fork();
	if (R->pub_pid == -1) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (R->pub_pid == 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_child_term;
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		signal(SIGUSR1, SIG_IGN);
		signal(SIGUSR2, SIG_IGN);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		close(p[0]);
		publisher_child(R->o, p[1], &child_stop);
	}
	close(p[1]);
	R->pub_fd = p[0];
	return 0;
}

static int
start_children(struct run *R)
{
	struct bench_opts *o = R->o;
	int first = 0;

	R->nch = o->procs;
	for (int i = 0; i < R->nch; i++) {
		struct child *c = &R->ch[i];
		int ctl[2], rep[2];

		c->n = o->conns / R->nch + (i < o->conns % R->nch);
		c->first = first;
		first += c->n;
		if (pipe2(ctl, O_CLOEXEC) == -1 ||
		    pipe2(rep, O_CLOEXEC) == -1) {
			perror("orchctl: bench: pipe");
			return -1;
		}
		fflush(NULL);
		c->pid = fork();
		if (c->pid == -1) {
			perror("orchctl: bench: fork");
			return -1;
		}
		if (c->pid == 0) {
			/* the client: only its own pipe ends */
			prctl(PR_SET_PDEATHSIG, SIGTERM);
			for (int j = 0; j < i; j++) {
				close(R->ch[j].ctl);
				close(R->ch[j].rep);
			}
			close(ctl[1]);
			close(rep[0]);
			_exit(bench_client_run(o, i, c->first, c->n, ctl[0],
					       rep[1]));
		}
		close(ctl[0]);
		close(rep[1]);
		c->ctl = ctl[1];
		c->rep = rep[0];
	}
	return 0;
}

/* Wait (sampling RSS, watching signals and the deadline) until every
 * living child has sent a report of this kind, or until stop_ms.
 * 1: all in; 0: stopped by time or a signal; -1: a child died. */
static int
wait_reports(struct run *R, char kind, uint64_t stop_ms, int watch_signals)
{
	for (;;) {
		struct pollfd pf[BENCH_MAX_PROCS + 1];
		int all = 1, n = 0, timeout;
		uint64_t now = mono_ms();

		for (int i = 0; i < R->nch; i++) {
			struct child *c = &R->ch[i];
			int have = kind == BENCH_REP_READY    ? c->have_ready
				   : kind == BENCH_REP_WINDOW ? c->have_window
				   : kind == BENCH_REP_FINAL  ? c->have_final
							      : 0;

			if (!have && !c->dead)
				all = 0;
		}
		if (all)
			return 1;
		if (now >= R->deadline || (stop_ms != 0 && now >= stop_ms))
			return 0;
		if (watch_signals && (sig_term || sig_usr1 || sig_usr2))
			return 0;
		if (now >= R->next_sample) {
			rss_take(R->o, &R->rss);
			R->next_sample =
			    now + (uint64_t)(R->o->sample_s * 1000);
		}
		timeout =
		    (int)(R->next_sample > now ? R->next_sample - now : 0);
		if (stop_ms != 0 && stop_ms > now &&
		    (int)(stop_ms - now) < timeout)
			timeout = (int)(stop_ms - now);
		for (int i = 0; i < R->nch; i++) {
			if (R->ch[i].dead)
				continue;
			pf[n].fd = R->ch[i].rep;
			pf[n].events = POLLIN;
			n++;
		}
		if (poll(pf, (nfds_t)n, timeout) <= 0)
			continue;
		for (int i = 0, k = 0; i < R->nch; i++) {
			struct child *c = &R->ch[i];
			char kd;

			if (c->dead)
				continue;
			if (!(pf[k++].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (read_full(c->rep, &kd, 1) == -1) {
				c->dead = 1;
				continue;
			}
			if (kd == BENCH_REP_READY &&
			    read_full(c->rep, &c->ready, sizeof(c->ready)) == 0)
				c->have_ready = 1;
			else if (kd == BENCH_REP_WINDOW &&
				 read_full(c->rep, &c->window,
					   sizeof(c->window)) == 0)
				c->have_window = 1;
			else if (kd == BENCH_REP_FINAL &&
				 read_full(c->rep, &c->final,
					   sizeof(c->final)) == 0)
				c->have_final = 1;
			else
				c->dead = 1;
		}
	}
}

static void
merge(struct run *R, char kind, struct bench_stats *out)
{
	bench_stats_init(out);
	for (int i = 0; i < R->nch; i++) {
		struct child *c = &R->ch[i];

		if (kind == BENCH_REP_READY && c->have_ready)
			bench_stats_merge(out, &c->ready);
		else if (kind == BENCH_REP_WINDOW && c->have_window)
			bench_stats_merge(out, &c->window);
		else if (kind == BENCH_REP_FINAL && c->have_final)
			bench_stats_merge(out, &c->final);
	}
}

/* The JSON fields the parent adds: client pids, RSS, the publisher. */
static char *
extra_json(struct run *R, const struct bench_stats *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	if (fp == NULL)
		return NULL;
	fprintf(fp, "\"pids\":[");
	for (int i = 0; i < R->nch; i++)
		fprintf(fp, "%s%d", i ? "," : "", (int)R->ch[i].pid);
	fprintf(fp, "],\"publisher_pid\":%d",
		R->have_pub ? (int)R->pub_pid : 0);
	if (R->rss.samples > 0) {
		double per = s->ready > 0 && R->rss.at_ready > R->rss.before
				 ? (double)(R->rss.at_ready - R->rss.before) /
				       (double)s->ready
				 : 0;

		fprintf(fp,
			",\"rss\":{\"samples\":%d,\"processes\":%d,"
			"\"before_bytes\":%llu,\"ready_bytes\":%llu,"
			"\"max_bytes\":%llu,\"last_bytes\":%llu,"
			"\"per_conn_bytes\":%.0f}",
			R->rss.samples, R->rss.npids,
			(unsigned long long)R->rss.before,
			(unsigned long long)R->rss.at_ready,
			(unsigned long long)R->rss.max,
			(unsigned long long)R->rss.last, per);
	}
	if (R->have_pub)
		fprintf(fp,
			",\"publisher\":{\"published\":%llu,\"replies\":%llu,"
			"\"receivers\":%llu,\"errors\":%llu,\"seconds\":%.3f,"
			"\"rate\":%.1f,\"mode\":\"%s\",\"target_rate\":%.1f}",
			(unsigned long long)R->pub.published,
			(unsigned long long)R->pub.replies,
			(unsigned long long)R->pub.receivers,
			(unsigned long long)R->pub.errors, R->pub.seconds,
			R->pub.seconds > 0
			    ? (double)R->pub.published / R->pub.seconds
			    : 0.0,
			R->o->targeted ? "targeted" : "broadcast", R->o->rate);
	fclose(fp);
	return buf;
}

static void
write_ready_file(struct run *R, const struct bench_stats *s)
{
	char tmp[4096];
	char *extra = extra_json(R, s);
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", R->o->ready_file);
	if ((fp = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "orchctl: bench: %s: %s\n", tmp,
			strerror(errno));
	} else {
		bench_render_json(fp, R->o, s, "ready", extra);
		if (fclose(fp) != 0 || rename(tmp, R->o->ready_file) == -1)
			fprintf(stderr, "orchctl: bench: %s: %s\n",
				R->o->ready_file, strerror(errno));
	}
	free(extra);
}

static void
output(struct run *R, const struct bench_stats *s, const char *kind)
{
	char *extra = extra_json(R, s);

	if (R->o->json) {
		bench_render_json(stdout, R->o, s, kind, extra);
	} else {
		char text[512] = "";
		int n = 0;

		if (R->rss.samples > 0)
			n += snprintf(
			    text, sizeof(text),
			    "server RSS (%d processes): %.1f MiB "
			    "before, %.1f MiB ready, max %.1f MiB; "
			    "%.0f B per connection\n",
			    R->rss.npids, (double)R->rss.before / 1048576.0,
			    (double)R->rss.at_ready / 1048576.0,
			    (double)R->rss.max / 1048576.0,
			    s->ready > 0 && R->rss.at_ready > R->rss.before
				? (double)(R->rss.at_ready - R->rss.before) /
				      (double)s->ready
				: 0.0);
		if (R->have_pub && n < (int)sizeof(text))
			snprintf(text + n, sizeof(text) - (size_t)n,
				 "published %llu in %.2f s (%.0f/s), "
				 "%llu errors\n",
				 (unsigned long long)R->pub.published,
				 R->pub.seconds,
				 R->pub.seconds > 0
				     ? (double)R->pub.published / R->pub.seconds
				     : 0.0,
				 (unsigned long long)R->pub.errors);
		bench_render_text(stdout, R->o, s, text);
	}
	free(extra);
}

static int
run_publish_only(struct bench_opts *o)
{
	struct bench_pub_result r;
	volatile int stop = 0;
	double secs = o->max_events > 0 ? o->timeout_s : o->duration_s;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_child_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	child_stop = 0;
	if (bench_publish_run(o, secs, &child_stop, &r) == -1)
		return ORCHCTL_FAIL;
	(void)stop;
	if (o->json)
		printf("{\"scenario\":\"publish\",\"published\":%llu,"
		       "\"replies\":%llu,\"receivers\":%llu,\"errors\":%llu,"
		       "\"seconds\":%.3f,\"rate\":%.1f,\"mode\":\"%s\"}\n",
		       (unsigned long long)r.published,
		       (unsigned long long)r.replies,
		       (unsigned long long)r.receivers,
		       (unsigned long long)r.errors, r.seconds,
		       r.seconds > 0 ? (double)r.published / r.seconds : 0.0,
		       o->targeted ? "targeted" : "broadcast");
	else
		printf("published %llu in %.2f s (%.0f/s): %llu replies, "
		       "%llu receivers in all, %llu errors\n",
		       (unsigned long long)r.published, r.seconds,
		       r.seconds > 0 ? (double)r.published / r.seconds : 0.0,
		       (unsigned long long)r.replies,
		       (unsigned long long)r.receivers,
		       (unsigned long long)r.errors);
	return r.errors == 0 && r.replies == r.published ? ORCHCTL_OK
							 : ORCHCTL_FAIL;
}

/* After the window(s): the scenario's end.  Returns the merged final
 * figures in *s. */
static void
finish(struct run *R, struct bench_stats *s)
{
	char q = BENCH_CMD_QUIT;

	ctl_send(R->ch, R->nch, &q, 1);
	(void)wait_reports(R, BENCH_REP_FINAL, mono_ms() + 30000, 0);
	merge(R, BENCH_REP_FINAL, s);
}

static void
reap(struct run *R)
{
	for (int i = 0; i < R->nch; i++) {
		int st;

		close(R->ch[i].ctl);
		close(R->ch[i].rep);
		if (waitpid(R->ch[i].pid, &st, WNOHANG) == 0) {
			kill(R->ch[i].pid, SIGTERM);
			(void)waitpid(R->ch[i].pid, &st, 0);
		}
	}
	if (R->have_pub) {
		int st;

		if (waitpid(R->pub_pid, &st, WNOHANG) == 0) {
			kill(R->pub_pid, SIGTERM);
			(void)waitpid(R->pub_pid, &st, 0);
		}
		close(R->pub_fd);
	}
}

/* fanout with the publisher: warm-up, window, drain. */
static void
run_fanout(struct run *R, struct bench_stats *out)
{
	struct bench_opts *o = R->o;
	struct bench_stats fin;
	char w = BENCH_CMD_WINDOW, e = BENCH_CMD_END;
	int counted = o->max_events > 0;
	struct {
		char cmd;
		int64_t published;
		double seconds;
	} __attribute__((packed)) d;

	if (start_publisher(R) == -1) {
		perror("orchctl: bench: publisher");
		finish(R, out);
		return;
	}
	R->have_pub = 1;
	if (!counted)
		(void)wait_reports(R, BENCH_REP_NONE,
				   mono_ms() + (uint64_t)(o->warmup_s * 1000),
				   1);
	ctl_send(R->ch, R->nch, &w, 1);
	if (!counted) {
		(void)wait_reports(R, BENCH_REP_NONE,
				   mono_ms() + (uint64_t)(o->duration_s * 1000),
				   1);
		ctl_send(R->ch, R->nch, &e, 1);
		(void)wait_reports(R, BENCH_REP_WINDOW, 0, 0);
	}
	if (sig_term)
		kill(R->pub_pid, SIGTERM); /* it reports what it sent */
	/* the publisher's result: it stops by itself */
	if (read_full(R->pub_fd, &R->pub, sizeof(R->pub)) == -1) {
		fprintf(stderr, "orchctl: bench: the publisher failed\n");
		R->have_pub = 0;
		memset(&R->pub, 0, sizeof(R->pub));
	}
	d.cmd = BENCH_CMD_DRAIN;
	d.published = (int64_t)R->pub.published;
	d.seconds = o->drain_s;
	ctl_send(R->ch, R->nch, &d, sizeof(d));
	(void)wait_reports(R, BENCH_REP_FINAL,
			   mono_ms() + (uint64_t)(o->drain_s * 1000) + 5000, 0);
	merge(R, BENCH_REP_FINAL, &fin);
	if (counted) {
		*out = fin;
		return;
	}
	merge(R, BENCH_REP_WINDOW, out);
	out->msgs_total = fin.msgs_total;
	out->expected_missing = fin.expected_missing;
	out->seq_errors = fin.seq_errors;
	out->order_errors = fin.order_errors;
	out->closed = fin.closed;
	out->open = fin.open;
}

static int
run(struct bench_opts *o)
{
	static struct run R; /* large (histograms): not on the stack */
	struct bench_stats s, rd;
	struct sigaction sa;
	int rc;

	memset(&R, 0, sizeof(R));
	R.o = o;
	R.have_pub = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: poll() wakes up */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	R.deadline = mono_ms() + (uint64_t)(o->timeout_s * 1000);
	rss_take(o, &R.rss);
	R.next_sample = mono_ms() + (uint64_t)(o->sample_s * 1000);
	if (start_children(&R) == -1) {
		reap(&R);
		return ORCHCTL_FAIL;
	}
	(void)wait_reports(&R, BENCH_REP_READY, 0, 1);
	merge(&R, BENCH_REP_READY, &rd);
	rss_take(o, &R.rss);
	R.rss.at_ready = R.rss.last;
	if (o->ready_file != NULL)
		write_ready_file(&R, &rd);
	if (!o->quiet && !o->json)
		fprintf(stderr,
			"orchctl: bench: %llu of %llu ready in %.2f s\n",
			(unsigned long long)rd.ready,
			(unsigned long long)rd.requested, rd.ready_s);

	if (o->scenario == BENCH_ECHO) {
		struct {
			char cmd;
			int64_t at;
		} __attribute__((packed))
		m = {BENCH_CMD_START,
		     o->start_at_ms > 0 ? o->start_at_ms : wall_ms() + 100};

		ctl_send(R.ch, R.nch, &m, sizeof(m));
		(void)wait_reports(&R, BENCH_REP_WINDOW, 0, 1);
		merge(&R, BENCH_REP_WINDOW, &s);
		if (o->hold_s > 0)
			(void)wait_reports(
			    &R, BENCH_REP_NONE,
			    mono_ms() + (uint64_t)(o->hold_s * 1000), 1);
		{
			struct bench_stats fin;

			finish(&R, &fin);
			s.closed = fin.closed;
			s.open = fin.open;
		}
	} else if (o->scenario == BENCH_FANOUT && o->publish) {
		run_fanout(&R, &s);
	} else {
		/* hold: idle, auth, fanout without a publisher (windows on
		 * SIGUSR1/SIGUSR2, one JSON line each) */
		uint64_t end = o->hold_s > 0
				   ? mono_ms() + (uint64_t)(o->hold_s * 1000)
				   : 0;

		int printed = 0;

		for (;;) {
			int all_win = R.nch > 0;

			(void)wait_reports(&R, BENCH_REP_NONE, end, 1);
			/* --until-count: the clients ended their window */
			for (int i = 0; i < R.nch; i++)
				if (!R.ch[i].have_window)
					all_win = 0;
			if (all_win && !printed && o->until_count > 0) {
				merge(&R, BENCH_REP_WINDOW, &s);
				output(&R, &s, "window");
				printed = 1;
			}
			if (sig_usr1) {
				char w = BENCH_CMD_WINDOW;

				sig_usr1 = 0;
				ctl_send(R.ch, R.nch, &w, 1);
				continue;
			}
			if (sig_usr2) {
				char e = BENCH_CMD_END;

				sig_usr2 = 0;
				for (int i = 0; i < R.nch; i++)
					R.ch[i].have_window = 0;
				ctl_send(R.ch, R.nch, &e, 1);
				(void)wait_reports(&R, BENCH_REP_WINDOW, 0, 0);
				merge(&R, BENCH_REP_WINDOW, &s);
				output(&R, &s, "window");
				printed = 1;
				continue;
			}
			break;
		}
		rss_take(o, &R.rss);
		finish(&R, &s);
		if (o->scenario == BENCH_AUTH)
			s.lat = rd.lat; /* connect->auth of the ready phase */
	}
	output(&R, &s, "final");
	rc = s.ready == s.requested && s.proto_errors == 0 &&
		     s.seq_errors == 0 && s.order_errors == 0 &&
		     s.expected_missing == 0
		 ? ORCHCTL_OK
		 : ORCHCTL_FAIL;
	reap(&R);
	return rc;
}

int
orchctl_bench(int argc, char **argv, const struct orchctl_opts *opts)
{
	static char secret_buf[BENCH_MAX_SECRET];
	struct bench_opts o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.json = opts->json;
	o.quiet = opts->quiet;
	rc = parse_opts(argc, argv, &o, secret_buf);
	if (rc == -1)
		return ORCHCTL_OK; /* -h */
	if (rc != ORCHCTL_OK)
		return rc;
	config_defaults(&o, opts->cfg);
	if ((rc = check_opts(&o)) != ORCHCTL_OK)
		return rc;
	if (o.scenario == BENCH_PUBLISH)
		return run_publish_only(&o);
	return run(&o);
}

uint64_t
bench_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t
bench_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
