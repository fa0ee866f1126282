/* proto_int: what proto.c and auth.c share; not for other modules. */
#ifndef ORCHD_PROTO_INT_H
#define ORCHD_PROTO_INT_H

#include "orchd/json.h"
#include "orchd/jwt.h"
#include "orchd/proto.h"

struct conn;

uint64_t proto_now(const struct conn *c);
void proto_msg_begin(struct json_writer *jw, char *buf, size_t cap,
		     const char *type);
int proto_msg_send(struct conn *c, struct json_writer *jw);
void proto_send_error(struct conn *c, const char *code, const char *message,
		      const char *field);
unsigned proto_scope_mask(const char (*scopes)[JWT_SCOPE_SIZE], unsigned n);
int proto_may_receive(const struct proto_conn *p, const char *type);

void proto_handle_auth(struct conn *c, const struct json_doc *d, int payload);
void proto_handle_heartbeat(struct conn *c, const struct json_doc *d,
			    int payload);
void proto_ack_events(struct conn *c, const struct json_doc *d, int ids);
/* Handle the messages held while auth was in flight. */
void proto_replay_held(struct conn *c);
/* Release the quota slot and the session keys; cancel auth in flight. */
void proto_auth_cleanup(struct conn *c);

#endif
