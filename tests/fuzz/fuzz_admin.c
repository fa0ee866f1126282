/*
 * fuzz_admin: the admin socket's request parser (admin_request_parse, in
 * admin_proto.c), as the relay runs it on each line, and the error reply
 * the client then gets.
 *
 * Input: one request line (without its newline).
 * Invariants: a refusal has a reason, and the error reply carrying it is
 * one line of valid JSON (orchctl parses it); an accepted request obeys
 * the command's rules (a kick has a selector, a daemon comes with an
 * orchestrator, a revoke has a jti, a publish's event lies inside the line
 * and is a record event_parse() accepts, a drain names a worker, a level
 * is a syslog level); its strings are NUL-terminated within their fields.
 */
#include "fuzz.h"

#include <string.h>
#include <syslog.h>

#include "orchd/admin.h"
#include "orchd/event.h"
#include "orchd/json.h"

FUZZ_DECLARE(admin);

#define MAX_EVENT 4096

static void
check_reply(const char *msg)
{
	static char out[1024];
	struct json_doc d;
	size_t n = admin_reply_error(out, sizeof(out), msg);

	FUZZ_ASSERT(n > 0 && out[n - 1] == '\n' && out[n] == '\0');
	FUZZ_ASSERT(memchr(out, '\n', n - 1) == NULL);
	FUZZ_ASSERT(json_parse(&d, out, n - 1,
			       &(struct json_limits){
				   .flags = JSON_REQUIRE_OBJECT}) == 0);
	json_doc_free(&d);
}

static void
check_request(const struct admin_request *rq, const char *line, size_t len)
{
	FUZZ_ASSERT(rq->cmd >= ADMIN_STATUS && rq->cmd <= ADMIN_DRAIN);
	FUZZ_ASSERT(memchr(rq->orchestrator, '\0', sizeof(rq->orchestrator)));
	FUZZ_ASSERT(memchr(rq->daemon, '\0', sizeof(rq->daemon)));
	FUZZ_ASSERT(memchr(rq->organization, '\0', sizeof(rq->organization)));
	FUZZ_ASSERT(memchr(rq->reason, '\0', sizeof(rq->reason)));
	FUZZ_ASSERT(memchr(rq->jti, '\0', sizeof(rq->jti)));
	FUZZ_ASSERT(!(rq->has & ADMIN_HAS_DAEMON) ||
		    (rq->has & ADMIN_HAS_ORCH));
	FUZZ_ASSERT(rq->limit <= ADMIN_LIST_MAX);
	switch (rq->cmd) {
	case ADMIN_KICK:
		FUZZ_ASSERT(rq->has & (ADMIN_HAS_ORCH | ADMIN_HAS_CONN));
		break;
	case ADMIN_REVOKE:
		FUZZ_ASSERT(rq->jti[0] != '\0');
		break;
	case ADMIN_PUBLISH: {
		struct event ev;
		char err[128];

		FUZZ_ASSERT(rq->event != NULL && rq->event >= line &&
			    rq->event + rq->event_len <= line + len);
		FUZZ_ASSERT(event_parse(&ev, rq->event, rq->event_len,
					MAX_EVENT, err,
					sizeof(err)) == EVENT_OK);
		event_free(&ev);
		break;
	}
	case ADMIN_DRAIN:
		FUZZ_ASSERT(rq->has & ADMIN_HAS_WORKER);
		break;
	case ADMIN_LOGLEVEL:
		FUZZ_ASSERT(rq->level == -1 ||
			    (rq->level >= LOG_ERR && rq->level <= LOG_DEBUG));
		if (rq->level != -1)
			FUZZ_ASSERT(admin_level_name(rq->level) != NULL);
		break;
	default:
		break;
	}
	{
		struct registry_entry e;

		memset(&e, 0, sizeof(e));
		memcpy(e.orchestrator, rq->orchestrator,
		       sizeof(e.orchestrator));
		memcpy(e.daemon, rq->daemon, sizeof(e.daemon));
		memcpy(e.organization, rq->organization,
		       sizeof(e.organization));
		e.worker =
		    (rq->has & ADMIN_HAS_CONN) ? rq->conn_worker : rq->worker;
		e.conn_id = rq->conn_id;
		/* An entry made of the request's own selectors matches it. */
		if (!((rq->has & ADMIN_HAS_CONN) &&
		      (rq->has & ADMIN_HAS_WORKER) &&
		      rq->conn_worker != rq->worker))
			FUZZ_ASSERT(admin_entry_matches(rq, &e));
	}
}

int
FUZZ_INIT(admin)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(admin)(const uint8_t *data, size_t size)
{
	struct admin_request rq;
	char err[256];
	const char *line = (const char *)data;
	int rc;

	if (size > ADMIN_LINE_MAX)
		return 0;
	memset(err, 0, sizeof(err));
	rc = admin_request_parse(line, size, MAX_EVENT, &rq, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 || rc == -1);
	if (rc == -1) {
		FUZZ_ASSERT(err[0] != '\0' &&
			    memchr(err, '\0', sizeof(err)) != NULL);
		check_reply(err);
		return 0;
	}
	check_request(&rq, line, size);
	return 0;
}
