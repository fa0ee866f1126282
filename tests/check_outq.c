/* Unit tests for the bounded, reference-counted output queue. */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <string.h>

#include "orchd/outq.h"

static struct outbuf *
mk(const char *s)
{
	return outbuf_from(s, strlen(s));
}

/* Concatenate what outq_iov() would write. */
static void
collect(const struct outq *q, char *out, size_t cap)
{
	struct iovec iov[OUTQ_IOV_MAX];
	int n = outq_iov(q, iov, OUTQ_IOV_MAX);
	size_t off = 0;

	for (int i = 0; i < n; i++) {
		ck_assert(off + iov[i].iov_len < cap);
		memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	out[off] = '\0';
}

START_TEST(test_fifo_and_consume)
{
	struct outq q = {0};
	struct outbuf *a = mk("hello "), *b = mk("world");
	char buf[64];

	outq_push(&q, a, 0);
	outq_push(&q, b, 0);
	outbuf_unref(a);
	outbuf_unref(b);
	ck_assert_uint_eq(q.bytes, 11);
	ck_assert_uint_eq(q.n, 2);
	collect(&q, buf, sizeof(buf));
	ck_assert_str_eq(buf, "hello world");
	outq_consume(&q, 3);
	collect(&q, buf, sizeof(buf));
	ck_assert_str_eq(buf, "lo world");
	ck_assert_uint_eq(q.bytes, 8);
	outq_consume(&q, 8);
	ck_assert_ptr_null(q.head);
	ck_assert_uint_eq(q.bytes, 0);
	ck_assert_uint_eq(q.n, 0);
}
END_TEST

START_TEST(test_priority_jumps_unstarted_only)
{
	struct outq q = {0};
	struct outbuf *a = mk("AA"), *b = mk("BB"), *p = mk("P");
	char buf[64];

	outq_push(&q, a, 0);
	outq_push(&q, b, 0);
	outq_consume(&q, 1); /* "AA" has started: it must finish first */
	outq_push(&q, p, 5);
	collect(&q, buf, sizeof(buf));
	ck_assert_str_eq(buf, "APBB");
	outq_clear(&q);
	/* Nothing started: the high-priority item goes first. */
	outq_push(&q, a, 0);
	outq_push(&q, p, 5);
	outq_push(&q, b, 0);
	collect(&q, buf, sizeof(buf));
	ck_assert_str_eq(buf, "PAABB");
	outq_clear(&q);
	outbuf_unref(a);
	outbuf_unref(b);
	outbuf_unref(p);
}
END_TEST

START_TEST(test_shared_buffer_refcount)
{
	struct outq q1 = {0}, q2 = {0};
	struct outbuf *b = mk("shared");

	outq_push(&q1, b, 0);
	outq_push(&q2, b, 0);
	ck_assert_uint_eq(b->refs, 3);
	outbuf_unref(b);
	outq_consume(&q1, 6);
	ck_assert_uint_eq(q2.head->buf->refs, 1);
	outq_clear(&q2); /* frees it: ASan would flag a double free/leak */
}
END_TEST

START_TEST(test_drop_unstarted)
{
	struct outq q = {0};
	struct outbuf *a = mk("AAAA"), *b = mk("BB"), *c = mk("C");
	char buf[64];

	outq_push(&q, a, 0);
	outq_push(&q, b, 0);
	outq_drop_unstarted(&q);
	ck_assert_ptr_null(q.head);
	ck_assert_uint_eq(q.bytes, 0);
	outq_push(&q, a, 0);
	outq_push(&q, b, 0);
	outq_consume(&q, 2);
	outq_drop_unstarted(&q); /* the started frame must complete */
	collect(&q, buf, sizeof(buf));
	ck_assert_str_eq(buf, "AA");
	ck_assert_uint_eq(q.bytes, 2);
	outq_push(&q, c, 0); /* the tail is still right */
	collect(&q, buf, sizeof(buf));
	ck_assert_str_eq(buf, "AAC");
	outq_clear(&q);
	outbuf_unref(a);
	outbuf_unref(b);
	outbuf_unref(c);
}
END_TEST

START_TEST(test_iov_limit)
{
	struct outq q = {0};
	struct iovec iov[OUTQ_IOV_MAX];
	struct outbuf *b = mk("x");

	for (int i = 0; i < OUTQ_IOV_MAX + 10; i++)
		outq_push(&q, b, 0);
	ck_assert_int_eq(outq_iov(&q, iov, OUTQ_IOV_MAX), OUTQ_IOV_MAX);
	outq_consume(&q, OUTQ_IOV_MAX + 10);
	ck_assert_ptr_null(q.head);
	outbuf_unref(b);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("outq");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_fifo_and_consume);
	tcase_add_test(tc, test_priority_jumps_unstarted_only);
	tcase_add_test(tc, test_shared_buffer_refcount);
	tcase_add_test(tc, test_drop_unstarted);
	tcase_add_test(tc, test_iov_limit);
	suite_add_tcase(s, tc);
	return check_run(s);
}
