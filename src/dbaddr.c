/*
 * dbaddr: rewrite a libpq conninfo's host list to resolved addresses.
 * See dbaddr.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/dbaddr.h"
#include "orchd/util.h"

/* Split s in place on ','; returns the count, or -1 beyond max. */
static int
split(char *s, const char **out, int max)
{
	int n = 0;

	for (;;) {
		char *comma = strchr(s, ',');

		if (n == max)
			return -1;
		out[n++] = s;
		if (comma == NULL)
			return n;
		*comma = '\0';
		s = comma + 1;
	}
}

static const char *
opt(const PQconninfoOption *opts, const char *kw)
{
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, kw) == 0)
			return o->val;
	return NULL;
}

/* A unix socket directory or abstract name, empty (libpq's default), or an
 * IP address: libpq needs no look-up for it. */
static int
is_name(const char *h)
{
	return h[0] != '\0' && h[0] != '/' && h[0] != '@' &&
	       !resolve_is_numeric(h);
}

int
dbaddr_parse(struct dbaddr *a, const char *conninfo, char *err, size_t errlen)
{
	const char *host, *hostaddr, *port;
	const char *hosts[DBADDR_MAX_HOSTS], *ports[DBADDR_MAX_HOSTS];
	int nports = 0;

	memset(a, 0, sizeof(*a));
	if ((a->opts = PQconninfoParse(conninfo, NULL)) == NULL)
		return 0; /* libpq says why when connecting */
	host = opt(a->opts, "host");
	hostaddr = opt(a->opts, "hostaddr");
	port = opt(a->opts, "port");
	if (host == NULL || host[0] == '\0' ||
	    (hostaddr != NULL && hostaddr[0] != '\0'))
		return 0;
	a->hostbuf = util_strdup(host);
	a->nhosts = split(a->hostbuf, hosts, DBADDR_MAX_HOSTS);
	if (a->nhosts < 0) {
		snprintf(err, errlen, "more than %d hosts in the conninfo",
			 DBADDR_MAX_HOSTS);
		a->nhosts = 0;
		return -1;
	}
	if (port != NULL && strchr(port, ',') != NULL) {
		a->portbuf = util_strdup(port);
		nports = split(a->portbuf, ports, DBADDR_MAX_HOSTS);
		/* Not one port per host: libpq's error, when connecting. */
		if (nports != a->nhosts) {
			a->nhosts = 0;
			return 0;
		}
	}
	for (int i = 0; i < a->nhosts; i++) {
		struct dbaddr_host *h = &a->hosts[i];

		h->host = hosts[i];
		h->port = nports > 0 ? ports[i] : NULL;
		h->name = is_name(h->host);
		a->nnames += h->name;
	}
	return a->nnames;
}

void
dbaddr_set(struct dbaddr *a, int i, const struct resolve_result *res)
{
	struct dbaddr_host *h;

	if (i < 0 || i >= a->nhosts)
		return;
	h = &a->hosts[i];
	h->naddrs = 0;
	if (res == NULL || res->status != RESOLVE_OK)
		return;
	for (int j = 0; j < res->naddrs && j < RESOLVE_MAX_ADDRS; j++) {
		if (res->family[j] != AF_INET && res->family[j] != AF_INET6)
			continue;
		util_strlcpy(h->addr[h->naddrs++], res->addr[j],
			     sizeof(h->addr[0]));
	}
}

/* Append s as entry k of a comma-separated list of len bytes so far. */
static void
append(char *list, size_t *len, int k, const char *s)
{
	size_t n = strlen(s);

	if (k > 0)
		list[(*len)++] = ',';
	memcpy(list + *len, s, n);
	*len += n;
	list[*len] = '\0';
}

int
dbaddr_build(struct dbaddr *a)
{
	size_t hsize = 1, asize = 1, psize = 1, hlen = 0, alen = 0, plen = 0;
	int nopts = 0, nentries = 0, k = 0, e = 0;

	if (a->nnames == 0)
		return -1;
	for (int i = 0; i < a->nhosts; i++) {
		const struct dbaddr_host *h = &a->hosts[i];
		int n = h->name ? h->naddrs : 1;

		for (int j = 0; j < n; j++) {
			hsize += strlen(h->host) + 1;
			asize += (h->name ? strlen(h->addr[j]) : 0) + 1;
			psize += (h->port != NULL ? strlen(h->port) : 0) + 1;
		}
		nentries += n;
	}
	if (nentries == 0)
		return -1;
	free(a->hostlist);
	free(a->addrlist);
	free(a->portlist);
	a->hostlist = util_malloc(hsize);
	a->addrlist = util_malloc(asize);
	a->portlist = util_malloc(psize);
	a->hostlist[0] = a->addrlist[0] = a->portlist[0] = '\0';
	for (int i = 0; i < a->nhosts; i++) {
		const struct dbaddr_host *h = &a->hosts[i];
		int n = h->name ? h->naddrs : 1;

		for (int j = 0; j < n; j++, e++) {
			append(a->hostlist, &hlen, e, h->host);
			append(a->addrlist, &alen, e,
			       h->name ? h->addr[j] : "");
			if (h->port != NULL)
				append(a->portlist, &plen, e, h->port);
		}
	}
	/* An entry without an address makes "a,,b": libpq then resolves
	 * that entry itself, which is fine for a numeric one or a path. */
	for (const PQconninfoOption *o = a->opts; o->keyword != NULL; o++)
		nopts++;
	free(a->keywords);
	free(a->values);
	a->keywords = util_calloc((size_t)nopts + 4, sizeof(*a->keywords));
	a->values = util_calloc((size_t)nopts + 4, sizeof(*a->values));
	for (const PQconninfoOption *o = a->opts; o->keyword != NULL; o++) {
		if (o->val == NULL || strcmp(o->keyword, "host") == 0 ||
		    strcmp(o->keyword, "hostaddr") == 0 ||
		    (a->portbuf != NULL && strcmp(o->keyword, "port") == 0))
			continue;
		a->keywords[k] = o->keyword;
		a->values[k++] = o->val;
	}
	a->keywords[k] = "host";
	a->values[k++] = a->hostlist;
	a->keywords[k] = "hostaddr";
	a->values[k++] = a->addrlist;
	if (a->portbuf != NULL) {
		a->keywords[k] = "port";
		a->values[k++] = a->portlist;
	}
	a->keywords[k] = NULL;
	a->values[k] = NULL;
	return nentries;
}

void
dbaddr_free(struct dbaddr *a)
{
	if (a->opts != NULL) {
		/* The password may be among the values. */
		for (PQconninfoOption *o = a->opts; o->keyword != NULL; o++)
			if (o->val != NULL)
				for (volatile char *v = o->val; *v != '\0'; v++)
					*v = 0;
		PQconninfoFree(a->opts);
	}
	free(a->hostbuf);
	free(a->portbuf);
	free(a->keywords);
	free(a->values);
	free(a->hostlist);
	free(a->addrlist);
	free(a->portlist);
	memset(a, 0, sizeof(*a));
}
