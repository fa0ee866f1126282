/*
 * ctl_proto: the rules of orchctl's reference daemon client (listen) that
 * need no socket: backoff, close codes, dedupe, and the messages.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"
#include "orchd/json.h"
#include "orchd/util.h"
#include "orchd/ws.h"

uint64_t
ctl_backoff_ms(unsigned attempt, uint32_t rnd)
{
	uint64_t cap = CTL_BACKOFF_BASE_MS;

	/* Doubling stops at the cap, so a large attempt cannot overflow. */
	for (unsigned i = 0; i < attempt && cap < CTL_BACKOFF_CAP_MS; i++)
		cap *= 2;
	if (cap > CTL_BACKOFF_CAP_MS)
		cap = CTL_BACKOFF_CAP_MS;
	return (uint64_t)rnd % (cap + 1);
}

/*
 * PROTOCOL.md section 5, for a client that runs unattended: it stops only
 * where reconnecting cannot help.  1000 (the server ended the session on
 * purpose), 4005 (the token lacks a scope) and 4006 (an operator kicked the
 * daemon or revoked its token: reconnecting would undo the operator's
 * decision) stop it, and so do the "fix the client" codes.  4001 and 4003
 * need a new token: minted ones are minted again, a given one cannot be
 * (the caller decides).  Everything else, 1006 (no close frame) included,
 * is transient.
 */
enum ctl_close_action
ctl_close_action(unsigned code)
{
	switch (code) {
	case 1000:
	case 1002:
	case 1003:
	case 1007:
	case 1009:
	case 1010:
	case 4005:
	case 4006:
		return CTL_CLOSE_STOP;
	case 4001:
	case 4003:
		return CTL_CLOSE_REAUTH;
	default:
		return CTL_CLOSE_RECONNECT;
	}
}

/* ---- dedupe ------------------------------------------------------------ */

int
ctl_dedupe_init(struct ctl_dedupe *d, size_t gen_cap)
{
	memset(d, 0, sizeof(*d));
	if (gen_cap == 0)
		gen_cap = 1;
	d->gen_cap = gen_cap;
	/* At most half full: probes stay short. */
	d->slots = 4;
	while (d->slots < gen_cap * 2)
		d->slots *= 2;
	for (int g = 0; g < 2; g++) {
		d->gen[g] = calloc(d->slots, sizeof(char *));
		if (d->gen[g] == NULL) {
			ctl_dedupe_free(d);
			return -1;
		}
	}
	return 0;
}

static void
gen_clear(struct ctl_dedupe *d, int g)
{
	for (size_t i = 0; i < d->slots; i++) {
		free(d->gen[g][i]);
		d->gen[g][i] = NULL;
	}
	d->n[g] = 0;
}

void
ctl_dedupe_free(struct ctl_dedupe *d)
{
	for (int g = 0; g < 2; g++) {
		if (d->gen[g] != NULL) {
			gen_clear(d, g);
			free(d->gen[g]);
		}
		d->gen[g] = NULL;
	}
}

/* FNV-1a. */
static size_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

/* The slot holding id, or the empty slot where it would go. */
static size_t
probe(const struct ctl_dedupe *d, int g, const char *id, size_t h)
{
	size_t i = h & (d->slots - 1);

	while (d->gen[g][i] != NULL && strcmp(d->gen[g][i], id) != 0)
		i = (i + 1) & (d->slots - 1);
	return i;
}

int
ctl_dedupe_check(struct ctl_dedupe *d, const char *id)
{
	size_t h = hash(id), i;
	char *copy;

	for (int g = 0; g < 2; g++)
		if (d->gen[g][probe(d, g, id, h)] != NULL)
			return 1;
	if (d->n[d->cur] >= d->gen_cap) {
		d->cur ^= 1;
		gen_clear(d, d->cur);
	}
	if ((copy = util_strdup(id)) == NULL)
		return -1;
	i = probe(d, d->cur, id, h);
	d->gen[d->cur][i] = copy;
	d->n[d->cur]++;
	return 0;
}

/* ---- resume ------------------------------------------------------------ */

void
ctl_resume_processed(struct ctl_resume *r, uint64_t seq)
{
	if (seq > r->processed)
		r->processed = seq;
}

