/*
 * config_core: the handlers of the core directives whose values need more
 * than the generic types of the directive table (src/config.c): workers,
 * user and group, log, listen, redis, the WebSocket paths and origins, and
 * how -T prints the ones whose stored value is not what was written.
 */
#include "config.h"

#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/log.h"
#include "orchd/util.h"

#define WS_PATH_MAX 255
#define HEALTHZ_PATH "/healthz" /* served by the workers themselves */

/* ---- directive handlers ----------------------------------------------- */

int
cfgc_check_user(struct pctx *c, const struct directive *d, const char *v)
{
	if (c->defaults || getpwnam(v) != NULL)
		return 0;
	cfgp_derr(c, d, "no such user %s", cfgp_show(c, v));
	return -1;
}

int
cfgc_check_group(struct pctx *c, const struct directive *d, const char *v)
{
	if (c->defaults || getgrnam(v) != NULL)
		return 0;
	cfgp_derr(c, d, "no such group %s", cfgp_show(c, v));
	return -1;
}

/*
 * ws_path, ws_echo_path: compared with the decoded request path, so no
 * query, no fragment, no blank, no escape; and not the workers' own health
 * check.
 */
int
cfgc_check_ws_path(struct pctx *c, const struct directive *d, const char *v)
{
	if (v[0] != '/') {
		cfgp_derr(c, d, "%s must start with \"/\"", cfgp_show(c, v));
		return -1;
	}
	if (strlen(v) > WS_PATH_MAX) {
		cfgp_derr(c, d, "%s is longer than %d characters",
			  cfgp_show(c, v), WS_PATH_MAX);
		return -1;
	}
	for (const char *p = v; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' ||
		    *p == '#') {
			cfgp_derr(c, d,
				  "%s must not contain spaces, control "
				  "characters, \"?\" or \"#\"",
				  cfgp_show(c, v));
			return -1;
		}
	}
	/* The workers route on the percent-decoded path. */
	if (strchr(v, '%') != NULL) {
		cfgp_derr(c, d,
			  "%s must not contain \"%%\" (requests are matched "
			  "once decoded: write the character itself)",
			  cfgp_show(c, v));
		return -1;
	}
	if (strcmp(v, HEALTHZ_PATH) == 0) {
		cfgp_derr(c, d, "%s is reserved for the health check",
			  cfgp_show(c, v));
		return -1;
	}
	return 0;
}

void
cfgc_set_workers(struct pctx *c, const struct directive *d, char **argv,
		 int argc)
{
	struct config *cfg = c->cfg;
	uint64_t v;
	int r;

	(void)argc;
	if (strcmp(argv[0], "auto") == 0) {
		int n = util_ncpu();

		if (n < (int)d->min)
			n = (int)d->min;
		if (n > (int)d->max)
			n = (int)d->max;
		cfg->workers = n;
		cfg->workers_auto = 1;
		return;
	}
	if ((r = cfgv_parse_u64(argv[0], &v)) == -1) {
		cfgp_derr(c, d, "%s is not a number or \"auto\"",
			  cfgp_show(c, argv[0]));
		return;
	}
	if (r == -2 || v < d->min || v > d->max) {
		cfgp_derr(c, d,
			  "%s is out of range (%" PRIu64 "..%" PRIu64
			  ", or \"auto\")",
			  cfgp_show(c, argv[0]), d->min, d->max);
		return;
	}
	cfg->workers = (int)v;
	cfg->workers_auto = 0;
}

void
cfgc_set_log(struct pctx *c, const struct directive *d, char **argv, int argc)
{
	struct config *cfg = c->cfg;
	const char *v = argv[0];

	(void)argc;
	if (strcmp(v, "syslog") == 0) {
		cfg->log_target = CONFIG_LOG_SYSLOG;
	} else if (strcmp(v, "stderr") == 0) {
		cfg->log_target = CONFIG_LOG_STDERR;
	} else if (v[0] == '/') {
		cfg->log_target = CONFIG_LOG_FILE;
	} else {
		cfgp_derr(c, d,
			  "%s is not syslog, stderr or an absolute file path",
			  cfgp_show(c, v));
		return;
	}
	UTIL_FREE(cfg->log_file);
	if (cfg->log_target == CONFIG_LOG_FILE)
		cfg->log_file = util_strdup(v);
}

