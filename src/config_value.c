/*
 * config_value: the context-free half of the orchd.conf(5) parser -- lines
 * and words, and the values: numbers, durations, sizes, listen and redis
 * addresses, origins, with their text forms for "orchd -T".
 *
 * Everything here is a pure function of its text: no parse context, no
 * directive table, no error reporting (src/config.c does that, quoting the
 * text and the reason returned here).  See src/config_int.h.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/util.h"

/* ---- lines and words ---------------------------------------------------- */

ssize_t
cfgv_getline(struct cfgv_src *s, char *buf)
{
	size_t n = 0;
	int ch, any = 0;

	for (;;) {
		if (s->fp != NULL)
			ch = getc(s->fp);
		else
			ch = *s->text != '\0' ? (unsigned char)*s->text++ : EOF;
		if (ch == EOF && !any)
			return -1;
		any = 1;
		if (ch == EOF || ch == '\n')
			break;
		if (n == CFGV_LINE_MAX)
			return -2;
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	return (ssize_t)n;
}

int
cfgv_tokenize(const char *line, char *buf, char **argv)
{
	const char *p = line;
	char *o = buf;
	int argc = 0;

	for (;;) {
		char *start;

		while (*p != '\0' && strchr(" \t\r\n\f\v", *p) != NULL)
			p++;
		if (*p == '\0' || *p == '#')
			break;
		start = o;
		while (*p != '\0' && *p != '#' &&
		       strchr(" \t\r\n\f\v", *p) == NULL) {
			if (*p != '"') {
				*o++ = *p++;
				continue;
			}
			for (p++; *p != '"'; p++) {
				if (*p == '\0')
					return -1;
				if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
					p++;
				*o++ = *p;
			}
			p++;
		}
		*o++ = '\0';
		if (argc < CFGV_MAX_ARGS)
			argv[argc] = start;
		argc++;
	}
	return argc;
}

void
cfgv_dump_word(FILE *fp, const char *v)
{
	if (*v != '\0' && strpbrk(v, " \t\r\n\f\v#\"") == NULL) {
		fputs(v, fp);
		return;
	}
	fputc('"', fp);
	for (; *v != '\0'; v++) {
		if (*v == '"' || *v == '\\')
			fputc('\\', fp);
		fputc(*v, fp);
	}
	fputc('"', fp);
}

size_t
cfgv_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[65];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best;

			best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

/* ---- numbers, durations, sizes ------------------------------------------ */

int
cfgv_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int overflow = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		unsigned dgt;

		if (*s < '0' || *s > '9')
			return -1;
		dgt = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - dgt) / 10)
			overflow = 1;
		else
			v = v * 10 + dgt;
	}
	if (overflow)
		return -2;
	*out = v;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mult;
};

/* Largest first, for cfgv_fmt_duration(); "" is a bare number: seconds. */
static const struct unit time_units[] = {
	{"d", CFG_MS_DAY}, {"h", CFG_MS_HOUR}, {"m", CFG_MS_MINUTE},
	{"s", CFG_MS_SECOND}, {"ms", 1}, {"", CFG_MS_SECOND},
};

/* The first four, largest first, are the ones cfgv_fmt_size() writes. */
static const struct unit size_units[] = {
	{"g", CFG_GIB}, {"m", CFG_MIB}, {"k", CFG_KIB}, {"", 1},
	{"G", CFG_GIB}, {"M", CFG_MIB}, {"K", CFG_KIB}, {"b", 1}, {"B", 1},
};

/*
 * Digits, then one of units[] (exactly, nothing after it): 0 ok, -1
 * malformed, -2 overflows 64 bits.
 */
static int
parse_with_unit(const char *s, const struct unit *units, size_t nunits,
		uint64_t *out)
{
	uint64_t v = 0;
	int overflow = 0;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned dgt = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - dgt) / 10)
			overflow = 1;
		else
			v = v * 10 + dgt;
	}
	for (size_t i = 0; i < nunits; i++) {
		if (strcmp(s, units[i].name) != 0)
			continue;
		if (overflow || v > UINT64_MAX / units[i].mult)
			return -2;
		*out = v * units[i].mult;
		return 0;
	}
	return -1;
}

int
config_parse_duration_ms(const char *s, uint64_t *out)
{
	return parse_with_unit(s, time_units, UTIL_NELEM(time_units), out);
}

int
config_parse_size(const char *s, uint64_t *out)
{
	return parse_with_unit(s, size_units, UTIL_NELEM(size_units), out);
}

void
cfgv_fmt_duration(uint64_t ms, char *buf, size_t len)
{
	size_t i = 3; /* 0 is "0s" */

	if (ms != 0)
		for (i = 0; ms % time_units[i].mult != 0; i++)
			; /* stops at "ms" at the latest */
	snprintf(buf, len, "%" PRIu64 "%s", ms / time_units[i].mult,
		 time_units[i].name);
}

void
cfgv_fmt_size(uint64_t n, char *buf, size_t len)
{
	size_t i = 3; /* 0 is "0" */

	if (n != 0)
		for (i = 0; n % size_units[i].mult != 0; i++)
			; /* stops at bytes at the latest */
	snprintf(buf, len, "%" PRIu64 "%s", n / size_units[i].mult,
		 size_units[i].name);
}

