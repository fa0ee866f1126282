/*
 * worker_admin: the operator pages a worker serves on every listener --
 * GET /metrics (Prometheus text), GET /stats (JSON, docs/OPERATIONS.md)
 * and GET /status (the embedded status page) -- to admin clients only: a
 * peer in admin_allow, a client of a "listen ... admin" listener, or a
 * request with "Authorization: Bearer <admin_token_file's token>".
 */
#ifndef ORCHD_WORKER_ADMIN_H
#define ORCHD_WORKER_ADMIN_H

#include "orchd/http.h"

struct conn;

/* Is the (decoded) path one of the admin pages? */
int worker_admin_handles(const char *path);
/* Answer the request (403 to anyone else, 405 to other methods). */
void worker_admin_dispatch(struct conn *c, const struct http_request *req,
			   const char *path);
/* May this request read the admin pages?  1 yes, 0 no. */
int worker_admin_access(const struct conn *c, const struct http_request *req);

#endif
