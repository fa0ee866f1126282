/*
 * ctl_admin: the commands that talk to orchd's admin socket (status,
 * connections, kick, revoke, loglevel, drain).  One request line, one reply
 * line (interfaces section 3); the reply is printed as a table, or as it
 * came with --json.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "orchctl.h"
#include "orchd/json.h"
#include "orchd/util.h"

#ifndef ORCHD_RUNSTATEDIR
#define ORCHD_RUNSTATEDIR "/var/run"
#endif
/* Where the sample config puts it; used when no config could be read. */
#define ADMIN_SOCKET_DEFAULT ORCHD_RUNSTATEDIR "/orchd.sock"
/* A reply must come within this (a drain or a kick answers at once). */
#define ADMIN_TIMEOUT_MS 30000

static const char *
admin_path(const struct orchctl_opts *o)
{
	if (o->admin_socket != NULL)
		return o->admin_socket;
	if (o->cfg != NULL)
		return o->cfg->admin_socket; /* NULL: not configured */
	return ADMIN_SOCKET_DEFAULT;
}

static int
wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t now;
	int rc;

	for (;;) {
		now = util_now_ms();
		if (now >= deadline)
			return 0;
		rc = poll(&p, 1, (int)(deadline - now));
		if (rc < 0 && errno == EINTR)
			continue;
		return rc;
	}
}

/*
 * Send one request line and read the one reply line (malloc'ed, without the
 * newline, NUL-terminated) into *reply.  0, or -1 after printing why.
 */
static int
admin_call(const struct orchctl_opts *o, const char *cmd, const char *req,
	   size_t reqlen, char **reply, size_t *replylen)
{
	const char *path = admin_path(o);
	struct sockaddr_un sun;
	uint64_t deadline = util_now_ms() + ADMIN_TIMEOUT_MS;
	size_t len = 0, cap = 0, off = 0;
	char *buf = NULL, *nl = NULL;
	int fd;

	*reply = NULL;
	if (path == NULL || path[0] == '\0') {
		fprintf(stderr,
			"orchctl: %s: no admin socket: set admin_socket in %s "
			"or give -s SOCKET\n",
			cmd, o->conffile);
		return -1;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "orchctl: %s: socket path too long: %s\n", cmd,
			path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(stderr, "orchctl: %s: connect %s: %s\n", cmd, path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (off < reqlen + 1) {
		const char *p = off < reqlen ? req + off : "\n";
		size_t n = off < reqlen ? reqlen - off : 1;
		ssize_t w;

		if (wait_fd(fd, POLLOUT, deadline) <= 0)
			goto timeout;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "orchctl: %s: write %s: %s\n", cmd,
				path, strerror(errno));
			goto fail;
		}
		off += (size_t)w;
	}
	while (nl == NULL) {
		ssize_t r;

		if (cap - len < 4096) {
			char *nb;

			if (cap >= CTL_ADMIN_REPLY_MAX) {
				fprintf(stderr,
					"orchctl: %s: reply over %d bytes\n",
					cmd, CTL_ADMIN_REPLY_MAX);
				goto fail;
			}
			cap = cap == 0 ? 65536 : cap * 2;
			if ((nb = realloc(buf, cap + 1)) == NULL) {
				fprintf(stderr, "orchctl: %s: out of memory\n",
					cmd);
				goto fail;
			}
			buf = nb;
		}
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			goto timeout;
		r = recv(fd, buf + len, cap - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr,
				"orchctl: %s: %s closed the connection "
				"without a reply%s%s\n",
				cmd, path, r < 0 ? ": " : "",
				r < 0 ? strerror(errno) : "");
			goto fail;
		}
		nl = memchr(buf + len, '\n', (size_t)r);
		len += (size_t)r;
	}
	close(fd);
	*nl = '\0';
	*replylen = (size_t)(nl - buf);
	*reply = buf;
	return 0;
timeout:
	fprintf(stderr, "orchctl: %s: no reply from %s within %d s\n", cmd,
		path, ADMIN_TIMEOUT_MS / 1000);
fail:
	free(buf);
	close(fd);
	return -1;
}

