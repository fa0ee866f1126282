/* outq: bounded, reference-counted output queue. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "orchd/outq.h"
#include "orchd/util.h"

struct outbuf *
outbuf_new(size_t len)
{
	struct outbuf *b = util_malloc(sizeof(*b) + len);

	b->refs = 1;
	b->len = len;
	return b;
}

struct outbuf *
outbuf_from(const void *data, size_t len)
{
	struct outbuf *b = outbuf_new(len);

	memcpy(b->data, data, len);
	return b;
}

void
outbuf_ref(struct outbuf *b)
{
	b->refs++;
}

void
outbuf_unref(struct outbuf *b)
{
	if (b != NULL && --b->refs == 0)
		free(b);
}

void
outq_push(struct outq *q, struct outbuf *b, int prio)
{
	struct outq_item *it = util_malloc(sizeof(*it)), **pp;

	outbuf_ref(b);
	it->buf = b;
	it->off = 0;
	it->prio = prio;
	it->next = NULL;
	q->bytes += b->len;
	q->n++;
	if (q->tail == NULL || q->tail->prio >= prio) {
		/* The common case: same priority, append. */
		if (q->tail != NULL)
			q->tail->next = it;
		else
			q->head = it;
		q->tail = it;
		return;
	}
	/*
	 * Higher priority: insert before the first lower-priority item that
	 * has not started to go out (a started frame must finish first).
	 */
	pp = &q->head;
	while (*pp != NULL && ((*pp)->off > 0 || (*pp)->prio >= prio))
		pp = &(*pp)->next;
	it->next = *pp;
	*pp = it;
	if (it->next == NULL)
		q->tail = it;
}

int
outq_iov(const struct outq *q, struct iovec *iov, int max)
{
	int n = 0;

	for (const struct outq_item *it = q->head; it != NULL && n < max;
	     it = it->next, n++) {
		iov[n].iov_base = it->buf->data + it->off;
		iov[n].iov_len = it->buf->len - it->off;
	}
	return n;
}

static void
outq_pop(struct outq *q)
{
	struct outq_item *it = q->head;

	q->head = it->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	outbuf_unref(it->buf);
	free(it);
}

void
outq_consume(struct outq *q, size_t n)
{
	q->bytes -= n;
	while (n > 0 && q->head != NULL) {
		struct outq_item *it = q->head;
		size_t left = it->buf->len - it->off;

		if (n < left) {
			it->off += n;
			return;
		}
		n -= left;
		outq_pop(q);
	}
	/* Zero-length items are done as soon as they reach the front. */
	while (q->head != NULL && q->head->off == q->head->buf->len)
		outq_pop(q);
}

void
outq_drop_unstarted(struct outq *q)
{
	struct outq_item *keep = q->head, *it, *next;

	if (keep == NULL)
		return;
	if (keep->off == 0)
		keep = NULL;
	it = keep != NULL ? keep->next : q->head;
	for (; it != NULL; it = next) {
		next = it->next;
		q->bytes -= it->buf->len - it->off;
		q->n--;
		outbuf_unref(it->buf);
		free(it);
	}
	if (keep != NULL) {
		keep->next = NULL;
		q->head = q->tail = keep;
	} else {
		q->head = q->tail = NULL;
	}
}

void
outq_clear(struct outq *q)
{
	while (q->head != NULL)
		outq_pop(q);
	q->bytes = 0;
}
