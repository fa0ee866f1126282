/*
 * ctl_publish: "orchctl publish", an event record put straight on Redis as
 * a backend would (PROTOCOL.md section 6): PUBLISH on daemon:events (or
 * daemon:events:{org}), or XADD to the event stream.  Synchronous hiredis,
 * every step bounded by the config's redis_timeout.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "ctl.h"
#include "orchctl.h"
#include "orchd/json.h"
#include "orchd/util.h"

#define GLOBAL_CHANNEL "daemon:events"
#define DEFAULT_STREAM "daemon:stream"
#define DEFAULT_TIMEOUT_MS 2000
#define ADDR_MAX 300

struct redis_addr {
	char host[ADDR_MAX]; /* "" with a unix path */
	char path[ADDR_MAX];
	int port;
};

static struct timeval
tv_ms(uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000 * 1000)};
	return tv;
}

/* "/path", "HOST:PORT", "[V6]:PORT", or "HOST" (port 6379).  0 or -1. */
static int
parse_redis_arg(const char *s, struct redis_addr *a)
{
	const char *colon;
	uint64_t port = 6379;
	size_t hl;

	memset(a, 0, sizeof(*a));
	if (s[0] == '/') {
		if (strlen(s) >= sizeof(a->path))
			return -1;
		util_strlcpy(a->path, s, sizeof(a->path));
		return 0;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL)
			return -1;
		hl = (size_t)(end - s - 1);
		memcpy(a->host, s + 1, hl < ADDR_MAX ? hl : 0);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return -1;
	} else {
		colon = strrchr(s, ':');
		hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
		if (hl >= ADDR_MAX)
			return -1;
		memcpy(a->host, s, hl);
	}
	if (hl == 0 || hl >= ADDR_MAX)
		return -1;
	if (colon != NULL && util_parse_u64(colon + 1, 1, 65535, &port) != 0)
		return -1;
	a->port = (int)port;
	return 0;
}

/* Ask the sentinels in turn for the master (as src/sentinel.c does). */
static int
sentinel_master(const struct config_redis *r, uint64_t timeout_ms,
		struct redis_addr *a)
{
	for (int i = 0; i < r->nsentinels; i++) {
		redisContext *c = redisConnectWithTimeout(r->sentinels[i].host,
							  r->sentinels[i].port,
							  tv_ms(timeout_ms));
		redisReply *rep;

		if (c == NULL || c->err) {
			fprintf(stderr,
				"orchctl: publish: sentinel %s:%d: %s\n",
				r->sentinels[i].host, r->sentinels[i].port,
				c != NULL ? c->errstr : "out of memory");
			redisFree(c);
			continue;
		}
		redisSetTimeout(c, tv_ms(timeout_ms));
		rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s",
				   r->master);
		if (rep != NULL && rep->type == REDIS_REPLY_ARRAY &&
		    rep->elements == 2 &&
		    rep->element[0]->type == REDIS_REPLY_STRING &&
		    rep->element[1]->type == REDIS_REPLY_STRING &&
		    rep->element[0]->len < ADDR_MAX) {
			uint64_t port;

			memset(a, 0, sizeof(*a));
			memcpy(a->host, rep->element[0]->str,
			       rep->element[0]->len);
			if (util_parse_u64(rep->element[1]->str, 1, 65535,
					   &port) == 0) {
				a->port = (int)port;
				freeReplyObject(rep);
				redisFree(c);
				return 0;
			}
		}
		fprintf(stderr,
			"orchctl: publish: sentinel %s:%d does not know master "
			"%s\n",
			r->sentinels[i].host, r->sentinels[i].port, r->master);
		if (rep != NULL)
			freeReplyObject(rep);
		redisFree(c);
	}
	return -1;
}

