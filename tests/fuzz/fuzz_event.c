/*
 * fuzz_event: event records as the relay reads them from Redis
 * (event_parse_ctx), and what is built from an accepted one.
 *
 * Input: byte 0 picks the channel (bit 0: daemon:events:acme, else the
 * global one) and the size limit (bit 1: 512 bytes, else the default);
 * the rest is the record.
 * Invariants: a refusal has a kind and a message; an accepted record has
 * an id, a type and a payload object within the limit, a priority within
 * its range, the channel's organization; its durable queue body parses
 * back to the same event; its `event` message is a JSON object within the
 * size hint.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/event.h"
#include "orchd/json.h"

FUZZ_DECLARE(event);

static void
same_event(const struct event *a, const struct event *b)
{
	FUZZ_ASSERT(strcmp(a->id, b->id) == 0);
	FUZZ_ASSERT(strcmp(a->type, b->type) == 0);
	FUZZ_ASSERT(strcmp(a->orch, b->orch) == 0);
	FUZZ_ASSERT(strcmp(a->daemon, b->daemon) == 0);
	FUZZ_ASSERT(strcmp(a->org, b->org) == 0);
	FUZZ_ASSERT(strcmp(a->workspace, b->workspace) == 0);
	FUZZ_ASSERT(strcmp(a->channel, b->channel) == 0);
	FUZZ_ASSERT(a->payload_len == b->payload_len &&
		    memcmp(a->payload, b->payload, a->payload_len) == 0);
	FUZZ_ASSERT(a->ts_ms == b->ts_ms);
	FUZZ_ASSERT(a->priority == b->priority);
	FUZZ_ASSERT(a->requires_ack == b->requires_ack);
	FUZZ_ASSERT(a->target == b->target);
}

static void
check_accepted(const struct event *ev, size_t max_size, const char *org)
{
	struct event back;
	struct json_doc d;
	char err[128], *buf;
	size_t hint, n;

	FUZZ_ASSERT(ev->id[0] != '\0' && ev->type[0] != '\0');
	FUZZ_ASSERT(ev->payload != NULL && ev->payload_len <= max_size);
	FUZZ_ASSERT(ev->payload[0] == '{' &&
		    ev->payload[ev->payload_len] == '\0');
	FUZZ_ASSERT(ev->priority >= EVENT_PRIORITY_MIN &&
		    ev->priority <= EVENT_PRIORITY_MAX);
	FUZZ_ASSERT(org == NULL || strcmp(ev->org, org) == 0);
	FUZZ_ASSERT(event_target(ev) == ev->target);
	FUZZ_ASSERT(ev->target != EVENT_TARGET_ORCHESTRATOR ||
		    ev->orch[0] != '\0');
	FUZZ_ASSERT(ev->daemon[0] == '\0' || ev->orch[0] != '\0');
	(void)event_scope(ev);
	(void)event_targets_orchestrator(ev, "o1", "acme");
	(void)event_targets_daemon(ev, "d1");

	/* The durable queue body reads back as the same event. */
	hint = event_queue_body_size_hint(ev);
	buf = malloc(hint);
	FUZZ_ASSERT(buf != NULL);
	n = event_queue_body(ev, buf, hint);
	FUZZ_ASSERT(n > 0 && n <= hint);
	FUZZ_ASSERT(event_queue_body(ev, buf, n - 1) == 0);
	FUZZ_ASSERT(event_parse_queue_body(&back, buf, n, max_size, err,
					   sizeof(err)) == EVENT_OK);
	same_event(ev, &back);
	event_free(&back);
	free(buf);

	/* The message sent to daemons. */
	hint = event_message_size_hint(ev);
	buf = malloc(hint);
	FUZZ_ASSERT(buf != NULL);
	n = event_message(ev, 42, buf, hint);
	FUZZ_ASSERT(n > 0 && n <= hint);
	FUZZ_ASSERT(json_parse(&d, buf, n,
			       &(struct json_limits){
				   .max_size = hint,
				   .max_tokens = 1u << 20,
				   .max_depth = EVENT_MAX_DEPTH + 4,
				   .flags = JSON_REQUIRE_OBJECT}) == 0);
	FUZZ_ASSERT(
	    json_str_eq(&d, json_obj_get(&d, json_root(&d), "type"), "event"));
	json_doc_free(&d);
	free(buf);
}

int
FUZZ_INIT(event)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(event)(const uint8_t *data, size_t size)
{
	struct event ev;
	const char *org;
	size_t max_size;
	char err[128];
	int rc;

	if (size < 1)
		return 0;
	org = (data[0] & 1) ? "acme" : NULL;
	max_size = (data[0] & 2) ? 512 : EVENT_DEFAULT_MAX_SIZE;
	memset(err, 'x', sizeof(err));
	rc = event_parse_ctx(&ev, (const char *)data + 1, size - 1, max_size,
			     org, err, sizeof(err));
	if (rc != EVENT_OK) {
		FUZZ_ASSERT(rc > EVENT_OK && rc < EVENT_NKINDS);
		FUZZ_ASSERT(event_kind_name(rc) != NULL);
		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
	} else {
		check_accepted(&ev, max_size, org);
		event_free(&ev);
	}
	/* The replay path reads any text too. */
	rc = event_parse_queue_body(&ev, (const char *)data + 1, size - 1,
				    max_size, err, sizeof(err));
	if (rc == EVENT_OK)
		event_free(&ev);
	return 0;
}
