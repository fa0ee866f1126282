/*
 * addrlimit: new connections per second per client address, checked at
 * accept, before any handshake work (admission control).
 *
 * A direct-mapped table of token buckets keyed by address: bounded memory
 * (ADDRLIMIT_SLOTS entries per worker).  An address that collides with
 * another takes its slot over, which can only make the limit laxer for the
 * evicted one, never refuse an innocent address.  Each worker keeps its own
 * table and applies rate / workers, since the kernel spreads one address's
 * connections over the workers.
 */
#ifndef ORCHD_ADDRLIMIT_H
#define ORCHD_ADDRLIMIT_H

#include <stdint.h>
#include <sys/socket.h>

#include "orchd/ratelimit.h"

#define ADDRLIMIT_SLOTS 8192

struct addrlimit_slot {
	uint8_t key[16]; /* IPv4-mapped or IPv6 */
	struct ratelimit rl;
};

struct addrlimit {
	struct addrlimit_slot *slots; /* allocated on first use */
	double rate;                  /* per second, for this worker */
};

void addrlimit_init(struct addrlimit *al, unsigned per_second, int workers);
/* 1: accept, 0: over the rate. */
int addrlimit_allow(struct addrlimit *al, const struct sockaddr_storage *ss,
		    uint64_t now_ms);
void addrlimit_free(struct addrlimit *al);
/* A client's 16-byte key: IPv6 as is, IPv4 as IPv4-mapped IPv6. */
void addrlimit_key(const struct sockaddr_storage *ss, uint8_t key[16]);

#endif