/* ---- enumerations ------------------------------------------------------- */

int
cfgv_find_enum(const struct enumval *e, const char *v, int *out)
{
	for (; e->name != NULL; e++) {
		if (strcmp(e->name, v) == 0) {
			*out = e->value;
			return 0;
		}
	}
	return -1;
}

const char *
cfgv_enum_name(const struct enumval *e, int value)
{
	for (; e->name != NULL; e++)
		if (e->value == value)
			return e->name;
	return NULL;
}

void
cfgv_enum_list(const struct enumval *e, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (; e->name != NULL && n < len; e++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s",
				      n == 0 ? ""
				      : e[1].name == NULL ? " or "
							  : ", ",
				      e->name);
}

/* ---- addresses ---------------------------------------------------------- */

static const char *
parse_port(const char *s, int *port)
{
	uint64_t v;
	int r = cfgv_parse_u64(s, &v);

	if (*s == '\0')
		return "missing port after \":\"";
	if (r == -1)
		return "port is not a number";
	if (r == -2 || v < 1 || v > 65535)
		return "port out of range (1..65535)";
	*port = (int)v;
	return NULL;
}

/*
 * Split "[v6]:port" or "host:port" into a copy of the host and the port.  A
 * bare IPv6 address is refused: in "::1:6379" the port would be a guess.
 */
static const char *
split_host_port(const char *s, char *host, size_t hostlen, int *port,
		int *v6)
{
	const char *end;
	size_t n;

	if ((*v6 = s[0] == '[')) {
		if ((end = strchr(s, ']')) == NULL)
			return "missing \"]\" after the IPv6 address";
		if (end[1] != ':')
			return "missing \":PORT\" after \"]\"";
		s++;
	} else if ((end = strrchr(s, ':')) == NULL) {
		return "missing \":PORT\"";
	} else if (memchr(s, ':', (size_t)(end - s)) != NULL) {
		return "an IPv6 address goes in brackets, e.g. [::1]:8080";
	}
	if ((n = (size_t)(end - s)) == 0)
		return "missing address before the port";
	if (n >= hostlen)
		return "address too long";
	memcpy(host, s, n);
	host[n] = '\0';
	return parse_port(end + 1 + *v6, port);
}

static int
has_letter(const char *s)
{
	for (; *s != '\0'; s++)
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
			return 1;
	return 0;
}

const char *
cfgv_listen(const char *s, struct config_listen *out)
{
	struct config_listen l;
	struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l.addr;
	char host[64], ntop[INET6_ADDRSTRLEN];
	const char *why;
	int v6, port;

	memset(&l, 0, sizeof(l));
	if ((why = split_host_port(s, host, sizeof(host), &port, &v6)) != NULL)
		return why;
	if (v6) {
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return "not an IPv6 address";
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		l.addrlen = sizeof(*sin6);
		inet_ntop(AF_INET6, &sin6->sin6_addr, ntop, sizeof(ntop));
		snprintf(l.text, sizeof(l.text), "[%s]:%d", ntop, port);
	} else {
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return has_letter(host) ? "host names are not accepted"
						: "not an IPv4 address";
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		l.addrlen = sizeof(*sin);
		inet_ntop(AF_INET, &sin->sin_addr, ntop, sizeof(ntop));
		snprintf(l.text, sizeof(l.text), "%s:%d", ntop, port);
	}
	*out = l;
	return NULL;
}

int
config_parse_listen(const char *s, struct config_listen *out)
{
	return cfgv_listen(s, out) == NULL ? 0 : -1;
}

/* RFC 1123 names, plus '_' which container networks hand out. */
static int
valid_hostname(const char *s)
{
	if (strlen(s) > 253 || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' ||
		      *s == '_'))
			return 0;
	return 1;
}

const char *
cfgv_redis(const char *s, struct config_redis *out)
{
	struct sockaddr_un sun;
	unsigned char bin[sizeof(struct in6_addr)];
	char host[256];
	const char *path = NULL, *why;
	int v6, port;

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0)
		path = s + 5;
	else if (s[0] == '/')
		path = s;
	if (path != NULL) {
		if (path[0] != '/')
			return "the unix socket path must be absolute";
		if (strlen(path) >= sizeof(sun.sun_path))
			return "the unix socket path is too long";
		out->unix_path = util_strdup(path);
		return NULL;
	}
	if ((why = split_host_port(s, host, sizeof(host), &port, &v6)) != NULL)
		return why;
	if (v6 && inet_pton(AF_INET6, host, bin) != 1)
		return "not an IPv6 address";
	/* All digits and dots: it must be a valid dotted quad. */
	if (!v6 && !has_letter(host) && inet_pton(AF_INET, host, bin) != 1)
		return "not an IPv4 address";
	if (!v6 && !valid_hostname(host))
		return "not a valid host name";
	out->host = util_strdup(host);
	out->port = port;
	return NULL;
}

/* ---- origins (RFC 6454) ------------------------------------------------- */

