/*
 * config: the orchd.conf(5) parser.
 *
 * A config is parsed whole into a fresh struct config; the caller swaps it in
 * only when config_load() reported no error, which is what makes HUP reload
 * transactional.  Every error is reported through the caller's callback as
 * "file:line: message" (or "environment: NAME: message"), all of them, not
 * just the first.
 */
#ifndef ORCHD_CONFIG_H
#define ORCHD_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_WORKERS 64
#define CONFIG_MAX_INCLUDE_DEPTH 8
#define CONFIG_MAX_ORIGINS 256 /* ws_allowed_origins entries in all */
#define CONFIG_ORIGIN_MAX 320  /* bytes of a normalized origin, NUL included */
#define CONFIG_MAX_JWT_KEYS 32 /* jwt_public_key directives */
#define CONFIG_KID_MAX 127     /* bytes of a jwt_public_key key id */
#define CONFIG_MAX_SCOPES 32   /* required_scopes in all (as in a token) */
#define CONFIG_SCOPE_MAX 64    /* bytes of a scope */
#define CONFIG_CLAIM_MAX 255   /* bytes of jwt_issuer, jwt_audience */
#define CONFIG_MAX_ADMIN_ALLOW 64 /* admin_allow entries in all */
#define CONFIG_ADMIN_TOKEN_MIN 16 /* bytes of the admin_token_file token */
#define CONFIG_ADMIN_TOKEN_MAX 4096

enum config_log_target {
	CONFIG_LOG_SYSLOG = 0,
	CONFIG_LOG_STDERR,
	CONFIG_LOG_FILE,
};

/* revocation_check: what a Redis outage does to the revoked-jti check. */
enum config_revocation {
	CONFIG_REVOCATION_STRICT = 0, /* auth fails with UNAVAILABLE */
	CONFIG_REVOCATION_BEST_EFFORT, /* auth proceeds unchecked */
	CONFIG_REVOCATION_OFF,         /* never checked */
};

/* database_failure: what a PostgreSQL outage does to directory look-ups. */
enum config_db_failure {
	CONFIG_DB_FAIL_CLOSED = 0, /* the look-up fails: auth gets UNAVAILABLE */
	CONFIG_DB_CACHED,          /* the last answer is used, if there is one */
};

#define CONFIG_CONNINFO_MAX 4096      /* bytes of a PostgreSQL conninfo */
#define CONFIG_DB_MAX_CONNECTIONS 16 /* database_connections, per worker */

struct config_listen {
	struct sockaddr_storage addr; /* AF_INET or AF_INET6, port set */
	socklen_t addrlen;
	int tls;                      /* "tls" flag on the directive */
	int admin; /* "admin" flag: its clients may read /metrics, /stats */
	char text[80];                /* as written back by -T: "[::1]:8080" */
};

#define CONFIG_MAX_SENTINELS 8
#define CONFIG_SENTINEL_HOST_MAX 256
#define CONFIG_SENTINEL_MASTER_MAX 128

/* An admin_allow entry: an address and a prefix length. */
struct config_cidr {
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network order; IPv4 in the first 4 bytes */
	unsigned prefix;  /* 0..32 or 0..128 */
	char text[64];    /* as written back by -T: "10.0.0.0/8", "::1" */
};

struct config_sentinel {
	char host[CONFIG_SENTINEL_HOST_MAX]; /* name, IPv4 or IPv6 (no []) */
	int port;
};

struct config_redis {
	char *unix_path; /* non-NULL: unix socket; else host/port */
	char *host;
	int port;
	/*
	 * "redis sentinel HOST:PORT... master NAME": host/port are unset and
	 * the master's address is asked of the sentinels at every connect.
	 */
	int nsentinels; /* 0: no Sentinel */
	struct config_sentinel sentinels[CONFIG_MAX_SENTINELS];
	char master[CONFIG_SENTINEL_MASTER_MAX];
};

struct config {
	char *path; /* the file this config was loaded from */

	struct config_listen listen[CONFIG_MAX_LISTEN];
	int nlisten;

	int workers;      /* resolved count, 1..CONFIG_MAX_WORKERS */
	int workers_auto; /* "workers auto" was given (or defaulted) */

	char *user;  /* NULL: keep the invoking user */
	char *group; /* NULL: the user's primary group */
	char *pidfile;

	enum config_log_target log_target;
	char *log_file; /* with CONFIG_LOG_FILE */
	int log_level;  /* LOG_ERR..LOG_DEBUG from <syslog.h> */

