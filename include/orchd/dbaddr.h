/*
 * dbaddr: the host part of a libpq conninfo, for resolving its names
 * before libpq sees them (pure: no I/O, no look-up).
 *
 * libpq resolves "host=NAME" with a blocking getaddrinfo().  The db module
 * parses the conninfo with dbaddr_parse(), resolves each host entry that is
 * a name (resolve.h), hands each answer to dbaddr_set(), and connects with
 * the keyword/value arrays of dbaddr_build(): the original keywords, with
 * every name entry of "host" repeated once per address it resolved to and
 * "hostaddr" giving that address (and "port" repeated along, when it is a
 * per-host list).  libpq then connects to hostaddr without a look-up, but
 * still uses host for TLS verification, ~/.pgpass and its messages, and
 * tries the entries in order as it would have tried the names and their
 * addresses (target_session_attrs and load_balance_hosts keep working).
 *
 * A name that did not resolve is left out, as libpq skips a host it cannot
 * resolve; when no entry is left there is nothing to connect to.  A
 * conninfo that already gives hostaddr, or names no host (unix socket,
 * numeric addresses only), needs no look-up; so does one libpq cannot
 * parse, whose error libpq itself then reports when connecting.
 */
#ifndef ORCHD_DBADDR_H
#define ORCHD_DBADDR_H

#include <stddef.h>

#include <libpq-fe.h>

#include "orchd/resolve.h"

#define DBADDR_MAX_HOSTS 16 /* entries of a host list with a name in it */

struct dbaddr_host {
	const char *host; /* the entry as written */
	const char *port; /* its own port (a per-host list), or NULL */
	int name;         /* needs a look-up */
	int naddrs;       /* dbaddr_set(): its addresses (0: leave it out) */
	char addr[RESOLVE_MAX_ADDRS][RESOLVE_ADDR_MAX];
};

struct dbaddr {
	PQconninfoOption *opts;
	char *hostbuf, *portbuf; /* the split lists */
	int nhosts;
	int nnames;
	struct dbaddr_host hosts[DBADDR_MAX_HOSTS];
	/* dbaddr_build(): NULL-terminated, for PQconnectStartParams(). */
	const char **keywords, **values;
	char *hostlist, *addrlist, *portlist;
};

/*
 * Parse conninfo into a (zeroed first).  Returns the number of host entries
 * to resolve (0: connect with conninfo as it is), or -1 with err set (more
 * than DBADDR_MAX_HOSTS entries).  dbaddr_free() a in every case.
 */
int dbaddr_parse(struct dbaddr *a, const char *conninfo, char *err,
		 size_t errlen);
/* Entry i (0..nhosts-1) is a name: the answer for it (NULL: none). */
void dbaddr_set(struct dbaddr *a, int i, const struct resolve_result *res);
/*
 * Build a->keywords and a->values.  Returns the number of host entries
 * there, or -1 when no entry is left (every name failed).
 */
int dbaddr_build(struct dbaddr *a);
void dbaddr_free(struct dbaddr *a);

#endif
