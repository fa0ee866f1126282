/* transport: plain TCP. */
#include "config.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "orchd/conn.h"
#include "orchd/transport.h"

static int
plain_handshake(struct conn *c)
{
	return 1;
}

static ssize_t
plain_recv(struct conn *c, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(c->fd, buf, len, 0);
	while (n == -1 && errno == EINTR);
	return n;
}

static ssize_t
plain_writev(struct conn *c, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = {0};
	ssize_t n;

	mh.msg_iov = (struct iovec *)iov;
	mh.msg_iovlen = (size_t)iovcnt;
	do
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return n;
}

static void
plain_shutdown(struct conn *c)
{
	(void)shutdown(c->fd, SHUT_WR);
}

static void
plain_free(struct conn *c)
{
}

const struct transport transport_plain = {
	.name = "tcp",
	.handshake = plain_handshake,
	.recv = plain_recv,
	.writev = plain_writev,
	.shutdown = plain_shutdown,
	.free = plain_free,
};
