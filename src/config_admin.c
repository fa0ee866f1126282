/*
 * config_admin: the directives that say who may read the operator pages
 * (/metrics, /stats, /status): admin_allow, a list of addresses and
 * networks, and admin_token_file, a bearer token that works from anywhere.
 * The third way in, "listen ADDR:PORT admin", is parsed with listen in
 * src/config.c.
 *
 * admin_allow adds up across lines, like listen; the first line in the
 * files replaces the built-in default (127.0.0.1 ::1).  "none" empties the
 * list and stands alone.  The token is read at load, so "orchd -t" refuses
 * an unreadable or too short file; it is never printed (-T shows the path)
 * and its memory is wiped when the config is freed.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/util.h"

/* ---- addresses ------------------------------------------------------------
 */

const char *
config_parse_cidr(const char *s, struct config_cidr *out)
{
	char host[INET6_ADDRSTRLEN + 2], canon[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned max;

	memset(out, 0, sizeof(*out));
	/* [::1] and [::1]/128 as in listen, plain ::1 too. */
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		s++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return "not an IPv4 or IPv6 address";
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return "not an IPv4 or IPv6 address";
	}
	out->prefix = max;
	if (slash != NULL) {
		uint64_t n;
		int r = cfgv_parse_u64(slash + 1, &n);

		if (r == -1)
			return "the prefix length is not a number";
		if (r == -2 || n > max)
			return max == 32 ? "the prefix length is over 32"
					 : "the prefix length is over 128";
		out->prefix = (unsigned)n;
	}
	/* Host bits past the prefix are ignored by the match; keep them off. */
	for (unsigned bit = out->prefix; bit < max; bit++)
		out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	inet_ntop(out->family, out->addr, canon, sizeof(canon));
	if (out->prefix == max)
		snprintf(out->text, sizeof(out->text), "%s", canon);
	else
		snprintf(out->text, sizeof(out->text), "%s/%u", canon,
			 out->prefix);
	return NULL;
}

static int
prefix_match(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ b[full]) & (uint8_t)(0xffu << (8 - rest))) == 0;
}

int
config_admin_allowed(const struct config *cfg, const struct sockaddr *peer)
{
	const uint8_t *v4 = NULL, *v6 = NULL;

	if (peer == NULL)
		return 0;
	if (peer->sa_family == AF_INET) {
		v4 = (const uint8_t *)&((const struct sockaddr_in *)peer)
			 ->sin_addr;
	} else if (peer->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)peer)->sin6_addr;

		v6 = a->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			v4 = a->s6_addr + 12;
	} else {
		return 0;
	}
	for (size_t i = 0; i < cfg->nadmin_allow; i++) {
		const struct config_cidr *e = &cfg->admin_allow[i];

		if (e->family == AF_INET && v4 != NULL &&
		    prefix_match(e->addr, v4, e->prefix))
			return 1;
		if (e->family == AF_INET6 && v6 != NULL &&
		    prefix_match(e->addr, v6, e->prefix))
			return 1;
	}
	return 0;
}

int
config_admin_token_ok(const struct config *cfg, const char *tok, size_t len)
{
	const char *t = cfg->admin_token;
	unsigned char diff;

	if (t == NULL || tok == NULL || cfg->admin_token_len == 0)
		return 0;
	/*
	 * Every byte of the presented token is compared (with the secret's
	 * bytes, cycled), so the time depends on what the client sent, never
	 * on where it first differs nor on the secret's length.
	 */
	diff = (unsigned char)(len != cfg->admin_token_len);
	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char)(tok[i] ^ t[i % cfg->admin_token_len]);
	return diff == 0;
}

/* ---- admin_allow ------------------------------------------------------------
 */

