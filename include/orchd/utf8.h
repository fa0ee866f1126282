/*
 * utf8: incremental UTF-8 validation (RFC 3629).
 *
 * A DFA whose state is carried across calls, so a text message can be
 * validated fragment by fragment as it arrives.  It rejects overlong forms,
 * surrogates (U+D800..U+DFFF), code points above U+10FFFF and the bytes
 * C0, C1, F5..FF.  An invalid byte moves the state to UTF8_REJECT at that
 * byte, not later: the caller learns of it while the rest of the fragment is
 * still unread.  A sequence cut short is only detectable at the end of the
 * text: the state is then neither UTF8_ACCEPT nor UTF8_REJECT.
 */
#ifndef ORCHD_UTF8_H
#define ORCHD_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0 /* between characters: the text so far is valid */
#define UTF8_REJECT 1 /* invalid; sticky */

/*
 * Feed len bytes to the DFA in state and return the new state.  Stops at the
 * first invalid byte (returns UTF8_REJECT).  Any other value means "inside a
 * multi-byte sequence": valid so far, incomplete if the text ends here.
 */
uint32_t utf8_validate(uint32_t state, const uint8_t *s, size_t len);

/* Is s[0..len) complete, valid UTF-8?  1 yes, 0 no. */
int utf8_valid(const uint8_t *s, size_t len);

/*
 * Length of the longest prefix of s[0..len) that ends on a character
 * boundary, assuming s is valid UTF-8 (used to truncate a string without
 * splitting a character).
 */
size_t utf8_boundary(const uint8_t *s, size_t len);

#endif