static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static int
scheme_char(char ch, int first)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return 1;
	return !first && ((ch >= '0' && ch <= '9') || ch == '+' || ch == '-' ||
			  ch == '.');
}

/* The port a browser leaves out of the Origin it sends. */
static int
default_port(const char *scheme)
{
	if (strcmp(scheme, "http") == 0 || strcmp(scheme, "ws") == 0)
		return 80;
	if (strcmp(scheme, "https") == 0 || strcmp(scheme, "wss") == 0)
		return 443;
	return 0;
}

/* host (a copy, in lower case) from "[v6]..." or "name..."; *end after it */
static const char *
origin_host(const char *s, char *host, size_t hostlen, const char **end)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char ntop[INET6_ADDRSTRLEN];
	const char *e;
	size_t n;

	if (s[0] == '[') {
		if ((e = strchr(s, ']')) == NULL)
			return "missing \"]\" after the IPv6 address";
		if ((n = (size_t)(e - s - 1)) >= sizeof(ntop))
			return "not an IPv6 address";
		memcpy(ntop, s + 1, n);
		ntop[n] = '\0';
		if (inet_pton(AF_INET6, ntop, bin) != 1)
			return "not an IPv6 address";
		inet_ntop(AF_INET6, bin, ntop, sizeof(ntop));
		snprintf(host, hostlen, "[%s]", ntop);
		*end = e + 1;
		return NULL;
	}
	e = s + strcspn(s, ":");
	if (*e == ':' && strchr(e + 1, ':') != NULL)
		return "an IPv6 address goes in brackets, e.g. "
		       "http://[::1]:8080";
	if ((n = (size_t)(e - s)) == 0)
		return "missing host";
	if (n > 253 || n >= hostlen)
		return "host name too long";
	memcpy(host, s, n);
	host[n] = '\0';
	lower(host);
	if (strchr(host, '*') != NULL)
		return "wildcard host names are not supported (list each "
		       "origin, or allow any with \"*\" alone)";
	if (!has_letter(host) && inet_pton(AF_INET, host, bin) != 1)
		return "not an IPv4 address";
	if (!valid_hostname(host))
		return "not a valid host name";
	*end = e;
	return NULL;
}

const char *
cfgv_origin(const char *s, char *out)
{
	char scheme[32], host[260];
	const char *p = s, *why;
	size_t n;
	int port = 0, len;

	if (strcmp(s, "*") == 0) {
		strcpy(out, "*");
		return NULL;
	}
	if (strcmp(s, "null") == 0)
		return "the opaque origin \"null\" cannot be allowed "
		       "selectively (only \"*\" admits it)";
	while (scheme_char(*p, p == s))
		p++;
	if (p == s || strncmp(p, "://", 3) != 0)
		return "missing scheme (an origin reads like "
		       "https://app.example.com)";
	if ((n = (size_t)(p - s)) >= sizeof(scheme))
		return "scheme too long";
	memcpy(scheme, s, n);
	scheme[n] = '\0';
	lower(scheme);
	p += 3;
	if (strpbrk(p, "/?#") != NULL)
		return "an origin has no path, query or fragment (not even a "
		       "final \"/\")";
	if (strchr(p, '@') != NULL)
		return "an origin has no user name or password";
	if ((why = origin_host(p, host, sizeof(host), &p)) != NULL)
		return why;
	if (*p == ':') {
		if ((why = parse_port(p + 1, &port)) != NULL)
			return why;
	} else if (*p != '\0') {
		return "expected \":PORT\" or nothing after the host";
	}
	if (port == default_port(scheme))
		port = 0;
	if (port != 0)
		len = snprintf(out, CONFIG_ORIGIN_MAX, "%s://%s:%d", scheme,
			       host, port);
	else
		len = snprintf(out, CONFIG_ORIGIN_MAX, "%s://%s", scheme,
			       host);
	if (len < 0 || len >= CONFIG_ORIGIN_MAX)
		return "too long";
	return NULL;
}

int
config_origin_allowed(const struct config *cfg, const char *origin,
		      size_t len)
{
	char text[CONFIG_ORIGIN_MAX], norm[CONFIG_ORIGIN_MAX];

	if (cfg->nws_allowed_origins == 0 || origin == NULL)
		return 1;
	for (size_t i = 0; i < cfg->nws_allowed_origins; i++)
		if (strcmp(cfg->ws_allowed_origins[i], "*") == 0)
			return 1;
	while (len > 0 && (origin[0] == ' ' || origin[0] == '\t')) {
		origin++;
		len--;
	}
	while (len > 0 && (origin[len - 1] == ' ' || origin[len - 1] == '\t'))
		len--;
	if (len >= sizeof(text) || memchr(origin, '\0', len) != NULL)
		return 0;
	memcpy(text, origin, len);
	text[len] = '\0';
	/* "*" is no origin a browser sends: it matches no list entry. */
	if (cfgv_origin(text, norm) != NULL || strcmp(norm, "*") == 0)
		return 0;
	for (size_t i = 0; i < cfg->nws_allowed_origins; i++)
		if (strcmp(cfg->ws_allowed_origins[i], norm) == 0)
			return 1;
	return 0;
}
