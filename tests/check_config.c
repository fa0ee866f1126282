/*
 * check_config: unit tests for the orchd.conf(5) parser.
 *
 * Every error test asserts the exact "file:line: " prefix and the number of
 * errors, so a parser that stops at the first error, miscounts lines or
 * reports the wrong file fails here.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <check.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "check_config.h"
#include "orchd/config.h"
#include "orchd/util.h"

#ifndef ORCHD_RUNSTATEDIR
#define ORCHD_RUNSTATEDIR "/var/run"
#endif

char tmpdir[] = "/tmp/check_config.XXXXXX";

static const char *const env_names[] = {
	"DAEMON_JWT_SECRET", "WS_HEARTBEAT_INTERVAL", "WS_AUTH_TIMEOUT",
	"WS_MAX_CONNECTIONS_PER_VP", "WS_PATH",
};

static void
collect(void *arg, const char *msg)
{
	struct errs *e = arg;

	ck_assert_ptr_null(strchr(msg, '\n'));
	if (e->n < MAX_ERRS)
		e->msg[e->n] = strdup(msg);
	e->n++;
}

void
errs_free(struct errs *e)
{
	for (int i = 0; i < e->n && i < MAX_ERRS; i++)
		free(e->msg[i]);
	memset(e, 0, sizeof(*e));
}

int
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse text as "t.conf"; the caller frees *cfgp and *e. */
int
load_text(struct config **cfgp, const char *text, struct errs *e)
{
	memset(e, 0, sizeof(*e));
	*cfgp = config_new();
	return config_load_string(*cfgp, "t.conf", text, collect, e);
}

int
load_file(struct config **cfgp, const char *path, struct errs *e)
{
	memset(e, 0, sizeof(*e));
	*cfgp = config_new();
	return config_load(*cfgp, path, collect, e);
}

void
expectn(int line, const char *text, int nerr, const char *prefix,
	const char *substr)
{
	struct config *cfg;
	struct errs e;
	int n = load_text(&cfg, text, &e);

	ck_assert_msg(n == nerr && e.n == nerr,
		      "line %d: %d errors (callback %d) for \"%s\"; first: %s",
		      line, n, e.n, text, e.n > 0 ? e.msg[0] : "(none)");
	ck_assert_msg(has_prefix(e.msg[0], prefix),
		      "line %d: \"%s\" does not start with \"%s\"", line,
		      e.msg[0], prefix);
	ck_assert_msg(strstr(e.msg[0], substr) != NULL,
		      "line %d: \"%s\" does not contain \"%s\"", line,
		      e.msg[0], substr);
	errs_free(&e);
	config_free(cfg);
}

void
expect0(int line, const char *text)
{
	struct config *cfg;
	struct errs e;
	int n = load_text(&cfg, text, &e);

	ck_assert_msg(n == 0, "line %d: %d errors for \"%s\"; first: %s", line,
		      n, text, e.n > 0 ? e.msg[0] : "(none)");
	errs_free(&e);
	config_free(cfg);
}

void
write_tmp(char *out, size_t len, const char *name, const char *data,
	  size_t n)
{
	FILE *fp;

	snprintf(out, len, "%s/%s", tmpdir, name);
	fp = fopen(out, "w");
	ck_assert_ptr_nonnull(fp);
	ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
	ck_assert_int_eq(fclose(fp), 0);
}

char *
dump_text(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(fp);
	config_dump(cfg, fp);
	ck_assert_int_eq(fclose(fp), 0);
	return buf;
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(fp != NULL, "cannot open %s", path);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void
assert_str_same(const char *what, const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		ck_assert_msg(a == b, "%s: %s vs %s", what, a ? a : "NULL",
			      b ? b : "NULL");
	else
		ck_assert_msg(strcmp(a, b) == 0, "%s: \"%s\" vs \"%s\"", what,
			      a, b);
}

void
assert_same(const struct config *a, const struct config *b)
{
	ck_assert_int_eq(a->nlisten, b->nlisten);
	for (int i = 0; i < a->nlisten; i++) {
		ck_assert_str_eq(a->listen[i].text, b->listen[i].text);
		ck_assert_int_eq(a->listen[i].tls, b->listen[i].tls);
		ck_assert_int_eq(a->listen[i].admin, b->listen[i].admin);
		ck_assert_uint_eq(a->listen[i].addrlen, b->listen[i].addrlen);
		ck_assert(memcmp(&a->listen[i].addr, &b->listen[i].addr,
				 a->listen[i].addrlen) == 0);
	}
	ck_assert_int_eq(a->workers, b->workers);
	ck_assert_int_eq(a->workers_auto, b->workers_auto);
	assert_str_same("user", a->user, b->user);
	assert_str_same("group", a->group, b->group);
	assert_str_same("pidfile", a->pidfile, b->pidfile);
	ck_assert_int_eq(a->log_target, b->log_target);
	assert_str_same("log_file", a->log_file, b->log_file);
	ck_assert_int_eq(a->log_level, b->log_level);
	assert_str_same("ws_path", a->ws_path, b->ws_path);
	ck_assert_uint_eq(a->heartbeat_interval_ms, b->heartbeat_interval_ms);
	ck_assert_uint_eq(a->auth_timeout_ms, b->auth_timeout_ms);
	ck_assert_uint_eq(a->drain_timeout_ms, b->drain_timeout_ms);
	ck_assert_uint_eq(a->max_connections, b->max_connections);
	ck_assert_uint_eq(a->max_connections_per_orchestrator,
			  b->max_connections_per_orchestrator);
	assert_str_same("redis_text", a->redis_text, b->redis_text);
	assert_str_same("redis.unix_path", a->redis.unix_path,
			b->redis.unix_path);
	assert_str_same("redis.host", a->redis.host, b->redis.host);
	ck_assert_int_eq(a->redis.port, b->redis.port);
	assert_str_same("jwt_secret_file", a->jwt_secret_file,
			b->jwt_secret_file);
	ck_assert_uint_eq(a->jwt_secret_len, b->jwt_secret_len);
	if (a->jwt_secret_len > 0)
		ck_assert(memcmp(a->jwt_secret, b->jwt_secret,
				 a->jwt_secret_len) == 0);
	ck_assert_int_eq(a->jwt_secret_from_env, b->jwt_secret_from_env);
	assert_str_same("tls_certificate", a->tls_certificate,
			b->tls_certificate);
	assert_str_same("tls_certificate_key", a->tls_certificate_key,
			b->tls_certificate_key);
	assert_str_same("ws_echo_path", a->ws_echo_path, b->ws_echo_path);
	ck_assert_uint_eq(a->http_max_header_size, b->http_max_header_size);
	ck_assert_uint_eq(a->http_max_body_size, b->http_max_body_size);
	ck_assert_uint_eq(a->handshake_timeout_ms, b->handshake_timeout_ms);
	ck_assert_uint_eq(a->keepalive_timeout_ms, b->keepalive_timeout_ms);
	ck_assert_uint_eq(a->nws_allowed_origins, b->nws_allowed_origins);
	for (size_t i = 0; i < a->nws_allowed_origins; i++)
		ck_assert_str_eq(a->ws_allowed_origins[i],
				 b->ws_allowed_origins[i]);
	ck_assert_uint_eq(a->ws_max_message_size, b->ws_max_message_size);
	ck_assert_uint_eq(a->ws_ping_interval_ms, b->ws_ping_interval_ms);
	ck_assert_uint_eq(a->ws_pong_timeout_ms, b->ws_pong_timeout_ms);
	ck_assert_uint_eq(a->ws_close_timeout_ms, b->ws_close_timeout_ms);
	ck_assert_int_eq(a->ws_compression, b->ws_compression);
	ck_assert_uint_eq(a->ws_compression_level, b->ws_compression_level);
	ck_assert_uint_eq(a->ws_compression_min_size,
			  b->ws_compression_min_size);
	ck_assert_uint_eq(a->max_send_queue, b->max_send_queue);
	ck_assert_uint_eq(a->njwt_public_keys, b->njwt_public_keys);
	for (size_t i = 0; i < a->njwt_public_keys; i++) {
		ck_assert_str_eq(a->jwt_public_keys[i], b->jwt_public_keys[i]);
		assert_str_same("kid", a->jwt_public_key_kids[i],
				b->jwt_public_key_kids[i]);
	}
	assert_str_same("jwt_issuer", a->jwt_issuer, b->jwt_issuer);
	assert_str_same("jwt_audience", a->jwt_audience, b->jwt_audience);
	ck_assert_uint_eq(a->jwt_leeway_ms, b->jwt_leeway_ms);
	ck_assert_uint_eq(a->token_lifetime_ms, b->token_lifetime_ms);
	ck_assert_uint_eq(a->refresh_token_lifetime_ms,
			  b->refresh_token_lifetime_ms);
	ck_assert_uint_eq(a->nrequired_scopes, b->nrequired_scopes);
	for (size_t i = 0; i < a->nrequired_scopes; i++)
		ck_assert_str_eq(a->required_scopes[i], b->required_scopes[i]);
	ck_assert_int_eq(a->revocation_check, b->revocation_check);
	ck_assert_uint_eq(a->rate_limit_messages, b->rate_limit_messages);
	ck_assert_uint_eq(a->rate_limit_burst, b->rate_limit_burst);
	ck_assert_uint_eq(a->rate_limit_grace_ms, b->rate_limit_grace_ms);
	ck_assert_uint_eq(a->connection_rate_per_address,
			  b->connection_rate_per_address);
	ck_assert_uint_eq(a->auth_failure_limit, b->auth_failure_limit);
	if (a->auth_failure_limit != 0)
		ck_assert_uint_eq(a->auth_failure_window_ms,
				  b->auth_failure_window_ms);
	ck_assert_uint_eq(a->nadmin_allow, b->nadmin_allow);
	for (size_t i = 0; i < a->nadmin_allow; i++) {
		ck_assert_str_eq(a->admin_allow[i].text,
				 b->admin_allow[i].text);
		ck_assert_int_eq(a->admin_allow[i].family,
				 b->admin_allow[i].family);
		ck_assert_uint_eq(a->admin_allow[i].prefix,
				  b->admin_allow[i].prefix);
		ck_assert(memcmp(a->admin_allow[i].addr, b->admin_allow[i].addr,
				 16) == 0);
	}
	assert_str_same("admin_token_file", a->admin_token_file,
			b->admin_token_file);
	assert_str_same("admin_token", a->admin_token, b->admin_token);
	ck_assert_uint_eq(a->redis_timeout_ms, b->redis_timeout_ms);
	ck_assert_uint_eq(a->session_ttl_ms, b->session_ttl_ms);
	ck_assert_int_eq(a->redis.nsentinels, b->redis.nsentinels);
	for (int i = 0; i < a->redis.nsentinels; i++) {
		ck_assert_str_eq(a->redis.sentinels[i].host,
				 b->redis.sentinels[i].host);
		ck_assert_int_eq(a->redis.sentinels[i].port,
				 b->redis.sentinels[i].port);
	}
	ck_assert_str_eq(a->redis.master, b->redis.master);
	ck_assert_int_eq(a->event_stream, b->event_stream);
	assert_str_same("event_stream_key", a->event_stream_key,
			b->event_stream_key);
	ck_assert_uint_eq(a->max_event_size, b->max_event_size);
	ck_assert_uint_eq(a->queue_max_events, b->queue_max_events);
	ck_assert_uint_eq(a->queue_retention_ms, b->queue_retention_ms);
	ck_assert_uint_eq(a->relay_canary_interval_ms,
			  b->relay_canary_interval_ms);
	ck_assert_uint_eq(a->relay_pipe_queue, b->relay_pipe_queue);
	ck_assert_uint_eq(a->drain_reconnect_delay_ms,
			  b->drain_reconnect_delay_ms);
	assert_str_same("database_file", a->database_file, b->database_file);
	/*
	 * An inline conninfo is hidden by -T, so a dump never carries it
	 * back; one from database_file is read again from the file.
	 */
	if (a->database_file != NULL || b->database_file != NULL)
		assert_str_same("database_conninfo", a->database_conninfo,
				b->database_conninfo);
	ck_assert_uint_eq(a->database_timeout_ms, b->database_timeout_ms);
	ck_assert_int_eq(a->database_failure, b->database_failure);
	ck_assert_uint_eq(a->database_cache_ttl_ms, b->database_cache_ttl_ms);
	ck_assert_uint_eq(a->database_connections, b->database_connections);
}

void
assert_round_trip(const struct config *cfg)
{
	struct config *again;
	struct errs e;
	char *text = dump_text(cfg);
	int n = load_text(&again, text, &e);

	ck_assert_msg(n == 0, "dump does not re-parse (%s):\n%s",
		      e.n > 0 ? e.msg[0] : "", text);
	assert_same(cfg, again);
	errs_free(&e);
	config_free(again);
	free(text);
}

/* ---- defaults ------------------------------------------------------------ */

START_TEST(test_defaults)
{
	struct config *cfg = config_new(), *empty;
	struct errs e;
	int ncpu = util_ncpu();

	ck_assert_int_eq(cfg->nlisten, 1);
	ck_assert_str_eq(cfg->listen[0].text, "0.0.0.0:8080");
	ck_assert_int_eq(cfg->listen[0].tls, 0);
	ck_assert_int_eq(cfg->listen[0].addr.ss_family, AF_INET);
	ck_assert_int_eq(cfg->workers_auto, 1);
	ck_assert_int_eq(cfg->workers,
			 ncpu > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : ncpu);
	ck_assert_str_eq(cfg->user, "nobody");
	ck_assert_ptr_null(cfg->group);
	ck_assert_str_eq(cfg->pidfile, ORCHD_RUNSTATEDIR "/orchd.pid");
	ck_assert_int_eq(cfg->log_target, CONFIG_LOG_SYSLOG);
	ck_assert_ptr_null(cfg->log_file);
	ck_assert_int_eq(cfg->log_level, LOG_INFO);
	ck_assert_str_eq(cfg->ws_path, "/daemon/ws");
	ck_assert_uint_eq(cfg->heartbeat_interval_ms, 30000);
	ck_assert_uint_eq(cfg->auth_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->drain_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->max_connections, 100000);
	ck_assert_uint_eq(cfg->max_connections_per_orchestrator, 5);
	ck_assert_str_eq(cfg->redis_text, "127.0.0.1:6379");
	ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
	ck_assert_int_eq(cfg->redis.port, 6379);
	ck_assert_ptr_null(cfg->redis.unix_path);
	ck_assert_ptr_null(cfg->jwt_secret_file);
	ck_assert_ptr_null(cfg->jwt_secret);
	ck_assert_int_eq(cfg->jwt_secret_from_env, 0);
	ck_assert_ptr_null(cfg->tls_certificate);
	ck_assert_ptr_null(cfg->tls_certificate_key);
	ck_assert_ptr_null(cfg->ws_echo_path);
	ck_assert_uint_eq(cfg->http_max_header_size, 8192);
	ck_assert_uint_eq(cfg->http_max_body_size, 1048576);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->keepalive_timeout_ms, 60000);
	ck_assert_ptr_null(cfg->ws_allowed_origins);
	ck_assert_uint_eq(cfg->nws_allowed_origins, 0);
	ck_assert_uint_eq(cfg->ws_max_message_size, 1048576);
	ck_assert_uint_eq(cfg->ws_ping_interval_ms, 30000);
	ck_assert_uint_eq(cfg->ws_pong_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->ws_close_timeout_ms, 5000);
	ck_assert_int_eq(cfg->ws_compression, 1);
	ck_assert_uint_eq(cfg->ws_compression_level, 1);
	ck_assert_uint_eq(cfg->ws_compression_min_size, 64);
	ck_assert_uint_eq(cfg->max_send_queue, 1048576);
	ck_assert_ptr_null(cfg->database_conninfo);
	ck_assert_ptr_null(cfg->database_file);
	ck_assert_uint_eq(cfg->database_timeout_ms, 2000);
	ck_assert_int_eq(cfg->database_failure, CONFIG_DB_FAIL_CLOSED);
	ck_assert_uint_eq(cfg->database_cache_ttl_ms, 60000);
	ck_assert_uint_eq(cfg->database_connections, 2);

	/* An empty or comment-only file is valid and changes nothing. */
	ck_assert_int_eq(load_text(&empty, "\n# nothing\n   \n\t# here\n", &e),
			 0);
	assert_same(cfg, empty);
	config_free(empty);
	config_free(cfg);
}
END_TEST

