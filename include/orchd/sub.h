/*
 * sub: event subscriptions (PROTOCOL.md sections 3 and 6), pure logic.
 *
 * A subscription is a set of event-type patterns -- "*" (everything the
 * connection's scopes allow), "family.*" (a family) or an exact type --
 * plus an optional set of channel ids.  Both sets are stored packed in one
 * allocation each, sized to what was subscribed, so a connection that
 * subscribed to a few types costs a few dozen bytes.
 */
#ifndef ORCHD_SUB_H
#define ORCHD_SUB_H

#include <stddef.h>

#define SUB_MAX_TYPES 50     /* per connection (LIMIT_EXCEEDED beyond) */
#define SUB_MAX_CHANNELS 500 /* per connection (LIMIT_EXCEEDED beyond) */
#define SUB_MAX_LEN 64       /* one type, pattern or channel id */

struct sub_list {
	char *buf;  /* n NUL-terminated strings back to back */
	size_t len; /* bytes used in buf */
	unsigned n;
};

struct sub {
	struct sub_list types;
	struct sub_list channels; /* n == 0: every channel */
};

/*
 * Is p a valid pattern: "*", "family.*" or an exact type made of
 * [A-Za-z0-9_.:-], at most SUB_MAX_LEN bytes, not starting or ending with
 * a dot?  1 yes, 0 no.
 */
int sub_pattern_valid(const char *p);
/* Is c a valid channel id (1..SUB_MAX_LEN printable, no spaces)? */
int sub_channel_valid(const char *c);

/* Does pattern match the event type? */
int sub_match(const char *pattern, const char *type);

/*
 * The scope an event family requires (PROTOCOL.md section 6): "message.*"
 * -> "messages:read", ...; NULL when none is required ("system.*", and
 * families the protocol does not name).  Takes a type or a pattern; for
 * "*" it returns NULL (the scope is then checked per event).
 */
const char *sub_scope_for(const char *type_or_pattern);

/* Set operations; 0 ok, -1 over the limit (nothing changed). */
int sub_list_add(struct sub_list *l, const char *s, unsigned max);
int sub_list_remove(struct sub_list *l, const char *s);
int sub_list_has(const struct sub_list *l, const char *s);
void sub_list_clear(struct sub_list *l);
/* Iterate: pass NULL first; returns NULL after the last. */
const char *sub_list_next(const struct sub_list *l, const char *prev);

/* Should an event of type (and channel, may be NULL) be delivered? */
int sub_wants(const struct sub *s, const char *type, const char *channel);
void sub_free(struct sub *s);

#endif
