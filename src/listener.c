/* listener: SO_REUSEPORT listening sockets, one per address per worker slot. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orchd/listener.h"
#include "orchd/log.h"
#include "orchd/util.h"

void
listener_set_init(struct listener_set *set)
{
	memset(set, 0, sizeof(*set));
	for (int i = 0; i < CONFIG_MAX_LISTEN; i++)
		for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
			set->l[i].fds[s] = -1;
}

int
listener_open(const struct config_listen *addr)
{
	int fd, on = 1;

	fd = socket(addr->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("%s: socket %s", __func__, addr->text);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1) {
		log_warn("%s: setsockopt SO_REUSEPORT %s", __func__,
			 addr->text);
		goto fail;
	}
	/* "[::]:80" should not silently also take 0.0.0.0:80. */
	if (addr->addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1) {
		log_warn("%s: setsockopt IPV6_V6ONLY %s", __func__,
			 addr->text);
		goto fail;
	}
	/* Don't wake a worker for a connection that has sent nothing yet. */
	{
		int secs = 10;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs,
				 sizeof(secs));
	}
	if (bind(fd, (const struct sockaddr *)&addr->addr, addr->addrlen) ==
	    -1) {
		log_warn("%s: bind %s", __func__, addr->text);
		goto fail;
	}
	if (listen(fd, LISTENER_BACKLOG) == -1) {
		log_warn("%s: listen %s", __func__, addr->text);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

static struct listener *
find_listener(struct listener_set *set, const struct config_listen *addr)
{
	if (set == NULL)
		return NULL;
	for (int i = 0; i < set->n; i++)
		if (strcmp(set->l[i].addr.text, addr->text) == 0)
			return &set->l[i];
	return NULL;
}

int
listener_set_build(struct listener_set *next, struct listener_set *cur,
		   const struct config *cfg)
{
	int taken[CONFIG_MAX_LISTEN][CONFIG_MAX_WORKERS];

	listener_set_init(next);
	memset(taken, 0, sizeof(taken));
	for (int i = 0; i < cfg->nlisten; i++) {
		struct listener *nl = &next->l[i];
		struct listener *old = find_listener(cur, &cfg->listen[i]);

		nl->addr = cfg->listen[i];
		nl->nslots = cfg->workers;
		next->n = i + 1;
		for (int s = 0; s < cfg->workers; s++) {
			if (old != NULL && s < old->nslots && old->fds[s] != -1) {
				nl->fds[s] = old->fds[s];
				taken[old - cur->l][s] = 1;
				continue;
			}
			if ((nl->fds[s] = listener_open(&nl->addr)) == -1)
				goto fail;
		}
	}
	/* Commit: hand the reused sockets over. */
	if (cur != NULL)
		for (int i = 0; i < cur->n; i++)
			for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
				if (taken[i][s])
					cur->l[i].fds[s] = -1;
	return 0;
fail:
	/* Close only what this call opened. */
	for (int i = 0; i < next->n; i++)
		for (int s = 0; s < next->l[i].nslots; s++) {
			int fd = next->l[i].fds[s], reused = 0;

			if (fd == -1)
				continue;
			if (cur != NULL)
				for (int j = 0; j < cur->n; j++)
					for (int t = 0; t < cur->l[j].nslots; t++)
						if (cur->l[j].fds[t] == fd)
							reused = 1;
			if (!reused)
				close(fd);
		}
	listener_set_init(next);
	return -1;
}

void
listener_set_close(struct listener_set *set)
{
	for (int i = 0; i < set->n; i++)
		for (int s = 0; s < CONFIG_MAX_WORKERS; s++)
			if (set->l[i].fds[s] != -1) {
				close(set->l[i].fds[s]);
				set->l[i].fds[s] = -1;
			}
	set->n = 0;
}