START_TEST(test_directive_doc)
{
	struct config_doc doc;
	size_t i;

	for (i = 0; config_directive_doc(i, &doc) == 0; i++) {
		ck_assert_ptr_nonnull(doc.name);
		ck_assert_ptr_nonnull(doc.syntax);
		ck_assert_ptr_nonnull(doc.help);
	}
	ck_assert_uint_ge(i, 32);
	ck_assert_int_eq(config_directive_doc(i + 100, &doc), -1);
}
END_TEST

/* ---- a good file with every directive ------------------------------------ */

START_TEST(test_every_directive)
{
	char secret[512], cert[512], key[512], inc[512], logf[512], dbf[512];
	char tok[512];
	char text[8192];
	struct config *cfg;
	struct config_doc doc;
	struct errs e;
	int n;

	write_tmp(secret, sizeof(secret), "secret", "s3cr3t-value\n", 13);
	write_tmp(tok, sizeof(tok), "admin.token", "0123456789abcdefXYZ\n", 20);
	write_tmp(cert, sizeof(cert), "cert.pem", "cert", 4);
	write_tmp(key, sizeof(key), "key.pem", "key", 3);
	write_tmp(inc, sizeof(inc), "inc.conf", "log_level debug\n", 16);
	snprintf(logf, sizeof(logf), "%s/orchd.log", tmpdir);
	write_tmp(dbf, sizeof(dbf), "db.conninfo",
		  "host=/run/postgresql dbname=orchd\n", 34);
	snprintf(text, sizeof(text),
		 "# every directive, none at its default\n"
		 "listen 127.0.0.1:9000\n"
		 "listen [::1]:9443 tls   # comment after values\n"
		 "listen *:9001 admin\n"
		 "workers 3\n"
		 "user root\n"
		 "group root\n"
		 "pidfile /tmp/orchd-test.pid\n"
		 "log %s\n"
		 "\tws_path   /v2/ws\n"
		 "heartbeat_interval 45s\n"
		 "auth_timeout 1500ms\n"
		 "drain_timeout 2m\n"
		 "max_connections 5000\n"
		 "max_connections_per_orchestrator 7\n"
		 "redis redis.example.com:6380\n"
		 "jwt_secret_file %s\n"
		 "tls_certificate \"%s\"\n"
		 "tls_certificate_key %s\n"
		 "include %s\n"
		 "ws_echo_path /echo\n"
		 "http_max_header_size 16k\n"
		 "http_max_body_size 0\n"
		 "handshake_timeout 2500ms\n"
		 "keepalive_timeout 0\n"
		 "ws_allowed_origins https://app.example.com "
		 "HTTP://LOCALHOST:3000\n"
		 "ws_allowed_origins https://admin.example.com:443\n"
		 "ws_max_message_size 16m\n"
		 "ws_ping_interval 0\n"
		 "ws_pong_timeout 3s\n"
		 "ws_close_timeout 1m\n"
		 "ws_compression off\n"
		 "ws_compression_level 9\n"
		 "ws_compression_min_size 1k\n"
		 "max_send_queue 256k\n"
		 "redis_timeout 500ms\n"
		 "session_ttl 2m\n"
		 "jwt_public_key " DATA "/jwt-es256.pub.pem\n"
		 "jwt_public_key " DATA "/jwt-rs256.pub.pem rsa-1\n"
		 "jwt_issuer https://auth.example.com\n"
		 "jwt_audience \"orchd daemons\"\n"
		 "jwt_leeway 5s\n"
		 "token_lifetime 10m\n"
		 "refresh_token_lifetime 7d\n"
		 "required_scopes messages:read vp:status\n"
		 "revocation_check best-effort\n"
		 "rate_limit_messages 600\n"
		 "rate_limit_burst 50\n"
		 "rate_limit_grace 0\n"
		 "connection_rate_per_address 20\n"
		 "auth_failure_limit 5 per 30s\n"
		 "admin_allow 10.0.0.0/8 ::1\n"
		 "admin_allow 192.168.1.7\n"
		 "admin_token_file %s\n"
		 "event_stream on\n"
		 "event_stream_key events:stream\n"
		 "max_event_size 128k\n"
		 "queue_max_events 50\n"
		 "queue_retention 1h\n"
		 "relay_canary_interval 0\n"
		 "relay_pipe_queue 1m\n"
		 "drain_reconnect_delay 2s\n"
		 "admin_socket /tmp/orchd-check.sock 0660\n"
		 "database_file %s\n"
		 "database_timeout 500ms\n"
		 "database_failure cached\n"
		 "database_cache_ttl 5m\n"
		 "database_connections 4\n",
		 logf, secret, cert, key, inc, tok, dbf);

	/* The test stays complete when a directive is added to the table. */
	for (size_t i = 0; config_directive_doc(i, &doc) == 0; i++) {
		char needle[128];
		const char *p = text;
		size_t l = (size_t)snprintf(needle, sizeof(needle), "%s ",
					    doc.name);

		/* At the start of a line, maybe after blanks. */
		while ((p = strstr(p, needle)) != NULL &&
		       !(p[-1] == '\n' || p[-1] == '\t'))
			p += l;
		/*
		 * log_level is in the included file; database excludes
		 * database_file (tested on its own in test_database).
		 */
		ck_assert_msg(p != NULL || strcmp(doc.name, "log_level") == 0 ||
				      strcmp(doc.name, "database") == 0,
			      "directive %s is not in the test file", doc.name);
	}

	n = load_text(&cfg, text, &e);
	ck_assert_msg(n == 0, "%d errors; first: %s", n,
		      e.n > 0 ? e.msg[0] : "");
	ck_assert_int_eq(cfg->nlisten, 3);
	ck_assert_str_eq(cfg->admin_socket, "/tmp/orchd-check.sock");
	ck_assert_uint_eq(cfg->admin_socket_mode, 0660);
	ck_assert_str_eq(cfg->listen[0].text, "127.0.0.1:9000");
	ck_assert_int_eq(cfg->listen[0].tls, 0);
	ck_assert_str_eq(cfg->listen[1].text, "[::1]:9443");
	ck_assert_int_eq(cfg->listen[1].tls, 1);
	ck_assert_int_eq(cfg->listen[1].addr.ss_family, AF_INET6);
	ck_assert_uint_eq(cfg->listen[1].addrlen, sizeof(struct sockaddr_in6));
	ck_assert_str_eq(cfg->listen[2].text, "0.0.0.0:9001");
	ck_assert_int_eq(cfg->listen[2].admin, 1);
	ck_assert_int_eq(cfg->listen[0].admin, 0);
	ck_assert_uint_eq(cfg->nadmin_allow, 3);
	ck_assert_str_eq(cfg->admin_allow[0].text, "10.0.0.0/8");
	ck_assert_str_eq(cfg->admin_allow[1].text, "::1");
	ck_assert_str_eq(cfg->admin_allow[2].text, "192.168.1.7");
	ck_assert_str_eq(cfg->admin_token_file, tok);
	ck_assert_str_eq(cfg->admin_token, "0123456789abcdefXYZ");
	ck_assert_uint_eq(cfg->admin_token_len, 19);
	ck_assert_int_eq(cfg->workers, 3);
	ck_assert_int_eq(cfg->workers_auto, 0);
	ck_assert_str_eq(cfg->user, "root");
	ck_assert_str_eq(cfg->group, "root");
	ck_assert_str_eq(cfg->pidfile, "/tmp/orchd-test.pid");
	ck_assert_int_eq(cfg->log_target, CONFIG_LOG_FILE);
	ck_assert_str_eq(cfg->log_file, logf);
	ck_assert_int_eq(cfg->log_level, LOG_DEBUG);
	ck_assert_str_eq(cfg->ws_path, "/v2/ws");
	ck_assert_uint_eq(cfg->heartbeat_interval_ms, 45000);
	ck_assert_uint_eq(cfg->auth_timeout_ms, 1500);
	ck_assert_uint_eq(cfg->drain_timeout_ms, 120000);
	ck_assert_uint_eq(cfg->max_connections, 5000);
	ck_assert_uint_eq(cfg->max_connections_per_orchestrator, 7);
	ck_assert_str_eq(cfg->redis_text, "redis.example.com:6380");
	ck_assert_str_eq(cfg->redis.host, "redis.example.com");
	ck_assert_int_eq(cfg->redis.port, 6380);
	ck_assert_str_eq(cfg->jwt_secret_file, secret);
	ck_assert_str_eq(cfg->jwt_secret, "s3cr3t-value");
	ck_assert_uint_eq(cfg->jwt_secret_len, 12);
	ck_assert_int_eq(cfg->jwt_secret_from_env, 0);
	ck_assert_str_eq(cfg->tls_certificate, cert);
	ck_assert_str_eq(cfg->tls_certificate_key, key);
	ck_assert_str_eq(cfg->path, "t.conf");
	ck_assert_str_eq(cfg->ws_echo_path, "/echo");
	ck_assert_uint_eq(cfg->http_max_header_size, 16384);
	ck_assert_uint_eq(cfg->http_max_body_size, 0);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 2500);
	ck_assert_uint_eq(cfg->keepalive_timeout_ms, 0);
	ck_assert_uint_eq(cfg->nws_allowed_origins, 3);
	ck_assert_str_eq(cfg->ws_allowed_origins[0], "https://app.example.com");
	ck_assert_str_eq(cfg->ws_allowed_origins[1], "http://localhost:3000");
	ck_assert_str_eq(cfg->ws_allowed_origins[2],
			 "https://admin.example.com");
	ck_assert_uint_eq(cfg->ws_max_message_size, 16 * 1048576);
	ck_assert_uint_eq(cfg->ws_ping_interval_ms, 0);
	ck_assert_uint_eq(cfg->ws_pong_timeout_ms, 3000);
	ck_assert_uint_eq(cfg->ws_close_timeout_ms, 60000);
	ck_assert_int_eq(cfg->ws_compression, 0);
	ck_assert_uint_eq(cfg->ws_compression_level, 9);
	ck_assert_uint_eq(cfg->ws_compression_min_size, 1024);
	ck_assert_uint_eq(cfg->max_send_queue, 262144);
	ck_assert_uint_eq(cfg->redis_timeout_ms, 500);
	ck_assert_uint_eq(cfg->session_ttl_ms, 120000);
	ck_assert_uint_eq(cfg->njwt_public_keys, 2);
	ck_assert_str_eq(cfg->jwt_public_keys[0], DATA "/jwt-es256.pub.pem");
	ck_assert_ptr_null(cfg->jwt_public_key_kids[0]);
	ck_assert_str_eq(cfg->jwt_public_keys[1], DATA "/jwt-rs256.pub.pem");
	ck_assert_str_eq(cfg->jwt_public_key_kids[1], "rsa-1");
	ck_assert_str_eq(cfg->jwt_issuer, "https://auth.example.com");
	ck_assert_str_eq(cfg->jwt_audience, "orchd daemons");
	ck_assert_uint_eq(cfg->jwt_leeway_ms, 5000);
	ck_assert_uint_eq(cfg->token_lifetime_ms, 600000);
	ck_assert_uint_eq(cfg->refresh_token_lifetime_ms, 7 * 86400000ULL);
	ck_assert_uint_eq(cfg->nrequired_scopes, 2);
	ck_assert_str_eq(cfg->required_scopes[0], "messages:read");
	ck_assert_str_eq(cfg->required_scopes[1], "vp:status");
	ck_assert_int_eq(cfg->revocation_check, CONFIG_REVOCATION_BEST_EFFORT);
	ck_assert_uint_eq(cfg->rate_limit_messages, 600);
	ck_assert_uint_eq(cfg->rate_limit_burst, 50);
	ck_assert_uint_eq(cfg->rate_limit_grace_ms, 0);
	ck_assert_uint_eq(cfg->connection_rate_per_address, 20);
	ck_assert_uint_eq(cfg->auth_failure_limit, 5);
	ck_assert_uint_eq(cfg->auth_failure_window_ms, 30000);
	ck_assert_int_eq(cfg->event_stream, 1);
	ck_assert_str_eq(cfg->event_stream_key, "events:stream");
	ck_assert_uint_eq(cfg->max_event_size, 128 * 1024);
	ck_assert_uint_eq(cfg->queue_max_events, 50);
	ck_assert_uint_eq(cfg->queue_retention_ms, 3600 * 1000);
	ck_assert_uint_eq(cfg->relay_canary_interval_ms, 0);
	ck_assert_uint_eq(cfg->relay_pipe_queue, 1024 * 1024);
	ck_assert_uint_eq(cfg->drain_reconnect_delay_ms, 2000);
	ck_assert_str_eq(cfg->database_file, dbf);
	ck_assert_str_eq(cfg->database_conninfo,
			 "host=/run/postgresql dbname=orchd");
	ck_assert_uint_eq(cfg->database_timeout_ms, 500);
	ck_assert_int_eq(cfg->database_failure, CONFIG_DB_CACHED);
	ck_assert_uint_eq(cfg->database_cache_ttl_ms, 300000);
	ck_assert_uint_eq(cfg->database_connections, 4);
	assert_round_trip(cfg);
	errs_free(&e);
	config_free(cfg);
}
END_TEST

