/*
 * config: the orchd.conf(5) parser.
 *
 * Every directive is one entry of directives[] below: its name, value type
 * (with bounds), whether it may repeat, its default as text and where the
 * value lands in struct config.  config_new() feeds each default text through
 * the very code that parses the file, so a default cannot drift from what the
 * parser accepts, and config_dump() prints every entry back in the same
 * syntax.  Adding a directive is one table entry plus its struct field.
 *
 * An error does not stop the parse: each is reported through the caller's
 * callback as "file:line: directive: message" and the parse goes on, so that
 * "orchd -t" shows every mistake in one run (up to MAX_ERRORS of them).
 *
 * This file holds the table, the reader and the reporting; the context-free
 * part -- splitting lines into words, parsing and formatting the values --
 * is in config_value.c (the cfgv_ functions of config_int.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <glob.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/log.h"
#include "orchd/util.h"

#ifndef ORCHD_RUNSTATEDIR
#define ORCHD_RUNSTATEDIR "/var/run"
#endif

#define MSG_MAX 1024
/*
 * A config file is small and written by hand.  This limit and
 * CFGV_LINE_MAX keep a mistake such as "include" of a log file from eating
 * memory or flooding the log.
 */
#define MAX_ERRORS 100 /* then one "too many errors" and the parse stops */

#define MS_SECOND CFG_MS_SECOND
#define MS_MINUTE CFG_MS_MINUTE
#define MS_HOUR CFG_MS_HOUR
#define MS_DAY CFG_MS_DAY
#define KIB CFG_KIB
#define MIB CFG_MIB
#define GIB CFG_GIB

/* ---- error reporting ---------------------------------------------------- */

