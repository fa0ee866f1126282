/* authlimit: failed-attempt limits of the token endpoints. */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/addrlimit.h"
#include "orchd/authlimit.h"
#include "orchd/util.h"

static void
table_init(struct authlimit_table *t, size_t nslots, size_t cap, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	t->nslots = nslots;
	t->cap = cap;
	t->seed = seed;
}

void
authlimit_init(struct authlimit *al, unsigned limit, uint64_t window_ms,
	       uint64_t seed)
{
	memset(al, 0, sizeof(*al));
	al->limit = limit;
	al->window_ms = window_ms > 0 ? window_ms : 1;
	table_init(&al->keys, AUTHLIMIT_KEY_SLOTS, AUTHLIMIT_KEY_MAX, seed);
	table_init(&al->addrs, AUTHLIMIT_ADDR_SLOTS, 16,
		   seed * 0x9e3779b97f4a7c15ull + 1);
}

static uint64_t
hash(uint64_t seed, const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 14695981039346656037ull ^ seed; /* FNV-1a, seeded */

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	h ^= h >> 29; /* mix the high bits into the set index */
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 32);
}

static int
live(const struct authlimit *al, const struct authlimit_table *t, size_t i,
     uint64_t now)
{
	return t->start[i] != 0 && now < t->start[i] + al->window_ms;
}

/*
 * The entry of k (n bytes), or with add the one made for it (evicting);
 * SIZE_MAX when there is none.  Expired windows read as empty.
 */
static size_t
find(struct authlimit *al, struct authlimit_table *t, const void *k, size_t n,
     uint64_t now, int add)
{
	size_t set, best = SIZE_MAX;

	if (t->start == NULL) {
		if (!add)
			return SIZE_MAX;
		t->start = util_calloc(t->nslots, sizeof(*t->start));
		t->count = util_calloc(t->nslots, sizeof(*t->count));
		t->len = util_calloc(t->nslots, sizeof(*t->len));
		t->key = util_calloc(t->nslots, t->cap);
	}
	if (n > t->cap)
		n = t->cap;
	set = (size_t)(hash(t->seed, k, n) % (t->nslots / AUTHLIMIT_WAYS)) *
	      AUTHLIMIT_WAYS;
	for (size_t i = set; i < set + AUTHLIMIT_WAYS; i++) {
		if (t->start[i] != 0 && t->len[i] == n &&
		    memcmp(t->key + i * t->cap, k, n) == 0) {
			if (live(al, t, i, now))
				return i;
			best = i; /* its window is over: start afresh */
			break;
		}
		/* Free or over first, then the fewest attempts. */
		if (best == SIZE_MAX ||
		    (live(al, t, best, now) &&
		     (!live(al, t, i, now) || t->count[i] < t->count[best])))
			best = i;
	}
	if (!add)
		return SIZE_MAX;
	t->start[best] = now > 0 ? now : 1;
	t->count[best] = 0;
	t->len[best] = (uint8_t)n;
	memcpy(t->key + best * t->cap, k, n);
	return best;
}

static void
addr_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
					   0, 0, 0, 0, 0xff, 0xff};

	addrlimit_key(ss, key);
	/* One site has a /64 to pick addresses from: count it as one client
	 * (IPv4 and IPv4-mapped ones stay whole). */
	if (ss->ss_family == AF_INET6 &&
	    memcmp(key, mapped, sizeof(mapped)) != 0)
		memset(key + 8, 0, 8);
}

/* ms until the entry of k opens, 0 when open. */
static uint64_t
closed_for(struct authlimit *al, struct authlimit_table *t, const void *k,
	   size_t n, uint64_t now)
{
	size_t i = find(al, t, k, n, now, 0);

	if (i == SIZE_MAX || t->count[i] < al->limit)
		return 0;
	return t->start[i] + al->window_ms - now;
}

static uint64_t
charge(struct authlimit *al, struct authlimit_table *t, const void *k, size_t n,
       uint64_t now)
{
	size_t i = find(al, t, k, n, now, 1);

	t->count[i]++;
	return t->start[i];
}

uint64_t
authlimit_take(struct authlimit *al, const char *key,
	       const struct sockaddr_storage *addr, uint64_t now_ms,
	       struct authlimit_ticket *t)
{
	uint8_t a[16];
	uint64_t wait_key = 0, wait_addr;

	memset(t, 0, sizeof(*t));
	if (al->limit == 0)
		return 0;
	addr_key(addr, a);
	if (key != NULL)
		wait_key = closed_for(al, &al->keys, key, strlen(key), now_ms);
	wait_addr = closed_for(al, &al->addrs, a, sizeof(a), now_ms);
	if (wait_key > 0 || wait_addr > 0)
		return wait_key > wait_addr ? wait_key : wait_addr;
	t->addr_start = charge(al, &al->addrs, a, sizeof(a), now_ms);
	t->addr_charged = 1;
	if (key != NULL) {
		t->key_start = charge(al, &al->keys, key, strlen(key), now_ms);
		t->key_charged = 1;
	}
	return 0;
}

uint64_t
authlimit_take_key(struct authlimit *al, const char *key, uint64_t now_ms,
		   struct authlimit_ticket *t)
{
	uint64_t wait;

	if (al->limit == 0 || t->key_charged)
		return 0;
	if ((wait = closed_for(al, &al->keys, key, strlen(key), now_ms)) > 0)
		return wait;
	t->key_start = charge(al, &al->keys, key, strlen(key), now_ms);
	t->key_charged = 1;
	return 0;
}

static void
uncharge(struct authlimit *al, struct authlimit_table *t, const void *k,
	 size_t n, uint64_t start)
{
	/* The window charged, if it is still there. */
	size_t i = find(al, t, k, n, start, 0);

	if (i != SIZE_MAX && t->start[i] == start && t->count[i] > 0)
		t->count[i]--;
}

void
authlimit_refund(struct authlimit *al, const char *key,
		 const struct sockaddr_storage *addr,
		 const struct authlimit_ticket *t)
{
	uint8_t a[16];

	if (al->limit == 0)
		return;
	if (t->addr_charged) {
		addr_key(addr, a);
		uncharge(al, &al->addrs, a, sizeof(a), t->addr_start);
	}
	if (t->key_charged && key != NULL)
		uncharge(al, &al->keys, key, strlen(key), t->key_start);
}

static void
table_free(struct authlimit_table *t)
{
	UTIL_FREE(t->start);
	UTIL_FREE(t->count);
	UTIL_FREE(t->len);
	UTIL_FREE(t->key);
}

void
authlimit_free(struct authlimit *al)
{
	table_free(&al->keys);
	table_free(&al->addrs);
}