/*
 * Run one request.  On success the reply is left in *reply for the caller
 * to print (unless --json, which prints it here); returns an exit status.
 */
static int
admin_run(const struct orchctl_opts *o, const char *cmd, const char *req,
	  int reqlen, char **reply, size_t *replylen)
{
	char err[600];
	int rc;

	*reply = NULL;
	if (reqlen < 0) {
		fprintf(stderr, "orchctl: %s: arguments too long\n", cmd);
		return ORCHCTL_USAGE;
	}
	if (admin_call(o, cmd, req, (size_t)reqlen, reply, replylen) != 0)
		return ORCHCTL_FAIL;
	rc = ctl_reply_ok(*reply, *replylen, err, sizeof(err));
	if (rc <= 0) {
		fprintf(stderr, "orchctl: %s: %s%s\n", cmd,
			rc < 0 ? "bad reply: " : "", err);
		if (o->json && rc == 0)
			printf("%s\n", *reply);
		free(*reply);
		*reply = NULL;
		return ORCHCTL_FAIL;
	}
	if (o->json) {
		printf("%s\n", *reply);
		free(*reply);
		*reply = NULL;
	}
	return ORCHCTL_OK;
}

/* A field of an ok reply as an integer (for one-line summaries). */
static int64_t
reply_int(const char *reply, size_t len, const char *key)
{
	struct json_doc d;
	int64_t v = -1;

	if (json_parse(&d, reply, len, NULL) == 0) {
		json_get_int64(&d, json_obj_get(&d, 0, key), &v);
		json_doc_free(&d);
	}
	return v;
}

static int
parse_long(const char *cmd, const char *what, const char *s, uint64_t max,
	   uint64_t *out)
{
	if (util_parse_u64(s, 0, max, out) != 0) {
		fprintf(stderr,
			"orchctl: %s: %s must be an integer 0..%" PRIu64 "\n",
			cmd, what, max);
		return -1;
	}
	return 0;
}

/* getopt's own message already went out; add the pointer to -h. */
static int
usage_error(const char *cmd)
{
	fprintf(stderr, "orchctl: %s: see \"orchctl %s -h\"\n", cmd, cmd);
	return ORCHCTL_USAGE;
}

/*
 * Options of a command that has none but -h.  Returns -1 to go on, else
 * the exit status (-h printed the help, or a usage error).
 */
static int
only_help(int argc, char **argv, const char *cmd, const char *help)
{
	int ch;

	while ((ch = getopt(argc, argv, "h")) != -1) {
		if (ch == 'h') {
			printf("%s", help);
			return ORCHCTL_OK;
		}
		return usage_error(cmd);
	}
	return -1;
}

int
orchctl_status(int argc, char **argv, const struct orchctl_opts *o)
{
	char req[64], *reply;
	size_t len;
	int rc;

	rc = only_help(argc, argv, "status",
		       "usage: orchctl status\n"
		       "  workers, connections, relay, events and database\n");
	if (rc >= 0)
		return rc;
	if (optind != argc) {
		fprintf(stderr, "orchctl: status: takes no arguments\n");
		return ORCHCTL_USAGE;
	}
	rc =
	    admin_run(o, "status", req,
		      ctl_req_simple(req, sizeof(req), "status"), &reply, &len);
	if (rc != ORCHCTL_OK || reply == NULL)
		return rc;
	if (ctl_render_status(reply, len, stdout) != 0) {
		fprintf(stderr, "orchctl: status: reply has no stats object\n");
		rc = ORCHCTL_FAIL;
	}
	free(reply);
	return rc;
}

