/*
 * worker_admin: /metrics, /stats and /status (PROTOCOL.md section 7).
 *
 * Whichever worker a scrape lands on answers for the whole daemon: the
 * snapshot reads every worker's counter block, the relay's and the
 * registry in shared memory (src/metrics.c), so no process is asked
 * anything.  The output buffer starts small and doubles up to
 * METRICS_MAX_OUTPUT; past that the answer is 500.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orchd/conn.h"
#include "orchd/directory.h"
#include "orchd/log.h"
#include "orchd/metrics.h"
#include "orchd/status_page.h"
#include "orchd/util.h"
#include "orchd/worker.h"
#include "orchd/worker_admin.h"

#define ADMIN_FIRST_BUF (64u * 1024u)
#define ADMIN_HEAD_ROOM 512 /* status line and headers */

int
worker_admin_handles(const char *path)
{
	return strcmp(path, "/metrics") == 0 || strcmp(path, "/stats") == 0 ||
	       strcmp(path, "/status") == 0;
}

int
worker_admin_access(const struct conn *c, const struct http_request *req)
{
	const struct config *cfg = c->w->cfg;
	const struct http_str *auth;

	if (c->admin ||
	    config_admin_allowed(cfg, (const struct sockaddr *)&c->peer))
		return 1;
	if (cfg->admin_token == NULL ||
	    (auth = http_header_get(req, "Authorization")) == NULL)
		return 0;
	/* RFC 6750: the scheme is case-insensitive, one space or more. */
	if (auth->len < 7 || strncasecmp(auth->p, "Bearer ", 7) != 0)
		return 0;
	{
		const char *t = auth->p + 7;
		size_t len = auth->len - 7;

		while (len > 0 && *t == ' ') {
			t++;
			len--;
		}
		return config_admin_token_ok(cfg, t, len);
	}
}

/* Queue the whole response; body may be NULL for a HEAD. */
static void
send_body(struct conn *c, const struct http_request *req, const char *ctype,
	  const char *body, size_t blen)
{
	size_t cap = blen + ADMIN_HEAD_ROOM;
	char *resp = util_malloc(cap);
	int keep = req->keep_alive && !c->w->draining;
	int n;

	n = http_format_response(resp, cap, 200, ctype, NULL, body, blen, keep,
				 req->method == HTTP_METHOD_HEAD);
	if (n < 0)
		conn_send_error(c, 500, NULL);
	else
		conn_send(c, resp, (size_t)n, keep);
	free(resp);
}

typedef int (*render_fn)(const struct metrics_snapshot *s, char *buf,
			 size_t cap, size_t *len);

static void
send_rendered(struct conn *c, const struct http_request *req, const char *ctype,
	      render_fn render)
{
	struct worker *w = c->w;
	struct metrics_snapshot *s = util_malloc(sizeof(*s));
	size_t cap = ADMIN_FIRST_BUF, len = 0;
	char *buf = NULL;
	int rc = -1;

	metrics_snapshot(s, w->shm, w->registry, w->cfg, w->dir != NULL,
			 w->dir != NULL && directory_ready(w->dir));
	for (; cap <= METRICS_MAX_OUTPUT; cap *= 2) {
		buf = util_realloc(buf, cap);
		if ((rc = render(s, buf, cap, &len)) == 0)
			break;
	}
	if (rc != 0) {
		log_warnx("%s: the document exceeds %u bytes", __func__,
			  METRICS_MAX_OUTPUT);
		conn_send_error(c, 500, NULL);
	} else {
		send_body(c, req, ctype, buf, len);
	}
	free(buf);
	free(s);
}

void
worker_admin_dispatch(struct conn *c, const struct http_request *req,
		      const char *path)
{
	if (!worker_admin_access(c, req)) {
		log_debug("%s: %s: %s refused (not in admin_allow, no admin "
			  "listener, no admin token)",
			  __func__, conn_peer_str(c), path);
		conn_send_error(c, 403, NULL);
		return;
	}
	if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) {
		conn_send_error(c, 405, "Allow: GET, HEAD\r\n");
		return;
	}
	if (strcmp(path, "/metrics") == 0)
		send_rendered(c, req,
			      "text/plain; version=0.0.4; charset=utf-8",
			      metrics_render_prometheus);
	else if (strcmp(path, "/stats") == 0)
		send_rendered(c, req, "application/json", metrics_render_json);
	else
		send_body(c, req, "text/html; charset=utf-8", status_html,
			  status_html_len);
}