static redisContext *
redis_open(const struct orchctl_opts *o, const char *arg, uint64_t timeout_ms)
{
	struct redis_addr a;
	redisContext *c;

	if (arg != NULL) {
		if (parse_redis_arg(arg, &a) != 0) {
			fprintf(stderr,
				"orchctl: publish: --redis wants HOST:PORT, "
				"[IPV6]:PORT or /unix/path\n");
			return NULL;
		}
	} else if (o->cfg == NULL) {
		fprintf(stderr,
			"orchctl: publish: no config (%s) and no --redis\n",
			o->conffile);
		return NULL;
	} else if (o->cfg->redis.nsentinels > 0) {
		if (sentinel_master(&o->cfg->redis, timeout_ms, &a) != 0) {
			fprintf(stderr,
				"orchctl: publish: no sentinel named the "
				"master\n");
			return NULL;
		}
	} else if (o->cfg->redis.unix_path != NULL) {
		memset(&a, 0, sizeof(a));
		util_strlcpy(a.path, o->cfg->redis.unix_path, sizeof(a.path));
	} else {
		memset(&a, 0, sizeof(a));
		util_strlcpy(a.host,
			     o->cfg->redis.host != NULL ? o->cfg->redis.host
							: "127.0.0.1",
			     sizeof(a.host));
		a.port = o->cfg->redis.port > 0 ? o->cfg->redis.port : 6379;
	}
	if (a.path[0] != '\0')
		c = redisConnectUnixWithTimeout(a.path, tv_ms(timeout_ms));
	else
		c = redisConnectWithTimeout(a.host, a.port, tv_ms(timeout_ms));
	if (c == NULL || c->err) {
		if (a.path[0] != '\0')
			fprintf(stderr, "orchctl: publish: redis %s: %s\n",
				a.path, c != NULL ? c->errstr : "no memory");
		else
			fprintf(stderr, "orchctl: publish: redis %s:%d: %s\n",
				a.host, a.port,
				c != NULL ? c->errstr : "no memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv_ms(timeout_ms));
	return c;
}

/* The whole file, at most max bytes, NUL-terminated; NULL after a message. */
static char *
read_data_file(const char *path, size_t max)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *buf;
	size_t n;

	if (fp == NULL) {
		fprintf(stderr, "orchctl: publish: %s: %s\n", path,
			strerror(errno));
		return NULL;
	}
	if ((buf = malloc(max + 2)) == NULL) {
		if (fp != stdin)
			fclose(fp);
		return NULL;
	}
	n = fread(buf, 1, max + 1, fp);
	if (fp != stdin)
		fclose(fp);
	if (n > max) {
		fprintf(stderr, "orchctl: publish: %s: over %zu bytes\n", path,
			max);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* {"eventId", where: name, key: str or n}, escaped by the JSON writer. */
static void
print_json(const char *id, const char *where, const char *name, const char *key,
	   const char *str, long long n)
{
	char buf[1024];
	struct json_writer w;
	size_t len;

	json_w_init(&w, buf, sizeof(buf));
	json_w_obj_begin(&w);
	json_w_key(&w, "eventId");
	json_w_str(&w, id);
	json_w_key(&w, where);
	json_w_str(&w, name);
	json_w_key(&w, key);
	if (str != NULL)
		json_w_str(&w, str);
	else
		json_w_int(&w, n);
	json_w_obj_end(&w);
	if (json_w_finish(&w, &len) == 0)
		printf("%.*s\n", (int)len, buf);
}

int
orchctl_publish(int argc, char **argv, const struct orchctl_opts *o)
{
	static const struct option longopts[] = {
	    {"type", required_argument, NULL, 't'},
	    {"id", required_argument, NULL, 'i'},
	    {"orchestrator", required_argument, NULL, 'o'},
	    {"daemon", required_argument, NULL, 'd'},
	    {"organization", required_argument, NULL, 'g'},
	    {"workspace", required_argument, NULL, 'w'},
	    {"channel", required_argument, NULL, 'C'},
	    {"priority", required_argument, NULL, 'p'},
	    {"ack", no_argument, NULL, 'a'},
	    {"data", required_argument, NULL, 'D'},
	    {"data-file", required_argument, NULL, 'F'},
	    {"timestamp", required_argument, NULL, 'T'},
	    {"stream", no_argument, NULL, 'S'},
	    {"org-channel", no_argument, NULL, 'O'},
	    {"redis", required_argument, NULL, 'R'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char help[] =
	    "usage: orchctl publish -t TYPE [-i ID] [-o ORCH [-d DAEMON]] "
	    "[-g ORG] [-w WORKSPACE]\n"
	    "         [-C CHANNEL] [-p PRIORITY] [-a] [--data JSON | "
	    "--data-file FILE]\n"
	    "         [--timestamp RFC3339] [--stream | --org-channel] "
	    "[--redis HOST:PORT|/path]\n"
	    "  -t, --type TYPE          event type (message.received, ...)\n"
	    "  -i, --id ID              event id (default: a random UUID)\n"
	    "  -o, --orchestrator ORCH  target orchestrator (none or *: "
	    "broadcast)\n"
	    "  -d, --daemon DAEMON      only this daemon of ORCH\n"
	    "  -g, --organization ORG   organizationId (a broadcast reaches "
	    "its orchestrators)\n"
	    "  -w, --workspace WS       workspaceId\n"
	    "  -C, --channel CHANNEL    channelId\n"
	    "  -p, --priority N         -100..100 (default 0)\n"
	    "  -a, --ack                requiresAck: queued until acked\n"
	    "  --data JSON              payload object (default {})\n"
	    "  --data-file FILE         payload object from FILE (- = stdin)\n"
	    "  --stream                 XADD to the event stream (config "
	    "event_stream_key)\n"
	    "  --org-channel            PUBLISH on daemon:events:ORG "
	    "instead of daemon:events\n"
	    "  --redis ADDR             Redis address (default: the config's "
	    "redis)\n";
	struct ctl_event_args a;
	const char *data_file = NULL, *redis_arg = NULL;
	char *data_buf = NULL, *record = NULL, err[300], id[EVENT_ID_MAX],
	     channel[128];
	int stream = 0, org_channel = 0, ch, n, rc = ORCHCTL_FAIL;
	size_t max = o->cfg != NULL && o->cfg->max_event_size > 0
			 ? (size_t)o->cfg->max_event_size
			 : EVENT_DEFAULT_MAX_SIZE;
	uint64_t timeout = o->cfg != NULL && o->cfg->redis_timeout_ms > 0
			       ? o->cfg->redis_timeout_ms
			       : DEFAULT_TIMEOUT_MS;
	redisContext *c = NULL;
	redisReply *rep = NULL;

	memset(&a, 0, sizeof(a));
	while ((ch = getopt_long(argc, argv, "+ht:i:o:d:g:w:C:p:a", longopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'h':
			printf("%s", help);
			return ORCHCTL_OK;
		case 't':
			a.type = optarg;
			break;
		case 'i':
			a.id = optarg;
			break;
		case 'o':
			a.orch = optarg;
			break;
		case 'd':
			a.daemon = optarg;
			break;
		case 'g':
			a.org = optarg;
			break;
		case 'w':
			a.workspace = optarg;
			break;
		case 'C':
			a.channel = optarg;
			break;
		case 'p': {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg ||
			    v < EVENT_PRIORITY_MIN || v > EVENT_PRIORITY_MAX) {
				fprintf(stderr, "orchctl: publish: -p must be "
						"an integer -100..100\n");
				return ORCHCTL_USAGE;
			}
			a.priority = (int)v;
			break;
		}
		case 'a':
			a.requires_ack = true;
			break;
		case 'D':
			a.data = optarg;
			break;
		case 'F':
			data_file = optarg;
			break;
		case 'T':
			a.timestamp = optarg;
			break;
		case 'S':
			stream = 1;
			break;
		case 'O':
			org_channel = 1;
			break;
		case 'R':
			redis_arg = optarg;
			break;
		default:
			fprintf(stderr, "orchctl: publish: see \"orchctl "
					"publish -h\"\n");
			return ORCHCTL_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
			"orchctl: publish: unexpected argument \"%s\"\n",
			argv[optind]);
		return ORCHCTL_USAGE;
	}
	if (a.data != NULL && data_file != NULL) {
		fprintf(stderr,
			"orchctl: publish: --data and --data-file exclude each "
			"other\n");
		return ORCHCTL_USAGE;
	}
	if (stream && org_channel) {
		fprintf(stderr, "orchctl: publish: --stream and --org-channel "
				"exclude each other\n");
		return ORCHCTL_USAGE;
	}
	if (org_channel && (a.org == NULL || a.org[0] == '\0')) {
		fprintf(stderr,
			"orchctl: publish: --org-channel needs -g ORG\n");
		return ORCHCTL_USAGE;
	}
	if (data_file != NULL) {
		if ((data_buf = read_data_file(data_file, max)) == NULL)
			return ORCHCTL_FAIL;
		a.data = data_buf;
	}
	a.now_ms = util_wall_ms();
	if ((record = malloc(max + 1)) == NULL)
		goto out;
	n = ctl_event_record(&a, record, max + 1, id, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "orchctl: publish: %s\n", err);
		rc = ORCHCTL_USAGE;
		goto out;
	}
	if ((c = redis_open(o, redis_arg, timeout)) == NULL)
		goto out;
	if (stream) {
		const char *key = o->cfg != NULL && o->cfg->event_stream_key
				      ? o->cfg->event_stream_key
				      : DEFAULT_STREAM;

		if (o->cfg != NULL && !o->cfg->event_stream && !o->quiet)
			fprintf(stderr,
				"orchctl: publish: warning: event_stream is "
				"off in %s: orchd does not read %s\n",
				o->conffile, key);
		util_strlcpy(channel, key, sizeof(channel));
		rep = redisCommand(c, "XADD %s * event %b", key, record,
				   (size_t)n);
	} else {
		if (org_channel)
			snprintf(channel, sizeof(channel), "%s:%s",
				 GLOBAL_CHANNEL, a.org);
		else
			util_strlcpy(channel, GLOBAL_CHANNEL, sizeof(channel));
		rep = redisCommand(c, "PUBLISH %s %b", channel, record,
				   (size_t)n);
	}
	if (rep == NULL) {
		fprintf(stderr, "orchctl: publish: redis: %s\n", c->errstr);
		goto out;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "orchctl: publish: redis: %s\n", rep->str);
		goto out;
	}
	if (stream && rep->type == REDIS_REPLY_STRING) {
		if (o->json)
			print_json(id, "stream", channel, "entryId", rep->str,
				   0);
		else if (!o->quiet)
			printf("%s stream %s entry %s\n", id, channel,
			       rep->str);
		rc = ORCHCTL_OK;
	} else if (!stream && rep->type == REDIS_REPLY_INTEGER) {
		if (o->json)
			print_json(id, "channel", channel, "receivers", NULL,
				   rep->integer);
		else if (!o->quiet)
			printf("%s %lld receiver(s)\n", id, rep->integer);
		rc = ORCHCTL_OK;
	} else {
		fprintf(stderr, "orchctl: publish: unexpected Redis reply\n");
	}
out:
	if (rep != NULL)
		freeReplyObject(rep);
	redisFree(c);
	free(record);
	free(data_buf);
	return rc;
}