START_TEST(test_values)
{
	struct config *cfg;
	struct errs e;
	static const struct {
		const char *name;
		int level;
	} levels[] = {
		{"error", LOG_ERR}, {"warn", LOG_WARNING},
		{"notice", LOG_NOTICE}, {"info", LOG_INFO},
		{"debug", LOG_DEBUG},
	};

	for (size_t i = 0; i < UTIL_NELEM(levels); i++) {
		char text[64];

		snprintf(text, sizeof(text), "log_level %s\n", levels[i].name);
		ck_assert_int_eq(load_text(&cfg, text, &e), 0);
		ck_assert_int_eq(cfg->log_level, levels[i].level);
		ck_assert_str_eq(config_log_level_name(levels[i].level),
				 levels[i].name);
		config_free(cfg);
	}
	ck_assert_str_eq(config_log_level_name(LOG_EMERG), "error");
	ck_assert_str_eq(config_log_level_name(LOG_DEBUG + 3), "debug");

	ck_assert_int_eq(load_text(&cfg, "log stderr\n", &e), 0);
	ck_assert_int_eq(cfg->log_target, CONFIG_LOG_STDERR);
	ck_assert_ptr_null(cfg->log_file);
	config_free(cfg);

	ck_assert_int_eq(load_text(&cfg, "workers auto\n", &e), 0);
	ck_assert_int_eq(cfg->workers_auto, 1);
	ck_assert_int_ge(cfg->workers, 1);
	ck_assert_int_le(cfg->workers, CONFIG_MAX_WORKERS);
	config_free(cfg);

	ck_assert_int_eq(load_text(&cfg, "workers 64\ndrain_timeout 0\n"
					 "auth_timeout 100ms\n"
					 "heartbeat_interval 1h\n",
				   &e),
			 0);
	ck_assert_int_eq(cfg->workers, 64);
	ck_assert_uint_eq(cfg->drain_timeout_ms, 0);
	ck_assert_uint_eq(cfg->auth_timeout_ms, 100);
	ck_assert_uint_eq(cfg->heartbeat_interval_ms, 3600000);
	config_free(cfg);

	/* Quotes: blanks, '#', escapes, glued to unquoted text. */
	ck_assert_int_eq(load_text(&cfg,
				   "log \"/tmp/a b#c\\\"d\\\\e\"  # real\n"
				   "ws_path /x\"y\"z#comment\n"
				   "user \"root\"\r\n",
				   &e),
			 0);
	ck_assert_str_eq(cfg->log_file, "/tmp/a b#c\"d\\e");
	ck_assert_str_eq(cfg->ws_path, "/xyz");
	ck_assert_str_eq(cfg->user, "root");
	assert_round_trip(cfg);
	config_free(cfg);

	/* Redis forms. */
	ck_assert_int_eq(load_text(&cfg, "redis [::1]:7000\n", &e), 0);
	ck_assert_str_eq(cfg->redis.host, "::1");
	ck_assert_int_eq(cfg->redis.port, 7000);
	ck_assert_ptr_null(cfg->redis.unix_path);
	assert_round_trip(cfg);
	config_free(cfg);
	ck_assert_int_eq(load_text(&cfg, "redis unix:/run/redis.sock\n", &e),
			 0);
	ck_assert_str_eq(cfg->redis.unix_path, "/run/redis.sock");
	ck_assert_ptr_null(cfg->redis.host);
	ck_assert_str_eq(cfg->redis_text, "unix:/run/redis.sock");
	assert_round_trip(cfg);
	config_free(cfg);
	ck_assert_int_eq(load_text(&cfg, "redis /run/r.sock\n", &e), 0);
	ck_assert_str_eq(cfg->redis.unix_path, "/run/r.sock");
	config_free(cfg);
	ck_assert_int_eq(load_text(&cfg, "redis 10.0.0.2:6379\n", &e), 0);
	ck_assert_str_eq(cfg->redis.host, "10.0.0.2");
	config_free(cfg);
	EXPECT0("redis redis_1:6379\n");

	/* Sentinel. */
	ck_assert_int_eq(load_text(&cfg,
				   "redis sentinel 10.0.0.1:26379 "
				   "[::1]:26380 s3.example.com:26381 master "
				   "mymaster\n",
				   &e),
			 0);
	ck_assert_int_eq(cfg->redis.nsentinels, 3);
	ck_assert_str_eq(cfg->redis.sentinels[0].host, "10.0.0.1");
	ck_assert_int_eq(cfg->redis.sentinels[0].port, 26379);
	ck_assert_str_eq(cfg->redis.sentinels[1].host, "::1");
	ck_assert_int_eq(cfg->redis.sentinels[1].port, 26380);
	ck_assert_str_eq(cfg->redis.sentinels[2].host, "s3.example.com");
	ck_assert_str_eq(cfg->redis.master, "mymaster");
	ck_assert_ptr_null(cfg->redis.host);
	ck_assert_ptr_null(cfg->redis.unix_path);
	assert_round_trip(cfg);
	config_free(cfg);
	EXPECT1("redis sentinel 10.0.0.1:26379 master\n", "t.conf:1: redis",
		"master NAME");
	EXPECT1("redis sentinel master m\n", "t.conf:1: redis", "HOST:PORT");
	EXPECT1("redis sentinel 10.0.0.1:26379 m\n", "t.conf:1: redis",
		"master NAME");
	EXPECT1("redis sentinel unix:/x.sock master m\n", "t.conf:1: redis",
		"HOST:PORT");
	EXPECT1("redis 10.0.0.1:6379 10.0.0.2:6379\n", "t.conf:1: redis",
		"too many values");
	EXPECT1("redis sentinel a:1 b:2 c:3 d:4 e:5 f:6 g:7 h:8 i:9 master "
		"m\n",
		"t.conf:1: redis", "too many values");
}
END_TEST

/* ---- parse helpers ------------------------------------------------------- */

START_TEST(test_duration_parse)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t ms;
	} cases[] = {
		{"0", 0, 0},
		{"30", 0, 30000},
		{"250ms", 0, 250},
		{"30s", 0, 30000},
		{"5m", 0, 300000},
		{"2h", 0, 7200000},
		{"1d", 0, 86400000},
		{"007s", 0, 7000},
		{"18446744073709551615ms", 0, UINT64_MAX},
		{"10x", -1, 0},
		{"-5s", -1, 0},
		{"s", -1, 0},
		{"", -1, 0},
		{"1.5s", -1, 0},
		{"5 s", -1, 0},
		{"5S", -1, 0},
		{"5sec", -1, 0},
		{"18446744073709551616ms", -2, 0},
		{"99999999999999999999s", -2, 0},
		{"18446744073709551615s", -2, 0},
		{"213503982334601d", -2, 0},
	};

	for (size_t i = 0; i < UTIL_NELEM(cases); i++) {
		uint64_t ms = 12345;
		int rc = config_parse_duration_ms(cases[i].s, &ms);

		ck_assert_msg(rc == cases[i].rc, "\"%s\": rc %d, want %d",
			      cases[i].s, rc, cases[i].rc);
		if (rc == 0)
			ck_assert_msg(ms == cases[i].ms, "\"%s\": %llu",
				      cases[i].s, (unsigned long long)ms);
		else
			ck_assert_uint_eq(ms, 12345);
	}
	ck_assert_int_eq(config_parse_duration_ms(NULL, NULL), -1);
}
END_TEST

START_TEST(test_listen_parse)
{
	static const struct {
		const char *in, *text;
	} good[] = {
		{"0.0.0.0:8080", "0.0.0.0:8080"},
		{"*:8080", "0.0.0.0:8080"},
		{"127.0.0.1:1", "127.0.0.1:1"},
		{"[::1]:8080", "[::1]:8080"},
		{"[::]:65535", "[::]:65535"},
		{"[0:0:0:0:0:0:0:1]:80", "[::1]:80"},
		{"10.1.2.3:0080", "10.1.2.3:80"},
	};
	static const char *const bad[] = {
		"999.1.1.1:80", "1.2.3.4",     "host:80",      "localhost:80",
		"[::1",         "[::1]",       "[::1]80",      "::1:80",
		"1.2.3.4:0",    "1.2.3.4:70000", "1.2.3.4:",   ":80",
		"[]:80",        "[zz]:80",     "1.2.3:80",     "1.2.3.4:80x",
		"1.2.3.4:-1",   "",            "[::1]:99999999999999999999",
	};
	struct config_listen l;

	for (size_t i = 0; i < UTIL_NELEM(good); i++) {
		ck_assert_msg(config_parse_listen(good[i].in, &l) == 0, "%s",
			      good[i].in);
		ck_assert_str_eq(l.text, good[i].text);
		ck_assert_int_eq(l.tls, 0);
	}
	ck_assert_int_eq(config_parse_listen("[::1]:443", &l), 0);
	ck_assert_int_eq(l.addr.ss_family, AF_INET6);
	ck_assert_int_eq(
		ntohs(((struct sockaddr_in6 *)&l.addr)->sin6_port), 443);
	ck_assert_int_eq(config_parse_listen("*:443", &l), 0);
	ck_assert_int_eq(l.addr.ss_family, AF_INET);
	ck_assert_uint_eq(l.addrlen, sizeof(struct sockaddr_in));
	ck_assert_uint_eq(((struct sockaddr_in *)&l.addr)->sin_addr.s_addr,
			  htonl(INADDR_ANY));
	for (size_t i = 0; i < UTIL_NELEM(bad); i++)
		ck_assert_msg(config_parse_listen(bad[i], &l) == -1,
			      "\"%s\" accepted", bad[i]);
}
END_TEST

START_TEST(test_size_parse)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t n;
	} cases[] = {
		{"0", 0, 0},
		{"64", 0, 64},
		{"64b", 0, 64},
		{"64B", 0, 64},
		{"1k", 0, 1024},
		{"1K", 0, 1024},
		{"8k", 0, 8192},
		{"1m", 0, 1048576},
		{"1M", 0, 1048576},
		{"3g", 0, 3221225472ULL},
		{"3G", 0, 3221225472ULL},
		{"0k", 0, 0},
		{"007k", 0, 7168},
		{"18446744073709551615", 0, UINT64_MAX},
		{"17179869183g", 0, 17179869183ULL << 30},
		{"8x", -1, 0},
		{"-1k", -1, 0},
		{"+1k", -1, 0},
		{"k", -1, 0},
		{"", -1, 0},
		{"1.5k", -1, 0},
		{"8 k", -1, 0},
		{"8kb", -1, 0},
		{"8KiB", -1, 0},
		{"8t", -1, 0},
		{"8kk", -1, 0},
		{"99999999999g", -2, 0},
		{"18446744073709551616", -2, 0},
		{"18014398509481984k", -2, 0},
		{"17179869184g", -2, 0},
		{"99999999999999999999999b", -2, 0},
	};

	for (size_t i = 0; i < UTIL_NELEM(cases); i++) {
		uint64_t n = 12345;
		int rc = config_parse_size(cases[i].s, &n);

		ck_assert_msg(rc == cases[i].rc, "\"%s\": rc %d, want %d",
			      cases[i].s, rc, cases[i].rc);
		if (rc == 0)
			ck_assert_msg(n == cases[i].n, "\"%s\": %llu",
				      cases[i].s, (unsigned long long)n);
		else
			ck_assert_uint_eq(n, 12345);
	}
	ck_assert_int_eq(config_parse_size(NULL, NULL), -1);
}
END_TEST

/* ---- one error of each kind -------------------------------------------- */

START_TEST(test_unknown_directive)
{
	EXPECT1("\n\nlisen 0.0.0.0:80\n",
		"t.conf:3: unknown directive \"lisen\"",
		"did you mean \"listen\"");
	EXPECT1("frobnicate yes\n",
		"t.conf:1: unknown directive \"frobnicate\"", "");
	EXPECT1("workers: 4\n", "t.conf:1: unknown directive \"workers:\"",
		"did you mean \"workers\"");
}
END_TEST

START_TEST(test_missing_value)
{
	EXPECT1("workers\n", "t.conf:1: workers: missing value",
		"workers N|auto");
	EXPECT1("# x\nlisten   # no address\n",
		"t.conf:2: listen: missing value", "ADDR:PORT");
	EXPECT1("include\n", "t.conf:1: include: missing value", "FILE");
	EXPECT1("user \"\"\n", "t.conf:1: user: empty value", "");
	EXPECT1("pidfile \"\"\n", "t.conf:1: pidfile: empty value", "");
}
END_TEST

