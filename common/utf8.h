// Strict UTF-8 validation and code point <-> byte offset conversion.
//
// Readers validate every text field once, so everything downstream may
// assume valid UTF-8. Offsets elsewhere in phrex are byte offsets; the
// conversions here exist for formats that count code points instead (SQuAD's
// `answer_start` is a Python string index, i.e. a code point index).
#ifndef PHREX_UTF8_H
#define PHREX_UTF8_H

#include <stddef.h>
#include <stdint.h>

// Returns 1 when s[0, len) is well-formed UTF-8 (RFC 3629: no overlong forms,
// no surrogates U+D800..U+DFFF, nothing above U+10FFFF, no truncated
// sequence), else 0 with *bad_offset (when not NULL) set to the offset of
// the first byte of the first ill-formed sequence. NUL bytes are valid.
int phrex_utf8_check(const char *s, size_t len, size_t *bad_offset);

// Decodes the code point starting at s[0] (len bytes available). Returns
// the sequence length 1..4 and sets *cp, or 0 when the sequence is
// ill-formed or truncated (then *cp is left untouched).
size_t phrex_utf8_decode(const char *s, size_t len, uint32_t *cp);

// Writes cp as UTF-8 into out (room for 4 bytes). Returns the byte count,
// or 0 when cp is a surrogate or above U+10FFFF.
size_t phrex_utf8_encode(uint32_t cp, char *out);

// Number of code points in valid UTF-8 s[0, len).
size_t phrex_utf8_count(const char *s, size_t len);

// Byte offset of code point number `char_offset` in valid UTF-8 s[0, len);
// char_offset == (number of code points) gives len. PHREX_ERR_INPUT when
// char_offset is past the end.
int phrex_utf8_char_to_byte(const char *s, size_t len, size_t char_offset, size_t *byte_out);

// Code point index of byte offset `byte_offset` in valid UTF-8 s[0, len).
// PHREX_ERR_INPUT when the offset is past the end or inside a sequence.
int phrex_utf8_byte_to_char(const char *s, size_t len, size_t byte_offset, size_t *char_out);

#endif
