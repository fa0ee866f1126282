/*
 * feed: the relay's input, event records read from Redis.
 *
 * A subscriber connection listens on daemon:events and daemon:events:*
 * (pub/sub, at-most-once), re-subscribing after every reconnect; with
 * event_stream on, a second connection reads the stream event_stream_key
 * with XREAD and resumes after the last entry it read (in memory) or, after
 * a restart, after the last entry the relay committed (kept in Redis under
 * KEY:orchd-last-id).  A canary checks the subscription end to end: a
 * token published on a private channel must come back within redis_timeout,
 * else the subscriber is reconnected.  With "redis sentinel ...", every
 * (re)connect first asks the sentinels for the master.
 *
 * Nothing blocks, nothing is buffered without bound, and feed_free() may be
 * called from inside either callback.
 */
#ifndef ORCHD_FEED_H
#define ORCHD_FEED_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "orchd/config.h"

/* Bytes of an organization id taken from a channel name. */
#define FEED_ORG_MAX 63
/* Bytes of a stream entry id ("18446744073709551615-18446744073709551615"). */
#define FEED_STREAM_ID_MAX 41

struct feed;

struct feed_callbacks {
	/*
	 * One record.  org: the organization of the channel
	 * daemon:events:{org}; NULL for the global channel daemon:events and
	 * for stream entries.  stream_id: the entry id for stream entries
	 * (NUL-terminated), NULL for pub/sub.  buf/len: the message bytes (not
	 * NUL-terminated), valid during the call only.  A record may be larger
	 * than max_event_size: the caller validates.
	 */
	void (*record)(void *arg, const char *org, const char *buf, size_t len,
		       const char *stream_id);
	/* The subscription came up (1) or went down (0). */
	void (*state)(void *arg, int subscribed);
};

struct feed *feed_new(struct ev_loop *loop, const struct config *cfg,
		      const struct feed_callbacks *cb, void *arg);
/* Disconnect and free; safe from inside a callback.  NULL is a no-op. */
void feed_free(struct feed *f);
/* Subscribed to both daemon:events and daemon:events:* right now. */
int feed_subscribed(const struct feed *f);

/*
 * The relay has durably handled stream entry id (calls come in stream
 * order, possibly late).  The newest such id is persisted with SET in
 * KEY:orchd-last-id, at most one SET in flight (newer ids coalesce).
 */
void feed_stream_commit(struct feed *f, const char *id);

struct feed_stats {
	uint64_t connects;        /* connections up (subscriber and stream) */
	uint64_t reconnects;      /* connections lost or dropped by us */
	uint64_t messages;        /* pub/sub records passed on */
	uint64_t stream_entries;  /* stream records passed on */
	uint64_t canary_sent;     /* canary tokens published */
	uint64_t canary_ok;       /* ... that came back in time */
	uint64_t canary_failures; /* ... that did not: subscriber reconnected */
	uint64_t stream_errors;   /* entries skipped, error replies */
	uint64_t channel_errors;  /* messages on a malformed channel, skipped */
	uint64_t oversized;       /* replies over the size bound: reconnected */
};
void feed_get_stats(const struct feed *f, struct feed_stats *st);

#endif
