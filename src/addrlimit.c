/* addrlimit: per-address connection rate. */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "orchd/addrlimit.h"
#include "orchd/util.h"

void
addrlimit_init(struct addrlimit *al, unsigned per_second, int workers)
{
	memset(al, 0, sizeof(*al));
	al->rate = per_second == 0
			   ? 0
			   : (double)per_second / (workers > 0 ? workers : 1);
}

void
addrlimit_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		key[10] = key[11] = 0xff;
		memcpy(key + 12, &a->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		memcpy(key, &a->sin6_addr, 16);
	}
}

static uint32_t
addr_hash(const uint8_t key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

int
addrlimit_allow(struct addrlimit *al, const struct sockaddr_storage *ss,
		uint64_t now_ms)
{
	struct addrlimit_slot *s;
	uint8_t key[16];
	double burst;

	if (al->rate <= 0)
		return 1;
	if (al->slots == NULL)
		al->slots = util_calloc(ADDRLIMIT_SLOTS, sizeof(*al->slots));
	addrlimit_key(ss, key);
	s = &al->slots[addr_hash(key) % ADDRLIMIT_SLOTS];
	if (memcmp(s->key, key, 16) != 0) {
		memcpy(s->key, key, 16);
		memset(&s->rl, 0, sizeof(s->rl));
	}
	/* A second's worth of burst, at least one connection. */
	burst = al->rate < 1.0 ? 1.0 : al->rate;
	return ratelimit_take(&s->rl, now_ms, al->rate, 1000, burst, NULL);
}

void
addrlimit_free(struct addrlimit *al)
{
	UTIL_FREE(al->slots);
}
