/*
 * config_db: the PostgreSQL directives of orchd.conf(5) whose values are
 * more than a word checked against a range -- the conninfo, written inline
 * ("database") or kept in a file of its own ("database_file", so that the
 * password need not be in the main config, which is often world-readable).
 *
 * The conninfo is checked with libpq's own parser, PQconninfoParse(), so
 * "orchd -t" refuses what PQconnectStart() would refuse later in every
 * worker.  Nothing connects here: a config check must not depend on the
 * database being up.
 *
 * The conninfo may hold a password.  It is never printed (-T says whether it
 * is set), libpq's messages about it lose what they quote of it, and its
 * memory is wiped before it is freed.  src/config.c holds the table that
 * points here, the plain directives of the family (database_timeout,
 * database_failure, database_cache_ttl, database_connections) and the
 * cross-check that refuses database and database_file together.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/util.h"

/* Overwrite before free: a password should not linger in freed heap. */
static void
wipe_free(char *p)
{
	volatile char *v = p;

	if (p == NULL)
		return;
	while (*v != '\0')
		*v++ = 0;
	free(p);
}

/*
 * libpq's message, on one line, without what it quotes: some messages quote
 * a piece of the conninfo ("missing "=" after "..."", or the whole URI for
 * a bad percent-encoding), and that piece may be the password.  Kept: an
 * unknown option's name (a keyword) and a quoted single character (the
 * "=" or "]" libpq was looking for).
 */
static void
libpq_reason(const char *msg, char *out, size_t len)
{
	int keep = strncmp(msg, "invalid connection option", 25) == 0;
	size_t n = 0;

	for (const char *p = msg; *p != '\0' && n + 6 < len; p++) {
		const char *end;

		if (*p == '\n' && p[1] == '\0')
			break;
		if (*p == '"' && !keep && (end = strchr(p + 1, '"')) != NULL) {
			if (end - p == 2)
				memcpy(out + n, p, 3);
			else
				memcpy(out + n, "\"...\"", 5);
			n += end - p == 2 ? 3 : 5;
			p = end;
			continue;
		}
		out[n++] = (unsigned char)*p < 0x20 ? ' ' : *p;
	}
	out[n] = '\0';
}

/*
 * Is s a conninfo libpq accepts?  what: how messages name it (NULL for the
 * inline value, the file's quoted path for database_file).
 */
static int
check_conninfo(struct pctx *c, const struct directive *d, const char *s,
	       size_t n, const char *what)
{
	PQconninfoOption *opts;
	char *err = NULL, reason[256];
	const char *pre = what != NULL ? what : "", *sep = what ? ": " : "";

	if (n == 0) {
		cfgp_derr(c, d, "%s%sempty conninfo", pre, sep);
		return -1;
	}
	if (strlen(s) != n) {
		cfgp_derr(c, d, "%s%sthe conninfo holds a NUL byte", pre, sep);
		return -1;
	}
	if (n > CONFIG_CONNINFO_MAX) {
		cfgp_derr(c, d, "%s%sconninfo longer than %d bytes", pre, sep,
			  CONFIG_CONNINFO_MAX);
		return -1;
	}
	if ((opts = PQconninfoParse(s, &err)) == NULL) {
		if (err != NULL)
			libpq_reason(err, reason, sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "out of memory");
		cfgp_derr(c, d, "%s%snot a valid libpq conninfo: %s", pre, sep,
			  reason);
		PQfreemem(err);
		return -1;
	}
	PQconninfoFree(opts);
	return 0;
}

static void
set_conninfo(struct config *cfg, const char *s, size_t n)
{
	wipe_free(cfg->database_conninfo);
	cfg->database_conninfo = util_malloc(n + 1);
	memcpy(cfg->database_conninfo, s, n);
	cfg->database_conninfo[n] = '\0';
}

/* database CONNINFO: one word (quote a key=value list, it has blanks). */
void
cfgd_set_database(struct pctx *c, const struct directive *d, char **argv,
		  int argc)
{
	(void)argc;
	if (check_conninfo(c, d, argv[0], strlen(argv[0]), NULL) < 0)
		return;
	set_conninfo(c->cfg, argv[0], strlen(argv[0]));
}

/*
 * Only whether it is set, and never from the file: "database_file" prints
 * itself (a path), and a dump fed back to orchd -t must not carry the
 * conninfo twice.
 */
void
cfgd_dump_database(const struct directive *d, const struct config *cfg,
		   FILE *fp)
{
	if (cfg->database_conninfo != NULL && cfg->database_file == NULL)
		fprintf(fp, "# %s (set; hidden: it may hold a password)\n",
			d->name);
	else
		fprintf(fp, "# %s (not set)\n", d->name);
}

/*
 * database_file: the whole file is the conninfo, read now as the user who
 * runs -t (the supervisor reads it before it drops privileges, so the file
 * can be mode 0600 root).  Blanks and newlines around it go: a key=value
 * list may span lines, and editors add a final newline.  O_NONBLOCK keeps
 * the open() of a FIFO from hanging "orchd -t"; a FIFO, a device or a
 * directory is refused.
 */
int
cfgd_load_database_file(struct pctx *c, const struct directive *d,
			const char *path)
{
	char buf[CONFIG_CONNINFO_MAX + 2], *s;
	size_t n = 0;
	int fd, rc = -1;

	if (c->defaults)
		return 0;
	if ((fd = cfga_open_regular(c, d, path)) == -1)
		return -1;
	while (n < sizeof(buf) - 1) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			cfgp_derr(c, d, "cannot read %s: %s",
				  cfgp_show(c, path), strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	s = buf;
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' ||
			 s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	while (n > 0 && (*s == '\n' || *s == '\r' || *s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	if (check_conninfo(c, d, s, n, cfgp_show(c, path)) < 0)
		goto out;
	set_conninfo(c->cfg, s, n);
	rc = 0;
out:
	for (volatile char *v = buf; v < buf + sizeof(buf); v++)
		*v = 0;
	close(fd);
	return rc;
}

void
cfgd_free(struct config *cfg)
{
	wipe_free(cfg->database_conninfo);
	cfg->database_conninfo = NULL;
}