int
orchctl_connections(int argc, char **argv, const struct orchctl_opts *o)
{
	static const char help[] =
	    "usage: orchctl connections [-o ORCH] [-g ORG] [-w WORKER] "
	    "[-n LIMIT]\n"
	    "  -o ORCH    only this orchestrator's connections\n"
	    "  -g ORG     only this organization's\n"
	    "  -w WORKER  only this worker slot's\n"
	    "  -n LIMIT   at most LIMIT rows (server default 1000, max "
	    "100000)\n";
	const char *orch = NULL, *org = NULL;
	uint64_t worker = 0, limit = 0;
	int has_worker = 0, ch, n, rc;
	char req[1024], *reply;
	size_t len;

	while ((ch = getopt(argc, argv, "+ho:g:w:n:")) != -1) {
		switch (ch) {
		case 'h':
			printf("%s", help);
			return ORCHCTL_OK;
		case 'o':
			orch = optarg;
			break;
		case 'g':
			org = optarg;
			break;
		case 'w':
			if (parse_long("connections", "-w", optarg, 1023,
				       &worker) != 0)
				return ORCHCTL_USAGE;
			has_worker = 1;
			break;
		case 'n':
			if (parse_long("connections", "-n", optarg, 100000,
				       &limit) != 0 ||
			    limit == 0) {
				if (limit == 0)
					fprintf(stderr, "orchctl: connections: "
							"-n must be at least "
							"1\n");
				return ORCHCTL_USAGE;
			}
			break;
		default:
			return usage_error("connections");
		}
	}
	if (optind != argc) {
		fprintf(stderr,
			"orchctl: connections: unexpected argument "
			"\"%s\"\n",
			argv[optind]);
		return ORCHCTL_USAGE;
	}
	n = ctl_req_connections(req, sizeof(req), orch, org,
				has_worker ? (long)worker : -1,
				(unsigned long)limit);
	rc = admin_run(o, "connections", req, n, &reply, &len);
	if (rc != ORCHCTL_OK || reply == NULL)
		return rc;
	if (ctl_render_connections(reply, len, util_wall_ms(), stdout) != 0) {
		fprintf(stderr,
			"orchctl: connections: reply has no connections "
			"array\n");
		rc = ORCHCTL_FAIL;
	}
	free(reply);
	return rc;
}

int
orchctl_kick(int argc, char **argv, const struct orchctl_opts *o)
{
	static const char help[] =
	    "usage: orchctl kick (-o ORCH [-d DAEMON] | -i CONN_ID) "
	    "[-r REASON]\n"
	    "  -o ORCH     every connection of this orchestrator\n"
	    "  -d DAEMON   only this daemon of ORCH\n"
	    "  -i CONN_ID  one connection, WORKER:ID as \"connections\" "
	    "shows it\n"
	    "  -r REASON   the close reason (logged by orchd)\n"
	    "Matching connections are closed with 4006; the daemons are told "
	    "not to come back.\n";
	const char *orch = NULL, *daemon = NULL, *conn = NULL, *reason = NULL;
	char req[1024], err[256], *reply;
	size_t len;
	int ch, n, rc;

	while ((ch = getopt(argc, argv, "+ho:d:i:r:")) != -1) {
		switch (ch) {
		case 'h':
			printf("%s", help);
			return ORCHCTL_OK;
		case 'o':
			orch = optarg;
			break;
		case 'd':
			daemon = optarg;
			break;
		case 'i':
			conn = optarg;
			break;
		case 'r':
			reason = optarg;
			break;
		default:
			return usage_error("kick");
		}
	}
	if (optind != argc) {
		fprintf(stderr, "orchctl: kick: unexpected argument \"%s\"\n",
			argv[optind]);
		return ORCHCTL_USAGE;
	}
	n = ctl_req_kick(req, sizeof(req), orch, daemon, conn, reason, err,
			 sizeof(err));
	if (n < 0) {
		fprintf(stderr, "orchctl: kick: %s\n", err);
		return ORCHCTL_USAGE;
	}
	rc = admin_run(o, "kick", req, n, &reply, &len);
	if (rc != ORCHCTL_OK || reply == NULL)
		return rc;
	if (!o->quiet)
		printf("%" PRId64 " connection(s) closed\n",
		       reply_int(reply, len, "matched"));
	free(reply);
	return rc;
}

