/*
 * authlimit: failed-attempt limits of the token endpoints (POST
 * /api/daemon/auth and /api/daemon/auth/refresh), per API key and per
 * client address, pure logic (times are the caller's monotonic ms).
 *
 * Fixed windows: the first failure of a key (or address) opens a window of
 * window_ms; limit failures within it close the key (or address) until the
 * window ends, and a closed one is refused before any work is spent (no
 * database look-up, no key derivation), the right secret included: a
 * guesser cannot learn that it found the secret.
 *
 * An attempt is charged when it starts (authlimit_take()), so that many
 * attempts in flight at once cannot overrun the limit, and refunded when
 * it turns out not to be a failed guess (success, 400, 503:
 * authlimit_refund()).  A success refunds only its own charge: it does not
 * forgive the address the failures of other keys (an attacker spraying
 * keys from one address cannot clear its count with a key of its own).
 *
 * An IPv6 client address counts by its /64 (the least a site is given, so
 * one client can pick any address in it); IPv4 by the whole address.
 *
 * Memory is bounded: two set-associative tables (AUTHLIMIT_KEY_SLOTS and
 * AUTHLIMIT_ADDR_SLOTS entries, AUTHLIMIT_WAYS per set) allocated on first
 * use.  A full set evicts an entry whose window has ended, else the one
 * with the fewest failures, so a closed key is the last to go.  Sets are
 * picked by a hash seeded at random per table, so that an attacker cannot
 * aim colliding keys at one set.  Each worker has its own tables.
 */
#ifndef ORCHD_AUTHLIMIT_H
#define ORCHD_AUTHLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTHLIMIT_KEY_SLOTS 1024
#define AUTHLIMIT_ADDR_SLOTS 4096
#define AUTHLIMIT_WAYS 8
#define AUTHLIMIT_KEY_MAX 255 /* bytes of a key; longer ones are cut */

struct authlimit_table {
	size_t nslots, cap; /* entries; bytes of a key */
	uint64_t seed;
	/* Allocated on first use, nslots each: */
	uint64_t *start; /* the window's start, monotonic ms; 0: free */
	unsigned *count; /* attempts charged in the window */
	uint8_t *len;    /* bytes of the key */
	char *key;       /* cap bytes per entry */
};

struct authlimit {
	unsigned limit; /* failures per window; 0: off */
	uint64_t window_ms;
	struct authlimit_table keys, addrs;
};

/* A charged attempt, for authlimit_refund(). */
struct authlimit_ticket {
	int key_charged, addr_charged;
	uint64_t key_start, addr_start; /* windows charged */
};

void authlimit_init(struct authlimit *al, unsigned limit, uint64_t window_ms,
		    uint64_t seed);
/*
 * Charge one attempt to key (NULL: none known yet) and to addr.  0: go on
 * (*t filled); else the key or address is closed: milliseconds until it
 * opens again (nothing charged).
 */
uint64_t authlimit_take(struct authlimit *al, const char *key,
			const struct sockaddr_storage *addr, uint64_t now_ms,
			struct authlimit_ticket *t);
/* Charge the key of an attempt whose key was learnt later (refresh). */
uint64_t authlimit_take_key(struct authlimit *al, const char *key,
			    uint64_t now_ms, struct authlimit_ticket *t);
/* The attempt was not a failed guess: take its charges back. */
void authlimit_refund(struct authlimit *al, const char *key,
		      const struct sockaddr_storage *addr,
		      const struct authlimit_ticket *t);
void authlimit_free(struct authlimit *al);

#endif