void
ctl_resume_heartbeat_sent(struct ctl_resume *r)
{
	/* Full: the oldest answer is overdue; forget it (resume stays lower).
	 */
	if (r->nhb == CTL_RESUME_HB_MAX) {
		memmove(r->hb, r->hb + 1, sizeof(r->hb[0]) * (r->nhb - 1));
		r->nhb--;
	}
	r->hb[r->nhb++] = r->processed;
}

void
ctl_resume_heartbeat_ack(struct ctl_resume *r)
{
	if (r->nhb == 0)
		return; /* not ours (or forgotten): proves nothing */
	if (r->hb[0] > r->confirmed)
		r->confirmed = r->hb[0];
	memmove(r->hb, r->hb + 1, sizeof(r->hb[0]) * (r->nhb - 1));
	r->nhb--;
}

void
ctl_resume_new_connection(struct ctl_resume *r)
{
	r->nhb = 0;
}

/* ---- messages ---------------------------------------------------------- */

static int
msg_begin(struct json_writer *w, char *out, size_t cap, uint64_t now_ms,
	  const char *type)
{
	char id[37];

	if (json_uuid_v4(id) != 0)
		return -1;
	json_w_init(w, out, cap);
	json_w_obj_begin(w);
	json_w_key(w, "type");
	json_w_str(w, type);
	json_w_key(w, "id");
	json_w_str(w, id);
	json_w_key(w, "timestamp");
	json_w_timestamp(w, now_ms);
	json_w_key(w, "payload");
	return json_w_obj_begin(w);
}

static int
msg_end(struct json_writer *w, char *out, size_t cap)
{
	size_t len;

	json_w_obj_end(w);
	json_w_obj_end(w);
	if (json_w_finish(w, &len) != 0 || len >= cap)
		return -1;
	out[len] = '\0';
	return (int)len;
}

int
ctl_msg_auth(char *out, size_t cap, uint64_t now_ms, const char *token,
	     const char *orch, const char *daemon, uint64_t resume_from)
{
	struct json_writer w;

	if (msg_begin(&w, out, cap, now_ms, "auth") != 0)
		return -1;
	json_w_key(&w, "accessToken");
	json_w_str(&w, token);
	json_w_key(&w, "daemonId");
	json_w_str(&w, daemon);
	json_w_key(&w, "orchestratorId");
	json_w_str(&w, orch);
	if (resume_from > 0) {
		json_w_key(&w, "resumeFrom");
		json_w_uint(&w, resume_from);
	}
	return msg_end(&w, out, cap);
}

int
ctl_msg_subscribe(char *out, size_t cap, uint64_t now_ms,
		  const char *const *types, size_t ntypes)
{
	struct json_writer w;

	if (msg_begin(&w, out, cap, now_ms, "subscribe") != 0)
		return -1;
	json_w_key(&w, "eventTypes");
	json_w_arr_begin(&w);
	if (ntypes == 0)
		json_w_str(&w, "*");
	for (size_t i = 0; i < ntypes; i++)
		json_w_str(&w, types[i]);
	json_w_arr_end(&w);
	return msg_end(&w, out, cap);
}

int
ctl_msg_heartbeat(char *out, size_t cap, uint64_t now_ms)
{
	struct json_writer w;

	if (msg_begin(&w, out, cap, now_ms, "heartbeat") != 0)
		return -1;
	json_w_key(&w, "status");
	json_w_str(&w, "active");
	return msg_end(&w, out, cap);
}

int
ctl_msg_ack(char *out, size_t cap, uint64_t now_ms, const char *event_id)
{
	struct json_writer w;

	if (msg_begin(&w, out, cap, now_ms, "ack") != 0)
		return -1;
	json_w_key(&w, "eventIds");
	json_w_arr_begin(&w);
	json_w_str(&w, event_id);
	json_w_arr_end(&w);
	return msg_end(&w, out, cap);
}

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A string that may be too long for out: cut, never refused. */
static void
get_text(const struct json_doc *d, int tok, char *out, size_t cap)
{
	size_t need;

	if (json_get_string(d, tok, out, cap, &need) == JSON_E_NOSPACE) {
		char *tmp = malloc(need + 1);

		if (tmp != NULL &&
		    json_get_string(d, tok, tmp, need + 1, NULL) == 0)
			util_strlcpy(out, tmp, cap);
		free(tmp);
	}
}

