/* ratelimit: token bucket. */
#include "config.h"

#include <stddef.h>

#include "orchd/ratelimit.h"

int
ratelimit_take(struct ratelimit *rl, uint64_t now_ms, double rate,
	       uint64_t period_ms, double burst, uint64_t *retry_ms)
{
	double per_ms = rate / (double)(period_ms ? period_ms : 1);

	if (!rl->primed) {
		rl->tokens = burst;
		rl->last_ms = now_ms;
		rl->primed = 1;
	}
	if (now_ms > rl->last_ms) {
		rl->tokens += (double)(now_ms - rl->last_ms) * per_ms;
		if (rl->tokens > burst)
			rl->tokens = burst;
		rl->last_ms = now_ms;
	}
	if (rl->tokens >= 1.0) {
		rl->tokens -= 1.0;
		if (retry_ms != NULL)
			*retry_ms = 0;
		return 1;
	}
	if (retry_ms != NULL)
		*retry_ms = per_ms > 0
				    ? (uint64_t)((1.0 - rl->tokens) / per_ms) + 1
				    : UINT64_MAX;
	return 0;
}
