/* util: small helpers shared by every module. */
#ifndef ORCHD_UTIL_H
#define ORCHD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define UTIL_NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* Free a pointer and NULL it on the same line. */
#define UTIL_FREE(p)                                                           \
	do {                                                                   \
		free(p);                                                       \
		(p) = NULL;                                                    \
	} while (0)

/* Allocation that cannot fail: aborts via fatal() on ENOMEM. */
void *util_malloc(size_t n);
void *util_calloc(size_t n, size_t size);
void *util_realloc(void *p, size_t n);
char *util_strdup(const char *s);

/* Monotonic and wall-clock time in milliseconds. */
uint64_t util_now_ms(void);
uint64_t util_wall_ms(void);
/* "2026-11-26T12:00:00.123Z" from a wall-clock ms value; buf >= 25 bytes. */
void util_iso8601_ms(uint64_t wall_ms, char *buf, size_t len);

/* Strict decimal parse of the whole string into [min, max]; 0 ok, -1 error. */
int util_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

int util_set_nonblock(int fd);
int util_set_cloexec(int fd);

/* Number of online CPUs (>= 1). */
int util_ncpu(void);

/* Bounded copy that always NUL-terminates; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t size);

#endif