int
ctl_parse_server_msg(const char *buf, size_t len, struct ctl_server_msg *m,
		     char *err, size_t errlen)
{
	struct json_limits lim = {.max_size = (size_t)-1 >> 1,
				  .max_tokens = 1u << 20,
				  .max_depth = 128,
				  .flags = JSON_REQUIRE_OBJECT};
	struct json_doc d;
	const char *raw;
	size_t rawlen;
	int p, rc;

	memset(m, 0, sizeof(*m));
	if (len > INT32_MAX)
		lim.max_size = INT32_MAX;
	if ((rc = json_parse(&d, buf, len, &lim)) != 0) {
		seterr(err, errlen, "not a JSON object: %s", json_strerror(rc));
		return -1;
	}
	if (json_get_string(&d, json_obj_get(&d, 0, "type"), m->type,
			    sizeof(m->type), NULL) != 0) {
		seterr(err, errlen, "no string \"type\"");
		json_doc_free(&d);
		return -1;
	}
	p = json_obj_get(&d, 0, "payload");
	if (json_type(&d, p) != JSON_OBJECT) {
		seterr(err, errlen, "%s: no \"payload\" object", m->type);
		json_doc_free(&d);
		return -1;
	}
	json_tok_raw(&d, p, &raw, &rawlen);
	m->payload = raw;
	m->payload_len = rawlen;
	if (strcmp(m->type, "event") == 0) {
		if (json_get_string(&d, json_obj_get(&d, p, "eventId"),
				    m->event_id, sizeof(m->event_id),
				    NULL) != 0 ||
		    m->event_id[0] == '\0') {
			seterr(err, errlen, "event without a usable eventId");
			json_doc_free(&d);
			return -1;
		}
		json_get_uint64(&d, json_obj_get(&d, p, "seq"), &m->seq);
		json_get_bool(&d, json_obj_get(&d, p, "requiresAck"),
			      &m->requires_ack);
	} else if (strcmp(m->type, "auth_success") == 0) {
		json_get_uint64(&d, json_obj_get(&d, p, "heartbeatIntervalMs"),
				&m->heartbeat_ms);
	} else if (strcmp(m->type, "reconnect") == 0) {
		json_get_uint64(&d, json_obj_get(&d, p, "delay"), &m->delay_ms);
		get_text(&d, json_obj_get(&d, p, "reason"), m->text,
			 sizeof(m->text));
	} else {
		get_text(&d, json_obj_get(&d, p, "code"), m->code,
			 sizeof(m->code));
		get_text(&d, json_obj_get(&d, p, "message"), m->text,
			 sizeof(m->text));
	}
	json_doc_free(&d);
	return 0;
}

size_t
ctl_json_compact(const char *in, size_t len, char *out)
{
	size_t n = 0;
	int instr = 0, esc = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (instr) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				instr = 0;
		} else if (c == '"') {
			instr = 1;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		}
		out[n++] = c;
	}
	out[n] = '\0';
	return n;
}

