/*
 * fuzz_utf8: the incremental UTF-8 validator against a plain reference
 * decoder written from RFC 3629 here.
 *
 * Input: byte 0 seeds the fragment sizes, the rest is the text.
 * Invariants: utf8_valid() agrees with the reference; validating in
 * fragments gives the same state as in one go; UTF8_REJECT comes exactly
 * at the first byte the reference finds invalid; utf8_boundary() cuts a
 * valid text into a valid prefix, at most 3 bytes short.
 */
#include "fuzz.h"

#include <string.h>

#include "orchd/utf8.h"

FUZZ_DECLARE(utf8);

/*
 * Offset of the first byte that makes s invalid, len if none (the text may
 * still end inside a character: *partial says so).
 */
static size_t
ref_first_bad(const uint8_t *s, size_t len, int *partial)
{
	size_t i = 0;

	*partial = 0;
	while (i < len) {
		uint8_t c = s[i];
		unsigned need;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		for (unsigned k = 1; k <= need; k++) {
			uint8_t d;

			if (i + k >= len) {
				*partial = 1;
				return len;
			}
			d = s[i + k];
			if ((d & 0xc0) != 0x80)
				return i + k;
			cp = cp << 6 | (d & 0x3f);
			/*
			 * A DFA sees an overlong form, a surrogate or a code
			 * point past U+10FFFF at the second byte already.
			 */
			if (k == 1) {
				uint32_t lo = c == 0xe0   ? 0xa0
					      : c == 0xf0 ? 0x90
							  : 0x80;
				uint32_t hi = c == 0xed   ? 0x9f
					      : c == 0xf4 ? 0x8f
							  : 0xbf;

				if (d < lo || d > hi)
					return i + k;
			}
		}
		FUZZ_ASSERT(cp >= min && cp <= 0x10ffff &&
			    (cp < 0xd800 || cp > 0xdfff));
		i += need + 1;
	}
	return len;
}

int
FUZZ_INIT(utf8)(int *argc, char ***argv)
{
	return 0;
}

int
FUZZ_ENTRY(utf8)(const uint8_t *data, size_t size)
{
	const uint8_t *s;
	size_t len, bad, pos = 0, step;
	uint32_t st = UTF8_ACCEPT, whole;
	int partial, ok;

	if (size < 1)
		return 0;
	step = (size_t)(data[0] % 7) + 1;
	s = data + 1;
	len = size - 1;
	bad = ref_first_bad(s, len, &partial);
	ok = bad == len && !partial;
	FUZZ_ASSERT(utf8_valid(s, len) == ok);

	whole = utf8_validate(UTF8_ACCEPT, s, len);
	FUZZ_ASSERT((whole == UTF8_REJECT) == (bad < len));
	FUZZ_ASSERT((whole == UTF8_ACCEPT) == ok);
	/* In fragments: same end state. */
	while (pos < len) {
		size_t n = len - pos < step ? len - pos : step;

		st = utf8_validate(st, s + pos, n);
		pos += n;
		step = step * 3 % 11 + 1;
	}
	FUZZ_ASSERT(st == whole);
	/* Rejected at the offending byte, not before. */
	if (bad < len) {
		FUZZ_ASSERT(utf8_validate(UTF8_ACCEPT, s, bad) != UTF8_REJECT);
		FUZZ_ASSERT(utf8_validate(UTF8_ACCEPT, s, bad + 1) ==
			    UTF8_REJECT);
	}
	if (ok) {
		size_t cut = len > 0 ? len - 1 : 0;
		size_t b = utf8_boundary(s, cut);

		FUZZ_ASSERT(b <= cut && cut - b <= 3);
		FUZZ_ASSERT(utf8_valid(s, b));
		FUZZ_ASSERT(utf8_boundary(s, len) == len);
	}
	return 0;
}
