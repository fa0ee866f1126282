/*
 * config_sock: the admin_socket directive of orchd.conf(5),
 * "admin_socket PATH [MODE]".
 *
 * PATH is where the supervisor binds the admin unix socket (admin.h); it
 * must fit a sockaddr_un and, outside the built-in defaults, its directory
 * must exist now, so "orchd -t" catches a missing run directory instead of
 * the start.  MODE is octal (default 0600); the owner must keep read and
 * write, or the supervisor's own checks (a connect to see whether another
 * orchd answers) would fail as a non-root user.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "config_int.h"
#include "orchd/config.h"
#include "orchd/util.h"

#define MODE_DEFAULT 0600u

/* "0660" or "660": octal, at most 0777; -1 if not. */
static long
parse_mode(const char *s)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 4)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '7')
			return -1;
		v = v * 8 + (*s - '0');
	}
	return v <= 0777 ? v : -1;
}

void
cfgs_set_admin_socket(struct pctx *c, const struct directive *d, char **argv,
		      int argc)
{
	struct config *cfg = c->cfg;
	struct sockaddr_un sun;
	const char *path = argv[0], *slash;
	unsigned mode = MODE_DEFAULT;

	if (path[0] != '/') {
		cfgp_derr(c, d, "%s is not an absolute path",
			  cfgp_show(c, path));
		return;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		cfgp_derr(c, d,
			  "%s is longer than a unix socket path may be "
			  "(%zu bytes)",
			  cfgp_show(c, path), sizeof(sun.sun_path) - 1);
		return;
	}
	slash = strrchr(path, '/');
	if (slash[1] == '\0') {
		cfgp_derr(c, d, "%s names a directory, not a socket",
			  cfgp_show(c, path));
		return;
	}
	if (argc > 1) {
		long m = parse_mode(argv[1]);

		if (m < 0) {
			cfgp_derr(c, d, "mode %s is not an octal mode 0..0777",
				  cfgp_show(c, argv[1]));
			return;
		}
		if ((m & 0600) != 0600) {
			cfgp_derr(c, d,
				  "mode %s: the owner needs read and "
				  "write (0600)",
				  cfgp_show(c, argv[1]));
			return;
		}
		mode = (unsigned)m;
	}
	if (!c->defaults) {
		char dir[sizeof(sun.sun_path)];
		struct stat st;
		size_t n = (size_t)(slash - path);

		memcpy(dir, path, n);
		dir[n > 0 ? n : 1] = '\0';
		if (n == 0)
			dir[0] = '/';
		if (stat(dir, &st) == -1) {
			cfgp_derr(c, d, "directory %s: %s", cfgp_show(c, dir),
				  strerror(errno));
			return;
		}
		if (!S_ISDIR(st.st_mode)) {
			cfgp_derr(c, d, "%s is not a directory",
				  cfgp_show(c, dir));
			return;
		}
	}
	UTIL_FREE(cfg->admin_socket);
	cfg->admin_socket = util_strdup(path);
	cfg->admin_socket_mode = mode;
}

void
cfgs_dump_admin_socket(const struct directive *d, const struct config *cfg,
		       FILE *fp)
{
	if (cfg->admin_socket == NULL) {
		fprintf(fp, "# %s (not set)\n", d->name);
		return;
	}
	fprintf(fp, "%s ", d->name);
	cfgv_dump_word(fp, cfg->admin_socket);
	fprintf(fp, " %04o\n", cfg->admin_socket_mode);
}

void
cfgs_free(struct config *cfg)
{
	UTIL_FREE(cfg->admin_socket);
}
