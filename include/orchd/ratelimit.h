/*
 * ratelimit: a token bucket, pure logic.
 *
 * rate tokens per period refill continuously; the bucket holds at most
 * burst tokens (a client may send burst messages at once, then rate per
 * period).  Times are monotonic milliseconds supplied by the caller.
 */
#ifndef ORCHD_RATELIMIT_H
#define ORCHD_RATELIMIT_H

#include <stdint.h>

struct ratelimit {
	double tokens;
	uint64_t last_ms;
	int primed;
};

/* Take one token: 1 allowed, 0 refused (*retry_ms: when one is back). */
int ratelimit_take(struct ratelimit *rl, uint64_t now_ms, double rate,
		   uint64_t period_ms, double burst, uint64_t *retry_ms);

#endif