void
cfgadm_set_allow(struct pctx *c, const struct directive *d, char **argv,
		 int argc)
{
	struct config *cfg = c->cfg;
	struct config_cidr *list;
	size_t n = 0;

	if (!c->defaults && !cfg->admin_allow_set) {
		/* The first line in the files replaces the default. */
		cfg->nadmin_allow = 0;
		cfg->admin_allow_set = 1;
	}
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "none") != 0)
			continue;
		if (argc > 1 || cfg->nadmin_allow > 0) {
			cfgp_derr(c, d,
				  "none stands alone (no address with "
				  "it in the files)");
			return;
		}
		cfg->nadmin_allow = 0;
		cfg->admin_allow_set = 2; /* none */
		return;
	}
	if (cfg->admin_allow_set == 2) {
		cfgp_derr(c, d, "an address after admin_allow none");
		return;
	}
	list = util_calloc((size_t)argc, sizeof(*list));
	for (int i = 0; i < argc; i++) {
		const char *why = config_parse_cidr(argv[i], &list[n]);

		if (why != NULL) {
			cfgp_derr(c, d,
				  "%s: %s (expected ADDR[/PREFIX], e.g. "
				  "127.0.0.1, 10.0.0.0/8 or ::1, or none)",
				  cfgp_show(c, argv[i]), why);
			free(list);
			return;
		}
		n++;
	}
	if (cfg->nadmin_allow + n > CONFIG_MAX_ADMIN_ALLOW) {
		cfgp_derr(c, d, "too many addresses (at most %d in all)",
			  CONFIG_MAX_ADMIN_ALLOW);
		free(list);
		return;
	}
	cfg->admin_allow =
	    util_realloc(cfg->admin_allow,
			 (cfg->nadmin_allow + n) * sizeof(*cfg->admin_allow));
	memcpy(cfg->admin_allow + cfg->nadmin_allow, list, n * sizeof(*list));
	cfg->nadmin_allow += n;
	free(list);
}

void
cfgadm_dump_allow(const struct directive *d, const struct config *cfg, FILE *fp)
{
	fprintf(fp, "%s", d->name);
	if (cfg->nadmin_allow == 0)
		fprintf(fp, " none");
	for (size_t i = 0; i < cfg->nadmin_allow; i++)
		fprintf(fp, " %s", cfg->admin_allow[i].text);
	fputc('\n', fp);
}

/* ---- admin_token_file ------------------------------------------------------
 */

static void
wipe_free(char *p, size_t n)
{
	volatile char *v = p;

	if (p == NULL)
		return;
	while (n-- > 0)
		*v++ = 0;
	free(p);
}

int
cfgadm_load_token(struct pctx *c, const struct directive *d, const char *path)
{
	char buf[CONFIG_ADMIN_TOKEN_MAX + 2];
	ssize_t r;
	size_t n;
	int rc = -1;

	if (c->defaults)
		return 0;
	r = cfga_read_secret(c, d, path, buf, sizeof(buf),
			     CONFIG_ADMIN_TOKEN_MAX);
	if (r < 0)
		goto out;
	n = (size_t)r;
	if (n < CONFIG_ADMIN_TOKEN_MIN) {
		cfgp_derr(c, d,
			  "%s holds %zu bytes: a token needs at least %d "
			  "(e.g. openssl rand -hex 32)",
			  cfgp_show(c, path), n, CONFIG_ADMIN_TOKEN_MIN);
		goto out;
	}
	if (memchr(buf, '\0', n) != NULL || memchr(buf, '\n', n) != NULL ||
	    memchr(buf, ' ', n) != NULL) {
		cfgp_derr(c, d,
			  "%s: the token must be one line without spaces or "
			  "NUL bytes",
			  cfgp_show(c, path));
		goto out;
	}
	wipe_free(c->cfg->admin_token, c->cfg->admin_token_len);
	c->cfg->admin_token = util_malloc(n + 1);
	memcpy(c->cfg->admin_token, buf, n);
	c->cfg->admin_token[n] = '\0';
	c->cfg->admin_token_len = n;
	rc = 0;
out:
	for (volatile char *v = buf; v < buf + sizeof(buf); v++)
		*v = 0;
	return rc;
}

void
cfgadm_free(struct config *cfg)
{
	wipe_free(cfg->admin_token, cfg->admin_token_len);
	cfg->admin_token = NULL;
	cfg->admin_token_len = 0;
	UTIL_FREE(cfg->admin_allow);
	cfg->nadmin_allow = 0;
}
