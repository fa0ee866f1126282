/*
 * worker_ctl: operator commands in a worker (see worker_ctl.h).
 *
 * A kick closes through the same path as a disabled orchestrator
 * (directory.c): wsconn_close() with 4006, which starts the close
 * handshake; proto_end() then gives the quota slot back.
 */
#include "config.h"

#include <string.h>

#include "orchd/conn.h"
#include "orchd/ipc.h"
#include "orchd/log.h"
#include "orchd/proto.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/worker_ctl.h"
#include "orchd/wsconn.h"

/*
 * Tokens revoked lately.  An auth whose Redis check passed just before the
 * revocation (and that was still waiting for the directory when the kick
 * came) is refused by auth_complete() with this; past REVOKED_MS the
 * Redis check alone covers every new auth.  At the bound the oldest goes.
 */
#define REVOKED_MAX 64
#define REVOKED_MS 60000

static struct {
	char jti[IPC_KICK_JTI_MAX + 1];
	uint64_t at_ms;
} revoked[REVOKED_MAX];
static unsigned revoked_next;

static void
revoked_add(const char *jti)
{
	util_strlcpy(revoked[revoked_next].jti, jti, sizeof(revoked[0].jti));
	revoked[revoked_next].at_ms = util_now_ms();
	revoked_next = (revoked_next + 1) % REVOKED_MAX;
}

int
worker_ctl_revoked(const struct worker *w, const char *jti)
{
	uint64_t now = util_now_ms();

	(void)w;
	if (jti[0] == '\0')
		return 0;
	for (unsigned i = 0; i < REVOKED_MAX; i++)
		if (revoked[i].at_ms != 0 &&
		    now - revoked[i].at_ms < REVOKED_MS &&
		    strcmp(revoked[i].jti, jti) == 0)
			return 1;
	return 0;
}

/* A (pointer, length) string of the frame, NUL-terminated into out. */
static void
cstr(char *out, size_t cap, const char *s, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	if (len > 0)
		memcpy(out, s, len);
	out[len] = '\0';
}

/*
 * An authenticated daemon connection: open, not closing, past the first
 * auth (its ids are set once its quota slot is taken).
 */
static struct proto_conn *
authed_proto(struct conn *c)
{
	struct proto_conn *p = c->proto;

	if (p == NULL || p->ended || c->state != CONN_WS_OPEN ||
	    p->state == PROTO_UNAUTH || p->orch[0] == '\0')
		return NULL;
	return p;
}

static int
kick_matches(const struct proto_conn *p, const struct ipc_kick *k,
	     const char *orch, const char *daemon, const char *jti)
{
	if ((k->match & IPC_KICK_ORCH) && strcmp(p->orch, orch) != 0)
		return 0;
	if ((k->match & IPC_KICK_DAEMON) && strcmp(p->daemon, daemon) != 0)
		return 0;
	if ((k->match & IPC_KICK_CONN) &&
	    (!p->has_slot || p->conn_id != k->conn_id))
		return 0;
	if ((k->match & IPC_KICK_JTI) && strcmp(p->jti, jti) != 0)
		return 0;
	return 1;
}

unsigned
worker_ctl_kick(struct worker *w, const struct ipc_kick *k)
{
	char orch[IPC_EVENT_NAME_MAX + 1], daemon[IPC_EVENT_NAME_MAX + 1];
	char jti[IPC_KICK_JTI_MAX + 1], reason[IPC_KICK_REASON_MAX + 1];
	struct conn *c, *next;
	unsigned n = 0;

	cstr(orch, sizeof(orch), k->orchestrator, k->orchestrator_len);
	cstr(daemon, sizeof(daemon), k->daemon, k->daemon_len);
	cstr(jti, sizeof(jti), k->jti, k->jti_len);
	cstr(reason, sizeof(reason), k->reason, k->reason_len);
	if (reason[0] == '\0')
		memcpy(reason, "terminated", sizeof("terminated"));
	if (k->match == IPC_KICK_JTI)
		revoked_add(jti);
	for (c = w->conns; c != NULL; c = next) {
		struct proto_conn *p;

		next = c->next;
		if ((p = authed_proto(c)) == NULL ||
		    !kick_matches(p, k, orch, daemon, jti))
			continue;
		log_info("%s: closing %s/%s with 4006: %s", __func__, p->orch,
			 p->daemon, reason);
		wsconn_close(c, PROTO_CLOSE_TERMINATED, reason);
		n++;
	}
	if (n > 0)
		log_notice("%s: %u connections closed by an operator (%s)",
			   __func__, n, reason);
	return n;
}

void
worker_ctl_loglevel(struct worker *w, int level)
{
	(void)w;
	log_set_level(level);
	log_notice("%s: log level set by an operator", __func__);
}

void
worker_ctl_drain(struct worker *w, const char *reason)
{
	log_notice("%s: draining on an operator's request", __func__);
	worker_drain(w, reason);
}
