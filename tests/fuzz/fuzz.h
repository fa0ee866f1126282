/*
 * fuzz: what every libFuzzer target of tests/fuzz/ shares.
 *
 * A target is built two ways: by scripts/fuzz with clang and libFuzzer,
 * where its entry points must be LLVMFuzzerTestOneInput and
 * LLVMFuzzerInitialize, and by automake into tests/check_fuzz_corpus (gcc,
 * no libFuzzer), which links every target at once and replays each one's
 * corpus.  FUZZ_ENTRY(name) and FUZZ_INIT(name) give the entry points
 * distinct names in the second case.
 */
#ifndef ORCHD_FUZZ_H
#define ORCHD_FUZZ_H

/* configure's (or scripts/fuzz's): feature macros, before any header. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef FUZZ_REPLAY
#define FUZZ_ENTRY(name) fuzz_##name##_one
#define FUZZ_INIT(name) fuzz_##name##_init
#else
#define FUZZ_ENTRY(name) LLVMFuzzerTestOneInput
#define FUZZ_INIT(name) LLVMFuzzerInitialize
#endif

/* Prototypes (-Wmissing-prototypes); put it before the definitions. */
#define FUZZ_DECLARE(name)                                                     \
	int FUZZ_ENTRY(name)(const uint8_t *data, size_t size);                \
	int FUZZ_INIT(name)(int *argc, char ***argv)

/*
 * A broken invariant: say which, then abort() so that libFuzzer (or the
 * replay suite) reports the input.
 */
#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/*
 * Carve an input into pieces: fuzz_take() consumes n bytes (fewer at the
 * end), fuzz_byte() one byte (0 when empty).
 */
struct fuzz_in {
	const uint8_t *p;
	size_t len;
};

static inline uint8_t
fuzz_byte(struct fuzz_in *in)
{
	uint8_t b;

	if (in->len == 0)
		return 0;
	b = in->p[0];
	in->p++;
	in->len--;
	return b;
}

static inline const uint8_t *
fuzz_take(struct fuzz_in *in, size_t n, size_t *got)
{
	const uint8_t *p = in->p;

	if (n > in->len)
		n = in->len;
	in->p += n;
	in->len -= n;
	*got = n;
	return p;
}

#endif