	char *ws_path;
	char *ws_echo_path; /* NULL: no echo endpoint */
	uint64_t heartbeat_interval_ms;
	uint64_t auth_timeout_ms;
	uint64_t drain_timeout_ms;
	unsigned max_connections;
	unsigned max_connections_per_orchestrator;

	/* HTTP (the request that precedes the upgrade, and /healthz). */
	uint64_t http_max_header_size; /* bytes: request line + headers */
	uint64_t http_max_body_size;   /* bytes of Content-Length */
	uint64_t handshake_timeout_ms; /* TLS handshake + request head */
	uint64_t keepalive_timeout_ms; /* 0: no keep-alive */

	/* WebSocket. */
	/*
	 * Normalized origins (lower case, no default port; see
	 * config_origin_allowed()), or "*".  None: any origin is accepted.
	 */
	char **ws_allowed_origins;
	size_t nws_allowed_origins;
	uint64_t ws_max_message_size; /* bytes, reassembled and inflated */
	uint64_t ws_ping_interval_ms;  /* 0: never ping */
	uint64_t ws_pong_timeout_ms;
	uint64_t ws_close_timeout_ms;
	int ws_compression;            /* negotiate permessage-deflate */
	unsigned ws_compression_level; /* zlib level 1..9 */
	uint64_t ws_compression_min_size; /* bytes; smaller: sent plain */
	uint64_t max_send_queue;          /* bytes queued per connection */

	char *redis_text; /* as written in the file */
	struct config_redis redis;

	char *jwt_secret_file;
	char *jwt_secret; /* loaded secret bytes (NUL-terminated); never logged */
	size_t jwt_secret_len;
	int jwt_secret_from_env;

	/*
	 * Access tokens (PROTOCOL.md section 8).  No secret and no public key
	 * is a valid config: every auth then fails with UNAVAILABLE.
	 */
	char **jwt_public_keys;     /* absolute paths of PEM public keys */
	char **jwt_public_key_kids; /* kid of each; NULL: none (one at most) */
	size_t njwt_public_keys;    /* 0..CONFIG_MAX_JWT_KEYS */
	char *jwt_issuer;           /* expected iss; NULL: not checked */
	char *jwt_audience;         /* expected aud; NULL: not checked */
	uint64_t jwt_leeway_ms;     /* a whole number of seconds */
	/* Tokens issued by POST /api/daemon/auth (whole seconds). */
	uint64_t token_lifetime_ms;
	uint64_t refresh_token_lifetime_ms;
	char **required_scopes;     /* a token must carry each to connect */
	size_t nrequired_scopes;    /* 0..CONFIG_MAX_SCOPES */
	int revocation_check;       /* enum config_revocation */

	/* Limits on clients. */
	unsigned rate_limit_messages; /* messages per minute per connection */
	unsigned rate_limit_burst;    /* 0: see config_rate_limit_burst() */
	uint64_t rate_limit_grace_ms; /* over the rate this long: close 4004 */
	unsigned connection_rate_per_address; /* per second; 0: unlimited */
	/* Failed token-endpoint attempts per window per key and per address
	 * (authlimit.h); 0: no limit. */
	unsigned auth_failure_limit;
	uint64_t auth_failure_window_ms;

	/*
	 * Who may read /metrics, /stats and /status: a peer in admin_allow
	 * (none: the list is empty), a client of a "listen ... admin"
	 * listener, or a request with "Authorization: Bearer <admin_token>".
	 */
	struct config_cidr *admin_allow;
	size_t nadmin_allow;
	int admin_allow_set; /* the file gave admin_allow: defaults replaced */
	char *admin_token_file;
	char *admin_token; /* loaded bytes (NUL-terminated); never printed */
	size_t admin_token_len;

	/* Redis. */
	uint64_t redis_timeout_ms; /* no reply in time: Redis is unavailable */
	uint64_t session_ttl_ms;   /* 0: see config_session_ttl_ms() */

	/* Event pipeline. */
	int event_stream;               /* also read the stream daemon:stream */
	char *event_stream_key;         /* the stream's key */
	uint64_t max_event_size;        /* bytes of one event record */
	unsigned queue_max_events;      /* per orchestrator; oldest evicted */
	uint64_t queue_retention_ms;    /* whole seconds */
	uint64_t relay_canary_interval_ms; /* 0: no canary */
	uint64_t relay_pipe_queue;      /* bytes queued per worker pipe */
	uint64_t drain_reconnect_delay_ms; /* reconnect.delay spread */
	char *admin_socket;                /* admin unix socket; NULL: none */
	unsigned admin_socket_mode;        /* its file mode, default 0600 */

