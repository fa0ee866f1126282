/*
 * orchctl bench: the pure pieces (no I/O but the FILE the report goes to):
 * the latency histogram, client frames, the server frame header, JSON
 * scanning of the server's messages, tokens, merging and rendering.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "orchd/jwt.h"

const char *const bench_fail_names[BF_N] = {
    "connect", "status", "eof", "timeout", "protocol", "auth", "subscribe"};

uint64_t
bench_prng(uint64_t *state)
{
	/* xorshift64*: masks need not be secret, only varied (RFC 6455 5.3
	 * wants them unpredictable to the page, which is not in play here) */
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* ---- histogram ---- */

static int
hist_index(uint64_t v)
{
	int msb, shift;

	if (v < BENCH_H_LINEAR)
		return (int)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - 7;
	return BENCH_H_LINEAR + (shift - 1) * BENCH_H_SUB +
	       (int)((v >> shift) - BENCH_H_SUB);
}

uint64_t
bench_hist_value(int idx)
{
	int shift;

	if (idx < BENCH_H_LINEAR)
		return (uint64_t)idx;
	shift = (idx - BENCH_H_LINEAR) / BENCH_H_SUB + 1;
	return ((uint64_t)((idx - BENCH_H_LINEAR) % BENCH_H_SUB + BENCH_H_SUB))
	       << shift;
}

void
bench_hist_add(struct bench_hist *h, uint64_t us)
{
	int i = hist_index(us);

	if (i >= BENCH_H_SIZE)
		i = BENCH_H_SIZE - 1;
	h->b[i]++;
	h->count++;
	if (us > h->max)
		h->max = us;
}

uint64_t
bench_hist_pct(const struct bench_hist *h, double q)
{
	uint64_t acc = 0, want;

	if (h->count == 0)
		return 0;
	want = (uint64_t)(q * (double)h->count);
	if (want < 1)
		want = 1;
	for (int i = 0; i < BENCH_H_SIZE; i++) {
		acc += h->b[i];
		if (acc >= want)
			return bench_hist_value(i) < h->max
				   ? bench_hist_value(i)
				   : h->max;
	}
	return h->max;
}

void
bench_hist_merge(struct bench_hist *into, const struct bench_hist *h)
{
	for (int i = 0; i < BENCH_H_SIZE; i++)
		into->b[i] += h->b[i];
	into->count += h->count;
	if (h->max > into->max)
		into->max = h->max;
}

/* ---- figures ---- */

void
bench_stats_init(struct bench_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->per_conn_min = UINT64_MAX;
}

void
bench_stats_close_code(struct bench_stats *s, unsigned code)
{
	for (int i = 0; i < BENCH_NCODES; i++) {
		if (s->close_code[i][1] == 0)
			s->close_code[i][0] = code;
		if (s->close_code[i][0] == code) {
			s->close_code[i][1]++;
			return;
		}
	}
	s->close_other++;
}

void
bench_stats_merge(struct bench_stats *into, const struct bench_stats *s)
{
	into->requested += s->requested;
	into->started += s->started;
	into->ready += s->ready;
	into->failed += s->failed;
	into->open += s->open;
	into->closed += s->closed;
	for (int i = 0; i < BF_N; i++)
		into->fail[i] += s->fail[i];
	into->pmd += s->pmd;
	for (int i = 0; i < BENCH_NCODES; i++)
		for (uint64_t k = 0; k < s->close_code[i][1]; k++)
			bench_stats_close_code(into,
					       (unsigned)s->close_code[i][0]);
	into->close_other += s->close_other;
	if (into->first_errno == 0)
		into->first_errno = s->first_errno;
	if (s->ready_s > into->ready_s)
		into->ready_s = s->ready_s;
	if (s->window_s > into->window_s)
		into->window_s = s->window_s;
	into->msgs_window += s->msgs_window;
	into->msgs_total += s->msgs_total;
	if (s->per_conn_min < into->per_conn_min)
		into->per_conn_min = s->per_conn_min;
	if (s->per_conn_max > into->per_conn_max)
		into->per_conn_max = s->per_conn_max;
	into->proto_errors += s->proto_errors;
	into->seq_errors += s->seq_errors;
	into->order_errors += s->order_errors;
	into->no_latency += s->no_latency;
	into->clock_neg += s->clock_neg;
	into->other_msgs += s->other_msgs;
	into->expected_missing += s->expected_missing;
	bench_hist_merge(&into->lat, &s->lat);
}

