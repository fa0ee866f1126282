/*
 * utf8: incremental UTF-8 validation.
 *
 * Table-driven DFA in the style of Bjoern Hoehrmann's decoder, written out
 * from RFC 3629's table 3-7 of well-formed byte sequences: each byte maps to
 * one of 12 classes and (state, class) to the next state.  The second byte of
 * E0, ED, F0 and F4 sequences has a narrower range than 80..BF (that is what
 * excludes overlongs, surrogates and code points above U+10FFFF), hence the
 * dedicated states for them.  Runs of ASCII are skipped 8 bytes at a time
 * because JSON text is mostly ASCII.
 */
#include "config.h"

#include <string.h>

#include "orchd/utf8.h"

enum {
	S_ACC = UTF8_ACCEPT,
	S_REJ = UTF8_REJECT,
	S_C1, /* one continuation byte 80..BF left */
	S_C2, /* two left, any 80..BF */
	S_E0, /* after E0: A0..BF then one more */
	S_ED, /* after ED: 80..9F then one more */
	S_C3, /* three left, any 80..BF */
	S_F0, /* after F0: 90..BF then two more */
	S_F4, /* after F4: 80..8F then two more */
	S_NSTATES
};

/*
 * Byte classes: 0 = 00..7F, 1 = 80..8F, 2 = 90..9F, 3 = A0..BF, 4 = C2..DF,
 * 5 = E0, 6 = E1..EC and EE..EF, 7 = ED, 8 = F0, 9 = F1..F3, 10 = F4,
 * 11 = never valid (C0, C1, F5..FF).
 */
/* clang-format off */
#define X8(c) c, c, c, c, c, c, c, c
#define X16(c) X8(c), X8(c)
static const uint8_t byte_class[256] = {
	/* 00..7F */
	X16(0), X16(0), X16(0), X16(0), X16(0), X16(0), X16(0), X16(0),
	/* 80..BF */
	X16(1), X16(2), X16(3), X16(3),
	/* C0..DF */
	11, 11, 4, 4, 4, 4, 4, 4, X8(4), X16(4),
	/* E0..EF */
	5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 6, 6,
	/* F0..FF */
	8, 9, 9, 9, 10, 11, 11, 11, X8(11),
};
#undef X8
#undef X16

/* Short names, for a table that reads one state per row. */
#define A_ S_ACC
#define R_ S_REJ
#define C1 S_C1
#define C2 S_C2
#define C3 S_C3
#define E0 S_E0
#define ED S_ED
#define F0 S_F0
#define F4 S_F4
static const uint8_t transition[S_NSTATES][12] = {
	/* class:  00  80  90  A0  C2  E0  E1  ED  F0  F1  F4  bad */
	[S_ACC] = {A_, R_, R_, R_, C1, E0, C2, ED, F0, C3, F4, R_},
	[S_REJ] = {R_, R_, R_, R_, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_C1]  = {R_, A_, A_, A_, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_C2]  = {R_, C1, C1, C1, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_E0]  = {R_, R_, R_, C1, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_ED]  = {R_, C1, C1, R_, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_C3]  = {R_, C2, C2, C2, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_F0]  = {R_, R_, C2, C2, R_, R_, R_, R_, R_, R_, R_, R_},
	[S_F4]  = {R_, C2, R_, R_, R_, R_, R_, R_, R_, R_, R_, R_},
};
#undef A_
#undef R_
#undef C1
#undef C2
#undef C3
#undef E0
#undef ED
#undef F0
#undef F4
/* clang-format on */

uint32_t
utf8_validate(uint32_t state, const uint8_t *s, size_t len)
{
	size_t i = 0;

	if (state >= S_NSTATES)
		return UTF8_REJECT;
	while (i < len) {
		if (state == S_ACC) {
			/* Skip ASCII a word at a time. */
			while (len - i >= 8) {
				uint64_t w;

				memcpy(&w, s + i, 8);
				if (w & 0x8080808080808080ULL)
					break;
				i += 8;
			}
			while (i < len && s[i] < 0x80)
				i++;
			if (i == len)
				break;
		}
		state = transition[state][byte_class[s[i++]]];
		if (state == S_REJ)
			break;
	}
	return state;
}

int
utf8_valid(const uint8_t *s, size_t len)
{
	return utf8_validate(UTF8_ACCEPT, s, len) == UTF8_ACCEPT;
}

size_t
utf8_boundary(const uint8_t *s, size_t len)
{
	size_t i, need;
	uint8_t lead;

	if (len == 0)
		return 0;
	/* Back up over at most three continuation bytes to the lead byte. */
	i = len - 1;
	while (i > 0 && len - i < 4 && (s[i] & 0xc0) == 0x80)
		i--;
	lead = s[i];
	if (lead >= 0xf0)
		need = 4;
	else if (lead >= 0xe0)
		need = 3;
	else if (lead >= 0xc0)
		need = 2;
	else
		need = 1;
	return len - i >= need ? len : i;
}