void
cfgp_report(struct pctx *c, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The text may quote the file: keep terminals and logs sane. */
	for (char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (c->nerr > MAX_ERRORS)
		return;
	if (c->nerr++ == MAX_ERRORS && c->file != NULL)
		snprintf(msg, sizeof(msg),
			 "%s:%d: too many errors (more than %d); giving up",
			 c->file, c->line, MAX_ERRORS);
	else if (c->nerr == MAX_ERRORS + 1)
		snprintf(msg, sizeof(msg),
			 "%s: too many errors (more than %d); giving up",
			 c->cfg->path, MAX_ERRORS);
	if (c->errfn != NULL)
		c->errfn(c->arg, msg);
}

void
cfgp_derr(struct pctx *c, const struct directive *d, const char *fmt, ...)
{
	char body[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (c->envname != NULL)
		cfgp_report(c, "environment: %s: %s", c->envname, body);
	else if (d == NULL)
		cfgp_report(c, "%s:%d: %s", c->file, c->line, body);
	else
		cfgp_report(c, "%s:%d: %s: %s%s", c->file, c->line, d->name,
			    body,
			    c->semicolon ? " (a trailing \";\" is not part of "
					   "the syntax)"
					 : "");
}

const char *
cfgp_show(struct pctx *c, const char *v)
{
	char *b = c->show[c->nshow++ % 2];
	size_t n = 0, cap = sizeof(c->show[0]);

	b[n++] = '"';
	for (; *v != '\0' && n < cap - 6; v++)
		b[n++] = *v;
	if (*v != '\0') {
		memcpy(b + n, "...", 3);
		n += 3;
	}
	b[n++] = '"';
	b[n] = '\0';
	return b;
}

/* Keep a file name alive for the whole parse (struct where points to it). */
static const char *
keep_name(struct pctx *c, const char *name)
{
	c->names = util_realloc(c->names, (c->nnames + 1) * sizeof(*c->names));
	c->names[c->nnames] = util_strdup(name);
	return c->names[c->nnames++];
}

/* ---- the directive table ---------------------------------------------- */

static const struct enumval log_levels[] = {
    {"error", LOG_ERR}, {"warn", LOG_WARNING}, {"notice", LOG_NOTICE},
    {"info", LOG_INFO}, {"debug", LOG_DEBUG},  {NULL, 0},
};

static const struct enumval revocation_values[] = {
    {"strict", CONFIG_REVOCATION_STRICT},
    {"best-effort", CONFIG_REVOCATION_BEST_EFFORT},
    {"off", CONFIG_REVOCATION_OFF},
    {NULL, 0},
};

static const struct enumval db_failure_values[] = {
    {"fail-closed", CONFIG_DB_FAIL_CLOSED},
    {"cached", CONFIG_DB_CACHED},
    {NULL, 0},
};

static const struct enumval bool_values[] = {
    {"on", 1},
    {"off", 0},
    {NULL, 0},
};

#define OFF(field) offsetof(struct config, field)

/* clang-format off */
static const struct directive directives[] = {
	{.name = "include", .type = DT_INCLUDE, .flags = D_REPEAT,
	 .syntax = "FILE",
	 .help = "read FILE (a glob(3) pattern, relative to this file's "
		 "directory) in place"},
	{.name = "listen", .type = DT_LISTEN, .flags = D_REPEAT,
	 .def = "0.0.0.0:8080", .maxargs = 3,
	 .syntax = "ADDR:PORT [tls] [admin]",
	 .help = "accept WebSocket connections on this IPv4, [IPv6] or * "
		 "address"},
	{.name = "workers", .type = DT_CUSTOM, .def = "auto", .min = 1,
	 .max = CONFIG_MAX_WORKERS, .set = cfgc_set_workers, .dump = cfgc_dump_workers,
	 .syntax = "N|auto",
	 .help = "worker processes; auto is one per online CPU"},
	{.name = "user", .type = DT_STRING, .off = OFF(user), .def = "nobody",
	 .check = cfgc_check_user, .syntax = "NAME",
	 .help = "user the processes run as when orchd is started as root"},
	{.name = "group", .type = DT_STRING, .off = OFF(group),
	 .check = cfgc_check_group, .syntax = "NAME",
	 .help = "group to run as (default: the user's primary group)"},
	{.name = "pidfile", .type = DT_PATH, .off = OFF(pidfile),
	 .def = ORCHD_RUNSTATEDIR "/orchd.pid", .syntax = "PATH",
	 .help = "file the supervisor writes its process id to"},
	{.name = "log", .type = DT_CUSTOM, .def = "syslog", .set = cfgc_set_log,
	 .dump = cfgc_dump_log, .syntax = "syslog|stderr|FILE",
	 .help = "where messages go; FILE is an absolute path"},
	{.name = "log_level", .type = DT_ENUM, .off = OFF(log_level),
	 .def = "info", .enums = log_levels,
	 .syntax = "error|warn|notice|info|debug",
	 .help = "least severe message that is logged"},
	{.name = "ws_path", .type = DT_STRING, .off = OFF(ws_path),
	 .def = "/daemon/ws", .check = cfgc_check_ws_path, .syntax = "PATH",
	 .help = "HTTP path of the WebSocket endpoint"},
	{.name = "ws_echo_path", .type = DT_STRING, .off = OFF(ws_echo_path),
	 .check = cfgc_check_ws_path, .syntax = "PATH",
	 .help = "HTTP path of a WebSocket echo endpoint, for conformance "
		 "tests (default: none)"},
	{.name = "heartbeat_interval", .type = DT_DURATION,
	 .off = OFF(heartbeat_interval_ms), .def = "30s", .min = MS_SECOND,
	 .max = MS_HOUR, .syntax = "DURATION",
	 .help = "interval between heartbeats sent to each connection"},
	{.name = "auth_timeout", .type = DT_DURATION,
	 .off = OFF(auth_timeout_ms), .def = "10s", .min = 100,
	 .max = 10 * MS_MINUTE, .syntax = "DURATION",
	 .help = "time a new connection has to authenticate"},
	{.name = "drain_timeout", .type = DT_DURATION,
	 .off = OFF(drain_timeout_ms), .def = "10s", .min = 0, .max = MS_HOUR,
	 .syntax = "DURATION",
	 .help = "time given to connections to leave on stop or reload"},
	{.name = "max_connections", .type = DT_UINT,
	 .off = OFF(max_connections), .def = "100000", .min = 1,
	 .max = 10000000, .syntax = "N",
	 .help = "connections the whole server accepts"},
	{.name = "max_connections_per_orchestrator", .type = DT_UINT,
	 .off = OFF(max_connections_per_orchestrator), .def = "5", .min = 1,
	 .max = 100000, .syntax = "N",
	 .help = "connections one orchestrator may hold at once"},
	{.name = "http_max_header_size", .type = DT_SIZE,
	 .off = OFF(http_max_header_size), .def = "8k", .min = KIB,
	 .max = 64 * KIB, .syntax = "SIZE",
	 .help = "largest HTTP request line and headers; more gets 431"},
	{.name = "http_max_body_size", .type = DT_SIZE,
	 .off = OFF(http_max_body_size), .def = "1m", .min = 0,
	 .max = 64 * MIB, .syntax = "SIZE",
	 .help = "largest HTTP request body; more gets 413"},
	{.name = "handshake_timeout", .type = DT_DURATION,
	 .off = OFF(handshake_timeout_ms), .def = "10s", .min = 100,
	 .max = 10 * MS_MINUTE, .syntax = "DURATION",
	 .help = "time a connection has for its TLS handshake and request "
		 "head"},
	{.name = "keepalive_timeout", .type = DT_DURATION,
	 .off = OFF(keepalive_timeout_ms), .def = "60s", .min = 0,
	 .max = MS_HOUR, .syntax = "DURATION",
	 .help = "idle time allowed between two HTTP requests; 0 disables "
		 "keep-alive"},
	{.name = "ws_allowed_origins", .type = DT_CUSTOM, .flags = D_REPEAT,
	 .maxargs = CFGV_MAX_ARGS - 1, .set = cfgc_add_origins, .dump = cfgc_dump_origins,
	 .syntax = "ORIGIN...",
	 .help = "browser origins allowed to upgrade; others get 403 "
		 "(default: any)"},
	{.name = "ws_max_message_size", .type = DT_SIZE,
	 .off = OFF(ws_max_message_size), .def = "1m", .min = 125,
	 .max = GIB, .syntax = "SIZE",
	 .help = "largest WebSocket message received; more closes with "
		 "1009"},
	{.name = "ws_ping_interval", .type = DT_DURATION,
	 .off = OFF(ws_ping_interval_ms), .def = "30s", .min = 0,
	 .max = MS_HOUR, .syntax = "DURATION",
	 .help = "interval between pings of an idle WebSocket; 0: never"},
	{.name = "ws_pong_timeout", .type = DT_DURATION,
	 .off = OFF(ws_pong_timeout_ms), .def = "10s", .min = 100,
	 .max = 10 * MS_MINUTE, .syntax = "DURATION",
	 .help = "time a ping has to be answered before the connection is "
		 "closed"},
	{.name = "ws_close_timeout", .type = DT_DURATION,
	 .off = OFF(ws_close_timeout_ms), .def = "5s", .min = 100,
	 .max = MS_MINUTE, .syntax = "DURATION",
	 .help = "time the peer has to answer our close frame"},
	{.name = "ws_compression", .type = DT_BOOL, .off = OFF(ws_compression),
	 .def = "on", .syntax = "on|off",
	 .help = "negotiate permessage-deflate when the client offers it"},
	{.name = "ws_compression_level", .type = DT_UINT,
	 .off = OFF(ws_compression_level), .def = "1", .min = 1, .max = 9,
	 .syntax = "N", .help = "zlib level of compressed messages (1..9)"},
	{.name = "ws_compression_min_size", .type = DT_SIZE,
	 .off = OFF(ws_compression_min_size), .def = "64", .min = 0,
	 .max = MIB, .syntax = "SIZE",
	 .help = "smaller messages are sent uncompressed"},
	{.name = "max_send_queue", .type = DT_SIZE,
	 .off = OFF(max_send_queue), .def = "1m", .min = 4 * KIB, .max = GIB,
	 .syntax = "SIZE",
	 .help = "outgoing bytes one connection may have queued; more closes "
		 "it"},
	{.name = "redis", .type = DT_REDIS, .def = "127.0.0.1:6379",
	 .maxargs = CONFIG_MAX_SENTINELS + 3,
	 .syntax = "HOST:PORT|[IPv6]:PORT|unix:PATH|PATH|sentinel HOST:PORT... "
		   "master NAME",
	 .help = "Redis server the events come from"},
	{.name = "redis_timeout", .type = DT_DURATION,
	 .off = OFF(redis_timeout_ms), .def = "2s", .min = 100,
	 .max = MS_MINUTE, .syntax = "DURATION",
	 .help = "time a Redis command has to answer before Redis counts as "
		 "unavailable"},
	{.name = "session_ttl", .type = DT_DURATION, .flags = D_SECONDS,
	 .off = OFF(session_ttl_ms), .def = "0s", .min = 0, .max = MS_DAY,
	 .dump = cfgc_dump_session_ttl, .syntax = "DURATION",
	 .help = "lifetime of a connection's session key in Redis, renewed by "
		 "its heartbeats; 0: 3 x heartbeat_interval"},
	{.name = "database", .type = DT_CUSTOM, .set = cfgd_set_database,
	 .dump = cfgd_dump_database, .syntax = "CONNINFO",
	 .help = "PostgreSQL directory, as a libpq conninfo string or URI "
		 "(default: none, the directory is off); -T hides it"},
	{.name = "database_file", .type = DT_PATH, .off = OFF(database_file),
	 .check = cfgd_load_database_file, .syntax = "PATH",
	 .help = "file holding the PostgreSQL conninfo, instead of database"},
	{.name = "database_timeout", .type = DT_DURATION,
	 .off = OFF(database_timeout_ms), .def = "2s", .min = 100,
	 .max = MS_MINUTE, .syntax = "DURATION",
	 .help = "time a directory look-up (or a connect) has before the "
		 "database counts as unavailable"},
	{.name = "database_failure", .type = DT_ENUM,
	 .off = OFF(database_failure), .def = "fail-closed",
	 .enums = db_failure_values, .syntax = "fail-closed|cached",
	 .help = "while the database is unavailable: refuse (fail-closed) or "
		 "use the last answer (cached)"},
	{.name = "database_cache_ttl", .type = DT_DURATION,
	 .off = OFF(database_cache_ttl_ms), .def = "60s", .min = 0,
	 .max = MS_DAY, .syntax = "DURATION",
	 .help = "how long an orchestrator's directory look-up is reused; 0: "
		 "never"},
	{.name = "database_connections", .type = DT_UINT,
	 .off = OFF(database_connections), .def = "2", .min = 1,
	 .max = CONFIG_DB_MAX_CONNECTIONS, .syntax = "N",
	 .help = "PostgreSQL connections each worker keeps for look-ups"},
	{.name = "event_stream", .type = DT_BOOL, .off = OFF(event_stream),
	 .def = "off", .syntax = "on|off",
	 .help = "also read events from the Redis stream event_stream_key "
		 "(lossless across outages)"},
	{.name = "event_stream_key", .type = DT_STRING,
	 .off = OFF(event_stream_key), .def = "daemon:stream",
	 .syntax = "KEY",
	 .help = "the stream read with event_stream on; its last id is kept "
		 "in KEY:orchd-last-id"},
	{.name = "max_event_size", .type = DT_SIZE, .off = OFF(max_event_size),
	 .def = "64k", .min = 1 * KIB, .max = 512 * KIB, .syntax = "SIZE",
	 .help = "largest event record accepted from Redis; larger ones are "
		 "counted and skipped"},
	{.name = "queue_max_events", .type = DT_UINT,
	 .off = OFF(queue_max_events), .def = "1000", .min = 1,
	 .max = 1000000, .syntax = "N",
	 .help = "events kept per orchestrator in the durable queue; the "
		 "oldest are evicted"},
	{.name = "queue_retention", .type = DT_DURATION, .flags = D_SECONDS,
	 .off = OFF(queue_retention_ms), .def = "7d", .min = 1000,
	 .max = 365 * MS_DAY, .syntax = "DURATION",
	 .help = "how long an orchestrator's queue lives after its last "
		 "event"},
	{.name = "relay_canary_interval", .type = DT_DURATION,
	 .off = OFF(relay_canary_interval_ms), .def = "5s", .min = 0,
	 .max = 10 * MS_MINUTE, .syntax = "DURATION",
	 .help = "how often the relay checks its subscription with a message "
		 "to itself (answer due within redis_timeout); 0: never"},
	{.name = "relay_pipe_queue", .type = DT_SIZE,
	 .off = OFF(relay_pipe_queue), .def = "16m", .min = 64 * KIB,
	 .max = GIB, .syntax = "SIZE",
	 .help = "event bytes the relay holds for one worker whose pipe is "
		 "full; more are dropped and counted"},
	{.name = "admin_socket", .type = DT_CUSTOM, .maxargs = 2,
	 .set = cfgs_set_admin_socket, .dump = cfgs_dump_admin_socket,
	 .syntax = "PATH [MODE]",
	 .help = "unix socket of the admin commands (orchctl), octal MODE "
		 "(default 0600); default: none"},
	{.name = "drain_reconnect_delay", .type = DT_DURATION,
	 .off = OFF(drain_reconnect_delay_ms), .def = "5s", .min = 0,
	 .max = MS_HOUR, .syntax = "DURATION",
	 .help = "on drain, reconnect messages ask for a random delay up to "
		 "this"},
	{.name = "jwt_secret_file", .type = DT_PATH,
	 .off = OFF(jwt_secret_file), .check = cfga_load_jwt_secret,
	 .dump = cfga_dump_jwt_secret, .syntax = "PATH",
	 .help = "file holding the secret that signs daemon JWTs (HS256/384/"
		 "512)"},
	{.name = "jwt_public_key", .type = DT_CUSTOM, .flags = D_REPEAT,
	 .maxargs = 2, .set = cfga_add_public_key,
	 .dump = cfga_dump_public_keys, .syntax = "PATH [KID]",
	 .help = "PEM public key (RSA or EC P-256) that verifies RS256/ES256 "
		 "tokens, chosen by the token's kid (default: none)"},
	{.name = "jwt_issuer", .type = DT_STRING, .off = OFF(jwt_issuer),
	 .check = cfga_check_claim, .syntax = "STRING",
	 .help = "issuer (iss) a token must have (default: not checked)"},
	{.name = "jwt_audience", .type = DT_STRING, .off = OFF(jwt_audience),
	 .check = cfga_check_claim, .syntax = "STRING",
	 .help = "audience (aud) a token must name (default: not checked)"},
	{.name = "jwt_leeway", .type = DT_DURATION, .flags = D_SECONDS,
	 .off = OFF(jwt_leeway_ms), .def = "30s", .min = 0,
	 .max = 10 * MS_MINUTE, .syntax = "DURATION",
	 .help = "clock skew allowed when checking a token's exp, nbf and iat"},
	{.name = "token_lifetime", .type = DT_DURATION, .flags = D_SECONDS,
	 .off = OFF(token_lifetime_ms), .def = "15m", .min = MS_SECOND,
	 .max = MS_DAY, .syntax = "DURATION",
	 .help = "lifetime of the access tokens POST /api/daemon/auth and "
		 "/api/daemon/auth/refresh issue"},
	{.name = "refresh_token_lifetime", .type = DT_DURATION,
	 .flags = D_SECONDS, .off = OFF(refresh_token_lifetime_ms),
	 .def = "30d", .min = MS_SECOND, .max = 365 * 24 * MS_HOUR,
	 .syntax = "DURATION",
	 .help = "lifetime of the refresh tokens they issue (single use)"},
	{.name = "required_scopes", .type = DT_CUSTOM, .flags = D_REPEAT,
	 .maxargs = CFGV_MAX_ARGS - 1, .set = cfga_add_scopes,
	 .dump = cfga_dump_scopes, .syntax = "SCOPE...",
	 .help = "scopes a token must carry to connect (default: none)"},
	{.name = "revocation_check", .type = DT_ENUM,
	 .off = OFF(revocation_check), .def = "strict",
	 .enums = revocation_values, .syntax = "strict|best-effort|off",
	 .help = "check token ids against the revoked set in Redis; strict "
		 "refuses auth while Redis is down"},
	{.name = "rate_limit_messages", .type = DT_UINT,
	 .off = OFF(rate_limit_messages), .def = "100", .min = 1,
	 .max = 1000000, .syntax = "N",
	 .help = "messages a connection may send per minute"},
	{.name = "rate_limit_burst", .type = DT_UINT,
	 .off = OFF(rate_limit_burst), .def = "0", .min = 0, .max = 1000000,
	 .dump = cfgc_dump_burst, .syntax = "N",
	 .help = "messages a connection may send at once; 0: "
		 "rate_limit_messages"},
	{.name = "rate_limit_grace", .type = DT_DURATION,
	 .off = OFF(rate_limit_grace_ms), .def = "10s", .min = 0,
	 .max = 10 * MS_MINUTE, .syntax = "DURATION",
	 .help = "time a client over its rate has after the warning, before "
		 "it is closed (4004)"},
	{.name = "connection_rate_per_address", .type = DT_UINT,
	 .off = OFF(connection_rate_per_address), .def = "0", .min = 0,
	 .max = 1000000, .syntax = "N",
	 .help = "new connections accepted per second from one IP address "
		 "(more get 429); 0: no limit"},
	{.name = "auth_failure_limit", .type = DT_CUSTOM, .def = "10 per 1m",
	 .min = 0, .max = 1000000, .maxargs = 3, .set = cfga_set_failure_limit,
	 .dump = cfga_dump_failure_limit, .syntax = "N per DURATION|0",
	 .help = "failed POST /api/daemon/auth and /api/daemon/auth/refresh "
		 "attempts allowed per API key and per client address in a "
		 "window (more get 429 until it ends); 0: no limit"},
	{.name = "admin_allow", .type = DT_CUSTOM, .flags = D_REPEAT,
	 .def = "127.0.0.1 ::1", .maxargs = CFGV_MAX_ARGS - 1,
	 .set = cfgadm_set_allow, .dump = cfgadm_dump_allow,
	 .syntax = "ADDR[/PREFIX]...|none",
	 .help = "client addresses that may read /metrics, /stats and "
		 "/status"},
	{.name = "admin_token_file", .type = DT_PATH,
	 .off = OFF(admin_token_file), .check = cfgadm_load_token,
	 .syntax = "PATH",
	 .help = "file holding a bearer token (16 bytes or more) that opens "
		 "/metrics, /stats and /status from any address"},
	{.name = "tls_certificate", .type = DT_PATH,
	 .off = OFF(tls_certificate), .flags = D_READABLE, .syntax = "PATH",
	 .help = "PEM certificate chain for listen ... tls"},
	{.name = "tls_certificate_key", .type = DT_PATH,
	 .off = OFF(tls_certificate_key), .flags = D_READABLE,
	 .syntax = "PATH", .help = "PEM private key for listen ... tls"},
};
/* clang-format on */

_Static_assert(UTIL_NELEM(directives) <= CFG_MAX_DIRECTIVES,
	       "raise CFG_MAX_DIRECTIVES");

/* The environment of the TypeScript service orchd replaces. */
static const struct envvar {
	const char *name;
	const char *directive;
	int ms_bare; /* a bare integer is milliseconds, not seconds */
} envvars[] = {
    {"WS_HEARTBEAT_INTERVAL", "heartbeat_interval", 1},
    {"WS_AUTH_TIMEOUT", "auth_timeout", 1},
    {"WS_MAX_CONNECTIONS_PER_VP", "max_connections_per_orchestrator", 0},
    {"WS_PATH", "ws_path", 0},
};

static const struct directive *
find_directive(const char *name)
{
	for (size_t i = 0; i < UTIL_NELEM(directives); i++)
		if (strcmp(directives[i].name, name) == 0)
			return &directives[i];
	return NULL;
}

static const struct directive *
suggest(const char *word)
{
	const struct directive *best = NULL;
	size_t bestd = 3;

	for (size_t i = 0; i < UTIL_NELEM(directives); i++) {
		size_t dist = cfgv_edit_distance(word, directives[i].name);

		if (dist < bestd) {
			bestd = dist;
			best = &directives[i];
		}
	}
	return best;
}

/* ---- applying a value ---------------------------------------------------- */

static void
apply_duration(struct pctx *c, const struct directive *d, const char *v,
	       uint64_t *field)
{
	char lo[32], hi[32];
	uint64_t ms;
	int r;

	cfgv_fmt_duration(d->min, lo, sizeof(lo));
	cfgv_fmt_duration(d->max, hi, sizeof(hi));
	/* WS_* variables count milliseconds, like the service they replace. */
	r = c->ms_bare ? cfgv_parse_u64(v, &ms) : -1;
	if (r == -1)
		r = config_parse_duration_ms(v, &ms);
	if (r == -1) {
		cfgp_derr(c, d,
			  "%s is not a duration (%sa whole number with unit "
			  "ms, s, m, h or d, e.g. 30s)",
			  cfgp_show(c, v),
			  c->ms_bare ? "milliseconds, or " : "");
		return;
	}
	if (r == -2 || ms < d->min || ms > d->max) {
		cfgp_derr(c, d, "%s is out of range (%s..%s)", cfgp_show(c, v),
			  lo, hi);
		return;
	}
	/* JWT times and Redis TTLs count seconds: a fraction would be lost. */
	if ((d->flags & D_SECONDS) && ms % MS_SECOND != 0) {
		cfgp_derr(c, d, "%s is not a whole number of seconds",
			  cfgp_show(c, v));
		return;
	}
	*field = ms;
}

static void
apply_size(struct pctx *c, const struct directive *d, const char *v,
	   uint64_t *field)
{
	char lo[32], hi[32];
	uint64_t n;
	int r = config_parse_size(v, &n);

	if (r == -1) {
		cfgp_derr(c, d,
			  "%s is not a size (a whole number of bytes, or with "
			  "unit k, m or g, e.g. 64k)",
			  cfgp_show(c, v));
		return;
	}
	if (r == -2 || n < d->min || n > d->max) {
		cfgv_fmt_size(d->min, lo, sizeof(lo));
		cfgv_fmt_size(d->max, hi, sizeof(hi));
		cfgp_derr(c, d, "%s is out of range (%s..%s)", cfgp_show(c, v),
			  lo, hi);
		return;
	}
	*field = n;
}

static void
apply(struct pctx *c, const struct directive *d, char **argv, int argc)
{
	void *field = (char *)c->cfg + d->off;
	const char *v = argv[0];
	char list[128];
	uint64_t n;
	int r, e;

	switch (d->type) {
	case DT_STRING:
	case DT_PATH:
		if (*v == '\0') {
			cfgp_derr(c, d, "empty value");
			return;
		}
		if (d->type == DT_PATH && v[0] != '/') {
			cfgp_derr(c, d, "%s is not an absolute path",
				  cfgp_show(c, v));
			return;
		}
		if ((d->flags & D_READABLE) && !c->defaults &&
		    access(v, R_OK) != 0) {
			cfgp_derr(c, d, "cannot read %s: %s", cfgp_show(c, v),
				  strerror(errno));
			return;
		}
		if (d->check != NULL && d->check(c, d, v) < 0)
			return;
		free(*(char **)field);
		*(char **)field = util_strdup(v);
		break;
	case DT_UINT:
		if ((r = cfgv_parse_u64(v, &n)) == -1) {
			cfgp_derr(c, d,
				  "%s is not a number (%" PRIu64 "..%" PRIu64
				  ")",
				  cfgp_show(c, v), d->min, d->max);
			return;
		}
		if (r == -2 || n < d->min || n > d->max) {
			cfgp_derr(c, d,
				  "%s is out of range (%" PRIu64 "..%" PRIu64
				  ")",
				  cfgp_show(c, v), d->min, d->max);
			return;
		}
		*(unsigned *)field = (unsigned)n;
		break;
	case DT_DURATION:
		apply_duration(c, d, v, field);
		break;
	case DT_SIZE:
		apply_size(c, d, v, field);
		break;
	case DT_BOOL:
	case DT_ENUM: {
		const struct enumval *vals =
		    d->type == DT_BOOL ? bool_values : d->enums;

		if (cfgv_find_enum(vals, v, &e) < 0) {
			cfgv_enum_list(vals, list, sizeof(list));
			cfgp_derr(c, d, "%s is not one of %s", cfgp_show(c, v),
				  list);
			return;
		}
		*(int *)field = e;
		break;
	}
	case DT_LISTEN:
		cfgc_add_listen(c, d, argv, argc);
		break;
	case DT_REDIS:
		cfgc_set_redis(c, d, argv, argc);
		break;
	case DT_CUSTOM:
		d->set(c, d, argv, argc);
		break;
	case DT_INCLUDE:
		break;
	}
}

/* ---- reading files ------------------------------------------------------- */

static void parse_file(struct pctx *c, const struct directive *inc,
		       const char *path);

/* include FILE: relative to the including file, maybe a glob(3) pattern. */
static void
do_include(struct pctx *c, const struct directive *d, const char *pattern)
{
	const char *slash = strrchr(c->file, '/');
	char *path;
	glob_t g;
	int r;

	if (*pattern == '\0') {
		cfgp_derr(c, d, "empty value");
		return;
	}
	if (pattern[0] == '/' || slash == NULL) {
		path = util_strdup(pattern);
	} else {
		size_t dl = (size_t)(slash - c->file) + 1;

		path = util_malloc(dl + strlen(pattern) + 1);
		memcpy(path, c->file, dl);
		strcpy(path + dl, pattern);
	}
	if (strpbrk(path, "*?[") == NULL) {
		parse_file(c, d, path);
		free(path);
		return;
	}
	/* A pattern that matches nothing is fine: an empty conf.d/. */
	memset(&g, 0, sizeof(g));
	r = glob(path, 0, NULL, &g);
	if (r == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			parse_file(c, d, g.gl_pathv[i]);
	} else if (r != GLOB_NOMATCH) {
		cfgp_derr(c, d, "cannot expand %s: %s", cfgp_show(c, path),
			  r == GLOB_NOSPACE ? "out of memory" : "read error");
	}
	globfree(&g);
	free(path);
}

static void
parse_line(struct pctx *c, const char *line)
{
	const struct directive *d, *near;
	char *buf, *argv[CFGV_MAX_ARGS];
	struct where *first;
	int argc, nvals, maxargs;

	buf = util_malloc(strlen(line) + 2);
	argc = cfgv_tokenize(line, buf, argv);
	c->semicolon = 0;
	if (argc < 0) {
		cfgp_derr(c, NULL, "unterminated quoted string");
		goto out;
	}
	if (argc == 0)
		goto out;
	if ((d = find_directive(argv[0])) == NULL) {
		if ((near = suggest(argv[0])) != NULL)
			cfgp_derr(c, NULL,
				  "unknown directive %s (did you mean \"%s\"?)",
				  cfgp_show(c, argv[0]), near->name);
		else
			cfgp_derr(c, NULL, "unknown directive %s",
				  cfgp_show(c, argv[0]));
		goto out;
	}
	if (argc <= CFGV_MAX_ARGS) {
		const char *last = argv[argc - 1];
		size_t len = strlen(last);

		c->semicolon = argc > 1 && len > 0 && last[len - 1] == ';';
	}
	nvals = argc - 1;
	maxargs = d->maxargs > 0 ? d->maxargs : 1;
	if (nvals == 0) {
		cfgp_derr(c, d, "missing value (syntax: %s %s)", d->name,
			  d->syntax);
		goto out;
	}
	if (nvals > maxargs) {
		cfgp_derr(c, d, "too many values (syntax: %s %s)", d->name,
			  d->syntax);
		goto out;
	}
	first = &c->first[d - directives];
	if (first->file != NULL && !(d->flags & D_REPEAT)) {
		cfgp_derr(c, d, "duplicate directive (first given at %s:%d)",
			  first->file, first->line);
		goto out;
	}
	if (first->file == NULL) {
		first->file = c->file;
		first->line = c->line;
		/* The first listen in the file replaces the default one. */
		if (d->type == DT_LISTEN)
			c->cfg->nlisten = 0;
	}
	if (d->type == DT_INCLUDE)
		do_include(c, d, argv[1]);
	else
		apply(c, d, argv + 1, nvals);
out:
	free(buf);
}

/* Past a NUL byte or an endless line, the rest of the file is noise. */
static void
parse_src(struct pctx *c, struct cfgv_src *s)
{
	char *line = util_malloc(CFGV_LINE_MAX + 1);
	ssize_t n;

	while (c->nerr <= MAX_ERRORS && (n = cfgv_getline(s, line)) != -1) {
		c->line++;
		if (n == -2) {
			cfgp_derr(c, NULL,
				  "line longer than %d bytes; rest of the "
				  "file ignored",
				  CFGV_LINE_MAX);
			break;
		}
		if (strlen(line) != (size_t)n) {
			cfgp_derr(c, NULL,
				  "line contains a NUL byte (not a text "
				  "file?); rest of the file ignored");
			break;
		}
		parse_line(c, line);
	}
	if (s->fp != NULL && ferror(s->fp))
		cfgp_derr(c, NULL, "read error: %s", strerror(errno));
	free(line);
}

static void
file_error(struct pctx *c, const struct directive *inc, const char *path,
	   const char *what)
{
	if (inc != NULL)
		cfgp_derr(c, inc, "cannot open %s: %s", cfgp_show(c, path),
			  what);
	else
		cfgp_report(c, "%s: cannot open: %s", path, what);
}

/*
 * Read one file.  inc is the include directive being obeyed (c->file and
 * c->line point at it), NULL for the top-level file.
 */
static void
parse_file(struct pctx *c, const struct directive *inc, const char *path)
{
	struct cfgv_src s = {NULL, NULL};
	struct stat st;
	const char *saved_file = c->file;
	int saved_line = c->line;

	if ((s.fp = fopen(path, "re")) == NULL) {
		file_error(c, inc, path, strerror(errno));
		return;
	}
	if (fstat(fileno(s.fp), &st) == -1) {
		file_error(c, inc, path, strerror(errno));
		goto out;
	}
	/* A FIFO or a device could block or never end. */
	if (!S_ISREG(st.st_mode)) {
		file_error(c, inc, path,
			   S_ISDIR(st.st_mode) ? "is a directory"
					       : "not a regular file");
		goto out;
	}
	for (int i = 0; i < c->depth; i++) {
		char chain[MSG_MAX];
		size_t n = 0;

		if (!c->stack[i].have_id || c->stack[i].dev != st.st_dev ||
		    c->stack[i].ino != st.st_ino)
			continue;
		chain[0] = '\0';
		for (int j = i; j < c->depth && n < sizeof(chain); j++)
			n += (size_t)snprintf(chain + n, sizeof(chain) - n,
					      "%s -> ", c->stack[j].name);
		if (n < sizeof(chain))
			snprintf(chain + n, sizeof(chain) - n, "%s", path);
		cfgp_derr(c, inc, "include loop: %s", chain);
		goto out;
	}
	if (c->depth == (int)UTIL_NELEM(c->stack)) {
		cfgp_derr(c, inc,
			  "%s: includes nested too deeply (at most %d levels)",
			  cfgp_show(c, path), CONFIG_MAX_INCLUDE_DEPTH);
		goto out;
	}
	c->file = keep_name(c, path);
	c->line = 0;
	c->stack[c->depth].name = c->file;
	c->stack[c->depth].dev = st.st_dev;
	c->stack[c->depth].ino = st.st_ino;
	c->stack[c->depth].have_id = 1;
	c->depth++;
	parse_src(c, &s);
	c->depth--;
	c->file = saved_file;
	c->line = saved_line;
out:
	fclose(s.fp);
}

/* ---- after the file: environment and cross-checks ---------------------- */

static void
apply_env(struct pctx *c)
{
	const char *v;

	c->file = NULL;
	c->semicolon = 0;
	for (size_t i = 0; i < UTIL_NELEM(envvars); i++) {
		const struct directive *d;
		char *copy;
		int nerr;

		/* Empty counts as unset, as it did for the service. */
		if ((v = getenv(envvars[i].name)) == NULL || *v == '\0')
			continue;
		d = find_directive(envvars[i].directive);
		c->envname = envvars[i].name;
		c->ms_bare = envvars[i].ms_bare;
		copy = util_strdup(v);
		nerr = c->nerr;
		apply(c, d, &copy, 1);
		if (c->nerr == nerr)
			c->first[d - directives].env = c->envname;
		free(copy);
	}
	c->ms_bare = 0;
	c->envname = NULL;
	cfga_apply_env(c);
}

/* listen ... tls needs both halves; either half alone is a mistake. */
static void
cross_check(struct pctx *c)
{
	const struct directive *dc = find_directive("tls_certificate");
	const struct directive *dk = find_directive("tls_certificate_key");
	const struct where *wc = &c->first[dc - directives];
	const struct where *wk = &c->first[dk - directives];
	struct config *cfg = c->cfg;

	if (wc->file != NULL && wk->file == NULL) {
		cfgp_report(c,
			    "%s:%d: tls_certificate is set but "
			    "tls_certificate_key is not",
			    wc->file, wc->line);
	} else if (wc->file == NULL && wk->file != NULL) {
		cfgp_report(c,
			    "%s:%d: tls_certificate_key is set but "
			    "tls_certificate is not",
			    wk->file, wk->line);
	} else if (wc->file == NULL) {
		for (int i = 0; i < cfg->nlisten; i++)
			if (cfg->listen[i].tls)
				cfgp_report(c,
					    "%s:%d: listen %s tls requires "
					    "tls_certificate and "
					    "tls_certificate_key",
					    c->listen_at[i].file,
					    c->listen_at[i].line,
					    cfg->listen[i].text);
	}
}

/* A phrase on where the value of d comes from, for cross-check messages. */
static void
origin_of(const struct pctx *c, const struct directive *d, char *buf,
	  size_t len)
{
	const struct where *w = &c->first[d - directives];

	if (w->env != NULL)
		snprintf(buf, len, "set by the environment variable %s",
			 w->env);
	else if (w->file != NULL)
		snprintf(buf, len, "set at %s:%d", w->file, w->line);
	else
		snprintf(buf, len, "its default");
}

/* After the environment, which may set ws_path. */
static void
cross_check_paths(struct pctx *c)
{
	const struct directive *dp = find_directive("ws_path");
	const struct directive *de = find_directive("ws_echo_path");
	const struct where *we = &c->first[de - directives];
	struct config *cfg = c->cfg;
	char from[MSG_MAX / 2];

	if (cfg->ws_echo_path == NULL || we->file == NULL ||
	    strcmp(cfg->ws_echo_path, cfg->ws_path) != 0)
		return;
	origin_of(c, dp, from, sizeof(from));
	cfgp_report(c,
		    "%s:%d: ws_echo_path: %s is also ws_path (%s); the echo "
		    "endpoint needs a path of its own",
		    we->file, we->line, cfgp_show(c, cfg->ws_echo_path), from);
}

/*
 * A session key must outlive the interval between two heartbeats, or it
 * expires under a healthy connection.  After the environment, which may set
 * heartbeat_interval.
 */
static void
cross_check_session(struct pctx *c)
{
	const struct directive *dh = find_directive("heartbeat_interval");
	const struct directive *ds = find_directive("session_ttl");
	const struct where *ws = &c->first[ds - directives];
	struct config *cfg = c->cfg;
	char from[MSG_MAX / 2], ttl[32], hb[32];

	if (cfg->session_ttl_ms == 0 ||
	    cfg->session_ttl_ms > cfg->heartbeat_interval_ms ||
	    ws->file == NULL)
		return;
	origin_of(c, dh, from, sizeof(from));
	cfgv_fmt_duration(cfg->session_ttl_ms, ttl, sizeof(ttl));
	cfgv_fmt_duration(cfg->heartbeat_interval_ms, hb, sizeof(hb));
	cfgp_report(c,
		    "%s:%d: session_ttl: %s is not longer than "
		    "heartbeat_interval (%s, %s): session keys would expire "
		    "between two heartbeats",
		    ws->file, ws->line, ttl, hb, from);
}

/*
 * The conninfo comes from one place: with both, which one orchd used would
 * depend on the order of the lines.
 */
static void
cross_check_database(struct pctx *c)
{
	const struct directive *dd = find_directive("database");
	const struct directive *df = find_directive("database_file");
	const struct where *wd = &c->first[dd - directives];
	const struct where *wf = &c->first[df - directives];
	const struct where *later;

	if (wd->file == NULL || wf->file == NULL)
		return;
	later = wf;
	if (strcmp(wd->file, wf->file) == 0 && wd->line > wf->line)
		later = wd;
	cfgp_report(c,
		    "%s:%d: %s: database and database_file are both set "
		    "(the other at %s:%d); give the conninfo in one place",
		    later->file, later->line,
		    later == wd ? "database" : "database_file",
		    later == wd ? wf->file : wd->file,
		    later == wd ? wf->line : wd->line);
}

/* Once every file is read. */
static void
finish(struct pctx *c)
{
	cross_check(c);
	cross_check_database(c);
	apply_env(c);
	cross_check_paths(c);
	cross_check_session(c);
}

static struct pctx *
ctx_new(struct config *cfg, config_error_fn errfn, void *arg)
{
	struct pctx *c = util_calloc(1, sizeof(*c));

	c->cfg = cfg;
	c->errfn = errfn;
	c->arg = arg;
	return c;
}

static int
ctx_finish(struct pctx *c)
{
	int n = c->nerr;

	for (size_t i = 0; i < c->nnames; i++)
		free(c->names[i]);
	free(c->names);
	free(c);
	return n;
}

/* ---- public API ---------------------------------------------------------- */

/* A built-in default that does not parse is a bug in this file. */
static void
default_error(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "orchd: bad built-in default: %s\n", msg);
	abort();
}

struct config *
config_new(void)
{
	struct config *cfg = util_calloc(1, sizeof(*cfg));
	struct pctx *c = ctx_new(cfg, default_error, NULL);

	c->defaults = 1;
	c->file = "(built-in default)";
	for (size_t i = 0; i < UTIL_NELEM(directives); i++) {
		const struct directive *d = &directives[i];
		char *buf, *argv[CFGV_MAX_ARGS];
		int argc;

		if (d->def == NULL)
			continue;
		buf = util_malloc(strlen(d->def) + 2);
		argc = cfgv_tokenize(d->def, buf, argv);
		if (argc < 1 || argc > CFGV_MAX_ARGS)
			default_error(NULL, d->name);
		apply(c, d, argv, argc);
		free(buf);
	}
	ctx_finish(c);
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < UTIL_NELEM(directives); i++) {
		const struct directive *d = &directives[i];

		if (d->type == DT_STRING || d->type == DT_PATH)
			UTIL_FREE(*(char **)((char *)cfg + d->off));
	}
	UTIL_FREE(cfg->path);
	UTIL_FREE(cfg->log_file);
	UTIL_FREE(cfg->redis_text);
	UTIL_FREE(cfg->redis.unix_path);
	UTIL_FREE(cfg->redis.host);
	for (size_t i = 0; i < cfg->nws_allowed_origins; i++)
		free(cfg->ws_allowed_origins[i]);
	UTIL_FREE(cfg->ws_allowed_origins);
	cfga_free(cfg);
	cfgd_free(cfg);
	cfgadm_free(cfg);
	cfgs_free(cfg);
	free(cfg);
}