/* ---- frames ---- */

size_t
bench_frame(uint8_t *out, size_t cap, unsigned opcode, const void *payload,
	    size_t len, uint32_t mask)
{
	const uint8_t *p = payload;
	uint8_t m[4] = {(uint8_t)mask, (uint8_t)(mask >> 8),
			(uint8_t)(mask >> 16), (uint8_t)(mask >> 24)};
	size_t h = len < 126 ? 2 : 4;

	if (len > 65535 || h + 4 + len > cap)
		return 0;
	out[0] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		out[1] = (uint8_t)(0x80 | len);
	} else {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
	}
	memcpy(out + h, m, 4);
	for (size_t i = 0; i < len; i++)
		out[h + 4 + i] = p[i] ^ m[i & 3];
	return h + 4 + len;
}

int
bench_frame_parse(const uint8_t *p, size_t avail, size_t max, size_t *hlen,
		  uint64_t *plen, unsigned *op, unsigned *rsv)
{
	uint64_t len;
	size_t h = 2;

	if (avail < 2)
		return 0;
	/* a server never masks; this client never needs fragments */
	if ((p[1] & 0x80) || !(p[0] & 0x80))
		return -1;
	len = p[1] & 0x7f;
	if (len == 126) {
		if (avail < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
	} else if (len == 127) {
		if (avail < 10)
			return 0;
		len = 0;
		for (int i = 2; i < 10; i++)
			len = len << 8 | p[i];
		h = 10;
	}
	if (len > max || h + len > max)
		return -1;
	*hlen = h;
	*plen = len;
	*op = p[0] & 0x0f;
	*rsv = p[0] & 0x70;
	return 1;
}

/* ---- JSON scanning: the server's own messages, known shapes ---- */

int
bench_msg_type_is(const uint8_t *p, size_t len, const char *type)
{
	char pat[64];
	int n = snprintf(pat, sizeof(pat), "\"type\":\"%s\"", type);

	/* orchd writes "type" first; look a little further for others */
	return n > 0 && (size_t)n < sizeof(pat) &&
	       memmem(p, len < 96 ? len : 96, pat, (size_t)n) != NULL;
}

uint64_t
bench_num_after(const uint8_t *p, size_t len, const char *key, int *found)
{
	size_t kl = strlen(key);
	const uint8_t *q = memmem(p, len, key, kl), *end = p + len;
	uint64_t v = 0;

	*found = 0;
	if (q == NULL)
		return 0;
	q += kl;
	while (q < end && *q == ' ')
		q++;
	while (q < end && *q >= '0' && *q <= '9') {
		v = v * 10 + (uint64_t)(*q - '0');
		q++;
		*found = 1;
	}
	return v;
}

int64_t
bench_event_counter(const uint8_t *p, size_t len)
{
	const uint8_t *q = memmem(p, len, "\"eventId\":\"e-", 13), *e = p + len,
		      *dash;
	int64_t k = 0;
	int digits = 0;

	if (q == NULL)
		return -1;
	q += 13;
	dash = memchr(q, '-', (size_t)(e - q));
	if (dash == NULL)
		return -1;
	for (q = dash + 1; q < e && *q >= '0' && *q <= '9' && digits < 18;
	     q++, digits++)
		k = k * 10 + (*q - '0');
	return digits > 0 ? k : -1;
}

int
bench_token(const struct bench_opts *o, const char *orch, const char *daemon,
	    uint64_t nonce, char *out, size_t cap)
{
	char claims[768];
	long now = (long)time(NULL);
	int n;

	n = snprintf(claims, sizeof(claims),
		     "{\"sub\":\"%s\",\"orchestratorId\":\"%s\","
		     "\"daemonId\":\"%s\",\"organizationId\":\"org-bench\","
		     "\"scopes\":[\"%s\"],\"type\":\"access\","
		     "\"iat\":%ld,\"exp\":%ld,\"jti\":\"bench-%s-%llx\"}",
		     orch, orch, daemon, o->scope, now, now + 7200, daemon,
		     (unsigned long long)nonce);
	if (n < 0 || (size_t)n >= sizeof(claims))
		return -1;
	return jwt_sign_hs256(o->secret, o->secret_len, claims, out, cap);
}

/* ---- sources, loopback ---- */

int
bench_is_loopback(uint32_t addr)
{
	return (addr >> 24) == 127;
}

static int
parse_v4(const char *s, size_t len, uint32_t *out)
{
	char buf[INET_ADDRSTRLEN];
	struct in_addr a;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

int
bench_parse_sources(const char *s, uint32_t *first, uint32_t *count)
{
	const char *sep = strpbrk(s, "-/");
	uint32_t a, b;

	if (parse_v4(s, sep != NULL ? (size_t)(sep - s) : strlen(s), &a) == -1)
		return -1;
	if (sep == NULL) {
		b = a;
	} else if (*sep == '/') {
		char *end;
		unsigned long n = strtoul(sep + 1, &end, 10);

		if (*end != '\0' || n == 0 || n > 65536 ||
		    a + (uint32_t)(n - 1) < a)
			return -1;
		b = a + (uint32_t)(n - 1);
	} else if (parse_v4(sep + 1, strlen(sep + 1), &b) == -1) {
		return -1;
	}
	if (b < a || !bench_is_loopback(a) || !bench_is_loopback(b))
		return -1;
	*first = a;
	*count = b - a + 1;
	return 0;
}

const char *
bench_scenario_name(enum bench_scenario sc)
{
	static const char *const names[] = {"idle", "echo", "auth", "fanout",
					    "publish"};

	return names[sc];
}

/* ---- rendering ---- */

void
bench_render_json(FILE *fp, const struct bench_opts *o,
		  const struct bench_stats *s, const char *kind,
		  const char *extra)
{
	uint64_t minc = s->per_conn_min == UINT64_MAX ? 0 : s->per_conn_min;
	double rate =
	    s->window_s > 0 ? (double)s->msgs_window / s->window_s : 0.0;

	fprintf(fp,
		"{\"scenario\":\"%s\",\"kind\":\"%s\",\"procs\":%d,"
		"\"requested\":%llu,\"started\":%llu,\"ready\":%llu,"
		"\"failed\":%llu,\"open\":%llu,\"closed\":%llu,\"pmd\":%llu,"
		"\"ready_s\":%.3f,\"connect_rate\":%.1f,\"fail\":{",
		bench_scenario_name(o->scenario), kind, o->procs,
		(unsigned long long)s->requested,
		(unsigned long long)s->started, (unsigned long long)s->ready,
		(unsigned long long)s->failed, (unsigned long long)s->open,
		(unsigned long long)s->closed, (unsigned long long)s->pmd,
		s->ready_s,
		s->ready_s > 0 ? (double)s->ready / s->ready_s : 0.0);
	for (int i = 0; i < BF_N; i++)
		fprintf(fp, "%s\"%s\":%llu", i ? "," : "", bench_fail_names[i],
			(unsigned long long)s->fail[i]);
	fprintf(fp, "},\"first_error\":\"%s\",\"close_codes\":{",
		s->first_errno ? strerror(s->first_errno) : "");
	for (int i = 0, f = 1; i < BENCH_NCODES; i++) {
		if (s->close_code[i][1] == 0)
			continue;
		fprintf(fp, "%s\"%llu\":%llu", f ? "" : ",",
			(unsigned long long)s->close_code[i][0],
			(unsigned long long)s->close_code[i][1]);
		f = 0;
	}
	if (s->close_other > 0)
		fprintf(fp, "%s\"other\":%llu",
			s->close_code[0][1] > 0 ? "," : "",
			(unsigned long long)s->close_other);
	fprintf(fp,
		"},\"window_s\":%.3f,\"messages\":%llu,\"rate\":%.1f,"
		"\"messages_total\":%llu,\"per_conn_min\":%llu,"
		"\"per_conn_max\":%llu,\"protocol_errors\":%llu,"
		"\"seq_errors\":%llu,\"order_errors\":%llu,"
		"\"no_latency\":%llu,\"clock_neg\":%llu,\"other_msgs\":%llu,"
		"\"missing\":%llu,",
		s->window_s, (unsigned long long)s->msgs_window, rate,
		(unsigned long long)s->msgs_total, (unsigned long long)minc,
		(unsigned long long)s->per_conn_max,
		(unsigned long long)s->proto_errors,
		(unsigned long long)s->seq_errors,
		(unsigned long long)s->order_errors,
		(unsigned long long)s->no_latency,
		(unsigned long long)s->clock_neg,
		(unsigned long long)s->other_msgs,
		(unsigned long long)s->expected_missing);
	fprintf(fp,
		"\"lat_us\":{\"count\":%llu,\"p50\":%llu,\"p90\":%llu,"
		"\"p99\":%llu,\"p999\":%llu,\"max\":%llu},\"hist\":[",
		(unsigned long long)s->lat.count,
		(unsigned long long)bench_hist_pct(&s->lat, 0.50),
		(unsigned long long)bench_hist_pct(&s->lat, 0.90),
		(unsigned long long)bench_hist_pct(&s->lat, 0.99),
		(unsigned long long)bench_hist_pct(&s->lat, 0.999),
		(unsigned long long)s->lat.max);
	for (int i = 0, f = 1; i < BENCH_H_SIZE; i++) {
		if (s->lat.b[i] == 0)
			continue;
		fprintf(fp, "%s[%llu,%llu]", f ? "" : ",",
			(unsigned long long)bench_hist_value(i),
			(unsigned long long)s->lat.b[i]);
		f = 0;
	}
	fprintf(fp, "]%s%s}\n", extra != NULL && *extra ? "," : "",
		extra != NULL ? extra : "");
	fflush(fp);
}

void
bench_render_text(FILE *fp, const struct bench_opts *o,
		  const struct bench_stats *s, const char *extra_text)
{
	const char *what = o->scenario == BENCH_ECHO ? "echoes" : "events";

	fprintf(fp, "%s: %llu of %llu ready in %.2f s (%.0f/s), %llu failed",
		bench_scenario_name(o->scenario), (unsigned long long)s->ready,
		(unsigned long long)s->requested, s->ready_s,
		s->ready_s > 0 ? (double)s->ready / s->ready_s : 0.0,
		(unsigned long long)s->failed);
	for (int i = 0; i < BF_N; i++)
		if (s->fail[i] > 0)
			fprintf(fp, " %s=%llu", bench_fail_names[i],
				(unsigned long long)s->fail[i]);
	fprintf(fp, ", %llu closed by the server\n",
		(unsigned long long)s->closed);
	if (o->scenario == BENCH_IDLE && o->deflate)
		fprintf(fp, "permessage-deflate accepted by %llu\n",
			(unsigned long long)s->pmd);
	if (o->scenario == BENCH_ECHO || o->scenario == BENCH_FANOUT)
		fprintf(fp,
			"%s: %llu in %.2f s window = %.0f/s; per connection "
			"%llu..%llu; %llu since ready\n",
			what, (unsigned long long)s->msgs_window, s->window_s,
			s->window_s > 0 ? (double)s->msgs_window / s->window_s
					: 0.0,
			(unsigned long long)(s->per_conn_min == UINT64_MAX
						 ? 0
						 : s->per_conn_min),
			(unsigned long long)s->per_conn_max,
			(unsigned long long)s->msgs_total);
	if (s->lat.count > 0)
		fprintf(fp,
			"latency µs (%s): p50 %llu  p90 %llu  p99 %llu  "
			"p99.9 %llu  max %llu  (%llu samples)\n",
			o->scenario == BENCH_AUTH   ? "connect to auth_success"
			: o->scenario == BENCH_ECHO ? "round trip"
						    : "publish to receive",
			(unsigned long long)bench_hist_pct(&s->lat, 0.50),
			(unsigned long long)bench_hist_pct(&s->lat, 0.90),
			(unsigned long long)bench_hist_pct(&s->lat, 0.99),
			(unsigned long long)bench_hist_pct(&s->lat, 0.999),
			(unsigned long long)s->lat.max,
			(unsigned long long)s->lat.count);
	if (s->proto_errors + s->seq_errors + s->order_errors +
		s->expected_missing >
	    0)
		fprintf(fp,
			"errors: protocol %llu, seq %llu, order %llu, "
			"missing events %llu\n",
			(unsigned long long)s->proto_errors,
			(unsigned long long)s->seq_errors,
			(unsigned long long)s->order_errors,
			(unsigned long long)s->expected_missing);
	if (extra_text != NULL)
		fputs(extra_text, fp);
}