	char *tls_certificate;
	char *tls_certificate_key;

	/*
	 * The PostgreSQL directory: off while database_conninfo is NULL.  The
	 * conninfo comes from "database" or from the file "database_file"
	 * names (never both); it may hold a password, so it is never logged
	 * nor printed by -T, and it is wiped when the config is freed.
	 */
	char *database_conninfo;
	char *database_file;
	uint64_t database_timeout_ms;   /* a look-up, a connect, a prepare */
	int database_failure;           /* enum config_db_failure */
	uint64_t database_cache_ttl_ms; /* an orchestrator's look-up; 0: none */
	unsigned database_connections;  /* per worker, 1..16 */
};

/* Receives one error message, without a trailing newline. */
typedef void (*config_error_fn)(void *arg, const char *msg);

/* A config holding every directive's default. */
struct config *config_new(void);
void config_free(struct config *cfg);

/*
 * Parse path (and its includes) into cfg, then apply the environment
 * overrides (DAEMON_JWT_SECRET, WS_HEARTBEAT_INTERVAL, WS_AUTH_TIMEOUT,
 * WS_MAX_CONNECTIONS_PER_VP, WS_PATH) and the cross-directive checks.
 * Returns the number of errors reported through errfn (0 = valid).
 */
int config_load(struct config *cfg, const char *path, config_error_fn errfn,
		void *arg);

/* Same, from an in-memory text named "name" in messages (for tests). */
int config_load_string(struct config *cfg, const char *name, const char *text,
		       config_error_fn errfn, void *arg);

/* Print the effective config in orchd.conf syntax; secrets are elided. */
void config_dump(const struct config *cfg, FILE *fp);

/*
 * Parse helpers, exposed for other modules and unit tests.
 *
 * config_parse_duration_ms: "250ms", "30s", "5m", "1h", "2d" or a bare
 * integer (seconds); 0 ok, -1 malformed, -2 overflows 64 bits.
 * config_parse_size: "512", "512b", "8k", "1m", "2g" (powers of 1024; K, M,
 * G and B are accepted too); 0 ok, -1 malformed, -2 overflows 64 bits.
 * config_parse_listen: "ADDR:PORT" only (the "tls" word is the directive's
 * business, out->tls is 0); 0 ok, -1 error.
 * config_log_level_name: LOG_ERR.."error" .. LOG_DEBUG.."debug".
 */
int config_parse_duration_ms(const char *s, uint64_t *out);
int config_parse_size(const char *s, uint64_t *out);
int config_parse_listen(const char *s, struct config_listen *out);
const char *config_log_level_name(int level);

/*
 * May a WebSocket upgrade carrying this Origin header value (origin[0..len),
 * need not be NUL-terminated) go on?  1: yes; 0: answer 403.  Yes when
 * ws_allowed_origins is unset or holds "*", when origin is NULL (no Origin
 * header: not a browser), or when the value, normalized like the list
 * (scheme and host in lower case, no default port), is in the list.  A
 * malformed value and "null" match nothing.
 */
int config_origin_allowed(const struct config *cfg, const char *origin,
			  size_t len);

/*
 * Is peer (AF_INET or AF_INET6; an IPv4-mapped IPv6 address matches the
 * IPv4 entries) in admin_allow?  1 yes, 0 no.
 */
int config_admin_allowed(const struct config *cfg, const struct sockaddr *peer);
/*
 * Does the bearer token tok[0..len) equal admin_token?  Constant time in
 * the token's length; 0 when no admin_token_file is set.
 */
int config_admin_token_ok(const struct config *cfg, const char *tok,
			  size_t len);
/* "ADDR[/PREFIX]" into *out: NULL, or why it is not valid. */
const char *config_parse_cidr(const char *s, struct config_cidr *out);

/* The token bucket size: rate_limit_burst, or rate_limit_messages if 0. */
unsigned config_rate_limit_burst(const struct config *cfg);

/* TTL of session keys: session_ttl, or 3 x heartbeat_interval if 0. */
uint64_t config_session_ttl_ms(const struct config *cfg);

/* One entry of the directive table, for documentation checks and help. */
struct config_doc {
	const char *name;
	const char *syntax; /* the values, e.g. "N|auto" */
	const char *def;    /* the default as text; NULL: unset */
	const char *help;   /* one line */
	int repeatable;
};

/* Fill *doc with the i-th directive (from 0); returns -1 past the last. */
int config_directive_doc(size_t i, struct config_doc *doc);

#endif
