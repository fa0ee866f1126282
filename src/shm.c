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
