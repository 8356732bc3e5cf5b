#include "utf8.h"

#include <string.h>

#include "error.h"

static inline int is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

// Length of the well-formed sequence at s[0], or 0. The table of valid
// second bytes follows RFC 3629 section 4: E0 and F0 exclude overlongs, ED
// excludes surrogates, F4 stops at U+10FFFF.
static size_t sequence_length(const unsigned char *s, size_t len) {
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0; // continuation byte, or overlong C0/C1
    if (b < 0xE0) return (len >= 2 && is_cont(s[1])) ? 2 : 0;
    if (b < 0xF0) {
        if (len < 3) return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        return (s[1] >= lo && s[1] <= hi && is_cont(s[2])) ? 3 : 0;
    }
    if (b < 0xF5) {
        if (len < 4) return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
        return (s[1] >= lo && s[1] <= hi && is_cont(s[2]) && is_cont(s[3])) ? 4 : 0;
    }
    return 0;
}

int phrex_utf8_check(const char *s, size_t len, size_t *bad_offset) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        // Most text is ASCII: skip 8 bytes at a time while no high bit is set.
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        size_t n = sequence_length(p + i, len - i);
        if (n == 0) {
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        i += n;
    }
    return 1;
}

size_t phrex_utf8_decode(const char *s, size_t len, uint32_t *cp) {
    if (len == 0) return 0;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = sequence_length(p, len);
    switch (n) {
    case 1: *cp = p[0]; break;
    case 2: *cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F); break;
    case 3: *cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F); break;
    case 4:
        *cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
              ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        break;
    default: break;
    }
    return n;
}

size_t phrex_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

// In valid UTF-8 every code point has exactly one byte that is not a
// continuation byte, so counting and offset conversion need no decoding.
size_t phrex_utf8_count(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += !is_cont((unsigned char)s[i]);
    return n;
}

int phrex_utf8_char_to_byte(const char *s, size_t len, size_t char_offset, size_t *byte_out) {
    size_t seen = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_cont((unsigned char)s[i])) continue;
        if (seen == char_offset) {
            *byte_out = i;
            return PHREX_OK;
        }
        seen++;
    }
    if (seen == char_offset) {
        *byte_out = len;
        return PHREX_OK;
    }
    return phrex_fail(PHREX_ERR_INPUT, "code point offset %zu is past the end of the text (%zu code points)",
                      char_offset, seen);
}

int phrex_utf8_byte_to_char(const char *s, size_t len, size_t byte_offset, size_t *char_out) {
    if (byte_offset > len)
        return phrex_fail(PHREX_ERR_INPUT, "byte offset %zu is past the end of the text (%zu bytes)", byte_offset,
                          len);
    if (byte_offset < len && is_cont((unsigned char)s[byte_offset]))
        return phrex_fail(PHREX_ERR_INPUT, "byte offset %zu is inside a UTF-8 sequence", byte_offset);
    *char_out = phrex_utf8_count(s, byte_offset);
    return PHREX_OK;
}
