/*
 * fuzz_proto: the client messages of the daemon protocol (auth, heartbeat,
 * subscribe, unsubscribe, ack), parsed and checked as proto_message() and
 * its handlers do, with the same pure functions: json_parse() with the
 * message limits, the type and payload envelope, the auth fields and
 * jwt_verify(), auth_heartbeat_validate(), the subscription patterns and
 * lists of sub.c.  proto_message() itself needs a live connection (it
 * answers on the socket and counts in shared memory): see FUZZING.md.
 *
 * Input: one text message.
 * Invariants: a heartbeat that validates has status active, idle or busy;
 * an accepted subscription is valid patterns that its list then holds, and
 * an event of an exact subscribed type is wanted; an unsubscribe removes;
 * a verified token names a non-empty orchestrator.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "orchd/auth.h"
#include "orchd/event.h"
#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/sub.h"

FUZZ_DECLARE(proto);

/* proto.c and auth.c's limits. */
#define TOKEN_MAX 8192
#define ACK_MAX 1000
#define ID_MAX 64

static struct jwt_keyring *kr;

int
FUZZ_INIT(proto)(int *argc, char ***argv)
{
	static const char secret[] = "fuzz-secret-0123456789abcdef-0123";

	kr = jwt_keyring_new();
	if (kr == NULL || jwt_keyring_set_secret(kr, secret, strlen(secret)))
		abort();
	return 0;
}

/* auth.c's get_field(): a string of 1..cap-1 bytes. */
static int
get_field(const struct json_doc *d, int payload, const char *key, char *out,
	  size_t cap)
{
	int t = json_obj_get(d, payload, key);
	size_t len = 0;

	if (json_type(d, t) != JSON_STRING ||
	    json_get_string(d, t, out, cap, &len) != 0 || len == 0)
		return -1;
	FUZZ_ASSERT(len < cap && strlen(out) == len);
	return 0;
}

static void
auth(const struct json_doc *d, int payload)
{
	static char token[TOKEN_MAX + 1];
	char daemon[ID_MAX], orch[ID_MAX], err[256];
	struct jwt_policy pol;
	struct jwt_claims cl;
	int rf;
	int64_t v;

	if (payload < 0 ||
	    get_field(d, payload, "accessToken", token, sizeof(token)) != 0 ||
	    get_field(d, payload, "daemonId", daemon, sizeof(daemon)) != 0 ||
	    (get_field(d, payload, "orchestratorId", orch, sizeof(orch)) != 0 &&
	     get_field(d, payload, "vpId", orch, sizeof(orch)) != 0))
		return;
	rf = json_obj_get(d, payload, "resumeFrom");
	if (rf >= 0 && !json_is_null(d, rf) &&
	    (json_get_int64(d, rf, &v) != 0 || v < 0))
		return;
	jwt_policy_init(&pol);
	pol.now = 1700000000;
	pol.max_len = TOKEN_MAX;
	if (jwt_verify(kr, &pol, token, strlen(token), &cl, err, sizeof(err)) ==
	    JWT_OK)
		FUZZ_ASSERT(cl.orchestrator[0] != '\0');
}

static void
heartbeat(const struct json_doc *d, int payload)
{
	char status[16];
	const char *field = NULL;

	if (auth_heartbeat_validate(d, payload, status, sizeof(status),
				    &field) != 0) {
		FUZZ_ASSERT(field != NULL);
		return;
	}
	FUZZ_ASSERT(strcmp(status, "active") == 0 ||
		    strcmp(status, "idle") == 0 || strcmp(status, "busy") == 0);
}

