/*
 * shm: the POSIX shared-memory segment.
 *
 * The name is unlinked as soon as the segment is mapped: the supervisor and
 * its children share it through fork(), and nothing is left behind in
 * /dev/shm if the supervisor is killed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "orchd/log.h"
#include "orchd/shm.h"

void *
shm_map(size_t len, const char *tag)
{
	char name[64];
	void *p;
	int fd;

	snprintf(name, sizeof(name), "/orchd.%ld.%s", (long)getpid(), tag);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd == -1 && errno == EEXIST) {
		shm_unlink(name);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	}
	if (fd == -1) {
		log_warn("%s: shm_open %s", __func__, name);
		return NULL;
	}
	shm_unlink(name);
	/*
	 * Pages are allocated on first touch: if /dev/shm cannot hold the
	 * whole mapping, a worker would get SIGBUS under load.  Say so now.
	 */
	{
		struct statvfs vfs;

		if (fstatvfs(fd, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < len)
			log_warnx("%s: %s needs %zu bytes but only %llu are "
				  "free in /dev/shm: raise its size or lower "
				  "max_connections",
				  __func__, tag, len,
				  (unsigned long long)vfs.f_bavail *
					  vfs.f_frsize);
	}
	/* ftruncate of a fresh object: zero-filled, pages cost nothing yet. */
	if (ftruncate(fd, (off_t)len) == -1) {
		log_warn("%s: ftruncate %zu", __func__, len);
		close(fd);
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		log_warn("%s: mmap %zu", __func__, len);
		return NULL;
	}
	return p;
}

void
shm_unmap(void *p, size_t len)
{
	if (p != NULL && munmap(p, len) == -1)
		log_warn("%s: munmap", __func__);
}

struct shm_segment *
shm_create(void)
{
	char name[64];
	struct shm_segment *seg;
	int fd;

	snprintf(name, sizeof(name), "/orchd.%ld", (long)getpid());
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd == -1 && errno == EEXIST) {
		/* A stale segment of a previous process with our pid. */
		shm_unlink(name);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	}
	if (fd == -1) {
		log_warn("%s: shm_open %s", __func__, name);
		return NULL;
	}
	shm_unlink(name);
	if (ftruncate(fd, sizeof(*seg)) == -1) {
		log_warn("%s: ftruncate", __func__);
		close(fd);
		return NULL;
	}
	seg = mmap(NULL, sizeof(*seg), PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   0);
	close(fd);
	if (seg == MAP_FAILED) {
		log_warn("%s: mmap", __func__);
		return NULL;
	}
	memset(seg, 0, sizeof(*seg));
	seg->magic = SHM_MAGIC;
	seg->version = SHM_VERSION;
	return seg;
}

void
shm_destroy(struct shm_segment *seg)
{
	if (seg != NULL && munmap(seg, sizeof(*seg)) == -1)
		log_warn("%s: munmap", __func__);
}

/* ---- labelled families ----------------------------------------------------
 */

/* 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500 ms. */
const uint64_t shm_bucket_us[SHM_NBUCKETS - 1] = {
    250,   500,    1000,   2500,   5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000,
};

static const unsigned close_codes[SHM_NCLOSE - 1] = {
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011,
    4001, 4002, 4003, 4004, 4005, 4006, 4007, 1005,
};
static const char *const close_names[SHM_NCLOSE] = {
    "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011",  "4001",
    "4002", "4003", "4004", "4005", "4006", "4007", "1005", "other",
};

/* PROTOCOL.md section 4, auth_error codes. */
static const char *const auth_names[SHM_NAUTH] = {
    "success",
    "AUTH_FAILED",
    "TOKEN_EXPIRED",
    "TOKEN_REVOKED",
    "INSUFFICIENT_SCOPE",
    "MAX_CONNECTIONS",
    "ORCHESTRATOR_DISABLED",
    "UNAVAILABLE",
    "other",
};

static const char *const msg_in_names[SHM_NMSG_IN] = {
    "auth", "heartbeat", "subscribe", "unsubscribe", "ack", "other",
};

static const char *const msg_out_names[SHM_NMSG_OUT] = {
    "auth_success", "auth_error", "heartbeat_ack", "event", "subscribed",
    "error",        "rate_limit", "reconnect",     "other",
};

unsigned
shm_close_index(unsigned code)
{
	/* An empty close frame echoed (code 0) is "no status", 1005. */
	if (code == 0)
		code = 1005;
	for (unsigned i = 0; i < SHM_NCLOSE - 1; i++)
		if (close_codes[i] == code)
			return i;
	return SHM_NCLOSE - 1;
}

unsigned
shm_auth_index(const char *code)
{
	if (code == NULL)
		return 0;
	for (unsigned i = 1; i < SHM_NAUTH - 1; i++)
		if (strcmp(auth_names[i], code) == 0)
			return i;
	return SHM_NAUTH - 1;
}

unsigned
shm_msg_in_index(const char *type)
{
	for (unsigned i = 0; i < SHM_NMSG_IN - 1; i++)
		if (strcmp(msg_in_names[i], type) == 0)
			return i;
	return SHM_NMSG_IN - 1;
}

unsigned
shm_msg_out_index(const char *type, size_t len)
{
	for (unsigned i = 0; i < SHM_NMSG_OUT - 1; i++)
		if (strlen(msg_out_names[i]) == len &&
		    memcmp(msg_out_names[i], type, len) == 0)
			return i;
	return SHM_NMSG_OUT - 1;
}

const char *
shm_close_name(unsigned i)
{
	return i < SHM_NCLOSE ? close_names[i] : "other";
}

const char *
shm_auth_name(unsigned i)
{
	return i < SHM_NAUTH ? auth_names[i] : "other";
}

const char *
shm_msg_in_name(unsigned i)
{
	return i < SHM_NMSG_IN ? msg_in_names[i] : "other";
}

const char *
shm_msg_out_name(unsigned i)
{
	return i < SHM_NMSG_OUT ? msg_out_names[i] : "other";
}

void
shm_hist_observe(struct shm_hist *h, uint64_t us, uint64_t n)
{
	unsigned i = 0;

	if (n == 0)
		return;
	while (i < SHM_NBUCKETS - 1 && us > shm_bucket_us[i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], n, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us * n, memory_order_relaxed);
}

void
shm_worker_reset_gauges(struct shm_worker *w)
{
	for (unsigned i = 0; i < SHM_NCONN_STATES; i++)
		atomic_store(&w->conn_state[i], 0);
	atomic_store(&w->draining, 0);
	atomic_store(&w->send_queue_bytes, 0);
	atomic_store(&w->active, 0);
}