int
config_load(struct config *cfg, const char *path, config_error_fn errfn,
	    void *arg)
{
	struct pctx *c = ctx_new(cfg, errfn, arg);

	free(cfg->path);
	cfg->path = util_strdup(path);
	parse_file(c, NULL, path);
	finish(c);
	return ctx_finish(c);
}

int
config_load_string(struct config *cfg, const char *name, const char *text,
		   config_error_fn errfn, void *arg)
{
	struct pctx *c = ctx_new(cfg, errfn, arg);
	struct cfgv_src s = {NULL, text};

	free(cfg->path);
	cfg->path = util_strdup(name);
	c->file = keep_name(c, name);
	c->stack[0].name = c->file;
	c->depth = 1;
	parse_src(c, &s);
	c->depth = 0;
	finish(c);
	return ctx_finish(c);
}

void
config_dump(const struct config *cfg, FILE *fp)
{
	fprintf(fp, "# orchd effective configuration");
	if (cfg->path != NULL) {
		/* A comment must stay one line whatever the path holds. */
		fprintf(fp, " (from ");
		for (const char *p = cfg->path; *p != '\0'; p++)
			fputc((unsigned char)*p < 0x20 ? '?' : *p, fp);
		fputc(')', fp);
	}
	fputc('\n', fp);
	for (size_t i = 0; i < UTIL_NELEM(directives); i++) {
		const struct directive *d = &directives[i];
		const void *field = (const char *)cfg + d->off;
		char buf[32];
		const char *s;

		if (d->dump != NULL) {
			d->dump(d, cfg, fp);
			continue;
		}
		switch (d->type) {
		case DT_STRING:
		case DT_PATH:
			if ((s = *(char *const *)field) == NULL) {
				fprintf(fp, "# %s (not set)\n", d->name);
				continue;
			}
			fprintf(fp, "%s ", d->name);
			cfgv_dump_word(fp, s);
			fputc('\n', fp);
			break;
		case DT_UINT:
			fprintf(fp, "%s %u\n", d->name,
				*(const unsigned *)field);
			break;
		case DT_DURATION:
			cfgv_fmt_duration(*(const uint64_t *)field, buf,
					  sizeof(buf));
			fprintf(fp, "%s %s\n", d->name, buf);
			break;
		case DT_SIZE:
			cfgv_fmt_size(*(const uint64_t *)field, buf,
				      sizeof(buf));
			fprintf(fp, "%s %s\n", d->name, buf);
			break;
		case DT_BOOL:
		case DT_ENUM:
			s = cfgv_enum_name(d->type == DT_BOOL ? bool_values
							      : d->enums,
					   *(const int *)field);
			fprintf(fp, "%s %s\n", d->name, s != NULL ? s : "?");
			break;
		case DT_LISTEN:
			for (int j = 0; j < cfg->nlisten; j++)
				fprintf(fp, "%s %s%s%s\n", d->name,
					cfg->listen[j].text,
					cfg->listen[j].tls ? " tls" : "",
					cfg->listen[j].admin ? " admin" : "");
			break;
		case DT_REDIS:
			fprintf(fp, "%s ", d->name);
			if (cfg->redis.nsentinels > 0) {
				/* Several words, each checked when parsed. */
				fputs(cfg->redis_text, fp);
			} else {
				cfgv_dump_word(fp, cfg->redis_text != NULL
						       ? cfg->redis_text
						       : "");
			}
			fputc('\n', fp);
			break;
		case DT_CUSTOM:
		case DT_INCLUDE: /* the dump is already flat */
			break;
		}
	}
}

const char *
config_log_level_name(int level)
{
	const char *s;

	if (level <= LOG_ERR)
		return "error";
	if (level >= LOG_DEBUG)
		return "debug";
	s = cfgv_enum_name(log_levels, level);
	return s != NULL ? s : "info";
}

unsigned
config_rate_limit_burst(const struct config *cfg)
{
	return cfg->rate_limit_burst != 0 ? cfg->rate_limit_burst
					  : cfg->rate_limit_messages;
}

uint64_t
config_session_ttl_ms(const struct config *cfg)
{
	return cfg->session_ttl_ms != 0 ? cfg->session_ttl_ms
					: 3 * cfg->heartbeat_interval_ms;
}

int
config_directive_doc(size_t i, struct config_doc *doc)
{
	if (i >= UTIL_NELEM(directives))
		return -1;
	doc->name = directives[i].name;
	doc->syntax = directives[i].syntax;
	doc->def = directives[i].def;
	doc->help = directives[i].help;
	doc->repeatable = (directives[i].flags & D_REPEAT) != 0;
	return 0;
}