/* proto.c's string_array(): the array token, -2 absent, -1 refused. */
static int
string_array(const struct json_doc *d, int payload, const char *key,
	     unsigned max, int optional, int (*valid)(const char *))
{
	int arr = json_obj_get(d, payload, key), n;
	char s[EVENT_ID_MAX];

	if (arr < 0 && optional)
		return -2;
	if (json_type(d, arr) != JSON_ARRAY)
		return -1;
	n = json_array_len(d, arr);
	if (n < 1 || (unsigned)n > max)
		return -1;
	for (int t = json_first(d, arr); t >= 0; t = json_next(d, t))
		if (json_get_string(d, t, s, sizeof(s), NULL) != 0 || !valid(s))
			return -1;
	return arr;
}

static int
id_valid(const char *s)
{
	return s[0] != '\0';
}

static void
subscribe(const struct json_doc *d, int payload, int unsub)
{
	struct sub sub;
	char s[SUB_MAX_LEN + 1];
	int types, chans;

	types = string_array(d, payload, "eventTypes", SUB_MAX_TYPES, 0,
			     sub_pattern_valid);
	if (types < 0)
		return;
	chans = unsub ? -2
		      : string_array(d, payload, "channelIds", SUB_MAX_CHANNELS,
				     1, sub_channel_valid);
	if (chans == -1)
		return;
	memset(&sub, 0, sizeof(sub));
	for (int t = json_first(d, types); t >= 0; t = json_next(d, t)) {
		size_t len;

		/* Valid patterns fit SUB_MAX_LEN, as proto.c assumes. */
		FUZZ_ASSERT(json_get_string(d, t, s, sizeof(s), &len) == 0);
		(void)sub_scope_for(s);
		if (sub_list_add(&sub.types, s, SUB_MAX_TYPES) == -1)
			break;
		FUZZ_ASSERT(sub_list_has(&sub.types, s));
		if (strchr(s, '*') == NULL && chans < 0)
			FUZZ_ASSERT(sub_wants(&sub, s, NULL));
	}
	if (chans >= 0)
		for (int t = json_first(d, chans); t >= 0;
		     t = json_next(d, t)) {
			FUZZ_ASSERT(json_get_string(d, t, s, sizeof(s), NULL) ==
				    0);
			sub_list_add(&sub.channels, s, SUB_MAX_CHANNELS);
			FUZZ_ASSERT(sub_list_has(&sub.channels, s));
		}
	if (unsub) {
		for (int t = json_first(d, types); t >= 0;
		     t = json_next(d, t)) {
			json_get_string(d, t, s, sizeof(s), NULL);
			sub_list_remove(&sub.types, s);
			FUZZ_ASSERT(!sub_list_has(&sub.types, s));
		}
		FUZZ_ASSERT(sub.types.n == 0);
	}
	sub_free(&sub);
}

int
FUZZ_ENTRY(proto)(const uint8_t *data, size_t size)
{
	struct json_limits lim = {.max_size = 0,
				  .max_tokens = 4096,
				  .max_depth = 16,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	char type[32];
	int root, t, payload;

	if (kr == NULL)
		FUZZ_INIT(proto)(NULL, NULL);
	if (json_parse(&d, (const char *)data, size, &lim) != 0)
		return 0;
	root = json_root(&d);
	t = json_obj_get(&d, root, "type");
	if (json_type(&d, t) != JSON_STRING ||
	    json_get_string(&d, t, type, sizeof(type), NULL) != 0)
		goto out;
	payload = json_obj_get(&d, root, "payload");
	if (payload >= 0 && json_type(&d, payload) != JSON_OBJECT)
		goto out;
	if (strcmp(type, "auth") == 0)
		auth(&d, payload);
	else if (strcmp(type, "heartbeat") == 0)
		heartbeat(&d, payload);
	else if (strcmp(type, "subscribe") == 0)
		subscribe(&d, payload, 0);
	else if (strcmp(type, "unsubscribe") == 0)
		subscribe(&d, payload, 1);
	else if (strcmp(type, "ack") == 0)
		(void)string_array(&d, payload, "eventIds", ACK_MAX, 0,
				   id_valid);
out:
	json_doc_free(&d);
	return 0;
}
