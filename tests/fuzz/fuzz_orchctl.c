/*
 * fuzz_orchctl: orchctl's parsers of what a server or the admin socket
 * sends back (src/orchctl/ctl_*.c): server messages of the listen client,
 * admin replies and their renderers, the upgrade response head, ws:// URLs,
 * JSON compaction and the token peek.
 *
 * Input: byte 0 picks the parser, the rest is its input.
 * Invariants: parsed strings are NUL-terminated within their fields and a
 * message's payload lies inside the input; a compacted valid JSON text
 * parses to the same number of values and is no longer than the input; a
 * parsed URL has a port in 1..65535 and a path starting with '/'.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/json.h"
#include "../../src/orchctl/ctl.h"

FUZZ_DECLARE(orchctl);

#define MAX_INPUT 65536

static FILE *devnull;
static char cbuf[MAX_INPUT + 1];

int
FUZZ_INIT(orchctl)(int *argc, char ***argv)
{
	devnull = fopen("/dev/null", "w");
	if (devnull == NULL)
		abort();
	return 0;
}

static void
server_msg(const char *buf, size_t len)
{
	struct ctl_server_msg m;
	char err[256];

	if (ctl_parse_server_msg(buf, len, &m, err, sizeof(err)) != 0) {
		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
		return;
	}
	FUZZ_ASSERT(memchr(m.type, '\0', sizeof(m.type)) != NULL);
	FUZZ_ASSERT(memchr(m.event_id, '\0', sizeof(m.event_id)) != NULL);
	FUZZ_ASSERT(memchr(m.code, '\0', sizeof(m.code)) != NULL);
	FUZZ_ASSERT(memchr(m.text, '\0', sizeof(m.text)) != NULL);
	if (m.payload != NULL)
		FUZZ_ASSERT(m.payload >= buf &&
			    m.payload + m.payload_len <= buf + len);
}

static void
compact(const char *buf, size_t len)
{
	struct json_doc a, b;
	struct json_limits lim = {.max_tokens = 1u << 20};
	size_t n = ctl_json_compact(buf, len, cbuf);

	FUZZ_ASSERT(n <= len && cbuf[n] == '\0');
	if (json_parse(&a, buf, len, &lim) != 0)
		return;
	FUZZ_ASSERT(json_parse(&b, cbuf, n, &lim) == 0);
	FUZZ_ASSERT(a.ntoks == b.ntoks);
	json_doc_free(&a);
	json_doc_free(&b);
}

int
FUZZ_ENTRY(orchctl)(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data + 1;
	size_t len;
	char err[256];

	if (size < 1 || size > MAX_INPUT)
		return 0;
	if (devnull == NULL)
		FUZZ_INIT(orchctl)(NULL, NULL);
	len = size - 1;
	switch (data[0] % 7) {
	case 0:
		server_msg(buf, len);
		break;
	case 1: {
		int rc = ctl_reply_ok(buf, len, err, sizeof(err));

		FUZZ_ASSERT(rc >= -1 && rc <= 1);
		if (rc != 1)
			FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
		break;
	}
	case 2:
		(void)ctl_render_status(buf, len, devnull);
		break;
	case 3:
		(void)ctl_render_connections(buf, len, 1700000000000ull,
					     devnull);
		break;
	case 4: {
		int status = 0;

		(void)ctl_ws_check_response(buf, len,
					    "dGhlIHNhbXBsZSBub25jZQ==", &status,
					    err, sizeof(err));
		break;
	}
	case 5: {
		struct ctl_url u;

		memcpy(cbuf, buf, len);
		cbuf[len] = '\0';
		if (ctl_parse_ws_url(cbuf, &u, err, sizeof(err)) == 0) {
			FUZZ_ASSERT(u.port >= 1 && u.port <= 65535);
			FUZZ_ASSERT(u.path[0] == '/');
			FUZZ_ASSERT(memchr(u.host, '\0', sizeof(u.host)));
		}
		break;
	}
	default:
		compact(buf, len);
		memcpy(cbuf, buf, len);
		cbuf[len] = '\0';
		{
			char orch[128], daemon[128];

			if (ctl_token_peek(cbuf, orch, sizeof(orch), daemon,
					   sizeof(daemon)) == 0)
				FUZZ_ASSERT(
				    memchr(orch, '\0', sizeof(orch)) &&
				    memchr(daemon, '\0', sizeof(daemon)));
		}
		break;
	}
	return 0;
}