START_TEST(test_too_many_values)
{
	EXPECT1("workers 4 5\n", "t.conf:1: workers: too many values",
		"workers N|auto");
	EXPECT1("listen 1.2.3.4:80 tls admin extra\n",
		"t.conf:1: listen: too many values", "");
	EXPECT1("log_level debug info\n",
		"t.conf:1: log_level: too many values", "");
	EXPECT1("ws_path /a /b /c /d /e /f /g /h /i /j\n",
		"t.conf:1: ws_path: too many values", "");
	EXPECT1("listen 1.2.3.4:80 ssl\n", "t.conf:1: listen: unknown option",
		"\"ssl\"");
}
END_TEST

START_TEST(test_bad_number)
{
	EXPECT1("workers abc\n",
		"t.conf:1: workers: \"abc\" is not a number or \"auto\"", "");
	EXPECT1("workers -1\n", "t.conf:1: workers: \"-1\" is not a number",
		"");
	EXPECT1("max_connections 12x\n",
		"t.conf:1: max_connections: \"12x\" is not a number",
		"1..10000000");
	EXPECT1("max_connections +5\n", "t.conf:1: max_connections: ",
		"number");
	EXPECT1("max_connections 1e3\n", "t.conf:1: max_connections: ",
		"number");
	/* A trailing ';' is part of the value; the message says why. */
	EXPECT1("workers 4;\n", "t.conf:1: workers: \"4;\" is not a number",
		"trailing \";\"");
	EXPECT1("log_level verbose\n",
		"t.conf:1: log_level: \"verbose\" is not one of",
		"error, warn, notice, info or debug");
}
END_TEST

START_TEST(test_out_of_range)
{
	EXPECT1("workers 0\n", "t.conf:1: workers: \"0\" is out of range",
		"1..64");
	EXPECT1("workers 65\n", "t.conf:1: workers: \"65\" is out of range",
		"");
	EXPECT1("workers 99999999999999999999999\n",
		"t.conf:1: workers: ", "out of range");
	EXPECT1("max_connections 0\n",
		"t.conf:1: max_connections: \"0\" is out of range",
		"1..10000000");
	EXPECT1("max_connections 10000001\n", "t.conf:1: max_connections: ",
		"out of range");
	EXPECT1("max_connections_per_orchestrator 100001\n",
		"t.conf:1: max_connections_per_orchestrator: ", "1..100000");
	EXPECT1("heartbeat_interval 999ms\n",
		"t.conf:1: heartbeat_interval: \"999ms\" is out of range",
		"1s..1h");
	EXPECT1("heartbeat_interval 61m\n", "t.conf:1: heartbeat_interval: ",
		"out of range");
	EXPECT1("heartbeat_interval 0\n", "t.conf:1: heartbeat_interval: ",
		"out of range");
	EXPECT1("auth_timeout 99ms\n", "t.conf:1: auth_timeout: ",
		"100ms..10m");
	EXPECT1("auth_timeout 601s\n", "t.conf:1: auth_timeout: ",
		"out of range");
	EXPECT1("drain_timeout 2h\n", "t.conf:1: drain_timeout: ", "0s..1h");
	EXPECT0("max_connections 10000000\nmax_connections_per_orchestrator "
		"100000\nauth_timeout 10m\n");
}
END_TEST

START_TEST(test_bad_duration)
{
	EXPECT1("heartbeat_interval 10x\n",
		"t.conf:1: heartbeat_interval: \"10x\" is not a duration",
		"ms, s, m, h or d");
	EXPECT1("auth_timeout -5s\n",
		"t.conf:1: auth_timeout: \"-5s\" is not a duration", "");
	EXPECT1("drain_timeout s\n",
		"t.conf:1: drain_timeout: \"s\" is not a duration", "");
	EXPECT1("drain_timeout \"\"\n", "t.conf:1: drain_timeout: ",
		"not a duration");
	EXPECT1("drain_timeout 99999999999999999999999s\n",
		"t.conf:1: drain_timeout: ", "out of range");
	EXPECT1("drain_timeout 18446744073709551615s\n",
		"t.conf:1: drain_timeout: ", "out of range");
}
END_TEST

START_TEST(test_bad_address)
{
	EXPECT1("listen 999.1.1.1:80\n",
		"t.conf:1: listen: \"999.1.1.1:80\": ", "not an IPv4 address");
	EXPECT1("listen 1.2.3.4\n", "t.conf:1: listen: \"1.2.3.4\": ",
		"missing \":PORT\"");
	EXPECT1("listen host:80\n", "t.conf:1: listen: \"host:80\": ",
		"host names are not accepted");
	EXPECT1("listen [::1\n", "t.conf:1: listen: \"[::1\": ",
		"missing \"]\"");
	EXPECT1("listen ::1:80\n", "t.conf:1: listen: ", "goes in brackets");
	EXPECT1("listen 1.2.3.4:0\n", "t.conf:1: listen: ",
		"port out of range (1..65535)");
	EXPECT1("listen [::1]:70000\n", "t.conf:1: listen: ",
		"port out of range");
	EXPECT1("listen 1.2.3.4:http\n", "t.conf:1: listen: ",
		"port is not a number");
	EXPECT1("redis localhost\n", "t.conf:1: redis: \"localhost\": ",
		"missing \":PORT\"");
	EXPECT1("redis 999.1.1.1:6379\n", "t.conf:1: redis: ",
		"not an IPv4 address");
	EXPECT1("redis [::1:6379\n", "t.conf:1: redis: ", "missing \"]\"");
	EXPECT1("redis ::1:6379\n", "t.conf:1: redis: ", "goes in brackets");
	EXPECT1("redis host:0\n", "t.conf:1: redis: ", "port out of range");
	EXPECT1("redis bad!host:6379\n", "t.conf:1: redis: ",
		"not a valid host name");
	EXPECT1("redis unix:run/redis.sock\n", "t.conf:1: redis: ",
		"must be absolute");
	EXPECT1("redis unix:/"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
		"t.conf:1: redis: ", "too long");
}
END_TEST

START_TEST(test_listen_rules)
{
	struct config *cfg;
	struct errs e;
	char text[4096];
	size_t n = 0;

	EXPECT1("listen 1.2.3.4:80\nlisten 5.6.7.8:80\nlisten 1.2.3.4:80\n",
		"t.conf:3: listen: duplicate address 1.2.3.4:80",
		"first given at t.conf:1");
	EXPECT1("listen *:8080\nlisten 0.0.0.0:8080\n",
		"t.conf:2: listen: duplicate address 0.0.0.0:8080", "t.conf:1");
	/* An explicit listen replaces the default, so this is no dup. */
	ck_assert_int_eq(load_text(&cfg, "listen 0.0.0.0:8080\n", &e), 0);
	ck_assert_int_eq(cfg->nlisten, 1);
	config_free(cfg);
	ck_assert_int_eq(load_text(&cfg, "listen [::]:9000\n", &e), 0);
	ck_assert_int_eq(cfg->nlisten, 1);
	ck_assert_str_eq(cfg->listen[0].text, "[::]:9000");
	config_free(cfg);

	for (int i = 0; i <= CONFIG_MAX_LISTEN; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "listen 10.0.0.1:%d\n", 1000 + i);
	EXPECT1(text, "t.conf:17: listen: too many addresses", "at most 16");
}
END_TEST

START_TEST(test_unterminated_quote)
{
	EXPECT1("workers 2\nuser \"nobody\n",
		"t.conf:2: unterminated quoted string", "");
	EXPECT1("log \"/tmp/x\\\"\n", "t.conf:1: unterminated quoted string",
		"");
	EXPECT1("# \"quote in a comment is fine\n"
		"ws_path \"/a\" # \"\n"
		"user \"x\n",
		"t.conf:3: unterminated", "");
}
END_TEST

START_TEST(test_duplicate)
{
	EXPECT1("workers 2\n\n# again\nworkers 3\n",
		"t.conf:4: workers: duplicate directive",
		"first given at t.conf:1");
	EXPECT1("ws_path /a\nws_path /a\n", "t.conf:2: ws_path: duplicate", "");
	EXPECT1("redis 1.2.3.4:1\nlog syslog\nredis 1.2.3.4:1\n",
		"t.conf:3: redis: duplicate", "t.conf:1");
}
END_TEST

START_TEST(test_strings)
{
	EXPECT1("user no-such-user-orchd\n",
		"t.conf:1: user: no such user \"no-such-user-orchd\"", "");
	EXPECT1("group no-such-group-orchd\n",
		"t.conf:1: group: no such group \"no-such-group-orchd\"", "");
	EXPECT1("user nobody;\n", "t.conf:1: user: no such user \"nobody;\"",
		"trailing \";\"");
	EXPECT1("ws_path daemon/ws\n", "t.conf:1: ws_path: \"daemon/ws\"",
		"must start with \"/\"");
	EXPECT1("ws_path \"/a b\"\n", "t.conf:1: ws_path: ", "spaces");
	EXPECT1("ws_path /a?b=1\n", "t.conf:1: ws_path: ", "\"?\"");
	EXPECT1("ws_path /a%20b\n",
		"t.conf:1: ws_path: \"/a%20b\" must not contain \"%\"",
		"write the character itself");
	EXPECT1("log syslog:local0\n",
		"t.conf:1: log: \"syslog:local0\" is not syslog, stderr or an "
		"absolute file path",
		"");
	EXPECT1("log orchd.log\n", "t.conf:1: log: ", "absolute");
	EXPECT1("pidfile run/orchd.pid\n",
		"t.conf:1: pidfile: \"run/orchd.pid\" is not an absolute path",
		"");
	/* Both halves given (so no cross-check error), neither readable. */
	EXPECTN("tls_certificate /nonexistent/orchd/cert.pem\n"
		"tls_certificate_key /nonexistent/orchd/key.pem\n", 2,
		"t.conf:1: tls_certificate: cannot read "
		"\"/nonexistent/orchd/cert.pem\"",
		"No such file");

	char path[300] = "/";
	memset(path + 1, 'a', 255);
	path[256] = '\0';
	char text[400];
	snprintf(text, sizeof(text), "ws_path %s\n", path);
	EXPECT1(text, "t.conf:1: ws_path: ", "longer than 255");
	path[255] = '\0';
	snprintf(text, sizeof(text), "ws_path %s\n", path);
	EXPECT0(text);
}
END_TEST