int
orchctl_revoke(int argc, char **argv, const struct orchctl_opts *o)
{
	static const char help[] =
	    "usage: orchctl revoke [-t TTL] JTI\n"
	    "  -t TTL  ask the server to keep the revocation TTL seconds\n"
	    "Adds JTI to daemon:tokens:revoked and closes the connections "
	    "that use it.\n";
	uint64_t ttl = 0;
	char req[1024], err[256], *reply;
	size_t len;
	int ch, n, rc;

	/* No "+": options may follow the jti ("revoke JTI -t 60"). */
	while ((ch = getopt(argc, argv, "ht:")) != -1) {
		switch (ch) {
		case 'h':
			printf("%s", help);
			return ORCHCTL_OK;
		case 't':
			if (parse_long("revoke", "-t", optarg, UINT32_MAX,
				       &ttl) != 0)
				return ORCHCTL_USAGE;
			break;
		default:
			return usage_error("revoke");
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "orchctl: revoke: needs exactly one JTI\n");
		return ORCHCTL_USAGE;
	}
	n = ctl_req_revoke(req, sizeof(req), argv[optind], ttl, err,
			   sizeof(err));
	if (n < 0) {
		fprintf(stderr, "orchctl: revoke: %s\n", err);
		return ORCHCTL_USAGE;
	}
	rc = admin_run(o, "revoke", req, n, &reply, &len);
	if (rc != ORCHCTL_OK || reply == NULL)
		return rc;
	if (!o->quiet)
		printf("revoked %s; %" PRId64 " connection(s) closed\n",
		       argv[optind], reply_int(reply, len, "closed"));
	free(reply);
	return rc;
}

int
orchctl_loglevel(int argc, char **argv, const struct orchctl_opts *o)
{
	char req[256], err[256], *reply, level[32] = "";
	size_t len;
	int n, rc;

	rc = only_help(argc, argv, "loglevel",
		       "usage: orchctl loglevel [LEVEL]\n"
		       "  without LEVEL: print the level in force\n"
		       "  LEVEL: error, warn, notice, info or debug (the relay "
		       "and every worker)\n");
	if (rc >= 0)
		return rc;
	if (argc - optind > 1) {
		fprintf(stderr, "orchctl: loglevel: at most one LEVEL\n");
		return ORCHCTL_USAGE;
	}
	n = ctl_req_loglevel(req, sizeof(req),
			     optind < argc ? argv[optind] : NULL, err,
			     sizeof(err));
	if (n < 0) {
		fprintf(stderr, "orchctl: loglevel: %s\n", err);
		return ORCHCTL_USAGE;
	}
	rc = admin_run(o, "loglevel", req, n, &reply, &len);
	if (rc != ORCHCTL_OK || reply == NULL)
		return rc;
	{
		struct json_doc d;

		if (json_parse(&d, reply, len, NULL) == 0) {
			json_get_string(&d, json_obj_get(&d, 0, "level"), level,
					sizeof(level), NULL);
			json_doc_free(&d);
		}
	}
	if (!o->quiet)
		printf("%s\n", level[0] != '\0' ? level : "?");
	free(reply);
	return rc;
}

int
orchctl_drain(int argc, char **argv, const struct orchctl_opts *o)
{
	char req[256], *reply;
	uint64_t worker;
	size_t len;
	int rc;

	rc =
	    only_help(argc, argv, "drain",
		      "usage: orchctl drain WORKER\n"
		      "  WORKER: the slot (\"status\" lists them); its daemons "
		      "get reconnect,\n"
		      "  it exits and the supervisor starts a fresh one\n");
	if (rc >= 0)
		return rc;
	if (argc - optind != 1) {
		fprintf(stderr, "orchctl: drain: needs exactly one WORKER\n");
		return ORCHCTL_USAGE;
	}
	if (parse_long("drain", "WORKER", argv[optind], 1023, &worker) != 0)
		return ORCHCTL_USAGE;
	rc = admin_run(o, "drain", req,
		       ctl_req_drain(req, sizeof(req), (long)worker), &reply,
		       &len);
	if (rc != ORCHCTL_OK || reply == NULL)
		return rc;
	if (!o->quiet)
		printf("worker %" PRIu64 " (pid %" PRId64 ") draining\n",
		       worker, reply_int(reply, len, "pid"));
	free(reply);
	return rc;
}