void
cfgc_add_listen(struct pctx *c, const struct directive *d, char **argv,
		int argc)
{
	struct config *cfg = c->cfg;
	struct config_listen l;
	const char *why;

	if ((why = cfgv_listen(argv[0], &l)) != NULL) {
		cfgp_derr(c, d,
			  "%s: %s (expected ADDR:PORT, e.g. 0.0.0.0:8080, "
			  "[::1]:8080 or *:8080)",
			  cfgp_show(c, argv[0]), why);
		return;
	}
	for (int i = 1; i < argc; i++) {
		int *flag = strcmp(argv[i], "tls") == 0     ? &l.tls
			    : strcmp(argv[i], "admin") == 0 ? &l.admin
							    : NULL;

		if (flag == NULL) {
			cfgp_derr(
			    c, d,
			    "unknown option %s (\"tls\" and \"admin\" are "
			    "allowed)",
			    cfgp_show(c, argv[i]));
			return;
		}
		if (*flag) {
			cfgp_derr(c, d, "option %s given twice", argv[i]);
			return;
		}
		*flag = 1;
	}
	for (int i = 0; i < cfg->nlisten; i++) {
		if (strcmp(cfg->listen[i].text, l.text) != 0)
			continue;
		cfgp_derr(c, d, "duplicate address %s (first given at %s:%d)",
			  l.text, c->listen_at[i].file, c->listen_at[i].line);
		return;
	}
	if (cfg->nlisten == CONFIG_MAX_LISTEN) {
		cfgp_derr(c, d, "too many addresses (at most %d)",
			  CONFIG_MAX_LISTEN);
		return;
	}
	c->listen_at[cfg->nlisten].file = c->file;
	c->listen_at[cfg->nlisten].line = c->line;
	cfg->listen[cfg->nlisten++] = l;
}

/*
 * redis ADDRESS, or redis sentinel HOST:PORT... master NAME.  The text is
 * kept as written (all the words) for -T.
 */
void
cfgc_set_redis(struct pctx *c, const struct directive *d, char **argv, int argc)
{
	struct config *cfg = c->cfg;
	struct config_redis r;
	const char *why;
	char text[CFGV_LINE_MAX];
	size_t off = 0;

	memset(&r, 0, sizeof(r));
	if (strcmp(argv[0], "sentinel") == 0) {
		int n = argc - 1;

		if (n < 3 || strcmp(argv[n - 1], "master") != 0) {
			cfgp_derr(c, d,
				  "expected sentinel HOST:PORT... master NAME");
			return;
		}
		if (n - 2 > CONFIG_MAX_SENTINELS) {
			cfgp_derr(c, d, "at most %d sentinels",
				  CONFIG_MAX_SENTINELS);
			return;
		}
		if (n - 2 < 1) {
			cfgp_derr(c, d,
				  "sentinel needs at least one HOST:PORT");
			return;
		}
		for (int i = 1; i < n - 1; i++) {
			struct config_redis one;

			if ((why = cfgv_redis(argv[i], &one)) != NULL ||
			    one.unix_path != NULL) {
				cfgp_derr(c, d, "sentinel %s: %s",
					  cfgp_show(c, argv[i]),
					  why != NULL ? why
						      : "a sentinel is "
							"HOST:PORT");
				free(one.unix_path);
				free(one.host);
				return;
			}
			util_strlcpy(r.sentinels[r.nsentinels].host, one.host,
				     sizeof(r.sentinels[0].host));
			r.sentinels[r.nsentinels++].port = one.port;
			free(one.host);
		}
		if (strlen(argv[n]) >= sizeof(r.master) || argv[n][0] == '\0') {
			cfgp_derr(c, d, "master name %s: 1..%zu bytes",
				  cfgp_show(c, argv[n]), sizeof(r.master) - 1);
			return;
		}
		util_strlcpy(r.master, argv[n], sizeof(r.master));
	} else if (argc > 1) {
		cfgp_derr(c, d, "too many values (syntax: %s %s)", d->name,
			  d->syntax);
		return;
	} else if ((why = cfgv_redis(argv[0], &r)) != NULL) {
		cfgp_derr(c, d,
			  "%s: %s (expected HOST:PORT, [IPv6]:PORT, "
			  "unix:/path or /path)",
			  cfgp_show(c, argv[0]), why);
		return;
	}
	text[0] = '\0';
	for (int i = 0; i < argc && off < sizeof(text); i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s%s",
					i > 0 ? " " : "", argv[i]);
	free(cfg->redis.unix_path);
	free(cfg->redis.host);
	cfg->redis = r;
	free(cfg->redis_text);
	cfg->redis_text = util_strdup(text);
}