int
ctl_parse_ws_url(const char *url, struct ctl_url *u, char *err, size_t errlen)
{
	const char *p, *hend, *path;
	uint64_t port;
	size_t hl;

	memset(u, 0, sizeof(*u));
	if (strncmp(url, "ws://", 5) == 0) {
		p = url + 5;
		u->port = 80;
	} else if (strncmp(url, "wss://", 6) == 0) {
		p = url + 6;
		u->tls = 1;
		u->port = 443;
	} else {
		seterr(err, errlen, "the URL must start with ws:// or wss://");
		return -1;
	}
	path = p + strcspn(p, "/?#");
	if (*path == '#' || strchr(path, '#') != NULL) {
		seterr(err, errlen, "a URL fragment (#) is not allowed");
		return -1;
	}
	if (p[0] == '[') {
		hend = memchr(p, ']', (size_t)(path - p));
		if (hend == NULL) {
			seterr(err, errlen, "unclosed [ in the host");
			return -1;
		}
		hl = (size_t)(hend - p - 1);
		memcpy(u->host, p + 1, hl < sizeof(u->host) ? hl : 0);
		hend++;
	} else {
		hend = p + strcspn(p, ":/?");
		if (hend > path)
			hend = path;
		hl = (size_t)(hend - p);
		memcpy(u->host, p, hl < sizeof(u->host) ? hl : 0);
	}
	if (hl == 0 || hl >= sizeof(u->host) || strchr(u->host, '@')) {
		seterr(err, errlen, "no usable host in the URL");
		return -1;
	}
	if (*hend == ':') {
		char num[8];
		size_t nl = (size_t)(path - hend - 1);

		if (nl == 0 || nl >= sizeof(num)) {
			seterr(err, errlen, "bad port in the URL");
			return -1;
		}
		memcpy(num, hend + 1, nl);
		num[nl] = '\0';
		if (util_parse_u64(num, 1, 65535, &port) != 0) {
			seterr(err, errlen, "bad port in the URL");
			return -1;
		}
		u->port = (int)port;
	} else if (hend != path) {
		seterr(err, errlen, "junk after the host in the URL");
		return -1;
	}
	if (*path == '\0')
		path = "/";
	if (*path == '?') {
		if (strlen(path) + 2 > sizeof(u->path)) {
			seterr(err, errlen, "URL path too long");
			return -1;
		}
		snprintf(u->path, sizeof(u->path), "/%s", path);
	} else if (util_strlcpy(u->path, path, sizeof(u->path)) >=
		   sizeof(u->path)) {
		seterr(err, errlen, "URL path too long");
		return -1;
	}
	for (const char *c = u->path; *c != '\0'; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
			seterr(err, errlen,
			       "spaces or control characters in the URL path");
			return -1;
		}
	return 0;
}

/* The value of header name in head, trimmed, or NULL. */
static const char *
header_value(const char *head, size_t len, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *end = head + len, *line = memchr(head, '\n', len);

	while (line != NULL && line + 1 < end) {
		const char *l = line + 1,
			   *eol = memchr(l, '\n', (size_t)(end - l));

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - l) > nl && strncasecmp(l, name, nl) == 0 &&
		    l[nl] == ':') {
			const char *v = l + nl + 1, *ve = eol;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' ||
					  ve[-1] == '\t'))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		line = eol < end ? eol : NULL;
	}
	return NULL;
}

/*
 * The status code of "HTTP/1.x SP 3DIGIT ...", or -1.  Reads head[0..len)
 * only: the caller's read buffer goes on past the head, and the head
 * itself need not be NUL-terminated.
 */
static int
status_code(const char *head, size_t len)
{
	int st = 0;

	if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ')
		return -1;
	for (size_t i = 9; i < 12; i++) {
		if (!isdigit((unsigned char)head[i]))
			return -1;
		st = st * 10 + (head[i] - '0');
	}
	if (len > 12 && isdigit((unsigned char)head[12]))
		return -1;
	return st >= 100 && st <= 599 ? st : -1;
}

int
ctl_ws_check_response(const char *head, size_t len, const char *key,
		      int *status, char *err, size_t errlen)
{
	char accept[WS_ACCEPT_LEN + 1];
	const char *v;
	size_t vlen, ll = 0;
	int st;

	*status = 0;
	while (ll < len && head[ll] != '\r' && head[ll] != '\n')
		ll++;
	if ((st = status_code(head, len)) < 0) {
		seterr(err, errlen, "not an HTTP response");
		return -1;
	}
	*status = st;
	if (st != 101) {
		seterr(err, errlen, "%.*s", (int)(ll < 120 ? ll : 120), head);
		return 0;
	}
	if (ws_accept_key(key, strlen(key), accept) != 0)
		return -1;
	v = header_value(head, len, "Sec-WebSocket-Accept", &vlen);
	if (v == NULL || vlen != WS_ACCEPT_LEN ||
	    memcmp(v, accept, WS_ACCEPT_LEN) != 0) {
		seterr(err, errlen,
		       "101 without the right Sec-WebSocket-Accept");
		return -1;
	}
	return 1;
}