START_TEST(test_jwt_secret_file)
{
	char p[512], text[1024], big[4200];
	struct config *cfg;
	struct errs e;

	write_tmp(p, sizeof(p), "s1", "abc\r\n", 5);
	snprintf(text, sizeof(text), "jwt_secret_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_str_eq(cfg->jwt_secret, "abc");
	ck_assert_uint_eq(cfg->jwt_secret_len, 3);
	config_free(cfg);

	/* Only one trailing newline goes; inner bytes stay, even NULs. */
	write_tmp(p, sizeof(p), "s2", "a\0b\n\n", 5);
	snprintf(text, sizeof(text), "jwt_secret_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_uint_eq(cfg->jwt_secret_len, 4);
	ck_assert(memcmp(cfg->jwt_secret, "a\0b\n", 5) == 0);
	config_free(cfg);

	memset(big, 'k', sizeof(big));
	write_tmp(p, sizeof(p), "s3", big, 4096);
	snprintf(text, sizeof(text), "jwt_secret_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_uint_eq(cfg->jwt_secret_len, 4096);
	config_free(cfg);
	big[4096] = '\n';
	write_tmp(p, sizeof(p), "s3", big, 4097);
	EXPECT0(text);
	write_tmp(p, sizeof(p), "s3", big, 4098);
	EXPECT1(text, "t.conf:1: jwt_secret_file: ", "larger than 4096 bytes");

	write_tmp(p, sizeof(p), "s4", "\n", 1);
	snprintf(text, sizeof(text), "# secret\njwt_secret_file %s\n", p);
	EXPECT1(text, "t.conf:2: jwt_secret_file: ", "is empty");
	write_tmp(p, sizeof(p), "s4", "", 0);
	EXPECT1(text, "t.conf:2: jwt_secret_file: ", "is empty");

	EXPECT1("jwt_secret_file /nonexistent/orchd/secret\n",
		"t.conf:1: jwt_secret_file: cannot read "
		"\"/nonexistent/orchd/secret\"",
		"No such file");
	EXPECT1("jwt_secret_file /\n", "t.conf:1: jwt_secret_file: ",
		"not a regular file");
	EXPECT1("jwt_secret_file secret.txt\n", "t.conf:1: jwt_secret_file: ",
		"not an absolute path");
}
END_TEST

START_TEST(test_database)
{
	char p[512], text[1024], big[CONFIG_CONNINFO_MAX + 10];
	struct config *cfg;
	struct errs e;

	/* A URI, a key=value list (quoted: it has blanks). */
	ck_assert_int_eq(load_text(&cfg,
				   "database postgresql://orchd:pw@10.0.0.5:5433"
				   "/dir?sslmode=require\n",
				   &e),
			 0);
	ck_assert_str_eq(cfg->database_conninfo,
			 "postgresql://orchd:pw@10.0.0.5:5433/dir?"
			 "sslmode=require");
	ck_assert_ptr_null(cfg->database_file);
	config_free(cfg);
	ck_assert_int_eq(load_text(&cfg,
				   "database \"hostaddr=10.0.0.5 dbname=orchd "
				   "password='a b'\"\n",
				   &e),
			 0);
	ck_assert_str_eq(cfg->database_conninfo,
			 "hostaddr=10.0.0.5 dbname=orchd password='a b'");
	config_free(cfg);

	/* libpq's verdict, without what it quotes (maybe the password). */
	EXPECT1("database \"host=/tmp Sekr1t-Pw\"\n",
		"t.conf:1: database: not a valid libpq conninfo: ",
		"missing \"=\" after \"...\"");
	EXPECT1("database \"host=/tmp Sekr1t-Pw\"\n", "t.conf:1: database: ",
		"conninfo");
	{
		struct errs e2;

		ck_assert_int_eq(load_text(&cfg, "database \"host=/tmp "
						 "Sekr1t-Pw\"\n"
						 "database_connections 3\n"
						 "database postgresql://u:"
						 "Sekr1t-Pw@h/%zz\n",
					   &e2),
				 2);
		ck_assert_ptr_null(strstr(e2.msg[0], "Sekr1t"));
		ck_assert_ptr_null(strstr(e2.msg[1], "Sekr1t"));
		ck_assert_msg(has_prefix(e2.msg[1], "t.conf:3: database: "
						    "duplicate directive"),
			      "%s", e2.msg[1]);
		errs_free(&e2);
		config_free(cfg);
	}
	EXPECT1("database postgresql://u:Sekr1t-Pw@h/%zz\n",
		"t.conf:1: database: not a valid libpq conninfo: ",
		"invalid percent-encoded token");
	/* An unknown option's name is a keyword: shown. */
	EXPECT1("database \"host=/tmp colour=blue\"\n",
		"t.conf:1: database: not a valid libpq conninfo: ",
		"invalid connection option \"colour\"");
	EXPECT1("database \"\"\n", "t.conf:1: database: ", "empty conninfo");
	EXPECT1("database host=/tmp dbname=x\n", "t.conf:1: database: ",
		"too many values (syntax: database CONNINFO)");
	memset(big, 'a', sizeof(big));
	memcpy(big, "dbname=", 7);
	big[CONFIG_CONNINFO_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "database %.900s\n", big);
	EXPECT0(text);

	/* From a file: surrounding blanks go, lines may continue. */
	write_tmp(p, sizeof(p), "db1",
		  "\n  host=/run/postgresql\n  dbname=orchd\n\n", 39);
	snprintf(text, sizeof(text), "database_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_str_eq(cfg->database_conninfo,
			 "host=/run/postgresql\n  dbname=orchd");
	ck_assert_str_eq(cfg->database_file, p);
	config_free(cfg);
	write_tmp(p, sizeof(p), "db2", "host=/tmp Sekr1t-Pw\n", 20);
	snprintf(text, sizeof(text), "database_file %s\n", p);
	EXPECT1(text, "t.conf:1: database_file: \"", "not a valid libpq "
							"conninfo: missing");
	write_tmp(p, sizeof(p), "db3", " \n\n", 3);
	snprintf(text, sizeof(text), "\ndatabase_file %s\n", p);
	EXPECT1(text, "t.conf:2: database_file: \"", "empty conninfo");
	write_tmp(p, sizeof(p), "db4", big, CONFIG_CONNINFO_MAX + 1);
	snprintf(text, sizeof(text), "database_file %s\n", p);
	EXPECT1(text, "t.conf:1: database_file: \"",
		"conninfo longer than 4096 bytes");
	write_tmp(p, sizeof(p), "db4", big, CONFIG_CONNINFO_MAX);
	EXPECT0(text);
	write_tmp(p, sizeof(p), "db6", "dbname=a\0b", 10);
	snprintf(text, sizeof(text), "database_file %s\n", p);
	EXPECT1(text, "t.conf:1: database_file: \"", "holds a NUL byte");
	EXPECT1("database_file /nonexistent/orchd/db\n",
		"t.conf:1: database_file: cannot read "
		"\"/nonexistent/orchd/db\"",
		"No such file");
	EXPECT1("database_file /\n", "t.conf:1: database_file: ",
		"not a regular file");
	EXPECT1("database_file db.conf\n", "t.conf:1: database_file: ",
		"not an absolute path");

	/* Not both: the later line is the mistake. */
	write_tmp(p, sizeof(p), "db1", "dbname=orchd\n", 13);
	snprintf(text, sizeof(text),
		 "database_file %s\n\ndatabase \"dbname=x\"\n", p);
	EXPECT1(text, "t.conf:3: database: database and database_file are both "
		      "set (the other at t.conf:1)",
		"");
	snprintf(text, sizeof(text),
		 "database \"dbname=x\"\ndatabase_file %s\n", p);
	EXPECT1(text, "t.conf:2: database_file: database and database_file are "
		      "both set (the other at t.conf:1)",
		"");

	/* The plain ones. */
	EXPECT1("database_timeout 50ms\n",
		"t.conf:1: database_timeout: \"50ms\" is out of range "
		"(100ms..1m)",
		"");
	EXPECT1("database_failure open\n",
		"t.conf:1: database_failure: \"open\" is not one of "
		"fail-closed or cached",
		"");
	EXPECT1("database_connections 0\n",
		"t.conf:1: database_connections: \"0\" is out of range "
		"(1..16)",
		"");
	EXPECT1("database_connections 17\n",
		"t.conf:1: database_connections: \"17\" is out of range", "");
	EXPECT1("database_cache_ttl 2d\n",
		"t.conf:1: database_cache_ttl: \"2d\" is out of range "
		"(0s..1d)",
		"");
	/* Without a database they are harmless: the directory is off. */
	ck_assert_int_eq(load_text(&cfg, "database_failure cached\n"
					 "database_cache_ttl 0\n",
				   &e),
			 0);
	ck_assert_ptr_null(cfg->database_conninfo);
	ck_assert_uint_eq(cfg->database_cache_ttl_ms, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_tls_cross_check)
{
	char cert[512], key[512], text[2048];

	write_tmp(cert, sizeof(cert), "c.pem", "c", 1);
	write_tmp(key, sizeof(key), "k.pem", "k", 1);

	EXPECT1("listen *:80\n\nlisten [::]:8443 tls\n",
		"t.conf:3: listen [::]:8443 tls requires tls_certificate", "");
	snprintf(text, sizeof(text),
		 "listen *:443 tls\n# c\ntls_certificate %s\n", cert);
	EXPECT1(text, "t.conf:3: tls_certificate is set but "
		      "tls_certificate_key is not", "");
	snprintf(text, sizeof(text), "tls_certificate_key %s\n", key);
	EXPECT1(text, "t.conf:1: tls_certificate_key is set but "
		      "tls_certificate is not", "");
	snprintf(text, sizeof(text),
		 "listen *:443 tls\ntls_certificate %s\n"
		 "tls_certificate_key %s\n",
		 cert, key);
	EXPECT0(text);
	/* Certificates without a tls listener are not an error. */
	snprintf(text, sizeof(text),
		 "tls_certificate %s\ntls_certificate_key %s\n", cert, key);
	EXPECT0(text);

	/* Two tls listeners without certificates: two errors. */
	struct config *cfg;
	struct errs e;
	ck_assert_int_eq(load_text(&cfg,
				   "listen *:443 tls\nlisten *:80\n"
				   "listen [::]:443 tls\n",
				   &e),
			 2);
	ck_assert(has_prefix(e.msg[0], "t.conf:1: listen 0.0.0.0:443 tls"));
	ck_assert(has_prefix(e.msg[1], "t.conf:3: listen [::]:443 tls"));
	errs_free(&e);
	config_free(cfg);
}
END_TEST

/* ---- the HTTP and WebSocket transport directives ------------------------ */

void
check_range(const struct range_case *rc, const char *notword,
	    const char *const *malformed, size_t nmalformed,
	    const char *overflow)
{
	char text[256], prefix[256], range[64];
	struct config *cfg;
	struct errs e;
	const char *ok[2] = {rc->lo, rc->hi};

	snprintf(range, sizeof(range), "(%s)", rc->range);
	for (size_t i = 0; i < nmalformed; i++) {
		snprintf(text, sizeof(text), "# x\n%s %s\n", rc->name,
			 malformed[i]);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:2: %s: \"%s\" is not a %s", rc->name,
			 malformed[i], notword);
		EXPECT1(text, prefix, "");
	}
	snprintf(text, sizeof(text), "%s %s\n", rc->name, overflow);
	snprintf(prefix, sizeof(prefix), "t.conf:1: %s: \"%s\" is out of range",
		 rc->name, overflow);
	EXPECT1(text, prefix, range);
	for (int i = 0; i < 2; i++) {
		const char *bad = i == 0 ? rc->below : rc->above;

		if (bad == NULL)
			continue;
		snprintf(text, sizeof(text), "%s %s\n", rc->name, bad);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:1: %s: \"%s\" is out of range", rc->name, bad);
		EXPECT1(text, prefix, range);
	}
	for (int i = 0; i < 2; i++) {
		char *dump, line[128];

		snprintf(text, sizeof(text), "%s %s\n", rc->name, ok[i]);
		ck_assert_msg(load_text(&cfg, text, &e) == 0, "%s: %s", text,
			      e.n > 0 ? e.msg[0] : "");
		dump = dump_text(cfg);
		snprintf(line, sizeof(line), "\n%s %s\n", rc->name, ok[i]);
		ck_assert_msg(strstr(dump, line) != NULL, "no \"%s\" in:\n%s",
			      text, dump);
		free(dump);
		assert_round_trip(cfg);
		config_free(cfg);
	}
}

START_TEST(test_size_directives)
{
	static const char *const malformed[] = {
		"8x", "-1k", "1.5m", "k", "8kb", "64k;", "0x10",
	};
	static const struct range_case cases[] = {
		{"http_max_header_size", "1k", "64k", "1023",
		 "65537", "1k..64k"},
		{"http_max_body_size", "0", "64m", NULL,
		 "67108865", "0..64m"},
		{"ws_max_message_size", "125", "1g", "124",
		 "1073741825", "125..1g"},
		{"ws_compression_min_size", "0", "1m", NULL,
		 "1025k", "0..1m"},
		{"max_send_queue", "4k", "1g", "4095",
		 "1025m", "4k..1g"},
	};
	struct config *cfg;
	struct errs e;

	for (size_t i = 0; i < UTIL_NELEM(cases); i++)
		check_range(&cases[i], "size", malformed,
			    UTIL_NELEM(malformed), "99999999999g");

	/* The values land in the right fields, in bytes. */
	ck_assert_int_eq(load_text(&cfg, "http_max_header_size 1k\n"
					 "http_max_body_size 64m\n"
					 "ws_max_message_size 125\n"
					 "ws_compression_min_size 1m\n"
					 "max_send_queue 1g\n",
				   &e),
			 0);
	ck_assert_uint_eq(cfg->http_max_header_size, 1024);
	ck_assert_uint_eq(cfg->http_max_body_size, 64 * 1048576);
	ck_assert_uint_eq(cfg->ws_max_message_size, 125);
	ck_assert_uint_eq(cfg->ws_compression_min_size, 1048576);
	ck_assert_uint_eq(cfg->max_send_queue, 1073741824);
	config_free(cfg);

	/* Units in either case, "b" for bytes; the dump is canonical. */
	ck_assert_int_eq(load_text(&cfg, "http_max_header_size 16K\n"
					 "http_max_body_size 2M\n"
					 "ws_max_message_size 1G\n"
					 "ws_compression_min_size 100b\n"
					 "max_send_queue 4096B\n",
				   &e),
			 0);
	ck_assert_uint_eq(cfg->http_max_header_size, 16384);
	ck_assert_uint_eq(cfg->http_max_body_size, 2097152);
	ck_assert_uint_eq(cfg->ws_max_message_size, 1073741824);
	ck_assert_uint_eq(cfg->ws_compression_min_size, 100);
	ck_assert_uint_eq(cfg->max_send_queue, 4096);
	assert_round_trip(cfg);
	config_free(cfg);

	EXPECT1("http_max_header_size 8x\n",
		"t.conf:1: http_max_header_size: \"8x\" is not a size",
		"k, m or g");
	EXPECT1("http_max_body_size \"\"\n",
		"t.conf:1: http_max_body_size: \"\" is not a size", "");
	EXPECT1("http_max_header_size 8k 9k\n",
		"t.conf:1: http_max_header_size: too many values",
		"http_max_header_size SIZE");
	EXPECT1("max_send_queue\n", "t.conf:1: max_send_queue: missing value",
		"");
	EXPECT1("max_send_queue 1m\nmax_send_queue 2m\n",
		"t.conf:2: max_send_queue: duplicate directive", "t.conf:1");
}
END_TEST

START_TEST(test_transport_durations)
{
	static const char *const malformed[] = {
		"10x", "-1s", "1.5s", "s", "5S", "1h30m",
	};
	static const struct range_case cases[] = {
		{"handshake_timeout", "100ms", "10m", "99ms",
		 "601s", "100ms..10m"},
		{"keepalive_timeout", "0s", "1h", NULL, "3601s",
		 "0s..1h"},
		{"ws_ping_interval", "0s", "1h", NULL, "61m",
		 "0s..1h"},
		{"ws_pong_timeout", "100ms", "10m", "99ms",
		 "601s", "100ms..10m"},
		{"ws_close_timeout", "100ms", "1m", "0", "61s",
		 "100ms..1m"},
	};
	struct config *cfg;
	struct errs e;

	for (size_t i = 0; i < UTIL_NELEM(cases); i++)
		check_range(&cases[i], "duration", malformed,
			    UTIL_NELEM(malformed), "99999999999999999999s");

	ck_assert_int_eq(load_text(&cfg, "handshake_timeout 100ms\n"
					 "keepalive_timeout 1h\n"
					 "ws_ping_interval 0\n"
					 "ws_pong_timeout 10m\n"
					 "ws_close_timeout 1m\n",
				   &e),
			 0);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 100);
	ck_assert_uint_eq(cfg->keepalive_timeout_ms, 3600000);
	ck_assert_uint_eq(cfg->ws_ping_interval_ms, 0);
	ck_assert_uint_eq(cfg->ws_pong_timeout_ms, 600000);
	ck_assert_uint_eq(cfg->ws_close_timeout_ms, 60000);
	config_free(cfg);
}
END_TEST

START_TEST(test_compression)
{
	struct config *cfg;
	struct errs e;

	ck_assert_int_eq(load_text(&cfg, "ws_compression off\n"
					 "ws_compression_level 1\n",
				   &e),
			 0);
	ck_assert_int_eq(cfg->ws_compression, 0);
	ck_assert_uint_eq(cfg->ws_compression_level, 1);
	assert_round_trip(cfg);
	config_free(cfg);
	ck_assert_int_eq(load_text(&cfg, "ws_compression on\n"
					 "ws_compression_level 9\n",
				   &e),
			 0);
	ck_assert_int_eq(cfg->ws_compression, 1);
	ck_assert_uint_eq(cfg->ws_compression_level, 9);
	config_free(cfg);

	EXPECT1("ws_compression yes\n",
		"t.conf:1: ws_compression: \"yes\" is not one of on or off",
		"");
	EXPECT1("ws_compression ON\n", "t.conf:1: ws_compression: ",
		"on or off");
	EXPECT1("ws_compression_level 0\n",
		"t.conf:1: ws_compression_level: \"0\" is out of range",
		"1..9");
	EXPECT1("ws_compression_level 10\n",
		"t.conf:1: ws_compression_level: \"10\" is out of range",
		"1..9");
	EXPECT1("ws_compression_level 99999999999999999999\n",
		"t.conf:1: ws_compression_level: ", "out of range");
	EXPECT1("ws_compression_level fast\n",
		"t.conf:1: ws_compression_level: \"fast\" is not a number",
		"1..9");
}
END_TEST

START_TEST(test_origins)
{
	static const struct {
		const char *in, *norm;
	} good[] = {
		{"*", "*"},
		{"https://app.example.com", "https://app.example.com"},
		{"HTTPS://App.Example.COM", "https://app.example.com"},
		{"https://app.example.com:443", "https://app.example.com"},
		{"https://app.example.com:80", "https://app.example.com:80"},
		{"http://app.example.com:80", "http://app.example.com"},
		{"http://localhost:03000", "http://localhost:3000"},
		{"wss://x.example:443", "wss://x.example"},
		{"http://10.0.0.1:8080", "http://10.0.0.1:8080"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"http://[0:0:0:0:0:0:0:1]", "http://[::1]"},
		{"https://[2001:DB8::1]:443", "https://[2001:db8::1]"},
		{"chrome-extension://abcdef", "chrome-extension://abcdef"},
		{"app+x.v1://host_1", "app+x.v1://host_1"},
	};
	static const struct {
		const char *in, *why;
	} bad[] = {
		{"app.example.com", "missing scheme"},
		{"//app.example.com", "missing scheme"},
		{"1http://a.example", "missing scheme"},
		{"https:/app.example.com", "missing scheme"},
		{"null", "\"null\""},
		{"https://app.example.com/path", "no path"},
		{"https://app.example.com/", "not even a final \"/\""},
		{"https://app.example.com?x=1", "query"},
		{"https://app.example.com#f", "fragment"},
		{"https://user@app.example.com", "user name"},
		{"https://*.example.com", "wildcard"},
		{"https://", "missing host"},
		{"https://:443", "missing host"},
		{"https://a.example:", "missing port"},
		{"https://a.example:0", "port out of range"},
		{"https://a.example:65536", "port out of range"},
		{"https://a.example:https", "port is not a number"},
		{"http://::1:80", "goes in brackets"},
		{"http://[::1", "missing \"]\""},
		{"http://[zz]:80", "not an IPv6 address"},
		{"http://[::1]x", "expected \":PORT\""},
		{"http://999.1.1.1", "not an IPv4 address"},
		{"http://bad!host", "not a valid host name"},
		{"http://-bad.example", "not a valid host name"},
	};
	char text[512], prefix[512];
	struct config *cfg;
	struct errs e;

	for (size_t i = 0; i < UTIL_NELEM(good); i++) {
		snprintf(text, sizeof(text), "ws_allowed_origins %s\n",
			 good[i].in);
		ck_assert_msg(load_text(&cfg, text, &e) == 0, "%s: %s",
			      good[i].in, e.n > 0 ? e.msg[0] : "");
		ck_assert_uint_eq(cfg->nws_allowed_origins, 1);
		ck_assert_str_eq(cfg->ws_allowed_origins[0], good[i].norm);
		assert_round_trip(cfg);
		errs_free(&e);
		config_free(cfg);
	}
	for (size_t i = 0; i < UTIL_NELEM(bad); i++) {
		/* Quoted: "#" would start a comment. */
		snprintf(text, sizeof(text), "\nws_allowed_origins \"%s\"\n",
			 bad[i].in);
		snprintf(prefix, sizeof(prefix),
			 "t.conf:2: ws_allowed_origins: \"%s\": ", bad[i].in);
		EXPECT1(text, prefix, bad[i].why);
	}

	/* Values accumulate, over several values and several lines. */
	ck_assert_int_eq(load_text(&cfg,
				   "ws_allowed_origins https://a.example\n"
				   "ws_path /ws\n"
				   "ws_allowed_origins https://b.example "
				   "http://[::1]:8080 http://c.example:81\n"
				   "ws_allowed_origins *\n",
				   &e),
			 0);
	ck_assert_uint_eq(cfg->nws_allowed_origins, 5);
	ck_assert_str_eq(cfg->ws_allowed_origins[0], "https://a.example");
	ck_assert_str_eq(cfg->ws_allowed_origins[1], "https://b.example");
	ck_assert_str_eq(cfg->ws_allowed_origins[2], "http://[::1]:8080");
	ck_assert_str_eq(cfg->ws_allowed_origins[3], "http://c.example:81");
	ck_assert_str_eq(cfg->ws_allowed_origins[4], "*");
	assert_round_trip(cfg);
	config_free(cfg);

	/* Each bad value of a line is reported; the line number is right. */
	EXPECTN("# origins\nws_allowed_origins a.example https://ok.example "
		"https://b.example/\n",
		2, "t.conf:2: ws_allowed_origins: \"a.example\": ",
		"missing scheme");
	/* Duplicates are found after normalization, across lines. */
	EXPECT1("ws_allowed_origins https://a.example\n\n"
		"ws_allowed_origins http://x.example HTTPS://A.EXAMPLE:443\n",
		"t.conf:3: ws_allowed_origins: duplicate origin "
		"\"https://a.example\" (first given at t.conf:1)",
		"");
	EXPECT1("ws_allowed_origins * *\n",
		"t.conf:1: ws_allowed_origins: duplicate origin \"*\"", "");
	EXPECT1("ws_allowed_origins\n",
		"t.conf:1: ws_allowed_origins: missing value",
		"ws_allowed_origins ORIGIN...");
	EXPECT1("ws_allowed_origins \"\"\n",
		"t.conf:1: ws_allowed_origins: \"\": ", "missing scheme");

	/* 31 values on a line is the most; more lines for more. */
	for (int nv = 31; nv <= 32; nv++) {
		char line[2048];
		size_t n = (size_t)snprintf(line, sizeof(line),
					    "ws_allowed_origins");

		for (int i = 0; i < nv; i++)
			n += (size_t)snprintf(line + n, sizeof(line) - n,
					      " https://h%d.example", i);
		snprintf(line + n, sizeof(line) - n, "\n");
		if (nv == 32) {
			EXPECT1(line,
				"t.conf:1: ws_allowed_origins: too many values",
				"");
			continue;
		}
		ck_assert_int_eq(load_text(&cfg, line, &e), 0);
		ck_assert_uint_eq(cfg->nws_allowed_origins, 31);
		ck_assert_str_eq(cfg->ws_allowed_origins[30],
				 "https://h30.example");
		assert_round_trip(cfg);
		config_free(cfg);
	}

	/* At most CONFIG_MAX_ORIGINS in all. */
	{
		size_t cap = 64 * (CONFIG_MAX_ORIGINS + 1), n = 0;
		char *big = malloc(cap);

		for (int i = 0; i <= CONFIG_MAX_ORIGINS; i++)
			n += (size_t)snprintf(big + n, cap - n,
					      "ws_allowed_origins "
					      "https://o%d.example\n",
					      i);
		ck_assert_int_eq(load_text(&cfg, big, &e), 1);
		ck_assert_msg(has_prefix(e.msg[0], "t.conf:257: "
						   "ws_allowed_origins: too "
						   "many origins (at most "
						   "256)"),
			      "%s", e.msg[0]);
		ck_assert_uint_eq(cfg->nws_allowed_origins, CONFIG_MAX_ORIGINS);
		errs_free(&e);
		config_free(cfg);
		free(big);
	}
}
END_TEST

static int
allowed(const struct config *cfg, const char *origin)
{
	return config_origin_allowed(cfg, origin,
				     origin != NULL ? strlen(origin) : 0);
}

START_TEST(test_origin_allowed)
{
	struct config *cfg = config_new();
	struct errs e;
	char big[400];

	/* Unset: anything goes. */
	ck_assert_int_eq(allowed(cfg, "https://evil.example"), 1);
	ck_assert_int_eq(allowed(cfg, "null"), 1);
	ck_assert_int_eq(allowed(cfg, NULL), 1);
	config_free(cfg);

	ck_assert_int_eq(load_text(&cfg,
				   "ws_allowed_origins https://app.example.com "
				   "http://localhost:3000\n",
				   &e),
			 0);
	ck_assert_int_eq(allowed(cfg, "https://app.example.com"), 1);
	ck_assert_int_eq(allowed(cfg, "http://localhost:3000"), 1);
	/* No Origin header: not a browser (an orchestrator daemon). */
	ck_assert_int_eq(allowed(cfg, NULL), 1);
	/* Compared normalized; blanks around the header value are OWS. */
	ck_assert_int_eq(allowed(cfg, "HTTPS://APP.example.com:443"), 1);
	ck_assert_int_eq(allowed(cfg, " https://app.example.com\t"), 1);
	ck_assert_int_eq(allowed(cfg, "https://app.example.com.evil.example"),
			 0);
	ck_assert_int_eq(allowed(cfg, "https://evil.example"), 0);
	ck_assert_int_eq(allowed(cfg, "http://app.example.com"), 0);
	ck_assert_int_eq(allowed(cfg, "https://app.example.com:8443"), 0);
	ck_assert_int_eq(allowed(cfg, "http://localhost"), 0);
	ck_assert_int_eq(allowed(cfg, "https://app.example.com/"), 0);
	ck_assert_int_eq(allowed(cfg, "null"), 0);
	ck_assert_int_eq(allowed(cfg, "*"), 0);
	ck_assert_int_eq(allowed(cfg, ""), 0);
	/* The value need not be NUL-terminated; an inner NUL never matches. */
	ck_assert_int_eq(config_origin_allowed(cfg, "http://localhost:3000XYZ",
					       21),
			 1);
	ck_assert_int_eq(config_origin_allowed(cfg, "http://localhost:3000XYZ",
					       22),
			 0);
	ck_assert_int_eq(config_origin_allowed(
				 cfg, "https://app.example.com\0x", 25),
			 0);
	memset(big, 'a', sizeof(big));
	memcpy(big, "https://", 8);
	ck_assert_int_eq(config_origin_allowed(cfg, big, sizeof(big)), 0);
	config_free(cfg);

	/* "*" admits everything, "null" included. */
	ck_assert_int_eq(load_text(&cfg,
				   "ws_allowed_origins https://a.example *\n",
				   &e),
			 0);
	ck_assert_int_eq(allowed(cfg, "https://b.example"), 1);
	ck_assert_int_eq(allowed(cfg, "null"), 1);
	config_free(cfg);
}
END_TEST

START_TEST(test_echo_path)
{
	struct config *cfg;
	struct errs e;

	ck_assert_int_eq(load_text(&cfg, "ws_echo_path /echo\n", &e), 0);
	ck_assert_str_eq(cfg->ws_echo_path, "/echo");
	assert_round_trip(cfg);
	config_free(cfg);
	EXPECT0("ws_echo_path /healthz/echo\nws_path /healthzz\n");

	/* Not ws_path, wherever that comes from. */
	EXPECT1("ws_path /x\nws_echo_path /x\n",
		"t.conf:2: ws_echo_path: \"/x\" is also ws_path (set at "
		"t.conf:1)",
		"needs a path of its own");
	EXPECT1("# echo\nws_echo_path /daemon/ws\n",
		"t.conf:2: ws_echo_path: \"/daemon/ws\" is also ws_path (its "
		"default)",
		"");
	setenv("WS_PATH", "/e", 1);
	EXPECT1("ws_path /x\nws_echo_path /e\n",
		"t.conf:2: ws_echo_path: \"/e\" is also ws_path (set by the "
		"environment variable WS_PATH)",
		"");
	/* WS_PATH moves ws_path away: no clash left. */
	EXPECT0("ws_path /x\nws_echo_path /x\n");
	setenv("WS_PATH", "/healthz", 1);
	EXPECT1("ws_echo_path /e\n",
		"environment: WS_PATH: \"/healthz\" is reserved for the "
		"health check",
		"");
	unsetenv("WS_PATH");

	/* Neither may be the health check; the rules of ws_path apply. */
	EXPECT1("ws_path /healthz\n",
		"t.conf:1: ws_path: \"/healthz\" is reserved for the health "
		"check",
		"");
	EXPECT1("ws_echo_path /healthz\n",
		"t.conf:1: ws_echo_path: \"/healthz\" is reserved", "");
	EXPECT1("ws_echo_path echo\n", "t.conf:1: ws_echo_path: \"echo\"",
		"must start with \"/\"");
	EXPECT1("ws_echo_path \"/a b\"\n", "t.conf:1: ws_echo_path: ",
		"spaces");
	EXPECT1("ws_echo_path /e?x\n", "t.conf:1: ws_echo_path: ", "\"?\"");
	EXPECT1("ws_echo_path \"\"\n", "t.conf:1: ws_echo_path: empty value",
		"");
	EXPECT1("ws_echo_path /a\nws_echo_path /b\n",
		"t.conf:2: ws_echo_path: duplicate directive", "t.conf:1");
}
END_TEST

/* ---- files and includes ------------------------------------------------- */

START_TEST(test_include)
{
	struct config *cfg;
	struct errs e;

	ck_assert_int_eq(load_file(&cfg, DATA "/main.conf", &e), 0);
	ck_assert_int_eq(cfg->workers, 2);
	ck_assert_int_eq(cfg->log_level, LOG_DEBUG);
	ck_assert_uint_eq(cfg->max_connections, 1000);
	ck_assert_uint_eq(cfg->max_connections_per_orchestrator, 9);
	ck_assert_str_eq(cfg->ws_path, "/main/ws");
	ck_assert_str_eq(cfg->path, DATA "/main.conf");
	config_free(cfg);
}
END_TEST

START_TEST(test_include_missing)
{
	struct config *cfg;
	struct errs e;

	/* The parse goes on after the failed include (log_level is read). */
	ck_assert_int_eq(load_file(&cfg, DATA "/missing_include.conf", &e), 1);
	ck_assert_int_eq(e.n, 1);
	ck_assert_msg(has_prefix(e.msg[0], DATA "/missing_include.conf:2: "
						"include: cannot open \""),
		      "%s", e.msg[0]);
	ck_assert_ptr_nonnull(strstr(e.msg[0], "does-not-exist.conf"));
	ck_assert_ptr_nonnull(strstr(e.msg[0], "No such file"));
	ck_assert_int_eq(cfg->log_level, LOG_DEBUG);
	errs_free(&e);
	config_free(cfg);

	ck_assert_int_eq(load_file(&cfg, DATA "/no-such-file.conf", &e), 1);
	ck_assert_str_eq(e.msg[0], DATA "/no-such-file.conf: cannot open: "
					"No such file or directory");
	errs_free(&e);
	config_free(cfg);

	ck_assert_int_eq(load_file(&cfg, DATA, &e), 1);
	ck_assert_str_eq(e.msg[0], DATA ": cannot open: is a directory");
	errs_free(&e);
	config_free(cfg);

	EXPECT1("include /nonexistent/orchd/x.conf\n",
		"t.conf:1: include: cannot open \"/nonexistent/orchd/x.conf\"",
		"No such file");
	/* A glob that matches nothing is not an error. */
	EXPECT0("include /nonexistent/orchd/*.conf\n");
}
END_TEST

START_TEST(test_include_loop)
{
	struct config *cfg;
	struct errs e;

	ck_assert_int_eq(load_file(&cfg, DATA "/loop_a.conf", &e), 1);
	ck_assert_msg(has_prefix(e.msg[0], DATA "/loop_b.conf:2: include: "
						"include loop: "),
		      "%s", e.msg[0]);
	ck_assert_ptr_nonnull(strstr(e.msg[0], "loop_a.conf -> "));
	ck_assert_ptr_nonnull(strstr(e.msg[0], "loop_b.conf -> "));
	ck_assert_int_eq(cfg->workers, 2);
	errs_free(&e);
	config_free(cfg);

	ck_assert_int_eq(load_file(&cfg, DATA "/self.conf", &e), 1);
	ck_assert_msg(has_prefix(e.msg[0], DATA "/self.conf:2: include: "
						"include loop"),
		      "%s", e.msg[0]);
	errs_free(&e);
	config_free(cfg);
}
END_TEST

START_TEST(test_include_depth)
{
	char path[512], text[512], top[512];
	struct config *cfg;
	struct errs e;
	int levels = CONFIG_MAX_INCLUDE_DEPTH;

	/* d0 includes d1 ... includes d<levels>: exactly the limit. */
	for (int i = 0; i <= levels + 1; i++) {
		char name[32];

		snprintf(name, sizeof(name), "d%d.conf", i);
		snprintf(text, sizeof(text), "# level %d\ninclude d%d.conf\n",
			 i, i + 1);
		write_tmp(path, sizeof(path), name, text, strlen(text));
	}
	/* The deepest allowed file has no further include. */
	snprintf(text, sizeof(text), "d%d.conf", levels);
	write_tmp(path, sizeof(path), text, "workers 3\n", 10);
	snprintf(top, sizeof(top), "%s/d0.conf", tmpdir);
	ck_assert_int_eq(load_file(&cfg, top, &e), 0);
	ck_assert_int_eq(cfg->workers, 3);
	config_free(cfg);

	/* One level more is refused at the include line of the last file. */
	snprintf(text, sizeof(text), "d%d.conf", levels);
	write_tmp(path, sizeof(path), text, "include d99.conf\n", 17);
	snprintf(text, sizeof(text), "d99.conf");
	write_tmp(path, sizeof(path), text, "workers 3\n", 10);
	ck_assert_int_eq(load_file(&cfg, top, &e), 1);
	snprintf(text, sizeof(text), "%s/d%d.conf:1: include: ", tmpdir,
		 levels);
	ck_assert_msg(has_prefix(e.msg[0], text), "%s", e.msg[0]);
	ck_assert_ptr_nonnull(strstr(e.msg[0], "nested too deeply"));
	errs_free(&e);
	config_free(cfg);
}
END_TEST

START_TEST(test_duplicate_across_include)
{
	struct config *cfg;
	struct errs e;

	ck_assert_int_eq(load_file(&cfg, DATA "/dup_a.conf", &e), 1);
	ck_assert_str_eq(e.msg[0], DATA "/dup_b.conf:2: workers: duplicate "
					"directive (first given at " DATA
					"/dup_a.conf:1)");
	ck_assert_int_eq(cfg->workers, 2);
	errs_free(&e);
	config_free(cfg);
}
END_TEST

START_TEST(test_all_errors_reported)
{
	static const char *const want[] = {
		":2: unknown directive \"lisen\"",
		":3: workers: missing value",
		":4: workers: too many values",
		":5: max_connections: \"many\" is not a number",
		":6: max_connections_per_orchestrator: \"0\" is out of range",
		":7: heartbeat_interval: \"10x\" is not a duration",
		":8: listen: \"999.1.1.1:80\": ",
		":9: unterminated quoted string",
		":11: log_level: duplicate directive (first given at ",
	};
	struct config *cfg;
	struct errs e;
	int n = load_file(&cfg, DATA "/errors.conf", &e);

	ck_assert_int_eq(n, (int)UTIL_NELEM(want));
	ck_assert_int_eq(e.n, n);
	for (size_t i = 0; i < UTIL_NELEM(want); i++) {
		char prefix[512];

		snprintf(prefix, sizeof(prefix), "%s/errors.conf%s", DATA,
			 want[i]);
		ck_assert_msg(has_prefix(e.msg[i], prefix),
			      "got \"%s\", want \"%s\"", e.msg[i], prefix);
	}
	errs_free(&e);
	config_free(cfg);
}
END_TEST

/* Binary or runaway input: one error, then the file is dropped. */
START_TEST(test_not_a_config)
{
	char p[512], *big;
	struct config *cfg;
	struct errs e;
	size_t n = 70000;

	write_tmp(p, sizeof(p), "nul.conf", "workers 2\nuser\0x\nbogus\n", 23);
	ck_assert_int_eq(load_file(&cfg, p, &e), 1);
	ck_assert_ptr_nonnull(
		strstr(e.msg[0], "nul.conf:2: line contains a NUL"));
	ck_assert_int_eq(cfg->workers, 2);
	errs_free(&e);
	config_free(cfg);

	big = malloc(n + 32);
	memcpy(big, "workers 3\nws_path /", 19);
	memset(big + 19, 'a', n - 19);
	memcpy(big + n, "\nbogus\n", 8);
	write_tmp(p, sizeof(p), "long.conf", big, n + 7);
	ck_assert_int_eq(load_file(&cfg, p, &e), 1);
	ck_assert_msg(strstr(e.msg[0], "long.conf:2: line longer than 65536 "
				       "bytes") != NULL,
		      "%s", e.msg[0]);
	ck_assert_int_eq(cfg->workers, 3);
	errs_free(&e);
	config_free(cfg);
	free(big);

	EXPECT1("include /dev/null\n",
		"t.conf:1: include: cannot open \"/dev/null\": not a regular "
		"file",
		"");
	ck_assert_int_eq(load_file(&cfg, "/dev/null", &e), 1);
	ck_assert_str_eq(e.msg[0],
			 "/dev/null: cannot open: not a regular file");
	errs_free(&e);
	config_free(cfg);
}
END_TEST

/* A flood of errors stops at 100, plus one that says so. */
START_TEST(test_too_many_errors)
{
	char text[2048] = "";
	struct config *cfg;
	struct errs e;

	for (int i = 0; i < 150; i++)
		strcat(text, "bogus\n");
	ck_assert_int_eq(load_text(&cfg, text, &e), 101);
	ck_assert_int_eq(e.n, 101);
	ck_assert(has_prefix(e.msg[99], "t.conf:100: unknown directive"));
	ck_assert_str_eq(e.msg[100], "t.conf:101: too many errors (more than "
				     "100); giving up");
	errs_free(&e);
	config_free(cfg);
}
END_TEST

/* ---- environment --------------------------------------------------------- */

START_TEST(test_env)
{
	struct config *cfg;
	struct errs e;

	setenv("WS_HEARTBEAT_INTERVAL", "5000", 1);
	setenv("WS_AUTH_TIMEOUT", "2s", 1);
	setenv("WS_MAX_CONNECTIONS_PER_VP", "12", 1);
	setenv("WS_PATH", "/env/ws", 1);
	setenv("DAEMON_JWT_SECRET", "env-secret", 1);
	ck_assert_int_eq(load_text(&cfg, "heartbeat_interval 45s\n"
					 "ws_path /file/ws\n",
				   &e),
			 0);
	ck_assert_uint_eq(cfg->heartbeat_interval_ms, 5000);
	ck_assert_uint_eq(cfg->auth_timeout_ms, 2000);
	ck_assert_uint_eq(cfg->max_connections_per_orchestrator, 12);
	ck_assert_str_eq(cfg->ws_path, "/env/ws");
	ck_assert_str_eq(cfg->jwt_secret, "env-secret");
	ck_assert_uint_eq(cfg->jwt_secret_len, 10);
	ck_assert_int_eq(cfg->jwt_secret_from_env, 1);
	/* The env still applies to the re-parse, so the dump round-trips. */
	assert_round_trip(cfg);
	config_free(cfg);

	/* With a secret file too, the environment wins. */
	char p[512], text[600];
	write_tmp(p, sizeof(p), "sf", "file-secret\n", 12);
	snprintf(text, sizeof(text), "jwt_secret_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_str_eq(cfg->jwt_secret, "env-secret");
	ck_assert_str_eq(cfg->jwt_secret_file, p);
	config_free(cfg);

	for (size_t i = 0; i < UTIL_NELEM(env_names); i++)
		unsetenv(env_names[i]);
	ck_assert_int_eq(load_text(&cfg, "", &e), 0);
	ck_assert_uint_eq(cfg->heartbeat_interval_ms, 30000);
	ck_assert_ptr_null(cfg->jwt_secret);
	config_free(cfg);

	/* Set but empty counts as unset (as in the service orchd replaces). */
	for (size_t i = 0; i < UTIL_NELEM(env_names); i++)
		setenv(env_names[i], "", 1);
	ck_assert_int_eq(load_text(&cfg, "ws_path /f\n", &e), 0);
	ck_assert_str_eq(cfg->ws_path, "/f");
	ck_assert_uint_eq(cfg->auth_timeout_ms, 10000);
	ck_assert_ptr_null(cfg->jwt_secret);
	ck_assert_int_eq(cfg->jwt_secret_from_env, 0);
	config_free(cfg);
	for (size_t i = 0; i < UTIL_NELEM(env_names); i++)
		unsetenv(env_names[i]);
}
END_TEST

/* 4097 bytes: one too many for a secret. */
static const char *
big_secret(void)
{
	static char s[4098];

	memset(s, 'x', 4097);
	s[4097] = '\0';
	return s;
}

START_TEST(test_env_bad)
{
	static const struct {
		const char *name, *value, *msg;
	} cases[] = {
		{"WS_HEARTBEAT_INTERVAL", "999",
		 "environment: WS_HEARTBEAT_INTERVAL: \"999\" is out of range "
		 "(1s..1h)"},
		{"WS_AUTH_TIMEOUT", "abc",
		 "environment: WS_AUTH_TIMEOUT: \"abc\" is not a duration"},
		{"WS_AUTH_TIMEOUT", "11m",
		 "environment: WS_AUTH_TIMEOUT: \"11m\" is out of range"},
		{"WS_AUTH_TIMEOUT", " ", "environment: WS_AUTH_TIMEOUT: \" \""},
		{"WS_MAX_CONNECTIONS_PER_VP", "0",
		 "environment: WS_MAX_CONNECTIONS_PER_VP: \"0\" is out of "
		 "range (1..100000)"},
		{"WS_MAX_CONNECTIONS_PER_VP", "5 ",
		 "environment: WS_MAX_CONNECTIONS_PER_VP: \"5 \" is not a "
		 "number"},
		{"WS_PATH", "ws", "environment: WS_PATH: \"ws\" must start"},
		{"WS_PATH", "/a b", "environment: WS_PATH: \"/a b\" must not"},
		{"WS_PATH", "/a?b", "environment: WS_PATH: \"/a?b\" must not"},
	};
	struct config *cfg;
	struct errs e;

	for (size_t i = 0; i < UTIL_NELEM(cases); i++) {
		setenv(cases[i].name, cases[i].value, 1);
		ck_assert_int_eq(load_text(&cfg, "workers 2\n", &e), 1);
		ck_assert_msg(has_prefix(e.msg[0], cases[i].msg),
			      "got \"%s\", want \"%s\"", e.msg[0],
			      cases[i].msg);
		unsetenv(cases[i].name);
		errs_free(&e);
		config_free(cfg);
	}

	/* All at once, after a file error: all reported, file first. */
	for (size_t i = 0; i < 5; i++)
		setenv(cases[i].name, cases[i].value, 1);
	setenv("WS_PATH", "x", 1);
	setenv("DAEMON_JWT_SECRET", big_secret(), 1);
	ck_assert_int_eq(load_text(&cfg, "workers x\n", &e), 6);
	ck_assert(has_prefix(e.msg[0], "t.conf:1: workers:"));
	ck_assert(has_prefix(e.msg[1], "environment: WS_HEARTBEAT_INTERVAL:"));
	ck_assert(has_prefix(e.msg[2], "environment: WS_AUTH_TIMEOUT:"));
	ck_assert(has_prefix(e.msg[3],
			     "environment: WS_MAX_CONNECTIONS_PER_VP:"));
	ck_assert(has_prefix(e.msg[4], "environment: WS_PATH:"));
	ck_assert(has_prefix(e.msg[5], "environment: DAEMON_JWT_SECRET: longer "
				       "than 4096 bytes"));
	errs_free(&e);
	config_free(cfg);
	for (size_t i = 0; i < UTIL_NELEM(env_names); i++)
		unsetenv(env_names[i]);
}
END_TEST

/* ---- dump ---------------------------------------------------------------- */

START_TEST(test_dump_format)
{
	struct config *cfg = config_new();
	struct errs e;
	char *text = dump_text(cfg);
	char line[128];

	ck_assert_ptr_nonnull(strstr(text, "\nlisten 0.0.0.0:8080\n"));
	snprintf(line, sizeof(line), "\nworkers auto # %d\n", cfg->workers);
	ck_assert_ptr_nonnull(strstr(text, line));
	ck_assert_ptr_nonnull(strstr(text, "\nuser nobody\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n# group (not set)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\npidfile " ORCHD_RUNSTATEDIR
					   "/orchd.pid\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nlog syslog\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nlog_level info\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_path /daemon/ws\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nheartbeat_interval 30s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nauth_timeout 10s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndrain_timeout 10s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nmax_connections 100000\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "\nmax_connections_per_orchestrator 5\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nredis 127.0.0.1:6379\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n# jwt_secret_file (not set)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n# tls_certificate (not set)\n"));
	ck_assert_ptr_null(strstr(text, "include"));
	ck_assert_ptr_nonnull(strstr(text, "\n# ws_echo_path (not set)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nhttp_max_header_size 8k\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nhttp_max_body_size 1m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nhandshake_timeout 10s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nkeepalive_timeout 1m\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "\n# ws_allowed_origins (not set: any origin)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_max_message_size 1m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_ping_interval 30s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_pong_timeout 10s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_close_timeout 5s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_compression on\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_compression_level 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_compression_min_size 64\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nmax_send_queue 1m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n# database (not set)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n# database_file (not set)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndatabase_timeout 2s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndatabase_failure fail-closed\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndatabase_cache_ttl 1m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndatabase_connections 2\n"));
	assert_round_trip(cfg);
	free(text);
	config_free(cfg);

	/* Sizes in the largest exact unit, bytes bare; origins one a line. */
	ck_assert_int_eq(load_text(&cfg, "http_max_header_size 2048\n"
					 "http_max_body_size 1025\n"
					 "ws_max_message_size 1024k\n"
					 "ws_compression_min_size 0k\n"
					 "max_send_queue 1536k\n"
					 "ws_allowed_origins https://a.example "
					 "HTTP://B.example:8080\n"
					 "ws_echo_path /echo\n",
				   &e),
			 0);
	text = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(text, "\nhttp_max_header_size 2k\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nhttp_max_body_size 1025\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_max_message_size 1m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_compression_min_size 0\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nmax_send_queue 1536k\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "\nws_allowed_origins https://a.example\n"
			     "ws_allowed_origins http://b.example:8080\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nws_echo_path /echo\n"));
	assert_round_trip(cfg);
	free(text);
	config_free(cfg);

	/* Durations in the largest exact unit; explicit workers. */
	ck_assert_int_eq(load_text(&cfg, "workers 4\nheartbeat_interval 120s\n"
					 "auth_timeout 1500ms\n"
					 "drain_timeout 0\n"
					 "log stderr\n",
				   &e),
			 0);
	text = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(text, "\nworkers 4\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nheartbeat_interval 2m\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nauth_timeout 1500ms\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndrain_timeout 0s\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nlog stderr\n"));
	assert_round_trip(cfg);
	free(text);
	config_free(cfg);

	ck_assert_int_eq(load_text(&cfg, "heartbeat_interval 1h\n"
					 "drain_timeout 3600s\n"
					 "auth_timeout 10m\n",
				   &e),
			 0);
	text = dump_text(cfg);
	ck_assert_ptr_nonnull(strstr(text, "\nheartbeat_interval 1h\n"));
	ck_assert_ptr_nonnull(strstr(text, "\ndrain_timeout 1h\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nauth_timeout 10m\n"));
	free(text);
	config_free(cfg);
}
END_TEST

START_TEST(test_dump_round_trip)
{
	char text[2048];
	struct config *cfg;
	struct errs e;

	snprintf(text, sizeof(text),
		 "listen [2001:db8::1]:443\nlisten 192.168.1.1:80\n"
		 "workers auto\nuser root\n"
		 "log \"%s/my logs/orchd \\\"1\\\".log\"\nlog_level warn\n"
		 "redis [::1]:6390\ndrain_timeout 90s\n",
		 tmpdir);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	assert_round_trip(cfg);
	config_free(cfg);

	ck_assert_int_eq(load_text(&cfg, "redis /run/redis/redis.sock\n"
					 "log_level error\nauth_timeout 61s\n",
				   &e),
			 0);
	assert_round_trip(cfg);
	config_free(cfg);
}
END_TEST

START_TEST(test_dump_hides_secret)
{
	char p[512], text[600], *dump;
	struct config *cfg;
	struct errs e;

	write_tmp(p, sizeof(p), "hidden", "Zq9-file-secret-Xy7\n", 20);
	snprintf(text, sizeof(text), "jwt_secret_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	ck_assert_str_eq(cfg->jwt_secret, "Zq9-file-secret-Xy7");
	dump = dump_text(cfg);
	ck_assert_ptr_null(strstr(dump, "Zq9-file-secret-Xy7"));
	ck_assert_ptr_nonnull(strstr(dump, text));
	ck_assert_ptr_null(strstr(dump, "from environment"));
	assert_round_trip(cfg);
	free(dump);
	config_free(cfg);

	setenv("DAEMON_JWT_SECRET", "Kp4-env-secret-Wq2", 1);
	ck_assert_int_eq(load_text(&cfg, "", &e), 0);
	dump = dump_text(cfg);
	ck_assert_ptr_null(strstr(dump, "Kp4-env-secret-Wq2"));
	ck_assert_ptr_nonnull(
		strstr(dump, "\n# jwt secret: from environment "
			     "DAEMON_JWT_SECRET (hidden)\n"));
	assert_round_trip(cfg);
	free(dump);
	config_free(cfg);
	unsetenv("DAEMON_JWT_SECRET");

	/* The conninfo, inline or from its file, is never printed. */
	ck_assert_int_eq(load_text(&cfg,
				   "database postgresql://orchd:Pw-Qz81@"
				   "10.1.2.3/orchd\n",
				   &e),
			 0);
	dump = dump_text(cfg);
	ck_assert_ptr_null(strstr(dump, "Pw-Qz81"));
	ck_assert_ptr_null(strstr(dump, "10.1.2.3"));
	ck_assert_ptr_nonnull(
		strstr(dump, "\n# database (set; hidden: it may hold a "
			     "password)\n"));
	free(dump);
	config_free(cfg);
	write_tmp(p, sizeof(p), "dbhidden", "password=Pw-Qz82 dbname=o", 25);
	snprintf(text, sizeof(text), "database_file %s\n", p);
	ck_assert_int_eq(load_text(&cfg, text, &e), 0);
	dump = dump_text(cfg);
	ck_assert_ptr_null(strstr(dump, "Pw-Qz82"));
	ck_assert_ptr_nonnull(strstr(dump, text));
	ck_assert_ptr_nonnull(strstr(dump, "\n# database (not set)\n"));
	assert_round_trip(cfg);
	free(dump);
	config_free(cfg);
}
END_TEST

/* ---- the sample config and the man page -------------------------------- */

/* Replace the build-time placeholders the sample and man page may use. */
static void
subst(const char *in, char *out, size_t len)
{
	const char *at = strstr(in, "@runstatedir@");

	if (at == NULL)
		snprintf(out, len, "%s", in);
	else
		snprintf(out, len, "%.*s%s%s", (int)(at - in), in,
			 ORCHD_RUNSTATEDIR, at + strlen("@runstatedir@"));
}

START_TEST(test_sample_config)
{
	const char *path = TEST_SRCDIR "/../etc/orchd.conf.in";
	struct config_doc doc;
	struct config *cfg, *def;
	struct errs e;
	char *text;
	int n = load_file(&cfg, path, &e);

	ck_assert_msg(n == 0, "%d errors; first: %s", n,
		      e.n > 0 ? e.msg[0] : "");
	/* Everything in it is commented out or equal to the default. */
	def = config_new();
	assert_same(cfg, def);
	config_free(def);
	config_free(cfg);

	/* Each directive is shown with its default: "#name default". */
	text = slurp(path);
	for (size_t i = 0; config_directive_doc(i, &doc) == 0; i++) {
		char want[256], line[256];
		int found = 0;

		if (doc.def != NULL)
			snprintf(want, sizeof(want), "#%s %s\n", doc.name,
				 doc.def);
		else
			snprintf(want, sizeof(want), "#%s ", doc.name);
		for (char *p = text; p != NULL && !found;
		     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
			size_t l = strcspn(p, "\n");

			if (l >= sizeof(line) - 1)
				continue;
			memcpy(line, p, l);
			line[l] = '\n';
			line[l + 1] = '\0';
			char sub[256];
			subst(line, sub, sizeof(sub));
			/* Commented out, or set to the default itself. */
			found = has_prefix(sub, want) ||
				has_prefix(sub, want + 1);
		}
		ck_assert_msg(found, "sample lacks a line \"%s\"", want);
	}
	free(text);
}
END_TEST

START_TEST(test_man_page)
{
	char *text = slurp(TEST_SRCDIR "/../man/orchd.conf.5.in");
	struct config_doc doc;

	/* Each directive has a ".TP" entry that states its default. */
	for (size_t i = 0; config_directive_doc(i, &doc) == 0; i++) {
		char head[128], want[300], *p, *end;

		snprintf(head, sizeof(head), "\n.TP\n\\fB%s\\fP", doc.name);
		p = strstr(text, head);
		ck_assert_msg(p != NULL, "man page lacks directive %s",
			      doc.name);
		if (doc.def == NULL)
			continue;
		end = strstr(p + 1, "\n.TP\n");
		if (end == NULL)
			end = strstr(p + 1, "\n.SH");
		ck_assert_ptr_nonnull(end);
		/* In roff: \fB, \% (no hyphenation), the default, \fP. */
		snprintf(want, sizeof(want), "Default: \\fB\\%%%s\\fP",
			 strcmp(doc.name, "pidfile") == 0
				 ? "@runstatedir@/orchd.pid"
				 : doc.def);
		*end = '\0';
		ck_assert_msg(strstr(p, want) != NULL,
			      "man page entry of %s lacks \"%s\"", doc.name,
			      want);
		*end = '\n';
	}
	free(text);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("values");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_directive_doc);
	tcase_add_test(tc, test_every_directive);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_duration_parse);
	tcase_add_test(tc, test_listen_parse);
	tcase_add_test(tc, test_size_parse);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_unknown_directive);
	tcase_add_test(tc, test_missing_value);
	tcase_add_test(tc, test_too_many_values);
	tcase_add_test(tc, test_bad_number);
	tcase_add_test(tc, test_out_of_range);
	tcase_add_test(tc, test_bad_duration);
	tcase_add_test(tc, test_bad_address);
	tcase_add_test(tc, test_listen_rules);
	tcase_add_test(tc, test_unterminated_quote);
	tcase_add_test(tc, test_duplicate);
	tcase_add_test(tc, test_strings);
	tcase_add_test(tc, test_jwt_secret_file);
	tcase_add_test(tc, test_database);
	tcase_add_test(tc, test_tls_cross_check);
	tcase_add_test(tc, test_all_errors_reported);
	tcase_add_test(tc, test_not_a_config);
	tcase_add_test(tc, test_too_many_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("transport");
	tcase_add_test(tc, test_size_directives);
	tcase_add_test(tc, test_transport_durations);
	tcase_add_test(tc, test_compression);
	tcase_add_test(tc, test_origins);
	tcase_add_test(tc, test_origin_allowed);
	tcase_add_test(tc, test_echo_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("include");
	tcase_add_test(tc, test_include);
	tcase_add_test(tc, test_include_missing);
	tcase_add_test(tc, test_include_loop);
	tcase_add_test(tc, test_include_depth);
	tcase_add_test(tc, test_duplicate_across_include);
	suite_add_tcase(s, tc);

	tc = tcase_create("environment");
	tcase_add_test(tc, test_env);
	tcase_add_test(tc, test_env_bad);
	suite_add_tcase(s, tc);

	tc = tcase_create("dump");
	tcase_add_test(tc, test_dump_format);
	tcase_add_test(tc, test_dump_round_trip);
	tcase_add_test(tc, test_dump_hides_secret);
	suite_add_tcase(s, tc);

	tc = tcase_create("docs");
	tcase_add_test(tc, test_sample_config);
	tcase_add_test(tc, test_man_page);
	suite_add_tcase(s, tc);

	add_protocol_tests(s);
	add_admin_tests(s);
	return s;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int
main(void)
{
	SRunner *sr;
	int failed;

	/* The developer's own environment must not leak into the tests. */
	for (size_t i = 0; i < UTIL_NELEM(env_names); i++)
		unsetenv(env_names[i]);
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	sr = srunner_create(config_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? 1 : 0;
}