/* ws_allowed_origins: each value adds one origin, normalized. */
void
cfgc_add_origins(struct pctx *c, const struct directive *d, char **argv,
		 int argc)
{
	struct config *cfg = c->cfg;
	char norm[CONFIG_ORIGIN_MAX];
	const char *why;

	for (int i = 0; i < argc; i++) {
		size_t j, n = cfg->nws_allowed_origins;

		if ((why = cfgv_origin(argv[i], norm)) != NULL) {
			cfgp_derr(c, d, "%s: %s", cfgp_show(c, argv[i]), why);
			continue;
		}
		for (j = 0; j < n; j++)
			if (strcmp(cfg->ws_allowed_origins[j], norm) == 0)
				break;
		if (j < n) {
			cfgp_derr(c, d,
				  "duplicate origin %s (first given at %s:%d)",
				  cfgp_show(c, norm), c->origin_at[j].file,
				  c->origin_at[j].line);
			continue;
		}
		if (n == CONFIG_MAX_ORIGINS) {
			cfgp_derr(c, d, "too many origins (at most %d)",
				  CONFIG_MAX_ORIGINS);
			return;
		}
		cfg->ws_allowed_origins =
		    util_realloc(cfg->ws_allowed_origins,
				 (n + 1) * sizeof(*cfg->ws_allowed_origins));
		cfg->ws_allowed_origins[n] = util_strdup(norm);
		c->origin_at[n].file = c->file;
		c->origin_at[n].line = c->line;
		cfg->nws_allowed_origins = n + 1;
	}
}

/* ---- dump helpers -------------------------------------------------------- */

void
cfgc_dump_workers(const struct directive *d, const struct config *cfg, FILE *fp)
{
	if (cfg->workers_auto)
		fprintf(fp, "%s auto # %d\n", d->name, cfg->workers);
	else
		fprintf(fp, "%s %d\n", d->name, cfg->workers);
}

void
cfgc_dump_log(const struct directive *d, const struct config *cfg, FILE *fp)
{
	fprintf(fp, "%s ", d->name);
	if (cfg->log_target == CONFIG_LOG_FILE && cfg->log_file != NULL)
		cfgv_dump_word(fp, cfg->log_file);
	else
		fputs(cfg->log_target == CONFIG_LOG_STDERR ? "stderr"
							   : "syslog",
		      fp);
	fputc('\n', fp);
}

/* 0 stands for rate_limit_messages: the comment says what that is now. */
void
cfgc_dump_burst(const struct directive *d, const struct config *cfg, FILE *fp)
{
	fprintf(fp, "%s %u", d->name, cfg->rate_limit_burst);
	if (cfg->rate_limit_burst == 0)
		fprintf(fp, " # %u (rate_limit_messages)",
			config_rate_limit_burst(cfg));
	fputc('\n', fp);
}

/* 0 stands for 3 x heartbeat_interval: the comment says what that is now. */
void
cfgc_dump_session_ttl(const struct directive *d, const struct config *cfg,
		      FILE *fp)
{
	char buf[32];

	cfgv_fmt_duration(cfg->session_ttl_ms, buf, sizeof(buf));
	fprintf(fp, "%s %s", d->name, buf);
	if (cfg->session_ttl_ms == 0) {
		cfgv_fmt_duration(config_session_ttl_ms(cfg), buf, sizeof(buf));
		fprintf(fp, " # %s (3 x heartbeat_interval)", buf);
	}
	fputc('\n', fp);
}

/* One origin a line: any number of them reads back the same. */
void
cfgc_dump_origins(const struct directive *d, const struct config *cfg, FILE *fp)
{
	if (cfg->nws_allowed_origins == 0)
		fprintf(fp, "# %s (not set: any origin)\n", d->name);
	for (size_t i = 0; i < cfg->nws_allowed_origins; i++)
		fprintf(fp, "%s %s\n", d->name, cfg->ws_allowed_origins[i]);
}
